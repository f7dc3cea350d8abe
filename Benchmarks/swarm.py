#!/usr/bin/env python3
"""tools/bench swarm: a swarm of network-namespace hosts on one bridge (its own namespace; nothing
touches the root namespace's network), every link shaped in both directions with tbf (upload on
the host's eth0, download on the bridge-side veth). Host 0 runs the origin (nginx), the scheduler
and a seed; hosts 1..N run `darter peer`, then all run `darter get -O -` at once (bytes checked
with --digest as they stream). In the same run, on the same hosts and links: every host straight from the origin
(curl), and BitTorrent (libtorrent 2.0, seeder on host 0, uTP off, every leecher handed every
host). Completion times are from the common start; T_min = F / min(S, D, (S + N*U)/N) with every
link the same rate (REFERENCE-P2P section 1).

After the clean darter run, two fault runs on the same hosts, each with fresh daemons (empty data
directories) and its own URL (`/obj.bin?run=NAME`, a new task; origin bytes counted per run from
nginx's access log by that URL):
  parent-kill    at 30 % of the clean run's p50, the `darter peer` that is a parent to the most
                 others then (the scheduler's /debug/tasks; FAULT_HOST pins one) gets SIGKILL. Its
                 own `darter get` fails and is left out; the others' p99 against the clean p99.
  sched-restart  at 30 % of the clean run's p50 the scheduler gets SIGKILL and is started again
                 at once with the same flags; peers register again by themselves. p99 against the
                 clean p99, and the run's origin bytes (goal: <= 1.02 x the object).

Environment: PEERS (8), RATE (200, Mbit/s), SIZE (256m), SKIP (comma list of darter,direct,bt),
FAULTS (1; 0 skips the fault runs), FAULT_HOST (the peer host to kill; default: the busiest
parent), IDCS (1; 2: the darter run labels host 0 and the even peers dc0, the odd ones dc1, and
runs again without labels beside it, counting the copies of the object that crossed between the
two from the peers' logs; the links between them are not shaped apart), DARTER_PEER_ARGS (extra
`darter peer` flags), SWARM_PREFIX (dsw, the namespaces'
prefix), DARTER_BENCH_DIR (.build/bench), DARTER_BIN (.build/release/darter). Needs root
(namespaces). Prints per-host times, a table, and BENCH lines (ratio > 1 = Darter better).

Other modes (tools/swarm):
  swarm.py up [--peers N --rate MBIT --size SIZE]   the same swarm, left running (prefix dsw)
  swarm.py down                                     tears it down (logs stay)
  swarm.py check [--peers 4 --rate 200 --size 32m]  a small darter-only swarm (prefix dsc, its
      own directory): every host's bytes exact and origin bytes <= 1.05 x the object, or exit 1."""
import argparse, atexit, hashlib, json, os, shutil, signal, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DARTER, bench_dir, write_random  # noqa: E402

PEERS = int(os.environ.get("PEERS", "8"))
RATE = int(os.environ.get("RATE", "200"))  # Mbit/s
SIZE_TEXT = os.environ.get("SIZE", "256m")
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))
FAULTS = os.environ.get("FAULTS", "1") not in ("0", "", "no", "false")
FAULT_HOST = int(os.environ["FAULT_HOST"]) if os.environ.get("FAULT_HOST") else None
PEER_ARGS = os.environ.get("DARTER_PEER_ARGS", "").split()
IDCS = int(os.environ.get("IDCS", "1"))
PREFIX = os.environ.get("SWARM_PREFIX", "dsw")
BRIDGE_NS = f"{PREFIX}-br"
ORIGIN_PORT, SEED_PORT, SCHED_PORT, PEER_PORT = 8080, 65001, 65002, 65001
BT_PORT = 6881
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's libtorrent is for the system interpreter
FAULT_AT = 0.3  # of the clean run's p50


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].lower() in units else int(text)


SIZE = parse_size(SIZE_TEXT)
BENCH = bench_dir("swarm")


def configure(peers=None, rate=None, size=None, prefix=None, suite=None):
    """Overrides the environment's shape, namespace prefix and directory (the modes' flags)."""
    global PEERS, RATE, SIZE, PREFIX, BRIDGE_NS, BENCH
    if peers is not None:
        PEERS = peers
    if rate is not None:
        RATE = rate
    if size is not None:
        SIZE = parse_size(size)
    if prefix is not None:
        PREFIX = prefix
        BRIDGE_NS = f"{PREFIX}-br"
    if suite is not None:
        BENCH = bench_dir(suite)


def host_ns(i):
    return f"{PREFIX}-h{i}"


def addr(i):
    return f"10.77.0.{i + 1}"


def sh(*cmd, check=True, quiet=True):
    r = subprocess.run(list(cmd), capture_output=quiet, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"swarm: {' '.join(cmd)} failed: {r.stderr.strip() if quiet else ''}")
    return r


def in_ns(i, *cmd):
    return ["ip", "netns", "exec", host_ns(i)] + list(cmd)


# MARK: - Namespaces


def existing_namespaces():
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX + "-")]


def teardown():
    for ns in existing_namespaces():
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "delete", ns, check=False)


def setup(hosts):
    teardown()
    sh("ip", "netns", "add", BRIDGE_NS)
    sh("ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", BRIDGE_NS, "link", "set", "br0", "up")
    rate = f"{RATE}mbit"
    for i in range(hosts):
        ns = host_ns(i)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"b{i}", "netns", BRIDGE_NS)
        sh("ip", "-n", ns, "addr", "add", f"{addr(i)}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", BRIDGE_NS, "link", "set", f"b{i}", "master", "br0")
        sh("ip", "-n", BRIDGE_NS, "link", "set", f"b{i}", "up")
        # Upload: the host's eth0; download: the bridge's side of its veth.
        sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "20ms")
        sh("ip", "netns", "exec", BRIDGE_NS, "tc", "qdisc", "add", "dev", f"b{i}", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "20ms")


