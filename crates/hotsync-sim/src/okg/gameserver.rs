//! OKG's GameServer controller: one GameServer per pod, its spec mirrored onto the pod's labels (and its
//! image overrides onto the pod's containers), and the pod's state reported back in the GameServer's status.
//!
//! Follows openkruise/kruise-game `pkg/controllers/gameserver/gameserver_controller.go` (`Reconcile`) and
//! `gameserver_manager.go` (`SyncGsToPod`, `SyncPodToGs`, `syncNetworkStatus`, `WaitOrNot`), with
//! `pkg/util/gameserver.go` (`InitGameServer`) and `gameserver_conditions.go` (`getConditions`). Service
//! qualities are not simulated (their probe results come from kruise-daemon). Reads go through OKG's
//! cached client, as upstream's `r.Get`s do (see [`crate::cache`]): a reconcile is only ever run for a
//! pod the cache holds, so upstream's branch for a pod already gone (deleting its GameServer when the
//! GameServer is labelled `gs-deleting`) has no trigger here.

use super::{api_err, patch_params, post_params, OkgError};
use crate::names::{
    gs_state, lifecycle as lc, ops_state, KRUISE_LIFECYCLE_STATE, OKG_DELETE_PRIORITY,
    OKG_GS_STATE, OKG_GS_TEMPLATE_METADATA_HASH, OKG_NETWORK_DISABLED, OKG_NETWORK_STATUS,
    OKG_NETWORK_TRIGGER_TIME, OKG_NETWORK_TYPE, OKG_NODE_NAME, OKG_OPS_STATE,
    OKG_OPS_STATE_LAST_CHANGED, OKG_OWNER_GSS, OKG_STATE_LAST_CHANGED, OKG_UPDATE_PRIORITY,
    OKG_UPDATING_CONTAINERS,
};
use crate::{cache, pods, shutdown_signal, SimError};
use futures::StreamExt as _;
use hotsync_model::{GameServer, GameServerSet, GameServerSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// `NetworkIntervalTime` and `NetworkTotalWaitTime` (pkg/util/env.go defaults).
const NETWORK_INTERVAL: Duration = Duration::from_secs(5);
const NETWORK_TOTAL_WAIT: Duration = Duration::from_secs(60);

struct Ctx {
    client: kube::Client,
    /// OKG's cached client: GameServers, GameServerSets and Nodes as the manager's informers have them.
    game_servers: Store<GameServer>,
    sets: Store<GameServerSet>,
    nodes: Store<Node>,
}

/// Runs the GameServer controller until shutdown. Its reads come from informers (see [`crate::cache`]):
/// the pods it reconciles and the GameServers that trigger it, the sets and nodes it only reads.
pub(crate) async fn run(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let (pods, pod_events) = cache::informer(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(OKG_OWNER_GSS),
    );
    let (game_servers, gs_events) = cache::informer(
        Api::<GameServer>::all(client.clone()),
        watcher::Config::default(),
    );
    let (sets, set_events) = cache::informer(
        Api::<GameServerSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let (nodes, node_events) =
        cache::informer(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        client,
        game_servers: game_servers.clone(),
        sets: sets.clone(),
        nodes: nodes.clone(),
    });
    let controller = async {
        cache::synced(&sets).await;
        cache::synced(&nodes).await;
        Controller::for_stream(pod_events, pods)
            .watches_stream(gs_events, |gs: GameServer| {
                Some(ObjectRef::<Pod>::new(&gs.name_any()).within(&gs.namespace()?))
            })
            .trigger_backoff(hotsync_model::WatchBackoff::default())
            .graceful_shutdown_on(shutdown_signal(shutdown.clone()))
            .run(reconcile, error_policy, ctx)
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "okg gameserver reconcile");
                }
            })
            .await;
    };
    tokio::select! {
        () = controller => {}
        () = cache::drive(set_events) => {}
        () = cache::drive(node_events) => {}
    }
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended {
            task: "okg-gameserver",
        })
    }
}

