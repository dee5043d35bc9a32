//! CloudHub against real peers on loopback: real TLS, real WebSocket / QUIC / unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cloudhub::metrics::HubMetrics;
use cloudhub::{CloudHub, CloudHubOptions, HubEvent, Listening};
use ke_core::Message;
use ke_pki::Ca;
use ke_pki::tls::{TlsMaterial, client_config_from, server_config_from};
use ke_testkit::FakeEdge;
use ke_transport::LinkError;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Env {
    ca: Ca,
    hub: CloudHub,
    at: Listening,
    events: mpsc::Receiver<HubEvent>,
    _dir: tempfile::TempDir,
    metrics: HubMetrics,
}

fn tls_for(ca: &Ca, pair: &ke_pki::CertKeyPair) -> Arc<rustls::ClientConfig> {
    client_config_from(
        TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap()
}

impl Env {
    async fn start(tune: impl FnOnce(&mut CloudHubOptions)) -> Self {
        let ca = Ca::create("test CA").unwrap();
        let server = ca.issue_server("cloudcore", &["127.0.0.1".into()]).unwrap();
        let tls = server_config_from(
            TlsMaterial::from_pem(
                ca.cert_pem().as_bytes(),
                server.cert_pem.as_bytes(),
                server.key_pem.as_bytes(),
            )
            .unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = CloudHubOptions::new(tls);
        opts.websocket = Some("127.0.0.1:0".parse().unwrap());
        opts.quic = Some("127.0.0.1:0".parse().unwrap());
        opts.unix_socket = Some(dir.path().join("hub.sock"));
        tune(&mut opts);
        let (tx, events) = mpsc::channel(1024);
        let metrics = HubMetrics::default();
        let (hub, at) = CloudHub::start(opts, tx, metrics.clone(), CancellationToken::new())
            .await
            .unwrap();
        Self {
            ca,
            hub,
            at,
            events,
            _dir: dir,
            metrics,
        }
    }

    fn ws(&self) -> String {
        self.at.websocket.unwrap().to_string()
    }

    fn node_tls(&self, node: &str) -> Arc<rustls::ClientConfig> {
        tls_for(&self.ca, &self.ca.issue_node(node).unwrap())
    }

    async fn edge(&self, node: &str) -> FakeEdge {
        FakeEdge::ws(&self.ws(), node, self.node_tls(node)).await.unwrap()
    }

    async fn next_event(&mut self, pred: impl Fn(&HubEvent) -> bool) -> HubEvent {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .unwrap()
                .unwrap();
            if pred(&e) {
                return e;
            }
        }
    }
}

fn pod(node: &str, name: &str, rv: &str) -> Message {
    Message::new(
        "edgecontroller",
        "resource",
        "insert",
        format!("node/{node}/default/pod/{name}"),
        json!({"kind": "Pod", "metadata": {"name": name}}),
    )
    .with_resource_version(rv)
}

const T: Duration = Duration::from_secs(10);

async fn roundtrip(env: &mut Env, mut edge: FakeEdge, node: &str) {
    edge.send(&Message::keepalive()).await;
    env.next_event(|e| matches!(e, HubEvent::Connected(n) if n == node))
        .await;
    let msg = pod(node, "p1", "7");
    env.hub.send(msg.clone()).unwrap();
    let got = edge.recv(T).await.unwrap();
    assert_eq!(
        got.resource(),
        "default/pod/p1",
        "node prefix stripped on the wire"
    );
    assert_eq!(got.id(), msg.id());
    assert_eq!(got.header.resource_version, "7");
    edge.send(&got.ack()).await;
    match env.next_event(|e| matches!(e, HubEvent::Acked { .. })).await {
        HubEvent::Acked { node: n, message } => {
            assert_eq!(n, node);
            assert_eq!(message.id(), msg.id());
        }
        _ => unreachable!(),
    }
    assert_eq!(env.hub.queue_depth(node), 0);
    // Upstream: prefixed with the node.
    let status = Message::new(
        "edged",
        "meta",
        "update",
        "default/podstatus/p1",
        json!({"Name": "p1"}),
    );
    edge.send(&status).await;
    match env.next_event(|e| matches!(e, HubEvent::Upstream(_))).await {
        HubEvent::Upstream(m) => {
            assert_eq!(m.resource(), format!("node/{node}/default/podstatus/p1"));
            assert_eq!(m.content, json!({"Name": "p1"}));
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn websocket_both_ways_with_ack() {
    let mut env = Env::start(|_| {}).await;
    let edge = env.edge("edge-a").await;
    roundtrip(&mut env, edge, "edge-a").await;
}

#[tokio::test]
async fn quic_both_ways_with_ack() {
    let mut env = Env::start(|_| {}).await;
    let q = env.at.quic.unwrap().to_string();
    let edge = FakeEdge::quic(&q, "edge-q", env.node_tls("edge-q"))
        .await
        .unwrap();
    roundtrip(&mut env, edge, "edge-q").await;
}

#[tokio::test]
async fn unix_socket_request_returns_edge_reply() {
    let mut env = Env::start(|_| {}).await;
    let mut edge = env.edge("edge-u").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(_))).await;
    let sock = env.at.unix_socket.clone().unwrap();
    let req = pod("edge-u", "via-unix", "3");
    let id = req.id().to_owned();
    let client = tokio::spawn(async move { ke_transport::unix::request(&sock, &req, 1 << 20).await });
    let got = edge.recv(T).await.unwrap();
    assert_eq!(got.id(), id);
    edge.send(&got.ack()).await;
    let reply = client.await.unwrap().unwrap();
    assert_eq!(reply.parent_id(), id);
    assert_eq!(reply.content_str(), Some("OK"));
    // The same version again is not sent, and the reply says so at once (no wait for an ack
    // that cannot come).
    let sock = env.at.unix_socket.clone().unwrap();
    let again = pod("edge-u", "via-unix", "3");
    let reply = tokio::time::timeout(T, ke_transport::unix::request(&sock, &again, 1 << 20))
        .await
        .expect("a stale request is answered before the ack timeout")
        .unwrap();
    assert_eq!(reply.operation(), "error");
    assert!(reply.content_json_text().contains("nothing sent"), "{reply:?}");
    // A request for a node that is not there times out into an error reply, not a hang.
    let sock = env.at.unix_socket.clone().unwrap();
    let bad = Message::new("x", "resource", "insert", "default/pod/no-node", json!(null));
    let reply = ke_transport::unix::request(&sock, &bad, 1 << 20).await.unwrap();
    assert_eq!(reply.operation(), "error");
    assert!(reply.content_json_text().contains("names no node"), "{reply:?}");
}

fn refused_status(e: &LinkError) -> Option<u16> {
    match e {
        LinkError::Refused(r) => Some(r.status),
        _ => None,
    }
}

#[tokio::test]
async fn identity_is_enforced() {
    let env = Env::start(|_| {}).await;
    // Node A's certificate claiming node B.
    let err = FakeEdge::ws(&env.ws(), "node-b", env.node_tls("node-a"))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&err), Some(403), "{err}");
    // Same over QUIC.
    let q = env.at.quic.unwrap().to_string();
    let err = FakeEdge::quic(&q, "node-b", env.node_tls("node-a"))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Refused(_)), "{err}");
    // A certificate from another CA.
    let other = Ca::create("other CA").unwrap();
    let foreign = other.issue_node("node-a").unwrap();
    let tls = client_config_from(
        TlsMaterial::from_pem(
            env.ca.cert_pem().as_bytes(),
            foreign.cert_pem.as_bytes(),
            foreign.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    let err = FakeEdge::ws(&env.ws(), "node-a", tls).await.unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Tls { .. } | LinkError::WebSocket(_) | LinkError::Io(_)
        ),
        "{err}"
    );
    // No client certificate at all.
    let verifier = ke_pki::tls::server_cert_verifier(std::slice::from_ref(env.ca.cert_der())).unwrap();
    let bare = rustls::ClientConfig::builder_with_provider(ke_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let err = FakeEdge::ws(&env.ws(), "node-a", Arc::new(bare))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, LinkError::Refused(_)),
        "refused only at the TLS layer: {err}"
    );
    // cloudcore's own server certificate (CN "cloudcore") cannot be used to log in as a node.
    let server_pair = env.ca.issue_server("cloudcore", &["127.0.0.1".into()]).unwrap();
    let err = FakeEdge::ws(&env.ws(), "cloudcore", tls_for(&env.ca, &server_pair))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, LinkError::Refused(_)),
        "refused in the TLS handshake (no clientAuth EKU): {err}"
    );
    assert!(env.hub.connected_nodes().is_empty());
    // The right certificate still works.
    env.edge("node-a").await;
}

