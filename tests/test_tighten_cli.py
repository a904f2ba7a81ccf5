"""``rolesmith tighten`` on the command line: exit codes, outputs, exact error text, cfn-lint, apply/rollback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from rolesmith.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "tighten"
ROLES = FIX / "roles"
TRAILS = {
    "EMR_DefaultRole": "emr_service_role.jsonl",
    "EMR_LegacyServiceRole": "emr_legacy_role.jsonl",
    "data-pipeline": "s3_pipeline.jsonl",
    "order-worker": "admin_worker.jsonl",
}


def _run(*args: str):
    return CliRunner().invoke(main, ["tighten", *args])  # click >= 8.2: stdout and stderr kept apart


def _offline(role: str, *extra: str):
    return _run(role, "--trail", str(FIX / "trails" / TRAILS[role]), "--current-policies", str(ROLES), *extra)


def test_text_report() -> None:
    result = _offline("data-pipeline")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Role arn:aws:iam::111122223333:role/data-pipeline\n")
    assert "  policy    AmazonS3FullAccess (managed, v2)\n" in out
    assert " of 180 actions used" in out
    assert "Data-access grants on every resource (2 of 2 go away):" in out
    assert "Verified with the evaluator: " in out


def test_json_report_schema() -> None:
    result = _offline("order-worker", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report) == ["role", "source", "current_policies", "boundary", "usage_sources", "summary", "services",
                            "escalation_grants", "data_access_grants", "replacement", "verification", "findings"]
    assert report["summary"]["actions_granted"] == sum(s["actions_granted"] for s in report["services"])
    dynamo = next(s for s in report["services"] if s["service"] == "dynamodb")
    assert dynamo["used"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert {"action": "iam:PassRole", "resources": ["*"], "policy": "AdministratorAccess", "status": "removed"}.items() \
        <= next(g for g in report["escalation_grants"] if g["action"] == "iam:PassRole").items()
    assert report["verification"]["ok"] is True
    assert list(report["replacement"]) == ["identity_policies", "resource_policies", "trust_policies", "findings"]
    assert result.stderr.startswith("rolesmith: arn:aws:iam::111122223333:role/order-worker: ")


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "cfn-lint").exists() and shutil.which("cfn-lint") is None,
                    reason="cfn-lint not installed")
def test_cloudformation_output_passes_cfn_lint(tmp_path: Path) -> None:
    files = []
    for role in TRAILS:
        fmt = "cloudformation-json" if role == "order-worker" else "cloudformation"
        result = _offline(role, "--format", fmt, "-o", str(tmp_path / role))
        assert result.exit_code == 0, result.output
        files += sorted((tmp_path / role).iterdir())
    assert len(files) == 4
    text = (tmp_path / "EMR_DefaultRole" / files[0].name).read_text()
    assert "aws:RequestTag/for-use-with-amazon-emr-managed-policies" in text
    lint = ROOT / ".venv" / "bin" / "cfn-lint"
    proc = subprocess.run([str(lint) if lint.exists() else "cfn-lint", *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_output_dir_with_text_report_writes_json_policies(tmp_path: Path) -> None:
    result = _offline("data-pipeline", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written and all(name.endswith(".json") for name in written)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "--trail", "{trail}", "--current-policies", "{roles}"],
         "Error: role nobody: {roles}/identity/nobody/ does not exist; check the role name or add its policy files there"),
        (["broken", "--trail", "{trail}", "--current-policies", "{bad}"],
         "Error: bad/identity/broken/inline.json: invalid JSON at line 3: Expecting ',' delimiter; fix the file"),
        (["data-pipeline", "--current-policies", "{roles}"],
         "Error: data-pipeline: no usage source; pass --trail PATH, --cloudtrail, --cloudtrail-bucket BUCKET or --access-advisor"),
        (["data-pipeline", "--trail", "{trail}", "--current-policies", "{roles}", "--apply"],
         "Error: --apply writes to IAM: drop --current-policies so the role is read from IAM"),
        (["data-pipeline", "--apply", "--rollback", "{trail}"], "Error: --apply and --rollback: pass one of them"),
        (["arn:aws:s3:::bucket", "--trail", "{trail}", "--current-policies", "{roles}"],
         "Error: arn:aws:s3:::bucket: not a role ARN; pass arn:aws:iam::ACCOUNT:role/NAME or the role name"),
        (["data-pipeline", "--rollback", "{trail}"],
         "Error: {trail}: not valid JSON; pass the backup file --apply wrote, unedited"),
        (["data-pipeline", "--rollback", "{roles}/principals.yaml"],
         "Error: {roles}/principals.yaml: not valid JSON; pass the backup file --apply wrote, unedited"),
        # Checked before anything is read: botocore's own check is two lines and exit 1.
        *((["data-pipeline", "--cloudtrail-bucket", bucket, "--current-policies", "{roles}"],
          f"Error: --cloudtrail-bucket '{bucket}': '{name}' is not an S3 bucket name; pass BUCKET[/PREFIX] or "
          "s3://BUCKET[/PREFIX] (letters, digits, '.', '-', '_')")
          for bucket, name in [("my bucket", "my bucket"), ("s3://", ""), ("https://logs/x", "https:"),
                               ("s3://-logs/AWSLogs", "-logs")]),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    values = {"trail": str(FIX / "trails" / "s3_pipeline.jsonl"), "roles": str(ROLES), "bad": str(FIX / "bad")}
    result = _run(*(a.format(**values) for a in args))
    assert result.exit_code == 2, result.output
    assert result.stderr == message.format(**values) + "\n"


_S3 = "identity/data-pipeline/AmazonS3FullAccess.json"
_STMT = "policy identity/data-pipeline/AmazonS3FullAccess"
_BAD_ROLE_DIR = [
    # The one-line PolicyError explain gives for the same files.
    (_S3, '{"Statement": "x"}', f"{_STMT}: Statement must be an object or a list of objects"),
    (_S3, '{"Statement": ["x"]}', f"{_STMT}: statement 0: a statement must be a JSON object"),
    (_S3, '{"Statement": [{"Effect": "Allow", "Action": 5, "Resource": "*"}]}',
     f"{_STMT}: statement 0: Action must be a string or a non-empty list of strings"),
    (_S3, '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": [1]}]}',
     f"{_STMT}: statement 0: Condition must be an object of operator -> {{key: values}}"),
    ("boundaries/data-pipeline.json", '{"Statement": [{"Effect": "Allow", "Action": 5, "Resource": "*"}]}',
     "policy boundaries/data-pipeline: statement 0: Action must be a string or a non-empty list of strings"),
    ("boundaries/data-pipeline.json", '{"Statement": "x"}',
     "policy boundaries/data-pipeline: Statement must be an object or a list of objects"),
    ("trust/data-pipeline.json", '{"Statement": "x"}', "policy trust/data-pipeline: Statement must be an object or a list of objects"),
    # The loader's errors, naming the file.
    (_S3, b"\x89PNG", f"roles/{_S3}: not UTF-8 text (byte 0x89 at offset 0); save it as a UTF-8 JSON policy file"),
    ("principals.yaml", "data-pipeline: garbage\n", "roles/principals.yaml: data-pipeline: the string 'garbage' is not an "
     "ARN; write 'data-pipeline: arn:aws:iam::ACCOUNT:role/NAME'"),
    ("principals.yaml", "data-pipeline: arn:aws:s3:::logs\n", "role data-pipeline: {dir}/principals.yaml gives "
     "'arn:aws:s3:::logs', not a role ARN; write 'data-pipeline: arn:aws:iam::ACCOUNT:role/data-pipeline' there or "
     "pass the role ARN"),
]


@pytest.mark.parametrize(("rel", "content", "message"), _BAD_ROLE_DIR,
                         ids=[f"{r}-{i}" for i, (r, _c, _m) in enumerate(_BAD_ROLE_DIR)])
def test_malformed_current_policies_are_one_line_exit_2(tmp_path: Path, rel: str, content: str | bytes, message: str) -> None:
    roles = tmp_path / "roles"
    shutil.copytree(ROLES, roles)
    target = roles / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    result = _run("data-pipeline", "--trail", str(FIX / "trails" / TRAILS["data-pipeline"]), "--current-policies", str(roles))
    assert (result.exit_code, result.stderr) == (2, f"Error: {message.replace('{dir}', str(roles))}\n")


def test_cloudtrail_without_a_region_says_how_to_set_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds"),
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    result = _run("data-pipeline", "--cloudtrail", "--current-policies", str(ROLES))
    assert (result.exit_code, result.stderr) == (
        2, "Error: --cloudtrail: no AWS region configured; set AWS_REGION (or AWS_DEFAULT_REGION, or region in the AWS "
           "profile)\n")


def test_malformed_trail_is_reported_by_the_ingest_stage(tmp_path: Path) -> None:
    trail = tmp_path / "t.jsonl"
    trail.write_text('{"eventVersion": "1.08", "eventSource": \n')
    result = _run("data-pipeline", "--trail", str(trail), "--current-policies", str(ROLES))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {trail}") and result.stderr.count("\n") == 1


def test_apply_then_rollback_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111122223333")
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    doc = json.loads((ROLES / "identity" / "data-pipeline" / "AmazonS3FullAccess.json").read_text())["PolicyVersion"]["Document"]
    trust = json.loads((ROLES / "trust" / "data-pipeline.json").read_text())
    with mock_aws():
        iam = boto3.client("iam")
        iam.create_role(RoleName="data-pipeline", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="data-pipeline", PolicyName="s3-everything", PolicyDocument=json.dumps(doc))
        backup = tmp_path / "backup.json"
        applied = _run("data-pipeline", "--trail", str(FIX / "trails" / "s3_pipeline.jsonl"), "--apply", "--backup", str(backup))
        assert applied.exit_code == 0, applied.output
        assert applied.stderr.splitlines() == [
            "iam:PutRolePolicy data-pipeline rolesmith-tightened",
            "iam:DeleteRolePolicy data-pipeline s3-everything",
            f"backup: {backup} (undo with: rolesmith tighten data-pipeline --rollback {backup})",
        ]
        assert applied.stdout.startswith("Role arn:aws:iam::111122223333:role/data-pipeline\n")
        assert iam.list_role_policies(RoleName="data-pipeline")["PolicyNames"] == ["rolesmith-tightened"]
        undone = _run("data-pipeline", "--rollback", str(backup))
        assert undone.exit_code == 0, undone.output
        assert undone.stdout == ("iam:PutRolePolicy data-pipeline s3-everything\n"
                                 "iam:DeleteRolePolicy data-pipeline rolesmith-tightened\n")
        assert iam.list_role_policies(RoleName="data-pipeline")["PolicyNames"] == ["s3-everything"]
        assert iam.get_role_policy(RoleName="data-pipeline", PolicyName="s3-everything")["PolicyDocument"] == doc
