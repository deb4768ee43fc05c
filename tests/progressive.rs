//! Progressive hot updates on the faithful simulation: a 10-pod set through `hotsync.dev/steps:
//! "1,50%,100%"`, paused at each step with the set held, promoted by `hotsync promote` (recorded on the
//! live set) or by its `hotsync.dev/step-pause`, every pod restarted in place; invalid steps are
//! located errors.

use crate::gitrepo::TempRepo;
use crate::harness::{self, TestEnv};
use hotsync::rollout::{Outcome, StepReport};
use kube::ResourceExt as _;
use std::process::Command;

/// The seed's set with 10 pods, two at a time, and these annotations.
fn manifest(ns: &str, tag: &str, annotations: &str) -> String {
    harness::seed_manifest(ns, 10, tag, "      maxUnavailable: 2\n").replacen(
        "  name: minecraft\n",
        &format!("  name: minecraft\n  annotations:\n{annotations}"),
        1,
    )
}

/// A repository holding the 10-pod set at v0.1 with these annotations, synced: every pod running.
async fn started(env: &TestEnv, annotations: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, "v0.1", annotations),
    );
    repo.commit_all("minecraft at v0.1");
    assert_eq!(sync(env, &repo).await.exit_code(), 0);
    repo
}

/// Commits the set's sidecar at `tag`, with these annotations.
fn commit_tag(env: &TestEnv, repo: &mut TempRepo, tag: &str, annotations: &str) {
    repo.write(
        "sets/minecraft.yaml",
        &manifest(&env.namespace, tag, annotations),
    );
    repo.commit_all(&format!("sidecar {tag}"));
}

async fn sync(env: &TestEnv, repo: &TempRepo) -> hotsync::sync::SyncReport {
    hotsync::sync::sync(&env.client, &harness::sync_options(repo.path()), None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)))
}

/// The pods by name, with their uid and whether the sidecar runs `tag`.
async fn on(env: &TestEnv, tag: &str) -> (Vec<String>, Vec<(String, String)>) {
    let pods = env.pods("minecraft").await;
    let want = format!("registry.example.com/sidecar:{tag}");
    let updated = pods
        .iter()
        .filter(|p| hotsync::live::spec_image(p, "sidecar") == Some(want.as_str()))
        .map(|p| p.name_any())
        .collect();
    let uids = pods
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    (updated, uids)
}

/// Syncs until the set is at step `want` (1-based): a promotion due by its pause waits while OKG still
/// reports an updated game server NotReady after its pod is ready again, and the next syncs go on.
async fn sync_until_step(
    env: &TestEnv,
    opts: &hotsync::sync::SyncOptions,
    want: usize,
) -> hotsync::sync::SyncReport {
    let deadline = std::time::Instant::now() + harness::CONVERGE;
    loop {
        let report = hotsync::sync::sync(&env.client, opts, None)
            .await
            .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
        let s = &report.sets[0];
        let waiting = s.outcome == Outcome::StepPaused
            && s.message
                .as_deref()
                .unwrap_or_default()
                .contains("the promotion waits");
        if s.step.map(|st| st.step) == Some(want)
            || !waiting
            || std::time::Instant::now() > deadline
        {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn promote(env: &TestEnv, args: &[&str]) -> (i32, String) {
    hotsync_on(env, "promote", args)
}

fn hotsync_on(env: &TestEnv, command: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .arg(command)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()
        .expect("run hotsync promote");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_ten_pod_set_goes_through_1_50_100_percent_paused_at_each_step_until_promoted() {
    let env = harness::env("steps promote").await;
    let steps = "    hotsync.dev/steps: \"1,50%,100%\"\n";
    let mut repo = started(&env, steps).await;
    let (_, before) = on(&env, "v0.1").await;
    assert_eq!(before.len(), 10);

    commit_tag(&env, &mut repo, "v0.2", steps);
    let set = format!("{}/minecraft", env.namespace);

    let report = sync(&env, &repo).await;
    assert_eq!(
        report.exit_code(),
        0,
        "a paused step is no failure: {report:#?}"
    );
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(
        s.step,
        Some(StepReport {
            step: 1,
            of: 3,
            pods: 1
        })
    );
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .contains("hotsync promote"),
        "{s:#?}"
    );
    let (updated, _) = on(&env, "v0.2").await;
    assert_eq!(updated, ["minecraft-9"], "the highest ordinal first");
    // Syncing again does not go further without a promotion.
    let report = sync(&env, &repo).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 1,
            of: 3,
            pods: 1
        })
    );
    assert_eq!(on(&env, "v0.2").await.0.len(), 1);

    let (code, out) = promote(&env, &[&set]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("step 2 of 3"), "{out}");
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 2,
            of: 3,
            pods: 5
        })
    );
    assert_eq!(on(&env, "v0.2").await.0.len(), 5);

    let (code, out) = promote(&env, &[&set]);
    assert_eq!(code, 0, "{out}");
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let (updated, after) = on(&env, "v0.2").await;
    assert_eq!(updated.len(), 10);
    assert_eq!(
        after, before,
        "the same pods throughout: restarted in place, none recreated"
    );
    for p in env.pods("minecraft").await {
        assert_eq!(
            hotsync::live::container_status(&p, "sidecar").map(|s| s.restart_count),
            Some(1),
            "{}",
            p.name_any()
        );
    }
    // Nothing left to promote.
    let (code, out) = promote(&env, &[&set]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no rollout under way"), "{out}");
}

