"""The policy set rolesmith writes: value objects shared by build, render, explain, converge, tighten."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Document = dict[str, Any]  # an IAM policy document: {"Version": "2012-10-17", "Statement": [...]}


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """Something the user should know: ``code`` is UPPER_SNAKE and stable, ``events`` are event ids."""

    code: str
    message: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class IdentityPolicy:
    principal: str  # role / user ARN the policy attaches to
    policy: Document


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourcePolicy:
    resource: str  # bucket / key / queue ARN
    kind: str  # "s3-bucket" | "kms-key" | …
    policy: Document
    account: str | None = None  # the resource owner's account


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustPolicy:
    role: str
    policy: Document


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicySet:
    identity_policies: tuple[IdentityPolicy, ...] = ()
    resource_policies: tuple[ResourcePolicy, ...] = ()
    trust_policies: tuple[TrustPolicy, ...] = ()
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The documented ``--format json`` schema (README, "JSON output"). Keep it stable."""
        return {
            "identity_policies": [{"principal": p.principal, "policy": p.policy} for p in self.identity_policies],
            "resource_policies": [
                {"resource": p.resource, "kind": p.kind, "policy": p.policy} for p in self.resource_policies
            ],
            "trust_policies": [{"role": p.role, "policy": p.policy} for p in self.trust_policies],
            "findings": [{"code": f.code, "message": f.message, "events": list(f.events)} for f in self.findings],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildOptions:
    """Options of ``rolesmith build`` (and of every command that ends by building policies)."""

    principals: tuple[str, ...] = ()  # only these principals (ARNs); empty: all attributable ones
    generalize: Literal["safe", "none"] = "safe"
    include_denied: bool = False  # grant what was denied too (the workload needed it)
    account_of: Mapping[str, str] = field(default_factory=dict)  # bucket name -> owning account
    key_admins: tuple[str, ...] = ()  # key-administration principals; default: each key account's root
    skip_bad: bool = False
