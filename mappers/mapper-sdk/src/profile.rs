//! The device profile (`deviceProfile.json`) that v1.2's devicecontroller writes into the ConfigMap
//! `device-profile-config-<node>`, and its resolution into per-device, per-property bindings.
//!
//! Field names are the cloud's (spec: edgecontroller-devicecontroller.md §5.4): `deviceInstances`,
//! `deviceModels`, `protocols` (`protocol_config`), `propertyVisitors` (`visitorConfig`). Protocol
//! and visitor blocks stay raw JSON here; each mapper decodes the ones it owns.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The whole profile file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProfile {
    /// Devices bound to this node.
    #[serde(default)]
    pub device_instances: Vec<DeviceInstance>,
    /// Device models referenced by the devices.
    #[serde(default)]
    pub device_models: Vec<DeviceModel>,
    /// One protocol entry per device (`<proto>-<device>`).
    #[serde(default)]
    pub protocols: Vec<Protocol>,
    /// How each model property is reached over its protocol.
    #[serde(default)]
    pub property_visitors: Vec<PropertyVisitor>,
}

/// `deviceInstances[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInstance {
    /// Device id (the Device CR name); the twin topics use it.
    pub id: String,
    /// Device name.
    #[serde(default)]
    pub name: String,
    /// Name of the `protocols[]` entry, absent for a device without protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Name of the `deviceModels[]` entry.
    #[serde(default)]
    pub model: String,
}

/// `deviceModels[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceModel {
    /// Model name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The model's properties.
    #[serde(default)]
    pub properties: Vec<Property>,
}

/// `deviceModels[].properties[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    /// Property name = twin name.
    pub name: String,
    /// `int` or `string` from the v1.2 cloud; `float` and `boolean` are accepted too.
    /// (The v1.2 sample profile spells it `datatype`; both are read.)
    #[serde(default, alias = "datatype")]
    pub data_type: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// `ReadWrite` or `ReadOnly`.
    #[serde(default)]
    pub access_mode: Option<String>,
    /// Default value: a number for `int`, a string for `string`.
    #[serde(default)]
    pub default_value: Option<Value>,
    /// Lower bound (`int`; omitted by the cloud when 0).
    #[serde(default)]
    pub minimum: Option<f64>,
    /// Upper bound (`int`; omitted by the cloud when 0).
    #[serde(default)]
    pub maximum: Option<f64>,
    /// Unit text.
    #[serde(default)]
    pub unit: Option<String>,
}

impl Property {
    /// True unless the model says `ReadOnly`.
    pub fn writable(&self) -> bool {
        !self
            .access_mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("ReadOnly"))
    }
}

/// `protocols[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// `<proto>-<device>`.
    #[serde(default)]
    pub name: String,
    /// `modbus-tcp`, `modbus-rtu`, `bluetooth`, `opcua`.
    #[serde(default)]
    pub protocol: String,
    /// The CRD protocol block verbatim (`null` for a device without protocol). The v1.2 sample
    /// profile spells it `protocolConfig`; both are read.
    #[serde(default, alias = "protocolConfig")]
    pub protocol_config: Value,
}

/// `propertyVisitors[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyVisitor {
    /// Same as `propertyName`.
    #[serde(default)]
    pub name: String,
    /// The property this visitor reads/writes.
    pub property_name: String,
    /// The model the property belongs to.
    pub model_name: String,
    /// `modbus`, `bluetooth`, `opcua` (the v1.2 cloud never writes `modbus-tcp`/`modbus-rtu` here,
    /// older hand-written profiles do).
    #[serde(default)]
    pub protocol: String,
    /// The CRD visitor block verbatim.
    #[serde(default)]
    pub visitor_config: Value,
}

/// One device with everything a mapper needs to drive it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBinding {
    /// Device id (twin topics).
    pub id: String,
    /// Device name.
    pub name: String,
    /// Model name.
    pub model: String,
    /// The protocol entry (kind + raw config).
    pub protocol: Protocol,
    /// Properties with a visitor of this mapper's protocol, by property name.
    pub properties: BTreeMap<String, PropertyBinding>,
}

/// One property of a device together with its visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyBinding {
    /// The model property.
    pub property: Property,
    /// The raw `visitorConfig`.
    pub visitor: Value,
}

