//! The status writer against real remotes on loopback: git://, HTTP with a token, SSH with known_hosts.

use crate::status_servers::{BareRemote, GitDaemon, HttpGit, Sshd};
use hotsync::status::{
    hotsync_source, is_hotsync_commit, ContainerTarget, GitAuth, Phase, PodReport, SetStatus,
    SourceRef, StatusConfig, StatusError, StatusWriter,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn status(cluster: &str, name: &str, phase: Phase, message: Option<&str>) -> SetStatus {
    SetStatus {
        step: None,
        cluster: cluster.into(),
        namespace: "games".into(),
        name: name.into(),
        source: SourceRef {
            commit: SHA.into(),
            subject: "Bump sidecar to v0.2".into(),
            force_pushed_from: None,
        },
        phase,
        message: message.map(str::to_string),
        containers: vec![ContainerTarget {
            name: "sidecar".into(),
            image: "registry.example/sidecar:v0.2".into(),
        }],
        pods: vec![PodReport {
            name: format!("{name}-0"),
            images: [(
                "sidecar".to_string(),
                "registry.example/sidecar:v0.2".to_string(),
            )]
            .into(),
            restart_counts: [("sidecar".to_string(), 1)].into(),
            ready: true,
            updated: true,
            last_error: None,
            waiting: None,
        }],
    }
}

fn config() -> StatusConfig {
    StatusConfig {
        author_name: "hotsync".into(),
        author_email: "hotsync@example.com".into(),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(400),
        ..StatusConfig::default()
    }
}

fn writer(url: &str, work: &Path, auth: GitAuth) -> StatusWriter {
    StatusWriter::new(url, work, auth, config()).expect("writer")
}

/// The error, its sources and its Debug form: everything a log line could show.
fn everything_printed(e: &StatusError) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!(" | {s}"));
        src = s.source();
    }
    out
}

fn file_at(repo: &git2::Repository, rev: &str, path: &str) -> Option<String> {
    let commit = repo.revparse_single(rev).ok()?.peel_to_commit().ok()?;
    let entry = commit.tree().ok()?.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).to_string())
}

#[test]
fn status_is_committed_on_an_orphan_branch_with_the_trailer_and_an_identical_write_commits_nothing()
{
    let remote = BareRemote::new();
    let daemon = GitDaemon::start(&remote);
    let work = tempfile::tempdir().expect("tmp");
    let w = writer(&daemon.url, work.path(), GitAuth::None);
    let sets = [
        status(
            "prod",
            "arena",
            Phase::Progressing,
            Some("1 of 2 pods updated"),
        ),
        status("prod", "lobby", Phase::Synced, None),
    ];

    let first = w.write(&sets, SHA).expect("write").expect("a commit");
    let repo = remote.repo();
    let tip = repo
        .find_reference("refs/heads/hotsync-status")
        .expect("status branch")
        .peel_to_commit()
        .expect("commit");
    assert_eq!(tip.id().to_string(), first);
    assert_eq!(
        tip.parent_count(),
        0,
        "the status branch starts as an orphan"
    );
    let msg = tip.message().expect("utf-8");
    assert!(is_hotsync_commit(msg), "{msg}");
    assert_eq!(hotsync_source(msg).as_deref(), Some(SHA));
    assert_eq!(tip.author().name().ok(), Some("hotsync"));
    for s in &sets {
        assert_eq!(
            file_at(&repo, "hotsync-status", &s.path()).as_deref(),
            Some(s.render().as_str())
        );
    }
    assert_eq!(
        file_at(&repo, "hotsync-status", "status/prod/games/arena.yaml").expect("file"),
        "source:\n  commit: 0123456789abcdef0123456789abcdef01234567\n  subject: Bump sidecar to v0.2\n\
         phase: Progressing\nmessage: 1 of 2 pods updated\ncontainers:\n- name: sidecar\n  image: \
         registry.example/sidecar:v0.2\npods:\n- name: arena-0\n  images:\n    sidecar: \
         registry.example/sidecar:v0.2\n  restartCounts:\n    sidecar: 1\n  ready: true\n  updated: true\n"
    );
    // The tracked branch is untouched, and status files are the only files.
    assert_eq!(
        repo.find_reference("refs/heads/main")
            .expect("main")
            .target(),
        Some(remote.main)
    );

    // Same content again: no commit, from this writer or from a fresh one with a cold cache.
    assert_eq!(w.write(&sets, SHA).expect("write"), None);
    let work2 = tempfile::tempdir().expect("tmp");
    assert_eq!(
        writer(&daemon.url, work2.path(), GitAuth::None)
            .write(&sets, SHA)
            .expect("write"),
        None
    );
    let unchanged = repo
        .find_reference("refs/heads/hotsync-status")
        .expect("ref")
        .target();
    assert_eq!(unchanged.map(|o| o.to_string()), Some(first.clone()));

    // One set changes: one commit on top, touching that file only.
    let changed = [
        status("prod", "arena", Phase::Synced, None),
        sets[1].clone(),
    ];
    let second = w.write(&changed, SHA).expect("write").expect("a commit");
    let c2 = repo
        .find_commit(git2::Oid::from_str(&second).expect("oid"))
        .expect("commit");
    assert_eq!(c2.parent_id(0).expect("parent").to_string(), first);
    let diff = repo
        .diff_tree_to_tree(
            Some(&c2.parent(0).expect("p").tree().expect("t")),
            Some(&c2.tree().expect("t")),
            None,
        )
        .expect("diff");
    let paths: Vec<String> = diff
        .deltas()
        .filter_map(|d| d.new_file().path().map(|p| p.display().to_string()))
        .collect();
    assert_eq!(paths, vec!["status/prod/games/arena.yaml".to_string()]);
}

