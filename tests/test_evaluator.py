"""Table-driven tests of the evaluator: every condition operator, every layer, malformed policies.

The tables live in fixtures/evaluator/ and each group or case names the AWS documentation page
that decides it (see the header of each fixture file for the URLs).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rolesmith.evaluator import NamedPolicy, Policies, PolicyError, Request, evaluate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "evaluator"
USER = "arn:aws:iam::111111111111:user/alice"


def _load(name: str) -> Any:
    return yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))


def _operator_cases() -> list[Any]:
    out = []
    for group in _load("operators.yaml")["groups"]:
        for op, key, policy_value, request_value, expected in group["cases"]:
            out.append(pytest.param(op, key, policy_value, request_value, expected, group["doc"],
                                    id=f"{op}-{key}-{policy_value}-{request_value}"))
    return out


def _decide(effect: str, condition: dict[str, Any], context: dict[str, Any]) -> str:
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"} if effect == "Deny" else {},
        {"Effect": effect, "Action": "s3:GetObject", "Resource": "*", "Condition": condition},
    ]}
    doc["Statement"] = [s for s in doc["Statement"] if s]
    req = Request(principal=USER, principal_account="111111111111", action="s3:GetObject",
                  resource="arn:aws:s3:::b/k", context=context)
    return evaluate(req, Policies(identity=(NamedPolicy(name="p", document=doc),))).decision


@pytest.mark.parametrize("op,key,policy_value,request_value,expected,doc", _operator_cases())
def test_condition_operator(op: str, key: str, policy_value: Any, request_value: Any, expected: bool, doc: str) -> None:
    context: dict[str, Any] = {"aws:PrincipalTag/team": "data"} if doc == "VARS" else {}
    if request_value is not None:
        context[key] = request_value
    condition = {op: {key: policy_value}}
    # The same condition must allow in an Allow statement and deny in a Deny statement.
    assert _decide("Allow", condition, context) == ("Allowed" if expected else "ImplicitlyDenied")
    assert _decide("Deny", condition, context) == ("ExplicitlyDenied" if expected else "Allowed")


def test_condition_keys_and_values_combine() -> None:
    """Keys within an operator and operators within a block are AND'd; values are OR'd.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html"""
    cond = {"StringEquals": {"aws:PrincipalTag/team": ["ops", "data"], "aws:PrincipalTag/env": "prod"},
            "Bool": {"aws:SecureTransport": "true"}}
    ok = {"aws:PrincipalTag/team": "data", "aws:PrincipalTag/env": "prod", "aws:SecureTransport": True}
    assert _decide("Allow", cond, ok) == "Allowed"
    for key in ok:
        broken = dict(ok)
        broken[key] = "nope"
        assert _decide("Allow", cond, broken) == "ImplicitlyDenied", key


def _layer_cases() -> list[Any]:
    table = _load("layers.yaml")
    return [pytest.param(case, table["defaults"], id=case["name"]) for case in table["cases"]]


def _policies(spec: dict[str, Any]) -> Policies:
    def doc(statements: list[Any]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": copy.deepcopy(statements)}

    return Policies(
        identity=tuple(NamedPolicy(name=f"identity[{i}]", document=doc(s)) for i, s in enumerate(spec.get("identity", []))),
        boundary=NamedPolicy(name="boundary", document=doc(spec["boundary"])) if "boundary" in spec else None,
        session=NamedPolicy(name="session", document=doc(spec["session"])) if "session" in spec else None,
        scps=tuple(tuple(NamedPolicy(name=f"scp[{i}][{j}]", document=doc(p)) for j, p in enumerate(level))
                   for i, level in enumerate(spec.get("scps", []))),
        rcps=tuple(tuple(NamedPolicy(name=f"rcp[{i}][{j}]", document=doc(p)) for j, p in enumerate(level))
                   for i, level in enumerate(spec.get("rcps", []))),
        resource=NamedPolicy(name="resource", document=doc(spec["resource"])) if "resource" in spec else None,
        resource_kind=spec.get("resource_kind"),
        service_linked_role=spec.get("service_linked_role", False),
        management_account=spec.get("management_account", False),
    )


@pytest.mark.parametrize("case,defaults", _layer_cases())
def test_layer(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    req = {**defaults, **case.get("request", {})}
    if "request_resource" in case:
        req["resource"] = case["request_resource"]
    context = {**req.pop("context", {}), **case.get("context", {})}
    request = Request(principal=req["principal"], principal_account="111111111111", action=req["action"],
                      resource=req["resource"], resource_account=req["resource_account"], context=context)
    decision = evaluate(request, _policies(case["policies"]))
    assert [decision.decision, decision.layer] == case["expect"], case["doc"]
    if "statements" in case:
        got = [[s.layer, s.policy, s.sid, s.index, s.effect] for s in decision.statements]
        assert got == case["statements"]


@pytest.mark.parametrize("case", _load("malformed.yaml"), ids=lambda c: c["error"][:60])
def test_malformed_policy_is_an_error(case: dict[str, Any]) -> None:
    request = Request(principal=USER, principal_account="111111111111", action="s3:GetObject", resource="arn:aws:s3:::b/k")
    policy = NamedPolicy(name="p", document=case["document"])
    policies = Policies(resource=policy, resource_kind="s3-bucket") if case["layer"] == "resource" else Policies(identity=(policy,))
    with pytest.raises(PolicyError) as err:
        evaluate(request, policies)
    assert str(err.value) == case["error"]
    assert err.value.exit_code == 2


def test_decision_reports_every_layer() -> None:
    request = Request(principal=USER, principal_account="111111111111", action="kms:Decrypt",
                      resource="arn:aws:kms:us-east-1:111111111111:key/k1")
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}
    key = {"Version": "2012-10-17", "Statement": [{"Sid": "EnableIAM", "Effect": "Allow",
                                                   "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                                                   "Action": "kms:*", "Resource": "*"}]}
    d = evaluate(request, Policies(identity=(NamedPolicy(name="id", document=allow),), boundary=NamedPolicy(name="pb", document=allow),
                                   scps=((NamedPolicy(name="full", document=allow),),),
                                   resource=NamedPolicy(name="key", document=key), resource_kind="kms-key"))
    assert d.allowed and d.layer == "identity"
    assert dict(d.layers) == {"scp": "allow", "rcp": "absent", "key-policy": "allow", "identity": "allow",
                              "boundary": "allow", "session": "absent"}
    assert [(s.layer, s.policy, s.sid) for s in d.statements] == [
        ("key-policy", "key", "EnableIAM"), ("identity", "id", None), ("boundary", "pb", None)]


def test_version_2008_has_no_policy_variables() -> None:
    """Variables need Version 2012-10-17; earlier policies treat ${...} literally.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html"""
    request = Request(principal=USER, principal_account="111111111111", action="s3:GetObject",
                      resource="arn:aws:s3:::home/alice/x", context={"s3:prefix": "home/${aws:username}"})
    stmt = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::home/${aws:username}/*",
            "Condition": {"StringEquals": {"s3:prefix": "home/${aws:username}"}}}
    new = evaluate(request, Policies(identity=(NamedPolicy(name="p", document={"Version": "2012-10-17", "Statement": [
        {**stmt, "Condition": {}}]}),)))
    old = evaluate(request, Policies(identity=(NamedPolicy(name="p", document={"Version": "2008-10-17", "Statement": [stmt]}),)))
    assert new.allowed
    assert not old.allowed  # the Resource ${aws:username} stays literal under 2008-10-17
    literal = Request(principal=USER, principal_account="111111111111", action="s3:GetObject",
                      resource="arn:aws:s3:::home/${aws:username}/x", context={"s3:prefix": "home/${aws:username}"})
    assert evaluate(literal, Policies(identity=(NamedPolicy(name="p", document={"Version": "2008-10-17", "Statement": [stmt]}),))).allowed


def test_value_objects_are_immutable() -> None:
    request = Request(principal=USER, principal_account="111111111111", action="s3:GetObject", resource="*")
    assert dict(request.context) == {}
    d = evaluate(request, Policies())
    with pytest.raises(TypeError):
        d.layers["identity"] = "allow"  # type: ignore[index]
    assert d.decision == "ImplicitlyDenied" and not d.allowed
