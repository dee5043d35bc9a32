//! Protocol-level and robustness tests with hand-driven clients (rumqttc's codec, not its event loop).

use std::time::Duration;

use bytes::BytesMut;
use ke_mqtt::BrokerOptions;
use rumqttc::{
    Connect, ConnectReturnCode, LastWill, Packet, Protocol, PubRel, QoS, Subscribe, SubscribeReasonCode,
};
use tokio::io::AsyncWriteExt;

use crate::common::{Raw, TestBroker, publish, within};

fn connect(id: &str) -> Connect {
    let mut c = Connect::new(id);
    c.keep_alive = 30;
    c
}

async fn expect_refused(broker: &TestBroker, bytes: &[u8], code: ConnectReturnCode) {
    let mut raw = Raw::connect(broker.addr).await;
    raw.stream.write_all(bytes).await.unwrap();
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, code),
        other => panic!("expected CONNACK {code:?}, got {other:?}"),
    }
    assert!(
        raw.recv().await.is_none(),
        "connection must be closed after a refusal"
    );
}

fn encode(p: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.write(&mut out, usize::MAX).unwrap();
    out.to_vec()
}

#[tokio::test]
async fn connect_refusals() {
    let broker = TestBroker::start().await;
    // MQTT 5 (level 5) and MQTT 3.1 style level 3 are refused with 0x01.
    let mut v5 = connect("v5");
    v5.protocol = Protocol::V5;
    expect_refused(
        &broker,
        &encode(Packet::Connect(v5)),
        ConnectReturnCode::RefusedProtocolVersion,
    )
    .await;
    let mut level3 = encode(Packet::Connect(connect("v3")));
    level3[8] = 3; // fixed header (2) + name length (2) + "MQTT" (4) -> protocol level byte
    expect_refused(&broker, &level3, ConnectReturnCode::RefusedProtocolVersion).await;
    // Empty client id requires clean session.
    let mut anon = connect("");
    anon.clean_session = false;
    expect_refused(
        &broker,
        &encode(Packet::Connect(anon)),
        ConnectReturnCode::BadClientId,
    )
    .await;
    // Empty client id with clean session is accepted.
    let mut raw = Raw::mqtt(broker.addr, connect("")).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    broker.stop().await;
}

#[tokio::test]
async fn invalid_filters_get_failure_codes() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::mqtt(broker.addr, connect("subber")).await;
    let mut sub = Subscribe::new("a/#/b", QoS::AtLeastOnce);
    sub.pkid = 3;
    sub.add("ok/+".into(), QoS::ExactlyOnce);
    raw.send(Packet::Subscribe(sub)).await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, 3);
            assert_eq!(
                ack.return_codes,
                [
                    SubscribeReasonCode::Failure,
                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                ]
            );
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    broker.stop().await;
}

/// Incoming QoS 2 gets PUBREC / PUBCOMP and is routed exactly once even if the PUBLISH is repeated.
#[tokio::test]
async fn qos2_handshake_and_exactly_once_ingress() {
    let broker = TestBroker::start().await;
    let mut local = broker.handle.subscribe("q2/#").unwrap();
    let mut raw = Raw::mqtt(broker.addr, connect("q2")).await;
    raw.send(publish("q2/a", QoS::ExactlyOnce, 7, b"once")).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    raw.send(publish("q2/a", QoS::ExactlyOnce, 7, b"once")).await; // retransmission
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    raw.send(Packet::PubRel(PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == 7));
    raw.send(publish("q2/marker", QoS::AtLeastOnce, 8, b"m")).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(a)) if a.pkid == 8));
    let first = within("q2/a", local.recv()).await.unwrap();
    assert_eq!(first.0, "q2/a");
    let second = within("marker", local.recv()).await.unwrap();
    assert_eq!(
        second.0, "q2/marker",
        "the retransmitted QoS 2 publish was routed twice"
    );
    broker.stop().await;
}

