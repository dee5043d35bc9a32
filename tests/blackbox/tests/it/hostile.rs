//! Hostile peers (reliability suite): every bad input is refused, the daemon stays up, and the
//! well-behaved peers next to it notice nothing.
//!
//! * cloudcore's WebSocket port: garbage and truncated frames, oversized frames and messages,
//!   protocol violations, and handshakes that never finish (slowloris on the TLS ClientHello and on
//!   the HTTP upgrade, an idle socket) — while a real edgecore stays connected and keeps receiving.
//! * edgecore's embedded MQTT broker: garbage bytes, oversized and malformed packets, a twin update
//!   that is not JSON, and 1,000 clients at once — while a good client keeps working, and the
//!   broker gives its sockets back afterwards.
//! * bad local input: truncated YAML configs and truncated certificate/key files make both daemons
//!   exit at once with an error naming the file, never a panic.
//!
//! The bad peers here are written by hand (raw TCP, TLS and WebSocket/MQTT bytes), as an attacker
//! or a broken device would send them.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ke_core::Message;
use ke_core::names::{header, res};
use ke_testkit::{Daemon, bin, eventually, free_tcp_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::cluster::{Cloud, Cluster, Edge, metric, metric_series, wait_metric};

/// The time a refused peer may take to be dropped once its bad input is in.
const DROP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// cloudcore: raw TLS + WebSocket peers
// ---------------------------------------------------------------------------------------------

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// The name cloudcore's certificate is valid for (`keadm certgen server --san 127.0.0.1`).
fn cloud_name() -> ServerName<'static> {
    ServerName::try_from("127.0.0.1").unwrap()
}

/// TCP + TLS to `addr` presenting `tls`'s client certificate.
async fn tls_to(addr: &str, tls: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio::time::timeout(DROP, TlsConnector::from(tls).connect(cloud_name(), tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake")
}

/// The upgrade request a v1.2 edgecore sends (spec'd headers `node_id`, `project_id`,
/// `ConnectionUse: msg`).
fn upgrade_request(addr: &str, node: &str) -> String {
    let project = res::DEFAULT_PROJECT_ID;
    format!(
        "GET /{project}/{node}/events HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}: {node}\r\n{}: {project}\r\n\
         {}: {}\r\n\r\n",
        header::NODE_ID,
        header::PROJECT_ID,
        header::CONNECTION_USE,
        header::CONNECTION_USE_MSG,
    )
}

/// A WebSocket session as `node`, set up by hand: the caller then writes raw frame bytes.
async fn raw_ws(c: &Cluster, cloud: &Cloud, node: &str) -> Tls {
    let mut s = tls_to(&cloud.ws, c.pki.client_tls(node)).await;
    s.write_all(upgrade_request(&cloud.ws, node).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(DROP, async {
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
    })
    .await
    .expect("upgrade response");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    s
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// A client frame header (RFC 6455 §5.2) announcing `len` payload bytes, masked with [`MASK`]
/// unless `masked` is false.
fn frame_header(opcode: u8, fin: bool, len: u64, masked: bool) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 | opcode } else { opcode }];
    let m = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => h.push(m | u8::try_from(len).unwrap()),
        126..=0xffff => {
            h.push(m | 126);
            h.extend(u16::try_from(len).unwrap().to_be_bytes());
        }
        _ => {
            h.push(m | 127);
            h.extend(len.to_be_bytes());
        }
    }
    if masked {
        h.extend(MASK);
    }
    h
}

/// A complete masked client frame.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = frame_header(opcode, fin, payload.len() as u64, true);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// Writes `len` masked zero bytes (a frame body) in 64 KiB chunks; returns how many went out
/// before the peer stopped taking them.
async fn write_zeros<S: AsyncWrite + Unpin>(s: &mut S, len: usize) -> usize {
    // Zeros masked with MASK are MASK repeated (chunks start at multiples of 4).
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| MASK[i % 4]).collect();
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        match tokio::time::timeout(DROP, s.write_all(&chunk[..n])).await {
            Ok(Ok(())) => sent += n,
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), s.flush()).await;
    sent
}

/// Reads until the peer closes (EOF or error); panics if it is still open after `within`.
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let closed = tokio::time::timeout(within, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the daemon still holds the connection after {within:?}"
    );
    start.elapsed()
}

/// Sends `bytes` one at a time, `every` apart, until the peer closes the connection. Returns when it
/// was closed (after `limit` at the latest: `None`) and how many bytes had been sent.
async fn dribble<S>(s: S, bytes: &[u8], every: Duration, limit: Duration) -> (Option<Duration>, usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let sent = Cell::new(0usize);
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = async {
        for b in bytes {
            if wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            sent.set(sent.get() + 1);
            tokio::time::sleep(every).await;
        }
        // Everything went out (should not happen: the payloads are far longer than the deadline).
        std::future::pending::<()>().await;
    };
    let reader = async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let closed = tokio::time::timeout(limit, async {
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
    })
    .await;
    (closed.ok().map(|_| start.elapsed()), sent.get())
}

