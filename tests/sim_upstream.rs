//! The simulation held to upstream's code: each test names the function of openkruise/kruise or
//! openkruise/kruise-game whose behaviour it checks, on the shared cluster (the real kube-apiserver, OKG's
//! upstream CRDs, the simulated kubelet).

use crate::harness::{self, TestEnv, CONVERGE};
use crate::sim_cluster::{
    after_quiet_period, condition, containers, describe, edit_gss, is_ready, new_revision,
    revision, set_sidecar, settled, status_of, uids, Gss, Recorder, ENGINE, SIDECAR_V1, SIDECAR_V2,
};
use hotsync::model::{AdvancedStatefulSet, GameServer, GameServerSet};
use hotsync_sim::kruise::revision as kruise_revision;
use hotsync_sim::names::{
    KRUISE_INPLACE_GRACE, KRUISE_INPLACE_READY, KRUISE_INPLACE_STATE, KRUISE_LIFECYCLE_STATE,
    OKG_DELETE_PRIORITY, OKG_GS_STATE, OKG_INPLACE_NOT_READY_BLOCKER, OKG_NETWORK_CONF,
    OKG_NETWORK_TYPE, OKG_OWNER_GSS,
};
use hotsync_sim::WebhookMode;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt as _;
use serde_json::json;
use std::time::{Duration, Instant};

fn lifecycle(p: &Pod) -> String {
    p.labels()
        .get(KRUISE_LIFECYCLE_STATE)
        .cloned()
        .unwrap_or_default()
}

async fn asts(env: &TestEnv, name: &str) -> AdvancedStatefulSet {
    env.api::<AdvancedStatefulSet>()
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("no Advanced StatefulSet {name}: {e}"))
}

/// OKG's `GetNewAstsFromGss` (pkg/util/gameserver.go): the template carries the owner label, the network
/// annotations made from `spec.network`, and the `InPlaceUpdateReady` readiness gate; the update priority
/// becomes Kruise's order priority on `gs-update-priority`; pods are managed in parallel.
#[tokio::test]
async fn the_advanced_statefulset_carries_the_template_okg_builds_from_the_set() {
    let env = harness::env("get-new-asts").await;
    let conf = json!([{"name": "ContainerPorts", "value": "minecraft:25565/TCP"}]);
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "network",
            json!({"networkType": "Kubernetes-HostPort", "networkConf": conf}),
        )
        .build();
    env.create_gss(&gss).await;
    let (pods, _) = settled(&env, "minecraft", 1).await;
    let a = asts(&env, "minecraft").await;
    let meta = a.spec.template.metadata.clone().unwrap_or_default();
    assert_eq!(
        meta.labels
            .unwrap_or_default()
            .get(OKG_OWNER_GSS)
            .map(String::as_str),
        Some("minecraft")
    );
    let ann = meta.annotations.unwrap_or_default();
    assert_eq!(
        ann.get(OKG_NETWORK_TYPE).map(String::as_str),
        Some("Kubernetes-HostPort")
    );
    assert_eq!(
        ann.get(OKG_NETWORK_CONF).map(String::as_str),
        Some(r#"[{"name":"ContainerPorts","value":"minecraft:25565/TCP"}]"#)
    );
    let gates: Vec<String> = a
        .spec
        .template
        .spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .map(|g| g.condition_type.clone())
        .collect();
    assert_eq!(gates, [KRUISE_INPLACE_READY]);
    assert_eq!(a.spec.pod_management_policy.as_deref(), Some("Parallel"));
    let ru = a
        .spec
        .update_strategy
        .and_then(|u| u.rolling_update)
        .unwrap_or_default();
    let order = ru
        .unordered_update
        .and_then(|u| u.priority_strategy)
        .and_then(|p| p.order_priority)
        .unwrap_or_default();
    assert_eq!(order[0].ordered_key, "game.kruise.io/gs-update-priority");
    assert_eq!(
        pods[0]
            .annotations()
            .get(OKG_NETWORK_TYPE)
            .map(String::as_str),
        Some("Kubernetes-HostPort")
    );
}