#[tokio::test]
async fn garbage_bytes_drop_only_that_client_and_publish_its_will() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("$hw/#", QoS::AtLeastOnce).await;
    let publisher = broker.client("pub").await;

    // Garbage before CONNECT: closed, nothing else happens.
    let mut http = Raw::connect(broker.addr).await;
    http.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    http.closed().await;
    let mut zeros = Raw::connect(broker.addr).await;
    zeros.stream.write_all(&[0u8; 64]).await.unwrap();
    zeros.closed().await;

    // Garbage after a valid CONNECT: closed and the will goes out.
    let mut c = connect("garbler");
    c.last_will = Some(LastWill::new(
        "$hw/events/will/garbler",
        "bye",
        QoS::AtLeastOnce,
        false,
    ));
    let mut garbler = Raw::mqtt(broker.addr, c).await;
    garbler
        .stream
        .write_all(&[0xf0, 0x00, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    garbler.closed().await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("$hw/events/will/garbler", &b"bye"[..])
    );

    // Everyone else is unaffected.
    publisher
        .client
        .publish("$hw/events/upload/t", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    assert_eq!(sub.recv_publish().await.topic, "$hw/events/upload/t");
    broker.stop().await;
}

#[tokio::test]
async fn oversized_packet_drops_that_client() {
    let broker = TestBroker::with(BrokerOptions {
        max_packet_size: 1024,
        ..BrokerOptions::default()
    })
    .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("big/#", QoS::AtMostOnce).await;
    let mut c = connect("big");
    c.last_will = Some(LastWill::new("big/will", "too big", QoS::AtMostOnce, false));
    let mut big = Raw::mqtt(broker.addr, c).await;
    // Only the header of a 4 KiB publish is needed for the broker to refuse it.
    let frame = encode(publish("big/x", QoS::AtMostOnce, 0, &[7u8; 4096]));
    big.stream.write_all(&frame[..16]).await.unwrap();
    big.closed().await;
    assert_eq!(sub.recv_publish().await.topic, "big/will");
    // A small publish from a fresh client still flows.
    let mut small = Raw::mqtt(broker.addr, connect("small")).await;
    small
        .send(publish("big/small", QoS::AtLeastOnce, 1, &[1u8; 512]))
        .await;
    assert!(matches!(small.recv().await, Some(Packet::PubAck(_))));
    assert_eq!(sub.recv_publish().await.topic, "big/small");
    broker.stop().await;
}

#[tokio::test]
async fn keepalive_expiry_drops_a_silent_client_and_publishes_its_will() {
    let broker = TestBroker::start().await;
    let mut wills = broker.handle.subscribe("$hw/events/node/+/will").unwrap();
    // A client that pings within its keepalive stays.
    let mut c = connect("pinger");
    c.keep_alive = 1;
    let mut pinger = Raw::mqtt(broker.addr, c).await;
    // A silent one with keepalive 1 s is dropped after 1.5 s.
    let mut c = connect("silent");
    c.keep_alive = 1;
    c.last_will = Some(LastWill::new(
        "$hw/events/node/silent/will",
        "expired",
        QoS::AtMostOnce,
        false,
    ));
    let mut silent = Raw::mqtt(broker.addr, c).await;
    let silent_closed = async {
        silent.closed().await;
    };
    let pinging = async {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            pinger.send(Packet::PingReq).await;
            assert_eq!(pinger.recv().await, Some(Packet::PingResp));
        }
    };
    tokio::join!(silent_closed, pinging);
    let (topic, payload) = within("will", wills.recv()).await.unwrap();
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("$hw/events/node/silent/will", &b"expired"[..])
    );
    pinger.send(Packet::PingReq).await;
    assert_eq!(
        pinger.recv().await,
        Some(Packet::PingResp),
        "the pinging client must survive"
    );
    broker.stop().await;
}

/// One client floods, another never reads what it subscribed to; a third pair keeps talking.
/// The slow reader's queue stays bounded (messages are dropped and counted) and nobody stalls.
#[tokio::test]
async fn flooding_and_stuck_clients_do_not_stall_others() {
    const FLOOD: usize = 30_000;
    let broker = TestBroker::start().await;

    let mut stuck = Raw::mqtt(broker.addr, connect("stuck")).await;
    stuck
        .send(Packet::Subscribe(Subscribe::new("flood/#", QoS::AtLeastOnce)))
        .await;
    assert!(matches!(stuck.recv().await, Some(Packet::SubAck(_))));
    // From here on `stuck` never reads again.

    let mut flooder = Raw::mqtt(broker.addr, connect("flooder")).await;
    let mut frames = BytesMut::new();
    for i in 0..FLOOD {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            (i % 60_000 + 1) as u16
        };
        publish("flood/data", qos, pkid, &[0x5a; 1024])
            .write(&mut frames, usize::MAX)
            .unwrap();
    }
    let flood = tokio::spawn(async move {
        flooder.stream.write_all(&frames).await.unwrap();
        // The flooder reads its PUBACKs only at the end; the broker must cope with that too.
        flooder
            .send(publish("flood/done", QoS::AtLeastOnce, 65_000, b"done"))
            .await;
        loop {
            match flooder.recv().await {
                Some(Packet::PubAck(a)) if a.pkid == 65_000 => break,
                Some(_) => {}
                None => panic!("flooder was disconnected"),
            }
        }
        flooder
    });

    let mut a = broker.client("a").await;
    let mut b = broker.client("b").await;
    a.subscribe("pong", QoS::AtLeastOnce).await;
    b.subscribe("ping", QoS::AtLeastOnce).await;
    for i in 0..50 {
        a.client
            .publish("ping", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        let ping = b.recv_publish().await;
        b.client
            .publish("pong", QoS::AtLeastOnce, false, ping.payload)
            .await
            .unwrap();
        assert_eq!(a.recv_publish().await.payload, format!("{i}").as_bytes());
    }

    let flooder = within("the flood to finish", flood).await.unwrap();
    let stats = broker.handle.stats();
    assert!(
        stats.messages_dropped > 0,
        "the stuck client's queue must overflow: {stats:?}"
    );
    assert_eq!(
        stats.connected_clients, 4,
        "the stuck client stays connected: {stats:?}"
    );
    a.client
        .publish("ping", QoS::AtLeastOnce, false, "after")
        .await
        .unwrap();
    assert_eq!(&b.recv_publish().await.payload[..], b"after");
    drop((stuck, flooder));
    broker.stop().await;
}
