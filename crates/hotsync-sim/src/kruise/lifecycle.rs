//! Kruise's pod lifecycle hooks: whether a pod is held by a hook, and the lifecycle label.
//!
//! Follows openkruise/kruise `pkg/util/lifecycle/lifecycle_utils.go` (`IsPodHooked`, `IsPodAllHooked`,
//! `UpdatePodLifecycle`, `UpdatePodLifecycleWithHandler`).

use crate::names::{KRUISE_LIFECYCLE_STATE, KRUISE_LIFECYCLE_TIMESTAMP};
use crate::pods;
use hotsync_model::LifecycleHook;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};

/// `GetPodLifecycleState`: the label's value, `""` when absent.
pub fn state(pod: &Pod) -> &str {
    pods::label(pod, KRUISE_LIFECYCLE_STATE).unwrap_or("")
}

/// `IsPodHooked`: the hook is set and the pod carries any of its finalizers or any of its labels.
pub fn is_hooked(hook: Option<&LifecycleHook>, pod: &Pod) -> bool {
    let Some(hook) = hook else { return false };
    let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
    hook.finalizers_handler
        .iter()
        .flatten()
        .any(|f| finalizers.contains(f))
        || hook
            .labels_handler
            .iter()
            .flatten()
            .any(|(k, v)| pods::label(pod, k) == Some(v.as_str()))
}

/// `IsPodAllHooked`: the hook is set and the pod carries all of its finalizers and labels (an empty hook
/// holds every pod; no hook holds none).
pub fn is_all_hooked(hook: Option<&LifecycleHook>, pod: &Pod) -> bool {
    let Some(hook) = hook else { return false };
    let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
    hook.finalizers_handler
        .iter()
        .flatten()
        .all(|f| finalizers.contains(f))
        && hook
            .labels_handler
            .iter()
            .flatten()
            .all(|(k, v)| pods::label(pod, k) == Some(v.as_str()))
}

/// The strategic merge patch `UpdatePodLifecycle` sends (no resourceVersion): the state label and
/// `lifecycle.apps.kruise.io/timestamp`; with `handler`, also its labels and finalizers
/// (`UpdatePodLifecycleWithHandler`).
pub fn patch(state: &str, handler: Option<&LifecycleHook>) -> Value {
    let mut labels = Map::new();
    labels.insert(KRUISE_LIFECYCLE_STATE.into(), Value::String(state.into()));
    let mut meta = Map::new();
    if let Some(h) = handler {
        for (k, v) in h.labels_handler.iter().flatten() {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(f) = &h.finalizers_handler {
            meta.insert("finalizers".into(), json!(f));
        }
    }
    meta.insert("labels".into(), Value::Object(labels));
    meta.insert(
        "annotations".into(),
        json!({ KRUISE_LIFECYCLE_TIMESTAMP: pods::rfc3339_now() }),
    );
    json!({ "metadata": meta })
}
