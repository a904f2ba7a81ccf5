"""What the rest of the trail says about a denied event: who uploaded an object, which KMS call a
service made for the caller, whether a service tagged resources after creating them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from rolesmith.trail.model import Event

_UPLOADS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Upload:
    uploader: str | None  # principal ARN
    account: str | None
    acl: str | None  # x-amz-acl as sent
    origin: str


@dataclass(kw_only=True, slots=True)
class TrailIndex:
    uploads: dict[str, list[Upload]] = field(default_factory=dict)  # "bucket/key" → successful uploads
    kms_via: list[Event] = field(default_factory=list)  # KMS calls a service made for a principal
    tagged_later: set[tuple[str, str]] = field(default_factory=set)  # (principal ARN, invoking service)

    @classmethod
    def build(cls, events: Iterable[Event]) -> "TrailIndex":
        index = cls()
        for ev in events:
            principal = ev.principal.arn if ev.principal else None
            if ev.source.startswith("s3.") and ev.name in _UPLOADS and not ev.error_code:
                bucket, key = ev.request.get("bucketName"), ev.request.get("key")
                if isinstance(bucket, str) and isinstance(key, str):
                    acl = ev.request.get("x-amz-acl")
                    index.uploads.setdefault(f"{bucket}/{key}", []).append(
                        Upload(
                            uploader=principal,
                            account=(ev.principal.account if ev.principal else None) or ev.caller_account,
                            acl=acl if isinstance(acl, str) else None,
                            origin=ev.origin,
                        )
                    )
            elif ev.source.startswith("kms.") and ev.invoked_by:
                index.kms_via.append(ev)
            elif ev.source.startswith("ec2.") and ev.name == "CreateTags" and principal and not ev.error_code:
                via = ev.invoked_by or _service_agent(ev.user_agent)
                if via:
                    index.tagged_later.add((principal, via))
        return index

    def kms_denial_for(self, event: Event) -> Event | None:
        """A denied KMS call the same principal's S3/Secrets Manager/SSM request caused (within 60 s)."""
        principal = event.principal.arn if event.principal else None
        for kms in self.kms_via:
            if not kms.denied or (kms.principal.arn if kms.principal else None) != principal:
                continue
            if kms.invoked_by and not kms.invoked_by.startswith(event.source.split(".", 1)[0]):
                continue
            if event.time is None or kms.time is None or abs(kms.time - event.time) <= 60:
                return kms
        return None


def _service_agent(agent: str | None) -> str | None:
    """EMR logs its calls with user agent "elasticmapreduce.aws.internal" (shared/seeds 003)."""
    if agent and agent.endswith((".aws.internal", ".amazonaws.com")) and " " not in agent:
        return agent
    return None


def invoking_service(event: Event) -> str | None:
    return event.invoked_by or _service_agent(event.user_agent) or _service_agent(event.source_ip)
