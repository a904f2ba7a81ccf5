"""Value objects of ``rolesmith explain``: one ``Explanation`` per denied event, each with machine-usable ``Fix``es.

``converge`` applies ``Fix``es without a person in the loop, so every field here is part of the documented
``--format json`` output (README, "rolesmith explain") and is only ever added to, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from rolesmith.evaluator.model import MatchedStatement, Request

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Stable reason codes (README documents each). A reason names the layer that refused; ``hint`` refines it.
REASONS = (
    "MISSING_IDENTITY_ALLOW",
    "MISSING_RESOURCE_ALLOW",
    "MISSING_BOTH",
    "MISSING_KEY_POLICY_ALLOW",
    "INDIRECT_KMS",
    "EXPLICIT_DENY_IDENTITY",
    "EXPLICIT_DENY_RESOURCE",
    "EXPLICIT_DENY_SCP",
    "EXPLICIT_DENY_RCP",
    "EXPLICIT_DENY_BOUNDARY",
    "EXPLICIT_DENY_SESSION",
    "EXPLICIT_DENY_VPC_ENDPOINT",
    "MISSING_SCP_ALLOW",
    "MISSING_RCP_ALLOW",
    "MISSING_BOUNDARY_ALLOW",
    "MISSING_SESSION_ALLOW",
    "MISSING_VPC_ENDPOINT_ALLOW",
    "TRUST_POLICY",
    "OBJECT_OWNERSHIP",
    "UNKNOWN",
)

# How the reason was established: evaluating policies beats reading AWS's message beats a trail pattern.
Basis = Literal["policies", "message", "decoded-message", "trail", "none"]

FixOp = Literal["add-statements", "change-statement", "put-ownership-controls", "use-canned-acl"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Fix:
    """One change that removes (part of) a denial.

    ``op``:
    - ``add-statements``: merge ``document["Statement"]`` into the policy of ``layer`` attached to
      ``target`` (an inline identity policy of a role/user, a bucket/key/queue policy, a trust policy,
      an SCP, a boundary, the session policy passed to AssumeRole).
    - ``change-statement``: the Deny ``statement`` (``index``/``sid`` in ``policy``) refuses the request;
      narrow it or add an exception. ``statement`` is None when only AWS's message named the policy.
    - ``put-ownership-controls``: ``document`` is the S3 ``OwnershipControls`` for bucket ``target``.
    - ``use-canned-acl``: the uploader ``target`` must send ``document["x-amz-acl"]`` on its uploads.
    ``target`` is None only when nothing in the event or policies names it (then ``Explanation.missing`` says so).
    """

    op: FixOp
    layer: str
    target: str | None
    target_kind: str
    summary: str
    document: Mapping[str, Any] | None = None
    policy: str | None = None
    statement: Mapping[str, Any] | None = None
    index: int | None = None
    sid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": self.op,
            "layer": self.layer,
            "target": self.target,
            "target_kind": self.target_kind,
            "summary": self.summary,
        }
        if self.document is not None:
            out["document"] = _plain(self.document)
        if self.op == "change-statement":
            out["policy"] = self.policy
            out["statement"] = _plain(self.statement) if self.statement is not None else None
            out["index"] = self.index
            out["sid"] = self.sid
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Explanation:
    """Why one denied event was refused, and the smallest set of fixes.

    ``request`` is what was evaluated (None when not even the action could be told). ``statements``
    are the deciding statements (the Deny that matched, or the Allows that failed only on a condition).
    ``missing`` lists what would be needed to decide (always non-empty for UNKNOWN).
    """

    event_id: str | None
    origin: str
    event: str  # "<service>:<eventName>" as logged, e.g. "s3:PutObject"
    time: float | None
    principal: str | None
    request: Request | None
    reason: str
    basis: Basis
    layer: str | None
    summary: str
    statements: tuple[MatchedStatement, ...] = ()
    fixes: tuple[Fix, ...] = ()
    missing: tuple[str, ...] = ()
    hint: str | None = None
    notes: tuple[str, ...] = ()
    error_message: str | None = None
    caller: str | None = None  # when no IAM principal is named: userIdentity type and account as logged

    def to_dict(self) -> dict[str, Any]:
        req = self.request
        return {
            "event_id": self.event_id,
            "origin": self.origin,
            "event": self.event,
            "time": None if self.time is None else _iso(self.time),
            "principal": self.principal,
            "caller": self.caller,
            "request": None
            if req is None
            else {
                "principal": req.principal,
                "principal_account": req.principal_account,
                "action": req.action,
                "resource": req.resource,
                "resource_account": req.resource_account,
                "context": _plain(req.context),
            },
            "reason": self.reason,
            "basis": self.basis,
            "layer": self.layer,
            "hint": self.hint,
            "summary": self.summary,
            "statements": [
                {"layer": s.layer, "policy": s.policy, "sid": s.sid, "index": s.index, "effect": s.effect}
                for s in self.statements
            ],
            "fixes": [f.to_dict() for f in self.fixes],
            "missing": list(self.missing),
            "notes": list(self.notes),
            "error_message": self.error_message,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ExplainResult:
    explanations: tuple[Explanation, ...]
    events_read: int = 0
    skipped: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    ingest: tuple[str, ...] = ()  # the trail reader's summary lines

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for e in self.explanations:
            counts[e.reason] = counts.get(e.reason, 0) + 1
        return {
            "events_read": self.events_read,
            "denied": len(self.explanations),
            "reasons": dict(sorted(counts.items())),
            "explanations": [e.to_dict() for e in self.explanations],
        }

    def report_lines(self) -> list[str]:
        return [*self.ingest, f"explain: {len(self.explanations)} denied events explained"]


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """Mappings/tuples (possibly read-only proxies) → plain JSON types, so json.dumps never fails."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
