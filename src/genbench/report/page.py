"""HTML building blocks of the report page: escaping, tables (sortable), figures captioned once, sections with a
table of contents, and the page shell (inline CSS and a few lines of JavaScript; nothing from a CDN)."""

from __future__ import annotations

import html

e = html.escape

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.45}
header{background:#f6f8fa;border-bottom:1px solid #ddd;padding:1em 1.5em}
header h1{margin:0 0 .3em;font-size:1.5em}
.wrap{display:flex;gap:1.5em;max-width:1280px;margin:0 auto;padding:0 1em}
nav{flex:0 0 190px;position:sticky;top:0;align-self:flex-start;max-height:100vh;overflow:auto;padding:1em 0;font-size:14px}
nav a{display:block;padding:2px 0;color:#0366d6;text-decoration:none}
nav a.sub{padding-left:1em;font-size:13px}
main{flex:1;min-width:0;padding-bottom:3em}
section{margin-top:1.5em}
h2{border-bottom:1px solid #eee;padding-bottom:.2em}
.tbl{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:3px 7px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
th{background:#f6f8fa;cursor:pointer;position:relative}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
tr.floor td{background:#fff8e1;font-style:italic}
figure{margin:1em 0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555;margin-top:.3em}
.plot{width:100%;min-height:420px}
.warn{color:#b00020}
.note{font-size:13px;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.grid figure{flex:1 1 300px;max-width:460px}
code{background:#f4f4f4;padding:0 2px}
@media (max-width:800px){.wrap{display:block}nav{position:static;max-height:none;border-bottom:1px solid #eee}}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var rows = Array.from(t.querySelectorAll('tr')).slice(1);
      var asc = !th.classList.contains('sorted-asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      function key(r){var c = r.children[i]; var v = c.getAttribute('data-v');
        var x = parseFloat(v === null ? c.textContent : v); return isNaN(x) ? c.textContent : x;}
      rows.sort(function(a, b){var x = key(a), y = key(b);
        if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        return typeof x === 'number' ? -1 : 1;});
      rows.forEach(function(r){t.appendChild(r);});
    });
  });
});
"""


def table(header: list[str], rows: list[list], *, sortable: bool = False, floor_rows: set[int] = frozenset(),
          values: list[list] | None = None) -> str:
    """An HTML table. ``values``: the raw number behind each cell (the sort key), parallel to ``rows``."""
    h = "".join(f"<th title='click to sort'>{e(str(c))}</th>" if sortable else f"<th>{e(str(c))}</th>" for c in header)
    body = []
    for i, r in enumerate(rows):
        cells = []
        for j, c in enumerate(r):
            v = values[i][j] if values else None
            dv = f" data-v='{v!r}'" if isinstance(v, (int, float)) and v == v else ""
            cells.append(f"<td{dv}>{e(_txt(c))}</td>")
        cls = " class='floor' title='real held-out images: the floor (or ceiling) of every metric'" \
            if i in floor_rows else ""
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    cls = " class='sortable'" if sortable else ""
    return f"<div class='tbl'><table{cls}><tr>{h}</tr>{''.join(body)}</table></div>"


def _txt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def figure(src: str, caption: str) -> str:
    """One image with its caption (the image itself carries no title: captioned once)."""
    return f"<figure><img src='{e(src)}' alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>"


class Page:
    """Sections in order, each with an id for the table of contents."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[tuple[str, str, int, list[str]]] = []  # (id, heading, level, parts)

    def section(self, sid: str, heading: str, level: int = 2) -> list[str]:
        parts: list[str] = []
        self.sections.append((sid, heading, level, parts))
        return parts

    def render(self, header_html: str, head_extra: str = "") -> str:
        toc = "".join(f"<a href='#{e(s)}' class='{'sub' if lv > 2 else ''}'>{e(h)}</a>"
                      for s, h, lv, parts in self.sections if parts)
        body = "".join(f"<section id='{e(s)}'><h{lv}>{e(h)}</h{lv}>{''.join(parts)}</section>"
                       for s, h, lv, parts in self.sections if parts)
        return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
                f"<title>genbench: {e(self.title)}</title><style>{CSS}</style>{head_extra}</head><body>"
                f"<header>{header_html}</header><div class='wrap'><nav aria-label='contents'><b>Contents</b>{toc}</nav>"
                f"<main>{body}</main></div><script>{SORT_JS}</script></body></html>")
