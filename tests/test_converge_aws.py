"""converge against AWS, with moto's IAM standing in: the role's original inline and attached policies
come back exactly on every abort (error, --max-runs exhausted, SIGINT mid-run) unless --keep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from rolesmith.converge import ConvergeOptions, converge
from rolesmith.converge.aws import AwsBackend

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "converge"
ORIGINAL_INLINE = {"Version": "2012-10-17",
                   "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::reports"}]}
TRUST = {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}


def _seed(iam) -> dict:
    iam.create_role(RoleName="report-writer", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName="report-writer", PolicyName="list-reports", PolicyDocument=json.dumps(ORIGINAL_INLINE))
    managed = iam.create_policy(PolicyName="read-logs", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:GetLogEvents",
                                                  "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:app:*"}]}))
    iam.attach_role_policy(RoleName="report-writer", PolicyArn=managed["Policy"]["Arn"])
    return _state(iam)


def _state(iam) -> dict:
    inline = {n: iam.get_role_policy(RoleName="report-writer", PolicyName=n)["PolicyDocument"]
              for n in iam.list_role_policies(RoleName="report-writer")["PolicyNames"]}
    attached = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="report-writer")["AttachedPolicies"])
    return {"inline": inline, "attached": attached}


@pytest.fixture
def moto_session(mocked_aws):
    return mocked_aws


def _fake_runs(monkeypatch, trail: Path, seen: list) -> None:
    """Runs are replaced (the workload is not the point here): each one 'denies' s3:GetObject."""

    def run(self, command, run_dir):
        seen.append(_state(self._iam))
        return 1, None, trail

    monkeypatch.setattr(AwsBackend, "run", run)


def test_max_runs_exhausted_restores_inline_and_attached(moto_session, monkeypatch, tmp_path):
    iam = moto_session.client("iam")
    before = _seed(iam)
    seen: list = []
    _fake_runs(monkeypatch, FIXTURES / "denied_get.jsonl", seen)
    result = converge(["true"], ConvergeOptions(role="report-writer", session=moto_session, max_runs=1,
                                                out_dir=tmp_path, sleep=lambda s: None))
    assert result.stopped_reason == "max-runs"
    assert result.restored is True
    # During the run the role held only converge's policy (start from empty) ...
    assert seen[0] == {"inline": {}, "attached": []}
    applied = [f for f in result.runs[0].fixes if f.applied and f.layer == "identity"]
    assert any("s3:GetObject" in json.dumps(f.statements) for f in applied)
    # ... and afterwards exactly the originals.
    assert _state(iam) == before


def test_keep_leaves_converged_policy(moto_session, monkeypatch, tmp_path):
    iam = moto_session.client("iam")
    _seed(iam)
    _fake_runs(monkeypatch, FIXTURES / "denied_get.jsonl", [])
    result = converge(["true"], ConvergeOptions(role="report-writer", session=moto_session, max_runs=1, keep=True,
                                                out_dir=tmp_path, sleep=lambda s: None))
    assert result.restored is False
    state = _state(iam)
    assert list(state["inline"]) == ["rolesmith-converge"] and state["attached"] == []
    assert "s3:GetObject" in json.dumps(state["inline"]["rolesmith-converge"])


def test_error_mid_run_restores(moto_session, monkeypatch, tmp_path):
    iam = moto_session.client("iam")
    before = _seed(iam)

    def run(self, command, run_dir):
        self.put_identity({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::reports/*"}]})
        raise RuntimeError("boom")

    monkeypatch.setattr(AwsBackend, "run", run)
    with pytest.raises(RuntimeError, match="boom"):
        converge(["true"], ConvergeOptions(role="report-writer", session=moto_session, out_dir=tmp_path))
    assert _state(iam) == before


def test_current_start_keeps_policies_and_unknown_role_fails(moto_session, tmp_path):
    iam = moto_session.client("iam")
    _seed(iam)
    from rolesmith.converge import ConvergeError

    with pytest.raises(ConvergeError, match=r"^--role nobody: cannot read the role \(NoSuchEntity\)"):
        converge(["true"], ConvergeOptions(role="nobody", session=moto_session, out_dir=tmp_path))


CHILD = ("import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('up'); time.sleep(60)")


def test_sigint_mid_run_restores(tmp_path):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        iam = boto3.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        before = _seed(iam)
        marker = tmp_path / "child-started"
        proc = subprocess.Popen(
            [sys.executable, "-m", "rolesmith.cli", "converge", "--role", "report-writer", "-o", str(tmp_path / "out"),
             "--max-runs", "3", "--", sys.executable, "-c", CHILD, str(marker)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 40
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.communicate(timeout=10)
        assert _state(iam) == {"inline": {}, "attached": []}  # mid-run: started from empty
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode != 0, out
        assert _state(iam) == before, err
    finally:
        server.stop()


OPERATOR = ROOT / "fixtures" / "converge" / "secure_inbox_operator.yaml"


def test_aws_path_end_to_end_on_the_sandbox(tmp_path, monkeypatch):
    """The real-AWS path against an endpoint that enforces IAM (the sandbox standing in for an
    account): AssumeRole for the child, PutRolePolicy in effect for the next run, originals restored
    when --max-runs runs out."""
    from rolesmith.sandbox import Sandbox

    with Sandbox(OPERATOR) as sb:
        for var in [v for v in os.environ if v.startswith("AWS_")]:
            monkeypatch.delenv(var)
        for k, v in sb.env_for("service/operator").items():
            monkeypatch.setenv(k, v)
        session = boto3.Session()
        iam = session.client("iam")
        original = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::acme-service-reports"}]}
        iam.put_role_policy(RoleName="ReportWriter", PolicyName="original", PolicyDocument=json.dumps(original))
        result = converge([sys.executable, str(ROOT / "examples" / "secure_inbox.py")],
                          ConvergeOptions(role="ReportWriter", session=session, max_runs=2, out_dir=tmp_path,
                                          capture="hook", sleep=lambda s: None))
        assert result.role == "arn:aws:iam::111111111111:role/ReportWriter"
        assert result.stopped_reason == "max-runs" and result.restored
        first, second = result.runs
        assert [(d.event, d.reason) for d in first.denials] == [("s3:PutObject", "MISSING_IDENTITY_ALLOW")]
        assert any(f.applied and f.layer == "identity" for f in first.fixes)
        # Run 1's fix was in effect: run 2 got past the PutObject that run 1 was refused.
        assert ("s3:PutObject", "MISSING_IDENTITY_ALLOW") not in [(d.event, d.reason) for d in second.denials]
        assert iam.list_role_policies(RoleName="ReportWriter")["PolicyNames"] == ["original"]
        assert iam.get_role_policy(RoleName="ReportWriter", PolicyName="original")["PolicyDocument"] == original
