//! hotsync: keeps OpenKruiseGame GameServerSets in step with a Git repository, and rolls sidecar image bumps
//! out as in-place container restarts.

/// Semantic diff of two sets and the classification of each change.
pub mod diff;
/// Multi-document YAML into desired sets, with located diagnostics.
pub mod manifest;
/// Typed OKG and Kruise objects.
pub mod model;
/// The Plan value and its renderings.
pub mod plan;
/// Load two revisions and plan the change between them.
pub mod review;
/// The simulated OKG controller and kubelet, and the local API server they run against.
pub mod sim;
/// The Git side: repositories, revisions, manifest files at a commit.
pub mod source;
