//! Private keys: generating them, their PKCS#8 files, and signing JWTs with them.
//!
//! Every new key file is a PKCS#8 v1 `PRIVATE KEY` PEM (RFC 5208; for Ed25519 the RFC 8410
//! section 7 layout), which is what `openssl genpkey` writes and what OpenSSL, Python
//! `cryptography` and every JOSE library read. Ed25519 files written as PKCS#8 v2 (with the
//! public key, as earlier versions of steelcut did) still load. The algorithm is read from the
//! file's AlgorithmIdentifier, so one directory may hold keys of every algorithm.
//!
//! Signing uses the JWS header pre-encoded once per key, so a token costs one base64 pass over
//! the claims and one signature. Every algorithm signs with aws-lc-rs (constant-time, RSA
//! blinded); for Ed25519 that is about twice as fast as ed25519-dalek's portable code on the
//! same key (RFC 8032 signatures are deterministic, so both give the same bytes), while
//! ed25519-dalek still reads the PKCS#8 files (v1 and v2) and generates keys.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use pkcs8::PrivateKeyInfo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use super::alg::{Alg, RsaBits};
use super::jwk::{PublicJwk, OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_RSA_ENCRYPTION, RSA_E};

/// RFC 8410 section 7: the PKCS#8 v1 DER of an Ed25519 key is this prefix and the 32-byte seed
/// (the same bytes `openssl genpkey -algorithm ed25519` writes).
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key could not be made, read or used; the caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("no PEM private key: {0}")]
    Pem(String),
    #[error(
        "not a PKCS#8 key (BEGIN RSA/EC PRIVATE KEY): convert it with `openssl pkcs8 -topk8 -nocrypt`"
    )]
    NotPkcs8,
    #[error("not PKCS#8: {0}")]
    Der(#[source] pkcs8::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("not a valid {alg} private key")]
    Invalid { alg: Alg },
    /// What the library said of a key it refused (e.g. `TooSmall`, `InvalidEncoding`).
    #[error("not a valid {alg} private key ({source})")]
    Rejected {
        alg: Alg,
        #[source]
        source: aws_lc_rs::error::KeyRejected,
    },
    #[error("RSA key of {0} bits; at least 2048")]
    RsaTooSmall(usize),
    #[error("the RSA public exponent must be 65537")]
    RsaExponent,
    #[error("{alg} key generation failed")]
    Generate { alg: Alg },
    /// (The PEM encoder's error type does not implement `std::error::Error`, so it is shown,
    /// not chained.)
    #[error("cannot write the PEM: {0}")]
    Encode(pkcs8::der::pem::Error),
    #[error("{alg} signing failed")]
    Sign { alg: Alg },
}

/// A new private key of `alg` as PKCS#8 v1 DER.
pub fn generate_der(alg: Alg, rsa_bits: RsaBits) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let failed = || KeyFileError::Generate { alg };
    match alg {
        Alg::EdDsa => {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let mut der = Zeroizing::new(Vec::with_capacity(48));
            der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
            der.extend_from_slice(key.as_bytes());
            Ok(der)
        }
        Alg::Es256 => {
            let key =
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| failed())?;
            let doc = key.to_pkcs8v1().map_err(|_| failed())?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        }
        Alg::Rs256 => {
            let size = match rsa_bits {
                RsaBits::B2048 => KeySize::Rsa2048,
                RsaBits::B3072 => KeySize::Rsa3072,
                RsaBits::B4096 => KeySize::Rsa4096,
            };
            let key = RsaKeyPair::generate(size).map_err(|_| failed())?;
            let der = key.as_der().map_err(|_| failed())?;
            Ok(Zeroizing::new(der.as_ref().to_vec()))
        }
    }
}

/// `-----BEGIN PRIVATE KEY-----`, 64 columns, LF line ends.
pub fn to_pem(der: &[u8]) -> Result<Zeroizing<String>, KeyFileError> {
    pkcs8::der::pem::encode_string("PRIVATE KEY", pkcs8::der::pem::LineEnding::LF, der)
        .map(Zeroizing::new)
        .map_err(KeyFileError::Encode)
}

/// The algorithm of a PKCS#8 key, from its AlgorithmIdentifier.
fn detect(der: &[u8]) -> Result<Alg, KeyFileError> {
    let info = PrivateKeyInfo::try_from(der).map_err(KeyFileError::Der)?;
    let oid = info.algorithm.oid;
    if oid == OID_ED25519 {
        Ok(Alg::EdDsa)
    } else if oid == OID_EC_PUBLIC_KEY {
        match info.algorithm.parameters_oid() {
            Ok(curve) if curve == OID_P256 => Ok(Alg::Es256),
            Ok(curve) => Err(KeyFileError::Unsupported(format!(
                "unsupported EC curve {curve} (only P-256)"
            ))),
            Err(_) => Err(KeyFileError::Unsupported(
                "an EC key without a named curve".into(),
            )),
        }
    } else if oid == OID_RSA_ENCRYPTION {
        Ok(Alg::Rs256)
    } else {
        Err(KeyFileError::Unsupported(format!(
            "unsupported key algorithm {oid} (Ed25519, P-256 or RSA)"
        )))
    }
}

