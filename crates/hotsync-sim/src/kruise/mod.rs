//! Kruise's Advanced StatefulSet controller (`apps.kruise.io/v1beta1` StatefulSet), simulated from
//! openkruise/kruise as an ordinary API client: it creates and deletes the set's pods, names and keeps
//! revisions, updates pods in place or recreates them, walks the in-place lifecycle, and reports status.
//!
//! One reconcile pass per Advanced StatefulSet follows `pkg/controller/statefulset/stateful_set_control.go`
//! (`UpdateStatefulSet`, `performUpdate`, `updateStatefulSet`, `processReplica`, `rollingUpdateStatefulsetPods`,
//! `refreshPodState`, `inPlaceUpdatePod`) as of Kruise HEAD after v1.9. Each pass reads the set, its pods and
//! revisions straight from the API server, so Kruise's update expectations (which guard its informer
//! cache's lag) have nothing to guard here and are left out. Kruise's defaulting webhook
//! (`SetDefaultsStatefulSet`) is applied when the pass reads the spec, and its pod webhook's
//! `KruisePodReady` readiness gate when it creates a pod. Not simulated: volume claim templates (no
//! provisioner here), specified deletes, image pre-download, vertical scaling, kruise-daemon.

pub mod inplace;
pub mod lifecycle;
pub mod revision;

use crate::names::{
    lifecycle as lc, KRUISE_INPLACE_GRACE, KRUISE_INPLACE_GRACE_OLD, KRUISE_INPLACE_READY,
    KRUISE_INPLACE_STATE_OLD, KRUISE_LIFECYCLE_STATE, KRUISE_LIFECYCLE_TIMESTAMP, KRUISE_POD_INDEX,
    KRUISE_POD_NAME, KRUISE_POD_READY, KRUISE_REASON_START_INPLACE,
    KRUISE_REVISION_HASH_ON_REVISION, KRUISE_REVISION_LABEL,
};
use crate::{pods, shutdown_signal, SimError};
use futures::StreamExt as _;
use hotsync_model::{
    AdvancedStatefulSet, AdvancedStatefulSetSpec, AstsRollingUpdate, Lifecycle, LifecycleHook,
};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodReadinessGate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The field manager of Kruise's writes (its manager's name).
const FIELD_MANAGER: &str = "kruise-manager";

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// A failure of one pass over one set; the set is retried.
#[derive(Debug, thiserror::Error)]
pub enum KruiseError {
    #[error("could not {action} {object}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Upstream's own refusals (`InPlaceOnly` that cannot be done in place, a lifecycle state that allows no update).
    #[error("{0}")]
    Refused(String),
}

impl KruiseError {
    fn is_conflict(&self) -> bool {
        matches!(self, KruiseError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

fn api_err(
    action: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(kube::Error) -> KruiseError {
    let object = object.into();
    move |source| KruiseError::Api {
        action,
        object,
        source,
    }
}

struct Ctx {
    client: kube::Client,
}

/// Runs the controller until shutdown.
pub(crate) async fn run(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    Controller::new(
        Api::<AdvancedStatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .owns(
        Api::<ControllerRevision>::all(client),
        watcher::Config::default(),
    )
    .trigger_backoff(hotsync_model::WatchBackoff::default())
    .graceful_shutdown_on(shutdown_signal(shutdown.clone()))
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "kruise reconcile");
        }
    })
    .await;
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended { task: "kruise" })
    }
}

fn error_policy(_asts: Arc<AdvancedStatefulSet>, err: &KruiseError, _ctx: Arc<Ctx>) -> Action {
    if err.is_conflict() {
        Action::requeue(Duration::from_millis(20))
    } else {
        tracing::warn!(error = %err, "simulated kruise");
        Action::requeue(Duration::from_millis(500))
    }
}

// ---- the spec as Kruise's defaulting webhook leaves it ------------------------------------------------

/// `SetDefaultsStatefulSet` (apis/apps/defaults/v1beta1.go) and, for the template, `SetDefaultPodSpec`'s
/// `imagePullPolicy: Always` ("for in-place update").
pub fn defaulted(spec: &AdvancedStatefulSetSpec) -> AdvancedStatefulSetSpec {
    let mut s = spec.clone();
    s.pod_management_policy
        .get_or_insert_with(|| "OrderedReady".into());
    s.replicas.get_or_insert(1);
    s.revision_history_limit.get_or_insert(10);
    let us = s.update_strategy.get_or_insert_with(Default::default);
    if us.type_.as_deref().unwrap_or_default().is_empty() {
        us.type_ = Some("RollingUpdate".into());
    }
    if us.type_.as_deref() == Some("RollingUpdate") {
        let ru = us.rolling_update.get_or_insert_with(Default::default);
        ru.partition.get_or_insert(0);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
        if ru
            .pod_update_policy
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            ru.pod_update_policy = Some("ReCreate".into());
        }
        ru.min_ready_seconds.get_or_insert(0);
    }
    if let Some(ps) = s.template.spec.as_mut() {
        for c in ps
            .containers
            .iter_mut()
            .chain(ps.init_containers.iter_mut().flatten())
        {
            if c.image_pull_policy
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                c.image_pull_policy = Some("Always".into());
            }
        }
    }
    s
}

fn rolling(spec: &AdvancedStatefulSetSpec) -> Option<&AstsRollingUpdate> {
    spec.update_strategy.as_ref()?.rolling_update.as_ref()
}

fn grace_seconds(spec: &AdvancedStatefulSetSpec) -> i32 {
    rolling(spec)
        .and_then(|r| r.in_place_update_strategy.as_ref())
        .and_then(|s| s.grace_period_seconds)
        .unwrap_or(0)
}

fn lifecycle_of(spec: &AdvancedStatefulSetSpec) -> Option<&Lifecycle> {
    spec.lifecycle.as_ref()
}

fn in_place_hook(spec: &AdvancedStatefulSetSpec) -> Option<&LifecycleHook> {
    lifecycle_of(spec)?.in_place_update.as_ref()
}

fn mark_not_ready(hook: Option<&LifecycleHook>) -> bool {
    hook.and_then(|h| h.mark_pod_not_ready).unwrap_or(false)
}

