//! Edge autonomy with the real edgecore: twin updates made while the cloud is gone reach the cloud
//! after it comes back. The cloud side is a test-side hub built from the real `cloudhub` crate (real
//! TLS and WebSocket), which lets the test see exactly what arrives upstream.

use std::time::Duration;

use cloudhub::metrics::HubMetrics;
use cloudhub::{CloudHub, CloudHubOptions, HubEvent};
use ke_core::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, wait_metric};

const NODE: &str = "edge-off";
const DEV: &str = "thermo-1";

struct TestCloud {
    hub: CloudHub,
    events: mpsc::Receiver<HubEvent>,
}

impl TestCloud {
    async fn start(c: &Cluster, port: u16) -> Self {
        let tls =
            ke_pki::tls::server_config(&c.pki.ca(), &c.pki.cert("server"), &c.pki.key("server")).unwrap();
        let mut opts = CloudHubOptions::new(tls);
        opts.websocket = Some(format!("127.0.0.1:{port}").parse().unwrap());
        let (tx, events) = mpsc::channel(1024);
        let (hub, _) = CloudHub::start(opts, tx, HubMetrics::default(), CancellationToken::new())
            .await
            .unwrap();
        Self { hub, events }
    }

    /// The next upstream message whose resource is `resource`.
    async fn upstream(&mut self, resource: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let wait = async {
            while let Some(e) = self.events.recv().await {
                if let HubEvent::Upstream(m) = e
                    && m.resource() == resource
                    && pred(&m)
                {
                    return m;
                }
            }
            panic!("hub stopped");
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("upstream message")
    }

    async fn connected(&mut self) {
        let wait = async {
            while let Some(e) = self.events.recv().await {
                if matches!(e, HubEvent::Connected(_)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("edge connected");
    }
}

async fn device_client(port: u16) -> (AsyncClient, mpsc::UnboundedReceiver<String>) {
    let (client, mut ev) = AsyncClient::new(MqttOptions::new("thermo", "127.0.0.1", port), 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(String::from_utf8_lossy(&p.payload).into_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
        .subscribe(
            format!("$hw/events/device/{DEV}/twin/update/result"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    (client, rx)
}

fn update(value: &str) -> String {
    json!({"event_id": format!("e-{value}"), "timestamp": 0,
           "twin": {"temperature": {"actual": {"value": value}, "metadata": {"type": "Updated"}}}})
    .to_string()
}

#[tokio::test]
async fn twin_updates_made_offline_reach_the_cloud_after_reconnect() {
    let c = Cluster::new(&[NODE]);
    let (hub_port, mqtt_port) = (ke_testkit::free_tcp_port(), ke_testkit::free_tcp_port());
    let mut cloud = TestCloud::start(&c, hub_port).await;
    let eventbus =
        format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{mqtt_port}\n");
    let edge = c.edge_at(
        NODE,
        &format!("127.0.0.1:{hub_port}"),
        "127.0.0.1:1",
        false,
        &eventbus,
        true,
    );
    cloud.connected().await;
    // The cloud adds a device (membership, as devicecontroller sends it).
    let add = json!({"event_id": "", "timestamp": 0, "added_devices": [{"id": DEV, "name": DEV, "state": "unknown",
        "twin": {"temperature": {"optional": true, "metadata": {"type": "string"}}}}], "removed_devices": null});
    cloud
        .hub
        .send(Message::new(
            "devicecontroller",
            "twin",
            "update",
            format!("node/{NODE}/membership"),
            add,
        ))
        .unwrap();
    let (dev, mut results) = ke_testkit::eventually(Duration::from_secs(20), "MQTT connect", || async {
        tokio::time::timeout(Duration::from_secs(3), device_client(mqtt_port))
            .await
            .ok()
    })
    .await;
    // Online: an actual value reaches the cloud as twin/edge_updated.
    let resource = format!("node/{NODE}/device/{DEV}/twin/edge_updated");
    let start = std::time::Instant::now();
    loop {
        dev.publish(
            format!("$hw/events/device/{DEV}/twin/update"),
            QoS::AtLeastOnce,
            false,
            update("20"),
        )
        .await
        .unwrap();
        // An update that beats the membership is answered 404 on the same topic and never goes to the
        // cloud: wait for a successful result.
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), results.recv()).await
            && !p.contains("\"code\"")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the device never appeared at the edge"
        );
    }
    cloud
        .upstream(&resource, |m| m.content.to_string().contains("\"20\""))
        .await;

    // The cloud goes away.
    cloud.hub.shutdown().await;
    drop(cloud);
    wait_metric(
        &edge.metrics,
        "edgehub_connected",
        |v| v == 0.0,
        "edge sees the cloud gone",
    )
    .await;
    // Offline, the edge still answers the device and keeps the change.
    dev.publish(
        format!("$hw/events/device/{DEV}/twin/update"),
        QoS::AtLeastOnce,
        false,
        update("42"),
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let p = results.recv().await.unwrap();
            if p.contains("e-42") {
                return p;
            }
        }
    })
    .await
    .expect("twin result while offline");
    assert!(r.contains("\"42\""), "{r}");

    // The cloud comes back on the same address: the offline change arrives.
    let mut cloud = TestCloud::start(&c, hub_port).await;
    cloud.connected().await;
    let m = cloud
        .upstream(&resource, |m| m.content.to_string().contains("\"42\""))
        .await;
    assert!(m.content.is_object(), "edge_updated carries an object: {m:?}");
    assert_eq!(m.route.source, "twin");
}
