"""Per-call overhead of `rolesmith record`'s hook and proxy captures.

One recorded run (``capture=auto``) of a workload that times N rounds of `s3.list_buckets()` made
three ways against the same local endpoint (a minimal S3/STS stub on 127.0.0.1, so the endpoint's
own latency is small and stable), interleaved call by call so that load drift on a shared machine
hits them alike: a session with the hook's handlers removed talking to the stub directly (the
unrecorded baseline), a hooked session talking to the stub directly (hook), and the unhooked
session talking through the recording proxy (proxy). Overhead = mode percentile - baseline
percentile, and the median of per-round paired differences. Targets: hook < 0.2 ms p50, proxy
< 2 ms p50. Also: the hook handlers' own CPU cost, replayed on a captured call.

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
import json, os, sys, time
import boto3

direct = os.environ["BENCH_DIRECT_URL"]  # the stub itself; AWS_ENDPOINT_URL is the recording proxy
hooked = boto3.session.Session()
plain = boto3.session.Session()
for event in ("before-parameter-build", "before-call", "before-send", "after-call", "after-call-error"):
    plain._session.unregister(event, unique_id=f"rolesmith-{event}")  # this session is not recorded
clients = {
    "baseline": plain.client("s3", endpoint_url=direct),
    "hook": hooked.client("s3", endpoint_url=direct),
    "proxy": plain.client("s3"),
}
out, n = sys.argv[1], int(sys.argv[2])
for c in clients.values():  # warm-up: connections, models, first-call paths
    for _ in range(10):
        c.list_buckets()
times = {m: [] for m in clients}
for _ in range(n):  # interleaved, so load drift on a shared machine hits every mode alike
    for mode, c in clients.items():
        t = time.perf_counter()
        c.list_buckets()
        times[mode].append((time.perf_counter() - t) * 1000)
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
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    stub.daemon_threads = True
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{stub.server_address[1]}", AWS_ACCESS_KEY_ID="AKIABENCH",
               AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    env["BENCH_DIRECT_URL"] = env["AWS_ENDPOINT_URL"]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "workload.py"
        script.write_text(WORKLOAD)
        timings = Path(tmp) / "timings.json"
        command = [sys.executable, str(script), str(timings), str(args.calls)]
        result = record(command, RecordOptions(out_dir=Path(os.environ.get("BENCH_OUT", Path(tmp) / "out")), capture="auto", env=env))
        assert result.exit_code == 0, result
        # Every hooked and every proxied call was recorded, once.
        assert result.calls_by_method == {"hook": args.calls + 10, "proxy": args.calls + 10}, result.calls_by_method
        results = json.loads(timings.read_text())
    base = results["baseline"]
    b50, b99 = pct(base, 50), pct(base, 99)
    print(f"{args.calls} s3:ListBuckets calls per mode, interleaved in one workload, against a local stub; "
          f"ms per call; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<10} {'p50':>8} {'p99':>8} {'+p50':>8} {'+p99':>8}  {'paired +p50':>11}  target(+p50)")
    print(f"{'baseline':<10} {b50:8.3f} {b99:8.3f}")
    for mode, target in (("hook", 0.2), ("proxy", 2.0)):
        p50, p99 = pct(results[mode], 50), pct(results[mode], 99)
        paired = pct([m - b for m, b in zip(results[mode], base)], 50)
        ok = "ok" if paired < target else "MISSED"
        print(f"{mode:<10} {p50:8.3f} {p99:8.3f} {p50 - b50:+8.3f} {p99 - b99:+8.3f}  {paired:+11.3f}  < {target} {ok}")
    print(f"hook handlers' own cost per call (replayed in-process, incl. the loopback send): "
          f"{hook_handler_cost(env['AWS_ENDPOINT_URL']):.1f} µs")
    print(f"baseline stdev {statistics.pstdev(base):.3f} ms")
    stub.shutdown()


if __name__ == "__main__":
    main()
