#!/usr/bin/env bash
# Module size and the cost of a no-op module run: builds the release binary, installs a
# service tree once, then times 20 identical runs (process wall time, as Ansible pays it)
# and prints the median. Also times the same run through ansible ad hoc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q --release --bin rundock
bin=target/release/rundock
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{sv,service,log,install}
args="$work/args.json"
cat >"$args" <<JSON
{"state": "present", "name": "bench", "image": "registry:5000/influxdb:latest",
 "args": "--volumes-from data.influxdb -p \$PRIVATE_IP:8083:8083", "announce": "8086", "port": "8086",
 "sv_dir": "$work/sv", "service_dir": "$work/service", "log_dir": "$work/log", "install_dir": "$work/install",
 "_ansible_check_mode": false, "_ansible_diff": false}
JSON
"$bin" "$args" >/dev/null
printf 'binary size: %s bytes (%s)\n' "$(stat -c %s "$bin")" "$(du -h "$bin" | cut -f1)"
times=()
for _ in $(seq 1 20); do
  start=$(date +%s%N)
  out=$("$bin" "$args")
  end=$(date +%s%N)
  grep -q '"changed":false' <<<"$out" || { echo "not a no-op: $out" >&2; exit 1; }
  times+=($(( (end - start) / 1000 )))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
printf 'no-op module run: median %s us, min %s us, max %s us (20 runs)\n' "${sorted[10]}" "${sorted[0]}" "${sorted[19]}"
if [ -x .venv/bin/ansible ]; then
  lib=$(mktemp -d); cp "$bin" "$lib/rundock"; cp ansible/library/rundock.yml "$lib/"
  kv="state=present name=bench image=registry:5000/influxdb:latest announce=8086 port=8086 sv_dir=$work/sv service_dir=$work/service log_dir=$work/log install_dir=$work/install"
  start=$(date +%s%N)
  for _ in $(seq 1 5); do
    ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 .venv/bin/ansible localhost -c local -i localhost, -M "$lib" -m rundock -a "$kv" >/dev/null
  done
  end=$(date +%s%N)
  printf 'ansible ad hoc no-op task (whole ansible process): mean %s ms (5 runs)\n' $(( (end - start) / 5000000 ))
  rm -rf "$lib"
fi
