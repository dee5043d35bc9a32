use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ke_beehive::{Beehive, Module, ModuleContext};
use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_transport::{EdgeHello, Inbound, LinkLimits, LinkRx, LinkTx};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::Rng;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Which transport the edge dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// WebSocket over TLS (`modules.edgehub.websocket`).
    WebSocket,
    /// QUIC (`modules.edgehub.quic`).
    Quic,
}

/// Settings (mapped from `modules.edgehub` by the binary).
#[derive(Debug, Clone)]
pub struct EdgeHubOptions {
    /// Run the module at all (`modules.edgehub.enable`).
    pub enabled: bool,
    /// `host:port` of cloudhub; several, comma-separated, for cloudcores in HA mode: the edge
    /// uses one at a time and moves to the next when it cannot connect or loses the link.
    pub server: String,
    /// Transport.
    pub kind: LinkKind,
    /// Node name (`modules.edged.hostnameOverride`).
    pub node_id: String,
    /// Project id.
    pub project_id: String,
    /// Client TLS configuration with the node certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Keepalive period (`heartbeat`).
    pub heartbeat: Duration,
    /// Frame and handshake limits.
    pub limits: LinkLimits,
    /// Shortest reconnect delay.
    pub backoff_min: Duration,
}

/// Metrics of the edge link.
#[derive(Debug, Clone, Default)]
pub struct EdgeHubMetrics {
    /// 1 while the link is up.
    pub connected: Gauge,
    /// Successful connections after the first.
    pub reconnects: Counter,
    /// Failed connection attempts.
    pub connect_failures: Counter,
    /// Envelopes sent to the cloud.
    pub messages_out: Counter,
    /// Envelopes received from the cloud.
    pub messages_in: Counter,
}

impl EdgeHubMetrics {
    /// Registers under the `edgehub_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("edgehub");
        r.register(
            "connected",
            "1 while the cloud link is up",
            self.connected.clone(),
        );
        r.register(
            "reconnects",
            "Connections after the first",
            self.reconnects.clone(),
        );
        r.register(
            "connect_failures",
            "Failed connection attempts",
            self.connect_failures.clone(),
        );
        r.register(
            "messages_out",
            "Envelopes sent to the cloud",
            self.messages_out.clone(),
        );
        r.register(
            "messages_in",
            "Envelopes received from the cloud",
            self.messages_in.clone(),
        );
    }
}

/// The edge hub module.
#[derive(Debug)]
pub struct EdgeHub {
    opts: EdgeHubOptions,
    metrics: EdgeHubMetrics,
}

impl EdgeHub {
    /// A hub with these options, reporting into `metrics`.
    pub fn new(opts: EdgeHubOptions, metrics: EdgeHubMetrics) -> Self {
        Self { opts, metrics }
    }

    /// The addresses of `server`, in order.
    pub fn servers(&self) -> Vec<String> {
        let list: Vec<String> = self
            .opts
            .server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.is_empty() {
            vec![self.opts.server.clone()]
        } else {
            list
        }
    }

