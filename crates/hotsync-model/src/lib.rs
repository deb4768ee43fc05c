//! Typed OpenKruiseGame and Kruise objects: GameServerSet, GameServer and the Advanced StatefulSet,
//! shared by the product (`hotsync`) and the simulation that examines it (`hotsync-sim`).
//!
//! Types only: no rule of either side lives here (which changes restart a pod, which labels a controller
//! writes). The product names the labels it reads in its own `model` module; the simulation defines
//! upstream's names from upstream's code.
//!
//! The types follow the CRDs in OKG (`game.kruise.io/v1alpha1`) and Kruise (`apps.kruise.io/v1beta1`).
//! Every struct keeps the fields it does not model in an `extra` map, so that an object read from Git or
//! from the cluster survives a round trip. Pod templates use k8s-openapi's `PodTemplateSpec`, as OKG's
//! controller decodes them into Go's `corev1.PodTemplateSpec`.

mod advanced_statefulset;
mod backoff;
mod gameserver;
mod gameserverset;

pub use advanced_statefulset::*;
pub use backoff::WatchBackoff;
pub use gameserver::*;
pub use gameserverset::*;

use schemars::Schema;
use serde_json::Value;
use std::collections::BTreeMap;

/// Fields an object carries that hotsync does not model; kept so that they survive a round trip.
pub type Extra = BTreeMap<String, Value>;

/// A schema for a field the API server neither validates nor prunes, as OKG declares its pod template.
pub fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A schema for a field the API server neither validates nor prunes and whose type it does not check
/// either, as Kruise declares an Advanced StatefulSet's `template` and `volumeClaimTemplates`.
pub fn unvalidated(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The schema of a Kubernetes object embedded in a CRD as controller-gen writes it: k8s-openapi's
/// schema of `T`, whose `metadata` is cut down to the five fields controller-gen keeps for embedded
/// objects (name, namespace, labels, annotations, finalizers).
pub fn embedded<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> Schema {
    let mut schema = g.subschema_for::<T>();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        if props.contains_key("metadata") {
            props.insert(
                "metadata".into(),
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        "finalizers": {"type": "array", "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "name": {"type": "string"},
                        "namespace": {"type": "string"},
                    },
                }),
            );
        }
    }
    schema
}

/// A schema for an int-or-string field.
pub fn int_or_string(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    })
}
