use super::{KubeArgs, Output, SourceArgs};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hotsync::diff::Impact;
use std::io::IsTerminal as _;

/// Review a change: the semantic diff of the GameServerSets between two revisions, or between the
/// cluster and a revision (`--cluster`).
///
/// For each set: hot update (containers restart in place), recreate (pods deleted, players
/// disconnected), scale, config change, create or delete; which containers; what is risky. Against the
/// cluster, also which pods restart in place and in which order, which are recreated, which game
/// servers among them are Allocated (players on them), and which are left alone.
///
/// Exit codes: 0 no change, 1 changes, 2 invalid input or error, 3 a --fail-on class is present.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 no change, 1 changes, 2 invalid input or error, 3 a --fail-on class is present."
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The revision to compare from. Default: the merge base of --head and origin/main.
    #[arg(long, conflicts_with = "cluster")]
    pub base: Option<String>,
    /// Compare from what the cluster runs instead of a base revision (reads the cluster, writes
    /// nothing).
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// With --cluster: game servers whose opsState is one of these are shown left alone, as `sync`
    /// would defer them (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "cluster")]
    pub skip_ops_state: Vec<String>,
    /// With --cluster: Allocated game servers are shown left alone, as `sync --skip-allocated` would.
    #[arg(long, requires = "cluster")]
    pub skip_allocated: bool,
    /// The revision to compare to.
    #[arg(long, default_value = "HEAD")]
    pub head: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Exit with 3 when a set has this impact (repeatable), e.g. `--fail-on recreate`.
    #[arg(long, value_enum)]
    pub fail_on: Vec<FailOn>,
}

/// Impacts that `--fail-on` can name.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FailOn {
    Recreate,
    Delete,
    Create,
    Hotupdate,
    Scale,
    Config,
}

impl FailOn {
    fn impact(self) -> Impact {
        match self {
            FailOn::Recreate => Impact::Recreate,
            FailOn::Delete => Impact::Delete,
            FailOn::Create => Impact::Create,
            FailOn::Hotupdate => Impact::HotUpdate,
            FailOn::Scale => Impact::Scale,
            FailOn::Config => Impact::Config,
        }
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<i32> {
    let repo = args.source.open()?;
    let head = hotsync::review::revision(&repo, &args.head)?;
    if args.cluster {
        let manifests = hotsync::review::manifests_at(
            &repo,
            &head,
            &args.source.path,
            &args.source.load_options(),
        )?;
        drop(repo);
        let opts = hotsync::rollout::RolloutOptions {
            skip_ops_states: args.skip_ops_state.clone(),
            skip_allocated: args.skip_allocated,
            ..Default::default()
        };
        let runtime =
            tokio::runtime::Runtime::new().context("could not start the async runtime")?;
        let plan = runtime.block_on(async {
            let client = args.kube.client().await?;
            anyhow::Ok(
                hotsync::rollout::preview::plan_cluster(&client, head, &manifests, &opts, 8)
                    .await?,
            )
        })?;
        return Ok(print(&plan, &args));
    }
    let base = match &args.base {
        Some(b) => hotsync::review::revision(&repo, b)?,
        None => hotsync::review::default_base(&repo, &head).context(
            "no --base given and the repository has no origin/main to take the merge base with",
        )?,
    };
    let plan = hotsync::review::plan_between(
        &repo,
        base,
        head,
        &args.source.path,
        &args.source.load_options(),
    )?;
    Ok(print(&plan, &args))
}

/// Prints the plan in the asked format; returns the exit code.
fn print(plan: &hotsync::plan::Plan, args: &PlanArgs) -> i32 {
    let out = match args.output {
        Output::Json => plan.to_json(),
        Output::Markdown => plan.to_markdown(),
        Output::Text => plan.to_text(std::io::stdout().is_terminal()),
    };
    println!("{}", out.trim_end());
    exit_code(plan, &args.fail_on)
}

/// 2 on errors, 3 when a --fail-on impact is present, 1 on changes, 0 otherwise.
pub fn exit_code(plan: &hotsync::plan::Plan, fail_on: &[FailOn]) -> i32 {
    if !plan.errors.is_empty() {
        2
    } else if fail_on.iter().any(|f| plan.has_impact(f.impact())) {
        3
    } else if plan.has_changes() {
        1
    } else {
        0
    }
}
