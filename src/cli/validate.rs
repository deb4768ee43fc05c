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
    /// `text` (problems on stderr, a summary on stdout) or `json` (the sets found and the problems,
    /// in the `errors[]`/`warnings[]` shape of `plan -o json`).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `validate -o json`.
#[derive(serde::Serialize)]
struct Report {
    valid: bool,
    sets: Vec<SetRef>,
    errors: Vec<hotsync::plan::Located>,
    warnings: Vec<hotsync::plan::Located>,
    notes: Vec<hotsync::plan::Located>,
}

#[derive(serde::Serialize)]
struct SetRef {
    namespace: String,
    name: String,
    file: String,
    document: usize,
    line: usize,
}

/// The top of the work tree that holds `path` (the nearest directory above it with a `.git`), and
/// `path` relative to it; `path` itself when it lies in no work tree.
fn worktree_root(path: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    use anyhow::Context as _;
    let abs = std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    let mut top = abs.as_path();
    loop {
        if top.join(".git").exists() {
            let rel = abs
                .strip_prefix(top)
                .unwrap_or(std::path::Path::new(""))
                .to_string_lossy()
                .to_string();
            return Ok((top.to_path_buf(), rel));
        }
        match top.parent() {
            Some(p) => top = p,
            None => return Ok((abs.clone(), String::new())),
        }
    }
}

pub fn run(args: ValidateArgs) -> anyhow::Result<i32> {
    let opts = args.source.load_options();
    let manifests = if args.worktree {
        let (root, dir) = worktree_root(std::path::Path::new(&args.source.path))?;
        hotsync::source::load_worktree(&root, &dir, &opts)?
    } else {
        let repo = args.source.open()?;
        let commit = repo.resolve(&args.rev)?;
        hotsync::source::load_at(&repo, commit, &args.source.path, &opts)?
    };
    let errors = manifests
        .diagnostics
        .iter()
        .filter(|d| d.severity == hotsync::manifest::Severity::Error)
        .count();
    if args.output == Format::Json {
        let mut plan = hotsync::plan::Plan::default();
        plan.add_diagnostics(&manifests.diagnostics);
        let report = Report {
            valid: errors == 0,
            sets: manifests
                .sets
                .iter()
                .map(|s| {
                    let key = s.key();
                    SetRef {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        file: s.origin.file.clone(),
                        document: s.origin.document,
                        line: s.origin.line,
                    }
                })
                .collect(),
            errors: plan.errors,
            warnings: plan.warnings,
            notes: plan.notes,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if errors > 0 { 2 } else { 0 });
    }
    for d in &manifests.diagnostics {
        eprintln!("{d}");
    }
    println!(
        "{} GameServerSet(s) valid, {} error(s).",
        manifests.sets.len(),
        errors
    );
    Ok(if errors > 0 { 2 } else { 0 })
}
