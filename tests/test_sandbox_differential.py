"""Differential: the sandbox's decisions over ≥ 1,000 generated requests equal the evaluator's for the
same request and policies — and the independent engine of the evaluator issue
(@cloud-copilot/iam-simulate, through tests/test_differential.py's harness) agrees, up to the
divergences documented in rolesmith/evaluator/DIVERGENCES.md.

The scenario (two accounts, an SCP, boundaries, bucket/key/queue/trust policies with allows, denies
and conditions) and the requests are generated from a fixed seed. The expected side is assembled
here, independently of the sandbox: the action and resource each operation needs per the Service
Authorization Reference, and the policies in force read straight from the scenario.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from rolesmith.evaluator import NamedPolicy, Policies, Request, evaluate
from rolesmith.sandbox import start_sandbox

try:  # the evaluator issue's harness: node + @cloud-copilot/iam-simulate, installed at test time
    import test_differential as harness
    from test_differential import iam_simulate  # noqa: F401 - a fixture, used by name
except ImportError:  # pragma: no cover - the harness is part of this repository
    harness = None

N_REQUESTS = 1000
REGION = "us-east-1"
A, B = "111111111111", "222222222222"
DENIED = {"AccessDenied", "AccessDeniedException"}

BUCKETS = {"diff-a0": A, "diff-a1": A, "diff-b0": B}
QUEUES = {"diff-qa": A, "diff-qb": B}
KEYS = {"key-a": (A, "0a1b2c3d-aaaa-4000-8000-00000000000a"), "key-b": (B, "0a1b2c3d-bbbb-4000-8000-00000000000b")}
USERS = {"u0": A, "u1": A, "u2": A, "u3": B, "u4": B}
ROLES = {"r0": A, "r1": B}


def _key_arn(name: str) -> str:
    acct, kid = KEYS[name]
    return f"arn:aws:kms:{REGION}:{acct}:key/{kid}"


def _arn(kind: str, name: str) -> str:
    acct = USERS.get(name) or ROLES.get(name)
    return f"arn:aws:iam::{acct}:{kind}/{name}"


PRINCIPALS = [("user", n) for n in USERS] + [("role", n) for n in ROLES]
# (operation, action, resource kind)
OPS = [("PutObject", "s3:PutObject", "object"), ("DeleteObject", "s3:DeleteObject", "object"),
       ("ListObjectsV2", "s3:ListBucket", "bucket"), ("Encrypt", "kms:Encrypt", "key"),
       ("DescribeKey", "kms:DescribeKey", "key"), ("SendMessage", "sqs:SendMessage", "queue"),
       ("GetQueueAttributes", "sqs:GetQueueAttributes", "queue"), ("AssumeRole", "sts:AssumeRole", "role")]
ACTIONS = {"object": ["s3:PutObject", "s3:DeleteObject", "s3:*", "s3:Put*", "s3:*Object"],
           "bucket": ["s3:ListBucket", "s3:List*", "s3:*"],
           "key": ["kms:Encrypt", "kms:DescribeKey", "kms:*", "kms:Describe*"],
           "queue": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:*", "sqs:Get*"],
           "role": ["sts:AssumeRole", "sts:*"]}


def _resources(kind: str, rnd: random.Random) -> list[str]:
    if kind == "object":
        b = rnd.choice(list(BUCKETS))
        return [rnd.choice([f"arn:aws:s3:::{b}/*", f"arn:aws:s3:::{b}/in/*", "arn:aws:s3:::diff-*/*"])]
    if kind == "bucket":
        return [rnd.choice([f"arn:aws:s3:::{b}" for b in BUCKETS] + ["arn:aws:s3:::diff-a*"])]
    if kind == "key":
        return [rnd.choice([_key_arn(k) for k in KEYS] + [f"arn:aws:kms:{REGION}:{A}:key/*"])]
    if kind == "queue":
        return [rnd.choice([f"arn:aws:sqs:{REGION}:{QUEUES[q]}:{q}" for q in QUEUES] + ["arn:aws:sqs:*:*:diff-*"])]
    return [rnd.choice([_arn("role", r) for r in ROLES] + ["arn:aws:iam::*:role/r*"])]


def _condition(rnd: random.Random) -> dict[str, Any] | None:
    pick = rnd.random()
    if pick < 0.7:
        return None
    if pick < 0.8:
        return {"StringEquals": {"aws:PrincipalAccount": rnd.choice([A, B])}}
    if pick < 0.9:
        return {"StringEquals": {"aws:RequestedRegion": rnd.choice([REGION, "eu-west-1"])}}
    return {"StringLike": {"aws:PrincipalArn": rnd.choice([f"arn:aws:iam::{A}:user/*", "arn:aws:iam::*:role/*"])}}


def _statement(rnd: random.Random, kind: str, *, principal: Any = None, deny: float = 0.15) -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": "Deny" if rnd.random() < deny else "Allow",
                          "Action": rnd.choice(ACTIONS[kind])}
    if principal is not None:
        st["Principal"] = principal
    st["Resource"] = "*" if principal is not None else _resources(kind, rnd)
    cond = _condition(rnd)
    if cond:
        st["Condition"] = cond
    return st


def _principal_element(rnd: random.Random) -> Any:
    kind, name = rnd.choice(PRINCIPALS)
    return rnd.choice([{"AWS": _arn(kind, name)}, {"AWS": f"arn:aws:iam::{rnd.choice([A, B])}:root"}, {"AWS": "*"}])


def _doc(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def generate_scenario(seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)
    kinds = list(ACTIONS)
    accounts: dict[str, Any] = {"a": {"id": A, "scps": [_doc([{"Effect": "Allow", "Action": "*", "Resource": "*"},
                                                              {"Effect": "Deny", "Action": "sqs:GetQueueAttributes",
                                                               "Resource": "*"}])]},
                                "b": {"id": B}}
    for acct_name, acct in (("a", A), ("b", B)):
        entry = accounts[acct_name]
        entry["users"] = {}
        for name, owner in USERS.items():
            if owner != acct:
                continue
            user: dict[str, Any] = {"policies": {"p": _doc([_statement(rnd, rnd.choice(kinds)) for _ in range(6)])}}
            if rnd.random() < 0.3:
                user["boundary"] = _doc([{"Effect": "Allow", "Action": rnd.choice(["s3:*", "kms:*", "sqs:*"]),
                                          "Resource": "*"}, {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}])
            entry["users"][name] = user
        entry["roles"] = {name: {"trust": _doc([_statement(rnd, "role", principal=_principal_element(rnd), deny=0.1)
                                                for _ in range(2)]),
                                 "policies": {"p": _doc([_statement(rnd, rnd.choice(kinds)) for _ in range(6)])}}
                          for name, owner in ROLES.items() if owner == acct}
        entry["buckets"] = {b: {"policy": _doc([_statement(rnd, rnd.choice(["object", "bucket"]),
                                                           principal=_principal_element(rnd)) for _ in range(3)])}
                            for b, owner in BUCKETS.items() if owner == acct}
        entry["keys"] = {k: {"id": kid, "policy": _doc(
            ([{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:root"}, "Action": "kms:*",
               "Resource": "*"}] if rnd.random() < 0.7 else [])
            + [_statement(rnd, "key", principal=_principal_element(rnd)) for _ in range(3)])}
            for k, (owner, kid) in KEYS.items() if owner == acct}
        entry["queues"] = {q: ({"policy": _doc([_statement(rnd, "queue", principal=_principal_element(rnd))
                                                for _ in range(2)])} if rnd.random() < 0.8 else {})
                           for q, owner in QUEUES.items() if owner == acct}
    return {"region": REGION, "accounts": accounts}


def generate_requests(n: int, seed: int = 11) -> list[tuple[tuple[str, str], str, str, str, str]]:
    """(principal, operation, action, resource ARN, resource name) tuples."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        principal = rnd.choice(PRINCIPALS)
        op, action, kind = rnd.choice(OPS)
        if kind in ("object", "bucket"):
            name = rnd.choice(list(BUCKETS))
            key = rnd.choice(["in/report.csv", "out/x.bin"])
            arn = f"arn:aws:s3:::{name}/{key}" if kind == "object" else f"arn:aws:s3:::{name}"
            out.append((principal, op, action, arn, f"{name}/{key}"))
        elif kind == "key":
            name = rnd.choice(list(KEYS))
            out.append((principal, op, action, _key_arn(name), name))
        elif kind == "queue":
            name = rnd.choice(list(QUEUES))
            out.append((principal, op, action, f"arn:aws:sqs:{REGION}:{QUEUES[name]}:{name}", name))
        else:
            name = rnd.choice(list(ROLES))
            out.append((principal, op, action, _arn("role", name), name))
    return out


