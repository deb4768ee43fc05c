//! What OKG builds from a GameServerSet for Kruise, as far as a rollout depends on it: the Advanced
//! StatefulSet's pod template, its in-place lifecycle hook, and Kruise's rule for which template changes
//! a pod takes in place.
//!
//! Input: a set (from Git or the cluster). Output: values; no I/O. The classification of `diff` and the
//! in-place protocol of `rollout` both read the template from here, so that a field OKG copies into the
//! template (the network annotations from `spec.network`) counts as a template change wherever hotsync
//! decides something.

use crate::model::{GameServerSet, LifecycleHook};
use k8s_openapi::api::core::v1::{PodReadinessGate, PodTemplateSpec};
use serde_json::Value;
use std::collections::BTreeMap;

/// The template annotation OKG writes from `spec.network.networkConf` (as JSON).
pub const ANNOTATION_NETWORK_CONF: &str = "game.kruise.io/network-conf";
/// The template annotation OKG writes from `spec.network.networkType`.
pub const ANNOTATION_NETWORK_TYPE: &str = "game.kruise.io/network-type";
/// The label of the in-place hook OKG adds for `AllowNotReadyContainers`.
pub const LABEL_NOT_READY_BLOCKER: &str = "game.kruise.io/inplace-update-not-ready-blocker";

/// The Advanced StatefulSet's pod template as OKG builds it: the set's template, the owner label, the
/// network annotations when `spec.network` is set, the `InPlaceUpdateReady` readiness gate.
pub fn asts_template(gss: &GameServerSet) -> PodTemplateSpec {
    let mut t = gss.spec.game_server_template.template.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    meta.labels.get_or_insert_with(Default::default).insert(
        crate::model::LABEL_OWNER_GSS.to_string(),
        gss.metadata.name.clone().unwrap_or_default(),
    );
    if let Some(net) = &gss.spec.network {
        let a = meta.annotations.get_or_insert_with(Default::default);
        a.insert(
            ANNOTATION_NETWORK_CONF.into(),
            serde_json::to_string(&net.network_conf).unwrap_or_else(|_| "null".into()),
        );
        a.insert(
            ANNOTATION_NETWORK_TYPE.into(),
            net.network_type.clone().unwrap_or_default(),
        );
    }
    t.spec
        .get_or_insert_with(Default::default)
        .readiness_gates
        .get_or_insert_with(Vec::new)
        .push(PodReadinessGate {
            condition_type: crate::model::CONDITION_INPLACE_READY.into(),
        });
    t
}

/// The Advanced StatefulSet's in-place lifecycle hook: the set's own `lifecycle.inPlaceUpdate`, with the
/// blocker label OKG adds when the network conf lists `AllowNotReadyContainers`.
pub fn in_place_hook(gss: &GameServerSet) -> Option<LifecycleHook> {
    let mut hook = gss
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.in_place_update.clone());
    let allow = gss
        .spec
        .network
        .as_ref()
        .and_then(|n| n.network_conf.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|p| p.name.as_deref() == Some("AllowNotReadyContainers"))
        });
    if allow {
        hook.get_or_insert_with(Default::default)
            .labels_handler
            .get_or_insert_with(Default::default)
            .insert(LABEL_NOT_READY_BLOCKER.into(), "true".into());
    }
    hook
}

/// A template change that Kruise makes in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InPlaceChange {
    /// New images, by container.
    pub images: BTreeMap<String, String>,
    /// Template labels to set (`Some`) or remove (`None`).
    pub labels: BTreeMap<String, Option<String>>,
    /// Template annotations to set or remove.
    pub annotations: BTreeMap<String, Option<String>>,
    /// Containers whose env reads a changed label or annotation: Kruise's `InPlaceUpdateEnvFromMetadata`
    /// restarts them too.
    pub env_restarts: Vec<String>,
}

