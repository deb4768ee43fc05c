//! A repository: open or clone it (a cached bare clone of a remote), fetch, resolve revisions, and list
//! and read manifest files at a commit straight from the object database, without a work tree.
//!
//! Its calls block: async code calls them from `tokio::task::spawn_blocking`, never on the runtime
//! itself.

use super::id::{BlobId, CommitId};
use crate::manifest;
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What can go wrong on the Git side. Each variant names the repository, revision or path.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open repository {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot clone {url} into {path}")]
    Clone {
        url: String,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot fetch from {url}")]
    Fetch {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("revision {rev:?} not found in {repo}")]
    Revision {
        rev: String,
        repo: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "revision {rev:?} is not on any branch of {repo}: force-pushed away, deleted, or never pushed{}",
        shallow_hint(*.depth)
    )]
    RevisionGone {
        rev: String,
        repo: String,
        /// The fetch depth, when the cache is shallow.
        depth: Option<i32>,
    },
    #[error("path {path:?} not found at commit {commit}")]
    NoSuchPath { path: String, commit: String },
    #[error("cannot read {what} in {repo}")]
    Read {
        what: String,
        repo: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read {path} in the work tree")]
    WorkTree {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create cache directory {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::Open { .. } | SourceError::Cache { .. } => "repo_open",
            SourceError::Clone { .. } | SourceError::Fetch { .. } => "repo_fetch",
            SourceError::Revision { .. }
            | SourceError::RevisionGone { .. }
            | SourceError::NoSuchPath { .. } => "repo_revision",
            SourceError::Read { .. } | SourceError::WorkTree { .. } => "repo_read",
        }
    }
}

fn shallow_hint(depth: Option<i32>) -> String {
    match depth {
        Some(d) => {
            format!(" (the cache holds only the last {d} commit(s) of each branch: --fetch-depth)")
        }
        None => String::new(),
    }
}

/// A commit and its subject.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub sha: String,
    pub subject: String,
}

/// A manifest file in a tree: path (relative to the repository root) and blob id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub blob: BlobId,
    /// True for symlinks, which hotsync never follows.
    pub symlink: bool,
}

/// What a path of a commit is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathEntry {
    File(TreeFile),
    Dir,
}

/// A manifest file that differs between two commits; `None` where the file is absent on that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedFile {
    pub old: Option<TreeFile>,
    pub new: Option<TreeFile>,
}

/// One Git repository, local or a cached clone of a remote.
pub struct Repo {
    repo: Repository,
    /// What the user named: a path or a URL.
    name: String,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("name", &self.name).finish()
    }
}

/// Does this look like a remote URL rather than a local path?
pub fn is_remote(spec: &str) -> bool {
    spec.contains("://") || (spec.contains('@') && spec.contains(':') && !Path::new(spec).exists())
}

