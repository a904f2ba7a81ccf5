"""Evidence event ids per use, kept compactly: they are most of the memory a use holds.

A use keeps up to ``EVIDENCE_CAP`` ids. CloudTrail event ids are lower-case UUIDs, so while every id
of a use is one they are packed, 16 bytes each, into one ``bytes`` (under 200 bytes for ten ids
instead of ~930 as a list of strings); the first id of another form (a record without an eventID is
named by its origin, ``path#index``) turns that use's evidence into a plain list of strings.
"""

from __future__ import annotations


def pack_id(evidence: str) -> bytes | None:
    """16 bytes for a lower-case UUID string (that ``unpack_ids`` turns back into the same text)."""
    if len(evidence) != 36 or evidence != evidence.lower():
        return None
    if evidence[8] != "-" or evidence[13] != "-" or evidence[18] != "-" or evidence[23] != "-":
        return None
    try:
        packed = bytes.fromhex(evidence.replace("-", ""))
    except ValueError:
        return None
    return packed if len(packed) == 16 else None


def unpack_ids(evidence: bytes | list[str]) -> list[str]:
    """A use's evidence ids as strings, in the order they were first seen."""
    if type(evidence) is not bytes:
        return list(evidence)
    out = []
    for i in range(0, len(evidence), 16):
        h = evidence[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def holds(packed_ids: bytes, packed: bytes) -> bool:
    """Whether the packed id is one of ``packed_ids`` (at a 16-byte boundary)."""
    i = packed_ids.find(packed)
    while i != -1 and i % 16:  # a match across two ids is not this id
        i = packed_ids.find(packed, i + 1)
    return i != -1
