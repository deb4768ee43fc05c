//! The simulated OpenKruiseGame and Kruise controllers: an ordinary kube-rs client that turns each
//! GameServerSet into an Advanced StatefulSet of the same name, pods `<name>-<ordinal>` and one GameServer
//! per pod, and rolls template changes out with Kruise's rules.
//!
//! Reconciling is level-triggered per GameServerSet: every pass reads the set, its pods and GameServers
//! afresh and takes the next steps from what they show (kube::runtime's `Controller` triggers a pass on any
//! change of the set, its Advanced StatefulSet, its pods or its GameServers). The rules, from kruise and
//! kruise-game:
//! - `status.updateRevision` names the template (`<set>-<hash>`); each revision's template is kept in a
//!   ControllerRevision of that name, as Kruise does, so that a later pass can tell what changed.
//! - A pod is up to date iff its `controller-revision-hash` label equals `updateRevision`; pod contents are
//!   never compared, so pods hotsync patched itself (image and label) are left alone.
//! - `paused` stops the rollout; `partition` is the number of pods kept on old revisions; pods update in
//!   order of `game.kruise.io/gs-update-priority` (higher first), then ordinal (higher first); at most
//!   `maxUnavailable` pods are unavailable at once.
//! - In place (container images patched, `InPlaceUpdateReady` False until the kubelet reports the new
//!   images running and ready) only when the revisions differ in container images or template metadata and
//!   the policy is `InPlaceIfPossible` or `InPlaceOnly`; otherwise the pod is deleted and recreated.
//! - The relabel pass: a pod that already runs the target images just gets the new revision label.

use super::{now_time, shutdown_signal, SimConfig, SimError};
use crate::names::{
    CONDITION_INPLACE_READY, LABEL_DELETION_PRIORITY, LABEL_LIFECYCLE_STATE, LABEL_OPS_STATE,
    LABEL_OWNER_GSS, LABEL_POD_NAME, LABEL_REVISION_HASH, LABEL_UPDATE_PRIORITY,
};
use hotsync_model::{
    AdvancedStatefulSet, AdvancedStatefulSetSpec, AstsRollingUpdate, AstsUpdateStrategy,
    GameServer, GameServerSet, GameServerSpec,
};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodReadinessGate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt as _};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const FIELD_MANAGER: &str = "okg-sim";
/// Kruise's record of an in-place update in progress.
pub const ANNOTATION_INPLACE_STATE: &str = "apps.kruise.io/inplace-update-state";
/// Lifecycle states Kruise writes in [`LABEL_LIFECYCLE_STATE`].
pub const LIFECYCLE_NORMAL: &str = "Normal";
pub const LIFECYCLE_PREPARING_UPDATE: &str = "PreparingUpdate";
pub const LIFECYCLE_UPDATING: &str = "Updating";

/// A failure of one pass over one set; the set is retried.
#[derive(Debug, thiserror::Error)]
pub enum OkgError {
    #[error("could not {action} {kind} {namespace}/{name}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the GameServerSet {name} has no {what}")]
    Invalid { name: String, what: &'static str },
}

impl OkgError {
    fn is_conflict(&self) -> bool {
        matches!(self, OkgError::Api { source: kube::Error::Api(s), .. } if s.code == 409 || s.code == 422)
    }
}

struct Ctx {
    client: kube::Client,
    /// Templates of revisions seen, by (namespace, revision name): revisions are immutable.
    revisions: Mutex<HashMap<(String, String), PodTemplateSpec>>,
}

/// Runs the controller until shutdown.
pub(crate) async fn run(
    client: kube::Client,
    _config: SimConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let owner_of = |labels: &BTreeMap<String, String>, ns: Option<String>| {
        labels.get(LABEL_OWNER_GSS).map(|name| {
            ObjectRef::<GameServerSet>::new(name).within(ns.as_deref().unwrap_or_default())
        })
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        revisions: Mutex::new(HashMap::new()),
    });
    let with_owner = watcher::Config::default().labels(LABEL_OWNER_GSS);
    Controller::new(
        Api::<GameServerSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<AdvancedStatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Pod>::all(client.clone()),
        with_owner.clone(),
        move |pod: Pod| owner_of(pod.labels(), pod.namespace()),
    )
    .watches(
        Api::<GameServer>::all(client),
        with_owner,
        move |gs: GameServer| owner_of(gs.labels(), gs.namespace()),
    )
    .trigger_backoff(hotsync_model::WatchBackoff::default())
    .graceful_shutdown_on(shutdown_signal(shutdown.clone()))
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "okg reconcile");
        }
    })
    .await;
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended { task: "okg" })
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

// ---- pure rules ---------------------------------------------------------------------------------------

/// JSON with sorted keys, for hashing.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The revision name of a template: `<set>-<first 10 hex digits of sha256 over its canonical JSON>`.
pub fn revision_name(set: &str, template: &PodTemplateSpec) -> String {
    let v = serde_json::to_value(template).unwrap_or(Value::Null);
    let hash = super::sha256_hex(canonical_json(&v).as_bytes());
    format!("{set}-{}", &hash[..10])
}

/// The Advanced StatefulSet's pod template for a set: the set's template plus the owner label.
pub fn asts_template(gss: &GameServerSet) -> PodTemplateSpec {
    let mut t = gss.spec.game_server_template.template.clone();
    t.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(LABEL_OWNER_GSS.to_string(), gss.name_any());
    t
}

