//! Every GameServerSet manifest from OKG's documentation either loads or fails with a located message.
//! The files are read from `../shared/okg/examples` (never copied into this repository).

use hotsync::manifest::{load_file, LoadOptions, Severity};
use std::path::PathBuf;

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/okg/examples");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the upstream examples must be at {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().to_string();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// The upstream files that are broken, and what must be said of each.
const BROKEN: &[(&str, &str)] = &[
    (
        "cloudprovider__jdcloud__README.md__block01.yaml",
        "invalid YAML",
    ),
    (
        "cloudprovider__jdcloud__README.md__block02.yaml",
        "invalid YAML",
    ),
    (
        "cloudprovider__volcengine__README.md__block01.yaml",
        "invalid YAML",
    ),
    (
        "docs__en__getting_started__hot_update.md__block02.yaml",
        "no apiVersion",
    ),
    (
        "docs__en__getting_started__hot_update.md__block03.yaml",
        "no apiVersion",
    ),
    (
        "cloudprovider__jdcloud__README.zh_CN.md__block02.yaml",
        "containers is empty",
    ),
    (
        "docs__en__user_manuals__ServiceQualityTemplateVariables.md__block01.yaml",
        "spec.replicas is required",
    ),
];

#[test]
fn every_upstream_example_loads_or_fails_with_a_located_message() {
    let all = examples();
    assert!(
        all.len() >= 61,
        "expected the 61 upstream examples, found {}",
        all.len()
    );
    let mut loaded = 0;
    for (name, bytes) in &all {
        let m = load_file(name, bytes, &LoadOptions::default());
        let errors: Vec<_> = m
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        if let Some((_, what)) = BROKEN.iter().find(|(n, _)| n == name) {
            assert!(
                errors.iter().any(|e| e.message.contains(what)),
                "{name} must fail with {what:?}, got {errors:?}"
            );
        }
        for e in &errors {
            assert_eq!(&e.file, name);
            assert!(e.document.is_some(), "{name}: error without document: {e}");
            assert!(e.line.is_some(), "{name}: error without line: {e}");
        }
        if errors.is_empty() {
            assert!(!m.sets.is_empty(), "{name}: no error and no set");
            loaded += 1;
        }
    }
    assert!(loaded >= 45, "only {loaded} upstream examples loaded");
}

#[test]
fn invalid_yaml_upstream_is_reported_at_its_line() {
    let (name, bytes) = examples()
        .into_iter()
        .find(|(n, _)| n == "cloudprovider__jdcloud__README.md__block01.yaml")
        .expect("example");
    let m = load_file(&name, &bytes, &LoadOptions::default());
    let e = &m.diagnostics[0];
    let text = String::from_utf8_lossy(&bytes);
    let line = e.line.expect("line");
    assert!(line > 1 && line <= text.lines().count(), "{e}");
}
