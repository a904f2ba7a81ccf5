"""Sandbox credentials: access key → principal, and the sessions sts:AssumeRole issues.

The credentials are sandbox-only dummies, but they are treated like real ones: the secret and the
session token are kept in memory only and never reach CloudTrail records, logs or errors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from rolesmith.sandbox.scenario import PrincipalSpec

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """Who holds an access key.

    For a role session ``spec`` is the role and ``session_arn`` the ``assumed-role`` ARN; ``policy``
    is the session policy passed to AssumeRole, if any. ``invoked_by`` marks sessions a service
    holds (EMR's session of its service role).
    """

    access_key: str
    secret: str
    token: str | None
    spec: PrincipalSpec
    session_name: str | None = None
    session_policy: Mapping[str, Any] | None = None
    expires: float = 0.0
    invoked_by: str | None = None
    source_identity: str | None = None

    @property
    def account(self) -> str:
        return self.spec.account

    @property
    def arn(self) -> str:
        """The policy-bearing ARN: the user, or the role of a session."""
        return self.spec.arn

    @property
    def session_arn(self) -> str | None:
        if self.session_name is None:
            return None
        return f"arn:aws:sts::{self.spec.account}:assumed-role/{self.spec.name}/{self.session_name}"

    @property
    def caller_arn(self) -> str:
        """What AWS names in its messages ("User: …"): the session ARN for a role session."""
        return self.session_arn or self.spec.arn

    @property
    def unique_id(self) -> str:
        prefix = "AROA" if self.spec.kind == "role" else "AIDA"
        digest = hashlib.sha256(self.spec.arn.encode()).digest()
        return prefix + "".join(_ALPHABET[b % 32] for b in digest[:17])

    @property
    def principal_id(self) -> str:
        return f"{self.unique_id}:{self.session_name}" if self.session_name else self.unique_id

    def user_identity(self) -> dict[str, Any]:
        """CloudTrail's ``userIdentity`` (shared/reference/cloudtrail/ct-ug__cloudtrail-event-reference-user-identity.md)."""
        if self.session_name is None:
            out: dict[str, Any] = {"type": "IAMUser", "principalId": self.principal_id, "arn": self.spec.arn,
                                   "accountId": self.account, "accessKeyId": self.access_key,
                                   "userName": self.spec.name}
        else:
            out = {"type": "AssumedRole", "principalId": self.principal_id, "arn": self.session_arn,
                   "accountId": self.account, "accessKeyId": self.access_key,
                   "sessionContext": {
                       "sessionIssuer": {"type": "Role", "principalId": self.unique_id, "arn": self.spec.arn,
                                         "accountId": self.account, "userName": self.spec.name},
                       "attributes": {"creationDate": _iso(self.expires - 3600), "mfaAuthenticated": "false"}}}
            if self.source_identity:
                out["sessionContext"]["sourceIdentity"] = self.source_identity
        if self.invoked_by:
            out["invokedBy"] = self.invoked_by
        return out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _key(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(16))


class Credentials:
    """Thread-safe registry of every access key the sandbox issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Identity] = {}

    def issue_user(self, spec: PrincipalSpec) -> Identity:
        ident = Identity(access_key=_key("AKIA"), secret=secrets.token_urlsafe(30), token=None, spec=spec)
        with self._lock:
            self._by_key[ident.access_key] = ident
        return ident

    def issue_session(self, spec: PrincipalSpec, session_name: str, *, duration: int = 3600,
                      policy: Mapping[str, Any] | None = None, invoked_by: str | None = None,
                      source_identity: str | None = None) -> Identity:
        ident = Identity(access_key=_key("ASIA"), secret=secrets.token_urlsafe(30),
                         token=secrets.token_urlsafe(96), spec=spec, session_name=session_name,
                         session_policy=policy, expires=time.time() + duration, invoked_by=invoked_by,
                         source_identity=source_identity)
        with self._lock:
            self._by_key[ident.access_key] = ident
        return ident

    def lookup(self, access_key: str | None, token: str | None) -> Identity | None:
        """The identity of a request, or None when the key is unknown, the token wrong or expired."""
        if not access_key:
            return None
        with self._lock:
            ident = self._by_key.get(access_key)
        if ident is None:
            return None
        if ident.token is not None:
            if token is None or not secrets.compare_digest(token, ident.token) or ident.expires < time.time():
                return None
        return ident


_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                   r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")


def signature_matches(method: str, raw_path: str, headers: Mapping[str, str], body: bytes, ident: Identity) -> bool:
    """Recompute the SigV4 header signature with the holder's secret (botocore's signer, restricted
    to the headers the client signed) and compare. Presigned URLs (query-string auth) are not
    re-verified: their access key and token are still checked."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    auth = headers.get("authorization")
    if auth is None:
        return "x-amz-signature" in {k.lower() for k in _query_keys(raw_path)}
    m = _AUTH.match(auth.strip())
    amz_date = headers.get("x-amz-date")
    if not m or not amz_date:
        return False
    region, service, signed = m.group(3), m.group(4), m.group(5).split(";")
    if any(h not in headers for h in signed):
        return False
    base = S3SigV4Auth if service == "s3" else SigV4Auth

    class _Verifier(base):  # type: ignore[misc, valid-type]
        def headers_to_sign(self, request: AWSRequest) -> Any:
            from botocore.awsrequest import HTTPHeaders

            out = HTTPHeaders()
            for name in signed:
                out[name] = headers[name]
            return out

    signer = _Verifier(BotoCredentials(ident.access_key, ident.secret, ident.token), service, region)
    request = AWSRequest(method=method, url=f"http://{headers.get('host', 'localhost')}{raw_path}", data=body,
                         headers={name: headers[name] for name in signed})
    request.context["timestamp"] = amz_date
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, m.group(6))


def _query_keys(raw_path: str) -> list[str]:
    query = raw_path.partition("?")[2]
    return [part.partition("=")[0] for part in query.split("&") if part]
