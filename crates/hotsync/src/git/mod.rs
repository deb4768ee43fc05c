//! Git: every use of libgit2 in hotsync, behind one module.
//!
//! - [`repo`]: open or clone a repository (local, or a bare cache clone of a remote), fetch, resolve
//!   revisions, walk trees and diffs, read blobs, tell ancestry and force-pushes; the files under a
//!   directory at a commit go on to [`crate::source`], which renders and parses them.
//! - [`publish`]: commit files on a branch's tip and push them without force (the status writer's
//!   transport).
//! - [`auth`] and [`known_hosts`]: credentials (HTTPS token, SSH key or agent) and host-key checks for
//!   both, and [`redact`]: the one redaction policy for URLs and secrets in errors and logs.
//! - [`tls`]: libgit2's CA bundle loaded only when a connection needs it, not at every start.
//! - [`trailers`]: the `Hotsync-Source` trailer that marks hotsync's own commits.
//! - [`id`]: [`CommitId`] and [`BlobId`], hotsync's own object ids: libgit2's type never leaves here.
//!
//! libgit2 blocks: async code calls this module from `tokio::task::spawn_blocking`, never on the
//! runtime itself.

pub mod auth;
pub mod id;
pub mod known_hosts;
pub mod publish;
pub mod redact;
pub mod repo;
pub mod tls;
pub mod trailers;

pub use id::{BlobId, CommitId, InvalidId};
/// libgit2's process-wide options, set once before the first repository is opened.
///
/// Object hashes are not re-verified on every read: libgit2 does that by default and it is a tenth of a
/// large plan's time, while git itself never does on read. What is fetched is still hashed, by the
/// pack indexer that names every object it receives; what is on disk is the repository's own.
pub(crate) fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| git2::opts::strict_hash_verification(false));
}

pub use repo::{
    is_remote, Ancestry, ChangedFile, CommitInfo, FetchOptions, PathEntry, Repo, SourceError,
    TreeFile,
};
