//! The request log: one line per request (method, path, status, latency, client id), the
//! daemon's busiest output.
//!
//! A `tracing` event per request costs more CPU than validating the request's token: the
//! generic formatter visits each field through `dyn Debug`, formats the timestamp from scratch
//! and pads and paints every part. So the daemon installs a [`Sink`] (its log output) and a
//! [`Layout`] at start, and [`log`] writes the line itself, laid out exactly as the `tracing`
//! formatter lays out its lines (plain text, the journal's text without timestamps, or JSON),
//! into the same output, so the two kinds of lines interleave in order. The `tracing` filter
//! still decides: `steelcut::request=warn` (or `[log] level = "warn"`) silences these lines.
//! Without an installed sink (the library used on its own, tests in one process) a line is an
//! ordinary `tracing` event.
//!
//! Every value from the request is cut and escaped ([`crate::logfield`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::logfield::{self, Bounded};

/// The `tracing` target of request lines: the name to filter them by.
pub const TARGET: &str = "steelcut::request";

/// How lines are laid out; the same choices as the `tracing` formatter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `2026-11-29T18:32:50.161810Z  INFO steelcut::request: request method=GET ...`, or
    /// without the timestamp under the journal, which adds its own.
    Text { timestamps: bool },
    /// One JSON object per line, as `tracing-subscriber`'s JSON format.
    Json,
}

/// Where lines go: the log output shared with the `tracing` formatter.
pub trait Sink: Send + Sync + 'static {
    /// Takes one whole line, ending in a newline. Must not block.
    fn write_line(&self, line: &[u8]);
}

struct Installed {
    layout: Layout,
    sink: Box<dyn Sink>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Whether the filter lets request lines through, as [`refresh`] last found it. Asking the
/// filter on every request (a reloadable filter cannot cache its answer per call site) cost
/// more than laying out the line.
static ENABLED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// The line being formatted, reused from request to request.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    /// The timestamp's whole seconds, formatted, and the second they are for.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Sends request lines to `sink` from now on. Returns `false` (and changes nothing) if a sink
/// is installed already. Call [`refresh`] once the filter is in place, and whenever it changes.
pub fn install(layout: Layout, sink: Box<dyn Sink>) -> bool {
    INSTALLED.set(Installed { layout, sink }).is_ok()
}

/// Asks the `tracing` filter again whether request lines are wanted (at start, and after the
/// filter is reloaded).
pub fn refresh() {
    let enabled = tracing::enabled!(target: TARGET, tracing::Level::INFO);
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// One request, as logged.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
    /// The authenticated client, when there is one.
    pub client_id: Option<&'a str>,
}

/// Logs one request, if the filter lets `steelcut::request` lines through at `INFO`.
pub fn log(request: &Request<'_>) {
    let Some(installed) = INSTALLED.get() else {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        tracing::info!(
            target: TARGET,
            method = %Bounded::new(request.method, logfield::METHOD),
            path = %Bounded::new(request.path, logfield::PATH),
            status = request.status,
            latency_ms = %Millis(request.latency),
            client_id = %Bounded::new(request.client_id.unwrap_or("-"), logfield::CLIENT_ID),
            "request"
        );
        return;
    };
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        // Writing to a String cannot fail.
        let _ = format(installed.layout, request, SystemTime::now(), &mut line);
        installed.sink.write_line(line.as_bytes());
    });
}

/// Lays out one line, newline included.
fn format(layout: Layout, r: &Request<'_>, now: SystemTime, out: &mut String) -> fmt::Result {
    let method = Bounded::new(r.method, logfield::METHOD);
    let path = Bounded::new(r.path, logfield::PATH);
    let client_id = Bounded::new(r.client_id.unwrap_or("-"), logfield::CLIENT_ID);
    match layout {
        Layout::Text { timestamps } => {
            if timestamps {
                timestamp(now, out);
                out.push(' ');
            }
            out.push_str(" INFO steelcut::request: request method=");
            method.write_to(out)?;
            out.push_str(" path=");
            path.write_to(out)?;
            out.push_str(" status=");
            push_u64(out, r.status.into());
            out.push_str(" latency_ms=");
            push_millis(out, r.latency);
            out.push_str(" client_id=");
            client_id.write_to(out)?;
        }
        Layout::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(now, out);
            out.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":");
            json_string(method, out)?;
            out.push_str(",\"path\":");
            json_string(path, out)?;
            out.push_str(",\"status\":");
            push_u64(out, r.status.into());
            out.push_str(",\"latency_ms\":");
            push_millis(out, r.latency);
            out.push_str(",\"client_id\":");
            json_string(client_id, out)?;
            out.push_str("},\"target\":\"steelcut::request\"}");
        }
    }
    out.push('\n');
    Ok(())
}

/// `2026-11-29T18:32:50.161810Z`: RFC 3339 in UTC with microseconds, as `tracing` writes it.
/// The date and time of day are formatted once per second and thread.
fn timestamp(now: SystemTime, out: &mut String) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != since.as_secs() {
            let whole = UNIX_EPOCH + Duration::from_secs(since.as_secs());
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            // `2026-11-29T18:32:50Z`: keep all but the `Z`.
            *second = (since.as_secs(), text.trim_end_matches('Z').to_owned());
        }
        out.push_str(&second.1);
    });
    out.push('.');
    push_padded(out, since.subsec_micros().into(), 6);
    out.push('Z');
}