/// `GetNewAstsFromGss` puts `spec.network` into the template, so Kruise sees a new revision: under the
/// default `ReCreate` policy the pods are recreated (`rollingUpdateStatefulsetPods` -> `deletePod`), under
/// `InPlaceIfPossible` they get the new annotations in place (`defaultCalculateInPlaceUpdateSpec`: a
/// metadata-only change), no container restarting.
#[tokio::test]
async fn a_network_change_recreates_pods_under_recreate_and_updates_them_in_place_otherwise() {
    let env = harness::env("network-change").await;
    let net = |v: &str| {
        json!({"networkType": "Kubernetes-HostPort",
        "networkConf": [{"name": "ContainerPorts", "value": v}]})
    };
    let recreate = Gss::seed("recreated")
        .replicas(2)
        .rolling("podUpdatePolicy", json!("ReCreate"))
        .set("network", net("minecraft:25565/TCP"))
        .build();
    let in_place = Gss::seed("inplace")
        .replicas(2)
        .set("network", net("minecraft:25565/TCP"))
        .build();
    env.create_gss(&recreate).await;
    env.create_gss(&in_place).await;
    let (r_before, r_rev) = settled(&env, "recreated", 2).await;
    let (i_before, i_rev) = settled(&env, "inplace", 2).await;
    for name in ["recreated", "inplace"] {
        edit_gss(
            &env,
            name,
            json!({"spec": {"network": net("minecraft:25566/TCP")}}),
        )
        .await;
    }
    new_revision(&env, "recreated", &r_rev).await;
    new_revision(&env, "inplace", &i_rev).await;
    let (r_after, _) = settled(&env, "recreated", 2).await;
    let (i_after, _) = settled(&env, "inplace", 2).await;
    for p in r_after.iter().chain(&i_after) {
        assert!(
            p.annotations()
                .get(OKG_NETWORK_CONF)
                .is_some_and(|c| c.contains("25566")),
            "{}",
            p.name_any()
        );
    }
    let r_uids = uids(&r_before);
    assert!(
        uids(&r_after).iter().all(|(n, u)| r_uids.get(n) != Some(u)),
        "ReCreate: every pod is new"
    );
    assert_eq!(uids(&i_before), uids(&i_after), "in place: the same pods");
    for p in &i_after {
        assert_eq!(status_of(p, "minecraft").map(|c| c.restart_count), Some(0));
        assert_eq!(status_of(p, "sidecar").map(|c| c.restart_count), Some(0));
    }
}

/// Kruise's `getStatefulSetRevisions` with Kubernetes' `HashControllerRevision`: a revision is named
/// `<set>-<hash of its template patch>`; a rollback to an earlier template reuses that revision (its
/// number moves to the front) instead of making a new one.
#[tokio::test]
async fn revisions_are_named_by_their_template_and_a_rollback_reuses_the_old_one() {
    let env = harness::env("revisions").await;
    env.create_gss(&Gss::seed("minecraft").replicas(1).build())
        .await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    let a = asts(&env, "minecraft").await;
    let template = hotsync_sim::kruise::defaulted(&a.spec).template;
    let expected = kruise_revision::name(
        "minecraft",
        &kruise_revision::hash(&kruise_revision::patch(&template), 0),
    );
    assert_eq!(rev1, expected);
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    settled(&env, "minecraft", 1).await;
    set_sidecar(&env, "minecraft", SIDECAR_V1).await;
    let back = new_revision(&env, "minecraft", &rev2).await;
    assert_eq!(back, rev1, "the rollback reuses the first revision");
    settled(&env, "minecraft", 1).await;
    let revs = env
        .api::<ControllerRevision>()
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let numbers: Vec<(String, i64)> = revs
        .items
        .iter()
        .map(|r| (r.name_any(), r.revision))
        .collect();
    assert_eq!(numbers.len(), 2, "{numbers:?}");
    assert!(
        numbers.contains(&(rev1.clone(), 3)),
        "the reused revision is now the newest: {numbers:?}"
    );
}