/// Container image changes that take a pod from `old` to `new` in place, by container index, or `None`
/// when anything else in the template differs (Kruise then recreates the pod). Template labels and
/// annotations may differ.
pub fn in_place_changes(
    old: &PodTemplateSpec,
    new: &PodTemplateSpec,
) -> Option<Vec<(usize, String, String)>> {
    let strip_meta = |t: &PodTemplateSpec| {
        let mut m =
            serde_json::to_value(t.metadata.clone().unwrap_or_default()).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut m {
            o.remove("labels");
            o.remove("annotations");
        }
        m
    };
    if strip_meta(old) != strip_meta(new) {
        return None;
    }
    let old_spec = old.spec.clone().unwrap_or_default();
    let new_spec = new.spec.clone().unwrap_or_default();
    if old_spec.containers.len() != new_spec.containers.len() {
        return None;
    }
    let mut changes = Vec::new();
    for (i, (a, b)) in old_spec
        .containers
        .iter()
        .zip(&new_spec.containers)
        .enumerate()
    {
        if a.name != b.name {
            return None;
        }
        let (mut a2, mut b2) = (a.clone(), b.clone());
        a2.image = None;
        b2.image = None;
        if a2 != b2 {
            return None;
        }
        if a.image != b.image {
            changes.push((i, b.name.clone(), b.image.clone().unwrap_or_default()));
        }
    }
    let (mut o, mut n) = (old_spec, new_spec);
    o.containers.clear();
    n.containers.clear();
    if o != n {
        return None;
    }
    Some(changes)
}

/// `maxUnavailable` as a pod count: an int, or a percentage of replicas rounded down; at least 1.
pub fn max_unavailable(value: Option<&IntOrString>, replicas: i32) -> i32 {
    let n = match value {
        None => 1,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<i64>().map_or(1, |p| {
                i32::try_from(p * i64::from(replicas.max(0)) / 100).unwrap_or(i32::MAX)
            }),
            None => s.trim().parse().unwrap_or(1),
        },
    };
    n.max(1)
}

/// `reserveGameServerIds` as a set of ordinals (ints, numeric strings, and `a-b` ranges).
pub fn reserved_ids(ids: Option<&Vec<IntOrString>>) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for id in ids.into_iter().flatten() {
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
                        out.extend(a..=b.min(a.saturating_add(10_000)));
                    }
                }
            }
        }
    }
    out
}

fn int_or_string_to_i64(v: Option<&IntOrString>) -> i64 {
    match v {
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => s.trim().parse().unwrap_or(0),
        None => 0,
    }
}

fn ordinal_of(pod_name: &str, set: &str) -> Option<i32> {
    pod_name
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse::<i32>()
        .ok()
        .filter(|o| *o >= 0)
}

fn condition_status<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_ready(pod: &Pod) -> bool {
    condition_status(pod, "Ready") == Some("True")
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Unavailable for the rollout budget: terminating, not ready, updating in place, or preparing to.
fn is_unavailable(pod: &Pod) -> bool {
    is_terminating(pod)
        || !is_ready(pod)
        || condition_status(pod, CONDITION_INPLACE_READY) == Some("False")
        || matches!(
            label(pod, LABEL_LIFECYCLE_STATE),
            Some(LIFECYCLE_PREPARING_UPDATE) | Some(LIFECYCLE_UPDATING)
        )
}

/// The GameServer state OKG derives from its pod.
pub fn game_server_state(pod: &Pod) -> &'static str {
    let waiting_reason = |r: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some(r)
                })
            })
    };
    if is_terminating(pod) {
        "Deleting"
    } else if condition_status(pod, CONDITION_INPLACE_READY) == Some("False")
        || matches!(
            label(pod, LABEL_LIFECYCLE_STATE),
            Some(LIFECYCLE_PREPARING_UPDATE) | Some(LIFECYCLE_UPDATING)
        )
    {
        "Updating"
    } else if waiting_reason("CrashLoopBackOff") {
        "Crash"
    } else if pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
        == "Pending"
    {
        "Creating"
    } else if is_ready(pod) {
        "Ready"
    } else {
        "NotReady"
    }
}

// ---- the reconcile pass --------------------------------------------------------------------------------

struct Pass<'a> {
    ctx: &'a Ctx,
    ns: String,
    name: String,
    pods: Api<Pod>,
    gs_api: Api<GameServer>,
}

impl Pass<'_> {
    fn err<K: Resource<DynamicType = ()>>(
        &self,
        action: &'static str,
        name: &str,
    ) -> impl FnOnce(kube::Error) -> OkgError {
        let name = name.to_string();
        let namespace = self.ns.clone();
        move |source| OkgError::Api {
            action,
            kind: leak_kind::<K>(),
            namespace,
            name,
            source,
        }
    }
}

fn leak_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Pod" => "Pod",
        "GameServer" => "GameServer",
        "GameServerSet" => "GameServerSet",
        "StatefulSet" => "StatefulSet",
        "ControllerRevision" => "ControllerRevision",
        _ => "object",
    }
}

