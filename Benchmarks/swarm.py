#!/usr/bin/env python3
"""tools/bench swarm: a swarm of network-namespace hosts on one bridge (its own namespace; nothing
touches the root namespace's network), every link shaped in both directions with tbf (upload on
the host's eth0, download on the bridge-side veth). Host 0 runs the origin (nginx), the scheduler
and a seed; hosts 1..N run `darter peer`, then all run `darter get -O -` at once (bytes checked
with --digest as they stream). In the same run, on the same hosts and links: every host straight from the origin
(curl), and BitTorrent (libtorrent 2.0, seeder on host 0, uTP off, every leecher handed every
host). Completion times are from the common start; T_min = F / min(S, D, (S + N*U)/N) with every
link the same rate (REFERENCE-P2P section 1).

Environment: PEERS (8), RATE (200, Mbit/s), SIZE (256m), SKIP (comma list of darter,direct,bt),
DARTER_PEER_ARGS (extra `darter peer` flags),
DARTER_BENCH_DIR (.build/bench), DARTER_BIN (.build/release/darter). Needs root (namespaces).
Prints per-host times, a table, and BENCH lines (ratio > 1 = Darter better)."""
import atexit, hashlib, json, os, shutil, signal, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DARTER, bench_dir, write_random  # noqa: E402

PEERS = int(os.environ.get("PEERS", "8"))
RATE = int(os.environ.get("RATE", "200"))  # Mbit/s
SIZE_TEXT = os.environ.get("SIZE", "256m")
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))
PEER_ARGS = os.environ.get("DARTER_PEER_ARGS", "").split()
PREFIX = "dsw"
BRIDGE_NS = f"{PREFIX}-br"
ORIGIN_PORT, SEED_PORT, SCHED_PORT, PEER_PORT = 8080, 65001, 65002, 65001
BT_PORT = 6881
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's libtorrent is for the system interpreter


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].lower() in units else int(text)


