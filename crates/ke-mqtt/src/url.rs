//! Client helper: KubeEdge's broker URLs (`mqttServerInternal`, `mqttServerExternal`).

use crate::{Error, Result};

/// A parsed `tcp://host:port` or `ssl://host:port` MQTT server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `true` for `ssl://` / `tls://` / `mqtts://` (KubeEdge connects with TLS, without server verification).
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl ServerUrl {
    /// Parses a KubeEdge broker URL such as `tcp://127.0.0.1:1884`. The port defaults to 1883 (8883 for TLS).
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host:port, e.g. tcp://127.0.0.1:1884"))?;
        let tls = match scheme {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            _ => return Err(invalid("scheme must be tcp or ssl")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(invalid("a path is not allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in host"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(invalid("garbage after ']'")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("host is empty"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| invalid("port is not a number in 0..=65535"))?,
            None => default_port,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` suitable for [`crate::Broker::bind`] or `TcpStream::connect` (IPv6 in brackets).
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubeedge_defaults() {
        let internal = ServerUrl::parse("tcp://127.0.0.1:1884").unwrap();
        assert_eq!(
            internal,
            ServerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(internal.socket_addr(), "127.0.0.1:1884");
        let ssl = ServerUrl::parse("ssl://broker.local").unwrap();
        assert_eq!(
            ssl,
            ServerUrl {
                tls: true,
                host: "broker.local".into(),
                port: 8883
            }
        );
        let v6 = ServerUrl::parse("tcp://[::1]:1883/").unwrap();
        assert_eq!(v6.socket_addr(), "[::1]:1883");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "127.0.0.1:1884",
            "http://x:1",
            "tcp://:1",
            "tcp://x:port",
            "tcp://x:1/a",
            "tcp://[::1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
