//! Copying the container's output to the supervisor's own stdout and stderr, without
//! ever holding the container (or Docker) back.
//!
//! The attach is made before the container starts, so its first lines are not lost.
//! Docker writes a container's output to every attached client in turn: a client that
//! stops reading stops the container's stdout, so its work, and `docker kill`/`rm`
//! wait on it too. svlogd stops reading when it cannot write (a full log disk), so
//! nothing here may wait on it:
//! * the pump reads the attach stream without pause and hands each chunk to a queue
//!   bounded in bytes ([`QUEUE_BYTES`]); a chunk that does not fit is dropped and
//!   counted (its lines and bytes), never waited for;
//! * a plain thread writes the queue out. Into a pipe (svlogd's) it writes through a
//!   non-blocking descriptor of its own and only while the pipe keeps [`HEADROOM`]
//!   free, so the supervisor's own log lines, which share that pipe, always fit and
//!   the runtime (signals, the attach stream) never stalls on a full pipe either;
//! * drops are reported in the log once the sink takes lines again, and kept as a fact
//!   in [`OUTPUT_STATE_FILE`] (counts summed over the container's lives) for
//!   `rundock status` and `rundock metrics`.

use bollard::container::LogOutput;
use bollard::query_parameters::AttachContainerOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Bytes of output held for a sink that is behind (about a second of a busy service);
/// past this, chunks are dropped.
pub const QUEUE_BYTES: usize = 1 << 20;
/// Room left free in the log pipe for the supervisor's own lines.
pub const HEADROOM: usize = 16 << 10;
/// How often a writer waiting for room in the pipe looks again.
const POLL: Duration = Duration::from_millis(20);
/// How often the drop counts are saved while they change.
const SAVE_EVERY: Duration = Duration::from_secs(1);

pub use rundock_spec::state::{OutputState, OUTPUT_STATE_FILE};

/// Drop counts shared by the pump (which drops) and the writer (which reports).
#[derive(Default)]
struct Drops {
    lines: AtomicU64,
    bytes: AtomicU64,
}

impl Drops {
    fn count(&self, chunk: &[u8]) {
        let lines = chunk.iter().filter(|b| **b == b'\n').count().max(1);
        self.lines.fetch_add(lines as u64, Ordering::Relaxed);
        self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }

    fn now(&self) -> (u64, u64) {
        (
            self.lines.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The running copy: the pump reading the attach stream and the writer thread.
pub(crate) struct Copy {
    pump: tokio::task::JoinHandle<()>,
    written: oneshot::Receiver<()>,
}

/// Attaches to `container`'s stdout and stderr and starts copying them.
pub(crate) async fn attach(
    docker: &Docker,
    container: &str,
) -> Result<Copy, bollard::errors::Error> {
    let options = AttachContainerOptions {
        stream: true,
        stdout: true,
        stderr: true,
        logs: false,
        ..Default::default()
    };
    let attached = docker.attach_container(container, Some(options)).await?;
    Ok(start_copy(
        attached.output,
        Sinks::process(),
        PathBuf::from(OUTPUT_STATE_FILE),
    ))
}

/// Where the two streams go.
pub(crate) struct Sinks {
    out: Sink,
    err: Sink,
}

impl Sinks {
    /// The process's own stdout and stderr.
    pub(crate) fn process() -> Sinks {
        Sinks {
            out: Sink::open(1),
            err: Sink::open(2),
        }
    }

    /// Both streams into one pipe, `fd` its write end (the layout of a runit service
    /// whose run script does `exec 2>&1`).
    #[cfg(test)]
    fn one_pipe(fd: i32) -> Sinks {
        Sinks {
            out: Sink::open(fd),
            err: Sink::open(fd),
        }
    }
}

/// One output stream.
enum Sink {
    /// A pipe, through a non-blocking descriptor of its own (see [`Sink::open`]).
    Pipe { file: File, capacity: usize },
    /// Anything else (a file, a terminal, /dev/null) behind fd 1 or 2: written as it is,
    /// since none of them stalls the way a reader that stopped reading does.
    Plain(i32),
}

impl Sink {
    /// Opens `/proc/self/fd/N` when fd `N` is a pipe: a new open file description of
    /// the same pipe, so O_NONBLOCK on it leaves fd `N` itself (shared with every
    /// `eprintln!` of this process, which must block rather than fail) as it is.
    fn open(fd: i32) -> Sink {
        let path = format!("/proc/self/fd/{fd}");
        let is_pipe = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_fifo());
        if !is_pipe {
            return Sink::Plain(fd);
        }
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        match opened {
            Ok(file) => {
                // SAFETY: F_GETPIPE_SZ only reads the size of the pipe behind an open fd.
                let size = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETPIPE_SZ) };
                match usize::try_from(size) {
                    Ok(capacity) if capacity > HEADROOM => Sink::Pipe { file, capacity },
                    _ => Sink::Plain(fd),
                }
            }
            Err(_) => Sink::Plain(fd),
        }
    }

