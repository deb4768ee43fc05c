//! OpenSSH `known_hosts` checking for SSH remotes, called from libgit2's certificate check.
//!
//! libgit2 hands over the server's raw host key (the SSH wire blob, the same bytes as the base64 field of
//! a known_hosts line); we compare it with the lines that name the host. Understood: plain host names and
//! `[host]:port` entries, comma-separated patterns with `*`, `?` and `!` negation, hashed names
//! (`|1|salt|hash`, as `HashKnownHosts yes` writes them) and the `@revoked` marker. `@cert-authority` lines
//! are skipped: host certificates are not supported, so such hosts count as unknown.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Why a host key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyProblem {
    #[error("the {key_type} host key of {host} ({fingerprint}) is not in {files}; add it (for example with ssh-keyscan) or allow unknown hosts")]
    Unknown {
        host: String,
        key_type: String,
        fingerprint: String,
        files: String,
    },
    #[error("the {key_type} host key of {host} ({fingerprint}) differs from the one in {file}: possible man-in-the-middle")]
    Mismatch {
        host: String,
        key_type: String,
        fingerprint: String,
        file: String,
    },
    #[error("the host key of {host} ({fingerprint}) is marked @revoked in {file}")]
    Revoked {
        host: String,
        fingerprint: String,
        file: String,
    },
    #[error("cannot read known_hosts file {file}: {reason}")]
    Unreadable { file: String, reason: String },
}

/// The outcome of a check that did not find a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host carries this key.
    Known,
    /// No line for this host carries a key of this type.
    Unknown,
}

/// The known_hosts files to consult: the one given, or the user's and the system's.
pub fn files_to_check(explicit: Option<&Path>) -> Vec<(PathBuf, bool)> {
    match explicit {
        Some(p) => vec![(p.to_path_buf(), true)],
        None => {
            let mut v = Vec::new();
            if let Some(home) = std::env::var_os("HOME") {
                v.push((PathBuf::from(home).join(".ssh/known_hosts"), false));
            }
            v.push((PathBuf::from("/etc/ssh/ssh_known_hosts"), false));
            v
        }
    }
}

