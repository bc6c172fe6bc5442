#!/usr/bin/env bash
# Cost of one `rundock metrics` scrape on a host with 50 services: scrape time (median
# of 20, as curl sees it) and size, side by side with the Docker inspects a scrape makes
# (one `docker inspect` of all 50 containers) as the baseline.
#
#   benches/metrics.sh [BIN]      (needs docker, curl, python3; default: the release build)
#
# The 50 trees are installed by the module (state=present, so runit does not start
# them); each gets a running container of its own name (busybox sleeping), the state
# files a supervisor and a healthy announcer with one check would have written, and a
# runsv on its announce dir running `sleep` in place of the announcer (a status reads
# the announcer's file only while its runsv reports it running).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ $# -ge 1 ]; then
  bin=$1
else
  cargo build -q --release --bin rundock
  bin=target/release/rundock
fi
image=rundock-test/busybox:latest
docker image inspect "$image" >/dev/null 2>&1 || { echo "missing $image (run the tests once)" >&2; exit 1; }
work=$(mktemp -d)
prefix=bench-metrics-$$
pid=
runsvs=()
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for d in "$work"/sv/*/services/announce; do sv exit "$d" >/dev/null 2>&1 || true; done
  for p in "${runsvs[@]}"; do wait "$p" 2>/dev/null || true; done
  docker rm -f $(docker ps -aq --filter "name=^$prefix-") >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work"/{sv,service,log,install}
names=()
for i in $(seq 1 50); do
  name=$prefix-$i
  names+=("$name")
  cat >"$work/args.json" <<JSON
{"state": "present", "name": "$name", "image": "$image", "announce": 8080, "port": 8080,
 "announce_as": "127.0.0.0/8", "etcd": "http://127.0.0.1:9", "health": ["http:8080/"],
 "sv_dir": "$work/sv", "service_dir": "$work/service", "log_dir": "$work/log", "install_dir": "$work/install",
 "_ansible_check_mode": false, "_ansible_diff": false}
JSON
  "$bin" "$work/args.json" >/dev/null
  tree=$work/sv/docker-$name
  mkdir -p "$tree/services/container" "$tree/services/announce"
  echo '{"failures":0,"exits":2,"last_exit_code":137,"last_exit_at":1795370000,"backoff_secs":0.0,"backoff_until":null,"waiting_for":[]}' \
    >"$tree/services/container/rundock-backoff.json"
  echo '{"published":"{\"host\":\"127.0.0.1\",\"port\":8080,\"ttl\":5}","withdrawn_because":null,"maintenance":false,"checks":[{"check":"http :8080/","pass":true,"error":null,"latency_secs":0.0021}],"last_refresh_at":1795370000,"etcd_error":null,"etcd_errors":0,"started_at":1795360000}' \
    >"$tree/services/announce/rundock-announce.json"
  printf '#!/bin/sh\nexec sleep 3600\n' >"$tree/services/announce/run"
  rm -rf "$tree/services/announce/log"
  runsv "$tree/services/announce" >/dev/null 2>&1 &
  runsvs+=($!)
  docker run -d --name "$name" "$image" sleep 3600 >/dev/null
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" metrics --listen "127.0.0.1:$port" --sv-dir "$work/sv" 2>/dev/null &
pid=$!
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break; sleep 0.1; done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
scrape=$(for _ in $(seq 1 20); do
  curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"
done | median)
size=$(curl -sf "http://127.0.0.1:$port/metrics" | wc -c)
series=$(curl -sf "http://127.0.0.1:$port/metrics" | grep -vc '^#')
inspect=$(for _ in $(seq 1 5); do
  start=$(date +%s%N); docker inspect "${names[@]}" >/dev/null; end=$(date +%s%N)
  echo "$(( (end - start) / 1000 ))"
done | median)
printf 'rundock metrics, 50 services: scrape median %.1f ms (20 scrapes), %s bytes, %s series\n' \
  "$(awk -v s="$scrape" 'BEGIN { print s * 1000 }')" "$size" "$series"
printf 'baseline: docker inspect of the same 50 containers (one CLI call): median %.1f ms (5 runs)\n' \
  "$(awk -v i="$inspect" 'BEGIN { print i / 1000 }')"
