//! hotsync on the real node: a kubelet 1.20.2 on containerd with runc, the real scheduler and
//! controller-manager, images pulled for real from the local registry, OKG and Kruise simulated from their
//! source. What the kubelet does (restarts, image names and IDs, pull and crash failures, readiness, the
//! pod's network) is the kubelet's own here.

use crate::gitrepo::TempRepo;
use crate::harness::{self, TestEnv};
use hotsync::model::GameServerSet;
use hotsync::rollout::{Outcome, PodOutcome};
use hotsync::sync::SyncReport;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

const ENGINE: &str = "registry.example.com/minecraft-demo:1.12.2";

/// How long a real pod may take to come up or restart here.
const REAL: Duration = Duration::from_secs(90);

fn manifest(ns: &str, replicas: i32, sidecar: &str, extra_sidecar: &str) -> String {
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
  gameServerTemplate:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: minecraft
          image: {ENGINE}
          ports:
            - containerPort: 7777
        - name: sidecar
          image: {sidecar}
{extra_sidecar}"
    )
}

async fn sync(env: &TestEnv, repo: &TempRepo) -> SyncReport {
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.wait_timeout = REAL;
    opts.rollout.pod_timeout = Duration::from_secs(40);
    hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("sync failed: {}", hotsync::sync::error_chain(&e)))
}

/// A repository with the set at `sidecar`, synced: its pods running on the real node.
async fn started(env: &TestEnv, replicas: i32, sidecar: &str, extra: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, replicas, sidecar, extra),
    );
    repo.commit_all("minecraft");
    let report = sync(env, &repo).await;
    assert_eq!(report.exit_code(), 0, "first sync: {report:#?}");
    ready(env, replicas as usize).await;
    repo
}

async fn bump(
    env: &TestEnv,
    repo: &mut TempRepo,
    replicas: i32,
    sidecar: &str,
    extra: &str,
) -> SyncReport {
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, replicas, sidecar, extra),
    );
    repo.commit_all(&format!("sidecar to {sidecar}"));
    sync(env, repo).await
}

/// Waits until the set has `n` pods, all Ready.
async fn ready(env: &TestEnv, n: usize) -> Vec<Pod> {
    env.eventually(
        &format!("{n} ready pods on the real node"),
        REAL,
        || async {
            let pods = env.pods("minecraft").await;
            if pods.len() == n && pods.iter().all(hotsync::live::is_ready) {
                Ok(pods)
            } else {
                Err(describe(&pods))
            }
        },
    )
    .await
}

fn describe(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            let cs: Vec<String> = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| {
                    let w = c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone())
                        .unwrap_or_default();
                    format!(
                        "{}={} r{} ready={} {w}",
                        c.name, c.image, c.restart_count, c.ready
                    )
                })
                .collect();
            format!(
                "{} ready={} node={:?} [{}]",
                p.name_any(),
                hotsync::live::is_ready(p),
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                cs.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("-n")
        .arg(&env.namespace)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run kubectl: {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status<'a>(p: &'a Pod, c: &str) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    hotsync::live::container_status(p, c).unwrap_or_else(|| panic!("{} has no {c}", p.name_any()))
}

fn started_at(p: &Pod, c: &str) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    status(p, c)
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone())
}

fn sidecar(tag: &str) -> String {
    format!("registry.example.com/sidecar:{tag}")
}

