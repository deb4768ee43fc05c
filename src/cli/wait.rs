//! `hotsync wait`: for a pipeline that pushes a commit and lets the daemon roll it out. Waits until the
//! status the daemon writes back to Git shows that commit, or a later one of the branch (the daemon
//! coalesces commits), for every set the commit touched, as `argocd app wait` does; exits with `sync`'s
//! codes.

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
    let start = Instant::now();
    let mut last_said = String::new();
    loop {
        if hotsync::git::is_remote(&args.source.repo) {
            repo.fetch(&fetch).context("fetching the repository")?;
        }
        let statuses = read_statuses(&repo, &args.status_branch, args.cluster_name.as_deref())?;
        let at_or_after = |c: &str| {
            c.parse::<CommitId>()
                .is_ok_and(|c| repo.ancestry(c, commit) == Ancestry::Descends)
        };
        let mut waiting = Vec::new();
        for key in &touched {
            let reports = statuses.get(key).cloned().unwrap_or_default();
            match judge(&reports, &at_or_after) {
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

    #[test]
    fn a_failure_of_an_older_commit_is_no_failure_of_this_one() {
        let now = |c: &str| c == "new";
        assert!(matches!(
            judge(&[report("old", "Failed")], &now),
            Standing::Waiting(_)
        ));
    }
}
