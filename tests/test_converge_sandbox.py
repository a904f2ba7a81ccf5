"""converge on the rolesmith sandbox: the examples converge from an empty policy in fewer runs than the
permissions they were missing, to policies no wider than `record` gives under the broad policies; with
account B closed, the secure inbox stops with the statements for B's owner."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.converge import ConvergeOptions, converge

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _grants(policy_set, principal: str) -> set[tuple[str, str, str]]:
    """(action, resource, conditions) triples an identity policy grants."""
    out = set()
    for p in policy_set.identity_policies:
        if p.principal != principal:
            continue
        for st in p.policy["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out |= {(a.lower(), r, json.dumps(st.get("Condition"), sort_keys=True)) for a in actions for r in resources}
    return out


def _broad_record(example: str, principal: str, tmp_path: Path):
    """The policies `rolesmith build` makes of a broad-policy run's CloudTrail — what `record` builds
    from the sandbox's trail, which also holds the calls services made for the workload (S3's KMS calls)."""
    import subprocess

    from rolesmith.policies import build_policies
    from rolesmith.policies.model import BuildOptions
    from rolesmith.sandbox import Sandbox

    with Sandbox(EXAMPLES / f"{example}.broad.yaml") as sb:
        env = dict(os.environ)
        env.update(sb.env_for(principal))
        child = subprocess.run([sys.executable, str(EXAMPLES / f"{example}.py")], env=env, capture_output=True)
        trail = tmp_path / "broad.jsonl"
        trail.write_text("".join(json.dumps(r) + "\n" for r in sb.records()))
    assert child.returncode == 0, child.stderr
    return build_policies([trail], BuildOptions()).policies


# (example, principal, its ARN, whether the indirect-use rules can save runs): object_ownership's two
# calls (PutObject, then AssumeRole) imply nothing of each other, so it takes one run per permission.
CASES = [("secure_inbox", "service/ReportWriter", "arn:aws:iam::111111111111:role/ReportWriter", True),
         ("object_ownership", "partner/Uploader", "arn:aws:iam::444444444444:user/Uploader", False),
         ("emr_launch", "data/Launcher", "arn:aws:iam::333333333333:role/Launcher", True)]


@pytest.mark.slow
@pytest.mark.parametrize("example,principal,arn,rules_help", CASES, ids=[c[0] for c in CASES])
def test_example_converges_from_empty(example, principal, arn, rules_help, tmp_path):
    if not (EXAMPLES / f"{example}.yaml").exists():
        pytest.skip(f"examples/{example}.yaml not present")
    result = converge([sys.executable, str(EXAMPLES / f"{example}.py")],
                      ConvergeOptions(role=principal, sandbox=True, scenario=EXAMPLES / f"{example}.yaml",
                                      out_dir=tmp_path / "cv"))
    assert result.stopped_reason == "converged", result.message
    assert result.runs[-1].denials == () and result.runs[-1].exit_code == 0
    granted = _grants(result.policies, arn)
    # Each permission granted from empty would have been one denied run for a loop that fixes only
    # what AWS names; the indirect-use rules grant several per run.
    missing = len({(a, r) for a, r, _ in granted})
    if rules_help:
        assert len(result.runs) < missing, [r.to_dict() for r in result.runs]
    else:
        assert len(result.runs) <= missing + 1
    broad = _grants(_broad_record(example, principal, tmp_path), arn)
    assert granted and granted <= broad
    assert (tmp_path / "cv" / "policies.json").exists()
    assert (tmp_path / "cv" / "run-1" / "recording.jsonl").exists()


CLOSED = ROOT / "fixtures" / "converge" / "secure_inbox_closed.yaml"
ROLE = "arn:aws:iam::111111111111:role/ReportWriter"
KEY = "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-2222-4000-8000-000000000002"


@pytest.mark.slow
def test_secure_inbox_hands_account_b_its_statements(tmp_path):
    source = CLOSED.read_text()
    runner = CliRunner()
    res = runner.invoke(main, ["converge", "--scenario", str(CLOSED), "--role", "service/ReportWriter",
                               "--format", "json", "-o", str(tmp_path), "--", sys.executable,
                               str(EXAMPLES / "secure_inbox.py")])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["stopped_reason"] == "resource-owner"
    handoff = {(h["layer"], h["target"]): h["statements"] for h in report["handoff"]}
    assert handoff == {
        ("resource", "arn:aws:s3:::customer-secure-inbox"): [
            {"Sid": "AllowS3PutObject", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::customer-secure-inbox/from-acme/2026-11.csv"}],
        ("key-policy", KEY): [
            {"Sid": "AllowKmsGenerateDataKey", "Effect": "Allow", "Principal": {"AWS": ROLE},
             "Action": "kms:GenerateDataKey", "Resource": KEY,
             "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}],
    }
    assert all(not f["applied"] for f in report["handoff"])
    assert [r["run"] for r in report["runs"]] == [1, 2]
    assert report["runs"][0]["reasons"] and report["runs"][0]["fixes"]
    assert CLOSED.read_text() == source  # the user's scenario is never modified


def test_cli_errors():
    runner = CliRunner()
    res = runner.invoke(main, ["converge", "--role", "nobody", "--scenario", str(CLOSED), "--",
                               sys.executable, "-c", "pass"])
    assert res.exit_code == 2
    assert res.output.startswith(f"Error: --role nobody: {CLOSED}: principal 'nobody' is not declared; use one of:")
    res = runner.invoke(main, ["converge", "--role", "r", "--sandbox", "--", "true"])
    assert res.exit_code == 2
    assert res.output == "Error: --sandbox needs --scenario FILE (a sandbox scenario YAML, see `rolesmith sandbox`)\n"
    res = runner.invoke(main, ["converge", "--role", "r", "--start-from", "recording", "--", "true"])
    assert res.exit_code == 2
    assert res.output == ("Error: --start-from recording needs the recording: add --recording FILE, e.g."
                          " `--recording out/recording.jsonl`\n")


def test_a_command_that_crashes_before_any_call_stops_with_error_not_a_principal_complaint(tmp_path):
    # The run made no call as the role, so there is nothing to build: the crash is the reason to stop.
    result = converge([sys.executable, "-c", "import os; os._exit(3)"],
                      ConvergeOptions(role="service/ReportWriter", scenario=CLOSED, out_dir=tmp_path / "out"))
    assert result.stopped_reason == "error"
    assert result.message == ("run 1: the command exited with code 3 without a denied call; fix the command, then"
                              " converge again")
    assert result.policies.identity_policies == () and result.outputs == ()


def test_a_recording_without_the_role_is_named_as_such(tmp_path):
    recording = tmp_path / "other.jsonl"
    recording.write_text((ROOT / "fixtures" / "trails" / "lambda_dynamodb.jsonl").read_text())
    res = CliRunner().invoke(main, ["converge", "--role", "service/ReportWriter", "--scenario", str(CLOSED),
                                    "--start-from", "recording", "--recording", str(recording), "-o",
                                    str(tmp_path / "out"), "--", "true"])
    assert res.exit_code == 2
    assert res.output.startswith(f"Error: --recording {recording}: no call by arn:aws:iam::")
    assert res.output.rstrip().endswith("in it; fix: record the workload as that role, or start from --start-from"
                                        " current")


@pytest.mark.slow
def test_secure_inbox_with_resource_policies_applied_keeps_key_administration(tmp_path):
    import yaml

    result = converge([sys.executable, str(EXAMPLES / "secure_inbox.py")],
                      ConvergeOptions(role="service/ReportWriter", scenario=CLOSED, apply_resource_policies=True,
                                      out_dir=tmp_path))
    assert result.stopped_reason == "converged", result.message
    applied = {(f.layer, f.target) for r in result.runs for f in r.fixes if f.applied}
    assert {("resource", "arn:aws:s3:::customer-secure-inbox"), ("key-policy", KEY)} <= applied
    copy = yaml.safe_load((tmp_path / "scenario.yaml").read_text())
    key_policy = copy["accounts"]["customer"]["keys"]["inbox-key"]["policy"]["Statement"]
    original = yaml.safe_load(CLOSED.read_text())["accounts"]["customer"]["keys"]["inbox-key"]["policy"]["Statement"]
    assert key_policy[0] == original[0] and original[0]["Sid"] == "KeyAdministration"
    assert any(s.get("Principal") == {"AWS": ROLE} for s in key_policy[1:])
    # The final policy set carries B's side too, as `rolesmith build` renders it.
    kinds = {p.kind for p in result.policies.resource_policies}
    assert {"s3-bucket", "kms-key"} <= kinds
