"""Sandbox start to first answered request, and per-request latency, next to bare moto in the same run.

    .venv/bin/python bench/sandbox.py [--runs 3] [--requests 200]

Cold start (each in a fresh Python process, imports included — what `rolesmith record --sandbox`
pays): start the endpoint, create a boto3 S3 client, answer ListBuckets. Wall time is the figure;
the child's CPU time is printed beside it (steadier on a loaded machine). The baseline is a bare
moto server (``moto.server.ThreadedMotoServer``) doing the same. Target: sandbox < 2 s.
Warm latency (in this process): p50/p99 of S3 PutObject through the sandbox (authenticate, map,
evaluate every layer, SSE-KMS inner call, CloudTrail record, moto) vs the same call on bare moto.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "examples" / "secure_inbox.broad.yaml"

_SANDBOX_CHILD = f"""
import time
t0 = time.perf_counter()
import boto3
from rolesmith.sandbox import start_sandbox
sb = start_sandbox({str(SCENARIO)!r})
env = sb.env_for(sb.default_principal)
s3 = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=sb.endpoint_url,
    aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    aws_session_token=env["AWS_SESSION_TOKEN"])
s3.list_buckets()
print(time.perf_counter() - t0, time.process_time())
sb.stop()
"""

_MOTO_CHILD = """
import time
t0 = time.perf_counter()
import boto3
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
s3 = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=f"http://{host}:{port}",
    aws_access_key_id="AKIABENCHBENCHBENCH0", aws_secret_access_key="bench")
s3.list_buckets()
print(time.perf_counter() - t0, time.process_time())
server.stop()
"""


def _cold(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child up to the answer). Wall is the figure; CPU is printed
    beside it because it moves far less with the load the other engineers put on a shared machine."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _warm(n: int) -> dict[str, tuple[float, float]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from rolesmith.sandbox import start_sandbox

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    session = boto3.session.Session(region_name="us-east-1")
    results = {}
    with start_sandbox(SCENARIO) as sb:
        env = sb.env_for(sb.default_principal)
        s3 = session.client("s3", endpoint_url=sb.endpoint_url, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_session_token=env["AWS_SESSION_TOKEN"])
        s3.put_object(Bucket="acme-service-reports", Key="reports/warmup", Body=b"x")
        samples = []
        for i in range(n):
            t = time.perf_counter()
            s3.put_object(Bucket="acme-service-reports", Key=f"reports/{i}", Body=b"x")
            samples.append(time.perf_counter() - t)
        results["sandbox"] = _percentiles(samples)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = session.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="AKIABENCHBENCHBENCH0",
                            aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="warmup", Body=b"x")
        samples = []
        for i in range(n):
            t = time.perf_counter()
            s3.put_object(Bucket="bench", Key=f"k{i}", Body=b"x")
            samples.append(time.perf_counter() - t)
        results["moto"] = _percentiles(samples)
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    sandbox, moto, sandbox_cpu, moto_cpu = [], [], [], []
    for _ in range(args.runs):  # interleaved, so machine load hits both alike
        for code, walls, cpus in ((_SANDBOX_CHILD, sandbox, sandbox_cpu), (_MOTO_CHILD, moto, moto_cpu)):
            wall, cpu = _cold(code)
            walls.append(wall)
            cpus.append(cpu)
    warm = _warm(args.requests)
    s_med, m_med = statistics.median(sandbox), statistics.median(moto)
    print(f"cold start -> first answered request (median and best of {args.runs}, fresh process, imports "
          f"included; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  rolesmith sandbox : {s_med:6.2f} s median, {min(sandbox):5.2f} s best  "
          f"(runs: {', '.join(f'{x:.2f}' for x in sandbox)})  target < 2 s: {'met' if s_med < 2 else 'NOT met'}")
    print(f"                      CPU {statistics.median(sandbox_cpu):5.2f} s median, {min(sandbox_cpu):5.2f} s best")
    print(f"  bare moto server  : {m_med:6.2f} s median, {min(moto):5.2f} s best  "
          f"(runs: {', '.join(f'{x:.2f}' for x in moto)})  baseline")
    print(f"                      CPU {statistics.median(moto_cpu):5.2f} s median, {min(moto_cpu):5.2f} s best")
    print(f"warm S3 PutObject latency over {args.requests} requests (p50 / p99 ms)")
    print(f"  rolesmith sandbox : {warm['sandbox'][0]:6.1f} / {warm['sandbox'][1]:6.1f}  "
          "(SSE-KMS inner call, every layer evaluated, CloudTrail)")
    print(f"  bare moto server  : {warm['moto'][0]:6.1f} / {warm['moto'][1]:6.1f}  baseline")
    print(json.dumps({"cold_sandbox_s": s_med, "cold_moto_s": m_med, "cold_sandbox_best_s": min(sandbox),
                      "cold_moto_best_s": min(moto), "cold_sandbox_cpu_s": statistics.median(sandbox_cpu),
                      "cold_moto_cpu_s": statistics.median(moto_cpu), "warm_sandbox_ms": warm["sandbox"],
                      "warm_moto_ms": warm["moto"]}))


if __name__ == "__main__":
    main()