/// A pod for `node`, delivered through cloudcore's unix socket: the reply is the edge's ack, sent
/// after its SQLite commit (the same path edgecontroller uses).
async fn deliver_pod(cloud: &Cloud, edge: &Edge, node: &str, name: &str) {
    let p = Message::new(
        "edgecontroller",
        "resource",
        "insert",
        format!("node/{node}/default/pod/{name}"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node}}),
    )
    .with_resource_version("1");
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        ke_transport::unix::request(&cloud.sock, &p, 1 << 20),
    )
    .await
    .unwrap_or_else(|_| panic!("no ack for pod {name} from {node} within 20 s"))
    .unwrap();
    assert_eq!(
        (reply.parent_id(), reply.content_str()),
        (p.id(), Some("OK")),
        "pod {name} to {node}"
    );
    assert!(
        edge.meta(&format!("default/pod/{name}")).is_some(),
        "pod {name} stored at {node}"
    );
}

/// A cloudcore and one real edgecore (`edge-good`, WebSocket) connected to it; the returned number
/// is the edge's reconnect count once settled.
async fn cloud_with_good_edge(c: &Cluster) -> (Cloud, Edge, f64) {
    let cloud = c.cloud_config("");
    let good = c.edge("edge-good", &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge-good connected",
    )
    .await;
    wait_metric(
        &good.metrics,
        "edgehub_connected",
        |v| v == 1.0,
        "edge-good sees the link",
    )
    .await;
    let reconnects = metric(&good.metrics, "edgehub_reconnects").await.unwrap_or(0.0);
    (cloud, good, reconnects)
}

/// The real edgecore kept its link all along, cloudcore is up and never panicked, and the edge
/// still gets its messages.
async fn good_edge_unaffected(cloud: &mut Cloud, good: &Edge, reconnects: f64, pod: &str) {
    assert!(cloud.daemon.running(), "cloudcore died");
    assert_eq!(
        metric(&good.metrics, "edgehub_connected").await,
        Some(1.0),
        "edge-good lost its link"
    );
    assert_eq!(
        metric(&good.metrics, "edgehub_reconnects").await.unwrap_or(0.0),
        reconnects,
        "edge-good had to reconnect"
    );
    assert_eq!(
        metric(&cloud.metrics, "cloudhub_connected_nodes").await,
        Some(1.0)
    );
    deliver_pod(cloud, good, "edge-good", pod).await;
    assert!(!cloud.daemon.log().contains("panicked"), "cloudcore panicked");
}

/// Opens a hand-made session as `edge-bad` and waits until cloudcore counts it.
async fn bad_session(c: &Cluster, cloud: &Cloud) -> Tls {
    let s = raw_ws(c, cloud, "edge-bad").await;
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "edge-bad session up",
    )
    .await;
    s
}

/// `s` is dropped by cloudcore: the socket closes and the session is gone from the node count.
async fn dropped(cloud: &Cloud, s: &mut Tls, what: &str) {
    let took = until_closed(s, DROP, what).await;
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        &format!("{what}: session ended"),
    )
    .await;
    println!("hostile: {what}: connection closed by cloudcore after {took:?}");
}

async fn bad_frames(cloud: &Cloud) -> f64 {
    metric(&cloud.metrics, "cloudhub_bad_frames").await.unwrap_or(0.0)
}

#[tokio::test]
async fn cloudcore_drops_peers_sending_garbage_or_truncated_frames_while_a_real_edge_carries_on() {
    let c = Cluster::new(&["edge-good", "edge-bad"]);
    let (mut cloud, good, reconnects) = cloud_with_good_edge(&c).await;

    // 1. A binary frame that is not an envelope at all.
    for (what, payload) in [
        (
            "binary garbage frame",
            &b"\xff\xfe\x00\x01 not an envelope \x80\x81"[..],
        ),
        (
            "binary JSON that is not an envelope object",
            &b"[\"not\",\"an\",\"envelope\"]\n"[..],
        ),
    ] {
        let before = bad_frames(&cloud).await;
        let mut s = bad_session(&c, &cloud).await;
        s.write_all(&frame(OP_BINARY, true, payload)).await.unwrap();
        s.flush().await.unwrap();
        dropped(&cloud, &mut s, what).await;
        assert_eq!(
            bad_frames(&cloud).await,
            before + 1.0,
            "{what}: counted in cloudhub_bad_frames"
        );
    }
    let log = cloud.daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("bad frame") && l.contains("edge-bad")),
        "cloudcore logs why it dropped edge-bad:\n{log}"
    );

    // 2. A valid envelope split over TCP writes and over WebSocket fragments is reassembled.
    let mut s = bad_session(&c, &cloud).await;
    let series = "cloudhub_messages_in_total{operation=\"hostile-split\"}";
    let env = Message::new(
        "edged",
        "meta",
        "hostile-split",
        "default/hostile/split",
        json!({"k": "v"}),
    )
    .to_ws_frame()
    .into_bytes();
    let whole = frame(OP_TEXT, true, &env);
    for part in [&whole[..1], &whole[1..7], &whole[7..20], &whole[20..]] {
        s.write_all(part).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (a, b) = env.split_at(env.len() / 3);
    let (b, d) = b.split_at(b.len() / 2);
    for f in [
        frame(OP_TEXT, false, a),
        frame(OP_CONT, false, b),
        frame(OP_CONT, true, d),
    ] {
        s.write_all(&f).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eventually(
        Duration::from_secs(20),
        "both split envelopes received",
        || async { (metric_series(&cloud.metrics, series).await == 2.0).then_some(()) },
    )
    .await;
    assert_eq!(
        metric(&cloud.metrics, "cloudhub_connected_nodes").await,
        Some(2.0),
        "a split but valid envelope must not drop the peer"
    );

    // 3. On the same session: a frame cut off mid-way, then the TCP socket closed under it.
    let cut = frame(OP_TEXT, true, &env);
    s.write_all(&cut[..cut.len() / 2]).await.unwrap();
    s.flush().await.unwrap();
    drop(s);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "truncated session ended",
    )
    .await;
    // A truncated frame head (2 of its 8 length bytes), then closed.
    let mut s = bad_session(&c, &cloud).await;
    s.write_all(&frame_header(OP_BINARY, true, 70_000, true)[..4])
        .await
        .unwrap();
    s.flush().await.unwrap();
    drop(s);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "truncated-header session ended",
    )
    .await;
    assert_eq!(
        metric_series(&cloud.metrics, series).await,
        2.0,
        "half an envelope must not be delivered"
    );

    good_edge_unaffected(&mut cloud, &good, reconnects, "after-garbage").await;
    println!(
        "hostile: garbage/truncated frames: bad_frames={} connections={}",
        bad_frames(&cloud).await,
        metric(&cloud.metrics, "cloudhub_connections")
            .await
            .unwrap_or(0.0)
    );
}

