"""Per-call overhead of `rolesmith record`'s hook and proxy captures.

One run measures the same workload three ways against the same local endpoint (a minimal S3/STS
stub on 127.0.0.1, so the endpoint's own latency is small and stable): unrecorded (the baseline),
recorded by the hook only, recorded by the proxy only. The workload is a child process timing
each of N `s3.list_buckets()` calls; overhead = recorded percentile - baseline percentile.
Targets: hook < 0.2 ms p50, proxy < 2 ms p50.

    .venv/bin/python bench/record.py [--calls 400]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rolesmith.record import RecordOptions, record

WORKLOAD = r'''
import json, sys, time
import boto3
s3 = boto3.client("s3")
out, n = sys.argv[1], int(sys.argv[2])
for _ in range(20):  # warm-up: connections, models, first-call paths
    s3.list_buckets()
times = []
for _ in range(n):
    t = time.perf_counter()
    s3.list_buckets()
    times.append((time.perf_counter() - t) * 1000)
json.dump(times, open(out, "w"))
'''

LIST_BUCKETS = (b'<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b'<Owner><ID>abc</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>')
CALLER = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
          b'<Arn>arn:aws:iam::123456789012:user/bench</Arn><UserId>AIDABENCH</UserId><Account>123456789012</Account>'
          b'</GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>')


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every answer waits ~40 ms for a delayed ACK
    counter = 0

    def _answer(self, body: bytes) -> None:
        Stub.counter += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", f"req-{Stub.counter}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(LIST_BUCKETS)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(CALLER)

    def log_message(self, *args: object) -> None:
        pass


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def hook_handler_cost(endpoint: str, iterations: int = 2000) -> float:
    """CPU cost of the hook's handlers for one call (µs), replayed on a captured real call: the
    hook's whole overhead, measured without the network noise of a shared machine."""
    import socket

    import boto3

    sys.path.insert(0, str(Path(__file__).parent.parent / "rolesmith" / "record" / "hook"))
    import _rolesmith_hook as hook

    # The receiver is another process, as the recording parent is.
    name = f"rolesmith-bench-{os.getpid()}"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sink.bind("\0" + name)
    sink.listen()
    pid = os.fork()
    if pid == 0:
        conn, _ = sink.accept()
        while conn.recv(1 << 16):
            pass
        os._exit(0)
    hook._sender = hook._Sender(f"unix:{name}", "bench")
    captured: dict[str, dict] = {}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIABENCH",
                          aws_secret_access_key="bench")
    for event in ("before-parameter-build", "before-call", "before-send", "after-call"):
        client.meta.events.register(event, lambda event_name, _e=event, **kw: captured.setdefault(_e, kw) and None)
    client.list_buckets()
    kinds = [(hook._on_params, captured["before-parameter-build"]), (hook._on_before_call, captured["before-call"]),
             (hook._on_before_send, captured["before-send"]), (hook._on_after_call, captured["after-call"])]
    import time

    start = time.perf_counter()
    for _ in range(iterations):
        for context in (captured["before-call"]["context"],):
            context.pop("_rolesmith", None)
        for handler, kwargs in kinds:
            handler(**kwargs)
    cost = (time.perf_counter() - start) / iterations * 1e6
    hook._sender._sock.close()
    os.waitpid(pid, 0)
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    stub.daemon_threads = True
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{stub.server_address[1]}", AWS_ACCESS_KEY_ID="AKIABENCH",
               AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    import subprocess

    results: dict[str, list[float]] = {"baseline": [], "hook": [], "proxy": []}
    rounds: dict[str, list[float]] = {m: [] for m in results}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "workload.py"
        script.write_text(WORKLOAD)
        # Modes alternate round by round so that load drift on a shared machine hits them alike.
        for r in range(args.rounds):
            for mode in results:
                timings = Path(tmp) / f"{mode}-{r}.json"
                command = [sys.executable, str(script), str(timings), str(args.calls)]
                if mode == "baseline":
                    subprocess.run(command, env=env, check=True)
                else:
                    result = record(command, RecordOptions(out_dir=Path(tmp) / f"{mode}-{r}", capture=mode,  # type: ignore[arg-type]
                                                           env=env))
                    assert result.exit_code == 0 and result.calls_by_method.get(mode) == args.calls + 20, result
                values = json.loads(timings.read_text())
                results[mode] += values
                rounds[mode].append(pct(values, 50))
    b50, b99 = pct(results["baseline"], 50), pct(results["baseline"], 99)
    load = os.getloadavg()[0]
    print(f"{args.rounds} rounds x {args.calls} s3:ListBuckets calls per mode against a local stub; "
          f"per-call latency in ms; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<10} {'p50':>8} {'p99':>8} {'+p50':>8} {'+p99':>8}  {'target':>9}  p50 per round")
    print(f"{'baseline':<10} {b50:8.3f} {b99:8.3f} {'':>8} {'':>8}  {'':>9}  "
          + " ".join(f"{v:.3f}" for v in rounds["baseline"]))
    for mode, target in (("hook", 0.2), ("proxy", 2.0)):
        p50, p99 = pct(results[mode], 50), pct(results[mode], 99)
        ok = "ok" if p50 - b50 < target else "MISSED"
        print(f"{mode:<10} {p50:8.3f} {p99:8.3f} {p50 - b50:+8.3f} {p99 - b99:+8.3f}  <{target:4} {ok:<6}  "
              + " ".join(f"{v:.3f}" for v in rounds[mode]))
    print(f"hook handlers' own cost per call (replayed in-process, incl. the loopback send): "
          f"{hook_handler_cost(env['AWS_ENDPOINT_URL']):.1f} µs")
    print(f"baseline stdev {statistics.pstdev(results['baseline']):.3f} ms: on a loaded machine differences "
          f"below that are noise")
    stub.shutdown()


if __name__ == "__main__":
    main()
