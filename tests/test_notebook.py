"""examples/backsweep_tour.ipynb runs top to bottom in a real Jupyter kernel.

The kernel must be this interpreter (the one with backsweep installed), whatever kernels
the machine has. So the test writes its own kernelspec into a temporary folder — kernel.json
with ``argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]``
under a name no other kernel uses — and puts that folder first on ``JUPYTER_PATH``, where
jupyter_client's KernelSpecManager looks first. Nothing is installed in the user's or the
system's Jupyter folders (no ``python -m ipykernel install``), and a "python3" kernelspec
pointing at another Python elsewhere on the machine cannot be picked up by mistake.

Needs the test extra's nbclient, nbformat and ipykernel.
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("bokeh_sampledata")   # the notebook uses the real sample stocks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "backsweep_tour.ipynb"
KERNEL = "backsweep-test-venv"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for sys.executable, visible only to this test (via JUPYTER_PATH)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"backsweep test ({sys.executable})",
        "language": "python",
        "env": {"NUMBA_NUM_THREADS": "1", "TQDM_DISABLE": "1"},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Keep the kernel's runtime files (connection files) out of the user's folders too.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable
    return KERNEL


def _outputs(nb: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", [])]


def _text(out: dict[str, Any]) -> str:
    if out.get("output_type") == "stream":
        return out.get("text", "")
    data = out.get("data", {})
    return "\n".join(str(data[k]) for k in ("text/plain", "text/html") if k in data)


def test_tour_notebook_executes(kernel_name: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    # Committed without outputs: what runs is what a reader sees.
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    started = time.monotonic()
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()   # raises CellExecutionError, with the cell's traceback, on any error
    seconds = time.monotonic() - started

    outputs = _outputs(nb)
    errors = [o for _, o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    texts = [_text(o) for _, o in outputs]
    joined = "\n".join(texts)
    # The top table (polars DataFrame output) with its Sharpe column.
    assert any("sharpe" in t and "max_drawdown" in t for t in texts)
    # The analysis charts, inline: each output carries a standalone SVG document and an HTML
    # figure (3 heatmaps, the sensitivity bars, 2 walk-forward curves).
    charts = [o["data"] for _, o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(charts) >= 6
    for data in charts:
        root = ET.fromstring(data["image/svg+xml"])
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert data["text/html"].startswith('<figure class="chart')
    svgs = [d["image/svg+xml"] for d in charts]
    assert sum('class="heatmap-cell"' in s for s in svgs) >= 3
    assert sum('class="bar ' in s for s in svgs) >= 1
    assert sum('id="oos-equity-line"' in s for s in svgs) >= 2
    # ... drawn by sweep.analysis, not by SVG helpers of the notebook's own.
    assert not any("<svg" in c.source or "SVG(" in c.source for c in nb.cells
                   if c.cell_type == "code")
    # The sweeps and the walk-forwards ran and reported.
    assert "walk-forward:" in joined and "folds; out of sample" in joined
    assert "DSR" in joined and "PBO" in joined and "WFE" in joined
    assert "after deflating for" in joined  # the verdicts in words
    # The full HTML report, with its out-of-sample curve, in a frame.
    assert "oos-equity-line" in joined
    # The last cell closed the cluster.
    assert "cluster closed: closed" in texts[-1]
    print(f"notebook executed in {seconds:.1f} s")
