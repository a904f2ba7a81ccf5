"""DynamoDB: batch and transaction calls touch several tables; queries on an index need the index.

- BatchGetItem / BatchWriteItem: ``requestItems`` is keyed by table name; BatchWriteItem needs
  dynamodb:BatchWriteItem on each table (DynamoDB DG, "DynamoDB API permissions reference",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/api-permissions-reference.html).
- TransactWriteItems / TransactGetItems are authorised per item as PutItem/UpdateItem/DeleteItem/
  ConditionCheckItem/GetItem on each table (DynamoDB DG, "Using IAM with DynamoDB transactions",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
- Query/Scan with ``indexName`` act on ``table/T/index/I`` (same reference, index resource type).
- DynamoDB Streams log under ``streams.dynamodb.amazonaws.com`` (renamed in the dataset wrapper).
"""

from __future__ import annotations

from typing import Any, Mapping

from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules

_TRANSACT = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
             "ConditionCheck": "dynamodb:ConditionCheckItem", "Get": "dynamodb:GetItem"}


def _batch(action: str):
    def handler(ctx: Ctx) -> EventUses | None:
        items = ctx.param("requestItems", "RequestItems")
        if not isinstance(items, Mapping) or not items:
            return None
        uses: list[Use] = []
        for table in sorted(str(t) for t in items):
            if table.startswith("arn:"):
                uses.extend(ctx.use(action, arn=table))
            else:
                uses.extend(ctx.use(action, values={"TableName": table}, rtype="table"))
        return EventUses(uses=tuple(uses))

    return handler


def _transact(ctx: Ctx) -> EventUses | None:
    items = ctx.param("transactItems", "TransactItems")
    if not isinstance(items, list):
        return None
    uses: list[Use] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for kind, body in item.items():
            action = _TRANSACT.get(kind[:1].upper() + kind[1:])
            table = body.get("tableName") or body.get("TableName") if isinstance(body, Mapping) else None
            if action and isinstance(table, str):
                for use in ctx.use(action, values={"TableName": table}, rtype="table"):
                    if use not in uses:
                        uses.append(use)
    return EventUses(uses=tuple(uses)) if uses else None


def _index(action: str):
    def handler(ctx: Ctx) -> EventUses | None:
        index: Any = ctx.text("indexName", "IndexName")
        if not index:
            return None
        return EventUses(uses=ctx.use(action, values={"IndexName": index}, rtype="index"))

    return handler


RULES = ServiceRules(
    handlers={
        "BatchGetItem": _batch("dynamodb:BatchGetItem"),
        "BatchWriteItem": _batch("dynamodb:BatchWriteItem"),
        "TransactWriteItems": _transact,
        "TransactGetItems": _transact,
        "Query": _index("dynamodb:Query"),
        "Scan": _index("dynamodb:Scan"),
    },
    emits=frozenset(_TRANSACT.values()) | {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:Scan"},
)