# MARK: - Processes


class Proc:
    def __init__(self, host, cmd, log, detach=False):
        """`detach`: its own session, so it outlives this script (tools/swarm up)."""
        self.host, self.cmd, self.log = host, cmd, log
        with open(log, "w") as out:
            self.p = subprocess.Popen(in_ns(host, *cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=detach)

    def wait_log(self, text, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.log) and text in open(self.log, errors="replace").read():
                return
            if self.p.poll() is not None:
                raise SystemExit(f"swarm: {self.log}: exited with {self.p.returncode}:\n{open(self.log).read()[-2000:]}")
            time.sleep(0.05)
        raise SystemExit(f"swarm: {self.log}: no '{text}' in {timeout}s")

    def pid_in_ns(self):
        # `ip netns exec` execs the command: the Popen pid is the command's.
        return self.p.pid

    def kill(self):
        """SIGKILL, and reap it."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def hwm_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def nginx_conf(root, log):
    conf = os.path.join(BENCH, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; user root; worker_processes 1; pid {BENCH}/nginx.pid; error_log {BENCH}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{ log_format bytes '$request_uri $body_bytes_sent $msec $request_time $http_range'; access_log {log} bytes;
  sendfile on; tcp_nopush on; keepalive_timeout 60;
  server {{ listen {addr(0)}:{ORIGIN_PORT}; root {root}; }} }}
""")
    return conf


def origin_bytes(log, uri):
    """Body bytes nginx sent for exactly `uri` (path and query), by its access log."""
    return sum(n for n, _, _ in origin_requests(log, uri))


def origin_requests(log, uri):
    """Each response nginx sent for exactly `uri`: (body bytes, wall-clock seconds when the
    request came in, the request's Range header or None), in the log's order."""
    out = []
    if os.path.exists(log):
        for line in open(log):
            parts = line.split()
            if len(parts) == 5 and parts[0] == uri:
                out.append((int(parts[1]), float(parts[2]) - float(parts[3]), None if parts[4] == "-" else parts[4]))
    return out


