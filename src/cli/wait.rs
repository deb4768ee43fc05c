//! `hotsync wait`: for a pipeline that pushes a commit and lets the daemon roll it out. Waits until the
//! status the daemon writes back to Git shows that commit, or a later one of the branch (the daemon
//! coalesces commits), for every set the commit touched, as `argocd app wait` does; exits with `sync`'s
//! codes. With `--kubeconfig`, it reads the cluster instead: the set's `hotsync.dev/revision`, hotsync's
//! hold (a rollout under way, or game servers deferred), a pause, OKG's observed generation, the pods on
//! the template's images and ready, and the daemon's rollout Events.

use super::status::GitAuthArgs;
use super::SourceArgs;
use anyhow::Context as _;
use clap::Args;
use hotsync::git::{Ancestry, CommitId, PathEntry, Repo};
use hotsync::manifest::SetKey;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Wait until the daemon has rolled a commit out, by the status it writes back to Git.
///
/// Exit codes: 0 synced, 1 failed (or degraded), 2 invalid input or error, 3 refused by policy, 4 timed
/// out.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 synced, 1 failed (or degraded), 2 invalid input or error, 3 refused by policy, 4 timed out."
)]
pub struct WaitArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub auth: GitAuthArgs,
    /// The branch the daemon tracks (default: the repository's HEAD).
    #[arg(long, env = "HOTSYNC_BRANCH")]
    pub branch: Option<String>,
    /// The commit to wait for (default: the tip of the branch).
    #[arg(long)]
    pub commit: Option<String>,
    /// The branch the daemon writes status to.
    #[arg(long, default_value = "hotsync-status", env = "HOTSYNC_STATUS_BRANCH")]
    pub status_branch: String,
    /// Only this cluster's status (default: every cluster that reports the set).
    #[arg(long, env = "HOTSYNC_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Give up after this long (exit 4).
    #[arg(long, default_value = "10m", value_parser = super::sync::parse_duration)]
    pub timeout: Duration,
    /// How often the repository is read again.
    #[arg(long, default_value = "2s", value_parser = super::sync::parse_duration)]
    pub interval: Duration,
    /// Judge from the cluster this kubeconfig reaches instead of the status in Git.
    /// (`KUBECONFIG` is not read here: without this flag, `wait` reads Git.)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context, with --kubeconfig.
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
}

/// One status file: the commit it reports and its phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub cluster: String,
    pub commit: String,
    pub phase: String,
    pub message: Option<String>,
}

/// Where a set stands against the commit waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// No status of it yet, or one of an older commit.
    Waiting(String),
    Synced,
    /// Failed or degraded at the commit or later.
    Failed(String),
    /// Refused by policy (a recreate not allowed, a paused set).
    Refused(String),
}

/// Judges one set from its status files; `at_or_after` says whether a reported commit is the one
/// waited for or a later one of the branch.
pub fn judge(reports: &[Reported], at_or_after: &dyn Fn(&str) -> bool) -> Standing {
    if reports.is_empty() {
        return Standing::Waiting("no status yet".to_string());
    }
    let mut waiting = Vec::new();
    for r in reports {
        if !at_or_after(&r.commit) {
            waiting.push(format!(
                "{}: {} at {}",
                r.cluster,
                r.phase,
                short(&r.commit)
            ));
            continue;
        }
        let why = || {
            format!(
                "{}: {}{}",
                r.cluster,
                r.phase,
                r.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        };
        match r.phase.as_str() {
            "Synced" => {}
            "Failed" | "Degraded" => return Standing::Failed(why()),
            "OutOfSync" => return Standing::Refused(why()),
            // Progressing, Deferred (game servers wait for their players): not done.
            _ => waiting.push(why()),
        }
    }
    if waiting.is_empty() {
        Standing::Synced
    } else {
        Standing::Waiting(waiting.join("; "))
    }
}

/// A set as the cluster holds it, reduced to what `wait --kubeconfig` judges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStanding {
    /// `hotsync.dev/revision`: the commit of hotsync's last apply (written at the first held apply).
    pub revision: Option<String>,
    /// hotsync's hold is on the set: a rollout under way or stopped by a failure, or game servers deferred.
    pub held: bool,
    /// `hotsync.dev/deferred-since`, on a held set.
    pub deferred_since: Option<String>,
    /// `spec.updateStrategy.rollingUpdate.paused` without hotsync's hold: someone paused it.
    pub paused: bool,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub replicas: i32,
    /// Pods on every image of the template, ready, not terminating.
    pub pods_done: i32,
    /// The latest of hotsync's rollout Events on the set: its reason, the commit its note names, its note.
    pub last_rollout_event: Option<(String, Option<String>, String)>,
}

