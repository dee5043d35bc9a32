//! The `devices.kubeedge.io/v1alpha1` custom resources, Device and DeviceModel
//! (`shared/spec/edgecontroller-devicecontroller.md` §4), and their installation.
//!
//! The protocol and visitor blocks are typed with KubeEdge's Go field order and `omitempty`
//! rules, because the device-profile ConfigMap carries them verbatim (§5.4).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::NodeSelector;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tracing::info;

use crate::{Error, Result};

/// API group of the device CRDs.
pub const GROUP: &str = "devices.kubeedge.io";
/// API version of the device CRDs.
pub const VERSION: &str = "v1alpha1";

/// The CRD definitions cloudcore installs when absent (the files of `build/crds/devices`).
pub const CRD_YAML: [&str; 2] = [
    include_str!("../../../build/crds/devices/devices_v1alpha1_devicemodel.yaml"),
    include_str!("../../../build/crds/devices/devices_v1alpha1_device.yaml"),
];

/// Creates the Device and DeviceModel CRDs if they do not exist (existing ones are left alone).
pub async fn install(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for text in CRD_YAML {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(text).map_err(|e| Error::Crd(e.to_string()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let present = api.get_opt(&name).await.map_err(|source| Error::Api {
            what: format!("get customresourcedefinition {name}"),
            source,
        })?;
        if present.is_none() {
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => info!(crd = %name, "installed"),
                // Someone else created it meanwhile.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(source) => {
                    return Err(Error::Api {
                        what: format!("create customresourcedefinition {name}"),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

macro_rules! namespaced_resource {
    ($ty:ty, $kind:literal, $plural:literal) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A `Device` object. Missing blocks decode as empty, so one odd object never stops the watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: DeviceSpec,
    /// `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
}
namespaced_resource!(Device, "Device", "devices");

/// A `DeviceModel` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceModel {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: DeviceModelSpec,
}
namespaced_resource!(DeviceModel, "DeviceModel", "devicemodels");

/// `Device.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    /// `deviceModelRef.name`.
    #[serde(default)]
    pub device_model_ref: Option<ModelRef>,
    /// Protocol block (at most one protocol).
    #[serde(default)]
    pub protocol: Option<ProtocolConfig>,
    /// Where the device is bound.
    #[serde(default)]
    pub node_selector: Option<NodeSelector>,
}

/// `deviceModelRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Model name (same namespace).
    #[serde(default)]
    pub name: String,
}

/// `Device.spec.protocol`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtocolConfig {
    /// OPC-UA.
    #[serde(default)]
    pub opcua: Option<OpcuaProtocol>,
    /// Modbus RTU or TCP.
    #[serde(default)]
    pub modbus: Option<ModbusProtocol>,
    /// Bluetooth.
    #[serde(default)]
    pub bluetooth: Option<BluetoothProtocol>,
}

/// `protocol.opcua`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpcuaProtocol {
    /// Server URL.
    #[serde(default)]
    pub url: String,
    /// User name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// Password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Security policy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub security_policy: String,
    /// Security mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub security_mode: String,
    /// Certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// Private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Timeout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
}

/// `protocol.modbus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModbusProtocol {
    /// Serial line.
    #[serde(default)]
    pub rtu: Option<ModbusRtu>,
    /// TCP.
    #[serde(default)]
    pub tcp: Option<ModbusTcp>,
}

/// `protocol.modbus.rtu` (all fields required by the CRD, always emitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModbusRtu {
    /// Serial port.
    #[serde(default, rename = "serialPort")]
    pub serial_port: String,
    /// Baud rate.
    #[serde(default, rename = "baudRate")]
    pub baud_rate: i64,
    /// Data bits.
    #[serde(default, rename = "dataBits")]
    pub data_bits: i64,
    /// Parity.
    #[serde(default)]
    pub parity: String,
    /// Stop bits.
    #[serde(default, rename = "stopBits")]
    pub stop_bits: i64,
    /// Slave id.
    #[serde(default, rename = "slaveID")]
    pub slave_id: i64,
}

/// `protocol.modbus.tcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModbusTcp {
    /// Address.
    #[serde(default)]
    pub ip: String,
    /// Port.
    #[serde(default)]
    pub port: i64,
    /// Slave id (a string in v1.2's CRD).
    #[serde(default, rename = "slaveID")]
    pub slave_id: String,
}

/// `protocol.bluetooth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BluetoothProtocol {
    /// MAC address.
    #[serde(default, rename = "macAddress", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `Device.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Twins.
    #[serde(default)]
    pub twins: Vec<Twin>,
}

/// One `status.twins[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    /// Property name.
    #[serde(default)]
    pub property_name: String,
    /// Desired value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinProperty>,
    /// Reported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<TwinProperty>,
}

/// `desired` / `reported`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinProperty {
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Metadata (`type`, `timestamp`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `DeviceModel.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceModelSpec {
    /// Properties.
    #[serde(default)]
    pub properties: Vec<ModelProperty>,
    /// How each property is read.
    #[serde(default)]
    pub property_visitors: Vec<PropertyVisitor>,
}

/// `properties[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelProperty {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Type block.
    #[serde(default, rename = "type")]
    pub kind: PropertyType,
}

/// `properties[].type`: exactly one of `int` and `string`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyType {
    /// Integer property.
    #[serde(default)]
    pub int: Option<IntProperty>,
    /// String property.
    #[serde(default)]
    pub string: Option<StringProperty>,
}

/// `type.int`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntProperty {
    /// `ReadOnly` or `ReadWrite`.
    #[serde(default)]
    pub access_mode: String,
    /// Default.
    #[serde(default)]
    pub default_value: i64,
    /// Minimum.
    #[serde(default)]
    pub minimum: i64,
    /// Maximum.
    #[serde(default)]
    pub maximum: i64,
    /// Unit.
    #[serde(default)]
    pub unit: String,
}

