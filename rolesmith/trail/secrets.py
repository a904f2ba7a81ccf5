"""Credentials CloudTrail itself logs, kept out of everything rolesmith writes.

CloudTrail records the temporary credentials STS hands out: the ``responseElements.credentials`` of
AssumeRole, AssumeRoleWithSAML / WithWebIdentity, GetFederationToken and GetSessionToken carry the
``sessionToken`` (see the AssumeRole and GetFederationToken records of the userIdentity reference,
shared/reference/cloudtrail/ct-ug__cloudtrail-event-reference-user-identity.md, and the Stratus Red
Team trails under shared/data/cloudtrail/stratus/). A recording that merges such records from
LookupEvents must not copy the token to disk.

AWS's own error messages can carry one too: a ``SignatureDoesNotMatch`` /
``InvalidSignatureException`` message includes the canonical request it expected, headers and
query string included (``x-amz-security-token:<token>``, ``X-Amz-Security-Token=<token>``), and a
logged request line of a presigned URL has the token and signature in its query.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# Response fields that carry secrets (the access key id is not one: it names the session).
SECRET_FIELDS = frozenset({"sessionToken", "secretAccessKey", "SecretAccessKey", "SessionToken"})
# The placeholder CloudTrail writes where it withholds a value; it keeps the record's shape.
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"


# Header or query forms of the session token and of signatures (the access key id in a credential
# scope names a key but is not secret, so it stays).
_SECRET_TEXT = re.compile(
    r"(?i)(x-amz-security-token\s*[:=]\s*|x-amz-signature\s*=\s*|\bsignature\s*=\s*|aws_session_token\s*=\s*"
    r"|aws_secret_access_key\s*=\s*)[^\s&,;\"']+"
)


def scrub_text(text: str) -> str:
    """``text`` with session tokens and signatures in it replaced by CloudTrail's placeholder."""
    if "=" not in text and ":" not in text:
        return text
    return _SECRET_TEXT.sub(lambda m: m.group(1) + HIDDEN, text)


def _hide(value: Any) -> tuple[Any, bool]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            if key in SECRET_FIELDS and item not in (None, "", HIDDEN):
                out[key] = HIDDEN
                changed = True
            else:
                out[key], sub = _hide(item)
                changed = changed or sub
        return (out if changed else value), changed
    if isinstance(value, list):
        items = [_hide(item) for item in value]
        if any(sub for _, sub in items):
            return [item for item, _ in items], True
    return value, False


def scrub_record(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """``record`` with every secret field of its ``responseElements`` (at any depth), and any token or
    signature in its ``errorMessage``, replaced by CloudTrail's placeholder; the record itself when
    there is none (nothing is copied)."""
    out: dict[str, Any] | None = None
    response = record.get("responseElements")
    if response:
        hidden, changed = _hide(response)
        if changed:
            out = {**record, "responseElements": hidden}
    message = record.get("errorMessage")
    if type(message) is str and message:
        clean = scrub_text(message)
        if clean != message:
            out = {**(out or record), "errorMessage": clean}
    return record if out is None else out
