//! The test bed that examines hotsync: a genuine kube-apiserver with etcd on loopback, a real node where
//! the machine allows (containerd, kubelet, scheduler, controller-manager, a local registry), and, written
//! from their upstream source, what cannot run here: OpenKruiseGame's controllers and admission webhooks
//! ([`okg`]) and Kruise's Advanced StatefulSet controller ([`kruise`]); a simulated kubelet ([`kubelet`])
//! stands in for the real node where hundreds of pods are needed.
//!
//! This crate depends on the typed model and Kubernetes' client only, never on the product: it takes no
//! decision from hotsync, so that a wrong rule in hotsync shows as a failing test instead of being echoed.
//! Upstream's names are its own ([`names`]).
//!
//! [`LocalCluster`] starts the API server (through the embedded `scripts/start-cluster.sh`) and, with
//! [`NodeMode::Real`], the node; [`Simulation`] runs the simulated controllers against any `kube::Client`.
//! Nothing else knows it talks to a simulation: objects go through the API server as on a real cluster.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hotsync_sim::{ClusterOptions, LocalCluster, SimConfig, Simulation};
//! let cluster = LocalCluster::start(ClusterOptions::default()).await?;
//! let client = cluster.client().await?;
//! let sim = Simulation::start(client.clone(), SimConfig::fast()).await?;
//! // ... apply GameServerSets with `client`, or point kubectl at `cluster.kubeconfig()` ...
//! sim.shutdown().await?;
//! cluster.stop()?;
//! # Ok(()) }
//! ```

mod cache;
pub mod cluster;
mod gc;
pub mod images;
pub mod kruise;
pub mod kubelet;
pub mod names;
pub mod node;
pub mod oci;
pub mod okg;
mod pods;

pub use cluster::{ClusterEnv, ClusterError, ClusterOptions, LocalCluster, NodeMode};
pub use okg::webhook::{WebhookMode, Webhooks};

use futures::future::{select_all, FutureExt as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the simulated kubelet behaves: delays, and the images it fails on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SimConfig {
    /// Time from a pod's binding to its containers running, in milliseconds.
    pub start_delay_ms: u64,
    /// Time from a container running to it being ready, in milliseconds.
    pub ready_delay_ms: u64,
    /// Time from an image change (or a crash) to the new container running, in milliseconds.
    pub restart_delay_ms: u64,
    /// Images containing any of these substrings fail to pull (ErrImagePull, then ImagePullBackOff).
    pub missing_image_markers: Vec<String>,
    /// Images containing any of these substrings crash after starting (CrashLoopBackOff).
    pub crashing_image_markers: Vec<String>,
    /// Images containing any of these substrings run, become ready, and exit with an error after
    /// `flaky_after_ms` of running; the kubelet restarts them after a back-off, and they do it again.
    pub flaky_image_markers: Vec<String>,
    /// How long a flaky image's container runs before it exits, in milliseconds.
    pub flaky_after_ms: u64,
    /// Images containing any of these substrings run and become ready, and `unready_after_ms` after
    /// they started their readiness fails (as a readiness probe that stops passing): the container
    /// keeps running, not ready, and is not restarted.
    pub unready_image_markers: Vec<String>,
    /// How long an unready image's container is ready after it starts, in milliseconds (from its
    /// start, so it includes `ready_delay_ms`).
    pub unready_after_ms: u64,
    /// The longest a deleted pod's grace period is honoured, in milliseconds.
    pub grace_cap_ms: u64,
    /// The name of the Node the kubelet registers and binds pods to.
    pub node_name: String,
    /// Image digests by reference (`registry.example.com/sidecar:v0.2` -> `sha256:...`): two tags of one
    /// digest are one image to the node. A reference not listed has a digest of its own.
    pub image_digests: BTreeMap<String, String>,
    /// Run the simulated kubelet (and a garbage collector, since no controller-manager runs beside it).
    /// Off with a real node.
    pub simulated_kubelet: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            start_delay_ms: 500,
            ready_delay_ms: 1000,
            restart_delay_ms: 500,
            missing_image_markers: vec!["missing".into()],
            crashing_image_markers: vec!["crash".into()],
            flaky_image_markers: vec!["flaky".into()],
            flaky_after_ms: 5000,
            unready_image_markers: vec!["unready".into()],
            unready_after_ms: 30000,
            grace_cap_ms: 1000,
            node_name: kubelet::DEFAULT_NODE_NAME.into(),
            image_digests: BTreeMap::new(),
            simulated_kubelet: true,
        }
    }
}