#[tokio::test]
async fn cloudcore_refuses_oversized_and_protocol_violating_frames_and_counts_them() {
    let c = Cluster::new(&["edge-good", "edge-bad"]);
    let (mut cloud, good, reconnects) = cloud_with_good_edge(&c).await;
    let limit = ke_core::MAX_MESSAGE_BYTES;
    // Peers dropped without a cloudhub_bad_frames count ("Peers dropped for malformed or oversized
    // frames"): collected, asserted at the end so every case runs.
    let mut uncounted = Vec::new();

    // 0. Control: a valid 4 MiB envelope (half the limit) in one frame is taken, the peer stays.
    let mut s = bad_session(&c, &cloud).await;
    let big = Message::new(
        "edged",
        "meta",
        "hostile-big",
        "default/hostile/big",
        "x".repeat(4 * 1024 * 1024),
    )
    .to_ws_frame()
    .into_bytes();
    s.write_all(&frame(OP_TEXT, true, &big)).await.unwrap();
    s.flush().await.unwrap();
    let series = "cloudhub_messages_in_total{operation=\"hostile-big\"}";
    eventually(Duration::from_secs(20), "the 4 MiB envelope received", || async {
        (metric_series(&cloud.metrics, series).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&cloud.metrics, "cloudhub_connected_nodes").await,
        Some(2.0),
        "an envelope below the limit must not drop the peer"
    );
    s.write_all(&frame(0x8, true, &[0x03, 0xe8])).await.unwrap(); // Close 1000
    s.flush().await.unwrap();
    dropped(&cloud, &mut s, "polite close after the 4 MiB envelope").await;

    // 1. One frame announcing more than the limit: refused from its header, before the body.
    let what = "single frame of limit+1 bytes";
    let before = bad_frames(&cloud).await;
    let mut s = bad_session(&c, &cloud).await;
    s.write_all(&frame_header(OP_BINARY, true, (limit + 1) as u64, true))
        .await
        .unwrap();
    let sent = write_zeros(&mut s, 64 * 1024).await;
    dropped(&cloud, &mut s, what).await;
    println!("hostile: {what}: {sent} body bytes sent before the drop");
    if bad_frames(&cloud).await <= before {
        uncounted.push(what);
    }

    // 2. A message over the limit in fragments that are each below it (5 MiB + 5 MiB).
    let what = "fragmented message of 2 x 5 MiB";
    let before = bad_frames(&cloud).await;
    let mut s = bad_session(&c, &cloud).await;
    let part = 5 * 1024 * 1024;
    let mut sent = 0;
    for (op, fin) in [(OP_BINARY, false), (OP_CONT, true)] {
        if s.write_all(&frame_header(op, fin, part as u64, true))
            .await
            .is_err()
        {
            break;
        }
        let n = write_zeros(&mut s, part).await;
        sent += n;
        if n < part {
            break;
        }
    }
    dropped(&cloud, &mut s, what).await;
    println!("hostile: {what}: {sent} body bytes sent before the drop");
    if bad_frames(&cloud).await <= before {
        uncounted.push(what);
    }

    // 3. A text frame that is not UTF-8.
    let what = "text frame with invalid UTF-8";
    let before = bad_frames(&cloud).await;
    let mut s = bad_session(&c, &cloud).await;
    s.write_all(&frame(OP_TEXT, true, b"{\"k\":\"\xc3\x28\xff\"}"))
        .await
        .unwrap();
    s.flush().await.unwrap();
    dropped(&cloud, &mut s, what).await;
    if bad_frames(&cloud).await <= before {
        uncounted.push(what);
    }

    // 4. An unmasked client frame (RFC 6455 §5.1: the server must close the connection).
    let what = "unmasked client frame";
    let before = bad_frames(&cloud).await;
    let mut s = bad_session(&c, &cloud).await;
    let env = Message::keepalive().to_ws_frame().into_bytes();
    let mut f = frame_header(OP_TEXT, true, env.len() as u64, false);
    f.extend(&env);
    s.write_all(&f).await.unwrap();
    s.flush().await.unwrap();
    dropped(&cloud, &mut s, what).await;
    if bad_frames(&cloud).await <= before {
        uncounted.push(what);
    }

    good_edge_unaffected(&mut cloud, &good, reconnects, "after-oversized").await;
    println!(
        "hostile: oversized/protocol frames: bad_frames={} (4 bad peers dropped)",
        bad_frames(&cloud).await
    );
    assert!(
        uncounted.is_empty(),
        "peers dropped for these frames are not counted in cloudhub_bad_frames (\"Peers dropped for \
         malformed or oversized frames\") and are logged at debug level only: {uncounted:?}"
    );
}

/// The first TLS record a real client sends (a ClientHello from `node`'s TLS configuration).
fn client_hello(c: &Cluster, node: &str) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(c.pki.client_tls(node), cloud_name()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[tokio::test]
async fn cloudcore_handshake_timeout_drops_slowloris_peers() {
    let c = Cluster::new(&["edge-good", "edge-bad"]);
    let (mut cloud, good, reconnects) = cloud_with_good_edge(&c).await;
    let refused_before = metric(&cloud.metrics, "cloudhub_refused_connections")
        .await
        .unwrap_or(0.0);
    // cloudhub's handshake timeout (TLS + upgrade) is 30 s; the peers trickle one byte a second, so
    // a server that only watched for idle sockets would keep them forever.
    let every = Duration::from_secs(1);
    let limit = Duration::from_secs(50);
    let started = Instant::now();

    // A. TCP connection that never says anything.
    let idle = async {
        let s = TcpStream::connect(&cloud.ws).await.unwrap();
        dribble(s, &[], every, limit).await
    };
    // B. A real ClientHello, one byte per second.
    let hello = client_hello(&c, "edge-bad");
    let tls_slow = async {
        let s = TcpStream::connect(&cloud.ws).await.unwrap();
        s.set_nodelay(true).unwrap();
        dribble(s, &hello, every, limit).await
    };
    // C. TLS done with a valid node certificate, then the upgrade request one byte per second.
    let upgrade = upgrade_request(&cloud.ws, "edge-bad").into_bytes();
    let http_slow = async {
        let s = tls_to(&cloud.ws, c.pki.client_tls("edge-bad")).await;
        dribble(s, &upgrade, every, limit).await
    };
    // D. Plain HTTP to the TLS port: refused as soon as the first bytes are in.
    let plain = async {
        let mut s = TcpStream::connect(&cloud.ws).await.unwrap();
        s.write_all(upgrade_request(&cloud.ws, "edge-bad").as_bytes())
            .await
            .unwrap();
        until_closed(&mut s, DROP, "plain HTTP on the TLS port").await
    };
    // Meanwhile the real edge gets a message.
    let traffic = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        deliver_pod(&cloud, &good, "edge-good", "during-slowloris").await;
    };
    let (idle, tls_slow, http_slow, plain, ()) = tokio::join!(idle, tls_slow, http_slow, plain, traffic);
    println!(
        "hostile: handshake timeout: idle socket closed after {idle:?}, ClientHello slowloris after \
         {tls_slow:?} ({} of {} bytes), upgrade slowloris after {http_slow:?} ({} of {} bytes), plain HTTP \
         after {plain:?}; total {:?}",
        tls_slow.1,
        hello.len(),
        http_slow.1,
        upgrade.len(),
        started.elapsed()
    );
    let mut still_open = Vec::new();
    for (what, (closed, _)) in [
        ("idle TCP socket", idle),
        ("ClientHello sent one byte per second", tls_slow),
        ("upgrade request sent one byte per second", http_slow),
    ] {
        if closed.is_none() {
            still_open.push(what);
        }
    }
    assert!(
        still_open.is_empty(),
        "no handshake timeout: still held by cloudcore after {limit:?}: {still_open:?}"
    );
    assert!(
        tls_slow.1 >= 5 && http_slow.1 >= 5,
        "the slow peers were cut before a timeout could have run out (bytes sent: {}, {})",
        tls_slow.1,
        http_slow.1
    );
    // The peer sees its socket close a moment before cloudhub's handshake task counts it.
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let refused = metric(&cloud.metrics, "cloudhub_refused_connections")
                .await
                .unwrap_or(0.0);
            if refused >= refused_before + 4.0 {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let refused = metric(&cloud.metrics, "cloudhub_refused_connections")
        .await
        .unwrap_or(0.0);
    assert!(
        counted.is_ok(),
        "4 failed handshakes counted: {refused_before} -> {refused}"
    );
    good_edge_unaffected(&mut cloud, &good, reconnects, "after-slowloris").await;
}

// ---------------------------------------------------------------------------------------------
// edgecore: the embedded MQTT broker
// ---------------------------------------------------------------------------------------------

/// A well-behaved MQTT client (rumqttc) collecting what it receives; counts its CONNACKs so a
/// reconnect shows.
struct Mqtt {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, String)>,
    connacks: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mqtt {
    /// Connects as `id` and subscribes to `topics`; `None` while the broker is not there yet.
    async fn connect(port: u16, id: &str, topics: &[&str]) -> Option<Self> {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let connacks = Arc::new(AtomicUsize::new(0));
        let n = connacks.clone();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        let _ = tx.send((p.topic.clone(), text));
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let me = Self {
            client,
            rx,
            connacks,
            task,
        };
        for t in topics {
            me.client.subscribe(*t, QoS::AtLeastOnce).await.ok()?;
        }
        for _ in topics {
            tokio::time::timeout(Duration::from_secs(3), ack_rx.recv())
                .await
                .ok()??;
        }
        Some(me)
    }

    async fn connect_eventually(port: u16, id: &str, topics: &[&str]) -> Self {
        eventually(
            Duration::from_secs(20),
            &format!("MQTT client {id} connected"),
            || Self::connect(port, id, topics),
        )
        .await
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// The next publication on `topic` whose JSON payload satisfies `pred` (others skipped).
    async fn expect(&mut self, topic: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((t, p))) => {
                    let v = serde_json::from_str(&p).unwrap_or(Value::String(p.clone()));
                    if t == topic && pred(&v) {
                        return v;
                    }
                    seen.push(format!("{t}: {p}"));
                }
                _ => panic!("nothing matching on {topic} within {within:?}; got {seen:#?}"),
            }
        }
    }

    /// Publishes on a plain topic it subscribed to and gets it back through the broker.
    async fn echo(&mut self, tag: &str) {
        self.publish(ECHO, &json!({ "tag": tag }).to_string()).await;
        self.expect(ECHO, Duration::from_secs(10), |v| v["tag"] == tag)
            .await;
    }

    fn connacks(&self) -> usize {
        self.connacks.load(Ordering::SeqCst)
    }
}

