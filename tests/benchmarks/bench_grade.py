"""Benchmark of the grader (issue: grading a large class). Prints figures; asserts nothing.

Throughput of `toyenv.grade` in notebooks per minute at --jobs 1 and --jobs 2, on small synthetic
notebooks (exercises 99.1 / 99.2 of tests/grade_demo_checks.py: a kernel start-up and a few cells
each, so this is the grader's own overhead) and on copies of a real course notebook (default
notebooks/00_start_here.ipynb and solutions/01_policies_over_trajectories.ipynb, graded with the
course's real checks). Run with `make bench` or
`python tests/benchmarks/bench_grade.py [--copies K] [NOTEBOOK ...]`.
"""
import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from toyenv.course import grade  # noqa: E402

REGISTRY = {"99.1": {"notebook": "99_demo", "title": "Double"},
            "99.2": {"notebook": "99_demo", "title": "Triple"}}


def synthetic(folder, k):
    src = folder / "solutions"
    src.mkdir()
    nb = new_notebook(cells=[new_markdown_cell("### Exercise 99.1"),
                             new_code_cell("import grade_demo_checks as checks"),
                             new_code_cell("def double(x):\n    return 2 * x"),
                             new_code_cell('checks.check("99.1", double)'),
                             new_code_cell("def triple(x):\n    return 3 * x"),
                             new_code_cell('checks.check("99.2", triple)')])
    nbformat.write(nb, src / "99_demo.ipynb")
    subs = folder / "subs"
    subs.mkdir()
    for i in range(k):
        shutil.copyfile(src / "99_demo.ipynb", subs / f"learner{i:02d}_99_demo.ipynb")
    return subs, dict(registry=REGISTRY, source=[src])


def copies(folder, path, k):
    subs = folder / "subs"
    subs.mkdir()
    for i in range(k):
        shutil.copyfile(path, subs / f"learner{i:02d}_{path.name}")
    return subs, {}


def measure(label, make, k):
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            subs, kw = make(pathlib.Path(tmp), k)
            t0 = time.perf_counter()
            results = grade.grade([subs], timeout=300, jobs=jobs, **kw)
            seconds = time.perf_counter() - t0
        passed = sum(r.count("passed") for r in results)
        total = sum(len(r.exercises) for r in results)
        print(f"{label:52s} jobs={jobs}  {k} notebooks in {seconds:6.1f} s  "
              f"{60 * k / seconds:6.1f} notebooks/min  ({passed}/{total} exercises passed)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("notebooks", nargs="*")
    ap.add_argument("--copies", type=int, default=6)
    args = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    measure("synthetic (99_demo, two exercises)", synthetic, 2 * args.copies)
    paths = args.notebooks or [ROOT / "notebooks" / "00_start_here.ipynb",
                               ROOT / "solutions" / "01_policies_over_trajectories.ipynb"]
    for p in map(pathlib.Path, paths):
        measure(f"{p.parent.name}/{p.name}", lambda folder, k, p=p: copies(folder, p, k), args.copies)


if __name__ == "__main__":
    main()
