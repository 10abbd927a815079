#!/usr/bin/env python3
"""Tables for bench/run.sh from its results.csv: medians over rounds, ratios from the same round.

usage: report.py results.csv [note about the half-rate method]
"""

import csv
import statistics
import sys
from collections import defaultdict

LABELS = {
    "a": "(a) direct stub",
    "b": "(b) nginx proxy_pass",
    "c": "(c) haproxy jwt_verify",
    "d": "(d) gateway admin",
    "e": "(e) gateway agent",
    "f": "(f) gateway public",
    "D": "(d) admin, level info",
    "F": "(f) public, level info",
    "g": "(g) baseline admin",
}
ORDER = [(c, f) for c in "abcdgDefF" for f in ("plain", "tls") if not (c == "a" and f == "tls")]


def baseline(rows):
    """(d) against (g), the BENCH_BASELINE binary on the same route, round by round."""
    by_round = {(r["round"], r["contender"], r["front"], r["conc"]): r for r in rows}
    pairs = defaultdict(list)
    for (rnd, c, front, conc), r in by_round.items():
        g = by_round.get((rnd, "g", front, conc))
        if c == "d" and g:
            pairs[(front, conc)].append((r, g))
    if not pairs:
        return
    print("== this build (d) against BENCH_BASELINE (g), admin route, same rounds")
    print(f"{'front':<7}{'conn':>5}{'CPU µs/req (d)':>16}{'(g)':>8}{'(d)/(g)':>9}{'req/s (d)/(g)':>15}")
    for (front, conc), runs in sorted(pairs.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        cpu_ratio = med([d["cpu_us_req"] / g["cpu_us_req"] for d, g in runs])
        rps_ratio = med([d["rps"] / g["rps"] for d, g in runs])
        print(f"{front:<7}{conc:>5}{med([d['cpu_us_req'] for d, _ in runs]):>16.2f}"
              f"{med([g['cpu_us_req'] for _, g in runs]):>8.2f}{cpu_ratio:>9.2f}{rps_ratio:>15.2f}")
    print()


def load(path):
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        for k in ("rps", "p50_us", "p99_us", "cpu_us_req", "server_cpu_other_pct", "load_cpu_busy_pct"):
            r[k] = float(r.get(k) or 0)
        # Only in runs of the half-rate measurement (and in results of runs that had them).
        for k in ("server_cpu_busy_pct", "p99_wait_us", "p99_wire_us"):
            r[k] = float(r[k]) if r.get(k) else None
        r["stub_us_req"] = float(r["stub_us_req"]) if r["stub_us_req"] else None
        r["bad"] = int(r["non2xx"]) + int(r["sock_errors"])
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(us):
    return None if us is None else us / 1000


def fmt(v, spec):
    if v is not None:
        return format(v, spec)
    width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
    return format("-", ">" + width) if width else "-"


def table(rows, title, show_spread=True):
    """Rows of one section: median per (contender, front, conc) with same-round ratios."""
    by_key = defaultdict(list)
    by_round = {}
    for r in rows:
        by_key[(r["contender"], r["front"], r["conc"])].append(r)
        by_round[(r["round"], r["contender"], r["front"], r["conc"])] = r
    rounds = sorted({r["round"] for r in rows})
    header = (f"{'contender':<24}{'front':<7}{'conn':>5}{'req/s':>10}{'spread':>8}{'p50 ms':>8}"
              f"{'p99 ms':>8}{'CPU µs/req':>12}{'stub µs':>9}{'×(a)':>7}{'×(b)':>7}{'non-2xx':>9}"
              f"{'other%':>8}{'wrk%':>6}")
    print(f"== {title} (medians over {len(rounds)} round{'s' if len(rounds) != 1 else ''})")
    print("   spread: (max-min)/median of req/s over rounds; stub µs: the stub's CPU per request;"
          " ×(a), ×(b): req/s ÷ (a) plain and ÷ (b) same front, same round;\n"
          "   other%: worst share of the server CPU used by anything but proxy+stub during a run"
          " (other workloads: noise); wrk%: load CPU busy")
    print(header)
    print("-" * len(header))
    concs = sorted({r["conc"] for r in rows}, key=int)
    for conc in concs:
        for contender, front in ORDER:
            runs = by_key.get((contender, front, conc))
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            ratio_a, ratio_b = [], []
            for r in runs:
                a = by_round.get((r["round"], "a", "plain", conc))
                b = by_round.get((r["round"], "b", front, conc))
                if a:
                    ratio_a.append(r["rps"] / a["rps"])
                if b:
                    ratio_b.append(r["rps"] / b["rps"])
            m = med(rps)
            spread = (max(rps) - min(rps)) / m * 100 if show_spread and len(rps) > 1 else None
            wrk_busy = med([r["load_cpu_busy_pct"] for r in runs])
            bound = "*" if wrk_busy >= 90 else " "
            print(f"{LABELS[contender]:<24}{front:<7}{conc:>5}{m:>9.0f}{bound}"
                  f"{fmt(spread, '>7.1f') + ('%' if spread is not None else ''):>8}"
                  f"{med([r['p50_us'] for r in runs]) / 1000:>8.2f}"
                  f"{med([r['p99_us'] for r in runs]) / 1000:>8.2f}"
                  f"{med([r['cpu_us_req'] for r in runs]):>12.2f}"
                  f"{fmt(med([r['stub_us_req'] for r in runs]), '>9.2f')}"
                  f"{fmt(med(ratio_a), '>7.2f')}{fmt(med(ratio_b), '>7.2f')}"
                  f"{sum(r['bad'] for r in runs):>9}"
                  f"{max(r['server_cpu_other_pct'] for r in runs):>8.0f}"
                  f"{med([r['load_cpu_busy_pct'] for r in runs]):>6.0f}")
        print()
    if any(r["load_cpu_busy_pct"] >= 90 for r in rows):
        print("   * wrk's CPU was ≥ 90 % busy: that req/s is the load generator's limit, not the server's.\n")
    return by_round


def targets(rows):
    """The forwarding-path targets (docs/performance.md), as medians of same-round ratios."""
    by_round = {(r["round"], r["contender"], r["front"], r["conc"]): r for r in rows}

    def same_round(num, den, front, conc, key):
        """The median over rounds of num's `key` ÷ den's, and each round's ratio."""
        ratios = [r[key] / by_round[(r["round"], den, front, conc)][key]
                  for r in sorted(rows, key=lambda r: int(r["round"]))
                  if r["contender"] == num and r["front"] == front and r["conc"] == conc
                  and (r["round"], den, front, conc) in by_round]
        return med(ratios), ratios

    def show(label, ratio, target):
        median, ratios = ratio
        rounds = " ".join(f"{x:.2f}" for x in ratios)
        goal = f"; target {target}" if target else "; no target, like for like"
        return f"{label} {fmt(median, '.2f')} ({rounds}{goal})"

    print("== admin route (d) and public route (f) against their targets (medians of same-round ratios)")
    for conc in sorted({r["conc"] for r in rows}, key=int):
        for front in ("plain", "tls"):
            if not any(r["contender"] == "d" and r["front"] == front and r["conc"] == conc for r in rows):
                continue
            print(f"  {front:<5} c{conc:<4} "
                  + show("CPU (d)÷(c) haproxy jwt", same_round("d", "c", front, conc, "cpu_us_req"), "≤ 1.0"))
            print(f"  {'':<12}"
                  + show("CPU (d)÷(b) nginx", same_round("d", "b", front, conc, "cpu_us_req"), "≤ 1.0, stretch"))
            print(f"  {'':<12}"
                  + show("req/s (d)÷(c) haproxy jwt", same_round("d", "c", front, conc, "rps"), "≥ 1.0"))
            print(f"  {'':<12}"
                  + show("CPU (f)÷(b) nginx, public route", same_round("f", "b", front, conc, "cpu_us_req"),
                         "≤ 1.0"))
            if any(r["contender"] == "e" and r["front"] == front and r["conc"] == conc for r in rows):
                # Not a target of its own: the agent route verifies the same kind of token as
                # HAProxy's jwt_verify, so this is the like-for-like comparison.
                print(f"  {'':<12}"
                      + show("CPU (e)÷(c) haproxy jwt, agent route", same_round("e", "c", front, conc,
                                                                       "cpu_us_req"), None))
    print()


def half(rows, note, target):
    print("== p99 at about half of nginx's saturation rate (plain)")
    if note:
        print(f"  method: {note}")
    print(f"  {'contender':<24}{'conn':>5}{'req/s':>10}{'of target':>10}{'p50 ms':>8}{'p99 ms':>8}{'CPU µs/req':>12}"
          f"{'+stub':>7}{'busy %':>8}{'p99 wait':>9}{'p99 wire':>9}")
    by = defaultdict(list)
    for r in rows:
        by[r["contender"]].append(r)
    for c in ("b", "d", "g"):
        runs = by.get(c)
        if not runs:
            continue
        rate = med([r['rps'] for r in runs])
        share = f"{rate / target * 100:.0f} %" if target else "-"
        print(f"  {LABELS[c]:<24}{runs[0]['conc']:>5}{rate:>10.0f}{share:>10}"
              f"{med([r['p50_us'] for r in runs]) / 1000:>8.2f}{med([r['p99_us'] for r in runs]) / 1000:>8.2f}"
              f"{med([r['cpu_us_req'] for r in runs]):>12.2f}"
              f"{fmt(med([r['cpu_us_req'] + r['stub_us_req'] for r in runs if r['stub_us_req'] is not None]), '>7.1f')}"
              f"{fmt(med([r['server_cpu_busy_pct'] for r in runs]), '>8.0f')}"
              f"{fmt(ms(med([r['p99_wait_us'] for r in runs])), '>9.2f')}"
              f"{fmt(ms(med([r['p99_wire_us'] for r in runs])), '>9.2f')}")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["round"], {})[r["contender"]] = r
    ratios = [p["d"]["p99_us"] / p["b"]["p99_us"] for p in pairs.values() if "b" in p and "d" in p]
    if target:
        rate = med([r["rps"] for r in by.get("d", [])] or [None])
        if rate is not None and rate < 0.85 * target:
            print(f"  note: the gateway admin route ran at {rate:.0f} req/s, short of the target: its p99"
                  f" here is not at the target's rate")
    if ratios:
        print(f"  p99 gateway admin ÷ p99 nginx, same round: median {med(ratios):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; target ≤ 1.2)")
    wire = [p["d"]["p99_wire_us"] / p["b"]["p99_wire_us"] for p in pairs.values()
            if "b" in p and "d" in p and p["d"]["p99_wire_us"] and p["b"]["p99_wire_us"]]
    if wire:
        print(f"  of which on the wire (sent to answered), gateway ÷ nginx: median {med(wire):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in wire)})")
        print("  (p99 wait: the request waited in the load generator for a free connection, all of them"
              " carrying one;\n   p99 wire: sent to answered. busy %: how busy the servers' CPU was (proxy,"
              " stub and anything else);\n   +stub: the proxy's and the stub's CPU µs per request.)")
    base = [p["g"]["p99_us"] / p["b"]["p99_us"] for p in pairs.values() if "b" in p and "g" in p]
    if base:
        print(f"  p99 baseline admin (g) ÷ p99 nginx, same round: median {med(base):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in base)})")
    print()


