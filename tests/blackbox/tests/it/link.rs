//! cloudcore and edgecore processes over the real link.

use std::time::Duration;

use futures_util::SinkExt;
use ke_core::Message;
use ke_testkit::FakeEdge;
use ke_transport::LinkError;
use serde_json::json;

use crate::cluster::{Cluster, metric, wait_metric};

#[tokio::test]
async fn edgecore_connects_over_websocket_and_quic_and_survives_cloud_restart() {
    let c = Cluster::new(&["edge-ws", "edge-quic"]);
    let mut cloud = c.cloud_config("");
    let ws = c.edge("edge-ws", &cloud, false);
    let q = c.edge("edge-quic", &cloud, true);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "both edges connected",
    )
    .await;
    wait_metric(
        &ws.metrics,
        "edgehub_connected",
        |v| v == 1.0,
        "ws edge sees the link",
    )
    .await;
    wait_metric(
        &q.metrics,
        "edgehub_connected",
        |v| v == 1.0,
        "quic edge sees the link",
    )
    .await;
    // Keepalives flow (heartbeat 2 s).
    wait_metric(
        &cloud.metrics,
        "cloudhub_messages_in",
        |v| v >= 4.0,
        "keepalives arrive",
    )
    .await;

    // Restart cloudcore: both edges come back by themselves.
    cloud.daemon.stop();
    wait_metric(
        &ws.metrics,
        "edgehub_connected",
        |v| v == 0.0,
        "ws edge notices the cloud is gone",
    )
    .await;
    cloud.restart(c.path());
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "both edges reconnected",
    )
    .await;
    assert!(metric(&ws.metrics, "edgehub_reconnects").await.unwrap_or(0.0) >= 1.0);
    assert!(metric(&q.metrics, "edgehub_reconnects").await.unwrap_or(0.0) >= 1.0);
}

#[tokio::test]
async fn cloudcore_refuses_impostors_and_drops_bad_peers() {
    let c = Cluster::new(&["edge-a", "edge-b"]);
    let cloud = c.cloud_config("");
    let good = c.edge("edge-a", &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge-a connected",
    )
    .await;
    // edge-b's certificate claiming to be edge-a.
    let err = FakeEdge::ws(&cloud.ws, "edge-a", c.pki.client_tls("edge-b"))
        .await
        .unwrap_err();
    assert!(matches!(&err, LinkError::Refused(r) if r.status == 403), "{err}");
    // A peer that sends garbage is dropped…
    let mut bad = FakeEdge::ws(&cloud.ws, "edge-b", c.pki.client_tls("edge-b"))
        .await
        .unwrap();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "edge-b connected",
    )
    .await;
    if let ke_transport::LinkTx::Ws(sink) = &mut bad.tx {
        sink.send(tokio_tungstenite::tungstenite::Message::text("\u{0}\u{1}garbage"))
            .await
            .unwrap();
    }
    wait_metric(
        &cloud.metrics,
        "cloudhub_bad_frames",
        |v| v >= 1.0,
        "bad frame counted",
    )
    .await;
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "bad peer dropped",
    )
    .await;
    // …while the real edgecore carries on.
    let before = metric(&good.metrics, "edgehub_reconnects").await.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metric(&good.metrics, "edgehub_connected").await, Some(1.0));
    assert_eq!(
        metric(&good.metrics, "edgehub_reconnects").await.unwrap_or(0.0),
        before
    );
    // And the unix socket still reaches a connected fake edge.
    let mut fake = FakeEdge::ws(&cloud.ws, "edge-b", c.pki.client_tls("edge-b"))
        .await
        .unwrap();
    fake.send(&Message::keepalive()).await;
    let req = Message::new(
        "edgecontroller",
        "resource",
        "update",
        "node/edge-b/default/configmap/cm",
        json!({"data": {"k": "v"}}),
    )
    .with_resource_version("42");
    let sock = cloud.sock.clone();
    let r2 = req.clone();
    let client = tokio::spawn(async move { ke_transport::unix::request(&sock, &r2, 1 << 20).await });
    let got = fake.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!((got.id(), got.resource()), (req.id(), "default/configmap/cm"));
    fake.send(&got.ack()).await;
    let reply = client.await.unwrap().unwrap();
    assert_eq!(reply.parent_id(), req.id());
}

