"""The checks of scripts/test-gateways: requests through a real nginx (auth_request to
sessiond's GET /auth/check) in front of upstream.py, with a valid, a revoked, an expired and
a missing token, by header and by cookie. Standard library only, plus curl for the one gRPC
call (Issue) that has no HTTP form.

Configured by the environment that scripts/test-gateways sets:
    GATEWAY        http://127.0.0.1:PORT of nginx
    SESSIOND_HTTP  http://127.0.0.1:PORT of sessiond's HTTP surface
    SESSIOND_GRPC  http://127.0.0.1:PORT of sessiond's gRPC surface
    UPSTREAM       http://127.0.0.1:PORT of upstream.py (asked directly what it has seen)
    LOGIN_CREDENTIAL, GATEWAY_CREDENTIAL  the callers' credentials (issuer, validator)
    AUTH_COOKIE    the cookie sessiond reads (--auth-cookie)

Prints "ok   <check>" or "FAIL <check>: <why>" per check, then
"gateways: N passed, N failed"; exits 1 if any failed.
"""

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid

GATEWAY = os.environ["GATEWAY"]
SESSIOND_HTTP = os.environ["SESSIOND_HTTP"]
SESSIOND_GRPC = os.environ["SESSIOND_GRPC"]
UPSTREAM = os.environ["UPSTREAM"]
LOGIN = os.environ["LOGIN_CREDENTIAL"]
GATEWAY_CREDENTIAL = os.environ["GATEWAY_CREDENTIAL"]
COOKIE = os.environ["AUTH_COOKIE"]
DEADLINE = 15.0
IDENTITY = ("x-session-id", "x-user-id", "x-tenant-id")

results = {"passed": 0, "failed": 0}


class Failed(Exception):
    pass


def expect(condition, why):
    if not condition:
        raise Failed(why)


def check(name):
    """Runs the decorated function as one check, counted and reported."""

    def run(fn):
        try:
            fn()
        except Failed as e:
            results["failed"] += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # a broken check is a failed check, never a crash
            results["failed"] += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        else:
            results["passed"] += 1
            print(f"ok   {name}", flush=True)
        return fn

    return run


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(lowercase name, value)], repeats kept
        self.body = body

    def header(self, name):
        return next((v for k, v in self.headers if k == name), None)

    def json(self):
        return json.loads(self.body)


