//! Argument parsing and wiring: one file per subcommand, one `match` to dispatch.

mod demo;
mod plan;
mod promote;
mod run;
mod set_image;
mod sim;
mod status;
mod sync;
mod validate;
mod wait;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// hotsync keeps OpenKruiseGame GameServerSets in step with a Git repository and rolls sidecar image
/// bumps out as in-place container restarts, so that players stay connected.
#[derive(Debug, Parser)]
#[command(name = "hotsync", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Demo(demo::DemoArgs),
    Plan(plan::PlanArgs),
    Run(run::RunArgs),
    Sync(sync::SyncArgs),
    Validate(validate::ValidateArgs),
    SetImage(set_image::SetImageArgs),
    Wait(wait::WaitArgs),
    Promote(promote::PromoteArgs),
    Abort(promote::AbortArgs),
    Sim(sim::SimArgs),
}

impl Command {
    /// Whether the command reads a local repository and never connects to a Git remote.
    pub fn local_only(&self) -> bool {
        let local = |s: &SourceArgs| !hotsync::git::is_remote(&s.repo);
        match self {
            Command::Plan(a) => local(&a.source),
            Command::Validate(a) => local(&a.source),
            Command::SetImage(a) => local(&a.source),
            Command::Wait(a) => local(&a.source),
            Command::Demo(_)
            | Command::Run(_)
            | Command::Sync(_)
            | Command::Promote(_)
            | Command::Abort(_)
            | Command::Sim(_) => false,
        }
    }
}

/// Where the manifests come from.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// The repository: a local path or a URL (cloned into the cache directory).
    #[arg(long, default_value = ".", env = "HOTSYNC_REPO")]
    pub repo: String,
    /// The directory of the repository that holds the manifests.
    #[arg(long, default_value = ".", env = "HOTSYNC_PATH")]
    pub path: String,
    /// The namespace of sets that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Only these namespaces may be named by manifests (repeatable); a set elsewhere is an error.
    #[arg(
        long = "allow-namespace",
        env = "HOTSYNC_ALLOW_NAMESPACE",
        value_delimiter = ','
    )]
    pub allow_namespace: Vec<String>,
    /// Where clones of remote repositories are kept.
    #[arg(long, env = "HOTSYNC_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fetch only the last N commits of each branch of a remote (a shallow clone; 0: the whole
    /// history, the default). It may change on an existing cache: a larger depth, or 0, fetches the
    /// history it lacks; a smaller one keeps what the cache holds.
    #[arg(long, env = "HOTSYNC_FETCH_DEPTH", value_name = "N",
          value_parser = clap::value_parser!(i32).range(0..))]
    pub fetch_depth: Option<i32>,
    /// The binary that renders Kustomize overlays (directories holding a kustomization.yaml):
    /// `kustomize` (run as `kustomize build`) or `kubectl` (`kubectl kustomize`); by default
    /// `kustomize` when it is on PATH, else `kubectl`.
    #[arg(long, env = "HOTSYNC_KUSTOMIZE_BIN", value_name = "PATH")]
    pub kustomize_bin: Option<PathBuf>,
    /// Let kustomize fetch remote bases (URLs in resources); refused by default, so that what is
    /// rendered comes from the repository alone.
    #[arg(long, env = "HOTSYNC_KUSTOMIZE_ALLOW_REMOTE")]
    pub kustomize_allow_remote: bool,
    /// The binary that renders Helm charts (directories holding a Chart.yaml) with
    /// `helm template`; by default `helm` on PATH.
    #[arg(long, env = "HOTSYNC_HELM_BIN", value_name = "PATH")]
    pub helm_bin: Option<PathBuf>,
    /// The Helm release name charts are rendered with; by default the chart directory's name.
    #[arg(long, env = "HOTSYNC_HELM_RELEASE", value_name = "NAME")]
    pub helm_release: Option<String>,
    /// A values file for the charts, a path from the repository's root (repeatable; later files
    /// win, as with `helm template -f`). A change to it re-renders the charts.
    #[arg(
        long = "helm-values",
        env = "HOTSYNC_HELM_VALUES",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub helm_values: Vec<String>,
}

impl SourceArgs {
    pub fn load_options(&self) -> hotsync::manifest::LoadOptions {
        hotsync::manifest::LoadOptions {
            default_namespace: self.namespace.clone(),
            allowed_namespaces: self.allow_namespace.clone(),
            kustomize: hotsync::render::kustomize::KustomizeOptions {
                bin: self.kustomize_bin.clone(),
                allow_remote: self.kustomize_allow_remote,
                ..Default::default()
            },
            helm: hotsync::render::helm::HelmOptions {
                bin: self.helm_bin.clone(),
                release: self.helm_release.clone(),
                values: self.helm_values.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn cache_root(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    /// The fetch depth, `None` for the whole history.
    pub fn depth(&self) -> Option<i32> {
        self.fetch_depth.filter(|d| *d > 0)
    }

    /// How to fetch the repository: this depth, these credentials. The one place fetch options are
    /// made.
    pub fn fetch_options(&self, auth: hotsync::git::auth::GitAuth) -> hotsync::git::FetchOptions {
        hotsync::git::FetchOptions {
            depth: self.depth(),
            auth,
        }
    }

    pub fn open(&self) -> anyhow::Result<hotsync::git::Repo> {
        // plan and validate take no credentials of their own: the ssh-agent, when there is one.
        let auth = if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            hotsync::git::auth::GitAuth::SshAgent {
                known_hosts: None,
                accept_unknown_hosts: false,
            }
        } else {
            hotsync::git::auth::GitAuth::None
        };
        Ok(hotsync::git::Repo::open_or_clone(
            &self.repo,
            &self.cache_root(),
            &self.fetch_options(auth),
        )?)
    }
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("hotsync")
}

/// How to reach the cluster: kubectl's flags and `KUBECONFIG`.
#[derive(Debug, Args, Clone)]
pub struct KubeArgs {
    /// The kubeconfig file (default: `KUBECONFIG`, then ~/.kube/config, then in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
}

impl KubeArgs {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        use anyhow::Context as _;
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer()
                .await
                .context("no kubeconfig found and not in a cluster")?,
        };
        Ok(kube::Client::try_from(config)?)
    }
}

/// Output formats of reports.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Markdown,
    Json,
}

/// Runs a command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    if matches!(
        cli.command,
        Command::Plan(_)
            | Command::Sync(_)
            | Command::Validate(_)
            | Command::Wait(_)
            | Command::SetImage(_)
    ) {
        // What the library warns about (a corrupt cache cloned again, a force-pushed branch) reaches
        // stderr; the daemon sets its own format.
        run::init_logs(run::LogFormat::Text, "warn");
    }
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Run(args) => run::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Validate(args) => validate::run(args),
        Command::SetImage(args) => set_image::run(args),
        Command::Promote(args) => promote::run(args),
        Command::Abort(args) => promote::abort(args),
        Command::Wait(args) => wait::run(args),
        Command::Sim(args) => sim::run(args),
    }
}
