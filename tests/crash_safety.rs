//! Crash safety of `hotsync run` on a 50-pod rollout: the daemon killed with SIGKILL at seeded random
//! moments, and the API server killed and restarted under it (etcd kept). Whatever the moment, every pod
//! ends on Git's images with exactly one more restart of the changed container and none of the engine,
//! no pod is recreated, the hold on OKG is released and the status committed to Git says Synced.
//!
//! The moments are drawn from a seeded generator (`HOTSYNC_CRASH_SEED` replaces the seed; every trial
//! prints its seed and moments) and are defined by what the cluster shows ("once 17 pods carry the new
//! image, plus 12 ms"), not by wall time alone, so a trial hits the same step of the rollout on a fast
//! machine and on a slow one.

use crate::gitrepo::{git, TempRepo};
use crate::harness::{self, Reaped, TestEnv, CONVERGE};
use hotsync::model::GameServerSet;
use hotsync_sim::{ClusterOptions, LocalCluster, SimConfig, Simulation};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::ResourceExt as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 50;
const TRIALS: u32 = 20;
const SEED: u64 = 0x5eed_0fc0_ffee;
const CLUSTER: &str = "crash";
/// What one rollout of the 50 pods may take, a restarted daemon's included: the bound on reaching any
/// moment of it and on its settling.
const ROLLOUT: Duration = Duration::from_secs(2 * CONVERGE.as_secs());

/// splitmix64: small, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("HOTSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(SEED)
}

/// Where in a rollout a fault lands.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after the commit: before, while or just after the daemon notices it and holds OKG.
    AfterCommit(Duration),
    /// Once this many pods carry the new image in their spec (the 50th: the rollout's end, its release
    /// and its status write), plus a jitter.
    AfterPatched(usize, Duration),
}

impl Moment {
    fn draw(rng: &mut Rng, at_least: usize) -> Moment {
        let jitter = Duration::from_millis(rng.below(40));
        if at_least == 0 && rng.below(5) == 0 {
            Moment::AfterCommit(Duration::from_millis(rng.below(900)))
        } else {
            let n = at_least + 1 + rng.below((PODS - at_least) as u64) as usize;
            Moment::AfterPatched(n.min(PODS), jitter)
        }
    }

    fn patched(self) -> usize {
        match self {
            Moment::AfterCommit(_) => 0,
            Moment::AfterPatched(n, _) => n,
        }
    }
}

/// A Git repository of one 50-pod set, the `hotsync run` process that tracks it, and the checks.
struct Fleet {
    env: TestEnv,
    repo: TempRepo,
    scratch: tempfile::TempDir,
    daemon: Option<Reaped>,
    uids: Vec<String>,
}

impl Fleet {
    fn manifest(&self, tag: &str) -> String {
        // Waves of five pods: ten steps in a rollout for a fault to land between.
        harness::seed_manifest(
            &self.env.namespace,
            PODS as i32,
            tag,
            "      maxUnavailable: 10%\n",
        )
    }

    fn log(&self) -> PathBuf {
        self.scratch.path().join("hotsync.log")
    }

    /// Starts `hotsync run` (the release of the previous one is the caller's business).
    fn start_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap_or_else(|e| panic!("{}: {e}", self.log().display()));
        let child = Command::new(env!("CARGO_BIN_EXE_hotsync"))
            // The simulated cluster has no registry to ask.
            .env("HOTSYNC_NO_IMAGE_CHECK", "true")
            .args(["run", "--repo"])
            .arg(self.repo.path())
            .arg("--kubeconfig")
            .arg(&self.env.kubeconfig)
            .args(["--branch", "main", "--interval", "200ms"])
            .args(["--no-leader-election", "--pod-timeout", "60s"])
            .args(["--listen", "127.0.0.1:0"])
            .args([
                "--status-branch",
                "hotsync-status",
                "--cluster-name",
                CLUSTER,
            ])
            .arg("--cache-dir")
            .arg(self.scratch.path().join("cache"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("hotsync run: {e}"));
        self.daemon = Some(Reaped(child));
    }

    /// SIGKILL: no signal handler runs, nothing is flushed, the hold stays wherever it was.
    fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.0.kill()
                .unwrap_or_else(|e| panic!("kill hotsync run: {e}"));
            let _ = d.0.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// What the set and its Advanced StatefulSet show, for a failure message.
    async fn describe(&self) -> String {
        let gss = self
            .env
            .api::<GameServerSet>()
            .get("minecraft")
            .await
            .map(|g| {
                format!(
                    "generation {:?}, observed {:?}, hold {:?}, paused {:?}",
                    g.metadata.generation,
                    g.status.as_ref().and_then(|s| s.observed_generation),
                    g.annotations().get(hotsync::rollout::ANNOTATION_HOLD),
                    g.rolling_update().paused
                )
            })
            .unwrap_or_else(|e| e.to_string());
        let asts = self
            .env
            .api::<hotsync::model::AdvancedStatefulSet>()
            .get("minecraft")
            .await
            .map(|a| {
                format!(
                    "generation {:?}, status {:?}, images {:?}",
                    a.metadata.generation,
                    a.status.as_ref().map(|s| (
                        s.observed_generation,
                        s.update_revision.clone(),
                        s.updated_replicas
                    )),
                    a.spec.template.spec.as_ref().map(|s| s
                        .containers
                        .iter()
                        .map(|c| c.image.clone().unwrap_or_default())
                        .collect::<Vec<_>>())
                )
            })
            .unwrap_or_else(|e| e.to_string());
        format!("set: {gss}\nadvanced statefulset: {asts}")
    }

