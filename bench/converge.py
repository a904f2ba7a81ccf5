"""Runs and wall time of ``rolesmith converge`` on the sandbox examples from an empty policy, next to
the same loop fixing only what each denial names (no indirect-use rules) — the baseline, measured in
the same run. The figure that matters is runs: each one re-runs the workload.

    .venv/bin/python bench/converge.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CASES = {"secure_inbox": "service/ReportWriter", "object_ownership": "partner/Uploader",
         "emr_launch": "data/Launcher"}


def _one(example: str, role: str, anticipate: bool) -> tuple[int, int, float, str]:
    from rolesmith.converge import ConvergeOptions, converge

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = converge([sys.executable, str(EXAMPLES / f"{example}.py")],
                          ConvergeOptions(role=role, scenario=EXAMPLES / f"{example}.yaml", out_dir=Path(tmp),
                                          anticipate=anticipate, env={"PATH": "/usr/bin:/bin"}))
        return len(result.runs), result.distinct_denials, time.perf_counter() - start, result.stopped_reason


def main() -> None:
    print(f"{'example':18} {'mode':12} {'runs':>4} {'denials':>7} {'seconds':>8}  stopped")
    for example, role in CASES.items():
        for anticipate, mode in ((False, "baseline"), (True, "converge")):
            runs, denials, seconds, stopped = _one(example, role, anticipate)
            print(f"{example:18} {mode:12} {runs:4d} {denials:7d} {seconds:8.1f}  {stopped}")


if __name__ == "__main__":
    main()
