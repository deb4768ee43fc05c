//! The simulated cluster seen from outside: the machine's real kubectl, and OKG's upstream CRDs accepting
//! what the simulation writes.

use crate::harness::{self, CONVERGE};
use hotsync::model::{AdvancedStatefulSet, GameServer, GameServerSet};
use hotsync_sim::{cluster, ClusterOptions, LocalCluster, SimConfig, Simulation};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn seed() -> GameServerSet {
    serde_json::from_value(json!({
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServerSet",
        "metadata": {"name": "minecraft"},
        "spec": {
            "replicas": 3,
            "updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}},
            "gameServerTemplate": {"spec": {"containers": [
                {"name": "minecraft", "image": "registry.cn-hangzhou.aliyuncs.com/acs/minecraft-demo:1.12.2"},
                {"name": "sidecar", "image": "registry.cn-hangzhou.aliyuncs.com/acs/sidecar:v0.1"},
            ]}},
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn kubectl(kubeconfig: &Path, ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run kubectl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table kubectl printed, as rows of columns (split on runs of spaces).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn kubectl_lists_sets_game_servers_and_pods_with_their_columns() {
    let env = harness::env("kubectl").await;
    env.create_gss(&seed()).await;
    let kc = env.kubeconfig.clone();
    let ns = env.namespace.clone();
    let pods = env
        .eventually("kubectl showing three pods Running 2/2", CONVERGE, || {
            let (kc, ns) = (kc.clone(), ns.clone());
            async move {
                let out = tokio::task::spawn_blocking(move || kubectl(&kc, &ns, &["get", "pod"]))
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = table(&out);
                let ok = rows.len() == 4
                    && rows[1..]
                        .iter()
                        .all(|r| r.get(1..3) == Some(&["2/2".into(), "Running".into()]));
                if ok {
                    Ok(rows)
                } else {
                    Err(out)
                }
            }
        })
        .await;
    assert_eq!(pods[0][..4], ["NAME", "READY", "STATUS", "RESTARTS"]);
    let names: Vec<&str> = pods[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["minecraft-0", "minecraft-1", "minecraft-2"]);
    assert!(pods[1..].iter().all(|r| r[3] == "0"));

    let gss = env
        .eventually("kubectl get gss showing 3 ready", CONVERGE, || {
            let (kc, ns) = (kc.clone(), ns.clone());
            async move {
                let out = tokio::task::spawn_blocking(move || kubectl(&kc, &ns, &["get", "gss"]))
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = table(&out);
                let ok = rows.len() == 2
                    && rows[1].get(1..5) == Some(&["3".into(), "3".into(), "3".into(), "3".into()]);
                if ok {
                    Ok(rows)
                } else {
                    Err(out)
                }
            }
        })
        .await;
    assert_eq!(
        gss[0][..5],
        ["NAME", "DESIRED", "CURRENT", "UPDATED", "READY"]
    );
    assert_eq!(gss[1][0], "minecraft");

    let gs = env
        .eventually("kubectl get gs showing Ready", CONVERGE, || {
            let (kc, ns) = (kc.clone(), ns.clone());
            async move {
                let out = tokio::task::spawn_blocking(move || kubectl(&kc, &ns, &["get", "gs"]))
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = table(&out);
                let ok = rows.len() == 4
                    && rows[1..]
                        .iter()
                        .all(|r| r.get(1..3) == Some(&["Ready".into(), "None".into()]));
                if ok {
                    Ok(rows)
                } else {
                    Err(out)
                }
            }
        })
        .await;
    assert_eq!(gs[0][..3], ["NAME", "STATE", "OPSSTATE"]);

    let out = kubectl(&kc, &ns, &["get", "asts"]);
    assert!(out.contains("minecraft"), "{out}");
}

/// OKG's own CRDs (shared/okg/crds) on a separate API server, with the simulation running against it: the
/// set, the GameServers and the Advanced StatefulSet the simulation writes are all accepted, statuses
/// included.
#[tokio::test]
async fn the_upstream_crds_accept_what_the_simulation_writes() {
    let crds_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/okg/crds"));
    let mut crds = cluster::crds_from_dir(crds_dir).unwrap_or_else(|e| {
        panic!(
            "could not read the upstream CRDs in {}: {e}",
            crds_dir.display()
        )
    });
    // kube-apiserver 1.20.2 rejects an empty-string `default` in a CRD schema ("in body must be of
    // type string: null"); OKG's GameServerSet CRD has one (serviceQualities[].grpc.service). Newer
    // servers accept it. That one line is dropped here, and nothing else of the upstream CRDs is changed.
    let dropped: usize = crds.iter_mut().map(drop_empty_string_defaults).sum();
    assert_eq!(
        dropped, 1,
        "expected exactly the one empty-string default of OKG's GameServerSet CRD"
    );
    let local = LocalCluster::start(ClusterOptions {
        install_crds: false,
        ..ClusterOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("this test needs a local API server and cannot have one: {e}"));
    let client = local.client().await.unwrap_or_else(|e| panic!("{e}"));
    cluster::install_crds(&client, crds)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the upstream CRDs were not installed: {:#}",
                anyhow::Error::new(e)
            )
        });
    let sim = Simulation::start(client.clone(), SimConfig::fast());

    let mut gss = seed();
    gss.metadata.namespace = Some("default".into());
    let gss_api: Api<GameServerSet> = Api::namespaced(client.clone(), "default");
    let created = gss_api
        .create(&PostParams::default(), &gss)
        .await
        .unwrap_or_else(|e| panic!("the upstream CRD rejected the seed's set: {e}"));
    assert_eq!(created.spec.replicas, Some(3));

    let gs_api: Api<GameServer> = Api::namespaced(client.clone(), "default");
    let asts_api: Api<AdvancedStatefulSet> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + CONVERGE;
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the simulation did not converge on the upstream CRDs: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let gs = gs_api
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items;
        let ready_gs = gs
            .iter()
            .filter(|g| g.status.as_ref().and_then(|s| s.current_state.as_deref()) == Some("Ready"))
            .count();
        let asts = asts_api
            .get_opt("minecraft")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let asts_status = asts.as_ref().and_then(|a| a.status.clone());
        let gss_status = gss_api
            .get("minecraft")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status;
        let pods = pod_api
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items;
        last = format!("{ready_gs} GameServers Ready; asts status {asts_status:?}; gss status {gss_status:?}; {} pods", pods.len());
        let asts_ok = asts_status
            .as_ref()
            .is_some_and(|s| s.update_revision.is_some() && s.updated_ready_replicas == 3);
        let gss_ok = gss_status
            .as_ref()
            .is_some_and(|s| s.ready_replicas == 3 && s.label_selector.is_some());
        if ready_gs == 3 && asts_ok && gss_ok {
            // The fields we write survive the upstream schemas' pruning.
            let asts = asts.unwrap_or_else(|| panic!("no asts"));
            assert_eq!(asts.spec.template.spec.map(|s| s.containers.len()), Some(2));
            assert!(asts.spec.update_strategy.is_some());
            let g = &gs[0];
            assert!(g
                .status
                .as_ref()
                .is_some_and(|s| s.update_priority.is_some() && s.pod_status.is_some()));
            assert_eq!(g.spec.ops_state.as_deref(), Some("None"));
            break;
        }
    }
    sim.shutdown()
        .await
        .unwrap_or_else(|e| panic!("the simulation did not stop cleanly: {e}"));
    local.stop().unwrap_or_else(|e| panic!("{e}"));
}

/// Removes `default: ""` from a schema; returns how many it removed.
fn drop_empty_string_defaults(v: &mut serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => {
            let mut n = 0;
            if m.get("default") == Some(&serde_json::Value::String(String::new())) {
                m.remove("default");
                n += 1;
            }
            n + m
                .values_mut()
                .map(drop_empty_string_defaults)
                .sum::<usize>()
        }
        serde_json::Value::Array(a) => a.iter_mut().map(drop_empty_string_defaults).sum(),
        _ => 0,
    }
}
