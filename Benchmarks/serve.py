#!/usr/bin/env python3
"""tools/bench serve: nginx (sendfile on and off) and `darter seed` serving the same bytes from
the page cache to the same clients (curl, wrk -t2 -c64) on loopback, interleaved round by round
(the order rotates), medians over the rounds. The better nginx configuration per metric is the
anchor.

Flags: --only-nginx (skip Darter: validates the nginx half), --only-darter (skip nginx).
Environment: ROUNDS (3), DURATION (wrk seconds, 10), DARTER_BENCH_DIR (.build/bench),
DARTER_BIN (.build/release/darter), DARTER_SEED_ARGS (extra `darter seed` flags, e.g.
"--serve-mode splice")."""
import hashlib, http.client, json, os, socket, statistics, subprocess, time

from benchlib import (BenchError, DARTER, GIB, KIB, MIB, NginxServer, bench_dir, check_darter_seed, describe_exit,
                      free_port, parse_only_flag, require_tool, run_main, seed_command, setup_process, start_child,
                      stop_child, tail, wait_for_seed, write_json, write_random)

BENCH_DIR = bench_dir("serve")
FILES = os.path.join(BENCH_DIR, "files")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS, THREADS = 64, 2
IDLE_CONNECTIONS = 1000

BIG, OBJ, SMALL, SMALL_COUNT = "big-1g.bin", "obj-4m.bin", "small", 1000
RANGE_BYTES = MIB  # Range: bytes=0-1048575
# (metric, unit, higher is better)
METRICS = [("stream_1g", "GB/s"), ("obj_4m", "req/s"), ("obj_64k", "req/s"), ("range_1m", "req/s"), ("rss_1k_idle", "MiB")]
SERVERS = ["nginx-sendfile-on", "nginx-sendfile-off", "darter"]


# ---------------------------------------------------------------------------------------------
# Content: made once with random bytes, cached with a manifest of SHA-256 digests.

