use super::{KubeArgs, SourceArgs};
use clap::{Args, ValueEnum};
use hotsync::rollout::{OnFailure, Outcome, Progress, RolloutOptions};
use hotsync::sync::{SyncOptions, SyncReport};
use std::io::IsTerminal as _;
use std::time::Duration;

/// Apply Git to the cluster once: plan each set against the cluster, roll sidecar bumps out as
/// in-place container restarts, wait, report.
///
/// Exit codes: 0 synced (every pod on Git's images and ready, or a progressive rollout paused at a
/// step), 1 rollout failed, 2 invalid input or configuration, 3 refused by policy (a recreate without
/// --allow-recreate, an aborted rollout), 4 timed out, 5 inside a freeze window.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 synced (a progressive rollout paused at a step included), 1 rollout failed, 2 invalid input or configuration, 3 refused by policy (or aborted), 4 timed out, 5 inside a freeze window."
)]
pub struct SyncArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The branch to sync (default: HEAD of a local repository, `main` of a remote one).
    #[arg(long, env = "HOTSYNC_BRANCH")]
    pub branch: Option<String>,
    /// Sync this revision (a commit sha or a tag) instead of the branch's tip. Of a remote, it must
    /// still be on one of its branches: a commit force-pushed away is refused.
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    #[command(flatten)]
    pub auth: super::status::GitAuthArgs,
    #[command(flatten)]
    pub status: super::status::StatusArgs,
    /// Output: text lines (with progress bars on a terminal), or a JSON summary.
    #[arg(short = 'o', long, value_enum, default_value_t = SyncOutput::Text)]
    pub output: SyncOutput,
}

/// `--on-failure`, turned into the library's [`OnFailure`].
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnFailureArg {
    /// Stop the rollout and leave the pod as it is.
    Halt,
    /// Stop the rollout and put the pod's old images back.
    Rollback,
}

impl From<OnFailureArg> for OnFailure {
    fn from(a: OnFailureArg) -> Self {
        match a {
            OnFailureArg::Halt => OnFailure::Halt,
            OnFailureArg::Rollback => OnFailure::Rollback,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SyncOutput {
    Text,
    Json,
}

/// How rollouts behave; shared by `sync` and `run`.
#[derive(Debug, Args, Clone)]
pub struct RolloutArgs {
    /// Wait for changes that OKG rolls out itself (recreate, scale, create) to finish.
    #[arg(long)]
    pub wait: bool,
    /// Bound of the whole wait, e.g. `10m`, `90s`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long one pod may take to restart its containers and be ready.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "HOTSYNC_POD_TIMEOUT")]
    pub pod_timeout: Duration,
    /// Game servers whose opsState is one of these are deferred (comma-separated): left on their old
    /// images, labelled `hotsync.dev/update-pending`, and updated once the opsState leaves the list;
    /// the set stays held meanwhile (its phase is Deferred) so that OKG does not restart them either.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "WaitToBeDeleted,Kill,Maintaining"
    )]
    pub skip_ops_state: Vec<String>,
    /// Defer Allocated game servers too: update only idle ones.
    #[arg(long)]
    pub skip_allocated: bool,
    /// After this long with game servers deferred, report the set Degraded (exit 1); they are never
    /// forced.
    #[arg(long, value_parser = parse_duration, env = "HOTSYNC_DEFER_DEADLINE")]
    pub defer_deadline: Option<Duration>,
    /// How long a pod may stay held by the set's in-place lifecycle hook (PreparingUpdate).
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "HOTSYNC_HOOK_TIMEOUT")]
    pub hook_timeout: Duration,
    /// Do not ask registries whether new images exist before restarting containers into them.
    #[arg(long, env = "HOTSYNC_NO_IMAGE_CHECK")]
    pub no_image_check: bool,
    /// Ask URL instead of HOST about HOST's images (repeatable), e.g. a pull-through mirror:
    /// `registry.example.com=https://mirror.internal`; an `http://` URL is asked in plain HTTP.
    #[arg(
        long = "registry-mirror",
        value_name = "HOST=URL",
        value_delimiter = ',',
        env = "HOTSYNC_REGISTRY_MIRROR"
    )]
    pub registry_mirror: Vec<String>,
    /// What to do with a pod that fails: roll it back (the default) or halt and leave it.
    #[arg(long, value_enum, default_value_t = OnFailureArg::Rollback)]
    pub on_failure: OnFailureArg,
    /// Apply changes that recreate pods (OKG then recreates them); refused otherwise.
    #[arg(long)]
    pub allow_recreate: bool,
    /// Plan against the cluster and validate with a server-side dry run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A freeze window (repeatable): no rollout starts or goes on inside it, for any set (a set's own
    /// windows are its `hotsync.dev/freeze` annotation). DAYS HH:MM-HH:MM TIMEZONE, e.g.
    /// 'Sat 18:00-23:59 Europe/Paris', 'Mon-Fri 20:00-23:00 UTC', '* 12:00-13:00 UTC'.
    #[arg(
        long = "freeze",
        value_name = "WINDOW",
        env = "HOTSYNC_FREEZE",
        value_delimiter = ';'
    )]
    pub freeze: Vec<String>,
    /// Roll out inside freeze windows all the same, for emergencies (logged for each set).
    #[arg(long)]
    pub ignore_freeze: bool,
}

