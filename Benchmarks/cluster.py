#!/usr/bin/env python3
"""tools/bench cluster: several seeds and schedulers with no shared state, on the swarm harness's
network-namespace hosts (Benchmarks/swarm.py: one bridge in its own namespace, every link shaped
both ways with tbf; nothing touches the root namespace's network). Host 0 runs the origin
(nginx), hosts 1..SCHEDULERS `darter scheduler`, the next SEEDS hosts `darter seed --scheduler
A,B`, the rest `darter peer --scheduler A,B`. Every peer fetches all OBJECTS objects at once
(`darter get --digest` per object checks the bytes as they stream); a host's time is its last
object's, from the common start.

T_min for the set (REFERENCE-P2P section 1, every link the same rate R, K objects of F bytes,
N peers, the origin feeding only the seeds): the origin must send K*F at R, every peer must
receive K*F at R, and the N*K*F bytes the peers need leave N + SEEDS upload links:
T_min = max(K*F/R, N*K*F / ((N + SEEDS) * R)) = K*F/R.

Three runs on the same hosts, each on fresh daemons (empty data directories) and its own URLs
(`/objK.bin?run=NAME`: new tasks; origin bytes counted per run from nginx's access log):
  darter          no fault: origin bytes / (K*F) (goal <= 1.02: each object leaves the origin once)
  seed-kill       at 30 % of the clean run's p50 the seed serving the most tasks then (the
                  schedulers' /debug/tasks) gets SIGKILL; its tasks move to the next seed on the
                  ring. p99 against the clean p99 (goal <= 1.15) and the run's origin bytes; every
                  piece the origin sent twice is checked against the schedulers' views (polled
                  every 0.5 s): read again while a live host held it counts against the goal of 0.
  scheduler-kill  at 30 % of the clean p50 the scheduler holding the most tasks gets SIGKILL (not
                  restarted): its tasks' announces go to the next scheduler on the ring.

Environment: PEERS (12), SEEDS (3), SCHEDULERS (2), OBJECTS (4), RATE (50, Mbit/s), SIZE (32m,
per object), FAULTS (1; 0: the clean run only), DARTER_PEER_ARGS, DARTER_SEED_ARGS,
CLUSTER_PREFIX (dcl), DARTER_BENCH_DIR (.build/bench), DARTER_BIN. Needs root. Prints per-host
times, a table and BENCH lines (ratio > 1 = better than the anchor; the anchor of a slowdown is
the clean run of the same session)."""
import json, os, resource, shutil, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm  # noqa: E402  (the namespaces, links, processes and nginx)
from benchlib import DARTER, write_random  # noqa: E402
from swarm import Proc, addr, in_ns, hwm_mib, origin_bytes, origin_requests, pct, run_all  # noqa: E402

PEERS = int(os.environ.get("PEERS", "12"))
SEEDS = int(os.environ.get("SEEDS", "3"))
SCHEDULERS = int(os.environ.get("SCHEDULERS", "2"))
OBJECTS = int(os.environ.get("OBJECTS", "4"))
# Mbit/s. At 100 the 2-core machine was the bottleneck (12 peers x 12.5 MB/s at ~18-23 CPU-s/GiB
# is over 2 cores): p99 1.79-2.10x T_min under load, against 1.48x at 50.
RATE = int(os.environ.get("RATE", "50"))
SIZE = swarm.parse_size(os.environ.get("SIZE", "32m"))
FAULTS = os.environ.get("FAULTS", "1") not in ("0", "", "no", "false")
PEER_ARGS = os.environ.get("DARTER_PEER_ARGS", "").split()
SEED_ARGS = os.environ.get("DARTER_SEED_ARGS", "").split()
FAULT_AT = 0.3
PORT = 65001  # seeds and peers
SCHED_PORT = 65002

swarm.configure(rate=RATE, prefix=os.environ.get("CLUSTER_PREFIX", "dcl"), suite="cluster")
BENCH = swarm.BENCH
ORIGIN = 0
SCHEDS = list(range(1, SCHEDULERS + 1))
SEED_HOSTS = list(range(SCHEDULERS + 1, SCHEDULERS + SEEDS + 1))
PEER_HOSTS = list(range(SCHEDULERS + SEEDS + 1, SCHEDULERS + SEEDS + PEERS + 1))
HOSTS = 1 + SCHEDULERS + SEEDS + PEERS


