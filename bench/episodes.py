#!/usr/bin/env python3
"""The open-loop runs of a bench/run.sh result, 100 ms at a time (needs BENCH_SAMPLE=1).

usage: episodes.py RESULT_DIR [--ms-over 5]

For each half-rate run, oha's per-request record (`wrk/half-*.db`: when each request was
due, sent and answered) is cut into 100 ms buckets by answer time, and the CPU samples taken
alongside (`wrk/half-*.samples`, bench/sample_cpu.py) are cut at the same times. A bucket
whose requests waited more than --ms-over on average (from when they were due) is a backlog
bucket. Per contender, over all its rounds: how many rounds had one, the share of requests
answered in one, and the proxy's and the stub's CPU per request and the server CPU's busy
share inside and outside them.
"""
import argparse
import collections
import glob
import os
import sqlite3

BUCKET = 0.1


def samples(path, started):
    out = []
    for line in open(path):
        parts = line.rstrip("\n").split(" | ")
        cpu = list(map(int, parts[1].split()))
        threads = {}
        for p in parts[2:]:
            key, ticks = p.rsplit("=", 1)
            threads[key] = int(ticks)
        out.append((float(parts[0]) - started, cpu, threads))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("result")
    ap.add_argument("--ms-over", type=float, default=5.0)
    args = ap.parse_args()
    tck = os.sysconf("SC_CLK_TCK")
    # contender -> {"rounds", "backlog_rounds", kind -> [requests, proxy ticks, stub ticks, busy, total]}
    acc = collections.defaultdict(lambda: {"rounds": 0, "backlog_rounds": 0,
                                           "backlog": [0, 0, 0, 0, 0], "normal": [0, 0, 0, 0, 0]})
    for db in sorted(glob.glob(os.path.join(args.result, "wrk", "half-r*-*.txt.db"))):
        base = db[: -len(".db")]
        if not os.path.exists(base + ".samples"):
            continue
        contender = os.path.basename(base).split("-")[2]
        started = float(open(base + ".started").read())
        rows = sqlite3.connect(db).execute(
            "SELECT start, start_latency_correction, end FROM oha").fetchall()
        buckets = collections.defaultdict(lambda: [0, 0.0])
        for start, corrected, end in rows:
            due = corrected if corrected is not None else start
            b = buckets[int(end / BUCKET)]
            b[0] += 1
            b[1] += (end - due) * 1000
        series = samples(base + ".samples", started)
        times = [s[0] for s in series]

        def index(t):
            return min(range(len(times)), key=lambda i: abs(times[i] - t))

        a = acc[contender]
        a["rounds"] += 1
        had = False
        for k, (n, waited) in buckets.items():
            i, j = index(k * BUCKET), index((k + 1) * BUCKET)
            if j <= i:
                continue
            kind = "backlog" if waited / n > args.ms_over else "normal"
            had = had or kind == "backlog"
            (_, c0, t0), (_, c1, t1) = series[i], series[j]
            d = [y - x for x, y in zip(c0, c1)]
            moved = {key: t1[key] - t0[key] for key in t1 if key in t0}
            if any(key.startswith(("proxy:", "stub:")) for key in moved):
                stub = sum(v for key, v in moved.items() if key.startswith("stub:"))
            else:
                # Samples without roles: the stub is the nginx that is not the proxy under test.
                stub = None if contender.startswith("b") else sum(
                    v for key, v in moved.items() if key.split(":", 1)[1].startswith("nginx"))
            proxy = sum(moved.values()) - (stub or 0)
            row = a[kind]
            row[0] += n
            row[1] += proxy
            row[2] = None if stub is None or row[2] is None else row[2] + stub
            row[3] += sum(d) - d[3] - d[4]
            row[4] += sum(d)
        a["backlog_rounds"] += had
    print(f"100 ms buckets; backlog: requests waited > {args.ms_over} ms on average from when they were due")
    print("contender  rounds with backlog  requests in backlog  |  CPU µs/req proxy + stub, busy %: normal  |  backlog")
    for contender, a in sorted(acc.items()):
        def fmt(row):
            n, proxy, stub, busy, total = row
            if not n:
                return "-"
            us = lambda ticks: ticks / tck * 1e6 / n
            busy_pct = f"{100 * busy / max(total, 1):3.0f} %"
            if stub is None:  # nginx as proxy, samples without roles: the two together
                return f"{us(proxy):5.1f} together, {busy_pct}"
            return f"{us(proxy):5.1f} + {us(stub):5.1f}, {busy_pct}"
        share = a["backlog"][0] / max(a["backlog"][0] + a["normal"][0], 1)
        print(f"{contender:9}  {a['backlog_rounds']:3d} of {a['rounds']:<3d}          {100 * share:5.1f} %"
              f"               |  {fmt(a['normal'])}  |  {fmt(a['backlog'])}")


if __name__ == "__main__":
    main()
