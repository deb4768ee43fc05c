//! One set's sync against the cluster: decide from Git and the cluster what happens (`diff`), then
//! apply the set (server-side apply), and for a hot update hold OKG's own rollout and restart the changed
//! containers in place, pod by pod, with Kruise's in-place protocol.
//!
//! The decisions are pure ([`plan`]: the pods in order, those kept by partition or deferred by policy,
//! and each pod's next protocol step); [`exec`] runs them, every write bounded by a timeout and counted.
//! Every step decides from what the cluster shows now (level-triggered): a process killed at any point
//! and started again reads the hold annotation and each pod's labels, annotations and conditions, and
//! carries on where it stopped, restarting no container twice. A conflict (409, or a failed `test` in a
//! JSON patch) means re-read and re-plan that pod, never a blind retry.

pub mod exec;
pub mod freeze;
pub mod plan;
pub mod preview;
pub mod steps;

use crate::diff::{diff_sets, Class, Impact};
use crate::live::{self, ClusterError};
use crate::manifest::DesiredSet;
use crate::model::{policy_is_in_place, AdvancedStatefulSet, GameServerSet, LABEL_OWNER_GSS};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};
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
/// On a held set: since when game servers have been deferred by policy (RFC 3339), for `--defer-deadline`.
pub const ANNOTATION_DEFERRED_SINCE: &str = "hotsync.dev/deferred-since";

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
    /// Pods whose GameServer opsState is one of these are deferred: updated once it changes.
    pub skip_ops_states: Vec<String>,
    /// Defer `Allocated` game servers too (update only idle ones).
    pub skip_allocated: bool,
    /// After this long with game servers deferred, the set is reported Degraded (they are never forced).
    pub defer_deadline: Option<Duration>,
    /// How long a pod may stay held by the in-place lifecycle hook (`PreparingUpdate`).
    pub hook_timeout: Duration,
    /// The bound of every write (more than any admission webhook's `timeoutSeconds`, at most 30 s).
    pub write_timeout: Duration,
    /// Ask the registries whether each new image exists before any container restarts into it
    /// (`None`: do not ask).
    pub image_check: Option<crate::registry::Registries>,
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
    /// Freeze windows for every set (`--freeze`), beside each set's `hotsync.dev/freeze`.
    pub freeze: Vec<freeze::Window>,
    /// Roll out inside freeze windows all the same (`--ignore-freeze`, logged).
    pub ignore_freeze: bool,
    /// The time freeze windows and step pauses are judged by (tests inject it).
    pub clock: Clock,
}

/// Where the time comes from: the system's, or a test's.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(std::sync::Arc::new(jiff::Timestamp::now))
    }

    pub fn new(f: impl Fn() -> jiff::Timestamp + Send + Sync + 'static) -> Clock {
        Clock(std::sync::Arc::new(f))
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

impl RolloutOptions {
    /// The freeze window `want` is inside of now (`--freeze` or its `hotsync.dev/freeze`), unless
    /// `--ignore-freeze`, which is logged.
    pub fn frozen(&self, want: &GameServerSet) -> Option<String> {
        let w = self.active_window(want)?;
        if self.ignore_freeze {
            tracing::warn!(set = %set_name(want), window = %w, "inside a freeze window: rolled out all the same (--ignore-freeze)");
            return None;
        }
        Some(w)
    }

    /// The freeze window `want` is inside now (`--freeze` or its own `hotsync.dev/freeze`), whatever
    /// `--ignore-freeze` says.
    pub fn active_window(&self, want: &GameServerSet) -> Option<String> {
        let own = want
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(freeze::ANNOTATION_FREEZE))
            .and_then(|v| freeze::parse_list(v).ok())
            .unwrap_or_default();
        let now = self.clock.now();
        let w = freeze::active(&self.freeze, now).or_else(|| freeze::active(&own, now))?;
        Some(w.text.clone())
    }
}

