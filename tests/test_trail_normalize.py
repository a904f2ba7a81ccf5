"""normalize(): one CloudTrail record → one Event.

Principal rules: shared/reference/cloudtrail/ct-ug__cloudtrail-event-reference-user-identity.md
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html);
record fields: ct-ug__cloudtrail-event-reference-record-contents.md.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rolesmith.trail import BadRecord, Event, Principal, normalize, parse_time

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trail"
IDENTITIES = json.loads((FIXTURES / "identities.json").read_text())


def _record(**extra: object) -> dict:
    rec = dict(IDENTITIES[0]["record"])
    rec.update(extra)
    return rec


@pytest.mark.parametrize("case", IDENTITIES, ids=[c["name"] for c in IDENTITIES])
def test_principal(case: dict) -> None:
    event = normalize(case["record"], "identities.json#0")
    expect = case["expect"]
    if expect is None:
        assert event.principal is None  # unattributable: never guessed
    else:
        assert event.principal == Principal(**expect)
        assert event.partition == expect["partition"]
    identity = case["record"].get("userIdentity") or {}
    assert event.identity_type == identity.get("type")
    assert event.caller_account == identity.get("accountId")


def test_aws_account_copy_keeps_the_calling_account_but_no_principal() -> None:
    case = next(c for c in IDENTITIES if c["name"] == "aws-account-copy-not-a-principal")
    event = normalize(case["record"], "x#0")
    assert event.principal is None
    assert event.caller_account == "444455556666"
    assert event.account == "111122223333"  # recipientAccountId: the resource account's trail


def test_event_fields() -> None:
    rec = _record(
        errorCode="AccessDenied",
        errorMessage="not authorized",
        readOnly=True,
        eventType="AwsApiCall",
        requestID="R1",
        sharedEventID="S1",
        userAgent="Boto3/1.34.0",
        resources=[{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}],
        additionalEventData={"x": 1},
    )
    event = normalize(rec, "trail/a.json#17")
    assert (event.source, event.name, event.region, event.account) == (
        "s3.amazonaws.com",
        "ListBuckets",
        "us-east-1",
        "111122223333",
    )
    assert (event.event_id, event.request_id, event.shared_event_id) == ("assumed-role-issuer-keeps-path", "R1", "S1")
    assert (event.error_code, event.error_message, event.denied) == ("AccessDenied", "not authorized", True)
    assert (event.read_only, event.event_type, event.user_agent, event.source_ip) == (
        True,
        "AwsApiCall",
        "Boto3/1.34.0",
        "198.51.100.7",
    )
    assert event.resources == ({"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"},)
    assert event.additional == {"x": 1}
    assert event.origin == "trail/a.json#17"
    assert event.time == datetime(2024, 1, 2, 10, 0, 0, tzinfo=timezone.utc).timestamp()


def test_null_request_and_response_become_empty_mappings() -> None:
    # record-contents.md: responseElements is omitted for reads; null is legal for both.
    event = normalize(_record(requestParameters=None, responseElements=None), "x#0")
    assert event.request == {} and event.response == {} and event.additional == {}


def test_fast_constructor_sets_every_field_like_the_dataclass() -> None:
    event = normalize(_record(), "x#0")
    rebuilt = Event(**{f.name: getattr(event, f.name) for f in fields(Event)})
    assert rebuilt == event and hash(rebuilt.principal) == hash(event.principal)
    with pytest.raises(AttributeError):
        event.name = "x"  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize(
    ("identity_invoked_by", "source_ip", "expect"),
    [
        ("s3.amazonaws.com", "s3.amazonaws.com", "s3.amazonaws.com"),
        (None, "AWS Internal", "AWS Internal"),
        (None, "secretsmanager.amazonaws.com", "secretsmanager.amazonaws.com"),
        (None, "198.51.100.7", None),
        ("elasticmapreduce.amazonaws.com", "198.51.100.7", "elasticmapreduce.amazonaws.com"),
    ],
)
def test_invoked_by(identity_invoked_by: str | None, source_ip: str, expect: str | None) -> None:
    rec = _record(sourceIPAddress=source_ip)
    if identity_invoked_by:
        rec["userIdentity"] = dict(rec["userIdentity"], invokedBy=identity_invoked_by)
    event = normalize(rec, "x#0")
    assert event.invoked_by == expect
    assert event.principal is not None and event.principal.kind == "role"  # the caller stays the principal


def test_session_token_is_never_kept() -> None:
    # The userIdentity reference shows AssumeRole responses carrying credentials.sessionToken.
    response = {
        "credentials": {"accessKeyId": "ASIAEXAMPLE", "sessionToken": "TOKEN", "expiration": "soon"},
        "assumedRoleUser": {"arn": "arn:aws:sts::111122223333:assumed-role/r/s"},
    }
    rec = _record(eventSource="sts.amazonaws.com", eventName="AssumeRole", responseElements=response)
    event = normalize(rec, "x#0")
    assert event.response["credentials"] == {"accessKeyId": "ASIAEXAMPLE", "expiration": "soon"}
    assert "TOKEN" not in repr(event)
    assert response["credentials"]["sessionToken"] == "TOKEN"  # the caller's dict is not mutated


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("2023-07-10T11:42:36Z", datetime(2023, 7, 10, 11, 42, 36, tzinfo=timezone.utc)),
        ("2020-09-14T00:44:23.000Z", datetime(2020, 9, 14, 0, 44, 23, tzinfo=timezone.utc)),
        ("2021-11-18T09:41:02-08:00", datetime(2021, 11, 18, 17, 41, 2, tzinfo=timezone.utc)),
        ("2024-01-02 10:00:01", datetime(2024, 1, 2, 10, 0, 1, tzinfo=timezone.utc)),
        (1424476529.0, datetime(2015, 2, 20, 23, 55, 29, tzinfo=timezone.utc)),
        (datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc), datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc)),
    ],
)
def test_parse_time(value: object, expect: datetime) -> None:
    assert parse_time(value) == expect.timestamp()


def test_logstash_timestamp_stands_in_for_event_time() -> None:
    # logstash-codec-cloudtrail: event['@timestamp'] = event.delete('eventTime')
    rec = _record()
    del rec["eventTime"]
    rec["@timestamp"] = "2024-01-02T10:00:05.000Z"
    assert normalize(rec, "x#0").time == datetime(2024, 1, 2, 10, 0, 5, tzinfo=timezone.utc).timestamp()


def test_missing_event_time_is_an_error_unless_allowed() -> None:
    rec = _record()
    del rec["eventTime"]
    with pytest.raises(BadRecord) as err:
        normalize(rec, "x#0")
    assert err.value.kind == "missing-eventTime" and err.value.exit_code == 2
    assert normalize(rec, "x#0", allow_missing_time=True).time is None


@pytest.mark.parametrize(
    ("change", "kind", "message"),
    [
        ({"eventSource": None}, "missing-eventSource", "no eventSource"),
        ({"eventSource": ""}, "missing-eventSource", "no eventSource"),
        (
            {"eventSource": ["s3.amazonaws.com"]},
            "not-an-event",
            "eventSource is a list: an EventBridge event pattern, not a CloudTrail record",
        ),
        ({"eventName": None}, "missing-eventName", "no eventName"),
        ({"eventTime": "redacted"}, "bad-eventTime", "eventTime 'redacted' is not an ISO 8601 time"),
        ({"eventTime": True}, "bad-eventTime", "eventTime 'True' is not an ISO 8601 time"),
    ],
)
def test_bad_records(change: dict, kind: str, message: str) -> None:
    with pytest.raises(BadRecord) as err:
        normalize(_record(**change), "x#0")
    assert (err.value.kind, str(err.value)) == (kind, message)


def test_not_an_object() -> None:
    with pytest.raises(BadRecord) as err:
        normalize(["PutObject"], "x#0")  # type: ignore[arg-type]
    assert err.value.kind == "not-an-object"


def test_unhashable_identity_fields_still_follow_the_rules() -> None:
    rec = _record()
    rec["userIdentity"] = dict(rec["userIdentity"], principalId={"odd": "value"})
    event = normalize(rec, "x#0")
    assert event.principal is not None and event.principal.arn == "arn:aws:iam::111122223333:role/teams/data/etl"


@pytest.mark.parametrize("field", ["invokedBy", "principalId", "userName", "accessKeyId"])
@pytest.mark.parametrize("value", [7, True, 1.5, ["x"], {"odd": "value"}])
def test_an_identity_field_that_is_not_a_string_is_read_as_absent(field: str, value: object) -> None:
    rec = _record()
    rec["userIdentity"] = dict(rec["userIdentity"], **{field: value})
    event = normalize(rec, "x#0")
    assert event.principal is not None and event.principal.arn == "arn:aws:iam::111122223333:role/teams/data/etl"
    if field == "invokedBy":
        assert event.invoked_by is None  # not a service name: the call is not taken as service-invoked
    if field == "accessKeyId":
        assert event.principal.access_key_id is None


def test_numeric_account_ids_from_an_export_get_their_leading_zeros_back() -> None:
    rec = _record(recipientAccountId=12345678901)
    rec["userIdentity"] = {"type": "IAMUser", "arn": "arn:aws:iam::012345678901:user/ops", "accountId": 12345678901}
    event = normalize(rec, "x#0")
    assert (event.account, event.caller_account) == ("012345678901", "012345678901")
    assert normalize(_record(recipientAccountId=["x"]), "x#0").account == "111122223333"  # the caller's, as when absent


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("errorCode", ["AccessDenied"], "errorCode is an array, not a string"),
    ("eventID", 42, "eventID is a number, not a string"),
    ("awsRegion", {"name": "us-east-1"}, "awsRegion is an object, not a string"),
    ("eventType", True, "eventType is a boolean, not a string"),
    ("sourceIPAddress", 10, "sourceIPAddress is a number, not a string"),
    ("sharedEventID", [], "sharedEventID is an array, not a string"),
])
def test_a_top_level_field_that_is_not_a_string_is_a_bad_record(field: str, value: object, problem: str) -> None:
    # Later stages hash and compare these; an errorCode that is not a string could hide a denial.
    with pytest.raises(BadRecord) as err:
        normalize(_record(**{field: value}), "x#0")
    assert (err.value.kind, err.value.problem) == ("bad-field", problem)


def test_resources_keep_only_objects() -> None:
    arn = {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}
    assert normalize(_record(resources=["s3.amazonaws.com", arn, None]), "x#0").resources == (arn,)


@pytest.mark.parametrize(("value", "expect"), [(True, True), (False, False), ("true", True), ("false", False), (None, None)])
def test_read_only_is_a_bool(value: object, expect: bool | None) -> None:
    assert normalize(_record(readOnly=value), "x#0").read_only is expect


def test_scrub_record_hides_the_session_tokens_cloudtrail_logs() -> None:
    from rolesmith.trail.secrets import HIDDEN, scrub_record

    trail = FIXTURES / "federated" / "get-federation-token.json"
    record = json.loads(trail.read_text())["Records"][0]  # GetFederationToken, token in responseElements
    scrubbed = scrub_record(record)
    assert "doNotEmit" not in json.dumps(scrubbed) and "doNotEmit" in json.dumps(record)  # the input is not changed
    assert scrubbed["responseElements"]["credentials"] == {
        "accessKeyId": "ASIAEXAMPLEBOB00001", "sessionToken": HIDDEN, "expiration": "Mar 4, 2024, 11:00:00 AM"}
    nested = {"responseElements": {"items": [{"credentials": {"SessionToken": "t", "secretAccessKey": "s"}}]}}
    assert scrub_record(nested) == {"responseElements": {"items": [{"credentials": {"SessionToken": HIDDEN,
                                                                                     "secretAccessKey": HIDDEN}}]}}
    untouched = {"responseElements": {"credentials": {"accessKeyId": "ASIA1"}}}
    assert scrub_record(untouched) is untouched