fn error_policy(_pod: Arc<Pod>, err: &OkgError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "simulated okg gameserver");
    Action::requeue(Duration::from_secs(3))
}

/// `GameServerState` of a pod, as `SyncGsToPod` computes it.
pub fn state_of(pod: &Pod) -> &'static str {
    match pods::phase(pod) {
        "Running" => {
            if pods::is_terminating(pod) {
                return gs_state::DELETING;
            }
            match pods::label(pod, KRUISE_LIFECYCLE_STATE) {
                Some(lc::UPDATING) => return gs_state::UPDATING,
                Some(lc::PREPARING_UPDATE) => return gs_state::PRE_UPDATE,
                Some(lc::PREPARING_DELETE) => return gs_state::PRE_DELETE,
                _ => {}
            }
            match pods::condition_status(pod, "Ready") {
                Some("True") => gs_state::READY,
                Some(_) => gs_state::NOT_READY,
                None => "",
            }
        }
        "Failed" => gs_state::CRASH,
        "Pending" => gs_state::CREATING,
        _ => gs_state::UNKNOWN,
    }
}

fn int_or_string_text(v: Option<&IntOrString>) -> String {
    match v {
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => String::new(),
    }
}

fn parse_time(s: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    s.parse().ok()
}

fn elapsed_since(t: k8s_openapi::jiff::Timestamp) -> Duration {
    Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(t))
        .unwrap_or(Duration::ZERO)
}

/// `GetGsTemplateMetadataHash`.
fn template_metadata_hash(gss: &GameServerSet) -> String {
    let meta = gss
        .spec
        .game_server_template
        .template
        .metadata
        .clone()
        .unwrap_or_default();
    let v = json!({"labels": meta.labels, "annotations": meta.annotations});
    let mut h: u32 = 0x811c_9dc5;
    for b in v.to_string().bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h.to_string()
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, OkgError> {
    let Some(ns) = pod.namespace() else {
        return Ok(Action::await_change());
    };
    let name = pod.name_any();
    let key = format!("{ns}/{name}");
    let gs_api: Api<GameServer> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(owner) = pod.labels().get(OKG_OWNER_GSS).cloned() else {
        return Ok(Action::await_change());
    };
    // The pod, the set and the GameServer as the cache has them (upstream's `r.Get`s).
    let pod = (*pod).clone();
    let Some(gss) = cache::get(&ctx.sets, Some(&ns), &owner) else {
        return Ok(Action::await_change());
    };
    let Some(gs) = cache::get(&ctx.game_servers, Some(&ns), &name) else {
        let gs = init_game_server(&gss, &pod);
        match gs_api.create(&post_params(), &gs).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err("create gameserver", key)(e)),
        }
        return Ok(Action::await_change());
    };
    // A GameServer of an earlier pod of that name waits for garbage collection.
    let owned_by_other_pod = gs
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Pod" && Some(&o.uid) != pod.metadata.uid.as_ref());
    if owned_by_other_pod {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let pod = sync_gs_to_pod(&pods_api, &gss, &gs, pod).await?;
    let wait = sync_pod_to_gs(&ctx, &gs_api, &gss, &gs, &pod).await?;
    Ok(if wait {
        Action::requeue(NETWORK_INTERVAL)
    } else {
        Action::requeue(Duration::from_secs(60))
    })
}

