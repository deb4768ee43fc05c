//! Golden cases: each folder of `tests/fixtures/plan/` holds `base/` and `head/` trees and the expected
//! reports. Each case becomes a temporary git repository with two commits, and `hotsync plan` between
//! them must print exactly the expected JSON and markdown. `UPDATE_GOLDEN=1` rewrites the expectations.

use crate::gitrepo::TempRepo;
use hotsync::manifest::LoadOptions;
use hotsync::plan::Plan;
use hotsync::source::Repo;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan")
}

/// Plans the case, with commit ids blanked so that expectations do not depend on hashes.
pub fn plan_case(case: &Path) -> Plan {
    let mut repo = TempRepo::new();
    let base = repo.commit_folder(&case.join("base"), "base");
    let head = repo.commit_folder(&case.join("head"), "head");
    let r = Repo::open(repo.path()).expect("open");
    let rev = |name: &str, oid: git2::Oid| hotsync::plan::Revision {
        rev: name.to_string(),
        commit: Some(oid.to_string()),
    };
    let mut plan = hotsync::review::plan_between(
        &r,
        rev("base", base),
        rev("head", head),
        ".",
        &LoadOptions::default(),
    )
    .expect("plan");
    plan.base.commit = None;
    plan.head.commit = None;
    plan
}

fn check(case: &str) {
    let dir = fixtures().join(case);
    let plan = plan_case(&dir);
    let json = plan.to_json() + "\n";
    let md = plan.to_markdown();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(dir.join("expected.json"), &json).expect("write");
        std::fs::write(dir.join("expected.md"), &md).expect("write");
        return;
    }
    let want_json = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let want_md = std::fs::read_to_string(dir.join("expected.md")).expect("expected.md");
    assert_eq!(json, want_json, "JSON report of case {case}");
    assert_eq!(md, want_md, "markdown report of case {case}");
}

fn impact_of(case: &str, set: &str) -> String {
    let plan = plan_case(&fixtures().join(case));
    plan.sets
        .iter()
        .find(|s| s.name == set)
        .map(|s| s.impact.as_str().to_string())
        .unwrap_or_else(|| "NoChange".to_string())
}

macro_rules! golden {
    ($($name:ident => $case:literal, $set:literal, $impact:literal;)*) => {
        $(
            #[test]
            fn $name() {
                check($case);
                assert_eq!(impact_of($case, $set), $impact);
            }
        )*
    };
}

golden! {
    a_sidecar_bump_under_in_place_if_possible_is_a_hot_update => "sidecar-bump", "minecraft", "HotUpdate";
    an_image_bump_under_the_default_policy_recreates_the_pods => "recreate-policy-bump", "lobby", "Recreate";
    an_env_change_recreates_even_under_in_place_if_possible => "env-change", "minecraft", "Recreate";
    reordering_env_recreates => "env-reordered", "minecraft", "Recreate";
    reordering_containers_recreates => "containers-reordered", "minecraft", "Recreate";
    an_init_container_image_bump_recreates => "init-container-bump", "minecraft", "Recreate";
    a_template_label_change_is_in_place => "template-label", "minecraft", "HotUpdate";
    a_replicas_change_is_a_scale => "scale", "minecraft", "Scale";
    a_partition_change_is_config_only => "partition", "minecraft", "Config";
    formatting_only_edits_are_no_change => "formatting-only", "minecraft", "NoChange";
    equal_quantities_in_other_spellings_are_no_change => "quantities", "arena", "NoChange";
    spelling_out_defaults_is_no_change => "explicit-defaults", "minecraft", "NoChange";
    a_set_moved_to_another_file_is_no_change => "moved", "minecraft", "NoChange";
    a_new_set_is_a_create => "create-delete", "arena", "Create";
    a_removed_set_is_a_delete => "create-delete", "lobby", "Delete";
    a_broken_file_is_reported_and_the_others_still_planned => "broken-file", "arena", "HotUpdate";
}

#[test]
fn a_broken_file_makes_the_plan_incomplete_with_file_document_and_line() {
    let plan = plan_case(&fixtures().join("broken-file"));
    assert_eq!(plan.errors.len(), 1, "{:?}", plan.errors);
    let e = &plan.errors[0];
    assert_eq!(e.file, "gameservers/minecraft.yaml");
    assert_eq!(e.document, Some(2));
    assert!(
        e.line.is_some_and(|l| l >= 9),
        "line of the error: {:?}",
        e.line
    );
    // The set of the broken file is not reported as deleted.
    assert!(plan.sets.iter().all(|s| s.name != "minecraft"));
}

#[test]
fn an_image_bump_under_recreate_warns_how_many_pods_are_recreated() {
    let plan = plan_case(&fixtures().join("recreate-policy-bump"));
    let set = &plan.sets[0];
    assert!(
        set.warnings.iter().any(
            |w| w.contains("podUpdatePolicy is ReCreate: this image bump recreates all 2 pods")
        ),
        "{:?}",
        set.warnings
    );
}