def request(base, method, path, headers=(), body=None):
    """One HTTP/1.1 request; `headers` is a list of pairs, so a name may repeat."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        if body is not None:
            conn.send(body)
        response = conn.getresponse()
        data = response.read()
        return Answer(
            response.status, [(k.lower(), v) for k, v in response.getheaders()], data
        )
    finally:
        conn.close()


# --- gRPC Issue through curl (HTTP/2), with the few protobuf fields it needs ---------------


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fields(data):
    """The fields of a protobuf message: {number: [value, ...]}, length-delimited ones as
    bytes."""
    out, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise Failed(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def read_varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def issue(user, tenant="", ttl_seconds=None):
    """Issues a session (sessiond.v1.SessionService/Issue as the login caller): returns
    (session_id, access_token, refresh_token)."""
    message = field(1, user.encode())
    if tenant:
        message += field(2, tenant.encode())
    if ttl_seconds is not None:
        message += field(4, varint(1 << 3 | 0) + varint(ttl_seconds))
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    run = subprocess.run(
        [
            "curl", "-sS", "--http2-prior-knowledge", "--max-time", "10",
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            "-H", f"authorization: Bearer {LOGIN}",
            "--data-binary", "@-",
            "-D", "-",
            f"{SESSIOND_GRPC}/sessiond.v1.SessionService/Issue",
        ],
        input=frame,
        capture_output=True,
        check=False,
    )
    expect(run.returncode == 0, f"curl failed: {run.stderr.decode(errors='replace')}")
    head, _, body = run.stdout.partition(b"\r\n\r\n")
    expect(len(body) >= 5 and body[0] == 0, f"Issue failed: {run.stdout!r}")
    length = int.from_bytes(body[1:5], "big")
    reply = fields(body[5 : 5 + length])
    session = fields(reply[1][0])
    tokens = fields(reply[2][0])
    return (
        session[1][0].decode(),
        tokens[1][0].decode(),
        tokens[3][0].decode(),
    )


# --- the gateway ------------------------------------------------------------------------


def through_gateway(path, headers=()):
    return request(GATEWAY, "GET", path, headers)


def seen():
    return request(UPSTREAM, "GET", "/__seen").json()


def echoed(answer):
    """The headers the upstream received, as {name: [values]}."""
    expect(answer.status == 200, f"status {answer.status}, expected 200: {answer.body[:200]!r}")
    got = {}
    for name, value in answer.json()["headers"]:
        got.setdefault(name, []).append(value)
    return got


def refused(answer, reason):
    """A 401 with the challenge and `reason` that never reached the upstream."""
    expect(answer.status == 401, f"status {answer.status}, expected 401: {answer.body[:200]!r}")
    challenge = answer.header("www-authenticate") or ""
    expect('error="invalid_token"' in challenge, f"WWW-Authenticate is {challenge!r}")
    got = answer.header("x-session-invalid-reason")
    expect(got == reason, f"X-Session-Invalid-Reason is {got!r}, expected {reason!r}")
    for name in IDENTITY:
        expect(answer.header(name) is None, f"the refusal carries {name}")


def unique(name):
    return f"/app/{name}/{uuid.uuid4()}"


FORGED = [
    ("X-User-Id", "admin"),
    ("X-Session-Id", "00000000-0000-0000-0000-000000000000"),
    ("X-Tenant-Id", "someone-else"),
    ("x-user-id", "root"),
]

allowed_paths = []
refused_paths = []


def main():
    sid, access, refresh = issue("user-1", "tenant-a")

    @check("a valid bearer token reaches the app with its identity")
    def _():
        path = unique("valid-header")
        got = echoed(through_gateway(path, [("Authorization", f"Bearer {access}")]))
        allowed_paths.append(path)
        expect(got.get("x-user-id") == ["user-1"], f"x-user-id {got.get('x-user-id')}")
        expect(got.get("x-session-id") == [sid], f"x-session-id {got.get('x-session-id')}")
        expect(got.get("x-tenant-id") == ["tenant-a"], f"x-tenant-id {got.get('x-tenant-id')}")

    @check("client-sent identity headers never reach the app (bearer token)")
    def _():
        path = unique("forged-header")
        got = echoed(
            through_gateway(path, FORGED + [("Authorization", f"Bearer {access}")])
        )
        allowed_paths.append(path)
        expect(got.get("x-user-id") == ["user-1"], f"x-user-id {got.get('x-user-id')}")
        expect(got.get("x-session-id") == [sid], f"x-session-id {got.get('x-session-id')}")
        expect(got.get("x-tenant-id") == ["tenant-a"], f"x-tenant-id {got.get('x-tenant-id')}")

    @check("a valid token in the cookie reaches the app with its identity")
    def _():
        path = unique("valid-cookie")
        cookie = f"theme=dark; {COOKIE}={access}; lang=en"
        got = echoed(through_gateway(path, FORGED + [("Cookie", cookie)]))
        allowed_paths.append(path)
        expect(got.get("x-user-id") == ["user-1"], f"x-user-id {got.get('x-user-id')}")
        expect(got.get("x-session-id") == [sid], f"x-session-id {got.get('x-session-id')}")
        expect(got.get("x-tenant-id") == ["tenant-a"], f"x-tenant-id {got.get('x-tenant-id')}")

    @check("a session without a tenant: no X-Tenant-Id upstream, not even a forged one")
    def _():
        _, untenanted, _ = issue("user-2")
        path = unique("untenanted")
        got = echoed(
            through_gateway(
                path, [("X-Tenant-Id", "someone-else"), ("Authorization", f"Bearer {untenanted}")]
            )
        )
        allowed_paths.append(path)
        expect(got.get("x-user-id") == ["user-2"], f"x-user-id {got.get('x-user-id')}")
        expect("x-tenant-id" not in got, f"x-tenant-id {got.get('x-tenant-id')}")

    @check("the gateway's credential never reaches the app")
    def _():
        path = unique("credential")
        got = echoed(
            through_gateway(
                path,
                [("X-Sessiond-Credential", "client-made"), ("Authorization", f"Bearer {access}")],
            )
        )
        allowed_paths.append(path)
        expect("x-sessiond-credential" not in got, f"{got.get('x-sessiond-credential')}")

    @check("missing token: 401 with WWW-Authenticate, by header and by cookie")
    def _():
        for headers in ([], FORGED, [("Cookie", "theme=dark")], [("Authorization", "Basic dTpw")]):
            path = unique("missing")
            refused_paths.append(path)
            refused(through_gateway(path, headers), "INVALID_REASON_MALFORMED")

    @check("unusable tokens: 401 (garbage, forged signature)")
    def _():
        head, _, signature = access.rpartition(".")
        middle = len(signature) // 2
        flipped = "A" if signature[middle] != "A" else "B"
        forged = f"{head}.{signature[:middle]}{flipped}{signature[middle + 1:]}"
        for token, reason in (("garbage", "INVALID_REASON_MALFORMED"), (forged, "INVALID_REASON_BAD_SIGNATURE")):
            for headers in ([("Authorization", f"Bearer {token}")], [("Cookie", f"{COOKIE}={token}")]):
                path = unique("unusable")
                refused_paths.append(path)
                refused(through_gateway(path, FORGED + headers), reason)

    @check("a token revoked through POST /oauth2/revoke: 401, by header and by cookie")
    def _():
        _, doomed, doomed_refresh = issue("user-3", "tenant-a")
        path = unique("before-revoke")
        echoed(through_gateway(path, [("Authorization", f"Bearer {doomed}")]))
        allowed_paths.append(path)
        form = urllib.parse.urlencode({"token": doomed_refresh, "token_type_hint": "refresh_token"})
        answer = request(
            SESSIOND_HTTP,
            "POST",
            "/oauth2/revoke",
            [
                ("Authorization", f"Bearer {GATEWAY_CREDENTIAL}"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.encode(),
        )
        expect(answer.status == 200 and answer.body == b"", f"revoke answered {answer.status} {answer.body!r}")
        for headers in ([("Authorization", f"Bearer {doomed}")], [("Cookie", f"{COOKIE}={doomed}")]):
            path = unique("revoked")
            refused_paths.append(path)
            refused(through_gateway(path, FORGED + headers), "INVALID_REASON_REVOKED")

    @check("an expired token: 401, by header and by cookie")
    def _():
        _, short, _ = issue("user-4", "tenant-a", ttl_seconds=1)
        started = time.monotonic()
        while True:
            path = unique("expiry-poll")
            answer = through_gateway(path, [("Authorization", f"Bearer {short}")])
            if answer.status != 200:
                refused_paths.append(path)
                break
            allowed_paths.append(path)
            expect(time.monotonic() - started < DEADLINE, "the token never expired")
            time.sleep(0.1)
        for headers in ([("Authorization", f"Bearer {short}")], [("Cookie", f"{COOKIE}={short}")]):
            path = unique("expired")
            refused_paths.append(path)
            refused(through_gateway(path, FORGED + headers), "INVALID_REASON_EXPIRED")

    @check("sessiond refuses a check that lacks the gateway's credential")
    def _():
        answer = request(SESSIOND_HTTP, "GET", "/auth/check", [("Authorization", f"Bearer {access}")])
        expect(answer.status == 401, f"status {answer.status}")
        expect(answer.header("x-user-id") is None, "identity without a credential")
        answer = request(
            SESSIOND_HTTP,
            "GET",
            "/auth/check",
            [("Authorization", f"Bearer {access}"), ("X-Sessiond-Credential", GATEWAY_CREDENTIAL)],
        )
        expect(answer.status == 200, f"status {answer.status} with the credential")
        expect(answer.header("x-user-id") == "user-1", f"x-user-id {answer.header('x-user-id')}")

    @check("the sub-request location is internal")
    def _():
        answer = through_gateway("/_sessiond", [("Authorization", f"Bearer {access}")])
        expect(answer.status == 404, f"status {answer.status}")

    @check("the app saw every allowed request and none of the refused ones")
    def _():
        got = set(seen())
        expect(allowed_paths and refused_paths, "nothing was sent")
        missing = [p for p in allowed_paths if p not in got]
        leaked = [p for p in refused_paths if p in got]
        expect(not missing, f"allowed but never seen: {missing}")
        expect(not leaked, f"refused but seen by the app: {leaked}")

    print(f"gateways: {results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
