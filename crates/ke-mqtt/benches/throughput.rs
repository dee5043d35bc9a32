//! Messages per second through the broker on loopback, one rumqttc publisher -> one rumqttc subscriber.
//! Run: `cargo bench -p ke-mqtt --bench throughput` (prints figures; asserts nothing).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ke_mqtt::{Broker, BrokerOptions, QoS};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 100_000;
const PAYLOAD: usize = 64;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (qos, queue_len) in [
            (QoS::AtMostOnce, 100),
            (QoS::AtMostOnce, 10_000),
            (QoS::AtLeastOnce, 100),
            (QoS::AtLeastOnce, 10_000),
        ] {
            run(qos, queue_len).await;
        }
    });
}

fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    o
}

async fn run(qos: QoS, queue_len: usize) {
    let broker = Broker::bind(
        "127.0.0.1:0",
        BrokerOptions {
            queue_len,
            ..BrokerOptions::default()
        },
    )
    .await
    .unwrap();
    let port = broker.local_addr().port();
    let handle = broker.handle();
    let cancel = CancellationToken::new();
    let server = broker.spawn(cancel.clone());

    let (sub, mut sub_loop) = AsyncClient::new(options("bench-sub", port), 1024);
    sub.subscribe("$hw/events/upload/#", qos).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    let (publisher, mut pub_loop) = AsyncClient::new(options("bench-pub", port), 1024);
    let pub_task = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });

    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let payload = vec![0x42u8; PAYLOAD];
        for _ in 0..MESSAGES {
            publisher
                .publish("$hw/events/upload/bench", qos, false, payload.clone())
                .await
                .unwrap();
        }
        publisher
    });
    let mut received = 0usize;
    while received < MESSAGES {
        match tokio::time::timeout(Duration::from_secs(2), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => received += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber failed: {e}"),
            Err(_) => break, // nothing more is coming (QoS 0 drops)
        }
    }
    let elapsed = if received < MESSAGES {
        start.elapsed().saturating_sub(Duration::from_secs(2))
    } else {
        start.elapsed()
    };
    let _publisher = sender.await.unwrap();
    let stats = handle.stats();
    println!(
        "{qos:?} queue_len={queue_len}: {MESSAGES} sent, {received} delivered in {:.2?} -> {:.0} msg/s delivered, {} dropped by the broker",
        elapsed,
        received as f64 / elapsed.as_secs_f64(),
        stats.messages_dropped,
    );
    cancel.cancel();
    server.await.unwrap().unwrap();
    pub_task.abort();
}
