//! Configuration of the eventbus (`modules.eventbus` in edgecore.yaml, `shared/spec/config.md`).

use std::time::Duration;

use ke_mqtt::{QoS, ServerUrl};

use crate::error::{Error, Result};

/// Which brokers the eventbus uses (`modules.eventbus.mqttMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttMode {
    /// `0`: run the embedded broker on `mqttServerInternal`; devices and mappers connect to it.
    Internal,
    /// `1`: the embedded broker **and** a client of the external broker; edge publishes go to both.
    Both,
    /// `2` (KubeEdge's default): a client of the broker at `mqttServerExternal` (e.g. mosquitto).
    #[default]
    External,
}

impl MqttMode {
    /// Maps KubeEdge's `mqttMode` number (0 internal, 1 both, 2 external).
    pub fn from_kubeedge(mode: i64) -> Result<Self> {
        match mode {
            0 => Ok(Self::Internal),
            1 => Ok(Self::Both),
            2 => Ok(Self::External),
            other => Err(Error::InvalidMode(other)),
        }
    }

    /// KubeEdge's number for this mode.
    pub fn to_kubeedge(self) -> i64 {
        match self {
            Self::Internal => 0,
            Self::Both => 1,
            Self::External => 2,
        }
    }

    /// Whether the embedded broker runs.
    pub fn uses_internal(self) -> bool {
        matches!(self, Self::Internal | Self::Both)
    }

    /// Whether the external broker is used.
    pub fn uses_external(self) -> bool {
        matches!(self, Self::External | Self::Both)
    }
}

/// Options of the eventbus module. `Default` is KubeEdge v1.2's default configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBusOptions {
    /// `modules.eventbus.enable`; a disabled module is not registered on the bus.
    pub enabled: bool,
    /// `modules.eventbus.mqttMode`.
    pub mode: MqttMode,
    /// `modules.eventbus.mqttServerInternal` (default `tcp://127.0.0.1:1884`). Port 0 binds an
    /// ephemeral port (tests); see [`crate::EventBus::local_addr`].
    pub internal_server: String,
    /// `modules.eventbus.mqttServerExternal` (default `tcp://127.0.0.1:1883`).
    pub external_server: String,
    /// `modules.eventbus.mqttQOS` (0..=2, default 0): QoS of publishes into the internal broker.
    /// External publishes always use QoS 1, as in KubeEdge.
    pub qos: u8,
    /// `modules.eventbus.mqttRetain` (default false): retain flag of publishes into the internal
    /// broker. External publishes are never retained, as in KubeEdge.
    pub retain: bool,
    /// `modules.eventbus.mqttSessionQueueSize` (default 100): per-client queue of the internal broker.
    pub session_queue_size: usize,
    /// The node name (`modules.edged.hostnameOverride`), used for the legacy
    /// `$hw/events/node/<node>/authInfo/get/result` topic.
    pub node_name: String,
    /// Delay between connection attempts to the external broker (KubeEdge: 5 s).
    pub reconnect_interval: Duration,
}

impl Default for EventBusOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: MqttMode::External,
            internal_server: "tcp://127.0.0.1:1884".to_owned(),
            external_server: "tcp://127.0.0.1:1883".to_owned(),
            qos: 0,
            retain: false,
            session_queue_size: 100,
            node_name: String::new(),
            reconnect_interval: Duration::from_secs(5),
        }
    }
}

/// Options after validation.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub(crate) internal: ServerUrl,
    pub(crate) external: ServerUrl,
    pub(crate) qos: QoS,
}

impl EventBusOptions {
    /// Checks the URLs (only those the mode uses must be valid) and the QoS.
    pub(crate) fn validate(&self) -> Result<Validated> {
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(Error::InvalidQos(other)),
        };
        let parse = |setting: &'static str, url: &str, used: bool| -> Result<ServerUrl> {
            let parsed = ServerUrl::parse(url).map_err(|source| Error::InvalidUrl { setting, source });
            match parsed {
                Ok(u) if used && u.tls => Err(Error::TlsUnsupported {
                    setting,
                    url: url.to_owned(),
                }),
                Ok(u) => Ok(u),
                Err(e) if used => Err(e),
                // An unused, unparsable URL is ignored (KubeEdge does not look at it either).
                Err(_) => Ok(ServerUrl {
                    tls: false,
                    host: "127.0.0.1".to_owned(),
                    port: 0,
                }),
            }
        };
        Ok(Validated {
            internal: parse(
                "mqttServerInternal",
                &self.internal_server,
                self.mode.uses_internal(),
            )?,
            external: parse(
                "mqttServerExternal",
                &self.external_server,
                self.mode.uses_external(),
            )?,
            qos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_kubeedge_numbers() {
        for n in 0..=2 {
            assert_eq!(MqttMode::from_kubeedge(n).unwrap().to_kubeedge(), n);
        }
        assert_eq!(MqttMode::from_kubeedge(1).unwrap(), MqttMode::Both);
        assert!(matches!(MqttMode::from_kubeedge(3), Err(Error::InvalidMode(3))));
        assert_eq!(MqttMode::default(), MqttMode::External);
    }

    #[test]
    fn validation_checks_what_the_mode_uses() {
        let mut o = EventBusOptions::default();
        assert_eq!(o.validate().unwrap().qos, QoS::AtMostOnce);
        o.internal_server = "nonsense".into();
        assert!(o.validate().is_ok(), "internal URL unused in external mode");
        o.mode = MqttMode::Both;
        assert!(matches!(
            o.validate(),
            Err(Error::InvalidUrl {
                setting: "mqttServerInternal",
                ..
            })
        ));
        o.internal_server = "tcp://127.0.0.1:1884".into();
        o.external_server = "ssl://broker:8883".into();
        assert!(matches!(o.validate(), Err(Error::TlsUnsupported { .. })));
        o.mode = MqttMode::Internal;
        o.qos = 3;
        assert!(matches!(o.validate(), Err(Error::InvalidQos(3))));
    }
}
