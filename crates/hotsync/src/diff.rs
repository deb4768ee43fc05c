//! Semantic diff of two GameServerSets and the classification of every change, by Kruise's own rules.
//!
//! Input: the set as it was (base revision, or the cluster) and as Git wants it. Output: a [`SetDiff`]
//! naming each changed field with its class, each container whose image changes, and the set's impact.
//! Pure: no I/O. Formatting (key order, quoting, flow or block style) never shows: both sides are compared
//! as typed values, after defaults are filled in and quantities put in canonical form.

use crate::model::{policy_is_in_place, GameServerSet};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// What a single field change does to running game servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Class {
    /// Changes the set's configuration only; no pod is touched.
    Config,
    /// Adds or removes game servers.
    Scale,
    /// Restarts containers in place; pods, their IPs and players stay.
    HotUpdate,
    /// Deletes and recreates pods: players on them are disconnected.
    Recreate,
}

/// The most disruptive thing that happens to a set. `Create` and `Delete` stand alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Impact {
    NoChange,
    Config,
    Scale,
    HotUpdate,
    Recreate,
    Create,
    Delete,
}

impl From<Class> for Impact {
    fn from(c: Class) -> Self {
        match c {
            Class::Config => Impact::Config,
            Class::Scale => Impact::Scale,
            Class::HotUpdate => Impact::HotUpdate,
            Class::Recreate => Impact::Recreate,
        }
    }
}

impl Impact {
    /// The name used in reports and on the command line (`--fail-on recreate`).
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::NoChange => "NoChange",
            Impact::Config => "Config",
            Impact::Scale => "Scale",
            Impact::HotUpdate => "HotUpdate",
            Impact::Recreate => "Recreate",
            Impact::Create => "Create",
            Impact::Delete => "Delete",
        }
    }
}

/// One changed field: its path, both values (absent where the field is absent) and its class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
    pub class: Class,
}

/// A container of the template whose image differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerChange {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// True when Kruise restarts this container in place.
    pub in_place: bool,
}

/// The diff of one set.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetDiff {
    pub namespace: String,
    pub name: String,
    pub impact: Impact,
    pub changes: Vec<FieldChange>,
    pub containers: Vec<ContainerChange>,
    pub warnings: Vec<String>,
    /// sha256 of the normalised pod template on each side.
    pub fingerprint: Fingerprints,
    /// Replicas on each side.
    pub replicas: Replicas,
    /// The head's pod update policy (`ReCreate` when absent).
    pub pod_update_policy: String,
    /// Containers that restart because their env reads a template label or annotation that changes
    /// (Kruise's `InPlaceUpdateEnvFromMetadata`); an engine among them is a player impact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_restarts: Vec<String>,
    /// What the change does to each pod of the live set: only in a plan against the cluster
    /// (`hotsync plan --cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodImpact>,
    /// The canary steps the hot update takes (`hotsync.dev/steps` on the head).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<PlannedSteps>,
}

/// The canary steps of a hot update, as the head declares them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedSteps {
    /// The steps as declared (`1`, `50%`), and `all` for the last step to every pod when the list
    /// stops short.
    pub declared: Vec<String>,
    /// The pods on the new template in total at the end of each step, of the head's replicas.
    pub pods: Vec<usize>,
    /// `hotsync.dev/step-pause`: a step promotes itself that long after it completed, if its gate
    /// holds; absent, each step waits for `hotsync promote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
}

/// What one canary step does to the live set's pods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepImpact {
    /// 1-based.
    pub step: usize,
    pub of: usize,
    /// Pods on the new template in total once the step is done.
    pub total: usize,
    /// The game servers this step restarts in place, in the order it takes them.
    pub restart: Vec<String>,
    /// Among them, the `Allocated` ones: players on them.
    pub allocated: Vec<String>,
}

/// What a change does to the pods of a live set, now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodImpact {
    /// Pods whose containers hotsync restarts in place, in the order it takes them.
    pub in_place: Vec<PodRestart>,
    /// Pods OKG deletes and creates again, in Kruise's order.
    pub recreated: Vec<String>,
    /// Among those, the game servers that are `Allocated`: players are on them.
    pub allocated: Vec<String>,
    /// Pods left alone, and why (partition, a deferring opsState).
    pub held: Vec<HeldPod>,
    /// With canary steps (`hotsync.dev/steps`): the pods restarted in place, step by step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepImpact>,
}

