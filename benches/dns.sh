#!/usr/bin/env bash
# Benchmark of `rundock dns`: queries per second from a second process (dnsperf) on
# loopback, and the responder's resident memory with 1,000 records loaded.
#
#   benches/dns.sh [SECONDS]      (needs etcd, etcdctl, dig, dnsperf, python3, curl)
#
# It builds the responder in release mode, starts a private etcd on free ports, writes
# 1,000 records (100 services x 10 instances), and runs dnsperf with a query mix of one
# instance (A), all instances of a service (A, 10 answers), SRV (10 answers + 10
# additional), TXT, and NXDOMAIN.
set -eu

DURATION=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
. "$ROOT/tests/lib.sh"
WORK=$(mktemp -d)
ETCD_PID=
DNS_PID=
cleanup() {
    [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
    [ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for tool in etcd etcdctl dig dnsperf; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install etcd-server etcd-client bind9-dnsutils dnsperf)" >&2; exit 1; }
done

echo "building the responder (release)..." >&2
(cd "$ROOT" && cargo build --quiet --release -p rundock-dns --example dns-server)
BIN="$ROOT/target/release/examples/dns-server"

CPORT=$(free_port); PPORT=$(free_port); DPORT=$(free_port)
ENDPOINT=http://127.0.0.1:$CPORT
start_etcd bench "$WORK/etcd" "$CPORT" "$PPORT" "$WORK/etcd.log"
ETCD_PID=$etcd_pid

echo "writing 1000 records..." >&2
# Ten transactions of 100 puts through the v3 JSON gateway, not 1000 processes.
python3 - "$ENDPOINT" <<'PY'
import base64, json, sys, urllib.request
endpoint = sys.argv[1]
b64 = lambda s: base64.b64encode(s.encode()).decode()
for batch in range(10):
    ops = []
    for s in range(batch * 10, batch * 10 + 10):
        for n in range(10):
            value = {"host": f"10.0.{s}.{n + 1}", "port": 8080, "ttl": 60, "text": f"svc{s} node {n}"}
            ops.append({"requestPut": {"key": b64(f"/skydns/test/bench/svc{s}/node-{n}"),
                                       "value": b64(json.dumps(value))}})
    req = urllib.request.Request(endpoint + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
COUNT=$(ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINT" get --prefix /skydns --keys-only | grep -c '^/skydns')
echo "records in etcd: $COUNT" >&2

"$BIN" --etcd "$ENDPOINT" --domain bench.test --listen "127.0.0.1:$DPORT" 2>"$WORK/dns.log" &
DNS_PID=$!
i=0
until [ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$DPORT" node-9.svc99.bench.test A)" = "10.0.99.10" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "responder did not answer" >&2; cat "$WORK/dns.log" >&2; exit 1; }
    sleep 0.1
done
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$DNS_PID/status"; }
RSS_IDLE=$(rss)

s=0
: >"$WORK/queries"
while [ $s -lt 100 ]; do
    {
        echo "node-$((s % 10)).svc$s.bench.test A"
        echo "svc$s.bench.test A"
        echo "svc$s.bench.test SRV"
        echo "node-1.svc$s.bench.test TXT"
        echo "missing$s.bench.test A"
    } >>"$WORK/queries"
    s=$((s + 1))
done

echo "dnsperf for ${DURATION}s..." >&2
dnsperf -s 127.0.0.1 -p "$DPORT" -d "$WORK/queries" -l "$DURATION" -c 4 -q 200 >"$WORK/perf" 2>&1 || true
RSS_LOAD=$(rss)
grep -E "Queries sent|Queries completed|Queries lost|Response codes|Queries per second|Average Latency|Latency StdDev" "$WORK/perf" || cat "$WORK/perf"

# One-instance queries only (the common case for clients of one service).
grep ' A$' "$WORK/queries" | grep '^node-' >"$WORK/queries-one"
dnsperf -s 127.0.0.1 -p "$DPORT" -d "$WORK/queries-one" -l "$DURATION" -c 4 -q 200 >"$WORK/perf-one" 2>&1 || true
echo "one-instance A only:"
grep -E "Queries per second|Average Latency" "$WORK/perf-one" || cat "$WORK/perf-one"

echo "responder RSS with $COUNT records: $RSS_IDLE idle, $RSS_LOAD after load"
