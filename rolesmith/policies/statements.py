"""Merge (action, resource, conditions) grants into few, deterministic policy statements."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from rolesmith.actions.model import Condition

Grant = tuple[str, str, tuple[Condition, ...]]  # (action, resource, conditions)

VERSION = "2012-10-17"


def condition_block(conditions: Iterable[Condition]) -> dict[str, dict[str, Any]]:
    """IAM ``Condition`` element: several values of one operator/key become a list (OR)."""
    block: dict[str, dict[str, list[str]]] = {}
    for op, key, value in sorted(set(conditions)):
        block.setdefault(op, {}).setdefault(key, []).append(value)
    return {op: {key: values[0] if len(values) == 1 else values for key, values in keys.items()}
            for op, keys in block.items()}


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _sid_base(actions: list[str], conditions: tuple[Condition, ...]) -> str:
    services: list[str] = []
    for action in actions:
        service = action.split(":", 1)[0]
        if service not in services:
            services.append(service)
    base = "".join(s[:1].upper() + s[1:] for s in services)
    for _, key, value in conditions:
        if key.endswith(":ViaService") or key == "aws:CalledVia":
            base += "Via" + value.split(".", 1)[0].capitalize()
            break
    return re.sub(r"[^A-Za-z0-9]", "", base) or "Statement"


def merge(grants: Iterable[Grant], *, principal: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Statements allowing exactly ``grants``.

    Grants with the same conditions are grouped; within a group, actions that apply to the same set of
    resources share one statement. Order: by conditions (unconditioned first), then first action. The
    result never widens: each statement's Action x Resource product is a subset of the grants.
    """
    by_cond: dict[tuple[Condition, ...], dict[str, set[str]]] = {}
    for action, resource, conditions in grants:
        cond = tuple(sorted(set(conditions)))
        by_cond.setdefault(cond, {}).setdefault(action, set()).add(resource)
    statements: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for cond, actions in by_cond.items():
        by_resources: dict[frozenset[str], list[str]] = {}
        for action, resources in actions.items():
            by_resources.setdefault(frozenset(resources), []).append(action)
        for resources, acts in by_resources.items():
            acts_sorted = sorted(acts, key=str.lower)
            res_sorted = sorted(resources)
            stmt: dict[str, Any] = {"Sid": _sid_base(acts_sorted, cond), "Effect": "Allow"}
            if principal is not None:
                stmt["Principal"] = dict(principal)
            stmt["Action"] = _one_or_list(acts_sorted)
            stmt["Resource"] = _one_or_list(res_sorted)
            if cond:
                stmt["Condition"] = condition_block(cond)
            statements.append(((len(cond), cond, acts_sorted[0].lower(), res_sorted), stmt))
    statements.sort(key=lambda item: item[0])
    out = [stmt for _, stmt in statements]
    unique_sids(out)
    return out


def letter_suffix(n: int) -> str:
    """1 -> A, 2 -> B, …, 27 -> AA: a suffix that cannot be confused with a digit in a name like S3."""
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("A") + rem) + out
    return out


def unique_sids(statements: list[dict[str, Any]]) -> None:
    """Suffix repeated Sids with A, B, … (Sids must be unique within a policy)."""
    seen: dict[str, int] = {}
    for stmt in statements:
        sid = stmt.get("Sid")
        if sid is None:
            continue
        seen[sid] = seen.get(sid, 0) + 1
    counters: dict[str, int] = {}
    for stmt in statements:
        sid = stmt.get("Sid")
        if sid is None or seen[sid] == 1:
            continue
        counters[sid] = counters.get(sid, 0) + 1
        stmt["Sid"] = sid + letter_suffix(counters[sid])


def document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": statements}
