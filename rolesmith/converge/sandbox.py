"""Converge against the rolesmith sandbox: fixes go into a copy of the scenario in the output
directory, applied with ``SandboxHandle.reset`` (the user's scenario file is never modified)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from rolesmith.converge.model import INLINE_NAME, ConvergeError, ConvergeOptions
from rolesmith.evaluator.model import NamedPolicy, Policies, Request
from rolesmith.trail.secrets import scrub_record


class WorldStore:
    """``explain``'s store over the sandbox's policies in force (what the sandbox itself enforces)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def account_of(self, bucket_arn: str) -> str | None:
        bucket = self._handle.world.bucket(bucket_arn[13:].split("/", 1)[0])
        return bucket.account if bucket is not None else None

    def policies_for(self, request: Request) -> Policies:
        from rolesmith.sandbox.enforce import Check, _levels, _named, resource_of

        world = self._handle.world
        spec = world.principal(request.principal)
        if spec is None and request.session_arn is None and ":assumed-role/" in request.principal:
            acct, name = request.principal.split(":")[4], request.principal.split("/")[1]
            spec = world.role_by_name(acct, name)
        check = Check(action=request.action, resource=request.resource, resource_account=request.resource_account)
        res_policy, kind, res_account = resource_of(world, check)
        acct_spec = world.scenario.account(spec.account) if spec is not None else None
        res_acct_spec = world.scenario.account(res_account) if res_account else None
        return Policies(
            identity=_named("", spec.policies) if spec is not None else (),
            boundary=NamedPolicy(name="boundary", document=spec.boundary) if spec is not None and spec.boundary else None,
            scps=_levels("scp", acct_spec.scps) if acct_spec else (),
            rcps=_levels("rcp", res_acct_spec.rcps) if res_acct_spec else (),
            resource=res_policy, resource_kind=kind,
            service_linked_role=bool(spec is not None and spec.service_linked),
            management_account=bool(acct_spec and acct_spec.management))


