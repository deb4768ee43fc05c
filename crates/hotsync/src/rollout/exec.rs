//! Runs a set's hot update: applies the set with OKG's rollout held, then, turn by turn, re-plans from
//! what the pod watch shows ([`plan::plan_set`], [`plan::next_step`]) and makes each pod's next write of
//! Kruise's in-place protocol, within the set's `maxUnavailable`; then releases the hold, or keeps it
//! while game servers are deferred or a pod failed.
//!
//! Every write goes through a [`Writer`]: bounded by a timeout longer than any admission webhook may take,
//! and counted (success, API error, timeout), as linkerd's status controller does.

use super::plan::{self, Baseline, ContainerBaseline, Held, PlanOptions, Step, Target};
use super::{
    apply_with, hold_of, wait_propagated, Ctx, OnFailure, Outcome, PodOutcome, PodResult, PodWatch,
    Progress, RolloutOptions, SetOutcome, FIELD_MANAGER,
};
use crate::live::{self, ClusterError, LiveSet};
use crate::model::{
    lifecycle as lc, GameServerSet, ANNOTATION_INPLACE_GRACE, ANNOTATION_INPLACE_STATE,
    ANNOTATION_INPLACE_STATE_OLD, ANNOTATION_LIFECYCLE_TIMESTAMP, CONDITION_INPLACE_READY,
    LABEL_LIFECYCLE_STATE, LABEL_REVISION_HASH,
};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Writes by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteCounts {
    pub ok: u64,
    pub api_error: u64,
    pub timeout: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    api_error: AtomicU64,
    timeout: AtomicU64,
}

/// Bounds and counts writes.
#[derive(Clone, Debug)]
pub struct Writer {
    timeout: Duration,
    counters: Arc<Counters>,
}

impl Writer {
    pub fn new(timeout: Duration) -> Writer {
        Writer {
            timeout,
            counters: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> WriteCounts {
        WriteCounts {
            ok: self.counters.ok.load(Ordering::Relaxed),
            api_error: self.counters.api_error.load(Ordering::Relaxed),
            timeout: self.counters.timeout.load(Ordering::Relaxed),
        }
    }

    /// Runs one write, at most the writer's timeout.
    ///
    /// # Errors
    /// The API's error (as a [`ClusterError`], admission denials as such), or [`ClusterError::Timeout`].
    pub async fn run<T, F>(
        &self,
        action: &'static str,
        object: String,
        write: F,
    ) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = Result<T, kube::Error>>,
    {
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(v)) => {
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.counters.api_error.fetch_add(1, Ordering::Relaxed);
                Err(ClusterError::api(action, object, e))
            }
            Err(_) => {
                self.counters.timeout.fetch_add(1, Ordering::Relaxed);
                Err(ClusterError::Timeout {
                    what: format!("{action} {object}"),
                    seconds: self.timeout.as_secs(),
                })
            }
        }
    }
}