/// Checks `key` (the raw host key blob) for `host`:`port` against `files` (path, must-exist).
///
/// # Errors
/// A [`HostKeyProblem`] when the key is revoked, differs from a recorded key of the same type, or is
/// unknown and `accept_unknown` is false; or when a file that must exist cannot be read.
pub fn check(
    files: &[(PathBuf, bool)],
    host: &str,
    port: u16,
    key: &[u8],
    accept_unknown: bool,
) -> Result<Verdict, HostKeyProblem> {
    let key_type = key_type_of(key).unwrap_or("unknown").to_string();
    let fingerprint = fingerprint(key);
    let name = if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    };
    let mut known = false;
    let mut mismatch: Option<String> = None;
    for (file, required) in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(HostKeyProblem::Unreadable {
                    file: file.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        for line in text.lines().filter_map(Line::parse) {
            if !line.matches_host(&name) {
                continue;
            }
            let same_key = line.key.as_deref() == Some(key);
            match line.marker {
                Marker::Revoked if same_key => {
                    return Err(HostKeyProblem::Revoked {
                        host: name,
                        fingerprint,
                        file: file.display().to_string(),
                    })
                }
                Marker::Revoked | Marker::CertAuthority => {}
                Marker::None if same_key => known = true,
                Marker::None if line.key_type == key_type => {
                    mismatch.get_or_insert_with(|| file.display().to_string());
                }
                Marker::None => {}
            }
        }
    }
    if known {
        return Ok(Verdict::Known);
    }
    if let Some(file) = mismatch {
        return Err(HostKeyProblem::Mismatch {
            host: name,
            key_type,
            fingerprint,
            file,
        });
    }
    if accept_unknown {
        return Ok(Verdict::Unknown);
    }
    Err(HostKeyProblem::Unknown {
        host: name,
        key_type,
        fingerprint,
        files: files
            .iter()
            .map(|(f, _)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// OpenSSH's fingerprint of a key blob: `SHA256:` and the unpadded base64 of its SHA-256.
pub fn fingerprint(key: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(key))
    )
}

/// The key type named at the start of an SSH key blob (a length-prefixed string).
fn key_type_of(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

#[derive(Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
struct Line<'a> {
    marker: Marker,
    patterns: &'a str,
    key_type: &'a str,
    /// `None` when the base64 does not decode; such a line matches no key.
    key: Option<Vec<u8>>,
}

impl<'a> Line<'a> {
    fn parse(raw: &'a str) -> Option<Line<'a>> {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            return None;
        }
        let mut fields = raw.split_whitespace();
        let mut first = fields.next()?;
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            m if m.starts_with('@') => return None,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = fields.next()?;
        }
        let key_type = fields.next()?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(fields.next()?)
            .ok();
        Some(Line {
            marker,
            patterns: first,
            key_type,
            key,
        })
    }

    /// OpenSSH's rule: a negated pattern that matches excludes the line; otherwise any match includes it.
    fn matches_host(&self, name: &str) -> bool {
        let mut matched = false;
        for pattern in self.patterns.split(',') {
            if let Some(hashed) = pattern.strip_prefix("|1|") {
                matched |= hashed_matches(hashed, name);
            } else if let Some(neg) = pattern.strip_prefix('!') {
                if wildcard_match(&neg.to_ascii_lowercase(), name) {
                    return false;
                }
            } else if wildcard_match(&pattern.to_ascii_lowercase(), name) {
                matched = true;
            }
        }
        matched
    }
}

/// `salt|hash`, both base64: HMAC-SHA1 keyed by the salt over the host name.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` matches any run of characters, `?` any one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(key_type: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (key_type.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(key_type.as_bytes());
        v.extend_from_slice(body);
        v
    }

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(v)
    }

    fn file_with(text: &str) -> (tempfile::TempDir, Vec<(PathBuf, bool)>) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("known_hosts");
        std::fs::write(&p, text).expect("write");
        (dir, vec![(p, true)])
    }

    #[test]
    fn plain_and_bracketed_port_entries() {
        let k = blob("ssh-ed25519", b"key-one");
        let (_d, files) = file_with(&format!(
            "# comment\n\ngit.example.com,10.0.0.1 ssh-ed25519 {0}\n[127.0.0.1]:2222 ssh-ed25519 {0} c\n",
            b64(&k)
        ));
        assert_eq!(
            check(&files, "git.example.com", 22, &k, false),
            Ok(Verdict::Known)
        );
        assert_eq!(
            check(&files, "GIT.example.com", 22, &k, false),
            Ok(Verdict::Known)
        );
        assert_eq!(
            check(&files, "127.0.0.1", 2222, &k, false),
            Ok(Verdict::Known)
        );
        // A plain entry is for port 22 only.
        assert!(matches!(
            check(&files, "git.example.com", 2222, &k, false),
            Err(HostKeyProblem::Unknown { .. })
        ));
        assert_eq!(
            check(&files, "127.0.0.1", 2223, &k, true),
            Ok(Verdict::Unknown)
        );
    }

    #[test]
    fn a_different_key_of_the_same_type_is_a_mismatch_even_when_unknown_hosts_are_accepted() {
        let k = blob("ssh-ed25519", b"key-one");
        let other = blob("ssh-ed25519", b"key-two");
        let rsa = blob("ssh-rsa", b"rsa");
        let (_d, files) = file_with(&format!(
            "h ssh-ed25519 {}\nh ssh-rsa {}\n",
            b64(&other),
            b64(&rsa)
        ));
        assert!(matches!(
            check(&files, "h", 22, &k, true),
            Err(HostKeyProblem::Mismatch { .. })
        ));
        // A key of another type only is "unknown", as with OpenSSH.
        let ecdsa = blob("ecdsa-sha2-nistp256", b"e");
        assert!(matches!(
            check(&files, "h", 22, &ecdsa, false),
            Err(HostKeyProblem::Unknown { .. })
        ));
    }

    #[test]
    fn hashed_names_wildcards_negation_and_revocation() {
        let k = blob("ssh-ed25519", b"key-one");
        // `ssh-keygen -H` form for "[127.0.0.1]:2222", computed here.
        let salt = b"0123456789abcdef0123";
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).expect("hmac");
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let (_d, files) = file_with(&format!(
            "|1|{}|{} ssh-ed25519 {k}\n*.example.com,!bad.example.com ssh-ed25519 {k}\n@cert-authority * ssh-ed25519 {k}\n",
            b64(salt),
            b64(&hash),
            k = b64(&k)
        ));
        assert_eq!(
            check(&files, "127.0.0.1", 2222, &k, false),
            Ok(Verdict::Known)
        );
        assert_eq!(
            check(&files, "a.example.com", 22, &k, false),
            Ok(Verdict::Known)
        );
        assert!(check(&files, "bad.example.com", 22, &k, false).is_err());
        let (_d2, revoked) = file_with(&format!(
            "@revoked * ssh-ed25519 {k}\nh ssh-ed25519 {k}\n",
            k = b64(&k)
        ));
        assert!(matches!(
            check(&revoked, "h", 22, &k, true),
            Err(HostKeyProblem::Revoked { .. })
        ));
    }

    #[test]
    fn a_named_file_that_is_missing_refuses_and_default_files_may_be_missing() {
        let k = blob("ssh-ed25519", b"key-one");
        let missing = vec![(PathBuf::from("/nonexistent/known_hosts"), true)];
        assert!(matches!(
            check(&missing, "h", 22, &k, true),
            Err(HostKeyProblem::Unreadable { .. })
        ));
        let optional = vec![(PathBuf::from("/nonexistent/known_hosts"), false)];
        assert_eq!(check(&optional, "h", 22, &k, true), Ok(Verdict::Unknown));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "a.b.example.com"));
        assert!(wildcard_match("10.0.0.?", "10.0.0.7"));
        assert!(!wildcard_match("10.0.0.?", "10.0.0.17"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbd"));
    }
}
