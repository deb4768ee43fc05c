//! From Git to desired sets: the manifest files under a directory at a commit, read by
//! [`crate::git::Repo`], rendered ([`crate::render`]) and parsed ([`crate::manifest`]), each file on its
//! own so that one broken file never hides the others.
//!
//! Blocking (libgit2 and parsing): async code calls it from `tokio::task::spawn_blocking`.

pub use crate::git::{is_remote, Ancestry, CommitInfo, FetchOptions, Repo, SourceError, TreeFile};
use crate::manifest::{self, LoadOptions, Manifests};
use crate::render::{PlainYaml, Render as _, RenderedFile, SourceFile};

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

/// Loads every manifest under `dir` at `commit`.
///
/// # Errors
/// When the commit, path or a blob cannot be read.
pub fn load_at(
    repo: &Repo,
    commit: crate::git::CommitId,
    dir: &str,
    opts: &LoadOptions,
) -> Result<Manifests, SourceError> {
    let files = repo.manifest_files(commit, dir)?;
    let mut m = load_files(repo, &files, opts)?;
    m.finish();
    Ok(m)
}
