"""``rolesmith simulate`` and its library twin, over the example policies directory
fixtures/policies/secure-inbox and the JSONL request files in fixtures/evaluator/requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.evaluator import Request, load_policy_dir
from rolesmith.evaluator.policydir import PolicyDirError
from rolesmith.simulate import SimulateError, parse_context, simulate, simulate_jsonl, simulate_requests

ROOT = Path(__file__).parent.parent
INBOX = ROOT / "fixtures" / "policies" / "secure-inbox"
REQUESTS = ROOT / "fixtures" / "evaluator" / "requests"
UPLOADER = "arn:aws:sts::111122223333:assumed-role/uploader/run-1"
KEY = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OBJ = "arn:aws:s3:::secure-inbox/incoming/a.csv"
TLS = "aws:SecureTransport=true"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["simulate", *args], terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("principal,action,resource,context,expected", [
    # Cross-account: identity (+ boundary) in 111122223333 and the bucket policy in 444455556666 both allow.
    (UPLOADER, "s3:PutObject", OBJ, [TLS, "s3:x-amz-acl=bucket-owner-full-control"],
     ("Allowed", "resource", ["UploaderPutsWithOwnerControl", "PutInbox", None])),
    # The bucket policy's ACL condition fails: no resource-side allow.
    (UPLOADER, "s3:PutObject", OBJ, [TLS], ("ImplicitlyDenied", "resource", [])),
    # RCP EnforceTLS (BoolIfExists: an absent aws:SecureTransport counts as false).
    (UPLOADER, "s3:PutObject", OBJ, ["s3:x-amz-acl=bucket-owner-full-control"], ("ExplicitlyDenied", "rcp", ["EnforceTLS"])),
    (UPLOADER, "kms:GenerateDataKey", KEY, [TLS, "kms:ViaService=s3.us-east-1.amazonaws.com"],
     ("Allowed", "key-policy", ["UploaderViaS3", "UseInboxKey", None])),
    # Without kms:ViaService neither the caller's identity statement nor the key policy applies; the
    # caller's side is reported first.
    (UPLOADER, "kms:GenerateDataKey", KEY, [TLS], ("ImplicitlyDenied", "identity", [])),
    (UPLOADER, "sts:AssumeRole", "arn:aws:iam::444455556666:role/reader", [],
     ("Allowed", "trust-policy", ["UploaderMayAssume", "AssumeReader", None])),
    # SCP deny on the bucket; the reader's session policy would also refuse.
    ("arn:aws:sts::444455556666:assumed-role/reader/r", "s3:DeleteObject", OBJ, [TLS], ("ExplicitlyDenied", "scp", ["NoDeleteInbox"])),
    # The session policy caps the reader's role to reads.
    ("arn:aws:sts::444455556666:assumed-role/reader/r", "s3:GetObject", OBJ, [TLS], ("Allowed", "identity", ["ReadInbox", None])),
    # Group policies apply to the user listing the group in principals.yaml.
    ("arn:aws:iam::444455556666:user/audit-user", "s3:ListBucket", "arn:aws:s3:::secure-inbox", [TLS], ("Allowed", "identity", [None])),
])
def test_simulate_against_policy_dir(principal: str, action: str, resource: str, context: list[str],
                                     expected: tuple[str, str, list[str | None]]) -> None:
    answer = simulate(principal=principal, action=action, resource=resource, context=context, policies_dir=INBOX)
    sids = [s["sid"] for s in answer["statements"]]
    assert (answer["decision"], answer["layer"], sids) == expected


def test_policy_store_layout() -> None:
    store = load_policy_dir(INBOX)
    req = Request(principal=UPLOADER, principal_account="111122223333", action="s3:PutObject", resource=OBJ,
                  resource_account="444455556666")
    pol = store.policies_for(req)
    assert [p.name for p in pol.identity] == ["identity/uploader/put-inbox"]
    assert pol.boundary is not None and pol.boundary.name == "boundaries/uploader"
    assert pol.session is None
    assert [[p.name for p in level] for level in pol.scps] == [["scps/0-full-access"], ["scps/1-workloads"]]
    assert [[p.name for p in level] for level in pol.rcps] == [["rcps/0/secure-transport"]]
    assert pol.resource is not None and pol.resource.name == "resource/s3/secure-inbox"
    assert pol.resource_kind == "s3-bucket"
    assert store.account_of(OBJ) == "444455556666"
    assert store.account_of(KEY) == "444455556666"
    # An account marked outside the organization gets no SCPs.
    outsider = store.policies_for(Request(principal="arn:aws:iam::999988887777:role/x", principal_account="999988887777",
                                          action="s3:GetObject", resource=OBJ, resource_account="444455556666"))
    assert outsider.scps == () and outsider.rcps != ()


def test_simulate_jsonl_with_inline_override() -> None:
    answers = list(simulate_jsonl(REQUESTS / "secure_inbox.jsonl", policies_dir=INBOX))
    assert [(a["decision"], a["layer"]) for a in answers] == [
        ("Allowed", "resource"),
        ("ImplicitlyDenied", "resource"),
        # inline "resource" replaces the bucket policy from the directory: an account grant suffices
        ("Allowed", "resource"),
        # inline SCPs that do not allow SQS
        ("ImplicitlyDenied", "scp"),
    ]


def test_simulate_requests_library_twin() -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    deny = {"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                                                   {"Sid": "B", "Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}]}
    reqs = [{"principal": "arn:aws:iam::111122223333:role/app", "action": a, "resource": "arn:aws:s3:::b/k",
             "policies": {"identity": [doc], "boundary": deny}} for a in ("s3:GetObject", "s3:DeleteObject")]
    out = list(simulate_requests(reqs))
    assert out[0]["decision"] == "Allowed"
    assert out[1] == {"decision": "ExplicitlyDenied", "layer": "boundary",
                      "statements": [{"layer": "boundary", "policy": "boundary", "sid": "B", "index": 1, "effect": "Deny"}],
                      "layers": {"scp": "absent", "rcp": "absent", "resource": "absent", "identity": "allow",
                                 "boundary": "deny", "session": "absent"}}
    with pytest.raises(SimulateError) as err:
        list(simulate_requests([{"principal": "p", "action": "s3:GetObject"}], source="mine"))
    assert str(err.value) == 'mine: request 1: missing "resource" (a non-empty string)'


def test_parse_context_multivalued() -> None:
    assert parse_context(["aws:CalledVia=athena.amazonaws.com", "aws:CalledVia=glue.amazonaws.com", "a=b=c"]) == {
        "aws:CalledVia": ["athena.amazonaws.com", "glue.amazonaws.com"], "a": "b=c"}


def test_cli_single_request() -> None:
    code, out, _ = run("--policies", str(INBOX), "--principal", UPLOADER, "--action", "sts:AssumeRole",
                       "--resource", "arn:aws:iam::444455556666:role/reader")
    assert code == 0
    answer = json.loads(out)
    assert answer["decision"] == "Allowed" and answer["layer"] == "trust-policy"
    assert out.count("\n") == 1


def test_cli_requests_file() -> None:
    code, out, _ = run("--policies", str(INBOX), "--requests", str(REQUESTS / "secure_inbox.jsonl"))
    assert code == 0
    assert [json.loads(line)["decision"] for line in out.splitlines()] == [
        "Allowed", "ImplicitlyDenied", "Allowed", "ImplicitlyDenied"]


@pytest.mark.parametrize("name,message", [
    ("bad_line.jsonl", "bad_line.jsonl: line 2: invalid JSON (Expecting value at column 90); "
                       "each line must be one JSON request object"),
    ("missing_action.jsonl", 'missing_action.jsonl: line 1: missing "action" (a non-empty string)'),
    ("bad_policy.jsonl", "bad_policy.jsonl: line 1: policy identity[0]: statement 0: unknown condition operator "
                         "'StringEqualz'; see https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html"),
])
def test_cli_bad_requests_file(name: str, message: str) -> None:
    code, out, err = run("--requests", str(REQUESTS / name))
    assert code == 2
    assert err == f"Error: {REQUESTS / name}: {message.split(': ', 1)[1]}\n"


def test_cli_usage_errors() -> None:
    code, _, err = run("--principal", UPLOADER, "--action", "s3:GetObject")
    assert code == 2 and "Error: give --principal, --action and --resource (or --requests FILE)" in err
    code, _, err = run("--requests", str(REQUESTS / "secure_inbox.jsonl"), "--principal", UPLOADER)
    assert code == 2 and "Error: use either --requests FILE or --principal/--action/--resource, not both" in err
    code, _, err = run("--principal", UPLOADER, "--action", "s3:GetObject", "--resource", OBJ, "--context", "novalue")
    assert code == 2
    assert err == "Error: --context 'novalue': expected KEY=VALUE, e.g. aws:SourceIp=10.0.0.1\n"


def test_cli_bad_policy_file(tmp_path: Path) -> None:
    d = tmp_path / "pol"
    shutil.copytree(INBOX, d)
    (d / "identity" / "uploader" / "put-inbox.json").write_text('{"Version": "2012-10-17",\n "Statement": [,]}')
    code, _, err = run("--policies", str(d), "--principal", UPLOADER, "--action", "s3:GetObject", "--resource", OBJ)
    assert code == 2
    assert err == "Error: pol/identity/uploader/put-inbox.json: invalid JSON at line 2: Expecting value; fix the file\n"


def test_policy_dir_errors(tmp_path: Path) -> None:
    (tmp_path / "scps").mkdir()
    (tmp_path / "scps" / "root.json").write_text('{"Statement": []}')
    with pytest.raises(PolicyDirError) as err:
        load_policy_dir(tmp_path)
    assert str(err.value) == "scps/root.json: name it scps/<level>-<name>.json or scps/<level>/<name>.json (level 0 = root)"
    with pytest.raises(PolicyDirError) as err:
        load_policy_dir(tmp_path / "missing")
    assert str(err.value) == f"{tmp_path / 'missing'}: not a directory; pass --policies DIR with the documented layout"


def test_policy_dir_accepts_iam_api_wrappers(tmp_path: Path) -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}
    (tmp_path / "identity" / "worker").mkdir(parents=True)
    (tmp_path / "identity" / "worker" / "managed.json").write_text(json.dumps({"PolicyVersion": {"Document": doc}}))
    (tmp_path / "identity" / "worker" / "inline.json").write_text(json.dumps({"PolicyName": "x", "PolicyDocument": doc}))
    (tmp_path / "principals.yaml").write_text("worker: arn:aws:iam::111122223333:role/service/worker-role\n")
    store = load_policy_dir(tmp_path)
    # The assumed-role session of worker-role maps to the principals.yaml entry "worker".
    req = Request(principal="arn:aws:sts::111122223333:assumed-role/worker-role/s", principal_account="111122223333",
                  action="sqs:SendMessage", resource="arn:aws:sqs:us-east-1:111122223333:q")
    assert [p.name for p in store.policies_for(req).identity] == ["identity/worker/inline", "identity/worker/managed"]
    answer = simulate(principal=req.principal, action=req.action, resource=req.resource, policies_dir=tmp_path)
    assert answer["decision"] == "Allowed"
