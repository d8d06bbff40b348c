//! JSON objects laid out by hand, for the bodies built on every request (the access token's
//! claims and the token response), where serde's generic serializer is a measurable part of
//! the cost. Strings are escaped as RFC 8259 section 7 requires; everything else is numbers.
//!
//! Usage: [`open`], then fields, then [`close`]. A field after `open` starts without a comma.
//! Field names are the caller's constants and are not escaped; values are.

/// Starts an object.
pub fn open(out: &mut String) {
    out.push('{');
}

/// Ends an object.
pub fn close(out: &mut String) {
    out.push('}');
}

/// `"name":`, a field whose value the caller writes itself (a value built in place).
///
/// Field names are this program's own identifiers, never a request's text: they are copied
/// as they are, without the scan for characters to escape that values get.
pub fn key(out: &mut String, name: &str) {
    debug_assert!(!needs_escape(name.as_bytes()), "{name:?} needs escaping");
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// `"name":"value"`.
pub fn string_field(out: &mut String, name: &str, value: &str) {
    key(out, name);
    string(out, value);
}

/// `"name":"value"` for a value that the caller knows needs no escape (an access token:
/// base64url and dots), copied as it is.
pub fn plain_string_field(out: &mut String, name: &str, value: &str) {
    debug_assert!(!needs_escape(value.as_bytes()), "{value:?} needs escaping");
    key(out, name);
    out.push('"');
    out.push_str(value);
    out.push('"');
}

/// `"name":123`.
pub fn int_field(out: &mut String, name: &str, value: impl itoa::Integer) {
    key(out, name);
    out.push_str(itoa::Buffer::new().format(value));
}

/// `"name":["a","b"]`.
pub fn array_field<'a>(out: &mut String, name: &str, values: impl Iterator<Item = &'a str>) {
    key(out, name);
    out.push('[');
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, value);
    }
    out.push(']');
}

/// A JSON string: `"` and `\` escaped, and control characters as `\u00XX` (or their short
/// forms), the rest as it is (JSON text is UTF-8).
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    // Most values (an access token is a few hundred bytes of base64url) need no escape: a
    // branch-free scan, sixteen bytes at a time, finds that out quickly.
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain_from = 0;
    for (at, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..at]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain_from = at + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        // No early exit inside a chunk, so that the compiler can compare all sixteen at once.
        if chunk.iter().fold(false, |any, &b| any | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_back_to_what_was_written() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h é ✓ </script>";
        let mut out = String::new();
        open(&mut out);
        string_field(&mut out, "s", nasty);
        int_field(&mut out, "n", -42i64);
        int_field(&mut out, "u", u64::MAX);
        array_field(&mut out, "a", ["x", "y\"z"].into_iter());
        array_field(&mut out, "e", std::iter::empty());
        plain_string_field(&mut out, "p", "eyJh.eyJp.c2ln");
        close(&mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"], nasty);
        assert_eq!(v["n"], -42);
        assert_eq!(v["u"], u64::MAX);
        assert_eq!(v["a"], serde_json::json!(["x", "y\"z"]));
        assert_eq!(v["e"], serde_json::json!([]));
        assert_eq!(v["p"], "eyJh.eyJp.c2ln");
        assert_eq!(out.matches(',').count(), 6, "{out}");
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips(s in ".*") {
            let mut out = String::new();
            string(&mut out, &s);
            let back: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
