"""Policy synthesis rules (issue 2 §7) on hand-made graphs, plus statement merging and generalisation.

Documented rules, with the copies under ../shared/reference/:
* both the key policy and the caller's IAM policy are needed cross-account
  (s3_kms/kms-dg__key-policy-modifying-external-accounts.md);
* bucket-owner-full-control condition for cross-account uploads (s3_kms/s3-ug__ensure-object-ownership.md);
* key administrators statement (s3_kms/kms-dg__key-policy-default.md);
* kms:ViaService / kms:CallerAccount (s3_kms/kms-dg__conditions-kms.md).
"""

from __future__ import annotations

import itertools

import pytest

from rolesmith.actions.model import EventUses, Use
from rolesmith.graph import UsageGraph
from rolesmith.policies import KEY_ADMIN_ACTIONS, BuildOptions, UnknownPrincipal, policies_from_graph
from rolesmith.policies.generalize import generalize, shared_prefix
from rolesmith.policies.statements import merge
from rolesmith.trail.model import Event, Principal

from tests.test_graph import A, B, KEY_B, OBJ_B, ROLE, VIA_S3, WRITER, ev, kms_by_s3, put


def graph_of(*pairs: tuple[Event, EventUses]) -> UsageGraph:
    graph = UsageGraph()
    for event, uses in pairs:
        graph.add(event, uses)
    return graph


def secure_inbox_graph(acl: str | None = "bucket-owner-full-control") -> UsageGraph:
    return graph_of(put(OBJ_B, eid="p1", acl=acl), kms_by_s3("GenerateDataKey", KEY_B, OBJ_B, eid="k1"))


def findings(policy_set, code: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.message for f in policy_set.findings if f.code == code]


# -- statements ----------------------------------------------------------------------------------

def _allowed(statements: list[dict]) -> set[tuple[str, str, tuple]]:
    out = set()
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        cond = tuple(sorted((op, k, v) for op, keys in st.get("Condition", {}).items() for k, v in keys.items()))
        out |= set(itertools.product(actions, resources, [cond]))
    return out


def test_merge_groups_actions_sharing_resources_and_never_widens() -> None:
    grants = [
        ("s3:GetObject", "arn:aws:s3:::b/x", ()),
        ("s3:PutObject", "arn:aws:s3:::b/x", ()),
        ("s3:PutObject", "arn:aws:s3:::b/y", ()),
        ("kms:Decrypt", KEY_B, VIA_S3),
        ("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/t", ()),
    ]
    statements = merge(grants)
    assert _allowed(statements) == {(a, r, tuple(c)) for a, r, c in grants}
    assert [s["Sid"] for s in statements] == ["Dynamodb", "S3A", "S3B", "KmsViaS3"]
    assert statements[1] == {"Sid": "S3A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/x"}
    assert merge(list(reversed(grants))) == statements  # deterministic whatever the input order


# -- generalisation ------------------------------------------------------------------------------

J = "j-2AXXXXXXGAPLF"
I = "i-0a1b2c3d4e5f60718"


