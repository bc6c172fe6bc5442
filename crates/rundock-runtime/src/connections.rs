//! The connections a server holds open, capped: at the cap a new connection takes the
//! place of the oldest one that is idle (waiting for its next request, so closing it
//! loses nothing), and when none is idle it is refused. `rundock dns` (TCP) and
//! `rundock metrics` (HTTP) bound what idle clients can make them hold with it.
//!
//! Single-threaded use by design (the servers run on a current-thread runtime); the lock
//! is only there to share the table between the accept loop and the connection tasks,
//! and it is never held across an await.
//!
//! [`listen`] opens the listener both servers accept from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How many connections the kernel queues before the server accepts them. std's
/// default is 128: when the queue is full, a client's connection attempt is dropped and
/// retried only a second later, so a burst of clients would each lose a second.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A TCP listener on `addr` with room for a burst of connections ([`LISTEN_BACKLOG`]).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The open connections, and which of them are idle.
#[derive(Clone)]
pub struct Connections(Arc<Mutex<Table>>);

struct Table {
    max: usize,
    open: usize,
    next_id: u64,
    /// Idle connections, oldest first, each with the signal that closes it.
    idle: BTreeMap<u64, Arc<Notify>>,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    id: u64,
    evict: Arc<Notify>,
    table: Connections,
}

impl Connections {
    /// A table for at most `max` connections.
    pub fn new(max: usize) -> Connections {
        Connections(Arc::new(Mutex::new(Table {
            max,
            open: 0,
            next_id: 0,
            idle: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection: a free one, or the oldest idle connection's, which
    /// is told to close. `None` when every connection is busy.
    pub fn admit(&self) -> Option<Slot> {
        let mut table = self.lock();
        if table.open >= table.max {
            let (_, evict) = table.idle.pop_first()?;
            evict.notify_one();
        }
        table.open += 1;
        table.next_id += 1;
        Some(Slot {
            id: table.next_id,
            evict: Arc::new(Notify::new()),
            table: self.clone(),
        })
    }

    /// Whether the next connection will have to take another's place.
    pub fn full(&self) -> bool {
        let table = self.lock();
        table.open >= table.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

impl Slot {
    /// Marks the connection idle; the returned signal fires when it is to make room.
    pub fn idle(&self) -> Arc<Notify> {
        self.table.lock().idle.insert(self.id, self.evict.clone());
        self.evict.clone()
    }

    /// Marks the connection busy (a request is being answered): it stays.
    pub fn busy(&self) {
        self.table.lock().idle.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        table.idle.remove(&self.id);
        table.open -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let table = Connections::new(2);
        let first = table.admit().unwrap();
        let second = table.admit().unwrap();
        first.busy();
        second.busy();
        assert!(table.full());
        assert!(table.admit().is_none(), "both busy: no room");
        let first_evicted = first.idle();
        let second_evicted = second.idle();
        let third = table.admit().expect("room made by the oldest idle");
        let runtime = crate::current_thread().unwrap();
        runtime.block_on(async {
            // The oldest idle was told to go (the permit is stored), the other was not.
            tokio::time::timeout(Duration::from_secs(1), first_evicted.notified())
                .await
                .expect("first evicted");
            assert!(
                tokio::time::timeout(Duration::from_millis(50), second_evicted.notified())
                    .await
                    .is_err(),
                "second kept"
            );
        });
        drop(first);
        assert_eq!(table.open(), 2);
        third.busy();
        second.busy();
        assert!(table.admit().is_none(), "every one busy: no room");
        drop((second, third));
        assert_eq!(table.open(), 0);
        assert!(table.lock().idle.is_empty());
    }
}
