//! systemd's notification protocol (`sd_notify(3)`): a datagram to `$NOTIFY_SOCKET` saying
//! `READY=1`, `RELOADING=1`, `STOPPING=1` or `STATUS=...`. Written out here rather than pulled
//! from a crate because it is one `sendto` on a Unix datagram socket; without `NOTIFY_SOCKET`
//! (not under systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` pairs) to the service manager, if any.
/// Failures are logged, never fatal: the daemon works the same without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): the name follows a NUL byte.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd expects alongside it.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` against.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1_000
}
