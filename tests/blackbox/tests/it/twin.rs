//! Device twin end to end: a real cloudcore and a real edgecore (twin + eventbus), devices added
//! the way the cloud adds them (a `membership` message injected through cloudcore's unix socket),
//! and a real MQTT client playing the device, replaying `tests/fixtures/ground-truth/mqtt-twin-transcript.log`.
//!
//! The membership message travels on cloudhub's fire-and-forget lane and the twin does not answer
//! it (as v1.2), so the unix-socket request is sent with a short timeout whose error is ignored;
//! the test then waits for the twin's MQTT publications.

use std::process::Stdio;
use std::time::Duration;

use ke_core::Message;
use ke_testkit::free_tcp_port;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cluster::{Cloud, Cluster, Edge, wait_metric};

const NODE: &str = "edge-node-1";
const WAIT: Duration = Duration::from_secs(20);

/// What the edge publishes (never what the device itself sends).
const EDGE_TOPICS: [&str; 6] = [
    "$hw/events/device/+/twin/update/+",
    "$hw/events/device/+/twin/get/result",
    "$hw/events/device/+/state/update/result",
    "$hw/events/device/+/updated",
    "$hw/events/node/+/membership/updated",
    "$hw/events/node/+/membership/get/result",
];

pub(crate) struct Device {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    pub(crate) async fn connect(port: u16) -> Self {
        let mut o = MqttOptions::new(format!("device-{port}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        if tx.send((p.topic.clone(), text)).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for t in EDGE_TOPICS {
            client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
        }
        for _ in EDGE_TOPICS {
            tokio::time::timeout(WAIT, ack_rx.recv())
                .await
                .expect("suback")
                .unwrap();
        }
        Self { client, rx, task }
    }

    pub(crate) async fn send(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    pub(crate) async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a publication from the edge")
            .unwrap()
    }

