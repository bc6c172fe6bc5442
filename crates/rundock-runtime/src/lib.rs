//! What every long-running rundock process needs (`supervise` and `announce` under
//! runsv, `dns` in the foreground): one single-threaded tokio runtime
//! ([`current_thread`]), stopping on TERM or INT ([`Shutdown`]), waiting a
//! doubling delay between retries ([`Backoff`]), one format for its log lines
//! ([`say!`], [`log::Prefix`]), and for servers a cap on open connections that makes
//! room by closing the oldest idle one ([`Connections`]).
//!
//! Why a crate of its own: each of these was written again in every process that needed
//! it, and the copies had started to differ in small ways (which signals stop, how a
//! delay grows). Here each is written once, small enough to read in a minute, with
//! tokio (signals, timers) as the only dependency, so the supervisor, the announcer and
//! the DNS responder share it without pulling in each other's clients.
//!
//! Why no logging crate: a line needs no timestamp or level of its own (svlogd stamps
//! every line it keeps, and runit's `run` scripts send stderr there), there is one sink
//! (stderr) and no filtering; a `log` facade with a backend would add code to a binary
//! that Ansible copies on every task and give nothing the format string does not.

#![warn(missing_docs)]

pub mod backoff;
pub mod connections;
pub mod log;
pub mod shutdown;

pub use backoff::Backoff;
pub use connections::{listen, Connections, Slot};
pub use shutdown::Shutdown;

/// The runtime every rundock process and blocking entry point runs its async code on:
/// single-threaded (one service's work never needs more, and a thread pool would cost
/// memory in every process of every tree), with timers and I/O enabled.
pub fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot build the async runtime: {e}")))
}
