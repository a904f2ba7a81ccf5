"""Read every shape of CloudTrail users hold, as one stream of ``Event``s.

Shapes (detected from the content, not the file name; gzip from its magic bytes):

- a CloudTrail log file ``{"Records": [...]}`` (``.json`` / ``.json.gz``), or a directory tree of
  them (``AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/…``; walked in sorted order; digest files
  under ``CloudTrail-Digest`` are skipped);
- a single event object, or a JSON array of events;
- JSON Lines, one event per line (rolesmith's own recording format; ``.jsonl`` / ``.ndjson`` and
  their ``.gz`` forms are streamed line by line);
- a LookupEvents response ``{"Events": [{"CloudTrailEvent": "<json string>", …}]}`` as printed by
  the AWS CLI, by ``json.dumps(response, default=str)``, or by ``print(response)`` in boto3 (a Python
  literal with ``datetime.datetime(…)`` values);
- wrappers around one event: a CloudWatch Logs Insights export ``{"@message": …}``, an EventBridge
  "AWS API Call via CloudTrail" event ``{"detail": …}``, and ``{"event": …}`` (Panther, SIEM exports).

Memory does not grow with the number of events: files are read one at a time and events are
yielded as they are normalised. The only state kept across files is for cross-account copies
(``userIdentity.type = AWSAccount``; see ``TrailReader``).
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson

from rolesmith.errors import RolesmithError
from rolesmith.trail.model import Event
from rolesmith.trail.normalize import BadRecord, normalize

__all__ = ["IngestReport", "TrailError", "TrailReader", "read_trail"]

_FIX_RECORD = "fix or remove the record, or pass --skip-bad"
_FIX_FILE = "fix or remove the file, or pass --skip-bad"
_TRAIL_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
_LINE_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
# boto3 prints timestamps as datetime.datetime(2021, 11, 18, 9, 41, 2, tzinfo=tzlocal()).
_BOM = b"\xef\xbb\xbf"
_PY_DATETIME = re.compile(r"datetime\.datetime\((?:[^()]|\([^()]*\))*\)")


class TrailError(RolesmithError):
    """Bad trail input: one line naming the file (and record index) and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, kind: str, path: str, index: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path
        self.index = index


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestReport:
    """What one pass over the inputs read.

    ``records`` counts every record slot seen (good or bad); ``events`` the ``Event``s yielded;
    ``unattributable`` those among them with no principal; ``duplicates`` the resource-account
    copies of cross-account calls dropped because the caller's copy was also read; ``skipped``
    counts bad records (or whole files) per problem kind (only with ``skip_bad``); ``warnings``
    counts usable oddities per kind (e.g. ``missing-eventTime``: kept with ``time=None``).
    """

    files: int = 0
    records: int = 0
    events: int = 0
    unattributable: int = 0
    duplicates: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    warnings: Mapping[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A short human summary (the CLI prints it on stderr)."""
        out = [
            f"read {self.files} file{'s' if self.files != 1 else ''}, {self.records} records: "
            f"{self.events} events, {self.unattributable} unattributable (no principal, not attributed), "
            f"{self.duplicates} cross-account duplicates dropped"
        ]
        if self.skipped:
            detail = ", ".join(f"{kind} {n}" for kind, n in sorted(self.skipped.items()))
            out.append(f"skipped {sum(self.skipped.values())} bad: {detail}")
        if self.warnings:
            detail = ", ".join(f"{kind} {n}" for kind, n in sorted(self.warnings.items()))
            out.append(f"warnings: {detail}")
        return out


class _Counts:
    __slots__ = ("files", "records", "events", "unattributable", "duplicates", "skipped", "warnings")

    def __init__(self) -> None:
        self.files = self.records = self.events = self.unattributable = self.duplicates = 0
        self.skipped: dict[str, int] = {}
        self.warnings: dict[str, int] = {}


class _Stop(Exception):
    """A file-level problem under ``skip_bad``: counted, and reading goes on with the next file."""


def _is_digest(path: str) -> bool:
    return "CloudTrail-Digest" in path


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """Files under ``root`` in sorted order, flagged whether they look like trail files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "CloudTrail-Digest")
        for name in sorted(filenames):
            if name.startswith(".") or _is_digest(name):
                continue
            yield Path(dirpath, name), name.lower().endswith(_TRAIL_SUFFIXES)


def _unwrap(item: Any) -> Any:
    """One top-level item → the raw records in it (a list) or the single record itself."""
    if type(item) is not dict:
        return item
    if "eventSource" in item:
        return item
    records = item.get("Records")
    if type(records) is list:
        return records
    events = item.get("Events")
    if type(events) is list:
        return [_lookup_event(e) for e in events]
    message = item.get("@message")
    if message is not None:
        return _decode_embedded(message)
    inner = item.get("detail")
    if type(inner) is dict and ("detail-type" in item or "eventSource" in inner):
        return inner
    inner = item.get("event")
    if type(inner) is dict:
        return inner
    return item


