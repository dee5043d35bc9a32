//! The twin on a real beehive and a real SQLite store; `eventbus` and `websocket` are mailboxes
//! the test reads (the eventbus and edgehub themselves are covered by their own crates and by the
//! black-box tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use devicetwin::{DeviceTwin, DeviceTwinOptions, Health};
use ke_beehive::{Beehive, Core, Mailbox};
use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_store::Store;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

struct Env {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    hive: Beehive,
    core: Option<Core>,
    bus: Mailbox,
    hub: Mailbox,
    health: Health,
}

impl Env {
    async fn start(dir: tempfile::TempDir, resend: Duration) -> Self {
        let db = dir.path().join("edgecore.db");
        let store = Store::open(&db).unwrap();
        let hive = Beehive::default();
        let bus = hive.register(module::EVENTBUS, group::BUS).unwrap();
        let hub = hive.register(module::EDGEHUB, group::HUB).unwrap();
        let mut core = Core::new(hive.clone());
        let twin = DeviceTwin::new(
            DeviceTwinOptions {
                node_name: "edge-node-1".into(),
                resend_interval: resend,
                ..Default::default()
            },
            store,
        );
        let health = twin.health();
        core.register(twin).unwrap();
        core.start();
        Self {
            _dir: dir,
            db,
            hive,
            core: Some(core),
            bus,
            hub,
            health,
        }
    }

    async fn new() -> Self {
        Self::start(tempfile::tempdir().unwrap(), Duration::from_secs(3600)).await
    }

    async fn mqtt(&self, topic: &str, payload: &str) {
        let m = Message::new(
            module::BUS,
            group::USER,
            op::RESPONSE,
            URL_SAFE.encode(topic),
            payload,
        );
        self.hive.send_to_group(group::TWIN, m).await.unwrap();
    }

    async fn cloud(&self, operation: &str, resource: &str, content: Value) -> Message {
        let m = Message::new(
            module::DEVICECONTROLLER,
            group::TWIN,
            operation,
            resource,
            content,
        );
        self.hive.send_to_group(group::TWIN, m.clone()).await.unwrap();
        m
    }

    async fn link(&self, up: bool) {
        let c = if up {
            res::CLOUD_CONNECTED
        } else {
            res::CLOUD_DISCONNECTED
        };
        let m = Message::new(
            module::EDGEHUB_EVENTS,
            group::TWIN,
            op::PUBLISH,
            res::NODE_CONNECTION,
            c,
        );
        self.hive.send_to_group(group::TWIN, m).await.unwrap();
    }

    /// Next MQTT publication: (topic, payload JSON).
    async fn published(&mut self) -> (String, Value) {
        let m = tokio::time::timeout(WAIT, self.bus.recv())
            .await
            .expect("a publication")
            .unwrap();
        assert_eq!(m.operation(), op::PUBLISH);
        let text = m.content_str().expect("string payload").to_owned();
        (m.resource().to_owned(), serde_json::from_str(&text).unwrap())
    }

    async fn sent_to_cloud(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.hub.recv())
            .await
            .expect("a cloud message")
            .unwrap()
    }

    async fn stop(mut self) -> tempfile::TempDir {
        self.core.take().unwrap().shutdown().await;
        self._dir
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

fn sensor() -> Value {
    json!({"event_id":"","timestamp":0,"added_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown",
      "attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},
      "twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1700000000}},"actual":{"value":"19","metadata":{"timestamp":1700000000}},
        "optional":true,"metadata":{"type":"string"},"expected_version":{"cloud":1,"edge":1},"actual_version":{"cloud":1,"edge":1}}}}],"removed_devices":null})
}

