//! The simulated OKG controller and kubelet on a real kube-apiserver: the seed's story, in-place updates,
//! recreation, and Kruise's rollout rules (partition, update priority, maxUnavailable, paused).

use crate::harness::{self, TestEnv, CONVERGE};
use futures::{StreamExt as _, TryStreamExt as _};
use hotsync::model::{AdvancedStatefulSet, GameServer, GameServerSet};
use hotsync_sim::names::{
    KRUISE_INPLACE_READY as CONDITION_INPLACE_READY, KRUISE_REVISION_LABEL as LABEL_REVISION_HASH,
    OKG_UPDATE_PRIORITY as LABEL_UPDATE_PRIORITY,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const ENGINE: &str = "registry.cn-hangzhou.aliyuncs.com/acs/minecraft-demo:1.12.2";
pub(crate) const SIDECAR_V1: &str = "registry.cn-hangzhou.aliyuncs.com/acs/sidecar:v0.1";
pub(crate) const SIDECAR_V2: &str = "registry.cn-hangzhou.aliyuncs.com/acs/sidecar:v0.2";

/// Test sets: the seed's `minecraft` set, adjustable.
pub(crate) struct Gss(Value);

impl Gss {
    pub(crate) fn seed(name: &str) -> Gss {
        Gss(json!({
            "apiVersion": "game.kruise.io/v1alpha1",
            "kind": "GameServerSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": 3,
                "updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}},
                "gameServerTemplate": {"spec": {"containers": [
                    {"name": "minecraft", "image": ENGINE},
                    {"name": "sidecar", "image": SIDECAR_V1},
                ]}},
            },
        }))
    }

    pub(crate) fn replicas(mut self, n: i32) -> Self {
        self.0["spec"]["replicas"] = json!(n);
        self
    }

    pub(crate) fn rolling(mut self, key: &str, value: Value) -> Self {
        self.0["spec"]["updateStrategy"]["rollingUpdate"][key] = value;
        self
    }

    pub(crate) fn set(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    pub(crate) fn build(self) -> GameServerSet {
        serde_json::from_value(self.0).unwrap_or_else(|e| panic!("test set does not parse: {e}"))
    }
}

pub(crate) fn containers(sidecar: &str) -> Value {
    json!([{"name": "minecraft", "image": ENGINE}, {"name": "sidecar", "image": sidecar}])
}

/// What `kubectl edit gss` sends for a custom resource: a JSON merge patch (the containers list whole).
pub(crate) async fn edit_gss(env: &TestEnv, name: &str, patch: Value) {
    env.api::<GameServerSet>()
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap_or_else(|e| panic!("could not patch the GameServerSet {name}: {e}"));
}

pub(crate) async fn set_sidecar(env: &TestEnv, name: &str, image: &str) {
    edit_gss(
        env,
        name,
        json!({"spec": {"gameServerTemplate": {"spec": {"containers": containers(image)}}}}),
    )
    .await;
}

pub(crate) fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

pub(crate) fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").as_deref() == Some("True")
}

pub(crate) fn revision(pod: &Pod) -> String {
    pod.labels()
        .get(LABEL_REVISION_HASH)
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn describe(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            let restarts: Vec<String> = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| {
                    let waiting = c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone())
                        .unwrap_or_default();
                    format!(
                        "{}:{}:r{}:{}{}",
                        c.name, c.image, c.restart_count, c.ready, waiting
                    )
                })
                .collect();
            format!(
                "{} rev={} ready={} ipur={:?} terminating={} [{}]",
                p.name_any(),
                revision(p),
                is_ready(p),
                condition(p, CONDITION_INPLACE_READY),
                p.metadata.deletion_timestamp.is_some(),
                restarts.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) async fn update_revision(env: &TestEnv, name: &str) -> Option<String> {
    env.api::<AdvancedStatefulSet>()
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|a| a.status)
        .and_then(|s| s.update_revision)
}

