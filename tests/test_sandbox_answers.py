"""Reads of enforced state answered from what the sandbox enforces, and SimulatePrincipalPolicy.

moto's own copy does not hold the scenario's inline policies and is not what requests are judged
by, so GetKeyPolicy, GetBucketEncryption, List/GetRolePolicy, List/GetUserPolicy come from the
sandbox's state (``sb.world``) and follow changes made through the sandbox. SimulatePrincipalPolicy
is evaluated by rolesmith's evaluator; its cases are in fixtures/sandbox/simulate_cases.yaml.
Response shapes: https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html,
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html (URL-encoded document),
https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyPolicy.html,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketEncryption.html.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from rolesmith.sandbox import start_sandbox

ROOT = Path(__file__).resolve().parent.parent
ACCT = "777777777777"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/0a1b2c3d-7777-4000-8000-000000000007"
CFG = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
CASES = yaml.safe_load((ROOT / "fixtures/sandbox/simulate_cases.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sb() -> Any:
    with start_sandbox(ROOT / "fixtures/sandbox/answers.yaml") as handle:
        yield handle


@pytest.fixture()
def fresh(sb: Any) -> Any:
    """The sandbox as the scenario declares it, for a test that changes state (put back after it)."""
    sb.reset()
    yield sb
    sb.reset()


def client(sb: Any, who: str, service: str) -> Any:
    env = sb.env_for(who)
    return boto3.session.Session(region_name="us-east-1").client(
        service, endpoint_url=sb.endpoint_url, config=CFG, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_session_token=env.get("AWS_SESSION_TOKEN"))


def _error(fn: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"].get("Message", ""), err["ResponseMetadata"]["HTTPStatusCode"]


# -- inline policies ---------------------------------------------------------------------------
def test_role_policies_are_the_scenarios_and_follow_changes(fresh: Any) -> None:
    iam = client(fresh, "app/admin", "iam")
    assert iam.list_role_policies(RoleName="worker")["PolicyNames"] == ["reads"]
    reads = iam.get_role_policy(RoleName="worker", PolicyName="reads")
    assert (reads["RoleName"], reads["PolicyName"]) == ("worker", "reads")
    assert reads["PolicyDocument"] == fresh.world.principal(f"arn:aws:iam::{ACCT}:role/worker").policies["reads"]
    extra = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                                                     "Resource": f"arn:aws:sqs:us-east-1:{ACCT}:work"}]}
    iam.put_role_policy(RoleName="worker", PolicyName="extra", PolicyDocument=json.dumps(extra))
    assert iam.list_role_policies(RoleName="worker")["PolicyNames"] == ["extra", "reads"]
    assert iam.get_role_policy(RoleName="worker", PolicyName="extra")["PolicyDocument"] == extra
    iam.delete_role_policy(RoleName="worker", PolicyName="reads")
    assert iam.list_role_policies(RoleName="worker")["PolicyNames"] == ["extra"]
    assert _error(iam.get_role_policy, RoleName="worker", PolicyName="reads") == (
        "NoSuchEntity", "The role policy with name reads cannot be found.", 404)


def test_role_policies_page_by_marker(fresh: Any) -> None:
    iam = client(fresh, "app/admin", "iam")
    iam.put_role_policy(RoleName="worker", PolicyName="another", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
    first = iam.list_role_policies(RoleName="worker", MaxItems=1)
    assert (first["PolicyNames"], first["IsTruncated"]) == (["another"], True)
    second = iam.list_role_policies(RoleName="worker", MaxItems=1, Marker=first["Marker"])
    assert (second["PolicyNames"], second["IsTruncated"]) == (["reads"], False)


def test_user_policies(sb: Any) -> None:
    iam = client(sb, "app/admin", "iam")
    assert iam.list_user_policies(UserName="capped")["PolicyNames"] == ["queues"]
    assert iam.get_user_policy(UserName="capped", PolicyName="queues")["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]


def test_an_unknown_role_is_left_to_iam(sb: Any) -> None:
    iam = client(sb, "app/admin", "iam")
    code, _msg, status = _error(iam.list_role_policies, RoleName="nobody-here")
    assert (code, status) == ("NoSuchEntity", 404)


# -- key policy and bucket encryption ----------------------------------------------------------
def test_key_policy_is_the_enforced_one(fresh: Any) -> None:
    kms = client(fresh, "app/admin", "kms")
    got = kms.get_key_policy(KeyId=KEY, PolicyName="default")
    assert json.loads(got["Policy"]) == fresh.world.key_policy(KEY)
    assert json.loads(got["Policy"])["Statement"][0]["Sid"] == "Admin"
    new = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin2", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*",
         "Resource": "*"}]}
    kms.put_key_policy(KeyId=KEY, PolicyName="default", Policy=json.dumps(new))
    assert json.loads(kms.get_key_policy(KeyId="0a1b2c3d-7777-4000-8000-000000000007")["Policy"]) == new


def test_bucket_encryption_is_the_enforced_one(fresh: Any) -> None:
    s3 = client(fresh, "app/admin", "s3")

    def default(bucket: str) -> dict[str, Any]:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        return rules[0]["ApplyServerSideEncryptionByDefault"]

    assert default("answers-data") == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}
    assert default("answers-plain") == {"SSEAlgorithm": "AES256"}  # every bucket has SSE-S3 by default
    s3.put_bucket_encryption(Bucket="answers-data", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    assert fresh.world.bucket("answers-data").encryption == "AES256"
    assert default("answers-data") == {"SSEAlgorithm": "AES256"}


def test_reads_are_authorised_and_recorded(sb: Any) -> None:
    s3 = client(sb, "app/capped", "s3")
    assert _error(s3.get_bucket_encryption, Bucket="answers-data") == ("AccessDenied", "Access Denied", 403)
    client(sb, "app/admin", "kms").get_key_policy(KeyId=KEY, PolicyName="default")
    records = [r for r in sb.records() if r["eventName"] in ("GetKeyPolicy", "GetBucketEncryption")]
    assert [(r["eventName"], r.get("errorCode")) for r in records][-2:] == [
        ("GetBucketEncryption", "AccessDenied"), ("GetKeyPolicy", None)]


# -- SimulatePrincipalPolicy -------------------------------------------------------------------
def _simulate(sb: Any, case: dict[str, Any], **extra: Any) -> dict[str, Any]:
    iam = client(sb, "app/admin", "iam")
    kwargs: dict[str, Any] = {"PolicySourceArn": f"arn:aws:iam::{ACCT}:{case['source']}",
                              "ActionNames": [case["action"]], "ResourceArns": [case["resource"]], **extra}
    if case.get("context"):
        kwargs["ContextEntries"] = [{"ContextKeyName": k, "ContextKeyValues": v, "ContextKeyType": "stringList"}
                                    for k, v in case["context"].items()]
    if case.get("inputs"):
        kwargs["PolicyInputList"] = case["inputs"]
    if case.get("boundaries"):
        kwargs["PermissionsBoundaryPolicyInputList"] = case["boundaries"]
    return iam.simulate_principal_policy(**kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_simulate_principal_policy(sb: Any, case: dict[str, Any]) -> None:
    (result,) = _simulate(sb, case)["EvaluationResults"]
    assert (result["EvalActionName"], result["EvalResourceName"]) == (case["action"], case["resource"])
    assert result["EvalDecision"] == case["expect"]
    assert [m["SourcePolicyId"] for m in result["MatchedStatements"]] == case["matched"]
    if case["resource"] == "*":
        assert result["MissingContextValues"] == case.get("missing", [])
        assert "ResourceSpecificResults" not in result
    else:  # a named resource carries its own result, with the missing keys
        assert result["MissingContextValues"] == []
        (specific,) = result["ResourceSpecificResults"]
        assert (specific["EvalResourceName"], specific["EvalResourceDecision"]) == (case["resource"], case["expect"])
        assert [m["SourcePolicyId"] for m in specific["MatchedStatements"]] == case["matched"]
        assert specific["MissingContextValues"] == case.get("missing", [])
    assert result.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") == case.get("org")
    assert result.get("PermissionsBoundaryDecisionDetail", {}).get("AllowedByPermissionsBoundary") == case.get("boundary")


def test_simulate_types_matched_statements_and_pages(sb: Any) -> None:
    iam = client(sb, "app/admin", "iam")
    args = {"PolicySourceArn": f"arn:aws:iam::{ACCT}:role/worker", "ActionNames": ["s3:GetObject", "s3:DeleteObject"],
            "ResourceArns": ["arn:aws:s3:::answers-data/a"]}
    first = iam.simulate_principal_policy(MaxItems=1, **args)
    assert first["IsTruncated"] is True
    assert first["EvaluationResults"][0]["MatchedStatements"] == [{"SourcePolicyId": "reads", "SourcePolicyType": "role"}]
    second = iam.simulate_principal_policy(MaxItems=1, Marker=first["Marker"], **args)
    assert second["IsTruncated"] is False
    assert [r["EvalActionName"] for r in second["EvaluationResults"]] == ["s3:DeleteObject"]


def test_simulate_errors(sb: Any) -> None:
    iam = client(sb, "app/admin", "iam")
    code, msg, status = _error(iam.simulate_principal_policy, PolicySourceArn=f"arn:aws:iam::{ACCT}:role/ghost",
                               ActionNames=["s3:GetObject"])
    assert (code, status) == ("NoSuchEntity", 404)
    assert msg == f"PolicySourceArn arn:aws:iam::{ACCT}:role/ghost is not a user or role of this sandbox."
    code, msg, status = _error(iam.simulate_principal_policy, PolicySourceArn=f"arn:aws:iam::{ACCT}:role/worker",
                               ActionNames=["s3:GetObject"], PolicyInputList=["{not json"])
    assert (code, status) == ("MalformedPolicyDocument", 400)
    assert msg.startswith("PolicyInputList.1: not JSON")


def test_simulate_is_itself_authorised(sb: Any) -> None:
    iam = client(sb, "app/capped", "iam")
    code, msg, status = _error(iam.simulate_principal_policy, PolicySourceArn=f"arn:aws:iam::{ACCT}:role/worker",
                               ActionNames=["s3:GetObject"])
    assert (code, status) == ("AccessDenied", 403)
    assert msg.startswith(f"User: arn:aws:iam::{ACCT}:user/capped is not authorized to perform: "
                          "iam:SimulatePrincipalPolicy on resource: ")


# -- moto's copy, created on first need --------------------------------------------------------
def test_moto_is_seeded_per_service_before_the_first_request_that_reads_it(fresh: Any) -> None:
    from moto.kms.models import kms_backends
    from moto.s3.models import s3_backends

    assert KEY.rsplit("/", 1)[1] not in kms_backends[ACCT]["us-east-1"].keys  # not yet: nothing asked KMS
    assert "answers-data" not in s3_backends[ACCT]["aws"].buckets
    assert "answers-data" in [b["Name"] for b in client(fresh, "app/admin", "s3").list_buckets()["Buckets"]]
    assert KEY.rsplit("/", 1)[1] not in kms_backends[ACCT]["us-east-1"].keys  # S3 does not read KMS state
    meta = client(fresh, "app/admin", "kms").describe_key(KeyId=KEY)["KeyMetadata"]
    assert (meta["Arn"], meta["Description"]) == (KEY, "rolesmith sandbox key data-key")


def test_a_seeding_failure_names_the_scenario_and_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolesmith.sandbox import load_scenario, seed

    scenario = load_scenario(ROOT / "fixtures/sandbox/answers.yaml")
    calls: list[str] = []

    def refuse(sc: Any) -> None:
        calls.append(sc.source)
        raise ValueError("refused")

    monkeypatch.setitem(seed._SEED, "kms", refuse)
    seeder = seed.Seeder(scenario)
    with pytest.raises(seed.SeedError) as info:
        seeder.ensure_for("kms")
    assert str(info.value) == (f"{scenario.source}: cannot create the scenario's kms resources in moto "
                               "(ValueError: refused); check the moto version")
    seeder.ensure_for("kms")  # a retry would only trip over what the first attempt created
    assert calls == [scenario.source]
