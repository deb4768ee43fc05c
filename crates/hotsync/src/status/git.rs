//! The status commit: fetch the status branch, write the changed status files on its tip in one commit,
//! push without force, and on rejection do it again on the new tip, with exponential backoff.
//!
//! "Rebase" here is re-creating our commit: the writer touches only its own status files, so building a
//! new tree from the new tip plus those files is exactly a rebase of the one commit, and it always
//! applies. The remote's compare-and-swap on the ref (the old id we send) and libgit2's fast-forward check
//! are what make it safe against other writers; nothing is ever forced.

use super::auth::{self, GitAuth, RemoteUrl, Scheme, Session};
use super::render::SetStatus;
use super::{GitError, Redactor, StatusError};
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The trailer that marks hotsync's own commits; its value is the source commit the status describes.
pub const SOURCE_TRAILER: &str = "Hotsync-Source";

/// The local ref our pending commit is pushed from.
const PENDING_REF: &str = "refs/hotsync/status-pending";

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

/// True if a commit message carries the `Hotsync-Source` trailer: the commit is hotsync's own status
/// commit, and the daemon must not sync on it.
pub fn is_hotsync_commit(message: &str) -> bool {
    hotsync_source(message).is_some()
}

/// The value of the `Hotsync-Source` trailer, when the message has one (in its trailer block).
pub fn hotsync_source(message: &str) -> Option<String> {
    let trailers = git2::message_trailers_strs(message).ok()?;
    trailers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(SOURCE_TRAILER))
        .map(|(_, v)| v.trim().to_string())
}

/// Writes status files to the status branch of one remote. One writer per `work_dir`; `write` calls on
/// one writer are serialised. Blocking: call it from `spawn_blocking` in async code.
pub struct StatusWriter {
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

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("url", &self.display_url)
            .field("branch", &self.config.effective_branch())
            .field("auth", &self.auth)
            .finish()
    }
}

/// How one round ended when it did not succeed.
enum RoundError {
    /// Try again: the branch moved, the ref was locked, or the network failed.
    Retry(String, StatusError),
    /// Give up now.
    Fatal(StatusError),
}

