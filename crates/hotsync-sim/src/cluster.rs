//! A genuine kube-apiserver 1.20.2 with its own etcd, started and stopped through the project's scripts
//! (embedded here, so the binary works outside the repository), OKG's and Kruise's CRDs installed in it,
//! and, with [`NodeMode::Real`], a real node beside it (`scripts/start-node.sh`): containerd, kubelet,
//! scheduler, controller-manager and a local registry with the test images.
//!
//! Layout of the state directory: the four scripts (written from the embedded copies) and `cluster/`, the
//! scripts' own directory (kubeconfig, env, certificates, logs, etcd data, and `node/` for a real node).

use hotsync_model::{AdvancedStatefulSet, GameServer, GameServerSet};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::CustomResourceExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const START_SCRIPT: &str = include_str!("../../../scripts/start-cluster.sh");
const STOP_SCRIPT: &str = include_str!("../../../scripts/stop-cluster.sh");
const START_NODE_SCRIPT: &str = include_str!("../../../scripts/start-node.sh");
const STOP_NODE_SCRIPT: &str = include_str!("../../../scripts/stop-node.sh");
const KUBE_VERSION: &str = "v1.20.2";
const FIELD_MANAGER: &str = "hotsync-sim";

/// Why the local cluster could not start, stop or be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kube-apiserver binary is not built yet.
    #[error("kube-apiserver {KUBE_VERSION} not found at {}: run scripts/build-kube.sh (after scripts/install-deps.sh)", path.display())]
    ApiServerMissing { path: PathBuf },
    /// etcd is not installed.
    #[error("etcd not found on PATH (or $ETCD): run scripts/install-deps.sh")]
    EtcdMissing,
    /// A file of the state directory could not be read or written.
    #[error("could not use {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cluster script failed.
    #[error("{script} failed ({status}); its output ends with:\n{output}")]
    Script {
        script: &'static str,
        status: String,
        output: String,
    },
    /// The script's env file lacks a value.
    #[error("{} does not set {key}", path.display())]
    EnvMissing { path: PathBuf, key: &'static str },
    /// The kubeconfig could not be read or turned into a client.
    #[error("could not build a client from {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A CRD could not be installed.
    #[error("could not install the CRD {name}")]
    InstallCrd {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A CRD did not become Established in time.
    #[error("the CRD {name} did not become Established within {timeout:?}")]
    CrdNotEstablished { name: String, timeout: Duration },
    /// A CRD file could not be parsed.
    #[error("could not parse the CRD file {}", path.display())]
    ParseCrd {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The real node could not start or become Ready.
    #[error("the real node")]
    Node {
        #[source]
        source: crate::node::NodeError,
    },
}

impl From<crate::node::NodeError> for ClusterError {
    fn from(source: crate::node::NodeError) -> Self {
        ClusterError::Node { source }
    }
}

/// Which kubelet runs the cluster's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeMode {
    /// No node: the simulation's kubelet plays one (KWOK-style, for scale).
    #[default]
    Simulated,
    /// A real node: containerd, kubelet, scheduler, controller-manager and a local registry (needs root).
    Real,
}

/// Which CRDs the cluster gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crds {
    /// OKG's and Kruise's own CRDs, from a directory of their YAML files (`shared/okg/crds` in the tests).
    Upstream(PathBuf),
    /// CRDs generated from the model, which a test shows equal to upstream's in schema shape and printer
    /// columns: for use where upstream's files are not at hand.
    Builtin,
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the scripts and the cluster's files go. `None`: a fresh directory under the system temp dir,
    /// removed on stop.
    pub state_dir: Option<PathBuf>,
    /// Also stop the cluster when this process exits without calling `stop` (killed, or a test binary whose
    /// statics are never dropped): a small watcher process runs the stop script once this process is gone.
    pub stop_with_process: bool,
    /// The CRDs to install once the server is ready (`None`: none).
    pub crds: Option<Crds>,
    /// A real node beside the API server, or none (the simulation's kubelet then plays one).
    pub node: NodeMode,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            state_dir: None,
            stop_with_process: true,
            crds: Some(Crds::Builtin),
            node: NodeMode::Simulated,
        }
    }
}

