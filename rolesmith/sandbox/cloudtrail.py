"""CloudTrail for the sandbox: record construction, log files in the AWS layout, LookupEvents.

Records follow the documented record contents
(shared/reference/cloudtrail/ct-ug__cloudtrail-event-reference-record-contents.md): a call made by a
service on the caller's behalf carries ``userIdentity.invokedBy`` and ``sourceIPAddress`` = the
service. A cross-account call is also delivered to the resource owner's trail, with
``recipientAccountId`` = that account and the same ``eventID`` (readers de-duplicate by it).
Log files: ``AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_ID.json.gz``
holding ``{"Records": [...]}``. Secrets (secret keys, session tokens) are never part of a record.
Until a record is in such a log file it is in ``rolesmith-sandbox_…jsonl`` beside ``AWSLogs/``
(see ``Trail``), so a sandbox that is killed keeps what it recorded.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.sandbox.auth import Identity

log = logging.getLogger("rolesmith.sandbox")
_READ_PREFIXES = ("Get", "List", "Describe", "Head", "Lookup", "Search", "Select", "Scan", "Query", "BatchGet")
# S3 object-level calls are data events (eventCategory "Data", managementEvent false).
_S3_DATA = frozenset({"GetObject", "PutObject", "CopyObject", "HeadObject", "DeleteObject", "DeleteObjects",
                      "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
                      "AbortMultipartUpload", "GetObjectAcl", "PutObjectAcl", "GetObjectTagging",
                      "PutObjectTagging", "ListParts", "RestoreObject"})
_RESOURCE_TYPES = {"s3-object": "AWS::S3::Object", "s3-bucket": "AWS::S3::Bucket", "kms": "AWS::KMS::Key",
                   "sqs": "AWS::SQS::Queue", "iam-role": "AWS::IAM::Role", "ec2": "AWS::EC2::Instance"}


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def make_record(*, ident: Identity, event_source: str, event_name: str, region: str,
                request_parameters: Mapping[str, Any] | None, user_agent: str | None,
                invoked_by: str | None = None, when: float | None = None) -> dict[str, Any]:
    """The caller-account record for one call, before its outcome is known."""
    when = time.time() if when is None else when
    user = ident.user_identity()
    if invoked_by:
        user["invokedBy"] = invoked_by
    data = event_source == "s3.amazonaws.com" and event_name in _S3_DATA
    return {
        "eventVersion": "1.09",
        "userIdentity": user,
        "eventTime": iso(when),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": invoked_by or "127.0.0.1",
        "userAgent": invoked_by or user_agent or "rolesmith-sandbox",
        "requestParameters": dict(request_parameters) if request_parameters is not None else None,
        "responseElements": None,
        "additionalEventData": {"rolesmith": "sandbox"},
        "requestID": uuid.uuid4().hex[:16].upper(),
        "eventID": str(uuid.uuid4()),
        "readOnly": event_name.startswith(_READ_PREFIXES),
        "resources": [],
        "eventType": "AwsApiCall",
        "managementEvent": not data,
        "recipientAccountId": ident.account,
        "eventCategory": "Data" if data else "Management",
    }


def resource_entries(arns: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """CloudTrail ``resources[]`` for the ARNs a call touched (type named where CloudTrail names it)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for arn, account in arns:
        if arn in seen or arn == "*":
            continue
        seen.add(arn)
        entry: dict[str, Any] = {"ARN": arn}
        if account:
            entry["accountId"] = account
        kind = None
        if arn.startswith("arn:aws:s3:::"):
            kind = "s3-object" if "/" in arn[13:] else "s3-bucket"
        elif arn.startswith("arn:aws:kms:") and ":key/" in arn:
            kind = "kms"
        elif arn.startswith("arn:aws:sqs:"):
            kind = "sqs"
        elif ":role/" in arn and arn.startswith("arn:aws:iam::"):
            kind = "iam-role"
        elif arn.startswith("arn:aws:ec2:") and ":instance/" in arn:
            kind = "ec2"
        if kind:
            entry["type"] = _RESOURCE_TYPES[kind]
        out.append(entry)
    return out


