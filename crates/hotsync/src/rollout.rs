//! Executes the plan of one set against the cluster: server-side apply of the set, and sidecar bumps as
//! guarded JSON patches of pods, in waves, while OKG's own rollout is held.
//!
//! Every step decides from what the cluster shows now (level-triggered): a process killed at any point
//! and started again reads the hold annotation and the pods' images, and carries on where it stopped,
//! patching no pod twice. A conflict (409, or a failed `test` in a JSON patch) means re-read and
//! re-plan that pod, never a blind retry.

use crate::diff::{diff_sets, Class, Impact};
use crate::live::{self, ClusterError};
use crate::manifest::DesiredSet;
use crate::model::{
    policy_is_in_place, AdvancedStatefulSet, GameServerSet, LABEL_LIFECYCLE_STATE, LABEL_OWNER_GSS,
    LABEL_REVISION_HASH,
};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The field manager of every write hotsync makes to a set.
pub const FIELD_MANAGER: &str = "hotsync";
/// Marks a pause of OKG's rollout as hotsync's own; the value is the template fingerprint it rolls out.
pub const ANNOTATION_HOLD: &str = "hotsync.dev/hold";
/// The commit a set was last synced to.
pub const ANNOTATION_REVISION: &str = "hotsync.dev/revision";
/// Sets that hotsync applied, so that pruning deletes only those.
pub const LABEL_MANAGED: &str = "hotsync.dev/managed";

/// What to do with a pod whose container fails to come up with the new image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the rollout and leave the pod as it is.
    Halt,
    /// Stop the rollout and put the pod's old images back.
    Rollback,
}

/// How a rollout behaves.
#[derive(Clone, Debug)]
pub struct RolloutOptions {
    /// Pods whose GameServer opsState is one of these are not updated.
    pub skip_ops_states: Vec<String>,
    /// Update only idle game servers (skip `Allocated`).
    pub skip_allocated: bool,
    pub on_failure: OnFailure,
    /// How long one pod may take to restart its containers and be ready.
    pub pod_timeout: Duration,
    /// How long OKG may take to pass a template to the Advanced StatefulSet.
    pub propagation_timeout: Duration,
    /// Apply recreate-class changes (OKG then recreates the pods).
    pub allow_recreate: bool,
    /// Wait for changes that OKG rolls out (recreate, scale, create) to finish.
    pub wait: bool,
    /// The bound of that wait.
    pub wait_timeout: Duration,
    /// Plan and validate with the API server (dry-run apply), change nothing.
    pub dry_run: bool,
    /// The commit being synced, written as an annotation on the set.
    pub source_commit: Option<String>,
    /// Pod patches in flight at once.
    pub patch_concurrency: usize,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            skip_ops_states: vec![
                "WaitToBeDeleted".into(),
                "Kill".into(),
                "Maintaining".into(),
            ],
            skip_allocated: false,
            on_failure: OnFailure::Rollback,
            pod_timeout: Duration::from_secs(300),
            propagation_timeout: Duration::from_secs(60),
            allow_recreate: false,
            wait: true,
            wait_timeout: Duration::from_secs(600),
            dry_run: false,
            source_commit: None,
            patch_concurrency: 64,
        }
    }
}

/// How a set's sync ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// The cluster matches Git: every pod on Git's images and ready.
    Synced,
    /// Applied; OKG is still rolling it out (no `--wait`).
    Progressing,
    /// Applied, but Git pauses the rollout.
    Paused,
    /// Not applied: a recreate-class change without `--allow-recreate`.
    Refused,
    /// A pod failed; the rollout stopped.
    Failed,
    /// A wait ran out of time.
    TimedOut,
    /// Nothing changed (`--dry-run`).
    DryRun,
}

/// What happened to one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodResult {
    pub name: String,
    pub result: PodOutcome,
    /// Containers restarted (or to restart) in place.
    pub containers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PodOutcome {
    /// Containers restarted in place with Git's images.
    Updated,
    /// Already on Git's images.
    Current,
    /// Skipped by policy (opsState).
    Skipped,
    /// Kept on the old version by `partition`.
    KeptByPartition,
    /// Failed; left as it is (`--on-failure halt`).
    Failed,
    /// Failed and put back on its old images.
    RolledBack,
    /// Not reached: the rollout stopped before it.
    NotReached,
    /// Would be patched (`--dry-run`).
    WouldUpdate,
}

