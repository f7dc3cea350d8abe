#!/usr/bin/env python3
"""tools/bench storage: fio (io_uring, direct=1) and Darter's piece store on the same
filesystem, interleaved test by test (ingest, read_piece, read_64k; who goes first alternates
per test and per round, so both meet the same disk: this virtual disk's speed drifts by tens of
percent within a minute), medians over the rounds. Darter's side is one `darter-bench
storage-session` per round, its store kept open between tests as in a running seed; fio's reads
use the file its ingest just wrote."""
import json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.environ.get("DARTER_BENCH_DIR", os.path.join(ROOT, ".build", "bench"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))  # this virtual disk drifts: five rounds for steadier medians
SIZE = os.environ.get("SIZE", "2g")
SECONDS = os.environ.get("SECONDS_PER_READ", "5")
DARTER_BENCH = os.path.join(ROOT, ".build", "release", "darter-bench")


def fio(name, rw, extra):
    path = os.path.join(BENCH_DIR, "fio.dat")
    cmd = ["fio", "--name=" + name, "--filename=" + path, "--size=" + SIZE.upper(), "--ioengine=io_uring",
           "--direct=1", "--rw=" + rw, "--output-format=json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    return job["write"] if rw == "write" else job["read"]


def fio_test(test):
    path = os.path.join(BENCH_DIR, "fio.dat")
    if test == "ingest":
        if os.path.exists(path):
            os.remove(path)
        return fio("ingest", "write", ["--bs=4M", "--iodepth=8", "--end_fsync=1"])["bw_bytes"] / 1e9
    if test == "read_piece":
        return fio("read_piece", "randread", ["--bs=4M", "--iodepth=8", "--runtime=" + SECONDS, "--time_based"])["bw_bytes"] / 1e9
    return fio("read_64k", "randread", ["--bs=64k", "--iodepth=32", "--runtime=" + SECONDS, "--time_based"])["iops"]


class DarterSession:
    """`darter-bench storage-session`: one test per line on its stdin, one RESULT line back."""

    def __init__(self):
        self.proc = subprocess.Popen([DARTER_BENCH, "storage-session", "--dir", os.path.join(BENCH_DIR, "darter"),
                                      "--size", SIZE, "--seconds", SECONDS],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, test):
        self.proc.stdin.write(test + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"darter-bench storage-session ended during {test} (exit {self.proc.wait()})")
            parts = line.split()
            if len(parts) == 4 and parts[0] == "RESULT" and parts[1] == test:
                return float(parts[2])

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise SystemExit(f"darter-bench storage-session exited with {self.proc.returncode}")


def darter(args):
    out = subprocess.run([DARTER_BENCH] + args, check=True, capture_output=True, text=True).stdout
    results = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "RESULT":
            results.setdefault(parts[1], []).append(float(parts[2]))
    return results


def main():
    os.makedirs(BENCH_DIR, exist_ok=True)
    fs = subprocess.run(["df", "-T", BENCH_DIR], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    print(f"storage benchmark: {ROUNDS} rounds, {SIZE} per ingest, {SECONDS}s per read test, dir {BENCH_DIR} ({fs})", flush=True)
    samples = {"darter": {}, "fio": {}}
    tests = ["ingest", "read_piece", "read_64k"]
    for rnd in range(ROUNDS):
        t0 = time.time()
        session = DarterSession()
        res = {"fio": {}, "darter": {}}
        for k, test in enumerate(tests):
            order = ["fio", "darter"] if (rnd + k) % 2 == 0 else ["darter", "fio"]
            for who in order:
                res[who][test] = fio_test(test) if who == "fio" else session.run(test)
                samples[who].setdefault(test, []).append(res[who][test])
        session.close()
        for who in ["fio", "darter"]:
            print(f"  round {rnd + 1} {who:6s} " + "  ".join(f"{k}={v:.3f}" for k, v in res[who].items()), flush=True)
        print(f"  (round {rnd + 1}: {time.time() - t0:.1f}s)", flush=True)
    rec = darter(["recovery", "--dir", os.path.join(BENCH_DIR, "recovery"), "--pieces", "100000", "--rounds", str(ROUNDS)])
    samples["darter"]["recovery_100k"] = rec["recovery_100k"]

    rows = []
    for metric, unit, higher_better in [("ingest", "GB/s", True), ("read_piece", "GB/s", True), ("read_64k", "IOPS", True),
                                        ("recovery_100k", "s", False)]:
        d = statistics.median(samples["darter"][metric])
        a = statistics.median(samples["fio"][metric]) if metric in samples["fio"] else None
        ratio = None if a is None else (d / a if higher_better else a / d)
        rows.append((metric, d, a, ratio, unit))
    print()
    print(f"{'metric':16s} {'darter':>12s} {'fio (anchor)':>14s} {'ratio':>8s}  unit")
    for m, d, a, r, u in rows:
        print(f"{m:16s} {d:12.3f} {('-' if a is None else f'{a:.3f}'):>14s} {('-' if r is None else f'{r:.2f}'):>8s}  {u}")
    print()
    for m, d, a, r, u in rows:
        fmt = (lambda x: f"{x:.0f}") if u == "IOPS" else (lambda x: f"{x:.3f}")
        print(f"BENCH storage.{m} darter={fmt(d)} anchor={'-' if a is None else fmt(a)} ratio={'-' if r is None else f'{r:.2f}'} unit={u}")


if __name__ == "__main__":
    main()
