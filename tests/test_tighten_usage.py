"""Usage sources of ``tighten`` beyond trail files: CloudTrail LookupEvents, a trail bucket, Access Advisor.

moto implements neither LookupEvents nor the last-accessed APIs, so those use botocore's Stubber
with response shapes from the API references; the trail bucket uses moto's S3.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import tempfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from rolesmith.tighten import TightenOptions, tighten
from rolesmith.tighten.usage import access_advisor, bucket_logs, lookup_events, unbacked_advisor

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tighten"
ROLES = FIX / "roles"
ACCOUNT = "111122223333"
JOB = "examplejob-0000-0000-0000-000000000001"
LEGACY = f"arn:aws:iam::{ACCOUNT}:role/EMR_LegacyServiceRole"
NOW = dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.timezone.utc)


class _Session:
    """Just enough of boto3.Session: hands out the stubbed clients."""

    def __init__(self, **clients) -> None:
        self.clients = clients

    def client(self, name: str):
        return self.clients[name]


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIX / "trails" / name).read_text().splitlines()]


def _unrelated() -> dict:
    return _records("admin_worker.jsonl")[1]  # another role's event in the same account


def _lookup_client(records: list[dict]):
    ct = boto3.client("cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(ct)
    events = [{"EventId": r["eventID"], "EventName": r["eventName"], "CloudTrailEvent": json.dumps(r)} for r in records]
    stub.add_response("lookup_events", {"Events": events[:4], "NextToken": "t1"},
                      {"StartTime": ANY, "EndTime": ANY})
    stub.add_response("lookup_events", {"Events": events[4:]}, {"StartTime": ANY, "EndTime": ANY, "NextToken": "t1"})
    stub.activate()
    return ct, stub


def test_lookup_events_keeps_the_roles_events_in_lookup_events_shape(tmp_path: Path) -> None:
    records = _records("emr_legacy_role.jsonl") + [_unrelated()]
    ct, stub = _lookup_client(records)
    path = lookup_events(LEGACY, 30, tmp_path, session=_Session(cloudtrail=ct), now=NOW)
    kept = json.loads(path.read_text())["Events"]
    assert len(kept) == len(records) - 1
    assert all("EMR_LegacyServiceRole" in e["CloudTrailEvent"] for e in kept)
    stub.assert_no_pending_responses()


def test_tighten_from_lookup_events_matches_tighten_from_the_trail_file() -> None:
    records = _records("emr_legacy_role.jsonl") + [_unrelated()]
    ct, _ = _lookup_client(records)
    live = tighten("EMR_LegacyServiceRole", TightenOptions(cloudtrail=True, days=30, current_policies=ROLES,
                                                           session=_Session(cloudtrail=ct), now=NOW))
    offline = tighten("EMR_LegacyServiceRole", TightenOptions(trails=(FIX / "trails" / "emr_legacy_role.jsonl",),
                                                              current_policies=ROLES))
    assert live.usage.calls == tuple(c for c in offline.usage.calls)
    assert live.replacement == offline.replacement
    assert live.usage.sources == ("CloudTrail LookupEvents, last 30 days",)


def test_lookup_events_window_is_at_most_90_days(tmp_path: Path) -> None:
    from rolesmith.tighten import TightenInputError

    with pytest.raises(TightenInputError) as err:
        lookup_events(LEGACY, 120, tmp_path, session=_Session())
    assert str(err.value) == "--days 120: LookupEvents keeps 90 days of events; pass 1..90 or use --cloudtrail-bucket"


def _advisor_client():
    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(iam)
    stub.add_response("generate_service_last_accessed_details", {"JobId": JOB},
                      {"Arn": LEGACY, "Granularity": "ACTION_LEVEL"})
    base = {"JobCreationDate": NOW, "JobCompletionDate": NOW, "ServicesLastAccessed": []}
    stub.add_response("get_service_last_accessed_details", {**base, "JobStatus": "IN_PROGRESS"}, {"JobId": JOB})
    recent, old = NOW - dt.timedelta(days=2), NOW - dt.timedelta(days=200)
    services = [
        {"ServiceName": "Amazon EC2", "ServiceNamespace": "ec2", "LastAuthenticated": recent,
         "TrackedActionsLastAccessed": [
             {"ActionName": "RunInstances", "LastAccessedTime": recent, "LastAccessedRegion": "us-east-1"},
             {"ActionName": "CreateFleet", "LastAccessedTime": old, "LastAccessedRegion": "us-east-1"},
             {"ActionName": "DeleteVolume"}]},
        {"ServiceName": "Amazon SQS", "ServiceNamespace": "sqs", "LastAuthenticated": recent},
        {"ServiceName": "Amazon SimpleDB", "ServiceNamespace": "sdb", "LastAuthenticated": old},
        {"ServiceName": "AWS Auto Scaling", "ServiceNamespace": "application-autoscaling"},
    ]
    stub.add_response("get_service_last_accessed_details",
                      {**base, "JobStatus": "COMPLETED", "ServicesLastAccessed": services},
                      {"JobId": JOB})
    stub.activate()
    return iam, stub


def test_access_advisor_action_level_where_tracked_service_level_otherwise() -> None:
    """Action-level data only for tracked services (TrackedActionsLastAccessed), service level otherwise
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_last-accessed-action-last-accessed.html)."""
    iam, stub = _advisor_client()
    pauses: list[float] = []
    calls, findings = access_advisor(LEGACY, 90, session=_Session(iam=iam), sleep=pauses.append, now=NOW)
    assert [(c.action, c.granularity, c.last_used) for c in calls] == [
        ("ec2:RunInstances", "action", "2026-11-01T12:00:00Z"),
        ("sqs:*", "service", "2026-11-01T12:00:00Z"),
    ]
    assert pauses == [1.0]
    assert [f.code for f in findings] == ["ACCESS_ADVISOR_SERVICE_LEVEL"]
    assert findings[0].message == ("Access Advisor gives only service-level data for sqs: which actions were "
                                   "used there comes from the trails alone")
    stub.assert_no_pending_responses()


def test_access_advisor_in_the_report_says_its_granularity() -> None:
    from rolesmith.tighten import format_text

    iam, _ = _advisor_client()
    report = tighten("EMR_LegacyServiceRole", TightenOptions(
        trails=(FIX / "trails" / "emr_legacy_role.jsonl",), access_advisor=True, current_policies=ROLES,
        session=_Session(iam=iam), sleep=lambda s: None, now=NOW))
    text = format_text(report)
    sqs = next(s for s in report.services if s.service == "sqs")
    assert sqs.evidence == "call"  # the trail shows the calls: finer than Access Advisor's service level
    assert "IAM Access Advisor, last 90 days" in report.usage.sources
    assert "ACCESS_ADVISOR_SERVICE_LEVEL: Access Advisor gives only service-level data for sqs" in text


def test_advisor_use_without_trail_evidence_is_flagged_not_granted() -> None:
    from rolesmith.tighten.model import UsedCall

    trail = (UsedCall(action="ec2:RunInstances", resource="arn:aws:ec2:us-east-1:1:instance/*", source="trail"),)
    advisor = (UsedCall(action="ec2:RunInstances", resource="*", source="access-advisor", granularity="action", last_used="t"),
               UsedCall(action="ec2:CreateFleet", resource="*", source="access-advisor", granularity="action", last_used="t"),
               UsedCall(action="sdb:*", resource="*", source="access-advisor", granularity="service", last_used="t"))
    messages = [f.message for f in unbacked_advisor(trail, advisor)]
    assert messages == [
        "Access Advisor says ec2:CreateFleet was used (last t) but no trail record shows it: the replacement does not "
        "grant it; add a trail covering that use",
        "Access Advisor says service sdb was used (last t) but no trail record shows it: the replacement does not "
        "grant it; add a trail covering that use",
    ]


def test_trail_bucket_reads_the_last_days_of_log_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    records = _records("emr_legacy_role.jsonl")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="trail-logs")
        base = f"org/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1"
        body = gzip.compress(json.dumps({"Records": records}).encode())
        s3.put_object(Bucket="trail-logs", Key=f"{base}/2026/11/02/{ACCOUNT}_CloudTrail_us-east-1_1.json.gz", Body=body)
        stale = gzip.compress(json.dumps({"Records": [{"broken": True}]}).encode())  # outside the window: never read
        s3.put_object(Bucket="trail-logs", Key=f"{base}/2026/09/01/{ACCOUNT}_CloudTrail_us-east-1_2.json.gz", Body=stale)
        with tempfile.TemporaryDirectory() as tmp:
            paths = bucket_logs("trail-logs/org", ACCOUNT, 7, Path(tmp), session=session, now=NOW)
            assert [p.name for p in paths] == [
                f"org_AWSLogs_{ACCOUNT}_CloudTrail_us-east-1_2026_11_02_{ACCOUNT}_CloudTrail_us-east-1_1.json.gz"]
        report = tighten("EMR_LegacyServiceRole", TightenOptions(cloudtrail_bucket="s3://trail-logs/org", days=7,
                                                                 current_policies=ROLES, session=session, now=NOW))
    offline = tighten("EMR_LegacyServiceRole", TightenOptions(trails=(FIX / "trails" / "emr_legacy_role.jsonl",),
                                                              current_policies=ROLES))
    assert report.replacement == offline.replacement
    assert report.usage.sources[0].startswith("s3://trail-logs/org: 1 log files, last ")


def test_a_multi_line_botocore_error_is_reported_on_one_line(tmp_path: Path) -> None:
    from botocore.exceptions import ParamValidationError

    from rolesmith.tighten import TightenAwsError

    class _S3:
        def get_paginator(self, _name: str):
            raise ParamValidationError(report="Invalid bucket name \"x\":\nBucket name must match the regex")

    with pytest.raises(TightenAwsError) as err:
        bucket_logs("trail-logs", ACCOUNT, 1, tmp_path, session=_Session(s3=_S3()), now=NOW)
    assert str(err.value) == ('s3 bucket trail-logs: Parameter validation failed: Invalid bucket name "x": Bucket name '
                              "must match the regex; check AWS credentials and region")