def make_files():
    manifest_path = os.path.join(FILES, "manifest.json")
    wanted = {BIG: GIB, OBJ: 4 * MIB}
    wanted.update({f"{SMALL}/{i:04d}.bin": 64 * KIB for i in range(SMALL_COUNT)})
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if set(manifest) == set(wanted) and all(os.path.getsize(os.path.join(FILES, p)) == n for p, n in wanted.items()):
            return manifest
    except (OSError, ValueError):
        pass
    print(f"  generating test files in {FILES} (once)", flush=True)
    os.makedirs(os.path.join(FILES, SMALL), exist_ok=True)
    manifest = {}
    for rel, size in wanted.items():
        with open(os.path.join(FILES, rel), "wb") as f:
            manifest[rel] = write_random(f, size)
    write_json(manifest_path, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# Servers. Each knows the URL path of every file.

class Nginx(NginxServer):
    def __init__(self, sendfile):
        name = "nginx-sendfile-" + ("on" if sendfile else "off")
        super().__init__(name, os.path.join(BENCH_DIR, name), "serve.py", "on" if sendfile else "off",
                         f"        root {FILES};\n        location / {{ }}\n", http_first="    access_log off;\n")

    def path(self, rel):
        return "/" + rel


class Darter:
    name = "darter"

    def __init__(self, manifest):
        self.dir = os.path.join(BENCH_DIR, "darter")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.log = os.path.join(self.dir, "seed.log")
        self.ids = {}
        self.manifest = manifest
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    def check_binary(self):
        check_darter_seed(" (has the server landed?)")

    def import_files(self):
        """One `darter import` per bench run; the store dedupes content by digest."""
        rels = sorted(self.manifest)
        t0 = time.time()
        r = subprocess.run([DARTER, "import", "--data-dir", self.data] + [os.path.join(FILES, p) for p in rels],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"darter import exited with {r.returncode}:\n{r.stderr[-2000:]}")
        by_path = {}
        for line in r.stdout.splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2:
                by_path[os.path.relpath(parts[1], FILES)] = parts[0]
        for rel in rels:
            tid = by_path.get(rel)
            if tid is None:
                raise BenchError(f"darter import printed no task id for {rel}:\n{r.stderr[-2000:]}")
            if tid.removeprefix("sha256:") != self.manifest[rel]:
                raise BenchError(f"darter import gave {tid} for {rel}, expected sha256:{self.manifest[rel]}")
            self.ids[rel] = tid
        print(f"  darter import: {len(rels)} files in {time.time() - t0:.1f}s", flush=True)

    def start(self):
        self.proc = start_child(seed_command(self.port, self.data), self.log)
        wait_for_seed(self.proc, self.port, self.log)
        line = next(l for l in tail(self.log, 200).splitlines() if "seed: listening on" in l)
        print(f"  {line.strip()}", flush=True)

    def path(self, rel):
        return "/tasks/" + self.ids[rel]

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise BenchError("no VmRSS in /proc/PID/status")


# ---------------------------------------------------------------------------------------------
# Verification (also warms the page cache): every object once, byte-exact, before the rounds.

def verify(server, manifest):
    t0 = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for rel in sorted(manifest):
        conn.request("GET", server.path(rel))
        resp = conn.getresponse()
        h = hashlib.sha256()
        while chunk := resp.read(4 * MIB):
            h.update(chunk)
        if resp.status != 200 or h.hexdigest() != manifest[rel]:
            raise BenchError(f"{server.name}: GET {server.path(rel)} gave {resp.status} and "
                             f"{'matching' if h.hexdigest() == manifest[rel] else 'different'} bytes")
    conn.request("GET", server.path(OBJ), headers={"Range": f"bytes=0-{RANGE_BYTES - 1}"})
    resp = conn.getresponse()
    body = resp.read()
    with open(os.path.join(FILES, OBJ), "rb") as f:
        want = f.read(RANGE_BYTES)
    if resp.status != 206 or body != want:
        raise BenchError(f"{server.name}: Range request gave {resp.status}, {len(body)} bytes ({'matching' if body == want else 'different'})")
    conn.close()
    print(f"  verified {server.name}: {len(manifest)} objects and a range, byte-exact ({time.time() - t0:.1f}s)", flush=True)


# ---------------------------------------------------------------------------------------------
# Clients.

def curl_stream(port, path):
    url = f"http://127.0.0.1:{port}{path}"
    r = subprocess.run(["curl", "-s", "-S", "-o", "/dev/null", "-w", "%{size_download} %{time_total} %{http_code}", url],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"curl {url} exited with {r.returncode}: {r.stderr.strip()}")
    size, seconds, code = r.stdout.split()
    if code != "200" or int(size) != GIB:
        raise BenchError(f"curl {url}: status {code}, {size} bytes (expected 200 and {GIB})")
    return GIB / float(seconds) / 1e9


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %d %d %d %d %d %d %d %d\\n", summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_script(name, body):
    path = os.path.join(BENCH_DIR, name)
    with open(path, "w") as f:
        f.write(body + WRK_DONE)
    return path


def rotating_script(server, rels):
    """Round-robin over the paths; each wrk thread starts at its own offset."""
    paths = ",\n".join(f'  "{server.path(r)}"' for r in rels)
    return wrk_script(f"wrk-rotate-{server.name}.lua", f"""local paths = {{
{paths}
}}
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end
local i = 1
function init(args)
  i = 1 + ((tid or 0) * 500) % #paths
end
function request()
  local p = paths[i]
  i = i % #paths + 1
  return wrk.format("GET", p)
end
""")


def wrk(port, path, body_bytes, script, headers=()):
    """req/s from wrk; raises on socket errors, non-2xx/3xx responses, or a byte count that does
    not fit `body_bytes` per response (+ headers)."""
    url = f"http://127.0.0.1:{port}{path}"
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--timeout", "5s", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd + [url], capture_output=True, text=True)
    line = next((l for l in r.stdout.splitlines() if l.startswith("WRKRESULT")), None)
    if r.returncode != 0 or line is None:
        raise BenchError(f"wrk {url} exited with {r.returncode}: {r.stderr.strip()} {r.stdout.strip()[-500:]}")
    requests, nbytes, micros, connect, read, write, status, timeout = map(int, line.split()[1:])
    errors = {"connect": connect, "read": read, "write": write, "non-2xx/3xx": status, "timeout": timeout}
    bad = {k: v for k, v in errors.items() if v}
    if bad:
        raise BenchError(f"wrk {url}: errors " + ", ".join(f"{k}={v}" for k, v in bad.items()) + f" in {requests} requests")
    if requests == 0:
        raise BenchError(f"wrk {url}: no request completed")
    # Every completed response carries the body plus a header block; wrk also counts the bytes of
    # responses still in flight when the run ends (at most one per connection).
    extra = nbytes - requests * body_bytes
    if extra < 0 or extra > requests * 2048 + CONNECTIONS * (body_bytes + 2048):
        raise BenchError(f"wrk {url}: {nbytes} bytes for {requests} responses of {body_bytes} bytes "
                         f"({nbytes / requests:.0f} per response)")
    return requests / (micros / 1e6)


def run_metrics(server, scripts):
    res = {}
    if server.proc.poll() is not None:
        print(f"    FAILED {server.name}: the server exited earlier with {describe_exit(server.proc.returncode)}; log {server.log}", flush=True)
        return {m: None for m in ("stream_1g", "obj_4m", "obj_64k", "range_1m")}
    for metric, fn in [
        ("stream_1g", lambda: curl_stream(server.port, server.path(BIG))),
        ("obj_4m", lambda: wrk(server.port, server.path(OBJ), 4 * MIB, scripts["plain"])),
        ("obj_64k", lambda: wrk(server.port, "/", 64 * KIB, scripts[server.name])),
        ("range_1m", lambda: wrk(server.port, server.path(OBJ), RANGE_BYTES, scripts["plain"],
                                 headers=[f"Range: bytes=0-{RANGE_BYTES - 1}"])),
    ]:
        try:
            res[metric] = fn()
        except BenchError as e:
            died = "" if server.proc.poll() is None else f" (the server exited with {describe_exit(server.proc.returncode)})"
            print(f"    FAILED {server.name} {metric}: {e}{died}", flush=True)
            res[metric] = None
    return res


def idle_connections_rss(darter):
    """Darter's VmRSS while 1,000 keep-alive connections sit idle after one GET /healthz each."""
    before = darter.rss_mib()
    socks = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", darter.port), timeout=10)
            socks.append(s)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for s in socks:
            read_response(s)
        time.sleep(1.0)
        rss = darter.rss_mib()
        if darter.proc.poll() is not None:
            raise BenchError(f"darter exited with {darter.proc.returncode} while holding idle connections")
        return before, rss
    finally:
        for s in socks:
            s.close()


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise BenchError("connection closed before a response to GET /healthz")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        raise BenchError(f"GET /healthz: {lines[0]}")
    length = next((int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise BenchError("connection closed inside the /healthz body")
        body += chunk


# ---------------------------------------------------------------------------------------------

def fmt(unit, v):
    if v is None:
        return "-"
    return f"{v:.0f}" if unit == "req/s" else f"{v:.1f}" if unit == "MiB" else f"{v:.3f}"


def main():
    args = parse_only_flag("serve.py")
    if args is None:
        return 2
    servers_wanted = [s for s in SERVERS if not ("--only-nginx" in args and s == "darter")
                      and not ("--only-darter" in args and s.startswith("nginx"))]

    setup_process()

    require_tool("curl", "curl")
    require_tool("wrk", "wrk")
    if any(s.startswith("nginx") for s in servers_wanted):
        require_tool("nginx", "nginx-light")
    os.makedirs(BENCH_DIR, exist_ok=True)
    print(f"serve benchmark: {ROUNDS} rounds, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, dir {BENCH_DIR}", flush=True)

    darter = None
    if "darter" in servers_wanted:
        darter = Darter({})
        darter.check_binary()  # before the slow parts: fail early and clearly
    manifest = make_files()
    servers = {}
    for name in servers_wanted:
        if name == "darter":
            darter.manifest = manifest
            darter.import_files()
            servers[name] = darter
        else:
            servers[name] = Nginx(sendfile=name.endswith("-on"))
        servers[name].start()
        verify(servers[name], manifest)

    small = sorted(r for r in manifest if r.startswith(SMALL + "/"))
    scripts = {"plain": wrk_script("wrk-plain.lua", "")}
    for s in servers.values():
        scripts[s.name] = rotating_script(s, small)

    samples = {name: {m: [] for m, _ in METRICS} for name in servers}
    names = list(servers)
    for rnd in range(ROUNDS):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            t0 = time.time()
            res = run_metrics(servers[name], scripts)
            for k, v in res.items():
                samples[name][k].append(v)
            print(f"  round {rnd + 1} {name:18s} " + "  ".join(f"{k}={fmt(u, res[k])}" for k, u in METRICS if k in res)
                  + f"  ({time.time() - t0:.1f}s)", flush=True)

    rss_before = None
    if darter is not None:
        try:
            rss_before, rss = idle_connections_rss(darter)
            samples["darter"]["rss_1k_idle"].append(rss)
            print(f"  darter RSS: {rss_before:.1f} MiB before, {rss:.1f} MiB with {IDLE_CONNECTIONS} idle keep-alive connections", flush=True)
        except (BenchError, OSError) as e:
            print(f"    FAILED darter rss_1k_idle: {e}", flush=True)
            samples["darter"]["rss_1k_idle"].append(None)
        code = stop_child(darter.proc)
        if code != 0:
            print(f"  warning: darter seed exited with {code} on SIGTERM (expected 0); log {darter.log}", flush=True)
    for name, s in servers.items():
        if name != "darter":
            s.stop()

    def median(name, metric):
        """None when the server was not run; 'failed' when any round failed."""
        if name not in samples or not samples[name][metric]:
            return None
        vals = samples[name][metric]
        return "failed" if any(v is None for v in vals) else statistics.median(vals)

    rows = []
    for metric, unit in METRICS:
        on, off = median("nginx-sendfile-on", metric), median("nginx-sendfile-off", metric)
        candidates = [(v, n) for v, n in [(on, "sendfile-on"), (off, "sendfile-off")] if isinstance(v, float)]
        anchor, winner = max(candidates) if candidates and metric != "rss_1k_idle" else (None, "-")
        d = median("darter", metric)
        ratio = d / anchor if isinstance(d, float) and anchor else None
        rows.append((metric, unit, d, on, off, anchor, winner, ratio))

    def cell(unit, v):
        return v if isinstance(v, str) else fmt(unit, v)

    print()
    print(f"{'metric':12s} {'darter':>10s} {'nginx sf=on':>12s} {'nginx sf=off':>13s} {'anchor':>10s} {'(nginx)':>13s} {'ratio':>7s}  unit")
    for metric, unit, d, on, off, a, w, r in rows:
        print(f"{metric:12s} {cell(unit, d):>10s} {cell(unit, on):>12s} {cell(unit, off):>13s} {cell(unit, a):>10s} {w:>13s} "
              f"{('-' if r is None else f'{r:.2f}'):>7s}  {unit}")
    print()
    print("anchor = the better nginx configuration per metric: " + (
          ", ".join(f"{m}={w}" for m, _, _, _, _, _, w, _ in rows if w != "-") or "none (nginx not run)"))
    if darter is None:
        print("(--only-nginx: no BENCH lines)")
        return 0
    print()
    failed = False
    for metric, unit, d, on, off, a, w, r in rows:
        failed |= d == "failed" or d is None
        print(f"BENCH serve.{metric} darter={cell(unit, d)} anchor={cell(unit, a)} ratio={'-' if r is None else f'{r:.2f}'} unit={unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main, "serve")
