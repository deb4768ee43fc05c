//! Helm charts as studios keep them: one chart, a values file per cluster on top of the chart's own
//! values, a bump through values, a broken template; rendered by the real `helm template` (3.17.1,
//! installed by scripts/install-helm.sh) at each commit, planned, validated and synced.

use crate::gitrepo::TempRepo;
use crate::harness;
use hotsync::rollout::{Outcome, PodOutcome};
use kube::ResourceExt as _;
use std::path::PathBuf;
use std::process::Command;

/// The helm binary the test command installed; a test that needs it fails loudly without it.
fn helm_bin() -> PathBuf {
    let from_env = std::env::var_os("HOTSYNC_TEST_HELM").map(PathBuf::from);
    let cached =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hotsync/helm-v3.17.1/helm"));
    from_env
        .or(cached)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("helm is not installed: run scripts/install-helm.sh (scripts/test.sh does) or set HOTSYNC_TEST_HELM")
        })
}

const CHART: &str = "apiVersion: v2\nname: game\nversion: 0.1.0\n";

const VALUES: &str = "# the chart's defaults\nreplicas: 2\nsidecar:\n  tag: v1\n";

const TEMPLATE: &str = "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/managed-by: {{ .Release.Service }}
spec:
  replicas: {{ .Values.replicas }}
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
  gameServerTemplate:
    spec:
      containers:
        - name: minecraft
          image: registry.example.com/minecraft-demo:1.12.2
        - name: sidecar
          image: registry.example.com/sidecar:{{ .Values.sidecar.tag }}
";

fn cluster_values(replicas: u32, tag: Option<&str>) -> String {
    let tag = tag
        .map(|t| format!("sidecar:\n  tag: {t}\n"))
        .unwrap_or_default();
    format!("replicas: {replicas}\n{tag}")
}

/// The chart under `charts/game` and the two values files for the eu cluster, committed.
fn studio() -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write("charts/game/Chart.yaml", CHART);
    repo.write("charts/game/values.yaml", VALUES);
    repo.write("charts/game/templates/gss.yaml", TEMPLATE);
    repo.write("envs/eu/values.yaml", &cluster_values(3, None));
    repo.write("envs/eu/canary.yaml", "sidecar:\n  tag: v1\n");
    repo.commit_all("the chart and eu's values");
    repo
}

fn hotsync(repo: &TempRepo, args: &[&str]) -> (i32, String, String) {
    let helm = helm_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args(args)
        .args(["--helm-bin".as_ref(), helm.as_os_str()])
        .args([
            "--helm-release",
            "minecraft",
            "-n",
            "eu",
            "--helm-values",
            "envs/eu/values.yaml",
            "--helm-values",
            "envs/eu/canary.yaml",
        ])
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
        &["plan", "--base", "HEAD~1", "--path", "charts", "-o", "json"],
    );
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v, err)
}

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
fn the_chart_is_rendered_with_the_release_name_and_both_values_files_the_later_winning() {
    let repo = studio();
    let (code, out, err) = hotsync(&repo, &["validate", "--path", "charts", "-o", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let sets = v["sets"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 1, "{v:#}");
    assert_eq!(sets[0]["namespace"], "eu");
    assert_eq!(sets[0]["name"], "minecraft");
    assert_eq!(sets[0]["file"], "charts/game/Chart.yaml");
}

#[test]
fn a_change_to_the_first_values_file_is_planned_for_the_chart_it_feeds() {
    let mut repo = studio();
    repo.write("envs/eu/values.yaml", &cluster_values(5, None));
    repo.commit_all("eu: 5 replicas");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), ["eu/minecraft Scale"], "{plan:#}\n{err}");
    assert_eq!(code, 1, "a change, though no hot update");
}

#[test]
fn a_bump_through_the_last_values_file_is_a_hot_update() {
    let mut repo = studio();
    repo.write("envs/eu/canary.yaml", "sidecar:\n  tag: v2\n");
    repo.commit_all("eu: sidecar v2");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(
        impacts(&plan),
        ["eu/minecraft HotUpdate"],
        "{plan:#}\n{err}"
    );
    assert_eq!(code, 1);
    assert_eq!(plan["sets"][0]["containers"][0]["name"], "sidecar");
    assert_eq!(
        plan["sets"][0]["containers"][0]["to"], "registry.example.com/sidecar:v2",
        "{plan:#}"
    );
}

#[test]
fn a_bump_in_the_charts_own_values_that_a_values_file_overrides_changes_nothing() {
    let mut repo = studio();
    repo.write(
        "charts/game/values.yaml",
        &VALUES.replace("tag: v1", "tag: v9"),
    );
    repo.commit_all("chart default: sidecar v9, overridden by eu's canary.yaml");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), Vec::<String>::new(), "{plan:#}\n{err}");
    assert_eq!(code, 0, "{plan:#}");
}

