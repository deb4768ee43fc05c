//! Flags shared by `sync` and `run`: credentials for the repository, and the status write-back.

use anyhow::Context as _;
use clap::Args;
use hotsync::status::{GitAuth, StatusConfig, StatusWriter};
use std::path::PathBuf;
use std::sync::Arc;

/// Credentials for the repository (reading it, and pushing status).
#[derive(Debug, Args, Clone)]
pub struct GitAuthArgs {
    /// A file holding an HTTPS token (sent as the password of `x-access-token`). The variable
    /// HOTSYNC_GIT_TOKEN may hold the token itself instead.
    #[arg(long, env = "HOTSYNC_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// An SSH private key for ssh:// and scp-like remotes (without it: the ssh-agent).
    #[arg(long, env = "HOTSYNC_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// A file holding the SSH key's passphrase.
    #[arg(long, env = "HOTSYNC_SSH_KEY_PASSPHRASE_FILE")]
    pub ssh_key_passphrase_file: Option<PathBuf>,
    /// The known_hosts file SSH host keys are checked against (default: ~/.ssh/known_hosts and
    /// /etc/ssh/ssh_known_hosts).
    #[arg(long, env = "HOTSYNC_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Connect to SSH hosts that are not in known_hosts (a changed key is refused all the same).
    #[arg(long, env = "HOTSYNC_ACCEPT_UNKNOWN_HOSTS")]
    pub accept_unknown_hosts: bool,
}

fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?
        .trim()
        .to_string())
}

impl GitAuthArgs {
    pub fn auth(&self) -> anyhow::Result<GitAuth> {
        let token = match &self.git_token_file {
            Some(f) => Some(read_secret(f, "git token")?),
            None => std::env::var("HOTSYNC_GIT_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        if let Some(token) = token {
            return Ok(GitAuth::HttpsToken { token });
        }
        if let Some(key) = &self.ssh_key_file {
            let passphrase = match &self.ssh_key_passphrase_file {
                Some(f) => Some(read_secret(f, "SSH key passphrase")?),
                None => None,
            };
            return Ok(GitAuth::SshKey {
                key: key.clone(),
                passphrase,
                known_hosts: self.known_hosts.clone(),
                accept_unknown_hosts: self.accept_unknown_hosts,
            });
        }
        if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            return Ok(GitAuth::SshAgent {
                known_hosts: self.known_hosts.clone(),
                accept_unknown_hosts: self.accept_unknown_hosts,
            });
        }
        Ok(GitAuth::None)
    }
}

/// Where the outcome is written back.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The branch status files are committed to (`@`: the tracked branch itself). Created as an
    /// orphan branch when missing. hotsync's commits carry `Hotsync-Source: <sha>` and never trigger a sync.
    #[arg(long, default_value = "hotsync-status", env = "HOTSYNC_STATUS_BRANCH")]
    pub status_branch: String,
    /// Do not write status back to Git.
    #[arg(long, env = "HOTSYNC_NO_STATUS")]
    pub no_status: bool,
    /// The cluster's name in status paths, `status/<cluster>/<namespace>/<name>.yaml` (default: the
    /// kubeconfig context's name).
    #[arg(long, env = "HOTSYNC_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Author and committer of status commits, as `Name <email>`.
    #[arg(
        long,
        default_value = "hotsync <hotsync@localhost>",
        env = "HOTSYNC_GIT_AUTHOR"
    )]
    pub git_author: String,
}

impl StatusArgs {
    /// The writer, or `None` with `--no-status`.
    pub fn writer(
        &self,
        repo: &str,
        tracked_branch: &str,
        cache: &std::path::Path,
        auth: GitAuth,
    ) -> anyhow::Result<Option<Arc<StatusWriter>>> {
        if self.no_status {
            return Ok(None);
        }
        let (name, email) = match self.git_author.split_once('<') {
            Some((n, e)) => (
                n.trim().to_string(),
                e.trim_end_matches('>').trim().to_string(),
            ),
            None => (
                self.git_author.trim().to_string(),
                "hotsync@localhost".to_string(),
            ),
        };
        let config = StatusConfig {
            branch: self.status_branch.clone(),
            tracked_branch: tracked_branch.to_string(),
            author_name: name,
            author_email: email,
            ..StatusConfig::default()
        };
        let writer = StatusWriter::new(repo, &cache.join("status"), auth, config)
            .context("preparing the status write-back (--no-status turns it off)")?;
        Ok(Some(Arc::new(writer)))
    }
}

/// The current context of the kubeconfig in use, for the default cluster name.
pub fn context_name(kube: &super::KubeArgs) -> String {
    if let Some(c) = &kube.context {
        return c.clone();
    }
    let kc = match &kube.kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    };
    kc.and_then(|k| k.current_context)
        .unwrap_or_else(|| "in-cluster".to_string())
}
