use super::sync::render_text;
use anyhow::Context as _;
use clap::Args;
use hotsync::model::{GameServer, GameServerSet, LABEL_OWNER_GSS};
use hotsync::rollout::RolloutOptions;
use hotsync::sync::SyncOptions;
use hotsync_sim::{ClusterOptions, LocalCluster, SimConfig, Simulation};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The whole story on a local cluster, in one command: a real kube-apiserver with a simulated OKG
/// controller and kubelet, a scratch Git repository from examples-repo/, a sync, the seed's sidecar
/// bump v0.1 → v0.2, and a second sync that restarts only the sidecars, in place.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the cluster running at the end (until Ctrl-C), for kubectl.
    #[arg(long)]
    pub keep: bool,
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
    heading(
        "Starting a local cluster: kube-apiserver 1.20.2 + etcd, with a simulated OKG and kubelet",
    );
    let cluster = LocalCluster::start(ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let sim = Simulation::start(
        client.clone(),
        SimConfig {
            start_delay_ms: 300,
            ready_delay_ms: 500,
            restart_delay_ms: 400,
            ..SimConfig::default()
        },
    )
    .await?;
    println!("kubeconfig: {}", cluster.kubeconfig().display());

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
            wait_timeout: Duration::from_secs(120),
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
    let before = tables(&client).await?;
    print!("{before}");

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
            started.elapsed() < Duration::from_secs(120),
            "the daemon did not finish the rollout in 2 minutes"
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
    let after = tables(&client).await?;
    heading("After: same pods, same age; RESTARTS 1 (the sidecar); the engine never stopped");
    print!("{after}");

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
                "--format=commit %h%n%n    %s%n%n    %b",
                "hotsync-status",
                "--",
                "status/local/default/minecraft.yaml"
            ]
        )?
    );
    let exit = report.exit_code();

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

fn age(ts: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    let Some(t) = ts else {
        return "<unknown>".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now() - t.0)
        .get_seconds()
        .max(0);
    if secs < 120 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// `kubectl get gs` and `kubectl get pod` for the minecraft set, as kubectl prints them.
async fn tables(client: &kube::Client) -> anyhow::Result<String> {
    let lp = ListParams::default().labels(&format!("{LABEL_OWNER_GSS}=minecraft"));
    let mut gss: Vec<GameServer> = Api::<GameServer>::namespaced(client.clone(), "default")
        .list(&lp)
        .await?
        .items;
    gss.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut s = String::new();
    let _ = writeln!(s, "$ kubectl get gs");
    let _ = writeln!(
        s,
        "{:<14}{:<10}{:<10}{:<5}{:<5}AGE",
        "NAME", "STATE", "OPSSTATE", "DP", "UP"
    );
    for g in &gss {
        let st = g.status.clone().unwrap_or_default();
        let prio = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| match v {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i)) => {
                i.to_string()
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => s.clone(),
            None => "0".into(),
        };
        let _ = writeln!(
            s,
            "{:<14}{:<10}{:<10}{:<5}{:<5}{}",
            g.metadata.name.as_deref().unwrap_or_default(),
            st.current_state.as_deref().unwrap_or(""),
            g.spec.ops_state.as_deref().unwrap_or("None"),
            prio(st.deletion_priority.as_ref()),
            prio(st.update_priority.as_ref()),
            age(g.metadata.creation_timestamp.as_ref())
        );
    }
    let mut pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&lp)
        .await?
        .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let _ = writeln!(s, "$ kubectl get pod");
    let _ = writeln!(
        s,
        "{:<14}{:<8}{:<10}{:<10}{:<8}IMAGES",
        "NAME", "READY", "STATUS", "RESTARTS", "AGE"
    );
    for p in &pods {
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let ready = statuses.iter().filter(|c| c.ready).count();
        let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
        let images: Vec<String> = p
            .spec
            .as_ref()
            .map(|sp| {
                sp.containers
                    .iter()
                    .map(|c| {
                        c.image
                            .clone()
                            .unwrap_or_default()
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<14}{:<8}{:<10}{:<10}{:<8}{}",
            p.metadata.name.as_deref().unwrap_or_default(),
            format!(
                "{ready}/{}",
                statuses
                    .len()
                    .max(p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0))
            ),
            p.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            restarts,
            age(p.metadata.creation_timestamp.as_ref()),
            images.join(",")
        );
    }
    Ok(s)
}
