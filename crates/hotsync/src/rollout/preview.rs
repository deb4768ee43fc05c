//! The plan of Git's sets against the live cluster (`hotsync plan --cluster`): per set the diff a review
//! shows, from what the cluster runs instead of from a base revision, and what the change would do to
//! each pod now: the pods hotsync would restart in place (in the order the rollout plan takes them, with
//! their containers), the pods OKG would recreate, the `Allocated` game servers among them (players on
//! them), the pods left alone by partition or by a deferring opsState, and for a set with canary steps
//! (`hotsync.dev/steps`) which game servers each step restarts and the Allocated ones among them. It
//! reads the cluster and writes nothing.
//!
//! Data: the manifests of one commit (read by the caller) and, per set, [`live::read`]; the pod plan is
//! [`exec::dry_run`], the same pure [`super::plan::plan_set`] a sync executes.

use super::{exec, replicas_owned_elsewhere, RolloutOptions};
use crate::diff::{diff_sets, HeldPod, Impact, PodImpact, PodRestart, SetDiff, StepImpact};
use crate::live::{self, ClusterError, LiveSet};
use crate::manifest::Manifests;
use crate::model::{policy_is_in_place, GameServerSet, LABEL_OPS_STATE};
use crate::plan::{Plan, Revision};
use futures::StreamExt as _;
use kube::Client;

/// The base side of a plan against the cluster.
pub const CLUSTER: &str = "cluster";

/// Plans `manifests` (Git at `head`) against the cluster, `concurrency` sets at a time.
///
/// # Errors
/// When OKG's CRDs are not served or a set cannot be read; manifest errors are in the plan.
pub async fn plan_cluster(
    client: &Client,
    head: Revision,
    manifests: &Manifests,
    opts: &RolloutOptions,
    concurrency: usize,
) -> Result<Plan, ClusterError> {
    let mut plan = Plan {
        base: Revision {
            rev: CLUSTER.to_string(),
            commit: None,
        },
        head,
        ..Plan::default()
    };
    plan.add_diagnostics(&manifests.diagnostics);
    if let Some(first) = manifests.sets.first() {
        live::check_crds(client, &first.key().namespace).await?;
    }
    let diffs: Vec<Result<SetDiff, ClusterError>> = futures::stream::iter(&manifests.sets)
        .map(|desired| async move {
            let key = desired.key();
            let live = live::read(client, &key.namespace, &key.name).await?;
            let mut want = desired.gss.clone();
            if replicas_owned_elsewhere(live.gss.as_ref()) {
                want.spec.replicas = live.gss.as_ref().and_then(|g| g.spec.replicas);
            }
            let mut d = diff_sets(live.gss.as_ref(), Some(&want));
            if d.impact != Impact::NoChange {
                d.pods = Some(pod_impact(&live, &want, &d, opts));
            }
            Ok(d)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for d in diffs {
        let d = d?;
        if d.impact == Impact::NoChange {
            plan.unchanged += 1;
        } else {
            plan.sets.push(d);
        }
    }
    plan.sets
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(plan)
}

/// What the change `d` does to the pods of `live` now.
pub fn pod_impact(
    live: &LiveSet,
    want: &GameServerSet,
    d: &SetDiff,
    opts: &RolloutOptions,
) -> PodImpact {
    let mut out = PodImpact::default();
    let paused = want.rolling_update().paused == Some(true);
    // A new set's pods are created; under OnDelete or paused no pod is touched (the warnings say so).
    if live.gss.is_none() || paused || crate::diff::on_delete(want) {
        return out;
    }
    let pods: Vec<_> = live
        .pods
        .iter()
        .filter(|p| !live::is_terminating(p))
        .collect();
    match d.impact {
        Impact::HotUpdate if policy_is_in_place(Some(want.pod_update_policy())) => {
            let results = exec::dry_run(live, want, opts);
            // The pods not in the dry run are on the new images already.
            let done = pods
                .iter()
                .filter(|p| !results.iter().any(|r| r.name == live::pod_name(p)))
                .count();
            for r in results {
                match r.result {
                    super::PodOutcome::WouldUpdate => {
                        let mut containers = r.containers;
                        // Kruise restarts the containers whose env reads a changed label too.
                        for c in &d.env_restarts {
                            if !containers.contains(c) {
                                containers.push(c.clone());
                            }
                        }
                        out.in_place.push(PodRestart {
                            pod: r.name,
                            containers,
                        });
                    }
                    _ => out.held.push(HeldPod {
                        pod: r.name,
                        reason: r.message.unwrap_or_default(),
                    }),
                }
            }
            if let Ok(Some(steps)) = super::steps::Steps::of(want.metadata.annotations.as_ref()) {
                let replicas = want
                    .spec
                    .replicas
                    .and_then(|r| usize::try_from(r.max(0)).ok())
                    .unwrap_or(pods.len());
                let of = steps.count(replicas);
                let order: Vec<&str> = out.in_place.iter().map(|r| r.pod.as_str()).collect();
                out.steps = steps
                    .split(replicas, done, order.len())
                    .into_iter()
                    .enumerate()
                    .map(|(k, range)| {
                        let total = done + range.end;
                        let restart: Vec<String> = order
                            .get(range)
                            .unwrap_or_default()
                            .iter()
                            .map(|n| (*n).to_string())
                            .collect();
                        let mut allocated: Vec<String> = restart
                            .iter()
                            .filter(|n| {
                                pods.iter()
                                    .any(|p| live::pod_name(p) == *n && is_allocated(p))
                            })
                            .cloned()
                            .collect();
                        allocated.sort();
                        StepImpact {
                            step: k + 1,
                            of,
                            total,
                            restart,
                            allocated,
                        }
                    })
                    .collect();
            }
        }
        Impact::Recreate => {
            // Kruise recreates from the highest ordinal down and keeps `partition` pods; it does not
            // look at opsState, so Allocated game servers are recreated like any other.
            let mut names: Vec<String> =
                pods.iter().map(|p| live::pod_name(p).to_string()).collect();
            names.sort_by_key(|n| std::cmp::Reverse(ordinal(n)));
            let partition =
                usize::try_from(want.rolling_update().partition.unwrap_or(0).max(0)).unwrap_or(0);
            let replicas = usize::try_from(want.spec.replicas.unwrap_or(0).max(0)).unwrap_or(0);
            let updated = replicas.saturating_sub(partition).min(names.len());
            for (i, n) in names.into_iter().enumerate() {
                if i < updated {
                    out.recreated.push(n);
                } else {
                    out.held.push(HeldPod {
                        pod: n,
                        reason: format!("partition {partition}"),
                    });
                }
            }
        }
        _ => {}
    }
    let touched: Vec<&str> = out
        .in_place
        .iter()
        .map(|r| r.pod.as_str())
        .chain(out.recreated.iter().map(String::as_str))
        .collect();
    out.allocated = pods
        .iter()
        .filter(|p| touched.contains(&live::pod_name(p)) && is_allocated(p))
        .map(|p| live::pod_name(p).to_string())
        .collect();
    out.allocated.sort();
    out
}

/// The game server of `pod` is `Allocated`: players are on it.
fn is_allocated(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OPS_STATE))
        .is_some_and(|s| s == "Allocated")
}

fn ordinal(name: &str) -> i64 {
    name.rsplit_once('-')
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or(-1)
}