def expected(scenario: dict[str, Any], principal: tuple[str, str], action: str, resource: str) -> tuple[Request, Policies]:
    """Request and policies in force, read straight from the scenario."""
    kind, name = principal
    acct = USERS.get(name) or ROLES[name]
    acct_entry = next(a for a in scenario["accounts"].values() if a["id"] == acct)
    spec = acct_entry[kind + "s"][name]
    res_policy, res_kind, res_account = None, None, acct
    if resource.startswith("arn:aws:s3:::"):
        bucket = resource[13:].split("/")[0]
        res_account = BUCKETS[bucket]
        doc = next(a for a in scenario["accounts"].values() if a["id"] == res_account)["buckets"][bucket].get("policy")
        res_kind = "s3-bucket"
        res_policy = NamedPolicy(name="bucket", document=doc) if doc else None
    elif resource.startswith("arn:aws:kms:"):
        res_account = resource.split(":")[4]
        key = next(k for k, (o, kid) in KEYS.items() if resource.endswith(kid))
        doc = next(a for a in scenario["accounts"].values() if a["id"] == res_account)["keys"][key]["policy"]
        res_kind, res_policy = "kms-key", NamedPolicy(name="key", document=doc)
    elif resource.startswith("arn:aws:sqs:"):
        res_account = resource.split(":")[4]
        q = resource.rsplit(":", 1)[1]
        doc = next(a for a in scenario["accounts"].values() if a["id"] == res_account)["queues"][q].get("policy")
        res_kind, res_policy = "sqs-queue", NamedPolicy(name="queue", document=doc) if doc else None
    else:
        res_account = resource.split(":")[4]
        role = resource.rsplit("/", 1)[1]
        doc = next(a for a in scenario["accounts"].values() if a["id"] == res_account)["roles"][role]["trust"]
        res_kind, res_policy = "role-trust", NamedPolicy(name="trust", document=doc)
    arn = _arn(kind, name)
    session = f"arn:aws:sts::{acct}:assumed-role/{name}/rolesmith-sandbox" if kind == "role" else None
    context = {"aws:PrincipalArn": arn, "aws:PrincipalAccount": acct, "aws:RequestedRegion": REGION}
    policies = Policies(
        identity=tuple(NamedPolicy(name=n, document=d) for n, d in spec.get("policies", {}).items()),
        boundary=NamedPolicy(name="boundary", document=spec["boundary"]) if spec.get("boundary") else None,
        scps=(tuple(NamedPolicy(name=f"scp{i}", document=d) for i, d in enumerate(acct_entry["scps"])),)
        if acct_entry.get("scps") else (),
        resource=res_policy, resource_kind=res_kind)
    request = Request(principal=arn, principal_account=acct, action=action, resource=resource,
                      resource_account=res_account, context=context, session_arn=session)
    return request, policies


