//! The simulated kubelet: an ordinary API client that plays a Node, the way KWOK does.
//!
//! It registers a Ready Node, binds unbound pods to it through the `binding` subresource (the scheduler's
//! job), and writes each pod's status through the `/status` subresource: containers start after a delay and
//! become ready after another; a container whose spec image changed is restarted alone (restart count + 1,
//! new container ID and image ID, same pod UID, IP and start time); images marked missing fail to pull and
//! images marked crashing loop. Deleted pods are finished (deleted with grace period 0) once their grace
//! period, capped by the configuration, has passed. What the kubelet remembers between events (when a
//! container was asked for) lives in memory; everything it reports comes from the pod it reads.
//!
//! Images are reported as a kubelet on containerd reports them ([`crate::images`]): the full reference
//! for a short name, an `imageID` of `repository@digest` from the configured table of digests, and, when
//! two tags share a digest, possibly the other tag. A pod is Ready only when its containers are and every
//! readiness gate has a condition that is True (a gate without a condition is not ready, as in the kubelet's
//! `status.GeneratePodReadyCondition`). The node renews its Lease and posts its Ready condition as a
//! kubelet does, so that a node lifecycle controller beside it never takes it for dead.

use crate::images::{ImageStore, Reported};
use crate::{shutdown_signal, whole_seconds, SimConfig, SimError};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Node, NodeAddress, NodeCondition, NodeStatus,
    NodeSystemInfo, ObjectReference, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource as _, ResourceExt as _};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The Node the kubelet registers unless configured otherwise.
pub const DEFAULT_NODE_NAME: &str = "hotsync-sim-node";
/// The node's address, reported as each pod's hostIP.
pub const HOST_IP: &str = "10.0.0.10";
const FIELD_MANAGER: &str = "hotsync-sim-kubelet";

/// A failure of one reconcile of one pod; the pod is retried.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("could not {action} pod {namespace}/{name}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl KubeletError {
    fn is_conflict(&self) -> bool {
        match self {
            KubeletError::Api { source, .. } => {
                matches!(source, kube::Error::Api(s) if s.code == 409)
            }
        }
    }
}

/// What a container runs, in the simulation's memory.
#[derive(Debug, Clone)]
struct ContainerSim {
    image: String,
    /// What the node reports for it (its image's first tag and `repository@digest`).
    reported: Reported,
    /// When this image was asked for.
    since: Instant,
    since_wall: Timestamp,
    /// From `since` until the container runs.
    delay: Duration,
    /// The restart count before this container runs, and once it runs.
    restarts_before: i32,
    restarts_after: i32,
    /// The container this one replaces: shown as `lastState.terminated`.
    previous: Option<Previous>,
    /// Known from the pod's status rather than simulated (the kubelet restarted).
    adopted_started: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Previous {
    container_id: String,
    image: String,
    /// What the node reported for it: an exited container keeps being reported (its image and imageID)
    /// until the new one runs, as the kubelet's `convertToAPIContainerStatuses` does.
    reported: Reported,
    started: Option<Timestamp>,
    finished: Timestamp,
}

#[derive(Debug)]
struct PodSim {
    pod_ip: String,
    start_time: Time,
    containers: HashMap<String, ContainerSim>,
    deleting_since: Option<Instant>,
}

struct Ctx {
    client: kube::Client,
    config: SimConfig,
    pods: Mutex<HashMap<String, PodSim>>,
    images: Mutex<ImageStore>,
    next_ip: AtomicU32,
}

impl Ctx {
    fn pull(&self, image: &str) -> Reported {
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pull(image, &self.config.image_digests)
    }
}

/// Runs the kubelet until shutdown: registers the Node, then reconciles every pod.
pub(crate) async fn run(
    client: kube::Client,
    config: SimConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    register_node(&client, &config.node_name)
        .await
        .map_err(|source| SimError::RegisterNode {
            node: config.node_name.clone(),
            source,
        })?;
    let pods: Api<Pod> = Api::all(client.clone());
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        config.node_name.clone(),
        shutdown.clone(),
    ));
    let ctx = Arc::new(Ctx {
        client,
        config,
        pods: Mutex::new(HashMap::new()),
        images: Mutex::new(ImageStore::default()),
        next_ip: AtomicU32::new(2),
    });
    let _heartbeat = AbortOnDrop(heartbeat);
    Controller::new(pods, watcher::Config::default())
        .trigger_backoff(hotsync_model::WatchBackoff::default())
        .graceful_shutdown_on(shutdown_signal(shutdown.clone()))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "kubelet reconcile");
            }
        })
        .await;
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended { task: "kubelet" })
    }
}

