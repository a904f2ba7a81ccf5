"""Per-call overhead of `rolesmith record`'s hook and proxy captures.

One recorded run (``capture=auto``) of a workload that times N rounds of `s3.list_buckets()` made
three ways against the same local endpoint (a minimal S3/STS stub on 127.0.0.1 in its own process,
so its latency is small and it shares no GIL with the recorder), interleaved call by call, the
order rotating every round, so that load drift on a shared machine hits every mode alike: a session
with the hook's handlers removed talking to the stub directly (the unrecorded baseline), a hooked
session talking to the stub directly (hook), and the unhooked session talking through the recording
proxy (proxy). Overhead = mode percentile - baseline percentile, and the median of the per-round
paired differences (the figure least moved by load). The child's CPU time per call
(``time.process_time``) is reported too: the hook's cost in the child without the scheduler's noise.
Targets: hook < 0.2 ms p50, proxy < 2 ms p50. Also: the hook handlers' own cost, replayed on a
captured call.

    .venv/bin/python bench/record.py [--calls 1000] [--runs 1] [--tls]

``--tls``: every mode over TLS (the stub speaks HTTPS with its own CA; the proxy is the HTTPS_PROXY
one, terminating TLS with the run's CA and connecting to the stub over TLS, as it would to AWS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rolesmith.record import RecordOptions, record

WORKLOAD = r'''
import json, os, sys, time
import boto3

# The stub itself; the proxy is AWS_ENDPOINT_URL, or with --tls HTTPS_PROXY (s3.amazonaws.com, MITM).
direct, verify = os.environ["BENCH_DIRECT_URL"], os.environ.get("BENCH_VERIFY") or None
hooked = boto3.session.Session()
plain = boto3.session.Session()
for event in ("before-parameter-build", "before-call", "before-send", "after-call", "after-call-error"):
    plain._session.unregister(event, unique_id=f"rolesmith-{event}")  # this session is not recorded
clients = {
    "baseline": plain.client("s3", endpoint_url=direct, verify=verify),
    "hook": hooked.client("s3", endpoint_url=direct, verify=verify),
    "proxy": plain.client("s3"),
}
out, n = sys.argv[1], int(sys.argv[2])
for c in clients.values():  # warm-up: connections, models, first-call paths
    for _ in range(10):
        c.list_buckets()
modes = list(clients)
times = {m: [] for m in modes}
cpu = {m: [] for m in modes}
for i in range(n):  # interleaved, order rotating, so load drift and position hit every mode alike
    for mode in modes[i % 3:] + modes[:i % 3]:
        c = clients[mode]
        t, p = time.perf_counter(), time.process_time()
        c.list_buckets()
        p, t = time.process_time() - p, time.perf_counter() - t
        times[mode].append(t * 1000)
        cpu[mode].append(p * 1000)
json.dump({"wall": times, "cpu": cpu}, open(out, "w"))
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


def hook_handler_cost(endpoint: str, iterations: int = 2000, verify: str | None = None) -> float:
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
    client = boto3.client("s3", endpoint_url=endpoint, verify=verify, region_name="us-east-1", aws_access_key_id="AKIABENCH",
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


def serve_stub(cert_dir: str | None) -> None:
    """The stub, in its own process: the recorder's threads must not delay its answers (GIL)."""
    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    stub.daemon_threads = True
    if cert_dir:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(Path(cert_dir) / "leaf.pem", Path(cert_dir) / "leaf-key.pem")
        stub.socket = ctx.wrap_socket(stub.socket, server_side=True)
    print(stub.server_address[1], flush=True)
    stub.serve_forever()


