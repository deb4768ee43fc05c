//! The status writer: renders each set's status to its file, and publishes the files that changed in
//! one commit on the status branch ([`crate::git::publish::Publisher`]).

use super::render::SetStatus;
use super::StatusError;
use crate::git::auth::GitAuth;
use crate::git::publish::{PublishError, Publisher, StatusConfig};
use crate::git::trailers::SOURCE_TRAILER;
use std::collections::BTreeSet;
use std::path::Path;

/// Writes status files to the status branch of one remote. One writer per `work_dir`; `write` calls on
/// one writer are serialised. Blocking: call it from `spawn_blocking` in async code.
#[derive(Debug)]
pub struct StatusWriter {
    publisher: Publisher,
}

impl StatusWriter {
    /// Prepares a writer for `repo_url_or_path` (a URL or a local repository), keeping its bare cache
    /// repository under `work_dir`. Does not connect: the first `write` does.
    ///
    /// # Errors
    /// See [`Publisher::new`].
    pub fn new(
        repo_url_or_path: &str,
        work_dir: &Path,
        auth: GitAuth,
        config: StatusConfig,
    ) -> Result<Self, StatusError> {
        Ok(StatusWriter {
            publisher: Publisher::new(repo_url_or_path, work_dir, auth, config)?,
        })
    }

    /// The branch status is committed to.
    pub fn branch(&self) -> &str {
        self.publisher.branch()
    }

    /// The remote, credentials removed.
    pub fn display_url(&self) -> &str {
        self.publisher.display_url()
    }

    /// The bare cache repository.
    pub fn local_path(&self) -> &Path {
        self.publisher.local_path()
    }

    /// Commits the statuses whose files changed, one commit for all, with the `Hotsync-Source` trailer
    /// naming `source_commit`; `None` when no file changed.
    ///
    /// # Errors
    /// A source commit that is no commit id, a status that cannot be rendered or two for one file, and
    /// what [`Publisher::publish`] returns.
    pub fn write(
        &self,
        statuses: &[SetStatus],
        source_commit: &str,
    ) -> Result<Option<String>, StatusError> {
        if source_commit.len() < 4
            || source_commit.len() > 64
            || !source_commit.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(PublishError::Config {
                reason: format!("source commit {source_commit:?} is not a commit id"),
            }
            .into());
        }
        let files = self.prepare(statuses)?;
        if files.is_empty() {
            return Ok(None);
        }
        let message = self.message(statuses, source_commit);
        Ok(self.publisher.publish(&files, &message)?)
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
            files.push((path, self.publisher.redact(&content)));
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
            self.publisher.redact(&clusters.join(", "))
        );
        format!(
            "{subject}\n\n{}\n\n{SOURCE_TRAILER}: {source_commit}\n",
            self.publisher.redact(&lines.join("\n"))
        )
    }
}