fn legacy_tls(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubeedge.io");
    let pair = ca.issue_with_params(params).unwrap();
    tls_for(ca, &pair)
}

#[tokio::test]
async fn legacy_shared_certificate_only_when_allowed() {
    let env = Env::start(|_| {}).await;
    let err = FakeEdge::ws(&env.ws(), "old-edge", legacy_tls(&env.ca))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&err), Some(403));
    let env = Env::start(|o| o.allow_legacy_certs = true).await;
    FakeEdge::ws(&env.ws(), "old-edge", legacy_tls(&env.ca))
        .await
        .unwrap();
}

#[tokio::test]
async fn node_limit_is_exact() {
    let mut env = Env::start(|o| o.node_limit = 2).await;
    let _a = env.edge("n1").await;
    let _b = env.edge("n2").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(n) if n == "n2"))
        .await;
    let err = FakeEdge::ws(&env.ws(), "n3", env.node_tls("n3"))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&err), Some(503), "{err}");
    // A connected node may reconnect (its old session is replaced).
    let _a2 = env.edge("n1").await;
}

#[tokio::test]
async fn bad_peers_are_dropped_others_carry_on() {
    let mut env = Env::start(|o| o.limits.max_message = 64 * 1024).await;
    let mut good = env.edge("good").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(n) if n == "good"))
        .await;
    // Garbage frame.
    let mut bad = env.edge("bad").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(n) if n == "bad"))
        .await;
    if let ke_transport::LinkTx::Ws(sink) = &mut bad.tx {
        use futures_util::SinkExt;
        sink.send(tokio_tungstenite::tungstenite::Message::text("{not json"))
            .await
            .unwrap();
    }
    env.next_event(|e| matches!(e, HubEvent::Disconnected(n) if n == "bad"))
        .await;
    // Oversized frame.
    let mut big = env.edge("big").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(n) if n == "big"))
        .await;
    let huge = Message::new(
        "edged",
        "meta",
        "update",
        "default/podstatus/x",
        "x".repeat(100 * 1024),
    );
    let _ = big.tx.send(&huge).await;
    env.next_event(|e| matches!(e, HubEvent::Disconnected(n) if n == "big"))
        .await;
    assert!(env.metrics.bad_frames.get() >= 1);
    // The good node still gets its messages.
    env.hub.send(pod("good", "still-here", "1")).unwrap();
    let got = good.recv(T).await.unwrap();
    assert_eq!(got.resource(), "default/pod/still-here");
}

