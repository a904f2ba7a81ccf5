"""Recording proxy on 127.0.0.1: forwards every request unchanged and reports the AWS call it was.

Two modes, one handler: a reverse proxy in front of a plain endpoint (``AWS_ENDPOINT_URL``: moto,
the sandbox), and an HTTPS forward proxy (``HTTPS_PROXY``) that terminates TLS for AWS hosts with
a per-run CA and tunnels everything else blindly. Bodies are forwarded byte for byte (signatures
stay valid) and never stored; only the decoded operation and its non-body parameters are kept.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from rolesmith.record.ca import RunCA
from rolesmith.record.http1 import Connection, Headers, Response, read_headers
from rolesmith.trail.secrets import scrub_text
from rolesmith.trail.wire import DecodeError, decode
from rolesmith.record.recording import Call

log = logging.getLogger(__name__)

_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding",
        "upgrade"}
_AWS_HOST = re.compile(r"(^|\.)(amazonaws\.com(\.cn)?|api\.aws)$")
Upstream = tuple[str, str, int]  # scheme, host, port
_IN_MEMORY = 1 << 20  # bodies up to 1 MiB are read whole; larger ones are piped
_CHUNK = 1 << 16
_POOL = 8  # idle upstream connections kept per upstream
_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MSG = re.compile(rb"<Message>([^<]{0,500})</Message>")


class RecordingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, on_call: Callable[[Call], None], endpoint: str | None = None, ca: RunCA | None = None,
                 route: Callable[[str, int], Upstream] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.on_call = on_call
        self.ca = ca
        # ``route`` lets tests send MITM'd AWS traffic to a local endpoint instead of the internet.
        self.route = route or (lambda host, port: ("https", host, port))
        self.endpoint: Upstream | None = None
        if endpoint:
            u = urlsplit(endpoint)
            self.endpoint = (u.scheme or "http", u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80))
        self.url = "http://127.0.0.1:%d" % self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="rolesmith-proxy", daemon=True)
        # Requests whose call is not reported yet: a call is reported after its answer went out.
        self._busy = 0
        self._idle = threading.Condition()
        # Idle kept-alive upstream connections, shared by client connections: a CLI that starts a
        # process (and a connection) per call then pays no upstream TCP/TLS handshake per call.
        self._pool: dict[Upstream, list[Connection]] = {}
        self._pool_lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def busy(self, delta: int) -> None:
        with self._idle:
            self._busy += delta
            if not self._busy:
                self._idle.notify_all()

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints the traceback to stderr, into the workload's output: log it instead
        # (a client or upstream that went away mid-call).
        log.debug("proxy: request from %s failed", client_address, exc_info=True)

    def checkout(self, target: Upstream) -> Connection | None:
        with self._pool_lock:
            idle = self._pool.get(target)
            return idle.pop() if idle else None

    def checkin(self, target: Upstream, conn: Connection) -> None:
        with self._pool_lock:
            idle = self._pool.setdefault(target, [])
            if conn.reusable and not self._closed and len(idle) < _POOL:
                idle.append(conn)
                return
        conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, then wait (bounded) for requests in flight to be reported."""
        self.shutdown()
        self.server_close()
        with self._idle:
            self._idle.wait_for(lambda: not self._busy, timeout)
        with self._pool_lock:
            self._closed = True
            idle = [c for conns in self._pool.values() for c in conns]
            self._pool.clear()
        for conn in idle:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A streamed body follows its head in a second write: with Nagle on, it would wait for the
    # client's delayed ACK (~40 ms per call).
    disable_nagle_algorithm = True
    server: RecordingProxy

    def setup(self) -> None:
        super().setup()
        self._upstreams: dict[Upstream, Connection] = {}
        self._tls_target: Upstream | None = None

    def finish(self) -> None:
        super().finish()
        for target, conn in self._upstreams.items():
            self.server.checkin(target, conn)

    def parse_request(self) -> bool:
        """The stdlib's parse_request, minus the email parser it runs over every request's headers
        (~0.1 ms a request); anything unusual in the request line goes to the stdlib's."""
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.command, self.path, self.request_version = words
        self.requestline = " ".join(words)
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment]
        except ValueError as err:
            self.close_connection = True
            self.send_error(431 if "many" in str(err) or "long" in str(err) else 400, str(err))
            return False
        conn = (self.headers.get("connection") or "").lower()
        self.close_connection = "close" in conn or (self.request_version == "HTTP/1.0" and "keep-alive" not in conn)
        if (self.headers.get("expect") or "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        # The request line of a presigned URL carries its session token and signature in the query.
        log.debug("proxy: %s", scrub_text(format % args))

    def do_CONNECT(self) -> None:
        host, _, port_s = self.path.rpartition(":")
        port = int(port_s or 443)
        if self.server.ca is None or not _AWS_HOST.search(host):
            self._tunnel(host, port)
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = self.server.ca.context_for(host).wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.info("proxy: TLS with the client failed for %s: %s", host, err)
            self.close_connection = True
            return
        self.connection = tls
        self.rfile = tls.makefile("rb", -1)
        self.wfile = tls.makefile("wb", 0)
        self._tls_target = self.server.route(host, port)
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def _tunnel(self, host: str, port: int) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=30)
        except OSError as err:
            self.send_error(502, f"cannot reach {host}:{port}: {err}")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        socks = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 60)
                if not readable:
                    break
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True

    def _forward(self) -> None:
        started = time.time()
        target = self._tls_target or self.server.endpoint
        if target is None:
            if self.path.startswith("http://"):  # plain forward proxying (HTTP_PROXY)
                u = urlsplit(self.path)
                target = ("http", u.hostname or "", u.port or 80)
                self.path = u.path + (f"?{u.query}" if u.query else "") or "/"
            else:
                self.send_error(400, "rolesmith proxy: no upstream for this request")
                return
        self.server.busy(1)
        body, status, code, message, request_id = b"", None, None, None, None
        sent, resp = False, None
        try:
            # Large bodies (object uploads and downloads) are piped, never held: decoding needs only
            # the small JSON/query bodies.
            length = self.headers.get("Content-Length")
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            piped = int(length) if length and length.isdigit() and not chunked and int(length) > _IN_MEMORY else None
            body = b"" if piped is not None else self._read_body()
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"]
            if piped is not None:
                headers.append(("Content-Length", str(piped)))
            elif body or self.command in ("POST", "PUT", "PATCH"):
                headers.append(("Content-Length", str(len(body))))  # same bytes; chunked framing re-encoded
            sent = True
            try:
                resp = self._send_upstream(target, body, headers, piped)
            except OSError as err:
                code, message = "ConnectionError", str(err)
                self.send_error(502, f"rolesmith proxy: upstream failed: {err}")
                return
            out_length = resp.getheader("content-length")
            stream = (resp.status < 300 and self.command != "HEAD" and out_length is not None
                      and out_length.isdigit() and int(out_length) > _IN_MEMORY)
            try:
                data = b"" if stream else resp.read()
            except OSError as err:  # the upstream's answer broke off or is malformed
                code, message = "ConnectionError", str(err)
                self.send_error(502, f"rolesmith proxy: upstream failed: {err}")
                return
            status = resp.status
            if resp.status >= 300:
                code, message = _error_of(resp, data)
            request_id = resp.getheader("x-amz-request-id") or resp.getheader("x-amzn-requestid")
            head = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
            head += [f"{k}: {v}\r\n" for k, v in resp.headers if k.lower() not in _HOP and k.lower() != "content-length"]
            keep_length = stream or (self.command == "HEAD" and out_length is not None)
            head.append(f"Content-Length: {out_length if keep_length else len(data)}\r\n\r\n")
            # Head and a small body in one write: one segment, no wait on the client's delayed ACK.
            self.wfile.write("".join(head).encode("latin-1") + (data if self.command != "HEAD" else b""))
            if stream:
                while chunk := resp.read(_CHUNK):
                    self.wfile.write(chunk)
            self.wfile.flush()
        finally:
            # Reported after the answer went out: decoding is off the call's path. A client killed
            # meanwhile loses nothing: the report runs in this process, and close() waits for it.
            if resp is not None and not resp.done():
                resp.abandon()  # the client went away mid-answer: the rest must not be read as the next one
            try:
                if sent:
                    self._report(body, started, status, code, message, request_id)
            finally:
                self.server.busy(-1)

    def _send_upstream(self, target: Upstream, body: bytes, headers: list[tuple[str, str]],
                       piped: int | None = None) -> Response:
        for attempt in range(2):
            conn = None
            if piped is None and attempt == 0:  # a retry, and a piped body, go on a new connection
                conn = self._upstreams.pop(target, None)
                if conn is not None and not conn.reusable:
                    conn.close()
                    conn = None
                conn = conn or self.server.checkout(target)
            if conn is None:
                conn = Connection(target)
            old = self._upstreams.pop(target, None)
            if old is not None:
                self.server.checkin(target, old)
            self._upstreams[target] = conn
            try:
                head = f"{self.command} {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
                if piped is None:
                    conn.send(head.encode("latin-1") + body)
                else:  # a fresh connection: a piped body cannot be replayed on a stale one
                    conn.send(head.encode("latin-1"))
                    left = piped
                    while left > 0:
                        chunk = self.rfile.read(min(_CHUNK, left))
                        if not chunk:
                            raise ConnectionResetError("client closed the upload early")
                        conn.send(chunk)
                        left -= len(chunk)
                return conn.response(self.command)
            except (BrokenPipeError, ConnectionResetError):
                conn.close()
                self._upstreams.pop(target, None)
                if attempt or piped is not None:
                    raise
        raise OSError("unreachable")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _report(self, body: bytes, started: float, status: int | None, code: str | None, message: str | None,
                request_id: str | None) -> None:
        headers = self.headers.lowered() if isinstance(self.headers, Headers) else {
            k.lower(): v for k, v in self.headers.items()}
        host = headers.get("host", "")
        try:
            decoded = decode(self.command, self.path, headers, body, host=host)
        except DecodeError:  # not a SigV4-signed AWS call: forwarded all the same, nothing to record
            return
        except Exception:  # a request we cannot decode is still forwarded; never fail the workload
            log.debug("proxy: could not decode %s %s", self.command, self.path, exc_info=True)
            return
        self.server.on_call(Call(
            method="proxy", service=decoded.service, operation=decoded.operation, params=decoded.params,
            region=decoded.region, access_key_id=decoded.access_key, status=status, error_code=code,
            error_message=message, request_id=request_id, time=started,
            signatures=(decoded.signature,) if decoded.signature else (),
            host=host.split(":", 1)[0] if decoded.service == "s3" and self._tls_target else None,
        ))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward


def _error_of(resp: Response, data: bytes) -> tuple[str | None, str | None]:
    kind = resp.getheader("x-amzn-errortype")
    header_code = kind.split(":", 1)[0].rsplit("#", 1)[-1] if kind else None
    if not kind:
        m = _XML_CODE.search(data[:4096])
        if m:
            msg = _XML_MSG.search(data[:4096])
            return m.group(1).decode("utf-8", "replace"), msg.group(1).decode("utf-8", "replace") if msg else None
    try:
        import json

        # JSON protocols name the error in the header and still give its message in the body.
        doc = json.loads(data[:65536] or b"{}")
        if isinstance(doc, dict):
            code = header_code or doc.get("__type") or doc.get("code") or doc.get("Code")
            return (str(code).rsplit("#", 1)[-1] if code else None), doc.get("message") or doc.get("Message")
    except ValueError:
        pass
    return header_code or f"HTTP{resp.status}", None

