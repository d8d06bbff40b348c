//! Reading requests: a bounded body, strict form parsing, and the `Authorization` header.

use std::collections::HashMap;

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

/// A parsed `application/x-www-form-urlencoded` body. Every name maps to all its values, so
/// callers decide which parameters may repeat (RFC 6749 section 3.1 forbids it except where
/// an extension allows it, as RFC 8707 does for `resource`).
#[derive(Debug, Default)]
pub struct Form(HashMap<String, Vec<String>>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Self(map)
    }

    /// The single value of `name`, `Err(name)` if it was sent more than once. An empty value
    /// counts as absent (RFC 6749 section 3.1).
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, &'a str> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([v]) => Ok(Some(v.as_str()).filter(|v| !v.is_empty())),
            Some(_) => Err(name),
        }
    }

    /// All non-empty values of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
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

/// The `Authorization` header split into scheme and credentials, if present and ASCII.
/// `Err(())` means a header is present but unusable.
#[allow(clippy::result_unit_err)]
pub fn authorization(headers: &http::HeaderMap) -> Result<Option<(String, String)>, ()> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let value = value.to_str().map_err(|_| ())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(())?;
    Ok(Some((scheme.to_owned(), rest.trim().to_owned())))
}
