"""Local IAM policy evaluator: pure Python, no AWS calls.

``evaluate(request, policies) -> Decision`` follows the AWS "Policy evaluation logic" and
"Cross-account policy evaluation logic" documentation; ``load_policy_dir`` reads the documented
policies directory layout used by ``simulate``, ``explain`` and ``tighten``.
"""

from __future__ import annotations

from rolesmith.evaluator.engine import evaluate
from rolesmith.evaluator.model import (
    Decision,
    MatchedStatement,
    NamedPolicy,
    Policies,
    PolicyError,
    Request,
)

__all__ = [
    "Decision",
    "MatchedStatement",
    "NamedPolicy",
    "Policies",
    "PolicyError",
    "Request",
    "evaluate",
    "load_policy_dir",
    "PolicyStore",
]


def __getattr__(name: str):  # lazy: the policy-dir loader pulls in yaml
    if name in ("load_policy_dir", "PolicyStore", "PolicyDirError"):
        from rolesmith.evaluator import policydir

        return getattr(policydir, name)
    raise AttributeError(name)
