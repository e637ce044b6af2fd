"""``backsweep report``: the self-contained HTML report, rendered in headless Chromium.

A real sweep and a real walk-forward (LocalCluster, one worker) provide the results
folders. The pages are loaded in headless Chromium (``--dump-dom`` and ``--screenshot``):
the charts must be in the rendered DOM, and the screenshot (read with Pillow, a test
dependency) must show them in their colours.

Needs the Debian package ``chromium`` (or set BACKSWEEP_CHROMIUM to a Chrome binary); the
tests FAIL without it, on purpose: CI installs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

import cluster
import strategies
import sweep
from engine import METRIC_NAMES, run_backtest
from engine.data import synthetic_panel
from sweep.cli import main
from sweep.plan import Plan
from sweep.record import DataInfo, SearchInfo, SweepRecord, WindowInfo, WindowVerdict
from sweep.report import (
    DSR_STRONG,
    DSR_WEAK,
    PBO_HIGH,
    PBO_LOW,
    Curve,
    ReportError,
    dsr_verdict,
    load,
    overfitting_checks,
    pbo_verdict,
    render_report,
    wfe_verdict,
    write_report,
)
from sweep.report.charts import PALETTE
from sweep.report.format import esc, fmt_metric
from sweep.select import Selection, select_best

REPO = Path(__file__).resolve().parents[1]
DATA = "synthetic:assets=5,bars=600,seed=3"
GRID = {"fast": [5, 10, 20, 40], "slow": [20, 40, 80], "kind": ["sma", "ema"]}
# fast < slow leaves 9 of the 12 (fast, slow) cells: 3 per heatmap panel are empty.
N_CELLS, N_EMPTY = 9, 3
N_RUNS = 2 * N_CELLS * 2  # kinds x cells x windows
FOLDS, TRAIN, TEST = 4, 200, 100


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real results folders: ma_cross over two date windows, and a walk-forward of four
    folds over the same grid, both on a LocalCluster."""
    out = tmp_path_factory.mktemp("results")
    plain = sweep.SweepSpec(
        name="report_demo", strategy="ma_cross", data=DATA, grid=GRID,
        constraints=("fast < slow",),
        windows={"ranges": [["2010-01-01", "2010-12-31"], ["2011-01-01", "2012-12-31"]]},
    )
    wf = dataclasses.replace(plain, name="wf_demo", windows=None,
                             walk_forward={"train": TRAIN, "test": TEST, "min_trades": 1})
    with cluster.connect("local", workers=1) as client:
        summary = sweep.run_sweep(plain, client=client, out=out, progress=False)
        result = sweep.walk_forward(wf, client=client, out=out, progress=False)
    assert summary.ok and summary.n_runs == N_RUNS, summary.describe()
    assert result.ok and result.summary.n_folds == FOLDS
    return {"plain": out / "report_demo", "wf": out / "wf_demo"}


@pytest.fixture(scope="module")
def plain(stores: dict[str, Path]) -> Path:
    return stores["plain"]


@pytest.fixture(scope="module")
def wf(stores: dict[str, Path]) -> Path:
    return stores["wf"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "report.html").unlink(missing_ok=True)
    return dst


def edit_record(root: Path, **changes: Any) -> SweepRecord:
    """Change fields of a store's sweep.json (through the record, as the sweep does)."""
    record = SweepRecord.read(root / "sweep.json")
    for key, value in changes.items():
        setattr(record, key, value)
    record.write(root / "sweep.json")
    return record


