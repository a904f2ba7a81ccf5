"""Validate a policy document and compile its statements for fast repeated matching.

Grammar: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html. A
policy that does not follow it raises ``PolicyError`` naming the policy and statement: a statement
we cannot read must never silently allow (or silently fail to deny).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from rolesmith.evaluator.conditions import Check, compile_conditions
from rolesmith.evaluator.model import NamedPolicy, PolicyError

# Layers whose statements name a principal (resource-side) and those that must not.
PRINCIPAL_LAYERS = frozenset({"resource", "key-policy", "trust-policy", "rcp"})
_KEYS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal",
                   "NotPrincipal", "Condition"})
_VERSIONS = ("2012-10-17", "2008-10-17")


@dataclass(frozen=True, slots=True)
class Statement:
    policy: str
    sid: str | None
    index: int
    allow: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...] | None  # None: no Resource element (trust policies)
    not_resource: bool
    principal: Any
    not_principal: bool
    conditions: tuple[Check, ...]
    variables: bool  # Version 2012-10-17: ${...} in Resource and conditions are policy variables


def _strings(value: Any, where: str, element: str) -> tuple[str, ...]:
    vals = [value] if isinstance(value, str) else value
    if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
        raise PolicyError(f"{where}: {element} must be a string or a non-empty list of strings")
    return tuple(vals)


def compile_policy(policy: NamedPolicy, layer: str) -> tuple[Statement, ...]:
    doc = policy.document
    name = policy.name
    if not isinstance(doc, Mapping):
        raise PolicyError(f"policy {name}: the document must be a JSON object with a Statement")
    version = doc.get("Version", "2008-10-17")
    if version not in _VERSIONS:
        raise PolicyError(f"policy {name}: unsupported Version {version!r} (use \"2012-10-17\")")
    stmts = doc.get("Statement")
    if isinstance(stmts, Mapping):
        stmts = [stmts]
    if not isinstance(stmts, list):
        raise PolicyError(f"policy {name}: Statement must be an object or a list of objects")
    out = []
    for index, st in enumerate(stmts):
        where = f"policy {name}: statement {index}"
        if not isinstance(st, Mapping):
            raise PolicyError(f"{where}: a statement must be a JSON object")
        sid = st.get("Sid")
        if sid is not None:
            where = f"policy {name}: statement {index} ({sid})"
        unknown = set(st) - _KEYS
        if unknown:
            raise PolicyError(f"{where}: unknown element(s) {', '.join(sorted(map(str, unknown)))}")
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"{where}: Effect must be \"Allow\" or \"Deny\", got {effect!r}")
        if ("Action" in st) == ("NotAction" in st):
            raise PolicyError(f"{where}: exactly one of Action or NotAction is required")
        actions = _strings(st.get("Action", st.get("NotAction")), where, "Action")
        for a in actions:
            if a != "*" and (a.count(":") != 1 or a[0] == ":" or a[-1] == ":"):
                raise PolicyError(f"{where}: action {a!r} is not of the form service:Action")
        if "Resource" in st and "NotResource" in st:
            raise PolicyError(f"{where}: use Resource or NotResource, not both")
        if "Resource" in st or "NotResource" in st:
            resources: tuple[str, ...] | None = _strings(st.get("Resource", st.get("NotResource")), where, "Resource")
        elif layer == "trust-policy":
            resources = None
        else:
            raise PolicyError(f"{where}: Resource or NotResource is required")
        has_principal = "Principal" in st or "NotPrincipal" in st
        if "Principal" in st and "NotPrincipal" in st:
            raise PolicyError(f"{where}: use Principal or NotPrincipal, not both")
        if layer in PRINCIPAL_LAYERS and not has_principal:
            raise PolicyError(f"{where}: a {layer} statement needs a Principal")
        if layer not in PRINCIPAL_LAYERS and has_principal:
            raise PolicyError(f"{where}: a {layer} policy cannot have Principal or NotPrincipal")
        out.append(Statement(
            policy=name, sid=sid if isinstance(sid, str) else None, index=index, allow=effect == "Allow",
            actions=actions, not_action="NotAction" in st,
            resources=resources, not_resource="NotResource" in st,
            principal=st.get("Principal", st.get("NotPrincipal")), not_principal="NotPrincipal" in st,
            conditions=compile_conditions(st.get("Condition"), where, version == "2012-10-17"),
            variables=version == "2012-10-17",
        ))
    return tuple(out)


_CACHE: dict[tuple[int, str, str], tuple[Mapping[str, Any], tuple[Statement, ...]]] = {}
_CACHE_MAX = 65536


def compiled(policy: NamedPolicy, layer: str) -> tuple[Statement, ...]:
    """``compile_policy`` memoised by document identity (the cache keeps the document alive, so an
    id is never reused while cached). Documents must not be mutated after their first evaluation."""
    key = (id(policy.document), policy.name, layer)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is policy.document:
        return hit[1]
    stmts = compile_policy(policy, layer)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = (policy.document, stmts)
    return stmts
