"""read_trail(): every shape of CloudTrail input → one stream of Events, with an ingest report."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from rolesmith.errors import RolesmithError
from rolesmith.trail import IngestReport, TrailError, read_trail

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trail"
SHAPES = sorted(p.name for p in (FIXTURES / "shapes").iterdir())
BAD = {k: v for k, v in json.loads((FIXTURES / "bad.json").read_text()).items() if not k.startswith("_")}
ROLE = "arn:aws:iam::111122223333:role/service-role/app-role"
IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in (1, 2, 3)]


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_yields_the_same_events(name: str) -> None:
    reader = read_trail([FIXTURES / "shapes" / name])
    events = list(reader)
    expect_ids = IDS[:1] if name == "single-event.json" else IDS
    assert [e.event_id for e in events] == expect_ids
    assert [e.name for e in events] == ["PutObject", "GenerateDataKey", "GetObject"][: len(expect_ids)]
    assert all(e.principal is not None and e.principal.arn == ROLE for e in events)
    assert [e.time for e in events] == [1704189600.0 + i for i in (1, 2, 3)][: len(expect_ids)]
    if len(events) == 3:
        assert events[1].invoked_by == "s3.amazonaws.com"
        assert events[2].error_code == "NoSuchKey"
        assert events[0].request["bucketName"] == "inbox-a"
    files = 2 if name == "awslogs" else 1  # the digest file is not read
    assert reader.report == IngestReport(files=files, records=len(expect_ids), events=len(expect_ids))


def test_origin_names_file_and_record_index() -> None:
    path = FIXTURES / "shapes" / "recording.jsonl"
    assert [e.origin for e in read_trail([path])] == [f"{path}#{i}" for i in range(3)]


def test_directory_walk_is_sorted_and_skips_digests_and_other_files(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shapes" / "awslogs", tmp_path / "t")
    (tmp_path / "t" / "README.txt").write_text("not a trail")
    reader = read_trail([tmp_path / "t"])
    origins = [e.origin.rsplit("/", 1)[1] for e in reader]
    assert origins == [
        "111122223333_CloudTrail_us-east-1_20240102T1000Z_aaaa.json.gz#0",
        "111122223333_CloudTrail_us-east-1_20240102T1000Z_aaaa.json.gz#1",
        "111122223333_CloudTrail_us-east-1_20240102T1005Z_bbbb.json.gz#0",
    ]
    assert reader.report.files == 2
    assert reader.report.warnings == {"ignored-non-json-file": 1}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_error_naming_file_and_record(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = BAD[name]
    monkeypatch.chdir(FIXTURES)
    reader = read_trail([name])
    seen = []
    with pytest.raises(TrailError) as err:
        for event in reader:
            seen.append(event)
    assert str(err.value) == case["error"]
    assert "\n" not in str(err.value)
    assert isinstance(err.value, RolesmithError) and err.value.exit_code == 2
    assert (err.value.kind, err.value.path, err.value.index) == (case["kind"], name, case["index"])
    # Streaming: what came before the bad record was already handed on.
    assert len(seen) == case.get("events_before_error", 0)


@pytest.mark.parametrize("name", sorted(BAD))
def test_skip_bad_goes_on_and_counts_per_kind(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = BAD[name]["report"]
    monkeypatch.chdir(FIXTURES)
    reader = read_trail([name], skip_bad=True)
    events = list(reader)
    report = reader.report
    assert len(events) == report.events == case["events"]
    assert (report.files, report.records, report.skipped, report.warnings) == (
        1,
        case["records"],
        case["skipped"],
        case["warnings"],
    )


def test_skip_bad_keeps_a_record_missing_only_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    events = list(read_trail(["bad/missing-eventtime.jsonl"], skip_bad=True))
    assert [e.time is None for e in events] == [True, False, False]
    assert events[0].name == "PutObject" and events[0].principal is not None


def test_skip_bad_continues_with_the_next_file() -> None:
    reader = read_trail([FIXTURES / "bad" / "truncated.json.gz", FIXTURES / "shapes" / "log-file.json"], skip_bad=True)
    assert len(list(reader)) == 3
    assert (reader.report.files, reader.report.skipped) == (2, {"truncated-gzip": 1})


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrailError) as err:
        list(read_trail([tmp_path / "nope.json"]))
    assert str(err.value) == f"{tmp_path / 'nope.json'}: no such file or directory"


def test_cross_account_copy_is_deduplicated_in_either_order() -> None:
    a = FIXTURES / "cross-account" / "a-resource-account.json"
    b = FIXTURES / "cross-account" / "b-caller-account.json"
    for order in ([a, b], [b, a]):
        reader = read_trail(order)
        events = list(reader)
        assert [(e.event_id, e.principal.arn if e.principal else None) for e in events] == [
            ("11111111-0000-4000-8000-000000000001", "arn:aws:iam::444455556666:user/deployer")
        ]
        assert (reader.report.duplicates, reader.report.unattributable, reader.report.events) == (1, 0, 1)
    # The caller's AssumeRole response carried a session token: it is not kept.
    assert "sessionToken" not in events[0].response["credentials"]


def test_cross_account_copy_alone_is_unattributable_never_attributed() -> None:
    reader = read_trail([FIXTURES / "cross-account" / "a-resource-account.json"])
    events = list(reader)
    assert len(events) == 1 and events[0].principal is None
    assert events[0].identity_type == "AWSAccount" and events[0].caller_account == "444455556666"
    assert (reader.report.unattributable, reader.report.duplicates) == (1, 0)


def test_unattributable_events_are_counted(tmp_path: Path) -> None:
    records = json.loads((FIXTURES / "shapes" / "array.json").read_text())
    del records[0]["userIdentity"]
    records[1]["userIdentity"] = {"type": "Unknown", "principalId": "x"}
    (tmp_path / "t.json").write_text(json.dumps(records))
    reader = read_trail([tmp_path / "t.json"])
    assert [e.principal is None for e in reader] == [True, True, False]
    assert reader.report.unattributable == 2


def test_iterating_again_rereads_and_resets_the_report() -> None:
    reader = read_trail([FIXTURES / "shapes" / "log-file.json"])
    assert len(list(reader)) == 3
    assert len(list(reader)) == 3
    assert reader.report.records == 3


def test_streaming_does_not_read_ahead(tmp_path: Path) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in json.loads((FIXTURES / "shapes" / "array.json").read_text()))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (tmp_path / "b.jsonl").write_text("{not json\n")
    reader = read_trail([tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"])
    iterator = iter(reader)
    next(iterator)
    assert (reader.report.files, reader.report.events) == (1, 1)


def test_report_lines() -> None:
    report = IngestReport(
        files=2,
        records=10,
        events=7,
        unattributable=1,
        duplicates=1,
        skipped={"missing-eventSource": 1, "invalid-json": 1},
        warnings={"missing-eventTime": 2},
    )
    assert report.lines() == [
        "read 2 files, 10 records: 7 events, 1 unattributable (no principal, not attributed), "
        "1 cross-account duplicates dropped",
        "skipped 2 bad: invalid-json 1, missing-eventSource 1",
        "warnings: missing-eventTime 2",
    ]


def test_every_resource_account_copy_is_kept_even_without_ids(tmp_path: Path) -> None:
    copy = json.loads((FIXTURES / "cross-account" / "a-resource-account.json").read_text())["Records"][0]
    bare = {k: v for k, v in copy.items() if k not in ("eventID", "requestID", "sharedEventID")}
    (tmp_path / "t.json").write_text(json.dumps([copy, copy, bare, bare]))
    reader = read_trail([tmp_path / "t.json"])
    events = list(reader)
    assert len(events) == 4 and all(e.principal is None for e in events)
    assert (reader.report.unattributable, reader.report.duplicates) == (4, 0)


@pytest.mark.parametrize("name", ["log-file.json", "recording.jsonl"])
def test_utf8_byte_order_mark_is_accepted(name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "shapes" / name).read_bytes())
    assert [e.event_id for e in read_trail([tmp_path / name])] == IDS


def test_a_call_delivered_to_several_accounts_drops_every_copy(tmp_path: Path) -> None:
    # record-contents.md, sharedEventID: every copy of a call delivered to several accounts shares it.
    a = FIXTURES / "cross-account" / "a-resource-account.json"
    copy = json.loads(a.read_text())["Records"][0]
    other = dict(copy, eventID="11111111-0000-4000-8000-000000000003", recipientAccountId="999999999999")
    (tmp_path / "copies.json").write_text(json.dumps([copy, other]))
    (tmp_path / "late-copy.json").write_text(json.dumps(dict(other, eventID="11111111-0000-4000-8000-000000000004")))
    b = FIXTURES / "cross-account" / "b-caller-account.json"
    reader = read_trail([tmp_path / "copies.json", b, tmp_path / "late-copy.json"])
    events = list(reader)
    assert [e.principal.arn if e.principal else None for e in events] == ["arn:aws:iam::444455556666:user/deployer"]
    assert (reader.report.duplicates, reader.report.unattributable) == (3, 0)