    /// Next publication; asserts its topic and returns the normalised payload.
    async fn expect(&mut self, topic: &str) -> Value {
        let (t, p) = self.next().await;
        assert_eq!(t, topic, "payload {p}");
        norm(serde_json::from_str(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
    }

    /// Nothing published for a while (the edge ignores the request, as v1.2).
    async fn quiet(&mut self) {
        if let Ok(Some((t, p))) = tokio::time::timeout(Duration::from_millis(700), self.rx.recv()).await {
            panic!("unexpected publication on {t}: {p}");
        }
    }
}

/// Timestamps, generated ids and clock texts replaced so shapes can be compared.
fn norm(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), &*x) {
                        ("timestamp", Value::Number(_)) => *x = json!(0),
                        ("event_id", Value::String(s)) if s.len() == 36 => *x = json!("<uuid>"),
                        ("last_online", Value::String(_)) => *x = json!("<time>"),
                        _ => walk(x),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn j(text: &str) -> Value {
    norm(serde_json::from_str(text).unwrap())
}

/// Sends a membership update the way devicecontroller does (resource `node/<node>/membership`).
async fn cloud_membership(cloud: &Cloud, content: Value) {
    let m = Message::new(
        "devicecontroller",
        "twin",
        "update",
        format!("node/{NODE}/membership"),
        content,
    );
    // No reply comes back for membership (fire-and-forget lane, v1.2 twin answers nothing).
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        ke_transport::unix::request(&cloud.sock, &m, 1 << 20),
    )
    .await;
}

async fn start(c: &Cluster, eventbus: &str) -> (Cloud, Edge) {
    let cloud = c.cloud_config("");
    let edge = c.edge_full(NODE, &cloud, false, eventbus, true);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    (cloud, edge)
}

/// The device asks for membership until the twin answers (the broker and the twin are up).
async fn first_membership_get(dev: &mut Device) -> Value {
    let topic = format!("$hw/events/node/{NODE}/membership/get");
    for _ in 0..40 {
        dev.send(&topic, r#"{"event_id":"evt-memget-1","timestamp":1795564546503}"#)
            .await;
        if let Ok(Some((t, p))) = tokio::time::timeout(Duration::from_millis(500), dev.rx.recv()).await {
            assert_eq!(t, format!("{topic}/result"));
            return norm(serde_json::from_str(&p).unwrap());
        }
    }
    panic!("the twin never answered membership/get");
}

const ADD_SENSOR: &str = r#"{"event_id":"","timestamp":0,"added_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown","attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1700000000}},"actual":{"value":"19","metadata":{"timestamp":1700000000}},"optional":true,"metadata":{"type":"string"},"expected_version":{"cloud":1,"edge":1},"actual_version":{"cloud":1,"edge":1}}}}],"removed_devices":null}"#;

#[tokio::test]
async fn twin_reproduces_the_v1_2_transcript_over_the_embedded_broker() {
    let c = Cluster::new(&[NODE]);
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let (cloud, mut edge) = start(&c, &eventbus).await;
    let mut dev = ke_testkit::eventually(WAIT, "MQTT connect", || async {
        tokio::time::timeout(Duration::from_secs(3), Device::connect(port))
            .await
            .ok()
    })
    .await;
    let d = "$hw/events/device/sensor-tag-01";

    // 1. membership get on an empty node.
    assert_eq!(
        first_membership_get(&mut dev).await,
        j(r#"{"event_id":"evt-memget-1","timestamp":1,"devices":[]}"#)
    );

    // 2. the cloud adds a device.
    cloud_membership(&cloud, serde_json::from_str(ADD_SENSOR).unwrap()).await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/document")).await,
        j(
            r#"{"event_id":"","timestamp":1,"twin":{"temperature":{"last":null,"current":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/delta")).await,
        j(
            r#"{"event_id":"5581bc09-4bf4-4912-8319-4696f6c923d1","timestamp":1,"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"20"}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/updated")).await,
        j(
            r#"{"event_id":"","timestamp":1,"attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("$hw/events/node/{NODE}/membership/updated"))
            .await,
        j(
            r#"{"event_id":"fafbbbc3-2f9d-46c9-9b1d-b0a1c6c5a0e7","timestamp":1,"added_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown","attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1700000000}},"actual":{"value":"19","metadata":{"timestamp":1700000000}},"optional":true,"metadata":{"type":"string"}}}}],"removed_devices":null}"#
        )
    );

    // 3. membership get after add.
    dev.send(
        &format!("$hw/events/node/{NODE}/membership/get"),
        r#"{"event_id":"evt-memget-2","timestamp":1795564546503}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("$hw/events/node/{NODE}/membership/get/result"))
            .await,
        j(
            r#"{"event_id":"evt-memget-2","timestamp":1,"devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown","attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}}}]}"#
        )
    );

    // 4. twin get.
    dev.send(
        &format!("{d}/twin/get"),
        r#"{"event_id":"evt-twinget-1","timestamp":1795564546503}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/get/result")).await,
        j(
            r#"{"event_id":"evt-twinget-1","timestamp":1,"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}}}"#
        )
    );

    // 5. actual value reported.
    dev.send(&format!("{d}/twin/update"), r#"{"event_id":"evt-twinupd-1","timestamp":1795564546503,"twin":{"temperature":{"actual":{"value":"25"},"metadata":{"type":"Updated"}}}}"#).await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/result")).await,
        j(
            r#"{"event_id":"evt-twinupd-1","timestamp":1,"twin":{"temperature":{"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/document")).await,
        j(
            r#"{"event_id":"evt-twinupd-1","timestamp":1,"twin":{"temperature":{"last":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}},"current":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/delta")).await,
        j(
            r#"{"event_id":"1f01136c-a539-4d78-931e-4ada53d98251","timestamp":1,"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"20"}}"#
        )
    );

    // 6. new expected value.
    dev.send(&format!("{d}/twin/update"), r#"{"event_id":"evt-twinupd-2","timestamp":1795564546503,"twin":{"temperature":{"expected":{"value":"30"},"metadata":{"type":"Updated"}}}}"#).await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/result")).await,
        j(
            r#"{"event_id":"evt-twinupd-2","timestamp":1,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/document")).await,
        j(
            r#"{"event_id":"evt-twinupd-2","timestamp":1,"twin":{"temperature":{"last":{"expected":{"value":"20","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}},"current":{"expected":{"value":"30","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}}"#
        )
    );
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/delta")).await,
        j(
            r#"{"event_id":"5a9287e3-c6aa-4cc6-a07f-c25799e253c5","timestamp":1,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"30"}}"#
        )
    );

    // 7. twin get after updates.
    dev.send(
        &format!("{d}/twin/get"),
        r#"{"event_id":"evt-twinget-2","timestamp":1795564546503}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/get/result")).await,
        j(
            r#"{"event_id":"evt-twinget-2","timestamp":1,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1}},"actual":{"value":"25","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}"#
        )
    );

    // 8. device state.
    dev.send(
        &format!("{d}/state/update"),
        r#"{"event_id":"evt-state-1","timestamp":1795564546503,"state":"online"}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("{d}/state/update/result")).await,
        j(
            r#"{"event_id":"326b3774-429b-4cc9-9939-8f229db028bd","timestamp":1,"device":{"name":"sensor-tag-01","state":"online","last_online":"2026-11-24 23:55:56"}}"#
        )
    );

    // 9. state get is not subscribed: no answer.
    dev.send(
        &format!("{d}/state/get"),
        r#"{"event_id":"evt-stateget-1","timestamp":1795564546503}"#,
    )
    .await;
    dev.quiet().await;

    // 10. unknown device.
    dev.send(
        "$hw/events/device/no-such-device/twin/get",
        r#"{"event_id":"evt-twinget-3","timestamp":1795564546503}"#,
    )
    .await;
    assert_eq!(
        dev.expect("$hw/events/device/no-such-device/twin/get/result")
            .await,
        j(
            r#"{"event_id":"evt-twinget-3","timestamp":1,"code":404,"reason":"Device no-such-device not found while getting twin"}"#
        )
    );

    // 11. malformed update: v1.2's reply on the empty-id topic (then ours on the device's topic).
    dev.send(&format!("{d}/twin/update"), "not-json").await;
    assert_eq!(
        dev.expect("$hw/events/device//twin/update/result").await,
        j(
            r#"{"event_id":"","timestamp":1,"code":400,"reason":"Unmarshal update request body failed, Please check the request"}"#
        )
    );
    assert_eq!(dev.expect(&format!("{d}/twin/update/result")).await["code"], 400);

    // 13. second device added, first removed.
    cloud_membership(&cloud, json!({"event_id":"","timestamp":0,"added_devices":[{"id":"sensor-tag-02","name":"sensor-tag-02","description":"second","state":"online","attributes":{},"twin":{}}],"removed_devices":null})).await;
    assert_eq!(
        dev.expect(&format!("$hw/events/node/{NODE}/membership/updated"))
            .await,
        j(
            r#"{"event_id":"03d2b47c-0e9d-4846-ae6b-be709eb1e979","timestamp":1,"added_devices":[{"id":"sensor-tag-02","name":"sensor-tag-02","description":"second","state":"online"}],"removed_devices":null}"#
        )
    );
    cloud_membership(&cloud, json!({"event_id":"","timestamp":0,"added_devices":null,"removed_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01"}]})).await;
    assert_eq!(
        dev.expect(&format!("$hw/events/node/{NODE}/membership/updated"))
            .await,
        j(
            r#"{"event_id":"449b6864-4ff5-4f87-a4e3-cdd0d4475f76","timestamp":1,"added_devices":null,"removed_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01"}]}"#
        )
    );
    dev.send(
        &format!("$hw/events/node/{NODE}/membership/get"),
        r#"{"event_id":"evt-memget-3","timestamp":1795564546503}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("$hw/events/node/{NODE}/membership/get/result"))
            .await,
        j(
            r#"{"event_id":"evt-memget-3","timestamp":1,"devices":[{"id":"sensor-tag-02","name":"sensor-tag-02","description":"second","state":"online"}]}"#
        )
    );

    // Malformed payloads on every topic the twin listens to: v1.2's replies where it replies,
    // silence where it does not, and the daemon carries on.
    let d2 = "$hw/events/device/sensor-tag-02";
    for bad in ["", "not-json", "[1,2]", "{\"twin\":5}", "\u{0}\u{1}"] {
        dev.send(&format!("{d2}/twin/update"), bad).await;
        assert_eq!(
            dev.expect("$hw/events/device//twin/update/result").await["code"],
            400,
            "{bad:?}"
        );
        assert_eq!(
            dev.expect(&format!("{d2}/twin/update/result")).await["code"],
            400,
            "{bad:?}"
        );
        // A JSON object is a valid get request (only `event_id` is read): answered normally.
        let code = |v: &Value| v.get("code").cloned();
        let want = if bad.starts_with('{') {
            None
        } else {
            Some(json!(400))
        };
        dev.send(&format!("{d2}/twin/get"), bad).await;
        assert_eq!(
            code(&dev.expect(&format!("{d2}/twin/get/result")).await),
            want,
            "{bad:?}"
        );
        dev.send(&format!("$hw/events/node/{NODE}/membership/get"), bad)
            .await;
        let r = dev
            .expect(&format!("$hw/events/node/{NODE}/membership/get/result"))
            .await;
        assert_eq!(code(&r), want, "{bad:?}");
        dev.send(&format!("{d2}/state/update"), bad).await;
        dev.send(&format!("{d2}/twin/cloud_updated"), bad).await;
        dev.send(&format!("{d2}/twin/edge_updated"), bad).await;
        dev.quiet().await;
    }
    // Bad key characters: 400.
    dev.send(
        &format!("{d2}/twin/update"),
        r#"{"event_id":"k","timestamp":1,"twin":{"bad key":{"actual":{"value":"1"}}}}"#,
    )
    .await;
    assert_eq!(
        dev.expect("$hw/events/device//twin/update/result").await["code"],
        400
    );
    assert_eq!(dev.expect(&format!("{d2}/twin/update/result")).await["code"], 400);
    assert!(edge.daemon.running(), "edgecore died:\n{}", edge.daemon.log());

    // The database has exactly the v1.2.1 schema, and no row of the removed device.
    let db = ke_store::rusqlite::Connection::open(&edge.db).unwrap();
    check_schema(&db);
    let left: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM device WHERE id='sensor-tag-01') + (SELECT COUNT(*) FROM device_attr WHERE deviceid='sensor-tag-01') + (SELECT COUNT(*) FROM device_twin WHERE deviceid='sensor-tag-01')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let (desc, state, last): (String, String, String) = db
        .query_row(
            "SELECT description, state, last_online FROM device WHERE id='sensor-tag-02'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (desc.as_str(), state.as_str(), last.as_str()),
        ("second", "online", "")
    );
}

/// Name, declared type, NOT NULL, primary key.
type Column = (&'static str, &'static str, bool, bool);

/// `sqlite_master` and `PRAGMA table_info` equal `tests/fixtures/ground-truth/edgecore-db-schema.sql`.
fn check_schema(db: &ke_store::rusqlite::Connection) {
    let mut names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    assert_eq!(
        names,
        ["device", "device_attr", "device_twin", "meta", "sqlite_sequence"]
    );
    let expected: [(&str, &[Column]); 3] = [
        (
            "device",
            &[
                ("id", "varchar(64)", true, true),
                ("name", "TEXT", false, false),
                ("description", "TEXT", false, false),
                ("state", "TEXT", false, false),
                ("last_online", "TEXT", false, false),
            ],
        ),
        (
            "device_attr",
            &[
                ("id", "INTEGER", true, true),
                ("deviceid", "TEXT", false, false),
                ("name", "TEXT", false, false),
                ("description", "TEXT", false, false),
                ("value", "TEXT", false, false),
                ("optional", "bool", false, false),
                ("attr_type", "TEXT", false, false),
                ("metadata", "TEXT", false, false),
            ],
        ),
        (
            "device_twin",
            &[
                ("id", "INTEGER", true, true),
                ("deviceid", "TEXT", false, false),
                ("name", "TEXT", false, false),
                ("description", "TEXT", false, false),
                ("expected", "TEXT", false, false),
                ("actual", "TEXT", false, false),
                ("expected_meta", "TEXT", false, false),
                ("actual_meta", "TEXT", false, false),
                ("expected_version", "TEXT", false, false),
                ("actual_version", "TEXT", false, false),
                ("optional", "bool", false, false),
                ("attr_type", "TEXT", false, false),
                ("metadata", "TEXT", false, false),
            ],
        ),
    ];
    for (table, cols) in expected {
        let got: Vec<(String, String, bool, bool)> = db
            .prepare(&format!("PRAGMA table_info(`{table}`)"))
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(1)?,
                    r.get::<_, String>(2)?.to_uppercase(),
                    r.get::<_, i64>(3)? != 0,
                    r.get::<_, i64>(5)? != 0,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(String, String, bool, bool)> = cols
            .iter()
            .map(|(n, t, nn, pk)| ((*n).to_owned(), t.to_uppercase(), *nn, *pk))
            .collect();
        assert_eq!(got, want, "columns of {table}");
    }
}

#[tokio::test]
async fn twin_works_through_an_external_mosquitto() {
    const MOSQUITTO: &str = "/usr/sbin/mosquitto";
    if !std::path::Path::new(MOSQUITTO).exists() {
        eprintln!("SKIPPED: {MOSQUITTO} not installed (hack/test.sh installs it)");
        return;
    }
    let port = free_tcp_port();
    let mut broker = tokio::process::Command::new(MOSQUITTO)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let c = Cluster::new(&[NODE]);
    let eventbus = format!("  eventbus:\n    mqttMode: 2\n    mqttServerExternal: tcp://127.0.0.1:{port}\n");
    let (cloud, _edge) = start(&c, &eventbus).await;
    let mut dev = ke_testkit::eventually(WAIT, "MQTT connect to mosquitto", || async {
        tokio::time::timeout(Duration::from_secs(3), Device::connect(port))
            .await
            .ok()
    })
    .await;
    // The edge subscribes after connecting: ask until it answers.
    assert_eq!(
        first_membership_get(&mut dev).await,
        j(r#"{"event_id":"evt-memget-1","timestamp":1,"devices":[]}"#)
    );
    cloud_membership(&cloud, serde_json::from_str(ADD_SENSOR).unwrap()).await;
    let d = "$hw/events/device/sensor-tag-01";
    dev.expect(&format!("{d}/twin/update/document")).await;
    dev.expect(&format!("{d}/twin/update/delta")).await;
    dev.expect(&format!("{d}/updated")).await;
    dev.expect(&format!("$hw/events/node/{NODE}/membership/updated"))
        .await;
    dev.send(
        &format!("{d}/twin/update"),
        r#"{"event_id":"x1","timestamp":1,"twin":{"temperature":{"actual":{"value":"20"}}}}"#,
    )
    .await;
    assert_eq!(
        dev.expect(&format!("{d}/twin/update/result")).await,
        j(
            r#"{"event_id":"x1","timestamp":1,"twin":{"temperature":{"actual":{"value":"20","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"}}}}"#
        )
    );
    let doc = dev.expect(&format!("{d}/twin/update/document")).await;
    assert_eq!(doc["twin"]["temperature"]["current"]["actual"]["value"], "20");
    // Expected == actual now: no delta. The next thing is the answer to a get.
    dev.send(&format!("{d}/twin/get"), r#"{"event_id":"g","timestamp":1}"#)
        .await;
    let got = dev.expect(&format!("{d}/twin/get/result")).await;
    assert_eq!(got["twin"]["temperature"]["actual"]["value"], "20");
    // Stop mosquitto by its PID.
    broker.kill().await.unwrap();
}

/// 20 times: a burst of twin updates (each sets three twins at once) and `kill -9` in the middle.
/// After every crash the database passes `PRAGMA integrity_check`, the device has all its rows,
/// and its three twins hold the same value (an update is one transaction); the restarted twin
/// serves what is on disk.
#[tokio::test]
async fn kill_9_during_twin_updates_never_half_writes_a_device() {
    let c = Cluster::new(&[NODE]);
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let (cloud, mut edge) = start(&c, &eventbus).await;
    let d = "$hw/events/device/crash-1";
    let config = c.path().join(format!("edgecore-{NODE}.yaml"));
    for round in 0..20u64 {
        let mut dev = ke_testkit::eventually(WAIT, "MQTT connect", || async {
            tokio::time::timeout(Duration::from_secs(3), Device::connect(port))
                .await
                .ok()
        })
        .await;
        first_membership_get(&mut dev).await;
        if round == 0 {
            cloud_membership(&cloud, json!({"event_id":"","timestamp":0,"added_devices":[{"id":"crash-1","name":"crash-1","description":"kill test",
                "attributes":{"a":{"value":"1","optional":true,"metadata":{"type":"string"}}},
                "twin":{"t1":{"expected":{"value":"0"},"optional":true,"metadata":{"type":"int"},"expected_version":{"cloud":1,"edge":0}},
                        "t2":{"expected":{"value":"0"},"optional":true,"metadata":{"type":"int"},"expected_version":{"cloud":1,"edge":0}},
                        "t3":{"expected":{"value":"0"},"optional":true,"metadata":{"type":"int"},"expected_version":{"cloud":1,"edge":0}}}}],"removed_devices":null})).await;
            dev.expect(&format!("{d}/twin/update/document")).await;
        }
        // The restarted twin serves what is on disk.
        dev.send(&format!("{d}/twin/get"), r#"{"event_id":"g","timestamp":1}"#)
            .await;
        let got = loop {
            let (t, p) = dev.next().await;
            if t == format!("{d}/twin/get/result") {
                break serde_json::from_str::<Value>(&p).unwrap();
            }
        };
        let served = got["twin"]["t1"]["actual"]["value"].clone();
        assert_eq!(served, got["twin"]["t2"]["actual"]["value"]);
        assert_eq!(served, got["twin"]["t3"]["actual"]["value"]);
        let client = dev.client.clone();
        let topic = format!("{d}/twin/update");
        let burst = tokio::spawn(async move {
            for i in 0u64.. {
                let v = round * 100_000 + i;
                let p = format!(
                    r#"{{"event_id":"b{v}","timestamp":1,"twin":{{"t1":{{"actual":{{"value":"{v}"}}}},"t2":{{"actual":{{"value":"{v}"}}}},"t3":{{"actual":{{"value":"{v}"}}}}}}}}"#
                );
                if client
                    .publish(&topic, QoS::AtMostOnce, false, p.into_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        // Let some updates land, at a different point of the burst each round.
        let mut results = 0;
        let target = 5 + (round * 7) % 30;
        while results < target {
            let (t, _) = dev.next().await;
            if t == format!("{d}/twin/update/result") {
                results += 1;
            }
        }
        edge.daemon.kill9();
        burst.abort();
        drop(dev);

        let db = ke_store::rusqlite::Connection::open(&edge.db).unwrap();
        let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok", "round {round}");
        let counts: (i64, i64, i64) = db
            .query_row(
                "SELECT (SELECT COUNT(*) FROM device WHERE id='crash-1'), (SELECT COUNT(*) FROM device_attr WHERE deviceid='crash-1'), (SELECT COUNT(*) FROM device_twin WHERE deviceid='crash-1')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(counts, (1, 1, 3), "round {round}");
        let actual: Vec<String> = db
            .prepare("SELECT actual FROM device_twin WHERE deviceid='crash-1' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            actual.iter().all(|a| *a == actual[0]),
            "round {round}: half-written update {actual:?}"
        );
        assert!(!actual[0].is_empty(), "round {round}: acknowledged updates lost");
        drop(db);
        edge.daemon = ke_testkit::Daemon::start(
            &format!("{NODE}-{round}"),
            &ke_testkit::bin("edgecore"),
            &["--config", config.to_str().unwrap()],
            c.path(),
        );
    }
}
