//! The in-process API used by edgecore's eventbus.

use bytes::Bytes;
use ke_mqtt::{Error, QoS};

use crate::common::{TestBroker, within};

const KUBEEDGE: [&str; 5] = [
    "$hw/events/upload/#",
    "$hw/events/device/+/state/update",
    "$hw/events/device/+/twin/+",
    "$hw/events/node/+/membership/get",
    "SYS/dis/upload_records",
];

#[tokio::test]
async fn eventbus_subscribes_to_the_five_topics_in_process() {
    let broker = TestBroker::start().await;
    let mut rx: Vec<_> = KUBEEDGE
        .iter()
        .map(|f| broker.handle.subscribe(f).unwrap())
        .collect();
    assert_eq!(broker.handle.stats().local_subscribers, 5);

    let mapper = broker.client("mapper").await;
    let sent = [
        (0, "$hw/events/upload/temperature"),
        (1, "$hw/events/device/led-1/state/update"),
        (2, "$hw/events/device/led-1/twin/update"),
        (3, "$hw/events/node/edge-1/membership/get"),
        (4, "SYS/dis/upload_records"),
    ];
    for (_, topic) in sent {
        mapper
            .client
            .publish(topic, QoS::AtLeastOnce, false, format!("payload of {topic}"))
            .await
            .unwrap();
    }
    for (i, topic) in sent {
        let (t, payload) = within(topic, rx[i].recv()).await.unwrap();
        assert_eq!(t, topic);
        assert_eq!(payload, Bytes::from(format!("payload of {topic}")));
    }
    // Each channel got exactly its own message: a broker-side publish to all five ends each stream.
    for (i, (_, topic)) in sent.iter().enumerate() {
        broker
            .handle
            .publish(topic, "second", QoS::AtMostOnce, false)
            .unwrap();
        assert_eq!(
            within("second", rx[i].recv()).await.unwrap(),
            (topic.to_string(), Bytes::from("second"))
        );
    }
    for r in &mut rx {
        assert!(r.try_recv().is_err());
    }
    broker.stop().await;
}

#[tokio::test]
async fn in_process_publish_reaches_clients_and_retains() {
    let broker = TestBroker::start().await;
    let mut device = broker.client("device").await;
    device
        .subscribe("$hw/events/device/led-1/twin/update/+", QoS::AtLeastOnce)
        .await;
    broker
        .handle
        .publish(
            "$hw/events/device/led-1/twin/update/result",
            r#"{"event_id":"1"}"#,
            QoS::AtLeastOnce,
            false,
        )
        .unwrap();
    let p = device.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), p.qos),
        ("$hw/events/device/led-1/twin/update/result", QoS::AtLeastOnce)
    );

    broker
        .handle
        .publish("node/connection", "cloud_connected", QoS::AtMostOnce, true)
        .unwrap();
    let mut late = broker.client("late").await;
    late.subscribe("node/connection", QoS::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"cloud_connected");
    let mut local = broker.handle.subscribe("node/#").unwrap();
    assert_eq!(
        within("retained", local.recv()).await.unwrap().1,
        Bytes::from("cloud_connected")
    );
    broker.stop().await;
}

#[tokio::test]
async fn publish_to_clients_skips_in_process_subscribers() {
    let broker = TestBroker::start().await;
    let mut local = broker.handle.subscribe("$hw/events/upload/#").unwrap();
    let mut client = broker.client("app").await;
    client.subscribe("$hw/events/upload/#", QoS::AtMostOnce).await;
    broker
        .handle
        .publish_to_clients("$hw/events/upload/x", "from-cloud", QoS::AtMostOnce, false)
        .unwrap();
    let p = client.recv_publish().await;
    assert_eq!(&p.payload[..], b"from-cloud");
    // The same publish through `publish` does reach the local subscriber, so its silence above
    // is the filter at work, not a slow channel.
    broker
        .handle
        .publish("$hw/events/upload/x", "loopback", QoS::AtMostOnce, false)
        .unwrap();
    let (_, payload) = within("local", local.recv()).await.unwrap();
    assert_eq!(
        payload,
        Bytes::from("loopback"),
        "the client-only publish never reached it"
    );
    broker.stop().await;
}

#[tokio::test]
async fn invalid_names_and_dropped_receivers() {
    let broker = TestBroker::start().await;
    assert!(matches!(
        broker.handle.publish("a/+", "x", QoS::AtMostOnce, false),
        Err(Error::InvalidTopic { .. })
    ));
    assert!(matches!(
        broker.handle.publish("", "x", QoS::AtMostOnce, false),
        Err(Error::InvalidTopic { .. })
    ));
    assert!(matches!(
        broker.handle.subscribe("a/#/b"),
        Err(Error::InvalidFilter { .. })
    ));
    let rx = broker.handle.subscribe("a/b").unwrap();
    drop(rx);
    broker.handle.publish("a/b", "x", QoS::AtMostOnce, false).unwrap();
    assert_eq!(broker.handle.stats().local_subscribers, 0);
    broker.stop().await;
}

#[tokio::test]
async fn a_full_local_channel_drops_instead_of_blocking() {
    let broker = TestBroker::with(ke_mqtt::BrokerOptions {
        local_queue_len: 2,
        ..Default::default()
    })
    .await;
    let mut rx = broker.handle.subscribe("x").unwrap();
    for i in 0..5 {
        broker
            .handle
            .publish("x", format!("{i}"), QoS::AtLeastOnce, false)
            .unwrap();
    }
    assert_eq!(broker.handle.stats().messages_dropped, 3);
    assert_eq!(rx.recv().await.unwrap().1, Bytes::from("0"));
    assert_eq!(rx.recv().await.unwrap().1, Bytes::from("1"));
    broker.stop().await;
}
