//! One client connection: CONNECT handshake, then a reader and a writer running side by side.
//!
//! The reader decodes packets (rumqttc's v4 codec), applies them to the shared state and queues
//! acknowledgements on a small bounded control channel. The writer drains that channel first, then the
//! session's [`Outbox`], and writes in batches. A client that stops reading only blocks its own
//! writer (and, once its control channel is full, its own reader); the router never waits for it.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, Protocol, QoS, check};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::{Fill, Message, Outbox, Shared, min_qos};
use crate::topic::{is_valid_filter, is_valid_topic};

/// Acknowledgements waiting for the writer; when full the reader waits (back-pressure on this client only).
const CTRL_QUEUE: usize = 256;
/// Publishes taken from the outbox per write.
const BATCH: usize = 64;

/// Why a connection ended badly (logged at debug level; the peer is not told).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed or oversized MQTT packet: {0}")]
    Codec(#[from] mqttbytes::Error),
    #[error("no CONNECT packet within {0:?}")]
    ConnectTimeout(Duration),
    #[error("keepalive expired: nothing received for {0:?}")]
    KeepAlive(Duration),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("peer closed the connection without DISCONNECT")]
    Eof,
    #[error("CONNECT refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("connection cancelled (shutdown or takeover)")]
    Cancelled,
}

/// How the reader ended.
enum Exit {
    /// Clean DISCONNECT: the will is discarded.
    Disconnect,
    /// Broker shutdown or session takeover: no will.
    Cancelled,
    /// Network/protocol failure: the will is published.
    Failed(ConnError),
}

/// Serves one accepted TCP connection until it ends or `cancel` fires.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    match serve_inner(&shared, stream, peer, cancel).await {
        Ok(()) => tracing::debug!(%peer, "MQTT connection closed"),
        Err(e) => tracing::debug!(%peer, "MQTT connection dropped: {e}"),
    }
}

async fn serve_inner(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    let opts = &shared.opts;

    let connect = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = tokio::time::timeout(opts.connect_timeout, read_connect(&mut rd, &mut wr, &mut buf, opts.max_packet_size)) => {
            r.map_err(|_| ConnError::ConnectTimeout(opts.connect_timeout))??
        }
    };
    if connect.protocol != Protocol::V4 {
        return refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
    }
    let client_id = if connect.client_id.is_empty() {
        if !connect.clean_session {
            // [MQTT-3.1.3-8]: an empty client id needs clean session.
            return refuse(&mut wr, ConnectReturnCode::BadClientId).await;
        }
        format!("ke-mqtt-auto-{peer}")
    } else {
        connect.client_id
    };
    let will = match connect.last_will {
        Some(w) if !is_valid_topic(&w.topic) => return Err(ConnError::Protocol("invalid will topic")),
        Some(w) => Some(Message {
            topic: w.topic,
            payload: w.message,
            qos: w.qos,
            retain: w.retain,
        }),
        None => None,
    };

    let conn_cancel = cancel.child_token();
    let Ok(attached) = shared.connect(&client_id, connect.clean_session, conn_cancel.clone()) else {
        return refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
    };
    tracing::debug!(%peer, client_id, clean_session = connect.clean_session, "MQTT client connected");

    let (ctrl_tx, ctrl_rx) = mpsc::channel(CTRL_QUEUE);
    let connack = ConnAck::new(ConnectReturnCode::Success, attached.session_present);
    let _ = ctrl_tx.try_send(Packet::ConnAck(connack)); // the channel is empty: cannot fail

    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let mut reader = Reader {
        shared,
        client_id: &client_id,
        conn_id: attached.conn_id,
        outbox: &attached.outbox,
        ctrl: ctrl_tx,
        cancel: &conn_cancel,
        awaiting_rel: HashSet::new(),
    };
    let read_side = async {
        let exit = reader.run(&mut rd, &mut buf, keep_alive).await;
        conn_cancel.cancel();
        exit
    };
    let write_side = async {
        let r = write_loop(
            &mut wr,
            ctrl_rx,
            &attached.outbox,
            attached.conn_id,
            opts.max_inflight,
            &conn_cancel,
        )
        .await;
        conn_cancel.cancel();
        r
    };
    let (exit, written) = tokio::join!(read_side, write_side);

    let failure = match (exit, written) {
        (Exit::Failed(e), _) => Some(e),
        (_, Err(e)) => Some(e),
        (Exit::Disconnect | Exit::Cancelled, Ok(())) => None,
    };
    let will = if failure.is_some() { will } else { None };
    shared.disconnect(&client_id, attached.conn_id, will);
    tracing::debug!(%peer, client_id, "MQTT client disconnected");
    failure.map_or(Ok(()), Err)
}

