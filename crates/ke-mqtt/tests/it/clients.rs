//! End-to-end behaviour with rumqttc clients.

use rumqttc::{LastWill, Packet, QoS, SubscribeReasonCode};

use crate::common::{TestBroker, within};

fn topics(got: &[(String, String)]) -> Vec<&str> {
    got.iter().map(|(t, _)| t.as_str()).collect()
}

#[tokio::test]
async fn publish_subscribe_qos0_qos1_and_qos2_downgraded() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    assert_eq!(
        sub.subscribe("a/+", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        sub.subscribe("b/#", QoS::AtMostOnce).await,
        SubscribeReasonCode::Success(QoS::AtMostOnce)
    );
    assert_eq!(
        sub.subscribe("c/x", QoS::ExactlyOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let mut publisher = broker.client("pub").await;
    publisher
        .client
        .publish("a/1", QoS::AtLeastOnce, false, "one")
        .await
        .unwrap();
    publisher
        .client
        .publish("b/c/d", QoS::AtLeastOnce, false, "two")
        .await
        .unwrap();
    publisher
        .client
        .publish("c/x", QoS::ExactlyOnce, false, "three")
        .await
        .unwrap();
    publisher
        .client
        .publish("a/1/deeper", QoS::AtMostOnce, false, "no")
        .await
        .unwrap();
    publisher
        .client
        .publish("a/2", QoS::AtMostOnce, false, "four")
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..4 {
        let p = sub.recv_publish().await;
        assert!(!p.retain);
        got.push((p.topic, p.qos, String::from_utf8(p.payload.to_vec()).unwrap()));
    }
    assert_eq!(
        got,
        [
            ("a/1".into(), QoS::AtLeastOnce, "one".into()),
            ("b/c/d".into(), QoS::AtMostOnce, "two".into()),
            ("c/x".into(), QoS::AtLeastOnce, "three".into()),
            ("a/2".into(), QoS::AtMostOnce, "four".into()),
        ]
    );

    // The publisher saw the acknowledgements of its QoS 1 and QoS 2 publishes.
    let (mut pubacks, mut pubcomps) = (0, 0);
    while pubacks < 2 || pubcomps < 1 {
        match publisher.next().await.unwrap() {
            Packet::PubAck(_) => pubacks += 1,
            Packet::PubRec(_) => {}
            Packet::PubComp(_) => pubcomps += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    broker.stop().await;
}

/// KubeEdge's five subscriptions match their `$hw` topics; a bare `#` or `+/...` never sees `$` topics.
#[tokio::test]
async fn kubeedge_dollar_topics_and_wildcards() {
    let broker = TestBroker::start().await;
    let mut edge = broker.client("edge").await;
    for f in [
        "$hw/events/upload/#",
        "$hw/events/device/+/state/update",
        "$hw/events/device/+/twin/+",
        "$hw/events/node/+/membership/get",
        "SYS/dis/upload_records",
    ] {
        assert_eq!(
            edge.subscribe(f, QoS::AtLeastOnce).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
    }
    let mut everything = broker.client("everything").await;
    everything.subscribe("#", QoS::AtMostOnce).await;
    everything.subscribe("+/events/#", QoS::AtMostOnce).await;
    let mut dollar_hw = broker.client("dollar-hw").await;
    dollar_hw.subscribe("$hw/#", QoS::AtMostOnce).await;

    let publisher = broker.client("mapper").await;
    let published = [
        "$hw/events/upload/temperature",
        "$hw/events/device/led-1/state/update",
        "$hw/events/device/led-1/twin/update",
        "$hw/events/device/led-1/twin/get",
        "$hw/events/device/led-1/twin/cloud_updated",
        "$hw/events/device/led-1/twin/update/result",
        "$hw/events/node/edge-1/membership/get",
        "$hw/events/node/edge-1/membership/get/result",
        "SYS/dis/upload_records",
        "hw/events/upload/x",
    ];
    for t in published {
        publisher
            .client
            .publish(t, QoS::AtLeastOnce, false, t)
            .await
            .unwrap();
    }
    // Markers: one topic each subscriber is known to match, published last (per-publisher order holds).
    publisher
        .client
        .publish("$hw/events/upload/zz-marker", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    publisher
        .client
        .publish("zz-marker", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();

    let got = edge.recv_until("$hw/events/upload/zz-marker").await;
    assert_eq!(
        topics(&got),
        [
            "$hw/events/upload/temperature",
            "$hw/events/device/led-1/state/update",
            "$hw/events/device/led-1/twin/update",
            "$hw/events/device/led-1/twin/get",
            "$hw/events/device/led-1/twin/cloud_updated",
            "$hw/events/node/edge-1/membership/get",
            "SYS/dis/upload_records",
            "$hw/events/upload/zz-marker",
        ]
    );
    let got = everything.recv_until("zz-marker").await;
    assert_eq!(
        topics(&got),
        ["SYS/dis/upload_records", "hw/events/upload/x", "zz-marker"]
    );
    let got = dollar_hw.recv_until("$hw/events/upload/zz-marker").await;
    assert_eq!(got.len(), 9, "every $hw topic plus the marker: {got:?}");
    broker.stop().await;
}

#[tokio::test]
async fn retained_messages_are_stored_delivered_and_cleared() {
    let broker = TestBroker::start().await;
    let publisher = broker.client("pub").await;
    publisher
        .client
        .publish("$hw/events/device/led-1/state", QoS::AtLeastOnce, true, "on")
        .await
        .unwrap();
    publisher
        .client
        .publish("$hw/events/device/led-2/state", QoS::AtMostOnce, true, "off")
        .await
        .unwrap();
    broker.wait_for("2 retained messages", |s| s.retained == 2).await;

    let mut late = broker.client("late").await;
    late.subscribe("$hw/events/device/led-1/#", QoS::AtLeastOnce)
        .await;
    let p = late.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain, p.qos),
        (
            "$hw/events/device/led-1/state",
            &b"on"[..],
            true,
            QoS::AtLeastOnce
        )
    );

    // A live delivery has retain = 0 even when published retained; an empty retained payload clears.
    publisher
        .client
        .publish("$hw/events/device/led-1/state", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let p = late.recv_publish().await;
    assert!(!p.retain && p.payload.is_empty());
    broker.wait_for("1 retained message", |s| s.retained == 1).await;

    let mut later = broker.client("later").await;
    later
        .subscribe("$hw/events/device/+/state", QoS::AtMostOnce)
        .await;
    publisher
        .client
        .publish("$hw/events/device/zz/state", QoS::AtMostOnce, false, "marker")
        .await
        .unwrap();
    let got = later.recv_until("$hw/events/device/zz/state").await;
    assert_eq!(
        got,
        [
            ("$hw/events/device/led-2/state".to_owned(), "off".to_owned()),
            ("$hw/events/device/zz/state".to_owned(), "marker".to_owned()),
        ]
    );
    broker.stop().await;
}

#[tokio::test]
async fn will_is_published_on_abnormal_close_only() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;

    let mut polite = broker.options("polite");
    polite.set_last_will(LastWill::new("will/polite", "gone", QoS::AtLeastOnce, false));
    let mut polite = crate::common::Client::connect(polite).await;
    let mut rude = broker.options("rude");
    rude.set_last_will(LastWill::new("will/rude", "gone", QoS::AtLeastOnce, false));
    let rude = crate::common::Client::connect(rude).await;
    broker.wait_for("3 clients", |s| s.connected_clients == 3).await;

    polite.client.disconnect().await.unwrap();
    polite.closed().await;
    broker
        .wait_for("polite client gone", |s| s.connected_clients == 2)
        .await;
    rude.kill();
    let p = watcher.recv_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("will/rude", &b"gone"[..]));
    broker
        .handle
        .publish("will/marker", "m", QoS::AtLeastOnce, false)
        .unwrap();
    assert_eq!(
        watcher.recv_publish().await.topic,
        "will/marker",
        "no will for a clean DISCONNECT"
    );
    broker.stop().await;
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queued_qos1() {
    let broker = TestBroker::start().await;
    let mut opts = broker.options("mapper-1");
    opts.set_clean_session(false);
    let mut device = crate::common::Client::connect(opts.clone()).await;
    assert!(!device.session_present);
    device
        .subscribe("$hw/events/device/+/twin/update/delta", QoS::AtLeastOnce)
        .await;
    device.client.disconnect().await.unwrap();
    device.closed().await;
    drop(device);
    broker
        .wait_for("mapper offline", |s| s.connected_clients == 0 && s.sessions == 1)
        .await;

    for i in 0..3 {
        let topic = format!("$hw/events/device/led-{i}/twin/update/delta");
        broker
            .handle
            .publish(&topic, format!("d{i}"), QoS::AtLeastOnce, false)
            .unwrap();
    }
    broker
        .handle
        .publish(
            "$hw/events/device/qos0/twin/update/delta",
            "lost",
            QoS::AtMostOnce,
            false,
        )
        .unwrap();

    let mut device = crate::common::Client::connect(opts).await;
    assert!(device.session_present);
    let mut payloads = Vec::new();
    for _ in 0..3 {
        let p = device.recv_publish().await;
        assert_eq!(p.qos, QoS::AtLeastOnce);
        payloads.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(payloads, ["d0", "d1", "d2"]);
    // Still subscribed after the resume, without subscribing again.
    broker
        .handle
        .publish(
            "$hw/events/device/led-9/twin/update/delta",
            "live",
            QoS::AtLeastOnce,
            false,
        )
        .unwrap();
    assert_eq!(&device.recv_publish().await.payload[..], b"live");
    device.client.disconnect().await.unwrap();
    device.closed().await;

    // A clean-session connect with the same id discards the stored session.
    let clean = broker.client("mapper-1").await;
    assert!(!clean.session_present);
    broker
        .wait_for("session replaced", |s| s.subscriptions == 0)
        .await;
    broker.stop().await;
}

#[tokio::test]
async fn second_connect_with_same_client_id_takes_over() {
    let broker = TestBroker::start().await;
    let mut first = broker.client("twin-app").await;
    first.subscribe("x/#", QoS::AtLeastOnce).await;
    let mut second = broker.client("twin-app").await;
    let err = first.closed().await;
    assert!(!err.is_empty());
    second.subscribe("y", QoS::AtLeastOnce).await;
    broker
        .handle
        .publish("y", "to-second", QoS::AtLeastOnce, false)
        .unwrap();
    assert_eq!(&second.recv_publish().await.payload[..], b"to-second");
    assert_eq!(broker.handle.stats().connected_clients, 1);
    broker.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("a/#", QoS::AtMostOnce).await;
    sub.subscribe("b", QoS::AtMostOnce).await;
    sub.client.unsubscribe("a/#").await.unwrap();
    loop {
        if let Packet::UnsubAck(_) = sub.next().await.unwrap() {
            break;
        }
    }
    broker
        .handle
        .publish("a/x", "no", QoS::AtMostOnce, false)
        .unwrap();
    broker.handle.publish("b", "yes", QoS::AtMostOnce, false).unwrap();
    assert_eq!(sub.recv_publish().await.topic, "b");
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_disconnects_clients_and_closes_local_channels() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("c").await;
    let mut local = broker.handle.subscribe("#").unwrap();
    let handle = broker.handle.clone();
    broker.stop().await;
    client.closed().await;
    assert!(within("local channel end", local.recv()).await.is_none());
    assert!(matches!(
        handle.publish("a", "b", QoS::AtMostOnce, false),
        Err(ke_mqtt::Error::Shutdown)
    ));
}
