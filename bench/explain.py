"""Throughput of ``rolesmith explain`` next to reading the same trail (baseline, same run).

Run: .venv/bin/python bench/explain.py [N]. Builds N denied events from the fixture cases (each with
its own policies directory) and reports events/s for: reading only, explaining from AWS's messages,
and explaining with ``--policies`` (evaluator + near-miss probes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rolesmith.explain import explain_event
from rolesmith.explain.trailindex import TrailIndex
from rolesmith.evaluator.policydir import load_policy_dir
from rolesmith.trail import read_trail

ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "explain" / "cases"


def main(n: int) -> None:
    cases = sorted(p for p in ROOT.iterdir() if (p / "policies").is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        per = max(1, n // len(cases))
        jobs = []
        for case in cases:
            lines = (case / "trail.jsonl").read_text().splitlines()
            path = Path(tmp) / f"{case.name}.jsonl"
            path.write_text("\n".join(lines * per) + "\n")
            jobs.append((path, load_policy_dir(case / "policies")))
        t0 = time.perf_counter()
        events = {path: list(read_trail([path])) for path, _ in jobs}
        read_s = time.perf_counter() - t0
        total = sum(len(v) for v in events.values())
        denied = sum(1 for v in events.values() for e in v if e.denied)

        t0 = time.perf_counter()
        for path, _ in jobs:
            index = TrailIndex.build(events[path])
            for e in events[path]:
                if e.denied:
                    explain_event(e, None, trail=index)
        msg_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for path, store in jobs:
            index = TrailIndex.build(events[path])
            for e in events[path]:
                if e.denied:
                    explain_event(e, store, trail=index)
        pol_s = time.perf_counter() - t0
    print(f"events: {total} ({denied} denied, {len(cases)} fixture cases)")
    print(f"baseline read_trail:        {total / read_s:10.0f} events/s")
    print(f"explain (messages + trail): {denied / msg_s:10.0f} denied events/s")
    print(f"explain --policies:         {denied / pol_s:10.0f} denied events/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