def _call(clients: dict[str, Any], op: str, name: str) -> None:
    if op in ("PutObject", "DeleteObject"):
        bucket, key = name.split("/", 1)
        kwargs = {"Body": b"x"} if op == "PutObject" else {}
        getattr(clients["s3"], "put_object" if op == "PutObject" else "delete_object")(Bucket=bucket, Key=key, **kwargs)
    elif op == "ListObjectsV2":
        clients["s3"].list_objects_v2(Bucket=name.split("/")[0])
    elif op in ("Encrypt", "DescribeKey"):
        if op == "Encrypt":
            clients["kms"].encrypt(KeyId=_key_arn(name), Plaintext=b"secret")
        else:
            clients["kms"].describe_key(KeyId=_key_arn(name))
    elif op in ("SendMessage", "GetQueueAttributes"):
        url = f"{clients['endpoint']}/{QUEUES[name]}/{name}"
        if op == "SendMessage":
            clients["sqs"].send_message(QueueUrl=url, MessageBody="hello")
        else:
            clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    else:
        clients["sts"].assume_role(RoleArn=_arn("role", name), RoleSessionName="diff")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Request, Policies, bool, str]]:
    scenario = generate_scenario()
    path = tmp_path_factory.mktemp("diff") / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    results = []
    cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
    shared = boto3.session.Session(region_name=REGION)  # one model loader for every client
    with start_sandbox(path) as sb:
        session_clients: dict[tuple[str, str], dict[str, Any]] = {}
        for principal, op, action, resource, name in generate_requests(N_REQUESTS):
            clients = session_clients.get(principal)
            if clients is None:
                env = sb.env_for(principal[1])
                clients = {svc: shared.client(svc, endpoint_url=sb.endpoint_url, config=cfg,
                                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                              aws_session_token=env.get("AWS_SESSION_TOKEN"))
                           for svc in ("s3", "kms", "sqs", "sts")}
                clients["endpoint"] = sb.endpoint_url
                session_clients[principal] = clients
            code = "OK"
            try:
                _call(clients, op, name)
            except ClientError as err:
                code = err.response["Error"]["Code"]
            request, policies = expected(scenario, principal, action, resource)
            results.append((request, policies, code not in DENIED, f"{principal[1]} {op} {name}: {code}"))
    return results