#[tokio::test]
async fn a_step_with_a_pause_promotes_itself_and_promote_all_goes_to_the_last_step() {
    let env = harness::env("steps pause").await;
    let steps = "    hotsync.dev/steps: \"1,20%,50%\"\n    hotsync.dev/step-pause: 0s\n";
    let mut repo = started(&env, steps).await;
    commit_tag(&env, &mut repo, "v0.2", steps);

    let report = sync(&env, &repo).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 1,
            of: 4,
            pods: 1
        })
    );
    // The pause is over at the next sync and the gate holds: step 2 by itself.
    let report = sync_until_step(&env, &harness::sync_options(repo.path()), 2).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 2,
            of: 4,
            pods: 2
        })
    );
    assert_eq!(on(&env, "v0.2").await.0.len(), 2);

    let (code, out) = promote(&env, &["--all", &format!("{}/minecraft", env.namespace)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("step 4 of 4"), "{out}");
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    assert_eq!(on(&env, "v0.2").await.0.len(), 10);
}

#[tokio::test]
async fn an_aborted_rollout_rolls_its_pods_back_in_place_and_stays_aborted_until_a_new_template() {
    let env = harness::env("steps abort").await;
    let steps = "    hotsync.dev/steps: \"50%\"\n";
    let mut repo = started(&env, steps).await;
    let (_, before) = on(&env, "v0.1").await;
    commit_tag(&env, &mut repo, "v0.2", steps);
    let report = sync(&env, &repo).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 1,
            of: 2,
            pods: 5
        })
    );
    let set = format!("{}/minecraft", env.namespace);

    let (code, out) = hotsync_on(&env, "abort", &[&set]);
    assert_eq!(code, 0, "{out}");
    let report = sync(&env, &repo).await;
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::Aborted, "{report:#?}");
    assert_eq!(
        report.exit_code(),
        3,
        "the cluster differs from Git on purpose"
    );
    assert_eq!(
        s.pods
            .iter()
            .filter(|p| p.result == hotsync::rollout::PodOutcome::RolledBack)
            .count(),
        5,
        "{report:#?}"
    );
    let (on_old, after) = on(&env, "v0.1").await;
    assert_eq!(on_old.len(), 10, "every pod back on v0.1");
    assert_eq!(after, before, "rolled back in place: the same pods");
    // It stays aborted: more syncs update nothing, promote refuses it, and a daemon with --self-heal
    // (which puts drifted pods back on Git's images) judges it aborted at its first sync and at the next
    // commit (one that leaves the set alone), and leaves its pods as they are.
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::Aborted, "{report:#?}");
    assert_eq!(on(&env, "v0.1").await.0.len(), 10);
    let (code, out) = promote(&env, &[&set]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("aborted"), "{out}");
    let scratch = tempfile::tempdir().expect("scratch");
    let log = scratch.path().join("daemon.log");
    let daemon = harness::spawn_daemon(&env, repo.path(), &log, &["--self-heal".to_string()]);
    let judged = |n: usize| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let judged = text
            .lines()
            .filter(|l| l.contains("set synced") && l.contains("aborted"))
            .count();
        if judged >= n {
            Ok(())
        } else {
            Err(format!(
                "{judged} judgement(s): {}",
                text.lines().last().unwrap_or_default()
            ))
        }
    };
    env.eventually(
        "the daemon's first judgement",
        harness::CONVERGE,
        || async { judged(1) },
    )
    .await;
    repo.write("README.md", "game servers\n");
    repo.commit_all("a commit that leaves the set alone");
    env.eventually(
        "the daemon's judgement of the next commit",
        harness::CONVERGE,
        || async { judged(2) },
    )
    .await;
    drop(daemon);
    assert_eq!(
        on(&env, "v0.1").await.0.len(),
        10,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // A new template in Git starts a new rollout.
    commit_tag(&env, &mut repo, "v0.3", steps);
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(on(&env, "v0.3").await.0.len(), 5);
}

