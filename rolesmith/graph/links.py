"""Invoked-by links: which client call made an AWS service act for the principal.

A service-invoked use (KMS GenerateDataKey by ``s3.amazonaws.com``, EC2 calls under the EMR service
role) is linked to the use that triggered it: same principal (or the role the call passed), a context
ARN in common (the encryption context's object or bucket, the passed role) and close in time.
"""

from __future__ import annotations

from typing import Any

from rolesmith.graph.model import UseKey, use_sort_key as _sort_key

# A service-invoked call made for the same principal (KMS data key for an S3 upload) happens while
# the triggering request runs: CloudTrail times of the two differ by seconds. 15 minutes leaves room
# for clock granularity and slow multipart uploads without linking unrelated calls of a long trail.
LINK_WINDOW_S = 900.0


def _distance(a: list[Any], b: list[Any]) -> float:
    """Gap between two [first, last] time spans (0 when they overlap or a time is unknown)."""
    if None in (a[0], a[1], b[0], b[1]):
        return 0.0
    if a[1] < b[0]:
        return b[0] - a[1]
    if b[1] < a[0]:
        return a[0] - b[1]
    return 0.0


def _via_service(via: str) -> str | None:
    """IAM prefix of the service that made a call for the principal (None for "AWS Internal")."""
    if not via.endswith(".amazonaws.com"):
        return None
    try:
        from rolesmith.actions.dataset import service_for_source

        found = service_for_source(via)
    except ImportError:  # pragma: no cover - the mapping package ships with rolesmith
        found = None
    return found or via.split(".", 1)[0]


def compute_links(by_key: dict[UseKey, Any], principals: dict[str, Any]) -> dict[UseKey, UseKey]:
    """invoked use -> triggering use, for every service-invoked use that can be linked.

    ``by_key`` maps each use to its statistics (``first``/``last`` seen, ``contexts``, ``match``);
    ``principals`` holds every principal ARN seen.
    """
    # Index client calls by (context ARN, principal): context ARNs are the call's own resource,
    # its bucket (S3 Bucket Keys put the bucket ARN in the encryption context) and roles the call
    # passed. An invoked use only links to its own principal's calls, except through the role it
    # runs as (a role passed to a service), so it meets just the candidates that can win, instead
    # of every call on a shared bucket. Rank and service prefix are computed once per call.
    invoked = [key for key, s in by_key.items() if key.via is not None and s.match]
    if not invoked:
        return {}
    by_context: dict[tuple[str, str], list[tuple[UseKey, list[Any], str, int]]] = {}
    by_role: dict[str, list[tuple[UseKey, list[Any], str, int]]] = {}  # context ARNs that are principals
    for key, s in by_key.items():
        if key.via is not None:
            continue
        service, _, name = key.action.partition(":")
        rank = _data_rank_parts(key.action, name)
        entry = (key, [s.first, s.last], service, rank)
        who = key.principal
        resource = key.resource
        if resource != "*":
            by_context.setdefault((resource, who), []).append(entry)
            if resource in principals:
                by_role.setdefault(resource, []).append(entry)
            if resource.startswith("arn:") and ":s3:::" in resource:
                rest = resource.split(":::", 1)[1]
                bucket, slash, _ = rest.partition("/")
                if bucket and slash:
                    partition = resource.split(":", 2)[1]
                    barn = f"arn:{partition}:s3:::{bucket}"
                    by_context.setdefault((barn, who), []).append(entry)
                    if barn in principals:
                        by_role.setdefault(barn, []).append(entry)
        if s.contexts:
            for arn, cspan in s.contexts.items():
                centry = (key, cspan, service, rank)
                by_context.setdefault((arn, who), []).append(centry)
                if arn in principals:
                    by_role.setdefault(arn, []).append(centry)
    links: dict[UseKey, UseKey] = {}
    for key in sorted(invoked, key=_sort_key):
        stats = by_key[key]
        service = _via_service(key.via or "")
        me = key.principal
        best: tuple[Any, ...] | None = None
        best_cand: UseKey | None = None
        for arn, span in stats.match.items():  # type: ignore[union-attr]
            for cand, cspan, cservice, rank in by_context.get((arn, me), ()):
                if service is not None and cservice != service:
                    continue
                gap = _distance(span, cspan)
                if gap > LINK_WINDOW_S:
                    continue
                score = (0 if cand.resource == arn else 1, rank, gap, 0)
                if best is None or score < best or (score == best and _sort_key(cand) < _sort_key(best_cand)):
                    best, best_cand = score, cand
            if arn != me:
                continue
            for cand, cspan, cservice, rank in by_role.get(arn, ()):
                if cand.principal == me or (service is not None and cservice != service):
                    continue  # same-principal calls were scored above
                # A role passed to a service: the service's calls follow the passing call.
                if None not in (cspan[0], span[1]) and cspan[0] > span[1]:
                    continue
                score = (0 if cand.resource == arn else 1, rank, 0.0, 1)
                if best is None or score < best or (score == best and _sort_key(cand) < _sort_key(best_cand)):
                    best, best_cand = score, cand
        if best_cand is not None:
            links[key] = best_cand
    return links


# Calls that make a service use KMS for the caller (the ones that read or write the encrypted value):
# preferred as triggers over metadata calls on the same resource. Sources: Secrets Manager "How AWS
# Secrets Manager uses AWS KMS" (GetSecretValue decrypts, CreateSecret/PutSecretValue/UpdateSecret
# encrypt), Systems Manager "How Parameter Store uses AWS KMS" (GetParameter(s) with decryption,
# PutParameter of a SecureString), S3 (object reads and writes: s3_kms/s3-ug__UsingKMSEncryption.md).
_DATA_ACTIONS = frozenset({
    "secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue", "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:RotateSecret",
    "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:PutParameter",
    "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
})


def _data_rank_parts(action: str, name: str) -> int:
    if action in _DATA_ACTIONS:
        return 0
    return 2 if name.startswith(("Describe", "List", "Head", "GetResourcePolicy")) else 1
