#!/usr/bin/env python3
"""tools/bench bench: `darter bench`'s load generator against wrk, on the same target (nginx,
sendfile on, serving a 64 KiB and a 4 MiB file from the page cache on 127.0.0.1) with the same
shape (wrk -t2 -c64 against darter bench --concurrency 64 --loops 2, no warmup for either),
interleaved round by round (the order alternates), medians over the rounds. Generator CPU
(utime + stime of the child, from wait4) per request and per GiB beside the throughput. Then a
`darter bench --compare` of a darter seed against the same nginx (the default sweep), whose
JSON and SVGs are the report a user gets.

Environment: ROUNDS (5), DURATION (wrk and darter bench seconds, 5), SHOWCASE (1; 0 skips the
seed-vs-nginx sweep), SHOWCASE_DURATION (2), DARTER_BENCH_DIR (.build/bench), DARTER_BIN."""
import json, os, statistics, subprocess, sys, time

from benchlib import (BenchError, DARTER, KIB, MIB, NginxServer, bench_dir, check_darter_seed, free_port, require_tool,
                      run_main, seed_command, setup_process, start_child, stop_child, tail, wait_for_seed, write_random)

BENCH_DIR = bench_dir("loadgen")
FILES = os.path.join(BENCH_DIR, "files")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = int(os.environ.get("DURATION", "5"))
SHOWCASE = os.environ.get("SHOWCASE", "1") != "0"
SHOWCASE_DURATION = os.environ.get("SHOWCASE_DURATION", "2")
CONNECTIONS, THREADS = 64, 2
OBJECTS = [("64k", "obj-64k.bin", 64 * KIB), ("4m", "obj-4m.bin", 4 * MIB)]
GIB = 1 << 30

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %d %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def make_files():
    os.makedirs(FILES, exist_ok=True)
    for _, name, size in OBJECTS:
        path = os.path.join(FILES, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, "wb") as f:
                write_random(f, size)


