#!/usr/bin/env python3
"""End-to-end flow with the real, unmodified ARCP 2.1.2 Python client (`from arcp import ARCPClient`).

Run it with the interpreter of the venv that scripts/arcp-venv.sh creates:

    target/arcp-venv/bin/python tests/e2e/arcp_client_flow.py \
        --base-url https://127.0.0.1:8443 --username admin --password test-admin-pass \
        [--ca-file ca.pem] [--agent-key test-agent-key-0001] [--pin PIN] [--skip STEP ...]

It works directly against an ARCP server (http) and through the gateway (https). Each step
prints one JSON object on stdout: {"step": ..., "ok": true|false, "detail": ...}. The exit
status is 0 when every step passed, 1 when any failed, 2 on bad arguments. Diagnostics and
the client's own logging go to stderr. Every step is bounded by --step-timeout.

Through the gateway, as tests/e2e_arcp.rs runs it (every step, the two raw wss:// ones
included: the gateway relays the agent and public sockets):

    target/arcp-venv/bin/python tests/e2e/arcp_client_flow.py \
        --base-url https://127.0.0.1:<gw> --ca-file <ca.pem> --username ARCP --password ARCP \
        --agent-key test-agent-key-0001

Admin unregistration and X-Session-Pin. The gateway requires a verified `X-Session-Pin` from
admin sessions on `DELETE /agents/*` (also on `POST /dashboard/config` and `POST /tokens/mint`);
the PIN is the one the session set with `POST /auth/set_pin`. ARCPClient has no method for
`/auth/set_pin` and `unregister_agent` cannot add a header, so the admin unregistration here
is two direct HTTP requests (httpx, the admin client's own token and X-Client-Fingerprint):
`set_pin` (POST /auth/set_pin {"pin": --pin}) and `unregister_agent_with_pin` (DELETE
/agents/{id} with X-Session-Pin). Both work directly against ARCP too: upstream stores the
PIN and ignores the header on DELETE. `ARCPClient.unregister_agent` is still called, by the
agent for itself (agent tokens need no PIN), in the clean-up when an earlier step failed.

TLS trust (--ca-file). ARCPClient builds `httpx.AsyncClient(verify=self.verify_ssl, ...)`
with `verify_ssl=True` by default (client.py `_ensure_client`). httpx 0.28 then builds its
SSL context in `_config.create_ssl_context`: with `verify=True` and `trust_env=True` (the
default) it loads `SSL_CERT_FILE` if that variable is set, otherwise certifi's bundle. The
WebSocket methods call `websockets.connect(url, ssl=None)`, whose default context comes from
`ssl.create_default_context()`, and OpenSSL's default verify paths also honour
`SSL_CERT_FILE`. So this script sets `SSL_CERT_FILE=<ca-file>` before creating any client and
leaves the client's own options at their defaults, the way a user would. (Passing
`verify_ssl=ssl.create_default_context(cafile=...)` would also reach httpx, but not the
WebSocket methods, and does not match the parameter's documented bool type.)

ARCPClient methods in 2.1.2 and what this script does with them:

  called, admin (after login_admin):
    login_admin, is_authenticated (local), list_agents (plain and filtered by agent_type),
    get_system_stats (GET /agents/stats), get_system_metrics (GET /metrics),
    get_resource_utilization, get_metrics_snapshot, admin_health_check,
    export_metrics("prometheus") and export_metrics("json"), monitor_system (one short
    iteration with a callback), validate_token (GET /tokens/validate with the admin token),
    search_agents(public_api=False) (POST /agents/search), get_agent, get_metrics,
    plus the module-level get_system_health.
  direct HTTP with the admin client's token and fingerprint (see "Admin unregistration"):
    POST /auth/set_pin, then DELETE /agents/{id} with X-Session-Pin.
  called, public (no token):
    health_check, get_system_info, get_public_stats, get_allowed_agent_types,
    discover_agents, get_public_agent, search_agents (POST /public/search),
    request_agent_connection (the server POSTs to the agent's endpoint; a stub agent endpoint
    on 127.0.0.1 answers it), websocket_public (first message only).
  called, agent (second client instance, temp token from AGENT_KEYS):
    request_temp_token, register_agent(..., skip_validation=True), update_heartbeat,
    update_metrics, get_metrics, get_agent, websocket_agent (auth + first message),
    request_attestation_challenge (server answers 501; the client maps that to None),
    refresh_authentication (agent token; POST /tokens/refresh).
  called, expected to fail (negative checks):
    list_agents without login (401 -> error), login_admin with a wrong password.
  skipped:
    validate_compliance / _poll_validation_status: three-phase registration (ARCP_TPR) is
      off on a plain server, and there POST /auth/agent/validate_compliance answers 500
      (upstream bug: ARCPProblemTypes.FEATURE_DISABLED does not exist), which the client
      turns into RegistrationError. For the same reason register_agent() must be called
      with skip_validation=True; its default (False) fails against a plain server.
    refresh_authentication with the ADMIN token: the refreshed admin token has no
      server-side session, so it would break every later admin call of that client
      (and a gateway is expected to refuse it).
    start_heartbeat_task: an endless loop around update_heartbeat, which is called directly.
    close / __aenter__ / __aexit__: used implicitly by `async with`.
    module-level monitor_system: an endless loop without `duration`; the method is called.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import logging
import os
import sys
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional

FAILED_STEPS: List[str] = []


def emit(step: str, ok: bool, detail: Any) -> None:
    """Print one result line on stdout (flushed, so a reader sees progress)."""
    if not ok:
        FAILED_STEPS.append(step)
    print(json.dumps({"step": step, "ok": ok, "detail": detail}, default=str), flush=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="http(s)://host:port of ARCP or the gateway (no path)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--ca-file", help="PEM CA bundle the client must trust (sets SSL_CERT_FILE)")
    p.add_argument("--agent-key", default="test-agent-key-0001", help="one of the server's AGENT_KEYS")
    p.add_argument("--agent-type", default="testing", help="one of the server's ALLOWED_AGENT_TYPES")
    p.add_argument("--pin", default=None,
                   help="PIN the admin session sets for X-Session-Pin (default: random)")
    p.add_argument("--skip", action="append", default=[], metavar="STEP", help="skip a step by name (repeatable)")
    p.add_argument("--step-timeout", type=float, default=30.0, help="seconds allowed per step")
    return p.parse_args(argv)


class StubAgentEndpoint:
    """A tiny HTTP server on 127.0.0.1 acting as the registered agent's `endpoint`.

    ARCP's POST /public/connect/{id} forwards the request to `{endpoint}/connection/request`
    and needs a 200 back; everything received is recorded for the step's detail.
    """

    def __init__(self) -> None:
        received: List[Dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed: Any = json.loads(body or b"null")
                except ValueError:
                    parsed = body.decode("utf-8", "replace")
                received.append({"path": self.path, "body": parsed})
                payload = b'{"status":"accepted"}'
                self.send_response(200 if self.path == "/connection/request" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: Any) -> None:
                sys.stderr.write("stub-agent: " + (fmt % args) + "\n")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StubAgentEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class Flow:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.skip = set(args.skip)

    async def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any]],
        check: Optional[Callable[[Any], Any]] = None,
        expect_error: bool = False,
        known_error: Optional[str] = None,
    ) -> Any:
        """Run one step under the step timeout and emit its result line.

        `check(result)` returns a JSON-able detail or raises AssertionError. With
        `expect_error`, the step passes only if `fn` raises (the error text is the detail).
        With `known_error`, an error whose message contains that text is a documented upstream
        limitation: the step passes and says so (success passes too).
        Returns the result (None when the step failed or was skipped).
        """
        if name in self.skip:
            emit(name, True, "skipped (--skip)")
            return None
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(fn(), timeout=self.args.step_timeout)
        except asyncio.TimeoutError:
            emit(name, False, f"timed out after {self.args.step_timeout}s")
            return None
        except Exception as e:  # noqa: BLE001 (every client error is a step result)
            if expect_error:
                emit(name, True, {"raised": type(e).__name__, "message": str(e)})
            elif known_error and known_error in str(e):
                emit(name, True, {"known upstream limitation": str(e)})
            else:
                emit(name, False, {"raised": type(e).__name__, "message": str(e)})
            return None
        elapsed = round(time.monotonic() - started, 3)
        if expect_error:
            emit(name, False, {"expected an error, got": _short(result)})
            return None
        try:
            detail = check(result) if check else _short(result)
        except Exception as e:  # noqa: BLE001 (AssertionError, or a result of an unexpected shape)
            emit(name, False, {"check failed": f"{type(e).__name__}: {e}", "result": _short(result)})
            return None
        emit(name, True, {"seconds": elapsed, "result": detail})
        return result


def _short(value: Any, limit: int = 300) -> Any:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


def _ids(agents: List[Any]) -> List[str]:
    return [a.agent_id for a in agents]


# ARCPClient.websocket_public/websocket_agent call `websockets.connect(url, ssl=None)` for wss://
# URLs (ssl=False when verify_ssl is False). websockets 15.0.1, which arcp-py's pin
# (websockets>=11.0.3,<16) resolves to, rejects that with this ValueError, so the client's
# WebSocket methods only work over plain ws://. Over https the script still checks the same
# exchanges with the websockets library directly (the *_raw_wss steps).
WSS_CLIENT_BUG = "ssl=None is incompatible with a wss:// URI"


def _is_tls(args: argparse.Namespace) -> bool:
    return args.base_url.lower().startswith("https://")


def _wss_url(args: argparse.Namespace, path: str) -> str:
    from urllib.parse import urlparse

    return f"wss://{urlparse(args.base_url).netloc}{path}"


def _ssl_context(args: argparse.Namespace) -> Any:
    import ssl

    return ssl.create_default_context(cafile=args.ca_file) if args.ca_file else ssl.create_default_context()


async def _recv_json(ws: Any) -> Any:
    """Next JSON frame, answering/ignoring the server's plain-text ping/pong keepalives."""
    while True:
        msg = await ws.recv()
        if isinstance(msg, str) and msg.strip().lower() in ("ping", "pong"):
            if msg.strip().lower() == "ping":
                await ws.send("pong")
            continue
        return json.loads(msg)


