//! Drift: pods whose images differ from Git outside a rollout (someone ran `kubectl set image`, or a
//! GameServer overrides an image). Reported in logs, metrics and Events; with `--self-heal` each drifted
//! set is sent to the sync loop ([`Trigger::Drift`]), which reverts its pods as a hot update.
//!
//! Driven by events, not a timer: a watch of the sets' pods (slimmed to names and images) marks the pods
//! that changed, and only those are judged, at most twice a second; every pod is judged again when what
//! Git wants changed (after each sync). With nothing happening, nothing is looked at.

use super::http::Shared;
use super::trigger::{Sender, Trigger};
use crate::manifest::SetKey;
use crate::model::{GameServerSet, LABEL_OWNER_GSS};
use crate::rollout::ANNOTATION_HOLD;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What Git wants of each set: container images, and whether drift is judged for it at all.
pub type Desired = Arc<Mutex<BTreeMap<SetKey, Vec<(String, String)>>>>;

/// The sets whose pods differ from Git now: never in step, so that the next sync of a commit syncs them
/// (with or without `--self-heal`).
pub type Drifted = Arc<Mutex<BTreeSet<SetKey>>>;

/// How long pod events are gathered before they are judged.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The drift task's inputs.
pub struct Drift {
    pub client: Client,
    pub desired: Desired,
    /// Changes when `desired` does.
    pub changed: watch::Receiver<u64>,
    pub shared: Arc<Shared>,
    pub recorder: Recorder,
    /// True while a sync runs: its pods differ from Git on purpose.
    pub busy: Arc<AtomicBool>,
    pub triggers: Sender,
    pub self_heal: bool,
    /// Written after each round: the sets with drifted pods.
    pub drifted_sets: Drifted,
}

/// The pods to judge next.
#[derive(Default)]
struct Dirty {
    all: bool,
    pods: HashSet<ObjectRef<Pod>>,
}

impl Dirty {
    fn mark(&mut self, ev: &watcher::Event<Pod>) {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::Delete(p) | watcher::Event::InitApply(p) => {
                self.pods.insert(ObjectRef::from_obj(p));
            }
            watcher::Event::Init | watcher::Event::InitDone => self.all = true,
        }
    }
}

impl Drift {
    /// Watches pods and reports drift; returns only when the watch ends.
    pub async fn run(mut self) {
        let pods: Api<Pod> = Api::all(self.client.clone());
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
        let mut dirty = Dirty::default();
        // The drift last seen, by pod: new entries are reported once.
        let mut drifted: HashMap<ObjectRef<Pod>, (SetKey, String)> = HashMap::new();
        loop {
            // Wait for something to happen.
            tokio::select! {
                ev = stream.next() => match ev {
                    None => return,
                    Some(Ok(e)) => dirty.mark(&e),
                    Some(Err(_)) => continue,
                },
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    dirty.all = true;
                }
            }
            // Gather what follows closely, then judge.
            let deadline = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        None => return,
                        Some(Ok(e)) => dirty.mark(&e),
                        Some(Err(_)) => {}
                    },
                    _ = &mut deadline => break,
                }
            }
            if self.busy.load(Ordering::SeqCst) {
                // The sync's end changes what Git wants, which marks every pod again.
                continue;
            }
            let judged = std::mem::take(&mut dirty);
            let want = self
                .desired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let before: HashSet<ObjectRef<Pod>> = drifted.keys().cloned().collect();
            let pods: Vec<Arc<Pod>> = if judged.all {
                drifted.clear();
                store.state()
            } else {
                for r in &judged.pods {
                    drifted.remove(r);
                }
                judged.pods.iter().filter_map(|r| store.get(r)).collect()
            };
            let mut new = Vec::new();
            for pod in pods {
                if let Some((key, what)) = drift_of(&pod, &want) {
                    let r = ObjectRef::from_obj(pod.as_ref());
                    if !before.contains(&r) {
                        new.push((
                            format!("{}/{}", key.namespace, pod.name_any()),
                            key.clone(),
                            what.clone(),
                        ));
                    }
                    drifted.insert(r, (key, what));
                }
            }
            self.shared.metrics.drifted_pods.set(drifted.len() as i64);
            *self.drifted_sets.lock().unwrap_or_else(|e| e.into_inner()) =
                drifted.values().map(|(k, _)| k.clone()).collect();
            self.report(new).await;
        }
    }

    /// Reports each newly drifted pod (not while its set is held mid-rollout) and, with self-heal,
    /// sends its set to the sync loop.
    async fn report(&self, new: Vec<(String, SetKey, String)>) {
        let mut heal = BTreeSet::new();
        for (pod, key, what) in new {
            if held(&self.client, &key).await {
                continue;
            }
            self.shared.metrics.drift_detected.inc();
            tracing::warn!(pod = %pod, set = %key, drift = %what, self_heal = self.self_heal, "drift from Git");
            let gss: Api<GameServerSet> = Api::namespaced(self.client.clone(), &key.namespace);
            if let Ok(g) = gss.get(&key.name).await {
                let ev = Event {
                    type_: EventType::Warning,
                    reason: "Drift".into(),
                    note: Some(format!(
                        "pod {pod}: {what}{}",
                        if self.self_heal { "; healing" } else { "" }
                    )),
                    action: "DetectDrift".into(),
                    secondary: None,
                };
                let _ = self.recorder.publish(&ev, &g.object_ref(&())).await;
            }
            heal.insert(key);
        }
        if self.self_heal {
            for key in heal {
                let _ = self.triggers.send(Trigger::Drift(key));
            }
        }
    }
}

/// How a pod differs from what Git wants of its set, if it does.
fn drift_of(pod: &Pod, want: &BTreeMap<SetKey, Vec<(String, String)>>) -> Option<(SetKey, String)> {
    let set = pod.labels().get(LABEL_OWNER_GSS)?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let key = SetKey {
        namespace: pod.namespace().unwrap_or_default(),
        name: set.clone(),
    };
    let images = want.get(&key)?;
    for (c, img) in images {
        if let Some(actual) = crate::live::spec_image(pod, c) {
            if actual != img {
                return Some((key, format!("container {c} runs {actual}, Git says {img}")));
            }
        }
    }
    None
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
