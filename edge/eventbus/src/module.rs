//! The beehive module: brokers, the forwarding loop and the mailbox.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ke_beehive::{Module, ModuleContext};
use ke_core::names::{group, module};
use ke_mqtt::{Broker, BrokerHandle, BrokerOptions, QoS, ServerUrl};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::convert::{self, Action, Destination, SUBSCRIBED_TOPICS};
use crate::error::{Error, Result};
use crate::options::{EventBusOptions, Validated};

/// Capacity of the channel from the brokers to the forwarding loop.
const INCOMING_QUEUE: usize = 1024;
/// Capacity of rumqttc's request channel (publishes waiting for the external connection).
const EXTERNAL_REQUESTS: usize = 1024;
/// Largest MQTT packet exchanged with the external broker (rumqttc's default is 10 KiB).
const EXTERNAL_MAX_PACKET: usize = 1024 * 1024;

type Incoming = (String, Bytes);

/// The eventbus module (name `eventbus`, group `bus`). Build it with [`EventBus::new`] (no I/O)
/// or [`EventBus::bind`] (also binds the internal broker, so a busy port fails at startup), then
/// register it on a [`ke_beehive::Core`].
#[derive(Debug)]
pub struct EventBus {
    options: EventBusOptions,
    validated: Validated,
    broker: Option<Broker>,
}

impl EventBus {
    /// Validates `options`; nothing is bound or connected until the module runs.
    pub fn new(options: EventBusOptions) -> Result<Self> {
        let validated = options.validate()?;
        Ok(Self {
            options,
            validated,
            broker: None,
        })
    }

    /// [`EventBus::new`], then binds the internal broker's listener if the mode uses it (clients
    /// can connect, their CONNECT waits in the backlog until the module runs).
    pub async fn bind(options: EventBusOptions) -> Result<Self> {
        let mut bus = Self::new(options)?;
        if bus.options.enabled && bus.options.mode.uses_internal() {
            bus.broker = Some(bind_broker(&bus.options, &bus.validated.internal).await?);
        }
        Ok(bus)
    }

    /// The internal broker's bound address (after [`EventBus::bind`] in a mode that uses it).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(Broker::local_addr)
    }

    /// In-process access to the internal broker (after [`EventBus::bind`]), e.g. for metrics.
    pub fn broker_handle(&self) -> Option<BrokerHandle> {
        self.broker.as_ref().map(Broker::handle)
    }

    /// The options this module was built with.
    pub fn options(&self) -> &EventBusOptions {
        &self.options
    }
}

async fn bind_broker(options: &EventBusOptions, url: &ServerUrl) -> Result<Broker> {
    let broker_options = BrokerOptions {
        queue_len: options.session_queue_size.max(1),
        ..BrokerOptions::default()
    };
    Broker::bind(url.socket_addr(), broker_options)
        .await
        .map_err(Error::Broker)
}

impl Module for EventBus {
    fn name(&self) -> &str {
        module::EVENTBUS
    }

    fn group(&self) -> &str {
        group::BUS
    }

    fn enabled(&self) -> bool {
        self.options.enabled
    }

    async fn run(self: Box<Self>, ctx: ModuleContext) {
        let ModuleContext {
            beehive,
            mut mailbox,
            cancel,
            tracker,
        } = ctx;
        let Self {
            options,
            validated,
            broker,
        } = *self;
        let (in_tx, mut in_rx) = mpsc::channel::<Incoming>(INCOMING_QUEUE);

        let internal = if options.mode.uses_internal() {
            let broker = match broker {
                Some(b) => b,
                None => match bind_broker(&options, &validated.internal).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!("{e}; eventbus stops");
                        return;
                    }
                },
            };
            let handle = broker.handle();
            // Subscribe before serving, so no client message can slip past the bridge.
            for filter in SUBSCRIBED_TOPICS {
                subscribe_internal(&handle, filter, &in_tx, &tracker);
            }
            let broker_cancel = cancel.child_token();
            tracker.spawn(async move {
                if let Err(e) = broker.run(broker_cancel).await {
                    tracing::error!("internal MQTT broker failed: {e}");
                }
            });
            Some(handle)
        } else {
            None
        };

        let external = options.mode.uses_external().then(|| {
            External::start(
                &validated.external,
                options.reconnect_interval,
                in_tx.clone(),
                &tracker,
                cancel.clone(),
            )
        });

        let mut extra_filters = HashSet::new();
        loop {
            tokio::select! {
                msg = mailbox.recv_until(&cancel) => {
                    let Some(msg) = msg else { break };
                    match convert::plan(&msg, &options.node_name) {
                        Action::Publish { topic, payload } => {
                            let payload = Bytes::from(payload);
                            if let Some(h) = &internal
                                && let Err(e) = h.publish_to_clients(&topic, payload.clone(), validated.qos, options.retain)
                            {
                                tracing::warn!(%topic, "publish to the internal broker failed: {e}");
                            }
                            if let Some(x) = &external {
                                x.publish(&topic, payload);
                            }
                        }
                        Action::Subscribe(filter) => {
                            if !extra_filters.insert(filter.clone()) || SUBSCRIBED_TOPICS.contains(&filter.as_str()) {
                                continue;
                            }
                            tracing::info!(%filter, "subscribing on behalf of the cloud");
                            if let Some(h) = &internal {
                                subscribe_internal(h, &filter, &in_tx, &tracker);
                            }
                            if let Some(x) = &external {
                                x.subscribe(filter);
                            }
                        }
                        Action::Ignore(why) => tracing::debug!(id = msg.id(), "ignored: {why}"),
                    }
                }
                Some((topic, payload)) = in_rx.recv() => forward(&beehive, &topic, &payload).await,
            }
        }
    }
}

