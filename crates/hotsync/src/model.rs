//! The typed model (from `hotsync-model`), and the names of the labels and conditions hotsync reads and
//! writes on pods, with the one rule of Kruise's it needs everywhere: which update policies are in place.

pub use hotsync_model::*;

/// The label OKG puts on every pod and GameServer of a set.
pub const LABEL_OWNER_GSS: &str = "game.kruise.io/owner-gss";
/// The label Kruise compares with `status.updateRevision` to decide whether a pod is up to date.
pub const LABEL_REVISION_HASH: &str = "controller-revision-hash";
/// The pod label OKG mirrors from `GameServer.spec.updatePriority`; higher updates first.
pub const LABEL_UPDATE_PRIORITY: &str = "game.kruise.io/gs-update-priority";
/// The pod label OKG mirrors from `GameServer.spec.deletionPriority`.
pub const LABEL_DELETION_PRIORITY: &str = "game.kruise.io/gs-deletion-priority";
/// The pod label OKG mirrors from `GameServer.spec.opsState`.
pub const LABEL_OPS_STATE: &str = "game.kruise.io/gs-opsState";
/// The pod label StatefulSets put on their pods with the pod's name.
pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Kruise's pod label for the in-place update lifecycle.
pub const LABEL_LIFECYCLE_STATE: &str = "lifecycle.apps.kruise.io/state";
/// Kruise's readiness gate condition: False while a pod updates in place.
pub const CONDITION_INPLACE_READY: &str = "InPlaceUpdateReady";

/// The update policies under which Kruise restarts containers in place instead of recreating pods.
pub fn policy_is_in_place(policy: Option<&str>) -> bool {
    matches!(policy, Some("InPlaceIfPossible") | Some("InPlaceOnly"))
}