async def raw_public_ws(args: argparse.Namespace) -> Any:
    """What websocket_public() does: send get_discovery, return the first JSON message."""
    import websockets

    async with websockets.connect(_wss_url(args, "/public/ws"), ssl=_ssl_context(args),
                                  open_timeout=args.step_timeout) as ws:
        await ws.send(json.dumps({"type": "get_discovery", "page": 1, "page_size": 50}))
        return await _recv_json(ws)


async def raw_agent_ws(args: argparse.Namespace, token: str) -> Any:
    """What websocket_agent() does: answer auth_required with the token, return the next message."""
    import websockets

    async with websockets.connect(_wss_url(args, "/agents/ws"), ssl=_ssl_context(args),
                                  open_timeout=args.step_timeout) as ws:
        first = await _recv_json(ws)
        if first.get("type") != "auth_required":
            raise AssertionError(f"expected auth_required, got {first!r}")
        await ws.send(json.dumps({"token": token}))
        auth = await _recv_json(ws)
        if auth.get("type") != "auth_success":
            raise AssertionError(f"expected auth_success, got {auth!r}")
        return await _recv_json(ws)


async def first_ws_message(gen: Any, timeout: float) -> Any:
    """Take the first message of one of the client's WebSocket generators, then close it."""
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout=timeout)
    finally:
        await gen.aclose()


