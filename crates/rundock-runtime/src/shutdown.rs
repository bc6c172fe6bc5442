//! TERM and INT, the two ways a rundock process is asked to stop: runsv sends TERM on
//! `sv down` (and the tree's `control/t` does it in order), an operator at a terminal
//! presses Ctrl-C. Both mean the same: finish cleanly, then exit.

use std::io;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The stop signals of one process, handled alike.
///
/// Creating it installs the handlers, so from then on TERM and INT no longer kill the
/// process; create it first thing, before any work a signal should interrupt cleanly.
/// Needs a tokio runtime with its I/O driver enabled (`enable_all`).
pub struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    /// Installs the TERM and INT handlers: from here on neither kills the process. `Err`
    /// when a handler cannot be registered; must be called inside a tokio runtime with its
    /// I/O driver, as the type's doc says.
    pub fn new() -> io::Result<Shutdown> {
        Ok(Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The first TERM or INT, as the `stop` future a server runs until (`rundock dns`,
    /// `rundock watch`).
    pub async fn first(mut self) {
        self.recv().await;
    }

    /// Waits for the next TERM or INT and names it (`"TERM"`, `"INT"`) for the log.
    /// Call it again to wait for a second one (to escalate a stop that takes too long).
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "TERM",
            _ = self.int.recv() => "INT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{raise, Signal as NixSignal};
    use std::time::Duration;

    #[tokio::test]
    async fn term_and_int_are_received_and_named() {
        let mut stop = Shutdown::new().unwrap();
        for (sent, name) in [(NixSignal::SIGTERM, "TERM"), (NixSignal::SIGINT, "INT")] {
            raise(sent).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), stop.recv()).await;
            assert_eq!(got, Ok(name));
        }
    }
}
