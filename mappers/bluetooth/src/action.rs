//! The action manager: named reads/writes of GATT characteristics, derived from the config's
//! `action-manager` entries and the device profile (spec: mappers.md §1.1), or created at runtime
//! on `action-manager/create`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mapper_sdk::DeviceProfile;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::converter::DataConverter;
use crate::error::{Error, Result};
use crate::gatt::Gatt;

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Read the characteristic (and convert).
    Read,
    /// Write the action's value.
    Write,
}

/// One action.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Name.
    pub name: String,
    /// Run right after the device connects (or right after runtime creation).
    pub perform_immediately: bool,
    /// Model property it came from, if any.
    pub property: Option<String>,
    /// Read or write.
    pub kind: Kind,
    /// Characteristic (normalized UUID).
    pub characteristic_uuid: String,
    /// Bytes a write sends.
    pub value: Vec<u8>,
    /// Read conversion.
    pub converter: Option<DataConverter>,
    /// Twin value -> bytes (the visitor's `dataWrite`).
    pub data_write: BTreeMap<String, Vec<u8>>,
}

/// The device the config selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Device id (twin and runtime topics).
    pub id: String,
    /// Name compared with the advertised local name: the model name with `-` → space.
    pub ble_name: String,
    /// `macAddress` of the protocol block, if any.
    pub mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BtVisitor {
    #[serde(rename = "characteristicUUID")]
    characteristic_uuid: String,
    #[serde(default)]
    data_write: BTreeMap<String, String>,
    #[serde(default)]
    data_converter: Option<DataConverter>,
}

/// Body entry of `action-manager/create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeAction {
    /// Name.
    pub name: String,
    /// Run at once.
    #[serde(rename = "perform-immediately", default)]
    pub perform_immediately: bool,
    /// What to do.
    pub operation: RuntimeOperation,
}

/// `operation` of a runtime action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOperation {
    /// `Read` or `Write`.
    pub action: Kind,
    /// Characteristic UUID.
    #[serde(rename = "characteristic-uuid")]
    pub characteristic_uuid: String,
    /// Base64 bytes to write.
    #[serde(default)]
    pub value: String,
}

/// Actions by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionManager {
    actions: BTreeMap<String, Action>,
}