fn set_name(want: &GameServerSet) -> String {
    format!(
        "{}/{}",
        want.metadata.namespace.as_deref().unwrap_or_default(),
        want.metadata.name.as_deref().unwrap_or_default()
    )
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
            defer_deadline: None,
            hook_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(40),
            image_check: None,
            on_failure: OnFailure::Rollback,
            pod_timeout: Duration::from_secs(300),
            propagation_timeout: Duration::from_secs(60),
            allow_recreate: false,
            wait: true,
            wait_timeout: Duration::from_secs(600),
            dry_run: false,
            source_commit: None,
            patch_concurrency: 64,
            freeze: Vec::new(),
            ignore_freeze: false,
            clock: Clock::system(),
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
    /// A progressive rollout is paused at a step (`hotsync.dev/steps`): the step's pods are updated, the
    /// set stays held, and the next step waits for `hotsync promote` or its pause.
    StepPaused,
    /// Every pod it may update is updated; game servers deferred by policy wait for their players, and
    /// the set stays held so that OKG does not restart them either.
    Deferred,
    /// Deferred past `--defer-deadline` (the pods are still never forced).
    Degraded,
    /// Not applied: a recreate-class change without `--allow-recreate`.
    Refused,
    /// A pod failed; the rollout stopped.
    Failed,
    /// `hotsync abort`: the pods the rollout updated are rolled back, the set stays held, until Git
    /// holds another template.
    Aborted,
    /// A wait ran out of time.
    TimedOut,
    /// Inside a freeze window: no rollout starts (nothing applied) or goes on (the pods under way
    /// finish, the set stays held); it goes on after the window.
    Frozen,
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
    /// Deferred by policy (opsState): updated once it leaves the list.
    Deferred,
    /// Kept on the old version by `partition`.
    KeptByPartition,
    /// Failed; left as it is (`--on-failure halt`).
    Failed,
    /// Failed and put back on its old images.
    RolledBack,
    /// Not reached: the rollout stopped before it.
    NotReached,
    /// Left for a later step of a progressive rollout (`hotsync.dev/steps`).
    NextStep,
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
    /// The writes this set's sync made, by result.
    pub writes: exec::WriteCounts,
    /// The step of a progressive rollout it is at (`hotsync.dev/steps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepReport>,
    /// The set's `metadata.generation` when its sync ended (after hotsync's last write to it): the
    /// daemon skips a set whose Git and generation are both unchanged since it was synced.
    #[serde(skip)]
    pub generation: Option<i64>,
}

/// Where a progressive rollout stands: at step `step` (1-based) of `of`, which has `pods` pods in total
/// on the new template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub of: usize,
    pub pods: usize,
}

/// Progress of a rollout, for a terminal or a log.
#[derive(Clone, Debug)]
pub enum Progress {
    Started {
        set: String,
        pods: usize,
    },
    PodDone {
        set: String,
        pod: String,
    },
    /// `revision`: the commit rolled out (when known); `message`: why it did not end Synced.
    Finished {
        set: String,
        outcome: Outcome,
        revision: Option<String>,
        message: Option<String>,
    },
}

/// Where progress goes.
pub type ProgressTx = tokio::sync::mpsc::UnboundedSender<Progress>;

pub(crate) struct Ctx<'a> {
    client: &'a Client,
    opts: &'a RolloutOptions,
    progress: Option<&'a ProgressTx>,
    ns: String,
    name: String,
    writer: exec::Writer,
    /// The set's `metadata.generation` as the last read or write of it showed (-1: none yet).
    generation: std::sync::atomic::AtomicI64,
}

