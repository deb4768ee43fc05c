//! Status written back to Git: the outcome of each rollout, one YAML file per set, committed to a status
//! branch of the tracked repository so that it can be seen where the change was made.
//!
//! The rollout engine hands [`SetStatus`] values to a [`StatusWriter`]; the writer renders them
//! ([`render`]) and publishes what changed on the status branch (an orphan branch `hotsync-status` by
//! default, or the tracked branch itself) through [`crate::git::publish`], which pushes with fetch,
//! rebase and retry, never by force. Its commits carry a `Hotsync-Source: <sha>` trailer
//! ([`crate::git::trailers`]) so that the daemon never syncs on its own commits. Credentials, known_hosts
//! and redaction are the Git module's; secrets never reach logs, errors or status files.
//!
//! Data: a [`crate::sync::SyncReport`] and the pods the cluster shows ([`report`]) in; a commit on the
//! status branch out. libgit2 blocks: async callers run the writer in `spawn_blocking`.

pub mod render;
pub mod report;
mod writer;

pub use crate::git::auth::GitAuth;
pub use crate::git::known_hosts::HostKeyProblem;
pub use crate::git::publish::{PublishError, StatusConfig};
pub use crate::git::redact::redact_url_userinfo;
pub use crate::git::trailers::{hotsync_source, is_hotsync_commit, SOURCE_TRAILER};
pub use render::{ContainerTarget, Phase, PodReport, SetStatus, SourceRef};
pub use writer::StatusWriter;

/// What can go wrong while writing status: rendering the files, or publishing them to Git.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot render the status file {path}")]
    Render {
        path: String,
        #[source]
        source: serde_saphyr::SerializeError,
    },
    #[error("two statuses in one write map to the same file {path}")]
    DuplicatePath { path: String },
    #[error(transparent)]
    Git(#[from] PublishError),
}

impl StatusError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            StatusError::Render { .. } => "status_render",
            StatusError::DuplicatePath { .. } => "status_config",
            StatusError::Git(e) => e.category(),
        }
    }

    /// True when trying again later may succeed (network trouble, a busy branch).
    pub fn is_transient(&self) -> bool {
        matches!(self, StatusError::Git(e) if e.is_transient())
    }
}
