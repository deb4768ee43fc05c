//! Kruise's revisions of an Advanced StatefulSet, as its controller names, stores and reuses them.
//!
//! Follows openkruise/kruise `pkg/controller/statefulset/stateful_set_utils.go` (`getPatch`, `newRevision`,
//! `ApplyRevision`) and Kubernetes' `pkg/controller/history` (`HashControllerRevision`,
//! `ControllerRevisionName`), which Kruise calls.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// `getPatch`: the bytes a revision stores, `{"spec":{"template":{"$patch":"replace",...}}}`, encoded as Go's
/// `json.Marshal` encodes a `map[string]interface{}`: keys sorted at every level, no whitespace, `<`, `>`
/// and `&` escaped.
pub fn patch(template: &PodTemplateSpec) -> Vec<u8> {
    let mut tpl = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut tpl {
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    let doc = serde_json::json!({"spec": {"template": tpl}});
    let mut out = String::new();
    go_json(&doc, &mut out);
    out.into_bytes()
}

/// The template a revision's data holds (`ApplyRevision` of a revision onto the set, for the template).
pub fn template_of(data: &Value) -> Option<PodTemplateSpec> {
    let mut t = data.pointer("/spec/template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(k, out);
                out.push(':');
                go_json(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(e, out);
            }
            out.push(']');
        }
        Value::String(s) => go_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Go's encoder writes it (HTML-safe escaping of `<`, `>`, `&`).
fn go_string(s: &str, out: &mut String) {
    let encoded = Value::String(s.to_string()).to_string();
    out.push_str(
        &encoded
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026"),
    );
}

/// `history.HashControllerRevision`: FNV-1 (32 bit, not FNV-1a) over the data and the decimal collision
/// count, then `rand.SafeEncodeString` of the decimal sum.
pub fn hash(data: &[u8], collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data.iter().chain(collision_count.to_string().as_bytes()) {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    safe_encode(&h.to_string())
}

/// `rand.SafeEncodeString`: each character to `alphanums[c % 27]`, so no vowels and no look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// `ControllerRevisionName`: `<set>-<hash>`, the prefix cut to 223 bytes.
pub fn name(set: &str, hash: &str) -> String {
    let prefix = if set.len() > 223 {
        let mut end = 223;
        while !set.is_char_boundary(end) {
            end -= 1;
        }
        &set[..end]
    } else {
        set
    };
    format!("{prefix}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of a Go re-implementation of `HashControllerRevision` over Kruise's patch shape.
    #[test]
    fn the_hash_is_fnv1_of_the_data_and_the_collision_count_safe_encoded() {
        let data = br#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"demo"}},"spec":{"containers":[{"image":"nginx:1.25","name":"main","resources":{}}]}}}}"#;
        assert_eq!(hash(data, 0), "788944f45");
        assert_eq!(hash(data, 1), "788944f44");
    }

    #[test]
    fn the_patch_sorts_keys_and_marks_the_template_replaced() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "b", "image": "x<y"}]},
            "metadata": {"labels": {"z": "1", "a": "2"}},
        }))
        .expect("template");
        let p = String::from_utf8(patch(&t)).expect("utf8");
        assert_eq!(
            p,
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"labels":{"a":"2","z":"1"}},"spec":{"containers":[{"image":"x\u003cy","name":"b"}]}}}}"#
        );
        let back = template_of(&serde_json::from_str(&p).expect("json")).expect("template");
        assert_eq!(back, t);
    }
}
