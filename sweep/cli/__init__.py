"""The ``backsweep`` command line (also ``python -m backsweep``).

Example:
    $ backsweep data synth -o data/synth.parquet --assets 50 --bars 1000 --seed 7
    wrote 1000 bars x 50 assets, 2010-01-04 .. 2013-11-01 -> data/synth.parquet
"""

from sweep.cli import data, export, results, runs  # noqa: F401 - each registers its commands
from sweep.cli.app import main

__all__ = ["main"]