async def main_flow(args: argparse.Namespace) -> None:
    from arcp import ARCPClient  # the real client, imported after SSL_CERT_FILE is set

    flow = Flow(args)
    s = flow.step
    run_id = uuid.uuid4().hex[:10]
    agent_id = f"e2e-agent-{run_id}"
    agent_type = args.agent_type
    capability = f"e2e-cap-{run_id}"
    pin = args.pin or f"pin-{uuid.uuid4().hex[:12]}"

    # ---- public endpoints, no token ------------------------------------------------------
    async with ARCPClient(args.base_url) as public:
        await s("health_check", public.health_check,
                lambda r: _expect(r.get("service") == "ARCP Registry" and r.get("status") in ("healthy", "degraded"),
                                  "service/status", {"status": r.get("status"), "version": r.get("version")}))
        await s("get_system_info", public.get_system_info,
                lambda r: _expect(r.get("service") == "ARCP", "service", r))
        await s("get_public_stats", public.get_public_stats,
                lambda r: _expect("total_agents" in r, "total_agents", r))
        await s("get_allowed_agent_types", public.get_allowed_agent_types,
                lambda r: _expect(isinstance(r, list) and agent_type in r, f"{agent_type!r} allowed", r))
        await s("discover_agents", public.discover_agents,
                lambda r: _expect(isinstance(r, list), "list", {"count": len(r)}))
        # 401 from upstream (or gateway) must surface as an error, not as data.
        await s("list_agents_without_login", public.list_agents, expect_error=True)

    async with contextlib.AsyncExitStack() as stack:
        stub = stack.enter_context(StubAgentEndpoint())
        admin = await stack.enter_async_context(ARCPClient(args.base_url))
        agent = await stack.enter_async_context(ARCPClient(args.base_url))
        # ---- admin ---------------------------------------------------------------------------
        login = await s("login_admin", lambda: admin.login_admin(args.username, args.password),
                        lambda r: _expect(bool(r.get("access_token")) and r.get("token_type", "").lower() == "bearer",
                                          "bearer access_token",
                                          {"token_type": r.get("token_type"), "expires_in": r.get("expires_in"),
                                           "agent_id": r.get("agent_id")}))
        if login is None:
            emit("admin_steps", False, "login_admin failed; admin steps not run")
        else:
            await s("is_authenticated", _sync(admin.is_authenticated), lambda r: _expect(r is True, "True", r))
            await s("list_agents", admin.list_agents, lambda r: _expect(isinstance(r, list), "list", _ids(r)))
            await s("get_system_stats", admin.get_system_stats,
                    lambda r: _expect(isinstance(r, dict) and r, "non-empty dict", sorted(r)))
            await s("get_system_metrics", admin.get_system_metrics,
                    lambda r: _expect("arcp_system_cpu_utilization_percent" in r, "prometheus text",
                                      {"bytes": len(r)}))
            await s("get_resource_utilization", admin.get_resource_utilization,
                    lambda r: _expect({"cpu", "memory"} <= set(r), "cpu+memory", r))
            await s("get_metrics_snapshot", admin.get_metrics_snapshot,
                    lambda r: _expect(bool(r.prometheus_metrics) and isinstance(r.agent_stats, dict), "snapshot",
                                      {"resource_utilization": r.resource_utilization}))
            await s("admin_health_check", admin.admin_health_check,
                    lambda r: _expect(r.get("status") in ("healthy", "warning", "critical"), "status", r.get("status")))
            await s("export_metrics_prometheus", lambda: admin.export_metrics("prometheus"),
                    lambda r: _expect("# TYPE" in r, "prometheus text", {"bytes": len(r)}))
            await s("export_metrics_json", lambda: admin.export_metrics("json"),
                    lambda r: _expect("agent_stats" in json.loads(r), "json export", sorted(json.loads(r))))
            await s("monitor_system", lambda: _monitor_once(admin),
                    lambda r: _expect(len(r) >= 1, "at least one snapshot", {"snapshots": len(r)}))
            await s("validate_token", admin.validate_token,
                    lambda r: _expect(r.get("valid") is True, "valid", {"valid": r.get("valid"),
                                                                         "role": (r.get("payload") or {}).get("role")}))
            await s("search_agents_admin", lambda: admin.search_agents("anything", public_api=False),
                    lambda r: _expect(isinstance(r, list), "list", {"count": len(r)}))

        # ---- agent (its own client instance and token) ---------------------------------------
        await s("request_attestation_challenge", lambda: agent.request_attestation_challenge(agent_id),
                lambda r: _expect(r is None or isinstance(r, dict), "None (501) or a challenge", r))
        temp = await s("request_temp_token",
                       lambda: agent.request_temp_token(agent_id, agent_type, args.agent_key),
                       lambda r: _expect(isinstance(r, str) and r.count(".") == 2, "a JWT", {"jwt_chars": len(r)}))
        if temp is None:
            emit("agent_steps", False, "request_temp_token failed; agent steps not run")
            return
        unregistered = False
        try:
            registered = await s(
                "register_agent",
                lambda: agent.register_agent(
                    agent_id=agent_id,
                    name="E2E Test Agent",
                    agent_type=agent_type,
                    endpoint=stub.url,
                    capabilities=[capability, "testing"],
                    context_brief="End-to-end test agent registered by arcp_client_flow.py",
                    version="1.0.0",
                    owner="arcp-gateway-e2e",
                    public_key="e2e-public-key-" + "A" * 40,
                    communication_mode="remote",
                    metadata={"purpose": "e2e", "run_id": run_id},
                    skip_validation=True,  # TPR is off on a plain server; see module docstring
                ),
                lambda r: _expect(r.agent_id == agent_id and r.status == "alive", "alive agent",
                                  {"agent_id": r.agent_id, "status": r.status, "endpoint": r.endpoint}),
            )
            if registered is None:
                emit("agent_steps", False, "register_agent failed; agent steps not run")
                return
            await agent_steps(s, args, agent, agent_id)
            if login is not None:
                await s("get_agent_admin", lambda: admin.get_agent(agent_id),
                        lambda r: _expect(r.agent_id == agent_id, "agent", {"status": r.status}))
                await s("list_agents_filtered", lambda: admin.list_agents(agent_type=agent_type),
                        lambda r: _expect(agent_id in _ids(r), f"{agent_id} listed", _ids(r)))
                await s("get_metrics_admin", lambda: admin.get_metrics(agent_id),
                        lambda r: _expect(r.total_requests == 3, "the updated metrics",
                                          {"total_requests": r.total_requests}))
            await public_agent_steps(s, args, ARCPClient, stub, agent_id, agent_type, capability)
            await s("refresh_authentication_agent", agent.refresh_authentication,
                    lambda r: _expect(r is True, "True", r))
            if login is not None:
                # ARCPClient cannot send X-Session-Pin: direct requests (module docstring).
                pin_set = await s("set_pin", lambda: admin_http(admin, "POST", "/auth/set_pin",
                                                                  json_body={"pin": pin}),
                                  lambda r: _expect(r.get("status") == "success", "success", r)) is not None
                if pin_set:
                    unregistered = await s(
                        "unregister_agent_with_pin",
                        lambda: admin_http(admin, "DELETE", f"/agents/{agent_id}", pin=pin),
                        lambda r: _expect(r.get("status") == "success"
                                          and str(r.get("unregistered_by", "")).startswith("admin"),
                                          "success, by the admin", r)) is not None
                await s("list_agents_after_unregister", admin.list_agents,
                        lambda r: _expect(agent_id not in _ids(r), f"{agent_id} gone", _ids(r)))
        finally:
            if not unregistered:
                # Never leave an alive agent behind: it would hold the agent key (one alive agent
                # per key) and make the next run's registration fail. The agent may unregister
                # itself without a PIN; the admin needs the PIN (if one was set).
                cleanups = [lambda: agent.unregister_agent(agent_id),
                            lambda: admin_http(admin, "DELETE", f"/agents/{agent_id}", pin=pin)]
                for attempt in cleanups:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(attempt(), timeout=args.step_timeout)
                        print(f"cleanup: unregistered {agent_id}", file=sys.stderr)
                        break


