//! [`ModbusProtocol`]: the [`DeviceProtocol`] for Modbus TCP and RTU.
//!
//! One connection per endpoint (TCP server or serial line), shared by every device behind it
//! (the unit id is set per request). Every connect and request is bounded by the configured
//! timeout; a transport error or timeout drops the connection (reconnected on the next use) and
//! is reported as [`ProtocolErrorKind::Unreachable`]; a Modbus exception as `Rejected`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use mapper_sdk::{DeviceBinding, DeviceProtocol, PropertyBinding, ProtocolError, ProtocolErrorKind};
use tokio::sync::Mutex;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

use crate::codec::{self, Raw};
use crate::config::{Connection, Endpoint, Parity, Register, Visitor};

/// Modbus TCP + RTU.
pub struct ModbusProtocol {
    timeout: Duration,
    conns: Mutex<HashMap<String, Context>>,
}

impl std::fmt::Debug for ModbusProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusProtocol")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn invalid(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::new(ProtocolErrorKind::Invalid, e.to_string())
}

impl ModbusProtocol {
    /// A protocol whose connects and requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            conns: Mutex::new(HashMap::new()),
        }
    }

    async fn connect(&self, ep: &Endpoint) -> Result<Context, ProtocolError> {
        let unreachable =
            |e: String| ProtocolError::new(ProtocolErrorKind::Unreachable, format!("{}: {e}", ep.key()));
        match ep {
            Endpoint::Tcp { ip, port } => {
                let stream =
                    tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((ip.as_str(), *port)))
                        .await
                        .map_err(|_| unreachable("connect timed out".into()))?
                        .map_err(|e| unreachable(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                Ok(tcp::attach(stream))
            }
            Endpoint::Rtu {
                serial_port,
                baud_rate,
                data_bits,
                parity,
                stop_bits,
            } => {
                use tokio_serial::SerialPortBuilderExt;
                let builder = tokio_serial::new(serial_port, *baud_rate)
                    .data_bits(match data_bits {
                        5 => tokio_serial::DataBits::Five,
                        6 => tokio_serial::DataBits::Six,
                        7 => tokio_serial::DataBits::Seven,
                        _ => tokio_serial::DataBits::Eight,
                    })
                    .parity(match parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .stop_bits(if *stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    })
                    .timeout(self.timeout);
                let port = builder
                    .open_native_async()
                    .map_err(|e| unreachable(e.to_string()))?;
                Ok(rtu::attach(port))
            }
        }
    }

    /// Runs `op` on the device's connection (connecting first if needed), with the timeout; drops
    /// the connection on transport errors.
    async fn with_conn<T, F>(&self, dev: &DeviceBinding, op: F) -> Result<T, ProtocolError>
    where
        F: for<'c> FnOnce(
            &'c mut Context,
        )
            -> std::pin::Pin<Box<dyn Future<Output = tokio_modbus::Result<T>> + Send + 'c>>,
    {
        let conn = Connection::from_value(&dev.id, &dev.protocol.protocol, &dev.protocol.protocol_config)
            .map_err(invalid)?;
        let key = conn.endpoint.key();
        let mut conns = self.conns.lock().await;
        if !conns.contains_key(&key) {
            let ctx = self.connect(&conn.endpoint).await?;
            conns.insert(key.clone(), ctx);
        }
        let Some(ctx) = conns.get_mut(&key) else {
            return Err(ProtocolError::new(
                ProtocolErrorKind::Unreachable,
                format!("{key}: no connection"),
            ));
        };
        ctx.set_slave(Slave(conn.slave));
        let res = tokio::time::timeout(self.timeout, op(ctx)).await;
        match res {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(exc))) => Err(ProtocolError::new(
                ProtocolErrorKind::Rejected,
                format!("{key} unit {}: modbus exception {exc}", conn.slave),
            )),
            Ok(Err(e)) => {
                conns.remove(&key);
                let kind = match e {
                    tokio_modbus::Error::Transport(_) => ProtocolErrorKind::Unreachable,
                    // a garbled or mismatched reply: the line is alive but the stream is out of step
                    tokio_modbus::Error::Protocol(_) => ProtocolErrorKind::Rejected,
                };
                Err(ProtocolError::new(
                    kind,
                    format!("{key} unit {}: {e}", conn.slave),
                ))
            }
            Err(_) => {
                conns.remove(&key);
                Err(ProtocolError::new(
                    ProtocolErrorKind::Unreachable,
                    format!("{key} unit {}: no answer within {:?}", conn.slave, self.timeout),
                ))
            }
        }
    }
}

impl DeviceProtocol for ModbusProtocol {
    fn handles_protocol(&self, kind: &str) -> bool {
        kind == "modbus-tcp" || kind == "modbus-rtu"
    }

    fn handles_visitor(&self, kind: &str) -> bool {
        kind.starts_with("modbus")
    }

    async fn read(&self, dev: &DeviceBinding, prop: &PropertyBinding) -> Result<String, ProtocolError> {
        let v = Visitor::from_value(&prop.property.name, &prop.visitor).map_err(invalid)?;
        let (start, count, register) = (v.start, v.count, v.register);
        let raw = self
            .with_conn(dev, move |ctx| {
                Box::pin(async move {
                    Ok(match register {
                        Register::Coil => ctx.read_coils(start, count).await?.map(Raw::Bits),
                        Register::DiscreteInput => {
                            ctx.read_discrete_inputs(start, count).await?.map(Raw::Bits)
                        }
                        Register::Holding => ctx.read_holding_registers(start, count).await?.map(Raw::Words),
                        Register::Input => ctx.read_input_registers(start, count).await?.map(Raw::Words),
                    })
                })
            })
            .await?;
        let raw = match raw {
            Raw::Bits(mut b) => {
                b.truncate(usize::from(count)); // replies are padded to whole bytes
                Raw::Bits(b)
            }
            w => w,
        };
        codec::decode(&raw, &v, &prop.property).map_err(invalid)
    }

    async fn write(
        &self,
        dev: &DeviceBinding,
        prop: &PropertyBinding,
        value: &str,
    ) -> Result<(), ProtocolError> {
        let v = Visitor::from_value(&prop.property.name, &prop.visitor).map_err(invalid)?;
        let raw = codec::encode(value, &v, &prop.property).map_err(invalid)?;
        let start = v.start;
        self.with_conn(dev, move |ctx| {
            Box::pin(async move {
                match &raw {
                    Raw::Bits(b) => ctx.write_multiple_coils(start, b).await,
                    Raw::Words(w) => ctx.write_multiple_registers(start, w).await,
                }
            })
        })
        .await
    }

    async fn forget(&self, _device_id: &str) {
        // Connections are per endpoint; a changed device may have moved endpoint or unit, and
        // reconnecting is cheap: start afresh.
        self.conns.lock().await.clear();
    }
}