def run_all(cmds, timeout, fault=None):
    """Starts every (host, argv) at once; returns per-host seconds from the common start and exit
    codes. `fault`: (delay s, fn(start)) run on a thread at `delay` after the start (a thread, so
    the completion times go on being read while it runs)."""
    global COMMON_START
    start = COMMON_START = time.monotonic()
    if os.environ.get("DARTER_SWARM_TRACE") == "1":  # the peers' trace lines use the same clock
        print(f"  trace: the common start at monotonic {start * 1000:.0f} ms")
    procs = [(h, subprocess.Popen(in_ns(h, *argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)) for h, argv in cmds]
    timer = None
    if fault:
        timer = threading.Timer(fault[0], fault[1], args=(start,))
        timer.daemon = True
        timer.start()
    times, codes, errors = {}, {}, {}
    pending = dict(procs)
    while pending and time.monotonic() - start < timeout:
        for h, p in list(pending.items()):
            if p.poll() is not None:
                times[h] = time.monotonic() - start
                codes[h] = p.returncode
                errors[h] = p.stderr.read()[-500:]
                del pending[h]
        time.sleep(0.01)
    for h, p in pending.items():
        p.kill()
        p.wait()
        times[h], codes[h], errors[h] = float("inf"), -9, f"timed out after {timeout:.0f}s"
    if timer:
        timer.cancel()
        timer.join()
    return times, codes, errors


COMMON_START = 0.0  # run_all's last start (time.monotonic(), the clock of the peers' trace lines)


def traced(data, start):
    """Per peer log under `data` written with DARTER_SWARM_TRACE=1: (seconds from `start` to
    its task's beginning, to its last piece landing, [each piece request's seconds from sent to
    landed]), from its `swarm-trace:` lines."""
    out = {}
    for name in sorted(os.listdir(data)):
        if not (name.startswith("peer") and name.endswith(".log")):
            continue
        began, last, took = None, 0, []
        for line in open(os.path.join(data, name), errors="replace"):
            if "swarm-trace: " not in line:
                continue
            if " began at monotonic " in line and began is None:
                began = int(line.split(" began at monotonic ", 1)[1].split()[0]) / 1000 - start
            elif " ms, took " in line:
                last = max(last, int(line.split(" at ", 1)[1].split(" ms", 1)[0]) / 1000)
                took.append(int(line.split(" ms, took ", 1)[1].split()[0]) / 1000)
        if began is not None:
            out[name[:-len(".log")]] = (began, began + last, took)
    return out


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-len(s) * p // 1)) - 1))
    return s[k]


# MARK: - Darter


class Darter:
    """The scheduler and seed on host 0 and `darter peer` on hosts 1..PEERS, on fresh data
    directories under `data` (logs there too), registered and ready."""

    def __init__(self, data, detach=False, labels=False):
        self.data = data
        def idc(i):
            return ["--idc", f"dc{i % 2}"] if labels else []
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        self.sched_url = f"http://{addr(0)}:{SCHED_PORT}"
        self.sched_cmd = [DARTER, "scheduler", "--listen", f"{addr(0)}:{SCHED_PORT}"]
        self.sched = Proc(0, self.sched_cmd, f"{data}/scheduler.log", detach)
        self.sched.wait_log("listening on")
        self.seed = Proc(0, [DARTER, "seed", "--listen", f"{addr(0)}:{SEED_PORT}", "--data-dir", f"{data}/seed", "--scheduler", self.sched_url,
                             "--host-id", "seed-0", "--upload-rate", str(RATE * 125_000)] + idc(0), f"{data}/seed.log", detach)
        self.seed.wait_log("listening on")
        self.peers = {}
        for i in range(1, PEERS + 1):
            self.peers[i] = Proc(i, [DARTER, "peer", "--listen", f"{addr(i)}:{PEER_PORT}", "--data-dir", f"{data}/peer{i}", "--scheduler",
                                     self.sched_url, "--host-id", f"peer-{i}", "--upload-rate", str(RATE * 125_000)] + idc(i) + PEER_ARGS,
                                 f"{data}/peer{i}.log", detach)
        for p in self.peers.values():
            p.wait_log("listening on")
            p.wait_log("registered with scheduler")
        self.seed.wait_log("registered with scheduler")

    def children(self, url):
        """Per peer host: how many members of `url`'s task list it as a parent now (the
        scheduler's /debug/tasks); {} when the scheduler does not answer."""
        try:
            tasks = json.loads(self.scheduler_get("/debug/tasks") or "")
        except ValueError:
            return {}
        counts = {i: 0 for i in self.peers}
        for t in tasks:
            if t.get("url") != url:
                continue
            for m in t.get("members", []):
                for parent in m.get("parents", []):
                    if parent.startswith("peer-") and int(parent[5:]) in counts:
                        counts[int(parent[5:])] += 1
        return counts

    def scheduler_get(self, path):
        r = subprocess.run(in_ns(0, "curl", "-sf", "-m", "2", f"{self.sched_url}{path}"), capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    def counters(self):
        """The scheduler's counters (its /metrics, darter_scheduler_*_total), short names."""
        out = {}
        for line in (self.scheduler_get("/metrics") or "").splitlines():
            if line.startswith("darter_scheduler_") and "_total " in line:
                name, value = line.split()
                out[name[len("darter_scheduler_"):-len("_total")]] = int(float(value))
        return out

    def stop(self):
        for p in list(self.peers.values()) + [self.seed, self.sched]:
            p.stop()


def completions(data):
    """Per peer log under `data`: (its name, {parent: pieces}, pieces from the origin), from
    its `swarm: URL: complete, N pieces from parents (peer-2 40, seed-0 3), M from the origin`
    lines, one per task."""
    for name in sorted(os.listdir(data)):
        if not (name.startswith("peer") and name.endswith(".log")):
            continue
        for line in open(os.path.join(data, name), errors="replace"):
            if ": complete, " not in line or " pieces from parents (" not in line:
                continue
            parents = {}
            for part in line.split(" pieces from parents (", 1)[1].split(")", 1)[0].split(", "):
                if " " in part:
                    parent, n = part.rsplit(" ", 1)
                    parents[parent] = int(n)
            origin = line.rsplit(" from the origin", 1)[0].rsplit(" ", 1)[-1]
            yield name[:-4], parents, int(origin) if origin.isdigit() else 0


def origin_pieces(data):
    """Per peer: the pieces its log says came from the origin."""
    out = {}
    for peer, _, origin in completions(data):
        if origin:
            out[peer] = out.get(peer, 0) + origin
    return out


def cross_idc_copies(data):
    """Copies of the object that crossed between dc0 (host 0, even peers) and dc1 (odd peers):
    pieces each peer took from a parent of the other one, over the pieces a peer holds."""
    crossed, pieces = 0, 0
    for peer, parents, origin in completions(data):
        pieces = max(pieces, sum(parents.values()) + origin)
        me = int(peer[len("peer"):].lstrip("-"))
        for parent, n in parents.items():
            host = 0 if parent.startswith("seed-") else int(parent.rsplit("-", 1)[1])
            if host % 2 != me % 2:
                crossed += n
    return crossed / pieces if pieces else 0.0


def kill_parent(d, url, info):
    def fire(start):
        counts = d.children(url)
        victim = FAULT_HOST or (max(sorted(counts), key=lambda i: counts[i]) if counts else 1)
        d.peers[victim].kill()
        info["excluded"] = {victim}
        info["note"] = (f"darter peer on h{victim} SIGKILLed at {time.monotonic() - start:.2f}s "
                        f"(then a parent of {counts.get(victim, '?')} members; per peer {counts})")
    return fire


def restart_scheduler(d, info):
    def fire(start):
        try:
            d.sched.kill()
            killed = time.monotonic() - start
            d.sched = Proc(0, d.sched_cmd, f"{d.data}/scheduler-restarted.log")
            d.sched.wait_log("listening on")
            listening = time.monotonic() - start
            # Every host registers again by itself (its keep-alive is answered 404, or fails).
            seen, deadline = {}, time.monotonic() + 20
            while len(seen) < PEERS + 1 and time.monotonic() < deadline:
                try:
                    hosts = json.loads(d.scheduler_get("/debug/hosts") or "")
                except ValueError:
                    hosts = []
                for h in hosts:
                    seen.setdefault(h["id"], time.monotonic() - start)
                time.sleep(0.1)
            order = ", ".join(f"{h} {t:.1f}" for h, t in sorted(seen.items(), key=lambda x: x[1]))
            info["note"] = (f"scheduler SIGKILLed at {killed:.2f}s, listening again at {listening:.2f}s; "
                            f"{len(seen)} of {PEERS + 1} hosts registered again (s: {order})")
        except BaseException as e:  # SystemExit from wait_log: the restart failed
            info["error"] = f"scheduler restart failed: {e}"
    return fire


def darter_run(name, url, digest, ideal, log, fault=None, timeout=None, labels=False, before_stop=None):
    """One darter run on fresh daemons; `fault`: (delay s, fn(daemons, url, info) -> fire(start));
    `labels`: IDC labels (see IDCS); `before_stop`: fn(cmds) run once every get ended, the
    daemons still up, its value the result's "extra". Returns a result dict (times, bad, origin,
    rss, excluded, note, data, crossed, extra, start: run_all's start for the gets)."""
    data = os.path.join(BENCH, name)
    open(log, "w").close()
    d = Darter(data, labels=labels)
    # The bytes are checked by --digest (darter get exits 5 on a mismatch) as they stream to
    # /dev/null: the peer's store holds the one copy on disk, as BitTorrent's download does.
    cmds = [(i, ["sh", "-c", f"exec {DARTER} get '{url}' -O - --daemon http://{addr(i)}:{PEER_PORT} --digest {digest} --no-fallback -q > /dev/null"])
            for i in range(1, PEERS + 1)]
    info = {}
    times, codes, errors = run_all(cmds, timeout=timeout or ideal * 30 + 60,
                                   fault=(fault[0], fault[1](d, url, info)) if fault else None)
    start = COMMON_START  # the gets' common start, the clock of the peers' trace lines
    rss = max(hwm_mib(p.pid_in_ns()) for p in d.peers.values())
    counters = d.counters()
    # A peer logs where its pieces came from once the task is stored complete, which can be
    # just after its reader got the last byte: wait for that line before stopping it.
    for i, p in d.peers.items():
        if i not in info.get("excluded", set()) and codes.get(i) == 0:
            try:
                p.wait_log(": complete, ", timeout=10)
            except SystemExit as e:
                print(f"  {name}: {e}")
    extra = before_stop(cmds) if before_stop else None
    d.stop()
    excluded = info.get("excluded", set())
    bad = {h: (codes[h], errors[h].strip()) for h in codes if codes[h] != 0 and h not in excluded}
    if "error" in info:
        bad[0] = info["error"]
    note = info.get("note", "")
    if note:
        print(f"  {name}: {note}")
    for h in sorted(excluded):
        print(f"  {name}: h{h}'s own darter get (left out): exit {codes[h]} after {times[h]:.2f}s: {errors[h].strip()[-200:]}")
    print(f"  {name}: the scheduler's counters at the end: " + (", ".join(f"{k} {v}" for k, v in counters.items()) or "none (no answer)"))
    if bad:
        print(f"  {name}: failures {bad}; logs in {data}")
    from_origin = origin_pieces(data)
    if from_origin:
        print(f"  {name}: pieces peers took from the origin: {from_origin}")
    crossed = cross_idc_copies(data)
    if IDCS == 2:
        print(f"  {name}: copies of the object that crossed between dc0 and dc1: {crossed:.2f}")
    return {"times": times, "bad": bad, "origin": origin_bytes(log, url.split(f":{ORIGIN_PORT}", 1)[1]) / SIZE, "rss": rss,
            "excluded": excluded, "note": note, "data": data, "crossed": crossed, "extra": extra, "start": start}


# MARK: - Direct and BitTorrent


def direct_run(url, digest, ideal, log):
    open(log, "w").close()
    cmds = [(i, ["sh", "-c", f"curl -sf {url} | sha256sum | grep -q {digest[7:]}"]) for i in range(1, PEERS + 1)]
    times, codes, errors = run_all(cmds, timeout=ideal * PEERS * 3 + 60)
    return {"times": times, "bad": {h: (codes[h], errors[h]) for h in codes if codes[h] != 0},
            "origin": origin_bytes(log, url.split(f":{ORIGIN_PORT}", 1)[1]) / SIZE, "rss": None, "excluded": set()}


BT_SCRIPT = r'''
import libtorrent as lt, sys, time, os
role, torrent, save, port, peers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
s = lt.high_performance_seed() if role == "seed" else lt.default_settings()
s.update({"listen_interfaces": f"{os.environ['BT_ADDR']}:{port}", "enable_dht": False, "enable_lsd": False,
          "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False, "enable_incoming_utp": False,
          "enable_outgoing_tcp": True, "enable_incoming_tcp": True, "alert_mask": 0, "allow_multiple_connections_per_ip": True})
ses = lt.session(s)
info = lt.torrent_info(torrent)
h = ses.add_torrent({"ti": info, "save_path": save, "flags": lt.torrent_flags.seed_mode if role == "seed" else 0})
time.sleep(0.3)
for p in peers:
    a, pt = p.split(":")
    h.connect_peer((a, int(pt)))
if role == "seed":
    print("seeding", flush=True)
    while True:
        time.sleep(1)
while not h.status().is_seeding:
    time.sleep(0.02)
print("done", flush=True)
# keep seeding for the others until killed
while True:
    time.sleep(1)
'''


def bt_run(path, ideal):
    work = os.path.join(BENCH, "bt")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    script = os.path.join(work, "bt.py")
    open(script, "w").write(BT_SCRIPT)
    torrent = os.path.join(work, "obj.torrent")
    mk = (f"import libtorrent as lt; fs = lt.file_storage(); lt.add_files(fs, {path!r}); "
          f"t = lt.create_torrent(fs, {4 << 20}); lt.set_piece_hashes(t, {os.path.dirname(path)!r}); "
          f"open({torrent!r}, 'wb').write(lt.bencode(t.generate()))")
    sh(SYSTEM_PYTHON, "-c", mk)
    everyone = [f"{addr(i)}:{BT_PORT}" for i in range(PEERS + 1)]
    seed = subprocess.Popen(in_ns(0, "env", f"BT_ADDR={addr(0)}", SYSTEM_PYTHON, script, "seed", torrent, os.path.dirname(path), str(BT_PORT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert seed.stdout.readline().strip() == "seeding", "libtorrent seeder did not start"
    start = time.monotonic()
    leechers = {}
    for i in range(1, PEERS + 1):
        save = os.path.join(work, f"h{i}")
        os.makedirs(save)
        leechers[i] = subprocess.Popen(in_ns(i, "env", f"BT_ADDR={addr(i)}", SYSTEM_PYTHON, script, "leech", torrent, save, str(BT_PORT),
                                             *[e for k, e in enumerate(everyone) if k != i]),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    times = {}
    import selectors
    sel = selectors.DefaultSelector()
    for i, p in leechers.items():
        sel.register(p.stdout, selectors.EVENT_READ, i)
    deadline = start + ideal * 30 + 60
    while len(times) < PEERS and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.05):
            line = key.fileobj.readline()
            if line.strip() == "done" and key.data not in times:
                times[key.data] = time.monotonic() - start
            elif line == "":
                sel.unregister(key.fileobj)
    bad = {}
    for i in range(1, PEERS + 1):
        if i not in times:
            times[i] = float("inf")
            bad[i] = "did not finish"
        else:
            got = os.path.join(work, f"h{i}", os.path.basename(path))
            if sha256_file(got) != sha256_file(path):
                bad[i] = "wrong bytes"
    for p in list(leechers.values()) + [seed]:
        p.kill()
        p.wait()
    shutil.rmtree(work, ignore_errors=True)
    return {"times": times, "bad": bad, "origin": None, "rss": None, "excluded": set()}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


# MARK: - Modes


def require_root(suite):
    """Root and the darter binary, or exit naming `suite`; SIGINT and SIGTERM exit through the
    cleanup (`finally` blocks remove the namespaces)."""
    if os.geteuid() != 0:
        raise SystemExit(f"{suite}: needs root (network namespaces, tc)")
    if not os.path.exists(DARTER):
        raise SystemExit(f"{suite}: no darter binary at {DARTER}")
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: sys.exit(1))


def prepare():
    """Root, the binary, cleanup at exit; the object under BENCH/origin; (path, digest, ideal)."""
    require_root("swarm")
    root = os.path.join(BENCH, "origin")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "obj.bin")
    if not os.path.exists(path) or os.path.getsize(path) != SIZE:
        with open(path, "wb") as f:
            write_random(f, SIZE)
    digest = "sha256:" + sha256_file(path)
    ideal = SIZE / (RATE * 125_000)  # F / min(S, D, (S + N U)/N) with S = U = D
    return path, digest, ideal


def start_origin(root, detach=False):
    log = os.path.join(BENCH, "nginx-access.log")
    nginx = Proc(0, ["nginx", "-c", nginx_conf(root, log)], os.path.join(BENCH, "nginx.out"), detach)
    time.sleep(0.5)
    if nginx.p.poll() is not None:
        raise SystemExit(f"swarm: nginx exited with {nginx.p.returncode}:\n{open(nginx.log).read()[-2000:]}")
    return nginx, log


def bench():
    atexit.register(teardown)
    path, digest, ideal = prepare()
    print(f"swarm benchmark: {PEERS} peers + host 0 (origin, scheduler, seed), links {RATE} Mbit/s both ways, "
          f"object {SIZE} bytes; T_min {ideal:.2f} s")
    setup(PEERS + 1)
    nginx, log = start_origin(os.path.dirname(path))
    url = f"http://{addr(0)}:{ORIGIN_PORT}/obj.bin"
    results = {}
    try:
        if "darter" not in SKIP:
            results["darter"] = darter_run("darter", url, digest, ideal, log, labels=IDCS == 2)
            if IDCS == 2:
                results["no-labels"] = darter_run("no-labels", url + "?run=no-labels", digest, ideal, log)
            clean = [t for t in results["darter"]["times"].values() if t != float("inf")]
            if FAULTS and clean:
                at = FAULT_AT * statistics.median(clean)
                results["parent-kill"] = darter_run("parent-kill", url + "?run=parent-kill", digest, ideal, log,
                                                    fault=(at, lambda d, u, info: kill_parent(d, u, info)))
                results["sched-restart"] = darter_run("sched-restart", url + "?run=sched-restart", digest, ideal, log,
                                                      fault=(at, lambda d, u, info: restart_scheduler(d, info)))
        if "direct" not in SKIP:
            results["direct"] = direct_run(url, digest, ideal, log)
        if "bt" not in SKIP:
            results["bittorrent"] = bt_run(path, ideal)
    finally:
        nginx.stop()
        teardown()
    print()
    print(f"{'':14}" + "".join(f"{'h' + str(i):>8}" for i in range(1, PEERS + 1))
          + f"{'p50/T':>9}{'p99/T':>9}{'origin':>9}{'p99 s':>9}{'slowdown':>10}")
    summary = {}
    for name, r in results.items():
        t = [r["times"][i] for i in range(1, PEERS + 1) if i not in r["excluded"]]
        p50, p99 = pct(t, 0.5), pct(t, 0.99)
        summary[name] = dict(r, p50=p50 / ideal, p99=p99 / ideal, p99s=p99)
        slowdown = ""
        if name in ("parent-kill", "sched-restart"):
            slowdown = f"{p99 / summary['darter']['p99s']:10.2f}"
        cells = "".join(f"{'killed':>8}" if i in r["excluded"] else f"{r['times'][i]:8.2f}" for i in range(1, PEERS + 1))
        print(f"{name:14}" + cells + f"{p50 / ideal:9.2f}{p99 / ideal:9.2f}"
              + (f"{r['origin']:9.3f}" if r["origin"] is not None else f"{'-':>9}") + f"{p99:9.2f}" + slowdown
              + (f"   FAILED {r['bad']}" if r["bad"] else ""))
    if "parent-kill" in summary:
        print(f"(faults at {FAULT_AT:.0%} of the clean p50; slowdown = fault p99 / clean p99, goal <= 1.10; "
              f"sched-restart origin goal <= 1.02)")
    print()
    d = summary.get("darter")
    bt = summary.get("bittorrent")
    direct = summary.get("direct")
    if d:
        if bt:
            print(f"BENCH swarm.p50_vs_ideal darter={d['p50']:.2f} anchor={bt['p50']:.2f} ratio={bt['p50'] / d['p50']:.2f} unit=x")
            print(f"BENCH swarm.p99_vs_ideal darter={d['p99']:.2f} anchor={bt['p99']:.2f} ratio={bt['p99'] / d['p99']:.2f} unit=x")
        if direct:
            print(f"BENCH swarm.origin_bytes darter={d['origin']:.3f} anchor={direct['origin']:.3f} ratio={direct['origin'] / d['origin']:.2f} unit=x")
            print(f"BENCH swarm.vs_direct darter={d['p99']:.2f} anchor={direct['p99']:.2f} ratio={direct['p99'] / d['p99']:.2f} unit=x")
        print(f"BENCH swarm.peer_rss_mib darter={d['rss']:.0f} anchor=- ratio=- unit=MiB")
        n = summary.get("no-labels")
        if n:
            print(f"BENCH swarm.cross_idc_copies darter={d['crossed']:.2f} anchor={n['crossed']:.2f} "
                  f"ratio={n['crossed'] / max(d['crossed'], 0.01):.2f} unit=copies (anchor: the same swarm without IDC labels)")
        for name, metric in (("parent-kill", "parent_kill_slowdown"), ("sched-restart", "scheduler_restart_slowdown")):
            f = summary.get(name)
            if f:
                print(f"BENCH swarm.{metric} darter={f['p99s']:.2f} anchor={d['p99s']:.2f} ratio={d['p99s'] / f['p99s']:.2f} unit=s")
        f = summary.get("sched-restart")
        if f:
            print(f"BENCH swarm.scheduler_restart_origin_bytes darter={f['origin']:.3f} anchor={d['origin']:.3f} "
                  f"ratio={d['origin'] / f['origin'] if f['origin'] else 0:.2f} unit=x")
    if any(s["bad"] for s in summary.values()):
        sys.exit(1)


def up():
    """The swarm, left running: nginx, scheduler, seed and peers in their own sessions."""
    path, digest, _ = prepare()
    try:
        setup(PEERS + 1)
        start_origin(os.path.dirname(path), detach=True)
        d = Darter(os.path.join(BENCH, "darter"), detach=True)
    except BaseException:
        teardown()
        raise
    url = f"http://{addr(0)}:{ORIGIN_PORT}/obj.bin"
    state = {"prefix": PREFIX, "peers": PEERS, "rate": RATE, "size": SIZE, "url": url, "digest": digest, "dir": BENCH}
    with open(os.path.join(BENCH, "state.json"), "w") as f:
        json.dump(state, f)
    print(f"swarm up: {PEERS} peers ({host_ns(1)}..{host_ns(PEERS)}, {addr(1)}..{addr(PEERS)}) + {host_ns(0)} ({addr(0)}: "
          f"nginx :{ORIGIN_PORT}, scheduler :{SCHED_PORT}, seed :{SEED_PORT}); links {RATE} Mbit/s both ways")
    print(f"  object  {url}  ({SIZE} bytes, {digest}; any other file under {os.path.dirname(path)} is served too)")
    print(f"  get     ip netns exec {host_ns(1)} {DARTER} get '{url}' -O /tmp/obj.bin --daemon http://{addr(1)}:{PEER_PORT} --digest {digest}")
    print(f"          (a new task: add a query, e.g. '{url}?try=2'; darter get --help)")
    print(f"  views   ip netns exec {host_ns(0)} curl -s http://{addr(0)}:{SCHED_PORT}/debug/tasks   (and /debug/hosts, /metrics)")
    print(f"  logs    {d.data}/{{scheduler,seed,peer1..peer{PEERS}}}.log, {BENCH}/nginx-access.log")
    print(f"  pids    ip netns pids {host_ns(1)}   (kill one to try a fault)")
    print("  down    tools/swarm down")


def down():
    had = existing_namespaces()
    teardown()
    data = os.path.join(BENCH, "darter")
    if os.path.isdir(data):  # the stores and the object go; the logs stay
        for name in os.listdir(data):
            if os.path.isdir(os.path.join(data, name)):
                shutil.rmtree(os.path.join(data, name), ignore_errors=True)
    shutil.rmtree(os.path.join(BENCH, "origin"), ignore_errors=True)
    left = existing_namespaces()
    if left:
        raise SystemExit(f"swarm down: namespaces left: {left}")
    print(f"swarm down: {len(had)} namespaces ({PREFIX}-*) removed; logs stay in {data}" if had else f"swarm down: no {PREFIX}-* namespaces")


def check(timeout):
    """A small darter-only swarm: exit 1 unless every host's bytes are exact (--digest) within
    `timeout` and the origin sent at most 1.05 x the object."""
    atexit.register(teardown)
    path, digest, ideal = prepare()
    began = time.monotonic()
    ok = False
    try:
        setup(PEERS + 1)
        nginx, log = start_origin(os.path.dirname(path))
        url = f"http://{addr(0)}:{ORIGIN_PORT}/obj.bin"
        r = darter_run("darter", url, digest, ideal, log, timeout=timeout)
        nginx.stop()
        t = [r["times"][i] for i in range(1, PEERS + 1)]
        problems = []
        if r["bad"]:
            problems.append(f"hosts without exact bytes: {r['bad']}")
        if r["origin"] > 1.05:
            problems.append(f"origin sent {r['origin']:.3f} x the object (limit 1.05)")
        print(f"swarm check: {PEERS} peers x {SIZE} bytes at {RATE} Mbit/s ({DARTER}): per host "
              + " ".join(f"h{i}={x:.2f}s" for i, x in enumerate(t, 1)) + f"; origin {r['origin']:.3f} x; {time.monotonic() - began:.1f}s in all")
        for p in problems:
            print(f"swarm check: FAILED: {p}; logs in {r['data']}", file=sys.stderr)
        ok = not problems
    finally:
        teardown()
        left = existing_namespaces()
        if left:
            print(f"swarm check: namespaces left after teardown: {left}", file=sys.stderr)
            ok = False
    if not ok:
        sys.exit(1)
    shutil.rmtree(BENCH, ignore_errors=True)
    print("swarm check: ok")


def cpu_times():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def ping_rtt(src, dst, count=20):
    """Mean round trip (ms) from host `src` to host `dst` by ping, or None without ping."""
    if not shutil.which("ping"):
        return None
    out = sh("ip", "netns", "exec", host_ns(src), "ping", "-q", "-c", str(count), "-i", "0.2", addr(dst), check=False).stdout
    for line in out.splitlines():
        if "min/avg/max" in line:
            return float(line.split("=")[1].split("/")[1])
    return None


def qdisc_totals(hosts):
    """(bytes, packets dropped) the links' tbf qdiscs sent, summed over both directions of hosts
    0..hosts-1: each host's upload (eth0 in its namespace) and download (its port on the bridge)."""
    sent = dropped = 0
    for i in range(hosts):
        for ns, dev in ((host_ns(i), "eth0"), (BRIDGE_NS, f"b{i}")):
            out = sh("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev, check=False).stdout
            words = out.replace(",", " ").replace("(", " ").replace(")", " ").split()
            if "Sent" in words:
                sent += int(words[words.index("Sent") + 1])
            if "dropped" in words:
                dropped += int(words[words.index("dropped") + 1])
    return sent, dropped


def simulate(m, spread):
    """`darter simulate` at this shape with what calibrate measured (`m`: round trip under load,
    start, the links' payload per byte, the reader's rate) and the flow spread; (p50, p99) ÷ T_min
    and the simulated piece requests' (p50, p90) seconds."""
    out = subprocess.run([DARTER, "simulate", "--peers", str(PEERS), "--link", f"{RATE}m", "--size", f"{SIZE >> 20}m",
                          "--rtt", f"{m['rtt']:.1f}ms", "--start", f"{m['start']:.3f}", "--wire-efficiency", f"{m['wire']:.4f}",
                          "--reader", f"{m['reader'] * 8:.0f}", "--flow-spread", f"{spread:.2f}", "--tick", "0.002", "--timeline"],
                         capture_output=True, text=True, check=True).stdout
    words = out.split()
    took = out.split("sent to landed seconds ", 1)[1].split()
    return (float(words[words.index("p50") + 1]), float(words[words.index("p99") + 1]),
            float(took[took.index("p50") + 1]), float(took[took.index("p90") + 1]))


def fitted_spread(m):
    """The flow spread (0-1.5 by 0.05) whose simulated piece requests' p90 is closest to the
    measured one: TCP's unequal shares, fitted on the slow tail of piece times (what holds a
    download back), not on completion. (Fitted on p90 ÷ p50 instead, the 2026-12-03 rounds gave
    -0.8, +6.1, +6.5 and +11.9 % at the four shapes: the simulator's median piece takes longer
    than the testbed's on slow links, so the ratio asked for more spread there.)"""
    best = None
    for k in range(31):
        spread = k * 0.05
        _, _, _, t90 = simulate(m, spread)
        miss = abs(t90 - m["took90"])
        if best is None or miss < best[0]:
            best = (miss, spread)
    return best[1]


def reader_rate(cmds):
    """Bytes/s a darter get reads a complete task from its own daemon, all peers' gets at once
    (the testbed's cores are shared: what the gets read at when the swarm ends together)."""
    times, codes, errors = run_all(cmds, timeout=SIZE / 1e6 + 60)
    bad = {h: errors[h].strip() for h in codes if codes[h] != 0}
    if bad:
        raise SystemExit(f"calibrate: re-reading the complete task failed: {bad}")
    return SIZE / statistics.median(times.values())


def calibrate(shapes, rounds):
    """The simulator beside the netns swarm (issue 14, docs/SCALE.md): each shape (PEERSxMBITxSIZE)
    run `rounds` times, shapes interleaved. Per run: p50 and p99 ÷ T_min; the machine's CPU busy
    share (user+system+irq from /proc/stat; steal apart); the round trip between two peers under
    load (ping h1 -> h2 from 2 s in); from the peers' traces when each began (its get reached the
    daemon), when its last piece landed, and each piece request's time; the payload the shaped
    links carried per byte (their tbf counters); and the rate at which the peers' gets, all at
    once, read the complete task again from their daemons. Then `darter simulate` at the shape
    for each round with that round's measurements and the flow spread fitted to its piece times
    (their p90). Prints the medians side by side, the difference, and each round's pair."""
    atexit.register(teardown)
    os.environ["DARTER_SWARM_TRACE"] = "1"  # the daemons inherit it: per-piece lines in their logs
    runs = {shape: [] for shape in shapes}
    for rnd in range(rounds):
        for shape in shapes:
            peers, rate, size = shape.split("x")
            configure(int(peers), int(rate), size)
            path, digest, ideal = prepare()
            setup(PEERS + 1)
            nginx, log = start_origin(os.path.dirname(path))
            url = f"http://{addr(0)}:{ORIGIN_PORT}/obj.bin?round={rnd}"
            got = {}
            def probe(d, u, info):
                def fire(start):
                    got["rtt"] = ping_rtt(1, 2)
                return fire
            before = cpu_times()
            try:
                r = darter_run("darter", url, digest, ideal, log, fault=(2.0, probe), before_stop=reader_rate)
                # Each byte of the object a peer received crossed two shaped links (its parent's
                # upload, its own download): what the links carried beside it is the wire's cost.
                sent, dropped = qdisc_totals(PEERS + 1)
            finally:
                nginx.stop()
                teardown()
            after = cpu_times()
            d = [b - a for a, b in zip(before, after)]
            busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / max(1, sum(d))
            steal = d[7] / max(1, sum(d))
            t = [r["times"][i] for i in range(1, PEERS + 1)]
            if r["bad"]:
                raise SystemExit(f"calibrate: {shape} round {rnd + 1} failed: {r['bad']}")
            tr = traced(r["data"], r["start"])
            if len(tr) != PEERS:
                raise SystemExit(f"calibrate: {shape} round {rnd + 1}: {len(tr)} of {PEERS} peers' traces read")
            held = [h for _, h, _ in tr.values()]
            took = [x for _, _, ts in tr.values() for x in ts]
            x = dict(p50=pct(t, 0.5) / ideal, p99=pct(t, 0.99) / ideal, busy=busy, steal=steal, rtt=got.get("rtt"),
                     wire=2 * PEERS * SIZE / sent, dropped=dropped, start=statistics.median(b for b, _, _ in tr.values()),
                     h50=pct(held, 0.5) / ideal, h99=pct(held, 0.99) / ideal, took50=pct(took, 0.5), took90=pct(took, 0.9),
                     reader=r["extra"])
            runs[shape].append(x)
            print(f"  calibrate {shape} round {rnd + 1}: p50 {x['p50']:.2f} p99 {x['p99']:.2f} x T_min (every piece held: "
                  f"{x['h50']:.2f} {x['h99']:.2f}; began {x['start']:.2f} s); CPU busy {busy:.0%} (steal {steal:.0%}); "
                  f"rtt {x['rtt'] if x['rtt'] is not None else '-'} ms; payload per byte on the links {x['wire']:.3f} "
                  f"({dropped} packets dropped); piece requests p50 {x['took50']:.2f} p90 {x['took90']:.2f} s; "
                  f"gets re-reading {x['reader'] / 1e6:.0f} MB/s each", flush=True)
    print()
    print(f"{'shape':12}{'measured':>9}{'p99':>6}{'held':>6}{'p99':>6}{'CPU':>5}{'rtt ms':>7}{'start':>6}{'wire':>6}{'reader':>7}"
          f"{'requests p50':>13}{'p90':>5}{'spread':>7}{'sim p90':>8}{'simulated':>10}{'p99':>6}{'diff p50':>9}{'p99':>7}")
    for shape in shapes:
        peers, rate, size = shape.split("x")
        configure(int(peers), int(rate), size)
        xs = runs[shape]
        for x in xs:
            # Each round simulated with its own measurements (the testbed's state moves between
            # rounds: a round whose piece requests spread more also ran slower).
            x["rtt"] = x["rtt"] if x["rtt"] is not None else 25.0
            x["spread"] = fitted_spread(x)
            x["s50"], x["s99"], _, x["sim90"] = simulate(x, x["spread"])
        med = lambda k: statistics.median(x[k] for x in xs)
        m50, m99, s50, s99 = med("p50"), med("p99"), med("s50"), med("s99")
        print(f"{shape:12}{m50:9.2f}{m99:6.2f}{med('h50'):6.2f}{med('h99'):6.2f}{med('busy'):5.0%}{med('rtt'):7.1f}{med('start'):6.2f}"
              f"{med('wire'):6.3f}{med('reader') / 1e6:7.0f}{med('took50'):13.2f}{med('took90'):5.2f}{med('spread'):7.2f}{med('sim90'):8.2f}"
              f"{s50:10.2f}{s99:6.2f}{s50 / m50 - 1:9.1%}{s99 / m99 - 1:7.1%}")
        print(f"{'':12}rounds p99 measured / simulated: " + ", ".join(f"{x['p99']:.2f} / {x['s99']:.2f}" for x in xs))
        tag = shape.replace("x", "_", 1).split("x")[0]
        print(f"BENCH calibrate.p99_{tag} darter={s99:.2f} anchor={m99:.2f} ratio={m99 / s99:.2f} unit=x (simulated vs measured)")
    print("(medians of the rounds. measured: each peer's darter get from its start to its exit; held: to its last piece landing"
          " (its trace); CPU: the machine's busy share; reader: MB/s a get re-read the task at, all at once; requests: piece"
          " request seconds, sent to landed; spread: the flow spread whose simulated requests' p90 is closest to the"
          " round's (sim p90); simulated: darter simulate with the round's own measurements; the goal is a difference within 10 %)")


def main():
    ap = argparse.ArgumentParser(prog="swarm.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "up", "down", "check", "calibrate"])
    ap.add_argument("--peers", type=int)
    ap.add_argument("--rate", type=int, help="Mbit/s, every link both ways")
    ap.add_argument("--size", help="object size: 256m, 1g, ...")
    ap.add_argument("--timeout", type=float, default=45, help="check: seconds the gets may take (45)")
    ap.add_argument("--shapes", default="8x200x256m,4x200x256m,8x100x128m,8x50x64m",
                    help="calibrate: PEERSxMBITxSIZE,... (default: the benchmark's shape, half its peers, and slower links at the same T_min)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")), help="calibrate: rounds, shapes interleaved (ROUNDS, 3)")
    args = ap.parse_args()
    if args.mode == "bench":
        configure(args.peers, args.rate, args.size)
        bench()
    elif args.mode == "calibrate":
        configure(suite="swarm-calibrate")
        calibrate(args.shapes.split(","), args.rounds)
    elif args.mode in ("up", "down"):
        configure(args.peers, args.rate, args.size, suite="swarm-up")
        up() if args.mode == "up" else down()
    else:
        # Its own prefix and directory: it never tears down a benchmark's or tools/swarm up's swarm.
        configure(args.peers or 4, args.rate or 200, args.size or "32m", prefix=os.environ.get("SWARM_PREFIX", "dsc"), suite="swarm-check")
        check(args.timeout)


if __name__ == "__main__":
    main()