impl DeviceProfile {
    /// Parses profile JSON.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|source| Error::ParseProfile {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses a profile file. An empty file is an empty profile (the cloud deletes the
    /// ConfigMap once no device is left; a mount may briefly show an empty file).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadProfile {
            path: path.to_owned(),
            source,
        })?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_json(&text, path)
    }

    /// Devices whose protocol kind satisfies `protocol_kind` (e.g. starts with `modbus`) with the
    /// properties whose visitor protocol satisfies `visitor_kind`. Lookups are by name; when names
    /// repeat, the last entry wins.
    ///
    /// v1.2 bug fixed: the Node.js Modbus mapper matched protocols to devices by the *model's*
    /// index; here a device gets exactly the protocol entry its `protocol` field names.
    pub fn bindings(
        &self,
        protocol_kind: impl Fn(&str) -> bool,
        visitor_kind: impl Fn(&str) -> bool,
    ) -> Vec<DeviceBinding> {
        let protocols: BTreeMap<&str, &Protocol> =
            self.protocols.iter().map(|p| (p.name.as_str(), p)).collect();
        let models: BTreeMap<&str, &DeviceModel> =
            self.device_models.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut out = Vec::new();
        for dev in &self.device_instances {
            let Some(proto) = dev
                .protocol
                .as_deref()
                .and_then(|name| protocols.get(name))
                .filter(|p| protocol_kind(&p.protocol.to_ascii_lowercase()))
            else {
                continue;
            };
            let mut properties = BTreeMap::new();
            if let Some(model) = models.get(dev.model.as_str()) {
                for v in &self.property_visitors {
                    if v.model_name != model.name || !visitor_kind(&v.protocol.to_ascii_lowercase()) {
                        continue;
                    }
                    if let Some(p) = model.properties.iter().find(|p| p.name == v.property_name) {
                        properties.insert(
                            p.name.clone(),
                            PropertyBinding {
                                property: p.clone(),
                                visitor: v.visitor_config.clone(),
                            },
                        );
                    }
                }
            }
            out.push(DeviceBinding {
                id: dev.id.clone(),
                name: if dev.name.is_empty() {
                    dev.id.clone()
                } else {
                    dev.name.clone()
                },
                model: dev.model.clone(),
                protocol: (*proto).clone(),
                properties,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The verified v1.2.1 devicecontroller output for the modbus sample.
    pub(crate) const CLOUD_MODBUS: &str = r#"{"deviceInstances":[{"id":"sensor-tag-instance-01","name":"sensor-tag-instance-01","protocol":"modbus-rtu-sensor-tag-instance-01","model":"sensor-tag-model"}],
 "deviceModels":[{"name":"sensor-tag-model","properties":[
   {"name":"temperature","dataType":"int","description":"temperature in degree celsius","accessMode":"ReadWrite","defaultValue":0,"maximum":100,"unit":"degree celsius"},
   {"name":"temperature-enable","dataType":"string","description":"enable data collection of temperature sensor","accessMode":"ReadWrite","defaultValue":"OFF"}]}],
 "protocols":[{"name":"modbus-rtu-sensor-tag-instance-01","protocol":"modbus-rtu","protocol_config":{"serialPort":"1","baudRate":115200,"dataBits":8,"parity":"even","stopBits":1,"slaveID":1}}],
 "propertyVisitors":[
   {"name":"temperature","propertyName":"temperature","modelName":"sensor-tag-model","protocol":"modbus","visitorConfig":{"register":"CoilRegister","offset":2,"limit":1,"scale":1,"isSwap":true,"isRegisterSwap":true}},
   {"name":"temperature-enable","propertyName":"temperature-enable","modelName":"sensor-tag-model","protocol":"modbus","visitorConfig":{"register":"DiscreteInputRegister","offset":3,"limit":1,"scale":1,"isSwap":true,"isRegisterSwap":true}}]}"#;

    #[test]
    fn cloud_profile_resolves() {
        let p = DeviceProfile::from_json(CLOUD_MODBUS, Path::new("x")).unwrap();
        let b = p.bindings(|k| k.starts_with("modbus"), |k| k.starts_with("modbus"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, "sensor-tag-instance-01");
        assert_eq!(b[0].protocol.protocol, "modbus-rtu");
        assert_eq!(b[0].properties.len(), 2);
        let t = &b[0].properties["temperature"];
        assert_eq!(t.property.maximum, Some(100.0));
        assert_eq!(t.visitor["register"], "CoilRegister");
        // a bluetooth mapper sees nothing of it
        assert!(p.bindings(|k| k == "bluetooth", |k| k == "bluetooth").is_empty());
    }

    #[test]
    fn device_without_protocol_is_skipped() {
        let p: DeviceProfile = serde_json::from_str(
            r#"{"deviceInstances":[{"id":"a","name":"a","model":"m"}],"protocols":[{"protocol_config":null}]}"#,
        )
        .unwrap();
        assert!(p.bindings(|_| true, |_| true).is_empty());
    }

    #[test]
    fn bad_json_names_the_file() {
        let e = DeviceProfile::from_json("{", Path::new("/x/deviceProfile.json")).unwrap_err();
        assert!(e.to_string().contains("/x/deviceProfile.json"), "{e}");
    }
}
