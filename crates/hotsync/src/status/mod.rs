//! Status written back to Git: the outcome of each rollout, one YAML file per set, committed to a status
//! branch of the tracked repository so that it can be seen where the change was made.
//!
//! The rollout engine hands [`SetStatus`] values to a [`StatusWriter`]; the writer renders them
//! ([`render`]), commits what changed on the status branch (an orphan branch `hotsync-status` by default,
//! or the tracked branch itself) and pushes with fetch, rebase and retry, never by force ([`git`]). Its
//! commits carry a `Hotsync-Source: <sha>` trailer, which [`is_hotsync_commit`] recognises so that the
//! daemon never syncs on its own commits. SSH (key file or agent, known_hosts checked) and HTTPS (token)
//! credentials are in [`auth`]; secrets never reach logs, errors or status files.
//!
//! libgit2 blocks: the API is synchronous, and async callers run it in `spawn_blocking`.

pub mod auth;
pub mod git;
pub mod known_hosts;
pub mod render;
pub mod report;

pub use auth::GitAuth;
pub use git::{hotsync_source, is_hotsync_commit, StatusConfig, StatusWriter, SOURCE_TRAILER};
pub use known_hosts::HostKeyProblem;
pub use render::{ContainerTarget, Phase, PodReport, SetStatus, SourceRef};

use std::path::PathBuf;

/// What can go wrong while writing status. Each variant names the remote (credentials removed), branch
/// or path; the cause, already stripped of secrets, is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
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
    #[error("cannot render the status file {path}")]
    Render {
        path: String,
        #[source]
        source: serde_saphyr::SerializeError,
    },
    #[error("two statuses in one write map to the same file {path}")]
    DuplicatePath { path: String },
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

impl StatusError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            StatusError::Config { .. } | StatusError::DuplicatePath { .. } => "status_config",
            StatusError::WorkDir { .. } | StatusError::LocalRepo { .. } => "status_local",
            StatusError::Render { .. } => "status_render",
            StatusError::Commit { .. } => "status_commit",
            StatusError::Auth { .. } => "git_auth",
            StatusError::HostKey { .. } => "git_host_key",
            StatusError::Fetch { .. } => "git_fetch",
            StatusError::Push { .. } => "git_push",
            StatusError::Rejected { .. } => "git_push_rejected",
        }
    }

    /// True when trying again later may succeed (network trouble, a busy branch); false for errors that
    /// need someone to change the configuration (credentials, host keys, paths).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StatusError::Fetch { .. } | StatusError::Push { .. } | StatusError::Rejected { .. }
        )
    }
}

/// A libgit2 error with every known secret and URL credential removed from its message: git2's texts
/// can echo URLs, and a URL can carry a token.
#[derive(Debug, Clone)]
pub struct GitError {
    message: String,
    code: git2::ErrorCode,
    class: git2::ErrorClass,
}

impl GitError {
    pub(crate) fn new(e: &git2::Error, redactor: &Redactor) -> Self {
        GitError {
            message: redactor.redact(e.message()),
            code: e.code(),
            class: e.class(),
        }
    }

    /// libgit2's error code.
    pub fn code(&self) -> git2::ErrorCode {
        self.code
    }

    /// libgit2's error class.
    pub fn class(&self) -> git2::ErrorClass {
        self.class
    }

    /// The message, secrets removed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GitError {}

/// Removes secrets from text bound for errors, logs and status files: each known secret (token,
/// passphrase, a URL's password) and the user-info part of every URL (`https://TOKEN@host` is common).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = redact_url_userinfo(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// Replaces the user-info of every `scheme://user:password@host` in `text` with `***`.
pub fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '>' | '<'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_is_removed_everywhere() {
        assert_eq!(
            redact_url_userinfo(
                "failed https://x-access-token:s3cr3t@example.com/r.git and http://TOKEN@h:8080/x, ssh://git@h/r"
            ),
            "failed https://***@example.com/r.git and http://***@h:8080/x, ssh://***@h/r"
        );
        assert_eq!(redact_url_userinfo("no url here"), "no url here");
        assert_eq!(
            redact_url_userinfo("ends with https://"),
            "ends with https://"
        );
    }

    #[test]
    fn known_secrets_are_removed_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("token abcdef and abc"), "token *** and ***");
    }
}
