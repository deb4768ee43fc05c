//! Drift: pods whose images differ from Git outside a rollout (someone ran `kubectl set image`, or a
//! GameServer overrides an image). Reported in logs, metrics and Events; with `--self-heal` a sync
//! is triggered, which reverts the pods as a hot update.

use super::http::Shared;
use crate::manifest::SetKey;
use crate::model::{GameServerSet, LABEL_OWNER_GSS};
use crate::rollout::ANNOTATION_HOLD;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What Git wants of each set: container images, and whether drift is judged for it at all.
pub type Desired = Arc<Mutex<BTreeMap<SetKey, Vec<(String, String)>>>>;

/// Watches pods and reports drift until the task is aborted.
pub async fn run(
    client: Client,
    desired: Desired,
    shared: Arc<Shared>,
    recorder: Recorder,
    busy: Arc<AtomicBool>,
    force: Arc<AtomicBool>,
    self_heal: bool,
) {
    let pods: Api<Pod> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    // Small pages: each page of the initial list is held whole (every pod with its managedFields)
    // until the store has taken it, and that transient, not the store, set the daemon's peak heap
    // (17 MB of 32 MB for 2,000 pods with the default 500).
    let cfg = watcher::Config::default()
        .labels(LABEL_OWNER_GSS)
        .page_size(50);
    let mut stream = std::pin::pin!(reflector::reflector(
        writer,
        watcher(pods, cfg)
            .backoff(crate::live::WatchBackoff::default())
            .modify(slim)
    ));
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        // Debounce: look at the cluster at most twice a second.
        let deadline = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = stream.next() => if ev.is_none() { return; },
                _ = &mut deadline => break,
            }
        }
        if busy.load(Ordering::SeqCst) {
            continue;
        }
        let want = desired.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut drifted: BTreeMap<String, (SetKey, String)> = BTreeMap::new();
        for pod in store.state() {
            let Some(set) = pod.labels().get(LABEL_OWNER_GSS) else {
                continue;
            };
            let key = SetKey {
                namespace: pod.namespace().unwrap_or_default(),
                name: set.clone(),
            };
            let Some(images) = want.get(&key) else {
                continue;
            };
            for (c, img) in images {
                if let Some(actual) = crate::live::spec_image(&pod, c) {
                    if actual != img && pod.metadata.deletion_timestamp.is_none() {
                        drifted.insert(
                            format!("{}/{}", key.namespace, pod.name_any()),
                            (
                                key.clone(),
                                format!("container {c} runs {actual}, Git says {img}"),
                            ),
                        );
                    }
                }
            }
        }
        shared.metrics.drifted_pods.set(drifted.len() as i64);
        let new: Vec<_> = drifted
            .iter()
            .filter(|(p, _)| !reported.contains(*p))
            .collect();
        if !new.is_empty() {
            for (pod, (key, what)) in &new {
                if held(&client, key).await {
                    continue;
                }
                shared.metrics.drift_detected.inc();
                tracing::warn!(pod = %pod, set = %key, drift = %what, self_heal, "drift from Git");
                let gss: Api<GameServerSet> = Api::namespaced(client.clone(), &key.namespace);
                if let Ok(g) = gss.get(&key.name).await {
                    let ev = Event {
                        type_: EventType::Warning,
                        reason: "Drift".into(),
                        note: Some(format!(
                            "pod {pod}: {what}{}",
                            if self_heal { "; healing" } else { "" }
                        )),
                        action: "DetectDrift".into(),
                        secondary: None,
                    };
                    let _ = recorder.publish(&ev, &g.object_ref(&())).await;
                }
            }
            if self_heal {
                force.store(true, Ordering::SeqCst);
                shared.trigger.notify_one();
            }
        }
        reported = drifted.into_keys().collect();
    }
}

/// Keeps of a pod only what drift is judged on (its name, namespace, labels, deletion mark, and each
/// container's name and image): the store holds every pod of every set, and whole Pod objects cost
/// about 25 KB each in memory (49 MB for 2,000 pods, half of it managedFields); slimmed, about 7.5 KB.
fn slim(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    pod.status = None;
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    image: c.image,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
}

/// A set held by hotsync is mid-rollout: its pods differ from Git on purpose.
async fn held(client: &Client, key: &SetKey) -> bool {
    let gss: Api<GameServerSet> = Api::namespaced(client.clone(), &key.namespace);
    gss.get_opt(&key.name)
        .await
        .ok()
        .flatten()
        .is_some_and(|g| g.annotations().contains_key(ANNOTATION_HOLD))
}
