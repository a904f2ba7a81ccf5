"""SQS: queues are named by URL in CloudTrail (``queueUrl``), the ARN needs account and name.

Queue URL form ``https://sqs.<region>.amazonaws.com/<account>/<name>`` (SQS Developer Guide, "Queue
and message identifiers"); queue ARN ``arn:${Partition}:sqs:${Region}:${Account}:${QueueName}``
(Service Authorization Reference).
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules


def _default(ctx: Ctx) -> EventUses | None:
    action = action_for_event_name("sqs", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None or not info.resource_types:
        return None
    url = ctx.text("queueUrl", "QueueUrl")
    if url and "/" in url:
        parts = url.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2].isdigit():
            return EventUses(uses=ctx.use(info.name, values={"Account": parts[-2], "QueueName": parts[-1]}, rtype="queue"))
    name = ctx.text("queueName", "QueueName")
    if name:
        return EventUses(uses=ctx.use(info.name, values={"QueueName": name}, rtype="queue"))
    return None


RULES = ServiceRules(default=_default)
