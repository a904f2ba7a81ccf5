"""The dataset wrapper, the action tables and a sweep over the documentation's CloudTrail examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolesmith.actions import action_for_event_name, dataset, uses_for
from rolesmith.actions.services import REGISTRY
from rolesmith.trail.normalize import BadRecord, normalize

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.mark.parametrize(
    ("source", "service"),
    [
        ("s3.amazonaws.com", "s3"),
        ("monitoring.amazonaws.com", "cloudwatch"),
        ("email.amazonaws.com", "ses"),
        ("streams.dynamodb.amazonaws.com", "dynamodb"),
        ("tagging.amazonaws.com", "tag"),
        ("elasticmapreduce.amazonaws.com", "elasticmapreduce"),
        ("lambda.amazonaws.com", "lambda"),
        ("KMS.amazonaws.com", "kms"),
        ("nosuchservice.amazonaws.com", None),
    ],
)
def test_service_for_source(source: str, service: str | None) -> None:
    assert dataset.service_for_source(source) == service


def test_action_info_canonical_casing_and_resource_types() -> None:
    info = dataset.action_info("S3:getobject")
    assert info is not None and info.name == "s3:GetObject"
    assert "object" in [rt.name for rt in info.resource_types]
    assert dataset.action_info("s3:NoSuchAction") is None
    assert dataset.action_info("nosuchservice:Get") is None
    assert dataset.action_info("garbage") is None
    assert dataset.action_exists("kms:ReEncryptFrom") and not dataset.action_exists("kms:ReEncrypt")
    assert dataset.has_resource_type("s3:PutObject") and not dataset.has_resource_type("s3:ListAllMyBuckets")


def test_arn_formats() -> None:
    assert dataset.arn_formats("s3", "object") == ("arn:${Partition}:s3:::${BucketName}/${ObjectName}",)
    assert dataset.arn_formats("s3", "nosuchtype") == ()


def test_expand_actions_is_case_insensitive_and_scoped() -> None:
    gets = dataset.expand_actions("s3:get*")
    assert "s3:GetObject" in gets and all(a.startswith("s3:Get") for a in gets)
    assert dataset.expand_actions("kms:ReEncrypt*") == {"kms:ReEncryptFrom", "kms:ReEncryptTo"}
    assert dataset.expand_actions("kms:ReEncrypt?o") == {"kms:ReEncryptTo"}
    everything = dataset.expand_actions("*")
    assert everything == dataset.all_actions() and len(everything) > 10000
    assert dataset.expand_actions("nosuchservice:*") == frozenset()


@pytest.mark.parametrize(
    ("service", "arn", "rtype"),
    [
        ("s3", "arn:aws:s3:::bucket", "bucket"),
        ("s3", "arn:aws:s3:::bucket/a/b.txt", "object"),
        ("kms", "arn:aws:kms:us-east-1:111122223333:key/abc", "key"),
        ("kms", "arn:aws:kms:us-east-1:111122223333:alias/app", "alias"),
        ("iam", "arn:aws:iam::111122223333:role/path/app", "role"),
        ("lambda", "arn:aws:lambda:us-east-1:111122223333:function:f", "function"),
        ("lambda", "arn:aws:lambda:us-east-1:111122223333:function:f:prod", "function alias"),
        ("s3", "arn:aws:kms:us-east-1:111122223333:key/abc", None),
    ],
)
def test_match_arn_type(service: str, arn: str, rtype: str | None) -> None:
    assert dataset.match_arn_type(service, arn) == rtype


@pytest.mark.parametrize(
    ("service", "name", "action"),
    [
        ("lambda", "ListFunctions20150331", "lambda:ListFunctions"),
        ("lambda", "GetFunction20150331v2", "lambda:GetFunction"),
        ("lambda", "UpdateFunctionConfiguration20150331v2", "lambda:UpdateFunctionConfiguration"),
        ("cloudfront", "UpdateDistribution2016_11_25", "cloudfront:UpdateDistribution"),
        ("cloudfront", "GetDistribution2020_05_31", "cloudfront:GetDistribution"),
        # Names that contain "20" but are actions themselves survive untouched.
        ("ec2", "DescribeInstances", "ec2:DescribeInstances"),
        ("s3", "ListObjectsV2", None),  # not an action: S3's table maps it to ListBucket
        ("lambda", "NoSuch20150331", None),
    ],
)
def test_version_suffixes(service: str, name: str, action: str | None) -> None:
    assert action_for_event_name(service, name) == action


def _rule_actions() -> list[str]:
    out: set[str] = set()
    for rules in REGISTRY.values():
        out |= set(rules.emits)
        for actions in rules.renames.values():
            out |= set(actions)
    return sorted(out)


def test_registry_declares_actions() -> None:
    assert len(_rule_actions()) > 60


@pytest.mark.parametrize("action", _rule_actions())
def test_every_emittable_action_exists(action: str) -> None:
    info = dataset.action_info(action)
    assert info is not None, f"{action} is not in the Service Authorization Reference"
    assert info.name == action, f"{action}: canonical casing is {info.name}"


def _star_is_explained(action: str, notes: tuple[str, ...]) -> bool:
    """``"*"`` only for an action without resource type, or one whose types are all optional when the
    event named none of them, which a note then says (rolesmith.actions.builder)."""
    if not dataset.has_resource_type(action):
        return True
    return dataset.resource_types_all_optional(action) and any(
        note.startswith(f"{action} names no resource in this call") for note in notes
    )


def _doc_examples() -> list[tuple[str, dict]]:
    root = SHARED / "data" / "cloudtrail" / "awsdocs_examples"
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob("*.jsonl")):
        for index, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                out.append((f"{path.name}#{index}", json.loads(line)["event"]))
    return out


def test_awsdocs_examples_map_cleanly() -> None:
    examples = _doc_examples()
    if not examples:
        pytest.skip("../shared/ not present: no documentation CloudTrail examples to sweep")
    mapped = 0
    for origin, raw in examples:
        try:
            event = normalize(raw, origin, allow_missing_time=True)
        except BadRecord:
            continue  # malformed documentation snippets are the ingest stage's concern
        result = uses_for(event)
        for use in result.uses + result.inferred:
            assert dataset.action_exists(use.action), (origin, use)
            if use.resource == "*":
                assert _star_is_explained(use.action, result.notes), (origin, use)
            else:
                assert use.resource.startswith("arn:"), (origin, use)
        mapped += bool(result.uses)
    assert mapped >= 60, mapped


def test_every_shared_cloudtrail_event_maps_within_the_invariants() -> None:
    root = SHARED / "data" / "cloudtrail"
    if not root.is_dir():
        pytest.skip("../shared/ not present: no real CloudTrail corpus to sweep")
    from rolesmith.trail.ingest import read_trail

    events = mapped = unknown = 0
    for event in read_trail([root], skip_bad=True):
        events += 1
        result = uses_for(event)
        unknown += result.unknown is not None
        mapped += bool(result.uses)
        for use in result.uses + result.inferred:
            assert dataset.action_exists(use.action), (event.origin, use)
            assert use.resource != "*" or _star_is_explained(use.action, result.notes), (event.origin, use)
            assert use.resource == "*" or use.resource.startswith("arn:"), (event.origin, use)
    assert events > 10_000
    # Unknowns are console-internal calls and deliberately odd test events, never the bulk.
    assert unknown < events * 0.05 and mapped > events * 0.9, (events, mapped, unknown)
