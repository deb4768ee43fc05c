//! `deploy/` as users apply it: the kustomization passes a server-side dry run on the real API server
//! (as shipped, and through the overlay that moves it to another namespace), every YAML file under
//! `deploy/` parses, the Deployment is hardened as documented, and the ClusterRole's rules alone, bound
//! to a user that has no other right, are enough for `hotsync sync` to create a set and roll a sidecar
//! bump out in place.

use crate::gitrepo::TempRepo;
use crate::harness::{self, TestEnv, CONVERGE};
use futures::FutureExt as _;
use hotsync::model::GameServerSet;
use hotsync::rollout::{Outcome, PodOutcome};
use hotsync::sync::SyncReport;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The namespace `deploy/kustomization.yaml` installs into.
const NAMESPACE: &str = "hotsync-system";

pub(crate) fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every `*.yaml` / `*.yml` file under `deploy/`, recursively (dot files included), sorted.
fn yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    out.sort();
    out
}

/// The documents of a YAML file, as JSON values (comment-only documents dropped).
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The one Kubernetes object of `deploy/<file>`, typed.
fn object<T: DeserializeOwned>(file: &str) -> T {
    let docs = documents(&deploy_dir().join(file));
    assert_eq!(docs.len(), 1, "deploy/{file} holds one object");
    serde_json::from_value(docs[0].clone()).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// Runs kubectl (the machine's, with its built-in kustomize) and returns (exit code, stdout, stderr).
async fn kubectl(args: &[&str]) -> (i32, String, String) {
    let run = tokio::process::Command::new("kubectl")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 120 s"))
        .unwrap_or_else(|e| panic!("cannot run kubectl (is it installed?): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl apply -k DIR --dry-run=server -o json` against the test cluster: the objects as the API
/// server admitted, defaulted and validated them, without persisting any.
async fn dry_run_apply(env: &TestEnv, dir: &Path) -> Vec<Value> {
    let kubeconfig = env.kubeconfig.display().to_string();
    let dir = dir.display().to_string();
    let (code, stdout, stderr) = kubectl(&[
        "apply",
        "-k",
        &dir,
        "--dry-run=server",
        "--validate=strict",
        "-o",
        "json",
        "--kubeconfig",
        &kubeconfig,
    ])
    .await;
    assert_eq!(
        code, 0,
        "kubectl apply -k {dir} --dry-run=server failed:\n{stderr}"
    );
    let list: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a List: {stdout}"))
        .clone()
}

/// (kind, namespace, name) of each object.
fn identities(items: &[Value]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|o| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&o["kind"]),
                s(&o["metadata"]["namespace"]),
                s(&o["metadata"]["name"]),
            )
        })
        .collect()
}

/// What `deploy/` holds, with `ns` as hotsync's namespace.
fn expected_objects(ns: &str) -> BTreeSet<(String, String, String)> {
    [
        ("Namespace", "", ns),
        ("ServiceAccount", ns, "hotsync"),
        ("ClusterRole", "", "hotsync"),
        ("ClusterRoleBinding", "", "hotsync"),
        ("Role", ns, "hotsync-leader-election"),
        ("RoleBinding", ns, "hotsync-leader-election"),
        ("ConfigMap", ns, "hotsync-config"),
        ("ConfigMap", ns, "hotsync-known-hosts"),
        ("Secret", ns, "git-credentials"),
        ("Secret", ns, "webhook-secret"),
        ("Service", ns, "hotsync"),
        ("Deployment", ns, "hotsync"),
    ]
    .into_iter()
    .map(|(k, n, m)| (k.to_string(), n.to_string(), m.to_string()))
    .collect()
}

fn find<'a>(items: &'a [Value], kind: &str) -> &'a Value {
    items
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", identities(items)))
}

/// `path` relative to `from` (kustomize accepts only relative paths to a base).
pub(crate) fn relative(path: &Path, from: &Path) -> PathBuf {
    let path = path.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let from = from.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let a: Vec<Component> = path.components().collect();
    let b: Vec<Component> = from.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &a[common..] {
        out.push(c);
    }
    out
}