/// Aborts the task when dropped: the heartbeat lives exactly as long as the kubelet's controller.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The node's Lease in `kube-node-lease`, renewed every 10 s, and its Ready condition's heartbeat every
/// 40 s (a kubelet's `nodeLeaseDurationSeconds` and `nodeStatusReportFrequency` defaults are 40 s and 5 min).
async fn heartbeat(client: kube::Client, node: String, mut shutdown: watch::Receiver<bool>) {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = 0u32;
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                     "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(Timestamp::now())},
        });
        if let Err(e) = leases
            .patch(
                &node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            tracing::debug!(error = %e, "simulated kubelet: renew the node lease");
        }
        if tick.is_multiple_of(4) {
            let now = crate::now_time();
            let status = json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "hotsync simulated kubelet is posting ready status",
                "lastHeartbeatTime": now,
            }]}});
            if let Err(e) = nodes
                .patch_status(&node, &PatchParams::default(), &Patch::Strategic(status))
                .await
            {
                tracing::debug!(error = %e, "simulated kubelet: node heartbeat");
            }
        }
        tick = tick.wrapping_add(1);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Creates (or updates) the Node and reports it Ready.
pub async fn register_node(client: &kube::Client, name: &str) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), "amd64".to_string()),
                ("type".to_string(), "hotsync-sim".to_string()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&node),
    )
    .await?;
    let now = super::now_time();
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity("32".into())),
        ("memory".to_string(), Quantity("128Gi".into())),
        ("pods".to_string(), Quantity("1000".into())),
    ]);
    let status = NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: HOST_IP.into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("hotsync simulated kubelet is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            container_runtime_version: "sim://1.0".into(),
            kernel_version: "sim".into(),
            kube_proxy_version: "v1.20.2".into(),
            kubelet_version: "v1.20.2-hotsync-sim".into(),
            operating_system: "linux".into(),
            os_image: "hotsync simulated node".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
}

fn error_policy(_pod: Arc<Pod>, err: &KubeletError, _ctx: Arc<Ctx>) -> Action {
    if err.is_conflict() {
        Action::requeue(Duration::from_millis(20))
    } else {
        tracing::warn!(error = %err, "simulated kubelet");
        Action::requeue(Duration::from_millis(500))
    }
}

fn container_id(uid: &str, name: &str, restarts: i32) -> String {
    format!(
        "containerd://{}",
        super::sha256_hex(format!("{uid}/{name}/{restarts}").as_bytes())
    )
}

fn wall_at(since: Instant, since_wall: Timestamp, at: Instant) -> Timestamp {
    let d = at.saturating_duration_since(since);
    let t = since_wall
        .checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO))
        .unwrap_or(since_wall);
    whole_seconds(t)
}

