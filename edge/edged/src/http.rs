//! The read-only HTTP endpoint (`shared/spec/edged.md` §9): `/pods` answers a `v1.PodList` of the
//! pods edged runs, each with its last computed status; `/healthz` answers `ok`. A small
//! HTTP/1.1 responder shared with `/metrics` (`ke_metrics::http`, one request per connection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1 as k8s;
use ke_metrics::http::Response;
use tokio_util::sync::CancellationToken;

/// The pods edged runs, by `namespace/name`, with their last status.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodTable(Arc<Mutex<BTreeMap<String, k8s::Pod>>>);

impl PodTable {
    /// Records `pod` (spec as received) with `status`.
    pub(crate) fn set(&self, key: &str, pod: &k8s::Pod, status: &k8s::PodStatus) {
        let mut p = pod.clone();
        p.status = Some(status.clone());
        if let Ok(mut t) = self.0.lock() {
            t.insert(key.to_owned(), p);
        }
    }

    /// Forgets `key` if it still is the pod `uid`.
    pub(crate) fn remove(&self, key: &str, uid: &str) {
        if let Ok(mut t) = self.0.lock()
            && t.get(key).and_then(|p| p.metadata.uid.as_deref()) == Some(uid)
        {
            t.remove(key);
        }
    }

    /// The `v1.PodList` JSON (`metadata` + `items`, no `kind`/`apiVersion`, as v1.2).
    pub(crate) fn pod_list(&self) -> String {
        let items: Vec<k8s::Pod> = self
            .0
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        serde_json::json!({ "metadata": {}, "items": items }).to_string()
    }
}

/// Binds `addr` and serves until `cancel` fires; returns the bound address.
pub(crate) async fn serve(
    addr: &str,
    pods: PodTable,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    // v1.2 answers /pods for any method.
    ke_metrics::http::serve(addr, cancel, move |req| match req.path.as_str() {
        "/pods" | "/pods/" => Response::ok("application/json", pods.pod_list()),
        "/healthz" => Response::ok("text/plain", "ok"),
        _ => Response::not_found("404 page not found\n"),
    })
    .await
}
