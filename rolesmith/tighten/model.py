"""Value objects of ``rolesmith tighten``: what the role has, what it used, what replaces it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rolesmith.policies.model import Document, Finding, PolicySet

# "managed": read offline, owner (AWS or customer) unknown
PolicyKind = Literal["inline", "aws-managed", "customer-managed", "managed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CurrentPolicy:
    """One policy in force on the role: an inline policy or an attached managed policy's default version."""

    name: str
    kind: PolicyKind
    document: Document
    arn: str | None = None  # managed policies only
    version_id: str | None = None  # default version of a managed policy


@dataclass(frozen=True, kw_only=True, slots=True)
class CurrentRole:
    arn: str
    name: str
    account: str | None
    policies: tuple[CurrentPolicy, ...] = ()
    boundary: CurrentPolicy | None = None
    trust: Document | None = None
    source: str = "iam"  # "iam" (read with boto3) or the --current-policies directory


@dataclass(frozen=True, kw_only=True, slots=True)
class UsedCall:
    """One (action, resource) the workload exercised, with where the evidence came from."""

    action: str
    resource: str  # ARN, or "*" where the action has no resource type or the source gives none
    source: Literal["trail", "cloudtrail", "access-advisor"]
    granularity: Literal["call", "action", "service"] = "call"
    conditions: tuple[tuple[str, str, str], ...] = ()
    via: str | None = None
    last_used: str | None = None  # ISO time, Access Advisor only


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    calls: tuple[UsedCall, ...] = ()  # trail / CloudTrail evidence: action + resource
    advisor: tuple[UsedCall, ...] = ()  # Access Advisor: action or service level, no resource
    sources: tuple[str, ...] = ()  # human-readable list of what was read
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceSummary:
    """Per service: how much of what the role may do it actually did."""

    service: str
    granted: int  # actions granted (wildcards expanded against the dataset)
    used: tuple[str, ...]  # granted actions used
    used_not_granted: tuple[str, ...] = ()  # used, but no identity statement grants it (resource policy?)
    resources_granted: tuple[str, ...] = ()  # resource patterns of the statements granting this service
    resources_used: tuple[str, ...] = ()
    evidence: Literal["call", "action", "service", "none"] = "none"  # finest evidence for this service


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskyGrant:
    """An escalation-capable or data-access grant of the current policies and what becomes of it."""

    action: str
    resources: tuple[str, ...]  # what the current policies grant it on
    policy: str  # name of the (first) current policy that grants it
    why: str
    conditional: bool = False  # every grant of it carries a Condition
    # removed: not granted any more; narrowed: only on named resources; defused: still granted, but not
    # the companion grant that made it risky (RunInstances without PassRole); kept: still on everything.
    status: Literal["removed", "narrowed", "defused", "kept"] = "removed"
    now: tuple[str, ...] = ()  # the replacement's resources for it


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckedCall:
    action: str
    resource: str
    decision: str
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Verification:
    checked: int = 0
    failures: tuple[CheckedCall, ...] = ()
    method: str = "evaluator"

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True, kw_only=True, slots=True)
class TightenOptions:
    trails: tuple[Path, ...] = ()
    cloudtrail: bool = False
    days: int = 90
    cloudtrail_bucket: str | None = None
    access_advisor: bool = False
    current_policies: Path | None = None
    generalize: Literal["safe", "none"] = "safe"
    skip_bad: bool = False
    # A boto3.Session (or anything with .client(name)); None: boto3's default session when AWS is read.
    session: Any = field(default=None, compare=False, repr=False)
    sleep: Any = field(default=None, compare=False, repr=False)  # injectable for Access Advisor polling
    now: Any = field(default=None, compare=False, repr=False)  # datetime the --days window ends; None: now


@dataclass(frozen=True, kw_only=True, slots=True)
class TightenReport:
    role: str
    current: CurrentRole
    usage: Usage
    services: tuple[ServiceSummary, ...]
    escalation: tuple[RiskyGrant, ...]
    data_access: tuple[RiskyGrant, ...]
    replacement: PolicySet
    verification: Verification
    findings: tuple[Finding, ...] = ()

    @property
    def granted_total(self) -> int:
        return sum(s.granted for s in self.services)

    @property
    def used_total(self) -> int:
        return sum(len(s.used) for s in self.services)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``tighten --format json`` report (README, "rolesmith tighten"). Keep it stable."""
        return {
            "role": self.role,
            "source": self.current.source,
            "current_policies": [
                {"name": p.name, "kind": p.kind, "arn": p.arn, "version_id": p.version_id} for p in self.current.policies
            ],
            "boundary": self.current.boundary.arn or self.current.boundary.name if self.current.boundary else None,
            "usage_sources": list(self.usage.sources),
            "summary": {"actions_granted": self.granted_total, "actions_used": self.used_total},
            "services": [
                {
                    "service": s.service,
                    "actions_granted": s.granted,
                    "actions_used": len(s.used),
                    "used": list(s.used),
                    "used_not_granted": list(s.used_not_granted),
                    "resources_granted": list(s.resources_granted),
                    "resources_used": list(s.resources_used),
                    "evidence": s.evidence,
                }
                for s in self.services
            ],
            "escalation_grants": [_risky(g) for g in self.escalation],
            "data_access_grants": [_risky(g) for g in self.data_access],
            "replacement": self.replacement.to_dict(),
            "verification": {
                "method": self.verification.method,
                "checked": self.verification.checked,
                "ok": self.verification.ok,
                "failures": [
                    {"action": c.action, "resource": c.resource, "decision": c.decision} for c in self.verification.failures
                ],
            },
            "findings": [{"code": f.code, "message": f.message, "events": list(f.events)} for f in self.findings],
        }


def _risky(g: RiskyGrant) -> dict[str, Any]:
    return {
        "action": g.action,
        "resources": list(g.resources),
        "policy": g.policy,
        "why": g.why,
        "conditional": g.conditional,
        "status": g.status,
        "now": list(g.now),
    }
