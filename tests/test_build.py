"""`rolesmith build` / `rolesmith graph` end to end on the fixture trails: goldens, CLI, wheel, acceptance.

Goldens live in fixtures/golden/<trail>.json (``--format json``) and <trail>.yaml
(``--format cloudformation``). After an intended change, regenerate them with
``ROLESMITH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_build.py`` and review the diff.

Acceptance (issue 2): every successful call in each fixture trail is allowed by the policies built
from it, judged by the local evaluator (rolesmith.evaluator), and nearby calls the trail never shows
(fixtures/trails/unobserved.json: another bucket, DeleteObject, …) are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolesmith.actions import uses_for
from rolesmith.cli import main
from rolesmith.evaluator import NamedPolicy, Policies, Request, evaluate
from rolesmith.policies import BuildOptions, PolicySet, build_policies
from rolesmith.render import render
from rolesmith.trail import read_trail

ROOT = Path(__file__).resolve().parents[1]
TRAILS = ROOT / "fixtures" / "trails"
GOLDEN = ROOT / "fixtures" / "golden"
FIXTURES = ("secure_inbox", "emr_launch", "lambda_dynamodb")
UPDATE = os.environ.get("ROLESMITH_UPDATE_GOLDEN") == "1"
SECRETS = ("doNotEmit", "ASIAEXAMPLE", "AKIAEXAMPLE")  # session tokens and access key ids in the fixtures


@cache
def built(name: str) -> PolicySet:
    return build_policies([TRAILS / f"{name}.jsonl"], BuildOptions()).policies


def _golden(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with ROLESMITH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed: review, then ROLESMITH_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("fmt, ext", [("json", "json"), ("cloudformation", "yaml")])
def test_cli_build_matches_the_golden_output(name: str, fmt: str, ext: str) -> None:
    result = CliRunner().invoke(main, ["build", str(TRAILS / f"{name}.jsonl"), "--format", fmt])
    assert result.exit_code == 0, result.output
    _golden(GOLDEN / f"{name}.{ext}", result.stdout)
    for secret in SECRETS:
        assert secret not in result.stdout
    assert result.stderr.splitlines()[-1].startswith("rolesmith: ")


def test_quickstart_prints_the_secure_inbox_policies() -> None:
    # README quickstart: `rolesmith build fixtures/trails/secure_inbox.jsonl`.
    result = CliRunner().invoke(main, ["build", "fixtures/trails/secure_inbox.jsonl"]) if Path.cwd() == ROOT else \
        CliRunner().invoke(main, ["build", str(TRAILS / "secure_inbox.jsonl")])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert [p["principal"] for p in doc["identity_policies"]] == [
        "arn:aws:iam::111122223333:role/report-writer", "arn:aws:iam::111122223333:user/ci-runner"]
    kinds = sorted((p["kind"], p["resource"]) for p in doc["resource_policies"])
    assert kinds == [
        ("kms-key", "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-22bb-33cc-44dd-5555eeee6666"),
        ("kms-key", "arn:aws:kms:us-east-1:444455556666:key/7777ffff-88aa-99bb-00cc-1111dddd2222"),
        ("s3-bucket", "arn:aws:s3:::secure-inbox-444455556666"),
    ]


def test_cli_output_dir_writes_one_file_per_policy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(TRAILS / "lambda_dynamodb.jsonl"), "--format", "cloudformation",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["findings.json", "role-orders-reader-exec.yaml"]
    assert str(out / "role-orders-reader-exec.yaml") in result.stderr.splitlines()


def test_cli_principal_filter_and_unknown_principal() -> None:
    trail = str(TRAILS / "secure_inbox.jsonl")
    ok = CliRunner().invoke(main, ["build", trail, "--principal", "arn:aws:iam::111122223333:user/ci-runner"])
    assert ok.exit_code == 0
    doc = json.loads(ok.stdout)
    assert [p["principal"] for p in doc["identity_policies"]] == ["arn:aws:iam::111122223333:user/ci-runner"]
    assert doc["resource_policies"] == [] and doc["trust_policies"] == []
    bad = CliRunner().invoke(main, ["build", trail, "--principal", "arn:aws:iam::111122223333:role/nobody"])
    assert bad.exit_code == 2
    assert bad.stderr == (
        "Error: --principal arn:aws:iam::111122223333:role/nobody: no events of this principal in the trail; fix: use"
        " one of: arn:aws:iam::111122223333:role/report-writer, arn:aws:iam::111122223333:user/ci-runner\n")


def test_cli_bad_input_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"eventSource": "s3.amazonaws.com"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {bad}: record 0: ") and line.endswith("pass --skip-bad")
    skipped = CliRunner().invoke(main, ["build", str(bad), "--skip-bad"])
    assert skipped.exit_code == 0
    assert json.loads(skipped.stdout)["identity_policies"] == []


def test_cli_bad_option_values() -> None:
    trail = str(TRAILS / "secure_inbox.jsonl")
    result = CliRunner().invoke(main, ["build", trail, "--account-of", "bucket-without-account"])
    assert result.exit_code == 2
    assert "Invalid value for '--account-of': expected KEY=VALUE, got 'bucket-without-account'" in result.stderr
    missing = CliRunner().invoke(main, ["build", "no/such/trail.jsonl"])
    assert missing.exit_code == 2
    assert "Path 'no/such/trail.jsonl' does not exist." in missing.stderr


def test_cli_cloudformation_of_nothing_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(empty), "--format", "cloudformation"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: nothing to render: the trail gave no policies; fix: check the findings with"
                             " --format json\n")


def test_cli_account_of_and_key_admin_reach_the_policies() -> None:
    result = CliRunner().invoke(main, ["build", str(TRAILS / "secure_inbox.jsonl"), "--key-admin",
                                       "arn:aws:iam::444455556666:role/KeyAdmin", "--generalize", "none"])
    doc = json.loads(result.stdout)
    keys = [p for p in doc["resource_policies"] if p["kind"] == "kms-key"]
    assert {k["policy"]["Statement"][0]["Principal"]["AWS"] for k in keys} == {"arn:aws:iam::444455556666:role/KeyAdmin"}
    assert not [f for f in doc["findings"] if f["code"] == "GENERALIZED"]


@pytest.mark.parametrize("fmt, first", [("json", "{"), ("dot", "digraph usage {"), ("mermaid", "flowchart LR")])
def test_cli_graph_exports(fmt: str, first: str) -> None:
    result = CliRunner().invoke(main, ["graph", str(TRAILS / "secure_inbox.jsonl"), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == first
    for secret in SECRETS + ("nightly-report",):
        assert secret not in result.stdout
    if fmt == "json":
        doc = json.loads(result.stdout)
        invoked = [e for e in doc["edges"] if e["kind"] == "invoked-by"]
        assert {(e["source"].split(" | ")[1], e["target"].split(" | ")[1]) for e in invoked} >= {
            ("kms:GenerateDataKey", "s3:PutObject"), ("kms:Decrypt", "s3:GetObject")}
        assert [e["target"] for e in doc["edges"] if e["kind"] == "assumes"] == [
            "principal:arn:aws:iam::111122223333:role/report-writer"]


def test_wheel_ships_the_templates(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    [wheel] = list(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for template in (ROOT / "templates").rglob("*.j2"):
        assert f"rolesmith/templates/{template.relative_to(ROOT / 'templates').as_posix()}" in names
    # The installed package renders from its own copy (no repository templates/ next to it).
    code = ("import json, rolesmith.render as r; from rolesmith.policies import build_policies;"
            f"ps = build_policies([{str(TRAILS / 'lambda_dynamodb.jsonl')!r}]).policies;"
            "print(json.dumps([str(d) for d in r.template_dirs() if d.is_dir()]));"
            "print(r.render(ps, fmt='cloudformation')['rolesmith.yaml'][:40])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, cwd=tmp_path)
    dirs, head = proc.stdout.split("\n", 1)
    assert json.loads(dirs) == [str(tmp_path / "site" / "rolesmith" / "templates")]
    assert head.startswith("# Written by rolesmith")


# -- acceptance with the evaluator -----------------------------------------------------------------

def _policies_for(ps: PolicySet, principal: str, action: str, resource: str) -> Policies:
    identity = tuple(NamedPolicy(name=f"identity {p.principal}", document=p.policy)
                     for p in ps.identity_policies if p.principal == principal)
    target, kind = None, None
    if action.startswith("s3:") and ":s3:::" in resource:
        target, kind = "arn:aws:s3:::" + resource.split(":::", 1)[1].split("/", 1)[0], "s3-bucket"
    elif action.startswith("kms:"):
        target, kind = resource, "kms-key"
    if action.startswith("sts:"):
        trust = [t for t in ps.trust_policies if t.role == resource]
        doc = trust[0].policy if trust else {"Version": "2012-10-17", "Statement": []}
        return Policies(identity=identity, resource=NamedPolicy(name="trust", document=doc), resource_kind="role-trust")
    found = [p for p in ps.resource_policies if p.resource == target]
    if kind == "kms-key" and not found:
        # No key policy written: the key stays with its default policy (the account root, i.e. IAM decides).
        found_doc: dict[str, Any] = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{resource.split(':')[4]}:root"},
            "Action": "kms:*", "Resource": "*"}]}
        return Policies(identity=identity, resource=NamedPolicy(name="default key policy", document=found_doc),
                        resource_kind=kind)
    if found:
        return Policies(identity=identity, resource=NamedPolicy(name=f"{kind} {target}", document=found[0].policy),
                        resource_kind=kind)
    return Policies(identity=identity)


def _observed_requests(name: str) -> list[tuple[str, Request]]:
    out = []
    for event in read_trail([TRAILS / f"{name}.jsonl"]):
        principal = event.principal
        if event.denied or principal is None:
            continue
        mapped = uses_for(event)
        for use in (*mapped.uses, *mapped.inferred):
            context: dict[str, Any] = {key: value for _, key, value in use.conditions}
            if principal.account:
                context.setdefault("kms:CallerAccount", principal.account)
                context.setdefault("aws:PrincipalAccount", principal.account)
            acl = event.request.get("x-amz-acl")
            if acl and use.action.startswith("s3:Put"):
                context["s3:x-amz-acl"] = acl
            request = Request(principal=principal.arn, principal_account=principal.account or "",
                              action=use.action, resource=use.resource,
                              resource_account=use.resource_account, context=context,
                              session_arn=principal.session_arn)
            out.append((f"{event.name} {event.event_id} {use.action} {use.resource}", request))
    return out


@pytest.mark.parametrize("name", FIXTURES)
def test_every_observed_call_is_allowed_by_the_built_policies(name: str) -> None:
    ps = built(name)
    requests = _observed_requests(name)
    assert requests
    refused = []
    for label, request in requests:
        decision = evaluate(request, _policies_for(ps, request.principal, request.action, request.resource))
        if not decision.allowed:
            refused.append(f"{label}: {decision.decision} at {decision.layer}")
    assert refused == []


def _unobserved() -> list[dict[str, Any]]:
    return json.loads((TRAILS / "unobserved.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", _unobserved(), ids=lambda c: f"{c['trail']}: {c['why']}")
def test_nearby_unobserved_calls_are_not_allowed(case: dict[str, Any]) -> None:
    ps = built(case["trail"])
    principal = case["principal"]
    account = principal.split(":")[4] if principal.startswith("arn:") else ""
    request = Request(principal=principal, principal_account=account, action=case["action"],
                      resource=case["resource"], resource_account=case.get("resource_account"),
                      context=case.get("context", {}))
    decision = evaluate(request, _policies_for(ps, principal, case["action"], case["resource"]))
    assert not decision.allowed, decision


SHARED = ROOT.parent / "shared" / "data" / "cloudtrail"


# cfn-lint costs seconds per large template: lint the CloudFormation of two varied sources (docs examples
# of many services, OTRF attack simulations); the others are built and rendered as JSON only.
LINTED_SOURCES = ("awsdocs_examples", "otrf")


@pytest.mark.slow
def test_shared_corpus_builds_and_its_cloudformation_passes_cfn_lint(tmp_path: Path) -> None:
    # Real trails (../shared/data/cloudtrail: log files, LookupEvents, JSON Lines, a malformed file): build
    # must not crash, and the templates rendered from them pass cfn-lint.
    if not SHARED.is_dir():
        pytest.skip(f"../shared/ not present: {SHARED}")
    from tests.test_render import _cfn_lint

    paths = []
    for source in sorted(p for p in SHARED.iterdir() if p.is_dir()):
        result = build_policies([source], BuildOptions(skip_bad=True))
        doc = json.loads(render(result.policies)["policies.json"])
        assert doc == result.policies.to_dict()
        if source.name in LINTED_SOURCES:
            assert result.policies.identity_policies, source.name
            path = tmp_path / f"{source.name}.yaml"
            path.write_text(render(result.policies, fmt="cloudformation")["rolesmith.yaml"], encoding="utf-8")
            paths.append(path)
    assert len(paths) == len(LINTED_SOURCES)
    assert {p.name: problems for p, problems in _cfn_lint(paths).items() if problems} == {}


def test_build_pauses_automatic_gc_and_restores_it_even_on_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline turns the cyclic collector off while it aggregates (rolesmith.gcpause); a library
    must hand the process back as it found it, after a success, after an error, and when nested."""
    import gc

    from rolesmith.gcpause import gc_paused
    from rolesmith.graph.usage import UsageGraph
    from rolesmith.trail import TrailError

    trail = ROOT / "fixtures" / "trails" / "secure_inbox.jsonl"
    assert gc.isenabled()
    seen: list[bool] = []
    add = UsageGraph.add

    def spy(self: UsageGraph, *args: Any) -> None:
        seen.append(gc.isenabled())
        add(self, *args)

    monkeypatch.setattr(UsageGraph, "add", spy)
    build_policies([trail])
    assert seen and not any(seen), "the collector ran while events were aggregated"
    assert gc.isenabled()

    bad = tmp_path / "bad.json"
    bad.write_text('{"Records": [{"eventName": "GetObject"}]}')
    with pytest.raises(TrailError):
        build_policies([bad])
    assert gc.isenabled()

    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "an inner pause ended the outer one"
    assert gc.isenabled()

    gc.disable()  # a caller that runs with the collector off keeps it off
    try:
        build_policies([trail])
        assert not gc.isenabled()
    finally:
        gc.enable()