enum Inner {
    Ed {
        /// The key pair, expanded once (RFC 8032 section 5.1.5 steps 1-3) when it was built.
        pair: Ed25519KeyPair,
        verifying: ed25519_dalek::VerifyingKey,
    },
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private key ready to sign access tokens.
pub struct Signer {
    alg: Alg,
    kid: String,
    public: PublicJwk,
    /// `base64url(header)` followed by '.', ready to be prefixed to a payload.
    header_prefix: String,
    inner: Inner,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// From a PEM file's content: a PKCS#8 `PRIVATE KEY` of any of the three algorithms.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyFileError> {
        match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => Self::from_pkcs8_der(der.secret_pkcs8_der()),
            Ok(_) => Err(KeyFileError::NotPkcs8),
            Err(e) => Err(KeyFileError::Pem(e.to_string())),
        }
    }

    /// From PKCS#8 DER (v1, or v2 for Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyFileError> {
        let alg = detect(der)?;
        let invalid = |source| KeyFileError::Rejected { alg, source };
        let inner = match alg {
            Alg::EdDsa => {
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|_| KeyFileError::Invalid { alg })?;
                let verifying = key.verifying_key();
                // Built from the seed and checked against the public key ed25519-dalek derived.
                let seed = Zeroizing::new(key.to_bytes());
                let pair =
                    Ed25519KeyPair::from_seed_and_public_key(seed.as_slice(), verifying.as_bytes())
                        .map_err(|_| KeyFileError::Invalid { alg })?;
                Inner::Ed { pair, verifying }
            }
            Alg::Es256 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(invalid)?,
            ),
            Alg::Rs256 => {
                // aws-lc-rs refuses a modulus under 2048 bits here (`TooSmall`).
                let key = RsaKeyPair::from_pkcs8(der).map_err(invalid)?;
                let bits = key.public_modulus_len() * 8;
                if bits < 2048 {
                    return Err(KeyFileError::RsaTooSmall(bits));
                }
                // aws-lc-rs, unlike ring, accepts any public exponent: insist on F4.
                if PublicKeyComponents::<Vec<u8>>::from(key.public_key()).e != RSA_E {
                    return Err(KeyFileError::RsaExponent);
                }
                Inner::Rsa(key)
            }
        };
        let public = public_of(&inner).ok_or(KeyFileError::Invalid { alg })?;
        let kid = public.thumbprint();
        // RFC 9068 section 2.1: access tokens carry `typ: at+jwt`.
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
        Ok(Self {
            alg,
            header_prefix: format!("{}.", B64.encode(header.to_string())),
            kid,
            public,
            inner,
            rng: SystemRandom::new(),
        })
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public(&self) -> &PublicJwk {
        &self.public
    }

    /// A compact JWS over `claims_json` (already JSON), signed with this key.
    pub fn sign_jwt(&self, claims_json: &[u8]) -> Result<String, KeyFileError> {
        self.sign_after(&self.header_prefix, claims_json)
    }

    /// Appends a compact JWS over `claims_json` to `out`, signed with this key: the token
    /// response is laid out around the token in one buffer, without a copy of the token. On
    /// failure `out` is left as it was.
    pub fn append_jwt(&self, out: &mut String, claims_json: &[u8]) -> Result<(), KeyFileError> {
        self.append_after(out, &self.header_prefix, claims_json)
    }

    /// The length of a compact JWS over `claims_json` with `prefix`, at most.
    fn jwt_len(&self, prefix: &str, claims_json: &[u8]) -> usize {
        let signature_len = match &self.inner {
            Inner::Rsa(k) => k.public_modulus_len(),
            _ => 64,
        };
        prefix.len() + claims_json.len().div_ceil(3) * 4 + 1 + signature_len.div_ceil(3) * 4
    }

    /// The length of a compact JWS over `claims_json` signed by [`Self::append_jwt`], at most.
    pub fn token_len(&self, claims_json: &[u8]) -> usize {
        self.jwt_len(&self.header_prefix, claims_json)
    }

    /// A compact JWS with any header, signed with this key: for tests and tools that need
    /// tokens the token endpoint would never issue (another `typ`, a `crit`, a foreign `alg`).
    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        claims_json: &[u8],
    ) -> Result<String, KeyFileError> {
        self.sign_after(&format!("{}.", B64.encode(header.to_string())), claims_json)
    }

    /// A compact JWS of its own: `prefix` (an encoded header and '.') and the encoded claims,
    /// signed.
    fn sign_after(&self, prefix: &str, claims_json: &[u8]) -> Result<String, KeyFileError> {
        let mut out = String::with_capacity(self.jwt_len(prefix, claims_json));
        self.append_after(&mut out, prefix, claims_json)?;
        Ok(out)
    }

    /// Appends `prefix` (an encoded header and '.'), the encoded claims, '.' and the signature
    /// of those two to `out`.
    fn append_after(
        &self,
        out: &mut String,
        prefix: &str,
        claims_json: &[u8],
    ) -> Result<(), KeyFileError> {
        let start = out.len();
        out.push_str(prefix);
        B64.encode_string(claims_json, out);
        let signed = &out.as_bytes()[start..];
        let failed = |out: &mut String| {
            out.truncate(start);
            KeyFileError::Sign { alg: self.alg }
        };
        // Each signature is encoded straight from the library's own buffer.
        match &self.inner {
            Inner::Ed { pair, .. } => {
                let signature = pair.sign(signed);
                out.push('.');
                B64.encode_string(signature.as_ref(), out);
            }
            Inner::Ec(k) => match k.sign(&self.rng, signed) {
                Ok(signature) => {
                    out.push('.');
                    B64.encode_string(signature.as_ref(), out);
                }
                Err(_) => return Err(failed(out)),
            },
            Inner::Rsa(k) => {
                let mut signature = vec![0; k.public_modulus_len()];
                if k.sign(&RSA_PKCS1_SHA256, &self.rng, signed, &mut signature)
                    .is_err()
                {
                    return Err(failed(out));
                }
                out.push('.');
                B64.encode_string(&signature, out);
            }
        }
        Ok(())
    }
}

