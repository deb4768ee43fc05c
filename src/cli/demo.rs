use super::sim::NodeArg;
use super::sync::render_text;
use anyhow::Context as _;
use clap::Args;
use hotsync::model::{GameServerSet, LABEL_OWNER_GSS};
use hotsync::rollout::RolloutOptions;
use hotsync::sync::SyncOptions;
use hotsync_sim::{ClusterOptions, LocalCluster, NodeMode, SimConfig, Simulation};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use std::path::Path;
use std::time::Duration;

/// The whole story on a local cluster, in one command: a real kube-apiserver and, as root, a real node
/// (kubelet on containerd, scheduler, controller-manager, a local registry), with OKG's and Kruise's
/// controllers simulated from their source; a scratch Git repository from examples-repo/, a sync, the
/// seed's sidecar bump v0.1 → v0.2 picked up by `hotsync run`, which restarts only the sidecars, in
/// place, and the status it commits back; then the next bump as a canary (`hotsync.dev/steps`): the
/// plan of each step against the cluster, one game server updated and paused, `hotsync promote`.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 the story ran, 1 a set failed, 2 error.")]
pub struct DemoArgs {
    /// Keep the cluster running at the end (until Ctrl-C), for kubectl.
    #[arg(long)]
    pub keep: bool,
    /// The node: `real` (fails when it cannot start) or `simulated` (a kubelet the simulation plays).
    /// Default: the real node, or the simulated kubelet where the real one cannot start (not root, no
    /// containerd), said in one line.
    #[arg(long, value_enum)]
    pub node: Option<NodeArg>,
}

