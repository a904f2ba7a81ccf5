"""uses_for's contract beyond the documented tables: memoisation, odd shapes, never a guess."""

from __future__ import annotations

import types

import pytest

from rolesmith.actions import dataset, uses_for
from test_actions_fixtures import build_event


def _get(key: object, **extra: object):
    return build_event({"eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                        "requestParameters": {"bucketName": "data", "key": key}, **extra})


def test_memoised_results_follow_the_request() -> None:
    first, second = uses_for(_get("a.txt")), uses_for(_get("b.txt"))
    assert [u.resource for u in first.uses] == ["arn:aws:s3:::data/a.txt"]
    assert [u.resource for u in second.uses] == ["arn:aws:s3:::data/b.txt"]
    assert uses_for(_get("a.txt")) == first


def test_memo_distinguishes_invoked_by_and_region() -> None:
    plain = uses_for(_get("a.txt"))
    via = uses_for(_get("a.txt", userIdentity={"invokedBy": "athena.amazonaws.com"}))
    assert plain.uses[0].via is None and via.uses[0].via == "athena.amazonaws.com"
    kms = {"eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "requestParameters": {"keyId": "k-1"}}
    east = uses_for(build_event(kms))
    west = uses_for(build_event({**kms, "awsRegion": "eu-west-1"}))
    assert east.uses[0].resource == "arn:aws:kms:us-east-1:111122223333:key/k-1"
    assert west.uses[0].resource == "arn:aws:kms:eu-west-1:111122223333:key/k-1"


def test_non_json_request_mapping_is_mapped_uncached() -> None:
    event = _get("a.txt")
    odd = type(event)(**{f: getattr(event, f) for f in event.__slots__ if f != "request"},
                      request=types.MappingProxyType({"bucketName": "data", "key": "p.txt"}))
    assert [u.resource for u in uses_for(odd).uses] == ["arn:aws:s3:::data/p.txt"]


@pytest.mark.parametrize(
    "params",
    [None, {}, {"bucketName": ["x"], "key": {"a": 1}}, {"bucketName": 7, "key": True},
     {"x-amz-copy-source": {"Bucket": "b"}}, {"ReplicationConfiguration": "not-a-dict"}],
)
@pytest.mark.parametrize("name", ["GetObject", "PutObject", "CopyObject", "DeleteObjects", "PutBucketReplication", "ListObjects"])
def test_odd_request_shapes_never_crash_nor_emit_bare_star(params: object, name: str) -> None:
    result = uses_for(build_event({"eventSource": "s3.amazonaws.com", "eventName": name, "requestParameters": params}))
    assert result.unknown is None
    for use in result.uses + result.inferred:
        assert use.resource != "*" or not dataset.has_resource_type(use.action)
        if "*" in use.resource and use.resource != "*":
            assert use.partial, use


def test_denied_events_are_mapped_like_any_other() -> None:
    denied = _get("a.txt", errorCode="AccessDenied", errorMessage="Access Denied")
    assert denied.denied
    assert [(u.action, u.resource) for u in uses_for(denied).uses] == [("s3:GetObject", "arn:aws:s3:::data/a.txt")]


def test_memo_keeps_principals_apart() -> None:
    def get_user(name: str):
        return build_event({"eventSource": "iam.amazonaws.com", "eventName": "GetUser", "requestParameters": None,
                            "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::111122223333:user/{name}",
                                             "principalId": f"AIDA{name.upper()}", "userName": name, "sessionContext": None}})
    assert uses_for(get_user("alice")).uses[0].resource == "arn:aws:iam::111122223333:user/alice"
    assert uses_for(get_user("bob")).uses[0].resource == "arn:aws:iam::111122223333:user/bob"


def test_a_rule_that_trips_on_an_odd_record_falls_back_to_the_generic_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolesmith.actions.services import REGISTRY

    def broken(ctx):
        raise KeyError("surprise")

    monkeypatch.setitem(REGISTRY["s3"].handlers, "GetObject", broken)
    import rolesmith.actions as actions

    actions._plan.cache_clear()
    actions._memo().table.clear()
    try:
        result = uses_for(_get("fallback.txt"))
    finally:
        actions._plan.cache_clear()
        actions._memo().table.clear()
    assert [u.action for u in result.uses] == ["s3:GetObject"]
    assert any("rule skipped (KeyError" in note for note in result.notes)


# Optional resource types (Service Authorization Reference, "Resource types column": "If the resource
# type is optional (not indicated as required), then you can choose to use one of the optional resource
# types", https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
# a call that names none of them is evaluated against "*"; one that names one keeps its ARN.


def test_all_optional_types_and_nothing_named_is_star_with_a_note() -> None:
    result = uses_for(build_event({"eventSource": "monitoring.amazonaws.com", "eventName": "PutMetricData",
                                   "requestParameters": {"namespace": "App", "metricData": []}}))
    assert [(u.action, u.resource, u.partial) for u in result.uses] == [("cloudwatch:PutMetricData", "*", False)]
    assert result.notes == ('cloudwatch:PutMetricData names no resource in this call; IAM evaluates it against "*"'
                            " (optional resource type dataset)",)
    assert dataset.resource_types_all_optional("cloudwatch:PutMetricData")


@pytest.mark.parametrize(
    ("source", "name", "params", "resource"),
    [
        # optional types, but the event names the object/bucket: exact ARNs, no note
        ("s3.amazonaws.com", "PutObject", {"bucketName": "b", "key": "k"}, "arn:aws:s3:::b/k"),
        ("s3.amazonaws.com", "ListObjects", {"bucketName": "b"}, "arn:aws:s3:::b"),
        ("es.amazonaws.com", "CreateElasticsearchDomain", {"domainName": "logs"},
         "arn:aws:es:us-east-1:111122223333:domain/logs"),
    ],
)
def test_all_optional_types_with_a_named_resource_keep_the_arn(source: str, name: str, params: dict, resource: str) -> None:
    result = uses_for(build_event({"eventSource": source, "eventName": name, "requestParameters": params}))
    assert [u.resource for u in result.uses] == [resource]
    assert not any("names no resource" in n for n in result.notes)


def test_a_reference_under_an_unknown_parameter_name_is_not_taken_for_no_resource() -> None:
    # dBInstanceIdentifier is not the format's ${DbInstanceName}: the call names an instance, so no "*".
    result = uses_for(build_event({"eventSource": "rds.amazonaws.com", "eventName": "DescribeDBInstances",
                                   "requestParameters": {"dBInstanceIdentifier": "orders-db"}}))
    assert [u.resource for u in result.uses] != ["*"]
    assert all(u.partial for u in result.uses) and not result.notes


def test_s3_record_without_a_bucket_is_incomplete_not_unscoped() -> None:
    result = uses_for(build_event({"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "requestParameters": {}}))
    assert [u.resource for u in result.uses] == ["arn:aws:s3:::*/*"] and result.uses[0].partial


def test_required_types_never_become_star() -> None:
    assert not dataset.resource_types_all_optional("cloudwatch:DescribeAlarms")
    assert not dataset.resource_types_all_optional("s3:ListAllMyBuckets")  # no type at all
    result = uses_for(build_event({"eventSource": "monitoring.amazonaws.com", "eventName": "DescribeAlarms",
                                   "requestParameters": {"maxRecords": 100}}))
    assert [u.resource for u in result.uses] == ["arn:aws:cloudwatch:us-east-1:111122223333:alarm:*"]


@pytest.mark.parametrize(
    ("ident", "rtype"),
    [("i-0abc", "instance"), ("ami-0abc", "image"), ("vpce-0abc", "vpc-endpoint"),
     ("vpce-svc-0abc", "vpc-endpoint-service"), ("tgw-attach-0abc", "transit-gateway-attachment"),
     ("zzz-0abc", None), ("noprefix", None)],
)
def test_ec2_id_prefix_names_the_resource_type(ident: str, rtype: str | None) -> None:
    from rolesmith.actions.services.ec2 import resource_type_of_id

    assert resource_type_of_id(ident) == rtype


def test_every_ec2_id_prefix_type_has_one_arn_format() -> None:
    from rolesmith.actions.services.ec2 import _ID_PREFIX_TYPES, _own_var

    for prefix, rtype in _ID_PREFIX_TYPES.items():
        assert _own_var(rtype) is not None, (prefix, rtype)
