//! `rundock logs NAME`: a service's output as svlogd keeps it, the last lines and, with
//! `-f`, what comes after. Also the last lines the info module returns.
//!
//! svlogd writes one directory per stream (`<log_dir>/<name>/<stream>`): `current`, and
//! the files it rotated out, `@<tai64n>.s` (or `.u` while unprocessed), whose names sort
//! in time order. Reads only; nothing here writes or locks svlogd's files.

use rundock_spec::Spec;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lines shown when no count is given (as `tail`).
pub const DEFAULT_LINES: usize = 10;
/// The most lines one call returns: a bound on what a caller can make it read and hold.
pub const MAX_LINES: usize = 10_000;
/// How often `-f` looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// svlogd's live file.
const CURRENT: &str = "current";

/// The log directory of `stream` of the service `name` (or the tree at that path)
/// under `sv_dir`; `Err` says which tree holds no service.
pub fn log_dir_of(name: &str, sv_dir: &Path, stream: &str) -> Result<PathBuf, String> {
    let tree = crate::collect::trees(sv_dir, &[name.to_string()])
        .map_err(|e| format!("{e:#}"))?
        .remove(0);
    let spec = Spec::load(&tree.join(rundock_spec::SPEC_FILE))?;
    Ok(rundock_runit::log_dir(&spec, stream))
}

/// The files rotated out of `dir`, oldest first.
fn rotated(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('@') && (n.ends_with(".s") || n.ends_with(".u")))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}

/// Takes lines from the end of `text` into `lines` (newest first) until it holds `n`.
fn take_from_end(text: &[u8], n: usize, lines: &mut Vec<Vec<u8>>) {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return;
    }
    for line in text.rsplit(|&b| b == b'\n') {
        if lines.len() == n {
            return;
        }
        lines.push(line.to_vec());
    }
}