#[tokio::test]
async fn the_kustomization_passes_a_server_side_dry_run_on_the_real_api_server() {
    let env = harness::env("deploy dry run").await;
    // A server-side dry run creates nothing, the Namespace included, and the API server's
    // NamespaceLifecycle admission rejects objects in a namespace that does not exist. A real
    // `kubectl apply -k` creates the Namespace first; here it has to exist beforehand.
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("could not create the namespace {NAMESPACE}: {e}"),
    }

    // 1. As shipped: `kubectl apply -k deploy/ --dry-run=server`.
    let items = dry_run_apply(&env, &deploy_dir()).await;
    assert_eq!(identities(&items), expected_objects(NAMESPACE));
    // The Deployment as the API server returned it: defaulted, and with every hardening field kept
    // (kubectl validates against this server's own schema, so a field 1.20 lacks fails the run).
    let deployment: Deployment = serde_json::from_value(find(&items, "Deployment").clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_hardened(&deployment);
    let image = pod_spec(&deployment).containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("hotsync:0.1.0"));
    // Nothing was persisted.
    let stored = Api::<Deployment>::namespaced(env.client.clone(), NAMESPACE)
        .get_opt("hotsync")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.is_none(), "a dry run must not create the Deployment");

    // 2. Moved to another namespace (here the test's) by the overlay deploy/README.md shows: the
    // bindings' subjects follow, so the ServiceAccount really gets the rights.
    let overlay = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let base = relative(&deploy_dir(), overlay.path());
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {ns}
resources:
  - {base}
transformers:
  - |-
    apiVersion: builtin
    kind: NamespaceTransformer
    metadata:
      name: hotsync-namespace
      namespace: {ns}
    setRoleBindingSubjects: allServiceAccounts
",
        ns = env.namespace,
        base = base.display()
    );
    std::fs::write(overlay.path().join("kustomization.yaml"), kustomization)
        .unwrap_or_else(|e| panic!("{e}"));
    let items = dry_run_apply(&env, overlay.path()).await;
    assert_eq!(identities(&items), expected_objects(&env.namespace));
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let subjects = &find(&items, kind)["subjects"];
        assert_eq!(
            subjects,
            &json!([{"kind": "ServiceAccount", "name": "hotsync", "namespace": env.namespace}]),
            "{kind}"
        );
    }
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .unwrap_or_else(|| panic!("the Deployment has no pod spec"))
}

fn container(d: &Deployment) -> &Container {
    let spec = pod_spec(d);
    assert_eq!(spec.containers.len(), 1, "one container");
    &spec.containers[0]
}

/// The probes, port, resources, non-root and read-only settings the README promises.
fn assert_hardened(d: &Deployment) {
    let spec = d.spec.as_ref().unwrap_or_else(|| panic!("no spec"));
    assert_eq!(spec.replicas, Some(2), "two replicas, one leader");
    let pod = pod_spec(d);
    assert_eq!(pod.service_account_name.as_deref(), Some("hotsync"));
    let psc = pod.security_context.clone().unwrap_or_default();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".to_string())
    );

    let c = container(d);
    let port = c
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .unwrap_or_else(|| panic!("no port"));
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8080)
    );
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .unwrap_or_else(|| panic!("no HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }
    let sc = c.security_context.clone().unwrap_or_default();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".to_string())
    );

    let res = c.resources.clone().unwrap_or_default();
    let q =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone());
    assert_eq!(q(&res.requests, "cpu").as_deref(), Some("50m"));
    assert_eq!(q(&res.requests, "memory").as_deref(), Some("64Mi"));
    assert_eq!(q(&res.limits, "memory").as_deref(), Some("256Mi"));

    // The only writable places are emptyDirs: the git cache and /tmp.
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    for path in ["/var/cache/hotsync", "/tmp"] {
        let m = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("no volume {}", m.name));
        assert!(v.empty_dir.is_some(), "{path} is an emptyDir");
        assert_ne!(m.read_only, Some(true), "{path} is writable");
    }
    for m in &mounts {
        if !["/var/cache/hotsync", "/tmp"].contains(&m.mount_path.as_str()) {
            assert_eq!(
                m.read_only,
                Some(true),
                "{} is mounted read-only",
                m.mount_path
            );
        }
    }
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    for flag in [
        "--listen=0.0.0.0:8080",
        "--cache-dir=/var/cache/hotsync",
        "--lease-name=hotsync",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--webhook-secret-file=/etc/hotsync/webhook/secret",
        "--log-format=json",
    ] {
        assert!(
            args.iter().any(|a| a == flag),
            "{flag} missing from {args:?}"
        );
    }
    let pod_namespace = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_NAMESPACE")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(pod_namespace.as_deref(), Some("metadata.namespace"));
    let annotations = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("8080")
    );
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );
}