impl SimConfig {
    /// Delays of tens of milliseconds, for tests.
    pub fn fast() -> Self {
        Self {
            start_delay_ms: 20,
            ready_delay_ms: 30,
            restart_delay_ms: 20,
            grace_cap_ms: 20,
            ..Self::default()
        }
    }

    pub fn start_delay(&self) -> Duration {
        Duration::from_millis(self.start_delay_ms)
    }

    pub fn ready_delay(&self) -> Duration {
        Duration::from_millis(self.ready_delay_ms)
    }

    pub fn restart_delay(&self) -> Duration {
        Duration::from_millis(self.restart_delay_ms)
    }

    pub fn flaky_after(&self) -> Duration {
        Duration::from_millis(self.flaky_after_ms)
    }

    pub fn unready_after(&self) -> Duration {
        Duration::from_millis(self.unready_after_ms)
    }

    pub fn grace_cap(&self) -> Duration {
        Duration::from_millis(self.grace_cap_ms)
    }

    /// Whether pulling this image fails.
    pub fn is_missing(&self, image: &str) -> bool {
        self.missing_image_markers
            .iter()
            .any(|m| !m.is_empty() && image.contains(m.as_str()))
    }

    /// Whether this image's container crashes after starting.
    pub fn is_crashing(&self, image: &str) -> bool {
        self.crashing_image_markers
            .iter()
            .any(|m| !m.is_empty() && image.contains(m.as_str()))
    }

    /// Whether this image's container stops being ready after running for a while.
    pub fn is_unready(&self, image: &str) -> bool {
        self.unready_image_markers
            .iter()
            .any(|m| !m.is_empty() && image.contains(m.as_str()))
    }

    /// Whether this image's container exits with an error after running for a while.
    pub fn is_flaky(&self, image: &str) -> bool {
        self.flaky_image_markers
            .iter()
            .any(|m| !m.is_empty() && image.contains(m.as_str()))
    }
}

/// Why a simulation task stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The kubelet could not register its Node.
    #[error("could not register the node {node}")]
    RegisterNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// A controller's watch stream ended although no shutdown was asked for.
    #[error("the {task} task stopped unexpectedly")]
    Ended { task: &'static str },
    /// A task panicked or was cancelled.
    #[error("the {task} task panicked or was cancelled")]
    Join {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A task did not stop within the shutdown timeout and was aborted.
    #[error("the {task} task did not stop in time")]
    ShutdownTimeout { task: &'static str },
    /// OKG's admission webhooks could not be served or registered.
    #[error("OKG's simulated webhooks: {what}")]
    Webhook { what: String },
}

impl SimError {
    /// A static category, for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SimError::RegisterNode { .. } => "register_node",
            SimError::Ended { .. } => "ended",
            SimError::Join { .. } => "join",
            SimError::ShutdownTimeout { .. } => "shutdown_timeout",
            SimError::Webhook { .. } => "webhook",
        }
    }
}

