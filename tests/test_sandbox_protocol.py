"""Protocol-correct answers, every policy layer's wording, service-made calls and CloudTrail output.

One sandbox serves the module (fixtures/sandbox/protocols.yaml). Error codes and messages are the
ones AWS documents: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
("User: … is not authorized to perform: … because no identity-based policy allows …", "… with an
explicit deny in a service control policy", "… because no permissions boundary allows …", "…
because no session policy allows …"); EC2's UnauthorizedOperation
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html); KMS's
AccessDeniedException (https://docs.aws.amazon.com/kms/latest/APIReference/CommonErrors.html).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from rolesmith.sandbox import start_sandbox

ROOT = Path(__file__).resolve().parent.parent
ACCT = "666666666666"
CFG = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with start_sandbox(ROOT / "fixtures/sandbox/protocols.yaml", log_dir=tmp_path_factory.mktemp("trail")) as handle:
        yield handle


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1")


def client(sb: Any, session: boto3.session.Session, who: str, service: str) -> Any:
    env = sb.env_for(who)
    return session.client(service, endpoint_url=sb.endpoint_url, config=CFG,
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          aws_session_token=env.get("AWS_SESSION_TOKEN"))


def _error(fn: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"].get("Message", ""), err["ResponseMetadata"]["HTTPStatusCode"]


def key_arn(sb: Any) -> str:
    return next(k.arn for k in sb.scenario.keys if k.name == "data-key")


def test_kms_json_denial(sb: Any, session: Any) -> None:
    kms = client(sb, session, "nobody", "kms")
    code, msg, status = _error(kms.encrypt, KeyId=key_arn(sb), Plaintext=b"x")
    assert (code, status) == ("AccessDeniedException", 400)
    assert msg == (f"User: arn:aws:iam::{ACCT}:user/nobody is not authorized to perform: kms:Encrypt on resource: "
                   f"{key_arn(sb)} because no identity-based policy allows the kms:Encrypt action")


def test_ec2_unauthorized_operation(sb: Any, session: Any) -> None:
    ec2 = client(sb, session, "nobody", "ec2")
    code, msg, status = _error(ec2.create_security_group, GroupName="g", Description="d")
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert msg == (f"You are not authorized to perform this operation. User: arn:aws:iam::{ACCT}:user/nobody is not "
                   f"authorized to perform: ec2:CreateSecurityGroup on resource: "
                   f"arn:aws:ec2:us-east-1:{ACCT}:security-group/* because no identity-based policy allows the "
                   f"ec2:CreateSecurityGroup action")


def test_s3_keeps_its_bare_message_and_head_has_no_body(sb: Any, session: Any) -> None:
    s3 = client(sb, session, "nobody", "s3")
    assert _error(s3.list_objects_v2, Bucket="proto-data") == ("AccessDenied", "Access Denied", 403)
    assert _error(s3.head_object, Bucket="proto-data", Key="k") == ("403", "Forbidden", 403)


def test_scp_explicit_deny_wording(sb: Any, session: Any) -> None:
    sqs = client(sb, session, "writer", "sqs")
    url = f"{sb.endpoint_url}/{ACCT}/proto-queue"
    code, msg, _ = _error(sqs.delete_queue, QueueUrl=url)
    # SQS's JSON protocol keeps the query-era code (x-amzn-query-error) for SDKs.
    assert code == "AccessDenied"
    assert msg == (f"User: arn:aws:iam::{ACCT}:user/writer is not authorized to perform: sqs:DeleteQueue on resource: "
                   f"arn:aws:sqs:us-east-1:{ACCT}:proto-queue with an explicit deny in a service control policy")
    sqs.send_message(QueueUrl=url, MessageBody="allowed")


def test_boundary_wording(sb: Any, session: Any) -> None:
    s3 = client(sb, session, "bounded", "s3")
    s3.list_objects_v2(Bucket="proto-plain")
    kms = client(sb, session, "bounded", "kms")
    code, msg, _ = _error(kms.describe_key, KeyId=key_arn(sb))
    assert msg == (f"User: arn:aws:iam::{ACCT}:user/bounded is not authorized to perform: kms:DescribeKey on resource: "
                   f"{key_arn(sb)} because no permissions boundary allows the kms:DescribeKey action")


def test_assume_role_session_policy_caps_the_session(sb: Any, session: Any) -> None:
    sts = client(sb, session, "writer", "sts")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCT}:role/capped", RoleSessionName="capped-run",
                            Policy=json.dumps(policy))["Credentials"]
    s3 = session.client("s3", endpoint_url=sb.endpoint_url, config=CFG, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    s3.list_objects_v2(Bucket="proto-plain")
    code, msg, _ = _error(s3.put_object, Bucket="proto-plain", Key="k", Body=b"x")
    assert (code, msg) == ("AccessDenied", "Access Denied")
    ident = session.client("sts", endpoint_url=sb.endpoint_url, config=CFG, aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"]).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCT}:assumed-role/capped/capped-run"
    # The session's denial is worded for the session layer.
    denied = [r for r in sb.records() if r["eventName"] == "PutObject" and r.get("errorCode")
              and r["userIdentity"].get("arn", "").endswith("/capped-run")]
    assert denied and denied[-1]["errorMessage"] == "Access Denied"


def test_wrong_session_token_and_unknown_key(sb: Any, session: Any) -> None:
    env = sb.env_for("writer")
    bogus = session.client("s3", endpoint_url=sb.endpoint_url, config=CFG, aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
                           aws_secret_access_key="x")
    assert _error(bogus.list_buckets)[0] == "InvalidAccessKeyId"
    role_env = sb.env_for("capped")
    forged = session.client("kms", endpoint_url=sb.endpoint_url, config=CFG,
                            aws_access_key_id=role_env["AWS_ACCESS_KEY_ID"], aws_secret_access_key="x",
                            aws_session_token="forged")
    assert _error(forged.list_keys)[0] == "UnrecognizedClientException"
    assert env["AWS_ENDPOINT_URL"] == sb.endpoint_url and "AWS_SESSION_TOKEN" not in env


def test_sse_kms_default_encryption_and_decrypt_on_read(sb: Any, session: Any) -> None:
    s3 = client(sb, session, "writer", "s3")
    s3.put_object(Bucket="proto-data", Key="r/one.csv", Body=b"a,b\n")
    assert s3.get_object(Bucket="proto-data", Key="r/one.csv")["Body"].read() == b"a,b\n"
    kms_calls = [r for r in sb.records() if r["eventSource"] == "kms.amazonaws.com"
                 and r["userIdentity"].get("arn") == f"arn:aws:iam::{ACCT}:user/writer"]
    assert [r["eventName"] for r in kms_calls][-2:] == ["GenerateDataKey", "Decrypt"]
    last = kms_calls[-1]
    assert last["userIdentity"]["invokedBy"] == "s3.amazonaws.com" and last["sourceIPAddress"] == "s3.amazonaws.com"
    assert last["requestParameters"]["encryptionContext"] == {"aws:s3:arn": "arn:aws:s3:::proto-data/r/one.csv"}
    reader = client(sb, session, "reader-no-kms", "s3")
    code, msg, _ = _error(reader.get_object, Bucket="proto-data", Key="r/one.csv")
    assert (code, msg) == ("AccessDenied", f"User: arn:aws:iam::{ACCT}:user/reader-no-kms is not authorized to perform: "
                                           f"kms:Decrypt on resource: {key_arn(sb)} because no identity-based policy "
                                           f"allows the kms:Decrypt action")


def test_sse_kms_header_by_alias_and_multipart(sb: Any, session: Any) -> None:
    s3 = client(sb, session, "writer", "s3")
    s3.put_object(Bucket="proto-data", Key="x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/data")
    before = len(sb.records())
    up = s3.create_multipart_upload(Bucket="proto-data", Key="big.bin")
    part = s3.upload_part(Bucket="proto-data", Key="big.bin", UploadId=up["UploadId"], PartNumber=1, Body=b"y" * 10)
    s3.complete_multipart_upload(Bucket="proto-data", Key="big.bin", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    names = [(r["eventSource"].split(".")[0], r["eventName"]) for r in sb.records()[before:]]
    assert names == [("kms", "GenerateDataKey"), ("s3", "CreateMultipartUpload"), ("kms", "Decrypt"),
                     ("s3", "UploadPart"), ("kms", "Decrypt"), ("s3", "CompleteMultipartUpload")]


def test_bucket_policy_change_takes_effect(sb: Any, session: Any) -> None:
    nobody = client(sb, session, "nobody", "s3")
    assert _error(nobody.list_objects_v2, Bucket="proto-data")[0] == "AccessDenied"
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:user/nobody"},
                                                      "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::proto-data"}]}
    client(sb, session, "writer", "s3").put_bucket_policy(Bucket="proto-data", Policy=json.dumps(policy))
    nobody.list_objects_v2(Bucket="proto-data")  # same account: a bucket-policy allow suffices


def test_cloudtrail_files_layout_secrets_and_lookup(sb: Any, session: Any) -> None:
    s3 = client(sb, session, "writer", "s3")
    s3.put_object(Bucket="proto-data", Key="trail-probe", Body=b"z")
    ct = client(sb, session, "writer", "cloudtrail")
    env = sb.env_for("writer")
    events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "PutObject"}])["Events"]
    assert events and all(e["EventName"] == "PutObject" for e in events)
    newest = json.loads(events[0]["CloudTrailEvent"])
    assert newest["requestParameters"]["key"] == "trail-probe"
    assert newest["userIdentity"]["accessKeyId"] == env["AWS_ACCESS_KEY_ID"]
    sb.flush()
    files = sorted((sb.log_dir / "AWSLogs" / ACCT / "CloudTrail" / "us-east-1").rglob("*.json.gz"))
    assert files and all(f.name.startswith(f"{ACCT}_CloudTrail_us-east-1_") for f in files)
    texts = [gzip.decompress(f.read_bytes()).decode() for f in files]
    secrets = [sb.env_for(name)[k] for name, _ in sb.principals() for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
               if k in sb.env_for(name)]
    assert not [s for s in secrets for t in texts if s in t]
    records = [r for t in texts for r in json.loads(t)["Records"]]
    assert any(r["eventName"] == "PutObject" and r["requestParameters"].get("key") == "trail-probe" for r in records)
    # The files read back through rolesmith's own ingest (the path `record --cloudtrail` takes).
    from rolesmith.trail import read_trail

    events_read = list(read_trail([sb.log_dir]))
    assert any(e.name == "PutObject" and e.request.get("key") == "trail-probe" for e in events_read)


def test_missing_object_is_403_without_list_bucket(sb: Any, session: Any) -> None:
    # GetObject API reference: 404 with s3:ListBucket on the bucket, 403 Access Denied without it.
    writer = client(sb, session, "writer", "s3")
    assert _error(writer.get_object, Bucket="proto-data", Key="absent")[:2] == ("NoSuchKey", "The specified key does not exist.")
    capped_env = sb.env_for("capped")  # s3:* on everything
    assert capped_env["AWS_SESSION_TOKEN"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    creds = client(sb, session, "writer", "sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCT}:role/capped", RoleSessionName="get-only", Policy=json.dumps(policy))["Credentials"]
    get_only = session.client("s3", endpoint_url=sb.endpoint_url, config=CFG, aws_access_key_id=creds["AccessKeyId"],
                              aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    assert _error(get_only.get_object, Bucket="proto-plain", Key="absent") == ("AccessDenied", "Access Denied", 403)


def test_operator_env_for_tooling_calls(sb: Any, session: Any) -> None:
    nobody = client(sb, session, "nobody", "cloudtrail")
    assert _error(nobody.lookup_events)[0] == "AccessDeniedException"
    env = sb.operator_env()
    ct = session.client("cloudtrail", endpoint_url=env["AWS_ENDPOINT_URL"], config=CFG,
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    page = ct.lookup_events(MaxResults=2)
    assert len(page["Events"]) == 2 and page["NextToken"]
    assert sb.operator_env() == env  # one operator per account, reused
    assert (sb.principals(), "AWS_SESSION_TOKEN" in env) == ([(p.qualified, p.arn) for p in sb.scenario.principals], False)


def test_signature_is_verified(sb: Any, session: Any) -> None:
    env = sb.env_for("writer")
    wrong = {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": "not-the-secret"}
    s3 = session.client("s3", endpoint_url=sb.endpoint_url, config=CFG, **wrong)
    assert _error(s3.list_objects_v2, Bucket="proto-data")[0] == "SignatureDoesNotMatch"
    kms = session.client("kms", endpoint_url=sb.endpoint_url, config=CFG, **wrong)
    assert _error(kms.describe_key, KeyId=key_arn(sb))[0] == "InvalidSignatureException"
    sts = session.client("sts", endpoint_url=sb.endpoint_url, config=CFG, **wrong)
    assert _error(sts.get_caller_identity)[0] == "SignatureDoesNotMatch"


def test_presigned_get(sb: Any, session: Any) -> None:
    import urllib.request

    env = sb.env_for("writer")
    s3 = session.client("s3", endpoint_url=sb.endpoint_url, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    s3.put_object(Bucket="proto-data", Key="shared.txt", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "proto-data", "Key": "shared.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as resp:  # noqa: S310 - 127.0.0.1 sandbox
        assert resp.read() == b"presigned"
    assert sb.records()[-1]["eventName"] == "GetObject" and sb.records()[-1].get("errorCode") is None


def test_policy_changes_through_iam_take_effect_and_bodies_are_hidden(sb: Any, session: Any) -> None:
    env = sb.env_for("writer")
    sqs = client(sb, session, "writer", "sqs")
    sqs.send_message(QueueUrl=f"{sb.endpoint_url}/{ACCT}/proto-queue", MessageBody="card 4111-1111")
    sent = [r for r in sb.records() if r["eventName"] == "SendMessage"][-1]
    assert sent["requestParameters"]["messageBody"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    kms = client(sb, session, "nobody", "kms")
    assert _error(kms.encrypt, KeyId=key_arn(sb), Plaintext=b"x")[0] == "AccessDeniedException"
    op = sb.operator_env()
    iam = session.client("iam", endpoint_url=op["AWS_ENDPOINT_URL"], config=CFG,
                         aws_access_key_id=op["AWS_ACCESS_KEY_ID"], aws_secret_access_key=op["AWS_SECRET_ACCESS_KEY"])
    grant = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": key_arn(sb)}]}
    iam.put_user_policy(UserName="nobody", PolicyName="encrypt", PolicyDocument=json.dumps(grant))
    assert kms.encrypt(KeyId=key_arn(sb), Plaintext=b"x")["KeyId"] == key_arn(sb)
    assert env["AWS_ACCESS_KEY_ID"] not in json.dumps(sent["requestParameters"])


def test_session_tags_need_the_trust_policy(sb: Any, session: Any) -> None:
    # Passing session tags needs sts:TagSession, which the role's trust policy must allow
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html#id_session-tags_permissions-required).
    sts = client(sb, session, "writer", "sts")
    code, msg, _ = _error(sts.assume_role, RoleArn=f"arn:aws:iam::{ACCT}:role/capped", RoleSessionName="tagged",
                          Tags=[{"Key": "team", "Value": "data"}])
    assert (code, msg) == ("AccessDenied", f"User: arn:aws:iam::{ACCT}:user/writer is not authorized to perform: "
                                           f"sts:TagSession on resource: arn:aws:iam::{ACCT}:role/capped because no "
                                           "resource-based policy allows the sts:TagSession action")


def test_rest_json_denial_and_passrole_on_create_function(sb: Any, session: Any) -> None:
    lam = client(sb, session, "deployer", "lambda")
    code, msg, status = _error(lam.create_function, FunctionName="fn", Runtime="python3.12", Handler="h.main",
                               Role=f"arn:aws:iam::{ACCT}:role/capped", Code={"ZipFile": b"PK"})
    assert (code, status) == ("AccessDeniedException", 403)
    assert msg == (f"User: arn:aws:iam::{ACCT}:user/deployer is not authorized to perform: iam:PassRole on resource: "
                   f"arn:aws:iam::{ACCT}:role/capped because no identity-based policy allows the iam:PassRole action")
