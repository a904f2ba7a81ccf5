"""Benchmark of the mapping stage (``rolesmith.actions.uses_for``).

Run: ``.venv/bin/python bench/actions.py [N]``. Generates N synthetic CloudTrail records (S3 data
events with SSE-KMS, KMS calls invoked by S3, Lambda/DynamoDB/Logs calls, STS AssumeRole, EC2 by
EMR) twice — once with every object key distinct (the worst case for memoisation) and once drawn
from a small pool (a realistic trail repeats itself) — and prints, in one run, the raw ``json``
decode rate of the same lines (the baseline), ``normalize`` and ``uses_for`` rates.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rolesmith.actions import uses_for
from rolesmith.trail.normalize import normalize

ROLE = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLE:worker",
    "arn": "arn:aws:sts::111122223333:assumed-role/app-role/worker",
    "accountId": "111122223333",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "arn": "arn:aws:iam::111122223333:role/app-role",
            "accountId": "111122223333",
            "userName": "app-role",
        }
    },
}
KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _record(i: int, key: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": ROLE,
        "eventTime": "2024-05-01T12:%02d:%02dZ" % (i // 60 % 60, i % 60),
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-sdk-java/2.20",
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333",
        "eventID": f"e-{i}",
        "requestID": f"r-{i}",
    }
    kind = i % 6
    if kind == 0:
        base.update(eventSource="s3.amazonaws.com", eventName="PutObject", requestParameters={
            "bucketName": "data", "key": key, "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": KEY},
            resources=[{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::data/{key}"},
                       {"accountId": "111122223333", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::data"}])
    elif kind == 1:
        base.update(eventSource="s3.amazonaws.com", eventName="GetObject",
                    requestParameters={"bucketName": "data", "key": key})
    elif kind == 2:
        base.update(eventSource="kms.amazonaws.com", eventName="GenerateDataKey", sourceIPAddress="s3.amazonaws.com",
                    userIdentity=dict(ROLE, invokedBy="s3.amazonaws.com"),
                    requestParameters={"keyId": KEY, "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::data/{key}"}},
                    resources=[{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": KEY}])
    elif kind == 3:
        base.update(eventSource="dynamodb.amazonaws.com", eventName="GetItem",
                    requestParameters={"tableName": "orders", "key": {"id": {"S": key}}})
    elif kind == 4:
        base.update(eventSource="logs.amazonaws.com", eventName="CreateLogStream",
                    requestParameters={"logGroupName": "/aws/lambda/worker", "logStreamName": key})
    else:
        base.update(eventSource="sts.amazonaws.com", eventName="AssumeRole",
                    requestParameters={"roleArn": "arn:aws:iam::111122223333:role/target", "roleSessionName": key})
    return base


def _lines(n: int, distinct: bool) -> list[str]:
    return [json.dumps(_record(i, f"obj/{i if distinct else i % 50}.json")) for i in range(n)]


def _run(label: str, lines: list[str]) -> None:
    n = len(lines)
    t0 = time.perf_counter()
    decoded = [json.loads(line) for line in lines]
    t1 = time.perf_counter()
    events = [normalize(raw, f"bench#{i}") for i, raw in enumerate(decoded)]
    t2 = time.perf_counter()
    uses = 0
    for event in events:
        result = uses_for(event)
        uses += len(result.uses) + len(result.inferred)
    t3 = time.perf_counter()
    decode, norm, mapping = n / (t1 - t0), n / (t2 - t1), n / (t3 - t2)
    print(
        f"{label:<22} events={n:>9,}  json.loads={decode:>10,.0f}/s (baseline)  "
        f"normalize={norm:>10,.0f}/s  uses_for={mapping:>10,.0f}/s  "
        f"uses_for/decode={mapping / decode:5.2f}x  uses={uses:,}"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    _run("distinct object keys", _lines(n, distinct=True))
    _run("repeating trail", _lines(n, distinct=False))


if __name__ == "__main__":
    main()
