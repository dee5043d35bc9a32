//! mapper-sdk against real parts: inotify on a ConfigMap-shaped volume, the embedded MQTT broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::time::Duration;

use ke_mqtt::{Broker, BrokerOptions, QoS};
use mapper_sdk::{MqttClient, twin, watch};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn profile_with(ids: &[&str]) -> String {
    let devs: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": id, "model": "m"}))
        .collect();
    serde_json::json!({"deviceInstances": devs}).to_string()
}

/// A ConfigMap volume update: new timestamped dir, `..data` re-pointed by an atomic rename; the
/// file itself is a symlink through `..data` and never changes inode.
#[tokio::test]
async fn configmap_volume_update_reloads_and_survives_bad_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/deviceProfile.json"), profile_with(&["a"])).unwrap();
    symlink("..v1", d.join("..data")).unwrap();
    symlink("..data/deviceProfile.json", d.join("deviceProfile.json")).unwrap();
    let cancel = CancellationToken::new();
    let mut rx = watch::watch_profile(&d.join("deviceProfile.json"), cancel.clone()).unwrap();
    assert_eq!(rx.borrow_and_update().device_instances.len(), 1);

    let swap = |v: &str, text: String| {
        std::fs::create_dir(d.join(v)).unwrap();
        std::fs::write(d.join(v).join("deviceProfile.json"), text).unwrap();
        symlink(v, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    };
    swap("..v2", profile_with(&["a", "b"]));
    tokio::time::timeout(WAIT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(rx.borrow_and_update().device_instances.len(), 2);

    // a broken profile is not applied; the next good one is
    swap("..v3", "{not json".into());
    swap("..v4", profile_with(&["c"]));
    tokio::time::timeout(WAIT, rx.changed()).await.unwrap().unwrap();
    let p = rx.borrow_and_update().clone();
    assert_eq!(p.device_instances.len(), 1);
    assert_eq!(p.device_instances[0].id, "c");
    cancel.cancel();
}

#[tokio::test]
async fn missing_profile_starts_empty_and_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deviceProfile.json");
    let cancel = CancellationToken::new();
    let mut rx = watch::watch_profile(&path, cancel.clone()).unwrap();
    assert!(rx.borrow_and_update().device_instances.is_empty());
    std::fs::write(&path, profile_with(&["x"])).unwrap();
    tokio::time::timeout(WAIT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(rx.borrow_and_update().device_instances[0].id, "x");
    cancel.cancel();
}

#[tokio::test]
async fn mqtt_client_talks_to_the_embedded_broker() {
    let cancel = CancellationToken::new();
    let broker = Broker::bind("127.0.0.1:0", BrokerOptions::default())
        .await
        .unwrap();
    let url = format!("tcp://{}", broker.local_addr());
    let handle = broker.handle();
    broker.spawn(cancel.clone());
    let mut seen = handle.subscribe("$hw/events/device/+/twin/update").unwrap();
    let (client, mut incoming) =
        MqttClient::start(&url, "sdk-test", &[twin::DELTA_FILTER], cancel.clone()).unwrap();

    // the subscription is in place once a delta gets through
    let delta = br#"{"event_id":"e","timestamp":1,"twin":{},"delta":{"p":"1"}}"#;
    let got = ke_testkit::eventually(WAIT, "delta delivered", || {
        let _ = handle.publish(
            "$hw/events/device/d1/twin/update/delta",
            delta.to_vec(),
            QoS::AtMostOnce,
            false,
        );
        let r = incoming.try_recv().ok();
        async move { r }
    })
    .await;
    assert_eq!(got.topic, "$hw/events/device/d1/twin/update/delta");
    let parsed: twin::TwinDelta = serde_json::from_slice(&got.payload).unwrap();
    assert_eq!(parsed.delta["p"], "1");

    client
        .publish_json(
            &twin::twin_update_topic("d1"),
            &twin::actual_update("p", "1", "int"),
        )
        .await
        .unwrap();
    let (topic, payload) = tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!(topic, "$hw/events/device/d1/twin/update");
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["twin"]["p"]["actual"]["value"], "1");
    assert_eq!(v["twin"]["p"]["metadata"]["type"], "int");
    assert_eq!(v["event_id"], "");
    cancel.cancel();
}