/// One pod restarted in place, and the containers that restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PodRestart {
    pub pod: String,
    pub containers: Vec<String>,
}

/// One pod left alone, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeldPod {
    pub pod: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fingerprints {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replicas {
    pub from: Option<i32>,
    pub to: Option<i32>,
}

/// Fills in the defaults that OKG and Kruise apply, so that an absent field and its default compare equal.
pub fn normalise(gss: &GameServerSet) -> Value {
    let mut g = gss.clone();
    g.status = None;
    let us = g.spec.update_strategy.get_or_insert_with(Default::default);
    us.type_.get_or_insert_with(|| "RollingUpdate".to_string());
    let ru = us.rolling_update.get_or_insert_with(Default::default);
    ru.pod_update_policy
        .get_or_insert_with(|| "ReCreate".to_string());
    ru.max_unavailable
        .get_or_insert(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1));
    ru.partition.get_or_insert(0);
    ru.paused.get_or_insert(false);
    let ss = g.spec.scale_strategy.get_or_insert_with(Default::default);
    ss.scale_down_strategy_type
        .get_or_insert_with(|| "General".to_string());
    let spec = serde_json::to_value(&g.spec).unwrap_or(Value::Null);
    let meta = serde_json::json!({
        "labels": g.metadata.labels.map(|l| l.into_iter()
            .filter(|(k, _)| !k.starts_with("hotsync.dev/"))
            .collect::<std::collections::BTreeMap<_, _>>()),
        "annotations": g.metadata.annotations.map(|a| a.into_iter()
            .filter(|(k, _)| !is_tool_annotation(k))
            .collect::<std::collections::BTreeMap<_, _>>()),
    });
    let mut v = serde_json::json!({"metadata": meta, "spec": spec});
    prune(&mut v, "");
    v
}

/// Annotations that tools write on the live object and that are no part of the desired state.
fn is_tool_annotation(key: &str) -> bool {
    key == "kubectl.kubernetes.io/last-applied-configuration" || key.starts_with("hotsync.dev/")
}

/// Removes nulls, empty maps and empty lists (absent and empty mean the same to the API), and puts
/// quantities in canonical form.
fn prune(v: &mut Value, path: &str) -> bool {
    let mut buf = String::from(path);
    prune_at(v, &mut buf)
}

/// [`prune`] with the path in one buffer, grown and cut back as the walk goes (no string per key).
fn prune_at(v: &mut Value, path: &mut String) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => {
            m.retain(|k, c| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let keep = prune_at(c, path);
                path.truncate(len);
                keep
            });
            !m.is_empty()
        }
        Value::Array(a) => {
            for c in a.iter_mut() {
                prune_at(c, path);
            }
            !a.is_empty()
        }
        Value::String(s) => {
            if is_quantity_path(path) {
                if let Some(c) = canonical_quantity(s) {
                    *s = c;
                }
            }
            true
        }
        _ => {
            if is_quantity_path(path) {
                if let Some(c) = canonical_quantity(&v.to_string()) {
                    *v = Value::String(c);
                }
            }
            true
        }
    }
}

fn is_quantity_path(path: &str) -> bool {
    path.contains(".resources.limits.")
        || path.contains(".resources.requests.")
        || path.ends_with(".sizeLimit")
        || path.contains(".overhead.")
}

/// The canonical form of a Kubernetes quantity (`500m` and `0.5` are equal), or `None` when `s` is not one.
pub fn canonical_quantity(s: &str) -> Option<String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    // Value = mantissa * 10^exp10 * 2^exp2
    let (exp10, exp2): (i32, i32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
        _ => return None,
    };
    let negative = num.starts_with('-');
    let num = num.trim_start_matches(['+', '-']);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Exact value in nano units (10^-9) as i128: enough for every quantity a pod template holds.
    let digits = format!("{int_part}{frac_part}");
    let mut value: i128 = digits.parse().ok()?;
    let mut scale = exp10 + 9 - frac_part.len() as i32;
    while scale < 0 {
        if value % 10 != 0 {
            // Below a nano unit: keep exact text comparison instead.
            return Some(s.to_string());
        }
        value /= 10;
        scale += 1;
    }
    value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    value = value.checked_mul(1i128.checked_shl(exp2 as u32)?)?;
    if negative {
        value = -value;
    }
    Some(format!("{value}n"))
}

/// sha256 of what OKG builds the Advanced StatefulSet's template from: the normalised pod template, and
/// `spec.network` when the set has one (it becomes template annotations). Equal templates have equal
/// fingerprints.
pub fn fingerprint(gss: &GameServerSet) -> String {
    fingerprint_of(&normalise(gss))
}

