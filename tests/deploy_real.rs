//! deploy/ applied for real, on the real node: the hotsync image built without Docker (a Debian bookworm
//! rootfs from debootstrap, the binary's libraries, CA bundle and time zones as OCI layers), pushed to
//! the test bed's registry, `kubectl apply -k` of an overlay that only points deploy/ at this test bed
//! (the image, the repository on a `git daemon` the pods can reach, the API server's address), and the
//! in-cluster daemon doing its job: one leader, a commit pushed to Git rolled out in place, the status
//! pushed back.
//!
//! Pods reach the API server without kube-proxy: it also listens on the node's bridge address (in its
//! certificate), and the overlay sets `KUBERNETES_SERVICE_HOST`/`PORT` to it.

use crate::deploy_manifests::{deploy_dir, relative};
use crate::gitrepo::{git, TempRepo};
use crate::harness::{self, TestEnv};
use crate::status_servers::{free_port, GitDaemon};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::ResourceExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NAMESPACE: &str = "hotsync-system";
const ENGINE: &str = "registry.example.com/minecraft-demo:1.12.2";
/// How long the in-cluster pieces may take: an image pull, a first sync, a rollout of three pods.
const DEPLOY: Duration = Duration::from_secs(180);

fn manifest(ns: &str, sidecar: &str) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: minecraft
  namespace: {ns}
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
  gameServerTemplate:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: minecraft
          image: {ENGINE}
        - name: sidecar
          image: registry.example.com/sidecar:{sidecar}
"
    )
}

/// The bookworm rootfs of `scripts/build-rootfs.sh` (built once, cached).
fn rootfs() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-rootfs.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    PathBuf::from(path)
}

/// The test's hotsync binary without its debug info (the debug build, as the issue allows).
fn stripped_binary(dir: &Path) -> PathBuf {
    let out = dir.join("hotsync");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_hotsync"))
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("objcopy (binutils): {e}"));
    assert!(status.success(), "objcopy --strip-debug failed");
    out
}

fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The applied overlay, deleted again when the test ends (passed or not).
struct Applied<'a> {
    env: &'a TestEnv,
    overlay: PathBuf,
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.env.kubeconfig)
            .args(["delete", "--ignore-not-found", "--wait=false", "-k"])
            .arg(&self.overlay)
            .output();
    }
}

/// The overlay of this test bed: deploy/ as shipped, with the image, the repository, the poll
/// interval, the cluster's name, the registry mirror and the API server's address set.
fn overlay(dir: &Path, repo_url: &str, registry: &str, apiserver: (&str, u16)) -> PathBuf {
    let base = relative(&deploy_dir(), dir);
    let kustomization = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: hotsync
    newName: registry.example.com/hotsync
    newTag: test
patches:
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: hotsync-config
      data:
        HOTSYNC_REPO: "{repo_url}"
        HOTSYNC_PATH: "sets"
        HOTSYNC_INTERVAL: "2s"
        HOTSYNC_CLUSTER_NAME: "real-node"
        HOTSYNC_REGISTRY_MIRROR: "registry.example.com=http://{registry}"
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: hotsync
      spec:
        template:
          spec:
            containers:
              - name: hotsync
                env:
                  - name: KUBERNETES_SERVICE_HOST
                    value: "{host}"
                  - name: KUBERNETES_SERVICE_PORT
                    value: "{port}"
"#,
        base = base.display(),
        host = apiserver.0,
        port = apiserver.1,
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap_or_else(|e| panic!("{e}"));
    dir.to_path_buf()
}

/// The API server's port, from the test cluster's kubeconfig.
fn apiserver_port(env: &TestEnv) -> u16 {
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
    let server = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| panic!("no server in {}", env.kubeconfig.display()));
    server
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {server}"))
}

