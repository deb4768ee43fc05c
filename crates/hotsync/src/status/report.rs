//! From a sync's report and the pods the cluster shows to the status files written back to Git.

use super::{ContainerTarget, Phase, PodReport, SetStatus, SourceRef, StatusError, StatusWriter};
use crate::live;
use crate::rollout::{Outcome, PodOutcome, SetOutcome};
use crate::sync::SyncReport;
use kube::Client;
use std::sync::Arc;

/// The phase of a set, from its outcome and its pods.
fn phase(outcome: &SetOutcome, pods: &[PodReport]) -> Phase {
    match outcome.outcome {
        Outcome::Failed => Phase::Failed,
        Outcome::TimedOut | Outcome::Degraded => Phase::Degraded,
        Outcome::Deferred => Phase::Deferred,
        Outcome::StepPaused => Phase::Paused,
        Outcome::Refused
        | Outcome::Paused
        | Outcome::Aborted
        | Outcome::Frozen
        | Outcome::DryRun => Phase::OutOfSync,
        Outcome::Progressing => Phase::Progressing,
        Outcome::Synced if pods.iter().all(|p| p.updated && p.ready) => Phase::Synced,
        Outcome::Synced if pods.iter().all(|p| p.updated) => Phase::Degraded,
        // Pods kept by partition or skipped by policy stay on their old images.
        Outcome::Synced => Phase::OutOfSync,
    }
}

/// Reads each set's pods and builds its status.
pub async fn statuses(client: &Client, cluster: &str, report: &SyncReport) -> Vec<SetStatus> {
    let mut out = Vec::with_capacity(report.sets.len());
    for set in &report.sets {
        let pods = live::read(client, &set.namespace, &set.name)
            .await
            .map(|l| l.pods)
            .unwrap_or_default();
        let containers: Vec<String> = set.target_images.iter().map(|(c, _)| c.clone()).collect();
        let mut reports: Vec<PodReport> = pods
            .iter()
            .filter(|p| !live::is_terminating(p))
            .map(|p| {
                let statuses = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.clone())
                    .unwrap_or_default();
                let failure =
                    live::failure(p, &containers).map(|(c, why)| format!("container {c}: {why}"));
                let result = set.pods.iter().find(|r| r.name == live::pod_name(p));
                // A failure's message is an error; a pod left for later on purpose is waiting.
                let failed = |r: &&crate::rollout::PodResult| {
                    matches!(r.result, PodOutcome::Failed | PodOutcome::RolledBack)
                };
                let from_rollout = result.filter(failed).and_then(|r| r.message.clone());
                let waiting = result
                    .filter(|r| !failed(r))
                    .and_then(|r| r.message.clone());
                PodReport {
                    name: live::pod_name(p).to_string(),
                    images: statuses
                        .iter()
                        .map(|s| (s.name.clone(), s.image.clone()))
                        .collect(),
                    restart_counts: statuses
                        .iter()
                        .map(|s| (s.name.clone(), s.restart_count))
                        .collect(),
                    ready: live::is_ready(p),
                    updated: set
                        .target_images
                        .iter()
                        .all(|(c, img)| live::spec_image(p, c).is_none_or(|i| i == img)),
                    last_error: failure.or(from_rollout),
                    waiting,
                }
            })
            .collect();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(SetStatus {
            cluster: cluster.to_string(),
            namespace: set.namespace.clone(),
            name: set.name.clone(),
            source: SourceRef {
                commit: report.source.sha.clone(),
                subject: report.source.subject.clone(),
                force_pushed_from: report.force_pushed_from.clone(),
            },
            phase: phase(set, &reports),
            message: set.message.clone(),
            step: set.step.map(|s| format!("{}/{}", s.step, s.of)),
            containers: set
                .target_images
                .iter()
                .map(|(name, image)| ContainerTarget {
                    name: name.clone(),
                    image: image.clone(),
                })
                .collect(),
            pods: reports,
        });
    }
    out
}

/// Writes the report's statuses (off the async runtime: libgit2 blocks). `None` when nothing changed.
///
/// # Errors
/// When the commit cannot be made or pushed.
pub async fn write(
    writer: Arc<StatusWriter>,
    client: &Client,
    cluster: &str,
    report: &SyncReport,
) -> Result<Option<String>, StatusError> {
    let statuses = statuses(client, cluster, report).await;
    if statuses.is_empty() {
        return Ok(None);
    }
    let source = report.source.sha.clone();
    tokio::task::spawn_blocking(move || writer.write(&statuses, &source))
        .await
        .unwrap_or_else(|e| {
            Err(StatusError::Git(super::PublishError::Config {
                reason: format!("the status writer stopped: {e}"),
            }))
        })
}
