//! Kruise's in-place update library: what a template change can do in place, the records it leaves on a
//! pod, and when it counts an in-place update as complete.
//!
//! Follows openkruise/kruise `pkg/util/inplaceupdate/inplace_update_defaults.go`
//! (`defaultCalculateInPlaceUpdateSpec`, `defaultPatchUpdateSpecToPod`, `DefaultCheckInPlaceUpdateCompleted`,
//! `defaultCheckContainersInPlaceUpdateCompleted`) and `inplace_update.go` (`UpdateSpec`), with the state
//! annotation of `apis/apps/pub/inplace_update.go` (`InPlaceUpdateState`).
//!
//! Not simulated: kruise-daemon. Its `apps.kruise.io/runtime-containers-meta` short-cut of the completion
//! check never applies, and an update of env-from-metadata waits for that daemon's hash, which never comes:
//! as on a cluster where kruise-daemon does not run. Container launch priorities are not read: every
//! container changes in one batch.

use crate::names::{
    KRUISE_INPLACE_GRACE, KRUISE_INPLACE_GRACE_OLD, KRUISE_INPLACE_STATE, KRUISE_INPLACE_STATE_OLD,
};
use crate::pods;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `appspub.InPlaceUpdateState`, the JSON of `apps.kruise.io/inplace-update-state`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub update_timestamp: String,
    /// Not `omitempty` upstream: `null` when no image changed.
    #[serde(default)]
    pub last_container_statuses: Option<BTreeMap<String, LastStatus>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub update_env_from_metadata: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub update_resources: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub update_images: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next_container_images: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next_container_ref_metadata: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next_container_resources: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_check_before_next: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_batches_record: Vec<Batch>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastStatus {
    #[serde(default, rename = "imageID", skip_serializing_if = "String::is_empty")]
    pub image_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub timestamp: String,
    pub containers: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `UpdateSpec`: what an in-place update changes; the JSON of `apps.kruise.io/inplace-update-grace` while
/// a grace period is pending.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSpec {
    pub revision: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_images: BTreeMap<String, String>,
    /// Per container, the labels and annotations its env reads (`{"labels":{..},"annotations":{..}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_ref_metadata: BTreeMap<String, Value>,
    /// A strategic merge patch of the pod's metadata, as Go's `[]byte`: base64 in JSON.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub meta_data_patch: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub update_env_from_metadata: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grace_seconds: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl UpdateSpec {
    /// The metadata patch, decoded.
    pub fn metadata_patch(&self) -> Option<Value> {
        if self.meta_data_patch.is_empty() {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.meta_data_patch)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `defaultCalculateInPlaceUpdateSpec`: the in-place update from the revision `old_data` to `new_data`
/// (revision patches, see [`super::revision::patch`]), or `None` when the change cannot be made in place
/// (Kruise then recreates the pod). Only `replace`s of `/spec/containers/N/image` and changes under the
/// template's `/metadata/` are in place; anything else (env, command, ports, init containers, volumes, a
/// container added, removed or reordered) is not.
pub fn calculate_spec(
    old_data: &Value,
    new_data: &Value,
    new_revision: &str,
    grace_seconds: i32,
) -> Option<UpdateSpec> {
    let old_tpl = super::revision::template_of(old_data)?;
    let new_tpl = super::revision::template_of(new_data)?;
    let patch = json_patch::diff(old_data, new_data);
    let mut spec = UpdateSpec {
        revision: new_revision.to_string(),
        grace_seconds,
        ..Default::default()
    };
    let old_containers = old_tpl
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut metadata_ops: Vec<(String, String, Option<Value>)> = Vec::new();
    for op in &patch.0 {
        let (kind, path, value) = match op {
            json_patch::PatchOperation::Add(o) => {
                ("add", o.path.to_string(), Some(o.value.clone()))
            }
            json_patch::PatchOperation::Replace(o) => {
                ("replace", o.path.to_string(), Some(o.value.clone()))
            }
            json_patch::PatchOperation::Remove(o) => ("remove", o.path.to_string(), None),
            _ => return None,
        };
        let path = path.replacen("/spec/template", "", 1);
        if !path.starts_with("/spec/") {
            if path.starts_with("/metadata/") {
                metadata_ops.push((kind.to_string(), path, value));
                continue;
            }
            return None;
        }
        if kind != "replace" {
            return None;
        }
        let idx: usize = path
            .strip_prefix("/spec/containers/")?
            .strip_suffix("/image")?
            .parse()
            .ok()?;
        let name = old_containers.get(idx)?.name.clone();
        spec.container_images
            .insert(name, value?.as_str()?.to_string());
    }
    if !metadata_ops.is_empty() {
        let mut old_meta = old_tpl.metadata.clone().unwrap_or_default();
        let mut new_meta = new_tpl.metadata.clone().unwrap_or_default();
        // InPlaceUpdateEnvFromMetadata (beta, on by default): a changed label or annotation that a
        // container's env reads restarts that container; it is applied per container, not by the patch.
        for (kind, path, value) in &metadata_ops {
            if kind == "remove" {
                continue;
            }
            let (field, key) = match path.strip_prefix("/metadata/labels/") {
                Some(k) => ("labels", k),
                None => match path.strip_prefix("/metadata/annotations/") {
                    Some(k) => ("annotations", k),
                    None => continue,
                },
            };
            let key = key.replace("~1", "/").replace("~0", "~");
            let value = value.as_ref().and_then(Value::as_str).unwrap_or_default();
            let readers = containers_reading(&new_tpl, field, &key);
            if readers.is_empty() {
                continue;
            }
            for c in readers {
                let entry = spec
                    .container_ref_metadata
                    .entry(c)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = entry.as_object_mut() {
                    let f = m
                        .entry(field.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(f) = f.as_object_mut() {
                        f.insert(key.clone(), Value::String(value.to_string()));
                    }
                }
            }
            spec.update_env_from_metadata = true;
            for meta in [&mut old_meta, &mut new_meta] {
                let map = if field == "labels" {
                    &mut meta.labels
                } else {
                    &mut meta.annotations
                };
                if let Some(m) = map.as_mut() {
                    m.remove(&key);
                }
            }
        }
        let patch = metadata_merge_patch(&old_meta, &new_meta);
        if !patch.as_object().is_none_or(Map::is_empty) {
            spec.meta_data_patch =
                base64::engine::general_purpose::STANDARD.encode(patch.to_string().as_bytes());
        }
    }
    Some(spec)
}

/// Containers of a template whose env reads `metadata.<field>['key']` (`IsContainerReferenceToMeta`).
fn containers_reading(t: &PodTemplateSpec, field: &str, key: &str) -> Vec<String> {
    let wanted = format!("metadata.{field}['{key}']");
    t.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| {
            c.env.iter().flatten().any(|e| {
                e.value.as_deref().unwrap_or_default().is_empty()
                    && e.value_from
                        .as_ref()
                        .and_then(|v| v.field_ref.as_ref())
                        .is_some_and(|f| f.field_path == wanted)
            })
        })
        .map(|c| c.name.clone())
        .collect()
}

/// `CreateTwoWayMergePatch` of two template metadatas, labels and annotations: keys added or changed, and
/// `null` for those removed (relative to the old template, not to the pod).
fn metadata_merge_patch(
    old: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    new: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Value {
    let mut meta = Map::new();
    for (field, a, b) in [
        ("labels", &old.labels, &new.labels),
        ("annotations", &old.annotations, &new.annotations),
    ] {
        let a = a.clone().unwrap_or_default();
        let b = b.clone().unwrap_or_default();
        let mut m = Map::new();
        for (k, v) in &b {
            if a.get(k) != Some(v) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
        for k in a.keys() {
            if !b.contains_key(k) {
                m.insert(k.clone(), Value::Null);
            }
        }
        if !m.is_empty() {
            meta.insert(field.to_string(), Value::Object(m));
        }
    }
    if meta.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::json!({ "metadata": meta })
    }
}

/// The pod's in-place update state (new key, else the legacy one); `Err` when it does not parse.
pub fn state_of(pod: &Pod) -> Result<Option<State>, String> {
    let raw = pods::annotation(pod, KRUISE_INPLACE_STATE)
        .or_else(|| pods::annotation(pod, KRUISE_INPLACE_STATE_OLD));
    match raw {
        None | Some("") => Ok(None),
        Some(s) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("invalid in-place update state: {e}")),
    }
}

/// The pending grace period's update, when the pod has one.
pub fn grace_of(pod: &Pod) -> Option<&str> {
    pods::annotation(pod, KRUISE_INPLACE_GRACE)
        .or_else(|| pods::annotation(pod, KRUISE_INPLACE_GRACE_OLD))
        .filter(|s| !s.is_empty())
}

/// `DefaultCheckInPlaceUpdateCompleted`: `Ok` when the pod's in-place update (if any) is done.
pub fn check_pod_completed(pod: &Pod) -> Result<(), String> {
    if grace_of(pod).is_some() {
        return Err("still in grace period of in-place update".into());
    }
    let Some(state) = state_of(pod)? else {
        return Ok(());
    };
    if !state.next_container_images.is_empty()
        || !state.next_container_ref_metadata.is_empty()
        || !state.next_container_resources.is_empty()
    {
        return Err("existing containers to in-place update in next batches".into());
    }
    check_containers_completed(pod, &state)
}

/// `defaultCheckContainersInPlaceUpdateCompleted`: per container recorded in the state, done when its
/// imageID changed, or else when `status.image` equals the spec image exactly (`:latest` appended to a spec
/// image with no `:` at all). So a tag change to the digest already running never completes
/// (openkruise/kruise#2297), nor does `docker.io/library/nginx:alpine` reported for `nginx:alpine`
/// (openkruise/kruise#1493).
pub fn check_containers_completed(pod: &Pod, state: &State) -> Result<(), String> {
    if state.update_env_from_metadata {
        // The expected env hash comes from kruise-daemon's runtime-containers-meta, which is not simulated.
        return Err("waiting for all containers hash consistent".into());
    }
    let expected: BTreeMap<&str, String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let image = if image.split(':').count() <= 1 {
                format!("{image}:latest")
            } else {
                image
            };
            (c.name.as_str(), image)
        })
        .collect();
    let mut pending = state.last_container_statuses.clone().unwrap_or_default();
    for cs in pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
    {
        let Some(old) = pending.get(&cs.name) else {
            continue;
        };
        if old.image_id == cs.image_id
            && expected.get(cs.name.as_str()).map(String::as_str) != Some(cs.image.as_str())
        {
            return Err(format!("container {} imageID not changed", cs.name));
        }
        pending.remove(&cs.name);
    }
    if !pending.is_empty() {
        let names: Vec<&String> = pending.keys().collect();
        return Err(format!("not found statuses of containers {names:?}"));
    }
    Ok(())
}

