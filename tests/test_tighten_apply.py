"""``tighten --apply`` then ``--rollback`` on moto's IAM: the role comes back exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from rolesmith.tighten import TightenInputError, TightenOptions, VerificationError, rollback_role, tighten
from rolesmith.tighten.apply import INLINE_NAME, apply_replacement, snapshot

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tighten"
ACCOUNT = "111122223333"  # the fixture trails' account
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _managed_doc(name: str) -> dict:
    path = FIX / "roles" / "identity" / "data-pipeline" / f"{name}.json"
    return json.loads(path.read_text())["PolicyVersion"]["Document"]


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def _full_state(iam, name: str) -> dict:
    """Everything apply may touch, including every version of each customer-managed policy."""
    state = snapshot(iam, name)
    versions = {}
    for arn in state["attached_policies"]:
        if ":aws:policy/" in arn:
            continue
        versions[arn] = sorted((v["VersionId"], v["IsDefaultVersion"]) for v in iam.list_policy_versions(PolicyArn=arn)["Versions"])
    role = iam.get_role(RoleName=name)["Role"]
    return {**state, "versions": versions, "trust": role["AssumeRolePolicyDocument"],
            "boundary": role.get("PermissionsBoundary")}


def _report(session):
    return tighten("data-pipeline", TightenOptions(trails=(FIX / "trails" / "s3_pipeline.jsonl",), session=session))


def test_inline_strategy_round_trips(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # so an AWS managed policy can be attached
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="legacy-extra",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}))
    arn = iam.create_policy(PolicyName="AmazonS3FullAccessCopy", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="data-pipeline", PolicyArn=arn)
    iam.attach_role_policy(RoleName="data-pipeline", PolicyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")
    before = _full_state(iam, "data-pipeline")

    report = _report(aws)
    assert report.current.source == "iam"
    assert {(p.name, p.kind) for p in report.current.policies} == {
        ("legacy-extra", "inline"), ("AmazonS3FullAccessCopy", "customer-managed"), ("AmazonS3FullAccess", "aws-managed")}
    backup = tmp_path / "backup.json"
    change = apply_replacement(report, backup, session=aws)
    assert change.actions[0] == f"iam:PutRolePolicy data-pipeline {INLINE_NAME}"
    after = snapshot(iam, "data-pipeline")
    assert after["attached_policies"] == [] and list(after["inline_policies"]) == [INLINE_NAME]
    assert after["inline_policies"][INLINE_NAME] == report.replacement.identity_policies[0].policy
    saved = json.loads(backup.read_text())
    assert saved["strategy"] == "inline" and saved["inline_policies"] == before["inline_policies"]

    undo = rollback_role("data-pipeline", backup, session=aws)
    assert f"iam:DeleteRolePolicy data-pipeline {INLINE_NAME}" in undo.actions
    assert _full_state(iam, "data-pipeline") == before


def test_single_customer_managed_policy_gets_a_new_version_and_back(aws, tmp_path: Path) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    arn = iam.create_policy(PolicyName="pipeline", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="data-pipeline", PolicyArn=arn)
    before = _full_state(iam, "data-pipeline")

    report = _report(aws)
    change = apply_replacement(report, tmp_path / "b.json", session=aws)
    assert change.actions == (f"iam:CreatePolicyVersion {arn} v2 (default)",)
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
    assert default == "v2" and doc == report.replacement.identity_policies[0].policy

    rollback_role(f"arn:aws:iam::{ACCOUNT}:role/data-pipeline", tmp_path / "b.json", session=aws)
    assert _full_state(iam, "data-pipeline") == before


def test_rollback_of_an_untouched_role_changes_nothing(aws, tmp_path: Path) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="all-s3",
                        PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))
    apply_replacement(_report(aws), tmp_path / "b.json", session=aws)
    rollback_role("data-pipeline", tmp_path / "b.json", session=aws)
    assert rollback_role("data-pipeline", tmp_path / "b.json", session=aws).actions == ()


def test_apply_refuses_an_existing_backup_and_a_failed_verification(aws, tmp_path: Path) -> None:
    from dataclasses import replace

    from rolesmith.tighten.model import CheckedCall, Verification

    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="all-s3",
                        PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))
    report = _report(aws)
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    with pytest.raises(TightenInputError) as err:
        apply_replacement(report, existing, session=aws)
    assert str(err.value) == f"{existing}: already exists; pass a new backup path so no earlier backup is lost"
    failed = replace(report, verification=Verification(checked=1, failures=(
        CheckedCall(action="s3:GetObject", resource="arn:aws:s3:::b/k", decision="ImplicitlyDenied"),)))
    with pytest.raises(VerificationError) as err2:
        apply_replacement(failed, tmp_path / "new.json", session=aws)
    assert str(err2.value) == (f"{report.role}: the replacement denies 1 used call(s); not applied "
                               "(see the verification section of the report)")
    assert not (tmp_path / "new.json").exists()
    assert list(snapshot(iam, "data-pipeline")["inline_policies"]) == ["all-s3"]


def test_unknown_role_in_iam(aws) -> None:
    with pytest.raises(TightenInputError) as err:
        tighten("ghost", TightenOptions(trails=(FIX / "trails" / "s3_pipeline.jsonl",), session=aws))
    assert str(err.value) == ("role ghost: no such role in this account; check the name, the AWS profile, "
                              "or pass --current-policies DIR")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "{path}: not valid JSON; pass the backup file --apply wrote, unedited"),
        ('{"format": "something-else"}', "{path}: not a rolesmith tighten backup (rolesmith-tighten-backup/1); pass the file --apply wrote"),
    ],
)
def test_bad_backup_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(TightenInputError) as err:
        rollback_role("data-pipeline", path)
    assert str(err.value) == message.format(path=path)


def test_backup_of_another_role(aws, tmp_path: Path) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="all-s3", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))
    apply_replacement(_report(aws), tmp_path / "b.json", session=aws)
    with pytest.raises(TightenInputError) as err:
        rollback_role("other-role", tmp_path / "b.json", session=aws)
    assert str(err.value) == f"{tmp_path / 'b.json'}: a backup of role data-pipeline, not other-role; pass that role's backup"


def test_boundary_is_read_counted_and_left_alone(aws, tmp_path: Path) -> None:
    """A boundary caps what the identity policies grant
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html): only S3 reads
    and writes count as granted, and apply/rollback never touch it."""
    iam = aws.client("iam")
    cap = iam.create_policy(PolicyName="cap", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:PutObject"], "Resource": "*"}]}))["Policy"]["Arn"]
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST), PermissionsBoundary=cap)
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="all-s3", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))
    before = _full_state(iam, "data-pipeline")
    report = _report(aws)
    assert report.to_dict()["boundary"] == cap
    s3 = next(s for s in report.services if s.service == "s3")
    from rolesmith.tighten._dataset import expand_actions

    assert s3.granted == len(expand_actions("s3:Get*") | expand_actions("s3:List*") | {"s3:PutObject"})
    assert not any(s.service == "s3-object-lambda" and s.granted for s in report.services)
    apply_replacement(report, tmp_path / "b.json", session=aws)
    assert iam.get_role(RoleName="data-pipeline")["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == cap
    rollback_role("data-pipeline", tmp_path / "b.json", session=aws)
    assert _full_state(iam, "data-pipeline") == before


def test_a_shared_managed_policy_is_not_rewritten(aws, tmp_path: Path) -> None:
    """A new version of a policy attached elsewhere would tighten the other role too: inline instead."""
    iam = aws.client("iam")
    arn = iam.create_policy(PolicyName="shared", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))["Policy"]["Arn"]
    for role in ("data-pipeline", "other"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    change = apply_replacement(_report(aws), tmp_path / "b.json", session=aws)
    assert change.actions == (f"iam:PutRolePolicy data-pipeline {INLINE_NAME}", f"iam:DetachRolePolicy data-pipeline {arn}")
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v1"]


def test_a_policy_with_five_versions_is_refused(aws, tmp_path: Path) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    doc = json.dumps(_managed_doc("AmazonS3FullAccess"))
    arn = iam.create_policy(PolicyName="busy", PolicyDocument=doc)["Policy"]["Arn"]
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc)
    iam.attach_role_policy(RoleName="data-pipeline", PolicyArn=arn)
    with pytest.raises(TightenInputError) as err:
        apply_replacement(_report(aws), tmp_path / "b.json", session=aws)
    assert str(err.value) == (f"{arn}: has 5 versions, IAM's maximum; delete a non-default version first "
                              "(--apply never deletes one: --rollback could not restore it)")
    assert not (tmp_path / "b.json").exists()


def test_large_inline_policies_are_removed_before_the_replacement_goes_in(aws, tmp_path: Path) -> None:
    """A role's inline policies share one size budget (reference_iam-quotas.html): when the old ones and
    the replacement would not fit together, the old ones go first."""
    iam = aws.client("iam")
    iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))
    from rolesmith.tighten.apply import INLINE_ROLE_LIMIT, _size

    iam.put_role_policy(RoleName="data-pipeline", PolicyName="all-s3", PolicyDocument=json.dumps(_managed_doc("AmazonS3FullAccess")))
    report = _report(aws)
    iam.delete_role_policy(RoleName="data-pipeline", PolicyName="all-s3")  # only "big" from here on
    new = _size(report.replacement.identity_policies[0].policy)
    big = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": []}]}
    while _size(big) + new <= INLINE_ROLE_LIMIT:
        big["Statement"][0]["Resource"].append(f"arn:aws:s3:::bucket-{len(big['Statement'][0]['Resource']):04d}/*")
    assert _size(big) <= INLINE_ROLE_LIMIT  # fits alone, not together with the replacement
    iam.put_role_policy(RoleName="data-pipeline", PolicyName="big", PolicyDocument=json.dumps(big))
    before = _full_state(iam, "data-pipeline")
    change = apply_replacement(report, tmp_path / "b.json", session=aws)
    assert change.actions == ("iam:DeleteRolePolicy data-pipeline big", f"iam:PutRolePolicy data-pipeline {INLINE_NAME}")
    rollback_role("data-pipeline", tmp_path / "b.json", session=aws)
    assert _full_state(iam, "data-pipeline") == before