def test_sandbox_decisions_equal_the_evaluator(run: list[tuple[Request, Policies, bool, str]]) -> None:
    assert len(run) >= 1000
    differ = [(label, evaluate(req, pol).decision) for req, pol, allowed, label in run
              if evaluate(req, pol).allowed != allowed]
    assert not differ, f"{len(differ)} of {len(run)} differ, first: {differ[:5]}"
    # The generated mix exercises both outcomes in quantity.
    allowed = sum(1 for *_, ok, _l in run if ok)
    assert 100 < allowed < len(run) - 100, allowed


def test_the_independent_engine_agrees(run: list[tuple[Request, Policies, bool, str]], request: pytest.FixtureRequest) -> None:
    if harness is None:
        pytest.skip("tests/test_differential.py (the iam-simulate harness) is not present")
    prefix = request.getfixturevalue("iam_simulate")
    cases = [harness.gen.Case(id=i, request=req, policies=pol, tags=frozenset())
             for i, (req, pol, _ok, _label) in enumerate(run)]
    lines = "".join(json.dumps({"id": c.id, "simulation": harness.gen.to_simulation(c)}) + "\n" for c in cases)
    runner = Path(harness.__file__).parent / "differential" / "iam_simulate_runner.js"
    done = subprocess.run(["node", str(runner), str(prefix)], input=lines, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    theirs = {row["id"]: row for row in map(json.loads, done.stdout.splitlines()) if row.get("id") is not None}
    unexplained = []
    for case, (_req, _pol, allowed, label) in zip(cases, run):
        row = theirs[case.id]
        assert "error" not in row, (label, row)
        other = row["result"]
        if (other == "Allowed") == allowed:
            continue
        ours = evaluate(case.request, case.policies)
        if any(pred(case, ours, other) for pred in harness.PREDICATES.values()):
            continue
        unexplained.append((label, other))
    assert not unexplained, f"{len(unexplained)} unexplained disagreements, first: {unexplained[:5]}"