fn api_err(action: &'static str, pod: &Pod) -> impl FnOnce(kube::Error) -> KubeletError {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    move |source| KubeletError::Api {
        action,
        namespace,
        name,
        source,
    }
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, KubeletError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(uid) = pod.uid() else {
        return Ok(Action::await_change());
    };
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match spec.node_name.as_deref() {
        None | Some("") => {
            if pod.meta().deletion_timestamp.is_some() {
                return Ok(Action::await_change());
            }
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(ctx.config.node_name.clone()),
                    ..Default::default()
                },
            };
            let bound: Result<serde_json::Value, kube::Error> = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await;
            match bound {
                Ok(_) => {}
                // Already bound (409) or gone (404): the next event tells.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(api_err("bind", &pod)(e)),
            }
            return Ok(Action::await_change());
        }
        Some(node) if node != ctx.config.node_name => return Ok(Action::await_change()),
        Some(_) => {}
    }

    let now = Instant::now();
    if pod.meta().deletion_timestamp.is_some() {
        let grace = Duration::from_secs(
            pod.meta()
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0)
                .unsigned_abs(),
        )
        .min(ctx.config.grace_cap());
        let since = {
            let mut pods = ctx.pods.lock().unwrap_or_else(|e| e.into_inner());
            let sim = pods
                .entry(uid.clone())
                .or_insert_with(|| new_pod_sim(&pod, &ctx));
            *sim.deleting_since.get_or_insert(now)
        };
        let due = since + grace;
        if now < due {
            return Ok(Action::requeue(due - now));
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(api_err("finish deleting", &pod)(e)),
        }
        ctx.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        return Ok(Action::await_change());
    }

    let (status, next) = {
        let mut pods = ctx.pods.lock().unwrap_or_else(|e| e.into_inner());
        let sim = pods
            .entry(uid.clone())
            .or_insert_with(|| new_pod_sim(&pod, &ctx));
        desired_status(sim, &pod, &uid, now, &ctx)
    };
    if status_differs(pod.status.as_ref(), &status) {
        let patch = json!({
            "metadata": { "resourceVersion": pod.resource_version() },
            "status": status,
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(api_err("write the status of", &pod))?;
    }
    Ok(match next {
        Some(t) => Action::requeue(t.saturating_duration_since(now) + Duration::from_millis(1)),
        None => Action::await_change(),
    })
}

fn new_pod_sim(pod: &Pod, ctx: &Ctx) -> PodSim {
    let status = pod.status.as_ref();
    let pod_ip = status.and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| {
        let n = ctx.next_ip.fetch_add(1, Ordering::SeqCst);
        format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 2)
    });
    let start_time = status
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(super::now_time);
    PodSim {
        pod_ip,
        start_time,
        containers: HashMap::new(),
        deleting_since: None,
    }
}

/// The container's state as the simulation has it at `now`, and when it next changes.
struct Computed {
    status: ContainerStatus,
    next: Option<Instant>,
    started: bool,
}

