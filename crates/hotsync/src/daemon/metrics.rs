//! The daemon's Prometheus metrics. Labels are static categories and outcomes, never error text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: &'static str,
}

/// A set, for per-set gauges (bounded by the sets in Git).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetLabel {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabel {
    pub commit: String,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    pub syncs: Family<ResultLabel, Counter>,
    pub rollouts: Family<ResultLabel, Counter>,
    pub pods_patched: Counter,
    pub failures: Family<CategoryLabel, Counter>,
    pub sync_duration: Histogram,
    pub last_sync_timestamp: Gauge<f64, AtomicU64>,
    pub last_synced_commit: Family<CommitLabel, Gauge>,
    pub leader: Gauge,
    pub drifted_pods: Gauge,
    pub drift_detected: Counter,
    pub webhook_requests: Family<ResultLabel, Counter>,
    pub polls: Family<ResultLabel, Counter>,
    /// The wait before the next poll while the repository cannot be reached; 0 while it answers.
    pub git_backoff_seconds: Gauge<f64, AtomicU64>,
    /// Consecutive polls that could not reach the repository.
    pub git_poll_failures: Gauge,
    pub force_pushes: Counter,
    /// A progressive rollout's step reached (1-based) by set; removed when the set is not at a step.
    pub rollout_step: Family<SetLabel, Gauge>,
    /// Its number of steps.
    pub rollout_steps: Family<SetLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under `hotsync_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            syncs: Family::default(),
            rollouts: Family::default(),
            pods_patched: Counter::default(),
            failures: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            last_sync_timestamp: Gauge::default(),
            last_synced_commit: Family::default(),
            leader: Gauge::default(),
            drifted_pods: Gauge::default(),
            drift_detected: Counter::default(),
            webhook_requests: Family::default(),
            polls: Family::default(),
            git_backoff_seconds: Gauge::default(),
            git_poll_failures: Gauge::default(),
            force_pushes: Counter::default(),
            rollout_step: Family::default(),
            rollout_steps: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("hotsync");
        r.register(
            "rollout_step",
            "The step (1-based) a progressive rollout (hotsync.dev/steps) has reached, by set",
            m.rollout_step.clone(),
        );
        r.register(
            "rollout_steps",
            "The steps of a progressive rollout under way, by set",
            m.rollout_steps.clone(),
        );
        r.register(
            "syncs",
            "Syncs run, by result (ok, failed, refused, timedout, invalid, error)",
            m.syncs.clone(),
        );
        r.register(
            "rollouts",
            "Set rollouts finished, by outcome",
            m.rollouts.clone(),
        );
        r.register(
            "pods_patched",
            "Pods whose containers hotsync restarted in place",
            m.pods_patched.clone(),
        );
        r.register(
            "failures",
            "Failures by static category",
            m.failures.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "Duration of a whole sync",
            m.sync_duration.clone(),
        );
        r.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last sync that finished",
            m.last_sync_timestamp.clone(),
        );
        r.register(
            "last_synced_commit_info",
            "The commit of the last sync that finished (value 1, commit as a label)",
            m.last_synced_commit.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the lease and may write",
            m.leader.clone(),
        );
        r.register(
            "drifted_pods",
            "Pods whose images differ from Git outside a rollout",
            m.drifted_pods.clone(),
        );
        r.register(
            "drift_detected",
            "Times a drift from Git was detected",
            m.drift_detected.clone(),
        );
        r.register(
            "webhook_requests",
            "Webhook requests by result",
            m.webhook_requests.clone(),
        );
        r.register(
            "polls",
            "Polls of the repository by result (unchanged, changed, error)",
            m.polls.clone(),
        );
        r.register(
            "git_backoff_seconds",
            "Seconds the poll waits before asking the repository again while it cannot be reached (0 while it answers)",
            m.git_backoff_seconds.clone(),
        );
        r.register(
            "git_poll_failures",
            "Consecutive polls that could not reach the repository",
            m.git_poll_failures.clone(),
        );
        r.register(
            "branch_force_pushes",
            "Times the tracked branch was found force-pushed (its new head does not descend from the commit synced before)",
            m.force_pushes.clone(),
        );
        m
    }

    /// Sets the info metric to the one commit last synced.
    pub fn set_commit(&self, commit: &str) {
        self.last_synced_commit.clear();
        self.last_synced_commit
            .get_or_create(&CommitLabel {
                commit: commit.to_string(),
            })
            .set(1);
    }
}
