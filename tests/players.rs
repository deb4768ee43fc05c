//! The flags and protocol that keep players connected, on the faithful simulation: deferred game servers
//! stay on their images until they are idle (and OKG never restarts them behind hotsync's back), the
//! in-place hook OKG adds for `AllowNotReadyContainers` runs, Kruise's grace period and minReadySeconds
//! pace the rollout, an admission webhook's denial is reported as what it is, and a daemon killed at each
//! step of the protocol resumes without leaving a pod out of its load balancer.

use crate::gitrepo::TempRepo;
use crate::harness::{self, TestEnv, CONVERGE};
use crate::sim_cluster::Recorder;
use hotsync::model::{GameServer, GameServerSet};
use hotsync::rollout::plan::LABEL_UPDATE_PENDING;
use hotsync::rollout::{Outcome, PodOutcome, ANNOTATION_HOLD};
use hotsync::sync::{SyncOptions, SyncReport};
use hotsync_sim::WebhookMode;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Patch, PatchParams};
use kube::ResourceExt as _;
use serde_json::json;
use std::time::{Duration, Instant};

fn sidecar(tag: &str) -> String {
    format!("registry.example.com/sidecar:{tag}")
}

async fn sync(env: &TestEnv, opts: &SyncOptions) -> SyncReport {
    hotsync::sync::sync(&env.client, opts, None)
        .await
        .unwrap_or_else(|e| panic!("sync failed: {}", hotsync::sync::error_chain(&e)))
}

fn write(env: &TestEnv, repo: &mut TempRepo, replicas: i32, tag: &str, rolling: &str, extra: &str) {
    let mut m = harness::seed_manifest(&env.namespace, replicas, tag, rolling);
    m.push_str(extra);
    repo.write("sets/minecraft.yaml", &m);
    repo.commit_all(&format!("sidecar {tag}"));
}

/// A repository with the set at v0.1, synced.
async fn started(env: &TestEnv, replicas: i32, rolling: &str, extra: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    write(env, &mut repo, replicas, "v0.1", rolling, extra);
    let report = sync(env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 0, "first sync: {report:#?}");
    repo
}

fn restarts(p: &Pod, c: &str) -> i32 {
    hotsync::live::container_status(p, c)
        .map(|s| s.restart_count)
        .unwrap_or(-1)
}

pub(crate) async fn set_ops_state(env: &TestEnv, gs: &str, ops: &str) {
    env.api::<GameServer>()
        .patch(
            gs,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"opsState": ops}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("the opsState on the pod", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.iter().find(|p| p.name_any() == gs) {
            Some(p) if hotsync::live::ops_state(p) == ops => Ok(()),
            _ => Err(format!(
                "{:?}",
                pods.iter()
                    .map(|p| (p.name_any(), hotsync::live::ops_state(p).to_string()))
                    .collect::<Vec<_>>()
            )),
        }
    })
    .await;
}

/// `--skip-allocated`: the Allocated game server keeps its image, is labelled with the revision it waits
/// for, and the set stays held (phase Deferred) so that OKG does not restart it once hotsync lets go;
/// when the game server is idle again, the next sync updates it, once, and releases the hold.
#[tokio::test]
async fn an_allocated_game_server_waits_for_its_players_and_is_updated_once_idle() {
    let env = harness::env("deferred").await;
    let mut repo = started(&env, 3, "", "").await;
    set_ops_state(&env, "minecraft-1", "Allocated").await;
    write(&env, &mut repo, 3, "v0.2", "", "");
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.skip_allocated = true;
    let report = sync(&env, &opts).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Deferred, "{report:#?}");
    assert!(set
        .message
        .as_deref()
        .unwrap_or_default()
        .contains("minecraft-1"));
    let deferred = set
        .pods
        .iter()
        .find(|p| p.name == "minecraft-1")
        .map(|p| p.result);
    assert_eq!(deferred, Some(PodOutcome::Deferred));
    // Let OKG and Kruise see the set for a while: the held set keeps them away from the pod.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = env.pods("minecraft").await;
    let p1 = pods
        .iter()
        .find(|p| p.name_any() == "minecraft-1")
        .cloned()
        .unwrap_or_else(|| panic!("no pod"));
    assert_eq!(
        hotsync::live::spec_image(&p1, "sidecar"),
        Some(sidecar("v0.1").as_str())
    );
    assert_eq!(restarts(&p1, "sidecar"), 0);
    assert!(
        p1.labels()
            .get(LABEL_UPDATE_PENDING)
            .is_some_and(|r| !r.is_empty()),
        "{:?}",
        p1.labels()
    );
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gss.annotations().contains_key(ANNOTATION_HOLD),
        "held while a game server waits"
    );
    for p in pods.iter().filter(|p| p.name_any() != "minecraft-1") {
        assert_eq!(restarts(p, "sidecar"), 1);
    }
    let statuses = hotsync::status::report::statuses(&env.client, "test", &report).await;
    assert_eq!(statuses[0].phase.as_str(), "Deferred");

    set_ops_state(&env, "minecraft-1", "None").await;
    let report = sync(&env, &opts).await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let pods = env.pods("minecraft").await;
    for p in &pods {
        assert_eq!(restarts(p, "sidecar"), 1, "{}", p.name_any());
        assert!(!p.labels().contains_key(LABEL_UPDATE_PENDING));
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!gss.annotations().contains_key(ANNOTATION_HOLD));
}

