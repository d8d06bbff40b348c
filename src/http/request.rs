//! Reading requests: a bounded body, strict form parsing, and the `Authorization` header.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

/// Largest request body accepted anywhere (the token endpoint's form is tiny).
pub const MAX_BODY: usize = 16 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {MAX_BODY} bytes")]
    TooLarge,
    #[error("could not read request body: {0}")]
    Read(String),
}

/// Reads at most [`MAX_BODY`] bytes; a longer body is refused without reading it all.
pub async fn read_body<B>(body: B) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// A parsed `application/x-www-form-urlencoded` body: every pair, in order, so callers decide
/// which parameters may repeat (RFC 6749 section 3.1 forbids it except where an extension
/// allows it, as RFC 8707 does for `resource`).
///
/// A list, not a map: a token request has two or three parameters, which a scan finds sooner
/// than a hash, and the body's size bound ([`MAX_BODY`]) keeps even a hostile form's
/// scans short. Names and values borrow the body unless they had to be decoded.
#[derive(Debug, Default)]
pub struct Form<'b>(Vec<(Cow<'b, str>, Cow<'b, str>)>);

impl<'b> Form<'b> {
    pub fn parse(body: &'b [u8]) -> Self {
        Self(form_urlencoded::parse(body).collect())
    }

    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'b, 'n> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The single value of `name`, `Err(name)` if it was sent more than once. An empty value
    /// counts as absent (RFC 6749 section 3.1).
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, &'a str> {
        let mut values = self.values(name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v).filter(|v| !v.is_empty())),
            (Some(_), Some(_)) => Err(name),
        }
    }

    /// All non-empty values of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values(name).filter(|s| !s.is_empty()).collect()
    }
}

/// Whether the request's content type is `media` (parameters such as charset allowed).
pub fn has_content_type(headers: &http::HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

/// Why an `Authorization` header cannot be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    /// RFC 9110 section 11.6.2 allows one set of credentials per request.
    #[error("send one Authorization header")]
    Repeated,
    #[error("the Authorization header is not ASCII")]
    NotAscii,
}

/// An `Authorization` header split at the first space (RFC 9110 section 11.4): the scheme, and
/// the credentials (trimmed, possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub scheme: &'a str,
    pub credentials: &'a str,
}

impl Authorization<'_> {
    /// Whether the scheme is `name` (schemes are case-insensitive, RFC 9110 section 11.1).
    pub fn is(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }
}

/// The request's one `Authorization` header, if present: the only parser of that header,
/// shared by the token endpoint (Basic) and the resource server (Bearer).
pub fn authorization(
    headers: &http::HeaderMap,
) -> Result<Option<Authorization<'_>>, AuthorizationError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthorizationError::Repeated);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthorizationError::NotAscii)?
        .trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    Ok(Some(Authorization {
        scheme,
        credentials: credentials.trim(),
    }))
}

/// The address a request comes from: the peer's, unless the peer is one of `trusted` proxies,
/// in which case the address that proxy names is taken instead — from `Forwarded` (RFC 7239)
/// if present, else `X-Forwarded-For` — walking the list from the right and skipping further
/// trusted proxies. Nobody else can choose the address counted against them: with no trusted
/// proxy these headers are ignored.
pub fn client_address(peer: IpAddr, headers: &http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|net| net.contains(a));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                .map(|(_, v)| v.trim())
        })
        .collect();
    let hops: Vec<&str> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect()
    } else {
        forwarded
    };
    let mut address = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(&address) {
            break;
        }
        match parse_hop(hop) {
            Some(a) => address = a,
            // "unknown", an obfuscated name or garbage: the proxy is the best we know.
            None => break,
        }
    }
    address
}

/// One `for=` value or X-Forwarded-For entry: an address, possibly quoted, bracketed (IPv6)
/// and with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    if let Ok(a) = hop.parse::<IpAddr>() {
        return Some(a);
    }
    if let Ok(s) = hop.parse::<SocketAddr>() {
        return Some(s.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod address_tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("192.0.2.7"), &spoofed, &[]),
            ip("192.0.2.7")
        );
        let trusted: Vec<ipnet::IpNet> = ["10.0.0.0/8"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let xff = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &xff, &trusted),
            ip("203.0.113.9")
        );
        let fwd = headers(&[(
            "forwarded",
            "for=198.51.100.1, for=\"[2001:db8::17]:4711\";proto=https",
        )]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &fwd, &trusted),
            ip("2001:db8::17")
        );
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &unknown, &trusted),
            ip("10.0.0.2")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn header_map(name: &'static str, values: &[Vec<u8>]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            if let Ok(v) = http::HeaderValue::from_bytes(v) {
                h.append(name, v);
            }
        }
        h
    }

    proptest! {
        #[test]
        fn any_form_body_parses_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let form = Form::parse(&body);
            let _ = form.single("grant_type");
            let _ = form.all("resource");
        }

        #[test]
        fn any_authorization_header_is_split_or_refused(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..3)) {
            let headers = header_map("authorization", &values);
            match authorization(&headers) {
                Ok(Some(a)) => prop_assert!(!a.scheme.contains(' ')),
                Ok(None) => prop_assert!(headers.is_empty()),
                Err(_) => prop_assert!(!headers.is_empty()),
            }
        }

        #[test]
        fn any_forwarding_header_yields_an_address(
            xff in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..3),
            fwd in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..3),
        ) {
            let mut headers = header_map("x-forwarded-for", &xff);
            headers.extend(header_map("forwarded", &fwd));
            let peer = IpAddr::from([10, 0, 0, 1]);
            let trusted: Vec<ipnet::IpNet> = ["10.0.0.0/8"].iter().filter_map(|n| n.parse().ok()).collect();
            let _ = client_address(peer, &headers, &trusted);
            // Without trusted proxies the peer always counts.
            prop_assert_eq!(client_address(peer, &headers, &[]), peer);
        }
    }
}
