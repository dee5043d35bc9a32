//! Pure conversion between Modbus data (bits or 16-bit registers) and twin value text.
//!
//! Registers → bytes: reverse the register order if `isRegisterSwap`, write each register
//! big-endian, swap the two bytes of each register if `isSwap`. Writes apply the same steps in
//! reverse. Then by the model's `dataType`:
//! * `int` / `float`: the bytes as one unsigned big-endian integer (≤ 4 registers), bits as an
//!   integer with the first coil as bit 0; times `scale`; clamped to `[minimum, maximum]`;
//!   `int` truncates toward zero. Writes divide by `scale` and round.
//! * `boolean`: any non-zero → `true`, else `false`.
//! * `string`: register bytes as UTF-8 with trailing NULs dropped; on bit areas the integer text.

use mapper_sdk::profile::Property;

use crate::config::{Register, Visitor};
use crate::error::{Error, Result};

/// Raw Modbus data of one visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// Coils / discrete inputs.
    Bits(Vec<bool>),
    /// Holding / input registers.
    Words(Vec<u16>),
}

fn words_to_bytes(words: &[u16], v: &Visitor) -> Vec<u8> {
    let mut w = words.to_vec();
    if v.swap_registers {
        w.reverse();
    }
    let mut out = Vec::with_capacity(w.len() * 2);
    for word in w {
        let [hi, lo] = word.to_be_bytes();
        if v.swap_bytes {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

fn bytes_to_words(bytes: &[u8], v: &Visitor) -> Vec<u16> {
    let mut w: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], c.get(1).copied().unwrap_or(0));
            if v.swap_bytes {
                u16::from_be_bytes([b, a])
            } else {
                u16::from_be_bytes([a, b])
            }
        })
        .collect();
    if v.swap_registers {
        w.reverse();
    }
    w
}

fn raw_to_int(raw: &Raw, v: &Visitor) -> Result<u64> {
    match raw {
        Raw::Bits(bits) => {
            if bits.len() > 64 {
                return Err(Error::Convert(format!("{} bits do not fit a number", bits.len())));
            }
            Ok(bits
                .iter()
                .enumerate()
                .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << i)))
        }
        Raw::Words(words) => {
            if words.len() > 4 {
                return Err(Error::Convert(format!(
                    "{} registers do not fit a number",
                    words.len()
                )));
            }
            Ok(words_to_bytes(words, v)
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        }
    }
}

fn clamp(x: f64, p: &Property) -> f64 {
    let mut x = x;
    if let Some(max) = p.maximum.filter(|m| *m != 0.0) {
        x = x.min(max);
    }
    if let Some(min) = p.minimum.filter(|m| *m != 0.0) {
        x = x.max(min);
    }
    x
}

/// Converts what was read into the twin value text.
pub fn decode(raw: &Raw, v: &Visitor, p: &Property) -> Result<String> {
    match p.data_type.to_ascii_lowercase().as_str() {
        "boolean" | "bool" => Ok((raw_to_int(raw, v)? != 0).to_string()),
        "string" | "" => match raw {
            Raw::Bits(_) => Ok(raw_to_int(raw, v)?.to_string()),
            Raw::Words(words) => {
                let mut bytes = words_to_bytes(words, v);
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                String::from_utf8(bytes).map_err(|e| Error::Convert(format!("registers are not UTF-8: {e}")))
            }
        },
        "int" | "float" | "double" => {
            #[allow(clippy::cast_precision_loss)]
            // ≤ 64-bit raw values; precision beyond 2^53 is not meaningful here
            let x = clamp(raw_to_int(raw, v)? as f64 * v.scale, p);
            if p.data_type.eq_ignore_ascii_case("int") {
                #[allow(clippy::cast_possible_truncation)] // truncation toward zero is the documented rule
                Ok((x.trunc() as i64).to_string())
            } else {
                Ok(format_float(x))
            }
        }
        other => Err(Error::Convert(format!("unsupported dataType {other:?}"))),
    }
}

