"""Policy documents converge edits: merge statements without duplicating or losing any."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Mapping

Document = dict[str, Any]


def empty() -> Document:
    return {"Version": "2012-10-17", "Statement": []}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _shape(stmt: Mapping[str, Any]) -> str:
    """Everything but the actions (and Sid): statements of the same shape merge their actions."""
    rest = {k: v for k, v in stmt.items() if k not in ("Action", "Sid")}
    if "Resource" in rest:
        rest["Resource"] = sorted(_as_list(rest["Resource"]))
    return json.dumps(rest, sort_keys=True, default=str)


def _covers(stmt: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    if stmt.get("Effect") != new.get("Effect") or _shape(stmt) != _shape(new):
        return False
    have = {a.lower() for a in _as_list(stmt.get("Action"))}
    return {a.lower() for a in _as_list(new.get("Action"))} <= have


def merge(document: Mapping[str, Any] | None, statements: Iterable[Mapping[str, Any]]) -> tuple[Document, bool]:
    """``document`` with ``statements`` added: (new document, changed?).

    Existing statements are kept as they are (a key policy's administration statement survives
    every edit); a new statement of the same shape as an existing Allow extends its actions."""
    doc: Document = copy.deepcopy(dict(document)) if document else empty()
    doc.setdefault("Version", "2012-10-17")
    stmts = [dict(s) for s in _as_list(doc.get("Statement"))]
    changed = False
    for new in statements:
        new = copy.deepcopy(dict(new))
        if any(_covers(s, new) for s in stmts):
            continue
        changed = True
        same = next((s for s in stmts if s.get("Effect") == "Allow" == new.get("Effect")
                     and _shape(s) == _shape(new) and "Action" in s and "Action" in new), None)
        if same is not None:
            actions = _as_list(same["Action"])
            actions += [a for a in _as_list(new["Action"]) if a.lower() not in {x.lower() for x in actions}]
            same["Action"] = sorted(actions) if len(actions) > 1 else actions[0]
            continue
        new.pop("Sid", None) if any(s.get("Sid") == new.get("Sid") for s in stmts) else None
        stmts.append(new)
    doc["Statement"] = stmts
    return doc, changed


def statement_for_use(action: str, resource: str, conditions: Iterable[tuple[str, str, str]]) -> Document:
    """An identity statement granting one ``rolesmith.actions.Use``."""
    stmt: Document = {"Effect": "Allow", "Action": action, "Resource": resource}
    cond: dict[str, dict[str, Any]] = {}
    for op, key, value in conditions:
        cond.setdefault(op, {})[key] = value
    if cond:
        stmt["Condition"] = cond
    return stmt