/// A sidecar that runs, is ready, and exits with an error five seconds later (the simulation's `flaky`
/// image): the first step completes, the kubelet restarts the container during the step's ten-minute
/// pause, and the next sync fails the gate at once (no need to wait for the pause to end), naming the
/// gate, the pod and the container, and rolls the step's pod back in place; the rollout stays stopped
/// (promote refuses it) until Git holds another template.
#[tokio::test]
async fn a_crash_during_a_step_pause_fails_its_gate_and_rolls_the_step_back_in_place() {
    let env = harness::env("steps gate crash").await;
    let steps = "    hotsync.dev/steps: \"1,50%,100%\"\n    hotsync.dev/step-pause: 10m\n";
    let (mut repo, canary, before) = canary_paused(&env, steps, "flaky").await;
    // The kubelet restarts the canary's sidecar once more, during the pause.
    env.eventually(
        "the canary's sidecar restarted again",
        harness::CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let restarts = pods
                .iter()
                .find(|p| p.name_any() == canary)
                .and_then(|p| p.status.as_ref()?.container_statuses.clone())
                .and_then(|cs| cs.into_iter().find(|c| c.name == "sidecar"))
                .map(|c| c.restart_count)
                .unwrap_or(0);
            if restarts >= 2 {
                Ok(())
            } else {
                Err(format!("{restarts} restart(s)"))
            }
        },
    )
    .await;

    let message = gate_fails_and_rolls_back(&env, &repo, &canary, &before).await;
    assert!(
        message.contains(&format!("gate restarts: pod {canary} container sidecar")),
        "which gate, which pod, which container: {message}"
    );

    // Stopped until a new template: another sync updates nothing, and promote refuses.
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::Failed, "{report:#?}");
    assert_eq!(
        report.sets[0].message.as_deref(),
        Some(message.as_str()),
        "the first failure is what it keeps saying"
    );
    assert!(on(&env, "flaky").await.0.is_empty());
    let (code, out) = promote(&env, &[&format!("{}/minecraft", env.namespace)]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("did not pass its gate"), "{out}");

    commit_tag(&env, &mut repo, "v0.2", steps);
    let report = sync(&env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(on(&env, "v0.2").await.0.len(), 1);
}

