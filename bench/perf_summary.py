#!/usr/bin/env python3
"""Summarise `perf script` output of the gateway (bench/run.sh): where the CPU goes.

usage: perf script -i perf.data | perf_summary.py [--hz N --requests N] [--us-per-request X]

With --us-per-request (the proxy's CPU µs/request measured without perf), every share is also
shown in µs per request. With --hz and --requests, the CPU per request while profiling is shown
(samples / hz / requests), which includes perf's own disturbance.

Prints (1) self time by component: kernel work split by what it is for, libc allocation and
copying, and user code by Rust crate; (2) inclusive time of the gateway's stages and of the
libraries on the request path (a sample counts once per line, lines overlap).
"""

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.*?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)\s*$")

# Inclusive: a sample counts if any frame's symbol contains one of the patterns (and, where a
# third list is given, none contains one of those).
STAGES = [
    ("client connection task (own HTTP/1.1 loop, or hyper server)", ["arcp_gateway::server::serve_connection", "hyper::server::conn", "hyper_util::server::conn"]),
    ("  pipeline::handle_inner (frame, route, admit, forward)", ["arcp_gateway::pipeline::handle_inner"]),
    ("  admission (pipeline::admit)", ["arcp_gateway::pipeline::admit"]),
    ("    token verification (auth::token)", ["arcp_gateway::auth::token"]),
    ("    jsonwebtoken (general JWT path)", ["jsonwebtoken::"]),
    ("    session store (moka)", ["moka::"]),
    ("    fingerprint hash (sha2)", ["arcp_gateway::session::fingerprint", "sha2::"]),
    ("  brokered credentials (upstream::broker)", ["arcp_gateway::upstream::broker"]),
    ("  framing: request id, limits, path", ["arcp_gateway::pipeline::frame"]),
    ("  route lookup (policy)", ["arcp_gateway::policy"]),
    ("  upstream request build + header hygiene", ["arcp_gateway::proxy::forward::upstream_request",
                                                   "arcp_gateway::proxy::forward::Proxied",
                                                   "arcp_gateway::upstream::codec::encode_request",
                                                   "arcp_gateway::proxy::headers"]),
    ("  problem documents", ["arcp_gateway::problem"]),
    ("  access log / tracing", ["arcp_gateway::observability", "tracing_subscriber::", "tracing_core::"]),
    ("upstream pooled client (hyper_util legacy)", ["hyper_util::client::legacy"]),
    ("upstream connection task (hyper client h1)", ["hyper::client::conn"]),
    ("HTTP/1 parse + encode (hyper role)", ["hyper::proto::h1::role"]),
    ("rustls + ring (TLS; ring also does the tokens' HMAC)", ["rustls::", "tokio_rustls::", "ring::", "ring_core_"]),
    # The time driver wraps the IO driver's park (epoll_wait): without the exclusion every
    # wait for events would count as timer work.
    ("tokio timers (the wheel and the sleeps, not the epoll_wait under them)",
     ["tokio::runtime::time", "tokio::time::"], ["tokio::runtime::io::driver"]),
    ("tokio scheduler: park/unpark, IO driver (incl. epoll_wait)",
     ["tokio::runtime::scheduler::multi_thread::park",
      "tokio::runtime::scheduler::multi_thread::worker::Context::park",
      "tokio::runtime::scheduler::current_thread::Context::park",
      "tokio::runtime::io::driver"]),
    ("allocation (malloc/free/realloc)", ["malloc", "_int_free", "cfree", "realloc"]),
    ("syscalls (all, incl. kernel TCP work)", ["entry_SYSCALL_64"]),
]

KERNEL_BUCKETS = [
    ("kernel: loopback TCP receive (softirq, peer's side)", ["net_rx_action"]),
    ("kernel: context switch / wakeup", ["__schedule", "finish_task_switch", "try_to_wake_up", "schedule_hrtimeout"]),
    ("kernel: TCP send (writev)", ["do_writev", "tcp_sendmsg", "sendmsg"]),
    ("kernel: TCP receive (recvfrom/read)", ["recvfrom", "tcp_recvmsg", "ksys_read"]),
    ("kernel: epoll", ["epoll"]),
    ("kernel: accept/close/connect", ["accept", "__x64_sys_close", "tcp_v4_connect"]),
]