#[test]
fn status_branch_at_sign_commits_on_the_tracked_branch() {
    let remote = BareRemote::new();
    let daemon = GitDaemon::start(&remote);
    let work = tempfile::tempdir().expect("tmp");
    let cfg = StatusConfig {
        branch: "@".into(),
        tracked_branch: "main".into(),
        ..config()
    };
    let w = StatusWriter::new(&daemon.url, work.path(), GitAuth::None, cfg).expect("writer");
    let id = w
        .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
        .expect("write")
        .expect("commit");
    let repo = remote.repo();
    let tip = repo
        .find_reference("refs/heads/main")
        .expect("main")
        .peel_to_commit()
        .expect("c");
    assert_eq!(tip.id().to_string(), id);
    assert_eq!(tip.parent_id(0).expect("parent"), remote.main);
    assert!(is_hotsync_commit(tip.message().expect("msg")));
    assert!(
        file_at(&repo, "main", "set.yaml").is_some(),
        "the tracked files stay"
    );
    assert!(repo.find_reference("refs/heads/hotsync-status").is_err());
}

/// A person's commit and push with the git CLI; on rejection, `pull --rebase` and push again.
fn person_commits(clone: &Path, round: usize) -> usize {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(clone)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", clone)
            .args([
                "-c",
                "user.name=A Person",
                "-c",
                "user.email=person@example.com",
            ])
            .args(args)
            .output()
            .expect("git")
    };
    std::fs::create_dir_all(clone.join("notes")).expect("mkdir");
    std::fs::write(
        clone.join(format!("notes/round-{round}.txt")),
        format!("{round}\n"),
    )
    .expect("write");
    assert!(git(&["add", "-A"]).status.success());
    assert!(
        git(&["commit", "-q", "-m", &format!("person round {round}")])
            .status
            .success()
    );
    for attempt in 1..=100 {
        if git(&["push", "-q", "origin", "HEAD:hotsync-status"])
            .status
            .success()
        {
            return attempt;
        }
        let pull = git(&["pull", "-q", "--rebase", "origin", "hotsync-status"]);
        assert!(
            pull.status.success(),
            "{}",
            String::from_utf8_lossy(&pull.stderr)
        );
    }
    panic!("the person could not push round {round}");
}

