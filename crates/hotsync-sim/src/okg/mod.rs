//! OpenKruiseGame's controllers, simulated from openkruise/kruise-game as ordinary API clients: the
//! GameServerSet controller (the Advanced StatefulSet it builds, kills, scaling, status) here, the GameServer
//! controller in [`gameserver`], and OKG's admission webhooks in [`webhook`].
//!
//! The GameServerSet pass follows `pkg/controllers/gameserverset/gameserverset_controller.go` (`Reconcile`)
//! and `gameserverset_manager.go` (`GetReplicasAfterKilling`, `IsNeedToScale`, `GameServerScale`,
//! `computeToScaleGs`, `IsNeedToUpdateWorkload`, `UpdateWorkload`, `SyncStatus`): each step returns as soon
//! as it acts, and the next event carries on. Its workloads and pods are read from OKG's cache, as
//! upstream's `r.Get` and `r.List` read them (see [`crate::cache`]). Not simulated: PodProbeMarkers (service qualities need
//! kruise-daemon's probes), the `reclaimPolicy: Delete` GameServer bookkeeping of scale-downs.

pub mod gameserver;
pub mod webhook;
pub mod workload;

use crate::names::{gs_state, KRUISE_LIFECYCLE_STATE};
use crate::names::{
    lifecycle as lc, ops_state, OKG_ASTS_HASH, OKG_DELETE_PRIORITY, OKG_GS_STATE, OKG_OPS_STATE,
    OKG_OWNER_GSS, OKG_RESERVE_IDS,
};
use crate::{cache, pods, shutdown_signal, SimError};
use futures::StreamExt as _;
use hotsync_model::{AdvancedStatefulSet, GameServerSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A failure of one pass; the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum OkgError {
    #[error("could not {action} {object}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl OkgError {
    fn is_conflict(&self) -> bool {
        matches!(self, OkgError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

pub(crate) fn api_err(
    action: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(kube::Error) -> OkgError {
    let object = object.into();
    move |source| OkgError::Api {
        action,
        object,
        source,
    }
}

/// The field manager of OKG's writes (its manager's name).
pub(crate) const FIELD_MANAGER: &str = "kruise-game-manager";

pub(crate) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

pub(crate) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

struct Ctx {
    client: kube::Client,
    /// OKG's cached client: the Advanced StatefulSets and the sets' pods as the informers have them.
    workloads: Store<AdvancedStatefulSet>,
    pods: Store<Pod>,
}

/// Runs the GameServerSet controller until shutdown. Its reads come from informers (see
/// [`crate::cache`]): the sets it reconciles, the workloads it owns, the pods that trigger it.
pub(crate) async fn run_gss(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let (sets, set_events) = cache::informer(
        Api::<GameServerSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let (workloads, workload_events) = cache::informer(
        Api::<AdvancedStatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let (pods, pod_events) = cache::informer(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(OKG_OWNER_GSS),
    );
    let ctx = Arc::new(Ctx {
        client,
        workloads: workloads.clone(),
        pods: pods.clone(),
    });
    Controller::for_stream(set_events, sets)
        .owns_stream(workload_events)
        .watches_stream(pod_events, |pod: Pod| {
            let ns = pod.namespace();
            pod.labels().get(OKG_OWNER_GSS).map(|n| {
                ObjectRef::<GameServerSet>::new(n).within(ns.as_deref().unwrap_or_default())
            })
        })
        .trigger_backoff(hotsync_model::WatchBackoff::default())
        .graceful_shutdown_on(shutdown_signal(shutdown.clone()))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "okg gameserverset reconcile");
            }
        })
        .await;
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended {
            task: "okg-gameserverset",
        })
    }
}

fn error_policy(_gss: Arc<GameServerSet>, err: &OkgError, _ctx: Arc<Ctx>) -> Action {
    if err.is_conflict() {
        Action::requeue(Duration::from_millis(20))
    } else {
        tracing::warn!(error = %err, "simulated okg");
        Action::requeue(Duration::from_millis(500))
    }
}

async fn reconcile(gss: Arc<GameServerSet>, ctx: Arc<Ctx>) -> Result<Action, OkgError> {
    let Some(ns) = gss.namespace() else {
        return Ok(Action::await_change());
    };
    if gss.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = gss.name_any();
    let key = format!("{ns}/{name}");
    let asts_api: Api<AdvancedStatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let gss_api: Api<GameServerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut asts) = cache::get(&ctx.workloads, Some(&ns), &name).map(|a| (*a).clone()) else {
        let asts = workload::init_asts(&gss);
        match asts_api.create(&post_params(), &asts).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err("create the statefulset of", key)(e)),
        }
        return Ok(Action::await_change());
    };
    // The set's pods as the cache has them (upstream lists them by its owner label).
    let mut pod_list: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.labels().get(OKG_OWNER_GSS) == Some(&name))
        .collect();
    pod_list.sort_by_key(|p| p.name_any());

    // Kill: GameServers set to Kill lower the replicas, once the set is steady.
    let replicas = gss.spec.replicas.unwrap_or(0);
    let steady = Some(replicas) == asts.spec.replicas
        && usize::try_from(replicas).ok() == Some(pod_list.len())
        && !pod_list.iter().any(|p| pods::is_terminating(p));
    if steady {
        let to_kill = pod_list
            .iter()
            .filter(|p| pods::label(p, OKG_OPS_STATE) == Some(ops_state::KILL))
            .count();
        if to_kill > 0 {
            let mut g = (*gss).clone();
            g.spec.replicas = Some(replicas - i32::try_from(to_kill).unwrap_or(0));
            gss_api
                .replace(&name, &post_params(), &g)
                .await
                .map_err(api_err("lower the replicas of", key.clone()))?;
            return Ok(Action::await_change());
        }
    }

    // Scale.
    let annotation_ids = ordinal_set_of_string(
        gss.annotations()
            .get(OKG_RESERVE_IDS)
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let spec_ids = crate::kruise::reserved_ordinals(gss.spec.reserve_game_server_ids.as_ref());
    if Some(replicas) != asts.spec.replicas || annotation_ids != spec_ids {
        scale(&ctx, &gss, &mut asts, &pod_list, &spec_ids, &annotation_ids).await?;
        return Ok(Action::await_change());
    }

    // Update the workload when what OKG derives from the set changed.
    let hash = workload::asts_hash(&gss);
    if asts.annotations().get(OKG_ASTS_HASH) != Some(&hash) {
        workload::get_new_asts_from_gss(&gss, &mut asts);
        asts.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(OKG_ASTS_HASH.into(), hash);
        // A full update; on a conflict upstream retries with the same stale object, so the next pass does it.
        asts_api
            .replace(&name, &post_params(), &asts)
            .await
            .map_err(api_err("update the statefulset of", key))?;
        return Ok(Action::await_change());
    }

    sync_status(&gss_api, &gss, &asts, &pod_list).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// `GameServerScale` with `computeToScaleGs`: which ids the set manages and which it reserves, told to
/// Kruise through the Advanced StatefulSet's `replicas` and `reserveOrdinals`.
async fn scale(
    ctx: &Ctx,
    gss: &GameServerSet,
    asts: &mut AdvancedStatefulSet,
    pod_list: &[Arc<Pod>],
    spec_ids: &BTreeSet<i32>,
    annotation_ids: &BTreeSet<i32>,
) -> Result<(), OkgError> {
    let ns = gss.namespace().unwrap_or_default();
    let name = gss.name_any();
    let key = format!("{ns}/{name}");
    let asts_reserved = crate::kruise::reserved_ordinals(asts.spec.reserve_ordinals.as_ref());
    let implicit: BTreeSet<i32> = asts_reserved.difference(annotation_ids).copied().collect();
    let expected = usize::try_from(gss.spec.replicas.unwrap_or(0).max(0)).unwrap_or(0);
    let (_, new_reserve) = compute_to_scale(
        spec_ids,
        annotation_ids,
        &implicit,
        expected,
        pod_list,
        &name,
    );
    asts.spec.reserve_ordinals = ordinal_set_to_int_str(&new_reserve);
    asts.spec.replicas = gss.spec.replicas;
    asts.spec.scale_strategy = Some(hotsync_model::AstsScaleStrategy {
        max_unavailable: gss
            .spec
            .scale_strategy
            .as_ref()
            .and_then(|s| s.max_unavailable.clone()),
        ..Default::default()
    });
    Api::<AdvancedStatefulSet>::namespaced(ctx.client.clone(), &ns)
        .replace(&name, &post_params(), asts)
        .await
        .map_err(api_err("scale the statefulset of", key.clone()))?;
    let reserve_ids_kept = gss
        .spec
        .scale_strategy
        .as_ref()
        .and_then(|s| s.scale_down_strategy_type.as_deref())
        == Some("ReserveIds");
    let new_spec_ids = if reserve_ids_kept {
        new_reserve
    } else {
        spec_ids.clone()
    };
    let mut patch = serde_json::Map::new();
    let text = ordinal_set_to_string(&new_spec_ids);
    if gss.annotations().get(OKG_RESERVE_IDS) != Some(&text) {
        patch.insert(
            "metadata".into(),
            json!({"annotations": {OKG_RESERVE_IDS: text}}),
        );
    }
    if reserve_ids_kept && &new_spec_ids != spec_ids {
        patch.insert(
            "spec".into(),
            json!({"reserveGameServerIds": ordinal_set_to_int_str(&new_spec_ids)}),
        );
    }
    if !patch.is_empty() {
        Api::<GameServerSet>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &patch_params(), &Patch::Merge(Value::Object(patch)))
            .await
            .map_err(api_err("record the reserved ids of", key))?;
    }
    Ok(())
}