/// Decimal digits, without `core::fmt`'s machinery (the line's numbers are its hot part).
fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// `v` in at least `width` digits, zero-padded on the left.
fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// A latency in milliseconds with whole microseconds: `0.015`, `1.5`, `31`: the digits a
/// float of `micros / 1000` prints, without going through a float.
fn push_millis(out: &mut String, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    let mut frac = micros % 1000;
    if frac == 0 {
        return;
    }
    let mut digits = 3;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    out.push('.');
    push_padded(out, frac, digits);
}

/// A value of [`Bounded`] as a JSON string. Its text is printable ASCII (and `…`), with `"`
/// and `\` already escaped once; JSON escapes those backslashes and quotes again.
fn json_string(value: Bounded<'_>, out: &mut String) -> fmt::Result {
    struct Escaped<'a>(&'a mut String);
    impl fmt::Write for Escaped<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    c if c < ' ' => write!(self.0, "\\u{:04x}", c as u32)?,
                    c => self.0.push(c),
                }
            }
            Ok(())
        }
    }
    out.push('"');
    value.write_to(&mut Escaped(out))?;
    out.push('"');
    Ok(())
}

/// [`push_millis`] for `tracing` fields.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(16);
        push_millis(&mut text, self.0);
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    fn request<'a>(path: &'a str, client_id: Option<&'a str>, micros: u64) -> Request<'a> {
        Request {
            method: "GET",
            path,
            status: 200,
            latency: Duration::from_micros(micros),
            client_id,
        }
    }

    fn line(layout: Layout, r: &Request<'_>, now: SystemTime) -> String {
        let mut out = String::new();
        format(layout, r, now, &mut out).unwrap();
        out
    }

    #[test]
    fn latencies_print_as_the_float_of_micros_over_a_thousand_would() {
        for micros in [
            0u64,
            2,
            15,
            30,
            128,
            1_500,
            12_000,
            31_005,
            1_234_567,
            86_400_000_001,
        ] {
            let float = (micros as f64 / 1000.0).to_string();
            assert_eq!(Millis(Duration::from_micros(micros)).to_string(), float);
        }
    }

    #[test]
    fn text_lines_are_laid_out_as_the_tracing_formatter_lays_them_out() {
        let now = at("2026-11-29T18:32:50.161810Z");
        let r = request("/api_v0.0.1", Some("0123abcd"), 128);
        assert_eq!(
            line(Layout::Text { timestamps: true }, &r, now),
            "2026-11-29T18:32:50.161810Z  INFO steelcut::request: request method=GET \
             path=/api_v0.0.1 status=200 latency_ms=0.128 client_id=0123abcd\n"
        );
        assert_eq!(
            line(
                Layout::Text { timestamps: false },
                &request("/livez", None, 26),
                now
            ),
            " INFO steelcut::request: request method=GET path=/livez status=200 \
             latency_ms=0.026 client_id=-\n"
        );
    }

    #[test]
    fn json_lines_are_laid_out_as_the_tracing_json_formatter_lays_them_out() {
        let now = at("2026-11-29T18:32:50.000007Z");
        let r = request("/we\"ird\\path", Some("0123abcd"), 30_075);
        let text = line(Layout::Json, &r, now);
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-11-29T18:32:50.000007Z\",\"level\":\"INFO\",\"fields\":\
             {\"message\":\"request\",\"method\":\"GET\",\"path\":\"/we\\\\\\\"ird\\\\\\\\path\",\
             \"status\":200,\"latency_ms\":30.075,\"client_id\":\"0123abcd\"},\
             \"target\":\"steelcut::request\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["fields"]["path"], "/we\\\"ird\\\\path");
    }

    #[test]
    fn hostile_values_are_cut_and_escaped_in_both_layouts() {
        let now = at("2026-11-29T18:32:50Z");
        let path = format!("/a\nb{}", "x".repeat(100_000));
        let r = request(&path, None, 1);
        let text = line(Layout::Text { timestamps: true }, &r, now);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.contains("path=/a\\nb"), "{text}");
        assert!(text.contains("…(99748 more bytes)"), "{text}");
        assert!(text.len() < 512, "{} bytes", text.len());
        let json = line(Layout::Json, &r, now);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(parsed["fields"]["path"]
            .as_str()
            .unwrap()
            .ends_with("…(99748 more bytes)"));
    }

    #[test]
    fn the_seconds_are_reformatted_when_the_second_changes() {
        let r = request("/", None, 1);
        let layout = Layout::Text { timestamps: true };
        assert!(line(layout, &r, at("2026-11-29T18:32:50.999999Z"))
            .starts_with("2026-11-29T18:32:50.999999Z "));
        assert!(line(layout, &r, at("2026-11-29T18:32:51.000000Z"))
            .starts_with("2026-11-29T18:32:51.000000Z "));
        assert!(line(layout, &r, at("2027-01-01T00:00:00.000001Z"))
            .starts_with("2027-01-01T00:00:00.000001Z "));
    }
}
