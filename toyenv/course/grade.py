"""Grade learners' notebooks: run each in a fresh kernel and read the exercise checks' verdicts.

    python -m toyenv.grade submissions/                      # a table on stdout
    python -m toyenv.grade submissions/ --json grades.json   # ... and JSON for an LMS
    python -m toyenv.grade a.ipynb b.ipynb --format json --timeout 60 --jobs 2

Each notebook is copied into its own temporary folder and executed there with nbclient (the
original is never modified), with a per-cell time limit: a cell that runs longer is interrupted
and execution goes on with the next cell. Errors in cells do not stop the run either. Every check
in ``toyenv.checks`` prints exactly one line

    [exercise 02.1] passed: <message>      [exercise 02.1] failed: <hint>
    [exercise 02.1] not attempted: <message>

and the grader reads those lines from the outputs. The exercises expected in a notebook are the
ones ``toyenv.checks.EXERCISES`` registers for its stem (the course notebook's name, read from the
build record that ``python -m toyenv.build`` leaves in the learner edition, so renamed submissions
still match); an expected exercise whose check never printed is "not attempted".

A notebook that raises, loops or is not a notebook at all gets a line saying so in the report,
never a crash of the grader. The exit code is 0 unless the grader itself failed (no notebooks
found, no kernel). Grading runs learners' code: do it in a container or an account you can spare.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

STATUSES = ("passed", "failed", "not attempted")
LINE = re.compile(r"^\[exercise (?P<id>[^\]\s]+)\] (?P<status>passed|failed|not attempted)"
                  r"(?::\s?(?P<message>.*))?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_PROBLEMS = 5                 # problems listed per notebook; the rest are counted
MAX_MESSAGE = 200                # characters of a check's message shown in the table (JSON: all)


class GraderError(Exception):
    """The grader itself cannot work (no notebooks found, no kernel): exit code 2."""


@dataclass
class ExerciseResult:
    """One exercise of one notebook."""
    id: str
    status: str                  # one of STATUSES
    message: str = ""
    title: str = ""


@dataclass
class NotebookResult:
    """One graded notebook. ``status``: 'ok' (ran to the end without errors), 'errors' (some cells
    raised), 'timeout' (some cell exceeded the limit and was interrupted), 'kernel died',
    'not a notebook', 'missing', 'grader error' (the kernel could not start)."""
    path: str
    notebook: str                # course notebook stem the exercises were looked up for
    status: str
    problems: list = field(default_factory=list)
    exercises: list = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.exercises)


# --------------------------------------------------------------------------- registry


def load_registry(path: str | os.PathLike | None = None) -> dict:
    """Exercise registry {id: {"notebook": stem, "title": str}}: toyenv.checks.EXERCISES, or a
    JSON file of that shape. {} if toyenv.checks does not exist (then only printed lines count)."""
    if path is not None:
        return json.loads(pathlib.Path(path).read_text())
    try:
        from toyenv.course.checks import EXERCISES
    except ImportError:
        return {}
    return dict(EXERCISES)


def _expected_stem(path: pathlib.Path, nb, registry: dict) -> str | None:
    """The course notebook a submission is: its build record, else its file name."""
    stems = {v["notebook"] for v in registry.values()}
    record = (nb or {}).get("metadata", {}).get("toyenv", {}) if nb else {}
    source = record.get("generated_from") if isinstance(record, dict) else None
    if source and pathlib.PurePosixPath(source).stem in stems:
        return pathlib.PurePosixPath(source).stem
    if path.stem in stems:
        return path.stem
    contained = [s for s in stems if s in path.stem]          # "alice_02_occupancy (1)"
    return max(contained, key=len) if contained else None


# --------------------------------------------------------------------------- parsing


def output_lines(nb):
    """(cell_index, line) for every line of text output (streams, text/plain results)."""
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
            elif out.get("output_type") in ("execute_result", "display_data"):
                text = out.get("data", {}).get("text/plain", "")
            else:
                continue
            text = "".join(text) if isinstance(text, list) else text
            for line in text.splitlines():
                yield i, _ANSI.sub("", line).rstrip()


def parse_verdicts(nb) -> dict[str, ExerciseResult]:
    """{exercise id: its last printed verdict} from the outputs of an executed notebook."""
    found = {}
    for _, line in output_lines(nb):
        m = LINE.match(line)
        if m:
            found[m["id"]] = ExerciseResult(m["id"], m["status"], (m["message"] or "").strip())
    return found


def _cell_problems(nb, timeouts: dict[int, float]) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if i in timeouts:
            problems.append(f"cell {i + 1}: exceeded the {timeouts[i]:g} s limit and was interrupted")
            continue
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                value = _ANSI.sub("", str(out.get("evalue", ""))).strip().splitlines()
                value = value[0][:200] if value else ""
                problems.append(f"cell {i + 1}: {out.get('ename', 'Error')}: {value}".rstrip(": "))
    return problems


# --------------------------------------------------------------------------- running


def grade_notebook(path, *, registry: dict | None = None, timeout: float = 120,
                   kernel: str = "python3", startup_timeout: float = 60) -> NotebookResult:
    """Execute a copy of the notebook at ``path`` in a fresh kernel and grade it.

    ``registry``: {id: {"notebook", "title"}} (default: toyenv.checks.EXERCISES); ``timeout``:
    seconds per cell. Never raises for a bad notebook; raises GraderError only when the kernel
    cannot be started.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = pathlib.Path(path)
    registry = load_registry() if registry is None else registry
    t0 = time.perf_counter()
    result = NotebookResult(str(path), path.stem, "ok")
    if not path.is_file():
        result.status, result.problems = "missing", [f"{path}: no such file"]
        return result
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:                  # bad JSON, not a notebook, bad nbformat: report it
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        result.status = "not a notebook"
        result.problems = [f"cannot read as a Jupyter notebook ({type(e).__name__}: {msg})"]
        _fill_exercises(result, path, None, registry, {})
        result.seconds = time.perf_counter() - t0
        return result

    timeouts: dict[int, float] = {}

    def on_executed(cell, cell_index, execute_reply):
        content = execute_reply.get("content", {}) if execute_reply else {}
        if content.get("ename") == "GraderTimeout":
            timeouts[cell_index] = timeout

    with tempfile.TemporaryDirectory(prefix="toyenv-grade-") as tmp:
        work = pathlib.Path(tmp) / path.name
        shutil.copyfile(path, work)               # the kernel's folder holds a copy, not the original
        run = copy.deepcopy(nb)
        client = NotebookClient(
            run, timeout=timeout, startup_timeout=startup_timeout, kernel_name=kernel,
            allow_errors=True, interrupt_on_timeout=True, record_timing=False,
            error_on_timeout={"ename": "GraderTimeout",
                              "evalue": f"cell exceeded {timeout:g} s", "traceback": []},
            on_cell_executed=on_executed, resources={"metadata": {"path": tmp}})
        log = pathlib.Path(tmp) / "kernel-stderr.txt"
        try:
            with open(log, "w") as stderr:       # kernel chatter stays out of the report
                client.execute(stderr=stderr)
        except DeadKernelError as e:
            tail = [ln for ln in log.read_text(errors="replace").splitlines()
                    if ln.strip() and "WARNING" not in ln][-1:] if log.exists() else []
            result.status = "kernel died"
            result.problems.append(f"the kernel died ({e}){': ' + tail[0][:200] if tail else ''}; "
                                   "cells after that did not run")
        except Exception as e:      # noqa: BLE001  no kernel, or nbclient failed: report it
            if client.kc is None:
                raise GraderError(f"cannot start kernel {kernel!r}: {type(e).__name__}: {e}. "
                                  "Install one with `python -m ipykernel install --user` or pass "
                                  "--kernel NAME (see `jupyter kernelspec list`).") from e
            result.status = "grader error"
            result.problems.append(f"execution stopped: {type(e).__name__}: {e}")
    problems = _cell_problems(run, timeouts)
    if result.status == "ok" and problems:
        result.status = "timeout" if timeouts else "errors"
    result.problems += problems
    _fill_exercises(result, path, run, registry, parse_verdicts(run))
    result.seconds = time.perf_counter() - t0
    return result


