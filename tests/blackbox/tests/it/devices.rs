//! DeviceController against the real local Kubernetes control plane, the real cloudcore and a real
//! edgecore (device twin on, embedded MQTT broker), with an MQTT client playing the mapper.

use std::time::Duration;

use ke_core::Message;
use ke_testkit::k8s::LocalK8s;
use ke_testkit::{FakeEdge, eventually, free_tcp_port};
use serde_json::{Value, json};

use crate::cluster::{Cluster, wait_metric};
use crate::twin::Device as Mqtt;

const T: Duration = Duration::from_secs(30);

/// The next publication on `topic` whose payload `pred` accepts (others are skipped).
async fn next_on(mqtt: &mut Mqtt, topic: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        let (t, p) = mqtt.next().await;
        if t == topic
            && let Ok(v) = serde_json::from_str::<Value>(&p)
            && pred(&v)
        {
            return v;
        }
    }
    panic!("no {what} on {topic} within {T:?}");
}

fn lists_device(v: &Value, key: &str, id: &str) -> bool {
    v[key]
        .as_array()
        .is_some_and(|a| a.iter().any(|d| d["id"] == json!(id)))
}

#[tokio::test]
async fn devicecontroller_between_the_crds_and_a_real_edge() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, fake_node, ns, dev) = (
        format!("dc-edge-{id}"),
        format!("dc-fake-{id}"),
        format!("dc-{id}"),
        "led-01",
    );
    let c = Cluster::new(&[&node, &fake_node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let _edge = c.edge_full(&node, &cloud, false, &eventbus, true);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    let mut mqtt = Mqtt::connect(port).await;
    let membership = format!("$hw/events/node/{node}/membership/updated");

    // --- a model and a device bound to the edge node -------------------------------------------
    k8s.apply(&format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: devices.kubeedge.io/v1alpha1
kind: DeviceModel
metadata: {{name: led-light, namespace: {ns}}}
spec:
  properties:
  - name: power-status
    description: on or off
    type:
      string: {{accessMode: ReadWrite, defaultValue: 'OFF'}}
  - name: gpio-pin-number
    type:
      int: {{accessMode: ReadOnly, defaultValue: 18}}
  propertyVisitors:
  - propertyName: power-status
    modbus: {{register: CoilRegister, offset: 2, limit: 1, scale: 1, isSwap: true}}
---
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata: {{name: sensor-02, namespace: {ns}}}
spec:
  deviceModelRef: {{name: led-light}}
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - {{key: '', operator: In, values: [{fake_node}]}}
---
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata:
  name: {dev}
  namespace: {ns}
  labels: {{description: LEDLight, model: led-light}}
spec:
  deviceModelRef: {{name: led-light}}
  protocol:
    modbus:
      tcp: {{ip: 127.0.0.1, port: 5020, slaveID: '1'}}
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - {{key: '', operator: In, values: [{node}]}}
status:
  twins:
  - propertyName: power-status
    desired:
      value: 'OFF'
      metadata: {{type: string}}
"
    ));
    let added = next_on(&mut mqtt, &membership, "membership add", |v| {
        lists_device(v, "added_devices", dev)
    })
    .await;
    let d = &added["added_devices"][0];
    assert_eq!(d["description"], json!("LEDLight"));
    assert_eq!(d["twin"]["power-status"]["expected"]["value"], json!("OFF"));
    assert_eq!(d["twin"]["power-status"]["metadata"]["type"], json!("string"));

    let cm = format!("device-profile-config-{node}");
    let text = eventually(T, "device profile ConfigMap", || {
        let o = k8s.kubectl(&[
            "get",
            "configmap",
            &cm,
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.deviceProfile\\.json}",
        ]);
        let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        async move { (o.status.success() && text.contains("deviceModels")).then_some(text) }
    })
    .await;
    let expected = format!(
        r#"{{"deviceInstances":[{{"id":"{dev}","name":"{dev}","protocol":"modbus-tcp-{dev}","model":"led-light"}}],"deviceModels":[{{"name":"led-light","properties":[{{"name":"power-status","dataType":"string","description":"on or off","accessMode":"ReadWrite","defaultValue":"OFF"}},{{"name":"gpio-pin-number","dataType":"int","accessMode":"ReadOnly","defaultValue":18}}]}}],"protocols":[{{"name":"modbus-tcp-{dev}","protocol":"modbus-tcp","protocol_config":{{"ip":"127.0.0.1","port":5020,"slaveID":"1"}}}}],"propertyVisitors":[{{"name":"power-status","propertyName":"power-status","modelName":"led-light","protocol":"modbus","visitorConfig":{{"register":"CoilRegister","offset":2,"limit":1,"scale":1,"isSwap":true}}}}]}}"#
    );
    assert_eq!(text, expected);

    // --- an edge asking for its membership detail gets its full device list ---------------------
    // (sensor-02 was created before led-01 and events are handled in order: it is known by now)
    let mut fake = eventually(T, "cloudhub accepts the fake edge", || {
        let f = FakeEdge::ws(&cloud.ws, &fake_node, c.pki.client_tls(&fake_node));
        async move { f.await.ok() }
    })
    .await;
    let ask = Message::new(
        "twin",
        "resource",
        "get",
        "membership/detail",
        r#"{"event_type":"group_membership_event","event_id":"123","operation":"detail"}"#,
    );
    fake.send(&ask).await;
    let deadline = tokio::time::Instant::now() + T;
    let detail = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no membership detail reply"
        );
        if let Some(m) = fake.recv(Duration::from_secs(1)).await
            && m.parent_id() == ask.id()
        {
            break m;
        }
    };
    assert_eq!(
        (detail.source(), detail.group(), detail.resource()),
        ("devicecontroller", "twin", "membership/detail")
    );
    let devices = detail.content["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(devices.len(), 1, "{}", detail.content);
    assert_eq!(devices[0]["id"], json!("sensor-02"));
    drop(fake);

    // --- desired value changed in the CR: the edge publishes the delta ----------------------------
    k8s.kubectl_ok(&[
        "patch",
        "device",
        dev,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"status":{"twins":[{"propertyName":"power-status","desired":{"value":"ON","metadata":{"type":"string"}}}]}}"#,
    ]);
    let delta_topic = format!("$hw/events/device/{dev}/twin/update/delta");
    next_on(&mut mqtt, &delta_topic, "delta ON", |v| {
        v["delta"]["power-status"] == json!("ON")
    })
    .await;

    // --- the mapper reports the actual value: it lands in status.twins[].reported -----------------
    mqtt.send(
        &format!("$hw/events/device/{dev}/twin/update"),
        r#"{"event_id":"mapper-1","timestamp":0,"twin":{"power-status":{"actual":{"value":"ON"},"metadata":{"type":"Updated"}}}}"#,
    )
    .await;
    let reported = eventually(T, "reported twin in the Device", || {
        let o = k8s.kubectl(&["get", "device", dev, "-n", &ns, "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        let r = v["status"]["twins"][0]["reported"].clone();
        async move { (r["value"] == json!("ON")).then_some(v) }
    })
    .await;
    let twin = &reported["status"]["twins"][0];
    assert_eq!(twin["desired"]["value"], json!("ON"), "desired kept: {twin}");
    assert!(
        twin["reported"]["metadata"]["timestamp"]
            .as_str()
            .is_some_and(|t| t.parse::<u64>().is_ok()),
        "{twin}"
    );

    // --- the Device is deleted: removed at the edge, profile ConfigMap gone ----------------------
    k8s.kubectl_ok(&["delete", "device", dev, "-n", &ns]);
    next_on(&mut mqtt, &membership, "membership removal", |v| {
        lists_device(v, "removed_devices", dev)
    })
    .await;
    eventually(T, "profile ConfigMap deleted", || {
        let o = k8s.kubectl(&["get", "configmap", &cm, "-n", &ns]);
        async move { (!o.status.success()).then_some(()) }
    })
    .await;

    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
