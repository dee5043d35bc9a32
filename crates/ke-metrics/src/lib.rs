//! Prometheus `/metrics` endpoint shared by the daemons.
//!
//! Each daemon builds one [`prometheus_client::registry::Registry`], lets its components register
//! their metrics, and calls [`serve`]. The endpoint is a deliberately tiny HTTP/1.1 responder
//! (`GET /metrics`, `GET /healthz`, anything else 404, one request per connection): pulling in a web
//! framework for one text page would cost more memory than all our metrics.
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// Binds `addr` and serves until `cancel` fires. Returns the bound address.
pub async fn serve(
    addr: &str,
    registry: SharedRegistry,
    cancel: CancellationToken,
) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let registry = registry.clone();
                        tokio::spawn(async move {
                            if let Err(e) = answer(stream, &registry).await {
                                tracing::debug!(error = %e, "metrics request failed");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics accept failed"),
                },
            }
        }
    });
    Ok(local)
}

async fn answer(mut stream: TcpStream, registry: &SharedRegistry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request header timeout"))??;
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(registry),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

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