#[tokio::test]
async fn silent_node_is_dropped() {
    let mut env = Env::start(|o| o.keepalive_interval = Duration::from_millis(800)).await;
    let _edge = env.edge("quiet").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(_))).await;
    env.next_event(|e| matches!(e, HubEvent::Disconnected(n) if n == "quiet"))
        .await;
    assert!(env.hub.connected_nodes().is_empty());
}

#[tokio::test]
async fn unacked_messages_are_resent_and_survive_reconnect() {
    let mut env = Env::start(|o| o.ack_timeout = Duration::from_millis(300)).await;
    let mut edge = env.edge("flaky").await;
    env.next_event(|e| matches!(e, HubEvent::Connected(_))).await;
    let msg = pod("flaky", "p", "1");
    env.hub.send(msg.clone()).unwrap();
    let first = edge.recv(T).await.unwrap();
    let again = edge.recv(T).await.unwrap();
    assert_eq!(
        (first.id(), again.id()),
        (msg.id(), msg.id()),
        "resent after the ack timeout"
    );
    // Queue more while the node is away.
    drop(edge);
    env.next_event(|e| matches!(e, HubEvent::Disconnected(_))).await;
    for i in 0..20 {
        env.hub.send(pod("flaky", &format!("q{i}"), "1")).unwrap();
    }
    assert_eq!(env.hub.queue_depth("flaky"), 21);
    let mut edge = env.edge("flaky").await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 21 {
        let m = edge.recv(T).await.unwrap();
        edge.send(&m.ack()).await;
        seen.insert(m.resource().to_owned());
    }
    let depth_zero = async {
        while env.hub.queue_depth("flaky") != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(T, depth_zero).await.unwrap();
    // Acked: no more resends.
    assert!(edge.recv(Duration::from_millis(900)).await.is_none());
}

#[tokio::test]
async fn viaduct_control_messages_get_ack() {
    let env = Env::start(|_| {}).await;
    let mut edge = env.edge("ctl").await;
    let ping = Message::new("", "", "ping", "", json!(null));
    edge.send(&ping).await;
    let reply = edge.recv(T).await.unwrap();
    assert_eq!(
        (reply.operation(), reply.parent_id(), reply.content_str()),
        ("response", ping.id(), Some("ack"))
    );
}

#[tokio::test]
async fn queued_messages_survive_a_hub_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("queue.db");
    let s2 = store.clone();
    let mut env = Env::start(move |o| o.queue_store = Some(s2)).await;
    let sent: Vec<Message> = (0..5).map(|i| pod("away", &format!("p{i}"), "3")).collect();
    for m in &sent {
        env.hub.send(m.clone()).unwrap();
    }
    // One of them is delivered and acked before the restart; it must not come back.
    let mut edge = env.edge("away").await;
    let first = edge.recv(T).await.unwrap();
    edge.send(&first.ack()).await;
    env.next_event(|e| matches!(e, HubEvent::Acked { .. })).await;
    drop(edge);
    env.hub.shutdown().await;

    // A new hub (new process in real life) on the same store and CA.
    let ca = env.ca;
    let server = ca.issue_server("cloudcore", &["127.0.0.1".into()]).unwrap();
    let tls = server_config_from(
        TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            server.cert_pem.as_bytes(),
            server.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut opts = CloudHubOptions::new(tls);
    opts.websocket = Some("127.0.0.1:0".parse().unwrap());
    opts.queue_store = Some(store);
    let (tx, _events) = mpsc::channel(1024);
    let (hub, at) = CloudHub::start(opts, tx, HubMetrics::default(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(hub.queue_depth("away"), 4);
    let node = ca.issue_node("away").unwrap();
    let mut edge = FakeEdge::ws(&at.websocket.unwrap().to_string(), "away", tls_for(&ca, &node))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let m = edge.recv(T).await.unwrap();
        edge.send(&m.ack()).await;
        got.push(m.id().to_owned());
    }
    let expected: Vec<String> = sent
        .iter()
        .filter(|m| m.id() != first.id())
        .map(|m| m.id().to_owned())
        .collect();
    assert_eq!(
        got, expected,
        "the four unacked messages, in order, with their original ids"
    );
    assert!(
        edge.recv(Duration::from_millis(500)).await.is_none(),
        "nothing twice"
    );
}
