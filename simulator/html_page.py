"""The page around the HTML reports' figures: inline CSS and script, the namespace filter,
colours, legends and counters (``simulator.html_report`` puts the figures in).

The script filters by namespace (checkboxes; ``#ns=a,b`` in the address preselects), shows a
heatmap cell's title when hovered, shows only a graph node's connections when it is hovered,
and records how the page fits its window: ``data-page-width``, ``data-window-width``,
``data-wide-figures`` (figures wider than their box) and ``data-clipped-labels`` on
``<body>``; ``data-labels`` and ``data-label-overflow`` (labels reaching outside the viewBox)
on each graph. Tests read them from the DOM Chromium dumps.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from simulator.html_layout import NODES, OUTSIDE

GAINED, LOST, BOTH, ALLOWED, EDGE = "#0a7a2f", "#b3261e", "#b07d00", "#206ec8", "#9a9a9a"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#393b79", "#637939", "#843c39")
GROUP_COLORS = {NODES: "#555555", OUTSIDE: "#888888"}

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
td{overflow-wrap:anywhere}
.gained{color:#0a7a2f}.lost{color:#b3261e}.muted{color:#777}
.stat{display:inline-block;margin-right:2em;font-size:1.1em}.stat b{font-size:1.4em}
.legend{font-size:.85em}.legend i{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;
 vertical-align:middle;border:1px solid #999}
.filter{position:sticky;top:0;background:#fff;z-index:2;border:1px solid #ccc;font-size:.85em;padding:.3em .6em}
.filter label{margin-right:1em;white-space:nowrap}.filter i{display:inline-block;width:10px;height:10px;margin:0 3px}
.figure{max-width:100%;overflow-x:auto}
.off{display:none !important}
table.hm{border-collapse:separate;border-spacing:1px;font-size:var(--font)}
table.hm td,table.hm th{border:0;padding:0;line-height:1}
table.hm td{width:var(--cell);min-width:var(--cell);height:var(--cell);background:#fff;outline:1px solid #eee}
table.hm td.y{background:#206ec8}table.hm td.u{background:repeating-linear-gradient(45deg,#fff 0 2px,#ccc 2px 4px)}
table.hm td.g{background:#0a7a2f}table.hm td.l{background:#b3261e}
table.hm td.b{background:linear-gradient(135deg,#0a7a2f 50%,#b3261e 50%)}
table.hm .ns-start{border-left:2px solid #444}table.hm tr.ns-start>*{border-top:2px solid #444}
table.hm .lbl{overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-family:monospace}
table.hm th.row .lbl{width:var(--lbl);text-align:right;padding-right:4px;box-sizing:border-box}
table.hm th.col{vertical-align:bottom}
table.hm th.col .lbl{writing-mode:vertical-rl;transform:rotate(180deg);height:var(--lbl);width:var(--cell);
 line-height:var(--cell);padding-bottom:4px;box-sizing:border-box}
table.hm th.band{color:#fff;font-weight:600;font-size:11px}
table.hm th.band div{overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding:1px 2px}
table.hm th.side div{writing-mode:vertical-rl;transform:rotate(180deg)}
table.hm th.corner{vertical-align:bottom;text-align:right;font-weight:normal;color:#555;padding:0 4px 4px 0}
.axis{display:block}
svg.graph{max-width:100%;height:auto}
svg text{font-family:monospace}svg .ns{font-size:11px;font-weight:600}svg .node text{font-size:10px}
svg .edge{fill:none;stroke-width:1.2;opacity:.55}
svg.focus .edge{opacity:.06}svg.focus .edge.hot{opacity:1;stroke-width:2}
"""

