//! The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/metrics` and `/webhook`.
//!
//! The webhook takes GitHub `push` events signed with `X-Hub-Signature-256` (HMAC-SHA256 of the body
//! with the shared secret) or any request carrying `Authorization: Bearer <secret>`; both are compared
//! in constant time. A delivery id seen before is ignored, so a replayed delivery triggers nothing.

use super::metrics::{Metrics, ResultLabel};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use prometheus_client::registry::Registry;
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq as _;

/// What the endpoints share with the daemon.
pub struct Shared {
    pub metrics: Metrics,
    pub registry: Registry,
    /// Ready once the first sync finished (or the cluster and the repository were reachable).
    pub ready: AtomicBool,
    /// The sync loop's triggers; several while it runs coalesce into one follow-up.
    pub triggers: super::trigger::Sender,
    pub webhook_secret: Option<String>,
    /// The tracked branch: pushes to other branches are ignored.
    pub branch: String,
    seen: Mutex<VecDeque<String>>,
}

impl Shared {
    pub fn new(
        metrics: Metrics,
        registry: Registry,
        triggers: super::trigger::Sender,
        webhook_secret: Option<String>,
        branch: String,
    ) -> Shared {
        Shared {
            metrics,
            registry,
            ready: AtomicBool::new(false),
            triggers,
            webhook_secret,
            branch,
            seen: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers a delivery id; false when it was seen before.
    fn first_delivery(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.iter().any(|s| s == id) {
            return false;
        }
        if seen.len() >= 1024 {
            seen.pop_front();
        }
        seen.push_back(id.to_string());
        true
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhook", post(webhook))
        .with_state(shared)
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first sync has not finished\n",
        )
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &s.registry).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        );
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Checks `sha256=<hex>` against the HMAC of the body, in constant time.
pub fn signature_ok(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn bearer_ok(secret: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| bool::from(token.as_bytes().ct_eq(secret.as_bytes())))
}

async fn webhook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let count = |result: &'static str| {
        s.metrics
            .webhook_requests
            .get_or_create(&ResultLabel { result })
            .inc()
    };
    let Some(secret) = s.webhook_secret.as_deref() else {
        count("disabled");
        return (
            StatusCode::NOT_FOUND,
            "the webhook is off: start hotsync run with --webhook-secret-file\n",
        );
    };
    let signed = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| signature_ok(secret, &body, sig));
    if !signed && !bearer_ok(secret, &headers) {
        count("unauthorized");
        return (StatusCode::UNAUTHORIZED, "bad signature or token\n");
    }
    if let Some(id) = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
    {
        if !s.first_delivery(id) {
            count("replayed");
            return (StatusCode::OK, "delivery seen before: ignored\n");
        }
    }
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push");
    match event {
        "ping" => {
            count("ping");
            (StatusCode::OK, "pong\n")
        }
        "push" => {
            let pushed = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
            let ours = format!("refs/heads/{}", s.branch);
            match pushed {
                Some(r) if r != ours => {
                    count("other_branch");
                    (StatusCode::ACCEPTED, "push to another branch: ignored\n")
                }
                _ => {
                    count("triggered");
                    let _ = s.triggers.send(super::trigger::Trigger::Webhook);
                    (StatusCode::ACCEPTED, "sync triggered\n")
                }
            }
        }
        _ => {
            count("ignored");
            (StatusCode::ACCEPTED, "event ignored\n")
        }
    }
}
