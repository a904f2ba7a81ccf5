"""Turning (event, action) into ``Use``s: ARNs from the dataset's formats, filled from the event.

The generic rule, used for every service and by the per-service modules:

* an ARN the event itself names (``resources[]``, then ARN-valued request/response parameters) that
  matches one of the action's resource types is used as it is;
* otherwise the resource type's ARN format is filled: ``${Partition}``/``${Region}`` from the event,
  ``${Account}`` from the resource's account (``resources[].accountId``, else ``recipientAccountId``,
  else the principal's account), every other variable from the request parameters by
  case-insensitive name (``${BucketName}`` ← ``bucketName``);
* a variable that cannot be filled becomes ``*`` in its segment and the use is marked ``partial``;
* except: when every resource type of the action is optional and the event names no resource of any
  of them (nothing beyond partition/region/account could be filled), the request carried no resource
  for IAM to match, so it is evaluated against ``"*"`` ("If the resource type is optional ... you can
  choose to use one of the optional resource types"; with none in the request only ``*`` matches —
  Service Authorization Reference, "Resource types column",
  https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html).
  The use is ``"*"`` (not partial) and a note on ``Ctx.notes`` says why. A scoped ARN such as
  ``dataset/*`` would make the policy deny the real call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Mapping

from rolesmith.actions import dataset
from rolesmith.actions.dataset import ADDRESSED_SERVICES, ActionInfo
from rolesmith.actions.model import Condition, Use
from rolesmith.trail.model import Event

_VAR = re.compile(r"\$\{([^}]+)\}")

# Request-parameter names CloudTrail uses for a format variable when they differ from the variable
# (lower case). S3 data events carry the object key as ``key`` (s3-ug__cloudtrail-logging-s3-info.md).
_ALIASES: Mapping[str, tuple[str, ...]] = {
    "objectname": ("key",),
    "rolenamewithpath": ("rolename",),
    "usernamewithpath": ("username",),
    "groupnamewithpath": ("groupname",),
    "instanceprofilenamewithpath": ("instanceprofilename",),
    "policynamewithpath": ("policyname",),
    "clusterid": ("clusterid", "jobflowid"),
    "bucketname": ("bucketname", "bucket"),
    # CloudFront logs the distribution as ``id`` (UpdateDistribution2016_11_25 and later versions).
    "distributionid": ("distributionid", "id"),
}


def literal(value: str) -> str:
    """A name from the trail as it must appear in a policy ARN: ``*`` and ``?`` would be wildcards
    there and ``${`` would start a variable, so they take IAM's literal forms ``${*}``, ``${?}`` and
    ``${$}`` (IAM User Guide, reference_policies_variables, "Special characters"). An S3 key may hold
    any of them; a lone ``$`` (Lambda's ``[$LATEST]`` log streams) is literal already."""
    if "${" in value:
        value = value.replace("$", "${$}")
    if "*" in value or "?" in value:
        value = value.replace("*", "${*}").replace("?", "${?}")
    return value


_CONTEXT_VARS = frozenset({"Partition", "Region", "Account"})  # from the event, or a rule's "*" for unknown


def _has_wildcard(arn: str) -> bool:
    # ``?`` is left alone: it stands for exactly one character, as in the documented ``-??????`` of a
    # Secrets Manager secret's random suffix.
    return "*" in arn and "*" in arn.replace("${*}", "")


@lru_cache(maxsize=8192)
def format_vars(fmt: str) -> tuple[str, ...]:
    return tuple(_VAR.findall(fmt))


@lru_cache(maxsize=8192)
def _literals(fmt: str) -> tuple[str, ...]:
    """The literal text around each variable (len(vars) + 1 pieces), so filling is one join."""
    return tuple(_VAR.split(fmt)[0::2])


@lru_cache(maxsize=1024)
def _var_keys(var: str) -> tuple[str, ...]:
    low = var.lower()
    return _ALIASES.get(low, (low,))


_SCOPE = frozenset({"Partition", "Region", "Account"})


# Request-parameter names (lower case endings) that refer to a resource.
_REFERENCE_KEY_ENDINGS = (
    "id", "ids", "idlist", "identifier", "identifiers", "name", "names", "arn", "arns", "arnlist",
    "target", "targets", "resource", "resources",
)


@lru_cache(maxsize=65536)
def _type_plan(service: str, rtype: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(format, service named in the format, own variables) of a resource type, or None."""
    fmts = dataset.arn_formats(service, rtype)
    if not fmts:
        return None
    fmt = fmts[0]
    return fmt, _resource_service(fmt) or service, tuple(v for v in format_vars(fmt) if v not in _SCOPE)


def arn_account(arn: str) -> str | None:
    parts = arn.split(":", 5)
    if len(parts) >= 5 and parts[4] and parts[4] != "*":
        return parts[4]
    return None


@lru_cache(maxsize=8192)
def _resource_service(fmt: str) -> str:
    parts = fmt.split(":", 3)
    return parts[2] if len(parts) > 2 else ""


class Ctx:
    """What one event offers to the ARN builder; cheap to create, lazy about everything."""

    __slots__ = ("event", "service", "notes", "_lower", "_resources", "_arn_params")

    def __init__(self, event: Event, service: str) -> None:
        self.event = event
        self.service = service
        # Why a use came out as it did (optional resource types evaluated against "*"); merged into
        # ``EventUses.notes`` by ``uses_for``.
        self.notes: list[str] = []
        self._lower: dict[str, Any] | None = None
        self._resources: tuple[tuple[str, str | None], ...] | None = None
        self._arn_params: tuple[str, ...] | None = None

    # -- parameters ---------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        if self._lower is None:
            lower: dict[str, Any] = {}
            for source in (self.event.response, self.event.request):  # request wins
                if source:
                    for k, v in source.items():
                        lower[k.lower() if type(k) is str else str(k).lower()] = v
            self._lower = lower
        return self._lower

    def param(self, *names: str) -> Any:
        """The first present request parameter (case-insensitive); the request beats the response."""
        params = self._params()
        for name in names:
            value = params.get(name.lower())
            if value not in (None, ""):
                return value
        return None

    def text(self, *names: str) -> str | None:
        value = self.param(*names)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        return None

    def resources(self) -> tuple[tuple[str, str | None], ...]:
        """``(ARN, accountId)`` of the event's ``resources[]`` entries that carry an ARN."""
        if self._resources is None:
            out = []
            for res in self.event.resources:
                if isinstance(res, dict):
                    arn = res.get("ARN") or res.get("arn")
                    if isinstance(arn, str) and arn.startswith("arn:"):
                        acct = res.get("accountId")
                        out.append((arn, acct if isinstance(acct, str) else None))
            self._resources = tuple(out)
        return self._resources

    def default_account(self) -> str | None:
        if self.event.account:
            return self.event.account
        principal = self.event.principal
        return principal.account if principal is not None else None

    def account_for(self, arn: str) -> str | None:
        acct = arn_account(arn)
        if acct:
            return acct
        for res_arn, res_acct in self.resources():
            if res_acct and (res_arn == arn or arn.startswith(res_arn + "/")):
                return res_acct
        return self.default_account()

    # -- building -----------------------------------------------------------------------------
    def fill(
        self, fmt: str, values: Mapping[str, str | None] | None = None, account: str | None = None
    ) -> tuple[str, bool]:
        """Fill an ARN format; returns (arn, partial)."""
        partial = False
        literals = _literals(fmt)
        pieces = [literals[0]]
        for index, var in enumerate(format_vars(fmt)):
            value = self._var(var, fmt, values, account)
            if value is None:
                value, partial = "*", True
            pieces.append(value)
            pieces.append(literals[index + 1])
        return "".join(pieces), partial

    def _var(
        self, var: str, fmt: str, values: Mapping[str, str | None] | None, account: str | None
    ) -> str | None:
        if values is not None and var in values:
            return values[var]  # a rule's values: literal already (see ``use``) or its own pattern
        if var == "Partition":
            return self.event.partition or "aws"
        if var == "Region":
            return self.event.region
        if var == "Account":
            if account:
                return account
            service = _resource_service(fmt)
            for res_arn, res_acct in self.resources():
                if res_acct and _resource_service(res_arn) == service:
                    return res_acct
            return self.default_account()
        params = self._params()
        for name in _var_keys(var):
            value = params.get(name)
            if isinstance(value, bool) or value in (None, ""):
                continue
            if isinstance(value, int):
                return str(value)
            if isinstance(value, str) and not value.startswith("arn:") and "\n" not in value:
                return literal(value)
        return None

    def arns_of_type(self, service: str, rtype: str) -> list[str]:
        """ARNs the event names (resources[], then ARN-valued parameters) that are of ``rtype``."""
        rtype = rtype.lower()
        resources = self.resources()
        if resources:
            found = [a for a, _ in resources if (dataset.match_arn_type(service, a) or "").lower() == rtype]
            if found:
                return found
        if self._arn_params is None:
            self._arn_params = tuple(
                v for v in self._params().values() if type(v) is str and v.startswith("arn:")
            )
        found = []
        for value in self._arn_params:
            if value not in found and (dataset.match_arn_type(service, value) or "").lower() == rtype:
                found.append(value)
        return found

    def use(
        self,
        action: str,
        *,
        arn: str | None = None,
        values: Mapping[str, str | None] | None = None,
        rtype: str | None = None,
        conditions: tuple[Condition, ...] = (),
        inferred_by: str | None = None,
        via: str | None = None,
        partial: bool = False,
    ) -> tuple[Use, ...]:
        """Uses of ``action``: on ``arn`` when given, else on ARNs built for the event."""
        info = dataset.action_info(action)
        if info is None:
            raise KeyError(f"{action}: not in the Service Authorization Reference")
        name = info.name

        def on(resource: str, *, part: bool = False) -> Use:
            # A "*" that did not come from an unknown part (an ARN in the event, a module's pattern)
            # still matches more than the call touched: it is flagged like a partial ARN.
            wild = not (partial or part) and _has_wildcard(resource)
            return Use(action=name, resource=resource, resource_account=self.account_for(resource),
                       conditions=conditions, inferred_by=inferred_by, via=via, partial=partial or part or wild)

        def unscoped() -> Use:  # IAM evaluates these against "*": no account, never partial
            return Use(action=name, resource="*", conditions=conditions, inferred_by=inferred_by, via=via)

        if not info.resource_types:
            return (unscoped(),)
        if arn is not None:
            return (on(arn),)
        if values is None and rtype is None and self._names_no_optional_resource(info):
            self._note(_star_note(info))
            return (unscoped(),)
        if values and not partial:
            # Names a rule took from the request are literal in the ARN; a rule that passes a pattern of
            # its own (``aws-service-role/SERVICE/*``) marks the use partial and keeps it.
            values = {var: literal(v) if isinstance(v, str) and var not in _CONTEXT_VARS else v
                      for var, v in values.items()}
        return tuple(on(arn_, part=part) for arn_, part in self.resolve(info, values=values, rtype=rtype))

    def resolve(
        self,
        info: ActionInfo,
        *,
        values: Mapping[str, str | None] | None = None,
        rtype: str | None = None,
    ) -> list[tuple[str, bool]]:
        """(ARN, partial) pairs the action needs for this event."""
        service = info.name.split(":", 1)[0]
        if rtype is not None:
            types: Iterable[str] = (rtype,)
        else:
            required = [rt.name for rt in info.resource_types if rt.required]
            types = required or (self._best_optional(info, values),)
        out: list[tuple[str, bool]] = []
        for t in types:
            plan = _type_plan(service, t)
            if plan is None:
                continue
            fmt, fmt_service, _ = plan
            named = [] if values else self.arns_of_type(fmt_service, t)
            if named:
                out.extend((a, "*" in a) for a in named)
                continue
            out.append(self.fill(fmt, values))
        if not out:  # dataset lists a type without a format: scope to the service, flag it
            out.append((f"arn:{self.event.partition or 'aws'}:{service}:*", True))
        return out

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def _names_no_optional_resource(self, info: ActionInfo) -> bool:
        """True when every resource type of ``info`` is optional and the event identifies none of them:
        no ARN of the type, and none of the type's own format variables (only partition/region/account,
        which every event has). A type whose format has no own variable counts as identified."""
        if not info.resource_types or any(rt.required for rt in info.resource_types):
            return False
        service = info.name.split(":", 1)[0]
        if service in ADDRESSED_SERVICES or self._request_names_something():
            return False
        for rt in info.resource_types:
            plan = _type_plan(service, rt.name)
            if plan is None:
                continue
            fmt, fmt_service, own = plan
            if not own or self.arns_of_type(fmt_service, rt.name):
                return False
            if any(self._var(v, fmt, None, None) is not None for v in own):
                return False
        return True

    def _request_names_something(self) -> bool:
        """A request parameter that looks like a resource reference (``dBInstanceIdentifier``,
        ``target``, ``resourceIdList``) though it matches no format variable: the call may well be
        authorised on that resource, so "*" would be a guess; the partial ARN stays."""
        request = self.event.request
        if not request:
            return False
        for key, value in request.items():
            if value in (None, "", [], {}) or isinstance(value, bool) or type(key) is not str:
                continue
            if key.lower().endswith(_REFERENCE_KEY_ENDINGS):
                return True
        return False

    def _best_optional(self, info: ActionInfo, values: Mapping[str, str | None] | None) -> str:
        service = info.name.split(":", 1)[0]
        best: tuple[tuple[float, ...], str] | None = None
        for index, rt in enumerate(info.resource_types):
            plan = _type_plan(service, rt.name)
            if plan is None:
                continue
            fmt, fmt_service, own = plan
            named = 0 if values else len(self.arns_of_type(fmt_service, rt.name))
            resolved = sum(1 for v in own if self._var(v, fmt, values, None) is not None)
            fraction = resolved / len(own) if own else 1.0
            # An ARN the event names wins; then the format we can fill best; then the plainest
            # format (``object`` over ``accesspointobject``), then the reference's order.
            score = (1.0 if named else 0.0, fraction, -float(len(format_vars(fmt))), -float(index))
            if best is None or score > best[0]:
                best = (score, rt.name)
        return best[1] if best else info.resource_types[0].name


def _star_note(info: ActionInfo) -> str:
    names = [rt.name for rt in info.resource_types]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    kind = "optional resource type" if len(names) == 1 else "optional resource types"
    return f'{info.name} names no resource in this call; IAM evaluates it against "*" ({kind} {shown})'