def run_measured(cmd):
    """Runs `cmd`; returns (stdout, stderr, returncode, CPU seconds of the child)."""
    out_path, err_path = os.path.join(BENCH_DIR, "child.out"), os.path.join(BENCH_DIR, "child.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return stdout, stderr, p.returncode, usage.ru_utime + usage.ru_stime


def wrk(url, size, script):
    stdout, stderr, code, cpu = run_measured(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--timeout", "5s", "-s", script, url])
    line = next((l for l in stdout.splitlines() if l.startswith("WRKRESULT")), None)
    if code != 0 or line is None:
        raise BenchError(f"wrk {url} exited with {code}: {stderr.strip()} {stdout.strip()[-500:]}")
    requests, nbytes, micros, connect, read, write, status, timeout, p50, p99 = map(int, line.split()[1:])
    bad = {k: v for k, v in {"connect": connect, "read": read, "write": write, "non-2xx/3xx": status, "timeout": timeout}.items() if v}
    if bad or requests == 0:
        raise BenchError(f"wrk {url}: {requests} requests, errors {bad}")
    seconds = micros / 1e6
    return {"rps": requests / seconds, "bytes_per_s": nbytes / seconds, "cpu_per_req": cpu / requests,
            "cpu_per_gib": cpu / (nbytes / GIB), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def darter_bench(url, size, out):
    stdout, stderr, code, cpu = run_measured([DARTER, "bench", url, "--concurrency", str(CONNECTIONS), "--loops", str(THREADS),
                                              "--duration", f"{DURATION}s", "--warmup", "0", "--no-progress", "-o", out])
    if code != 0:
        raise BenchError(f"darter bench {url} exited with {code}: {stderr.strip()[-2000:]}")
    with open(os.path.join(out, "bench.json")) as f:
        report = json.load(f)
    step = report["series"][0]["steps"][0]
    errors = sum(step["errors"].values()) + sum(v for k, v in step["status"].items() if k != "2xx")
    if errors or step["requests"] == 0:
        raise BenchError(f"darter bench {url}: {step['requests']} requests, errors {step['errors']}, status {step['status']}")
    body_per_response = step["body_bytes_per_s"] / step["rps"]
    if abs(body_per_response - size) > 1:
        raise BenchError(f"darter bench {url}: {body_per_response:.0f} body bytes per response, expected {size}")
    requests = step["requests"]
    nbytes = step["bytes_per_s"] * step["seconds"]
    return {"rps": step["rps"], "bytes_per_s": step["bytes_per_s"], "cpu_per_req": cpu / requests,
            "cpu_per_gib": cpu / (nbytes / GIB), "p50_ms": step["latency_ms"]["p50"], "p99_ms": step["latency_ms"]["p99"]}


# (metric, object, field, unit, scale, higher is better)
METRICS = [
    ("rps_64k", "64k", "rps", "req/s", 1, True),
    ("bytes_per_s_64k", "64k", "bytes_per_s", "MB/s", 1e-6, True),
    ("cpu_us_per_req_64k", "64k", "cpu_per_req", "us", 1e6, False),
    ("rps_4m", "4m", "rps", "req/s", 1, True),
    ("bytes_per_s_4m", "4m", "bytes_per_s", "MB/s", 1e-6, True),
    ("cpu_s_per_gib_4m", "4m", "cpu_per_gib", "s/GiB", 1, False),
]


def showcase(nginx):
    """darter seed (the 64 KiB object imported) against nginx: `darter bench --compare`, the default sweep."""
    data = os.path.join(BENCH_DIR, "seed-data")
    r = subprocess.run([DARTER, "import", "--data-dir", data, os.path.join(FILES, "obj-64k.bin")], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.split():
        raise BenchError(f"darter import exited with {r.returncode}: {r.stderr[-2000:]}")
    task = r.stdout.split()[0]
    port = free_port()
    log = os.path.join(BENCH_DIR, "seed.log")
    seed = start_child(seed_command(port, data), log)
    try:
        wait_for_seed(seed, port, log)
        out = os.path.join(BENCH_DIR, "compare")
        cmd = [DARTER, "bench", "--compare", f"http://127.0.0.1:{port}/tasks/{task}", f"http://127.0.0.1:{nginx.port}/obj-64k.bin",
               "--label", "darter seed", "--label", "nginx (sendfile on)", "--duration", f"{SHOWCASE_DURATION}s", "--warmup", "1s",
               "--no-progress", "-o", out]
        print("  " + " ".join(cmd[1:]), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"darter bench --compare exited with {r.returncode}: {r.stderr[-2000:]}")
        print("".join("    " + l + "\n" for l in r.stdout.splitlines()), end="", flush=True)
        if r.stderr.strip():
            print("".join("    " + l + "\n" for l in r.stderr.splitlines()), end="", flush=True)
    finally:
        stop_child(seed)


def main():
    if len(sys.argv) > 1:
        print("usage: loadgen.py (environment: ROUNDS, DURATION, SHOWCASE, SHOWCASE_DURATION, DARTER_BENCH_DIR)", file=sys.stderr)
        return 2
    setup_process()
    require_tool("wrk", "wrk")
    require_tool("nginx", "nginx-light")
    check_darter_seed()
    os.makedirs(BENCH_DIR, exist_ok=True)
    make_files()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"bench benchmark: {ROUNDS} rounds, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s vs darter bench --concurrency {CONNECTIONS} "
          f"--loops {THREADS} --duration {DURATION}s, nginx sendfile on; load average {load}; dir {BENCH_DIR}", flush=True)
    script = os.path.join(BENCH_DIR, "wrk-done.lua")
    with open(script, "w") as f:
        f.write(WRK_DONE)
    nginx = NginxServer("nginx", os.path.join(BENCH_DIR, "nginx"), "loadgen.py", "on",
                        f"        root {FILES};\n        location / {{ }}\n", http_first="    access_log off;\n")
    nginx.start()
    samples = {tool: {obj: [] for obj, _, _ in OBJECTS} for tool in ("darter", "wrk")}
    try:
        for rnd in range(ROUNDS):
            for obj, name, size in OBJECTS:
                url = f"http://127.0.0.1:{nginx.port}/{name}"
                order = ["wrk", "darter"] if rnd % 2 == 0 else ["darter", "wrk"]
                for tool in order:
                    res = wrk(url, size, script) if tool == "wrk" else darter_bench(url, size, os.path.join(BENCH_DIR, f"out-{obj}"))
                    samples[tool][obj].append(res)
                    print(f"  round {rnd + 1} {obj:3s} {tool:6s} {res['rps']:9.0f} req/s {res['bytes_per_s'] / 1e6:9.1f} MB/s  "
                          f"p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms  generator CPU {res['cpu_per_req'] * 1e6:.1f} us/req "
                          f"{res['cpu_per_gib']:.3f} s/GiB", flush=True)
        if SHOWCASE:
            print("\nshowcase: darter seed vs nginx, the default sweep", flush=True)
            showcase(nginx)
            print(f"  plots: {os.path.join(BENCH_DIR, 'compare')}/index.html", flush=True)
    finally:
        nginx.stop()

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nload average after: {load}")
    print("ratio = darter bench ÷ wrk (for the CPU metrics lower is better: a ratio under 1 means darter bench is cheaper)\n")
    for metric, obj, field, unit, scale, _ in METRICS:
        d = [s[field] * scale for s in samples["darter"][obj]]
        w = [s[field] * scale for s in samples["wrk"][obj]]
        per_round = " ".join(f"{a / b:.2f}" for a, b in zip(d, w))
        dm, wm = statistics.median(d), statistics.median(w)
        print(f"  {metric}: per-round ratios {per_round}")
        print(f"BENCH bench.{metric} darter={dm:.3f} anchor={wm:.3f} ratio={dm / wm:.2f} unit={unit}")
    return 0


if __name__ == "__main__":
    run_main(main, "bench")
