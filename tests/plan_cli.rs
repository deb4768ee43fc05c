//! `hotsync plan` and `hotsync validate` as a user runs them: output formats and exit codes.

use crate::gitrepo::TempRepo;
use std::process::Command;

const SET: &str = "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: minecraft
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: POLICY
  gameServerTemplate:
    spec:
      containers:
        - name: minecraft
          image: registry.example.com/minecraft-demo:1.12.2
        - name: sidecar
          image: registry.example.com/sidecar:TAG
";

fn set(policy: &str, tag: &str) -> String {
    SET.replace("POLICY", policy).replace("TAG", tag)
}

fn hotsync(repo: &TempRepo, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("run hotsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn two_commits(base: &str, head: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write("sets/minecraft.yaml", base);
    repo.commit_all("base");
    repo.write("sets/minecraft.yaml", head);
    repo.commit_all("head");
    repo
}

#[test]
fn plan_exits_0_when_nothing_changes() {
    let repo = two_commits(
        &set("InPlaceIfPossible", "v0.1"),
        &set("InPlaceIfPossible", "v0.1"),
    );
    let (code, out, _) = hotsync(&repo, &["plan", "--base", "HEAD~1"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn plan_exits_1_on_a_hot_update_and_says_which_container_restarts() {
    let repo = two_commits(
        &set("InPlaceIfPossible", "v0.1"),
        &set("InPlaceIfPossible", "v0.2"),
    );
    let (code, out, err) = hotsync(&repo, &["plan", "--base", "HEAD~1", "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["sets"][0]["impact"], "HotUpdate");
    assert_eq!(v["sets"][0]["containers"][0]["name"], "sidecar");
    assert_eq!(v["sets"][0]["containers"][0]["inPlace"], true);
    assert_eq!(v["sets"][0]["namespace"], "default");
    assert!(v["base"]["commit"].as_str().is_some_and(|c| c.len() == 40));
}

#[test]
fn plan_fails_the_check_with_3_when_fail_on_recreate_meets_a_recreate() {
    let repo = two_commits(&set("ReCreate", "v0.1"), &set("ReCreate", "v0.2"));
    let (code, out, _) = hotsync(
        &repo,
        &[
            "plan",
            "--base",
            "HEAD~1",
            "--fail-on",
            "recreate",
            "-o",
            "markdown",
        ],
    );
    assert_eq!(code, 3);
    assert!(
        out.contains("podUpdatePolicy is ReCreate: this image bump recreates all 3 pods"),
        "{out}"
    );
}

#[test]
fn plan_exits_2_and_names_the_file_when_a_manifest_is_broken() {
    let repo = two_commits(
        &set("InPlaceIfPossible", "v0.1"),
        "kind: GameServerSet\nmetadata: [unclosed\n",
    );
    let (code, out, _) = hotsync(&repo, &["plan", "--base", "HEAD~1", "-o", "json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["errors"][0]["file"], "sets/minecraft.yaml");
    assert_eq!(v["errors"][0]["document"], 1);
    assert!(v["errors"][0]["line"].as_u64().is_some());
}

#[test]
fn plan_takes_the_merge_base_with_origin_main_by_default() {
    let mut repo = two_commits(
        &set("InPlaceIfPossible", "v0.1"),
        &set("InPlaceIfPossible", "v0.1"),
    );
    // origin/main is the first commit; HEAD has two more commits on top.
    let first = repo.repo.revparse_single("HEAD~1").expect("rev").id();
    repo.repo
        .reference("refs/remotes/origin/main", first, true, "test")
        .expect("ref");
    repo.write("sets/minecraft.yaml", &set("InPlaceIfPossible", "v0.3"));
    repo.commit_all("bump");
    let (code, out, err) = hotsync(&repo, &["plan", "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["base"]["commit"], first.to_string());
}

#[test]
fn validate_reports_every_broken_file_with_its_line() {
    let mut repo = TempRepo::new();
    repo.write("a.yaml", &set("InPlaceIfPossible", "v0.1"));
    repo.write("b.yaml", "apiVersion: game.kruise.io/v1alpha1\nkind: GameServerSet\nmetadata:\n  name: b\nspec:\n  replicas: three\n");
    repo.write("c.yml", "kind: GameServerSet\nmetadata:\n  name: c\n");
    repo.commit_all("sets");
    let (code, out, err) = hotsync(&repo, &["validate"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("b.yaml:6 (document 1): error"), "{err}");
    assert!(
        err.contains("c.yml:1 (document 1): error: GameServerSet has no apiVersion"),
        "{err}"
    );
    assert!(
        out.contains("1 GameServerSet(s) valid, 2 error(s)."),
        "{out}"
    );
}

#[test]
fn validate_passes_on_the_example_repository() {
    let repo = TempRepo::new();
    let (code, out, err) = hotsync(
        &repo,
        &[
            "validate",
            "--worktree",
            "--path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples-repo"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 GameServerSet(s) valid, 0 error(s)."),
        "{out}"
    );
}

#[test]
fn validate_json_lists_the_sets_and_locates_each_error_as_plan_does() {
    let mut repo = TempRepo::new();
    repo.write("sets/minecraft.yaml", &set("InPlaceIfPossible", "v0.1"));
    repo.write(
        "sets/broken.yaml",
        "apiVersion: game.kruise.io/v1alpha1\nkind: GameServerSet\nmetadata:\n  name: broken\nspec:\n  replicas: three\n",
    );
    repo.commit_all("one good set, one broken");
    let (code, out, err) = hotsync(&repo, &["validate", "-o", "json"]);
    assert_eq!(code, 2, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["valid"], false);
    assert_eq!(v["sets"][0]["name"], "minecraft");
    assert_eq!(v["sets"][0]["file"], "sets/minecraft.yaml");
    let errors = v["errors"].as_array().expect("errors[]");
    assert_eq!(errors.len(), 1, "{v:#}");
    assert_eq!(errors[0]["file"], "sets/broken.yaml");
    assert_eq!(errors[0]["document"], 1);
    assert!(errors[0]["line"].as_u64().is_some(), "{v:#}");
    assert!(v["warnings"].is_array());
}
