//! Modbus pieces of the device profile: the `visitorConfig` of a property and the
//! `protocol_config` of a device, in the v1.2 cloud's field names.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The four Modbus data areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// FC1 read / FC15 write, 1 bit each.
    Coil,
    /// FC2, read-only bits.
    DiscreteInput,
    /// FC3 read / FC16 write, 16-bit words.
    Holding,
    /// FC4, read-only words.
    Input,
}

impl Register {
    /// True for the bit areas.
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coil | Self::DiscreteInput)
    }
    /// True for the areas Modbus lets a client write.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Coil | Self::Holding)
    }
}

/// A property's decoded `visitorConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Visitor {
    /// Data area.
    pub register: Register,
    /// First address (0-based, as on the wire).
    pub start: u16,
    /// Number of coils/registers (≥ 1).
    pub count: u16,
    /// Multiplier applied to the raw integer (0 or absent = 1).
    pub scale: f64,
    /// Swap the two bytes of every register (`isSwap`).
    pub swap_bytes: bool,
    /// Reverse the order of the registers (`isRegisterSwap`).
    pub swap_registers: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVisitor {
    register: String,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    index: Option<i64>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    is_swap: bool,
    #[serde(default)]
    is_register_swap: bool,
}

impl Visitor {
    /// Decodes a `visitorConfig`. The cloud's shape is `{register, offset, limit, scale, isSwap,
    /// isRegisterSwap}` with `offset` = start address and `limit` = count. The Node.js mapper's
    /// hand-written shape `{index, offset}` (index = start, offset = count) is read too when `index`
    /// is present.
    pub fn from_value(property: &str, v: &Value) -> Result<Self> {
        let bad = |reason: String| Error::Visitor {
            property: property.to_owned(),
            reason,
        };
        let raw: RawVisitor = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
        let register = match raw.register.as_str() {
            "CoilRegister" => Register::Coil,
            "DiscreteInputRegister" => Register::DiscreteInput,
            "HoldingRegister" => Register::Holding,
            "InputRegister" => Register::Input,
            other => {
                return Err(bad(format!(
                    "register {other:?} is not CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister"
                )));
            }
        };
        let (start, count) = match raw.index {
            Some(index) => (index, raw.offset.unwrap_or(1)),
            None => (
                raw.offset
                    .ok_or_else(|| bad("offset (start address) missing".into()))?,
                raw.limit.unwrap_or(1),
            ),
        };
        let start =
            u16::try_from(start).map_err(|_| bad(format!("start address {start} out of 0..=65535")))?;
        let max = if register.is_bits() { 2000 } else { 125 };
        let count = u16::try_from(count)
            .ok()
            .filter(|c| (1..=max).contains(c))
            .ok_or_else(|| bad(format!("limit {count} out of 1..={max}")))?;
        let scale = match raw.scale {
            Some(s) if s.is_finite() && s != 0.0 => s,
            Some(s) if !s.is_finite() => return Err(bad(format!("scale {s} is not a number"))),
            _ => 1.0,
        };
        Ok(Self {
            register,
            start,
            count,
            scale,
            swap_bytes: raw.is_swap,
            swap_registers: raw.is_register_swap,
        })
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// None.
    None,
    /// Even.
    Even,
    /// Odd.
    Odd,
}

/// Where a device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP.
    Tcp {
        /// Host or IP.
        ip: String,
        /// TCP port.
        port: u16,
    },
    /// Modbus RTU over a serial line.
    Rtu {
        /// Device path, e.g. `/dev/ttyS0`.
        serial_port: String,
        /// Baud rate.
        baud_rate: u32,
        /// 5..=8.
        data_bits: u8,
        /// Parity.
        parity: Parity,
        /// 1 or 2.
        stop_bits: u8,
    },
}

impl Endpoint {
    /// Key shared by every device behind the same TCP server or serial line (one connection each).
    pub fn key(&self) -> String {
        match self {
            Self::Tcp { ip, port } => format!("tcp://{ip}:{port}"),
            Self::Rtu { serial_port, .. } => format!("rtu://{serial_port}"),
        }
    }
}

/// A device's decoded `protocol_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Transport.
    pub endpoint: Endpoint,
    /// Unit id (`slaveID`; a string in the TCP CRD, a number in RTU — both read).
    pub slave: u8,
}