def _fill_exercises(result: NotebookResult, path, nb, registry, printed) -> None:
    stem = _expected_stem(path, nb, registry)
    if stem is None and printed:     # known from the ids the checks printed
        stems = {registry[i]["notebook"] for i in printed if i in registry}
        stem = stems.pop() if len(stems) == 1 else None
    result.notebook = stem or path.stem
    expected = [i for i, v in registry.items() if v["notebook"] == stem]
    ids = sorted(set(expected) | set(printed), key=_id_key)
    for i in ids:
        title = registry.get(i, {}).get("title", "")
        e = printed.get(i) or ExerciseResult(i, "not attempted", "its check did not run")
        e.title = title
        if i not in registry and registry:
            e.message = (e.message + " " if e.message else "") + "(not a registered exercise)"
        result.exercises.append(e)


def _id_key(ex_id: str):
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", ex_id))


def find_notebooks(paths) -> list[pathlib.Path]:
    """Files as given (whatever their extension); folders searched for *.ipynb recursively,
    skipping .ipynb_checkpoints and hidden folders."""
    found = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.ipynb")):
                rel = f.relative_to(p).parts
                if not any(part.startswith(".") for part in rel):
                    found.append(f)
        else:
            found.append(p)                  # a missing file is reported as missing
    return found


