//! `hotsync run` on the real API server with the simulated OKG and kubelet: pushed commits roll out
//! with no further command, the webhook is authenticated, metrics and health answer, drift is
//! reported and healed, and two replicas elect one leader that another replaces when it dies.

use crate::gitrepo::{git, TempRepo};
use crate::harness::{self, Reaped, TestEnv, CONVERGE};
use crate::status_servers::{free_port, BareRemote, GitDaemon};
use hmac::Mac as _;
use hotsync::daemon::DaemonConfig;
use hotsync::model::GameServerSet;
use hotsync::rollout::RolloutOptions;
use hotsync::sync::SyncOptions;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(repo: &str, cache: &Path, listen: SocketAddr) -> DaemonConfig {
    DaemonConfig {
        sync: SyncOptions {
            repo: repo.to_string(),
            branch: Some("main".into()),
            path: ".".into(),
            load: Default::default(),
            cache_dir: cache.to_path_buf(),
            fetch: Default::default(),
            rollout: RolloutOptions {
                wait: false,
                pod_timeout: Duration::from_secs(20),
                ..RolloutOptions::default()
            },
            set_concurrency: 4,
        },
        branch: "main".into(),
        interval: Duration::from_millis(300),
        listen,
        webhook_secret: None,
        lease: None,
        self_heal: false,
        watch_local: false,
        shutdown_grace: Duration::from_secs(2),
        status: None,
    }
}

/// A daemon running in this process, stopped on drop.
struct Daemon {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), hotsync::daemon::DaemonError>>>,
    addr: SocketAddr,
}

