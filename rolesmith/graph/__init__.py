"""The graph stage: a networkx usage graph of principals, resources and uses, with indirect-use links.

``graph_from_paths(paths)`` reads a trail and maps every event; ``UsageGraph`` answers what a
principal needs (``needs``), who from other accounts uses a resource (``cross_account_users``) and
which call made a service-invoked use happen (``trigger_of``); ``export_graph`` writes it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from rolesmith.gcpause import gc_paused
from rolesmith.graph.export import FORMATS, UnknownGraphFormat, export_graph, graph_document
from rolesmith.graph.model import Assumption, GraphUse, UseKey
from rolesmith.graph.usage import UsageGraph

if TYPE_CHECKING:
    from rolesmith.trail import IngestReport
    from rolesmith.trail.model import Event


def graph_from_events(events: "Iterable[Event]") -> UsageGraph:
    """A usage graph from already-normalised events."""
    from rolesmith.actions import uses_for

    graph = UsageGraph()
    add = graph.add
    with gc_paused():
        for event in events:
            add(event, uses_for(event))
    return graph


def graph_from_paths(paths: Sequence[str | Path], *, skip_bad: bool = False) -> "tuple[UsageGraph, IngestReport]":
    """Read the trail files/directories ``paths`` and return ``(UsageGraph, IngestReport)``."""
    from rolesmith.trail import read_trail

    reader = read_trail([Path(p) for p in paths], skip_bad=skip_bad)
    graph = graph_from_events(reader)
    return graph, reader.report


__all__ = [
    "Assumption",
    "FORMATS",
    "GraphUse",
    "UnknownGraphFormat",
    "UsageGraph",
    "UseKey",
    "export_graph",
    "graph_document",
    "graph_from_events",
    "graph_from_paths",
]