/// The seed's story, read with the real kubectl: the sidecar bump restarts the sidecar only (RESTARTS
/// 1, the same pods, UIDs, IPs and ages), the engine's container is the same one (its ID and start
/// time unchanged; its log shows one start).
#[tokio::test]
async fn the_seed_bump_restarts_only_the_sidecar_on_a_real_kubelet() {
    let env = harness::real_env("real seed").await;
    let mut repo = started(&env, 3, &sidecar("v0.1"), "").await;
    let before = env.pods("minecraft").await;
    let table = kubectl(&env, &["get", "pod"]);
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.contains("2/2") && l.contains("Running")),
        "{table}"
    );
    let report = bump(&env, &mut repo, 3, &sidecar("v0.2"), "").await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let after = ready(&env, 3).await;
    let table = kubectl(&env, &["get", "pod", "-o", "wide"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    for row in &rows {
        assert_eq!(row[1], "2/2", "{table}");
        assert_eq!(row[3], "1", "RESTARTS 1: {table}");
    }
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.uid(), a.uid(), "the same pod");
        assert_eq!(
            b.metadata.creation_timestamp, a.metadata.creation_timestamp,
            "AGE unchanged"
        );
        assert_eq!(
            b.status.as_ref().and_then(|s| s.pod_ip.clone()),
            a.status.as_ref().and_then(|s| s.pod_ip.clone()),
            "the same IP"
        );
        assert_eq!(
            status(b, "minecraft").container_id,
            status(a, "minecraft").container_id
        );
        assert_eq!(started_at(b, "minecraft"), started_at(a, "minecraft"));
        assert_eq!(status(a, "minecraft").restart_count, 0);
        assert_eq!(status(a, "sidecar").restart_count, 1);
        assert_ne!(
            status(b, "sidecar").container_id,
            status(a, "sidecar").container_id
        );
        assert_eq!(status(a, "sidecar").image, sidecar("v0.2"));
        let log = kubectl(&env, &["logs", &a.name_any(), "-c", "minecraft"]);
        assert_eq!(
            log.matches("started").count(),
            1,
            "one start of the engine: {log}"
        );
        let log = kubectl(&env, &["logs", &a.name_any(), "-c", "sidecar"]);
        assert!(log.contains("sidecar v0.2: started"), "{log}");
    }
}

/// A tag that does not exist: the kubelet's real ErrImagePull, then ImagePullBackOff; hotsync rolls that
/// pod back, saying why, keeps OKG held, and touches no other pod.
#[tokio::test]
async fn a_missing_tag_fails_on_the_real_kubelet_and_that_pod_is_rolled_back() {
    let env = harness::real_env("real missing").await;
    let mut repo = started(&env, 2, &sidecar("v0.1"), "").await;
    let report = bump(&env, &mut repo, 2, &sidecar("no-such-tag"), "").await;
    assert_eq!(report.exit_code(), 1, "{report:#?}");
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Failed);
    let rolled: Vec<_> = set
        .pods
        .iter()
        .filter(|p| p.result == PodOutcome::RolledBack)
        .collect();
    assert_eq!(rolled.len(), 1, "{:?}", set.pods);
    let msg = rolled[0].message.clone().unwrap_or_default();
    assert!(
        msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"),
        "{msg}"
    );
    let pods = ready(&env, 2).await;
    for p in &pods {
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some(sidecar("v0.1").as_str())
        );
        assert!(hotsync::images::reports(
            &status(p, "sidecar").image,
            &status(p, "sidecar").image_id,
            &sidecar("v0.1")
        ));
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(gss
        .annotations()
        .contains_key(hotsync::rollout::ANNOTATION_HOLD));
}

/// A sidecar that crashes on start: the kubelet's CrashLoopBackOff; that pod is rolled back.
#[tokio::test]
async fn a_crashing_sidecar_loops_on_the_real_kubelet_and_that_pod_is_rolled_back() {
    let env = harness::real_env("real crash").await;
    let mut repo = started(&env, 2, &sidecar("v0.1"), "").await;
    let report = bump(&env, &mut repo, 2, &sidecar("crash"), "").await;
    assert_eq!(report.exit_code(), 1, "{report:#?}");
    let set = &report.sets[0];
    let rolled: Vec<_> = set
        .pods
        .iter()
        .filter(|p| p.result == PodOutcome::RolledBack)
        .collect();
    assert_eq!(rolled.len(), 1, "{:?}", set.pods);
    let msg = rolled[0].message.clone().unwrap_or_default();
    assert!(
        msg.contains("CrashLoopBackOff") || msg.contains("not ready"),
        "{msg}"
    );
    let pods = ready(&env, 2).await;
    assert!(pods
        .iter()
        .all(|p| hotsync::live::spec_image(p, "sidecar") == Some(sidecar("v0.1").as_str())));
}

