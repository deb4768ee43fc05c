//! Small readings of pods, as the upstream controllers make them (`k8s.io/kubernetes/pkg/api/v1/pod`).

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn condition_status<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    condition(pod, type_).map(|c| c.status.as_str())
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// `podutil.IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    condition_status(pod, "Ready") == Some("True")
}

/// `isRunningAndReady` (Kruise, stateful_set_utils.go): phase Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// `isCreated`: the pod has a phase (a slot not created yet has none).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn has_readiness_gate(pod: &Pod, type_: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| g.iter().any(|g| g.condition_type == type_))
}

/// Replaces or adds a condition, as `util.SetPodCondition` does (the transition time moves only when the
/// status changes).
pub fn set_condition(pod: &mut Pod, cond: PodCondition) {
    let conds = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(c) if c.status == cond.status => {
            c.reason = cond.reason;
            c.message = cond.message;
        }
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}

/// The current time at second precision, as the API server stores it.
pub fn now() -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
    )
}

/// `time.Now().Format(time.RFC3339)`.
pub fn rfc3339_now() -> String {
    now().0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `getParentNameAndOrdinal`: the ordinal after the last `-` of the name, when the rest is `parent`.
pub fn ordinal(pod_name: &str, parent: &str) -> Option<i32> {
    let (p, o) = pod_name.rsplit_once('-')?;
    if p != parent || o.is_empty() || !o.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    o.parse().ok()
}
