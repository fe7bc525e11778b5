//! Where log lines go: standard output, written by a thread of its own.
//!
//! Formatting a line is the caller's work, writing it is not: a worker that logs (an audit
//! event per `Issue`, a warning under a store outage) hands the line over and goes on, so a slow
//! or stopped reader of standard output (a full pipe, a stalled log shipper) never holds up a
//! request. When `BUFFERED_LINES` lines are waiting, further lines are dropped rather than
//! waited for, and counted (`sessiond_log_lines_dropped_total`); audit events are stored
//! before they are logged, so the audit log itself never loses one.
//!
//! The thread takes lines in batches: it writes what it finds waiting with one `write`, then
//! rests for `BATCH_PAUSE` before it looks again, so that under load a line costs neither a
//! system call of its own nor a wake-up of the thread (a sleeping thread is woken by the
//! worker that hands it a line, a `futex` call on that worker's side and a context switch on
//! this one). With an audit line per `Issue` and `Refresh`, waking it per line took ~5% of
//! the server's CPU. A line waits at most `BATCH_PAUSE` longer to be written.

use std::io::{BufWriter, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines that may wait for the writer thread before new ones are dropped (a few MB).
pub const BUFFERED_LINES: usize = 16_384;

/// Bytes of waiting lines the writer thread gathers before it writes them out.
const WRITE_BUFFER: usize = 64 * 1024;

/// How long the writer thread rests after writing a batch. At 15,000 lines a second (a
/// server at its ceiling of `Refresh`es) that gathers ~75 lines, far below `BUFFERED_LINES`.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// A non-blocking writer into `out` and the guard that flushes it when dropped. The first one
/// made is the one [`dropped`] counts.
pub fn writer<W: Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard) {
    let out = Batches {
        out: BufWriter::with_capacity(WRITE_BUFFER, out),
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("sessiond-log")
        .finish(out);
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// The writer thread's output. The thread hands it every line it takes and flushes it when
/// it finds none left waiting (and when it stops): the flush writes the batch out, then
/// rests.
struct Batches<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> Write for Batches<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.out.flush();
        // This thread only writes logs: resting here holds up no request, and lines handed
        // over meanwhile wait in the channel without waking it.
        std::thread::sleep(BATCH_PAUSE);
        flushed
    }
}

/// Lines dropped so far because the writer fell `BUFFERED_LINES` behind.
pub fn dropped() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Barrier};

    use super::*;

    type Writes = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

    /// An output that records every `write` it is given; its first one waits for the test.
    struct Recording {
        writes: Writes,
        release: Arc<Barrier>,
        first: bool,
    }

    impl Write for Recording {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.first) {
                self.release.wait();
            }
            self.writes.lock().expect("writes").push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recording {
        /// A recording output whose first write waits on the returned barrier, and the
        /// writes it will have recorded.
        fn new() -> (Self, Arc<Barrier>, Writes) {
            let writes = Writes::default();
            let release = Arc::new(Barrier::new(2));
            let out = Self {
                writes: writes.clone(),
                release: release.clone(),
                first: true,
            };
            (out, release, writes)
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_instead_of_blocking_the_logger() {
        let (out, release, _writes) = Recording::new();
        let (writer, guard) = writer(out);
        let counter = writer.error_counter();
        // Lines of one length: the writer thread gathers at most a buffer's worth (and the
        // line that does not fit) before its first write, which waits on the barrier; of the
        // rest, `BUFFERED_LINES` wait and the others are dropped; every call returns meanwhile.
        let line_len = "line 00000000\n".len();
        let gathered = WRITE_BUFFER / line_len + 1;
        let lines = BUFFERED_LINES + gathered + 100;
        let mut out = writer.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..lines {
                // One write per line, as the log layer hands over a formatted line.
                let written = out.write_all(format!("line {i:08}\n").as_bytes());
                written.expect("a lossy write never fails");
            }
            done.send(()).ok();
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("logging to a stuck output returns at once");
        let dropped = counter.dropped_lines();
        assert!(
            (100..lines - BUFFERED_LINES).contains(&dropped),
            "{dropped} of {lines} lines dropped"
        );
        release.wait();
        drop(guard);
    }

    #[test]
    fn lines_that_wait_together_go_out_in_one_write_in_order() {
        let (out, release, writes) = Recording::new();
        let (writer, guard) = writer(out);
        let mut out = writer.clone();
        // The first line goes out on its own (nothing else waits), and its write holds the
        // thread until the test has handed over the rest.
        out.write_all(b"line 0\n").expect("lossy write");
        let lines = 1_000;
        let mut expected = b"line 0\n".to_vec();
        for i in 1..lines {
            let line = format!("line {i}\n");
            out.write_all(line.as_bytes()).expect("lossy write");
            expected.extend_from_slice(line.as_bytes());
        }
        release.wait();
        // Dropping the guard returns once the thread has taken everything and flushed.
        drop(guard);
        let writes = writes.lock().expect("writes");
        assert_eq!(writes.concat(), expected, "every line, in order");
        assert!(
            writes.len() <= 3,
            "{} writes for {lines} lines",
            writes.len()
        );
        assert_eq!(writer.error_counter().dropped_lines(), 0);
    }
}
