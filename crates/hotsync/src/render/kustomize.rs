//! Kustomize: a directory holding a `kustomization.yaml` is rendered by `kustomize build` (or `kubectl
//! kustomize`), as Argo CD does, from a temporary checkout of exactly the files it reads at the commit:
//! followed transitively through resources, bases, components, patches, generator files and the other
//! fields that name files, also outside `--path` (never outside the repository). Remote bases are
//! refused before kustomize runs, unless allowed.
//!
//! Data: the repository at a commit, through [`Tree`] (from [`crate::source`], read by
//! [`crate::git::Repo`]), in; [`Overlay`]s (what to render and every path it reads) out to
//! [`crate::source`], which reads those files and hands them to [`Kustomize`], whose YAML goes, named by
//! the overlay's kustomization file, to [`crate::manifest`].

use super::{Render, RenderedFile, Renderer, SourceFile};
use crate::manifest::{Diagnostic, Severity};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names kustomize looks for in a directory, in its order.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How overlays are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KustomizeOptions {
    /// The binary: `kustomize` (run as `kustomize build DIR`) or `kubectl` (`kubectl kustomize DIR`,
    /// told apart by its file name); `None`: `kustomize` when it is on `PATH`, else `kubectl`.
    pub bin: Option<PathBuf>,
    /// Hand remote bases to kustomize (which fetches them) instead of refusing them.
    pub allow_remote: bool,
    /// How long one render may take before it is killed.
    pub timeout: Duration,
}

impl Default for KustomizeOptions {
    fn default() -> Self {
        KustomizeOptions {
            bin: None,
            allow_remote: false,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a path of the tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    File,
    /// A symlink, which hotsync never follows.
    Symlink,
    Dir,
}

/// The repository at one commit, as the walk sees it.
pub trait Tree {
    /// What `path` (relative to the repository's root) is; `None` when absent.
    ///
    /// # Errors
    /// When the tree cannot be read.
    fn entry(&self, path: &str) -> Result<Option<Entry>, crate::git::SourceError>;
    /// The content of the file at `path`.
    ///
    /// # Errors
    /// When it cannot be read.
    fn read(&self, path: &str) -> Result<Vec<u8>, crate::git::SourceError>;
    /// Every file under `dir`, with what it is (a file or a symlink), sorted by path.
    ///
    /// # Errors
    /// When the tree cannot be read.
    fn files_under(&self, dir: &str) -> Result<Vec<(String, Entry)>, crate::git::SourceError>;
}

/// A kustomization or a Helm chart to render, and everything it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// What renders it.
    pub renderer: Renderer,
    /// Its directory, relative to the repository's root.
    pub dir: String,
    /// Its kustomization file or `Chart.yaml` (diagnostics and the rendered sets name it).
    pub file: String,
    /// Every file it reads, its own kustomization file included, transitively.
    pub inputs: BTreeSet<String>,
    /// The kustomization (or nested chart) directories it reads, its own included.
    pub kustomizations: BTreeSet<String>,
    /// Why it cannot be rendered (a remote base refused, a symlink, a reference out of the repository,
    /// an unreadable kustomization); rendered only when `None`.
    pub problem: Option<String>,
}

/// The kustomizations and charts under a directory: those rendered, and every path they read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The kustomizations and charts under the directory that no other one there reads: each is
    /// rendered.
    pub roots: Vec<Overlay>,
    /// Every file some kustomization under the directory reads.
    pub inputs: BTreeSet<String>,
    /// The directories of those kustomizations and charts.
    pub dirs: BTreeSet<String>,
}