def _grade_one(args):
    path, registry, timeout, kernel = args
    try:
        return grade_notebook(path, registry=registry, timeout=timeout, kernel=kernel)
    except GraderError as e:
        return e


def grade(paths, *, registry: dict | None = None, timeout: float = 120, kernel: str = "python3",
          jobs: int = 1) -> list[NotebookResult]:
    """Grade every notebook under ``paths`` (see find_notebooks), ``jobs`` at a time."""
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise GraderError(f"no notebooks found in {', '.join(map(str, paths))}")
    registry = load_registry() if registry is None else registry
    work = [(p, registry, timeout, kernel) for p in notebooks]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_grade_one, work))
    else:
        results = [_grade_one(w) for w in work]
    for r in results:
        if isinstance(r, GraderError):
            raise r
    return results


# --------------------------------------------------------------------------- reports


def to_json(results: list[NotebookResult], *, timeout: float) -> dict:
    """The JSON report: per notebook, and a flat per-exercise list for an LMS import."""
    notebooks = []
    for r in results:
        d = asdict(r)
        d["seconds"] = round(r.seconds, 2)
        d["summary"] = {s.replace(" ", "_"): r.count(s) for s in STATUSES}
        d["summary"]["total"] = len(r.exercises)
        notebooks.append(d)
    rows = [{"path": r.path, "notebook": r.notebook, "exercise": e.id, "title": e.title,
             "status": e.status, "message": e.message, "notebook_status": r.status}
            for r in results for e in r.exercises]
    return {"grader": "toyenv.grade", "timeout_per_cell": timeout, "notebooks": notebooks,
            "rows": rows}


def format_table(results: list[NotebookResult]) -> str:
    """A plain-text report: one block per notebook, one line per exercise."""
    lines = []
    for r in results:
        head = f"{r.path}  [{r.notebook}]  {r.status}, {r.seconds:.1f} s"
        lines.append(head)
        for p in r.problems[:MAX_PROBLEMS]:
            lines.append(f"    ! {p}")
        if len(r.problems) > MAX_PROBLEMS:
            lines.append(f"    ! ... and {len(r.problems) - MAX_PROBLEMS} more problems")
        if not r.exercises:
            lines.append("    (no exercises registered or printed for this notebook)")
        width = max((len(e.id) for e in r.exercises), default=0)
        for e in r.exercises:          # the title is in the JSON; the table keeps the hint
            msg = e.message if len(e.message) <= MAX_MESSAGE else e.message[:MAX_MESSAGE - 3] + "..."
            lines.append(f"    {e.id:<{width}}  {e.status:<13}  {msg}".rstrip())
        lines.append(f"    -> {r.count('passed')}/{len(r.exercises)} passed, "
                     f"{r.count('failed')} failed, {r.count('not attempted')} not attempted")
    n_ex = sum(len(r.exercises) for r in results)
    n_pass = sum(r.count("passed") for r in results)
    bad = sum(r.status != "ok" for r in results)
    lines.append(f"{len(results)} notebooks, {n_pass}/{n_ex} exercises passed"
                 + (f", {bad} notebooks with problems" if bad else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m toyenv.grade",
        description="Run learners' notebooks in fresh kernels and report each exercise as "
                    "passed / failed / not attempted. The notebooks are never modified.")
    ap.add_argument("paths", nargs="+", help="notebooks, or folders searched for *.ipynb")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per cell (default 120)")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report to FILE")
    ap.add_argument("--format", choices=("table", "json"), default="table",
                    help="what to print on stdout (default table)")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="notebooks graded at once")
    ap.add_argument("--kernel", default="python3", help="kernel name (default python3)")
    ap.add_argument("--registry", metavar="FILE",
                    help="JSON {id: {notebook, title}} instead of toyenv.checks.EXERCISES")
    args = ap.parse_args(argv)
    if args.timeout <= 0:
        ap.error(f"--timeout must be positive seconds, got {args.timeout}")
    try:
        results = grade(args.paths, registry=load_registry(args.registry), timeout=args.timeout,
                        kernel=args.kernel, jobs=max(1, args.jobs))
    except (GraderError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = to_json(results, timeout=args.timeout)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
