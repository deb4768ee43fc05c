//! Git faults, on real Git servers (`git daemon` on loopback) and the shared API server: a remote that
//! cannot be reached (the poll backs off, health stays up, metrics and logs say so, the daemon syncs
//! once it answers), a force-pushed branch (followed, and reported in logs, Events and status), a
//! revision the remote no longer has (refused by name, nothing applied), a corrupt cache clone (cloned
//! again), and a deep repository with thousands of files fetched shallow.

use crate::gitrepo::git;
use crate::harness::{self, Reaped, TestEnv, CONVERGE};
use crate::status_servers::{free_port, BareRemote, GitDaemon};
use git2::{Oid, Repository, Signature, Time};
use hotsync::source::{FetchOptions, Repo};
use hotsync::sync::{SyncOptions, SyncTarget};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------
// Repositories

fn signature(tick: i64) -> Signature<'static> {
    Signature::new(
        "Game Ops",
        "ops@example.com",
        &Time::new(1_700_000_000 + tick, 0),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A commit of `files` (path and content; `None` removes the file) on top of `parent`, in a bare
/// repository. The branch is not moved: see [`set_main`].
fn commit_files(
    repo: &Repository,
    parent: Option<Oid>,
    files: &[(&str, Option<&str>)],
    message: &str,
) -> Oid {
    let mut index = repo.index().unwrap_or_else(|e| panic!("index: {e}"));
    index.clear().unwrap_or_else(|e| panic!("{e}"));
    let parent = parent.map(|p| repo.find_commit(p).unwrap_or_else(|e| panic!("{e}")));
    if let Some(p) = &parent {
        index
            .read_tree(&p.tree().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (path, content) in files {
        match content {
            Some(c) => {
                let entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: c.len() as u32,
                    id: Oid::ZERO_SHA1,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                index
                    .add_frombuffer(&entry, c.as_bytes())
                    .unwrap_or_else(|e| panic!("add {path}: {e}"));
            }
            None => index
                .remove_path(Path::new(path))
                .unwrap_or_else(|e| panic!("remove {path}: {e}")),
        }
    }
    let tree = index
        .write_tree_to(repo)
        .unwrap_or_else(|e| panic!("write tree: {e}"));
    let tree = repo.find_tree(tree).unwrap_or_else(|e| panic!("{e}"));
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let tick = parent
        .as_ref()
        .map_or(0, |p| p.time().seconds() - 1_700_000_000)
        + 60;
    let sig = signature(tick);
    repo.commit(None, &sig, &sig, message, &tree, &parents)
        .unwrap_or_else(|e| panic!("commit: {e}"))
}

/// Moves `main` of a bare repository, as a push (or a force-push) would.
fn set_main(repo: &Repository, oid: Oid) {
    repo.reference("refs/heads/main", oid, true, "test push")
        .unwrap_or_else(|e| panic!("{e}"));
}

fn main_tip(repo: &Repository) -> Oid {
    repo.refname_to_id("refs/heads/main")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Commits on top of `main` and moves it.
fn push_files(repo: &Repository, files: &[(&str, Option<&str>)], message: &str) -> Oid {
    let c = commit_files(repo, Some(main_tip(repo)), files, message);
    set_main(repo, c);
    c
}

/// A remote whose `main` holds the seed set in `ns` at `tag` under `sets/` (the set of
/// [`BareRemote::new`] removed: it is not a valid manifest).
fn remote_with_set(ns: &str, tag: &str) -> (BareRemote, Oid) {
    let remote = BareRemote::new();
    let repo = remote.repo();
    let manifest = harness::seed_manifest(ns, 3, tag, "");
    let a = push_files(
        &repo,
        &[
            ("set.yaml", None),
            ("sets/minecraft.yaml", Some(manifest.as_str())),
        ],
        &format!("minecraft at {tag}"),
    );
    (remote, a)
}

/// Replaces `main` of the bare repository with `commits` commits over `files` files (written with
/// `git fast-import`): the first adds every file and the seed set, each later one changes one file.
fn fast_import(bare: &Path, files: usize, commits: usize, manifest: &str) {
    let mut s: Vec<u8> = Vec::new();
    let data = |s: &mut Vec<u8>, text: &str| {
        let _ = write!(s, "data {}\n{text}\n", text.len());
    };
    let _ = writeln!(s, "reset refs/heads/main");
    for i in 0..commits {
        let _ = writeln!(s, "commit refs/heads/main");
        let when = 1_600_000_000 + i as i64 * 60;
        let _ = writeln!(s, "author Game Ops <ops@example.com> {when} +0000");
        let _ = writeln!(s, "committer Game Ops <ops@example.com> {when} +0000");
        if i == 0 {
            data(&mut s, &format!("Add {files} files and the set"));
            for f in 0..files {
                let _ = writeln!(s, "M 100644 inline data/d{:02}/f{f:05}.txt", f % 50);
                data(&mut s, &format!("file {f}\nrevision 0\n"));
            }
            let _ = writeln!(s, "M 100644 inline sets/minecraft.yaml");
            data(&mut s, manifest);
        } else {
            let f = i % files;
            data(&mut s, &format!("Change file {f} (commit {i})"));
            let _ = writeln!(s, "M 100644 inline data/d{:02}/f{f:05}.txt", f % 50);
            data(&mut s, &format!("file {f}\nrevision {i}\n"));
        }
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--force"])
        .env("GIT_DIR", bare)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("git fast-import: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("stdin"))
        .write_all(&s)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "git fast-import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `git count-objects -v` of a git directory: loose plus packed objects, and the packs' size in KiB.
fn objects(git_dir: &Path) -> (u64, u64) {
    let out = git(
        Path::new("/"),
        &[
            "--git-dir",
            &git_dir.display().to_string(),
            "count-objects",
            "-v",
        ],
    );
    let field = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("count:") + field("in-pack:"),
        field("size:") + field("size-pack:"),
    )
}

fn commits_in(git_dir: &Path, rev: &str) -> u64 {
    git(
        Path::new("/"),
        &[
            "--git-dir",
            &git_dir.display().to_string(),
            "rev-list",
            "--count",
            rev,
        ],
    )
    .parse()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn options(url: &str, cache: &Path, depth: Option<i32>) -> SyncOptions {
    SyncOptions {
        repo: url.to_string(),
        branch: Some("main".into()),
        path: "sets".into(),
        load: Default::default(),
        cache_dir: cache.to_path_buf(),
        fetch: FetchOptions {
            depth,
            ..Default::default()
        },
        rollout: Default::default(),
        set_concurrency: 1,
    }
}

async fn load(opts: &SyncOptions, previous: Option<Oid>) -> hotsync::sync::Desired {
    hotsync::sync::load_target(
        opts,
        &SyncTarget {
            previous: previous.map(|p| p.to_string().parse().expect("a commit id")),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("load: {}", hotsync::sync::error_chain(&e)))
}

// ---------------------------------------------------------------------------------------------------
// Processes and HTTP

/// `hotsync run` as a process, without leader election, logging JSON lines to `log`.
fn daemon(
    env: &TestEnv,
    url: &str,
    cache: &Path,
    listen: SocketAddr,
    log: &Path,
    extra: &[&str],
) -> Reaped {
    let logfile = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
    Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(["run", "--repo", url, "--kubeconfig"])
        .arg(&env.kubeconfig)
        .args([
            "--branch",
            "main",
            "--interval",
            "300ms",
            "--pod-timeout",
            "30s",
        ])
        .args(["--no-leader-election", "--log-format", "json"])
        .args(["--listen", &listen.to_string(), "--cache-dir"])
        .arg(cache)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(logfile)
        .spawn()
        .map(Reaped)
        .unwrap_or_else(|e| panic!("hotsync run: {e}"))
}

/// The value of one sample of `/metrics` (`name` with its labels, as exported).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(log: &Path) -> String {
    let text = read(log);
    let lines: Vec<&str> = text.lines().rev().take(15).collect();
    format!(
        "daemon's last log lines, newest first:\n{}",
        lines.join("\n")
    )
}

fn image(tag: &str) -> String {
    format!("registry.example.com/sidecar:{tag}")
}

fn sidecar_restarts(p: &Pod) -> i32 {
    hotsync::live::container_status(p, "sidecar").map_or(-1, |s| s.restart_count)
}

/// Waits for the 3 pods of `minecraft` to run sidecar `tag`, ready.
async fn all_on(env: &TestEnv, tag: &str, log: &Path, within: Duration) -> Vec<Pod> {
    let want = image(tag);
    env.eventually(&format!("every pod on sidecar {tag}"), within, || async {
        let pods = env.pods("minecraft").await;
        let done = pods.len() == 3
            && pods.iter().all(|p| {
                hotsync::live::container_status(p, "sidecar")
                    .is_some_and(|s| s.image == want && s.ready)
                    && hotsync::live::is_ready(p)
            });
        if done {
            Ok(pods)
        } else {
            Err(tail(log))
        }
    })
    .await
}

/// A file on a branch of a bare repository, if it is there.
fn file_on(repo: &Repository, branch: &str, path: &str) -> Option<String> {
    let tip = repo.refname_to_id(&format!("refs/heads/{branch}")).ok()?;
    let tree = repo.find_commit(tip).ok()?.tree().ok()?;
    let blob = tree.get_path(Path::new(path)).ok()?.to_object(repo).ok()?;
    Some(String::from_utf8_lossy(blob.as_blob()?.content()).to_string())
}

async fn events_of(env: &TestEnv, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// A deep repository, fetched shallow

#[tokio::test]
async fn a_shallow_fetch_of_a_deep_repository_reads_the_tip_with_far_fewer_objects_than_a_full_one()
{
    const FILES: usize = 3_000;
    const COMMITS: usize = 2_000;
    let remote = BareRemote::new();
    let started = Instant::now();
    fast_import(
        &remote.path(),
        FILES,
        COMMITS,
        &harness::seed_manifest("games", 3, "v0.1", ""),
    );
    eprintln!(
        "fast-import of {FILES} files and {COMMITS} commits: {:?}",
        started.elapsed()
    );
    let server = GitDaemon::start(&remote);
    // Every object reachable from a branch (the commit of `BareRemote::new` is no longer).
    let remote_objects = git(
        Path::new("/"),
        &[
            "--git-dir",
            &remote.path().display().to_string(),
            "rev-list",
            "--objects",
            "--all",
        ],
    )
    .lines()
    .count() as u64;

    let mut figures = Vec::new();
    for depth in [None, Some(1)] {
        let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let opts = options(&server.url, cache.path(), depth);
        let started = Instant::now();
        let desired = load(&opts, None).await;
        let took = started.elapsed();
        let dir = Repo::cache_path(&server.url, cache.path());
        let (count, kib) = objects(&dir);
        eprintln!(
            "first fetch and read, depth {depth:?}: {took:?}, {count} objects, {kib} KiB in the cache"
        );
        figures.push((count, dir.join("shallow").exists()));
        assert_eq!(
            desired.manifests.sets.len(),
            1,
            "the set at the tip is read"
        );
        assert_eq!(
            desired.source.subject,
            format!(
                "Change file {} (commit {})",
                (COMMITS - 1) % FILES,
                COMMITS - 1
            )
        );
        assert_eq!(
            desired.source.sha,
            main_tip(&remote.repo()).to_string(),
            "the tip of main"
        );
    }
    let ((full, full_shallow), (shallow, is_shallow)) = (figures[0], figures[1]);
    assert!(!full_shallow, "a fetch without depth is a whole clone");
    assert!(is_shallow, "a fetch of depth 1 leaves a shallow cache");
    assert_eq!(full, remote_objects, "the whole clone has every object");
    assert!(
        shallow * 3 < full,
        "a shallow cache holds far fewer objects: {shallow} of {full}"
    );
}

#[tokio::test]
async fn a_change_of_fetch_depth_on_an_existing_cache_deepens_or_keeps_it_and_reads_the_new_tip() {
    let remote = BareRemote::new();
    fast_import(
        &remote.path(),
        20,
        60,
        &harness::seed_manifest("games", 3, "v0.1", ""),
    );
    let server = GitDaemon::start(&remote);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = Repo::cache_path(&server.url, cache.path());
    let repo = remote.repo();
    let mut n = 0;
    let mut step = |depth: Option<i32>| {
        n += 1;
        let tip = push_files(
            &repo,
            &[("data/extra.txt", Some(format!("step {n}\n").as_str()))],
            &format!("step {n}"),
        );
        (options(&server.url, cache.path(), depth), tip)
    };

    let (opts, tip) = step(Some(1));
    assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
    assert!(dir.join("shallow").exists(), "depth 1: shallow");
    assert_eq!(commits_in(&dir, "refs/remotes/origin/main"), 1);

    let (opts, tip) = step(Some(10));
    assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
    assert!(dir.join("shallow").exists(), "depth 10: still shallow");
    assert!(
        commits_in(&dir, "refs/remotes/origin/main") >= 10,
        "deepened to 10 commits"
    );

    let (opts, tip) = step(None);
    assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
    assert!(!dir.join("shallow").exists(), "no depth: the whole history");
    assert_eq!(
        commits_in(&dir, "refs/remotes/origin/main"),
        commits_in(&remote.path(), "main"),
        "every commit"
    );

    let (opts, tip) = step(Some(1));
    assert_eq!(
        load(&opts, None).await.source.sha,
        tip.to_string(),
        "a whole cache asked for depth 1 still reads the new tip"
    );
}

// ---------------------------------------------------------------------------------------------------
// Force-pushes, told apart from pushes of several commits

#[tokio::test]
async fn a_force_push_is_told_from_a_push_of_several_commits_in_a_whole_and_in_a_shallow_cache() {
    for depth in [None, Some(1)] {
        let (remote, a1) = remote_with_set("games", "v0.1");
        let server = GitDaemon::start(&remote);
        let repo = remote.repo();
        let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let opts = options(&server.url, cache.path(), depth);
        let first = load(&opts, None).await;
        assert_eq!(first.source.sha, a1.to_string());
        assert_eq!(first.force_pushed_from, None, "depth {depth:?}");

        let mut a = a1;
        for i in 2..=4 {
            a = push_files(
                &repo,
                &[(format!("notes/{i}.txt").as_str(), Some("x\n"))],
                &format!("note {i}"),
            );
        }
        let forward = load(&opts, Some(a1)).await;
        assert_eq!(forward.source.sha, a.to_string());
        assert_eq!(
            forward.force_pushed_from, None,
            "three commits on top are no force-push (depth {depth:?})"
        );

        // Rewrite: a new commit on the first one's parent replaces the branch.
        let base = repo
            .find_commit(a1)
            .unwrap_or_else(|e| panic!("{e}"))
            .parent_id(0)
            .unwrap_or_else(|e| panic!("{e}"));
        let manifest = harness::seed_manifest("games", 3, "v0.2", "");
        let r = commit_files(
            &repo,
            Some(base),
            &[
                ("set.yaml", None),
                ("sets/minecraft.yaml", Some(manifest.as_str())),
            ],
            "minecraft at v0.2, rewritten",
        );
        set_main(&repo, r);
        let rewritten = load(&opts, Some(a)).await;
        assert_eq!(rewritten.source.sha, r.to_string());
        assert_eq!(
            rewritten.force_pushed_from,
            Some(a.to_string()),
            "depth {depth:?}"
        );

        // Without a commit synced before, the cache's remote-tracking branch is the reference.
        let r2 = commit_files(
            &repo,
            Some(base),
            &[
                ("set.yaml", None),
                ("sets/minecraft.yaml", Some(manifest.as_str())),
                ("again.txt", Some("y\n")),
            ],
            "rewritten again",
        );
        set_main(&repo, r2);
        let again = load(&opts, None).await;
        assert_eq!(
            again.force_pushed_from,
            Some(r.to_string()),
            "depth {depth:?}"
        );
        if depth.is_some() {
            assert!(
                Repo::cache_path(&server.url, cache.path())
                    .join("shallow")
                    .exists(),
                "the cache stayed shallow"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// A corrupt cache clone

#[derive(Clone, Copy, Debug)]
enum Damage {
    GarbageHead,
    GarbageConfig,
    GarbagePack,
    TruncatedPack,
    MissingObjects,
}

#[tokio::test]
async fn a_status_commit_of_hotsyncs_own_on_the_tracked_branch_is_not_taken_for_a_force_push() {
    // With `--status-branch @` the cache's copy of the branch ends in hotsync's own status commit,
    // while the commit synced is the one a person made below it: from one to the other is no rewrite.
    for depth in [None, Some(1)] {
        let (remote, a1) = remote_with_set("games", "v0.1");
        let server = GitDaemon::start(&remote);
        let repo = remote.repo();
        let status = push_files(
            &repo,
            &[("status/local/games/minecraft.yaml", Some("phase: Synced\n"))],
            &format!("hotsync status: local at {a1}\n\nHotsync-Source: {a1}\n"),
        );
        let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let opts = options(&server.url, cache.path(), depth);
        let read = load(&opts, Some(status)).await;
        assert_eq!(
            read.source.sha,
            a1.to_string(),
            "the person's commit is synced"
        );
        assert_eq!(read.force_pushed_from, None, "depth {depth:?}");
        let a2 = push_files(
            &repo,
            &[("notes/a2.txt", Some("x\n"))],
            "a person's commit on top of the status commit",
        );
        let next = load(&opts, Some(status)).await;
        assert_eq!(next.source.sha, a2.to_string());
        assert_eq!(next.force_pushed_from, None, "depth {depth:?}");
    }
}

fn damage(dir: &Path, how: Damage) {
    let packs = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.join("objects/pack"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    match how {
        Damage::GarbageHead => std::fs::write(dir.join("HEAD"), "\u{0}garbage\n"),
        Damage::GarbageConfig => std::fs::write(dir.join("config"), "[[[ not a config\n\u{1}"),
        Damage::GarbagePack | Damage::TruncatedPack => {
            let pack = packs()
                .into_iter()
                .find(|p| p.extension().is_some_and(|e| e == "pack"))
                .unwrap_or_else(|| panic!("no pack in {}", dir.display()));
            let len = std::fs::metadata(&pack).map(|m| m.len()).unwrap_or(0) as usize;
            let bytes: Vec<u8> = match how {
                Damage::GarbagePack => {
                    let mut b = b"PACK".to_vec();
                    b.extend((0..len.saturating_sub(4)).map(|i| (i * 7 + 3) as u8));
                    b
                }
                _ => std::fs::read(&pack).unwrap_or_default()[..len / 2].to_vec(),
            };
            std::fs::write(&pack, bytes)
        }
        Damage::MissingObjects => {
            for p in packs() {
                let _ = std::fs::remove_file(p);
            }
            for e in std::fs::read_dir(dir.join("objects"))
                .unwrap_or_else(|e| panic!("{e}"))
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                if name.len() == 2 {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            Ok(())
        }
    }
    .unwrap_or_else(|e| panic!("damage {how:?}: {e}"));
}

#[tokio::test]
async fn a_corrupt_cache_clone_is_cloned_again_once_and_the_read_succeeds() {
    let (remote, mut tip) = remote_with_set("games", "v0.1");
    let server = GitDaemon::start(&remote);
    let repo = remote.repo();
    for how in [
        Damage::GarbageHead,
        Damage::GarbageConfig,
        Damage::GarbagePack,
        Damage::TruncatedPack,
        Damage::MissingObjects,
    ] {
        // Each damage both when the remote has not moved (only reading shows it) and when it has
        // (fetching shows it).
        for moved in [false, true] {
            let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let opts = options(&server.url, cache.path(), None);
            assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
            let dir = Repo::cache_path(&server.url, cache.path());
            std::fs::write(dir.join("marker"), "the first clone").unwrap_or_else(|e| panic!("{e}"));
            damage(&dir, how);
            if moved {
                tip = push_files(
                    &repo,
                    &[("notes.txt", Some(format!("{how:?}\n").as_str()))],
                    &format!("after {how:?}"),
                );
            }
            let desired = hotsync::sync::load_target(&opts, &SyncTarget::default())
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{how:?} (remote moved: {moved}): {}",
                        hotsync::sync::error_chain(&e)
                    )
                });
            assert_eq!(
                desired.source.sha,
                tip.to_string(),
                "{how:?}, moved {moved}"
            );
            assert_eq!(desired.manifests.sets.len(), 1, "{how:?}, moved {moved}");
            assert!(
                !dir.join("marker").exists(),
                "{how:?} (remote moved: {moved}): the cache was cloned again"
            );
            // And the new clone is sound: a second read needs nothing more.
            assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
        }
    }
}

#[test]
fn a_command_on_a_corrupt_cache_says_it_clones_again_and_succeeds() {
    let (remote, _) = remote_with_set("games", "v0.1");
    let server = GitDaemon::start(&remote);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let validate = || {
        Command::new(env!("CARGO_BIN_EXE_hotsync"))
            // The simulated cluster has no registry to ask.
            .env("HOTSYNC_NO_IMAGE_CHECK", "true")
            .args([
                "validate",
                "--repo",
                &server.url,
                "--rev",
                "main",
                "--path",
                "sets",
                "--cache-dir",
            ])
            .arg(cache.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let first = validate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    damage(
        &Repo::cache_path(&server.url, cache.path()),
        Damage::TruncatedPack,
    );
    let second = validate();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("1 GameServerSet(s) valid"),
        "{err}"
    );
    assert!(
        err.contains("the cache clone is corrupt: deleting it and cloning the repository again"),
        "{err}"
    );
    assert!(
        err.contains(&server.url),
        "the log line names the repository: {err}"
    );
}

#[tokio::test]
async fn a_corrupt_cache_is_kept_and_the_url_named_while_the_remote_cannot_be_reached() {
    let (remote, tip) = remote_with_set("games", "v0.1");
    let port = free_port();
    let server = GitDaemon::start_on(&remote, port);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = options(&server.url, cache.path(), None);
    load(&opts, None).await;
    let dir = Repo::cache_path(&server.url, cache.path());
    std::fs::write(dir.join("marker"), "the first clone").unwrap_or_else(|e| panic!("{e}"));
    damage(&dir, Damage::MissingObjects);
    let url = server.url.clone();
    drop(server);
    let err = hotsync::sync::load_target(&opts, &SyncTarget::default())
        .await
        .map(|d| d.source.sha)
        .expect_err("nothing can be read: the objects are gone and the remote is down");
    let text = hotsync::sync::error_chain(&err);
    assert!(text.contains(&url), "{text}");
    assert_eq!(err.category(), "repo_fetch", "{text}");
    assert!(
        dir.join("marker").exists(),
        "a cache is not deleted while nothing can replace it"
    );
    let _server = GitDaemon::start_on(&remote, port);
    assert_eq!(load(&opts, None).await.source.sha, tip.to_string());
}

// ---------------------------------------------------------------------------------------------------
// A revision the remote no longer has

fn hotsync_sync(env: &TestEnv, url: &str, cache: &Path, revision: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args([
            "sync",
            "--repo",
            url,
            "--revision",
            revision,
            "--path",
            "sets",
            "--no-status",
        ])
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn syncing_a_revision_the_remote_no_longer_has_fails_naming_it_and_the_repository_and_applies_nothing(
) {
    let env = harness::env("git revision gone").await;
    let (remote, a) = remote_with_set(&env.namespace, "v0.1");
    let server = GitDaemon::start(&remote);
    let repo = remote.repo();
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The cache holds A before A is force-pushed away and collected on the remote.
    load(&options(&server.url, cache.path(), None), None).await;
    let base = repo
        .find_commit(a)
        .unwrap_or_else(|e| panic!("{e}"))
        .parent_id(0)
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest = harness::seed_manifest(&env.namespace, 3, "v0.2", "");
    let b = commit_files(
        &repo,
        Some(base),
        &[
            ("set.yaml", None),
            ("sets/minecraft.yaml", Some(manifest.as_str())),
        ],
        "minecraft at v0.2, rewritten",
    );
    set_main(&repo, b);
    let remote_dir = remote.path().display().to_string();
    git(
        Path::new("/"),
        &[
            "--git-dir",
            &remote_dir,
            "reflog",
            "expire",
            "--expire=now",
            "--all",
        ],
    );
    git(
        Path::new("/"),
        &["--git-dir", &remote_dir, "gc", "-q", "--prune=now"],
    );
    assert!(
        Repository::open_bare(remote.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .find_commit(a)
            .is_err(),
        "the remote no longer has {a}"
    );

    let fresh = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let never = "0123456789abcdef0123456789abcdef01234567";
    for (what, cache, rev) in [
        ("a cache that still holds it", cache.path(), a.to_string()),
        ("a fresh cache", fresh.path(), a.to_string()),
        ("a commit that never was", fresh.path(), never.to_string()),
    ] {
        let (code, out) = hotsync_sync(&env, &server.url, cache, &rev);
        assert_eq!(code, 2, "{what}: {out}");
        assert!(
            out.contains(&format!(
                "revision \"{rev}\" is not on any branch of {}",
                server.url
            )),
            "{what}: the error names the revision and the repository:\n{out}"
        );
    }
    let sets: kube::Api<hotsync::model::GameServerSet> = env.api();
    assert!(
        sets.list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .is_empty(),
        "nothing was applied"
    );
    // The same command with a revision the remote has applies it.
    let (code, out) = hotsync_sync(&env, &server.url, cache.path(), &b.to_string());
    assert_eq!(code, 0, "{out}");
    let gss = sets
        .get("minecraft")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        gss.annotations().get(hotsync::rollout::ANNOTATION_REVISION),
        Some(&b.to_string())
    );
}

// ---------------------------------------------------------------------------------------------------
// The daemon

#[tokio::test]
async fn an_unreachable_remote_backs_the_poll_off_keeps_healthz_up_and_syncs_once_it_answers() {
    let env = harness::env("git unreachable").await;
    let (remote, _) = remote_with_set(&env.namespace, "v0.1");
    let port = free_port();
    let url = format!("git://127.0.0.1:{port}/remote.git");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("daemon.log");
    let addr = harness::loopback();
    let mut proc = daemon(
        &env,
        &url,
        &dir.path().join("cache"),
        addr,
        &log,
        &["--no-status", "--path", "sets"],
    );

    // Nothing listens on the remote's port: each poll fails, and the wait doubles.
    let failures = env
        .eventually(
            "three failed polls, the backoff at 300ms x 2^failures",
            CONVERGE,
            || async {
                let (code, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
                let n = metric(&body, "hotsync_git_poll_failures").unwrap_or(0.0);
                let backoff = metric(&body, "hotsync_git_backoff_seconds").unwrap_or(0.0);
                let errors = metric(&body, "hotsync_polls_total{result=\"error\"}").unwrap_or(0.0);
                let expected = 0.3 * 2f64.powf(n);
                if code == 200 && n >= 3.0 && (backoff - expected).abs() < 1e-6 && errors >= n {
                    Ok(n)
                } else {
                    Err(format!(
                        "failures {n}, backoff {backoff}, errors {errors}\n{}",
                        tail(&log)
                    ))
                }
            },
        )
        .await;
    let (_, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
    let errors_before = metric(&body, "hotsync_polls_total{result=\"error\"}").unwrap_or(0.0);
    assert!(
        metric(&body, "hotsync_failures_total{category=\"repo_fetch\"}").unwrap_or(0.0) >= failures,
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(code, 200);
    let errors_after = metric(&body, "hotsync_polls_total{result=\"error\"}").unwrap_or(0.0);
    assert!(
        errors_after - errors_before <= 3.0,
        "backed off: {errors_before} then {errors_after} failed polls 3s later (every 300ms would be 10)"
    );
    assert_eq!(
        harness::http(addr, "GET", "/healthz", &[], b"").await.0,
        200,
        "alive while the remote is down"
    );
    assert_eq!(
        harness::http(addr, "GET", "/readyz", &[], b"").await.0,
        503,
        "not ready: nothing synced yet"
    );
    assert!(
        proc.0
            .try_wait()
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "the daemon did not exit:\n{}",
        tail(&log)
    );
    let text = read(&log);
    assert!(
        text.contains(&format!("cannot reach the repository {url}: next poll in")),
        "a clear log line naming the URL:\n{}",
        tail(&log)
    );

    // The remote comes back on its port: the next poll (within the backoff) syncs.
    let _server = GitDaemon::start_on(&remote, port);
    all_on(&env, "v0.1", &log, 2 * CONVERGE).await;
    env.eventually("the backoff to reset", CONVERGE, || async {
        let (_, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
        match (
            metric(&body, "hotsync_git_poll_failures"),
            metric(&body, "hotsync_git_backoff_seconds"),
        ) {
            (Some(n), Some(b)) if n == 0.0 && b == 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        read(&log).contains("the repository answers again"),
        "{}",
        tail(&log)
    );
    env.eventually("readiness after the first sync", CONVERGE, || async {
        match harness::http(addr, "GET", "/readyz", &[], b"").await.0 {
            200 => Ok(()),
            c => Err(format!("{c}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_force_pushed_branch_is_followed_and_reported_in_logs_events_and_status() {
    let env = harness::env("git force push").await;
    let remote = BareRemote::new();
    let server = GitDaemon::start(&remote);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    git(work.path(), &["clone", "-q", &server.url, "w"]);
    let w = work.path().join("w");
    let write = |tag: &str| {
        std::fs::create_dir_all(w.join("sets")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            w.join("sets/minecraft.yaml"),
            harness::seed_manifest(&env.namespace, 3, tag, ""),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    };
    git(&w, &["rm", "-q", "set.yaml"]);
    write("v0.1");
    git(&w, &["add", "-A"]);
    git(&w, &["commit", "-qm", "minecraft at v0.1"]);
    git(&w, &["push", "-q", "origin", "main"]);
    let a = git(&w, &["rev-parse", "HEAD"]);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("daemon.log");
    let addr = harness::loopback();
    let _proc = daemon(
        &env,
        &server.url,
        &dir.path().join("cache"),
        addr,
        &log,
        &[
            "--path",
            "sets",
            "--cluster-name",
            "test",
            "--status-branch",
            "hotsync-status",
        ],
    );
    let uids: Vec<String> = all_on(&env, "v0.1", &log, CONVERGE)
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    let status_path = format!("status/test/{}/minecraft.yaml", env.namespace);
    let status = |want: String| {
        let (remote, status_path, log, env) = (&remote, &status_path, &log, &env);
        async move {
            env.eventually(&format!("the status to show {want}"), CONVERGE, || async {
                let text =
                    file_on(&remote.repo(), "hotsync-status", status_path).unwrap_or_default();
                if text.contains(&want) && text.contains("phase: Synced") {
                    Ok(text)
                } else {
                    Err(format!("{text}\n{}", tail(log)))
                }
            })
            .await
        }
    };
    let first = status(format!("commit: {a}")).await;
    assert!(!first.contains("forcePushedFrom"), "{first}");

    // Rewrite the commit the cluster was synced to, force-push, and collect it on the remote.
    write("v0.2");
    git(
        &w,
        &[
            "commit",
            "-q",
            "-a",
            "--amend",
            "-m",
            "minecraft at v0.2 (rewritten)",
        ],
    );
    let b = git(&w, &["rev-parse", "HEAD"]);
    git(&w, &["push", "-q", "--force", "origin", "main"]);
    let remote_dir = remote.path().display().to_string();
    git(
        Path::new("/"),
        &[
            "--git-dir",
            &remote_dir,
            "reflog",
            "expire",
            "--expire=now",
            "--all",
        ],
    );
    git(
        Path::new("/"),
        &["--git-dir", &remote_dir, "gc", "-q", "--prune=now"],
    );

    let pods = all_on(&env, "v0.2", &log, CONVERGE).await;
    for p in &pods {
        assert_eq!(
            sidecar_restarts(p),
            1,
            "{} restarted in place once",
            p.name_any()
        );
    }
    assert_eq!(
        pods.iter()
            .map(|p| p.uid().unwrap_or_default())
            .collect::<Vec<_>>(),
        uids,
        "no pod recreated"
    );
    let text = status(format!("commit: {b}")).await;
    assert!(
        text.contains(&format!("  forcePushedFrom: {a}\n")),
        "the status's source block names the commit force-pushed away:\n{text}"
    );
    let event = env
        .eventually("a BranchForcePushed event on the set", CONVERGE, || async {
            let events = events_of(&env, "BranchForcePushed").await;
            events
                .into_iter()
                .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("minecraft"))
                .ok_or_else(|| tail(&log))
        })
        .await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains(&a[..12]) && note.contains(&b[..12]), "{note}");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let logged = read(&log);
    assert!(
        logged.lines().any(|l| l.contains("\"WARN\"")
            && l.contains("the branch was force-pushed")
            && l.contains(&a)
            && l.contains(&b)),
        "a warning names both commits:\n{}",
        tail(&log)
    );
    let (_, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(
        metric(&body, "hotsync_branch_force_pushes_total"),
        Some(1.0),
        "{body}"
    );

    // A plain push afterwards is no force-push: the status drops the field.
    write("v0.3");
    git(&w, &["commit", "-q", "-a", "-m", "minecraft at v0.3"]);
    git(&w, &["push", "-q", "origin", "main"]);
    let c = git(&w, &["rev-parse", "HEAD"]);
    all_on(&env, "v0.3", &log, CONVERGE).await;
    let text = status(format!("commit: {c}")).await;
    assert!(!text.contains("forcePushedFrom"), "{text}");
    let (_, body) = harness::http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(
        metric(&body, "hotsync_branch_force_pushes_total"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        events_of(&env, "BranchForcePushed").await.len(),
        1,
        "one event, for the one set"
    );
}

#[tokio::test]
async fn the_daemon_polls_and_syncs_through_a_shallow_cache_and_steps_over_its_own_status_commits()
{
    let env = harness::env("git shallow daemon").await;
    let remote = BareRemote::new();
    fast_import(
        &remote.path(),
        3_000,
        2_000,
        &harness::seed_manifest(&env.namespace, 3, "v0.1", ""),
    );
    let server = GitDaemon::start(&remote);
    let repo = remote.repo();
    // The person's commit, read before the daemon starts writing status commits on top of it.
    let first = main_tip(&repo);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("daemon.log");
    let addr = harness::loopback();
    let cache = dir.path().join("cache");
    // Status on the tracked branch itself: the daemon must step over its own commits, whose parents
    // lie on the shallow boundary.
    let _proc = daemon(
        &env,
        &server.url,
        &cache,
        addr,
        &log,
        &[
            "--path",
            "sets",
            "--fetch-depth",
            "1",
            "--cluster-name",
            "test",
            "--status-branch",
            "@",
        ],
    );
    all_on(&env, "v0.1", &log, 2 * CONVERGE).await;
    let status_path = format!("status/test/{}/minecraft.yaml", env.namespace);
    env.eventually("a status commit on main", CONVERGE, || async {
        match file_on(&repo, "main", &status_path) {
            // The source is the person's commit below hotsync's own status commits.
            Some(t) if t.contains("phase: Synced") && t.contains(&format!("commit: {first}")) => {
                Ok(())
            }
            other => Err(format!("{other:?}\n{}", tail(&log))),
        }
    })
    .await;
    let cache_dir = Repo::cache_path(&server.url, &cache);
    assert!(cache_dir.join("shallow").exists(), "the cache is shallow");
    let (cached, _) = objects(&cache_dir);
    let (all, _) = objects(&remote.path());
    assert!(cached * 3 < all, "{cached} objects cached of {all}");

    // A person's commit on top of hotsync's status commit.
    let manifest = harness::seed_manifest(&env.namespace, 3, "v0.2", "");
    let second = push_files(
        &repo,
        &[("sets/minecraft.yaml", Some(manifest.as_str()))],
        "minecraft at v0.2",
    );
    for p in all_on(&env, "v0.2", &log, CONVERGE).await {
        assert_eq!(sidecar_restarts(&p), 1, "{}", p.name_any());
    }
    env.eventually("the status of v0.2 on main", CONVERGE, || async {
        match file_on(&repo, "main", &status_path) {
            Some(t) if t.contains("phase: Synced") && t.contains(&format!("commit: {second}")) => {
                Ok(())
            }
            other => Err(format!("{other:?}\n{}", tail(&log))),
        }
    })
    .await;
    // Its own status commits trigger no sync: polls go on, finding nothing new.
    let changed =
        |body: &str| metric(body, "hotsync_polls_total{result=\"changed\"}").unwrap_or(0.0);
    let unchanged =
        |body: &str| metric(body, "hotsync_polls_total{result=\"unchanged\"}").unwrap_or(0.0);
    env.eventually(
        "the daemon to settle: polls find nothing new",
        CONVERGE,
        || async {
            let (_, before) = harness::http(addr, "GET", "/metrics", &[], b"").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (_, after) = harness::http(addr, "GET", "/metrics", &[], b"").await;
            if changed(&after) == changed(&before) && unchanged(&after) >= unchanged(&before) + 3.0
            {
                Ok(())
            } else {
                Err(format!(
                    "changed {} -> {}, unchanged {} -> {}\n{}",
                    changed(&before),
                    changed(&after),
                    unchanged(&before),
                    unchanged(&after),
                    tail(&log)
                ))
            }
        },
    )
    .await;
    assert!(cache_dir.join("shallow").exists(), "still shallow");

    let (cached, _) = objects(&cache_dir);
    assert!(cached * 3 < all, "{cached} objects cached of {all}");
}
