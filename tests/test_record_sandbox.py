"""`record --scenario`: the sandbox's CloudTrail is merged by default, with the calls AWS services made
for the run (KMS by S3 on the caller's key; EMR's service role under its own session)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.record import RecordOptions, record
from rolesmith.record.cloudtrail import roles_handed_over, service_session_keys
from rolesmith.record.session import _server_side, _venv_first

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
CASES = json.loads((ROOT / "fixtures" / "record" / "sandbox_examples.json").read_text())["cases"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _statements(policies: dict) -> set[tuple[str, str, str]]:
    out = set()
    for p in policies["identity_policies"]:
        for st in p["policy"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            for a in actions:
                out.add((p["principal"], a, json.dumps(st.get("Condition"), sort_keys=True)))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["scenario"] for c in CASES])
def test_sandbox_run_includes_indirect_uses(tmp_path, case):
    pytest.importorskip("rolesmith.sandbox.server", reason="rolesmith.sandbox not in this build")
    out = tmp_path / "out"
    result = record([sys.executable, str(EXAMPLES / f"{case['example']}.py")],
                    RecordOptions(out_dir=out, env=_env(), scenario=EXAMPLES / case["scenario"]))
    assert result.exit_code == 0
    got = _statements(json.loads((out / "policies.json").read_text()))
    for principal, action, condition in case["expect"]:
        assert (principal, action, json.dumps(condition, sort_keys=True)) in got
    assert sorted(result.indirect) == sorted(case["indirect"])
    text = (out / "recording.jsonl").read_text()
    assert "sessionToken" not in text
    # Every captured call met its server record, in whichever account's trail it is (MediaReader's in 555…).
    assert {json.loads(line)["additionalEventData"]["rolesmith"] for line in text.splitlines()} <= {
        "hook+cloudtrail", "cloudtrail"}
    # A service's AssumeRole only leads to its session's calls; it is not the workload's.
    assert not [line for line in text.splitlines() if json.loads(line)["userIdentity"].get("type") == "AWSService"]


def test_no_cloudtrail_keeps_the_capture_only_and_policies_go_to_stdout(tmp_path):
    pytest.importorskip("rolesmith.sandbox.server", reason="rolesmith.sandbox not in this build")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["record", "--scenario", str(EXAMPLES / "secure_inbox.yaml"), "--no-cloudtrail",
                                    "-o", str(out), "--", sys.executable, str(EXAMPLES / "secure_inbox.py")],
                             env=_env())
    assert res.exit_code == 0, res.output
    names = [json.loads(line)["eventName"] for line in (out / "recording.jsonl").read_text().splitlines()]
    assert names == ["PutObject", "CopyObject"]
    assert json.loads(res.stdout[res.stdout.index("{"):]) == json.loads((out / "policies.json").read_text())


# The AssumeRole a service makes, shaped as in shared/data/cloudtrail/otrf/ (token left out).
SERVICE_ASSUME = {
    "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "eventTime": "2026-01-01T00:00:05Z",
    "userIdentity": {"type": "AWSService", "invokedBy": "elasticmapreduce.amazonaws.com"},
    "requestParameters": {"roleArn": "arn:aws:iam::333333333333:role/EMRService", "roleSessionName": "ElasticMapReduceSession"},
    "responseElements": {"credentials": {"accessKeyId": "ASIASERVICESESSION1", "sessionToken": "secret"}},
    "resources": [{"ARN": "arn:aws:iam::333333333333:role/EMRService", "type": "AWS::IAM::Role"}],
    "eventID": "e-assume", "requestID": "r-assume",
}
RUN_JOB_FLOW = {
    "eventSource": "elasticmapreduce.amazonaws.com", "eventName": "RunJobFlow", "eventTime": "2026-01-01T00:00:04Z",
    "userIdentity": {"type": "AssumedRole", "accountId": "333333333333", "accessKeyId": "ASIAWORKLOAD0000001"},
    "requestParameters": {"serviceRole": "EMRService", "jobFlowRole": "EMR_EC2_DefaultRole", "name": "x"},
    "eventID": "e-run", "requestID": "r-run", "managementEvent": True,
}
RUN_INSTANCES = {
    "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "eventTime": "2026-01-01T00:00:06Z",
    "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIASERVICESESSION1",
                     "invokedBy": "elasticmapreduce.amazonaws.com"},
    "eventID": "e-ri", "requestID": "r-ri",
}


def test_roles_handed_over_qualifies_role_names_with_the_callers_account():
    assert roles_handed_over([RUN_JOB_FLOW, RUN_INSTANCES]) == [
        "arn:aws:iam::333333333333:role/EMRService", "arn:aws:iam::333333333333:role/EMR_EC2_DefaultRole"]


def test_service_session_keys_only_from_a_service_assuming_a_handed_over_role():
    assert service_session_keys([SERVICE_ASSUME], ["arn:aws:iam::333333333333:role/EMRService"]) == ["ASIASERVICESESSION1"]
    assert service_session_keys([SERVICE_ASSUME], ["arn:aws:iam::333333333333:role/Other"]) == []
    by_user = {**SERVICE_ASSUME, "userIdentity": {"type": "AssumedRole"}}
    assert service_session_keys([by_user], ["arn:aws:iam::333333333333:role/EMRService"]) == []


class _FakeCloudTrail:
    """LookupEvents over a fixed set of records; remembers each lookup attribute asked for."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def lookup_events(self, **kw):
        attr = kw["LookupAttributes"][0]
        self.asked.append((attr["AttributeKey"], attr["AttributeValue"]))
        key, value = attr["AttributeKey"], attr["AttributeValue"]
        hits = [r for r in self.records
                if (key == "AccessKeyId" and r["userIdentity"].get("accessKeyId") == value)
                or (key == "ResourceName" and any(x["ARN"] == value for x in r.get("resources") or []))]
        return {"Events": [{"CloudTrailEvent": json.dumps(r)} for r in hits]}


