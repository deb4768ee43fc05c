use super::SourceArgs;
use clap::Args;

/// Check manifests without a cluster: every problem with file, document and line.
///
/// Exit codes: 0 valid, 2 invalid input or error.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 valid, 2 invalid input or error.")]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The revision to check.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Check the files on disk under --path instead of a commit (for edits not yet committed).
    #[arg(long, conflicts_with = "rev")]
    pub worktree: bool,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<i32> {
    let opts = args.source.load_options();
    let manifests = if args.worktree {
        hotsync::manifest::load_dir(std::path::Path::new(&args.source.path), &opts)?
    } else {
        let repo = args.source.open()?;
        let commit = repo.resolve(&args.rev)?;
        hotsync::source::load_at(&repo, commit, &args.source.path, &opts)?
    };
    for d in &manifests.diagnostics {
        eprintln!("{d}");
    }
    let errors = manifests
        .diagnostics
        .iter()
        .filter(|d| d.severity == hotsync::manifest::Severity::Error)
        .count();
    println!(
        "{} GameServerSet(s) valid, {} error(s).",
        manifests.sets.len(),
        errors
    );
    Ok(if errors > 0 { 2 } else { 0 })
}