impl Daemon {
    async fn start(env: &TestEnv, cfg: DaemonConfig) -> Daemon {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let addr = cfg.listen;
        let client = env.client.clone();
        let task = tokio::spawn(async move { hotsync::daemon::run(client, cfg, rx).await });
        Daemon {
            stop,
            task: Some(task),
            addr,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(10), t).await;
            let r = r.unwrap_or_else(|_| panic!("the daemon did not stop within 10s of SIGTERM"));
            r.unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("daemon: {}", hotsync::sync::error_chain(&e)));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn wait_http_ok(addr: SocketAddr, path: &str) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            if harness::http(addr, "GET", path, &[], b"").await.0 == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sidecar_restarts(p: &Pod) -> i32 {
    hotsync::live::container_status(p, "sidecar")
        .map(|s| s.restart_count)
        .unwrap_or(-1)
}

async fn all_on(env: &TestEnv, tag: &str) -> Vec<Pod> {
    let image = format!("registry.example.com/sidecar:{tag}");
    env.eventually(
        &format!("every pod on sidecar {tag}, ready"),
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let done = pods.len() == 3
                && pods.iter().all(|p| {
                    hotsync::live::container_status(p, "sidecar")
                        .is_some_and(|s| s.image == image && s.ready)
                        && hotsync::live::is_ready(p)
                });
            if done {
                Ok(pods)
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter()
                        .map(|p| (
                            p.name_any(),
                            hotsync::live::spec_image(p, "sidecar").map(str::to_string)
                        ))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_pushed_commit_is_rolled_out_by_the_daemon_with_no_further_command() {
    let env = harness::env("daemon push").await;
    let remote = BareRemote::new();
    let server = GitDaemon::start(&remote);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    git(work.path(), &["clone", "-q", &server.url, "w"]);
    let w = work.path().join("w");
    std::fs::remove_file(w.join("set.yaml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        w.join("minecraft.yaml"),
        harness::seed_manifest(&env.namespace, 3, "v0.1", ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(&w, &["add", "-A"]);
    git(&w, &["commit", "-qm", "minecraft at v0.1"]);
    git(&w, &["push", "-q", "origin", "main"]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(&env, config(&server.url, cache.path(), harness::loopback())).await;
    all_on(&env, "v0.1").await;
    std::fs::write(
        w.join("minecraft.yaml"),
        harness::seed_manifest(&env.namespace, 3, "v0.2", ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(&w, &["commit", "-qam", "bump sidecar"]);
    let pushed = Instant::now();
    git(&w, &["push", "-q", "origin", "main"]);
    let first_patch = env
        .eventually("the daemon to patch a pod", CONVERGE, || async {
            let pods = env.pods("minecraft").await;
            if pods.iter().any(|p| {
                hotsync::live::spec_image(p, "sidecar") == Some("registry.example.com/sidecar:v0.2")
            }) {
                Ok(pushed.elapsed())
            } else {
                Err("no pod patched yet".to_string())
            }
        })
        .await;
    eprintln!("push to first patch through polling (interval 300ms): {first_patch:?}");
    for p in all_on(&env, "v0.2").await {
        assert_eq!(sidecar_restarts(&p), 1, "{}", p.name_any());
    }
    daemon.shutdown().await;
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_webhook_refuses_a_bad_signature_and_a_good_one_triggers_a_sync_at_once() {
    let env = harness::env("daemon webhook").await;
    let mut repo = TempRepo::new();
    repo.write(
        "minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 3, "v0.1", ""),
    );
    repo.commit_all("v0.1");
    git(repo.path(), &["branch", "-M", "main"]);
    let mut cfg = config(
        &repo.path().display().to_string(),
        &repo.path().join(".cache"),
        harness::loopback(),
    );
    cfg.interval = Duration::from_secs(3600);
    cfg.webhook_secret = Some("s3cret-hook".into());
    let daemon = Daemon::start(&env, cfg).await;
    all_on(&env, "v0.1").await;
    wait_http_ok(daemon.addr, "/readyz").await;
    repo.write(
        "minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 3, "v0.2", ""),
    );
    repo.commit_all("bump");
    let body = br#"{"ref":"refs/heads/main"}"#;
    let bad = harness::http(
        daemon.addr,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign("wrong", body)),
        ],
        body,
    )
    .await;
    assert_eq!(bad.0, 401, "{bad:?}");
    let unsigned = harness::http(
        daemon.addr,
        "POST",
        "/webhook",
        &[("X-GitHub-Event", "push".into())],
        body,
    )
    .await;
    assert_eq!(unsigned.0, 401);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        env.pods("minecraft")
            .await
            .iter()
            .all(|p| hotsync::live::spec_image(p, "sidecar")
                == Some("registry.example.com/sidecar:v0.1")),
        "a refused webhook must not trigger a sync"
    );
    let sent = Instant::now();
    let good = harness::http(
        daemon.addr,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", "d-1".into()),
            ("X-Hub-Signature-256", sign("s3cret-hook", body)),
        ],
        body,
    )
    .await;
    assert_eq!(good.0, 202, "{good:?}");
    let first_patch = env
        .eventually("the webhook's sync to patch a pod", CONVERGE, || async {
            let pods = env.pods("minecraft").await;
            if pods.iter().any(|p| {
                hotsync::live::spec_image(p, "sidecar") == Some("registry.example.com/sidecar:v0.2")
            }) {
                Ok(sent.elapsed())
            } else {
                Err("no pod patched yet".to_string())
            }
        })
        .await;
    eprintln!("webhook to first patch: {first_patch:?}");
    assert!(
        first_patch < Duration::from_secs(5),
        "the webhook took {first_patch:?}"
    );
    all_on(&env, "v0.2").await;
    let replay = harness::http(
        daemon.addr,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Delivery", "d-1".into()),
            ("X-Hub-Signature-256", sign("s3cret-hook", body)),
        ],
        body,
    )
    .await;
    assert_eq!(replay.0, 200);
    assert!(replay.1.contains("seen before"), "{replay:?}");
    let bearer = harness::http(
        daemon.addr,
        "POST",
        "/webhook",
        &[("Authorization", "Bearer s3cret-hook".into())],
        b"{}",
    )
    .await;
    assert_eq!(bearer.0, 202);
    daemon.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_as_documented() {
    let env = harness::env("daemon metrics").await;
    let mut repo = TempRepo::new();
    repo.write(
        "minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 3, "v0.1", ""),
    );
    repo.commit_all("v0.1");
    git(repo.path(), &["branch", "-M", "main"]);
    let daemon = Daemon::start(
        &env,
        config(
            &repo.path().display().to_string(),
            &repo.path().join(".cache"),
            harness::loopback(),
        ),
    )
    .await;
    wait_http_ok(daemon.addr, "/healthz").await;
    all_on(&env, "v0.1").await;
    wait_http_ok(daemon.addr, "/readyz").await;
    repo.write(
        "minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 3, "v0.2", ""),
    );
    let commit = repo.commit_all("v0.2");
    all_on(&env, "v0.2").await;
    let metrics = env
        .eventually("the synced commit in /metrics", CONVERGE, || async {
            let (code, body) = harness::http(daemon.addr, "GET", "/metrics", &[], b"").await;
            if code == 200
                && body.contains(&format!(
                    "hotsync_last_synced_commit_info{{commit=\"{commit}\"}} 1"
                ))
            {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await;
    for name in [
        "hotsync_syncs_total{result=\"ok\"}",
        "hotsync_rollouts_total{result=\"synced\"}",
        "hotsync_pods_patched_total 3",
        "hotsync_sync_duration_seconds_bucket",
        "hotsync_last_sync_timestamp_seconds",
        "hotsync_polls_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert_eq!(
        harness::http(daemon.addr, "GET", "/nope", &[], b"").await.0,
        404
    );
    assert_eq!(
        harness::http(daemon.addr, "POST", "/webhook", &[], b"{}")
            .await
            .0,
        404,
        "no secret: no webhook"
    );
    daemon.shutdown().await;
}

/// Waits until the daemon has not synced for five of its intervals (300 ms): nothing is requeued.
async fn settled(env: &TestEnv, addr: std::net::SocketAddr) {
    let syncs = || async move {
        let (_, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
        body.lines()
            .filter(|l| l.starts_with("hotsync_syncs_total"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    env.eventually("the daemon to settle", CONVERGE, || async {
        let before = syncs().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = syncs().await;
        if !before.is_empty() && before == after {
            Ok(())
        } else {
            Err(format!("{before:?} -> {after:?}"))
        }
    })
    .await;
}

async fn drift_case(heal: bool) {
    let env = harness::env(if heal {
        "drift healed"
    } else {
        "drift reported"
    })
    .await;
    let mut repo = TempRepo::new();
    repo.write(
        "minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 3, "v0.1", ""),
    );
    repo.commit_all("v0.1");
    git(repo.path(), &["branch", "-M", "main"]);
    let mut cfg = config(
        &repo.path().display().to_string(),
        &repo.path().join(".cache"),
        harness::loopback(),
    );
    cfg.self_heal = heal;
    let daemon = Daemon::start(&env, cfg).await;
    let uid = all_on(&env, "v0.1")
        .await
        .iter()
        .find(|p| p.name_any() == "minecraft-1")
        .and_then(|p| p.metadata.uid.clone())
        .unwrap_or_else(|| panic!("minecraft-1"));
    // Once the daemon looks at the set no more (a set still Progressing is re-checked, and a re-check
    // brings every pod to Git: that is the rollout, not drift).
    settled(&env, daemon.addr).await;
    // Whether the kubelet ever ran the hacked image: each run of an image is one restart.
    // (ran it, the last resourceVersion the watch saw)
    let ran_hacked = std::sync::Arc::new(std::sync::Mutex::new((false, String::new())));
    let seen = ran_hacked.clone();
    let pods_api: kube::Api<Pod> = env.api();
    let watch = tokio::spawn(async move {
        use futures::StreamExt as _;
        let cfg = kube::runtime::watcher::Config::default().fields("metadata.name=minecraft-1");
        let mut stream = kube::runtime::watcher(pods_api, cfg).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            if let kube::runtime::watcher::Event::Apply(p) = ev {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.0 |= hotsync::live::container_status(&p, "sidecar")
                    .is_some_and(|s| s.image.ends_with(":hacked"));
                seen.1 = p.metadata.resource_version.clone().unwrap_or_default();
            }
        }
    });
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args([
            "-n",
            &env.namespace,
            "set",
            "image",
            "pod/minecraft-1",
            "sidecar=registry.example.com/sidecar:hacked",
        ])
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.eventually("a Drift event on the set", CONVERGE, || async {
        let events: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Drift")
                && e.note.as_deref().is_some_and(|n| n.contains("minecraft-1"))
        }) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                list.items
                    .iter()
                    .map(|e| (e.reason.clone(), e.note.clone()))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    let (_, metrics) = harness::http(daemon.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("hotsync_drift_detected_total 1")
            || metrics.contains("hotsync_drift_detected_total 2"),
        "{metrics}"
    );
    if heal {
        let pods = all_on(&env, "v0.1").await;
        let healed = pods
            .iter()
            .find(|p| p.name_any() == "minecraft-1")
            .unwrap_or_else(|| panic!("minecraft-1"));
        assert_eq!(
            healed.metadata.uid.as_deref(),
            Some(uid.as_str()),
            "healed in place"
        );
        let rv = healed.metadata.resource_version.clone().unwrap_or_default();
        env.eventually("the watch to see the healed pod", CONVERGE, || async {
            let seen = ran_hacked.lock().unwrap_or_else(|e| e.into_inner());
            if seen.1 == rv {
                Ok(())
            } else {
                Err(format!("{} != {rv}", seen.1))
            }
        })
        .await;
        watch.abort();
        // One restart for the hack and one for the heal; none at all when the heal came before the
        // kubelet got to the hacked image (it then sees its own spec unchanged).
        let hacked = ran_hacked.lock().unwrap_or_else(|e| e.into_inner()).0;
        assert_eq!(
            sidecar_restarts(healed),
            if hacked { 2 } else { 0 },
            "one restart for the hack (run: {hacked}), one for the heal"
        );
    } else {
        watch.abort();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pods = env.pods("minecraft").await;
        let p = pods
            .iter()
            .find(|p| p.name_any() == "minecraft-1")
            .unwrap_or_else(|| panic!("minecraft-1"));
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some("registry.example.com/sidecar:hacked"),
            "reported, not healed"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_out_of_band_image_change_is_reported_and_left_without_self_heal() {
    drift_case(false).await;
}

#[tokio::test]
async fn an_out_of_band_image_change_is_healed_in_place_with_self_heal() {
    drift_case(true).await;
}

/// `hotsync run` as a process, with leader election in the test namespace.
fn daemon_process(env: &TestEnv, repo: &Path, identity: &str, log: &Path) -> Reaped {
    let logfile = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
    Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(["run", "--repo"])
        .arg(repo)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args([
            "--branch",
            "main",
            "--interval",
            "300ms",
            "--lease-duration",
            "3s",
            "--pod-timeout",
            "30s",
        ])
        .args(["--lease-namespace", &env.namespace, "--identity", identity])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--no-status", "--cache-dir"])
        .arg(log.with_extension("cache"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(logfile)
        .spawn()
        .map(Reaped)
        .unwrap_or_else(|e| panic!("hotsync run: {e}"))
}

#[tokio::test]
async fn of_two_daemons_one_leads_and_the_other_finishes_the_rollout_when_it_is_killed() {
    let env = harness::env("daemon leader").await;
    let mut repo = TempRepo::new();
    let text = |tag: &str| {
        harness::seed_manifest(&env.namespace, 3, tag, "")
            .replace("replicas: 3", "replicas: 6")
            .replace(
                "podUpdatePolicy: InPlaceIfPossible",
                "podUpdatePolicy: InPlaceIfPossible\n      maxUnavailable: 1",
            )
    };
    repo.write("minecraft.yaml", &text("v0.1"));
    repo.commit_all("v0.1");
    git(repo.path(), &["branch", "-M", "main"]);
    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut a = daemon_process(&env, repo.path(), "replica-a", &logs.path().join("a.log"));
    let mut b = daemon_process(&env, repo.path(), "replica-b", &logs.path().join("b.log"));
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = env.api();
    let leader = env
        .eventually("a leader", CONVERGE, || async {
            match leases.get_opt("hotsync").await {
                Ok(Some(l)) => l
                    .spec
                    .and_then(|s| s.holder_identity)
                    .ok_or_else(|| "no holder".to_string()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    env.eventually("6 pods at v0.1", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        if pods.len() == 6 && pods.iter().all(hotsync::live::is_ready) {
            Ok(())
        } else {
            Err(format!("{} pods", pods.len()))
        }
    })
    .await;
    let uids: Vec<String> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    repo.write("minecraft.yaml", &text("v0.2"));
    repo.commit_all("bump");
    env.eventually("the leader to patch two pods", CONVERGE, || async {
        let n = env
            .pods("minecraft")
            .await
            .iter()
            .filter(|p| {
                hotsync::live::spec_image(p, "sidecar") == Some("registry.example.com/sidecar:v0.2")
            })
            .count();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    let (killed, _survivor, survivor_log) = if leader == "replica-a" {
        (&mut a, &mut b, "b.log")
    } else {
        (&mut b, &mut a, "a.log")
    };
    let follower_log = std::fs::read_to_string(logs.path().join(survivor_log)).unwrap_or_default();
    assert!(
        !follower_log.contains("set synced"),
        "the follower wrote while the leader lived:\n{follower_log}"
    );
    killed.0.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = killed.0.wait();
    let pods = env
        .eventually(
            "the survivor to finish the rollout",
            2 * CONVERGE,
            || async {
                let pods = env.pods("minecraft").await;
                let done = pods.len() == 6
                    && pods.iter().all(|p| {
                        hotsync::live::container_status(p, "sidecar").is_some_and(|s| {
                            s.image == "registry.example.com/sidecar:v0.2" && s.ready
                        })
                    });
                if done {
                    Ok(pods)
                } else {
                    let log =
                        std::fs::read_to_string(logs.path().join(survivor_log)).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    Err(format!(
                        "survivor's last log lines, newest first:\n{}",
                        tail.join("\n")
                    ))
                }
            },
        )
        .await;
    assert_eq!(
        pods.iter()
            .map(|p| p.uid().unwrap_or_default())
            .collect::<Vec<_>>(),
        uids,
        "no pod recreated"
    );
    for p in &pods {
        assert_eq!(sidecar_restarts(p), 1, "{} restarted twice", p.name_any());
    }
    env.eventually("the survivor to release the hold", CONVERGE, || async {
        let gss: GameServerSet = env
            .api()
            .get("minecraft")
            .await
            .map_err(|e| e.to_string())?;
        if gss
            .annotations()
            .contains_key(hotsync::rollout::ANNOTATION_HOLD)
        {
            Err("held".to_string())
        } else {
            Ok(())
        }
    })
    .await;
}

/// The daemon's sync of a new commit is incremental: a set whose manifest did not change and that
/// nobody edited since it was synced is not read or written again (it keeps the revision it was synced
/// at), the changed set is synced, and a set edited by hand in the cluster is put back, whether or not
/// Git changed it.
#[tokio::test]
async fn a_new_commit_syncs_only_the_sets_it_changed_or_someone_edited() {
    let env = harness::env("daemon incremental").await;
    let set = |name: &str, replicas: i32| {
        harness::seed_manifest(&env.namespace, replicas, "v0.1", "")
            .replace("name: minecraft", &format!("name: {name}"))
    };
    let mut repo = TempRepo::new();
    for name in ["alpha", "beta", "gamma"] {
        repo.write(&format!("{name}.yaml"), &set(name, 1));
    }
    let first = repo.commit_all("three sets").to_string();
    git(repo.path(), &["branch", "-M", "main"]);
    let cfg = config(
        &repo.path().display().to_string(),
        &repo.path().join(".cache"),
        harness::loopback(),
    );
    let daemon = Daemon::start(&env, cfg).await;
    let revision = |g: &GameServerSet| {
        g.annotations()
            .get(hotsync::rollout::ANNOTATION_REVISION)
            .cloned()
            .unwrap_or_default()
    };
    let sets = || async {
        let mut out = std::collections::BTreeMap::new();
        for name in ["alpha", "beta", "gamma"] {
            if let Some(g) = env
                .api::<GameServerSet>()
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
            {
                out.insert(name, (revision(&g), g.pod_update_policy().to_string()));
            }
        }
        Ok::<_, String>(out)
    };
    env.eventually("the three sets at the first commit", CONVERGE, || async {
        let s = sets().await?;
        if s.len() == 3 && s.values().all(|(r, _)| *r == first) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    // Once every pod is ready the sets are Synced and no longer requeued; then edit gamma by hand and
    // change beta in Git.
    env.eventually("a ready pod in each set", CONVERGE, || async {
        let mut ready = 0;
        for name in ["alpha", "beta", "gamma"] {
            ready += env
                .pods(name)
                .await
                .iter()
                .filter(|p| hotsync::live::is_ready(p))
                .count();
        }
        if ready == 3 {
            Ok(())
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.api::<GameServerSet>()
        .patch(
            "gamma",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceOnly"}}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Synced sets are not looked at again until Git changes: the edit stays for now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = env
        .api::<GameServerSet>()
        .get("gamma")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        g.pod_update_policy(),
        "InPlaceOnly",
        "no sync without a trigger"
    );
    repo.write("beta.yaml", &set("beta", 2));
    let second = repo.commit_all("beta to 2").to_string();
    let seen = env
        .eventually(
            "beta and the edited gamma synced at the second commit",
            CONVERGE,
            || async {
                let s = sets().await?;
                if s.get("beta").is_some_and(|(r, _)| *r == second)
                    && s.get("gamma")
                        .is_some_and(|(r, p)| *r == second && p == "InPlaceIfPossible")
                {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
    assert_eq!(
        seen.get("alpha").map(|(r, _)| r.as_str()),
        Some(first.as_str()),
        "alpha, unchanged and unedited, was not synced again: {seen:?}"
    );
    daemon.shutdown().await;
}
