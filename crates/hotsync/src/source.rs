//! From Git to desired sets: the manifest files under a directory at a commit, read by
//! [`crate::git::Repo`], rendered ([`crate::render`]: plain YAML, or a Kustomize overlay or a Helm chart
//! from the files it reads) and parsed ([`crate::manifest`]), each file and overlay on its own so that one broken file
//! never hides the others.
//!
//! Blocking (libgit2 and parsing): async code calls it from `tokio::task::spawn_blocking`.

pub use crate::git::{is_remote, Ancestry, CommitInfo, FetchOptions, Repo, SourceError, TreeFile};
use crate::git::{BlobId, CommitId, PathEntry};
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
    let blobs: Vec<BlobId> = files
        .iter()
        .filter(|f| !f.symlink)
        .map(|f| f.blob)
        .collect();
    let mut contents = repo.read_blobs(&blobs)?.into_iter();
    let sources = files
        .iter()
        .map(|f| SourceFile {
            path: f.path.clone(),
            content: if f.symlink { None } else { contents.next() },
        })
        .collect();
    let (rendered, diagnostics) = PlainYaml.render(sources);
    let mut m = parse(&rendered, opts);
    m.diagnostics.extend(diagnostics);
    Ok(m)
}

/// Parses rendered files on every core (reading blobs is cheap; parsing is not), each file on its own.
fn parse(files: &[RenderedFile], opts: &LoadOptions) -> Manifests {
    let parsed = crate::par::map(files, 16, |f| manifest::load_file(&f.path, &f.yaml, opts));
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

/// The paths of the kustomizations and charts under `dir` at `commit`, by a walk that keeps nothing else.
///
/// # Errors
/// When the tree cannot be read, or `dir` is not there.
pub fn rendered_roots_under(
    repo: &Repo,
    commit: CommitId,
    dir: &str,
) -> Result<Vec<String>, SourceError> {
    repo.files_named(commit, dir, &crate::render::RENDERED_FILES)
}

/// The kustomizations and charts at `commit` whose files are `roots` (kustomization files and
/// `Chart.yaml`s, as [`rendered_roots_under`] finds them).
///
/// # Errors
/// When the tree cannot be read.
pub fn layout_at(
    repo: &Repo,
    commit: CommitId,
    roots: &[String],
    opts: &LoadOptions,
) -> Result<Layout, SourceError> {
    crate::render::discover(
        &AtCommit { repo, commit },
        roots,
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
    Ok(render_inputs(&inputs, opts))
}

/// Renders each overlay or chart from its input files, on every core, and parses what they render.
fn render_inputs(inputs: &[(&Overlay, Vec<SourceFile>)], opts: &LoadOptions) -> Manifests {
    let rendered = crate::par::map(inputs, 1, |(o, files)| match o.renderer {
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
    });
    let mut m = Manifests::default();
    for (files, diagnostics) in rendered {
        m.extend(parse(&files, opts));
        m.diagnostics.extend(diagnostics);
    }
    m
}

/// The work tree on disk under `root`, as the Kustomize and Helm walks read it (never following a
/// symlink, passing over `.git`).
struct OnDisk<'a> {
    root: &'a std::path::Path,
}

impl OnDisk<'_> {
    fn io(&self, path: &str) -> impl FnOnce(std::io::Error) -> SourceError {
        let path = self.root.join(path);
        move |source| SourceError::WorkTree { path, source }
    }
}

impl kustomize::Tree for OnDisk<'_> {
    fn entry(&self, path: &str) -> Result<Option<Entry>, SourceError> {
        match std::fs::symlink_metadata(self.root.join(path)) {
            Ok(m) if m.file_type().is_symlink() => Ok(Some(Entry::Symlink)),
            Ok(m) if m.is_dir() => Ok(Some(Entry::Dir)),
            Ok(_) => Ok(Some(Entry::File)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(path)(e)),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        std::fs::read(self.root.join(path)).map_err(self.io(path))
    }

    fn files_under(&self, dir: &str) -> Result<Vec<(String, Entry)>, SourceError> {
        let mut out = Vec::new();
        let mut stack = vec![dir.trim_end_matches('/').to_string()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(self.root.join(&d)).map_err(self.io(&d))?;
            for entry in entries {
                let entry = entry.map_err(self.io(&d))?;
                let name = entry.file_name().to_string_lossy().to_string();
                let path = if d.is_empty() || d == "." {
                    name.clone()
                } else {
                    format!("{d}/{name}")
                };
                let ft = entry.file_type().map_err(self.io(&path))?;
                if ft.is_symlink() {
                    out.push((path, Entry::Symlink));
                } else if ft.is_dir() {
                    if name != ".git" {
                        stack.push(path);
                    }
                } else {
                    out.push((path, Entry::File));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Loads every manifest under `dir` (relative to `root`, the work tree's top) from the files on disk,
/// as [`load_at`] does at a commit: the plain files, and each overlay or chart rendered from the files
/// it reads (also outside `dir`, never outside `root`). Paths in the result are relative to `root`.
///
/// # Errors
/// When a directory cannot be listed or a file cannot be read.
pub fn load_worktree(
    root: &std::path::Path,
    dir: &str,
    opts: &LoadOptions,
) -> Result<Manifests, SourceError> {
    use kustomize::Tree as _;
    let tree = OnDisk { root };
    let dir = dir.trim_start_matches("./");
    let dir = if dir == "." { "" } else { dir };
    let files = tree.files_under(dir)?;
    let roots: Vec<String> = files
        .iter()
        .filter(|(p, _)| crate::render::is_rendered_root(p))
        .map(|(p, _)| p.clone())
        .collect();
    let layout = crate::render::discover(&tree, &roots, &opts.kustomize, &opts.helm)?;
    let mut sources = Vec::new();
    for (path, entry) in &files {
        if !manifest::is_manifest_path(path) || layout.owns(path) {
            continue;
        }
        sources.push(SourceFile {
            path: path.clone(),
            content: match entry {
                Entry::Symlink => None,
                _ => Some(tree.read(path)?),
            },
        });
    }
    let (rendered, diagnostics) = PlainYaml.render(sources);
    let mut m = parse(&rendered, opts);
    m.diagnostics.extend(diagnostics);
    let mut inputs = Vec::with_capacity(layout.roots.len());
    for o in &layout.roots {
        let mut files = Vec::with_capacity(o.inputs.len());
        for path in &o.inputs {
            let content = match tree.entry(path)? {
                Some(Entry::File) => Some(tree.read(path)?),
                _ => None,
            };
            files.push(SourceFile {
                path: path.clone(),
                content,
            });
        }
        inputs.push((o, files));
    }
    m.extend(render_inputs(&inputs, opts));
    m.finish();
    Ok(m)
}