impl Repo {
    /// Opens a local repository (a work tree or a bare one), searching upwards from `path`.
    ///
    /// # Errors
    /// [`SourceError::Open`] when `path` is not inside a repository.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        super::configure();
        let repo = Repository::discover(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Repo {
            repo,
            name: path.display().to_string(),
        })
    }

    /// Opens `spec` when it is a local path, or clones/fetches it into `cache_dir` when it is a URL.
    /// A cache clone found corrupt is deleted and cloned again, once (see [`Repo::with_cache`]).
    ///
    /// # Errors
    /// When the repository cannot be opened, cloned or fetched.
    pub fn open_or_clone(
        spec: &str,
        cache_dir: &Path,
        fetch: &FetchOptions,
    ) -> Result<Self, SourceError> {
        if !is_remote(spec) {
            return Self::open(Path::new(spec));
        }
        let (repo, ()) = Self::with_cache(spec, cache_dir, fetch, |repo| {
            repo.fetch(fetch)?;
            repo.verify_branch_tips()
        })?;
        Ok(repo)
    }

    /// Runs `read` on the cache clone of the remote `spec` (it fetches what it needs). When `read`
    /// fails because the cache is corrupt (the remote answers, but the cache cannot fetch from it or
    /// cannot read what it fetched), the cache is deleted, cloned again and `read` runs once more.
    /// Errors that a new clone cannot mend (an unreachable remote, a missing branch, path or
    /// revision) are returned as they are.
    ///
    /// # Errors
    /// `read`'s error, or the error of the second attempt.
    pub fn with_cache<T>(
        spec: &str,
        cache_dir: &Path,
        fetch: &FetchOptions,
        mut read: impl FnMut(&Repo) -> Result<T, SourceError>,
    ) -> Result<(Repo, T), SourceError> {
        let repo = Self::open_bare_cache(spec, cache_dir)?;
        let error = match read(&repo) {
            Ok(v) => return Ok((repo, v)),
            Err(e) => e,
        };
        if !repo.is_corrupt(&error, fetch) {
            return Err(error);
        }
        let dir = repo.path().to_path_buf();
        drop(repo);
        tracing::warn!(
            repo = %redact(spec),
            cache = %dir.display(),
            error = %crate::error_chain(&error),
            "the cache clone is corrupt: deleting it and cloning the repository again"
        );
        std::fs::remove_dir_all(&dir).map_err(|source| SourceError::Cache {
            path: dir.clone(),
            source,
        })?;
        let repo = Self::open_bare_cache(spec, cache_dir)?;
        let v = read(&repo)?;
        tracing::info!(repo = %redact(spec), "the cache clone was cloned again and reads");
        Ok((repo, v))
    }

    /// Whether `error`, returned by a read of this cache clone, says that the cache is corrupt rather
    /// than the remote unreachable or the input wrong.
    fn is_corrupt(&self, error: &SourceError, fetch: &FetchOptions) -> bool {
        match error {
            // Objects the cache holds (a ref's target, a tree, a blob) cannot be read.
            SourceError::Read { .. } => true,
            // The remote answers a ref negotiation, yet fetching from it fails: the cache is at fault.
            // A failure of the network itself is not asked about again (a host that drops packets
            // would make the question as slow as the fetch).
            // A lock file left by a process killed during a fetch: every later fetch would fail on it.
            SourceError::Fetch { source, .. } | SourceError::Clone { source, .. }
                if source.code() == git2::ErrorCode::Locked =>
            {
                true
            }
            SourceError::Fetch { source, .. } | SourceError::Clone { source, .. } => {
                !matches!(
                    source.class(),
                    git2::ErrorClass::Net
                        | git2::ErrorClass::Os
                        | git2::ErrorClass::Ssl
                        | git2::ErrorClass::Ssh
                        | git2::ErrorClass::Http
                        | git2::ErrorClass::Callback
                ) && self.remote_heads(fetch).is_ok()
            }
            _ => false,
        }
    }

    /// The directory of the cache clone of `spec` under `cache_dir`.
    pub fn cache_path(spec: &str, cache_dir: &Path) -> PathBuf {
        let digest = Sha256::digest(spec.as_bytes());
        cache_dir.join(format!("repo-{}", &hex::encode(digest)[..16]))
    }

    /// Opens (or creates, empty) the cache clone of a remote without fetching: for ref negotiations
    /// and for reading objects fetched before. A cache that cannot be opened, or whose HEAD, config
    /// or `origin` remote is unreadable, is rebuilt (empty) rather than trusted.
    ///
    /// # Errors
    /// When the cache directory cannot be created.
    pub fn open_bare_cache(spec: &str, cache_dir: &Path) -> Result<Self, SourceError> {
        super::configure();
        let dir = Self::cache_path(spec, cache_dir);
        let opened = Repository::open_bare(&dir).and_then(|r| {
            check_cache(&r, spec)?;
            Ok(r)
        });
        let repo = match opened {
            Ok(r) => r,
            Err(e) => {
                if dir.exists() {
                    tracing::warn!(
                        repo = %redact(spec),
                        cache = %dir.display(),
                        error = %e,
                        "the cache clone cannot be opened: deleting it and cloning the repository again"
                    );
                    std::fs::remove_dir_all(&dir).map_err(|source| SourceError::Cache {
                        path: dir.clone(),
                        source,
                    })?;
                }
                std::fs::create_dir_all(&dir).map_err(|source| SourceError::Cache {
                    path: dir.clone(),
                    source,
                })?;
                let clone_err = |source| SourceError::Clone {
                    url: redact(spec),
                    path: dir.clone(),
                    source,
                };
                let r = Repository::init_bare(&dir).map_err(clone_err)?;
                r.remote_with_fetch("origin", spec, "+refs/heads/*:refs/remotes/origin/*")
                    .map_err(clone_err)?;
                r
            }
        };
        Ok(Repo {
            repo,
            name: redact(spec),
        })
    }

    /// The git directory (for a cache clone: the cache's directory).
    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// True when the repository holds only part of its history (a shallow fetch).
    pub fn is_shallow(&self) -> bool {
        self.repo.is_shallow()
    }

    /// The repository as the user named it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches every branch of `origin` into `refs/remotes/origin/*`, pruning branches the remote
    /// deleted. With a depth, only that many commits of each branch are fetched (a shallow cache);
    /// without one, a shallow cache is deepened to the whole history.
    ///
    /// # Errors
    /// [`SourceError::Fetch`] with the remote's URL.
    pub fn fetch(&self, opts: &FetchOptions) -> Result<(), SourceError> {
        self.fetch_depth(opts, opts.depth)
    }

    fn fetch_depth(&self, opts: &FetchOptions, depth: Option<i32>) -> Result<(), SourceError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| fetch_error(&self.name, &e))?;
        let raw_url = remote.url().unwrap_or_default().to_string();
        let url = redact(&raw_url);
        let remote_url = super::auth::RemoteUrl::parse(&raw_url);
        let session = super::auth::Session::default();
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(opts.callbacks(&remote_url, &session));
        fo.download_tags(git2::AutotagOption::None);
        fo.prune(git2::FetchPrune::On);
        match depth.filter(|d| *d > 0) {
            Some(d) => {
                fo.depth(d);
            }
            // libgit2's GIT_FETCH_DEPTH_UNSHALLOW: the whole history of a shallow cache.
            None if self.repo.is_shallow() => {
                fo.depth(i32::MAX);
            }
            None => {}
        }
        remote
            .fetch(
                &["+refs/heads/*:refs/remotes/origin/*"],
                Some(&mut fo),
                None,
            )
            .map_err(|e| {
                if session.auth_failed() || session.host_key.borrow().is_some() {
                    // The remote refused our credentials or its host key was refused: say so as a
                    // callback error, which is never taken for a corrupt cache (asking the remote again
                    // would only offer the rejected credential a second time).
                    let e = git2::Error::new(
                        git2::ErrorCode::Auth,
                        git2::ErrorClass::Callback,
                        e.message(),
                    );
                    return fetch_error(&url, &e);
                }
                fetch_error(&url, &e)
            })
    }

    /// Fetches `depth` commits of each branch, to see further back in a shallow cache (a cache with
    /// the whole history has it all already: nothing is fetched).
    ///
    /// # Errors
    /// [`SourceError::Fetch`] with the remote's URL.
    pub fn fetch_more(&self, opts: &FetchOptions, depth: i32) -> Result<(), SourceError> {
        if !self.repo.is_shallow() {
            return Ok(());
        }
        self.fetch_depth(opts, Some(depth))
    }

    /// Checks that the tip of every fetched branch can be read (its commit and its tree): a cache whose
    /// objects were lost or damaged fails here rather than half-way through a sync.
    ///
    /// # Errors
    /// [`SourceError::Read`] naming the branch.
    pub fn verify_branch_tips(&self) -> Result<(), SourceError> {
        for (name, oid) in self.remote_branches()? {
            self.repo
                .find_commit(oid)
                .and_then(|c| c.tree().map(|_| ()))
                .map_err(|source| self.read_err(format!("{name} ({oid})"), source))?;
        }
        Ok(())
    }

    /// The remote-tracking branches of a cache clone (`refs/remotes/origin/*`) and their commits.
    fn remote_branches(&self) -> Result<Vec<(String, Oid)>, SourceError> {
        let refs = self
            .repo
            .references_glob("refs/remotes/origin/*")
            .map_err(|source| self.read_err("refs/remotes/origin/*".into(), source))?;
        let mut out = Vec::new();
        for r in refs {
            let r = r.map_err(|source| self.read_err("refs/remotes/origin/*".into(), source))?;
            if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
                out.push((name.to_string(), oid));
            }
        }
        Ok(out)
    }

    /// The commit of `refs/remotes/origin/<branch>` in a cache clone, as last fetched.
    pub fn tracking_tip(&self, branch: &str) -> Option<CommitId> {
        self.repo
            .refname_to_id(&format!("refs/remotes/origin/{branch}"))
            .ok()
            .map(CommitId::from_git)
    }

    /// True when the commit is in the object database.
    pub fn has_commit(&self, oid: CommitId) -> bool {
        self.has_git(oid.git())
    }

    fn has_git(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }

    /// Resolves any revision (branch, tag, sha, `origin/main`, `HEAD~1`) to a commit. A branch name that
    /// exists only as `origin/<name>` (a cached clone) resolves to that.
    ///
    /// # Errors
    /// [`SourceError::Revision`] naming the revision.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, SourceError> {
        let attempt = |r: &str| {
            self.repo
                .revparse_single(r)
                .and_then(|o| o.peel_to_commit())
                .map(|c| CommitId::from_git(c.id()))
        };
        attempt(rev)
            .or_else(|e| attempt(&format!("origin/{rev}")).map_err(|_| e))
            .map_err(|source| {
                // A branch that exists but whose commit cannot be read: the objects are lost, which a
                // new clone mends; a name that does not exist is the user's to fix.
                let names = [
                    rev.to_string(),
                    format!("refs/heads/{rev}"),
                    format!("refs/remotes/{rev}"),
                    format!("refs/remotes/origin/{rev}"),
                ];
                match names.iter().find_map(|n| self.repo.refname_to_id(n).ok()) {
                    Some(oid) if !self.has_git(oid) => {
                        self.read_err(format!("{rev} ({oid})"), source)
                    }
                    _ => SourceError::Revision {
                        rev: rev.to_string(),
                        repo: self.name.clone(),
                        source,
                    },
                }
            })
    }

    /// Resolves a revision the user pinned (a sha, a tag, a branch) in a cache clone, and checks that
    /// the remote still has it: that a branch of the remote contains it. A commit force-pushed away
    /// lingers in the cache, but is no longer the remote's.
    ///
    /// # Errors
    /// [`SourceError::RevisionGone`] naming the revision and the repository.
    pub fn resolve_on_remote(
        &self,
        rev: &str,
        depth: Option<i32>,
    ) -> Result<CommitId, SourceError> {
        let gone = || SourceError::RevisionGone {
            rev: rev.to_string(),
            repo: self.name.clone(),
            depth: depth.filter(|_| self.is_shallow()),
        };
        let oid = match self.resolve(rev) {
            Ok(oid) => oid,
            Err(SourceError::Revision { .. }) => return Err(gone()),
            Err(e) => return Err(e),
        };
        let mut unknown = false;
        for (_, tip) in self.remote_branches()? {
            match self.ancestry(CommitId::from_git(tip), oid) {
                Ancestry::Descends => return Ok(oid),
                Ancestry::Unknown => unknown = true,
                Ancestry::Rewritten => {}
            }
        }
        if unknown {
            // Beyond a shallow cache's boundary: the remote may well have it; it is in the cache.
            tracing::debug!(rev, repo = %self.name, "cannot tell whether a branch of the remote has this revision (shallow cache)");
            return Ok(oid);
        }
        Err(gone())
    }

    /// The merge base of two commits.
    ///
    /// # Errors
    /// When the commits share no history.
    pub fn merge_base(&self, a: CommitId, b: CommitId) -> Result<CommitId, SourceError> {
        self.repo
            .merge_base(a.git(), b.git())
            .map(CommitId::from_git)
            .map_err(|source| SourceError::Revision {
                rev: format!("merge-base {a} {b}"),
                repo: self.name.clone(),
                source,
            })
    }

    /// The sha and subject of a commit.
    ///
    /// # Errors
    /// When the commit cannot be read.
    pub fn commit_info(&self, oid: CommitId) -> Result<CommitInfo, SourceError> {
        let c = self
            .repo
            .find_commit(oid.git())
            .map_err(|source| self.read_err(oid.to_string(), source))?;
        Ok(CommitInfo {
            sha: oid.to_string(),
            subject: c
                .summary_bytes()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default(),
        })
    }

    fn read_err(&self, what: String, source: git2::Error) -> SourceError {
        SourceError::Read {
            what,
            repo: self.name.clone(),
            source,
        }
    }

    /// The tree of `dir` (relative to the root, "" or "." for the root) at `commit`.
    fn subtree(&self, commit: CommitId, dir: &str) -> Result<git2::Tree<'_>, SourceError> {
        let c = self
            .repo
            .find_commit(commit.git())
            .map_err(|source| self.read_err(commit.to_string(), source))?;
        let tree = c
            .tree()
            .map_err(|source| self.read_err(commit.to_string(), source))?;
        let dir = normalise_dir(dir);
        if dir.is_empty() {
            return Ok(tree);
        }
        let entry = tree
            .get_path(Path::new(&dir))
            .map_err(|_| SourceError::NoSuchPath {
                path: dir.clone(),
                commit: commit.to_string(),
            })?;
        entry
            .to_object(&self.repo)
            .map_err(|source| self.read_err(format!("{dir} at {commit}"), source))?
            .peel_to_tree()
            .map_err(|_| SourceError::NoSuchPath {
                path: dir,
                commit: commit.to_string(),
            })
    }

    /// Every `*.yaml`/`*.yml` file under `dir` at `commit`, sorted by path.
    ///
    /// # Errors
    /// When the commit or the path cannot be read.
    pub fn manifest_files(
        &self,
        commit: CommitId,
        dir: &str,
    ) -> Result<Vec<TreeFile>, SourceError> {
        let tree = self.subtree(commit, dir)?;
        let prefix = normalise_dir(dir);
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            let name = entry.name().unwrap_or_default();
            if entry.kind() == Some(git2::ObjectType::Blob) && manifest::is_manifest_path(name) {
                let path = join(&prefix, &format!("{root}{name}"));
                files.push(TreeFile {
                    path,
                    blob: BlobId::from_git(entry.id()),
                    symlink: entry.filemode() == 0o120000,
                });
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|source| self.read_err(format!("tree of {commit}"), source))?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Every file (blob or symlink) under `dir` at `commit`, sorted by path.
    ///
    /// # Errors
    /// When the commit or the path cannot be read.
    pub fn files_under(&self, commit: CommitId, dir: &str) -> Result<Vec<TreeFile>, SourceError> {
        let tree = self.subtree(commit, dir)?;
        let prefix = normalise_dir(dir);
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                let name = entry.name().unwrap_or_default();
                files.push(TreeFile {
                    path: join(&prefix, &format!("{root}{name}")),
                    blob: BlobId::from_git(entry.id()),
                    symlink: entry.filemode() == 0o120000,
                });
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|source| self.read_err(format!("tree of {commit}"), source))?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// The paths of the files under `dir` at `commit` whose name is one of `names`, sorted; nothing
    /// else of the walk is kept.
    ///
    /// # Errors
    /// When the commit or the path cannot be read.
    pub fn files_named(
        &self,
        commit: CommitId,
        dir: &str,
        names: &[&str],
    ) -> Result<Vec<String>, SourceError> {
        let tree = self.subtree(commit, dir)?;
        let prefix = normalise_dir(dir);
        let mut out = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob)
                && entry.name().is_ok_and(|n| names.contains(&n))
            {
                out.push(join(
                    &prefix,
                    &format!("{root}{}", entry.name().unwrap_or_default()),
                ));
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|source| self.read_err(format!("tree of {commit}"), source))?;
        out.sort();
        Ok(out)
    }

    /// What `path` is at `commit`: a file, a directory, or nothing.
    ///
    /// # Errors
    /// When the commit cannot be read.
    pub fn entry(&self, commit: CommitId, path: &str) -> Result<Option<PathEntry>, SourceError> {
        let tree = self.subtree(commit, "")?;
        let path = normalise_dir(path);
        if path.is_empty() {
            return Ok(Some(PathEntry::Dir));
        }
        let Ok(entry) = tree.get_path(Path::new(&path)) else {
            return Ok(None);
        };
        Ok(match entry.kind() {
            Some(git2::ObjectType::Tree) => Some(PathEntry::Dir),
            Some(git2::ObjectType::Blob) => Some(PathEntry::File(TreeFile {
                path,
                blob: BlobId::from_git(entry.id()),
                symlink: entry.filemode() == 0o120000,
            })),
            _ => None,
        })
    }

    /// Every path of the repository (any file, anywhere) that differs between two commits: what a
    /// renderer's inputs are checked against. Unchanged subtrees are skipped by their tree ids.
    ///
    /// # Errors
    /// When either commit cannot be read.
    pub fn changed_paths(
        &self,
        base: CommitId,
        head: CommitId,
    ) -> Result<std::collections::BTreeSet<String>, SourceError> {
        let old = self.subtree(base, "")?;
        let new = self.subtree(head, "")?;
        let mut opts = git2::DiffOptions::new();
        opts.skip_binary_check(true);
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))
            .map_err(|source| self.read_err(format!("diff {base}..{head}"), source))?;
        let mut out = std::collections::BTreeSet::new();
        for delta in diff.deltas() {
            for f in [delta.old_file(), delta.new_file()] {
                if let Some(p) = f.path() {
                    out.insert(p.to_string_lossy().to_string());
                }
            }
        }
        Ok(out)
    }

    /// The files (blobs and symlinks, any name) under `dir` that differ between two commits: manifests,
    /// kustomizations, charts and whatever else. Unchanged subtrees are skipped by their tree ids, so
    /// the cost follows the change, not the size of the repository.
    ///
    /// # Errors
    /// When either commit or the path cannot be read.
    pub fn changed_files(
        &self,
        base: CommitId,
        head: CommitId,
        dir: &str,
    ) -> Result<Vec<ChangedFile>, SourceError> {
        let old = self.subtree(base, dir).ok();
        let new = self.subtree(head, dir)?;
        let prefix = normalise_dir(dir);
        let mut opts = git2::DiffOptions::new();
        opts.skip_binary_check(true);
        let diff = self
            .repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), Some(&mut opts))
            .map_err(|source| self.read_err(format!("diff {base}..{head}"), source))?;
        let mut out = Vec::new();
        for delta in diff.deltas() {
            let side = |f: git2::DiffFile<'_>| -> Option<TreeFile> {
                // A submodule is no file of this tree.
                if f.id().is_zero() || f.mode() == git2::FileMode::Commit {
                    return None;
                }
                let path = f.path()?.to_string_lossy().to_string();
                Some(TreeFile {
                    path: join(&prefix, &path),
                    blob: BlobId::from_git(f.id()),
                    symlink: f.mode() == git2::FileMode::Link,
                })
            };
            let (o, n) = (side(delta.old_file()), side(delta.new_file()));
            if o.is_some() || n.is_some() {
                out.push(ChangedFile { old: o, new: n });
            }
        }
        Ok(out)
    }

    /// Reads a blob.
    ///
    /// # Errors
    /// When the blob is missing.
    pub fn read_blob(&self, oid: BlobId) -> Result<Vec<u8>, SourceError> {
        self.repo
            .find_blob(oid.git())
            .map(|b| b.content().to_vec())
            .map_err(|source| self.read_err(format!("blob {oid}"), source))
    }

    /// Reads blobs, in their order, on every core: a repository handle is no thread's to share, so each
    /// other thread opens the repository for itself (a few hundred microseconds) and reads its share.
    /// Few blobs are read here alone.
    ///
    /// # Errors
    /// When a blob is missing, or the repository cannot be opened again.
    pub fn read_blobs(&self, ids: &[BlobId]) -> Result<Vec<Vec<u8>>, SourceError> {
        const MIN_PER_THREAD: usize = 32;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
            .min(ids.len().div_ceil(MIN_PER_THREAD))
            .max(1);
        if threads == 1 {
            return ids.iter().map(|id| self.read_blob(*id)).collect();
        }
        let per = ids.len().div_ceil(threads);
        let mut chunks = ids.chunks(per);
        let first = chunks.next().unwrap_or_default();
        let (path, name) = (self.repo.path().to_path_buf(), self.name.as_str());
        std::thread::scope(|s| {
            let others: Vec<_> = chunks
                .map(|chunk| {
                    let path = &path;
                    s.spawn(move || -> Result<Vec<Vec<u8>>, SourceError> {
                        let own = Repo {
                            repo: Repository::open(path).map_err(|source| SourceError::Open {
                                path: path.clone(),
                                source,
                            })?,
                            name: name.to_string(),
                        };
                        chunk.iter().map(|id| own.read_blob(*id)).collect()
                    })
                })
                .collect();
            let mut out: Vec<Vec<u8>> = first
                .iter()
                .map(|id| self.read_blob(*id))
                .collect::<Result<_, _>>()?;
            for h in others {
                out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
            }
            Ok(out)
        })
    }

    /// The tip of `branch` on `origin`, by one ref negotiation: no objects are fetched. For a local
    /// repository (no `origin` to ask), the branch is resolved locally.
    ///
    /// # Errors
    /// When the remote cannot be reached.
    pub fn remote_tip(
        &self,
        branch: &str,
        opts: &FetchOptions,
    ) -> Result<Option<CommitId>, SourceError> {
        if self.repo.find_remote("origin").is_err() {
            return Ok(self.resolve(branch).ok());
        }
        let want = format!("refs/heads/{branch}");
        Ok(self
            .remote_heads(opts)?
            .into_iter()
            .find(|(name, _)| *name == want)
            .map(|(_, oid)| CommitId::from_git(oid)))
    }

    /// The refs `origin` advertises, by one ref negotiation.
    fn remote_heads(&self, opts: &FetchOptions) -> Result<Vec<(String, Oid)>, SourceError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| fetch_error(&self.name, &e))?;
        let raw_url = remote.url().unwrap_or_default().to_string();
        let url = redact(&raw_url);
        let err = |e: git2::Error| fetch_error(&url, &e);
        let remote_url = super::auth::RemoteUrl::parse(&raw_url);
        let session = super::auth::Session::default();
        let conn = remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(opts.callbacks(&remote_url, &session)),
                None,
            )
            .map_err(err)?;
        let heads = conn
            .list()
            .map_err(err)?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        Ok(heads)
    }

    /// The parents of a commit as the commit itself names them. Unlike libgit2's view of a shallow
    /// clone, where a commit on the boundary has none, these are there even when the parents' objects
    /// were never fetched. Empty when the commit cannot be read.
    pub fn parents(&self, oid: CommitId) -> Vec<CommitId> {
        let Ok(c) = self.repo.find_commit(oid.git()) else {
            return Vec::new();
        };
        let header = String::from_utf8_lossy(c.raw_header_bytes()).to_string();
        header
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix("parent "))
            .filter_map(|p| Oid::from_str(p.trim()).ok().map(CommitId::from_git))
            .collect()
    }

    /// The first parent of a commit, also across a shallow clone's boundary (see [`Repo::parents`]).
    pub fn first_parent(&self, oid: CommitId) -> Option<CommitId> {
        self.parents(oid).first().copied()
    }

    /// The newest commit a person made at `tip` or below it: hotsync's own status commits (trailer
    /// `Hotsync-Source:`, on a tracked branch that also takes status) are stepped over by their first
    /// parents. With `fetch`, a parent beyond a shallow cache's boundary is fetched; a parent that
    /// cannot be had ends the walk at the last commit that can be read.
    ///
    /// # Errors
    /// When fetching more history fails.
    pub fn skip_own_commits(
        &self,
        mut tip: CommitId,
        fetch: Option<&FetchOptions>,
    ) -> Result<CommitId, SourceError> {
        let mut depth = fetch.and_then(|f| f.depth).unwrap_or(1).max(1);
        for _ in 0..100 {
            let own = self
                .commit_message(tip)
                .is_ok_and(|m| super::trailers::is_hotsync_commit(&m));
            let parent = match self.first_parent(tip) {
                Some(parent) if own => parent,
                _ => break,
            };
            if !self.has_commit(parent) {
                let Some(f) = fetch else { break };
                // Beyond a shallow cache's boundary: fetch a little more history.
                depth = depth.saturating_mul(2).max(depth.saturating_add(8));
                self.fetch_more(f, depth)?;
                if !self.has_commit(parent) {
                    break;
                }
            }
            tip = parent;
        }
        Ok(tip)
    }

    /// Whether `new` descends from `old` (or is it), that is whether a branch that moved from `old`
    /// to `new` moved forward, or was rewritten (force-pushed). In a shallow cache the answer may be
    /// unknown: history beyond the boundary is not there to look at.
    pub fn ancestry(&self, new: CommitId, old: CommitId) -> Ancestry {
        if new == old {
            return Ancestry::Descends;
        }
        if !self.repo.is_shallow() {
            if !self.has_commit(old) || !self.has_commit(new) {
                // In a full clone that fetched every branch, a commit that is not there is on none.
                return if self.has_commit(new) {
                    Ancestry::Rewritten
                } else {
                    Ancestry::Unknown
                };
            }
            return match self.repo.graph_descendant_of(new.git(), old.git()) {
                Ok(true) => Ancestry::Descends,
                Ok(false) => Ancestry::Rewritten,
                Err(_) => Ancestry::Unknown,
            };
        }
        // Walk by the parents each commit names, as far as the cache has the commits.
        let mut seen = std::collections::HashSet::new();
        let mut queue = std::collections::VecDeque::from([new]);
        let mut cut = false;
        while let Some(oid) = queue.pop_front() {
            if oid == old {
                return Ancestry::Descends;
            }
            if !seen.insert(oid) {
                continue;
            }
            if seen.len() > 100_000 {
                return Ancestry::Unknown;
            }
            if !self.has_commit(oid) {
                cut = true;
                continue;
            }
            queue.extend(self.parents(oid));
        }
        if cut {
            Ancestry::Unknown
        } else {
            Ancestry::Rewritten
        }
    }

    /// The full message of a commit.
    ///
    /// # Errors
    /// When the commit cannot be read.
    pub fn commit_message(&self, oid: CommitId) -> Result<String, SourceError> {
        let c = self
            .repo
            .find_commit(oid.git())
            .map_err(|source| self.read_err(oid.to_string(), source))?;
        Ok(String::from_utf8_lossy(c.message_bytes()).to_string())
    }
}

