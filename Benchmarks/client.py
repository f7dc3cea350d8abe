#!/usr/bin/env python3
"""tools/bench client: `darter get` against curl, on the same 1 GiB object, interleaved round by
round (the order rotates), medians over the rounds.

Servers: nginx (sendfile on) serving the object from the page cache, which is both curl's
server and the origin of a `darter seed`; the seed holds the object once before the rounds.

Per round:
  hit          darter get URL -O FILE through the seed, which holds the object (the piece
               protocol: several pieces in flight, CRC32C checked, written with O_DIRECT)
  curl_hit     curl -o FILE from nginx serving the same file (sendfile on)
  cold         darter get of a new URL (its own query string) through the seed: a cold miss,
               the seed fetching from nginx while darter get takes the pieces as they land
  curl_direct  curl -o FILE straight from nginx (the origin)

Each client writes a new file in DARTER_BENCH_DIR/client/out (ext4), checked against the
object (every byte, outside the timing), then removed. Time is the client process's wall
time; CPU is its utime + stime (wait4's rusage), per GiB.

BENCH lines (ratio > 1: Darter is better):
  client.get_hit             GB/s, darter get from the seed vs curl from nginx, ratio darter/curl
  client.get_cold_vs_direct  GB/s, darter get through a seed on a cold miss vs curl from the origin
  client.cpu_per_gib         CPU-s per GiB of darter get vs curl on the hit download, ratio curl/darter
  client.cpu_per_gib_cold    darter get's CPU-s per GiB on the cold download vs curl's straight from
                             the origin, ratio curl/darter (the seed's own CPU on a cold miss is
                             shield.seed_cpu_per_gib, from tools/bench shield)

Environment: ROUNDS (5), SIZE (1g), DARTER_BENCH_DIR (.build/bench), DARTER_BIN
(.build/release/darter), DARTER_SEED_ARGS, DARTER_GET_ARGS (extra `darter get` flags)."""
import os, shlex, shutil, statistics, subprocess, sys, time

from benchlib import (BenchError, DARTER, GIB, MIB, NginxServer, bench_dir, check_darter_seed, free_port, require_tool,
                      run_main, seed_command, setup_process, start_child, stop_child, wait_for_seed, write_json, write_random)

BENCH_DIR = bench_dir("client")
FILES = os.path.join(BENCH_DIR, "files")
OUT = os.path.join(BENCH_DIR, "out")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
GET_ARGS = shlex.split(os.environ.get("DARTER_GET_ARGS", ""))


def parse_size(text):
    text = text.strip().lower()
    mult = {"k": 1 << 10, "m": MIB, "g": GIB}.get(text[-1:], 1)
    return int(text[:-1] if text[-1:] in "kmg" else text) * mult


SIZE = parse_size(os.environ.get("SIZE", "1g"))
OBJECT = f"obj-{SIZE}.bin"


