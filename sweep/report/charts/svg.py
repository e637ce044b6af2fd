"""The chart object and the SVG pieces every chart is drawn with.

A :class:`Chart` is one SVG drawing whose elements carry their own presentation attributes
(fill, stroke, font size), so it looks the same inlined in the report's page, shown by
Jupyter (``_repr_svg_``: a standalone SVG document; ``_repr_html_``: an inline figure whose
hover tooltips work) or saved as a ``.svg`` file. Elements also carry CSS classes (the
page's hover styles, and tests, find them by class) and hover tooltips as SVG ``<title>``.

Example:
    >>> c = Chart("demo", 100, 40, text(50, 20, "hello"), label="a demo")
    >>> c.svg().startswith('<svg class="chart-svg demo"')
    True
    >>> 'xmlns="http://www.w3.org/2000/svg"' in c._repr_svg_()
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.report.format import esc

__all__ = ["AXIS", "FONT", "GRID", "INK", "LABEL", "MUTED", "Chart", "line", "points", "rect",
           "text", "title"]

FONT = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
INK = "#1d2330"  # titles
LABEL = "#3b4452"  # tick labels
MUTED = "#5f6b7a"  # notes
AXIS = "#8a939e"
GRID = "#e6e9ee"
_XMLNS = "http://www.w3.org/2000/svg"


@dataclass(frozen=True, repr=False)
class Chart:
    """An SVG chart: ``kind`` (its CSS class: heatmap, histogram, line, drawdown, bars,
    legend), size in px, the drawing, an accessible ``label``, the ``id`` of its ``<svg>``
    element, a ``caption`` shown under it in a figure, and ``fluid``: stretch to the width
    of the page (time series) instead of keeping its size."""

    kind: str
    width: float
    height: float
    body: str
    label: str = ""
    id: str | None = None
    caption: str = ""
    fluid: bool = False

    def __repr__(self) -> str:
        return f"<Chart {self.kind}: {self.label}>"

    def svg(self, *, standalone: bool = False) -> str:
        """The ``<svg>`` element; ``standalone``: a document of its own (with the SVG
        namespace and a fixed size), as an ``.svg`` file or an image needs."""
        ident = f' id="{esc(self.id)}"' if self.id else ""
        ns = f' xmlns="{_XMLNS}"' if standalone else ""
        size = ('width="100%"' if self.fluid and not standalone
                else f'width="{self.width:.0f}" height="{self.height:.0f}"')
        return (f'<svg class="chart-svg {esc(self.kind)}"{ident}{ns} '
                f'viewBox="0 0 {self.width:.0f} {self.height:.0f}" {size} role="img" '
                f'aria-label="{esc(self.label)}" font-family="{FONT}" '
                f'preserveAspectRatio="xMinYMin meet">{self.body}</svg>')

    def figure(self) -> str:
        """A ``<figure>`` with the inline SVG and its caption (HTML)."""
        width = "" if self.fluid else f"max-width:{self.width:.0f}px;"
        caption = (f'<figcaption style="color:{MUTED};font-size:12px;margin-top:2px;'
                   f'font-family:{FONT}">{esc(self.caption)}</figcaption>'
                   if self.caption else "")
        return (f'<figure class="chart {esc(self.kind)}" style="{width}margin:10px 0 16px">'
                f"{self.svg()}{caption}</figure>")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the chart as a standalone ``.svg`` file; returns the path."""
        path = Path(path)
        path.write_text('<?xml version="1.0" encoding="utf-8"?>\n'
                        + self.svg(standalone=True) + "\n", encoding="utf-8")
        return path

    def _repr_svg_(self) -> str:
        return self.svg(standalone=True)

    def _repr_html_(self) -> str:
        return self.figure()


def text(x: float, y: float, s: str, *, anchor: str = "middle", size: float = 11,
         fill: str = LABEL, weight: str | None = None, cls: str = "lbl",
         extra: str = "") -> str:
    """A text label at (x, y) (the baseline)."""
    bold = f' font-weight="{weight}"' if weight else ""
    return (f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
            f'font-size="{size:g}" fill="{fill}"{bold}{extra}>{esc(s)}</text>')


def title(x: float, y: float, s: str) -> str:
    """A chart's title (top left)."""
    return text(x, y, s, anchor="start", size=12.5, fill=INK, weight="600",
                cls="lbl title")


def line(x1: float, y1: float, x2: float, y2: float, *, stroke: str = AXIS,
         cls: str = "axis-line", width: float = 1, dash: str | None = None,
         tip: str | None = None) -> str:
    """A straight line."""
    d = f' stroke-dasharray="{dash}"' if dash else ""
    attrs = (f'class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
             f'stroke="{stroke}" stroke-width="{width:g}"{d}')
    if tip:
        return f"<line {attrs}><title>{esc(tip)}</title></line>"
    return f"<line {attrs}/>"


def rect(x: float, y: float, w: float, h: float, *, fill: str, cls: str,
         tip: str | None = None, extra: str = "") -> str:
    """A rectangle, with a hover tooltip when ``tip`` is given."""
    attrs = (f'class="{cls}"{extra} x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
             f'height="{max(h, 0):.1f}" fill="{fill}"')
    if tip:
        return f"<rect {attrs}><title>{esc(tip)}</title></rect>"
    return f"<rect {attrs}/>"


def points(xs: Iterable[float] | np.ndarray, ys: Iterable[float] | np.ndarray) -> str:
    """An SVG points list "x,y x,y ..."."""
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
