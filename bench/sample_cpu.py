#!/usr/bin/env python3
"""Samples CPU use while a load run goes: for bench/run.sh's half-rate runs (BENCH_SAMPLE=1).

usage: sample_cpu.py OUT INTERVAL_MS CPU PROXY_PID... -- STUB_PID...

Every INTERVAL_MS until killed, appends one line to OUT: the wall time, then the CPU's
/proc/stat fields (user nice system idle iowait irq softirq steal), then, for each thread of
each PID, `role:pid/tid:name=utime+stime` (role `proxy` or `stub`; clock ticks, cumulative). Differences between lines say
what ran on the CPU in each interval: the proxy's threads, the stub's, or something else
(the host's steal included).
"""
import os
import sys
import time


def threads(role, pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    s = f.read()
            except OSError:
                continue
            name = s[s.index("(") + 1 : s.rindex(")")].replace(" ", "_")
            fields = s[s.rindex(")") + 2 :].split()
            out.append(f"{role}:{pid}/{tid}:{name}={int(fields[11]) + int(fields[12])}")
    except OSError:
        pass
    return out


def main():
    out, interval, cpu = sys.argv[1], int(sys.argv[2]) / 1000, f"cpu{sys.argv[3]}"
    rest = sys.argv[4:]
    cut = rest.index("--") if "--" in rest else len(rest)
    pids = [("proxy", p) for p in rest[:cut]] + [("stub", p) for p in rest[cut + 1 :]]
    with open(out, "w", buffering=1) as f:
        nxt = time.time()
        while True:
            with open("/proc/stat") as s:
                line = next(l for l in s if l.split()[0] == cpu)
            fields = " ".join(line.split()[1:9])
            row = [f"{time.time():.4f}", fields]
            for role, pid in pids:
                row.extend(threads(role, pid))
            f.write(" | ".join(row) + "\n")
            nxt += interval
            time.sleep(max(0.0, nxt - time.time()))


if __name__ == "__main__":
    main()