const ECHO: &str = "hostile/echo";

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = u8::try_from(n % 128).unwrap();
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// An MQTT 3.1.1 CONNECT (clean session, no will, no credentials).
fn connect_packet(id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02];
    body.extend(keep_alive.to_be_bytes());
    body.extend(u16::try_from(id.len()).unwrap().to_be_bytes());
    body.extend(id.as_bytes());
    let mut p = vec![0x10];
    p.extend(varint(body.len()));
    p.extend(body);
    p
}

/// TCP + CONNECT; returns the socket and the CONNACK return code.
async fn mqtt_connect(port: u16, id: &str) -> std::io::Result<(TcpStream, u8)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(&connect_packet(id, 60)).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    if ack[..2] != [0x20, 0x02] {
        return Err(std::io::Error::other(format!("not a CONNACK: {ack:02x?}")));
    }
    Ok((s, ack[3]))
}

/// Raw `bytes` to the broker, then the broker must close the connection (well within its 10 s
/// CONNECT timeout, so it is the bytes that got it dropped).
async fn broker_drops(port: u16, what: &str, after_connect: bool, bytes: &[u8]) {
    let mut s = if after_connect {
        let (s, rc) = mqtt_connect(port, &format!("hostile-{what}")).await.unwrap();
        assert_eq!(rc, 0, "{what}: CONNACK");
        s
    } else {
        TcpStream::connect(("127.0.0.1", port)).await.unwrap()
    };
    s.write_all(bytes).await.unwrap();
    let took = until_closed(&mut s, Duration::from_secs(5), what).await;
    println!("hostile: MQTT {what}: dropped after {took:?}");
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A cloudcore and an edgecore whose eventbus runs the embedded broker on a fresh port.
async fn edge_with_broker(c: &Cluster, node: &str, twin: bool) -> (Cloud, Edge, u16) {
    let cloud = c.cloud_config("");
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let edge = c.edge_full(node, &cloud, false, &eventbus, twin);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    (cloud, edge, port)
}

const MQTT_NODE: &str = "edge-mqtt-hostile";
const DEV: &str = "hostile-dev";

/// The device, added the way devicecontroller adds it (membership update through cloudhub).
async fn add_device(cloud: &Cloud) {
    let m = Message::new(
        "devicecontroller",
        "twin",
        "update",
        format!("node/{MQTT_NODE}/membership"),
        json!({"event_id": "", "timestamp": 0, "added_devices": [{
            "id": DEV, "name": DEV, "description": "hostile", "state": "online", "attributes": {},
            "twin": {"temperature": {
                "expected": {"value": "20", "metadata": {"timestamp": 1_700_000_000}},
                "actual": {"value": "19", "metadata": {"timestamp": 1_700_000_000}},
                "optional": true, "metadata": {"type": "string"},
                "expected_version": {"cloud": 1, "edge": 1}, "actual_version": {"cloud": 1, "edge": 1}}}}],
            "removed_devices": null}),
    );
    // Fire-and-forget lane: no reply comes back.
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        ke_transport::unix::request(&cloud.sock, &m, 1 << 20),
    )
    .await;
}

