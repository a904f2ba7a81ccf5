"""Rendering: the JSON schema, one file per policy, and CloudFormation that passes cfn-lint.

Every CloudFormation template any test here renders goes through cfn-lint (its Python API), and a
deliberately broken template shows the lint would catch a mistake.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rolesmith.policies import BuildOptions, IdentityPolicy, PolicySet, build_policies
from rolesmith.policies.model import Finding
from rolesmith.render import RenderError, UnknownFormat, render, template_dirs

ROOT = Path(__file__).resolve().parents[1]
TRAILS = ROOT / "fixtures" / "trails"
FIXTURES = ("secure_inbox", "emr_launch", "lambda_dynamodb")
PSEUDO = {"AWS::Partition", "AWS::AccountId", "AWS::Region", "AWS::StackName", "AWS::URLSuffix"}


@cache
def policies(name: str) -> PolicySet:
    return build_policies([TRAILS / f"{name}.jsonl"], BuildOptions()).policies


def _cfn_lint(paths: list[Path]) -> dict[Path, list[str]]:
    """cfn-lint over all ``paths`` in one process (it caches its schemas across files): path -> problems."""
    exe = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(exe), "--format", "parseable", "--regions", "us-east-1", "--", *map(str, paths)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 2, 4, 6, 8, 10, 12, 14), proc.stderr  # bit flags: errors/warnings/infos
    out: dict[Path, list[str]] = {p: [] for p in paths}
    for line in proc.stdout.splitlines():
        for p in paths:
            if line.startswith(f"{p}:"):
                out[p].append(line[len(str(p)) + 1:])
    return out



def _policy_variable_set() -> PolicySet:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                   "Resource": "arn:aws:s3:::home-bucket/${aws:username}/*"}]}
    return PolicySet(identity_policies=(IdentityPolicy(principal="arn:aws:iam::111122223333:user/alice", policy=doc),),
                     findings=(Finding(code="X", message="a: b"),))


def _same_name_set() -> PolicySet:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}
    return PolicySet(identity_policies=tuple(IdentityPolicy(principal=f"arn:aws:iam::{acct}:role/app", policy=doc)
                                             for acct in ("111122223333", "444455556666")))


def _same_name_roles_set() -> PolicySet:
    # Roles with trust policies become AWS::IAM::Role resources, whose RoleName must be unique (E3019).
    from rolesmith.policies import TrustPolicy

    base = _same_name_set()
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    return PolicySet(identity_policies=base.identity_policies,
                     trust_policies=tuple(TrustPolicy(role=p.principal, policy=trust) for p in base.identity_policies))


def _broken() -> str:
    broken = render(policies("lambda_dynamodb"), fmt="cloudformation")["rolesmith.yaml"]
    broken, n = re.subn(r"(Resource:\n\s+)Fn::Sub: arn:[^\n]+", r"\1not-an-arn", broken, count=1)
    assert n == 1
    return broken


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, bool], dict[str, str]]:
    return {case: render(policies(case[0]), fmt=case[1], split=case[2]) for case in CASES}


@pytest.fixture(scope="module")
def linted(rendered: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every template this module renders, linted in one cfn-lint run: 'case/file' -> problems."""
    root = tmp_path_factory.mktemp("cfn")
    paths: dict[str, Path] = {}
    texts = {f"{n}-{f}-{s}/{file}": text for (n, f, s), out in rendered.items() for file, text in out.items()
             if file != "findings.json"}
    texts["extra/policy-variable.yaml"] = render(_policy_variable_set(), fmt="cloudformation")["rolesmith.yaml"]
    texts["extra/broken.yaml"] = _broken()
    texts["extra/same-name.yaml"] = render(_same_name_set(), fmt="cloudformation")["rolesmith.yaml"]
    texts["extra/same-name-roles.yaml"] = render(_same_name_roles_set(), fmt="cloudformation")["rolesmith.yaml"]
    for i, text in enumerate(render(_same_name_set(), fmt="cloudformation", split=True).values()):
        texts[f"extra/same-name-split-{i}.yaml"] = text
    for name, text in texts.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    result = _cfn_lint(list(paths.values()))
    return {name: result[path] for name, path in paths.items()}


