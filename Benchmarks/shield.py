#!/usr/bin/env python3
"""tools/bench shield: the origin shield. `darter seed` (fetching through `/download?url=`) and
nginx proxy_cache (proxy_cache_lock on, the anchor) in front of the same local origin (nginx
serving a 1 GiB random file), interleaved round by round (the order rotates), medians over the
rounds.

Every round gives each system a fresh, empty cache (stopped, wiped, started) and uses URLs with
a query string of its own (`?r=<round>-<system>-<phase>`: the cache keys differ, the origin
ignores the query), so every cold measurement is really cold. Per round and system:

  cold   one client, one cold miss (GB/s); the origin's body bytes for it are counted too
  warm   the same URL again, a cache hit (GB/s)
  herd   HERD (20) clients on one new cold object, all launched at one instant (a barrier):
         total seconds until the last one finishes, the spread of their first-byte times
         (slowest minus fastest), and origin body bytes ÷ object size
  direct (once per round) the object straight from the origin (GB/s)

Origin body bytes come from the origin's access log (format `$request_uri $status
$body_bytes_sent`), reading only the lines written since the measurement began.

Clients: one socket per client (Python, HTTP/1.1, Connection: close), one copy of the body
(recv_into a 1 MiB buffer), like curl -o /dev/null, but every body is checked against the file
(mmapped; its SHA-256 is checked once at start): status, Content-Length, byte count, the cache
header (cold must be MISS, warm HIT) and the bytes. A single client's body is compared in full
(memcmp runs at ~15-25 GB/s, a few % of a client's time). In the herd every 1 MiB block has three
4 KiB windows compared (its start, its end, one at an offset that changes per block) and one block
in SAMPLE_EVERY (16) is compared in full: that catches holes, zero-filled or stale pieces and
shifted bytes without serializing 20 GiB of compares on the GIL. A wrong body fails the metric.
First-byte time is measured as curl's time_starttransfer: from the start of connect to the first
response byte. (curl processes cannot check a body without copying it again through a pipe,
which would cost 20 GiB of extra copies in the herd.)

BENCH lines (ratio > 1: Darter is better):
  cold_vs_direct            darter cold GB/s, anchor = direct from the origin, ratio darter/direct
  cold_vs_nginx             darter cold GB/s, anchor = nginx cold, ratio darter/nginx
  herd_time                 seconds, ratio nginx/darter
  herd_origin_bytes         origin bytes ÷ size (the target is 1.00), ratio nginx/darter
  herd_first_byte_spread_ms ms, ratio nginx/darter (Darter's spread floored at 1 ms)
  warm_hit                  GB/s, ratio darter/nginx
  seed_cpu_per_gib          CPU-s per GiB of the cache's processes during its cold miss (the seed; nginx's
                            master and workers), from the first request to the client's last byte,
                            ratio nginx/darter

Flags: --only-nginx (skip Darter: validates the nginx half and the origin), --only-darter.
Environment: ROUNDS (3), HERD (20), SIZE (1g; e.g. 256m for a quick check), DARTER_BENCH_DIR
(.build/bench), DARTER_BIN (.build/release/darter), DARTER_SEED_ARGS (extra `darter seed`
flags, e.g. "--origin-connections 8"), NGINX_SENDFILE (off: nginx's faster setting on
loopback, 3.9 vs 3.0 GB/s for one 1 GiB stream; applies to the origin and the cache)."""
import hashlib, json, mmap, os, random, shutil, socket, statistics, threading, time, urllib.parse

from benchlib import (BenchError, DARTER, GIB, MIB, NginxServer, bench_dir, check_darter_seed, describe_exit,
                      free_port, parse_only_flag, require_tool, run_main, seed_command, setup_process, start_child,
                      stop_child, wait_for_seed, write_json, write_random)

BENCH_DIR = bench_dir("shield")
FILES = os.path.join(BENCH_DIR, "files")
ROUNDS = int(os.environ.get("ROUNDS", "5"))  # nginx's cold miss swings 0.3-1.2 GB/s: five rounds for steadier medians
HERD = int(os.environ.get("HERD", "20"))
NGINX_SENDFILE = os.environ.get("NGINX_SENDFILE", "off")