fn compute_container(
    c: &ContainerSim,
    name: &str,
    uid: &str,
    now: Instant,
    config: &SimConfig,
) -> Computed {
    let run_at = c.since + c.delay;
    let last_state = c.previous.as_ref().map(|p| ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(p.container_id.clone()),
            exit_code: 0,
            reason: Some("Completed".into()),
            message: Some(format!("replaced: image was {}", p.image)),
            started_at: p.started.map(Time),
            finished_at: Some(Time(p.finished)),
            ..Default::default()
        }),
        ..Default::default()
    });
    let waiting = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    };
    // Until the new container runs, the exited one is what the runtime reports (its image and imageID);
    // a container that never ran shows the spec's image, verbatim, and no imageID.
    let (waiting_image, waiting_image_id) = match &c.previous {
        Some(p) => (p.reported.image.clone(), p.reported.image_id.clone()),
        None => (c.image.clone(), String::new()),
    };
    let base = ContainerStatus {
        name: name.to_string(),
        image: waiting_image,
        image_id: waiting_image_id,
        container_id: c.previous.as_ref().map(|p| p.container_id.clone()),
        ready: false,
        restart_count: c.restarts_before,
        started: Some(false),
        last_state: last_state.clone(),
        ..Default::default()
    };
    if c.adopted_started.is_none() && now < run_at {
        return Computed {
            status: ContainerStatus {
                state: Some(waiting("ContainerCreating", None)),
                ..base
            },
            next: Some(run_at),
            started: c.previous.is_some(),
        };
    }
    if config.is_missing(&c.image) {
        let backoff_at = run_at + c.delay.max(Duration::from_millis(10));
        let (state, next) = if now < backoff_at {
            (
                waiting(
                    "ErrImagePull",
                    Some(format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{}\": not found", c.image)),
                ),
                Some(backoff_at),
            )
        } else {
            (
                waiting(
                    "ImagePullBackOff",
                    Some(format!("Back-off pulling image \"{}\"", c.image)),
                ),
                None,
            )
        };
        return Computed {
            status: ContainerStatus {
                state: Some(state),
                ..base
            },
            next,
            started: c.previous.is_some(),
        };
    }
    let started_at = c
        .adopted_started
        .unwrap_or_else(|| wall_at(c.since, c.since_wall, run_at));
    if config.is_crashing(&c.image) {
        // Crashes right after starting; restarts back off exponentially: attempt k at run_at + p*(2^k - 1).
        let period = config.restart_delay().max(Duration::from_millis(50));
        let elapsed = now.saturating_duration_since(run_at);
        let mut k: u32 = 0;
        while k < 20 && period * (2u32.pow(k + 1) - 1) <= elapsed {
            k += 1;
        }
        let last_start = run_at + period * (2u32.pow(k) - 1);
        let next = run_at + period * (2u32.pow(k + 1) - 1);
        let restarts = c.restarts_after + i32::try_from(k).unwrap_or(i32::MAX);
        let cid = container_id(uid, name, restarts);
        let started = wall_at(c.since, c.since_wall, last_start);
        return Computed {
            status: ContainerStatus {
                container_id: Some(cid.clone()),
                image: c.reported.image.clone(),
                image_id: c.reported.image_id.clone(),
                restart_count: restarts,
                state: Some(waiting(
                    "CrashLoopBackOff",
                    Some(format!("back-off restarting failed container {name}")),
                )),
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        container_id: Some(cid),
                        exit_code: 1,
                        reason: Some("Error".into()),
                        started_at: Some(Time(started)),
                        finished_at: Some(Time(started)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..base
            },
            next: if k < 20 { Some(next) } else { None },
            started: true,
        };
    }
    if config.is_flaky(&c.image) {
        return flaky_container(c, name, uid, now, config, run_at, started_at, base);
    }
    let ready_at = run_at + config.ready_delay();
    let became_ready = c.adopted_started.is_some() || now >= ready_at;
    // An image whose readiness fails after a while: it keeps running, not ready, never restarted.
    let unready_at = config
        .is_unready(&c.image)
        .then(|| run_at + config.unready_after());
    let ready = became_ready && unready_at.is_none_or(|u| now < u);
    Computed {
        status: ContainerStatus {
            container_id: Some(container_id(uid, name, c.restarts_after)),
            image: c.reported.image.clone(),
            image_id: c.reported.image_id.clone(),
            restart_count: c.restarts_after,
            ready,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started_at)),
                }),
                ..Default::default()
            }),
            ..base
        },
        next: if became_ready {
            unready_at.filter(|u| now < *u)
        } else {
            Some(ready_at)
        },
        started: true,
    }
}

/// A container that runs, becomes ready, and exits with an error after `flaky_after` of running; the
/// kubelet restarts it after a back-off that doubles each time (as its CrashLoopBackOff does), and each
/// new container does the same. Run `k` starts at `s_k` (`s_0` is `run_at`), exits at `s_k + after`,
/// and run `k + 1` starts `period * 2^k` later; the restart count is the run's.
#[allow(clippy::too_many_arguments)]
fn flaky_container(
    c: &ContainerSim,
    name: &str,
    uid: &str,
    now: Instant,
    config: &SimConfig,
    run_at: Instant,
    first_started: Timestamp,
    base: ContainerStatus,
) -> Computed {
    let period = config.restart_delay().max(Duration::from_millis(50));
    let after = config.flaky_after();
    let mut k: u32 = 0;
    let mut start = run_at;
    while k < 20 && now >= start + after + period * 2u32.pow(k) {
        start += after + period * 2u32.pow(k);
        k += 1;
    }
    let exits_at = start + after;
    let restarts = c.restarts_after + i32::try_from(k).unwrap_or(i32::MAX);
    let cid = container_id(uid, name, restarts);
    let started = if k == 0 {
        first_started
    } else {
        wall_at(c.since, c.since_wall, start)
    };
    let exited = |restarts: i32, started: Timestamp, at: Instant| ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(container_id(uid, name, restarts)),
            exit_code: 1,
            reason: Some("Error".into()),
            started_at: Some(Time(started)),
            finished_at: Some(Time(wall_at(c.since, c.since_wall, at))),
            ..Default::default()
        }),
        ..Default::default()
    };
    if now >= exits_at {
        return Computed {
            status: ContainerStatus {
                container_id: Some(cid),
                image: c.reported.image.clone(),
                image_id: c.reported.image_id.clone(),
                restart_count: restarts,
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some(format!("back-off restarting failed container {name}")),
                    }),
                    ..Default::default()
                }),
                last_state: Some(exited(restarts, started, exits_at)),
                ..base
            },
            next: (k < 20).then(|| exits_at + period * 2u32.pow(k)),
            started: true,
        };
    }
    let ready_at = start + config.ready_delay();
    let ready = (k == 0 && c.adopted_started.is_some()) || now >= ready_at;
    let last_state = if k == 0 {
        base.last_state.clone()
    } else {
        let prev_start = start - after - period * 2u32.pow(k - 1);
        Some(exited(
            restarts - 1,
            wall_at(c.since, c.since_wall, prev_start),
            prev_start + after,
        ))
    };
    Computed {
        status: ContainerStatus {
            container_id: Some(cid),
            image: c.reported.image.clone(),
            image_id: c.reported.image_id.clone(),
            restart_count: restarts,
            ready,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started)),
                }),
                ..Default::default()
            }),
            last_state,
            ..base
        },
        next: Some(if ready { exits_at } else { ready_at }),
        started: true,
    }
}