impl InPlaceChange {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Kruise's rule, from `old` to `new` template: only image changes of existing containers (same names,
/// same order) and metadata changes are in place; `None` when anything else changed (env, even reordered;
/// command, ports, resources, volumes, init containers, containers added, removed or reordered), and
/// Kruise recreates the pod.
pub fn in_place_change(old: &PodTemplateSpec, new: &PodTemplateSpec) -> Option<InPlaceChange> {
    let (mut a, mut b) = (old.clone(), new.clone());
    let (ma, mb) = (
        a.metadata.take().unwrap_or_default(),
        b.metadata.take().unwrap_or_default(),
    );
    let mut change = InPlaceChange::default();
    let (sa, sb) = (
        a.spec.take().unwrap_or_default(),
        b.spec.take().unwrap_or_default(),
    );
    if sa.containers.len() != sb.containers.len() {
        return None;
    }
    for (ca, cb) in sa.containers.iter().zip(&sb.containers) {
        if ca.name != cb.name {
            return None;
        }
        let (mut x, mut y) = (ca.clone(), cb.clone());
        x.image = None;
        y.image = None;
        if x != y {
            return None;
        }
        if ca.image != cb.image {
            change
                .images
                .insert(cb.name.clone(), cb.image.clone().unwrap_or_default());
        }
    }
    let (mut ra, mut rb) = (sa, sb);
    ra.containers.clear();
    rb.containers.clear();
    if ra != rb {
        return None;
    }
    // Template metadata other than labels and annotations is not in place either.
    let strip = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("labels");
            o.remove("annotations");
        }
        v
    };
    if strip(&ma) != strip(&mb) {
        return None;
    }
    change.labels = map_diff(ma.labels.as_ref(), mb.labels.as_ref());
    change.annotations = map_diff(ma.annotations.as_ref(), mb.annotations.as_ref());
    for c in &new.spec.as_ref()?.containers {
        let reads = |field: &str, keys: &BTreeMap<String, Option<String>>| {
            keys.keys().any(|k| {
                let path = format!("metadata.{field}['{k}']");
                c.env.iter().flatten().any(|e| {
                    e.value_from
                        .as_ref()
                        .and_then(|v| v.field_ref.as_ref())
                        .is_some_and(|f| f.field_path == path)
                })
            })
        };
        if reads("labels", &change.labels) || reads("annotations", &change.annotations) {
            change.env_restarts.push(c.name.clone());
        }
    }
    Some(change)
}

fn map_diff(
    a: Option<&BTreeMap<String, String>>,
    b: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, Option<String>> {
    let (a, b) = (
        a.cloned().unwrap_or_default(),
        b.cloned().unwrap_or_default(),
    );
    let mut out: BTreeMap<String, Option<String>> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    for k in a.keys().filter(|k| !b.contains_key(*k)) {
        out.insert(k.clone(), None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gss(v: Value) -> GameServerSet {
        let mut base = json!({
            "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": "mc"},
            "spec": {"replicas": 1, "gameServerTemplate": {"spec": {"containers": [
                {"name": "game", "image": "g:1"}, {"name": "sidecar", "image": "s:1"}]}}},
        });
        if let (Some(s), Value::Object(e)) = (base["spec"].as_object_mut(), v) {
            s.extend(e);
        }
        serde_json::from_value(base).expect("set")
    }

    #[test]
    fn a_network_change_is_a_change_of_the_template_kruise_sees() {
        let a = gss(json!({"network": {"networkType": "Kubernetes-HostPort",
            "networkConf": [{"name": "ContainerPorts", "value": "game:1/TCP"}]}}));
        let b = gss(json!({"network": {"networkType": "Kubernetes-HostPort",
            "networkConf": [{"name": "ContainerPorts", "value": "game:2/TCP"}]}}));
        let c = in_place_change(&asts_template(&a), &asts_template(&b)).expect("in place");
        assert!(c.images.is_empty());
        assert_eq!(
            c.annotations.get(ANNOTATION_NETWORK_CONF),
            Some(&Some(
                r#"[{"name":"ContainerPorts","value":"game:2/TCP"}]"#.to_string()
            ))
        );
    }

    #[test]
    fn allow_not_ready_containers_gives_the_set_okgs_in_place_hook() {
        let a = gss(json!({"network": {"networkType": "Kubernetes-NodePort",
            "networkConf": [{"name": "AllowNotReadyContainers", "value": "sidecar"}]}}));
        let hook = in_place_hook(&a).expect("hook");
        assert_eq!(
            hook.labels_handler
                .expect("labels")
                .get(LABEL_NOT_READY_BLOCKER)
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(in_place_hook(&gss(json!({}))), None);
    }

    #[test]
    fn containers_reading_a_changed_label_restart_too() {
        let env = json!([{"name": "SHARD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['shard']"}}}]);
        let mk = |shard: &str| {
            gss(
                json!({"gameServerTemplate": {"metadata": {"labels": {"shard": shard}}, "spec": {"containers": [
                {"name": "game", "image": "g:1", "env": env}, {"name": "sidecar", "image": "s:1"}]}}}),
            )
        };
        let c =
            in_place_change(&asts_template(&mk("a")), &asts_template(&mk("b"))).expect("in place");
        assert_eq!(c.env_restarts, vec!["game".to_string()]);
        assert_eq!(c.labels.get("shard"), Some(&Some("b".to_string())));
    }
}
