"""``build_policies``: trail paths in, policy set out (the library twin of ``rolesmith build``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rolesmith.gcpause import gc_paused
from rolesmith.graph.usage import UsageGraph
from rolesmith.policies.model import BuildOptions, PolicySet
from rolesmith.policies.synthesize import policies_from_graph


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildResult:
    policies: PolicySet
    graph: UsageGraph
    report: Any  # rolesmith.trail IngestReport: counts of records read, skipped and why

    def report_lines(self) -> list[str]:
        """Ingest counts and a one-line summary, for stderr."""
        lines = list(self.report.lines()) if self.report is not None else []
        p = self.policies
        lines.append(
            f"rolesmith: {len(p.identity_policies)} identity, {len(p.resource_policies)} resource and"
            f" {len(p.trust_policies)} trust policies from {self.graph.events} events; {len(p.findings)} findings"
        )
        return lines


def build_policies(paths: Sequence[str | Path], options: BuildOptions | None = None) -> BuildResult:
    """Read the trail at ``paths`` and write the minimal policies for what it shows."""
    from rolesmith.graph import graph_from_paths

    options = options or BuildOptions()
    with gc_paused():  # one pause for reading and synthesis, so no full collection runs between them
        graph, report = graph_from_paths(paths, skip_bad=options.skip_bad)
        policies = policies_from_graph(graph, options)
    return BuildResult(policies=policies, graph=graph, report=report)
