#!/bin/sh
# Announcer figures: container death -> record gone (median, p99 over RUNDOCK_BENCH_KILLS
# kills, default 50), the announcer's RSS, and etcd requests per minute at rest
# (ttl 60 s, interval 45 s; window RUNDOCK_BENCH_REST_SECS, default 90).
# Needs what the tests need: etcd, a running dockerd, busybox-static.
set -eu
cd "$(dirname "$0")/.."
exec cargo test --release -p rundock-announcer --test announce -- \
    --ignored --exact bench_withdraw --nocapture --test-threads=1
