//! `hotsync run`: the daemon that keeps a cluster in step with Git.
//!
//! Its tasks send typed triggers ([`trigger::Trigger`]: the webhook, a watch of a local repository,
//! drift) on one channel to one sync loop, which adds its own (the poll, requeues, retries, leadership)
//! and takes every trigger waiting at once into one wake-up. A poll that finds the branch's tip unchanged
//! costs one ref negotiation: no fetch, no diff. A new commit syncs incrementally: a set whose manifest and
//! live generation are both as they were when it was last synced is not read again. A sync answers with
//! what comes next ([`trigger::Next`]): only the sets still rolling out, deferred or failed are looked at
//! again, each on its own timer. Only the replica holding the Lease syncs. Every task's handle is kept:
//! a task that dies stops the daemon with its error.
//!
//! Data: Git through [`crate::source`] and [`crate::sync`]; the cluster through the rollout; a metadata
//! watch of the GameServerSets (their generations) and drift's watch of the pods; out go the cluster's
//! writes, status commits, Events, metrics and logs.

pub mod drift;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod trigger;

use crate::git::CommitId;
use crate::live::ClusterError;
use crate::manifest::SetKey;
use crate::rollout::{Outcome, Progress};
use crate::source::{Repo, SourceError};
use crate::sync::{InStep, SyncOptions, SyncReport};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource as _};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use trigger::{Next, Trigger, Wake};

/// Everything `hotsync run` needs.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub sync: SyncOptions,
    /// The branch that is tracked (for the webhook's `ref` and the poll).
    pub branch: String,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub webhook_secret: Option<String>,
    /// `None`: no leader election (a single replica).
    pub lease: Option<lease::LeaseConfig>,
    pub self_heal: bool,
    /// Watch the repository's files when it is a local path.
    pub watch_local: bool,
    /// How long a sync in flight may finish after SIGTERM before it is dropped between two writes.
    pub shutdown_grace: Duration,
    /// Where each sync's outcome is written back; `None`: nowhere.
    pub status: Option<StatusSink>,
}

/// The status writer and the cluster's name in status paths.
#[derive(Clone)]
pub struct StatusSink {
    pub writer: Arc<crate::status::StatusWriter>,
    pub cluster: String,
}

