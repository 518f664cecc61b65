"""``foodpipe s3-server``: moto's S3 server as its own process on loopback.

It must never run as a thread inside a TensorFlow process: tensorflow-io's S3 calls hold the GIL
and the server thread would deadlock. Tests and the demo start it with ``subprocess``.

Unlike plain moto, it knows one access key (from ``AWS_ACCESS_KEY_ID`` when it starts, else the
embedded default) and answers ``InvalidAccessKeyId`` to any other, so clients see wrong
credentials as they would against MinIO. Signatures themselves are not verified.
"""

import logging
import os
import re
import signal
import sys
from urllib.parse import parse_qs

from foodpipe import s3

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_V2_AUTH = re.compile(r"^AWS ([^:]+):")
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
)


def request_access_key(environ: dict) -> str | None:
    """The access key id a signed S3 request claims (header or presigned query), if any."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL.search(auth) or _V2_AUTH.search(auth)
    if match:
        return match.group(1)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    for name in ("X-Amz-Credential", "AWSAccessKeyId"):
        if name in query:
            return query[name][0].split("/")[0]
    return None


class RequireAccessKey:
    """WSGI middleware: only requests signed with the server's access key reach moto."""

    def __init__(self, app, access_key: str):
        self.app = app
        self.access_key = access_key

    def __call__(self, environ, start_response):
        claimed = request_access_key(environ)
        if claimed == self.access_key:
            return self.app(environ, start_response)
        if claimed is None:
            code, message = "AccessDenied", "Anonymous access is not allowed"
        else:
            code, message = "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        body = _ERROR_XML.format(code=code, message=message).encode()
        start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


def serve(host: str, port: int) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    access_key = os.environ.get("AWS_ACCESS_KEY_ID") or s3.EMBEDDED_ACCESS_KEY
    app = RequireAccessKey(DomainDispatcherApplication(create_backend_app), access_key)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"S3 endpoint: http://{bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("S3 server stopped", file=sys.stderr, flush=True)
    return 0