/// The last `n` lines (at most [`MAX_LINES`]) of the log in `dir`, oldest first, reading
/// `current` as far as `current_len` (what `-f` goes on from) and rotated files only as
/// far back as needed. A log dir that does not exist yet holds no lines.
fn last_lines_upto(dir: &Path, n: usize, current: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let n = n.min(MAX_LINES);
    let mut lines = Vec::new();
    take_from_end(current, n, &mut lines);
    for file in rotated(dir)?.iter().rev() {
        if lines.len() == n {
            break;
        }
        match std::fs::read(file) {
            Ok(text) => take_from_end(&text, n, &mut lines),
            // svlogd removed it (its oldest, past the count it keeps) while we listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    lines.reverse();
    Ok(lines)
}

/// The last `n` lines of the log in `dir` (at most [`MAX_LINES`]), oldest first.
pub fn last_lines(dir: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let current = match std::fs::read(dir.join(CURRENT)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    last_lines_upto(dir, n, &current)
}

/// Writes the last `n` lines of the log in `dir` to `out`, then everything svlogd
/// appends, across its rotations, until writing fails (the reader went away).
pub fn follow(dir: &Path, n: usize, out: &mut dyn Write) -> io::Result<()> {
    let path = dir.join(CURRENT);
    let mut file = open_current(&path)?;
    let mut seen = Vec::new();
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut seen)?;
    }
    for line in last_lines_upto(dir, n, &seen)? {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let mut buf = Vec::new();
    loop {
        if let Some(f) = file.as_mut() {
            buf.clear();
            f.read_to_end(&mut buf)?;
            if !buf.is_empty() {
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
        // svlogd rotates by renaming `current` and starting a new one: the old file is
        // read to its end, then the new one from its start.
        let replaced = match (&file, std::fs::metadata(&path)) {
            (Some(f), Ok(now)) => f.metadata()?.ino() != now.ino(),
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        if replaced {
            // What svlogd wrote to the old file between the read above and its rename.
            if let Some(f) = file.as_mut() {
                buf.clear();
                f.read_to_end(&mut buf)?;
                out.write_all(&buf)?;
                out.flush()?;
            }
            file = open_current(&path)?;
            continue;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn open_current(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(0))?;
            Ok(Some(f))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Options of `rundock logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsOptions {
    /// The service name (or its tree's path).
    pub name: String,
    /// Keep printing what the service writes from now on, across svlogd's rotations.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print first (at most 10000).
    #[arg(short = 'n', long, value_name = "N", default_value_t = DEFAULT_LINES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_LINES as u64))]
    pub lines: usize,
    /// Whose output: the container's, the announcer's or the watch's.
    #[arg(long, default_value = "container", value_parser = rundock_runit::LOG_STREAMS)]
    pub stream: String,
    /// Where the service trees live.
    #[arg(long, default_value = sv_dir_default())]
    pub sv_dir: PathBuf,
}

/// The module's `sv_dir` default, from its option table (the one source).
fn sv_dir_default() -> &'static str {
    rundock_module::options::option("sv_dir")
        .default_str()
        .expect("sv_dir has a default")
}

/// `rundock logs`: prints the last lines of the stream's log (and follows it); exits
/// 0, or 1 when there is no such service (said on stderr).
pub fn run(options: &LogsOptions) -> anyhow::Result<i32> {
    let LogsOptions {
        name,
        follow: follow_on,
        lines,
        stream,
        sv_dir,
    } = options;
    let lines = *lines;
    let dir = match log_dir_of(name, sv_dir, stream) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("rundock logs: {e}");
            return Ok(1);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if *follow_on {
        follow(&dir, lines, &mut out)
    } else {
        last_lines(&dir, lines).and_then(|all| {
            all.iter().try_for_each(|line| {
                out.write_all(line)?;
                out.write_all(b"\n")
            })?;
            out.flush()
        })
    };
    match written {
        Ok(()) => Ok(0),
        // `rundock logs web | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(dir: &Path, n: usize) -> Vec<String> {
        last_lines(dir, n)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn the_last_lines_span_rotated_files_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(lines(&d.join("absent"), 5).is_empty());
        std::fs::write(d.join("@400000006000000000000000.s"), "a1\na2\n").unwrap();
        std::fs::write(d.join("@400000006000000100000000.u"), "b1\nb2\n").unwrap();
        std::fs::write(d.join("current"), "c1\nc2\n").unwrap();
        for other in ["lock", "state", "newstate", "config"] {
            std::fs::write(d.join(other), "x\n").unwrap();
        }
        assert_eq!(lines(d, 0), Vec::<String>::new());
        assert_eq!(lines(d, 1), ["c2"]);
        assert_eq!(lines(d, 3), ["b2", "c1", "c2"]);
        assert_eq!(lines(d, 100), ["a1", "a2", "b1", "b2", "c1", "c2"]);
        std::fs::write(d.join("current"), "").unwrap();
        assert_eq!(lines(d, 2), ["b1", "b2"]);
        // A line svlogd has not ended yet is shown as it is.
        std::fs::write(d.join("current"), "c1\npartial").unwrap();
        assert_eq!(lines(d, 2), ["c1", "partial"]);
    }

    #[test]
    fn follow_goes_on_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::write(d.join("current"), "old1\nold2\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Sink(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0
                    .send(b.to_vec())
                    .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let follower = {
            let d = d.clone();
            std::thread::spawn(move || follow(&d, 1, &mut Sink(tx)))
        };
        let mut got = Vec::new();
        let mut wait_for = |want: &str| {
            while !String::from_utf8_lossy(&got).contains(want) {
                let chunk = rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("never saw {want:?} in {got:?}"));
                got.extend(chunk);
            }
        };
        wait_for("old2\n");
        let append = |text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join("current"))
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append("new1\n");
        wait_for("new1\n");
        // svlogd's rotation: the last lines into current, rename, a fresh current.
        append("before-rotation\n");
        std::fs::rename(d.join("current"), d.join("@400000006000000200000000.s")).unwrap();
        std::fs::write(d.join("current"), "after-rotation\n").unwrap();
        wait_for("after-rotation\n");
        let text = String::from_utf8(got).unwrap();
        assert_eq!(text, "old2\nnew1\nbefore-rotation\nafter-rotation\n");
        drop(rx);
        // The reader went away: the next write fails and follow returns.
        append("x\n");
        assert!(follower.join().unwrap().is_err());
    }
}
