//! Temporary git repositories with a fixed author and dates, for deterministic tests.

use git2::{Repository, Signature, Time};
use std::path::{Path, PathBuf};

pub struct TempRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    tick: i64,
}

impl TempRepo {
    pub fn new() -> TempRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init(dir.path()).expect("git init");
        TempRepo { dir, repo, tick: 0 }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the work tree with the files of `tree` (a folder) and commits everything.
    pub fn commit_folder(&mut self, tree: &Path, message: &str) -> git2::Oid {
        self.clear();
        copy_dir(tree, self.dir.path());
        self.commit_all(message)
    }

    /// Writes one file (relative path) and commits everything.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    #[allow(dead_code)]
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).expect("remove");
    }

    fn clear(&self) {
        for e in std::fs::read_dir(self.dir.path()).expect("read dir") {
            let e = e.expect("entry");
            if e.file_name() == ".git" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(p).expect("rm dir");
            } else {
                std::fs::remove_file(p).expect("rm file");
            }
        }
    }

    /// Commits the whole work tree (additions and removals) with a fixed author and a date one
    /// minute after the previous commit.
    pub fn commit_all(&mut self, message: &str) -> git2::Oid {
        self.tick += 60;
        let sig = Signature::new(
            "Test Author",
            "test@example.com",
            &Time::new(1_700_000_000 + self.tick, 0),
        )
        .expect("signature");
        let mut index = self.repo.index().expect("index");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.update_all(["*"].iter(), None).expect("update");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("tree");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let src = e.path();
        let dst: PathBuf = to.join(e.file_name());
        if src.is_dir() {
            std::fs::create_dir_all(&dst).expect("mkdir");
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// Runs `git` in `dir` as a fixed author; panics with git's stderr on failure; returns stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Game Ops",
            "-c",
            "user.email=ops@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
