//! OKG's admission webhooks, served over HTTPS with a CA of their own and registered with the API server as
//! OKG registers them: the pod mutating webhook `mgameserverset.kb.io` (pod CREATE, UPDATE, DELETE; pods
//! with `game.kruise.io/owner-gss`; `failurePolicy: Fail`; the API server's default 10 s timeout) and the
//! GameServerSet validating webhook `vgameserverset.kb.io`.
//!
//! Follows openkruise/kruise-game `pkg/webhook/webhook.go` (`getMutatingWebhookConf`,
//! `getValidatingWebhookConf`), `pkg/webhook/mutating_pod.go` (`PodMutatingHandler.Handle`,
//! `getAdmissionResponse`, `patchContainers`, `podMutatingTimeout` of 8 s) and `validating_gss.go`.
//!
//! The network plugins are one simulated plugin for every network type OKG registers: on UPDATE it keeps a
//! headless Service per pod and the pod's `game.kruise.io/network-status`, and runs
//! `cloudprovider/utils/service.go` `AllowNotReadyContainers` (the in-place hook's blocker label and the
//! Service's `publishNotReadyAddresses`), as the Kubernetes-NodePort plugin does.
//!
//! A test can make the plugin of one namespace misbehave ([`WebhookMode`]): the namespace is labelled and
//! gets a webhook configuration of its own (a `namespaceSelector` on that label), so that one test's setting
//! never reaches another's namespace; the default configuration excludes labelled namespaces.

use crate::names::{
    lifecycle as lc, KRUISE_LIFECYCLE_STATE, KRUISE_POD_NAME, OKG_ALLOW_NOT_READY_CONTAINERS,
    OKG_INPLACE_NOT_READY_BLOCKER, OKG_NETWORK_CONF, OKG_NETWORK_DISABLED, OKG_NETWORK_STATUS,
    OKG_NETWORK_TYPE, OKG_OWNER_GSS,
};
use crate::{pods, SimError};
use base64::Engine as _;
use hotsync_model::{GameServer, GameServerSet};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// `podMutatingTimeout`.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(8);
/// The label that gives a namespace a plugin behaviour of its own.
pub const MODE_LABEL: &str = "okg-sim.hotsync.dev/webhook-mode";
const MUTATING_NAME: &str = "kruise-game-mutating-webhook";
const VALIDATING_NAME: &str = "kruise-game-validating-webhook";
const FIELD_MANAGER: &str = "kruise-game-manager";

/// The network plugin names OKG registers (`cloudprovider/manager/provider_manager.go`).
pub const PLUGIN_NAMES: &[&str] = &[
    "Kubernetes-HostPort",
    "Kubernetes-NodePort",
    "Kubernetes-Ingress",
    "AlibabaCloud-NATGW",
    "AlibabaCloud-SLB",
    "AlibabaCloud-SLB-SharedPort",
    "AlibabaCloud-NLB",
    "AlibabaCloud-NLB-SharedPort",
    "AlibabaCloud-EIP",
    "AlibabaCloud-Multi-NLBs",
    "AlibabaCloud-AutoNLBs",
    "AmazonWebServices-NLB",
    "TencentCloud-CLB",
    "Volcengine-CLB",
    "Volcengine-EIP",
    "JdCloud-NLB",
    "JdCloud-EIP",
    "HwCloud-ELB",
    "HwCloud-CCE-ELB",
    "HwCloud-CCE-EIP",
];

/// How the network plugin behind the pod webhook answers pod UPDATEs in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookMode {
    /// As OKG's plugin does.
    Allow,
    /// The plugin fails: the update is denied (403) with this message.
    Deny(String),
    /// The plugin takes this long; past OKG's own 8 s the update is let through without the plugin's patch.
    Slow(Duration),
    /// The webhook does not answer within the API server's timeout: under `failurePolicy: Fail` the
    /// update fails.
    Hang,
}

/// The running webhook server and what it was registered with.
pub struct Webhooks {
    addr: SocketAddr,
    ca_pem: String,
    modes: Arc<Mutex<HashMap<String, WebhookMode>>>,
    client: kube::Client,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("addr", &self.addr)
            .finish()
    }
}

struct Handler {
    client: kube::Client,
    modes: Arc<Mutex<HashMap<String, WebhookMode>>>,
}

fn tls_error(e: impl std::fmt::Display) -> SimError {
    SimError::Webhook {
        what: format!("TLS set-up: {e}"),
    }
}