/// Waits until the Advanced StatefulSet names a revision other than `old`.
pub(crate) async fn new_revision(env: &TestEnv, name: &str, old: &str) -> String {
    env.eventually("a new updateRevision", CONVERGE, || async {
        match update_revision(env, name).await {
            Some(r) if r != old => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Waits until the set has `n` pods, all ready on one revision, with `n` GameServers Ready; returns the
/// pods and that revision.
pub(crate) async fn settled(env: &TestEnv, name: &str, n: usize) -> (Vec<Pod>, String) {
    env.eventually(
        &format!("{n} ready pods and game servers of {name}"),
        CONVERGE,
        || async {
            let rev = update_revision(env, name)
                .await
                .ok_or("no updateRevision yet")?;
            let pods = env.pods(name).await;
            let ok = pods.len() == n
                && pods.iter().all(|p| {
                    is_ready(p)
                        && revision(p) == rev
                        && p.metadata.deletion_timestamp.is_none()
                        && condition(p, CONDITION_INPLACE_READY).as_deref() == Some("True")
                });
            if !ok {
                return Err(describe(&pods));
            }
            let gss = env
                .api::<GameServer>()
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("game.kruise.io/owner-gss={name}")),
                )
                .await
                .map_err(|e| e.to_string())?;
            let ready = gss
                .items
                .iter()
                .filter(|g| {
                    g.status.as_ref().and_then(|s| s.current_state.as_deref()) == Some("Ready")
                })
                .count();
            if ready != n {
                return Err(format!("{ready} of {n} GameServers Ready"));
            }
            Ok((pods, rev))
        },
    )
    .await
}

pub(crate) fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

/// Waits a quiet period (a multiple of the simulation's delays) and returns the pods: for checking that
/// something does *not* happen.
pub(crate) async fn after_quiet_period(env: &TestEnv, name: &str) -> Vec<Pod> {
    tokio::time::sleep(Duration::from_millis(800)).await;
    env.pods(name).await
}

/// Records, from a watch on the namespace's pods, the most pods of a set ever not ready at once, and
/// whether any pod ever reported InPlaceUpdateReady False.
pub(crate) struct Recorder {
    max_unready: Arc<Mutex<usize>>,
    saw_inplace_false: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub(crate) async fn start(env: &TestEnv, expected: Vec<String>) -> Recorder {
        let api: Api<Pod> = env.api();
        let max_unready = Arc::new(Mutex::new(0));
        let saw_inplace_false = Arc::new(Mutex::new(false));
        let (m, s) = (max_unready.clone(), saw_inplace_false.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready: HashMap<String, bool> =
                expected.into_iter().map(|n| (n, true)).collect();
            let mut ready_tx = Some(ready_tx);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                let pods: Vec<(Pod, bool)> = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![(p, true)],
                    watcher::Event::Delete(p) => vec![(p, false)],
                    watcher::Event::InitDone => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                        vec![]
                    }
                    watcher::Event::Init => vec![],
                };
                for (p, present) in pods {
                    let ok = present && p.metadata.deletion_timestamp.is_none() && is_ready(&p);
                    if condition(&p, CONDITION_INPLACE_READY).as_deref() == Some("False") {
                        *s.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    }
                    if let Some(r) = ready.get_mut(&p.name_any()) {
                        *r = ok;
                    }
                }
                let unready = ready.values().filter(|r| !**r).count();
                let mut max = m.lock().unwrap_or_else(|e| e.into_inner());
                *max = (*max).max(unready);
            }
        });
        let _ = tokio::time::timeout(CONVERGE, ready_rx).await;
        Recorder {
            max_unready,
            saw_inplace_false,
            task,
        }
    }

    pub(crate) fn max_unready(&self) -> usize {
        *self.max_unready.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn saw_inplace_false(&self) -> bool {
        *self
            .saw_inplace_false
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn the_seed_set_gives_three_running_pods_and_three_ready_game_servers() {
    let env = harness::env("seed").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (pods, rev) = settled(&env, "minecraft", 3).await;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["minecraft-0", "minecraft-1", "minecraft-2"]);
    for pod in &pods {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some() && status.start_time.is_some());
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("hotsync-sim-node"));
        assert!(spec
            .readiness_gates
            .iter()
            .flatten()
            .any(|g| g.condition_type == CONDITION_INPLACE_READY));
        for c in ["minecraft", "sidecar"] {
            let cs = status_of(pod, c)
                .unwrap_or_else(|| panic!("{} has no status for {c}", pod.name_any()));
            assert!(cs.ready && cs.restart_count == 0, "{c}: {cs:?}");
        }
        let labels = pod.labels();
        assert_eq!(
            labels.get("game.kruise.io/owner-gss").map(String::as_str),
            Some("minecraft")
        );
        assert_eq!(
            labels.get(LABEL_UPDATE_PRIORITY).map(String::as_str),
            Some("0")
        );
        assert_eq!(
            labels.get("statefulset.kubernetes.io/pod-name"),
            Some(&pod.name_any())
        );
        let owner = pod
            .owner_references()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("no owner"));
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("StatefulSet", "minecraft")
        );
    }
    let gss = env
        .api::<GameServerSet>()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = env
        .eventually("the set's status", CONVERGE, || async {
            let gss = env
                .api::<GameServerSet>()
                .get("minecraft")
                .await
                .map_err(|e| e.to_string())?;
            match gss.status {
                Some(s) if s.ready_replicas == 3 && s.updated_replicas == 3 => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.current_replicas, 3);
    assert_eq!(status.observed_generation, gss.metadata.generation);
    assert_eq!(
        status.label_selector.as_deref(),
        Some("game.kruise.io/owner-gss=minecraft")
    );
    let asts = env
        .api::<AdvancedStatefulSet>()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let asts_status = asts.status.unwrap_or_default();
    assert_eq!(asts_status.update_revision.as_deref(), Some(rev.as_str()));
    assert_eq!(asts_status.current_revision.as_deref(), Some(rev.as_str()));
}

#[tokio::test]
async fn a_sidecar_image_change_restarts_only_the_sidecar_in_place() {
    let env = harness::env("in-place").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (before, rev1) = settled(&env, "minecraft", 3).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let (after, rev) = settled(&env, "minecraft", 3).await;
    assert_eq!(rev, rev2);
    assert_eq!(uids(&before), uids(&after), "in place: same pods");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.metadata.creation_timestamp, a.metadata.creation_timestamp);
        let (bs, as_) = (
            b.status.clone().unwrap_or_default(),
            a.status.clone().unwrap_or_default(),
        );
        assert_eq!(bs.pod_ip, as_.pod_ip);
        assert_eq!(bs.start_time, as_.start_time);
        let engine = status_of(a, "minecraft").cloned().unwrap_or_default();
        let sidecar = status_of(a, "sidecar").cloned().unwrap_or_default();
        assert_eq!(engine.restart_count, 0, "{}", describe(&after));
        assert_eq!(sidecar.restart_count, 1, "{}", describe(&after));
        assert_eq!(sidecar.image, SIDECAR_V2);
        assert_eq!(
            engine.container_id,
            status_of(b, "minecraft").and_then(|c| c.container_id.clone())
        );
        assert_ne!(
            sidecar.container_id,
            status_of(b, "sidecar").and_then(|c| c.container_id.clone())
        );
        assert_ne!(
            Some(sidecar.image_id.clone()),
            status_of(b, "sidecar").map(|c| c.image_id.clone())
        );
    }
}

