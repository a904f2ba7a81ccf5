"""What the role used: trail files and recordings, CloudTrail (LookupEvents or a trail bucket), Access Advisor.

Trails go through the same pipeline as ``build`` so that the replacement is exactly what ``build``
would write; CloudTrail sources are fetched read-only into a temporary directory first. Access
Advisor only says *that* an action (or, for most services, only a service) was used, never on what,
so it is reported but never turned into a grant.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rolesmith.policies.model import Finding
from rolesmith.tighten.errors import TightenAwsError, TightenInputError
from rolesmith.tighten.model import UsedCall


def _client(session: Any, name: str, option: str) -> Any:
    from botocore.exceptions import NoRegionError

    if session is None:
        import boto3

        session = boto3.Session()
    try:
        return session.client(name)
    except NoRegionError:
        # tighten has no region option: the region comes from the AWS configuration.
        raise TightenInputError(f"{option}: no AWS region configured; set AWS_REGION (or AWS_DEFAULT_REGION, or "
                                "region in the AWS profile)") from None


def _one_line(err: Exception) -> str:
    # Some botocore messages (parameter validation) span lines; the CLI prints one.
    return " ".join(str(err).split())


# The characters botocore accepts in a bucket name: new buckets follow stricter rules, but older
# us-east-1 buckets may have capitals and underscores and must still be readable
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")


def split_bucket(bucket: str) -> tuple[str, str]:
    """``(name, prefix)`` of ``--cloudtrail-bucket`` ``[s3://]BUCKET[/PREFIX]``, checked before any AWS call."""
    name, _, prefix = bucket.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(name):
        raise TightenInputError(f"--cloudtrail-bucket {bucket!r}: {name!r} is not an S3 bucket name; pass "
                                "BUCKET[/PREFIX] or s3://BUCKET[/PREFIX] (letters, digits, '.', '-', '_')")
    return name, prefix


def _refused(err: Exception, what: str) -> TightenAwsError:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
    return TightenAwsError(f"{what}: AWS refused ({code}); check the credentials allow it")


def uses_from_graph(graph: Any, role_arn: str, source: str) -> tuple[UsedCall, ...]:
    """The role's needed (action, resource) pairs as the usage graph reports them."""
    out = []
    for use in graph.needs(role_arn):
        out.append(
            UsedCall(
                action=use.action,
                resource=use.resource,
                source=source,  # type: ignore[arg-type]
                granularity="call",
                conditions=tuple(getattr(use, "conditions", ()) or ()),
                via=getattr(use, "via", None),
            )
        )
    return tuple(sorted(set(out), key=lambda u: (u.action, u.resource)))


def lookup_events(role_arn: str, days: int, out_dir: Path, *, session: Any = None, now: dt.datetime | None = None) -> Path:
    """Management events of the last ``days`` that mention the role, as a LookupEvents-shaped file.

    LookupEvents cannot filter by role ARN (``Username`` is the session name for assumed roles,
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html), so every
    event of the window is read and those not mentioning the role dropped before parsing.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not 1 <= days <= 90:
        raise TightenInputError(f"--days {days}: LookupEvents keeps 90 days of events; pass 1..90 or use --cloudtrail-bucket")
    end = now or dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(days=days)
    ct = _client(session, "cloudtrail", "--cloudtrail")
    kept: list[dict[str, Any]] = []
    try:
        for page in ct.get_paginator("lookup_events").paginate(StartTime=start, EndTime=end):
            for event in page.get("Events", []):
                raw = event.get("CloudTrailEvent") or ""
                if role_arn in raw or f"assumed-role/{role_arn.rsplit('/', 1)[-1]}/" in raw:
                    kept.append({"CloudTrailEvent": raw})
    except ClientError as err:
        raise _refused(err, "cloudtrail:LookupEvents") from err
    except BotoCoreError as err:
        raise TightenAwsError(f"cloudtrail:LookupEvents: {_one_line(err)}; check AWS credentials and region") from err
    path = out_dir / "lookup-events.json"
    path.write_text(json.dumps({"Events": kept}), encoding="utf-8")
    return path


def bucket_logs(bucket: str, account: str, days: int, out_dir: Path, *, session: Any = None,
                now: dt.datetime | None = None) -> list[Path]:
    """Trail log files of the last ``days`` from a trail bucket (``[BUCKET/]PREFIX``).

    Log files sit under ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``
    (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if days < 1:
        raise TightenInputError(f"--days {days}: pass a positive number of days")
    name, prefix = split_bucket(bucket)
    base = f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}AWSLogs/{account}/CloudTrail/"
    end = (now or dt.datetime.now(dt.timezone.utc)).date()
    s3 = _client(session, "s3", "--cloudtrail-bucket")
    paths: list[Path] = []
    try:
        regions = [
            p["Prefix"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=base, Delimiter="/")
            for p in page.get("CommonPrefixes", [])
        ]
        for region_prefix in regions:
            for offset in range(days + 1):
                day = end - dt.timedelta(days=offset)
                day_prefix = f"{region_prefix}{day:%Y/%m/%d}/"
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=day_prefix):
                    for obj in page.get("Contents", []):
                        target = out_dir / obj["Key"].replace("/", "_")
                        s3.download_file(name, obj["Key"], str(target))
                        paths.append(target)
    except ClientError as err:
        raise _refused(err, f"s3 bucket {name}") from err
    except BotoCoreError as err:
        raise TightenAwsError(f"s3 bucket {name}: {_one_line(err)}; check AWS credentials and region") from err
    return paths


