"""Charts as SVG, with no plotting library: each function returns a :class:`Chart`, which
the report inlines in its page and Jupyter shows inline (``_repr_svg_``/``_repr_html_``).

* :func:`heatmap` (and the :func:`colour_legend` small multiples share),
* :func:`histogram`,
* :func:`line_chart` (equity curves; walk-forward fold bands as :class:`Band`),
* :func:`drawdown_chart` (the underwater curve),
* :func:`grouped_bars` and :func:`fold_bars` (in-sample vs out-of-sample per fold),
* :func:`convergence_chart` (an adaptive search's best value against its trials).

``sweep.analysis`` draws these from a runs table (``analysis.heatmap_chart`` ...).

Example:
    >>> import numpy as np
    >>> from sweep.report import charts
    >>> c = charts.histogram(np.random.default_rng(0).normal(size=200), "sharpe")
    >>> c.kind, c._repr_svg_()[:4]
    ('histogram', '<svg')
"""

from sweep.report.charts.bars import fold_bars, grouped_bars, histogram
from sweep.report.charts.convergence import Convergence, convergence_chart
from sweep.report.charts.heatmap import colour_legend, heatmap
from sweep.report.charts.lines import Band, Line, drawdown_chart, drawdown_series, line_chart
from sweep.report.charts.scales import PALETTE, ColorScale
from sweep.report.charts.svg import Chart

__all__ = [
    "PALETTE",
    "Band",
    "Chart",
    "ColorScale",
    "Convergence",
    "Line",
    "colour_legend",
    "convergence_chart",
    "drawdown_chart",
    "drawdown_series",
    "fold_bars",
    "grouped_bars",
    "heatmap",
    "histogram",
    "line_chart",
]