fn pod_patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn rfc3339_now() -> String {
    now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The state annotation's `updateTimestamp`, with its fraction of a second: the grace period is
/// measured from it, and a stamp cut to the second would shorten the grace by up to a second (Kruise
/// reads it with Go's RFC 3339 parser, which takes the fraction).
fn rfc3339_now_precise() -> String {
    now().strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

fn plan_options(want: &GameServerSet, opts: &RolloutOptions, pods: usize) -> PlanOptions {
    let ru = want.rolling_update();
    PlanOptions {
        defer_ops_states: opts.skip_ops_states.clone(),
        defer_allocated: opts.skip_allocated,
        replicas: usize::try_from(
            want.spec
                .replicas
                .unwrap_or(i32::try_from(pods).unwrap_or(0))
                .max(0),
        )
        .unwrap_or(0),
        partition: usize::try_from(ru.partition.unwrap_or(0).max(0)).unwrap_or(0),
        max_unavailable: ru.max_unavailable.clone(),
        step: None,
    }
}

/// The target as Git wants it, before OKG has a revision for it (a dry run).
fn git_target(want: &GameServerSet) -> Target {
    Target {
        revision: String::new(),
        images: want.container_images().into_iter().collect(),
        ..Default::default()
    }
}

/// What a sync would do to each pod, without doing it: the pods to update in the order it takes them,
/// then the pods it leaves alone.
pub fn dry_run(live: &LiveSet, want: &GameServerSet, opts: &RolloutOptions) -> Vec<PodResult> {
    let t = git_target(want);
    let behind: Vec<Pod> = live
        .pods
        .iter()
        .filter(|p| !plan::behind(p, &t).is_empty())
        .cloned()
        .collect();
    let p = plan::plan_set(
        &behind,
        &t,
        &plan_options(want, opts, live.pods.len()),
        now(),
    );
    let mut out: Vec<PodResult> = p
        .order
        .iter()
        .map(|name| PodResult {
            name: name.clone(),
            result: PodOutcome::WouldUpdate,
            containers: behind
                .iter()
                .find(|x| live::pod_name(x) == name)
                .map(|x| plan::behind(x, &t))
                .unwrap_or_default(),
            message: None,
        })
        .collect();
    // The pods to update in the order the rollout takes them; then those left alone, by name.
    let mut held: Vec<PodResult> = p
        .held
        .iter()
        .map(|(name, why)| held_result(name, why))
        .collect();
    held.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(held);
    out
}

fn held_result(name: &str, why: &Held) -> PodResult {
    match why {
        Held::Partition(n) => PodResult {
            name: name.to_string(),
            result: PodOutcome::KeptByPartition,
            containers: vec![],
            message: Some(format!("partition {n}")),
        },
        Held::Deferred(ops) => PodResult {
            name: name.to_string(),
            result: PodOutcome::Deferred,
            containers: vec![],
            message: Some(format!("opsState {ops}: updated once it changes")),
        },
        Held::Step { step, of } => PodResult {
            name: name.to_string(),
            result: PodOutcome::NextStep,
            containers: vec![],
            message: Some(format!(
                "the rollout is paused at step {} of {of}: updated at a later step",
                step + 1
            )),
        },
    }
}

/// What the executor remembers of a pod between turns (nothing it could not read again after a crash:
/// only when it began, and the resourceVersion it last acted on).
struct Tracked {
    started: Instant,
    /// The resourceVersion of the pod the last write was based on: until the watch shows another, that
    /// write is not seen yet and nothing more is done.
    acted_on: Option<String>,
    /// Rolling back to this revision (from the baseline).
    rollback: Option<Target>,
    /// Why it failed, once it did.
    failed: Option<String>,
    /// When the hook began holding it.
    hooked_since: Option<Instant>,
    /// Writes to it refused by an admission webhook in this rollout (not reset by the writes between:
    /// Kruise's refresh puts a refused pod's gate back to True, and marking it not ready again is a
    /// status write that no webhook sees).
    refusals: u32,
    /// After a refusal, nothing is written to it before then.
    retry_at: Option<Instant>,
}

/// Pods whose next step is written at the same time: a wave of 500 pods under maxUnavailable 100% is
/// walked through the protocol together instead of one write after another.
const STEPS_IN_FLIGHT: usize = 64;

/// How many times a webhook may refuse a write to one pod before the pod is failed. OKG's pod
/// webhook refuses an update whenever its network plugin's own API call fails (`getAdmissionResponse`
/// answers a plugin error with `admission.Denied`), which a conflict on the pod's Service makes happen
/// under load; Kruise's own controller would requeue. A webhook that means it refuses three times.
const REFUSALS_BEFORE_FAILING: u32 = 3;

/// Rolls a hot update out: hold OKG, update pods by Kruise's protocol, release (or keep the hold).
pub(crate) async fn hot_update(
    ctx: &Ctx<'_>,
    want: &GameServerSet,
    live: &LiveSet,
    omit_replicas: bool,
    out: &mut SetOutcome,
) -> Result<(), ClusterError> {
    let fingerprint = crate::diff::fingerprint(want);
    let deferred_since = live
        .gss
        .as_ref()
        .and_then(|g| g.metadata.annotations.as_ref())
        .and_then(|a| a.get(super::ANNOTATION_DEFERRED_SINCE))
        .cloned();
    apply_with(
        ctx,
        want,
        Some(&fingerprint),
        deferred_since.as_deref(),
        omit_replicas,
        false,
    )
    .await?;
    let targets = want.container_images();
    let asts = wait_propagated(ctx, &targets).await?;
    let revision = asts
        .status
        .as_ref()
        .and_then(|s| s.update_revision.clone())
        .unwrap_or_default();
    let ru = asts
        .spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.clone())
        .unwrap_or_default();
    let mut target = Target {
        revision: revision.clone(),
        images: targets.iter().cloned().collect(),
        hook: asts
            .spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.in_place_update.clone()),
        has_lifecycle: asts.spec.lifecycle.is_some(),
        grace: Duration::from_secs(
            u64::try_from(
                ru.in_place_update_strategy
                    .as_ref()
                    .and_then(|s| s.grace_period_seconds)
                    .unwrap_or(0)
                    .max(0),
            )
            .unwrap_or(0),
        ),
        min_ready: Duration::from_secs(
            u64::try_from(ru.min_ready_seconds.unwrap_or(0).max(0)).unwrap_or(0),
        ),
        ..Default::default()
    };
    // The template metadata the pods get: the update revision's template (the Advanced StatefulSet's),
    // and what the set's template had before this sync and no longer has.
    let new_meta = asts.spec.template.metadata.clone().unwrap_or_default();
    let old_meta = live
        .gss
        .as_ref()
        .map(crate::workload::asts_template)
        .and_then(|t| t.metadata)
        .unwrap_or_default();
    let meta_target = |new: Option<&BTreeMap<String, String>>,
                       old: Option<&BTreeMap<String, String>>| {
        let mut m: BTreeMap<String, Option<String>> = new
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for k in old.into_iter().flatten().map(|(k, _)| k) {
            m.entry(k.clone()).or_insert(None);
        }
        m
    };
    target.labels = meta_target(new_meta.labels.as_ref(), old_meta.labels.as_ref());
    target.annotations = meta_target(new_meta.annotations.as_ref(), old_meta.annotations.as_ref());
    let mut watch = PodWatch::start(ctx).await?;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let mut popts = plan_options(want, ctx.opts, watch.pods().len());
    // A progressive rollout: the step it may go to, promoted by itself when its pause is over and the
    // gate holds.
    let steps = super::steps::Steps::of(want.metadata.annotations.as_ref())
        .ok()
        .flatten();
    let live_annotations = live
        .gss
        .as_ref()
        .and_then(|g| g.metadata.annotations.clone())
        .unwrap_or_default();
    let aborted = super::steps::aborted_for(
        live_annotations
            .get(super::steps::ANNOTATION_ABORTED)
            .map(String::as_str),
        &fingerprint,
    );
    // A gate that failed at an earlier sync: the rollout of this template stays stopped.
    let mut gate_failed = super::steps::gate_failed_for(
        live_annotations
            .get(super::steps::ANNOTATION_GATE_FAILED)
            .map(String::as_str),
        &fingerprint,
    );
    let mut step_at = None;
    // Why a step due for promotion waits (its gate does not pass yet).
    let mut gate_wait: Option<String> = None;
    if let (Some(s), None) = (&steps, &aborted) {
        let recorded = |key: &str| {
            super::steps::step_for(live_annotations.get(key).map(String::as_str), &fingerprint)
        };
        let mut k = recorded(super::steps::ANNOTATION_STEP).map_or(0, |(k, _)| k);
        let of = s.count(popts.replicas);
        let reached = recorded(super::steps::ANNOTATION_STEP_REACHED);
        // Paused at step k: its gate is judged at every sync of the pause (a crash fails it at once),
        // and it promotes the step once the pause is over.
        if let (None, Some((r, at))) = (&gate_failed, &reached) {
            if *r == k && k + 1 < of {
                let due = s.pause.is_some_and(|pause| {
                    at.as_deref()
                        .and_then(|at| at.parse::<k8s_openapi::jiff::Timestamp>().ok())
                        .and_then(|t| {
                            Duration::try_from(ctx.opts.clock.now().duration_since(t)).ok()
                        })
                        .is_some_and(|waited| waited >= pause)
                });
                // Each GameServer's state, and OKG's reading of its pod (written together).
                let mut gs_states: BTreeMap<String, String> = BTreeMap::new();
                let mut okg_seen: BTreeMap<String, k8s_openapi::api::core::v1::PodStatus> =
                    BTreeMap::new();
                for g in &live.gameservers {
                    let (Some(name), Some(st)) = (&g.metadata.name, &g.status) else {
                        continue;
                    };
                    if let Some(state) = &st.current_state {
                        gs_states.insert(name.clone(), state.clone());
                    }
                    if let Some(pod) = &st.pod_status {
                        okg_seen.insert(name.clone(), pod.clone());
                    }
                }
                let pods = pods_of(&watch);
                // Every pod on the new revision: one that went not ready again is in flight.
                let updated = {
                    let p = plan::plan_set(&pods, &target, &popts, now());
                    [p.current, p.in_flight].concat()
                };
                let seen_healthy =
                    recorded(super::steps::ANNOTATION_STEP_HEALTHY).is_some_and(|(h, _)| h == k);
                let gate = plan::step_gate(&pods, &updated, &gs_states, &target, seen_healthy);
                // The step is seen healthy once the gate passes with OKG's reading of every updated
                // pod as it is now; a NotReady after that is no lag of OKG's.
                if gate == plan::Gate::Pass
                    && !seen_healthy
                    && plan::okg_caught_up(&pods, &updated, &okg_seen)
                {
                    annotate(
                        ctx,
                        super::steps::ANNOTATION_STEP_HEALTHY,
                        &super::steps::step_value(&fingerprint, k, None),
                    )
                    .await?;
                }
                match gate {
                    plan::Gate::Fail(why) => {
                        let why = format!(
                            "step {} of {of} did not pass its gate, the rollout stops: {why}",
                            k + 1
                        );
                        annotate(
                            ctx,
                            super::steps::ANNOTATION_GATE_FAILED,
                            &format!("{fingerprint} {why}"),
                        )
                        .await?;
                        gate_failed = Some(why);
                    }
                    plan::Gate::Pass if due => {
                        k += 1;
                        annotate(
                            ctx,
                            super::steps::ANNOTATION_STEP,
                            &super::steps::step_value(&fingerprint, k, None),
                        )
                        .await?;
                    }
                    plan::Gate::Wait(why) if due => gate_wait = Some(why),
                    plan::Gate::Pass | plan::Gate::Wait(_) => {}
                }
            }
        }
        if k + 1 < of {
            popts.step = Some(plan::StepCap {
                pods: s.pods_at(k, popts.replicas),
                step: k,
                of,
            });
        }
        step_at = Some((k, of));
    }
    let first = plan::plan_set(&pods_of(&watch), &target, &popts, now());
    // A rollout that has pods to update starts (a set paused at a step, judged again, does not).
    let starting = first.order.len() + first.in_flight.len();
    if starting > 0 {
        ctx.emit(Progress::Started {
            set: ctx.key(),
            pods: starting,
        });
    }
    let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
    let mut results: BTreeMap<String, PodResult> = BTreeMap::new();
    let mut stop: Option<String> = None;
    // A freeze window entered during the rollout: no pod starts after that, those under way finish.
    let mut frozen: Option<String> = None;
    let mut freeze_ignored = false;
    // Aborted, or stopped by a step's gate: no pod goes further, and every pod this rollout updated goes
    // back to what it was (after a gate, only with --on-failure rollback).
    let roll_back = match (&aborted, &gate_failed) {
        (Some(at), _) => {
            stop = Some(format!(
                "the rollout of this template was aborted at {at} (hotsync abort): the pods it updated are rolled back, and it stays aborted until Git holds another template"
            ));
            Some("aborted: put back on its images before the rollout")
        }
        (None, Some(why)) => {
            let rolled = ctx.opts.on_failure == OnFailure::Rollback;
            stop = Some(format!(
                "{why}; {}, and the rollout stays stopped until Git holds another template",
                if rolled {
                    "the pods it updated are rolled back"
                } else {
                    "the pods it updated stay as they are (--on-failure halt)"
                }
            ));
            rolled.then_some("its step's gate failed: put back on its images before the rollout")
        }
        (None, None) => None,
    };
    if let Some(note) = roll_back {
        let pods = pods_of(&watch);
        for name in first.current.iter().chain(&first.in_flight) {
            let Some(pod) = pods.iter().find(|p| live::pod_name(p) == name) else {
                continue;
            };
            if let Some(rt) = rollback_target(pod, &target) {
                tracked.insert(
                    name.clone(),
                    Tracked {
                        started: Instant::now(),
                        acted_on: None,
                        rollback: Some(rt),
                        failed: Some(note.into()),
                        hooked_since: None,
                        refusals: 0,
                        retry_at: None,
                    },
                );
            }
        }
    }
    let mut last_plan;
    loop {
        let pods = pods_of(&watch);
        last_plan = plan::plan_set(&pods, &target, &popts, now());
        // Pods in flight: hotsync's own (tracked) and those the cluster shows on the way (after a restart).
        let mut active: Vec<String> = tracked.keys().cloned().collect();
        for n in &last_plan.in_flight {
            if !active.contains(n) && !results.contains_key(n) {
                active.push(n.clone());
            }
        }
        // Preparing pods of an earlier run (PreparingUpdate or InPlaceUpdateReady False, not yet patched);
        // none after an abort or a failed gate.
        for n in last_plan
            .order
            .iter()
            .filter(|_| aborted.is_none() && gate_failed.is_none())
        {
            let p = pods.iter().find(|p| live::pod_name(p) == n);
            let started = p.is_some_and(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_LIFECYCLE_STATE))
                    .map(String::as_str)
                    == Some(lc::PREPARING_UPDATE)
                    || plan::condition(p, CONDITION_INPLACE_READY) == Some("False")
            });
            if started && !active.contains(n) && !results.contains_key(n) {
                active.push(n.clone());
            }
        }
        let unavailable_other = pods
            .iter()
            .filter(|p| {
                let n = live::pod_name(p);
                !active.iter().any(|a| a == n) && !plan::available(p, target.min_ready, now())
            })
            .count();
        if stop.is_none() && frozen.is_none() && !freeze_ignored {
            // Judged at every turn (a window may begin during the rollout); --ignore-freeze is said
            // once per sync.
            frozen = ctx.opts.active_window(want);
            if frozen.is_some() && ctx.opts.ignore_freeze {
                frozen = ctx.opts.frozen(want);
                freeze_ignored = true;
            }
        }
        if stop.is_none() && frozen.is_none() {
            let budget = last_plan
                .max_unavailable
                .saturating_sub(active.len() + unavailable_other);
            let next: Vec<String> = last_plan
                .order
                .iter()
                .filter(|n| !active.contains(n) && !results.contains_key(*n))
                .take(budget)
                .cloned()
                .collect();
            active.extend(next);
        }
        if active.is_empty() {
            break;
        }
        let mut turn = Vec::with_capacity(active.len());
        for name in &active {
            let Some(pod) = watch.get(name, &ctx.ns) else {
                tracked.remove(name);
                continue;
            };
            let entry = tracked.entry(name.clone()).or_insert_with(|| Tracked {
                started: Instant::now(),
                acted_on: None,
                rollback: None,
                failed: None,
                hooked_since: None,
                refusals: 0,
                retry_at: None,
            });
            if entry.retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            if entry.acted_on.is_some() && entry.acted_on == pod.metadata.resource_version {
                continue;
            }
            entry.acted_on = None;
            let t = entry.rollback.clone().unwrap_or_else(|| target.clone());
            let step = plan::next_step(&pod, &t, now());
            turn.push((name.clone(), pod, t, step, entry.hooked_since));
        }
        // Each pod's step of this turn, written concurrently (every write bounded by the writer);
        // the answers are taken in the order the pods were, so that a turn reads the same whatever
        // answered first.
        let pod_api_ref = &pod_api;
        let answered: Vec<_> = futures::stream::iter(turn)
            .map(|(name, pod, t, step, mut hooked_since)| async move {
                let result = act(ctx, pod_api_ref, &pod, &t, &step, &mut hooked_since).await;
                // As Kruise's `inplaceupdate.Update` does: the patch right after the gate, from the
                // pod the gate's write returned, not a watch turn later. In between, Kruise's refresh
                // of the set (it runs while the set is paused) finds the gate False on a pod without
                // an in-place state and puts it back to True, and the containers would restart with
                // the pod back in its load balancer. The patch tests that the gate is still False.
                let (pod, step, result) = match result {
                    Ok(StepResult::MarkedNotReady(written)) => {
                        let next = plan::next_step(&written, &t, now());
                        if matches!(next, Step::Patch { .. }) {
                            let r =
                                act(ctx, pod_api_ref, &written, &t, &next, &mut hooked_since).await;
                            (Arc::new(*written), next, r)
                        } else {
                            (Arc::new(*written), step, Ok(StepResult::Wrote))
                        }
                    }
                    other => (pod, step, other),
                };
                (name, pod, t, step, hooked_since, result)
            })
            .buffered(STEPS_IN_FLIGHT)
            .collect()
            .await;
        for (name, pod, t, step, hooked_since, result) in answered {
            let name = &name;
            let Some(entry) = tracked.get_mut(name) else {
                continue;
            };
            entry.hooked_since = hooked_since;
            match result {
                Ok(StepResult::Wrote | StepResult::MarkedNotReady(_)) => {
                    entry.acted_on = pod.metadata.resource_version.clone()
                }
                Ok(StepResult::Waiting) => {}
                Ok(StepResult::Done) => {
                    let rolled_back = entry.rollback.is_some();
                    let msg = entry.failed.clone();
                    let containers = plan::baseline(&pod)
                        .map(|b| b.containers.keys().cloned().collect())
                        .unwrap_or_default();
                    tracked.remove(name);
                    if rolled_back {
                        results.insert(
                            name.clone(),
                            PodResult {
                                name: name.clone(),
                                result: PodOutcome::RolledBack,
                                containers,
                                message: msg,
                            },
                        );
                    } else {
                        ctx.emit(Progress::PodDone {
                            set: ctx.key(),
                            pod: name.clone(),
                        });
                        results.insert(
                            name.clone(),
                            PodResult {
                                name: name.clone(),
                                result: PodOutcome::Updated,
                                containers,
                                message: None,
                            },
                        );
                    }
                    continue;
                }
                Ok(StepResult::Failed(why)) => {
                    let msg = format!("pod {name} {why}");
                    stop.get_or_insert_with(|| msg.clone());
                    let containers = plan::baseline(&pod)
                        .map(|b| b.containers.keys().cloned().collect())
                        .unwrap_or_default();
                    let can_roll_back =
                        ctx.opts.on_failure == OnFailure::Rollback && entry.rollback.is_none();
                    match (can_roll_back, rollback_target(&pod, &target)) {
                        (true, Some(rt)) => {
                            entry.failed = Some(why);
                            entry.rollback = Some(rt);
                            entry.started = Instant::now();
                        }
                        _ => {
                            tracked.remove(name);
                            results.insert(
                                name.clone(),
                                PodResult {
                                    name: name.clone(),
                                    result: PodOutcome::Failed,
                                    containers,
                                    message: Some(why),
                                },
                            );
                        }
                    }
                    continue;
                }
                Err(e) if e.is_conflict() => {
                    // Someone changed the pod since it was read (or a guarded patch found it changed):
                    // the next turn re-plans it.
                }
                Err(
                    e @ (ClusterError::AdmissionDenied { .. } | ClusterError::WebhookFailed { .. }),
                ) if entry.refusals + 1 < REFUSALS_BEFORE_FAILING => {
                    entry.refusals += 1;
                    let wait = Duration::from_secs(1u64 << (entry.refusals - 1));
                    tracing::warn!(
                        pod = %name,
                        refusals = entry.refusals,
                        "{e}; trying again in {}s", wait.as_secs()
                    );
                    entry.retry_at = Some(Instant::now() + wait);
                }
                Err(
                    e @ (ClusterError::AdmissionDenied { .. }
                    | ClusterError::WebhookFailed { .. }
                    | ClusterError::Timeout { .. }),
                ) => {
                    let why = if matches!(e, ClusterError::Timeout { .. }) {
                        e.to_string()
                    } else {
                        format!("{e} (refused {} times)", entry.refusals + 1)
                    };
                    // A patch refused before anything of the pod changed: it goes back into its load
                    // balancer (the status write is no pod UPDATE, so no webhook stands in its way).
                    if matches!(step, Step::Patch { .. })
                        && plan::condition(&pod, CONDITION_INPLACE_READY) == Some("False")
                    {
                        let patch = gate_ready_again();
                        let _ = ctx
                            .writer
                            .run(
                                "mark ready",
                                format!("pod {}/{name}", ctx.ns),
                                pod_api.patch_status(
                                    name,
                                    &pod_patch_params(),
                                    &Patch::Strategic(patch),
                                ),
                            )
                            .await;
                    }
                    stop.get_or_insert_with(|| format!("pod {name}: {why}"));
                    tracked.remove(name);
                    results.insert(
                        name.clone(),
                        PodResult {
                            name: name.clone(),
                            result: PodOutcome::Failed,
                            containers: plan::behind(&pod, &t),
                            message: Some(why),
                        },
                    );
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Pod timeout.
            let timed_out = entry.started.elapsed() > ctx.opts.pod_timeout;
            if timed_out && !matches!(step, Step::WaitHook) {
                let why = format!(
                    "not ready with the new image after {}s",
                    ctx.opts.pod_timeout.as_secs()
                );
                if entry.rollback.is_none() && ctx.opts.on_failure == OnFailure::Rollback {
                    if let Some(rt) = rollback_target(&pod, &target) {
                        stop.get_or_insert_with(|| format!("pod {name} {why}"));
                        entry.failed = Some(why);
                        entry.rollback = Some(rt);
                        entry.started = Instant::now();
                        continue;
                    }
                }
                stop.get_or_insert_with(|| format!("pod {name} {why}"));
                tracked.remove(name);
                results.insert(
                    name.clone(),
                    PodResult {
                        name: name.clone(),
                        result: PodOutcome::Failed,
                        containers: plan::behind(&pod, &t),
                        message: Some(why),
                    },
                );
            }
        }
        watch.next_change(Duration::from_millis(250)).await;
    }
    // The plan's pods the rollout did not reach, and those it holds.
    for name in &last_plan.current {
        results.entry(name.clone()).or_insert_with(|| PodResult {
            name: name.clone(),
            result: PodOutcome::Current,
            containers: vec![],
            message: None,
        });
    }
    for name in &last_plan.order {
        results.entry(name.clone()).or_insert_with(|| PodResult {
            name: name.clone(),
            result: PodOutcome::NotReached,
            containers: vec![],
            message: None,
        });
    }
    let deferred: Vec<String> = last_plan
        .held
        .iter()
        .filter(|(_, h)| matches!(h, Held::Deferred(_)))
        .map(|(n, _)| n.clone())
        .collect();
    for (name, why) in &last_plan.held {
        results.insert(name.clone(), held_result(name, why));
    }
    // Label the deferred pods with what they wait for; clear the label of the others.
    for p in pods_of(&watch) {
        let name = live::pod_name(&p).to_string();
        let pending = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(plan::LABEL_UPDATE_PENDING))
            .cloned();
        let want_label = deferred.contains(&name).then(|| revision.clone());
        if pending != want_label {
            let patch = json!({"metadata": {"labels": {plan::LABEL_UPDATE_PENDING: want_label}}});
            let api = pod_api.clone();
            ctx.writer
                .run("label", format!("pod {}/{name}", ctx.ns), async move {
                    api.patch(&name, &pod_patch_params(), &Patch::Merge(patch))
                        .await
                })
                .await?;
        }
    }
    out.pods = results.into_values().collect();
    out.pods.sort_by(|a, b| a.name.cmp(&b.name));
    if let (Some((k, of)), Some(s)) = (step_at, &steps) {
        out.step = Some(super::StepReport {
            step: k + 1,
            of,
            pods: s.pods_at(k, popts.replicas),
        });
    }
    let at_step = last_plan
        .held
        .iter()
        .any(|(_, h)| matches!(h, Held::Step { .. }))
        // Or every pod past the step is deferred: the step is full all the same.
        || popts
            .step
            .is_some_and(|c| last_plan.in_flight.is_empty() && last_plan.current.len() >= c.pods);
    if let (Some(why), Some(_)) = (&stop, &aborted) {
        // The hold stays: OKG must not carry the aborted template to any pod.
        out.outcome = Outcome::Aborted;
        out.message = Some(why.clone());
    } else if let Some(why) = stop {
        // The hold stays: OKG must not carry the failing image to the other pods.
        out.outcome = Outcome::Failed;
        out.message = Some(why);
    } else if let (Some(window), false) = (&frozen, last_plan.order.is_empty()) {
        // The hold stays: OKG must not carry the template to the pods left.
        out.outcome = Outcome::Frozen;
        out.message = Some(format!(
            "the freeze window {window} began during the rollout: {} pod(s) updated, {} left; the set stays held and the rollout goes on after the window",
            last_plan.current.len(),
            last_plan.order.len()
        ));
    } else if let (true, Some((k, of))) = (at_step, step_at) {
        // The step is done: the set stays held so that OKG does not carry the template further.
        apply_with(ctx, want, Some(&fingerprint), None, omit_replicas, false).await?;
        let recorded = super::steps::step_for(
            live_annotations
                .get(super::steps::ANNOTATION_STEP_REACHED)
                .map(String::as_str),
            &fingerprint,
        );
        let reached_at = match recorded {
            Some((r, Some(at))) if r == k => at,
            _ => {
                let at = ctx
                    .opts
                    .clock
                    .now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                annotate(
                    ctx,
                    super::steps::ANNOTATION_STEP_REACHED,
                    &super::steps::step_value(&fingerprint, k, Some(&at)),
                )
                .await?;
                at
            }
        };
        let pause = steps.as_ref().and_then(|s| s.pause);
        out.outcome = Outcome::StepPaused;
        out.message = Some(format!(
            "paused at step {} of {of}: {} of {} pod(s) on the new template since {reached_at}; {}{}",
            k + 1,
            last_plan.current.len(),
            popts.replicas,
            match pause {
                Some(p) => format!(
                    "promoted by itself {}s after that if the gate holds, or by hotsync promote {}",
                    p.as_secs(),
                    ctx.key()
                ),
                None => format!("promote with hotsync promote {}", ctx.key()),
            },
            gate_wait
                .as_deref()
                .map(|w| format!("; the promotion waits: {w}"))
                .unwrap_or_default()
        ));
        // The step filled past game servers deferred by their opsState: they wait for a later step
        // and for their players.
        if !deferred.is_empty() {
            if let Some(m) = out.message.as_mut() {
                m.push_str(&format!(
                    "; {} game server{} wait for their players ({})",
                    deferred.len(),
                    if deferred.len() == 1 { "" } else { "s" },
                    deferred.join(", ")
                ));
            }
        }
    } else if !deferred.is_empty() {
        let since = deferred_since.clone().unwrap_or_else(rfc3339_now);
        apply_with(
            ctx,
            want,
            Some(&fingerprint),
            Some(&since),
            omit_replicas,
            false,
        )
        .await?;
        // Deferred since an earlier sync (the annotation, to the second), or just now.
        let waited = deferred_since
            .as_deref()
            .and_then(|d| d.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .and_then(|t| Duration::try_from(now().duration_since(t)).ok())
            .unwrap_or(Duration::ZERO);
        let past = ctx.opts.defer_deadline.is_some_and(|d| waited > d);
        out.outcome = if past {
            Outcome::Degraded
        } else {
            Outcome::Deferred
        };
        out.message = Some(format!(
            "{} game server{} wait for their players ({}); the set stays held so that OKG does not restart them{}",
            deferred.len(),
            if deferred.len() == 1 { "" } else { "s" },
            deferred.join(", "),
            if past {
                format!("; deferred for {}s, past --defer-deadline", waited.as_secs())
            } else {
                String::new()
            }
        ));
    } else {
        super::apply(ctx, want, None, omit_replicas, false).await?;
        out.outcome = Outcome::Synced;
    }
    ctx.emit(Progress::Finished {
        set: ctx.key(),
        outcome: out.outcome,
        revision: ctx.opts.source_commit.clone(),
        message: out.message.clone(),
    });
    Ok(())
}