JS = """
(function(){
  var box=document.getElementById('ns-filter'),heatmaps=document.querySelectorAll('table.hm');
  heatmaps.forEach(function(t){  // a cell's title is written when first hovered: the page stays small
    var cols=t.querySelectorAll('th.col'),n=cols.length;
    t.addEventListener('mouseover',function(ev){
      var td=ev.target.closest('td');
      if(!td||td.title)return;
      var tr=td.parentNode,col=cols[td.cellIndex-(tr.cells.length-n)],row=tr.querySelector('th.row');
      var v=td.getAttribute('data-v')||(td.classList.contains('u')?
        'not checked (the destination declares none of the ports)':t.getAttribute('data-empty'));
      td.title=row.title+' → '+col.title+': '+v;
    });
  });
  function apply(){
    var on={},shown=[];
    box.querySelectorAll('input[type=checkbox]').forEach(function(i){on[i.value]=i.checked;if(i.checked)shown.push(i.value);});
    document.querySelectorAll('[data-ns]').forEach(function(el){
      var keep=el.getAttribute('data-ns').split(' ').every(function(n){return on[n]!==false;});
      el.classList.toggle('off',!keep);
    });
    heatmaps.forEach(function(t){  // a heatmap's cells follow their column's header
      var cols=t.querySelectorAll('th.col'),n=cols.length,hide=[];
      cols.forEach(function(c,j){hide[j]=c.classList.contains('off');});
      t.querySelectorAll('tr[data-ns]').forEach(function(tr){
        var cells=tr.cells,o=cells.length-n;
        for(var j=0;j<n;j++)cells[o+j].classList.toggle('off',hide[j]);
      });
    });
    document.body.setAttribute('data-shown',shown.join(' '));
  }
  if(box){
    var m=/^#ns=(.*)$/.exec(location.hash);
    if(m){var want=decodeURIComponent(m[1]).split(',');
      box.querySelectorAll('input[type=checkbox]').forEach(function(i){i.checked=want.indexOf(i.value)>=0;});}
    box.addEventListener('change',apply);
    box.querySelectorAll('button').forEach(function(b){b.addEventListener('click',function(){
      box.querySelectorAll('input[type=checkbox]').forEach(function(i){i.checked=b.value==='all';});apply();});});
    apply();
  }
  document.querySelectorAll('svg.graph').forEach(function(svg){
    svg.querySelectorAll('.node').forEach(function(n){
      var name=n.getAttribute('data-name');
      n.addEventListener('mouseover',function(){svg.classList.add('focus');
        svg.querySelectorAll('.edge').forEach(function(e){e.classList.toggle('hot',
          e.getAttribute('data-src')===name||e.getAttribute('data-dst')===name);});});
      n.addEventListener('mouseout',function(){svg.classList.remove('focus');});
    });
  });
  function measure(){
    var body=document.body,wide=0,clipped=0;
    body.setAttribute('data-page-width',document.documentElement.scrollWidth);
    body.setAttribute('data-window-width',window.innerWidth);
    document.querySelectorAll('.figure').forEach(function(f){if(f.scrollWidth>f.clientWidth+1)wide++;});
    body.setAttribute('data-wide-figures',wide);
    document.querySelectorAll('.lbl').forEach(function(d){
      if(d.getClientRects().length&&(d.scrollWidth>d.clientWidth+1||d.scrollHeight>d.clientHeight+1))clipped++;});
    body.setAttribute('data-clipped-labels',clipped);
    document.querySelectorAll('svg.graph').forEach(function(svg){
      var vb=svg.viewBox.baseVal,inv=svg.getScreenCTM().inverse(),p=svg.createSVGPoint(),n=0,out=0;
      svg.querySelectorAll('text').forEach(function(t){
        var r=t.getBoundingClientRect();
        if(!r.width&&!r.height)return;
        n++;
        var corners=[[r.left,r.top],[r.right,r.top],[r.left,r.bottom],[r.right,r.bottom]];
        if(corners.some(function(c){p.x=c[0];p.y=c[1];var q=p.matrixTransform(inv);
          return q.x<vb.x-0.5||q.y<vb.y-0.5||q.x>vb.x+vb.width+0.5||q.y>vb.y+vb.height+0.5;}))out++;
      });
      svg.setAttribute('data-labels',n);svg.setAttribute('data-label-overflow',out);
    });
  }
  measure();
})();
"""


def esc(text: object) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def namespace_colors(groups: Sequence[str]) -> dict[str, str]:
    """A colour per group, the same in the filter, the heatmap bands and the graph."""
    namespaces = [g for g in groups if g not in GROUP_COLORS]
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(namespaces)}
    return {**colors, **{g: GROUP_COLORS[g] for g in groups if g in GROUP_COLORS}}


def _filter(counts: dict[str, int], colors: dict[str, str]) -> str:
    """Checkboxes, one per group, that hide the other groups' rows, columns and nodes."""
    if len(counts) < 2:
        return ""
    boxes = "".join(f'<label><input type="checkbox" value="{esc(g)}" checked><i style="background:{colors[g]}"></i>'
                    f"{esc(g)} ({n})</label>" for g, n in counts.items())
    return (f'<fieldset id="ns-filter" class="filter" data-groups="{len(counts)}"><legend>Namespaces shown</legend>'
            f'{boxes}<button type="button" value="all">all</button> <button type="button" value="none">none'
            "</button></fieldset>")


def page(title: str, body: str, groups: dict[str, int] | None = None, colors: dict[str, str] | None = None) -> str:
    """A complete HTML document; ``groups`` (endpoints per namespace) adds the namespace filter."""
    filt = _filter(groups or {}, colors or namespace_colors(list(groups or {})))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{filt}{body}<script>{JS}</script></body></html>\n"
    )


def stat(ident: str, label_text: str, value: int, cls: str = "") -> str:
    return f'<span class="stat {cls}" id="{ident}" data-count="{value}">{esc(label_text)}: <b>{value}</b></span>'


def shade(share: float, rgb: tuple[int, int, int]) -> str:
    r, g, b = (int(255 - (255 - c) * share) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def legend(*items: tuple[str, str]) -> str:
    """``(css background, meaning)`` swatches; a background of ``""`` is text only."""
    return '<p class="legend">' + "".join(
        (f'<i style="background:{bg}"></i>' if bg else " ") + esc(text) for bg, text in items) + "</p>"


__all__ = ["ALLOWED", "BOTH", "EDGE", "GAINED", "LOST", "esc", "legend", "namespace_colors", "page", "shade", "stat"]
