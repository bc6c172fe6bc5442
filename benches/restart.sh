#!/usr/bin/env bash
# Restart latency of a supervised container against Docker's own restart policy.
#
# rundock: the module (an args file run by the rundock binary, as Ansible runs it)
# installs a service tree for a busybox httpd container into temp dirs, and a runsvdir
# over the temp service dir runs it (tests/lib.sh starts it as the testkit does); the
# container is killed ROUNDS times with `docker kill` and ROUNDS times with `kill -9` of
# its process, and each time we take the new container's State.StartedAt minus the
# moment of the kill (Docker's own timestamp, so polling adds no error). Between kills the
# container runs STABLE seconds, longer than both back-offs' reset time (10 s), so every
# kill is a first failure. Docker: the same container under `--restart=always`, same
# kills (a `docker kill` is a manual stop for Docker and is not restarted).
# Prints medians and the supervisor's RSS. RUNDOCK_BIN may name a `rundock` binary; by
# default the release build is made (the module installs it as the tree's runner).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. tests/lib.sh
rounds=${ROUNDS:-10}
stable=${STABLE:-11}
image=${IMAGE:-rundock-test/busybox:latest}

if [ -n "${RUNDOCK_BIN:-}" ]; then
  bin=$RUNDOCK_BIN
else
  cargo build -q --release --bin rundock
  bin=$root/target/release/rundock
fi

ensure_test_image "$image"

work=$(mktemp -d)
name=rundock-bench-$$
dname=rundock-bench-docker-$$
runsvdir_pid=
# module STATE: runs the module on the bench service, as Ansible would (args file).
module() {
  cat >"$work/args.json" <<JSON
{"state": "$1", "name": "$name", "container_name": "$name", "image": "$image", "pull": "never",
 "command": ["httpd", "-f", "-p", "8080"], "stop_timeout": 5, "wait": $([ "$1" = enabled ] && echo true || echo false),
 "sv_dir": "$work/sv", "service_dir": "$work/service", "log_dir": "$work/log", "install_dir": "$work/install",
 "_ansible_check_mode": false, "_ansible_diff": false}
JSON
  "$bin" "$work/args.json" >"$work/module.out" || { cat "$work/module.out" >&2; return 1; }
}
cleanup() {
  if [ -n "$runsvdir_pid" ]; then
    module absent || true
    stop_runsvdir "$work/service" "$runsvdir_pid"
  fi
  docker rm -f "$name" "$dname" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
started_ns() { date -d "$(docker inspect -f '{{.State.StartedAt}}' "$1")" +%s%N; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# Waits until $1 runs with a StartedAt other than $2; prints the new StartedAt (ns).
wait_restart() {
  local deadline=$(( $(date +%s) + ${3:-60} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if running "$1"; then
      local s; s=$(started_ns "$1")
      if [ "$s" != "$2" ]; then echo "$s"; return 0; fi
    fi
    sleep 0.02
  done
  return 1
}

# measure NAME KILL_MODE: prints ROUNDS latencies in ms, one a line.
measure() {
  local c=$1 mode=$2 before t0 after
  for _ in $(seq 1 "$rounds"); do
    wait_restart "$c" none >/dev/null
    sleep "$stable"
    before=$(started_ns "$c")
    t0=$(now_ns)
    case $mode in
      docker-kill) docker kill "$c" >/dev/null ;;
      kill-9) kill -9 "$(docker inspect -f '{{.State.Pid}}' "$c")" ;;
    esac
    if after=$(wait_restart "$c" "$before" 20); then
      echo $(( (after - t0) / 1000000 ))
    else
      echo never
      return 0
    fi
  done
}

median() {
  local values; values=$(grep -v never | sort -n)
  local n; n=$(printf '%s\n' "$values" | grep -c . || true)
  if [ "$n" -eq 0 ]; then echo "no restart"; return; fi
  printf '%s ms (min %s, max %s, n=%s)' "$(printf '%s\n' "$values" | sed -n "$(( (n + 1) / 2 ))p")" \
    "$(printf '%s\n' "$values" | head -1)" "$(printf '%s\n' "$values" | tail -1)" "$n"
}

# --- rundock under runsv ---------------------------------------------------------------
mkdir -p "$work"/{sv,service,log,install}
start_runsvdir "$work/service" "$work/runsvdir.log"
module enabled
svc=$work/sv/docker-$name/services/container
runner=$(ls "$work"/install/*/rundock)

wait_restart "$name" none >/dev/null || { echo "supervised container never ran" >&2; cat "$work/runsvdir.log" >&2; exit 1; }
sup_pid=$(cat "$svc/supervise/pid")
rss=$(awk '/VmRSS/ {print $2, $3}' "/proc/$sup_pid/status")
hwm=$(awk '/VmHWM/ {print $2, $3}' "/proc/$sup_pid/status")

rd_kill=$(measure "$name" docker-kill)
rd_k9=$(measure "$name" kill-9)
sup_pid=$(cat "$svc/supervise/pid")
rss_after=$(awk '/VmRSS/ {print $2, $3}' "/proc/$sup_pid/status")

# --- Docker --restart=always -------------------------------------------------------------
docker run -d --restart=always --name "$dname" "$image" httpd -f -p 8080 >/dev/null
dk_k9=$(measure "$dname" kill-9)
dk_kill=$(ROUNDS=1 rounds=1 measure "$dname" docker-kill)

echo "rounds: $rounds, container up ${stable}s between kills"
echo "supervisor binary: $bin, installed as $runner ($(stat -c %s "$runner") bytes)"
echo "supervisor RSS: $rss (peak $hwm) while supervising; $rss_after after $((2 * rounds)) restarts"
echo "rundock under runsv, docker kill -> running: $(median <<<"$rd_kill")"
echo "rundock under runsv, kill -9 pid -> running: $(median <<<"$rd_k9")"
echo "docker --restart=always, kill -9 pid -> running: $(median <<<"$dk_k9")"
echo "docker --restart=always, docker kill -> running: $(median <<<"$dk_kill")"
echo "raw ms: rundock docker-kill [$(echo $rd_kill)] kill-9 [$(echo $rd_k9)]; docker kill-9 [$(echo $dk_k9)]"
