"""Launch an EMR cluster under a custom service role and instance profile, then check it started.

Runs with the standard AWS_* environment variables (against the sandbox:
``rolesmith record --sandbox --scenario examples/emr_launch.yaml -- python examples/emr_launch.py``).
EMR makes its EC2 and SQS calls after RunJobFlow returns, so a refusal there shows up as the
cluster's termination reason: the script reads it back and exits 1 with it.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

SERVICE_ROLE = os.environ.get("EMR_SERVICE_ROLE", "AnalyticsEMRService")
INSTANCE_PROFILE = os.environ.get("EMR_INSTANCE_PROFILE", "AnalyticsEMRInstance")


def main() -> int:
    emr = boto3.client("emr")
    try:
        cluster = emr.run_job_flow(
            Name="nightly-analytics", ReleaseLabel="emr-7.1.0", ServiceRole=SERVICE_ROLE,
            JobFlowRole=INSTANCE_PROFILE, LogUri="s3://analytics-data/emr-logs/",
            Instances={"MasterInstanceType": "m5.xlarge", "SlaveInstanceType": "m5.xlarge", "InstanceCount": 3,
                       "KeepJobFlowAliveWhenNoSteps": True},
            Tags=[{"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}])
        status = emr.describe_cluster(ClusterId=cluster["JobFlowId"])["Cluster"]["Status"]
    except ClientError as err:
        print(f"emr_launch: {err}", file=sys.stderr)
        return 1
    if status["State"].startswith("TERMINATED"):
        print(f"emr_launch: cluster {cluster['JobFlowId']} {status['State']}: "
              f"{status.get('StateChangeReason', {}).get('Message')}", file=sys.stderr)
        return 1
    print(f"emr_launch: cluster {cluster['JobFlowId']} {status['State']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
