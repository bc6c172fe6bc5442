//! A service's releases as the fleet sees them, in etcd: the deploy lock that keeps two
//! changes of one service apart across hosts ([`lock`]), the module's hooks onto it
//! ([`module_lock`]), and the audit trail every host appends to and `rundock history
//! --all-hosts` reads ([`trail`]).
//!
//! Everything here is blocking (the module calls it between synchronous steps); each
//! call runs its own small runtime and bounds every etcd request.

#![warn(missing_docs)]

pub mod lock;
pub mod module_lock;
pub mod trail;