/// `InitGameServer` + `initGameServerByPod`.
fn init_game_server(gss: &GameServerSet, pod: &Pod) -> GameServer {
    let mut gs = GameServer::new(
        &pod.name_any(),
        GameServerSpec {
            ops_state: Some(ops_state::NONE.into()),
            update_priority: Some(IntOrString::Int(0)),
            deletion_priority: Some(IntOrString::Int(0)),
            network_disabled: Some(false),
            ..Default::default()
        },
    );
    gs.metadata.namespace = gss.namespace();
    let tmpl = gss
        .spec
        .game_server_template
        .template
        .metadata
        .clone()
        .unwrap_or_default();
    let mut labels = tmpl.labels.unwrap_or_default();
    labels.insert(OKG_OWNER_GSS.into(), gss.name_any());
    gs.metadata.labels = Some(labels);
    let mut annotations = tmpl.annotations.unwrap_or_default();
    annotations.insert(
        OKG_GS_TEMPLATE_METADATA_HASH.into(),
        template_metadata_hash(gss),
    );
    gs.metadata.annotations = Some(annotations);
    let reclaim = gss
        .spec
        .game_server_template
        .reclaim_policy
        .as_deref()
        .unwrap_or_default();
    gs.metadata.owner_references = Some(vec![if matches!(reclaim, "" | "Cascade") {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    } else {
        OwnerReference {
            api_version: "game.kruise.io/v1alpha1".into(),
            kind: "GameServerSet".into(),
            name: gss.name_any(),
            uid: gss.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }]);
    gs
}

/// `SyncGsToPod`: the GameServer's spec onto the pod (labels, the state label, image overrides), in one
/// strategic merge patch. Returns the pod as the API server answered (or as it was, when nothing changed).
async fn sync_gs_to_pod(
    pods_api: &Api<Pod>,
    gss: &GameServerSet,
    gs: &GameServer,
    pod: Pod,
) -> Result<Pod, OkgError> {
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let now = pods::rfc3339_now();
    let want = |key: &str, value: String, labels: &mut Map<String, Value>| {
        if pods::label(&pod, key) != Some(value.as_str()) {
            labels.insert(key.into(), Value::String(value));
            true
        } else {
            false
        }
    };
    want(
        OKG_DELETE_PRIORITY,
        int_or_string_text(gs.spec.deletion_priority.as_ref()),
        &mut labels,
    );
    want(
        OKG_UPDATE_PRIORITY,
        int_or_string_text(gs.spec.update_priority.as_ref()),
        &mut labels,
    );
    if want(
        OKG_OPS_STATE,
        gs.spec.ops_state.clone().unwrap_or_default(),
        &mut labels,
    ) {
        annotations.insert(
            OKG_OPS_STATE_LAST_CHANGED.into(),
            Value::String(now.clone()),
        );
    }
    want(
        OKG_NETWORK_DISABLED,
        gs.spec.network_disabled.unwrap_or(false).to_string(),
        &mut labels,
    );
    let state = state_of(&pod);
    let old_state = pods::label(&pod, OKG_GS_STATE)
        .unwrap_or_default()
        .to_string();
    if want(OKG_GS_STATE, state.to_string(), &mut labels) && !old_state.is_empty() {
        annotations.insert(OKG_STATE_LAST_CHANGED.into(), Value::String(now.clone()));
    }
    // #317: the containers about to change, while the pod prepares an update.
    match state {
        gs_state::PRE_UPDATE => {
            let template: BTreeMap<String, String> = gss.container_images().into_iter().collect();
            let diff: Vec<String> = pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter(|cs| template.get(&cs.name).is_some_and(|img| *img != cs.image))
                .map(|cs| cs.name.clone())
                .collect();
            let value = diff.join(",");
            if pods::annotation(&pod, OKG_UPDATING_CONTAINERS) != Some(value.as_str()) {
                annotations.insert(OKG_UPDATING_CONTAINERS.into(), Value::String(value));
            }
        }
        gs_state::UPDATING => {}
        _ => {
            if pods::annotation(&pod, OKG_UPDATING_CONTAINERS).is_some() {
                annotations.insert(OKG_UPDATING_CONTAINERS.into(), Value::Null);
            }
        }
    }
    // Re-drive the network plugin (through the pod webhook) while the network settles.
    if pods::annotation(&pod, OKG_NETWORK_TYPE).is_some_and(|t| !t.is_empty()) {
        let trigger = pods::annotation(&pod, OKG_NETWORK_TRIGGER_TIME).and_then(parse_time);
        let since_transition = gs
            .status
            .as_ref()
            .and_then(|s| s.network_status.as_ref())
            .and_then(|n| n.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .and_then(parse_time)
            .map(elapsed_since);
        let refresh = match trigger {
            None => true,
            Some(t) => {
                elapsed_since(t) > NETWORK_INTERVAL
                    && since_transition.is_some_and(|d| d < NETWORK_TOTAL_WAIT)
            }
        };
        if refresh {
            annotations.insert(OKG_NETWORK_TRIGGER_TIME.into(), Value::String(now.clone()));
        }
    }
    // gs-sync/ pass-through of the GameServer's own labels and annotations.
    for (k, v) in gs.labels() {
        if k.starts_with("gs-sync/") && pods::label(&pod, k) != Some(v.as_str()) {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for (k, v) in gs.annotations() {
        if k.starts_with("gs-sync/") && pods::annotation(&pod, k) != Some(v.as_str()) {
            annotations.insert(k.clone(), Value::String(v.clone()));
        }
    }
    // Image overrides (`syncPodContainers`), merged by container name: an in-place image change.
    let containers: Vec<Value> = gs
        .spec
        .containers
        .iter()
        .flatten()
        .filter_map(|o| {
            let image = o.image.as_ref().filter(|i| !i.is_empty())?;
            let pc = pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .find(|c| c.name == o.name)?;
            (pc.image.as_ref() != Some(image)).then(|| json!({"name": o.name, "image": image}))
        })
        .collect();
    if labels.is_empty() && annotations.is_empty() && containers.is_empty() {
        return Ok(pod);
    }
    let mut patch = json!({"metadata": {}});
    if !labels.is_empty() {
        patch["metadata"]["labels"] = Value::Object(labels);
    }
    if !annotations.is_empty() {
        patch["metadata"]["annotations"] = Value::Object(annotations);
    }
    if !containers.is_empty() {
        patch["spec"] = json!({ "containers": containers });
    }
    let name = pod.name_any();
    match pods_api
        .patch(&name, &patch_params(), &Patch::Strategic(patch))
        .await
    {
        Ok(p) => Ok(p),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(pod),
        Err(e) => Err(api_err(
            "sync the gameserver to pod",
            format!("{}/{name}", pod.namespace().unwrap_or_default()),
        )(e)),
    }
}

/// `SyncPodToGs`: the pod's state into the GameServer's metadata and status. Returns `WaitOrNot`.
async fn sync_pod_to_gs(
    ctx: &Ctx,
    gs_api: &Api<GameServer>,
    gss: &GameServerSet,
    gs: &GameServer,
    pod: &Pod,
) -> Result<bool, OkgError> {
    let name = gs.name_any();
    let key = format!("{}/{name}", gs.namespace().unwrap_or_default());
    // Template metadata and the node's name onto the GameServer's metadata.
    let mut labels = gs.labels().clone();
    let mut annotations = gs.annotations().clone();
    let hash = template_metadata_hash(gss);
    if annotations.get(OKG_GS_TEMPLATE_METADATA_HASH) != Some(&hash) {
        let tmpl = gss
            .spec
            .game_server_template
            .template
            .metadata
            .clone()
            .unwrap_or_default();
        labels.extend(tmpl.labels.unwrap_or_default());
        annotations.extend(tmpl.annotations.unwrap_or_default());
        annotations.insert(OKG_GS_TEMPLATE_METADATA_HASH.into(), hash);
    }
    if let Some(node) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
    {
        labels.insert(OKG_NODE_NAME.into(), node);
    }
    if &labels != gs.labels() || &annotations != gs.annotations() {
        gs_api
            .patch(
                &name,
                &patch_params(),
                &Patch::Merge(json!({"metadata": {"labels": labels, "annotations": annotations}})),
            )
            .await
            .map_err(api_err("sync metadata of gameserver", key.clone()))?;
    }
    let old = gs.status.clone().unwrap_or_default();
    let (network, wait) = network_status(pod, old.network_status.as_ref());
    let old_conditions = old
        .conditions
        .as_ref()
        .and_then(|c| serde_json::to_value(c).ok());
    let conditions = conditions(ctx, pod, old_conditions.as_ref());
    let mut status = json!({
        "podStatus": pod.status,
        "currentState": pods::label(pod, OKG_GS_STATE).unwrap_or_default(),
        "desiredState": gs_state::READY,
        "updatePriority": pods::label(pod, OKG_UPDATE_PRIORITY).unwrap_or_default(),
        "deletionPriority": pods::label(pod, OKG_DELETE_PRIORITY).unwrap_or_default(),
        "networkStatus": network,
        "conditions": conditions,
        "lastTransitionTime": old.last_transition_time,
    });
    let mut before = serde_json::to_value(&old).unwrap_or(Value::Null);
    if let Some(b) = before.as_object_mut() {
        b.remove("serviceQualitiesConditions");
    }
    let mut compare = status.clone();
    if let Some(c) = compare.as_object_mut() {
        c.retain(|_, v| !v.is_null());
    }
    if compare != before {
        status["lastTransitionTime"] = json!(pods::rfc3339_now());
        gs_api
            .patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(api_err("write the status of gameserver", key))?;
    }
    Ok(wait)
}

/// `syncNetworkStatus` and `WaitOrNot`: the network status from the pod's annotation, and whether to look
/// again in 5 s (the desired and current network states differ, for at most 60 s).
fn network_status(pod: &Pod, old: Option<&Value>) -> (Value, bool) {
    let Some(network_type) = pods::annotation(pod, OKG_NETWORK_TYPE).filter(|t| !t.is_empty())
    else {
        return (json!({}), false);
    };
    let now = pods::rfc3339_now();
    let mut status = match old {
        Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
        _ => json!({
            "networkType": network_type,
            "desiredNetworkState": "Ready",
            "createTime": now,
            "lastTransitionTime": now,
        }),
    };
    match pods::annotation(pod, OKG_NETWORK_STATUS)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        None => {
            status["currentNetworkState"] = json!("NotReady");
            status["lastTransitionTime"] = json!(now);
        }
        Some(reported) => {
            for k in [
                "internalAddresses",
                "externalAddresses",
                "currentNetworkState",
            ] {
                if let Some(v) = reported.get(k) {
                    status[k] = v.clone();
                }
            }
            let desired = if pods::label(pod, OKG_NETWORK_DISABLED) == Some("true") {
                "NotReady"
            } else {
                "Ready"
            };
            if status.get("desiredNetworkState").and_then(Value::as_str) != Some(desired) {
                status["desiredNetworkState"] = json!(desired);
                status["lastTransitionTime"] = json!(now);
            }
        }
    }
    let differs = status.get("desiredNetworkState") != status.get("currentNetworkState");
    let recent = status
        .get("lastTransitionTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .is_some_and(|t| elapsed_since(t) < NETWORK_TOTAL_WAIT);
    (status, differs && recent)
}

/// `getConditions`: `PodNormal`, `NodeNormal` (when scheduled) and `PersistentVolumeNormal`.
fn conditions(ctx: &Ctx, pod: &Pod, old: Option<&Value>) -> Value {
    let old: Vec<Value> = old.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    let st = pod.status.clone().unwrap_or_default();
    if let Some(r) = st.reason.as_ref().filter(|r| !r.is_empty()) {
        problems.push((r.clone(), st.message.clone().unwrap_or_default()));
    }
    for t in ["PodScheduled", "Initialized", "ContainersReady"] {
        if let Some(c) = pods::condition(pod, t).filter(|c| c.status != "True") {
            problems.push((
                c.reason.clone().unwrap_or_else(|| t.into()),
                c.message.clone().unwrap_or_default(),
            ));
        }
    }
    for cs in st.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            problems.push((
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default(),
            ));
        }
        if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            problems.push((
                format!(
                    "ContainerTerminated:{}",
                    t.reason.clone().unwrap_or_default()
                ),
                format!(
                    "{} ExitCode: {}",
                    t.message.clone().unwrap_or_default(),
                    t.exit_code
                ),
            ));
        }
    }
    out.push(condition(&old, "PodNormal", &problems));
    if let Some(node) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
    {
        let mut node_problems = Vec::new();
        if let Some(n) = cache::get(&ctx.nodes, None, &node) {
            for c in n.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
                let bad = if c.type_ == "Ready" {
                    c.status != "True"
                } else {
                    c.status != "False"
                };
                if bad {
                    node_problems.push((
                        format!("{}:{}", c.type_, c.reason.clone().unwrap_or_default()),
                        c.message.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        out.push(condition(&old, "NodeNormal", &node_problems));
    }
    out.push(condition(&old, "PersistentVolumeNormal", &[]));
    Value::Array(out)
}

fn condition(old: &[Value], type_: &str, problems: &[(String, String)]) -> Value {
    let join = |f: &dyn Fn(&(String, String)) -> &String| {
        let mut parts: Vec<&String> = Vec::new();
        for p in problems {
            let s = f(p);
            if !s.is_empty() && !parts.iter().any(|q| q.contains(s.as_str())) {
                parts.push(s);
            }
        }
        parts
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let status = if problems.is_empty() { "True" } else { "False" };
    let reason = join(&|p| &p.0);
    let message = join(&|p| &p.1);
    let prev = old
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_));
    let same = prev.is_some_and(|p| {
        p.get("status").and_then(Value::as_str) == Some(status)
            && p.get("reason").and_then(Value::as_str).unwrap_or_default() == reason
            && p.get("message").and_then(Value::as_str).unwrap_or_default() == message
    });
    let ltt = match prev {
        Some(p) if same => p.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
        _ => json!(pods::rfc3339_now()),
    };
    let mut c = json!({"type": type_, "status": status, "lastTransitionTime": ltt});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, lifecycle: Option<&str>, ready: Option<&str>, deleting: bool) -> Pod {
        let mut v = json!({"metadata": {"name": "p", "labels": {}}, "status": {"phase": phase}});
        if let Some(l) = lifecycle {
            v["metadata"]["labels"][KRUISE_LIFECYCLE_STATE] = json!(l);
        }
        if let Some(r) = ready {
            v["status"]["conditions"] = json!([{"type": "Ready", "status": r}]);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn the_game_server_state_follows_phase_lifecycle_and_readiness_as_okg_computes_it() {
        assert_eq!(
            state_of(&pod("Running", Some("Updating"), Some("False"), false)),
            "Updating"
        );
        assert_eq!(
            state_of(&pod(
                "Running",
                Some("PreparingUpdate"),
                Some("True"),
                false
            )),
            "PreUpdate"
        );
        assert_eq!(
            state_of(&pod("Running", Some("Updating"), Some("True"), true)),
            "Deleting"
        );
        assert_eq!(
            state_of(&pod("Running", Some("Updated"), Some("True"), false)),
            "Ready"
        );
        assert_eq!(
            state_of(&pod("Running", None, Some("False"), false)),
            "NotReady"
        );
        assert_eq!(state_of(&pod("Running", None, None, false)), "");
        assert_eq!(state_of(&pod("Failed", None, None, false)), "Crash");
        assert_eq!(state_of(&pod("Pending", None, None, true)), "Creating");
        assert_eq!(state_of(&pod("Succeeded", None, None, false)), "Unknown");
    }
}