#[tokio::test]
async fn an_env_change_under_in_place_if_possible_recreates_the_pods() {
    let env = harness::env("recreate").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (before, rev1) = settled(&env, "minecraft", 3).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"gameServerTemplate": {"spec": {"containers": [
            {"name": "minecraft", "image": ENGINE, "env": [{"name": "DIFFICULTY", "value": "hard"}]},
            {"name": "sidecar", "image": SIDECAR_V1},
        ]}}}}),
    )
    .await;
    new_revision(&env, "minecraft", &rev1).await;
    let (after, _) = settled(&env, "minecraft", 3).await;
    let (b, a) = (uids(&before), uids(&after));
    for (name, uid) in &b {
        assert_ne!(a.get(name), Some(uid), "{name} should have been recreated");
    }
    for pod in &after {
        assert_eq!(status_of(pod, "sidecar").map(|c| c.restart_count), Some(0));
    }
}

#[tokio::test]
async fn an_image_change_under_the_default_recreate_policy_recreates_the_pods() {
    let env = harness::env("recreate-policy").await;
    let gss = Gss::seed("lobby")
        .replicas(2)
        .set("updateStrategy", json!({}))
        .build();
    env.create_gss(&gss).await;
    let (before, rev1) = settled(&env, "lobby", 2).await;
    set_sidecar(&env, "lobby", SIDECAR_V2).await;
    new_revision(&env, "lobby", &rev1).await;
    let (after, _) = settled(&env, "lobby", 2).await;
    assert!(uids(&before)
        .values()
        .all(|u| !uids(&after).values().any(|v| v == u)));
}

