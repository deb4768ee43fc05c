//! The shared cluster of the test binary: one genuine kube-apiserver (started on first use, stopped when the
//! process exits), our CRDs, and the simulated OKG controller and kubelet running on a runtime of their
//! own, so that every `#[tokio::test]` (each with its own runtime) can use it. Each test gets a fresh
//! namespace and its own client.
//!
//! A test that needs the API server fails loudly when it cannot have one: it never passes by skipping.

#![allow(dead_code)]

use hotsync::model::{GameServerSet, LABEL_OWNER_GSS};
use hotsync_sim::cluster::Crds;
use hotsync_sim::{ClusterOptions, LocalCluster, NodeMode, SimConfig, Simulation};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// OKG's and Kruise's own CRDs, which every test cluster installs (`../shared/okg/crds`).
pub fn upstream_crds_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/okg/crds"))
}

/// The delays the shared simulation runs with (tens of milliseconds), and its node's image table: the
/// `-same` tags of the sidecar share the digest of the tag they copy, as a re-tag in a registry does.
pub fn test_config() -> SimConfig {
    let mut config = SimConfig::fast();
    for repo in [
        "registry.example.com/sidecar",
        "registry.cn-hangzhou.aliyuncs.com/acs/sidecar",
        "sidecar",
    ] {
        for tag in ["v0.1", "v0.2", "v2"] {
            let digest = hotsync_sim::images::derived_digest(&format!("{repo}:{tag}"));
            config
                .image_digests
                .insert(format!("{repo}:{tag}"), digest.clone());
            config
                .image_digests
                .insert(format!("{repo}:{tag}-same"), digest);
        }
    }
    config
}

/// A shared cluster of the test binary.
struct Shared {
    kubeconfig: PathBuf,
    /// The real node, for the cluster that has one.
    node: Option<hotsync_sim::node::NodeEnv>,
    images: hotsync_sim::node::PushedImages,
    webhooks: std::sync::Arc<hotsync_sim::Webhooks>,
    failure: std::sync::Arc<Mutex<Option<String>>>,
    // Kept alive for the whole process: the simulation's tasks run on this runtime.
    _runtime: tokio::runtime::Runtime,
    _cluster: LocalCluster,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static REAL: OnceLock<Result<Shared, String>> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(0);

fn start_shared(node: NodeMode) -> Result<Shared, String> {
    // Started on a thread of its own: the calling test runs inside a runtime, which cannot block on another.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("sim")
            .build()
            .map_err(|e| format!("could not build the simulation's runtime: {e}"))?;
        let cluster = runtime
            .block_on(LocalCluster::start(ClusterOptions {
                crds: Some(Crds::Upstream(upstream_crds_dir())),
                node,
                ..ClusterOptions::default()
            }))
            .map_err(|e| {
                format!(
                    "could not start the local cluster: {}",
                    anyhow::Error::new(e)
                        .chain()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(": ")
                )
            })?;
        let kubeconfig = cluster.kubeconfig().to_path_buf();
        let failure = std::sync::Arc::new(Mutex::new(None));
        let f = failure.clone();
        let webhooks = runtime.block_on(async {
            let client = cluster
                .client()
                .await
                .map_err(|e| format!("could not build a client: {e}"))?;
            let config = SimConfig {
                simulated_kubelet: node == NodeMode::Simulated,
                ..test_config()
            };
            let mut sim = Simulation::start(client, config)
                .await
                .map_err(|e| format!("could not start the simulation: {e}"))?;
            let webhooks = sim.webhooks();
            // Watches the simulation for the whole process: a task that dies fails every later test.
            tokio::spawn(async move {
                let e = sim.wait_any_failure().await;
                let msg = format!("{:#}", anyhow::Error::new(e));
                eprintln!("simulation failed: {msg}");
                *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
                // Keep `sim` (and its remaining tasks) alive until the process exits.
                std::future::pending::<()>().await;
                drop(sim);
            });
            Ok::<_, String>(webhooks)
        })?;
        Ok(Shared {
            kubeconfig,
            node: cluster.node().cloned(),
            images: cluster.images().clone(),
            webhooks,
            failure,
            _runtime: runtime,
            _cluster: cluster,
        })
    })
    .join()
    .map_err(|_| "the thread starting the local cluster panicked".to_string())?
}