/// Whether a branch moved forward: see [`Repo::ancestry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ancestry {
    /// The new commit descends from the old one (or is it): the branch moved forward.
    Descends,
    /// It does not: the branch was rewritten (force-pushed), and the old commit is not in its history.
    Rewritten,
    /// The cache does not hold enough history to tell (a shallow fetch).
    Unknown,
}

/// A URL without its user-info (`https://TOKEN@host/...` is common), for errors and logs.
fn redact(url: &str) -> String {
    super::redact::redact_url_userinfo(url)
}

/// Checks what opening a bare repository does not: that HEAD and the `origin` remote can be read.
fn check_cache(repo: &Repository, spec: &str) -> Result<(), git2::Error> {
    if let Err(e) = repo.head() {
        if !matches!(
            e.code(),
            git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
        ) {
            return Err(e);
        }
    }
    let remote = repo.find_remote("origin")?;
    if remote.url().ok() != Some(spec) {
        return Err(git2::Error::from_str(
            "the cache's origin is not the repository it caches",
        ));
    }
    Ok(())
}

fn normalise_dir(dir: &str) -> String {
    let d = dir.trim_matches('/');
    if d == "." {
        String::new()
    } else {
        d.trim_start_matches("./").to_string()
    }
}

fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

/// Credentials and depth for fetches.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Shallow fetch depth; `None` for full history.
    pub depth: Option<i32>,
    /// Credentials and the SSH host-key policy: the same as the status writer's, so that a
    /// passphrase-protected key, the ssh-agent and known_hosts work for reading as for writing.
    pub auth: super::auth::GitAuth,
}