/// The ClusterRole's rules as (apiGroup/resource, verbs).
fn rules(rules: &[PolicyRule]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                out.entry(format!("{g}/{res}"))
                    .or_default()
                    .extend(r.verbs.iter().cloned());
            }
        }
    }
    out
}

fn verbs(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    list.iter()
        .map(|(r, v)| (r.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// Every file under deploy/ parses; the Deployment, RBAC, Service and ConfigMaps agree with each other.
#[test]
fn every_yaml_file_under_deploy_parses_and_the_deployment_is_hardened() {
    let files = yaml_files();
    let rel = |p: &Path| {
        p.strip_prefix(deploy_dir())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let names: BTreeSet<String> = files.iter().map(|p| rel(p)).collect();
    for f in [
        "kustomization.yaml",
        "ci/github/hotsync-plan.yml",
        "ci/github/hotsync-sync.yml",
        "ci/gitlab/.gitlab-ci.yml",
    ] {
        assert!(names.contains(f), "deploy/{f} is missing: {names:?}");
    }
    for path in &files {
        let docs = documents(path);
        assert!(!docs.is_empty(), "{} is empty", rel(path));
        for d in &docs {
            assert!(d.is_object(), "{}: a document is not a mapping", rel(path));
        }
    }

    // Every manifest at the top of deploy/ is in the kustomization, so none is left out by mistake.
    let kustomization = &documents(&deploy_dir().join("kustomization.yaml"))[0];
    assert_eq!(kustomization["namespace"], NAMESPACE);
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources"))
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let top: BTreeSet<String> = names
        .iter()
        .filter(|n| !n.contains('/') && *n != "kustomization.yaml")
        .cloned()
        .collect();
    assert_eq!(resources, top);
    assert_eq!(kustomization["images"][0]["name"], "hotsync");

    let deployment: Deployment = object("deployment.yaml");
    assert_hardened(&deployment);
    let pod = pod_spec(&deployment);
    let c = container(&deployment);

    // The ClusterRole: exactly the verbs hotsync uses; no wildcard, no delete, secrets by name only.
    let cluster_role: ClusterRole = object("clusterrole.yaml");
    let granted = rules(cluster_role.rules.as_deref().unwrap_or_default());
    assert_eq!(
        granted,
        verbs(&[
            (
                "game.kruise.io/gameserversets",
                &["get", "list", "watch", "create", "patch"]
            ),
            ("game.kruise.io/gameservers", &["get", "list", "watch"]),
            ("apps.kruise.io/statefulsets", &["get", "list", "watch"]),
            ("/pods", &["get", "list", "watch", "patch"]),
            ("/pods/status", &["patch"]),
            ("/secrets", &["get"]),
            ("events.k8s.io/events", &["create", "patch"]),
        ])
    );
    let role: Role = object("role.yaml");
    assert_eq!(
        rules(role.rules.as_deref().unwrap_or_default()),
        verbs(&[("coordination.k8s.io/leases", &["get", "create", "update"])])
    );

    // Bindings: the roles above, to the Deployment's ServiceAccount.
    let sa: k8s_openapi::api::core::v1::ServiceAccount = object("serviceaccount.yaml");
    assert_eq!(pod.service_account_name, sa.metadata.name);
    let crb: ClusterRoleBinding = object("clusterrolebinding.yaml");
    let rb: RoleBinding = object("rolebinding.yaml");
    assert_eq!(crb.role_ref.name, cluster_role.name_any());
    assert_eq!(rb.role_ref.name, role.name_any());
    for subjects in [&crb.subjects, &rb.subjects] {
        let s = subjects
            .as_ref()
            .and_then(|s| s.first())
            .unwrap_or_else(|| panic!("no subject"));
        assert_eq!(
            (s.kind.as_str(), Some(s.name.clone())),
            ("ServiceAccount", sa.metadata.name.clone())
        );
        assert_eq!(s.namespace.as_deref(), Some(NAMESPACE));
    }

    // The Service reaches the Deployment's named port.
    let svc: Service = object("service.yaml");
    let svc_spec = svc.spec.unwrap_or_default();
    let selector = svc_spec.selector.unwrap_or_default();
    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the Service selects the pods by {k}"
        );
    }
    let port = &svc_spec.ports.unwrap_or_default()[0];
    assert_eq!(port.port, 8080);
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );

    // Every ConfigMap and Secret the pod uses is defined in deploy/, under the same name.
    let defined: BTreeSet<(String, String)> = files
        .iter()
        .filter(|p| !rel(p).contains('/'))
        .flat_map(|p| documents(p))
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut used: Vec<(String, String)> = Vec::new();
    for v in pod.volumes.iter().flatten() {
        if let Some(s) = &v.secret {
            used.push(("Secret".into(), s.secret_name.clone().unwrap_or_default()));
        }
        if let Some(m) = &v.config_map {
            used.push(("ConfigMap".into(), m.name.clone()));
        }
    }
    for e in c.env_from.iter().flatten() {
        if let Some(m) = &e.config_map_ref {
            used.push(("ConfigMap".into(), m.name.clone()));
        }
    }
    for u in &used {
        assert!(
            defined.contains(u),
            "{u:?} is used by the Deployment but not defined in deploy/"
        );
    }

    // Each file the daemon is told to read (a flag or a HOTSYNC_*_FILE / KNOWN_HOSTS key, even one
    // commented out for the SSH variant) is where a volume puts it.
    let config: ConfigMap = object("configmap.yaml");
    let data = config.data.clone().unwrap_or_default();
    for key in [
        "HOTSYNC_REPO",
        "HOTSYNC_BRANCH",
        "HOTSYNC_PATH",
        "HOTSYNC_INTERVAL",
        "HOTSYNC_CLUSTER_NAME",
    ] {
        assert!(data.contains_key(key), "configmap.yaml lacks {key}");
    }
    let text = std::fs::read_to_string(deploy_dir().join("configmap.yaml")).unwrap_or_default();
    let mut files_read: Vec<String> = data
        .iter()
        .filter(|(k, _)| k.ends_with("_FILE"))
        .map(|(_, v)| v.clone())
        .collect();
    files_read.extend(
        ["/etc/hotsync/ssh/identity", "/etc/hotsync/known_hosts"]
            .into_iter()
            .filter(|p| text.contains(p))
            .map(str::to_string),
    );
    files_read.push("/etc/hotsync/webhook/secret".into());
    assert!(files_read.iter().any(|f| f == "/etc/hotsync/git/token"));
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    for file in &files_read {
        let (dir, leaf) = file.rsplit_once('/').unwrap_or_else(|| panic!("{file}"));
        let m = mounts
            .iter()
            .find(|m| m.mount_path == file.as_str() || m.mount_path == dir)
            .unwrap_or_else(|| panic!("{file} is read but nothing is mounted there"));
        let v = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("no volume {}", m.name));
        let key = m.sub_path.clone().unwrap_or_else(|| leaf.to_string());
        let items = v
            .secret
            .as_ref()
            .and_then(|s| s.items.clone())
            .or_else(|| v.config_map.as_ref().and_then(|c| c.items.clone()));
        if let Some(items) = items {
            assert!(
                items.iter().any(|i| i.path == key),
                "{file}: volume {} has no item {key}",
                v.name
            );
        }
    }

    // The Secret templates carry placeholders, never anything that looks real.
    for file in ["secret-git-credentials.yaml", "secret-webhook.yaml"] {
        let secret: k8s_openapi::api::core::v1::Secret = object(file);
        let values = secret.string_data.unwrap_or_default();
        assert!(!values.is_empty(), "{file}: stringData");
        for (k, v) in values {
            assert!(
                v.starts_with("REPLACE_"),
                "{file}: {k} is not a placeholder"
            );
        }
    }
    let known_hosts: ConfigMap = object("known-hosts.yaml");
    let kh = known_hosts.data.unwrap_or_default();
    let kh = kh
        .get("known_hosts")
        .unwrap_or_else(|| panic!("known_hosts key"));
    assert!(
        kh.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "only a placeholder comment"
    );
}