/// A canary step on the real kubelet: the sidecar `flaky` runs six seconds and exits 1, so after the
/// step completed the kubelet restarts it (its own back-off); the next sync fails the step's gate, naming
/// the pod and container, and rolls that pod back in place, while the other pod was never touched.
#[tokio::test]
async fn a_canary_that_crashes_during_its_pause_fails_the_gate_and_is_rolled_back_on_the_real_kubelet(
) {
    let env = harness::real_env("real gate").await;
    let mut repo = started(&env, 2, &sidecar("v0.1"), "").await;
    let before = env.pods("minecraft").await;
    let canary = canary_paused(&env, &mut repo, "flaky", "").await;
    env.eventually(
        "the kubelet restarted the canary's sidecar after it exited",
        REAL,
        || async {
            let pods = env.pods("minecraft").await;
            let restarts = pods
                .iter()
                .find(|p| p.name_any() == canary)
                .map_or(0, |p| status(p, "sidecar").restart_count);
            if restarts >= 2 {
                Ok(())
            } else {
                Err(describe(&pods))
            }
        },
    )
    .await;
    let message = canary_rolled_back(&env, &repo, &canary, &before, "v0.1").await;
    assert!(
        message.contains(&format!("gate restarts: pod {canary} container sidecar")),
        "{message}"
    );
    for p in ready(&env, 2).await {
        if p.name_any() != canary {
            assert_eq!(status(&p, "sidecar").restart_count, 0, "never touched");
        }
    }
}

/// Commits the two-pod set's sidecar at `tag` (with `extra` on the sidecar) in one step of one pod with a
/// ten-minute pause, and syncs it: paused at that step with one pod on `tag`, whose name it returns.
async fn canary_paused(env: &TestEnv, repo: &mut TempRepo, tag: &str, extra: &str) -> String {
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, 2, &sidecar(tag), extra).replacen(
            "  name: minecraft\n",
            "  name: minecraft\n  annotations:\n    hotsync.dev/steps: \"1\"\n    hotsync.dev/step-pause: 10m\n",
            1,
        ),
    );
    repo.commit_all(&format!("sidecar {tag}, one canary"));
    let report = sync(env, repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    let pods = env.pods("minecraft").await;
    let canary: Vec<String> = pods
        .iter()
        .filter(|p| hotsync::live::spec_image(p, "sidecar") == Some(sidecar(tag).as_str()))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(canary.len(), 1, "{}", describe(&pods));
    canary[0].clone()
}

/// Syncs a set whose canary failed its step's gate: Failed, the canary alone rolled back, both pods the
/// same as `before`, ready on `sidecar(tag)` again, the engine's container never restarted. Returns the
/// message.
async fn canary_rolled_back(
    env: &TestEnv,
    repo: &TempRepo,
    canary: &str,
    before: &[Pod],
    tag: &str,
) -> String {
    let report = sync(env, repo).await;
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Failed, "{report:#?}");
    let rolled: Vec<&str> = set
        .pods
        .iter()
        .filter(|p| p.result == PodOutcome::RolledBack)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(rolled, vec![canary], "{report:#?}");
    let after = ready(env, 2).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.uid(), a.uid(), "the same pods");
        assert_eq!(
            hotsync::live::spec_image(a, "sidecar"),
            Some(sidecar(tag).as_str())
        );
        assert_eq!(
            status(b, "minecraft").container_id,
            status(a, "minecraft").container_id,
            "the engine kept running"
        );
    }
    set.message.clone().unwrap_or_default()
}

