"""The research notebook runs end to end (nbclient) against an archive recorded from the sim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (test extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (test extra)")
pytest.importorskip("ipykernel", reason="ipykernel not installed: no kernel to run the notebook")
pytest.importorskip("matplotlib", reason="matplotlib not installed (test extra)")

from recorder.ingest import ingest  # noqa: E402
from tests.archive_helpers import make_sim_record  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "queries" / "notebooks" / "research.ipynb"


def test_research_notebook_executes(tmp_path, monkeypatch):
    make_sim_record(tmp_path / "s.zst", messages=3000, pairs=3, seed=5)
    ingest([tmp_path / "s.zst"], tmp_path / "a")
    monkeypatch.setenv("KRAKEN_ARCHIVE", str(tmp_path / "a"))
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[2]) + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError:
        raise
    except Exception as exc:  # noqa: BLE001 - only a kernel that cannot start is a skip
        if "kernel" in str(exc).lower() and "died" in str(exc).lower():
            pytest.skip(f"Jupyter kernel could not run here: {exc}")
        raise
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the plots are shown inline (a PNG in the notebook), not only saved to a file
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and len(images[0]["data"]["image/png"]) > 10_000
    assert not list(tmp_path.glob("*.png"))
