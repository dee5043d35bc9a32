//! External mode against a real mosquitto (Debian package `mosquitto`), started on a free
//! loopback port and killed at the end. Skipped, with a message, if the binary is absent.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use eventbus::{EventBus, EventBusOptions, MqttMode};
use tokio::process::{Child, Command};

use crate::common::{Client, Hive, WAIT, check_envelope, recv};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Mosquitto(Child);

impl Mosquitto {
    fn start(port: u16) -> Self {
        let child = Command::new(MOSQUITTO)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self(child)
    }

    async fn stop(mut self) {
        // Killed by its own PID (tokio's Child::kill signals exactly this process).
        self.0.kill().await.unwrap();
    }
}

#[tokio::test]
async fn external_mode_bridges_mosquitto_and_reconnects() {
    if !Path::new(MOSQUITTO).exists() {
        eprintln!("SKIPPED: {MOSQUITTO} not installed (apt-get install mosquitto); CI must install it");
        return;
    }
    let port = free_port();
    let mut hive = Hive::new();
    // The eventbus starts before the broker: it must keep retrying until mosquitto is up.
    let bus = EventBus::new(EventBusOptions {
        mode: MqttMode::External,
        external_server: format!("tcp://127.0.0.1:{port}"),
        reconnect_interval: Duration::from_millis(100),
        ..EventBusOptions::default()
    })
    .unwrap();
    assert!(bus.local_addr().is_none());
    hive.core.register(bus).unwrap();
    hive.core.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mosquitto = Mosquitto::start(port);

    let mut device = Client::connect("led-1", port).await;
    device.subscribe("$hw/events/device/d1/twin/get/result").await;

    let get = r#"{"event_id":"g1","timestamp":0}"#;
    let topic = "$hw/events/device/d1/twin/get";
    let got = publish_until_twin_hears(&device, &mut hive, topic, get).await;
    check_envelope(&got, topic, get);

    let reply = r#"{"event_id":"g1","timestamp":1,"twin":{}}"#;
    hive.twin_publishes("$hw/events/device/d1/twin/get/result", reply)
        .await;
    assert_eq!(
        device.recv_text().await,
        (
            "$hw/events/device/d1/twin/get/result".to_owned(),
            reply.to_owned()
        )
    );

    device.publish("$hw/events/upload/temperature", "21.5").await;
    let up = recv(&mut hive.hub).await;
    assert_eq!(up.resource(), "JGh3L2V2ZW50cy91cGxvYWQvdGVtcGVyYXR1cmU=");
    check_envelope(&up, "$hw/events/upload/temperature", "21.5");

    // The broker restarts: the bus reconnects and subscribes again.
    drop(device);
    mosquitto.stop().await;
    let mosquitto = Mosquitto::start(port);
    let device = Client::connect("led-1", port).await;
    let got = publish_until_twin_hears(&device, &mut hive, topic, "again").await;
    check_envelope(&got, topic, "again");

    hive.core.shutdown().await;
    mosquitto.stop().await;
}

/// The bus subscribes at some point after the broker is up: publish until the twin hears it.
async fn publish_until_twin_hears(
    device: &Client,
    hive: &mut Hive,
    topic: &str,
    payload: &str,
) -> ke_core::Message {
    tokio::time::timeout(WAIT, async {
        loop {
            device.publish(topic, payload).await;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), hive.twin.recv()).await {
                return m;
            }
        }
    })
    .await
    .expect("the eventbus never forwarded from mosquitto")
}

#[tokio::test]
async fn both_mode_bridges_the_embedded_broker_and_mosquitto() {
    if !Path::new(MOSQUITTO).exists() {
        eprintln!("SKIPPED: {MOSQUITTO} not installed (apt-get install mosquitto); CI must install it");
        return;
    }
    let port = free_port();
    let mosquitto = Mosquitto::start(port);
    let mut hive = Hive::new();
    let bus = EventBus::bind(EventBusOptions {
        mode: MqttMode::Both,
        internal_server: "tcp://127.0.0.1:0".into(),
        external_server: format!("tcp://127.0.0.1:{port}"),
        reconnect_interval: Duration::from_millis(100),
        ..EventBusOptions::default()
    })
    .await
    .unwrap();
    let internal_port = bus.local_addr().unwrap().port();
    hive.core.register(bus).unwrap();
    hive.core.start();

    let mut outside = Client::connect("outside", port).await;
    let mut inside = Client::connect("inside", internal_port).await;
    outside.subscribe("$hw/events/device/+/state/update/result").await;
    inside.subscribe("$hw/events/device/+/state/update/result").await;

    let state = r#"{"event_id":"","timestamp":0,"state":"online"}"#;
    let topic = "$hw/events/device/d9/state/update";
    let got = publish_until_twin_hears(&outside, &mut hive, topic, state).await;
    check_envelope(&got, topic, state);
    // The embedded broker's path (skipping late copies of the retried publish above).
    inside.publish(topic, "from-inside").await;
    let got = loop {
        let m = recv(&mut hive.twin).await;
        if m.content_str() != Some(state) {
            break m;
        }
    };
    check_envelope(&got, topic, "from-inside");

    // Edge publishes go to both brokers.
    let result = "$hw/events/device/d9/state/update/result";
    hive.twin_publishes(result, "{}").await;
    assert_eq!(outside.recv_text().await, (result.to_owned(), "{}".to_owned()));
    assert_eq!(inside.recv_text().await, (result.to_owned(), "{}".to_owned()));

    hive.core.shutdown().await;
    mosquitto.stop().await;
}