impl FetchOptions {
    /// libgit2 callbacks for one connection to `url`; see [`super::auth::callbacks`].
    fn callbacks<'a>(
        &'a self,
        url: &'a super::auth::RemoteUrl,
        session: &'a super::auth::Session,
    ) -> git2::RemoteCallbacks<'a> {
        super::auth::callbacks(&self.auth, url, session)
    }
}

/// A fetch error without the secrets it may carry: the user-info of URLs (a token in the remote's URL).
fn fetch_error(url: &str, e: &git2::Error) -> SourceError {
    let redact = super::redact::redact_url_userinfo;
    SourceError::Fetch {
        url: redact(url),
        source: git2::Error::new(e.code(), e.class(), redact(e.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_read_on_every_core_come_back_in_the_order_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = Repository::init(dir.path()).expect("init");
        let texts: Vec<String> = (0..200).map(|i| format!("kind: Thing{i}\n")).collect();
        let mut ids: Vec<BlobId> = texts
            .iter()
            .map(|t| BlobId::from_git(git.blob(t.as_bytes()).expect("blob")))
            .collect();
        ids.reverse();
        let repo = Repo::open(dir.path()).expect("open");
        let read = repo.read_blobs(&ids).expect("read");
        let expected: Vec<Vec<u8>> = texts.iter().rev().map(|t| t.clone().into_bytes()).collect();
        assert_eq!(read, expected);
        assert!(repo.read_blobs(&[]).expect("none").is_empty());
    }

    #[test]
    fn a_missing_blob_among_many_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = Repository::init(dir.path()).expect("init");
        let mut ids: Vec<BlobId> = (0..100)
            .map(|i| BlobId::from_git(git.blob(format!("{i}").as_bytes()).expect("blob")))
            .collect();
        let missing = BlobId::from_git(git2::Oid::from_str(&"ab".repeat(20)).expect("oid"));
        ids.push(missing);
        let repo = Repo::open(dir.path()).expect("open");
        let err = repo.read_blobs(&ids).expect_err("missing");
        assert!(err.to_string().contains(&missing.to_string()), "{err}");
    }
}
