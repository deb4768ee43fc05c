//! Credentials and host verification for the status remote: libgit2 callbacks built from a [`GitAuth`].
//!
//! Each credential is offered once per connection. libgit2 asks again when the remote rejects it, and
//! answering with the same credential would loop (an authentication replay storm against the server), so
//! a second request is recorded as a rejection and fails the operation; the writer does not retry it.

use super::known_hosts::{self, HostKeyProblem};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

/// How to authenticate to the status remote. Secrets are resolved by the caller (from an environment
/// variable or a file) and never printed: `Debug` shows `***`.
#[derive(Clone, Default)]
pub enum GitAuth {
    /// No credentials (a local path, `git://`, or a public HTTPS remote). SSH host keys are still checked
    /// against the default known_hosts files.
    #[default]
    None,
    /// An SSH private key file, with an optional passphrase.
    SshKey {
        key: PathBuf,
        passphrase: Option<String>,
        /// The known_hosts file; `None` for `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`.
        known_hosts: Option<PathBuf>,
        /// Connect to hosts that are not in known_hosts (a changed key is refused all the same).
        accept_unknown_hosts: bool,
    },
    /// The keys of the running ssh-agent (`SSH_AUTH_SOCK`).
    SshAgent {
        known_hosts: Option<PathBuf>,
        accept_unknown_hosts: bool,
    },
    /// An HTTPS token, sent as the password of user `x-access-token`.
    HttpsToken { token: String },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitAuth::None => f.write_str("None"),
            GitAuth::SshKey {
                key,
                passphrase,
                known_hosts,
                accept_unknown_hosts,
            } => f
                .debug_struct("SshKey")
                .field("key", key)
                .field("passphrase", &passphrase.as_ref().map(|_| "***"))
                .field("known_hosts", known_hosts)
                .field("accept_unknown_hosts", accept_unknown_hosts)
                .finish(),
            GitAuth::SshAgent {
                known_hosts,
                accept_unknown_hosts,
            } => f
                .debug_struct("SshAgent")
                .field("known_hosts", known_hosts)
                .field("accept_unknown_hosts", accept_unknown_hosts)
                .finish(),
            GitAuth::HttpsToken { .. } => {
                f.debug_struct("HttpsToken").field("token", &"***").finish()
            }
        }
    }
}

impl GitAuth {
    /// The secrets this configuration holds, for redaction.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            GitAuth::SshKey {
                passphrase: Some(p),
                ..
            } => vec![p.clone()],
            GitAuth::HttpsToken { token } => vec![token.clone()],
            _ => Vec::new(),
        }
    }

    /// The known_hosts file and whether unknown hosts are accepted.
    fn host_key_policy(&self) -> (Option<&Path>, bool) {
        match self {
            GitAuth::SshKey {
                known_hosts,
                accept_unknown_hosts,
                ..
            }
            | GitAuth::SshAgent {
                known_hosts,
                accept_unknown_hosts,
            } => (known_hosts.as_deref(), *accept_unknown_hosts),
            GitAuth::None | GitAuth::HttpsToken { .. } => (None, false),
        }
    }
}

/// The transport of a remote, as far as authentication cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Ssh,
    Git,
    Http,
    Https,
    /// `file://` or a local path.
    Local,
    Other,
}

/// The parts of a remote URL that authentication needs. The password, if the URL carries one, is kept
/// only so that it can be redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub(crate) password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl RemoteUrl {
    /// Parses `scheme://[user[:password]@]host[:port]/path`, scp-like `[user@]host:path`, or a local path.
    pub fn parse(spec: &str) -> RemoteUrl {
        let local = RemoteUrl {
            scheme: Scheme::Local,
            user: None,
            password: None,
            host: String::new(),
            port: None,
        };
        if let Some((scheme, rest)) = spec.split_once("://") {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
                "git" => Scheme::Git,
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                "file" => return local,
                _ => Scheme::Other,
            };
            let authority = rest.split('/').next().unwrap_or_default();
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (user, password) = match userinfo {
                Some(u) => match u.split_once(':') {
                    Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                    None => (Some(u.to_string()), None),
                },
                None => (None, None),
            };
            let (host, port) = split_host_port(hostport);
            return RemoteUrl {
                scheme,
                user,
                password,
                host,
                port,
            };
        }
        // scp-like syntax: a colon before any slash, and not a path that exists.
        if let Some((hostpart, _path)) = spec.split_once(':') {
            if !hostpart.contains('/') && !hostpart.is_empty() && !Path::new(spec).exists() {
                let (user, host) = match hostpart.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_string()), h),
                    None => (None, hostpart),
                };
                return RemoteUrl {
                    scheme: Scheme::Ssh,
                    user,
                    password: None,
                    host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
                    port: None,
                };
            }
        }
        local
    }

    /// The port, or the scheme's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Ssh => 22,
            Scheme::Git => 9418,
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Local | Scheme::Other => 0,
        })
    }

    /// True for a loopback host (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        let h = self.host.as_str();
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

fn split_host_port(hostport: &str) -> (String, Option<u16>) {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_string(), port);
        }
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (hostport.to_string(), None),
    }
}

