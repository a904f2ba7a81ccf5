"""The usage graph: nodes and edges per use, indirect-use links, queries, exports.

Events and uses are hand-made (not mapped from a trail) so these tests pin the graph's own rules.
Event shapes follow ../shared/reference/SSE_KMS_AND_SECURE_INBOX.md §1 ("How S3-invoked KMS calls look
in CloudTrail": the caller's identity with invokedBy s3.amazonaws.com and encryption context
aws:s3:arn) and EMR_MINIMAL_PERMISSIONS.md (EMR's EC2/SQS calls under the service role's session).
"""

from __future__ import annotations

import json

import pytest

from rolesmith.actions.model import EventUses, Use
from rolesmith.graph import UsageGraph, UseKey, export_graph
from rolesmith.graph.export import UnknownGraphFormat
from rolesmith.graph.model import EVIDENCE_CAP
from rolesmith.trail.model import Event, Principal

A, B = "111122223333", "444455556666"
ROLE = f"arn:aws:iam::{A}:role/report-writer"
KEY_B = f"arn:aws:kms:us-east-1:{B}:key/7777ffff-88aa-99bb-00cc-1111dddd2222"
OBJ_B = "arn:aws:s3:::secure-inbox/inbox/report.csv"
VIA_S3 = (("StringEquals", "kms:ViaService", "s3.us-east-1.amazonaws.com"),)

WRITER = Principal(arn=ROLE, kind="role", account=A, session="nightly", access_key_id="ASIAEXAMPLESECRETKEY")


def ev(name: str, source: str, *, eid: str, t: float | None = 1000.0, principal: Principal | None = WRITER,
       invoked_by: str | None = None, error: str | None = None, request: dict | None = None,
       resources: tuple = ()) -> Event:
    return Event(event_id=eid, request_id=None, source=source, name=name, time=t, region="us-east-1", account=A,
                 partition="aws", principal=principal, invoked_by=invoked_by, source_ip=None, user_agent=None,
                 error_code=error, error_message=None, read_only=None, event_type="AwsApiCall",
                 request=request or {}, resources=resources, origin=f"test#{eid}")


def put(obj: str, *, eid: str, t: float = 1000.0, acl: str | None = None, owner: str | None = B) -> tuple[Event, EventUses]:
    request = {"x-amz-acl": acl} if acl else {}
    bucket = obj.split(":::", 1)[1].split("/", 1)[0]
    resources = ({"type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}", "accountId": owner},) if owner else ()
    event = ev("PutObject", "s3.amazonaws.com", eid=eid, t=t, request=request, resources=resources)
    return event, EventUses(uses=(Use(action="s3:PutObject", resource=obj),))


def kms_by_s3(op: str, key: str, context: str, *, eid: str, t: float = 1001.0) -> tuple[Event, EventUses]:
    event = ev(op, "kms.amazonaws.com", eid=eid, t=t, invoked_by="s3.amazonaws.com",
               request={"keyId": key, "encryptionContext": {"aws:s3:arn": context}})
    use = Use(action=f"kms:{op}", resource=key, resource_account=key.split(":")[4], conditions=VIA_S3,
              via="s3.amazonaws.com")
    return event, EventUses(uses=(use,))


def build(*pairs: tuple[Event, EventUses]) -> UsageGraph:
    graph = UsageGraph()
    for event, uses in pairs:
        graph.add(event, uses)
    return graph


def test_repeated_use_is_one_node_with_counts_and_capped_evidence() -> None:
    graph = build(*(put(OBJ_B, eid=f"e{i}", t=1000.0 + i) for i in range(25)))
    [use] = graph.needs(ROLE)
    assert (use.action, use.resource, use.count) == ("s3:PutObject", OBJ_B, 25)
    assert (use.first_seen, use.last_seen) == (1000.0, 1024.0)
    assert use.events == tuple(f"e{i}" for i in range(EVIDENCE_CAP))
    assert use.provenance == "observed"
    kinds = sorted(data["kind"] for _, data in graph.graph.nodes(data=True))
    assert kinds == ["principal", "resource", "use"]


