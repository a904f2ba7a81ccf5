"""(g) The server side of a recording: CloudTrail LookupEvents / log bucket merge and Access Advisor.

moto has neither LookupEvents nor Access Advisor, so those clients are botocore Stubbers answering
with the real APIs' shapes (CloudTrail API Reference LookupEvents; IAM API Reference
GetServiceLastAccessedDetails, see shared/data/cloudtrail/lookup_events_format for a real answer).
The workload itself runs against moto on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from rolesmith.record import RecordOptions, record
from rolesmith.record.cloudtrail import merge
from rolesmith.record.session import _default_client

FIXTURES = Path(__file__).parent.parent / "fixtures" / "record"
JOB = "6b1f1b2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"  # JobId is a UUID (min length 36)
ROLE = "arn:aws:iam::123456789012:role/report-writer"
SERVER_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEserverSideSessionToken"


@pytest.fixture
def aws_env(moto_url):
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=moto_url, AWS_ACCESS_KEY_ID="AKIAROLESMITHTEST002", AWS_SECRET_ACCESS_KEY="s3cr3t",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def _server_copy(rec: dict, **changes) -> dict:
    """What CloudTrail itself logs for a call the client recorded: its own ids, IPs and agent."""
    out = {k: v for k, v in rec.items() if k != "additionalEventData"}
    out.update(eventID=str(uuid.uuid4()), sourceIPAddress="203.0.113.7", userAgent="Boto3/1.35 md/Botocore",
               responseElements={"from": "server"})
    out.update(changes)
    return out


def _kms_by_s3(put: dict) -> dict:
    """The GenerateDataKey S3 makes for an SSE-KMS PutObject: only CloudTrail sees it."""
    return {
        "eventVersion": "1.09", "userIdentity": {**put["userIdentity"], "invokedBy": "s3.amazonaws.com"},
        "eventTime": put["eventTime"], "eventSource": "kms.amazonaws.com", "eventName": "GenerateDataKey",
        "awsRegion": "us-east-1", "sourceIPAddress": "s3.amazonaws.com", "userAgent": "s3.amazonaws.com",
        "requestParameters": {"keyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                              "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::role-reports/r.csv"},
                              "keySpec": "AES_256"},
        "responseElements": None, "requestID": "kms-req-1", "eventID": str(uuid.uuid4()), "readOnly": True,
        "resources": [{"accountId": "123456789012", "type": "AWS::KMS::Key",
                       "ARN": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "123456789012",
    }


def _lookup_page(records: list[dict]) -> dict:
    return {"Events": [{
        "EventId": r["eventID"], "EventName": r["eventName"], "ReadOnly": "false",
        "AccessKeyId": r["userIdentity"]["accessKeyId"],
        "EventTime": datetime.fromisoformat(r["eventTime"].replace("Z", "+00:00")),
        "EventSource": r["eventSource"], "Username": r["userIdentity"].get("userName", "nightly"),
        "Resources": [], "CloudTrailEvent": json.dumps(r)} for r in records]}


def _server_events(out: Path) -> tuple[dict[str, list[dict]], list[dict]]:
    client = [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]
    by_name = {r["eventName"]: r for r in client}
    assume, bucket, put = by_name["AssumeRole"], by_name["CreateBucket"], by_name["PutObject"]
    # LookupEvents carries management events only: PutObject (a data event) never comes back.
    per_key = {
        # CloudTrail logs the session token STS hands out (the Stratus trails in ../shared show it).
        assume["userIdentity"]["accessKeyId"]: [_server_copy(assume, responseElements={
            "credentials": {"accessKeyId": "ASIAROLESMITHSESSION", "sessionToken": SERVER_TOKEN,
                            "expiration": "Dec 4, 2026, 8:00:00 PM"},
            "assumedRoleUser": {"assumedRoleId": "AROAEXAMPLE:nightly", "arn": "arn:aws:sts::123456789012:assumed-role/report-writer/nightly"}})],
        bucket["userIdentity"]["accessKeyId"]: [_server_copy(bucket), _kms_by_s3(put)],
    }
    return per_key, client


def test_cloudtrail_lookup_merge_and_access_advisor(tmp_path, aws_env):
    out = tmp_path / "out"
    sleeps: list[float] = []
    progress: list[float] = []
    stubbers: list[Stubber] = []
    seen: dict[str, list[dict]] = {}

    def factory(service: str, env):
        if service == "sts":
            return _default_client(service, env)
        client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        stub = Stubber(client)
        if service == "cloudtrail":
            per_key, seen["client"] = _server_events(out)
            stub.add_client_error("lookup_events", service_error_code="ThrottlingException", http_status_code=400)
            for _ in range(2):  # one poll that finds them, one that finds nothing new
                for key in sorted(per_key):
                    stub.add_response("lookup_events", _lookup_page(per_key[key]), {
                        "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}],
                        "StartTime": ANY, "EndTime": ANY, "MaxResults": 50})
        elif service == "iam":
            now = datetime.now(timezone.utc)
            stub.add_response("generate_service_last_accessed_details", {"JobId": JOB},
                              {"Arn": ROLE, "Granularity": "ACTION_LEVEL"})
            stub.add_response("get_service_last_accessed_details", {
                "JobStatus": "IN_PROGRESS", "JobCreationDate": now, "JobCompletionDate": now, "ServicesLastAccessed": []}, {"JobId": JOB})
            stub.add_response("get_service_last_accessed_details", {
                "JobStatus": "COMPLETED", "JobType": "ACTION_LEVEL", "JobCreationDate": now, "JobCompletionDate": now,
                "IsTruncated": False,
                "ServicesLastAccessed": [
                    {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "LastAuthenticated": now,
                     "LastAuthenticatedEntity": ROLE, "TotalAuthenticatedEntities": 1,
                     "TrackedActionsLastAccessed": [
                         {"ActionName": "PutObject", "LastAccessedTime": now, "LastAccessedRegion": "us-east-1"},
                         {"ActionName": "DeleteObject", "LastAccessedTime": now, "LastAccessedRegion": "us-east-1"},
                         {"ActionName": "GetObject", "LastAccessedTime": now - timedelta(days=9)}]},
                    {"ServiceName": "AWS KMS", "ServiceNamespace": "kms", "LastAuthenticated": now,
                     "TotalAuthenticatedEntities": 1},
                    {"ServiceName": "Amazon SQS", "ServiceNamespace": "sqs", "LastAuthenticated": now,
                     "TotalAuthenticatedEntities": 1},
                    {"ServiceName": "Amazon EC2", "ServiceNamespace": "ec2",
                     "LastAuthenticated": now - timedelta(days=30), "TotalAuthenticatedEntities": 1},
                    {"ServiceName": "Amazon SNS", "ServiceNamespace": "sns", "TotalAuthenticatedEntities": 0},
                ]}, {"JobId": JOB})
        stub.activate()
        stubbers.append(stub)
        return client

    result = record([sys.executable, str(FIXTURES / "workload_assume.py")], RecordOptions(
        out_dir=out, env=aws_env, cloudtrail=True, access_advisor=True, client_factory=factory,
        sleep=sleeps.append, poll_interval=5.0, progress=lambda f, _label: progress.append(f)))

    assert result.exit_code == 0
    for stub in stubbers:
        stub.assert_no_pending_responses()
    merged = [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]
    by_name = {r["eventName"]: r for r in merged}
    assert sorted(by_name) == ["AssumeRole", "CreateBucket", "GenerateDataKey", "PutObject"]
    assert len(merged) == 4  # one record per request
    for name in ("AssumeRole", "CreateBucket"):  # same request: the server's fields win
        assert by_name[name]["sourceIPAddress"] == "203.0.113.7"
        assert by_name[name]["additionalEventData"] == {"rolesmith": "hook+cloudtrail"}
    assert by_name["PutObject"]["additionalEventData"]["rolesmith"] == "hook"
    # The token CloudTrail logged is not copied to disk; the record keeps its shape and the key id.
    assert by_name["AssumeRole"]["responseElements"]["credentials"] == {
        "accessKeyId": "ASIAROLESMITHSESSION", "sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS",
        "expiration": "Dec 4, 2026, 8:00:00 PM"}
    for written in out.rglob("*"):
        if written.is_file():
            assert SERVER_TOKEN not in written.read_text(encoding="utf-8", errors="replace"), written
    assert by_name["GenerateDataKey"]["additionalEventData"] == {"rolesmith": "cloudtrail"}
    assert result.indirect == ("kms:GenerateDataKey invoked by s3.amazonaws.com",)
    assert result.calls_by_method == {"hook": 3, "cloudtrail": 1}
    assert by_name["CreateBucket"]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] == ROLE
    assert 1.0 in sleeps  # backed off once on throttling
    assert 5.0 in sleeps  # waited between the two polls
    assert progress[-1] == 1.0
    messages = sorted(f.message for f in result.findings)
    assert [f.code for f in result.findings] == ["UNOBSERVED_USE", "UNOBSERVED_USE"]
    assert messages[0].startswith(f"{ROLE} used s3:DeleteObject during the run (Access Advisor)")
    assert messages[1].startswith(f"{ROLE} used sqs during the run (Access Advisor, last accessed ")
    assert "unobserved services/actions (Access Advisor): 2" in result.summary_lines()


def test_cloudtrail_bucket_log_files(tmp_path, aws_env):
    out = tmp_path / "out"

    def factory(service: str, env):
        s3 = _default_client(service, env)
        if service == "s3":
            per_key, _ = _server_events(out)
            day = datetime.now(timezone.utc)
            s3.create_bucket(Bucket="trail-logs")
            records = [r for rs in per_key.values() for r in rs]
            other = dict(records[0], userIdentity={"type": "IAMUser", "accessKeyId": "AKIAOTHERWORKLOAD000"},
                         eventID="other")
            key = f"logs/AWSLogs/123456789012/CloudTrail/us-east-1/{day:%Y/%m/%d}/123456789012_CloudTrail_x.json.gz"
            s3.put_object(Bucket="trail-logs", Key=key, Body=gzip.compress(json.dumps({"Records": records + [other]}).encode()))
            old = f"logs/AWSLogs/123456789012/CloudTrail/us-east-1/2001/01/01/123456789012_CloudTrail_y.json.gz"
            s3.put_object(Bucket="trail-logs", Key=old, Body=b"not read: outside the window")
        return s3

    result = record([sys.executable, str(FIXTURES / "workload_assume.py")], RecordOptions(
        out_dir=out, env=aws_env, cloudtrail_bucket="s3://trail-logs/logs/", client_factory=factory))
    assert result.exit_code == 0
    merged = [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]
    assert sorted(r["eventName"] for r in merged) == ["AssumeRole", "CreateBucket", "GenerateDataKey", "PutObject"]
    assert all(r["eventID"] != "other" for r in merged)


def test_merge_falls_back_to_time_and_key_when_request_ids_differ():
    client = [{"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "requestID": "client-side",
               "eventTime": "2024-05-01T10:00:00Z", "userIdentity": {"accessKeyId": "AKIA1"},
               "additionalEventData": {"rolesmith": "proxy"}}]
    server = [{"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "requestID": "server-side",
               "eventTime": "2024-05-01T10:00:01Z", "userIdentity": {"accessKeyId": "AKIA1"}, "eventID": "e1"},
              {"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "requestID": "later",
               "eventTime": "2024-05-01T10:05:00Z", "userIdentity": {"accessKeyId": "AKIA1"}, "eventID": "e2"}]
    merged = merge(client, server)
    assert [(r["eventID"], r["additionalEventData"]["rolesmith"]) for r in merged] == [
        ("e1", "proxy+cloudtrail"), ("e2", "cloudtrail")]


def test_merge_never_joins_a_record_twice():
    # Two identical calls a second apart; the first was joined by an earlier lookup (another account's
    # trail). A later merge must give the remaining server record to the unjoined twin, not to the
    # already-joined record (seen as 'hook+cloudtrail+cloudtrail' plus a stray 'hook' record).
    joined = {"eventSource": "elasticmapreduce.amazonaws.com", "eventName": "RunJobFlow", "requestID": "c1",
              "eventTime": "2024-05-01T10:00:00Z", "userIdentity": {"accessKeyId": "AKIA1"}, "eventID": "s1",
              "additionalEventData": {"rolesmith": "hook+cloudtrail"}}
    twin = {"eventSource": "elasticmapreduce.amazonaws.com", "eventName": "RunJobFlow", "requestID": "c2",
            "eventTime": "2024-05-01T10:00:01Z", "userIdentity": {"accessKeyId": "AKIA1"},
            "additionalEventData": {"rolesmith": "hook"}}
    server = [{"eventSource": "elasticmapreduce.amazonaws.com", "eventName": "RunJobFlow", "requestID": "s-2",
               "eventTime": "2024-05-01T10:00:00Z", "userIdentity": {"accessKeyId": "AKIA1"}, "eventID": "s2"}]
    merged = merge([joined, twin], server)
    assert sorted((r["eventID"], r["additionalEventData"]["rolesmith"]) for r in merged) == [
        ("s1", "hook+cloudtrail"), ("s2", "hook+cloudtrail")]


class _FakeTime:
    """A clock that only moves when slept on (or when a request takes time): polling is instant."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class _TrickleTrail:
    """LookupEvents that finds one more event on every poll (``arriving``), or never any. Gives up
    loudly instead of hanging if the caller never stops polling."""

    def __init__(self, fake: _FakeTime, arriving: bool) -> None:
        self.fake, self.arriving, self.requests = fake, arriving, 0

    def lookup_events(self, **kwargs):
        self.requests += 1
        assert self.requests <= 50, "still polling LookupEvents long after --cloudtrail-wait passed"
        self.fake.now += 0.2  # a request takes time
        n = self.requests if self.arriving else 0
        return {"Events": [{"EventId": f"e{i}", "CloudTrailEvent": json.dumps({
            "eventID": f"e{i}", "eventName": "CreateBucket", "requestID": f"r{i}",
            "eventTime": f"2024-05-01T10:00:{i:02d}Z"})} for i in range(1, n + 1)]}