def _subs(value: Any) -> list[str]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += re.findall(r"\$\{([^!}][^}]*)\}", v) if k == "Fn::Sub" and isinstance(v, str) else _subs(v)
        return out
    if isinstance(value, list):
        return [x for v in value for x in _subs(v)]
    return []


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [value["Ref"]] if set(value) == {"Ref"} else [x for v in value.values() for x in _refs(v)]
    if isinstance(value, list):
        return [x for v in value for x in _refs(v)]
    return []


CASES = [(name, fmt, split) for name in FIXTURES for fmt in ("cloudformation", "cloudformation-json")
         for split in (False, True)]


@pytest.mark.parametrize("name, fmt, split", CASES)
def test_cloudformation_passes_cfn_lint_and_every_parameter_is_declared_and_used(
        name: str, fmt: str, split: bool, rendered: dict, linted: dict) -> None:
    outputs = rendered[(name, fmt, split)]
    templates = {k: v for k, v in outputs.items() if k != "findings.json"}
    assert templates and (split or len(templates) == 1)
    ext = ".yaml" if fmt == "cloudformation" else ".json"
    for file_name, text in templates.items():
        assert file_name.endswith(ext)
        assert linted[f"{name}-{fmt}-{split}/{file_name}"] == [], file_name
        doc = yaml.safe_load(text) if ext == ".yaml" else json.loads(text)
        declared = set(doc.get("Parameters", {}))
        used = set(_subs(doc["Resources"])) | set(_refs(doc["Resources"]))
        assert used - PSEUDO == declared, file_name
        # Account ids are parameters: no ARN keeps a literal account field (object keys may hold digits).
        assert not re.search(r"arn:[^:]*:[^:]*:[^:]*:\d{12}:", json.dumps(doc["Resources"])), file_name


def test_yaml_and_json_templates_are_the_same_document() -> None:
    ps = policies("secure_inbox")
    as_yaml = yaml.safe_load(render(ps, fmt="cloudformation")["rolesmith.yaml"])
    as_json = json.loads(render(ps, fmt="cloudformation-json")["rolesmith.json"])
    assert as_yaml == as_json
    resources = as_json["Resources"]
    assert {r["Type"] for r in resources.values()} == {
        "AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::KMS::Key"} | (
        {"AWS::S3::BucketPolicy"} if any(p.kind == "s3-bucket" for p in ps.resource_policies) else set())
    # The role carries its trust policy and its least-privilege policy; the key policy waits for the role.
    role = resources["ReportWriterRole"]["Properties"]
    assert role["RoleName"] == {"Ref": "ReportWriterRoleName"}
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AccountA}:user/${CiRunnerUserName}"}}
    assert [p["PolicyName"] for p in role["Policies"]] == ["rolesmith-least-privilege"]
    assert resources["Key7777ffff"]["DependsOn"] == ["ReportWriterRole"]
    assert as_json["Parameters"]["AccountB"] == {
        "Type": "String", "Default": "444455556666", "Description": "AWS account id (account 444455556666 in the trail)"}


def test_json_is_the_documented_schema() -> None:
    ps = policies("secure_inbox")
    [(file_name, text)] = render(ps, fmt="json").items()
    assert file_name == "policies.json"
    doc = json.loads(text)
    assert list(doc) == ["identity_policies", "resource_policies", "trust_policies", "findings"]
    assert doc == ps.to_dict()
    assert set(doc["identity_policies"][0]) == {"principal", "policy"}
    assert set(doc["resource_policies"][0]) == {"resource", "kind", "policy"}
    assert set(doc["findings"][0]) == {"code", "message", "events"}


def test_json_split_writes_one_policy_document_per_file() -> None:
    ps = policies("secure_inbox")
    outputs = render(ps, fmt="json", split=True)
    assert sorted(outputs) == sorted([
        "identity-role-report-writer.json", "identity-user-ci-runner.json", "trust-role-report-writer.json",
        "findings.json", *[f"{p.kind}-{p.resource.split(':::', 1)[-1].split(':', 5)[-1].replace('/', '-')}.json"
                           for p in ps.resource_policies]])
    assert json.loads(outputs["trust-role-report-writer.json"]) == ps.trust_policies[0].policy
    assert json.loads(outputs["findings.json"]) == ps.to_dict()["findings"]


