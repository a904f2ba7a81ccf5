"""The decision: which layers allow, which deny, and how AWS combines them.

Sources (cited by the tests in tests/test_evaluator_layers.py):
- https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
  explicit deny anywhere wins; SCPs and RCPs must allow; same account: identity OR resource allow.
- https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
  cross-account: the identity side and the resource policy must both allow.
- https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
  boundaries and session policies cap identity allows; a same-account resource policy naming the
  user or the role session directly is not capped by them, one naming the role ARN is; a Deny with
  NotPrincipal always applies to a principal with a boundary.
- https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html (key policy must allow; a
  statement for the account root lets IAM policies allow) and
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_terms-and-concepts.html (trust policy).
- https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_policies_scps.html (SCPs
  do not affect service-linked roles or the management account) and ..._rcps.html.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from rolesmith.evaluator.compile import Statement, compiled
from rolesmith.evaluator.conditions import Unresolved
from rolesmith.evaluator.match import (
    ACCOUNT,
    DIRECT,
    ROLE,
    action_matches,
    arn_matches,
    parts_match,
    principal_identities,
    principal_match,
    substitute,
)
from rolesmith.evaluator.model import Decision, MatchedStatement, NamedPolicy, Policies, PolicyError, Request

_MUST_ALLOW = {"kms-key": "key-policy", "role-trust": "trust-policy"}


class _Req:
    """Per-request data computed once: context with lower-case keys, caller identities."""

    __slots__ = ("action", "resource", "ctx", "principal", "account", "direct", "role_name", "has_boundary")

    def __init__(self, request: Request, has_boundary: bool) -> None:
        if request.action.count(":") != 1:
            raise PolicyError(f"request: action {request.action!r} is not of the form service:Action")
        self.action = request.action
        self.resource = request.resource
        self.principal = request.principal
        self.account = request.principal_account
        self.direct, self.role_name = principal_identities(request.principal, request.principal_account,
                                                           request.session_arn)
        self.has_boundary = has_boundary
        ctx: dict[str, Any] = {}
        for k, v in request.context.items():
            ctx[str(k).lower()] = v
        ctx.setdefault("aws:principalaccount", request.principal_account)
        if request.principal.startswith("arn:"):
            ctx.setdefault("aws:principalarn", _principal_arn(request.principal))
            if ":user/" in request.principal:
                ctx.setdefault("aws:username", request.principal.rsplit("/", 1)[-1])
        self.ctx = ctx


def _principal_arn(arn: str) -> str:
    # aws:PrincipalArn of a role session is the role's ARN (the path is not in the session ARN).
    if ":assumed-role/" in arn:
        head, rest = arn.split(":assumed-role/", 1)
        return head.replace(":sts:", ":iam:", 1) + ":role/" + rest.split("/", 1)[0]
    return arn


def _resource_hit(st: Statement, r: _Req) -> bool:
    """Resource / NotResource match; raises ``Unresolved`` for a variable without a value."""
    if st.resources is None:
        return True
    hit = False
    for pattern in st.resources:
        if st.variables and "${" in pattern:
            parts = substitute(pattern, r.ctx)
            if parts is None:
                raise Unresolved(pattern)
            if parts_match(parts, r.resource, arn=True):
                hit = True
                break
        elif arn_matches(pattern, r.resource):
            hit = True
            break
    return hit != st.not_resource


def _action_hit(st: Statement, r: _Req) -> bool:
    hit = any(action_matches(p, r.action) for p in st.actions)
    return hit != st.not_action


def _principal_kind(st: Statement, r: _Req) -> str | None:
    where = f"policy {st.policy}: statement {st.index}"
    kind = principal_match(st.principal, principal=r.principal, account=r.account, direct=r.direct,
                           role_name=r.role_name, where=where)
    if not st.not_principal:
        return kind
    # NotPrincipal (Deny only): AWS may check the account, then the role, then the session, so the
    # caller is excepted only when every one of them is listed
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html);
    # with a permissions boundary a Deny+NotPrincipal always applies (access_policies_boundaries.html).
    if not st.allow and r.has_boundary:
        return DIRECT
    return None if _not_principal_excepts(st.principal, r) else DIRECT


def _not_principal_excepts(element: Any, r: _Req) -> bool:
    if element == "*":
        return True
    if not isinstance(element, Mapping):
        return False
    listed: set[str] = set()
    for values in element.values():
        listed.update([values] if isinstance(values, str) else values)
    if "*" in listed:
        return True
    if _is_service(r.principal):
        return r.principal in listed
    if r.account not in listed and f"arn:aws:iam::{r.account}:root" not in listed:
        return False
    if r.principal.endswith(":root"):
        return True
    if r.role_name is not None:
        role_listed = any(v.startswith(f"arn:aws:iam::{r.account}:role/") and v.rsplit("/", 1)[-1] == r.role_name
                          for v in listed)
        return role_listed and all(d in listed for d in r.direct)
    return r.principal in listed


class _Layer:
    __slots__ = ("name", "allows", "denies")

    def __init__(self, name: str) -> None:
        self.name = name
        self.allows: list[tuple[Statement, str]] = []  # (statement, principal kind)
        self.denies: list[Statement] = []


def _scan(layer: str, policies: Iterable[NamedPolicy], r: _Req, *, principal_side: bool) -> _Layer:
    out = _Layer(layer)
    for policy in policies:
        for st in compiled(policy, layer):
            try:
                if not _action_hit(st, r) or not _resource_hit(st, r):
                    continue
                kind = DIRECT
                if principal_side:
                    kind = _principal_kind(st, r)  # type: ignore[assignment]
                    if kind is None:
                        continue
                if not all(c(r.ctx) for c in st.conditions):
                    continue
            except Unresolved:
                continue
            if st.allow:
                out.allows.append((st, kind))
            else:
                out.denies.append(st)
    return out


def _ms(layer: str, st: Statement) -> MatchedStatement:
    return MatchedStatement(layer=layer, policy=st.policy, sid=st.sid, index=st.index,
                            effect="Allow" if st.allow else "Deny")


def _org(layer: str, levels: tuple[tuple[NamedPolicy, ...], ...], r: _Req, principal_side: bool
         ) -> tuple[str, list[Statement]]:
    """Every OU level must allow; any deny is final. Returns (outcome, denies)."""
    denies: list[Statement] = []
    missing = False
    for level in levels:
        scanned = _scan(layer, level, r, principal_side=principal_side)
        denies += scanned.denies
        missing = missing or not scanned.allows
    return ("deny" if denies else "implicit-deny" if missing else "allow"), denies


def _is_service(principal: str) -> bool:
    return not principal.startswith("arn:") and principal.endswith(".amazonaws.com")


def evaluate(request: Request, policies: Policies) -> Decision:
    """Decide one request against the policies in force (see the module docstring for the rules)."""
    r = _Req(request, policies.boundary is not None)
    service = _is_service(request.principal)
    root = request.principal.endswith(":root") and request.principal.startswith("arn:aws")
    same_account = request.resource_account is None or request.resource_account == request.principal_account
    res_layer = _MUST_ALLOW.get(policies.resource_kind or "", "resource")
    layers: dict[str, str] = {}
    denies: list[tuple[str, Statement]] = []

    # Organizations: SCPs cap the caller's account, RCPs the resource's.
    scp_exempt = service or policies.service_linked_role or policies.management_account or not policies.scps
    scp_out = "absent"
    if not scp_exempt:
        scp_out, d = _org("scp", policies.scps, r, False)
        denies += [("scp", s) for s in d]
    layers["scp"] = scp_out
    rcp_exempt = policies.service_linked_role or policies.resource_management_account or not policies.rcps
    rcp_out = "absent"
    if not rcp_exempt:
        # RCPFullAWSAccess is attached at every level and cannot be detached, so RCPs only ever deny
        # (https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_policies_rcps.html).
        _, d = _org("rcp", policies.rcps, r, True)
        rcp_out = "deny" if d else "allow"
        denies += [("rcp", s) for s in d]
    layers["rcp"] = rcp_out

    res = _scan(res_layer, (policies.resource,), r, principal_side=True) if policies.resource else None
    if res is not None:
        denies += [(res_layer, s) for s in res.denies]
    ident = _scan("identity", policies.identity, r, principal_side=False) if not service else _Layer("identity")
    denies += [("identity", s) for s in ident.denies]
    bound = _scan("boundary", (policies.boundary,), r, principal_side=False) if policies.boundary and not service else None
    if bound is not None:
        denies += [("boundary", s) for s in bound.denies]
    sess = _scan("session", (policies.session,), r, principal_side=False) if policies.session and not service else None
    if sess is not None:
        denies += [("session", s) for s in sess.denies]

    def outcome(scanned: _Layer | None) -> str:
        if scanned is None:
            return "absent"
        return "deny" if scanned.denies else "allow" if scanned.allows else "implicit-deny"

    layers[res_layer] = outcome(res)
    layers["identity"] = "allow" if root and not ident.denies else outcome(ident) if policies.identity or root else "absent"
    layers["boundary"] = outcome(bound)
    layers["session"] = outcome(sess)
    frozen = MappingProxyType(dict(layers))

    if denies:
        return Decision(decision="ExplicitlyDenied", layer=denies[0][0],
                        statements=tuple(_ms(l, s) for l, s in denies), layers=frozen)
    if scp_out == "implicit-deny":
        return Decision(decision="ImplicitlyDenied", layer="scp", statements=(), layers=frozen)

    # The identity side: identity allow (the root user needs none) capped by boundary and session.
    ident_ok = bool(ident.allows) or root
    bound_ok = bound is None or bool(bound.allows)
    sess_ok = sess is None or bool(sess.allows)
    identity_side = ident_ok and bound_ok and sess_ok
    identity_stmts = [_ms("identity", s) for s, _ in ident.allows]
    identity_stmts += [_ms("boundary", s) for s, _ in (bound.allows if bound else [])]
    identity_stmts += [_ms("session", s) for s, _ in (sess.allows if sess else [])]

    res_allows = res.allows if res else []
    direct = [s for s, k in res_allows if k == DIRECT]
    role = [s for s, k in res_allows if k == ROLE]
    account = [s for s, k in res_allows if k == ACCOUNT]

    def blame_identity() -> str:
        if not ident_ok:
            return "identity"
        return "boundary" if not bound_ok else "session"

    def allowed(layer: str, stmts: list[MatchedStatement]) -> Decision:
        return Decision(decision="Allowed", layer=layer, statements=tuple(stmts), layers=frozen)

    def denied(layer: str) -> Decision:
        return Decision(decision="ImplicitlyDenied", layer=layer, statements=(), layers=frozen)

    if service:
        if direct:
            return allowed(res_layer, [_ms(res_layer, s) for s in direct])
        return denied(res_layer)

    if same_account and res_layer == "resource":
        # A grant naming the user or role session directly stands on its own; one naming the role
        # ARN is still capped by the boundary and the session policy.
        if identity_side:
            return allowed("identity", identity_stmts)
        if direct:
            return allowed(res_layer, [_ms(res_layer, s) for s in direct])
        if role and bound_ok and sess_ok:
            return allowed(res_layer, [_ms(res_layer, s) for s in role] + identity_stmts[len(ident.allows):])
        return denied(blame_identity())

    if same_account:
        # KMS key and trust policies must allow by themselves; a grant to the account root hands
        # the decision to IAM policies.
        if direct:
            return allowed(res_layer, [_ms(res_layer, s) for s in direct])
        if role and bound_ok and sess_ok:
            return allowed(res_layer, [_ms(res_layer, s) for s in role] + identity_stmts[len(ident.allows):])
        if account:
            if identity_side:
                return allowed("identity", [_ms(res_layer, s) for s in account] + identity_stmts)
            return denied(blame_identity())
        return denied(res_layer)

    # Cross-account: both the caller's side and the resource policy must allow.
    if not identity_side:
        return denied(blame_identity())
    grant = direct + role + account
    if not grant:
        return denied(res_layer)
    return allowed(res_layer, [_ms(res_layer, s) for s in grant] + identity_stmts)