#[tokio::test]
async fn partition_keeps_that_many_pods_on_the_old_revision_and_updates_the_highest_ordinals() {
    let env = harness::env("partition").await;
    env.create_gss(
        &Gss::seed("minecraft")
            .rolling("partition", json!(1))
            .build(),
    )
    .await;
    let (_, rev1) = settled(&env, "minecraft", 3).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    env.eventually("two pods updated", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let done = pods
            .iter()
            .filter(|p| revision(p) == rev2 && is_ready(p))
            .count();
        if done == 2 {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    let revs: Vec<String> = pods.iter().map(revision).collect();
    assert_eq!(
        revs,
        [rev1.clone(), rev2.clone(), rev2.clone()],
        "{}",
        describe(&pods)
    );
    let status = env
        .api::<GameServerSet>()
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.status.map(|s| s.updated_replicas), Some(2));
}

#[tokio::test]
async fn update_priority_puts_a_game_server_first() {
    let env = harness::env("priority").await;
    env.create_gss(
        &Gss::seed("minecraft")
            .rolling("partition", json!(2))
            .build(),
    )
    .await;
    let (_, rev1) = settled(&env, "minecraft", 3).await;
    env.api::<GameServer>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updatePriority": 10}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("the priority mirrored onto the pod", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let label = pods
            .first()
            .and_then(|p| p.labels().get(LABEL_UPDATE_PRIORITY).cloned());
        if label.as_deref() == Some("10") {
            Ok(())
        } else {
            Err(format!("{label:?}"))
        }
    })
    .await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    env.eventually("minecraft-0 updated", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let ok = pods
            .first()
            .is_some_and(|p| revision(p) == rev2 && is_ready(p));
        if ok {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    let revs: Vec<String> = pods.iter().map(revision).collect();
    assert_eq!(revs, [rev2, rev1.clone(), rev1], "{}", describe(&pods));
}

#[tokio::test]
async fn max_unavailable_is_never_exceeded() {
    let env = harness::env("max-unavailable").await;
    let gss = Gss::seed("minecraft")
        .replicas(5)
        .rolling("maxUnavailable", json!(2))
        .build();
    env.create_gss(&gss).await;
    let (before, rev1) = settled(&env, "minecraft", 5).await;
    let names = before.iter().map(|p| p.name_any()).collect();
    let recorder = Recorder::start(&env, names).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    new_revision(&env, "minecraft", &rev1).await;
    let (after, _) = settled(&env, "minecraft", 5).await;
    assert_eq!(uids(&before), uids(&after));
    assert!(
        recorder.max_unready() <= 2,
        "{} pods were unavailable at once",
        recorder.max_unready()
    );
    assert!(recorder.max_unready() >= 1, "the rollout was not observed");
}

#[tokio::test]
async fn max_unavailable_as_a_percentage_of_replicas() {
    let env = harness::env("max-unavailable-pct").await;
    let gss = Gss::seed("minecraft")
        .replicas(4)
        .rolling("maxUnavailable", json!("50%"))
        .build();
    env.create_gss(&gss).await;
    let (before, rev1) = settled(&env, "minecraft", 4).await;
    let recorder = Recorder::start(&env, before.iter().map(|p| p.name_any()).collect()).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    new_revision(&env, "minecraft", &rev1).await;
    settled(&env, "minecraft", 4).await;
    assert!(
        recorder.max_unready() <= 2,
        "{} pods were unavailable at once",
        recorder.max_unready()
    );
}

#[tokio::test]
async fn paused_holds_the_rollout_until_resumed() {
    let env = harness::env("paused").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (before, rev1) = settled(&env, "minecraft", 3).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"paused": true}},
            "gameServerTemplate": {"spec": {"containers": containers(SIDECAR_V2)}},
        }}),
    )
    .await;
    new_revision(&env, "minecraft", &rev1).await;
    let pods = after_quiet_period(&env, "minecraft").await;
    assert!(
        pods.iter().all(|p| revision(p) == rev1 && is_ready(p)),
        "{}",
        describe(&pods)
    );
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"paused": false}}}}),
    )
    .await;
    let (after, _) = settled(&env, "minecraft", 3).await;
    assert_eq!(uids(&before), uids(&after));
}

