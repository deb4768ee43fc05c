//! Edits of manifest files that leave every other byte as it was (comments, quoting, key order,
//! indentation): the one scalar that holds a container's image in a GameServerSet, or the `newTag` /
//! `digest` of a kustomization's `images:` entry. `hotsync set-image` is built on it.
//!
//! Data: a file's text in, the edited text out; pure. Each edit is checked by parsing the result: the
//! file must read as before but for the one value changed, or the edit is refused.

use serde_json::Value;

/// Why an edit was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("{what} is not found")]
    NotFound { what: String },
    #[error("{what} is defined more than once ({places})")]
    Ambiguous { what: String, places: String },
    #[error("{what} is written in a form hotsync does not edit in place ({why}); edit it by hand")]
    Unsupported { what: String, why: String },
    #[error("the edit of {what} would change more than that value; refused")]
    Unsafe { what: String },
}

/// One document of a file: its first line (0-based) and its lines.
struct Doc<'a> {
    first: usize,
    lines: Vec<&'a str>,
}

fn documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = vec![Doc {
        first: 0,
        lines: Vec::new(),
    }];
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") {
            docs.push(Doc {
                first: i + 1,
                lines: Vec::new(),
            });
            continue;
        }
        if let Some(d) = docs.last_mut() {
            d.lines.push(line);
        }
    }
    docs
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The key of a block-mapping line (`key:` or `key: value`), and where its value starts.
fn key_of(line: &str) -> Option<(&str, usize)> {
    let start = indent(line);
    let rest = &line[start..];
    let rest = rest.strip_prefix("- ").map_or(rest, |r| r);
    let offset = line.len() - rest.len();
    let colon = rest.find(':')?;
    let key = &rest[..colon];
    if key.is_empty() || key.contains([' ', '"', '\'', '{', '[', '#']) {
        return None;
    }
    let after = &rest[colon + 1..];
    if !(after.is_empty() || after.starts_with([' ', '\n', '\r'])) {
        return None;
    }
    Some((key, offset + colon + 1))
}

/// The span (start, end) of the scalar value on a `key: value` line, without a trailing comment.
fn value_span(line: &str, from: usize) -> Option<(usize, usize)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let rest = &body[from..];
    let lead = rest.len() - rest.trim_start().len();
    let start = from + lead;
    let v = &body[start..];
    if v.is_empty() {
        return None;
    }
    let end = match v.as_bytes()[0] {
        q @ (b'"' | b'\'') => {
            let close = v[1..].find(q as char)? + 2;
            start + close
        }
        b'{' | b'[' | b'|' | b'>' | b'&' | b'*' | b'!' => return None,
        _ => {
            let cut = v.find(" #").unwrap_or(v.len());
            start + v[..cut].trim_end().len()
        }
    };
    Some((start, end))
}