/// Sets one annotation of the live set (a merge patch of hotsync's step records, which hotsync's own
/// apply leaves alone), bounded and counted as every write.
async fn annotate(ctx: &Ctx<'_>, key: &str, value: &str) -> Result<(), ClusterError> {
    let api: Api<GameServerSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    let name = ctx.name.clone();
    let pp = PatchParams {
        field_manager: Some("hotsync-steps".to_string()),
        ..PatchParams::default()
    };
    ctx.writer
        .run(
            "annotate",
            format!("gameserverset {}", ctx.key()),
            async move { api.patch(&name, &pp, &Patch::Merge(patch)).await },
        )
        .await?;
    Ok(())
}

fn pods_of(watch: &PodWatch) -> Vec<Pod> {
    watch.pods().iter().map(|p| (**p).clone()).collect()
}

/// The target a failed pod goes back to: its revision and images before hotsync's patch.
fn rollback_target(pod: &Pod, target: &Target) -> Option<Target> {
    let b = plan::baseline(pod).filter(|b| b.target == target.revision)?;
    let mut images = target.images.clone();
    for (c, cb) in &b.containers {
        images.insert(c.clone(), cb.image.clone());
    }
    Some(Target {
        revision: b.revision.clone(),
        images,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        ..target.clone()
    })
}

