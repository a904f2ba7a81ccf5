"""OBJECT_OWNERSHIP: an object uploaded by another account without bucket-owner-full-control is owned
by the uploader, so the bucket owner (and CloudFront's origin identity) is refused and the bucket policy
does not apply (shared/reference/s3_kms/s3-ug__about-object-ownership.md; shared/seeds 001). A CloudFront
origin access identity logs userIdentity {type: AWSAccount, accountId: CloudFront}, origin access control
{type: AWSService, invokedBy: cloudfront.amazonaws.com} (awsteele.com, "CloudFront-triggered S3 data
event formats", 2025-02).
"""

from __future__ import annotations


from rolesmith.evaluator import Request
from rolesmith.explain import fixes as fx
from rolesmith.explain.common import Out, READS, Store
from rolesmith.explain.model import Basis
from rolesmith.explain.requests import s3_bucket_owner
from rolesmith.explain.trailindex import TrailIndex, invoking_service
from rolesmith.trail.model import Event


def object_ownership(event: Event, req: Request | None, trail: TrailIndex, store: Store | None) -> Out | None:
    if not event.source.startswith("s3.") or event.name not in READS:
        return None
    bucket, key = event.request.get("bucketName"), event.request.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return None
    owner = s3_bucket_owner(event) or event.account
    cloudfront = (event.caller_account or "").lower() == "cloudfront" or invoking_service(event) == "cloudfront.amazonaws.com"
    caller_account = req.principal_account if req is not None else event.caller_account
    if not cloudfront and (owner is None or caller_account != owner):
        return None
    who = "the CloudFront origin identity" if cloudfront else f"bucket owner account {owner}"
    foreign = [u for u in trail.uploads.get(f"{bucket}/{key}", ())
               if u.account and u.account != owner and u.acl != "bucket-owner-full-control"]
    live = getattr(store, "object_ownership", None)
    basis: Basis = "trail"
    uploader = foreign[-1].uploader if foreign else None
    if not foreign and callable(live):
        info = live(bucket, key)  # (object owner account or id, bucket owner, ObjectOwnership setting) or None
        if not info or info[0] == info[1] or info[2] == "BucketOwnerEnforced":
            return None
        basis = "policies"
    elif not foreign:
        return None
    bucket_arn = f"arn:{event.partition}:s3:::{bucket}"
    origin = f" ({foreign[-1].origin})" if foreign and foreign[-1].origin else ""
    return Out(
        reason="OBJECT_OWNERSHIP", basis=basis, layer="s3-ownership",
        summary=f"s3:{event.name} of s3://{bucket}/{key} was refused to {who}: the object was uploaded by another "
        f"account{' (' + uploader + ')' if uploader else ''}{origin} without bucket-owner-full-control, so that "
        "account owns it and the bucket policy does not apply to it",
        fixes=fx.ownership_fixes(bucket_arn, uploader),
        notes=("objects uploaded before the fix stay foreign-owned unless Object Ownership is BucketOwnerEnforced "
               "(s3-ug__about-object-ownership.md)",),
    )