/// `value` written as the old scalar was: in the same quotes, or bare when it needs none.
fn quoted_like(old: &str, value: &str) -> String {
    match old.as_bytes().first() {
        Some(b'"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        _ if value.contains(": ")
            || value.contains(" #")
            || value.starts_with(['*', '&', '!', '@', '`', '%', '{', '[']) =>
        {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => value.to_string(),
    }
}

/// Replaces the image of `container` in the GameServerSet `namespace/name` of `text` (a set without
/// a namespace takes `default_namespace`).
///
/// # Errors
/// When the set or its container is not there or is there twice, or the image is written in a form
/// (flow style, an anchor, a block scalar) that cannot be changed in place.
pub fn set_container_image(
    text: &str,
    default_namespace: &str,
    namespace: &str,
    name: &str,
    container: &str,
    image: &str,
) -> Result<String, EditError> {
    let what = format!("GameServerSet {namespace}/{name}");
    let mut found = Vec::new();
    for (i, d) in documents(text).iter().enumerate() {
        let body: String = d.lines.concat();
        let Ok(v) = serde_saphyr::from_str::<Value>(&body) else {
            continue;
        };
        if v["kind"] != "GameServerSet" || v["metadata"]["name"] != name {
            continue;
        }
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or(default_namespace);
        if ns == namespace {
            found.push((i, v));
        }
    }
    let (doc_index, before) = match found.as_slice() {
        [] => return Err(EditError::NotFound { what }),
        [one] => one.clone(),
        many => {
            return Err(EditError::Ambiguous {
                what,
                places: many
                    .iter()
                    .map(|(i, _)| format!("document {}", i + 1))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let containers = before["spec"]["gameServerTemplate"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let what_c = format!("container {container} of {what}");
    match containers.iter().filter(|c| c["name"] == container).count() {
        0 => return Err(EditError::NotFound { what: what_c }),
        1 => {}
        _ => {
            return Err(EditError::Ambiguous {
                what: what_c,
                places: "spec.gameServerTemplate.spec.containers".into(),
            })
        }
    }
    let docs = documents(text);
    let d = &docs[doc_index];
    let line = image_line(&d.lines, container).ok_or_else(|| EditError::Unsupported {
        what: what_c.clone(),
        why: "its image is not a `image: value` line of a block-style container entry".into(),
    })?;
    let edited = replace_value(text, d.first + line.0, line.1, image, &what_c)?;
    // The result reads as before, but for that image.
    let after_docs = documents(&edited);
    let after: Value =
        serde_saphyr::from_str(&after_docs[doc_index].lines.concat()).map_err(|_| {
            EditError::Unsafe {
                what: what_c.clone(),
            }
        })?;
    let mut expected = before;
    if let Some(cs) = expected["spec"]["gameServerTemplate"]["spec"]["containers"].as_array_mut() {
        for c in cs.iter_mut().filter(|c| c["name"] == container) {
            c["image"] = Value::String(image.to_string());
        }
    }
    if after != expected {
        return Err(EditError::Unsafe { what: what_c });
    }
    Ok(edited)
}

/// The line (within the document) and value offset of `image:` in the entry of `container` under
/// `spec.gameServerTemplate.spec.containers`.
fn image_line(lines: &[&str], container: &str) -> Option<(usize, usize)> {
    // The path of block-mapping keys down to each line, by indentation.
    let mut path: Vec<(usize, String)> = Vec::new();
    let want = ["spec", "gameServerTemplate", "spec", "containers"];
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_blank_or_comment(line) {
            i += 1;
            continue;
        }
        let ind = indent(line);
        while path.last().is_some_and(|(d, _)| *d >= ind) {
            path.pop();
        }
        let Some((key, _)) = key_of(line) else {
            i += 1;
            continue;
        };
        if line.trim_start().starts_with("- ") {
            i += 1;
            continue;
        }
        path.push((ind, key.to_string()));
        let keys: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).collect();
        if keys == want {
            return entry_image(lines, i + 1, ind, container);
        }
        i += 1;
    }
    None
}

/// Within the sequence that starts after line `start` (its key at `key_indent`), the `image:` line of
/// the entry named `container`.
fn entry_image(
    lines: &[&str],
    start: usize,
    key_indent: usize,
    container: &str,
) -> Option<(usize, usize)> {
    let mut entries: Vec<Vec<usize>> = Vec::new();
    let mut dash_indent = None;
    for (i, line) in lines.iter().enumerate().skip(start) {
        if is_blank_or_comment(line) {
            continue;
        }
        let ind = indent(line);
        let t = line.trim_start();
        if ind < key_indent || (ind == key_indent && !t.starts_with("- ")) {
            break;
        }
        if t.starts_with("- ") || t == "-\n" || t == "-" {
            match dash_indent {
                None => dash_indent = Some(ind),
                Some(d) if d != ind => {
                    if let Some(e) = entries.last_mut() {
                        e.push(i);
                    }
                    continue;
                }
                _ => {}
            }
            entries.push(vec![i]);
        } else if let Some(e) = entries.last_mut() {
            e.push(i);
        }
    }
    let field_indent = dash_indent? + 2;
    for e in entries {
        let mut name = None;
        let mut image = None;
        for &i in &e {
            let line = lines[i];
            let Some((key, from)) = key_of(line) else {
                continue;
            };
            let on_dash = i == e[0];
            if !on_dash && indent(line) != field_indent {
                continue;
            }
            let value = value_span(line, from).map(|(a, b)| unquote(&line[a..b]));
            match key {
                "name" => name = value,
                "image" => image = Some((i, from)),
                _ => {}
            }
        }
        if name.as_deref() == Some(container) {
            return image;
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Replaces the scalar of line `n` (0-based, in the whole text) that starts after `from`.
fn replace_value(
    text: &str,
    n: usize,
    from: usize,
    value: &str,
    what: &str,
) -> Result<String, EditError> {
    let mut out = String::with_capacity(text.len() + value.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i != n {
            out.push_str(line);
            continue;
        }
        let (a, b) = value_span(line, from).ok_or_else(|| EditError::Unsupported {
            what: what.to_string(),
            why: "its value is a block scalar, a flow collection, an alias or empty".into(),
        })?;
        out.push_str(&line[..a]);
        out.push_str(&quoted_like(&line[a..b], value));
        out.push_str(&line[b..]);
    }
    Ok(out)
}

/// An image reference split as kustomize's `images:` transformer takes it: the name, and a tag or a
/// digest.
pub fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, None, Some(digest));
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(c) => (&image[..slash + c], Some(&image[slash + c + 1..]), None),
        None => (image, None, None),
    }
}

/// Points the kustomization's `images:` entry for `name` (matched by `newName` when it has one, else
/// by `name`) at `image`: its `newTag` or `digest` set (added where the entry lacks it, the other
/// removed), and `newName` where the repository changes. Without such an entry, one is added at the
/// end of `images:` (and `images:` at the end of the file when there is none).
///
/// # Errors
/// When the entry is there twice, or `images:` is in flow style.
pub fn set_kustomize_image(
    text: &str,
    rendered_name: &str,
    image: &str,
) -> Result<String, EditError> {
    let (new_name, tag, digest) = split_image(image);
    let what = format!("the images: entry for {rendered_name}");
    let doc: Value = serde_saphyr::from_str(text).map_err(|_| EditError::Unsupported {
        what: what.clone(),
        why: "the kustomization does not parse".into(),
    })?;
    let entries = doc["images"].as_array().cloned().unwrap_or_default();
    let matches: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e["newName"].as_str().or(e["name"].as_str()) == Some(rendered_name))
        .map(|(i, _)| i)
        .collect();
    if matches.len() > 1 {
        return Err(EditError::Ambiguous {
            what,
            places: "images:".into(),
        });
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let images_line = lines
        .iter()
        .position(|l| indent(l) == 0 && key_of(l).is_some_and(|(k, _)| k == "images"));
    let mut expected = doc.clone();
    let edited = match (matches.first(), images_line) {
        (Some(&idx), Some(start)) => {
            let entry_lines =
                entry_lines(&lines, start, idx).ok_or_else(|| EditError::Unsupported {
                    what: what.clone(),
                    why: "images: is not a block sequence".into(),
                })?;
            let field_indent = indent(lines[entry_lines[0]]) + 2;
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let set =
                |key: &str, value: Option<&str>, out: &mut Vec<String>| -> Result<(), EditError> {
                    let at = entry_lines
                        .iter()
                        .copied()
                        .find(|&i| key_of(lines[i]).is_some_and(|(k, _)| k == key));
                    match (at, value) {
                        (Some(i), Some(v)) => {
                            let (_, from) = key_of(lines[i]).unwrap_or_default();
                            let (a, b) = value_span(lines[i], from).ok_or_else(|| {
                                EditError::Unsupported {
                                    what: what.clone(),
                                    why: format!("its {key} is not a plain value"),
                                }
                            })?;
                            out[i] = format!(
                                "{}{}{}",
                                &lines[i][..a],
                                quoted_like(&lines[i][a..b], v),
                                &lines[i][b..]
                            );
                        }
                        (Some(i), None) => out[i] = String::new(),
                        (None, Some(v)) => {
                            let last = *entry_lines.last().unwrap_or(&entry_lines[0]);
                            let nl = if out[last].ends_with('\n') { "" } else { "\n" };
                            out[last] = format!(
                                "{}{nl}{}{key}: {}\n",
                                out[last],
                                " ".repeat(field_indent),
                                quoted_like("", v)
                            );
                        }
                        (None, None) => {}
                    }
                    Ok(())
                };
            set("newTag", tag, &mut out)?;
            set("digest", digest, &mut out)?;
            if new_name != rendered_name {
                set("newName", Some(new_name), &mut out)?;
            }
            let e = &mut expected["images"][idx];
            if let Some(m) = e.as_object_mut() {
                m.remove("newTag");
                m.remove("digest");
                if let Some(t) = tag {
                    m.insert("newTag".into(), Value::String(t.into()));
                }
                if let Some(d) = digest {
                    m.insert("digest".into(), Value::String(d.into()));
                }
                if new_name != rendered_name {
                    m.insert("newName".into(), Value::String(new_name.into()));
                }
            }
            out.concat()
        }
        (None, start) => {
            let mut entry = format!("  - name: {}\n", quoted_like("", rendered_name));
            if new_name != rendered_name {
                entry.push_str(&format!("    newName: {}\n", quoted_like("", new_name)));
            }
            if let Some(t) = tag {
                entry.push_str(&format!("    newTag: {}\n", quoted_like("", t)));
            }
            if let Some(d) = digest {
                entry.push_str(&format!("    digest: {}\n", quoted_like("", d)));
            }
            let mut m = serde_json::Map::new();
            m.insert("name".into(), Value::String(rendered_name.into()));
            if new_name != rendered_name {
                m.insert("newName".into(), Value::String(new_name.into()));
            }
            if let Some(t) = tag {
                m.insert("newTag".into(), Value::String(t.into()));
            }
            if let Some(d) = digest {
                m.insert("digest".into(), Value::String(d.into()));
            }
            let mut out: String;
            match start {
                Some(s) => {
                    if key_of(lines[s])
                        .and_then(|(_, from)| value_span(lines[s], from))
                        .is_some()
                    {
                        return Err(EditError::Unsupported {
                            what,
                            why: "images: is in flow style".into(),
                        });
                    }
                    // After the last line of the sequence.
                    let mut end = s + 1;
                    while end < lines.len()
                        && (is_blank_or_comment(lines[end])
                            || indent(lines[end]) > 0
                            || lines[end].starts_with("- "))
                    {
                        end += 1;
                    }
                    while end > s + 1 && lines[end - 1].trim().is_empty() {
                        end -= 1;
                    }
                    let dash = lines[s + 1..end]
                        .iter()
                        .find(|l| l.trim_start().starts_with("- "))
                        .map_or(2, |l| indent(l));
                    let entry = entry
                        .lines()
                        .map(|l| format!("{}{}\n", " ".repeat(dash), &l[2..]))
                        .collect::<String>();
                    out = lines[..end].concat();
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(&entry);
                    out.push_str(&lines[end..].concat());
                }
                None => {
                    out = text.to_string();
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str("images:\n");
                    out.push_str(&entry);
                }
            }
            match expected["images"].as_array_mut() {
                Some(a) => a.push(Value::Object(m)),
                None => {
                    if let Some(o) = expected.as_object_mut() {
                        o.insert("images".into(), Value::Array(vec![Value::Object(m)]));
                    }
                }
            }
            out
        }
        (Some(_), None) => return Err(EditError::Unsafe { what }),
    };
    let after: Value =
        serde_saphyr::from_str(&edited).map_err(|_| EditError::Unsafe { what: what.clone() })?;
    if after != expected {
        return Err(EditError::Unsafe { what });
    }
    Ok(edited)
}

/// The lines of entry `idx` of the block sequence under the top-level key on line `start`.
fn entry_lines(lines: &[&str], start: usize, idx: usize) -> Option<Vec<usize>> {
    let mut entries: Vec<Vec<usize>> = Vec::new();
    let mut dash = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if is_blank_or_comment(line) {
            continue;
        }
        let ind = indent(line);
        let t = line.trim_start();
        if ind == 0 && !t.starts_with("- ") {
            break;
        }
        if t.starts_with("- ") && dash.is_none_or(|d| d == ind) {
            dash = Some(ind);
            entries.push(vec![i]);
        } else {
            entries.last_mut()?.push(i);
        }
    }
    entries.into_iter().nth(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = "# the arena fleet
apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: arena   # keep this name
  namespace: games
spec:
  replicas: 3
  gameServerTemplate:
    spec:
      containers:
        - name: engine
          image: registry.example.com/engine:1.0
        - image: \"registry.example.com/sidecar:v1\"   # bumped by CI
          name: sidecar
";

    #[test]
    fn the_image_scalar_alone_changes_and_its_quotes_and_comment_stay() {
        let out = set_container_image(
            SET,
            "default",
            "games",
            "arena",
            "sidecar",
            "registry.example.com/sidecar:v2",
        )
        .expect("ok");
        assert_eq!(out, SET.replace("sidecar:v1\"", "sidecar:v2\""));
        let out = set_container_image(
            SET,
            "default",
            "games",
            "arena",
            "engine",
            "registry.example.com/engine:1.1",
        )
        .expect("ok");
        assert_eq!(out, SET.replace("engine:1.0", "engine:1.1"));
    }

    #[test]
    fn a_missing_set_or_container_is_refused_by_name() {
        let e = set_container_image(SET, "default", "games", "lobby", "sidecar", "x:1")
            .expect_err("refused");
        assert_eq!(e.to_string(), "GameServerSet games/lobby is not found");
        let e = set_container_image(SET, "default", "games", "arena", "agent", "x:1")
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "container agent of GameServerSet games/arena is not found"
        );
    }

    #[test]
    fn a_set_defined_twice_is_refused() {
        let two = format!("{SET}---\n{SET}");
        let e = set_container_image(&two, "default", "games", "arena", "sidecar", "x:1")
            .expect_err("refused");
        assert!(matches!(e, EditError::Ambiguous { .. }), "{e}");
    }

    #[test]
    fn a_flow_style_container_list_is_refused_rather_than_rewritten() {
        let flow = SET.replace(
            "      containers:\n        - name: engine\n          image: registry.example.com/engine:1.0\n        - image: \"registry.example.com/sidecar:v1\"   # bumped by CI\n          name: sidecar\n",
            "      containers: [{name: engine, image: e:1}, {name: sidecar, image: s:1}]\n",
        );
        let e = set_container_image(&flow, "default", "games", "arena", "sidecar", "s:2")
            .expect_err("refused");
        assert!(matches!(e, EditError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn an_images_entry_gets_its_tag_and_a_missing_entry_is_added() {
        let k = "resources:\n  - ../../base\nimages:\n  # the sidecar, bumped by CI\n  - name: registry.example.com/sidecar\n    newTag: v1\n";
        assert_eq!(
            set_kustomize_image(
                k,
                "registry.example.com/sidecar",
                "registry.example.com/sidecar:v2"
            )
            .expect("ok"),
            k.replace("newTag: v1", "newTag: v2")
        );
        let none = "resources:\n  - ../../base\n";
        assert_eq!(
            set_kustomize_image(none, "registry.example.com/sidecar", "registry.example.com/sidecar:v2").expect("ok"),
            "resources:\n  - ../../base\nimages:\n  - name: registry.example.com/sidecar\n    newTag: v2\n"
        );
        let untagged = "images:\n  - name: registry.example.com/sidecar\n    newName: mirror.example.com/sidecar\nnamespace: eu\n";
        assert_eq!(
            set_kustomize_image(untagged, "mirror.example.com/sidecar", "mirror.example.com/sidecar@sha256:abc").expect("ok"),
            "images:\n  - name: registry.example.com/sidecar\n    newName: mirror.example.com/sidecar\n    digest: sha256:abc\nnamespace: eu\n"
        );
    }

    #[test]
    fn images_are_split_as_kustomize_splits_them() {
        assert_eq!(
            split_image("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b", Some("v1"), None)
        );
        assert_eq!(
            split_image("localhost:5000/a/b"),
            ("localhost:5000/a/b", None, None)
        );
        assert_eq!(split_image("a@sha256:00"), ("a", None, Some("sha256:00")));
    }
}
