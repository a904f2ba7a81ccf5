"""What the sandbox records is on disk as it is recorded, and a bad --log-dir fails at start.

Each record is appended to ``LOG_DIR/rolesmith-sandbox_…jsonl`` as it is made; the documented
gzipped log files under ``AWSLogs/`` are written in batches and at stop, when the JSON Lines file
is removed. A sandbox killed with SIGKILL or SIGHUP keeps every record it made.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.sandbox import start_sandbox
from rolesmith.sandbox.cloudtrail import TrailWriteError
from rolesmith.trail import read_trail

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ("accounts: {a: {id: '111111111111', users: {u: {policies: {p: {Version: '2012-10-17', "
            "Statement: [{Effect: Allow, Action: '*', Resource: '*'}]}}}}, buckets: {disk-bucket: {}}}}")
CFG = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    return path


def _s3(env: dict[str, str]) -> Any:
    return boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], config=CFG,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _puts(log_dir: Path) -> list[str]:
    return sorted(e.request["key"] for e in read_trail([log_dir]) if e.name == "PutObject")


def _live(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("rolesmith-sandbox_*.jsonl"))


def test_each_record_is_on_disk_as_it_is_made(tmp_path: Path) -> None:
    log_dir = tmp_path / "trail"
    with start_sandbox(_scenario(tmp_path), log_dir=log_dir) as sb:
        s3 = _s3(sb.env_for(sb.default_principal))
        s3.put_object(Bucket="disk-bucket", Key="one", Body=b"1")
        # Before any log file is written, the record is in the JSON Lines file, one record a line.
        assert not (log_dir / "AWSLogs").exists()
        [live] = _live(log_dir)
        assert [json.loads(line)["eventName"] for line in live.read_text().splitlines()] == ["PutObject"]
        assert _puts(log_dir) == ["one"]
        # A batch of log files empties it: each record is in exactly one file.
        sb.flush()
        assert live.read_text() == ""
        s3.put_object(Bucket="disk-bucket", Key="two", Body=b"2")
        assert _puts(log_dir) == ["one", "two"]
    # Stopping writes the rest as log files and removes the JSON Lines file.
    assert _live(log_dir) == []
    files = sorted((log_dir / "AWSLogs").rglob("*.json.gz"))
    records = [r for f in files for r in json.loads(gzip.decompress(f.read_bytes()))["Records"]]
    assert sorted(r["requestParameters"]["key"] for r in records if r["eventName"] == "PutObject") == ["one", "two"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killed_sandbox_keeps_its_records(sig: signal.Signals, tmp_path: Path) -> None:
    log_dir = tmp_path / "trail"
    proc = subprocess.Popen([sys.executable, "-m", "rolesmith.cli", "sandbox", "--scenario", str(_scenario(tmp_path)),
                             "--log-dir", str(log_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        env: dict[str, str] = {}
        while "AWS_REGION" not in env:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("export "):
                key, value = line[len("export "):].rstrip("\n").split("=", 1)
                env[key] = value
        _s3(env).put_object(Bucket="disk-bucket", Key="before-the-kill", Body=b"x")
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=30)
    # SIGKILL cannot be caught: the record survives in the JSON Lines file. SIGHUP (a closed terminal)
    # stops the sandbox like SIGTERM: the log files are written.
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 0)
    assert _puts(log_dir) == ["before-the-kill"]
    assert bool(_live(log_dir)) is (sig == signal.SIGKILL)


def test_log_dir_under_a_file_fails_at_start(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    scenario = _scenario(tmp_path)
    result = CliRunner().invoke(main, ["sandbox", "--scenario", str(scenario), "--log-dir", str(afile / "sub")])
    assert result.exit_code == 2
    assert result.output == (f"Error: {afile / 'sub'}: cannot write CloudTrail log files there (Not a directory); "
                             "pass a directory you can write to as --log-dir\n")
    # Nothing was left running: the same process can start a sandbox now.
    start_sandbox(scenario).stop()


def test_reset_to_a_bad_log_dir_keeps_the_sandbox(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    log_dir = tmp_path / "trail"
    with start_sandbox(_scenario(tmp_path), log_dir=log_dir) as sb:
        with pytest.raises(TrailWriteError) as info:
            sb.reset(log_dir=afile / "sub")
        assert info.value.exit_code == 2
        assert sb.log_dir == log_dir
        _s3(sb.env_for(sb.default_principal)).put_object(Bucket="disk-bucket", Key="after", Body=b"x")
    assert _puts(log_dir) == ["after"]


def test_the_sandbox_request_log_hides_a_presigned_urls_token_and_signature(caplog):
    from rolesmith.sandbox.server import _Handler

    handler = object.__new__(_Handler)
    token = "IQoJb3JpZ2luX2VjEXAMPLEpresignedToken"
    with caplog.at_level("DEBUG", logger="rolesmith.sandbox"):
        handler.log_message('"%s" %s %s', f"GET /b/k?X-Amz-Security-Token={token}&X-Amz-Signature=ab12 HTTP/1.1",
                            "200", "-")
    assert token not in caplog.text and "ab12" not in caplog.text
    assert "X-Amz-Security-Token=HIDDEN_DUE_TO_SECURITY_REASONS" in caplog.text
