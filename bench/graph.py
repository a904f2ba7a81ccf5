"""Usage-graph and policy-synthesis benchmark: events/s of ``UsageGraph.add`` and memory vs events.

    .venv/bin/python bench/graph.py [--small 100000] [--large 1000000] [--uses 20000]

Feeds already-mapped synthetic events (hand-made ``Event``/``EventUses``: S3 object reads and writes,
SSE-KMS data keys invoked by S3, DynamoDB reads, from 200 roles over a bounded set of ``--uses``
distinct permissions) to ``UsageGraph.add``, then runs ``policies_from_graph``. Ingest and mapping
are measured by bench/ingest.py; this isolates the graph and policy stages. Each size runs in its
own subprocess so peak RSS is that run's alone. Baseline, measured in the same run: the least any
graph must do, a dict counting (principal, action, resource) keys.

Targets (issue 2: memory grows with distinct uses, not events): peak RSS of the large run < 1.5x the
small run's; graph add at least 1/4 of the baseline's events/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]


def _events(n: int, distinct: int) -> Iterator[tuple[Any, Any]]:
    from rolesmith.actions.model import EventUses, Use
    from rolesmith.trail.model import Event, Principal

    roles = [Principal(arn=f"arn:aws:iam::111122223333:role/app-{i:03d}", kind="role", account="111122223333")
             for i in range(200)]
    per_role = max(1, distinct // len(roles))
    via = (("StringEquals", "kms:ViaService", "s3.us-east-1.amazonaws.com"),)
    for i in range(n):
        role = roles[i % len(roles)]
        k = (i // len(roles)) % per_role
        kind = k % 3
        obj = f"arn:aws:s3:::data-{i % 40:02d}/in/part-{k:05d}.parquet"
        invoked = None
        request: dict[str, Any] = {}
        if kind == 0:
            uses = (Use(action="s3:PutObject", resource=obj, resource_account="111122223333"),)
        elif kind == 1:
            uses = (Use(action="kms:GenerateDataKey", resource="arn:aws:kms:us-east-1:111122223333:key/k-1",
                        conditions=via, via="s3.amazonaws.com"),)
            invoked, request = "s3.amazonaws.com", {"encryptionContext": {"aws:s3:arn": obj}}
        else:
            uses = (Use(action="dynamodb:GetItem", resource=f"arn:aws:dynamodb:us-east-1:111122223333:table/t{k}"),)
        event = Event(event_id=f"{i:032x}", request_id=None, source="s3.amazonaws.com", name="PutObject",
                      time=1_700_000_000.0 + i, region="us-east-1", account="111122223333", partition="aws",
                      principal=role, invoked_by=invoked, source_ip=None, user_agent=None, error_code=None,
                      error_message=None, read_only=False, event_type="AwsApiCall", request=request)
        yield event, EventUses(uses=uses)


def _child(mode: str, n: int, distinct: int) -> dict[str, Any]:
    if mode == "baseline":
        counts: dict[tuple[str, str, str], int] = {}
        t0 = time.process_time()
        for event, mapped in _events(n, distinct):
            for use in mapped.uses:
                k = (event.principal.arn, use.action, use.resource)
                counts[k] = counts.get(k, 0) + 1
        add_s = time.process_time() - t0
        policy_s, uses = 0.0, len(counts)
    else:
        from rolesmith.graph import UsageGraph
        from rolesmith.policies import BuildOptions, policies_from_graph

        graph = UsageGraph()
        add = graph.add
        t0 = time.process_time()
        for event, mapped in _events(n, distinct):
            add(event, mapped)
        add_s = time.process_time() - t0
        t1 = time.process_time()
        policies_from_graph(graph, BuildOptions())
        policy_s, uses = time.process_time() - t1, len(graph.uses())
    # The generator itself costs time; both modes pay it, so the ratio stays fair.
    return {"mode": mode, "events": n, "uses": uses, "add_seconds": add_s, "policy_seconds": policy_s,
            "events_per_s": n / add_s if add_s else 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(mode: str, n: int, distinct: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(distinct)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--uses", type=int, default=20_000, help="distinct permissions the workload has")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    rows = [_run(mode, n, args.uses) for n in (args.small, args.large) for mode in ("baseline", "graph")]
    for r in rows:
        print(f"  {r['mode']:<8} {r['events']:>9,} events  {r['uses']:>7,} uses  {r['events_per_s']:>10,.0f} events/s"
              f"  policies {r['policy_seconds']:5.2f} s  peak {r['peak_rss_mb']:6.0f} MB")
    graph_small, graph_large = rows[1], rows[3]
    base_large = rows[2]
    figures = {
        "memory_growth_x": graph_large["peak_rss_mb"] / graph_small["peak_rss_mb"],
        "add_vs_baseline": graph_large["events_per_s"] / base_large["events_per_s"],
    }
    print(f"  memory growth for {args.large // args.small}x the events: {figures['memory_growth_x']:.2f}x (target < 1.5x)")
    print(f"  graph add speed vs baseline: {figures['add_vs_baseline']:.2f} (target >= 0.25)")
    print(json.dumps({"rows": rows, **figures}))


if __name__ == "__main__":
    main()
