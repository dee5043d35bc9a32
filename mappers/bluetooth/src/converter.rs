//! The read conversion of a bluetooth visitor's `dataConverter` (spec: mappers.md §1.2), v1.2
//! quirks kept so that existing device models give the same numbers:
//!
//! 1. bytes `startIndex..=endIndex` (descending when `startIndex > endIndex`);
//! 2. the **decimal** text of each byte, concatenated, parsed as a **hexadecimal** 16-bit number;
//! 3. shifted left by `shiftLeft` if non-zero, else right by `shiftRight`; if both are zero the
//!    value is 0;
//! 4. `orderOfOperations` applied in order (Add, Subtract, Multiply, Divide);
//! 5. formatted with 6 decimals (`24.968750`).
//!
//! Where v1.2 silently produced garbage (index out of range, a concatenation beyond 16 bits) this
//! returns an error.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One arithmetic step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `Add`, `Subtract`, `Multiply` or `Divide`.
    pub operation_type: String,
    /// The operand.
    #[serde(default)]
    pub operation_value: f64,
}

/// A visitor's `dataConverter` (CRD field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataConverter {
    /// First byte index.
    #[serde(default)]
    pub start_index: usize,
    /// Last byte index (inclusive).
    #[serde(default)]
    pub end_index: usize,
    /// Left shift.
    #[serde(default)]
    pub shift_left: u32,
    /// Right shift.
    #[serde(default)]
    pub shift_right: u32,
    /// Arithmetic applied after the shift.
    #[serde(default)]
    pub order_of_operations: Vec<Operation>,
}

impl DataConverter {
    /// Converts a characteristic's bytes into the twin value text.
    pub fn convert(&self, data: &[u8]) -> Result<String> {
        let idx: Vec<usize> = if self.start_index <= self.end_index {
            (self.start_index..=self.end_index).collect()
        } else {
            (self.end_index..=self.start_index).rev().collect()
        };
        let mut text = String::new();
        for i in idx {
            let b = data.get(i).ok_or_else(|| {
                Error::Convert(format!("byte index {i} beyond the {} bytes read", data.len()))
            })?;
            text.push_str(&b.to_string());
        }
        let raw = u16::from_str_radix(&text, 16)
            .map_err(|e| Error::Convert(format!("{text:?} as a 16-bit hex number: {e}")))?;
        let shifted: u64 = if self.shift_left != 0 {
            u64::from(raw).checked_shl(self.shift_left).unwrap_or(0)
        } else if self.shift_right != 0 {
            u64::from(raw).checked_shr(self.shift_right).unwrap_or(0)
        } else {
            0
        };
        #[allow(clippy::cast_precision_loss)] // < 2^32 after a sane shift
        let mut x = shifted as f64;
        for op in &self.order_of_operations {
            x = match op.operation_type.to_ascii_lowercase().as_str() {
                "add" => x + op.operation_value,
                "subtract" => x - op.operation_value,
                "multiply" => x * op.operation_value,
                "divide" if op.operation_value != 0.0 => x / op.operation_value,
                "divide" => return Err(Error::Convert("division by zero".into())),
                other => return Err(Error::Convert(format!("unknown operationType {other:?}"))),
            };
        }
        Ok(format!("{x:.6}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn conv(start: usize, end: usize, sl: u32, sr: u32, ops: &[(&str, f64)]) -> DataConverter {
        DataConverter {
            start_index: start,
            end_index: end,
            shift_left: sl,
            shift_right: sr,
            order_of_operations: ops
                .iter()
                .map(|(t, v)| Operation {
                    operation_type: (*t).into(),
                    operation_value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn cc2650_temperature_model() {
        // CC2650 sample: startIndex 1, endIndex 0, shiftRight 2, Multiply 0.03125.
        // bytes [0x22, 0x0C] -> "12" then "34" -> 0x1234 = 4660 >> 2 = 1165 * 0.03125
        let c = conv(1, 0, 0, 2, &[("Multiply", 0.03125)]);
        assert_eq!(c.convert(&[34, 12, 0, 0]).unwrap(), "36.406250");
    }

    #[test]
    fn quirks() {
        // both shifts zero -> 0
        assert_eq!(
            conv(0, 0, 0, 0, &[("Add", 1.5)]).convert(&[9]).unwrap(),
            "1.500000"
        );
        // out of range index and > 16 bits are errors
        assert!(conv(0, 3, 0, 1, &[]).convert(&[1, 2]).is_err());
        assert!(conv(0, 1, 0, 1, &[]).convert(&[200, 200]).is_err()); // "200200" > 0xFFFF
        assert!(conv(0, 0, 0, 1, &[("Divide", 0.0)]).convert(&[1]).is_err());
        assert!(conv(0, 0, 0, 1, &[("Modulo", 2.0)]).convert(&[1]).is_err());
    }

    proptest! {
        /// Byte order: a descending range reads the same bytes as the ascending range of the
        /// reversed buffer.
        #[test]
        fn descending_range_is_reversed_ascending(a in 0u8..=99, b in 0u8..=99, sr in 1u32..4) {
            let data = [a, b];
            let desc = conv(1, 0, 0, sr, &[]).convert(&data);
            let asc = conv(0, 1, 0, sr, &[]).convert(&[b, a]);
            prop_assert_eq!(desc.ok(), asc.ok());
        }

        /// The shift and scaling follow the hex-of-decimal rule exactly.
        #[test]
        fn scaling_matches_the_formula(byte in 0u8..=255, sl in 0u32..8, m in -1000.0f64..1000.0, add in -1000.0f64..1000.0) {
            let raw = u64::from(u16::from_str_radix(&byte.to_string(), 16).unwrap());
            let c = conv(0, 0, sl, if sl == 0 { 1 } else { 0 }, &[("Multiply", m), ("Add", add)]);
            let shifted = if sl != 0 { raw << sl } else { raw >> 1 };
            #[allow(clippy::cast_precision_loss)]
            let want = format!("{:.6}", shifted as f64 * m + add);
            prop_assert_eq!(c.convert(&[byte]).unwrap(), want);
        }
    }
}
