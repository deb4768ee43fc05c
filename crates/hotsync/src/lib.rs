//! hotsync: keeps OpenKruiseGame GameServerSets in step with a Git repository, and rolls sidecar image bumps
//! out as in-place container restarts.

/// `hotsync run`: triggers, leader election, drift, metrics and health.
pub mod daemon;
/// Semantic diff of two sets and the classification of each change.
pub mod diff;
/// Container image references as kubelets report them.
pub mod images;
/// The live side of a set: its objects in the cluster and what a pod shows.
pub mod live;
/// Multi-document YAML into desired sets, with located diagnostics.
pub mod manifest;
/// Typed OKG and Kruise objects (from `hotsync-model`) and the pod labels hotsync reads.
pub mod model;
/// The Plan value and its renderings.
pub mod plan;
/// Whether image references exist in their registries.
pub mod registry;
/// Load two revisions and plan the change between them.
pub mod review;
/// Executes a set's plan against the cluster: apply, pod patches in waves, waits.
pub mod rollout;
/// The Git side: repositories, revisions, manifest files at a commit.
pub mod source;
/// Rollout status written back to Git: one YAML file per set, committed and pushed to a status branch.
pub mod status;
/// One sync of Git to the cluster, and its report.
pub mod sync;
/// What OKG builds from a set for Kruise: the template, the in-place hook, Kruise's in-place rule.
pub mod workload;
