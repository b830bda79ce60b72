"""Notebooks can be re-run without stale state (DESIGN §4, determinism): Run All twice in the SAME
kernel, and the second run's checked key numbers (`# NBVAL_CHECK_OUTPUT` cells) still equal the
stored ones. nbval covers the first run in a fresh kernel; this catches cells that depend on what an
earlier run left behind (a policy trained in place, a global random state, a cache that changes
results)."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _text(outputs):
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_run_all_twice_in_one_kernel_gives_the_stored_key_numbers(path):
    stored = nbformat.read(path, as_version=4)
    checked = [i for i, c in enumerate(stored.cells)
               if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, f"{path.name} has no # NBVAL_CHECK_OUTPUT cell"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    for i in checked:
        assert _text(nb.cells[i].outputs) == _text(stored.cells[i].outputs), \
            f"{path.name}, cell {i + 1}: the second Run All in the same kernel printed other key numbers"
