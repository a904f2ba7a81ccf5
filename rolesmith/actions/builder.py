"""Turning (event, action) into ``Use``s: ARNs from the dataset's formats, filled from the event.

The generic rule, used for every service and by the per-service modules:

* an ARN the event itself names (``resources[]``, then ARN-valued request/response parameters) that
  matches one of the action's resource types is used as it is;
* otherwise the resource type's ARN format is filled: ``${Partition}``/``${Region}`` from the event,
  ``${Account}`` from the resource's account (``resources[].accountId``, else ``recipientAccountId``,
  else the principal's account), every other variable from the request parameters by
  case-insensitive name (``${BucketName}`` ← ``bucketName``);
* a variable that cannot be filled becomes ``*`` in its segment and the use is marked ``partial`` —
  never a bare ``"*"`` for an action that has a resource type.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Mapping

from rolesmith.actions import dataset
from rolesmith.actions.dataset import ActionInfo
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


@lru_cache(maxsize=8192)
def format_vars(fmt: str) -> tuple[str, ...]:
    return tuple(_VAR.findall(fmt))


def arn_account(arn: str) -> str | None:
    parts = arn.split(":", 5)
    if len(parts) >= 5 and parts[4] and parts[4] != "*":
        return parts[4]
    return None


def _resource_service(fmt: str) -> str:
    parts = fmt.split(":", 3)
    return parts[2] if len(parts) > 2 else ""


class Ctx:
    """What one event offers to the ARN builder; cheap to create, lazy about everything."""

    __slots__ = ("event", "service", "_lower", "_resources")

    def __init__(self, event: Event, service: str) -> None:
        self.event = event
        self.service = service
        self._lower: dict[str, Any] | None = None
        self._resources: tuple[tuple[str, str | None], ...] | None = None

    # -- parameters ---------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        if self._lower is None:
            lower: dict[str, Any] = {}
            for source in (self.event.response, self.event.request):  # request wins
                if isinstance(source, Mapping):
                    for k, v in source.items():
                        lower[str(k).lower()] = v
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
                if isinstance(res, Mapping):
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
        out = fmt
        for var in format_vars(fmt):
            value = self._var(var, fmt, values, account)
            if value is None:
                value, partial = "*", True
            out = out.replace("${" + var + "}", value, 1)
        return out, partial

    def _var(
        self, var: str, fmt: str, values: Mapping[str, str | None] | None, account: str | None
    ) -> str | None:
        if values is not None and var in values:
            return values[var]
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
        low = var.lower()
        for name in _ALIASES.get(low, (low,)):
            value = self._params().get(name)
            if isinstance(value, bool) or value in (None, ""):
                continue
            if isinstance(value, int):
                return str(value)
            if isinstance(value, str) and not value.startswith("arn:") and "\n" not in value:
                return value
        return None

    def arns_of_type(self, service: str, rtype: str) -> list[str]:
        """ARNs the event names (resources[], then ARN-valued parameters) that are of ``rtype``."""
        found = [a for a, _ in self.resources() if dataset.match_arn_type(service, a) == rtype]
        if found:
            return found
        for value in self._params().values():
            if isinstance(value, str) and value.startswith("arn:"):
                if dataset.match_arn_type(service, value) == rtype and value not in found:
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
        if not info.resource_types:
            return (
                Use(action=name, resource="*", conditions=conditions, inferred_by=inferred_by, via=via),
            )
        if arn is not None:
            return (
                Use(
                    action=name,
                    resource=arn,
                    resource_account=self.account_for(arn),
                    conditions=conditions,
                    inferred_by=inferred_by,
                    via=via,
                    partial=partial or "*" in arn,
                ),
            )
        out: list[Use] = []
        for arn_, part in self.resolve(info, values=values, rtype=rtype):
            out.append(
                Use(
                    action=name,
                    resource=arn_,
                    resource_account=self.account_for(arn_),
                    conditions=conditions,
                    inferred_by=inferred_by,
                    via=via,
                    partial=partial or part,
                )
            )
        return tuple(out)

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
            fmts = dataset.arn_formats(service, t)
            if not fmts:
                continue
            fmt_service = _resource_service(fmts[0]) or service
            named = [] if values else self.arns_of_type(fmt_service, t)
            if named:
                out.extend((a, "*" in a) for a in named)
                continue
            out.append(self.fill(fmts[0], values))
        if not out:  # dataset lists a type without a format: scope to the service, flag it
            out.append((f"arn:{self.event.partition or 'aws'}:{service}:*", True))
        return out

    def _best_optional(self, info: ActionInfo, values: Mapping[str, str | None] | None) -> str:
        service = info.name.split(":", 1)[0]
        best: tuple[tuple[float, ...], str] | None = None
        for index, rt in enumerate(info.resource_types):
            fmts = dataset.arn_formats(service, rt.name)
            if not fmts:
                continue
            fmt = fmts[0]
            named = 0 if values else len(self.arns_of_type(_resource_service(fmt) or service, rt.name))
            own = [v for v in format_vars(fmt) if v not in ("Partition", "Region", "Account")]
            resolved = sum(1 for v in own if self._var(v, fmt, values, None) is not None)
            fraction = resolved / len(own) if own else 1.0
            # An ARN the event names wins; then the format we can fill best; then the plainest
            # format (``object`` over ``accesspointobject``), then the reference's order.
            score = (1.0 if named else 0.0, fraction, -float(len(format_vars(fmt))), -float(index))
            if best is None or score > best[0]:
                best = (score, rt.name)
        return best[1] if best else info.resource_types[0].name