# ------------------------------------------------------------------ chromium
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def _chromium() -> str:
    for name in (os.environ.get("BACKSWEEP_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and (path := shutil.which(name)):
            return path
    pytest.fail("headless Chromium is required by the report tests and was not found: "
                "install it (Debian/Ubuntu: apt-get update && apt-get install -y chromium) "
                "or set BACKSWEEP_CHROMIUM to a Chrome/Chromium binary")


def _browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}",
           *args, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def dump_dom(page: Path, tmp: Path) -> Dom:
    dom = Dom()
    dom.feed(_browse(page, tmp, "--dump-dom").stdout)
    assert dom.elements, "chromium dumped an empty DOM"
    return dom


def screenshot(page: Path, tmp: Path, height: int) -> Path:
    png = tmp / f"{page.stem}.png"
    _browse(page, tmp, "--hide-scrollbars", f"--window-size=1280,{height}",
            f"--screenshot={png}")
    assert png.is_file(), "chromium wrote no screenshot"
    return png


class Dom(HTMLParser):
    """Elements of a page: tag, attributes, the text of their <title> child and the id of
    the <svg> they are drawn in."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._stack: list[dict[str, Any]] = []
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        svg = next((e["attrs"].get("id") for e in reversed(self._stack) if e["tag"] == "svg"),
                   None)
        el = {"tag": tag, "attrs": dict(attrs), "title": None, "svg": svg,
              "parent": self._stack[-1] if self._stack else None, "text": []}
        self.elements.append(el)
        if tag == "title" and svg is not None:
            self._title = []
        if tag not in self.VOID:
            self._stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            parent = self._stack[-2] if len(self._stack) > 1 else None
            if parent is not None:
                parent["title"] = "".join(self._title)
            self._title = None
        while self._stack:
            if self._stack.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self._stack:
            self._stack[-1]["text"].append(data)

    def find(self, tag: str | None = None, cls: str | None = None, id_: str | None = None,
             svg: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.elements
                if (tag is None or e["tag"] == tag)
                and (cls is None or cls in (e["attrs"].get("class") or "").split())
                and (id_ is None or e["attrs"].get("id") == id_)
                and (svg is None or e["svg"] == svg)]

    def rows(self, table_id: str) -> list[dict[str, Any]]:
        """The body rows of a table."""
        table = self.find("table", id_=table_id)
        assert len(table) == 1, table_id
        return [e for e in self.find("tr") if e["parent"] and e["parent"]["tag"] == "tbody"
                and e["parent"]["parent"] is table[0]]

    def text_of(self, el: dict[str, Any]) -> str:
        """All the text inside an element, its pieces joined by spaces."""
        out = list(el["text"])
        for child in self.elements:
            p = child["parent"]
            while p is not None and p is not el:
                p = p["parent"]
            if p is el:
                out += child["text"]
        return " ".join(out)


def parse(text: str) -> Dom:
    dom = Dom()
    dom.feed(text)
    return dom


# ------------------------------------------------------------------ PNG checks
def image_stats(png: Path) -> dict[str, Any]:
    """Size and pixel statistics of a screenshot."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    flat = rgb.reshape(-1, 3)
    background = np.all(flat >= 250, axis=1)
    return {"width": rgb.shape[1], "height": rgb.shape[0], "std": float(rgb.std()),
            "ink": float(1 - background.mean()),
            "colors": int(np.unique(flat[::7] // 8, axis=0).shape[0]), "rgb": rgb}


def assert_not_blank(stats: dict[str, Any], width: int, height: int) -> None:
    assert (stats["width"], stats["height"]) == (width, height)
    assert stats["ink"] > 0.05, f"screenshot looks blank: {stats['ink']:.1%} non-white pixels"
    assert stats["std"] > 10, f"screenshot has almost no contrast (std {stats['std']:.1f})"
    assert stats["colors"] > 40, f"screenshot has only {stats['colors']} colours"


def count_near(rgb: np.ndarray, color: str, tol: int = 30) -> int:
    """Pixels within ``tol`` of ``color`` in every channel."""
    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(np.abs(rgb - target) <= tol, axis=-1).sum())


def test_count_near_counts_pixels(tmp_path: Path) -> None:
    """The colour checks below are real: a known picture gives known counts."""
    img = np.full((20, 30, 3), 255, dtype=np.uint8)
    img[:5, :10] = (0x4f, 0x7f, 0xc4)
    img[10:12, :] = (0xe0, 0x8a, 0x1e)
    Image.fromarray(img).save(tmp_path / "known.png")
    rgb = image_stats(tmp_path / "known.png")["rgb"]
    assert count_near(rgb, "#4f7fc4", 0) == 50
    assert count_near(rgb, "#e08a1e", 5) == 60
    assert count_near(rgb, "#1f5fbf", 12) == 0


# ------------------------------------------------------------------ helpers
EXTERNAL = re.compile(r"""(?:src|href|xlink:href|action)\s*=\s*["']?\s*(?:https?:)?//"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text, "the page references a URL"
    assert not EXTERNAL.search(text), "the page loads an external resource"
    assert "<script" not in text.lower(), "the page should need no JavaScript"
    assert "<link" not in text.lower(), "the page should need no linked stylesheet or font"


def cli(*args: str | os.PathLike[str]) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def top_curves(root: Path, k: int = 3) -> list[Curve]:
    """The report's top runs rebuilt with engine.run_backtest on the sweep's panel."""
    data = load(root)
    panel = synthetic_panel(n_assets=5, n_bars=600, seed=3)
    ts = panel.timestamps
    strategy = strategies.get("ma_cross")
    curves = []
    for row in data.top_runs(k).iter_rows(named=True):
        w = data.record.windows[row["window"]]
        weights = strategy.weights(panel, fast=row["fast"], slow=row["slow"], kind=row["kind"])
        res = run_backtest(panel, weights, window=(ts[w.start_bar], ts[w.end_bar - 1]))
        curves.append(Curve.of(row["run_id"], data.label(row), res))
    return curves


# ------------------------------------------------------------------ tests
def test_plain_sweep_report_renders_in_chromium(plain: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.html"
    # The real command line, in a subprocess.
    # (--curves 0: the replayed top runs' curves are tested in tests/test_playback.py)
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "report", str(plain), "-o",
                           str(out), "--curves", "0"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    text = out.read_text()
    assert_self_contained(text)
    assert not list(tmp_path.glob(".*.tmp")), "a temp file was left behind"
    record = SweepRecord.read(plain / "sweep.json")
    runs = sweep.load_results(plain).collect()

    dom = dump_dom(out, tmp_path)
    # Header
    assert "report_demo" in "".join(dom.find("h1")[0]["text"])
    assert "ma_cross" in text and DATA in text and "complete" in text
    assert f"{record.plan.n_chunks} chunk" in text
    # Overfitting checks: the mean DSR and PBO over the windows, in words, and per window.
    checks = {c.key: c for c in overfitting_checks(record)}
    assert set(checks) == {"dsr", "pbo"} and not dom.find(id_="verdict-wfe")
    for key, check in checks.items():
        li = dom.find("li", id_=f"verdict-{key}")[0]
        assert dom.text_of(li) == check.sentence
        assert check.verdict.level in li["attrs"]["class"]
    assert checks["dsr"].sentence.startswith(f"DSR {record.mean('dsr'):.2f}")
    assert "after deflating for 18 trials" in checks["dsr"].sentence
    assert "Mean over 2 windows." in checks["dsr"].sentence
    assert len(dom.rows("overfit-table")) == 2
    # Heatmaps: fast x slow (the only numeric axes), all windows + one per window.
    for key in ("all", "0", "1"):
        cells = dom.find("rect", "heatmap-cell", svg=f"heatmap-{key}")
        empty = dom.find("rect", "heatmap-empty", svg=f"heatmap-{key}")
        assert (len(cells), len(empty)) == (N_CELLS, N_EMPTY), key
        assert all(c["attrs"]["fill"].startswith("#") for c in cells)
        assert all(c["title"] and "mean sharpe" in c["title"] for c in cells)
    assert len(dom.find("rect", "legend-swatch")) == 48
    # A cell's hover value is the mean over its runs (kind and windows averaged).
    want = runs.filter((pl.col("fast") == 10) & (pl.col("slow") == 40))["sharpe"].mean()
    cell = [c for c in dom.find("rect", "heatmap-cell", svg="heatmap-all")
            if c["title"].startswith("fast=10, slow=40:")]
    assert len(cell) == 1 and f"mean sharpe {want:.3f} over 4 runs" in cell[0]["title"]
    # Histograms of the three metrics: every successful run counted once.
    for metric in ("sharpe", "total_return", "max_drawdown"):
        bars = dom.find("rect", "hist-bar", svg=f"hist-{metric}")
        assert len(bars) >= 5, metric
        counted = sum(int(re.search(r": (\d+) runs?$", b["title"]).group(1)) for b in bars)
        assert counted == N_RUNS, metric
    # Top runs: 20 rows, best first, as sweep.select chooses them.
    rows = dom.rows("top-runs-table")
    want_ids = select_best(runs, Selection("sharpe"), k=20)["run_id"].to_list()
    assert [dom.text_of(r).split()[-1] for r in rows] == [i[:12] for i in want_ids]
    assert f"{runs['sharpe'].max():.3f}" in dom.text_of(rows[0])
    # Details: the windows with their bars per year.
    assert len(dom.rows("windows-table")) == 2
    assert f"{record.windows[0].bars_per_year:.1f}" in text
    # No walk-forward section and no curves when none are asked for.
    assert not dom.find(id_="walk-forward") and not dom.find(id_="oos-equity-line")
    assert not dom.find(id_="top-equity")
    assert [a["attrs"]["href"] for a in dom.find("a")][:4] == [
        "#verdicts", "#heatmaps", "#distributions", "#top-runs"]

    stats = image_stats(screenshot(out, tmp_path, 2400))
    assert_not_blank(stats, 1280, 2400)
    rgb = stats["rgb"]
    assert count_near(rgb, "#4f7fc4", 12) > 500, "no histogram bars in the picture"
    assert count_near(rgb, "#e4e6ea", 3) > 300, "no empty heatmap cells in the picture"
    assert count_near(rgb, "#1b7837", 12) > 100, "no green (badge, strong cells) in the picture"


def test_walk_forward_report_renders_in_chromium(wf: Path, tmp_path: Path) -> None:
    root = _copy(wf, tmp_path / "wf_demo")
    real = SweepRecord.read(root / "sweep.json").walk_forward
    edit_record(root, walk_forward=dataclasses.replace(real, dsr=0.97, pbo=0.62, wfe=0.41))
    folds = pl.read_parquet(root / "folds.parquet")
    oos = pl.read_parquet(root / "oos_equity.parquet")
    out = write_report(root)
    assert out == root / "report.html"
    text = out.read_text()
    assert_self_contained(text)

    dom = dump_dom(out, tmp_path)
    line = dom.find("polyline", id_="oos-equity-line")
    ins = dom.find("polyline", id_="is-equity-line")
    assert len(line) == 1 and len(ins) == 1
    points = line[0]["attrs"]["points"].split()
    assert len(points) == oos.height == FOLDS * TEST  # not thinned
    xs = [float(p.split(",")[0]) for p in points]
    assert xs == sorted(xs)
    assert len(dom.find("line", "fold-boundary", svg="equity-chart")) == FOLDS
    bands = dom.find("rect", "fold-band", svg="equity-chart")
    assert len(bands) == FOLDS and bands[0]["title"].startswith("fold 0: out of sample from")
    assert dom.find("polygon", id_="oos-drawdown-area")
    # The drawdown chart's deepest point is the walk-forward's out-of-sample max drawdown.
    label = "".join(dom.find("text", "dd-label", svg="drawdown-chart")[0]["text"])
    assert label == f"max drawdown {fmt_metric('max_drawdown', real.oos_metrics['max_drawdown'])}"
    assert len(dom.find("rect", "fold-bar", svg="fold-sharpe-chart")) >= 2 * FOLDS
    # The folds table: one row a fold with its dates, chosen parameters, IS vs OOS numbers.
    assert len(dom.rows("folds-table")) == FOLDS
    first = folds.row(0, named=True)
    assert f"{first['test_start']:%Y-%m-%d} to {first['test_end']:%Y-%m-%d}" in text
    assert fmt_metric("sharpe", first["oos_sharpe"]) in dom.text_of(dom.rows("folds-table")[0])
    # Verdicts in words.
    dsr = "".join(dom.find(id_="verdict-dsr")[0]["text"])
    pbo = "".join(dom.find(id_="verdict-pbo")[0]["text"])
    wfe = "".join(dom.find(id_="verdict-wfe")[0]["text"])
    assert "DSR 0.97: the selected Sharpe is very likely genuine after deflating for" in dsr
    assert f"Mean over {FOLDS} folds." in dsr
    assert ("PBO 0.62: high probability that the in-sample winner underperforms the median "
            "out of sample — likely overfit") in pbo
    assert "WFE 0.41: out of sample keeps only 41% of the in-sample performance" in wfe
    assert "verdict good" in text and "verdict bad" in text and "verdict warn" in text
    assert "mode_share" in text  # parameter stability table
    assert "among runs with n_trades &gt;= 1" in text  # the walk-forward's filter
    # The rest of the page is still there.
    assert dom.find("rect", "heatmap-cell") and dom.find("rect", "hist-bar")

    stats = image_stats(screenshot(out, tmp_path, 3400))
    assert_not_blank(stats, 1280, 3400)
    assert count_near(stats["rgb"], "#1f5fbf", 25) > 300, "no OOS equity line in the picture"
    assert count_near(stats["rgb"], "#e08a1e", 25) > 100, "no IS equity line in the picture"


def test_walk_forward_verdicts_are_the_records(wf: Path) -> None:
    record = SweepRecord.read(wf / "sweep.json")
    text = render_report(wf)
    checks = overfitting_checks(record)
    assert [c.key for c in checks] == ["dsr", "pbo", "wfe"]
    for c in checks:
        assert f'id="verdict-{c.key}">{esc(c.sentence)}</li>' in text
    info = record.walk_forward
    assert checks[2].value == info.wfe and checks[0].value == info.dsr


def test_top_runs_equity_section(plain: Path, tmp_path: Path) -> None:
    curves = top_curves(plain, 3)
    runs = sweep.load_results(plain).collect()
    stored = {r["run_id"]: r for r in runs.iter_rows(named=True)}
    for c in curves:  # the curves are the stored runs'
        assert c.equity[-1] == pytest.approx(stored[c.run_id]["final_equity"], rel=1e-9)
    page = write_report(plain, tmp_path / "curves.html",
                        curves=[tuple(c) for c in curves])  # plain tuples work too
    text = page.read_text()
    assert_self_contained(text)
    dom = dump_dom(page, tmp_path)
    assert dom.find("section", id_="top-equity")
    hrefs = [a["attrs"]["href"] for a in dom.find("a")]
    assert hrefs[:3] == ["#verdicts", "#top-equity", "#heatmaps"]
    lines = dom.find("polyline", "curve", svg="top-equity-chart")
    assert [e["attrs"]["id"] for e in lines] == ["curve-0", "curve-1", "curve-2"]
    bg = dom.find("rect", "plot-bg", svg="top-equity-chart")[0]["attrs"]
    x0, y0 = float(bg["x"]), float(bg["y"])
    x1, y1 = x0 + float(bg["width"]), y0 + float(bg["height"])
    for e, c in zip(lines, curves, strict=True):
        assert e["attrs"]["stroke"] == PALETTE[curves.index(c)]
        pts = np.array([[float(v) for v in p.split(",")] for p in e["attrs"]["points"].split()])
        assert len(pts) == len(c.equity) and np.all(np.diff(pts[:, 0]) > 0)
        assert np.all((pts[:, 0] >= x0 - 0.05) & (pts[:, 0] <= x1 + 0.05))
        assert np.all((pts[:, 1] >= y0 - 0.05) & (pts[:, 1] <= y1 + 0.05))
        # Higher equity is drawn higher up.
        i, j = int(np.argmax(c.equity)), int(np.argmin(c.equity))
        assert pts[i, 1] < pts[j, 1]
    # Curves of different windows sit side by side on one time axis.
    starts = {c.timestamps[0] for c in curves}
    first = [float(e["attrs"]["points"].split()[0].split(",")[0]) for e in lines]
    assert min(first) == pytest.approx(x0, abs=0.06)
    assert len(starts) == 1 or max(first) > x0 + 100
    # The table: one row a curve, its label and the stored metrics.
    rows = dom.rows("top-equity-table")
    assert len(rows) == 3
    for row, c in zip(rows, curves, strict=True):
        cells = dom.text_of(row)
        assert c.label in cells and c.run_id[:12] in cells
        assert fmt_metric("total_return", stored[c.run_id]["total_return"]) in cells
        assert fmt_metric("max_drawdown", stored[c.run_id]["max_drawdown"]) in cells
    # Labels in the legend.
    legend = [t for t in dom.find("text", svg="top-equity-chart")
              if "".join(t["text"]) in {c.label for c in curves}]
    assert len(legend) == 3


def test_failed_runs_are_reported(plain: Path, tmp_path: Path) -> None:
    root = _copy(plain, tmp_path / "with_errors")
    part = sorted((root / "runs").glob("window=1/part-*.parquet"))[0]
    df = pl.read_parquet(part)
    bad = df.sort("sharpe", descending=True)["run_id"].head(3).to_list()  # the best ones
    message = "ValueError: simulated failure for the report test"
    df = df.with_columns(
        pl.when(pl.col("run_id").is_in(bad)).then(pl.lit(message))
        .otherwise(pl.col("error")).alias("error"),
        *(pl.when(pl.col("run_id").is_in(bad)).then(None).otherwise(pl.col(m)).alias(m)
          for m in METRIC_NAMES),
    )
    df.write_parquet(part)
    edit_record(root, runs_failed=3, status="incomplete",
                failed_chunks={"7": "KilledWorker: boom"})

    text = render_report(root)
    assert "3 run(s) failed" in text and message in text and "(3 runs)" in text
    assert "1 chunk(s) failed" in text and "KilledWorker: boom" in text
    assert "This sweep is <b>incomplete</b>" in text
    top = text[text.index('id="top-runs-table"'):]
    assert not any(run_id[:12] in top for run_id in bad)
    assert f"Out of {N_RUNS - 3} successful runs" in text
    hist = text[text.index('id="hist-sharpe"'):]
    assert f"{N_RUNS - 3} runs" in hist[:hist.index("</svg>")]


def test_bad_input_exits_2_and_writes_nothing(plain: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_runs = tmp_path / "no_runs"
    no_runs.mkdir()
    shutil.copy(plain / "sweep.json", no_runs / "sweep.json")
    (no_runs / "runs" / "window=0").mkdir(parents=True)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sweep.json").write_text("{not json")
    old = _copy(plain, tmp_path / "old_layout")
    meta = json.loads((old / "sweep.json").read_text())
    del meta["schema"]
    (old / "sweep.json").write_text(json.dumps(meta))
    damaged = _copy(plain, tmp_path / "damaged")
    part = sorted((damaged / "runs").glob("window=1/part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-100])
    cases = [(empty, "no sweep.json"), (no_runs, "no runs"), (tmp_path / "missing", "no such"),
             (broken, "unreadable"), (old, "older backsweep"), (damaged, "is damaged")]
    for folder, words in cases:
        out = tmp_path / f"{folder.name}.html"
        res = cli("report", folder, "-o", out)
        assert res.exit_code == 2, (folder, res.output)
        assert words in res.output, (folder, res.output)
        assert not out.exists() and not (folder / "report.html").exists()
        with pytest.raises(ReportError, match=words):
            render_report(folder)
    res = cli("report", plain, "-o", tmp_path / "x.html", "--metric", "nope")
    assert res.exit_code == 2 and "not a metric" in res.output
    assert not (tmp_path / "x.html").exists()
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(ReportError, match="is a folder"):
        write_report(plain, folder)
    assert not list(folder.iterdir()) and not list(tmp_path.glob(".*.tmp"))


def test_other_metric_and_default_output(plain: Path, tmp_path: Path) -> None:
    root = _copy(plain, tmp_path / "copy")
    res = cli("report", root, "--metric", "max_drawdown")
    assert res.exit_code == 0, res.output
    text = (root / "report.html").read_text()
    assert "Parameter heatmaps: mean max_drawdown" in text and "(lower is better)" in text
    assert "best max_drawdown" in text  # the windows table
    assert oct((root / "report.html").stat().st_mode & 0o777) == "0o644"


def _hand_made_store(root: Path, frame: pl.DataFrame, grid: dict[str, Any],
                     search: SearchInfo | None = None) -> None:
    """A one-window store written with the layout's files and a record of this version."""
    (root / "runs" / "window=0").mkdir(parents=True)
    frame.drop("window").write_parquet(root / "runs" / "window=0" / "part-0000000.parquet")
    n = frame.height
    SweepRecord(
        name=root.name, digest="0" * 16, spec={"strategy": "demo", "data": "x", "grid": grid},
        fingerprint="f" * 16, data=DataInfo("x", 252, 3, "2020-01-01", "2020-12-31"),
        plan=Plan(n, n, 1), n_runs=n, runs_written=n, status="complete",
        windows=[WindowInfo(0, "2020-01-01", "2020-12-31", 252, 252.0, 0, 252)],
        overfit=[WindowVerdict(0, n, dsr=None, pbo=None, pbo_note="skipped: a test")],
        search=search,
    ).write(root / "sweep.json")


def test_sampled_grid_is_binned_and_single_axis_works(tmp_path: Path) -> None:
    """An adaptive search's trials (a continuous axis: binned) over one window, and a sweep
    where a single parameter varies (a one-row heatmap)."""
    rng = np.random.default_rng(5)
    n = 400
    runs = pl.DataFrame({
        "run_id": [f"r{i:05d}" for i in range(n)], "chunk_id": 0, "strategy": "demo",
        "window": 0, "trial": np.arange(n), "x": rng.uniform(0.001, 0.5, n),
        "y": rng.integers(1, 4, n),
        "label": "a", **{m: rng.normal(size=n) for m in METRIC_NAMES},
        "error": pl.Series([None] * n, dtype=pl.String),
    }).with_columns(sharpe=pl.col("x") * 4 - 1 + 0.1 * pl.col("y"))
    for name, frame, grid in (("sampled", runs, {"x": {"start": 0.001, "stop": 0.5},
                                                 "y": [1, 2, 3], "label": ["a"]}),
                              ("one_axis", runs.with_columns(y=pl.lit(2)),
                               {"x": [0.1], "y": [2], "label": ["a"]})):
        root = tmp_path / name
        search = SearchInfo("tpe", {"seed": 1}, n_trials=n, best_value=2.5)
        _hand_made_store(root, frame, grid, search if name == "sampled" else None)
        text = render_report(root)
        assert_self_contained(text)
        assert ("search tpe: 400 trials by sharpe, best 2.500" in text) == (name == "sampled")
        assert '<th class="param">trial</th>' not in text  # a trial number is no parameter
        assert 'id="heatmap-0"' in text and 'id="heatmap-all"' not in text  # one window
        # No DSR or PBO in the record: said so, with the record's note.
        assert "DSR: not available (fewer than two trials)." in text
        assert "PBO: not available (skipped: a test)." in text
        cells = re.findall(r'class="heatmap-cell"', text)
        if name == "sampled":
            empty = re.findall(r'class="heatmap-empty"', text)
            assert len(cells) + len(empty) == 30 * 3  # 30 bins of x, 3 values of y
            assert len(cells) > 80  # ~4 runs a cell: few cells are empty
            assert re.search(r">0\.00\d+–0\.0\d+</text>", text)  # the first bin's label
        else:
            assert 0 < len(cells) <= 30 and 'data-y="0"' in text


def test_verdict_thresholds() -> None:
    assert dsr_verdict(DSR_STRONG, 10).level == "good"
    assert dsr_verdict(0.949, 10)[0] == "warn"
    assert dsr_verdict(DSR_WEAK, 10).level == "warn"
    assert dsr_verdict(0.49, 10).level == "bad"
    assert "deflating for 10 trials" in dsr_verdict(0.99, 10)[1]
    assert [dsr_verdict(v, 5).word for v in (0.99, 0.6, 0.1)] == [
        "strong", "weak", "not significant"]
    assert pbo_verdict(0.19).level == "good"
    assert pbo_verdict(PBO_LOW).level == "warn"
    assert pbo_verdict(PBO_HIGH).level == "bad"
    assert "likely overfit" in pbo_verdict(0.62).sentence
    assert [pbo_verdict(v).word for v in (0.1, 0.3, 0.7)] == ["low", "moderate", "high"]
    assert wfe_verdict(0.5).level == "good"
    assert wfe_verdict(0.2).level == "warn"
    assert wfe_verdict(-0.1).level == "bad"
    level, sentence = wfe_verdict(0.8)[:2]
    assert level == "good" and sentence.startswith("WFE 0.80")


def test_overfitting_checks_of_a_plain_record() -> None:
    rec = SweepRecord(
        name="x", digest="d", spec={}, fingerprint="f",
        data=DataInfo("x", 10, 1, "2020-01-01", "2020-01-10"), plan=Plan(1, 1, 2),
        overfit=[WindowVerdict(0, 12, dsr=0.9, pbo=0.1), WindowVerdict(1, 14, dsr=1.0)])
    dsr, pbo = overfitting_checks(rec)
    assert dsr.value == pytest.approx(0.95) and dsr.verdict.level == "good"
    assert "deflating for 12–14 trials" in dsr.sentence
    assert dsr.sentence.endswith("Mean over 2 windows.")
    assert pbo.value == 0.1 and not pbo.over and pbo.sentence.endswith("(PBO < 0.2).")
    rec.overfit = None
    assert overfitting_checks(rec) == []
