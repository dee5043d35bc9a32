//! Small rule helpers shared by the cloudcore and edgecore validators.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::error::{FieldError, ValidationErrors};

pub(crate) fn ip(errs: &mut ValidationErrors, field: &str, value: &str) {
    if value.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7)",
        ));
    }
}

pub(crate) fn port(errs: &mut ValidationErrors, field: &str, value: u32) {
    if !(1..=65535).contains(&value) {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

pub(crate) fn positive(errs: &mut ValidationErrors, field: &str, value: i64) {
    if value <= 0 {
        errs.push(FieldError::invalid(field, value, "must be greater than 0"));
    }
}

pub(crate) fn non_negative(errs: &mut ValidationErrors, field: &str, value: i64) {
    if value < 0 {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// `host:port` with a numeric IP (our `metricsAddress`); empty means "disabled".
pub(crate) fn optional_socket_addr(errs: &mut ValidationErrors, field: &str, value: &str) {
    if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be empty (disabled) or IP:port, e.g. 127.0.0.1:10350",
        ));
    }
}

/// A `host:port` pair whose port is numeric (edgehub server addresses).
pub(crate) fn host_port(errs: &mut ValidationErrors, field: &str, value: &str) {
    let ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be host:port, e.g. 127.0.0.1:10000",
        ));
    }
}

/// Kubernetes' DNS-1123 subdomain rule (what a Node name must satisfy).
pub(crate) fn dns1123_subdomain(errs: &mut ValidationErrors, field: &str, value: &str) {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if value.is_empty() || value.len() > 253 || !value.split('.').all(label_ok) {
        errs.push(FieldError::invalid(
            field,
            value,
            "a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (it is the Kubernetes node name)",
        ));
    }
}

/// v1.2 required the TLS/kubeconfig files to exist before starting.
pub(crate) fn file_exists(errs: &mut ValidationErrors, field: &str, value: &str) {
    if !Path::new(value).is_file() {
        errs.push(FieldError::invalid(field, value, "file does not exist"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut ValidationErrors)) -> bool {
        let mut e = ValidationErrors::default();
        f(&mut e);
        e.errors().is_empty()
    }

    #[test]
    fn rules() {
        assert!(check(|e| ip(e, "a", "0.0.0.0")));
        assert!(check(|e| ip(e, "a", "::1")));
        assert!(!check(|e| ip(e, "a", "localhost")));
        assert!(check(|e| port(e, "a", 10000)));
        assert!(!check(|e| port(e, "a", 0)));
        assert!(!check(|e| port(e, "a", 65536)));
        assert!(check(|e| optional_socket_addr(e, "a", "")));
        assert!(check(|e| optional_socket_addr(e, "a", "127.0.0.1:10350")));
        assert!(!check(|e| optional_socket_addr(e, "a", "localhost:10350")));
        assert!(check(|e| host_port(e, "a", "cloud.example.com:10000")));
        assert!(!check(|e| host_port(e, "a", "127.0.0.1")));
        assert!(!check(|e| host_port(e, "a", ":10000")));
        assert!(check(|e| dns1123_subdomain(e, "a", "edge-1.example")));
        assert!(!check(|e| dns1123_subdomain(e, "a", "Edge1")));
        assert!(!check(|e| dns1123_subdomain(e, "a", "-edge")));
        assert!(!check(|e| dns1123_subdomain(e, "a", "")));
        assert!(!check(|e| positive(e, "a", 0)));
        assert!(check(|e| non_negative(e, "a", 0)));
        assert!(!check(|e| non_negative(e, "a", -1)));
    }

    #[test]
    fn field_error_display_follows_kubernetes_wording() {
        let mut e = ValidationErrors::default();
        ip(&mut e, "modules.cloudhub.websocket.address", "nope");
        assert_eq!(
            e.to_string(),
            "modules.cloudhub.websocket.address: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7)"
        );
    }
}