impl std::fmt::Debug for StatusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSink")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
    #[error("leader election failed")]
    Lease(#[source] ClusterError),
    #[error("cannot watch {path}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
    #[error("a daemon task stopped unexpectedly: {task}")]
    TaskDied { task: &'static str },
}

/// Runs until `shutdown` turns true.
///
/// # Errors
/// When the listener cannot bind or a task of the daemon dies.
pub async fn run(
    client: Client,
    cfg: DaemonConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let (triggers, trigger_rx) = tokio::sync::mpsc::unbounded_channel::<Trigger>();
    let shared = Arc::new(http::Shared::new(
        metrics,
        registry,
        triggers.clone(),
        cfg.webhook_secret.clone(),
        cfg.branch.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let identity = cfg
        .lease
        .as_ref()
        .map(|l| l.identity.clone())
        .unwrap_or_else(|| "hotsync".into());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "hotsync".into(),
            instance: Some(identity),
        },
    );
    let busy = Arc::new(AtomicBool::new(false));
    let desired: drift::Desired = Default::default();
    let drifted: drift::Drifted = Default::default();
    // Bumped after each sync: what drift judges against changed.
    let (desired_changed, desired_rx) = watch::channel(0u64);
    let (leading_tx, leading) = watch::channel(cfg.lease.is_none());
    let mut tasks: JoinSet<(&'static str, Result<(), DaemonError>)> = JoinSet::new();

    // HTTP: health, readiness, metrics, webhook.
    {
        let mut stop = shutdown.clone();
        let app = http::router(shared.clone());
        tasks.spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped(&mut stop).await;
                })
                .await
                .map_err(DaemonError::Serve);
            ("http", r)
        });
    }
    // Leader election.
    let leading_tx_keep = leading_tx.clone();
    if let Some(lc) = cfg.lease.clone() {
        let (client, stop) = (client.clone(), shutdown.clone());
        tasks.spawn(async move {
            (
                "lease",
                lease::run(client, lc, leading_tx, stop)
                    .await
                    .map_err(DaemonError::Lease),
            )
        });
    }
    // Without a lease this replica always leads; the sender lives as long as the daemon, so that the
    // sync loop never sees the channel close.
    let _always_leading = cfg.lease.is_none().then_some(leading_tx_keep);
    // The poll is the sync loop's own timer: it backs off while the repository cannot be reached.
    // A local repository's files.
    let _watcher = if cfg.watch_local && !crate::source::is_remote(&cfg.sync.repo) {
        // An optimisation over the poll, never a reason to stop: without it, the poll finds the change.
        match watch_local(&cfg.sync.repo, triggers.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %crate::sync::error_chain(&e), interval = ?cfg.interval, "not watching the repository's files; the poll picks changes up");
                None
            }
        }
    } else {
        None
    };
    // Drift.
    {
        let d = drift::Drift {
            client: client.clone(),
            desired: desired.clone(),
            changed: desired_rx,
            shared: shared.clone(),
            recorder: recorder.clone(),
            busy: busy.clone(),
            triggers: triggers.clone(),
            self_heal: cfg.self_heal,
            drifted_sets: drifted.clone(),
        };
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = d.run() => ("drift", Err(DaemonError::TaskDied { task: "drift watch" })),
                _ = stopped(&mut stop) => ("drift", Ok(())),
            }
        });
    }
    // The generations of the sets, for the incremental sync: a metadata watch (no specs held).
    let generations = {
        let (store, writer) = kube::runtime::reflector::store();
        let api: Api<kube::core::PartialObjectMeta<crate::model::GameServerSet>> =
            Api::all(client.clone());
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            use futures::StreamExt as _;
            use kube::runtime::WatchStreamExt as _;
            let stream = kube::runtime::reflector::reflector(
                writer,
                kube::runtime::watcher(api, kube::runtime::watcher::Config::default())
                    .backoff(crate::live::WatchBackoff::default()),
            );
            let mut stream = std::pin::pin!(stream);
            tokio::select! {
                _ = async { while stream.next().await.is_some() {} } => ("set watch", Err(DaemonError::TaskDied { task: "set watch" })),
                _ = stopped(&mut stop) => ("set watch", Ok(())),
            }
        });
        store
    };
    // The sync loop.
    {
        let looper = SyncLoop {
            client: client.clone(),
            cfg: cfg.clone(),
            shared: shared.clone(),
            recorder,
            busy,
            desired,
            desired_changed,
            drifted,
            generations,
            leading,
            shutdown: shutdown.clone(),
            last_tip: None,
            failed_tip: None,
            failures: 0,
            poll_failures: 0,
            previous: None,
            in_step: BTreeMap::new(),
            requeue: BTreeMap::new(),
            set_failures: BTreeMap::new(),
            retry_at: None,
            _triggers: triggers,
        };
        tasks.spawn(async move { ("sync", looper.run(trigger_rx).await) });
    }

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let stopping = *shutdown.borrow();
        match joined {
            Ok((_, Ok(()))) if stopping => {}
            // A task that ends because another one stopped first while the daemon stops (the election
            // gives the lease up and closes the sync loop's channel; drift's input closes with the
            // sync loop): no death.
            Ok((_, Err(DaemonError::TaskDied { .. }))) if stopping => {}
            Ok((task, Ok(()))) => {
                result = Err(DaemonError::TaskDied { task });
                break;
            }
            Ok((task, Err(e))) => {
                tracing::error!(task, error = %crate::sync::error_chain(&e), "daemon task failed");
                result = Err(e);
                break;
            }
            Err(_) => {
                result = Err(DaemonError::TaskDied { task: "panicked" });
                break;
            }
        }
    }
    tasks.abort_all();
    result
}

