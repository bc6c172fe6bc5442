//! runsv's view of one service directory, read from `supervise/` without `sv`.
//!
//! `supervise/status` is runsv's 20-byte record (what `sv status` prints from): a
//! TAI64N stamp of the last state change (8 bytes seconds as 2^62 + 10 + Unix time, big
//! endian, then 4 bytes nanoseconds), the pid (4 bytes, little endian), a paused flag,
//! the wanted state (`u`/`d`), a got-TERM flag and the state (0 down, 1 run, 2 finish).
//! Reading it directly costs no process per service, which matters when a scrape covers
//! fifty trees.

use serde::Serialize;
use std::path::Path;

/// TAI64 label of the Unix epoch, as runit's `tai_unix` adds it.
const TAI_UNIX_EPOCH: u64 = 4_611_686_018_427_387_914;

/// One service directory as runsv reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runsv {
    /// `run`, `down`, `finish`, or `unsupervised` when no runsv watches the directory.
    pub state: &'static str,
    /// The process runsv runs (`run`/`finish`), if any.
    pub pid: Option<u32>,
    /// When the current state began (Unix seconds).
    pub since: Option<u64>,
    /// Set only when runsv is asked for the other state: `up` while down, `down` while
    /// up (what `sv status` prints as `want up`/`want down`).
    pub want: Option<&'static str>,
    /// A `down` file: the service is not started with runsvdir.
    pub normally_down: bool,
    /// The process is stopped (`sv pause`, STOP sent) and runsv knows it.
    pub paused: bool,
}

impl Runsv {
    /// A directory no runsv watches: state `unsupervised`, nothing else known but whether it has a
    /// `down` file.
    pub fn unsupervised(normally_down: bool) -> Runsv {
        Runsv {
            state: "unsupervised",
            pid: None,
            since: None,
            want: None,
            normally_down,
            paused: false,
        }
    }

    /// The state is `run` (the process is up; `sv status` says `run`).
    pub fn is_running(&self) -> bool {
        self.state == "run"
    }

    /// Down (or going down) because someone asked for it.
    pub fn held_down(&self) -> bool {
        self.state == "down" || (self.state != "unsupervised" && self.want == Some("down"))
    }
}

/// Parses `supervise/status`; `None` when it is not the 20-byte record.
pub fn parse_status(bytes: &[u8], normally_down: bool) -> Option<Runsv> {
    let bytes: &[u8; 20] = bytes.try_into().ok()?;
    let tai = u64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let pid = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
    let state = match bytes[19] {
        0 => "down",
        1 => "run",
        2 => "finish",
        _ => return None,
    };
    let want = match (bytes[17], pid) {
        (b'u', 0) => Some("up"),
        (b'd', p) if p != 0 => Some("down"),
        _ => None,
    };
    Some(Runsv {
        state,
        pid: (pid != 0).then_some(pid),
        since: tai.checked_sub(TAI_UNIX_EPOCH),
        want,
        normally_down,
        paused: bytes[16] != 0,
    })
}

/// Reads `dir`'s runsv state: unsupervised unless a runsv holds `supervise/ok` open.
pub fn read(dir: &Path) -> Runsv {
    let normally_down = dir.join("down").exists();
    if !rundock_runit::control::runsv_running(dir) {
        return Runsv::unsupervised(normally_down);
    }
    std::fs::read(dir.join("supervise/status"))
        .ok()
        .and_then(|bytes| parse_status(&bytes, normally_down))
        .unwrap_or_else(|| Runsv::unsupervised(normally_down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(unix: u64, pid: u32, want: u8, state: u8) -> Vec<u8> {
        let mut bytes = (TAI_UNIX_EPOCH + unix).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&pid.to_le_bytes());
        bytes.extend_from_slice(&[0, want, 0, state]);
        bytes
    }

    #[test]
    fn the_record_gives_state_pid_since_and_want() {
        let up = parse_status(&record(1_700_000_000, 4242, b'u', 1), false).unwrap();
        assert_eq!(
            (up.state, up.pid, up.since, up.want),
            ("run", Some(4242), Some(1_700_000_000), None)
        );
        assert!(up.is_running() && !up.held_down());
        let stopping = parse_status(&record(5, 77, b'd', 1), false).unwrap();
        assert_eq!(stopping.want, Some("down"));
        assert!(stopping.held_down());
        let down = parse_status(&record(5, 0, b'd', 0), true).unwrap();
        assert_eq!((down.state, down.pid, down.want), ("down", None, None));
        assert!(down.held_down() && down.normally_down);
        let wants_up = parse_status(&record(5, 0, b'u', 0), false).unwrap();
        assert_eq!(wants_up.want, Some("up"));
        assert_eq!(parse_status(&[0; 19], false), None);
        assert_eq!(parse_status(&record(5, 0, b'u', 9), false), None);
    }
}