def resource_copy(record: Mapping[str, Any], account: str) -> dict[str, Any]:
    """The copy delivered to the resource owner's trail for a cross-account call."""
    out = copy.deepcopy(dict(record))
    caller = record["userIdentity"]
    ident: dict[str, Any] = {"type": "AWSAccount", "principalId": caller.get("principalId"),
                             "accountId": caller.get("accountId")}
    if caller.get("invokedBy"):
        ident["invokedBy"] = caller["invokedBy"]
    out["userIdentity"] = ident
    out["recipientAccountId"] = account
    out["sharedEventID"] = str(uuid.uuid4())
    return out


class TrailWriteError(RolesmithError):
    """The log directory cannot be created or written to."""

    exit_code = 2


_BATCH = 200  # records per batch of log files (CloudTrail itself delivers every ~5 minutes)


class Trail:
    """Collects records in memory (for LookupEvents) and writes them under ``log_dir``.

    Every record reaches disk as it is made: it is appended to a JSON Lines file
    ``log_dir/rolesmith-sandbox_YYYYMMDDTHHMMSSZ_ID.jsonl`` (one record a line, a format every
    rolesmith trail reader takes) and flushed to the OS, which keeps it when the process is killed
    (SIGKILL, SIGHUP); no fsync, which would cost milliseconds a call and guards only against power
    loss. The documented log files (gzipped ``{"Records": [...]}`` per account and region, which
    cannot be appended to) are written in batches — every 200 records, on ``flush`` and ``close`` —
    and then the JSON Lines file is emptied, so the two never hold the same record (but for a kill
    between the two steps); ``close`` removes it. The directory is created and the file opened
    here, so a log directory that cannot be written is an error at start, not at the end.
    """

    def __init__(self, log_dir: Path | None) -> None:
        self.log_dir = log_dir
        self._lock = threading.Lock()
        self._all: list[dict[str, Any]] = []
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._live: Any = None  # the JSON Lines file, a text stream
        self._live_path: Path | None = None
        self._warned = False
        if log_dir is not None:
            name = f"rolesmith-sandbox_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{secrets.token_hex(8)}.jsonl"
            self._live_path = log_dir / name
            try:
                log_dir.mkdir(parents=True, exist_ok=True)
                # Open until close(): each record is appended as it is made.
                self._live = open(self._live_path, "a", encoding="utf-8")
            except OSError as err:
                raise TrailWriteError(f"{log_dir}: cannot write CloudTrail log files there ({err.strerror}); "
                                      "pass a directory you can write to as --log-dir") from err

    def add(self, record: Mapping[str, Any], resource_accounts: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        rec = dict(record)
        copies = [rec] + [resource_copy(rec, a) for a in sorted(resource_accounts) if a and a != rec["recipientAccountId"]]
        with self._lock:
            for r in copies:
                self._all.append(r)
                if self._live is not None:
                    self._pending.setdefault((r["recipientAccountId"], r["awsRegion"]), []).append(r)
            if self._live is not None:
                try:
                    self._live.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in copies))
                    self._live.flush()
                except OSError as err:
                    raise self._error(err) from err
                if sum(len(v) for v in self._pending.values()) >= _BATCH:
                    try:
                        self._flush_locked()
                    except TrailWriteError as err:
                        # The batch is safe in the JSON Lines file, so the call goes on; the next
                        # batch retries, and flush()/close() raise it.
                        if not self._warned:
                            log.warning("sandbox: %s", err)
                            self._warned = True

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._all)

    def flush(self) -> None:
        """Write the records not yet in log files as log files."""
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Flush, then remove the JSON Lines file (all it held is in log files now). Idempotent."""
        with self._lock:
            if self._live is None:
                return
            self._flush_locked()
            self._live.close()
            self._live = None
            assert self._live_path is not None
            self._live_path.unlink(missing_ok=True)

    def _error(self, err: OSError) -> TrailWriteError:
        return TrailWriteError(f"{self.log_dir}: cannot write CloudTrail log files there ({err.strerror}); "
                               f"the records not in log files are in {self._live_path}")

    def _flush_locked(self) -> None:
        if self._live is None or not self._pending:
            return
        assert self.log_dir is not None
        now = time.gmtime()
        try:
            for (account, region), recs in self._pending.items():
                folder = self.log_dir / "AWSLogs" / account / "CloudTrail" / region / time.strftime("%Y/%m/%d", now)
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{account}_CloudTrail_{region}_{time.strftime('%Y%m%dT%H%MZ', now)}_{secrets.token_hex(8)}.json.gz"
                with gzip.open(folder / name, "wt", encoding="utf-8") as fh:
                    json.dump({"Records": recs}, fh, separators=(",", ":"))
            # Every pending record is in a log file now: empty the JSON Lines file so none is in both.
            self._live.seek(0)
            self._live.truncate()
        except OSError as err:
            # The JSON Lines file still holds every record of the batch: nothing is lost.
            raise self._error(err) from err
        self._pending = {}

    # -- LookupEvents -------------------------------------------------------------------------
    def lookup_events(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Answer ``cloudtrail:LookupEvents`` for one account, as the API documents its response
        (https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html):
        newest first, ``CloudTrailEvent`` holding the record as a JSON string."""
        start = _epoch(params.get("StartTime"))
        end = _epoch(params.get("EndTime"))
        attrs = params.get("LookupAttributes") or []
        limit = max(1, min(int(params.get("MaxResults") or 50), 50))
        offset = int(params.get("NextToken") or 0)
        with self._lock:
            mine = [r for r in self._all if r["recipientAccountId"] == account]
        out = []
        for rec in reversed(mine):
            t = _epoch(rec["eventTime"]) or 0.0
            if (start is not None and t < start) or (end is not None and t > end):
                continue
            if all(_matches(rec, a) for a in attrs):
                out.append(rec)
        page = out[offset:offset + limit]
        resp: dict[str, Any] = {"Events": [_lookup_event(r) for r in page]}
        if offset + limit < len(out):
            resp["NextToken"] = str(offset + limit)
        return resp


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return time.mktime(time.strptime(str(value)[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return None


def _username(rec: Mapping[str, Any]) -> str | None:
    ui = rec.get("userIdentity") or {}
    if ui.get("userName"):
        return ui["userName"]
    arn = ui.get("arn") or ""
    return arn.rsplit("/", 1)[-1] if "assumed-role/" in arn else None


def _matches(rec: Mapping[str, Any], attr: Mapping[str, Any]) -> bool:
    key, value = attr.get("AttributeKey"), attr.get("AttributeValue")
    ui = rec.get("userIdentity") or {}
    if key == "EventId":
        return rec.get("eventID") == value
    if key == "EventName":
        return rec.get("eventName") == value
    if key == "EventSource":
        return rec.get("eventSource") == value
    if key == "ReadOnly":
        return str(rec.get("readOnly")).lower() == str(value).lower()
    if key == "Username":
        return _username(rec) == value
    if key == "AccessKeyId":
        return ui.get("accessKeyId") == value
    if key == "ResourceName":
        return any(r.get("ARN") == value or (r.get("ARN") or "").endswith(f"/{value}") or
                   (r.get("ARN") or "").endswith(f":{value}") for r in rec.get("resources") or [])
    if key == "ResourceType":
        return any(r.get("type") == value for r in rec.get("resources") or [])
    return False


def _lookup_event(rec: Mapping[str, Any]) -> dict[str, Any]:
    ui = rec.get("userIdentity") or {}
    out: dict[str, Any] = {
        "EventId": rec["eventID"], "EventName": rec["eventName"], "ReadOnly": str(rec["readOnly"]).lower(),
        "EventTime": _epoch(rec["eventTime"]), "EventSource": rec["eventSource"],
        "Resources": [{"ResourceType": r.get("type", ""), "ResourceName": r["ARN"]} for r in rec.get("resources") or []],
        "CloudTrailEvent": json.dumps(rec, separators=(",", ":")),
    }
    if ui.get("accessKeyId"):
        out["AccessKeyId"] = ui["accessKeyId"]
    if _username(rec):
        out["Username"] = _username(rec)
    return out
