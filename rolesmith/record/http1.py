"""Lean HTTP/1.1 for the recording proxy: header parsing and a kept-alive upstream connection.

The stdlib's ``http.server`` and ``http.client`` run the email parser over every request's and
every answer's headers (~0.1 ms each, twice per proxied call); the proxy only needs names and values.
"""

from __future__ import annotations

import functools
import socket
import ssl
from typing import Any

Target = tuple[str, str, int]  # scheme, host, port


class Headers:
    """Request or response headers in arrival order; case-insensitive ``get`` (the first wins)."""

    __slots__ = ("_items", "_lower")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._lower: dict[str, str] = {}
        for k, v in items:
            self._lower.setdefault(k.lower(), v)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._lower.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def lowered(self) -> dict[str, str]:
        return dict(self._lower)


def read_headers(rfile: Any) -> Headers:
    items: list[tuple[str, str]] = []
    while True:
        raw = rfile.readline(65537)
        if len(raw) > 65536:
            raise ValueError("header line too long")
        if raw in (b"\r\n", b"\n", b""):
            return Headers(items)
        line = raw.decode("iso-8859-1")
        if line[0] in " \t" and items:  # obsolete line folding
            name, value = items[-1]
            items[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"malformed header line {line.strip()[:80]!r}")
        items.append((name.strip(), value.strip()))
        if len(items) > 100:
            raise ValueError("too many headers")


@functools.cache
def _client_tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the system roots: once, not per upstream connection


class Response:
    """An upstream response: status line and headers read, body read on demand."""

    def __init__(self, conn: Connection, method: str) -> None:
        self._conn = conn
        while True:
            line = conn.rfile.readline(65537)
            if not line:
                raise StaleConnection("upstream closed the connection")
            version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
            status_s, _, self.reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not status_s.isdigit():
                raise OSError(f"bad status line from upstream: {line[:80]!r}")
            self.status = int(status_s)
            try:
                self._headers = read_headers(conn.rfile)
            except ValueError as err:
                raise OSError(f"upstream: {err}") from err
            if not 100 <= self.status < 200 or self.status == 101:
                break  # 100 Continue and other interim answers precede the real one
        self.headers = self._headers.items()
        te = (self._headers.get("transfer-encoding") or "").lower()
        length = self._headers.get("content-length")
        self._chunked = "chunked" in te
        self._left: int | None = None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
        elif not self._chunked and length is not None and length.isdigit():
            self._left = int(length)
        # No length and not chunked: the body runs to the end of the connection.
        self._keep = "close" not in (self._headers.get("connection") or "").lower() and (
            self._chunked or self._left is not None)
        self._settle()

    def _settle(self) -> None:
        # The connection carries the next request only once this answer was read to its end.
        if self.done():
            self._conn.reusable = self._keep

    def getheader(self, name: str) -> str | None:
        return self._headers.get(name)

    def done(self) -> bool:
        return not self._chunked and self._left == 0

    def abandon(self) -> None:
        self._conn.reusable = False

    def getheaders(self) -> list[tuple[str, str]]:
        return self._headers.items()

    def read(self, n: int = -1) -> bytes:
        rfile = self._conn.rfile
        if self._chunked:
            if n >= 0:
                raise ValueError("chunked bodies are read whole")
            data = _read_chunked(rfile)
            self._chunked = False
            self._left = 0
            self._settle()
            return data
        if self._left is None:  # to the end of the connection
            data = rfile.read() if n < 0 else rfile.read(n)
            if n < 0:
                self._conn.close()
            return data
        want = self._left if n < 0 else min(n, self._left)
        data = rfile.read(want) if want else b""
        if len(data) < want:
            self._conn.reusable = False
            raise ConnectionResetError("upstream closed the connection mid-body")
        self._left -= len(data)
        self._settle()
        return data


class StaleConnection(ConnectionResetError):
    """A kept-alive upstream connection the server had closed: send again on a new one."""


def _read_chunked(rfile: Any) -> bytes:
    chunks = []
    while True:
        size_line = rfile.readline(65537)
        if not size_line:
            raise ConnectionResetError("upstream closed the connection mid-body")
        try:
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError as err:
            raise OSError(f"upstream: bad chunk size {size_line[:40]!r}") from err
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(rfile.read(size))
        rfile.readline(65537)


class Connection:
    """One kept-alive HTTP/1.1 connection to an upstream: plain sockets, no http.client (whose
    response parsing runs the email parser over every answer's headers)."""

    def __init__(self, target: Target) -> None:
        scheme, host, port = target
        sock = socket.create_connection((host, port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = _client_tls().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.reusable = True

    def send(self, data: bytes) -> None:
        """Send (part of) a request; the connection is not reusable until its answer was read."""
        self.reusable = False
        self.sock.sendall(data)

    def response(self, method: str) -> Response:
        return Response(self, method)

    def close(self) -> None:
        self.reusable = False
        for closeable in (self.rfile, self.sock):
            try:
                closeable.close()
            except OSError:
                pass