impl StatusWriter {
    /// Prepares a writer for `repo_url_or_path` (a URL or a local repository), keeping its bare cache
    /// repository under `work_dir`. Does not connect: the first `write` does.
    ///
    /// # Errors
    /// [`StatusError::Config`] for an invalid branch, author or attempt count, or a token that would travel
    /// over plain `http://` to a host other than loopback; [`StatusError::WorkDir`] /
    /// [`StatusError::LocalRepo`] when the cache repository cannot be created.
    pub fn new(
        repo_url_or_path: &str,
        work_dir: &Path,
        auth: GitAuth,
        config: StatusConfig,
    ) -> Result<Self, StatusError> {
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
        let config_err = |reason: String| StatusError::Config { reason };
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
                .map_err(|source| StatusError::WorkDir {
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
        let repo = match Repository::open_bare(&local_path) {
            Ok(r) => r,
            Err(_) => {
                if local_path.exists() {
                    // A broken cache is rebuilt from the remote, never trusted.
                    let _ = std::fs::remove_dir_all(&local_path);
                }
                std::fs::create_dir_all(&local_path).map_err(|source| StatusError::WorkDir {
                    path: local_path.clone(),
                    source,
                })?;
                Repository::init_bare(&local_path).map_err(|e| StatusError::LocalRepo {
                    path: local_path.clone(),
                    source: GitError::new(&e, &redactor),
                })?
            }
        };
        Ok(StatusWriter {
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
    /// [`StatusError::Auth`] and [`StatusError::HostKey`] at once, without retrying; [`StatusError::Rejected`],
    /// [`StatusError::Fetch`] or [`StatusError::Push`] when every round failed; others for bad input.
    #[tracing::instrument(skip_all, fields(branch = %self.branch(), remote = %self.display_url, sets = statuses.len()))]
    pub fn write(
        &self,
        statuses: &[SetStatus],
        source_commit: &str,
    ) -> Result<Option<String>, StatusError> {
        if source_commit.len() < 4
            || source_commit.len() > 64
            || !source_commit.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(StatusError::Config {
                reason: format!("source commit {source_commit:?} is not a commit id"),
            });
        }
        let files = self.prepare(statuses)?;
        if files.is_empty() {
            return Ok(None);
        }
        let message = self.message(statuses, source_commit);
        // A poisoned lock only means another write panicked; the repository itself is consistent.
        let repo = self.repo.lock().unwrap_or_else(|p| p.into_inner());
        let mut delay = self.config.backoff_initial;
        let mut last: Option<(String, StatusError)> = None;
        for attempt in 1..=self.config.max_attempts {
            match self.round(&repo, &files, &message) {
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
            Some((_, e @ (StatusError::Fetch { .. } | StatusError::Push { .. }))) => e,
            Some((reason, _)) => StatusError::Rejected {
                url: self.display_url.clone(),
                branch: self.branch().to_string(),
                attempts: self.config.max_attempts,
                reason,
            },
            None => StatusError::Rejected {
                url: self.display_url.clone(),
                branch: self.branch().to_string(),
                attempts: self.config.max_attempts,
                reason: "no attempt made".to_string(),
            },
        })
    }

    /// Renders every status, secrets removed, sorted by path; refuses two statuses for one file.
    fn prepare(&self, statuses: &[SetStatus]) -> Result<Vec<(String, String)>, StatusError> {
        let mut files = Vec::with_capacity(statuses.len());
        let mut seen = BTreeSet::new();
        for s in statuses {
            let path = s.path();
            if !seen.insert(path.clone()) {
                return Err(StatusError::DuplicatePath { path });
            }
            let content = s.try_render().map_err(|source| StatusError::Render {
                path: path.clone(),
                source,
            })?;
            files.push((path, self.redactor.redact(&content)));
        }
        files.sort();
        Ok(files)
    }

    fn message(&self, statuses: &[SetStatus], source_commit: &str) -> String {
        let clusters: BTreeSet<&str> = statuses.iter().map(|s| s.cluster.as_str()).collect();
        let clusters: Vec<&str> = clusters.into_iter().collect();
        let short = &source_commit[..source_commit.len().min(12)];
        let mut lines: Vec<String> = statuses
            .iter()
            .map(|s| format!("{}/{}: {}", s.namespace, s.name, s.phase))
            .collect();
        lines.sort();
        let subject = format!(
            "hotsync status: {} at {short}",
            self.redactor.redact(&clusters.join(", "))
        );
        format!(
            "{subject}\n\n{}\n\n{SOURCE_TRAILER}: {source_commit}\n",
            self.redactor.redact(&lines.join("\n"))
        )
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
        wrap: impl FnOnce(GitError) -> StatusError,
    ) -> RoundError {
        if let Some(problem) = session.host_key.borrow_mut().take() {
            return RoundError::Fatal(StatusError::HostKey {
                url: self.display_url.clone(),
                problem: Box::new(problem),
            });
        }
        let http_denied = e.class() == git2::ErrorClass::Http
            && (e.message().contains("401") || e.message().contains("403"));
        if session.auth_failed() || e.code() == git2::ErrorCode::Auth || http_denied {
            return RoundError::Fatal(StatusError::Auth {
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
        let fetch_err = |source| StatusError::Fetch {
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
            RoundError::Fatal(StatusError::Commit {
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
        let push_err = |source| StatusError::Push {
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
            return Err(RoundError::Fatal(StatusError::Config {
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
        let push_err = |source| StatusError::Push {
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
                        StatusError::Rejected {
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
    fn trailer_is_recognised_only_in_the_trailer_block() {
        let msg =
            "hotsync status: prod at abc\n\ngames/arena: Synced\n\nHotsync-Source: 0123abcd\n";
        assert!(is_hotsync_commit(msg));
        assert_eq!(hotsync_source(msg).as_deref(), Some("0123abcd"));
        assert!(!is_hotsync_commit(
            "Bump sidecar\n\nmentions Hotsync-Source: in prose, not as a trailer\n\nmore text"
        ));
        assert!(!is_hotsync_commit("Bump sidecar to v0.2"));
        assert!(is_hotsync_commit(
            "Bump\n\nSigned-off-by: A <a@example.com>\nhotsync-source: 0123abcd"
        ));
    }

    #[test]
    fn a_writer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<StatusWriter>();
        assert_send_sync::<StatusError>();
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
