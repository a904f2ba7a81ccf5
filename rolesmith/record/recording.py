"""CloudTrail-shaped records from captured calls, appended to ``recording.jsonl`` as they happen."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from rolesmith.trail import wire
from rolesmith.trail.secrets import scrub_record

log = logging.getLogger(__name__)
EVENT_VERSION = "1.09"


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """One API call as a capture method saw it (the parent's internal form, never written as is)."""

    method: str  # hook | proxy | csm
    service: str  # botocore service name ("s3", "kms", "emr")
    operation: str  # "PutObject"
    params: Mapping[str, Any] = field(default_factory=dict)  # API parameter names, not yet redacted
    region: str | None = None
    access_key_id: str | None = None
    status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    time: float = 0.0
    signatures: tuple[str, ...] = ()
    source: str | None = None  # eventSource, when the capture knows it better than the model
    host: str | None = None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resources(call: Call, params: Mapping[str, Any], account: str | None, region: str | None) -> list[dict]:
    """The ``resources[]`` CloudTrail writes for data events (S3 objects/buckets, KMS keys)."""
    out: list[dict] = []
    if call.service == "s3":
        bucket = params.get("Bucket")
        if isinstance(bucket, str) and bucket:
            key = params.get("Key")
            if isinstance(key, str) and key:
                out.append({"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"})
            out.append({"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"})
    elif call.service == "kms":
        key_id = params.get("KeyId")
        if isinstance(key_id, str) and key_id and account and region:
            arn = key_id if key_id.startswith("arn:") else (
                f"arn:aws:kms:{region}:{account}:{key_id}" if key_id.startswith("alias/")
                else f"arn:aws:kms:{region}:{account}:key/{key_id}")
            out.append({"accountId": account, "type": "AWS::KMS::Key", "ARN": arn})
    return out


def to_record(call: Call, identity: Mapping[str, Any] | None) -> dict[str, Any]:
    model = wire.find_service_model(call.service)
    source = call.source or (wire.event_source(model) if model else f"{call.service}.amazonaws.com")
    account = (identity or {}).get("accountId")
    region = call.region or "us-east-1"
    params = wire.to_request_parameters(call.service, call.operation, call.params)
    if call.service == "s3" and call.host:
        params.setdefault("Host", call.host)
    op = wire.operation_model(call.service, call.operation)
    read_only = None
    if op is not None:
        read_only = call.operation.startswith(("Get", "List", "Describe", "Head", "Lookup", "Search", "Scan", "Query"))
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": dict(identity) if identity else {"type": "Unknown", "accessKeyId": call.access_key_id},
        "eventTime": iso(call.time),
        "eventSource": source,
        "eventName": call.operation,
        "awsRegion": region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": f"rolesmith-record/{call.method}",
        "requestParameters": params or None,
        "responseElements": None,
        "additionalEventData": {"rolesmith": call.method},
        "requestID": call.request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": read_only,
        "resources": _resources(call, call.params, account, region),
        "eventType": "AwsApiCall",
        "managementEvent": is_management_event(call.service, call.operation),
        "recipientAccountId": account,
    }
    if call.error_code:
        record["errorCode"] = call.error_code
        record["errorMessage"] = call.error_message or ""
    if call.status is not None:
        record["additionalEventData"]["httpStatus"] = call.status
    return record


# Data events (object-level S3 per shared/reference/s3_kms/s3-ug__cloudtrail-logging-s3-info.md,
# "object-level actions"; Lambda Invoke; DynamoDB item operations): LookupEvents never returns them.
_DATA_EVENTS = {
    "s3": frozenset({"AbortMultipartUpload", "CompleteMultipartUpload", "CopyObject", "CreateMultipartUpload",
                     "DeleteObject", "DeleteObjects", "GetObject", "GetObjectAcl", "GetObjectAttributes",
                     "GetObjectTagging", "HeadBucket", "HeadObject", "ListObjects", "ListObjectsV2",
                     "ListObjectVersions", "ListParts", "PutObject", "PutObjectAcl", "PutObjectTagging",
                     "RestoreObject", "UploadPart", "UploadPartCopy", "SelectObjectContent"}),
    "lambda": frozenset({"Invoke", "InvokeWithResponseStream", "InvokeAsync"}),
    "dynamodb": frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                           "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "ExecuteStatement",
                           "BatchExecuteStatement", "ExecuteTransaction"}),
}


def is_management_event(service: str, operation: str) -> bool:
    return operation not in _DATA_EVENTS.get(service, frozenset())