/// Resolves once `rx` says stop; holds no borrow of the channel across an await of the caller.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Watches what moves when a local repository's branches move: the git directory itself (`HEAD`,
/// `packed-refs`) and `refs/` below it. Objects are not watched: a push writes them before it moves a
/// ref, and their directories (a push's temporary ones among them, owned by whoever pushed) would
/// only cost watches and permission errors.
fn watch_local(
    repo: &str,
    triggers: trigger::Sender,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    use notify::Watcher as _;
    let path = std::path::Path::new(repo);
    let git_dir = if path.join(".git").exists() {
        path.join(".git")
    } else {
        path.to_path_buf()
    };
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            let _ = triggers.send(Trigger::LocalWatch);
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: repo.to_string(),
        source,
    })?;
    for (dir, mode) in [
        (git_dir.clone(), notify::RecursiveMode::NonRecursive),
        (git_dir.join("refs"), notify::RecursiveMode::Recursive),
    ] {
        w.watch(&dir, mode).map_err(|source| DaemonError::Watch {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(w)
}

struct SyncLoop {
    client: Client,
    cfg: DaemonConfig,
    shared: Arc<http::Shared>,
    recorder: Recorder,
    busy: Arc<AtomicBool>,
    desired: drift::Desired,
    desired_changed: watch::Sender<u64>,
    /// The sets whose pods drifted: out of step, whatever they were synced at.
    drifted: drift::Drifted,
    /// The sets' metadata as the watch shows it (for their generations).
    generations:
        kube::runtime::reflector::Store<kube::core::PartialObjectMeta<crate::model::GameServerSet>>,
    leading: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    /// The tip last synced: a poll that finds it again does nothing.
    last_tip: Option<CommitId>,
    /// The tip whose sync failed last, retried only once the backoff has passed.
    failed_tip: Option<CommitId>,
    /// Consecutive syncs that could not read Git or the cluster, for backoff.
    failures: u32,
    /// Consecutive polls that could not reach the repository, for the poll's backoff.
    poll_failures: u32,
    /// The commit of the last sync that applied Git to the cluster: a new commit that does not descend
    /// from it means the branch was force-pushed.
    previous: Option<CommitId>,
    /// Sets synced to completion, by what they were synced at.
    in_step: BTreeMap<SetKey, InStep>,
    /// When each set not finished is looked at again.
    requeue: BTreeMap<SetKey, Instant>,
    /// Consecutive failed rollouts of each set, for its backoff.
    set_failures: BTreeMap<SetKey, u32>,
    /// When a failed sync is tried again.
    retry_at: Option<Instant>,
    /// Keeps the channel open while the loop runs, whatever the other senders do.
    _triggers: trigger::Sender,
}

/// The wait before retrying after `failures` consecutive failures: the interval doubled per failure
/// (up to 32 times), at most ten minutes.
fn failure_backoff(interval: Duration, failures: u32) -> Duration {
    interval
        .saturating_mul(2u32.saturating_pow(failures.min(5)))
        .min(Duration::from_secs(600))
}

/// The longest wait between two polls of a repository that cannot be reached.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before the next poll after `failures` consecutive polls that could not reach the
/// repository: the interval, doubled per failure, up to [`MAX_POLL_BACKOFF`] (or the interval, when
/// that is longer).
pub fn poll_backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = MAX_POLL_BACKOFF.max(interval);
    interval
        .saturating_mul(2u32.saturating_pow(failures.min(20)))
        .min(cap)
}

impl SyncLoop {
    async fn run(mut self, mut triggers: trigger::Receiver) -> Result<(), DaemonError> {
        let mut next_poll = Instant::now();
        self.previous = self.cached_tip().await;
        let far = || Instant::now() + Duration::from_secs(86_400);
        loop {
            let requeue_at = self.requeue.values().min().copied();
            let first = tokio::select! {
                t = triggers.recv() => match t {
                    Some(t) => t,
                    None => return Err(DaemonError::TaskDied { task: "trigger channel" }),
                },
                _ = tokio::time::sleep_until(next_poll) => Trigger::Poll,
                _ = tokio::time::sleep_until(requeue_at.unwrap_or_else(far)), if requeue_at.is_some() => {
                    let now = Instant::now();
                    let due: BTreeSet<SetKey> = self
                        .requeue
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in &due {
                        self.requeue.remove(k);
                    }
                    Trigger::Requeue(due)
                }
                _ = tokio::time::sleep_until(self.retry_at.unwrap_or_else(far)), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    Trigger::Retry
                }
                changed = self.leading.changed() => {
                    if changed.is_err() {
                        return Err(DaemonError::TaskDied { task: "lease" });
                    }
                    Trigger::Leadership(*self.leading.borrow())
                }
                _ = stopped(&mut self.shutdown) => return Ok(()),
            };
            let mut wake = Wake::default();
            wake.add(first);
            while let Ok(t) = triggers.try_recv() {
                wake.add(t);
            }
            tracing::debug!(reasons = ?wake.reasons, sets = wake.sets.len(), "sync loop woke");
            let polled = wake.check_tip;
            for next in self.attempt(wake).await {
                self.schedule(next);
            }
            if polled {
                next_poll = Instant::now() + poll_backoff(self.cfg.interval, self.poll_failures);
            }
        }
    }

    /// Turns what a sync asked for into the loop's timers.
    fn schedule(&mut self, next: Next) {
        match next {
            Next::Requeue { sets, after } => {
                let at = Instant::now() + after;
                for k in sets {
                    let e = self.requeue.entry(k).or_insert(at);
                    *e = (*e).min(at);
                }
            }
            Next::Backoff { after } => {
                let at = Instant::now() + after;
                self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
            }
        }
    }

    /// One wake-up of the loop: ask for the tip when a trigger wants it, and sync what is due: every set
    /// of a new commit (incrementally), or only the sets named (requeued, drifted).
    async fn attempt(&mut self, wake: Wake) -> Vec<Next> {
        let leading = *self.leading.borrow();
        self.shared.metrics.leader.set(i64::from(leading));
        if !leading {
            // A follower is ready once it can reach the cluster; it writes nothing.
            self.shared.ready.store(true, Ordering::SeqCst);
            // Another replica leads meanwhile: what this one knew of the branch and the sets is stale.
            self.last_tip = None;
            self.failed_tip = None;
            self.failures = 0;
            self.previous = None;
            self.in_step.clear();
            self.requeue.clear();
            self.set_failures.clear();
            self.retry_at = None;
            return Vec::new();
        }
        let mut full = None;
        if wake.check_tip {
            let tip = match self.tip().await {
                Ok(t) => {
                    self.reachable();
                    t
                }
                Err(e) => {
                    self.unreachable(&e);
                    // The named sets wait for the repository too.
                    return vec![Next::Requeue {
                        sets: wake.sets,
                        after: poll_backoff(self.cfg.interval, self.poll_failures),
                    }];
                }
            };
            let waiting_out_backoff = self.failures > 0 && tip == self.failed_tip && !wake.retry;
            if tip.is_some() && tip == self.last_tip || waiting_out_backoff {
                self.shared
                    .metrics
                    .polls
                    .get_or_create(&metrics::ResultLabel {
                        result: "unchanged",
                    })
                    .inc();
            } else {
                self.shared
                    .metrics
                    .polls
                    .get_or_create(&metrics::ResultLabel { result: "changed" })
                    .inc();
                full = Some(tip);
            }
        }
        match full {
            Some(tip) => {
                tracing::info!(reasons = ?wake.reasons, "syncing the branch's tip");
                self.sync_once(None, tip).await
            }
            None if !wake.sets.is_empty() => {
                tracing::info!(reasons = ?wake.reasons, sets = ?wake.sets.iter().map(ToString::to_string).collect::<Vec<_>>(), "syncing sets again");
                let tip = self.last_tip;
                self.sync_once(Some(wake.sets), tip).await
            }
            None => Vec::new(),
        }
    }

    /// A poll reached the repository: the backoff ends.
    fn reachable(&mut self) {
        if self.poll_failures > 0 {
            tracing::info!(
                repo = %crate::status::redact_url_userinfo(&self.cfg.sync.repo),
                failed_polls = self.poll_failures,
                "the repository answers again; polling every {:?}",
                self.cfg.interval
            );
        }
        self.poll_failures = 0;
        let m = &self.shared.metrics;
        m.git_poll_failures.set(0);
        m.git_backoff_seconds.set(0.0);
    }

    /// A poll could not reach the repository: count it, say so, and back off.
    fn unreachable(&mut self, e: &SourceError) {
        self.poll_failures = self.poll_failures.saturating_add(1);
        let backoff = poll_backoff(self.cfg.interval, self.poll_failures);
        let m = &self.shared.metrics;
        m.polls
            .get_or_create(&metrics::ResultLabel { result: "error" })
            .inc();
        m.failures
            .get_or_create(&metrics::CategoryLabel {
                category: e.category(),
            })
            .inc();
        m.git_poll_failures.set(i64::from(self.poll_failures));
        m.git_backoff_seconds.set(backoff.as_secs_f64());
        let repo = crate::status::redact_url_userinfo(&self.cfg.sync.repo);
        tracing::warn!(
            repo = %repo,
            branch = %self.cfg.branch,
            category = e.category(),
            failed_polls = self.poll_failures,
            retry_in_seconds = backoff.as_secs_f64(),
            error = %crate::sync::error_chain(e),
            "{} {repo}: next poll in {backoff:?}",
            if matches!(e, SourceError::Fetch { .. } | SourceError::Clone { .. }) {
                "cannot reach the repository"
            } else {
                "cannot read the repository"
            }
        );
    }

    /// The commit the cache clone last fetched for the branch, from an earlier run: what a first sync
    /// compares with to tell a force-push.
    async fn cached_tip(&self) -> Option<CommitId> {
        let (opts, branch) = (self.cfg.sync.clone(), self.cfg.branch.clone());
        if !crate::source::is_remote(&opts.repo) {
            return None;
        }
        tokio::task::spawn_blocking(move || {
            if !Repo::cache_path(&opts.repo, &opts.cache_dir).exists() {
                return None;
            }
            Repo::open_bare_cache(&opts.repo, &opts.cache_dir)
                .ok()?
                .tracking_tip(&branch)
        })
        .await
        .ok()
        .flatten()
    }

    /// The branch's tip by one ref negotiation (no objects fetched when it is unchanged). Commits of
    /// hotsync's own (status commits on the tracked branch) are stepped over: the tip that counts is
    /// the newest commit a person made. In a shallow cache, more history is fetched when a status
    /// commit's parent lies beyond the boundary; a corrupt cache is cloned again.
    async fn tip(&self) -> Result<Option<CommitId>, SourceError> {
        let opts = self.cfg.sync.clone();
        let branch = self.cfg.branch.clone();
        let last = self.last_tip;
        let joined =
            tokio::task::spawn_blocking(move || -> Result<Option<CommitId>, SourceError> {
                let step_over_own = |repo: &Repo, tip: CommitId| -> Result<_, SourceError> {
                    if !repo.has_commit(tip) {
                        repo.fetch(&opts.fetch)?;
                    }
                    repo.skip_own_commits(tip, Some(&opts.fetch))
                };
                if !crate::source::is_remote(&opts.repo) {
                    let repo = Repo::open(std::path::Path::new(&opts.repo))?;
                    let tip = repo.resolve(&branch).or_else(|_| repo.resolve("HEAD")).ok();
                    return tip.map(|t| repo.skip_own_commits(t, None)).transpose();
                }
                let Some(tip) = Repo::open_bare_cache(&opts.repo, &opts.cache_dir)?
                    .remote_tip(&branch, &opts.fetch)?
                else {
                    return Ok(None);
                };
                if Some(tip) == last {
                    return Ok(Some(tip));
                }
                let (_, tip) =
                    Repo::with_cache(&opts.repo, &opts.cache_dir, &opts.fetch, |repo| {
                        step_over_own(repo, tip)
                    })?;
                Ok(Some(tip))
            })
            .await;
        joined.unwrap_or_else(|e| {
            Err(SourceError::Cache {
                path: std::path::PathBuf::from("<repository reader>"),
                source: std::io::Error::other(e.to_string()),
            })
        })
    }

    /// One sync with events and metrics: of every set at `tip` (`only` None), or of the `only` sets.
    /// Returns what is due next.
    async fn sync_once(
        &mut self,
        only: Option<BTreeSet<SetKey>>,
        tip: Option<CommitId>,
    ) -> Vec<Next> {
        self.busy.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let events = {
            let (client, recorder, shared) = (
                self.client.clone(),
                self.recorder.clone(),
                self.shared.clone(),
            );
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    publish_progress(&client, &recorder, &shared, p).await;
                }
            })
        };
        let full = only.is_none();
        for k in self
            .drifted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            self.in_step.remove(k);
        }
        let generations: BTreeMap<SetKey, i64> = self
            .generations
            .state()
            .iter()
            .filter_map(|m| {
                Some((
                    SetKey {
                        namespace: m.metadata.namespace.clone()?,
                        name: m.metadata.name.clone()?,
                    },
                    m.metadata.generation?,
                ))
            })
            .collect();
        let result = {
            let target = crate::sync::SyncTarget {
                revision: None,
                previous: self.previous,
                only: only.clone(),
                in_step: Arc::new(self.in_step.clone()),
                generations: Arc::new(generations),
            };
            let fut = crate::sync::sync_target(&self.client, &self.cfg.sync, &target, Some(&tx));
            tokio::pin!(fut);
            let mut stop = self.shutdown.clone();
            tokio::select! {
                r = &mut fut => Some(r),
                _ = stopped(&mut stop) => {
                    // Finish the step in flight within the grace period; otherwise drop the sync between
                    // two writes. The hold stays on the set: the next leader resumes from the cluster.
                    tokio::time::timeout(self.cfg.shutdown_grace, &mut fut).await.ok()
                }
            }
        };
        drop(tx);
        let _ = events.await;
        self.busy.store(false, Ordering::SeqCst);
        let m = &self.shared.metrics;
        m.sync_duration.observe(started.elapsed().as_secs_f64());
        let Some(result) = result else {
            m.syncs
                .get_or_create(&metrics::ResultLabel {
                    result: "interrupted",
                })
                .inc();
            return Vec::new();
        };
        match result {
            Ok(report) => {
                self.record(&report, full);
                self.desired_changed.send_modify(|v| *v = v.wrapping_add(1));
                // The commit was read, whatever its manifests say: a force-push is told once.
                if let Ok(sha) = report.source.sha.parse::<CommitId>() {
                    self.previous = Some(sha);
                }
                if let Some(old) = &report.force_pushed_from {
                    m.force_pushes.inc();
                    publish_force_push(
                        &self.client,
                        &self.recorder,
                        &self.cfg.branch,
                        old,
                        &report,
                    )
                    .await;
                }
                if let Some(sink) = &self.cfg.status {
                    // Written after every sync that ran, for the sets it synced; the writer commits only
                    // when a file changed, that is on a change of phase or of a pod's state.
                    match crate::status::report::write(
                        sink.writer.clone(),
                        &self.client,
                        &sink.cluster,
                        &report,
                    )
                    .await
                    {
                        Ok(Some(commit)) => tracing::info!(%commit, "status committed"),
                        Ok(None) => {}
                        Err(e) => {
                            m.failures
                                .get_or_create(&metrics::CategoryLabel {
                                    category: e.category(),
                                })
                                .inc();
                            tracing::warn!(category = e.category(), error = %crate::sync::error_chain(&e), "status not written");
                        }
                    }
                }
                self.shared.ready.store(true, Ordering::SeqCst);
                if full {
                    self.failures = 0;
                    self.failed_tip = None;
                    self.last_tip = tip;
                }
                self.next_for(&report)
            }
            Err(e) => {
                m.syncs
                    .get_or_create(&metrics::ResultLabel { result: "error" })
                    .inc();
                m.failures
                    .get_or_create(&metrics::CategoryLabel {
                        category: e.category(),
                    })
                    .inc();
                tracing::error!(category = e.category(), error = %crate::sync::error_chain(&e), "sync failed");
                self.failures += 1;
                let after = failure_backoff(self.cfg.interval, self.failures);
                let mut next = vec![Next::Backoff { after }];
                if full {
                    self.failed_tip = tip;
                    self.last_tip = None;
                } else if let Some(sets) = only {
                    next.push(Next::Requeue { sets, after });
                }
                next
            }
        }
    }

    /// What the sets of a report ask for next, and what is in step now. Sets OKG still rolls out and
    /// sets with deferred game servers are looked at again after the poll interval (no backoff), so that
    /// their status turns Synced once the pods are ready and each deferred game server is updated as
    /// soon as its opsState allows; a failed or timed-out rollout is retried with a backoff of its own;
    /// refusals and manifest errors wait for the next commit.
    fn next_for(&mut self, report: &SyncReport) -> Vec<Next> {
        let mut soon = BTreeSet::new();
        let mut retry: BTreeMap<Duration, BTreeSet<SetKey>> = BTreeMap::new();
        for s in &report.sets {
            let key = SetKey {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            };
            self.requeue.remove(&key);
            match s.outcome {
                Outcome::Synced => {
                    self.set_failures.remove(&key);
                    match (report.fingerprints.get(&key), s.generation) {
                        (Some(fingerprint), Some(generation)) => {
                            self.in_step.insert(
                                key,
                                InStep {
                                    fingerprint: fingerprint.clone(),
                                    generation,
                                },
                            );
                        }
                        _ => {
                            self.in_step.remove(&key);
                        }
                    }
                }
                // A paused step is checked again soon: a promotion or its pause moves it on.
                Outcome::Progressing
                | Outcome::Deferred
                | Outcome::Degraded
                | Outcome::StepPaused
                | Outcome::Frozen => {
                    self.set_failures.remove(&key);
                    self.in_step.remove(&key);
                    soon.insert(key);
                }
                Outcome::Failed | Outcome::TimedOut => {
                    self.in_step.remove(&key);
                    let n = self.set_failures.entry(key.clone()).or_insert(0);
                    *n += 1;
                    retry
                        .entry(failure_backoff(self.cfg.interval, *n))
                        .or_default()
                        .insert(key);
                }
                Outcome::Refused | Outcome::Paused | Outcome::Aborted | Outcome::DryRun => {
                    self.set_failures.remove(&key);
                    self.in_step.remove(&key);
                }
            }
        }
        let mut next = Vec::new();
        if !soon.is_empty() {
            next.push(Next::Requeue {
                sets: soon,
                after: self.cfg.interval,
            });
        }
        next.extend(
            retry
                .into_iter()
                .map(|(after, sets)| Next::Requeue { sets, after }),
        );
        next
    }

    fn record(&self, report: &SyncReport, full: bool) {
        let m = &self.shared.metrics;
        let result = match report.exit_code() {
            0 => "ok",
            1 => "failed",
            2 => "invalid",
            3 => "refused",
            4 => "timedout",
            5 => "frozen",
            _ => "other",
        };
        m.syncs
            .get_or_create(&metrics::ResultLabel { result })
            .inc();
        for e in &report.errors {
            tracing::error!(file = %e.file, line = ?e.line, document = ?e.document, message = %e.message, "manifest error: nothing applied");
        }
        if report.errors.is_empty() {
            // Drift is judged against what Git wants now, for sets that are not partitioned or paused.
            // Sets this sync skipped keep what they had; a full sync forgets sets gone from Git.
            let mut want = self.desired.lock().unwrap_or_else(|e| e.into_inner());
            if full {
                let present: BTreeSet<SetKey> = report
                    .skipped
                    .iter()
                    .cloned()
                    .chain(report.sets.iter().map(|s| SetKey {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                    }))
                    .collect();
                want.retain(|k, _| present.contains(k));
            }
            for s in &report.sets {
                let key = SetKey {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                };
                if s.judge_drift {
                    want.insert(key, s.target_images.clone());
                } else {
                    want.remove(&key);
                }
            }
        }
        for s in &report.sets {
            let outcome = format!("{:?}", s.outcome).to_lowercase();
            let label: &'static str = match s.outcome {
                Outcome::Synced => "synced",
                Outcome::Progressing => "progressing",
                Outcome::Paused => "paused",
                Outcome::StepPaused => "step_paused",
                Outcome::Deferred => "deferred",
                Outcome::Degraded => "degraded",
                Outcome::Refused => "refused",
                Outcome::Aborted => "aborted",
                Outcome::Frozen => "frozen",
                Outcome::Failed => "failed",
                Outcome::TimedOut => "timedout",
                Outcome::DryRun => "dryrun",
            };
            m.rollouts
                .get_or_create(&metrics::ResultLabel { result: label })
                .inc();
            let set = metrics::SetLabel {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            };
            match s.step {
                Some(st) if s.outcome != Outcome::Synced => {
                    m.rollout_step
                        .get_or_create(&set)
                        .set(i64::try_from(st.step).unwrap_or(i64::MAX));
                    m.rollout_steps
                        .get_or_create(&set)
                        .set(i64::try_from(st.of).unwrap_or(i64::MAX));
                }
                _ => {
                    m.rollout_step.remove(&set);
                    m.rollout_steps.remove(&set);
                }
            }
            tracing::info!(set = %format!("{}/{}", s.namespace, s.name), outcome, impact = s.impact.as_str(), message = ?s.message, commit = %report.source.sha, "set synced");
        }
        if report.exit_code() == 0 {
            m.set_commit(&report.source.sha);
            m.last_sync_timestamp.set(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            );
        }
    }
}