/// Reads the first packet, which must be CONNECT. A CONNECT with a protocol level other than 4
/// (MQTT 3.1.1) is answered with CONNACK 0x01 before the connection is closed [MQTT-3.1.2-2].
async fn read_connect(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Connect, ConnError> {
    loop {
        // Reject a non-CONNECT (an HTTP request, TLS hello, ...) from its first byte.
        if buf.first().is_some_and(|b| *b != 0x10) {
            return Err(ConnError::Protocol("first packet is not CONNECT"));
        }
        match check(buf.iter(), max) {
            Ok(_) => break,
            Err(mqttbytes::Error::InsufficientBytes(n)) => buf.reserve(n),
            Err(e) => return Err(e.into()),
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ConnError::Eof);
        }
    }
    if let Some(level) = connect_protocol_level(buf)
        && level != 4
    {
        refuse(wr, ConnectReturnCode::RefusedProtocolVersion).await?;
    }
    match Packet::read(buf, max)? {
        Packet::Connect(c) => Ok(c),
        _ => Err(ConnError::Protocol("first packet is not CONNECT")),
    }
}

/// The protocol level byte of a complete CONNECT frame at the start of `frame`, without decoding the
/// rest (rumqttc's decoder rejects unknown levels before we could answer them).
fn connect_protocol_level(frame: &[u8]) -> Option<u8> {
    if frame.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while frame.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*frame.get(i + 1)?, *frame.get(i + 2)?]));
    frame.get(i + 3 + name_len).copied()
}

async fn refuse(wr: &mut OwnedWriteHalf, code: ConnectReturnCode) -> Result<(), ConnError> {
    let mut out = BytesMut::new();
    Packet::ConnAck(ConnAck::new(code, false)).write(&mut out, usize::MAX)?;
    wr.write_all(&out).await?;
    let _ = wr.shutdown().await;
    Err(ConnError::Refused(code))
}

/// Reads one complete packet; `None` means the peer closed the connection.
async fn read_packet(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Packet>, ConnError> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(Some(p)),
            Err(mqttbytes::Error::InsufficientBytes(n)) => buf.reserve(n.max(4096)),
            Err(e) => return Err(e.into()),
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    client_id: &'a str,
    conn_id: u64,
    outbox: &'a Outbox,
    ctrl: mpsc::Sender<Packet>,
    cancel: &'a CancellationToken,
    /// Incoming QoS 2 packet ids already routed, waiting for PUBREL (exactly-once ingress).
    awaiting_rel: HashSet<u16>,
}