def access_advisor(role_arn: str, days: int, *, session: Any = None, sleep: Callable[[float], None] | None = None,
                   now: dt.datetime | None = None, max_polls: int = 60) -> tuple[tuple[UsedCall, ...], tuple[Finding, ...]]:
    """Services and actions the role used in the last ``days`` according to IAM Access Advisor.

    Action-level data exists only for the services AWS tracks at action level (``TrackedActionsLastAccessed``);
    other services are reported at service level
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_last-accessed-action-last-accessed.html).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    pause = sleep or time.sleep
    iam = _client(session, "iam", "--access-advisor")
    cutoff = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=days)
    try:
        job = iam.generate_service_last_accessed_details(Arn=role_arn, Granularity="ACTION_LEVEL")["JobId"]
        for _ in range(max_polls):
            details = iam.get_service_last_accessed_details(JobId=job)
            if details["JobStatus"] != "IN_PROGRESS":
                break
            pause(1.0)
        else:
            raise TightenAwsError(f"Access Advisor job {job} for {role_arn}: still running; retry later")
        if details["JobStatus"] == "FAILED":
            reason = details.get("Error", {}).get("Message", "no reason given")
            raise TightenAwsError(f"Access Advisor job {job} for {role_arn}: failed ({reason}); retry later")
        services = list(details.get("ServicesLastAccessed", []))
        marker = details.get("Marker") if details.get("IsTruncated") else None
        while marker:
            more = iam.get_service_last_accessed_details(JobId=job, Marker=marker)
            services += more.get("ServicesLastAccessed", [])
            marker = more.get("Marker") if more.get("IsTruncated") else None
    except ClientError as err:
        raise _refused(err, "iam:GenerateServiceLastAccessedDetails") from err
    except BotoCoreError as err:
        raise TightenAwsError(f"Access Advisor: {_one_line(err)}; check AWS credentials") from err
    calls: list[UsedCall] = []
    service_level: list[str] = []
    for svc in services:
        last = svc.get("LastAuthenticated")
        if last is None or _aware(last) < cutoff:
            continue
        ns = svc["ServiceNamespace"]
        tracked = svc.get("TrackedActionsLastAccessed")
        if tracked is None:
            service_level.append(ns)
            calls.append(UsedCall(action=f"{ns}:*", resource="*", source="access-advisor", granularity="service",
                                  last_used=_iso(last)))
            continue
        for act in tracked:
            when = act.get("LastAccessedTime")
            if when is None or _aware(when) < cutoff:
                continue
            calls.append(UsedCall(action=f"{ns}:{act['ActionName']}", resource="*", source="access-advisor",
                                  granularity="action", last_used=_iso(when)))
    findings = ()
    if service_level:
        findings = (
            Finding(
                code="ACCESS_ADVISOR_SERVICE_LEVEL",
                message="Access Advisor gives only service-level data for "
                + ", ".join(sorted(service_level))
                + ": which actions were used there comes from the trails alone",
            ),
        )
    return tuple(sorted(calls, key=lambda c: c.action)), findings


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _iso(value: Any) -> str:
    return _aware(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def unbacked_advisor(calls: Iterable[UsedCall], advisor: Iterable[UsedCall]) -> tuple[Finding, ...]:
    """Access Advisor use with no trail evidence: the replacement cannot grant it (no resource known)."""
    seen_actions = {c.action.lower() for c in calls}
    seen_services = {c.action.split(":", 1)[0].lower() for c in calls}
    out = []
    for a in advisor:
        svc = a.action.split(":", 1)[0].lower()
        if (a.granularity == "action" and a.action.lower() not in seen_actions) or (
            a.granularity == "service" and svc not in seen_services
        ):
            what = a.action if a.granularity == "action" else f"service {svc}"
            out.append(
                Finding(
                    code="ADVISOR_USE_WITHOUT_TRAIL",
                    message=f"Access Advisor says {what} was used (last {a.last_used}) but no trail record shows it: "
                    "the replacement does not grant it; add a trail covering that use",
                )
            )
    return tuple(out)