/// A container's process on the node, as containerd's `ctr` lists its task.
fn container_pid(sock: &Path, container_id: &str) -> u32 {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["--namespace", "k8s.io", "tasks", "list"])
        .output()
        .unwrap_or_else(|e| panic!("ctr: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .find(|(id, _)| *id == container_id)
        .and_then(|(_, pid)| pid.parse().ok())
        .unwrap_or_else(|| panic!("no task {container_id} in:\n{text}"))
}

/// The real uid of a process and whether its root filesystem is mounted read-only.
fn process_identity(pid: u32) -> (String, bool) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|u| u.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/mountinfo: {e}"));
    // Fields: id parent major:minor root mount-point options ...
    let root_ro = mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(4) == Some(&"/") && f.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"))
    });
    (uids, root_ro)
}

fn container_id(pod: &Pod, name: &str) -> String {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.container_id.clone())
        .and_then(|id| id.strip_prefix("containerd://").map(str::to_string))
        .unwrap_or_else(|| panic!("{} has no {name} container id", pod.name_any()))
}

async fn hotsync_pods(env: &TestEnv) -> Vec<Pod> {
    Api::<Pod>::namespaced(env.client.clone(), NAMESPACE)
        .list(&ListParams::default().labels("app.kubernetes.io/name=hotsync"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
}

/// `hotsync_leader` from a pod's `/metrics`, on its pod IP.
async fn leader_metric(pod: &Pod) -> Result<i64, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no pod IP")?;
    let mut s = tokio::net::TcpStream::connect((ip.as_str(), 8080))
        .await
        .map_err(|e| format!("{ip}:8080: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: hotsync\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    body.lines()
        .find_map(|l| l.strip_prefix("hotsync_leader "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no hotsync_leader in {ip}'s metrics"))
}

#[tokio::test]
async fn deploy_applied_for_real_runs_one_nonroot_leader_that_rolls_out_a_pushed_commit() {
    let env = harness::real_env("deploy real").await;
    let node = env
        .node
        .clone()
        .unwrap_or_else(|| panic!("the real-node cluster has no node"));

    // 1. The image, built here and pushed to the node's registry.
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = hotsync_sim::oci::hotsync_image(&rootfs(), &stripped_binary(scratch.path()))
        .unwrap_or_else(|e| panic!("building the hotsync image: {e}"));
    hotsync_sim::node::Registry::new(&node.registry)
        .push("hotsync", &["test"], &image)
        .await
        .unwrap_or_else(|e| panic!("pushing the hotsync image: {e}"));

    // 2. The repository, on a git daemon listening on the node's address (which pods reach).
    let mut work = TempRepo::new();
    work.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.1"));
    work.commit_all("minecraft at sidecar v0.1");
    let served = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bare = served.path().join("remote.git");
    git(
        served.path(),
        &["init", "--quiet", "--bare", &bare.display().to_string()],
    );
    let push = |work: &TempRepo| {
        git(
            work.path(),
            &[
                "push",
                "--quiet",
                &bare.display().to_string(),
                "HEAD:refs/heads/main",
            ],
        )
    };
    push(&work);
    let daemon = GitDaemon::serve(served.path(), &node.node_ip, free_port());

    // 3. `kubectl apply -k` for real.
    let overlay_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let overlay = overlay(
        overlay_dir.path(),
        &daemon.url,
        &node.registry,
        (&node.node_ip, apiserver_port(&env)),
    );
    let applied = Applied {
        env: &env,
        overlay: overlay.clone(),
    };
    kubectl(&env, &["apply", "-k", &overlay.display().to_string()]);

    // Both replicas ready: their probes pass.
    env.eventually("the Deployment's two replicas ready", DEPLOY, || async {
        let d = Api::<Deployment>::namespaced(env.client.clone(), NAMESPACE)
            .get("hotsync")
            .await
            .map_err(|e| e.to_string())?;
        let ready = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready == 2 {
            Ok(())
        } else {
            let pods = hotsync_pods(&env).await;
            Err(format!(
                "{ready} ready; pods: {:?}",
                pods.iter()
                    .map(|p| (
                        p.name_any(),
                        p.status.as_ref().and_then(|s| s.container_statuses.clone())
                    ))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    let pods = hotsync_pods(&env).await;
    assert_eq!(pods.len(), 2);

    // As 65532 on a read-only root filesystem, seen from the node: the container's own process.
    for pod in &pods {
        let pid = container_pid(&node.containerd_sock, &container_id(pod, "hotsync"));
        let (uids, root_ro) = process_identity(pid);
        assert_eq!(
            uids,
            "65532 65532 65532 65532",
            "{}: real, effective, saved, fs uid",
            pod.name_any()
        );
        assert!(
            root_ro,
            "{}: the root filesystem is read-only",
            pod.name_any()
        );
    }

    // With the ServiceAccount's own token: the one secret of type service-account-token mounted is
    // hotsync's.
    let secrets = Api::<Secret>::namespaced(env.client.clone(), NAMESPACE);
    for pod in &pods {
        let spec = pod
            .spec
            .as_ref()
            .unwrap_or_else(|| panic!("a pod has a spec"));
        assert_eq!(spec.service_account_name.as_deref(), Some("hotsync"));
        let mut tokens = Vec::new();
        for v in spec.volumes.iter().flatten() {
            let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) else {
                continue;
            };
            if let Some(s) = secrets
                .get_opt(&name)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
            {
                if s.type_.as_deref() == Some("kubernetes.io/service-account-token") {
                    tokens.push(
                        s.annotations()
                            .get("kubernetes.io/service-account.name")
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        assert_eq!(tokens, ["hotsync"], "{}: its token", pod.name_any());
    }

    // One leader: the Lease names one of the two, and only that one says so in its metrics.
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    let leader = env
        .eventually("one replica holding the lease", DEPLOY, || async {
            let lease = Api::<Lease>::namespaced(env.client.clone(), NAMESPACE)
                .get_opt("hotsync")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no lease yet")?;
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .ok_or("no holder")?;
            let mut leaders = Vec::new();
            for p in &pods {
                if leader_metric(p).await? == 1 {
                    leaders.push(p.name_any());
                }
            }
            if names.contains(&holder) && leaders == [holder.clone()] {
                Ok(holder)
            } else {
                Err(format!(
                    "lease holder {holder}, hotsync_leader 1 on {leaders:?}"
                ))
            }
        })
        .await;

    // The in-cluster daemon synced the repository: the set runs.
    let before = env
        .eventually("three seed pods ready", DEPLOY, || async {
            let pods = env.pods("minecraft").await;
            if pods.len() == 3 && pods.iter().all(hotsync::live::is_ready) {
                Ok(pods)
            } else {
                Err(format!("{} pods", pods.len()))
            }
        })
        .await;

    // A commit pushed to Git is rolled out by it, in place.
    work.write("sets/minecraft.yaml", &manifest(&env.namespace, "v0.2"));
    work.commit_all("sidecar to v0.2");
    push(&work);
    let after = env
        .eventually("the sidecars at v0.2, restarted once", DEPLOY, || async {
            let pods = env.pods("minecraft").await;
            let done = pods.len() == 3
                && pods.iter().all(|p| {
                    hotsync::live::is_ready(p)
                        && hotsync::live::container_status(p, "sidecar").is_some_and(|s| {
                            s.image.ends_with("sidecar:v0.2") && s.restart_count == 1
                        })
                });
            if done {
                Ok(pods)
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter()
                        .map(|p| hotsync::live::container_status(p, "sidecar")
                            .map(|s| (s.image.clone(), s.restart_count)))
                        .collect::<Vec<_>>()
                ))
            }
        })
        .await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.uid(), b.uid(), "{} is the same pod", a.name_any());
        assert_eq!(
            container_id(a, "minecraft"),
            container_id(b, "minecraft"),
            "{}: the engine kept running",
            a.name_any()
        );
    }

    // And the status, pushed back by the leader over git://.
    let status = env
        .eventually("the status of the rollout in Git", DEPLOY, || async {
            let out = Command::new("git")
                .arg("--git-dir")
                .arg(&bare)
                .args([
                    "show",
                    &format!(
                        "hotsync-status:status/real-node/{}/minecraft.yaml",
                        env.namespace
                    ),
                ])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("sidecar:v0.2") && text.contains("phase: Synced") {
                Ok(text)
            } else {
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        })
        .await;
    assert!(status.contains("sidecar: 1"), "{status}");
    eprintln!("leader {leader}; status:\n{status}");
    drop(applied);
}