/// [`fingerprint`] of a set already [`normalise`]d.
fn fingerprint_of(v: &Value) -> String {
    let tpl = v
        .pointer("/spec/gameServerTemplate")
        .cloned()
        .unwrap_or(Value::Null);
    let tpl = match v.pointer("/spec/network") {
        Some(net) => serde_json::json!({"gameServerTemplate": tpl, "network": net}),
        None => tpl,
    };
    let canonical = canonical_json(&tpl);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// JSON with sorted keys, for hashing.
fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    canonical_json_into(v, &mut out);
    out
}

fn canonical_json_into(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical_json_into(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, c) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json_into(c, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lists whose elements are matched by `name`, as Kruise and the pod spec do.
fn named_list(path: &str) -> bool {
    path.ends_with(".containers")
        || path.ends_with(".initContainers")
        || path.ends_with(".ephemeralContainers")
        || path.ends_with(".volumes")
}

struct Walker {
    out: Vec<(String, Option<Value>, Option<Value>)>,
}

impl Walker {
    fn walk(&mut self, path: &str, a: Option<&Value>, b: Option<&Value>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.walk(&p, x.get(k), y.get(k));
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y)))
                if named_list(path) && all_named(x) && all_named(y) =>
            {
                let names = |l: &Vec<Value>| -> Vec<String> {
                    l.iter()
                        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
                        .collect()
                };
                let (nx, ny) = (names(x), names(y));
                let common_x: Vec<&String> = nx.iter().filter(|n| ny.contains(n)).collect();
                let common_y: Vec<&String> = ny.iter().filter(|n| nx.contains(n)).collect();
                if common_x != common_y {
                    self.out.push((
                        format!("{path}[*].order"),
                        Some(Value::from(nx.clone())),
                        Some(Value::from(ny.clone())),
                    ));
                }
                let mut all: Vec<&String> = nx.iter().collect();
                all.extend(ny.iter().filter(|n| !nx.contains(n)));
                for n in all {
                    let ex = x.iter().find(|e| e["name"].as_str() == Some(n.as_str()));
                    let ey = y.iter().find(|e| e["name"].as_str() == Some(n.as_str()));
                    let p = format!("{path}[{n}]");
                    match (ex, ey) {
                        (Some(_), Some(_)) => self.walk(&p, ex, ey),
                        _ => self.out.push((p, ex.cloned(), ey.cloned())),
                    }
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => {
                for i in 0..x.len().max(y.len()) {
                    self.walk(&format!("{path}[{i}]"), x.get(i), y.get(i));
                }
            }
            (Some(x), Some(y)) if x == y => {}
            (None, None) => {}
            // A map present on one side only: report its leaves, so that each is classified.
            (Some(Value::Object(x)), None) => {
                for (k, v) in x {
                    self.walk(&format!("{path}.{k}"), Some(v), None);
                }
            }
            (None, Some(Value::Object(y))) => {
                for (k, v) in y {
                    self.walk(&format!("{path}.{k}"), None, Some(v));
                }
            }
            _ => self.out.push((path.to_string(), a.cloned(), b.cloned())),
        }
    }
}

fn all_named(l: &[Value]) -> bool {
    l.iter()
        .all(|e| e.get("name").and_then(Value::as_str).is_some())
}

/// Classifies a changed path by Kruise's rules, given the head's update policy. What OKG copies into
/// the Advanced StatefulSet's template counts as template: `gameServerTemplate`, and `spec.network`
/// (OKG's `GetNewAstsFromGss` makes it the `network-conf` and `network-type` template annotations, so
/// it is a metadata change: in place under an in-place policy, a recreate under `ReCreate`).
pub fn classify(path: &str, in_place: bool) -> Class {
    const TPL: &str = "spec.gameServerTemplate.";
    if path == "spec.replicas" || path.starts_with("spec.reserveGameServerIds") {
        return Class::Scale;
    }
    if path == "spec.network" || path.starts_with("spec.network.") {
        return if in_place {
            Class::HotUpdate
        } else {
            Class::Recreate
        };
    }
    if let Some(rest) = path.strip_prefix(TPL) {
        let hot = rest.starts_with("metadata.labels")
            || rest.starts_with("metadata.annotations")
            || is_container_image(rest);
        return if hot && in_place {
            Class::HotUpdate
        } else {
            Class::Recreate
        };
    }
    Class::Config
}

