//! Garbage collection by owner reference, for a cluster without a controller-manager (the simulated node):
//! when an owner goes, its dependents go, as Kubernetes' garbage collector does in the background.
//!
//! Event-driven on the owners this test bed has (a GameServerSet's Advanced StatefulSet; an Advanced
//! StatefulSet's pods and revisions; a pod's GameServer and Service), with a sweep every 30 s for what a
//! watch restart may have missed. With a real node the controller-manager's garbage collector does this
//! instead, and this task does not run.

use crate::names::OKG_OWNER_GSS;
use crate::{shutdown_signal, SimError};
use futures::StreamExt as _;
use hotsync_model::{AdvancedStatefulSet, GameServer, GameServerSet};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Resource, ResourceExt as _};
use std::fmt::Debug;
use std::time::Duration;
use tokio::sync::watch;

fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// Deletes every object of `api` selected by `lp` (or named `name`) that `uid` owns.
async fn delete_owned<K>(api: &Api<K>, lp: Option<&ListParams>, name: Option<&str>, uid: &str)
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned,
{
    let candidates: Vec<K> = match (lp, name) {
        (Some(lp), _) => api.list(lp).await.map(|l| l.items).unwrap_or_default(),
        (None, Some(n)) => api.get_opt(n).await.ok().flatten().into_iter().collect(),
        _ => Vec::new(),
    };
    for obj in candidates {
        if owned_by(obj.meta(), uid) {
            let _ = api
                .delete(&obj.name_any(), &DeleteParams::background())
                .await;
        }
    }
}

/// Runs the collector until shutdown.
pub(crate) async fn run(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let c = client.clone();
    let gss = watcher(
        Api::<GameServerSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(hotsync_model::WatchBackoff::default())
    .for_each(move |ev| {
        let c = c.clone();
        async move {
            if let Ok(watcher::Event::Delete(g)) = ev {
                let (Some(ns), Some(uid)) = (g.namespace(), g.uid()) else {
                    return;
                };
                let api: Api<AdvancedStatefulSet> = Api::namespaced(c, &ns);
                delete_owned(&api, None, Some(&g.name_any()), &uid).await;
            }
        }
    });
    let c = client.clone();
    let asts = watcher(
        Api::<AdvancedStatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(hotsync_model::WatchBackoff::default())
    .for_each(move |ev| {
        let c = c.clone();
        async move {
            if let Ok(watcher::Event::Delete(a)) = ev {
                let (Some(ns), Some(uid)) = (a.namespace(), a.uid()) else {
                    return;
                };
                let lp = ListParams::default().labels(&format!("{OKG_OWNER_GSS}={}", a.name_any()));
                delete_owned(
                    &Api::<Pod>::namespaced(c.clone(), &ns),
                    Some(&lp),
                    None,
                    &uid,
                )
                .await;
                delete_owned(
                    &Api::<ControllerRevision>::namespaced(c, &ns),
                    Some(&lp),
                    None,
                    &uid,
                )
                .await;
            }
        }
    });
    let c = client.clone();
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(OKG_OWNER_GSS),
    )
    .backoff(hotsync_model::WatchBackoff::default())
    .for_each(move |ev| {
        let c = c.clone();
        async move {
            if let Ok(watcher::Event::Delete(p)) = ev {
                let (Some(ns), Some(uid)) = (p.namespace(), p.uid()) else {
                    return;
                };
                let name = p.name_any();
                delete_owned(
                    &Api::<GameServer>::namespaced(c.clone(), &ns),
                    None,
                    Some(&name),
                    &uid,
                )
                .await;
                delete_owned(&Api::<Service>::namespaced(c, &ns), None, Some(&name), &uid).await;
            }
        }
    });
    let sweep = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            sweep_game_servers(&client).await;
        }
    };
    tokio::select! {
        () = shutdown_signal(shutdown.clone()) => {}
        () = gss => {}
        () = asts => {}
        () = pods => {}
        () = sweep => {}
    }
    if *shutdown.borrow() {
        Ok(())
    } else {
        Err(SimError::Ended { task: "gc" })
    }
}

/// GameServers whose pod is gone.
async fn sweep_game_servers(client: &kube::Client) {
    let Ok(all) = Api::<GameServer>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    for gs in all.items {
        let Some(ns) = gs.namespace() else { continue };
        let Some(owner) = gs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Pod")
            .cloned()
        else {
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let alive = pods
            .get_opt(&owner.name)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.uid().as_deref() == Some(owner.uid.as_str()));
        if !alive {
            let _ = Api::<GameServer>::namespaced(client.clone(), &ns)
                .delete(&gs.name_any(), &DeleteParams::background())
                .await;
        }
    }
}
