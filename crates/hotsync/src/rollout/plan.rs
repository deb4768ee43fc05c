//! The rollout plan, pure: from (the set Git wants, the pods the cluster shows, the options) to the pods
//! to update in order, the pods kept by `partition`, the pods deferred by policy; and, for one pod, the
//! next step of Kruise's in-place protocol as hotsync performs it.
//!
//! Nothing here reads or writes the cluster. The executor (`exec`) re-plans from what the cluster shows
//! at every turn of its loop, so a rollout is level-triggered: a process that dies at any step and starts
//! again finds each pod's next step in the pod itself (its labels, its annotations, its conditions).
//!
//! The in-place protocol follows Kruise's `inplaceupdate` package and its Advanced StatefulSet controller
//! (`inPlaceUpdatePod`, `Update`, `Refresh`), so that Kruise's own refresh of the pod, which runs even
//! while the set is paused, agrees with every step instead of undoing it:
//! 1. with an in-place lifecycle hook, lifecycle `PreparingUpdate` and a wait while the pod is hooked;
//! 2. `InPlaceUpdateReady` False (a pod status write);
//! 3. one guarded patch: the revision label, lifecycle `Updating`, Kruise's state annotation (the changed
//!    containers' imageIDs), hotsync's restart baseline, the template metadata, and the images (or, with
//!    `inPlaceUpdateStrategy.gracePeriodSeconds`, Kruise's grace annotation, the images after the grace);
//! 4. a wait until each changed container restarted on its new image and is ready;
//! 5. the state made complete for Kruise's check, lifecycle `Updated` or `Normal`, `InPlaceUpdateReady`
//!    True; then the pod is Ready (and available after `minReadySeconds`).

use crate::images;
use crate::model::{
    lifecycle as lc, LifecycleHook, ANNOTATION_INPLACE_GRACE, ANNOTATION_INPLACE_STATE,
    ANNOTATION_INPLACE_STATE_OLD, CONDITION_INPLACE_READY, LABEL_LIFECYCLE_STATE,
    LABEL_REVISION_HASH,
};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// hotsync's record on a pod of the in-place update it made: the revision and images the pod had, and
/// each changed container's restart count, container ID and imageID before the patch. A restart is told
/// from it after a crash of hotsync, and a rollback goes back to it.
pub const ANNOTATION_BASELINE: &str = "hotsync.dev/restart-baseline";
/// Put on a pod deferred by policy: the revision it waits for (so that game code can drain it).
pub const LABEL_UPDATE_PENDING: &str = "hotsync.dev/update-pending";

/// What the pod was before hotsync's patch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// The revision label the pod had.
    #[serde(default)]
    pub revision: String,
    /// The revision the patch moved it to.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerBaseline>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerBaseline {
    /// The image the spec had.
    pub image: String,
    pub restart_count: i32,
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default, rename = "imageID")]
    pub image_id: String,
}

/// What a pod moves to: the revision and images of the Advanced StatefulSet's update revision, with what
/// Kruise's set says about the protocol.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    /// The revision name (`status.updateRevision`), written as the pod's `controller-revision-hash`.
    pub revision: String,
    /// The image of every container of the template, by name.
    pub images: BTreeMap<String, String>,
    /// Template labels and annotations to set (`Some`) or remove (`None`) on the pod.
    pub labels: BTreeMap<String, Option<String>>,
    pub annotations: BTreeMap<String, Option<String>>,
    /// The Advanced StatefulSet's `lifecycle.inPlaceUpdate` hook.
    pub hook: Option<LifecycleHook>,
    /// Whether the Advanced StatefulSet has a `lifecycle` at all (Kruise then ends an update in
    /// `Updated` rather than `Normal` while the hook does not hold the pod).
    pub has_lifecycle: bool,
    /// `inPlaceUpdateStrategy.gracePeriodSeconds`.
    pub grace: Duration,
    /// `minReadySeconds`.
    pub min_ready: Duration,
}

