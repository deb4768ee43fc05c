//! hotsync's own ids of Git objects. What leaves the git module names a commit or a blob with one of
//! these, never with libgit2's type: callers compare, print, parse and store them; only this module
//! turns them back into libgit2's.

use std::fmt;
use std::str::FromStr;

/// A string that is no Git object id.
#[derive(Debug, thiserror::Error)]
#[error("{given:?} is not a Git object id (40 hexadecimal digits)")]
pub struct InvalidId {
    given: String,
}

macro_rules! object_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(git2::Oid);

        impl $name {
            pub(crate) fn from_git(oid: git2::Oid) -> Self {
                Self(oid)
            }

            pub(crate) fn git(self) -> git2::Oid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// A full id in hexadecimal (a prefix is a revision: [`super::Repo::resolve`] takes those).
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let s = s.trim();
                if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(InvalidId { given: s.to_string() });
                }
                git2::Oid::from_str(s)
                    .map(Self)
                    .map_err(|_| InvalidId { given: s.to_string() })
            }
        }
    };
}

object_id!(
    /// The id of a commit.
    CommitId
);
object_id!(
    /// The id of a blob (a file's content).
    BlobId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_id_prints_as_it_was_parsed() {
        let s = "5153af6903e9dca95120166735c7f4de4cbe9235";
        let id: CommitId = s.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn an_abbreviated_or_foreign_string_is_no_id() {
        for s in [
            "5153af6",
            "",
            "zz53af6903e9dca95120166735c7f4de4cbe9235",
            "HEAD",
        ] {
            assert!(s.parse::<CommitId>().is_err(), "{s}");
        }
    }
}
