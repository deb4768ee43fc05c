//! The CRDs the test bed installs when upstream's files are not at hand ([`Crds::Builtin`]) are held to
//! OKG's and Kruise's own CRDs (`../shared/okg/crds`): the same versions, scope, names, subresources and
//! printer columns, and the same schema shape (every property, its type, and the `x-kubernetes-*` markers
//! that change what the API server accepts and prunes).
//!
//! Descriptions, enums, `required` lists and string formats are not part of the shape: the
//! API server's validation of those is upstream's business, and the simulation writes only valid objects.

use hotsync_sim::cluster::{builtin_crds, upstream_crds};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn upstream_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/okg/crds"
    ))
}

/// Upstream's CRDs by name; a missing directory fails the test.
fn upstream() -> BTreeMap<String, Value> {
    let dir = upstream_dir();
    let crds = upstream_crds(&dir)
        .unwrap_or_else(|e| panic!("upstream CRDs must be readable at {}: {e}", dir.display()));
    assert_eq!(crds.len(), 3, "three CRDs in {}", dir.display());
    crds.into_iter()
        .map(|c| {
            (
                c["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c,
            )
        })
        .collect()
}

fn builtin() -> BTreeMap<String, Value> {
    builtin_crds()
        .into_iter()
        .map(|c| {
            let v = serde_json::to_value(&c).expect("a CRD serializes");
            (c.metadata.name.clone().unwrap_or_default(), v)
        })
        .collect()
}

/// Each schema node by path, as the markers that matter to the API server: its type, whether it is
/// int-or-string, keeps unknown fields or embeds a resource, and the default it applies.
fn shape(schema: &Value) -> BTreeMap<String, String> {
    fn walk(s: &Value, path: String, out: &mut BTreeMap<String, String>) {
        let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut d = s
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        for (k, short) in [
            ("x-kubernetes-int-or-string", "int-or-string"),
            ("x-kubernetes-preserve-unknown-fields", "preserve-unknown"),
            ("x-kubernetes-embedded-resource", "embedded"),
        ] {
            if flag(k) {
                d.push(' ');
                d.push_str(short);
            }
        }
        if let Some(default) = s.get("default") {
            d.push_str(&format!(" default={default}"));
        }
        out.insert(
            if path.is_empty() {
                ".".into()
            } else {
                path.clone()
            },
            d,
        );
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = s.get("items") {
            walk(items, format!("{path}[]"), out);
        }
        if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
            walk(ap, format!("{path}{{}}"), out);
        }
    }
    let mut out = BTreeMap::new();
    walk(schema, String::new(), &mut out);
    out
}

/// What differs between two shapes, one line per path.
fn shape_diff(upstream: &BTreeMap<String, String>, ours: &BTreeMap<String, String>) -> Vec<String> {
    let mut diff = Vec::new();
    for (p, d) in upstream {
        match ours.get(p) {
            None => diff.push(format!("missing {p} ({d})")),
            Some(o) if o != d => diff.push(format!("{p}: upstream {d}, builtin {o}")),
            _ => {}
        }
    }
    for (p, d) in ours {
        if !upstream.contains_key(p) {
            diff.push(format!("extra {p} ({d})"));
        }
    }
    diff
}

fn versions(crd: &Value) -> BTreeMap<String, Value> {
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v.clone(),
            )
        })
        .collect()
}

