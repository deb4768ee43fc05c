//! Kustomize overlays as studios keep them: a base shared by two cluster overlays, a patch, a bump
//! through `images:`, a broken overlay, a remote base; rendered by the real `kubectl kustomize` at each
//! commit, planned, validated and synced.

use crate::gitrepo::TempRepo;
use crate::harness;
use hotsync::rollout::{Outcome, PodOutcome};
use kube::ResourceExt as _;
use std::process::Command;

fn base_set(tag: &str) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: minecraft
spec:
  replicas: 2
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
  gameServerTemplate:
    spec:
      containers:
        - name: minecraft
          image: registry.example.com/minecraft-demo:1.12.2
        - name: sidecar
          image: registry.example.com/sidecar:{tag}
"
    )
}

const BASE: &str = "resources:\n  - gss.yaml\n";

fn eu_overlay(ns: &str) -> String {
    format!(
        "namespace: {ns}\nresources:\n  - ../../bases/game\npatches:\n  - path: replicas.yaml\n"
    )
}

fn eu_patch(replicas: u32) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1\nkind: GameServerSet\nmetadata:\n  name: minecraft\nspec:\n  replicas: {replicas}\n"
    )
}

fn us_overlay(ns: &str, sidecar_tag: Option<&str>) -> String {
    let images = sidecar_tag
        .map(|t| format!("images:\n  - name: registry.example.com/sidecar\n    newTag: {t}\n"))
        .unwrap_or_default();
    format!("namespace: {ns}\nresources:\n  - ../../bases/game\n{images}")
}

/// The base (outside `--path clusters`) and the two overlays, committed.
fn studio() -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write("bases/game/kustomization.yaml", BASE);
    repo.write("bases/game/gss.yaml", &base_set("v1"));
    repo.write("clusters/eu/kustomization.yaml", &eu_overlay("eu"));
    repo.write("clusters/eu/replicas.yaml", &eu_patch(3));
    repo.write("clusters/us/kustomization.yaml", &us_overlay("us", None));
    repo.commit_all("base and two overlays");
    repo
}

fn hotsync(repo: &TempRepo, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
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

fn plan_json(repo: &TempRepo) -> (i32, serde_json::Value, String) {
    let (code, out, err) = hotsync(
        repo,
        &[
            "plan", "--base", "HEAD~1", "--path", "clusters", "-o", "json",
        ],
    );
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v, err)
}

/// The planned sets as `namespace/name impact`.
fn impacts(plan: &serde_json::Value) -> Vec<String> {
    plan["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}/{} {}",
                s["namespace"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap_or(""),
                s["impact"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_bump_through_an_overlays_images_entry_is_a_hot_update_of_that_overlay_only() {
    let mut repo = studio();
    repo.write(
        "clusters/us/kustomization.yaml",
        &us_overlay("us", Some("v2")),
    );
    repo.commit_all("us: sidecar v2");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(
        impacts(&plan),
        ["us/minecraft HotUpdate"],
        "{plan:#}\n{err}"
    );
    assert_eq!(code, 1);
    assert_eq!(plan["sets"][0]["containers"][0]["name"], "sidecar");
}

#[test]
fn a_change_to_the_shared_base_shows_in_every_overlay_that_reads_it() {
    let mut repo = studio();
    repo.write("bases/game/gss.yaml", &base_set("v2"));
    repo.commit_all("base: sidecar v2");
    let (_, plan, err) = plan_json(&repo);
    assert_eq!(
        impacts(&plan),
        ["eu/minecraft HotUpdate", "us/minecraft HotUpdate"],
        "{plan:#}\n{err}"
    );
}

#[test]
fn a_patch_of_one_overlay_changes_that_overlay_alone() {
    let mut repo = studio();
    repo.write("clusters/eu/replicas.yaml", &eu_patch(5));
    repo.commit_all("eu: 5 replicas");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), ["eu/minecraft Scale"], "{plan:#}\n{err}");
    assert_eq!(code, 1, "a change, though no hot update");
}

#[test]
fn an_overlay_added_is_planned_as_created_and_one_removed_as_deleted() {
    let mut repo = studio();
    repo.remove("clusters/us/kustomization.yaml");
    repo.write("clusters/ap/kustomization.yaml", &us_overlay("ap", None));
    repo.commit_all("us closed, ap opened");
    let (_, plan, err) = plan_json(&repo);
    assert_eq!(
        impacts(&plan),
        ["ap/minecraft Create", "us/minecraft Delete"],
        "{plan:#}\n{err}"
    );
}

#[test]
fn a_kustomization_renamed_to_its_other_spelling_is_no_change() {
    let mut repo = studio();
    repo.remove("clusters/us/kustomization.yaml");
    repo.write("clusters/us/kustomization.yml", &us_overlay("us", None));
    repo.commit_all("us: kustomization.yml");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), Vec::<String>::new(), "{plan:#}\n{err}");
    assert_eq!(code, 0, "{plan:#}\n{err}");
}

#[test]
fn a_broken_overlay_is_an_error_naming_it_with_kustomizes_message_and_the_other_is_still_planned() {
    let mut repo = studio();
    repo.write("bases/game/gss.yaml", &base_set("v2"));
    repo.write(
        "clusters/us/kustomization.yaml",
        "namespace: us\nresources:\n  - ../../bases/game\n  - ../../bases/missing\n",
    );
    repo.commit_all("base bumped, us broken");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(
        impacts(&plan),
        ["eu/minecraft HotUpdate"],
        "{plan:#}\n{err}"
    );
    let errors = plan["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{plan:#}");
    assert_eq!(errors[0]["file"], "clusters/us/kustomization.yaml");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("kustomize") && message.contains("bases/missing"),
        "{message}"
    );
    assert!(
        !message.contains("hotsync-kustomize-"),
        "the temporary checkout's path is not shown: {message}"
    );
    assert_ne!(code, 0);
    assert_ne!(code, 1, "errors are not a plain hot update: {code}");
}

