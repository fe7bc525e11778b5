"""A sessiond client in Python (grpcio): one session's life, and one refusal decoded.

Waits until the server reports SERVING, issues a session, validates it, lists it, revokes it,
validates it again (REVOKED), and reads the google.rpc.ErrorInfo of an INVALID_ARGUMENT.
Prints one line per check and exits 1 at the first mismatch.

    SESSIOND_ADDR=127.0.0.1:50051 python client.py

The stubs are generated from proto/ into gen/ by grpcio-tools (see README.md).
"""

import os
import sys
import time
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
from sessiond.v1 import session_pb2, session_pb2_grpc  # noqa: E402

ADDR = os.environ.get("SESSIOND_ADDR", "127.0.0.1:50051")
SERVICE = "sessiond.v1.SessionService"
USER = "example-python"
# Every call is bounded, and so is the wait for SERVING.
CALL_TIMEOUT = 10.0
READY_TIMEOUT = 30.0


class CheckFailed(Exception):
    pass


def flag(value):
    """A bool as the proto's JSON form writes it, like the other clients print it."""
    return "true" if value else "false"


def check(name, ok, detail):
    if not ok:
        raise CheckFailed(f"{name}: {detail}")
    print(f"ok   {name}: {detail}", flush=True)


def wait_serving(channel):
    """Polls grpc.health.v1 until SERVING or the deadline; the server starts NOT_SERVING."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status = health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return "SERVING"
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as e:
            last = e.code().name
        time.sleep(0.1)
    return last


def run(channel):
    health = wait_serving(channel)
    check("health", health == "SERVING", f"{SERVICE} is {health}")
    client = session_pb2_grpc.SessionServiceStub(channel)

    issued = client.Issue(
        session_pb2.IssueRequest(
            user_id=USER,
            client=session_pb2.ClientInfo(ip="127.0.0.1", user_agent="sessiond-example-python"),
        ),
        timeout=CALL_TIMEOUT,
    )
    session_id = issued.session.session_id
    token = issued.tokens.access_token
    check("issue", bool(session_id) and bool(token), f"session {session_id} for {USER}")

    v = client.Validate(session_pb2.ValidateRequest(access_token=token), timeout=CALL_TIMEOUT)
    check(
        "validate",
        v.valid and v.session.session_id == session_id,
        f"valid={flag(v.valid)} user={v.session.user_id}",
    )

    listed = client.List(session_pb2.ListRequest(access_token=token), timeout=CALL_TIMEOUT)
    mine = [s for s in listed.sessions if s.session_id == session_id]
    current = bool(mine) and mine[0].current
    check(
        "list",
        len(mine) == 1 and current,
        f"{len(listed.sessions)} session(s), ours current={flag(current)}",
    )

    r = client.Revoke(
        session_pb2.RevokeRequest(access_token=token, session_id=session_id),
        timeout=CALL_TIMEOUT,
    )
    check("revoke", r.was_current, f"was_current={flag(r.was_current)}")

    v = client.Validate(session_pb2.ValidateRequest(access_token=token), timeout=CALL_TIMEOUT)
    reason = session_pb2.InvalidReason.Name(v.reason)
    check(
        "validate after revoke",
        not v.valid and v.reason == session_pb2.INVALID_REASON_REVOKED,
        f"valid={flag(v.valid)} reason={reason}",
    )

    try:
        client.Issue(session_pb2.IssueRequest(user_id=""), timeout=CALL_TIMEOUT)
        raise CheckFailed("invalid argument: Issue with an empty user_id succeeded")
    except grpc.RpcError as e:
        code = e.code()
        status = rpc_status.from_call(e)
    check("invalid argument", code == grpc.StatusCode.INVALID_ARGUMENT, f"code={code.name}")
    infos = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    check("error info", len(infos) == 1, f"{len(infos)} google.rpc.ErrorInfo in the status details")
    info = infos[0]
    check(
        "error info fields",
        info.reason == "INVALID_ARGUMENT"
        and info.domain == "sessiond"
        and info.metadata.get("field") == "user_id",
        f"reason={info.reason} domain={info.domain} field={info.metadata.get('field')}",
    )


def main():
    with grpc.insecure_channel(ADDR) as channel:
        try:
            run(channel)
        except CheckFailed as e:
            print(f"FAIL {e}", flush=True)
            return 1
        except grpc.RpcError as e:
            print(f"FAIL unexpected rpc error: {e.code().name}: {e.details()}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
