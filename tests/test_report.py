"""``backsweep report``: the self-contained HTML report, rendered in headless Chromium.

A real sweep (LocalCluster, one worker) provides the results folder; the walk-forward files
(folds.parquet, oos_equity.parquet, the sweep.json summary) are fixtures with the documented
columns. The pages are loaded in headless Chromium (``--dump-dom`` and ``--screenshot``):
the charts must be in the rendered DOM and the screenshot must not be blank.

Needs the Debian package ``chromium`` (or set BACKSWEEP_CHROMIUM to a Chrome binary); the
tests FAIL without it, on purpose: CI installs it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import cluster
import sweep
from engine import METRIC_NAMES
from engine.data import synthetic_panel
from sweep.cli import main
from sweep.report import (
    DSR_STRONG,
    DSR_WEAK,
    PBO_HIGH,
    PBO_LOW,
    ReportError,
    dsr_verdict,
    pbo_verdict,
    render_report,
    wfe_verdict,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
DATA = "synthetic:assets=5,bars=600,seed=3"
GRID = {"fast": [5, 10, 20, 40], "slow": [20, 40, 80], "kind": ["sma", "ema"]}
# fast < slow leaves 9 of the 12 (fast, slow) cells: 3 per heatmap panel are empty.
N_CELLS, N_EMPTY = 9, 3
N_RUNS = 2 * N_CELLS * 2  # kinds x cells x windows


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep's results folder: ma_cross over two date windows on a LocalCluster."""
    out = tmp_path_factory.mktemp("results")
    spec = sweep.SweepSpec(
        name="report_demo", strategy="ma_cross", data=DATA, grid=GRID,
        constraints=("fast < slow",),
        windows={"ranges": [["2010-01-01", "2010-12-31"], ["2011-01-01", "2012-12-31"]]},
    )
    with cluster.connect("local", workers=1) as client:
        summary = sweep.run_sweep(spec, client=client, out=out, progress=False,
                                  echo=lambda _m: None)
    assert summary.ok and summary.n_runs == N_RUNS, summary.describe()
    return out / "report_demo"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "report.html").unlink(missing_ok=True)
    return dst


FOLDS, TRAIN, TEST = 4, 200, 100
SUMMARY = {
    "n_folds": FOLDS, "objective": "sharpe", "dsr": 0.97, "pbo": 0.62, "wfe": 0.41,
    "oos_metrics": {"total_return": 0.083, "sharpe": 0.61, "max_drawdown": 0.094,
                    "cagr": 0.052},
    "param_stability": {"fast": {"distinct": 2, "mode": 10, "mode_share": 0.75, "cv": 0.33},
                        "slow": {"distinct": 1, "mode": 40, "mode_share": 1.0, "cv": 0.0},
                        "kind": {"distinct": 2, "mode": "ema", "mode_share": 0.5}},
    "dsr_by_fold": [0.99, 0.95, 0.97, 0.97], "pbo_by_fold": [0.5, 0.75, 0.5, 0.75],
}