/// `rollingUpdateStatefulsetPods` calls `refreshPodState` on every pod before it looks at `paused`, and
/// `inplaceupdate.Refresh` sets `InPlaceUpdateReady` True on a pod whose in-place state passes its
/// completion check (a pod with no state at all passes): Kruise works on pods of a paused set.
#[tokio::test]
async fn kruise_refreshes_the_pods_of_a_paused_set() {
    let env = harness::env("refresh-paused").await;
    env.create_gss(&Gss::seed("minecraft").replicas(1).build())
        .await;
    settled(&env, "minecraft", 1).await;
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"paused": true}}}}),
    )
    .await;
    env.api::<Pod>()
        .patch_status(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [
                {"type": KRUISE_INPLACE_READY, "status": "False", "reason": "SomeoneElse"}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually(
        "InPlaceUpdateReady True again, while paused",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            match pods.first() {
                Some(p) if condition(p, KRUISE_INPLACE_READY).as_deref() == Some("True") => Ok(()),
                _ => Err(describe(&pods)),
            }
        },
    )
    .await;
}

/// The default completion check (`defaultCheckContainersInPlaceUpdateCompleted`): a container is done when
/// its imageID changed, or else when `status.image` equals the spec image exactly. A new tag on the digest
/// already running keeps its imageID and is reported under the tag the node knew first, so Kruise's own
/// update never completes (openkruise/kruise#2297): InPlaceUpdateReady stays False, the pod not ready,
/// the lifecycle Updating.
#[tokio::test]
async fn a_new_tag_on_the_running_digest_never_completes_for_kruise() {
    let env = harness::env("kruise-2297").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "gameServerTemplate",
            json!({"spec": {"containers": containers(SIDECAR_V2)}}),
        )
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    set_sidecar(&env, "minecraft", &format!("{SIDECAR_V2}-same")).await;
    new_revision(&env, "minecraft", &rev1).await;
    env.eventually(
        "the sidecar restarted on the same digest",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            match pods.first() {
                Some(p)
                    if status_of(p, "sidecar").is_some_and(|c| c.restart_count == 1 && c.ready) =>
                {
                    Ok(())
                }
                _ => Err(describe(&pods)),
            }
        },
    )
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    let p = &pods[0];
    assert_eq!(
        status_of(p, "sidecar").map(|c| c.image.as_str()),
        Some(SIDECAR_V2),
        "reported under the first tag of the digest"
    );
    assert_eq!(condition(p, KRUISE_INPLACE_READY).as_deref(), Some("False"));
    assert!(!is_ready(p));
    assert_eq!(lifecycle(p), "Updating");
}

/// openkruise/kruise#1493: the same image spelled short (`sidecar:v1`) after its full name
/// (`docker.io/library/sidecar:v1`): the container restarts on the same imageID, containerd reports the
/// full name, which never equals the short spec string, so Kruise's update never completes.
#[tokio::test]
async fn a_short_name_for_the_running_image_never_completes_for_kruise() {
    let env = harness::env("kruise-1493").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "gameServerTemplate",
            json!({"spec": {"containers": containers("docker.io/library/sidecar:v1")}}),
        )
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    set_sidecar(&env, "minecraft", "sidecar:v1").await;
    new_revision(&env, "minecraft", &rev1).await;
    env.eventually("the sidecar restarted", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p) if status_of(p, "sidecar").is_some_and(|c| c.restart_count == 1 && c.ready) => {
                Ok(())
            }
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let pods = after_quiet_period(&env, "minecraft").await;
    let p = &pods[0];
    assert_eq!(
        status_of(p, "sidecar").map(|c| c.image.as_str()),
        Some("docker.io/library/sidecar:v1")
    );
    assert_eq!(condition(p, KRUISE_INPLACE_READY).as_deref(), Some("False"));
    assert_eq!(lifecycle(p), "Updating");
}

