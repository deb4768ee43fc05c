//! Upstream's names: the labels, annotations and conditions OKG and Kruise write, as their code spells them.

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
