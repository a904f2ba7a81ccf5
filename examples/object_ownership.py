"""Upload into another account's bucket, then read the object back as that bucket's owner.

Runs as the partner's uploader (standard AWS_* environment variables; against the sandbox:
``rolesmith record --sandbox --scenario examples/object_ownership.yaml -- python examples/object_ownership.py``).
OBJECT_OWNERSHIP_ACL=bucket-owner-full-control sends that canned ACL with the upload.
Exits 1 with AWS's error message when a call is refused.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

BUCKET = os.environ.get("OBJECT_OWNERSHIP_BUCKET", "media-origin-bucket")
READER_ROLE = os.environ.get("OBJECT_OWNERSHIP_READER", "arn:aws:iam::555555555555:role/MediaReader")
ACL = os.environ.get("OBJECT_OWNERSHIP_ACL")
KEY = "uploads/episode-42.mp4"


def main() -> int:
    try:
        extra = {"ACL": ACL} if ACL else {}
        boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"\x00" * 1024, **extra)
        creds = boto3.client("sts").assume_role(RoleArn=READER_ROLE, RoleSessionName="read-back")["Credentials"]
        owner = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"],
                             aws_session_token=creds["SessionToken"])
        size = len(owner.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    except ClientError as err:
        print(f"object_ownership: {err}", file=sys.stderr)
        return 1
    print(f"object_ownership: the bucket owner read s3://{BUCKET}/{KEY} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
