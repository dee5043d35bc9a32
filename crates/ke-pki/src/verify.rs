//! Offline checks of certificate files: does a certificate chain to a CA, and is it valid now?
//!
//! Used by `keadm` and at daemon start-up to turn a future handshake failure into a message naming the
//! file. Only direct issuance is checked (KubeEdge CAs sign leaves directly); X.509 v1 leaves from stock
//! v1.2 certgen are supported.

use std::path::Path;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::chain::{Anchors, ChainError};
use crate::load;

/// Errors of the checks; each names the certificate file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a PEM file failed.
    #[error(transparent)]
    Load(#[from] load::Error),
    /// Not parsable X.509.
    #[error("{name} is not a valid X.509 certificate: {detail}")]
    Parse {
        /// The file or source.
        name: String,
        /// Why.
        detail: String,
    },
    /// Not signed by any certificate of the CA file.
    #[error(
        "{cert} is not signed by the CA in {ca}: regenerate it from this CA (`keadm certgen`) or point the CA setting at the CA that issued it"
    )]
    NotSignedByCa {
        /// The certificate file.
        cert: String,
        /// The CA file.
        ca: String,
    },
    /// `notBefore` is in the future.
    #[error(
        "{cert} is not valid before {not_before} but this machine's clock says {now}: fix the clock (clock skew between cloud and edge?) or regenerate the certificate"
    )]
    NotYetValid {
        /// The certificate file.
        cert: String,
        /// Its notBefore.
        not_before: OffsetDateTime,
        /// The local time.
        now: OffsetDateTime,
    },
    /// `notAfter` is in the past.
    #[error(
        "{cert} expired at {not_after} (this machine's clock says {now}): regenerate it with `keadm certgen`"
    )]
    Expired {
        /// The certificate file.
        cert: String,
        /// Its notAfter.
        not_after: OffsetDateTime,
        /// The local time.
        now: OffsetDateTime,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// First subject CN, if any.
    pub common_name: Option<String>,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// X.509 version (1 or 3).
    pub version: u32,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

fn ts(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Reads subject, SANs and validity of a certificate.
pub fn cert_info(cert: &CertificateDer<'_>, name: &str) -> Result<CertInfo> {
    let parse = |detail: String| Error::Parse {
        name: name.to_owned(),
        detail,
    };
    let (_, c) = X509Certificate::from_der(cert).map_err(|e| parse(e.to_string()))?;
    // RFC 5280 §4.1.2.1: v1, v2 or v3 (encoded 0..=2); the parser passes any other number on.
    let version = c.version().0.checked_add(1).filter(|v| (1..=3).contains(v));
    let version = version.ok_or_else(|| {
        parse(format!(
            "X.509 version field {} is not v1, v2 or v3",
            c.version().0
        ))
    })?;
    let common_name = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let sans = c
        .subject_alternative_name()
        .map_err(|e| parse(e.to_string()))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    GeneralName::IPAddress(b) => ip_to_string(b),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertInfo {
        common_name,
        sans,
        not_before: ts(c.validity().not_before.timestamp()),
        not_after: ts(c.validity().not_after.timestamp()),
        version,
        is_ca: c.is_ca(),
    })
}

fn ip_to_string(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
        _ => None,
    }
}

/// Checks that the first certificate of `cert_pem` is signed by a certificate of `ca_pem` and valid now.
pub fn verify_leaf_pem(cert_pem: &[u8], ca_pem: &[u8]) -> Result<CertInfo> {
    let cert = load::certs_from_pem(cert_pem, "<certificate PEM>")?;
    let ca = load::certs_from_pem(ca_pem, "<CA PEM>")?;
    verify_leaf_at(&cert[0], "<certificate PEM>", &ca, "<CA PEM>", SystemTime::now())
}

/// Checks that the first certificate of `cert_file` is signed by a certificate of `ca_file` and valid now.
pub fn verify_leaf_files(cert_file: &Path, ca_file: &Path) -> Result<CertInfo> {
    let cert = load::load_certs(cert_file)?;
    let ca = load::load_certs(ca_file)?;
    verify_leaf_at(
        &cert[0],
        &cert_file.display().to_string(),
        &ca,
        &ca_file.display().to_string(),
        SystemTime::now(),
    )
}

/// Checks that `cert` (named `cert_name` in errors) is signed by one of `ca` and valid at `now`.
pub fn verify_leaf_at(
    cert: &CertificateDer<'_>,
    cert_name: &str,
    ca: &[CertificateDer<'_>],
    ca_name: &str,
    now: SystemTime,
) -> Result<CertInfo> {
    let info = cert_info(cert, cert_name)?;
    let anchors = Anchors::new(
        ca,
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
    )
    .map_err(|i| Error::Parse {
        name: format!("{ca_name} (certificate #{i})"),
        detail: "not a parsable X.509 certificate".into(),
    })?;
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let now_dt = ts(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX));
    match anchors.verify_direct(cert, UnixTime::since_unix_epoch(since_epoch)) {
        Ok(_) => Ok(info),
        Err(ChainError::Malformed) => Err(Error::Parse {
            name: cert_name.to_owned(),
            detail: "malformed signature fields".into(),
        }),
        Err(ChainError::UnknownIssuer) => Err(Error::NotSignedByCa {
            cert: cert_name.to_owned(),
            ca: ca_name.to_owned(),
        }),
        Err(ChainError::NotValidYet { not_before }) => Err(Error::NotYetValid {
            cert: cert_name.to_owned(),
            not_before: ts(not_before),
            now: now_dt,
        }),
        Err(ChainError::Expired { not_after }) => Err(Error::Expired {
            cert: cert_name.to_owned(),
            not_after: ts(not_after),
            now: now_dt,
        }),
    }
}
