//! `GameServer` (`game.kruise.io/v1alpha1`): one per pod, created by OKG.

// kube-derive takes one `printcolumn(...)` per column, each with `type_`; clippy reads those as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::{int_or_string, Extra};
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::preserve_unknown")]
    pub network_status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::preserve_unknown")]
    pub pod_status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub update_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub deletion_priority: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}
