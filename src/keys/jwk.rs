//! Public keys as JWKs (RFC 7517, RFC 7518 section 6, RFC 8037 section 2), their RFC 7638
//! thumbprints (the `kid`), and reading them from a JWKS document or a SubjectPublicKeyInfo
//! PEM file.
//!
//! A public key read from outside (a fetched JWKS, a file) is checked when it is read: the
//! point is on its curve, an RSA modulus has 2048 to 8192 bits and the exponent is 65537. Keys
//! of a type or algorithm steelcut does not verify with are skipped, not refused, so that one
//! foreign key in a JWKS does not hide the others.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use pkcs8::der::{Decode as _, Reader as _};
use pkcs8::ObjectIdentifier;
use sha2::{Digest, Sha256};

use super::alg::Alg;
use super::error::KeyError;

/// id-Ed25519 (RFC 8410 section 3).
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ecPublicKey (RFC 5480 section 2.1.1).
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480 section 2.1.1.1).
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// rsaEncryption (RFC 8017 appendix A.1).
pub const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The RSA exponent accepted, 65537, big-endian without leading zeros.
pub const RSA_E: [u8; 3] = [1, 0, 1];
/// The RSA modulus sizes accepted, in bits (aws-lc-rs verifies 2048 to 8192).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A public key of one of the three key types, which fixes its algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicJwk {
    /// Ed25519 (`kty: OKP`, RFC 8037).
    Okp { x: [u8; 32] },
    /// P-256: the affine coordinates, 32 bytes each (left-padded, RFC 7518 section 6.2.1.2).
    Ec { x: [u8; 32], y: [u8; 32] },
    /// Big-endian, no leading zero (RFC 7518 section 6.3.1: "AQAB" for 65537).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

impl PublicJwk {
    /// From an uncompressed SEC1 point `04 || x || y`.
    pub fn from_p256_point(point: &[u8]) -> Option<Self> {
        if point.len() != 65 || point[0] != 4 {
            return None;
        }
        let mut x = [0; 32];
        let mut y = [0; 32];
        x.copy_from_slice(&point[1..33]);
        y.copy_from_slice(&point[33..65]);
        Some(Self::Ec { x, y })
    }

    /// From an RSA modulus and exponent, leading zeros dropped.
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self::Rsa {
            n: strip_zeros(n),
            e: strip_zeros(e),
        }
    }

    /// The only algorithm this key is used with.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Okp { .. } => Alg::EdDsa,
            Self::Ec { .. } => Alg::Es256,
            Self::Rsa { .. } => Alg::Rs256,
        }
    }

    /// RFC 7638 section 3.2: required members only, lexicographic order, no whitespace.
    fn canonical(&self) -> String {
        match self {
            Self::Okp { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, B64.encode(x))
            }
            Self::Ec { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                B64.encode(x),
                B64.encode(y)
            ),
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                B64.encode(e),
                B64.encode(n)
            ),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint: the `kid`, which every node derives alike.
    pub fn thumbprint(&self) -> String {
        B64.encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// The published JWK: the public members, `kid`, `alg` and `use: sig`.
    pub fn to_json(&self, kid: &str) -> serde_json::Value {
        let mut v = match self {
            Self::Okp { x } => {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(x)})
            }
            Self::Ec { x, y } => serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)
            }),
            Self::Rsa { n, e } => {
                serde_json::json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)})
            }
        };
        v["kid"] = kid.into();
        v["alg"] = self.alg().as_str().into();
        v["use"] = "sig".into();
        v
    }

    /// The verification key for jsonwebtoken.
    pub fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey, jsonwebtoken::errors::Error> {
        use jsonwebtoken::DecodingKey;
        match self {
            Self::Okp { x } => DecodingKey::from_ed_components(&B64.encode(x)),
            Self::Ec { x, y } => DecodingKey::from_ec_components(&B64.encode(x), &B64.encode(y)),
            Self::Rsa { n, e } => DecodingKey::from_rsa_components(&B64.encode(n), &B64.encode(e)),
        }
    }

    /// Whether this is a key steelcut verifies with: a point on its curve, an RSA key of
    /// 2048 to 8192 bits with exponent 65537 (aws-lc-rs would parse smaller moduli here and
    /// only refuse them at verification).
    pub fn validate(&self) -> Result<(), BadKey> {
        use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
        match self {
            Self::Okp { x } => ed25519_dalek::VerifyingKey::from_bytes(x)
                .map(|_| ())
                .map_err(BadKey::Ed25519),
            Self::Ec { x, y } => {
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .parse()
                    .map(|_| ())
                    .map_err(|_| BadKey::P256)
            }
            Self::Rsa { n, e } => {
                if e.as_slice() != RSA_E {
                    return Err(BadKey::RsaExponent);
                }
                let bits = (n.len() * 8)
                    .saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
                if !RSA_BITS.contains(&bits) {
                    return Err(BadKey::RsaBits(bits));
                }
                Ok(())
            }
        }
    }
}