BLOCK = MIB
SAMPLE_EVERY = 16
WINDOW = 4096
CLIENT_TIMEOUT = 120.0  # seconds without a byte before a client gives up


def parse_size(text):
    text = text.strip().lower()
    mult = {"k": 1 << 10, "m": MIB, "g": GIB}.get(text[-1:], 1)
    return int(text[:-1] if text[-1:] in "kmg" else text) * mult


SIZE = parse_size(os.environ.get("SIZE", "1g"))
OBJECT = "big-1g.bin" if SIZE == GIB else f"big-{SIZE}.bin"

# (metric, unit)
METRICS = [("cold_vs_direct", "GB/s"), ("cold_vs_nginx", "GB/s"), ("herd_time", "s"),
           ("herd_origin_bytes", "x"), ("herd_first_byte_spread_ms", "ms"), ("warm_hit", "GB/s"), ("seed_cpu_per_gib", "cpu-s/GiB")]

# ---------------------------------------------------------------------------------------------
# Content: one random object, made once, with a manifest (size, SHA-256); clients compare bodies
# with an mmap of it.

def make_object():
    path = os.path.join(FILES, OBJECT)
    manifest_path = path + ".json"
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["size"] == SIZE and os.path.getsize(path) == SIZE:
            return manifest
    except (OSError, ValueError, KeyError):
        pass
    print(f"  generating {OBJECT} ({SIZE} random bytes) in {FILES} (once)", flush=True)
    os.makedirs(FILES, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        digest = write_random(f, SIZE)
    os.replace(path + ".tmp", path)
    manifest = {"size": SIZE, "sha256": digest}
    write_json(manifest_path, manifest)
    return manifest


def map_object(manifest):
    """Checks the file against its manifest (full SHA-256) and maps it: the reference bytes."""
    path = os.path.join(FILES, OBJECT)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * MIB):
            h.update(chunk)
        if h.hexdigest() != manifest["sha256"]:
            raise BenchError(f"{path} does not match its manifest: delete {FILES} and run again")
        manifest["mmap"] = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)


# ---------------------------------------------------------------------------------------------
# nginx: the origin (static files, access log) and the anchor cache (proxy_cache).

class NginxProcess(NginxServer):
    """nginx in BENCH_DIR/name: `http_extra` (lines) at the end of the http block, `location` the
    body of `location /`."""

    def __init__(self, name, http_extra, location):
        super().__init__(name, os.path.join(BENCH_DIR, name), "shield.py", NGINX_SENDFILE,
                         f"        location / {{\n{location}\n        }}\n", http_last=http_extra + "\n")


class Origin(NginxProcess):
    """nginx serving FILES, logging `$request_uri $status $body_bytes_sent` per request."""

    def __init__(self):
        name = "origin"
        access = os.path.join(BENCH_DIR, name, "access.log")
        super().__init__(name, f"    log_format shield '$request_uri $status $body_bytes_sent';\n"
                               f"    access_log {access} shield;",
                         f"            root {FILES};")
        self.access = access

    def start(self):
        if os.path.exists(self.access):
            os.remove(self.access)
        super().start()

    def url(self, query):
        return f"http://127.0.0.1:{self.port}/{OBJECT}?{query}"

    def log_offset(self):
        try:
            return os.path.getsize(self.access)
        except OSError:
            return 0

    def body_bytes_since(self, offset, query, settle=0.3, timeout=10.0):
        """(body bytes, requests) the origin logged since `offset` for URIs with this query.
        nginx logs a request when it ends: read until the sum has not changed for `settle`
        seconds (the last origin requests may end a moment after the last client)."""
        deadline = time.time() + timeout
        last, stable_since = None, time.time()
        while True:
            total, count = 0, 0
            with open(self.access, "rb") as f:
                f.seek(offset)
                for line in f.read().decode("latin-1").splitlines():
                    parts = line.split(" ")
                    if len(parts) == 3 and parts[0].endswith("?" + query):
                        total += int(parts[2])
                        count += 1
            now = time.time()
            if (total, count) != last:
                last, stable_since = (total, count), now
            elif now - stable_since >= settle or now > deadline:
                return total, count
            time.sleep(0.05)