/// The device of `config.device_model_name` (case-insensitive; last match wins, as in v1.2).
pub fn target(config: &Config, profile: &DeviceProfile) -> Result<Target> {
    let dev = profile
        .device_instances
        .iter()
        .rfind(|d| d.model.eq_ignore_ascii_case(&config.device_model_name))
        .ok_or_else(|| Error::NoDevice {
            model: config.device_model_name.clone(),
        })?;
    let mac = dev.protocol.as_deref().and_then(|p| {
        profile
            .protocols
            .iter()
            .find(|x| x.name == p)
            .and_then(|x| x.protocol_config.get("macAddress"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Ok(Target {
        id: dev.id.clone(),
        ble_name: dev.model.replace('-', " "),
        mac,
    })
}

/// The v1.2 initial write value of an `int` property: the default as a single character code
/// (Go's string-from-int: 1 → byte 0x01; ≥ 128 gives its UTF-8 bytes).
fn int_default_bytes(v: &Value) -> Vec<u8> {
    let n = v.as_i64().unwrap_or(0);
    u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{FFFD}')
        .to_string()
        .into_bytes()
}

impl ActionManager {
    /// Derives the config's actions from the profile. Actions whose property has no bluetooth
    /// visitor are skipped with a warning.
    pub fn from_config(config: &Config, profile: &DeviceProfile) -> Self {
        let mut m = Self::default();
        let model = profile
            .device_models
            .iter()
            .rfind(|x| x.name.eq_ignore_ascii_case(&config.device_model_name));
        for a in &config.action_manager.actions {
            let Some(prop) =
                model.and_then(|m| m.properties.iter().find(|p| p.name == a.device_property_name))
            else {
                tracing::warn!(action = %a.name, property = %a.device_property_name, "property not in the device model; action skipped");
                continue;
            };
            let visitor = profile.property_visitors.iter().rfind(|v| {
                v.model_name.eq_ignore_ascii_case(&config.device_model_name)
                    && v.property_name == a.device_property_name
                    && v.protocol.eq_ignore_ascii_case("bluetooth")
            });
            let Some(visitor) = visitor else {
                tracing::warn!(action = %a.name, property = %a.device_property_name, "no bluetooth visitor; action skipped");
                continue;
            };
            let bt: BtVisitor = match serde_json::from_value(visitor.visitor_config.clone()) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(action = %a.name, "bad bluetooth visitorConfig: {e}; action skipped");
                    continue;
                }
            };
            let data_write: BTreeMap<String, Vec<u8>> = bt
                .data_write
                .iter()
                .filter_map(|(k, v)| B64.decode(v).ok().map(|b| (k.clone(), b)))
                .collect();
            let kind = if prop.writable() { Kind::Write } else { Kind::Read };
            let value = match (prop.data_type.as_str(), &prop.default_value) {
                ("int", Some(v)) => int_default_bytes(v),
                ("string", Some(Value::String(s))) => data_write.get(s).cloned().unwrap_or_default(),
                _ => Vec::new(),
            };
            // an empty `dataConverter: {}` (what the cloud emits) means "no conversion"
            let converter = bt.data_converter.filter(|c| *c != DataConverter::default());
            m.insert(Action {
                name: a.name.clone(),
                perform_immediately: a.perform_immediately,
                property: Some(prop.name.clone()),
                kind,
                characteristic_uuid: crate::gatt::normalize_uuid(&bt.characteristic_uuid),
                value,
                converter,
                data_write,
            });
        }
        m
    }

    /// Builds an action from an `action-manager/create` entry.
    pub fn from_runtime(r: &RuntimeAction) -> Result<Action> {
        let value = B64
            .decode(&r.operation.value)
            .map_err(|e| Error::Convert(format!("action {}: value is not base64: {e}", r.name)))?;
        Ok(Action {
            name: r.name.clone(),
            perform_immediately: r.perform_immediately,
            property: None,
            kind: r.operation.action,
            characteristic_uuid: crate::gatt::normalize_uuid(&r.operation.characteristic_uuid),
            value,
            converter: None,
            data_write: BTreeMap::new(),
        })
    }

    /// Adds or replaces an action.
    pub fn insert(&mut self, a: Action) {
        self.actions.insert(a.name.clone(), a);
    }

    /// Removes an action.
    pub fn remove(&mut self, name: &str) -> Option<Action> {
        self.actions.remove(name)
    }

    /// Looks an action up.
    pub fn get(&self, name: &str) -> Option<&Action> {
        self.actions.get(name)
    }

    /// All actions.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.actions.values()
    }

    /// Performs `name` on `gatt`. A write sends `value_override` if given, else the action's
    /// value. Returns the result text: for reads the converted value (6 decimals) or, without
    /// converter, the bytes as base64; for writes the written bytes as base64.
    pub async fn perform<G: Gatt>(
        &self,
        name: &str,
        gatt: &G,
        value_override: Option<&[u8]>,
    ) -> Result<String> {
        let a = self
            .get(name)
            .ok_or_else(|| Error::UnknownAction(name.to_owned()))?;
        match a.kind {
            Kind::Read => {
                let data = gatt.read(&a.characteristic_uuid).await?;
                match &a.converter {
                    Some(c) => c.convert(&data),
                    None => Ok(B64.encode(data)),
                }
            }
            Kind::Write => {
                let data = value_override.unwrap_or(&a.value);
                gatt.write(&a.characteristic_uuid, data).await?;
                Ok(B64.encode(data))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gatt::{SimPeripheral, SimState};
    use std::path::Path;

    const PROFILE: &str = include_str!("../tests/fixtures/cc2650-profile.json");

    fn config() -> Config {
        Config::parse(
            r"
device-model-name: CC2650-SensorTag
action-manager:
  actions:
    - {name: IRTemperatureConfiguration, perform-immediately: true, device-property-name: temperature-enable}
    - {name: IRTemperatureData, device-property-name: temperature}
    - {name: IOConfiguration, device-property-name: io-config}
    - {name: IOData, device-property-name: io-data}
    - {name: Nope, device-property-name: no-such-property}
",
            Path::new("c"),
        )
        .unwrap()
    }

    #[test]
    fn derived_from_the_cloud_profile() {
        let p = DeviceProfile::from_json(PROFILE, Path::new("p")).unwrap();
        let c = config();
        let t = target(&c, &p).unwrap();
        assert_eq!(t.id, "sensor-tag-instance-01");
        assert_eq!(t.ble_name, "cc2650 sensortag");
        assert_eq!(t.mac.as_deref(), Some("BC:6A:29:AE:CC:96"));
        let m = ActionManager::from_config(&c, &p);
        assert!(m.get("Nope").is_none());
        let enable = m.get("IRTemperatureConfiguration").unwrap();
        assert_eq!(
            (enable.kind, enable.value.as_slice(), enable.perform_immediately),
            (Kind::Write, &[1u8][..], true)
        );
        let temp = m.get("IRTemperatureData").unwrap();
        assert_eq!(temp.kind, Kind::Read);
        assert!(temp.converter.is_some());
        // int default 1 -> the single character code 0x01 (v1.2 quirk); empty converter = none
        let cfg = m.get("IOConfiguration").unwrap();
        assert_eq!(cfg.value, [1]);
        assert!(cfg.converter.is_none());
        assert_eq!(m.get("IOData").unwrap().data_write["Buzzer"], [4]);
    }

    #[tokio::test]
    async fn perform_reads_converts_and_writes() {
        let p = DeviceProfile::from_json(PROFILE, Path::new("p")).unwrap();
        let m = ActionManager::from_config(&config(), &p);
        let sim = SimPeripheral::new(
            serde_json::from_str(include_str!("../tests/fixtures/sensortag.json")).unwrap(),
            None,
        );
        assert_eq!(
            m.perform("IRTemperatureData", &sim, None).await.unwrap(),
            "36.406250"
        );
        m.perform("IOData", &sim, Some(&[2])).await.unwrap();
        let s: SimState = sim.snapshot();
        assert_eq!(s.characteristics["f000aa6504514000b000000000000000"], [2]);
        assert!(m.perform("Missing", &sim, None).await.is_err());
        let rt = ActionManager::from_runtime(&serde_json::from_str(
            r#"{"name":"A","perform-immediately":true,"operation":{"action":"Write","characteristic-uuid":"F000AA02-0451-4000-B000-000000000000","value":"AQ=="}}"#,
        ).unwrap()).unwrap();
        assert_eq!(
            (rt.characteristic_uuid.as_str(), rt.value.as_slice()),
            ("f000aa0204514000b000000000000000", &[1u8][..])
        );
    }
}