def name(h):
    if h in SCHEDS:
        return f"sched-{h}"
    return f"seed-{h}" if h in SEED_HOSTS else f"peer-{h}"


class Cluster:
    """Schedulers, seeds and peers on fresh data directories under `data`, registered and ready."""

    def __init__(self, data):
        self.data = data
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        self.sched_urls = {h: f"http://{addr(h)}:{SCHED_PORT}" for h in SCHEDS}
        urls = ",".join(self.sched_urls.values())
        rate = str(RATE * 125_000)
        self.procs = {}
        for h in SCHEDS:
            self.procs[h] = Proc(h, [DARTER, "scheduler", "--listen", f"{addr(h)}:{SCHED_PORT}"], f"{data}/{name(h)}.log")
        for h in SCHEDS:
            self.procs[h].wait_log("listening on")
        for h in SEED_HOSTS + PEER_HOSTS:
            role = "seed" if h in SEED_HOSTS else "peer"
            extra = SEED_ARGS if role == "seed" else PEER_ARGS
            self.procs[h] = Proc(h, [DARTER, role, "--listen", f"{addr(h)}:{PORT}", "--data-dir", f"{data}/{name(h)}",
                                     "--scheduler", urls, "--host-id", name(h), "--upload-rate", rate] + extra,
                                 f"{data}/{name(h)}.log")
        for h in SEED_HOSTS + PEER_HOSTS:
            self.procs[h].wait_log("listening on")
        # Registered with every scheduler (each must know every host as a parent).
        for h in SEED_HOSTS + PEER_HOSTS:
            end = time.time() + 30
            while open(self.procs[h].log, errors="replace").read().count("registered with scheduler") < SCHEDULERS:
                if time.time() > end:
                    raise SystemExit(f"cluster: {name(h)} did not register with {SCHEDULERS} schedulers")
                time.sleep(0.05)
        self.dead = set()

    def get(self, h, path):
        r = subprocess.run(in_ns(h, "curl", "-sf", "-m", "2", f"{self.sched_urls[h]}{path}"), capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    def debug_tasks(self):
        """Per live scheduler host: its /debug/tasks list."""
        out = {}
        for h in SCHEDS:
            if h in self.dead:
                continue
            try:
                out[h] = json.loads(self.get(h, "/debug/tasks") or "")
            except ValueError:
                out[h] = []
        return out

    def tasks(self, urls, views=None):
        """Per live scheduler host: its tasks among `urls`, as {url: [member host ids]}."""
        return {h: {t["url"]: [m["host"] for m in t.get("members", [])] for t in tasks if t.get("url") in urls}
                for h, tasks in (views or self.debug_tasks()).items()}

    @staticmethod
    def holdings(urls, views):
        """Per url: {host: set of piece indexes it holds}, as the live schedulers see them
        (their `held` ranges, up to a report old), united over the schedulers."""
        out = {u: {} for u in urls}
        for tasks in views.values():
            for t in tasks:
                if t.get("url") in out:
                    for m in t.get("members", []):
                        out[t["url"]].setdefault(m["host"], set()).update(parse_ranges(m.get("held", "")))
        return out

    def counters(self, h):
        out = {}
        for line in (self.get(h, "/metrics") or "").splitlines():
            if line.startswith("darter_scheduler_") and "_total " in line:
                key, value = line.split()
                out[key[len("darter_scheduler_"):-len("_total")]] = int(float(value))
        return out

    def kill(self, h):
        self.procs[h].kill()
        self.dead.add(h)

    def stop(self):
        for h in PEER_HOSTS + SEED_HOSTS + SCHEDS:
            self.procs[h].stop()


def parse_ranges(text):
    """`0-5,9` (a PieceSet's ranges) as a set of indexes."""
    out = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


class Watch:
    """Polls the live schedulers every 0.5 s during a run: when each task gets each seed (a
    trigger, or a take-over), the longest any seed went unheard (/debug/hosts), and which host
    held which pieces when (the schedulers' `held`, stamped with wall-clock time to match nginx's
    log)."""

    def __init__(self, c, urls):
        self.c, self.urls, self.start = c, urls, time.monotonic()
        self.events, self.silence, self.stop = [], {}, threading.Event()
        self.holdings = []  # (wall-clock seconds, {url: {host: pieces}})
        self.seen = set()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.5):
            t = time.monotonic() - self.start
            views = self.c.debug_tasks()
            self.holdings.append((time.time(), self.c.holdings(self.urls, views)))
            for h, tasks in self.c.tasks(self.urls, views).items():
                for u, members in tasks.items():
                    for m in members:
                        if m.startswith("seed-") and (u, m) not in self.seen:
                            self.seen.add((u, m))
                            self.events.append(f"obj{self.urls.index(u)} {m} at {t:.1f}s ({name(h)})")
            for h in SCHEDS:
                if h in self.c.dead:
                    continue
                try:
                    hosts = json.loads(self.c.get(h, "/debug/hosts") or "")
                except ValueError:
                    continue
                for x in hosts:
                    if x["role"] == "seed":
                        self.silence[x["id"]] = max(self.silence.get(x["id"], 0), x["lastSeenMillisecondsAgo"])

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.events, self.silence


