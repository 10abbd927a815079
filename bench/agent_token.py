"""Prints an upstream agent token as ARCP mints them: HS256 with BENCH_ARCP_JWT_SECRET, no kid."""
import base64
import hashlib
import hmac
import json
import os
import time


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
claims = {"sub": "agent-bench", "agent_id": "agent-bench", "role": "agent",
          "scopes": ["agent"], "iat": now, "exp": now + 4 * 3600}
payload = b64(json.dumps(claims, separators=(",", ":")).encode())
signing_input = f"{header}.{payload}".encode()
mac = hmac.new(os.environ["BENCH_ARCP_JWT_SECRET"].encode(), signing_input, hashlib.sha256).digest()
print(f"{header}.{payload}.{b64(mac)}")