/// What the callbacks saw during one connection, read after libgit2 returns to classify its error.
#[derive(Debug, Default)]
pub struct Session {
    /// How many times a secret-bearing credential was asked for.
    secret_requests: Cell<u32>,
    /// The remote rejected the credential we offered.
    pub(crate) rejected: Cell<bool>,
    /// The remote asked for a kind of credential that is not configured.
    pub(crate) missing: RefCell<Option<String>>,
    /// The host key was refused.
    pub(crate) host_key: RefCell<Option<HostKeyProblem>>,
}

impl Session {
    /// True when authentication failed, whatever libgit2's error says.
    pub(crate) fn auth_failed(&self) -> bool {
        self.rejected.get() || self.missing.borrow().is_some()
    }
}

/// libgit2 callbacks for one connection: credentials from `auth`, SSH host keys checked against
/// known_hosts, outcomes recorded in `session`.
pub(crate) fn callbacks<'a>(
    auth: &'a GitAuth,
    remote: &'a RemoteUrl,
    session: &'a Session,
) -> git2::RemoteCallbacks<'a> {
    super::tls::load_ca_bundle();
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(move |_url, user_from_url, allowed| {
        let user = user_from_url
            .map(str::to_string)
            .or_else(|| remote.user.clone())
            .unwrap_or_else(|| "git".to_string());
        if allowed.contains(git2::CredentialType::USERNAME) {
            return git2::Cred::username(&user);
        }
        let n = session.secret_requests.get() + 1;
        session.secret_requests.set(n);
        if n > 1 {
            // The remote rejected what we offered; offering it again would only replay the failure.
            session.rejected.set(true);
            return Err(git2::Error::from_str(
                "the configured credentials were rejected (wrong token or passphrase, or a key the server does not accept)",
            ));
        }
        match auth {
            GitAuth::SshKey {
                key, passphrase, ..
            } if allowed.contains(git2::CredentialType::SSH_KEY) => {
                let public = public_key_beside(key);
                git2::Cred::ssh_key(&user, public.as_deref(), key, passphrase.as_deref())
            }
            GitAuth::SshAgent { .. } if allowed.contains(git2::CredentialType::SSH_KEY) => {
                git2::Cred::ssh_key_from_agent(&user)
            }
            GitAuth::HttpsToken { token }
                if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) =>
            {
                git2::Cred::userpass_plaintext("x-access-token", token)
            }
            _ => {
                let wanted = if allowed.contains(git2::CredentialType::SSH_KEY) {
                    "an SSH key"
                } else if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                    "a token"
                } else {
                    "credentials"
                };
                *session.missing.borrow_mut() = Some(wanted.to_string());
                Err(git2::Error::from_str(&format!(
                    "the remote asks for {wanted}, and none is configured"
                )))
            }
        }
    });
    cb.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 verifies the certificate chain itself.
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        let (file, accept_unknown) = auth.host_key_policy();
        let Some(key) = hostkey.hostkey() else {
            let problem = HostKeyProblem::Unreadable {
                file: "(libgit2)".to_string(),
                reason: "libgit2 did not provide the raw host key".to_string(),
            };
            *session.host_key.borrow_mut() = Some(problem);
            return Err(git2::Error::from_str("host key refused"));
        };
        let files = known_hosts::files_to_check(file);
        match known_hosts::check(&files, host, remote.port_or_default(), key, accept_unknown) {
            Ok(known_hosts::Verdict::Known) => Ok(git2::CertificateCheckStatus::CertificateOk),
            Ok(known_hosts::Verdict::Unknown) => {
                tracing::warn!(
                    host,
                    fingerprint = %known_hosts::fingerprint(key),
                    "accepting an SSH host key that is not in known_hosts"
                );
                Ok(git2::CertificateCheckStatus::CertificateOk)
            }
            Err(problem) => {
                let msg = problem.to_string();
                *session.host_key.borrow_mut() = Some(problem);
                Err(git2::Error::from_str(&msg))
            }
        }
    });
    cb
}

/// `<key>.pub` when it exists: libssh2 then need not derive the public key from the private one.
fn public_key_beside(key: &Path) -> Option<PathBuf> {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    let p = PathBuf::from(p);
    p.is_file().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_remote_urls() {
        let u = RemoteUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git");
        assert_eq!(
            (
                u.scheme,
                u.user.as_deref(),
                u.host.as_str(),
                u.port_or_default()
            ),
            (Scheme::Ssh, Some("git"), "127.0.0.1", 2222)
        );
        let u = RemoteUrl::parse("git@github.com:org/repo.git");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port_or_default()),
            (Scheme::Ssh, "github.com", 22)
        );
        let u = RemoteUrl::parse("https://x:tok@[::1]:8443/r");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.password.as_deref()),
            (Scheme::Https, "::1", Some(8443), Some("tok"))
        );
        assert!(u.is_loopback());
        assert_eq!(RemoteUrl::parse("/srv/repo").scheme, Scheme::Local);
        assert_eq!(RemoteUrl::parse("file:///srv/repo").scheme, Scheme::Local);
        assert_eq!(RemoteUrl::parse("git://h/r").port_or_default(), 9418);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = GitAuth::HttpsToken {
            token: "s3cr3t-token".into(),
        };
        let b = GitAuth::SshKey {
            key: "/k".into(),
            passphrase: Some("pass-phrase".into()),
            known_hosts: None,
            accept_unknown_hosts: false,
        };
        let text = format!("{a:?} {b:?} {a:#?} {b:#?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("pass-phrase"),
            "{text}"
        );
    }
}