def kill_seed(c, urls, info):
    def fire(start):
        by_seed = {h: 0 for h in SEED_HOSTS}
        for tasks in c.tasks(urls).values():
            for members in tasks.values():
                for m in members:
                    if m.startswith("seed-"):
                        by_seed[int(m[5:])] += 1
        victim = max(SEED_HOSTS, key=lambda h: (by_seed[h], -h))
        c.kill(victim)
        info["killed"] = (name(victim), time.time())
        info["note"] = (f"{name(victim)} SIGKILLed at {time.monotonic() - start:.2f}s (then in "
                        f"{by_seed[victim]} tasks; per seed {', '.join(f'{name(h)} {n}' for h, n in by_seed.items())})")
    return fire


def kill_scheduler(c, urls, info):
    def fire(start):
        held = {h: len(t) for h, t in c.tasks(urls).items()}
        victim = max(SCHEDS, key=lambda h: (held.get(h, 0), -h))
        c.kill(victim)
        info["note"] = (f"{name(victim)} SIGKILLed at {time.monotonic() - start:.2f}s (then holding {held.get(victim, 0)} of "
                        f"{OBJECTS} tasks; per scheduler {', '.join(f'{name(h)} {n}' for h, n in held.items())})")
    return fire


def cluster_run(run, objects, ideal, log, fault=None):
    """One run on fresh daemons; `fault`: (delay s, fn(cluster, urls, info) -> fire(start))."""
    data = os.path.join(BENCH, run)
    open(log, "w").close()
    c = Cluster(data)
    urls = [f"http://{addr(ORIGIN)}:{swarm.ORIGIN_PORT}/{os.path.basename(p)}?run={run}" for p, _ in objects]
    # Every peer: one `darter get` per object, all at once; the host is done when its last one is.
    script = " & ".join(
        f"( {DARTER} get '{u}' -O - --daemon http://{{addr}}:{PORT} --digest {d} --no-fallback -q > /dev/null || echo 'object {k}: exit '$? >&2 )"
        for k, (u, (_, d)) in enumerate(zip(urls, objects)))
    # A host fails when any of its gets did: the subshells print why; `wait` alone returns 0.
    cmds = [(h, ["sh", "-c", f"out=$( ( {script.replace('{addr}', addr(h))} & wait ) 2>&1 ); [ -z \"$out\" ] || {{ echo \"$out\" >&2; exit 1; }}"])
            for h in PEER_HOSTS]
    info = {}
    watch = Watch(c, urls)
    times, codes, errors = run_all(cmds, timeout=ideal * 30 + 60, fault=(fault[0], fault[1](c, urls, info)) if fault else None)
    rss = {h: hwm_mib(c.procs[h].pid_in_ns()) for h in SEED_HOSTS + PEER_HOSTS if h not in c.dead}
    counters = {h: c.counters(h) for h in SCHEDS if h not in c.dead}
    tasks = c.tasks(urls)
    events, silence = watch.finish()
    c.stop()
    bad = {h: (codes[h], errors[h].strip()) for h in codes if codes[h] != 0}
    if info.get("note"):
        print(f"  {run}: {info['note']}")
    for h, cs in counters.items():
        print(f"  {run}: {name(h)}'s counters at the end: " + (", ".join(f"{k} {v}" for k, v in cs.items()) or "none"))
    for h, t in tasks.items():
        print(f"  {run}: {name(h)} ends with {len(t)} tasks: " + "; ".join(
            f"obj{urls.index(u)} seeds {','.join(m for m in ms if m.startswith('seed-')) or '-'}" for u, ms in sorted(t.items())))
    print(f"  {run}: seeds joining tasks (the schedulers' view, every 0.5 s): {'; '.join(events)}")
    print(f"  {run}: longest a seed went unheard by a live scheduler (ms): " + ", ".join(f"{k} {v}" for k, v in sorted(silence.items())))
    if bad:
        print(f"  {run}: failures {bad}; logs in {data}")
    from_origin = swarm.origin_pieces(data)
    if from_origin:
        print(f"  {run}: pieces peers took from the origin: {from_origin}")
    per_object = [origin_bytes(log, u.split(f":{swarm.ORIGIN_PORT}", 1)[1]) / SIZE for u in urls]
    print(f"  {run}: origin bytes per object (x the object): " + " ".join(f"obj{k} {x:.3f}" for k, x in enumerate(per_object)))
    again, with_copy = refetches(log, urls, watch.holdings, info.get("killed"))
    print(f"  {run}: pieces read from the origin again: {again}; of them while a live host held the piece "
          f"(by the schedulers' last view before the request, polled every 0.5 s): {len(with_copy)}"
          + (f" ({', '.join(with_copy[:12])})" if with_copy else ""))
    return {"times": times, "bad": bad, "origin": sum(per_object) / OBJECTS, "per_object": per_object, "refetched": again,
            "refetched_with_copy": len(with_copy),
            "peer_rss": max((rss[h] for h in PEER_HOSTS if h in rss), default=0.0),
            "seed_rss": max((rss[h] for h in SEED_HOSTS if h in rss), default=0.0), "data": data}


