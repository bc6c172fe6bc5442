#!/bin/sh
# rundock watch figures against a real nginx (Debian nginx-light, on loopback): medians
# over RUNDOCK_BENCH_ROUNDS rounds (default 10) of
#   - a hand-written file + `nginx -s reload` until nginx serves it (the floor),
#   - an etcd put / delete until nginx serves the config with / without the instance,
#   - a `docker kill` of a backend until nginx is no longer configured with it.
# "Serves" is read from nginx itself: the template renders the instance list into a map
# that nginx answers at /_instances, so the figure includes the reload.
# Needs what the tests need: etcd, dockerd, runit, busybox-static, nginx-light.
set -eu
cd "$(dirname "$0")/.."
exec cargo test -p rundock --test e2e -- \
    --ignored --exact watch_nginx::bench_watch --nocapture --test-threads=1
