"""Table-driven checks of the documented event → IAM mapping exceptions.

Each case is one file ``fixtures/events/<service>/<case>.json``: ``doc`` cites the AWS
documentation the expectation comes from, ``event`` is a CloudTrail record (fields the case does
not care about are filled from ``BASE`` below), ``expect`` lists the exact (action, resource) pairs
of ``uses`` and ``inferred``; any other field a case names (conditions, via, resource_account,
inferred_by) is compared too, and ``partial`` always is (default false).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rolesmith.actions import uses_for
from rolesmith.actions.model import Use
from rolesmith.trail.normalize import normalize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "events"

BASE: dict[str, Any] = {
    "eventVersion": "1.08",
    "userIdentity": {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLEID:worker",
        "arn": "arn:aws:sts::111122223333:assumed-role/app-role/worker",
        "accountId": "111122223333",
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": "AROAEXAMPLEID",
                "arn": "arn:aws:iam::111122223333:role/app-role",
                "accountId": "111122223333",
                "userName": "app-role",
            }
        },
    },
    "eventTime": "2024-05-01T12:00:00Z",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "192.0.2.10",
    "userAgent": "aws-cli/2.15.0",
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
}


def build_event(raw: dict[str, Any], origin: str = "fixture#0"):
    record = json.loads(json.dumps(BASE))
    for key, value in raw.items():
        if key == "userIdentity" and isinstance(value, dict):
            record["userIdentity"].update(value)
        else:
            record[key] = value
    record.setdefault("eventID", origin)
    return normalize(record, origin)


def _cases() -> list[Any]:
    return [
        pytest.param(path, id=f"{path.parent.name}/{path.stem}")
        for path in sorted(FIXTURES.glob("*/*.json"))
    ]


def _check(kind: str, actual: tuple[Use, ...], expected: list[dict[str, Any]]) -> None:
    got = sorted((u.action, u.resource) for u in actual)
    want = sorted((e["action"], e["resource"]) for e in expected)
    assert got == want, f"{kind}: {got} != {want}"
    by_key = {(u.action, u.resource): u for u in actual}
    for exp in expected:
        use = by_key[(exp["action"], exp["resource"])]
        assert use.partial is exp.get("partial", False), (kind, exp)
        if kind == "uses":
            assert use.inferred_by is None, exp
        else:
            assert use.inferred_by == exp["inferred_by"], exp
        if "conditions" in exp:
            assert [list(c) for c in use.conditions] == exp["conditions"], exp
        for field in ("via", "resource_account"):
            if field in exp:
                assert getattr(use, field) == exp[field], (field, exp)


def test_fixture_tree_is_not_empty() -> None:
    assert len(_cases()) >= 40


@pytest.mark.parametrize("path", _cases())
def test_documented_mapping(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["doc"], "every case cites the AWS documentation"
    result = uses_for(build_event(case["event"], f"{path.name}#0"))
    expect = case["expect"]
    if "unknown_contains" in expect:
        assert result.unknown is not None and expect["unknown_contains"] in result.unknown
        assert result.uses == () and result.inferred == ()
        return
    assert result.unknown is None, result.unknown
    _check("uses", result.uses, expect["uses"])
    _check("inferred", result.inferred, expect["inferred"])
    for fragment in expect.get("notes_contain", ()):
        assert any(fragment in note for note in result.notes), (fragment, result.notes)
