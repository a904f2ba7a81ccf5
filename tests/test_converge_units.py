"""Fast pieces of converge: document merging (a key policy keeps its administration statement), which
fixes stop the loop, resource-policy snapshot/restore and --start-from on moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolesmith.converge import ConvergeOptions, converge, docs
from rolesmith.converge.aws import AwsBackend
from rolesmith.converge.loop import _GENERATED_ID, _created_ids, _stop_for, _widen
from rolesmith.converge.model import AppliedFix

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "converge"
ADMIN = {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
         "Action": "kms:*", "Resource": "*"}
USE = {"Sid": "AllowKmsGenerateDataKey", "Effect": "Allow",
       "Principal": {"AWS": "arn:aws:iam::111111111111:role/ReportWriter"}, "Action": "kms:GenerateDataKey",
       "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}


def test_merge_keeps_key_administration_and_is_idempotent():
    doc, changed = docs.merge({"Version": "2012-10-17", "Statement": [ADMIN]}, [USE])
    assert changed and doc["Statement"] == [ADMIN, USE]
    again, changed = docs.merge(doc, [USE])
    assert not changed and again == doc
    # Same shape, another action: the existing statement grows instead of a near-duplicate appearing.
    wider, changed = docs.merge(doc, [{**USE, "Sid": "AllowKmsDecrypt", "Action": "kms:Decrypt"}])
    assert changed and wider["Statement"][0] == ADMIN and len(wider["Statement"]) == 2
    assert wider["Statement"][1]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_merge_never_joins_different_resources_or_conditions():
    a = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a/*"}
    b = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}
    doc, _ = docs.merge(None, [a, b])
    assert doc == {"Version": "2012-10-17", "Statement": [a, b]}


def _fix(layer: str, op: str = "add-statements") -> AppliedFix:
    return AppliedFix(layer=layer, target="arn:x", op=op, summary=layer, applied=False)


@pytest.mark.parametrize("layers,apply,expected", [
    (["identity"], False, None),
    (["identity", "key-policy"], False, "resource-owner"),
    (["identity", "key-policy"], True, None),
    (["resource"], True, None),
    (["boundary"], True, "guardrail"),
    (["scp", "identity"], False, "guardrail"),
    (["session"], True, "guardrail"),
])
def test_stop_for(layers, apply, expected):
    stop = _stop_for([_fix(x) for x in layers], ConvergeOptions(role="r", apply_resource_policies=apply))
    assert (stop[0] if stop else None) == expected


@pytest.mark.parametrize("value,generated", [("j-3ABCDEF12345", True), ("i-0abc12345def67890", True),
                                             ("sg-0123456789abcdef0", True), ("acme-service-reports", False),
                                             ("emr-7.1.0", False), ("nightly-analytics", False)])
def test_generated_id_shape(value, generated):
    assert bool(_GENERATED_ID.fullmatch(value)) == generated


def test_widen_created_ids_only_in_identity_fixes():
    stmt = {"Effect": "Allow", "Action": "elasticmapreduce:DescribeCluster",
            "Resource": "arn:aws:elasticmapreduce:us-east-1:333333333333:cluster/j-3ABCDEF12345"}
    fix = AppliedFix(layer="identity", target="r", op="add-statements", summary="s", statements=(stmt,))
    assert _widen(fix, {"j-3ABCDEF12345"}).statements[0]["Resource"] == \
        "arn:aws:elasticmapreduce:us-east-1:333333333333:cluster/*"
    assert _widen(fix, {"j-OTHER"}).statements == (stmt,)
    bucket = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::acme-service-reports/x"}
    named = AppliedFix(layer="identity", target="r", op="add-statements", summary="s", statements=(bucket,))
    assert _widen(named, _created_ids([])) is named
    other = AppliedFix(layer="key-policy", target="k", op="add-statements", summary="s", statements=(stmt,))
    assert _widen(other, {"j-3ABCDEF12345"}) is other


@pytest.fixture
def moto_session(mocked_aws):
    mocked_aws.client("iam").create_role(RoleName="report-writer", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "123456789012"},
                                                 "Action": "sts:AssumeRole"}]}))
    return mocked_aws


def test_resource_policies_restored_exactly(moto_session):
    kms = moto_session.client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    original_key = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    s3 = moto_session.client("s3")
    s3.create_bucket(Bucket="customer-inbox")
    backend = AwsBackend(ConvergeOptions(role="report-writer", session=moto_session))
    backend.prepare(None, "current")
    for layer, target in (("key-policy", key), ("resource", "arn:aws:s3:::customer-inbox")):
        doc, _ = docs.merge(backend.resource_document(layer, target), [{**USE, "Resource": "*"} if layer == "key-policy"
                                                                        else {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/report-writer"},
                                                                              "Action": "s3:PutObject", "Resource": "arn:aws:s3:::customer-inbox/*"}])
        backend.put_resource(layer, target, doc)
    edited = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert edited["Statement"][0] == json.loads(original_key)["Statement"][0]  # administration kept
    assert "s3:PutObject" in s3.get_bucket_policy(Bucket="customer-inbox")["Policy"]
    assert backend.finish(False) is True
    assert kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"] == original_key
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket="customer-inbox")


@pytest.mark.parametrize("start_from", ["current", "recording"])
def test_start_from(moto_session, monkeypatch, tmp_path, start_from):
    iam = moto_session.client("iam")
    original = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                        "Resource": "arn:aws:s3:::reports"}]}
    iam.put_role_policy(RoleName="report-writer", PolicyName="list", PolicyDocument=json.dumps(original))
    seen = []

    def run(self, command, run_dir):
        names = iam.list_role_policies(RoleName="report-writer")["PolicyNames"]
        seen.append({n: iam.get_role_policy(RoleName="report-writer", PolicyName=n)["PolicyDocument"] for n in names})
        return 0, None, FIXTURES / "granted_get.jsonl"

    monkeypatch.setattr(AwsBackend, "run", run)
    result = converge(["true"], ConvergeOptions(role="report-writer", session=moto_session, out_dir=tmp_path,
                                                start_from=start_from, recording=FIXTURES / "granted_get.jsonl"))
    assert result.stopped_reason == "converged" and result.restored is False
    if start_from == "current":
        assert seen == [{"list": original}]
    else:
        assert list(seen[0]) == ["rolesmith-converge"]
        assert "s3:GetObject" in json.dumps(seen[0]["rolesmith-converge"])
    # The final policies are built from the clean run, as `rolesmith build` would.
    assert "s3:GetObject" in json.dumps(result.policies.to_dict())
    assert (tmp_path / "policies.json").exists()