enum StepResult {
    Wrote,
    /// `InPlaceUpdateReady` False written; the pod as the API server returned it.
    MarkedNotReady(Box<Pod>),
    Waiting,
    Done,
    Failed(String),
}

/// Makes the write `step` asks for.
async fn act(
    ctx: &Ctx<'_>,
    api: &Api<Pod>,
    pod: &Pod,
    t: &Target,
    step: &Step,
    hooked_since: &mut Option<Instant>,
) -> Result<StepResult, ClusterError> {
    let name = live::pod_name(pod).to_string();
    let object = format!("pod {}/{name}", ctx.ns);
    match step {
        Step::Done => return Ok(StepResult::Done),
        Step::AwaitRestart | Step::AwaitReady | Step::WaitGrace { .. } => {
            return Ok(StepResult::Waiting)
        }
        Step::WaitHook => {
            let since = *hooked_since.get_or_insert_with(Instant::now);
            if since.elapsed() > ctx.opts.hook_timeout {
                return Ok(StepResult::Failed(format!(
                    "still held by the in-place lifecycle hook (PreparingUpdate) after {}s",
                    ctx.opts.hook_timeout.as_secs()
                )));
            }
            return Ok(StepResult::Waiting);
        }
        Step::Failed { container, reason } => {
            return Ok(StepResult::Failed(format!(
                "container {container}: {reason}"
            )));
        }
        Step::Prepare { with_handler } => {
            let mut labels = serde_json::Map::new();
            labels.insert(LABEL_LIFECYCLE_STATE.into(), json!(lc::PREPARING_UPDATE));
            let mut meta = serde_json::Map::new();
            if *with_handler {
                if let Some(h) = &t.hook {
                    for (k, v) in h.labels_handler.iter().flatten() {
                        labels.insert(k.clone(), json!(v));
                    }
                    if let Some(f) = &h.finalizers_handler {
                        meta.insert("finalizers".into(), json!(f));
                    }
                }
            }
            meta.insert("labels".into(), Value::Object(labels));
            meta.insert(
                "annotations".into(),
                json!({ ANNOTATION_LIFECYCLE_TIMESTAMP: rfc3339_now() }),
            );
            let patch = json!({ "metadata": meta });
            ctx.writer
                .run(
                    "prepare",
                    object,
                    api.patch(&name, &pod_patch_params(), &Patch::Strategic(patch)),
                )
                .await?;
        }
        Step::MarkNotReady => {
            let mut conditions = vec![json!({
                "type": CONDITION_INPLACE_READY, "status": "False", "reason": "StartInPlaceUpdate",
                "message": "hotsync restarts containers in place", "lastTransitionTime": rfc3339_now(),
            })];
            if plan::condition(pod, "ContainersReady") == Some("True") {
                conditions.push(json!({
                    "type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady",
                    "message": "corresponding condition of pod readiness gate \"InPlaceUpdateReady\" is not ready",
                    "lastTransitionTime": rfc3339_now(),
                }));
            }
            let patch = json!({ "status": { "conditions": conditions } });
            let written = ctx
                .writer
                .run(
                    "mark not ready",
                    object,
                    api.patch_status(&name, &pod_patch_params(), &Patch::Strategic(patch)),
                )
                .await?;
            return Ok(StepResult::MarkedNotReady(Box::new(written)));
        }
        Step::Patch { containers } => {
            let ops = patch_ops(pod, t, containers);
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops)).map_err(|e| ClusterError::Api {
                    action: "build patch for",
                    object: object.clone(),
                    source: kube::Error::SerdeError(e),
                })?;
            ctx.writer
                .run(
                    "patch",
                    object,
                    api.patch(&name, &pod_patch_params(), &Patch::Json::<()>(patch)),
                )
                .await?;
        }
        Step::ApplyGrace => {
            let mut ops: Vec<Value> = vec![
                json!({"op": "remove", "path": format!("/metadata/annotations/{}", pointer_escape(ANNOTATION_INPLACE_GRACE))}),
            ];
            for (i, c) in pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .enumerate()
            {
                if let Some(img) = t.images.get(&c.name) {
                    if c.image.as_deref() != Some(img.as_str()) {
                        ops.push(json!({"op": "test", "path": format!("/spec/containers/{i}/image"), "value": c.image}));
                        ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": img}));
                    }
                }
            }
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops)).map_err(|e| ClusterError::Api {
                    action: "build patch for",
                    object: object.clone(),
                    source: kube::Error::SerdeError(e),
                })?;
            ctx.writer
                .run(
                    "apply the grace of",
                    object,
                    api.patch(&name, &pod_patch_params(), &Patch::Json::<()>(patch)),
                )
                .await?;
        }
        Step::Finish => {
            let mut annotations = serde_json::Map::new();
            if let Some(state) = completed_state(pod) {
                annotations.insert(ANNOTATION_INPLACE_STATE.into(), json!(state));
            }
            let mut labels = serde_json::Map::new();
            let state = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LIFECYCLE_STATE))
                .cloned()
                .unwrap_or_default();
            if !state.is_empty() {
                let settled = plan::settled_lifecycle(t, pod);
                if state != settled {
                    labels.insert(LABEL_LIFECYCLE_STATE.into(), json!(settled));
                    annotations.insert(ANNOTATION_LIFECYCLE_TIMESTAMP.into(), json!(rfc3339_now()));
                }
            }
            if !annotations.is_empty() || !labels.is_empty() {
                let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
                ctx.writer
                    .run(
                        "finish",
                        object.clone(),
                        api.patch(&name, &pod_patch_params(), &Patch::Merge(patch)),
                    )
                    .await?;
            }
            if plan::condition(pod, CONDITION_INPLACE_READY) != Some("True") {
                let patch = gate_ready_again();
                ctx.writer
                    .run(
                        "mark ready",
                        object,
                        api.patch_status(&name, &pod_patch_params(), &Patch::Strategic(patch)),
                    )
                    .await?;
            }
        }
    }
    Ok(StepResult::Wrote)
}