/// `spec.containers[<name>].image`: an image of an existing container.
fn is_container_image(rest: &str) -> bool {
    rest.strip_prefix("spec.containers[")
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(_, tail)| tail == ".image")
}

/// Compares two sets. `base` absent means Create, `head` absent means Delete.
pub fn diff_sets(base: Option<&GameServerSet>, head: Option<&GameServerSet>) -> SetDiff {
    let any = head.or(base);
    let (namespace, name) = any
        .map(|g| {
            (
                g.metadata.namespace.clone().unwrap_or_default(),
                g.metadata.name.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    let policy = head
        .or(base)
        .map(|g| g.pod_update_policy().to_string())
        .unwrap_or_default();
    let in_place = policy_is_in_place(Some(&policy));
    let a = base.map(normalise);
    let b = head.map(normalise);
    let mut w = Walker { out: Vec::new() };
    w.walk("", a.as_ref(), b.as_ref());
    // `updateStrategy.type: OnDelete`: Kruise updates no pod; existing pods keep their template until
    // deleted, new pods get the new one.
    let on_delete = head.is_some_and(on_delete);
    let changes: Vec<FieldChange> = if base.is_some() && head.is_some() {
        w.out
            .into_iter()
            .map(|(path, from, to)| {
                let class = match classify(&path, in_place) {
                    Class::HotUpdate | Class::Recreate if on_delete => Class::Config,
                    c => c,
                };
                FieldChange {
                    path,
                    from,
                    to,
                    class,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let impact = match (base, head) {
        (None, Some(_)) => Impact::Create,
        (Some(_), None) => Impact::Delete,
        _ => changes
            .iter()
            .map(|c| Impact::from(c.class))
            .max()
            .unwrap_or(Impact::NoChange),
    };
    let containers = container_changes(base, head, impact);
    let replicas = Replicas {
        from: base.and_then(|g| g.spec.replicas),
        to: head.and_then(|g| g.spec.replicas),
    };
    let mut d = SetDiff {
        namespace,
        name,
        impact,
        changes,
        containers,
        warnings: Vec::new(),
        fingerprint: Fingerprints {
            from: a.as_ref().map(fingerprint_of),
            to: b.as_ref().map(fingerprint_of),
        },
        replicas,
        pod_update_policy: policy,
        env_restarts: Vec::new(),
        pods: None,
        steps: None,
    };
    if let Some(h) = head.filter(|_| in_place && impact == Impact::HotUpdate) {
        if let Ok(Some(st)) = crate::rollout::steps::Steps::of(h.metadata.annotations.as_ref()) {
            let replicas = usize::try_from(h.spec.replicas.unwrap_or(0).max(0)).unwrap_or(0);
            d.steps = Some(PlannedSteps {
                declared: st.declared(replicas),
                pods: (0..st.count(replicas))
                    .map(|k| st.pods_at(k, replicas))
                    .collect(),
                pause: h
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(crate::rollout::steps::ANNOTATION_STEP_PAUSE))
                    .cloned(),
            });
        }
    }
    if let (Some(b), Some(h)) = (base, head) {
        if in_place && matches!(d.impact, Impact::HotUpdate) {
            let change = crate::workload::in_place_change(
                &crate::workload::asts_template(b),
                &crate::workload::asts_template(h),
            );
            d.env_restarts = change.map(|c| c.env_restarts).unwrap_or_default();
        }
    }
    d.warnings = warnings(&d, base, head);
    d
}

/// The head's update strategy is `OnDelete`.
pub fn on_delete(gss: &GameServerSet) -> bool {
    gss.spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

fn container_changes(
    base: Option<&GameServerSet>,
    head: Option<&GameServerSet>,
    impact: Impact,
) -> Vec<ContainerChange> {
    let (Some(base), Some(head)) = (base, head) else {
        return Vec::new();
    };
    let old = base.container_images();
    let new = head.container_images();
    let mut out = Vec::new();
    for (name, image) in &new {
        let before = old.iter().find(|(n, _)| n == name).map(|(_, i)| i.clone());
        if before.as_deref() != Some(image.as_str()) {
            out.push(ContainerChange {
                name: name.clone(),
                from: before.clone(),
                to: Some(image.clone()),
                in_place: before.is_some() && impact == Impact::HotUpdate,
            });
        }
    }
    for (name, image) in &old {
        if !new.iter().any(|(n, _)| n == name) {
            out.push(ContainerChange {
                name: name.clone(),
                from: Some(image.clone()),
                to: None,
                in_place: false,
            });
        }
    }
    out
}

fn pods(n: Option<i32>) -> String {
    match n {
        Some(1) => "the 1 pod".to_string(),
        Some(n) => format!("all {n} pods"),
        None => "every pod".to_string(),
    }
}

fn warnings(
    d: &SetDiff,
    base: Option<&GameServerSet>,
    head: Option<&GameServerSet>,
) -> Vec<String> {
    let mut w = Vec::new();
    let n = d.replicas.to.or(d.replicas.from);
    if !d.env_restarts.is_empty() {
        w.push(format!(
            "containers {} read a changed label or annotation in their env: Kruise restarts them too (a restart of the game engine disconnects players)",
            d.env_restarts.join(", ")
        ));
    }
    let net_type = |g: Option<&GameServerSet>| {
        g.and_then(|g| g.spec.network.as_ref())
            .and_then(|n| n.network_type.clone())
            .unwrap_or_default()
    };
    let (old_type, new_type) = (net_type(base), net_type(head));
    if base.is_some() && head.is_some() && !old_type.is_empty() && old_type != new_type {
        w.push(format!(
            "spec.network.networkType {old_type} → {new_type}: OKG's webhook refuses it (\"change network type is not allowed\"); the set cannot be applied"
        ));
    }
    if head.is_some_and(on_delete)
        && d.changes.iter().any(|c| {
            c.path.starts_with("spec.gameServerTemplate") || c.path.starts_with("spec.network")
        })
    {
        w.push("updateStrategy.type is OnDelete: existing pods keep their images and template until they are deleted; new pods get the new ones".to_string());
    }
    match d.impact {
        Impact::Delete => w.push(format!(
            "the set is gone from Git: {} and its game servers are deleted when pruning is on",
            d.name
        )),
        Impact::Recreate => {
            let image_bump = d
                .containers
                .iter()
                .any(|c| c.from.is_some() && c.to.is_some());
            let in_place = policy_is_in_place(Some(&d.pod_update_policy));
            if image_bump && !in_place {
                w.push(format!(
                    "podUpdatePolicy is {}: this image bump recreates {} (players are disconnected); set InPlaceIfPossible to restart containers in place",
                    d.pod_update_policy,
                    pods(n)
                ));
            }
            let fields: Vec<&str> = d
                .changes
                .iter()
                .filter(|c| c.class == Class::Recreate && (in_place || !c.path.ends_with(".image")))
                .map(|c| c.path.as_str())
                .collect();
            if !fields.is_empty() {
                w.push(format!(
                    "{} cannot change in place: {} are recreated (players are disconnected)",
                    fields.join(", "),
                    pods(n)
                ));
            }
            if d.pod_update_policy == "InPlaceOnly" {
                w.push("podUpdatePolicy is InPlaceOnly: Kruise refuses to recreate pods, so this rollout stalls".to_string());
            }
            let steps = head
                .and_then(|h| h.metadata.annotations.as_ref())
                .is_some_and(|a| a.contains_key(crate::rollout::steps::ANNOTATION_STEPS));
            if steps {
                w.push(format!(
                    "{} applies to hot updates only: OKG recreates {} by its own rolling update, without pausing at the steps",
                    crate::rollout::steps::ANNOTATION_STEPS,
                    pods(n)
                ));
            }
        }
        _ => {}
    }
    if let (Some(from), Some(to)) = (d.replicas.from, d.replicas.to) {
        if to < from {
            w.push(format!(
                "replicas {from} → {to}: {} game servers are deleted",
                from - to
            ));
        }
    }
    if let Some(head) = head {
        let ru = head.rolling_update();
        let template_changes = matches!(d.impact, Impact::HotUpdate | Impact::Recreate);
        if template_changes && ru.paused == Some(true) {
            w.push("rollingUpdate.paused is true in Git: the template is applied but no pod is updated".to_string());
        }
        if template_changes {
            if let Some(p) = ru.partition.filter(|p| *p > 0) {
                w.push(format!("partition {p}: {p} pods stay on the old version"));
            }
        }
        for c in &d.containers {
            if let Some(img) = &c.to {
                if image_is_floating(img) {
                    w.push(format!(
                        "container {} uses {img}: a floating tag makes restarts pull whatever it points at",
                        c.name
                    ));
                }
            }
        }
    }
    w
}

/// `:latest` or no tag and no digest.
fn image_is_floating(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_cpu_and_decimal_cpu_are_the_same_quantity() {
        assert_eq!(canonical_quantity("500m"), canonical_quantity("0.5"));
        assert_eq!(canonical_quantity("1Gi"), canonical_quantity("1024Mi"));
        assert_ne!(canonical_quantity("1G"), canonical_quantity("1Gi"));
    }

    #[test]
    fn an_image_of_an_existing_container_is_in_place_only_under_an_in_place_policy() {
        let p = "spec.gameServerTemplate.spec.containers[sidecar].image";
        assert_eq!(classify(p, true), Class::HotUpdate);
        assert_eq!(classify(p, false), Class::Recreate);
        assert_eq!(
            classify(
                "spec.gameServerTemplate.spec.initContainers[init].image",
                true
            ),
            Class::Recreate
        );
        assert_eq!(
            classify(
                "spec.gameServerTemplate.spec.containers[sidecar].env[0].value",
                true
            ),
            Class::Recreate
        );
        assert_eq!(classify("spec.replicas", true), Class::Scale);
        assert_eq!(
            classify("spec.updateStrategy.rollingUpdate.partition", true),
            Class::Config
        );
    }

    fn set(v: serde_json::Value) -> GameServerSet {
        let mut base = serde_json::json!({
            "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": "mc", "namespace": "ns"},
            "spec": {"replicas": 2, "gameServerTemplate": {"spec": {"containers": [
                {"name": "game", "image": "g:1"}, {"name": "sidecar", "image": "s:1"}]}}},
        });
        if let (Some(spec), serde_json::Value::Object(e)) = (base["spec"].as_object_mut(), v) {
            for (k, v) in e {
                spec.insert(k, v);
            }
        }
        serde_json::from_value(base).expect("set")
    }

    fn in_place() -> serde_json::Value {
        serde_json::json!({"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}})
    }

    #[test]
    fn a_network_change_changes_the_template_okg_builds() {
        let net = |v: &str| {
            serde_json::json!({"networkType": "Kubernetes-HostPort",
            "networkConf": [{"name": "ContainerPorts", "value": v}]})
        };
        let a =
            set(serde_json::json!({"updateStrategy": in_place(), "network": net("game:1/TCP")}));
        let b =
            set(serde_json::json!({"updateStrategy": in_place(), "network": net("game:2/TCP")}));
        assert_eq!(diff_sets(Some(&a), Some(&b)).impact, Impact::HotUpdate);
        let a = set(serde_json::json!({"network": net("game:1/TCP")}));
        let b = set(serde_json::json!({"network": net("game:2/TCP")}));
        assert_eq!(
            diff_sets(Some(&a), Some(&b)).impact,
            Impact::Recreate,
            "under ReCreate the new annotations recreate the pods"
        );
    }

    #[test]
    fn a_change_of_the_network_type_is_said_to_be_refused_by_okg() {
        let a = set(serde_json::json!({"network": {"networkType": "Kubernetes-HostPort"}}));
        let b = set(serde_json::json!({"network": {"networkType": "Kubernetes-NodePort"}}));
        let d = diff_sets(Some(&a), Some(&b));
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("change network type is not allowed")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn under_on_delete_a_template_change_restarts_nothing_and_says_so() {
        let od = serde_json::json!({"type": "OnDelete"});
        let a = set(serde_json::json!({"updateStrategy": od}));
        let mut b = a.clone();
        if let Some(s) = b.spec.game_server_template.template.spec.as_mut() {
            s.containers[1].image = Some("s:2".into());
        }
        let d = diff_sets(Some(&a), Some(&b));
        assert_eq!(d.impact, Impact::Config);
        assert!(
            d.warnings.iter().any(|w| w.contains("OnDelete")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn containers_whose_env_reads_a_changed_label_are_named() {
        let env = serde_json::json!([{"name": "SHARD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['shard']"}}}]);
        let mk = |shard: &str| {
            set(
                serde_json::json!({"updateStrategy": in_place(), "gameServerTemplate": {
                "metadata": {"labels": {"shard": shard}},
                "spec": {"containers": [{"name": "game", "image": "g:1", "env": env}, {"name": "sidecar", "image": "s:1"}]}}}),
            )
        };
        let d = diff_sets(Some(&mk("a")), Some(&mk("b")));
        assert_eq!(d.impact, Impact::HotUpdate);
        assert_eq!(d.env_restarts, vec!["game".to_string()]);
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("game") && w.contains("disconnects players")));
    }
}
