"""The three examples against the sandbox: broad and minimal policies succeed, each missing piece
fails with the error AWS gives (cases in fixtures/sandbox/cases.yaml).

One sandbox serves the module; each case resets it to the case's scenario (the example's, its broad
variant, or its examples/variants/ file, checked against the case's patches) (``SandboxHandle.reset``: empty moto, seeded again, new credentials), and runs the example's ``main()`` in-process with the principal's AWS_* environment (the same variables
``rolesmith record --sandbox`` sets for a child process).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
import yaml

from rolesmith.sandbox import start_sandbox

ROOT = Path(__file__).resolve().parent.parent
CASES = yaml.safe_load((ROOT / "fixtures/sandbox/cases.yaml").read_text())
_SELECT = re.compile(r"^(.*)\[(?:Sid=(.+)|(\d+))\]$")


def _walk(doc: Any, path: str) -> tuple[Any, Any]:
    """(container, key) of the last segment of a dotted path with [Sid=X] / [N] selectors."""
    parts = path.split(".")
    node = doc
    for i, part in enumerate(parts):
        m = _SELECT.match(part)
        if m:
            lst = node[m.group(1)]
            idx = int(m.group(3)) if m.group(3) else next(j for j, s in enumerate(lst) if s.get("Sid") == m.group(2))
            container, key = lst, idx
        else:
            container, key = node, part
        if i == len(parts) - 1:
            return container, key
        node = container[key]
    raise AssertionError(path)


def _scenario(case: dict[str, Any]) -> Path:
    """The case's scenario file: the example's own, its broad variant, or its file under
    examples/variants/, which must equal the base scenario with the case's patches applied."""
    base = ROOT / case.get("scenario", f"examples/{case['example']}.yaml")
    if not case.get("patch"):
        return base
    doc = copy.deepcopy(yaml.safe_load(base.read_text()))
    for op in case["patch"]:
        container, key = _walk(doc, op.get("remove") or op.get("set"))
        if "remove" in op:
            del container[key]
        else:
            container[key] = op["value"]
    variant = ROOT / "examples" / "variants" / f"{case['id'].replace('/', '.')}.yaml"
    assert yaml.safe_load(variant.read_text()) == doc, f"{variant} is out of date with fixtures/sandbox/cases.yaml"
    return variant


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@functools.cache
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with start_sandbox(ROOT / "examples/secure_inbox.yaml") as sb:
        yield sb


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_example_case(case: dict[str, Any], sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # A fresh default session (it caches the previous case's credentials) sharing one model loader.
    fresh = botocore.session.get_session()
    fresh.register_component("data_loader", _loader())
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session(botocore_session=fresh))
    sandbox.reset(_scenario(case), log_dir=tmp_path / "trail")
    sb = sandbox
    for k, v in {**sb.env_for(sb.default_principal), **case.get("env", {})}.items():
        monkeypatch.setenv(k, v)
    module = _example(case["example"])
    code = module.main()
    out, err = capsys.readouterr()
    expect = case["expect"]
    assert code == expect["exit"], err
    if "stdout" in expect:
        assert out.strip() == expect["stdout"]
    if "stdout_startswith" in expect:
        assert out.startswith(expect["stdout_startswith"]), out
    if "error" in expect:
        assert err.strip() == expect["error"]
    if "error_pattern" in expect:
        assert re.match(expect["error_pattern"], err.strip()), err
    # A refusal is in the trail as a denied record; a success leaves none.
    denied = [r for r in sb.records() if r.get("errorCode")]
    assert bool(denied) == expect.get("trail_denied", expect["exit"] != 0)
    sys.modules.pop(f"example_{case['example']}", None)


def test_every_variant_file_is_a_case() -> None:
    names = {f"{c['id'].replace('/', '.')}.yaml" for c in CASES if c.get("patch")}
    assert {p.name for p in (ROOT / "examples" / "variants").iterdir()} == names