/// No package or registry host in the files users copy: image names stay for them to choose.
#[test]
fn deploy_files_and_the_dockerfile_name_no_registry_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = yaml_files();
    files.push(deploy_dir().join("README.md"));
    files.push(root.join("Dockerfile"));
    files.push(root.join(".dockerignore"));
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for host in [
            "docker.io",
            "ghcr.io",
            "gcr.io",
            "quay.io",
            "crates.io",
            "debian.org",
            "registry.k8s.io",
            "amazonaws.com",
        ] {
            assert!(!text.contains(host), "{} names {host}", f.display());
        }
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap_or_default();
    for line in [
        "FROM rust:1-bookworm AS builder",
        "FROM debian:bookworm-slim",
        "USER 65532:65532",
        "ENTRYPOINT [\"hotsync\"]",
        "CMD [\"run\"]",
    ] {
        assert!(
            dockerfile.lines().any(|l| l.trim() == line),
            "Dockerfile lacks `{line}`"
        );
    }
    assert!(dockerfile.contains("cargo build --release --locked --bin hotsync"));
}

async fn sync_as(client: &kube::Client, repo: &TempRepo) -> SyncReport {
    hotsync::sync::sync(client, &harness::sync_options(repo.path()), None)
        .await
        .unwrap_or_else(|e| panic!("sync failed: {}", hotsync::sync::error_chain(&e)))
}

