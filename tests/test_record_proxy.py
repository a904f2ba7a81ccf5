"""The recording proxy's HTTP/1.1 handling against a scripted upstream: framing (length, chunked,
close-delimited, interim 100), reconnecting when the upstream closes, error codes, and every call
reported by the time ``close()`` returns (calls are reported after their answer goes out)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from rolesmith.record.proxy import RecordingProxy

CASES = json.loads((Path(__file__).parent.parent / "fixtures" / "record" / "proxy_upstream_cases.json").read_text())["cases"]
# A SigV4 Authorization header is all the decoder needs to name the call (GET / on S3 = ListBuckets).
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0123abcd")


class ScriptedUpstream:
    """Answers every request with ``answer``; closes the connection after each when ``close_after``."""

    def __init__(self, answer: str, close_after: bool) -> None:
        self.answer = answer.encode("latin-1")
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = rfile.readline()
                    if not line:
                        return
                    head += line
                length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + rfile.read(length))
                conn.sendall(self.answer)
                if self.close_after:
                    return

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[ScriptedUpstream, RecordingProxy, list[Any]]]:
    case = request.param
    upstream = ScriptedUpstream(case["answer"], case.get("close_after", False))
    calls: list[Any] = []
    proxy = RecordingProxy(calls.append, endpoint=upstream.url)
    proxy.start()
    yield upstream, proxy, calls
    upstream.close()


@pytest.mark.parametrize("proxied, case", [(c, c) for c in CASES], ids=[c["id"] for c in CASES],
                         indirect=["proxied"])
def test_upstream_framing_and_reports(proxied, case):
    upstream, proxy, calls = proxied
    client = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    for _ in range(2):  # two calls on one kept-alive client connection
        client.request("GET", "/", headers={"Authorization": AUTH, "X-Amz-Date": "20240101T000000Z"})
        resp = client.getresponse()
        body = resp.read().decode()
        assert resp.status == case["status"]
        if case["body"] is not None:
            assert body == case["body"]
    client.close()
    proxy.close()
    assert len(upstream.requests) == 2
    assert all(r.startswith(b"GET / HTTP/1.1\r\n") and b"Authorization: " + AUTH.encode() in r for r in upstream.requests)
    # A closed upstream connection is replaced; a kept-alive one is reused.
    assert upstream.connections == (2 if case.get("close_after") else 1)
    assert [(c.operation, c.status, c.error_code, c.request_id) for c in calls] == [
        ("ListBuckets", case.get("reported_status", case["status"]), case["errorCode"], case["requestID"])] * 2


@pytest.mark.parametrize("proxied", [CASES[0]], ids=["content-length"], indirect=True)
def test_a_request_body_is_forwarded_byte_for_byte_and_unsigned_requests_are_not_reported(proxied):
    upstream, proxy, calls = proxied
    client = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    client.request("PUT", "/b/k", body=b"\x00data\r\n\r\n", headers={"Expect": "100-continue"})
    assert client.getresponse().read() == b"hello"
    client.close()
    proxy.close()
    assert upstream.requests[0].endswith(b"\r\n\r\n\x00data\r\n\r\n")
    assert b"Content-Length: 9\r\n" in upstream.requests[0]
    assert calls == []  # not a SigV4-signed AWS call: forwarded all the same, nothing to record


@pytest.mark.parametrize("proxied", [CASES[0]], ids=["content-length"], indirect=True)
def test_client_connections_share_kept_alive_upstream_connections(proxied):
    # A CLI opens a connection per process: the upstream connection (and its TLS handshake) is reused.
    upstream, proxy, calls = proxied
    for _ in range(3):
        client = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
        client.request("GET", "/", headers={"Authorization": AUTH})
        assert client.getresponse().read() == b"hello"
        client.close()
        deadline = time.monotonic() + 5  # the handler returns its connection once the client is gone
        while not proxy._pool.get(proxy.endpoint) and time.monotonic() < deadline:
            time.sleep(0.01)
    proxy.close()
    assert (upstream.connections, len(upstream.requests), len(calls)) == (1, 3, 3)
