//! Test harness: a broker on an ephemeral port, rumqttc clients with an event channel, raw clients.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ke_mqtt::{Broker, BrokerHandle, BrokerOptions, Stats};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; hitting it is a failure, never a timing assertion.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub struct TestBroker {
    pub addr: SocketAddr,
    pub handle: BrokerHandle,
    cancel: CancellationToken,
    task: Option<JoinHandle<ke_mqtt::Result<()>>>,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::with(BrokerOptions::default()).await
    }

    pub async fn with(options: BrokerOptions) -> Self {
        let broker = Broker::bind("127.0.0.1:0", options).await.unwrap();
        let addr = broker.local_addr();
        let handle = broker.handle();
        let cancel = CancellationToken::new();
        let task = Some(broker.spawn(cancel.clone()));
        Self {
            addr,
            handle,
            cancel,
            task,
        }
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            within("broker shutdown", task).await.unwrap().unwrap();
        }
    }

    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Stats) -> bool) {
        within(what, async {
            while !pred(&self.handle.stats()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    pub fn options(&self, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, self.addr.ip().to_string(), self.addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub async fn client(&self, id: &str) -> Client {
        Client::connect(self.options(id)).await
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A rumqttc client whose event loop runs on a task that stops at the first error (no auto-reconnect).
pub struct Client {
    pub client: AsyncClient,
    pub session_present: bool,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: JoinHandle<()>,
}

impl Client {
    pub async fn connect(options: MqttOptions) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let session_present = within("CONNACK", async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => break ack.session_present,
                    Ok(_) => {}
                    Err(e) => panic!("rumqttc connect failed: {e}"),
                }
            }
        })
        .await;
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        Self {
            client,
            session_present,
            events,
            task,
        }
    }

    pub async fn next(&mut self) -> Result<Packet, String> {
        within("a packet from the broker", self.events.recv())
            .await
            .unwrap_or_else(|| Err("event loop ended".into()))
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            match self.next().await {
                Ok(Packet::SubAck(ack)) => return ack.return_codes[0],
                Ok(Packet::Publish(p)) => panic!("publish {p:?} before SUBACK"),
                Ok(_) => {}
                Err(e) => panic!("connection failed while subscribing: {e}"),
            }
        }
    }

    pub async fn recv_publish(&mut self) -> Publish {
        loop {
            match self.next().await {
                Ok(Packet::Publish(p)) => return p,
                Ok(_) => {}
                Err(e) => panic!("connection failed while waiting for a publish: {e}"),
            }
        }
    }

    /// Publishes received until (and including) one on `marker`, as (topic, payload) strings.
    pub async fn recv_until(&mut self, marker: &str) -> Vec<(String, String)> {
        let mut got = Vec::new();
        loop {
            let p = self.recv_publish().await;
            let done = p.topic == marker;
            got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
            if done {
                return got;
            }
        }
    }

    /// Waits for the connection to end; returns the error text.
    pub async fn closed(&mut self) -> String {
        loop {
            if let Err(e) = self.next().await {
                return e;
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client speaking through rumqttc's codec directly, for protocol-level tests.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects and completes a successful CONNECT handshake.
    pub async fn mqtt(addr: SocketAddr, connect: rumqttc::Connect) -> Self {
        let mut raw = Self::connect(addr).await;
        raw.send(Packet::Connect(connect)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Next packet, or `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        within("a packet on the raw connection", async {
            loop {
                match Packet::read(&mut self.buf, usize::MAX) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("broker sent an undecodable packet: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Waits until the broker closes the connection, skipping packets.
    pub async fn closed(&mut self) {
        while self.recv().await.is_some() {}
    }
}

pub fn publish(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> Packet {
    let mut p = Publish::new(topic, qos, payload.to_vec());
    p.pkid = pkid;
    Packet::Publish(p)
}
