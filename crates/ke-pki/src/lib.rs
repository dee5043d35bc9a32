//! Certificates for the cloud-edge link: CA and node certs (rcgen), rustls configs, node identity from a peer certificate.
#![warn(missing_docs)]