impl Layout {
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Whether a file belongs to the overlays (one of them reads it, or it lies in a kustomization's
    /// directory): then it is no plain manifest.
    pub fn owns(&self, path: &str) -> bool {
        self.inputs.contains(path) || self.dirs.contains(parent(path))
    }
}

/// Is `path` a kustomization file?
pub fn is_kustomization(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    KUSTOMIZATION_FILES.contains(&name)
}

pub(super) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Walks the kustomization in `dir` and every one it reads.
///
/// # Errors
/// When the tree cannot be read.
pub fn walk<T: Tree>(
    tree: &T,
    dir: &str,
    opts: &KustomizeOptions,
) -> Result<Overlay, crate::git::SourceError> {
    let mut o = Overlay {
        renderer: Renderer::Kustomize,
        dir: dir.to_string(),
        ..Overlay::default()
    };
    let mut todo = vec![dir.to_string()];
    while let Some(d) = todo.pop() {
        if !o.kustomizations.insert(d.clone()) {
            continue;
        }
        let mut file = None;
        for name in KUSTOMIZATION_FILES {
            let p = join(&d, name);
            if let Some(e) = tree.entry(&p)? {
                file = Some((p, e));
                break;
            }
        }
        let Some((file, entry)) = file else {
            // A directory named as a resource without a kustomization: kustomize says so.
            continue;
        };
        if d == dir {
            o.file = file.clone();
        }
        if entry == Entry::Symlink {
            o.problem
                .get_or_insert(format!("{file} is a symlink: hotsync never follows links"));
            continue;
        }
        o.inputs.insert(file.clone());
        let refs = match references(&tree.read(&file)?) {
            Ok(r) => r,
            Err(e) => {
                o.problem.get_or_insert(format!("{file}: {e}"));
                continue;
            }
        };
        for r in refs {
            if is_remote(&r) {
                if !opts.allow_remote {
                    o.problem.get_or_insert(format!(
                        "{file} names the remote base {r:?}: refused, hotsync renders from the repository alone (pass --kustomize-allow-remote to let kustomize fetch it)"
                    ));
                }
                continue;
            }
            let Some(p) = resolve(&d, &r) else {
                o.problem.get_or_insert(format!(
                    "{file} names {r:?}, which is outside the repository"
                ));
                continue;
            };
            match tree.entry(&p)? {
                Some(Entry::File) => {
                    o.inputs.insert(p);
                }
                Some(Entry::Symlink) => {
                    o.problem.get_or_insert(format!(
                        "{file} names {r:?}, a symlink: hotsync never follows links"
                    ));
                }
                Some(Entry::Dir) => todo.push(p),
                // Absent: kustomize's own message says so when it renders.
                None => {}
            }
        }
    }
    if o.file.is_empty() {
        o.file = join(dir, KUSTOMIZATION_FILES[0]);
        o.problem
            .get_or_insert(format!("{dir} holds no kustomization"));
    }
    Ok(o)
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `rel` from `dir`, normalised; `None` when it leaves the repository.
fn resolve(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = if rel.starts_with('/') {
        return None;
    } else {
        dir.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// A remote base as kustomize takes one: a URL, an scp-like git address, or a host-qualified path.
fn is_remote(r: &str) -> bool {
    r.contains("://")
        || r.starts_with("git@")
        || r.contains("?ref=")
        || r.contains(".git//")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|h| r.starts_with(h))
}

/// Every path a kustomization names (resources, bases, components, crds, configurations, generators,
/// transformers, validators, patches and their older forms, replacements, generator sources, openapi).
///
/// # Errors
/// When it is not YAML, not a mapping, or uses Helm charts (which need helm and the network).
pub fn references(yaml: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(yaml).map_err(|_| "not UTF-8".to_string())?;
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(m) = doc else {
        return Err("a kustomization must be a mapping".to_string());
    };
    for k in ["helmCharts", "helmChartInflationGenerator", "helmGlobals"] {
        if m.contains_key(k) {
            return Err(format!(
                "{k}: Helm charts inside a kustomization are not rendered (they need --enable-helm and the network)"
            ));
        }
    }
    let mut out = Vec::new();
    let strings = |v: Option<&Value>, out: &mut Vec<String>| {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                out.push(s.to_string());
            }
        }
    };
    for k in [
        "resources",
        "bases",
        "components",
        "crds",
        "configurations",
        "generators",
        "transformers",
        "validators",
    ] {
        strings(m.get(k), &mut out);
    }
    // patchesStrategicMerge: a path, or the patch itself inline.
    for s in m
        .get("patchesStrategicMerge")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !s.contains('\n') && !s.contains(": ") {
            out.push(s.to_string());
        }
    }
    for k in ["patches", "patchesJson6902", "replacements"] {
        for item in m.get(k).and_then(Value::as_array).into_iter().flatten() {
            if let Some(p) = item.get("path").and_then(Value::as_str) {
                out.push(p.to_string());
            }
        }
    }
    for k in ["configMapGenerator", "secretGenerator"] {
        for item in m.get(k).and_then(Value::as_array).into_iter().flatten() {
            for f in item
                .get("files")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                // `key=path` or `path`.
                out.push(f.split_once('=').map_or(f, |(_, p)| p).to_string());
            }
            strings(item.get("envs"), &mut out);
            if let Some(e) = item.get("env").and_then(Value::as_str) {
                out.push(e.to_string());
            }
        }
    }
    if let Some(p) = m
        .get("openapi")
        .and_then(|o| o.get("path"))
        .and_then(Value::as_str)
    {
        out.push(p.to_string());
    }
    Ok(out)
}