/// The next thing to do for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Lifecycle `PreparingUpdate` (with the hook's labels and finalizers again, from `Updated`).
    Prepare { with_handler: bool },
    /// The pod is held by the in-place hook: wait (bounded by the hook timeout).
    WaitHook,
    /// `InPlaceUpdateReady` False.
    MarkNotReady,
    /// The guarded patch; these containers change image.
    Patch { containers: Vec<String> },
    /// The grace period runs until this much longer.
    WaitGrace { left: Duration },
    /// The grace period is over: the images go on the pod.
    ApplyGrace,
    /// Containers are restarting.
    AwaitRestart,
    /// A changed container will not come up by itself.
    Failed { container: String, reason: String },
    /// Containers done: complete Kruise's state, lifecycle and `InPlaceUpdateReady` True.
    Finish,
    /// Waiting for the pod to be Ready (the kubelet) and available (`minReadySeconds`).
    AwaitReady,
    /// Nothing left.
    Done,
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The status of a condition of the pod.
pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// `IsPodHooked`: any of the hook's labels or finalizers is on the pod.
pub fn is_hooked(hook: Option<&LifecycleHook>, pod: &Pod) -> bool {
    let Some(h) = hook else { return false };
    let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
    h.finalizers_handler
        .iter()
        .flatten()
        .any(|f| finalizers.contains(f))
        || h.labels_handler
            .iter()
            .flatten()
            .any(|(k, v)| label(pod, k) == Some(v.as_str()))
}

/// `IsPodAllHooked`: all of the hook's labels and finalizers are on the pod.
pub fn is_all_hooked(hook: Option<&LifecycleHook>, pod: &Pod) -> bool {
    let Some(h) = hook else { return false };
    let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
    h.finalizers_handler
        .iter()
        .flatten()
        .all(|f| finalizers.contains(f))
        && h.labels_handler
            .iter()
            .flatten()
            .all(|(k, v)| label(pod, k) == Some(v.as_str()))
}

/// The lifecycle state Kruise would end an update of this pod in.
pub fn settled_lifecycle(t: &Target, pod: &Pod) -> &'static str {
    if t.has_lifecycle && !is_all_hooked(t.hook.as_ref(), pod) {
        lc::UPDATED
    } else {
        lc::NORMAL
    }
}

/// hotsync's baseline on the pod, when the last update was hotsync's.
pub fn baseline(pod: &Pod) -> Option<Baseline> {
    annotation(pod, ANNOTATION_BASELINE).and_then(|s| serde_json::from_str(s).ok())
}

fn spec_image<'a>(pod: &'a Pod, container: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.image.as_deref())
}

fn status_of<'a>(
    pod: &'a Pod,
    container: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

/// The containers whose spec image differs from the target.
pub fn behind(pod: &Pod, t: &Target) -> Vec<String> {
    t.images
        .iter()
        .filter(|(c, img)| spec_image(pod, c).is_some_and(|i| i != img.as_str()))
        .map(|(c, _)| c.clone())
        .collect()
}

/// Whether the pod is on the target: its revision label and every image.
pub fn on_target(pod: &Pod, t: &Target) -> bool {
    label(pod, LABEL_REVISION_HASH) == Some(t.revision.as_str()) && behind(pod, t).is_empty()
}

/// Has the container restarted since `b` and does it run its spec image, ready? The image is judged as a
/// kubelet reports it ([`images::reports`]); a container that restarted onto the digest it ran before (a
/// new tag of the same digest, openkruise/kruise#2297) keeps its imageID and counts as done.
pub fn container_done(pod: &Pod, container: &str, b: Option<&ContainerBaseline>) -> bool {
    let Some(s) = status_of(pod, container) else {
        return false;
    };
    let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
    if !running || !s.ready {
        return false;
    }
    let wanted = spec_image(pod, container).unwrap_or_default();
    match b {
        Some(b) => {
            let restarted = s.restart_count > b.restart_count
                || (b.container_id.is_some() && s.container_id != b.container_id);
            restarted
                && (images::reports(&s.image, &s.image_id, wanted)
                    || (!b.image_id.is_empty() && s.image_id == b.image_id))
        }
        None => images::reports(&s.image, &s.image_id, wanted),
    }
}

/// Waiting reasons that mean a container will not come up by itself soon.
const FAILING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A container of `containers` that is failing on its current spec image, with the kubelet's reason. A
/// failure the kubelet reports of an image the spec no longer asks for (a pull error naming another
/// image, a crash loop of another image: a rollback not seen by the kubelet yet) does not count.
pub fn failing(pod: &Pod, containers: &[String]) -> Option<(String, String)> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter(|s| containers.contains(&s.name))
        .find_map(|s| {
            let waiting = s.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone().unwrap_or_default();
            let spec = spec_image(pod, &s.name).unwrap_or_default();
            let message = waiting.message.clone().unwrap_or_default();
            let current = if reason == "CrashLoopBackOff" {
                // A crash of the current spec's image: the container it last ran failed. A back-off after
                // a container was stopped for an image change (it exited cleanly) is no crash.
                let crashed = s
                    .last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .is_some_and(|t| t.exit_code != 0);
                crashed && images::reports(&s.image, &s.image_id, spec)
            } else if message.contains("image \"") {
                message.contains(&format!("\"{spec}\""))
            } else {
                true
            };
            (current && FAILING.contains(&reason.as_str())).then(|| {
                let msg = waiting
                    .message
                    .clone()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                (s.name.clone(), format!("{reason}{msg}"))
            })
        })
}

