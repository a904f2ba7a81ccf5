"""Credentials CloudTrail itself logs, kept out of everything rolesmith writes.

CloudTrail records the temporary credentials STS hands out: the ``responseElements.credentials`` of
AssumeRole, AssumeRoleWithSAML / WithWebIdentity, GetFederationToken and GetSessionToken carry the
``sessionToken`` (see the AssumeRole and GetFederationToken records of the userIdentity reference,
shared/reference/cloudtrail/ct-ug__cloudtrail-event-reference-user-identity.md, and the Stratus Red
Team trails under shared/data/cloudtrail/stratus/). A recording that merges such records from
LookupEvents must not copy the token to disk.
"""

from __future__ import annotations

from typing import Any, Mapping

# Response fields that carry secrets (the access key id is not one: it names the session).
SECRET_FIELDS = frozenset({"sessionToken", "secretAccessKey", "SecretAccessKey", "SessionToken"})
# The placeholder CloudTrail writes where it withholds a value; it keeps the record's shape.
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"


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
    """``record`` with every secret field of its ``responseElements`` (at any depth) replaced by
    CloudTrail's placeholder; the record itself when there is none (nothing is copied)."""
    response = record.get("responseElements")
    if not response:
        return record
    hidden, changed = _hide(response)
    if not changed:
        return record
    return {**record, "responseElements": hidden}
