//! The read-only HTTP endpoint (`shared/spec/edged.md` §9): `/pods` answers a `v1.PodList` of the
//! pods edged runs, each with its last computed status; `/healthz` answers `ok`. A small
//! hand-rolled HTTP/1.1 responder (one request per connection), like `ke-metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1 as k8s;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let pods = pods.clone();
                        tokio::spawn(async move {
                            if let Err(e) = answer(stream, &pods).await {
                                tracing::debug!(error = %e, "read-only endpoint request failed");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "read-only endpoint accept failed"),
                },
            }
        }
    });
    Ok(local)
}

async fn answer(mut stream: TcpStream, pods: &PodTable) -> std::io::Result<()> {
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
    let path = line.split_whitespace().nth(1).unwrap_or("");
    // v1.2 answers /pods for any method.
    let (status, ctype, body) = match path.split('?').next().unwrap_or("") {
        "/pods" | "/pods/" => ("200 OK", "application/json", pods.pod_list()),
        "/healthz" => ("200 OK", "text/plain", "ok".to_owned()),
        _ => ("404 Not Found", "text/plain", "404 page not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