/// `GetValueFromIntOrPercent(..., roundUp=false)`.
pub fn scaled_value(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<i64>()
                .map(|p| i32::try_from(p * i64::from(total.max(0)) / 100).unwrap_or(i32::MAX))
                .unwrap_or(0),
            None => s.trim().parse().unwrap_or(0),
        },
    }
}

/// `reserveOrdinals`: ints and `a-b` ranges.
pub fn reserved_ordinals(v: Option<&Vec<IntOrString>>) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for id in v.into_iter().flatten() {
        match id {
            IntOrString::Int(i) => {
                out.insert(*i);
            }
            IntOrString::String(s) => {
                let s = s.trim();
                if let Ok(i) = s.parse::<i32>() {
                    out.insert(i);
                } else if let Some((a, b)) = s.split_once('-') {
                    if let (Ok(a), Ok(b)) = (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
                        out.extend(a..=b.min(a.saturating_add(100_000)));
                    }
                }
            }
        }
    }
    out
}

// ---- availability (stateful_set_utils.go) ---------------------------------------------------------------

/// `isHealthy`: lifecycle `""` or `Normal`, running and ready, not terminating.
fn is_healthy(pod: &Pod) -> bool {
    matches!(lifecycle::state(pod), "" | lc::NORMAL)
        && pods::is_running_and_ready(pod)
        && !pods::is_terminating(pod)
}

/// `isRunningAndAvailable` (v1.8+, lifecycle-aware): `(available, wait)`.
fn running_and_available(pod: &Pod, min_ready_seconds: i32) -> (bool, Option<Duration>) {
    if !matches!(lifecycle::state(pod), "" | lc::NORMAL) || !pods::is_running_and_ready(pod) {
        return (false, None);
    }
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let min = Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    let Some(ltt) = pods::condition(pod, "Ready").and_then(|c| c.last_transition_time.as_ref())
    else {
        return (false, Some(min));
    };
    let since = k8s_openapi::jiff::Timestamp::now().duration_since(ltt.0);
    let since = Duration::try_from(since).unwrap_or(Duration::ZERO);
    if since >= min {
        (true, None)
    } else {
        (false, Some(min - since))
    }
}

// ---- ordering (stateful_update_utils.go, pkg/util/updatesort, pkg/util/revision) ------------------------

/// `revision.IsPodUpdate`: the label is the update revision, or ends in the same hash.
fn is_pod_update(pod: &Pod, update_revision: &str) -> bool {
    let Some(label) = pods::label(pod, KRUISE_REVISION_LABEL) else {
        return false;
    };
    label == update_revision
        || (label.rsplit_once('-').map(|x| x.1) == update_revision.rsplit_once('-').map(|x| x.1)
            && label.contains('-'))
}

/// `getIntFromStringSuffix`: the trailing digits of a label value, 0 when there are none.
fn int_suffix(s: &str) -> i64 {
    let digits: String = s
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    pod: &Pod,
) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let have = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

/// `sortPodsToUpdate`: the slots (indexes into `replicas`) to update, in order.
fn sort_pods_to_update(
    ru: Option<&AstsRollingUpdate>,
    update_revision: &str,
    total: i32,
    replicas: &[Option<Pod>],
) -> Vec<usize> {
    let partition = ru.and_then(|r| r.partition).unwrap_or(0);
    let max_update = usize::try_from(total - partition).unwrap_or(0);
    if max_update == 0 {
        return Vec::new();
    }
    let Some(unordered) = ru.and_then(|r| r.unordered_update.as_ref()) else {
        let update_min = usize::try_from(partition.max(0)).unwrap_or(0);
        let mut out = Vec::new();
        for target in (0..replicas.len()).rev() {
            if target < update_min || out.len() >= max_update {
                break;
            }
            if replicas[target].is_some() {
                out.push(target);
            }
        }
        return out;
    };
    let mut updated = Vec::new();
    let mut waiting = Vec::new();
    for target in (0..replicas.len()).rev() {
        let Some(pod) = &replicas[target] else {
            continue;
        };
        if pods::is_terminating(pod) || is_pod_update(pod, update_revision) {
            updated.push(target);
        } else {
            waiting.push(target);
        }
    }
    if let Some(ps) = &unordered.priority_strategy {
        let key = |i: &usize| -> (i64, i64) {
            let Some(pod) = &replicas[*i] else {
                return (0, 0);
            };
            if let Some(weights) = &ps.weight_priority {
                let w: i64 = weights
                    .iter()
                    .filter(|t| selector_matches(&t.match_selector, pod))
                    .map(|t| i64::from(t.weight))
                    .sum();
                // Higher weight first.
                return (-w, 0);
            }
            for (level, term) in ps.order_priority.iter().flatten().enumerate() {
                if let Some(v) = pods::label(pod, &term.ordered_key) {
                    // Lower level first, then higher order first.
                    return (i64::try_from(level).unwrap_or(i64::MAX), -int_suffix(v));
                }
            }
            (-1, 0)
        };
        waiting.sort_by_key(key);
    }
    updated.extend(waiting);
    updated.truncate(max_update);
    updated
}

// ---- revisions (getStatefulSetRevisions, truncateHistory) ------------------------------------------------

struct Revisions {
    current: ControllerRevision,
    update: ControllerRevision,
    collision_count: i32,
    all: Vec<ControllerRevision>,
}

fn revision_bytes(r: &ControllerRevision) -> Vec<u8> {
    // Go compares the stored bytes; what the API server gives back re-encodes to the same canonical form.
    r.data
        .as_ref()
        .and_then(|d| revision::template_of(&d.0))
        .map(|t| revision::patch(&t))
        .unwrap_or_default()
}

fn owner_ref(asts: &AdvancedStatefulSet) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "apps.kruise.io/v1beta1".into(),
        kind: "StatefulSet".into(),
        name: asts.metadata.name.clone()?,
        uid: asts.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

// ---- the pass ---------------------------------------------------------------------------------------------

struct Pass<'a> {
    ctx: &'a Ctx,
    ns: String,
    name: String,
    asts: &'a AdvancedStatefulSet,
    spec: AdvancedStatefulSetSpec,
    pods: Api<Pod>,
    /// The shortest wait a step asked for (a grace period, minReadySeconds).
    requeue: Option<Duration>,
}