    async fn connect(&self, server: &str) -> ke_transport::Result<(LinkTx, LinkRx)> {
        let hello = EdgeHello {
            node_id: self.opts.node_id.clone(),
            project_id: self.opts.project_id.clone(),
        };
        match self.opts.kind {
            LinkKind::WebSocket => {
                ke_transport::ws::connect(server, &hello, self.opts.tls.clone(), &self.opts.limits).await
            }
            LinkKind::Quic => {
                ke_transport::quic::connect(
                    server,
                    &hello,
                    &self.opts.tls,
                    &self.opts.limits,
                    self.opts.heartbeat,
                )
                .await
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = (self.opts.heartbeat * 2).max(self.opts.backoff_min);
        let base = self
            .opts
            .backoff_min
            .saturating_mul(1u32 << attempt.min(10))
            .min(cap);
        // Full jitter in [base/2, base]: a cloud restart must not see every edge at the same instant.
        let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(2);
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

async fn broadcast(bee: &Beehive, content: &str) {
    for g in [group::META, group::TWIN, group::BUS] {
        let m = Message::new(
            module::EDGEHUB_EVENTS,
            g,
            op::PUBLISH,
            res::NODE_CONNECTION,
            content,
        );
        if let Err(e) = bee.send_to_group(g, m).await {
            debug!(group = g, error = %e, "connection event not delivered");
        }
    }
}

/// Hands a cloud message to its waiter or its group.
async fn dispatch(bee: &Beehive, msg: Message) {
    let Some(msg) = bee.try_resolve(msg) else { return };
    let target = match msg.group() {
        group::RESOURCE | group::FUNC => group::META,
        group::TWIN => group::TWIN,
        group::USER => group::BUS,
        other => {
            debug!(group = other, id = %msg.id(), "message for an unknown group dropped");
            return;
        }
    };
    if let Err(e) = bee.send_to_group(target, msg).await {
        warn!(group = target, error = %e, "cloud message not delivered");
    }
}

fn now_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Module for EdgeHub {
    fn name(&self) -> &str {
        module::EDGEHUB
    }

    fn group(&self) -> &str {
        group::HUB
    }

    fn enabled(&self) -> bool {
        self.opts.enabled
    }

    async fn run(self: Box<Self>, mut ctx: ModuleContext) {
        let mut attempt = 0u32;
        let mut ever_connected = false;
        let mut carry: Option<Message> = None;
        let servers = self.servers();
        let mut at = 0usize;
        loop {
            let server = servers[at % servers.len()].as_str();
            let connected = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                r = self.connect(server) => r,
            };
            let (tx, rx) = match connected {
                Ok(link) => link,
                Err(e) => {
                    self.metrics.connect_failures.inc();
                    at = (at + 1) % servers.len();
                    // The next address at once; a back-off only after the whole list failed.
                    if at != 0 {
                        warn!(%server, error = %e, next = %servers[at], "cannot reach cloudhub; trying the next address");
                        continue;
                    }
                    let wait = self.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    warn!(%server, error = %e, "cannot reach cloudhub; retrying in {wait:?}");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            attempt = 0;
            if ever_connected {
                self.metrics.reconnects.inc();
            }
            ever_connected = true;
            self.metrics.connected.set(1);
            info!(%server, node = %self.opts.node_id, "connected to cloudhub");
            broadcast(&ctx.beehive, res::CLOUD_CONNECTED).await;
            carry = self.session(&mut ctx, tx, rx, carry).await;
            self.metrics.connected.set(0);
            broadcast(&ctx.beehive, res::CLOUD_DISCONNECTED).await;
            if ctx.cancel.is_cancelled() {
                return;
            }
            if servers.len() > 1 {
                // Its cloudcore may be gone: another one takes the node over (HA).
                at = (at + 1) % servers.len();
                warn!(next = %servers[at], "link to cloudhub lost; connecting to the next address");
                continue;
            }
            let wait = self.backoff(0);
            warn!("link to cloudhub lost; reconnecting in {wait:?}");
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl EdgeHub {
    /// One connected session; returns a message that could not be written, to send first next time.
    async fn session(
        &self,
        ctx: &mut ModuleContext,
        mut tx: LinkTx,
        mut rx: LinkRx,
        mut carry: Option<Message>,
    ) -> Option<Message> {
        let epoch = Instant::now();
        let last_heard = Arc::new(AtomicU64::new(0));
        let link_cancel = ctx.cancel.child_token();
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        // The reader runs on its own task: QUIC reads are not cancel-safe inside a select.
        let reader = {
            let bee = ctx.beehive.clone();
            let heard = last_heard.clone();
            let cancel = link_cancel.clone();
            let metrics = self.metrics.clone();
            ctx.tracker.spawn(async move {
                loop {
                    let item = tokio::select! {
                        _ = cancel.cancelled() => break,
                        r = rx.recv() => r,
                    };
                    heard.store(now_ms(epoch), Ordering::Relaxed);
                    match item {
                        Ok(Some(Inbound::Message(m))) => {
                            metrics.messages_in.inc();
                            dispatch(&bee, m).await;
                        }
                        Ok(Some(Inbound::Alive)) => {}
                        Ok(None) => {
                            info!("cloudhub closed the link");
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, "link read failed");
                            break;
                        }
                    }
                }
                let _ = done_tx.send(()).await;
            })
        };
        let silence_limit =
            u64::try_from((self.opts.heartbeat * 2 + Duration::from_secs(5)).as_millis()).unwrap_or(u64::MAX);
        let mut ticker = tokio::time::interval(self.opts.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let write_timeout = self.opts.heartbeat.max(Duration::from_secs(5));
        let ok = loop {
            if let Some(m) = carry.take() {
                match tokio::time::timeout(write_timeout, tx.send(&m)).await {
                    Ok(Ok(())) => {
                        self.metrics.messages_out.inc();
                    }
                    _ => {
                        carry = Some(m);
                        break false;
                    }
                }
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => break true,
                _ = done_rx.recv() => break false,
                _ = ticker.tick() => {
                    if self.opts.kind == LinkKind::WebSocket {
                        let silent = now_ms(epoch).saturating_sub(last_heard.load(Ordering::Relaxed));
                        if silent > silence_limit {
                            warn!("nothing heard from cloudhub for {silent} ms: link is dead");
                            break false;
                        }
                        let _ = tx.ping().await;
                    }
                    carry = Some(Message::keepalive());
                }
                m = ctx.mailbox.recv() => match m {
                    Some(m) => carry = Some(m),
                    None => break true,
                },
            }
        };
        link_cancel.cancel();
        let _ = tx.close().await;
        let _ = reader.await;
        if !ok {
            debug!("session ended");
        }
        // A keepalive that did not go out is not worth replaying.
        carry.filter(|m| !m.is_keepalive())
    }
}
