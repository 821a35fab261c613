"""Every notebook runs headless, top to bottom, and checks what its buttons produced.

The notebooks press their widgets' buttons in code (``button.click()``,
``toggle.value = True``) and assert on the result: a bookmark exists, the resume skipped
no frame, forged tokens were refused. So running one is a test of the claims it shows.
``00_tour.ipynb`` leaves the pressing to the reader in JupyterLab; with
``RTSP_RESUME_AUTOPLAY=1``, set here, its cells press the buttons themselves.

The kernel is this interpreter (the project's venv), through a kernelspec written into a
private Jupyter data folder: the result does not depend on the kernels a machine has.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "rtsp-resume-tests"


@pytest.fixture(scope="module")
def jupyter_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private Jupyter and IPython folders holding a kernelspec for ``sys.executable``."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rtsp-resume (tests)",
        "language": "python",
    }))
    dirs = {"JUPYTER_DATA_DIR": "data", "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython"}
    return {name: str(base / sub) for name, sub in dirs.items()}


def test_there_is_a_notebook_per_claim_group() -> None:
    names = [path.name for path in NOTEBOOKS]
    for prefix in ("00_tour", "01_heartbeat_claims_2_8", "02_reverse_bookmark_claims_1_5_6",
                   "03_interfaces_claims_3_9", "04_tokens_claims_4_10", "05_system_claim_7",
                   "06_position_estimators"):
        assert f"{prefix}.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_without_outputs(path: Path) -> None:
    """Committed notebooks carry no outputs: the outputs are what running them makes."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, jupyter_dirs: dict[str, str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in jupyter_dirs.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RTSP_RESUME_AUTOPLAY", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            # Threads that crash print to stderr; nothing else in the notebooks does.
            assert not (output.output_type == "stream" and output.name == "stderr"), (
                f"stderr in cell {cell.source[:60]!r}: {output.text[:500]}")
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
