"""Every real CloudTrail file under ../shared/data/cloudtrail/ ingests without a crash, with counts.

Provenance of the corpus: ../shared/data/SOURCES.md. Files holding records that are deliberately
malformed or not CloudTrail at all are listed in KNOWN_BAD with the first problem rolesmith must
report (exit code 2, one line naming the file) unless --skip-bad is given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rolesmith.trail import TrailError, read_trail

ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cloudtrail"
FILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()) if ROOT.is_dir() else []

# file -> problem kind of the first bad record (or of the whole file)
KNOWN_BAD = {
    # CLI v1 doc example: a multi-line CloudTrailEvent string is invalid JSON (SOURCES.md).
    "lookup_events_format/ct_ug_view-cloudtrail-events-cli_example.MALFORMED.json": "invalid-json",
    # Not CloudTrail JSON: a CSV of a honey-bucket alert export.
    "otrf/AWS_S3_HoneyBucketLogs.csv": "invalid-json",
    # Hand-edited rule test events: some lack eventTime / eventSource or carry "redacted" times.
    "panther/panther_cloudtrail_test_events.jsonl": "missing-eventTime",
    # The S3 guides' fenced blocks include EventBridge event patterns (eventSource as a list).
    "awsdocs_examples/amazon-s3-userguide.jsonl": "not-an-event",
    "awsdocs_examples/amazon-s3-developer-guide.jsonl": "not-an-event",
}


def _skip_if_absent() -> None:
    if not ROOT.is_dir():
        pytest.skip(f"../shared/ not present: {ROOT} holds the public CloudTrail corpus")


@pytest.mark.parametrize("name", FILES or ["<absent>"])
def test_file_ingests_with_counts(name: str) -> None:
    _skip_if_absent()
    path = ROOT / name
    if name in KNOWN_BAD:
        with pytest.raises(TrailError) as err:
            list(read_trail([path]))
        assert err.value.exit_code == 2 and err.value.kind == KNOWN_BAD[name]
        assert str(err.value).startswith(f"{path}: ") and "--skip-bad" in str(err.value)
        assert "\n" not in str(err.value)
    reader = read_trail([path], skip_bad=name in KNOWN_BAD)
    events = list(reader)
    report = reader.report
    assert report.files == 1 and len(events) == report.events
    assert any(line.startswith("read 1 file, ") for line in report.lines())
    if name in KNOWN_BAD:
        assert report.skipped, "the bad records must be reported, not silently dropped"
        if name.endswith(".csv") or "MALFORMED" in name:
            return
    assert report.records > 0 and report.events > 0
    assert report.events + sum(report.skipped.values()) + report.duplicates == report.records
    # Unattributable events are counted, and nothing without a principal is attributed.
    assert report.unattributable == sum(1 for e in events if e.principal is None)


def test_cross_account_copy_in_the_iam_guide_is_deduplicated() -> None:
    _skip_if_absent()
    # iam-user-guide cloudtrail-integration.md: the caller's AssumeRole (IAMUser in 777788889999) and the
    # role account's copy (type AWSAccount) share sharedEventID / requestID.
    reader = read_trail([ROOT / "awsdocs_examples" / "iam-user-guide.jsonl"])
    events = list(reader)
    assert reader.report.duplicates == 1
    shared = [e for e in events if e.shared_event_id == "bEXAMPLE-efea-4a70-b951-19a88EXAMPLE"]
    assert [e.principal.arn if e.principal else None for e in shared] == ["arn:aws:iam::777788889999:user/JohnDoe"]
    assert all("sessionToken" not in (e.response.get("credentials") or {}) for e in events)


def test_identity_stripped_console_events_are_all_unattributable() -> None:
    _skip_if_absent()
    # Permiso's inputs carry no userIdentity (SOURCES.md): they must be counted, never attributed.
    reader = read_trail([ROOT / "permiso_console_cartographer"])
    events = list(reader)
    assert reader.report.files == 32 and reader.report.events == 9226
    assert reader.report.unattributable == 9226 and all(e.principal is None for e in events)


def test_logstash_flattened_events_take_their_time_from_timestamp() -> None:
    _skip_if_absent()
    events = list(read_trail([ROOT / "otrf" / "ec2_proxy_s3_exfiltration_2020-09-14011940.json"]))
    assert len(events) == 103 and all(e.time is not None for e in events)