/// A game server deferred for its players (`--skip-allocated`) does not stop a canary: each step fills
/// with the next game servers, pauses (its pause promotes it by itself) and says who waits; at the last
/// step the set is Deferred with every other pod updated.
#[tokio::test]
async fn a_deferred_game_server_elsewhere_in_the_set_does_not_keep_a_step_from_pausing_and_promoting(
) {
    let env = harness::env("steps deferred").await;
    let steps = "    hotsync.dev/steps: \"1,50%\"\n    hotsync.dev/step-pause: 0s\n";
    let mut repo = started(&env, steps).await;
    crate::players::set_ops_state(&env, "minecraft-0", "Allocated").await;
    commit_tag(&env, &mut repo, "v0.2", steps);
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.skip_allocated = true;

    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(s.step.map(|st| st.step), Some(1));
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .contains("1 game server wait for their players (minecraft-0)"),
        "{s:#?}"
    );
    assert_eq!(on(&env, "v0.2").await.0, ["minecraft-9"]);

    let report = sync_until_step(&env, &opts, 2).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    assert_eq!(report.sets[0].step.map(|st| st.step), Some(2));
    assert_eq!(on(&env, "v0.2").await.0.len(), 5);

    let report = sync_until_step(&env, &opts, 3).await;
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::Deferred, "{report:#?}");
    let (updated, _) = on(&env, "v0.2").await;
    assert_eq!(updated.len(), 9, "every pod but the Allocated one");
    assert!(!updated.contains(&"minecraft-0".to_string()));
}

/// Syncs a set paused at a step until its gate has passed once with OKG's reading of the pods as they
/// are now (`hotsync.dev/step-healthy` on the live set): from then on a game server going NotReady is
/// no lag of OKG's. Each sync must keep the set paused.
pub(crate) async fn sync_until_seen_healthy(
    env: &TestEnv,
    opts: &hotsync::sync::SyncOptions,
    within: std::time::Duration,
) {
    env.eventually("the step seen healthy by its gate", within, || async {
        let report = hotsync::sync::sync(&env.client, opts, None)
            .await
            .map_err(|e| hotsync::sync::error_chain(&e))?;
        let s = &report.sets[0];
        if s.outcome != Outcome::StepPaused {
            panic!("the set left its pause before its step was seen healthy: {report:#?}");
        }
        let gss = env
            .api::<hotsync::model::GameServerSet>()
            .get("minecraft")
            .await
            .map_err(|e| e.to_string())?;
        if gss
            .annotations()
            .contains_key(hotsync::rollout::steps::ANNOTATION_STEP_HEALTHY)
        {
            Ok(())
        } else {
            Err(format!("{:?}", s.message))
        }
    })
    .await;
}

/// A canary whose game server goes NotReady during the step's pause (the `unready` sidecar: ready, then
/// its readiness fails thirty seconds after it started, not restarted): once the gate has seen the step
/// healthy, the next sync fails the gate at once, naming the pod, and rolls it back in place. Before
/// that, a NotReady right after the update is OKG's lag and only makes a promotion wait.
#[tokio::test]
async fn a_game_server_that_goes_not_ready_during_a_step_pause_fails_its_gate_and_is_rolled_back() {
    let env = harness::env("steps gate not ready").await;
    let steps = "    hotsync.dev/steps: \"1,50%,100%\"\n    hotsync.dev/step-pause: 10m\n";
    let (repo, canary, before) = canary_paused(&env, steps, "unready").await;
    let opts = harness::sync_options(repo.path());
    sync_until_seen_healthy(&env, &opts, std::time::Duration::from_secs(25)).await;
    // Thirty seconds after its sidecar started: well within a minute from now.
    env.eventually(
        "the canary not ready",
        std::time::Duration::from_secs(60),
        || async {
            let pods = env.pods("minecraft").await;
            match pods.iter().find(|p| p.name_any() == canary) {
                Some(p) if !hotsync::live::is_ready(p) => Ok(()),
                _ => Err("still ready".to_string()),
            }
        },
    )
    .await;

    let message = gate_fails_and_rolls_back(&env, &repo, &canary, &before).await;
    assert!(
        message.contains(&canary) && message.contains("during the pause"),
        "which gate, which pod: {message}"
    );
}