@pytest.mark.parametrize("arns, created, expected", [
    # Ids a creation call in the trail returned are new every run: widened.
    ([f"arn:aws:elasticmapreduce:us-east-1:1:cluster/{J}"], {J}, ["arn:aws:elasticmapreduce:us-east-1:1:cluster/*"]),
    ([f"arn:aws:ec2:us-east-1:1:instance/{I}"], {I}, ["arn:aws:ec2:us-east-1:1:instance/*"]),
    ([f"arn:aws:sqs:us-east-1:1:AWS-ElasticMapReduce-{J}"], {J}, ["arn:aws:sqs:us-east-1:1:AWS-ElasticMapReduce-*"]),
    # ... only the id's segment of an S3 path (what follows stays).
    ([f"arn:aws:s3:::b/logs/{J}/node/{I}/steps.log"], {J, I}, ["arn:aws:s3:::b/logs/j-*/node/i-*/steps.log"]),
    # The same ids without a creation call in the trail (an existing cluster, instance, queue): exact.
    ([f"arn:aws:elasticmapreduce:us-east-1:1:cluster/{J}"], set(), [f"arn:aws:elasticmapreduce:us-east-1:1:cluster/{J}"]),
    ([f"arn:aws:ec2:us-east-1:1:instance/{I}"], set(), [f"arn:aws:ec2:us-east-1:1:instance/{I}"]),
    ([f"arn:aws:sqs:us-east-1:1:AWS-ElasticMapReduce-{J}"], set(), [f"arn:aws:sqs:us-east-1:1:AWS-ElasticMapReduce-{J}"]),
    ([f"arn:aws:s3:::b/{J}/secret.csv"], set(), [f"arn:aws:s3:::b/{J}/secret.csv"]),
    # An S3 path segment that is an id created in the trail is widened to that id's shape, nothing more;
    # the same key naming an instance the trail did not create stays exact.
    ([f"arn:aws:s3:::b/inventory/{I}"], {I}, ["arn:aws:s3:::b/inventory/i-*"]),
    ([f"arn:aws:s3:::b/inventory/{I}"], set(), [f"arn:aws:s3:::b/inventory/{I}"]),
    (["arn:aws:s3:::b/reports/2026/a.csv", "arn:aws:s3:::b/reports/2026/b.csv"], set(), ["arn:aws:s3:::b/reports/2026/*"] * 2),
    (["arn:aws:s3:::b/reports/a.csv"], set(), ["arn:aws:s3:::b/reports/a.csv"]),  # one key stays exact
    (["arn:aws:s3:::b/a.csv", "arn:aws:s3:::b/b.csv"], set(), ["arn:aws:s3:::b/a.csv", "arn:aws:s3:::b/b.csv"]),  # no prefix
    (["arn:aws:sqs:us-east-1:1:my-queue"], set(), ["arn:aws:sqs:us-east-1:1:my-queue"]),  # chosen names stay
    (["arn:aws:s3:::b/j-notacluster.txt"], set(), ["arn:aws:s3:::b/j-notacluster.txt"]),
])
def test_safe_generalisation_widens_only_ids_the_trail_shows_generated(arns: list[str], created: set[str],
                                                                      expected: list[str]) -> None:
    mapping, _ = generalize(arns, frozenset(created))
    assert [mapping[a] for a in arns] == expected


def test_shared_prefix_cuts_at_a_slash() -> None:
    assert shared_prefix(["logs/2026/a", "logs/2027/b"]) == "logs/"
    assert shared_prefix(["logsA", "logsB"]) == ""


# -- identity, bucket, key and trust policies -----------------------------------------------------