#[tokio::test]
async fn embedded_broker_drops_garbage_and_oversized_packets_and_answers_bad_twin_json() {
    let c = Cluster::new(&[MQTT_NODE]);
    let (cloud, mut edge, port) = edge_with_broker(&c, MQTT_NODE, true).await;
    let result = format!("$hw/events/device/{DEV}/twin/update/result");
    let membership_get = format!("$hw/events/node/{MQTT_NODE}/membership/get");
    let updated = format!("$hw/events/node/{MQTT_NODE}/membership/updated");
    let mut good = Mqtt::connect_eventually(
        port,
        "hostile-good",
        &[&result, &format!("{membership_get}/result"), &updated, ECHO],
    )
    .await;
    // The twin is up once it answers membership/get; then the cloud adds the device.
    let mut twin_up = false;
    for _ in 0..40 {
        good.publish(&membership_get, r#"{"event_id":"memget","timestamp":1}"#)
            .await;
        let got = tokio::time::timeout(Duration::from_millis(500), good.rx.recv()).await;
        if matches!(got, Ok(Some((t, _))) if t.ends_with("membership/get/result")) {
            twin_up = true;
            break;
        }
    }
    assert!(twin_up, "the twin never answered membership/get");
    add_device(&cloud).await;
    good.expect(&updated, Duration::from_secs(20), |v| {
        v["added_devices"][0]["id"] == DEV
    })
    .await;
    let pid = edge.daemon.pid();
    let rss_before = rss_kib(pid);

    // Garbage where CONNECT belongs.
    broker_drops(
        port,
        "raw garbage bytes",
        false,
        b"\x00\xff\x13\x37garbage\r\n\r\n",
    )
    .await;
    broker_drops(port, "HTTP request", false, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    broker_drops(port, "TLS ClientHello", false, &client_hello(&c, MQTT_NODE)).await;
    // A CONNECT announcing 256 MiB (the largest remaining length MQTT can express).
    broker_drops(port, "CONNECT of 256 MiB", false, &[0x10, 0xff, 0xff, 0xff, 0x7f]).await;
    // After a good CONNECT: oversized PUBLISHes (limit: 1 MiB remaining length), a remaining
    // length with a fifth continuation byte, and a reserved packet type.
    let mut huge = vec![0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x05];
    huge.extend(b"$hw/x");
    broker_drops(port, "PUBLISH of 256 MiB", true, &huge).await;
    let mut just_over = vec![0x30];
    just_over.extend(varint(1024 * 1024 + 1));
    just_over.extend([0x00, 0x05]);
    just_over.extend(b"$hw/x");
    just_over.extend(vec![b'x'; 4096]);
    broker_drops(port, "PUBLISH of 1 MiB + 1", true, &just_over).await;
    broker_drops(
        port,
        "remaining length of 5 bytes",
        true,
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
    )
    .await;
    broker_drops(port, "reserved packet type 15", true, &[0xf0, 0x00]).await;
    broker_drops(port, "second CONNECT", true, &connect_packet("again", 60)).await;
    let rss_after = rss_kib(pid);
    println!("hostile: MQTT bad packets: edgecore RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the oversized announcements made edgecore allocate: {rss_before} KiB -> {rss_after} KiB"
    );

    // A device app sends a twin update that is not JSON: it gets a clear error result …
    let mut bad = Mqtt::connect_eventually(port, "hostile-bad-device", &[&result]).await;
    bad.publish(&format!("$hw/events/device/{DEV}/twin/update"), "{not json")
        .await;
    let err = bad
        .expect(&result, Duration::from_secs(20), |v| v["code"] == 400)
        .await;
    assert!(
        err["reason"].as_str().unwrap_or("").contains("Unmarshal"),
        "error result names the problem: {err}"
    );
    // … and a valid update right after, from the good client, gets its result.
    good.publish(
        &format!("$hw/events/device/{DEV}/twin/update"),
        r#"{"event_id":"evt-good-1","timestamp":1,"twin":{"temperature":{"actual":{"value":"25"},"metadata":{"type":"Updated"}}}}"#,
    )
    .await;
    let ok = good
        .expect(&result, Duration::from_secs(20), |v| {
            v["event_id"] == "evt-good-1"
        })
        .await;
    assert_eq!(ok["twin"]["temperature"]["actual"]["value"], "25", "{ok}");
    assert!(ok.get("code").is_none(), "a valid update is not an error: {ok}");

    // The good client never lost its connection and still routes; edgecore is up and connected.
    good.echo("after-bad-packets").await;
    assert_eq!(good.connacks(), 1, "the good MQTT client had to reconnect");
    assert!(edge.daemon.running(), "edgecore died");
    assert_eq!(metric(&edge.metrics, "edgehub_connected").await, Some(1.0));
    assert!(!edge.daemon.log().contains("panicked"), "edgecore panicked");
    println!(
        "hostile: MQTT bad packets: 9 bad connections dropped, bad twin JSON answered 400, good client unaffected"
    );
}

#[tokio::test]
async fn embedded_broker_takes_1000_clients_at_once_and_gives_their_sockets_back() {
    const N: usize = 1000;
    let node = "edge-mqtt-flood";
    let c = Cluster::new(&[node]);
    let (_cloud, mut edge, port) = edge_with_broker(&c, node, false).await;
    let mut good = Mqtt::connect_eventually(port, "hostile-good", &[ECHO]).await;
    good.echo("before").await;
    let pid = edge.daemon.pid();
    let fds_before = fd_count(pid);

    let started = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(30), mqtt_connect(port, &format!("flood-{i}"))).await
            })
        })
        .collect();
    let (mut accepted, mut refused, mut failed) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(Ok((s, 0))) => accepted.push(s),
            Ok(Ok((_, rc))) => {
                refused += 1;
                println!("hostile: MQTT flood: CONNACK refusal code {rc}");
            }
            Ok(Err(e)) => failed.push(e.to_string()),
            Err(_) => failed.push("no CONNACK within 30 s".to_owned()),
        }
    }
    let connect_time = started.elapsed();
    let fds_during = fd_count(pid);
    // The good client works with 1,000 others connected.
    good.echo("during").await;
    let n_accepted = accepted.len();

    // Half say DISCONNECT, half just go away.
    for (i, mut s) in accepted.into_iter().enumerate() {
        if i % 2 == 0 {
            let _ = s.write_all(&[0xe0, 0x00]).await;
        }
        drop(s);
    }
    let fds_after = eventually(
        Duration::from_secs(30),
        "edgecore releases the flood's sockets",
        || async {
            let n = fd_count(pid);
            (n <= fds_before + 20).then_some(n)
        },
    )
    .await;
    println!(
        "hostile: {N} MQTT clients: {n_accepted} CONNACK, {refused} refused, {} failed in {connect_time:?}; \
         fds before {fds_before} during {fds_during} after {fds_after}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} clients got neither a CONNACK nor a refusal, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(n_accepted + refused, N);
    assert!(
        fds_during + 10 >= fds_before + n_accepted,
        "one socket per accepted client ({fds_before} -> {fds_during})"
    );

    good.echo("after").await;
    assert_eq!(good.connacks(), 1, "the good MQTT client had to reconnect");
    assert!(edge.daemon.running(), "edgecore died");
    assert!(!edge.daemon.log().contains("panicked"), "edgecore panicked");
}

