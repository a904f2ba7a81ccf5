"""``rolesmith converge``: run a workload under a role, explain every denial, apply the smallest fixes,
and run again until it runs clean; then render the final policies as ``build`` does.

``converge(command, ConvergeOptions) -> ConvergeResult`` (see the README, "rolesmith converge").
"""

from __future__ import annotations

from rolesmith.converge.loop import converge
from rolesmith.converge.model import (AppliedFix, ConvergeError, ConvergeOptions, ConvergeResult, Denial,
                                      RunReport)

__all__ = ["AppliedFix", "ConvergeError", "ConvergeOptions", "ConvergeResult", "Denial", "RunReport", "converge"]