/// Judges one set from the cluster; `at_or_after` as in [`judge`].
pub fn judge_live(live: Option<&LiveStanding>, at_or_after: &dyn Fn(&str) -> bool) -> Standing {
    let Some(l) = live else {
        return Standing::Waiting("not in the cluster yet".to_string());
    };
    match l.revision.as_deref() {
        Some(r) if at_or_after(r) => {}
        Some(r) => return Standing::Waiting(format!("the cluster is at {}", short(r))),
        None => return Standing::Waiting("not applied by hotsync yet".to_string()),
    }
    if l.held {
        if let Some((reason, Some(c), note)) = &l.last_rollout_event {
            if at_or_after(c) {
                match reason.as_str() {
                    "RolloutFailed" => return Standing::Failed(note.clone()),
                    "RolloutAborted" => return Standing::Refused(note.clone()),
                    "RolloutPaused" => {
                        return Standing::Waiting(format!(
                            "Paused at a step, not done until promoted: {note}"
                        ))
                    }
                    "RolloutFrozen" => {
                        return Standing::Waiting(format!("inside a freeze window: {note}"))
                    }
                    _ => {}
                }
            }
        }
        return Standing::Waiting(match &l.deferred_since {
            Some(since) => format!(
                "Deferred since {since}: game servers wait for their players, and the set stays held; not done"
            ),
            None => "Progressing: hotsync holds the set while it restarts containers".to_string(),
        });
    }
    if l.paused {
        return Standing::Waiting(
            "paused (spec.updateStrategy.rollingUpdate.paused, not by hotsync): not done until it is resumed"
                .to_string(),
        );
    }
    if let (Some(g), Some(o)) = (l.generation, l.observed_generation) {
        if o < g {
            return Standing::Waiting(format!("OKG has observed generation {o} of {g}"));
        }
    }
    if l.pods_done < l.replicas {
        return Standing::Waiting(format!(
            "{} of {} pod(s) on the new images and ready",
            l.pods_done, l.replicas
        ));
    }
    Standing::Synced
}

