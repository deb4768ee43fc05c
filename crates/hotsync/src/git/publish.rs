//! Publishing files to a branch (the status commit): fetch the branch, write the changed files on its
//! tip in one commit, push without force, and on rejection do it again on the new tip, with exponential
//! backoff.
//!
//! "Rebase" here is re-creating our commit: the writer touches only its own status files, so building a
//! new tree from the new tip plus those files is exactly a rebase of the one commit, and it always
//! applies. The remote's compare-and-swap on the ref (the old id we send) and libgit2's fast-forward check
//! are what make it safe against other writers; nothing is ever forced.

use super::auth::{self, GitAuth, RemoteUrl, Scheme, Session};
use super::known_hosts::HostKeyProblem;
use super::redact::{GitError, Redactor};
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The local ref our pending commit is pushed from.
const PENDING_REF: &str = "refs/hotsync/status-pending";

/// What can go wrong while publishing files to a branch. Each variant names the remote (credentials
/// removed), branch or path; the cause, already stripped of secrets, is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid status configuration: {reason}")]
    Config { reason: String },
    #[error("cannot prepare the status work directory {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the local status repository {path}")]
    LocalRepo {
        path: PathBuf,
        #[source]
        source: GitError,
    },
    #[error("cannot write the status commit for {what}")]
    Commit {
        what: String,
        #[source]
        source: GitError,
    },
    #[error("authentication to {url} failed: check the token or SSH key (not retried)")]
    Auth {
        url: String,
        #[source]
        source: GitError,
    },
    #[error("refused to connect to {url}: {problem}")]
    HostKey {
        url: String,
        problem: Box<HostKeyProblem>,
    },
    #[error("cannot fetch branch {branch} from {url}")]
    Fetch {
        url: String,
        branch: String,
        #[source]
        source: GitError,
    },
    #[error("cannot push branch {branch} to {url}")]
    Push {
        url: String,
        branch: String,
        #[source]
        source: GitError,
    },
    #[error("push of branch {branch} to {url} still rejected after {attempts} attempts (last: {reason})")]
    Rejected {
        url: String,
        branch: String,
        attempts: u32,
        reason: String,
    },
}

impl PublishError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            PublishError::Config { .. } => "status_config",
            PublishError::WorkDir { .. } | PublishError::LocalRepo { .. } => "status_local",
            PublishError::Commit { .. } => "status_commit",
            PublishError::Auth { .. } => "git_auth",
            PublishError::HostKey { .. } => "git_host_key",
            PublishError::Fetch { .. } => "git_fetch",
            PublishError::Push { .. } => "git_push",
            PublishError::Rejected { .. } => "git_push_rejected",
        }
    }

    /// True when trying again later may succeed (network trouble, a busy branch); false for errors that
    /// need someone to change the configuration (credentials, host keys, paths).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublishError::Fetch { .. } | PublishError::Push { .. } | PublishError::Rejected { .. }
        )
    }
}

/// Where and how status is committed.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// The status branch; `"@"` means the tracked branch itself.
    pub branch: String,
    /// The branch hotsync syncs from (used when `branch` is `"@"`).
    pub tracked_branch: String,
    /// Author and committer of status commits.
    pub author_name: String,
    pub author_email: String,
    /// Fetch-commit-push rounds before giving up on a busy branch or a flaky network (at least 1).
    pub max_attempts: u32,
    /// The first wait between rounds; it doubles each round, up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            branch: "hotsync-status".to_string(),
            tracked_branch: "main".to_string(),
            author_name: "hotsync".to_string(),
            author_email: "hotsync@localhost".to_string(),
            max_attempts: 8,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }
}

impl StatusConfig {
    /// The branch status is committed to, `"@"` resolved.
    pub fn effective_branch(&self) -> &str {
        if self.branch == "@" {
            &self.tracked_branch
        } else {
            &self.branch
        }
    }
}

