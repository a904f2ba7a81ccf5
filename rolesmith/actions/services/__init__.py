"""The one table of per-service exceptions, keyed by IAM service prefix.

Each module holds the documented exceptions of one service, each with a fixture case under
``fixtures/events/<service>/`` citing the AWS documentation. Everything not listed here goes
through the generic eventName → action mapping.
"""

from __future__ import annotations

from typing import Mapping

from rolesmith.actions.services._rules import ServiceRules

REGISTRY: Mapping[str, ServiceRules] = {}

__all__ = ["REGISTRY", "ServiceRules"]
