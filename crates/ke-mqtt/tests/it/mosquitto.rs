//! Interoperability with Debian's mosquitto clients (`apt-get install mosquitto-clients`).
//! Each test is skipped, with a message, when the binaries are not installed.

use std::path::Path;
use std::process::Stdio;

use ke_mqtt::QoS;
use tokio::process::{Child, Command};

use crate::common::{TestBroker, within};

fn have_mosquitto() -> bool {
    let found = ["/usr/bin/mosquitto_pub", "/usr/bin/mosquitto_sub"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !found {
        eprintln!(
            "SKIPPED: mosquitto_pub/mosquitto_sub not installed (apt-get install mosquitto-clients); CI must install them"
        );
    }
    found
}

fn base(cmd: &str, broker: &TestBroker) -> Command {
    let mut c = Command::new(cmd);
    c.args(["-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn run_ok(mut cmd: Command) -> String {
    let out = within("mosquitto client", cmd.output()).await.unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn finish(child: Child) -> String {
    let out = within("mosquitto_sub to exit", child.wait_with_output())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn mosquitto_pub_sub_on_kubeedge_topics() {
    if !have_mosquitto() {
        return;
    }
    let broker = TestBroker::start().await;
    let mut sub = base("mosquitto_sub", &broker);
    sub.args(["-i", "mosq-sub", "-q", "1", "-v", "-C", "2"]);
    sub.args(["-t", "$hw/events/device/+/twin/+", "-t", "$hw/events/upload/#"]);
    let sub = sub.spawn().unwrap();
    broker
        .wait_for("mosquitto_sub subscriptions", |s| s.subscriptions == 2)
        .await;

    let payload =
        r#"{"event_id":"123","timestamp":1585000000000,"twin":{"power-status":{"actual":{"value":"OFF"}}}}"#;
    let mut p = base("mosquitto_pub", &broker);
    p.args([
        "-q",
        "1",
        "-t",
        "$hw/events/device/led-1/twin/update",
        "-m",
        payload,
    ]);
    run_ok(p).await;
    let mut p = base("mosquitto_pub", &broker);
    p.args(["-q", "0", "-t", "$hw/events/upload/temperature", "-m", "21.5"]);
    run_ok(p).await;

    let out = finish(sub).await;
    assert_eq!(
        out,
        format!("$hw/events/device/led-1/twin/update {payload}\n$hw/events/upload/temperature 21.5\n")
    );
    broker.stop().await;
}

/// mosquitto_pub -q 2 completes its PUBREC/PUBREL/PUBCOMP exchange and exits; one delivery.
#[tokio::test]
async fn mosquitto_qos2_publish_completes() {
    if !have_mosquitto() {
        return;
    }
    let broker = TestBroker::start().await;
    let mut local = broker
        .handle
        .subscribe("$hw/events/node/+/membership/get")
        .unwrap();
    let mut p = base("mosquitto_pub", &broker);
    p.args([
        "-q",
        "2",
        "-t",
        "$hw/events/node/edge-1/membership/get",
        "-m",
        r#"{"event_id":"m1"}"#,
    ]);
    run_ok(p).await;
    broker
        .handle
        .publish(
            "$hw/events/node/zz/membership/get",
            "marker",
            QoS::AtMostOnce,
            false,
        )
        .unwrap();
    let (topic, payload) = within("qos2 message", local.recv()).await.unwrap();
    assert_eq!(
        (topic.as_str(), &payload[..]),
        (
            "$hw/events/node/edge-1/membership/get",
            &br#"{"event_id":"m1"}"#[..]
        )
    );
    assert_eq!(
        within("marker", local.recv()).await.unwrap().0,
        "$hw/events/node/zz/membership/get"
    );
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_retained_and_will() {
    if !have_mosquitto() {
        return;
    }
    let broker = TestBroker::start().await;
    let mut p = base("mosquitto_pub", &broker);
    p.args([
        "-r",
        "-q",
        "1",
        "-t",
        "$hw/events/device/led-1/state/update",
        "-m",
        r#"{"state":"online"}"#,
    ]);
    run_ok(p).await;
    let mut s = base("mosquitto_sub", &broker);
    s.args([
        "-q",
        "1",
        "-v",
        "-C",
        "1",
        "-t",
        "$hw/events/device/+/state/update",
    ]);
    assert_eq!(
        run_ok(s).await,
        "$hw/events/device/led-1/state/update {\"state\":\"online\"}\n"
    );

    // A mosquitto_sub with a will, killed (no DISCONNECT): the will is delivered.
    broker
        .wait_for("the first mosquitto_sub to leave", |st| st.connected_clients == 0)
        .await;
    let mut wills = broker.handle.subscribe("$hw/events/upload/will").unwrap();
    let mut s = base("mosquitto_sub", &broker);
    s.args([
        "-i",
        "mapper-x",
        "-t",
        "nothing",
        "--will-topic",
        "$hw/events/upload/will",
        "--will-payload",
        "mapper-x died",
    ]);
    let mut child = s.spawn().unwrap();
    broker
        .wait_for("mosquitto_sub connected", |st| st.subscriptions == 1)
        .await;
    child.kill().await.unwrap();
    let (topic, payload) = within("will", wills.recv()).await.unwrap();
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("$hw/events/upload/will", &b"mapper-x died"[..])
    );
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_old_protocol_is_refused() {
    if !have_mosquitto() {
        return;
    }
    let broker = TestBroker::start().await;
    let mut p = base("mosquitto_pub", &broker);
    p.args(["-V", "mqttv31", "-t", "a", "-m", "b"]);
    let out = within("mosquitto_pub", p.output()).await.unwrap();
    assert!(!out.status.success(), "MQTT 3.1 must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("protocol version"),
        "unexpected error text: {stderr}"
    );
    broker.stop().await;
}
