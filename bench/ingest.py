"""Ingest benchmark: rolesmith's events/s against raw JSON decoding and trailscraper, plus peak memory.

    .venv/bin/python bench/ingest.py [--events 1000000] [--small 100000] [--no-trailscraper]

One run generates two deterministic synthetic trails (``--small`` and ``--events`` events: S3 /
KMS / EC2 / STS / Lambda calls from a few hundred roles in three accounts, written as gzipped
CloudTrail log files in the ``AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/`` layout into a
temporary directory) and measures, each in its own subprocess so that peak RSS is that job's alone:

- ``json`` / ``orjson``: gunzip + decode every file with the stdlib and with orjson (the practical
  limit: no tool can read the trail faster than it can decode it);
- ``ingest``: ``rolesmith.trail.read_trail`` (decode + normalise every event);
- ``pipeline``: ``rolesmith.policies.build_policies(paths, BuildOptions())`` (ingest, action
  mapping, usage graph, policy synthesis), or ``read_trail`` + ``rolesmith.actions.uses_for`` while
  the policy stage is not importable;
- ``trailscraper``: ``trailscraper select --log-dir … | trailscraper generate`` from PyPI, installed
  on first use into its own virtualenv ``bench/.venv-trailscraper`` (it pins older boto3/click, so it
  must not share the project venv). It runs on the small trail by default: its ``select`` holds every
  record in memory (``--trailscraper-full`` runs it on the large one too).

A third trail, ``repeat``, is the small trail's workload run ``--events / --small`` times over (fresh
event ids and times): 10x the events with the same distinct uses. Memory is meant to grow with
distinct uses, not events, so the memory target is judged small -> repeat; small -> large, where
distinct uses grow too, is printed beside it with the distinct-use counts.

Targets (issue 2): pipeline ≥ 40 % of raw decode, ≥ 10× trailscraper, peak memory growth < 1.5× for
10× the events. Prints a table, then the figures as JSON (``--json-out FILE`` also writes them).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
TS_VENV = HERE / ".venv-trailscraper"
START = 1704067200  # 2024-01-01T00:00:00Z
SPAN = 10 * 86400  # the trail covers ten days whatever its size: more events, denser trail
PER_FILE = 500
_OVER_MEMORY = 3  # exit status of a job that hit --max-memory-mb
ACCOUNTS = ("111111111111", "222222222222", "333333333333")
REGIONS = ("us-east-1", "eu-west-1")


# -- synthetic trail ------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _World:
    """Roles, their sessions, buckets, objects, keys and functions: bounded, so distinct uses saturate."""

    def __init__(self, rng: random.Random, roles: int = 240) -> None:
        self.roles = []
        for i in range(roles):
            acct = ACCOUNTS[i % len(ACCOUNTS)]
            region = REGIONS[i % len(REGIONS)]
            name = f"app-{i:03d}"
            path = "service-role/" if i % 4 == 0 else ""
            role_arn = f"arn:aws:iam::{acct}:role/{path}{name}"
            identities = []
            for s in range(3):
                session = f"i-{rng.getrandbits(60):015x}" if s else f"{name}-job"
                identities.append(
                    {
                        "type": "AssumedRole",
                        "principalId": f"AROA{rng.getrandbits(64):016X}:{session}",
                        "arn": f"arn:aws:sts::{acct}:assumed-role/{name}/{session}",
                        "accountId": acct,
                        "accessKeyId": f"ASIA{rng.getrandbits(64):016X}",
                        "sessionContext": {
                            "sessionIssuer": {
                                "type": "Role",
                                "principalId": f"AROA{i:016d}",
                                "arn": role_arn,
                                "accountId": acct,
                                "userName": name,
                            },
                            "webIdFederationData": {},
                            "attributes": {"creationDate": "2024-01-01T00:00:00Z", "mfaAuthenticated": "false"},
                        },
                    }
                )
            buckets = []
            for b in (f"data-{acct}-{i % 40:02d}", f"logs-{acct}-{(i * 7) % 40:02d}"):
                key_arn = f"arn:aws:kms:{region}:{acct}:key/{_uuid(rng)}" if rng.random() < 0.6 else None
                objects = [f"in/2024/01/part-{k:04d}.parquet" for k in range(60)]
                buckets.append((b, key_arn, objects))
            functions = [f"arn:aws:lambda:{region}:{acct}:function:{name}-fn{f}" for f in range(2)]
            self.roles.append((acct, region, name, role_arn, identities, buckets, functions))


def _event(rng: random.Random, world: _World, t: float) -> tuple[str, str, dict[str, Any]]:
    acct, region, name, role_arn, identities, buckets, functions = world.roles[rng.randrange(len(world.roles))]
    identity = identities[rng.randrange(3)]
    bucket, key_arn, objects = buckets[rng.randrange(2)]
    obj = objects[rng.randrange(len(objects))]
    r = rng.random()
    ev: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": _iso(t),
        "awsRegion": region,
        "sourceIPAddress": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "userAgent": "[Boto3/1.34.11 md/Botocore#1.34.11 ua/2.0 os/linux#5.10 md/arch#x86_64 lang/python#3.11.7]",
        "requestID": f"{rng.getrandbits(64):016X}",
        "eventID": _uuid(rng),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": acct,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"s3.{region}.amazonaws.com",
        },
    }
    host = f"{bucket}.s3.{region}.amazonaws.com"
    s3_extra = {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": f"{rng.getrandbits(256):064x}",
        "bytesTransferredOut": rng.randrange(100000),
    }
    obj_resources = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{obj}"},
        {"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]
    if r < 0.30:
        src, op = "s3.amazonaws.com", "GetObject"
        ev.update(requestParameters={"bucketName": bucket, "Host": host, "key": obj}, responseElements=None)
        ev.update(additionalEventData=s3_extra, resources=obj_resources, managementEvent=False, eventCategory="Data")
        if r < 0.003:
            other = f"secret-{acct}-99"
            ev.update(errorCode="AccessDenied", errorMessage="Access Denied")
            ev["requestParameters"] = {"bucketName": other, "Host": host, "key": obj}
    elif r < 0.45:
        src, op = "s3.amazonaws.com", "PutObject"
        req: dict[str, Any] = {"bucketName": bucket, "Host": host, "key": obj}
        resp: dict[str, Any] | None = None
        if key_arn:
            req["x-amz-server-side-encryption"] = "aws:kms"
            req["x-amz-server-side-encryption-aws-kms-key-id"] = key_arn
            resp = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_arn}
        ev.update(requestParameters=req, responseElements=resp, additionalEventData=s3_extra, resources=obj_resources)
        ev.update(readOnly=False, managementEvent=False, eventCategory="Data")
    elif r < 0.50:
        src, op = "s3.amazonaws.com", "ListObjectsV2" if r < 0.48 else "ListObjects"
        ev.update(
            requestParameters={"list-type": "2", "bucketName": bucket, "prefix": "in/2024/", "Host": host},
            responseElements=None,
            additionalEventData=s3_extra,
            resources=obj_resources[1:],
            managementEvent=False,
            eventCategory="Data",
        )
    elif r < 0.55:
        src, op = "s3.amazonaws.com", "HeadObject"
        ev.update(requestParameters={"bucketName": bucket, "Host": host, "key": obj}, responseElements=None)
        ev.update(additionalEventData=s3_extra, resources=obj_resources, managementEvent=False, eventCategory="Data")
    elif r < 0.57:
        src, op = "s3.amazonaws.com", "DeleteObject"
        ev.update(requestParameters={"bucketName": bucket, "Host": host, "key": obj}, responseElements=None)
        ev.update(additionalEventData=s3_extra, resources=obj_resources, readOnly=False, managementEvent=False)
        ev["eventCategory"] = "Data"
    elif r < 0.59:
        src, op = "s3.amazonaws.com", "CopyObject"
        dest = obj.replace("in/", "out/")
        ev.update(
            requestParameters={
                "bucketName": bucket,
                "Host": host,
                "key": dest,
                "x-amz-copy-source": f"{bucket}/{obj}",
            },
            responseElements=None,
            additionalEventData=s3_extra,
            resources=[
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{dest}"},
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{obj}"},
                obj_resources[1],
            ],
            readOnly=False,
            managementEvent=False,
            eventCategory="Data",
        )
    elif r < 0.77 and key_arn:
        # SSE-KMS data keys fetched by S3 on the role's behalf (invokedBy s3.amazonaws.com).
        src, op = "kms.amazonaws.com", "GenerateDataKey" if r < 0.67 else "Decrypt"
        ev["userIdentity"] = dict(identity, invokedBy="s3.amazonaws.com")
        ev.update(sourceIPAddress="s3.amazonaws.com", userAgent="s3.amazonaws.com")
        req = {"encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{bucket}/{obj}"}, "keyId": key_arn}
        req.update({"keySpec": "AES_256"} if op == "GenerateDataKey" else {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        ev.update(
            requestParameters=req,
            responseElements=None,
            resources=[{"accountId": acct, "type": "AWS::KMS::Key", "ARN": key_arn}],
            tlsDetails=None,
        )
    elif r < 0.84:
        src, op = "ec2.amazonaws.com", "DescribeInstances"
        ev.update(
            requestParameters={
                "instancesSet": {},
                "filterSet": {"items": [{"name": "tag:app", "valueSet": {"items": [{"value": name}]}}]},
            },
            responseElements=None,
        )
    elif r < 0.85:
        src, op = "ec2.amazonaws.com", "RunInstances"
        ev.update(
            requestParameters={
                "instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1, "maxCount": 1}]},
                "instanceType": "m5.large",
                "iamInstanceProfile": {"arn": f"arn:aws:iam::{acct}:instance-profile/{name}-worker"},
                "subnetId": "subnet-0123456789abcdef0",
            },
            responseElements={
                "requestId": ev["requestID"],
                "instancesSet": {"items": [{"instanceId": f"i-{rng.getrandbits(64):017x}"[:19]}]},
            },
            readOnly=False,
        )
    elif r < 0.89:
        src, op = "sts.amazonaws.com", "AssumeRole"
        target = world.roles[rng.randrange(len(world.roles))]
        session = f"{name}-{rng.randrange(100)}"
        ev.update(
            requestParameters={"roleArn": target[3], "roleSessionName": session, "durationSeconds": 3600},
            responseElements={
                "credentials": {
                    "accessKeyId": f"ASIA{rng.getrandbits(64):016X}",
                    "sessionToken": f"IQoJb3JpZ2luX2Vj{rng.getrandbits(256):064x}",
                    "expiration": "Jan 1, 2024, 1:00:00 AM",
                },
                "assumedRoleUser": {
                    "assumedRoleId": f"AROA{rng.getrandbits(64):016X}:{session}",
                    "arn": f"arn:aws:sts::{target[0]}:assumed-role/{target[2]}/{session}",
                },
            },
            resources=[{"accountId": target[0], "type": "AWS::IAM::Role", "ARN": target[3]}],
        )
        if target[0] != acct:
            ev["sharedEventID"] = _uuid(rng)
    elif r < 0.91:
        src, op = "sts.amazonaws.com", "GetCallerIdentity"
        ev.update(requestParameters=None, responseElements=None)
    elif r < 0.99:
        src, op = "lambda.amazonaws.com", "Invoke"
        fn = functions[rng.randrange(2)]
        ev.update(
            requestParameters={"functionName": fn, "invocationType": "RequestResponse"},
            responseElements=None,
            additionalEventData={"functionVersion": f"{fn}:$LATEST"},
            resources=[{"accountId": acct, "type": "AWS::Lambda::Function", "ARN": fn}],
            readOnly=False,
            managementEvent=False,
            eventCategory="Data",
        )
    else:
        src, op = "lambda.amazonaws.com", "GetFunction20150331v2"
        ev.update(requestParameters={"functionName": functions[0]}, responseElements=None)
    ev["eventSource"] = src
    ev["eventName"] = op
    return acct, region, ev


def generate(root: Path, events: int, seed: int = 20240101, *, repeat_every: int | None = None) -> int:
    """Write ``events`` events as gzipped CloudTrail log files under ``root/AWSLogs``; return file count.

    With ``repeat_every=N`` the trail is the first N events' workload run again and again (the same
    calls on the same resources, each run ten days after the last, with fresh event and request ids):
    more events, the same distinct uses.
    """
    import orjson

    rng = random.Random(seed)
    world = _World(rng)
    events_seed = rng.getrandbits(64)
    ids = random.Random(seed + 1)
    buffers: dict[tuple[str, str], list[dict[str, Any]]] = {}
    files = 0

    def flush(acct: str, region: str, records: list[dict[str, Any]]) -> None:
        nonlocal files
        t = time.strptime(records[0]["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
        folder = root / "AWSLogs" / acct / "CloudTrail" / region / time.strftime("%Y/%m/%d", t)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "".join(ids.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
        name = f"{acct}_CloudTrail_{region}_{time.strftime('%Y%m%dT%H%MZ', t)}_{suffix}.json.gz"
        (folder / name).write_bytes(gzip.compress(orjson.dumps({"Records": records}), compresslevel=6, mtime=0))
        files += 1

    def flush_all() -> None:
        for (acct, region), buf in sorted(buffers.items()):
            if buf:
                flush(acct, region, buf)
        buffers.clear()

    period = repeat_every or events
    for i in range(events):
        run, j = divmod(i, period)
        if j == 0:
            flush_all()  # a run's files hold only that run's events
            draw = random.Random(events_seed)  # every run of the workload makes the same calls
        acct, region, ev = _event(draw, world, START + SPAN * (run + j / period))
        if run:
            ev["eventID"] = _uuid(ids)
            ev["requestID"] = f"{ids.getrandbits(64):016X}"
            if "sharedEventID" in ev:
                ev["sharedEventID"] = _uuid(ids)
        buf = buffers.setdefault((acct, region), [])
        buf.append(ev)
        if len(buf) >= PER_FILE:
            flush(acct, region, buf)
            buffers[(acct, region)] = []
    flush_all()
    return files


# -- measured jobs (run in a child process each) --------------------------------------------------


def _trail_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".json.gz"):
                yield Path(dirpath, name)


def _job(mode: str, root: Path) -> dict[str, Any]:
    """Run one measured job in this process (imports happen before the clock starts)."""
    label = mode
    work: Callable[[], int]
    extra: dict[str, Any] = {}
    if mode == "json":
        work = lambda: sum(len(json.loads(gzip.open(p).read())["Records"]) for p in _trail_files(root))  # noqa: E731
    elif mode == "orjson":
        import orjson

        work = lambda: sum(len(orjson.loads(gzip.open(p).read())["Records"]) for p in _trail_files(root))  # noqa: E731
    elif mode == "ingest":
        from rolesmith.trail import read_trail

        work = lambda: sum(1 for _ in read_trail([root]))  # noqa: E731
    elif mode == "pipeline":
        try:
            from rolesmith.policies import BuildOptions, build_policies
        except ImportError:  # the policy stage is not there yet: measure what the pipeline has
            from rolesmith.actions import uses_for
            from rolesmith.trail import read_trail

            label = "read_trail+uses_for"

            def work() -> int:
                n = 0
                for event in read_trail([root]):
                    uses_for(event)
                    n += 1
                return n

        else:
            label = "build_policies"

            def work() -> int:
                result = build_policies([root], BuildOptions())
                # Memory is meant to follow distinct uses, not events: report them beside the peak.
                extra["distinct_uses"] = len(result.graph._by_key)  # no public count; uses() would copy all
                return result.report.events
    else:
        raise SystemExit(f"unknown job {mode}")
    # CPU seconds, not wall time: the bench machine is shared, and the jobs run minutes apart, so
    # wall time would compare the load at two moments rather than the two programs.
    t0, w0 = time.process_time(), time.perf_counter()
    n = work()
    seconds, wall = time.process_time() - t0, time.perf_counter() - w0
    return {"job": label, "events": n, "seconds": seconds, "wall_seconds": wall, "peak_rss_mb": _peak_rss_mb(),
            **extra}


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report at least
    # the bench parent's own peak.
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:", 1)[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(mode: str, root: Path, timeout: float, max_memory_mb: int) -> dict[str, Any] | None:
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(root), "--max-memory-mb", str(max_memory_mb)],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"  {mode} on {root.name}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    if out.returncode == _OVER_MEMORY:
        print(f"  {mode} on {root.name}: stopped at the {max_memory_mb} MB memory cap", file=sys.stderr)
        return None
    if out.returncode != 0:
        raise SystemExit(f"bench job {mode} on {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- trailscraper ---------------------------------------------------------------------------------


def _trailscraper() -> Path:
    exe = TS_VENV / "bin" / "trailscraper"
    if not exe.exists():
        print(f"installing trailscraper into {TS_VENV} (once) …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TS_VENV)], check=True)
        (TS_VENV / ".gitignore").write_text("*\n")
        subprocess.run(
            [str(TS_VENV / "bin" / "pip"), "install", "-q", "trailscraper>=0.9"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return exe


def _run_trailscraper(root: Path, events: int) -> dict[str, Any]:
    exe = _trailscraper()
    window = f"--from 2023-12-31 --to {time.strftime('%Y-%m-%d', time.gmtime(START + SPAN + 86400))}"
    script = f"'{exe}' select --log-dir '{root}' {window} | '{exe}' generate"
    # A wrapper process waits for the pipeline, so its RUSAGE_CHILDREN peak is trailscraper's alone.
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "out = subprocess.run(['sh', '-c', sys.argv[1]], capture_output=True, text=True)\n"
        "seconds = time.perf_counter() - t0\n"
        "ok = out.returncode == 0 and '\"Statement\"' in out.stdout\n"
        "print(out.stderr[-3000:] if not ok else '', file=sys.stderr)\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(ru.ru_utime + ru.ru_stime, seconds, ru.ru_maxrss / 1024, int(ok))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, script], capture_output=True, text=True, check=False)
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) != 4 or fields[3] != "1":
        raise SystemExit(f"trailscraper failed:\n{out.stderr[-3000:]}")
    # CPU seconds of select + generate together (they run side by side in the pipe); peak RSS is
    # the larger of the two processes.
    seconds, wall, peak = float(fields[0]), float(fields[1]), float(fields[2])
    return {
        "job": "trailscraper select|generate",
        "events": events,
        "seconds": seconds,
        "wall_seconds": wall,
        "peak_rss_mb": peak,
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the large trail")
    parser.add_argument("--small", type=int, default=100_000, help="events in the small trail")
    parser.add_argument("--workdir", type=Path, help="where to write the trails (default: a temp dir, removed)")
    parser.add_argument("--no-trailscraper", action="store_true", help="skip the trailscraper comparison")
    parser.add_argument("--trailscraper-full", action="store_true", help="also run trailscraper on the large trail")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--jobs", default="json,orjson,ingest,pipeline", help="comma-separated jobs to run (default: all)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of every job; each figure is the median (default 3)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a job is abandoned")
    parser.add_argument(
        "--max-memory-mb",
        type=int,
        default=4096,
        help="address-space cap per job (a job over it is reported, not run to an OOM on a shared machine)",
    )
    parser.add_argument("--child", nargs=2, metavar=("JOB", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cap = args.max_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
            print(json.dumps(_job(args.child[0], Path(args.child[1]))))
        except MemoryError:
            raise SystemExit(_OVER_MEMORY) from None
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="rolesmith-bench-"))
    try:
        figures = _bench(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes = {"small": args.small, "large": args.events, "repeat": args.events}
    # "repeat": the small trail's workload run events/small times: 10x the events, the same distinct
    # uses. Memory should follow distinct uses, not events (issue 2), so this is the trail the memory
    # target is judged on; "large" adds distinct uses as it grows, and its figure is reported beside.
    repeat_every = {"repeat": args.small}
    trails: dict[str, Path] = {}
    gen: dict[str, Any] = {}
    for size, n in sizes.items():
        root = work / size
        t0 = time.perf_counter()
        if not (root / "AWSLogs").exists():
            files = generate(root, n, repeat_every=repeat_every.get(size))
        else:
            files = sum(1 for _ in _trail_files(root))
        size_mb = sum(p.stat().st_size for p in _trail_files(root)) / 1e6
        gen[size] = {"events": n, "files": files, "gzip_mb": round(size_mb, 1), "seconds": time.perf_counter() - t0}
        print(f"trail {size}: {n} events in {files} files, {size_mb:.1f} MB gzipped", file=sys.stderr)
        trails[size] = root

    # Every job runs --rounds times, the rounds one after another, so that a slow minute of the
    # shared machine hits each job alike; a job's figure is its median round.
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.rounds + 1):
        for size, root in trails.items():
            for mode in args.jobs.split(","):
                if size == "repeat" and mode != "pipeline":
                    continue  # only the pipeline keeps per-use state
                r = _run_child(mode, root, args.timeout, args.max_memory_mb)
                if r is None:
                    continue
                r["events_per_s"] = r["events"] / r["seconds"]
                runs.setdefault(f"{mode}/{size}", []).append(r)
                uses = f", {r['distinct_uses']:,} distinct uses" if "distinct_uses" in r else ""
                print(f"  round {round_no} {mode:9} {size:6}: {r['events_per_s']:>10,.0f} events/s, "
                      f"peak {r['peak_rss_mb']:.0f} MB{uses}", file=sys.stderr)
        if not args.no_trailscraper:
            for size in ("small", "large") if args.trailscraper_full else ("small",):
                r = _run_trailscraper(trails[size], sizes[size])
                r["events_per_s"] = r["events"] / r["seconds"]
                runs.setdefault(f"trailscraper/{size}", []).append(r)
                print(f"  round {round_no} trailscraper {size}: {r['events_per_s']:>10,.0f} events/s", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    for key, rs in runs.items():
        ordered = sorted(rs, key=lambda r: r["events_per_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["rounds_events_per_s"] = [round(r["events_per_s"]) for r in rs]
        median["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in rs)
        results[key] = median

    def ratio(a: str, b: str, field: str = "events_per_s") -> float | None:
        if a in results and b in results:
            return float(results[a][field]) / float(results[b][field])
        return None

    ratios = {
        "pipeline_vs_orjson_decode": ratio("pipeline/large", "orjson/large"),
        "pipeline_vs_json_decode": ratio("pipeline/large", "json/large"),
        "ingest_vs_orjson_decode": ratio("ingest/large", "orjson/large"),
        "ingest_vs_json_decode": ratio("ingest/large", "json/large"),
        "pipeline_vs_trailscraper": ratio("pipeline/small", "trailscraper/small"),
        "ingest_vs_trailscraper": ratio("ingest/small", "trailscraper/small"),
        "pipeline_memory_growth": ratio("pipeline/repeat", "pipeline/small", "peak_rss_mb"),
        "pipeline_memory_growth_more_uses": ratio("pipeline/large", "pipeline/small", "peak_rss_mb"),
        "distinct_uses_growth_more_uses": ratio("pipeline/large", "pipeline/small", "distinct_uses"),
        "ingest_memory_growth": ratio("ingest/large", "ingest/small", "peak_rss_mb"),
    }
    targets = {
        "pipeline_vs_orjson_decode": (0.40, ">="),
        "pipeline_vs_json_decode": (0.40, ">="),
        "pipeline_vs_trailscraper": (10.0, ">="),
        "pipeline_memory_growth": (1.5, "<"),
    }

    print()
    print(f"rates are events per CPU second of the job (wall seconds shown for reference); median of {args.rounds} "
          "round(s), every round listed last")
    print(f"{'job':32} {'trail':>7} {'events':>9} {'cpu s':>8} {'wall s':>8} {'events/s':>10} {'peak MB':>8}")
    for key, r in results.items():
        mode, size = key.split("/")
        print(
            f"{r['job']:32} {size:>7} {r['events']:>9} {r['seconds']:>8.1f} {r['wall_seconds']:>8.1f} "
            f"{r['events_per_s']:>10,.0f} "
            f"{r['peak_rss_mb']:>8.0f}  "
            + " / ".join(f"{x:,}" for x in r["rounds_events_per_s"])
        )
    print()
    for name, value in ratios.items():
        if value is None:
            print(f"{name:28} {'n/a':>8}  (a job was skipped or timed out)")
            continue
        target = targets.get(name)
        verdict = ""
        if target:
            ok = value >= target[0] if target[1] == ">=" else value < target[0]
            verdict = f"target {target[1]} {target[0]:g}: {'met' if ok else 'NOT met'}"
        print(f"{name:28} {value:8.2f}  {verdict}")
    figures = {"trails": gen, "results": results, "ratios": ratios, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    print()
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
