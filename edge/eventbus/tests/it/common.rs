//! Shared helpers: bounded waits, a rumqttc client with an event channel, envelope checks.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use ke_beehive::{Beehive, Core, Mailbox};
use ke_core::Message;
use ke_core::names::{group, module, op};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits for; hitting it is a failure, never a timing assertion.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A beehive with a fake `twin` and a fake `websocket` registered on it, and a core to run the
/// eventbus.
pub(crate) struct Hive {
    pub(crate) hive: Beehive,
    pub(crate) core: Core,
    pub(crate) twin: Mailbox,
    pub(crate) hub: Mailbox,
}

impl Hive {
    pub(crate) fn new() -> Self {
        let hive = Beehive::default();
        let twin = hive.register(module::TWIN, group::TWIN).unwrap();
        let hub = hive.register(module::EDGEHUB, group::HUB).unwrap();
        let core = Core::new(hive.clone());
        Self {
            hive,
            core,
            twin,
            hub,
        }
    }

    /// What the twin sends to publish on MQTT.
    pub(crate) async fn twin_publishes(&self, topic: &str, payload: &str) {
        let m = Message::new(module::TWIN, group::USER, op::PUBLISH, topic, payload);
        self.hive.send(module::EVENTBUS, m).await.unwrap();
    }
}

/// Asserts the envelope the eventbus builds for an MQTT message and returns the decoded topic.
pub(crate) fn check_envelope(m: &Message, topic: &str, payload: &str) {
    assert_eq!(m.source(), module::BUS);
    assert_eq!(m.group(), group::USER);
    assert_eq!(m.operation(), op::RESPONSE);
    let decoded = URL_SAFE.decode(m.resource()).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), topic);
    assert_eq!(
        m.content_str(),
        Some(payload),
        "content must be the payload as a string"
    );
}

pub(crate) async fn recv(mailbox: &mut Mailbox) -> Message {
    within("a beehive message", mailbox.recv()).await.unwrap()
}

/// A rumqttc client whose event loop runs on a task; incoming publishes and acks arrive on a channel.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    task: JoinHandle<()>,
}

impl Client {
    /// Connects (retrying until the broker is up) and waits for CONNACK.
    pub(crate) async fn connect(id: &str, port: u16) -> Self {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    // The broker may not be listening yet: rumqttc reconnects on the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let mut c = Self { client, events, task };
        c.until(|p| matches!(p, Packet::ConnAck(_))).await;
        c
    }

    async fn until(&mut self, pred: impl Fn(&Packet) -> bool) -> Packet {
        within("a packet from the broker", async {
            loop {
                let p = self.events.recv().await.unwrap();
                if pred(&p) {
                    return p;
                }
            }
        })
        .await
    }

    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        self.until(|p| matches!(p, Packet::SubAck(_))).await;
    }

    pub(crate) async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    pub(crate) async fn recv_publish(&mut self) -> Publish {
        match self.until(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// The next publish, as (topic, payload).
    pub(crate) async fn recv_text(&mut self) -> (String, String) {
        let p = self.recv_publish().await;
        (p.topic, String::from_utf8(p.payload.to_vec()).unwrap())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