// ---------------------------------------------------------------------------------------------
// Bad local input
// ---------------------------------------------------------------------------------------------

fn cloud_yaml(c: &Cluster, crt: &Path, key: &Path) -> String {
    let (ws, quic, m) = (free_tcp_port(), ke_testkit::free_udp_port(), free_tcp_port());
    format!(
        "apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: 127.0.0.1:{m}
kubeAPIConfig:
  kubeConfig: \"\"
modules:
  cloudhub:
    nodeLimit: 10
    tlsCAFile: {ca}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    quic:
      enable: true
      address: 127.0.0.1
      port: {quic}
    unixsocket:
      enable: true
      address: unix://{sock}
    websocket:
      enable: true
      address: 127.0.0.1
      port: {ws}
",
        ca = c.pki.ca().display(),
        crt = crt.display(),
        key = key.display(),
        sock = c.path().join("cfg-cloudhub.sock").display(),
    )
}

fn edge_yaml(c: &Cluster, node: &str, crt: &Path, key: &Path) -> String {
    format!(
        "apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: 127.0.0.1:{m}
database:
  dataSource: {db}
modules:
  edged:
    enable: false
    hostnameOverride: {node}
    nodeIP: 127.0.0.1
  edgehub:
    heartbeat: 2
    tlsCaFile: {ca}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    websocket:
      enable: true
      server: 127.0.0.1:{ws}
  eventbus:
    enable: false
  devicetwin:
    enable: false
  edgemesh:
    enable: false
",
        m = free_tcp_port(),
        ws = free_tcp_port(),
        db = c.path().join(format!("{node}-cfg.db")).display(),
        ca = c.pki.ca().display(),
        crt = crt.display(),
        key = key.display(),
    )
}

