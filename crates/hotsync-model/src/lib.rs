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

/// A schema for an int-or-string field.
pub fn int_or_string(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    })
}
