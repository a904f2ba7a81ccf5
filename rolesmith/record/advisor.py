"""IAM Access Advisor: what each role of the run last accessed, against what the recording saw.

GenerateServiceLastAccessedDetails(Granularity=ACTION_LEVEL) starts a job; GetServiceLastAccessedDetails
returns ``ServicesLastAccessed[]`` (``ServiceNamespace``, ``LastAuthenticated``,
``TrackedActionsLastAccessed[]`` with ``ActionName``/``LastAccessedTime``) once ``JobStatus`` is
COMPLETED. Action-level data exists only for tracked services (S3, EC2, IAM, Lambda, …).
See https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetServiceLastAccessedDetails.html
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from botocore.exceptions import ClientError

from rolesmith.policies.model import Finding
from rolesmith.record.cloudtrail import CloudTrailError

# eventSource prefix -> IAM service namespace, where they differ.
_NAMESPACE = {"monitoring": "cloudwatch", "email": "ses"}


def namespace_of(event_source: str) -> str:
    prefix = event_source.split(".amazonaws.com", 1)[0]
    return _NAMESPACE.get(prefix, prefix)


def roles_of(records: Iterable[Mapping[str, Any]]) -> list[str]:
    roles = set()
    for rec in records:
        issuer = ((rec.get("userIdentity") or {}).get("sessionContext") or {}).get("sessionIssuer") or {}
        if issuer.get("type") == "Role" and issuer.get("arn"):
            roles.add(issuer["arn"])
    return sorted(roles)


def _seconds(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def unobserved_use(iam: Any, roles: Sequence[str], records: Sequence[Mapping[str, Any]], start: float, end: float, *,
                   sleep: Callable[[float], None], timeout: float = 300.0) -> list[Finding]:
    seen_services = {namespace_of(r.get("eventSource", "")) for r in records}
    seen_actions = {f"{namespace_of(r.get('eventSource', ''))}:{r.get('eventName', '')}".lower() for r in records}
    findings: list[Finding] = []
    for role in roles:
        try:
            job = iam.generate_service_last_accessed_details(Arn=role, Granularity="ACTION_LEVEL")["JobId"]
            details = _poll(iam, job, sleep, timeout, role)
        except ClientError as err:
            raise CloudTrailError(f"Access Advisor for {role}: {err}; check iam:GenerateServiceLastAccessedDetails "
                                  f"and iam:GetServiceLastAccessedDetails are allowed, or drop --access-advisor") from err
        for svc in details:
            ns = svc.get("ServiceNamespace", "")
            last = _seconds(svc.get("LastAuthenticated"))
            if last is None or not start <= last <= end:
                continue
            if ns not in seen_services:
                findings.append(Finding(code="UNOBSERVED_USE", message=(
                    f"{role} used {ns} during the run (Access Advisor, last accessed "
                    f"{svc['LastAuthenticated']:%Y-%m-%dT%H:%M:%SZ}) but the recording has no {ns} call: "
                    f"a capture missed it; record that client through the proxy or add --cloudtrail")))
                continue
            for action in svc.get("TrackedActionsLastAccessed") or ():
                at = _seconds(action.get("LastAccessedTime"))
                name = f"{ns}:{action.get('ActionName', '')}"
                if at is not None and start <= at <= end and name.lower() not in seen_actions:
                    findings.append(Finding(code="UNOBSERVED_USE", message=(
                        f"{role} used {name} during the run (Access Advisor) but the recording never saw it")))
    return findings


def _poll(iam: Any, job: str, sleep: Callable[[float], None], timeout: float, role: str) -> list[dict[str, Any]]:
    waited, delay = 0.0, 1.0
    services: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"JobId": job}
        if marker:
            kwargs["Marker"] = marker
        page = iam.get_service_last_accessed_details(**kwargs)
        status = page.get("JobStatus")
        if status == "IN_PROGRESS":
            if waited >= timeout:
                raise CloudTrailError(f"Access Advisor for {role}: job {job} still running after {timeout:.0f}s; retry later")
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
            continue
        if status == "FAILED":
            raise CloudTrailError(f"Access Advisor for {role}: job {job} failed: {page.get('Error', {}).get('Message', '')}")
        services.extend(page.get("ServicesLastAccessed", []))
        if not page.get("IsTruncated"):
            return services
        marker = page.get("Marker")