@pytest.mark.parametrize(
    "ids",
    [
        [f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}" for i in range(25)],  # CloudTrail's lower-case UUIDs: kept packed
        ["0c8a1d2e-aaaa-4bbb-8ccc-000000000001", "trail.json#7", "0c8a1d2e-aaaa-4bbb-8ccc-000000000002"],
        ["0C8A1D2E-AAAA-4BBB-8CCC-000000000001", "0c8a1d2e-aaaa-4bbb-8ccc-000000000001"],  # case is kept
        ["0c8a1d2e aaaa-4bbb-8ccc-0000000000 1", "0c8a1d2e-aaaa-4bbb-8ccc-00000000000g"],  # UUID-sized, not UUIDs
    ],
)
def test_evidence_ids_come_back_exactly_as_logged_in_order_without_repeats(ids: list[str]) -> None:
    events = [*ids, ids[0], ids[-1]]  # the same event read twice (two copies of a log file) is one piece of evidence
    graph = build(*(put(OBJ_B, eid=e, t=1000.0 + i) for i, e in enumerate(events)))
    [use] = graph.needs(ROLE)
    assert use.count == len(events)
    assert use.events == tuple(ids[:EVIDENCE_CAP])
    assert graph.stats(use.key)["events"] == list(ids[:EVIDENCE_CAP])


def test_denied_use_is_kept_apart_and_only_returned_on_request() -> None:
    event = ev("ListObjectsV2", "s3.amazonaws.com", eid="d1", error="AccessDenied")
    graph = build(put(OBJ_B, eid="p1"), (event, EventUses(uses=(Use(action="s3:ListBucket",
                                                                     resource="arn:aws:s3:::secure-inbox"),))))
    assert [u.action for u in graph.needs(ROLE)] == ["s3:PutObject"]
    both = graph.needs(ROLE, include_denied=True)
    assert [(u.action, u.denied, u.errors) for u in both] == [
        ("s3:ListBucket", True, ("AccessDenied",)), ("s3:PutObject", False, ())]


def test_unmapped_and_unattributable_events_are_counted_not_attributed() -> None:
    graph = build(
        (ev("Frobnicate", "made-up.amazonaws.com", eid="u1"), EventUses(unknown="made-up: not in the dataset")),
        (ev("Frobnicate", "made-up.amazonaws.com", eid="u2"), EventUses(unknown="made-up: not in the dataset")),
        (ev("PutObject", "s3.amazonaws.com", eid="n1", principal=None),
         EventUses(uses=(Use(action="s3:PutObject", resource=OBJ_B),))),
    )
    assert graph.unmapped == {"made-up.amazonaws.com Frobnicate: made-up: not in the dataset": 2}
    assert graph.unattributable == 1 and graph.unattributable_events == ["n1"]
    assert graph.uses() == []