/// `opsStateDeletePrority`.
fn ops_state_weight(pod: &Pod) -> i32 {
    match pods::label(pod, OKG_OPS_STATE).unwrap_or_default() {
        ops_state::KILL => 100,
        ops_state::WAIT_TO_BE_DELETED => 1,
        ops_state::ALLOCATED => -1,
        ops_state::MAINTAINING => -2,
        _ => 0,
    }
}

/// `computeToScaleGs`: `(managed ids, reserved ids)`.
pub fn compute_to_scale(
    spec_ids: &BTreeSet<i32>,
    annotation_ids: &BTreeSet<i32>,
    implicit: &BTreeSet<i32>,
    expected: usize,
    pod_list: &[Arc<Pod>],
    set: &str,
) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let new_add_explicit: BTreeSet<i32> = spec_ids.difference(annotation_ids).copied().collect();
    let new_delete_explicit: BTreeSet<i32> = annotation_ids.difference(spec_ids).copied().collect();
    let mut new_implicit: BTreeSet<i32> = implicit
        .difference(&new_add_explicit)
        .copied()
        .chain(new_delete_explicit)
        .collect();
    let mut managed: BTreeSet<i32> = BTreeSet::new();
    let mut pre_deleting: BTreeSet<i32> = BTreeSet::new();
    let mut candidates: Vec<(&Pod, i32)> = Vec::new();
    for pod in pod_list {
        let Some(index) = pods::ordinal(pods::name(pod), set) else {
            continue;
        };
        if pods::is_terminating(pod) {
            continue;
        }
        if pods::label(pod, KRUISE_LIFECYCLE_STATE) == Some(lc::PREPARING_DELETE) {
            pre_deleting.insert(index);
            continue;
        }
        if spec_ids.contains(&index) {
            continue;
        }
        managed.insert(index);
        candidates.push((pod, index));
    }
    let exist = managed.len();
    if exist < expected {
        let mut added = 0;
        let mut i = 0;
        while added < expected - exist {
            if !managed.contains(&i) && !spec_ids.contains(&i) && !pre_deleting.contains(&i) {
                new_implicit.remove(&i);
                added += 1;
            }
            i += 1;
        }
    } else if exist > expected {
        // DeleteSequenceGs: opsState weight, then the delete-priority label, then the higher ordinal.
        candidates.sort_by(|(a, ia), (b, ib)| {
            let wa = ops_state_weight(a);
            let wb = ops_state_weight(b);
            if wa != wb {
                return wb.cmp(&wa);
            }
            let da = pods::label(a, OKG_DELETE_PRIORITY).unwrap_or_default();
            let db = pods::label(b, OKG_DELETE_PRIORITY).unwrap_or_default();
            if da != db {
                let pa: i64 = da.parse().unwrap_or(0);
                let pb: i64 = db.parse().unwrap_or(0);
                return pb.cmp(&pa);
            }
            ib.cmp(ia)
        });
        for (_, index) in candidates.iter().take(exist - expected) {
            managed.remove(index);
            new_implicit.insert(*index);
        }
    }
    let reserve = new_implicit.union(spec_ids).copied().collect();
    (managed, reserve)
}

