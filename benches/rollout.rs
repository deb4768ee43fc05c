//! Benchmark: a hot update of 500 pods on the local API server, with the simulated kubelet's delays at
//! zero and maxUnavailable 100%, three ways, each timed from the first write until every pod runs the
//! new image and is ready:
//!
//! - `hotsync sync` (in process: apply with the hold, wait for the revision, Kruise's in-place protocol
//!   per pod, release);
//! - a `kubectl patch` loop over the pods (what an operator would script);
//! - a raw client sending the same writes concurrently (64 in flight), the ceiling.
//!
//! Both baselines make the writes of hotsync's protocol per pod (the gate False, the images, the state
//! completed, the gate True), each kind for all pods at once: a ceiling, since hotsync walks each pod
//! through them on its own.
//!
//! The bench judges every contender's progress from its own watch of the pods, never by listing them
//! while a contender is timed, so that its looking costs the API server nothing.
//!
//! Run with `cargo bench --bench rollout` (optionally `-- 500` for the pod count; `--no-kubectl` leaves
//! out the kubectl loop, which takes minutes, for quicker rounds against the raw client). Needs the API
//! server that scripts/build-kube.sh builds.

use futures::StreamExt as _;
use hotsync::model::{AdvancedStatefulSet, GameServerSet, LABEL_OWNER_GSS, LABEL_REVISION_HASH};
use hotsync_sim::{ClusterOptions, LocalCluster, SimConfig, Simulation};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const NS: &str = "bench";

fn manifest(name: &str, replicas: usize, tag: &str) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: {name}
  namespace: {NS}
spec:
  replicas: {replicas}
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
      maxUnavailable: 100%
  gameServerTemplate:
    spec:
      containers:
        - name: engine
          image: registry.example.com/engine:1.0
        - name: sidecar
          image: registry.example.com/sidecar:{tag}
"
    )
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?}");
}

fn sync_options(repo: &Path) -> hotsync::sync::SyncOptions {
    hotsync::sync::SyncOptions {
        repo: repo.display().to_string(),
        branch: None,
        path: ".".into(),
        load: Default::default(),
        cache_dir: repo.join(".cache"),
        fetch: Default::default(),
        rollout: hotsync::rollout::RolloutOptions {
            wait: true,
            wait_timeout: Duration::from_secs(600),
            ..Default::default()
        },
        set_concurrency: 4,
    }
}

/// Creates the set through hotsync and waits until every pod is ready; returns the repository.
async fn create(client: &Client, name: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("set.yaml"), manifest(name, n, "v1")).expect("write");
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "v1"]);
    let report = hotsync::sync::sync(client, &sync_options(dir.path()), None)
        .await
        .expect("create");
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    dir
}

async fn all_on(pods: &Store<Pod>, name: &str, n: usize, image: &str) {
    wait_all(pods, name, n, image, true).await;
}

/// The set's pods as the bench's own watch has them: the bench judges progress from a watch, so that
/// its looking costs the API server nothing while a contender is timed.
fn pods_of_set(pods: &Store<Pod>, name: &str) -> Vec<std::sync::Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| p.labels().get(LABEL_OWNER_GSS).map(String::as_str) == Some(name))
        .collect()
}

