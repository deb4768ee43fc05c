//! The Advanced StatefulSet OKG builds from a GameServerSet.
//!
//! Follows openkruise/kruise-game `pkg/controllers/gameserverset/gameserverset_controller.go` (`initAsts`) and
//! `pkg/util/gameserver.go` (`GetNewAstsFromGss`, `GetAstsHash`).

use crate::names::{
    OKG_ALLOW_NOT_READY_CONTAINERS, OKG_ASTS_HASH, OKG_INPLACE_NOT_READY_BLOCKER, OKG_NETWORK_CONF,
    OKG_NETWORK_TYPE, OKG_OWNER_GSS, OKG_UPDATE_PRIORITY,
};
use hotsync_model::{
    AdvancedStatefulSet, AstsInPlaceUpdateStrategy, AstsRollingUpdate, AstsScaleStrategy,
    AstsUpdateStrategy, GameServerSet, LifecycleHook, UnorderedUpdate, UpdatePriorityOrderTerm,
    UpdatePriorityStrategy,
};
use k8s_openapi::api::core::v1::PodReadinessGate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::ResourceExt as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `initAsts`: the Advanced StatefulSet OKG creates for a new set: identity fields, then
/// [`get_new_asts_from_gss`].
pub fn init_asts(gss: &GameServerSet) -> AdvancedStatefulSet {
    let name = gss.name_any();
    let mut asts = AdvancedStatefulSet::new(&name, Default::default());
    asts.metadata.namespace = gss.namespace();
    asts.metadata.owner_references = owner_ref(gss).map(|o| vec![o]);
    asts.metadata.annotations = Some(BTreeMap::from([(OKG_ASTS_HASH.into(), asts_hash(gss))]));
    asts.spec.selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(OKG_OWNER_GSS.into(), name.clone())])),
        ..Default::default()
    });
    asts.spec.replicas = gss.spec.replicas;
    asts.spec.reserve_ordinals = gss.spec.reserve_game_server_ids.clone();
    asts.spec.service_name = Some(
        gss.spec
            .service_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or(name),
    );
    get_new_asts_from_gss(gss, &mut asts);
    asts
}

fn owner_ref(gss: &GameServerSet) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "game.kruise.io/v1alpha1".into(),
        kind: "GameServerSet".into(),
        name: gss.metadata.name.clone()?,
        uid: gss.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// `IsAllowNotReadyContainers`: the network conf names `AllowNotReadyContainers`.
pub fn allows_not_ready_containers(gss: &GameServerSet) -> bool {
    gss.spec
        .network
        .as_ref()
        .and_then(|n| n.network_conf.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|p| p.name.as_deref() == Some(OKG_ALLOW_NOT_READY_CONTAINERS))
        })
}

