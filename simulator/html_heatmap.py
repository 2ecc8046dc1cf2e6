"""Heatmaps for the HTML reports: an HTML table, sources as rows and destinations as columns,
ordered and banded by namespace, sized to fit the page (see ``simulator.html_layout``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.html_layout import FIT_WIDTH, group_of, grouped, label, shorten, text_width
from simulator.html_page import esc

LABEL_FONT = 11  # px, heatmap labels


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: its CSS class, hover title and extra attributes."""

    cls: str = ""
    text: str = ""  # what the hover title says after "src → dst: " (default: the table's data-empty)
    extra: str = ""


def heatmap(ident: str, groups: Sequence[tuple[str, Sequence[str]]], colors: dict[str, str],
            cell: Callable[[str, str], Cell], *, banded: bool = True, attrs: str = "") -> str:
    """A table heatmap: rows are sources, columns destinations, both ordered by ``groups``.

    ``banded``: a coloured band names each namespace above its columns and beside its rows
    (endpoint level); otherwise every row is a namespace, marked with its colour. Cells are
    sized so that the table fits ``FIT_WIDTH`` pixels; labels are shortened, the full names
    are hover titles.
    """
    names = [(g, m) for g, members in groups for m in members]
    n = len(names)
    labels = {m: label(m, g) if banded else shorten(m) for g, m in names}
    label_px = math.ceil(max(text_width(max(labels.values(), key=len), LABEL_FONT),
                             text_width("destination (to)", LABEL_FONT))) + 8
    band_px = 18 if banded else 0
    spare = FIT_WIDTH - label_px - band_px - 2 * len(groups) - 12
    size = max(8, min(22, spare // max(n, 1) - 1))
    font = min(LABEL_FONT, size)
    parts = [f'<div class="figure"><table class="hm" id="{ident}" data-rows="{n}" '
             f'data-level="{"endpoint" if banded else "namespace"}" {attrs} '
             f'style="--cell:{size}px;--lbl:{label_px}px;--font:{font}px">']
    corner = ('<span class="axis">columns: destination (to) →</span>'
              '<span class="axis">rows: source (from) ↓</span>')
    if banded:
        parts.append(f'<tr><th class="corner" colspan="2" rowspan="2">{corner}</th>')
        for g, members in groups:
            width = len(members) * (size + 1) - 3
            parts.append(f'<th class="band ns-start" colspan="{len(members)}" data-ns="{esc(g)}" '
                         f'style="background:{colors[g]}" title="{esc(g)} ({len(members)})">'
                         f'<div style="max-width:{width}px">{esc(shorten(g))}</div></th>')
        parts.append("</tr><tr>")
    else:
        parts.append(f'<tr><th class="corner">{corner}</th>')
    starts = {members[0] for _, members in groups}
    for g, m in names:
        start = " ns-start" if m in starts else ""
        parts.append(f'<th class="col{start}" data-ns="{esc(g)}" title="{esc(m)}"'
                     + ("" if banded else f' style="border-bottom:4px solid {colors[g]}"')
                     + f'><div class="lbl">{esc(labels[m])}</div></th>')
    parts.append("</tr>")
    for g, members in groups:
        for k, src in enumerate(members):
            parts.append(f'<tr data-ns="{esc(g)}"' + (' class="ns-start">' if k == 0 else ">"))
            if banded and k == 0:
                height = len(members) * (size + 1) - 3
                parts.append(f'<th class="band side" rowspan="{len(members)}" style="background:{colors[g]}" '
                             f'title="{esc(g)} ({len(members)})"><div style="max-height:{height}px">'
                             f"{esc(shorten(g))}</div></th>")
            swatch = "" if banded else f' style="border-right:4px solid {colors[g]}"'
            parts.append(f'<th class="row" title="{esc(src)}"{swatch}><div class="lbl">{esc(labels[src])}</div></th>')
            for _, dst in names:
                c = cell(src, dst)
                cls = " ".join(x for x in (c.cls, "ns-start" if dst in starts else "") if x)
                cls_attr = f' class="{cls}"' if cls else ""
                text = f' data-v="{esc(c.text)}"' if c.text else ""
                parts.append(f"<td{cls_attr}{text}{c.extra}></td>")
            parts.append("</tr>")
    parts.append("</table></div>")
    return "".join(parts)


def namespace_counts(names: Sequence[str], outside: Collection[str], grid: np.ndarray
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aggregate an endpoint x endpoint bool grid to group x group: (groups, share, count)."""
    order = [g for g, _ in grouped(names, outside)]
    index = {g: i for i, g in enumerate(order)}
    idx = np.array([index[group_of(x, outside)] for x in names], dtype=np.int64)
    onehot = np.zeros((len(names), len(order)), dtype=np.float64)
    onehot[np.arange(len(names)), idx] = 1
    counts = onehot.T @ grid.astype(np.float64) @ onehot
    sizes = onehot.sum(axis=0)
    return order, counts / np.maximum(np.outer(sizes, sizes), 1), counts


__all__ = ["Cell", "heatmap", "namespace_counts"]