class NginxCache(NginxProcess):
    """nginx proxy_cache in front of the origin: the anchor. The settings the reference measured:
    proxy_cache_lock on (waiters wait for the complete object, then after 5 s go to the origin
    uncached), proxy_buffering on, 200 cached for an hour."""
    name = "nginx"

    def __init__(self, origin):
        cache = os.path.join(BENCH_DIR, "nginx", "cache")
        super().__init__("nginx",
                         f"    proxy_cache_path {cache} levels=1:2 keys_zone=shield:16m max_size=64g inactive=1d use_temp_path=off;",
                         f"""            proxy_pass http://127.0.0.1:{origin.port};
            proxy_cache shield;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_valid 200 1h;
            proxy_buffering on;
            add_header X-Cache-Status $upstream_cache_status always;""")
        self.cache = cache
        self.origin = origin

    def fresh(self):
        """Stopped, cache wiped, started: the next miss is cold."""
        self.stop()
        shutil.rmtree(self.cache, ignore_errors=True)
        self.start()

    def path(self, query):
        return f"/{OBJECT}?{query}"

    def cache_status(self, headers):
        return headers.get("x-cache-status")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of the master and its workers (the workers do the caching)."""
        return process_tree_cpu(self.proc.pid)


class Darter:
    name = "darter"

    def __init__(self, origin):
        self.dir = os.path.join(BENCH_DIR, "darter")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "seed.log")
        self.origin = origin
        self.port = None
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    def check_binary(self):
        if "--origin-allow" not in check_darter_seed():
            raise BenchError(f"'{DARTER} seed --help' lists no --origin-allow: the origin shield has not landed in this "
                             f"binary. Run with --only-nginx to measure nginx alone.")

    def start(self):
        self.port = free_port()
        self.proc = start_child(seed_command(self.port, self.data), self.log)
        wait_for_seed(self.proc, self.port, self.log)

    def stop(self):
        if self.proc is not None:
            code = stop_child(self.proc)
            if code != 0:
                print(f"  warning: darter seed exited with {describe_exit(code)} on SIGTERM (expected 0); log {self.log}", flush=True)
            self.proc = None

    def fresh(self):
        """Stopped, data directory wiped, started (a new log per start; the last one is kept)."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.start()

    def path(self, query):
        return "/download?url=" + urllib.parse.quote(self.origin.url(query), safe="")

    def cache_status(self, headers):
        return headers.get("x-darter-cache")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of the seed process (all its threads; it starts no child processes)."""
        return process_tree_cpu(self.proc.pid)

    def wait_complete(self, headers, timeout=30.0):
        """After a cold miss: waits until /tasks/<id>/meta says complete (the warm request must
        find the whole object committed)."""
        task = headers.get("x-darter-task")
        if not task:
            raise BenchError("the cold response had no X-Darter-Task header")
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, body = small_get(self.port, f"/tasks/{task}/meta")
            if status == 200 and json.loads(body).get("complete") is True:
                return
            time.sleep(0.05)
        raise BenchError(f"task {task} not complete {timeout:.0f}s after its cold miss ended")


class Direct:
    """The origin itself, no cache between."""
    name = "direct"

    def __init__(self, origin):
        self.origin = origin
        self.port = origin.port

    def path(self, query):
        return f"/{OBJECT}?{query}"

    def alive(self):
        return self.origin.proc is not None and self.origin.proc.poll() is None


def process_cpu(pid):
    """utime + stime of one process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid):
    """utime + stime of `pid` and its children (nginx's master and workers)."""
    total = process_cpu(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for c in children:
        try:
            total += process_cpu(c)
        except OSError:
            pass
    return total


# ---------------------------------------------------------------------------------------------
# The client.

def small_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class FetchResult:
    def __init__(self, start, first_byte, end, headers):
        self.start, self.first_byte, self.end, self.headers = start, first_byte, end, headers

    @property
    def seconds(self):
        return self.end - self.start

    @property
    def gbps(self):
        return SIZE / self.seconds / 1e9

    @property
    def ttfb(self):
        return self.first_byte - self.start


def fetch(port, path, manifest, full=True, salt=None, start_barrier=None):
    """GET the object; raises BenchError unless it is 200 with SIZE bytes that match the file
    (`full`: every byte; else three 4 KiB windows per block and one block in SAMPLE_EVERY).
    Times are time.perf_counter() values."""
    salt = random.randrange(1 << 30) if salt is None else salt
    ref = manifest["mmap"]
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: darter-shield-bench\r\nConnection: close\r\n\r\n".encode()
    if start_barrier is not None:
        start_barrier.wait()
    start = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(request)
        head = b""
        first_byte = None
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise BenchError(f"GET {path}: connection closed before the response head ({len(head)} bytes)")
            if first_byte is None:
                first_byte = time.perf_counter()
            head += chunk
            if len(head) > 65536:
                raise BenchError(f"GET {path}: response head over 64 KiB")
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else -1
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status != 200:
            body = rest[:300].decode("latin-1", "replace").strip()
            raise BenchError(f"GET {path}: status {status} ({body!r})")
        if headers.get("content-length") != str(SIZE):
            raise BenchError(f"GET {path}: Content-Length {headers.get('content-length')!r}, expected {SIZE}"
                             + (f" (Transfer-Encoding {headers['transfer-encoding']})" if "transfer-encoding" in headers else ""))
        buf = bytearray(BLOCK)
        mv = memoryview(buf)
        received, index, fill = 0, 0, 0
        pending = memoryview(rest)
        while received < SIZE:
            want = min(BLOCK, SIZE - index * BLOCK)
            if pending:
                n = min(len(pending), want - fill)
                mv[fill:fill + n] = pending[:n]
                pending = pending[n:]
            else:
                n = s.recv_into(mv[fill:want])
                if n == 0:
                    raise BenchError(f"GET {path}: connection closed after {received} of {SIZE} body bytes")
            fill += n
            received += n
            if fill == want:
                base = index * BLOCK
                if full or (index + salt) % SAMPLE_EVERY == 0:
                    ok = (buf if want == BLOCK else buf[:want]) == ref[base:base + want]
                else:
                    w = min(WINDOW, want)
                    mid = (salt * 7919 + index * 104729) % (want - w + 1)
                    ok = all(mv[o:o + w] == ref[base + o:base + o + w] for o in (0, want - w, mid))
                if not ok:
                    raise BenchError(f"GET {path}: wrong bytes in block {index} (bytes {base}-{base + want - 1})")
                index += 1
                fill = 0
        end = time.perf_counter()
        if len(pending):
            raise BenchError(f"GET {path}: {len(pending)} bytes past Content-Length")
        return FetchResult(start, first_byte, end, headers)
    except socket.timeout:
        raise BenchError(f"GET {path}: no byte for {CLIENT_TIMEOUT:.0f}s")
    except OSError as e:
        raise BenchError(f"GET {path}: {e}")
    finally:
        s.close()


def herd(port, path, manifest):
    """HERD clients released at one instant; returns (total seconds, first-byte spread in ms)."""
    barrier = threading.Barrier(HERD + 1)
    results, errors = [None] * HERD, []

    def client(i):
        try:
            results[i] = fetch(port, path, manifest, full=False, salt=i, start_barrier=barrier)
        except BenchError as e:
            errors.append(f"client {i}: {e}")
        except threading.BrokenBarrierError:
            errors.append(f"client {i}: barrier broken")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(HERD)]
    for t in threads:
        t.start()
    barrier.wait()
    launch = time.perf_counter()
    for t in threads:
        t.join(CLIENT_TIMEOUT * 3)
    if any(t.is_alive() for t in threads):
        raise BenchError("herd: a client did not finish")
    if errors:
        raise BenchError(f"herd: {len(errors)} of {HERD} clients failed; first: {sorted(errors)[0]}")
    total = max(r.end for r in results) - launch
    ttfbs = [r.ttfb for r in results]
    return total, (max(ttfbs) - min(ttfbs)) * 1000, min(ttfbs) * 1000, max(ttfbs) * 1000


