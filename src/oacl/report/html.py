"""The report's HTML kit: page style, escaping, tables, number formats, embedded images
and the paper's tables (paper_tables.py) beside ours. Everything is inline (no network)."""

from __future__ import annotations

import base64
import html
import io
import math
import re

import numpy as np

from . import paper_tables

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#20303f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c6d3;font-size:13px}
nav{padding:8px 28px;background:#e8ecf0;font-size:13px}nav a{margin-right:14px;color:#20303f}
main{padding:8px 28px 40px}section{background:#fff;border:1px solid #dde2e7;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{border:1px solid #d5dbe1;padding:3px 7px;text-align:right}
th{background:#eef1f4}th:first-child{text-align:left}
.row{display:flex;gap:22px;flex-wrap:wrap;align-items:flex-start}
.paper{background:#fbf7ec;border:1px dashed #c9b98a;padding:6px 10px;border-radius:4px;font-size:12px}
.paper table{font-size:11.5px}.caveat{color:#8a6d1a;font-weight:600;font-size:11.5px}
.notrun{color:#8a939c;font-style:italic}.pos{color:#1b7a34}.neg{color:#b3261e}.muted{color:#7b858f;font-size:12px}
pre{background:#f1f3f5;padding:8px;font-size:12px;max-height:420px;overflow:auto}
img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{border:1px solid #ccc}
td.t{text-align:left}
"""


def esc(x) -> str:
    return html.escape(str(x))


def table(header: list, rows: list[list], raw: bool = False) -> str:
    """HTML table; cells are escaped unless ``raw`` (already-safe HTML)."""
    cell = (lambda c: str(c)) if raw else esc
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for r in rows:  # numbers right-aligned, words left-aligned
        out.append(
            "<tr>"
            + "".join(f"<td{'' if _numeric(c) else ' class=t'}>{cell(c)}</td>" for c in r)
            + "</tr>"
        )
    return "".join(out) + "</table>"


def _numeric(c) -> bool:
    return isinstance(c, (int, float)) or bool(re.match(r"^\s*[-+–]?\s*[\d.]", str(c)))


def gallery_anchor(dataset: str, model: str, cam: str) -> str:
    """The id of the masks-and-boxes gallery of one CAM run (sections_run), for links."""
    return "gallery-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{dataset}-{model}-{cam}")


def not_run(what: str) -> str:
    return f'<p class="notrun">not run: {esc(what)}</p>'


def fmt_ms(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 2) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if n > 1 else "")


def fmt_delta(d: float, better: str = "↑", scale: float = 100.0) -> str:
    if d is None or math.isnan(d):
        return ""
    good = (d > 0) if better == "↑" else (d < 0)
    cls = "pos" if good else ("neg" if d != 0 else "")
    return f' <span class="{cls}">({d * scale:+.2f})</span>'


def fmt_mb(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.0f}"


def fmt1(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1f}"


def fmt3(x) -> str:
    return "–" if x is None else f"{float(x):.3f}"


def png_img(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def array_img(a: np.ndarray, alt: str) -> str:
    from ..io import encode_png

    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(encode_png(a)).decode()}">'


def paper_box(table_id: str) -> str:
    t = paper_tables.TABLES[table_id]
    rows = [
        [c if not isinstance(c, (tuple, float)) else _paper_cell(c) for c in r] for r in t["rows"]
    ]
    return (
        f'<div class="paper"><b>{esc(t["id"])}</b> {esc(t["title"])}<br>'
        f'<span class="caveat">{esc(paper_tables.CAVEAT)}</span>{table(t["columns"], rows)}</div>'
    )


def _paper_cell(c) -> str:
    if isinstance(c, tuple):
        return f"{c[0]:.2f} ± {c[1]:.2f}"
    return f"{c:.3f}" if c < 1 else f"{c:.2f}"
