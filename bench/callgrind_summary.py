#!/usr/bin/env python3
"""Summarise a callgrind dump (bench/instructions.sh): instructions per request by crate and function.

usage: callgrind_summary.py DUMP REQUESTS [--top N] [--callers PATTERN]

Self instructions only (each instruction counts once, in the function that executed it), so
the lines add up to the total; a function inlined into another counts as that other one.
Crates come from the Rust symbol paths (type arguments stripped, as bench/perf_summary.py
does); C libraries go by their object file. `--callers PATTERN` lists instead the calls into
the functions whose name matches PATTERN (a regular expression), by caller: how often per
request and their inclusive instructions per request.
"""

import argparse
import os
import re
from collections import Counter

from perf_summary import crate_of, strip_generics

NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def self_costs(path, calls=None):
    """Self Ir by (object, function) over the dump; with `calls` (a Counter), also the calls'
    counts and inclusive Ir by (caller, callee), under keys (caller, callee, "n"|"ir")."""
    names = {"fn": {}, "ob": {}}
    costs = Counter()
    ob = fn = cfn = None
    after_call = False
    count = 0

    def resolve(kind, value):
        m = NAME.match(value)
        if not m:
            return value
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), value)

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if after_call:
                after_call = False  # the call's inclusive cost: not this function's own
                fields = line.split()
                if calls is not None and len(fields) > 1:
                    calls[(fn, cfn, "n")] += count
                    calls[(fn, cfn, "ir")] += int(fields[1])
                continue
            fields = line.split()
            if len(fields) > 1 and fn is not None:
                costs[(ob, fn)] += int(fields[1])
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            ob = resolve("ob", value)
        elif key == "cob":
            resolve("ob", value)
        elif key == "fn":
            fn = resolve("fn", value)
        elif key == "cfn":
            cfn = resolve("fn", value)
        elif key == "calls":
            after_call = True
            count = int(value.split()[0])
    return costs


def component(ob, fn):
    name = os.path.basename(ob or "?")
    if not name.startswith("arcp-gateway") and "::" not in fn:
        if name.startswith("libc"):
            if re.search(r"mem(cpy|move|set|cmp)|str", fn):
                return "libc: memcpy/memmove/memset/strings"
            if re.search(r"malloc|free|realloc|calloc", fn):
                return "libc: malloc/free"
            return "libc: other"
        return name
    crate = crate_of(strip_generics(fn))
    if crate is None:
        if fn.startswith("mi_") or fn.startswith("_mi_"):
            return "mimalloc"
        return "other (no crate path)"
    return crate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("requests", type=int)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--callers", metavar="PATTERN")
    args = ap.parse_args()
    n = max(args.requests, 1)
    if args.callers:
        callers(args.dump, re.compile(args.callers), n, args.top)
        return
    costs = self_costs(args.dump)
    total = sum(costs.values())
    print(f"  {total / n:,.0f} instructions per request over {args.requests} requests (self, by component)")
    by = Counter()
    for (ob, fn), c in costs.items():
        by[component(ob, fn)] += c
    for name, c in by.most_common():
        if c * 1000 < total:
            break
        print(f"    {c * 100 / total:5.1f} %  {c / n:8,.0f}  {name}")
    print(f"  top {args.top} functions, self instructions per request:")
    for (ob, fn), c in costs.most_common(args.top):
        print(f"    {c * 100 / total:5.1f} %  {c / n:8,.0f}  {strip_generics(fn)[:120]}")


def callers(dump, pattern, n, top):
    calls = Counter()
    self_costs(dump, calls)
    rows = [
        (ir, calls[(caller, callee, "n")], caller, callee)
        for (caller, callee, kind), ir in calls.items()
        if kind == "ir" and pattern.search(callee or "")
    ]
    rows.sort(reverse=True)
    print(f"  calls into /{pattern.pattern}/ by caller: calls and inclusive instructions per request")
    for ir, count, caller, callee in rows[:top]:
        print(
            f"    {count / n:6.2f}  {ir / n:8,.0f}  {strip_generics(callee)[:60]}"
            f"  <-  {strip_generics(caller or '?')[:80]}"
        )


if __name__ == "__main__":
    main()