/// `type.string`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringProperty {
    /// `ReadOnly` or `ReadWrite`.
    #[serde(default)]
    pub access_mode: String,
    /// Default.
    #[serde(default)]
    pub default_value: String,
}

/// `propertyVisitors[]`: one protocol block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyVisitor {
    /// The property it reads.
    #[serde(default)]
    pub property_name: String,
    /// OPC-UA.
    #[serde(default)]
    pub opcua: Option<OpcuaVisitor>,
    /// Modbus.
    #[serde(default)]
    pub modbus: Option<ModbusVisitor>,
    /// Bluetooth.
    #[serde(default)]
    pub bluetooth: Option<BluetoothVisitor>,
}

/// `opcua` visitor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcuaVisitor {
    /// Node id.
    #[serde(default, rename = "nodeID")]
    pub node_id: String,
    /// Browse name.
    #[serde(default, rename = "browseName", skip_serializing_if = "String::is_empty")]
    pub browse_name: String,
}

/// `modbus` visitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModbusVisitor {
    /// Register kind.
    #[serde(default)]
    pub register: String,
    /// First register.
    #[serde(default)]
    pub offset: i64,
    /// Register count.
    #[serde(default)]
    pub limit: i64,
    /// Scale.
    #[serde(default, skip_serializing_if = "is_zero_f", serialize_with = "go_float")]
    pub scale: f64,
    /// Byte swap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_swap: bool,
    /// Register swap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_register_swap: bool,
}

/// `bluetooth` visitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BluetoothVisitor {
    /// Characteristic UUID.
    #[serde(
        default,
        rename = "characteristicUUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub characteristic_uuid: String,
    /// Value → bytes to write. Accepted as byte arrays or base64 strings; emitted as base64, as
    /// Go marshals `[]byte`.
    #[serde(
        default,
        rename = "dataWrite",
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "base64_values"
    )]
    pub data_write: BTreeMap<String, Value>,
    /// How read bytes become a value (always emitted, `{}` when empty).
    #[serde(default, rename = "dataConverter")]
    pub data_converter: DataConverter,
}

/// `bluetooth.dataConverter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataConverter {
    /// First byte.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_index: i64,
    /// Last byte.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub end_index: i64,
    /// Left shift.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift_left: i64,
    /// Right shift.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift_right: i64,
    /// Arithmetic applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_of_operations: Vec<Operation>,
}

/// One `orderOfOperations[]` step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `Add`, `Subtract`, `Multiply`, `Divide`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation_type: String,
    /// Operand.
    #[serde(default, skip_serializing_if = "is_zero_f", serialize_with = "go_float")]
    pub operation_value: f64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Go's `encoding/json` writes integral floats without a fraction (`1`, not `1.0`).
fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT {
        #[allow(clippy::cast_possible_truncation)]
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn base64_values<S: Serializer>(m: &BTreeMap<String, Value>, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        let text = match v {
            Value::String(t) => t.clone(),
            Value::Array(items) => {
                let bytes: Vec<u8> = items
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).unwrap_or(0))
                    .collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            _ => String::new(),
        };
        out.serialize_entry(k, &text)?;
    }
    out.end()
}

impl Device {
    /// The node the device is bound to: `nodeSelectorTerms[0].matchExpressions[0].values[0]`
    /// (the only part v1.2 reads).
    pub fn node(&self) -> Option<&str> {
        self.spec
            .node_selector
            .as_ref()?
            .node_selector_terms
            .first()?
            .match_expressions
            .as_ref()?
            .first()?
            .values
            .as_ref()?
            .first()
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    /// `status.twins` (empty if none).
    pub fn twins(&self) -> &[Twin] {
        self.status.as_ref().map_or(&[], |s| s.twins.as_slice())
    }

    /// `metadata.resourceVersion` as a number (0 if absent): the twin's cloud version.
    pub fn version(&self) -> i64 {
        self.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        self.spec
            .device_model_ref
            .as_ref()
            .map_or("", |r| r.name.as_str())
    }

    /// The `description` label (copied into the edge device).
    pub fn description(&self) -> &str {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("description"))
            .map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_crds_parse() {
        for text in CRD_YAML {
            let crd: CustomResourceDefinition = serde_saphyr::from_str(text).unwrap();
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.versions[0].name, VERSION);
        }
    }

    #[test]
    fn node_comes_from_the_first_expression() {
        let d: Device = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "resourceVersion": "42"},
            "spec": {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "", "operator": "In", "values": ["edge-1", "edge-2"]}]}]}}
        }))
        .unwrap();
        assert_eq!(d.node(), Some("edge-1"));
        assert_eq!(d.version(), 42);
        assert_eq!(Device::default().node(), None);
    }

    #[test]
    fn visitors_are_emitted_the_go_way() {
        let v: BluetoothVisitor = serde_json::from_value(serde_json::json!({
            "characteristicUUID": "f000aa0204514000b000000000000000",
            "dataWrite": {"ON": [1], "OFF": "AA=="}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"characteristicUUID":"f000aa0204514000b000000000000000","dataWrite":{"OFF":"AA==","ON":"AQ=="},"dataConverter":{}}"#
        );
        let m: ModbusVisitor = serde_json::from_value(serde_json::json!({
            "register": "CoilRegister", "offset": 2, "limit": 1, "scale": 1.0, "isSwap": true
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"register":"CoilRegister","offset":2,"limit":1,"scale":1,"isSwap":true}"#
        );
    }
}