def _add_walk_forward(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """folds.parquet, oos_equity.parquet and a sweep.json summary, with the documented
    columns: fold, train/test start/end, the chosen parameters, is_<m> and oos_<m> for every
    metric; timestamp, fold, equity (the stitched OOS curve), is_equity."""
    ts = synthetic_panel(n_assets=5, n_bars=600, seed=3).timestamps
    rng = np.random.default_rng(11)
    rows, segments = [], []
    oos_level = is_level = 1_000_000.0
    choices = [(10, 40, "ema"), (10, 40, "sma"), (5, 40, "ema"), (10, 40, "sma")]
    for k in range(FOLDS):
        a, b, c = k * TEST, k * TEST + TRAIN, k * TEST + TRAIN + TEST
        r_oos = rng.normal(0.0003 if k != 2 else -0.0015, 0.009, TEST)
        r_is = rng.normal(0.0011, 0.006, TEST)
        oos = oos_level * np.cumprod(1 + r_oos)
        ins = is_level * np.cumprod(1 + r_is)
        fast, slow, kind = choices[k]
        row: dict[str, Any] = {"fold": k, "train_start": ts[a], "train_end": ts[b - 1],
                               "test_start": ts[b], "test_end": ts[c - 1],
                               "fast": fast, "slow": slow, "kind": kind}
        metrics_is = {m: float(rng.uniform(0, 1)) for m in METRIC_NAMES}
        metrics_is.update(sharpe=1.2 + 0.3 * k, total_return=0.25 + 0.05 * k)
        metrics_oos = {m: float(rng.uniform(0, 1)) for m in METRIC_NAMES}
        metrics_oos.update(sharpe=float(r_oos.mean() / r_oos.std(ddof=1) * math.sqrt(252)),
                           total_return=float(oos[-1] / oos_level - 1))
        row |= {f"is_{m}": metrics_is[m] for m in METRIC_NAMES}
        row |= {f"oos_{m}": metrics_oos[m] for m in METRIC_NAMES}
        rows.append(row)
        segments.append(pl.DataFrame({"timestamp": ts[b:c], "fold": [k] * TEST,
                                      "equity": oos, "is_equity": ins}))
        oos_level, is_level = float(oos[-1]), float(ins[-1])
    folds = pl.DataFrame(rows).with_columns(
        pl.col(c).cast(pl.Datetime("ns"))
        for c in ("train_start", "train_end", "test_start", "test_end"))
    equity = pl.concat(segments).with_columns(pl.col("timestamp").cast(pl.Datetime("ns")))
    folds.write_parquet(root / "folds.parquet")
    equity.write_parquet(root / "oos_equity.parquet")
    meta = json.loads((root / "sweep.json").read_text())
    meta["summary"] = SUMMARY
    (root / "sweep.json").write_text(json.dumps(meta, indent=2))
    return folds, equity


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
    """Elements of a rendered page: tag, attributes, the text of their <title> child and
    the id of the <svg> they are drawn in."""

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


# ------------------------------------------------------------------ PNG checks
def image_stats(png: Path) -> dict[str, Any]:
    """Size and pixel statistics of a PNG (Pillow when installed, else a zlib decoder)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the test extras' matplotlib
        return _png_stats_zlib(png)
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    flat = rgb.reshape(-1, 3)
    background = np.all(flat >= 250, axis=1)
    return {"width": rgb.shape[1], "height": rgb.shape[0], "std": float(rgb.std()),
            "ink": float(1 - background.mean()),
            "colors": int(np.unique(flat[::7] // 8, axis=0).shape[0]), "rgb": rgb}


def _png_stats_zlib(png: Path) -> dict[str, Any]:
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = depth = ctype = 0
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype] * depth // 8
    data = zlib.decompress(idat)
    stride = 1 + width * bpp
    assert len(data) == height * stride
    rows = [data[i * stride + 1:(i + 1) * stride] for i in range(height)]
    busy = sum(len(set(r[::3])) > 2 for r in rows) / max(height, 1)
    return {"width": width, "height": height, "std": 255.0 * busy, "ink": busy,
            "colors": 1000 if busy > 0.2 else 1, "rgb": None}


def assert_not_blank(stats: dict[str, Any], width: int, height: int) -> None:
    assert (stats["width"], stats["height"]) == (width, height)
    assert stats["ink"] > 0.05, f"screenshot looks blank: {stats['ink']:.1%} non-white pixels"
    assert stats["std"] > 10, f"screenshot has almost no contrast (std {stats['std']:.1f})"
    assert stats["colors"] > 40, f"screenshot has only {stats['colors']} colours"


def count_near(rgb: np.ndarray | None, color: str, tol: int = 30) -> int:
    if rgb is None:  # no Pillow: colours not checked
        return 10**9
    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(np.abs(rgb - target) <= tol, axis=-1).sum())


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


# ------------------------------------------------------------------ tests
def test_plain_sweep_report_renders_in_chromium(plain: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.html"
    # The real command line, in a subprocess.
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "report", str(plain), "-o",
                           str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    text = out.read_text()
    assert_self_contained(text)
    assert not list(tmp_path.glob(".*.tmp")), "a temp file was left behind"

    dom = dump_dom(out, tmp_path)
    # Header
    h1 = dom.find("h1")[0]
    assert "report_demo" in "".join(h1["text"])
    assert "ma_cross" in text and DATA in text and "complete" in text
    # Heatmaps: fast x slow (the only numeric axes), all windows + one per window.
    for key in ("all", "0", "1"):
        cells = dom.find("rect", "heatmap-cell", svg=f"heatmap-{key}")
        empty = dom.find("rect", "heatmap-empty", svg=f"heatmap-{key}")
        assert (len(cells), len(empty)) == (N_CELLS, N_EMPTY), key
        assert all(c["attrs"]["fill"].startswith("#") for c in cells)
        assert all(c["title"] and "mean sharpe" in c["title"] for c in cells)
    assert len(dom.find("rect", "legend-swatch")) > 10
    # A cell's hover value is the mean over its runs (kind and windows averaged).
    runs = sweep.load_results(plain).collect()
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
    # Top runs: 20 rows, best first.
    table = dom.find("table", id_="top-runs-table")
    assert table
    body_rows = [e for e in dom.find("tr") if e["parent"] and e["parent"]["tag"] == "tbody"
                 and e["parent"]["parent"] is table[0]]
    assert len(body_rows) == 20
    best = runs.sort("sharpe", descending=True)["sharpe"][0]
    assert f"{best:.3f}" in text
    # No walk-forward section in a plain sweep.
    assert not dom.find(id_="walk-forward") and not dom.find(id_="oos-equity-line")

    stats = image_stats(screenshot(out, tmp_path, 2400))
    assert_not_blank(stats, 1280, 2400)
    assert count_near(stats["rgb"], "#4f7fc4", 12) > 500, "no histogram bars in the picture"


def test_walk_forward_report_renders_in_chromium(plain: Path, tmp_path: Path) -> None:
    root = _copy(plain, tmp_path / "wf_demo")
    folds, equity = _add_walk_forward(root)
    out = write_report(root)
    assert out == root / "report.html"
    text = out.read_text()
    assert_self_contained(text)

    dom = dump_dom(out, tmp_path)
    oos = dom.find("polyline", id_="oos-equity-line")
    ins = dom.find("polyline", id_="is-equity-line")
    assert len(oos) == 1 and len(ins) == 1
    points = oos[0]["attrs"]["points"].split()
    assert len(points) == equity.height  # 400 bars: not thinned
    xs = [float(p.split(",")[0]) for p in points]
    assert xs == sorted(xs)
    assert len(dom.find("line", "fold-boundary", svg="equity-chart")) == FOLDS
    assert len(dom.find("rect", "fold-band", svg="equity-chart")) == FOLDS
    assert dom.find("polygon", id_="oos-drawdown-area")
    assert len(dom.find("rect", "fold-bar", svg="fold-sharpe-chart")) >= 2 * FOLDS
    # The folds table: one row a fold with its dates, chosen parameters, IS vs OOS numbers.
    table = dom.find("table", id_="folds-table")[0]
    rows = [e for e in dom.find("tr") if e["parent"] and e["parent"]["tag"] == "tbody"
            and e["parent"]["parent"] is table]
    assert len(rows) == FOLDS
    first = folds.row(0, named=True)
    assert f"{first['test_start']:%Y-%m-%d} to {first['test_end']:%Y-%m-%d}" in text
    assert f"{first['oos_sharpe']:.3f}" in text
    # Verdicts in words.
    dsr = "".join(dom.find(id_="verdict-dsr")[0]["text"])
    pbo = "".join(dom.find(id_="verdict-pbo")[0]["text"])
    wfe = "".join(dom.find(id_="verdict-wfe")[0]["text"])
    assert "DSR 0.97: the selected Sharpe is very likely genuine after deflating for" in dsr
    assert ("PBO 0.62: high probability that the in-sample winner underperforms the median "
            "out of sample — likely overfit") in pbo
    assert "WFE 0.41: out of sample keeps only 41% of the in-sample performance" in wfe
    assert "verdict good" in text and "verdict bad" in text and "verdict warn" in text
    assert "mode_share" in text  # parameter stability table
    # The rest of the page is still there.
    assert dom.find("rect", "heatmap-cell") and dom.find("rect", "hist-bar")

    png = screenshot(out, tmp_path, 3400)
    stats = image_stats(png)
    assert_not_blank(stats, 1280, 3400)
    assert count_near(stats["rgb"], "#1f5fbf", 25) > 300, "no OOS equity line in the picture"
    assert count_near(stats["rgb"], "#e08a1e", 25) > 100, "no IS equity line in the picture"


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
    meta = json.loads((root / "sweep.json").read_text())
    meta.update(runs_failed=3, status="incomplete", failed_chunks={"7": "KilledWorker: boom"})
    (root / "sweep.json").write_text(json.dumps(meta))

    text = render_report(root)
    assert "3 run(s) failed" in text and message in text
    assert "1 chunk(s) failed" in text and "KilledWorker: boom" in text
    assert "This sweep is <b>incomplete</b>" in text
    top = text[text.index('id="top-runs-table"'):]
    assert not any(run_id[:12] in top for run_id in bad)
    assert f"Out of {N_RUNS - 3} successful runs" in text


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
    cases = [(empty, "no sweep.json"), (no_runs, "no runs"), (tmp_path / "missing", ""),
             (broken, "unreadable")]
    for folder, words in cases:
        out = tmp_path / f"{folder.name}.html"
        res = cli("report", folder, "-o", out)
        assert res.exit_code == 2, (folder, res.output)
        assert words in res.output
        assert not out.exists() and not (folder / "report.html").exists()
        if folder.exists():
            with pytest.raises(ReportError):
                render_report(folder)
    res = cli("report", plain, "-o", tmp_path / "x.html", "--metric", "nope")
    assert res.exit_code == 2 and "not a metric" in res.output
    assert not (tmp_path / "x.html").exists()


def test_other_metric_and_default_output(plain: Path, tmp_path: Path) -> None:
    root = _copy(plain, tmp_path / "copy")
    res = cli("report", root, "--metric", "max_drawdown")
    assert res.exit_code == 0, res.output
    text = (root / "report.html").read_text()
    assert "Parameter heatmaps: mean max_drawdown" in text and "(lower is better)" in text
    assert oct((root / "report.html").stat().st_mode & 0o777) == "0o644"


def test_sampled_grid_is_binned_and_single_axis_works(tmp_path: Path) -> None:
    """A random-sample sweep (a continuous axis: binned) over one window, and a sweep where
    a single parameter varies (a one-row heatmap); written with the ResultStore layout."""
    rng = np.random.default_rng(5)
    n = 400
    x = rng.uniform(0.001, 0.5, n)
    y = rng.integers(1, 4, n)
    runs = pl.DataFrame({
        "run_id": [f"r{i:05d}" for i in range(n)], "chunk_id": 0, "strategy": "demo",
        "window": 0, "x": x, "y": y, "label": "a",
        **{m: rng.normal(size=n) for m in METRIC_NAMES}, "error": pl.Series([None] * n,
                                                                           dtype=pl.String),
    }).with_columns(sharpe=pl.col("x") * 4 - 1 + 0.1 * pl.col("y"))
    for name, frame, grid in (("sampled", runs, {"x": {"start": 0.001, "stop": 0.5},
                                                 "y": [1, 2, 3], "label": ["a"]}),
                              ("one_axis", runs.with_columns(y=pl.lit(2)),
                               {"x": [0.1], "y": [2], "label": ["a"]})):
        root = tmp_path / name
        (root / "runs" / "window=0").mkdir(parents=True)
        frame.drop("window").write_parquet(root / "runs" / "window=0" / "part-0000000.parquet")
        (root / "sweep.json").write_text(json.dumps(
            {"name": name, "spec": {"strategy": "demo", "data": "x", "grid": grid},
             "n_runs": n, "runs_written": n, "runs_failed": 0, "status": "complete",
             "windows": [{"window": 0, "start": "2020-01-01", "end": "2020-12-31",
                          "bars": 252}]}))
        text = render_report(root)
        assert_self_contained(text)
        assert 'id="heatmap-0"' in text and 'id="heatmap-all"' not in text  # one window
        cells = re.findall(r'class="heatmap-cell"', text)
        if name == "sampled":
            empty = re.findall(r'class="heatmap-empty"', text)
            assert len(cells) + len(empty) == 30 * 3  # 30 bins of x, 3 values of y
            assert len(cells) > 80  # ~4 runs a cell: few cells are empty
            assert re.search(r">0\.00\d+–0\.0\d+</text>", text)  # the first bin's label
        else:
            assert 0 < len(cells) <= 30 and "data-y=\"0\"" in text


def test_verdict_thresholds() -> None:
    assert dsr_verdict(DSR_STRONG, 10)[0] == "good"
    assert dsr_verdict(0.949, 10)[0] == "warn"
    assert dsr_verdict(DSR_WEAK, 10)[0] == "warn"
    assert dsr_verdict(0.49, 10)[0] == "bad"
    assert "deflating for 10 trials" in dsr_verdict(0.99, 10)[1]
    assert pbo_verdict(0.19)[0] == "good"
    assert pbo_verdict(PBO_LOW)[0] == "warn"
    assert pbo_verdict(PBO_HIGH)[0] == "bad"
    assert "likely overfit" in pbo_verdict(0.62)[1]
    assert wfe_verdict(0.5)[0] == "good"
    assert wfe_verdict(0.2)[0] == "warn"
    assert wfe_verdict(-0.1)[0] == "bad"
