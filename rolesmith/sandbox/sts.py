"""STS answered by the sandbox itself: it issues the credentials, so it owns GetCallerIdentity and
AssumeRole. AssumeRole has already passed authorisation (the caller's ``sts:AssumeRole`` and the
role's trust policy, which must allow by itself) when ``assume_role`` runs.

Response shapes: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html and
API_GetCallerIdentity.html. The CloudTrail record keeps the new access key id and expiration but
never the session token (AWS logs it; rolesmith never writes credentials).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from rolesmith.sandbox.auth import Identity
from rolesmith.sandbox.cloudtrail import iso
from rolesmith.trail.wire import Call
from rolesmith.sandbox.enforce import Check
from rolesmith.sandbox.errors import Response, client_error

if TYPE_CHECKING:
    from rolesmith.sandbox.gateway import Gateway, Mapped

_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def _xml(body: str) -> Response:
    return Response(status=200, headers=(("Content-Type", "text/xml"),), body=body.encode())


def caller_identity(ident: Identity) -> Response:
    return _xml(f'<GetCallerIdentityResponse xmlns="{_NS}"><GetCallerIdentityResult>'
                f"<Arn>{ident.caller_arn}</Arn><UserId>{ident.principal_id}</UserId><Account>{ident.account}</Account>"
                f"</GetCallerIdentityResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
                f"</ResponseMetadata></GetCallerIdentityResponse>")


def assume_role(gw: Gateway, ident: Identity, call: Call, mapped: Mapped, checks: list[Check]) -> Response:
    p = call.params
    role_arn = str(p.get("RoleArn", ""))
    spec = gw.world.principal(role_arn)
    if spec is None or spec.kind != "role":
        # Unreachable in practice: a role the sandbox does not know has no trust policy to allow.
        gw.finish(mapped, checks, error=("AccessDenied", f"role {role_arn} does not exist"))
        return client_error(call, "POST", 403, "AccessDenied", f"Role {role_arn} does not exist")
    duration = int(p.get("DurationSeconds") or 3600)
    policy: Any = None
    if p.get("Policy"):
        try:
            policy = json.loads(str(p["Policy"]))
        except ValueError:
            gw.finish(mapped, checks, error=("MalformedPolicyDocument", "session policy is not JSON"))
            return client_error(call, "POST", 400, "MalformedPolicyDocument", "The policy is not in the valid JSON format.")
    session = gw.creds.issue_session(spec, str(p.get("RoleSessionName", "session")), duration=duration,
                                     policy=policy, source_identity=p.get("SourceIdentity"))
    expires = iso(time.time() + duration)
    gw.finish(mapped, checks, error=None, response_elements={
        "credentials": {"accessKeyId": session.access_key, "expiration": expires},
        "assumedRoleUser": {"assumedRoleId": session.principal_id, "arn": session.session_arn}})
    return _xml(f'<AssumeRoleResponse xmlns="{_NS}"><AssumeRoleResult>'
                f"<Credentials><AccessKeyId>{session.access_key}</AccessKeyId>"
                f"<SecretAccessKey>{session.secret}</SecretAccessKey><SessionToken>{session.token}</SessionToken>"
                f"<Expiration>{expires}</Expiration></Credentials>"
                f"<AssumedRoleUser><AssumedRoleId>{session.principal_id}</AssumedRoleId>"
                f"<Arn>{session.session_arn}</Arn></AssumedRoleUser>"
                f"</AssumeRoleResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</AssumeRoleResponse>")
