//! Certificates for the cloud-edge link: CA and certificates (rcgen), rustls configurations (ring), and
//! the node identity carried by a peer certificate.
//!
//! What this crate owns:
//! * [`ca`] — the CA ([`Ca::create`], [`Ca::load`], [`Ca::load_or_create`]) and what it issues
//!   ([`Ca::issue_server`] for cloudcore, [`Ca::issue_node`] for an edge node), as [`CertKeyPair`]s.
//! * [`certgen`] — `keadm certgen` as a library: KubeEdge file layout (`/etc/kubeedge/ca/rootCA.{crt,key}`,
//!   `/etc/kubeedge/certs/<stem>.{crt,key}`), CA reuse, file permissions.
//! * [`tls`] — `rustls` server (mutual TLS required) and client configurations for cloudhub / edgehub.
//! * [`identity`] — [`PeerIdentity`] of a peer certificate: a node name (CN) or the legacy shared v1.2
//!   certificate (CN `kubeedge.io`).
//! * [`ca::NodeCsr`] / [`Ca::sign_node_csr`] and [`token`] — token bootstrap (KubeEdge v1.3): an edge
//!   with only a `<caHash>.<jwt>` token fetches the CA (pinned by the hash) and gets a node certificate
//!   for its own key from cloudcore's HTTPS endpoint; [`tls::bootstrap_server_config`] /
//!   [`tls::bootstrap_client_config`] are the TLS sides of that exchange.
//! * [`load`] / [`verify`] — reading PEM (PKCS#8, PKCS#1 RSA, SEC1 EC keys) and offline checks
//!   (chains to the CA? valid now?) with errors that name the file.
//!
//! Compatibility with stock KubeEdge v1.2 certificates (`certgen.sh`: RSA-4096 CA, RSA-2048 X.509 **v1**
//! `edge.crt` with CN `kubeedge.io` and no SAN, shared by cloud and edges) is kept: they load, they are
//! accepted by both TLS sides when signed by the configured CA, and they identify as
//! [`PeerIdentity::Legacy`]. webpki refuses v1 certificates, so those are checked by this crate directly
//! (signature by the CA + validity), see `chain.rs`.
//!
//! No beehive messages: this is a plain library. Start reading at [`tls`] (what the transports use), then
//! [`ca`] and [`certgen`].
//!
//! ```text
//!  edge (client_config)                             cloud (server_config)
//!   ClientHello  ───────────────────────────────►
//!                ◄─────────  server cert (SANs: IPs/DNS the edge dials) + CertificateRequest
//!   verify: chain to rootCA.crt; hostname if SANs; legacy no-SAN → chain only + warning
//!   node cert (CN = node name) ─────────────────►  verify: chain to rootCA.crt (required)
//!                                                  identity::from_peer_certificates → Node(name) | Legacy
//! ```
#![warn(missing_docs)]

pub mod ca;
pub mod certgen;
mod chain;
mod der;
mod fsutil;
pub mod identity;
pub mod load;
pub mod tls;
pub mod token;
pub mod verify;

pub use ca::{Ca, CertKeyPair, NodeCsr, Provenance, WrittenPair};
pub use identity::{PeerIdentity, common_name, peer_identity};
/// rcgen, re-exported for [`Ca::issue_with_params`].
pub use rcgen;