/// `defaultPatchUpdateSpecToPod`: applies the update to the pod object (metadata patch, images, the
/// metadata env reads) and records it in `state`, which it then writes on the pod.
pub fn patch_spec_to_pod(pod: &mut Pod, spec: &UpdateSpec, state: &mut State) {
    state.next_container_images.clear();
    state.next_container_ref_metadata.clear();
    state.next_container_resources.clear();
    if let Some(Value::Object(patch)) = spec.metadata_patch() {
        if let Some(Value::Object(meta)) = patch.get("metadata") {
            for (field, changes) in meta {
                let Value::Object(changes) = changes else {
                    continue;
                };
                let target = if field == "labels" {
                    pod.metadata.labels.get_or_insert_with(Default::default)
                } else {
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                };
                for (k, v) in changes {
                    match v {
                        Value::String(s) => {
                            target.insert(k.clone(), s.clone());
                        }
                        _ => {
                            target.remove(k);
                        }
                    }
                }
            }
        }
    }
    let mut updated: Vec<String> = Vec::new();
    let statuses: BTreeMap<String, String> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| (c.name.clone(), c.image_id.clone()))
        .collect();
    if let Some(s) = pod.spec.as_mut() {
        for c in &mut s.containers {
            if let Some(image) = spec.container_images.get(&c.name) {
                c.image = Some(image.clone());
                updated.push(c.name.clone());
                if let Some(id) = statuses.get(&c.name) {
                    state
                        .last_container_statuses
                        .get_or_insert_with(BTreeMap::new)
                        .entry(c.name.clone())
                        .or_insert_with(|| LastStatus {
                            image_id: id.clone(),
                        });
                }
            }
        }
    }
    for (c, meta) in &spec.container_ref_metadata {
        for field in ["labels", "annotations"] {
            let target = if field == "labels" {
                pod.metadata.labels.get_or_insert_with(Default::default)
            } else {
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
            };
            for (k, v) in meta
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                target.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        if !updated.contains(c) {
            updated.push(c.clone());
        }
    }
    updated.sort();
    state.pre_check_before_next = None;
    state.container_batches_record.push(Batch {
        timestamp: pods::rfc3339_now(),
        containers: updated,
    });
    write_state(pod, state);
}