#[test]
fn two_writers_and_a_person_racing_over_100_rounds_lose_no_commit() {
    const ROUNDS: usize = 100;
    let remote = BareRemote::new();
    let daemon = GitDaemon::start(&remote);
    let cfg = StatusConfig {
        max_attempts: 40,
        ..config()
    };
    let (wa, wb) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let alpha =
        Arc::new(StatusWriter::new(&daemon.url, wa.path(), GitAuth::None, cfg.clone()).expect("a"));
    let beta = Arc::new(StatusWriter::new(&daemon.url, wb.path(), GitAuth::None, cfg).expect("b"));
    // The branch exists before the person clones it.
    alpha
        .write(
            &[status("alpha", "arena", Phase::Progressing, Some("start"))],
            SHA,
        )
        .expect("first write");
    let person_dir = tempfile::tempdir().expect("tmp");
    let clone = person_dir.path().join("clone");
    let st = Command::new("git")
        .args(["clone", "-q", "-b", "hotsync-status", &daemon.url])
        .arg(&clone)
        .status()
        .expect("clone");
    assert!(st.success());

    let sha_for = |cluster: u64, round: usize| format!("{cluster:02x}{round:06x}{}", &SHA[8..]);
    let barrier = Arc::new(Barrier::new(3));
    let start = Instant::now();
    let spawn_writer = |w: Arc<StatusWriter>, cluster: &'static str, id: u64| {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let mut commits = 0;
            for round in 0..ROUNDS {
                barrier.wait();
                let msg = format!("round {round}");
                let s = status(cluster, "arena", Phase::Progressing, Some(&msg));
                if w.write(&[s], &sha_for(id, round)).expect("write").is_some() {
                    commits += 1;
                }
            }
            commits
        })
    };
    let ta = spawn_writer(alpha.clone(), "alpha", 1);
    let tb = spawn_writer(beta.clone(), "beta", 2);
    let tp = {
        let barrier = barrier.clone();
        let clone = clone.clone();
        std::thread::spawn(move || {
            let mut retries = 0;
            for round in 0..ROUNDS {
                barrier.wait();
                retries += person_commits(&clone, round) - 1;
            }
            retries
        })
    };
    let (ca, cb) = (ta.join().expect("alpha"), tb.join().expect("beta"));
    let person_retries = tp.join().expect("person");
    let elapsed = start.elapsed();
    eprintln!(
        "race: {ROUNDS} rounds x 3 pushers in {:.1}s; person retried {person_retries} times",
        elapsed.as_secs_f64()
    );
    assert_eq!(
        (ca, cb),
        (ROUNDS, ROUNDS),
        "every round changed content, so each write commits"
    );

    // Every commit of every party is in the branch's history, which stays linear.
    let repo = remote.repo();
    let mut walk = repo.revwalk().expect("walk");
    walk.push_ref("refs/heads/hotsync-status").expect("push");
    let mut sources = BTreeSet::new();
    let mut person_rounds = BTreeSet::new();
    let mut total = 0;
    for oid in walk {
        let c = repo.find_commit(oid.expect("oid")).expect("commit");
        assert!(c.parent_count() <= 1, "no merge commits");
        let msg = c.message().expect("utf-8").to_string();
        if let Some(src) = hotsync_source(&msg) {
            assert!(sources.insert(src), "each status commit once");
        } else if let Some(r) = msg.trim().strip_prefix("person round ") {
            person_rounds.insert(r.parse::<usize>().expect("round"));
        }
        total += 1;
    }
    assert_eq!(total, 1 + 3 * ROUNDS);
    for round in 0..ROUNDS {
        assert!(sources.contains(&sha_for(1, round)), "alpha round {round}");
        assert!(sources.contains(&sha_for(2, round)), "beta round {round}");
        assert!(person_rounds.contains(&round), "person round {round}");
        assert!(file_at(&repo, "hotsync-status", &format!("notes/round-{round}.txt")).is_some());
    }
    let last = format!("round {}", ROUNDS - 1);
    for cluster in ["alpha", "beta"] {
        let s = status(cluster, "arena", Phase::Progressing, Some(&last));
        assert_eq!(
            file_at(&repo, "hotsync-status", &s.path()),
            Some(s.render())
        );
    }
}

#[test]
fn an_https_token_writes_status_through_git_http_backend() {
    let remote = BareRemote::new();
    let http = HttpGit::start(&remote, "good-token-123");
    let work = tempfile::tempdir().expect("tmp");
    let w = writer(
        &http.url,
        work.path(),
        GitAuth::HttpsToken {
            token: "good-token-123".into(),
        },
    );
    let sets = [status("prod", "arena", Phase::Synced, None)];
    let id = w.write(&sets, SHA).expect("write").expect("commit");
    let repo = remote.repo();
    assert_eq!(
        repo.find_reference("refs/heads/hotsync-status")
            .expect("ref")
            .target()
            .map(|o| o.to_string()),
        Some(id)
    );
    assert_eq!(w.write(&sets, SHA).expect("write"), None);
}

