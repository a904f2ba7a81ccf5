"""The render stage: the policy set as JSON or CloudFormation, through the jinja2 templates in ``templates/``.

``render(policy_set, fmt=…, split=…)`` returns ``{file name: text}``: one entry for printing, or one
file per policy for ``rolesmith build -o DIR``. Templates are loaded from the package
(``rolesmith/templates``, where the wheel puts them) first, then from the repository's ``templates/``
(editable installs).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rolesmith.errors import RolesmithError
from rolesmith.policies.model import PolicySet
from rolesmith.render.cloudformation import Parameters, template, units

FORMATS = ("json", "cloudformation", "cloudformation-json")


class RenderError(RolesmithError):
    exit_code = 1


class UnknownFormat(RenderError):
    exit_code = 2


def _to_json(value: Any, indent: int = 0) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + " " * indent)


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:  # noqa: D102
        # Indent list items under their key, the way CloudFormation examples are written.
        super().increase_indent(flow, False)


def _to_yaml(value: Any, indent: int = 0) -> str:
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000,
                     allow_unicode=True)
    pad = " " * indent
    return "\n".join(pad + line for line in text.rstrip("\n").split("\n"))


def _to_yaml_scalar(value: Any) -> str:
    text = yaml.dump(value, Dumper=_Dumper, width=1000, allow_unicode=True)
    return text.split("\n...", 1)[0].rstrip("\n")


def template_dirs() -> list[Path]:
    """Where templates are looked up, in order: inside the package, then the repository's templates/."""
    package = Path(__file__).resolve().parents[1]
    return [package / "templates", package.parent / "templates"]


@cache
def environment() -> Any:
    import jinja2

    loaders = [jinja2.FileSystemLoader(str(d)) for d in template_dirs() if d.is_dir()]
    if not loaders:
        raise RenderError(
            f"templates: none found in {', '.join(map(str, template_dirs()))}; fix: reinstall rolesmith"
        )
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=False,  # JSON and YAML, not HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(to_json=_to_json, to_yaml=_to_yaml, to_yaml_scalar=_to_yaml_scalar)
    return env


def _render(name: str, **context: Any) -> str:
    text = environment().get_template(name).render(**context)
    return text if text.endswith("\n") else text + "\n"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "policy"


def _json_split(policy_set: PolicySet) -> dict[str, str]:
    items: list[tuple[str, str, Any]] = []  # (file stem, ARN, document)
    items += [(f"identity-{_slug(_tail(p.principal))}", p.principal, p.policy) for p in policy_set.identity_policies]
    items += [(f"{r.kind}-{_slug(_tail(r.resource))}", r.resource, r.policy) for r in policy_set.resource_policies]
    items += [(f"trust-{_slug(_tail(t.role))}", t.role, t.policy) for t in policy_set.trust_policies]
    stems = [stem for stem, _, _ in items]
    # Same-named roles in two accounts get the account; the same key id in two regions the region too.
    with_account = [f"{stem}-{arn.split(':')[4]}" if stems.count(stem) > 1 else stem for stem, arn, _ in items]
    out: dict[str, str] = {}
    for (stem, arn, policy), named in zip(items, with_account):
        if with_account.count(named) > 1 and arn.split(":")[3]:
            named = f"{named}-{arn.split(':')[3]}"
        out[f"{named}.json"] = _render("policy.json.j2", policy=policy)
    if policy_set.findings:
        out["findings.json"] = _render("policy.json.j2", policy=policy_set.to_dict()["findings"])
    return out


# "aws cloudformation deploy" takes a template of up to 51,200 bytes from a file; a larger one must be
# uploaded to S3 first (--s3-bucket), up to 1 MB (CloudFormation quotas, "Template body size").
_TEMPLATE_BODY_LIMIT = 51_200


def _template_text(name: str, doc: Any) -> str:
    text = _render(f"cloudformation/{name}", doc=doc, large=False)
    if len(text.encode("utf-8")) > _TEMPLATE_BODY_LIMIT:
        text = _render(f"cloudformation/{name}", doc=doc, large=True)
    return text


def _tail(arn: str) -> str:
    """The readable end of an ARN: ``role/report-writer`` -> ``role-report-writer``; bucket names whole."""
    if ":s3:::" in arn:
        return arn.split(":::", 1)[1]
    rest = arn.split(":", 5)[-1]
    return rest.replace("/", "-")


def render(policy_set: PolicySet, *, fmt: str = "json", split: bool = False) -> dict[str, str]:
    """``{file name: text}`` for ``policy_set`` in ``fmt`` (json, cloudformation, cloudformation-json)."""
    if fmt not in FORMATS:
        raise UnknownFormat(f"format {fmt!r}: unknown; fix: use one of {', '.join(FORMATS)}")
    if fmt == "json":
        if split:
            return _json_split(policy_set)
        return {"policies.json": _render("policies.json.j2", doc=policy_set.to_dict())}
    params = Parameters()
    unit_list = units(policy_set, params)
    if not unit_list:
        raise RenderError("nothing to render: the trail gave no policies; fix: check the findings with --format json")
    name, ext = ("template.yaml.j2", "yaml") if fmt == "cloudformation" else ("template.json.j2", "json")
    if not split:
        doc = template(unit_list, params, policy_set)
        return {f"rolesmith.{ext}": _template_text(name, doc)}
    out = {}
    for unit in unit_list:
        doc = template([unit], params, PolicySet())
        out[f"{unit.stem}.{ext}"] = _template_text(name, doc)
    if policy_set.findings:
        out["findings.json"] = _render("policy.json.j2", policy=policy_set.to_dict()["findings"])
    return out


__all__ = ["FORMATS", "RenderError", "UnknownFormat", "environment", "render", "template_dirs"]
