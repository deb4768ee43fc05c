//! The Git side: open or clone a repository, resolve revisions, and read manifest files at a commit
//! straight from the object database, without a work tree.
//!
//! All of libgit2 sits behind [`Repo`]. Its calls block: async code calls them from
//! `tokio::task::spawn_blocking`, never on the runtime itself.

use crate::manifest::{self, LoadOptions, Manifests};
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
    #[error("path {path:?} not found at commit {commit}")]
    NoSuchPath { path: String, commit: String },
    #[error("cannot read {what} in {repo}")]
    Read {
        what: String,
        repo: String,
        #[source]
        source: git2::Error,
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
            SourceError::Revision { .. } | SourceError::NoSuchPath { .. } => "repo_revision",
            SourceError::Read { .. } => "repo_read",
        }
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
    pub blob: Oid,
    /// True for symlinks, which hotsync never follows.
    pub symlink: bool,
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
        let this = Self::open_bare_cache(spec, cache_dir)?;
        this.fetch(fetch)?;
        Ok(this)
    }

    /// Opens (or creates, empty) the cache clone of a remote without fetching: for ref negotiations
    /// and for reading objects fetched before.
    ///
    /// # Errors
    /// When the cache directory cannot be created.
    pub fn open_bare_cache(spec: &str, cache_dir: &Path) -> Result<Self, SourceError> {
        let digest = Sha256::digest(spec.as_bytes());
        let dir = cache_dir.join(format!("repo-{}", &hex::encode(digest)[..16]));
        let repo = match Repository::open_bare(&dir) {
            Ok(r) => r,
            Err(_) => {
                if dir.exists() {
                    // A broken cache is rebuilt from the remote, never trusted.
                    let _ = std::fs::remove_dir_all(&dir);
                }
                std::fs::create_dir_all(&dir).map_err(|source| SourceError::Cache {
                    path: dir.clone(),
                    source,
                })?;
                let r = Repository::init_bare(&dir).map_err(|source| SourceError::Clone {
                    url: spec.to_string(),
                    path: dir.clone(),
                    source,
                })?;
                r.remote_with_fetch("origin", spec, "+refs/heads/*:refs/remotes/origin/*")
                    .map_err(|source| SourceError::Clone {
                        url: spec.to_string(),
                        path: dir.clone(),
                        source,
                    })?;
                r
            }
        };
        Ok(Repo {
            repo,
            name: spec.to_string(),
        })
    }

    /// The repository as the user named it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches every branch of `origin` into `refs/remotes/origin/*`.
    ///
    /// # Errors
    /// [`SourceError::Fetch`] with the remote's URL.
    pub fn fetch(&self, opts: &FetchOptions) -> Result<(), SourceError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|source| SourceError::Fetch {
                url: self.name.clone(),
                source,
            })?;
        let url = remote.url().unwrap_or_default().to_string();
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(opts.callbacks());
        fo.download_tags(git2::AutotagOption::None);
        if let Some(depth) = opts.depth {
            fo.depth(depth);
        }
        remote
            .fetch(
                &["+refs/heads/*:refs/remotes/origin/*"],
                Some(&mut fo),
                None,
            )
            .map_err(|source| SourceError::Fetch { url, source })
    }

    /// Resolves any revision (branch, tag, sha, `origin/main`, `HEAD~1`) to a commit. A branch name that
    /// exists only as `origin/<name>` (a cached clone) resolves to that.
    ///
    /// # Errors
    /// [`SourceError::Revision`] naming the revision.
    pub fn resolve(&self, rev: &str) -> Result<Oid, SourceError> {
        let attempt = |r: &str| {
            self.repo
                .revparse_single(r)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
        };
        attempt(rev)
            .or_else(|e| attempt(&format!("origin/{rev}")).map_err(|_| e))
            .map_err(|source| SourceError::Revision {
                rev: rev.to_string(),
                repo: self.name.clone(),
                source,
            })
    }

    /// The merge base of two commits.
    ///
    /// # Errors
    /// When the commits share no history.
    pub fn merge_base(&self, a: Oid, b: Oid) -> Result<Oid, SourceError> {
        self.repo
            .merge_base(a, b)
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
    pub fn commit_info(&self, oid: Oid) -> Result<CommitInfo, SourceError> {
        let c = self
            .repo
            .find_commit(oid)
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
    fn subtree(&self, commit: Oid, dir: &str) -> Result<git2::Tree<'_>, SourceError> {
        let c = self
            .repo
            .find_commit(commit)
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
            .and_then(|o| o.peel_to_tree())
            .map_err(|_| SourceError::NoSuchPath {
                path: dir,
                commit: commit.to_string(),
            })
    }

    /// Every `*.yaml`/`*.yml` file under `dir` at `commit`, sorted by path.
    ///
    /// # Errors
    /// When the commit or the path cannot be read.
    pub fn manifest_files(&self, commit: Oid, dir: &str) -> Result<Vec<TreeFile>, SourceError> {
        let tree = self.subtree(commit, dir)?;
        let prefix = normalise_dir(dir);
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            let name = entry.name().unwrap_or_default();
            if entry.kind() == Some(git2::ObjectType::Blob) && manifest::is_manifest_path(name) {
                let path = join(&prefix, &format!("{root}{name}"));
                files.push(TreeFile {
                    path,
                    blob: entry.id(),
                    symlink: entry.filemode() == 0o120000,
                });
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|source| self.read_err(format!("tree of {commit}"), source))?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Manifest files under `dir` that differ between two commits. Unchanged subtrees are skipped by
    /// their tree ids, so the cost follows the change, not the size of the repository.
    ///
    /// # Errors
    /// When either commit or the path cannot be read.
    pub fn changed_files(
        &self,
        base: Oid,
        head: Oid,
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
                if f.id().is_zero() {
                    return None;
                }
                let path = f.path()?.to_string_lossy().to_string();
                if !manifest::is_manifest_path(&path) {
                    return None;
                }
                Some(TreeFile {
                    path: join(&prefix, &path),
                    blob: f.id(),
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
    pub fn read_blob(&self, oid: Oid) -> Result<Vec<u8>, SourceError> {
        self.repo
            .find_blob(oid)
            .map(|b| b.content().to_vec())
            .map_err(|source| self.read_err(format!("blob {oid}"), source))
    }

    /// Loads and parses manifest files, reporting symlinks instead of following them.
    ///
    /// # Errors
    /// When a blob cannot be read.
    pub fn load_files(
        &self,
        files: &[TreeFile],
        opts: &LoadOptions,
    ) -> Result<Manifests, SourceError> {
        // Reading blobs is cheap; parsing is not: parse on every core, each file on its own.
        let mut blobs = Vec::with_capacity(files.len());
        for f in files {
            blobs.push(if f.symlink {
                None
            } else {
                Some(self.read_blob(f.blob)?)
            });
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let per = files.len().div_ceil(threads).max(16);
        let parsed: Vec<Manifests> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(per)
                .zip(blobs.chunks(per))
                .map(|(fs, bs)| {
                    s.spawn(move || {
                        let mut m = Manifests::default();
                        for (f, b) in fs.iter().zip(bs) {
                            if let Some(bytes) = b {
                                m.extend(manifest::load_file(&f.path, bytes, opts));
                            }
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
        for f in files {
            if f.symlink {
                m.diagnostics.push(manifest::Diagnostic {
                    file: f.path.clone(),
                    document: None,
                    line: None,
                    severity: manifest::Severity::Error,
                    message: "symlink: hotsync reads files only, it never follows links"
                        .to_string(),
                });
            }
        }
        Ok(m)
    }

    /// Loads every manifest under `dir` at `commit`.
    ///
    /// # Errors
    /// When the commit, path or a blob cannot be read.
    pub fn load_at(
        &self,
        commit: Oid,
        dir: &str,
        opts: &LoadOptions,
    ) -> Result<Manifests, SourceError> {
        let files = self.manifest_files(commit, dir)?;
        let mut m = self.load_files(&files, opts)?;
        m.finish();
        Ok(m)
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
    ) -> Result<Option<Oid>, SourceError> {
        let Ok(mut remote) = self.repo.find_remote("origin") else {
            return Ok(self.resolve(branch).ok());
        };
        let url = remote.url().unwrap_or_default().to_string();
        let err = |source| SourceError::Fetch {
            url: url.clone(),
            source,
        };
        let conn = remote
            .connect_auth(git2::Direction::Fetch, Some(opts.callbacks()), None)
            .map_err(err)?;
        let want = format!("refs/heads/{branch}");
        let tip = conn
            .list()
            .map_err(err)?
            .iter()
            .find(|h| h.name() == want)
            .map(|h| h.oid());
        Ok(tip)
    }

    /// The first parent of a commit.
    pub fn first_parent(&self, oid: Oid) -> Option<Oid> {
        self.repo.find_commit(oid).ok()?.parent_id(0).ok()
    }

    /// The full message of a commit.
    ///
    /// # Errors
    /// When the commit cannot be read.
    pub fn commit_message(&self, oid: Oid) -> Result<String, SourceError> {
        let c = self
            .repo
            .find_commit(oid)
            .map_err(|source| self.read_err(oid.to_string(), source))?;
        Ok(String::from_utf8_lossy(c.message_bytes()).to_string())
    }

    /// The underlying libgit2 repository, for the status writer.
    pub fn raw(&self) -> &Repository {
        &self.repo
    }
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
    /// An HTTPS token (sent as the password of user `x-access-token`).
    pub token: Option<String>,
    /// An SSH private key file.
    pub ssh_key: Option<PathBuf>,
}

impl FetchOptions {
    fn callbacks(&self) -> git2::RemoteCallbacks<'_> {
        let mut cb = git2::RemoteCallbacks::new();
        cb.credentials(move |_url, user, allowed| {
            if allowed.contains(git2::CredentialType::SSH_KEY) {
                if let Some(key) = &self.ssh_key {
                    return git2::Cred::ssh_key(user.unwrap_or("git"), None, key, None);
                }
                return git2::Cred::ssh_key_from_agent(user.unwrap_or("git"));
            }
            if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(token) = &self.token {
                    return git2::Cred::userpass_plaintext("x-access-token", token);
                }
            }
            Err(git2::Error::from_str(
                "no credentials configured for this remote",
            ))
        });
        cb
    }
}