/// The 10-pod set at v0.1 under `steps`, then its sidecar at `tag`, synced: paused at step 1 with one
/// pod on `tag`. Returns the repository, that canary, and every pod's (name, uid) before the bump.
async fn canary_paused(
    env: &TestEnv,
    steps: &str,
    tag: &str,
) -> (TempRepo, String, Vec<(String, String)>) {
    let mut repo = started(env, steps).await;
    let (_, before) = on(env, "v0.1").await;
    commit_tag(env, &mut repo, tag, steps);
    let report = sync(env, &repo).await;
    assert_eq!(report.sets[0].outcome, Outcome::StepPaused, "{report:#?}");
    let (canary, _) = on(env, tag).await;
    assert_eq!(canary.len(), 1, "one pod at step 1");
    (repo, canary[0].clone(), before)
}

/// Syncs a set whose first step's gate fails: Failed (exit 1) at step 1 of 3, `canary` alone rolled
/// back, every pod on v0.1 again and the same pods as `before`. Returns the message (which gate, which
/// pod, which container).
async fn gate_fails_and_rolls_back(
    env: &TestEnv,
    repo: &TempRepo,
    canary: &str,
    before: &[(String, String)],
) -> String {
    let report = sync(env, repo).await;
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::Failed, "{report:#?}");
    assert_eq!(report.exit_code(), 1);
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains("step 1 of 3 did not pass its gate"),
        "{message}"
    );
    assert_eq!(
        s.step,
        Some(StepReport {
            step: 1,
            of: 3,
            pods: 1
        })
    );
    let rolled: Vec<&str> = s
        .pods
        .iter()
        .filter(|p| p.result == hotsync::rollout::PodOutcome::RolledBack)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(rolled, vec![canary], "{report:#?}");
    let (on_old, after) = on(env, "v0.1").await;
    assert_eq!(on_old.len(), 10, "the canary is back on v0.1");
    assert_eq!(after, before, "rolled back in place: the same pods");
    message
}

/// `hotsync validate` of the set with these steps: its exit code and what it printed on stderr.
fn validate_steps(repo: &mut TempRepo, steps: &str) -> (Option<i32>, String) {
    repo.write(
        "sets/minecraft.yaml",
        &manifest(
            "games",
            "v0.1",
            &format!("    hotsync.dev/steps: \"{steps}\"\n"),
        ),
    );
    repo.commit_all(&format!("steps {steps}"));
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(["validate"])
        .current_dir(repo.path())
        .output()
        .expect("run hotsync validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn invalid_steps_are_an_error_located_at_the_annotation() {
    let mut repo = TempRepo::new();
    let (code, err) = validate_steps(&mut repo, "50%,25%");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sets/minecraft.yaml:6 (document 1): error")
            && err.contains("hotsync.dev/steps")
            && err.contains("not larger than the step before it"),
        "{err}"
    );
    // Counts and percentages mixed are judged at the set's replicas: 10% of 10 pods is 1, not more than 5.
    let (code, err) = validate_steps(&mut repo, "5,10%");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sets/minecraft.yaml:6 (document 1): error")
            && err.contains("step 2 (10%) is 1 of 10 pods, not more than step 1 (5) with 5"),
        "{err}"
    );
    let (code, err) = validate_steps(&mut repo, "2,50%");
    assert_eq!(code, Some(0), "grows at 10 replicas: {err}");
}