/// The outcome of one set.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetOutcome {
    pub namespace: String,
    pub name: String,
    pub impact: Impact,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub pods: Vec<PodResult>,
    pub warnings: Vec<String>,
    /// The images Git wants for the set's containers.
    #[serde(skip)]
    pub target_images: Vec<(String, String)>,
    /// Whether drift is judged for this set (not while partitioned or paused in Git).
    #[serde(skip)]
    pub judge_drift: bool,
}

/// Progress of a rollout, for a terminal or a log.
#[derive(Clone, Debug)]
pub enum Progress {
    Started { set: String, pods: usize },
    PodDone { set: String, pod: String },
    Finished { set: String, outcome: Outcome },
}

/// Where progress goes.
pub type ProgressTx = tokio::sync::mpsc::UnboundedSender<Progress>;

struct Ctx<'a> {
    client: &'a Client,
    opts: &'a RolloutOptions,
    progress: Option<&'a ProgressTx>,
    ns: String,
    name: String,
}

impl Ctx<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn emit(&self, p: Progress) {
        if let Some(tx) = self.progress {
            let _ = tx.send(p);
        }
    }
}

/// Syncs one set: decides from Git and the cluster what to do, and does it.
///
/// # Errors
/// Cluster errors that stop the set (API failures, RBAC, missing CRDs). Rollout failures of pods are
/// an [`Outcome`], not an error.
pub async fn sync_set(
    client: &Client,
    desired: &DesiredSet,
    opts: &RolloutOptions,
    progress: Option<&ProgressTx>,
) -> Result<SetOutcome, ClusterError> {
    let key = desired.key();
    let ctx = Ctx {
        client,
        opts,
        progress,
        ns: key.namespace.clone(),
        name: key.name.clone(),
    };
    let live = live::read(client, &ctx.ns, &ctx.name).await?;
    let mut want = desired.gss.clone();
    let omit_replicas = replicas_owned_elsewhere(live.gss.as_ref());
    if omit_replicas {
        want.spec.replicas = live.gss.as_ref().and_then(|g| g.spec.replicas);
    }
    let diff = diff_sets(live.gss.as_ref(), Some(&want));
    let mut out = SetOutcome {
        namespace: ctx.ns.clone(),
        name: ctx.name.clone(),
        impact: diff.impact,
        outcome: Outcome::Synced,
        message: None,
        pods: Vec::new(),
        warnings: diff.warnings.clone(),
        target_images: want.container_images(),
        judge_drift: false,
    };
    out.warnings.extend(live::image_overrides(&live));
    let in_place = policy_is_in_place(Some(want.pod_update_policy()));
    let git_paused = want.rolling_update().paused == Some(true);
    out.judge_drift = !git_paused && want.rolling_update().partition.unwrap_or(0) == 0;

    if diff.impact == Impact::Recreate && !opts.allow_recreate {
        let fields: Vec<&str> = diff
            .changes
            .iter()
            .filter(|c| c.class == Class::Recreate)
            .map(|c| c.path.as_str())
            .collect();
        out.outcome = Outcome::Refused;
        out.message = Some(format!(
            "{} would recreate its pods ({}); nothing of this set was applied; pass --allow-recreate to let OKG do it",
            ctx.key(),
            fields.join(", ")
        ));
        return Ok(out);
    }
    if opts.dry_run {
        apply(&ctx, &want, None, omit_replicas, true).await?;
        out.outcome = Outcome::DryRun;
        if in_place && live.gss.is_some() {
            let targets = want.container_images();
            out.pods = live
                .pods
                .iter()
                .filter_map(|p| {
                    let behind = behind(p, &targets);
                    (!behind.is_empty()).then(|| PodResult {
                        name: live::pod_name(p).to_string(),
                        result: PodOutcome::WouldUpdate,
                        containers: behind,
                        message: None,
                    })
                })
                .collect();
        }
        return Ok(out);
    }
    let targets = want.container_images();
    let pods_behind = live
        .pods
        .iter()
        .any(|p| !live::is_terminating(p) && !behind(p, &targets).is_empty());
    let held = hold_of(live.gss.as_ref()).is_some();
    let hot = live.gss.is_some()
        && in_place
        && !git_paused
        && diff.impact != Impact::Recreate
        && (diff.impact == Impact::HotUpdate || pods_behind || held);
    if hot {
        hot_update(&ctx, &want, omit_replicas, &mut out).await?;
        return Ok(out);
    }
    apply(&ctx, &want, None, omit_replicas, false).await?;
    if git_paused && matches!(diff.impact, Impact::HotUpdate | Impact::Recreate) {
        out.outcome = Outcome::Paused;
        out.message = Some(
            "rollingUpdate.paused is true in Git: the template is applied, no pod is updated"
                .into(),
        );
        return Ok(out);
    }
    out.outcome = if opts.wait {
        match wait_okg_rollout(&ctx, &want).await {
            Ok(()) => Outcome::Synced,
            Err(ClusterError::Timeout { what, seconds }) => {
                out.message = Some(format!("timed out after {seconds}s waiting for {what}"));
                Outcome::TimedOut
            }
            Err(e) => return Err(e),
        }
    } else if okg_rollout_done(&ctx, &want).await? {
        Outcome::Synced
    } else {
        Outcome::Progressing
    };
    Ok(out)
}

