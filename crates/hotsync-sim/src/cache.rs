//! What controller-runtime's cache gives OKG's controllers: objects read from an informer's store, kept
//! current by one watch per kind, instead of a GET or LIST to the API server at every reconcile.
//!
//! OKG's manager reads through its cached client (`r.Get`, `r.List` in kruise-game's
//! `gameserver_controller.go` and `gameserverset_controller.go`): a read sees what the watch has
//! delivered so far, which may lag the API server, and costs the API server nothing. As an informer
//! calls its event handlers after its indexer has the object, a stream from [`informer`] yields an
//! object only after its store holds it, so a reconcile it triggers reads that object or a newer one.

use futures::{Stream, StreamExt as _};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;

/// A store and the watch that fills it; the stream yields each object the watch applied, after the
/// store has it, and must be polled for the store to stay current.
pub(crate) fn informer<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .backoff(hotsync_model::WatchBackoff::default())
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

/// Drives the watch of a store that triggers nothing (a kind a controller only reads). Ends only when
/// the watch does, which it does not on its own.
pub(crate) async fn drive<K>(stream: impl Stream<Item = Result<K, watcher::Error>>) {
    stream
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "informer watch");
            }
        })
        .await;
}

/// The object of that name in the store (`r.Get` from the cache), namespaced or not.
pub(crate) fn get<K>(store: &Store<K>, ns: Option<&str>, name: &str) -> Option<std::sync::Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let r = ObjectRef::<K>::new(name);
    store.get(&match ns {
        Some(ns) => r.within(ns),
        None => r,
    })
}

/// Waits until every store has had its first full list, as a manager waits for its caches to sync
/// before it starts its controllers.
pub(crate) async fn synced<K>(store: &Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let _ = store.wait_until_ready().await;
}
