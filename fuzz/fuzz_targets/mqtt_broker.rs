//! Fuzzes the embedded MQTT broker end to end: `ke_mqtt::Broker` (CONNECT handshake, reader,
//! sessions, routing, retained messages, wills, QoS 1/2 flows, outbox overflow) on a loopback port,
//! fed the input as raw client bytes. A fresh broker per input, so a crash reproduces from its input
//! alone. The input is split on `NEXTCONN` into up to 4 client connections, made one after the other
//! (persistent sessions, takeovers and wills carry over between them). Small limits (queues of 4,
//! in-flight 2, packets of 2 KiB) let short inputs reach the overflow and size paths.
//!
//! Checks, besides never panicking (a panic in any broker task aborts the run):
//! * the broker closes a connection once the client has sent everything and shut down its side
//!   (within 5 s), whatever it sent;
//! * what the broker writes to a client is a sequence of well-formed server-to-client packets
//!   (the last one may be cut short by the close), starting with CONNACK;
//! * after that, a well-behaved client still connects, gets CONNACK and PINGRESP, and is closed
//!   after its DISCONNECT;
//! * the broker shuts down cleanly with no client left connected.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::BytesMut;
use ke_mqtt::{Broker, BrokerOptions};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const SEPARATOR: &[u8] = b"NEXTCONN";
const MAX_CONNECTIONS: usize = 4;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
});

fn options() -> BrokerOptions {
    BrokerOptions {
        max_packet_size: 2048,
        queue_len: 4,
        max_inflight: 2,
        connect_timeout: Duration::from_secs(10),
        local_queue_len: 4,
    }
}

/// Splits the input into per-connection byte strings.
fn connections(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() + 1 < MAX_CONNECTIONS {
        match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                out.push(&data[..i]);
                data = &data[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(data);
    out
}

/// Sends `bytes`, shuts down the write side, and returns everything the broker sent until it
/// closed the connection.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = TcpSocket::new_v4().expect("socket");
    // Client TIME_WAIT entries would otherwise block the broker's ephemeral port over long runs.
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    let stream = socket.connect(addr).await.expect("connect to the broker");
    let (mut rd, mut wr) = stream.into_split();
    let write = async {
        // The broker may close early (bad packet, refused CONNECT): write errors are expected.
        if wr.write_all(bytes).await.is_ok() {
            let _ = wr.shutdown().await;
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                // A reset instead of a FIN when the broker closes with our bytes unread.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading from the broker: {e}"),
            }
        }
        got
    };
    let ((), got) = tokio::time::timeout(CLOSE_TIMEOUT, async { tokio::join!(write, read) })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the broker kept the connection open {CLOSE_TIMEOUT:?} after the client's EOF; client sent {:02x?}",
                bytes
            )
        });
    got
}

/// Decodes what the broker sent; every complete packet must be a server-to-client one.
fn server_packets(bytes: &[u8]) -> Vec<Packet> {
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    loop {
        match Packet::read(&mut buf, usize::MAX) {
            Ok(p) => {
                assert!(
                    matches!(
                        p,
                        Packet::ConnAck(_)
                            | Packet::SubAck(_)
                            | Packet::UnsubAck(_)
                            | Packet::Publish(_)
                            | Packet::PubAck(_)
                            | Packet::PubRec(_)
                            | Packet::PubComp(_)
                            | Packet::PingResp
                    ),
                    "broker sent a client-to-server packet: {p:?}"
                );
                packets.push(p);
            }
            // The connection may close in the middle of a write.
            Err(CodecError::InsufficientBytes(_)) => break,
            Err(e) => panic!("broker sent bytes that do not decode ({e:?}): {bytes:02x?}"),
        }
    }
    if let Some(first) = packets.first() {
        assert!(
            matches!(first, Packet::ConnAck(_)),
            "first packet is not CONNACK: {first:?}"
        );
    }
    packets
}

/// A well-behaved client: CONNECT and PINGREQ, waits for CONNACK and PINGRESP, then DISCONNECT;
/// the broker must then close the connection.
async fn probe(addr: SocketAddr) {
    let mut out = BytesMut::new();
    let mut connect = Connect::new("fuzz-probe");
    connect.keep_alive = 0;
    for p in [Packet::Connect(connect), Packet::PingReq] {
        p.write(&mut out, usize::MAX).expect("encode probe packet");
    }
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    let mut stream = socket.connect(addr).await.expect("probe connects to the broker");
    let exchange = async {
        stream.write_all(&out).await.expect("probe writes");
        let mut got = BytesMut::new();
        let mut packets = Vec::new();
        while !packets.contains(&Packet::PingResp) {
            let n = stream.read_buf(&mut got).await.expect("probe reads");
            assert!(n > 0, "broker closed the probe connection; it got {packets:?}");
            loop {
                match Packet::read(&mut got, usize::MAX) {
                    Ok(p) => packets.push(p),
                    Err(CodecError::InsufficientBytes(_)) => break,
                    Err(e) => panic!("probe got bytes that do not decode: {e:?}"),
                }
            }
        }
        assert!(
            matches!(
                packets.first(),
                Some(Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::Success,
                    ..
                }))
            ),
            "probe client not accepted: {packets:?}"
        );
        out.clear();
        Packet::Disconnect
            .write(&mut out, usize::MAX)
            .expect("encode DISCONNECT");
        stream.write_all(&out).await.expect("probe writes DISCONNECT");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    };
    tokio::time::timeout(CLOSE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("probe client: no CONNACK/PINGRESP or no close within {CLOSE_TIMEOUT:?}"));
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let broker = Broker::bind("127.0.0.1:0", options())
            .await
            .expect("bind the broker");
        let addr = broker.local_addr();
        let handle = broker.handle();
        // In-process subscribers, as the eventbus has them.
        let mut subs = ["#", "$hw/events/#"].map(|f| handle.subscribe(f).expect("subscribe"));
        let cancel = CancellationToken::new();
        let task = broker.spawn(cancel.clone());

        for conn in connections(data) {
            server_packets(&exchange(addr, conn).await);
        }
        probe(addr).await;
        for s in &mut subs {
            while s.try_recv().is_ok() {}
        }

        cancel.cancel();
        task.await
            .expect("broker task panicked")
            .expect("broker must shut down cleanly");
        assert_eq!(handle.stats().connected_clients, 0, "clients left after shutdown");
    });
});