/// Waits until every pod of the set runs `image` in a ready container and, with `pod_ready`, is Ready.
async fn wait_all(pods: &Store<Pod>, name: &str, n: usize, image: &str, pod_ready: bool) {
    loop {
        let done = pods_of_set(pods, name)
            .iter()
            .filter(|p| {
                hotsync::live::container_status(p, "sidecar")
                    .is_some_and(|s| s.image == image && s.ready)
                    && (!pod_ready || hotsync::live::is_ready(p))
            })
            .count();
        if done == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the hand-made clients do before patching pods: apply the new template with OKG held, and read
/// the revision OKG computes for it.
async fn hold_and_revision(client: &Client, name: &str, n: usize, image: &str) -> String {
    let gss: Api<GameServerSet> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"paused": true}},
        "gameServerTemplate": {"spec": {"containers": [
            {"name": "engine", "image": "registry.example.com/engine:1.0"},
            {"name": "sidecar", "image": image}]}}}});
    gss.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch gss");
    let asts: Api<AdvancedStatefulSet> = Api::namespaced(client.clone(), NS);
    loop {
        let a = asts.get(name).await.expect("asts");
        let images: Vec<String> = a
            .spec
            .template
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect()
            })
            .unwrap_or_default();
        if images.iter().any(|i| i == image) {
            if let Some(rev) = a.status.and_then(|s| s.update_revision) {
                let _ = n;
                return rev;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_patch(image: &str, revision: &str) -> serde_json::Value {
    json!({
        "metadata": {
            "labels": {LABEL_REVISION_HASH: revision},
            "annotations": {"apps.kruise.io/inplace-update-state": state_annotation(revision)},
        },
        "spec": {"containers": [{"name": "sidecar", "image": image}]},
    })
}

/// The writes hotsync makes per pod on a set without a lifecycle hook or grace, made by the hand-made
/// clients too: `InPlaceUpdateReady` False (pods/status), the images with the revision label and
/// Kruise's state annotation, once restarted a metadata patch (the state as completed), and the gate
/// True again (pods/status).
fn gate(status: &str) -> serde_json::Value {
    json!({"status": {"conditions": [{"type": "InPlaceUpdateReady", "status": status}]}})
}

fn state_annotation(revision: &str) -> String {
    json!({"revision": revision, "updateTimestamp": "2026-01-01T00:00:00Z", "updateImages": true})
        .to_string()
}

fn finish_patch(revision: &str) -> serde_json::Value {
    json!({"metadata": {"annotations": {"apps.kruise.io/inplace-update-state": json!({
        "revision": revision, "updateTimestamp": "2026-01-01T00:00:00Z", "updateImages": true,
        "containerBatchesRecord": []}).to_string()}}})
}

/// Waits until every pod of the set runs `image` in a ready container (the pod itself cannot be Ready
/// while its gate is False).
async fn all_restarted(pods: &Store<Pod>, name: &str, n: usize, image: &str) {
    wait_all(pods, name, n, image, false).await;
}

/// Waits until every pod of the set asks for `image` in its spec: the end of the patch phase.
async fn all_patched(pods: Store<Pod>, name: String, n: usize, image: String) -> Instant {
    loop {
        let done = pods_of_set(&pods, &name)
            .iter()
            .filter(|p| hotsync::live::spec_image(p, "sidecar") == Some(image.as_str()))
            .count();
        if done == n {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The API server's request counts by verb, resource and subresource (from its metrics).
async fn requests(client: &Client) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.expect("metrics");
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let get = |k: &str| {
            labels
                .split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let key = format!("{} {}{}", get("verb"), get("resource"), {
            let sub = get("subresource");
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        });
        *out.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// Prints the requests made between two readings, largest first.
fn print_requests(what: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= 1.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = d.iter().map(|(_, v)| v).sum();
    let top: Vec<String> = d
        .iter()
        .take(8)
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect();
    println!(
        "  requests to the API server during {what}: {total:.0} ({})",
        top.join(", ")
    );
}

async fn pods_of(client: &Client, name: &str) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("{LABEL_OWNER_GSS}={name}"));
    api.list(&lp)
        .await
        .expect("list")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let with_kubectl = !std::env::args().any(|a| a == "--no-kubectl");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let cluster = LocalCluster::start(ClusterOptions::default())
            .await
            .expect("local cluster");
        let client = cluster.client().await.expect("client");
        let sim = Simulation::start(
            client.clone(),
            SimConfig {
                start_delay_ms: 0,
                ready_delay_ms: 0,
                restart_delay_ms: 0,
                grace_cap_ms: 0,
                ..SimConfig::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the simulation did not start: {e}"));
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
        // The bench's own watch of the namespace's pods, from which it judges every contender's progress.
        let (pods, writer) = reflector::store::<Pod>();
        let watch = tokio::spawn(
            watcher(Api::<Pod>::namespaced(client.clone(), NS), watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(|_| std::future::ready(())),
        );
        pods.wait_until_ready().await.expect("the bench's pod watch");

        // hotsync
        let repo = create(&client, "hs", n).await;
        std::fs::write(repo.path().join("set.yaml"), manifest("hs", n, "v2")).expect("write");
        git(repo.path(), &["commit", "-qam", "v2"]);
        let before = requests(&client).await;
        let t = Instant::now();
        let patched = tokio::spawn(all_patched(
            pods.clone(),
            "hs".into(),
            n,
            "registry.example.com/sidecar:v2".into(),
        ));
        let report = hotsync::sync::sync(&client, &sync_options(repo.path()), None)
            .await
            .expect("sync");
        let hotsync_time = t.elapsed();
        let hotsync_patch = patched.await.expect("watch").duration_since(t);
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        all_on(&pods, "hs", n, "registry.example.com/sidecar:v2").await;
        let hotsync_requests = (before, requests(&client).await);
        eprintln!(
            "hotsync sync: all patched {:.2}s, done {:.2}s",
            hotsync_patch.as_secs_f64(),
            hotsync_time.as_secs_f64()
        );

        // raw concurrent PATCH
        let _raw_repo = create(&client, "raw", n).await;
        let image = "registry.example.com/sidecar:v2";
        let names = pods_of(&client, "raw").await;
        let before = requests(&client).await;
        let t = Instant::now();
        let patched = tokio::spawn(all_patched(pods.clone(), "raw".into(), n, image.into()));
        let rev = hold_and_revision(&client, "raw", n, image).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), NS);
        let concurrently = |what: &'static str, names: Vec<String>, rev: String| {
            let api = api.clone();
            async move {
                futures::stream::iter(names)
                    .map(|name| {
                        let (api, rev) = (api.clone(), rev.clone());
                        async move {
                            let pp = PatchParams::default();
                            let r = match what {
                                "not ready" => api
                                    .patch_status(&name, &pp, &Patch::Strategic(gate("False")))
                                    .await
                                    .map(drop),
                                "images" => api
                                    .patch(&name, &pp, &Patch::Strategic(pod_patch(image, &rev)))
                                    .await
                                    .map(drop),
                                "finish" => api
                                    .patch(&name, &pp, &Patch::Merge(finish_patch(&rev)))
                                    .await
                                    .map(drop),
                                _ => api
                                    .patch_status(&name, &pp, &Patch::Strategic(gate("True")))
                                    .await
                                    .map(drop),
                            };
                            r.unwrap_or_else(|e| panic!("{what} {name}: {e}"))
                        }
                    })
                    .buffer_unordered(64)
                    .collect::<Vec<_>>()
                    .await
            }
        };
        concurrently("not ready", names.clone(), rev.clone()).await;
        concurrently("images", names.clone(), rev.clone()).await;
        all_restarted(&pods, "raw", n, image).await;
        concurrently("finish", names.clone(), rev.clone()).await;
        concurrently("ready", names.clone(), rev.clone()).await;
        all_on(&pods, "raw", n, image).await;
        let raw_time = t.elapsed();
        let raw_requests = (before, requests(&client).await);
        let raw_patch = patched.await.expect("watch").duration_since(t);
        eprintln!(
            "raw PATCH: all patched {:.2}s, done {:.2}s; the kubectl loop takes minutes",
            raw_patch.as_secs_f64(),
            raw_time.as_secs_f64()
        );

        // kubectl patch loop
        let kubectl_times = if with_kubectl {
            let _kubectl_repo = create(&client, "kubectl", n).await;
            let names = pods_of(&client, "kubectl").await;
            let t = Instant::now();
            let patched = tokio::spawn(all_patched(pods.clone(), "kubectl".into(), n, image.into()));
            let rev = hold_and_revision(&client, "kubectl", n, image).await;
            let kubectl = |name: &str, args: &[&str]| {
                let ok = std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(cluster.kubeconfig())
                    .args(["-n", NS, "patch", "pod", name])
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(ok, "kubectl patch {name} {args:?}");
            };
            let (not_ready, ready) = (gate("False").to_string(), gate("True").to_string());
            let (patch, finish) = (
                pod_patch(image, &rev).to_string(),
                finish_patch(&rev).to_string(),
            );
            for name in &names {
                kubectl(name, &["--subresource", "status", "--type", "strategic", "-p", &not_ready]);
                kubectl(name, &["--type", "strategic", "-p", &patch]);
            }
            all_restarted(&pods, "kubectl", n, image).await;
            for name in &names {
                kubectl(name, &["--type", "merge", "-p", &finish]);
                kubectl(name, &["--subresource", "status", "--type", "strategic", "-p", &ready]);
            }
            all_on(&pods, "kubectl", n, image).await;
            let kubectl_time = t.elapsed();
            let kubectl_patch = patched.await.expect("watch").duration_since(t);
            Some((kubectl_patch, kubectl_time))
        } else {
            None
        };

        let writes = &report.sets[0].writes;
        println!("hot update of {n} pods, maxUnavailable 100%, simulated delays 0 (seconds from the first write):");
        println!(
            "  hotsync's writes: {} ok, {} API errors, {} timeouts; each baseline makes 4 per pod ({})",
            writes.ok,
            writes.api_error,
            writes.timeout,
            4 * n
        );
        println!("  {:<22}{:>14}{:>22}", "", "all patched", "all restarted + ready");
        let mut rows = vec![
            ("hotsync sync", hotsync_patch, hotsync_time),
            ("raw PATCH (64 conc.)", raw_patch, raw_time),
        ];
        rows.extend(kubectl_times.map(|(p, a)| ("kubectl patch loop", p, a)));
        for (what, patch, all) in rows {
            println!("  {what:<22}{:>13.2}s{:>21.2}s", patch.as_secs_f64(), all.as_secs_f64());
        }
        print_requests("hotsync's update", &hotsync_requests.0, &hotsync_requests.1);
        print_requests("the raw client's", &raw_requests.0, &raw_requests.1);
        if let Some((kubectl_patch, kubectl_time)) = kubectl_times {
            println!(
                "  hotsync vs the kubectl loop: {:.1}x (patch phase), {:.1}x (end to end)",
                kubectl_patch.as_secs_f64() / hotsync_patch.as_secs_f64(),
                kubectl_time.as_secs_f64() / hotsync_time.as_secs_f64()
            );
        } else {
            println!("  the kubectl loop was left out (--no-kubectl)");
        }
        println!(
            "  hotsync vs raw PATCH throughput: {:.0}% (patch phase), {:.0}% (end to end)",
            100.0 * raw_patch.as_secs_f64() / hotsync_patch.as_secs_f64(),
            100.0 * raw_time.as_secs_f64() / hotsync_time.as_secs_f64()
        );
        watch.abort();
        let _ = sim.shutdown().await;
        let _ = cluster.stop();
    });
}