/// True when another controller (an HPA, KEDA, OKG's Kill path) owns `spec.replicas`: then it is not drift.
fn replicas_owned_elsewhere(live: Option<&GameServerSet>) -> bool {
    let Some(g) = live else { return false };
    g.metadata.managed_fields.as_ref().is_some_and(|mfs| {
        mfs.iter().any(|mf| {
            let manager = mf.manager.as_deref().unwrap_or_default();
            let owns = mf
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some());
            owns && manager != FIELD_MANAGER && !manager.starts_with("kubectl")
        })
    })
}

fn hold_of(gss: Option<&GameServerSet>) -> Option<&str> {
    gss?.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_HOLD)
        .map(String::as_str)
}

/// The containers of the pod whose spec image differs from the target.
fn behind(pod: &Pod, targets: &[(String, String)]) -> Vec<String> {
    targets
        .iter()
        .filter(|(c, img)| live::spec_image(pod, c).is_some_and(|i| i != img))
        .map(|(c, _)| c.clone())
        .collect()
}

/// Server-side applies the set as Git wants it; `hold` pauses OKG's rollout and marks the pause as ours.
async fn apply(
    ctx: &Ctx<'_>,
    want: &GameServerSet,
    hold: Option<&str>,
    omit_replicas: bool,
    dry_run: bool,
) -> Result<(), ClusterError> {
    let mut spec = serde_json::to_value(&want.spec).unwrap_or(Value::Null);
    if omit_replicas {
        if let Some(o) = spec.as_object_mut() {
            o.remove("replicas");
        }
    }
    if hold.is_some() {
        spec["updateStrategy"]["rollingUpdate"]["paused"] = json!(true);
    }
    let mut labels = want.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    let mut annotations = want.metadata.annotations.clone().unwrap_or_default();
    if let Some(h) = hold {
        annotations.insert(ANNOTATION_HOLD.to_string(), h.to_string());
    }
    if let Some(c) = &ctx.opts.source_commit {
        annotations.insert(ANNOTATION_REVISION.to_string(), c.clone());
    }
    let obj = json!({
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServerSet",
        "metadata": {"name": ctx.name, "namespace": ctx.ns, "labels": labels, "annotations": annotations},
        "spec": spec,
    });
    let mut pp = PatchParams::apply(FIELD_MANAGER).force();
    if dry_run {
        pp = pp.dry_run();
    }
    Api::<GameServerSet>::namespaced(ctx.client.clone(), &ctx.ns)
        .patch(&ctx.name, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| ClusterError::api("apply", format!("gameserverset {}", ctx.key()), e))?;
    Ok(())
}

