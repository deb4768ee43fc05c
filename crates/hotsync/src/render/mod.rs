//! The render step, between the files read from Git at a commit and the manifests parsed from them:
//! the one place where a renderer plugs in. [`PlainYaml`] hands each file on as it is and reports
//! symlinks, which hotsync never follows; [`kustomize::Kustomize`] renders an overlay from the files it
//! reads, [`helm::Helm`] a chart; [`discover`] finds both under a directory.
//!
//! Data: [`SourceFile`]s from [`crate::source`] (read by [`crate::git::Repo`]) in; [`RenderedFile`]s and
//! located diagnostics out, to [`crate::manifest`].

use crate::manifest::{Diagnostic, Severity};
use kustomize::{Layout, Overlay, Tree};
use std::collections::BTreeSet;

pub mod helm;
pub mod kustomize;

/// What renders an [`Overlay`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Renderer {
    #[default]
    Kustomize,
    Helm,
}

/// The file names that make a directory something to render: the kustomization files and
/// `Chart.yaml`.
pub const RENDERED_FILES: [&str; 4] = [
    kustomize::KUSTOMIZATION_FILES[0],
    kustomize::KUSTOMIZATION_FILES[1],
    kustomize::KUSTOMIZATION_FILES[2],
    helm::CHART_FILE,
];

/// Is `path` a file that makes its directory rendered (a kustomization or a `Chart.yaml`)?
pub fn is_rendered_root(path: &str) -> bool {
    kustomize::is_kustomization(path) || helm::is_chart(path)
}

/// Walks the kustomizations and charts among `files` (paths under the directory read; others are
/// passed over). A kustomization inside a chart belongs to the chart; a chart inside another (a
/// vendored dependency) or a kustomization another reads is not rendered on its own.
///
/// # Errors
/// When the tree cannot be read.
pub fn discover<T: Tree>(
    tree: &T,
    files: &[String],
    kustomize_opts: &kustomize::KustomizeOptions,
    helm_opts: &helm::HelmOptions,
) -> Result<Layout, crate::git::SourceError> {
    let chart_dirs: BTreeSet<&str> = files
        .iter()
        .filter(|f| helm::is_chart(f))
        .map(|f| kustomize::parent(f))
        .collect();
    let in_chart = |d: &str| {
        chart_dirs
            .iter()
            .any(|c| c.is_empty() || d == *c || d.starts_with(&format!("{c}/")))
    };
    let kustomization_dirs: BTreeSet<&str> = files
        .iter()
        .filter(|f| kustomize::is_kustomization(f))
        .map(|f| kustomize::parent(f))
        .filter(|d| !in_chart(d))
        .collect();
    if chart_dirs.is_empty() && kustomization_dirs.is_empty() {
        return Ok(Layout::default());
    }
    let mut overlays = Vec::new();
    for d in &kustomization_dirs {
        overlays.push(kustomize::walk(tree, d, kustomize_opts)?);
    }
    for d in &chart_dirs {
        overlays.push(helm::walk(tree, d, helm_opts)?);
    }
    let mut inputs: BTreeSet<String> = BTreeSet::new();
    for o in &overlays {
        inputs.extend(o.inputs.iter().cloned());
    }
    let read_by_another = |o: &Overlay| {
        overlays
            .iter()
            .any(|other| other.dir != o.dir && other.kustomizations.contains(&o.dir))
    };
    let roots = overlays
        .iter()
        .filter(|o| !read_by_another(o))
        .cloned()
        .collect();
    Ok(Layout {
        roots,
        inputs,
        dirs: kustomization_dirs
            .into_iter()
            .chain(chart_dirs)
            .map(str::to_string)
            .collect(),
    })
}

/// A file as Git holds it at a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative to the repository's root.
    pub path: String,
    /// The content; `None` for a symlink (not read, never followed).
    pub content: Option<Vec<u8>>,
}

/// YAML to parse, named by the file it came from (diagnostics point there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: String,
    pub yaml: Vec<u8>,
}

/// Turns the files of a commit into YAML documents to parse.
pub trait Render {
    /// Renders `files`; what cannot be rendered is a diagnostic naming its file, never a stop.
    fn render(&self, files: Vec<SourceFile>) -> (Vec<RenderedFile>, Vec<Diagnostic>);
}

/// Plain YAML: each file is its own manifests.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainYaml;

impl Render for PlainYaml {
    fn render(&self, files: Vec<SourceFile>) -> (Vec<RenderedFile>, Vec<Diagnostic>) {
        let mut out = Vec::with_capacity(files.len());
        let mut diagnostics = Vec::new();
        for f in files {
            match f.content {
                Some(yaml) => out.push(RenderedFile { path: f.path, yaml }),
                None => diagnostics.push(Diagnostic {
                    file: f.path,
                    document: None,
                    line: None,
                    severity: Severity::Error,
                    message: "symlink: hotsync reads files only, it never follows links"
                        .to_string(),
                }),
            }
        }
        (out, diagnostics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_yaml_passes_files_on_and_reports_symlinks() {
        let (files, diagnostics) = PlainYaml.render(vec![
            SourceFile {
                path: "sets/a.yaml".into(),
                content: Some(b"kind: GameServerSet\n".to_vec()),
            },
            SourceFile {
                path: "sets/link.yaml".into(),
                content: None,
            },
        ]);
        assert_eq!(
            files,
            [RenderedFile {
                path: "sets/a.yaml".into(),
                yaml: b"kind: GameServerSet\n".to_vec()
            }]
        );
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].file, "sets/link.yaml");
        assert_eq!(diagnostics[0].severity, Severity::Error);
    }
}
