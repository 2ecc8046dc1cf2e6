"""Render reachability results: truth tables, JSON, CSV and Graphviz DOT."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kube.model import PortSpec
from simulator.engine import Summary

ALLOWED, DENIED, NOT_CHECKED = ".", "X", "-"
CORNER = "src \\ dst"


@dataclass(frozen=True)
class Reach:
    """Verdicts between named endpoints for each port.

    ``checked[port][i, j]`` is False where ``names[j]`` does not declare ``port`` (when the
    ports come from declarations); such cells are left out of every output but the table,
    which shows them as ``-``.
    """

    names: tuple[str, ...]
    ports: tuple[PortSpec, ...]
    allowed: dict[PortSpec, np.ndarray]
    checked: dict[PortSpec, np.ndarray]

    def rows(self) -> list[tuple[str, str, PortSpec, bool]]:
        """(src, dst, port, allowed) for every checked cell, port by port, row-major."""
        out = []
        for spec in self.ports:
            grid, mask = self.allowed[spec], self.checked[spec]
            for i, src in enumerate(self.names):
                for j, dst in enumerate(self.names):
                    if mask[i, j]:
                        out.append((src, dst, spec, bool(grid[i, j])))
        return out


def table(reach: Reach) -> str:
    """One truth table per port, like the upstream e2e suite: ``.`` allowed, ``X`` denied."""
    width = max([len(n) for n in reach.names] + [len(CORNER)])
    blocks = []
    for spec in reach.ports:
        grid, mask = reach.allowed[spec], reach.checked[spec]
        col = [max(len(n), 1) for n in reach.names]
        lines = [
            f"{spec}:",
            f"{CORNER:<{width}}  " + "  ".join(n.ljust(w) for n, w in zip(reach.names, col, strict=True)),
        ]
        for i, src in enumerate(reach.names):
            cells = []
            for j, w in enumerate(col):
                mark = NOT_CHECKED if not mask[i, j] else ALLOWED if grid[i, j] else DENIED
                cells.append(mark.ljust(w))
            lines.append(f"{src:<{width}}  " + "  ".join(cells).rstrip())
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(blocks) + "\n"


def render_json(reach: Reach) -> str:
    """``{"connections": [{"src", "dst", "port", "protocol", "allowed"}, ...]}``."""
    rows = [{"src": s, "dst": d, "port": p.port, "protocol": p.protocol, "allowed": ok} for s, d, p, ok in reach.rows()]
    return json.dumps({"connections": rows}, indent=2) + "\n"


def to_csv(reach: Reach) -> str:
    """``src,dst,port,protocol,allowed`` with ``true``/``false``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["src", "dst", "port", "protocol", "allowed"])
    for s, d, p, ok in reach.rows():
        writer.writerow([s, d, p.port, p.protocol, "true" if ok else "false"])
    return buf.getvalue()


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(reach: Reach, external: Sequence[str] = ()) -> str:
    """A Graphviz digraph: one node per endpoint, one edge per pair with its allowed ports.

    Self loops are left out (a pod always reaches itself); external endpoints are boxes.
    """
    ports_by_pair: dict[tuple[str, str], list[str]] = {}
    for s, d, p, ok in reach.rows():
        if ok and s != d:
            ports_by_pair.setdefault((s, d), []).append(str(p))
    lines = ["digraph reachability {", "  rankdir=LR;", "  node [shape=ellipse, fontsize=10];"]
    for name in reach.names:
        shape = " [shape=box]" if name in external else ""
        lines.append(f"  {_dot_id(name)}{shape};")
    for (s, d), ports in ports_by_pair.items():
        lines.append(f"  {_dot_id(s)} -> {_dot_id(d)} [label={_dot_id(', '.join(ports))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def summary_text(summary: Summary, seconds: float, outside: Mapping[str, Mapping[str, int]] | None = None) -> str:
    lines = [
        f"{summary.pods} pods, {summary.classes} equivalence classes, {summary.policies} policies"
        f" (setup {summary.setup_seconds:.3f} s)"
    ]
    width = max([len(str(p.port)) for p in summary.ports] + [4])
    for p in summary.ports:
        share = 100.0 * p.allowed / p.total if p.total else 0.0
        lines.append(
            f"{p.port!s:>{width}}: {p.allowed:,} allowed ({share:.1f}%), {p.denied:,} denied  [{p.seconds:.3f} s]"
        )
        if outside is not None and str(p.port) in outside:
            o = outside[str(p.port)]
            lines.append(f"{'':>{width}}  with {o['endpoints']} outside endpoints (nodes, CIDR blocks), both ways: "
                         f"{o['allowed']:,} allowed, {o['denied']:,} denied")
    lines.append(f"total time: {seconds:.3f} s")
    return "\n".join(lines) + "\n"


def summary_json(
    summary: Summary,
    seconds: float,
    inputs: Mapping[str, Any] | None = None,
    outside: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The summary as JSON; ``inputs`` (the load's accounting) and ``outside`` (pairs with
    nodes and outside blocks, per port) beside its keys when given."""
    extra: dict[str, Any] = {} if inputs is None else {"inputs": inputs}
    if outside is not None:
        extra["outside"] = outside
    return (
        json.dumps(
            {
                "pods": summary.pods,
                "classes": summary.classes,
                "policies": summary.policies,
                "ports": [
                    {
                        "port": p.port.port,
                        "protocol": p.port.protocol,
                        "allowed": p.allowed,
                        "denied": p.denied,
                        "seconds": round(p.seconds, 6),
                    }
                    for p in summary.ports
                ],
                "setup_seconds": round(summary.setup_seconds, 6),
                "seconds": round(seconds, 6),
                **extra,
            },
            indent=2,
        )
        + "\n"
    )
