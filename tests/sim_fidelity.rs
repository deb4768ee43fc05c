//! The simulated cluster seen from outside: the machine's real kubectl, and OKG's upstream CRDs accepting
//! what the simulation writes.

use crate::harness::{self, CONVERGE};
use hotsync::model::GameServerSet;
use serde_json::json;
use std::path::Path;

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
