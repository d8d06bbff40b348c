//! Request data on its way into a log line: cut to a documented length and escaped, so that a
//! client cannot grow the log by sending a huge method or path, nor forge log lines with
//! newlines, quotes or terminal escapes.
//!
//! The lengths (in characters) are part of the documented log format (README, Operations):
//! method [`METHOD`], path [`PATH`], client id [`CLIENT_ID`], error text [`ERROR`]. A cut value
//! ends with `…(N more bytes)`. (The user agent and other headers are not logged.)

use std::fmt;

/// Longest method logged (the longest standard one, `OPTIONS`, has 7).
pub const METHOD: usize = 16;
/// Longest path logged.
pub const PATH: usize = 256;
/// Longest client id logged (ours have 32 characters).
pub const CLIENT_ID: usize = 64;
/// Longest error text logged.
pub const ERROR: usize = 256;

/// A borrowed value that formats cut and escaped; formatting allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Bounded<'a> {
    text: &'a str,
    max: usize,
}

impl<'a> Bounded<'a> {
    pub fn new(text: &'a str, max: usize) -> Self {
        Self { text, max }
    }
}

impl Bounded<'_> {
    /// Writes the value, cut and escaped, to `out`: runs of plain characters in one
    /// `write_str` each, so that a typical value (a path, an id) is a single copy.
    pub fn write_to<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        // The common case, checked a byte at a time: short enough and nothing to escape.
        if self.text.len() <= self.max && self.text.bytes().all(is_plain) {
            return out.write_str(self.text);
        }
        let mut plain_from = 0;
        for (count, (at, c)) in self.text.char_indices().enumerate() {
            if count == self.max {
                out.write_str(&self.text[plain_from..at])?;
                return write!(out, "…({} more bytes)", self.text.len() - at);
            }
            // Printable ASCII goes as it is, but for the characters a log reader or parser
            // would take for structure; everything else (controls, newlines, non-ASCII) is
            // written as an escape sequence.
            if c.is_ascii() && is_plain(c as u8) {
                continue;
            }
            out.write_str(&self.text[plain_from..at])?;
            write!(out, "{}", c.escape_default())?;
            plain_from = at + c.len_utf8();
        }
        out.write_str(&self.text[plain_from..])
    }
}

/// Printable ASCII, but for the characters a log reader or parser would take for structure.
fn is_plain(b: u8) -> bool {
    (b.is_ascii_graphic() && b != b'"' && b != b'\\') || b == b' '
}

impl fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        assert_eq!(Bounded::new("GET", 16).to_string(), "GET");
        let long = "A".repeat(300_000);
        let shown = Bounded::new(&long, 16).to_string();
        assert_eq!(shown, format!("{}…(299984 more bytes)", "A".repeat(16)));
        assert_eq!(
            Bounded::new("a\nb\"c\\d\u{1b}[31m é", 64).to_string(),
            "a\\nb\\\"c\\\\d\\u{1b}[31m \\u{e9}"
        );
    }
}
