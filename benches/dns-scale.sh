#!/bin/sh
# `rundock dns` at scale: 10,000 and 50,000 records, each on its own etcd lease, as the
# announcer writes them. For each size it prints
#   * start: time from starting the responder to its first correct answer, and how many
#     SERVFAIL answers it gave before (queries every 5 ms) and in the 2 s after;
#   * RSS after the initial list, and RSS when the same records arrived through the
#     watch instead (started on an empty etcd), for comparison;
#   * qps from dnsperf (-c 4, one-instance A queries over all records);
#   * put -> answer p50/p99: a probe record put (new lease + put) every 100 ms, polled
#     every millisecond until it answers, while 20,000 leased puts per minute overwrite
#     existing records (a new lease each, as the announcer re-announces).
#
#   benches/dns-scale.sh [SIZES...]          (default: 10000 50000)
#   DNS_BIN=path/to/dns-server benches/dns-scale.sh    measure another build (a baseline)
#
# Needs etcd, dnsperf, python3, curl. Builds the responder in release mode unless
# DNS_BIN is given. Numbers only; nothing is asserted.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${*:-10000 50000}

for tool in etcd dnsperf python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install etcd-server dnsperf python3 curl)" >&2; exit 1; }
done

if [ -z "${DNS_BIN:-}" ]; then
    echo "building the responder (release)..." >&2
    (cd "$ROOT" && cargo build --quiet --release -p rundock-dns --example dns-server)
    DNS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/dns-server"
fi

exec python3 - "$DNS_BIN" $SIZES <<'PY'
import base64, http.client, json, os, random, shutil, socket, struct, subprocess
import sys, tempfile, threading, time

BIN, SIZES = sys.argv[1], [int(s) for s in sys.argv[2:]]
DOMAIN = "bench.test"
LEASE_TTL = 600  # longer than the run: no keep-alives needed

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def b64(s):
    return base64.b64encode(s.encode()).decode()

class Gateway:
    """One persistent HTTP connection to etcd's v3 JSON gateway."""
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port)
    def call(self, path, body):
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse(); data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data[:200]}")
        return json.loads(data)
    def grant(self):
        return self.call("/v3/lease/grant", {"TTL": LEASE_TTL})["ID"]
    def put(self, key, value, lease):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value), "lease": lease})

def key(i):
    return f"/skydns/test/bench/svc{i // 10}/node-{i % 10}"

def name(i):
    return f"node-{i % 10}.svc{i // 10}.{DOMAIN}"

def ip(i, gen=0):
    return f"10.{gen % 200}.{(i >> 8) & 255}.{i & 255}"

def value(i, gen=0):
    return json.dumps({"host": ip(i, gen), "port": 8080, "ttl": 60})

def write_records(port, n, threads=4):
    def work(lo, hi):
        g = Gateway(port)
        for i in range(lo, hi):
            g.put(key(i), value(i), g.grant())
    step = (n + threads - 1) // threads
    ts = [threading.Thread(target=work, args=(t * step, min(n, (t + 1) * step))) for t in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]

def query(name, qid):
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)

def ask(sock, port, name, qid=1):
    """(rcode, last A address or None), or (None, None) on timeout."""
    sock.sendto(query(name, qid), ("127.0.0.1", port))
    try:
        data, _ = sock.recvfrom(4096)
    except socket.timeout:
        return None, None
    rcode = data[3] & 15
    ancount = struct.unpack(">H", data[6:8])[0]
    addr = socket.inet_ntoa(data[-4:]) if ancount else None
    return rcode, addr

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

