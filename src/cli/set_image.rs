//! `hotsync set-image`: the step a sidecar's CI runs to push a bump. Edits the one scalar that holds a
//! container's image (in the set's file, or, for a set a Kustomize overlay renders, that overlay's
//! `images:` entry, never the base other overlays share) and, with `--commit`, commits it.

use super::SourceArgs;
use anyhow::{bail, Context as _};
use clap::Args;
use hotsync::edit;
use hotsync::manifest::Severity;
use hotsync::render::kustomize;
use std::path::Path;
use std::process::Command;

/// Set a container's image in the repository, changing that one value of the file.
///
/// Exit codes: 0 done (or already so), 2 the set or container is not found, is defined twice, or the
/// file cannot be edited in place.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done (or already so), 2 not found, defined twice, or not editable in place."
)]
pub struct SetImageArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The set, as NAMESPACE/NAME.
    pub set: String,
    /// The container whose image changes.
    pub container: String,
    /// The new image (`repository:tag` or `repository@sha256:...`).
    pub image: String,
    /// Commit the change (the file alone), with `--message` or a message saying what changed.
    #[arg(long)]
    pub commit: bool,
    /// The commit message.
    #[arg(long, short = 'm', requires = "commit")]
    pub message: Option<String>,
}

pub fn run(args: SetImageArgs) -> anyhow::Result<i32> {
    let Some((ns, name)) = args.set.split_once('/') else {
        bail!("name the set as NAMESPACE/NAME, not {:?}", args.set);
    };
    if hotsync::git::is_remote(&args.source.repo) {
        bail!("set-image edits a clone's work tree: pass --repo the path of a clone, not a URL");
    }
    let root = Path::new(&args.source.repo);
    let repo = hotsync::git::Repo::open(root)?;
    let head = repo.resolve("HEAD").context("reading HEAD")?;
    let opts = args.source.load_options();
    let m = hotsync::source::load_at(&repo, head, &args.source.path, &opts)?;
    let twice: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| {
            d.severity == Severity::Error
                && d.message
                    .starts_with(&format!("GameServerSet {ns}/{name} is defined twice"))
        })
        .map(ToString::to_string)
        .collect();
    if !twice.is_empty() {
        eprintln!("error: {}", twice.join("; "));
        return Ok(2);
    }
    let Some(set) = m
        .sets
        .iter()
        .find(|s| s.key().namespace == ns && s.key().name == name)
    else {
        let broken: Vec<String> = m
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        eprintln!(
            "error: GameServerSet {ns}/{name} is not found under {} at HEAD{}",
            args.source.path,
            if broken.is_empty() {
                String::new()
            } else {
                format!(" (files with errors: {})", broken.join("; "))
            }
        );
        return Ok(2);
    };
    let Some(current) = set
        .gss
        .container_images()
        .into_iter()
        .find(|(c, _)| *c == args.container)
        .map(|(_, i)| i)
    else {
        eprintln!(
            "error: GameServerSet {ns}/{name} has no container {} (it has {})",
            args.container,
            set.gss
                .container_images()
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(2);
    };
    if current == args.image {
        println!(
            "{ns}/{name}: {} already runs {}; nothing to change",
            args.container, args.image
        );
        return Ok(0);
    }
    let file = set.origin.file.clone();
    if hotsync::render::helm::is_chart(&file) {
        eprintln!(
            "error: {ns}/{name} is rendered by the Helm chart {file}: set {}'s image in the values file that holds it (hotsync set-image edits manifests and Kustomize overlays, not Helm values)",
            args.container
        );
        return Ok(2);
    }
    let path = root.join(&file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let edited = if kustomize::is_kustomization(&file) {
        let (rendered, _, _) = edit::split_image(&current);
        edit::set_kustomize_image(&text, rendered, &args.image)
    } else {
        edit::set_container_image(
            &text,
            &args.source.namespace,
            ns,
            name,
            &args.container,
            &args.image,
        )
    };
    let edited = match edited {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {file}: {e}");
            return Ok(2);
        }
    };
    std::fs::write(&path, &edited).with_context(|| format!("writing {}", path.display()))?;
    let what = format!(
        "{ns}/{name}: {} {} -> {}",
        args.container, current, args.image
    );
    println!("{what} ({file})");
    if args.commit {
        let message = args.message.clone().unwrap_or_else(|| {
            format!(
                "{ns}/{name}: set {} to {}\n\nWas {current}; edited by hotsync set-image in {file}.",
                args.container, args.image
            )
        });
        git(root, &["add", "--", &file])?;
        git(root, &["commit", "-q", "-m", &message, "--", &file])?;
        println!("committed");
    }
    Ok(0)
}

fn git(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
