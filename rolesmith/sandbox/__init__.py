"""A local multi-account AWS endpoint that enforces IAM, bucket and key policies and writes CloudTrail.

``start_sandbox(scenario_path, port=0, log_dir=None) -> SandboxHandle`` (or ``with Sandbox(path) as
sb:``) serves on 127.0.0.1 in front of a moto server; ``sb.env_for("account/Principal")`` gives the
AWS_* environment of a workload running as that principal. See the README, ``rolesmith sandbox``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Sandbox", "SandboxError", "SandboxHandle", "Scenario", "ScenarioError", "load_scenario", "start_sandbox"]


def __getattr__(name: str) -> Any:  # lazy: keeps ``import rolesmith.sandbox`` free of moto and botocore
    if name in ("Sandbox", "SandboxError", "SandboxHandle", "start_sandbox"):
        from rolesmith.sandbox import server

        return getattr(server, name)
    if name in ("Scenario", "ScenarioError", "load_scenario"):
        from rolesmith.sandbox import scenario

        return getattr(scenario, name)
    raise AttributeError(name)
