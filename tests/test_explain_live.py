"""``explain --live``: policies fetched read-only with boto3, against moto; decoding with botocore's Stubber.

moto implements the IAM, S3, KMS and Organizations read calls used here; sts:DecodeAuthorizationMessage
is stubbed with the response shape of the STS API reference
(https://docs.aws.amazon.com/STS/latest/APIReference/API_DecodeAuthorizationMessage.html).
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

moto = pytest.importorskip("moto")

from rolesmith.explain import explain_event  # noqa: E402
from rolesmith.explain.live import LiveStore  # noqa: E402
from rolesmith.trail import normalize  # noqa: E402

ACCOUNT = "123456789012"  # moto's default account
WRITER = f"arn:aws:iam::{ACCOUNT}:role/writer"


@pytest.fixture()
def session(monkeypatch: pytest.MonkeyPatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        yield boto3.Session(region_name="us-east-1")


def _event(source: str, name: str, params: dict, *, message: str = "Access Denied", code: str = "AccessDenied",
           account: str = ACCOUNT):
    writer = f"arn:aws:iam::{account}:role/writer"
    raw = {
        "eventVersion": "1.09", "eventTime": "2024-05-01T12:00:00Z", "eventSource": source, "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.10", "userAgent": "aws-cli/2",
        "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::{account}:assumed-role/writer/s1",
                         "accountId": account, "principalId": "AROAX:s1",
                         "sessionContext": {"sessionIssuer": {"type": "Role", "arn": writer, "accountId": account,
                                                              "userName": "writer"}}},
        "requestParameters": params, "errorCode": code, "errorMessage": message, "eventID": "e1",
        "recipientAccountId": account, "eventType": "AwsApiCall",
    }
    return normalize(raw, "live#0")


def _role(iam, name: str, trust_service: str, inline: dict | None = None) -> None:
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": trust_service},
                                                     "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    if inline:
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(inline))


def test_same_account_sse_kms_key_policy_lacks_the_caller(session) -> None:
    iam, s3, kms = session.client("iam"), session.client("s3"), session.client("kms")
    _role(iam, "writer", "lambda.amazonaws.com", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::inbox/*"}]})
    s3.create_bucket(Bucket="inbox")
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/key-admin"},
         "Action": "kms:*", "Resource": "*"}]}
    key = kms.create_key(Policy=json.dumps(key_policy))["KeyMetadata"]["Arn"]
    event = _event("s3.amazonaws.com", "PutObject", {"bucketName": "inbox", "key": "a.csv",
                                                     "x-amz-server-side-encryption-aws-kms-key-id": key})
    store = LiveStore(session)
    e = explain_event(event, store, decoder=store.decode)
    assert (e.reason, e.basis) == ("INDIRECT_KMS", "policies")
    # Same account, the key policy must allow by itself; naming the role there is enough (no identity fix).
    assert [(f.layer, f.target) for f in e.fixes] == [("key-policy", key)]
    assert e.fixes[0].document["Statement"][0]["Principal"] == {"AWS": WRITER}
    assert not e.missing


def test_trust_policy_read_from_iam(session) -> None:
    iam = session.client("iam")
    _role(iam, "writer", "lambda.amazonaws.com", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/deployer"}]})
    _role(iam, "deployer", "codebuild.amazonaws.com")
    event = _event("sts.amazonaws.com", "AssumeRole", {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/deployer",
                                                       "roleSessionName": "x"})
    e = explain_event(event, LiveStore(session))
    assert (e.reason, e.basis) == ("TRUST_POLICY", "policies")
    assert [(f.layer, f.target) for f in e.fixes] == [("trust-policy", f"arn:aws:iam::{ACCOUNT}:role/deployer")]


def test_boundary_and_bucket_policy_deny(session) -> None:
    iam, s3 = session.client("iam"), session.client("s3")
    boundary = iam.create_policy(PolicyName="bound", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))["Policy"]["Arn"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="writer", AssumeRolePolicyDocument=json.dumps(trust), PermissionsBoundary=boundary)
    managed = iam.create_policy(PolicyName="rw", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::data/*"}]}))
    iam.attach_role_policy(RoleName="writer", PolicyArn=managed["Policy"]["Arn"])
    s3.create_bucket(Bucket="data")
    e = explain_event(_event("s3.amazonaws.com", "PutObject", {"bucketName": "data", "key": "k"}), LiveStore(session))
    assert (e.reason, e.layer) == ("MISSING_BOUNDARY_ALLOW", "boundary")
    assert e.fixes[0].target == boundary
    s3.put_bucket_policy(Bucket="data", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoReads", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]}))
    e = explain_event(_event("s3.amazonaws.com", "GetObject", {"bucketName": "data", "key": "k"}), LiveStore(session))
    assert (e.reason, e.fixes[0].op, e.fixes[0].sid) == ("EXPLICIT_DENY_RESOURCE", "change-statement", "NoReads")
    assert e.fixes[0].target == "arn:aws:s3:::data"


def test_unreadable_principal_is_reported_missing(session) -> None:
    # The writer role does not exist in this account: IAM says NoSuchEntity, so nothing grants; the
    # answer is the identity fix, and no error escapes.
    e = explain_event(_event("s3.amazonaws.com", "GetObject", {"bucketName": "nobucket", "key": "k"}), LiveStore(session))
    assert e.reason == "MISSING_IDENTITY_ALLOW"


def test_scp_from_organizations(session) -> None:
    org, iam = session.client("organizations"), session.client("iam")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    org.enable_policy_type(RootId=root, PolicyType="SERVICE_CONTROL_POLICY")
    deny = org.create_policy(Name="NoSqs", Type="SERVICE_CONTROL_POLICY", Description="d", Content=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Sid": "NoSqs", "Effect": "Deny", "Action": "sqs:*", "Resource": "*"}]}))
    member = org.create_account(Email="m@example.com", AccountName="member")["CreateAccountStatus"]["AccountId"]
    org.attach_policy(PolicyId=deny["Policy"]["PolicySummary"]["Id"], TargetId=member)
    org.attach_policy(PolicyId=deny["Policy"]["PolicySummary"]["Id"], TargetId=ACCOUNT)
    # moto keeps one IAM namespace: the member's role is read by name.
    _role(iam, "writer", "lambda.amazonaws.com", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:CreateQueue", "Resource": "arn:aws:sqs:us-east-1:*:q"}]})
    e = explain_event(_event("sqs.amazonaws.com", "CreateQueue", {"queueName": "q"}, account=member), LiveStore(session))
    assert (e.reason, e.fixes[0].sid) == ("EXPLICIT_DENY_SCP", "NoSqs")
    assert e.fixes[0].policy.endswith(deny["Policy"]["PolicySummary"]["Id"])
    # SCPs do not affect the management account (AWS Organizations user guide, SCPs).
    e = explain_event(_event("sqs.amazonaws.com", "CreateQueue", {"queueName": "q"}), LiveStore(session))
    assert e.reason == "UNKNOWN"


def test_encoded_message_is_decoded_with_sts() -> None:
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    store = LiveStore(session)
    sts = store._client("sts")
    decoded = {"allowed": False, "explicitDeny": False, "matchedStatements": {"items": []}, "failures": {"items": []},
               "context": {"principal": {"id": "AROAX:s1", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/writer/s1"},
                           "action": "ec2:RunInstances",
                           "resource": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/*",
                           "conditions": {"items": [{"key": "ec2:InstanceType", "values": {"items": [{"value": "t3.micro"}]}}]}}}
    with Stubber(sts) as stub:
        stub.add_response("decode_authorization_message", {"DecodedMessage": json.dumps(decoded)},
                          {"EncodedMessage": "blob-123"})
        event = _event("ec2.amazonaws.com", "RunInstances", {"instanceType": "t3.micro"}, code="Client.UnauthorizedOperation",
                       message="You are not authorized to perform this operation. Encoded authorization failure message: blob-123")
        e = explain_event(event, None, decoder=store.decode)
        stub.assert_no_pending_responses()
    assert (e.reason, e.basis) == ("MISSING_IDENTITY_ALLOW", "decoded-message")
    assert e.request is not None and e.request.resource == f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/*"
    assert e.request.context["ec2:InstanceType"] == "t3.micro"


def test_object_ownership_from_acls() -> None:
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    store = LiveStore(session)
    s3 = store._client("s3")
    with Stubber(s3) as stub:
        stub.add_response("get_object_acl", {"Owner": {"ID": "uploader-canonical-id"}, "Grants": []},
                          {"Bucket": "site", "Key": "index.html"})
        stub.add_response("get_bucket_acl", {"Owner": {"ID": "bucket-owner-canonical-id"}, "Grants": []}, {"Bucket": "site"})
        stub.add_response("get_bucket_ownership_controls",
                          {"OwnershipControls": {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}}, {"Bucket": "site"})
        raw_event = _event("s3.amazonaws.com", "GetObject", {"bucketName": "site", "key": "index.html"})
        from dataclasses import replace

        event = replace(raw_event, principal=None, identity_type="AWSAccount", caller_account="CloudFront")
        e = explain_event(event, store)
    assert (e.reason, e.basis) == ("OBJECT_OWNERSHIP", "policies")
    assert [f.op for f in e.fixes] == ["put-ownership-controls"]


def test_cli_live_without_credentials_fails_clearly(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from rolesmith.cli import main

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    trail = tmp_path / "t.jsonl"
    trail.write_text("")
    res = CliRunner().invoke(main, ["explain", str(trail), "--live"])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("Error: --live: no AWS credentials found; pass --profile NAME or set AWS_PROFILE / "
                                  "AWS_ACCESS_KEY_ID")
    res = CliRunner().invoke(main, ["explain", str(trail), "--live", "--profile", "nope"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: --profile nope: no such AWS profile; list them with `aws configure list-profiles`"


def test_cli_live_with_moto(session, tmp_path) -> None:
    from click.testing import CliRunner

    from rolesmith.cli import main

    iam = session.client("iam")
    _role(iam, "writer", "lambda.amazonaws.com")
    _role(iam, "deployer", "codebuild.amazonaws.com")
    raw = {
        "eventVersion": "1.09", "eventTime": "2024-05-01T12:00:00Z", "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.10",
        "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/writer/s1",
                         "accountId": ACCOUNT, "principalId": "AROAX:s1",
                         "sessionContext": {"sessionIssuer": {"type": "Role", "arn": WRITER, "accountId": ACCOUNT,
                                                              "userName": "writer"}}},
        "requestParameters": {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/deployer", "roleSessionName": "x"},
        "errorCode": "AccessDenied", "errorMessage": "Access Denied", "eventID": "e1", "recipientAccountId": ACCOUNT,
    }
    trail = tmp_path / "t.jsonl"
    trail.write_text(json.dumps(raw) + "\n")
    res = CliRunner().invoke(main, ["explain", str(trail), "--live", "--format", "json"])
    assert res.exit_code == 0, res.output
    (e,) = json.loads(res.stdout)["explanations"]
    # Same account, the trust policy must allow by itself; the identity policy allows nothing either.
    assert (e["reason"], e["basis"]) == ("TRUST_POLICY", "policies")
