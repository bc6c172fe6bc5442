//! What the supervisor is asked from outside while it runs: stop (TERM or INT: stop and
//! remove the container, exit 0; a second one kills a container that takes too long)
//! or let go (HUP: leave the container running and exit, so runsv starts the
//! supervisor again on the spec now on disk; how the module asks for a start-first
//! update).
//!
//! Why a channel and not the signal handlers themselves: the run takes its [`Signals`]
//! as an argument, so it can be driven in-process (a test sends a stop instead of
//! raising TERM at its own process), as `rundock dns` takes a stop future.

use rundock_runtime::Shutdown;
use std::future::Future;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The requests a run receives, in order of arrival per kind.
pub struct Signals {
    stop: mpsc::UnboundedReceiver<&'static str>,
    let_go: mpsc::UnboundedReceiver<()>,
}

/// The sending side of [`Signals`]: what the process's signal handlers (or a test) use.
#[derive(Clone)]
pub struct SignalSender {
    stop: mpsc::UnboundedSender<&'static str>,
    let_go: mpsc::UnboundedSender<()>,
}

impl SignalSender {
    /// Asks the run to stop; `why` names it in the log (`"TERM"`, `"INT"`).
    pub fn stop(&self, why: &'static str) {
        let _ = self.stop.send(why);
    }

    /// Asks the run to let go of its container and exit.
    pub fn let_go(&self) {
        let _ = self.let_go.send(());
    }
}

impl Signals {
    /// A pair not tied to any signal: the run stops or lets go when the sender says so.
    pub fn channel() -> (SignalSender, Signals) {
        let (stop_tx, stop) = mpsc::unbounded_channel();
        let (let_go_tx, let_go) = mpsc::unbounded_channel();
        (
            SignalSender {
                stop: stop_tx,
                let_go: let_go_tx,
            },
            Signals { stop, let_go },
        )
    }

    /// The process's own TERM, INT and HUP, handled from now on (so none of them kills
    /// the process any more): call it first thing, inside the runtime.
    pub fn install() -> std::io::Result<Signals> {
        let mut shutdown = Shutdown::new()?;
        let mut hangup = signal(SignalKind::hangup())?;
        let (sender, signals) = Signals::channel();
        let stop = sender.clone();
        tokio::spawn(async move {
            loop {
                let why = shutdown.recv().await;
                stop.stop(why);
            }
        });
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                sender.let_go();
            }
        });
        Ok(signals)
    }

    /// The next stop request, named; never, once no sender is left.
    pub async fn stopped(&mut self) -> &'static str {
        next(&mut self.stop).await
    }
}

/// The next message of `rx`; never, once no sender is left.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    match rx.recv().await {
        Some(message) => message,
        None => std::future::pending().await,
    }
}

/// How a step raced against a stop request ended.
pub(crate) enum Raced<T> {
    /// The step finished first, with this.
    Done(T),
    /// A stop request came first (named); the step was dropped.
    Stopped(&'static str),
}

/// Runs `step` until it finishes or a stop request arrives, whichever is first: the one
/// place where every wait of the run (back-off, requires, start, post_start, the
/// container's life, its stop) gives way to TERM or INT.
pub(crate) async fn race<T>(signals: &mut Signals, step: impl Future<Output = T>) -> Raced<T> {
    race_with(signals, step, false)
        .await
        .expect("only race_or_let_go lets go")
}

/// [`race`], where a request to let go also ends the wait (`None`): only while the
/// container lives is there anything to let go of.
pub(crate) async fn race_or_let_go<T>(
    signals: &mut Signals,
    step: impl Future<Output = T>,
) -> Option<Raced<T>> {
    race_with(signals, step, true).await
}

async fn race_with<T>(
    signals: &mut Signals,
    step: impl Future<Output = T>,
    let_go: bool,
) -> Option<Raced<T>> {
    tokio::select! {
        done = step => Some(Raced::Done(done)),
        why = next(&mut signals.stop) => Some(Raced::Stopped(why)),
        () = next(&mut signals.let_go), if let_go => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_finishes_unless_a_stop_comes_first() {
        let (sender, mut signals) = Signals::channel();
        assert!(matches!(
            race(&mut signals, async { 7 }).await,
            Raced::Done(7)
        ));
        sender.stop("TERM");
        let forever = std::future::pending::<()>();
        assert!(matches!(
            race(&mut signals, forever).await,
            Raced::Stopped("TERM")
        ));
        // A second request is kept for the next wait (a second TERM kills).
        sender.stop("INT");
        assert_eq!(signals.stopped().await, "INT");
        // Letting go is heard only where it is asked for, and kept until then.
        sender.let_go();
        assert!(matches!(
            race(&mut signals, async { 1 }).await,
            Raced::Done(1)
        ));
        let forever = std::future::pending::<()>();
        assert!(race_or_let_go(&mut signals, forever).await.is_none());
    }
}