fn owner_ref<K: Resource<DynamicType = ()>>(obj: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: obj.meta().name.clone()?,
        uid: obj.meta().uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn ignore_gone(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

async fn reconcile(gss: Arc<GameServerSet>, ctx: Arc<Ctx>) -> Result<Action, OkgError> {
    let name = gss.name_any();
    let Some(ns) = gss.namespace() else {
        return Err(OkgError::Invalid {
            name,
            what: "namespace",
        });
    };
    if gss.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pass = Pass {
        ctx: &ctx,
        pods: Api::namespaced(ctx.client.clone(), &ns),
        gs_api: Api::namespaced(ctx.client.clone(), &ns),
        ns,
        name,
    };
    pass.run(&gss).await
}

impl Pass<'_> {
    async fn run(&self, gss: &GameServerSet) -> Result<Action, OkgError> {
        let template = asts_template(gss);
        let update_revision = revision_name(&self.name, &template);
        let asts = self.apply_asts(gss, &template).await?;
        self.ensure_revision(
            &asts,
            &update_revision,
            &template,
            gss.meta().generation.unwrap_or(1),
        )
        .await?;

        let lp = ListParams::default().labels(&format!("{LABEL_OWNER_GSS}={}", self.name));
        let pods = self
            .pods
            .list(&lp)
            .await
            .map_err(self.err::<Pod>("list pods of", &self.name))?
            .items;
        let game_servers = self
            .gs_api
            .list(&lp)
            .await
            .map_err(self.err::<GameServer>("list game servers of", &self.name))?
            .items;
        let mut by_ordinal: BTreeMap<i32, Pod> = BTreeMap::new();
        for pod in pods {
            if let Some(o) = ordinal_of(&pod.name_any(), &self.name) {
                by_ordinal.insert(o, pod);
            }
        }
        let gs_by_name: HashMap<String, GameServer> = game_servers
            .into_iter()
            .map(|g| (g.name_any(), g))
            .collect();

        let mut busy = false;
        // Scale: which ordinals the set has, honouring reserved ids and deletion order.
        let replicas = gss.spec.replicas.unwrap_or(0).max(0);
        let reserved = reserved_ids(gss.spec.reserve_game_server_ids.as_ref());
        let desired = self
            .scale(
                &asts,
                &template,
                &update_revision,
                replicas,
                &reserved,
                &by_ordinal,
                &gs_by_name,
                &mut busy,
            )
            .await?;

        // GameServers: one per pod; labels mirrored onto the pod; image overrides; status.
        self.game_servers(&by_ordinal, &gs_by_name, &mut busy)
            .await?;

        // The rollout.
        self.rollout(
            gss,
            &template,
            &update_revision,
            replicas,
            &desired,
            &by_ordinal,
            &gs_by_name,
            &mut busy,
        )
        .await?;

        // Statuses, from what this pass read.
        self.write_statuses(
            gss,
            &asts,
            &update_revision,
            replicas,
            &desired,
            &by_ordinal,
            &gs_by_name,
        )
        .await?;
        Ok(if busy {
            Action::requeue(Duration::from_secs(2))
        } else {
            Action::requeue(Duration::from_secs(30))
        })
    }

    async fn apply_asts(
        &self,
        gss: &GameServerSet,
        template: &PodTemplateSpec,
    ) -> Result<AdvancedStatefulSet, OkgError> {
        let ru = gss.rolling_update();
        let mut reserve: Vec<IntOrString> = reserved_ids(gss.spec.reserve_game_server_ids.as_ref())
            .into_iter()
            .map(IntOrString::Int)
            .collect();
        reserve.sort_by_key(|v| int_or_string_to_i64(Some(v)));
        let spec = AdvancedStatefulSetSpec {
            replicas: gss.spec.replicas,
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_OWNER_GSS.to_string(),
                    self.name.clone(),
                )])),
                ..Default::default()
            }),
            template: template.clone(),
            service_name: gss.spec.service_name.clone(),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(AstsUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(AstsRollingUpdate {
                    partition: ru.partition,
                    max_unavailable: ru.max_unavailable.clone(),
                    pod_update_policy: Some(gss.pod_update_policy().to_string()),
                    paused: ru.paused,
                    min_ready_seconds: ru.min_ready_seconds,
                    ..Default::default()
                }),
            }),
            reserve_ordinals: if reserve.is_empty() {
                None
            } else {
                Some(reserve)
            },
            lifecycle: gss.spec.lifecycle.clone(),
            ..Default::default()
        };
        let mut asts = AdvancedStatefulSet::new(&self.name, spec);
        asts.metadata.namespace = Some(self.ns.clone());
        asts.metadata.labels = Some(BTreeMap::from([(
            LABEL_OWNER_GSS.to_string(),
            self.name.clone(),
        )]));
        asts.metadata.owner_references = owner_ref(gss).map(|o| vec![o]);
        let api: Api<AdvancedStatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        api.patch(
            &self.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&asts),
        )
        .await
        .map_err(self.err::<AdvancedStatefulSet>("apply", &self.name))
    }

    async fn ensure_revision(
        &self,
        asts: &AdvancedStatefulSet,
        revision: &str,
        template: &PodTemplateSpec,
        number: i64,
    ) -> Result<(), OkgError> {
        let key = (self.ns.clone(), revision.to_string());
        if self
            .ctx
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&key)
        {
            return Ok(());
        }
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let cr = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision.to_string()),
                namespace: Some(self.ns.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_OWNER_GSS.to_string(), self.name.clone()),
                    (LABEL_REVISION_HASH.to_string(), revision.to_string()),
                ])),
                owner_references: owner_ref(asts).map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(RawExtension(
                json!({ "spec": { "template": template, "$patch": "replace" } }),
            )),
            revision: number,
        };
        match api.create(&PostParams::default(), &cr).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(self.err::<ControllerRevision>("create", revision)(e)),
        }
        self.ctx
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, template.clone());
        Ok(())
    }

    /// The template of a revision, from memory or its ControllerRevision; `None` when unknown.
    async fn revision_template(&self, revision: &str) -> Result<Option<PodTemplateSpec>, OkgError> {
        let key = (self.ns.clone(), revision.to_string());
        if let Some(t) = self
            .ctx
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(t.clone()));
        }
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let Some(cr) = api
            .get_opt(revision)
            .await
            .map_err(self.err::<ControllerRevision>("read", revision))?
        else {
            return Ok(None);
        };
        let template = cr
            .data
            .and_then(|d| d.0.pointer("/spec/template").cloned())
            .and_then(|v| serde_json::from_value::<PodTemplateSpec>(v).ok());
        if let Some(t) = &template {
            self.ctx
                .revisions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, t.clone());
        }
        Ok(template)
    }

    #[allow(clippy::too_many_arguments)]
    async fn scale(
        &self,
        asts: &AdvancedStatefulSet,
        template: &PodTemplateSpec,
        update_revision: &str,
        replicas: i32,
        reserved: &BTreeSet<i32>,
        by_ordinal: &BTreeMap<i32, Pod>,
        gs_by_name: &HashMap<String, GameServer>,
        busy: &mut bool,
    ) -> Result<BTreeSet<i32>, OkgError> {
        for (o, pod) in by_ordinal {
            if reserved.contains(o) && !is_terminating(pod) {
                self.delete_pod(pod).await?;
                *busy = true;
            }
        }
        let mut slots: Vec<(i32, &Pod)> = by_ordinal
            .iter()
            .filter(|(o, _)| !reserved.contains(o))
            .map(|(o, p)| (*o, p))
            .collect();
        let want = usize::try_from(replicas).unwrap_or(0);
        if slots.len() > want {
            // OKG deletes first what is already going, then WaitToBeDeleted, then higher deletion priority,
            // then higher ordinal.
            let key = |(o, p): &(i32, &Pod)| {
                let gs = gs_by_name.get(&p.name_any());
                let ops = gs
                    .and_then(|g| g.spec.ops_state.clone())
                    .or_else(|| label(p, LABEL_OPS_STATE).map(str::to_string))
                    .unwrap_or_default();
                let dp = gs
                    .map(|g| int_or_string_to_i64(g.spec.deletion_priority.as_ref()))
                    .unwrap_or_else(|| {
                        label(p, LABEL_DELETION_PRIORITY)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0)
                    });
                (
                    std::cmp::Reverse(is_terminating(p)),
                    std::cmp::Reverse(ops == "WaitToBeDeleted"),
                    std::cmp::Reverse(dp),
                    std::cmp::Reverse(*o),
                )
            };
            slots.sort_by_key(key);
            let surplus = slots.len() - want;
            for (_, pod) in slots.drain(..surplus) {
                if !is_terminating(pod) {
                    self.delete_pod(pod).await?;
                    *busy = true;
                }
            }
        }
        let mut desired: BTreeSet<i32> = slots.iter().map(|(o, _)| *o).collect();
        let mut o = 0;
        while desired.len() < want {
            if !reserved.contains(&o) && !by_ordinal.contains_key(&o) {
                desired.insert(o);
            }
            o += 1;
        }
        for o in &desired {
            if !by_ordinal.contains_key(o) {
                self.create_pod(asts, template, update_revision, *o).await?;
                *busy = true;
            }
        }
        Ok(desired)
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), OkgError> {
        let name = pod.name_any();
        let dp = DeleteParams {
            preconditions: pod.uid().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        ignore_gone(self.pods.delete(&name, &dp).await.map(|_| ()))
            .map_err(self.err::<Pod>("delete", &name))
    }

    async fn create_pod(
        &self,
        asts: &AdvancedStatefulSet,
        template: &PodTemplateSpec,
        revision: &str,
        ordinal: i32,
    ) -> Result<(), OkgError> {
        let name = format!("{}-{ordinal}", self.name);
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(LABEL_OWNER_GSS.into(), self.name.clone());
        labels.insert(LABEL_REVISION_HASH.into(), revision.into());
        labels.insert(LABEL_POD_NAME.into(), name.clone());
        labels.insert(LABEL_OPS_STATE.into(), "None".into());
        labels.insert(LABEL_UPDATE_PRIORITY.into(), "0".into());
        labels.insert(LABEL_DELETION_PRIORITY.into(), "0".into());
        if asts.spec.lifecycle.is_some() {
            labels.insert(LABEL_LIFECYCLE_STATE.into(), LIFECYCLE_NORMAL.into());
        }
        let mut spec = template.spec.clone().unwrap_or_default();
        spec.hostname = Some(name.clone());
        if let Some(svc) = &asts.spec.service_name {
            spec.subdomain = Some(svc.clone());
        }
        let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
        if !gates
            .iter()
            .any(|g| g.condition_type == CONDITION_INPLACE_READY)
        {
            gates.push(PodReadinessGate {
                condition_type: CONDITION_INPLACE_READY.into(),
            });
        }
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns.clone()),
                labels: Some(labels),
                annotations: meta.annotations,
                owner_references: owner_ref(asts).map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        };
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err::<Pod>("create", &name)(e)),
        }
    }

    async fn game_servers(
        &self,
        by_ordinal: &BTreeMap<i32, Pod>,
        gs_by_name: &HashMap<String, GameServer>,
        busy: &mut bool,
    ) -> Result<(), OkgError> {
        let pods_by_name: HashMap<String, &Pod> =
            by_ordinal.values().map(|p| (p.name_any(), p)).collect();
        // Garbage collection, which this API server lacks: a GameServer goes with its pod.
        for (gs_name, gs) in gs_by_name {
            let owner_uid = gs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Pod")
                .map(|o| o.uid.clone());
            let Some(owner_uid) = owner_uid else { continue };
            let pod_uid = pods_by_name.get(gs_name).and_then(|p| p.uid());
            if pod_uid.as_deref() != Some(owner_uid.as_str()) {
                ignore_gone(
                    self.gs_api
                        .delete(gs_name, &DeleteParams::default())
                        .await
                        .map(|_| ()),
                )
                .map_err(self.err::<GameServer>("delete", gs_name))?;
                *busy = true;
            }
        }
        for pod in by_ordinal.values() {
            let pod_name = pod.name_any();
            let gs = gs_by_name.get(&pod_name).filter(|g| {
                g.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .all(|o| o.kind != "Pod" || Some(&o.uid) == pod.metadata.uid.as_ref())
            });
            let Some(gs) = gs else {
                if !is_terminating(pod) && !gs_by_name.contains_key(&pod_name) {
                    self.create_game_server(pod).await?;
                    *busy = true;
                }
                continue;
            };
            if is_terminating(pod) {
                self.write_gs_status(gs, pod).await?;
                continue;
            }
            // Mirror the GameServer's spec onto the pod's labels.
            let want = [
                (
                    LABEL_OPS_STATE,
                    gs.spec.ops_state.clone().unwrap_or_else(|| "None".into()),
                ),
                (
                    LABEL_UPDATE_PRIORITY,
                    int_or_string_to_i64(gs.spec.update_priority.as_ref()).to_string(),
                ),
                (
                    LABEL_DELETION_PRIORITY,
                    int_or_string_to_i64(gs.spec.deletion_priority.as_ref()).to_string(),
                ),
            ];
            let changed: BTreeMap<&str, &str> = want
                .iter()
                .filter(|(k, v)| label(pod, k) != Some(v.as_str()))
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            if !changed.is_empty() {
                self.pods
                    .patch(
                        &pod_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"labels": changed}})),
                    )
                    .await
                    .map_err(self.err::<Pod>("label", &pod_name))?;
                *busy = true;
            }
            // Per-game-server image overrides, patched onto the pod at once.
            let containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default();
            let mut ops = Vec::new();
            for o in gs.spec.containers.iter().flatten() {
                let Some(image) = &o.image else { continue };
                if let Some((i, c)) = containers
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.name == o.name)
                {
                    if c.image.as_ref() != Some(image) {
                        ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": image}));
                    }
                }
            }
            if !ops.is_empty() {
                ops.insert(
                    0,
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version()}),
                );
                self.json_patch_pod(&pod_name, ops).await?;
                *busy = true;
            }
            self.write_gs_status(gs, pod).await?;
        }
        Ok(())
    }

    async fn json_patch_pod(&self, name: &str, ops: Vec<Value>) -> Result<(), OkgError> {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).unwrap_or_default();
        self.pods
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map(|_| ())
            .map_err(self.err::<Pod>("patch", name))
    }

    async fn create_game_server(&self, pod: &Pod) -> Result<(), OkgError> {
        let name = pod.name_any();
        let mut gs = GameServer::new(
            &name,
            GameServerSpec {
                ops_state: Some("None".into()),
                update_priority: Some(IntOrString::Int(0)),
                deletion_priority: Some(IntOrString::Int(0)),
                ..Default::default()
            },
        );
        gs.metadata.namespace = Some(self.ns.clone());
        gs.metadata.labels = Some(BTreeMap::from([(
            LABEL_OWNER_GSS.to_string(),
            self.name.clone(),
        )]));
        gs.metadata.owner_references = owner_ref(pod).map(|o| vec![o]);
        match self.gs_api.create(&PostParams::default(), &gs).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err::<GameServer>("create", &name)(e)),
        }
    }

    async fn write_gs_status(&self, gs: &GameServer, pod: &Pod) -> Result<(), OkgError> {
        let state = game_server_state(pod);
        let current = gs.status.clone().unwrap_or_default();
        let pod_status = pod.status.as_ref().map(|s| {
            json!({
                "phase": s.phase,
                "podIP": s.pod_ip,
                "hostIP": s.host_ip,
                "startTime": s.start_time,
            })
        });
        let update_priority = gs
            .spec
            .update_priority
            .clone()
            .unwrap_or(IntOrString::Int(0));
        let deletion_priority = gs
            .spec
            .deletion_priority
            .clone()
            .unwrap_or(IntOrString::Int(0));
        let unchanged = current.current_state.as_deref() == Some(state)
            && current.update_priority.as_ref() == Some(&update_priority)
            && current.deletion_priority.as_ref() == Some(&deletion_priority)
            && current.pod_status == pod_status
            && current.desired_state.as_deref() == Some("Ready");
        if unchanged {
            return Ok(());
        }
        let last_transition = if current.current_state.as_deref() == Some(state) {
            current.last_transition_time.clone()
        } else {
            serde_json::to_value(now_time())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let patch = json!({"status": {
            "desiredState": "Ready",
            "currentState": state,
            "updatePriority": update_priority,
            "deletionPriority": deletion_priority,
            "podStatus": pod_status,
            "lastTransitionTime": last_transition,
        }});
        let name = gs.name_any();
        ignore_gone(
            self.gs_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ()),
        )
        .map_err(self.err::<GameServer>("write the status of", &name))
    }

    #[allow(clippy::too_many_arguments)]
    async fn rollout(
        &self,
        gss: &GameServerSet,
        template: &PodTemplateSpec,
        update_revision: &str,
        replicas: i32,
        desired: &BTreeSet<i32>,
        by_ordinal: &BTreeMap<i32, Pod>,
        gs_by_name: &HashMap<String, GameServer>,
        busy: &mut bool,
    ) -> Result<(), OkgError> {
        let hook = gss
            .spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.in_place_update.clone());
        // Pods new or finishing an in-place update: InPlaceUpdateReady and the lifecycle state.
        for o in desired {
            let Some(pod) = by_ordinal.get(o) else {
                continue;
            };
            if is_terminating(pod) {
                continue;
            }
            self.settle_in_place(pod, update_revision, busy).await?;
        }
        let ru = gss.rolling_update();
        if ru.paused == Some(true) {
            return Ok(());
        }
        let partition = ru.partition.unwrap_or(0).clamp(0, replicas);
        let budget = max_unavailable(ru.max_unavailable.as_ref(), replicas);
        let mut unavailable = 0;
        let mut updated = 0;
        let mut candidates: Vec<(i64, i32, &Pod)> = Vec::new();
        for o in desired {
            match by_ordinal.get(o) {
                None => {
                    unavailable += 1;
                    updated += 1;
                }
                Some(pod) if is_terminating(pod) => {
                    unavailable += 1;
                    updated += 1;
                }
                Some(pod) => {
                    if is_unavailable(pod) {
                        unavailable += 1;
                    }
                    if label(pod, LABEL_REVISION_HASH) == Some(update_revision) {
                        updated += 1;
                    } else {
                        let priority = gs_by_name
                            .get(&pod.name_any())
                            .map(|g| int_or_string_to_i64(g.spec.update_priority.as_ref()))
                            .unwrap_or_else(|| {
                                label(pod, LABEL_UPDATE_PRIORITY)
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(0)
                            });
                        candidates.push((priority, *o, pod));
                    }
                }
            }
        }
        candidates.sort_by_key(|(p, o, _)| (std::cmp::Reverse(*p), std::cmp::Reverse(*o)));
        let mut quota = replicas - partition - updated;
        let in_place_policy = matches!(gss.pod_update_policy(), "InPlaceIfPossible" | "InPlaceOnly");
        for (_, _, pod) in candidates {
            if quota <= 0 {
                break;
            }
            let old = match label(pod, LABEL_REVISION_HASH) {
                Some(rev) => self.revision_template(rev).await?,
                None => None,
            };
            let changes = old.as_ref().and_then(|old| in_place_changes(old, template));
            let pod_images: HashMap<&str, Option<&String>> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| (c.name.as_str(), c.image.as_ref()))
                .collect();
            match changes {
                Some(changes) if in_place_policy => {
                    let pending: Vec<(usize, String, String)> = changes
                        .into_iter()
                        .filter(|(_, n, img)| {
                            pod_images.get(n.as_str()).copied().flatten() != Some(img)
                        })
                        .collect();
                    if pending.is_empty() {
                        // The relabel pass: the pod already runs the target images.
                        self.relabel(pod, old.as_ref(), template, update_revision, &[], None)
                            .await?;
                        *busy = true;
                        quota -= 1;
                        continue;
                    }
                    let already = is_unavailable(pod);
                    if !already && unavailable >= budget {
                        continue;
                    }
                    if !already {
                        unavailable += 1;
                    }
                    quota -= 1;
                    *busy = true;
                    if let Some(hook) = &hook {
                        if label(pod, LABEL_LIFECYCLE_STATE) != Some(LIFECYCLE_PREPARING_UPDATE) {
                            self.pods
                                .patch(
                                    &pod.name_any(),
                                    &PatchParams::default(),
                                    &Patch::Merge(json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: LIFECYCLE_PREPARING_UPDATE}}})),
                                )
                                .await
                                .map_err(self.err::<Pod>("label", &pod.name_any()))?;
                            continue;
                        }
                        let held_by_label = hook
                            .labels_handler
                            .iter()
                            .flatten()
                            .any(|(k, v)| label(pod, k) == Some(v.as_str()));
                        let held_by_finalizer =
                            hook.finalizers_handler.iter().flatten().any(|f| {
                                pod.metadata.finalizers.iter().flatten().any(|pf| pf == f)
                            });
                        if held_by_label || held_by_finalizer {
                            continue;
                        }
                    }
                    self.update_in_place(
                        pod,
                        old.as_ref(),
                        template,
                        update_revision,
                        &pending,
                        hook.is_some(),
                    )
                    .await?;
                }
                _ if gss.pod_update_policy() == "InPlaceOnly" => {
                    tracing::warn!(pod = %pod.name_any(), "InPlaceOnly: the change cannot be made in place; pod left alone");
                }
                _ => {
                    let already = is_unavailable(pod);
                    if !already && unavailable >= budget {
                        continue;
                    }
                    if !already {
                        unavailable += 1;
                    }
                    quota -= 1;
                    *busy = true;
                    self.delete_pod(pod).await?;
                }
            }
        }
        Ok(())
    }

    /// Labels and annotations a pod gets when it moves to `revision`: the old template's own removed, the
    /// new template's added.
    fn next_metadata(
        pod: &Pod,
        old: Option<&PodTemplateSpec>,
        new: &PodTemplateSpec,
        revision: &str,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let meta =
            |t: Option<&PodTemplateSpec>| t.and_then(|t| t.metadata.clone()).unwrap_or_default();
        let (old_meta, new_meta) = (meta(old), meta(Some(new)));
        let mut labels = pod.metadata.labels.clone().unwrap_or_default();
        for k in old_meta.labels.iter().flatten().map(|(k, _)| k) {
            labels.remove(k);
        }
        labels.extend(new_meta.labels.unwrap_or_default());
        labels.insert(LABEL_OWNER_GSS.into(), pod_owner(pod));
        labels.insert(LABEL_REVISION_HASH.into(), revision.into());
        let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
        for k in old_meta.annotations.iter().flatten().map(|(k, _)| k) {
            annotations.remove(k);
        }
        annotations.extend(new_meta.annotations.unwrap_or_default());
        (labels, annotations)
    }

    async fn relabel(
        &self,
        pod: &Pod,
        old: Option<&PodTemplateSpec>,
        new: &PodTemplateSpec,
        revision: &str,
        images: &[(usize, String, String)],
        extra: Option<(&str, &str)>,
    ) -> Result<(), OkgError> {
        let (mut labels, annotations) = Self::next_metadata(pod, old, new, revision);
        if let Some((k, v)) = extra {
            labels.insert(k.into(), v.into());
        }
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version()}),
        ];
        for (i, _, image) in images {
            ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": image}));
        }
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": labels}));
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": annotations}));
        self.json_patch_pod(&pod.name_any(), ops).await
    }

    async fn set_inplace_ready(&self, pod: &Pod, ready: bool) -> Result<(), OkgError> {
        let name = pod.name_any();
        let patch = json!({"status": {"conditions": [{
            "type": CONDITION_INPLACE_READY,
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": now_time(),
        }]}});
        ignore_gone(
            self.pods
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .map(|_| ()),
        )
        .map_err(self.err::<Pod>("write the status of", &name))
    }

    async fn update_in_place(
        &self,
        pod: &Pod,
        old: Option<&PodTemplateSpec>,
        new: &PodTemplateSpec,
        revision: &str,
        images: &[(usize, String, String)],
        with_lifecycle: bool,
    ) -> Result<(), OkgError> {
        let statuses: HashMap<&str, &str> = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| (c.name.as_str(), c.image_id.as_str()))
            .collect();
        let last: serde_json::Map<String, Value> = images
            .iter()
            .map(|(_, n, _)| {
                (
                    n.clone(),
                    json!({"imageID": statuses.get(n.as_str()).copied().unwrap_or("")}),
                )
            })
            .collect();
        let state = json!({
            "revision": revision,
            "updateTimestamp": now_time(),
            "lastContainerStatuses": last,
        });
        // Kruise marks the pod not ready first, then changes its spec.
        self.set_inplace_ready(pod, false).await?;
        let fresh = self
            .pods
            .get(&pod.name_any())
            .await
            .map_err(self.err::<Pod>("read", &pod.name_any()))?;
        let mut fresh = fresh;
        fresh
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION_INPLACE_STATE.into(), state.to_string());
        let extra = with_lifecycle.then_some((LABEL_LIFECYCLE_STATE, LIFECYCLE_UPDATING));
        self.relabel(&fresh, old, new, revision, images, extra)
            .await
    }

    /// Finishes what an in-place update or a pod creation leaves open: `InPlaceUpdateReady` True once the
    /// kubelet runs the new images (their image IDs changed, openkruise/kruise#2297) and every container is
    /// ready; the lifecycle state back to Normal.
    async fn settle_in_place(
        &self,
        pod: &Pod,
        update_revision: &str,
        busy: &mut bool,
    ) -> Result<(), OkgError> {
        let has_gate = pod
            .spec
            .iter()
            .flat_map(|s| s.readiness_gates.iter().flatten())
            .any(|g| g.condition_type == CONDITION_INPLACE_READY);
        let condition = condition_status(pod, CONDITION_INPLACE_READY);
        if has_gate && condition.is_none() {
            self.set_inplace_ready(pod, true).await?;
            *busy = true;
            return Ok(());
        }
        if condition == Some("False") {
            let state: Option<Value> = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_INPLACE_STATE))
                .and_then(|s| serde_json::from_str(s).ok());
            // Only the record of the update to this pod's current revision counts.
            let Some(state) = state.filter(|s| {
                s.get("revision").and_then(Value::as_str) == label(pod, LABEL_REVISION_HASH)
            }) else {
                return Ok(());
            };
            *busy = true;
            let statuses: HashMap<&str, &k8s_openapi::api::core::v1::ContainerStatus> = pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| (c.name.as_str(), c))
                .collect();
            let spec_images: HashMap<&str, Option<&String>> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| (c.name.as_str(), c.image.as_ref()))
                .collect();
            let restarted = state
                .get("lastContainerStatuses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .all(|(name, last)| {
                    let last_id = last.get("imageID").and_then(Value::as_str).unwrap_or("");
                    statuses.get(name.as_str()).is_some_and(|s| {
                        s.image_id != last_id
                            && Some(&s.image) == spec_images.get(name.as_str()).copied().flatten()
                    })
                });
            let all_ready = spec_images
                .keys()
                .all(|n| statuses.get(n).is_some_and(|s| s.ready));
            if restarted && all_ready {
                self.set_inplace_ready(pod, true).await?;
            }
            return Ok(());
        }
        if label(pod, LABEL_LIFECYCLE_STATE) == Some(LIFECYCLE_UPDATING)
            && label(pod, LABEL_REVISION_HASH) == Some(update_revision)
        {
            *busy = true;
            self.pods
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: LIFECYCLE_NORMAL}}}),
                    ),
                )
                .await
                .map_err(self.err::<Pod>("label", &pod.name_any()))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_statuses(
        &self,
        gss: &GameServerSet,
        asts: &AdvancedStatefulSet,
        update_revision: &str,
        replicas: i32,
        desired: &BTreeSet<i32>,
        by_ordinal: &BTreeMap<i32, Pod>,
        gs_by_name: &HashMap<String, GameServer>,
    ) -> Result<(), OkgError> {
        let live: Vec<&Pod> = by_ordinal.values().filter(|p| !is_terminating(p)).collect();
        let count = |f: &dyn Fn(&Pod) -> bool| {
            i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
        };
        let old_status = asts.status.clone().unwrap_or_default();
        let at_update = |p: &Pod| label(p, LABEL_REVISION_HASH) == Some(update_revision);
        let updated = count(&at_update);
        let ready = count(&|p| is_ready(p));
        let updated_ready = count(&|p| at_update(p) && is_ready(p));
        let all_updated = desired.iter().all(|o| {
            by_ordinal
                .get(o)
                .is_some_and(|p| !is_terminating(p) && at_update(p))
        });
        let current_revision = if all_updated && updated_ready == replicas {
            update_revision.to_string()
        } else {
            old_status
                .current_revision
                .clone()
                .unwrap_or_else(|| update_revision.to_string())
        };
        let current = count(&|p| label(p, LABEL_REVISION_HASH) == Some(current_revision.as_str()));
        let selector = format!("{LABEL_OWNER_GSS}={}", self.name);
        let asts_status = json!({
            "observedGeneration": asts.metadata.generation,
            "replicas": live.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "updatedReadyReplicas": updated_ready,
            "updatedAvailableReplicas": updated_ready,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
            "labelSelector": selector,
        });
        let before = serde_json::to_value(&old_status).unwrap_or(Value::Null);
        if !json_subset(&asts_status, &before) {
            let api: Api<AdvancedStatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
            api.patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": asts_status})),
            )
            .await
            .map_err(self.err::<AdvancedStatefulSet>("write the status of", &self.name))?;
        }
        let ops = |state: &str| {
            i32::try_from(
                live.iter()
                    .filter(|p| {
                        gs_by_name
                            .get(&p.name_any())
                            .and_then(|g| g.spec.ops_state.as_deref())
                            == Some(state)
                    })
                    .count(),
            )
            .unwrap_or(i32::MAX)
        };
        let gss_status = json!({
            "observedGeneration": gss.metadata.generation,
            "replicas": live.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": live.len(),
            "updatedReplicas": updated,
            "updatedReadyReplicas": updated_ready,
            "maintainingReplicas": ops("Maintaining"),
            "waitToBeDeletedReplicas": ops("WaitToBeDeleted"),
            "preDeleteReplicas": count(&|p| label(p, LABEL_LIFECYCLE_STATE) == Some("PreparingDelete")),
            "labelSelector": selector,
        });
        let before =
            serde_json::to_value(gss.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        if !json_subset(&gss_status, &before) {
            let api: Api<GameServerSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
            api.patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": gss_status})),
            )
            .await
            .map_err(self.err::<GameServerSet>("write the status of", &self.name))?;
        }
        Ok(())
    }
}