/// Writes the state annotation on the pod object.
pub fn write_state(pod: &mut Pod, state: &State) {
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(
        KRUISE_INPLACE_STATE.into(),
        serde_json::to_string(state).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
    use serde_json::json;

    fn data(images: &[(&str, &str)], env: Option<Value>, labels: Value) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .map(|(n, i)| {
                let mut c = json!({"name": n, "image": i});
                if let Some(e) = &env {
                    c["env"] = e.clone();
                }
                c
            })
            .collect();
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": labels},
            "spec": {"containers": containers},
        }))
        .expect("template");
        serde_json::from_slice(&super::super::revision::patch(&t)).expect("patch")
    }

    #[test]
    fn an_image_replace_is_in_place_and_an_env_change_or_a_new_container_is_not() {
        let a = data(
            &[("game", "g:1"), ("sidecar", "s:1")],
            None,
            json!({"a": "1"}),
        );
        let b = data(
            &[("game", "g:1"), ("sidecar", "s:2")],
            None,
            json!({"a": "1"}),
        );
        let spec = calculate_spec(&a, &b, "r2", 0).expect("in place");
        assert_eq!(
            spec.container_images,
            BTreeMap::from([("sidecar".into(), "s:2".into())])
        );
        let env = data(
            &[("game", "g:1"), ("sidecar", "s:1")],
            Some(json!([{"name": "X", "value": "1"}])),
            json!({"a": "1"}),
        );
        assert_eq!(calculate_spec(&a, &env, "r2", 0), None);
        let three = data(
            &[("game", "g:1"), ("sidecar", "s:1"), ("x", "x:1")],
            None,
            json!({"a": "1"}),
        );
        assert_eq!(calculate_spec(&a, &three, "r2", 0), None);
    }

    #[test]
    fn a_label_change_is_in_place_and_restarts_the_containers_whose_env_reads_it() {
        let env = json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a']"}}}]);
        let a = data(
            &[("game", "g:1")],
            Some(env.clone()),
            json!({"a": "1", "b": "x"}),
        );
        let b = data(&[("game", "g:1")], Some(env), json!({"a": "2"}));
        let spec = calculate_spec(&a, &b, "r2", 0).expect("in place");
        assert!(spec.update_env_from_metadata);
        assert_eq!(
            spec.container_ref_metadata.get("game"),
            Some(&json!({"labels": {"a": "2"}}))
        );
        assert_eq!(
            spec.metadata_patch(),
            Some(json!({"metadata": {"labels": {"b": null}}}))
        );
    }

    fn pod(spec_image: &str, status_image: &str, image_id: &str, state: &State) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": spec_image}]},
        }))
        .expect("pod");
        p.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "c".into(),
                image: status_image.into(),
                image_id: image_id.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        write_state(&mut p, state);
        p
    }

    fn recorded(image_id: &str) -> State {
        State {
            revision: "r".into(),
            last_container_statuses: Some(BTreeMap::from([(
                "c".into(),
                LastStatus {
                    image_id: image_id.into(),
                },
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn completion_needs_a_new_image_id_or_the_exact_spec_image() {
        let st = recorded("sha-old");
        assert_eq!(
            check_pod_completed(&pod("s:2", "s:1", "sha-new", &st)),
            Ok(())
        );
        assert_eq!(
            check_pod_completed(&pod("s:2", "s:2", "sha-old", &st)),
            Ok(())
        );
        // kruise#2297: a re-tag of the running digest, reported under the old tag.
        assert!(check_pod_completed(&pod("s:2", "s:1", "sha-old", &st)).is_err());
        // kruise#1493: the short name against what containerd reports.
        assert!(check_pod_completed(&pod(
            "nginx:alpine",
            "docker.io/library/nginx:alpine",
            "sha-old",
            &st
        ))
        .is_err());
        // `:latest` is appended to a spec image without a tag.
        assert_eq!(
            check_pod_completed(&pod("nginx", "nginx:latest", "sha-old", &st)),
            Ok(())
        );
    }
}