/// `inplaceupdate.Update`: InPlaceUpdateReady False first (a status write), then the revision label and the
/// state annotation; with `inPlaceUpdateStrategy.gracePeriodSeconds` the images wait in
/// `apps.kruise.io/inplace-update-grace` until `Refresh`'s `finishGracePeriod` applies them.
#[tokio::test]
async fn kruise_marks_the_pod_not_ready_and_waits_its_grace_period_before_changing_images() {
    let env = harness::env("grace").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .rolling("inPlaceUpdateStrategy", json!({"gracePeriodSeconds": 2}))
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let held = env
        .eventually(
            "the pod marked not ready, its images waiting",
            CONVERGE,
            || async {
                let pods = env.pods("minecraft").await;
                match pods.first() {
                    Some(p)
                        if condition(p, KRUISE_INPLACE_READY).as_deref() == Some("False")
                            && revision(p) == rev2 =>
                    {
                        Ok(p.clone())
                    }
                    _ => Err(describe(&pods)),
                }
            },
        )
        .await;
    let since = Instant::now();
    assert!(held.annotations().contains_key(KRUISE_INPLACE_GRACE));
    let spec_image = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == "sidecar"))
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    assert_eq!(spec_image(&held), SIDECAR_V1);
    let changed = env
        .eventually(
            "the images applied after the grace period",
            CONVERGE,
            || async {
                let pods = env.pods("minecraft").await;
                match pods.first() {
                    Some(p) if spec_image(p) == SIDECAR_V2 => Ok(p.clone()),
                    _ => Err(describe(&pods)),
                }
            },
        )
        .await;
    assert!(
        since.elapsed() >= Duration::from_millis(1000),
        "images changed {:?} after the pod was marked not ready",
        since.elapsed()
    );
    assert!(!changed.annotations().contains_key(KRUISE_INPLACE_GRACE));
    let (pods, _) = settled(&env, "minecraft", 1).await;
    let state = pods[0]
        .annotations()
        .get(KRUISE_INPLACE_STATE)
        .cloned()
        .unwrap_or_default();
    assert!(
        state.contains(&rev2) && state.contains("lastContainerStatuses"),
        "{state}"
    );
}

/// OKG's in-place hook for `AllowNotReadyContainers` (`GetNewAstsFromGss` adds the
/// `inplace-update-not-ready-blocker` label handler) and its network plugin's `AllowNotReadyContainers`
/// (cloudprovider/utils/service.go): Kruise holds the pod in PreparingUpdate until the plugin has set the
/// Service's `publishNotReadyAddresses` and released the blocker; after the update the blocker is armed
/// again and the Service stops publishing not-ready addresses once the pod is ready.
#[tokio::test]
async fn allow_not_ready_containers_keeps_the_service_publishing_while_the_sidecar_restarts() {
    let env = harness::env("allow-not-ready").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "network",
            json!({"networkType": "Kubernetes-NodePort",
                   "networkConf": [{"name": "AllowNotReadyContainers", "value": "sidecar"}]}),
        )
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    let a = asts(&env, "minecraft").await;
    let hook = a
        .spec
        .lifecycle
        .and_then(|l| l.in_place_update)
        .and_then(|h| h.labels_handler)
        .unwrap_or_default();
    assert_eq!(
        hook.get(OKG_INPLACE_NOT_READY_BLOCKER).map(String::as_str),
        Some("true")
    );
    env.eventually("the blocker armed on the pod", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p)
                if p.labels()
                    .get(OKG_INPLACE_NOT_READY_BLOCKER)
                    .map(String::as_str)
                    == Some("true") =>
            {
                Ok(())
            }
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let services: Api<Service> = env.api();
    let publishing = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false)
    };
    let recorder = Recorder::start(&env, vec!["minecraft-0".into()]).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    new_revision(&env, "minecraft", &rev1).await;
    env.eventually(
        "PreparingUpdate with the Service publishing",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let svc = services.get_opt("minecraft-0").await.ok().flatten();
            match (pods.first(), svc) {
                (Some(p), Some(s)) if lifecycle(p) == "PreparingUpdate" && publishing(&s) => Ok(()),
                (p, s) => Err(format!(
                    "{} {:?}",
                    describe(&pods),
                    s.map(|s| publishing(&s)).zip(p.map(lifecycle))
                )),
            }
        },
    )
    .await;
    env.eventually(
        "updated, the blocker armed again, the Service back",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let svc = services.get_opt("minecraft-0").await.ok().flatten();
            match (pods.first(), svc) {
                (Some(p), Some(s))
                    if is_ready(p)
                        && status_of(p, "sidecar").is_some_and(|c| c.restart_count == 1)
                        && lifecycle(p) == "Normal"
                        && !publishing(&s) =>
                {
                    Ok(())
                }
                _ => Err(describe(&pods)),
            }
        },
    )
    .await;
    assert!(recorder.saw_inplace_false());
}