/// Reads what [`judge_live`] needs of one set.
async fn read_live(client: &kube::Client, key: &SetKey) -> anyhow::Result<Option<LiveStanding>> {
    use hotsync::rollout::{ANNOTATION_DEFERRED_SINCE, ANNOTATION_HOLD, ANNOTATION_REVISION};
    let live = hotsync::live::read(client, &key.namespace, &key.name).await?;
    let Some(gss) = &live.gss else {
        return Ok(None);
    };
    let annotations = gss.metadata.annotations.clone().unwrap_or_default();
    let images = gss.container_images();
    let pods_done = live
        .pods
        .iter()
        .filter(|p| {
            hotsync::live::is_ready(p)
                && !hotsync::live::is_terminating(p)
                && images
                    .iter()
                    .all(|(c, i)| hotsync::live::spec_image(p, c) == Some(i.as_str()))
        })
        .count();
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), &key.namespace);
    let list = events
        .list(&kube::api::ListParams::default())
        .await
        .with_context(|| format!("listing the events of {key}"))?;
    let last_rollout_event = list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("GameServerSet") && r.name.as_deref() == Some(&key.name)
            }) && e
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("Rollout"))
        })
        .max_by_key(|e| {
            e.series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .map(|e| {
            let note = e.note.unwrap_or_default();
            (
                e.reason.unwrap_or_default(),
                hotsync::daemon::note_commit(&note).map(str::to_string),
                note,
            )
        });
    let rolling = gss.rolling_update();
    Ok(Some(LiveStanding {
        revision: annotations.get(ANNOTATION_REVISION).cloned(),
        held: annotations.contains_key(ANNOTATION_HOLD),
        deferred_since: annotations.get(ANNOTATION_DEFERRED_SINCE).cloned(),
        paused: rolling.paused.unwrap_or(false) && !annotations.contains_key(ANNOTATION_HOLD),
        generation: gss.metadata.generation,
        observed_generation: gss.status.as_ref().and_then(|s| s.observed_generation),
        replicas: gss.spec.replicas.unwrap_or(0),
        pods_done: i32::try_from(pods_done).unwrap_or(i32::MAX),
        last_rollout_event,
    }))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

pub fn run(args: WaitArgs) -> anyhow::Result<i32> {
    let auth = args.auth.auth()?;
    let fetch = args.source.fetch_options(auth);
    let repo = Repo::open_or_clone(&args.source.repo, &args.source.cache_root(), &fetch)?;
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => "HEAD".to_string(),
    };
    let commit = repo
        .resolve(args.commit.as_deref().unwrap_or(&branch))
        .context("resolving the commit to wait for")?;
    let touched = touched_sets(&repo, commit, &args.source)?;
    if touched.is_empty() {
        println!(
            "{}: the commit changes no GameServerSet under {}; nothing to wait for",
            short(&commit.to_string()),
            args.source.path
        );
        return Ok(0);
    }
    println!(
        "waiting for {} to be rolled out: {}",
        short(&commit.to_string()),
        touched
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cluster = match &args.kubeconfig {
        Some(path) => {
            let kube = super::KubeArgs {
                kubeconfig: Some(path.clone()),
                context: args.context.clone(),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(kube.client())?;
            Some((rt, client))
        }
        None => None,
    };
    let start = Instant::now();
    let mut last_said = String::new();
    loop {
        if hotsync::git::is_remote(&args.source.repo) {
            repo.fetch(&fetch).context("fetching the repository")?;
        }
        let statuses = match &cluster {
            None => read_statuses(&repo, &args.status_branch, args.cluster_name.as_deref())?,
            Some(_) => BTreeMap::new(),
        };
        let at_or_after = |c: &str| {
            c.parse::<CommitId>()
                .is_ok_and(|c| repo.ancestry(c, commit) == Ancestry::Descends)
        };
        let mut waiting = Vec::new();
        for key in &touched {
            let standing = match &cluster {
                None => judge(
                    &statuses.get(key).cloned().unwrap_or_default(),
                    &at_or_after,
                ),
                Some((rt, client)) => {
                    let live = rt.block_on(read_live(client, key))?;
                    judge_live(live.as_ref(), &at_or_after)
                }
            };
            match standing {
                Standing::Synced => {}
                Standing::Waiting(why) => waiting.push(format!("{key} ({why})")),
                Standing::Failed(why) => {
                    println!("{key} failed: {why}");
                    return Ok(1);
                }
                Standing::Refused(why) => {
                    println!("{key} is out of sync: {why}");
                    return Ok(3);
                }
            }
        }
        if waiting.is_empty() {
            println!(
                "{} synced: {} set(s) after {:.0}s",
                short(&commit.to_string()),
                touched.len(),
                start.elapsed().as_secs_f64()
            );
            return Ok(0);
        }
        let said = format!("waiting for {}", waiting.join(", "));
        if said != last_said {
            println!("{said}");
            last_said = said;
        }
        if start.elapsed() >= args.timeout {
            println!(
                "timed out after {}s: {}",
                args.timeout.as_secs(),
                waiting.join(", ")
            );
            return Ok(4);
        }
        std::thread::sleep(
            args.interval
                .min(args.timeout.saturating_sub(start.elapsed())),
        );
    }
}

/// The sets whose manifests the commit changed against its first parent (every set, for a root
/// commit), less those it deletes.
fn touched_sets(repo: &Repo, commit: CommitId, source: &SourceArgs) -> anyhow::Result<Vec<SetKey>> {
    let opts = source.load_options();
    let head = hotsync::review::revision(repo, &commit.to_string())?;
    let Some(parent) = repo.first_parent(commit) else {
        let m = hotsync::source::load_at(repo, commit, &source.path, &opts)?;
        return Ok(m.sets.iter().map(|s| s.key()).collect());
    };
    let base = hotsync::review::revision(repo, &parent.to_string())?;
    let plan = hotsync::review::plan_between(repo, base, head, &source.path, &opts)?;
    if !plan.errors.is_empty() {
        anyhow::bail!(
            "the commit's manifests have errors, so the daemon will not roll it out: {}",
            plan.errors
                .iter()
                .map(|e| format!("{}: {}", e.file, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(plan
        .sets
        .iter()
        .filter(|s| s.impact != hotsync::diff::Impact::Delete)
        .map(|s| SetKey {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
        })
        .collect())
}

/// Every status file on the status branch (`status/<cluster>/<namespace>/<name>.yaml`), by set.
fn read_statuses(
    repo: &Repo,
    branch: &str,
    cluster: Option<&str>,
) -> anyhow::Result<BTreeMap<SetKey, Vec<Reported>>> {
    let mut out: BTreeMap<SetKey, Vec<Reported>> = BTreeMap::new();
    let Ok(tip) = repo.resolve(branch) else {
        return Ok(out);
    };
    if repo.entry(tip, "status")? != Some(PathEntry::Dir) {
        return Ok(out);
    }
    for f in repo.manifest_files(tip, "status")? {
        let parts: Vec<&str> = f.path.split('/').collect();
        let [_, c, ns, file] = parts.as_slice() else {
            continue;
        };
        if cluster.is_some_and(|want| want != *c) || f.symlink {
            continue;
        }
        let Some(name) = file.strip_suffix(".yaml") else {
            continue;
        };
        let text = String::from_utf8_lossy(&repo.read_blob(f.blob)?).to_string();
        let doc: serde_json::Value = match serde_saphyr::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("warning: {} on {branch} is not YAML: {e}", f.path);
                continue;
            }
        };
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        out.entry(SetKey {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
        .or_default()
        .push(Reported {
            cluster: c.to_string(),
            commit: s(&doc["source"]["commit"]),
            phase: s(&doc["phase"]),
            message: doc["message"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(commit: &str, phase: &str) -> Reported {
        Reported {
            cluster: "prod".into(),
            commit: commit.into(),
            phase: phase.into(),
            message: None,
        }
    }

    #[test]
    fn a_set_is_synced_when_its_status_shows_the_commit_or_a_later_one_synced() {
        let later = |c: &str| c == "new" || c == "newer";
        assert_eq!(
            judge(&[report("newer", "Synced")], &later),
            Standing::Synced
        );
        assert!(matches!(
            judge(&[report("old", "Synced")], &later),
            Standing::Waiting(_)
        ));
    }

    #[test]
    fn deferred_and_progressing_are_not_done_and_failed_is() {
        let now = |c: &str| c == "new";
        for phase in ["Progressing", "Deferred"] {
            assert!(
                matches!(judge(&[report("new", phase)], &now), Standing::Waiting(ref w) if w.contains(phase)),
                "{phase}"
            );
        }
        assert!(matches!(
            judge(&[report("new", "Failed")], &now),
            Standing::Failed(_)
        ));
        assert!(matches!(
            judge(&[report("new", "OutOfSync")], &now),
            Standing::Refused(_)
        ));
    }

    fn live() -> LiveStanding {
        LiveStanding {
            revision: Some("new".into()),
            generation: Some(2),
            observed_generation: Some(2),
            replicas: 3,
            pods_done: 3,
            ..LiveStanding::default()
        }
    }

    #[test]
    fn from_the_cluster_a_set_is_done_at_the_commit_with_every_pod_on_it_and_no_hold() {
        let now = |c: &str| c == "new";
        assert_eq!(judge_live(Some(&live()), &now), Standing::Synced);
        let behind = LiveStanding {
            pods_done: 2,
            ..live()
        };
        assert!(
            matches!(judge_live(Some(&behind), &now), Standing::Waiting(w) if w.contains("2 of 3"))
        );
        let older = LiveStanding {
            revision: Some("old".into()),
            ..live()
        };
        assert!(matches!(
            judge_live(Some(&older), &now),
            Standing::Waiting(_)
        ));
        assert!(matches!(judge_live(None, &now), Standing::Waiting(_)));
        let unobserved = LiveStanding {
            observed_generation: Some(1),
            ..live()
        };
        assert!(matches!(
            judge_live(Some(&unobserved), &now),
            Standing::Waiting(_)
        ));
    }

    #[test]
    fn from_the_cluster_the_revision_alone_is_not_done_while_held_deferred_or_paused() {
        let now = |c: &str| c == "new";
        let held = LiveStanding {
            held: true,
            ..live()
        };
        assert!(
            matches!(judge_live(Some(&held), &now), Standing::Waiting(w) if w.contains("Progressing"))
        );
        let deferred = LiveStanding {
            held: true,
            deferred_since: Some("2026-12-03T07:00:00Z".into()),
            ..live()
        };
        assert!(
            matches!(judge_live(Some(&deferred), &now), Standing::Waiting(w) if w.contains("Deferred"))
        );
        let paused = LiveStanding {
            paused: true,
            ..live()
        };
        assert!(
            matches!(judge_live(Some(&paused), &now), Standing::Waiting(w) if w.contains("paused"))
        );
    }

    #[test]
    fn from_the_cluster_a_failure_counts_only_for_this_commit_and_while_the_hold_stays() {
        let now = |c: &str| c == "new";
        let event = |c: &str| {
            Some((
                "RolloutFailed".to_string(),
                Some(c.to_string()),
                format!("outcome Failed at commit {c}"),
            ))
        };
        let failed = LiveStanding {
            held: true,
            last_rollout_event: event("new"),
            ..live()
        };
        assert!(matches!(
            judge_live(Some(&failed), &now),
            Standing::Failed(_)
        ));
        let older = LiveStanding {
            held: true,
            last_rollout_event: event("old"),
            ..live()
        };
        assert!(matches!(
            judge_live(Some(&older), &now),
            Standing::Waiting(_)
        ));
        let released = LiveStanding {
            last_rollout_event: event("new"),
            ..live()
        };
        assert_eq!(judge_live(Some(&released), &now), Standing::Synced);
    }

    #[test]
    fn a_failure_of_an_older_commit_is_no_failure_of_this_one() {
        let now = |c: &str| c == "new";
        assert!(matches!(
            judge(&[report("old", "Failed")], &now),
            Standing::Waiting(_)
        ));
    }
}