/// `GetNewAstsFromGss`: the template (owner label, network annotations, the `InPlaceUpdateReady` readiness
/// gate), the lifecycle (with OKG's own in-place hook for `AllowNotReadyContainers`), the scale and update
/// strategies (update priority as Kruise's order priority on `gs-update-priority`, only when the set has a
/// `rollingUpdate`). Replicas, reserved ordinals, selector and service name are left as they are.
pub fn get_new_asts_from_gss(gss: &GameServerSet, asts: &mut AdvancedStatefulSet) {
    let s = &mut asts.spec;
    s.pod_management_policy = Some("Parallel".into());
    let mut template = gss.spec.game_server_template.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(OKG_OWNER_GSS.into(), gss.name_any());
    if let Some(net) = &gss.spec.network {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        let conf = serde_json::to_string(&net.network_conf).unwrap_or_else(|_| "null".into());
        annotations.insert(OKG_NETWORK_CONF.into(), conf);
        annotations.insert(
            OKG_NETWORK_TYPE.into(),
            net.network_type.clone().unwrap_or_default(),
        );
    }
    // Appended whatever the template holds: a gate the user wrote is there twice.
    template
        .spec
        .get_or_insert_with(Default::default)
        .readiness_gates
        .get_or_insert_with(Vec::new)
        .push(PodReadinessGate {
            condition_type: "InPlaceUpdateReady".into(),
        });
    s.template = template;
    s.lifecycle = gss.spec.lifecycle.clone();
    if gss.spec.network.is_some() && allows_not_ready_containers(gss) {
        let l = s.lifecycle.get_or_insert_with(Default::default);
        let hook = l.in_place_update.get_or_insert_with(LifecycleHook::default);
        hook.labels_handler
            .get_or_insert_with(Default::default)
            .insert(OKG_INPLACE_NOT_READY_BLOCKER.into(), "true".into());
    }
    s.volume_claim_templates = gss.spec.game_server_template.volume_claim_templates.clone();
    s.scale_strategy = Some(AstsScaleStrategy {
        max_unavailable: gss
            .spec
            .scale_strategy
            .as_ref()
            .and_then(|x| x.max_unavailable.clone()),
        ..Default::default()
    });
    let us = gss.spec.update_strategy.clone().unwrap_or_default();
    let mut strategy = AstsUpdateStrategy {
        type_: us.type_.clone(),
        ..Default::default()
    };
    if let Some(ru) = &us.rolling_update {
        strategy.type_ = Some("RollingUpdate".into());
        strategy.rolling_update = Some(AstsRollingUpdate {
            partition: ru.partition,
            max_unavailable: ru.max_unavailable.clone(),
            pod_update_policy: ru.pod_update_policy.clone(),
            paused: ru.paused,
            in_place_update_strategy: ru.in_place_update_strategy.as_ref().map(|s| {
                AstsInPlaceUpdateStrategy {
                    grace_period_seconds: s.grace_period_seconds,
                    ..Default::default()
                }
            }),
            min_ready_seconds: ru.min_ready_seconds,
            unordered_update: Some(UnorderedUpdate {
                priority_strategy: Some(UpdatePriorityStrategy {
                    order_priority: Some(vec![UpdatePriorityOrderTerm {
                        ordered_key: OKG_UPDATE_PRIORITY.into(),
                    }]),
                    weight_priority: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    s.update_strategy = Some(strategy);
    s.persistent_volume_claim_retention_policy =
        gss.spec.persistent_volume_claim_retention_policy.clone();
}

/// `GetAstsHash`: a hash of what decides whether the Advanced StatefulSet must change: the update
/// strategy, the game server template and the network conf (not the network type, the lifecycle, the
/// scale strategy or the claim retention policy). Upstream hashes Go's `spew` dump with FNV-32; this
/// hashes sorted JSON of the same three values with FNV-32, printed as decimal.
pub fn asts_hash(gss: &GameServerSet) -> String {
    let v = json!({
        "UpdateStrategy": gss.spec.update_strategy,
        "Template": gss.spec.game_server_template,
        "NetworkConfigs": gss.spec.network.as_ref().and_then(|n| n.network_conf.clone()),
    });
    let mut h: u32 = 0x811c_9dc5;
    for b in sorted_json(&v).bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h.to_string()
}

fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), sorted_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gss(extra: Value) -> GameServerSet {
        let mut v = json!({
            "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": "mc", "namespace": "ns", "uid": "u1"},
            "spec": {"replicas": 2, "gameServerTemplate": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
        });
        if let (Some(spec), Value::Object(e)) = (v["spec"].as_object_mut(), extra) {
            spec.extend(e);
        }
        serde_json::from_value(v).expect("gss")
    }

    #[test]
    fn the_template_carries_the_owner_label_the_network_annotations_and_the_readiness_gate() {
        let g = gss(json!({"network": {"networkType": "Kubernetes-HostPort",
            "networkConf": [{"name": "ContainerPorts", "value": "c:7777/TCP"}]}}));
        let a = init_asts(&g);
        let meta = a.spec.template.metadata.clone().expect("metadata");
        assert_eq!(
            meta.labels
                .expect("labels")
                .get(OKG_OWNER_GSS)
                .map(String::as_str),
            Some("mc")
        );
        let ann = meta.annotations.expect("annotations");
        assert_eq!(
            ann.get(OKG_NETWORK_TYPE).map(String::as_str),
            Some("Kubernetes-HostPort")
        );
        assert_eq!(
            ann.get(OKG_NETWORK_CONF).map(String::as_str),
            Some(r#"[{"name":"ContainerPorts","value":"c:7777/TCP"}]"#)
        );
        let gates = a
            .spec
            .template
            .spec
            .expect("spec")
            .readiness_gates
            .expect("gates");
        assert_eq!(gates.len(), 1);
        assert_eq!(a.spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(a.spec.service_name.as_deref(), Some("mc"));
    }

    #[test]
    fn allow_not_ready_containers_adds_an_in_place_hook_and_priorities_need_a_rolling_update() {
        let g = gss(json!({"network": {"networkType": "Kubernetes-NodePort",
            "networkConf": [{"name": "AllowNotReadyContainers", "value": "c"}]}}));
        let a = init_asts(&g);
        let hook = a
            .spec
            .lifecycle
            .and_then(|l| l.in_place_update)
            .expect("hook");
        assert_eq!(
            hook.labels_handler
                .expect("labels")
                .get(OKG_INPLACE_NOT_READY_BLOCKER)
                .map(String::as_str),
            Some("true")
        );
        assert!(a
            .spec
            .update_strategy
            .expect("strategy")
            .rolling_update
            .is_none());
        let with_ru = init_asts(&gss(
            json!({"updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}}}),
        ));
        let ru = with_ru
            .spec
            .update_strategy
            .and_then(|u| u.rolling_update)
            .expect("rolling");
        assert!(ru.unordered_update.is_some());
    }

    #[test]
    fn the_hash_ignores_the_network_type_but_not_the_network_conf() {
        let a = gss(
            json!({"network": {"networkType": "A", "networkConf": [{"name": "x", "value": "1"}]}}),
        );
        let b = gss(
            json!({"network": {"networkType": "B", "networkConf": [{"name": "x", "value": "1"}]}}),
        );
        let c = gss(
            json!({"network": {"networkType": "A", "networkConf": [{"name": "x", "value": "2"}]}}),
        );
        assert_eq!(asts_hash(&a), asts_hash(&b));
        assert_ne!(asts_hash(&a), asts_hash(&c));
    }
}