#[tokio::test]
async fn a_missing_image_stops_the_rollout_at_max_unavailable() {
    let env = harness::env("missing-image").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (_, rev1) = settled(&env, "minecraft", 3).await;
    set_sidecar(
        &env,
        "minecraft",
        "registry.cn-hangzhou.aliyuncs.com/acs/sidecar:v0.2-missing",
    )
    .await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    env.eventually("a pod stuck in ImagePullBackOff", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let stuck = pods.iter().any(|p| {
            status_of(p, "sidecar")
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("ImagePullBackOff")
        });
        if stuck {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    let updated: Vec<&Pod> = pods.iter().filter(|p| revision(p) == rev2).collect();
    assert_eq!(updated.len(), 1, "{}", describe(&pods));
    assert!(!is_ready(updated[0]));
    assert_eq!(
        updated[0].name_any(),
        "minecraft-2",
        "highest ordinal first"
    );
    let others_ready = pods
        .iter()
        .filter(|p| revision(p) == rev1 && is_ready(p))
        .count();
    assert_eq!(others_ready, 2, "{}", describe(&pods));
    env.eventually("the GameServer Updating", CONVERGE, || async {
        let gs = env
            .api::<GameServer>()
            .get("minecraft-2")
            .await
            .map_err(|e| e.to_string())?;
        match gs.status.and_then(|s| s.current_state) {
            Some(s) if s == "Updating" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The crucial case for hotsync: it holds the rollout, patches each pod's image and revision label itself,
/// and OKG must then see the pods as up to date and do nothing more.
#[tokio::test]
async fn pods_patched_like_hotsync_does_are_up_to_date_for_the_controller() {
    let env = harness::env("hotsync-patch").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (before, rev1) = settled(&env, "minecraft", 3).await;
    let recorder = Recorder::start(&env, before.iter().map(|p| p.name_any()).collect()).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"paused": true}},
            "gameServerTemplate": {"spec": {"containers": containers(SIDECAR_V2)}},
        }}),
    )
    .await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    for pod in &before {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version()},
            {"op": "test", "path": "/spec/containers/1/image", "value": SIDECAR_V1},
            {"op": "replace", "path": "/spec/containers/1/image", "value": SIDECAR_V2},
            {"op": "replace", "path": format!("/metadata/labels/{}", LABEL_REVISION_HASH.replace('/', "~1")), "value": rev2},
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        env.api::<Pod>()
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await
            .unwrap_or_else(|e| panic!("could not patch {}: {e}", pod.name_any()));
    }
    settled(&env, "minecraft", 3).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"paused": false}}}}),
    )
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    assert_eq!(uids(&before), uids(&pods));
    for pod in &pods {
        assert_eq!(revision(pod), rev2);
        assert!(is_ready(pod), "{}", describe(&pods));
        assert_eq!(
            status_of(pod, "sidecar").map(|c| c.restart_count),
            Some(1),
            "{}",
            describe(&pods)
        );
        assert_eq!(
            status_of(pod, "minecraft").map(|c| c.restart_count),
            Some(0)
        );
    }
    assert!(
        !recorder.saw_inplace_false(),
        "the controller started an update of its own"
    );
}

/// Kruise has no relabel pass: `rollingUpdateStatefulsetPods` skips a pod only when its
/// `controller-revision-hash` is the update revision, so a pod that already runs the target images (bumped
/// on the pod alone) still gets Kruise's whole in-place update (`inPlaceUpdatePod`, `inplaceupdate.Update`:
/// InPlaceUpdateReady False, the state annotation, the revision label) and completes without a second
/// restart, since the image it reports is exactly the spec's.
#[tokio::test]
async fn kruise_updates_in_place_a_pod_that_already_runs_the_target_images_without_restarting_it_again(
) {
    let env = harness::env("no-relabel-pass").await;
    env.create_gss(&Gss::seed("minecraft").build()).await;
    let (before, rev1) = settled(&env, "minecraft", 3).await;
    let recorder = Recorder::start(&env, before.iter().map(|p| p.name_any()).collect()).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"paused": true}}}}),
    )
    .await;
    for pod in &before {
        env.api::<Pod>()
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"spec": {"containers": [{"name": "sidecar", "image": SIDECAR_V2}]}}),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    env.eventually("sidecars restarted", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let ok = pods.iter().all(|p| {
            is_ready(p)
                && status_of(p, "sidecar")
                    .is_some_and(|c| c.restart_count == 1 && c.image == SIDECAR_V2)
        });
        if ok {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
    assert!(
        !recorder.saw_inplace_false(),
        "no update before the template changes"
    );
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"paused": false}},
            "gameServerTemplate": {"spec": {"containers": containers(SIDECAR_V2)}},
        }}),
    )
    .await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let (after, rev) = settled(&env, "minecraft", 3).await;
    assert_eq!(rev, rev2);
    assert_eq!(uids(&before), uids(&after));
    for pod in &after {
        assert_eq!(
            status_of(pod, "sidecar").map(|c| c.restart_count),
            Some(1),
            "{}",
            describe(&after)
        );
        let state = pod
            .annotations()
            .get(hotsync_sim::names::KRUISE_INPLACE_STATE)
            .unwrap_or_else(|| panic!("{} has no in-place update state", pod.name_any()));
        assert!(state.contains(&rev2), "{state}");
    }
    assert!(
        recorder.saw_inplace_false(),
        "Kruise ran its own in-place update on the pods"
    );
}

