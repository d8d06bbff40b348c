//! The log's way out: lines are appended to one shared buffer, and a writer thread writes the
//! buffer to stderr in one system call every [`GATHER`] (or as soon as it holds
//! [`HIGH_WATER`] bytes).
//!
//! A request log line per request is the daemon's busiest output. Writing each line with its
//! own system call, or handing each to a thread through a channel (one allocation and one
//! wake-up of that thread per line), costs more CPU than validating the request. Here a line
//! costs a lock and a copy; the writer thread wakes once per batch, and not at all while
//! nothing is logged. A line waits at most [`GATHER`] before it is written.
//!
//! The buffer is bounded: if stderr blocks (a stalled journal, a full pipe) and the buffer
//! reaches [`MAX_BYTES`], further lines are dropped, counted and reported once the writer
//! catches up, so that a request never waits for the log.

use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread gathers lines after the first one of a batch.
pub const GATHER: Duration = Duration::from_millis(50);
/// A batch this large is written at once.
const HIGH_WATER: usize = 64 * 1024;
/// Lines that would grow the buffer beyond this are dropped (and counted).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// How long dropping the guard waits for the last lines to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    dropped: u64,
    closed: bool,
    finished: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer thread: the first line of a batch, a full batch, or the end.
    wake: Condvar,
    /// Wakes the guard once the writer thread has written everything.
    finished: Condvar,
}

/// The [`MakeWriter`] given to the `tracing` formatter: each formatted line is one `write`.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes what is buffered (waiting at most a second).
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out` (stderr in the daemon).
pub fn start<W: Write + Send + 'static>(out: W) -> io::Result<(BatchWriter, Guard)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || write_batches(&shared, out)
        })?;
    Ok((
        BatchWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl BatchWriter {
    fn append(&self, line: &[u8]) {
        let mut pending = self.shared.pending.lock();
        if pending.buf.len() + line.len() > MAX_BYTES {
            pending.dropped += 1;
            return;
        }
        let before = pending.buf.len();
        pending.buf.extend_from_slice(line);
        let after = pending.buf.len();
        drop(pending);
        // The writer sleeps until the first line of a batch, and gathers until the batch is
        // full: only those two moments need to wake it.
        if before == 0 || (before < HIGH_WATER && after >= HIGH_WATER) {
            self.shared.wake.notify_one();
        }
    }
}

// On a shared reference: the formatter borrows the writer for each line instead of cloning
// the `Arc` inside it.
impl Write for &BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl crate::reqlog::Sink for BatchWriter {
    fn write_line(&self, line: &[u8]) {
        self.append(line);
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The writer thread: waits for a first line, gathers for [`GATHER`] (or until
/// [`HIGH_WATER`]), takes the whole buffer and writes it with one call.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.pending.lock();
        while pending.buf.is_empty() && pending.dropped == 0 && !pending.closed {
            shared.wake.wait(&mut pending);
        }
        if !pending.closed && pending.buf.len() < HIGH_WATER {
            // Woken early only by a full batch or the end; either way, write now.
            shared.wake.wait_for(&mut pending, GATHER);
        }
        std::mem::swap(&mut batch, &mut pending.buf);
        let dropped = std::mem::take(&mut pending.dropped);
        let closed = pending.closed;
        drop(pending);
        if dropped > 0 {
            let _ = writeln!(
                batch,
                "steelcutd: {dropped} log lines dropped: the log output could not keep up"
            );
        }
        // A failed write (stderr closed) loses this batch; the service goes on.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        // Do not keep a flood's worth of memory once it has passed.
        batch.shrink_to(HIGH_WATER);
        if closed && shared.pending.lock().buf.is_empty() {
            break;
        }
    }
    shared.pending.lock().finished = true;
    shared.finished.notify_all();
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut pending = self.shared.pending.lock();
        pending.closed = true;
        self.shared.wake.notify_one();
        let finished = !self
            .shared
            .finished
            .wait_while_for(&mut pending, |p| !p.finished, FINAL_FLUSH)
            .timed_out();
        drop(pending);
        if finished {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A `Write` that collects into a shared buffer, optionally blocking until released.
    #[derive(Clone, Default)]
    struct Collect {
        out: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        entered: Arc<Mutex<usize>>,
        gate: Option<Arc<Mutex<()>>>,
    }

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            *self.entered.lock() += 1;
            let _held = self.gate.as_ref().map(|g| g.lock());
            *self.writes.lock() += 1;
            self.out.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(c: &Collect) -> String {
        String::from_utf8(c.out.lock().clone()).unwrap()
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_few_writes() {
        let out = Collect::default();
        let (writer, guard) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        (&w).write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = text(&out);
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines out of order or broken");
        }
        assert!(*out.writes.lock() < 100, "{} writes", out.writes.lock());
    }

    #[test]
    fn a_single_line_is_written_without_further_lines_or_the_guard() {
        let out = Collect::default();
        let (writer, _guard) = start(out.clone()).unwrap();
        let sent = Instant::now();
        (&writer).write_all(b"alone\n").unwrap();
        while text(&out) != "alone\n" {
            assert!(sent.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_blocked_output_drops_lines_beyond_the_bound_and_says_how_many() {
        let gate = Arc::new(Mutex::new(()));
        let out = Collect {
            gate: Some(gate.clone()),
            ..Collect::default()
        };
        let closed = gate.lock();
        let (writer, guard) = start(out.clone()).unwrap();
        // The first batch blocks in the output; the buffer then fills up to its bound.
        (&writer).write_all(b"first\n").unwrap();
        let sent = Instant::now();
        while *out.entered.lock() == 0 {
            assert!(sent.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        let line = [b'x'; 1023];
        let line = [&line[..], b"\n"].concat();
        let fits = MAX_BYTES / line.len();
        for _ in 0..fits + 500 {
            (&writer).write_all(&line).unwrap();
        }
        assert!(writer.shared.pending.lock().buf.len() <= MAX_BYTES);
        drop(closed);
        drop(guard);
        let text = text(&out);
        assert!(text.starts_with("first\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with('x')).count(), fits);
        assert!(
            text.contains("steelcutd: 500 log lines dropped"),
            "{}",
            &text[text.len() - 200..]
        );
    }
}