/// Would Kruise's default completion check (`defaultCheckContainersInPlaceUpdateCompleted`) fail on this
/// pod's state annotation? Then Kruise counts the pod unavailable, whatever it runs, until the state
/// changes: per recorded container, an unchanged imageID with `status.image` not exactly the spec's
/// image (`:latest` appended to an untagged one).
pub fn kruise_check_fails(pod: &Pod) -> bool {
    let raw = annotation(pod, ANNOTATION_INPLACE_STATE)
        .or_else(|| annotation(pod, ANNOTATION_INPLACE_STATE_OLD));
    let Some(state) = raw.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return false;
    };
    let recorded = state
        .get("lastContainerStatuses")
        .and_then(serde_json::Value::as_object)
        .cloned()
        .unwrap_or_default();
    recorded.iter().any(|(name, last)| {
        let Some(s) = status_of(pod, name) else {
            return true;
        };
        let old_id = last
            .get("imageID")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let spec = spec_image(pod, name).unwrap_or_default();
        let spec = if spec.split(':').count() <= 1 {
            format!("{spec}:latest")
        } else {
            spec.to_string()
        };
        old_id == s.image_id && s.image != spec
    })
}

/// Is the pod Ready, and has it been for `min_ready`?
pub fn available(pod: &Pod, min_ready: Duration, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(ready) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
    else {
        return false;
    };
    if ready.status != "True" {
        return false;
    }
    if min_ready.is_zero() {
        return true;
    }
    ready.last_transition_time.as_ref().is_some_and(|t| {
        Duration::try_from(now.duration_since(t.0)).unwrap_or(Duration::ZERO) >= min_ready
    })
}

/// The next step for `pod` towards `t`, decided from the pod alone.
pub fn next_step(pod: &Pod, t: &Target, now: k8s_openapi::jiff::Timestamp) -> Step {
    let state = label(pod, LABEL_LIFECYCLE_STATE).unwrap_or_default();
    let at_revision = label(pod, LABEL_REVISION_HASH) == Some(t.revision.as_str());
    let gate = condition(pod, CONDITION_INPLACE_READY);
    if !at_revision && t.hook.is_some() {
        match state {
            "" | lc::NORMAL | lc::PREPARING_NORMAL if is_hooked(t.hook.as_ref(), pod) => {
                return Step::Prepare {
                    with_handler: false,
                }
            }
            lc::UPDATED => return Step::Prepare { with_handler: true },
            lc::PREPARING_UPDATE if is_hooked(t.hook.as_ref(), pod) => return Step::WaitHook,
            _ => {}
        }
    }
    if at_revision && annotation(pod, ANNOTATION_INPLACE_GRACE).is_some() {
        let started = update_timestamp(pod).unwrap_or(now);
        let elapsed = Duration::try_from(now.duration_since(started)).unwrap_or(Duration::ZERO);
        return if elapsed >= t.grace {
            Step::ApplyGrace
        } else {
            Step::WaitGrace {
                left: t.grace - elapsed,
            }
        };
    }
    if !at_revision || !behind(pod, t).is_empty() {
        if gate != Some("False") {
            return Step::MarkNotReady;
        }
        return Step::Patch {
            containers: behind(pod, t),
        };
    }
    let b = baseline(pod).filter(|b| b.target == t.revision);
    let changed: Vec<String> = match &b {
        Some(b) => b.containers.keys().cloned().collect(),
        None => t.images.keys().cloned().collect(),
    };
    if let Some((container, reason)) = failing(pod, &changed) {
        return Step::Failed { container, reason };
    }
    let done = changed
        .iter()
        .all(|c| container_done(pod, c, b.as_ref().and_then(|b| b.containers.get(c))));
    let kruise_unhappy = kruise_check_fails(pod);
    if !done {
        // An update of someone else's (Kruise's own) that Kruise already counts complete is done.
        if b.is_none() && gate == Some("True") && !kruise_unhappy && state != lc::UPDATING {
            return if available(pod, t.min_ready, now) {
                Step::Done
            } else {
                Step::AwaitReady
            };
        }
        return Step::AwaitRestart;
    }
    if gate != Some("True") || state == lc::UPDATING || kruise_unhappy {
        return Step::Finish;
    }
    if available(pod, t.min_ready, now) {
        Step::Done
    } else {
        Step::AwaitReady
    }
}