/// A container as the simulation first meets it: from the pod's reported status when it already runs this
/// image (the kubelet restarted), else freshly created.
fn adopt_container(
    image: &str,
    reported: Reported,
    existing: Option<&ContainerStatus>,
    now: Instant,
    delay: Duration,
) -> ContainerSim {
    let since_wall = Timestamp::now();
    if let Some(cs) = existing {
        let running = cs.state.as_ref().and_then(|s| s.running.as_ref());
        if cs.image_id == reported.image_id && cs.ready && running.is_some() {
            return ContainerSim {
                image: image.to_string(),
                reported,
                since: now,
                since_wall,
                delay: Duration::ZERO,
                restarts_before: cs.restart_count,
                restarts_after: cs.restart_count,
                previous: None,
                adopted_started: Some(
                    running
                        .and_then(|r| r.started_at.as_ref())
                        .map(|t| t.0)
                        .unwrap_or_else(|| whole_seconds(since_wall)),
                ),
            };
        }
        if cs.container_id.is_some() {
            return ContainerSim {
                image: image.to_string(),
                reported,
                since: now,
                since_wall,
                delay,
                restarts_before: cs.restart_count,
                restarts_after: cs.restart_count + 1,
                previous: cs.container_id.clone().map(|id| Previous {
                    container_id: id,
                    image: cs.image.clone(),
                    reported: Reported {
                        image: cs.image.clone(),
                        image_id: cs.image_id.clone(),
                    },
                    started: None,
                    finished: whole_seconds(since_wall),
                }),
                adopted_started: None,
            };
        }
    }
    ContainerSim {
        image: image.to_string(),
        reported,
        since: now,
        since_wall,
        delay,
        restarts_before: 0,
        restarts_after: 0,
        previous: None,
        adopted_started: None,
    }
}