/// Starts the server on loopback and registers both webhook configurations. The returned task serves
/// until shutdown.
pub(crate) async fn start(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(Webhooks, tokio::task::JoinHandle<Result<(), SimError>>), SimError> {
    let ca_key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "okg-sim-webhook-ca");
    let ca = ca_params.self_signed(&ca_key).map_err(tls_error)?;
    let key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).map_err(tls_error)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(tls_error)?;
    let certs = vec![cert.der().clone()];
    let private =
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(tls_error)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(tls_error)?
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .map_err(tls_error)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| SimError::Webhook {
            what: format!("bind 127.0.0.1: {e}"),
        })?;
    let addr = listener.local_addr().map_err(|e| SimError::Webhook {
        what: format!("local address: {e}"),
    })?;
    let modes = Arc::new(Mutex::new(HashMap::new()));
    let handler = Arc::new(Handler {
        client: client.clone(),
        modes: modes.clone(),
    });
    let task = tokio::spawn(serve(listener, acceptor, handler, shutdown));
    let hooks = Webhooks {
        addr,
        ca_pem: ca.pem(),
        modes,
        client,
    };
    hooks.register_default().await?;
    Ok((hooks, task))
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handler: Arc<Handler>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(handler.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
            // Finished connections are reaped as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    Ok(())
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn respond(status: u16, body: Value) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Body::from(body.to_string()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The AdmissionReview answer: allowed (with a JSON patch) or denied as controller-runtime's
/// `admission.Denied` does (403, Forbidden, the message).
fn review(uid: &str, allowed: bool, message: Option<&str>, patch: Option<Value>) -> Value {
    let mut response = json!({"uid": uid, "allowed": allowed});
    if !allowed {
        response["status"] =
            json!({"code": 403, "reason": "Forbidden", "message": message.unwrap_or_default()});
    } else if let Some(m) = message {
        response["status"] = json!({"code": 200, "message": m});
    }
    if let Some(p) = patch.filter(|p| p.as_array().is_some_and(|a| !a.is_empty())) {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

impl Handler {
    async fn answer(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
        use http_body_util::BodyExt as _;
        let path = req.uri().path().to_string();
        let Ok(body) = req.into_body().collect().await else {
            return respond(400, json!({"error": "unreadable body"}));
        };
        let Ok(review_in) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
            return respond(400, json!({"error": "not an AdmissionReview"}));
        };
        let request = review_in.get("request").cloned().unwrap_or(Value::Null);
        let uid = request
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if path == "/validate-v1alpha1-gss" {
            let (allowed, msg) = validate_gss(&request);
            return respond(200, review(&uid, allowed, msg.as_deref(), None));
        }
        let mode = match path.strip_prefix("/mutate-v1-pod") {
            Some("") => WebhookMode::Allow,
            Some(rest) => {
                let ns = rest.trim_start_matches('/');
                self.modes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(ns)
                    .cloned()
                    .unwrap_or(WebhookMode::Allow)
            }
            None => return respond(404, json!({"error": "no such webhook"})),
        };
        respond(200, self.mutate_pod(&uid, &request, mode).await)
    }

    /// `PodMutatingHandler.Handle`.
    async fn mutate_pod(&self, uid: &str, request: &Value, mode: WebhookMode) -> Value {
        let op = request
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let object = if op == "DELETE" {
            request.get("oldObject")
        } else {
            request.get("object")
        };
        let Some(original) = object.cloned() else {
            return review(uid, true, None, None);
        };
        let Ok(mut pod) = serde_json::from_value::<Pod>(original.clone()) else {
            return review(uid, false, Some("cannot decode the pod"), None);
        };
        if op == "CREATE" {
            self.patch_containers(&mut pod).await;
        }
        if op == "UPDATE" {
            match &mode {
                WebhookMode::Allow => {}
                WebhookMode::Deny(msg) => return review(uid, false, Some(msg), None),
                WebhookMode::Slow(d) => {
                    if *d >= PLUGIN_TIMEOUT {
                        tokio::time::sleep(PLUGIN_TIMEOUT).await;
                        let msg = format!(
                            "Failed to UPDATE pod {}/{}, because plugin exec timed out",
                            pod.metadata.namespace.clone().unwrap_or_default(),
                            pods::name(&pod)
                        );
                        return review(uid, true, Some(&msg), None);
                    }
                    tokio::time::sleep(*d).await;
                }
                WebhookMode::Hang => {
                    // Longer than any timeoutSeconds the API server allows (at most 30 s).
                    tokio::time::sleep(Duration::from_secs(35)).await;
                    return review(uid, true, None, None);
                }
            }
        }
        let has_plugin =
            pods::annotation(&pod, OKG_NETWORK_TYPE).is_some_and(|t| PLUGIN_NAMES.contains(&t));
        if has_plugin {
            let result = match op {
                "UPDATE" => self.on_pod_updated(&mut pod).await,
                "DELETE" => self.on_pod_deleted(&pod).await,
                _ => Ok(()),
            };
            if let Err(msg) = result {
                return review(uid, false, Some(&msg), None);
            }
        }
        if op == "DELETE" {
            return review(uid, true, Some("delete successfully"), None);
        }
        if let Some(a) = pod.metadata.annotations.as_mut() {
            a.remove("game.kruise.io/traceparent");
        }
        // The patch from the pod the API server sent to what the plugin made of it, over what plugins
        // change: labels, annotations and containers.
        let before = serde_json::from_value::<Pod>(original).unwrap_or_default();
        review(uid, true, None, Some(plugin_patch(&before, &pod)))
    }

    /// `patchContainers`: the GameServer's image and resource overrides onto a new pod.
    async fn patch_containers(&self, pod: &mut Pod) {
        let Some(ns) = pod.metadata.namespace.clone() else {
            return;
        };
        let api: Api<GameServer> = Api::namespaced(self.client.clone(), &ns);
        let Ok(Some(gs)) = api.get_opt(pods::name(pod)).await else {
            return;
        };
        let Some(spec) = pod.spec.as_mut() else {
            return;
        };
        for o in gs.spec.containers.iter().flatten() {
            if let Some(c) = spec.containers.iter_mut().find(|c| c.name == o.name) {
                if let Some(image) = o.image.as_ref().filter(|i| !i.is_empty()) {
                    c.image = Some(image.clone());
                }
                if let Some(r) = &o.resources {
                    c.resources = Some(r.clone());
                }
            }
        }
    }

    /// The plugin's `OnPodUpdated` (as Kubernetes-NodePort's): a headless Service per pod, the network
    /// status, and `AllowNotReadyContainers`.
    async fn on_pod_updated(&self, pod: &mut Pod) -> Result<(), String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pods::name(pod).to_string();
        let svc_api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let scheduled = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty());
        let annotations = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        let mut status: Value = annotations
            .get(OKG_NETWORK_STATUS)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({}));
        let network_type = annotations
            .get(OKG_NETWORK_TYPE)
            .cloned()
            .unwrap_or_default();
        let conf: Vec<Value> = annotations
            .get(OKG_NETWORK_CONF)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let set_state = |status: &mut Value, state: &str| {
            status["networkType"] = json!(network_type);
            status["currentNetworkState"] = json!(state);
        };
        if !scheduled {
            set_state(&mut status, "Waiting");
            write_status(pod, &status);
            return Ok(());
        }
        let svc = match svc_api.get_opt(&name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": ns, "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Pod", "name": name,
                        "uid": pod.metadata.uid.clone().unwrap_or_default(),
                        "controller": true, "blockOwnerDeletion": true}]},
                    "spec": {"clusterIP": "None", "selector": {KRUISE_POD_NAME: name},
                             "ports": [{"name": "game", "port": 7777}]},
                }))
                .map_err(|e| format!("internalError: {e}"))?;
                svc_api
                    .create(&super::post_params(), &svc)
                    .await
                    .map_err(|e| format!("apiCallError: create service {ns}/{name}: {e}"))?
            }
            Err(e) => return Err(format!("apiCallError: get service {ns}/{name}: {e}")),
        };
        if pods::label(pod, OKG_NETWORK_DISABLED) == Some("true") {
            set_state(&mut status, "NotReady");
            write_status(pod, &status);
            return Ok(());
        }
        let allow = conf
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(OKG_ALLOW_NOT_READY_CONTAINERS))
            .and_then(|p| p.get("value").and_then(Value::as_str))
            .map(str::to_string);
        if let Some(containers) = allow {
            self.allow_not_ready_containers(pod, svc, &containers)
                .await?;
        }
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        match ip {
            Some(ip) => {
                set_state(&mut status, "Ready");
                status["internalAddresses"] =
                    json!([{"ip": ip, "ports": [{"name": "game", "port": 7777}]}]);
            }
            None => set_state(&mut status, "NotReady"),
        }
        write_status(pod, &status);
        Ok(())
    }

    /// `AllowNotReadyContainers` (cloudprovider/utils/service.go), for a Service of the pod's own.
    async fn allow_not_ready_containers(
        &self,
        pod: &mut Pod,
        mut svc: Service,
        containers: &str,
    ) -> Result<(), String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let owner = pods::label(pod, OKG_OWNER_GSS)
            .unwrap_or_default()
            .to_string();
        let gss: GameServerSet = Api::<GameServerSet>::namespaced(self.client.clone(), &ns)
            .get(&owner)
            .await
            .map_err(|e| format!("apiCallError: get gameserverset {ns}/{owner}: {e}"))?;
        let listed: Vec<&str> = containers
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let template: HashMap<String, String> = gss.container_images().into_iter().collect();
        // IsContainersPreInplaceUpdating: a listed container reports another image than the template's.
        let changing = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .any(|cs| {
                listed.contains(&cs.name.as_str())
                    && template.get(&cs.name).is_some_and(|i| *i != cs.image)
            });
        let publish = svc
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        let mut update_svc = None;
        if labels.get(KRUISE_LIFECYCLE_STATE).map(String::as_str) == Some(lc::PREPARING_UPDATE) {
            if !publish && changing {
                update_svc = Some(true);
            } else {
                labels.insert(OKG_INPLACE_NOT_READY_BLOCKER.into(), "false".into());
            }
        } else {
            labels.insert(OKG_INPLACE_NOT_READY_BLOCKER.into(), "true".into());
            if publish && pods::is_ready(pod) {
                update_svc = Some(false);
            }
        }
        if let Some(on) = update_svc {
            if let Some(s) = svc.spec.as_mut() {
                s.publish_not_ready_addresses = Some(on);
            }
            let name = svc.metadata.name.clone().unwrap_or_default();
            Api::<Service>::namespaced(self.client.clone(), &ns)
                .replace(&name, &super::post_params(), &svc)
                .await
                .map_err(|e| format!("apiCallError: update service {ns}/{name}: {e}"))?;
        }
        Ok(())
    }

    async fn on_pod_deleted(&self, pod: &Pod) -> Result<(), String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        match Api::<Service>::namespaced(self.client.clone(), &ns)
            .delete(pods::name(pod), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(format!(
                "apiCallError: delete service {ns}/{}: {e}",
                pods::name(pod)
            )),
        }
    }
}

