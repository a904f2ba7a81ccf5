"""Placeholder: the evaluation logic lands in the next commit."""

from __future__ import annotations

from rolesmith.evaluator.model import Decision, Policies, Request


def evaluate(request: Request, policies: Policies) -> Decision:
    raise NotImplementedError("rolesmith.evaluator.evaluate is being written")
