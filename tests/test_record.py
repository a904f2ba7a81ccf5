"""rolesmith record end to end against moto on 127.0.0.1: boto3, AWS CLI v1, curl, SIGKILL, secrets."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.record import RecordOptions, record

FIXTURES = Path(__file__).parent.parent / "fixtures" / "record"
PYTHON = sys.executable
ACCESS_KEY = "AKIAROLESMITHTEST001"
SECRET = "rsTestSecret" + secrets.token_hex(12)
TOKEN = "rsTestSessionToken" + secrets.token_hex(24)


@pytest.fixture
def aws_env(moto_url):
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=moto_url, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_SESSION_TOKEN=TOKEN, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]


def _uses(records: list[dict]) -> list[tuple[str, str, tuple[str, ...]]]:
    """What the policies are built from: action and resources, per call, in order."""
    return [(r["eventSource"], r["eventName"], tuple(sorted(x["ARN"] for x in r["resources"]))) for r in records]


EXPECTED_USES = [
    ("s3.amazonaws.com", "CreateBucket", ("arn:aws:s3:::reports",)),
    ("s3.amazonaws.com", "PutObject", ("arn:aws:s3:::reports", "arn:aws:s3:::reports/acme/2024.csv")),
    ("s3.amazonaws.com", "GetObject", ("arn:aws:s3:::reports", "arn:aws:s3:::reports/acme/2024.csv")),
    ("s3.amazonaws.com", "DeleteObject", ("arn:aws:s3:::reports", "arn:aws:s3:::reports/acme/2024.csv")),
]


def _assert_no_secrets(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, path
            assert TOKEN.encode() not in data, path
            assert b"OBJECT-DATA-MUST-NOT-BE-RECORDED" not in data, path
            assert b"Signature=" not in data, path


def test_boto3_program_recorded_once_per_call_with_exit_code(tmp_path, aws_env):
    """(a) boto3 under auto capture (hook + proxy, deduplicated), (e) no secrets, (f) exit code."""
    out = tmp_path / "out"
    result = record([PYTHON, str(FIXTURES / "workload_boto3.py"), "7"], RecordOptions(out_dir=out, env=aws_env))
    assert result.exit_code == 7 and result.signal is None
    records = _records(out)
    assert _uses(records) == EXPECTED_USES
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"hook"}
    assert result.calls_by_method == {"hook": 4}
    put = records[1]
    assert put["requestParameters"] == {"bucketName": "reports", "key": "acme/2024.csv"}
    assert put["userIdentity"]["accessKeyId"] == ACCESS_KEY
    assert put["userIdentity"]["accountId"] == put["recipientAccountId"] == "123456789012"
    assert put["awsRegion"] == "us-east-1" and put["requestID"] and put["eventID"]
    assert put["eventTime"].endswith("Z")
    assert result.principals == (put["userIdentity"]["arn"],)
    _assert_no_secrets(out)
    pytest.importorskip("rolesmith.render", reason="rolesmith.render not in this build: policies are skipped")
    assert result.outputs == (out / "policies.json",)
    statements = json.loads((out / "policies.json").read_text())["identity_policies"][0]["policy"]["Statement"]
    grants = {(a, r) for st in statements for a in _list(st["Action"]) for r in _list(st["Resource"])}
    assert grants == {("s3:CreateBucket", "arn:aws:s3:::reports")} | {
        (a, "arn:aws:s3:::reports/acme/2024.csv") for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")}


def _list(value):
    return value if isinstance(value, list) else [value]


def test_one_get_caller_identity_per_key_however_many_calls(tmp_path, aws_env, monkeypatch):
    """userIdentity comes from ONE sts:GetCallerIdentity that rolesmith itself makes for the run's key,
    however many calls the child makes with it: 10 calls, from two processes, each seen by hook and proxy."""
    from rolesmith.record import session as record_session
    from rolesmith.record.session import _default_client

    resolvers: list = []

    class Counted(record_session.IdentityResolver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            resolvers.append(self)

    monkeypatch.setattr(record_session, "IdentityResolver", Counted)
    sent: list[str] = []  # GetCallerIdentity requests rolesmith's own clients put on the wire to moto

    def factory(service, env):
        client = _default_client(service, env)
        client.meta.events.register("before-send.sts.GetCallerIdentity", lambda request, **_: sent.append(request.url))
        return client

    out = tmp_path / "out"
    workload = str(FIXTURES / "workload_repeat.py")
    result = record(["sh", "-c", '"$0" "$1" 5 && "$0" "$1" 5', PYTHON, workload],
                    RecordOptions(out_dir=out, env=aws_env, client_factory=factory))
    assert result.exit_code == 0
    records = _records(out)
    assert [r["eventName"] for r in records] == ["ListBuckets"] * 10  # rolesmith's own call is not recorded
    assert len(resolvers) == 1 and resolvers[0].sts_calls == 1
    assert len(sent) == 1
    identities = {json.dumps(r["userIdentity"], sort_keys=True) for r in records}
    assert len(identities) == 1
    identity = records[0]["userIdentity"]
    assert identity["accessKeyId"] == ACCESS_KEY and identity["arn"].startswith("arn:aws:")
    assert result.principals == (identity["arn"],)


@pytest.mark.parametrize("capture", ["hook", "proxy"])
def test_a_refused_call_is_recorded_with_its_error_code_and_message(tmp_path, aws_env, capture):
    """A call the service refuses is in recording.jsonl with the errorCode and errorMessage the SDK got,
    for an XML (S3 NoSuchKey) and a JSON protocol error (KMS NotFoundException), by either capture."""
    out = tmp_path / "out"
    seen_file = tmp_path / "seen.json"
    result = record([PYTHON, str(FIXTURES / "workload_errors.py"), str(seen_file)],
                    RecordOptions(out_dir=out, env=aws_env, capture=capture))
    assert result.exit_code == 0
    seen = json.loads(seen_file.read_text())
    assert seen["GetObject"][0] == "NoSuchKey" and seen["DescribeKey"][0] == "NotFoundException"
    records = {r["eventName"]: r for r in _records(out)}
    assert sorted(records) == ["CreateBucket", "DescribeKey", "GetObject"]
    assert "errorCode" not in records["CreateBucket"] and "errorMessage" not in records["CreateBucket"]
    for name, status in (("GetObject", 404), ("DescribeKey", 400)):
        rec = records[name]
        assert [rec["errorCode"], rec["errorMessage"]] == seen[name], name
        assert rec["errorMessage"], name  # the service's words, not an empty string
        assert rec["additionalEventData"] == {"rolesmith": capture, "httpStatus": status}
    assert {"bucketName": "reports", "key": "missing.csv"}.items() <= records["GetObject"]["requestParameters"].items()
    assert result.denied == ()  # refused, not denied: nothing for `rolesmith explain`


def test_cli_format_cloudformation_writes_a_template(tmp_path, aws_env):
    """`record --format cloudformation`: policies.json on stdout, and OUT/rolesmith.yaml, a CloudFormation
    template granting what the run did, that cfn-lint accepts."""
    import boto3

    # An IAM user's key: moto answers GetCallerIdentity for it with the user's IAM ARN (for an unknown
    # key it answers arn:aws:sts::…:user/moto, which no template can name).
    iam = boto3.client("iam", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
    iam.create_user(UserName="report-writer")
    key = iam.create_access_key(UserName="report-writer")["AccessKey"]
    env = {k: v for k, v in aws_env.items() if k != "AWS_SESSION_TOKEN"}
    env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["record", "-o", str(out), "--capture", "hook", "--format", "cloudformation",
                                       "--", PYTHON, str(FIXTURES / "workload_boto3.py")], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((out / "policies.json").read_text())
    template_path = out / "rolesmith.yaml"
    assert result.stderr.splitlines()[-2:] == [f"wrote {out / 'policies.json'}", f"wrote {template_path}"]
    text = template_path.read_text()
    template = yaml.safe_load(text)  # YAML, not JSON text
    assert not text.lstrip().startswith("{")
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    [policy] = [r for r in template["Resources"].values() if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy")]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"  # the existing user's: the run assumed no role
    [user_param] = [p["Ref"] for p in policy["Properties"]["Users"]]
    assert template["Parameters"][user_param]["Default"] == "report-writer"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = {a for st in statements for a in _list(st["Action"])}
    assert actions == {"s3:CreateBucket", "s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
    if Path(PYTHON).with_name("cfn-lint").exists():
        from test_render import _cfn_lint  # the helper every rendered template in test_render goes through

        assert _cfn_lint([template_path]) == {template_path: []}


@pytest.mark.slow
def test_awscli_v1_matches_boto3(tmp_path, aws_env):
    """(b) AWS CLI v1, run as `python -m awscli` from a shell script: every descendant is recorded.
    Two CLI calls only: each CLI start costs seconds on a loaded machine."""
    out = tmp_path / "out"
    result = record(["sh", str(FIXTURES / "workload_awscli.sh"), PYTHON], RecordOptions(out_dir=out, env=aws_env))
    assert result.exit_code == 0
    records = _records(out)
    assert _uses(records) == EXPECTED_USES[:2]
    assert records[1]["requestParameters"] == {"bucketName": "reports", "key": "acme/2024.csv"}
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"hook"}
    _assert_no_secrets(out)


def _need_curl_sigv4() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    if "--aws-sigv4" not in subprocess.run(["curl", "--help", "all"], capture_output=True, text=True).stdout:
        pytest.skip("this curl lacks --aws-sigv4 (needs curl >= 7.75)")


def _route_to(moto_url: str, routed: list):
    from urllib.parse import urlsplit

    moto = urlsplit(moto_url)

    def route(host: str, port: int) -> tuple[str, str, int]:
        routed.append((host, port))
        return ("http", moto.hostname, moto.port)

    return route


@pytest.mark.parametrize("script", ["workload_curl.sh", "workload_curl_https.sh"])
def test_curl_sigv4_through_proxy_matches_boto3(tmp_path, aws_env, moto_url, script):
    """(c) A non-Python client: curl --aws-sigv4, decoded by the proxy with botocore's models; in
    front of AWS_ENDPOINT_URL, and as an HTTPS proxy for virtual-hosted S3 names (routed to moto)."""
    _need_curl_sigv4()
    out = tmp_path / "out"
    routed: list = []
    env = aws_env if script == "workload_curl.sh" else {k: v for k, v in aws_env.items() if k != "AWS_ENDPOINT_URL"}
    result = record(["sh", str(FIXTURES / script)],
                    RecordOptions(out_dir=out, env=env, proxy_route=_route_to(moto_url, routed)))
    assert result.exit_code == 0
    records = _records(out)
    assert _uses(records) == EXPECTED_USES
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"proxy"}
    assert records[1]["requestParameters"]["bucketName"] == "reports"
    assert records[1]["userIdentity"]["accessKeyId"] == ACCESS_KEY
    if script == "workload_curl_https.sh":
        assert set(routed) == {("s3.us-east-1.amazonaws.com", 443), ("reports.s3.us-east-1.amazonaws.com", 443)}
    _assert_no_secrets(out)


def test_sigkilled_child_loses_no_call(tmp_path, aws_env):
    """(d) Every call made before the SIGKILL is on disk; the kill is reported as 128 + 9."""
    out = tmp_path / "out"
    done = tmp_path / "done.txt"
    result = record([PYTHON, str(FIXTURES / "workload_killed.py"), str(done)], RecordOptions(out_dir=out, env=aws_env))
    assert result.signal == 9 and result.exit_code == 137
    made = done.read_text().split()
    assert made == [f"part-{i}" for i in range(5)]
    keys = [r["requestParameters"].get("key") for r in _records(out) if r["eventName"] == "PutObject"]
    assert keys == made


def test_cli_returns_child_exit_code_and_summary(tmp_path, aws_env, monkeypatch):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["record", "-o", str(out), "--capture", "hook", "--",
                                       PYTHON, str(FIXTURES / "workload_boto3.py"), "5"], env=aws_env)
    assert result.exit_code == 5, result.output
    assert "calls captured: 4 (4 by hook)" in result.stderr
    assert (out / "recording.jsonl").exists()


def test_cli_reports_a_killed_child_in_one_line(tmp_path, aws_env):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["record", "-o", str(out), "--", "sh", "-c", "kill -9 $$"], env=aws_env)
    assert result.exit_code == 137
    assert (f"Error: the command was killed by SIGKILL; the calls it made before are in {out / 'recording.jsonl'}"
            in result.stderr.splitlines())


def test_cli_command_not_found(tmp_path, aws_env):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["record", "-o", str(out), "--", "no-such-program-xyz"], env=aws_env)
    assert result.exit_code == 127
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: no-such-program-xyz: command not found; give the program to record after `--` "
        "(e.g. `rolesmith record -- python app.py`)")
    assert (out / "recording.jsonl").read_text() == ""


def test_https_proxy_terminates_tls_with_the_run_ca(tmp_path, aws_env, moto_url, monkeypatch):
    """The forward-proxy mode (no AWS_ENDPOINT_URL): the child talks HTTPS to *.amazonaws.com through
    HTTPS_PROXY and trusts the per-run CA; the test routes the decrypted requests to moto."""
    env = {k: v for k, v in aws_env.items() if k != "AWS_ENDPOINT_URL"}
    routed: list = []
    route = _route_to(moto_url, routed)

    from rolesmith.record import ca

    cas: list[ca.RunCA] = []
    original = ca.RunCA.__init__

    def remember(self):
        original(self)
        cas.append(self)

    monkeypatch.setattr(ca.RunCA, "__init__", remember)
    out = tmp_path / "out"
    result = record([PYTHON, str(FIXTURES / "workload_boto3.py")],
                    RecordOptions(out_dir=out, env=env, capture="proxy", proxy_route=route))
    assert result.exit_code == 0
    records = _records(out)
    assert _uses(records) == EXPECTED_USES  # virtual-hosted bucket names decoded from the Host
    assert set(routed) == {("reports.s3.amazonaws.com", 443)}  # boto3 names the bucket in the host
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"proxy"}
    _assert_no_secrets(out)
    assert len(cas) == 1 and not cas[0].dir.exists()  # the per-run CA is deleted at the end


def test_sandbox_scenario_runs_the_child_as_the_scenarios_principal(tmp_path):
    """--scenario: the enforcing sandbox (rolesmith.sandbox) replaces moto behind the same seam."""
    pytest.importorskip("rolesmith.sandbox.server", reason="rolesmith.sandbox not in this build")
    examples = Path(__file__).parent.parent / "examples"
    if not (examples / "secure_inbox.yaml").exists():
        pytest.skip("examples/secure_inbox.yaml not present")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = record([PYTHON, str(examples / "secure_inbox.py")],
                    RecordOptions(out_dir=out, env=env, scenario=examples / "secure_inbox.yaml", sandbox_trail=False))
    assert result.exit_code == 0
    records = _records(out)
    assert [r["eventName"] for r in records] == ["PutObject", "CopyObject"]  # the capture alone: no KMS
    assert {r["userIdentity"]["arn"] for r in records} == {
        "arn:aws:sts::111111111111:assumed-role/ReportWriter/rolesmith-sandbox"}
    assert records[1]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] == (
        "arn:aws:iam::111111111111:role/ReportWriter")
    assert result.denied == ()


def test_proxy_pipes_large_bodies_unchanged(tmp_path, aws_env):
    out = tmp_path / "out"
    result = record([PYTHON, str(FIXTURES / "workload_large.py")],
                    RecordOptions(out_dir=out, env=aws_env, capture="proxy"))
    assert result.exit_code == 0  # the workload compares what it downloads with what it uploaded
    assert [r["eventName"] for r in _records(out)] == ["CreateBucket", "PutObject", "GetObject"]


def test_csm_capture_records_actions_without_resources(tmp_path, aws_env):
    """--capture csm: botocore's client-side monitoring datagrams; actions only, and the summary says so."""
    out = tmp_path / "out"
    result = record([PYTHON, str(FIXTURES / "workload_boto3.py")],
                    RecordOptions(out_dir=out, env=aws_env, capture="csm"))
    assert result.exit_code == 0
    records = _records(out)
    assert [(r["eventSource"], r["eventName"], r["resources"]) for r in records] == [
        (source, name, []) for source, name, _ in EXPECTED_USES]
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"csm"}
    assert records[0]["userIdentity"]["accessKeyId"] == ACCESS_KEY
    assert any("csm captures actions only, no resources" in line for line in result.summary_lines())


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory):
    """@aws-sdk/client-s3 installed from npm into a temp dir (skips cleanly without node/npm/registry)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    where = tmp_path_factory.mktemp("node")
    (where / "package.json").write_text('{"name": "rolesmith-record-test", "private": true}')
    try:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "@aws-sdk/client-s3@3"],
                       cwd=where, check=True, capture_output=True, timeout=240)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"npm registry unreachable or install failed: {err}")
    shutil.copy(FIXTURES / "workload_node.mjs", where / "workload.mjs")
    return where


@pytest.mark.slow
def test_node_sdk_through_proxy_matches_boto3(tmp_path, aws_env, node_sdk):
    """(c) A non-Python SDK: the AWS SDK for JavaScript v3, recorded by the proxy alone."""
    out = tmp_path / "out"
    result = record(["node", str(node_sdk / "workload.mjs")], RecordOptions(out_dir=out, env=aws_env))
    assert result.exit_code == 0
    records = _records(out)
    assert _uses(records) == EXPECTED_USES
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"proxy"}
    _assert_no_secrets(out)