/// What the start script reports about the running cluster (its `env` file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterEnv {
    pub kubeconfig: PathBuf,
    pub apiserver_url: String,
    /// A token in group `system:masters`.
    pub admin_token: String,
    /// A token with no groups, for RBAC tests that grant it something.
    pub limited_token: String,
    /// A token RBAC grants nothing.
    pub none_token: String,
    pub etcd_pid: u32,
    pub apiserver_pid: u32,
}

/// A running etcd + kube-apiserver, and a real node when asked for. Stopped by [`LocalCluster::stop`] or
/// on drop, and by a watcher process when this process dies first.
#[derive(Debug)]
pub struct LocalCluster {
    state_dir: PathBuf,
    remove_state_dir: bool,
    env: ClusterEnv,
    node: Option<crate::node::NodeEnv>,
    images: crate::node::PushedImages,
    reaper: Option<std::process::Child>,
    stopped: bool,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Where `scripts/build-kube.sh` caches the Kubernetes binaries: `KUBE_BIN_DIR`, else
/// `$HOTSYNC_CACHE/kubernetes-v1.20.2` (default cache `~/.cache/hotsync`).
pub fn kube_bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_BIN_DIR") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("HOTSYNC_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hotsync")))
        .unwrap_or_else(|| PathBuf::from(".cache/hotsync"));
    cache.join(format!("kubernetes-{KUBE_VERSION}"))
}

/// The kube-apiserver binary: `KUBE_APISERVER`, else the one in [`kube_bin_dir`].
pub fn apiserver_binary() -> PathBuf {
    match std::env::var_os("KUBE_APISERVER") {
        Some(p) => PathBuf::from(p),
        None => kube_bin_dir().join("kube-apiserver"),
    }
}

