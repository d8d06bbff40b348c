//! Newtypes for the protocol's identifiers, each with one constructor that enforces its rules
//! (parse, don't validate): once a value has one of these types it is known to be well formed.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdentifier(pub String);

/// A client identifier: 32 lowercase hex characters (128 random bits), as the original package
/// issued them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidIdentifier(format!(
                "client id {s:?} is not 32 lowercase hex characters"
            )))
        }
    }

    /// A fresh random client id (128 bits from the OS generator).
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters allowed in a scope token (RFC 6749 section 3.3: `%x21 / %x23-5B / %x5D-7E`).
fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

/// A resource indicator (RFC 8707) or audience value. The original package used bare names
/// such as `api_v0.0.1`, so absolute URIs are allowed but not required; whitespace, quotes and
/// backslashes are not, because resources are stored and logged space-separated and appear in
/// `WWW-Authenticate` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(String);

impl Resource {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        if s.is_empty() || s.len() > 512 {
            return Err(InvalidIdentifier(format!(
                "resource {s:?} must be 1 to 512 characters"
            )));
        }
        if !s.bytes().all(is_scope_char) {
            return Err(InvalidIdentifier(format!(
                "resource {s:?} may contain only visible ASCII characters other than '\"' and '\\'"
            )));
        }
        if s.contains('#') {
            // RFC 8707 section 2: the resource indicator "MUST NOT include a fragment component".
            return Err(InvalidIdentifier(format!(
                "resource {s:?} must not contain a fragment ('#')"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One scope token (RFC 6749 section 3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        if !s.is_empty() && s.len() <= 256 && s.bytes().all(is_scope_char) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidIdentifier(format!(
                "scope {s:?} must be 1 to 256 visible ASCII characters other than '\"' and '\\'"
            )))
        }
    }

    /// Parses a space-delimited scope list; empty input gives an empty list.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, InvalidIdentifier> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The grant types a client may be allowed. Only `client_credentials` is implemented; storing
/// the name keeps the table compatible with the original's `grant_type` column.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// A grant type name as stored for a client: an RFC 6749 grant type or an absolute URI.
pub fn parse_grant_type(s: &str) -> Result<String, InvalidIdentifier> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(InvalidIdentifier(format!(
            "grant type {s:?} must be a name such as client_credentials"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_32_lowercase_hex() {
        assert!(ClientId::parse(ClientId::generate().as_str()).is_ok());
        assert!(ClientId::parse("0083c1b7e3a6ceeac4a4f47bd3a1b501").is_ok());
        assert!(ClientId::parse("0083C1B7E3A6CEEAC4A4F47BD3A1B501").is_err());
        assert!(ClientId::parse("abc").is_err());
    }

    #[test]
    fn resources_accept_the_original_names_and_uris_but_not_spaces() {
        assert!(Resource::parse("api_v0.0.1").is_ok());
        assert!(Resource::parse("https://api.example.com/v1").is_ok());
        assert!(Resource::parse("a b").is_err());
        assert!(Resource::parse("").is_err());
        assert!(Resource::parse("https://x/#frag").is_err());
    }

    #[test]
    fn scope_lists_split_on_spaces() {
        let v = Scope::parse_list("read  write").unwrap_or_default();
        assert_eq!(v.len(), 2);
        assert!(Scope::parse("a\"b").is_err());
    }
}