fn write_status(pod: &mut Pod, status: &Value) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(OKG_NETWORK_STATUS.into(), status.to_string());
}

/// The JSON patch from `before` to `after` over what a plugin may change: labels, annotations and
/// containers (a map the pod lacks is added whole, since a patch cannot add into a missing parent).
fn plugin_patch(before: &Pod, after: &Pod) -> Value {
    let mut ops: Vec<Value> = Vec::new();
    for (field, b, a) in [
        ("labels", &before.metadata.labels, &after.metadata.labels),
        (
            "annotations",
            &before.metadata.annotations,
            &after.metadata.annotations,
        ),
    ] {
        match (b, a) {
            (None, Some(a)) if !a.is_empty() => {
                ops.push(json!({"op": "add", "path": format!("/metadata/{field}"), "value": a}));
            }
            (Some(b), Some(a)) => {
                let d = json_patch::diff(&json!(b), &json!(a));
                for op in serde_json::to_value(d)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                {
                    let mut op = op;
                    let path = op["path"].as_str().unwrap_or_default().to_string();
                    op["path"] = json!(format!("/metadata/{field}{path}"));
                    ops.push(op);
                }
            }
            _ => {}
        }
    }
    let containers = |p: &Pod| {
        json!(p
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default())
    };
    let d = json_patch::diff(&containers(before), &containers(after));
    for op in serde_json::to_value(d)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    {
        let mut op = op;
        let path = op["path"].as_str().unwrap_or_default().to_string();
        op["path"] = json!(format!("/spec/containers{path}"));
        ops.push(op);
    }
    Value::Array(ops)
}