type Task = (&'static str, JoinHandle<Result<(), SimError>>);

/// The running simulated controllers, webhooks and (optionally) kubelet. Every task's `JoinHandle` is
/// kept here: dropping the simulation aborts them; [`Simulation::shutdown`] stops them gracefully and
/// unregisters the webhooks.
pub struct Simulation {
    tasks: Vec<Task>,
    shutdown: watch::Sender<bool>,
    config: SimConfig,
    webhooks: std::sync::Arc<Webhooks>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("tasks", &self.tasks.iter().map(|t| t.0).collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

/// A future that completes when shutdown is asked for (or the simulation is dropped).
pub(crate) async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: the simulation was dropped, so stop too.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Simulation {
    /// Serves and registers OKG's webhooks, then spawns OKG's GameServerSet and GameServer controllers,
    /// Kruise's Advanced StatefulSet controller and, with [`SimConfig::simulated_kubelet`], the simulated
    /// kubelet and garbage collector, on the current tokio runtime. They watch every namespace through
    /// `client`.
    ///
    /// # Errors
    /// [`SimError::Webhook`] when the webhooks cannot be served or registered.
    pub async fn start(client: kube::Client, config: SimConfig) -> Result<Simulation, SimError> {
        let (tx, rx) = watch::channel(false);
        let (webhooks, server) = okg::webhook::start(client.clone(), rx.clone()).await?;
        let mut tasks: Vec<Task> = vec![
            ("okg-webhook", server),
            (
                "okg-gameserverset",
                tokio::spawn(okg::run_gss(client.clone(), rx.clone())),
            ),
            (
                "okg-gameserver",
                tokio::spawn(okg::gameserver::run(client.clone(), rx.clone())),
            ),
            (
                "kruise",
                tokio::spawn(kruise::run(client.clone(), rx.clone())),
            ),
        ];
        if config.simulated_kubelet {
            tasks.push((
                "kubelet",
                tokio::spawn(kubelet::run(client.clone(), config.clone(), rx.clone())),
            ));
            tasks.push(("gc", tokio::spawn(gc::run(client, rx))));
        }
        Ok(Simulation {
            tasks,
            shutdown: tx,
            config,
            webhooks: std::sync::Arc::new(webhooks),
        })
    }

    /// OKG's webhooks, to make one namespace's network plugin misbehave.
    pub fn webhooks(&self) -> std::sync::Arc<Webhooks> {
        self.webhooks.clone()
    }

    /// The configuration the simulation runs with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Waits until any task stops and returns why. A task that stops without an error before shutdown was
    /// asked for is reported as [`SimError::Ended`]. Pending forever when there are no tasks left.
    pub async fn wait_any_failure(&mut self) -> SimError {
        if self.tasks.is_empty() {
            return futures::future::pending().await;
        }
        let names: Vec<&'static str> = self.tasks.iter().map(|t| t.0).collect();
        let (result, index, _) =
            select_all(self.tasks.iter_mut().map(|t| (&mut t.1).boxed())).await;
        let task = names.get(index).copied().unwrap_or("unknown");
        if index < self.tasks.len() {
            self.tasks.remove(index);
        }
        match result {
            Ok(Ok(())) => SimError::Ended { task },
            Ok(Err(e)) => e,
            Err(source) => SimError::Join { task, source },
        }
    }

    /// Asks every task to stop and waits for them (up to 10 seconds each, then aborts). Returns the first
    /// error a task reported.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        self.webhooks.unregister().await;
        let _ = self.shutdown.send(true);
        let mut first: Option<SimError> = None;
        for (task, mut handle) in std::mem::take(&mut self.tasks) {
            let outcome = match tokio::time::timeout(Duration::from_secs(10), &mut handle).await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(e),
                Ok(Err(source)) => Some(SimError::Join { task, source }),
                Err(_) => {
                    handle.abort();
                    Some(SimError::ShutdownTimeout { task })
                }
            };
            if first.is_none() {
                first = outcome;
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}

/// Lowercase hex sha256 of some bytes.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(data))
}

/// The current time in whole seconds, as the API server stores timestamps.
pub(crate) fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(whole_seconds(
        k8s_openapi::jiff::Timestamp::now(),
    ))
}

pub(crate) fn whole_seconds(t: k8s_openapi::jiff::Timestamp) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_match_substrings() {
        let c = SimConfig::default();
        assert!(c.is_missing("registry.example/sidecar:missing-v9"));
        assert!(!c.is_missing("registry.example/sidecar:v0.2"));
        assert!(c.is_crashing("sidecar:crash"));
        assert!(c.is_flaky("sidecar:flaky"));
        assert!(c.is_unready("sidecar:unready"));
        assert!(!c.is_unready("sidecar:slow-ready") && !c.is_crashing("sidecar:unready"));
        assert!(!c.is_crashing("sidecar:flaky"));
    }

    #[test]
    fn the_config_reads_from_partial_json() {
        let c: SimConfig = serde_json::from_str(r#"{"readyDelayMs": 5}"#).expect("parses");
        assert_eq!(c.ready_delay_ms, 5);
        assert_eq!(c.start_delay_ms, SimConfig::default().start_delay_ms);
    }
}