/// `InPlaceUpdateReady` True again, as Kruise's `Refresh` writes it: the reason and message of the False
/// are taken out (a strategic merge keeps a condition's other fields), since Kruise's `hasEqualCondition`
/// compares them and would otherwise write the condition again (its refresh runs while the set is paused).
fn gate_ready_again() -> Value {
    json!({"status": {"conditions": [{
        "type": CONDITION_INPLACE_READY, "status": "True", "reason": null, "message": null,
        "lastTransitionTime": rfc3339_now(),
    }]}})
}

/// The state annotation with the containers that Kruise's check would never count complete taken out
/// (those that restarted onto the digest they ran before), so that Kruise does not count the pod
/// unavailable afterwards; `None` when nothing needs to change.
fn completed_state(pod: &Pod) -> Option<String> {
    if !plan::kruise_check_fails(pod) {
        return None;
    }
    let raw = pod
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_INPLACE_STATE)?;
    let mut state: Value = serde_json::from_str(raw).ok()?;
    let statuses: HashMap<String, String> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| (c.name.clone(), c.image_id.clone()))
        .collect();
    if let Some(last) = state
        .get_mut("lastContainerStatuses")
        .and_then(Value::as_object_mut)
    {
        last.retain(|name, v| {
            let old = v.get("imageID").and_then(Value::as_str).unwrap_or_default();
            statuses.get(name).is_some_and(|id| id != old)
        });
    }
    Some(state.to_string())
}