#[test]
fn a_broken_template_is_an_error_naming_the_chart_with_helms_message() {
    let mut repo = studio();
    repo.write(
        "charts/game/templates/gss.yaml",
        &TEMPLATE.replace(
            "{{ .Values.replicas }}",
            "{{ .Values.replicas | nosuchfunc }}",
        ),
    );
    repo.write(
        "plain/other.yaml",
        &harness::seed_manifest("eu", 1, "v1", "").replace("name: minecraft", "name: other"),
    );
    repo.commit_all("a broken template beside a plain set");
    let (code, out, err) = hotsync(&repo, &["validate", "--path", ".", "-o", "json"]);
    assert_ne!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let errors = v["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{v:#}");
    assert_eq!(errors[0]["file"], "charts/game/Chart.yaml");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("charts/game/templates/gss.yaml:8: ")
            && message.contains("helm template")
            && message.contains(r#"function "nosuchfunc" not defined"#),
        "the template and line helm names, as a path of the repository: {message}"
    );
    assert!(
        !message.contains("hotsync-helm-"),
        "the temporary checkout's path is not shown: {message}"
    );
    let names: Vec<&str> = v["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["other"], "the plain set is still read: {v:#}");
}

#[test]
fn a_chart_broken_at_the_head_is_an_error_and_its_set_is_not_planned_as_deleted() {
    let mut repo = studio();
    repo.write("charts/game/templates/gss.yaml", "{{ broken");
    repo.commit_all("broken template");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), Vec::<String>::new(), "{plan:#}\n{err}");
    assert_eq!(
        plan["errors"][0]["file"], "charts/game/Chart.yaml",
        "{plan:#}"
    );
    assert_ne!(code, 0);
    assert_ne!(code, 1, "errors are not a plain change: {code}");
}

#[test]
fn a_values_file_missing_at_the_commit_is_an_error_naming_the_file_and_the_flag() {
    let mut repo = studio();
    repo.remove("envs/eu/canary.yaml");
    repo.commit_all("canary values removed");
    let (code, out, err) = hotsync(&repo, &["validate", "--path", "charts", "-o", "json"]);
    assert_ne!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(v["errors"][0]["file"], "charts/game/Chart.yaml", "{v:#}");
    assert!(
        message.contains("envs/eu/canary.yaml") && message.contains("--helm-values"),
        "{message}"
    );
}

#[test]
fn validate_worktree_renders_the_chart_with_its_values_from_the_files_on_disk() {
    let repo = studio();
    repo.write(
        "charts/game/templates/gss.yaml",
        &TEMPLATE.replace(
            "{{ .Values.replicas }}",
            "{{ .Values.replicas | nosuchfunc }}",
        ),
    );
    let (code, out, err) = hotsync(
        &repo,
        &["validate", "--worktree", "--path", "charts", "-o", "json"],
    );
    assert_eq!(code, 2, "the edit on disk is read, not HEAD: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["errors"][0]["file"], "charts/game/Chart.yaml", "{v:#}");
    repo.write("charts/game/templates/gss.yaml", TEMPLATE);
    let (code, out, err) = hotsync(
        &repo,
        &["validate", "--worktree", "--path", "charts", "-o", "json"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["sets"][0]["name"], "minecraft", "{v:#}");
    assert_eq!(v["sets"][0]["namespace"], "eu", "{v:#}");
}

#[test]
fn a_change_outside_the_charts_inputs_renders_nothing() {
    // The chart is broken from the start; a change that it does not read plans no set and says
    // nothing of the chart, which was not rendered.
    let mut repo = TempRepo::new();
    repo.write("charts/game/Chart.yaml", CHART);
    repo.write("charts/game/values.yaml", VALUES);
    repo.write("charts/game/templates/gss.yaml", "{{ broken");
    repo.write("envs/eu/values.yaml", &cluster_values(3, None));
    repo.write("envs/eu/canary.yaml", "sidecar:\n  tag: v1\n");
    repo.write("charts/README.md", "the charts\n");
    repo.commit_all("a broken chart");
    repo.write("charts/README.md", "the charts, documented\n");
    repo.commit_all("docs");
    let (code, plan, err) = plan_json(&repo);
    assert_eq!(impacts(&plan), Vec::<String>::new(), "{plan:#}\n{err}");
    assert_eq!(plan["errors"].as_array().map(Vec::len), Some(0), "{plan:#}");
    assert_eq!(code, 0);
}

#[test]
fn set_image_refuses_a_set_rendered_by_a_chart_naming_the_chart() {
    let repo = studio();
    let (code, out, err) = hotsync(
        &repo,
        &[
            "set-image",
            "--path",
            "charts",
            "eu/minecraft",
            "sidecar",
            "registry.example.com/sidecar:v2",
        ],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("charts/game/Chart.yaml") && err.contains("values"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("envs/eu/canary.yaml")).expect("read"),
        "sidecar:\n  tag: v1\n",
        "nothing edited"
    );
}

#[tokio::test]
async fn a_bump_through_values_rolls_out_in_place_on_the_cluster() {
    let env = harness::env("helm bump").await;
    let mut repo = TempRepo::new();
    repo.write("charts/game/Chart.yaml", CHART);
    repo.write("charts/game/values.yaml", VALUES);
    repo.write("charts/game/templates/gss.yaml", TEMPLATE);
    repo.commit_all("the chart");
    let mut opts = harness::sync_options(repo.path());
    opts.path = "charts".into();
    opts.load.default_namespace = env.namespace.clone();
    opts.load.helm.bin = Some(helm_bin());
    opts.load.helm.release = Some("minecraft".into());
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
        "charts/game/values.yaml",
        &VALUES.replace("tag: v1", "tag: v2"),
    );
    repo.commit_all("sidecar v2 through values");
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
