//! The rundock service spec and everything that is a pure function of it.
//!
//! Data flows one way: module parameters (parsed by `rundock-module`) → a validated
//! [`Spec`] → [`tree::render`] (the files of the runit service tree) and
//! [`skydns`] (the etcd key and record the announcer writes). Nothing here talks to
//! Docker, etcd or runit; the only I/O is reading and writing `spec.json` and the state
//! files ([`state`]), and creating directories with modes that ignore the umask
//! ([`files`]).

#![warn(missing_docs)]

/// `From<T> for String` and `TryFrom<String> for T` through `Display` and `FromStr`, so a
/// parsed value is stored in spec.json as the text it reads from (serde's `into` and
/// `try_from`), and reading spec.json parses it again with the one parser.
macro_rules! text_serde {
    ($t:ty, $err:ty) => {
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.to_string()
            }
        }

        impl TryFrom<String> for $t {
            type Error = $err;

            fn try_from(text: String) -> Result<Self, $err> {
                text.parse()
            }
        }
    };
}

pub mod address;
pub mod dockerargs;
pub mod dockerlog;
pub mod endpoint;
pub mod error;
pub mod files;
pub mod hooks;
pub mod image;
pub mod revisions;
pub mod skydns;
pub mod spec;
pub mod state;
pub mod text;
pub mod trail;
pub mod tree;
pub mod validate;
pub mod watch;

pub use address::{AnnounceAs, Family, HostIp, InterfaceChoice};
pub use endpoint::EtcdEndpoint;
pub use error::SpecError;
pub use hooks::{Hook, Hooks, OnTimeout, Requires};
pub use image::ImageRef;
pub use spec::*;
