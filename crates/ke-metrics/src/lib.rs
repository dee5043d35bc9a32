//! Prometheus `/metrics` endpoint shared by the daemons.
//!
//! Each daemon builds one [`prometheus_client::registry::Registry`], lets its components register
//! their metrics, and calls [`serve`]. The endpoint is a deliberately tiny HTTP/1.1 responder
//! (`GET /metrics`, `GET /healthz`, anything else 404, one request per connection; see [`http`],
//! which edged's read-only endpoint uses too): pulling in a web framework for one text page would
//! cost more memory than all our metrics.
//!
//! [`daemon`] holds what the daemons' `main`s share: log set-up, the runtime, the shutdown signal
//! and exit codes.
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub mod daemon;
pub mod http;

use http::Response;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not bind the listen address.
    #[error(
        "cannot listen for /metrics on {addr}: {source} (set metricsAddress to a free port, or \"\" to disable)"
    )]
    Bind {
        /// Address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Shared registry type.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &SharedRegistry) -> String {
    let mut out = String::new();
    if let Ok(r) = registry.lock() {
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    }
    out
}

/// Binds `addr` and serves `/metrics` and `/healthz` until `cancel` fires. Returns the bound address.
pub async fn serve(
    addr: &str,
    registry: SharedRegistry,
    cancel: CancellationToken,
) -> Result<SocketAddr, Error> {
    http::serve(addr, cancel, move |req| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/metrics") => Response::ok(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(&registry),
            ),
            ("GET", "/healthz") => Response::ok("text/plain", "ok"),
            _ => Response::not_found("not found\n"),
        }
    })
    .await
    .map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn serves_metrics_and_404() {
        let mut reg = Registry::default();
        let c: Counter = Counter::default();
        reg.register("ke_test_things", "Things", c.clone());
        c.inc_by(3);
        let reg = Arc::new(Mutex::new(reg));
        let cancel = CancellationToken::new();
        let addr = serve("127.0.0.1:0", reg, cancel.clone())
            .await
            .map_err(|e| e.to_string());
        let addr = addr.unwrap_or_else(|e| panic!("{e}"));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out)
        };
        let body = get("/metrics").await.unwrap_or_default();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("ke_test_things_total 3"), "{body}");
        assert!(get("/nope").await.unwrap_or_default().starts_with("HTTP/1.1 404"));
        cancel.cancel();
    }
}