/// Kruise's `sortPodsToUpdate` orders by update priority (and ordinal); OKG's opsState plays no part: an
/// Allocated game server is updated like any other, which is why hotsync must hold the rollout for them.
#[tokio::test]
async fn kruise_updates_an_allocated_game_server_like_any_other() {
    let env = harness::env("ops-state-ignored").await;
    env.create_gss(&Gss::seed("minecraft").replicas(3).build())
        .await;
    let (_, rev1) = settled(&env, "minecraft", 3).await;
    env.api::<GameServer>()
        .patch(
            "minecraft-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"opsState": "Allocated"}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("the opsState on the pod", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.iter().find(|p| p.name_any() == "minecraft-2") {
            Some(p)
                if p.labels()
                    .get("game.kruise.io/gs-opsState")
                    .map(String::as_str)
                    == Some("Allocated") =>
            {
                Ok(())
            }
            _ => Err(describe(&pods)),
        }
    })
    .await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let (pods, rev) = settled(&env, "minecraft", 3).await;
    assert_eq!(rev, rev2);
    assert!(pods.iter().all(|p| revision(p) == rev2));
    assert_eq!(
        pods.iter()
            .find(|p| p.name_any() == "minecraft-2")
            .and_then(|p| status_of(p, "sidecar"))
            .map(|c| c.restart_count),
        Some(1),
        "the Allocated game server restarted"
    );
}

/// `rollingUpdateStatefulsetPods` with `minReadySeconds` (`isRunningAndAvailable`): a pod counts as
/// available only once it has been ready that long, so the next pod waits.
#[tokio::test]
async fn min_ready_seconds_paces_kruises_rollout() {
    let env = harness::env("min-ready").await;
    let gss = Gss::seed("minecraft")
        .replicas(2)
        .rolling("minReadySeconds", json!(2))
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    let first_done = env
        .eventually("the first pod updated and ready", CONVERGE, || async {
            let pods = env.pods("minecraft").await;
            let done: Vec<&Pod> = pods
                .iter()
                .filter(|p| revision(p) == rev2 && is_ready(p))
                .collect();
            if done.len() == 1 {
                Ok(Instant::now())
            } else {
                Err(describe(&pods))
            }
        })
        .await;
    let second_started = env
        .eventually("the second pod updated", CONVERGE, || async {
            let pods = env.pods("minecraft").await;
            if pods.iter().all(|p| revision(p) == rev2) {
                Ok(Instant::now())
            } else {
                Err(describe(&pods))
            }
        })
        .await;
    // The Ready condition's transition time is stored to the second, so Kruise's wait of 2 s counts from
    // up to a second earlier than the pod was seen ready here.
    assert!(
        second_started.duration_since(first_done) >= Duration::from_millis(900),
        "the second pod started {:?} after the first was ready",
        second_started.duration_since(first_done)
    );
}

