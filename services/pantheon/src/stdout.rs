//! Delivering lines to standard output for commands that must not lose what they print
//! (`pantheon events --group G --consumer C`, which acks an event only once delivered).
//!
//! A line counts as delivered once it is written, flushed and, when stdout is a pipe, taken
//! out of the pipe by the reading process. The pipe check matters: a write to a pipe
//! succeeds as soon as the bytes fit in the kernel's buffer (64 KiB on Linux), so
//! `pantheon events ... | head -n 5` would otherwise "deliver" hundreds of events into a
//! buffer `head` never reads, and ack them all. Waiting until the pipe is empty (`FIONREAD`
//! is 0) before reporting delivery keeps at most the one line in flight unacknowledged.
//!
//! A closed stdout (a write error such as `EPIPE`, or `POLLERR`/`POLLHUP` on the descriptor
//! when the reader went away) is reported as [`Closed`], so the caller stops instead of
//! running on with nobody reading.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::time::Duration;

/// Standard output went away: nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// How often [`Stdout::closed`] looks at stdout while nothing is being written.
const CLOSED_CHECK: Duration = Duration::from_millis(100);
/// The first and the longest pause between two looks at a pipe the reader has not drained.
const DRAIN_FIRST_PAUSE: Duration = Duration::from_micros(200);
const DRAIN_MAX_PAUSE: Duration = Duration::from_millis(20);

/// Standard output, with delivery checks.
#[derive(Debug)]
pub struct Stdout {
    out: std::io::Stdout,
    is_pipe: bool,
}

impl Default for Stdout {
    fn default() -> Self {
        Self::new()
    }
}

impl Stdout {
    pub fn new() -> Self {
        let out = std::io::stdout();
        let is_pipe = is_fifo(&out);
        Self { out, is_pipe }
    }

    /// Writes `line` and a newline, flushes, and (on a pipe) waits until the reader has
    /// taken every byte. `Err(Closed)` when stdout is gone: the line was not delivered.
    /// Cancelling the future (Ctrl-C while a slow reader holds the pipe) means "not
    /// delivered" too.
    pub async fn deliver(&mut self, line: &str) -> Result<(), Closed> {
        {
            let mut lock = self.out.lock();
            lock.write_all(line.as_bytes())
                .and_then(|()| lock.write_all(b"\n"))
                .and_then(|()| lock.flush())
                .map_err(|_| Closed)?;
        }
        if !self.is_pipe {
            return Ok(());
        }
        let mut pause = DRAIN_FIRST_PAUSE;
        loop {
            // Drained first: the reader took the line even if it has exited since (`head`
            // after its last line). Only bytes left in a pipe nobody reads are undelivered.
            match rustix::io::ioctl_fionread(self.out.as_fd()) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // No way to tell (not expected on a pipe): written and flushed is all we know.
                Err(_) => return Ok(()),
            }
            if self.is_closed() {
                return Err(Closed);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(DRAIN_MAX_PAUSE);
        }
    }

    /// True when the reader of stdout went away (`POLLERR` on a pipe without a reader,
    /// `POLLHUP` on a hung-up terminal or socket).
    pub fn is_closed(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let fd = self.out.as_fd();
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::empty())];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(_) => fds[0]
                .revents()
                .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL),
            Err(_) => false,
        }
    }

    /// Resolves once stdout is closed (checked every 100 ms): lets a command that waits for
    /// input (`--follow`) stop when nobody reads its output any more.
    pub async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(CLOSED_CHECK).await;
        }
    }
}

/// Whether `out` is a pipe (or FIFO), looked up on a duplicate of its descriptor.
fn is_fifo(out: &std::io::Stdout) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    out.as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_fifo())
}
