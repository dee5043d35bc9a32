//! Internal mode: the embedded broker, real MQTT clients, a real beehive with a fake twin and hub.

use eventbus::{EventBus, EventBusOptions, MqttMode};
use ke_core::Message;
use ke_core::names::{group, module, op, res};

use crate::common::{Client, Hive, check_envelope, recv};

async fn start_internal(hive: &mut Hive) -> u16 {
    let bus = EventBus::bind(EventBusOptions {
        mode: MqttMode::Internal,
        internal_server: "tcp://127.0.0.1:0".into(),
        node_name: "edge-1".into(),
        ..EventBusOptions::default()
    })
    .await
    .unwrap();
    let port = bus.local_addr().unwrap().port();
    assert!(hive.core.register(bus).unwrap());
    hive.core.start();
    port
}

#[tokio::test]
async fn device_messages_reach_the_twin_and_twin_publishes_reach_devices() {
    let mut hive = Hive::new();
    let port = start_internal(&mut hive).await;
    let mut device = Client::connect("led-1", port).await;
    device.subscribe("$hw/events/device/d1/twin/update/result").await;

    let update =
        r#"{"event_id":"123","timestamp":1585000000000,"twin":{"power-status":{"actual":{"value":"OFF"}}}}"#;
    device.publish("$hw/events/device/d1/twin/update", update).await;
    let got = recv(&mut hive.twin).await;
    check_envelope(&got, "$hw/events/device/d1/twin/update", update);

    device
        .publish("$hw/events/node/edge-1/membership/get", r#"{"event_id":"m1"}"#)
        .await;
    let got = recv(&mut hive.twin).await;
    check_envelope(
        &got,
        "$hw/events/node/edge-1/membership/get",
        r#"{"event_id":"m1"}"#,
    );

    let result = r#"{"event_id":"123","timestamp":1585036800979,"twin":{}}"#;
    hive.twin_publishes("$hw/events/device/d1/twin/update/result", result)
        .await;
    assert_eq!(
        device.recv_text().await,
        (
            "$hw/events/device/d1/twin/update/result".to_owned(),
            result.to_owned()
        )
    );
    // Nothing of this went to the cloud.
    assert!(hive.hub.try_recv().is_none());
    hive.core.shutdown().await;
}

#[tokio::test]
async fn uploads_go_to_the_cloud_and_cloud_operations_are_served() {
    let mut hive = Hive::new();
    let port = start_internal(&mut hive).await;
    let mut app = Client::connect("app", port).await;
    app.subscribe("node/connection").await;

    app.publish("$hw/events/upload/temperature", "21.5").await;
    let got = recv(&mut hive.hub).await;
    assert_eq!(got.resource(), "JGh3L2V2ZW50cy91cGxvYWQvdGVtcGVyYXR1cmU=");
    check_envelope(&got, "$hw/events/upload/temperature", "21.5");

    app.publish("SYS/dis/upload_records", "rec").await;
    let got = recv(&mut hive.hub).await;
    assert_eq!(got.resource(), "SYS/dis/upload_records");
    assert_eq!(got.content_str(), Some("rec"));

    // The cloud subscribes to a custom topic. The connection event sent right after is a barrier:
    // the mailbox is FIFO, so once the app sees it the subscription is in place.
    let sub = Message::new(module::EDGECONTROLLER, group::USER, op::SUBSCRIBE, "custom/#", ());
    hive.hive.send_to_group(group::BUS, sub).await.unwrap();
    let connected = Message::new(
        module::EDGEHUB_EVENTS,
        group::BUS,
        op::PUBLISH,
        res::NODE_CONNECTION,
        res::CLOUD_CONNECTED,
    );
    hive.hive.send_to_group(group::BUS, connected).await.unwrap();
    assert_eq!(
        app.recv_text().await,
        ("node/connection".to_owned(), "cloud_connected".to_owned())
    );
    app.publish("custom/a", "hello").await;
    check_envelope(&recv(&mut hive.hub).await, "custom/a", "hello");

    // `message`: the inner object is republished as JSON on its topic.
    app.subscribe("cmd/1").await;
    let m = Message::new(
        module::EDGECONTROLLER,
        group::USER,
        op::MESSAGE,
        "",
        serde_json::json!({"message": {"topic": "cmd/1", "value": 7}}),
    );
    hive.hive.send(module::EVENTBUS, m).await.unwrap();
    let (topic, payload) = app.recv_text().await;
    assert_eq!(topic, "cmd/1");
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v, serde_json::json!({"topic": "cmd/1", "value": 7}));
    assert!(hive.twin.try_recv().is_none());
    hive.core.shutdown().await;
}

#[tokio::test]
async fn uploads_without_a_hub_are_dropped_and_the_bus_keeps_working() {
    let mut hive = Hive::new();
    assert!(hive.hive.cleanup(module::EDGEHUB));
    let port = start_internal(&mut hive).await;
    let dev = Client::connect("dev", port).await;
    dev.publish("$hw/events/upload/x", "lost").await;
    dev.publish("$hw/events/device/d2/state/update", r#"{"state":"online"}"#)
        .await;
    check_envelope(
        &recv(&mut hive.twin).await,
        "$hw/events/device/d2/state/update",
        r#"{"state":"online"}"#,
    );
    hive.core.shutdown().await;
}
