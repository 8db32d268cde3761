"""docs/tutorial.ipynb runs from top to bottom in a real Jupyter kernel (nbclient + ipykernel) and
every cell succeeds; the inline display is the report's diagram."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
KERNEL = "subcircuit-tutorial"


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch) -> str:
    """A kernel spec that runs this interpreter (the venv's python, with its ipykernel), found
    through JUPYTER_PATH, so the test never depends on what kernels the machine has."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "subcircuit tutorial", "language": "python",
        # the notebook's sizes, smaller still for CI (the defaults in the notebook are 8 and 12)
        "env": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "SUBCIRCUIT_TUTORIAL_N": "4",
                "SUBCIRCUIT_TUTORIAL_K": "8"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    src = str(ROOT / "src")  # the kernel imports this tree, as the test process does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    return KERNEL


@pytest.mark.slow
def test_tutorial_notebook_runs_in_a_kernel(kernel_spec) -> None:
    import nbclient  # the `notebook` extra (installed by `make test`)
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel_spec, timeout=600, allow_errors=False,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    diagrams = [h for h in html if "subcircuit-circuit" in h and "circuit-svg" in h]
    assert len(diagrams) >= 2  # the EAP-IG circuit and the ACDC run folder show the interactive diagram


def test_tutorial_notebook_is_clean() -> None:
    """The notebook ships without outputs (CI makes them) and with the plain python3 kernel."""
    nb = json.loads(NOTEBOOK.read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
