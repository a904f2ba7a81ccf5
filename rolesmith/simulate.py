"""``rolesmith simulate``: the offline IAM policy simulator (library twin of the command).

One request, or a JSONL batch of them, is evaluated with ``rolesmith.evaluator.evaluate`` against a
policies directory (``rolesmith.evaluator.policydir`` layout) and/or policies given inline per
request. Each answer is ``{"decision", "layer", "statements", "layers"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.evaluator import NamedPolicy, Policies, PolicyError, Request, evaluate
from rolesmith.evaluator.model import Decision
from rolesmith.evaluator.policydir import PolicyStore, load_policy_dir, resource_key

REQUEST_KEYS = frozenset({"principal", "principal_account", "action", "resource", "resource_account", "context",
                          "session_arn", "policies"})
POLICY_KEYS = frozenset({"identity", "boundary", "session", "scps", "rcps", "resource", "resource_kind"})


class SimulateError(RolesmithError):
    """A request that cannot be simulated: names the file and line and what to fix."""

    exit_code = 2


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "decision": decision.decision,
        "layer": decision.layer,
        "statements": [{"layer": s.layer, "policy": s.policy, "sid": s.sid, "index": s.index, "effect": s.effect}
                       for s in decision.statements],
        "layers": dict(decision.layers),
    }


def parse_context(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items; a repeated key becomes a multivalued (list) key."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SimulateError(f"--context {item!r}: expected KEY=VALUE, e.g. aws:SourceIp=10.0.0.1")
        if key in out:
            prev = out[key]
            out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[key] = value
    return out


def _account_of_principal(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and arn.startswith("arn:") else ""


def _doc(value: Any, where: str, name: str) -> NamedPolicy:
    if not isinstance(value, Mapping) or "Statement" not in value:
        raise SimulateError(f"{where}: policies.{name} must be a policy document (a JSON object with a Statement)")
    return NamedPolicy(name=name, document=value)


def _inline(policies: Any, where: str, base: Policies, request: Request) -> Policies:
    if not isinstance(policies, Mapping):
        raise SimulateError(f"{where}: \"policies\" must be an object with identity, boundary, session, scps, rcps, resource")
    unknown = set(policies) - POLICY_KEYS
    if unknown:
        raise SimulateError(f"{where}: unknown policies key(s) {', '.join(sorted(unknown))}; "
                            f"use {', '.join(sorted(POLICY_KEYS))}")
    changes: dict[str, Any] = {}
    if "identity" in policies:
        docs = policies["identity"]
        if not isinstance(docs, list):
            raise SimulateError(f"{where}: policies.identity must be a list of policy documents")
        changes["identity"] = tuple(_doc(d, where, f"identity[{i}]") for i, d in enumerate(docs))
    for key in ("boundary", "session", "resource"):
        if key in policies:
            changes[key] = None if policies[key] is None else _doc(policies[key], where, key)
    for key in ("scps", "rcps"):
        if key in policies:
            levels = policies[key]
            if not isinstance(levels, list) or not all(isinstance(lvl, list) for lvl in levels):
                raise SimulateError(f"{where}: policies.{key} must be a list of OU levels, each a list of documents")
            changes[key] = tuple(tuple(_doc(d, where, f"{key}[{i}][{j}]") for j, d in enumerate(lvl))
                                 for i, lvl in enumerate(levels))
    if "resource" in policies:
        changes["resource_kind"] = policies.get("resource_kind") or resource_key(request.resource, request.action)[0]
    return Policies(**{**{f: getattr(base, f) for f in Policies.__dataclass_fields__}, **changes})


def simulate_one(obj: Any, *, store: PolicyStore | None = None, where: str = "request") -> dict[str, Any]:
    """Evaluate one request object (the JSONL line shape documented in the README)."""
    if not isinstance(obj, Mapping):
        raise SimulateError(f"{where}: expected a JSON object with principal, action, resource")
    unknown = set(obj) - REQUEST_KEYS
    if unknown:
        raise SimulateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(REQUEST_KEYS))}")
    for key in ("principal", "action", "resource"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise SimulateError(f"{where}: missing \"{key}\" (a non-empty string)")
    context = obj.get("context") or {}
    if not isinstance(context, Mapping):
        raise SimulateError(f"{where}: \"context\" must be an object of condition keys to values")
    principal = obj["principal"]
    account = obj.get("principal_account") or _account_of_principal(principal)
    resource_account = obj.get("resource_account")
    if resource_account is None and store is not None:
        resource_account = store.account_of(obj["resource"])
    request = Request(principal=principal, principal_account=str(account), action=obj["action"],
                      resource=obj["resource"], resource_account=None if resource_account is None else str(resource_account),
                      context=dict(context), session_arn=obj.get("session_arn"))
    base = store.policies_for(request) if store is not None else Policies()
    if "policies" in obj:
        base = _inline(obj["policies"], where, base, request)
    try:
        return decision_json(evaluate(request, base))
    except PolicyError as err:
        raise SimulateError(f"{where}: {err}") from None


def simulate_requests(requests: Iterable[Any], *, policies_dir: str | Path | None = None,
                      source: str = "requests") -> Iterator[dict[str, Any]]:
    """Evaluate request objects (numbered from 1 in errors as ``SOURCE: request N``)."""
    store = load_policy_dir(policies_dir) if policies_dir is not None else None
    for n, obj in enumerate(requests, 1):
        yield simulate_one(obj, store=store, where=f"{source}: request {n}")


def simulate_jsonl(path: str | Path, *, policies_dir: str | Path | None = None) -> Iterator[dict[str, Any]]:
    """Evaluate a JSONL file of requests, one answer per non-blank line; errors name FILE: line N."""
    store = load_policy_dir(policies_dir) if policies_dir is not None else None
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise SimulateError(f"{p}: cannot read: {err.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise SimulateError(f"{p}: line {n}: invalid JSON ({err.msg} at column {err.colno}); "
                                "each line must be one JSON request object") from None
        yield simulate_one(obj, store=store, where=f"{p}: line {n}")


def simulate(*, principal: str, action: str, resource: str, resource_account: str | None = None,
             context: Iterable[str] | Mapping[str, Any] = (), policies_dir: str | Path | None = None) -> dict[str, Any]:
    """One request from command-line style arguments (``context`` as KEY=VALUE items or a mapping)."""
    ctx = dict(context) if isinstance(context, Mapping) else parse_context(context)
    store = load_policy_dir(policies_dir) if policies_dir is not None else None
    obj = {"principal": principal, "action": action, "resource": resource, "context": ctx}
    if resource_account is not None:
        obj["resource_account"] = resource_account
    return simulate_one(obj, store=store, where="request")
