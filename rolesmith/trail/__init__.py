"""The trail stage: read every shape of CloudTrail users hold and normalise it into ``Event``s."""

from rolesmith.trail.ingest import IngestReport, TrailError, TrailReader, read_trail
from rolesmith.trail.model import Event, Principal, is_access_denied
from rolesmith.trail.normalize import BadRecord, normalize, parse_time

__all__ = [
    "BadRecord",
    "Event",
    "IngestReport",
    "Principal",
    "TrailError",
    "TrailReader",
    "is_access_denied",
    "normalize",
    "parse_time",
    "read_trail",
]
