"""Deliver a report into a customer's cross-account, SSE-KMS "secure inbox".

Runs as the service's role (standard AWS_* environment variables; against the sandbox:
``rolesmith record --sandbox --scenario examples/secure_inbox.yaml -- python examples/secure_inbox.py``).
1. store the report in our own bucket (encrypted by default with our KMS key);
2. copy it into the customer's bucket, which encrypts it with the customer's KMS key.
Exits 1 with AWS's error message when a call is refused.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

OWN_BUCKET = os.environ.get("SECURE_INBOX_OWN_BUCKET", "acme-service-reports")
INBOX_BUCKET = os.environ.get("SECURE_INBOX_CUSTOMER_BUCKET", "customer-secure-inbox")
REPORT = "2026-11.csv"


def main() -> int:
    s3 = boto3.client("s3")
    try:
        s3.put_object(Bucket=OWN_BUCKET, Key=f"reports/{REPORT}", Body=b"customer,amount\nacme,42\n")
        s3.copy_object(Bucket=INBOX_BUCKET, Key=f"from-acme/{REPORT}",
                       CopySource={"Bucket": OWN_BUCKET, "Key": f"reports/{REPORT}"})
    except ClientError as err:
        print(f"secure_inbox: {err}", file=sys.stderr)
        return 1
    print(f"secure_inbox: delivered s3://{INBOX_BUCKET}/from-acme/{REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
