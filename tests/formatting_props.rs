//! Property: edits that change only the formatting of a manifest (key order, quoting, flow or block
//! style, comments) never show up as a change.

use hotsync::diff::{diff_sets, Impact};
use hotsync::manifest::{load_file, LoadOptions};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// How to write a document.
#[derive(Clone, Debug)]
struct Style {
    /// Rotates the keys of every map by this much.
    rotate: usize,
    /// Maps and lists at this depth or deeper are written in flow style.
    flow_from: usize,
    /// Quote every string.
    quote_all: bool,
    /// Add comments after keys.
    comments: bool,
}

fn plain_ok(s: &str) -> bool {
    let reserved = ["true", "false", "null", "yes", "no", "on", "off", "~", ""];
    !reserved.contains(&s.to_ascii_lowercase().as_str())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
}

fn scalar(v: &Value, st: &Style) -> String {
    match v {
        Value::String(s) if !st.quote_all && plain_ok(s) => s.clone(),
        Value::String(s) => serde_json::to_string(s).expect("string"),
        other => other.to_string(),
    }
}

fn keys(m: &Map<String, Value>, st: &Style) -> Vec<String> {
    let mut k: Vec<String> = m.keys().cloned().collect();
    if !k.is_empty() {
        let n = st.rotate % k.len();
        k.rotate_left(n);
    }
    k
}

fn flow(v: &Value, st: &Style) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = keys(m, st)
                .iter()
                .map(|k| format!("{}: {}", k, flow(&m[k], st)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(|e| flow(e, st)).collect::<Vec<_>>().join(", ")
        ),
        other => scalar(other, st),
    }
}

fn block(v: &Value, st: &Style, indent: usize, depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for k in keys(m, st) {
                let child = &m[&k];
                let comment = if st.comments { "  # note" } else { "" };
                let nested = matches!(child, Value::Object(_) | Value::Array(_));
                if nested && depth + 1 < st.flow_from {
                    out.push_str(&format!("{pad}{k}:{comment}\n"));
                    block(child, st, indent + 2, depth + 1, out);
                } else if nested {
                    out.push_str(&format!("{pad}{k}: {}{comment}\n", flow(child, st)));
                } else {
                    out.push_str(&format!("{pad}{k}: {}{comment}\n", scalar(child, st)));
                }
            }
        }
        Value::Array(a) => {
            for e in a {
                let mut inner = String::new();
                block(e, st, indent + 2, depth + 1, &mut inner);
                let inner = inner.trim_start().to_string();
                out.push_str(&format!("{pad}- {inner}"));
                if !inner.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other, st))),
    }
}

fn render(v: &Value, st: &Style) -> String {
    let mut out = String::from("# generated\n");
    block(v, st, 0, 0, &mut out);
    out
}

fn tag() -> impl Strategy<Value = String> {
    "v[0-9]\\.[0-9]{1,2}"
}

fn gss() -> impl Strategy<Value = Value> {
    (
        1..50i64,
        tag(),
        tag(),
        proptest::collection::btree_map("[A-Z]{1,6}", "[a-z0-9]{0,5}", 0..4),
        proptest::option::of(proptest::sample::select(vec!["InPlaceIfPossible", "ReCreate", "InPlaceOnly"])),
        proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{1,5}", 0..3),
    )
        .prop_map(|(replicas, t1, t2, env, policy, labels)| {
            let env: Vec<Value> = env.into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
            let mut spec = json!({
                "replicas": replicas,
                "gameServerTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [
                        {"name": "engine", "image": format!("registry.example.com/engine:{t1}"), "env": env},
                        {"name": "sidecar", "image": format!("registry.example.com/sidecar:{t2}")},
                    ]},
                },
            });
            if let Some(p) = policy {
                spec["updateStrategy"] = json!({"rollingUpdate": {"podUpdatePolicy": p, "maxUnavailable": "50%"}});
            }
            json!({
                "apiVersion": "game.kruise.io/v1alpha1",
                "kind": "GameServerSet",
                "metadata": {"name": "game", "namespace": "prod"},
                "spec": spec,
            })
        })
}

fn style() -> impl Strategy<Value = Style> {
    (0..7usize, 1..8usize, any::<bool>(), any::<bool>()).prop_map(
        |(rotate, flow_from, quote_all, comments)| Style {
            rotate,
            flow_from,
            quote_all,
            comments,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn formatting_only_edits_are_no_change(doc in gss(), a in style(), b in style()) {
        let (ya, yb) = (render(&doc, &a), render(&doc, &b));
        let ma = load_file("a.yaml", ya.as_bytes(), &LoadOptions::default());
        let mb = load_file("b.yaml", yb.as_bytes(), &LoadOptions::default());
        prop_assert!(ma.diagnostics.is_empty(), "{ya}\n{:?}", ma.diagnostics);
        prop_assert!(mb.diagnostics.is_empty(), "{yb}\n{:?}", mb.diagnostics);
        let d = diff_sets(Some(&ma.sets[0].gss), Some(&mb.sets[0].gss));
        prop_assert_eq!(d.impact, Impact::NoChange, "{}\n---\n{}\n{:?}", ya, yb, d.changes);
    }
}