/// Renders one overlay from its input files.
#[derive(Clone, Debug)]
pub struct Kustomize<'a> {
    pub overlay: &'a Overlay,
    pub opts: &'a KustomizeOptions,
}

impl Render for Kustomize<'_> {
    fn render(&self, files: Vec<SourceFile>) -> (Vec<RenderedFile>, Vec<Diagnostic>) {
        let o = self.overlay;
        let fail = |message: String| Diagnostic {
            file: o.file.clone(),
            document: None,
            line: None,
            severity: Severity::Error,
            message,
        };
        if let Some(p) = &o.problem {
            return (vec![], vec![fail(format!("cannot render {}: {p}", o.dir))]);
        }
        match build(o, files, self.opts) {
            Ok(yaml) => (
                vec![RenderedFile {
                    path: o.file.clone(),
                    yaml,
                }],
                vec![],
            ),
            Err(e) => (vec![], vec![fail(e)]),
        }
    }
}

/// The binary to run and whether it is kubectl.
fn binary(opts: &KustomizeOptions) -> (PathBuf, bool) {
    let bin = opts.bin.clone().unwrap_or_else(|| {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("kustomize").is_file()))
            .unwrap_or(false);
        PathBuf::from(if on_path { "kustomize" } else { "kubectl" })
    });
    let kubectl = bin.file_name().is_some_and(|n| n == "kubectl");
    (bin, kubectl)
}

/// Writes the inputs into a temporary directory and runs kustomize on the overlay there.
fn build(o: &Overlay, files: Vec<SourceFile>, opts: &KustomizeOptions) -> Result<Vec<u8>, String> {
    let tmp = tempfile::Builder::new()
        .prefix("hotsync-kustomize-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory to render {} in: {e}", o.dir))?;
    for f in files {
        let Some(content) = f.content else {
            return Err(format!(
                "cannot render {}: {} is a symlink, and hotsync never follows links",
                o.dir, f.path
            ));
        };
        let dest = tmp.path().join(&f.path);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("cannot write {}: {e}", f.path))?;
        }
        std::fs::write(&dest, content).map_err(|e| format!("cannot write {}: {e}", f.path))?;
    }
    let (bin, kubectl) = binary(opts);
    let dir = tmp.path().join(&o.dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot write {}: {e}", o.dir))?;
    let mut cmd = Command::new(&bin);
    if kubectl {
        cmd.arg("kustomize");
    } else {
        cmd.arg("build");
    }
    let shown = format!(
        "{} {} {}",
        bin.display(),
        if kubectl { "kustomize" } else { "build" },
        o.dir
    );
    cmd.arg(&dir)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_bounded(cmd, opts.timeout).map_err(|e| match e {
        RunError::Spawn(e) => format!(
            "cannot run {} to render {}: {e} (say which binary with --kustomize-bin)",
            bin.display(),
            o.dir
        ),
        RunError::Timeout => format!(
            "{shown} ran past {}s and was stopped",
            opts.timeout.as_secs()
        ),
    })?;
    if !out.success {
        let tmp_prefix = format!("{}/", tmp.path().display());
        let msg = String::from_utf8_lossy(&out.stderr)
            .replace(&tmp_prefix, "")
            .trim()
            .to_string();
        return Err(format!("{shown} failed: {msg}"));
    }
    Ok(out.stdout)
}

pub(super) struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub(super) enum RunError {
    Spawn(std::io::Error),
    Timeout,
}