class Etcd:
    def __init__(self, work):
        self.port, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{self.port}"
        self.p = subprocess.Popen(["etcd", "--name", "bench", "--data-dir", f"{work}/etcd",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--log-level", "error",
            "--quota-backend-bytes", str(4 << 30)],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/etcd.log", "w"))
        for _ in range(200):
            try:
                Gateway(self.port).call("/v3/kv/range", {"key": b64("x")}); return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("etcd did not start")
    def stop(self):
        self.p.terminate(); self.p.wait()

class Dns:
    def __init__(self, etcd_port, work):
        self.port = free_port()
        self.started = time.monotonic()
        self.p = subprocess.Popen([BIN, "--etcd", f"http://127.0.0.1:{etcd_port}", "--domain", DOMAIN,
            "--listen", f"127.0.0.1:{self.port}"], stdout=subprocess.DEVNULL,
            stderr=open(f"{work}/dns.log", "a"))
    def stop(self):
        self.p.terminate(); self.p.wait()

def wait_answer(dns, n, timeout=120):
    """Seconds to the first correct answer, SERVFAILs before it, SERVFAILs in 2 s after."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
    target = n - 1
    servfail = 0
    deadline = time.monotonic() + timeout
    qid = 0
    while time.monotonic() < deadline:
        qid = (qid + 1) & 0xffff
        rcode, addr = ask(s, dns.port, name(target), qid)
        if rcode == 0 and addr == ip(target):
            took = time.monotonic() - dns.started
            break
        if rcode == 2:
            servfail += 1
        time.sleep(0.005)
    else:
        raise RuntimeError("no correct answer")
    after = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        qid = (qid + 1) & 0xffff
        rcode, _ = ask(s, dns.port, name(random.randrange(n)), qid)
        after += rcode == 2
        time.sleep(0.005)
    return took, servfail, after

def dnsperf(dns, n, work, seconds=10):
    with open(f"{work}/queries", "w") as f:
        for i in random.sample(range(n), min(n, 5000)):
            f.write(f"{name(i)} A\n")
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(dns.port), "-d", f"{work}/queries",
        "-l", str(seconds), "-c", "4", "-q", "200"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "Queries per second" in line:
            return float(line.split()[-1])
    return float("nan")

def churn_and_probe(etcd_port, dns, n, seconds=20, per_minute=20000):
    stop = threading.Event()
    def churn(rate):
        g = Gateway(etcd_port); gen = 1; t = time.monotonic()
        while not stop.is_set():
            i = random.randrange(n)
            g.put(key(i), value(i, gen), g.grant()); gen += 1
            t += 1 / rate
            d = t - time.monotonic()
            if d > 0: time.sleep(d)
    workers = 2
    ts = [threading.Thread(target=churn, args=(per_minute / 60 / workers,)) for _ in range(workers)]
    [t.start() for t in ts]
    g = Gateway(etcd_port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
    lat, missed, p = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        p += 1
        probe_name = f"probe-{p}.{DOMAIN}"
        lease = g.grant()
        g.put(f"/skydns/test/bench/probe-{p}", json.dumps({"host": "10.255.0.1", "ttl": 60}), lease)
        t0 = time.monotonic()
        while True:
            rcode, addr = ask(s, dns.port, probe_name, p & 0xffff)
            if rcode == 0 and addr == "10.255.0.1":
                lat.append(time.monotonic() - t0); break
            if time.monotonic() - t0 > 5:
                missed += 1; break
            time.sleep(0.001)
        time.sleep(max(0, 0.1 - (time.monotonic() - t0)))
    stop.set(); [t.join() for t in ts]
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return pct(0.5), pct(0.99), len(lat), missed

print(f"binary: {BIN}")
print(f"{'records':>8} {'first answer':>13} {'SERVFAIL start':>15} {'SERVFAIL after':>15} "
      f"{'RSS list':>10} {'RSS watch':>10} {'qps':>8} {'put->answer p50':>16} {'p99':>8}")
for n in SIZES:
    work = tempfile.mkdtemp(prefix="dns-scale-")
    try:
        etcd = Etcd(work)
        # The same records through the watch: the responder starts on an empty etcd.
        dns = Dns(etcd.port, work)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
        while ask(s, dns.port, name(0))[0] not in (0, 3):
            time.sleep(0.05)
        print(f"writing {n} leased records...", file=sys.stderr, flush=True)
        write_records(etcd.port, n)
        while ask(s, dns.port, name(n - 1))[1] != ip(n - 1):
            time.sleep(0.1)
        time.sleep(3)
        rss_watch = rss_kb(dns.p.pid)
        dns.stop()
        # A restart over the full etcd: the initial list.
        dns = Dns(etcd.port, work)
        took, servfail, after = wait_answer(dns, n)
        time.sleep(3)
        rss_list = rss_kb(dns.p.pid)
        qps = dnsperf(dns, n, work)
        p50, p99, samples, missed = churn_and_probe(etcd.port, dns, n)
        dns.stop(); etcd.stop()
        print(f"{n:>8} {took * 1000:>11.0f}ms {servfail:>15} {after:>15} {rss_list / 1024:>8.1f}MB "
              f"{rss_watch / 1024:>8.1f}MB {qps:>8.0f} {p50:>14.1f}ms {p99:>6.1f}ms"
              + (f"  ({samples} probes, {missed} not seen in 5 s)" if missed else f"  ({samples} probes)"),
              flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
PY