/// A clock that is inside `Sat 18:00-23:59 UTC` while `inside` is set, and outside it otherwise.
fn freeze_clock(inside: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> hotsync::rollout::Clock {
    let inside = inside.clone();
    hotsync::rollout::Clock::new(move || {
        let t = if inside.load(std::sync::atomic::Ordering::SeqCst) {
            "2026-12-05T19:00:00Z"
        } else {
            "2026-12-05T12:00:00Z"
        };
        t.parse().expect("timestamp")
    })
}

fn frozen_options(
    repo: &TempRepo,
    inside: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> hotsync::sync::SyncOptions {
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.freeze =
        vec![hotsync::rollout::freeze::parse("Sat 18:00-23:59 UTC").expect("window")];
    opts.rollout.clock = freeze_clock(inside);
    opts
}

#[tokio::test]
async fn a_freeze_window_entered_mid_rollout_lets_the_pods_under_way_finish_and_starts_no_more() {
    let env = harness::env("freeze mid").await;
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut repo = TempRepo::new();
    repo.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.1", ""));
    repo.commit_all("minecraft at v0.1");
    let opts = frozen_options(&repo, &inside);
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let (_, before) = on(&env, "v0.1").await;

    repo.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.2", ""));
    repo.commit_all("sidecar v0.2");
    // The window begins (the injected clock moves into it) once the second pod is done.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let flip = inside.clone();
    let watcher = tokio::spawn(async move {
        let mut done = 0;
        while let Some(p) = rx.recv().await {
            if matches!(p, hotsync::rollout::Progress::PodDone { .. }) {
                done += 1;
                if done == 2 {
                    flip.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    });
    let report = hotsync::sync::sync(&env.client, &opts, Some(&tx))
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    drop(tx);
    watcher.await.expect("progress watcher");
    let s = &report.sets[0];
    assert_eq!(s.outcome, Outcome::Frozen, "{report:#?}");
    assert_eq!(report.exit_code(), 5);
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .contains("Sat 18:00-23:59 UTC"),
        "{s:#?}"
    );
    let updated = on(&env, "v0.2").await.0.len();
    assert!(
        (2..10).contains(&updated),
        "the pods under way finished, no more started: {updated}"
    );
    // Still inside: the next sync starts nothing.
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.sets[0].outcome, Outcome::Frozen);
    assert_eq!(on(&env, "v0.2").await.0.len(), updated);

    // After the window, the rollout goes on to every pod, in place.
    inside.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let (updated, after) = on(&env, "v0.2").await;
    assert_eq!(updated.len(), 10);
    assert_eq!(after, before, "the same pods");
}

#[tokio::test]
async fn inside_a_freeze_window_nothing_is_applied_unless_the_freeze_is_ignored() {
    let env = harness::env("freeze start").await;
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut repo = TempRepo::new();
    repo.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.1", ""));
    repo.commit_all("minecraft at v0.1");
    let mut opts = frozen_options(&repo, &inside);
    assert_eq!(
        hotsync::sync::sync(&env.client, &opts, None)
            .await
            .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)))
            .exit_code(),
        0
    );
    inside.store(true, std::sync::atomic::Ordering::SeqCst);
    repo.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.2", ""));
    repo.commit_all("sidecar v0.2");
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.sets[0].outcome, Outcome::Frozen, "{report:#?}");
    assert_eq!(report.exit_code(), 5);
    let gss = env
        .api::<hotsync::model::GameServerSet>()
        .get("minecraft")
        .await
        .expect("the set");
    assert!(
        gss.container_images()
            .iter()
            .any(|(c, i)| c == "sidecar" && i.ends_with(":v0.1")),
        "nothing applied: {:?}",
        gss.container_images()
    );
    opts.rollout.ignore_freeze = true;
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    assert_eq!(on(&env, "v0.2").await.0.len(), 10);
}