fn pod(node: &str, name: &str, rv: &str) -> Message {
    Message::new(
        "edgecontroller",
        "resource",
        "insert",
        format!("node/{node}/default/pod/{name}"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node}}),
    )
    .with_resource_version(rv)
}

#[tokio::test]
async fn cloud_messages_reach_edge_sqlite_and_are_acked_even_after_the_edge_was_away() {
    let c = Cluster::new(&["edge-m"]);
    let cloud = c.cloud_config("");
    let mut edge = c.edge("edge-m", &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;

    // One pod: the reply on the unix socket is the edge's ack, sent after its SQLite commit.
    let p = pod("edge-m", "nginx", "5");
    let reply = ke_transport::unix::request(&cloud.sock, &p, 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        (reply.operation(), reply.parent_id(), reply.content_str()),
        ("response", p.id(), Some("OK"))
    );
    let (kind, value) = edge.meta("default/pod/nginx").expect("row stored before the ack");
    assert_eq!(kind, "pod");
    let stored: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(stored, p.content, "the object is stored as sent");

    // The edge goes away; the cloud keeps 20 objects for it.
    edge.daemon.stop();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 0.0,
        "edge gone",
    )
    .await;
    let mut waiting = Vec::new();
    for i in 0..20 {
        let m = pod("edge-m", &format!("away-{i}"), "10");
        let sock = cloud.sock.clone();
        waiting.push((
            m.id().to_owned(),
            tokio::spawn(async move { ke_transport::unix::request(&sock, &m, 1 << 20).await }),
        ));
    }
    wait_metric(
        &cloud.metrics,
        "cloudhub_queue_depth",
        |v| v >= 20.0,
        "messages queued for the absent edge",
    )
    .await;
    // It comes back: each queued object is delivered, stored and acked.
    let edge = c.edge("edge-m", &cloud, false);
    for (id, h) in waiting {
        let r = h.await.unwrap().unwrap();
        assert_eq!((r.parent_id(), r.content_str()), (id.as_str(), Some("OK")));
    }
    for i in 0..20 {
        assert!(
            edge.meta(&format!("default/pod/away-{i}")).is_some(),
            "away-{i} stored"
        );
    }
    wait_metric(
        &cloud.metrics,
        "cloudhub_queue_depth",
        |v| v == 0.0,
        "queue drained",
    )
    .await;
    assert_eq!(metric(&cloud.metrics, "cloudhub_acks_pending").await, Some(0.0));
}

#[tokio::test]
async fn mqtt_upload_through_the_embedded_broker_reaches_the_cloud() {
    let c = Cluster::new(&["edge-mqtt"]);
    let cloud = c.cloud_config("");
    let port = ke_testkit::free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let _edge = c.edge_with("edge-mqtt", &cloud, false, &eventbus);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    let before = metric(
        &cloud.metrics,
        "cloudhub_messages_in_total{operation=\"response\"}",
    )
    .await
    .unwrap_or(0.0);
    // A device app publishes an upload with the standard mosquitto client.
    ke_testkit::eventually(
        Duration::from_secs(20),
        "mosquitto_pub to the embedded broker",
        || async {
            let st = tokio::process::Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    "$hw/events/upload/demo",
                    "-m",
                    "{\"v\":1}",
                ])
                .status()
                .await
                .ok()?;
            st.success().then_some(())
        },
    )
    .await;
    wait_metric(
        &cloud.metrics,
        "cloudhub_messages_in_total{operation=\"response\"}",
        |v| v > before,
        "the upload reaches cloudcore as a bus response",
    )
    .await;
}