/// OKG's `SyncStatus` (gameserverset_manager.go) and the GameServer controller's `SyncGsToPod` /
/// `SyncPodToGs`: the set's `replicas` is its own spec's, `currentReplicas` the pods; a GameServer's state
/// is the pod label `game.kruise.io/gs-state`; its priorities are copied from the pod labels as strings;
/// the deletion priority label is `gs-delete-priority`.
#[tokio::test]
async fn statuses_are_what_okg_computes() {
    let env = harness::env("okg-status").await;
    env.create_gss(&Gss::seed("minecraft").replicas(2).build())
        .await;
    let (pods, _) = settled(&env, "minecraft", 2).await;
    for p in &pods {
        assert_eq!(
            p.labels().get(OKG_GS_STATE).map(String::as_str),
            Some("Ready")
        );
        assert_eq!(
            p.labels().get(OKG_DELETE_PRIORITY).map(String::as_str),
            Some("0")
        );
        assert!(!p
            .labels()
            .contains_key("game.kruise.io/gs-deletion-priority"));
        assert_eq!(lifecycle(p), "Normal", "Kruise labels every pod it creates");
    }
    let gs = env
        .api::<GameServer>()
        .get("minecraft-0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = serde_json::to_value(gs.status.unwrap_or_default()).unwrap_or_default();
    assert_eq!(status["currentState"], json!("Ready"));
    assert_eq!(status["desiredState"], json!("Ready"));
    assert_eq!(
        status["updatePriority"],
        json!("0"),
        "a string, from the pod label"
    );
    assert_eq!(status["deletionPriority"], json!("0"));
    let set = env
        .eventually("the set's status", CONVERGE, || async {
            let g = env
                .api::<GameServerSet>()
                .get("minecraft")
                .await
                .map_err(|e| e.to_string())?;
            let s = g.status.clone().unwrap_or_default();
            if s.current_replicas == 2 && s.ready_replicas == 2 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        })
        .await;
    assert_eq!(set.replicas, 2);
    assert_eq!(set.pre_delete_replicas, Some(0));
    assert_eq!(set.maintaining_replicas, Some(0));
}

/// OKG's pod webhook (`PodMutatingHandler.Handle`, `getAdmissionResponse`): a plugin error is a 403 with
/// the plugin's message; a plugin slower than `podMutatingTimeout` (8 s) lets the update through without
/// its patch; a webhook that does not answer fails the update under `failurePolicy: Fail`.
#[tokio::test]
async fn the_pod_webhook_denies_lets_slow_plugins_through_and_fails_when_it_hangs() {
    let deny = harness::env("webhook-deny").await;
    let slow = harness::env("webhook-slow").await;
    let hang = harness::env("webhook-hang").await;
    for env in [&deny, &slow, &hang] {
        env.create_gss(&Gss::seed("minecraft").replicas(1).build())
            .await;
        settled(env, "minecraft", 1).await;
    }
    let hooks = harness::webhooks();
    hooks
        .set_mode(
            &deny.namespace,
            WebhookMode::Deny("SLB quota exhausted".into()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    hooks
        .set_mode(&slow.namespace, WebhookMode::Slow(Duration::from_secs(9)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    hooks
        .set_mode(&hang.namespace, WebhookMode::Hang)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let label = json!({"metadata": {"labels": {"example.com/touched": "yes"}}});
    let try_patch = |env: &TestEnv| {
        let api: Api<Pod> = env.api();
        let label = label.clone();
        async move {
            let t = Instant::now();
            let r = api
                .patch("minecraft-0", &PatchParams::default(), &Patch::Merge(label))
                .await;
            (r, t.elapsed())
        }
    };
    let ((d, _), (s, s_took), (h, h_took)) =
        tokio::join!(try_patch(&deny), try_patch(&slow), try_patch(&hang));
    match d {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains("SLB quota exhausted"), "{}", e.message);
            assert!(e.message.contains("mgameserverset.kb.io"), "{}", e.message);
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(s.is_ok(), "a slow plugin is let through: {s:?}");
    assert!(s_took >= Duration::from_secs(7), "{s_took:?}");
    match h {
        Err(kube::Error::Api(e)) => {
            assert!(e.message.contains("mgameserverset.kb.io"), "{}", e.message);
            assert!(h_took >= Duration::from_secs(9), "{h_took:?}");
        }
        other => panic!("expected a failed call, got {other:?}"),
    }
    // Other namespaces are never touched by those modes.
    let other = harness::env("webhook-other").await;
    other
        .create_gss(&Gss::seed("minecraft").replicas(1).build())
        .await;
    settled(&other, "minecraft", 1).await;
    let (r, took) = try_patch(&other).await;
    assert!(
        r.is_ok() && took < Duration::from_secs(5),
        "{r:?} in {took:?}"
    );
}

/// OKG's GameServerSet validating webhook (`validating_gss.go`): the network type must be one OKG knows.
#[tokio::test]
async fn the_set_webhook_refuses_an_unknown_network_type() {
    let env = harness::env("gss-webhook").await;
    let mut gss = Gss::seed("minecraft")
        .set("network", json!({"networkType": "Carrier-Pigeon"}))
        .build();
    gss.metadata.namespace = Some(env.namespace.clone());
    let err = env
        .api::<GameServerSet>()
        .create(&PostParams::default(), &gss)
        .await
        .expect_err("refused");
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403);
            assert!(
                e.message.contains("network type must be one of"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The simulated kubelet reports images as a kubelet on containerd does: the full reference of a short
/// name, and for a re-tag of a digest the node knows, the first tag with the same imageID.
#[tokio::test]
async fn the_simulated_kubelet_reports_images_as_containerd_does() {
    let env = harness::env("kubelet-images").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "gameServerTemplate",
            json!({"spec": {"containers": [
                {"name": "minecraft", "image": ENGINE},
                {"name": "sidecar", "image": "sidecar:v1"},
            ]}}),
        )
        .build();
    env.create_gss(&gss).await;
    let (pods, _) = settled(&env, "minecraft", 1).await;
    let s = status_of(&pods[0], "sidecar").cloned().unwrap_or_default();
    assert_eq!(s.image, "docker.io/library/sidecar:v1");
    assert!(
        s.image_id.starts_with("docker.io/library/sidecar@sha256:"),
        "{}",
        s.image_id
    );
}

/// `inplaceupdate.Refresh` and `refreshPodState` check whatever in-place state a pod carries, without
/// comparing revisions: a pod that Kruise updated earlier (its state records the sidecar's old imageID),
/// then patched by someone else back to a tag of that old digest and marked as updating
/// (`InPlaceUpdateReady` False, lifecycle Updating) without a state of its own, never passes the check
/// again: it stays out of its load balancer and Updating, its GameServer Updating.
#[tokio::test]
async fn a_stale_in_place_state_holds_a_pod_patched_by_someone_else_out_of_service() {
    let env = harness::env("stale-state").await;
    let gss = Gss::seed("minecraft")
        .replicas(1)
        .set(
            "lifecycle",
            json!({"inPlaceUpdate": {"labelsHandler": {"example.com/hold": "true"}}}),
        )
        .build();
    env.create_gss(&gss).await;
    let (_, rev1) = settled(&env, "minecraft", 1).await;
    set_sidecar(&env, "minecraft", SIDECAR_V2).await;
    let rev2 = new_revision(&env, "minecraft", &rev1).await;
    env.eventually("Kruise's update done (Updated)", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods.first() {
            Some(p) if revision(p) == rev2 && is_ready(p) && lifecycle(p) == "Updated" => Ok(()),
            _ => Err(describe(&pods)),
        }
    })
    .await;
    let same = format!("{SIDECAR_V1}-same");
    edit_gss(
        &env,
        "minecraft",
        json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"paused": true}},
            "gameServerTemplate": {"spec": {"containers": containers(&same)}},
        }}),
    )
    .await;
    let rev3 = new_revision(&env, "minecraft", &rev2).await;
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/containers/1/image", "value": same},
        {"op": "replace", "path": "/metadata/labels/controller-revision-hash", "value": rev3},
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    env.api::<Pod>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually(
        "the sidecar restarted on the old digest",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            match pods.first() {
                Some(p)
                    if status_of(p, "sidecar").is_some_and(|c| c.restart_count == 2 && c.ready) =>
                {
                    Ok(())
                }
                _ => Err(describe(&pods)),
            }
        },
    )
    .await;
    env.api::<Pod>()
        .patch(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {KRUISE_LIFECYCLE_STATE: "Updating"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.api::<Pod>()
        .patch_status(
            "minecraft-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [
                {"type": KRUISE_INPLACE_READY, "status": "False", "reason": "StartInPlaceUpdate"}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = env.pods("minecraft").await;
    let p = &pods[0];
    assert!(
        hotsync_sim::kruise::inplace::check_pod_completed(p).is_err(),
        "the stale state fails Kruise's check"
    );
    assert_eq!(lifecycle(p), "Updating", "{}", describe(&pods));
    assert_eq!(condition(p, KRUISE_INPLACE_READY).as_deref(), Some("False"));
    assert!(!is_ready(p));
    let gs = env
        .api::<GameServer>()
        .get("minecraft-0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        gs.status.and_then(|s| s.current_state).as_deref(),
        Some("Updating")
    );
}
