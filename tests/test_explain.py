"""``rolesmith explain``: one fixture denial per reason code, message parsing, and the CLI.

Each case under fixtures/explain/cases/<name>/ holds trail.jsonl (the denied CloudTrail record and the
records around it), an optional policies/ directory (the ``--policies DIR`` layout) and expect.json
(reason, basis, layer, hint, deciding statements, fixes, missing). README.md in each case says what it
shows and where the behaviour is documented. Message formats: "Troubleshoot access denied error
messages", https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.explain import REASONS, explain_paths
from rolesmith.explain.messages import parse_message
from rolesmith.explain.render import render_json, render_text

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "explain"
CASES = sorted(p for p in (FIX / "cases").iterdir() if p.is_dir())
MESSAGES = [json.loads(line) for line in (FIX / "messages.jsonl").read_text().splitlines() if line.strip()]


def _run(case: Path):
    policies = case / "policies"
    return explain_paths([case / "trail.jsonl"], policies_dir=policies if policies.is_dir() else None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    expect = json.loads((case / "expect.json").read_text())
    expect = expect if isinstance(expect, list) else [expect]
    result = _run(case)
    assert len(result.explanations) == len(expect)
    for want, explanation in zip(expect, result.explanations):
        got = explanation.to_dict()
        got["origin"] = got["origin"].rsplit("/", 1)[-1]  # "trail.jsonl#N": which record was explained
        assert {k: got[k] for k in want} == want


def test_every_required_reason_code_has_a_fixture() -> None:
    required = {
        "MISSING_IDENTITY_ALLOW", "MISSING_RESOURCE_ALLOW", "MISSING_BOTH", "MISSING_KEY_POLICY_ALLOW",
        "INDIRECT_KMS", "EXPLICIT_DENY_IDENTITY", "EXPLICIT_DENY_RESOURCE", "EXPLICIT_DENY_SCP",
        "EXPLICIT_DENY_RCP", "EXPLICIT_DENY_BOUNDARY", "EXPLICIT_DENY_SESSION", "MISSING_SCP_ALLOW",
        "MISSING_BOUNDARY_ALLOW", "MISSING_SESSION_ALLOW", "TRUST_POLICY", "OBJECT_OWNERSHIP", "UNKNOWN",
    }
    covered = set()
    for c in CASES:
        expect = json.loads((c / "expect.json").read_text())
        covered |= {e["reason"] for e in (expect if isinstance(expect, list) else [expect])}
    assert required <= covered
    assert required <= set(REASONS)


def test_secure_inbox_fix_names_the_key_and_both_policies() -> None:
    # Cross-account SSE-KMS: the key policy and the caller's IAM policy must both allow
    # (shared/reference/s3_kms/kms-dg__key-policy-modifying-external-accounts.md), and S3 reaches KMS
    # through kms:ViaService s3.<region>.amazonaws.com (kms-dg__conditions-kms.md).
    e = _run(FIX / "cases" / "indirect_kms_secure_inbox").explanations[0]
    key = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert [(f.layer, f.target) for f in e.fixes] == [("key-policy", key), ("identity", "arn:aws:iam::111122223333:role/writer")]
    for f in e.fixes:
        (st,) = f.document["Statement"]
        assert st["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
        assert st["Action"] == "kms:GenerateDataKey" and st["Resource"] == key


def test_emr_runinstances_is_scoped_by_security_group_without_tag_condition() -> None:
    e = _run(FIX / "cases" / "emr_runinstances_tag_condition").explanations[0]
    assert e.hint == "TAGS_APPLIED_AFTER_CREATE"
    doc = e.fixes[0].document
    assert all("Condition" not in st for st in doc["Statement"])
    assert doc["Statement"][0]["Resource"] == "arn:aws:ec2:us-east-1:012345678990:security-group/sg-01456788"


def test_emr_runinstances_without_policies_still_scopes_from_the_trail() -> None:
    e = explain_paths([FIX / "cases" / "emr_runinstances_tag_condition" / "trail.jsonl"]).explanations[0]
    assert (e.reason, e.basis, e.hint) == ("MISSING_IDENTITY_ALLOW", "trail", "TAGS_APPLIED_AFTER_CREATE")
    assert "security-group/sg-01456788" in json.dumps(e.fixes[0].document)


def test_createqueue_without_policies_is_unknown_but_proposes_the_prefix() -> None:
    e = explain_paths([FIX / "cases" / "emr_createqueue_prefix" / "trail.jsonl"]).explanations[0]
    assert e.reason == "UNKNOWN" and e.missing and e.hint == "GENERATED_NAME"
    assert e.fixes[0].document["Statement"][0]["Resource"] == "arn:aws:sqs:us-east-1:012345678990:AWS-ElasticMapReduce-*"


def test_trust_policy_without_policies_proposes_trust_and_identity() -> None:
    e = explain_paths([FIX / "cases" / "trust_policy" / "trail.jsonl"]).explanations[0]
    assert e.reason == "TRUST_POLICY" and e.basis == "message"
    assert [f.layer for f in e.fixes] == ["trust-policy", "identity"]


def test_secure_inbox_without_policies_reads_the_request_key() -> None:
    # S3 says only "Access Denied"; the SSE-KMS key id in the request names the key behind it.
    e = explain_paths([FIX / "cases" / "indirect_kms_secure_inbox" / "trail.jsonl"]).explanations[0]
    assert e.reason == "INDIRECT_KMS" and len(e.fixes) == 2


@pytest.mark.parametrize("case", MESSAGES, ids=[m["cite"][:60] for m in MESSAGES])
def test_parse_message(case: dict) -> None:
    got = asdict(parse_message(case["message"]))
    assert {k: got[k] for k in case["expect"]} == case["expect"]


def test_no_fix_grants_star_on_an_action_with_a_resource_type() -> None:
    from rolesmith.actions.dataset import has_resource_type

    for case in CASES:
        for e in _run(case).explanations:
            for f in e.fixes:
                for st in (f.document or {}).get("Statement", []):
                    actions = st.get("Action", [])
                    actions = [actions] if isinstance(actions, str) else actions
                    assert actions != ["*"]
                    if st.get("Resource") == "*":
                        assert not any(has_resource_type(a) for a in actions), case.name


def test_render_text_block_has_what_why_fix() -> None:
    text = render_text(_run(FIX / "cases" / "missing_resource_allow"))
    assert "DENIED s3:GetObject" in text
    assert "  why    MISSING_RESOURCE_ALLOW [resource]" in text
    assert "  fix 1  add to the resource policy of arn:aws:s3:::shared-data" in text


def test_render_json_is_the_documented_shape() -> None:
    data = json.loads(render_json(_run(FIX / "cases" / "object_ownership_cloudfront")))
    assert data["events_read"] == 2 and data["denied"] == 1 and data["reasons"] == {"OBJECT_OWNERSHIP": 1}
    (e,) = data["explanations"]
    assert e["caller"] == "AWSAccount CloudFront" and e["request"] is None
    assert e["fixes"][0] == {
        "op": "put-ownership-controls", "layer": "s3-ownership", "target": "arn:aws:s3:::healthcorp-site",
        "target_kind": "s3-bucket", "summary": e["fixes"][0]["summary"],
        "document": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    }


# ----------------------------------------------------------------------------------------- CLI


def test_cli_text_and_json() -> None:
    case = FIX / "cases" / "missing_both"
    runner = CliRunner()
    res = runner.invoke(main, ["explain", str(case / "trail.jsonl"), "--policies", str(case / "policies")])
    assert res.exit_code == 0, res.output
    assert "MISSING_BOTH" in res.stdout
    res = runner.invoke(main, ["explain", str(case / "trail.jsonl"), "--policies", str(case / "policies"),
                               "--format", "json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["reasons"] == {"MISSING_BOTH": 1}


def test_cli_policies_and_live_are_exclusive() -> None:
    case = FIX / "cases" / "missing_both"
    res = CliRunner().invoke(main, ["explain", str(case / "trail.jsonl"), "--policies", str(case / "policies"), "--live"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: explain: --policies and --live are exclusive: pass one of them"


def test_cli_missing_trail_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["explain", "no/such/trail.json"])
    assert res.exit_code == 2
    assert "Path 'no/such/trail.json' does not exist." in res.stderr


def test_cli_bad_policy_file_names_it(tmp_path: Path) -> None:
    case = FIX / "cases" / "missing_both"
    (tmp_path / "identity" / "writer").mkdir(parents=True)
    (tmp_path / "identity" / "writer" / "bad.json").write_text("{not json")
    res = CliRunner().invoke(main, ["explain", str(case / "trail.jsonl"), "--policies", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"Error: {tmp_path.name}/identity/writer/bad.json: invalid JSON at line 1: "
                                  "Expecting property name enclosed in double quotes; fix the file")


INBOX = FIX / "cases" / "indirect_kms_secure_inbox"
_IDENT = "identity/writer/inbox.json"
_NOT_ARN = "write 'writer: arn:aws:iam::ACCOUNT:role/NAME'"
_BAD_DIR = [
    # A file that is not UTF-8, wherever it sits.
    (_IDENT, b"\xff\xfe{}", f"{_IDENT}: not UTF-8 text (byte 0xff at offset 0); save it as a UTF-8 JSON policy file"),
    ("scps/0-x.json", b'{"a": "\x80"}', "scps/0-x.json: not UTF-8 text (byte 0x80 at offset 7); save it as a UTF-8 JSON policy file"),
    ("principals.yaml", b"writer: \xc3(", "principals.yaml: not UTF-8 text (byte 0xc3 at offset 8); save it as a UTF-8 YAML file"),
    # A document given as a string: only JSON or URL-encoded JSON text of an object is one.
    (_IDENT, '{"PolicyDocument": "nope"}', f"{_IDENT}: PolicyDocument is a string, not a JSON policy document "
     "(raw or URL-encoded); write the policy document as a JSON object with a Statement"),
    (_IDENT, '"not json"', f"{_IDENT}: the file's content is a string, not a JSON policy document "
     "(raw or URL-encoded); write the policy document as a JSON object with a Statement"),
    (_IDENT, '{"PolicyVersion": {"Document": "%7B%22Statement%22%3A"}}',
     f"{_IDENT}: PolicyVersion.Document: invalid JSON at line 1: Expecting value; fix the file"),
    (_IDENT, '{"PolicyDocument": "[1]"}', f"{_IDENT}: PolicyDocument is a string, not a JSON policy document "
     "(raw or URL-encoded); write the policy document as a JSON object with a Statement"),
    # principals.yaml and accounts.yaml entries of the wrong type.
    ("principals.yaml", "writer: [a, b]\n",
     f"principals.yaml: writer: expected an ARN or {{arn: ARN, groups: [group, ...]}}, got a list; {_NOT_ARN}"),
    ("principals.yaml", "writer: 5\n",
     f"principals.yaml: writer: expected an ARN or {{arn: ARN, groups: [group, ...]}}, got the number 5; {_NOT_ARN}"),
    ("principals.yaml", "writer: garbage\n", f"principals.yaml: writer: the string 'garbage' is not an ARN; {_NOT_ARN}"),
    ("principals.yaml", "writer: {arn: arn:aws:iam::111122223333:role/w, groups: auditors}\n",
     "principals.yaml: writer: groups must be a list of group names, got the string 'auditors'; write 'groups: [group, ...]'"),
    ("principals.yaml", "writer: {arn: arn:aws:iam::111122223333:role/w, grups: [a]}\n",
     "principals.yaml: writer: unknown key 'grups'; use arn and groups"),
    ("principals.yaml", "[writer]\n", "principals.yaml: expected a mapping at the top level, got a list; see the layout in the README"),
    ("accounts.yaml", "accounts: [1, 2]\n",
     "accounts.yaml: accounts must map account ids to {management: BOOL, organization: BOOL}, got a list"),
    ("accounts.yaml", "buckets: [a]\n", "accounts.yaml: buckets must map bucket names to account ids, got a list"),
    ("accounts.yaml", 'accounts: {"111122223333": 5}\n',
     "accounts.yaml: accounts: 111122223333: expected {management: BOOL, organization: BOOL}, got the number 5"),
    ("accounts.yaml", 'accounts: {"111122223333": {management: "false"}}\n',
     "accounts.yaml: accounts: 111122223333: management must be true or false, got the string 'false'"),
    ("accounts.yaml", 'accounts: {"111122223333": {managment: true}}\n',
     "accounts.yaml: accounts: 111122223333: unknown key 'managment'; use management and organization"),
    ("accounts.yaml", "accounts: {012345670123: {}}\n",  # YAML 1.1 reads it as octal
     'accounts.yaml: accounts: the number 1402433619 is not a 12-digit account id; write it quoted, e.g. "111122223333"'),
    ("accounts.yaml", "buckets: {secure-inbox: [1]}\n",
     'accounts.yaml: buckets: secure-inbox: a list is not a 12-digit account id; write it quoted, e.g. "111122223333"'),
    ("principals.yaml", None, "principals.yaml: is a directory; remove it or replace it with a YAML file"),
    ("accounts.yaml", None, "accounts.yaml: is a directory; remove it or replace it with a YAML file"),
    (_IDENT, None, f"{_IDENT}: is a directory; remove it or replace it with a JSON policy file"),
    # Nesting the stdlib parsers cannot recurse through.
    (_IDENT, "[" * 200000, f"{_IDENT}: JSON nested too deeply to be a policy document; fix the file"),
    ("accounts.yaml", "[" * 200000, "accounts.yaml: YAML nested too deeply; fix the file"),
    (_IDENT, "1" * 5000, f"{_IDENT}: invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: "
     "value has 5000 digits; fix the file"),
]


@pytest.mark.parametrize(("rel", "content", "message"), _BAD_DIR, ids=[f"{r}-{i}" for i, (r, _c, _m) in enumerate(_BAD_DIR)])
def test_cli_bad_policies_dir_is_one_line_exit_2(tmp_path: Path, rel: str, content: str | bytes | None, message: str) -> None:
    import shutil

    pol = tmp_path / "pol"
    shutil.copytree(INBOX / "policies", pol)
    target = pol / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    if content is None:
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    res = CliRunner().invoke(main, ["explain", str(INBOX / "trail.jsonl"), "--policies", str(pol)])
    assert (res.exit_code, res.stderr) == (2, f"Error: pol/{message}\n")


@pytest.mark.parametrize("wrap", [
    lambda doc: {"PolicyDocument": urllib.parse.quote(json.dumps(doc))},  # GetRolePolicy, raw API
    lambda doc: {"PolicyVersion": {"Document": urllib.parse.quote(json.dumps(doc)), "VersionId": "v1"}},
    lambda doc: {"PolicyDocument": json.dumps(doc)},  # already decoded, still text
    lambda doc: doc,
], ids=["url-encoded-inline", "url-encoded-version", "json-text", "plain"])
def test_policy_documents_as_the_iam_api_returns_them(tmp_path: Path, wrap) -> None:
    import shutil

    shutil.copytree(INBOX / "policies", tmp_path / "policies")
    ident = tmp_path / "policies" / _IDENT
    ident.write_text(json.dumps(wrap(json.loads(ident.read_text()))), encoding="utf-8")
    got = explain_paths([INBOX / "trail.jsonl"], policies_dir=tmp_path / "policies")
    assert render_json(got) == render_json(_run(INBOX))


def test_cli_bad_trail_record_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"eventName": "GetObject"\n')
    res = CliRunner().invoke(main, ["explain", str(bad)])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"Error: {bad}: record 0: line 1 is not valid JSON: unexpected end of data; "
                                  "fix or remove the record, or pass --skip-bad")
    res = CliRunner().invoke(main, ["explain", str(bad), "--skip-bad"])
    assert res.exit_code == 0
    assert res.stdout == "no denied events in 0 events\n"
    assert "skipped 1 bad: invalid-json 1" in res.stderr


# ----------------------------------------------------------------------------------------- shared data

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cloudtrail"


def test_every_denied_event_in_the_shared_trails_is_explained() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/ not present: the public CloudTrail samples live outside the repository")
    result = explain_paths([SHARED / d for d in ("stratus", "panther", "awsdocs_examples")], skip_bad=True)
    assert result.explanations
    for e in result.explanations:
        assert e.reason in REASONS
        assert e.reason != "UNKNOWN" or e.missing
        if e.error_message and "is not authorized to perform" in e.error_message and e.error_message.startswith(("User:", "You are")):
            assert e.request is not None and ":" in e.request.action


def test_missing_s3_allow_also_proposes_the_kms_fix_behind_it(tmp_path: Path) -> None:
    import shutil

    case = FIX / "cases" / "indirect_kms_secure_inbox"
    shutil.copytree(case / "policies", tmp_path / "policies")
    (tmp_path / "policies" / "identity" / "writer" / "inbox.json").unlink()
    e = explain_paths([case / "trail.jsonl"], policies_dir=tmp_path / "policies").explanations[0]
    assert e.reason == "MISSING_IDENTITY_ALLOW"
    got = [(f.layer, f.document["Statement"][0]["Action"]) for f in e.fixes]
    assert got == [("identity", "s3:PutObject"), ("key-policy", "kms:GenerateDataKey"), ("identity", "kms:GenerateDataKey")]


REASON_ROWS = [json.loads(line) for line in (FIX / "message_reasons.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("row", REASON_ROWS, ids=[r["cite"].rsplit(": ", 1)[-1][:50] for r in REASON_ROWS])
def test_reason_from_message_alone(row: dict) -> None:
    from rolesmith.explain import explain_event
    from rolesmith.trail import normalize

    raw = {
        "eventVersion": "1.09", "eventTime": "2024-05-01T12:00:00Z", "eventSource": row["source"],
        "eventName": row["name"], "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.10",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/writer/s1",
                         "accountId": "111122223333", "principalId": "AROAX:s1",
                         "sessionContext": {"sessionIssuer": {"type": "Role", "accountId": "111122223333",
                                                              "arn": "arn:aws:iam::111122223333:role/writer"}}},
        "requestParameters": row["params"], "errorCode": "AccessDenied", "errorMessage": row["message"],
        "eventID": "e", "recipientAccountId": "111122223333",
    }
    e = explain_event(normalize(raw, "row#0"))
    assert (e.reason, e.layer) == (row["expect"]["reason"], row["expect"]["layer"])
    assert [[f.op, f.layer, f.target] for f in e.fixes] == row["expect"]["fixes"]
    assert e.basis == "message"
