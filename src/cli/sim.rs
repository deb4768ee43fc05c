use anyhow::Context as _;
use clap::Args;
use hotsync_sim::{ClusterOptions, LocalCluster, NodeMode, SimConfig, Simulation};
use std::path::PathBuf;

/// Run the local cluster alone until interrupted (Ctrl-C or SIGTERM): a real kube-apiserver, OKG's and
/// Kruise's controllers simulated from their source, and a node: the real one (containerd, kubelet,
/// scheduler, controller-manager and a local registry; needs root) or a simulated kubelet. Point kubectl
/// or `hotsync sync` at its kubeconfig.
///
/// Needs the packages of scripts/install-deps.sh and the binaries of scripts/build-kube.sh.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 stopped by a signal, 2 error.")]
pub struct SimArgs {
    /// Copy the cluster's admin kubeconfig here once it is ready; with `--node real`, `FILE.env` also gets
    /// `REGISTRY=host:port` (images pushed there can be pulled by the node) and `NODE_NAME`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// The node: `real` (a kubelet on containerd, with a scheduler, a controller-manager and a local
    /// registry) or `simulated` (a kubelet the simulation plays, for hundreds of pods).
    #[arg(long, value_enum, default_value_t = NodeArg::Simulated)]
    pub node: NodeArg,
    /// Where the API server's files go (default: a new directory under the temp dir, removed on exit).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Time from a pod's binding to its containers running.
    #[arg(long, value_name = "MS", default_value_t = SimConfig::default().start_delay_ms)]
    pub start_delay_ms: u64,
    /// Time from a container running to it being ready.
    #[arg(long, value_name = "MS", default_value_t = SimConfig::default().ready_delay_ms)]
    pub ready_delay_ms: u64,
    /// Time from an image change to the new container running.
    #[arg(long, value_name = "MS", default_value_t = SimConfig::default().restart_delay_ms)]
    pub restart_delay_ms: u64,
    /// The longest a deleted pod's grace period is honoured.
    #[arg(long, value_name = "MS", default_value_t = SimConfig::default().grace_cap_ms)]
    pub grace_cap_ms: u64,
    /// Images containing this text fail to pull (repeatable).
    #[arg(long = "missing-image-marker", value_name = "TEXT", default_values_t = SimConfig::default().missing_image_markers)]
    pub missing_image_markers: Vec<String>,
    /// Images containing this text crash after starting (repeatable).
    #[arg(long = "crashing-image-marker", value_name = "TEXT", default_values_t = SimConfig::default().crashing_image_markers)]
    pub crashing_image_markers: Vec<String>,
}

/// `--node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeArg {
    Real,
    Simulated,
}

impl From<NodeArg> for NodeMode {
    fn from(n: NodeArg) -> Self {
        match n {
            NodeArg::Real => NodeMode::Real,
            NodeArg::Simulated => NodeMode::Simulated,
        }
    }
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            start_delay_ms: self.start_delay_ms,
            ready_delay_ms: self.ready_delay_ms,
            restart_delay_ms: self.restart_delay_ms,
            grace_cap_ms: self.grace_cap_ms,
            missing_image_markers: self.missing_image_markers.clone(),
            crashing_image_markers: self.crashing_image_markers.clone(),
            simulated_kubelet: self.node == NodeArg::Simulated,
            ..SimConfig::default()
        }
    }
}

pub fn run(args: SimArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: SimArgs) -> anyhow::Result<i32> {
    let config = args.config();
    eprintln!(
        "starting kube-apiserver and etcd{}...",
        if args.node == NodeArg::Real {
            ", and a real node"
        } else {
            ""
        }
    );
    let cluster = LocalCluster::start(ClusterOptions {
        state_dir: args.state_dir.clone(),
        node: args.node.into(),
        ..ClusterOptions::default()
    })
    .await?;
    let client = cluster.client().await?;
    let mut sim = Simulation::start(client, config).await?;
    let kubeconfig = match &args.kubeconfig_out {
        Some(out) => {
            std::fs::copy(cluster.kubeconfig(), out)
                .with_context(|| format!("could not write the kubeconfig to {}", out.display()))?;
            if let Some(node) = cluster.node() {
                let env = PathBuf::from(format!("{}.env", out.display()));
                let text = format!(
                    "# The local cluster's real node; source it.\nexport REGISTRY={}\nexport NODE_NAME={}\nexport NODE_IP={}\n",
                    node.registry, node.node_name, node.node_ip
                );
                std::fs::write(&env, text)
                    .with_context(|| format!("could not write {}", env.display()))?;
            }
            out.clone()
        }
        None => cluster.kubeconfig().to_path_buf(),
    };
    if let Some(node) = cluster.node() {
        println!(
            "real node {} at {}, registry {} (images pushed there are pullable by the node)",
            node.node_name, node.node_ip, node.registry
        );
    }
    println!("cluster ready at {}", cluster.env().apiserver_url);
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get gss,gs,pods -A");
    println!("Ctrl-C stops it and removes its data.");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("could not listen for SIGTERM")?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(0),
        _ = term.recv() => Ok(0),
        e = sim.wait_any_failure() => Err(anyhow::Error::new(e).context("the simulation stopped")),
    };
    eprintln!("stopping...");
    let stopped = sim.shutdown().await;
    cluster.stop().context("could not stop the local cluster")?;
    if args.kubeconfig_out.is_some() {
        // The copied kubeconfig points at a server that is gone; leave the file, it is the user's.
    }
    let code = outcome?;
    stopped.context("the simulation did not stop cleanly")?;
    Ok(code)
}
