"""Malformed records never end in a traceback: every failure is a one-line RolesmithError.

Seeded mutations of the fixture records (fixtures/trails/*.jsonl and the mapping cases under
fixtures/events/): one to three values anywhere in a record are replaced by a JSON value of another
type, or removed, and the batch goes through ``build`` (with and without ``skip_bad``), both renderers,
the networkx view and ``explain``. This is how the wrong-typed-field tracebacks in normalize, mapping,
the graph and explain were found; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest

from rolesmith.errors import RolesmithError
from rolesmith.explain import explain_paths
from rolesmith.policies import BuildOptions, build_policies
from rolesmith.render import render

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Values of every JSON type, plus strings that look like what the rules parse (ARNs, service names,
# times, an AccessDenied message explain reads).
VALUES: list[Any] = [
    None, 0, -1, 1.5, True, "", "x", "*", "arn:", "arn:aws:s3:::", "arn:aws:iam::111122223333:role/",
    "AWS Internal", "s3.amazonaws.com", "2024-13-01T00:00:00Z", "AccessDenied",
    "User: arn:aws:sts::111122223333:assumed-role/r/s is not authorized to perform: s3:GetObject on resource:"
    " arn:aws:s3:::b/k because no identity-based policy allows the s3:GetObject action",
    [], [None], [1, "a"], ["arn:aws:s3:::b/k"], {}, {"a": None}, {"arn": None},
]
ROUNDS = 600


def _seeds() -> list[dict[str, Any]]:
    records = [json.loads(line) for path in sorted((FIXTURES / "trails").glob("*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    base = json.loads((FIXTURES / "trails" / "secure_inbox.jsonl").read_text(encoding="utf-8").splitlines()[0])
    for path in sorted((FIXTURES / "events").rglob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8")).get("event")
        if isinstance(event, dict):
            records.append({**base, "requestParameters": None, "responseElements": None, **event})
    return records


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    record = copy.deepcopy(record)
    paths = list(_paths(record))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        target: Any = record
        try:
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict) and rng.random() < 0.15:
                del target[path[-1]]
            else:
                target[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        except (KeyError, IndexError, TypeError):  # an earlier mutation replaced a parent
            continue
    return record


def test_mutated_records_give_errors_not_tracebacks(tmp_path: Path) -> None:
    seeds = _seeds()
    assert len(seeds) > 100
    rng = random.Random(20261204)
    crashes: dict[str, str] = {}
    for n in range(ROUNDS):
        batch = [_mutate(rng.choice(seeds), rng) for _ in range(rng.randint(1, 5))] + [rng.choice(seeds)]
        trail = tmp_path / f"t{n}.json"
        trail.write_text(json.dumps({"Records": batch}), encoding="utf-8")
        for skip_bad in (False, True):
            try:
                result = build_policies([trail], BuildOptions(skip_bad=skip_bad))
                for fmt in ("json", "cloudformation"):
                    try:
                        render(result.policies, fmt=fmt)
                    except RolesmithError:  # e.g. nothing to deploy
                        pass
                assert result.graph.graph is not None
                explain_paths([trail], skip_bad=skip_bad)
            except RolesmithError as err:
                assert "\n" not in str(err), str(err)
            except Exception as exc:  # noqa: BLE001 - the point of the test: no other exception escapes
                crashes.setdefault(f"{type(exc).__name__}: {exc}", json.dumps(batch)[:2000])
    assert crashes == {}


@pytest.mark.parametrize("skip_bad", [False, True])
def test_the_unmutated_seed_records_build(tmp_path: Path, skip_bad: bool) -> None:
    # The fuzz test would pass vacuously if every seed were already rejected.
    trail = tmp_path / "seeds.json"
    trail.write_text(json.dumps({"Records": _seeds()}), encoding="utf-8")
    result = build_policies([trail], BuildOptions(skip_bad=skip_bad))
    assert result.report.events == len(_seeds()) and result.policies.identity_policies