    /// Writes all of `bytes`, waiting for room in a pipe as long as it takes (only this
    /// thread waits); false if the sink is gone (closed pipe, write error).
    fn write(&mut self, bytes: &[u8]) -> bool {
        match self {
            Sink::Plain(fd) => {
                let result = if *fd == 2 {
                    write_all(&mut std::io::stderr(), bytes)
                } else {
                    write_all(&mut std::io::stdout(), bytes)
                };
                result.is_ok()
            }
            Sink::Pipe { file, capacity } => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let room = capacity.saturating_sub(queued_in(file).unwrap_or(*capacity));
                    let allowed = room.saturating_sub(HEADROOM).min(rest.len());
                    if allowed == 0 {
                        std::thread::sleep(POLL);
                        continue;
                    }
                    match file.write(&rest[..allowed]) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(POLL)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                true
            }
        }
    }
}

/// Bytes waiting in the pipe behind `file` (FIONREAD works on either end of a pipe).
fn queued_in(file: &File) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &mut queued) };
    (rc == 0).then(|| usize::try_from(queued).ok()).flatten()
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Starts the pump on `stream` and the writer thread into `sinks`; drop counts go to
/// `state_path`.
pub(crate) fn start_copy<S>(stream: S, mut sinks: Sinks, state_path: PathBuf) -> Copy
where
    S: futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>>
        + Send
        + Unpin
        + 'static,
{
    let (sender, receiver) = std::sync::mpsc::channel::<LogOutput>();
    let queued = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(Drops::default());
    let (done, written) = oneshot::channel();
    {
        let queued = queued.clone();
        let drops = drops.clone();
        std::thread::spawn(move || {
            let mut reported = (0, 0);
            while let Ok(chunk) = receiver.recv() {
                let now = drops.now();
                if now != reported {
                    let notice = format!(
                        "rundock supervise: dropped {} lines ({} bytes) of the container's \
                         output: the log did not keep up\n",
                        now.0 - reported.0,
                        now.1 - reported.1
                    );
                    sinks.err.write(notice.as_bytes());
                    reported = now;
                }
                let size = chunk_len(&chunk);
                // A closed stdout/stderr (no log service) must not stop the container.
                let _ = match chunk {
                    LogOutput::StdErr { message } => sinks.err.write(&message),
                    other => sinks.out.write(&other.into_bytes()),
                };
                queued.fetch_sub(size, Ordering::Relaxed);
            }
            let _ = done.send(());
        });
    }
    let pump = tokio::spawn(async move {
        let mut stream = stream;
        let mut recorder = Recorder::load(state_path);
        let mut save = tokio::time::interval(SAVE_EVERY);
        loop {
            tokio::select! {
                next = stream.next() => {
                    let Some(Ok(chunk)) = next else { break };
                    let size = chunk_len(&chunk);
                    if queued.load(Ordering::Relaxed) + size > QUEUE_BYTES {
                        drops.count(chunk_bytes(&chunk));
                        continue;
                    }
                    queued.fetch_add(size, Ordering::Relaxed);
                    if sender.send(chunk).is_err() {
                        break;
                    }
                }
                _ = save.tick() => recorder.save(&drops),
            }
        }
        recorder.save(&drops);
    });
    Copy { pump, written }
}

fn chunk_bytes(chunk: &LogOutput) -> &[u8] {
    match chunk {
        LogOutput::StdErr { message }
        | LogOutput::StdOut { message }
        | LogOutput::StdIn { message }
        | LogOutput::Console { message } => message,
    }
}

fn chunk_len(chunk: &LogOutput) -> usize {
    chunk_bytes(chunk).len()
}

