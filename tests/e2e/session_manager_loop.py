#!/usr/bin/env python3
"""A long-running admin client in the style of a session manager, with the real ARCPClient.

It logs in, calls `list_agents` in a loop and keeps going across an idle expiry of its
session: once, after --sleep-after iterations, it stays idle for --idle-sleep seconds (longer
than the server's idle timeout), so the next call fails with 401. It then logs in again with
the same client (same X-Client-Fingerprint) and carries on until --iterations calls have
succeeded. Run it with the venv's interpreter:

    target/arcp-venv/bin/python tests/e2e/session_manager_loop.py \\
        --base-url https://127.0.0.1:<gw> --ca-file <ca.pem> --username ARCP --password ARCP \\
        --iterations 6 --sleep-after 2 --idle-sleep 3

tests/e2e_arcp.rs runs it against a gateway configured with `sessions.idle_timeout: 2s`.

Output: one JSON object per line on stdout, {"event": ..., ...}: `login`, `list_agents`
(iteration, agent count), `idle` (seconds), `expired` (the error, the HTTP status and the
problem `type` of the refused call), `recovered` (after the new login, the first successful
call), `done`. Exit status 0 when every iteration succeeded and each expiry was followed by a
recovery, 1 otherwise, 2 on bad arguments.

How the 401 is recognised. ARCPClient turns a 401 into `AuthenticationError("Authentication
failed - invalid or expired token")`, and `list_agents` wraps that into
`ARCPError("Failed to list agents: ...")` without keeping the original exception, so the
message is all a caller gets. To report what the server said, the script adds an httpx
response hook to the client's own httpx instance that remembers the status and the problem
`type` of the last response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

AUTH_FAILED = "Authentication failed"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--ca-file", help="PEM CA bundle the client must trust (sets SSL_CERT_FILE)")
    p.add_argument("--iterations", type=int, default=6, help="successful list_agents calls to make")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between calls")
    p.add_argument("--sleep-after", type=int, default=2, help="go idle after this many calls")
    p.add_argument("--idle-sleep", type=float, default=3.0, help="seconds to stay idle (0: never)")
    p.add_argument("--max-relogins", type=int, default=2, help="give up after this many re-logins")
    p.add_argument("--call-timeout", type=float, default=30.0, help="seconds allowed per call")
    return p.parse_args(argv)


class LastResponse:
    """httpx response hook: the status and problem type of the last response."""

    def __init__(self) -> None:
        self.status: Optional[int] = None
        self.problem_type: Optional[str] = None
        self.path: Optional[str] = None

    async def __call__(self, response: Any) -> None:
        self.status = response.status_code
        self.path = response.request.url.path
        self.problem_type = None
        if response.status_code >= 400:
            await response.aread()
            try:
                body: Dict[str, Any] = response.json()
                self.problem_type = body.get("type")
            except ValueError:
                pass


async def run(args: argparse.Namespace) -> bool:
    from arcp import ARCPClient  # imported after SSL_CERT_FILE is set

    async def call(coro: Any) -> Any:
        return await asyncio.wait_for(coro, timeout=args.call_timeout)

    async with ARCPClient(args.base_url) as client:
        last = LastResponse()
        client._client.event_hooks = {"response": [last]}  # the client's own httpx instance

        started = time.monotonic()
        await call(client.login_admin(args.username, args.password))
        emit("login", relogins=0)
        done = 0
        relogins = 0
        expired_pending = False
        went_idle = False
        while done < args.iterations:
            if not went_idle and args.idle_sleep > 0 and done == args.sleep_after:
                went_idle = True
                emit("idle", seconds=args.idle_sleep)
                await asyncio.sleep(args.idle_sleep)
            try:
                agents = await call(client.list_agents())
            except Exception as e:  # noqa: BLE001 (the client's error types carry only text)
                if AUTH_FAILED not in str(e):
                    emit("error", iteration=done + 1, raised=type(e).__name__, message=str(e),
                         status=last.status)
                    return False
                emit("expired", iteration=done + 1, raised=type(e).__name__, message=str(e),
                     status=last.status, type=last.problem_type)
                if relogins >= args.max_relogins:
                    emit("error", message="too many re-logins")
                    return False
                relogins += 1
                await call(client.login_admin(args.username, args.password))
                emit("login", relogins=relogins)
                expired_pending = True
                continue
            done += 1
            emit("list_agents", iteration=done, agents=len(agents), status=last.status)
            if expired_pending:
                expired_pending = False
                emit("recovered", iteration=done, relogins=relogins, agents=len(agents))
            await asyncio.sleep(args.interval)
        emit("done", iterations=done, relogins=relogins,
             seconds=round(time.monotonic() - started, 3))
        return not expired_pending


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.ca_file:
        if not os.path.isfile(args.ca_file):
            print(f"--ca-file {args.ca_file!r} is not a file", file=sys.stderr)
            return 2
        os.environ["SSL_CERT_FILE"] = os.path.abspath(args.ca_file)
    for var in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(var, "")
        os.environ[var] = ",".join(x for x in (current, "127.0.0.1", "localhost", "::1") if x)
    try:
        ok = asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        emit("error", raised=type(e).__name__, message=str(e))
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
