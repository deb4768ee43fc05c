//! The review path: load two revisions of a repository and plan the change between them.
//!
//! Only files that differ between the two commits are read and parsed, and only the Kustomize overlays
//! that read a changed file are rendered: sets are matched by namespace and name across files and
//! overlays, so a set moved from one file to another is no change, and the cost of a plan follows the
//! size of the change rather than the size of the repository.

use crate::git::{ChangedFile, TreeFile};
use crate::manifest::LoadOptions;
use crate::plan::{Plan, Revision};
use crate::render::kustomize::{Layout, Overlay};
use crate::source::{Repo, SourceError};

/// Plans the change from `base` to `head` (both already resolved) under `dir`.
///
/// # Errors
/// When a commit, path or blob cannot be read.
pub fn plan_between(
    repo: &Repo,
    base: Revision,
    head: Revision,
    dir: &str,
    opts: &LoadOptions,
) -> Result<Plan, SourceError> {
    let base_oid = oid(repo, &base)?;
    let head_oid = oid(repo, &head)?;
    let changed = repo.changed_files(base_oid, head_oid, dir)?;
    // The overlays on each side, and the files they read: those are no plain manifests. The tree is
    // walked once, at head; base's kustomizations and charts are head's as the diff takes them back.
    let new_roots = crate::source::rendered_roots_under(repo, head_oid, dir)?;
    let old_roots = roots_before(&new_roots, &changed);
    let old_layout = crate::source::layout_at(repo, base_oid, &old_roots, opts)?;
    let new_layout = crate::source::layout_at(repo, head_oid, &new_roots, opts)?;
    let manifest = |f: &TreeFile| crate::manifest::is_manifest_path(&f.path);
    let old_files: Vec<_> = changed
        .iter()
        .filter_map(|c| c.old.clone())
        .filter(|f| manifest(f) && !old_layout.owns(&f.path))
        .collect();
    let new_files: Vec<_> = changed
        .iter()
        .filter_map(|c| c.new.clone())
        .filter(|f| manifest(f) && !new_layout.owns(&f.path))
        .collect();
    let mut old = crate::source::load_files(repo, &old_files, opts)?;
    let mut new = crate::source::load_files(repo, &new_files, opts)?;
    if !(old_layout.is_empty() && new_layout.is_empty()) {
        // An overlay is rendered, on both sides, when a file it reads on either side changed (a
        // shared base shows in every overlay that reads it), or when it exists on one side only.
        let paths = repo.changed_paths(base_oid, head_oid)?;
        let touched = |l: &Layout, d: &str| {
            l.roots
                .iter()
                .find(|o| o.dir == d)
                .is_none_or(|o| o.inputs.iter().any(|i| paths.contains(i)))
        };
        let dirs: std::collections::BTreeSet<&str> = old_layout
            .roots
            .iter()
            .chain(&new_layout.roots)
            .map(|o| o.dir.as_str())
            .filter(|d| touched(&old_layout, d) || touched(&new_layout, d))
            .collect();
        fn pick<'a>(l: &'a Layout, dirs: &std::collections::BTreeSet<&str>) -> Vec<&'a Overlay> {
            l.roots
                .iter()
                .filter(|o| dirs.contains(o.dir.as_str()))
                .collect()
        }
        old.extend(crate::source::render_overlays(
            repo,
            base_oid,
            &pick(&old_layout, &dirs),
            opts,
        )?);
        new.extend(crate::source::render_overlays(
            repo,
            head_oid,
            &pick(&new_layout, &dirs),
            opts,
        )?);
    }
    old.finish();
    new.finish();
    // A set whose file failed to parse on one side must not show up as created or deleted: drop the
    // other side of every set defined in a file with errors, and let the errors speak.
    let broken: std::collections::BTreeSet<&str> = new
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::manifest::Severity::Error)
        .map(|d| d.file.as_str())
        .collect();
    let old_sets: Vec<_> = old
        .sets
        .iter()
        .filter(|s| !broken.contains(s.origin.file.as_str()))
        .cloned()
        .collect();
    Ok(Plan::build(
        base,
        head,
        &old_sets,
        &new.sets,
        &new.diagnostics,
    ))
}

/// The rendered roots (kustomization files, charts) at base, from those at head and the files that
/// changed between them: head's, but for those added since, and every one the diff shows at base.
fn roots_before(head: &[String], changed: &[ChangedFile]) -> Vec<String> {
    let added: std::collections::HashSet<&str> = changed
        .iter()
        .filter(|c| c.old.is_none())
        .filter_map(|c| c.new.as_ref().map(|f| f.path.as_str()))
        .collect();
    let mut roots: std::collections::BTreeSet<String> = head
        .iter()
        .filter(|p| !added.contains(p.as_str()))
        .cloned()
        .collect();
    roots.extend(
        changed
            .iter()
            .filter_map(|c| c.old.as_ref())
            .filter(|f| crate::render::is_rendered_root(&f.path))
            .map(|f| f.path.clone()),
    );
    roots.into_iter().collect()
}

fn oid(repo: &Repo, r: &Revision) -> Result<crate::git::CommitId, SourceError> {
    match &r.commit {
        Some(c) => repo.resolve(c),
        None => repo.resolve(&r.rev),
    }
}

/// Every set under `dir` at `rev` (for a plan against the cluster, which compares all of them).
///
/// # Errors
/// When the commit, path or a blob cannot be read; manifest errors are in the result.
pub fn manifests_at(
    repo: &Repo,
    rev: &Revision,
    dir: &str,
    opts: &LoadOptions,
) -> Result<crate::manifest::Manifests, SourceError> {
    crate::source::load_at(repo, oid(repo, rev)?, dir, opts)
}

/// Resolves a revision as the user named it into a [`Revision`] with its commit.
///
/// # Errors
/// When the revision does not exist.
pub fn revision(repo: &Repo, rev: &str) -> Result<Revision, SourceError> {
    let oid = repo.resolve(rev)?;
    Ok(Revision {
        rev: rev.to_string(),
        commit: Some(oid.to_string()),
    })
}

/// The default base of a review: the merge base of `head` and `origin/main` (or `origin/master`).
///
/// # Errors
/// When neither exists.
pub fn default_base(repo: &Repo, head: &Revision) -> Result<Revision, SourceError> {
    let head_oid = oid(repo, head)?;
    let mut last = None;
    for upstream in ["origin/main", "origin/master"] {
        match repo.resolve(upstream) {
            Ok(up) => {
                let mb = repo.merge_base(head_oid, up)?;
                return Ok(Revision {
                    rev: format!("merge-base({upstream})"),
                    commit: Some(mb.to_string()),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(SourceError::NoSuchPath {
        path: "origin/main".to_string(),
        commit: head.rev.clone(),
    }))
}