async def run(args: argparse.Namespace) -> None:
    from arcp import ARCPClient
    from arcp import client as arcp_client_module

    await main_flow(args)

    # ---- module-level helper and negative login ---------------------------------------------
    s = Flow(args).step
    await s("get_system_health", lambda: arcp_client_module.get_system_health(
                args.base_url, args.username, args.password),
            lambda r: _expect(r.get("status") in ("healthy", "warning", "critical"), "status", r.get("status")))
    async with ARCPClient(args.base_url) as wrong:
        await s("login_admin_wrong_password",
                lambda: wrong.login_admin(args.username, args.password + "-wrong"), expect_error=True)


async def agent_steps(s: Any, args: argparse.Namespace, agent: Any, agent_id: str) -> None:
    """What a registered agent does with its own token (after register_agent)."""
    await s("update_heartbeat", lambda: agent.update_heartbeat(agent_id),
            lambda r: _expect(r.get("status") == "success", "success", r))
    await s("update_metrics", lambda: agent.update_metrics(
                agent_id, {"total_requests": 3, "success_rate": 1.0, "avg_response_time": 0.25}),
            lambda r: _expect(r.get("status") == "success", "success", r.get("metrics")))
    await s("get_metrics_agent", lambda: agent.get_metrics(agent_id),
            lambda r: _expect(r.agent_id == agent_id and r.total_requests == 3, "own metrics",
                              {"total_requests": r.total_requests}))
    await s("get_agent_agent", lambda: agent.get_agent(agent_id),
            lambda r: _expect(r.agent_id == agent_id, "own record", {"status": r.status}))
    # The first frame after auth_success is the initial agents list (a JSON array).
    def check_agents_ws(r: Any) -> Any:
        return _expect(isinstance(r, list) and agent_id in [a.get("agent_id") for a in r],
                       "initial agents list containing the agent",
                       {"initial_agents": [a.get("agent_id") for a in r]})

    await s("websocket_agent", lambda: first_ws_message(agent.websocket_agent(), args.step_timeout),
            check_agents_ws, known_error=WSS_CLIENT_BUG if _is_tls(args) else None)
    if _is_tls(args):
        token = agent._access_token  # the token websocket_agent() would send
        await s("websocket_agent_raw_wss", lambda: raw_agent_ws(args, token), check_agents_ws)