def start_stub(cert_dir: Path | None = None) -> tuple[subprocess.Popen, str]:
    tls = ["--stub-tls", str(cert_dir)] if cert_dir else []
    proc = subprocess.Popen([sys.executable, __file__, "--stub", *tls], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, f"{'https' if cert_dir else 'http'}://127.0.0.1:{port}"


def make_certs(directory: Path) -> Path:
    """A CA and a certificate for 127.0.0.1 signed by it (the --tls stub's); returns the CA file."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench stub CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    import ipaddress

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf-key.pem").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "ca.pem"


def summarise(runs: list[dict[str, dict[str, list[float]]]]) -> dict[str, dict[str, float]]:
    """Per mode: p50/p99 of the wall time and the CPU time, and the paired median differences."""
    wall = {m: [v for r in runs for v in r["wall"][m]] for m in runs[0]["wall"]}
    cpu = {m: [v for r in runs for v in r["cpu"][m]] for m in runs[0]["cpu"]}
    out = {}
    for mode in wall:
        out[mode] = {
            "p50": pct(wall[mode], 50), "p99": pct(wall[mode], 99), "cpu50": pct(cpu[mode], 50),
            "paired": pct([m - b for m, b in zip(wall[mode], wall["baseline"])], 50),
            "paired_cpu": pct([m - b for m, b in zip(cpu[mode], cpu["baseline"])], 50),
        }
    return out


def print_table(s: dict[str, dict[str, float]], title: str) -> None:
    base = s["baseline"]
    print(f"{title}:")
    print(f"  {'mode':<9} {'p50':>7} {'p99':>7} {'+p50':>7} {'+p99':>7} {'paired':>7}  {'cpu p50':>7} {'+cpu':>7}"
          f" {'paired':>7}  target (+p50 and paired)")
    print(f"  {'baseline':<9} {base['p50']:7.3f} {base['p99']:7.3f} {'':>23}  {base['cpu50']:7.3f}")
    for mode, target in (("hook", 0.2), ("proxy", 2.0)):
        m = s[mode]
        d50 = m["p50"] - base["p50"]
        ok = "ok" if max(d50, m["paired"]) < target else "MISSED"
        print(f"  {mode:<9} {m['p50']:7.3f} {m['p99']:7.3f} {d50:+7.3f} {m['p99'] - base['p99']:+7.3f} "
              f"{m['paired']:+7.3f}  {m['cpu50']:7.3f} {m['cpu50'] - base['cpu50']:+7.3f} {m['paired_cpu']:+7.3f}"
              f"  < {target} {ok}")


def stub_client(service: str, env: dict[str, str]) -> object:
    """rolesmith's own calls (its GetCallerIdentity) go to the stub as well, not to AWS."""
    import boto3

    return boto3.client(service, endpoint_url=env["BENCH_DIRECT_URL"], verify=env["BENCH_VERIFY"],
                        region_name="us-east-1", aws_access_key_id="AKIABENCH", aws_secret_access_key="bench")


def run_once(calls: int, env: dict[str, str], route: tuple[str, str, int] | None = None) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "workload.py"
        script.write_text(WORKLOAD)
        timings = Path(tmp) / "timings.json"
        command = [sys.executable, str(script), str(timings), str(calls)]
        out = Path(os.environ.get("BENCH_OUT", Path(tmp) / "out"))
        # With --tls the MITM proxy sends s3.amazonaws.com to the stub, over TLS as to AWS.
        result = record(command, RecordOptions(out_dir=out, capture="auto", env=env,
                                               proxy_route=(lambda host, port: route) if route else None,
                                               client_factory=stub_client if route else None))
        assert result.exit_code == 0, result
        # Every hooked and every proxied call was recorded, once.
        assert result.calls_by_method == {"hook": calls + 10, "proxy": calls + 10}, result.calls_by_method
        return json.loads(timings.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="rounds of one call per mode")
    parser.add_argument("--runs", type=int, default=1, help="recorded runs: a table each, then pooled")
    parser.add_argument("--tls", action="store_true",
                        help="every mode over TLS: the stub speaks HTTPS, the proxy is the HTTPS_PROXY (MITM) one")
    parser.add_argument("--stub", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stub-tls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        serve_stub(args.stub_tls)
        return
    certs = Path(tempfile.mkdtemp(prefix="bench-record-")) if args.tls else None
    ca = make_certs(certs) if certs else None
    stub, url = start_stub(certs)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="AKIABENCH", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        env["BENCH_DIRECT_URL"] = url
        route = None
        if ca:
            # Direct calls go to the stub (trusting its CA), not through the proxy; the proxy's own
            # upstream connections trust the stub's CA through the default verify paths.
            env.update(BENCH_VERIFY=str(ca), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
            os.environ["SSL_CERT_FILE"] = str(ca)
            route = ("https", "127.0.0.1", int(url.rsplit(":", 1)[1]))
        else:
            env["AWS_ENDPOINT_URL"] = url
        print(f"{args.calls} s3:ListBuckets calls per mode and run, interleaved in one recorded workload, against a "
              f"local stub{' over TLS (proxy: HTTPS_PROXY, MITM)' if ca else ''}; ms per call; {os.cpu_count()} CPUs")
        runs = []
        for n in range(args.runs):
            load = os.getloadavg()[0]
            runs.append(run_once(args.calls, env, route))
            print_table(summarise(runs[-1:]), f"run {n + 1} (load average {load:.1f} at its start)")
        if args.runs > 1:
            print_table(summarise(runs), f"{args.runs} runs pooled")
        print("paired: median of the per-round differences to the baseline call of the same round; cpu: the "
              "child's CPU time per call (the proxy's own CPU is spent in the recorder, not the child)")
        print(f"hook handlers' own cost per call (replayed in-process, incl. the loopback send): "
              f"{hook_handler_cost(url, verify=str(ca) if ca else None):.1f} µs")
    finally:
        stub.terminate()
        stub.wait()
        if certs:
            shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    main()