SIZE = parse_size(SIZE_TEXT)
BENCH = bench_dir("swarm")
os.makedirs(BENCH, exist_ok=True)


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
    def __init__(self, host, cmd, log):
        self.host, self.log = host, log
        self.p = subprocess.Popen(in_ns(host, *cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT)

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
http {{ log_format bytes '$request_uri $body_bytes_sent'; access_log {log} bytes;
  sendfile on; tcp_nopush on; keepalive_timeout 60;
  server {{ listen {addr(0)}:{ORIGIN_PORT}; root {root}; }} }}
""")
    return conf


def origin_bytes(log):
    total = 0
    if os.path.exists(log):
        for line in open(log):
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("/obj.bin"):
                total += int(parts[1])
    return total


def run_all(cmds, timeout):
    """Starts every (host, argv) at once; returns per-host seconds from the common start and exit codes."""
    start = time.monotonic()
    procs = [(h, subprocess.Popen(in_ns(h, *argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)) for h, argv in cmds]
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
        times[h], codes[h], errors[h] = float("inf"), -9, "timed out"
    return times, codes, errors


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-len(s) * p // 1)) - 1))
    return s[k]


# MARK: - The three ways


def darter_run(url, digest, ideal):
    data = os.path.join(BENCH, "darter")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    sched = Proc(0, [DARTER, "scheduler", "--listen", f"{addr(0)}:{SCHED_PORT}"], f"{data}/scheduler.log")
    sched.wait_log("listening on")
    sched_url = f"http://{addr(0)}:{SCHED_PORT}"
    seed = Proc(0, [DARTER, "seed", "--listen", f"{addr(0)}:{SEED_PORT}", "--data-dir", f"{data}/seed", "--scheduler", sched_url,
                    "--host-id", "seed-0", "--upload-rate", str(RATE * 125_000)], f"{data}/seed.log")
    seed.wait_log("listening on")
    peers = []
    for i in range(1, PEERS + 1):
        p = Proc(i, [DARTER, "peer", "--listen", f"{addr(i)}:{PEER_PORT}", "--data-dir", f"{data}/peer{i}", "--scheduler", sched_url,
                     "--host-id", f"peer-{i}", "--upload-rate", str(RATE * 125_000)] + PEER_ARGS, f"{data}/peer{i}.log")
        peers.append(p)
    for p in peers:
        p.wait_log("listening on")
        p.wait_log("registered with scheduler")
    seed.wait_log("registered with scheduler")
    # The bytes are checked by --digest (darter get exits 5 on a mismatch) as they stream to
    # /dev/null: the peer's store holds the one copy on disk, as BitTorrent's download does.
    cmds = [(i, ["sh", "-c", f"{DARTER} get {url} -O - --daemon http://{addr(i)}:{PEER_PORT} --digest {digest} --no-fallback -q > /dev/null"])
            for i in range(1, PEERS + 1)]
    times, codes, errors = run_all(cmds, timeout=ideal * 30 + 60)
    rss = max(hwm_mib(p.pid_in_ns()) for p in peers)
    for p in peers + [seed, sched]:
        p.stop()
    bad = {h: (codes[h], errors[h]) for h in codes if codes[h] != 0}
    if bad:
        print(f"  darter: failures {bad}; logs in {data}")
    return times, bad, rss, data


def direct_run(url, digest, ideal):
    out = os.path.join(BENCH, "direct")
    os.makedirs(out, exist_ok=True)
    cmds = [(i, ["sh", "-c", f"curl -sf {url} | sha256sum | grep -q {digest[7:]}"]) for i in range(1, PEERS + 1)]
    times, codes, errors = run_all(cmds, timeout=ideal * PEERS * 3 + 60)
    return times, {h: (codes[h], errors[h]) for h in codes if codes[h] != 0}


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
    return times, bad


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def main():
    if os.geteuid() != 0:
        raise SystemExit("swarm: needs root (network namespaces, tc)")
    if not os.path.exists(DARTER):
        raise SystemExit(f"swarm: no darter binary at {DARTER}")
    atexit.register(teardown)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: sys.exit(1))
    root = os.path.join(BENCH, "origin")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "obj.bin")
    if not os.path.exists(path) or os.path.getsize(path) != SIZE:
        with open(path, "wb") as f:
            write_random(f, SIZE)
    digest = "sha256:" + sha256_file(path)
    ideal = SIZE / (RATE * 125_000)  # F / min(S, D, (S + N U)/N) with S = U = D
    print(f"swarm benchmark: {PEERS} peers + host 0 (origin, scheduler, seed), links {RATE} Mbit/s both ways, "
          f"object {SIZE} bytes; T_min {ideal:.2f} s")
    setup(PEERS + 1)
    log = os.path.join(BENCH, "nginx-access.log")
    nginx = Proc(0, ["nginx", "-c", nginx_conf(root, log)], os.path.join(BENCH, "nginx.out"))
    time.sleep(0.5)
    url = f"http://{addr(0)}:{ORIGIN_PORT}/obj.bin"
    results = {}
    try:
        if "darter" not in SKIP:
            open(log, "w").close()
            times, bad, rss, data = darter_run(url, digest, ideal)
            results["darter"] = (times, bad, origin_bytes(log) / SIZE, rss)
        if "direct" not in SKIP:
            open(log, "w").close()
            times, bad = direct_run(url, digest, ideal)
            results["direct"] = (times, bad, origin_bytes(log) / SIZE, None)
        if "bt" not in SKIP:
            times, bad = bt_run(path, ideal)
            results["bittorrent"] = (times, bad, None, None)
    finally:
        nginx.stop()
        teardown()
    print()
    print(f"{'':12}" + "".join(f"{'h' + str(i):>8}" for i in range(1, PEERS + 1)) + f"{'p50/T':>9}{'p99/T':>9}{'origin':>9}")
    summary = {}
    for name, (times, bad, obytes, rss) in results.items():
        t = [times[i] for i in range(1, PEERS + 1)]
        p50, p99 = pct(t, 0.5) / ideal, pct(t, 0.99) / ideal
        summary[name] = (p50, p99, obytes, rss, bad)
        print(f"{name:12}" + "".join(f"{x:8.2f}" for x in t) + f"{p50:9.2f}{p99:9.2f}" + (f"{obytes:9.2f}" if obytes is not None else f"{'-':>9}")
              + (f"   FAILED {bad}" if bad else ""))
    print()
    d = summary.get("darter")
    bt = summary.get("bittorrent")
    direct = summary.get("direct")
    if d:
        if bt:
            print(f"BENCH swarm.p50_vs_ideal darter={d[0]:.2f} anchor={bt[0]:.2f} ratio={bt[0] / d[0]:.2f} unit=x")
            print(f"BENCH swarm.p99_vs_ideal darter={d[1]:.2f} anchor={bt[1]:.2f} ratio={bt[1] / d[1]:.2f} unit=x")
        if direct:
            print(f"BENCH swarm.origin_bytes darter={d[2]:.3f} anchor={direct[2]:.3f} ratio={direct[2] / d[2]:.2f} unit=x")
            print(f"BENCH swarm.vs_direct darter={d[1]:.2f} anchor={direct[1]:.2f} ratio={direct[1] / d[1]:.2f} unit=x")
        print(f"BENCH swarm.peer_rss_mib darter={d[3]:.0f} anchor=- ratio=- unit=MiB")
    failed = any(s[4] for s in summary.values())
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
