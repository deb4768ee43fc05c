//! The typed model (from `hotsync-model`), and the names of the labels and conditions hotsync reads and
//! writes on pods, with the one rule of Kruise's it needs everywhere: which update policies are in place.

pub use hotsync_model::*;

/// The label OKG puts on every pod and GameServer of a set.
pub const LABEL_OWNER_GSS: &str = "game.kruise.io/owner-gss";
/// The label Kruise compares with `status.updateRevision` to decide whether a pod is up to date.
pub const LABEL_REVISION_HASH: &str = "controller-revision-hash";
/// The pod label OKG mirrors from `GameServer.spec.updatePriority`; higher updates first.
pub const LABEL_UPDATE_PRIORITY: &str = "game.kruise.io/gs-update-priority";
/// The pod label OKG mirrors from `GameServer.spec.deletionPriority` (OKG spells it `delete`).
pub const LABEL_DELETION_PRIORITY: &str = "game.kruise.io/gs-delete-priority";
/// The pod label OKG mirrors from `GameServer.spec.opsState`.
pub const LABEL_OPS_STATE: &str = "game.kruise.io/gs-opsState";
/// The pod label StatefulSets put on their pods with the pod's name.
pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Kruise's pod label for the in-place update lifecycle.
pub const LABEL_LIFECYCLE_STATE: &str = "lifecycle.apps.kruise.io/state";
/// Kruise's readiness gate condition: False while a pod updates in place.
pub const CONDITION_INPLACE_READY: &str = "InPlaceUpdateReady";
/// Kruise's record of an in-place update on a pod (what changed, and the containers' imageIDs before).
pub const ANNOTATION_INPLACE_STATE: &str = "apps.kruise.io/inplace-update-state";
/// The key Kruise read that record under before, and removes on each in-place update.
pub const ANNOTATION_INPLACE_STATE_OLD: &str = "inplace-update-state";
/// Kruise's pending in-place update while `inPlaceUpdateStrategy.gracePeriodSeconds` runs.
pub const ANNOTATION_INPLACE_GRACE: &str = "apps.kruise.io/inplace-update-grace";
/// When the lifecycle label last changed (RFC 3339), written with it.
pub const ANNOTATION_LIFECYCLE_TIMESTAMP: &str = "lifecycle.apps.kruise.io/timestamp";
/// Kruise's lifecycle states that a rollout walks.
pub mod lifecycle {
    pub const NORMAL: &str = "Normal";
    pub const PREPARING_NORMAL: &str = "PreparingNormal";
    pub const PREPARING_UPDATE: &str = "PreparingUpdate";
    pub const UPDATING: &str = "Updating";
    pub const UPDATED: &str = "Updated";
}

/// The update policies under which Kruise restarts containers in place instead of recreating pods.
pub fn policy_is_in_place(policy: Option<&str>) -> bool {
    matches!(policy, Some("InPlaceIfPossible") | Some("InPlaceOnly"))
}