fn shared(node: NodeMode) -> &'static Shared {
    let cell = match node {
        NodeMode::Simulated => &SHARED,
        NodeMode::Real => &REAL,
    };
    match cell.get_or_init(|| start_shared(node)) {
        Ok(s) => s,
        Err(e) => {
            panic!("this test needs the local cluster ({node:?} node) and cannot have one: {e}")
        }
    }
}

/// OKG's simulated webhooks of the shared cluster (started by [`env`]).
pub fn webhooks() -> std::sync::Arc<hotsync_sim::Webhooks> {
    match SHARED.get() {
        Some(Ok(s)) => s.webhooks.clone(),
        _ => panic!("the shared cluster is not started: call harness::env first"),
    }
}

fn assert_alive(s: &Shared) {
    if let Some(msg) = s.failure.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        panic!("the simulation is not running: {msg}");
    }
}

/// One test's view of a shared cluster.
pub struct TestEnv {
    pub client: kube::Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
    /// The real node, on the cluster that has one ([`real_env`]).
    pub node: Option<hotsync_sim::node::NodeEnv>,
    /// The digests of the real node's test images (`repository:tag` as pushed).
    pub images: hotsync_sim::node::PushedImages,
    pub failure: Option<std::sync::Arc<Mutex<Option<String>>>>,
}

/// The shared cluster with the simulated kubelet (started on first use), and a fresh namespace named
/// after `test`.
pub async fn env(test: &str) -> TestEnv {
    env_on(test, NodeMode::Simulated).await
}

/// The shared cluster with the real node (kubelet on containerd, scheduler, controller-manager and a
/// local registry; started on first use), and a fresh namespace whose `default` ServiceAccount exists.
pub async fn real_env(test: &str) -> TestEnv {
    env_on(test, NodeMode::Real).await
}

async fn env_on(test: &str, node: NodeMode) -> TestEnv {
    let (kubeconfig, node_env, images, failure) = tokio::task::spawn_blocking(move || {
        let s = shared(node);
        assert_alive(s);
        (
            s.kubeconfig.clone(),
            s.node.clone(),
            s.images.clone(),
            s.failure.clone(),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("starting the shared cluster failed: {e}"));
    let client = hotsync_sim::cluster::client_from_kubeconfig(&kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("could not build a client for the local API server: {e}"));
    let slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let namespace = format!(
        "{}-{}",
        slug.trim_matches('-'),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("could not create the namespace {namespace}: {e}"));
    if node == NodeMode::Real {
        hotsync_sim::cluster::wait_service_account(&client, &namespace, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{namespace} got no default ServiceAccount: {e}"));
    }
    TestEnv {
        client,
        namespace,
        kubeconfig,
        node: node_env,
        images,
        failure: Some(failure),
    }
}

impl TestEnv {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates a set in this test's namespace.
    pub async fn create_gss(&self, gss: &GameServerSet) -> GameServerSet {
        let mut gss = gss.clone();
        gss.metadata.namespace = Some(self.namespace.clone());
        self.api::<GameServerSet>()
            .create(&PostParams::default(), &gss)
            .await
            .unwrap_or_else(|e| panic!("could not create the GameServerSet: {e}"))
    }

    /// The pods of a set, by name.
    pub async fn pods(&self, gss: &str) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!("{LABEL_OWNER_GSS}={gss}"));
        let mut pods = self
            .api::<Pod>()
            .list(&lp)
            .await
            .unwrap_or_else(|e| panic!("could not list pods: {e}"))
            .items;
        pods.sort_by_key(|p| p.metadata.name.clone());
        pods
    }

    /// Polls `check` until it returns `Some` or `timeout` passes; panics naming `what` and the last
    /// observation. `check` gets this env and returns the value or a description of what it saw.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = &self.failure {
                if let Some(msg) = f.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    panic!("the simulation is not running: {msg}");
                }
            }
            match check().await {
                Ok(v) => return v,
                Err(seen) if Instant::now() >= deadline => {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }
}

