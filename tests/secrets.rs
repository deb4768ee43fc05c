//! No secret leaves hotsync: the HTTPS token (in a file, or in the repository URL), the SSH key's
//! passphrase and the webhook secret never appear in a log line (at debug level), an error, a report, a
//! status file or commit, a metric or an Event, whether the credentials are right or wrong.

use crate::harness::{self, Reaped, CONVERGE};
use crate::status_servers::{free_port, BareRemote, HttpGit, Sshd};
use git2::{Repository, Signature, Time};
use hmac::Mac as _;
use k8s_openapi::api::events::v1::Event;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "hs-token-7f3a9c1e5b";
const WRONG_TOKEN: &str = "hs-wrong-token-2d8e4f6a0c";
const WEBHOOK: &str = "hs-webhook-secret-9b1d3f5e7a";
const WRONG_PASSPHRASE: &str = "hs-wrong-passphrase-6c2e8a4f0b";

/// Commits `files` as the whole tree of `main` in a bare repository.
fn commit_to(remote: &BareRemote, files: &[(&str, &str)], message: &str) {
    let repo: Repository = remote.repo();
    let sig = Signature::new("Game Ops", "ops@example.com", &Time::new(1_700_000_100, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tb = repo.treebuilder(None).unwrap_or_else(|e| panic!("{e}"));
    for (name, text) in files {
        let blob = repo.blob(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        tb.insert(name, blob, 0o100644)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let tree = repo
        .find_tree(tb.write().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let parent = repo
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .unwrap_or_else(|e| panic!("{e}"));
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        message,
        &tree,
        &[&parent],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Every blob and commit message reachable from the remote's branches.
fn everything_in(remote: &BareRemote) -> String {
    let repo = remote.repo();
    let mut out = String::new();
    let mut walk = repo.revwalk().unwrap_or_else(|e| panic!("{e}"));
    walk.push_glob("refs/heads/*")
        .unwrap_or_else(|e| panic!("{e}"));
    for oid in walk.flatten() {
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        out.push_str(&String::from_utf8_lossy(commit.message_bytes()));
        if let Ok(tree) = commit.tree() {
            let _ = tree.walk(git2::TreeWalkMode::PreOrder, |_, e| {
                if let Ok(blob) = repo.find_blob(e.id()) {
                    out.push_str(&String::from_utf8_lossy(blob.content()));
                }
                git2::TreeWalkResult::Ok
            });
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn hotsync(args: &[&str], kubeconfig: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "debug")
        .env_remove("HOTSYNC_GIT_TOKEN")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("hotsync {args:?}: {e}"))
}

/// Asserts that no secret occurs in `haystack`, naming where it was found.
fn assert_no_secret(what: &str, haystack: &str, secrets: &[&str]) {
    for s in secrets {
        if let Some(at) = haystack.find(s) {
            let from = haystack[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            panic!(
                "a secret appears in {what}: …{}…",
                &haystack[from..(at + s.len()).min(haystack.len())]
            );
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_errors_reports_status_metrics_or_events() {
    let env = harness::env("secrets").await;
    let remote = BareRemote::new();
    let manifest = harness::seed_manifest(&env.namespace, 2, "v1", "");
    commit_to(&remote, &[("minecraft.yaml", &manifest)], "Add the set");
    let http = HttpGit::start(&remote, TOKEN);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{content}\n")).unwrap_or_else(|e| panic!("{e}"));
        p.display().to_string()
    };
    let token_file = file("token", TOKEN);
    let wrong_token_file = file("wrong-token", WRONG_TOKEN);
    let webhook_file = file("webhook", WEBHOOK);
    let passphrase_file = file("passphrase", Sshd::PASSPHRASE);
    let wrong_passphrase_file = file("wrong-passphrase", WRONG_PASSPHRASE);
    let mut seen: Vec<(String, String)> = Vec::new();

    // The daemon, at debug level, with every kind of secret configured.
    let port = free_port();
    let log = dir.path().join("run.log");
    let daemon = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(["run", "--repo", &http.url, "--git-token-file", &token_file])
        .args(["--webhook-secret-file", &webhook_file])
        .args(["--ssh-key-passphrase-file", &passphrase_file])
        .args(["--no-leader-election", "--interval", "300ms"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--status-branch",
            "hotsync-status",
            "--cluster-name",
            "secrets",
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("run-cache"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .env("RUST_LOG", "debug")
        .env_remove("HOTSYNC_GIT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
        .spawn()
        .map(Reaped)
        .unwrap_or_else(|e| panic!("hotsync run: {e}"));
    let status_written = env
        .eventually(
            "the daemon to sync and push its status",
            CONVERGE,
            || async {
                let all = everything_in(&remote);
                if all.contains("phase: Synced") {
                    Ok(all)
                } else {
                    Err(std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .join("\n"))
                }
            },
        )
        .await;
    assert!(http.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);

    // A sidecar bump, announced by webhooks: a wrong signature, a wrong bearer token, a good signature.
    let bumped = harness::seed_manifest(&env.namespace, 2, "v2", "");
    commit_to(&remote, &[("minecraft.yaml", &bumped)], "Bump the sidecar");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    mac.update(body);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut answers = Vec::new();
    for (header, value) in [
        ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
        ("authorization", format!("Bearer {WRONG_TOKEN}")),
        ("x-hub-signature-256", good),
    ] {
        let headers = [("X-GitHub-Event", "push".to_string()), (header, value)];
        answers.push(harness::http(addr, "POST", "/webhook", &headers, body).await);
    }
    assert_eq!(
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![401, 401, 202],
        "{answers:?}"
    );
    for (i, a) in answers.iter().enumerate() {
        seen.push((format!("webhook answer {i}"), a.1.clone()));
    }
    let events: kube::Api<Event> = env.api();
    let events = env
        .eventually("the rollout's events", CONVERGE, || async {
            match events.list(&Default::default()).await {
                Ok(l)
                    if l.items
                        .iter()
                        .any(|e| e.reason.as_deref() == Some("RolloutFinished")) =>
                {
                    Ok(l.items)
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    seen.push((
        "events".into(),
        serde_json::to_string(&events).unwrap_or_default(),
    ));
    seen.push((
        "/metrics".into(),
        harness::http(addr, "GET", "/metrics", &[], b"").await.1,
    ));

    // One-shot syncs: the token in the URL, a wrong token, then SSH with a passphrase, right and wrong.
    let in_url = http
        .url
        .replace("http://", &format!("http://x-access-token:{TOKEN}@"));
    let cache = dir.path().join("sync-cache");
    let cache = cache.display().to_string();
    let ok = hotsync(
        &[
            "sync",
            "--repo",
            &in_url,
            "--no-status",
            "--cache-dir",
            &cache,
        ],
        &env.kubeconfig,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    seen.push(("sync with the token in the URL".into(), text(&ok)));
    let json = hotsync(
        &[
            "sync",
            "--repo",
            &in_url,
            "--no-status",
            "--cache-dir",
            &cache,
            "--output",
            "json",
        ],
        &env.kubeconfig,
    );
    seen.push(("sync --output json".into(), text(&json)));
    let bad_url = http
        .url
        .replace("http://", &format!("http://x-access-token:{WRONG_TOKEN}@"));
    let wrong = hotsync(
        &[
            "sync",
            "--repo",
            &bad_url,
            "--no-status",
            "--cache-dir",
            &cache,
        ],
        &env.kubeconfig,
    );
    assert_ne!(wrong.status.code(), Some(0), "{}", text(&wrong));
    seen.push(("sync with a wrong token in the URL".into(), text(&wrong)));
    let wrong = hotsync(
        &[
            "sync",
            "--repo",
            &http.url,
            "--git-token-file",
            &wrong_token_file,
            "--cache-dir",
            &format!("{cache}-wrong"),
        ],
        &env.kubeconfig,
    );
    assert_ne!(wrong.status.code(), Some(0), "{}", text(&wrong));
    seen.push(("sync with a wrong token file".into(), text(&wrong)));

    let sshd = Sshd::start().unwrap_or_else(|| panic!("this test needs sshd"));
    let ssh_url = sshd.url(&remote);
    let key = sshd.client_key_pp.display().to_string();
    let known = sshd.known_hosts.display().to_string();
    let ssh = hotsync(
        &[
            "sync",
            "--repo",
            &ssh_url,
            "--ssh-key-file",
            &key,
            "--ssh-key-passphrase-file",
            &passphrase_file,
            "--known-hosts",
            &known,
            "--status-branch",
            "hotsync-status",
            "--cluster-name",
            "secrets-ssh",
            "--cache-dir",
            &format!("{cache}-ssh"),
        ],
        &env.kubeconfig,
    );
    assert_eq!(
        ssh.status.code(),
        Some(0),
        "a passphrase-protected key reads and writes over SSH: {}\n{}",
        text(&ssh),
        sshd.log()
    );
    seen.push(("sync over SSH".into(), text(&ssh)));
    let ssh_wrong = hotsync(
        &[
            "sync",
            "--repo",
            &ssh_url,
            "--ssh-key-file",
            &key,
            "--ssh-key-passphrase-file",
            &wrong_passphrase_file,
            "--known-hosts",
            &known,
            "--cache-dir",
            &format!("{cache}-ssh-wrong"),
        ],
        &env.kubeconfig,
    );
    assert_ne!(ssh_wrong.status.code(), Some(0), "{}", text(&ssh_wrong));
    seen.push((
        "sync over SSH with a wrong passphrase".into(),
        text(&ssh_wrong),
    ));

    drop(daemon);
    seen.push((
        "the daemon's log".into(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    ));
    seen.push((
        "the remote's commits and files".into(),
        everything_in(&remote),
    ));
    seen.push(("the first status push".into(), status_written));
    let sets: kube::Api<hotsync::model::GameServerSet> = env.api();
    seen.push((
        "the set".into(),
        serde_json::to_string(
            &sets
                .get("minecraft")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_default(),
    ));

    let basic = |t: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"))
    };
    let (b1, b2) = (basic(TOKEN), basic(WRONG_TOKEN));
    let secrets = [
        TOKEN,
        WRONG_TOKEN,
        WEBHOOK,
        Sshd::PASSPHRASE,
        WRONG_PASSPHRASE,
        b1.as_str(),
        b2.as_str(),
    ];
    for (what, haystack) in &seen {
        assert!(
            !haystack.is_empty() || what.starts_with("webhook"),
            "{what} is empty"
        );
        assert_no_secret(what, haystack, &secrets);
    }
}