#[tokio::test]
async fn scaling_honours_reserved_game_server_ids() {
    let env = harness::env("reserve").await;
    let gss = Gss::seed("minecraft")
        .set("reserveGameServerIds", json!([1]))
        .build();
    env.create_gss(&gss).await;
    let (pods, _) = settled(&env, "minecraft", 3).await;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["minecraft-0", "minecraft-2", "minecraft-3"]);
    edit_gss(&env, "minecraft", json!({"spec": {"replicas": 2}})).await;
    let (pods, _) = settled(&env, "minecraft", 2).await;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["minecraft-0", "minecraft-2"]);
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"reserveGameServerIds": [0], "replicas": 2}}),
    )
    .await;
    env.eventually("minecraft-0 replaced by minecraft-1", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        let ok = names == ["minecraft-1", "minecraft-2"] && pods.iter().all(is_ready);
        if ok {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
}

#[tokio::test]
async fn a_game_server_image_override_is_patched_onto_its_pod() {
    let env = harness::env("gs-override").await;
    env.create_gss(&Gss::seed("minecraft").replicas(2).build())
        .await;
    settled(&env, "minecraft", 2).await;
    env.api::<GameServer>()
        .patch(
            "minecraft-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"containers": [{"name": "sidecar", "image": SIDECAR_V2}]}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("the override running", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let ok = pods.iter().any(|p| {
            p.name_any() == "minecraft-1"
                && is_ready(p)
                && status_of(p, "sidecar")
                    .is_some_and(|c| c.image == SIDECAR_V2 && c.restart_count == 1)
        });
        if ok {
            Ok(())
        } else {
            Err(describe(&pods))
        }
    })
    .await;
}

/// `inPlaceUpdatePod` and `refreshPodState` (stateful_set_control.go): a pod held by the in-place hook waits
/// in PreparingUpdate; released, it is updated (Updating) and, once complete, is Updated, not Normal, until
/// the hook's labels are back on it.
#[tokio::test]
async fn an_in_place_update_walks_the_lifecycle_states() {
    let env = harness::env("lifecycle").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "lifecycle",
            json!({"inPlaceUpdate": {"labelsHandler": {"example.com/hold": "true"}}}),
        )
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    env.api::<Pod>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/hold": "true"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let state = |p: &Pod| {
        p.labels()
            .get("lifecycle.apps.kruise.io/state")
            .cloned()
            .unwrap_or_default()
    };
    env.eventually("PreparingUpdate", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p) if state(p) == "PreparingUpdate" => Ok(()),
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    assert!(
        pods.iter()
            .all(|p| revision(p) == rev1 && state(p) == "PreparingUpdate"),
        "held by the hook"
    );
    env.api::<Pod>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/hold": null}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("Updated, once the update completed", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p) if state(p) == "Updated" && revision(p) == rev2 && is_ready(p) => Ok(()),
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let pods = env.pods("minecraft").await;
    assert_eq!(
        status_of(&pods[0], "sidecar").map(|c| c.restart_count),
        Some(1)
    );
    // refreshPodState: Updated stays Updated until the hook holds the pod again; then Normal.
    let pods = after_quiet_period(&env, "minecraft").await;
    assert_eq!(state(&pods[0]), "Updated");
    env.api::<Pod>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/hold": "true"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("Normal again", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p) if state(p) == "Normal" => Ok(()),
            _ => Err(describe(&pods)),
        }
    })
    .await;
}

#[tokio::test]
async fn a_crashing_image_loops_with_a_rising_restart_count() {
    let env = harness::env("crash").await;
    let gss = Gss::seed("minecraft").replicas(1).build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    set_sidecar(
        &env,
        "minecraft",
        "registry.cn-hangzhou.aliyuncs.com/acs/sidecar:v0.2-crash",
    )
    .await;
    new_revision(&env, "minecraft", &rev1).await;
    env.eventually(
        "CrashLoopBackOff with restarts rising",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let ok = pods
                .first()
                .and_then(|p| status_of(p, "sidecar"))
                .is_some_and(|c| {
                    c.restart_count >= 3
                        && c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                });
            if ok {
                Ok(())
            } else {
                Err(describe(&pods))
            }
        },
    )
    .await;
}