fn public_of(inner: &Inner) -> Option<PublicJwk> {
    match inner {
        Inner::Ed { verifying, .. } => Some(PublicJwk::Okp {
            x: verifying.to_bytes(),
        }),
        Inner::Ec(k) => PublicJwk::from_p256_point(k.public_key().as_ref()),
        Inner::Rsa(k) => {
            let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
            Some(PublicJwk::rsa(&c.n, &c.e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_tokens_its_published_key_verifies_and_no_other_does() {
        let signers: Vec<Signer> = [Alg::EdDsa, Alg::Es256, Alg::Rs256]
            .into_iter()
            .map(|alg| {
                let der = generate_der(alg, RsaBits::B2048).unwrap();
                let pem = to_pem(&der).unwrap();
                assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
                Signer::from_pem(pem.as_bytes()).unwrap()
            })
            .collect();
        let claims = br#"{"iss":"i","aud":"a","exp":4000000000}"#;
        for signer in &signers {
            let token = signer.sign_jwt(claims).unwrap();
            assert!(token.len() <= signer.token_len(claims), "{}", signer.alg());
            // Appended after other text, the token is the same bytes up to the signature (an
            // ES256 signature is randomised), and the text before it is left alone.
            let mut body = String::from(r#"{"access_token":""#);
            signer.append_jwt(&mut body, claims).unwrap();
            let appended = body.strip_prefix(r#"{"access_token":""#).unwrap();
            let signed = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
            assert_eq!(signed(appended), signed(&token), "{}", signer.alg());
            assert!(
                appended.len() <= signer.token_len(claims),
                "{}",
                signer.alg()
            );
            for token in [token.as_str(), appended] {
                let header = jsonwebtoken::decode_header(token).unwrap();
                assert_eq!(header.alg, signer.alg().jwt());
                assert_eq!(header.kid.as_deref(), Some(signer.kid()));
                for other in &signers {
                    let mut v = jsonwebtoken::Validation::new(other.alg().jwt());
                    v.set_required_spec_claims(&["exp"]);
                    v.validate_aud = false;
                    let key = other.public().decoding_key().unwrap();
                    let ok = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_ok();
                    assert_eq!(
                        ok,
                        std::ptr::eq(signer, other),
                        "{} by {}",
                        signer.alg(),
                        other.alg()
                    );
                }
            }
        }
    }

    #[test]
    fn an_ed25519_key_is_written_as_rfc_8410_pkcs8_v1_and_a_v2_file_still_loads() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let der = generate_der(Alg::EdDsa, RsaBits::default()).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
        let seed: [u8; 32] = der[16..].try_into().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let v2 = key.to_pkcs8_pem(Default::default()).unwrap();
        let from_v1 = Signer::from_pkcs8_der(&der).unwrap();
        let from_v2 = Signer::from_pem(v2.as_bytes()).unwrap();
        assert_eq!(from_v1.kid(), from_v2.kid());
    }

    #[test]
    fn other_key_formats_are_refused_with_the_conversion_to_run() {
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIDeZ\n-----END EC PRIVATE KEY-----\n";
        let e = Signer::from_pem(sec1.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
    }
}
