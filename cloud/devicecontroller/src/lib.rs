//! DeviceController: the cloud controller between the device CRDs (`devices.kubeedge.io/v1alpha1`
//! Device and DeviceModel) and the edge nodes' device twins
//! (`shared/spec/edgecontroller-devicecontroller.md` §4–§5).
//!
//! It owns:
//! * the CRDs themselves: [`crd::install`] creates them from `build/crds/devices` when absent;
//! * the `device-profile-config-<node>` ConfigMaps mappers read ([`profile`]);
//! * device membership and desired twins on the edge, and reported twins in `status.twins`.
//!
//! # Beehive messages
//! Emits (through [`cloudhub::CloudHub::send`], source `devicecontroller`, group `twin`, no
//! resourceversion, i.e. CloudHub's list lane):
//! * `update` `node/<node>/membership` — devices added to / removed from a node;
//! * `update` `node/<node>/device/<id>/twin/cloud_updated` — desired twins changed;
//! * `response` `node/<node>/membership/detail` — the node's full device list, answering the
//!   edge's request;
//! * `response` `"OK"` with the edge message's id as parent — confirms `twin/edge_updated` and
//!   `state` messages so the edge's twin stops re-sending them.
//!
//! The payloads are [`ke_core::twin`]'s types, the same ones the edge's devicetwin uses (v1.2's cloud
//! and edge Go structs carried the same JSON tags), re-exported from [`messages`].
//!
//! Consumes the edge messages cloudcore routes here (source `twin`, spec message.md §8):
//! `update` `node/<node>/device/<id>/twin/edge_updated` (reported values → JSON merge-patch of
//! `status.twins[].reported`), `get` `node/<node>/membership/detail`, `update`
//! `node/<node>/device/<id>/state` (confirmed; the CRD has no field for it, as in v1.2).
//!
//! # Configuration (`modules.devicecontroller`)
//! * `buffer.updateDeviceStatus` (default 1024): size of cloudcore's edge → devicecontroller inbox;
//! * `load.updateDeviceStatusWorkers` (default 1): reported-twin writes in flight at once; each
//!   device's reports stay in arrival order (one lane per device);
//! * `buffer.deviceEvent` / `buffer.deviceModelEvent`: accepted, no effect — the watches are
//!   streams consumed in place, there is no event channel to size.
//!
//! Metrics: `controller_*{controller="devicecontroller"}` on cloudcore's `/metrics`; the queue
//! depth is the inbox's.
//!
//! # Fixed relative to v1.2.1
//! * `membership/detail` requests are answered (v1.2 had no reply; edges never got a resync);
//!   requests arriving before the first Device list completes are answered right after it.
//! * Edge twin reports are confirmed, so the edge does not re-send them forever.
//! * The reported-twin patch carries the resourceVersion it was computed from and is retried on
//!   conflict, so a desired value written meanwhile is not overwritten by a stale array.
//! * Our own `reported` patches (and any change that leaves the desired twins alone) do not send
//!   a `cloud_updated` back to the edge.
//! * One profile ConfigMap per (namespace, node), holding that namespace's devices (v1.2 mixed
//!   devices of all namespaces into the ConfigMap of whichever namespace came first).
//! * The profile is rebuilt from the cache on every relevant change, so a DeviceModel created or
//!   changed after its devices reaches the profile (v1.2 only updated its cache).
//! * A watch relist does not lose deletes (the removal is sent for devices gone meanwhile).
#![warn(missing_docs)]

pub mod controller;
pub mod crd;
pub mod messages;
pub mod profile;

pub use controller::DeviceController;

/// Errors of the device controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bundled CRD definition does not parse.
    #[error("bundled CRD definition: {0}")]
    Crd(String),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call, naming the object.
        what: String,
        /// Cause.
        source: kube::Error,
    },
    /// An edge message's content is not what its resource promises.
    #[error("bad content in {resource}: {reason}")]
    Content {
        /// Resource of the message.
        resource: String,
        /// Why.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