/// Why a public key is not one steelcut verifies with.
#[derive(Debug, thiserror::Error)]
pub enum BadKey {
    #[error("not an Ed25519 key: {0}")]
    Ed25519(#[source] ed25519_dalek::SignatureError),
    #[error("an Ed25519 key is 32 bytes")]
    Ed25519Length,
    #[error("not a point on P-256")]
    P256,
    #[error("a P-256 key must be an uncompressed point")]
    P256Point,
    #[error("the RSA public exponent must be 65537")]
    RsaExponent,
    #[error("an RSA modulus of {0} bits (2048 to 8192 accepted)")]
    RsaBits(usize),
    #[error("not an RSAPublicKey: {0}")]
    RsaDer(#[source] pkcs8::der::Error),
    #[error("not a SubjectPublicKeyInfo: {0}")]
    Spki(#[source] pkcs8::spki::Error),
    #[error("the public key is not a whole number of bytes")]
    Bits,
    #[error("unsupported key algorithm {0} (Ed25519, P-256 or RSA)")]
    Algorithm(String),
}

/// Decodes a base64url member of exactly `N` bytes.
fn fixed<const N: usize>(value: Option<&str>, name: &str) -> Result<[u8; N], KeyError> {
    let text = value.ok_or_else(|| KeyError::Jwks(format!("a key without {name}")))?;
    B64.decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Jwks(format!("{name} {text:?} is not {N} base64url bytes")))
}

fn bytes(value: Option<&str>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = value.ok_or_else(|| KeyError::Jwks(format!("a key without {name}")))?;
    B64.decode(text)
        .map_err(|_| KeyError::Jwks(format!("{name} is not base64url")))
}

/// One JWK of a JWKS: `Ok(None)` for a key steelcut does not verify with (another type, curve
/// or algorithm, an encryption key, a weak RSA key), an error for a malformed one.
fn parse_jwk(jwk: &serde_json::Value) -> Result<Option<(String, PublicJwk)>, KeyError> {
    let field = |n: &str| jwk.get(n).and_then(|v| v.as_str());
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let key = match (field("kty"), field("crv")) {
        (Some("OKP"), Some("Ed25519")) => PublicJwk::Okp {
            x: fixed(field("x"), "x")?,
        },
        (Some("EC"), Some("P-256")) => PublicJwk::Ec {
            x: fixed(field("x"), "x")?,
            y: fixed(field("y"), "y")?,
        },
        (Some("RSA"), _) => PublicJwk::rsa(&bytes(field("n"), "n")?, &bytes(field("e"), "e")?),
        _ => return Ok(None),
    };
    // RFC 7517 section 4.4: a key meant for another algorithm (PS256 on an RSA key, say) is
    // not used for ours.
    if field("alg").is_some_and(|a| a != key.alg().as_str()) {
        return Ok(None);
    }
    match (&key, key.validate()) {
        (_, Ok(())) => {}
        (PublicJwk::Rsa { .. }, Err(_)) => return Ok(None),
        (_, Err(e)) => return Err(KeyError::Jwks(e.to_string())),
    }
    let kid = field("kid").map_or_else(|| key.thumbprint(), str::to_owned);
    Ok(Some((kid, key)))
}

/// The signature keys of a JWKS document (RFC 7517 section 5), kid → key; keys steelcut does
/// not verify with are left out. The first key under a kid wins.
pub fn parse_jwks(text: &[u8]) -> Result<Vec<(String, PublicJwk)>, KeyError> {
    #[derive(serde::Deserialize)]
    struct Jwks {
        keys: Vec<serde_json::Value>,
    }
    let jwks: Jwks = serde_json::from_slice(text).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let mut out: Vec<(String, PublicJwk)> = Vec::new();
    for jwk in &jwks.keys {
        if let Some((kid, key)) = parse_jwk(jwk)? {
            if !out.iter().any(|(k, _)| *k == kid) {
                out.push((kid, key));
            }
        }
    }
    Ok(out)
}

/// An RFC 8017 RSAPublicKey (`SEQUENCE { n INTEGER, e INTEGER }`).
fn rsa_public_key(der: &[u8]) -> Result<PublicJwk, BadKey> {
    use pkcs8::der::asn1::UintRef;
    let mut reader = pkcs8::der::SliceReader::new(der).map_err(BadKey::RsaDer)?;
    let (n, e) = reader
        .sequence(|r| Ok((UintRef::decode(r)?, UintRef::decode(r)?)))
        .map_err(BadKey::RsaDer)?;
    Ok(PublicJwk::rsa(n.as_bytes(), e.as_bytes()))
}

/// A SubjectPublicKeyInfo (RFC 5280 section 4.1.2.7) of an Ed25519, P-256 or RSA key, as in a
/// `-----BEGIN PUBLIC KEY-----` PEM file (`openssl pkey -pubout`).
pub fn from_spki_der(der: &[u8]) -> Result<PublicJwk, BadKey> {
    let spki = pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der).map_err(BadKey::Spki)?;
    let raw = spki.subject_public_key.as_bytes().ok_or(BadKey::Bits)?;
    let oid = spki.algorithm.oid;
    let key = if oid == OID_ED25519 {
        PublicJwk::Okp {
            x: raw.try_into().map_err(|_| BadKey::Ed25519Length)?,
        }
    } else if oid == OID_EC_PUBLIC_KEY && spki.algorithm.parameters_oid().ok() == Some(OID_P256) {
        PublicJwk::from_p256_point(raw).ok_or(BadKey::P256Point)?
    } else if oid == OID_RSA_ENCRYPTION {
        rsa_public_key(raw)?
    } else {
        return Err(BadKey::Algorithm(oid.to_string()));
    };
    key.validate()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7638_example_key_has_the_rfc_thumbprint() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = PublicJwk::rsa(&B64.decode(n).unwrap_or_default(), &RSA_E);
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn foreign_keys_are_skipped_and_malformed_ones_refused() {
        let jwks = br#"{"keys":[
            {"kty":"OKP","crv":"X25519","x":"AAAA"},
            {"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"weak"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}
        ]}"#;
        assert_eq!(parse_jwks(jwks).map(|k| k.len()).ok(), Some(0));
        let bad = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#;
        assert!(parse_jwks(bad).is_err());
    }
}