/// The `updateTimestamp` of the pod's in-place state.
pub fn update_timestamp(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let raw = annotation(pod, ANNOTATION_INPLACE_STATE)?;
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    v.get("updateTimestamp")?.as_str()?.parse().ok()
}

/// Why a pod is not updated now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// `partition` keeps this many pods on the old revision.
    Partition(i32),
    /// Its game server's opsState is one the options defer.
    Deferred(String),
    /// The rollout pauses at this step (0-based) of so many (`hotsync.dev/steps`).
    Step { step: usize, of: usize },
}

/// The plan of one set: which pods, in which order; which are held and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    /// Pods to update, highest update priority first, then highest ordinal (Kruise's order).
    pub order: Vec<String>,
    /// Pods on the target revision whose update is not finished (hotsync's or Kruise's).
    pub in_flight: Vec<String>,
    /// Pods on the target, done.
    pub current: Vec<String>,
    /// Pods not updated now, and why.
    pub held: Vec<(String, Held)>,
    /// At most this many pods unavailable at once.
    pub max_unavailable: usize,
}

/// What the plan takes from the set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// opsStates whose game servers are deferred.
    pub defer_ops_states: Vec<String>,
    /// Defer `Allocated` game servers too.
    pub defer_allocated: bool,
    /// `spec.replicas` (what partition and a percentage of maxUnavailable are counted against).
    pub replicas: usize,
    pub partition: usize,
    /// `maxUnavailable`, an int or a percentage.
    pub max_unavailable: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// The step the rollout is at: at most this many pods in total on the target, at step `step`
    /// (0-based) of `of` (`hotsync.dev/steps`); `None`: every pod.
    pub step: Option<StepCap>,
}

/// The cap a step puts on a rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepCap {
    pub pods: usize,
    pub step: usize,
    pub of: usize,
}

/// maxUnavailable as a pod count: an int, or a percentage of replicas rounded down (Kruise's
/// `GetValueFromIntOrPercent`); at least 1.
pub fn scaled(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    replicas: usize,
) -> usize {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => usize::try_from((*i).max(0)).unwrap_or(0),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<usize>().ok())
            .map(|p| replicas * p / 100)
            .or_else(|| s.parse().ok())
            .unwrap_or(1),
    };
    n.max(1)
}

/// What the gate of a step says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Promote.
    Pass,
    /// Not yet: a pod or its game server is not ready again (OKG reports a game server's state after
    /// its pod's, so right after an update it may still read `NotReady`); the step stays paused.
    Wait(String),
    /// Stop the rollout: a game server crashed, a changed container restarted again, a pod is gone or
    /// no longer on the new images.
    Fail(String),
}

/// The gate a step passes before it is promoted by itself: every pod updated so far is ready on the
/// target's images, its game server (`gs_states`: the GameServers' `status.currentState`, by name) is
/// not `Crash` and no longer `NotReady`, and no changed container restarted again after its update
/// (more than the one restart the update made, by the pod's baseline). Which gate, which pod, which
/// container, when it does not pass.
///
/// `seen_healthy`: the gate passed once already during this step's pause. Until then a pod not ready
/// or a game server `NotReady` is the update's own and the gate waits; after it, the game server went
/// `NotReady` during the pause, and the gate fails.
pub fn step_gate(
    pods: &[Pod],
    updated: &[String],
    gs_states: &BTreeMap<String, String>,
    t: &Target,
    seen_healthy: bool,
) -> Gate {
    let mut wait = None;
    for name in updated {
        let Some(p) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            return Gate::Fail(format!("gate ready: pod {name} is gone"));
        };
        for (c, image) in &t.images {
            if spec_image(p, c) != Some(image.as_str()) {
                return Gate::Fail(format!(
                    "gate ready: pod {name} container {c} is not on {image}"
                ));
            }
        }
        if let Some(b) = baseline(p) {
            for (c, cb) in &b.containers {
                let now = status_of(p, c).map(|s| s.restart_count).unwrap_or(0);
                if now > cb.restart_count + 1 {
                    return Gate::Fail(format!(
                        "gate restarts: pod {name} container {c} restarted again after its update ({} restarts since)",
                        now - cb.restart_count
                    ));
                }
            }
        }
        match gs_states.get(name).map(String::as_str) {
            Some("Crash") => return Gate::Fail(format!("gate game server: {name} is Crash")),
            Some("NotReady") if seen_healthy => {
                return Gate::Fail(format!(
                    "gate game server: {name} went NotReady during the pause"
                ))
            }
            Some("NotReady") => {
                wait.get_or_insert(format!("gate game server: {name} is NotReady"));
            }
            _ => {}
        }
        if !available(p, Duration::ZERO, k8s_openapi::jiff::Timestamp::now()) {
            if seen_healthy {
                return Gate::Fail(format!(
                    "gate ready: pod {name} went not ready during the pause"
                ));
            }
            wait.get_or_insert(format!("gate ready: pod {name} is not ready"));
        }
    }
    wait.map_or(Gate::Pass, Gate::Wait)
}

