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
    let config = cloud.config.clone();
    cloud.daemon = ke_testkit::Daemon::start(
        "cloudcore-2",
        &ke_testkit::bin("cloudcore"),
        &["--config", config.to_str().unwrap()],
        c.path(),
    );
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