#[tokio::test]
async fn membership_add_publishes_like_v1_2_and_stores_one_device() {
    let mut e = Env::new().await;
    e.cloud(op::UPDATE, "membership", sensor()).await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/document");
    assert_eq!(
        norm(p),
        json!({"event_id":"","timestamp":0,"twin":{"temperature":{"last":null,"current":{"expected":{"value":"20","metadata":{"timestamp":0}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}}}})
    );
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/delta");
    assert_eq!(
        norm(p),
        json!({"event_id":"<uuid>","timestamp":0,"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":0}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"20"}})
    );
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/updated");
    assert_eq!(
        norm(p),
        json!({"event_id":"","timestamp":0,"attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}}})
    );
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/node/edge-node-1/membership/updated");
    assert_eq!(
        norm(p),
        json!({"event_id":"<uuid>","timestamp":0,"added_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown",
          "attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},
          "twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":0}},"actual":{"value":"19","metadata":{"timestamp":0}},"optional":true,"metadata":{"type":"string"}}}}],"removed_devices":null})
    );
    // Rows, written as one transaction, empty strings for unset text.
    let db = ke_store::rusqlite::Connection::open(&e.db).unwrap();
    let dev: (String, String, String, String, String) = db
        .query_row("SELECT * FROM device", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    assert_eq!(
        dev,
        (
            "sensor-tag-01".into(),
            "sensor-tag-01".into(),
            "IntegrationTest".into(),
            "unknown".into(),
            String::new()
        )
    );
    let attr: (String, String, String, String, i64, String, String) = db
        .query_row(
            "SELECT deviceid, name, description, value, optional, attr_type, metadata FROM device_attr",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        attr,
        (
            "sensor-tag-01".into(),
            "model".into(),
            String::new(),
            "CC2650".into(),
            1,
            "string".into(),
            "{}".into()
        )
    );
    let twin: (String, String, String, String, i64, String) = db
        .query_row(
            "SELECT expected, actual, expected_version, actual_version, optional, attr_type FROM device_twin",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(
        twin,
        (
            "20".into(),
            "19".into(),
            r#"{"cloud":1,"edge":1}"#.into(),
            r#"{"cloud":1,"edge":1}"#.into(),
            1,
            "string".into()
        )
    );
    assert!(e.health.is_healthy());
    e.stop().await;
}

#[tokio::test]
async fn mqtt_requests_get_v1_2_replies_and_errors() {
    let mut e = Env::new().await;
    e.cloud(op::UPDATE, "membership", sensor()).await;
    for _ in 0..4 {
        e.published().await;
    }
    e.mqtt("$hw/events/device/sensor-tag-01/twin/update", r#"{"event_id":"u1","timestamp":1,"twin":{"temperature":{"actual":{"value":"25"},"metadata":{"type":"Updated"}}}}"#).await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/result");
    assert_eq!(
        norm(p),
        json!({"event_id":"u1","timestamp":0,"twin":{"temperature":{"actual":{"value":"25","metadata":{"timestamp":0}},"optional":true,"metadata":{"type":"string"}}}})
    );
    let (t, _) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/document");
    let (t, _) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/delta");

    e.mqtt(
        "$hw/events/device/no-such-device/twin/get",
        r#"{"event_id":"g3","timestamp":1}"#,
    )
    .await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/no-such-device/twin/get/result");
    assert_eq!(
        norm(p),
        json!({"event_id":"g3","timestamp":0,"code":404,"reason":"Device no-such-device not found while getting twin"})
    );

    e.mqtt("$hw/events/device/sensor-tag-01/twin/update", "not-json")
        .await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device//twin/update/result");
    assert_eq!(
        norm(p),
        json!({"event_id":"","timestamp":0,"code":400,"reason":devicetwin::REASON_UNMARSHAL})
    );
    let (t, _) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/result");

    e.mqtt(
        "$hw/events/device/nodev/twin/update",
        r#"{"event_id":"u9","timestamp":1,"twin":{"x":{"actual":{"value":"1"}}}}"#,
    )
    .await;
    let (_, p) = e.published().await;
    assert_eq!(
        norm(p),
        json!({"event_id":"u9","timestamp":0,"code":404,"reason":devicetwin::REASON_NO_DEVICE})
    );

    // Type violation on an existing value: 400 on the device's topic, nothing changed.
    e.mqtt("$hw/events/device/sensor-tag-01/twin/update", r#"{"event_id":"n1","timestamp":1,"twin":{"level":{"actual":{"value":"3"},"metadata":{"type":"int"}}}}"#).await;
    for _ in 0..3 {
        e.published().await;
    }
    e.mqtt(
        "$hw/events/device/sensor-tag-01/twin/update",
        r#"{"event_id":"n2","timestamp":1,"twin":{"level":{"actual":{"value":"abc"}}}}"#,
    )
    .await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/result");
    assert_eq!(p["code"], 400);

    e.mqtt("$hw/events/node/whatever/membership/get", "{]").await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/node/edge-node-1/membership/get/result");
    assert_eq!(p["code"], 400);

    e.mqtt(
        "$hw/events/device/sensor-tag-01/state/update",
        r#"{"event_id":"s","timestamp":1,"state":"online"}"#,
    )
    .await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/state/update/result");
    assert_eq!(
        norm(p),
        json!({"event_id":"<uuid>","timestamp":0,"device":{"name":"sensor-tag-01","state":"online","last_online":"<time>"}})
    );
    assert!(e.health.is_healthy());
    e.stop().await;
}

#[tokio::test]
async fn offline_changes_reach_the_cloud_after_reconnect_and_stay_until_confirmed() {
    let mut e = Env::start(tempfile::tempdir().unwrap(), Duration::from_millis(200)).await;
    e.cloud(op::UPDATE, "membership", sensor()).await;
    for _ in 0..4 {
        e.published().await;
    }
    // Offline: a device reports a value.
    e.mqtt(
        "$hw/events/device/sensor-tag-01/twin/update",
        r#"{"event_id":"o1","timestamp":1,"twin":{"temperature":{"actual":{"value":"30"}}}}"#,
    )
    .await;
    for _ in 0..3 {
        e.published().await;
    }
    assert!(e.hub.is_empty(), "nothing goes to the cloud while offline");
    e.link(true).await;
    let detail = e.sent_to_cloud().await;
    assert_eq!(
        (detail.operation(), detail.resource(), detail.group()),
        (op::GET, "membership/detail", group::RESOURCE)
    );
    let asked: Value = serde_json::from_str(detail.content_str().unwrap()).unwrap();
    assert_eq!(asked["group_id"], "edge-node-1");
    assert_eq!(asked["operation"], "detail");
    let up = e.sent_to_cloud().await;
    assert_eq!(
        (up.operation(), up.resource(), up.source()),
        (op::UPDATE, "device/sensor-tag-01/twin/edge_updated", module::TWIN)
    );
    assert_eq!(up.content["twin"]["temperature"]["actual"]["value"], "30");
    assert_eq!(
        up.content["twin"]["temperature"]["actual_version"],
        json!({"cloud":1,"edge":2})
    );
    // Not confirmed: sent again.
    let again = e.sent_to_cloud().await;
    assert_eq!(again.id(), up.id());
    // Confirmed: never again.
    let confirm =
        Message::new(module::DEVICECONTROLLER, group::TWIN, op::RESPONSE, "x", "OK").with_parent(up.id());
    e.hive.send_to_group(group::TWIN, confirm).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    while let Some(m) = e.hub.try_recv() {
        // Anything still in flight before the confirmation is allowed; nothing after it.
        assert_eq!(m.id(), up.id());
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(e.hub.try_recv().is_none(), "confirmed message sent again");
    e.stop().await;
}

#[tokio::test]
async fn cloud_sync_uses_version_vectors_and_state_survives_restart() {
    let mut e = Env::new().await;
    e.cloud(op::UPDATE, "membership", sensor()).await;
    for _ in 0..4 {
        e.published().await;
    }
    // A newer cloud version is taken.
    e.cloud(op::UPDATE, "device/sensor-tag-01/twin/cloud_updated", json!({"event_id":"c1","timestamp":1,
        "twin":{"temperature":{"expected":{"value":"22"},"optional":true,"metadata":{"type":"string"},"expected_version":{"cloud":2,"edge":1}}}})).await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/document");
    assert_eq!(p["event_id"], "c1");
    assert_eq!(p["twin"]["temperature"]["current"]["expected"]["value"], "22");
    e.published().await; // delta
    // A stale one is refused and the edge's state is reported to the cloud when connected.
    e.link(true).await;
    e.sent_to_cloud().await; // membership/detail
    e.cloud(
        op::UPDATE,
        "device/sensor-tag-01/twin/cloud_updated",
        json!({"event_id":"c2","timestamp":1,
        "twin":{"temperature":{"expected":{"value":"99"},"expected_version":{"cloud":1,"edge":0}}}}),
    )
    .await;
    let (t, _) = e.published().await;
    assert_eq!(t, "$hw/events/device/sensor-tag-01/twin/update/delta");
    let back = e.sent_to_cloud().await;
    assert_eq!(back.resource(), "device/sensor-tag-01/twin/edge_updated");
    assert_eq!(back.content["twin"]["temperature"]["expected"]["value"], "22");
    // Cloud tombstone.
    e.cloud(op::UPDATE, "device/sensor-tag-01/twin/cloud_updated", json!({"event_id":"c3","timestamp":1,
        "twin":{"temperature":{"expected":{"value":"22"},"metadata":{"type":"deleted"},"expected_version":{"cloud":3,"edge":1}}}})).await;
    let (_, p) = e.published().await;
    assert_eq!(p["twin"]["temperature"]["current"], Value::Null);
    let dir = e.stop().await;
    // Restart on the same file: the device is there, the twin is a tombstone with NULL values.
    {
        let db = ke_store::rusqlite::Connection::open(dir.path().join("edgecore.db")).unwrap();
        let (exp, kind): (Option<String>, String) = db
            .query_row("SELECT expected, attr_type FROM device_twin", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((exp, kind.as_str()), (None, "deleted"));
    }
    let mut e = Env::start(dir, Duration::from_secs(3600)).await;
    e.mqtt(
        "$hw/events/node/edge-node-1/membership/get",
        r#"{"event_id":"m","timestamp":1}"#,
    )
    .await;
    let (_, p) = e.published().await;
    assert_eq!(p["devices"][0]["id"], "sensor-tag-01");
    e.mqtt(
        "$hw/events/device/sensor-tag-01/twin/get",
        r#"{"event_id":"g","timestamp":1}"#,
    )
    .await;
    let (_, p) = e.published().await;
    assert_eq!(p["twin"], json!({}));
    // Removal deletes every row of the device.
    e.cloud(op::UPDATE, "membership", json!({"event_id":"","timestamp":0,"added_devices":null,"removed_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01"}]})).await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/node/edge-node-1/membership/updated");
    assert_eq!(
        norm(p),
        json!({"event_id":"<uuid>","timestamp":0,"added_devices":null,"removed_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01"}]})
    );
    let db = ke_store::rusqlite::Connection::open(&e.db).unwrap();
    for table in ["device", "device_attr", "device_twin"] {
        let n: i64 = db
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    e.stop().await;
}

#[tokio::test]
async fn membership_detail_from_the_cloud_is_the_full_device_set() {
    let mut e = Env::new().await;
    e.cloud(op::UPDATE, "membership", sensor()).await;
    for _ in 0..4 {
        e.published().await;
    }
    // The answer to `membership/detail` lists another device only: it is added, the old one removed.
    e.cloud(
        op::RESPONSE,
        "membership/detail",
        json!({"event_id":"d","timestamp":1,"devices":[{"id":"led-1","name":"led-1","description":"LEDLight"}]}),
    )
    .await;
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/node/edge-node-1/membership/updated");
    assert_eq!(p["added_devices"][0]["id"], "led-1");
    let (t, p) = e.published().await;
    assert_eq!(t, "$hw/events/node/edge-node-1/membership/updated");
    assert_eq!(p["removed_devices"][0]["id"], "sensor-tag-01");
    e.mqtt(
        "$hw/events/node/edge-node-1/membership/get",
        r#"{"event_id":"m","timestamp":1}"#,
    )
    .await;
    let (_, p) = e.published().await;
    assert_eq!(
        norm(p),
        json!({"event_id":"m","timestamp":0,"devices":[{"id":"led-1","name":"led-1","description":"LEDLight"}]})
    );
    e.stop().await;
}