/// `--defer-deadline`: a game server deferred longer is reported Degraded (exit 1), and still not forced.
#[tokio::test]
async fn a_game_server_deferred_past_the_deadline_is_degraded_and_never_forced() {
    let env = harness::env("deferred-deadline").await;
    let mut repo = started(&env, 2, "", "").await;
    set_ops_state(&env, "minecraft-0", "Maintaining").await;
    write(&env, &mut repo, 2, "v0.2", "", "");
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.defer_deadline = Some(Duration::from_secs(1));
    let report = sync(&env, &opts).await;
    assert_eq!(report.sets[0].outcome, Outcome::Deferred, "{report:#?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = sync(&env, &opts).await;
    assert_eq!(report.sets[0].outcome, Outcome::Degraded, "{report:#?}");
    assert_eq!(report.exit_code(), 1);
    let p0 = env.pods("minecraft").await.remove(0);
    assert_eq!(restarts(&p0, "sidecar"), 0);
    assert_eq!(
        hotsync::live::spec_image(&p0, "sidecar"),
        Some(sidecar("v0.1").as_str())
    );
}

/// With `AllowNotReadyContainers`, OKG's in-place hook: hotsync moves each pod to PreparingUpdate and
/// waits until OKG's network plugin has made the Service publish not-ready addresses and released the
/// blocker; then the sidecar restarts while players keep the Service; afterwards the pod is Normal again
/// (OKG re-arms the blocker) and the Service back.
#[tokio::test]
async fn hotsync_walks_the_hook_okg_adds_so_that_the_service_keeps_serving() {
    let env = harness::env("players-hook").await;
    let network = "  network:\n    networkType: Kubernetes-NodePort\n    networkConf:\n      - name: AllowNotReadyContainers\n        value: sidecar\n";
    let mut repo = started(&env, 2, "", network).await;
    env.eventually("blockers armed", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let armed = pods.iter().all(|p| {
            p.labels()
                .get("game.kruise.io/inplace-update-not-ready-blocker")
                .map(String::as_str)
                == Some("true")
        });
        if armed {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                pods.iter().map(|p| p.labels().clone()).collect::<Vec<_>>()
            ))
        }
    })
    .await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let api: kube::Api<Pod> = env.api();
    let watch = tokio::spawn(async move {
        use futures::StreamExt as _;
        let mut stream = kube::runtime::watcher(api, Default::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            if let kube::runtime::watcher::Event::Apply(p) = ev {
                if let Some(state) = p.labels().get("lifecycle.apps.kruise.io/state") {
                    s2.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{}:{state}", p.name_any()));
                }
            }
        }
    });
    write(&env, &mut repo, 2, "v0.2", "", network);
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    watch.abort();
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pod in ["minecraft-0", "minecraft-1"] {
        assert!(seen.contains(&format!("{pod}:PreparingUpdate")), "{seen:?}");
        assert!(seen.contains(&format!("{pod}:Updating")), "{seen:?}");
    }
    let services: kube::Api<Service> = env.api();
    env.eventually(
        "Normal again, blockers armed, Services back",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let mut ok = pods.len() == 2;
            for p in &pods {
                let svc = services.get_opt(&p.name_any()).await.ok().flatten();
                ok &= p
                    .labels()
                    .get("lifecycle.apps.kruise.io/state")
                    .map(String::as_str)
                    == Some("Normal")
                    && restarts(p, "sidecar") == 1
                    && svc
                        .and_then(|s| s.spec)
                        .and_then(|s| s.publish_not_ready_addresses)
                        != Some(true);
            }
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter().map(|p| p.labels().clone()).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
}

