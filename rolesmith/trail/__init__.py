"""The trail stage: read every shape of CloudTrail users hold and normalise it into ``Event``s."""

from rolesmith.trail.model import Event, Principal, is_access_denied

__all__ = ["Event", "Principal", "is_access_denied"]
