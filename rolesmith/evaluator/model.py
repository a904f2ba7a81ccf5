"""Value objects of the local IAM policy evaluator: a request, the policies in force, the decision.

Other stages (explain, sandbox, converge, tighten) code against these types, so fields are only ever
added (with defaults), never renamed or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from rolesmith.errors import RolesmithError

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Layer names used in ``Decision.layer``, ``Decision.layers`` and ``MatchedStatement.layer``.
LAYERS = ("scp", "rcp", "identity", "resource", "boundary", "session", "key-policy", "trust-policy")

DecisionValue = Literal["Allowed", "ImplicitlyDenied", "ExplicitlyDenied"]


class PolicyError(RolesmithError):
    """A malformed policy or an unknown condition operator: never evaluated as a silent allow."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class NamedPolicy:
    """A policy document with the name it is reported under (file name, managed policy name, Sid source)."""

    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """One authorization request.

    ``principal`` is the caller: a role ARN, a user ARN or an assumed-role session ARN
    (``arn:aws:sts::111122223333:assumed-role/Role/session``). ``resource_account`` is the owner of
    the resource; ``None`` means the principal's own account. ``context`` holds condition keys as
    sent by AWS (lists for multivalued keys); key names are matched case-insensitively.
    ``session_arn`` is the assumed-role session ARN when ``principal`` names the role itself.
    """

    principal: str
    principal_account: str
    action: str
    resource: str
    resource_account: str | None = None
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    session_arn: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Policies:
    """The policies in force for one request.

    ``scps``/``rcps``: one tuple of policies per OU level, root first; an empty tuple means the
    account is not in AWS Organizations (no SCP/RCP layer at all). ``resource_kind`` names what
    ``resource`` is (``"s3-bucket"``, ``"kms-key"``, ``"role-trust"``, ``"sqs-queue"``, ...):
    KMS key policies and role trust policies must allow by themselves. ``management_account``: the
    caller's account is the organization's management account (SCPs do not apply);
    ``service_linked_role``: the caller is a service-linked role (neither SCPs nor RCPs apply).
    """

    identity: tuple[NamedPolicy, ...] = ()
    boundary: NamedPolicy | None = None
    session: NamedPolicy | None = None
    scps: tuple[tuple[NamedPolicy, ...], ...] = ()
    rcps: tuple[tuple[NamedPolicy, ...], ...] = ()
    resource: NamedPolicy | None = None
    resource_kind: str | None = None
    service_linked_role: bool = False
    management_account: bool = False
    # The resource's account is the organization's management account: RCPs do not apply there.
    resource_management_account: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class MatchedStatement:
    """A statement that matched the request: the layer and policy it is in, its Sid and index."""

    layer: str
    policy: str
    sid: str | None
    index: int
    effect: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The outcome, the layer that decided, the deciding statements and each layer's own outcome.

    ``layers`` maps a layer name to ``"allow"``, ``"deny"``, ``"implicit-deny"`` or ``"absent"``.
    """

    decision: DecisionValue
    layer: str | None
    statements: tuple[MatchedStatement, ...]
    layers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def allowed(self) -> bool:
        return self.decision == "Allowed"