/// Waits until OKG has passed the template to the Advanced StatefulSet, and returns its updateRevision.
async fn wait_propagated(
    ctx: &Ctx<'_>,
    targets: &[(String, String)],
) -> Result<String, ClusterError> {
    let api = Api::<AdvancedStatefulSet>::namespaced(ctx.client.clone(), &ctx.ns);
    let deadline = Instant::now() + ctx.opts.propagation_timeout;
    loop {
        let asts = api.get_opt(&ctx.name).await.map_err(|e| {
            ClusterError::api(
                "get",
                format!("statefulset.apps.kruise.io {}", ctx.key()),
                e,
            )
        })?;
        if let Some(a) = asts {
            let images: Vec<(String, String)> = a
                .spec
                .template
                .spec
                .as_ref()
                .map(|s| {
                    s.containers
                        .iter()
                        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let status = a.status.as_ref();
            let observed = status.and_then(|s| s.observed_generation) >= a.metadata.generation;
            if observed && images == targets {
                if let Some(rev) = status.and_then(|s| s.update_revision.clone()) {
                    return Ok(rev);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: format!(
                    "OKG to pass the template of {} to its Advanced StatefulSet",
                    ctx.key()
                ),
                seconds: ctx.opts.propagation_timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Is OKG's own rollout (recreate, scale, create) done: every pod updated and ready?
async fn okg_rollout_done(ctx: &Ctx<'_>, want: &GameServerSet) -> Result<bool, ClusterError> {
    let api = Api::<AdvancedStatefulSet>::namespaced(ctx.client.clone(), &ctx.ns);
    let gss_api = Api::<GameServerSet>::namespaced(ctx.client.clone(), &ctx.ns);
    let partition = want.rolling_update().partition.unwrap_or(0);
    let gss = gss_api
        .get_opt(&ctx.name)
        .await
        .map_err(|e| ClusterError::api("get", format!("gameserverset {}", ctx.key()), e))?;
    let asts = api.get_opt(&ctx.name).await.map_err(|e| {
        ClusterError::api(
            "get",
            format!("statefulset.apps.kruise.io {}", ctx.key()),
            e,
        )
    })?;
    let (Some(g), Some(a)) = (gss, asts) else {
        return Ok(false);
    };
    let replicas = g.spec.replicas.unwrap_or(0);
    let s = a.status.clone().unwrap_or_default();
    let observed = s.observed_generation >= a.metadata.generation;
    let gss_observed =
        g.status.as_ref().and_then(|s| s.observed_generation) >= g.metadata.generation;
    Ok(observed
        && gss_observed
        && s.replicas == replicas
        && s.ready_replicas == replicas
        && s.updated_ready_replicas >= (replicas - partition).max(0))
}

/// Waits until OKG's own rollout is done, at most `--timeout`.
async fn wait_okg_rollout(ctx: &Ctx<'_>, want: &GameServerSet) -> Result<(), ClusterError> {
    let deadline = Instant::now() + ctx.opts.wait_timeout;
    loop {
        if okg_rollout_done(ctx, want).await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: format!("OKG to roll out {}", ctx.key()),
                seconds: ctx.opts.wait_timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A live view of the set's pods, fed by a watch.
struct PodWatch {
    store: reflector::Store<Pod>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    async fn start(ctx: &Ctx<'_>) -> Result<PodWatch, ClusterError> {
        let api = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.ns);
        let cfg = watcher::Config::default().labels(&format!("{LABEL_OWNER_GSS}={}", ctx.name));
        let (store, writer) = reflector::store();
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let stream = reflector::reflector(
            writer,
            watcher(api, cfg).backoff(live::WatchBackoff::default()),
        );
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut s = std::pin::pin!(stream);
            // Errors are retried by the backoff; the stream ends only when the task is aborted.
            while let Some(ev) = s.next().await {
                if ev.is_ok() {
                    n += 1;
                    let _ = tx.send(n);
                }
            }
        });
        let ready =
            tokio::time::timeout(ctx.opts.propagation_timeout, store.wait_until_ready()).await;
        if !matches!(ready, Ok(Ok(()))) {
            task.abort();
            return Err(ClusterError::Timeout {
                what: format!("the first list of pods of {}", ctx.key()),
                seconds: ctx.opts.propagation_timeout.as_secs(),
            });
        }
        Ok(PodWatch {
            store,
            changed,
            task,
        })
    }

    fn get(&self, name: &str, ns: &str) -> Option<std::sync::Arc<Pod>> {
        self.store.get(&reflector::ObjectRef::new(name).within(ns))
    }

    fn pods(&self) -> Vec<std::sync::Arc<Pod>> {
        self.store.state()
    }

    /// Waits for the next change, at most `max`.
    async fn next_change(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.changed()).await;
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod being restarted: where its containers started from.
struct InFlight {
    name: String,
    containers: Vec<String>,
    baseline: BTreeMap<String, (i32, Option<String>)>,
    old_images: BTreeMap<String, String>,
    old_revision: Option<String>,
    started: Instant,
}

impl InFlight {
    /// Every restarted container runs its target image, restarted since the patch, and the pod is ready.
    fn done(&self, pod: &Pod, targets: &[(String, String)]) -> bool {
        live::is_ready(pod)
            && self.containers.iter().all(|c| {
                let img = targets
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, i)| i.as_str())
                    .unwrap_or_default();
                container_done(pod, c, img, self.baseline.get(c))
            })
    }
}

/// Rolls a hot update out: hold OKG, patch pods in waves, release.
async fn hot_update(
    ctx: &Ctx<'_>,
    want: &GameServerSet,
    omit_replicas: bool,
    out: &mut SetOutcome,
) -> Result<(), ClusterError> {
    let targets = want.container_images();
    let fingerprint = crate::diff::fingerprint(want);
    apply(ctx, want, Some(&fingerprint), omit_replicas, false).await?;
    let update_revision = wait_propagated(ctx, &targets).await?;
    let mut watch = PodWatch::start(ctx).await?;
    let pod_api = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.ns);
    let lifecycle_hook = want
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.in_place_update.clone());

    // Decide each pod's fate from what the cluster shows now.
    let mut pods: Vec<std::sync::Arc<Pod>> = watch
        .pods()
        .into_iter()
        .filter(|p| !live::is_terminating(p))
        .collect();
    pods.sort_by_key(|p| {
        (
            std::cmp::Reverse(live::update_priority(p)),
            std::cmp::Reverse(live::ordinal(p, &ctx.name)),
        )
    });
    let replicas = want.spec.replicas.unwrap_or(pods.len() as i32).max(0) as usize;
    let ru = want.rolling_update();
    let partition = ru.partition.unwrap_or(0).max(0) as usize;
    let max_unavailable = scaled(ru.max_unavailable.as_ref(), replicas);
    let may_update = replicas.saturating_sub(partition);
    let mut todo: Vec<String> = Vec::new();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut updated_count = 0usize;
    for p in &pods {
        let name = live::pod_name(p).to_string();
        let behind_now = behind(p, &targets);
        if behind_now.is_empty() {
            // Already on Git's images: done, or restarting from an earlier run (level-triggered).
            updated_count += 1;
            let restarting = targets
                .iter()
                .any(|(c, img)| !container_done(p, c, img, None));
            if restarting {
                in_flight.push(InFlight {
                    name: name.clone(),
                    containers: targets.iter().map(|(c, _)| c.clone()).collect(),
                    baseline: BTreeMap::new(),
                    old_images: BTreeMap::new(),
                    old_revision: None,
                    started: Instant::now(),
                });
            } else {
                relabel(&pod_api, p, &update_revision).await?;
                out.pods.push(PodResult {
                    name,
                    result: PodOutcome::Current,
                    containers: vec![],
                    message: None,
                });
            }
            continue;
        }
        let ops = live::ops_state(p);
        if ctx.opts.skip_ops_states.iter().any(|s| s == ops)
            || (ctx.opts.skip_allocated && ops == "Allocated")
        {
            out.pods.push(PodResult {
                name,
                result: PodOutcome::Skipped,
                containers: behind_now,
                message: Some(format!("opsState {ops}")),
            });
            continue;
        }
        todo.push(name);
    }
    let allowed = may_update.saturating_sub(updated_count);
    for name in todo.split_off(allowed.min(todo.len())) {
        out.pods.push(PodResult {
            name,
            result: PodOutcome::KeptByPartition,
            containers: vec![],
            message: Some(format!("partition {partition}")),
        });
    }
    todo.reverse(); // pop() takes the highest priority first
    ctx.emit(Progress::Started {
        set: ctx.key(),
        pods: todo.len() + in_flight.len(),
    });

    let mut failed: Option<String> = None;
    while failed.is_none() && (!todo.is_empty() || !in_flight.is_empty()) {
        // Wave: fill the budget of unavailable pods.
        let unavailable_other = watch
            .pods()
            .iter()
            .filter(|p| {
                !live::is_ready(p) && !in_flight.iter().any(|f| f.name == live::pod_name(p))
            })
            .count();
        let budget = max_unavailable.saturating_sub(in_flight.len() + unavailable_other);
        let mut wave = Vec::new();
        while wave.len() < budget {
            match todo.pop() {
                Some(n) => wave.push(n),
                None => break,
            }
        }
        let started: Vec<Result<Option<InFlight>, ClusterError>> = futures::stream::iter(wave)
            .map(|name| {
                let api = pod_api.clone();
                let watch = &watch;
                let targets = &targets;
                let rev = update_revision.clone();
                let ns = ctx.ns.clone();
                let hook = lifecycle_hook.is_some();
                async move { start_pod(&api, watch, &ns, &name, targets, &rev, hook).await }
            })
            .buffer_unordered(ctx.opts.patch_concurrency.max(1))
            .collect()
            .await;
        for s in started {
            if let Some(f) = s? {
                in_flight.push(f);
            }
        }
        // Check the pods in flight against the watch.
        let mut still = Vec::new();
        for f in in_flight.drain(..) {
            let Some(p) = watch.get(&f.name, &ctx.ns) else {
                continue;
            };
            if let Some((c, why)) = live::failure(&p, &f.containers) {
                let msg = format!("container {c}: {why}");
                failed = Some(format!("pod {} {msg}", f.name));
                out.pods.push(fail_pod(ctx, &pod_api, &p, &f, msg).await?);
                continue;
            }
            if f.done(&p, &targets) {
                if lifecycle_hook.is_some() {
                    set_lifecycle(&pod_api, &f.name, "Normal").await?;
                }
                ctx.emit(Progress::PodDone {
                    set: ctx.key(),
                    pod: f.name.clone(),
                });
                out.pods.push(PodResult {
                    name: f.name,
                    result: PodOutcome::Updated,
                    containers: f.containers,
                    message: None,
                });
                continue;
            }
            if f.started.elapsed() > ctx.opts.pod_timeout {
                let msg = format!(
                    "not ready with the new image after {}s",
                    ctx.opts.pod_timeout.as_secs()
                );
                failed = Some(format!("pod {} {msg}", f.name));
                out.pods.push(fail_pod(ctx, &pod_api, &p, &f, msg).await?);
                continue;
            }
            still.push(f);
        }
        in_flight = still;
        if failed.is_some() {
            // Let the pods already restarting finish; start no more.
            while !in_flight.is_empty() {
                watch.next_change(Duration::from_millis(500)).await;
                let mut rest = Vec::new();
                for f in in_flight.drain(..) {
                    let Some(p) = watch.get(&f.name, &ctx.ns) else {
                        continue;
                    };
                    let (result, message) = if let Some((c, why)) = live::failure(&p, &f.containers)
                    {
                        (PodOutcome::Failed, Some(format!("container {c}: {why}")))
                    } else if f.done(&p, &targets) {
                        (PodOutcome::Updated, None)
                    } else if f.started.elapsed() > ctx.opts.pod_timeout {
                        (
                            PodOutcome::Failed,
                            Some("not ready with the new image in time".to_string()),
                        )
                    } else {
                        rest.push(f);
                        continue;
                    };
                    out.pods.push(PodResult {
                        name: f.name,
                        result,
                        containers: f.containers,
                        message,
                    });
                }
                in_flight = rest;
            }
            break;
        }
        if !todo.is_empty() || !in_flight.is_empty() {
            watch.next_change(Duration::from_millis(250)).await;
        }
    }
    for name in todo {
        out.pods.push(PodResult {
            name,
            result: PodOutcome::NotReached,
            containers: vec![],
            message: None,
        });
    }
    out.pods.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(why) = failed {
        // The hold stays: OKG must not carry the failing image to the other pods.
        out.outcome = Outcome::Failed;
        out.message = Some(why);
    } else {
        apply(ctx, want, None, omit_replicas, false).await?;
        out.outcome = Outcome::Synced;
        if out.pods.iter().any(|p| p.result == PodOutcome::Skipped) {
            out.message = Some("pods skipped by policy stay on their old images".into());
        }
    }
    ctx.emit(Progress::Finished {
        set: ctx.key(),
        outcome: out.outcome,
    });
    Ok(())
}

/// Pod writes carry hotsync's field manager, so that `managedFields` says who changed an image.
fn pod_patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// maxUnavailable as a pod count: an int, or a percentage of replicas rounded down; at least 1.
fn scaled(v: Option<&IntOrString>, replicas: usize) -> usize {
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => (*i).max(0) as usize,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<usize>().ok())
            .map(|p| replicas * p / 100)
            .or_else(|| s.parse().ok())
            .unwrap_or(1),
    };
    n.max(1)
}

/// Has the container restarted with the image and is it ready? With no baseline (a run that resumes),
/// the image and readiness decide.
fn container_done(
    pod: &Pod,
    container: &str,
    image: &str,
    baseline: Option<&(i32, Option<String>)>,
) -> bool {
    let Some(s) = live::container_status(pod, container) else {
        return false;
    };
    let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
    let restarted = match baseline {
        Some((count, id)) => s.restart_count > *count || s.container_id != *id,
        None => true,
    };
    running && s.ready && restarted && same_image(&s.image, image)
}

/// Image references as kubelets report them: fully qualified (default registry and `library/` spelled
/// out), where a manifest often gives the short form; the short form matches its qualified spellings.
fn same_image(reported: &str, wanted: &str) -> bool {
    reported == wanted || reported.ends_with(&format!("/{wanted}"))
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Patches one pod: its containers' images and its revision label, guarded by `test` operations on the
/// old values. On a conflict the pod is re-read from the watch and re-planned.
async fn start_pod(
    api: &Api<Pod>,
    watch: &PodWatch,
    ns: &str,
    name: &str,
    targets: &[(String, String)],
    revision: &str,
    hook: bool,
) -> Result<Option<InFlight>, ClusterError> {
    let mut attempt = 0;
    // The first try reads the pod from the watch; after a conflict, fresh from the API server.
    let mut fresh: Option<std::sync::Arc<Pod>> = watch.get(name, ns);
    loop {
        attempt += 1;
        let pod = match fresh.take() {
            Some(p) => p,
            None => api
                .get_opt(name)
                .await
                .map_err(|e| ClusterError::api("get", format!("pod {ns}/{name}"), e))?
                .map(std::sync::Arc::new)
                .ok_or_else(|| ClusterError::WatchEnded {
                    what: format!("pod {ns}/{name} (deleted)"),
                })?,
        };
        let containers = behind(&pod, targets);
        if containers.is_empty() {
            return Ok(None);
        }
        // The guard is on what this patch changes: the old images and the old revision label. The
        // resourceVersion is not tested: the kubelet's status writes bump it all the time, and a
        // test on it turned every one of them into a needless conflict; a JSON patch touches only
        // its own paths, so a concurrent edit elsewhere in the pod is never overwritten.
        let mut ops: Vec<Value> = Vec::new();
        let mut baseline = BTreeMap::new();
        let mut old_images = BTreeMap::new();
        let spec_containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        for (i, c) in spec_containers.iter().enumerate() {
            let Some((_, img)) = targets.iter().find(|(n, _)| *n == c.name) else {
                continue;
            };
            if !containers.contains(&c.name) {
                continue;
            }
            let old = c.image.clone().unwrap_or_default();
            ops.push(
                json!({"op": "test", "path": format!("/spec/containers/{i}/image"), "value": old}),
            );
            ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": img}));
            let st = live::container_status(&pod, &c.name);
            baseline.insert(
                c.name.clone(),
                (
                    st.map(|s| s.restart_count).unwrap_or(0),
                    st.and_then(|s| s.container_id.clone()),
                ),
            );
            old_images.insert(c.name.clone(), old);
        }
        let old_revision = live::revision(&pod).map(str::to_string);
        let label_path = format!("/metadata/labels/{}", pointer_escape(LABEL_REVISION_HASH));
        match &old_revision {
            Some(old) => {
                ops.push(json!({"op": "test", "path": label_path, "value": old}));
                ops.push(json!({"op": "replace", "path": label_path, "value": revision}));
            }
            None => ops.push(json!({"op": "add", "path": label_path, "value": revision})),
        }
        if hook {
            ops.push(json!({"op": "add", "path": format!("/metadata/labels/{}", pointer_escape(LABEL_LIFECYCLE_STATE)), "value": "Updating"}));
        }
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).map_err(|e| ClusterError::Api {
                action: "build patch for",
                object: format!("pod {ns}/{name}"),
                source: kube::Error::SerdeError(e),
            })?;
        match api
            .patch(name, &pod_patch_params(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                return Ok(Some(InFlight {
                    name: name.to_string(),
                    containers,
                    baseline,
                    old_images,
                    old_revision,
                    started: Instant::now(),
                }))
            }
            Err(e) => {
                let err = ClusterError::api("patch", format!("pod {ns}/{name}"), e);
                if err.is_conflict() && attempt < 10 {
                    // Someone changed the pod since we read it: re-read it and decide again.
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                    continue;
                }
                return Err(err);
            }
        }
    }
}

/// Moves the pod's Kruise lifecycle label.
async fn set_lifecycle(api: &Api<Pod>, name: &str, state: &str) -> Result<(), ClusterError> {
    let patch = json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: state}}});
    api.patch(name, &pod_patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ClusterError::api("patch", format!("pod {name}"), e))?;
    Ok(())
}

