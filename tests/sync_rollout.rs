//! `hotsync sync` on the real API server with the simulated OKG and kubelet: sidecar bumps restart
//! containers in place, in order, within maxUnavailable; failures roll back one pod; a killed sync
//! resumes; recreates are refused; RBAC is honoured.

use crate::gitrepo::TempRepo;
use crate::harness::{self, TestEnv, CONVERGE};
use futures::StreamExt as _;
use hotsync::model::{GameServer, GameServerSet, LABEL_OWNER_GSS, LABEL_UPDATE_PRIORITY};
use hotsync::rollout::{Outcome, PodOutcome, ANNOTATION_HOLD};
use hotsync::sync::{SyncOptions, SyncReport};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn sidecar(tag: &str) -> String {
    format!("registry.example.com/sidecar:{tag}")
}

async fn sync(env: &TestEnv, opts: &SyncOptions) -> SyncReport {
    hotsync::sync::sync(&env.client, opts, None)
        .await
        .unwrap_or_else(|e| panic!("sync failed: {}", hotsync::sync::error_chain(&e)))
}

/// A repository with the set at `tag`, synced: every pod running and ready.
async fn started(env: &TestEnv, replicas: i32, rolling: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, replicas, "v0.1", rolling),
    );
    repo.commit_all("minecraft at v0.1");
    let report = sync(env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 0, "first sync: {report:#?}");
    assert_eq!(env.pods("minecraft").await.len(), replicas as usize);
    repo
}

fn bump(env: &TestEnv, repo: &mut TempRepo, replicas: i32, tag: &str, rolling: &str) {
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, replicas, tag, rolling),
    );
    repo.commit_all(&format!("bump sidecar to {tag}"));
}

fn restarts(pod: &Pod, container: &str) -> i32 {
    hotsync::live::container_status(pod, container)
        .map(|s| s.restart_count)
        .unwrap_or(-1)
}

/// Pod events as the watch saw them: (pod, spec sidecar image, ready, deleted, the `InPlaceUpdateReady`
/// condition's status and reason, the running sidecar's container id).
#[derive(Clone, Debug)]
struct Seen {
    pod: String,
    sidecar: String,
    ready: bool,
    deleted: bool,
    gate: Option<(String, Option<String>)>,
    container: Option<String>,
}

struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(env: &TestEnv) -> Recorder {
        let api: Api<Pod> = env.api();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(&format!("{LABEL_OWNER_GSS}=minecraft"));
            let mut stream = std::pin::pin!(watcher(api, cfg));
            let mut ready_tx = Some(ready_tx);
            while let Some(ev) = stream.next().await {
                let record = |p: &Pod, deleted: bool| Seen {
                    pod: p.name_any(),
                    sidecar: hotsync::live::spec_image(p, "sidecar")
                        .unwrap_or_default()
                        .to_string(),
                    ready: hotsync::live::is_ready(p),
                    deleted,
                    gate: p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| c.iter().find(|c| c.type_ == "InPlaceUpdateReady"))
                        .map(|c| (c.status.clone(), c.reason.clone())),
                    container: hotsync::live::container_status(p, "sidecar")
                        .and_then(|c| c.container_id.clone()),
                };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    Ok(watcher::Event::Apply(p)) => s.push(record(&p, false)),
                    Ok(watcher::Event::Delete(p)) => s.push(record(&p, true)),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
        });
        ready_rx
            .await
            .unwrap_or_else(|_| panic!("the pod watch never listed"));
        Recorder { seen, task }
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The order in which pods first showed the image.
    fn order_of(&self, image: &str) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        for e in self.events() {
            if e.sidecar == image && !order.contains(&e.pod) {
                order.push(e.pod);
            }
        }
        order
    }

    /// The most pods not ready at once.
    fn max_not_ready(&self) -> usize {
        let mut ready: BTreeMap<String, bool> = BTreeMap::new();
        let mut max = 0;
        for e in self.events() {
            ready.insert(e.pod.clone(), e.ready && !e.deleted);
            max = max.max(ready.values().filter(|r| !**r).count());
        }
        max
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_sidecar_bump_restarts_only_the_sidecar_in_place_and_keeps_every_pod() {
    let env = harness::env("seed story").await;
    let mut repo = started(&env, 3, "").await;
    let before: BTreeMap<String, (String, String)> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| {
            let created = format!("{:?}", p.metadata.creation_timestamp);
            (p.name_any(), (p.uid().unwrap_or_default(), created))
        })
        .collect();
    let recorder = Recorder::start(&env).await;
    bump(&env, &mut repo, 3, "v0.2", "");
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Synced);
    assert!(
        set.pods.iter().all(|p| p.result == PodOutcome::Updated),
        "{:?}",
        set.pods
    );
    // Nothing the simulated Kruise does after hotsync is done: no pod goes NotReady again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = env.pods("minecraft").await;
    assert_eq!(after.len(), 3);
    for p in &after {
        let name = p.name_any();
        let created = format!("{:?}", p.metadata.creation_timestamp);
        assert_eq!(
            before.get(&name),
            Some(&(p.uid().unwrap_or_default(), created)),
            "{name} was recreated"
        );
        assert_eq!(restarts(p, "sidecar"), 1, "{name}: sidecar restarts");
        assert_eq!(
            restarts(p, "minecraft"),
            0,
            "{name}: the engine must not restart"
        );
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some(sidecar("v0.2").as_str())
        );
        assert!(hotsync::live::is_ready(p), "{name} is ready");
        let managers: Vec<&str> = p
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.as_deref())
            .collect();
        assert!(
            managers.contains(&"hotsync"),
            "{name} was not patched by hotsync: {managers:?}"
        );
    }
    let events = recorder.events();
    assert!(events.iter().all(|e| !e.deleted), "no pod is deleted");
    // The gate True again as Kruise's `Refresh` writes it (no reason, no message): with the reason of
    // the False left in, `hasEqualCondition` differs and Kruise writes every pod once more.
    for e in &events {
        if let Some((status, Some(reason))) = &e.gate {
            assert_ne!(
                status, "True",
                "{}: InPlaceUpdateReady True with reason {reason}",
                e.pod
            );
        }
    }
    // Each sidecar restarted while its pod was out of its load balancer: the gate False when the new
    // container shows (Kruise's refresh, which puts a False gate of a pod without an in-place state
    // back to True, did not win the race with the patch).
    for name in before.keys() {
        let mut running: Option<&String> = None;
        for e in events.iter().filter(|e| &e.pod == name) {
            let Some(id) = &e.container else { continue };
            if running.is_some_and(|r| r != id) {
                assert_eq!(
                    e.gate.as_ref().map(|g| g.0.as_str()),
                    Some("False"),
                    "{name}: the sidecar restarted with InPlaceUpdateReady {:?}",
                    e.gate
                );
            }
            running = Some(id);
        }
    }
    // Each pod went NotReady once (its own restart), never again.
    for name in before.keys() {
        let transitions = events
            .iter()
            .filter(|e| &e.pod == name)
            .map(|e| e.ready)
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] && !w[1])
            .count();
        assert!(transitions <= 1, "{name} went NotReady {transitions} times");
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gss.annotations().get(ANNOTATION_HOLD).is_none(),
        "the hold is released"
    );
    assert_ne!(
        gss.spec
            .update_strategy
            .and_then(|u| u.rolling_update)
            .and_then(|r| r.paused),
        Some(true)
    );
}

