"""IAM ``SimulatePrincipalPolicy`` against the policies the sandbox enforces, by rolesmith's evaluator.

What is simulated follows the API reference
(https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html):

- the entity's own policies (``PolicySourceArn``: a user or role of the scenario), plus any documents
  in ``PolicyInputList``;
- its permissions boundary, or the one in ``PermissionsBoundaryPolicyInputList``, which replaces it;
- the SCPs of the entity's account, when it is in an organization (``OrganizationsDecisionDetail``);
- a resource-based policy only when ``ResourcePolicy`` is given: the simulator does not read the
  resource's own policy;
- condition keys only from ``ContextEntries``: the simulator adds none of its own, and reports keys
  that statements on the action and resource test but were not given in ``MissingContextValues``
  (per resource in ``ResourceSpecificResults`` when resources are named, as AWS does).

``CallerArn`` (default: the source entity) is the principal a resource policy is matched against;
``ResourceOwner`` the account owning the resources. Results are one per action and resource, in
request order, paged by ``Marker``/``MaxItems``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

from rolesmith.evaluator import Decision, NamedPolicy, Policies, PolicyError, Request, evaluate
from rolesmith.evaluator.match import action_matches, arn_matches
from rolesmith.sandbox.enforce import _levels, _named
from rolesmith.sandbox.errors import Response, client_error
from rolesmith.sandbox.world import World
from rolesmith.trail.wire import Call

_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
_DECISION = {"Allowed": "allowed", "ExplicitlyDenied": "explicitDeny", "ImplicitlyDenied": "implicitDeny"}
_LIST_TYPES = frozenset({"stringList", "numericList", "booleanList", "ipList", "binaryList", "dateList"})


def _esc(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _documents(values: Any, where: str) -> list[Mapping[str, Any]]:
    out = []
    for i, text in enumerate(values or (), 1):
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise PolicyError(f"{where}.{i}: not JSON ({err.msg})") from None
        if not isinstance(doc, dict):
            raise PolicyError(f"{where}.{i}: not a JSON object")
        out.append(doc)
    return out


def _context(entries: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    for entry in entries or ():
        values = [str(v) for v in entry.get("ContextKeyValues") or ()]
        ctx[str(entry.get("ContextKeyName"))] = values if entry.get("ContextKeyType") in _LIST_TYPES else (
            values[0] if len(values) == 1 else values)
    return ctx


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def _applies(st: Mapping[str, Any], action: str, resource: str) -> bool:
    """Does the statement name the action and resource? (Its conditions are what is being asked.)"""
    if "NotAction" in st:
        if any(action_matches(a, action) for a in _as_list(st["NotAction"])):
            return False
    elif not any(action_matches(a, action) for a in _as_list(st.get("Action"))):
        return False
    if resource == "*":
        return True
    if "NotResource" in st:
        return not any(arn_matches(r, resource) for r in _as_list(st["NotResource"]))
    return "Resource" not in st or any(arn_matches(r, resource) for r in _as_list(st["Resource"]))


def _missing(docs: list[Mapping[str, Any]], action: str, resource: str, given: set[str]) -> list[str]:
    """Condition keys tested by statements on this action and resource that ContextEntries lacks."""
    keys: set[str] = set()
    for doc in docs:
        statements = doc.get("Statement", [])
        for st in [statements] if isinstance(statements, Mapping) else statements:
            if not isinstance(st, Mapping) or not _applies(st, action, resource):
                continue
            for block in (st.get("Condition") or {}).values():
                if isinstance(block, Mapping):
                    keys.update(str(k) for k in block if str(k).lower() not in given)
    return sorted(keys)


def simulate_principal_policy(world: World, call: Call) -> Response:
    p = call.params
    source = str(p.get("PolicySourceArn") or "")
    spec = world.principal(source)
    if spec is None:
        return client_error(call, "POST", 404, "NoSuchEntity",
                            f"PolicySourceArn {source} is not a user or role of this sandbox.")
    try:
        extra = _documents(p.get("PolicyInputList"), "PolicyInputList")
        boundaries = _documents(p.get("PermissionsBoundaryPolicyInputList"), "PermissionsBoundaryPolicyInputList")
        resource_docs = _documents([p["ResourcePolicy"]] if p.get("ResourcePolicy") else [], "ResourcePolicy")
    except PolicyError as err:
        return client_error(call, "POST", 400, "MalformedPolicyDocument", str(err))
    acct = world.scenario.account(spec.account)
    boundary = boundaries[0] if boundaries else spec.boundary
    owner = str(p.get("ResourceOwner") or "")
    owner_account = owner.split(":")[4] if owner.count(":") >= 5 else spec.account
    policies = Policies(
        identity=_named("", spec.policies) + tuple(NamedPolicy(name=f"PolicyInputList.{i}", document=d)
                                                  for i, d in enumerate(extra, 1)),
        boundary=NamedPolicy(name="PermissionsBoundary", document=boundary) if boundary else None,
        scps=_levels("scp", acct.scps) if acct else (),
        resource=NamedPolicy(name="ResourcePolicy", document=resource_docs[0]) if resource_docs else None,
        service_linked_role=spec.service_linked, management_account=bool(acct and acct.management))
    context = _context(p.get("ContextEntries"))
    given = {k.lower() for k in context}
    considered = list(spec.policies.values()) + extra + ([boundary] if boundary else []) + resource_docs
    caller = str(p.get("CallerArn") or source)
    results = []
    try:
        for action in p.get("ActionNames") or ():
            for resource in p.get("ResourceArns") or ["*"]:
                request = Request(principal=caller, principal_account=spec.account, action=str(action),
                                  resource=str(resource), resource_account=owner_account, context=context)
                results.append(_result(str(action), str(resource), evaluate(request, policies), policies, spec.kind,
                                       _missing(considered, str(action), str(resource), given)))
    except PolicyError as err:
        return client_error(call, "POST", 400, "MalformedPolicyDocument", str(err))
    start = int(p["Marker"]) if str(p.get("Marker", "")).isdigit() else 0
    end = start + int(p.get("MaxItems") or 1000)
    more = f"<IsTruncated>true</IsTruncated><Marker>{end}</Marker>" if end < len(results) else "<IsTruncated>false</IsTruncated>"
    body = (f'<SimulatePrincipalPolicyResponse xmlns="{_NS}"><SimulatePrincipalPolicyResult>'
            f"<EvaluationResults>{''.join(results[start:end])}</EvaluationResults>{more}</SimulatePrincipalPolicyResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>")
    return Response(status=200, headers=(("Content-Type", "text/xml"),), body=body.encode())


def _result(action: str, resource: str, decision: Decision, policies: Policies, kind: str,
            missing: list[str]) -> str:
    statements = []
    for st in decision.statements:
        if st.layer == "identity":
            ptype = "" if st.policy.startswith("PolicyInputList.") else f"<SourcePolicyType>{kind}</SourcePolicyType>"
        elif st.layer == "resource":
            ptype = "<SourcePolicyType>resource</SourcePolicyType>"
        else:
            continue  # boundary and SCP outcomes have their own detail elements
        statements.append(f"<member><SourcePolicyId>{_esc(st.policy)}</SourcePolicyId>{ptype}</member>")
    matched = f"<MatchedStatements>{''.join(statements)}</MatchedStatements>"
    keys = f"<MissingContextValues>{''.join(f'<member>{_esc(k)}</member>' for k in missing)}</MissingContextValues>"
    decided = _DECISION[decision.decision]
    bound = ""
    if policies.boundary is not None:
        allowed = decision.layers.get("boundary") == "allow"
        bound = (f"<PermissionsBoundaryDecisionDetail><AllowedByPermissionsBoundary>{str(allowed).lower()}"
                 "</AllowedByPermissionsBoundary></PermissionsBoundaryDecisionDetail>")
    out = [f"<EvalActionName>{_esc(action)}</EvalActionName>", f"<EvalResourceName>{_esc(resource)}</EvalResourceName>",
           f"<EvalDecision>{decided}</EvalDecision>", matched]
    if resource == "*":
        out.append(keys)
    else:
        # Named resources carry their missing keys in ResourceSpecificResults, the top-level list
        # stays empty (EvaluationResult, MissingContextValues).
        out += ["<MissingContextValues/>",
                f"<ResourceSpecificResults><member><EvalResourceName>{_esc(resource)}</EvalResourceName>"
                f"<EvalResourceDecision>{decided}</EvalResourceDecision>{matched}{keys}{bound}</member>"
                "</ResourceSpecificResults>"]
    if policies.scps and not policies.management_account:
        allowed = decision.layers.get("scp") == "allow"
        out.append(f"<OrganizationsDecisionDetail><AllowedByOrganizations>{str(allowed).lower()}"
                   "</AllowedByOrganizations></OrganizationsDecisionDetail>")
    out.append(bound)
    return f"<member>{''.join(out)}</member>"