impl RolloutArgs {
    /// The rollout settings these flags make.
    ///
    /// # Errors
    /// A `--registry-mirror` that is not `HOST=URL`, or the system's roots not loading.
    pub fn options(&self) -> anyhow::Result<RolloutOptions> {
        let image_check = if self.no_image_check {
            None
        } else {
            let mut mirrors = std::collections::BTreeMap::new();
            for m in &self.registry_mirror {
                let (host, url) = m
                    .split_once('=')
                    .filter(|(h, u)| {
                        !h.is_empty() && (u.starts_with("http://") || u.starts_with("https://"))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("--registry-mirror {m:?} is not HOST=http(s)://URL")
                    })?;
                mirrors.insert(host.to_string(), url.to_string());
            }
            Some(hotsync::registry::Registries::new(mirrors)?)
        };
        let mut freeze = Vec::with_capacity(self.freeze.len());
        for w in &self.freeze {
            freeze.push(
                hotsync::rollout::freeze::parse(w).map_err(|e| anyhow::anyhow!("--freeze: {e}"))?,
            );
        }
        Ok(RolloutOptions {
            freeze,
            ignore_freeze: self.ignore_freeze,
            skip_ops_states: self.skip_ops_state.clone(),
            skip_allocated: self.skip_allocated,
            defer_deadline: self.defer_deadline,
            hook_timeout: self.hook_timeout,
            image_check,
            on_failure: self.on_failure.into(),
            pod_timeout: self.pod_timeout,
            allow_recreate: self.allow_recreate,
            wait: self.wait,
            wait_timeout: self.timeout,
            dry_run: self.dry_run,
            ..RolloutOptions::default()
        })
    }
}

/// `90s`, `10m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(format!("{s:?} is not a duration like 90s, 10m or 1h")),
    };
    Ok(Duration::from_secs(secs))
}

/// The one settings value of a sync (`sync` and `run`), built and validated once from the arguments.
pub fn sync_options(
    source: &SourceArgs,
    branch: Option<String>,
    rollout: &RolloutArgs,
    auth: &super::status::GitAuthArgs,
) -> anyhow::Result<SyncOptions> {
    Ok(SyncOptions {
        repo: source.repo.clone(),
        branch,
        path: source.path.clone(),
        load: source.load_options(),
        cache_dir: source.cache_root(),
        fetch: source.fetch_options(auth.auth()?),
        rollout: rollout.options()?,
        set_concurrency: 4,
    })
}