#[tokio::test]
async fn pods_update_by_priority_and_partition_keeps_the_last_on_the_old_version() {
    let env = harness::env("priority partition").await;
    let rolling = "      partition: 1\n      maxUnavailable: 1\n";
    let mut repo = started(&env, 4, rolling).await;
    let gs: Api<GameServer> = env.api();
    for (name, prio) in [("minecraft-1", 10), ("minecraft-3", 5)] {
        gs.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updatePriority": prio}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    env.eventually("priorities mirrored onto pods", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let labelled = pods
            .iter()
            .filter(|p| {
                p.labels()
                    .get(LABEL_UPDATE_PRIORITY)
                    .is_some_and(|v| v != "0")
            })
            .count();
        if labelled == 2 {
            Ok(())
        } else {
            Err(format!("{labelled} pods labelled"))
        }
    })
    .await;
    let recorder = Recorder::start(&env).await;
    bump(&env, &mut repo, 4, "v0.2", rolling);
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(
        recorder.order_of(&sidecar("v0.2")),
        vec!["minecraft-1", "minecraft-3", "minecraft-2"]
    );
    let kept: Vec<_> = report.sets[0]
        .pods
        .iter()
        .filter(|p| p.result == PodOutcome::KeptByPartition)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(kept, vec!["minecraft-0"]);
    let pods = env.pods("minecraft").await;
    let zero = pods
        .iter()
        .find(|p| p.name_any() == "minecraft-0")
        .unwrap_or_else(|| panic!("minecraft-0"));
    assert_eq!(
        hotsync::live::spec_image(zero, "sidecar"),
        Some(sidecar("v0.1").as_str())
    );
    assert_eq!(restarts(zero, "sidecar"), 0);
}

#[tokio::test]
async fn never_more_than_max_unavailable_pods_restart_at_once() {
    let env = harness::env("max unavailable").await;
    let rolling = "      maxUnavailable: 2\n";
    let mut repo = started(&env, 6, rolling).await;
    let recorder = Recorder::start(&env).await;
    bump(&env, &mut repo, 6, "v0.2", rolling);
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let max = recorder.max_not_ready();
    assert!(max <= 2, "{max} pods were not ready at once");
    assert!(max >= 1, "the watch saw no restart at all");
    for p in env.pods("minecraft").await {
        assert_eq!(restarts(&p, "sidecar"), 1);
    }
}

#[tokio::test]
async fn a_missing_image_halts_the_rollout_and_rolls_back_that_pod_only() {
    let env = harness::env("missing image").await;
    let mut repo = started(&env, 3, "").await;
    bump(&env, &mut repo, 3, "v0.2-missing", "");
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.pod_timeout = Duration::from_secs(20);
    let report = sync(&env, &opts).await;
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
        msg.contains("sidecar")
            && (msg.contains("ImagePullBackOff") || msg.contains("ErrImagePull")),
        "{msg}"
    );
    assert_eq!(
        set.pods
            .iter()
            .filter(|p| p.result == PodOutcome::NotReached)
            .count(),
        2
    );
    let failed_pod = rolled[0].name.clone();
    env.eventually(
        "the rolled-back pod runs its old image again",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let ok = pods.iter().all(|p| {
                hotsync::live::spec_image(p, "sidecar") == Some(sidecar("v0.1").as_str())
                    && hotsync::live::is_ready(p)
            });
            if ok {
                Ok(())
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
    .await;
    for p in env.pods("minecraft").await {
        if p.name_any() != failed_pod {
            assert_eq!(restarts(&p, "sidecar"), 0, "{} was touched", p.name_any());
        }
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gss.annotations().contains_key(ANNOTATION_HOLD),
        "OKG stays held so it cannot spread the bad image"
    );
}

#[tokio::test]
async fn a_recreate_without_allow_recreate_is_refused_and_leaves_the_cluster_untouched() {
    let env = harness::env("refused recreate").await;
    let mut repo = started(&env, 2, "").await;
    let gss_before: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<String> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    let text = harness::seed_manifest(&env.namespace, 2, "v0.1", "")
        .replace("        - name: sidecar\n", "          env:\n            - name: MODE\n              value: hard\n        - name: sidecar\n");
    repo.write("sets/minecraft.yaml", &text);
    repo.commit_all("env change");
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 3, "{report:#?}");
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Refused);
    let msg = set.message.clone().unwrap_or_default();
    assert!(msg.contains("minecraft") && msg.contains(".env"), "{msg}");
    let gss_after: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        gss_after.metadata.generation,
        gss_before.metadata.generation
    );
    // Not the resourceVersion: OKG's controller goes on writing the set's status.
    assert_eq!(
        serde_json::to_value(&gss_after.spec).ok(),
        serde_json::to_value(&gss_before.spec).ok()
    );
    assert_eq!(
        gss_after.metadata.annotations,
        gss_before.metadata.annotations
    );
    assert_eq!(gss_after.metadata.labels, gss_before.metadata.labels);
    let uids_after: Vec<String> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    assert_eq!(uids, uids_after);
}

