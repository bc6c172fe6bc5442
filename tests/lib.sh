# Sourced by the scripts (demo/run, benches/*.sh): how they start and stop the parts
# rundock runs against, spelled once. rundock-testkit starts the same parts from Rust
# (Etcd, Runsvdir); its test `scripts_start_the_parts_like_the_testkit` runs the
# *_args functions below and compares them word for word with its own command lines.
# Needs bash (arrays, mapfile), curl and runit's sv.

# ensure_test_image IMAGE: builds a busybox image (FROM scratch + Debian's busybox-static,
# as the testkit's test image) unless the local dockerd has IMAGE already.
ensure_test_image() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  local ctx
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
  docker build -q -t "$1" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# etcd_args NAME DATA_DIR CLIENT_PORT PEER_PORT: a single-member etcd on loopback with
# the v2 API on (the announcer's legacy path), one word a line.
etcd_args() {
  local name=$1 data=$2 client=http://127.0.0.1:$3 peer=http://127.0.0.1:$4
  printf '%s\n' etcd --name "$name" --data-dir "$data" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$name=$peer" --enable-v2=true --log-level error
}

# start_etcd NAME DATA_DIR CLIENT_PORT PEER_PORT LOG: starts etcd in the background and
# waits until it answers /health; its pid is in $etcd_pid.
start_etcd() {
  local args
  mapfile -t args < <(etcd_args "$1" "$2" "$3" "$4")
  nohup "${args[@]}" >"$5" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 1 100); do
    curl -sf -m 1 "http://127.0.0.1:$3/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "etcd did not answer on 127.0.0.1:$3; see $5" >&2
  return 1
}

# runsvdir_args SERVICE_DIR: runit's runsvdir over a service dir, one word a line.
runsvdir_args() {
  printf '%s\n' runsvdir -P "$1"
}

# start_runsvdir SERVICE_DIR LOG: starts runsvdir in the background; its pid is in
# $runsvdir_pid.
start_runsvdir() {
  local args
  mkdir -p "$1"
  mapfile -t args < <(runsvdir_args "$1")
  nohup "${args[@]}" >"$2" 2>&1 &
  runsvdir_pid=$!
}

# stop_runsvdir SERVICE_DIR PID: as the testkit's Runsvdir drop: stop every service
# (sv force-stop runs a tree's control/t, record first), tell each runsv to exit, then
# HUP runsvdir, so nothing is orphaned.
stop_runsvdir() {
  local service
  for service in "$1"/*; do
    [ -e "$service" ] || continue
    sv -w 90 force-stop "$service" >/dev/null 2>&1 || true
    sv exit "$service" >/dev/null 2>&1 || true
  done
  kill -HUP "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
}
