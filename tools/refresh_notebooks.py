"""Refresh the stored outputs of every notebook: the regression reference of `pytest --nbval`.

First every notebook is brought in step with its text twin (``tools/sync_notebooks.py``).

Each notebook runs top to bottom in a fresh kernel, single-threaded, with its own
folder as working directory (as nbval runs it). Then ``metadata.widgets`` is
stripped (GitHub will not render a notebook whose widget metadata lacks
``state``). So that a refresh that changes no output changes no file, it also
drops per-cell execution timing, joins consecutive pieces of one output stream
(the kernel splits them by timing), and gives each widget view a model id
derived from its position (the live id is random, and with the state stripped it
refers to nothing anyway). Usage: ``python tools/refresh_notebooks.py [NOTEBOOK ...]``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from sync_notebooks import sync

ROOT = Path(__file__).resolve().parents[1]


def refresh(path: Path) -> float:
    """Execute ``path`` in place; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _join_streams(cell.outputs)
            _stable_widget_ids(cell.outputs, f"{path.name}:{index}")
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def _join_streams(outputs: list) -> list:
    """Merge consecutive stdout (or stderr) outputs into one."""
    joined: list = []
    for out in outputs:
        previous = joined[-1] if joined else None
        if (out.output_type == "stream" and previous is not None
                and previous.output_type == "stream" and previous.name == out.name):
            previous.text += out.text
        else:
            joined.append(out)
    return joined


def _stable_widget_ids(outputs: list, where: str) -> None:
    """Replace each widget view's random model id by a hash of its position."""
    for number, out in enumerate(outputs):
        view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
        if view is not None:
            view["model_id"] = hashlib.sha1(f"{where}:{number}".encode()).hexdigest()[:32]


def main(argv: list[str]) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").rglob("*.ipynb"))
    paths = [p for p in paths if ".ipynb_checkpoints" not in p.parts]
    for change in sync(check=False, only=paths if argv else None):
        print(f"synced: {change}", flush=True)
    for path in paths:
        print(f"{path.relative_to(ROOT) if path.is_absolute() else path}: "
              f"{refresh(path.resolve()):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
