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

    // The bus subscribes at some point after mosquitto is up: publish until the twin hears it.
    let get = r#"{"event_id":"g1","timestamp":0}"#;
    let topic = "$hw/events/device/d1/twin/get";
    let got = tokio::time::timeout(WAIT, async {
        loop {
            device.publish(topic, get).await;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), hive.twin.recv()).await {
                return m;
            }
        }
    })
    .await
    .expect("the eventbus never forwarded from mosquitto");
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

    hive.core.shutdown().await;
    mosquitto.stop().await;
}