fn pod_owner(pod: &Pod) -> String {
    label(pod, LABEL_OWNER_GSS).unwrap_or_default().to_string()
}

/// Whether every field of `want` has the same value in `have`.
fn json_subset(want: &Value, have: &Value) -> bool {
    match want {
        Value::Object(m) => m.iter().all(|(k, v)| match have.get(k) {
            Some(h) => json_subset(v, h),
            None => v.is_null(),
        }),
        _ => want == have,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

    fn tpl(images: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: images
                    .iter()
                    .map(|(n, i)| Container {
                        name: n.to_string(),
                        image: Some(i.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn an_image_change_is_in_place_and_an_env_change_is_not() {
        let a = tpl(&[("game", "g:1"), ("sidecar", "s:1")]);
        let b = tpl(&[("game", "g:1"), ("sidecar", "s:2")]);
        assert_eq!(
            in_place_changes(&a, &b),
            Some(vec![(1, "sidecar".into(), "s:2".into())])
        );
        let mut c = b.clone();
        if let Some(s) = c.spec.as_mut() {
            s.containers[0].env = Some(vec![EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                ..Default::default()
            }]);
        }
        assert_eq!(in_place_changes(&a, &c), None);
        let reordered = tpl(&[("sidecar", "s:1"), ("game", "g:1")]);
        assert_eq!(in_place_changes(&a, &reordered), None);
    }

    #[test]
    fn revisions_name_the_template() {
        let a = tpl(&[("game", "g:1")]);
        let b = tpl(&[("game", "g:2")]);
        assert_eq!(revision_name("mc", &a), revision_name("mc", &a.clone()));
        assert_ne!(revision_name("mc", &a), revision_name("mc", &b));
        assert!(revision_name("mc", &a).starts_with("mc-"));
    }

    #[test]
    fn max_unavailable_takes_ints_and_percentages() {
        assert_eq!(max_unavailable(None, 10), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 10), 3);
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("25%".into())), 10),
            2
        );
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("5%".into())), 10),
            1
        );
    }

    #[test]
    fn reserved_ids_accept_ranges() {
        let ids = vec![IntOrString::Int(1), IntOrString::String("3-5".into())];
        assert_eq!(reserved_ids(Some(&ids)), BTreeSet::from([1, 3, 4, 5]));
    }
}
