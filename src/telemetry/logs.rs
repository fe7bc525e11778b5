//! Where log lines go: standard output, written by a thread of its own.
//!
//! Formatting a line is the caller's work, writing it is not: a worker that logs (an audit
//! event per `Issue`, a warning under a store outage) hands the line over and goes on, so a slow
//! or stopped reader of standard output (a full pipe, a stalled log shipper) never holds up a
//! request. When `BUFFERED_LINES` lines are waiting, further lines are dropped rather than
//! waited for, and counted (`sessiond_log_lines_dropped_total`); audit events are stored
//! before they are logged, so the audit log itself never loses one.

use std::io::Write;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines that may wait for the writer thread before new ones are dropped (a few MB).
pub const BUFFERED_LINES: usize = 16_384;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// A non-blocking writer into `out` and the guard that flushes it when dropped. The first one
/// made is the one [`dropped`] counts.
pub fn writer<W: Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("sessiond-log")
        .finish(out);
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
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

    /// An output that takes one line, then blocks until the test lets it go.
    struct Stuck {
        release: Arc<Barrier>,
        first: bool,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.first) {
                self.release.wait();
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_instead_of_blocking_the_logger() {
        let release = Arc::new(Barrier::new(2));
        let (writer, guard) = writer(Stuck {
            release: release.clone(),
            first: true,
        });
        let counter = writer.error_counter();
        // The writer thread takes at most one line and then waits on the barrier, so all but
        // that one and `BUFFERED_LINES` are dropped; every call returns meanwhile.
        let lines = BUFFERED_LINES + 100;
        let mut out = writer.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..lines {
                // One write per line, as the log layer hands over a formatted line.
                let written = out.write_all(format!("line {i}\n").as_bytes());
                written.expect("a lossy write never fails");
            }
            done.send(()).ok();
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("logging to a stuck output returns at once");
        let dropped = counter.dropped_lines();
        assert!(
            (99..=100).contains(&dropped),
            "{dropped} of {lines} lines dropped"
        );
        release.wait();
        drop(guard);
    }
}
