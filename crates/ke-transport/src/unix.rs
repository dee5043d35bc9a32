//! The cloud-local unix socket (`shared/spec/cloudhub-edgehub.md` §9): a client writes one JSON
//! envelope, the cloud forwards it to the edge and writes back the reply envelope, then closes.

use ke_core::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::{LinkError, Result};

/// Reads one envelope: bytes until the JSON object is complete (or the peer half-closes), up to
/// `limit` bytes.
pub async fn read_message(stream: &mut UnixStream, limit: usize) -> Result<Message> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Message::from_slice_limited(&buf, limit)?);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > limit {
            return Err(ke_core::DecodeError::TooLarge {
                len: buf.len(),
                limit,
            }
            .into());
        }
        // A complete JSON value may already be here; a partial one is an EOF error, so read on.
        let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<Message>();
        match de.next() {
            Some(Ok(m)) => return Ok(m),
            Some(Err(e)) if e.is_eof() => continue,
            Some(Err(e)) => return Err(LinkError::BadFrame(e.into())),
            None => continue,
        }
    }
}

/// Writes one envelope followed by `\n`.
pub async fn write_message(stream: &mut UnixStream, msg: &Message) -> Result<()> {
    stream.write_all(msg.to_ws_frame().as_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

/// Client helper: sends `msg` to the socket at `path` and waits for the reply envelope.
pub async fn request(path: &std::path::Path, msg: &Message, limit: usize) -> Result<Message> {
    let mut s = UnixStream::connect(path).await?;
    write_message(&mut s, msg).await?;
    read_message(&mut s, limit).await
}
