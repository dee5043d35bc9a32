//! A deliberately tiny HTTP/1.1 responder for the daemons' local read-only endpoints (`/metrics`,
//! edged's `/pods` and `/healthz`): one request per connection, the request head read with a size
//! bound and a 5 s timeout, the response computed by a plain function of the request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// What a handler sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query string.
    pub path: String,
}

/// A response: status line text (`"200 OK"`), content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code and reason, e.g. `"404 Not Found"`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Response {
    /// `200 OK` with the given type and body.
    pub fn ok(content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status: "200 OK",
            content_type,
            body: body.into(),
        }
    }

    /// `404 Not Found`.
    pub fn not_found(body: impl Into<String>) -> Self {
        Self {
            status: "404 Not Found",
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Binds `addr` and answers every connection with `handler` until `cancel` fires. Returns the bound
/// address.
pub async fn serve<H>(addr: &str, cancel: CancellationToken, handler: H) -> std::io::Result<SocketAddr>
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            if let Err(e) = answer(stream, &*handler).await {
                                tracing::debug!(error = %e, %local, "HTTP request failed");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, %local, "HTTP accept failed"),
                },
            }
        }
    });
    Ok(local)
}

async fn answer<H>(mut stream: TcpStream, handler: &H) -> std::io::Result<()>
where
    H: Fn(&Request) -> Response,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request header timeout"))??;
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    let r = handler(&Request { method, path });
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(r.body.as_bytes()).await?;
    stream.shutdown().await
}
