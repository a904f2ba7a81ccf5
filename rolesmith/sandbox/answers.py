"""Reads the sandbox answers itself, from the state it enforces, instead of moto's copy of it.

Enforcement reads the ``World`` (the scenario plus every change made through the sandbox); moto
keeps a second copy that is only partly the same (its IAM never holds the scenario's policies, and
what it echoes back is what it was sent, not what is enforced). A caller reading a policy or a
setting back must see what the next request will be judged by, so these reads come from the World:

- KMS ``GetKeyPolicy``, S3 ``GetBucketEncryption``;
- IAM ``ListRolePolicies``/``GetRolePolicy`` and ``ListUserPolicies``/``GetUserPolicy`` (every
  policy a scenario gives a principal is reported as an inline policy of that name);
- IAM ``SimulatePrincipalPolicy``, evaluated by rolesmith's evaluator.

Each runs after the request itself was authorised like any other. A resource the World does not
know (created outside the scenario and not tracked) is left to moto.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Mapping
from urllib.parse import quote

from rolesmith.sandbox.auth import Identity
from rolesmith.sandbox.errors import Response, client_error, json_response
from rolesmith.sandbox.scenario import PrincipalSpec
from rolesmith.sandbox.world import World
from rolesmith.trail.wire import Call

_IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def answer(world: World, ident: Identity, call: Call) -> Response | None:
    """The sandbox's own answer to a read of enforced state, or None to forward the call to moto."""
    handler = _HANDLERS.get((call.service, call.operation))
    return handler(world, ident, call) if handler is not None else None


# -- helpers -----------------------------------------------------------------------------------
def _esc(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _xml(body: str, content_type: str = "text/xml") -> Response:
    return Response(status=200, headers=(("Content-Type", content_type), ("x-amzn-RequestId", str(uuid.uuid4()))),
                    body=body.encode())


def _query_response(operation: str, result: str) -> Response:
    """A query-protocol (IAM) success body: ``<OpResponse><OpResult>…</OpResult><ResponseMetadata>``."""
    return _xml(f'<{operation}Response xmlns="{_IAM_NS}"><{operation}Result>{result}</{operation}Result>'
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{operation}Response>")


def _principal(world: World, account: str, kind: str, name: object) -> PrincipalSpec | None:
    with world.lock:
        return next((p for p in world.principals.values()
                     if p.kind == kind and p.account == account and p.name == name), None)


def _page(items: list[str], params: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """IAM's Marker/MaxItems paging (default 100 items); the marker is the next index."""
    start = int(params["Marker"]) if str(params.get("Marker", "")).isdigit() else 0
    size = int(params.get("MaxItems") or 100)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


# -- KMS and S3 --------------------------------------------------------------------------------
def _get_key_policy(world: World, ident: Identity, call: Call) -> Response | None:
    if str(call.params.get("PolicyName") or "default") != "default":
        return None  # moto answers the documented error for any other name
    arn = world.resolve_key(str(call.params.get("KeyId") or ""), ident.account)
    policy = world.key_policy(arn) if arn else None
    if policy is None:
        return None
    return json_response(call, {"Policy": json.dumps(policy), "PolicyName": "default"})


def _get_bucket_encryption(world: World, ident: Identity, call: Call) -> Response | None:
    bucket = world.bucket(str(call.params.get("Bucket") or ""))
    if bucket is None:
        return None
    enc = bucket.encryption
    if enc is None or enc == "AES256":
        # Every bucket has SSE-S3 default encryption when none other is set (GetBucketEncryption,
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketEncryption.html).
        default = "<SSEAlgorithm>AES256</SSEAlgorithm>"
    elif world.is_aws_managed(enc):
        default = "<SSEAlgorithm>aws:kms</SSEAlgorithm>"  # the AWS managed key is implied, not named
    else:
        default = f"<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>{_esc(enc)}</KMSMasterKeyID>"
    return _xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<ServerSideEncryptionConfiguration xmlns="{_S3_NS}">'
                f"<Rule><ApplyServerSideEncryptionByDefault>{default}</ApplyServerSideEncryptionByDefault>"
                "<BucketKeyEnabled>false</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>",
                "application/xml")


# -- IAM inline policies -----------------------------------------------------------------------
def _list_policies(kind: str) -> Callable[[World, Identity, Call], Response | None]:
    op, name_key = ("ListRolePolicies", "RoleName") if kind == "role" else ("ListUserPolicies", "UserName")

    def handler(world: World, ident: Identity, call: Call) -> Response | None:
        spec = _principal(world, ident.account, kind, call.params.get(name_key))
        if spec is None:
            return None  # moto answers NoSuchEntity
        names, marker = _page(sorted(spec.policies), call.params)
        members = "".join(f"<member>{_esc(n)}</member>" for n in names)
        more = f"<IsTruncated>true</IsTruncated><Marker>{marker}</Marker>" if marker else "<IsTruncated>false</IsTruncated>"
        return _query_response(op, f"<PolicyNames>{members}</PolicyNames>{more}")

    return handler


def _get_policy(kind: str) -> Callable[[World, Identity, Call], Response | None]:
    op, name_key = ("GetRolePolicy", "RoleName") if kind == "role" else ("GetUserPolicy", "UserName")

    def handler(world: World, ident: Identity, call: Call) -> Response | None:
        spec = _principal(world, ident.account, kind, call.params.get(name_key))
        if spec is None:
            return None
        pname = str(call.params.get("PolicyName") or "")
        doc = spec.policies.get(pname)
        if doc is None:
            return client_error(call, "POST", 404, "NoSuchEntity",
                                f"The {kind} policy with name {pname} cannot be found.")
        # IAM returns policy documents URL-encoded (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html).
        return _query_response(op, f"<{name_key}>{_esc(spec.name)}</{name_key}><PolicyName>{_esc(pname)}</PolicyName>"
                                   f"<PolicyDocument>{quote(json.dumps(doc), safe='')}</PolicyDocument>")

    return handler


def _simulate(world: World, ident: Identity, call: Call) -> Response | None:
    from rolesmith.sandbox.simulate import simulate_principal_policy

    return simulate_principal_policy(world, call)


_HANDLERS: dict[tuple[str, str], Callable[[World, Identity, Call], Response | None]] = {
    ("kms", "GetKeyPolicy"): _get_key_policy,
    ("s3", "GetBucketEncryption"): _get_bucket_encryption,
    ("iam", "ListRolePolicies"): _list_policies("role"),
    ("iam", "ListUserPolicies"): _list_policies("user"),
    ("iam", "GetRolePolicy"): _get_policy("role"),
    ("iam", "GetUserPolicy"): _get_policy("user"),
    ("iam", "SimulatePrincipalPolicy"): _simulate,
}
