//! The JWS algorithms steelcut signs and verifies with (RFC 7518 section 3.1, RFC 8037
//! section 3.1), and nothing else: no `none`, no HMAC, one key type per algorithm.

/// A signature algorithm, bound to one key type: Ed25519 keys sign `EdDSA`, P-256 keys `ES256`,
/// RSA keys `RS256`. A key never verifies a token of another algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256. Listed first in the JWKS with RS256 (see [`Alg::jwks_rank`]).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519 (the default: the fastest to sign and verify, the smallest tokens).
    #[default]
    EdDsa,
}

impl Alg {
    /// Every algorithm, in the order [`Alg::parse`] tries them.
    pub const ALL: [Alg; 3] = [Alg::EdDsa, Alg::Es256, Alg::Rs256];

    /// The `alg` header value, exactly as JOSE spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// Parses the `alg` name, exactly as JOSE spells it (case matters: RFC 7515 section 4.1.1).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JWK `kty` of keys of this algorithm.
    pub fn kty(self) -> &'static str {
        match self {
            Self::EdDsa => "OKP",
            Self::Es256 => "EC",
            Self::Rs256 => "RSA",
        }
    }

    /// The order of keys in the JWKS: RSA and EC keys before OKP ones, because
    /// mod_auth_openidc's JOSE library cannot parse OKP keys and logs a warning for each one it
    /// meets before the key whose kid it looks for.
    pub fn jwks_rank(self) -> u8 {
        match self {
            Self::Rs256 | Self::Es256 => 0,
            Self::EdDsa => 1,
        }
    }

    /// The same algorithm for jsonwebtoken.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The size of a new RSA key: 3072 bits by default (NIST SP 800-57's level for keys used
/// past 2030), 2048 at least, 4096 at most (larger keys sign too slowly for a token endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaBits {
    B2048,
    #[default]
    B3072,
    B4096,
}

impl RsaBits {
    /// From a number of bits: 2048, 3072 or 4096.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            2048 => Some(Self::B2048),
            3072 => Some(Self::B3072),
            4096 => Some(Self::B4096),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly_and_nothing_else_parses() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.as_str()), Some(alg));
        }
        for other in ["none", "HS256", "eddsa", "ES384", "PS256", ""] {
            assert_eq!(Alg::parse(other), None, "{other}");
        }
    }
}
