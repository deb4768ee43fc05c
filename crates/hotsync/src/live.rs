//! The live side of a set: its GameServerSet, Advanced StatefulSet, pods and GameServers as the
//! cluster shows them now, and the questions the rollout asks of a pod.

use crate::model::{
    AdvancedStatefulSet, GameServer, GameServerSet, LABEL_OPS_STATE, LABEL_OWNER_GSS,
    LABEL_REVISION_HASH, LABEL_UPDATE_PRIORITY,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

/// What can go wrong talking to the cluster. Each variant names the object or the action.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{action} {object}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "RBAC: hotsync may not {action} {object} ({message}); grant it in the hotsync ClusterRole"
    )]
    Forbidden {
        action: &'static str,
        object: String,
        message: String,
    },
    /// An admission webhook refused the write (a 403 of the webhook's, not of RBAC).
    #[error("{action} {object}: the admission webhook {webhook} denied it: {message}")]
    AdmissionDenied {
        action: &'static str,
        object: String,
        webhook: String,
        message: String,
    },
    /// An admission webhook under `failurePolicy: Fail` failed or did not answer in its time.
    #[error("{action} {object}: the admission webhook {webhook} failed: {message}")]
    WebhookFailed {
        action: &'static str,
        object: String,
        webhook: String,
        message: String,
    },
    #[error("the cluster has no {crd} CRD: install OpenKruiseGame (kruise-game) and OpenKruise (kruise) first")]
    MissingCrd { crd: &'static str },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("watch of {what} ended")]
    WatchEnded { what: String },
}

impl ClusterError {
    /// A static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ClusterError::Api { .. } => "api",
            ClusterError::Forbidden { .. } => "forbidden",
            ClusterError::AdmissionDenied { .. } => "admission_denied",
            ClusterError::WebhookFailed { .. } => "webhook_failed",
            ClusterError::MissingCrd { .. } => "missing_crd",
            ClusterError::Timeout { .. } => "timeout",
            ClusterError::WatchEnded { .. } => "watch",
        }
    }

    /// Wraps a kube error: an admission webhook's denial or failure as what it is (the API server names
    /// the webhook: `admission webhook "x" denied the request: ...`, `failed calling webhook "x": ...`),
    /// RBAC's 403 as [`ClusterError::Forbidden`].
    pub fn api(action: &'static str, object: impl Into<String>, source: kube::Error) -> Self {
        let object = object.into();
        if let kube::Error::Api(s) = &source {
            if let Some((webhook, message)) =
                webhook_verdict(&s.message, "admission webhook ", " denied the request: ")
            {
                return ClusterError::AdmissionDenied {
                    action,
                    object,
                    webhook,
                    message,
                };
            }
            if let Some((webhook, message)) =
                webhook_verdict(&s.message, "failed calling webhook ", ": ")
            {
                return ClusterError::WebhookFailed {
                    action,
                    object,
                    webhook,
                    message,
                };
            }
        }
        match &source {
            kube::Error::Api(s) if s.is_forbidden() => ClusterError::Forbidden {
                action,
                object,
                message: s.message.clone(),
            },
            _ => ClusterError::Api {
                action,
                object,
                source,
            },
        }
    }

    /// True for a 409 conflict or a failed JSON patch `test` (422): re-read and re-plan.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClusterError::Api { source: kube::Error::Api(s), .. } if s.is_conflict() || s.code == 422)
    }
}

/// `(webhook, message)` from an API server message `...<intro>"<webhook>"<sep><message>`.
fn webhook_verdict(text: &str, intro: &str, sep: &str) -> Option<(String, String)> {
    let rest = &text[text.find(intro)? + intro.len()..];
    let rest = rest.strip_prefix('"')?;
    let (webhook, after) = rest.split_once('"')?;
    let message = after.strip_prefix(sep)?;
    Some((webhook.to_string(), message.to_string()))
}

/// Everything hotsync reads about one set.
#[derive(Clone, Debug, Default)]
pub struct LiveSet {
    pub gss: Option<GameServerSet>,
    pub asts: Option<AdvancedStatefulSet>,
    pub pods: Vec<Pod>,
    pub gameservers: Vec<GameServer>,
}

/// Checks that OKG's CRDs are served, with an error that says what to install.
///
/// # Errors
/// [`ClusterError::MissingCrd`] when a CRD is missing.
pub async fn check_crds(client: &Client, namespace: &str) -> Result<(), ClusterError> {
    let gss: Api<GameServerSet> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = gss.list(&ListParams::default().limit(1)).await {
        return Err(match e {
            kube::Error::Api(s) if s.is_not_found() => ClusterError::MissingCrd {
                crd: "gameserversets.game.kruise.io",
            },
            other => ClusterError::api("list", format!("gameserversets in {namespace}"), other),
        });
    }
    let asts: Api<AdvancedStatefulSet> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = asts.list(&ListParams::default().limit(1)).await {
        return Err(match e {
            kube::Error::Api(s) if s.is_not_found() => ClusterError::MissingCrd {
                crd: "statefulsets.apps.kruise.io",
            },
            other => ClusterError::api(
                "list",
                format!("statefulsets.apps.kruise.io in {namespace}"),
                other,
            ),
        });
    }
    Ok(())
}