def test_server_side_follows_the_service_role_session_through_its_assume_role():
    fake = _FakeCloudTrail([RUN_JOB_FLOW, SERVICE_ASSUME, RUN_INSTANCES])
    client = {**RUN_JOB_FLOW, "additionalEventData": {"rolesmith": "hook"}}
    opts = RecordOptions(sleep=lambda s: None, clock=lambda: 1767225600.0)
    merged = _server_side([client], 1767225600.0, 1767225610.0, opts, lambda svc, env: fake, {}, 0.0)
    assert fake.asked == [("AccessKeyId", "ASIAWORKLOAD0000001"),
                          ("ResourceName", "arn:aws:iam::333333333333:role/EMRService"),
                          ("ResourceName", "arn:aws:iam::333333333333:role/EMR_EC2_DefaultRole"),
                          ("AccessKeyId", "ASIASERVICESESSION1")]
    assert [r["eventName"] for r in merged] == ["RunJobFlow", "RunInstances"]  # the AssumeRole only led there


def test_an_unactivated_venv_comes_first_on_the_childs_path(monkeypatch):
    monkeypatch.setattr(sys, "base_prefix", "/not/this/venv")
    bindir = os.path.dirname(sys.executable)
    env = _venv_first({"PATH": f"/usr/bin{os.pathsep}{bindir}"})
    assert env["PATH"].split(os.pathsep) == [bindir, "/usr/bin"]
    activated = {"PATH": "/usr/bin", "VIRTUAL_ENV": "/elsewhere"}
    assert _venv_first(dict(activated)) == activated


def test_sandbox_without_a_scenario_runs_as_the_default_user_and_merges_its_trail(tmp_path):
    pytest.importorskip("rolesmith.sandbox.server", reason="rolesmith.sandbox not in this build")
    out = tmp_path / "out"
    result = record([sys.executable, str(ROOT / "fixtures" / "record" / "workload_boto3.py")],
                    RecordOptions(out_dir=out, env=_env(), sandbox=True))
    assert result.exit_code == 0
    records = [json.loads(line) for line in (out / "recording.jsonl").read_text().splitlines()]
    assert [r["eventName"] for r in records] == ["CreateBucket", "PutObject", "GetObject", "DeleteObject"]
    # The packaged default scenario's user, and every call met in the sandbox's CloudTrail.
    assert result.principals == ("arn:aws:iam::123456789012:user/workload",)
    assert {r["additionalEventData"]["rolesmith"] for r in records} == {"hook+cloudtrail"}