/// Writes status files to the status branch of one remote. One writer per `work_dir`; `write` calls on
/// one writer are serialised. Blocking: call it from `spawn_blocking` in async code.
pub struct Publisher {
    repo: Mutex<Repository>,
    /// The URL or absolute path libgit2 connects to (may carry credentials).
    url: String,
    /// The same, safe to print.
    display_url: String,
    remote: RemoteUrl,
    auth: GitAuth,
    config: StatusConfig,
    redactor: Redactor,
    local_path: PathBuf,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.display_url)
            .field("branch", &self.config.effective_branch())
            .field("auth", &self.auth)
            .finish()
    }
}

/// How one round ended when it did not succeed.
enum RoundError {
    /// Try again: the branch moved, the ref was locked, or the network failed.
    Retry(String, PublishError),
    /// Give up now.
    Fatal(PublishError),
}

impl Publisher {
    /// Prepares a writer for `repo_url_or_path` (a URL or a local repository), keeping its bare cache
    /// repository under `work_dir`. Does not connect: the first `write` does.
    ///
    /// # Errors
    /// [`PublishError::Config`] for an invalid branch, author or attempt count, or a token that would travel
    /// over plain `http://` to a host other than loopback; [`PublishError::WorkDir`] /
    /// [`PublishError::LocalRepo`] when the cache repository cannot be created.
    pub fn new(
        repo_url_or_path: &str,
        work_dir: &Path,
        auth: GitAuth,
        config: StatusConfig,
    ) -> Result<Self, PublishError> {
        let remote = RemoteUrl::parse(repo_url_or_path);
        let redactor = Redactor::new(
            auth.secrets()
                .into_iter()
                .chain(remote.password.clone())
                .chain(match (&remote.scheme, &remote.user) {
                    // `https://TOKEN@host`: the user part is the secret.
                    (Scheme::Http | Scheme::Https, Some(u)) => Some(u.clone()),
                    _ => None,
                }),
        );
        let display_url = redactor.redact(repo_url_or_path);
        let config_err = |reason: String| PublishError::Config { reason };
        let branch = config.effective_branch();
        if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            return Err(config_err(format!("{branch:?} is not a valid branch name")));
        }
        if config.max_attempts == 0 {
            return Err(config_err("max_attempts must be at least 1".to_string()));
        }
        if config.author_name.trim().is_empty() || config.author_email.trim().is_empty() {
            return Err(config_err(
                "the status commit author needs a name and an e-mail".to_string(),
            ));
        }
        if let GitAuth::HttpsToken { token } = &auth {
            if token.is_empty() {
                return Err(config_err("the HTTPS token is empty".to_string()));
            }
            if remote.scheme == Scheme::Http && !remote.is_loopback() {
                return Err(config_err(format!(
                    "refusing to send a token over plain http:// to {}; use https://",
                    remote.host
                )));
            }
        }
        let url = if remote.scheme == Scheme::Local && !repo_url_or_path.contains("://") {
            std::fs::canonicalize(repo_url_or_path)
                .map_err(|source| PublishError::WorkDir {
                    path: PathBuf::from(repo_url_or_path),
                    source,
                })?
                .display()
                .to_string()
        } else {
            repo_url_or_path.to_string()
        };
        let digest = hex::encode(Sha256::digest(url.as_bytes()));
        let local_path = work_dir.join(format!("status-{}", &digest[..16]));
        super::configure();
        let repo = match Repository::open_bare(&local_path) {
            Ok(r) => r,
            Err(_) => {
                if local_path.exists() {
                    // A broken cache is rebuilt from the remote, never trusted.
                    let _ = std::fs::remove_dir_all(&local_path);
                }
                std::fs::create_dir_all(&local_path).map_err(|source| PublishError::WorkDir {
                    path: local_path.clone(),
                    source,
                })?;
                Repository::init_bare(&local_path).map_err(|e| PublishError::LocalRepo {
                    path: local_path.clone(),
                    source: GitError::new(&e, &redactor),
                })?
            }
        };
        Ok(Publisher {
            repo: Mutex::new(repo),
            url,
            display_url,
            remote,
            auth,
            config,
            redactor,
            local_path,
        })
    }

    /// The branch status is written to.
    /// `text` with every secret of this remote removed.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    pub fn branch(&self) -> &str {
        self.config.effective_branch()
    }

    /// The remote, credentials removed.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Writes the files of these sets in one commit on the status branch, when some content differs from
    /// the branch tip (SHA-256 of each file). The message ends with the trailer `Hotsync-Source:
    /// <source_commit>`. Pushes without force; when the push is rejected (the branch moved) or the
    /// network fails, fetches the new tip, re-creates the commit on it and tries again, with exponential
    /// backoff, up to `max_attempts` rounds. Creates the branch, as an orphan, when the remote lacks it.
    ///
    /// Returns the id of the pushed commit, or `None` when the tip already holds this content.
    ///
    /// # Errors
    /// [`PublishError::Auth`] and [`PublishError::HostKey`] at once, without retrying; [`PublishError::Rejected`],
    /// [`PublishError::Fetch`] or [`PublishError::Push`] when every round failed; others for bad input.
    #[tracing::instrument(skip_all, fields(branch = %self.branch(), remote = %self.display_url, files = files.len()))]
    /// Commits `files` (path, content; secrets already removed) with `message` on the branch's tip, and
    /// pushes without force; on a rejection, does it again on the new tip, with backoff. `None` when no
    /// file changed.
    ///
    /// # Errors
    /// [`PublishError::Auth`] and [`PublishError::HostKey`] at once, without retrying; [`PublishError::Rejected`],
    /// [`PublishError::Fetch`] or [`PublishError::Push`] when every round failed.
    pub fn publish(
        &self,
        files: &[(String, String)],
        message: &str,
    ) -> Result<Option<String>, PublishError> {
        if files.is_empty() {
            return Ok(None);
        }
        // A poisoned lock only means another write panicked; the repository itself is consistent.
        let repo = self.repo.lock().unwrap_or_else(|p| p.into_inner());
        let mut delay = self.config.backoff_initial;
        let mut last: Option<(String, PublishError)> = None;
        for attempt in 1..=self.config.max_attempts {
            match self.round(&repo, files, message) {
                Ok(result) => {
                    tracing::info!(attempt, commit = ?result, "status written");
                    return Ok(result);
                }
                Err(RoundError::Fatal(e)) => return Err(e),
                Err(RoundError::Retry(reason, e)) => {
                    tracing::debug!(attempt, %reason, "status push did not go through; retrying");
                    last = Some((reason, e));
                }
            }
            if attempt < self.config.max_attempts {
                std::thread::sleep(jitter(delay));
                delay = (delay * 2).min(self.config.backoff_max);
            }
        }
        Err(match last {
            Some((_, e @ (PublishError::Fetch { .. } | PublishError::Push { .. }))) => e,
            Some((reason, _)) => PublishError::Rejected {
                url: self.display_url.clone(),
                branch: self.branch().to_string(),
                attempts: self.config.max_attempts,
                reason,
            },
            None => PublishError::Rejected {
                url: self.display_url.clone(),
                branch: self.branch().to_string(),
                attempts: self.config.max_attempts,
                reason: "no attempt made".to_string(),
            },
        })
    }

    /// One fetch-commit-push round.
    fn round(
        &self,
        repo: &Repository,
        files: &[(String, String)],
        message: &str,
    ) -> Result<Option<String>, RoundError> {
        let tip = self.fetch_tip(repo)?;
        let Some(commit) = self.commit_on(repo, tip, files, message)? else {
            return Ok(None);
        };
        if let Some(target) = self.local_work_tree() {
            self.update_local(&target, commit, tip)?;
        } else {
            self.push(repo, commit)?;
        }
        Ok(Some(commit.to_string()))
    }

    fn git_err(&self, e: &git2::Error) -> GitError {
        GitError::new(e, &self.redactor)
    }

    /// Turns a failed network operation into an error, by what the callbacks saw first, then by code.
    fn classify(
        &self,
        e: &git2::Error,
        session: &Session,
        wrap: impl FnOnce(GitError) -> PublishError,
    ) -> RoundError {
        if let Some(problem) = session.host_key.borrow_mut().take() {
            return RoundError::Fatal(PublishError::HostKey {
                url: self.display_url.clone(),
                problem: Box::new(problem),
            });
        }
        let http_denied = e.class() == git2::ErrorClass::Http
            && (e.message().contains("401") || e.message().contains("403"));
        if session.auth_failed() || e.code() == git2::ErrorCode::Auth || http_denied {
            return RoundError::Fatal(PublishError::Auth {
                url: self.display_url.clone(),
                source: self.git_err(e),
            });
        }
        if e.code() == git2::ErrorCode::Certificate {
            // A TLS certificate libgit2 refused: configuration, not weather.
            return RoundError::Fatal(wrap(self.git_err(e)));
        }
        let err = wrap(self.git_err(e));
        RoundError::Retry(self.redactor.redact(e.message()), err)
    }

    /// Fetches the status branch; returns its tip, or `None` when the remote has no such branch.
    fn fetch_tip(&self, repo: &Repository) -> Result<Option<Oid>, RoundError> {
        let branch = self.branch();
        let head_ref = format!("refs/heads/{branch}");
        let tracking = format!("refs/remotes/origin/{branch}");
        let fetch_err = |source| PublishError::Fetch {
            url: self.display_url.clone(),
            branch: branch.to_string(),
            source,
        };
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| RoundError::Fatal(fetch_err(self.git_err(&e))))?;
        let session = Session::default();
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(auth::callbacks(&self.auth, &self.remote, &session));
        fo.download_tags(git2::AutotagOption::None);
        let spec = format!("+{head_ref}:{tracking}");
        if let Err(e) = remote.fetch(&[spec.as_str()], Some(&mut fo), None) {
            return Err(self.classify(&e, &session, fetch_err));
        }
        // The advertisement of this very fetch says whether the branch exists and where it points.
        let advertised = remote
            .list()
            .map_err(|e| RoundError::Retry(e.message().to_string(), fetch_err(self.git_err(&e))))?
            .iter()
            .find(|h| h.name() == head_ref)
            .map(|h| h.oid());
        Ok(advertised)
    }

    /// Builds our commit on `tip` (or as an orphan); `None` when the tip already has this content.
    fn commit_on(
        &self,
        repo: &Repository,
        tip: Option<Oid>,
        files: &[(String, String)],
        message: &str,
    ) -> Result<Option<Oid>, RoundError> {
        let fatal = |what: &str, e: git2::Error| {
            RoundError::Fatal(PublishError::Commit {
                what: what.to_string(),
                source: self.git_err(&e),
            })
        };
        let parent = tip
            .map(|t| repo.find_commit(t))
            .transpose()
            .map_err(|e| fatal("the branch tip", e))?;
        let base_tree = match &parent {
            Some(c) => c.tree().map_err(|e| fatal("the branch tip's tree", e))?,
            None => {
                let empty = repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .map_err(|e| fatal("an empty tree", e))?;
                repo.find_tree(empty)
                    .map_err(|e| fatal("an empty tree", e))?
            }
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        let mut changed = 0;
        for (path, content) in files {
            let at_tip = base_tree
                .get_path(Path::new(path))
                .ok()
                .and_then(|entry| repo.find_blob(entry.id()).ok())
                .map(|blob| Sha256::digest(blob.content()));
            if at_tip == Some(Sha256::digest(content.as_bytes())) {
                continue;
            }
            let blob = repo.blob(content.as_bytes()).map_err(|e| fatal(path, e))?;
            update.upsert(path.as_str(), blob, git2::FileMode::Blob);
            changed += 1;
        }
        if changed == 0 {
            return Ok(None);
        }
        let tree_id = update
            .create_updated(repo, &base_tree)
            .map_err(|e| fatal("the status tree", e))?;
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| fatal("the status tree", e))?;
        let sig = git2::Signature::now(&self.config.author_name, &self.config.author_email)
            .map_err(|e| fatal("the author signature", e))?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .map_err(|e| fatal("the status commit", e))?;
        repo.reference(PENDING_REF, oid, true, "hotsync status commit")
            .map_err(|e| fatal(PENDING_REF, e))?;
        Ok(Some(oid))
    }

    /// A local repository with a work tree: libgit2 cannot push into one, so the commit is fetched into
    /// it and its branch moved with a compare-and-swap, which fails like a rejected push when someone
    /// moved the branch meanwhile.
    fn local_work_tree(&self) -> Option<Repository> {
        if self.remote.scheme != Scheme::Local {
            return None;
        }
        let path = self.url.strip_prefix("file://").unwrap_or(&self.url);
        Repository::open(path).ok().filter(|r| !r.is_bare())
    }

    fn update_local(
        &self,
        target: &Repository,
        commit: Oid,
        expected: Option<Oid>,
    ) -> Result<(), RoundError> {
        let branch = self.branch();
        let refname = format!("refs/heads/{branch}");
        let push_err = |source| PublishError::Push {
            url: self.display_url.clone(),
            branch: branch.to_string(),
            source,
        };
        if target
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(str::to_string))
            .as_deref()
            == Some(refname.as_str())
        {
            return Err(RoundError::Fatal(PublishError::Config {
                reason: format!(
                    "{branch} is checked out in the work tree of {}: hotsync does not move a checked-out branch; use a status branch or a bare remote",
                    self.display_url
                ),
            }));
        }
        let cache = self.local_path.display().to_string();
        let mut remote = target
            .remote_anonymous(&cache)
            .map_err(|e| RoundError::Fatal(push_err(self.git_err(&e))))?;
        let incoming = format!("+{PENDING_REF}:refs/hotsync/incoming");
        remote
            .fetch(&[incoming.as_str()], None, None)
            .map_err(|e| RoundError::Fatal(push_err(self.git_err(&e))))?;
        let result = match expected {
            Some(old) => target.reference_matching(&refname, commit, true, old, "hotsync status"),
            None => target.reference(&refname, commit, false, "hotsync status"),
        };
        let _ = target
            .find_reference("refs/hotsync/incoming")
            .and_then(|mut r| r.delete());
        result.map(|_| ()).map_err(|e| {
            RoundError::Retry(
                "the branch moved since the fetch".to_string(),
                push_err(self.git_err(&e)),
            )
        })
    }

    /// Pushes the pending commit to the branch, without force.
    fn push(&self, repo: &Repository, commit: Oid) -> Result<(), RoundError> {
        let branch = self.branch();
        let push_err = |source| PublishError::Push {
            url: self.display_url.clone(),
            branch: branch.to_string(),
            source,
        };
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| RoundError::Fatal(push_err(self.git_err(&e))))?;
        let session = Session::default();
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let mut cbs = auth::callbacks(&self.auth, &self.remote, &session);
        cbs.push_update_reference(|_refname, status| {
            if let Some(msg) = status {
                *rejected.borrow_mut() = Some(msg.to_string());
            }
            Ok(())
        });
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(cbs);
        // No leading `+`: never a force push.
        let spec = format!("{PENDING_REF}:refs/heads/{branch}");
        let result = remote.push(&[spec.as_str()], Some(&mut po));
        drop(po);
        match result {
            Ok(()) => match rejected.into_inner() {
                None => {
                    tracing::debug!(%commit, "pushed");
                    Ok(())
                }
                Some(reason) => {
                    let reason = self.redactor.redact(&reason);
                    Err(RoundError::Retry(
                        format!("the remote rejected the update: {reason}"),
                        PublishError::Rejected {
                            url: self.display_url.clone(),
                            branch: branch.to_string(),
                            attempts: 1,
                            reason,
                        },
                    ))
                }
            },
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => Err(RoundError::Retry(
                "the branch moved since the fetch".to_string(),
                push_err(self.git_err(&e)),
            )),
            Err(e) => Err(self.classify(&e, &session, push_err)),
        }
    }

    /// The bare cache repository (for tests and diagnostics).
    pub fn local_path(&self) -> &Path {
        &self.local_path
    }
}

/// A random wait in `[d/2, d]`, so that writers that collided do not collide again in step.
fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = d / 2;
    let nanos = half.as_nanos().max(1);
    half + Duration::from_nanos((u128::from(r) % nanos) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Publisher>();
        assert_send_sync::<PublishError>();
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn at_sign_means_the_tracked_branch() {
        let c = StatusConfig {
            branch: "@".into(),
            tracked_branch: "main".into(),
            ..StatusConfig::default()
        };
        assert_eq!(c.effective_branch(), "main");
        assert_eq!(StatusConfig::default().effective_branch(), "hotsync-status");
    }
}
