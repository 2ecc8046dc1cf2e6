"""``npm-sim reach`` as a stream: rows are written as they are computed, a tile of source
pods at a time, so memory does not depend on the number of rows.

The output is byte for byte what ``simulator.render`` produces from a whole
:class:`simulator.render.Reach` (json, csv, table); the tests compare both. Cells are
formatted by choosing, per destination, between precomputed strings for "allowed" and
"denied", so a row of thousands of cells costs one ``np.where`` and one ``str.join``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from kube.model import Pod, PortSpec
from simulator.endpoint_names import Folded
from simulator.engine import Simulator, declared_ports
from simulator.render import ALLOWED, CORNER, DENIED, NOT_CHECKED

# Bytes of verdicts one tile of source rows may take.
TILE_BYTES = 8 << 20


@dataclass(frozen=True)
class ReachPlan:
    """What ``reach`` shows: pods then external addresses, on ``ports``; with
    ``declared_only`` a destination pod is checked only on the ports it declares."""

    sim: Simulator
    pods: tuple[Pod, ...]
    externals: tuple[str, ...]  # addresses, one per external row
    ports: tuple[PortSpec, ...]
    declared_only: bool
    external_names: tuple[str, ...] = ()  # how each external row is written (default: its address)
    # A folded or focused view (see ``simulator.endpoint_names``): each pod row stands for these
    # positions of ``sim.cluster.pods`` (the first is shown) and is written as its name.
    folds: tuple[Folded, ...] | None = None

    @property
    def names(self) -> list[str]:
        pods = [f.name for f in self.folds] if self.folds is not None else [p.key for p in self.pods]
        return pods + list(self.external_names or self.externals)

    def checked(self, spec: PortSpec) -> np.ndarray:
        """bool [size]: which destinations are checked on ``spec`` (the same for every source)."""
        if not self.declared_only:
            return np.ones(len(self.pods) + len(self.externals), dtype=bool)
        declares = [spec in declared_ports(p) for p in self.pods]
        return np.array(declares + [True] * len(self.externals), dtype=bool)

    def tiles(self, spec: PortSpec) -> Iterator[np.ndarray]:
        """bool [rows, size] verdicts, a tile of source rows at a time, in row order."""
        n, size = len(self.pods), len(self.pods) + len(self.externals)
        sim = self.sim
        # Verdicts involving external addresses: few, computed one by one, once per address
        # (the CIDRs of one block of outside addresses share theirs).
        position = {ip: i for i, ip in enumerate(dict.fromkeys(self.externals))}
        unique = list(position)
        at = [position[ip] for ip in self.externals]
        per_address = np.array([[sim.allowed(p, ip, spec) for ip in unique] for p in self.pods], dtype=bool)
        to_ext = per_address.reshape(n, len(unique))[:, at] if unique else np.zeros((n, 0), dtype=bool)
        step = max(1, TILE_BYTES // max(1, size))
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            tile = np.empty((hi - lo, size), dtype=bool)
            tile[:, :n] = sim.pod_rows(spec, slice(lo, hi)) if self.folds is None else self._folded_rows(spec, lo, hi)
            tile[:, n:] = to_ext[lo:hi]
            yield tile
        for ip in self.externals:
            row = [sim.allowed(ip, p, spec) for p in self.pods] + [sim.allowed(ip, o, spec) for o in self.externals]
            yield np.array(row, dtype=bool).reshape(1, size)


    def _folded_rows(self, spec: PortSpec, lo: int, hi: int) -> np.ndarray:
        """The rows ``lo:hi`` of a folded view. A folded endpoint's own cell is the verdict
        between two of its pods (a pod always reaches itself; its siblings may not)."""
        assert self.folds is not None
        shown = np.array([f.members[0] for f in self.folds], dtype=np.int64)
        out = self.sim.pod_block(spec, shown[lo:hi], shown)
        for k in range(lo, hi):
            members = self.folds[k].members
            if len(members) > 1:
                out[k - lo, k] = self.sim.pod_block(spec, shown[k:k + 1], np.array(members[1:2]))[0, 0]
        return out


def _rows(plan: ReachPlan, spec: PortSpec) -> Iterator[tuple[int, np.ndarray]]:
    """(source index, verdict row) for every source, in order."""
    i = 0
    for tile in plan.tiles(spec):
        for row in tile:
            yield i, row
            i += 1


def write_json(plan: ReachPlan, out: TextIO, inputs: Mapping[str, Any] | None = None) -> None:
    """``{"connections": [...]}`` exactly as ``render.render_json`` writes it, and ``inputs``
    (the accounting of the load) beside it when given, as ``json.dumps(..., indent=2)`` would."""
    names = plan.names
    quoted = [json.dumps(n) for n in names]
    first = True
    out.write('{\n  "connections": [')
    for spec in plan.ports:
        mask = plan.checked(spec)
        cols = np.flatnonzero(mask)
        if not len(cols):
            continue
        tail = f',\n      "port": {spec.port},\n      "protocol": {json.dumps(spec.protocol)},\n      "allowed": '
        yes = np.array([f'"dst": {quoted[j]}{tail}true\n    }}' for j in cols], dtype=object)
        no = np.array([f'"dst": {quoted[j]}{tail}false\n    }}' for j in cols], dtype=object)
        for i, row in _rows(plan, spec):
            head = f'\n    {{\n      "src": {quoted[i]},\n      '
            cells = np.where(row[cols], yes, no)
            out.write(("\n" if first else ",\n") + head[1:] + ("," + head).join(cells.tolist()))
            first = False
    close = "\n  ]" if not first else "]"
    if plan.folds is not None:  # a folded or focused view: which pods each endpoint stands for
        pods = plan.sim.cluster.pods
        members = {f.name: [pods[i].key for i in f.members] for f in plan.folds}
        close += ',\n  "endpoints": ' + json.dumps(members, indent=2).replace("\n", "\n  ")
    if inputs is None:
        out.write(close + "\n}\n")
    else:
        nested = json.dumps(inputs, indent=2).replace("\n", "\n  ")
        out.write(f'{close},\n  "inputs": {nested}\n}}\n')


def write_csv(plan: ReachPlan, out: TextIO) -> None:
    """``src,dst,port,protocol,allowed`` exactly as ``render.to_csv`` writes it."""
    fields = [_csv_field(n) for n in plan.names]
    out.write("src,dst,port,protocol,allowed\n")
    for spec in plan.ports:
        cols = np.flatnonzero(plan.checked(spec))
        if not len(cols):
            continue
        tail = f",{_csv_field(str(spec.port))},{_csv_field(spec.protocol)},"
        yes = np.array([f"{fields[j]}{tail}true\n" for j in cols], dtype=object)
        no = np.array([f"{fields[j]}{tail}false\n" for j in cols], dtype=object)
        for i, row in _rows(plan, spec):
            head = fields[i] + ","
            out.write(head + head.join(np.where(row[cols], yes, no).tolist()))


def write_table(plan: ReachPlan, out: TextIO) -> None:
    """One truth table per port, exactly as ``render.table`` writes them."""
    names = plan.names
    if not names:
        out.write("no pods\n")
        return
    width = max([len(n) for n in names] + [len(CORNER)])
    col = [max(len(n), 1) for n in names]
    header = f"{CORNER:<{width}}  " + "  ".join(n.ljust(w) for n, w in zip(names, col, strict=True))
    marks = {m: np.array([m.ljust(w) for w in col], dtype=object) for m in (ALLOWED, DENIED, NOT_CHECKED)}
    for b, spec in enumerate(plan.ports):
        mask = plan.checked(spec)
        out.write(("\n\n" if b else "") + f"{spec}:".rstrip() + "\n" + header.rstrip())
        for i, row in _rows(plan, spec):
            cells = np.where(mask, np.where(row, marks[ALLOWED], marks[DENIED]), marks[NOT_CHECKED])
            out.write("\n" + (f"{names[i]:<{width}}  " + "  ".join(cells.tolist()).rstrip()).rstrip())
    out.write("\n")


def _csv_field(text: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([text])
    return buf.getvalue()[:-1]


def stream(plan: ReachPlan, output: str, out: TextIO, inputs: Mapping[str, Any] | None = None) -> None:
    """Write ``plan`` as ``output`` (json, with ``inputs`` beside the connections; csv; table)."""
    if output == "json":
        write_json(plan, out, inputs)
    else:
        {"csv": write_csv, "table": write_table}[output](plan, out)


def plan_for(
    sim: Simulator,
    externals: Sequence[str],
    ports: Sequence[PortSpec],
    declared_only: bool,
    names: Sequence[str] = (),
    folds: Sequence[Folded] | None = None,
) -> ReachPlan:
    """A :class:`ReachPlan` over every pod of ``sim.cluster`` (or the endpoints ``folds``) plus
    ``externals`` (written as ``names`` where given: a node as ``node/<name>``, a block of
    outside addresses as its CIDRs)."""
    pods = sim.cluster.pods
    shown = tuple(pods) if folds is None else tuple(pods[f.members[0]] for f in folds)
    return ReachPlan(sim, shown, tuple(externals), tuple(ports), declared_only, tuple(names),
                     None if folds is None else tuple(folds))


__all__ = ["TILE_BYTES", "ReachPlan", "plan_for", "stream", "write_csv", "write_json", "write_table"]