async fn reconcile(asts: Arc<AdvancedStatefulSet>, ctx: Arc<Ctx>) -> Result<Action, KruiseError> {
    if asts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(ns) = asts.namespace() else {
        return Ok(Action::await_change());
    };
    let mut pass = Pass {
        ctx: &ctx,
        pods: Api::namespaced(ctx.client.clone(), &ns),
        name: asts.name_any(),
        ns,
        spec: defaulted(&asts.spec),
        asts: &asts,
        requeue: None,
    };
    pass.run().await?;
    Ok(match pass.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(50))),
        None => Action::requeue(Duration::from_secs(30)),
    })
}

impl Pass<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn want_requeue(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn template(&self) -> PodTemplateSpec {
        self.spec.template.clone()
    }

    async fn run(&mut self) -> Result<(), KruiseError> {
        let uid = self.asts.metadata.uid.clone().unwrap_or_default();
        let selector = self
            .spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        let label_selector = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let lp = ListParams::default().labels(&label_selector);
        let all_pods: Vec<Pod> = self
            .pods
            .list(&lp)
            .await
            .map_err(api_err("list pods of", self.key()))?
            .items
            .into_iter()
            .filter(|p| controlled_by(&p.metadata, &uid))
            .collect();
        let revs = self.revisions(&lp, &uid).await?;

        let replicas_n = self.spec.replicas.unwrap_or(1).max(0);
        let reserved = reserved_ordinals(self.spec.reserve_ordinals.as_ref());
        // getStatefulSetReplicasRange: ordinals from 0 until `replicas` non-reserved ones are covered.
        let mut desired: Vec<i32> = Vec::new();
        let mut o = 0;
        while i32::try_from(desired.len()).unwrap_or(i32::MAX) < replicas_n {
            if !reserved.contains(&o) {
                desired.push(o);
            }
            o += 1;
        }
        let end = o;
        let mut by_ordinal: BTreeMap<i32, Pod> = BTreeMap::new();
        let mut condemned: Vec<Pod> = Vec::new();
        for p in &all_pods {
            match pods::ordinal(pods::name(p), &self.name) {
                Some(ord) if ord < end && !reserved.contains(&ord) => {
                    by_ordinal.insert(ord, p.clone());
                }
                Some(_) => condemned.push(p.clone()),
                None => {}
            }
        }
        // `replicas[]`: one slot per ordinal up to `end`, reserved slots empty.
        let slots: Vec<Option<i32>> = (0..end)
            .map(|o| (!reserved.contains(&o)).then_some(o))
            .collect();
        let monotonic = self.spec.pod_management_policy.as_deref() != Some("Parallel");
        let update_name = revs.update.metadata.name.clone().unwrap_or_default();
        let current_name = revs.current.metadata.name.clone().unwrap_or_default();

        // processReplica, for every slot.
        let mut refreshed_any = false;
        let mut refreshed_uids: BTreeSet<String> = BTreeSet::new();
        let mut stop = false;
        let min_ready = rolling(&self.spec)
            .and_then(|r| r.min_ready_seconds)
            .unwrap_or(0);
        for (idx, slot) in slots.iter().enumerate() {
            let Some(ord) = slot else { continue };
            match by_ordinal.get(ord) {
                None => {
                    self.create_pod(&revs, *ord, idx, &slots, &by_ordinal)
                        .await?;
                    if monotonic {
                        stop = true;
                        break;
                    }
                }
                Some(pod) if matches!(pods::phase(pod), "Failed" | "Succeeded") => {
                    if !pods::is_terminating(pod) {
                        self.delete_pod(pod).await?;
                    }
                    if monotonic {
                        stop = true;
                        break;
                    }
                }
                Some(pod) if pods::is_terminating(pod) => {
                    if monotonic {
                        stop = true;
                        break;
                    }
                }
                Some(pod) => {
                    refreshed_any |= self.refresh_pod_state(pod, &update_name).await?;
                    refreshed_uids.insert(pod.metadata.uid.clone().unwrap_or_default());
                    if monotonic && !running_and_available(pod, min_ready).0 {
                        stop = true;
                        break;
                    }
                }
            }
        }
        // Condemned pods, highest ordinal first.
        if !stop {
            condemned.sort_by_key(|p| std::cmp::Reverse(pods::ordinal(pods::name(p), &self.name)));
            for pod in &condemned {
                if pods::is_terminating(pod) {
                    if monotonic {
                        break;
                    }
                    continue;
                }
                self.delete_pod(pod).await?;
                if monotonic {
                    break;
                }
            }
        }
        let mut current_adjust = 0;
        let on_delete = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        if !stop && !on_delete {
            current_adjust = self
                .rolling_update(
                    &revs,
                    &all_pods,
                    &slots,
                    &by_ordinal,
                    &refreshed_uids,
                    refreshed_any,
                    &update_name,
                    &current_name,
                )
                .await?;
        }
        self.write_status(&revs, &label_selector, current_adjust)
            .await?;
        self.truncate_history(&revs, &current_name, &update_name)
            .await?;
        Ok(())
    }

    /// `getStatefulSetRevisions`: the current and update revisions, created or reused.
    async fn revisions(&mut self, lp: &ListParams, uid: &str) -> Result<Revisions, KruiseError> {
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let mut all: Vec<ControllerRevision> = api
            .list(lp)
            .await
            .map_err(api_err("list revisions of", self.key()))?
            .items
            .into_iter()
            .filter(|r| r.metadata.owner_references.is_none() || controlled_by(&r.metadata, uid))
            .collect();
        all.sort_by(|a, b| {
            (
                a.revision,
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &a.metadata.name,
            )
                .cmp(&(
                    b.revision,
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    &b.metadata.name,
                ))
        });
        let status = self.asts.status.clone().unwrap_or_default();
        let mut collision = status.collision_count.unwrap_or(0);
        let data = revision::patch(&self.template());
        let next = all.last().map_or(1, |r| r.revision + 1);
        let equal: Vec<&ControllerRevision> =
            all.iter().filter(|r| revision_bytes(r) == data).collect();
        let update = if let Some(last_equal) = equal.last().copied() {
            if all.last().map(|r| &r.metadata.name) == Some(&last_equal.metadata.name) {
                last_equal.clone()
            } else {
                // A rollback to an older template: that revision moves to the front.
                let name = last_equal.metadata.name.clone().unwrap_or_default();
                api.patch(
                    &name,
                    &patch_params(),
                    &Patch::Merge(json!({"revision": next})),
                )
                .await
                .map_err(api_err("update revision", format!("{}/{name}", self.ns)))?
            }
        } else {
            let mut labels = self
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let hash0 = revision::hash(&data, collision);
            labels.insert(KRUISE_REVISION_HASH_ON_REVISION.into(), hash0);
            let data_value: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            loop {
                let name = revision::name(&self.name, &revision::hash(&data, collision));
                let cr = ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.ns.clone()),
                        labels: Some(labels.clone()),
                        annotations: self.asts.metadata.annotations.clone(),
                        owner_references: owner_ref(self.asts).map(|o| vec![o]),
                        ..Default::default()
                    },
                    data: Some(RawExtension(data_value.clone())),
                    revision: next,
                };
                match api.create(&post_params(), &cr).await {
                    Ok(created) => break created,
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = api
                            .get(&name)
                            .await
                            .map_err(api_err("read revision", format!("{}/{name}", self.ns)))?;
                        if revision_bytes(&existing) == data {
                            break existing;
                        }
                        collision += 1;
                    }
                    Err(e) => {
                        return Err(api_err("create revision", format!("{}/{name}", self.ns))(e))
                    }
                }
            }
        };
        let current = status
            .current_revision
            .as_ref()
            .and_then(|c| all.iter().find(|r| r.metadata.name.as_ref() == Some(c)))
            .cloned()
            .unwrap_or_else(|| update.clone());
        if !all.iter().any(|r| r.metadata.name == update.metadata.name) {
            all.push(update.clone());
        }
        Ok(Revisions {
            current,
            update,
            collision_count: collision,
            all,
        })
    }

    /// `newVersionedStatefulSetPod`, then `CreateStatefulPod`: a pod of the current or the update revision.
    async fn create_pod(
        &mut self,
        revs: &Revisions,
        ord: i32,
        idx: usize,
        slots: &[Option<i32>],
        by_ordinal: &BTreeMap<i32, Pod>,
    ) -> Result<(), KruiseError> {
        let update_name = revs.update.metadata.name.clone().unwrap_or_default();
        let ru = rolling(&self.spec);
        let partition = ru.and_then(|r| r.partition).unwrap_or(0);
        let rolling_update = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("RollingUpdate");
        // isCurrentRevisionNeeded
        let current_needed = rolling_update
            && if ru.and_then(|r| r.unordered_update.as_ref()).is_some() {
                let not_updated = by_ordinal
                    .iter()
                    .filter(|(o, p)| **o != ord && !is_pod_update(p, &update_name))
                    .count();
                i32::try_from(not_updated).unwrap_or(i32::MAX) < partition
            } else {
                let before = slots[..idx].iter().filter(|s| s.is_some()).count();
                i32::try_from(before).unwrap_or(i32::MAX) < partition
            };
        let rev = if current_needed {
            &revs.current
        } else {
            &revs.update
        };
        let template = rev
            .data
            .as_ref()
            .and_then(|d| revision::template_of(&d.0))
            .unwrap_or_else(|| self.template());
        let name = format!("{}-{ord}", self.name);
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(KRUISE_POD_NAME.into(), name.clone());
        labels.insert(KRUISE_POD_INDEX.into(), ord.to_string());
        labels.insert(
            KRUISE_REVISION_LABEL.into(),
            rev.metadata.name.clone().unwrap_or_default(),
        );
        let pre_normal = lifecycle_of(&self.spec).and_then(|l| l.pre_normal.as_ref());
        let mut probe = Pod::default();
        probe.metadata.labels = Some(labels.clone());
        probe.metadata.finalizers = meta.finalizers.clone();
        let state = if pre_normal.is_some() && !lifecycle::is_all_hooked(pre_normal, &probe) {
            lc::PREPARING_NORMAL
        } else {
            lc::NORMAL
        };
        labels.insert(KRUISE_LIFECYCLE_STATE.into(), state.into());
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert(KRUISE_LIFECYCLE_TIMESTAMP.into(), pods::rfc3339_now());
        let mut spec = template.spec.unwrap_or_default();
        spec.hostname = Some(name.clone());
        if let Some(svc) = self.spec.service_name.clone().filter(|s| !s.is_empty()) {
            spec.subdomain = Some(svc);
        }
        // Kruise's pod webhook (pod_readiness.go injectPodReadinessGate) on every pod it owns.
        let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
        if !gates.iter().any(|g| g.condition_type == KRUISE_POD_READY) {
            gates.push(PodReadinessGate {
                condition_type: KRUISE_POD_READY.into(),
            });
        }
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                finalizers: meta.finalizers,
                owner_references: owner_ref(self.asts).map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        };
        match self.pods.create(&post_params(), &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_err("create pod", format!("{}/{name}", self.ns))(e)),
        }
    }

    /// `deletePod`: a pod hooked by `lifecycle.preDelete` moves to `PreparingDelete` instead of going.
    /// Returns whether it was deleted.
    async fn delete_pod(&mut self, pod: &Pod) -> Result<bool, KruiseError> {
        let pre_delete = lifecycle_of(&self.spec).and_then(|l| l.pre_delete.clone());
        if lifecycle::is_hooked(pre_delete.as_ref(), pod) {
            if lifecycle::state(pod) != lc::PREPARING_DELETE {
                self.set_lifecycle(
                    pod,
                    lc::PREPARING_DELETE,
                    None,
                    mark_not_ready(pre_delete.as_ref()),
                )
                .await?;
            }
            return Ok(false);
        }
        let name = pods::name(pod).to_string();
        let dp = DeleteParams {
            preconditions: pod
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..Default::default()
        };
        match self.pods.delete(&name, &dp).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(api_err("delete pod", format!("{}/{name}", self.ns))(e)),
        }
    }

    /// `UpdatePodLifecycle` / `UpdatePodLifecycleWithHandler`, with `markPodNotReady`'s KruisePodReady keys.
    async fn set_lifecycle(
        &mut self,
        pod: &Pod,
        state: &str,
        handler: Option<&LifecycleHook>,
        mark_pod_not_ready: bool,
    ) -> Result<(), KruiseError> {
        let name = pods::name(pod).to_string();
        if mark_pod_not_ready {
            let key = match state {
                lc::PREPARING_DELETE => Some(("preDeleteHook", true)),
                lc::PREPARING_UPDATE => Some(("preUpdateHook", true)),
                lc::UPDATED => Some(("preUpdateHook", false)),
                _ => None,
            };
            if let Some((key, add)) = key {
                self.kruise_pod_ready_key(&name, key, add).await?;
            }
        }
        self.pods
            .patch(
                &name,
                &patch_params(),
                &Patch::Strategic(lifecycle::patch(state, handler)),
            )
            .await
            .map_err(api_err(
                "set the lifecycle of pod",
                format!("{}/{name}", self.ns),
            ))?;
        Ok(())
    }

    /// `pkg/util/podreadiness`: adds or removes a "not ready key" in the `KruisePodReady` condition.
    async fn kruise_pod_ready_key(
        &mut self,
        name: &str,
        key: &str,
        add: bool,
    ) -> Result<(), KruiseError> {
        self.update_pod_status(name, |pod| {
            if !pods::has_readiness_gate(pod, KRUISE_POD_READY) {
                return false;
            }
            let mut keys: Vec<Value> = pods::condition(pod, KRUISE_POD_READY)
                .and_then(|c| c.message.as_deref())
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default();
            let entry = json!({"userAgent": "Lifecycle", "key": key});
            let had = keys.contains(&entry);
            if add == had {
                return false;
            }
            if add {
                keys.push(entry);
            } else {
                keys.retain(|k| k != &entry);
            }
            let status = if keys.is_empty() { "True" } else { "False" };
            pods::set_condition(
                pod,
                PodCondition {
                    type_: KRUISE_POD_READY.into(),
                    status: status.into(),
                    message: (!keys.is_empty()).then(|| Value::Array(keys).to_string()),
                    last_transition_time: Some(pods::now()),
                    ..Default::default()
                },
            );
            if !add {
                return true;
            }
            set_ready_false(pod);
            true
        })
        .await
    }

    /// A status update with conflict retries (GET, change, PUT /status), as `updateCondition` does.
    async fn update_pod_status(
        &mut self,
        name: &str,
        mut change: impl FnMut(&mut Pod) -> bool,
    ) -> Result<(), KruiseError> {
        for _ in 0..10 {
            let Some(mut pod) = self
                .pods
                .get_opt(name)
                .await
                .map_err(api_err("read pod", format!("{}/{name}", self.ns)))?
            else {
                return Ok(());
            };
            if !change(&mut pod) {
                return Ok(());
            }
            match self.pods.replace_status(name, &post_params(), &pod).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(api_err(
                        "write the status of pod",
                        format!("{}/{name}", self.ns),
                    )(e))
                }
            }
        }
        Err(KruiseError::Refused(format!(
            "pod {}/{name}: status update kept conflicting",
            self.ns
        )))
    }

    /// A full pod update with conflict retries (GET, change, PUT), as `updatePodInPlace` does.
    async fn update_pod(
        &mut self,
        name: &str,
        mut change: impl FnMut(&mut Pod) -> bool,
    ) -> Result<(), KruiseError> {
        for _ in 0..10 {
            let Some(mut pod) = self
                .pods
                .get_opt(name)
                .await
                .map_err(api_err("read pod", format!("{}/{name}", self.ns)))?
            else {
                return Ok(());
            };
            if !change(&mut pod) {
                return Ok(());
            }
            match self.pods.replace(name, &post_params(), &pod).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(api_err("update pod", format!("{}/{name}", self.ns))(e)),
            }
        }
        Err(KruiseError::Refused(format!(
            "pod {}/{name}: update kept conflicting",
            self.ns
        )))
    }

    /// `refreshPodState`: `inplaceupdate.Refresh`, then the lifecycle step the pod's state allows. Returns
    /// whether a lifecycle state was written.
    async fn refresh_pod_state(
        &mut self,
        pod: &Pod,
        update_revision: &str,
    ) -> Result<bool, KruiseError> {
        self.inplace_refresh(pod).await?;
        let lifecycle = lifecycle_of(&self.spec).cloned();
        let hook = lifecycle.as_ref().and_then(|l| l.in_place_update.clone());
        let target = match lifecycle::state(pod) {
            lc::PREPARING_NORMAL => {
                let pre_normal = lifecycle.as_ref().and_then(|l| l.pre_normal.as_ref());
                (lifecycle.is_none()
                    || pre_normal.is_none()
                    || lifecycle::is_all_hooked(pre_normal, pod))
                .then_some(lc::NORMAL)
            }
            lc::PREPARING_UPDATE => {
                // A rollback while it waited (kruise#1156).
                (pods::label(pod, KRUISE_REVISION_LABEL) == Some(update_revision)).then(|| {
                    if lifecycle.is_some() && !lifecycle::is_all_hooked(hook.as_ref(), pod) {
                        lc::UPDATED
                    } else {
                        lc::NORMAL
                    }
                })
            }
            lc::UPDATING => inplace::check_pod_completed(pod).is_ok().then(|| {
                if lifecycle.is_some() && !lifecycle::is_all_hooked(hook.as_ref(), pod) {
                    lc::UPDATED
                } else {
                    lc::NORMAL
                }
            }),
            lc::UPDATED => (lifecycle.is_none()
                || hook.is_none()
                || lifecycle::is_all_hooked(hook.as_ref(), pod))
            .then_some(lc::NORMAL),
            _ => None,
        };
        match target {
            Some(state) => {
                self.set_lifecycle(pod, state, None, mark_not_ready(hook.as_ref()))
                    .await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `inplaceupdate.Refresh`: finishes a grace period, and sets `InPlaceUpdateReady` True once the
    /// completion check of the state annotation (any, even a stale one: no revision is compared) passes.
    /// Also Kruise's pod-readiness controller: `KruisePodReady` True where the gate has no condition yet.
    async fn inplace_refresh(&mut self, pod: &Pod) -> Result<(), KruiseError> {
        let name = pods::name(pod).to_string();
        if pods::has_readiness_gate(pod, KRUISE_POD_READY)
            && pods::condition(pod, KRUISE_POD_READY).is_none()
        {
            self.update_pod_status(&name, |p| {
                if pods::condition(p, KRUISE_POD_READY).is_some() {
                    return false;
                }
                pods::set_condition(
                    p,
                    PodCondition {
                        type_: KRUISE_POD_READY.into(),
                        status: "True".into(),
                        last_transition_time: Some(pods::now()),
                        ..Default::default()
                    },
                );
                true
            })
            .await?;
        }
        if let Some(grace) = inplace::grace_of(pod) {
            return self.finish_grace_period(pod, grace.to_string()).await;
        }
        match inplace::state_of(pod) {
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "refresh");
                return Ok(());
            }
            Ok(Some(state)) => {
                if inplace::check_containers_completed(pod, &state).is_err() {
                    return Ok(());
                }
                if !state.next_container_images.is_empty()
                    || !state.next_container_ref_metadata.is_empty()
                {
                    return Ok(());
                }
            }
            Ok(None) => {}
        }
        if !pods::has_readiness_gate(pod, KRUISE_INPLACE_READY) {
            return Ok(());
        }
        if let Some(c) = pods::condition(pod, KRUISE_INPLACE_READY) {
            if c.status == "True" && c.reason.is_none() && c.message.is_none() {
                return Ok(());
            }
        }
        // HEAD's `updateCondition` (PR #2274): the pod the check was made on, no GET and no retry, so a
        // pod changed since it was read is not overwritten (the write conflicts; the next pass looks again).
        let mut p = pod.clone();
        pods::set_condition(
            &mut p,
            PodCondition {
                type_: KRUISE_INPLACE_READY.into(),
                status: "True".into(),
                last_transition_time: Some(pods::now()),
                ..Default::default()
            },
        );
        match self.pods.replace_status(&name, &post_params(), &p).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                self.want_requeue(Duration::from_millis(50));
                Ok(())
            }
            Err(e) => Err(api_err(
                "write the status of pod",
                format!("{}/{name}", self.ns),
            )(e)),
        }
    }

    /// `finishGracePeriod`: once `graceSeconds` have passed since the update began, the images and
    /// metadata go onto the pod; a grace whose revision the pod no longer has is dropped.
    async fn finish_grace_period(&mut self, pod: &Pod, grace: String) -> Result<(), KruiseError> {
        let Ok(spec) = serde_json::from_str::<inplace::UpdateSpec>(&grace) else {
            return Ok(());
        };
        let state = match inplace::state_of(pod) {
            Ok(Some(s)) => s,
            _ => return Ok(()),
        };
        let name = pods::name(pod).to_string();
        if pods::label(pod, KRUISE_REVISION_LABEL) != Some(spec.revision.as_str()) {
            return self
                .update_pod(&name, |p| {
                    let a = p.metadata.annotations.get_or_insert_with(Default::default);
                    a.remove(KRUISE_INPLACE_GRACE).is_some()
                        | a.remove(KRUISE_INPLACE_GRACE_OLD).is_some()
                })
                .await;
        }
        let started: k8s_openapi::jiff::Timestamp = state
            .update_timestamp
            .parse()
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
        let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(started);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        let grace_for = Duration::from_secs(u64::try_from(spec.grace_seconds.max(0)).unwrap_or(0));
        if elapsed < grace_for {
            let left = grace_for - elapsed;
            // roundupSeconds
            self.want_requeue(Duration::from_secs(
                left.as_secs() + u64::from(left.subsec_nanos() > 0),
            ));
            return Ok(());
        }
        self.update_pod(&name, |p| {
            if inplace::grace_of(p).is_none() {
                return false;
            }
            let mut st = match inplace::state_of(p) {
                Ok(Some(s)) => s,
                _ => return false,
            };
            inplace::patch_spec_to_pod(p, &spec, &mut st);
            let a = p.metadata.annotations.get_or_insert_with(Default::default);
            a.remove(KRUISE_INPLACE_GRACE);
            a.remove(KRUISE_INPLACE_GRACE_OLD);
            true
        })
        .await
    }

    /// `rollingUpdateStatefulsetPods`. Returns the change of `currentReplicas` it makes in this pass.
    #[allow(clippy::too_many_arguments)]
    async fn rolling_update(
        &mut self,
        revs: &Revisions,
        all_pods: &[Pod],
        slots: &[Option<i32>],
        by_ordinal: &BTreeMap<i32, Pod>,
        refreshed_uids: &BTreeSet<String>,
        refreshed_any: bool,
        update_name: &str,
        current_name: &str,
    ) -> Result<i32, KruiseError> {
        // The refresh loop covers every pod of the set, even while paused. Those processReplica refreshed
        // in this pass are not refreshed twice from the same read (upstream's second refresh of a cached
        // pod repeats the same writes).
        let mut refreshed = refreshed_any;
        for pod in all_pods {
            if !refreshed_uids.contains(pod.metadata.uid.as_deref().unwrap_or_default()) {
                refreshed |= self.refresh_pod_state(pod, update_name).await?;
            }
        }
        if refreshed {
            return Ok(0);
        }
        let ru = rolling(&self.spec).cloned();
        if ru.as_ref().and_then(|r| r.paused) == Some(true) {
            return Ok(0);
        }
        let total = self.spec.replicas.unwrap_or(1);
        let max_unavailable = ru
            .as_ref()
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |v| scaled_value(v, total))
            .max(1);
        let min_ready = ru.as_ref().and_then(|r| r.min_ready_seconds).unwrap_or(0);
        let replicas: Vec<Option<Pod>> = slots
            .iter()
            .map(|s| s.and_then(|o| by_ordinal.get(&o).cloned()))
            .collect();
        let mut unavailable: BTreeSet<String> = BTreeSet::new();
        for pod in replicas.iter().flatten() {
            let n = pods::name(pod).to_string();
            if !is_healthy(pod) || inplace::check_pod_completed(pod).is_err() {
                unavailable.insert(n);
                continue;
            }
            let (available, wait) = running_and_available(pod, min_ready);
            if let Some(w) = wait {
                self.want_requeue(w);
            }
            if !available {
                unavailable.insert(n);
            }
        }
        let order = sort_pods_to_update(ru.as_ref(), update_name, total, &replicas);
        let mut current_adjust = 0;
        for target in order {
            let Some(pod) = replicas[target].clone() else {
                continue;
            };
            let name = pods::name(&pod).to_string();
            if pods::label(&pod, KRUISE_REVISION_LABEL) == Some(update_name) {
                continue;
            }
            if i32::try_from(unavailable.len()).unwrap_or(i32::MAX) >= max_unavailable
                && !unavailable.contains(&name)
            {
                return Ok(current_adjust);
            }
            if !pods::is_terminating(&pod) {
                let in_place = self.in_place_update_pod(&pod, revs).await?;
                let acted = if in_place {
                    true
                } else {
                    self.delete_pod(&pod).await?
                };
                unavailable.insert(name);
                if acted && pods::label(&pod, KRUISE_REVISION_LABEL) == Some(current_name) {
                    current_adjust -= 1;
                }
            }
        }
        Ok(current_adjust)
    }

    /// `inPlaceUpdatePod`: true when the pod is (being) updated in place, false when it must be recreated.
    async fn in_place_update_pod(
        &mut self,
        pod: &Pod,
        revs: &Revisions,
    ) -> Result<bool, KruiseError> {
        let policy = rolling(&self.spec)
            .and_then(|r| r.pod_update_policy.clone())
            .unwrap_or_default();
        if !matches!(policy.as_str(), "InPlaceIfPossible" | "InPlaceOnly") {
            return Ok(false);
        }
        let name = pods::name(pod).to_string();
        let update_name = revs.update.metadata.name.clone().unwrap_or_default();
        let old = pods::label(pod, KRUISE_REVISION_LABEL).and_then(|l| {
            revs.all
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(l))
        });
        let spec = match (old.and_then(|r| r.data.as_ref()), revs.update.data.as_ref()) {
            (Some(o), Some(n)) => {
                inplace::calculate_spec(&o.0, &n.0, &update_name, grace_seconds(&self.spec))
            }
            _ => None,
        };
        let Some(spec) = spec else {
            if policy == "InPlaceOnly" {
                return Err(KruiseError::Refused(format!(
                    "find strategy is InPlaceOnly but Pod {name} can not update in-place"
                )));
            }
            return Ok(false);
        };
        let hook = in_place_hook(&self.spec).cloned();
        let state = lifecycle::state(pod).to_string();
        match state.as_str() {
            "" | lc::PREPARING_NORMAL | lc::NORMAL => {
                if hook.is_some() && lifecycle::is_hooked(hook.as_ref(), pod) {
                    self.set_lifecycle(
                        pod,
                        lc::PREPARING_UPDATE,
                        None,
                        mark_not_ready(hook.as_ref()),
                    )
                    .await?;
                    return Ok(true);
                }
            }
            lc::UPDATED => {
                if let Some(h) = &hook {
                    self.set_lifecycle(pod, lc::PREPARING_UPDATE, Some(h), mark_not_ready(Some(h)))
                        .await?;
                }
                return Ok(true);
            }
            lc::PREPARING_UPDATE => {
                if lifecycle::is_hooked(hook.as_ref(), pod) {
                    return Ok(true);
                }
            }
            lc::UPDATING => {}
            other => {
                return Err(KruiseError::Refused(format!(
                    "not allowed to in-place update pod {name} in state {other}"
                )))
            }
        }
        // Update: InPlaceUpdateReady False first (a status write), then the pod itself.
        if pods::has_readiness_gate(pod, KRUISE_INPLACE_READY) {
            self.update_pod_status(&name, |p| {
                pods::set_condition(
                    p,
                    PodCondition {
                        type_: KRUISE_INPLACE_READY.into(),
                        status: "False".into(),
                        reason: Some(KRUISE_REASON_START_INPLACE.into()),
                        last_transition_time: Some(pods::now()),
                        ..Default::default()
                    },
                );
                set_ready_false(p);
                true
            })
            .await?;
        }
        let set_updating = !state.is_empty();
        self.update_pod(&name, |p| {
            let labels = p.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(KRUISE_REVISION_LABEL.into(), spec.revision.clone());
            if set_updating {
                labels.insert(KRUISE_LIFECYCLE_STATE.into(), lc::UPDATING.into());
                p.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(KRUISE_LIFECYCLE_TIMESTAMP.into(), pods::rfc3339_now());
            }
            let mut st = inplace::State {
                revision: spec.revision.clone(),
                update_timestamp: pods::rfc3339_now(),
                update_env_from_metadata: spec.update_env_from_metadata,
                update_images: !spec.container_images.is_empty(),
                ..Default::default()
            };
            let a = p.metadata.annotations.get_or_insert_with(Default::default);
            a.remove(KRUISE_INPLACE_STATE_OLD);
            if spec.grace_seconds <= 0 {
                a.remove(KRUISE_INPLACE_GRACE);
                a.remove(KRUISE_INPLACE_GRACE_OLD);
                inplace::patch_spec_to_pod(p, &spec, &mut st);
            } else {
                a.insert(
                    KRUISE_INPLACE_GRACE.into(),
                    serde_json::to_string(&spec).unwrap_or_default(),
                );
                inplace::write_state(p, &st);
            }
            true
        })
        .await?;
        if spec.grace_seconds > 0 {
            self.want_requeue(Duration::from_secs(
                u64::try_from(spec.grace_seconds).unwrap_or(0),
            ));
        }
        Ok(true)
    }

    /// `updateStatefulSetStatus`: the status as `computeReplicaStatus` counts it, written only when
    /// `inconsistentStatus` says so.
    async fn write_status(
        &mut self,
        revs: &Revisions,
        selector: &str,
        current_adjust: i32,
    ) -> Result<(), KruiseError> {
        let uid = self.asts.metadata.uid.clone().unwrap_or_default();
        let lp = ListParams::default().labels(selector);
        // Counted from a fresh read: what this pass created, deleted or updated shows.
        let pods: Vec<Pod> = self
            .pods
            .list(&lp)
            .await
            .map_err(api_err("list pods of", self.key()))?
            .items
            .into_iter()
            .filter(|p| controlled_by(&p.metadata, &uid))
            .collect();
        let update = revs.update.metadata.name.clone().unwrap_or_default();
        let mut current_rev = revs.current.metadata.name.clone().unwrap_or_default();
        let min_ready = rolling(&self.spec)
            .and_then(|r| r.min_ready_seconds)
            .unwrap_or(0);
        let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
        let (mut updated_ready, mut updated_available) = (0, 0);
        for p in &pods {
            if !pods::is_created(p) {
                continue;
            }
            replicas += 1;
            let at_update = pods::label(p, KRUISE_REVISION_LABEL) == Some(update.as_str());
            if pods::is_running_and_ready(p) {
                ready += 1;
                let avail = running_and_available(p, min_ready).0;
                if avail {
                    available += 1;
                }
                if at_update {
                    updated_ready += 1;
                    if avail {
                        updated_available += 1;
                    }
                }
            }
            if !pods::is_terminating(p) {
                if pods::label(p, KRUISE_REVISION_LABEL) == Some(current_rev.as_str()) {
                    current += 1;
                }
                if at_update {
                    updated += 1;
                }
            }
        }
        current = (current + current_adjust).max(0);
        let rolling_update = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("RollingUpdate");
        if rolling_update && updated == replicas && ready == replicas {
            current = updated;
            current_rev = update.clone();
        }
        let old = self.asts.status.clone().unwrap_or_default();
        let generation = self.asts.metadata.generation;
        let inconsistent = generation > old.observed_generation
            || old.replicas != replicas
            || old.current_replicas != current
            || old.ready_replicas != ready
            || old.available_replicas != available
            || old.updated_replicas != updated
            || old.current_revision.as_deref() != Some(current_rev.as_str())
            || old.update_revision.as_deref() != Some(update.as_str())
            || old.label_selector.as_deref() != Some(selector);
        if !inconsistent {
            return Ok(());
        }
        let status = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "updatedReadyReplicas": updated_ready,
            "updatedAvailableReplicas": updated_available,
            "currentRevision": current_rev,
            "updateRevision": update,
            "collisionCount": revs.collision_count,
            "labelSelector": selector,
        });
        let api: Api<AdvancedStatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for _ in 0..5 {
            let Some(mut fresh) = api
                .get_opt(&self.name)
                .await
                .map_err(api_err("read statefulset", self.key()))?
            else {
                return Ok(());
            };
            let mut v = serde_json::to_value(&fresh).unwrap_or(Value::Null);
            v["status"] = status.clone();
            fresh = serde_json::from_value(v).unwrap_or(fresh);
            match api.replace_status(&self.name, &post_params(), &fresh).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(api_err("write the status of statefulset", self.key())(e)),
            }
        }
        Ok(())
    }

    /// `truncateHistory`: revisions no pod and no status names, beyond `revisionHistoryLimit`, go.
    async fn truncate_history(
        &mut self,
        revs: &Revisions,
        current: &str,
        update: &str,
    ) -> Result<(), KruiseError> {
        let limit =
            usize::try_from(self.spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(10);
        let uid = self.asts.metadata.uid.clone().unwrap_or_default();
        let selector = self
            .spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let live: BTreeSet<String> = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_err("list pods of", self.key()))?
            .items
            .iter()
            .filter(|p| controlled_by(&p.metadata, &uid))
            .filter_map(|p| pods::label(p, KRUISE_REVISION_LABEL).map(str::to_string))
            .chain([current.to_string(), update.to_string()])
            .collect();
        let non_live: Vec<&ControllerRevision> = revs
            .all
            .iter()
            .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        if non_live.len() <= limit {
            return Ok(());
        }
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for r in &non_live[..non_live.len() - limit] {
            let name = r.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err("delete revision", format!("{}/{name}", self.ns))(e)),
            }
        }
        Ok(())
    }
}

