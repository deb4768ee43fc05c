//! Parse YAML files into desired GameServerSets, with every problem located by file, document and line.
//!
//! Input: file paths and bytes (read from a Git tree or a directory). Output: [`Manifests`], the sets that
//! loaded and a [`Diagnostic`] for each problem. Documents of other kinds are skipped with a note. One bad
//! document never hides the others: each document is parsed on its own. YAML document markers (`---`,
//! `...`) at the start of a line always end a document (YAML 1.2, "c-forbidden"), so a file is split on
//! them before parsing, which keeps a syntax error in one document from ending the stream.

use crate::model::GameServerSet;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// How bad a diagnostic is. Errors make a load incomplete: `plan` and `sync` refuse to act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

/// A problem (or a note) about one file, document and line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based index of the YAML document in the file; absent for problems of the whole file.
    pub document: Option<usize>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(doc) = self.document {
            write!(f, " (document {doc})")?;
        }
        let sev = match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, ": {sev}: {}", self.message)
    }
}

/// Where a desired set came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub line: usize,
}

/// A GameServerSet as Git wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredSet {
    pub gss: GameServerSet,
    pub origin: Origin,
}

impl DesiredSet {
    /// `namespace/name`.
    pub fn key(&self) -> SetKey {
        SetKey::of(&self.gss)
    }

    /// sha256 of the object as Git declares it: two commits that declare the set alike (wherever its
    /// file, whatever its formatting) give the same fingerprint.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let bytes = serde_json::to_vec(&self.gss).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(bytes))
    }
}

/// The identity of a set: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SetKey {
    pub namespace: String,
    pub name: String,
}

impl SetKey {
    pub fn of(gss: &GameServerSet) -> Self {
        SetKey {
            namespace: gss.metadata.namespace.clone().unwrap_or_default(),
            name: gss.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for SetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The outcome of loading: the sets that loaded and every diagnostic.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub sets: Vec<DesiredSet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Manifests {
    /// True when any diagnostic is an error: the load is incomplete.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Adds another file's outcome.
    pub fn extend(&mut self, other: Manifests) {
        self.sets.extend(other.sets);
        self.diagnostics.extend(other.diagnostics);
    }

    /// Reports sets defined more than once (an error at each later definition) and sorts everything.
    pub fn finish(&mut self) {
        let mut seen: BTreeMap<SetKey, Origin> = BTreeMap::new();
        let mut keep = Vec::with_capacity(self.sets.len());
        self.sets.sort_by(|a, b| {
            (&a.origin.file, a.origin.document).cmp(&(&b.origin.file, b.origin.document))
        });
        for set in std::mem::take(&mut self.sets) {
            let key = set.key();
            if let Some(first) = seen.get(&key) {
                self.diagnostics.push(Diagnostic {
                    file: set.origin.file.clone(),
                    document: Some(set.origin.document),
                    line: Some(set.origin.line),
                    severity: Severity::Error,
                    message: format!(
                        "GameServerSet {key} is defined twice: first at {}:{} (document {})",
                        first.file, first.line, first.document
                    ),
                });
                continue;
            }
            seen.insert(key, set.origin.clone());
            keep.push(set);
        }
        self.sets = keep;
        self.diagnostics.sort();
    }
}

/// Limits and defaults for loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The namespace of a set that names none (`-n/--namespace`).
    pub default_namespace: String,
    /// Files larger than this are refused whole.
    pub max_file_bytes: usize,
    /// When not empty, the only namespaces a manifest may name (`--allow-namespace`): a set elsewhere
    /// is an error, so that `plan` reports it and `sync` applies nothing.
    pub allowed_namespaces: Vec<String>,
    /// How Kustomize overlays are rendered.
    pub kustomize: crate::render::kustomize::KustomizeOptions,
    /// How Helm charts are rendered.
    pub helm: crate::render::helm::HelmOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_string(),
            max_file_bytes: 1024 * 1024,
            allowed_namespaces: Vec::new(),
            kustomize: Default::default(),
            helm: Default::default(),
        }
    }
}

/// Is this path a manifest file hotsync reads?
pub fn is_manifest_path(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// One YAML document of a file: its text and where it starts.
struct Chunk<'a> {
    text: String,
    /// 1-based line of the chunk's first line in the file.
    first_line: usize,
    _src: std::marker::PhantomData<&'a ()>,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Splits a stream on document markers. Content after `---` on the same line stays in the document.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut started = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        if is_marker(line, "---") || is_marker(line, "...") {
            if started || !current.trim().is_empty() {
                chunks.push(Chunk {
                    text: std::mem::take(&mut current),
                    first_line,
                    _src: Default::default(),
                });
            }
            current.clear();
            started = is_marker(line, "---");
            first_line = lineno;
            if started {
                // Keep the rest of the marker line (`--- {a: 1}`) with blanks for the marker, so
                // columns stay right; a document then starts on the marker's line.
                current.push_str(&" ".repeat(3));
                current.push_str(&line[3..]);
            } else {
                current.push('\n');
            }
            continue;
        }
        if current.is_empty() {
            first_line = lineno;
        }
        current.push_str(line);
    }
    if started || !current.trim().is_empty() {
        chunks.push(Chunk {
            text: current,
            first_line,
            _src: Default::default(),
        });
    }
    chunks
}

