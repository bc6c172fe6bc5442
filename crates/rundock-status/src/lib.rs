//! `rundock status` and `rundock metrics`: what every rundock service on a host is
//! doing, for people (a table like `docker ps`), for programs (stable JSON, also the
//! module's `service.status`) and for Prometheus; `rundock history` (the kept
//! revisions) and `rundock logs` (svlogd's files) read the rest of a service's past.
//!
//! Why a crate of its own: it reads what the others write (runsv's `supervise/`, the
//! supervisor's and the announcer's state files, Docker, etcd) and writes nothing, so
//! it depends on all of them and none depends on it. The decisions are pure functions
//! of plain facts ([`model::assemble`]); [`collect`] is the thin edge that reads them.

#![warn(missing_docs)]

pub mod collect;
pub mod history;
pub mod info;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod rollout;
pub mod runit;
pub mod serve;
pub mod table;

pub use collect::{status_of, statuses, trees};
pub use model::ServiceStatus;
