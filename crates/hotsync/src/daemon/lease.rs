//! Leader election on a `coordination.k8s.io/v1` Lease: only the replica holding it applies or writes.
//!
//! The holder renews the lease every third of its duration; another replica takes it over once it has
//! not been renewed for a whole duration. Every write is guarded by the lease's resourceVersion, so two
//! replicas never both believe they lead. On shutdown the leader gives the lease up at once, so that the
//! next replica takes over without waiting for it to expire.

use crate::live::ClusterError;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;

/// Which lease, and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(spec: &LeaseSpec) -> bool {
    let Some(renew) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    (Timestamp::now() - renew.0).get_seconds() >= secs
}

/// One attempt to acquire or renew; returns whether we lead afterwards.
async fn try_lead(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, ClusterError> {
    let obj = format!("lease {}/{}", cfg.namespace, cfg.name);
    let ours = |transitions: i32, acquire: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: acquire.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| ClusterError::api("get", obj.clone(), e))?
    {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(ours(0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(ClusterError::api("create", obj, e)),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let transitions = spec.lease_transitions.unwrap_or(0);
            if holder == cfg.identity {
                lease.spec = Some(ours(transitions, spec.acquire_time.clone()));
            } else if holder.is_empty() || expired(&spec) {
                lease.spec = Some(ours(transitions + 1, None));
            } else {
                return Ok(false);
            }
            // `replace` carries the resourceVersion we read: a concurrent change gives 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                Err(e) => Err(ClusterError::api("update", obj, e)),
            }
        }
    }
}

/// Gives the lease up if we hold it.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            lease.spec = Some(spec);
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
    }
}

/// Runs the election until `shutdown` turns true, publishing whether we lead on `leading`.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        match try_lead(&api, &cfg).await {
            Ok(lead) => {
                last_ok = tokio::time::Instant::now();
                leading.send_if_modified(|l| std::mem::replace(l, lead) != lead);
            }
            Err(e) => {
                tracing::warn!(category = e.category(), error = %crate::sync::error_chain(&e), "lease renewal failed");
                // Unable to renew for a whole lease: another replica may take over, so stop writing.
                if last_ok.elapsed() >= cfg.duration {
                    leading.send_if_modified(|l| std::mem::replace(l, false));
                }
            }
        }
        // A closed channel (the daemon is going away) stops the election as a stop does; otherwise
        // `changed()` would return at once, every time, and this loop would spin.
        let closed = tokio::select! {
            _ = tokio::time::sleep(cfg.renew_every()) => false,
            r = shutdown.changed() => r.is_err(),
        };
        if closed || *shutdown.borrow() {
            leading.send_if_modified(|l| std::mem::replace(l, false));
            release(&api, &cfg).await;
            return Ok(());
        }
    }
}