/// `GssValidaatingHandler.Handle`: the network type is required and known on CREATE, and cannot change
/// on UPDATE. (Upstream's reserve-id check discards its own result, so it never denies.)
fn validate_gss(request: &Value) -> (bool, Option<String>) {
    let op = request
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let net = |v: Option<&Value>| {
        v.and_then(|o| o.pointer("/spec/network"))
            .filter(|n| !n.is_null())
            .cloned()
    };
    let new = net(request.get("object"));
    let old = net(request.get("oldObject"));
    let ty = |n: &Value| {
        n.get("networkType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match op {
        "CREATE" => {
            if let Some(n) = new {
                let t = ty(&n);
                if t.is_empty() {
                    return (false, Some("network type is required".into()));
                }
                if !PLUGIN_NAMES.contains(&t.as_str()) {
                    return (
                        false,
                        Some(format!("network type must be one of {PLUGIN_NAMES:?}")),
                    );
                }
            }
        }
        "UPDATE" => {
            if let (Some(o), Some(n)) = (old, new) {
                let (ot, nt) = (ty(&o), ty(&n));
                if !ot.is_empty() && ot != nt {
                    return (false, Some("change network type is not allowed".into()));
                }
            }
        }
        _ => {}
    }
    (true, None)
}

impl Webhooks {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    fn pod_webhook(&self, path: &str, namespace_selector: Value) -> Value {
        json!({
            "name": "mgameserverset.kb.io",
            "clientConfig": {"url": self.url(path), "caBundle": self.ca_bundle()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"],
                       "resources": ["pods"], "scope": "*"}],
            "objectSelector": {"matchExpressions": [{"key": OKG_OWNER_GSS, "operator": "Exists"}]},
            "namespaceSelector": namespace_selector,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
        })
    }

    async fn register_default(&self) -> Result<(), SimError> {
        let mutating = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": MUTATING_NAME},
            "webhooks": [self.pod_webhook("/mutate-v1-pod",
                json!({"matchExpressions": [{"key": MODE_LABEL, "operator": "DoesNotExist"}]}))],
        });
        let validating = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": VALIDATING_NAME},
            "webhooks": [{
                "name": "vgameserverset.kb.io",
                "clientConfig": {"url": self.url("/validate-v1alpha1-gss"), "caBundle": self.ca_bundle()},
                "rules": [{"apiGroups": ["game.kruise.io"], "apiVersions": ["v1alpha1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["gameserversets"], "scope": "*"}],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1", "v1beta1"],
            }],
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .patch(MUTATING_NAME, &pp, &Patch::Apply(&mutating))
            .await
            .map_err(|e| SimError::Webhook {
                what: format!("register {MUTATING_NAME}: {e}"),
            })?;
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .patch(VALIDATING_NAME, &pp, &Patch::Apply(&validating))
            .await
            .map_err(|e| SimError::Webhook {
                what: format!("register {VALIDATING_NAME}: {e}"),
            })?;
        Ok(())
    }

    /// Makes the network plugin behind the pod webhook behave as `mode` for pod UPDATEs in `namespace`.
    ///
    /// # Errors
    /// The namespace or the webhook configuration could not be written.
    pub async fn set_mode(&self, namespace: &str, mode: WebhookMode) -> Result<(), SimError> {
        self.modes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_string(), mode);
        let name = format!("{MUTATING_NAME}-{namespace}");
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [self.pod_webhook(&format!("/mutate-v1-pod/{namespace}"),
                json!({"matchLabels": {MODE_LABEL: namespace}}))],
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let err = |e: kube::Error| SimError::Webhook {
            what: format!("set the webhook mode of {namespace}: {e}"),
        };
        Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .patch(&name, &pp, &Patch::Apply(&config))
            .await
            .map_err(err)?;
        Api::<Namespace>::all(self.client.clone())
            .patch(
                namespace,
                &super::patch_params(),
                &Patch::Merge(json!({"metadata": {"labels": {MODE_LABEL: namespace}}})),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Removes the webhook configurations (on shutdown: a configuration whose server is gone would fail
    /// every pod write under `failurePolicy: Fail`).
    pub async fn unregister(&self) {
        let m: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = m.delete(MUTATING_NAME, &DeleteParams::default()).await;
        let namespaces: Vec<String> = self
            .modes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for ns in namespaces {
            let _ = m
                .delete(&format!("{MUTATING_NAME}-{ns}"), &DeleteParams::default())
                .await;
        }
        let v: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = v.delete(VALIDATING_NAME, &DeleteParams::default()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_type_is_required_known_and_fixed() {
        let req = |op: &str, new: Value, old: Value| json!({"operation": op, "object": new, "oldObject": old});
        let set = |t: &str| json!({"spec": {"network": {"networkType": t}}});
        assert!(!validate_gss(&req("CREATE", set(""), Value::Null)).0);
        assert!(!validate_gss(&req("CREATE", set("Nope"), Value::Null)).0);
        assert!(validate_gss(&req("CREATE", set("Kubernetes-HostPort"), Value::Null)).0);
        let (ok, msg) = validate_gss(&req(
            "UPDATE",
            set("Kubernetes-NodePort"),
            set("Kubernetes-HostPort"),
        ));
        assert!(!ok);
        assert_eq!(msg.as_deref(), Some("change network type is not allowed"));
    }

    #[test]
    fn a_denial_is_a_forbidden_with_the_plugin_message() {
        let r = review("u", false, Some("boom"), None);
        assert_eq!(r["response"]["allowed"], json!(false));
        assert_eq!(r["response"]["status"]["code"], json!(403));
        assert_eq!(r["response"]["status"]["message"], json!("boom"));
    }
}