/// Kruise's `inPlaceUpdateStrategy.gracePeriodSeconds`: the pod is marked not ready, and its images
/// change only after the grace period.
#[tokio::test]
async fn the_grace_period_passes_between_not_ready_and_the_restart() {
    let env = harness::env("players-grace").await;
    let mut repo = started(
        &env,
        1,
        "      inPlaceUpdateStrategy:\n        gracePeriodSeconds: 2\n",
        "",
    )
    .await;
    let recorder = Recorder::start(&env, vec!["minecraft-0".into()]).await;
    let api: kube::Api<Pod> = env.api();
    let times = std::sync::Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
    let t2 = times.clone();
    let watch = tokio::spawn(async move {
        use futures::StreamExt as _;
        let mut stream = kube::runtime::watcher(api, Default::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            if let kube::runtime::watcher::Event::Apply(p) = ev {
                let mut t = t2.lock().unwrap_or_else(|e| e.into_inner());
                if t.0.is_none()
                    && hotsync::rollout::plan::condition(&p, "InPlaceUpdateReady") == Some("False")
                {
                    t.0 = Some(Instant::now());
                }
                if t.1.is_none()
                    && hotsync::live::spec_image(&p, "sidecar")
                        == Some("registry.example.com/sidecar:v0.2")
                {
                    t.1 = Some(Instant::now());
                }
            }
        }
    });
    write(
        &env,
        &mut repo,
        1,
        "v0.2",
        "      inPlaceUpdateStrategy:\n        gracePeriodSeconds: 2\n",
        "",
    );
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    watch.abort();
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    let (not_ready, image) = *times.lock().unwrap_or_else(|e| e.into_inner());
    let (not_ready, image) = (
        not_ready.unwrap_or_else(|| panic!("never not ready")),
        image.unwrap_or_else(|| panic!("no new image")),
    );
    assert!(
        image.duration_since(not_ready) >= Duration::from_millis(1500),
        "{:?}",
        image.duration_since(not_ready)
    );
    assert!(recorder.saw_inplace_false());
}

/// `minReadySeconds`: the next pod's update begins only once the previous pod has been ready that long.
#[tokio::test]
async fn min_ready_seconds_paces_hotsyncs_waves() {
    let env = harness::env("players-min-ready").await;
    let mut repo = started(&env, 2, "      minReadySeconds: 2\n", "").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    write(&env, &mut repo, 2, "v0.2", "      minReadySeconds: 2\n", "");
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.sets[0].outcome, Outcome::Synced, "{report:#?}");
    // Two pods one after the other: at least one minReadySeconds between them (to the second).
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