    fn commit(&mut self, tag: &str) -> String {
        let text = self.manifest(tag);
        self.repo.write("minecraft.yaml", &text);
        self.repo
            .commit_all(&format!("Bump the sidecar to {tag}"))
            .to_string()
    }

    /// Waits for the moment, then returns. The n-th patched pod may be the 50th, the rollout's end, so the
    /// wait for it is `ROLLOUT`, as `settled`'s is.
    async fn reach(&self, tag: &str, moment: Moment) {
        match moment {
            Moment::AfterCommit(d) => tokio::time::sleep(d).await,
            Moment::AfterPatched(n, jitter) => {
                let image = sidecar(tag);
                self.env
                    .eventually(&format!("{n} pods patched to {tag}"), ROLLOUT, || async {
                        let pods = self.env.pods("minecraft").await;
                        let patched = pods
                            .iter()
                            .filter(|p| {
                                hotsync::live::spec_image(p, "sidecar") == Some(image.as_str())
                            })
                            .count();
                        if patched >= n {
                            Ok(())
                        } else {
                            Err(format!(
                                "{patched} patched; {}\nthe daemon's log ends with:\n{}",
                                self.describe().await,
                                self.log_tail()
                            ))
                        }
                    })
                    .await;
                tokio::time::sleep(jitter).await;
            }
        }
    }

    /// Waits until the rollout of `tag` (commit `sha`) has settled: every pod on it and ready, the hold
    /// released, and the status in Git at `sha` and Synced. Returns the pods.
    async fn settled(&self, tag: &str, sha: &str) -> Vec<Pod> {
        let image = sidecar(tag);
        let gss_api: Api<GameServerSet> = self.env.api();
        self.env
            .eventually(
                &format!("the rollout of {tag} to settle, Synced in Git"),
                ROLLOUT,
                || async {
                    let pods = self.env.pods("minecraft").await;
                    let on_tag = pods
                        .iter()
                        .filter(|p| {
                            hotsync::live::is_ready(p)
                                && hotsync::live::container_status(p, "sidecar")
                                    .is_some_and(|s| s.image == image && s.ready)
                        })
                        .count();
                    let held = gss_api
                        .get("minecraft")
                        .await
                        .map(|g| g.annotations().contains_key(hotsync::rollout::ANNOTATION_HOLD))
                        .unwrap_or(true);
                    let status = status_file(self.repo.path(), &self.env.namespace);
                    let synced = status.as_deref().is_some_and(|s| {
                        s.contains(&format!("commit: {sha}")) && s.contains("\nphase: Synced\n")
                    });
                    if pods.len() == PODS && on_tag == PODS && !held && synced {
                        Ok(pods)
                    } else {
                        Err(format!(
                            "{} pods, {on_tag} ready on {tag}, held {held}; {}\nstatus:\n{}\nthe daemon's log ends with:\n{}",
                            pods.len(),
                            self.describe().await,
                            status.unwrap_or_else(|| "(none)".into()),
                            self.log_tail()
                        ))
                    }
                },
            )
            .await
    }
}

fn sidecar(tag: &str) -> String {
    format!("registry.example.com/sidecar:{tag}")
}