def main():
    rows = load(sys.argv[1])
    note = sys.argv[2] if len(sys.argv) > 2 else ""
    target = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    main_rows = [r for r in rows if r["section"] == "main"]
    if main_rows:
        table(main_rows, "main: logging.level warn")
        baseline(main_rows)
        targets(main_rows)
    half_rows = [r for r in rows if r["section"] == "half"]
    if half_rows:
        half(half_rows, note, target)
    log_rows = [r for r in rows if r["section"] == "log"]
    if log_rows:
        table(log_rows, "logging.level info (the default: one access-log line per request) against warn; "
              "the two gateways alternate within each round")
        by_round = {(r["round"], r["contender"]): r for r in log_rows}
        print("  paired in each round (info gateway − warn gateway, same route):")
        for warn, info in (("d", "D"), ("f", "F")):
            pairs = [(by_round[(rnd, warn)], by_round[(rnd, info)]) for rnd, c in by_round
                     if c == warn and (rnd, info) in by_round]
            if not pairs:
                continue
            cpu = [i["cpu_us_req"] - w["cpu_us_req"] for w, i in pairs]
            rel = [(i["cpu_us_req"] / w["cpu_us_req"] - 1) * 100 for w, i in pairs]
            rps = [i["rps"] / w["rps"] for w, i in pairs]
            print(f"    {LABELS[warn]:<20} CPU {med(cpu):+6.2f} µs/req ({med(rel):+.0f} %; rounds "
                  f"{', '.join(f'{x:+.1f}' for x in cpu)})   req/s info ÷ warn {med(rps):.2f}")
        print()

if __name__ == "__main__":
    main()
