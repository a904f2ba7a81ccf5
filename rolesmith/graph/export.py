"""Export the usage graph as JSON, Graphviz dot or Mermaid (``rolesmith graph --format``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from rolesmith.errors import RolesmithError
from rolesmith.graph.model import UseKey
from rolesmith.graph.usage import UsageGraph

FORMATS = ("json", "dot", "mermaid")


class UnknownGraphFormat(RolesmithError):
    exit_code = 2


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(node: tuple[Any, ...]) -> str:
    kind, value = node
    if kind == "use":
        return "use:" + value.label()
    return f"{kind}:{value}"


def _use_attrs(key: UseKey, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": key.action,
        "count": s["count"],
        "first_seen": _iso(s["first_seen"]),
        "last_seen": _iso(s["last_seen"]),
        "errors": list(s["errors"]),
        "events": list(s["events"]),
        "provenance": "observed" if s["observed"] else "inferred",
        "inferred_by": sorted(s["inferred_by"]),
    }


def graph_document(graph: UsageGraph) -> dict[str, Any]:
    """The JSON export as a dict: sorted nodes and edges, no session names or access keys."""
    graph.links()  # materialise invoked-by edges
    g = graph.graph
    nodes: list[dict[str, Any]] = []
    for node, data in g.nodes(data=True):
        kind = node[0]
        item: dict[str, Any] = {"id": _node_id(node), "kind": kind}
        if kind == "principal":
            item.update(arn=node[1], principal_kind=data.get("principal_kind"), account=data.get("account"))
        elif kind == "resource":
            item.update(arn=node[1], account=data.get("account"))
        else:
            key: UseKey = node[1]
            s = graph.stats(key)
            item.update(
                principal=key.principal, action=key.action, resource=key.resource,
                conditions=[list(c) for c in key.conditions], via=key.via, denied=key.denied,
                partial=s["partial"], resource_account=s["resource_account"],
            )
        nodes.append(item)
    nodes.sort(key=lambda n: (n["kind"], n["id"]))
    edges: list[dict[str, Any]] = []
    for u, v, k, data in g.edges(keys=True, data=True):
        edge: dict[str, Any] = {"source": _node_id(u), "target": _node_id(v), "kind": k}
        if k == "uses":
            edge.update(_use_attrs(v[1], data))
        elif k == "assumes":
            edge.update(actions=sorted(data["actions"]), count=data["count"], events=list(data["events"]))
        edges.append(edge)
    edges.sort(key=lambda e: (e["kind"], e["source"], e["target"]))
    return {
        "nodes": nodes,
        "edges": edges,
        "summary": {
            "events": graph.events,
            "uses": len(graph.uses()),
            "unattributable": graph.unattributable,
            "unmapped": dict(sorted(graph.unmapped.items())),
        },
    }


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _to_dot(doc: dict[str, Any]) -> str:
    shapes = {"principal": "ellipse", "resource": "box", "use": "note"}
    lines = ["digraph usage {", "  rankdir=LR;"]
    for node in doc["nodes"]:
        label = node.get("arn") or f"{node['action']}\\n{node['resource']}"
        if node["kind"] == "use" and node.get("denied"):
            label += "\\n(denied)"
        lines.append(f"  {_dot_quote(node['id'])} [shape={shapes[node['kind']]}, label={_dot_quote(label)}];")
    for edge in doc["edges"]:
        label = edge["kind"]
        if edge["kind"] == "uses":
            label = f"uses x{edge['count']} ({edge['provenance']})"
        lines.append(f"  {_dot_quote(edge['source'])} -> {_dot_quote(edge['target'])} [label={_dot_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def _to_mermaid(doc: dict[str, Any]) -> str:
    ids = {node["id"]: f"n{i}" for i, node in enumerate(doc["nodes"])}
    lines = ["flowchart LR"]
    for node in doc["nodes"]:
        nid = ids[node["id"]]
        if node["kind"] == "use":
            label = f"{node['action']}<br/>{node['resource']}" + ("<br/>(denied)" if node.get("denied") else "")
            lines.append(f'  {nid}["{_mermaid_text(label)}"]')
        elif node["kind"] == "principal":
            lines.append(f'  {nid}(["{_mermaid_text(node["arn"])}"])')
        else:
            lines.append(f'  {nid}[("{_mermaid_text(node["arn"])}")]')
    for edge in doc["edges"]:
        label = edge["kind"] if edge["kind"] != "uses" else f"uses x{edge['count']}"
        lines.append(f'  {ids[edge["source"]]} -->|"{_mermaid_text(label)}"| {ids[edge["target"]]}')
    return "\n".join(lines) + "\n"


def export_graph(graph: UsageGraph, fmt: str = "json") -> str:
    """The usage graph as text in ``fmt`` (json, dot or mermaid)."""
    if fmt not in FORMATS:
        raise UnknownGraphFormat(f"graph format {fmt!r}: unknown; fix: use one of {', '.join(FORMATS)}")
    doc = graph_document(graph)
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "dot":
        return _to_dot(doc)
    return _to_mermaid(doc)


__all__ = ["export_graph", "graph_document", "FORMATS", "UnknownGraphFormat"]