class SandboxBackend:
    def __init__(self, options: ConvergeOptions) -> None:
        from rolesmith.sandbox import load_scenario, start_sandbox

        assert options.scenario is not None
        self._options = options
        self._source = Path(options.scenario)
        scenario = load_scenario(self._source)
        try:
            self._spec = scenario.principal(options.role)
        except Exception as err:  # ScenarioError: re-raised as converge's own with the same one line
            raise ConvergeError(f"--role {options.role}: {err}") from None
        self._scenario = scenario
        self.role_arn = self._spec.arn
        self._raw: dict[str, Any] = yaml.safe_load(self._source.read_text(encoding="utf-8"))
        self._dir = options.out_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._copy = self._dir / "scenario.yaml"
        self._dirty = True
        self._edited: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._handle = start_sandbox(self._source)

    # -- the scenario copy -------------------------------------------------------------------
    def _account_name(self, account_id: str) -> str:
        acct = self._scenario.account(account_id)
        if acct is None:
            raise ConvergeError(f"{self._source}: account {account_id} is not in the scenario")
        return acct.name

    def _principal_raw(self) -> dict[str, Any]:
        acct = self._raw["accounts"][self._account_name(self._spec.account)]
        kind = "roles" if self._spec.kind == "role" else "users"
        return acct[kind][self._spec.name]

    def _save(self) -> None:
        self._copy.write_text(yaml.safe_dump(self._raw, sort_keys=False), encoding="utf-8")
        self._dirty = True

    def prepare(self, initial: Mapping[str, Any] | None, start_from: str) -> None:
        entry = self._principal_raw()
        if start_from in ("empty", "recording"):
            entry["policies"] = {}
        if initial is not None:
            entry.setdefault("policies", {})[INLINE_NAME] = copy.deepcopy(dict(initial))
        self._save()

    def identity_document(self) -> Mapping[str, Any] | None:
        return (self._principal_raw().get("policies") or {}).get(INLINE_NAME)

    def put_identity(self, document: Mapping[str, Any]) -> None:
        entry = self._principal_raw()
        entry["policies"] = {**(entry.get("policies") or {}), INLINE_NAME: copy.deepcopy(dict(document))}
        self._save()

    def _resource_raw(self, layer: str, target: str) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
        if layer == "resource" and target.startswith("arn:aws:s3:::"):
            name = target[13:].split("/", 1)[0]
            spec = self._scenario.bucket(name)
            if spec is not None:
                return self._raw["accounts"][self._account_name(spec.account)]["buckets"].setdefault(name, {}) or {}, spec.policy
        if layer in ("key-policy", "resource") and target.startswith("arn:aws:kms:"):
            key_id = target.rsplit("/", 1)[-1]
            for key in self._scenario.keys:
                if key.key_id == key_id or key.arn == target:
                    return self._raw["accounts"][self._account_name(key.account)]["keys"][key.name], key.policy
        if layer == "trust-policy" and ":role/" in target:
            for p in self._scenario.principals:
                if p.arn == target:
                    return self._raw["accounts"][self._account_name(p.account)]["roles"][p.name], p.trust
        raise ConvergeError(f"{self._source}: {target} is not a resource of the scenario; converge can only edit "
                            "the policies of declared buckets, keys and roles")

    def resource_document(self, layer: str, target: str) -> Mapping[str, Any] | None:
        # The loaded scenario has ${key:…} placeholders resolved; edits are written back resolved.
        _, loaded = self._resource_raw(layer, target)
        return self._edited.get((layer, target), loaded)

    def put_resource(self, layer: str, target: str, document: Mapping[str, Any]) -> None:
        entry, _ = self._resource_raw(layer, target)
        entry["trust" if layer == "trust-policy" else "policy"] = json.loads(json.dumps(document))
        self._edited[(layer, target)] = json.loads(json.dumps(document))
        self._save()

    def put_ownership(self, bucket: str, ownership: str) -> None:
        spec = self._scenario.bucket(bucket)
        if spec is None:
            raise ConvergeError(f"{self._source}: bucket {bucket} is not in the scenario")
        self._raw["accounts"][self._account_name(spec.account)]["buckets"].setdefault(bucket, {})
        entry = self._raw["accounts"][self._account_name(spec.account)]["buckets"][bucket]
        if entry is None:
            self._raw["accounts"][self._account_name(spec.account)]["buckets"][bucket] = entry = {}
        entry["object_ownership"] = ownership
        self._save()

    # -- runs ----------------------------------------------------------------------------------
    def run(self, command: Sequence[str], run_dir: Path) -> tuple[int, int | None, Path]:
        from rolesmith.record import RecordOptions, record
        from rolesmith.sandbox import load_scenario

        run_dir.mkdir(parents=True, exist_ok=True)
        if self._dirty:
            self._handle.reset(self._copy, log_dir=None)
            self._scenario = load_scenario(self._copy)
            self._dirty = False
        else:
            self._handle.reset(None)
        env = dict(self._options.env if self._options.env is not None else os.environ)
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
            env.pop(var, None)
        env.update(self._handle.env_for(self._spec.qualified))
        result = record(command, RecordOptions(out_dir=run_dir, env=env, cwd=self._options.cwd,
                                               capture=self._options.capture or "hook", build=self._options.build))  # type: ignore[arg-type]
        self._handle.flush()
        trail = run_dir / "trail.jsonl"
        # The sandbox logs a cross-account call in both accounts; one copy per event is enough here.
        seen: set[str] = set()
        with trail.open("w", encoding="utf-8") as fh:
            for rec in self._handle.records():
                key = str(rec.get("eventID") or rec.get("sharedEventID") or id(rec))
                if key in seen:
                    continue
                seen.add(key)
                fh.write(json.dumps(scrub_record(rec), separators=(",", ":"), default=str) + "\n")
        return result.exit_code, result.signal, trail

    def store(self) -> WorldStore:
        return WorldStore(self._handle)

    def bucket_key(self, bucket: str) -> str | None:
        state = self._handle.world.bucket(bucket)
        enc = state.encryption if state is not None else None
        return enc if enc and enc.startswith("arn:aws:kms:") else None

    def wait(self, statements: Sequence[Mapping[str, Any]]) -> None:
        return None  # the sandbox applies a change on reset, before the next run

    def finish(self, converged: bool) -> bool:
        return False  # nothing outside the output directory was changed

    def close(self) -> None:
        self._handle.stop()