/// A `BranchForcePushed` Event on each set the sync touched: the branch was rewritten, and the set now
/// follows the new head.
async fn publish_force_push(
    client: &Client,
    recorder: &Recorder,
    branch: &str,
    old: &str,
    report: &SyncReport,
) {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let subject: String = report.source.subject.chars().take(200).collect();
    let ev = Event {
        type_: EventType::Warning,
        reason: "BranchForcePushed".into(),
        note: Some(format!(
            "branch {branch} was force-pushed: {} ({subject}) does not descend from {}, the commit synced before; following the new head",
            short(&report.source.sha),
            short(old),
        )),
        action: "Sync".into(),
        secondary: None,
    };
    for set in &report.sets {
        let api: Api<crate::model::GameServerSet> = Api::namespaced(client.clone(), &set.namespace);
        if let Ok(g) = api.get(&set.name).await {
            if let Err(e) = recorder.publish(&ev, &g.object_ref(&())).await {
                tracing::debug!(error = %e, "could not publish an event");
            }
        }
    }
}

/// The note of a `RolloutFinished`/`RolloutFailed` Event: the outcome, the commit (`hotsync wait
/// --kubeconfig` reads it, to tell this rollout's failure from an older one's) and why; at most 1 kB, as
/// the API server takes notes.
pub fn rollout_note(outcome: Outcome, revision: Option<&str>, message: Option<&str>) -> String {
    let mut note = format!("outcome {outcome:?}");
    if let Some(r) = revision {
        note.push_str(&format!(" at commit {r}"));
    }
    if let Some(m) = message {
        note.push_str(&format!(": {m}"));
    }
    if note.len() > 1000 {
        let mut end = 997;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

/// The reason of the Event that ends a rollout: `RolloutFinished`, `RolloutPaused` (at a step),
/// `RolloutDeferred`, `RolloutFrozen`, `RolloutAborted`, or `RolloutFailed`.
pub fn rollout_reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::StepPaused => "RolloutPaused",
        Outcome::Deferred => "RolloutDeferred",
        Outcome::Frozen => "RolloutFrozen",
        Outcome::Aborted => "RolloutAborted",
        Outcome::Failed | Outcome::TimedOut | Outcome::Degraded => "RolloutFailed",
        _ => "RolloutFinished",
    }
}