/// Keeps [`OutputState`] on disk: this life's drops added to what earlier lives left.
struct Recorder {
    path: PathBuf,
    earlier: OutputState,
    saved: (u64, u64),
    /// A failed save was logged (once: it is retried every second).
    warned: bool,
}

impl Recorder {
    fn load(path: PathBuf) -> Recorder {
        let earlier: OutputState = rundock_spec::state::read(&path).unwrap_or_default();
        Recorder {
            path,
            earlier,
            saved: (0, 0),
            warned: false,
        }
    }

    fn save(&mut self, drops: &Drops) {
        let now = drops.now();
        if now == self.saved {
            return;
        }
        let state = OutputState {
            dropped_lines: self.earlier.dropped_lines + now.0,
            dropped_bytes: self.earlier.dropped_bytes + now.1,
            last_drop_at: Some(rundock_spec::state::unix_now()),
        };
        match rundock_spec::state::write(&self.path, &state) {
            Ok(()) => self.saved = now,
            Err(e) if !self.warned => {
                self.warned = true;
                eprintln!(
                    "rundock supervise: cannot write {}: {e}",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

impl Copy {
    /// After the container exited: lets the attach stream end and the last bytes be
    /// written, waiting at most `limit` for each.
    pub async fn finish(self, limit: Duration) {
        let mut pump = self.pump;
        if tokio::time::timeout(limit, &mut pump).await.is_err() {
            pump.abort();
        }
        let _ = tokio::time::timeout(limit, self.written).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn pipe() -> (File, i32) {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[0] is a fresh descriptor nothing else owns.
        (unsafe { File::from_raw_fd(fds[0]) }, fds[1])
    }

    /// 4 MiB of numbered 1 KiB lines, one chunk each.
    fn lines(count: usize) -> Vec<Result<LogOutput, bollard::errors::Error>> {
        (0..count)
            .map(|i| {
                Ok(LogOutput::StdOut {
                    message: format!("{i:01023}\n").into_bytes().into(),
                })
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sink_that_stops_reading_never_stalls_the_copy_and_drops_are_counted() {
        let (mut reader, writer) = pipe();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(OUTPUT_STATE_FILE);
        let total = 4096;
        let copy = start_copy(
            futures_util::stream::iter(lines(total)),
            Sinks::one_pipe(writer),
            state.clone(),
        );
        // Nobody reads the pipe: the whole stream is still consumed at once.
        let mut pump = copy.pump;
        tokio::time::timeout(Duration::from_secs(5), &mut pump)
            .await
            .expect("the pump waited on a sink that does not read")
            .unwrap();
        let saved: OutputState = rundock_spec::state::read(&state).expect("drops saved");
        assert!(saved.dropped_lines > 0, "{saved:?}");
        assert_eq!(saved.dropped_bytes, saved.dropped_lines * 1024);
        // The writer leaves room in the pipe for the supervisor's own lines.
        let mut probe = File::options()
            .write(true)
            .open(format!("/proc/self/fd/{writer}"))
            .unwrap();
        let (capacity, queued) = match Sink::open(writer) {
            Sink::Pipe { file, capacity } => (capacity, queued_in(&file).unwrap()),
            Sink::Plain(_) => panic!("a pipe"),
        };
        assert!(capacity - queued >= HEADROOM, "{queued} of {capacity} used");
        probe
            .write_all(b"a line of the supervisor's own\n")
            .unwrap();
        // Reading again: the queued lines, then the notice, then the rest.
        let written = std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = vec![0; 1 << 16];
            while !text.contains("dropped") {
                let n = reader.read(&mut buf).unwrap();
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            text
        });
        drop(probe);
        let text = tokio::task::spawn_blocking(move || written.join().unwrap())
            .await
            .unwrap();
        assert!(
            text.lines().any(|l| l.len() == 1023),
            "queued lines come first"
        );
        let reported: u64 = text
            .split("dropped ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a drop notice with a count");
        assert!(
            reported > 0 && reported <= saved.dropped_lines,
            "{reported} of {saved:?}"
        );
        assert!(saved.dropped_lines < total as u64, "{saved:?}");
        // SAFETY: the writer's descriptor is ours to close once the test is done with it.
        unsafe { libc::close(writer) };
    }
}