def test_policy_variables_stay_literal_in_fn_sub(linted: dict) -> None:
    text = render(_policy_variable_set(), fmt="cloudformation")["rolesmith.yaml"]
    assert linted["extra/policy-variable.yaml"] == []
    resource = yaml.safe_load(text)["Resources"]["AlicePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert resource["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${HomeBucketBucketName}/${!aws:username}/*"}


def test_cfn_lint_catches_a_broken_policy(linted: dict) -> None:
    # Negative control: the lint run above does reject an invalid identity policy.
    assert any("E3510" in m for m in linted["extra/broken.yaml"])


def test_empty_policy_set_renders_json_but_no_template() -> None:
    assert json.loads(render(PolicySet())["policies.json"]) == {
        "identity_policies": [], "resource_policies": [], "trust_policies": [], "findings": []}
    with pytest.raises(RenderError, match="^nothing to render: the trail gave no policies; fix: check the findings"
                                          " with --format json$"):
        render(PolicySet(), fmt="cloudformation")


def test_unknown_format() -> None:
    with pytest.raises(UnknownFormat, match=r"^format 'xml': unknown; fix: use one of json, cloudformation,"
                                            r" cloudformation-json$"):
        render(PolicySet(), fmt="xml")


def test_templates_load_from_the_package_first_then_the_repository() -> None:
    package_dir, repo_dir = template_dirs()
    assert package_dir == ROOT / "rolesmith" / "templates"
    assert repo_dir == ROOT / "templates"
    assert (repo_dir / "cloudformation" / "template.yaml.j2").is_file()


def test_same_role_name_in_two_accounts_gets_two_files_and_two_resources(linted: dict) -> None:
    ps = _same_name_set()
    assert linted["extra/same-name.yaml"] == [] and linted["extra/same-name-split-1.yaml"] == []
    assert sorted(render(ps, fmt="json", split=True)) == [
        "identity-role-app-111122223333.json", "identity-role-app-444455556666.json"]
    assert sorted(render(ps, fmt="cloudformation", split=True)) == [
        "role-app-111122223333.yaml", "role-app-444455556666.yaml"]
    combined = yaml.safe_load(render(ps, fmt="cloudformation")["rolesmith.yaml"])
    assert sorted(combined["Resources"]) == ["AppPolicy111122223333", "AppPolicy444455556666"]


def test_same_role_name_in_two_accounts_gets_two_role_name_parameters(linted: dict) -> None:
    assert linted["extra/same-name-roles.yaml"] == []
    doc = yaml.safe_load(render(_same_name_roles_set(), fmt="cloudformation")["rolesmith.yaml"])
    names = [r["Properties"]["RoleName"]["Ref"] for r in doc["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(names) == 2 and len(set(names)) == 2
    # One stack deploys into one account: the template says which accounts it holds.
    assert doc["Metadata"]["rolesmith"]["accounts"] == ["111122223333", "444455556666"]


def test_json_split_keeps_the_same_key_id_of_two_regions_apart() -> None:
    from rolesmith.policies import ResourcePolicy

    doc = {"Version": "2012-10-17", "Statement": []}
    key = "mrk-1234abcd12ab34cd56ef1234567890ab"
    ps = PolicySet(resource_policies=tuple(
        ResourcePolicy(resource=f"arn:aws:kms:{region}:111122223333:key/{key}", kind="kms-key", policy=doc,
                       account="111122223333") for region in ("us-east-1", "eu-west-1")))
    assert sorted(render(ps, fmt="json", split=True)) == [
        f"kms-key-key-{key}-111122223333-eu-west-1.json", f"kms-key-key-{key}-111122223333-us-east-1.json"]


def test_a_template_over_the_file_upload_limit_says_to_deploy_through_s3() -> None:
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": f"S{i}", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::bucket-{i}/*"}
        for i in range(600)]}
    big = PolicySet(identity_policies=(IdentityPolicy(principal="arn:aws:iam::111122223333:role/app", policy=doc),))
    text = render(big, fmt="cloudformation")["rolesmith.yaml"]
    assert len(text.encode()) > 51_200
    assert "--capabilities CAPABILITY_NAMED_IAM --s3-bucket BUCKET\n" in text
    small = render(_same_name_set(), fmt="cloudformation")["rolesmith.yaml"]
    assert "--s3-bucket" not in small
