#!/bin/sh
# HAProxy following rundock's records: three instances of a service deployed with the
# module under runit; HAProxy 2.6 finds them through `server-template ... resolvers`
# asking `rundock dns` for `_http._tcp.NAME.DOMAIN` SRV (`timeout resolve 1s`). Ten
# rounds of `docker kill` of one instance while a request goes through HAProxy every
# 50 ms; prints the median time from the kill to HAProxy no longer listing the
# instance among its servers (or that it was back before HAProxy asked again), the time
# until it serves again, and the failed requests.
#
#   benches/dns-haproxy.sh        (needs what tests/setup installs, haproxy included; root)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo nextest run -p rundock --test e2e --run-ignored only --no-capture \
    -E 'test(haproxy_removal_time)' 2>&1 | grep -E '^(kill|HAProxy)'
