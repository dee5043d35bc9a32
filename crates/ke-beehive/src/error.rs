//! Errors of the bus and of the module runner.

use std::time::Duration;

/// Why a bus operation failed. Every variant names the module, group or message id concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// [`Beehive::register`](crate::Beehive::register) with a name already in use.
    #[error(
        "module {module:?} is already registered; module names must be unique (cleanup the old one first)"
    )]
    DuplicateModule {
        /// The name asked for.
        module: String,
    },
    /// No module of that name is registered: it is disabled, was never registered or was
    /// cleaned up.
    #[error("no module named {module:?} is registered (disabled, not started or cleaned up)")]
    UnknownModule {
        /// The target asked for.
        module: String,
    },
    /// The group has no registered module (all of its modules are disabled or none exists).
    #[error("group {group:?} has no registered module to deliver to")]
    UnknownGroup {
        /// The target group.
        group: String,
    },
    /// The module's queue stayed full for the whole send timeout
    /// ([`Options::send_timeout`](crate::Options::send_timeout)); the message was not delivered.
    #[error(
        "queue of module {module:?} stayed full until the send timeout; message not delivered (module stuck or too slow)"
    )]
    QueueFull {
        /// The module whose queue is full.
        module: String,
    },
    /// The module's [`Mailbox`](crate::Mailbox) was dropped without
    /// [`cleanup`](crate::Beehive::cleanup): the module is gone.
    #[error("mailbox of module {module:?} is closed (its receiver was dropped)")]
    MailboxClosed {
        /// The module whose mailbox is closed.
        module: String,
    },
    /// No reply arrived within the sync timeout. The waiter has been removed.
    #[error("no reply to sync message {msg_id} within {timeout:?}")]
    SyncTimeout {
        /// Id of the request.
        msg_id: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A sync call was made with a message id that already has a pending waiter.
    #[error("a sync call for message id {msg_id} is already pending; use a fresh id")]
    DuplicateSyncId {
        /// The id in use.
        msg_id: String,
    },
    /// A reply whose `parent_msg_id` matches no pending sync call (late, duplicate or unknown).
    /// The reply was dropped.
    #[error("no pending sync call for parent id {parent_id:?}; reply dropped (late or unknown)")]
    NoWaiter {
        /// The reply's `parent_msg_id`.
        parent_id: String,
    },
}

/// Result of a bus operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
