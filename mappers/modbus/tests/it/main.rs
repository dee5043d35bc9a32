//! Black-box tests of `mapper-modbus` against a real Modbus server (pymodbus, see
//! `../modbus_server.py`) over TCP and over RTU on a pty pair (socat), with the embedded MQTT
//! broker in-process as the edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod rtu;
mod tcp;
