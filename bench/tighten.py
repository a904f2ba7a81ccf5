"""How long ``rolesmith tighten`` takes, next to ``build`` on the same trail (measured in the same run).

tighten = build + reading the role + expanding the current policies' wildcards against the action
dataset + replaying every used call through the evaluator. The worst case for the expansion is
AdministratorAccess (``"Action": "*"``: every action of every service).

    .venv/bin/python bench/tighten.py [REPEATS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "tighten"
CASES = {
    "EMR_DefaultRole": "emr_service_role.jsonl",
    "EMR_LegacyServiceRole": "emr_legacy_role.jsonl",
    "data-pipeline": "s3_pipeline.jsonl",
    "order-worker": "admin_worker.jsonl",
}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    from rolesmith.policies import BuildOptions, build_policies
    from rolesmith.tighten import TightenOptions, tighten
    from rolesmith.tighten._dataset import all_actions

    start = time.perf_counter()
    all_actions()
    print(f"action dataset load (once):            {1000 * (time.perf_counter() - start):8.1f} ms")
    print(f"{'role':24} {'build (baseline)':>18} {'tighten':>10} {'overhead':>10}")
    for role, trail in CASES.items():
        path = FIX / "trails" / trail
        arn = f"arn:aws:iam::111122223333:role/{role}"
        base = _best(lambda: build_policies([path], BuildOptions(principals=(arn,))), repeats)
        opts = TightenOptions(trails=(path,), current_policies=FIX / "roles")
        full = _best(lambda: tighten(role, opts), repeats)
        print(f"{role:24} {1000 * base:15.1f} ms {1000 * full:7.1f} ms {full / base:9.1f}x")


if __name__ == "__main__":
    main()
