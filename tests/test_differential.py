"""Differential conformance: rolesmith's evaluator against @cloud-copilot/iam-simulate.

The engine is AGPL: it is installed at test time into pytest's cache directory with
``npm install --prefix`` (never vendored) and driven through one node process reading JSONL
(tests/differential/iam_simulate_runner.js). Cases come from tests/differential/cases.py
(deterministic, ≥ 5,000). Every disagreement must be one of the documented divergences in
rolesmith/evaluator/DIVERGENCES.md, each checked by a predicate below.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from rolesmith.evaluator import Decision, evaluate

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "differential"))
import cases as gen  # noqa: E402

PACKAGE = "@cloud-copilot/iam-simulate@0.1.173"
N_CASES = 5200
ROOT = HERE.parent


def _known_ids() -> set[str]:
    text = (ROOT / "rolesmith" / "evaluator" / "DIVERGENCES.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))


def _slr(case: gen.Case, ours: Decision, theirs: str) -> bool:
    # Applying SCPs to the service-linked role must reproduce the other engine's answer exactly.
    if not case.policies.service_linked_role or not case.policies.scps:
        return False
    again = evaluate(case.request, dataclasses.replace(case.policies, service_linked_role=False))
    return again.decision == theirs


def _session_grant(case: gen.Case, ours: Decision, theirs: str) -> bool:
    if not (ours.decision == "Allowed" and theirs == "ImplicitlyDenied" and ours.layers.get("session") == "implicit-deny"
            and case.request.resource_account in (None, case.request.principal_account)
            and ours.layer in ("resource", "key-policy", "trust-policy") and case.policies.resource is not None):
        return False
    # The deciding resource statements must name the session itself (or everyone).
    statements = case.policies.resource.document["Statement"]
    for m in ours.statements:
        principal = statements[m.index]["Principal"]
        named = principal if principal == "*" else principal.get("AWS")
        named = [named] if isinstance(named, str) else named
        if not any(p in ("*", gen.SESSION) for p in named):
            return False
    return True


def _not_principal(case: gen.Case, ours: Decision, theirs: str) -> bool:
    """Our explicit deny comes from Deny+NotPrincipal statements that list some but not all of the
    caller's identities (account, role, session or user): without those statements we must
    reproduce the other engine's answer."""
    if ours.decision != "ExplicitlyDenied" or case.policies.resource is None:
        return False
    doc = case.policies.resource.document
    acct = case.request.principal_account
    mine = {case.request.principal, acct, f"arn:aws:iam::{acct}:root", gen.ROLE}
    partial = {i for i, st in enumerate(doc["Statement"]) if "NotPrincipal" in st
               and mine & set(_aws_values(st["NotPrincipal"]))}
    deciding = {m.index for m in ours.statements if m.layer in ("resource", "key-policy")}
    if not partial or not deciding <= partial or len(deciding) != len(ours.statements):
        return False
    trimmed = {**doc, "Statement": [st for i, st in enumerate(doc["Statement"]) if i not in partial]}
    resource = dataclasses.replace(case.policies.resource, document=trimmed)
    return evaluate(case.request, dataclasses.replace(case.policies, resource=resource)).decision == theirs


def _aws_values(element: object) -> list[str]:
    values = element.get("AWS", []) if isinstance(element, dict) else []
    return [values] if isinstance(values, str) else list(values)


PREDICATES: dict[str, Callable[[gen.Case, Decision, str], bool]] = {
    "scp-service-linked-role": _slr,
    "session-arn-grant-not-capped-by-session-policy": _session_grant,
    "notprincipal-lists-account-and-role": _not_principal,
}


@pytest.fixture(scope="session")
def iam_simulate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed engine's npm prefix: pytest's cache dir (reused across runs), else a tmp dir."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the differential test needs them to run @cloud-copilot/iam-simulate")
    cache = getattr(request.config, "cache", None)
    prefix = Path(cache.mkdir("iam-simulate-0.1.173")) if cache is not None else tmp_path_factory.mktemp("iam-simulate")
    marker = prefix / "node_modules" / "@cloud-copilot" / "iam-simulate" / "package.json"
    if not marker.exists():
        done = subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PACKAGE],
                              capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            pytest.fail(f"npm install {PACKAGE} failed: {done.stderr.strip().splitlines()[-1:]}")
    return prefix


def start_iam_simulate(prefix: Path, cases: list[gen.Case], workdir: Path) -> subprocess.Popen[str]:
    """Start the node process on the cases; it runs while the caller evaluates them in Python."""
    source = workdir / "cases.jsonl"
    with source.open("w", encoding="utf-8") as out:
        for c in cases:
            out.write(json.dumps({"id": c.id, "simulation": gen.to_simulation(c)}) + "\n")
    with source.open(encoding="utf-8") as stdin:
        return subprocess.Popen(["node", str(HERE / "differential" / "iam_simulate_runner.js"), str(prefix)],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(proc: subprocess.Popen[str]) -> dict[int, dict]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = (json.loads(line) for line in out.splitlines())
    return {row["id"]: row for row in rows if row["id"] is not None}


def test_divergence_table_matches_predicates() -> None:
    assert _known_ids() == set(PREDICATES)


@pytest.mark.slow
def test_differential_against_iam_simulate(iam_simulate: Path, tmp_path: Path) -> None:
    cases = gen.generate(N_CASES)
    proc = start_iam_simulate(iam_simulate, cases, tmp_path)
    ours_all = {case.id: evaluate(case.request, case.policies) for case in cases}
    theirs = collect(proc)
    errors = {i: r["error"] for i, r in theirs.items() if "error" in r}
    assert not errors, f"generated cases the other engine rejects (fix the generator): {list(errors.items())[:3]}"
    known = _known_ids()
    unexplained = []
    explained: dict[str, int] = {}
    for case in cases:
        ours = ours_all[case.id]
        other = theirs[case.id]["result"]
        if ours.decision == other:
            continue
        reasons = [k for k, pred in PREDICATES.items() if k in known and pred(case, ours, other)]
        if len(reasons) == 1:
            explained[reasons[0]] = explained.get(reasons[0], 0) + 1
        else:
            unexplained.append((case.id, ours.decision, other, ours.layer, sorted(case.tags)))
    assert len(cases) >= 5000
    assert not unexplained, f"{len(unexplained)} unexplained disagreements, first: {unexplained[:5]}"
    # Both documented divergences are exercised, so a predicate that never fires would be noticed.
    assert set(explained) == set(PREDICATES), explained