#[tokio::test]
async fn a_broken_manifest_stops_the_whole_sync_before_anything_is_applied() {
    let env = harness::env("broken manifest").await;
    let mut repo = started(&env, 2, "").await;
    bump(&env, &mut repo, 2, "v0.2", "");
    repo.write("sets/other.yaml", "apiVersion: game.kruise.io/v1alpha1\nkind: GameServerSet\nmetadata:\n  name: other\nspec:\n  replicas: [\n");
    repo.commit_all("bump and a broken file");
    let report = sync(&env, &harness::sync_options(repo.path())).await;
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.errors[0].file, "sets/other.yaml");
    assert!(report.sets.is_empty());
    for p in env.pods("minecraft").await {
        assert_eq!(
            hotsync::live::spec_image(&p, "sidecar"),
            Some(sidecar("v0.1").as_str())
        );
    }
}

#[tokio::test]
async fn a_concurrent_edit_of_a_pod_is_re_planned_not_overwritten() {
    let env = harness::env("concurrent edit").await;
    let mut repo = started(&env, 4, "").await;
    bump(&env, &mut repo, 4, "v0.2", "");
    let pods: Api<Pod> = env.api();
    let opts = harness::sync_options(repo.path());
    let client = env.client.clone();
    let sync_task = tokio::spawn(async move { hotsync::sync::sync(&client, &opts, None).await });
    // While the rollout runs, someone labels every pod, as `kubectl label` would.
    for name in ["minecraft-0", "minecraft-1", "minecraft-2", "minecraft-3"] {
        pods.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "blue"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let report = sync_task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    for p in env.pods("minecraft").await {
        assert_eq!(
            p.labels().get("team").map(String::as_str),
            Some("blue"),
            "{} lost the edit",
            p.name_any()
        );
        assert_eq!(
            hotsync::live::spec_image(&p, "sidecar"),
            Some(sidecar("v0.2").as_str())
        );
        assert_eq!(restarts(&p, "sidecar"), 1);
    }
}

/// `hotsync sync` as a process, so that it can be killed.
fn sync_process(env: &TestEnv, repo: &TempRepo) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(["sync", "--repo"])
        .arg(repo.path())
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["--pod-timeout", "30s", "--timeout", "60s", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start hotsync: {e}"))
}

#[tokio::test]
async fn sync_killed_mid_rollout_and_run_again_finishes_without_restarting_a_pod_twice() {
    let env = harness::env("killed sync").await;
    let rolling = "      maxUnavailable: 1\n";
    let mut repo = started(&env, 6, rolling).await;
    let uids: Vec<String> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    bump(&env, &mut repo, 6, "v0.2", rolling);
    let recorder = Recorder::start(&env).await;
    // Kill after the 1st, then the 3rd patched pod; the third run finishes.
    for kill_after in [1usize, 3] {
        let mut child = sync_process(&env, &repo);
        env.eventually("hotsync to patch pods", CONVERGE, || async {
            let n = recorder.order_of(&sidecar("v0.2")).len();
            if n >= kill_after {
                Ok(())
            } else {
                Err(format!("{n} patched"))
            }
        })
        .await;
        child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        let _ = child.wait();
    }
    let out = sync_process(&env, &repo)
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pods = env.pods("minecraft").await;
    assert_eq!(
        pods.iter()
            .map(|p| p.uid().unwrap_or_default())
            .collect::<Vec<_>>(),
        uids,
        "no pod recreated"
    );
    for p in &pods {
        assert_eq!(
            restarts(p, "sidecar"),
            1,
            "{} restarted more than once",
            p.name_any()
        );
        assert_eq!(restarts(p, "minecraft"), 0);
        assert!(hotsync::live::is_ready(p));
    }
    let gss: GameServerSet = env
        .api()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(gss.annotations().get(ANNOTATION_HOLD).is_none());
}

/// Grants `user` in the test namespace the rights hotsync's ClusterRole gives, optionally without
/// patching pods.
async fn grant(env: &TestEnv, user: &str, pod_patch: bool) {
    let pod_verbs: Vec<&str> = if pod_patch {
        vec!["get", "list", "watch", "patch"]
    } else {
        vec!["get", "list", "watch"]
    };
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": format!("hotsync-{user}")},
        "rules": [
            {"apiGroups": ["game.kruise.io"], "resources": ["gameserversets"], "verbs": ["get", "list", "watch", "create", "patch"]},
            {"apiGroups": ["game.kruise.io"], "resources": ["gameservers"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps.kruise.io"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": pod_verbs},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
        ],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("hotsync-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("hotsync-{user}")},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let pp = kube::api::PostParams::default();
    env.api::<k8s_openapi::api::rbac::v1::Role>()
        .create(&pp, &role)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.api::<k8s_openapi::api::rbac::v1::RoleBinding>()
        .create(&pp, &binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_token_with_only_the_rights_hotsync_needs_completes_a_hot_update() {
    let env = harness::env("least privilege").await;
    let mut repo = started(&env, 2, "").await;
    grant(&env, "hotsync-limited", true).await;
    let limited = env.client_with_token(env.token("LIMITED_TOKEN")).await;
    bump(&env, &mut repo, 2, "v0.2", "");
    let report = hotsync::sync::sync(&limited, &harness::sync_options(repo.path()), None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    for p in env.pods("minecraft").await {
        assert_eq!(restarts(&p, "sidecar"), 1);
    }
}

#[tokio::test]
async fn a_token_without_pod_patch_rights_fails_with_a_message_naming_the_missing_right() {
    let env = harness::env("no pod patch").await;
    let mut repo = started(&env, 2, "").await;
    grant(&env, "hotsync-none", false).await;
    let client = env.client_with_token(env.token("NONE_TOKEN")).await;
    bump(&env, &mut repo, 2, "v0.2", "");
    let report = hotsync::sync::sync(&client, &harness::sync_options(repo.path()), None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 1, "{report:#?}");
    let msg = report.sets[0].message.clone().unwrap_or_default();
    assert!(msg.contains("RBAC: hotsync may not patch pod"), "{msg}");
    for p in env.pods("minecraft").await {
        assert_eq!(restarts(&p, "sidecar"), 0, "no pod may change");
    }
}

#[tokio::test]
async fn a_game_server_that_overrides_an_image_is_reported_because_it_fights_the_rollout() {
    let env = harness::env("gs override").await;
    let mut repo = started(&env, 2, "").await;
    let gs: Api<GameServer> = env.api();
    let patch = json!({"spec": {"containers": [{"name": "sidecar", "image": sidecar("pinned")}]}});
    gs.patch(
        "minecraft-0",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    bump(&env, &mut repo, 2, "v0.2", "");
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.dry_run = true;
    let report = sync(&env, &opts).await;
    let warnings = &report.sets[0].warnings;
    assert!(
        warnings.iter().any(|w| w.contains(
            "GameServer minecraft-0 overrides sidecar=registry.example.com/sidecar:pinned"
        )),
        "{warnings:?}"
    );
}
