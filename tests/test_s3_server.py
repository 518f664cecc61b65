import signal
import sys

from foodpipe.tools import s3_server
from tests.conftest import start_process


def test_access_key_is_read_from_every_signing_style():
    v4 = "AWS4-HMAC-SHA256 Credential=AKID123/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
    assert s3_server.request_access_key({"HTTP_AUTHORIZATION": v4}) == "AKID123"
    assert s3_server.request_access_key({"HTTP_AUTHORIZATION": "AWS AKID456:signature"}) == "AKID456"
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID789%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    assert s3_server.request_access_key({"QUERY_STRING": query}) == "AKID789"
    assert s3_server.request_access_key({}) is None


def test_other_keys_are_refused_before_reaching_moto():
    calls = []
    app = s3_server.RequireAccessKey(lambda environ, start: calls.append(environ) or [b"ok"], "good")
    statuses = []
    body = app({"HTTP_AUTHORIZATION": "AWS bad:sig"}, lambda status, headers: statuses.append(status))
    assert statuses == ["403 Forbidden"] and b"InvalidAccessKeyId" in b"".join(body) and not calls
    assert app({"HTTP_AUTHORIZATION": "AWS good:sig"}, lambda *a: None) == [b"ok"] and len(calls) == 1


def test_server_stops_cleanly_on_sigterm():
    proc, line = start_process([sys.executable, "-m", "foodpipe", "s3-server", "--port", "0"], r"S3 endpoint")
    assert line.startswith("S3 endpoint: http://127.0.0.1:")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
