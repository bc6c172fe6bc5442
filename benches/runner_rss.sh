#!/usr/bin/env bash
# Memory of the processes a service tree runs (supervise, announce), side by side for
# the debug and the release build of the runner: the module (an args file run by each
# binary) installs one announced, health-checked busybox httpd service into temp dirs,
# a runsvdir and an etcd on loopback run it (tests/lib.sh), and after SETTLE seconds
# (default 20) each process's VmRSS and VmHWM are printed. Needs what the tests need.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. tests/lib.sh
settle=${SETTLE:-20}
image=${IMAGE:-rundock-test/busybox:latest}
cargo build -q --bin rundock
cargo build -q --release --bin rundock

ensure_test_image "$image"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
name=rundock-rss-$$
runsvdir_pid= etcd_pid=
cleanup() {
  [ -n "$runsvdir_pid" ] && stop_runsvdir "$work/service" "$runsvdir_pid"
  [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
client=$(free_port) peer=$(free_port) http=$(free_port)
start_etcd rss "$work/etcd" "$client" "$peer" "$work/etcd.log"
start_runsvdir "$work/service" /dev/null

# module BINARY STATE: the module on the service, as Ansible runs it (args file).
module() {
  cat >"$work/args.json" <<JSON
{"state": "$2", "name": "$name", "container_name": "$name", "image": "$image", "pull": "never",
 "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
 "ports": ["127.0.0.1:$http:8080"], "stop_timeout": 2, "announce": $http, "port": 8080, "announce_as": "127.0.0.0/8", "etcd": "http://127.0.0.1:$client",
 "health": "http:$http/", "wait": $([ "$2" = enabled ] && echo true || echo false),
 "sv_dir": "$work/sv", "service_dir": "$work/service", "log_dir": "$work/log", "install_dir": "$work/install-$3",
 "_ansible_check_mode": false, "_ansible_diff": false}
JSON
  "$1" "$work/args.json" >"$work/module.out" || { cat "$work/module.out" >&2; return 1; }
}

mkdir -p "$work"/{sv,service,log}
echo "after ${settle}s of an announced, health-checked service (VmRSS, peak VmHWM):"
for profile in debug release; do
  bin=target/$profile/rundock
  module "$bin" enabled "$profile"
  sleep "$settle"
  line="$profile runner ($(stat -c %s "$bin") bytes):"
  for service in container announce; do
    pid=$(cat "$work/sv/docker-$name/services/$service/supervise/pid")
    line+=" $service $(awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {print r " kB (peak " h " kB)"}' "/proc/$pid/status");"
  done
  echo "$line"
  module "$bin" absent "$profile"
done
