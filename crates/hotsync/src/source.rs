//! From Git to desired sets: the manifest files under a directory at a commit, read by
//! [`crate::git::Repo`], rendered ([`crate::render`]: plain YAML, or a Kustomize overlay or a Helm chart
//! from the files it reads) and parsed ([`crate::manifest`]), each file and overlay on its own so that one broken file
//! never hides the others.
//!
//! Blocking (libgit2 and parsing): async code calls it from `tokio::task::spawn_blocking`.

pub use crate::git::{is_remote, Ancestry, CommitInfo, FetchOptions, Repo, SourceError, TreeFile};
use crate::git::{CommitId, PathEntry};
use crate::manifest::{self, LoadOptions, Manifests};
use crate::render::helm::Helm;
use crate::render::kustomize::{self, Entry, Kustomize, Layout, Overlay};
use crate::render::{PlainYaml, Render as _, RenderedFile, Renderer, SourceFile};

/// Loads and parses manifest files (symlinks are reported, never followed).
///
/// # Errors
/// When a blob cannot be read.
pub fn load_files(
    repo: &Repo,
    files: &[TreeFile],
    opts: &LoadOptions,
) -> Result<Manifests, SourceError> {
    let mut sources = Vec::with_capacity(files.len());
    for f in files {
        sources.push(SourceFile {
            path: f.path.clone(),
            content: if f.symlink {
                None
            } else {
                Some(repo.read_blob(f.blob)?)
            },
        });
    }
    let (rendered, diagnostics) = PlainYaml.render(sources);
    let mut m = parse(&rendered, opts);
    m.diagnostics.extend(diagnostics);
    Ok(m)
}

/// Parses rendered files on every core (reading blobs is cheap; parsing is not), each file on its own.
fn parse(files: &[RenderedFile], opts: &LoadOptions) -> Manifests {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let per = files.len().div_ceil(threads).max(16);
    let parsed: Vec<Manifests> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|fs| {
                s.spawn(move || {
                    let mut m = Manifests::default();
                    for f in fs {
                        m.extend(manifest::load_file(&f.path, &f.yaml, opts));
                    }
                    m
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut m = Manifests::default();
    for p in parsed {
        m.extend(p);
    }
    m
}

/// Loads every manifest under `dir` at `commit`: the plain files, and each overlay rendered.
///
/// # Errors
/// When the commit, path or a blob cannot be read.
pub fn load_at(
    repo: &Repo,
    commit: CommitId,
    dir: &str,
    opts: &LoadOptions,
) -> Result<Manifests, SourceError> {
    let files = repo.manifest_files(commit, dir)?;
    let layout = layout_of(repo, commit, &files, opts)?;
    let plain: Vec<TreeFile> = files
        .into_iter()
        .filter(|f| !layout.owns(&f.path))
        .collect();
    let mut m = load_files(repo, &plain, opts)?;
    let roots: Vec<&Overlay> = layout.roots.iter().collect();
    m.extend(render_overlays(repo, commit, &roots, opts)?);
    m.finish();
    Ok(m)
}

/// The repository at one commit, as the Kustomize and Helm walks read it.
struct AtCommit<'a> {
    repo: &'a Repo,
    commit: CommitId,
}

impl kustomize::Tree for AtCommit<'_> {
    fn entry(&self, path: &str) -> Result<Option<Entry>, SourceError> {
        Ok(match self.repo.entry(self.commit, path)? {
            Some(PathEntry::Dir) => Some(Entry::Dir),
            Some(PathEntry::File(f)) if f.symlink => Some(Entry::Symlink),
            Some(PathEntry::File(_)) => Some(Entry::File),
            None => None,
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        match self.repo.entry(self.commit, path)? {
            Some(PathEntry::File(f)) => self.repo.read_blob(f.blob),
            _ => Err(SourceError::NoSuchPath {
                path: path.to_string(),
                commit: self.commit.to_string(),
            }),
        }
    }

    fn files_under(&self, dir: &str) -> Result<Vec<(String, Entry)>, SourceError> {
        Ok(self
            .repo
            .files_under(self.commit, dir)?
            .into_iter()
            .map(|f| {
                let e = if f.symlink {
                    Entry::Symlink
                } else {
                    Entry::File
                };
                (f.path, e)
            })
            .collect())
    }
}

/// The kustomizations and charts among `files` (the manifest files under the directory read) at
/// `commit`.
///
/// # Errors
/// When the tree cannot be read.
pub fn layout_of(
    repo: &Repo,
    commit: CommitId,
    files: &[TreeFile],
    opts: &LoadOptions,
) -> Result<Layout, SourceError> {
    let paths: Vec<String> = files
        .iter()
        .filter(|f| crate::render::is_rendered_root(&f.path))
        .map(|f| f.path.clone())
        .collect();
    crate::render::discover(
        &AtCommit { repo, commit },
        &paths,
        &opts.kustomize,
        &opts.helm,
    )
}

/// The kustomizations and charts under `dir` at `commit`, found by a walk that keeps nothing else; an empty
/// layout when `dir` is not there.
///
/// # Errors
/// When the tree cannot be read.
pub fn layout_under(
    repo: &Repo,
    commit: CommitId,
    dir: &str,
    opts: &LoadOptions,
) -> Result<Layout, SourceError> {
    let paths = match repo.files_named(commit, dir, &crate::render::RENDERED_FILES) {
        Ok(p) => p,
        Err(SourceError::NoSuchPath { .. }) => return Ok(Layout::default()),
        Err(e) => return Err(e),
    };
    crate::render::discover(
        &AtCommit { repo, commit },
        &paths,
        &opts.kustomize,
        &opts.helm,
    )
}

/// Renders overlays and charts at `commit`, each from the files it reads, on every core, and parses
/// what they render; a failed render is a diagnostic naming the overlay or chart.
///
/// # Errors
/// When an input cannot be read.
pub fn render_overlays(
    repo: &Repo,
    commit: CommitId,
    overlays: &[&Overlay],
    opts: &LoadOptions,
) -> Result<Manifests, SourceError> {
    let mut inputs = Vec::with_capacity(overlays.len());
    for o in overlays {
        let mut files = Vec::with_capacity(o.inputs.len());
        for path in &o.inputs {
            let content = match repo.entry(commit, path)? {
                Some(PathEntry::File(f)) if !f.symlink => Some(repo.read_blob(f.blob)?),
                _ => None,
            };
            files.push(SourceFile {
                path: path.clone(),
                content,
            });
        }
        inputs.push((*o, files));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let per = inputs.len().div_ceil(threads).max(1);
    let rendered: Vec<(Vec<RenderedFile>, Vec<crate::manifest::Diagnostic>)> =
        std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(o, files)| match o.renderer {
                                Renderer::Kustomize => Kustomize {
                                    overlay: o,
                                    opts: &opts.kustomize,
                                }
                                .render(files.clone()),
                                Renderer::Helm => Helm {
                                    chart: o,
                                    opts: &opts.helm,
                                    namespace: &opts.default_namespace,
                                }
                                .render(files.clone()),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
    let mut m = Manifests::default();
    for (files, diagnostics) in rendered {
        m.extend(parse(&files, opts));
        m.diagnostics.extend(diagnostics);
    }
    Ok(m)
}
