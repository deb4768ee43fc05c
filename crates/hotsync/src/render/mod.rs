//! The render step, between the files read from Git at a commit and the manifests parsed from them:
//! the one place where a renderer plugs in. [`PlainYaml`] hands each file on as it is and reports
//! symlinks, which hotsync never follows; [`kustomize::Kustomize`] renders an overlay from the files it
//! reads.
//!
//! Data: [`SourceFile`]s from [`crate::source`] (read by [`crate::git::Repo`]) in; [`RenderedFile`]s and
//! located diagnostics out, to [`crate::manifest`].

use crate::manifest::{Diagnostic, Severity};

pub mod kustomize;

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
