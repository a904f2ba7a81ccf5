"""``--generalize safe``: widen only the parts of an ARN that the evidence shows are generated per run.

A trail records one run. Ids AWS mints for every run (an EMR cluster id, an EC2 instance id, the SQS
queue EMR names after its cluster) will differ next time, so exact ARNs would fail the second run;
names the workload chose (buckets, tables, roles, keys) stay exact. The evidence that an id is minted
per run is the trail itself: a creation call's response returned it (and its request did not name
it). An id the trail only uses (an existing cluster or instance) stays exact, whatever it looks like.
Object keys are widened to their shared prefix only when several keys under that prefix were used:
one key stays one key. Lambda's log streams (date/[version]32-hex, one per execution environment) are
the one pattern widened on its shape alone: the runtime, not a call in the trail, names them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

# (rule id, pattern on the whole ARN, replacement, why). Each pattern keeps everything up to the
# generated id and replaces only the id.
_ID_RULES: tuple[tuple[str, re.Pattern[str], str, str], ...] = (
    (
        "emr-cluster-id",
        re.compile(r"^(arn:[^:]+:elasticmapreduce:[^:]*:[^:]*:cluster/)j-[0-9A-Z]{6,}$"),
        r"\1*",
        "EMR cluster ids (j-…) are generated for every cluster",
    ),
    (
        "emr-queue-name",
        # EMR names the queue it creates for a cluster after the cluster id (service-role docs:
        # "sqs:CreateQueue … AWS-ElasticMapReduce-*").
        re.compile(r"^(arn:[^:]+:sqs:[^:]*:[^:]*:AWS-ElasticMapReduce-)j-[0-9A-Z]{6,}.*$"),
        r"\1*",
        "EMR names its SQS queue after the generated cluster id",
    ),
    (
        "ec2-instance-id",
        re.compile(r"^(arn:[^:]+:ec2:[^:]*:[^:]*:instance/)i-[0-9a-f]{8,17}$"),
        r"\1*",
        "EC2 instance ids (i-…) are generated for every instance launched",
    ),
    (
        "lambda-log-stream",
        # Lambda names each execution environment's log stream date/[version]random-id.
        re.compile(r"^(arn:[^:]+:logs:[^:]*:[^:]*:log-group:/aws/lambda/[^:]+:log-stream:)"
                   r"\d{4}/\d{2}/\d{2}/\[[^\]]*\][0-9a-f]{32}$"),
        r"\1*",
        "Lambda generates a log stream name for every execution environment",
    ),
)
# Rules whose id must be shown created in the trail (the lambda-log-stream shape is enough by itself).
_NEEDS_EVIDENCE = frozenset({"emr-cluster-id", "emr-queue-name", "ec2-instance-id"})
_ID_IN_ARN = re.compile(r"\b(j-[0-9A-Z]{6,}|i-[0-9a-f]{8,17})\b")
# A path segment that is a cluster or instance id: EMR writes logs and step output under
# s3://…/logs/j-…/node/i-…/, named after the cluster and the instances it launched.
_ID_SEGMENT = re.compile(r"^(j-)[0-9A-Z]{6,}$|^(i-)[0-9a-f]{8,17}$")


def _ids_in_path(arn: str, created: Iterable[str] | frozenset[str]) -> tuple[str, str, str] | None:
    """An S3 object ARN with every path segment that is an id created in the trail widened to
    ``j-*`` / ``i-*``; what surrounds the ids stays, so next run's paths match and nothing else."""
    if ":s3:::" not in arn or ("j-" not in arn and "i-" not in arn):
        return None
    head, _, path = arn.partition(":s3:::")
    segments = path.split("/")
    changed = False
    for n, segment in enumerate(segments[1:], start=1):  # segment 0 is the bucket: a chosen name
        m = _ID_SEGMENT.match(segment)
        if m and segment in created:
            segments[n] = (m.group(1) or m.group(2)) + "*"
            changed = True
    if not changed:
        return None
    return ("generated-ids-in-path", f"{head}:s3:::{'/'.join(segments)}",
            "the path names cluster or instance ids a call in this trail created (EMR writes logs under"
            " logs/j-…/node/i-…/), which are new every run")


