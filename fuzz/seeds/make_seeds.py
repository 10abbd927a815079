#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (run from fuzz/: python3 seeds/make_seeds.py).

Seeds come from the shipped configurations and test fixtures, the paths of the built-in
route profile, and JWTs shaped like the gateway's and ARCP's, signed with the secrets the
targets configure (fuzz_targets/common.rs).
"""
import base64, glob, hashlib, hmac, json, os, re, shutil

SIGNING = b"fuzz-gateway-signing-secret-0123456789abcdef"
OLD = b"fuzz-gateway-rotated-secret-0123456789abcdef"
JWT = b"fuzz-arcp-jwt-secret-0123456789abcdef0123"
FAR = 4102444800  # 2100-01-01
PAST = 1700000000
SID = "0123456789abcdef0123456789abcdef"
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def compact(o):
    return json.dumps(o, separators=(",", ":")).encode()


def jwt(header, claims, secret):
    h = header if isinstance(header, bytes) else compact(header)
    c = claims if isinstance(claims, bytes) else compact(claims)
    alg = json.loads(h).get("alg", "HS256")
    msg = f"{b64(h)}.{b64(c)}".encode()
    sig = hmac.new(secret, msg, HASHES.get(alg, hashlib.sha256)).digest()
    return f"{msg.decode()}.{b64(sig)}"


def gw_claims(**over):
    c = {"iss": "arcp-gateway", "sub": "ARCP", "sid": SID, "role": "admin",
         "agent_id": "user_ARCP", "scopes": ["admin", "agent_management"],
         "iat": PAST, "exp": FAR}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def up_claims(**over):
    c = {"sub": "agent-007", "agent_id": "agent-007", "role": "agent", "jti": "j1",
         "iat": PAST, "exp": FAR}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


GW_HEADER = {"typ": "JWT", "alg": "HS256", "kid": "k1"}  # as jsonwebtoken writes it
UP_HEADER = {"typ": "JWT", "alg": "HS256"}


def write(target, items):
    d = f"corpus/{target}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in items:
        with open(f"{d}/{name}", "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())


# --- config_parse: shipped configs, the route profile, every config fixture ----------
cfg = []
for p in ["../config/default.yaml", "../config/gateway.example.yaml", "../config/routes/arcp.yaml",
          *sorted(glob.glob("../tests/fixtures/config/*.yaml"))]:
    cfg.append((os.path.basename(p), open(p, "rb").read()))
cfg.append(("fuzz-token-config.yaml", re.search(r'TOKEN_CONFIG: &str = "(.*?)";',
           open("fuzz_targets/common.rs").read(), re.S).group(1)))
cfg.append(("secret-files.yaml", """listeners:
  - {address: "[::1]:8443", plain_http: true}
upstream:
  url: https://arcp.internal:8001
  service_account: {username: admin, password_file: admin.password}
  token_verification: {algorithm: HS512, secret_file: jwt.secret}
auth:
  issuer: gw
  signing_key: a
  keys: [{kid: a, algorithm: HS256, secret_file: signing.secret}]