/// A printer column as kubectl uses it: name, type, path and priority.
fn columns(version: &Value) -> Vec<(String, String, String, i64)> {
    version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["type"].as_str().unwrap_or_default().to_string(),
                c["jsonPath"].as_str().unwrap_or_default().to_string(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn the_builtin_crds_are_upstreams_three() {
    let up: Vec<String> = upstream().into_keys().collect();
    let ours: Vec<String> = builtin().into_keys().collect();
    assert_eq!(ours, up);
}

#[test]
fn each_builtin_crd_has_upstreams_names_scope_and_versions() {
    let builtin = builtin();
    for (name, up) in upstream() {
        let ours = &builtin[&name];
        assert_eq!(ours["spec"]["group"], up["spec"]["group"], "{name}: group");
        assert_eq!(ours["spec"]["scope"], up["spec"]["scope"], "{name}: scope");
        for k in ["kind", "listKind", "plural", "singular", "shortNames"] {
            assert_eq!(
                ours["spec"]["names"][k], up["spec"]["names"][k],
                "{name}: names.{k}"
            );
        }
        let (uv, ov) = (versions(&up), versions(ours));
        assert_eq!(
            ov.keys().collect::<Vec<_>>(),
            uv.keys().collect::<Vec<_>>(),
            "{name}: versions"
        );
        for (v, u) in &uv {
            let o = &ov[v];
            for k in ["served", "storage", "subresources"] {
                assert_eq!(o[k], u[k], "{name} {v}: {k}");
            }
        }
    }
}

#[test]
fn each_builtin_crd_prints_upstreams_columns() {
    let builtin = builtin();
    for (name, up) in upstream() {
        let ov = versions(&builtin[&name]);
        for (v, u) in versions(&up) {
            assert_eq!(columns(&ov[&v]), columns(&u), "{name} {v}: printer columns");
        }
    }
}

#[test]
fn each_builtin_crd_has_upstreams_schema_shape() {
    let builtin = builtin();
    let mut failures = Vec::new();
    for (name, up) in upstream() {
        let ov = versions(&builtin[&name]);
        for (v, u) in versions(&up) {
            let Some(o) = ov.get(&v) else { continue };
            let diff = shape_diff(
                &shape(&u["schema"]["openAPIV3Schema"]),
                &shape(&o["schema"]["openAPIV3Schema"]),
            );
            if !diff.is_empty() {
                failures.push(format!("{name} {v}:\n  {}", diff.join("\n  ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "schema shapes differ:\n{}",
        failures.join("\n")
    );
}

/// kube-apiserver 1.20 takes the builtin CRDs, serves an Advanced StatefulSet written as v1alpha1 as
/// v1beta1 too, and kubectl prints upstream's columns for them (the seed's set applied from
/// examples-repo/ with the real kubectl).
#[tokio::test]
async fn the_api_server_takes_the_builtin_crds_and_kubectl_prints_their_columns() {
    use hotsync_sim::cluster::Crds;
    use hotsync_sim::{ClusterOptions, LocalCluster};
    let cluster = LocalCluster::start(ClusterOptions {
        crds: Some(Crds::Builtin),
        ..ClusterOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("this test needs the local API server and cannot have one: {e}"));
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("stdin is piped");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("kubectl reads its input");
        drop(input);
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples-repo/gameservers/minecraft.yaml"
    );
    kubectl(&["apply", "-f", seed], None);
    let gss = kubectl(&["get", "gss", "minecraft"], None);
    let header: Vec<&str> = gss
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "UPDATED",
            "READY",
            "MAINTAINING",
            "WAITTOBEDELETED",
            "PREDELETE",
            "AGE"
        ]
    );

    let asts_v1alpha1 = r#"
apiVersion: apps.kruise.io/v1alpha1
kind: StatefulSet
metadata: {name: old, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: old}}
  template:
    metadata: {labels: {app: old}}
    spec: {containers: [{name: engine, image: "games/arena:1"}, {name: sidecar, image: "arena-agent:1"}]}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {podUpdatePolicy: InPlaceIfPossible}}
"#;
    kubectl(&["apply", "-f", "-"], Some(asts_v1alpha1));
    let v1beta1 = kubectl(
        &[
            "get",
            "statefulsets.v1beta1.apps.kruise.io",
            "old",
            "-o",
            "jsonpath={.apiVersion} {.spec.updateStrategy.rollingUpdate.podUpdatePolicy}",
        ],
        None,
    );
    assert_eq!(v1beta1, "apps.kruise.io/v1beta1 InPlaceIfPossible");
    let wide = kubectl(&["get", "asts", "old", "-o", "wide"], None);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "UPDATED",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES"
        ]
    );
    // No controller runs here, so the status columns are empty: the containers and images are the last
    // two fields. kube-apiserver 1.20 prints the first value of a `[*]` path, as it would for upstream's.
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[row.len().saturating_sub(2)..],
        ["engine", "games/arena:1"]
    );
    cluster.stop().expect("the cluster stops");
}