# ---------------------------------------------------------------------------------------------
# One round of one system.

def cache_round(system, origin, manifest, rnd):
    """cold, warm, herd on a fresh cache; a dict metric → value (None: failed)."""
    res = {"cold": None, "cold_cpu": None, "cold_origin": None, "warm": None, "herd_time": None, "herd_origin": None, "herd_spread": None}
    notes = []
    try:
        system.fresh()
    except BenchError as e:
        print(f"    FAILED {system.name}: could not start: {e}", flush=True)
        return res, notes

    def failed(metric, e):
        died = "" if system.alive() else f" (the server exited with {describe_exit(system.proc.returncode if system.proc else None)})"
        print(f"    FAILED {system.name} {metric}: {e}{died}", flush=True)

    query = f"r={rnd + 1}-{system.name}-cold"
    try:
        mark = origin.log_offset()
        cpu = system.cpu_seconds()
        r = fetch(system.port, system.path(query), manifest)
        # The server's CPU for the miss, up to its last byte (background work after it excluded).
        res["cold_cpu"] = (system.cpu_seconds() - cpu) / (SIZE / GIB)
        status = system.cache_status(r.headers)
        if status != "MISS":
            raise BenchError(f"cache status {status!r} on a cold request (expected MISS)")
        res["cold"] = r.gbps
        sent, count = origin.body_bytes_since(mark, query)
        res["cold_origin"] = sent / SIZE
        notes.append(f"cold origin {sent / SIZE:.2f}x in {count} req")
        if isinstance(system, Darter):
            system.wait_complete(r.headers)
        r = fetch(system.port, system.path(query), manifest)
        status = system.cache_status(r.headers)
        if status != "HIT":
            raise BenchError(f"cache status {status!r} on the second request (expected HIT)")
        res["warm"] = r.gbps
    except BenchError as e:
        failed("cold/warm", e)

    query = f"r={rnd + 1}-{system.name}-herd"
    try:
        mark = origin.log_offset()
        total, spread, ttfb_min, ttfb_max = herd(system.port, system.path(query), manifest)
        sent, count = origin.body_bytes_since(mark, query)
        res["herd_time"], res["herd_spread"], res["herd_origin"] = total, spread, sent / SIZE
        notes.append(f"herd first byte {ttfb_min:.0f}-{ttfb_max:.0f} ms, origin {count} req")
    except BenchError as e:
        failed("herd", e)
    return res, notes