fn find_etcd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl LocalCluster {
    /// Checks the prerequisites, runs the start script, waits for the API server and installs our CRDs.
    ///
    /// # Errors
    /// [`ClusterError::ApiServerMissing`] or [`ClusterError::EtcdMissing`] name the script to run first;
    /// a failing start script gives [`ClusterError::Script`] with the end of its output.
    pub async fn start(options: ClusterOptions) -> Result<LocalCluster, ClusterError> {
        let apiserver = apiserver_binary();
        if !apiserver.is_file() {
            return Err(ClusterError::ApiServerMissing { path: apiserver });
        }
        if find_etcd().is_none() {
            return Err(ClusterError::EtcdMissing);
        }
        if options.node == NodeMode::Real {
            real_node_prerequisites()?;
        }
        let (state_dir, remove_state_dir) = match &options.state_dir {
            Some(d) => (d.clone(), false),
            None => {
                let n = SEQ.fetch_add(1, Ordering::SeqCst);
                let d =
                    std::env::temp_dir().join(format!("hotsync-sim-{}-{n}", std::process::id()));
                (d, true)
            }
        };
        std::fs::create_dir_all(&state_dir).map_err(io_err(&state_dir))?;
        let state_dir = std::fs::canonicalize(&state_dir).map_err(io_err(&state_dir))?;
        for (file, text) in [
            ("start-cluster.sh", START_SCRIPT),
            ("stop-cluster.sh", STOP_SCRIPT),
            ("start-node.sh", START_NODE_SCRIPT),
            ("stop-node.sh", STOP_NODE_SCRIPT),
        ] {
            let path = state_dir.join(file);
            std::fs::write(&path, text).map_err(io_err(&path))?;
        }
        let cluster_dir = state_dir.join("cluster");
        let mut cluster = LocalCluster {
            state_dir,
            remove_state_dir,
            env: ClusterEnv::default(),
            node: None,
            images: Default::default(),
            reaper: None,
            stopped: true,
        };
        // A real node's bridge comes first: the API server listens on its address, so that pods reach it.
        let mut bind_address = None;
        if options.node == NodeMode::Real {
            cluster.stopped = false;
            cluster.script("start-node.sh", &["network"], &[]).await?;
            let net = crate::node::read_exports(&cluster_dir.join("node/net.env"))?;
            bind_address = net.get("NODE_IP").cloned();
        }
        let mut env_vars: Vec<(&str, String)> =
            vec![("KUBE_APISERVER", apiserver.display().to_string())];
        if let Some(ip) = &bind_address {
            env_vars.push(("HOTSYNC_BIND_ADDRESS", ip.clone()));
            env_vars.push(("HOTSYNC_SA_ADMISSION", "1".into()));
        }
        let started = cluster.script("start-cluster.sh", &[], &env_vars).await;
        if let Err(e) = started {
            if options.node == NodeMode::Real {
                let _ = cluster.script("stop-node.sh", &[], &[]).await;
            }
            cluster.stopped = true;
            return Err(e);
        }
        cluster.stopped = false;
        cluster.env = read_env(&cluster_dir.join("env"))?;
        if options.stop_with_process {
            cluster.reaper = cluster.spawn_reaper().ok();
        }
        if options.node == NodeMode::Real {
            cluster.start_node().await?;
        }
        if let Some(crds) = &options.crds {
            let client = cluster.client().await?;
            match crds {
                Crds::Builtin => install_crds(&client, builtin_crds()).await?,
                Crds::Upstream(dir) => install_crds(&client, upstream_crds(dir)?).await?,
            }
        }
        Ok(cluster)
    }

    /// Runs one of the embedded scripts on the cluster's directory.
    async fn script(
        &self,
        script: &'static str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<(), ClusterError> {
        let path = self.state_dir.join(script);
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(&path)
            .args(args)
            .arg(self.cluster_dir())
            .stdin(Stdio::null());
        cmd.env("KUBE_BIN_DIR", kube_bin_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.map_err(io_err(&path))?;
        if !out.status.success() {
            let mut output = tail(&out.stdout, 10);
            output.push_str(&tail(&out.stderr, 40));
            return Err(ClusterError::Script {
                script,
                status: out.status.to_string(),
                output,
            });
        }
        Ok(())
    }

    /// Starts the node's processes, pushes the test images and waits until the node is Ready and the
    /// `default` namespace has its ServiceAccount.
    async fn start_node(&mut self) -> Result<(), ClusterError> {
        self.script("start-node.sh", &["start"], &[]).await?;
        let node = crate::node::NodeEnv::read(&self.cluster_dir().join("node/env"))?;
        let cache = std::env::var_os("HOTSYNC_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hotsync")))
            .unwrap_or_else(std::env::temp_dir);
        self.images =
            crate::node::push_test_images(&node.registry, &cache, &kube_bin_dir()).await?;
        let client = self.client().await?;
        wait_node_ready(&client, &node.node_name, Duration::from_secs(90)).await?;
        wait_service_account(&client, "default", Duration::from_secs(60)).await?;
        self.node = Some(node);
        Ok(())
    }

    /// The real node, when the cluster has one.
    pub fn node(&self) -> Option<&crate::node::NodeEnv> {
        self.node.as_ref()
    }

    /// The digests of the test images the real node's registry holds (`repository:tag` as pushed).
    pub fn images(&self) -> &crate::node::PushedImages {
        &self.images
    }

    /// A watcher process that runs the stop script once this process is gone. It keeps its command line
    /// to the end (its last command is not exec'd in its place), so that scripts/test.sh can wait for it.
    fn spawn_reaper(&self) -> std::io::Result<std::process::Child> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; bash \"$0\" \"$1\" >/dev/null 2>&1; {cleanup}; exit 0",
            pid = std::process::id(),
            cleanup = if self.remove_state_dir { "rm -rf \"$2\"" } else { "true" },
        );
        std::process::Command::new("setsid")
            .arg("bash")
            .arg("-c")
            .arg(script)
            .arg(self.state_dir.join("stop-cluster.sh"))
            .arg(self.cluster_dir())
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    fn cluster_dir(&self) -> PathBuf {
        self.state_dir.join("cluster")
    }

    /// The state directory (scripts and `cluster/`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The admin kubeconfig, for kube-rs and kubectl.
    pub fn kubeconfig(&self) -> &Path {
        &self.env.kubeconfig
    }

    /// What the start script reported: URL, tokens, pids.
    pub fn env(&self) -> &ClusterEnv {
        &self.env
    }

    /// A new admin client. Call it on the runtime that will use the client.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        client_from_kubeconfig(&self.env.kubeconfig).await
    }

    /// Kills kube-apiserver with SIGKILL (a crash, not a shutdown), leaves it down for `down_for`, and
    /// starts it again with the same command line (same port, certificates and tokens) on the same etcd,
    /// whose data is kept. Returns once `/readyz` answers again.
    ///
    /// # Errors
    /// [`ClusterError::Io`] when the process cannot be read, signalled or started;
    /// [`ClusterError::Script`] when it does not become ready within a minute.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> Result<(), ClusterError> {
        let dir = self.cluster_dir();
        let pid = self.env.apiserver_pid;
        let proc_cmdline = PathBuf::from(format!("/proc/{pid}/cmdline"));
        let cmdline = std::fs::read(&proc_cmdline).map_err(io_err(&proc_cmdline))?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let status = tokio::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await
            .map_err(io_err(&proc_cmdline))?;
        if !status.success() {
            return Err(ClusterError::Script {
                script: "kill -KILL kube-apiserver",
                status: format!("pid {pid}: {status}"),
                output: String::new(),
            });
        }
        // The server was started in a session of its own and is reaped by init: wait until it is gone.
        let gone_by = tokio::time::Instant::now() + Duration::from_secs(60);
        while proc_cmdline.exists() && std::fs::read(&proc_cmdline).is_ok_and(|c| !c.is_empty()) {
            if tokio::time::Instant::now() >= gone_by {
                return Err(ClusterError::Script {
                    script: "kill -KILL kube-apiserver",
                    status: format!("pid {pid} still running after 60 s"),
                    output: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(down_for).await;
        let pidfile = dir.join("apiserver.pid");
        let _ = std::fs::remove_file(&pidfile);
        // The same detached start as the start script's: own session, pid written by the process itself.
        let spawn = r#"pidfile="$1"; logfile="$2"; shift 2
setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &"#;
        let status = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(spawn)
            .arg("restart-apiserver")
            .arg(&pidfile)
            .arg(dir.join("apiserver.log"))
            .args(&args)
            .stdin(Stdio::null())
            .status()
            .await
            .map_err(io_err(&pidfile))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let client = self.client().await?;
        loop {
            if let Some(new_pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                self.env.apiserver_pid = new_pid;
                // Ready when it answers and serves our custom resources again.
                let sets: Api<GameServerSet> = Api::all(client.clone());
                if client.apiserver_version().await.is_ok()
                    && sets
                        .list(&kube::api::ListParams::default().limit(1))
                        .await
                        .is_ok()
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let log = std::fs::read(dir.join("apiserver.log")).unwrap_or_default();
                return Err(ClusterError::Script {
                    script: "restart of kube-apiserver",
                    status: status.to_string(),
                    output: tail(&log, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops kube-apiserver and etcd and removes the cluster's files. Idempotent.
    ///
    /// # Errors
    /// [`ClusterError::Script`] when the stop script fails.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), ClusterError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
        let stop = self.state_dir.join("stop-cluster.sh");
        let out = std::process::Command::new("bash")
            .arg(&stop)
            .arg(self.cluster_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(&stop))?;
        if !out.status.success() {
            return Err(ClusterError::Script {
                script: "stop-cluster.sh",
                status: out.status.to_string(),
                output: tail(&out.stderr, 20),
            });
        }
        if self.remove_state_dir {
            std::fs::remove_dir_all(&self.state_dir).map_err(io_err(&self.state_dir))?;
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            tracing::warn!(error = %e, "could not stop the local cluster");
        }
    }
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, ClusterError> {
    let wrap = |source: Box<dyn std::error::Error + Send + Sync>| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kc = Kubeconfig::read_from(path).map_err(|e| wrap(Box::new(e)))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    kube::Client::try_from(config).map_err(|e| wrap(Box::new(e)))
}

fn read_env(path: &Path) -> Result<ClusterEnv, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut vars = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        if let Some((k, v)) = rest.split_once('=') {
            let v = v.trim_matches('\'').trim_matches('"');
            vars.insert(k.to_string(), v.to_string());
        }
    }
    let get = |key: &'static str| {
        vars.get(key)
            .cloned()
            .ok_or_else(|| ClusterError::EnvMissing {
                path: path.to_path_buf(),
                key,
            })
    };
    let pid = |key: &'static str| {
        get(key)?
            .parse::<u32>()
            .map_err(|_| ClusterError::EnvMissing {
                path: path.to_path_buf(),
                key,
            })
    };
    Ok(ClusterEnv {
        kubeconfig: PathBuf::from(get("KUBECONFIG")?),
        apiserver_url: get("APISERVER_URL")?,
        admin_token: get("ADMIN_TOKEN")?,
        limited_token: get("LIMITED_TOKEN")?,
        none_token: get("NONE_TOKEN")?,
        etcd_pid: pid("ETCD_PID")?,
        apiserver_pid: pid("APISERVER_PID")?,
    })
}

/// The CRDs generated from the model types (see [`Crds::Builtin`]): the Advanced StatefulSet serves
/// v1alpha1 and v1beta1 (stored) as Kruise's does; each version's schema declares `apiVersion`, `kind`
/// and `metadata` as controller-gen's do, and the names carry a `listKind`.
pub fn builtin_crds() -> Vec<CustomResourceDefinition> {
    let asts = kube::core::crd::merge_crds(
        vec![
            hotsync_model::v1alpha1::AdvancedStatefulSetV1alpha1::crd(),
            AdvancedStatefulSet::crd(),
        ],
        "v1beta1",
    )
    .expect("the two Advanced StatefulSet versions share group, kind and names");
    let mut crds = vec![GameServerSet::crd(), GameServer::crd(), asts];
    for crd in &mut crds {
        crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
        for version in &mut crd.spec.versions {
            let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            else {
                continue;
            };
            drop_defaults(schema);
            let props = schema.properties.get_or_insert_with(Default::default);
            let typed = |t: &str| JSONSchemaProps {
                type_: Some(t.to_string()),
                ..Default::default()
            };
            props.insert("apiVersion".into(), typed("string"));
            props.insert("kind".into(), typed("string"));
            props.insert("metadata".into(), typed("object"));
        }
    }
    crds
}

/// Removes the defaults schemars writes for `#[serde(default)]` fields: upstream's schemas default
/// nothing that kube-apiserver 1.20 accepts (see [`upstream_crds`]), and a default in a schema is
/// applied by the API server to every object.
fn drop_defaults(schema: &mut JSONSchemaProps) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    schema.default = None;
    for p in schema.properties.iter_mut().flat_map(|m| m.values_mut()) {
        drop_defaults(p);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => drop_defaults(s),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(drop_defaults),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = &mut schema.additional_properties {
        drop_defaults(s);
    }
    for v in [&mut schema.any_of, &mut schema.all_of, &mut schema.one_of]
        .into_iter()
        .flatten()
    {
        v.iter_mut().for_each(drop_defaults);
    }
}

/// OKG's and Kruise's CRDs from `dir`, made acceptable to kube-apiserver 1.20: it rejects an empty-string
/// `default` in a schema ("in body must be of type string: null"), which OKG's GameServerSet CRD has once
/// (`serviceQualities[].grpc.service`); newer servers accept it. Only those lines are dropped.
pub fn upstream_crds(dir: &Path) -> Result<Vec<serde_json::Value>, ClusterError> {
    let mut crds = crds_from_dir(dir)?;
    for c in &mut crds {
        drop_empty_string_defaults(c);
    }
    Ok(crds)
}

/// Removes `default: ""` from a schema; returns how many it removed.
pub fn drop_empty_string_defaults(v: &mut serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => {
            let mut n = 0;
            if m.get("default") == Some(&serde_json::Value::String(String::new())) {
                m.remove("default");
                n += 1;
            }
            n + m
                .values_mut()
                .map(drop_empty_string_defaults)
                .sum::<usize>()
        }
        serde_json::Value::Array(a) => a.iter_mut().map(drop_empty_string_defaults).sum(),
        _ => 0,
    }
}

/// What a real node needs of this machine, checked before anything starts, so that the error says what
/// is missing.
fn real_node_prerequisites() -> Result<(), ClusterError> {
    let mut missing = Vec::new();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        missing.push("root (containerd, network interfaces and mounts need it)".to_string());
    }
    let on_path = |cmd: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
    };
    for cmd in [
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "docker-registry",
        "ip",
        "gcc",
        "python3",
    ] {
        if !on_path(cmd) {
            missing.push(format!("{cmd} (scripts/install-deps.sh)"));
        }
    }
    for b in [
        "kubelet",
        "kube-scheduler",
        "kube-controller-manager",
        "pause",
    ] {
        if !kube_bin_dir().join(b).is_file() {
            missing.push(format!(
                "{} (scripts/build-kube.sh)",
                kube_bin_dir().join(b).display()
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(crate::node::NodeError::Missing(missing.join(", ")).into())
    }
}

/// Waits until the node reports Ready and carries no `not-ready` taint (the node lifecycle controller
/// removes it).
async fn wait_node_ready(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match api.get_opt(name).await {
            Ok(Some(n)) => {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let tainted = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key.starts_with("node.kubernetes.io/")));
                if ready && !tainted {
                    return Ok(());
                }
                format!("ready {ready}, tainted {tainted}")
            }
            Ok(None) => "not registered".to_string(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::node::NodeError::NotReady {
                node: name.to_string(),
                seconds: timeout.as_secs(),
                seen,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `namespace` has its `default` ServiceAccount (made by the controller-manager); before that
/// the ServiceAccount admission plugin refuses pods there.
pub async fn wait_service_account(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(sa)) = api.get_opt("default").await {
            if sa.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::node::NodeError::NotReady {
                node: format!("(namespace {namespace} has no default ServiceAccount)"),
                seconds: timeout.as_secs(),
                seen: "no ServiceAccount".into(),
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every CRD in a directory of YAML files (for example OKG's upstream CRDs), as JSON documents:
/// kept raw, because k8s-openapi's typed schema turns `default: ""` into null, which the API server rejects.
pub fn crds_from_dir(dir: &Path) -> Result<Vec<serde_json::Value>, ClusterError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    entries.sort();
    let mut crds = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let values: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| ClusterError::ParseCrd {
                path: path.clone(),
                source: Box::new(e),
            })?;
        crds.extend(values.into_iter().filter(|v| {
            v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition")
        }));
    }
    Ok(crds)
}

/// Applies CRDs (server-side apply, forced) and waits until each is Established.
pub async fn install_crds<T: serde::Serialize>(
    client: &kube::Client,
    crds: Vec<T>,
) -> Result<(), ClusterError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let timeout = Duration::from_secs(30);
    for crd in crds {
        let mut doc = serde_json::to_value(&crd).unwrap_or(serde_json::Value::Null);
        let name = doc
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            meta.remove("creationTimestamp");
        }
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("status");
        }
        api.patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .map_err(|source| ClusterError::InstallCrd {
                name: name.clone(),
                source,
            })?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            _ => return Err(ClusterError::CrdNotEstablished { name, timeout }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "# comment\nexport CLUSTER_DIR=/x\nexport KUBECONFIG=/x/kubeconfig\nexport APISERVER_URL=https://127.0.0.1:1\n\
             export ADMIN_TOKEN=a\nexport LIMITED_TOKEN=l\nexport NONE_TOKEN=n\nexport ETCD_PID=1\nexport APISERVER_PID=2\n",
        )
        .expect("write");
        let env = read_env(&path).expect("reads");
        assert_eq!(env.kubeconfig, PathBuf::from("/x/kubeconfig"));
        assert_eq!(env.apiserver_pid, 2);
        assert_eq!(env.limited_token, "l");
    }

    #[test]
    fn the_upstream_crds_parse_and_lose_only_their_empty_string_defaults() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/okg/crds"
        ));
        let mut crds = crds_from_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(crds.len(), 3);
        let dropped: usize = crds.iter_mut().map(drop_empty_string_defaults).sum();
        assert_eq!(dropped, 1);
    }
}
