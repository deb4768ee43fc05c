//! Helm: a directory holding a `Chart.yaml` is rendered by `helm template`, as Argo CD's Helm source
//! does, with a release name, the namespace of sets that name none, and values files given as paths in
//! the repository (later files win, as with `helm -f`). The chart is rendered from a temporary checkout
//! of every file under its directory (templates, `values.yaml`, vendored `charts/`) and of the values
//! files, at the commit being read; helm's own state (cache, repositories, plugins) lives in that
//! checkout too, so a render reads nothing of the machine's Helm set-up and fetches nothing.
//! Dependencies must be vendored under `charts/`, as `helm template` without `--dependency-update`
//! requires.
//!
//! Data: the repository at a commit, through [`Tree`], in; an [`Overlay`] (what to render, every
//! path it reads) out to [`crate::source`], which reads those files and hands them to [`Helm`], whose
//! YAML goes, named by the chart's `Chart.yaml`, to [`crate::manifest`].

use super::kustomize::{join, run_bounded, Entry, Overlay, RunError, Tree};
use super::{Render, RenderedFile, Renderer, SourceFile};
use crate::manifest::{Diagnostic, Severity};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The file that makes a directory a chart.
pub const CHART_FILE: &str = "Chart.yaml";

/// How charts are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelmOptions {
    /// The binary; `None`: `helm` on `PATH`.
    pub bin: Option<PathBuf>,
    /// The release name; `None`: the chart directory's name.
    pub release: Option<String>,
    /// Values files, paths relative to the repository's root, in the order `helm -f` takes them.
    pub values: Vec<String>,
    /// How long one render may take before it is killed.
    pub timeout: Duration,
}