/// OKG has read each updated pod as it is now: the pod's GameServer holds in `status.podStatus` (OKG
/// writes it together with `currentState`, from one reading of the pod) the pod ready, with the restart
/// counts the pod has now. Until then the game server's state may be about the pod before its update,
/// and a `NotReady` that follows is the update's own.
pub fn okg_caught_up(
    pods: &[Pod],
    updated: &[String],
    seen: &BTreeMap<String, k8s_openapi::api::core::v1::PodStatus>,
) -> bool {
    fn counts(s: &k8s_openapi::api::core::v1::PodStatus) -> BTreeMap<&str, i32> {
        s.container_statuses
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.restart_count))
            .collect()
    }
    updated.iter().all(|name| {
        let (Some(p), Some(s)) = (
            pods.iter()
                .find(|p| p.metadata.name.as_deref() == Some(name)),
            seen.get(name),
        ) else {
            return false;
        };
        let ready = s
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready
            && p.status
                .as_ref()
                .is_some_and(|now| counts(now) == counts(s))
    })
}

fn priority(pod: &Pod) -> i64 {
    label(pod, crate::model::LABEL_UPDATE_PRIORITY)
        .map(|v| {
            let digits: String = v
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().unwrap_or(0)
        })
        .unwrap_or(0)
}

fn ordinal(pod: &Pod) -> i64 {
    pod.metadata
        .name
        .as_deref()
        .and_then(|n| n.rsplit_once('-'))
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or(-1)
}

