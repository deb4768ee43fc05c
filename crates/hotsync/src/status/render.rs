//! The status file of one set: the values the rollout engine reports, and their deterministic YAML.
//!
//! Same input, byte-identical output: lists are sorted, maps are `BTreeMap`s, and nothing that changes
//! without cause (a timestamp, a resource version) is rendered, so that the writer commits only when the
//! content changes.

use serde::Serialize;
use std::collections::BTreeMap;

/// The outcome of a set's rollout, as written to its status file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Phase {
    /// Every pod runs the target images and is ready.
    Synced,
    /// The rollout is under way.
    Progressing,
    /// Every pod that may be updated is; game servers deferred by policy wait for their players (the set
    /// stays held).
    Deferred,
    /// A progressive rollout is paused at a step (the set stays held): see the status's `step`.
    Paused,
    /// The rollout finished, but some pods are not ready or restart.
    Degraded,
    /// The rollout failed or was refused.
    Failed,
    /// The cluster differs from Git and hotsync is not rolling it out (for instance, a change that needs review).
    OutOfSync,
}

impl Phase {
    /// The name written to the status file.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Synced => "Synced",
            Phase::Progressing => "Progressing",
            Phase::Deferred => "Deferred",
            Phase::Paused => "Paused",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::OutOfSync => "OutOfSync",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Git commit a status refers to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SourceRef {
    pub commit: String,
    pub subject: String,
    /// The commit synced before, when the branch was force-pushed since and `commit` does not descend
    /// from it.
    #[serde(rename = "forcePushedFrom", skip_serializing_if = "Option::is_none")]
    pub force_pushed_from: Option<String>,
}

/// A container of the set's pod template and the image it should run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ContainerTarget {
    pub name: String,
    pub image: String,
}

/// What one pod runs now.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    pub name: String,
    /// Container name to the image it runs.
    pub images: BTreeMap<String, String>,
    /// Container name to its restart count.
    pub restart_counts: BTreeMap<String, i32>,
    pub ready: bool,
    /// True when the pod runs the target images of the set.
    pub updated: bool,
    /// Why the pod's last update failed (the kubelet's reason, or the rollout's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the rollout left the pod for later on purpose: a later canary step, a deferring opsState,
    /// `partition`, a rollout stopped before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// The status of one GameServerSet in one cluster, written to [`SetStatus::path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetStatus {
    /// The cluster name (`--cluster-name`).
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub source: SourceRef,
    pub phase: Phase,
    pub message: Option<String>,
    /// A progressive rollout's step: `K/N` (step K of N reached).
    pub step: Option<String>,
    pub containers: Vec<ContainerTarget>,
    pub pods: Vec<PodReport>,
}

/// The rendered document: the keys of the status file, in this order.
#[derive(Serialize)]
struct Document<'a> {
    source: &'a SourceRef,
    phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    containers: Vec<&'a ContainerTarget>,
    pods: Vec<&'a PodReport>,
}

impl SetStatus {
    /// The file of this set in the status branch: `status/<cluster>/<namespace>/<name>.yaml`.
    ///
    /// Each part becomes one safe path segment: characters other than ASCII letters, digits, `.`, `_`
    /// and `-` become `_` (a context name such as `arn:aws:eks:...:cluster/prod` has `:` and `/`), and a
    /// leading `.` becomes `_`, so no part can be `..` or a hidden file.
    pub fn path(&self) -> String {
        format!(
            "status/{}/{}/{}.yaml",
            path_segment(&self.cluster),
            path_segment(&self.namespace),
            path_segment(&self.name)
        )
    }

    /// The status file's content: deterministic YAML (see the module docs).
    ///
    /// Serialising these plain values does not fail; should it ever, the content is a YAML comment naming
    /// the error rather than a panic. [`SetStatus::try_render`] returns the error instead.
    pub fn render(&self) -> String {
        self.try_render()
            .unwrap_or_else(|e| format!("# hotsync could not render this status: {e}\n"))
    }

