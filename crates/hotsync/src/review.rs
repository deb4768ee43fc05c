//! The review path: load two revisions of a repository and plan the change between them.
//!
//! Only files that differ between the two commits are read and parsed: sets are matched by namespace
//! and name across files, so a set moved from one file to another is no change, and the cost of a plan
//! follows the size of the change rather than the size of the repository.

use crate::manifest::LoadOptions;
use crate::plan::{Plan, Revision};
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
    let old_files: Vec<_> = changed.iter().filter_map(|c| c.old.clone()).collect();
    let new_files: Vec<_> = changed.iter().filter_map(|c| c.new.clone()).collect();
    let mut old = crate::source::load_files(repo, &old_files, opts)?;
    old.finish();
    let mut new = crate::source::load_files(repo, &new_files, opts)?;
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
