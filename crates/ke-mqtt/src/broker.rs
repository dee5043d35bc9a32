//! The listener ([`Broker`]) and the in-process API ([`BrokerHandle`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::options::BrokerOptions;
use crate::state::{Message, Shared, Stats};
use crate::topic::{is_valid_filter, is_valid_topic};
use crate::{Error, Result, conn};

/// The embedded MQTT 3.1.1 broker: a bound TCP listener plus the shared routing state.
///
/// ```no_run
/// # async fn demo() -> ke_mqtt::Result<()> {
/// use ke_mqtt::{Broker, BrokerOptions, QoS};
/// let cancel = tokio_util::sync::CancellationToken::new();
/// let broker = Broker::bind("127.0.0.1:1884", BrokerOptions::default()).await?;
/// let handle = broker.handle();
/// let mut twin = handle.subscribe("$hw/events/device/+/twin/+")?;
/// let server = broker.spawn(cancel.clone());
/// handle.publish("$hw/events/node/edge-1/membership/updated", "{}", QoS::AtMostOnce, false)?;
/// if let Some((topic, payload)) = twin.recv().await { /* forward to devicetwin */ }
/// cancel.cancel();
/// let _ = server.await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Broker {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Broker {
    /// Binds the listener (e.g. `"127.0.0.1:1884"`; use port 0 in tests). Nothing is served until
    /// [`Broker::run`] / [`Broker::spawn`], but connections queue in the OS backlog and the
    /// [`BrokerHandle`] works already.
    pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Debug, options: BrokerOptions) -> Result<Self> {
        let shown = format!("{addr:?}");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: shown, source })?;
        let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
        Ok(Self {
            listener,
            local_addr,
            shared: Arc::new(Shared::new(options)),
        })
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The in-process API; cheap to clone, valid before, during and after [`Broker::run`].
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts and serves clients until `cancel` fires, then disconnects every client (without
    /// publishing wills), closes all in-process subscriber channels and waits for the connection tasks.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let Self {
            listener,
            local_addr,
            shared,
        } = self;
        tracing::info!(%local_addr, "MQTT broker listening");
        let tracker = TaskTracker::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracker.spawn(conn::serve(Arc::clone(&shared), stream, peer, cancel.child_token()));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%local_addr, "MQTT broker accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        shared.shutdown();
        tracker.close();
        tracker.wait().await;
        tracing::info!(%local_addr, "MQTT broker stopped");
        Ok(())
    }

    /// [`Broker::run`] on a new tokio task.
    pub fn spawn(self, cancel: CancellationToken) -> JoinHandle<Result<()>> {
        tokio::spawn(self.run(cancel))
    }
}

/// In-process access to the broker for edgecore's eventbus: publish without a TCP client and subscribe
/// with a channel. Clone freely.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

impl BrokerHandle {
    /// Publishes `payload` on `topic` as if a client had sent PUBLISH with this QoS and retain flag:
    /// delivered to matching client subscriptions and in-process subscribers, and stored (or cleared
    /// when `payload` is empty) as the retained message when `retain` is set. Never waits.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Result<()> {
        if !is_valid_topic(topic) {
            return Err(Error::InvalidTopic {
                topic: topic.to_owned(),
            });
        }
        self.shared.publish(Message {
            topic: topic.to_owned(),
            payload: payload.into(),
            qos,
            retain,
        })
    }

    /// Like [`publish`](Self::publish) but only to network clients (and the retained store), not to
    /// in-process subscribers. The eventbus uses it so that what it publishes on behalf of edge
    /// modules or the cloud never comes back to its own subscriptions.
    pub fn publish_to_clients(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<()> {
        if !is_valid_topic(topic) {
            return Err(Error::InvalidTopic {
                topic: topic.to_owned(),
            });
        }
        let msg = Message {
            topic: topic.to_owned(),
            payload: payload.into(),
            qos,
            retain,
        };
        self.shared.publish_with(msg, false)
    }

    /// Subscribes in-process to `filter` (e.g. `$hw/events/upload/#`). Every matching message —
    /// from clients, wills, or [`BrokerHandle::publish`] — arrives as `(topic, payload)`, starting with
    /// the matching retained messages. The channel holds [`BrokerOptions::local_queue_len`] messages;
    /// when it is full further messages are dropped (and counted in [`Stats::messages_dropped`]),
    /// so receive promptly. Drop the receiver to unsubscribe. The channel closes when the broker stops.
    pub fn subscribe(&self, filter: &str) -> Result<mpsc::Receiver<(String, Bytes)>> {
        if !is_valid_filter(filter) {
            return Err(Error::InvalidFilter {
                filter: filter.to_owned(),
            });
        }
        self.shared.subscribe_local(filter)
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}
