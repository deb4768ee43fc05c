//! `hotsync wait` as a pipeline runs it after pushing: the real daemon rolls the commit out and writes
//! its status back to Git; `wait` reads that status, or with `--kubeconfig` the cluster, and exits with
//! `sync`'s codes.

use crate::gitrepo::TempRepo;
use crate::harness::{self, Reaped, TestEnv};
use std::path::Path;
use std::process::{Command, Stdio};

const CLUSTER: &str = "test";

pub fn daemon(env: &TestEnv, repo: &Path, scratch: &Path) -> Reaped {
    let log = std::fs::File::create(scratch.join("hotsync.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(["run", "--repo"])
        .arg(repo)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args([
            "--branch",
            &harness::head_branch(repo),
            "--interval",
            "200ms",
        ])
        .args(["--no-leader-election", "--pod-timeout", "20s"])
        .args(["--listen", "127.0.0.1:0", "--cluster-name", CLUSTER])
        .arg("--cache-dir")
        .arg(scratch.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("hotsync run: {e}"));
    Reaped(child)
}

/// `hotsync wait` on the repository's branch tip; exit code and stdout.
async fn wait(repo: &Path, timeout: &str) -> (i32, String) {
    wait_on(repo, timeout, None).await
}

/// `hotsync wait --kubeconfig` on the repository's branch tip: judged from the cluster.
async fn wait_cluster(env: &TestEnv, repo: &Path, timeout: &str) -> (i32, String) {
    wait_on(repo, timeout, Some(env.kubeconfig.clone())).await
}

async fn wait_on(
    repo: &Path,
    timeout: &str,
    kubeconfig: Option<std::path::PathBuf>,
) -> (i32, String) {
    let repo = repo.to_path_buf();
    let timeout = timeout.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotsync"));
        if let Some(k) = &kubeconfig {
            cmd.arg("wait").arg("--kubeconfig").arg(k);
        } else {
            cmd.arg("wait");
        }
        let out = cmd
            .arg("--repo")
            .arg(&repo)
            .args(["--branch", &harness::head_branch(&repo)])
            .args(["--cluster-name", CLUSTER, "--interval", "200ms"])
            .args(["--timeout", &timeout])
            .arg("--cache-dir")
            .arg(repo.join(".wait-cache"))
            .output()
            .expect("run hotsync wait");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .expect("wait")
}

fn log_of(scratch: &Path) -> String {
    std::fs::read_to_string(scratch.join("hotsync.log")).unwrap_or_default()
}

#[tokio::test]
async fn wait_exits_0_once_the_daemon_has_rolled_the_pushed_bump_out() {
    let env = harness::env("wait synced").await;
    let scratch = tempfile::tempdir().expect("scratch");
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.1", ""),
    );
    repo.commit_all("minecraft at v0.1");
    let _daemon = daemon(&env, repo.path(), scratch.path());
    let (code, out) = wait(repo.path(), "120s").await;
    assert_eq!(code, 0, "{out}\n{}", log_of(scratch.path()));

    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.2", ""),
    );
    repo.commit_all("sidecar v0.2");
    let (code, out) = wait(repo.path(), "120s").await;
    assert_eq!(code, 0, "{out}\n{}", log_of(scratch.path()));
    assert!(
        out.contains(&format!("{}/minecraft", env.namespace)),
        "{out}"
    );
    // Done means done: every pod already runs the bump.
    for p in env.pods("minecraft").await {
        assert_eq!(
            hotsync::live::spec_image(&p, "sidecar"),
            Some("registry.example.com/sidecar:v0.2")
        );
        assert!(hotsync::live::is_ready(&p));
    }
    // The cluster says the same.
    let (code, out) = wait_cluster(&env, repo.path(), "60s").await;
    assert_eq!(code, 0, "{out}\n{}", log_of(scratch.path()));
    assert!(out.contains("synced"), "{out}");

    // A commit the daemon has not seen yet (it is stopped) is not done by the cluster's account.
    drop(_daemon);
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.3", ""),
    );
    repo.commit_all("sidecar v0.3, no daemon running");
    let (code, out) = wait_cluster(&env, repo.path(), "2s").await;
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("the cluster is at"), "{out}");
}

/// `wait --kubeconfig` reads the cluster: a set whose game servers are deferred (the set stays held) is
/// not done, nor is a set paused in Git though its revision is the commit; it says so while it waits.
#[tokio::test]
async fn wait_from_the_cluster_says_a_deferred_or_paused_set_is_not_done() {
    let env = harness::env("wait cluster deferred").await;
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.1", ""),
    );
    repo.commit_all("minecraft at v0.1");
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.skip_allocated = true;
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let (code, out) = wait_cluster(&env, repo.path(), "30s").await;
    assert_eq!(code, 0, "{out}");

    env.api::<hotsync::model::GameServer>()
        .patch(
            "minecraft-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"opsState": "Allocated"}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.eventually("the opsState on the pod", harness::CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        match pods
            .iter()
            .find(|p| kube::ResourceExt::name_any(*p) == "minecraft-1")
        {
            Some(p) if hotsync::live::ops_state(p) == "Allocated" => Ok(()),
            _ => Err("not yet".to_string()),
        }
    })
    .await;
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.2", ""),
    );
    repo.commit_all("sidecar v0.2");
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(
        report.sets[0].outcome,
        hotsync::rollout::Outcome::Deferred,
        "{report:#?}"
    );
    let (code, out) = wait_cluster(&env, repo.path(), "2s").await;
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("Deferred") && out.contains("not done"),
        "{out}"
    );

    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.3", "      paused: true\n"),
    );
    repo.commit_all("sidecar v0.3, paused");
    opts.rollout.skip_allocated = false;
    hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    let (code, out) = wait_cluster(&env, repo.path(), "2s").await;
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("paused"), "{out}");
}

#[tokio::test]
async fn wait_exits_1_when_the_rollout_of_the_commit_fails() {
    let env = harness::env("wait failed").await;
    let scratch = tempfile::tempdir().expect("scratch");
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.1", ""),
    );
    repo.commit_all("minecraft at v0.1");
    let _daemon = daemon(&env, repo.path(), scratch.path());
    let (code, out) = wait(repo.path(), "120s").await;
    assert_eq!(code, 0, "{out}");
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.2-missing", ""),
    );
    repo.commit_all("sidecar v0.2-missing, an image that does not exist");
    let (code, out) = wait(repo.path(), "120s").await;
    assert_eq!(code, 1, "{out}\n{}", log_of(scratch.path()));
    assert!(out.contains("Failed"), "{out}");
    // The cluster says the same, by the daemon's RolloutFailed Event for this commit.
    let (code, out) = wait_cluster(&env, repo.path(), "60s").await;
    assert_eq!(code, 1, "{out}\n{}", log_of(scratch.path()));
    assert!(out.contains("outcome Failed at commit"), "{out}");
}

#[test]
fn wait_exits_4_and_says_what_it_waited_for_when_no_status_comes() {
    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest("games", 2, "v0.1", ""),
    );
    repo.commit_all("minecraft at v0.1");
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(["wait", "--timeout", "1s", "--interval", "100ms"])
        .current_dir(repo.path())
        .output()
        .expect("run hotsync wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("timed out") && text.contains("games/minecraft (no status yet)"),
        "{text}"
    );
}