def test_cross_account_upload_needs_identity_bucket_and_key_policy() -> None:
    ps = policies_from_graph(secure_inbox_graph(), BuildOptions())
    [identity] = ps.identity_policies
    assert identity.principal == ROLE
    assert identity.policy["Statement"] == [
        {"Sid": "S3", "Effect": "Allow", "Action": "s3:PutObject", "Resource": OBJ_B},
        {"Sid": "KmsViaS3", "Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": KEY_B,
         "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}},
    ]
    bucket, key = sorted(ps.resource_policies, key=lambda p: p.kind, reverse=True)
    assert (bucket.kind, bucket.resource, bucket.account) == ("s3-bucket", "arn:aws:s3:::secure-inbox", B)
    assert bucket.policy["Statement"] == [{
        "Sid": "S3", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:PutObject", "Resource": OBJ_B,
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]
    assert (key.kind, key.resource, key.account) == ("kms-key", KEY_B, B)
    admin, use = key.policy["Statement"]
    assert admin == {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
                     "Action": list(KEY_ADMIN_ACTIONS), "Resource": "*"}
    assert use == {"Sid": "KeyUseViaS3", "Effect": "Allow", "Principal": {"AWS": ROLE},
                   "Action": "kms:GenerateDataKey", "Resource": "*",
                   "Condition": {"StringEquals": {"kms:CallerAccount": A,
                                                  "kms:ViaService": "s3.us-east-1.amazonaws.com"}}}
    assert [f.code for f in ps.findings] == ["KEY_POLICY_RESOURCE", "NO_TRUST_EVIDENCE"]
    assert findings(ps, "KEY_POLICY_RESOURCE") == [
        f'{KEY_B}: its key policy says "Resource": "*", which in a key policy means this key only'
        " (a key policy applies to its own key; AWS KMS developer guide, key policies)"]


def test_upload_without_the_acl_header_gets_no_acl_condition() -> None:
    ps = policies_from_graph(secure_inbox_graph(acl=None), BuildOptions())
    [bucket] = [p for p in ps.resource_policies if p.kind == "s3-bucket"]
    assert "Condition" not in bucket.policy["Statement"][0]


def test_same_account_bucket_gets_no_bucket_policy_and_unknown_owner_is_a_finding() -> None:
    own = graph_of(put("arn:aws:s3:::mine/x", eid="p1", owner=A))
    assert [p.kind for p in policies_from_graph(own, BuildOptions()).resource_policies] == []
    unknown = graph_of(put("arn:aws:s3:::theirs/x", eid="p1", owner=None))
    ps = policies_from_graph(unknown, BuildOptions())
    assert ps.resource_policies == ()
    assert findings(ps, "BUCKET_OWNER_UNKNOWN") == [
        "bucket theirs: the trail does not say which account owns it; assumed the caller's"
        " (pass --account-of theirs=ACCOUNT if another account owns it)"]
    told = policies_from_graph(unknown, BuildOptions(account_of={"theirs": B}))
    assert [(p.resource, p.account) for p in told.resource_policies] == [("arn:aws:s3:::theirs", B)]


def test_key_admins_option_replaces_the_account_root() -> None:
    admin = f"arn:aws:iam::{B}:role/KeyAdmin"
    ps = policies_from_graph(secure_inbox_graph(), BuildOptions(key_admins=(admin,)))
    [key] = [p for p in ps.resource_policies if p.kind == "kms-key"]
    assert key.policy["Statement"][0]["Principal"] == {"AWS": admin}


def test_direct_kms_use_has_no_service_condition() -> None:
    event = ev("Decrypt", "kms.amazonaws.com", eid="d1")
    graph = graph_of((event, EventUses(uses=(Use(action="kms:Decrypt", resource=KEY_B),))))
    ps = policies_from_graph(graph, BuildOptions())
    [key] = ps.resource_policies
    assert "Condition" not in key.policy["Statement"][1]
    assert ps.identity_policies[0].policy["Statement"][0]["Resource"] == KEY_B


def test_aws_managed_key_needs_no_statement() -> None:
    alias = "arn:aws:kms:us-east-1:111122223333:alias/aws/s3"
    graph = graph_of(kms_by_s3("GenerateDataKey", alias, OBJ_B, eid="k1"))
    ps = policies_from_graph(graph, BuildOptions())
    assert ps.identity_policies == () and ps.resource_policies == ()
    assert len(findings(ps, "AWS_MANAGED_KEY")) == 1


def test_resource_star_only_for_actions_without_resource_type() -> None:
    list_buckets = (ev("ListBuckets", "s3.amazonaws.com", eid="l1"),
                    EventUses(uses=(Use(action="s3:ListAllMyBuckets", resource="*"),)))
    unscoped = (ev("GetObject", "s3.amazonaws.com", eid="g1"), EventUses(uses=(Use(action="s3:GetObject", resource="*"),)))
    ps = policies_from_graph(graph_of(list_buckets, unscoped), BuildOptions())
    [identity] = ps.identity_policies
    assert identity.policy["Statement"] == [
        {"Sid": "S3", "Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]
    assert findings(ps, "RESOURCE_WILDCARD") == [
        's3:ListAllMyBuckets: Resource "*" because the action has no resource type in the Service Authorization'
        ' Reference']
    assert len(findings(ps, "UNSCOPED_USE_DROPPED")) == 1


def test_denied_uses_are_findings_unless_included() -> None:
    denied = (ev("GetObject", "s3.amazonaws.com", eid="d1", error="AccessDenied"),
              EventUses(uses=(Use(action="s3:GetObject", resource=OBJ_B),)))
    graph = graph_of(put(OBJ_B, eid="p1", owner=A), denied)
    ps = policies_from_graph(graph, BuildOptions())
    assert ps.identity_policies[0].policy["Statement"][0]["Action"] == "s3:PutObject"
    assert findings(ps, "DENIED_CALLS") == [
        f"{ROLE} was denied s3:GetObject on {OBJ_B} (1x); not granted (use --include-denied to grant it, or"
        " rolesmith explain)"]
    granted = policies_from_graph(graph, BuildOptions(include_denied=True))
    assert granted.identity_policies[0].policy["Statement"][0]["Action"] == ["s3:GetObject", "s3:PutObject"]


def test_trust_policy_from_assume_role_events() -> None:
    lam = Principal(arn="lambda.amazonaws.com", kind="service", account=None)
    user = Principal(arn=f"arn:aws:iam::{A}:user/ci", kind="user", account=A)
    uses = EventUses(uses=(Use(action="sts:AssumeRole", resource=ROLE),))
    tagged = EventUses(uses=(Use(action="sts:AssumeRole", resource=ROLE), Use(action="sts:TagSession", resource=ROLE)))
    graph = graph_of(
        (ev("AssumeRole", "sts.amazonaws.com", eid="a1", principal=lam, request={"roleArn": ROLE}), uses),
        (ev("AssumeRole", "sts.amazonaws.com", eid="a2", principal=user, request={"roleArn": ROLE}), tagged),
        put(OBJ_B, eid="p1", owner=A),
    )
    ps = policies_from_graph(graph, BuildOptions())
    [trust] = ps.trust_policies
    assert trust.role == ROLE
    assert trust.policy["Statement"] == [
        {"Sid": "TrustedByAWS", "Effect": "Allow", "Principal": {"AWS": user.arn},
         "Action": ["sts:AssumeRole", "sts:TagSession"]},
        {"Sid": "TrustedByService", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": "sts:AssumeRole"},
    ]
    # The service principal gets no identity policy; the user does.
    assert [p.principal for p in ps.identity_policies] == [ROLE, user.arn]
    assert findings(ps, "NO_TRUST_EVIDENCE") == []


def test_role_without_assume_role_evidence_is_a_finding() -> None:
    ps = policies_from_graph(graph_of(put(OBJ_B, eid="p1", owner=A)), BuildOptions())
    assert ps.trust_policies == ()
    assert findings(ps, "NO_TRUST_EVIDENCE") == [
        f"{ROLE}: acted in the trail but no AssumeRole of it is recorded; no trust policy written"]


def test_principal_filter_and_unknown_principal() -> None:
    other = Principal(arn=f"arn:aws:iam::{A}:user/other", kind="user", account=A)
    graph = graph_of(put(OBJ_B, eid="p1", owner=A),
                     (ev("GetObject", "s3.amazonaws.com", eid="g1", principal=other),
                      EventUses(uses=(Use(action="s3:GetObject", resource=OBJ_B),))))
    ps = policies_from_graph(graph, BuildOptions(principals=(other.arn,)))
    assert [p.principal for p in ps.identity_policies] == [other.arn]
    with pytest.raises(UnknownPrincipal) as err:
        policies_from_graph(graph, BuildOptions(principals=("arn:aws:iam::1:role/nobody",)))
    assert str(err.value) == (
        "--principal arn:aws:iam::1:role/nobody: no events of this principal in the trail; fix: use one of: "
        f"{ROLE}, {other.arn}")
    assert err.value.exit_code == 2


def test_generalize_none_keeps_exact_arns() -> None:
    objs = ["arn:aws:s3:::b/run/1.csv", "arn:aws:s3:::b/run/2.csv"]
    graph = graph_of(*(put(o, eid=f"p{i}", owner=A) for i, o in enumerate(objs)))
    safe = policies_from_graph(graph, BuildOptions())
    assert safe.identity_policies[0].policy["Statement"][0]["Resource"] == "arn:aws:s3:::b/run/*"
    assert len(findings(safe, "GENERALIZED")) == 1
    exact = policies_from_graph(graph, BuildOptions(generalize="none"))
    assert exact.identity_policies[0].policy["Statement"][0]["Resource"] == objs
    assert findings(exact, "GENERALIZED") == []


def test_partial_arn_is_a_finding_and_unlinked_indirect_use_too() -> None:
    partial = (ev("RunInstances", "ec2.amazonaws.com", eid="r1"),
               EventUses(uses=(Use(action="ec2:RunInstances", resource="arn:aws:ec2:us-east-1:1:instance/*",
                                   partial=True),)))
    ps = policies_from_graph(graph_of(partial, kms_by_s3("Decrypt", KEY_B, OBJ_B, eid="k1")), BuildOptions())
    assert len(findings(ps, "PARTIAL_ARN")) == 1
    assert findings(ps, "INDIRECT_USE_UNLINKED") == [
        f"kms:Decrypt on {KEY_B} was made by s3.amazonaws.com for {ROLE}, but the call that triggered it is not in"
        " the trail (are data events logged?)"]


def test_root_gets_no_policy_but_a_finding() -> None:
    root = Principal(arn=f"arn:aws:iam::{A}:root", kind="root", account=A)
    ps = policies_from_graph(graph_of((ev("GetObject", "s3.amazonaws.com", eid="g1", principal=root),
                                       EventUses(uses=(Use(action="s3:GetObject", resource=OBJ_B),)))), BuildOptions())
    assert ps.identity_policies == ()
    assert [f.code for f in ps.findings] == ["NO_POLICY_FOR_PRINCIPAL"]


def test_writer_principal_is_the_role_not_the_session() -> None:
    assert WRITER.session == "nightly"
    ps = policies_from_graph(secure_inbox_graph(), BuildOptions())
    assert "nightly" not in repr(ps.to_dict())


def test_ids_created_in_the_trail_are_widened_but_chosen_ones_are_not() -> None:
    # The security group EMR creates (CreateSecurityGroup response groupId) is new every run; the subnet
    # the user chose is not (issue 2 §7: widen only what the evidence shows is generated per run).
    sg = f"arn:aws:ec2:us-east-1:{A}:security-group/sg-0a1b2c3d4e5f60789"
    subnet = f"arn:aws:ec2:us-east-1:{A}:subnet/subnet-0123456789abcdef0"
    create = ev("CreateSecurityGroup", "ec2.amazonaws.com", eid="c1")
    create = Event(**{**{f: getattr(create, f) for f in create.__slots__}, "response": {"groupId": "sg-0a1b2c3d4e5f60789"}})
    run = (ev("RunInstances", "ec2.amazonaws.com", eid="r1"),
           EventUses(uses=(Use(action="ec2:RunInstances", resource=sg), Use(action="ec2:RunInstances", resource=subnet))))
    with_create = graph_of((create, EventUses(uses=(Use(action="ec2:CreateSecurityGroup", resource=sg),))), run)
    assert with_create.created == {"sg-0a1b2c3d4e5f60789"}
    stmts = policies_from_graph(with_create, BuildOptions()).identity_policies[0].policy["Statement"]
    assert [s["Resource"] for s in stmts] == [
        f"arn:aws:ec2:us-east-1:{A}:security-group/*",
        [f"arn:aws:ec2:us-east-1:{A}:security-group/*", subnet]]
    without = policies_from_graph(graph_of(run), BuildOptions()).identity_policies[0].policy["Statement"]
    assert without[0]["Resource"] == sorted([sg, subnet])


def test_policy_over_the_managed_policy_size_is_a_finding() -> None:
    # 6,144 non-whitespace characters (IAM and AWS STS quotas, reference_iam-quotas.html).
    objs = [f"arn:aws:s3:::bucket/runs/part-{i:03d}.csv" for i in range(200)]
    graph = graph_of(*(put(o, eid=f"p{i}", owner=A) for i, o in enumerate(objs)))
    exact = policies_from_graph(graph, BuildOptions(generalize="none"))
    [message] = findings(exact, "POLICY_TOO_LARGE")
    # 200 ARNs of 37 characters with quotes and commas (8,000), plus the statement around them.
    assert message == (f"{ROLE}: the identity policy has 8,105 non-whitespace characters, over the 6,144 of a managed"
                       " policy (a role's inline policies may total 10,240, a user's 2,048); split it into several"
                       " managed policies (IAM attaches up to 10 to a role or user by default), or let --generalize"
                       " safe widen generated ids")
    assert findings(policies_from_graph(graph, BuildOptions()), "POLICY_TOO_LARGE") == []


def test_resource_star_for_a_call_naming_none_of_its_optional_resource_types() -> None:
    # cloudwatch:PutMetricData's only resource type (dataset) is optional: a call naming none is
    # evaluated against "*", so scoping it to an ARN would refuse the call the trail shows.
    put_metric = (ev("PutMetricData", "monitoring.amazonaws.com", eid="m1"),
                  EventUses(uses=(Use(action="cloudwatch:PutMetricData", resource="*"),)))
    ps = policies_from_graph(graph_of(put_metric), BuildOptions())
    [identity] = ps.identity_policies
    assert identity.policy["Statement"] == [
        {"Sid": "Cloudwatch", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}]
    assert findings(ps, "RESOURCE_WILDCARD") == [
        'cloudwatch:PutMetricData: Resource "*" because the call named none of the action\'s optional resource'
        ' types, so IAM evaluates it against "*"']


@pytest.mark.parametrize(("via", "expect"), [
    ("s3.amazonaws.com", [["StringEquals", "kms:ViaService", "s3.us-east-1.amazonaws.com"]]),
    ("cloudformation.amazonaws.com", None),  # not in the KMS guide's ViaService table: never sent
    ("internal.amazonaws.com", None),
])
def test_kms_via_service_only_for_services_that_send_it(via: str, expect: list | None) -> None:
    # kms-dg__conditions-kms.md, "kms:ViaService": only the services in its table set the key; a
    # condition on it for any other service would refuse the call the trail shows.
    key = f"arn:aws:kms:us-east-1:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    event = ev("Decrypt", "kms.amazonaws.com", eid="d1", invoked_by=via, request={"keyId": key})
    use = Use(action="kms:Decrypt", resource=key, resource_account=A, via=via)
    ps = policies_from_graph(graph_of((event, EventUses(uses=(use,)))), BuildOptions())
    statement = next(s for p in ps.identity_policies for s in p.policy["Statement"] if s["Action"] == "kms:Decrypt")
    got = statement.get("Condition")
    if expect is None:
        assert got is None
    else:
        assert [[op, k, v] for op, kv in got.items() for k, v in kv.items()] == expect


def test_a_cross_account_use_whose_other_half_rolesmith_does_not_write_is_a_finding() -> None:
    # Cross-account evaluation needs both sides (reference_policies_evaluation-logic-cross-account);
    # rolesmith writes the bucket, key and trust sides only, so a queue of account B gets a finding.
    queue = f"arn:aws:sqs:us-east-1:{B}:inbox"
    event = ev("SendMessage", "sqs.amazonaws.com", eid="q1")
    ps = policies_from_graph(graph_of((event, EventUses(uses=(Use(action="sqs:SendMessage", resource=queue,
                                                                  resource_account=B),)))), BuildOptions())
    assert findings(ps, "CROSS_ACCOUNT_POLICY_NOT_WRITTEN") == [
        f"{ROLE} uses {queue} of account {B} (sqs:SendMessage): across accounts the owner's side must allow it too"
        " (its resource policy, or a share such as AWS RAM); rolesmith writes only bucket, key and trust policies"]
    assert findings(secure_inbox_policies := policies_from_graph(secure_inbox_graph(), BuildOptions()),
                    "CROSS_ACCOUNT_POLICY_NOT_WRITTEN") == []  # S3 and KMS: their policies are written
    assert secure_inbox_policies.resource_policies


@pytest.mark.parametrize(("role", "why"), [
    ("role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS",
     "it is a service-linked role, whose permissions the service defines and IAM does not let change"),
    ("role/aws-reserved/sso.amazonaws.com/us-west-2/AWSReservedSSO_DevAdmin_635426549a280cc6",
     "IAM Identity Center manages this role: change its permission set instead"),
    ("role/aws:ec2-infrastructure", "that is not an IAM role name (roles have no ':')"),
])
def test_roles_whose_policies_rolesmith_cannot_set_get_a_finding_not_a_policy(role: str, why: str) -> None:
    # IAM refuses to change a service-linked role (UnmodifiableEntity); Identity Center owns its roles.
    arn = f"arn:aws:iam::{A}:{role}"
    who = Principal(arn=arn, kind="role", account=A)
    event = ev("GetObject", "s3.amazonaws.com", eid="g1", principal=who)
    ps = policies_from_graph(graph_of((event, EventUses(uses=(Use(action="s3:GetObject", resource=OBJ_B),)))),
                             BuildOptions())
    assert ps.identity_policies == () and ps.trust_policies == ()
    assert findings(ps, "NO_POLICY_FOR_PRINCIPAL") == [f"{arn} made 1 calls; {why}, so no policy is written for it"]