@dataclass(frozen=True, kw_only=True, slots=True)
class Widening:
    """One generalisation applied: ``original`` ARNs became ``widened`` (for the GENERALIZED finding)."""

    rule: str
    widened: str
    original: tuple[str, ...]
    why: str


def generated_id(arn: str, created: Iterable[str] | frozenset[str] = frozenset()) -> tuple[str, str, str] | None:
    """(rule, widened ARN, why) when ``arn`` holds an id generated per run, else None. For the id
    rules the id must be in ``created`` (returned by a creation call in the trail)."""
    if "j-" not in arn and ":instance/i-" not in arn and "/aws/lambda/" not in arn:
        return None  # every rule below needs one of these: skip the regexes for most ARNs
    for rule, pattern, repl, why in _ID_RULES:
        if pattern.match(arn):
            if rule in _NEEDS_EVIDENCE:
                ids = _ID_IN_ARN.findall(arn)
                if not ids or not any(i in created for i in ids):
                    return None
                why += ", and this one was created by a call in the trail"
            return rule, pattern.sub(repl, arn), why
    return None


def _object_parts(arn: str) -> tuple[str, str] | None:
    """(``arn:…:s3:::bucket/``, key) for an object ARN without wildcards, else None."""
    if ":s3:::" not in arn or "*" in arn or "?" in arn:
        return None
    head, sep, key = arn.partition(":s3:::")
    bucket, slash, key = key.partition("/")
    if not slash or not key:
        return None
    return f"{head}{sep}{bucket}/", key


def shared_prefix(keys: Iterable[str]) -> str:
    """The longest common prefix of ``keys`` cut back to a '/' boundary ('' when there is none)."""
    prefix = os.path.commonprefix(list(keys))
    cut = prefix.rfind("/")
    return prefix[: cut + 1] if cut >= 0 else ""


def created_in_trail(arn: str, created: Iterable[str] | frozenset[str]) -> tuple[str, str, str] | None:
    """(rule, widened ARN, why) when the ARN's last segment is an id a response in the trail created.

    Only EC2 and EMR ARNs: those are the services whose ids are collected (``sg-``, ``i-``, ``vol-``
    …, ``j-``); an S3 key that happens to end in such an id is a name the workload chose."""
    if ":ec2:" not in arn and ":elasticmapreduce:" not in arn:
        return None
    head, slash, last = arn.rpartition("/")
    if slash and last in created:
        return "created-in-trail", f"{head}/*", f"{last} was created by a call in this trail, so it is new every run"
    return None


def generalize(resources: Iterable[str], created: frozenset[str] | set[str] = frozenset()
               ) -> tuple[dict[str, str], list[Widening]]:
    """Map each resource ARN of one (principal, action, conditions) group to its generalised form.

    ``created`` are ids the trail shows AWS generating (in responses of creation calls). Returns
    (original -> generalised, widenings applied). Resources not widened map to themselves.
    """
    out: dict[str, str] = {}
    widened: dict[tuple[str, str, str], list[str]] = {}
    objects: dict[str, list[tuple[str, str]]] = {}
    for arn in resources:
        found = generated_id(arn, created) or created_in_trail(arn, created) or _ids_in_path(arn, created)
        if found is not None:
            rule, new, why = found
            out[arn] = new
            widened.setdefault((rule, new, why), []).append(arn)
            continue
        out[arn] = arn
        parts = _object_parts(arn)
        if parts is not None:
            objects.setdefault(parts[0], []).append((parts[1], arn))
    for bucket, items in objects.items():
        keys = sorted({key for key, _ in items})
        if len(keys) < 2:
            continue
        prefix = shared_prefix(keys)
        if not prefix:
            continue
        new = f"{bucket}{prefix}*"
        for _, arn in items:
            out[arn] = new
        widened.setdefault(("shared-key-prefix", new, f"{len(keys)} object keys share the prefix {prefix}"), []).extend(
            arn for _, arn in items
        )
    widenings = [
        Widening(rule=rule, widened=new, original=tuple(sorted(set(arns))), why=why)
        for (rule, new, why), arns in sorted(widened.items())
    ]
    return out, widenings
