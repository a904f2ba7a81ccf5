"""botocore event handlers that report each API call to the recording parent.

Runs inside the recorded child, so it imports nothing from rolesmith and sends only what the
parent needs: service, operation, parameters (blobs and streams dropped here, sensitive members
redacted by the parent), region, access key id, status, error, request id and the SigV4
signatures (to drop the proxy's copy of the same request). Secret keys and tokens never leave.
"""

import datetime
import importlib.abc
import importlib.machinery
import json
import os
import socket
import sys
import threading
import time

_EVENTS = (
    ("before-parameter-build", "_on_params"),
    ("before-call", "_on_before_call"),
    ("before-send", "_on_before_send"),
    ("after-call", "_on_after_call"),
    ("after-call-error", "_on_after_call_error"),
)


class _Sender:
    """One loopback connection per process (re-opened after fork), newline-delimited JSON."""

    def __init__(self, addr, token):
        if addr.startswith("unix:"):  # Linux abstract socket: half the cost of TCP loopback, no file
            self._family, self._addr = socket.AF_UNIX, "\0" + addr[5:]
        else:
            host, _, port = addr.rpartition(":")
            self._family, self._addr = socket.AF_INET, (host, int(port))
        self._token = token
        self._lock = threading.Lock()
        self._sock = None
        self._pid = None

    def send(self, obj):
        line = (_ENCODER.encode(obj) + "\n").encode()
        with self._lock:
            for _ in range(2):
                try:
                    if self._sock is None or self._pid != os.getpid():
                        self._connect()
                    self._sock.sendall(line)
                    return
                except OSError:
                    self._sock = None

    def _connect(self):
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            # The recorder reads every 20 ms instead of being woken per message: room for a burst
            # (or a call with large parameters) means sendall never waits for it (where the
            # system allows a buffer this size; elsewhere the default stands).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except OSError:
            pass
        sock.settimeout(5)
        sock.connect(self._addr)
        if self._family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall((json.dumps({"token": self._token, "pid": os.getpid()}) + "\n").encode())
        self._sock, self._pid = sock, os.getpid()


def _jsonable(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return None  # bytes, streams, files: object data never leaves the child


def _clean(value, depth=0):
    if depth > 20:
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v, depth + 1) for k, v in value.items() if _keep(v)}
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value if _keep(v)]
    return value


def _keep(value):
    return isinstance(value, (str, int, float, bool, dict, list, tuple, type(None), datetime.datetime, datetime.date))


_sender = None
# One encoder for every message: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=_jsonable, separators=(",", ":"))
# botocore sends on the calling thread; some callers (AWS CLI v1) hand before-send a request
# without its context, so the call in flight is also kept per thread.
_current = threading.local()


def _state(context):
    st = context.get("_rolesmith")
    if st is None:
        st = context["_rolesmith"] = {"sigs": []}
        _current.state = st
    return st


def _on_params(params, model, context, **_):
    _state(context)["params"] = _clean(params)


def _on_before_call(model, params, context, request_signer=None, **_):
    st = _state(context)
    st["model"] = model
    if request_signer is not None:
        st["region"] = getattr(request_signer, "_region_name", None)
        creds = getattr(request_signer, "_credentials", None)
        if creds is not None:
            try:
                st["akid"] = creds.access_key
            except Exception:
                pass


def _on_before_send(request, **_):
    ctx = getattr(request, "context", None)
    st = ctx.get("_rolesmith") if ctx else None
    if st is None:
        st = getattr(_current, "state", None)
    if st is None:
        return
    auth = request.headers.get("Authorization")
    if isinstance(auth, bytes):
        auth = auth.decode("latin-1")
    if auth and "Signature=" in auth:
        st["sigs"].append(auth.rsplit("Signature=", 1)[1].strip())
        cred = auth.split("Credential=", 1)[1].split(",", 1)[0] if "Credential=" in auth else ""
        parts = cred.split("/")
        if len(parts) >= 5:
            st["akid"], st["region"] = parts[0], parts[2]


def _base(model, context):
    st = context.get("_rolesmith") or {"sigs": []}
    sm = model.service_model
    return {
        "kind": "call",
        "method": "hook",
        "service": sm.service_name,
        "endpointPrefix": sm.endpoint_prefix,
        "signingName": sm.signing_name,
        "operation": model.name,
        "params": st.get("params") or {},
        "region": st.get("region"),
        "akid": st.get("akid"),
        "sigs": st.get("sigs", []),
        "time": time.time(),
    }


def _on_after_call(http_response, parsed, model, context, **_):
    rec = _base(model, context)
    rec["status"] = getattr(http_response, "status_code", None)
    meta = parsed.get("ResponseMetadata") or {}
    rec["requestId"] = meta.get("RequestId")
    err = parsed.get("Error") or {}
    if rec["status"] and rec["status"] >= 300:
        rec["errorCode"] = context.get("error_code_override") or err.get("Code")
        rec["errorMessage"] = err.get("Message")
    if model.name == "AssumeRole" or model.name.startswith("AssumeRoleWith"):
        # The new session's key id -> role session ARN, so the parent can attribute its calls.
        creds = parsed.get("Credentials") or {}
        user = parsed.get("AssumedRoleUser") or {}
        if creds.get("AccessKeyId") and user.get("Arn"):
            rec["issued"] = {"akid": creds["AccessKeyId"], "arn": user["Arn"], "principalId": user.get("AssumedRoleId")}
    _sender.send(rec)


def _on_after_call_error(exception, context, **_):
    # No response (connection error, timeout): after-call-error gets no model, before-call kept it.
    st = context.get("_rolesmith")
    if not st or "model" not in st:
        return
    rec = _base(st["model"], context)
    rec["errorCode"] = type(exception).__name__
    rec["errorMessage"] = str(exception)[:300]
    _sender.send(rec)


def _patch(session_module):
    original = session_module.Session.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        events = self.get_component("event_emitter")
        mod = sys.modules[__name__]
        for event, name in _EVENTS:
            events.register_last(event, getattr(mod, name), unique_id=f"rolesmith-{event}")

    session_module.Session.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "botocore.session":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched(module):
            exec_module(module)
            _patch(module)

        loader.exec_module = patched
        return spec


def install():
    global _sender
    _sender = _Sender(os.environ["ROLESMITH_RECORD_ADDR"], os.environ.get("ROLESMITH_RECORD_TOKEN", ""))
    if "botocore.session" in sys.modules:
        _patch(sys.modules["botocore.session"])
    else:
        sys.meta_path.insert(0, _Finder())
