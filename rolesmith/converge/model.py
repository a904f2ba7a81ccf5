"""Value objects of ``rolesmith converge``: options, one report per run, the result.

``RunReport.to_dict``/``ConvergeResult.to_dict`` are the documented ``--format json`` output
(README, "rolesmith converge"): fields are only ever added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.policies.model import BuildOptions, PolicySet

StartFrom = Literal["empty", "recording", "current"]
# Why the loop ended; README documents each.
StopReason = Literal["converged", "max-runs", "resource-owner", "guardrail", "no-fix", "interrupted", "error"]
INLINE_NAME = "rolesmith-converge"


class ConvergeError(RolesmithError):
    """Bad options or a role/scenario converge cannot work on."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class ConvergeOptions:
    role: str  # sandbox: ACCOUNT/NAME, a bare name or the ARN; AWS: role name or ARN
    sandbox: bool = False
    scenario: Path | None = None
    profile: str | None = None
    start_from: StartFrom = "empty"
    recording: Path | None = None  # with start_from="recording"
    max_runs: int = 10
    apply_resource_policies: bool = False
    keep: bool = False  # real AWS: leave the converged policies in place (no restore)
    out_dir: Path = Path("out")
    fmt: str = "json"  # final policy set: json | cloudformation | cloudformation-json (as build)
    build: BuildOptions = field(default_factory=BuildOptions)
    env: Mapping[str, str] | None = None  # the child's base environment; default os.environ
    cwd: Path | None = None
    anticipate: bool = True  # grant the indirect uses a denied call implies (False: only what AWS names; bench)
    capture: str | None = None  # record's capture method per run; default: hook on the sandbox, auto on AWS
    # Real AWS seams: the boto3 session (tests pass one reaching moto), how long to wait for IAM to
    # show a change, the poll interval, and sleep/clock (tests make them instant).
    session: Any = None
    propagation_timeout: float = 120.0
    poll_interval: float = 2.0
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] | None = None
    progress: Callable[[str], None] | None = None  # one line per step, for the CLI's stderr


@dataclass(frozen=True, kw_only=True, slots=True)
class Denial:
    event: str  # "s3:PutObject"
    principal: str | None
    resource: str | None
    reason: str  # explain's reason code
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "principal": self.principal, "resource": self.resource,
                "reason": self.reason, "summary": self.summary}


@dataclass(frozen=True, kw_only=True, slots=True)
class AppliedFix:
    """A change converge made (``applied``) or could not make (``applied`` False: handed off / refused).

    ``layer``: identity | resource | key-policy | trust-policy | ownership | scp | boundary | …;
    ``source``: ``explain`` (from a denial's explanation) or ``anticipated`` (an indirect use the
    next run would need, granted before it fails)."""

    layer: str
    target: str | None
    op: str
    summary: str
    statements: tuple[Mapping[str, Any], ...] = ()
    document: Mapping[str, Any] | None = None
    applied: bool = False
    source: str = "explain"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "target": self.target, "op": self.op, "summary": self.summary,
                               "applied": self.applied, "source": self.source,
                               "statements": [dict(s) for s in self.statements]}
        if self.document is not None:
            out["document"] = dict(self.document)
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class RunReport:
    number: int
    exit_code: int
    denials: tuple[Denial, ...]
    fixes: tuple[AppliedFix, ...]
    seconds: float  # wall time of the run, explain and apply (and the wait for IAM, on AWS)
    trail: Path | None = None  # the run's records (CloudTrail JSON lines)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.denials:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.number, "exit_code": self.exit_code, "denials": [d.to_dict() for d in self.denials],
                "reasons": self.reasons(), "fixes": [f.to_dict() for f in self.fixes],
                "seconds": round(self.seconds, 3), "trail": str(self.trail) if self.trail else None}


@dataclass(frozen=True, kw_only=True, slots=True)
class ConvergeResult:
    role: str  # the role's (or user's) ARN
    runs: tuple[RunReport, ...]
    policies: PolicySet
    stopped_reason: StopReason
    message: str  # one line saying why it stopped and what to do next
    handoff: tuple[AppliedFix, ...] = ()  # resource-policy statements for the resource's owner
    outputs: tuple[Path, ...] = ()
    restored: bool = False  # real AWS: the role's original policies were put back

    @property
    def distinct_denials(self) -> int:
        return len({(d.event, d.principal, d.resource) for r in self.runs for d in r.denials})

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "stopped_reason": self.stopped_reason, "message": self.message,
                "runs": [r.to_dict() for r in self.runs], "distinct_denials": self.distinct_denials,
                "handoff": [f.to_dict() for f in self.handoff], "restored": self.restored,
                "outputs": [str(p) for p in self.outputs], "policies": self.policies.to_dict()}
