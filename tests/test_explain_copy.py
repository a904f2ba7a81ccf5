"""``rolesmith explain`` on calls that need several permissions (CopyObject, UploadPartCopy).

A copy needs s3:GetObject on the source and s3:PutObject on the destination (API Reference CopyObject
and UploadPartCopy, "Permissions"), plus KMS on either key (shared/reference/SSE_KMS_AND_SECURE_INBOX.md
§1): the explanation must name whichever of them the policies refuse. The fixture cases
fixtures/explain/cases/copy_* hold the whole-record expectations; these tests vary one record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rolesmith.explain import explain_paths

CASES = Path(__file__).resolve().parent.parent / "fixtures" / "explain" / "cases"


def _copy_case(tmp_path: Path, name: str) -> Path:
    case = tmp_path / name
    shutil.copytree(CASES / name, case)
    return case


def _explain(case: Path):
    return explain_paths([case / "trail.jsonl"], policies_dir=case / "policies").explanations


def _rewrite(case: Path, edit) -> None:
    lines = (case / "trail.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        edit(record)
    (case / "trail.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_upload_part_copy_names_the_refused_destination(tmp_path: Path) -> None:
    case = _copy_case(tmp_path, "copy_missing_destination_allow")

    def to_part_copy(record: dict) -> None:
        record["eventName"] = "UploadPartCopy"
        record["requestParameters"].update({"uploadId": "EXAMPLEUPLOAD", "partNumber": "1"})

    _rewrite(case, to_part_copy)
    [e] = _explain(case)
    assert e.event == "s3:UploadPartCopy"
    assert e.reason == "MISSING_RESOURCE_ALLOW"
    assert (e.request.action, e.request.resource) == ("s3:PutObject", "arn:aws:s3:::partner-inbox/drop/report.csv")
    assert [(f.layer, f.target) for f in e.fixes] == [("resource", "arn:aws:s3:::partner-inbox")]


def test_source_and_destination_both_refused_propose_both_fixes(tmp_path: Path) -> None:
    case = _copy_case(tmp_path, "copy_missing_destination_allow")
    (case / "policies" / "identity" / "writer" / "copy.json").write_text(json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::partner-inbox/drop/*"}],
    }))
    [e] = _explain(case)
    assert e.reason == "MISSING_IDENTITY_ALLOW"
    assert e.request.action == "s3:GetObject"
    actions = [(f.layer, f.document["Statement"][0]["Action"]) for f in e.fixes]
    assert actions == [("identity", "s3:GetObject"), ("resource", "s3:PutObject")]
    assert any(n.startswith("the call also needs s3:PutObject on arn:aws:s3:::partner-inbox/") for n in e.notes)


def test_allowed_destination_key_then_the_trail_names_the_source_key(tmp_path: Path) -> None:
    """The request names the destination key, which allows; the refused Decrypt on the source key is
    only in the KMS event S3 made for the caller."""
    case = _copy_case(tmp_path, "copy_source_kms_key_trail")
    dest_key = "arn:aws:kms:us-east-1:111122223333:key/0000aaaa-0000-aaaa-0000-aaaa0000aaaa"

    def dest_sse(record: dict) -> None:
        if record["eventName"] == "CopyObject":
            record["requestParameters"].update({"x-amz-server-side-encryption": "aws:kms",
                                                "x-amz-server-side-encryption-aws-kms-key-id": dest_key})

    _rewrite(case, dest_sse)
    ident = case / "policies" / "identity" / "writer" / "copy.json"
    doc = json.loads(ident.read_text())
    doc["Statement"].append({"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": dest_key})
    ident.write_text(json.dumps(doc))
    (case / "policies" / "resource" / "kms" / "0000aaaa-0000-aaaa-0000-aaaa0000aaaa.json").write_text(json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                       "Action": "kms:*", "Resource": "*"}],
    }))
    copy = next(e for e in _explain(case) if e.event == "s3:CopyObject")
    assert copy.reason == "INDIRECT_KMS"
    assert [(f.layer, f.target, f.document["Statement"][0]["Action"]) for f in copy.fixes] == [
        ("key-policy", "arn:aws:kms:us-east-1:444455556666:key/9abc0123-9abc-0123-4567-89abcdef0123", "kms:Decrypt")]


def test_everything_allowed_is_not_blamed_on_either_side(tmp_path: Path) -> None:
    case = _copy_case(tmp_path, "copy_missing_destination_allow")
    bucket = case / "policies" / "resource" / "s3" / "partner-inbox.json"
    doc = json.loads(bucket.read_text())
    doc["Statement"][0]["Action"] = ["s3:GetObject", "s3:PutObject"]
    bucket.write_text(json.dumps(doc))
    [e] = _explain(case)
    assert e.reason == "UNKNOWN" and e.fixes == ()
