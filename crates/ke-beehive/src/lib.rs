//! Beehive: the in-process module bus of cloudcore and edgecore (`shared/spec/message.md` §4–§5).
//!
//! Owns: the routing table (module name → bounded queue, group → modules), the table of pending
//! synchronous calls, and the lifecycle of modules. It neither consumes nor emits messages of its
//! own; it carries [`ke_core::Message`]s unchanged except that sync calls set `header.sync`
//! (and a fresh `msg_id` if the message has none).
//!
//! Start reading at [`Beehive`] (the bus), then [`Core`] and [`Module`] (running modules).
//!
//! * Point to point: [`Beehive::send`]; fan-out: [`Beehive::send_to_group`].
//! * Request/reply: [`Beehive::send_sync`] / [`Beehive::send_to_group_sync`] wait for replies whose
//!   `parent_msg_id` equals the request id; the replier calls [`Beehive::send_resp`]. A hub that
//!   receives messages from the link calls [`Beehive::try_resolve`] first.
//! * Queues are bounded ([`Options::queue_capacity`], default 1024). When one is full the sender
//!   waits up to [`Options::send_timeout`] (default 5 s), then gets [`Error::QueueFull`]: nothing is
//!   dropped silently.
//!
//! ```
//! # use ke_beehive::{Beehive, Options};
//! # use ke_core::{Message, names::{group, module, op}};
//! # use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> ke_beehive::Result<()> {
//! let hive = Beehive::new(Options::default());
//! let mut meta = hive.register(module::META_MANAGER, group::META)?;
//! let replier = hive.clone();
//! tokio::spawn(async move {
//!     while let Some(req) = meta.recv().await {
//!         let _ = replier.send_resp(req.response("OK"));
//!     }
//! });
//! let req = Message::new(module::EDGED, group::META, op::QUERY, "default/pod", ());
//! let reply = hive.send_sync(module::META_MANAGER, req, Duration::from_secs(1)).await?;
//! assert_eq!(reply.content_str(), Some("OK"));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bus;
mod error;
mod module;

pub use bus::{Beehive, DEFAULT_QUEUE_CAPACITY, DEFAULT_SEND_TIMEOUT, Mailbox, Options};
pub use error::{Error, Result};
pub use module::{Core, Module, ModuleContext};