class RecordingWriter:
    """Appends one JSON line per record and flushes it: a killed run loses nothing written so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")
        self.count = 0

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(scrub_record(record), separators=(",", ":"), default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _same_request(a: Call, b: Call) -> bool:
    """Request ids decide when both captures have one (identical requests signed in the same
    second share a signature); otherwise a shared SigV4 signature does."""
    if a.request_id and b.request_id:
        return a.request_id == b.request_id
    return bool(set(a.signatures) & set(b.signatures))


# How long a written proxy call still absorbs its hook copy.
_LATE_WINDOW = 30.0


class _Pending:
    """Calls waiting for their other capture's copy, indexed by request id and signature.

    Matching runs for every hook message on the collector's thread, which holds the GIL the proxy's
    threads need: a linear scan of a thousand waiting calls cost ~0.5 ms per message.
    Deadlines only grow (one constant delay per instance), so expiry pops from the front.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._order: dict[int, tuple[float, Call]] = {}  # insertion order = deadline order
        self._by_rid: dict[str, list[int]] = {}
        self._by_sig: dict[str, list[int]] = {}
        self._next = 0
        self._limit = limit

    def __len__(self) -> int:
        return len(self._order)

    def add(self, deadline: float, call: Call) -> None:
        n = self._next
        self._next += 1
        self._order[n] = (deadline, call)
        if call.request_id:
            self._by_rid.setdefault(call.request_id, []).append(n)
        for sig in call.signatures:
            self._by_sig.setdefault(sig, []).append(n)
        if self._limit is not None and len(self._order) > self._limit:
            self._remove(next(iter(self._order)))

    def take(self, call: Call) -> bool:
        """Remove the earliest waiting call that is the same request as ``call``; True if one was."""
        found: list[int] = []
        if call.request_id:
            found += self._by_rid.get(call.request_id, ())
        for sig in call.signatures:
            found += self._by_sig.get(sig, ())
        for n in sorted(set(found)):
            if _same_request(call, self._order[n][1]):
                self._remove(n)
                return True
        return False

    def expire(self, now: float, force: bool = False) -> list[Call]:
        """Remove and return the calls whose deadline passed (all of them with ``force``)."""
        due: list[Call] = []
        while self._order:
            n, (deadline, call) = next(iter(self._order.items()))
            if not force and deadline > now:
                break
            self._remove(n)
            due.append(call)
        return due

    def _remove(self, n: int) -> None:
        _, call = self._order.pop(n)
        for index, key in ((self._by_rid, call.request_id), *((self._by_sig, s) for s in call.signatures)):
            if key and (ids := index.get(key)) is not None:
                ids.remove(n)
                if not ids:
                    del index[key]


class Recorder:
    """Turns calls from every capture method into records, once per request.

    A call seen by both hook and proxy carries the same request id (or, lacking one, the same SigV4
    signature): the hook's record wins (exact parameters), so proxy calls wait ``hold`` seconds
    for a matching hook call first. Records are built and written on a writer thread, so
    a slow identity lookup (the first sts:GetCallerIdentity) never delays receiving calls.
    """

    def __init__(self, writer: RecordingWriter, identify: Callable[[str | None], Mapping[str, Any] | None],
                 hold: float = 0.5) -> None:
        self._writer = writer
        self._identify = identify
        self._hold = hold
        self._lock = threading.Lock()
        self._held = _Pending()  # proxy calls waiting for their hook copy
        self._hooked = _Pending(limit=1000)  # hook calls whose proxy copy has not arrived
        # Proxy calls written after their hold expired: a hook copy arriving later (a loaded machine
        # delays the hook's message) is the same request and must not become a second record.
        self._late = _Pending(limit=1000)
        self._queue: queue.Queue[Call | None] = queue.Queue()
        self.counts: dict[str, int] = {}
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._write_loop, name="rolesmith-writer", daemon=True))
        if self._hold > 0:  # write held proxy calls once their hold expires, even with no other traffic
            self._threads.append(threading.Thread(target=self._tick_loop, name="rolesmith-ticker", daemon=True))
        for thread in self._threads:
            thread.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.05):
            self.tick()

    def _write_loop(self) -> None:
        while (call := self._queue.get()) is not None:
            try:
                record = to_record(call, self._identify(call.access_key_id))
            except Exception:  # one malformed call must not stop the recording
                log.exception("could not record %s:%s", call.service, call.operation)
                continue
            with self._lock:
                self.records.append(record)
            self._writer.write(record)

    def stop(self) -> None:
        """Write what is held and queued; returns once every record is on disk."""
        self._stop.set()
        for thread in self._threads[1:]:
            thread.join(timeout=2)
        self.tick(force=True)
        self._queue.put(None)
        if self._threads:
            self._threads[0].join()
        else:
            self._write_loop()

    def add(self, call: Call) -> None:
        if self._hold > 0 and call.method in ("hook", "proxy"):
            with self._lock:
                if call.method == "hook" and self._late.take(call):
                    return
                if self._pair(call):
                    if call.method == "proxy":
                        return
                else:
                    # Unpaired: a proxy call waits for its hook copy. The proxy reports before it
                    # answers, so its copy normally comes first; a hook call is kept briefly in
                    # case it does not (a request the proxy saw but could not decode at once).
                    if call.method == "proxy":
                        self._held.add(time.monotonic() + self._hold, call)
                    else:
                        self._hooked.add(time.monotonic() + 2.0, call)
            if call.method == "proxy":
                return
        self._emit(call)

    def _pair(self, call: Call) -> bool:
        """Remove and report the other capture's copy of ``call``, if one is pending (lock held)."""
        return (self._hooked if call.method == "proxy" else self._held).take(call)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            due = self._held.expire(now, force)
            self._hooked.expire(now)
            self._late.expire(now)
            for call in due:
                self._late.add(now + _LATE_WINDOW, call)
        for call in sorted(due, key=lambda c: c.time):
            self._emit(call)

    def _emit(self, call: Call) -> None:
        with self._lock:
            self.counts[call.method] = self.counts.get(call.method, 0) + 1
        self._queue.put(call)