impl Default for HelmOptions {
    fn default() -> Self {
        HelmOptions {
            bin: None,
            release: None,
            values: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Is `path` a chart's `Chart.yaml`?
pub fn is_chart(path: &str) -> bool {
    path.rsplit('/').next() == Some(CHART_FILE)
}

/// The chart in `dir`: every file under it and the values files, and the charts nested in it.
///
/// # Errors
/// When the tree cannot be read.
pub fn walk<T: Tree>(
    tree: &T,
    dir: &str,
    opts: &HelmOptions,
) -> Result<Overlay, crate::git::SourceError> {
    let file = join(dir, CHART_FILE);
    let mut o = Overlay {
        dir: dir.to_string(),
        file: file.clone(),
        renderer: Renderer::Helm,
        ..Overlay::default()
    };
    o.kustomizations.insert(dir.to_string());
    for (path, entry) in tree.files_under(dir)? {
        match entry {
            Entry::Symlink => {
                o.problem
                    .get_or_insert(format!("{path} is a symlink: hotsync never follows links"));
            }
            Entry::File | Entry::Dir => {
                if is_chart(&path) && path != file {
                    o.kustomizations
                        .insert(super::kustomize::parent(&path).to_string());
                }
                o.inputs.insert(path);
            }
        }
    }
    for v in &opts.values {
        let path = v.trim_start_matches("./").to_string();
        match tree.entry(&path)? {
            Some(Entry::File) => {
                o.inputs.insert(path);
            }
            Some(Entry::Symlink) => {
                o.problem.get_or_insert(format!(
                    "the values file {v} (--helm-values) is a symlink: hotsync never follows links"
                ));
            }
            Some(Entry::Dir) => {
                o.problem.get_or_insert(format!(
                    "the values file {v} (--helm-values) is a directory"
                ));
            }
            None => {
                o.problem.get_or_insert(format!(
                    "the values file {v} (--helm-values, a path from the repository's root) is not in the repository at this commit"
                ));
            }
        }
    }
    Ok(o)
}

/// Renders one chart from its input files.
#[derive(Clone, Debug)]
pub struct Helm<'a> {
    pub chart: &'a Overlay,
    pub opts: &'a HelmOptions,
    /// The namespace of the release (`-n/--namespace`).
    pub namespace: &'a str,
}

impl Render for Helm<'_> {
    fn render(&self, files: Vec<SourceFile>) -> (Vec<RenderedFile>, Vec<Diagnostic>) {
        let o = self.chart;
        let fail = |message: String| Diagnostic {
            file: o.file.clone(),
            document: None,
            line: None,
            severity: Severity::Error,
            message,
        };
        if let Some(p) = &o.problem {
            return (
                vec![],
                vec![fail(format!("cannot render the chart {}: {p}", o.dir))],
            );
        }
        let name = files
            .iter()
            .find(|f| f.path == o.file)
            .and_then(|f| f.content.as_deref())
            .and_then(chart_name);
        match template(o, files, self.opts, self.namespace) {
            Ok(yaml) => (
                vec![RenderedFile {
                    path: o.file.clone(),
                    yaml,
                }],
                vec![],
            ),
            Err(e) => {
                // Name the template and line helm names, as a path of the repository. The diagnostic
                // stays on the chart's Chart.yaml, which names its sets: a plan then knows that those
                // sets are unreadable, not deleted.
                let located = name
                    .as_deref()
                    .and_then(|n| template_location(&e, n, &o.dir))
                    .filter(|(f, _)| o.inputs.contains(f));
                let d = match located {
                    Some((file, line)) => fail(format!("{file}:{line}: {e}")),
                    None => fail(e),
                };
                (vec![], vec![d])
            }
        }
    }
}

/// The chart's `name` from its `Chart.yaml`.
fn chart_name(yaml: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_saphyr::from_str(std::str::from_utf8(yaml).ok()?).ok()?;
    doc.get("name")?.as_str().map(str::to_string)
}

/// The first `NAME/PATH:LINE` in helm's message, as a path of the repository and a line.
fn template_location(message: &str, name: &str, dir: &str) -> Option<(String, usize)> {
    let needle = format!("{name}/");
    let mut rest = message;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let path_end = after
            .find(|c: char| c == ':' || c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(after.len());
        let path = &after[..path_end];
        let digits: String = after[path_end..]
            .strip_prefix(':')
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let boundary = i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '-');
        if boundary && !path.is_empty() {
            if let Ok(line) = digits.parse() {
                return Some((join(dir, path), line));
            }
        }
        rest = &rest[i + needle.len()..];
    }
    None
}

/// The release name: the flag's, else the chart directory's name.
fn release(o: &Overlay, opts: &HelmOptions) -> String {
    opts.release.clone().unwrap_or_else(|| {
        let name = o.dir.rsplit('/').next().unwrap_or_default();
        if name.is_empty() {
            "release".to_string()
        } else {
            name.to_ascii_lowercase()
        }
    })
}