/// Reads a set and what OKG made of it.
///
/// # Errors
/// When a read fails (other than the set not existing).
pub async fn read(client: &Client, namespace: &str, name: &str) -> Result<LiveSet, ClusterError> {
    let obj = format!("{namespace}/{name}");
    let gss = Api::<GameServerSet>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| ClusterError::api("get", format!("gameserverset {obj}"), e))?;
    let asts = Api::<AdvancedStatefulSet>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| ClusterError::api("get", format!("statefulset.apps.kruise.io {obj}"), e))?;
    let lp = ListParams::default().labels(&format!("{LABEL_OWNER_GSS}={name}"));
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .map_err(|e| ClusterError::api("list", format!("pods of {obj}"), e))?
        .items;
    let gameservers = Api::<GameServer>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .map_err(|e| ClusterError::api("list", format!("gameservers of {obj}"), e))?
        .items;
    Ok(LiveSet {
        gss,
        asts,
        pods,
        gameservers,
    })
}

/// A pod's name, or "" when the API server sent none.
pub fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// The ordinal of `<set>-<n>`.
pub fn ordinal(pod: &Pod, set: &str) -> i64 {
    pod_name(pod)
        .strip_prefix(set)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// OKG's update priority of the pod's game server (higher updates first).
pub fn update_priority(pod: &Pod) -> i64 {
    label(pod, LABEL_UPDATE_PRIORITY)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// OKG's ops state of the pod's game server (`None` when unset).
pub fn ops_state(pod: &Pod) -> &str {
    label(pod, LABEL_OPS_STATE).unwrap_or("None")
}

/// The pod's `controller-revision-hash`.
pub fn revision(pod: &Pod) -> Option<&str> {
    label(pod, LABEL_REVISION_HASH)
}

/// The image the pod's spec asks for in a container.
pub fn spec_image<'a>(pod: &'a Pod, container: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.image.as_deref())
}

/// The kubelet's report on a container.
pub fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

/// Is the pod Ready?
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Is the pod on its way out?
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Waiting reasons that mean a container will not come up by itself soon.
const FAILING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A container of the pod that is failing, with the kubelet's reason.
pub fn failure(pod: &Pod, containers: &[String]) -> Option<(String, String)> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter(|s| containers.contains(&s.name))
        .find_map(|s| {
            let waiting = s.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone().unwrap_or_default();
            FAILING.contains(&reason.as_str()).then(|| {
                let msg = waiting
                    .message
                    .clone()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                (s.name.clone(), format!("{reason}{msg}"))
            })
        })
}

/// GameServers whose `spec.containers` override an image: they would fight a rollout.
pub fn image_overrides(live: &LiveSet) -> Vec<String> {
    live.gameservers
        .iter()
        .filter_map(|gs| {
            let over: Vec<String> = gs
                .spec
                .containers
                .as_ref()?
                .iter()
                .filter_map(|c| c.image.as_ref().map(|i| format!("{}={i}", c.name)))
                .collect();
            (!over.is_empty()).then(|| {
                format!(
                    "GameServer {} overrides {}: OKG patches it onto the pod and it fights the rollout",
                    gs.metadata.name.as_deref().unwrap_or_default(),
                    over.join(", ")
                )
            })
        })
        .collect()
}

pub use hotsync_model::WatchBackoff;

#[cfg(test)]
mod admission_tests {
    use super::webhook_verdict;

    #[test]
    fn the_api_servers_webhook_messages_name_the_webhook_and_keep_its_message() {
        let denied =
            r#"admission webhook "mgameserverset.kb.io" denied the request: SLB quota exhausted"#;
        assert_eq!(
            webhook_verdict(denied, "admission webhook ", " denied the request: "),
            Some(("mgameserverset.kb.io".into(), "SLB quota exhausted".into()))
        );
        let failed = r#"Internal error occurred: failed calling webhook "mgameserverset.kb.io": Post "https://127.0.0.1:1/mutate-v1-pod?timeout=10s": context deadline exceeded"#;
        let (w, m) = webhook_verdict(failed, "failed calling webhook ", ": ").expect("parsed");
        assert_eq!(w, "mgameserverset.kb.io");
        assert!(m.contains("context deadline exceeded"));
        assert_eq!(
            webhook_verdict(
                "forbidden: User cannot patch",
                "admission webhook ",
                " denied"
            ),
            None
        );
    }
}