impl Ctx<'_> {
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn saw(&self, gss: Option<&GameServerSet>) {
        if let Some(g) = gss.and_then(|g| g.metadata.generation) {
            self.generation
                .store(g, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn generation(&self) -> Option<i64> {
        Some(self.generation.load(std::sync::atomic::Ordering::SeqCst)).filter(|g| *g >= 0)
    }

    pub(crate) fn emit(&self, p: Progress) {
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
        writer: exec::Writer::new(opts.write_timeout),
        generation: std::sync::atomic::AtomicI64::new(-1),
    };
    let mut out = sync_set_in(&ctx, desired).await?;
    out.generation = ctx.generation();
    Ok(out)
}

async fn sync_set_in(ctx: &Ctx<'_>, desired: &DesiredSet) -> Result<SetOutcome, ClusterError> {
    let (client, opts) = (ctx.client, ctx.opts);
    let live = live::read(client, &ctx.ns, &ctx.name).await?;
    ctx.saw(live.gss.as_ref());
    let mut want = desired.gss.clone();
    let omit_replicas = replicas_owned_elsewhere(live.gss.as_ref());
    if omit_replicas {
        want.spec.replicas = live.gss.as_ref().and_then(|g| g.spec.replicas);
    }
    let diff = diff_sets(live.gss.as_ref(), Some(&want));
    // OKG's webhook refuses a change of the network type: say so instead of failing at the apply.
    if let Some(w) = diff
        .warnings
        .iter()
        .find(|w| w.contains("change network type is not allowed"))
    {
        return Ok(SetOutcome {
            namespace: ctx.ns.clone(),
            name: ctx.name.clone(),
            impact: diff.impact,
            outcome: Outcome::Refused,
            message: Some(w.clone()),
            pods: Vec::new(),
            warnings: diff.warnings.clone(),
            target_images: want.container_images(),
            judge_drift: false,
            writes: Default::default(),
            generation: None,
            step: None,
        });
    }
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
        writes: Default::default(),
        generation: None,
        step: None,
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
    if let Some(registries) = &opts.image_check {
        if let Some(why) = missing_image(ctx, registries, live.gss.as_ref(), &want).await? {
            out.outcome = Outcome::Failed;
            out.message = Some(format!("{why}; nothing of this set was applied"));
            return Ok(out);
        }
    }
    let on_delete = crate::diff::on_delete(&want);
    if opts.dry_run {
        apply(ctx, &want, None, omit_replicas, true).await?;
        out.outcome = Outcome::DryRun;
        if in_place && !on_delete && live.gss.is_some() {
            out.pods = exec::dry_run(&live, &want, opts);
        }
        out.writes = ctx.writer.counts();
        return Ok(out);
    }
    let pods_behind = live.pods.iter().any(|p| {
        !live::is_terminating(p)
            && want
                .container_images()
                .iter()
                .any(|(c, img)| live::spec_image(p, c).is_some_and(|i| i != img))
    });
    let held = hold_of(live.gss.as_ref()).is_some();
    // The rollout under way is of the template Git holds now: the executor judges it inside a window
    // too (it starts no pod there), so that a set paused at a step, stopped by its gate or aborted is
    // reported as such, with its step, rather than as frozen.
    let this_rollout =
        hold_of(live.gss.as_ref()).is_some_and(|h| h == crate::diff::fingerprint(&want).as_str());
    // A freeze holds back what restarts game servers (a hot update, a recreate, a rollout under way);
    // creating, scaling and configuring a set go on.
    if (matches!(diff.impact, Impact::HotUpdate | Impact::Recreate) || held || pods_behind)
        && !(this_rollout && in_place)
    {
        if let Some(window) = opts.frozen(&want) {
            out.outcome = Outcome::Frozen;
            out.message = Some(format!(
                "inside the freeze window {window}: no rollout starts or goes on; nothing of this set was applied, it goes on after the window"
            ));
            ctx.emit(Progress::Finished {
                set: ctx.key(),
                outcome: out.outcome,
                revision: ctx.opts.source_commit.clone(),
                message: out.message.clone(),
            });
            return Ok(out);
        }
    }
    let hot = live.gss.is_some()
        && in_place
        && !git_paused
        && !on_delete
        && diff.impact != Impact::Recreate
        && (diff.impact == Impact::HotUpdate || pods_behind || held);
    if hot {
        // A rollout under way (held, or pods behind Git) goes on as a hot update, whatever the set's
        // own diff says (the live set differs from Git only by hotsync's hold then).
        out.impact = out.impact.max(Impact::HotUpdate);
        exec::hot_update(ctx, &want, &live, omit_replicas, &mut out).await?;
        out.writes = ctx.writer.counts();
        return Ok(out);
    }
    apply(ctx, &want, None, omit_replicas, false).await?;
    if git_paused && matches!(diff.impact, Impact::HotUpdate | Impact::Recreate) {
        out.outcome = Outcome::Paused;
        out.message = Some(
            "rollingUpdate.paused is true in Git: the template is applied, no pod is updated"
                .into(),
        );
        return Ok(out);
    }
    out.outcome = if opts.wait {
        match wait_okg_rollout(ctx, &want).await {
            Ok(()) => Outcome::Synced,
            Err(ClusterError::Timeout { what, seconds }) => {
                out.message = Some(format!("timed out after {seconds}s waiting for {what}"));
                Outcome::TimedOut
            }
            Err(e) => return Err(e),
        }
    } else if okg_rollout_done(ctx, &want).await? {
        Outcome::Synced
    } else {
        Outcome::Progressing
    };
    out.writes = ctx.writer.counts();
    Ok(out)
}

/// The first new image of the set that its registry does not have (or cannot be asked about), with the
/// credentials of the template's `imagePullSecrets`.
async fn missing_image(
    ctx: &Ctx<'_>,
    registries: &crate::registry::Registries,
    live: Option<&GameServerSet>,
    want: &GameServerSet,
) -> Result<Option<String>, ClusterError> {
    let before = live
        .map(GameServerSet::container_images)
        .unwrap_or_default();
    let new: Vec<String> = want
        .container_images()
        .into_iter()
        .filter(|c| !before.contains(c))
        .map(|(_, i)| i)
        .collect();
    if new.is_empty() {
        return Ok(None);
    }
    let mut creds = std::collections::BTreeMap::new();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.ns);
    let names = want
        .spec
        .game_server_template
        .template
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in names {
        let secret = secrets.get_opt(&r.name).await.map_err(|e| {
            ClusterError::api(
                "get",
                format!("secret {}/{} (imagePullSecrets)", ctx.ns, r.name),
                e,
            )
        })?;
        let Some(secret) = secret else { continue };
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(b) = secret.data.as_ref().and_then(|d| d.get(key)) {
                creds.extend(crate::registry::credentials_from_docker_config(&b.0));
            }
        }
    }
    for image in new {
        match registries.exists(&image, &creds).await {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Some(format!(
                "image {image} does not exist in its registry: no container was restarted into it"
            )))
            }
            Err(e) => return Ok(Some(e.to_string())),
        }
    }
    Ok(None)
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