#[test]
fn an_invalid_freeze_annotation_is_an_error_located_at_it() {
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &manifest(
            "games",
            "v0.1",
            "    hotsync.dev/freeze: \"Caturday 18:00-23:59 UTC\"\n",
        ),
    );
    repo.commit_all("a freeze window on a day that is not one");
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(["validate"])
        .current_dir(repo.path())
        .output()
        .expect("run hotsync validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sets/minecraft.yaml:6 (document 1): error") && err.contains("Caturday"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ten_minute_step_pause_promotes_only_once_the_injected_clock_is_past_it() {
    let env = harness::env("steps clock").await;
    let minutes = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let m = minutes.clone();
    let clock = hotsync::rollout::Clock::new(move || {
        let base: k8s_openapi::jiff::Timestamp = "2026-12-03T08:00:00Z".parse().expect("timestamp");
        base + k8s_openapi::jiff::SignedDuration::from_mins(
            m.load(std::sync::atomic::Ordering::SeqCst),
        )
    });
    let steps = "    hotsync.dev/steps: \"1,50%\"\n    hotsync.dev/step-pause: 10m\n";
    let mut repo = TempRepo::new();
    commit_tag(&env, &mut repo, "v0.1", steps);
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.clock = clock;
    let sync_now = |opts: hotsync::sync::SyncOptions| {
        let client = env.client.clone();
        async move {
            hotsync::sync::sync(&client, &opts, None)
                .await
                .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)))
        }
    };
    assert_eq!(sync_now(opts.clone()).await.exit_code(), 0);
    commit_tag(&env, &mut repo, "v0.2", steps);
    let report = sync_now(opts.clone()).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 1,
            of: 3,
            pods: 1
        })
    );
    minutes.store(9, std::sync::atomic::Ordering::SeqCst);
    let report = sync_now(opts.clone()).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 1,
            of: 3,
            pods: 1
        }),
        "nine minutes in: still step 1"
    );
    assert_eq!(on(&env, "v0.2").await.0.len(), 1);
    minutes.store(11, std::sync::atomic::Ordering::SeqCst);
    let report = sync_until_step(&env, &opts, 2).await;
    assert_eq!(
        report.sets[0].step,
        Some(StepReport {
            step: 2,
            of: 3,
            pods: 5
        }),
        "{report:#?}"
    );
    assert_eq!(on(&env, "v0.2").await.0.len(), 5);
}

/// The daemon's log, for what it decided.
fn log_of(scratch: &std::path::Path) -> String {
    std::fs::read_to_string(scratch.join("hotsync.log")).unwrap_or_default()
}