routes:
  profile: none
  default_access: deny
  rules:
    - {path: /x/*/y/**, methods: [GET, PATCH], access: {gateway: session_status}}
    - {path: /agents/*, methods: [DELETE], access: agent, require_pin: true}
"""))
write("config_parse", cfg)

# --- path_route: every path of the built-in profile, and the ambiguous forms ----------
paths = []
for m in re.finditer(r"path: (\S+?),(?: methods: \[([^\]]*)\])?", open("../config/routes/arcp.yaml").read()):
    path, methods = m.group(1), (m.group(2) or "GET").split(",")
    path = path.replace("/**", "/a/b").replace("/*", "/x1")
    paths.append(f"{methods[0].strip()} {path}")
paths += ["GET /agent%73/stats", "GET //agents//stats/", "GET /static/../agents/stats",
          "GET /%2e%2e/agents", "GET /a%2fb", "GET /a%5cb", "GET /a\\b", "GET /a%00", "GET /a%252e",
          "GET /a%zz", "GET /dashboard/%77s", "DELETE /agents/a%2Ab", "PURGE /agents",
          "GET /public/agent/x%20y", "GET " + "/s" * 20, "get /Agents/Stats", "GET /é/ü%C3%A9"]
write("path_route", [(f"{i:02}", p) for i, p in enumerate(paths)])

# --- token_verify ----------------------------------------------------------------------
tok = [
    "v" + jwt(GW_HEADER, gw_claims(), SIGNING),
    "v" + jwt(GW_HEADER, gw_claims(exp=PAST), SIGNING),
    "v" + jwt({"typ": "JWT", "alg": "HS256", "kid": "k0"}, gw_claims(), OLD),
    "v" + jwt({"alg": "HS256", "kid": "k1"}, gw_claims(), SIGNING),
    "v" + jwt({"typ": "JWT", "alg": "HS256", "kid": "nope"}, gw_claims(), SIGNING),
    "v" + jwt(GW_HEADER, gw_claims(), b"wrong-secret-0123456789abcdef0123"),
    "v" + b64(b'{"alg":"none","kid":"k1"}') + "." + b64(compact(gw_claims())) + ".",
    "v" + jwt(UP_HEADER, up_claims(), JWT),
    "v" + jwt({"typ": "JWT", "alg": "HS512"}, up_claims(), JWT),
    "v" + jwt(UP_HEADER, up_claims(token_type="temp", aud="arcp:validate", temp_registration=True), JWT),
    "v" + jwt(UP_HEADER, up_claims(role="admin"), JWT),
    "v" + jwt(UP_HEADER, up_claims(exp=PAST), JWT),
    "v" + jwt(UP_HEADER, up_claims(), SIGNING),
    "v", "va.b.c", "vBearer abc", "v...", "veyJhbGciOiJIUzI1NiJ9",
]
for h, c in [(GW_HEADER, gw_claims()), (GW_HEADER, gw_claims(agent_id=None, scopes=None, iat=None)),
             (GW_HEADER, gw_claims(sid=SID.upper())), (GW_HEADER, gw_claims(role="agent")),
             (GW_HEADER, gw_claims(exp="4102444800")), (GW_HEADER, gw_claims(iss=["arcp-gateway"])),
             ({"alg": "HS256", "kid": "k1", "typ": "JWT"}, gw_claims()),
             ({"typ": "JWT", "alg": "HS256", "kid": "k1"}, b'{"iss":"arcp-gateway","sid":"' + SID.encode() + b'","sid":"x","role":"admin","sub":"a","exp":4102444800}')]:
    tok.append(b"g" + compact(h) + b"\n" + (c if isinstance(c, bytes) else compact(c)))
for h, c in [(UP_HEADER, up_claims()), ({"alg": "HS384"}, up_claims(role="Admin")),
             (UP_HEADER, up_claims(nbf=FAR)), (UP_HEADER, up_claims(sub=7)),
             ({"alg": "HS256", "kid": "k1"}, up_claims()), (UP_HEADER, up_claims(exp=1e300))]:
    tok.append(b"u" + compact(h) + b"\n" + compact(c))
tok += [b"m", b"m\x05A", b"m\x10\x00", b"m\x30\x80\x31\x2e", b"m\x00\x2e\x01\x2e"]
write("token_verify", [(f"{i:02}", t) for i, t in enumerate(tok)])

# --- ws_first_frame: d = dashboard socket, a = agent socket ----------------------------
frames = [
    'd{"type":"auth","token":"$GW","fingerprint":"fp-1"}', 'd{"type":"auth","token":"$GW"}',
    'd{"type":"auth","token":"$UP","fingerprint":"fp-1"}', 'd{"type":"auth","token":"","fingerprint":"x"}',
    'd{"type":"auth","token":"$GW","fingerprint":""}', 'd{"token":"x","token":"$GW","fingerprint":"f"}',
    'd{"token":["$GW"]}', "d[]", "dnull", "d", 'd{"type":"ping"}',
    'a{"token":"$UP"}', 'a{"token":"$GW","fingerprint":"fp-2"}', 'a{"token":"$GW"}',
    'a{"token":"$UP","agent_id":"agent-007","nested":{"a":[1,2.5,true,null]}}',
    'a{"token":"' + jwt(UP_HEADER, up_claims(role="admin"), JWT) + '"}',
    'a{"token":"eyJ"}', 'a{"token":"$UP"', 'a"$UP"', 'a{"token":"\\u0024UP"}',
]
write("ws_first_frame", [(f"{i:02}", f) for i, f in enumerate(frames)])

# --- problem_render: kind, flags (bit 0: status override + 2 bytes), 0x1F-separated ----
US = b"\x1f"
problems = [
    bytes([0, 0]) + US.join([b"invalid credentials", b"/auth/login", b"req_0123456789abcdef01234567", b"2026-01-01T00:00:00Z"]),
    bytes([12, 0]) + US.join([b"too many attempts", b"/auth/login", b"r1", b"2026-01-01T00:00:00Z", b"60", b'"password"']),
    bytes([14, 1, 0x01, 0x2d]) + US.join([b"headers too large", b"/agents", b"r2", b"t", b"9000", b"8192"]),
    bytes([3, 0]) + US.join([b"session expired", b"/dashboard/ws", b"r3", b"t", b"x", b"y", b"z", b"w", b"v", b"u", b"s", b"r", b'"sess_0123"', b"3600"]),
    bytes([9, 0]) + US.join(["d\u00e9tail \"quoted\" \\ </script>\n\t\u2028".encode(), b"/a%20b?x=1", b"id-\x01", b"", b"", b'[{"loc":["body","x"],"msg":"m"}]']),
    bytes([20, 1, 0xff, 0xff]) + US.join([b"\xff\xfe invalid utf-8", b"/", b"r", b"t", b"1e308", b"-0", b"18446744073709551615", b"{\"a\":{}}"]),
]
write("problem_render", [(f"{i:02}", p) for i, p in enumerate(problems)])

# --- header_hygiene: PEER [https], then header lines ----------------------------------
blocks = [
    "203.0.113.7 https\nhost: gw.example\naccept: */*\nconnection: keep-alive\n",
    "198.51.100.2 http\nHost: gw.example:8443\nConnection: close, X-Secret, keep-alive\nX-Secret: 1\nKeep-Alive: timeout=5\nTE: trailers\nTrailer: x\nUpgrade: h2c\n",
    "::ffff:10.1.2.3 https\nX-Forwarded-For: 6.6.6.6\nX-Forwarded-Proto: http\nX-Forwarded-Host: evil\nX-Forwarded-Port: 1\nForwarded: for=6.6.6.6\nX-Real-IP: 6.6.6.6\nX-Client-Cert: pem\nX-SSL-Client-Cert: pem\nX-Forwarded-Client-Cert: Cert=x\nX-Client-Certificate: der\n",
    "2001:db8::1 https\nConnection: x-forwarded-for, host\nHost: a\nX-Forwarded-For: 1.1.1.1\n",
    "127.0.0.1\nProxy-Authorization: Basic eA==\nProxy-Connection: keep-alive\nAuthorization: Bearer eyJ\nTransfer-Encoding: chunked\nContent-Type: application/json\n",
    "10.0.0.1 https\nconnection: ,,, x-a ,\tx-b\nconnection: x-c\nx-a: 1\nx-b: 2\nx-c: 3\nx-d: 4\nx-d: 5\n",
    "10.0.0.2 https\nconnection: x-secret, \x80\xff\nx-secret: hidden\nhost: h\n",
    "host: no-peer-line\ncookie: a=1\ncookie: b=2\nupgrade: websocket\nconnection: Upgrade\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\n",
]
write("header_hygiene", [(f"{i:02}", b.encode("latin-1") if isinstance(b, str) else b) for i, b in enumerate(blocks)])
