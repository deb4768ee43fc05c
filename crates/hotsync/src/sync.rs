//! One sync: read Git at a branch, plan every set against the cluster, roll each out, and report.
//!
//! A manifest error anywhere stops the whole sync before anything is applied: a partial rollout of a
//! half-loaded repository is never made. Each set then syncs on its own; one set's failure is reported
//! and never stops the others.

use crate::git::CommitId;
use crate::live::{self, ClusterError};
use crate::manifest::SetKey;
use crate::manifest::{LoadOptions, Severity};
use crate::plan::Located;
use crate::rollout::{self, Outcome, ProgressTx, RolloutOptions, SetOutcome};
use crate::source::{CommitInfo, FetchOptions, Repo, SourceError};
use futures::StreamExt as _;
use kube::Client;
use serde::Serialize;
use std::collections::BTreeMap;
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

/// What one sync reads beyond its [`SyncOptions`]: a pinned revision, and the commit synced before.
#[derive(Clone, Debug, Default)]
pub struct SyncTarget {
    /// A revision (a commit sha, a tag, a branch) to sync instead of the branch's tip. Of a remote, it
    /// must still be on one of its branches.
    pub revision: Option<String>,
    /// The commit synced before. When the commit synced now does not descend from it, the branch was
    /// force-pushed: the report says so. `None`: the commit the cache clone's remote-tracking branch
    /// held before this fetch, when there is one.
    pub previous: Option<CommitId>,
    /// Sync only these sets (the daemon's requeue and drift); `None`: every set.
    pub only: Option<std::collections::BTreeSet<SetKey>>,
    /// Sets known to be in step, by what they were synced at: a set whose manifest and live
    /// generation both still match is not read from the cluster again (the daemon's incremental sync).
    pub in_step: std::sync::Arc<BTreeMap<SetKey, InStep>>,
    /// The live `metadata.generation` of each set, as the daemon's watch shows it.
    pub generations: std::sync::Arc<BTreeMap<SetKey, i64>>,
}

/// What a set was synced at: its manifest's fingerprint and the generation its sync ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InStep {
    pub fingerprint: String,
    pub generation: i64,
}

/// The commit a sync reads and the manifests in it.
#[derive(Clone, Debug)]
pub struct Desired {
    pub source: CommitInfo,
    pub manifests: crate::manifest::Manifests,
    /// The commit the branch held before it was force-pushed, when it was.
    pub force_pushed_from: Option<String>,
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
    /// The commit synced before, when the branch was force-pushed since: the new commit does not
    /// descend from it, and hotsync followed the new head.
    #[serde(rename = "forcePushedFrom", skip_serializing_if = "Option::is_none")]
    pub force_pushed_from: Option<String>,
    /// Sets of the commit not synced this time: in step since their last sync (see
    /// [`SyncTarget::in_step`]), or not among [`SyncTarget::only`].
    #[serde(skip)]
    pub skipped: Vec<SetKey>,
    /// The fingerprint of each synced set's manifest.
    #[serde(skip)]
    pub fingerprints: BTreeMap<SetKey, String>,
}