FEDERATED = ROOT / "fixtures" / "trail" / "federated" / "get-federation-token.json"
BROKER = "arn:aws:iam::111122223333:user/broker"


def test_federated_user_calls_land_in_the_issuing_users_policy_with_a_session_policy_finding() -> None:
    # A GetFederationToken session's permissions are the calling IAM user's policy intersected with the
    # session policy (IAM User Guide, id_credentials_temp_control-access_getfederationtoken); CloudTrail
    # names that user as the session's sessionIssuer (userIdentity reference). So the user's policy is
    # the one to write, and the session policy is named as the other half.
    result = CliRunner().invoke(main, ["build", str(FEDERATED), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["principal"] for p in doc["identity_policies"]] == [BROKER]
    granted = {(s["Action"], s["Resource"]) for s in doc["identity_policies"][0]["policy"]["Statement"]}
    assert granted == {("s3:GetObject", "arn:aws:s3:::reports-111122223333/2024/03/q1.csv"),
                       ("sts:GetFederationToken", "arn:aws:sts::111122223333:federated-user/Bob")}
    session = [f for f in doc["findings"] if f["code"] == "FEDERATED_SESSION_POLICY"]
    assert session == [{"code": "FEDERATED_SESSION_POLICY", "events": ["0d1f5e6a-0001-4000-8000-000000000002"],
                        "message": f"{BROKER}: some calls were made by its GetFederationToken sessions; a session's"
                                   " permissions are this user's policy intersected with the session policy passed"
                                   " to GetFederationToken, so that session policy must allow them too"}]
    assert "NO_POLICY_FOR_PRINCIPAL" not in {f["code"] for f in doc["findings"]}
    assert "doNotEmit" not in result.stdout
    ps = build_policies([FEDERATED]).policies
    request = Request(principal=BROKER, principal_account="111122223333", action="s3:GetObject",
                      resource="arn:aws:s3:::reports-111122223333/2024/03/q1.csv",
                      session_arn="arn:aws:sts::111122223333:federated-user/Bob")
    assert evaluate(request, _policies_for(ps, BROKER, request.action, request.resource)).allowed


def test_real_federation_token_trail_attributes_the_session_to_its_user() -> None:
    # Stratus Red Team's sts-federation-token detonation, as logged by CloudTrail.
    trail = SHARED / "stratus" / "aws.persistence.sts-federation-token.json"
    if not trail.exists():
        pytest.skip(f"../shared/ not present: {trail}")
    ps = build_policies([trail]).policies
    user = "arn:aws:iam::742491224508:user/stratus-red-team-user-federation-user"
    assert [p.principal for p in ps.identity_policies] == [user]
    assert [(s["Action"], s["Resource"]) for s in ps.identity_policies[0].policy["Statement"]] == [
        ("sts:GetFederationToken", "arn:aws:sts::742491224508:federated-user/stratus_red_team")]
    # The session only called GetCallerIdentity, which needs no permission: nothing for a session policy.
    assert [f.code for f in ps.findings] == []


@pytest.mark.parametrize("admin", ["*", "", "arn:aws:iam::*:root", "arn:aws:iam::111122223333:group/admins"])
def test_key_admin_must_name_an_account_role_or_user(admin: str) -> None:
    # The key-administration statement is what keeps a generated key manageable (key-policy-default);
    # a wildcard would hand the key to anyone and an empty name to no one.
    result = CliRunner().invoke(main, ["build", str(TRAILS / "secure_inbox.jsonl"), "--key-admin", admin])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: --key-admin {admin!r}: not an account id or an IAM role, user or root ARN; a key's administrators"
        " must be named (a wildcard would let anyone administer it, an empty name no one); fix: e.g."
        " --key-admin arn:aws:iam::111122223333:role/KeyAdmins")


