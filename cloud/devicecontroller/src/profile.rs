//! The device profile, `deviceProfile.json` of ConfigMap `device-profile-config-<node>`
//! (`shared/spec/edgecontroller-devicecontroller.md` §5.4): what mappers read to know their
//! devices, models, protocols and property visitors. Pure: built from the controller's cache.

use serde::Serialize;
use serde_json::Value;

use crate::crd::{
    BluetoothProtocol, BluetoothVisitor, Device, DeviceModel, ModbusRtu, ModbusTcp, ModbusVisitor,
    ModelProperty, OpcuaProtocol, OpcuaVisitor, PropertyVisitor,
};

/// A CRD protocol block, emitted verbatim (Go field order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ProtocolBlock {
    /// `opcua`.
    Opcua(OpcuaProtocol),
    /// `modbus.rtu`.
    ModbusRtu(ModbusRtu),
    /// `modbus.tcp`.
    ModbusTcp(ModbusTcp),
    /// `bluetooth`.
    Bluetooth(BluetoothProtocol),
}

/// A CRD visitor block, emitted verbatim (Go field order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VisitorBlock {
    /// `opcua`.
    Opcua(OpcuaVisitor),
    /// `modbus`.
    Modbus(ModbusVisitor),
    /// `bluetooth`.
    Bluetooth(BluetoothVisitor),
}

/// Name of a node's profile ConfigMap.
pub fn configmap_name(node: &str) -> String {
    format!("device-profile-config-{node}")
}

/// The single data key of the ConfigMap.
pub const DATA_KEY: &str = "deviceProfile.json";

/// `deviceProfile.json` (Go field order, `omitempty` everywhere except `protocol_config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_instances: Vec<Instance>,
    /// Models of those devices, once each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_models: Vec<Model>,
    /// One protocol entry per device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<Protocol>,
    /// Visitors of those models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub property_visitors: Vec<Visitor>,
}

/// `deviceInstances[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Device name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Device name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `<proto>-<device>`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Model name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
}

/// `deviceModels[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Model {
    /// Model name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Description (v1.2 never fills it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Properties.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// `deviceModels[].properties[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `int` or `string`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_type: String,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `ReadOnly` / `ReadWrite`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_mode: String,
    /// Default (an `interface{}` in Go: present whenever the type is known).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub default_value: Value,
    /// Minimum (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub minimum: i64,
    /// Maximum (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub maximum: i64,
    /// Unit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// `protocols[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Protocol {
    /// `<proto>-<device>`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `opcua`, `modbus-rtu`, `modbus-tcp`, `bluetooth`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The CRD's protocol block (`null` for a device without protocol).
    pub protocol_config: Option<ProtocolBlock>,
}

/// `propertyVisitors[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Visitor {
    /// Property name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Property name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub property_name: String,
    /// Model name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model_name: String,
    /// `modbus`, `opcua`, `bluetooth`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The CRD's visitor block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_config: Option<VisitorBlock>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The device's protocol: (`opcua` | `modbus-rtu` | `modbus-tcp` | `bluetooth`, its block).
pub fn protocol_of(d: &Device) -> Option<(&'static str, ProtocolBlock)> {
    let p = d.spec.protocol.as_ref()?;
    if let Some(o) = &p.opcua {
        return Some(("opcua", ProtocolBlock::Opcua(o.clone())));
    }
    if let Some(m) = &p.modbus {
        if let Some(rtu) = &m.rtu {
            return Some(("modbus-rtu", ProtocolBlock::ModbusRtu(rtu.clone())));
        }
        if let Some(tcp) = &m.tcp {
            return Some(("modbus-tcp", ProtocolBlock::ModbusTcp(tcp.clone())));
        }
    }
    p.bluetooth
        .as_ref()
        .map(|b| ("bluetooth", ProtocolBlock::Bluetooth(b.clone())))
}

fn property(p: &ModelProperty) -> Property {
    let mut out = Property {
        name: p.name.clone(),
        description: p.description.clone(),
        ..Property::default()
    };
    if let Some(i) = &p.kind.int {
        out.data_type = "int".into();
        out.access_mode = i.access_mode.clone();
        out.default_value = Value::from(i.default_value);
        out.minimum = i.minimum;
        out.maximum = i.maximum;
        out.unit = i.unit.clone();
    } else if let Some(s) = &p.kind.string {
        out.data_type = "string".into();
        out.access_mode = s.access_mode.clone();
        out.default_value = Value::from(s.default_value.clone());
    }
    out
}

fn visitor(model: &str, v: &PropertyVisitor) -> Visitor {
    let (protocol, config) = if let Some(m) = &v.modbus {
        ("modbus", Some(VisitorBlock::Modbus(m.clone())))
    } else if let Some(o) = &v.opcua {
        ("opcua", Some(VisitorBlock::Opcua(o.clone())))
    } else if let Some(b) = &v.bluetooth {
        ("bluetooth", Some(VisitorBlock::Bluetooth(b.clone())))
    } else {
        ("", None)
    };
    Visitor {
        name: v.property_name.clone(),
        property_name: v.property_name.clone(),
        model_name: model.to_owned(),
        protocol: protocol.to_owned(),
        visitor_config: config,
    }
}