def test_inferred_use_records_its_rule_and_observed_wins() -> None:
    event = ev("PutObject", "s3.amazonaws.com", eid="p1")
    inferred = Use(action="kms:GenerateDataKey", resource=KEY_B, inferred_by="s3-sse-kms-put", conditions=VIA_S3,
                   via="s3.amazonaws.com")
    graph = build((event, EventUses(uses=(Use(action="s3:PutObject", resource=OBJ_B),), inferred=(inferred,))))
    kms = [u for u in graph.needs(ROLE) if u.action.startswith("kms:")]
    assert [(u.provenance, u.inferred_by) for u in kms] == [("inferred", ("s3-sse-kms-put",))]
    graph.add(*kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1"))
    kms = [u for u in graph.needs(ROLE) if u.action.startswith("kms:")]
    assert [(u.provenance, u.count) for u in kms] == [("observed", 2)]


def test_kms_call_invoked_by_s3_is_linked_to_the_upload_with_the_same_encryption_context() -> None:
    other = "arn:aws:s3:::secure-inbox/inbox/other.csv"
    graph = build(put(OBJ_B, eid="p1", t=1000.0), put(other, eid="p2", t=1000.0),
                  kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1", t=1001.0))
    [kms] = [u for u in graph.needs(ROLE) if u.action == "kms:GenerateDataKey"]
    trigger = graph.trigger_of(kms)
    assert trigger is not None and (trigger.action, trigger.resource) == ("s3:PutObject", OBJ_B)
    assert graph.trigger_of(trigger) is None
    edges = [(u[1], v[1]) for u, v, k in graph.graph.edges(keys=True) if k == "invoked-by"]
    assert edges == [(kms.key, trigger.key)]


def test_bucket_key_context_links_to_the_bucket_arn() -> None:
    # With an S3 Bucket Key the context is the bucket ARN (s3-ug__UsingKMSEncryption.md, "Encryption context").
    graph = build(put(OBJ_B, eid="p1"), kms_by_s3("GenerateDataKey", KEY_B, "arn:aws:s3:::secure-inbox", eid="k1"))
    [kms] = [u for u in graph.needs(ROLE) if u.action.startswith("kms:")]
    assert graph.trigger_of(kms).resource == OBJ_B  # type: ignore[union-attr]


@pytest.mark.parametrize("gap, linked", [(60.0, True), (3600.0, False)])
def test_link_needs_the_calls_close_in_time(gap: float, linked: bool) -> None:
    graph = build(put(OBJ_B, eid="p1", t=1000.0), kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1", t=1000.0 + gap))
    [kms] = [u for u in graph.needs(ROLE) if u.action.startswith("kms:")]
    assert (graph.trigger_of(kms) is not None) is linked


def test_link_needs_the_same_principal() -> None:
    other = Principal(arn=f"arn:aws:iam::{A}:role/someone-else", kind="role", account=A)
    event, uses = kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1")
    graph = build(put(OBJ_B, eid="p1"), (ev("GenerateDataKey", "kms.amazonaws.com", eid="k1", principal=other,
                                             invoked_by="s3.amazonaws.com", request=dict(event.request)), uses))
    [kms] = graph.needs(other.arn)
    assert graph.trigger_of(kms) is None


def test_emr_service_role_calls_link_to_the_run_job_flow_that_passed_the_role() -> None:
    service_role = f"arn:aws:iam::{A}:role/emr-service"
    engineer = Principal(arn=f"arn:aws:iam::{A}:user/engineer", kind="user", account=A)
    emr = Principal(arn=service_role, kind="role", account=A, session="ElasticMapReduceSession")
    run = ev("RunJobFlow", "elasticmapreduce.amazonaws.com", eid="r1", principal=engineer, t=1000.0)
    run_uses = EventUses(uses=(Use(action="elasticmapreduce:RunJobFlow", resource="*"),),
                         inferred=(Use(action="iam:PassRole", resource=service_role, inferred_by="emr-pass-role"),))
    queue = f"arn:aws:sqs:us-east-1:{A}:AWS-ElasticMapReduce-j-2AXXXXXXGAPLF"
    create = ev("CreateQueue", "sqs.amazonaws.com", eid="q1", principal=emr, t=1040.0,
                invoked_by="elasticmapreduce.amazonaws.com")
    graph = build((run, run_uses), (create, EventUses(uses=(Use(action="sqs:CreateQueue", resource=queue,
                                                                  via="elasticmapreduce.amazonaws.com"),))))
    [sqs] = graph.needs(service_role)
    trigger = graph.trigger_of(sqs)
    assert trigger is not None and (trigger.principal, trigger.action) == (engineer.arn, "elasticmapreduce:RunJobFlow")


def test_cross_account_users_of_a_bucket() -> None:
    own = Principal(arn=f"arn:aws:iam::{B}:role/inbox-reader", kind="role", account=B)
    read = ev("GetObject", "s3.amazonaws.com", eid="g1", principal=own,
              resources=({"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::secure-inbox", "accountId": B},))
    graph = build(put(OBJ_B, eid="p1"), (read, EventUses(uses=(Use(action="s3:GetObject", resource=OBJ_B),))))
    assert graph.cross_account_users("arn:aws:s3:::secure-inbox") == [ROLE]
    assert graph.cross_account_users(OBJ_B) == [ROLE]
    assert graph.cross_account_users("arn:aws:s3:::elsewhere") == []


def test_assume_role_events_become_assumes_edges() -> None:
    lam = Principal(arn="lambda.amazonaws.com", kind="service", account=None)
    event = ev("AssumeRole", "sts.amazonaws.com", eid="a1", principal=lam, invoked_by="lambda.amazonaws.com",
               request={"roleArn": ROLE, "roleSessionName": "fn"})
    denied = ev("AssumeRole", "sts.amazonaws.com", eid="a2", error="AccessDenied",
                principal=Principal(arn=f"arn:aws:iam::{A}:user/mallory", kind="user", account=A),
                request={"roleArn": ROLE, "roleSessionName": "x"})
    uses = EventUses(uses=(Use(action="sts:AssumeRole", resource=ROLE),))
    graph = build((event, uses), (denied, uses))
    [a] = graph.assumptions()
    assert (a.caller, a.caller_kind, a.role, a.actions, a.count) == (
        "lambda.amazonaws.com", "service", ROLE, ("sts:AssumeRole",), 1)
    assert graph.graph.has_edge(("principal", "lambda.amazonaws.com"), ("principal", ROLE), "assumes")


def test_use_key_label_is_stable() -> None:
    key = UseKey(principal=ROLE, action="kms:Decrypt", resource=KEY_B, conditions=VIA_S3, via="s3.amazonaws.com")
    assert key.label() == (f"{ROLE} | kms:Decrypt | {KEY_B} | StringEquals:kms:ViaService=s3.us-east-1.amazonaws.com"
                           " | via s3.amazonaws.com")


def test_exports_are_deterministic_and_never_carry_keys_or_sessions() -> None:
    pairs = [put(OBJ_B, eid="p1"), kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1")]
    one, two = build(*pairs), build(*reversed(pairs))
    doc = json.loads(export_graph(one, "json"))
    assert export_graph(one, "json") == export_graph(two, "json")
    assert {e["kind"] for e in doc["edges"]} == {"uses", "on", "invoked-by"}
    uses = [e for e in doc["edges"] if e["kind"] == "uses"]
    assert {(e["action"], e["count"], e["provenance"], e["first_seen"]) for e in uses} == {
        ("s3:PutObject", 1, "observed", "1970-01-01T00:16:40Z"),
        ("kms:GenerateDataKey", 1, "observed", "1970-01-01T00:16:41Z")}
    for fmt in ("json", "dot", "mermaid"):
        text = export_graph(one, fmt)
        assert "ASIAEXAMPLESECRETKEY" not in text and "nightly" not in text
    assert export_graph(one, "dot").startswith("digraph usage {")
    mermaid = export_graph(one, "mermaid")
    assert mermaid.startswith("flowchart LR") and '-->|"invoked-by"|' in mermaid


def test_unknown_export_format_is_an_error() -> None:
    with pytest.raises(UnknownGraphFormat, match=r"^graph format 'png': unknown; fix: use one of json, dot, mermaid$"):
        export_graph(UsageGraph(), "png")


def test_real_trail_links_kms_calls_to_the_secret_and_parameter_reads() -> None:
    # Stratus Red Team runs in ../shared/data/cloudtrail/invictus_aws_dataset: KMS Decrypt with invokedBy
    # secretsmanager.amazonaws.com (encryption context SecretARN) and AWS Internal / ssm (PARAMETER_ARN).
    from pathlib import Path

    from rolesmith.graph import graph_from_paths

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "cloudtrail" / "invictus_aws_dataset"
    if not source.is_dir():
        pytest.skip(f"../shared/ not present: {source}")
    graph, _ = graph_from_paths([source], skip_bad=True)
    linked = {}
    for use in graph.uses():
        trigger = graph.trigger_of(use)
        if use.action == "kms:Decrypt" and trigger is not None:
            linked[use.via] = trigger.action
    assert linked == {"secretsmanager.amazonaws.com": "secretsmanager:GetSecretValue",
                      "ssm.amazonaws.com": "ssm:GetParameter"}


def test_a_packed_id_is_matched_only_at_an_id_boundary() -> None:
    from rolesmith.graph.evidence import holds

    a, b = bytes(8) + b"\x01" * 8, b"\x01" * 8 + bytes(8)
    across = b"\x01" * 16  # the last half of a and the first half of b
    assert holds(a + b, a) and holds(a + b, b)
    assert not holds(a + b, across)
    assert holds(a + b + across, across)


def test_an_id_the_request_named_is_not_counted_as_created() -> None:
    # RunInstances echoes the security groups it was given and CreateSnapshot the volume it copied:
    # those existed before the call, so --generalize safe must not treat them as new every run.
    from dataclasses import replace

    graph = UsageGraph()
    run = replace(ev("RunInstances", "ec2.amazonaws.com", eid="r1",
                     request={"groupSet": {"items": [{"groupId": "sg-0aebfa21f302bded9"}]}}),
                  response={"instancesSet": {"items": [{"instanceId": "i-0a1b2c3d4e5f60718",
                                                        "groupSet": {"items": [{"groupId": "sg-0aebfa21f302bded9"}]}}]}})
    graph.add(run, EventUses(uses=(Use(action="ec2:RunInstances", resource="arn:aws:ec2:us-east-1:1:instance/*"),)))
    assert graph.created == {"i-0a1b2c3d4e5f60718"}