@pytest.mark.parametrize("command", [["build", str(TRAILS / "secure_inbox.jsonl")], ["record", "--", "true"]])
def test_an_output_directory_that_cannot_be_made_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "out"
    args = [command[0], "-o", str(target), *command[1:]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {target}: Not a directory; fix: check that the path exists, is a directory where one is expected,"
        " is writable, and that the disk has space")


def test_a_call_a_vpc_endpoint_policy_refused_is_a_denial_not_a_grant(tmp_path: Path) -> None:
    # CloudTrail logs such refusals with errorCode VpceAccessDenied (network activity events,
    # ct-ug logging-network-events-with-cloudtrail); they must never be granted as observed uses.
    record = json.loads((TRAILS / "secure_inbox.jsonl").read_text(encoding="utf-8").splitlines()[0])
    record.update(eventName="GetObject", eventSource="s3.amazonaws.com", errorCode="VpceAccessDenied",
                  errorMessage="The request was denied due to a VPC endpoint policy", eventID="vpce-1",
                  requestParameters={"bucketName": "example-bucket", "key": "sensitive-file.txt"},
                  vpcEndpointId="vpce-EXAMPLE08c1b6b9b7")
    trail = tmp_path / "vpce.json"
    trail.write_text(json.dumps({"Records": [record]}), encoding="utf-8")
    ps = build_policies([trail]).policies
    assert all("example-bucket" not in json.dumps(p.policy) for p in ps.identity_policies)
    assert [f.code for f in ps.findings if f.code == "DENIED_CALLS"] == ["DENIED_CALLS"]
