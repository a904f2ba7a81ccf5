"""The server side of a run: CloudTrail LookupEvents (or a trail's log bucket), merged with the capture.

LookupEvents takes ONE lookup attribute per request and allows about 2 requests per second per
account and region; it returns management events only and they arrive minutes late (typically
within 15 minutes), hence the polling. Its ``CloudTrailEvent`` is the full record as a JSON string.
See https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from rolesmith.errors import RolesmithError

_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
_MIN_INTERVAL = 0.5  # seconds between LookupEvents requests: the documented 2 requests/s


class CloudTrailError(RolesmithError):
    exit_code = 1


class BadBucketUrl(CloudTrailError):
    """``--cloudtrail-bucket`` is not an S3 URL: bad input, found before anything is read."""

    exit_code = 2


def bucket_location(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``--cloudtrail-bucket s3://BUCKET[/PREFIX]``."""
    u = urlsplit(url)
    if u.scheme != "s3" or not u.netloc:
        raise BadBucketUrl(f"--cloudtrail-bucket {url}: expected s3://BUCKET[/PREFIX], the trail's S3 bucket (and"
                           " the prefix the trail delivers under)")
    return u.netloc, u.path.lstrip("/")


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclass(kw_only=True, slots=True)
class _Pacer:
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    last: float = -1e9
    requests: int = 0

    def call(self, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        backoff = 1.0
        while True:
            wait = self.last + _MIN_INTERVAL - self.clock()
            if wait > 0:
                self.sleep(wait)
            self.last = self.clock()
            self.requests += 1
            try:
                return fn(**kwargs)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in _THROTTLED or backoff > 64:
                    raise
                self.sleep(backoff)
                backoff *= 2


def lookup_events(client: Any, access_keys: Sequence[str], start: float, end: float, *, wait: float,
                  expected: Callable[[Mapping[str, dict[str, Any]]], bool],
                  sleep: Callable[[float], None], clock: Callable[[], float],
                  progress: Callable[[float, str], None] | None = None, interval: float = 30.0,
                  attribute: str = "AccessKeyId") -> list[dict[str, Any]]:
    """Every event of ``access_keys`` in [start, end], polled until ``expected(found)`` holds and a
    poll brings nothing new, or ``wait`` seconds pass. ``attribute`` names the lookup attribute the
    values are (``AccessKeyId``, ``ResourceName``, ...)."""
    pacer = _Pacer(sleep=sleep, clock=clock)
    found: dict[str, dict[str, Any]] = {}
    began = clock()
    window = {"StartTime": datetime.fromtimestamp(start - 60, tz=timezone.utc),
              "EndTime": datetime.fromtimestamp(end + 60, tz=timezone.utc)}
    while True:
        before = len(found)
        for key in access_keys:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": key}],
                                          **window, "MaxResults": 50}
                if token:
                    kwargs["NextToken"] = token
                try:
                    page = pacer.call(client.lookup_events, **kwargs)
                except ClientError as err:
                    raise CloudTrailError(f"cloudtrail:LookupEvents failed: {err}; check the credentials allow "
                                          f"cloudtrail:LookupEvents, or drop --cloudtrail") from err
                for item in page.get("Events", []):
                    try:
                        record = json.loads(item.get("CloudTrailEvent") or "{}")
                    except ValueError:
                        continue
                    event_id = record.get("eventID") or item.get("EventId")
                    if event_id:
                        found[event_id] = record
                token = page.get("NextToken")
                if not token:
                    break
        elapsed = clock() - began
        if progress is not None:
            progress(min(1.0, elapsed / wait) if wait > 0 else 1.0, f"{len(found)} CloudTrail events")
        if (len(found) == before and expected(found)) or elapsed >= wait:
            break
        sleep(min(interval, max(0.0, wait - elapsed)))
    if progress is not None:
        progress(1.0, f"{len(found)} CloudTrail events")
    return sorted(found.values(), key=lambda r: r.get("eventTime") or "")


_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_ROLE_MEMBER = re.compile(r"(?i)role(arn|name)?$")  # serviceRole, jobFlowRole, roleArn, executionRoleArn