#[test]
fn a_remote_base_is_refused_without_reaching_for_the_network() {
    let mut repo = studio();
    repo.write(
        "clusters/us/kustomization.yaml",
        "namespace: us\nresources:\n  - https://github.com/example/game//base?ref=v1\n",
    );
    repo.commit_all("us: a remote base");
    let (_, plan, err) = plan_json(&repo);
    let errors = plan["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{plan:#}\n{err}");
    assert_eq!(errors[0]["file"], "clusters/us/kustomization.yaml");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("remote base") && m.contains("--kustomize-allow-remote")),
        "{plan:#}"
    );
}

#[test]
fn an_unchanged_overlay_is_not_rendered_again() {
    // The us overlay is broken from the start; a change that only the eu overlay reads plans eu alone
    // and says nothing of us, which was not rendered.
    let mut repo = TempRepo::new();
    repo.write("bases/game/kustomization.yaml", BASE);
    repo.write("bases/game/gss.yaml", &base_set("v1"));
    repo.write("clusters/eu/kustomization.yaml", &eu_overlay("eu"));
    repo.write("clusters/eu/replicas.yaml", &eu_patch(3));
    repo.write(
        "clusters/us/kustomization.yaml",
        "resources:\n  - ../../bases/missing\n",
    );
    repo.commit_all("eu and a broken us");
    repo.write("clusters/eu/replicas.yaml", &eu_patch(4));
    repo.commit_all("eu: 4 replicas");
    let (_, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), ["eu/minecraft Scale"], "{plan:#}\n{err}");
    assert_eq!(plan["errors"].as_array().map(Vec::len), Some(0), "{plan:#}");
}

#[test]
fn validate_reads_the_rendered_sets_and_plain_files_beside_the_overlays() {
    let mut repo = studio();
    repo.write(
        "clusters/plain/minecraft.yaml",
        &base_set("v1").replacen(
            "  name: minecraft\n",
            "  name: minecraft\n  namespace: plain\n",
            1,
        ),
    );
    repo.commit_all("a plain set beside the overlays");
    let (code, out, err) = hotsync(&repo, &["validate", "--path", "clusters", "-o", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let sets: Vec<String> = v["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}/{} {}",
                s["namespace"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap_or(""),
                s["file"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        sets,
        [
            "eu/minecraft clusters/eu/kustomization.yaml",
            "plain/minecraft clusters/plain/minecraft.yaml",
            "us/minecraft clusters/us/kustomization.yaml",
        ],
        "{v:#}"
    );
    assert_eq!(v["valid"], true);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0));
}

#[test]
fn validate_worktree_renders_the_overlays_from_the_files_on_disk_before_they_are_committed() {
    let repo = studio();
    // An edit not yet committed: the us overlay now names a base that does not exist.
    repo.write(
        "clusters/us/kustomization.yaml",
        "namespace: us\nresources:\n  - ../../bases/game\n  - ../../bases/missing\n",
    );
    let (code, out, err) = hotsync(
        &repo,
        &["validate", "--worktree", "--path", "clusters", "-o", "json"],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let sets: Vec<String> = v["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}/{} {}",
                s["namespace"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap_or(""),
                s["file"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        sets,
        ["eu/minecraft clusters/eu/kustomization.yaml"],
        "{v:#}"
    );
    assert_eq!(
        v["errors"][0]["file"], "clusters/us/kustomization.yaml",
        "{v:#}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bases/missing")),
        "{v:#}"
    );
    // At HEAD, the committed overlays are still valid.
    let (code, out, err) = hotsync(&repo, &["validate", "--path", "clusters"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_missing_kustomize_binary_is_a_clear_error_naming_the_flag() {
    let repo = studio();
    let (code, out, err) = hotsync(
        &repo,
        &[
            "validate",
            "--path",
            "clusters",
            "--kustomize-bin",
            "/nonexistent/kustomize",
        ],
    );
    assert_ne!(code, 0);
    let all = format!("{out}{err}");
    assert!(
        all.contains("/nonexistent/kustomize") && all.contains("--kustomize-bin"),
        "{all}"
    );
}

#[tokio::test]
async fn a_bump_through_images_rolls_out_in_place_on_the_cluster() {
    let env = harness::env("kustomize bump").await;
    let mut repo = TempRepo::new();
    repo.write("bases/game/kustomization.yaml", BASE);
    repo.write("bases/game/gss.yaml", &base_set("v1"));
    repo.write(
        "clusters/test/kustomization.yaml",
        &us_overlay(&env.namespace, None),
    );
    repo.commit_all("the overlay");
    let mut opts = harness::sync_options(repo.path());
    opts.path = "clusters".into();
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let before: Vec<(String, String)> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    assert_eq!(before.len(), 2);

    repo.write(
        "clusters/test/kustomization.yaml",
        &us_overlay(&env.namespace, Some("v2")),
    );
    repo.commit_all("sidecar v2 through images:");
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(report.sets[0].outcome, Outcome::Synced);
    assert!(report.sets[0]
        .pods
        .iter()
        .all(|p| p.result == PodOutcome::Updated));
    let after = env.pods("minecraft").await;
    let now: Vec<(String, String)> = after
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    assert_eq!(now, before, "the same pods, none recreated");
    for p in &after {
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some("registry.example.com/sidecar:v2")
        );
        assert_eq!(
            hotsync::live::container_status(p, "sidecar").map(|s| s.restart_count),
            Some(1)
        );
    }
}
