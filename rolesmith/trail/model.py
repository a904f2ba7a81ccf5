"""Normalised CloudTrail events: the value objects every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

PrincipalKind = Literal["role", "user", "root", "federated", "service", "account", "unknown"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who made a call, reduced to the identity policies attach to.

    For an assumed-role session ``arn`` is the *role* ARN (``arn:aws:iam::123:role/path/name``) and
    ``session`` keeps the session name; for a service principal ``arn`` is the service name
    (``s3.amazonaws.com``) and ``account`` is None.
    """

    arn: str
    kind: PrincipalKind
    account: str | None
    partition: str = "aws"
    session: str | None = None
    session_arn: str | None = None
    access_key_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One CloudTrail record, normalised.

    ``request``/``response``/``additional`` are the raw ``requestParameters`` /
    ``responseElements`` / ``additionalEventData`` objects (``{}`` when null). ``origin`` names
    where the record came from (``path#index``) so every error and finding can point at it.
    """

    event_id: str | None
    request_id: str | None
    source: str  # eventSource, e.g. "s3.amazonaws.com"
    name: str  # eventName, e.g. "PutObject"
    time: float | None  # POSIX seconds; None where the record had no eventTime
    region: str | None
    account: str | None  # recipientAccountId: the account whose trail logged it
    partition: str
    principal: Principal | None  # None: unattributable
    invoked_by: str | None  # "s3.amazonaws.com", "AWS Internal", … when a service made the call
    source_ip: str | None
    user_agent: str | None
    error_code: str | None
    error_message: str | None
    read_only: bool | None
    event_type: str | None  # AwsApiCall, AwsServiceEvent, AwsConsoleSignIn, …
    request: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    additional: Mapping[str, Any] = field(default_factory=dict)
    resources: tuple[Mapping[str, Any], ...] = ()
    shared_event_id: str | None = None
    origin: str = ""
    # userIdentity.type as logged ("AssumedRole", "AWSAccount", …) and userIdentity.accountId: kept so
    # an unattributable event (principal None) still says which account called, never who.
    identity_type: str | None = None
    caller_account: str | None = None

    @property
    def denied(self) -> bool:
        """True for authorisation failures: these are input for ``explain``, never granted uses."""
        return is_access_denied(self.error_code)


_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "Client.UnauthorizedOperation",
        "UnauthorizedOperation",
        "Client.AccessDenied",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnauthorizedAccess",
        "Unauthorized",
        "AllAccessDisabled",
        # A VPC endpoint policy refused the call (CloudTrail network activity events, "VpceAccessDenied").
        "VpceAccessDenied",
    }
)


def is_access_denied(error_code: str | None) -> bool:
    return error_code is not None and error_code in _DENIED_CODES