pub(crate) fn hold_of(gss: Option<&GameServerSet>) -> Option<&str> {
    gss?.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_HOLD)
        .map(String::as_str)
}

/// Server-side applies the set as Git wants it; `hold` pauses OKG's rollout and marks the pause as ours.
pub(crate) async fn apply(
    ctx: &Ctx<'_>,
    want: &GameServerSet,
    hold: Option<&str>,
    omit_replicas: bool,
    dry_run: bool,
) -> Result<(), ClusterError> {
    apply_with(ctx, want, hold, None, omit_replicas, dry_run).await
}

/// [`apply`], with the time since which game servers have been deferred (kept on the held set).
pub(crate) async fn apply_with(
    ctx: &Ctx<'_>,
    want: &GameServerSet,
    hold: Option<&str>,
    deferred_since: Option<&str>,
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
    if let Some(d) = deferred_since {
        annotations.insert(ANNOTATION_DEFERRED_SINCE.to_string(), d.to_string());
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
    let api = Api::<GameServerSet>::namespaced(ctx.client.clone(), &ctx.ns);
    let applied = ctx
        .writer
        .run("apply", format!("gameserverset {}", ctx.key()), async {
            api.patch(&ctx.name, &pp, &Patch::Apply(&obj)).await
        })
        .await?;
    if !dry_run {
        ctx.saw(Some(&applied));
    }
    Ok(())
}

/// Waits until OKG has passed the template to the Advanced StatefulSet and Kruise has observed it; returns
/// the Advanced StatefulSet (its `status.updateRevision` set).
pub(crate) async fn wait_propagated(
    ctx: &Ctx<'_>,
    targets: &[(String, String)],
) -> Result<AdvancedStatefulSet, ClusterError> {
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
            if observed
                && images == targets
                && status.and_then(|s| s.update_revision.as_ref()).is_some()
            {
                return Ok(a);
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
pub(crate) struct PodWatch {
    store: reflector::Store<Pod>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    pub(crate) async fn start(ctx: &Ctx<'_>) -> Result<PodWatch, ClusterError> {
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

    pub(crate) fn get(&self, name: &str, ns: &str) -> Option<std::sync::Arc<Pod>> {
        self.store.get(&reflector::ObjectRef::new(name).within(ns))
    }

    pub(crate) fn pods(&self) -> Vec<std::sync::Arc<Pod>> {
        self.store.state()
    }

    /// Waits for the next change, at most `max`.
    pub(crate) async fn next_change(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.changed()).await;
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