/// Writes the inputs into a temporary directory and runs `helm template` on the chart there.
fn template(
    o: &Overlay,
    files: Vec<SourceFile>,
    opts: &HelmOptions,
    namespace: &str,
) -> Result<Vec<u8>, String> {
    let tmp = tempfile::Builder::new()
        .prefix("hotsync-helm-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory to render {} in: {e}", o.dir))?;
    let root = tmp.path().join("repo");
    for f in files {
        let Some(content) = f.content else {
            return Err(format!(
                "cannot render the chart {}: {} is a symlink, and hotsync never follows links",
                o.dir, f.path
            ));
        };
        let dest = root.join(&f.path);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("cannot write {}: {e}", f.path))?;
        }
        std::fs::write(&dest, content).map_err(|e| format!("cannot write {}: {e}", f.path))?;
    }
    let bin = opts.bin.clone().unwrap_or_else(|| PathBuf::from("helm"));
    let release = release(o, opts);
    let mut cmd = Command::new(&bin);
    cmd.arg("template")
        .arg(&release)
        .arg(root.join(&o.dir))
        .arg("--namespace")
        .arg(namespace);
    let mut shown = format!(
        "{} template {release} {} --namespace {namespace}",
        bin.display(),
        if o.dir.is_empty() { "." } else { &o.dir }
    );
    for v in &opts.values {
        let v = v.trim_start_matches("./");
        cmd.arg("--values").arg(root.join(v));
        shown.push_str(&format!(" --values {v}"));
    }
    let state = tmp.path().join("helm");
    cmd.env("HELM_CACHE_HOME", state.join("cache"))
        .env("HELM_CONFIG_HOME", state.join("config"))
        .env("HELM_DATA_HOME", state.join("data"))
        .env("KUBECONFIG", state.join("no-kubeconfig"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_bounded(cmd, opts.timeout).map_err(|e| match e {
        RunError::Spawn(e) => format!(
            "cannot run {} to render the chart {}: {e} (say which binary with --helm-bin)",
            bin.display(),
            o.dir
        ),
        RunError::Timeout => format!(
            "{shown} ran past {}s and was stopped",
            opts.timeout.as_secs()
        ),
    })?;
    if !out.success {
        let tmp_prefix = format!("{}/", root.display());
        let msg = String::from_utf8_lossy(&out.stderr)
            .replace(&tmp_prefix, "")
            .lines()
            .filter(|l| !l.starts_with("Use --debug flag"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string();
        return Err(format!("{shown} failed: {msg}"));
    }
    Ok(out.stdout)
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

    fn chart() -> Files {
        Files(
            [
                (
                    "charts/game/Chart.yaml",
                    "apiVersion: v2\nname: game\nversion: 0.1.0\n",
                ),
                ("charts/game/values.yaml", "sidecar:\n  tag: v1\n"),
                ("charts/game/templates/gss.yaml", "kind: GameServerSet\n"),
                (
                    "charts/game/charts/lib/Chart.yaml",
                    "apiVersion: v2\nname: lib\n",
                ),
                ("envs/eu.yaml", "replicas: 3\n"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }

    #[test]
    fn a_chart_reads_every_file_under_it_and_its_values_files() {
        let opts = HelmOptions {
            values: vec!["envs/eu.yaml".into()],
            ..Default::default()
        };
        let o = walk(&chart(), "charts/game", &opts).expect("ok");
        assert_eq!(o.problem, None);
        assert_eq!(o.file, "charts/game/Chart.yaml");
        assert_eq!(o.renderer, Renderer::Helm);
        assert!(o.inputs.contains("charts/game/templates/gss.yaml"));
        assert!(o.inputs.contains("envs/eu.yaml"));
        assert!(o.kustomizations.contains("charts/game/charts/lib"));
    }

    #[test]
    fn a_missing_values_file_names_the_flag_and_the_path() {
        let opts = HelmOptions {
            values: vec!["envs/us.yaml".into()],
            ..Default::default()
        };
        let o = walk(&chart(), "charts/game", &opts).expect("ok");
        let p = o.problem.unwrap_or_default();
        assert!(
            p.contains("envs/us.yaml") && p.contains("--helm-values"),
            "{p}"
        );
    }

    #[test]
    fn helms_message_is_located_in_the_template_it_names() {
        let m = "helm template game charts/game failed: Error: parse error at (game/templates/gss.yaml:4): unclosed action started at game/templates/gss.yaml:3";
        assert_eq!(
            template_location(m, "game", "charts/game"),
            Some(("charts/game/templates/gss.yaml".to_string(), 4))
        );
        assert_eq!(
            template_location("Error: no such chart", "game", "charts/game"),
            None
        );
        assert_eq!(
            template_location("mygame/templates/a.yaml:3", "game", "c"),
            None
        );
    }

    #[test]
    fn the_release_is_named_after_the_chart_directory_unless_the_flag_names_it() {
        let o = walk(&chart(), "charts/game", &HelmOptions::default()).expect("ok");
        assert_eq!(release(&o, &HelmOptions::default()), "game");
        let named = HelmOptions {
            release: Some("eu-game".into()),
            ..Default::default()
        };
        assert_eq!(release(&o, &named), "eu-game");
    }
}