class _Embedded:
    """A record held as a JSON string (LookupEvents ``CloudTrailEvent``, Insights ``@message``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _decode_embedded(value: Any) -> Any:
    if type(value) is str:
        return _Embedded(value)
    return value


def _lookup_event(entry: Any) -> Any:
    if type(entry) is dict and "CloudTrailEvent" in entry:
        return _decode_embedded(entry["CloudTrailEvent"])
    return entry


class TrailReader:
    """An iterable of ``Event``s over trail inputs, with ``.report`` counting what was read.

    Each iteration re-reads the inputs from the start and resets the counts, so a consumer may make
    several passes. ``report`` is a snapshot of the current (or last) pass.

    Cross-account copies: a call from account A to a resource in account B is logged in both
    trails; B's copy names only account A (``userIdentity.type = AWSAccount``). Such a copy is held
    back until the end of the pass: if the caller's copy (same ``sharedEventID``, ``requestID`` or
    ``eventID``) is read, the held copy is dropped and counted in ``duplicates``; otherwise it is
    yielded at the end as an unattributable event (``principal=None``, ``caller_account`` set).
    A copy read after its caller's copy is matched by ``sharedEventID`` alone, the id CloudTrail
    documents for events delivered to several accounts (record-contents reference). Only the held
    copies and a hash of each caller's ``sharedEventID`` are remembered, so memory grows with
    cross-account calls only.
    """

    def __init__(self, paths: Sequence[str | Path], *, skip_bad: bool = False) -> None:
        self._paths = [Path(p) for p in paths]
        self._skip_bad = skip_bad
        self._counts = _Counts()

    @property
    def report(self) -> IngestReport:
        c = self._counts
        return IngestReport(
            files=c.files,
            records=c.records,
            events=c.events,
            unattributable=c.unattributable,
            duplicates=c.duplicates,
            skipped=dict(c.skipped),
            warnings=dict(c.warnings),
        )

    # -- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        counts = self._counts = _Counts()
        # hash(sharedEventID) of caller events delivered to several accounts: ints, not the strings,
        # because this is the one set that grows with the trail (one entry per cross-account call).
        caller_shared: set[int] = set()
        held: list[list[Any]] = []  # [event, still held?] per resource-account copy, in order read
        pending: dict[str, list[list[Any]]] = {}  # id -> the held copies carrying it
        for path in self._files(counts):
            counts.files += 1
            for event in self._file_events(path, counts):
                if event.principal is None:
                    if event.identity_type == "AWSAccount":
                        if event.shared_event_id and hash(event.shared_event_id) in caller_shared:
                            counts.duplicates += 1
                            continue
                        keys = _keys(event)
                        slot = [event, True]
                        held.append(slot)
                        for k in keys:
                            pending.setdefault(k, []).append(slot)
                        continue
                    counts.unattributable += 1
                elif event.shared_event_id is not None or pending:
                    if pending:
                        _release(pending, event, counts)
                    if event.shared_event_id:
                        caller_shared.add(hash(event.shared_event_id))
                counts.events += 1
                yield event
        for slot in held:
            if slot[1]:
                counts.events += 1
                counts.unattributable += 1
                yield slot[0]

    def _files(self, counts: _Counts) -> Iterator[Path]:
        for path in self._paths:
            if path.is_dir():
                for file, looks_like_trail in _walk(path):
                    if looks_like_trail:
                        yield file
                    else:
                        _bump(counts.warnings, "ignored-non-json-file")
            elif path.exists():
                yield path
            else:
                raise TrailError(f"{path}: no such file or directory", kind="missing-file", path=str(path))

    def _file_events(self, path: Path, counts: _Counts) -> Iterator[Event]:
        name = str(path)
        skip_bad = self._skip_bad
        index = 0
        try:
            for item in self._items(path, name):
                raws = _unwrap(item)
                if type(raws) is not list:
                    raws = (raws,)
                for raw in raws:
                    counts.records += 1
                    origin = f"{name}#{index}"
                    try:
                        if type(raw) is not dict:
                            raw = _resolve(raw)
                        event = normalize(raw, origin, allow_missing_time=skip_bad)
                    except BadRecord as err:
                        if not skip_bad:
                            raise TrailError(
                                f"{name}: record {index}: {err.problem}; {_FIX_RECORD}",
                                kind=err.kind,
                                path=name,
                                index=index,
                            ) from None
                        _bump(counts.skipped, err.kind)
                        index += 1
                        continue
                    index += 1
                    if event.time is None:
                        _bump(counts.warnings, "missing-eventTime")
                    yield event
        except _Stop as stop:
            _bump(counts.skipped, str(stop))

    def _items(self, path: Path, name: str) -> Iterator[Any]:
        """Top-level JSON items of one file: the document, its array items, or its lines."""
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as err:
            raise TrailError(f"{name}: cannot read: {err.strerror}", kind="unreadable", path=name) from None
        with file:
            stream: Any = file
            if file.read(2) == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=file, mode="rb")
            file.seek(0)
            if name.lower().endswith(_LINE_SUFFIXES):
                yield from self._lines(stream, name)
                return
            data = self._read_all(stream, name)
        if data[:3] == _BOM:  # Windows tools write one; orjson does not accept it
            data = data[3:]
        if not data.strip():
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            if err.msg.startswith("Not enough memory"):  # orjson reports allocation failure this way
                raise MemoryError(f"{name}: {err.msg}") from None
            doc = self._not_one_document(data, name, err)
            if doc is None:  # JSON Lines under a .json name
                yield from self._lines(iter(data.splitlines()), name)
                return
        if type(doc) is list:
            yield from doc
        else:
            yield doc

    def _read_all(self, stream: Any, name: str) -> bytes:
        try:
            return stream.read()
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
            self._file_problem(
                name,
                "truncated-gzip",
                f"{name}: truncated or corrupt gzip ({err}); no record could be read from it; "
                f"download the file again, or pass --skip-bad",
            )
        return b""  # pragma: no cover - _file_problem raised

    def _not_one_document(self, data: bytes, name: str, err: orjson.JSONDecodeError) -> Any:
        """Decode a file that is not one JSON document: JSON Lines (→ None) or a boto3 printout."""
        first = data.lstrip()[:2]
        if first[:1] == b"{" and b"\n" in data.strip():
            line = data.lstrip().split(b"\n", 1)[0]
            try:
                if type(orjson.loads(line)) is dict:
                    return None
            except orjson.JSONDecodeError:
                pass
        if first == b"{'" or first == b"['":
            text = _PY_DATETIME.sub("None", data.decode("utf-8", "replace"))
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        line, col = err.lineno, err.colno
        problem = "not JSON (a CSV export?)" if line == 1 and col == 1 else f"invalid JSON at line {line} column {col}"
        self._file_problem(
            name,
            "invalid-json",
            f"{name}: {problem}: {err.msg}; rolesmith reads CloudTrail JSON ({_FIX_FILE})",
        )
        return None  # pragma: no cover - _file_problem raised

    def _lines(self, lines: Iterable[bytes], name: str) -> Iterator[Any]:
        number = 0
        try:
            for line in lines:
                number += 1
                if number == 1 and line[:3] == _BOM:
                    line = line[3:]
                if not line.strip():
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    yield _BadLine(number, err.msg)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            self._file_problem(
                name,
                "truncated-gzip",
                f"{name}: truncated or corrupt gzip after line {number} ({err}); the records before it "
                f"were read; download the file again, or pass --skip-bad",
            )

    def _file_problem(self, name: str, kind: str, message: str) -> None:
        if self._skip_bad:
            raise _Stop(kind)
        raise TrailError(message, kind=kind, path=name)


class _BadLine:
    """An undecodable JSON line, carried to the record loop so it is counted at its index."""

    __slots__ = ("number", "msg")

    def __init__(self, number: int, msg: str) -> None:
        self.number = number
        self.msg = msg


def _resolve(raw: Any) -> Any:
    """A record held as a placeholder → the decoded record (or ``BadRecord``)."""
    kind = type(raw)
    if kind is _Embedded:
        try:
            return orjson.loads(raw.text)
        except orjson.JSONDecodeError as err:
            raise BadRecord("invalid-json", f"embedded event is not valid JSON: {err.msg}") from None
    if kind is _BadLine:
        raise BadRecord("invalid-json", f"line {raw.number} is not valid JSON: {raw.msg}")
    return raw


def _keys(event: Event) -> list[str]:
    keys = []
    if event.shared_event_id:
        keys.append("s" + event.shared_event_id)
    if event.request_id:
        keys.append("r" + event.request_id)
    if event.event_id:
        keys.append("e" + event.event_id)
    return keys


def _release(pending: dict[str, list[list[Any]]], event: Event, counts: _Counts) -> None:
    """Drop the held resource-account copies of this caller event: every copy with its
    ``sharedEventID`` (one call can be delivered to several accounts), else one with its
    ``requestID`` / ``eventID``."""
    if event.shared_event_id:
        released = False
        for slot in pending.get("s" + event.shared_event_id, ()):
            if slot[1]:
                slot[0], slot[1] = None, False
                counts.duplicates += 1
                released = True
        if released:
            return
    for k in _keys(event)[1 if event.shared_event_id else 0 :]:
        for slot in pending.get(k, ()):
            if slot[1]:
                slot[0], slot[1] = None, False
                counts.duplicates += 1
                return


def _bump(counter: dict[str, int], kind: str) -> None:
    counter[kind] = counter.get(kind, 0) + 1


def read_trail(paths: Sequence[str | Path], *, skip_bad: bool = False) -> TrailReader:
    """Stream the ``Event``s of every trail input in ``paths`` (files or directories).

    By default the first bad record or file raises ``TrailError`` (exit code 2) naming the file and
    record index; with ``skip_bad`` it is counted in ``report.skipped`` and reading goes on. A record
    missing only ``eventTime`` is kept with ``time=None`` under ``skip_bad`` (counted in
    ``report.warnings``) and is an error otherwise.
    """
    return TrailReader(paths, skip_bad=skip_bad)