/// Runs a command for at most `timeout`, reading both pipes as it goes; killed past it.
pub(super) fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, RunError> {
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Output {
            success: s.success(),
            stdout,
            stderr,
        }),
        None => Err(RunError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Files(BTreeMap<String, String>);

    impl Tree for Files {
        fn entry(&self, path: &str) -> Result<Option<Entry>, crate::git::SourceError> {
            if self.0.contains_key(path) {
                return Ok(Some(Entry::File));
            }
            let prefix = format!("{path}/");
            Ok(self
                .0
                .keys()
                .any(|k| k.starts_with(&prefix))
                .then_some(Entry::Dir))
        }
        fn read(&self, path: &str) -> Result<Vec<u8>, crate::git::SourceError> {
            Ok(self.0.get(path).cloned().unwrap_or_default().into_bytes())
        }
        fn files_under(&self, dir: &str) -> Result<Vec<(String, Entry)>, crate::git::SourceError> {
            let prefix = format!("{dir}/");
            Ok(self
                .0
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .map(|k| (k.clone(), Entry::File))
                .collect())
        }
    }

    fn files(entries: &[(&str, &str)]) -> Files {
        Files(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn shared_base() -> Files {
        files(&[
            ("bases/game/kustomization.yaml", "resources:\n  - gss.yaml\n"),
            ("bases/game/gss.yaml", "kind: GameServerSet\n"),
            (
                "clusters/eu/kustomization.yaml",
                "resources:\n  - ../../bases/game\npatches:\n  - path: replicas.yaml\nconfigMapGenerator:\n  - name: motd\n    files:\n      - motd=motd.txt\n",
            ),
            ("clusters/eu/replicas.yaml", "kind: GameServerSet\n"),
            ("clusters/eu/motd.txt", "hello\n"),
            ("clusters/us/kustomization.yaml", "resources:\n  - ../../bases/game\nimages:\n  - name: sidecar\n    newTag: v2\n"),
            ("clusters/notes.yaml", "kind: ConfigMap\n"),
        ])
    }

    #[test]
    fn an_overlay_reads_its_base_outside_the_path_and_its_patch_and_generator_files() {
        let o = walk(&shared_base(), "clusters/eu", &KustomizeOptions::default()).expect("ok");
        assert_eq!(o.file, "clusters/eu/kustomization.yaml");
        assert_eq!(o.problem, None);
        assert_eq!(
            o.inputs.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "bases/game/gss.yaml",
                "bases/game/kustomization.yaml",
                "clusters/eu/kustomization.yaml",
                "clusters/eu/motd.txt",
                "clusters/eu/replicas.yaml",
            ]
        );
    }

    #[test]
    fn the_overlays_under_a_path_are_rendered_and_the_bases_they_share_are_not() {
        let tree = shared_base();
        let all: Vec<String> = tree.0.keys().cloned().collect();
        let layout = super::super::discover(
            &tree,
            &all,
            &KustomizeOptions::default(),
            &super::super::helm::HelmOptions::default(),
        )
        .expect("ok");
        let roots: Vec<&str> = layout.roots.iter().map(|o| o.dir.as_str()).collect();
        assert_eq!(roots, ["clusters/eu", "clusters/us"]);
        assert!(layout.owns("bases/game/gss.yaml"));
        assert!(layout.owns("clusters/eu/replicas.yaml"));
        assert!(!layout.owns("clusters/notes.yaml"));
    }

    #[test]
    fn a_remote_base_is_refused_unless_allowed() {
        let tree = files(&[(
            "o/kustomization.yaml",
            "resources:\n  - https://github.com/example/game//base?ref=v1\n",
        )]);
        let o = walk(&tree, "o", &KustomizeOptions::default()).expect("ok");
        assert!(
            o.problem.as_deref().unwrap_or("").contains("remote base"),
            "{o:?}"
        );
        let allowed = KustomizeOptions {
            allow_remote: true,
            ..Default::default()
        };
        assert_eq!(walk(&tree, "o", &allowed).expect("ok").problem, None);
    }

    #[test]
    fn a_reference_out_of_the_repository_is_refused() {
        let tree = files(&[("o/kustomization.yaml", "resources:\n  - ../../elsewhere\n")]);
        let o = walk(&tree, "o", &KustomizeOptions::default()).expect("ok");
        assert!(o
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("outside the repository"));
    }

    #[test]
    fn inline_patches_are_not_paths() {
        let refs = references(
            b"patchesStrategicMerge:\n  - |\n    kind: GameServerSet\n    metadata:\n      name: a\n  - p.yaml\npatches:\n  - patch: |\n      - op: replace\n    target:\n      kind: GameServerSet\n",
        )
        .expect("ok");
        assert_eq!(refs, ["p.yaml"]);
    }

    #[test]
    fn helm_charts_in_a_kustomization_are_refused_by_name() {
        let e = references(b"helmCharts:\n  - name: x\n").expect_err("refused");
        assert!(e.contains("helmCharts"), "{e}");
    }
}
