//! One sync: read Git at a branch, plan every set against the cluster, roll each out, and report.
//!
//! A manifest error anywhere stops the whole sync before anything is applied: a partial rollout of a
//! half-loaded repository is never made. Each set then syncs on its own; one set's failure is reported
//! and never stops the others.

use crate::live::{self, ClusterError};
use crate::manifest::{LoadOptions, Severity};
use crate::plan::Located;
use crate::rollout::{self, Outcome, ProgressTx, RolloutOptions, SetOutcome};
use crate::source::{CommitInfo, FetchOptions, Repo, SourceError};
use futures::StreamExt as _;
use kube::Client;
use serde::Serialize;
use std::path::PathBuf;

/// Where to read Git from, and how to roll out.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// A local path or a URL.
    pub repo: String,
    /// The branch to sync; `None`: the local repository's HEAD, or `main` of a remote.
    pub branch: Option<String>,
    /// The directory of the manifests.
    pub path: String,
    pub load: LoadOptions,
    pub cache_dir: PathBuf,
    pub fetch: FetchOptions,
    pub rollout: RolloutOptions,
    /// Sets synced at once.
    pub set_concurrency: usize,
}

/// What went wrong before any set could be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the repository")]
    Source(#[from] SourceError),
    #[error("checking the cluster")]
    Cluster(#[from] ClusterError),
    #[error("the repository reader stopped unexpectedly")]
    Join(#[from] tokio::task::JoinError),
}

impl SyncError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SyncError::Source(e) => e.category(),
            SyncError::Cluster(e) => e.category(),
            SyncError::Join(_) => "internal",
        }
    }
}

/// The outcome of a sync.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub source: CommitInfo,
    pub sets: Vec<SetOutcome>,
    /// Manifest errors: when there are any, nothing was applied.
    pub errors: Vec<Located>,
}

impl SyncReport {
    /// The process exit code: 0 synced, 1 rollout failed, 2 invalid input, 3 refused by policy, 4 timed out.
    pub fn exit_code(&self) -> i32 {
        let has = |o: Outcome| self.sets.iter().any(|s| s.outcome == o);
        if !self.errors.is_empty() {
            2
        } else if has(Outcome::Failed) {
            1
        } else if has(Outcome::TimedOut) {
            4
        } else if has(Outcome::Refused) {
            3
        } else {
            0
        }
    }
}

/// Reads the desired sets at the branch's tip (off the async runtime: libgit2 blocks).
///
/// # Errors
/// When the repository cannot be opened, fetched or read.
pub async fn load_desired(
    opts: &SyncOptions,
) -> Result<(CommitInfo, crate::manifest::Manifests), SyncError> {
    let opts = opts.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<_, SourceError> {
        let repo = Repo::open_or_clone(&opts.repo, &opts.cache_dir, &opts.fetch)?;
        let rev = match (&opts.branch, crate::source::is_remote(&opts.repo)) {
            (Some(b), true) => format!("origin/{b}"),
            (Some(b), false) => b.clone(),
            (None, true) => "origin/main".to_string(),
            (None, false) => "HEAD".to_string(),
        };
        let commit = repo.resolve(&rev)?;
        let info = repo.commit_info(commit)?;
        let manifests = repo.load_at(commit, &opts.path, &opts.load)?;
        Ok((info, manifests))
    })
    .await??;
    Ok(r)
}

/// Runs one sync.
///
/// # Errors
/// When Git cannot be read or the cluster lacks OKG; per-set failures are in the report.
pub async fn sync(
    client: &Client,
    opts: &SyncOptions,
    progress: Option<&ProgressTx>,
) -> Result<SyncReport, SyncError> {
    let (source, manifests) = load_desired(opts).await?;
    let errors: Vec<Located> = manifests
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(Located::from)
        .collect();
    if !errors.is_empty() {
        return Ok(SyncReport {
            source,
            sets: Vec::new(),
            errors,
        });
    }
    let first_ns = manifests
        .sets
        .first()
        .map(|s| s.key().namespace)
        .unwrap_or_else(|| opts.load.default_namespace.clone());
    live::check_crds(client, &first_ns).await?;
    let mut rollout_opts = opts.rollout.clone();
    rollout_opts.source_commit = Some(source.sha.clone());
    let rollout_opts = &rollout_opts;
    let mut sets: Vec<SetOutcome> = futures::stream::iter(manifests.sets)
        .map(|desired| async move {
            match rollout::sync_set(client, &desired, rollout_opts, progress).await {
                Ok(o) => o,
                Err(e) => {
                    let key = desired.key();
                    tracing::warn!(set = %key, category = e.category(), error = %format!("{e:#}"), "sync of set failed");
                    SetOutcome {
                        namespace: key.namespace,
                        name: key.name,
                        impact: crate::diff::Impact::NoChange,
                        outcome: match e {
                            ClusterError::Timeout { .. } => Outcome::TimedOut,
                            _ => Outcome::Failed,
                        },
                        message: Some(error_chain(&e)),
                        pods: Vec::new(),
                        warnings: Vec::new(),
                        target_images: desired.gss.container_images(),
                        judge_drift: false,
                    }
                }
            }
        })
        .buffer_unordered(opts.set_concurrency.max(1))
        .collect()
        .await;
    sets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(SyncReport {
        source,
        sets,
        errors,
    })
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