/// `StringToOrdinalIntSet`: `"1,2,5-7"`.
pub fn ordinal_set_of_string(s: &str) -> BTreeSet<i32> {
    let parts: Vec<IntOrString> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| IntOrString::String(p.to_string()))
        .collect();
    crate::kruise::reserved_ordinals(Some(&parts))
}

fn runs(set: &BTreeSet<i32>) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => out.push((i, i)),
        }
    }
    out
}

/// `OrdinalSetToIntStrSlice`: runs of three or more as `"a-b"`.
pub fn ordinal_set_to_int_str(set: &BTreeSet<i32>) -> Option<Vec<IntOrString>> {
    if set.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (a, b) in runs(set) {
        if b - a >= 2 {
            out.push(IntOrString::String(format!("{a}-{b}")));
        } else {
            out.extend((a..=b).map(IntOrString::Int));
        }
    }
    Some(out)
}

/// `OrdinalSetToString`: `"1,2,5-7,10"`.
pub fn ordinal_set_to_string(set: &BTreeSet<i32>) -> String {
    ordinal_set_to_int_str(set)
        .unwrap_or_default()
        .iter()
        .map(|v| match v {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `SyncStatus`: `replicas` from the set's own spec, `currentReplicas` the pods (terminating too), the
/// ready/available/updated counts and the selector from the Advanced StatefulSet, the opsState and
/// `gs-state` counts from the pod labels.
async fn sync_status(
    api: &Api<GameServerSet>,
    gss: &GameServerSet,
    asts: &AdvancedStatefulSet,
    pod_list: &[Arc<Pod>],
) -> Result<(), OkgError> {
    let count = |f: &dyn Fn(&Pod) -> bool| pod_list.iter().filter(|p| f(p)).count();
    let a = asts.status.clone().unwrap_or_default();
    let status = json!({
        "observedGeneration": gss.metadata.generation,
        "replicas": gss.spec.replicas.unwrap_or(0),
        "currentReplicas": pod_list.len(),
        "availableReplicas": a.available_replicas,
        "readyReplicas": a.ready_replicas,
        "updatedReplicas": a.updated_replicas,
        "updatedReadyReplicas": a.updated_ready_replicas,
        "maintainingReplicas": count(&|p| pods::label(p, OKG_OPS_STATE) == Some(ops_state::MAINTAINING)),
        "waitToBeDeletedReplicas": count(&|p| pods::label(p, OKG_OPS_STATE) == Some(ops_state::WAIT_TO_BE_DELETED)),
        "preDeleteReplicas": count(&|p| pods::label(p, OKG_GS_STATE) == Some(gs_state::PRE_DELETE)),
        "labelSelector": a.label_selector,
    });
    let before =
        serde_json::to_value(gss.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let same = status.as_object().into_iter().flatten().all(|(k, v)| {
        before.get(k).unwrap_or(&Value::Null) == v || (v.is_null() && before.get(k).is_none())
    });
    if same {
        return Ok(());
    }
    api.patch_status(
        &gss.name_any(),
        &patch_params(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(api_err(
        "write the status of",
        format!("{}/{}", gss.namespace().unwrap_or_default(), gss.name_any()),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ops: &str, dp: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            OKG_OPS_STATE: ops, OKG_DELETE_PRIORITY: dp}}}))
        .expect("pod")
    }

    fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
        pods.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn scale_down_removes_kill_then_wait_to_be_deleted_then_higher_priority_then_higher_ordinal() {
        let pods = vec![
            pod("s-0", "None", "0"),
            pod("s-1", "WaitToBeDeleted", "0"),
            pod("s-2", "None", "5"),
            pod("s-3", "None", "0"),
            pod("s-4", "Allocated", "9"),
        ];
        let none = BTreeSet::new();
        let (managed, reserved) = compute_to_scale(&none, &none, &none, 2, &arcs(pods), "s");
        assert_eq!(managed, BTreeSet::from([0, 4]));
        assert_eq!(reserved, BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn scale_up_takes_the_lowest_free_ids_and_reserved_ids_format_as_ranges() {
        let pods = vec![pod("s-0", "None", "0"), pod("s-3", "None", "0")];
        let implicit = BTreeSet::from([1, 2]);
        let none = BTreeSet::new();
        let (_, reserved) = compute_to_scale(&none, &none, &implicit, 3, &arcs(pods), "s");
        assert_eq!(reserved, BTreeSet::from([2]));
        let set = BTreeSet::from([1, 2, 5, 6, 7, 10]);
        assert_eq!(ordinal_set_to_string(&set), "1,2,5-7,10");
        assert_eq!(ordinal_set_of_string("1,2,5-7,10"), set);
    }
}