async def public_agent_steps(s: Any, args: argparse.Namespace, client_cls: Any, stub: StubAgentEndpoint,
                             agent_id: str, agent_type: str, capability: str) -> None:
    """Public (no token) views of the registered agent."""
    async with client_cls(args.base_url) as public:
        await s("discover_agents_finds_agent", lambda: public.discover_agents(agent_type=agent_type),
                lambda r: _expect(agent_id in _ids(r), f"{agent_id} discovered", _ids(r)))
        await s("get_public_agent", lambda: public.get_public_agent(agent_id),
                lambda r: _expect(r.agent_id == agent_id, "agent", {"name": r.name}))
        await s("search_agents_public", lambda: public.search_agents(capability, min_similarity=0.0),
                lambda r: _expect(agent_id in [x.id for x in r], f"{agent_id} found", [x.id for x in r]))
        await s("request_agent_connection",
                lambda: public.request_agent_connection(
                    agent_id, user_id="e2e-user", user_endpoint="http://127.0.0.1:9/e2e-user",
                    display_name="E2E User"),
                lambda r: _expect(r.get("status") == "connection_requested"
                                  and any(x["path"] == "/connection/request" for x in stub.received),
                                  "forwarded to the stub agent",
                                  {"status": r.get("status"), "stub_received": len(stub.received)}))
        def check_public_ws(r: Any) -> Any:
            return _expect(isinstance(r, dict) and r.get("type"), "a typed JSON message", {"type": r.get("type")})

        await s("websocket_public", lambda: first_ws_message(public.websocket_public(), args.step_timeout),
                check_public_ws, known_error=WSS_CLIENT_BUG if _is_tls(args) else None)
        if _is_tls(args):
            await s("websocket_public_raw_wss", lambda: raw_public_ws(args), check_public_ws)


