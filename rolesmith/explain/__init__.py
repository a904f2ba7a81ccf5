"""``rolesmith explain``: why each AccessDenied in a trail happened, and the smallest fix.

``explain_paths`` reads trails, explains every denied event with ``explain_event`` and returns an
``ExplainResult``; ``render_text``/``render_json`` (``rolesmith.explain.render``) print it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from rolesmith.errors import RolesmithError
from rolesmith.explain.core import Store, explain_event
from rolesmith.explain.model import REASONS, Explanation, ExplainResult, Fix

__all__ = ["REASONS", "ExplainError", "Explanation", "ExplainResult", "Fix", "explain_event", "explain_paths"]


class ExplainError(RolesmithError):
    exit_code = 2


def explain_paths(paths: Sequence[str | Path], *, policies_dir: str | Path | None = None, live: bool = False,
                  session: Any = None, skip_bad: bool = False) -> ExplainResult:
    """Explain every denied event in the trails ``paths``.

    ``policies_dir``: the ``--policies DIR`` layout (``rolesmith.evaluator.policydir``). ``live``: fetch the
    policies read-only with boto3 ``session`` (default session when None) and decode EC2's encoded
    messages. Neither: reasons come from AWS's messages and the rest of the trail.
    """
    if policies_dir is not None and live:
        raise ExplainError("explain: --policies and --live are exclusive: pass one of them")
    from rolesmith.explain.trailindex import TrailIndex
    from rolesmith.trail import read_trail  # type: ignore[attr-defined]

    reader = read_trail([Path(p) for p in paths], skip_bad=skip_bad)
    events = list(reader)
    store: Store | None = None
    decoder = None
    if policies_dir is not None:
        from rolesmith.evaluator.policydir import load_policy_dir

        store = load_policy_dir(Path(policies_dir))
    elif live:
        from rolesmith.explain.live import LiveStore

        live_store = LiveStore(session)
        live_store.check()
        store, decoder = live_store, live_store.decode
    index = TrailIndex.build(events)
    explanations = tuple(explain_event(ev, store, trail=index, decoder=decoder) for ev in events if ev.denied)
    return ExplainResult(explanations=explanations, events_read=len(events), skipped=dict(reader.report.skipped),
                         ingest=tuple(reader.report.lines()))