/// The status the kubelet reports for `pod` at `now`, and when it next changes.
fn desired_status(
    sim: &mut PodSim,
    pod: &Pod,
    uid: &str,
    now: Instant,
    ctx: &Ctx,
) -> (PodStatus, Option<Instant>) {
    let config = &ctx.config;
    let spec = pod.spec.clone().unwrap_or_default();
    let current = pod.status.clone().unwrap_or_default();
    let reported: HashMap<&str, &ContainerStatus> = current
        .container_statuses
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let mut statuses = Vec::new();
    let mut next: Option<Instant> = None;
    let mut all_ready = true;
    let mut any_started = false;
    for container in &spec.containers {
        let image = container.image.clone().unwrap_or_default();
        let entry = sim
            .containers
            .entry(container.name.clone())
            .or_insert_with(|| {
                adopt_container(
                    &image,
                    ctx.pull(&image),
                    reported.get(container.name.as_str()).copied(),
                    now,
                    config.start_delay(),
                )
            });
        if entry.image != image {
            // The image changed on a live pod: restart this container only.
            let old = compute_container(entry, &container.name, uid, now, config);
            let previous = if old.started {
                old.status.container_id.clone().map(|id| Previous {
                    container_id: id,
                    image: entry.image.clone(),
                    reported: Reported {
                        image: old.status.image.clone(),
                        image_id: old.status.image_id.clone(),
                    },
                    started: old
                        .status
                        .state
                        .as_ref()
                        .and_then(|s| s.running.as_ref())
                        .and_then(|r| r.started_at.as_ref())
                        .map(|t| t.0),
                    finished: whole_seconds(Timestamp::now()),
                })
            } else {
                None
            };
            let restarts_before = old.status.restart_count;
            *entry = ContainerSim {
                image: image.clone(),
                reported: ctx.pull(&image),
                since: now,
                since_wall: Timestamp::now(),
                delay: config.restart_delay(),
                restarts_before,
                restarts_after: restarts_before + i32::from(previous.is_some()),
                previous,
                adopted_started: None,
            };
        }
        let computed = compute_container(entry, &container.name, uid, now, config);
        all_ready &= computed.status.ready;
        any_started |= computed.started;
        if let Some(t) = computed.next {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        }
        statuses.push(computed.status);
    }
    let live: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    sim.containers.retain(|k, _| live.contains(&k.as_str()));

    let init_statuses: Option<Vec<ContainerStatus>> = spec.init_containers.as_ref().map(|ics| {
        ics.iter()
            .map(|ic| {
                let image = ic.image.clone().unwrap_or_default();
                let r = ctx.pull(&image);
                ContainerStatus {
                    name: ic.name.clone(),
                    image_id: r.image_id,
                    image: r.image,
                    container_id: Some(container_id(uid, &ic.name, 0)),
                    ready: true,
                    restart_count: 0,
                    started: Some(false),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            container_id: Some(container_id(uid, &ic.name, 0)),
                            exit_code: 0,
                            reason: Some("Completed".into()),
                            started_at: Some(sim.start_time.clone()),
                            finished_at: Some(sim.start_time.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect()
    });

    let existing_conditions = current.conditions.clone().unwrap_or_default();
    let gates_ready = spec.readiness_gates.iter().flatten().all(|g| {
        existing_conditions
            .iter()
            .find(|c| c.type_ == g.condition_type)
            .is_some_and(|c| c.status == "True")
    });
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let previous = existing_conditions.iter().find(|c| c.type_ == type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(super::now_time()),
        };
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: if ok { None } else { reason.map(str::to_string) },
            last_transition_time,
            ..Default::default()
        }
    };
    let conditions = vec![
        condition("Initialized", true, None),
        condition(
            "Ready",
            all_ready && gates_ready,
            Some(if all_ready {
                "ReadinessGatesNotReady"
            } else {
                "ContainersNotReady"
            }),
        ),
        condition("ContainersReady", all_ready, Some("ContainersNotReady")),
        condition("PodScheduled", true, None),
    ];
    let status = PodStatus {
        phase: Some(if any_started { "Running" } else { "Pending" }.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: init_statuses,
        host_ip: Some(HOST_IP.into()),
        pod_ip: Some(sim.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: sim.pod_ip.clone(),
        }]),
        start_time: Some(sim.start_time.clone()),
        ..Default::default()
    };
    (status, next)
}

/// Whether writing `desired` would change what the pod reports (only the fields the kubelet owns).
fn status_differs(current: Option<&PodStatus>, desired: &PodStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let mine: Vec<&str> = desired
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    let project = |conds: &Option<Vec<PodCondition>>| {
        let mut v: Vec<(String, String, Option<String>)> = conds
            .iter()
            .flatten()
            .filter(|c| mine.contains(&c.type_.as_str()))
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        v.sort();
        v
    };
    current.phase != desired.phase
        || current.host_ip != desired.host_ip
        || current.pod_ip != desired.pod_ip
        || current.start_time != desired.start_time
        || current.container_statuses != desired.container_statuses
        || current.init_container_statuses != desired.init_container_statuses
        || project(&current.conditions) != project(&desired.conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(image: &str, now: Instant, delay: Duration) -> ContainerSim {
        let reported = ImageStore::default().pull(image, &Default::default());
        adopt_container(image, reported, None, now, delay)
    }

    #[test]
    fn a_container_runs_after_the_start_delay_and_is_ready_after_the_ready_delay() {
        let cfg = SimConfig::fast();
        let t0 = Instant::now();
        let c = fresh("img:v1", t0, cfg.start_delay());
        let before = compute_container(&c, "c", "uid", t0, &cfg);
        assert!(before.status.state.and_then(|s| s.waiting).is_some());
        let running = compute_container(&c, "c", "uid", t0 + cfg.start_delay(), &cfg);
        assert!(running.status.state.and_then(|s| s.running).is_some());
        assert!(!running.status.ready);
        let ready = compute_container(
            &c,
            "c",
            "uid",
            t0 + cfg.start_delay() + cfg.ready_delay(),
            &cfg,
        );
        assert!(ready.status.ready);
        assert_eq!(ready.status.restart_count, 0);
        assert_eq!(ready.status.image, "docker.io/library/img:v1");
        assert!(ready
            .status
            .image_id
            .starts_with("docker.io/library/img@sha256:"));
        assert!(ready.next.is_none());
    }

    #[test]
    fn missing_images_back_off_and_crashing_images_loop() {
        let cfg = SimConfig::fast();
        let t0 = Instant::now();
        let c = fresh("img:missing", t0, cfg.start_delay());
        let late = compute_container(&c, "c", "uid", t0 + Duration::from_secs(5), &cfg);
        let reason = late
            .status
            .state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason);
        assert_eq!(reason.as_deref(), Some("ImagePullBackOff"));
        let c = fresh("img:crash", t0, cfg.start_delay());
        let a = compute_container(&c, "c", "uid", t0 + Duration::from_millis(100), &cfg);
        let b = compute_container(&c, "c", "uid", t0 + Duration::from_secs(3), &cfg);
        assert!(b.status.restart_count > a.status.restart_count);
        assert!(!b.status.ready);
    }

    #[test]
    fn an_unready_container_is_ready_then_not_ready_and_keeps_running_unrestarted() {
        let cfg = SimConfig {
            unready_after_ms: 1000,
            ..SimConfig::fast()
        };
        let t0 = Instant::now();
        let c = fresh("img:unready", t0, cfg.start_delay());
        let run_at = t0 + cfg.start_delay();
        let at =
            |ms: u64| compute_container(&c, "c", "uid", run_at + Duration::from_millis(ms), &cfg);
        let ready = at(500);
        assert!(ready.status.ready);
        assert_eq!(ready.next, Some(run_at + Duration::from_millis(1000)));
        let unready = at(1010);
        assert!(!unready.status.ready);
        assert_eq!(unready.status.restart_count, 0);
        assert_eq!(unready.status.container_id, ready.status.container_id);
        assert!(unready
            .status
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some()));
        assert_eq!(unready.next, None);
        assert!(!at(60_000).status.ready);
    }

    #[test]
    fn a_flaky_container_is_ready_then_exits_and_is_restarted_after_a_back_off() {
        let cfg = SimConfig {
            flaky_after_ms: 1000,
            ..SimConfig::fast()
        };
        let t0 = Instant::now();
        let c = fresh("img:flaky", t0, cfg.start_delay());
        let run_at = t0 + cfg.start_delay();
        let at =
            |ms: u64| compute_container(&c, "c", "uid", run_at + Duration::from_millis(ms), &cfg);
        let ready = at(500);
        assert!(ready.status.ready);
        assert_eq!(ready.status.restart_count, 0);
        assert_eq!(ready.next, Some(run_at + Duration::from_millis(1000)));
        let exited = at(1010);
        assert!(!exited.status.ready);
        let reason = exited
            .status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        assert_eq!(reason.as_deref(), Some("CrashLoopBackOff"));
        let last = exited
            .status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        assert_eq!(last, Some(1));
        // Back-off of 50 ms (the restart delay, at least 50 ms), then the next run.
        let again = at(1100);
        assert!(again.status.ready, "{:?}", again.status);
        assert_eq!(again.status.restart_count, 1);
        assert_ne!(again.status.container_id, ready.status.container_id);
        // The second exit backs off twice as long.
        assert!(!at(2060).status.ready);
        assert!(!at(2140).status.ready);
        assert_eq!(at(2200).status.restart_count, 2);
    }
}
