"""Run every benchmark in one go: ``.venv/bin/python bench/run.py [--quick] [--only ingest,evaluator]``.

Each benchmark is its own script (see bench/README.md) that prints its figures next to a baseline
measured in the same run; this runner only runs them one after another on an otherwise idle machine,
so one benchmark's load never skews another's figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (arguments for a full run, arguments for --quick)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "ingest": ([], ["--events", "200000", "--small", "20000", "--rounds", "1"]),
    "graph": ([], ["--small", "20000", "--large", "200000"]),
    "actions": ([], []),
    "evaluator": ([], []),
    "explain": ([], []),
    "record": ([], ["--calls", "100"]),
    "sandbox": ([], ["--runs", "2"]),
    "tighten": ([], []),
    "converge": ([], []),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (minutes instead of tens of minutes)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names: " + ",".join(BENCHES))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"== {name}: {script.name} not present, skipped", flush=True)
            continue
        full, quick = BENCHES[name]
        cmd = [sys.executable, str(script), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd)
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
