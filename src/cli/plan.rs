use super::{Output, SourceArgs};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hotsync::diff::Impact;
use std::io::IsTerminal as _;

/// Review a change: the semantic diff of the GameServerSets between two revisions.
///
/// For each set: hot update (containers restart in place), recreate (pods deleted, players
/// disconnected), scale, config change, create or delete; which containers; what is risky.
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
    #[arg(long)]
    pub base: Option<String>,
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
    let out = match args.output {
        Output::Json => plan.to_json(),
        Output::Markdown => plan.to_markdown(),
        Output::Text => plan.to_text(std::io::stdout().is_terminal()),
    };
    println!("{}", out.trim_end());
    Ok(exit_code(&plan, &args.fail_on))
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
