//! hotsync: keeps OpenKruiseGame GameServerSets in step with a Git repository, and rolls sidecar image bumps
//! out as in-place container restarts.

/// `hotsync run`: triggers, leader election, drift, metrics and health.
pub mod daemon;
/// Semantic diff of two sets and the classification of each change.
pub mod diff;
/// Byte-preserving edits of manifest files (`hotsync set-image`).
pub mod edit;
/// Every use of libgit2: repositories, fetches, credentials, known_hosts, redaction, trailers, pushes.
pub mod git;
/// Container image references as kubelets report them.
pub mod images;
/// The live side of a set: its objects in the cluster and what a pod shows.
pub mod live;
/// Multi-document YAML into desired sets, with located diagnostics.
pub mod manifest;
/// Typed OKG and Kruise objects (from `hotsync-model`) and the pod labels hotsync reads.
pub mod model;
/// CPU-bound work spread over the cores, in order.
pub mod par;
/// The Plan value and its renderings.
pub mod plan;
/// Whether image references exist in their registries.
pub mod registry;
/// The render step between files read from Git and manifests parsed.
pub mod render;
/// Load two revisions and plan the change between them.
pub mod review;
/// Executes a set's plan against the cluster: apply, pod patches in waves, waits.
pub mod rollout;
/// From Git to desired sets: read, render, parse.
pub mod source;
/// Rollout status written back to Git: one YAML file per set, committed and pushed to a status branch.
pub mod status;
/// One sync of Git to the cluster, and its report.
pub mod sync;
/// What OKG builds from a set for Kruise: the template, the in-place hook, Kruise's in-place rule.
pub mod workload;

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