def make_object():
    path = os.path.join(FILES, OBJECT)
    if os.path.exists(path) and os.path.getsize(path) == SIZE:
        return path
    print(f"  generating {OBJECT} ({SIZE} random bytes) in {FILES} (once)", flush=True)
    os.makedirs(FILES, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        write_random(f, SIZE)
    os.replace(path + ".tmp", path)
    return path


def run_client(cmd):
    """Runs a client to completion: (wall seconds, CPU seconds utime+stime, exit code, stderr)."""
    err_path = os.path.join(BENCH_DIR, "client.err")
    with open(err_path, "wb") as err:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return wall, usage.ru_utime + usage.ru_stime, p.returncode, stderr


def same_bytes(a, b):
    """Every byte of the two files equal (read in 16 MiB blocks)."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as x, open(b, "rb") as y:
        while True:
            u, v = x.read(16 * MIB), y.read(16 * MIB)
            if u != v:
                return False
            if not u:
                return True


def measure(name, cmd, reference):
    """One download: GB/s and CPU-s/GiB, the output checked and removed."""
    out = cmd[cmd.index("-O") + 1] if "-O" in cmd else cmd[cmd.index("-o") + 1]
    if os.path.exists(out):
        os.remove(out)
    wall, cpu, code, stderr = run_client(cmd)
    if code != 0:
        raise BenchError(f"{name}: {' '.join(cmd)} exited {code}: {stderr.strip()[-500:]}")
    if not same_bytes(out, reference):
        raise BenchError(f"{name}: {out} differs from the object")
    os.remove(out)
    return SIZE / wall / 1e9, cpu / (SIZE / GIB)


def main():
    if len(sys.argv) > 1:
        print("usage: client.py (environment: ROUNDS, SIZE, DARTER_BENCH_DIR, DARTER_BIN, DARTER_SEED_ARGS, DARTER_GET_ARGS)", file=sys.stderr)
        return 2
    setup_process()
    require_tool("nginx", "nginx-light")
    require_tool("curl", "curl")
    check_darter_seed()
    os.makedirs(OUT, exist_ok=True)
    reference = make_object()
    print(f"client benchmark: {ROUNDS} rounds, object {SIZE} bytes, output in {OUT}", flush=True)

    nginx = NginxServer("nginx", os.path.join(BENCH_DIR, "nginx"), "client.py", "on",
                        f"        location / {{\n            root {FILES};\n        }}\n", http_first="    access_log off;\n")
    nginx.start()
    seed_dir = os.path.join(BENCH_DIR, "seed")
    shutil.rmtree(seed_dir, ignore_errors=True)
    os.makedirs(seed_dir)
    port = free_port()
    seed_log = os.path.join(BENCH_DIR, "seed.log")
    seed = start_child(seed_command(port, os.path.join(seed_dir, "data")), seed_log)
    wait_for_seed(seed, port, seed_log)
    daemon = f"http://127.0.0.1:{port}"
    origin = f"http://127.0.0.1:{nginx.port}/{OBJECT}"

    def get(url, out):
        return [DARTER, "get", url, "-O", out, "--daemon", daemon, "--no-fallback"] + GET_ARGS

    # The seed holds the object for the hits (and the page cache has the origin's file).
    measure("warm-up", get(origin + "?hit", os.path.join(OUT, "warm.bin")), reference)
    measure("warm-up", ["curl", "-s", "-o", os.path.join(OUT, "warm.bin"), origin], reference)
    time.sleep(2)  # the seed's background pass (SHA-256, page cache) after a fetch runs when idle

    runs = {
        "hit": lambda r: get(origin + "?hit", os.path.join(OUT, "hit.bin")),
        "curl_hit": lambda r: ["curl", "-s", "-o", os.path.join(OUT, "curl-hit.bin"), origin],
        "cold": lambda r: get(origin + f"?cold={r}-{time.time_ns()}", os.path.join(OUT, "cold.bin")),
        "curl_direct": lambda r: ["curl", "-s", "-o", os.path.join(OUT, "curl-direct.bin"), origin + f"?direct={r}"],
    }
    names = list(runs)
    samples = {n: [] for n in names}
    for rnd in range(ROUNDS):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        line = []
        for name in order:
            gbps, cpu = measure(name, runs[name](rnd), reference)
            samples[name].append((gbps, cpu))
            line.append(f"{name}={gbps:.3f} GB/s {cpu:.2f} cpu-s/GiB")
            if name == "cold":
                time.sleep(1.5)  # let the seed finish the cold object's background pass
        print(f"  round {rnd + 1}: " + "  ".join(line), flush=True)
    stop_child(seed)
    nginx.stop()
    shutil.rmtree(seed_dir, ignore_errors=True)

    med = {n: (statistics.median(g for g, _ in s), statistics.median(c for _, c in s)) for n, s in samples.items()}
    per_round = {n: [samples[n][i] for i in range(ROUNDS)] for n in names}
    hit_ratios = [a[0] / b[0] for a, b in zip(per_round["hit"], per_round["curl_hit"])]
    cold_ratios = [a[0] / b[0] for a, b in zip(per_round["cold"], per_round["curl_direct"])]
    cpu_ratios = [b[1] / a[1] for a, b in zip(per_round["hit"], per_round["curl_hit"])]
    print()
    print("per-round ratios (darter/curl GB/s; curl/darter CPU):")
    print("  get_hit            " + " ".join(f"{r:.2f}" for r in hit_ratios))
    print("  get_cold_vs_direct " + " ".join(f"{r:.2f}" for r in cold_ratios))
    print("  cpu_per_gib        " + " ".join(f"{r:.2f}" for r in cpu_ratios))
    print()
    rows = [
        ("get_hit", med["hit"][0], med["curl_hit"][0], "GB/s", med["hit"][0] / med["curl_hit"][0]),
        ("get_cold_vs_direct", med["cold"][0], med["curl_direct"][0], "GB/s", med["cold"][0] / med["curl_direct"][0]),
        ("cpu_per_gib", med["hit"][1], med["curl_hit"][1], "cpu-s/GiB", med["curl_hit"][1] / med["hit"][1]),
        ("cpu_per_gib_cold", med["cold"][1], med["curl_direct"][1], "cpu-s/GiB", med["curl_direct"][1] / med["cold"][1]),
    ]
    for metric, d, a, unit, ratio in rows:
        print(f"BENCH client.{metric} darter={d:.3f} anchor={a:.3f} ratio={ratio:.2f} unit={unit}")
    return 0


if __name__ == "__main__":
    run_main(main, "client")
