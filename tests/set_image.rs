//! `hotsync set-image` as a sidecar's CI runs it: one scalar changes, every other byte stays, and the
//! bump it commits is planned as a hot update.

use crate::gitrepo::TempRepo;
use std::process::Command;

const SET: &str = "# The arena fleet. Sidecar bumped by CI.
apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: arena    # players know it by this name
  namespace: games
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
  gameServerTemplate:
    spec:
      containers:
        - name: engine
          image: 'registry.example.com/engine:1.0'
        - image: \"registry.example.com/sidecar:v1\"  # the scripts
          name: sidecar
";

fn hotsync(repo: &TempRepo, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .args(args)
        .current_dir(repo.path())
        .env("GIT_AUTHOR_NAME", "ci")
        .env("GIT_AUTHOR_EMAIL", "ci@example.com")
        .env("GIT_COMMITTER_NAME", "ci")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .output()
        .expect("run hotsync");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn read(repo: &TempRepo, rel: &str) -> String {
    std::fs::read_to_string(repo.path().join(rel)).expect("read")
}

fn git_log(repo: &TempRepo) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args(["log", "-1", "--format=%B", "--stat"])
        .output()
        .expect("git log");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn set_image_changes_the_one_scalar_and_commits_a_bump_that_plans_as_a_hot_update() {
    let mut repo = TempRepo::new();
    repo.write("sets/arena.yaml", SET);
    repo.write("sets/other.yaml", &SET.replace("arena", "lobby"));
    repo.commit_all("the arena");
    let (code, out) = hotsync(
        &repo,
        &[
            "set-image",
            "games/arena",
            "sidecar",
            "registry.example.com/sidecar:v2",
            "--commit",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        read(&repo, "sets/arena.yaml"),
        SET.replace("sidecar:v1\"", "sidecar:v2\""),
        "every other byte as it was"
    );
    assert_eq!(
        read(&repo, "sets/other.yaml"),
        SET.replace("arena", "lobby")
    );
    let log = git_log(&repo);
    assert!(
        log.contains("games/arena: set sidecar to registry.example.com/sidecar:v2")
            && log.contains("sets/arena.yaml | 2 +-"),
        "{log}"
    );
    let (code, out) = hotsync(&repo, &["plan", "--base", "HEAD~1", "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(plan["sets"][0]["name"], "arena");
    assert_eq!(plan["sets"][0]["impact"], "HotUpdate");
}

#[test]
fn set_image_refuses_a_set_or_container_it_cannot_find_and_a_set_defined_twice() {
    let mut repo = TempRepo::new();
    repo.write("sets/arena.yaml", SET);
    repo.commit_all("the arena");
    let (code, out) = hotsync(&repo, &["set-image", "games/nowhere", "sidecar", "x:1"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("GameServerSet games/nowhere is not found"),
        "{out}"
    );
    let (code, out) = hotsync(&repo, &["set-image", "games/arena", "agent", "x:1"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("has no container agent (it has engine, sidecar)"),
        "{out}"
    );
    repo.write("sets/copy.yaml", SET);
    repo.commit_all("the arena twice");
    let (code, out) = hotsync(&repo, &["set-image", "games/arena", "sidecar", "x:1"]);
    assert_eq!(code, 2);
    assert!(out.contains("is defined twice"), "{out}");
    assert_eq!(read(&repo, "sets/arena.yaml"), SET, "nothing was written");
}

fn base_set() -> String {
    SET.replace("  namespace: games\n", "")
}

#[test]
fn set_image_in_an_overlay_edits_its_images_entry_or_adds_one_and_never_the_shared_base() {
    let mut repo = TempRepo::new();
    repo.write("base/kustomization.yaml", "resources:\n  - arena.yaml\n");
    repo.write("base/arena.yaml", &base_set());
    let eu = "namespace: eu\nresources:\n  - ../../base\nimages:\n  # CI bumps this\n  - name: registry.example.com/sidecar\n    newTag: v1\n";
    let us = "namespace: us   # the US fleet\nresources:\n  - ../../base\n";
    repo.write("clusters/eu/kustomization.yaml", eu);
    repo.write("clusters/us/kustomization.yaml", us);
    repo.commit_all("base and two overlays");

    let (code, out) = hotsync(
        &repo,
        &[
            "set-image",
            "--path",
            "clusters",
            "eu/arena",
            "sidecar",
            "registry.example.com/sidecar:v2",
            "--commit",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        read(&repo, "clusters/eu/kustomization.yaml"),
        eu.replace("newTag: v1", "newTag: v2")
    );

    let (code, out) = hotsync(
        &repo,
        &[
            "set-image",
            "--path",
            "clusters",
            "us/arena",
            "sidecar",
            "registry.example.com/sidecar:v3",
            "--commit",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        read(&repo, "clusters/us/kustomization.yaml"),
        format!("{us}images:\n  - name: registry.example.com/sidecar\n    newTag: v3\n")
    );
    assert_eq!(
        read(&repo, "base/arena.yaml"),
        base_set(),
        "the base is untouched"
    );
    let (_, out) = hotsync(
        &repo,
        &[
            "plan", "--base", "HEAD~1", "--path", "clusters", "-o", "json",
        ],
    );
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    let sets: Vec<String> = plan["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{}/{} {}", s["namespace"], s["name"], s["impact"]))
        .collect();
    assert_eq!(sets, ["\"us\"/\"arena\" \"HotUpdate\""], "{plan:#}");
}