#[tokio::test]
async fn a_daemon_killed_while_paused_at_a_step_resumes_paused_and_goes_on_when_promoted() {
    let env = harness::env("steps daemon").await;
    let scratch = tempfile::tempdir().expect("scratch");
    let steps = "    hotsync.dev/steps: \"1,50%\"\n";
    let mut repo = TempRepo::new();
    commit_tag(&env, &mut repo, "v0.1", steps);
    let daemon = crate::wait::daemon(&env, repo.path(), scratch.path());
    env.eventually("ten pods on v0.1", harness::CONVERGE, || async {
        let n = on(&env, "v0.1").await.0.len();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await;
    let (_, before) = on(&env, "v0.1").await;
    commit_tag(&env, &mut repo, "v0.2", steps);
    let scratch_path = scratch.path().to_path_buf();
    env.eventually("paused at step 1", harness::CONVERGE, || async {
        let n = on(&env, "v0.2").await.0.len();
        let log = log_of(&scratch_path);
        if n == 1 && log.contains("steppaused") {
            Ok(())
        } else {
            Err(format!("{n} pods on v0.2"))
        }
    })
    .await;
    drop(daemon);

    // A new daemon judges the set again from what the cluster records, and keeps it at step 1.
    let daemon = crate::wait::daemon(&env, repo.path(), scratch.path());
    env.eventually("the new daemon's judgement", harness::CONVERGE, || async {
        let log = log_of(&scratch_path);
        if log.contains("steppaused") {
            Ok(())
        } else {
            Err(log.lines().last().unwrap_or_default().to_string())
        }
    })
    .await;
    assert_eq!(
        on(&env, "v0.2").await.0.len(),
        1,
        "{}",
        log_of(scratch.path())
    );

    let (code, out) = promote(&env, &[&format!("{}/minecraft", env.namespace)]);
    assert_eq!(code, 0, "{out}");
    env.eventually(
        "five pods on v0.2 after the promotion",
        harness::CONVERGE,
        || async {
            let n = on(&env, "v0.2").await.0.len();
            if n == 5 {
                Ok(())
            } else {
                Err(format!("{n} pods"))
            }
        },
    )
    .await;
    let (code, out) = promote(&env, &[&format!("{}/minecraft", env.namespace)]);
    assert_eq!(code, 0, "{out}");
    env.eventually("every pod on v0.2", harness::CONVERGE, || async {
        let n = on(&env, "v0.2").await.0.len();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await;
    assert_eq!(on(&env, "v0.2").await.1, before, "the same pods throughout");
    drop(daemon);
}

/// Against the cluster, the plan of a bump through `1,50%,100%` counts per step the game servers it
/// restarts in place and the Allocated ones among them (players on them), and the markdown report shows
/// the steps; with `--skip-allocated` the first step takes the next game server instead. Nothing is
/// written.
#[tokio::test]
async fn plan_against_the_cluster_counts_per_step_the_game_servers_restarted_and_the_players_on_them(
) {
    let env = harness::env("steps plan cluster").await;
    let steps = "    hotsync.dev/steps: \"1,50%,100%\"\n";
    let mut repo = started(&env, steps).await;
    crate::players::set_ops_state(&env, "minecraft-9", "Allocated").await;
    crate::players::set_ops_state(&env, "minecraft-3", "Allocated").await;
    commit_tag(&env, &mut repo, "v0.2", steps);

    let (code, plan) = crate::players::plan_cluster(&env, &repo, &[]);
    assert_eq!(code, 1, "changes: {plan:#}");
    let set = &plan["sets"][0];
    assert_eq!(set["impact"], "HotUpdate", "{plan:#}");
    assert_eq!(
        set["steps"],
        serde_json::json!({"declared": ["1", "50%", "100%"], "pods": [1, 5, 10]})
    );
    let names = |from: u32, to: u32| -> Vec<String> {
        (to..=from)
            .rev()
            .map(|i| format!("minecraft-{i}"))
            .collect()
    };
    assert_eq!(
        set["pods"]["steps"],
        serde_json::json!([
            {"step": 1, "of": 3, "total": 1, "restart": names(9, 9), "allocated": ["minecraft-9"]},
            {"step": 2, "of": 3, "total": 5, "restart": names(8, 5), "allocated": []},
            {"step": 3, "of": 3, "total": 10, "restart": names(4, 0), "allocated": ["minecraft-3"]},
        ]),
        "{plan:#}"
    );

    let (_, plan) = crate::players::plan_cluster(&env, &repo, &["--skip-allocated"]);
    let pods = &plan["sets"][0]["pods"];
    assert_eq!(
        pods["steps"][0]["restart"],
        serde_json::json!(["minecraft-8"])
    );
    assert_eq!(
        pods["steps"][2]["restart"].as_array().map(Vec::len),
        Some(3)
    );
    for st in pods["steps"].as_array().into_iter().flatten() {
        assert_eq!(st["allocated"], serde_json::json!([]), "{st}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(["plan", "--cluster", "-o", "markdown", "--repo"])
        .arg(repo.path())
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()
        .expect("run hotsync plan");
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("10 restart in place in 3 steps (1, 4, 5), 2 Allocated"),
        "{md}"
    );
    assert!(
        md.contains("canary steps 1, 50%, 100%: 1 → 5 → 10 pod(s) on the new template in total; each step waits for `hotsync promote`"),
        "{md}"
    );
    assert!(
        md.contains("| 1 of 3 | 1 | 1: `minecraft-9` | 1: `minecraft-9` |"),
        "{md}"
    );
    assert!(md.contains("| 3 of 3 | 10 | 5: `minecraft-4`, `minecraft-3`, `minecraft-2`, `minecraft-1`, `minecraft-0` | 1: `minecraft-3` |"), "{md}");
    // A plan writes nothing.
    assert_eq!(on(&env, "v0.1").await.0.len(), 10);
}
