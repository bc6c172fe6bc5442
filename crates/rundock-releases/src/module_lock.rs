//! The module's deploy lock hooks ([`rundock_module::Hooks::take_etcd_lock`] and
//! [`rundock_module::Hooks::release_play_lock`]) carried out on [`crate::lock`]: the
//! key of an announced spec, its three modes (one call, a whole playbook, a call under
//! a playbook's lock) and the module's error type.

use crate::lock::{self, AcquireError, EtcdLock, Joined, LOCK_TTL, PLAY_LOCK_TTL};
use rundock_module::lock::{EtcdHeld, EtcdLockError, EtcdLockMode};
use rundock_spec::Spec;
use std::time::Duration;

/// The lock key of an announced spec; `None` without `announce`.
pub fn key_of(spec: &Spec) -> Option<String> {
    let announce = spec.announce.as_ref()?;
    Some(lock::lock_key(&announce.domain, &spec.name))
}

fn from_acquire(e: AcquireError) -> EtcdLockError {
    match e {
        AcquireError::Timeout {
            key,
            holder,
            timeout,
        } => EtcdLockError::Timeout {
            key,
            holder,
            timeout,
        },
        e @ AcquireError::Etcd { .. } => EtcdLockError::Etcd(e.to_string()),
    }
}

/// Takes (or, with a token, joins) the deploy lock of `spec` in etcd.
pub fn take(
    spec: &Spec,
    record: &str,
    timeout: Duration,
    mode: EtcdLockMode<'_>,
) -> Result<Option<EtcdHeld>, EtcdLockError> {
    let (Some(announce), Some(key)) = (&spec.announce, key_of(spec)) else {
        return Ok(None);
    };
    let etcd = &announce.etcd;
    let held = match mode {
        EtcdLockMode::Call => {
            lock::acquire_with_ttl(etcd, &key, record, timeout, LOCK_TTL).map_err(from_acquire)?
        }
        EtcdLockMode::Play => {
            let held = lock::acquire_with_ttl(etcd, &key, record, timeout, PLAY_LOCK_TTL)
                .map_err(from_acquire)?;
            return Ok(Some(reported(held, false)));
        }
        EtcdLockMode::Join(token) => {
            match lock::join(etcd, &key, token, PLAY_LOCK_TTL).map_err(from_acquire)? {
                Joined::Held(held) => held,
                Joined::Gone => return Err(EtcdLockError::NotJoined { key, holder: None }),
                Joined::Other(holder) => {
                    return Err(EtcdLockError::NotJoined {
                        key,
                        holder: Some(holder),
                    })
                }
            }
        }
    };
    Ok(Some(reported(held, true)))
}

/// `held` as the module reports it. The call keeps the lock (`guard`) while
/// `held_by_call`; otherwise it is the playbook's and stays in etcd past this call.
fn reported(held: EtcdLock, held_by_call: bool) -> EtcdHeld {
    let (key, ttl) = (held.key.clone(), held.ttl);
    let waited = held.waited.clone().map(|w| (w.seconds, w.holder));
    let guard: Box<dyn std::any::Any> = if held_by_call {
        Box::new(held)
    } else {
        held.detach();
        Box::new(())
    };
    EtcdHeld {
        key,
        ttl,
        waited,
        guard,
    }
}

/// Lets the playbook's lock of `spec` go if it carries `token`.
pub fn release(spec: &Spec, token: &str) -> Result<bool, String> {
    let (Some(announce), Some(key)) = (&spec.announce, key_of(spec)) else {
        return Ok(false);
    };
    lock::release(&announce.etcd, &key, token).map_err(|e| e.to_string())
}
