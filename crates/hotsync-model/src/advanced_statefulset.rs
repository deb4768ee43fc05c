//! Kruise's Advanced StatefulSet (`apps.kruise.io/v1beta1`), which OKG creates per GameServerSet.

// kube-derive takes one `printcolumn(...)` per column, each with `type_`; clippy reads those as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::{int_or_string, unvalidated, Extra, Lifecycle};
use k8s_openapi::api::apps::v1::StatefulSetCondition;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of an Advanced StatefulSet, the parts OKG writes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "apps.kruise.io",
    version = "v1beta1",
    kind = "StatefulSet",
    root = "AdvancedStatefulSet",
    namespaced,
    status = "AdvancedStatefulSetStatus",
    shortname = "sts",
    shortname = "asts",
    derive = "PartialEq",
    derive = "Default",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "DESIRED", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "CURRENT", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "UPDATED",
        type_ = "integer",
        json_path = ".status.updatedReplicas"
    ),
    printcolumn(name = "READY", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "CONTAINERS",
        type_ = "string",
        json_path = ".spec.template.spec.containers[*].name",
        priority = 1
    ),
    printcolumn(
        name = "IMAGES",
        type_ = "string",
        json_path = ".spec.template.spec.containers[*].image",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AdvancedStatefulSetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default)]
    #[schemars(schema_with = "unvalidated")]
    pub template: PodTemplateSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_management_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<AstsUpdateStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string_list")]
    pub reserve_ordinals: Option<Vec<IntOrString>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_strategy: Option<AstsScaleStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "unvalidated")]
    pub volume_claim_templates: Option<Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_update_strategy: Option<VolumeClaimUpdateStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<super::PvcRetentionPolicy>,
    /// The first ordinal (Kruise's `StatefulSetOrdinals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<Ordinals>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Where an Advanced StatefulSet's ordinals start.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ordinals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i32>,
}

/// Whether volume claims follow template changes (`OnDelete` or `OnPVCDelete`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimUpdateStrategy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// Kruise's `InPlaceUpdateStrategy` (`apis/apps/pub`): the grace period between marking a pod not
/// ready and patching it, and the image pre-download settings (which need Kruise's daemon).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AstsInPlaceUpdateStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pre_download_min_updated_ready_pods: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub image_pre_download_parallelism: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pre_download_timeout_seconds: Option<i32>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Kruise's scale strategy of an Advanced StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AstsScaleStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// An array of int-or-string (Kruise's `reserveOrdinals`); an object schema here made the API server
/// reject every Advanced StatefulSet that reserves ordinals.
fn int_or_string_list(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = int_or_string(g);
    schemars::json_schema!({"type": "array", "items": item})
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AstsUpdateStrategy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<AstsRollingUpdate>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AstsRollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_update_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_update_strategy: Option<AstsInPlaceUpdateStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unordered_update: Option<UnorderedUpdate>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Kruise's unordered update: the order comes from a priority strategy instead of the ordinals.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UnorderedUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_strategy: Option<UpdatePriorityStrategy>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Kruise's `UpdatePriorityStrategy`: weights of label selectors, or the integer value of labels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePriorityStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_priority: Option<Vec<UpdatePriorityOrderTerm>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_priority: Option<Vec<UpdatePriorityWeightTerm>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePriorityOrderTerm {
    pub ordered_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePriorityWeightTerm {
    pub weight: i32,
    #[serde(default)]
    pub match_selector: LabelSelector,
}

/// Kruise's view of the rollout: which revision pods should run, and how many do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdvancedStatefulSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default)]
    pub current_replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub updated_ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_available_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<StatefulSetCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claims: Option<Vec<VolumeClaimStatus>>,
    #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// How many pods run with a volume claim template's current version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimStatus {
    #[serde(default)]
    pub volume_claim_name: String,
    #[serde(default)]
    pub compatible_replicas: i32,
    #[serde(default)]
    pub compatible_ready_replicas: i32,
}

/// The older `apps.kruise.io/v1alpha1` Advanced StatefulSet, still served by Kruise (v1beta1 is stored).
/// OKG writes v1beta1; this version exists so that the CRD the test bed installs serves both, as
/// Kruise's does.
pub mod v1alpha1 {
    #![allow(clippy::duplicated_attributes)]

    use super::{AstsInPlaceUpdateStrategy, UnorderedUpdate};
    use crate::{int_or_string, unvalidated, Extra};
    use k8s_openapi::api::apps::v1::StatefulSetCondition;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The v1alpha1 spec: no lifecycle, scale strategy, reserved ordinals or volume claim strategy.
    #[derive(
        CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default,
    )]
    #[kube(
        group = "apps.kruise.io",
        version = "v1alpha1",
        kind = "StatefulSet",
        root = "AdvancedStatefulSetV1alpha1",
        namespaced,
        status = "StatefulSetStatus",
        shortname = "sts",
        shortname = "asts",
        scale(
            spec_replicas_path = ".spec.replicas",
            status_replicas_path = ".status.replicas",
            label_selector_path = ".status.labelSelector"
        ),
        printcolumn(name = "DESIRED", type_ = "integer", json_path = ".spec.replicas"),
        printcolumn(name = "CURRENT", type_ = "integer", json_path = ".status.replicas"),
        printcolumn(
            name = "UPDATED",
            type_ = "integer",
            json_path = ".status.updatedReplicas"
        ),
        printcolumn(name = "READY", type_ = "integer", json_path = ".status.readyReplicas"),
        printcolumn(
            name = "AGE",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        ),
        printcolumn(
            name = "CONTAINERS",
            type_ = "string",
            json_path = ".spec.template.spec.containers[*].name",
            priority = 1
        ),
        printcolumn(
            name = "IMAGES",
            type_ = "string",
            json_path = ".spec.template.spec.containers[*].image",
            priority = 1
        )
    )]
    #[serde(rename_all = "camelCase")]
    pub struct StatefulSetSpec {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replicas: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub selector: Option<LabelSelector>,
        #[serde(default)]
        #[schemars(schema_with = "unvalidated")]
        pub template: PodTemplateSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "unvalidated")]
        pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_management_policy: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub update_strategy: Option<StatefulSetUpdateStrategy>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision_history_limit: Option<i32>,
        #[serde(flatten, default, skip_serializing_if = "Extra::is_empty")]
        #[schemars(skip)]
        pub extra: Extra,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct StatefulSetUpdateStrategy {
        #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
        pub type_: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rolling_update: Option<RollingUpdateStatefulSetStrategy>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct RollingUpdateStatefulSetStrategy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub partition: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "int_or_string")]
        pub max_unavailable: Option<IntOrString>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_update_policy: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub paused: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_ready_seconds: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub in_place_update_strategy: Option<AstsInPlaceUpdateStrategy>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unordered_update: Option<UnorderedUpdate>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct StatefulSetStatus {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub observed_generation: Option<i64>,
        #[serde(default)]
        pub replicas: i32,
        #[serde(default)]
        pub ready_replicas: i32,
        #[serde(default)]
        pub available_replicas: i32,
        #[serde(default)]
        pub current_replicas: i32,
        #[serde(default)]
        pub updated_replicas: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub current_revision: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub update_revision: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collision_count: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub label_selector: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub conditions: Option<Vec<StatefulSetCondition>>,
    }
}