@pytest.mark.parametrize("arriving", [True, False], ids=["events-keep-arriving", "events-never-arrive"])
def test_lookup_stops_when_the_wait_runs_out(arriving):
    from rolesmith.record.cloudtrail import lookup_events

    fake = _FakeTime()
    trail = _TrickleTrail(fake, arriving)
    progress: list[float] = []
    began = fake.now
    found = lookup_events(trail, ["AKIA1"], began - 5, began, wait=100.0, interval=30.0,
                          expected=lambda got: "r-never" in {r["requestID"] for r in got.values()},
                          sleep=fake.sleep, clock=fake.clock, progress=lambda f, _label: progress.append(f))
    elapsed = fake.now - began
    assert 100.0 <= elapsed <= 101.0  # stopped at the first poll after the wait, not an interval later
    assert max(fake.sleeps) <= 30.0  # polled every interval; the last sleep only up to the deadline
    assert trail.requests == 5  # at 0, 30, 60, 90 and 100 s
    # What it had when the wait ran out, oldest first.
    assert [r["eventID"] for r in found] == ([f"e{i}" for i in range(1, 6)] if arriving else [])
    assert progress[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in progress)


def test_record_returns_the_capture_when_cloudtrail_never_delivers(tmp_path, aws_env):
    """record(cloudtrail=True): events that never come cost cloudtrail_wait, then the run ends with the
    client-side records as they were; the fake clock makes the 2-minute wait instant."""
    fake = _FakeTime()
    trails: list[_TrickleTrail] = []

    def factory(service: str, env):
        if service == "cloudtrail":
            trails.append(_TrickleTrail(fake, arriving=False))
            return trails[-1]
        return _default_client(service, env)

    out = tmp_path / "out"
    progress: list[float] = []
    result = record([sys.executable, str(FIXTURES / "workload_assume.py")], RecordOptions(
        out_dir=out, env=aws_env, cloudtrail=True, cloudtrail_wait=120.0, poll_interval=30.0, client_factory=factory,
        sleep=fake.sleep, clock=fake.clock, progress=lambda f, _label: progress.append(f)))
    assert result.exit_code == 0
    assert len(trails) == 1
    assert 120.0 <= fake.now - 1_700_000_000.0 <= 121.0
    merged = [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]
    assert sorted(r["eventName"] for r in merged) == ["AssumeRole", "CreateBucket", "PutObject"]
    assert {r["additionalEventData"]["rolesmith"] for r in merged} == {"hook"}
    assert result.calls_by_method == {"hook": 3, "cloudtrail": 0}
    assert progress[-1] == 1.0