impl SyncReport {
    /// The process exit code: 0 synced (or deferred: game servers wait for their players), 1 rollout
    /// failed or deferred past `--defer-deadline`, 2 invalid input, 3 refused by policy, 4 timed out.
    pub fn exit_code(&self) -> i32 {
        let has = |o: Outcome| self.sets.iter().any(|s| s.outcome == o);
        if !self.errors.is_empty() {
            2
        } else if has(Outcome::Failed) || has(Outcome::Degraded) {
            1
        } else if has(Outcome::TimedOut) {
            4
        } else if has(Outcome::Frozen) {
            5
        } else if has(Outcome::Refused) || has(Outcome::Aborted) {
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
    let d = load_target(opts, &SyncTarget::default()).await?;
    Ok((d.source, d.manifests))
}

/// Reads the desired sets at the branch's tip, or at the pinned revision, and tells whether the
/// branch was force-pushed since `target.previous` (off the async runtime: libgit2 blocks). A corrupt
/// cache clone is cloned again, once.
///
/// # Errors
/// When the repository cannot be opened, fetched or read, or the revision is not the remote's.
pub async fn load_target(opts: &SyncOptions, target: &SyncTarget) -> Result<Desired, SyncError> {
    let (opts, target) = (opts.clone(), target.clone());
    let r = tokio::task::spawn_blocking(move || -> Result<Desired, SourceError> {
        let remote = crate::source::is_remote(&opts.repo);
        let branch_rev = match (&opts.branch, remote) {
            (Some(b), true) => format!("origin/{b}"),
            (Some(b), false) => b.clone(),
            (None, true) => "origin/main".to_string(),
            (None, false) => "HEAD".to_string(),
        };
        let read = |repo: &Repo, before: Option<CommitId>| -> Result<Desired, SourceError> {
            let commit = match &target.revision {
                Some(rev) if remote => repo.resolve_on_remote(rev, opts.fetch.depth)?,
                Some(rev) => repo.resolve(rev)?,
                // The commit a person made: hotsync's status commits on the branch are no source.
                None => repo
                    .skip_own_commits(repo.resolve(&branch_rev)?, remote.then_some(&opts.fetch))?,
            };
            let source = repo.commit_info(commit)?;
            let manifests = crate::source::load_at(repo, commit, &opts.path, &opts.load)?;
            // A pinned revision follows no branch: there is nothing to have been force-pushed.
            let previous = target
                .revision
                .is_none()
                .then_some(target.previous.or(before))
                .flatten();
            let force_pushed_from = previous.and_then(|old| {
                force_pushed(repo, commit, old, &opts.fetch, &branch_rev).then(|| old.to_string())
            });
            Ok(Desired {
                source,
                manifests,
                force_pushed_from,
            })
        };
        if !remote {
            let repo = Repo::open(std::path::Path::new(&opts.repo))?;
            return read(&repo, None);
        }
        let branch = branch_rev.trim_start_matches("origin/").to_string();
        let (_, desired) = Repo::with_cache(&opts.repo, &opts.cache_dir, &opts.fetch, |repo| {
            let before = repo.tracking_tip(&branch);
            repo.fetch(&opts.fetch)?;
            read(repo, before)
        })?;
        Ok(desired)
    })
    .await??;
    Ok(r)
}

/// How many commits beyond its depth a shallow cache fetches to tell a push of several commits from a
/// force-push.
const FORCE_PUSH_LOOKBACK: i32 = 32;

/// Whether the branch moved from `old` to `new` by a rewrite; logged as a warning when it did. In a
/// shallow cache, more history is fetched when the answer lies beyond its boundary.
fn force_pushed(
    repo: &Repo,
    new: CommitId,
    old: CommitId,
    fetch: &crate::source::FetchOptions,
    branch: &str,
) -> bool {
    use crate::source::Ancestry;
    // The commit synced before may be a status commit of hotsync's own on the tracked branch
    // (`--status-branch @`): the commit a person made below it is what the new head must descend from.
    let old = repo.skip_own_commits(old, None).unwrap_or(old);
    if old == new {
        return false;
    }
    let mut ancestry = repo.ancestry(new, old);
    if ancestry == Ancestry::Unknown && repo.is_shallow() {
        // The commits between the two are beyond the boundary (a push of several commits): fetch a
        // little more history, once.
        let depth = fetch
            .depth
            .unwrap_or(1)
            .max(1)
            .saturating_add(FORCE_PUSH_LOOKBACK);
        match repo.fetch_more(fetch, depth) {
            Ok(()) => ancestry = repo.ancestry(new, old),
            Err(e) => tracing::debug!(error = %error_chain(&e), "could not fetch more history"),
        }
    }
    match ancestry {
        Ancestry::Descends => false,
        Ancestry::Rewritten => {
            tracing::warn!(
                repo = %repo.name(),
                branch = branch.trim_start_matches("origin/"),
                from = %old,
                to = %new,
                "the branch was force-pushed: {new} does not descend from {old}, the commit synced before; following the new head"
            );
            true
        }
        Ancestry::Unknown => {
            tracing::info!(
                repo = %repo.name(),
                from = %old,
                to = %new,
                "cannot tell whether the branch was force-pushed: the shallow cache lacks the history between the two commits"
            );
            false
        }
    }
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
    sync_target(client, opts, &SyncTarget::default(), progress).await
}

/// Runs one sync of a pinned revision, or of the branch's tip with the commit synced before (see
/// [`SyncTarget`]).
///
/// # Errors
/// When Git cannot be read or the cluster lacks OKG; per-set failures are in the report.
pub async fn sync_target(
    client: &Client,
    opts: &SyncOptions,
    target: &SyncTarget,
    progress: Option<&ProgressTx>,
) -> Result<SyncReport, SyncError> {
    let Desired {
        source,
        manifests,
        force_pushed_from,
    } = load_target(opts, target).await?;
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
            force_pushed_from,
            skipped: Vec::new(),
            fingerprints: BTreeMap::new(),
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
    let mut skipped = Vec::new();
    let mut fingerprints = BTreeMap::new();
    let mut todo = Vec::new();
    for desired in manifests.sets {
        let key = desired.key();
        if target
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&key))
        {
            skipped.push(key);
            continue;
        }
        let fingerprint = desired.fingerprint();
        // Sets named by `only` are synced whatever they were synced at (drift heals them).
        let in_step = target.only.is_none()
            && target.in_step.get(&key).is_some_and(|s| {
                s.fingerprint == fingerprint && target.generations.get(&key) == Some(&s.generation)
            });
        if in_step {
            skipped.push(key);
            continue;
        }
        fingerprints.insert(key, fingerprint);
        todo.push(desired);
    }
    let mut sets: Vec<SetOutcome> = futures::stream::iter(todo)
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
                        writes: Default::default(),
                        generation: None,
                        step: None,
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
        force_pushed_from,
        skipped,
        fingerprints,
    })
}

pub use crate::error_chain;
