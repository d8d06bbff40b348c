//! Reading requests: a bounded body, strict form parsing, and the `Authorization` header.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, Bytes, BytesMut};
use http::header;

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
///
/// Frames are taken as they come: a small body arrives as one frame, which is returned as it
/// is, without a copy or a list of frames.
pub async fn read_body<B>(body: B) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut body = std::pin::pin!(body);
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        // Trailers carry nothing a form needs.
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let len = joined.as_ref().map_or(first.len(), BytesMut::len) + data.remaining();
        if len > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        let chunk = data.copy_to_bytes(data.remaining());
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut both = BytesMut::with_capacity(len);
                both.extend_from_slice(&first);
                both.extend_from_slice(&chunk);
                joined = Some(both);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
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
    /// Splits the pairs as `form_urlencoded::parse` does (at `&`, empty pieces skipped, each
    /// at its first `=`; no `=` gives an empty value) and decodes them. A body that is UTF-8
    /// with nothing to decode (no `+`, no `%`), as clients send their parameters, is split
    /// without the decoder's byte-by-byte pass; anything else goes through it (invalid UTF-8
    /// becomes U+FFFD).
    pub fn parse(body: &'b [u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(plain) if memchr::memchr2(b'+', b'%', plain.as_bytes()).is_none() => Self(
                plain
                    .split('&')
                    .filter(|piece| !piece.is_empty())
                    .map(|piece| {
                        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
                        (Cow::Borrowed(name), Cow::Borrowed(value))
                    })
                    .collect(),
            ),
            _ => Self(form_urlencoded::parse(body).collect()),
        }
    }

    /// Every `(name, value)` pair, in order.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'b, 'n> {
        self.pairs()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v)
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
mod body_tests {
    use std::convert::Infallible;

    use http_body_util::{Full, StreamBody};

    use super::*;

    fn frames(
        chunks: &[&'static [u8]],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>>>
    {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(hyper::body::Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn read<B>(body: B) -> Result<Bytes, BodyError>
    where
        B: hyper::body::Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        futures_util::FutureExt::now_or_never(read_body(body)).expect("a ready body")
    }

    #[test]
    fn a_body_in_one_frame_or_several_reads_whole() {
        assert_eq!(
            read(Full::new(Bytes::from_static(b"a=1"))).ok(),
            Some(Bytes::from_static(b"a=1"))
        );
        assert_eq!(
            read(frames(&[b"grant_type=", b"client_", b"credentials"])).ok(),
            Some(Bytes::from_static(b"grant_type=client_credentials"))
        );
        assert_eq!(read(frames(&[])).ok(), Some(Bytes::new()));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_whether_or_not_its_size_is_known() {
        static BIG: [u8; MAX_BODY + 1] = [b'x'; MAX_BODY + 1];
        assert!(matches!(
            read(Full::new(Bytes::from_static(&BIG))),
            Err(BodyError::TooLarge)
        ));
        let (a, b) = BIG.split_at(MAX_BODY / 2);
        assert!(matches!(read(frames(&[a, b])), Err(BodyError::TooLarge)));
        assert_eq!(
            read(frames(&[a, &b[1..]])).map(|b| b.len()).ok(),
            Some(MAX_BODY)
        );
    }
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
        fn any_form_body_gives_the_pairs_form_urlencoded_gives(
            body in proptest::collection::vec(proptest::sample::select(b"ab=&+%20\xc3\xa9\xff".to_vec()), 0..64),
        ) {
            let expected: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let form = Form::parse(&body);
            let got: Vec<(String, String)> = form.pairs().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(got, expected);
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
