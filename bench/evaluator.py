"""Decisions per second: rolesmith's evaluator next to @cloud-copilot/iam-simulate on the same cases.

Run: .venv/bin/python bench/evaluator.py [N_CASES]
The cases are the differential test's (tests/differential/cases.py). iam-simulate (AGPL) is installed
with ``npm install --prefix`` into a temporary cache directory, never vendored; its rate is measured
inside its node process (startup and JSON transfer excluded). Target: rolesmith >= iam-simulate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "differential"))

import cases as gen  # noqa: E402

from rolesmith.evaluator import evaluate  # noqa: E402

PACKAGE = "@cloud-copilot/iam-simulate@0.1.173"


def _iam_simulate(cases: list[gen.Case]) -> float | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("iam-simulate: skipped (node/npm not installed)")
        return None
    prefix = Path(tempfile.gettempdir()) / "rolesmith-bench-iam-simulate-0.1.173"
    if not (prefix / "node_modules" / "@cloud-copilot" / "iam-simulate" / "package.json").exists():
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PACKAGE],
                       check=True, capture_output=True)
    lines = "".join(json.dumps({"id": c.id, "simulation": gen.to_simulation(c)}) + "\n" for c in cases)
    done = subprocess.run(["node", str(ROOT / "tests" / "differential" / "iam_simulate_runner.js"), str(prefix)],
                          input=lines, capture_output=True, text=True, check=True)
    last = json.loads(done.stdout.splitlines()[-1])
    return float(last["seconds"])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5200
    cases = gen.generate(n)
    start = time.perf_counter()
    for c in cases:
        evaluate(c.request, c.policies)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for c in cases:
        evaluate(c.request, c.policies)
    warm = time.perf_counter() - start
    print(f"cases: {n}")
    print(f"rolesmith (policies compiled on first use): {n / cold:10.0f} decisions/s")
    print(f"rolesmith (compiled policies cached)      : {n / warm:10.0f} decisions/s")
    theirs = _iam_simulate(cases)
    if theirs:
        print(f"iam-simulate {PACKAGE.rsplit('@', 1)[1]:>8} (baseline, same run)  : {n / theirs:10.0f} decisions/s")
        print(f"ratio rolesmith/iam-simulate (first use)  : {theirs / cold:10.2f}x  (target >= 1)")


if __name__ == "__main__":
    main()