/// Plans a set: pods on the target are current or in flight; the others go in Kruise's order (update
/// priority, then ordinal, both highest first), less those deferred by their opsState, and less those
/// `partition` keeps (it counts the pods allowed to stay behind; pods already on the target count
/// first, as in Kruise's unordered update).
pub fn plan_set(
    pods: &[Pod],
    t: &Target,
    opts: &PlanOptions,
    now: k8s_openapi::jiff::Timestamp,
) -> SetPlan {
    let mut live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|p| {
        (
            std::cmp::Reverse(priority(p)),
            std::cmp::Reverse(ordinal(p)),
        )
    });
    let mut plan = SetPlan {
        max_unavailable: scaled(opts.max_unavailable.as_ref(), opts.replicas),
        ..Default::default()
    };
    let mut candidates: Vec<&Pod> = Vec::new();
    for p in &live {
        let name = p.metadata.name.clone().unwrap_or_default();
        if label(p, LABEL_REVISION_HASH) == Some(t.revision.as_str()) {
            match next_step(p, t, now) {
                Step::Done => plan.current.push(name),
                _ => plan.in_flight.push(name),
            }
            continue;
        }
        candidates.push(p);
    }
    let updated = plan.current.len() + plan.in_flight.len();
    let by_partition = opts.replicas.saturating_sub(opts.partition);
    // A step binds when it allows fewer pods than partition does.
    let step = opts.step.filter(|s| s.pods < by_partition);
    let may_update = step.map_or(by_partition, |s| s.pods);
    let mut allowed = may_update.saturating_sub(updated);
    for p in candidates {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ops = label(p, crate::model::LABEL_OPS_STATE).unwrap_or("None");
        // A pod already preparing (hotsync's own earlier step) carries on whatever its opsState.
        let started = label(p, LABEL_LIFECYCLE_STATE) == Some(lc::PREPARING_UPDATE)
            || condition(p, CONDITION_INPLACE_READY) == Some("False");
        if !started
            && (opts.defer_ops_states.iter().any(|s| s == ops)
                || (opts.defer_allocated && ops == "Allocated"))
        {
            plan.held.push((name, Held::Deferred(ops.to_string())));
            continue;
        }
        if allowed == 0 {
            let why = match step {
                Some(s) => Held::Step {
                    step: s.step,
                    of: s.of,
                },
                None => Held::Partition(i32::try_from(opts.partition).unwrap_or(i32::MAX)),
            };
            plan.held.push((name, why));
            continue;
        }
        allowed -= 1;
        plan.order.push(name);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rev: &str, sidecar: &str, extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "labels": {LABEL_REVISION_HASH: rev, "game.kruise.io/gs-update-priority": "0",
                "game.kruise.io/gs-opsState": "None", LABEL_LIFECYCLE_STATE: "Normal"}},
            "spec": {"containers": [{"name": "game", "image": "g:1"}, {"name": "sidecar", "image": sidecar}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": CONDITION_INPLACE_READY, "status": "True"}],
                "containerStatuses": [
                    {"name": "game", "image": "docker.io/library/g:1", "imageID": "g@sha256:g", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "sidecar", "image": format!("docker.io/library/{sidecar}"), "imageID": "s@sha256:1", "ready": true, "restartCount": 0, "containerID": "c1", "state": {"running": {}}}]},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pod")
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn target() -> Target {
        Target {
            revision: "mc-new".into(),
            images: BTreeMap::from([
                ("game".into(), "g:1".into()),
                ("sidecar".into(), "s:2".into()),
            ]),
            ..Default::default()
        }
    }

    fn opts(replicas: usize) -> PlanOptions {
        PlanOptions {
            defer_ops_states: vec![
                "WaitToBeDeleted".into(),
                "Kill".into(),
                "Maintaining".into(),
            ],
            replicas,
            ..Default::default()
        }
    }

    fn now() -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::now()
    }

    #[test]
    fn pods_go_by_update_priority_then_ordinal_highest_first() {
        let pods = vec![
            pod("mc-0", "mc-old", "s:1", json!({})),
            pod(
                "mc-1",
                "mc-old",
                "s:1",
                json!({"metadata": {"labels": {"game.kruise.io/gs-update-priority": "10"}}}),
            ),
            pod("mc-2", "mc-old", "s:1", json!({})),
        ];
        let p = plan_set(&pods, &target(), &opts(3), now());
        assert_eq!(p.order, ["mc-1", "mc-2", "mc-0"]);
        assert_eq!(p.max_unavailable, 1);
    }

    #[test]
    fn partition_counts_pods_already_on_the_target_first() {
        let pods = vec![
            pod("mc-0", "mc-old", "s:1", json!({})),
            pod("mc-1", "mc-old", "s:1", json!({})),
            pod(
                "mc-2",
                "mc-new",
                "s:2",
                json!({"status": {"containerStatuses": [
                {"name": "game", "image": "docker.io/library/g:1", "imageID": "g", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "sidecar", "image": "docker.io/library/s:2", "imageID": "s@sha256:2", "ready": true, "restartCount": 1, "state": {"running": {}}}]}}),
            ),
        ];
        let p = plan_set(
            &pods,
            &target(),
            &PlanOptions {
                partition: 1,
                ..opts(3)
            },
            now(),
        );
        assert_eq!(p.current, ["mc-2"]);
        assert_eq!(p.order, ["mc-1"]);
        assert_eq!(p.held, [("mc-0".to_string(), Held::Partition(1))]);
    }

    #[test]
    fn a_step_caps_the_pods_on_the_target_in_total_and_holds_the_rest_for_later_steps() {
        let updated = json!({"status": {"containerStatuses": [
            {"name": "game", "image": "docker.io/library/g:1", "imageID": "g", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "sidecar", "image": "docker.io/library/s:2", "imageID": "s@sha256:2", "ready": true, "restartCount": 1, "state": {"running": {}}}]}});
        let pods = vec![
            pod("mc-0", "mc-old", "s:1", json!({})),
            pod("mc-1", "mc-old", "s:1", json!({})),
            pod("mc-2", "mc-old", "s:1", json!({})),
            pod("mc-3", "mc-new", "s:2", updated),
        ];
        let at = |pods: usize, step: usize| PlanOptions {
            step: Some(StepCap { pods, step, of: 3 }),
            ..opts(4)
        };
        // Step 1 of 3 (one pod): the pod already updated is that one; nothing more.
        let p = plan_set(&pods, &target(), &at(1, 0), now());
        assert_eq!(p.current, ["mc-3"]);
        assert!(p.order.is_empty(), "{p:?}");
        assert_eq!(p.held.len(), 3);
        assert!(p
            .held
            .iter()
            .all(|(_, h)| *h == Held::Step { step: 0, of: 3 }));
        // Step 2 of 3 (two pods): one more, by ordinal.
        let p = plan_set(&pods, &target(), &at(2, 1), now());
        assert_eq!(p.order, ["mc-2"]);
        // A partition tighter than the step is what holds.
        let p = plan_set(
            &pods,
            &target(),
            &PlanOptions {
                partition: 3,
                ..at(3, 1)
            },
            now(),
        );
        assert!(p.order.is_empty());
        assert!(p.held.iter().all(|(_, h)| *h == Held::Partition(3)));
    }

    #[test]
    fn a_step_gate_names_the_pod_and_container_that_restarted_again_or_the_game_server_that_crashed(
    ) {
        let baseline = serde_json::to_string(&Baseline {
            revision: "mc-old".into(),
            target: "mc-new".into(),
            containers: BTreeMap::from([(
                "sidecar".to_string(),
                ContainerBaseline {
                    image: "s:1".into(),
                    restart_count: 0,
                    container_id: Some("c1".into()),
                    image_id: "s@sha256:1".into(),
                },
            )]),
        })
        .expect("json");
        let updated = |restarts: i32| {
            pod(
                "mc-3",
                "mc-new",
                "s:2",
                json!({"metadata": {"annotations": {ANNOTATION_BASELINE: baseline}},
                    "status": {"containerStatuses": [
                    {"name": "game", "image": "docker.io/library/g:1", "imageID": "g", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "sidecar", "image": "docker.io/library/s:2", "imageID": "s@sha256:2", "ready": true, "restartCount": restarts, "state": {"running": {}}}]}}),
            )
        };
        let names = ["mc-3".to_string()];
        let none = BTreeMap::new();
        assert_eq!(
            step_gate(&[updated(1)], &names, &none, &target(), false),
            Gate::Pass
        );
        let Gate::Fail(again) = step_gate(&[updated(3)], &names, &none, &target(), false) else {
            panic!("a second restart fails the gate");
        };
        assert!(
            again.contains("mc-3")
                && again.contains("sidecar")
                && again.contains("restarted again"),
            "{again}"
        );
        let crashed = BTreeMap::from([("mc-3".to_string(), "Crash".to_string())]);
        let Gate::Fail(gs) = step_gate(&[updated(1)], &names, &crashed, &target(), false) else {
            panic!("a crashed game server fails the gate");
        };
        assert!(gs.contains("game server") && gs.contains("Crash"), "{gs}");
        // OKG reports the game server's state after the pod's: NotReady right after the update waits.
        let lagging = BTreeMap::from([("mc-3".to_string(), "NotReady".to_string())]);
        assert!(matches!(
            step_gate(&[updated(1)], &names, &lagging, &target(), false),
            Gate::Wait(w) if w.contains("NotReady")
        ));
        // OKG has caught up once the game server holds the pod as it is now: ready, restarted once.
        let seen =
            |p: &Pod| BTreeMap::from([("mc-3".to_string(), p.status.clone().unwrap_or_default())]);
        assert!(okg_caught_up(&[updated(1)], &names, &seen(&updated(1))));
        assert!(
            !okg_caught_up(&[updated(1)], &names, &seen(&updated(0))),
            "a reading from before the update"
        );
        assert!(!okg_caught_up(&[updated(1)], &names, &BTreeMap::new()));
        // Once the gate has passed during the pause, NotReady is the game server going down: it fails.
        assert!(matches!(
            step_gate(&[updated(1)], &names, &lagging, &target(), true),
            Gate::Fail(w) if w.contains("mc-3 went NotReady during the pause")
        ));
    }

    #[test]
    fn game_servers_in_a_deferred_ops_state_wait_unless_already_started() {
        let allocated =
            json!({"metadata": {"labels": {"game.kruise.io/gs-opsState": "Allocated"}}});
        let pods = vec![
            pod("mc-0", "mc-old", "s:1", allocated.clone()),
            pod(
                "mc-1",
                "mc-old",
                "s:1",
                json!({"metadata": {"labels": {"game.kruise.io/gs-opsState": "Maintaining"}}}),
            ),
            pod("mc-2", "mc-old", "s:1", json!({})),
        ];
        let p = plan_set(
            &pods,
            &target(),
            &PlanOptions {
                defer_allocated: true,
                ..opts(3)
            },
            now(),
        );
        assert_eq!(p.order, ["mc-2"]);
        assert_eq!(
            p.held,
            [
                ("mc-1".to_string(), Held::Deferred("Maintaining".into())),
                ("mc-0".to_string(), Held::Deferred("Allocated".into())),
            ]
        );
        let started = vec![pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {"game.kruise.io/gs-opsState": "Allocated"}},
            "status": {"conditions": [{"type": CONDITION_INPLACE_READY, "status": "False"}]}}),
        )];
        let p = plan_set(
            &started,
            &target(),
            &PlanOptions {
                defer_allocated: true,
                ..opts(1)
            },
            now(),
        );
        assert_eq!(p.order, ["mc-0"]);
    }

    #[test]
    fn max_unavailable_scales_percentages_down_and_is_at_least_one() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        assert_eq!(scaled(None, 10), 1);
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10), 2);
        assert_eq!(scaled(Some(&IntOrString::String("1%".into())), 10), 1);
        assert_eq!(scaled(Some(&IntOrString::Int(3)), 10), 3);
    }

    #[test]
    fn the_protocol_prepares_a_hooked_pod_marks_it_not_ready_then_patches() {
        let mut t = target();
        t.hook = Some(LifecycleHook {
            labels_handler: Some(BTreeMap::from([("hold".to_string(), "true".to_string())])),
            ..Default::default()
        });
        let hooked = pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {"hold": "true"}}}),
        );
        assert_eq!(
            next_step(&hooked, &t, now()),
            Step::Prepare {
                with_handler: false
            }
        );
        let waiting = pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {"hold": "true", LABEL_LIFECYCLE_STATE: "PreparingUpdate"}}}),
        );
        assert_eq!(next_step(&waiting, &t, now()), Step::WaitHook);
        let released = pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: "PreparingUpdate"}}}),
        );
        assert_eq!(next_step(&released, &t, now()), Step::MarkNotReady);
        let marked = pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: "PreparingUpdate"}},
            "status": {"conditions": [{"type": CONDITION_INPLACE_READY, "status": "False"}]}}),
        );
        assert_eq!(
            next_step(&marked, &t, now()),
            Step::Patch {
                containers: vec!["sidecar".into()]
            }
        );
        let updated = pod(
            "mc-0",
            "mc-old",
            "s:1",
            json!({"metadata": {"labels": {LABEL_LIFECYCLE_STATE: "Updated"}}}),
        );
        assert_eq!(
            next_step(&updated, &t, now()),
            Step::Prepare { with_handler: true }
        );
    }

    #[test]
    fn a_restart_onto_the_same_digest_under_a_new_tag_is_done_and_kruise_would_not_see_it() {
        let b = Baseline {
            revision: "mc-old".into(),
            target: "mc-new".into(),
            containers: BTreeMap::from([(
                "sidecar".to_string(),
                ContainerBaseline {
                    image: "s:1".into(),
                    restart_count: 0,
                    container_id: Some("c1".into()),
                    image_id: "s@sha256:1".into(),
                },
            )]),
        };
        let state = json!({"revision": "mc-new", "lastContainerStatuses": {"sidecar": {"imageID": "s@sha256:1"}}}).to_string();
        // The kubelet restarted the sidecar on the same digest and reports the old tag.
        let p = pod(
            "mc-0",
            "mc-new",
            "s:2",
            json!({
                "metadata": {"labels": {LABEL_LIFECYCLE_STATE: "Updating"}, "annotations": {ANNOTATION_BASELINE: serde_json::to_string(&b).expect("json"), ANNOTATION_INPLACE_STATE: state}},
                "status": {"conditions": [{"type": CONDITION_INPLACE_READY, "status": "False"}], "containerStatuses": [
                    {"name": "game", "image": "docker.io/library/g:1", "imageID": "g", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "sidecar", "image": "docker.io/library/s:1", "imageID": "s@sha256:1", "ready": true, "restartCount": 1, "containerID": "c2", "state": {"running": {}}}]},
            }),
        );
        assert!(
            kruise_check_fails(&p),
            "Kruise's own check never passes (kruise#2297)"
        );
        assert_eq!(next_step(&p, &target(), now()), Step::Finish);
    }

    #[test]
    fn a_failing_new_container_stops_the_pod() {
        let b = Baseline {
            target: "mc-new".into(),
            containers: BTreeMap::from([("sidecar".to_string(), ContainerBaseline::default())]),
            ..Default::default()
        };
        let p = pod(
            "mc-0",
            "mc-new",
            "s:2",
            json!({
                "metadata": {"annotations": {ANNOTATION_BASELINE: serde_json::to_string(&b).expect("json")}},
                "status": {"containerStatuses": [
                    {"name": "sidecar", "image": "docker.io/library/s:1", "imageID": "s@sha256:1", "ready": false, "restartCount": 0,
                     "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]},
            }),
        );
        assert_eq!(
            next_step(&p, &target(), now()),
            Step::Failed {
                container: "sidecar".into(),
                reason: "ImagePullBackOff: not found".into()
            }
        );
    }
}
