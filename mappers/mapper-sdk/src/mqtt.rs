//! The mapper's MQTT connection to the edge broker: one `rumqttc` client whose event loop runs in a
//! task, re-subscribes after every reconnect and hands incoming publishes to a channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ke_mqtt::ServerUrl;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// One message received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Concrete topic.
    pub topic: String,
    /// Raw payload.
    pub payload: Vec<u8>,
}

/// A connected (or connecting) MQTT client. Cheap to clone.
#[derive(Clone)]
pub struct MqttClient {
    client: AsyncClient,
    filters: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttClient").finish_non_exhaustive()
    }
}

impl MqttClient {
    /// Starts a client for `url` (`tcp://host:port`) with `client_id`, subscribed (QoS 0, again after
    /// each reconnect) to `filters`. The connection is retried every second until `cancel`.
    /// Returns the client and the channel of incoming publishes.
    pub fn start(
        url: &str,
        client_id: &str,
        filters: &[&str],
        cancel: CancellationToken,
    ) -> Result<(Self, mpsc::Receiver<Incoming>)> {
        let parsed = ServerUrl::parse(url).map_err(|e| Error::MqttUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if parsed.tls {
            return Err(Error::MqttUrl {
                url: url.to_owned(),
                reason: "TLS is not supported by the mappers; use tcp:// to the node-local broker".into(),
            });
        }
        let mut opts = MqttOptions::new(client_id, parsed.host, parsed.port);
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let filters = Arc::new(Mutex::new(
            filters.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
        ));
        let (tx, rx) = mpsc::channel(1024);
        let this = Self {
            client: client.clone(),
            filters: filters.clone(),
        };
        let url = url.to_owned();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = cancel.cancelled() => break,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(%url, "connected to MQTT broker");
                        let list = filters.lock().map(|f| f.clone()).unwrap_or_default();
                        for f in list {
                            if let Err(e) = client.try_subscribe(f.clone(), QoS::AtMostOnce) {
                                tracing::warn!(filter = %f, "subscribe failed: {e}");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Incoming {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                        };
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%url, "MQTT connection: {e}; retrying in 1 s");
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
            let _ = client.try_disconnect();
        });
        Ok((this, rx))
    }

    /// Subscribes to one more filter (kept across reconnects).
    pub async fn subscribe(&self, filter: &str) -> Result<()> {
        if let Ok(mut f) = self.filters.lock() {
            if f.iter().any(|x| x == filter) {
                return Ok(());
            }
            f.push(filter.to_owned());
        }
        self.client.subscribe(filter, QoS::AtMostOnce).await?;
        Ok(())
    }

    /// Publishes `payload` as compact JSON, QoS 0, not retained.
    pub async fn publish_json<T: Serialize>(&self, topic: &str, payload: &T) -> Result<()> {
        let bytes = serde_json::to_vec(payload).map_err(|source| Error::Encode {
            what: "MQTT payload",
            source,
        })?;
        self.publish(topic, bytes).await
    }

    /// Publishes raw bytes, QoS 0, not retained.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await?;
        Ok(())
    }
}
