//! The real radio backend (feature `ble`, off by default): btleplug over BlueZ/D-Bus.
//!
//! Discovery scans until a peripheral advertises the wanted local name (case-insensitive) or has
//! the wanted address, then connects and discovers services. Not exercised by CI (no radio on
//! the test machines); the simulated peripheral in [`crate::gatt`] is.

use std::time::Duration;

use btleplug::api::{Central as _, Manager as _, Peripheral as _, ScanFilter, WriteType};
use btleplug::platform::{Adapter, Manager, Peripheral};

use crate::error::{Error, Result};
use crate::gatt::{Central, Gatt, normalize_uuid};

fn ble(e: btleplug::Error) -> Error {
    Error::Ble(e.to_string())
}

/// The first Bluetooth adapter of the host.
#[derive(Debug, Clone)]
pub struct BluezCentral {
    adapter: Adapter,
    scan_timeout: Duration,
}

impl BluezCentral {
    /// Opens the first adapter; a scan for a device gives up after `scan_timeout`.
    pub async fn new(scan_timeout: Duration) -> Result<Self> {
        let manager = Manager::new().await.map_err(ble)?;
        let adapter = manager
            .adapters()
            .await
            .map_err(ble)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Ble("no Bluetooth adapter on this host".into()))?;
        Ok(Self {
            adapter,
            scan_timeout,
        })
    }

    async fn find(&self, name: &str, mac: Option<&str>) -> Result<Option<Peripheral>> {
        for p in self.adapter.peripherals().await.map_err(ble)? {
            let Some(props) = p.properties().await.map_err(ble)? else {
                continue;
            };
            let by_name = props
                .local_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name));
            let by_mac = mac.is_some_and(|m| props.address.to_string().eq_ignore_ascii_case(m));
            if by_name || by_mac {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

impl Central for BluezCentral {
    type Peripheral = BlePeripheral;

    async fn connect(&self, name: &str, mac: Option<&str>) -> Result<BlePeripheral> {
        self.adapter
            .start_scan(ScanFilter::default())
            .await
            .map_err(ble)?;
        let deadline = tokio::time::Instant::now() + self.scan_timeout;
        let found = loop {
            if let Some(p) = self.find(name, mac).await? {
                break Some(p);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let _ = self.adapter.stop_scan().await;
        let p = found.ok_or_else(|| {
            Error::Ble(format!(
                "no peripheral named {name:?} found within {:?}",
                self.scan_timeout
            ))
        })?;
        p.connect().await.map_err(ble)?;
        p.discover_services().await.map_err(ble)?;
        Ok(BlePeripheral { p })
    }
}

/// A connected BlueZ peripheral.
#[derive(Debug, Clone)]
pub struct BlePeripheral {
    p: Peripheral,
}

impl BlePeripheral {
    fn characteristic(&self, uuid: &str) -> Result<btleplug::api::Characteristic> {
        let want = normalize_uuid(uuid);
        self.p
            .characteristics()
            .into_iter()
            .find(|c| normalize_uuid(&c.uuid.to_string()) == want)
            .ok_or_else(|| Error::Ble(format!("no characteristic {want}")))
    }
}

impl Gatt for BlePeripheral {
    async fn read(&self, uuid: &str) -> Result<Vec<u8>> {
        let c = self.characteristic(uuid)?;
        self.p.read(&c).await.map_err(ble)
    }

    async fn write(&self, uuid: &str, data: &[u8]) -> Result<()> {
        let c = self.characteristic(uuid)?;
        self.p.write(&c, data, WriteType::WithResponse).await.map_err(ble)
    }
}
