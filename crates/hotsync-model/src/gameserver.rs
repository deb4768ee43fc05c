//! `GameServer` (`game.kruise.io/v1alpha1`): one per pod, created by OKG.

// kube-derive takes one `printcolumn(...)` per column, each with `type_`; clippy reads those as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::{int_or_string, Extra};
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What operators and OKG's service qualities ask of one game server.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "game.kruise.io",
    version = "v1alpha1",
    kind = "GameServer",
    namespaced,
    status = "GameServerStatus",
    shortname = "gs",
    derive = "PartialEq",
    derive = "Default",
    doc = "GameServer is the Schema for the gameservers API",
    printcolumn(
        name = "STATE",
        type_ = "string",
        json_path = ".status.currentState",
        description = "The current state of GameServer"
    ),
    printcolumn(
        name = "OPSSTATE",
        type_ = "string",
        json_path = ".spec.opsState",
        description = "The operations state of GameServer"
    ),
    printcolumn(
        name = "DP",
        type_ = "string",
        json_path = ".status.deletionPriority",
        description = "The current deletionPriority of GameServer"
    ),
    printcolumn(
        name = "UP",
        type_ = "string",
        json_path = ".status.updatePriority",
        description = "The current updatePriority of GameServer"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "The age of GameServer"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GameServerSpec {
    /// `None`, `WaitToBeDeleted`, `Maintaining`, `Allocated`, `Kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub update_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub deletion_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    /// Per-game-server image overrides that OKG patches onto the pod at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<GameServerContainer>>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A container override on one GameServer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameServerContainer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// What OKG observed of the game server and its pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameServerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<String>,
    /// `Creating`, `Ready`, `NotReady`, `Crash`, `Updating`, `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// OKG's `NetworkStatus`, kept as JSON: OKG's network plugins write it from the pod's
    /// `game.kruise.io/network-status` annotation, field by field. Its schema is [`NetworkStatus`]'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "network_status_schema")]
    pub network_status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_status_schema")]
    pub pod_status: Option<PodStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub update_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub deletion_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// `PodNormal`, `NodeNormal`, `PersistentVolumeNormal` (OKG's `GameServerCondition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<GameServerCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_qualities_conditions: Option<Vec<ServiceQualityCondition>>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// One of OKG's conditions on a game server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameServerCondition {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last result of one service quality probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceQualityCondition {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_transition_time: Option<String>,
}

/// OKG's `NetworkStatus`: the addresses the network plugin opened, and whether the network is as
/// desired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_addresses: Option<Vec<NetworkAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_addresses: Option<Vec<NetworkAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_network_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_network_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAddress {
    #[serde(default)]
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<NetworkPortRange>,
    #[serde(rename = "endPoint", default, skip_serializing_if = "Option::is_none")]
    pub end_point: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPort {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub port: Option<IntOrString>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPortRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// The pod status schema of the Kubernetes API OKG builds with: k8s-openapi's (1.33) without the fields
/// added since (`observedGeneration` of the status and its conditions, each container's `stopSignal`).
fn pod_status_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = g.subschema_for::<PodStatus>();
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return schema;
    };
    props.remove("observedGeneration");
    for field in [
        "conditions",
        "containerStatuses",
        "ephemeralContainerStatuses",
        "initContainerStatuses",
    ] {
        if let Some(items) = props
            .get_mut(field)
            .and_then(|f| f.pointer_mut("/items/properties"))
            .and_then(Value::as_object_mut)
        {
            items.remove("observedGeneration");
            items.remove("stopSignal");
        }
    }
    schema
}

fn network_status_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<NetworkStatus>()
}