/// The one guarded patch of an in-place update: tests on the old images and the old revision label,
/// the revision label, lifecycle `Updating` (when the pod has a lifecycle label), Kruise's state
/// annotation, hotsync's baseline, the template metadata (relative to the pod's revision), and the
/// images, or Kruise's grace annotation when a grace period is set.
fn patch_ops(pod: &Pod, t: &Target, containers: &[String]) -> Vec<Value> {
    let mut ops: Vec<Value> = Vec::new();
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut baseline = Baseline {
        revision: live::revision(pod).unwrap_or_default().to_string(),
        target: t.revision.clone(),
        containers: BTreeMap::new(),
    };
    let mut last = serde_json::Map::new();
    let mut images = serde_json::Map::new();
    for (i, c) in spec_containers.iter().enumerate() {
        if !containers.contains(&c.name) {
            continue;
        }
        let Some(img) = t.images.get(&c.name) else {
            continue;
        };
        let st = live::container_status(pod, &c.name);
        baseline.containers.insert(
            c.name.clone(),
            ContainerBaseline {
                image: c.image.clone().unwrap_or_default(),
                restart_count: st.map(|s| s.restart_count).unwrap_or(0),
                container_id: st.and_then(|s| s.container_id.clone()),
                image_id: st.map(|s| s.image_id.clone()).unwrap_or_default(),
            },
        );
        last.insert(
            c.name.clone(),
            json!({"imageID": st.map(|s| s.image_id.clone()).unwrap_or_default()}),
        );
        images.insert(c.name.clone(), json!(img));
        ops.push(
            json!({"op": "test", "path": format!("/spec/containers/{i}/image"), "value": c.image}),
        );
        if t.grace.is_zero() {
            ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": img}));
        }
    }
    // The gate as it was read: False. Kruise's refresh may have put it back to True since; then the
    // patch is refused (422) and the next turn marks the pod not ready again (another writer's
    // reordering of the conditions refuses it too; the next turn re-plans it from the watch).
    let gate_at = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().position(|c| c.type_ == CONDITION_INPLACE_READY));
    if let Some(i) =
        gate_at.filter(|_| plan::condition(pod, CONDITION_INPLACE_READY) == Some("False"))
    {
        ops.push(json!({"op": "test", "path": format!("/status/conditions/{i}/status"), "value": "False"}));
    }
    let label_path = format!("/metadata/labels/{}", pointer_escape(LABEL_REVISION_HASH));
    match live::revision(pod) {
        Some(old) => {
            ops.push(json!({"op": "test", "path": label_path, "value": old}));
            ops.push(json!({"op": "replace", "path": label_path, "value": t.revision}));
        }
        None => ops.push(json!({"op": "add", "path": label_path, "value": t.revision})),
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.contains_key(LABEL_LIFECYCLE_STATE) {
        ops.push(json!({"op": "add", "path": format!("/metadata/labels/{}", pointer_escape(LABEL_LIFECYCLE_STATE)), "value": lc::UPDATING}));
    }
    // Template metadata: what the target sets, and removes.
    let reserved = |k: &str| k == LABEL_REVISION_HASH || k == LABEL_LIFECYCLE_STATE;
    for (k, v) in &t.labels {
        if reserved(k) {
            continue;
        }
        let path = format!("/metadata/labels/{}", pointer_escape(k));
        match v {
            Some(v) if labels.get(k) != Some(v) => {
                ops.push(json!({"op": "add", "path": path, "value": v}))
            }
            None if labels.contains_key(k) => ops.push(json!({"op": "remove", "path": path})),
            _ => {}
        }
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if pod.metadata.annotations.is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    for (k, v) in &t.annotations {
        let path = format!("/metadata/annotations/{}", pointer_escape(k));
        match v {
            Some(v) if annotations.get(k) != Some(v) => {
                ops.push(json!({"op": "add", "path": path, "value": v}))
            }
            None if annotations.contains_key(k) => ops.push(json!({"op": "remove", "path": path})),
            _ => {}
        }
    }
    let now = rfc3339_now_precise();
    let state = json!({
        "revision": t.revision,
        "updateTimestamp": now,
        "lastContainerStatuses": if last.is_empty() { Value::Null } else { Value::Object(last) },
        "updateImages": !images.is_empty(),
        "containerBatchesRecord": [{"timestamp": now, "containers": containers}],
    });
    let add = |ops: &mut Vec<Value>, key: &str, value: Value| {
        ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_escape(key)), "value": value}));
    };
    add(&mut ops, ANNOTATION_INPLACE_STATE, json!(state.to_string()));
    add(
        &mut ops,
        plan::ANNOTATION_BASELINE,
        json!(serde_json::to_string(&baseline).unwrap_or_default()),
    );
    add(
        &mut ops,
        ANNOTATION_LIFECYCLE_TIMESTAMP,
        json!(rfc3339_now()),
    );
    if annotations.contains_key(ANNOTATION_INPLACE_STATE_OLD) {
        ops.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", pointer_escape(ANNOTATION_INPLACE_STATE_OLD))}));
    }
    if !t.grace.is_zero() && !images.is_empty() {
        let grace = json!({
            "revision": t.revision,
            "containerImages": images,
            "graceSeconds": t.grace.as_secs(),
        });
        add(&mut ops, ANNOTATION_INPLACE_GRACE, json!(grace.to_string()));
    }
    ops
}

/// Whether a GameServerSet is held by hotsync (for drift and the demo).
pub fn is_held(gss: &GameServerSet) -> bool {
    hold_of(Some(gss)).is_some()
}
