"""The replacement: what ``build`` writes for the role, never wider than what the role has now.

Every (action, resource) of the built identity policy is checked against the current grants: one no
current statement grants is dropped (reported, not widened into), and one granted only under
conditions keeps those conditions (the EMR ``for-use-with-amazon-emr-managed-policies`` tags: the
workload's calls succeeded under them, so they held). The evaluator then confirms each used call is
still allowed.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from rolesmith.policies.model import Document, Finding, IdentityPolicy, PolicySet, TrustPolicy
from rolesmith.tighten._dataset import canonical
from rolesmith.tighten.compare import Granted, _as_list, granted
from rolesmith.tighten.model import CheckedCall, CurrentRole, UsedCall, Verification

Atom = tuple[str, str, str]  # (action, resource, canonical JSON of the Condition block or "")


def _cond_key(condition: Mapping[str, Any] | None) -> str:
    return json.dumps(condition, sort_keys=True, separators=(",", ":")) if condition else ""


def _merge_conditions(own: Mapping[str, Any] | None, carried: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """AND of two Condition blocks (operators and keys are AND'd; a key both name keeps the built value)."""
    out: dict[str, dict[str, Any]] = {op: dict(keys) for op, keys in (own or {}).items()}
    for op, keys in (carried or {}).items():
        block = out.setdefault(op, {})
        for key, value in keys.items():
            block.setdefault(key, value)
    return out or None


_EQ = ("StringEquals", "ArnEquals")
_LIKE = ("StringLike", "ArnLike")


def compatible(own: Mapping[str, Any] | None, carried: Mapping[str, Any] | None) -> bool:
    """False when a key the built statement pins to exact values can never meet the carried condition.

    ``iam:PassedToService = ec2.amazonaws.com`` (from the trail) AND ``iam:PassedToService like
    application-autoscaling.amazonaws.com*`` (another statement of the old policy) never holds: such a
    piece would be dead weight in the replacement.
    """
    from rolesmith.tighten.compare import resource_matches

    exact: dict[str, list[str]] = {}
    for op, keys in (own or {}).items():
        if op in _EQ:
            for key, value in keys.items():
                exact[key.lower()] = [str(v) for v in _as_list(value)]
    for op, keys in (carried or {}).items():
        if op not in _EQ + _LIKE:
            continue
        for key, value in keys.items():
            pinned = exact.get(key.lower())
            if pinned is None:
                continue
            patterns = [str(v) for v in _as_list(value)]
            ok = any((v in patterns) if op in _EQ else any(resource_matches(p, v) for p in patterns) for v in pinned)
            if not ok:
                return False
    return True


def _without_implied(own: Mapping[str, Any] | None, carried: Mapping[str, Any]) -> dict[str, Any]:
    """``carried`` minus string/ARN keys the built statement already pins to (compatible) exact values."""
    pinned = {key.lower() for op, keys in (own or {}).items() if op in _EQ for key in keys}
    out: dict[str, Any] = {}
    for op, keys in carried.items():
        rest = {k: v for k, v in keys.items() if not (op in _EQ + _LIKE and k.lower() in pinned)}
        if rest:
            out[op] = rest
    return out


def atoms_of(document: Document) -> list[Atom]:
    out: list[Atom] = []
    for st in document.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        cond = _cond_key(st.get("Condition"))
        for action in _as_list(st.get("Action")):
            for resource in _as_list(st.get("Resource")):
                out.append((canonical(action), resource, cond))
    return out


def _glob_covers(pattern: str, value: str) -> bool:
    from rolesmith.tighten.compare import resource_matches

    return resource_matches(pattern, value)


def intersect(built: str, granted_pattern: str) -> str | None:
    """The narrower of two resource patterns where one contains the other, part by ARN part.

    A built ARN with unknown parts (``arn:aws:ec2:us-east-1::image/*``, the image id was not in the
    event) meets the current grant ``arn:aws:ec2:*::image/ami-*`` as ``arn:aws:ec2:us-east-1::image/ami-*``.
    """
    if granted_pattern == "*":
        return built
    a, b = built.split(":", 5), granted_pattern.split(":", 5)
    if len(a) != 6 or len(b) != 6:
        return None
    out = []
    for x, y in zip(a, b):
        if _glob_covers(y, x):
            out.append(x)
        elif _glob_covers(x, y):
            out.append(y)
        else:
            return None
    return ":".join(out)


def constrain(atoms: Iterable[Atom], current: Granted) -> tuple[list[Atom], list[Finding]]:
    """Keep what the current policies grant, with the conditions they grant it under."""
    kept: list[Atom] = []
    dropped: list[str] = []
    for action, resource, cond in atoms:
        candidates = current.granting(action) if action in current.actions else []
        pieces: dict[str, list[Any]] = {}  # resource to grant -> the current grants covering it
        for g in candidates:
            if g.not_resource:
                continue
            for pattern in g.resources:
                narrowed = resource if _glob_covers(pattern, resource) else intersect(resource, pattern)
                if narrowed is not None:
                    pieces.setdefault(narrowed, []).append(g)
        if resource in pieces:  # covered as built: no need for the narrower pieces
            pieces = {resource: pieces[resource]}
        if not pieces:
            dropped.append(f"{action} on {resource}")
            continue
        own = json.loads(cond) if cond else None
        for res, grants in pieces.items():
            if any(not g.condition for g in grants):
                kept.append((action, res, cond))
                continue
            # Only conditional grants allowed it: one statement per distinct condition keeps the OR.
            live = [c for c in sorted({_cond_key(g.condition) for g in grants}) if compatible(own, json.loads(c))]
            for carried in live:
                merged = _merge_conditions(own, _without_implied(own, json.loads(carried)))
                kept.append((action, res, _cond_key(merged)))
            if not live and resource == res:
                dropped.append(f"{action} on {resource}")
    findings = []
    if dropped:
        findings.append(
            Finding(
                code="NOT_GRANTED_BEFORE",
                message="used but not granted by the role's current policies, so not added (a resource policy "
                "probably allowed it): " + ", ".join(sorted(set(dropped))),
            )
        )
    return sorted(set(kept)), findings


def _triples(cond: str) -> tuple[tuple[str, str, str], ...]:
    out = []
    for op, keys in (json.loads(cond) if cond else {}).items():
        for key, value in keys.items():
            out += [(op, key, str(v)) for v in _as_list(value)]
    return tuple(out)


def statements_of(atoms: Iterable[Atom]) -> list[dict[str, Any]]:
    """Merged exactly as ``build`` merges its grants, so the replacement reads like ``build`` output."""
    from rolesmith.policies.statements import merge

    return merge((action, resource, _triples(cond)) for action, resource, cond in atoms)


def replacement(current: CurrentRole, built: PolicySet | None) -> tuple[PolicySet, list[Finding]]:
    """The tightened policy set for the role: its identity policy, and its current trust policy kept."""
    role = current.arn
    docs = [p.policy for p in (built.identity_policies if built else ()) if p.principal == role]
    atoms = [a for doc in docs for a in atoms_of(doc)]
    kept, findings = constrain(atoms, granted(current))
    policy = {"Version": "2012-10-17", "Statement": statements_of(kept)}
    trust = (TrustPolicy(role=role, policy=current.trust),) if current.trust else ()
    return PolicySet(identity_policies=(IdentityPolicy(principal=role, policy=policy),), trust_policies=trust), findings


# ---- verification -----------------------------------------------------------------------------------

def _strip_op(op: str) -> tuple[str, bool]:
    multi = op.startswith(("ForAnyValue:", "ForAllValues:"))
    base = op.split(":", 1)[1] if multi else op
    return base.removesuffix("IfExists"), multi


def satisfying_context(condition: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A request context under which ``condition`` holds, or None where that cannot be told simply.

    Used to replay a call that succeeded under a conditional grant: since it succeeded, its context
    satisfied the condition, and the replacement must allow the same request.
    """
    ctx: dict[str, Any] = {}
    for op, keys in (condition or {}).items():
        base, multi = _strip_op(op)
        for key, value in keys.items():
            first = str(_as_list(value)[0]) if _as_list(value) else ""
            if base in ("StringEquals", "StringEqualsIgnoreCase", "ArnEquals", "Bool", "NumericEquals", "DateEquals"):
                v: Any = first
            elif base in ("StringLike", "ArnLike"):
                v = first.replace("*", "").replace("?", "x")
            elif base == "Null":
                if first.lower() == "true":
                    continue
                v = "x"
            elif base.startswith(("StringNot", "ArnNot")):
                continue  # an absent key satisfies a negated operator
            else:
                return None
            ctx[key] = [v] if multi else v
    return ctx


def verify(current: CurrentRole, new: PolicySet, calls: Iterable[UsedCall]) -> Verification:
    """Replay every used call the current policies allow against the replacement with the evaluator."""
    from rolesmith.evaluator import NamedPolicy, Policies, Request, evaluate

    account = current.account or current.arn.split(":")[4]
    boundary = NamedPolicy(name=current.boundary.name, document=current.boundary.document) if current.boundary else None
    old = Policies(identity=tuple(NamedPolicy(name=p.name, document=p.document) for p in current.policies), boundary=boundary)
    doc = next((p.policy for p in new.identity_policies if p.principal == current.arn), {"Statement": []})
    replaced = Policies(identity=(NamedPolicy(name="rolesmith-tightened", document=doc),), boundary=boundary)
    cur = granted(current)
    checked = 0
    failures: list[CheckedCall] = []
    for call in calls:
        action = canonical(call.action)
        grants = cur.granting(action, call.resource) if action in cur.actions else []
        if not grants:
            continue  # not the role's identity policy that allowed it: not the replacement's job either
        base_ctx = {key: value for _op, key, value in call.conditions}
        contexts = [base_ctx] if any(not g.condition for g in grants) else [
            {**c, **base_ctx} for c in (satisfying_context(g.condition) for g in grants) if c is not None
        ]
        old_ctx = next(
            (c for c in contexts if evaluate(_request(Request, current.arn, account, action, call.resource, c), old).allowed),
            None,
        )
        if old_ctx is None:
            continue  # the context that let it through cannot be rebuilt; the evaluator cannot replay it
        checked += 1
        decision = evaluate(_request(Request, current.arn, account, action, call.resource, old_ctx), replaced)
        if not decision.allowed:
            failures.append(CheckedCall(action=action, resource=call.resource, decision=decision.decision,
                                        context=tuple(sorted((k, str(v)) for k, v in old_ctx.items()))))
    return Verification(checked=checked, failures=tuple(failures))


def _request(cls: Any, principal: str, account: str, action: str, resource: str, ctx: Mapping[str, Any]) -> Any:
    # The question is whether the new identity policy allows what the old one did, so the request is
    # evaluated as same-account: resource policies are unchanged by tighten and not part of it.
    return cls(principal=principal, principal_account=account, action=action, resource=resource, context=dict(ctx))
