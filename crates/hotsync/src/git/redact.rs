//! One redaction policy for everything Git-bound: each known secret (token, passphrase, a URL's
//! password) and the user-info part of every URL are removed from text bound for errors, logs and
//! status files; libgit2's errors are carried only in that form ([`GitError`]).

/// A libgit2 error with every known secret and URL credential removed from its message: git2's texts
/// can echo URLs, and a URL can carry a token.
#[derive(Debug, Clone)]
pub struct GitError {
    message: String,
}

impl GitError {
    pub(crate) fn new(e: &git2::Error, redactor: &Redactor) -> Self {
        GitError {
            message: redactor.redact(e.message()),
        }
    }

    /// The message, secrets removed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GitError {}

/// Removes secrets from text bound for errors, logs and status files: each known secret (token,
/// passphrase, a URL's password) and the user-info part of every URL (`https://TOKEN@host` is common).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = redact_url_userinfo(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// Replaces the user-info of every `scheme://user:password@host` in `text` with `***`.
pub fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '>' | '<'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_is_removed_everywhere() {
        assert_eq!(
            redact_url_userinfo(
                "failed https://x-access-token:s3cr3t@example.com/r.git and http://TOKEN@h:8080/x, ssh://git@h/r"
            ),
            "failed https://***@example.com/r.git and http://***@h:8080/x, ssh://***@h/r"
        );
        assert_eq!(redact_url_userinfo("no url here"), "no url here");
        assert_eq!(
            redact_url_userinfo("ends with https://"),
            "ends with https://"
        );
    }

    #[test]
    fn known_secrets_are_removed_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("token abcdef and abc"), "token *** and ***");
    }
}