/// The commit a rollout Event's note names (see [`rollout_note`]).
pub fn note_commit(note: &str) -> Option<&str> {
    let rest = note.split_once(" at commit ")?.1;
    Some(rest.split([':', ' ']).next().unwrap_or(rest))
}

/// Turns rollout progress into Events on the set and into metrics.
async fn publish_progress(
    client: &Client,
    recorder: &Recorder,
    shared: &http::Shared,
    p: Progress,
) {
    let (set, ev) = match p {
        Progress::Started { set, pods } => (
            set,
            Event {
                type_: EventType::Normal,
                reason: "RolloutStarted".into(),
                note: Some(format!("restarting containers in place in {pods} pod(s)")),
                action: "HotUpdate".into(),
                secondary: None,
            },
        ),
        Progress::PodDone { .. } => {
            shared.metrics.pods_patched.inc();
            return;
        }
        Progress::Finished {
            set,
            outcome,
            revision,
            message,
        } => (
            set,
            Event {
                type_: match outcome {
                    Outcome::Failed | Outcome::TimedOut | Outcome::Degraded | Outcome::Aborted => {
                        EventType::Warning
                    }
                    _ => EventType::Normal,
                },
                reason: rollout_reason(outcome).into(),
                note: Some(rollout_note(
                    outcome,
                    revision.as_deref(),
                    message.as_deref(),
                )),
                action: "HotUpdate".into(),
                secondary: None,
            },
        ),
    };
    let Some((ns, name)) = set.split_once('/') else {
        return;
    };
    let api: Api<crate::model::GameServerSet> = Api::namespaced(client.clone(), ns);
    if let Ok(g) = api.get(name).await {
        if let Err(e) = recorder.publish(&ev, &g.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_backs_off_by_doubling_per_failure_up_to_a_cap() {
        let every = Duration::from_millis(300);
        assert_eq!(poll_backoff(every, 0), every, "no failure: the interval");
        assert_eq!(poll_backoff(every, 1), Duration::from_millis(600));
        assert_eq!(poll_backoff(every, 3), Duration::from_millis(2_400));
        assert_eq!(poll_backoff(every, 30), MAX_POLL_BACKOFF, "capped");
        assert_eq!(poll_backoff(every, u32::MAX), MAX_POLL_BACKOFF);
        let hourly = Duration::from_secs(3_600);
        assert_eq!(
            poll_backoff(hourly, 2),
            hourly,
            "never shorter than the interval"
        );
    }
}