/// The profile of `devices` (those of one node and namespace, in order), with their models looked
/// up by `model`. A model not found yet is left out (it is added when it appears).
pub fn build<'a>(
    devices: impl IntoIterator<Item = &'a Device>,
    model: impl Fn(&str) -> Option<&'a DeviceModel>,
) -> Profile {
    let mut p = Profile::default();
    for d in devices {
        let name = d.metadata.name.clone().unwrap_or_default();
        let proto = protocol_of(d);
        let proto_name = proto
            .as_ref()
            .map(|(kind, _)| format!("{kind}-{name}"))
            .unwrap_or_default();
        p.device_instances.push(Instance {
            id: name.clone(),
            name,
            protocol: proto_name.clone(),
            model: d.model().to_owned(),
        });
        let (kind, config) = proto.map_or(("", None), |(k, c)| (k, Some(c)));
        p.protocols.push(Protocol {
            name: proto_name,
            protocol: kind.to_owned(),
            protocol_config: config,
        });
        let model_name = d.model();
        if p.device_models.iter().any(|m| m.name == model_name) {
            continue;
        }
        let Some(m) = model(model_name) else { continue };
        p.device_models.push(Model {
            name: model_name.to_owned(),
            description: String::new(),
            properties: m.spec.properties.iter().map(property).collect(),
        });
        p.property_visitors
            .extend(m.spec.property_visitors.iter().map(|v| visitor(model_name, v)));
    }
    p
}

/// `deviceProfile.json` text; `None` when there is nothing to say (the ConfigMap is deleted).
pub fn render(p: &Profile) -> Option<String> {
    if *p == Profile::default() {
        return None;
    }
    serde_json::to_string(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The modbus sample of the spec (§4.3), whose v1.2.1 output is recorded in §5.4.
    #[test]
    fn modbus_sample_matches_v1_2_output() {
        let model: DeviceModel = serde_json::from_value(json!({
            "metadata": {"name": "sensor-tag-model", "namespace": "default"},
            "spec": {
                "properties": [
                    {"name": "temperature", "description": "temperature in degree celsius",
                     "type": {"int": {"accessMode": "ReadWrite", "maximum": 100, "unit": "degree celsius"}}},
                    {"name": "temperature-enable", "description": "enable data collection of temperature sensor",
                     "type": {"string": {"accessMode": "ReadWrite", "defaultValue": "OFF"}}}
                ],
                "propertyVisitors": [
                    {"propertyName": "temperature", "modbus": {"register": "CoilRegister", "offset": 2, "limit": 1,
                     "scale": 1, "isSwap": true, "isRegisterSwap": true}},
                    {"propertyName": "temperature-enable", "modbus": {"register": "DiscreteInputRegister", "offset": 3,
                     "limit": 1, "scale": 1.0, "isSwap": true, "isRegisterSwap": true}}
                ]
            }
        }))
        .unwrap();
        let device: Device = serde_json::from_value(json!({
            "metadata": {"name": "sensor-tag-instance-01", "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": "sensor-tag-model"},
                "protocol": {"modbus": {"rtu": {"serialPort": "1", "baudRate": 115200, "dataBits": 8,
                                                "parity": "even", "stopBits": 1, "slaveID": 1}}},
                "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "", "operator": "In", "values": ["node1"]}]}]}
            }
        }))
        .unwrap();
        let text = render(&build([&device], |n| (n == "sensor-tag-model").then_some(&model))).unwrap();
        let expected = r#"{"deviceInstances":[{"id":"sensor-tag-instance-01","name":"sensor-tag-instance-01","protocol":"modbus-rtu-sensor-tag-instance-01","model":"sensor-tag-model"}],"deviceModels":[{"name":"sensor-tag-model","properties":[{"name":"temperature","dataType":"int","description":"temperature in degree celsius","accessMode":"ReadWrite","defaultValue":0,"maximum":100,"unit":"degree celsius"},{"name":"temperature-enable","dataType":"string","description":"enable data collection of temperature sensor","accessMode":"ReadWrite","defaultValue":"OFF"}]}],"protocols":[{"name":"modbus-rtu-sensor-tag-instance-01","protocol":"modbus-rtu","protocol_config":{"serialPort":"1","baudRate":115200,"dataBits":8,"parity":"even","stopBits":1,"slaveID":1}}],"propertyVisitors":[{"name":"temperature","propertyName":"temperature","modelName":"sensor-tag-model","protocol":"modbus","visitorConfig":{"register":"CoilRegister","offset":2,"limit":1,"scale":1,"isSwap":true,"isRegisterSwap":true}},{"name":"temperature-enable","propertyName":"temperature-enable","modelName":"sensor-tag-model","protocol":"modbus","visitorConfig":{"register":"DiscreteInputRegister","offset":3,"limit":1,"scale":1,"isSwap":true,"isRegisterSwap":true}}]}"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn device_without_protocol_or_model() {
        let device: Device = serde_json::from_value(
            json!({"metadata": {"name": "d"}, "spec": {"deviceModelRef": {"name": "m"}}}),
        )
        .unwrap();
        let text = render(&build([&device], |_| None)).unwrap();
        assert_eq!(
            text,
            r#"{"deviceInstances":[{"id":"d","name":"d","model":"m"}],"protocols":[{"protocol_config":null}]}"#
        );
        assert_eq!(render(&build([], |_| None)), None);
    }
}
