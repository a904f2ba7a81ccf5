"""Parse AWS's access-denied messages into (principal, action, resource, which policy type, explicit?).

Format, as documented in "Troubleshoot access denied error messages"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html):
``User: <arn> is not authorized to perform: <action> on resource: <arn> because no <type> policy allows
the <action> action`` (implicit deny) or ``… with an explicit deny in a <type> policy[: <policy ARN>]``
(explicit deny; the policy ARN was added in 2025, "Enhanced access denied error messages with policy
ARNs", AWS Security Blog). EC2 prefixes "You are not authorized to perform this operation." and appends
"Encoded authorization failure message: <blob>" (decodable with sts:DecodeAuthorizationMessage).
Older and some services' messages stop after the resource, or say only "Access Denied".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Policy types AWS names in the message → our layer names. "VPC endpoint" has no evaluator layer.
_TYPES: tuple[tuple[str, str], ...] = (
    ("identity-based", "identity"),
    ("identity based", "identity"),
    ("resource-based", "resource"),
    ("resource based", "resource"),
    ("permissions boundary", "boundary"),
    ("permission boundary", "boundary"),
    ("session", "session"),
    ("service control", "scp"),
    ("resource control", "rcp"),
    ("vpc endpoint", "vpc-endpoint"),
)

_HEAD = re.compile(
    r"(?:User|Principal):\s*(?P<principal>\S+)\s+is not authorized to perform:\s*(?P<action>[\w.-]+:[\w*.-]+)"
    r"(?:\s+on resource:\s*(?P<resource>.+?))?"
    r"(?=\s+because\b|\s+with an explicit deny\b|\s+due to\b|\.\s|\.?$|\s+Encoded authorization)",
    re.IGNORECASE | re.DOTALL,
)
_IMPLICIT = re.compile(r"because no (?P<type>[\w -]+?(?:polic(?:y|ies)|boundary|boundaries)) allows?\b", re.IGNORECASE)
_EXPLICIT = re.compile(
    r"(?:with|due to) an explicit deny(?: in (?:an?|the) (?P<type>[\w -]+?(?:polic(?:y|ies)|boundary)))?"
    r"(?::\s*(?P<arn>arn:[^\s.]+(?:\.[^\s.]+)*))?",
    re.IGNORECASE,
)
_ENCODED = re.compile(r"Encoded authorization failure message:\s*(?P<blob>\S+)", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedMessage:
    """What an error message says. ``kind`` is "implicit"/"explicit" when AWS named the refusal,
    "unspecified" when it named the request but not the policy type, "opaque" otherwise."""

    kind: Literal["implicit", "explicit", "unspecified", "opaque"]
    principal: str | None = None
    action: str | None = None
    resource: str | None = None
    layer: str | None = None  # identity | resource | boundary | session | scp | rcp | vpc-endpoint
    policy_arn: str | None = None
    encoded: str | None = None


def _layer(text: str | None) -> str | None:
    if not text:
        return None
    low = text.lower().strip()
    for phrase, layer in _TYPES:
        if phrase in low:
            return layer
    return None


def parse_message(message: str | None) -> ParsedMessage:
    """Never raises: a message in no known shape is ``kind="opaque"``."""
    if not message:
        return ParsedMessage(kind="opaque")
    enc = _ENCODED.search(message)
    encoded = enc.group("blob") if enc else None
    # Drop the blob first so a "." inside it cannot be read as the end of the resource.
    text = message[: enc.start()] if enc else message
    head = _HEAD.search(text)
    if head is None:
        return ParsedMessage(kind="opaque", encoded=encoded)
    resource = head.group("resource")
    common = dict(
        principal=head.group("principal"),
        action=head.group("action"),
        # S3's access-denied messages put the ARN in double quotes ("… on \"resource-arn\" because …",
        # s3-ug__troubleshoot-403-errors.md); IAM's documented form has none.
        resource=resource.strip().rstrip(".").strip('"') or None if resource else None,
        encoded=encoded,
    )
    rest = text[head.end():]
    explicit = _EXPLICIT.search(rest)
    if explicit:
        layer = _layer(explicit.group("type"))
        arn = explicit.group("arn")
        return ParsedMessage(kind="explicit", layer=layer, policy_arn=arn.rstrip(".") if arn else None, **common)
    implicit = _IMPLICIT.search(rest)
    if implicit:
        return ParsedMessage(kind="implicit", layer=_layer(implicit.group("type")), **common)
    return ParsedMessage(kind="unspecified", **common)
