//! Minimal DER reading and writing: just enough to split a certificate into its signed parts, read a
//! SubjectPublicKeyInfo, tell an X.509 v1 certificate from a v3 one, and wrap PKCS#1 / SEC1 private keys
//! into PKCS#8 (ring, and so rcgen on ring, only loads PKCS#8).
//!
//! Every reader returns `None` on malformed input; callers turn that into an error naming the file.

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xA0;
const TAG_CONTEXT_1: u8 = 0xA1;

/// `rsaEncryption` OID followed by a NULL parameter: the AlgorithmIdentifier content for RSA keys.
const RSA_ALG_ID: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// `id-ecPublicKey` OID.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// Named curves ring can load: prime256v1 and secp384r1 (full OID TLVs).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];

/// One decoded TLV.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    /// Tag, length and content together.
    pub(crate) full: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and the remaining bytes.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let header_len = input.len() - rest.len();
    let (content, remaining) = rest.split_at(len);
    let full = input.get(..header_len + len)?;
    Some((Tlv { tag, content, full }, remaining))
}

fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// The pieces of a certificate needed to check its signature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertParts<'a> {
    /// The whole DER `tbsCertificate` (the signed message).
    pub(crate) tbs: &'a [u8],
    /// Content of the outer `signatureAlgorithm` AlgorithmIdentifier.
    pub(crate) signature_alg: &'a [u8],
    /// The signature bits (BIT STRING content without the unused-bits byte).
    pub(crate) signature: &'a [u8],
    /// True when the certificate has no explicit version field, i.e. it is X.509 v1.
    pub(crate) is_v1: bool,
}

/// Splits a DER certificate into [`CertParts`].
pub(crate) fn cert_parts(cert: &[u8]) -> Option<CertParts<'_>> {
    let (outer, _) = expect(cert, TAG_SEQUENCE)?;
    let (tbs, rest) = expect(outer.content, TAG_SEQUENCE)?;
    let (alg, rest) = expect(rest, TAG_SEQUENCE)?;
    let (sig, _) = expect(rest, TAG_BIT_STRING)?;
    let (&unused, signature) = sig.content.split_first()?;
    if unused != 0 {
        return None;
    }
    let (first, _) = read_tlv(tbs.content)?;
    Some(CertParts {
        tbs: tbs.full,
        signature_alg: alg.content,
        signature,
        is_v1: first.tag != TAG_CONTEXT_0,
    })
}

/// True when `cert` parses as an X.509 v1 certificate (no extensions, so no SAN and no EKU).
pub(crate) fn is_v1_cert(cert: &[u8]) -> bool {
    cert_parts(cert).is_some_and(|p| p.is_v1)
}

/// Splits a DER SubjectPublicKeyInfo into (AlgorithmIdentifier content, public key bits).
pub(crate) fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (outer, _) = expect(spki, TAG_SEQUENCE)?;
    let (alg, rest) = expect(outer.content, TAG_SEQUENCE)?;
    let (bits, _) = expect(rest, TAG_BIT_STRING)?;
    let (&unused, key) = bits.content.split_first()?;
    (unused == 0).then_some((alg.content, key))
}

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

fn pkcs8(alg_id_content: &[u8], private_key: &[u8]) -> Vec<u8> {
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend(tlv(TAG_SEQUENCE, alg_id_content));
    body.extend(tlv(TAG_OCTET_STRING, private_key));
    tlv(TAG_SEQUENCE, &body)
}

/// Wraps a PKCS#1 `RSAPrivateKey` into a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Option<Vec<u8>> {
    expect(pkcs1, TAG_SEQUENCE)?;
    Some(pkcs8(RSA_ALG_ID, pkcs1))
}

/// Wraps a SEC1 `ECPrivateKey` into PKCS#8. The curve comes from the key's `parameters` field (P-256 or
/// P-384); the public key must be present (ring needs it). The embedded key is re-encoded without
/// `parameters`, as RFC 5915 asks inside PKCS#8.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = expect(sec1, TAG_SEQUENCE)?;
    let (version, rest) = expect(outer.content, TAG_INTEGER)?;
    let (private, mut rest) = expect(rest, TAG_OCTET_STRING)?;
    let mut curve = None;
    let mut public = None;
    while !rest.is_empty() {
        let (field, after) = read_tlv(rest)?;
        match field.tag {
            TAG_CONTEXT_0 => curve = Some(field.content),
            TAG_CONTEXT_1 => public = Some(field.full),
            _ => return None,
        }
        rest = after;
    }
    let curve = curve.filter(|c| *c == P256_OID || *c == P384_OID)?;
    let mut inner = version.full.to_vec();
    inner.extend_from_slice(private.full);
    inner.extend_from_slice(public?);
    let mut alg = EC_PUBLIC_KEY_OID.to_vec();
    alg.extend_from_slice(curve);
    Some(pkcs8(&alg, &tlv(TAG_SEQUENCE, &inner)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trips_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let enc = tlv(TAG_OCTET_STRING, &content);
            let (got, rest) = read_tlv(&enc).unwrap();
            assert_eq!(got.tag, TAG_OCTET_STRING);
            assert_eq!(got.content, &content[..]);
            assert_eq!(got.full, &enc[..]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let enc = tlv(TAG_SEQUENCE, &[1, 2, 3, 4]);
        assert!(read_tlv(&enc[..enc.len() - 1]).is_none());
        assert!(read_tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none());
        assert!(cert_parts(&enc).is_none());
    }

    #[test]
    fn sec1_without_curve_is_rejected() {
        let mut inner = tlv(TAG_INTEGER, &[1]);
        inner.extend(tlv(TAG_OCTET_STRING, &[9; 32]));
        assert!(sec1_to_pkcs8(&tlv(TAG_SEQUENCE, &inner)).is_none());
    }
}