def strip_generics(symbol):
    """`<a::B<T> as c::D>::f` -> `a::B as c::D::f`; `g<x::Y>` -> `g`: paths without type arguments,
    so a pattern matches the function, not a type parameter that mentions a crate."""
    if symbol.startswith("<"):
        depth = 0
        for i, ch in enumerate(symbol):
            depth += ch == "<"
            depth -= ch == ">"
            if depth == 0:
                return strip_generics(symbol[1:i]) + strip_generics(symbol[i + 1:])
        return symbol
    out, depth = [], 0
    for ch in symbol:
        if ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def crate_of(symbol):
    s = symbol.lstrip("<&*")
    for prefix in ("dyn ", "mut "):
        if s.startswith(prefix):
            s = s[len(prefix):]
    if "::" not in s:
        return None
    return s.split("::", 1)[0]


def parse(stream):
    """Yields (thread name, [(symbol without type arguments, dso), ...] leaf first)."""
    thread, sample = None, []
    for line in stream:
        if not line.strip():
            continue
        if line[0] not in " \t":
            if sample:
                yield thread, sample
            thread, sample = line.split()[0], []
            continue
        m = FRAME.match(line)
        if m:
            sample.append((strip_generics(m.group(1)), m.group(2)))
    if sample:
        yield thread, sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hz", type=float)
    ap.add_argument("--requests", type=int)
    ap.add_argument("--us-per-request", default="")
    args = ap.parse_args()
    us = float(args.us_per_request) if args.us_per_request else None

    def show(n):
        share = n * 100 / total
        return f"{share:5.1f} %" + (f" {share * us / 100:5.1f} µs" if us is not None else "")

    total = 0
    self_by = Counter()
    incl = Counter()
    threads = Counter()
    for thread, frames in parse(sys.stdin):
        total += 1
        threads[thread] += 1
        sym, dso = frames[0]
        symbols = [f[0] for f in frames]
        if "kernel" in dso:
            bucket = "kernel: other"
            for name, pats in KERNEL_BUCKETS:
                if any(p in s for s in symbols for p in pats):
                    bucket = name
                    break
        elif "libc" in dso:
            if re.search(r"malloc|free|realloc|calloc|tcache|arena", sym):
                bucket = "libc: malloc/free"
            elif re.search(r"mem(move|cpy|set|cmp)|str", sym):
                bucket = "libc: memcpy/memmove/memset"
            else:
                bucket = "libc: other"
        elif dso.endswith("arcp-gateway") or dso == "inlined":
            # The first frame naming a crate path (inlined leaf frames often have bare names).
            crate = next((c for c in (crate_of(s) for s in symbols) if c), None)
            bucket = f"user: {crate or 'unknown'}"
        else:
            bucket = f"user: {dso.rsplit('/', 1)[-1]}"
        self_by[bucket] += 1
        for name, pats, *rest in STAGES:
            excluded = rest[0] if rest else []
            if any(p in s for s in symbols for p in pats) and not any(
                    p in s for s in symbols for p in excluded):
                incl[name] += 1
    if not total:
        print("  no samples")
        return
    kernel = sum(v for k, v in self_by.items() if k.startswith("kernel"))
    line = f"  {total} samples"
    if args.hz and args.requests:
        line += f" ({total / args.hz * 1e6 / args.requests:.1f} µs CPU/request while profiled)"
    if us is not None:
        line += f"; µs below = share × {us:.2f} µs/request measured without perf (main rounds, median)"
    print(line)
    print(f"  kernel {show(kernel)}, user+libc {show(total - kernel)}")
    print("  by thread: " + ", ".join(f"{t} {n * 100 / total:.1f} %" for t, n in threads.most_common()))
    print("  self time by component:")
    for name, n in self_by.most_common():
        if n * 100 / total >= 0.5:
            print(f"    {show(n)}  {name}")
    print("  inclusive time (a sample counts once per line; lines overlap):")
    for name, *_ in STAGES:
        if incl[name]:
            print(f"    {show(incl[name])}  {name}")


if __name__ == "__main__":
    main()
