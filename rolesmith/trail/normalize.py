"""One raw CloudTrail record (a decoded JSON object) → one ``Event``.

The rules follow the CloudTrail record reference (shared/reference/cloudtrail/
ct-ug__cloudtrail-event-reference-record-contents.md, https://docs.aws.amazon.com/awscloudtrail/latest/
userguide/cloudtrail-event-reference-record-contents.html) and the ``userIdentity`` reference
(ct-ug__cloudtrail-event-reference-user-identity.md, …/cloudtrail-event-reference-user-identity.html):

- ``AssumedRole``: the policy attaches to the role, so ``arn`` is ``sessionContext.sessionIssuer.arn``
  (which keeps the role path); without an issuer it is rebuilt from the ``assumed-role/ROLE/SESSION``
  ARN (the path is not in that ARN, so it is lost). The session name and ARN are kept.
- ``IAMUser`` → the user ARN; ``Root`` → ``arn:PARTITION:iam::ACCOUNT:root``; ``FederatedUser`` (a
  GetFederationToken session) → the IAM user (or root) its ``sessionIssuer`` names, the
  ``federated-user/NAME`` ARN kept as the session; without an issuer, and for ``SAMLUser`` /
  ``WebIdentityUser``, kind "federated"; ``AWSService`` → kind "service" named by ``invokedBy``.
- ``AWSAccount`` is the copy of a cross-account call logged in the *resource* account: it names only
  the calling account, so it is not a principal (the reader de-duplicates it against the caller's
  copy). Missing or unknown identities give ``principal=None``: unattributable, never guessed.
- The partition comes from the ARNs in the record (aws, aws-cn, aws-us-gov, …) and is never
  rewritten; without any ARN it is derived from the region's documented prefix.

This function is the hot path of every command: it avoids regexes, builds no intermediate objects
it does not return, and parses the one timestamp form CloudTrail writes without ``datetime``.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import datetime, timezone
from functools import cache, lru_cache
from typing import Any, Callable, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.trail.model import Event, Principal
from rolesmith.trail.secrets import SECRET_FIELDS

__all__ = ["BadRecord", "normalize", "parse_time"]


class BadRecord(RolesmithError):
    """A record that cannot become an ``Event``. ``kind`` is a stable slug the ingest report counts by."""

    exit_code = 2

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind
        self.problem = problem


# Identity types CloudTrail documents for federation: they have no IAM entity a policy attaches to.
_FEDERATED = frozenset({"FederatedUser", "SAMLUser", "WebIdentityUser"})


@lru_cache(maxsize=8192)
def _hour_base(prefix: str) -> float:
    """POSIX seconds of ``YYYY-MM-DDTHH`` (UTC); cached because a trail spans few distinct hours."""
    return datetime.fromisoformat(prefix + ":00:00+00:00").timestamp()


def parse_time(value: Any) -> float:
    """CloudTrail ``eventTime`` → POSIX seconds. Raises ``ValueError`` for anything unparseable.

    The fast path covers the documented form ``2023-07-10T11:42:36Z``; other ISO 8601 forms
    (fractions, offsets: Logstash ``@timestamp``, LookupEvents ``EventTime``) and epoch numbers go
    through ``datetime``.
    """
    if type(value) is str:
        if len(value) == 20 and value[19] == "Z" and value[13] == ":" and value[16] == ":":
            minute, second = value[14:16], value[17:19]
            if minute.isdigit() and second.isdigit() and minute < "60" and second < "61":
                return _hour_base(value[:13]) + int(minute) * 60 + int(second)
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:  # CloudTrail times are UTC by definition
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):  # boto3 LookupEvents output kept as Python objects
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"not a timestamp: {value!r}")


@cache
def _event_factory() -> Callable[..., Event]:
    """A constructor for ``Event`` that skips the frozen dataclass ``__init__``.

    That ``__init__`` routes each of ~30 fields through ``object.__setattr__`` and default
    factories, which costs as much as decoding the record; writing the slots through their
    descriptors is half the cost. The function is generated from ``fields(Event)`` (as dataclasses
    generate ``__init__``) so a field added to the model later gets its default here too.
    """
    names, lines = [], []
    namespace: dict[str, Any] = {"_new": object.__new__, "_Event": Event}
    for f in fields(Event):
        namespace[f"_set_{f.name}"] = getattr(Event, f.name).__set__
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            names.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            names.append(f"{f.name}=None")
            lines.append(f" if {f.name} is None: {f.name} = _factory_{f.name}()")
        else:
            names.append(f.name)
        lines.append(f" _set_{f.name}(ev, {f.name})")
    source = f"def make(*, {', '.join(names)}):\n ev = _new(_Event)\n" + "\n".join(lines) + "\n return ev\n"
    exec(source, namespace)  # noqa: S102 - generated from the dataclass fields only
    return namespace["make"]  # type: ignore[no-any-return]


def _partition_of_region(region: str | None) -> str:
    # Region prefixes per partition: https://docs.aws.amazon.com/general/latest/gr/rande.html
    if region:
        if region.startswith("cn-"):
            return "aws-cn"
        if region.startswith("us-gov-"):
            return "aws-us-gov"
        if region.startswith("us-iso-"):
            return "aws-iso"
        if region.startswith("us-isob-"):
            return "aws-iso-b"
    return "aws"


def _arn_parts(arn: Any) -> list[str] | None:
    if type(arn) is str and arn.startswith("arn:"):
        parts = arn.split(":", 5)
        if len(parts) == 6:
            return parts
    return None


def _str(value: Any) -> str | None:
    """A non-empty string or None (CloudTrail writes "" where it hides a value, e.g. accessKeyId)."""
    return value if type(value) is str and value else None


_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}


def _not_text(field: str, value: Any) -> BadRecord:
    """The record reference documents ``field`` as a string; later stages compare and hash it as one."""
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    return BadRecord("bad-field", f"{field} is {kind}, not a string")


def _account_id(value: Any) -> str | None:
    """An account id as CloudTrail writes it (a 12-digit string), or None. Exports that typed it as a
    number (SIEM tools do) lose its leading zeros, which the 12-digit form restores exactly; anything
    else names no account."""
    if type(value) is str:
        return value or None
    if type(value) is int and 0 <= value < 10**12:
        return f"{value:012d}"
    return None


@lru_cache(maxsize=4096)
def _principal(
    kind: Any,
    arn: Any,
    issuer_arn: Any,
    account_id: Any,
    access_key: Any,
    principal_id: Any,
    user_name: Any,
    provider: Any,
    invoked_by: Any,
    region: Any,
) -> Principal | None:
    """The principal of one ``userIdentity`` (its scalar fields), cached: a trail repeats few identities.

    A field that is not a string (an object, array or number where the userIdentity reference
    documents a string) names nothing and is read as absent, so the rules go on with the rest."""
    args = (kind, arn, issuer_arn, account_id, access_key, principal_id, user_name, provider, invoked_by, region)
    for value in args:
        if value is not None and type(value) is not str:
            return _principal(*(v if type(v) is str else None for v in args))
    key = _str(access_key)
    if kind == "AssumedRole":
        role_arn = issuer_arn
        session_arn = _str(arn)
        parts = _arn_parts(session_arn)
        session = None
        role_name = None
        if parts is not None and parts[5].startswith("assumed-role/"):
            role_name, _, session = parts[5][13:].partition("/")
        if session is None:
            pid = principal_id
            if type(pid) is str and ":" in pid:
                session = pid.split(":", 1)[1]
        role_parts = _arn_parts(role_arn)
        if role_parts is not None:
            return Principal(
                arn=role_arn,
                kind="role",
                account=role_parts[4] or _str(account_id),
                partition=role_parts[1],
                session=session or None,
                session_arn=session_arn,
                access_key_id=key,
            )
        if parts is None or not role_name:
            return None
        partition, account = parts[1], parts[4] or _str(account_id)
        if not account:
            return None
        return Principal(
            arn=f"arn:{partition}:iam::{account}:role/{role_name}",
            kind="role",
            account=account,
            partition=partition,
            session=session or None,
            session_arn=session_arn,
            access_key_id=key,
        )
    if kind == "IAMUser" or kind == "Role":
        parts = _arn_parts(arn)
        if parts is not None:
            return Principal(
                arn=arn,
                kind="user" if kind == "IAMUser" else "role",
                account=parts[4] or _str(account_id),
                partition=parts[1],
                access_key_id=key,
            )
        account, name = _str(account_id), _str(user_name)
        # A failed console sign-in with a mistyped name logs userName HIDDEN_DUE_TO_SECURITY_REASONS
        # (userIdentity reference, "userName"): that names nobody.
        if kind == "IAMUser" and account and name and name != "HIDDEN_DUE_TO_SECURITY_REASONS":
            partition = _partition_of_region(region)
            return Principal(
                arn=f"arn:{partition}:iam::{account}:user/{name}",
                kind="user",
                account=account,
                partition=partition,
                access_key_id=key,
            )
        return None
    if kind == "Root":
        parts = _arn_parts(arn)
        account = (parts[4] if parts is not None else None) or _str(account_id)
        if not account:
            return None
        partition = parts[1] if parts is not None else _partition_of_region(region)
        return Principal(
            arn=f"arn:{partition}:iam::{account}:root",
            kind="root",
            account=account,
            partition=partition,
            access_key_id=key,
        )
    if kind in _FEDERATED:
        arn = _str(arn)
        parts = _arn_parts(arn)
        issuer = _arn_parts(issuer_arn) if kind == "FederatedUser" else None
        if issuer is not None and (issuer[5].startswith("user/") or issuer[5] == "root"):
            # A GetFederationToken session acts with the permissions of the IAM user (or root) that
            # called it, intersected with the session policy passed to the call; sessionIssuer names
            # that caller (userIdentity reference, "FederatedUser"; IAM User Guide,
            # id_credentials_temp_control-access_getfederationtoken). The policy attaches to the user.
            session = parts[5][15:] if parts is not None and parts[5].startswith("federated-user/") else None
            return Principal(
                arn=issuer_arn if issuer[5] != "root" else f"arn:{issuer[1]}:iam::{issuer[4]}:root",
                kind="user" if issuer[5] != "root" else "root",
                account=issuer[4] or _str(account_id),
                partition=issuer[1],
                session=session,
                session_arn=arn if parts is not None else None,
                access_key_id=key,
            )
        name = arn or _str(principal_id)
        if name is None:
            provider, user = _str(provider), _str(user_name)
            name = f"{provider}:{user}" if provider and user else None
        if name is None:
            return None
        session = None
        if parts is not None and parts[5].startswith("federated-user/"):
            session = parts[5][15:]
        return Principal(
            arn=name,
            kind="federated",
            account=(parts[4] if parts is not None else None) or _str(account_id),
            partition=parts[1] if parts is not None else _partition_of_region(region),
            session=session,
            session_arn=arn if parts is not None else None,
            access_key_id=key,
        )
    if kind == "AWSService":
        service = _str(invoked_by)
        if service is None:
            return None
        return Principal(arn=service, kind="service", account=None, partition=_partition_of_region(region))
    # AWSAccount (resource-account copy), Directory, Unknown, IdentityCenterUser, missing: no
    # IAM entity we can name from the record alone.
    return None


def _scrub(response: dict[str, Any]) -> dict[str, Any]:
    creds = response.get("credentials")
    if type(creds) is dict and not SECRET_FIELDS.isdisjoint(creds):
        response = dict(response)
        response["credentials"] = {k: v for k, v in creds.items() if k not in SECRET_FIELDS}
    return response


def normalize(raw: Mapping[str, Any], origin: str, *, allow_missing_time: bool = False) -> Event:
    """Turn one decoded CloudTrail record into an ``Event``.

    Raises ``BadRecord`` (``kind``: not-an-object, missing-eventSource, missing-eventName,
    missing-eventTime, bad-eventTime, not-an-event) for a record no later stage can use. A record
    without ``eventTime`` is usable (``time=None``) only with ``allow_missing_time``: the caller
    then reports it as a warning. ``requestParameters`` / ``responseElements`` of ``null`` are legal
    (the record reference documents them as absent for reads) and become ``{}``. ``account`` is
    ``recipientAccountId``, or the caller's account where a (documentation) record lacks it.
    """
    if type(raw) is not dict:
        if not isinstance(raw, Mapping):
            raise BadRecord("not-an-object", f"expected a JSON object, got {type(raw).__name__}")
        raw = dict(raw)
    get = raw.get
    source = get("eventSource")
    name = get("eventName")
    if type(source) is not str or not source:
        if isinstance(source, list):
            raise BadRecord(
                "not-an-event", "eventSource is a list: an EventBridge event pattern, not a CloudTrail record"
            )
        raise BadRecord("missing-eventSource", "no eventSource")
    if type(name) is not str or not name:
        raise BadRecord("missing-eventName", "no eventName")

    when = get("eventTime")
    if when is None:
        # logstash-codec-cloudtrail moves eventTime into @timestamp (event['@timestamp'] =
        # event.delete('eventTime')), so a Logstash-flattened record still carries the event time.
        when = get("@timestamp")
    if when is None:
        if not allow_missing_time:
            raise BadRecord("missing-eventTime", "no eventTime")
        time = None
    else:
        try:
            time = parse_time(when)
        except (ValueError, TypeError, OverflowError):
            raise BadRecord("bad-eventTime", f"eventTime {str(when)[:40]!r} is not an ISO 8601 time") from None

    region = get("awsRegion")
    if type(region) is not str and region is not None:  # ARNs are built from it
        raise _not_text("awsRegion", region)
    ui = get("userIdentity")
    if type(ui) is dict:
        uget = ui.get
        identity_type = uget("type")
        caller_account = uget("accountId") or None
        if type(caller_account) is not str and caller_account is not None:
            caller_account = _account_id(caller_account)
        invoked_by = uget("invokedBy")
        issuer_arn = None
        if identity_type == "AssumedRole" or identity_type == "FederatedUser":
            context = uget("sessionContext")
            if type(context) is dict:
                issuer = context.get("sessionIssuer")
                if type(issuer) is dict:
                    issuer_arn = issuer.get("arn")
        args = (
            identity_type,
            uget("arn"),
            issuer_arn,
            caller_account,
            uget("accessKeyId"),
            uget("principalId"),
            uget("userName"),
            uget("identityProvider"),
            invoked_by,
            region,
        )
        try:
            principal = _principal(*args)
        except TypeError:  # an unhashable identity field (an object or array): read as absent
            principal = _principal.__wrapped__(*args)
        if type(identity_type) is not str:
            identity_type = None
        if type(invoked_by) is not str:
            invoked_by = None
    else:
        principal = identity_type = caller_account = invoked_by = None
    source_ip = get("sourceIPAddress")
    if invoked_by is None and type(source_ip) is str and (
        source_ip == "AWS Internal" or source_ip.endswith(".amazonaws.com")
    ):
        invoked_by = source_ip

    if principal is not None:
        partition = principal.partition
    else:
        partition = _partition_of_region(region)
        resources = get("resources")
        if type(resources) is list and resources and type(resources[0]) is dict:
            parts = _arn_parts(resources[0].get("ARN"))
            if parts is not None and parts[1]:
                partition = parts[1]

    request = get("requestParameters")
    response = get("responseElements")
    additional = get("additionalEventData")
    resources = get("resources")
    if type(resources) is list:
        resources = tuple(resources)
        for item in resources:
            if type(item) is not dict:  # only objects describe a resource
                resources = tuple(r for r in resources if type(r) is dict)
                break
    else:
        resources = ()
    event_id, request_id, shared_id = get("eventID"), get("requestID"), get("sharedEventID")
    error_code, event_type = get("errorCode"), get("eventType")
    user_agent, error_message = get("userAgent"), get("errorMessage")
    # Later stages hash, compare and concatenate these as strings: a record that has anything else
    # there is malformed, and says so here rather than as a traceback further on.
    if (
        (type(event_id) is not str and event_id is not None)
        or (type(request_id) is not str and request_id is not None)
        or (type(shared_id) is not str and shared_id is not None)
        or (type(error_code) is not str and error_code is not None)
        or (type(event_type) is not str and event_type is not None)
        or (type(source_ip) is not str and source_ip is not None)
        or (type(user_agent) is not str and user_agent is not None)
        or (type(error_message) is not str and error_message is not None)
    ):  # one test on the hot path; which field it was only when one is wrong
        for field, value in (("eventID", event_id), ("requestID", request_id), ("sharedEventID", shared_id),
                             ("errorCode", error_code), ("eventType", event_type), ("sourceIPAddress", source_ip),
                             ("userAgent", user_agent), ("errorMessage", error_message)):
            if value is not None and type(value) is not str:
                raise _not_text(field, value)
    account = get("recipientAccountId")
    if type(account) is not str and account is not None:
        account = _account_id(account)
    read_only = get("readOnly")
    if read_only is not None and type(read_only) is not bool:  # some exports write "true"/"false"
        read_only = str(read_only).lower() == "true"
    return _event_factory()(
        event_id=event_id,
        request_id=request_id,
        source=source,
        name=name,
        time=time,
        region=region,
        account=account or caller_account,
        partition=partition,
        principal=principal,
        invoked_by=invoked_by,
        source_ip=source_ip,
        user_agent=user_agent,
        error_code=error_code or None,
        error_message=error_message,
        read_only=read_only,
        event_type=event_type,
        request=request if type(request) is dict else {},
        response=(_scrub(response) if "credentials" in response else response) if type(response) is dict else {},
        additional=additional if type(additional) is dict else {},
        resources=resources,
        shared_event_id=shared_id,
        origin=origin,
        identity_type=identity_type,
        caller_account=caller_account,
    )