fn format_float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains(['e', 'E']) {
        format!("{x:.6}")
    } else {
        s
    }
}

fn int_to_raw(n: u64, v: &Visitor) -> Result<Raw> {
    let count = usize::from(v.count);
    if v.register.is_bits() {
        if count < 64 && n >> count != 0 {
            return Err(Error::Convert(format!("{n} does not fit {count} coils")));
        }
        Ok(Raw::Bits(
            (0..count).map(|i| i < 64 && (n >> i) & 1 == 1).collect(),
        ))
    } else {
        if count > 4 {
            return Err(Error::Convert(format!("{count} registers do not fit a number")));
        }
        let width = count * 2;
        if width < 8 && n >> (width * 8) != 0 {
            return Err(Error::Convert(format!("{n} does not fit {count} registers")));
        }
        let be = n.to_be_bytes();
        Ok(Raw::Words(bytes_to_words(&be[8 - width..], v)))
    }
}

/// Converts a desired twin value into what to write.
pub fn encode(value: &str, v: &Visitor, p: &Property) -> Result<Raw> {
    if !v.register.is_writable() {
        return Err(Error::Convert(format!(
            "{:?} registers are read-only",
            v.register
        )));
    }
    let value = value.trim();
    match p.data_type.to_ascii_lowercase().as_str() {
        "boolean" | "bool" => {
            let b = parse_bool(value).ok_or_else(|| Error::Convert(format!("{value:?} is not a boolean")))?;
            int_to_raw(u64::from(b), v)
        }
        "string" | "" => {
            if v.register == Register::Coil {
                let n = match parse_bool(value) {
                    Some(b) => u64::from(b),
                    None => value.parse::<u64>().map_err(|_| {
                        Error::Convert(format!("{value:?} is not ON/OFF, true/false or a number"))
                    })?,
                };
                return int_to_raw(n, v);
            }
            let width = usize::from(v.count) * 2;
            let mut bytes = value.as_bytes().to_vec();
            if bytes.len() > width {
                return Err(Error::Convert(format!("{value:?} is longer than {width} bytes")));
            }
            bytes.resize(width, 0);
            Ok(Raw::Words(bytes_to_words(&bytes, v)))
        }
        "int" | "float" | "double" => {
            let x: f64 = value
                .parse()
                .map_err(|_| Error::Convert(format!("{value:?} is not a number")))?;
            if !x.is_finite() {
                return Err(Error::Convert(format!("{value:?} is not a finite number")));
            }
            let raw = (clamp(x, p) / v.scale).round();
            let n = if raw < 0.0 {
                // two's complement within the visitor's width
                #[allow(clippy::cast_possible_truncation)]
                let signed = raw as i64;
                let bits = if v.register.is_bits() {
                    u32::from(v.count)
                } else {
                    u32::from(v.count) * 16
                };
                let n = signed.cast_unsigned();
                if bits >= 64 { n } else { n & ((1u64 << bits) - 1) }
            } else {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = raw as u64;
                n
            };
            int_to_raw(n, v)
        }
        other => Err(Error::Convert(format!("unsupported dataType {other:?}"))),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn visitor(register: Register, count: u16, scale: f64, sb: bool, sr: bool) -> Visitor {
        Visitor {
            register,
            start: 0,
            count,
            scale,
            swap_bytes: sb,
            swap_registers: sr,
        }
    }
    fn prop(t: &str) -> Property {
        Property {
            name: "p".into(),
            data_type: t.into(),
            ..Property::default()
        }
    }

    #[test]
    fn swaps() {
        let raw = Raw::Words(vec![0x0102, 0x0304]);
        let p = prop("int");
        assert_eq!(
            decode(&raw, &visitor(Register::Holding, 2, 1.0, false, false), &p).unwrap(),
            0x01020304.to_string()
        );
        assert_eq!(
            decode(&raw, &visitor(Register::Holding, 2, 1.0, true, false), &p).unwrap(),
            0x02010403.to_string()
        );
        assert_eq!(
            decode(&raw, &visitor(Register::Holding, 2, 1.0, false, true), &p).unwrap(),
            0x03040102.to_string()
        );
        assert_eq!(
            decode(&raw, &visitor(Register::Holding, 2, 1.0, true, true), &p).unwrap(),
            0x04030201.to_string()
        );
    }

    #[test]
    fn scale_clamp_and_types() {
        let mut p = prop("int");
        p.maximum = Some(100.0);
        let v = visitor(Register::Input, 1, 0.1, false, false);
        assert_eq!(decode(&Raw::Words(vec![255]), &v, &p).unwrap(), "25");
        assert_eq!(decode(&Raw::Words(vec![5000]), &v, &p).unwrap(), "100");
        assert_eq!(
            decode(&Raw::Words(vec![255]), &v, &prop("float")).unwrap(),
            "25.5"
        );
        assert_eq!(
            decode(
                &Raw::Bits(vec![true, false, true]),
                &visitor(Register::Coil, 3, 1.0, false, false),
                &prop("int")
            )
            .unwrap(),
            "5"
        );
        assert_eq!(
            decode(
                &Raw::Bits(vec![true]),
                &visitor(Register::Coil, 1, 1.0, false, false),
                &prop("boolean")
            )
            .unwrap(),
            "true"
        );
        let s = decode(
            &Raw::Words(vec![0x4f4e, 0]),
            &visitor(Register::Holding, 2, 1.0, false, false),
            &prop("string"),
        )
        .unwrap();
        assert_eq!(s, "ON");
    }

    #[test]
    fn writes() {
        let v = visitor(Register::Coil, 1, 1.0, false, false);
        assert_eq!(encode("ON", &v, &prop("string")).unwrap(), Raw::Bits(vec![true]));
        assert_eq!(
            encode("false", &v, &prop("boolean")).unwrap(),
            Raw::Bits(vec![false])
        );
        assert!(encode("2", &v, &prop("int")).is_err());
        let v = visitor(Register::Holding, 1, 0.5, false, false);
        assert_eq!(encode("21", &v, &prop("int")).unwrap(), Raw::Words(vec![42]));
        assert_eq!(
            encode(
                "-1",
                &visitor(Register::Holding, 1, 1.0, false, false),
                &prop("int")
            )
            .unwrap(),
            Raw::Words(vec![0xffff])
        );
        assert!(encode("1", &visitor(Register::Input, 1, 1.0, false, false), &prop("int")).is_err());
        assert!(encode("abc", &v, &prop("int")).is_err());
    }

    proptest! {
        #[test]
        fn int_roundtrip(count in 1u16..=4, sb: bool, sr: bool, n: u64) {
            let v = visitor(Register::Holding, count, 1.0, sb, sr);
            let bits = u32::from(count) * 16;
            let n = if bits >= 64 { n >> 1 } else { n & ((1u64 << bits) - 1) }; // decode goes through i64
            let raw = encode(&n.to_string(), &v, &prop("int"));
            // values beyond 2^53 lose precision in f64: only check the exactly representable ones
            prop_assume!(n < (1u64 << 53));
            let raw = raw.unwrap();
            prop_assert_eq!(decode(&raw, &v, &prop("int")).unwrap(), n.to_string());
        }

        #[test]
        fn swap_is_an_involution(words in proptest::collection::vec(any::<u16>(), 1..=4), sb: bool, sr: bool) {
            let v = visitor(Register::Holding, u16::try_from(words.len()).unwrap(), 1.0, sb, sr);
            prop_assert_eq!(bytes_to_words(&words_to_bytes(&words, &v), &v), words);
        }

        #[test]
        fn coil_roundtrip(count in 1u16..=16, n in 0u64..65536) {
            let n = n & ((1u64 << count) - 1);
            let v = visitor(Register::Coil, count, 1.0, false, false);
            let raw = encode(&n.to_string(), &v, &prop("int")).unwrap();
            prop_assert_eq!(decode(&raw, &v, &prop("int")).unwrap(), n.to_string());
        }
    }
}