/// A canary whose readiness probe stops passing during the step's pause, on the real kubelet: the
/// `unready` sidecar answers its tcpSocket probe for thirty seconds, then stops listening and runs on,
/// not ready and not restarted. Once the gate has seen the step healthy (OKG's reading of the pod as it
/// is now), the next sync fails the gate naming the pod, and rolls it back in place.
#[tokio::test]
async fn a_canary_whose_readiness_fails_during_its_pause_fails_the_gate_on_the_real_kubelet() {
    let env = harness::real_env("real gate unready").await;
    let probe = "          readinessProbe:\n            tcpSocket:\n              port: 8080\n            periodSeconds: 1\n            failureThreshold: 1\n";
    let mut repo = started(&env, 2, &sidecar("slow-ready"), probe).await;
    let before = env.pods("minecraft").await;
    let canary = canary_paused(&env, &mut repo, "unready", probe).await;
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.wait_timeout = REAL;
    opts.rollout.pod_timeout = Duration::from_secs(40);
    crate::progressive::sync_until_seen_healthy(&env, &opts, Duration::from_secs(25)).await;
    env.eventually("the kubelet found the canary not ready", REAL, || async {
        let pods = env.pods("minecraft").await;
        match pods.iter().find(|p| p.name_any() == canary) {
            Some(p) if !hotsync::live::is_ready(p) => Ok(()),
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let message = canary_rolled_back(&env, &repo, &canary, &before, "slow-ready").await;
    assert!(
        message.contains(&canary) && message.contains("during the pause"),
        "{message}"
    );
}

/// A new tag on the digest already running (a routine re-tag in CI): the kubelet restarts the sidecar
/// and may report the old tag with the same imageID; the pod is done, not failed, and restarts once.
#[tokio::test]
async fn a_re_tag_of_the_running_digest_is_one_restart_not_a_failure() {
    let env = harness::real_env("real retag").await;
    let mut repo = started(&env, 2, &sidecar("v0.2"), "").await;
    let report = bump(&env, &mut repo, 2, &sidecar("v0.2-same"), "").await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let pods = ready(&env, 2).await;
    for p in &pods {
        assert_eq!(status(p, "sidecar").restart_count, 1, "{}", describe(&pods));
        assert_eq!(
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "InPlaceUpdateReady"))
                .map(|c| c.status.as_str()),
            Some("True")
        );
    }
    assert!(
        pods.iter()
            .all(|p| !hotsync::rollout::plan::kruise_check_fails(p)),
        "nothing left for Kruise to count unavailable"
    );
}

/// Short names (`sidecar:v1`, reported `docker.io/library/sidecar:v1`) and digest pins are judged as the
/// kubelet reports them: both roll out and complete.
#[tokio::test]
async fn short_names_and_digest_pins_complete_on_the_real_kubelet() {
    let env = harness::real_env("real short names").await;
    let mut repo = started(&env, 1, "sidecar:v1", "").await;
    let pods = env.pods("minecraft").await;
    assert_eq!(
        status(&pods[0], "sidecar").image,
        "docker.io/library/sidecar:v1"
    );
    let report = bump(&env, &mut repo, 1, "sidecar:v2", "").await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let digest = env
        .images
        .digests
        .get("sidecar:v0.3")
        .cloned()
        .unwrap_or_else(|| panic!("no digest of sidecar:v0.3 pushed"));
    let pinned = format!("registry.example.com/sidecar@{digest}");
    let report = bump(&env, &mut repo, 1, &pinned, "").await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let pods = ready(&env, 1).await;
    assert_eq!(status(&pods[0], "sidecar").restart_count, 2);
    assert!(status(&pods[0], "sidecar").image_id.ends_with(&digest));
}

/// A sidecar whose readiness probe passes only some seconds after it starts: the pod is not done (and the
/// rollout does not move on) until the kubelet reports it ready.
#[tokio::test]
async fn a_slow_readiness_probe_holds_the_pod_until_the_kubelet_says_ready() {
    let env = harness::real_env("real slow ready").await;
    let probe = "          readinessProbe:\n            tcpSocket:\n              port: 8080\n            periodSeconds: 1\n";
    let mut repo = started(&env, 2, &sidecar("slow-ready"), probe).await;
    let t = Instant::now();
    let report = bump(&env, &mut repo, 2, &sidecar("slow-ready-b"), probe).await;
    let took = t.elapsed();
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    // One pod at a time (maxUnavailable 1), each ready 4 s after its sidecar starts.
    assert!(took >= Duration::from_secs(8), "took {took:?}");
    let pods = ready(&env, 2).await;
    assert!(pods
        .iter()
        .all(|p| status(p, "sidecar").restart_count == 1 && status(p, "sidecar").ready));
}

/// The players' view: a TCP session from the host to the engine's port on the pod IP keeps exchanging
/// bytes before, during and after the sidecar's restart, on one connection.
#[tokio::test]
async fn a_player_stays_connected_to_the_engine_while_the_sidecar_restarts() {
    let env = harness::real_env("real player").await;
    let mut repo = started(&env, 1, &sidecar("v0.1"), "").await;
    let pod = env.pods("minecraft").await.remove(0);
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| panic!("no pod IP"));
    let mut conn = std::net::TcpStream::connect((ip.as_str(), 7777))
        .unwrap_or_else(|e| panic!("connect to the engine at {ip}:7777: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let player = std::thread::spawn(move || {
        let mut exchanged = 0u64;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            let msg = format!("ping {exchanged:08}\n");
            let mut buf = vec![0u8; msg.len()];
            conn.write_all(msg.as_bytes())
                .map_err(|e| format!("write after {exchanged}: {e}"))?;
            conn.read_exact(&mut buf)
                .map_err(|e| format!("read after {exchanged}: {e}"))?;
            if buf != msg.as_bytes() {
                return Err(format!(
                    "echo {:?} for {msg:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            exchanged += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok::<u64, String>(exchanged)
    });
    std::thread::sleep(Duration::from_secs(1));
    let report = bump(&env, &mut repo, 1, &sidecar("v0.2"), "").await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let exchanged = player
        .join()
        .unwrap_or_else(|_| panic!("the player thread panicked"))
        .unwrap_or_else(|e| panic!("the player's session broke: {e}"));
    assert!(exchanged > 20, "{exchanged} exchanges");
    let after = ready(&env, 1).await;
    assert_eq!(status(&after[0], "sidecar").restart_count, 1);
    assert_eq!(status(&after[0], "minecraft").restart_count, 0);
}

/// `hotsync run` killed with SIGKILL while it rolls a bump out on real pods, started again: the rollout
/// finishes, every sidecar restarted exactly once, the engines never.
#[tokio::test]
async fn the_daemon_killed_mid_rollout_on_real_pods_finishes_with_one_restart_each() {
    let env = harness::real_env("real sigkill").await;
    let mut repo = started(&env, 3, &sidecar("v0.1"), "").await;
    let registry = env
        .node
        .as_ref()
        .map(|n| n.registry.clone())
        .unwrap_or_default();
    let mirror = vec![
        "--registry-mirror".to_string(),
        format!("registry.example.com=http://{registry}"),
    ];
    let repo_path = repo.path().to_path_buf();
    let run = |log: &std::path::Path| harness::spawn_daemon(&env, &repo_path, log, &mirror);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let daemon = run(&dir.path().join("1.log"));
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, 3, &sidecar("v0.2"), ""),
    );
    repo.commit_all("sidecar to v0.2");
    // Kill it once the first pod carries the new image.
    let log1 = dir.path().join("1.log");
    env.eventually("the first pod patched", REAL, || async {
        let pods = env.pods("minecraft").await;
        if pods
            .iter()
            .any(|p| hotsync::live::spec_image(p, "sidecar") == Some(sidecar("v0.2").as_str()))
        {
            Ok(())
        } else {
            let log = std::fs::read_to_string(&log1).unwrap_or_default();
            Err(format!("{}\ndaemon log:\n{log}", describe(&pods)))
        }
    })
    .await;
    drop(daemon);
    let _daemon = run(&dir.path().join("2.log"));
    let pods = env
        .eventually(
            "every pod on v0.2 and ready",
            Duration::from_secs(180),
            || async {
                let pods = env.pods("minecraft").await;
                // What the kubelet reports, not the spec: right after a patch the pod's Ready condition
                // is the kubelet's last word, from before it saw the new image.
                let done = pods.len() == 3
                    && pods.iter().all(|p| {
                        hotsync::live::is_ready(p)
                            && hotsync::live::container_status(p, "sidecar").is_some_and(|c| {
                                c.ready
                                    && hotsync::images::reports(
                                        &c.image,
                                        &c.image_id,
                                        &sidecar("v0.2"),
                                    )
                            })
                    });
                if done {
                    Ok(pods)
                } else {
                    Err(describe(&pods))
                }
            },
        )
        .await;
    for p in &pods {
        assert_eq!(status(p, "sidecar").restart_count, 1, "{}", describe(&pods));
        assert_eq!(status(p, "minecraft").restart_count, 0);
    }
}

/// Before any container restarts into a new image, hotsync asks the registry (here the node's own,
/// through a mirror setting) whether it exists: a missing tag stops the set with nothing applied and no
/// container restarted; an existing one rolls out.
#[tokio::test]
async fn a_missing_image_is_found_missing_in_the_registry_before_any_restart() {
    let env = harness::real_env("real image check").await;
    let mut repo = started(&env, 2, &sidecar("v0.1"), "").await;
    let registry = env
        .node
        .as_ref()
        .map(|n| n.registry.clone())
        .unwrap_or_default();
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.wait_timeout = REAL;
    opts.rollout.image_check = Some(
        hotsync::registry::Registries::new(std::collections::BTreeMap::from([(
            "registry.example.com".to_string(),
            format!("http://{registry}"),
        )]))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, 2, &sidecar("no-such-tag"), ""),
    );
    repo.commit_all("a tag that was never pushed");
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 1, "{report:#?}");
    let msg = report.sets[0].message.clone().unwrap_or_default();
    assert!(
        msg.contains("no-such-tag") && msg.contains("does not exist"),
        "{msg}"
    );
    let pods = env.pods("minecraft").await;
    for p in &pods {
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some(sidecar("v0.1").as_str())
        );
        assert_eq!(status(p, "sidecar").restart_count, 0);
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !gss.annotations()
            .contains_key(hotsync::rollout::ANNOTATION_HOLD),
        "nothing applied"
    );
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, 2, &sidecar("v0.2"), ""),
    );
    repo.commit_all("an image that exists");
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
}

/// `hotsync demo` as root on this machine runs on the real node by default, and its story holds there:
/// each sidecar restarted once, the engine's own log shows one start.
#[tokio::test]
async fn the_demo_runs_on_the_real_node_by_default() {
    let (code, out) = crate::demo::run_demo(&[], std::time::Duration::from_secs(600)).await;
    assert_eq!(code, 0, "hotsync demo failed:\n{out}");
    assert!(
        !out.contains("cannot start here"),
        "the demo fell back to the simulated kubelet:\n{out}"
    );
    assert!(out.contains("a real node (kubelet, containerd"), "{out}");
    crate::demo::assert_the_story(&out);
    let log = crate::demo::kubectl_blocks(&out)
        .into_iter()
        .find(|b| b.command.starts_with("logs minecraft-0"))
        .unwrap_or_else(|| panic!("the engine's log is shown:\n{out}"));
    let starts = std::iter::once(&log.header)
        .chain(&log.rows)
        .filter(|l| l.join(" ").contains("started"))
        .count();
    assert_eq!(starts, 1, "the engine started once:\n{out}");
}