/// How long a test waits for the simulation to converge.
pub const CONVERGE: Duration = Duration::from_secs(30);

impl TestEnv {
    /// A token of the local cluster (`ADMIN_TOKEN`, `LIMITED_TOKEN`, `NONE_TOKEN`), from the `env` file
    /// the start script wrote beside the kubeconfig. `hotsync-limited` and `hotsync-none` have no
    /// rights until a test grants them some.
    pub fn token(&self, key: &str) -> String {
        let file = self.kubeconfig.with_file_name("env");
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.lines()
            .filter_map(|l| l.trim_start_matches("export ").split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim_matches(['"', '\'']).to_string())
            .unwrap_or_else(|| panic!("{key} not in {}", file.display()))
    }

    /// A client of the local API server that authenticates with `token` instead of the admin's.
    pub async fn client_with_token(&self, token: String) -> kube::Client {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        kube::Client::try_from(cfg).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Sync options for a test repository: wait for OKG, with the test timeouts.
pub fn sync_options(repo: &std::path::Path) -> hotsync::sync::SyncOptions {
    hotsync::sync::SyncOptions {
        repo: repo.display().to_string(),
        branch: None,
        path: ".".into(),
        load: Default::default(),
        cache_dir: repo.join(".cache"),
        fetch: Default::default(),
        rollout: hotsync::rollout::RolloutOptions {
            wait: true,
            wait_timeout: CONVERGE,
            pod_timeout: Duration::from_secs(20),
            ..hotsync::rollout::RolloutOptions::default()
        },
        set_concurrency: 4,
    }
}

/// The seed's set (`minecraft`: engine and sidecar, InPlaceIfPossible) in namespace `ns`, with extra lines
/// under `rollingUpdate` (each indented by six spaces and ending in a newline).
pub fn seed_manifest(ns: &str, replicas: i32, tag: &str, rolling: &str) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: minecraft
  namespace: {ns}
spec:
  replicas: {replicas}
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
{rolling}  gameServerTemplate:
    spec:
      containers:
        - name: minecraft
          image: registry.example.com/minecraft-demo:1.12.2
        - name: sidecar
          image: registry.example.com/sidecar:{tag}
"
    )
}

/// A child process killed (SIGKILL) and reaped when dropped, even by a panic, so that none outlives
/// its test.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on loopback, for a daemon's HTTP endpoints.
pub fn loopback() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// One HTTP/1.1 request on loopback; returns status and body, or `(0, "")` when nothing answers
/// (a daemon not listening yet).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return (0, String::new());
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The branch a local repository's HEAD is on.
pub fn head_branch(repo: &std::path::Path) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .output()
        .unwrap_or_else(|e| panic!("git rev-parse: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `hotsync run` on a local repository against this env's cluster, without leader election or status,
/// polling every 500 ms, its output in `log`; killed (SIGKILL) when dropped.
pub fn spawn_daemon(
    env: &TestEnv,
    repo: &std::path::Path,
    log: &std::path::Path,
    extra: &[String],
) -> Reaped {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hotsync"));
    cmd.args([
        "run",
        "--no-leader-election",
        "--no-status",
        "--interval",
        "500ms",
    ])
    .arg("--repo")
    .arg(repo)
    .arg("--branch")
    .arg(head_branch(repo))
    .arg("--listen")
    .arg(loopback().to_string())
    .arg("--kubeconfig")
    .arg(&env.kubeconfig)
    .arg("--cache-dir")
    .arg(repo.join(".cache"))
    .args(extra)
    .stdout(file)
    .stderr(err);
    if env.node.is_none() {
        // The simulated cluster has no registry to ask.
        cmd.env("HOTSYNC_NO_IMAGE_CHECK", "true");
    }
    Reaped(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("could not start hotsync run: {e}")),
    )
}