impl Reader<'_> {
    async fn run(
        &mut self,
        rd: &mut OwnedReadHalf,
        buf: &mut BytesMut,
        keep_alive: Option<Duration>,
    ) -> Exit {
        let max = self.shared.opts.max_packet_size;
        loop {
            let read = async {
                match keep_alive {
                    Some(d) => tokio::time::timeout(d, read_packet(rd, buf, max))
                        .await
                        .unwrap_or(Err(ConnError::KeepAlive(d))),
                    None => read_packet(rd, buf, max).await,
                }
            };
            let packet = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Exit::Cancelled,
                r = read => match r {
                    Ok(Some(p)) => p,
                    Ok(None) => return Exit::Failed(ConnError::Eof),
                    Err(e) => return Exit::Failed(e),
                },
            };
            match self.handle(packet).await {
                Ok(true) => {}
                Ok(false) => return Exit::Disconnect,
                Err(ConnError::Cancelled) => return Exit::Cancelled,
                Err(e) => return Exit::Failed(e),
            }
        }
    }

    async fn send(&self, packet: Packet) -> Result<(), ConnError> {
        tokio::select! {
            r = self.ctrl.send(packet) => r.map_err(|_| ConnError::Cancelled),
            _ = self.cancel.cancelled() => Err(ConnError::Cancelled),
        }
    }

    /// Applies one packet; `Ok(false)` after DISCONNECT.
    async fn handle(&mut self, packet: Packet) -> Result<bool, ConnError> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await?,
            Packet::PubAck(ack) => self.outbox.ack(ack.pkid),
            Packet::PubRel(rel) => {
                self.awaiting_rel.remove(&rel.pkid);
                self.send(Packet::PubComp(PubComp::new(rel.pkid))).await?;
            }
            // We never send QoS 2, so PUBREC/PUBCOMP from the client carry nothing to act on.
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(sub) => {
                let filters: Vec<(String, QoS, bool)> = sub
                    .filters
                    .into_iter()
                    .map(|f| {
                        let valid = is_valid_filter(&f.path);
                        (f.path, min_qos(f.qos, QoS::AtLeastOnce), valid)
                    })
                    .collect();
                let codes = filters
                    .iter()
                    .map(|(_, qos, valid)| {
                        if *valid {
                            SubscribeReasonCode::Success(*qos)
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                let retained = self.shared.subscribe(self.client_id, self.conn_id, &filters);
                self.send(Packet::SubAck(SubAck::new(sub.pkid, codes))).await?;
                for msg in retained.into_iter().flatten() {
                    self.shared.push_to(self.outbox, msg);
                }
            }
            Packet::Unsubscribe(unsub) => {
                self.shared
                    .unsubscribe(self.client_id, self.conn_id, &unsub.topics);
                self.send(Packet::UnsubAck(UnsubAck::new(unsub.pkid))).await?;
            }
            Packet::PingReq => self.send(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            Packet::Connect(_) => return Err(ConnError::Protocol("second CONNECT")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(ConnError::Protocol("server-to-client packet sent by a client"));
            }
        }
        Ok(true)
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), ConnError> {
        if !is_valid_topic(&p.topic) {
            return Err(ConnError::Protocol("PUBLISH with an invalid topic name"));
        }
        let (qos, pkid) = (p.qos, p.pkid);
        let msg = Message {
            topic: p.topic,
            payload: p.payload,
            qos,
            retain: p.retain,
        };
        match qos {
            QoS::AtMostOnce => self.route(msg),
            QoS::AtLeastOnce => {
                self.route(msg);
                self.send(Packet::PubAck(PubAck::new(pkid))).await?;
            }
            QoS::ExactlyOnce => {
                if self.awaiting_rel.insert(pkid) {
                    self.route(msg);
                }
                self.send(Packet::PubRec(PubRec::new(pkid))).await?;
            }
        }
        Ok(())
    }

    fn route(&self, msg: Message) {
        // Only fails after shutdown, when the connection is being cancelled anyway.
        let _ = self.shared.publish(msg);
    }
}

async fn write_loop(
    wr: &mut OwnedWriteHalf,
    mut ctrl: mpsc::Receiver<Packet>,
    outbox: &Outbox,
    conn_id: u64,
    max_inflight: u16,
    cancel: &CancellationToken,
) -> Result<(), ConnError> {
    let max_inflight = usize::from(max_inflight.max(1));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut publishes = Vec::with_capacity(BATCH);
    // CONNACK (already queued) goes first, then unacknowledged messages of a resumed session.
    while let Ok(p) = ctrl.try_recv() {
        encode(&p, &mut buf);
    }
    for p in outbox.resend(conn_id) {
        encode(&Packet::Publish(p), &mut buf);
    }
    loop {
        while let Ok(p) = ctrl.try_recv() {
            encode(&p, &mut buf);
            if buf.len() >= 64 * 1024 {
                break;
            }
        }
        if let Fill::Detached = outbox.fill(conn_id, max_inflight, BATCH, &mut publishes) {
            return Ok(());
        }
        for p in publishes.drain(..) {
            encode(&Packet::Publish(p), &mut buf);
        }
        if !buf.is_empty() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                r = wr.write_all(&buf) => r?,
            }
            buf.clear();
            continue;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            p = ctrl.recv() => match p {
                Some(p) => encode(&p, &mut buf),
                None => return Ok(()),
            },
            () = outbox.changed() => {}
        }
    }
}

fn encode(packet: &Packet, buf: &mut BytesMut) {
    if let Err(e) = packet.write(buf, usize::MAX) {
        tracing::warn!("cannot encode outgoing MQTT packet, skipped: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn connect_bytes(protocol: Protocol) -> BytesMut {
        let mut c = Connect::new("x");
        c.protocol = protocol;
        let mut out = BytesMut::new();
        Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
        out
    }

    #[test]
    fn protocol_level_is_peeked_from_a_connect_frame() {
        assert_eq!(connect_protocol_level(&connect_bytes(Protocol::V4)), Some(4));
        assert_eq!(connect_protocol_level(&connect_bytes(Protocol::V5)), Some(5));
        assert_eq!(connect_protocol_level(&[0x30, 0]), None);
        assert_eq!(
            connect_protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(connect_protocol_level(&[0x10, 4, 0, 4]), None);
    }
}