/// `text` up to and including the first `marker`, as a file cut off during a write.
fn cut_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {text}"))
        + marker.len();
    text[..at].to_owned()
}

/// A copy of `file` with only its first half.
fn half_copy(file: &Path, to: PathBuf) -> PathBuf {
    let bytes = std::fs::read(file).unwrap();
    std::fs::write(&to, &bytes[..bytes.len() / 2]).unwrap();
    to
}

/// Runs `binary --config <config>`; it must exit by itself, non-zero, without a panic, and say
/// something naming `names` (every one of them). Returns the output.
async fn refuses(binary: &str, config: &Path, names: &[&str], what: &str) -> String {
    let started = Instant::now();
    let child = tokio::process::Command::new(bin(binary))
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{binary} with {what}: still running after 20 s"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "hostile: {binary} with {what}: {} after {:?}: {}",
        out.status,
        started.elapsed(),
        text.lines().last().unwrap_or("")
    );
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{binary} with {what}: exit {} (must be a non-zero exit code)\n{text}",
        out.status
    );
    assert!(
        !text.contains("panicked"),
        "{binary} with {what}: panicked\n{text}"
    );
    for n in names {
        assert!(
            text.contains(n),
            "{binary} with {what}: the error does not name {n:?}\n{text}"
        );
    }
    text
}