/// The example repository, embedded so that the binary runs the demo from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    ("README.md", include_str!("../../examples-repo/README.md")),
    (
        "gameservers/minecraft.yaml",
        include_str!("../../examples-repo/gameservers/minecraft.yaml"),
    ),
    (
        "gameservers/arena.yaml",
        include_str!("../../examples-repo/gameservers/arena.yaml"),
    ),
    (
        "gameservers/lobby.yaml",
        include_str!("../../examples-repo/gameservers/lobby.yaml"),
    ),
];

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Game Ops",
            "-c",
            "user.email=ops@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn heading(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<i32> {
    let cluster = start_cluster(args.node).await?;
    let real = cluster.node().is_some();
    let client = cluster.client().await?;
    let sim = Simulation::start(
        client.clone(),
        SimConfig {
            start_delay_ms: 300,
            ready_delay_ms: 500,
            restart_delay_ms: 400,
            simulated_kubelet: !real,
            ..SimConfig::default()
        },
    )
    .await?;
    let kubectl = Kubectl::new(cluster.kubeconfig());
    // The seed's pods and game servers, by their owner label.
    let owner = format!("{LABEL_OWNER_GSS}=minecraft");
    println!("kubeconfig: {}", cluster.kubeconfig().display());
    // hotsync asks the registry the node pulls from whether each new image exists; the simulated
    // kubelet has no registry, so there the check is off.
    let image_check = match cluster.node() {
        Some(node) => {
            println!(
                "node {} at {}; images are pulled from the local registry {} (as {})",
                node.node_name,
                node.node_ip,
                node.registry,
                node.registry_hosts.join(", ")
            );
            Some(hotsync::registry::Registries::new(
                node.registry_mirrors().into_iter().collect(),
            )?)
        }
        None => None,
    };

    let scratch = tempfile::tempdir()?;
    let repo = scratch.path();
    for (path, content) in EXAMPLES {
        let p = repo.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(p, content)?;
    }
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(
        repo,
        &["commit", "-qm", "GameServerSets: minecraft, arena, lobby"],
    )?;

    let opts = SyncOptions {
        repo: repo.display().to_string(),
        branch: None,
        path: ".".into(),
        load: Default::default(),
        cache_dir: scratch.path().join(".cache"),
        fetch: Default::default(),
        rollout: RolloutOptions {
            wait: true,
            wait_timeout: Duration::from_secs(180),
            image_check,
            ..RolloutOptions::default()
        },
        set_concurrency: 4,
    };
    let writer = std::sync::Arc::new(hotsync::status::StatusWriter::new(
        &repo.display().to_string(),
        &scratch.path().join(".cache/status"),
        hotsync::status::GitAuth::None,
        hotsync::status::StatusConfig::default(),
    )?);
    heading("hotsync sync: the sets from Git, created");
    let report = hotsync::sync::sync(&client, &opts, None).await?;
    print!("{}", render_text(&report));
    hotsync::status::report::write(writer.clone(), &client, "local", &report).await?;
    kubectl.show(&["get", "gs", "-l", &owner]).await;
    kubectl
        .show(&["get", "pod", "-l", &owner, "-o", "wide"])
        .await;

    heading("hotsync run: the daemon watches the repository");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let daemon_cfg = hotsync::daemon::DaemonConfig {
        sync: SyncOptions {
            branch: Some("main".into()),
            rollout: RolloutOptions {
                wait: false,
                ..opts.rollout.clone()
            },
            ..opts.clone()
        },
        branch: "main".into(),
        interval: Duration::from_secs(2),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        webhook_secret: None,
        lease: None,
        self_heal: false,
        watch_local: true,
        shutdown_grace: Duration::from_secs(5),
        status: Some(hotsync::daemon::StatusSink {
            writer: writer.clone(),
            cluster: "local".into(),
        }),
    };
    let daemon = tokio::spawn(hotsync::daemon::run(client.clone(), daemon_cfg, stop_rx));
    tokio::time::sleep(Duration::from_secs(3)).await;

    heading("An operator commits the minecraft sidecar bump: v0.1 -> v0.2");
    let file = repo.join("gameservers/minecraft.yaml");
    let text = std::fs::read_to_string(&file)?.replace("sidecar:v0.1", "sidecar:v0.2");
    std::fs::write(&file, text)?;
    git(repo, &["commit", "-qam", "Bump minecraft sidecar to v0.2"])?;
    let plan = {
        let r = hotsync::source::Repo::open(repo)?;
        let base = hotsync::review::revision(&r, "HEAD~1")?;
        let head = hotsync::review::revision(&r, "HEAD")?;
        hotsync::review::plan_between(&r, base, head, ".", &Default::default())?
    };
    print!("{}", plan.to_text(false));

    heading("The daemon picks the commit up and restarts the sidecars in place, one pod at a time");
    let started = std::time::Instant::now();
    loop {
        let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), "default")
            .list(&ListParams::default().labels(&format!("{LABEL_OWNER_GSS}=minecraft")))
            .await?
            .items;
        let done = pods.len() == 3
            && pods.iter().all(|p| {
                hotsync::live::container_status(p, "sidecar")
                    .is_some_and(|s| s.image.ends_with("sidecar:v0.2") && s.ready)
            });
        let gss: GameServerSet = Api::namespaced(client.clone(), "default")
            .get("minecraft")
            .await?;
        let held = gss
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(hotsync::rollout::ANNOTATION_HOLD));
        if done && !held {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the daemon did not finish the rollout in 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "rolled out {:.1}s after the commit",
        started.elapsed().as_secs_f64()
    );
    // Let the daemon write the status of the finished rollout, then stop it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    daemon.await??;
    heading("After: same pods, same age; RESTARTS 1 (the sidecar); the engine never stopped");
    kubectl.show(&["get", "gs", "-l", &owner]).await;
    kubectl
        .show(&["get", "pod", "-l", &owner, "-o", "wide"])
        .await;
    if real {
        // The engine's own log on the real node: it started once, before the bump.
        kubectl
            .show(&["logs", "minecraft-0", "-c", "minecraft"])
            .await;
    }

    heading("The status hotsync committed back to Git (branch hotsync-status)");
    print!(
        "{}",
        git(
            repo,
            &[
                "--no-pager",
                "log",
                "-1",
                "-p",
                "--format=commit %h%n%n    %s%n%n%w(0,4,4)%b",
                "hotsync-status",
                "--",
                "status/local/default/minecraft.yaml"
            ]
        )?
    );
    let canary = canary(&client, &kubectl, &opts, &writer, repo, &owner).await?;
    let exit = report.exit_code().max(canary);

    if args.keep {
        println!(
            "\nThe cluster keeps running: kubectl --kubeconfig {} get gss,gs,pods",
            cluster.kubeconfig().display()
        );
        println!("Press Ctrl-C to stop it.");
        tokio::signal::ctrl_c().await?;
    }
    sim.shutdown().await?;
    cluster.stop()?;
    Ok(exit)
}