async def admin_http(admin: Any, method: str, path: str, pin: Optional[str] = None,
                     json_body: Optional[Dict[str, Any]] = None) -> Any:
    """One request with the admin ARCPClient's own bearer token and X-Client-Fingerprint.

    For what the client cannot send: `/auth/set_pin` has no client method, and
    `unregister_agent` cannot add `X-Session-Pin`. Trust comes from SSL_CERT_FILE, like the
    client's own httpx instance. A non-200 answer raises with the status and the body.
    """
    import httpx

    if not admin._access_token:
        raise AssertionError("the admin client is not logged in")
    headers = {"Authorization": f"Bearer {admin._access_token}",
               "X-Client-Fingerprint": admin._client_fingerprint}
    if pin is not None:
        headers["X-Session-Pin"] = pin
    async with httpx.AsyncClient(timeout=admin.timeout) as http:
        response = await http.request(method, admin.base_url + path, headers=headers, json=json_body)
    if response.status_code != 200:
        raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def _expect(cond: bool, what: str, detail: Any) -> Any:
    if not cond:
        raise AssertionError(f"expected {what}")
    return detail


def _sync(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def wrapper() -> Any:
        return fn()

    return wrapper


async def _monitor_once(client: Any) -> List[Any]:
    """monitor_system() with a callback, for one iteration (interval 1 s, duration 1 s).

    The method print()s its summary and swallows errors, so its stdout goes to stderr here and
    an iteration counts only if the callback received a snapshot.
    """
    snapshots: List[Any] = []
    with contextlib.redirect_stdout(sys.stderr):
        await client.monitor_system(interval=1, callback=snapshots.append, duration=1)
    return snapshots


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.ca_file:
        if not os.path.isfile(args.ca_file):
            print(f"--ca-file {args.ca_file!r} is not a file", file=sys.stderr)
            return 2
        os.environ["SSL_CERT_FILE"] = os.path.abspath(args.ca_file)
    # Loopback must never go through a proxy that happens to be configured in the environment.
    for var in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(var, "")
        os.environ[var] = ",".join(x for x in (current, "127.0.0.1", "localhost", "::1") if x)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        emit("flow", False, {"raised": type(e).__name__, "message": str(e)})
    if FAILED_STEPS:
        print(f"FAILED steps: {', '.join(FAILED_STEPS)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