/// A denial by OKG's pod webhook (its network plugin failing) is reported as the webhook's, with its
/// message, not as RBAC; the pod it refused goes back into its load balancer, the hold stays.
#[tokio::test]
async fn an_admission_denial_is_reported_as_the_webhooks_and_keeps_the_pod_in_service() {
    let env = harness::env("players-denied").await;
    let mut repo = started(&env, 2, "", "").await;
    harness::webhooks()
        .set_mode(
            &env.namespace,
            WebhookMode::Deny("SLB listener quota exhausted".into()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    write(&env, &mut repo, 2, "v0.2", "", "");
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 1, "{report:#?}");
    let set = &report.sets[0];
    let msg = set.message.clone().unwrap_or_default();
    assert!(
        msg.contains("admission webhook mgameserverset.kb.io denied")
            && msg.contains("SLB listener quota exhausted"),
        "{msg}"
    );
    assert!(!msg.contains("RBAC"), "{msg}");
    assert!(set.pods.iter().any(|p| p.result == PodOutcome::Failed
        && p.message.as_deref().is_some_and(|m| m.contains("quota"))));
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(gss.annotations().contains_key(ANNOTATION_HOLD));
    env.eventually("every pod ready on its old image", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let ok = pods.iter().all(|p| {
            hotsync::live::is_ready(p)
                && hotsync::rollout::plan::condition(p, "InPlaceUpdateReady") == Some("True")
                && hotsync::live::spec_image(p, "sidecar") == Some(sidecar("v0.1").as_str())
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                pods.iter()
                    .map(|p| (p.name_any(), hotsync::live::is_ready(p)))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    harness::webhooks()
        .set_mode(&env.namespace, WebhookMode::Allow)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until every pod runs `tag` and is ready with `InPlaceUpdateReady` True.
async fn all_done(env: &TestEnv, tag: &str) -> Vec<Pod> {
    env.eventually(
        &format!("every pod on {tag}, ready and in service"),
        Duration::from_secs(60),
        || async {
            let pods = env.pods("minecraft").await;
            let ok = !pods.is_empty()
                && pods.iter().all(|p| {
                    hotsync::live::is_ready(p)
                        && hotsync::rollout::plan::condition(p, "InPlaceUpdateReady")
                            == Some("True")
                        && hotsync::live::spec_image(p, "sidecar") == Some(sidecar(tag).as_str())
                });
            if ok {
                Ok(pods)
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter()
                        .map(|p| (
                            p.name_any(),
                            hotsync::live::spec_image(p, "sidecar").map(str::to_string),
                            hotsync::rollout::plan::condition(p, "InPlaceUpdateReady")
                                .map(str::to_string)
                        ))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
}

/// `hotsync run` killed while the hook holds a pod in `PreparingUpdate`, and again inside the grace period
/// (the pod marked not ready, its images waiting), started again each time: it resumes, each sidecar
/// restarts once, and no pod stays out of its load balancer.
#[tokio::test]
async fn a_daemon_killed_in_preparing_update_and_inside_the_grace_resumes_and_leaves_no_pod_out_of_service(
) {
    let env = harness::env("players-crash").await;
    let hold = "  lifecycle:\n    inPlaceUpdate:\n      labelsHandler:\n        example.com/hold: \"true\"\n";
    let grace = "      inPlaceUpdateStrategy:\n        gracePeriodSeconds: 3\n";
    let mut repo = started(&env, 2, grace, hold).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // 1. PreparingUpdate: the hook holds minecraft-1.
    env.api::<Pod>()
        .patch(
            "minecraft-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/hold": "true"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let daemon = harness::spawn_daemon(&env, repo.path(), &dir.path().join("1.log"), &[]);
    write(&env, &mut repo, 2, "v0.2", grace, hold);
    env.eventually("minecraft-1 in PreparingUpdate", CONVERGE, || async {
        let p = env
            .api::<Pod>()
            .get("minecraft-1")
            .await
            .map_err(|e| e.to_string())?;
        match p
            .labels()
            .get("lifecycle.apps.kruise.io/state")
            .map(String::as_str)
        {
            Some("PreparingUpdate") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    drop(daemon);
    env.api::<Pod>()
        .patch(
            "minecraft-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/hold": null}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 2. Inside the grace: kill once a pod carries the grace annotation.
    let daemon = harness::spawn_daemon(&env, repo.path(), &dir.path().join("2.log"), &[]);
    env.eventually("a pod inside its grace period", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        if pods.iter().any(|p| {
            p.annotations()
                .contains_key("apps.kruise.io/inplace-update-grace")
        }) {
            Ok(())
        } else {
            Err("no grace yet".to_string())
        }
    })
    .await;
    drop(daemon);
    let daemon = harness::spawn_daemon(&env, repo.path(), &dir.path().join("3.log"), &[]);
    let pods = all_done(&env, "v0.2").await;
    env.eventually("the hold released", CONVERGE, || async {
        let gss: GameServerSet = env
            .api()
            .get("minecraft")
            .await
            .map_err(|e| e.to_string())?;
        if gss.annotations().contains_key(ANNOTATION_HOLD) {
            Err("held".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    drop(daemon);
    for p in &pods {
        assert_eq!(restarts(p, "sidecar"), 1, "{}", p.name_any());
        assert_eq!(restarts(p, "minecraft"), 0);
    }
}

/// `hotsync run` killed with `InPlaceUpdateReady` False before its patch (a slow webhook holds the patch
/// long enough) and started again: it carries on from the pod's condition, each sidecar restarts once, no
/// pod stays out of its load balancer.
#[tokio::test]
async fn a_daemon_killed_between_not_ready_and_its_patch_resumes_and_leaves_no_pod_out_of_service()
{
    let env = harness::env("players-crash-gate").await;
    let mut repo = started(&env, 2, "", "").await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    harness::webhooks()
        .set_mode(&env.namespace, WebhookMode::Slow(Duration::from_secs(6)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    write(&env, &mut repo, 2, "v0.2", "", "");
    let daemon = harness::spawn_daemon(&env, repo.path(), &dir.path().join("1.log"), &[]);
    env.eventually(
        "a pod marked not ready, not yet patched",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let caught = pods.iter().any(|p| {
                hotsync::rollout::plan::condition(p, "InPlaceUpdateReady") == Some("False")
                    && hotsync::live::spec_image(p, "sidecar") == Some(sidecar("v0.1").as_str())
            });
            if caught {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    drop(daemon);
    harness::webhooks()
        .set_mode(&env.namespace, WebhookMode::Allow)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _daemon = harness::spawn_daemon(&env, repo.path(), &dir.path().join("2.log"), &[]);
    let pods = all_done(&env, "v0.2").await;
    for p in &pods {
        assert_eq!(restarts(p, "sidecar"), 1, "{}", p.name_any());
        assert_eq!(restarts(p, "minecraft"), 0);
    }
}

/// `hotsync plan --cluster` of the current Git against the cluster, as JSON, and its exit code.
pub(crate) fn plan_cluster(
    env: &TestEnv,
    repo: &TempRepo,
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(["plan", "--cluster", "-o", "json", "--repo"])
        .arg(repo.path())
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("hotsync plan: {e}"));
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan --cluster printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// Against the cluster, the plan names each pod that would restart in place, in the order the rollout
/// takes them (highest ordinal first), with its container; the Allocated game server among them (players
/// on it); and, with `--skip-allocated`, that same server as left alone. Nothing is written.
#[tokio::test]
async fn plan_against_the_cluster_names_the_pods_that_restart_and_the_players_on_them() {
    let env = harness::env("plan cluster pods").await;
    let mut repo = started(&env, 3, "", "").await;
    set_ops_state(&env, "minecraft-1", "Allocated").await;
    write(&env, &mut repo, 3, "v0.2", "", "");

    let (code, plan) = plan_cluster(&env, &repo, &[]);
    assert_eq!(code, 1, "changes: {plan:#}");
    assert_eq!(plan["base"]["rev"], "cluster");
    let set = &plan["sets"][0];
    assert_eq!(set["impact"], "HotUpdate", "{plan:#}");
    assert_eq!(
        set["pods"]["inPlace"],
        json!([
            {"pod": "minecraft-2", "containers": ["sidecar"]},
            {"pod": "minecraft-1", "containers": ["sidecar"]},
            {"pod": "minecraft-0", "containers": ["sidecar"]},
        ])
    );
    assert_eq!(set["pods"]["allocated"], json!(["minecraft-1"]));

    let (_, plan) = plan_cluster(&env, &repo, &["--skip-allocated"]);
    let pods = &plan["sets"][0]["pods"];
    assert_eq!(
        pods["inPlace"]
            .as_array()
            .map(|a| a.iter().map(|p| p["pod"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("minecraft-2"), json!("minecraft-0")])
    );
    assert_eq!(pods["held"][0]["pod"], "minecraft-1");
    assert_eq!(pods["allocated"], json!([]));

    // A plan writes nothing: every pod still runs v0.1.
    for p in env.pods("minecraft").await {
        assert_eq!(
            hotsync::live::spec_image(&p, "sidecar"),
            Some(sidecar("v0.1").as_str())
        );
    }
}

/// A change OKG recreates pods for (an env edit) is planned as recreating every pod, the Allocated game
/// server among them: Kruise's recreate does not look at opsState.
#[tokio::test]
async fn plan_against_the_cluster_shows_an_allocated_server_among_recreated_pods() {
    let env = harness::env("plan cluster recreate").await;
    let mut repo = started(&env, 2, "", "").await;
    set_ops_state(&env, "minecraft-0", "Allocated").await;
    let mut m = harness::seed_manifest(&env.namespace, 2, "v0.1", "");
    m.push_str("          env:\n            - name: MODE\n              value: hard\n");
    repo.write("sets/minecraft.yaml", &m);
    repo.commit_all("sidecar env");

    let (code, plan) = plan_cluster(&env, &repo, &["--skip-allocated"]);
    assert_eq!(code, 1, "{plan:#}");
    let set = &plan["sets"][0];
    assert_eq!(set["impact"], "Recreate", "{plan:#}");
    assert_eq!(
        set["pods"]["recreated"],
        json!(["minecraft-1", "minecraft-0"])
    );
    assert_eq!(set["pods"]["allocated"], json!(["minecraft-0"]));
}
