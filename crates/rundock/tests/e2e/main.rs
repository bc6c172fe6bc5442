//! The end-to-end tests of the `rundock` binary on real parts (Docker, runit, etcd,
//! Ansible, nginx, HAProxy), linked into one test binary: each file below is one
//! concern, and they share the host set-up in `common`. One binary instead of one per
//! file, because each links the whole workspace and linking dominated the build.

mod common;

mod announce_range;
mod collection;
mod deploy_lock;
mod docker_log;
mod drain_idle;
mod end_to_end;
mod first_render;
mod haproxy;
mod hooks;
mod info;
mod metrics;
mod module_args;
mod module_faults;
mod module_modes;
mod module_states;
mod releases;
mod replace;
mod requires;
mod revisions;
mod rollout;
mod ssh;
mod start_first;
mod status;
mod task_truth;
mod watch_nginx;
mod watch_preflight;
mod writeup;