/// The next bump as a canary: `hotsync.dev/steps: "1,100%"` in Git next to the set; the plan against
/// the cluster names the game server each step restarts; `sync` updates one pod and pauses; `hotsync
/// promote` (the command an operator types, run as a process) lets the rest follow. Returns the exit
/// code of the last sync.
async fn canary(
    client: &kube::Client,
    kubectl: &Kubectl,
    opts: &SyncOptions,
    writer: &std::sync::Arc<hotsync::status::StatusWriter>,
    repo: &Path,
    owner: &str,
) -> anyhow::Result<i32> {
    heading("A canary: the next bump (v0.2 -> v0.3) goes to one game server first, then waits for a promote");
    let file = repo.join("gameservers/minecraft.yaml");
    let text = std::fs::read_to_string(&file)?
        .replacen(
            "  namespace: default\n",
            "  namespace: default\n  annotations:\n    hotsync.dev/steps: \"1,100%\"\n",
            1,
        )
        .replace("sidecar:v0.2", "sidecar:v0.3");
    std::fs::write(&file, text)?;
    git(
        repo,
        &[
            "commit",
            "-qam",
            "Bump minecraft sidecar to v0.3, one game server first",
        ],
    )?;
    print!(
        "{}",
        git(repo, &["--no-pager", "show", "--format=", "HEAD"])?
    );
    let manifests = {
        let r = hotsync::source::Repo::open(repo)?;
        let head = hotsync::review::revision(&r, "HEAD")?;
        let m = hotsync::review::manifests_at(&r, &head, ".", &Default::default())?;
        (head, m)
    };
    heading("hotsync plan --cluster: what each step restarts, and the players on it");
    let plan = hotsync::rollout::preview::plan_cluster(
        client,
        manifests.0,
        &manifests.1,
        &opts.rollout,
        4,
    )
    .await?;
    print!("{}", plan.to_text(false));

    heading("hotsync sync: step 1 of 2, one game server updated, the set paused");
    let report = hotsync::sync::sync(client, opts, None).await?;
    print!("{}", render_text(&report));
    kubectl
        .show(&["get", "pod", "-l", owner, "-o", "wide"])
        .await;
    hotsync::status::report::write(writer.clone(), client, "local", &report).await?;
    println!("$ git show hotsync-status:status/local/default/minecraft.yaml");
    print!(
        "{}",
        git(
            repo,
            &["show", "hotsync-status:status/local/default/minecraft.yaml"]
        )?
    );

    heading("hotsync promote default/minecraft, and sync: the other game servers follow");
    let exe = std::env::current_exe().context("finding the hotsync binary")?;
    let out = tokio::process::Command::new(exe)
        .args(["promote", "--kubeconfig"])
        .arg(kubectl.kubeconfig())
        .arg("default/minecraft")
        .output()
        .await
        .context("running hotsync promote")?;
    print!(
        "$ hotsync promote default/minecraft\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "hotsync promote failed");
    let report = hotsync::sync::sync(client, opts, None).await?;
    print!("{}", render_text(&report));
    kubectl
        .show(&["get", "pod", "-l", owner, "-o", "wide"])
        .await;
    Ok(report.exit_code())
}

/// The cluster the demo runs on: the real node unless asked otherwise, the simulated kubelet where the
/// real node cannot start and none was asked for.
async fn start_cluster(node: Option<NodeArg>) -> anyhow::Result<LocalCluster> {
    let start = |node: NodeMode| {
        heading(match node {
            NodeMode::Real => "Starting a local cluster: kube-apiserver 1.20.2 + etcd, a real node (kubelet, containerd, scheduler, controller-manager, registry), OKG and Kruise simulated",
            NodeMode::Simulated => "Starting a local cluster: kube-apiserver 1.20.2 + etcd, a simulated kubelet, OKG and Kruise simulated",
        });
        LocalCluster::start(ClusterOptions {
            node,
            ..ClusterOptions::default()
        })
    };
    match node {
        Some(n) => Ok(start(n.into()).await?),
        None => match start(NodeMode::Real).await {
            Ok(c) => Ok(c),
            Err(e) => {
                println!(
                    "The real node cannot start here ({}); the demo uses the simulated kubelet instead.",
                    anyhow::Error::new(e)
                        .chain()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(": ")
                );
                Ok(start(NodeMode::Simulated).await?)
            }
        },
    }
}

/// The real kubectl, pointed at the demo's cluster; what it prints is shown as it prints it.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Prints `$ kubectl ARGS` and kubectl's output (or why it could not run: the story goes on).
    async fn show(&self, args: &[&str]) {
        println!("$ kubectl {}", args.join(" "));
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", "default"])
            .args(args)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(30), out).await {
            Ok(Ok(o)) => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                if !o.status.success() {
                    print!("{}", String::from_utf8_lossy(&o.stderr));
                }
            }
            Ok(Err(e)) => {
                println!("(kubectl could not run: {e}; install kubectl to see the cluster)")
            }
            Err(_) => println!("(kubectl did not answer in 30 s)"),
        }
    }
}
