//! Bad input at scale: loading and diffing never panic, alias bombs and huge files are refused within
//! limits, and a namespace allowlist keeps manifests out of namespaces they should not reach.

use crate::gitrepo::TempRepo;
use crate::harness;
use hotsync::diff::diff_sets;
use hotsync::manifest::{load_file, LoadOptions, Severity};
use proptest::prelude::*;
use std::process::Command;
use std::time::{Duration, Instant};

const VALID: &str = "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: minecraft
  namespace: games
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
      maxUnavailable: 50%
  gameServerTemplate:
    metadata:
      labels: {season: \"7\"}
    spec:
      containers:
        - name: minecraft
          image: registry.example.com/minecraft-demo:1.12.2
          resources: {requests: {cpu: 500m}}
        - name: sidecar
          image: registry.example.com/sidecar:v0.1
";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let m = load_file("fuzz.yaml", &bytes, &LoadOptions::default());
        for d in &m.diagnostics {
            prop_assert_eq!(&d.file, "fuzz.yaml");
        }
    }

    /// Mutations of a valid manifest: a byte replaced, a range deleted, a range repeated.
    #[test]
    fn loading_and_diffing_mutated_manifests_never_panics(
        at in 0usize..VALID.len(),
        len in 0usize..40,
        byte in any::<u8>(),
        kind in 0u8..3,
    ) {
        let mut b = VALID.as_bytes().to_vec();
        let end = (at + len).min(b.len());
        match kind {
            0 => b[at] = byte,
            1 => { b.drain(at..end); }
            _ => { let piece = b[at..end].to_vec(); b.splice(at..at, piece); }
        }
        let m = load_file("mutated.yaml", &b, &LoadOptions::default());
        let base = load_file("valid.yaml", VALID.as_bytes(), &LoadOptions::default());
        if let (Some(a), Some(h)) = (base.sets.first(), m.sets.first()) {
            let _ = diff_sets(Some(&a.gss), Some(&h.gss));
            let _ = diff_sets(Some(&h.gss), Some(&a.gss));
        }
        prop_assert!(m.sets.len() <= 1);
        if m.sets.is_empty() {
            prop_assert!(!m.diagnostics.is_empty(), "a document that loads nothing says why");
        }
    }
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly_with_a_located_error() {
    // The "billion laughs": nine levels of nine aliases each, 9^9 strings once expanded.
    let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("{cur}: &{cur} [{refs}]\n"));
    }
    let started = Instant::now();
    let m = load_file("bomb.yaml", bomb.as_bytes(), &LoadOptions::default());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(m.sets.is_empty());
    let e = m
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap_or_else(|| panic!("no error for an alias bomb: {:?}", m.diagnostics));
    assert!(e.line.is_some() && e.document == Some(1), "{e}");
}

#[test]
fn a_file_over_the_size_limit_is_refused_whole() {
    let huge = format!("{VALID}# {}\n", "x".repeat(2 * 1024 * 1024));
    let m = load_file("huge.yaml", huge.as_bytes(), &LoadOptions::default());
    assert!(m.sets.is_empty());
    assert!(
        m.diagnostics[0].message.contains("over the limit"),
        "{}",
        m.diagnostics[0]
    );
}

#[test]
fn plan_reports_a_set_outside_the_allowed_namespaces_as_an_error() {
    let mut repo = TempRepo::new();
    repo.write("sets/a.yaml", &VALID.replace("v0.1", "v0.0"));
    repo.commit_all("base");
    repo.write("sets/a.yaml", VALID);
    repo.commit_all("head");
    let out = Command::new(env!("CARGO_BIN_EXE_hotsync"))
        // The simulated cluster has no registry to ask.
        .env("HOTSYNC_NO_IMAGE_CHECK", "true")
        .args([
            "plan",
            "--base",
            "HEAD~1",
            "--allow-namespace",
            "lobby",
            "--allow-namespace",
            "arena",
            "-o",
            "json",
        ])
        .current_dir(repo.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["errors"][0]["file"], "sets/a.yaml");
    assert_eq!(v["errors"][0]["line"], 5, "{v}");
    let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("namespace games, which is not allowed here (allowed: lobby, arena)"),
        "{msg}"
    );
}

#[tokio::test]
async fn sync_applies_nothing_when_a_set_names_a_namespace_outside_the_allowlist() {
    let env = harness::env("allowlist").await;
    let mut repo = TempRepo::new();
    repo.write(
        "sets/a.yaml",
        &VALID.replace("namespace: games", &format!("namespace: {}", env.namespace)),
    );
    repo.write(
        "sets/b.yaml",
        &VALID
            .replace("name: minecraft", "name: intruder")
            .replace("namespace: games", "namespace: kube-system"),
    );
    repo.commit_all("two sets, one outside");
    let mut opts = harness::sync_options(repo.path());
    opts.load.allowed_namespaces = vec![env.namespace.clone()];
    let report = hotsync::sync::sync(&env.client, &opts, None)
        .await
        .unwrap_or_else(|e| panic!("{}", hotsync::sync::error_chain(&e)));
    assert_eq!(report.exit_code(), 2);
    assert!(
        report.errors[0].message.contains("kube-system"),
        "{:?}",
        report.errors
    );
    let gss: kube::Api<hotsync::model::GameServerSet> = env.api();
    assert!(
        gss.list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .is_empty(),
        "nothing applied"
    );
}
