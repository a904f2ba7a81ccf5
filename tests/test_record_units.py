"""rolesmith.record pieces without a workload: decoding, casing and redaction, CSM, the hook's
sitecustomize chaining, identities, the per-run CA, signal forwarding."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rolesmith.trail import wire
from rolesmith.trail.wire import DecodeError, decode
from rolesmith.record.identity import identity_from_arn

FIXTURES = Path(__file__).parent.parent / "fixtures" / "record"
CASES = json.loads((FIXTURES.parent / "trail" / "wire_cases.json").read_text())["cases"]
HOOK_DIR = Path(__file__).parent.parent / "rolesmith" / "record" / "hook"


def _auth(service: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/{service}/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature=0123abcd")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_decode(case):
    headers = {k.lower(): v for k, v in case.get("headers", {}).items()}
    if case["auth"]:
        headers["authorization"] = _auth(case["auth"])
    if case["expect"] is None:
        with pytest.raises(DecodeError):
            decode(case["method"], case["target"], headers, case.get("body", "").encode(), host=case["host"])
        return
    got = decode(case["method"], case["target"], headers, case.get("body", "").encode(), host=case["host"])
    assert (got.service, got.operation, dict(got.params)) == (
        case["expect"]["service"], case["expect"]["operation"], case["expect"]["params"])
    assert got.region == case["expect"].get("region", "us-east-1")
    assert got.access_key == "AKIAEXAMPLE"


def test_request_parameters_use_cloudtrail_casing():
    # Casing as in the KMS TagResource / S3 examples of shared/data/cloudtrail/awsdocs_examples.
    assert wire.to_request_parameters("kms", "TagResource", {
        "KeyId": "k", "Tags": [{"TagKey": "Dept", "TagValue": "IT"}]}) == {
        "keyId": "k", "tags": [{"tagKey": "Dept", "tagValue": "IT"}]}
    assert wire.to_request_parameters("kms", "Encrypt", {
        "KeyId": "k", "EncryptionContext": {"Department": "Engineering"}, "Plaintext": b"secret"}) == {
        "keyId": "k", "encryptionContext": {"Department": "Engineering"}}  # map keys kept, blob dropped
    assert wire.to_request_parameters("s3", "ListObjectsV2", {"Bucket": "b", "ContinuationToken": "t"}) == {
        "bucketName": "b", "continuationToken": "t"}


@pytest.mark.parametrize("service, operation, params, redacted", [
    ("secretsmanager", "CreateSecret", {"Name": "db", "SecretString": "hunter2"}, "secretString"),  # sensitive shape
    ("s3", "PutObject", {"Bucket": "b", "Key": "k", "SSECustomerKey": "hunter2"}, "sSECustomerKey"),
    ("iam", "CreateLoginProfile", {"UserName": "u", "Password": "hunter2"}, "password"),
    ("rds", "CreateDBInstance", {"DBInstanceIdentifier": "d", "DBInstanceClass": "c", "Engine": "e",
                                 "MasterUserPassword": "hunter2"}, "masterUserPassword"),
    ("unknownservice", "Anything", {"Nested": {"ClientSecret": "hunter2"}}, None),
    # The workload's data: redacted (its member named, never its value).
    ("sqs", "SendMessage", {"QueueUrl": "q", "MessageBody": "hunter2"}, None),
    ("sqs", "SendMessageBatch", {"QueueUrl": "q", "Entries": [{"Id": "1", "MessageBody": "hunter2"}]}, None),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": {"pk": {"S": "hunter2"}}}, None),
])
def test_sensitive_parameters_are_redacted(service, operation, params, redacted):
    out = wire.to_request_parameters(service, operation, params)
    assert "hunter2" not in json.dumps(out)
    if redacted:
        assert out[redacted] == wire.REDACTED


def test_csm_datagrams_give_actions_with_the_attempts_key():
    from rolesmith.record.csm import CsmListener

    calls = []
    listener = CsmListener(calls.append)
    try:
        base = {"ClientId": "c", "Service": "S3", "Api": "PutObject", "Version": 1}
        listener.feed(json.dumps({**base, "Type": "ApiCallAttempt", "AccessKey": "AKIAEXAMPLE",
                                  "Region": "eu-west-1"}).encode())
        listener.feed(json.dumps({**base, "Type": "ApiCall", "Region": "eu-west-1", "Timestamp": 1700000000000,
                                  "FinalHttpStatusCode": 403, "FinalAwsException": "AccessDenied"}).encode())
        listener.feed(b"not json")
    finally:
        listener.close()
    assert len(calls) == 1
    call = calls[0]
    assert (call.method, call.service, call.operation, call.access_key_id, call.region, call.status,
            call.error_code, call.time) == ("csm", "s3", "PutObject", "AKIAEXAMPLE", "eu-west-1", 403,
                                            "AccessDenied", 1700000000.0)
    assert dict(call.params) == {}  # CSM never carries parameters: no resources


def test_hook_chains_an_existing_sitecustomize_and_imports_nothing_eagerly(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    env = dict(os.environ, PYTHONPATH=f"{HOOK_DIR}{os.pathsep}{other}", ROLESMITH_RECORD_ADDR="127.0.0.1:9")
    code = "import os, sys; print(os.environ.get('CHAINED'), 'botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["yes", "False"]


@pytest.mark.parametrize("arn, principal_id, kind, extra", [
    ("arn:aws:sts::123456789012:assumed-role/app/run", "AROAEXAMPLE:run", "AssumedRole",
     {"sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                                           "arn": "arn:aws:iam::123456789012:role/app",
                                           "accountId": "123456789012", "userName": "app"}}}),
    ("arn:aws:iam::123456789012:user/ops/alice", "AIDAEXAMPLE", "IAMUser", {"userName": "alice"}),
    ("arn:aws:iam::123456789012:root", "123456789012", "Root", {}),
])
def test_user_identity_from_caller_arn(arn, principal_id, kind, extra):
    # userIdentity shapes: shared/reference CloudTrail userIdentity element.
    assert identity_from_arn(arn, principal_id, "AKIAEXAMPLE") == {
        "type": kind, "principalId": principal_id, "arn": arn, "accountId": "123456789012",
        "accessKeyId": "AKIAEXAMPLE", **extra}


def test_run_ca_key_is_private_and_deleted():
    from rolesmith.record.ca import RunCA

    ca = RunCA()
    try:
        assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(ca.leaf_key.stat().st_mode) == 0o600
        assert stat.S_IMODE(ca.dir.stat().st_mode) == 0o700
        assert ca.bundle.read_text().startswith(ca.cert.read_text())
        ca.context_for("s3.amazonaws.com")
    finally:
        ca.close()
    assert not ca.dir.exists()


def test_sigterm_is_forwarded_to_the_whole_process_group(tmp_path):
    """rolesmith gets SIGTERM: the child and its grandchild get it too, and rolesmith exits 128 + 15."""
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {marker}; wait"
    proc = subprocess.Popen([sys.executable, "-m", "rolesmith.cli", "record", "-o", str(tmp_path / "out"),
                             "--capture", "hook", "--", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "Error: the command was killed by SIGTERM" in err
    for _ in range(100):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the forwarded SIGTERM")


def test_summary_points_denied_calls_at_explain():
    from rolesmith.policies.model import Finding
    from rolesmith.record import RecordResult

    result = RecordResult(
        exit_code=1, signal=None, recording=Path("out/recording.jsonl"), calls_by_method={"hook": 3, "proxy": 1},
        denied=("s3:GetObject by arn:aws:sts::1:assumed-role/r/s (AccessDenied)",), principals=("arn:p",),
        indirect=("kms:GenerateDataKey invoked by s3.amazonaws.com",),
        findings=(Finding(code="UNOBSERVED_USE", message="r used sqs during the run"),))
    assert result.summary_lines() == [
        "calls captured: 4 (3 by hook, 1 by proxy)",
        "principals: arn:p",
        "denied calls: 1; see `rolesmith explain out/recording.jsonl`",
        "  s3:GetObject by arn:aws:sts::1:assumed-role/r/s (AccessDenied)",
        "indirect uses: 1",
        "  kms:GenerateDataKey invoked by s3.amazonaws.com",
        "unobserved services/actions (Access Advisor): 1",
        "  r used sqs during the run",
    ]


def _recorder(tmp_path, hold=0.5):
    from rolesmith.record.recording import Recorder, RecordingWriter

    writer = RecordingWriter(tmp_path / "recording.jsonl")
    recorder = Recorder(writer, lambda key: {"type": "IAMUser", "accessKeyId": key}, hold=hold)
    recorder.start()
    return recorder, writer


def _call(method, rid=None, sigs=(), key="k"):
    from rolesmith.record.recording import Call

    return Call(method=method, service="s3", operation="HeadObject", params={"Bucket": "b", "Key": key},
                request_id=rid, signatures=tuple(sigs), time=1700000000.0)


def test_recorder_keeps_one_record_per_request(tmp_path):
    recorder, writer = _recorder(tmp_path)
    # The proxy reports before it answers, so its copy comes first; the hook's copy replaces it.
    recorder.add(_call("proxy", rid="r1", sigs=["s1"], key="one"))
    recorder.add(_call("hook", rid="r1", sigs=["s1"], key="one"))
    # Identical requests signed in the same second share a signature, not a request id: two calls.
    recorder.add(_call("proxy", rid="r2", sigs=["same"], key="two"))
    recorder.add(_call("proxy", rid="r3", sigs=["same"], key="two"))
    recorder.add(_call("hook", rid="r3", sigs=["same"], key="two"))
    # AWS CLI v1 hands its handlers no signature: the request id pairs them.
    recorder.add(_call("proxy", rid="r4", sigs=["s4"], key="three"))
    recorder.add(_call("hook", rid="r4", key="three"))
    # No request id on one side (a connection error): the signature pairs them.
    recorder.add(_call("proxy", sigs=["s5"], key="four"))
    recorder.add(_call("hook", rid="r5", sigs=["s5"], key="four"))
    recorder.stop()
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "recording.jsonl").read_text().splitlines()]
    got = sorted((r["requestParameters"]["key"], r["additionalEventData"]["rolesmith"]) for r in lines)
    assert got == [("four", "hook"), ("one", "hook"), ("three", "hook"), ("two", "hook"), ("two", "proxy")]
    assert recorder.counts == {"hook": 4, "proxy": 1}


def test_a_hook_copy_arriving_after_the_hold_is_not_a_second_record(tmp_path):
    # On a loaded machine the hook's message can trail the proxy's hold: the proxy copy is written
    # then, and the late hook copy of the same request must not be recorded again.
    recorder, writer = _recorder(tmp_path, hold=0.05)
    recorder.add(_call("proxy", rid="r1", sigs=["s1"], key="late"))
    deadline = time.monotonic() + 5
    while not recorder.counts.get("proxy") and time.monotonic() < deadline:
        time.sleep(0.02)
    recorder.add(_call("hook", rid="r1", sigs=["s1"], key="late"))
    recorder.add(_call("hook", rid="r2", sigs=["s2"], key="other"))
    recorder.stop()
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "recording.jsonl").read_text().splitlines()]
    assert sorted((r["requestParameters"]["key"], r["additionalEventData"]["rolesmith"]) for r in lines) == [
        ("late", "proxy"), ("other", "hook")]


def test_pending_calls_match_by_request_id_or_signature_and_expire_in_order():
    from rolesmith.record.recording import _Pending

    pending = _Pending(limit=3)
    pending.add(1.0, _call("proxy", rid="r1", sigs=["s1"], key="a"))
    pending.add(2.0, _call("proxy", sigs=["same"], key="b"))
    pending.add(3.0, _call("proxy", sigs=["same"], key="c"))
    # Both request ids known and different: not the same request, whatever the signature.
    assert not pending.take(_call("hook", rid="r9", sigs=["s1"]))
    # The earliest of two calls sharing a signature is taken first.
    assert pending.take(_call("hook", rid="r2", sigs=["same"]))
    assert [c.params["Key"] for c in pending.expire(2.5)] == ["a"]
    pending.add(4.0, _call("proxy", rid="r4", key="d"))
    pending.add(5.0, _call("proxy", rid="r5", key="e"))
    pending.add(6.0, _call("proxy", rid="r6", key="f"))  # over the limit: the oldest ("c") goes
    assert not pending.take(_call("hook", sigs=["same"]))
    assert pending.take(_call("hook", rid="r5"))
    assert [c.params["Key"] for c in pending.expire(0.0, force=True)] == ["d", "f"]
    assert len(pending) == 0


def test_collector_takes_large_messages_and_every_queued_connection():
    # The collector polls: a message larger than the socket buffer, and several processes
    # connecting between two polls, must all arrive whole.
    import socket as socketlib

    from rolesmith.record.collector import Collector

    got: list[dict] = []
    collector = Collector("tok", got.append)
    collector.start()
    family, addr = ((socketlib.AF_UNIX, "\0" + collector.address[5:]) if collector.address.startswith("unix:")
                    else (socketlib.AF_INET, tuple(collector.address.rsplit(":", 1))))
    if family == socketlib.AF_INET:
        addr = (addr[0], int(addr[1]))
    big = "x" * (3 << 20)
    socks = []
    for i in range(3):
        s = socketlib.socket(family, socketlib.SOCK_STREAM)
        s.connect(addr)
        s.sendall(json.dumps({"token": "tok"}).encode() + b"\n")
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendall(json.dumps({"kind": "call", "n": i, "big": big}).encode() + b"\n")
        s.close()
    intruder = socketlib.socket(family, socketlib.SOCK_STREAM)
    intruder.connect(addr)
    intruder.sendall(b'{"token": "wrong"}\n{"kind": "call", "n": 99}\n')
    intruder.close()
    collector.drain(5.0)
    collector.close()
    assert sorted((m["n"], len(m["big"])) for m in got) == [(0, 3 << 20), (1, 3 << 20), (2, 3 << 20)]


TOKEN_IN_MESSAGE = "IQoJb3JpZ2luX2VjEXAMPLEtokenInAnErrorMessage"


def test_a_signature_error_echoing_the_session_token_is_written_without_it(tmp_path, caplog):
    # SignatureDoesNotMatch / InvalidSignatureException messages quote the canonical request AWS
    # expected, headers included, so the session token can come back inside errorMessage.
    from rolesmith.record.identity import IdentityResolver
    from rolesmith.record.recording import RecordingWriter

    message = ("The request signature we calculated does not match the signature you provided. The Canonical String"
               f" for this request should have been 'POST\n/\n\nhost:kms.us-east-1.amazonaws.com\n"
               f"x-amz-security-token:{TOKEN_IN_MESSAGE}\nx-amz-target:TrentService.ListKeys\n'")
    writer = RecordingWriter(tmp_path / "recording.jsonl")
    writer.write({"eventName": "ListKeys", "errorCode": "InvalidSignatureException", "errorMessage": message})
    writer.close()
    written = (tmp_path / "recording.jsonl").read_text()
    assert TOKEN_IN_MESSAGE not in written
    assert "x-amz-security-token:HIDDEN_DUE_TO_SECURITY_REASONS" in json.loads(written)["errorMessage"]

    def refuse():
        raise RuntimeError(message)

    resolver = IdentityResolver("ASIAEXAMPLE", refuse)
    with caplog.at_level("WARNING"):
        assert resolver("ASIAEXAMPLE")["type"] == "Unknown"
    assert "sts:GetCallerIdentity for ASIAEXAMPLE failed" in caplog.text and TOKEN_IN_MESSAGE not in caplog.text


def test_the_proxy_log_line_of_a_presigned_url_hides_token_and_signature(caplog):
    from rolesmith.record.proxy import _Handler

    handler = object.__new__(_Handler)
    with caplog.at_level("DEBUG", logger="rolesmith.record.proxy"):
        handler.log_message('"%s" %s %s', f"GET /b/k?X-Amz-Security-Token={TOKEN_IN_MESSAGE}&X-Amz-Signature=ab12 HTTP/1.1",
                            "502", "-")
    assert TOKEN_IN_MESSAGE not in caplog.text and "ab12" not in caplog.text
    assert "X-Amz-Security-Token=HIDDEN_DUE_TO_SECURITY_REASONS" in caplog.text


def test_a_cloudtrail_bucket_that_is_not_an_s3_url_stops_before_the_workload_runs(tmp_path):
    from click.testing import CliRunner

    from rolesmith.cli import main

    marker = tmp_path / "ran"
    result = CliRunner().invoke(main, ["record", "-o", str(tmp_path / "out"), "--cloudtrail-bucket", "notans3url", "--",
                                       sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --cloudtrail-bucket notans3url: expected s3://BUCKET[/PREFIX], the trail's"
                                     " S3 bucket (and the prefix the trail delivers under)")
    assert not marker.exists()
