"""Benchmark of the course itself (issues 5 and 6). Prints figures; asserts nothing about time.

Wall time of "Restart kernel and Run All" for every notebook of both editions, each in a fresh
kernel (kernel start-up excluded, as a learner's kernel is already running), and the total of each
edition. Run with `make bench` or `python tests/benchmarks/bench_notebooks.py [NOTEBOOK ...]`.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def run_all(path):
    """Seconds to execute every cell of `path` in a fresh kernel (start-up not counted)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel(stderr=subprocess.DEVNULL):          # the kernel's start-up chatter
        t0 = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        return time.perf_counter() - t0


def main(paths):
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop("TOYENV_CACHE_DIR", None)        # a learner's kernel fits its base transformer itself
    if not paths:
        paths = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))
    totals = {}
    print(f"{'notebook':48s} {'Run All (s)':>11s}")
    for path in map(Path, paths):
        seconds = run_all(path)
        totals[path.parent.name] = totals.get(path.parent.name, 0.0) + seconds
        print(f"{path.parent.name + '/' + path.name:48s} {seconds:11.1f}", flush=True)
    for edition, seconds in totals.items():
        print(f"total, {edition + '/':41s} {seconds:11.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
