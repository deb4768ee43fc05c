//! Typed OpenKruiseGame and Kruise objects: GameServerSet, GameServer and the Advanced StatefulSet.
//!
//! The types follow the CRDs in OKG (`game.kruise.io/v1alpha1`) and Kruise (`apps.kruise.io/v1beta1`).
//! Every struct keeps the fields it does not model in an `extra` map, so that an object read from Git or
//! from the cluster survives a round trip. Pod templates use k8s-openapi's `PodTemplateSpec`, as OKG's
//! controller decodes them into Go's `corev1.PodTemplateSpec`.

mod advanced_statefulset;
mod gameserver;
mod gameserverset;

pub use advanced_statefulset::*;
pub use gameserver::*;
pub use gameserverset::*;

use schemars::Schema;
use serde_json::Value;
use std::collections::BTreeMap;

/// Fields an object carries that hotsync does not model; kept so that they survive a round trip.
pub type Extra = BTreeMap<String, Value>;

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

/// A schema for a field the API server neither validates nor prunes, as OKG declares its pod template.
pub(crate) fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A schema for an int-or-string field.
pub(crate) fn int_or_string(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    })
}

/// The update policies under which Kruise restarts containers in place instead of recreating pods.
pub fn policy_is_in_place(policy: Option<&str>) -> bool {
    matches!(policy, Some("InPlaceIfPossible") | Some("InPlaceOnly"))
}