#[tokio::test]
async fn queued_messages_survive_a_cloudcore_restart_and_arrive_once() {
    let c = Cluster::new(&["edge-r"]);
    let mut cloud = c.cloud_config("");
    let mut edge = c.edge("edge-r", &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    edge.daemon.stop();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 0.0,
        "edge gone",
    )
    .await;
    // 20 objects queued for the absent edge; their unix-socket senders give up when cloudcore stops.
    let mut senders = Vec::new();
    for i in 0..20 {
        let m = pod("edge-r", &format!("q-{i}"), "7");
        let sock = cloud.sock.clone();
        senders.push(tokio::spawn(async move {
            ke_transport::unix::request(&sock, &m, 1 << 20).await
        }));
    }
    wait_metric(&cloud.metrics, "cloudhub_queue_depth", |v| v >= 20.0, "20 queued").await;
    cloud.restart(c.path());
    for s in senders {
        let _ = s.await;
    }
    wait_metric(
        &cloud.metrics,
        "cloudhub_queue_depth",
        |v| v >= 20.0,
        "queue restored after restart",
    )
    .await;
    let edge = c.edge("edge-r", &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_queue_depth",
        |v| v == 0.0,
        "all 20 delivered and acked",
    )
    .await;
    for i in 0..20 {
        assert!(
            edge.meta(&format!("default/pod/q-{i}")).is_some(),
            "q-{i} stored at the edge"
        );
    }
    // Exactly once: the restarted cloudcore wrote each object one time, and resent none.
    assert_eq!(
        metric(
            &cloud.metrics,
            "cloudhub_messages_out_total{operation=\"insert\",kind=\"pod\"}"
        )
        .await,
        Some(20.0)
    );
    assert_eq!(
        metric(&cloud.metrics, "cloudhub_resends").await.unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn quic_edgecore_stores_and_acks_cloud_messages() {
    let c = Cluster::new(&["edge-qm"]);
    let cloud = c.cloud_config("");
    let edge = c.edge("edge-qm", &cloud, true);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "quic edge connected",
    )
    .await;
    let p = pod("edge-qm", "over-quic", "9");
    let reply = ke_transport::unix::request(&cloud.sock, &p, 1 << 20)
        .await
        .unwrap();
    assert_eq!((reply.parent_id(), reply.content_str()), (p.id(), Some("OK")));
    assert!(edge.meta("default/pod/over-quic").is_some());
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let c = Cluster::new(&["edge-x"]);
    let cloud = c.cloud_config("");
    let other_dir = tempfile::tempdir().unwrap();
    let other = ke_testkit::Pki::generate(other_dir.path(), &["edge-x"]);
    // Trusts our cloud, presents a node certificate signed by a different CA.
    let material =
        ke_pki::tls::TlsMaterial::from_files(&c.pki.ca(), &other.cert("edge-x"), &other.key("edge-x"))
            .unwrap();
    let tls = ke_pki::tls::client_config_from(material).unwrap();
    let err = FakeEdge::ws(&cloud.ws, "edge-x", tls.clone()).await.unwrap_err();
    assert!(
        !matches!(err, LinkError::Refused(_)),
        "refused in the TLS handshake: {err}"
    );
    assert!(FakeEdge::quic(&cloud.quic, "edge-x", tls).await.is_err());
    wait_metric(
        &cloud.metrics,
        "cloudhub_refused_connections",
        |v| v >= 1.0,
        "refusal counted",
    )
    .await;
    assert_eq!(
        metric(&cloud.metrics, "cloudhub_connected_nodes").await,
        Some(0.0)
    );
    // The node's real certificate works.
    FakeEdge::ws(&cloud.ws, "edge-x", c.pki.client_tls("edge-x"))
        .await
        .unwrap();
}
