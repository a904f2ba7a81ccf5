"""Scenario loading and the `rolesmith sandbox` command.

Bad scenarios (fixtures/sandbox/bad_scenarios.yaml) give one line naming the file, the entry and the
fix, exit code 2 through the CLI. The command itself is run as a process: it prints the endpoint
and each principal's environment, answers requests with it, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.sandbox import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
BAD = yaml.safe_load((ROOT / "fixtures/sandbox/bad_scenarios.yaml").read_text())


@pytest.mark.parametrize("case", BAD, ids=[c["id"] for c in BAD])
def test_bad_scenario_library_error(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(case["text"])
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == case["error"].replace("FILE", str(path))
    assert info.value.exit_code == 2


@pytest.mark.parametrize("case", BAD[:3], ids=[c["id"] for c in BAD[:3]])
def test_bad_scenario_cli(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(case["text"])
    result = CliRunner().invoke(main, ["sandbox", "--scenario", str(path)])
    assert result.exit_code == 2
    assert result.output == f"Error: {case['error'].replace('FILE', str(path))}\n"


def test_missing_scenario_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sandbox", "--scenario", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_placeholders_key_ids_and_principal_names() -> None:
    sc = load_scenario(ROOT / "examples/secure_inbox.yaml")
    inbox = next(k for k in sc.keys if k.name == "inbox-key")
    assert inbox.arn == "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-2222-4000-8000-000000000002"
    writer = sc.principal("service/ReportWriter")
    statements = writer.policies["write-reports"]["Statement"]
    assert next(s for s in statements if s["Sid"] == "CustomerKey")["Resource"] == inbox.arn
    assert sc.principal("ReportWriter") is writer is sc.principal("arn:aws:iam::111111111111:role/ReportWriter")
    assert sc.default_principal == "service/ReportWriter"
    assert sc.bucket("customer-secure-inbox").encryption == inbox.arn
    # Without an explicit id, a key's id is derived from account and name: stable across runs.
    other = load_scenario(ROOT / "fixtures/sandbox/protocols.yaml")
    again = load_scenario(ROOT / "fixtures/sandbox/protocols.yaml")
    assert [k.arn for k in other.keys] == [k.arn for k in again.keys]


def test_cli_serves_prints_env_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rolesmith.cli", "sandbox", "--scenario",
                             str(ROOT / "examples/object_ownership.yaml"), "--log-dir", str(tmp_path / "trail")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while len([x for x in lines if x.startswith("# ")]) < 2 or not lines[-1].startswith("export AWS_REGION"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line.rstrip("\n"))
        assert lines[0].startswith("rolesmith sandbox: http://127.0.0.1:")
        block = lines[lines.index("# partner/Uploader  (arn:aws:iam::444444444444:user/Uploader)") + 1:]
        env = dict(line[len("export "):].split("=", 1) for line in block[:5])
        assert env["AWS_ENDPOINT_URL"] == lines[0].split()[2]
        s3 = boto3.session.Session(region_name="us-east-1").client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        s3.put_object(Bucket="media-origin-bucket", Key="uploads/x", Body=b"x")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    # Stopping flushed the trail: the upload is in the caller's and the bucket owner's logs.
    assert sorted(p.name for p in (tmp_path / "trail" / "AWSLogs").iterdir()) == ["444444444444", "555555555555"]
    assert os.environ.get("AWS_ACCESS_KEY_ID") != env["AWS_ACCESS_KEY_ID"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_on_the_port_given(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rolesmith.cli", "sandbox", "--scenario",
                             str(ROOT / "examples/secure_inbox.yaml"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, proc.stderr.read() if proc.stderr else ""
        assert first.startswith(f"rolesmith sandbox: http://127.0.0.1:{port} (scenario ")
        # The first principal's block: "# NAME  (ARN)", then "export K=V" lines up to a blank line.
        arn, env, line = "", {}, ""
        while not (env and line == "\n"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("# ") and not arn:
                arn = line.rstrip("\n").rsplit("(", 1)[1].rstrip(")")
            elif line.startswith("export "):
                key, value = line[len("export "):].rstrip("\n").split("=", 1)
                env[key] = value
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        sts = boto3.session.Session(region_name="us-east-1").client(
            "sts", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_session_token=env.get("AWS_SESSION_TOKEN"))
        who = sts.get_caller_identity()["Arn"]  # that port answers, as the principal printed
        assert who == arn or who.startswith(arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_cli_port_in_use_is_a_one_line_error() -> None:
    scenario = ROOT / "examples/secure_inbox.yaml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["sandbox", "--scenario", str(scenario), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == (f"Error: {scenario}: cannot listen on 127.0.0.1:{port}: Address already in use; "
                             "pick another --port\n")
    # Nothing was left running: the same process can start a sandbox now.
    from rolesmith.sandbox import start_sandbox

    start_sandbox(scenario).stop()