/// The set's status file on the status branch, if written.
fn status_file(repo: &Path, namespace: &str) -> Option<String> {
    let repo = git2::Repository::open(repo).ok()?;
    let tree = repo
        .find_reference("refs/heads/hotsync-status")
        .ok()?
        .peel_to_tree()
        .ok()?;
    let entry = tree
        .get_path(Path::new(&format!(
            "status/{CLUSTER}/{namespace}/minecraft.yaml"
        )))
        .ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

fn restarts(p: &Pod, container: &str) -> i32 {
    hotsync::live::container_status(p, container)
        .map(|s| s.restart_count)
        .unwrap_or(-1)
}

/// A fleet at `v0`: the set created by the daemon from Git, its 50 pods ready, Synced in Git.
async fn fleet(env: TestEnv) -> Fleet {
    let mut fleet = Fleet {
        env,
        repo: TempRepo::new(),
        scratch: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        daemon: None,
        uids: Vec::new(),
    };
    let sha = fleet.commit("v0");
    git(fleet.repo.path(), &["branch", "-M", "main"]);
    fleet.start_daemon();
    let pods = fleet.settled("v0", &sha).await;
    fleet.uids = pods.iter().map(|p| p.uid().unwrap_or_default()).collect();
    fleet
}

/// After `trials` rollouts: the same pods, each sidecar restarted once per rollout, the engine never.
fn assert_one_restart_per_rollout(fleet: &Fleet, pods: &[Pod], trials: i32, what: &str) {
    let uids: Vec<String> = pods.iter().map(|p| p.uid().unwrap_or_default()).collect();
    assert_eq!(uids, fleet.uids, "{what}: a pod was recreated");
    let sidecars: BTreeMap<String, i32> = pods
        .iter()
        .map(|p| (p.name_any(), restarts(p, "sidecar")))
        .filter(|(_, n)| *n != trials)
        .collect();
    assert!(
        sidecars.is_empty(),
        "{what}: sidecars whose restart count is not {trials} (one per rollout): {sidecars:?}"
    );
    let engines: BTreeMap<String, i32> = pods
        .iter()
        .map(|p| (p.name_any(), restarts(p, "minecraft")))
        .filter(|(_, n)| *n != 0)
        .collect();
    assert!(
        engines.is_empty(),
        "{what}: engine containers restarted: {engines:?}"
    );
}

#[tokio::test]
async fn a_daemon_killed_at_random_moments_of_twenty_rollouts_restarts_every_pod_exactly_once_per_rollout(
) {
    let seed = seed();
    let mut rng = Rng(seed);
    let mut fleet = fleet(harness::env("crash sigkill").await).await;
    for trial in 1..=TRIALS {
        let tag = format!("v{trial}");
        let first = Moment::draw(&mut rng, 0);
        let second = (rng.below(3) == 0 && first.patched() < PODS)
            .then(|| Moment::draw(&mut rng, first.patched()));
        let what =
            format!("seed {seed:#x}, trial {trial}: SIGKILL at {first:?}, then at {second:?}");
        eprintln!("{what}");
        let started = Instant::now();
        let sha = fleet.commit(&tag);
        for moment in [Some(first), second].into_iter().flatten() {
            fleet.reach(&tag, moment).await;
            fleet.kill_daemon();
            fleet.start_daemon();
        }
        let pods = fleet.settled(&tag, &sha).await;
        assert_one_restart_per_rollout(&fleet, &pods, trial as i32, &what);
        eprintln!("  settled in {:?}", started.elapsed());
    }
    fleet.kill_daemon();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_the_api_server_being_killed_and_restarted_under_it() {
    // A cluster of its own: restarting the shared one would pull it from under the other tests.
    let mut cluster = LocalCluster::start(ClusterOptions {
        crds: Some(hotsync_sim::cluster::Crds::Upstream(
            harness::upstream_crds_dir(),
        )),
        ..ClusterOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("this test needs a local API server and cannot have one: {e}"));
    let client = cluster
        .client()
        .await
        .unwrap_or_else(|e| panic!("a client of the local API server: {e}"));
    let mut sim = Simulation::start(client.clone(), SimConfig::fast())
        .await
        .unwrap_or_else(|e| panic!("the simulation did not start: {e}"));
    let namespace = "apiserver-restart".to_string();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create the namespace: {e}"));
    let env = TestEnv {
        client,
        namespace,
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        node: None,
        images: Default::default(),
        failure: None,
    };
    let started = Instant::now();
    let mut fleet = fleet(env).await;
    eprintln!("50 pods created and Synced in {:?}", started.elapsed());
    let mut rng = Rng(seed() ^ 0xa515);
    // Three rollouts: the server killed in the first moments (while the daemon holds OKG), in the
    // middle, and twice in one rollout.
    let plans: [Vec<Moment>; 3] = [
        vec![Moment::AfterCommit(Duration::from_millis(250))],
        vec![Moment::AfterPatched(
            10 + rng.below(30) as usize,
            Duration::from_millis(rng.below(40)),
        )],
        vec![
            Moment::AfterPatched(5, Duration::ZERO),
            Moment::AfterPatched(35, Duration::ZERO),
        ],
    ];
    for (i, plan) in plans.iter().enumerate() {
        let trial = i as i32 + 1;
        let tag = format!("v{trial}");
        let what = format!("rollout {trial}: the API server killed at {plan:?}");
        eprintln!("{what}");
        let started = Instant::now();
        let sha = fleet.commit(&tag);
        for moment in plan {
            fleet.reach(&tag, *moment).await;
            let t = Instant::now();
            cluster
                .restart_apiserver(Duration::from_millis(1500))
                .await
                .unwrap_or_else(|e| panic!("restart the API server: {e}"));
            eprintln!("  the API server was back in {:?}", t.elapsed());
        }
        let pods = fleet.settled(&tag, &sha).await;
        assert_one_restart_per_rollout(&fleet, &pods, trial, &what);
        eprintln!("  settled in {:?}", started.elapsed());
    }
    // The simulation lived through it all: its tasks are still running.
    tokio::select! {
        e = sim.wait_any_failure() => panic!("the simulation stopped: {e}"),
        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
    fleet.kill_daemon();
    drop(fleet);
    let _ = sim.shutdown().await;
    cluster
        .stop()
        .unwrap_or_else(|e| panic!("stop the local cluster: {e}"));
}