/// `SetPodReadyCondition`: Ready False (`ReadinessGatesNotReady`) when the containers are ready.
fn set_ready_false(pod: &mut Pod) {
    if pods::condition_status(pod, "ContainersReady") != Some("True") {
        return;
    }
    pods::set_condition(
        pod,
        PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("ReadinessGatesNotReady".into()),
            message: Some("corresponding condition of pod readiness gate is not ready".into()),
            last_transition_time: Some(pods::now()),
            ..Default::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotsync_model::{UnorderedUpdate, UpdatePriorityOrderTerm, UpdatePriorityStrategy};

    fn pod(name: &str, rev: &str, priority: Option<&str>) -> Pod {
        let mut labels = BTreeMap::from([(KRUISE_REVISION_LABEL.to_string(), rev.to_string())]);
        if let Some(p) = priority {
            labels.insert("game.kruise.io/gs-update-priority".into(), p.into());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn ordered_updates_take_the_highest_slots_above_the_partition() {
        let replicas: Vec<Option<Pod>> = (0..4)
            .map(|i| Some(pod(&format!("s-{i}"), "s-old", None)))
            .collect();
        let ru = AstsRollingUpdate {
            partition: Some(1),
            ..Default::default()
        };
        assert_eq!(
            sort_pods_to_update(Some(&ru), "s-new", 4, &replicas),
            vec![3, 2, 1]
        );
    }

    #[test]
    fn unordered_updates_go_by_priority_and_count_updated_pods_against_the_partition() {
        let replicas = vec![
            Some(pod("s-0", "s-old", Some("0"))),
            Some(pod("s-1", "s-new", Some("0"))),
            Some(pod("s-2", "s-old", Some("10"))),
            Some(pod("s-3", "s-old", Some("5"))),
        ];
        let ru = AstsRollingUpdate {
            partition: Some(1),
            unordered_update: Some(UnorderedUpdate {
                priority_strategy: Some(UpdatePriorityStrategy {
                    order_priority: Some(vec![UpdatePriorityOrderTerm {
                        ordered_key: "game.kruise.io/gs-update-priority".into(),
                    }]),
                    weight_priority: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // s-1 is updated and takes one of the three places; then priority 10, then 5; s-0 stays.
        assert_eq!(
            sort_pods_to_update(Some(&ru), "s-new", 4, &replicas),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn max_unavailable_percentages_round_down() {
        assert_eq!(scaled_value(&IntOrString::String("25%".into()), 10), 2);
        assert_eq!(scaled_value(&IntOrString::String("5%".into()), 10), 0);
        assert_eq!(scaled_value(&IntOrString::Int(3), 10), 3);
    }
}
