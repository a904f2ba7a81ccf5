"""Bad scenario input is a one-line error naming the file, the entry and the fix (exit code 2), and
malformed ARNs reaching the sandbox at run time are answered, never a traceback.

Cases here are the ones that used to crash: non-UTF-8 bytes, names YAML reads as numbers, booleans or
null, aliases that are not a list of strings, regions that are not AWS region names, and KMS key
ARNs that are not ARNs.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner

from rolesmith.cli import main
from rolesmith.sandbox import ScenarioError, load_scenario, start_sandbox

ACCOUNT = "accounts: {a: {id: '111111111111', users: {u: {policies: {p: {Statement: [{Effect: Allow, Action: '*', Resource: '*'}]}}}}"
ALLOW_ALL = ("accounts: {a: {id: '111111111111', users: {u: {policies: {p: {Version: '2012-10-17', "
             "Statement: [{Effect: Allow, Action: '*', Resource: '*'}]}}}}, buckets: {in-bucket: {}}}}")
CFG = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})

CASES = [
    ("account-name-number", ACCOUNT + "}, 1: {id: '222222222222'}}",
     "FILE: accounts: the name 1 is a number, not a string: quote it in YAML"),
    ("account-name-yes", ACCOUNT + "}, yes: {id: '222222222222'}}",
     "FILE: accounts: the name True is a boolean (an unquoted yes/no/on/off/true/false), not a string: quote it in YAML"),
    ("account-name-null", ACCOUNT + "}, ~: {id: '222222222222'}}",
     "FILE: accounts: the name None is null (an unquoted ~ or null), not a string: quote it in YAML"),
    ("user-name-number", "accounts: {a: {id: '111111111111', users: {7: {}}}}",
     "FILE: accounts.a.users: the name 7 is a number, not a string: quote it in YAML"),
    ("key-name-number", ACCOUNT + ", keys: {3: {}}}}",
     "FILE: accounts.a.keys: the name 3 is a number, not a string: quote it in YAML"),
    ("mixed-unknown-top-keys", ACCOUNT + "}}\n1: x\nfoo: y",
     "FILE: top level: unknown keys [1, 'foo']; allowed: region, run_as, accounts"),
    ("aliases-number", ACCOUNT + ", keys: {k: {aliases: 5}}}}",
     "FILE: accounts.a.keys.k.aliases: expected a list of alias names, e.g. [alias/NAME]"),
    ("aliases-string", ACCOUNT + ", keys: {k: {aliases: alias/x}}}}",
     "FILE: accounts.a.keys.k.aliases: expected a list of alias names, e.g. [alias/NAME]"),
    ("aliases-non-string-entry", ACCOUNT + ", keys: {k: {aliases: [alias/x, 5]}}}}",
     "FILE: accounts.a.keys.k.aliases: expected a list of alias names, e.g. [alias/NAME]"),
    ("region-with-space", "region: 'mars-1 x'\n" + ACCOUNT + "}}",
     "FILE: region: 'mars-1 x' is not an AWS region name: use one such as us-east-1"),
    ("region-list", "region: [a]\n" + ACCOUNT + "}}",
     "FILE: region: expected a region name such as us-east-1, got list"),
    ("region-upper-case", "region: US-EAST-1\n" + ACCOUNT + "}}",
     "FILE: region: 'US-EAST-1' is not an AWS region name: use one such as us-east-1"),
    ("kms-key-garbage-arn", ACCOUNT + ", buckets: {b: {encryption: {kms_key: 'arn:aws:kms:garbage'}}}}}",
     "FILE: accounts.a.buckets.b.encryption.kms_key: 'arn:aws:kms:garbage' is not a KMS key ARN: use "
     "arn:aws:kms:REGION:ACCOUNT:key/ID (or :alias/NAME) or the name of a declared key"),
    ("kms-key-arn-bad-account", ACCOUNT + ", buckets: {b: {encryption: {kms_key: 'arn:aws:kms:us-east-1:1:key/k'}}}}}",
     "FILE: accounts.a.buckets.b.encryption.kms_key: 'arn:aws:kms:us-east-1:1:key/k' is not a KMS key ARN: use "
     "arn:aws:kms:REGION:ACCOUNT:key/ID (or :alias/NAME) or the name of a declared key"),
    ("kms-key-not-a-string", ACCOUNT + ", buckets: {b: {encryption: {kms_key: [k]}}}}}",
     "FILE: accounts.a.buckets.b.encryption.kms_key: expected a key name or a key ARN (a string)"),
    # A misspelt key used to be ignored: the user below would have run with no policy at all.
    ("user-key-misspelt", "accounts: {a: {id: '111111111111', users: {u: {polices: {}}}}}",
     "FILE: accounts.a.users.u: unknown keys ['polices']; allowed: boundary, path, policies, tags"),
    ("bucket-key-misspelt", ACCOUNT + ", buckets: {b: {encrypton: AES256}}}}",
     "FILE: accounts.a.buckets.b: unknown keys ['encrypton']; allowed: encryption, object_ownership, policy"),
    ("quoted-no-is-not-false", ACCOUNT + ", management: 'no'}}",
     "FILE: accounts.a.management: expected true or false, got 'no'"),
    # YAML keeps the last of two equal keys: the first user would vanish without a word.
    ("user-given-twice", "accounts: {a: {id: '111111111111', users: {u: {}, u: {}}}}",
     "FILE: line 1: the key 'u' is given twice (YAML would keep only the last one); remove or rename one"),
]


@pytest.mark.parametrize(("text", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_scenario_is_a_one_line_error(text: str, error: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == error.replace("FILE", str(path))
    assert info.value.exit_code == 2


def test_non_utf8_scenario_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"region: us-east-1\n" + ACCOUNT.replace("Allow", "u\xff").encode("latin-1") + b"}}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: line 2: byte 0xff is not UTF-8; save the file as UTF-8"
    result = CliRunner().invoke(main, ["sandbox", "--scenario", str(path)])
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: line 2: byte 0xff is not UTF-8; save the file as UTF-8\n"


def test_cli_bad_name_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(ACCOUNT + "}, 1: {id: '222222222222'}}")
    result = CliRunner().invoke(main, ["sandbox", "--scenario", str(path)])
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: accounts: the name 1 is a number, not a string: quote it in YAML\n"


def test_unknown_region_is_refused_at_start(tmp_path: Path) -> None:
    # Well-formed, but moto has no backend for it: refused before anything starts.
    path = tmp_path / "s.yaml"
    path.write_text("region: xx-abc-1\n" + ACCOUNT + "}}")
    assert load_scenario(path).region == "xx-abc-1"
    with pytest.raises(ScenarioError) as info:
        start_sandbox(path)
    assert str(info.value) == (f"{path}: region: 'xx-abc-1' is not a region AWS has (none in botocore's endpoint "
                               "data): use one such as us-east-1")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1", "eusc-de-east-1"])
def test_real_region_names_load(region: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"region: {region}\n" + ACCOUNT + ", keys: {k: {aliases: [alias/k]}}}}")
    scenario = load_scenario(path)
    assert scenario.region == region
    assert scenario.keys[0].aliases == ("alias/k",)


@pytest.mark.parametrize("ref", ["k", "a/k", "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-0000-4000-8000-000000000001",
                                 "arn:aws:kms:us-east-1:222222222222:alias/shared"])
def test_kms_key_references_that_load(ref: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(ACCOUNT + ", keys: {k: {}}, buckets: {b: {encryption: {kms_key: '" + ref + "'}}}}}")
    scenario = load_scenario(path)
    key = scenario.keys[0].arn
    assert scenario.bucket("b").encryption == (key if ref in ("k", "a/k") else ref)


def _s3(handle: object) -> object:
    env = handle.env_for(handle.default_principal)  # type: ignore[attr-defined]
    return boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=handle.endpoint_url, config=CFG,  # type: ignore[attr-defined]
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def test_malformed_kms_key_arn_at_run_time_is_answered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A request (or a bucket's default encryption set through the API) may still name a malformed
    # key ARN: the call is refused like AWS refuses it, not a sandbox error with a traceback.
    path = tmp_path / "s.yaml"
    path.write_text(ALLOW_ALL)
    with start_sandbox(path) as handle:
        s3 = _s3(handle)
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="in-bucket", Key="k1", Body=b"x", ServerSideEncryption="aws:kms",
                          SSEKMSKeyId="arn:aws:kms:garbage")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
        s3.put_bucket_encryption(Bucket="in-bucket", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:garbage"}}]})
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="in-bucket", Key="k2", Body=b"x")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert "Traceback" not in caplog.text and "failed" not in caplog.text