#[test]
fn a_wrong_https_token_fails_at_once_with_a_clear_error_and_no_retry_storm() {
    let remote = BareRemote::new();
    let http = HttpGit::start(&remote, "the-right-token");
    let work = tempfile::tempdir().expect("tmp");
    let secret = "wrong-token-s3cr3t";
    let w = writer(
        &http.url,
        work.path(),
        GitAuth::HttpsToken {
            token: secret.into(),
        },
    );
    let start = Instant::now();
    let err = w
        .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
        .expect_err("wrong token");
    let elapsed = start.elapsed();
    let requests = http.requests.load(Ordering::SeqCst);
    eprintln!("wrong token: {requests} requests, {elapsed:?}: {err}");
    assert_eq!(err.category(), "git_auth", "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("authentication"), "{err}");
    assert!(
        err.to_string().contains(&http.url),
        "names the remote: {err}"
    );
    // One unauthenticated probe and one try with the token; nothing more.
    assert!(requests <= 2, "{requests} requests");
    assert_eq!(http.unauthorized.load(Ordering::SeqCst), requests);
    let printed = everything_printed(&err);
    assert!(!printed.contains(secret), "{printed}");

    // A token in the URL itself is removed from errors as well.
    let in_url = format!(
        "http://x-access-token:{secret}@127.0.0.1:{}/remote.git",
        http.port
    );
    let err = writer(&in_url, work.path(), GitAuth::None)
        .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
        .expect_err("wrong token in url");
    let printed = everything_printed(&err);
    eprintln!("token in url: {printed}");
    assert_eq!(err.category(), "git_auth", "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}

#[test]
fn a_token_is_never_sent_over_plain_http_to_another_host() {
    let work = tempfile::tempdir().expect("tmp");
    let err = StatusWriter::new(
        "http://git.example.com/r.git",
        work.path(),
        GitAuth::HttpsToken {
            token: "tok-s3cr3t".into(),
        },
        config(),
    )
    .expect_err("refused");
    assert_eq!(err.category(), "status_config");
    assert!(!everything_printed(&err).contains("tok-s3cr3t"));
}

fn ssh_auth(key: &Path, passphrase: Option<&str>, known_hosts: &Path, accept: bool) -> GitAuth {
    GitAuth::SshKey {
        key: key.to_path_buf(),
        passphrase: passphrase.map(str::to_string),
        known_hosts: Some(known_hosts.to_path_buf()),
        accept_unknown_hosts: accept,
    }
}

#[test]
fn ssh_with_a_key_and_known_hosts_writes_status() {
    let Some(sshd) = Sshd::start() else { return };
    let remote = BareRemote::new();
    let url = sshd.url(&remote);
    let work = tempfile::tempdir().expect("tmp");
    let w = writer(
        &url,
        work.path(),
        ssh_auth(&sshd.client_key, None, &sshd.known_hosts, false),
    );
    let id = w
        .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
        .unwrap_or_else(|e| panic!("{e:#?}\nsshd log:\n{}", sshd.log()))
        .expect("commit");
    assert_eq!(
        remote
            .repo()
            .find_reference("refs/heads/hotsync-status")
            .expect("ref")
            .target()
            .map(|o| o.to_string()),
        Some(id)
    );
    // A key with a passphrase.
    let work2 = tempfile::tempdir().expect("tmp");
    let w2 = writer(
        &url,
        work2.path(),
        ssh_auth(
            &sshd.client_key_pp,
            Some(Sshd::PASSPHRASE),
            &sshd.known_hosts,
            false,
        ),
    );
    w2.write(&[status("prod", "arena", Phase::Degraded, None)], SHA)
        .unwrap_or_else(|e| panic!("{e:#?}\nsshd log:\n{}", sshd.log()))
        .expect("commit");
}

#[test]
fn an_unknown_or_changed_ssh_host_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let remote = BareRemote::new();
    let url = sshd.url(&remote);
    let sets = [status("prod", "arena", Phase::Synced, None)];

    // Unknown: the known_hosts file has no line for this host.
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "# nothing\n[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n").expect("write");
    let work = tempfile::tempdir().expect("tmp");
    let start = Instant::now();
    let err = writer(
        &url,
        work.path(),
        ssh_auth(&sshd.client_key, None, &empty, false),
    )
    .write(&sets, SHA)
    .expect_err("unknown host");
    eprintln!("unknown host: {err}");
    assert_eq!(err.category(), "git_host_key", "{err:#?}");
    assert!(err.to_string().contains("not in"), "{err}");
    assert!(
        err.to_string().contains("SHA256:"),
        "shows the fingerprint: {err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5), "not retried");

    // Changed: the line for this host holds another key.
    let other = sshd.dir.path().join("other_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("keygen");
    assert!(st.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let blob = other_pub.split_whitespace().nth(1).expect("blob");
    let changed = sshd.dir.path().join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} ssh-ed25519 {blob}\n", sshd.port),
    )
    .expect("write");
    let err = writer(
        &url,
        work.path(),
        ssh_auth(&sshd.client_key, None, &changed, true),
    )
    .write(&sets, SHA)
    .expect_err("changed host key, even with unknown hosts accepted");
    assert_eq!(err.category(), "git_host_key");
    assert!(err.to_string().contains("differs"), "{err}");
    assert!(remote
        .repo()
        .find_reference("refs/heads/hotsync-status")
        .is_err());

    // Told to accept unknown hosts, it connects.
    writer(
        &url,
        work.path(),
        ssh_auth(&sshd.client_key, None, &empty, true),
    )
    .write(&sets, SHA)
    .expect("accepted")
    .expect("commit");
}

#[test]
fn a_wrong_ssh_passphrase_is_an_authentication_error_that_does_not_show_it() {
    let Some(sshd) = Sshd::start() else { return };
    let remote = BareRemote::new();
    let work = tempfile::tempdir().expect("tmp");
    let secret = "wrong-passphrase-s3cr3t";
    let err = writer(
        &sshd.url(&remote),
        work.path(),
        ssh_auth(&sshd.client_key_pp, Some(secret), &sshd.known_hosts, false),
    )
    .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
    .expect_err("wrong passphrase");
    let printed = everything_printed(&err);
    eprintln!("wrong passphrase: {printed}");
    assert_eq!(err.category(), "git_auth", "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}

/// The ssh-agent case runs in a child process of this test binary: libssh2 finds the agent through
/// `SSH_AUTH_SOCK`, and setting that variable in this multi-threaded process would race other tests.
#[test]
fn ssh_agent_keys_authenticate_with_known_hosts_checked() {
    let Some(sshd) = Sshd::start() else { return };
    let remote = BareRemote::new();
    let sock = sshd.dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(&sshd.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "status_git::ssh_agent_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SSH_AUTH_SOCK", &sock)
        .env("HOTSYNC_TEST_AGENT_URL", sshd.url(&remote))
        .env("HOTSYNC_TEST_AGENT_KNOWN_HOSTS", &sshd.known_hosts)
        .output()
        .expect("child test");
    let _ = agent.kill();
    let _ = agent.wait();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && out.contains("1 passed"),
        "{out}\n{}\nsshd log:\n{}",
        String::from_utf8_lossy(&child.stderr),
        sshd.log()
    );
    assert!(remote
        .repo()
        .find_reference("refs/heads/hotsync-status")
        .is_ok());
}

#[test]
#[ignore = "run by ssh_agent_keys_authenticate_with_known_hosts_checked in a child process"]
fn ssh_agent_child() {
    let (Ok(url), Ok(known_hosts)) = (
        std::env::var("HOTSYNC_TEST_AGENT_URL"),
        std::env::var("HOTSYNC_TEST_AGENT_KNOWN_HOSTS"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let auth = GitAuth::SshAgent {
        known_hosts: Some(known_hosts.into()),
        accept_unknown_hosts: false,
    };
    writer(&url, work.path(), auth)
        .write(&[status("prod", "arena", Phase::Synced, None)], SHA)
        .expect("write through the agent")
        .expect("commit");
}
