//! BLE behind a trait: a [`Central`] finds and connects a peripheral, a [`Gatt`] peripheral reads
//! and writes characteristics. [`SimCentral`] / [`SimPeripheral`] are a simulated GATT peripheral
//! (this machine has no radio): characteristics hold bytes, a write replaces the value, and every
//! write is recorded; optionally the state is mirrored to a JSON file for black-box tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A connected GATT peripheral.
pub trait Gatt: Send + Sync + 'static {
    /// Reads the characteristic `uuid`.
    fn read(&self, uuid: &str) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// Writes `data` to the characteristic `uuid` (with response).
    fn write(&self, uuid: &str, data: &[u8]) -> impl Future<Output = Result<()>> + Send;
}

/// Finds and connects peripherals.
pub trait Central: Send + Sync + 'static {
    /// The peripheral type.
    type Peripheral: Gatt;
    /// Connects the peripheral whose advertised local name equals `name` (case-insensitive), or
    /// whose address is `mac` when given.
    fn connect(&self, name: &str, mac: Option<&str>)
    -> impl Future<Output = Result<Self::Peripheral>> + Send;
}

/// Canonical form of a characteristic UUID: lower case, no dashes.
pub fn normalize_uuid(uuid: &str) -> String {
    uuid.chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a simulated peripheral holds (also its JSON file format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimState {
    /// Advertised local name, e.g. `CC2650 SensorTag`.
    pub local_name: String,
    /// Address, e.g. `BC:6A:29:AE:CC:96`.
    #[serde(default)]
    pub address: Option<String>,
    /// Characteristic values by UUID.
    #[serde(default)]
    pub characteristics: BTreeMap<String, Vec<u8>>,
    /// Every write, in order: (uuid, bytes).
    #[serde(default)]
    pub writes: Vec<(String, Vec<u8>)>,
}

/// A simulated peripheral; clones share state.
#[derive(Debug, Clone)]
pub struct SimPeripheral {
    state: Arc<Mutex<SimState>>,
    mirror: Option<PathBuf>,
}

impl SimPeripheral {
    /// A peripheral with `state`; with `mirror`, the state is written there (atomically) after
    /// every write.
    pub fn new(mut state: SimState, mirror: Option<PathBuf>) -> Self {
        state.characteristics = state
            .characteristics
            .into_iter()
            .map(|(k, v)| (normalize_uuid(&k), v))
            .collect();
        let p = Self {
            state: Arc::new(Mutex::new(state)),
            mirror,
        };
        p.save();
        p
    }

    /// Loads a state file.
    pub fn load(path: &Path, mirror: Option<PathBuf>) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Ble(format!("simulated peripheral {}: {e}", path.display())))?;
        let state: SimState = serde_json::from_str(&text)
            .map_err(|e| Error::Ble(format!("simulated peripheral {}: {e}", path.display())))?;
        Ok(Self::new(state, mirror))
    }

    /// A snapshot of the state.
    pub fn snapshot(&self) -> SimState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sets a characteristic's value (the device measured something new).
    pub fn set(&self, uuid: &str, value: Vec<u8>) {
        if let Ok(mut s) = self.state.lock() {
            s.characteristics.insert(normalize_uuid(uuid), value);
        }
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.mirror else { return };
        let snap = self.snapshot();
        let tmp = path.with_extension("tmp");
        let res = serde_json::to_vec(&snap)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), "cannot mirror simulated peripheral: {e}");
        }
    }
}

impl Gatt for SimPeripheral {
    async fn read(&self, uuid: &str) -> Result<Vec<u8>> {
        let uuid = normalize_uuid(uuid);
        self.state
            .lock()
            .map_err(|_| Error::Ble("simulated peripheral poisoned".into()))?
            .characteristics
            .get(&uuid)
            .cloned()
            .ok_or_else(|| Error::Ble(format!("no characteristic {uuid}")))
    }

    async fn write(&self, uuid: &str, data: &[u8]) -> Result<()> {
        let uuid = normalize_uuid(uuid);
        {
            let mut s = self
                .state
                .lock()
                .map_err(|_| Error::Ble("simulated peripheral poisoned".into()))?;
            if !s.characteristics.contains_key(&uuid) {
                return Err(Error::Ble(format!("no characteristic {uuid}")));
            }
            s.characteristics.insert(uuid.clone(), data.to_vec());
            s.writes.push((uuid, data.to_vec()));
        }
        self.save();
        Ok(())
    }
}

/// A central that "finds" one simulated peripheral by its local name or address.
#[derive(Debug, Clone)]
pub struct SimCentral {
    /// The only peripheral in range.
    pub peripheral: SimPeripheral,
}

impl Central for SimCentral {
    type Peripheral = SimPeripheral;

    async fn connect(&self, name: &str, mac: Option<&str>) -> Result<SimPeripheral> {
        let s = self.peripheral.snapshot();
        let by_mac = mac.is_some_and(|m| s.address.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(m)));
        if by_mac || s.local_name.eq_ignore_ascii_case(name) {
            Ok(self.peripheral.clone())
        } else {
            Err(Error::Ble(format!("no peripheral named {name:?} in range")))
        }
    }
}
