"""AWS client-side monitoring (CSM) listener: the fallback capture for SDKs with CSM support.

CSM datagrams (``AWS_CSM_ENABLED``/``AWS_CSM_PORT``) name service, API, region, access key and
status, but never parameters: CSM calls carry actions only, no resources. The botocore CSM
publisher (botocore/monitoring.py) emits one ``ApiCallAttempt`` per attempt (with ``AccessKey``)
and one ``ApiCall`` per call; we record the ``ApiCall`` with its last attempt's key.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from typing import Callable

from rolesmith.trail import wire
from rolesmith.record.recording import Call


@functools.cache
def service_for_id(service_id: str) -> str | None:
    hyphenized = service_id.replace(" ", "-").lower()
    model = wire.find_service_model(hyphenized)
    if model is not None:
        return model.service_name
    for name in wire.available_services():
        candidate = wire.find_service_model(name)
        if candidate is not None and candidate.service_id.hyphenize() == hyphenized:
            return name
    return None


class CsmListener:
    def __init__(self, on_call: Callable[[Call], None]) -> None:
        self._on_call = on_call
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._last_key: dict[tuple[str, str, str], str] = {}
        self._thread = threading.Thread(target=self._loop, name="rolesmith-csm", daemon=True)

    def env(self) -> dict[str, str]:
        return {"AWS_CSM_ENABLED": "true", "AWS_CSM_HOST": "127.0.0.1", "AWS_CSM_PORT": str(self.port),
                "AWS_CSM_CLIENT_ID": "rolesmith"}

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.feed(data)

    def feed(self, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        ident = (str(msg.get("ClientId", "")), str(msg.get("Service", "")), str(msg.get("Api", "")))
        if msg.get("Type") == "ApiCallAttempt":
            if msg.get("AccessKey"):
                self._last_key[ident] = str(msg["AccessKey"])
            return
        if msg.get("Type") != "ApiCall":
            return
        service = service_for_id(ident[1])
        if service is None or not ident[2]:
            return
        status = msg.get("FinalHttpStatusCode")
        self._on_call(Call(
            method="csm", service=service, operation=ident[2], region=msg.get("Region"),
            access_key_id=self._last_key.get(ident), status=status if isinstance(status, int) else None,
            error_code=msg.get("FinalAwsException") or msg.get("FinalSdkException"),
            error_message=msg.get("FinalAwsExceptionMessage"),
            time=float(msg.get("Timestamp") or time.time() * 1000) / 1000,
        ))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        self._sock.close()