def roles_handed_over(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """ARNs of the roles the run's calls named: role resources, role ARNs in the request, and role
    names in members called ``…Role`` (RunJobFlow's ``serviceRole: MyEMRRole``), qualified with the
    caller's account. These are the roles a service may assume on the run's behalf."""
    out: set[str] = set()
    for rec in records:
        ui = rec.get("userIdentity") or {}
        if ui.get("invokedBy") or rec.get("eventSource") == "sts.amazonaws.com":
            continue  # a service's own call hands nothing over; a role the run assumes itself is the run's
        account = ui.get("accountId") or rec.get("recipientAccountId")
        for res in rec.get("resources") or []:
            if _ROLE_ARN.match(str(res.get("ARN") or "")):
                out.add(res["ARN"])
        for key, value in _leaves(rec.get("requestParameters")):
            if not isinstance(value, str):
                continue
            if _ROLE_ARN.match(value):
                out.add(value)
            elif account and _ROLE_MEMBER.search(key) and re.fullmatch(r"[\w+=,.@-]{1,64}", value):
                out.add(f"arn:aws:iam::{account}:role/{value}")
    return sorted(out)


def _leaves(value: Any, key: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    else:
        yield key, value


def is_service_assume_role(rec: Mapping[str, Any]) -> bool:
    return ((rec.get("userIdentity") or {}).get("type") == "AWSService"
            and str(rec.get("eventName", "")).startswith("AssumeRole"))


def service_session_keys(assume_records: Iterable[Mapping[str, Any]], roles: Iterable[str]) -> list[str]:
    """Access key ids of the sessions AWS services opened on ``roles``: ``AssumeRole`` records by an
    ``AWSService`` identity (``invokedBy: elasticmapreduce.amazonaws.com``) list the role in
    ``resources`` and the session's key in ``responseElements.credentials.accessKeyId``."""
    wanted = set(roles)
    keys: set[str] = set()
    for rec in assume_records:
        if not is_service_assume_role(rec):
            continue
        arn = (rec.get("requestParameters") or {}).get("roleArn")
        if arn not in wanted and not any(r.get("ARN") in wanted for r in rec.get("resources") or []):
            continue
        key = ((rec.get("responseElements") or {}).get("credentials") or {}).get("accessKeyId")
        if key:
            keys.add(key)
    return sorted(keys)


def read_bucket(client: Any, url: str, start: float, end: float, access_keys: Iterable[str]) -> list[dict[str, Any]]:
    """Records of ``access_keys`` in the window from a trail's S3 log files (``s3://bucket/prefix``),
    and the AssumeRole records of AWS services (see ``service_session_keys``).

    Log files live under ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` and are delivered
    within about 5 minutes of the calls; only the days of the window are read.
    """
    bucket, prefix = bucket_location(url)
    days = set()
    t = datetime.fromtimestamp(start, tz=timezone.utc).date()
    while t <= datetime.fromtimestamp(end + 3600, tz=timezone.utc).date():
        days.add(t.strftime("%Y/%m/%d"))
        t += timedelta(days=1)
    keys = set(access_keys)
    out: list[dict[str, Any]] = []
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                day = re.search(r"/(\d{4}/\d{2}/\d{2})/", obj["Key"])
                if day is None or day.group(1) not in days or not obj["Key"].endswith((".json.gz", ".json")):
                    continue
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                if obj["Key"].endswith(".gz"):
                    body = gzip.decompress(body)
                for record in json.loads(body).get("Records", []):
                    ts = _ts(record.get("eventTime"))
                    akid = (record.get("userIdentity") or {}).get("accessKeyId")
                    if ts is not None and start - 60 <= ts <= end + 60 and (akid in keys or is_service_assume_role(record)):
                        out.append(record)
    except ClientError as err:
        raise CloudTrailError(f"--cloudtrail-bucket {url}: {err}; check the bucket and s3:ListBucket/GetObject") from err
    return sorted(out, key=lambda r: r.get("eventTime") or "")


def merge(client_records: Sequence[dict[str, Any]], server_records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per request: the server's fields win; server-only events (KMS by S3) are kept."""
    by_request: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in server_records:
        if rec.get("requestID"):
            by_request.setdefault((rec["requestID"], rec.get("eventName", "")), rec)
    used: set[int] = set()
    merged: list[dict[str, Any]] = []
    for rec in client_records:
        method = (rec.get("additionalEventData") or {}).get("rolesmith", "client")
        if "cloudtrail" in method.split("+"):
            # Already joined by an earlier lookup (another account's trail, a service session's): joining
            # it again would steal the server record of a twin call that is still unjoined.
            merged.append(rec)
            continue
        match = by_request.get((rec.get("requestID") or "", rec.get("eventName", "")))
        if match is None or id(match) in used:
            match = _near(rec, server_records, used)
        if match is None:
            merged.append(rec)
            continue
        used.add(id(match))
        combined = dict(match)
        combined["additionalEventData"] = {**(match.get("additionalEventData") or {}), "rolesmith": f"{method}+cloudtrail"}
        merged.append(combined)
    for rec in server_records:
        if id(rec) not in used:
            merged.append({**rec, "additionalEventData": {**(rec.get("additionalEventData") or {}), "rolesmith": "cloudtrail"}})
    return sorted(merged, key=lambda r: r.get("eventTime") or "")


def _near(rec: Mapping[str, Any], server: Sequence[dict[str, Any]], used: set[int]) -> dict[str, Any] | None:
    """Fallback when request ids differ: the nearest server record of the same action and key that
    began at most 10 s before the client saw the response (a slow call: EMR's RunJobFlow) or 2 s after
    (clock granularity is 1 s)."""
    ts = _ts(rec.get("eventTime"))
    akid = (rec.get("userIdentity") or {}).get("accessKeyId")
    best: tuple[float, dict[str, Any]] | None = None
    for cand in server:
        if id(cand) in used or cand.get("eventName") != rec.get("eventName") or cand.get("eventSource") != rec.get("eventSource"):
            continue
        if (cand.get("userIdentity") or {}).get("accessKeyId") != akid or (cand.get("userIdentity") or {}).get("invokedBy"):
            continue
        cts = _ts(cand.get("eventTime"))
        if ts is not None and cts is not None and -2 <= ts - cts <= 10 and (best is None or abs(ts - cts) < best[0]):
            best = (abs(ts - cts), cand)
    return best[1] if best else None