/// Sends an MQTT message to the twin or the cloud.
async fn forward(beehive: &ke_beehive::Beehive, topic: &str, payload: &[u8]) {
    let (dest, msg) = convert::from_mqtt(topic, payload);
    let sent = match dest {
        Destination::Twin => beehive.send_to_group(group::TWIN, msg).await.map(drop),
        Destination::Cloud => beehive.send(module::EDGEHUB, msg).await,
    };
    match sent {
        Ok(()) => {}
        Err(e @ (ke_beehive::Error::UnknownModule { .. } | ke_beehive::Error::UnknownGroup { .. })) => {
            tracing::debug!(%topic, "MQTT message dropped: {e}");
        }
        Err(e) => tracing::warn!(%topic, "MQTT message dropped: {e}"),
    }
}

/// Subscribes in-process to `filter` on the internal broker and forwards into `tx`.
fn subscribe_internal(
    handle: &BrokerHandle,
    filter: &str,
    tx: &mpsc::Sender<Incoming>,
    tracker: &TaskTracker,
) {
    let mut rx = match handle.subscribe(filter) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(%filter, "cannot subscribe on the internal broker: {e}");
            return;
        }
    };
    let tx = tx.clone();
    // Ends when the broker stops (the channel closes) or the eventbus loop is gone.
    tracker.spawn(async move {
        while let Some(item) = rx.recv().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
}

/// The client connection to the external broker.
struct External {
    client: AsyncClient,
    filters: Arc<Mutex<Vec<String>>>,
}

impl External {
    fn start(
        url: &ServerUrl,
        reconnect: Duration,
        tx: mpsc::Sender<Incoming>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // KubeEdge uses `hub-client-sub-<secs>`; the suffix keeps two edges started in the same
        // second from taking over each other's session.
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let id = format!("hub-client-{secs}-{}", &suffix[..8]);
        let mut mqtt = MqttOptions::new(id.clone(), url.host.clone(), url.port);
        mqtt.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(EXTERNAL_MAX_PACKET, EXTERNAL_MAX_PACKET);
        let (client, eventloop) = AsyncClient::new(mqtt, EXTERNAL_REQUESTS);
        let filters: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            SUBSCRIBED_TOPICS.iter().map(|s| (*s).to_owned()).collect(),
        ));
        let server = url.socket_addr();
        tracker.spawn(drive(
            eventloop,
            client.clone(),
            Arc::clone(&filters),
            tx,
            reconnect,
            cancel,
            server,
            id,
        ));
        Self { client, filters }
    }

    /// QoS 1, retain false, as KubeEdge publishes to the external broker. Never waits: when the
    /// request queue is full (broker unreachable for long) the message is dropped and logged.
    fn publish(&self, topic: &str, payload: Bytes) {
        if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(%topic, "publish to the external broker dropped: {e}");
        }
    }

    /// Adds `filter` to what is (re)subscribed on every connection, and subscribes now.
    fn subscribe(&self, filter: String) {
        self.filters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(filter.clone());
        if let Err(e) = self.client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
            tracing::warn!(%filter, "subscribe on the external broker failed: {e}");
        }
    }
}

/// Drives the external connection: subscribes after every CONNACK, forwards publishes, and
/// retries every `reconnect` after a failure (rumqttc reconnects on the next poll).
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<Incoming>,
    reconnect: Duration,
    cancel: CancellationToken,
    server: String,
    id: String,
) {
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(%server, client_id = %id, "connected to the external MQTT broker");
                let filters = filters.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for filter in filters {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(%filter, "subscribe on the external broker failed: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let sent = tokio::select! {
                    () = cancel.cancelled() => break,
                    r = tx.send((p.topic, p.payload)) => r,
                };
                if sent.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%server, "external MQTT broker connection failed: {e}; retrying in {reconnect:?}");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(reconnect) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_reports_the_bound_port_only_when_internal_is_used() {
        let external = EventBus::bind(EventBusOptions::default()).await.unwrap();
        assert_eq!(external.local_addr(), None);
        let internal = EventBus::bind(EventBusOptions {
            mode: crate::MqttMode::Internal,
            internal_server: "tcp://127.0.0.1:0".into(),
            ..EventBusOptions::default()
        })
        .await
        .unwrap();
        let addr = internal.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        // The port is taken: a second bus on it fails at bind time with a message naming it.
        let err = EventBus::bind(EventBusOptions {
            mode: crate::MqttMode::Both,
            internal_server: format!("tcp://{addr}"),
            ..EventBusOptions::default()
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