/// Is this text only blanks and comments (an empty document)?
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

fn saphyr_options() -> serde_saphyr::Options {
    // A manifest uses a handful of aliases at most; the "billion laughs" replays millions of events.
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = 50_000;
    aliases.max_replay_stack_depth = 16;
    serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        alias_limits: aliases,
        budget: serde_saphyr::budget! {
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 200,
            max_nodes: 1_000_000,
            max_total_scalar_bytes: 8 * 1024 * 1024,
            max_documents: 1,
        },
    }
}

/// A saphyr error as a message and a line in the file.
fn locate(err: &serde_saphyr::Error, chunk_first_line: usize) -> (String, Option<usize>) {
    let line = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| chunk_first_line + l.line() as usize - 1);
    let mut message = err.to_string();
    // saphyr appends its own " at line X, column Y"; ours is in the diagnostic already.
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    (message, line)
}

/// Finds the 1-based line of a top-level key path such as `metadata.name` by indentation, best effort.
fn line_of_key(text: &str, first_line: usize, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    text.lines()
        .position(|l| l.trim_start().starts_with(&needle))
        .map(|i| first_line + i)
}

/// Loads one file. `path` is for messages; `bytes` its content.
pub fn load_file(path: &str, bytes: &[u8], opts: &LoadOptions) -> Manifests {
    let mut out = Manifests::default();
    let err = |document: Option<usize>, line: Option<usize>, message: String| Diagnostic {
        file: path.to_string(),
        document,
        line,
        severity: Severity::Error,
        message,
    };
    if bytes.len() > opts.max_file_bytes {
        out.diagnostics.push(err(
            None,
            None,
            format!(
                "file is {} bytes, over the limit of {} bytes; not read",
                bytes.len(),
                opts.max_file_bytes
            ),
        ));
        return out;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            out.diagnostics.push(err(
                None,
                Some(line),
                format!(
                    "file is not UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ));
            return out;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut doc_index = 0;
    for chunk in split_documents(text) {
        doc_index += 1;
        if is_blank_document(&chunk.text) {
            continue;
        }
        load_document(path, doc_index, &chunk, opts, &mut out);
    }
    out
}

fn load_document(
    path: &str,
    doc: usize,
    chunk: &Chunk<'_>,
    opts: &LoadOptions,
    out: &mut Manifests,
) {
    let diag = |severity: Severity, line: Option<usize>, message: String| Diagnostic {
        file: path.to_string(),
        document: Some(doc),
        line,
        severity,
        message,
    };
    let raw: Value = match serde_saphyr::from_str_with_options(&chunk.text, saphyr_options()) {
        Ok(v) => v,
        Err(e) => {
            let (message, line) = locate(&e, chunk.first_line);
            out.diagnostics.push(diag(
                Severity::Error,
                line.or(Some(chunk.first_line)),
                format!("invalid YAML: {message}"),
            ));
            return;
        }
    };
    let obj = match raw.as_object() {
        Some(o) => o,
        None if raw.is_null() => return,
        None => {
            out.diagnostics.push(diag(
                Severity::Error,
                Some(chunk.first_line),
                "document is not a mapping (expected a Kubernetes object)".to_string(),
            ));
            return;
        }
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    let is_okg = api_version.is_some_and(|a| a.starts_with("game.kruise.io/"));
    match (api_version, kind) {
        (Some("game.kruise.io/v1alpha1"), Some("GameServerSet")) => {}
        (Some(a), Some("GameServerSet")) => {
            out.diagnostics.push(diag(
                Severity::Error,
                line_of_key(&chunk.text, chunk.first_line, "apiVersion"),
                format!("GameServerSet has apiVersion {a}; hotsync reads game.kruise.io/v1alpha1"),
            ));
            return;
        }
        (None, Some("GameServerSet")) => {
            out.diagnostics.push(diag(
                Severity::Error,
                line_of_key(&chunk.text, chunk.first_line, "kind"),
                "GameServerSet has no apiVersion (expected game.kruise.io/v1alpha1)".to_string(),
            ));
            return;
        }
        (_, None) if is_okg || obj.contains_key("spec") || api_version.is_none() => {
            out.diagnostics.push(diag(
                Severity::Error,
                Some(chunk.first_line),
                match api_version {
                    Some(a) => format!("object of apiVersion {a} has no kind"),
                    None => "document has neither apiVersion nor kind".to_string(),
                },
            ));
            return;
        }
        (a, k) => {
            out.diagnostics.push(diag(
                Severity::Note,
                Some(chunk.first_line),
                format!(
                    "skipped {} ({}): not a GameServerSet",
                    k.unwrap_or("object without kind"),
                    a.unwrap_or("no apiVersion")
                ),
            ));
            return;
        }
    }
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        out.diagnostics.push(diag(
            Severity::Error,
            line_of_key(&chunk.text, chunk.first_line, "metadata").or(Some(chunk.first_line)),
            "GameServerSet has no metadata.name".to_string(),
        ));
        return;
    }
    let name = name.unwrap_or_default().to_string();
    // Typed decoding from the parsed value is cheap; only when it fails is the text parsed again, by
    // saphyr, for the error's line.
    let typed = GameServerSet::deserialize(&raw).or_else(|_| {
        serde_saphyr::from_str_with_options::<GameServerSet>(&chunk.text, saphyr_options())
    });
    let mut gss: GameServerSet = match typed {
        Ok(g) => g,
        Err(e) => {
            let (message, line) = locate(&e, chunk.first_line);
            out.diagnostics.push(diag(
                Severity::Error,
                line.or(Some(chunk.first_line)),
                format!("GameServerSet {name}: {message}"),
            ));
            return;
        }
    };
    let spec_problems = check_spec(&raw, &gss);
    let mut failed = false;
    for (severity, key, message) in spec_problems {
        failed |= severity == Severity::Error;
        out.diagnostics.push(diag(
            severity,
            key.and_then(|k| line_of_key(&chunk.text, chunk.first_line, k))
                .or(Some(chunk.first_line)),
            format!("GameServerSet {name}: {message}"),
        ));
    }
    if failed {
        return;
    }
    if gss.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        gss.metadata.namespace = Some(opts.default_namespace.clone());
    }
    let ns = gss.metadata.namespace.clone().unwrap_or_default();
    if !opts.allowed_namespaces.is_empty() && !opts.allowed_namespaces.contains(&ns) {
        out.diagnostics.push(diag(
            Severity::Error,
            line_of_key(&chunk.text, chunk.first_line, "namespace").or(Some(chunk.first_line)),
            format!(
                "GameServerSet {name} is in namespace {ns}, which is not allowed here (allowed: {})",
                opts.allowed_namespaces.join(", ")
            ),
        ));
        return;
    }
    // Status in Git means nothing to hotsync; it is never applied.
    gss.status = None;
    out.sets.push(DesiredSet {
        gss,
        origin: Origin {
            file: path.to_string(),
            document: doc,
            line: chunk.first_line,
        },
    });
}

type Problem = (Severity, Option<&'static str>, String);

/// Checks what the CRD's schema cannot: required fields, and fields we model that the document got wrong.
fn check_spec(raw: &Value, gss: &GameServerSet) -> Vec<Problem> {
    let mut problems = Vec::new();
    let spec = raw.get("spec");
    if spec.is_none() {
        problems.push((Severity::Error, None, "has no spec".to_string()));
        return problems;
    }
    if gss.spec.replicas.is_none() {
        problems.push((
            Severity::Error,
            Some("spec"),
            "spec.replicas is required".to_string(),
        ));
    }
    let template = spec.and_then(|s| s.get("gameServerTemplate"));
    let containers = gss
        .spec
        .game_server_template
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    if template.is_none() || containers.is_empty() {
        problems.push((
            Severity::Error,
            Some("gameServerTemplate"),
            "spec.gameServerTemplate.spec.containers is empty: a game server needs at least one container"
                .to_string(),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for c in containers {
        if c.name.is_empty() {
            problems.push((
                Severity::Error,
                Some("containers"),
                "a container has no name".to_string(),
            ));
        } else if !names.insert(c.name.as_str()) {
            problems.push((
                Severity::Error,
                Some("containers"),
                format!("container {} is listed twice", c.name),
            ));
        }
        if c.image.as_deref().is_none_or(str::is_empty) {
            problems.push((
                Severity::Error,
                Some("containers"),
                format!("container {} has no image", c.name),
            ));
        }
    }
    if let Some(policy) = gss
        .spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.pod_update_policy.as_deref())
    {
        if !matches!(policy, "ReCreate" | "InPlaceIfPossible" | "InPlaceOnly") {
            problems.push((
                Severity::Error,
                Some("podUpdatePolicy"),
                format!("podUpdatePolicy {policy:?} is not one of ReCreate, InPlaceIfPossible, InPlaceOnly"),
            ));
        }
    }
    match crate::rollout::steps::Steps::of(gss.metadata.annotations.as_ref()) {
        Err((key, message)) => problems.push((Severity::Error, Some(key), message)),
        Ok(Some(steps)) => {
            // Counts and percentages mixed must still grow at the set's replicas.
            let replicas = usize::try_from(gss.spec.replicas.unwrap_or(0).max(0)).unwrap_or(0);
            if let Err(message) = steps.grows_at(replicas) {
                problems.push((
                    Severity::Error,
                    Some(crate::rollout::steps::ANNOTATION_STEPS),
                    format!("{}: {message}", crate::rollout::steps::ANNOTATION_STEPS),
                ));
            }
        }
        Ok(None) => {}
    }
    let freeze = crate::rollout::freeze::ANNOTATION_FREEZE;
    if let Some(w) = gss
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(freeze))
    {
        if let Err(e) = crate::rollout::freeze::parse_list(w) {
            problems.push((Severity::Error, Some(freeze), format!("{freeze}: {e}")));
        }
    }
    for (path, _) in unknown_fields(gss) {
        problems.push((
            Severity::Warning,
            None,
            format!(
                "unknown field {path}: not part of OKG's GameServerSet; the API server drops it"
            ),
        ));
    }
    if let Some(raw_tpl) = template {
        let typed = serde_json::to_value(&gss.spec.game_server_template).unwrap_or(Value::Null);
        let mut dropped = Vec::new();
        dropped_paths("spec.gameServerTemplate", raw_tpl, &typed, &mut dropped);
        for path in dropped {
            problems.push((
                Severity::Warning,
                None,
                format!("unknown field {path} in the pod template: OKG's controller ignores it"),
            ));
        }
    }
    problems
}

/// Fields collected in `extra` maps of structures we model (outside the schemaless template).
fn unknown_fields(gss: &GameServerSet) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut push = |prefix: &str, extra: &crate::model::Extra| {
        for (k, v) in extra {
            out.push((format!("{prefix}.{k}"), v.clone()));
        }
    };
    let spec = &gss.spec;
    push("spec", &spec.extra);
    if let Some(u) = &spec.update_strategy {
        push("spec.updateStrategy", &u.extra);
        if let Some(r) = &u.rolling_update {
            push("spec.updateStrategy.rollingUpdate", &r.extra);
        }
    }
    if let Some(s) = &spec.scale_strategy {
        push("spec.scaleStrategy", &s.extra);
    }
    if let Some(n) = &spec.network {
        push("spec.network", &n.extra);
    }
    if let Some(l) = &spec.lifecycle {
        push("spec.lifecycle", &l.extra);
    }
    out
}

/// Paths present (and not null) in `raw` but absent from `typed`: what typed decoding dropped. A path
/// is spelled out only for what was dropped.
fn dropped_paths(path: &str, raw: &Value, typed: &Value, out: &mut Vec<String>) {
    let mut at: Vec<String> = vec![path.to_string()];
    dropped_under(&mut at, raw, typed, out);
}

fn dropped_under(at: &mut Vec<String>, raw: &Value, typed: &Value, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                if v.is_null() {
                    continue;
                }
                match t.get(k) {
                    Some(tv) if tv == v => {}
                    Some(tv) => {
                        at.push(format!(".{k}"));
                        dropped_under(at, v, tv, out);
                        at.pop();
                    }
                    None => out.push(format!("{}.{k}", at.concat())),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, (rv, tv)) in r.iter().zip(t).enumerate() {
                if rv == tv {
                    continue;
                }
                let label = rv
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                at.push(format!("[{label}]"));
                dropped_under(at, rv, tv, out);
                at.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_marker_splits_documents_and_keeps_lines() {
        let chunks = split_documents("a: 1\n---\nb: 2\n---\nc: 3\n");
        let lines: Vec<_> = chunks.iter().map(|c| c.first_line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
    }

    #[test]
    fn a_bare_marker_line_ends_a_document() {
        let m = load_file(
            "f.yaml",
            b"kind: A\napiVersion: v1\n---\nkind: B\napiVersion: v1\n",
            &LoadOptions::default(),
        );
        assert_eq!(m.diagnostics.len(), 2, "{:?}", m.diagnostics);
        assert_eq!(m.diagnostics[1].document, Some(2));
        assert_eq!(m.diagnostics[1].line, Some(3));
    }

    #[test]
    fn a_leading_marker_does_not_make_an_empty_document() {
        let chunks = split_documents("---\na: 1\n");
        assert_eq!(chunks.len(), 1);
    }
}