/// The good configuration starts (the daemon logs `started` and keeps running): what the truncated
/// variants break is the file.
async fn starts(c: &Cluster, binary: &str, yaml: &str, started: &str) {
    let p = c.path().join(format!("{binary}-good.yaml"));
    std::fs::write(&p, yaml).unwrap();
    let mut d = Daemon::start(
        &format!("{binary}-good"),
        &bin(binary),
        &["--config", p.to_str().unwrap()],
        c.path(),
    );
    eventually(
        Duration::from_secs(20),
        &format!("{binary}: {started}"),
        || async { d.log().contains(started).then_some(()) },
    )
    .await;
    assert!(d.running(), "{binary} with the good configuration exited");
    d.stop();
}

#[tokio::test]
async fn daemons_refuse_truncated_config_and_tls_files_with_a_clear_error() {
    let c = Cluster::new(&["edge-cfg"]);
    let dir = c.path();
    let (crt, key) = (c.pki.cert("server"), c.pki.key("server"));
    let (ncrt, nkey) = (c.pki.cert("edge-cfg"), c.pki.key("edge-cfg"));
    starts(&c, "cloudcore", &cloud_yaml(&c, &crt, &key), "cloudhub started").await;
    starts(
        &c,
        "edgecore",
        &edge_yaml(&c, "edge-cfg", &ncrt, &nkey),
        "edgecore started",
    )
    .await;

    // Config files cut off: in the middle of a key, inside a quoted string (both no longer YAML,
    // so the error names the file), and in the middle of a value (still YAML, so the error names
    // the field whose value is now wrong).
    let cfg = |b: &str| dir.join(format!("{b}-cut.yaml")).display().to_string();
    for (binary, good, what, marker, names) in [
        (
            "cloudcore",
            cloud_yaml(&c, &crt, &key),
            "YAML cut mid-key",
            "    tlsPriv",
            vec![cfg("cloudcore")],
        ),
        (
            "cloudcore",
            cloud_yaml(&c, &crt, &key),
            "YAML cut inside a quoted string",
            "kubeConfig: \"",
            vec![cfg("cloudcore")],
        ),
        (
            "cloudcore",
            cloud_yaml(&c, &crt, &key),
            "YAML cut mid-value",
            "    tlsCertFile: /",
            vec!["tlsCertFile".to_owned()],
        ),
        (
            "edgecore",
            edge_yaml(&c, "edge-cfg", &ncrt, &nkey),
            "YAML cut mid-key",
            "    tlsPriv",
            vec![cfg("edgecore")],
        ),
        (
            "edgecore",
            edge_yaml(&c, "edge-cfg", &ncrt, &nkey),
            "YAML cut mid-value",
            "    tlsCertFile: /",
            vec!["tlsCertFile".to_owned()],
        ),
    ] {
        let p = PathBuf::from(cfg(binary));
        std::fs::write(&p, cut_after(&good, marker)).unwrap();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        refuses(binary, &p, &names, what).await;
    }

    // Certificate and key files cut in half (e.g. a copy interrupted by a full disk).
    let half_crt = half_copy(&crt, dir.join("half-server.crt"));
    let half_key = half_copy(&key, dir.join("half-server.key"));
    let half_ncrt = half_copy(&ncrt, dir.join("half-edge.crt"));
    let half_nkey = half_copy(&nkey, dir.join("half-edge.key"));
    for (binary, yaml, file, what) in [
        (
            "cloudcore",
            cloud_yaml(&c, &half_crt, &key),
            &half_crt,
            "tlsCertFile cut in half",
        ),
        (
            "cloudcore",
            cloud_yaml(&c, &crt, &half_key),
            &half_key,
            "tlsPrivateKeyFile cut in half",
        ),
        (
            "edgecore",
            edge_yaml(&c, "edge-cfg", &half_ncrt, &nkey),
            &half_ncrt,
            "tlsCertFile cut in half",
        ),
        (
            "edgecore",
            edge_yaml(&c, "edge-cfg", &ncrt, &half_nkey),
            &half_nkey,
            "tlsPrivateKeyFile cut in half",
        ),
    ] {
        let p = dir.join(format!("{binary}-halftls.yaml"));
        std::fs::write(&p, yaml).unwrap();
        refuses(binary, &p, &[&file.display().to_string()], what).await;
    }
}