/// Sets the revision label of a pod that already runs Git's images (Kruise's relabel pass).
async fn relabel(api: &Api<Pod>, pod: &Pod, revision: &str) -> Result<(), ClusterError> {
    if live::revision(pod) == Some(revision) {
        return Ok(());
    }
    let patch = json!({"metadata": {"labels": {LABEL_REVISION_HASH: revision}}});
    api.patch(
        live::pod_name(pod),
        &pod_patch_params(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ClusterError::api("patch", format!("pod {}", live::pod_name(pod)), e))?;
    Ok(())
}

/// Handles a failed pod by the policy: roll its images back, or leave it.
async fn fail_pod(
    ctx: &Ctx<'_>,
    api: &Api<Pod>,
    pod: &Pod,
    f: &InFlight,
    msg: String,
) -> Result<PodResult, ClusterError> {
    if ctx.opts.on_failure == OnFailure::Halt || f.old_images.is_empty() {
        return Ok(PodResult {
            name: f.name.clone(),
            result: PodOutcome::Failed,
            containers: f.containers.clone(),
            message: Some(msg),
        });
    }
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut ops = Vec::new();
    for (i, c) in spec_containers.iter().enumerate() {
        if let Some(old) = f.old_images.get(&c.name) {
            ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": old}));
        }
    }
    if let Some(old) = &f.old_revision {
        ops.push(json!({"op": "replace", "path": format!("/metadata/labels/{}", pointer_escape(LABEL_REVISION_HASH)), "value": old}));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| ClusterError::Api {
            action: "build patch for",
            object: format!("pod {}", f.name),
            source: kube::Error::SerdeError(e),
        })?;
    api.patch(&f.name, &pod_patch_params(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| ClusterError::api("patch", format!("pod {}/{}", ctx.ns, f.name), e))?;
    Ok(PodResult {
        name: f.name.clone(),
        result: PodOutcome::RolledBack,
        containers: f.containers.clone(),
        message: Some(msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_scales_percentages_down_and_is_at_least_one() {
        assert_eq!(scaled(None, 10), 1);
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10), 2);
        assert_eq!(scaled(Some(&IntOrString::String("100%".into())), 500), 500);
        assert_eq!(scaled(Some(&IntOrString::String("1%".into())), 10), 1);
        assert_eq!(scaled(Some(&IntOrString::Int(3)), 10), 3);
    }

    #[test]
    fn a_fully_qualified_reported_image_matches_its_short_form() {
        assert!(same_image(
            "registry.example/library/nginx:1.25",
            "nginx:1.25"
        ));
        assert!(same_image("registry.example/team/app:2", "team/app:2"));
        assert!(!same_image("nginx:1.25", "nginx:1.26"));
    }
}