pub fn run(args: SyncArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let client = args.kube.client().await?;
        let opts = sync_options(&args.source, args.branch.clone(), &args.rollout, &args.auth)?;
        let tracked = args.branch.clone().unwrap_or_else(|| "main".to_string());
        let writer = if args.rollout.dry_run {
            None
        } else {
            args.status.writer(
                &args.source.repo,
                &tracked,
                &args.source.cache_root(),
                args.auth.auth()?,
            )?
        };
        let cluster = args
            .status
            .cluster_name
            .clone()
            .unwrap_or_else(|| super::status::context_name(&args.kube));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(print_progress(rx, std::io::stderr().is_terminal()));
        let overall = args.rollout.timeout + Duration::from_secs(30);
        let target = hotsync::sync::SyncTarget {
            revision: args.revision.clone(),
            ..Default::default()
        };
        let report = tokio::time::timeout(
            overall,
            hotsync::sync::sync_target(&client, &opts, &target, Some(&tx)),
        )
        .await;
        drop(tx);
        printer.await?;
        let report = match report {
            Ok(r) => r?,
            Err(_) => {
                eprintln!("error: sync did not finish within {}s", overall.as_secs());
                return Ok(4);
            }
        };
        match args.output {
            SyncOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            SyncOutput::Text => print!("{}", render_text(&report)),
        }
        // Status is written also when the rollout failed; a failure to write it is reported, and the
        // exit code stays the rollout's.
        if let Some(w) = writer {
            match hotsync::status::report::write(w, &client, &cluster, &report).await {
                Ok(Some(c)) => eprintln!(
                    "status: committed {} to {}",
                    &c[..c.len().min(12)],
                    args.status.status_branch
                ),
                Ok(None) => eprintln!("status: unchanged"),
                Err(e) => eprintln!(
                    "warning: status not written: {}",
                    hotsync::sync::error_chain(&e)
                ),
            }
        }
        Ok(report.exit_code())
    })
}

async fn print_progress(mut rx: tokio::sync::mpsc::UnboundedReceiver<Progress>, tty: bool) {
    let multi = indicatif::MultiProgress::new();
    let mut bars: std::collections::BTreeMap<String, indicatif::ProgressBar> = Default::default();
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Started { set, pods } if tty => {
                let bar = multi.add(indicatif::ProgressBar::new(pods as u64));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {pos}/{len} pods {msg}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(set.clone());
                bars.insert(set, bar);
            }
            Progress::Started { set, pods } => eprintln!("{set}: rolling out to {pods} pod(s)"),
            Progress::PodDone { set, pod } => match bars.get(&set) {
                Some(bar) => bar.inc(1),
                None => eprintln!("{set}: {pod} updated in place"),
            },
            Progress::Finished { set, outcome, .. } => match bars.get(&set) {
                Some(bar) => bar.finish_with_message(format!("{outcome:?}")),
                None => eprintln!("{set}: {outcome:?}"),
            },
        }
    }
}

pub fn render_text(report: &SyncReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "source {} {}",
        &report.source.sha[..report.source.sha.len().min(12)],
        report.source.subject
    );
    if let Some(old) = &report.force_pushed_from {
        let _ = writeln!(
            s,
            "warning: the branch was force-pushed: {} does not descend from {}, the commit synced before; synced the new head",
            &report.source.sha[..report.source.sha.len().min(12)],
            &old[..old.len().min(12)]
        );
    }
    for e in &report.errors {
        let _ = writeln!(
            s,
            "error: {}:{} (document {}): {}",
            e.file,
            e.line.unwrap_or(0),
            e.document.unwrap_or(0),
            e.message
        );
    }
    if !report.errors.is_empty() {
        let _ = writeln!(s, "nothing was applied: fix the manifests first");
    }
    for set in &report.sets {
        let _ = writeln!(
            s,
            "{}/{}: {:?} ({})",
            set.namespace,
            set.name,
            set.outcome,
            set.impact.as_str()
        );
        if let Some(m) = &set.message {
            let _ = writeln!(s, "  {m}");
        }
        for w in &set.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for p in &set.pods {
            let _ = writeln!(
                s,
                "  pod {}: {:?}{}{}",
                p.name,
                p.result,
                if p.containers.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", p.containers.join(", "))
                },
                p.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    if report.sets.iter().any(|s| s.outcome == Outcome::Refused) {
        let _ = writeln!(s, "some sets were refused by policy (exit 3)");
    }
    s
}