/// The user `hotsync-limited`, bound to nothing but a copy of deploy/clusterrole.yaml, creates the set
/// and rolls a sidecar bump out in place.
async fn hot_update_with_the_cluster_role(env: &TestEnv, limited: &kube::Client) {
    let gss: Api<GameServerSet> = Api::namespaced(limited.clone(), &env.namespace);
    env.eventually("the binding to take effect", CONVERGE, || async {
        gss.list(&Default::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    let mut repo = TempRepo::new();
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.1", ""),
    );
    repo.commit_all("minecraft at v0.1");
    let report = sync_as(limited, &repo).await;
    assert_eq!(
        report.exit_code(),
        0,
        "the first sync creates the set: {report:#?}"
    );
    let before: Vec<String> = env
        .pods("minecraft")
        .await
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    assert_eq!(before.len(), 2);

    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.2", ""),
    );
    repo.commit_all("bump sidecar to v0.2");
    let report = sync_as(limited, &repo).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let set = &report.sets[0];
    assert_eq!(set.outcome, Outcome::Synced);
    assert!(
        set.pods.iter().all(|p| p.result == PodOutcome::Updated),
        "{:?}",
        set.pods
    );
    let pods = env.pods("minecraft").await;
    assert_eq!(
        pods.iter()
            .map(|p| p.uid().unwrap_or_default())
            .collect::<Vec<_>>(),
        before,
        "no pod recreated"
    );
    for p in &pods {
        let restarts = |c: &str| hotsync::live::container_status(p, c).map(|s| s.restart_count);
        assert_eq!(restarts("sidecar"), Some(1), "{}", p.name_any());
        assert_eq!(
            restarts("minecraft"),
            Some(0),
            "{}: the engine keeps running",
            p.name_any()
        );
        assert_eq!(
            hotsync::live::spec_image(p, "sidecar"),
            Some("registry.example.com/sidecar:v0.2")
        );
    }

    // The daemon with the same rights, plus deploy/role.yaml's lease rights in its namespace, elects
    // itself leader and rolls the next bump out.
    let mut lease_role: Role = object("role.yaml");
    lease_role.metadata.namespace = Some(env.namespace.clone());
    let lease_binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "hotsync-leader-election", "namespace": env.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease_role.metadata.name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hotsync-limited"}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let pp = PostParams::default();
    env.api::<Role>()
        .create(&pp, &lease_role)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.api::<RoleBinding>()
        .create(&pp, &lease_binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = harness::sync_options(repo.path());
    opts.rollout.wait = false;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = hotsync::daemon::DaemonConfig {
        sync: opts,
        branch: "main".into(),
        interval: Duration::from_millis(300),
        listen: port,
        webhook_secret: None,
        lease: Some(hotsync::daemon::lease::LeaseConfig {
            name: "hotsync".into(),
            namespace: env.namespace.clone(),
            identity: "deploy-test".into(),
            duration: Duration::from_secs(5),
        }),
        self_heal: false,
        watch_local: false,
        shutdown_grace: Duration::from_secs(2),
        status: None,
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(hotsync::daemon::run(limited.clone(), cfg, rx));
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.3", ""),
    );
    repo.commit_all("bump sidecar to v0.3");
    env.eventually("the daemon to roll v0.3 out", CONVERGE, || async {
        let pods = env.pods("minecraft").await;
        let done = pods.len() == 2
            && pods.iter().all(|p| {
                hotsync::live::container_status(p, "sidecar").is_some_and(|s| {
                    s.image == "registry.example.com/sidecar:v0.3"
                        && s.ready
                        && s.restart_count == 2
                })
            });
        if done {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    let _ = stop.send(true);
    let stopped = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .unwrap_or_else(|_| panic!("the daemon did not stop"));
    stopped
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| {
            panic!(
                "the daemon failed with the ClusterRole's rights: {}",
                hotsync::sync::error_chain(&e)
            )
        });

    // The binary as the image runs it: user 65532, no group of root's, the same rights.
    let run = NonRootDaemon::start(env, &repo);
    repo.write(
        "sets/minecraft.yaml",
        &harness::seed_manifest(&env.namespace, 2, "v0.4", ""),
    );
    repo.commit_all("bump sidecar to v0.4");
    run.push(&repo);
    env.eventually(
        "hotsync run as user 65532 to roll v0.4 out",
        CONVERGE,
        || async {
            let pods = env.pods("minecraft").await;
            let done = pods.len() == 2
                && pods.iter().all(|p| {
                    hotsync::live::container_status(p, "sidecar").is_some_and(|s| {
                        s.image == "registry.example.com/sidecar:v0.4"
                            && s.ready
                            && s.restart_count == 3
                    })
                });
            if done {
                Ok(())
            } else {
                Err(run.log())
            }
        },
    )
    .await;
    assert_eq!(
        run.uids(),
        "65532\t65532\t65532\t65532",
        "the daemon's real, effective, saved and file-system user ids"
    );
}

/// `hotsync run` started as user and group 65532 (the image's `USER`) with the limited user's token:
/// the binary, its kubeconfig and the repository are copied where that user can read them.
struct NonRootDaemon {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl NonRootDaemon {
    fn start(env: &TestEnv, repo: &TempRepo) -> NonRootDaemon {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        };
        chmod(d, 0o755);
        let bin = d.join("hotsync");
        std::fs::copy(env!("CARGO_BIN_EXE_hotsync"), &bin).unwrap_or_else(|e| panic!("{e}"));
        chmod(&bin, 0o755);
        let mut kc =
            kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        for a in &mut kc.auth_infos {
            a.auth_info = Some(kube::config::AuthInfo {
                token: Some(env.token("LIMITED_TOKEN").into()),
                ..Default::default()
            });
        }
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            serde_json::to_string(&kc).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // A clone the daemon's user owns (it watches it and reads it; git refuses a repository
        // owned by someone else).
        let clone = d.join("repo");
        let out = std::process::Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(repo.path())
            .arg(&clone)
            .output()
            .unwrap_or_else(|e| panic!("git clone: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let chown = std::process::Command::new("chown")
            .args(["-R", "65532:65532"])
            .arg(d)
            .status()
            .unwrap_or_else(|e| panic!("chown: {e}"));
        assert!(
            chown.success(),
            "chown -R 65532:65532 (this test runs as root)"
        );
        let branch = repo
            .repo
            .head()
            .ok()
            .map(|h| String::from_utf8_lossy(h.shorthand_bytes()).into_owned())
            .unwrap_or_else(|| panic!("the test repository has no branch"));
        let pusher = d.join("pusher");
        std::fs::create_dir_all(&pusher).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(pusher.join(".gitconfig"), "[safe]\n\tdirectory = *\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(d.join("run.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65532",
                "--regid",
                "65532",
                "--clear-groups",
                "--",
            ])
            .arg(&bin)
            .args(["run", "--repo"])
            .arg(&clone)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--branch", &branch, "--interval", "300ms", "--no-status"])
            .args(["--lease-namespace", &env.namespace, "--identity", "nonroot"])
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(d.join("cache"))
            .env_clear()
            .env("HOME", d)
            .env("PATH", "/usr/bin:/bin")
            // The simulated cluster has no registry to ask.
            .env("HOTSYNC_NO_IMAGE_CHECK", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("setpriv (util-linux): {e}"));
        NonRootDaemon { child, dir }
    }

    /// Pushes the test's new commits to the daemon's clone.
    fn push(&self, repo: &TempRepo) {
        let out = std::process::Command::new("git")
            .args(["push", "-q"])
            .arg(self.dir.path().join("repo"))
            .arg("HEAD")
            .current_dir(repo.path())
            // The receiving side runs as root in a repository the daemon's user owns: a global
            // config of this test's own says that is fine.
            .env("HOME", self.dir.path().join("pusher"))
            .output()
            .unwrap_or_else(|e| panic!("git push: {e}"));
        assert!(
            out.status.success(),
            "git push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// The `Uid:` line of the running process.
    fn uids(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for NonRootDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_cluster_role_alone_is_enough_for_a_hot_update() {
    let env = harness::env("deploy cluster role").await;
    // A copy of the ClusterRole under a name of this run, bound to hotsync-limited, a user that has
    // no other right in this cluster.
    let name = format!("hotsync-deploy-test-{}", env.namespace);
    let mut role: ClusterRole = object("clusterrole.yaml");
    role.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        ..Default::default()
    };
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hotsync-limited"}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let roles: Api<ClusterRole> = Api::all(env.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(env.client.clone());
    let pp = PostParams::default();
    roles
        .create(&pp, &role)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bindings
        .create(&pp, &binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let limited = env.client_with_token(env.token("LIMITED_TOKEN")).await;
    let result = std::panic::AssertUnwindSafe(hot_update_with_the_cluster_role(&env, &limited))
        .catch_unwind()
        .await;
    // Cleaned up whatever happened: the user must not keep cluster-wide rights for later tests.
    let dp = DeleteParams::default();
    let b = bindings.delete(&name, &dp).await;
    let r = roles.delete(&name, &dp).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    b.unwrap_or_else(|e| panic!("deleting the ClusterRoleBinding {name}: {e}"));
    r.unwrap_or_else(|e| panic!("deleting the ClusterRole {name}: {e}"));
}