def fmt(unit, v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return {"GB/s": f"{v:.3f}", "s": f"{v:.2f}", "x": f"{v:.3f}", "ms": f"{v:.1f}", "cpu-s/GiB": f"{v:.3f}"}[unit]


def main():
    args = parse_only_flag("shield.py")
    if args is None:
        return 2
    systems_wanted = [s for s in ["nginx", "darter"] if not ("--only-nginx" in args and s == "darter")
                      and not ("--only-darter" in args and s == "nginx")]

    setup_process()

    require_tool("nginx", "nginx-light")  # the origin is nginx in every mode
    os.makedirs(BENCH_DIR, exist_ok=True)
    print(f"shield benchmark: {ROUNDS} rounds, object {SIZE} bytes, herd of {HERD}, nginx sendfile {NGINX_SENDFILE}, "
          f"dir {BENCH_DIR}", flush=True)

    origin = Origin()
    systems = {}
    if "darter" in systems_wanted:
        systems["darter"] = Darter(origin)
        systems["darter"].check_binary()  # before the slow parts: fail early and clearly
    if "nginx" in systems_wanted:
        systems["nginx"] = NginxCache(origin)
    manifest = make_object()
    origin.start()
    direct = Direct(origin)
    # Once: the file matches its digest, the origin serves it byte-exact, and it is in the page cache.
    t0 = time.time()
    map_object(manifest)
    r = fetch(origin.port, direct.path("verify"), manifest)
    print(f"  origin on 127.0.0.1:{origin.port}: {OBJECT} verified ({r.gbps:.2f} GB/s, {time.time() - t0:.1f}s)", flush=True)

    samples = {name: {} for name in ["direct"] + list(systems)}
    names = ["direct"] + list(systems)
    for rnd in range(ROUNDS):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            t0 = time.time()
            if name == "direct":
                try:
                    res = {"direct": fetch(origin.port, direct.path(f"r={rnd + 1}-direct"), manifest).gbps}
                except BenchError as e:
                    print(f"    FAILED direct: {e}", flush=True)
                    res = {"direct": None}
                notes = []
            else:
                res, notes = cache_round(systems[name], origin, manifest, rnd)
            for k, v in res.items():
                samples[name].setdefault(k, []).append(v)
            units = {"direct": "GB/s", "cold": "GB/s", "warm": "GB/s", "herd_time": "s", "herd_spread": "ms",
                     "cold_origin": "x", "herd_origin": "x", "cold_cpu": "cpu-s/GiB"}
            print(f"  round {rnd + 1} {name:7s} " + "  ".join(f"{k}={fmt(units[k], v)}" for k, v in res.items())
                  + (f"  [{'; '.join(notes)}]" if notes else "") + f"  ({time.time() - t0:.1f}s)", flush=True)
    for s in systems.values():
        s.stop()
    origin.stop()
    # The last round's caches (a few GiB) are not needed again: every run starts fresh.
    shutil.rmtree(os.path.join(BENCH_DIR, "nginx", "cache"), ignore_errors=True)
    shutil.rmtree(os.path.join(BENCH_DIR, "darter", "data"), ignore_errors=True)

    def median(name, key):
        """None when not run; 'failed' when any round failed."""
        vals = samples.get(name, {}).get(key)
        if not vals:
            return None
        return "failed" if any(v is None for v in vals) else statistics.median(vals)

    def ratio(a, b, floor=0.0):
        if not isinstance(a, float) or not isinstance(b, float):
            return None
        b = max(b, floor)
        return a / b if b else None

    d, n = (lambda k: median("darter", k)), (lambda k: median("nginx", k))
    direct_gbps = median("direct", "direct")
    # metric → (darter, anchor, ratio, nginx, unit)
    rows = [
        ("cold_vs_direct", d("cold"), direct_gbps, ratio(d("cold"), direct_gbps), n("cold"), "GB/s"),
        ("cold_vs_nginx", d("cold"), n("cold"), ratio(d("cold"), n("cold")), n("cold"), "GB/s"),
        ("herd_time", d("herd_time"), n("herd_time"), ratio(n("herd_time"), d("herd_time")), n("herd_time"), "s"),
        ("herd_origin_bytes", d("herd_origin"), n("herd_origin"), ratio(n("herd_origin"), d("herd_origin")), n("herd_origin"), "x"),
        ("herd_first_byte_spread_ms", d("herd_spread"), n("herd_spread"), ratio(n("herd_spread"), d("herd_spread"), floor=1.0),
         n("herd_spread"), "ms"),
        ("warm_hit", d("warm"), n("warm"), ratio(d("warm"), n("warm")), n("warm"), "GB/s"),
        ("seed_cpu_per_gib", d("cold_cpu"), n("cold_cpu"), ratio(n("cold_cpu"), d("cold_cpu")), n("cold_cpu"), "cpu-s/GiB"),
    ]
    print()
    print(f"{'metric':26s} {'darter':>9s} {'nginx':>9s} {'direct':>9s} {'anchor':>9s} {'ratio':>7s}  unit")
    for metric, dv, av, rv, nv, unit in rows:
        dir_cell = fmt(unit, direct_gbps) if metric == "cold_vs_direct" else ""
        print(f"{metric:26s} {fmt(unit, dv):>9s} {fmt(unit, nv):>9s} {dir_cell:>9s} {fmt(unit, av):>9s} "
              f"{('-' if rv is None else f'{rv:.2f}'):>7s}  {unit}")
    cold_origin = {k: median(k, "cold_origin") for k in systems}
    print()
    print("anchor: cold_vs_direct = the origin itself; every other metric = nginx proxy_cache (lock on). "
          "herd_origin_bytes = origin body bytes / object size (target 1.00); ratios > 1: Darter is better. "
          "Cold-miss origin bytes / size: " + ", ".join(f"{k} {fmt('x', v)}" for k, v in cold_origin.items()))
    if "darter" not in systems:
        print("(--only-nginx: no BENCH lines)")
        return 0
    print()
    failed = False
    for metric, dv, av, rv, nv, unit in rows:
        failed |= dv == "failed" or dv is None
        print(f"BENCH shield.{metric} darter={fmt(unit, dv)} anchor={fmt(unit, av)} ratio={'-' if rv is None else f'{rv:.2f}'} unit={unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main, "shield")
