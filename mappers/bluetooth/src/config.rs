//! `configuration/config.yaml` of the v1.2 Bluetooth mapper (same keys), and the JSON bodies of
//! its runtime topics (same keys).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker selection.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Selects the device instance whose model equals this (case-insensitive; last match wins).
    #[serde(rename = "device-model-name")]
    pub device_model_name: String,
    /// Actions derived from the profile.
    #[serde(rename = "action-manager", default)]
    pub action_manager: ActionManagerConfig,
    /// Schedules started at connect.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Twin attributes to reconcile.
    #[serde(default)]
    pub watcher: WatcherConfig,
}

/// `mqtt:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// 0 → `internal-server`, 1 → `server`.
    #[serde(default)]
    pub mode: u8,
    /// External broker.
    #[serde(default = "default_server")]
    pub server: String,
    /// edgecore's internal broker.
    #[serde(rename = "internal-server", default = "default_internal")]
    pub internal_server: String,
}

fn default_server() -> String {
    "tcp://127.0.0.1:1883".into()
}
fn default_internal() -> String {
    "tcp://127.0.0.1:1884".into()
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            mode: 0,
            server: default_server(),
            internal_server: default_internal(),
        }
    }
}

impl MqttConfig {
    /// The broker URL the mode selects.
    pub fn url(&self) -> &str {
        if self.mode == 1 {
            &self.server
        } else {
            &self.internal_server
        }
    }
}

/// `action-manager:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionManagerConfig {
    /// Actions by name.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

/// One configured action: everything else comes from the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionConfig {
    /// Action name.
    pub name: String,
    /// Run once right after the device connects.
    #[serde(rename = "perform-immediately", default)]
    pub perform_immediately: bool,
    /// Property of the device model.
    #[serde(rename = "device-property-name")]
    pub device_property_name: String,
}

/// `scheduler:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// The schedules.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
}

/// A schedule (config file and `scheduler/create` body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Name (used by `scheduler/delete`).
    pub name: String,
    /// ms to sleep after each action; 0 → 5000.
    #[serde(default)]
    pub interval: u64,
    /// Rounds; 0 = forever.
    #[serde(rename = "occurrence-limit", default)]
    pub occurrence_limit: u64,
    /// Action names performed each round, in order.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// `watcher:` (config file and `watcher/create` body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherConfig {
    /// Attributes to reconcile.
    #[serde(rename = "device-twin-attributes", default)]
    pub device_twin_attributes: Vec<TwinAttribute>,
}

/// One watched twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinAttribute {
    /// Twin name.
    #[serde(rename = "device-property-name")]
    pub device_property_name: String,
    /// Actions run when expected differs from actual.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// `{"name": ...}` of the delete topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameOnly {
    /// The name.
    pub name: String,
}

impl Config {
    /// Reads and validates the YAML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses YAML text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| Error::ParseConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The seed's schema, verbatim.
    pub(crate) const SEED: &str = r"
mqtt:
  mode: 0
  server: tcp://127.0.0.1:1883
  internal-server: tcp://127.0.0.1:1884
device-model-name: cc2650-sensortag
action-manager:
  actions:
    - name: IRTemperatureConfiguration
      perform-immediately: true
      device-property-name: temperature-enable
scheduler:
  schedules:
    - name: temperature
      interval: 3000
      occurrence-limit: 10
      actions: [IRTemperatureData]
watcher:
  device-twin-attributes:
    - device-property-name: io-data
      actions: [IOConfigurationInitialize, IODataInitialize, IOConfiguration, IOData]
";

    #[test]
    fn seed_config_parses() {
        let c = Config::parse(SEED, Path::new("config.yaml")).unwrap();
        assert_eq!(c.device_model_name, "cc2650-sensortag");
        assert_eq!(c.mqtt.url(), "tcp://127.0.0.1:1884");
        assert!(c.action_manager.actions[0].perform_immediately);
        assert_eq!(c.scheduler.schedules[0].occurrence_limit, 10);
        assert_eq!(c.watcher.device_twin_attributes[0].actions.len(), 4);
    }

    #[test]
    fn unknown_key_names_the_file() {
        let e = Config::parse("device-model-name: x\nmqttt: {}\n", Path::new("/c/config.yaml")).unwrap_err();
        assert!(e.to_string().contains("/c/config.yaml"), "{e}");
    }

    #[test]
    fn runtime_bodies_parse() {
        let s: Vec<Schedule> = serde_json::from_str(
            r#"[{"name":"t","interval":3000,"occurrence-limit":10,"actions":["IRTemperatureData"]}]"#,
        )
        .unwrap();
        assert_eq!(s[0].actions, ["IRTemperatureData"]);
        let w: WatcherConfig = serde_json::from_str(
            r#"{"device-twin-attributes":[{"device-property-name":"io-data","actions":["IOData"]}]}"#,
        )
        .unwrap();
        assert_eq!(w.device_twin_attributes[0].device_property_name, "io-data");
    }
}
