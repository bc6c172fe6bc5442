//! The rundock service spec and everything that is a pure function of it.
//!
//! Data flows one way: module parameters (parsed by `rundock-module`) → a validated
//! [`Spec`] → [`tree::render`] (the files of the runit service tree) and
//! [`skydns`] (the etcd key and record the announcer writes). Nothing here talks to
//! Docker, etcd or runit; the only I/O callers do is reading and writing `spec.json`.

pub mod address;
pub mod dockerargs;
pub mod endpoint;
pub mod error;
pub mod image;
pub mod skydns;
pub mod spec;
pub mod tree;
pub mod validate;
pub mod watch;

pub use address::{AnnounceAs, Family, HostIp, InterfaceChoice};
pub use endpoint::EtcdEndpoint;
pub use error::SpecError;
pub use image::ImageRef;
pub use spec::*;
