"""Write the bundled sample stocks as a folder of per-ticker CSV files, laid out like the
price downloads researchers usually have (``Date,Open,High,Low,Close,Adj Close,Volume``,
one file a ticker): a stand-in for your own data in the README's first sweep.

    $ python examples/sample_csvs.py prices/
    wrote 5 files to prices/: AAPL.csv, FB.csv, GOOG.csv, IBM.csv, MSFT.csv

Needs ``bokeh-sampledata`` (``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from engine.data import sample_stocks


def write_csvs(folder: Path) -> list[Path]:
    """One CSV a ticker in ``folder`` (created); existing files are not replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = sample_stocks().to_frame()
    paths = []
    for (ticker,), rows in frame.group_by("asset", maintain_order=True):
        path = folder / f"{ticker}.csv"
        if path.exists():
            raise SystemExit(f"{path} exists; choose an empty folder")
        rows.select(
            pl.col("timestamp").dt.date().alias("Date"), pl.col("open").alias("Open"),
            pl.col("high").alias("High"), pl.col("low").alias("Low"),
            pl.col("close").alias("Close"), pl.col("close").alias("Adj Close"),
            pl.col("volume").alias("Volume"),
        ).write_csv(path)
        paths.append(path)
    return sorted(paths)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "prices")
    written = write_csvs(target)
    print(f"wrote {len(written)} files to {target}/: {', '.join(p.name for p in written)}")