impl Connection {
    /// Decodes `protocol_config` for protocol kind `modbus-tcp` / `modbus-rtu`. A block nested
    /// under `tcp` / `rtu` (the CRD's own shape) is accepted too.
    pub fn from_value(device: &str, kind: &str, v: &Value) -> Result<Self> {
        let bad = |reason: String| Error::Protocol {
            device: device.to_owned(),
            reason,
        };
        let kind = kind.to_ascii_lowercase();
        let rtu = match kind.as_str() {
            "modbus-rtu" => true,
            "modbus-tcp" => false,
            other => return Err(bad(format!("protocol {other:?} is not modbus-tcp or modbus-rtu"))),
        };
        let block = v.get(if rtu { "rtu" } else { "tcp" }).unwrap_or(v);
        let slave = match block.get("slaveID") {
            None | Some(Value::Null) => 1,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| bad(format!("slaveID {n} out of 0..=255")))?,
            Some(Value::String(s)) => s
                .trim()
                .parse::<u8>()
                .map_err(|_| bad(format!("slaveID {s:?} is not 0..=255")))?,
            Some(other) => return Err(bad(format!("slaveID {other} is not a number"))),
        };
        let str_field = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_owned);
        let int_field = |k: &str| block.get(k).and_then(Value::as_u64);
        let endpoint = if rtu {
            let serial_port = str_field("serialPort").ok_or_else(|| bad("serialPort missing".into()))?;
            let parity = match str_field("parity")
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("none") | Some("n") => Parity::None,
                Some("even") | Some("e") => Parity::Even,
                Some("odd") | Some("o") => Parity::Odd,
                Some(p) => return Err(bad(format!("parity {p:?} is not none, even or odd"))),
            };
            Endpoint::Rtu {
                serial_port,
                baud_rate: int_field("baudRate")
                    .and_then(|b| u32::try_from(b).ok())
                    .unwrap_or(9600),
                data_bits: int_field("dataBits")
                    .and_then(|b| u8::try_from(b).ok())
                    .unwrap_or(8),
                parity,
                stop_bits: int_field("stopBits")
                    .and_then(|b| u8::try_from(b).ok())
                    .unwrap_or(1),
            }
        } else {
            let ip = str_field("ip").ok_or_else(|| bad("ip missing".into()))?;
            let port = match block.get("port") {
                Some(Value::String(s)) => s.parse::<u16>().ok(),
                Some(p) => p.as_u64().and_then(|p| u16::try_from(p).ok()),
                None => Some(502),
            }
            .ok_or_else(|| bad("port is not 0..=65535".into()))?;
            Endpoint::Tcp { ip, port }
        };
        Ok(Self { endpoint, slave })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn cloud_visitor() {
        let v = Visitor::from_value(
            "t",
            &json!({"register":"HoldingRegister","offset":2,"limit":2,"scale":0.5,"isSwap":true,"isRegisterSwap":false}),
        )
        .unwrap();
        assert_eq!(
            (
                v.register,
                v.start,
                v.count,
                v.scale,
                v.swap_bytes,
                v.swap_registers
            ),
            (Register::Holding, 2, 2, 0.5, true, false)
        );
    }

    #[test]
    fn legacy_visitor_and_errors() {
        let v = Visitor::from_value("t", &json!({"register":"CoilRegister","index":7,"offset":3})).unwrap();
        assert_eq!((v.start, v.count), (7, 3));
        assert!(Visitor::from_value("t", &json!({"register":"Foo","offset":1})).is_err());
        assert!(
            Visitor::from_value("t", &json!({"register":"InputRegister","offset":1,"limit":200})).is_err()
        );
        let e = Visitor::from_value("temp", &json!({"register":"InputRegister"})).unwrap_err();
        assert!(e.to_string().contains("temp"), "{e}");
    }

    #[test]
    fn cloud_protocol_blocks() {
        let c = Connection::from_value(
            "d",
            "modbus-rtu",
            &json!({"serialPort":"/dev/ttyS1","baudRate":115200,"dataBits":8,"parity":"even","stopBits":1,"slaveID":1}),
        )
        .unwrap();
        assert_eq!(c.slave, 1);
        assert!(matches!(
            c.endpoint,
            Endpoint::Rtu {
                baud_rate: 115200,
                parity: Parity::Even,
                ..
            }
        ));
        let c = Connection::from_value(
            "d",
            "modbus-tcp",
            &json!({"ip":"127.0.0.1","port":5020,"slaveID":"3"}),
        )
        .unwrap();
        assert_eq!(
            c,
            Connection {
                endpoint: Endpoint::Tcp {
                    ip: "127.0.0.1".into(),
                    port: 5020
                },
                slave: 3
            }
        );
        let c = Connection::from_value(
            "d",
            "modbus-tcp",
            &json!({"tcp":{"ip":"h","port":1,"slaveID":"2"}}),
        )
        .unwrap();
        assert_eq!(c.slave, 2);
        assert!(
            Connection::from_value("d", "modbus-tcp", &json!({"ip":"h","port":1,"slaveID":"x"})).is_err()
        );
    }
}