    /// [`SetStatus::render`], returning the serialiser's error.
    ///
    /// # Errors
    /// When the YAML serialiser fails.
    pub fn try_render(&self) -> Result<String, serde_saphyr::SerializeError> {
        let mut containers: Vec<&ContainerTarget> = self.containers.iter().collect();
        containers.sort();
        let mut pods: Vec<&PodReport> = self.pods.iter().collect();
        pods.sort();
        let doc = Document {
            source: &self.source,
            phase: self.phase,
            message: self.message.as_deref(),
            step: self.step.as_deref(),
            containers,
            pods,
        };
        let mut out = serde_saphyr::to_string(&doc)?;
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

fn path_segment(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    } else if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SetStatus {
        SetStatus {
            cluster: "prod-eu".into(),
            namespace: "games".into(),
            name: "arena".into(),
            source: SourceRef {
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                subject: "Bump sidecar to v0.2: faster: yes".into(),
                force_pushed_from: None,
            },
            phase: Phase::Progressing,
            message: None,
            step: None,
            containers: vec![
                ContainerTarget {
                    name: "sidecar".into(),
                    image: "registry.example/sidecar:v0.2".into(),
                },
                ContainerTarget {
                    name: "game".into(),
                    image: "registry.example/game:1.0".into(),
                },
            ],
            pods: vec![
                PodReport {
                    name: "arena-1".into(),
                    images: [
                        ("game", "registry.example/game:1.0"),
                        ("sidecar", "registry.example/sidecar:v0.1"),
                    ]
                    .into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                    restart_counts: [("game".to_string(), 0), ("sidecar".to_string(), 3)].into(),
                    ready: false,
                    updated: false,
                    last_error: Some("ImagePullBackOff: \"sidecar:v0.2\"\nsecond line".into()),
                    waiting: None,
                },
                PodReport {
                    name: "arena-0".into(),
                    images: [(
                        "sidecar".to_string(),
                        "registry.example/sidecar:v0.2".to_string(),
                    )]
                    .into(),
                    restart_counts: [("sidecar".to_string(), 1)].into(),
                    ready: true,
                    updated: true,
                    last_error: None,
                    waiting: None,
                },
            ],
        }
    }

    #[test]
    fn renders_sorted_keys_and_lists() {
        let out = sample().render();
        insta::assert_snapshot!(out);
    }

    #[test]
    fn rendering_ignores_input_order() {
        let a = sample();
        let mut b = sample();
        b.pods.reverse();
        b.containers.reverse();
        assert_eq!(a.render(), b.render());
    }

    #[test]
    fn message_is_rendered_only_when_set() {
        let mut s = sample();
        assert!(!s.render().contains("message:"));
        s.message = Some("2 of 3 pods updated".into());
        let out = s.render();
        assert!(out.contains("message: 2 of 3 pods updated\n"), "{out}");
        // The message comes after the phase, before the containers.
        let (p, m, c) = (
            out.find("phase:").unwrap_or(usize::MAX),
            out.find("message:").unwrap_or(usize::MAX),
            out.find("containers:").unwrap_or(usize::MAX),
        );
        assert!(p < m && m < c, "{out}");
    }

    #[test]
    fn a_force_push_is_rendered_in_the_source_block_only_when_there_was_one() {
        let mut s = sample();
        assert!(!s.render().contains("forcePushedFrom"));
        s.source.force_pushed_from = Some("fedcba9876543210fedcba9876543210fedcba98".into());
        let out = s.render();
        assert!(
            out.starts_with(
                "source:\n  commit: 0123456789abcdef0123456789abcdef01234567\n  subject: \"Bump sidecar to v0.2: faster: yes\"\n  forcePushedFrom: fedcba9876543210fedcba9876543210fedcba98\nphase: Progressing\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn rendered_yaml_reads_back_as_the_same_values() {
        let out = sample().render();
        let v: serde_json::Value = serde_saphyr::from_str(&out).expect("parse");
        assert_eq!(v["phase"], "Progressing");
        assert_eq!(v["source"]["subject"], "Bump sidecar to v0.2: faster: yes");
        assert_eq!(v["pods"][0]["name"], "arena-0");
        assert_eq!(v["pods"][1]["restartCounts"]["sidecar"], 3);
        assert_eq!(
            v["pods"][1]["lastError"],
            "ImagePullBackOff: \"sidecar:v0.2\"\nsecond line"
        );
        assert!(v["pods"][0].get("lastError").is_none());
    }

    #[test]
    fn path_has_one_safe_segment_per_part() {
        let mut s = sample();
        assert_eq!(s.path(), "status/prod-eu/games/arena.yaml");
        s.cluster = "arn:aws:eks:eu-west-1:123:cluster/prod".into();
        s.namespace = "..".into();
        s.name = String::new();
        assert_eq!(
            s.path(),
            "status/arn_aws_eks_eu-west-1_123_cluster_prod/_./_.yaml"
        );
    }
}
