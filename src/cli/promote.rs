//! `hotsync promote` and `hotsync abort`. `promote` moves a progressive rollout (`hotsync.dev/steps`) paused at a step on to the
//! next one, or with `--all` to the last. The promotion is recorded on the live set, so that every
//! `sync`, the daemon and a restarted daemon see it; the rollout itself goes on at the next sync (the
//! daemon checks a paused set again within seconds). `abort` records on the live set that the rollout
//! under way is aborted: the next sync rolls the pods it updated back.

use super::KubeArgs;
use anyhow::Context as _;
use clap::Args;
use hotsync::model::GameServerSet;
use hotsync::rollout::steps::{self, Steps};
use kube::api::{Patch, PatchParams};
use kube::Api;

/// Promote a rollout paused at a step (`hotsync.dev/steps`) to its next step.
///
/// Exit codes: 0 promoted, 2 invalid input or error (no such set, no rollout under way, no steps, a
/// rollout stopped by its gate).
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 promoted, 2 invalid input or error.")]
pub struct PromoteArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The set, as NAMESPACE/NAME.
    pub set: String,
    /// Promote to the last step at once (every pod).
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: PromoteArgs) -> anyhow::Result<i32> {
    on_live_set(&args.kube, &args.set, |api, ns, name, gss| async move {
        let annotations = gss.metadata.annotations.clone().unwrap_or_default();
        let steps = match Steps::of(Some(&annotations)) {
            Ok(Some(s)) => s,
            Ok(None) => {
                eprintln!(
                    "error: {ns}/{name} has no {} annotation: its rollouts have no steps to promote",
                    steps::ANNOTATION_STEPS
                );
                return Ok(2);
            }
            Err((_, e)) => {
                eprintln!("error: {ns}/{name}: {e}");
                return Ok(2);
            }
        };
        let Some(fingerprint) = annotations.get(hotsync::rollout::ANNOTATION_HOLD) else {
            eprintln!("error: {ns}/{name} has no rollout under way (hotsync does not hold it): nothing to promote");
            return Ok(2);
        };
        let record = |key: &str| annotations.get(key).map(String::as_str);
        let stopped = steps::aborted_for(record(steps::ANNOTATION_ABORTED), fingerprint)
            .map(|at| format!("its rollout was aborted at {at}; an aborted rollout is not promoted: commit another template"))
            .or_else(|| {
                steps::gate_failed_for(record(steps::ANNOTATION_GATE_FAILED), fingerprint).map(|why| {
                    format!("{why}; a rollout stopped by its gate is not promoted: commit another template (or abort it)")
                })
            });
        if let Some(why) = stopped {
            eprintln!("error: {ns}/{name}: {why}");
            return Ok(2);
        }
        let replicas = usize::try_from(gss.spec.replicas.unwrap_or(0).max(0)).unwrap_or(0);
        let of = steps.count(replicas);
        let at = steps::step_for(
            annotations.get(steps::ANNOTATION_STEP).map(String::as_str),
            fingerprint,
        )
        .map_or(0, |(k, _)| k);
        let to = if args.all {
            of.saturating_sub(1)
        } else {
            at + 1
        };
        if to <= at || to >= of {
            println!(
                "{ns}/{name} is already at step {} of {of}, the last: nothing to promote",
                at + 1
            );
            return Ok(0);
        }
        let patch = serde_json::json!({"metadata": {"annotations": {
            steps::ANNOTATION_STEP: steps::step_value(fingerprint, to, None)
        }}});
        let pp = PatchParams {
            field_manager: Some("hotsync-promote".to_string()),
            ..PatchParams::default()
        };
        api.patch(&name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("recording the promotion on gameserverset {ns}/{name}"))?;
        println!(
            "{ns}/{name}: promoted from step {} to step {} of {of} ({} of {replicas} pod(s)); the rollout goes on at the next sync",
            at + 1,
            to + 1,
            steps.pods_at(to, replicas),
        );
        Ok(0)
    })
}

/// Abort a rollout under way: the pods it updated are put back on their images, and it stays aborted
/// (even with `--self-heal`) until Git holds another template for the set.
///
/// Exit codes: 0 aborted, 2 invalid input or error (no such set, no rollout under way).
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 aborted, 2 invalid input or error.")]
pub struct AbortArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The set, as NAMESPACE/NAME.
    pub set: String,
}

pub fn abort(args: AbortArgs) -> anyhow::Result<i32> {
    on_live_set(&args.kube, &args.set, |api, ns, name, gss| async move {
        let annotations = gss.metadata.annotations.clone().unwrap_or_default();
        let Some(fingerprint) = annotations.get(hotsync::rollout::ANNOTATION_HOLD) else {
            eprintln!("error: {ns}/{name} has no rollout under way (hotsync does not hold it): nothing to abort");
            return Ok(2);
        };
        if let Some(at) = steps::aborted_for(
            annotations
                .get(steps::ANNOTATION_ABORTED)
                .map(String::as_str),
            fingerprint,
        ) {
            println!("{ns}/{name}: its rollout was already aborted at {at}");
            return Ok(0);
        }
        let at = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {
            steps::ANNOTATION_ABORTED: format!("{fingerprint} {at}")
        }}});
        let pp = PatchParams {
            field_manager: Some("hotsync-abort".to_string()),
            ..PatchParams::default()
        };
        api.patch(&name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("recording the abort on gameserverset {ns}/{name}"))?;
        println!(
            "{ns}/{name}: rollout aborted; the next sync puts the pods it updated back on their images, and the set stays as it is until Git holds another template"
        );
        Ok(0)
    })
}

/// Reads the live set `NAMESPACE/NAME` and runs `act` on it (its API, namespace, name and object);
/// exit 2 with a message when the name is malformed or the set is not in the cluster.
fn on_live_set<F, Fut>(kube: &KubeArgs, set: &str, act: F) -> anyhow::Result<i32>
where
    F: FnOnce(Api<GameServerSet>, String, String, GameServerSet) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let Some((ns, name)) = set.split_once('/') else {
        eprintln!("error: {set:?} is not NAMESPACE/NAME");
        return Ok(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube.client().await?;
        let api: Api<GameServerSet> = Api::namespaced(client, ns);
        let Some(gss) = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading gameserverset {ns}/{name}"))?
        else {
            eprintln!("error: GameServerSet {ns}/{name} is not in the cluster");
            return Ok(2);
        };
        act(api, ns.to_string(), name.to_string(), gss).await
    })
}