def piece_length(size):
    """PieceMath.defaultPieceLength: the next power of two of size / 2000, within 1-64 MiB."""
    p = 1 << 20
    while p < size / 2000 and p < 64 << 20:
        p <<= 1
    return p


def refetches(log, urls, holdings, killed):
    """Pieces the origin sent more than once in this run: how many, and those read again while a
    live host (not the killed one) held the piece by the last schedulers' view before the read.
    A whole-object GET covers the pieces its bytes reached; a ranged read (`bytes=S-E`) its own."""
    length = piece_length(SIZE)
    again, with_copy = 0, []
    for k, u in enumerate(urls):
        seen = set()
        for sent, at, r in origin_requests(log, u.split(f":{swarm.ORIGIN_PORT}", 1)[1]):
            if r and r.startswith("bytes="):
                first, _, last = r[6:].partition("-")
                pieces = range(int(first) // length, (int(first) + max(sent, 1) - 1) // length + 1)
            else:
                pieces = range(0, (sent + length - 1) // length)
            for index in pieces:
                if index not in seen:
                    seen.add(index)
                    continue
                again += 1
                # The last view before the request came in (`at`: nginx's log time less its
                # request time).
                view = next((v for t, v in reversed(holdings) if t <= at), None)
                holders = [h for h, held in (view or {}).get(u, {}).items() if index in held and not (killed and h == killed[0])]
                if holders:
                    since = next((t for t, v in holdings if any(index in v.get(u, {}).get(h, ()) for h in holders)), at)
                    when = f", read {at - killed[1]:+.1f} s from the kill" if killed else ""
                    with_copy.append(f"obj{k} piece {index} held by {','.join(sorted(holders))} since {at - since:.1f} s before the read{when}")
    return again, with_copy


def cpu_seconds():
    """utime + stime of this script's children that ended (every daemon, nginx and `darter get`
    of a run once it is over: each is waited for, and `sh` waits for its own), seconds."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    swarm.require_root("cluster")
    root = os.path.join(BENCH, "origin")
    os.makedirs(root, exist_ok=True)
    objects = []
    for k in range(OBJECTS):
        path = os.path.join(root, f"obj{k}.bin")
        if not os.path.exists(path) or os.path.getsize(path) != SIZE:
            with open(path, "wb") as f:
                write_random(f, SIZE)
        objects.append((path, "sha256:" + swarm.sha256_file(path)))
    ideal = OBJECTS * SIZE / (RATE * 125_000)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"cluster benchmark: origin h0, {SCHEDULERS} schedulers, {SEEDS} seeds, {PEERS} peers ({HOSTS} hosts), links {RATE} Mbit/s "
          f"both ways, {OBJECTS} objects x {SIZE} bytes, every peer all at once; T_min {ideal:.2f} s; load {' '.join(load)}")
    results = {}
    try:
        swarm.setup(HOSTS)
        nginx, log = swarm.start_origin(root)
        cpu0 = cpu_seconds()
        results["darter"] = cluster_run("darter", objects, ideal, log)
        cpu = cpu_seconds() - cpu0  # the clean run's daemons and gets (nginx runs on: not in it)
        clean = [t for t in results["darter"]["times"].values() if t != float("inf")]
        if FAULTS and clean:
            at = FAULT_AT * statistics.median(clean)
            results["seed-kill"] = cluster_run("seed-kill", objects, ideal, log, fault=(at, kill_seed))
            results["scheduler-kill"] = cluster_run("scheduler-kill", objects, ideal, log, fault=(at, kill_scheduler))
        nginx.stop()
    finally:
        swarm.teardown()
        left = swarm.existing_namespaces()
        if left:
            print(f"cluster: namespaces left after teardown: {left}", file=sys.stderr)
    print()
    print(f"{'':15}" + "".join(f"{'h' + str(h):>7}" for h in PEER_HOSTS) + f"{'p50/T':>8}{'p99/T':>8}{'origin':>8}{'p99 s':>8}{'slowdown':>9}")
    summary = {}
    for run, r in results.items():
        t = [r["times"][h] for h in PEER_HOSTS]
        p50, p99 = pct(t, 0.5), pct(t, 0.99)
        summary[run] = dict(r, p50=p50 / ideal, p99=p99 / ideal, p99s=p99)
        slowdown = f"{p99 / summary['darter']['p99s']:9.2f}" if run != "darter" else ""
        print(f"{run:15}" + "".join(f"{r['times'][h]:7.2f}" for h in PEER_HOSTS) + f"{p50 / ideal:8.2f}{p99 / ideal:8.2f}"
              + f"{r['origin']:8.3f}{p99:8.2f}" + slowdown + (f"   FAILED {r['bad']}" if r["bad"] else ""))
    print(f"(T_min {ideal:.2f} s; faults at {FAULT_AT:.0%} of the clean p50; slowdown = fault p99 / clean p99, goal <= 1.15; "
          f"origin = bytes the origin sent / (objects x size), goal <= 1.02)")
    print()
    d = summary.get("darter")
    if d:
        print(f"BENCH cluster.origin_bytes darter={d['origin']:.3f} anchor=1.000 ratio={1 / d['origin']:.2f} unit=x")
        print(f"BENCH cluster.p50_vs_ideal darter={d['p50']:.2f} anchor=1.00 ratio={1 / d['p50']:.2f} unit=x")
        print(f"BENCH cluster.p99_vs_ideal darter={d['p99']:.2f} anchor=1.00 ratio={1 / d['p99']:.2f} unit=x")
        gib = PEERS * OBJECTS * SIZE / (1 << 30)
        print(f"BENCH cluster.cpu_s_per_gib darter={cpu / gib:.1f} anchor=- ratio=- unit=s/GiB (utime+stime of every daemon and get, per GiB the peers received)")
        print(f"BENCH cluster.peer_rss_mib darter={d['peer_rss']:.0f} anchor=- ratio=- unit=MiB")
        print(f"BENCH cluster.seed_rss_mib darter={d['seed_rss']:.0f} anchor=- ratio=- unit=MiB")
        for run, metric in (("seed-kill", "seed_kill"), ("scheduler-kill", "scheduler_kill")):
            f = summary.get(run)
            if f:
                print(f"BENCH cluster.{metric}_slowdown darter={f['p99s']:.2f} anchor={d['p99s']:.2f} ratio={d['p99s'] / f['p99s']:.2f} unit=s")
                print(f"BENCH cluster.{metric}_origin_bytes darter={f['origin']:.3f} anchor={d['origin']:.3f} "
                      f"ratio={d['origin'] / f['origin'] if f['origin'] else 0:.2f} unit=x")
                print(f"BENCH cluster.{metric}_refetched_with_live_copy darter={f['refetched_with_copy']} anchor=0 ratio=- unit=pieces "
                      f"(of {f['refetched']} pieces read from the origin again)")
    if any(s["bad"] for s in summary.values()):
        sys.exit(1)
    for run in results:  # the stores go, the logs stay (a failed run keeps both: exit above)
        for entry in os.listdir(os.path.join(BENCH, run)):
            if os.path.isdir(os.path.join(BENCH, run, entry)):
                shutil.rmtree(os.path.join(BENCH, run, entry), ignore_errors=True)


if __name__ == "__main__":
    main()
