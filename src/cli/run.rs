use super::sync::{sync_options, RolloutArgs};
use super::{KubeArgs, SourceArgs};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hotsync::daemon::{lease::LeaseConfig, DaemonConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The daemon: keeps the cluster in step with Git. Polls the branch, takes webhooks, watches a local
/// repository, reports drift (and heals it with --self-heal), elects a leader on a Lease, and serves
/// /healthz, /readyz, /metrics and /webhook.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The branch to track.
    #[arg(long, default_value = "main", env = "HOTSYNC_BRANCH")]
    pub branch: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    #[command(flatten)]
    pub auth: super::status::GitAuthArgs,
    #[command(flatten)]
    pub status: super::status::StatusArgs,
    /// How often to ask the remote for the branch's tip (one ref negotiation when nothing changed).
    #[arg(long, default_value = "30s", value_parser = super::sync::parse_duration, env = "HOTSYNC_INTERVAL")]
    pub interval: Duration,
    /// Address of the HTTP endpoints (health, readiness, metrics, webhook).
    #[arg(long, default_value = "0.0.0.0:8080", env = "HOTSYNC_LISTEN")]
    pub listen: SocketAddr,
    /// A file holding the webhook secret (GitHub's HMAC secret, or a bearer token). No file: no webhook.
    #[arg(long, env = "HOTSYNC_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The Lease used for leader election.
    #[arg(long, default_value = "hotsync", env = "HOTSYNC_LEASE_NAME")]
    pub lease_name: String,
    /// The namespace of the Lease (the daemon's own).
    #[arg(long, default_value = "default", env = "HOTSYNC_LEASE_NAMESPACE")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: the host name, which is the pod name).
    #[arg(long, env = "HOTSYNC_IDENTITY")]
    pub identity: Option<String>,
    /// How long a lease lasts without renewal; a new leader takes over within it.
    #[arg(long, default_value = "15s", value_parser = super::sync::parse_duration, env = "HOTSYNC_LEASE_DURATION")]
    pub lease_duration: Duration,
    /// Run without leader election (one replica only).
    #[arg(long, env = "HOTSYNC_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Revert out-of-band image changes as hot updates.
    #[arg(long, env = "HOTSYNC_SELF_HEAL")]
    pub self_heal: bool,
    /// Log lines as text or JSON (level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "HOTSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Log lines to stderr, at `RUST_LOG`'s level (default: `default`).
pub fn init_logs(format: LogFormat, default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("hotsync-{}", std::process::id()))
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    init_logs(args.log_format, "info");
    let webhook_secret = match &args.webhook_secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the webhook secret file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let mut rollout = args.rollout.clone();
    // The daemon never blocks on OKG's own rollouts: it reports them as progressing and looks again.
    rollout.wait = false;
    let sync = sync_options(
        &args.source,
        Some(args.branch.clone()),
        &rollout,
        &args.auth,
    )?;
    let status = args
        .status
        .writer(
            &args.source.repo,
            &args.branch,
            &args.source.cache_root(),
            args.auth.auth()?,
        )?
        .map(|writer| hotsync::daemon::StatusSink {
            writer,
            cluster: args
                .status
                .cluster_name
                .clone()
                .unwrap_or_else(|| super::status::context_name(&args.kube)),
        });
    let cfg = DaemonConfig {
        sync,
        branch: args.branch.clone(),
        interval: args.interval,
        listen: args.listen,
        webhook_secret,
        lease: (!args.no_leader_election).then(|| LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone().unwrap_or_else(hostname),
            duration: args.lease_duration,
        }),
        self_heal: args.self_heal,
        watch_local: true,
        shutdown_grace: Duration::from_secs(5),
        status,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let client = args.kube.client().await?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let signals = tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            Ok::<(), std::io::Error>(())
        });
        tracing::info!(repo = %hotsync::status::redact_url_userinfo(&cfg.sync.repo), branch = %cfg.branch, listen = %cfg.listen, "hotsync run");
        let result = hotsync::daemon::run(client, cfg, stop).await;
        signals.abort();
        result.map_err(anyhow::Error::from)?;
        Ok(0)
    })
}
