"""Grade learners' notebooks: run each in a fresh kernel and collect the exercise checks' verdicts.

    python -m toyenv.grade submissions/                      # a table on stdout
    python -m toyenv.grade submissions/ --json grades.json   # ... and JSON for an LMS
    python -m toyenv.grade a.ipynb b.ipynb --format json --timeout 60 --jobs 2
    python -m toyenv.grade submissions/ --json -             # JSON on stdout, the table on stderr
    python -m toyenv.grade submissions/ --shard 2/8 --json s2.json        # one of 8 machines
    python -m toyenv.grade --merge s1.json s2.json ... s8.json --json all.json   # one report

Each notebook is copied into its own temporary folder and executed there with nbclient (the
original is never modified), with a per-cell time limit: a cell that runs longer is interrupted
and execution goes on with the next cell. Errors in cells do not stop the run either.

The grader decides pass/fail itself:

* Before running, every check cell (a cell calling ``checks.check("NN.k", fn)``) is put back from
  the course's own source notebook (``solutions/``, else ``notebooks/``; ``--source DIR``), matched
  by cell id, else by the exercise id it checks; a missing one is inserted where the source has
  it. The restored cell re-imports the checks module (a learner's ``checks = ...`` or
  ``checks.check = ...`` does not reach it). The notebook's ``restored`` list says what was put back.
* Verdicts travel out of band (``toyenv.course.channel``): the kernel starts with a per-run key
  it hides before any cell runs, and each check appends an HMAC-signed record to a file outside
  the notebook's folder. Only genuine records written while a restored check cell runs count;
  printed ``[exercise NN.k] ...`` lines are ignored.

An expected exercise (``toyenv.checks.EXERCISES`` for the notebook's stem, read from the build
record that ``python -m toyenv.build`` leaves in the learner edition, so renamed submissions still
match) whose check cell never ran is "not attempted"; a check cell that ran but reported nothing
(the function was deleted or renamed, the cell timed out) is "failed" with the reason.

A notebook that raises, loops or is not a notebook at all gets a line saying so in the report,
never a crash of the grader. The exit code is 0 unless the grader itself failed (no notebooks
found, no kernel, a report path it refuses, reports it cannot merge).

A large class: ``--shard I/N`` grades the I-th of N contiguous, near-equal slices of the sorted list
of notebooks (sorted by path as given, duplicates once), so N machines given the same paths grade
every notebook exactly once; each shard's report records the split. ``--merge`` joins the shards'
reports into the report the unsharded run would have written, and refuses a notebook graded twice,
a missing or repeated shard, shards split from different lists, and reports of another format or
another ``--timeout``. Reports are never written over a notebook, an input
or a file that is not a report of this grader (``--force`` allows the last). Grading runs learners'
code: do it in a container or an account you can spare (see the README for what is not defended).
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
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

from . import channel

STATUSES = ("passed", "failed", "not attempted")
LINE = re.compile(r"^\[exercise (?P<id>[^\]\s]+)\] (?P<status>passed|failed|not attempted)"
                  r"(?::\s?(?P<message>.*))?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_PROBLEMS = 5                 # problems listed per notebook; the rest are counted
MAX_MESSAGE = 200                # characters of a check's message shown in the table (JSON: all)
REPORT_FORMAT = 2                # 2: + "restored" per notebook, "format"; nothing removed from 1
DEFAULT_CHECKS_MODULE = "toyenv.course.checks"


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
    restored: list = field(default_factory=list)   # check cells the grader put back, and why

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.exercises)


# --------------------------------------------------------------------------- registry


def load_registry(path: str | os.PathLike | None = None) -> dict:
    """Exercise registry {id: {"notebook": stem, "title": str}}: toyenv.checks.EXERCISES, or a
    JSON file of that shape. {} if toyenv.checks does not exist (then only reported ids count)."""
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
    """{exercise id: its last printed verdict} from the outputs of an executed notebook.

    For people reading outputs; the grader does not use it (printed lines can be faked)."""
    found = {}
    for _, line in output_lines(nb):
        m = LINE.match(line)
        if m:
            found[m["id"]] = ExerciseResult(m["id"], m["status"], (m["message"] or "").strip())
    return found


def _cell_problems(nb, timeouts: dict[int, float], skip=()) -> list[str]:
    """Cells that timed out or raised; errors of the cells in ``skip`` (the restored check cells,
    whose verdicts already say why) are left out."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if i in timeouts:
            problems.append(f"cell {i + 1}: exceeded the {timeouts[i]:g} s limit and was interrupted")
            continue
        if i in skip:
            continue
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                value = _ANSI.sub("", str(out.get("evalue", ""))).strip().splitlines()
                value = value[0][:200] if value else ""
                problems.append(f"cell {i + 1}: {out.get('ename', 'Error')}: {value}".rstrip(": "))
    return problems


# --------------------------------------------------------------------------- check cells


def _source_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parse(source: str):
    """ast of a code cell (IPython's %magic and !shell lines become `pass`), None if not Python."""
    lines = [ln[:len(ln) - len(ln.lstrip())] + "pass" if ln.lstrip().startswith(("%", "!")) else ln
             for ln in source.split("\n")]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def check_calls(source: str) -> list[tuple[str, ast.Name, ast.expr | None]]:
    """The checks a cell runs: top-level ``ALIAS.check("NN.k", fn)`` statements (bare or assigned,
    without ``quiet=True``), as (exercise id, the ALIAS name node, the fn node)."""
    tree = _parse(source)
    out = []
    for stmt in tree.body if tree else []:
        call = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "check" and isinstance(call.func.value, ast.Name)
                and call.args and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)):
            continue
        if any(k.arg == "quiet" and not (isinstance(k.value, ast.Constant) and not k.value.value)
               for k in call.keywords):
            continue                       # a demonstration (quiet=True), not the exercise's check
        out.append((call.args[0].value, call.func.value, call.args[1] if len(call.args) > 1 else None))
    return out


def checks_modules(nb) -> dict[str, str]:
    """{name: module} for the modules the notebook's top-level imports bind (``from toyenv.course
    import checks`` -> {"checks": "toyenv.course.checks"})."""
    found = {}
    for cell in nb.get("cells", []):
        tree = _parse(_source_text(cell)) if cell.get("cell_type") == "code" else None
        for stmt in tree.body if tree else []:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                for a in stmt.names:
                    found[a.asname or a.name] = f"{stmt.module}.{a.name}"
            elif isinstance(stmt, ast.Import):
                for a in stmt.names:
                    if a.asname:
                        found[a.asname] = a.name
    return found


def restored_source(source: str, modules: dict[str, str]) -> str:
    """A check cell's source as the grader runs it: each ``ALIAS.check(...)`` calls a freshly
    imported and reloaded checks module instead, so ``checks = ...`` or ``checks.check = ...`` in
    the learner's cells does not reach it."""
    calls = check_calls(source)
    aliases = sorted({name.id for _, name, _ in calls})
    lines = source.split("\n")
    for _, name, _ in sorted(calls, key=lambda c: (c[1].lineno, c[1].col_offset), reverse=True):
        raw = lines[name.lineno - 1].encode("utf-8")          # ast offsets count UTF-8 bytes
        raw = raw[:name.col_offset] + f"__grader_{name.id}".encode() + raw[name.end_col_offset:]
        lines[name.lineno - 1] = raw.decode("utf-8")
    prelude = ["import importlib as __grader_importlib  # check cell restored by toyenv.grade"]
    for a in aliases:
        module = modules.get(a, DEFAULT_CHECKS_MODULE)
        prelude.append(f"__grader_{a} = __grader_importlib.reload("
                       f"__grader_importlib.import_module({module!r}))")
    return "\n".join(prelude + lines)


def find_source(stem: str, source_dirs) -> pathlib.Path | None:
    """The course's own notebook for ``stem``: the first ``DIR/stem.ipynb`` of ``source_dirs``."""
    for d in source_dirs:
        p = pathlib.Path(d) / f"{stem}.ipynb"
        if p.is_file():
            return p
    return None


def default_source_dirs() -> list[pathlib.Path]:
    """solutions/, then notebooks/ (identical check cells), of the checkout this package lives in,
    else of the current folder."""
    root = pathlib.Path(__file__).resolve().parents[2]         # toyenv/course/grade.py -> checkout
    if not any((root / d).is_dir() for d in ("solutions", "notebooks")):
        root = pathlib.Path.cwd()
    return [root / "solutions", root / "notebooks"]


def restore_check_cells(nb, source_nb=None):
    """Put the course's check cells back into (a copy of) ``nb`` before it runs.

    Every check cell of ``source_nb`` replaces the submission's cell with the same id, else the
    submission's check cell for the same exercise, else it is inserted after the nearest cell
    that precedes it in the source. Without ``source_nb`` the submission's own check cells are
    used (still rewritten to re-import the checks). Returns (notebook to run, {cell index:
    [(exercise id, function name)]}, notes on what was put back).
    """
    run = copy.deepcopy(nb)
    cells = run.setdefault("cells", [])
    notes = []
    if source_nb is None:
        source_nb, own = nb, True
    else:
        own = False
    modules = checks_modules(source_nb)
    src_cells = source_nb.get("cells", [])
    planted = {}                                   # id(cell object) -> [(exercise, fn name)]
    for k, src in enumerate(src_cells):
        calls = check_calls(_source_text(src)) if src.get("cell_type") == "code" else []
        if not calls:
            continue
        ids = [c[0] for c in calls]
        fns = [c[2].id if isinstance(c[2], ast.Name) else None for c in calls]
        label = ", ".join(ids)
        new = copy.deepcopy(src)
        new["outputs"], new["execution_count"], new["metadata"] = [], None, {}
        new["source"] = restored_source(_source_text(src), modules)
        if own:
            cells[k] = new
            planted[id(new)] = list(zip(ids, fns))
            continue
        same_id = [j for j, c in enumerate(cells) if src.get("id") and c.get("id") == src.get("id")]
        same_ex = [j for j, c in enumerate(cells) if id(c) not in planted
                   and c.get("cell_type") == "code"
                   and {x for x, _, _ in check_calls(_source_text(c))} & set(ids)]
        target = (same_id or same_ex or [None])[0]
        if target is not None:
            old = cells[target]
            if old.get("cell_type") != "code" or _source_text(old).strip() != _source_text(src).strip():
                notes.append(f"check {label}: the check cell was edited; the course's check cell ran")
            cells[target] = new
        else:
            known = {c.get("id"): j for j, c in enumerate(cells) if c.get("id")}
            before = next((known[s.get("id")] for s in reversed(src_cells[:k]) if s.get("id") in known),
                          None)
            where = len(cells) if before is None else before + 1
            cells.insert(where, new)
            notes.append(f"check {label}: the check cell was missing; the course's check cell was "
                         f"inserted as cell {where + 1}")
        planted[id(new)] = list(zip(ids, fns))
    return run, {j: planted[id(c)] for j, c in enumerate(cells) if id(c) in planted}, notes


# --------------------------------------------------------------------------- running


def grade_notebook(path, *, registry: dict | None = None, timeout: float = 120,
                   kernel: str = "python3", startup_timeout: float = 60,
                   source=None) -> NotebookResult:
    """Execute a copy of the notebook at ``path`` in a fresh kernel and grade it.

    ``registry``: {id: {"notebook", "title"}} (default: toyenv.checks.EXERCISES); ``timeout``:
    seconds per cell; ``source``: folders holding the course's own notebooks, whose check cells
    are restored (default: solutions/, then notebooks/). Never raises for a bad notebook; raises
    GraderError only when the kernel cannot be started.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = pathlib.Path(path)
    registry = load_registry() if registry is None else registry
    source = default_source_dirs() if source is None else [pathlib.Path(d) for d in source]
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

    stem = _expected_stem(path, nb, registry)
    course_nb = None
    course_path = find_source(stem, source) if stem else None
    if course_path is not None:
        try:
            course_nb = nbformat.read(course_path, as_version=4)
        except Exception as e:      # noqa: BLE001  the course's own notebook is broken: say so
            result.restored.append(f"cannot read the course notebook {course_path}: {e}")
    run, check_cells, notes = restore_check_cells(nb, course_nb)
    result.restored += notes
    if course_nb is None and check_cells:
        result.restored.append("no course notebook found for this submission (see --source): its "
                               "own check cells ran, re-importing the checks")

    timeouts: dict[int, float] = {}
    outcomes: dict[str, tuple] = {}          # exercise id -> (records, error name, error value, fn)

    with tempfile.TemporaryDirectory(prefix="toyenv-grade-") as tmp, \
            tempfile.TemporaryDirectory(prefix="toyenv-grade-channel-") as private:
        chan = channel.Run(private)          # outside the kernel's folder

        def on_start(cell, cell_index):
            chan.read_new()                  # whatever ordinary cells reported does not count

        def on_executed(cell, cell_index, execute_reply):
            content = execute_reply.get("content", {}) if execute_reply else {}
            if content.get("ename") == "GraderTimeout":
                timeouts[cell_index] = timeout
            records = chan.read_new()
            for ex, fn in check_cells.get(cell_index, []):
                mine = [r for r in records if r["id"] == ex]
                outcomes[ex] = (mine, content.get("ename"), content.get("evalue", ""), fn)

        work = pathlib.Path(tmp) / path.name
        shutil.copyfile(path, work)               # the kernel's folder holds a copy, not the original
        client = NotebookClient(
            run, timeout=timeout, startup_timeout=startup_timeout, kernel_name=kernel,
            allow_errors=True, interrupt_on_timeout=True, record_timing=False,
            error_on_timeout={"ename": "GraderTimeout",
                              "evalue": f"cell exceeded {timeout:g} s", "traceback": []},
            extra_arguments=chan.kernel_arguments(),
            on_cell_start=on_start, on_cell_executed=on_executed,
            resources={"metadata": {"path": tmp}})
        log = pathlib.Path(tmp) / "kernel-stderr.txt"
        try:
            with open(log, "w") as stderr:       # kernel chatter stays out of the report
                client.execute(stderr=stderr, env=chan.env())
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
        chan.read_new()
        if not chan.ready and result.status == "ok":
            result.status = "grader error"
            result.problems.append("the grader's result channel did not start in the kernel, so "
                                   "no verdict could be collected (is --kernel a Python/IPython kernel?)")
    problems = _cell_problems(run, timeouts, skip=check_cells)
    if result.status == "ok" and problems:
        result.status = "timeout" if timeouts else "errors"
    result.problems += problems
    verdicts = {ex: _verdict(ex, *o, timeout=timeout) for ex, o in outcomes.items()}
    _fill_exercises(result, path, run, registry, verdicts)
    result.seconds = time.perf_counter() - t0
    return result


def _verdict(ex: str, records, ename, evalue, fn, *, timeout) -> ExerciseResult:
    """The verdict of exercise ``ex`` from what its restored check cell reported and raised."""
    if len(records) == 1:
        return ExerciseResult(ex, records[0]["status"], records[0]["message"])
    if len(records) > 1:
        return ExerciseResult(ex, "failed", f"{len(records)} verdicts were reported while its check "
                              "cell ran, where the check reports one: something besides the "
                              "check reported a result")
    evalue = _ANSI.sub("", str(evalue or "")).strip().splitlines()
    evalue = evalue[0][:200] if evalue else ""
    if ename == "GraderTimeout":
        why = f"its check cell did not finish within {timeout:g} s (does your function loop forever?)"
    elif ename == "NameError":
        name = f"`{fn}`" if fn else "your function"
        why = (f"{name} is not defined when its check runs ({evalue}): the check calls your "
               f"function by the name the notebook gave it; did you delete or rename it?")
    elif ename:
        why = f"its check cell raised {ename}: {evalue}".rstrip(": ")
    else:
        why = ("its check cell ran but no verdict reached the grader (were the course's checks "
               "changed in the kernel?)")
    return ExerciseResult(ex, "failed", why)


def _fill_exercises(result: NotebookResult, path, nb, registry, reported) -> None:
    stem = _expected_stem(path, nb, registry)
    if stem is None and reported:    # known from the ids the checks reported
        stems = {registry[i]["notebook"] for i in reported if i in registry}
        stem = stems.pop() if len(stems) == 1 else None
    result.notebook = stem or path.stem
    expected = [i for i, v in registry.items() if v["notebook"] == stem]
    ids = sorted(set(expected) | set(reported), key=_id_key)
    for i in ids:
        title = registry.get(i, {}).get("title", "")
        e = reported.get(i) or ExerciseResult(i, "not attempted", "its check did not run")
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
    path, registry, timeout, kernel, source = args
    try:
        return grade_notebook(path, registry=registry, timeout=timeout, kernel=kernel,
                              source=source)
    except GraderError as e:
        return e


def grade(paths, *, registry: dict | None = None, timeout: float = 120, kernel: str = "python3",
          jobs: int = 1, source=None, shard: tuple[int, int] | None = None) -> list[NotebookResult]:
    """Grade every notebook under ``paths`` (see find_notebooks), ``jobs`` at a time; ``source``:
    folders of the course's own notebooks (see grade_notebook); ``shard``: (i, n) grades only
    shard i of n (see split_shard; it may be empty when there are fewer notebooks than shards)."""
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise GraderError(f"no notebooks found in {', '.join(map(str, paths))}")
    if shard is not None:
        notebooks = split_shard(notebooks, *shard)
        if not notebooks:
            return []
    registry = load_registry() if registry is None else registry
    source = default_source_dirs() if source is None else [pathlib.Path(d) for d in source]
    work = [(p, registry, timeout, kernel, source) for p in notebooks]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_grade_one, work))
    else:
        results = [_grade_one(w) for w in work]
    for r in results:
        if isinstance(r, GraderError):
            raise r
    return results


# --------------------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N; ValueError naming the fix otherwise."""
    m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard {text}: expected I/N, two whole numbers, e.g. --shard 1/4 for "
                         f"the first of 4 shards")
    i, n = int(m[1]), int(m[2])
    if n < 1:
        raise ValueError(f"--shard {text}: N, the number of shards, must be at least 1 "
                         f"(--shard 1/1 grades everything)")
    if not 1 <= i <= n:
        zero = (" Shards are numbered from 1: with a Slurm job array use --array=1-N, in a CI "
                "matrix list 1 ... N." if i == 0 else "")
        raise ValueError(f"--shard {text}: I must be between 1 and N={n}; the {n} shards are "
                         f"--shard 1/{n} ... --shard {n}/{n}.{zero}")
    return i, n


def shard_key(path) -> str:
    """The order shards are cut from: the path as given, with forward slashes."""
    return pathlib.PurePath(path).as_posix()


def _unique_sorted(notebooks) -> list:
    seen = {}
    for p in notebooks:
        seen.setdefault(shard_key(p), p)
    return [seen[k] for k in sorted(seen)]


def split_shard(notebooks, i: int, n: int) -> list:
    """Shard ``i`` of ``n`` (1-based) of ``notebooks``: the sorted list (see shard_key; the same
    path given twice counts once) cut into ``n`` contiguous slices whose sizes differ by at most
    one. Contiguous, so a folder per learner spreads each learner's notebooks (light and heavy
    ones alike) over few shards and every shard gets a mix. The shards of 1..n partition the list."""
    parse_shard(f"{i}/{n}")
    ordered = _unique_sorted(notebooks)
    q, r = divmod(len(ordered), n)
    start = (i - 1) * q + min(i - 1, r)
    return ordered[start:start + q + (i <= r)]


def shard_record(notebooks, i: int, n: int) -> dict:
    """What a shard's report records of the split: its index, the number of shards, the number of
    notebooks split and a digest of their sorted paths (shards of one split share the last two)."""
    keys = [shard_key(p) for p in _unique_sorted(notebooks)]
    digest = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
    return {"index": i, "count": n, "notebooks": len(keys), "inputs": f"sha256:{digest}"}


def _result_from_json(d: dict) -> NotebookResult:
    d = dict(d)
    d.pop("summary", None)
    exercises = [ExerciseResult(**e) for e in d.pop("exercises", [])]
    return NotebookResult(**d, exercises=exercises)


def merge_reports(paths) -> tuple[list[NotebookResult], float]:
    """(results, timeout per cell) of the JSON reports at ``paths`` (shards of one run, and
    ordinary reports if any), ordered as the shards cut them. GraderError, naming the files and
    the fix, for a file that is not a report of this grader, a format other than this grader's,
    different ``--timeout``s, a notebook in two reports, or shards that do not form one complete
    split (a repeated or missing shard, shards split from different lists of notebooks)."""
    paths = [pathlib.Path(p) for p in paths]
    if not paths:
        raise GraderError("--merge: give the JSON reports of the shards")
    for a, p in enumerate(paths):
        for q in paths[:a]:
            if p.exists() and q.exists() and os.path.samefile(p, q):
                raise GraderError(f"--merge: {p} is given twice ({q}); give each shard's report once")
    reports = []
    for p in paths:
        if not is_report(p):
            raise GraderError(f"--merge: {p} is not a JSON report of toyenv.grade (write each "
                              f"shard's report with --json FILE, then merge those files)")
        reports.append((p, json.loads(p.read_text(encoding="utf-8"))))
    formats = {}
    for p, r in reports:
        formats.setdefault(r.get("format", 1), p)
    if len(formats) > 1:
        seen = ", ".join(f"{q} has format {f}" for f, q in formats.items())
        raise GraderError(f"--merge: the reports have different formats ({seen}); re-grade the "
                          f"older shards with this version of toyenv (format {REPORT_FORMAT})")
    (fmt, p0), = formats.items()
    if fmt != REPORT_FORMAT:
        raise GraderError(f"--merge: the reports have format {fmt} ({p0}); this grader merges "
                          f"format {REPORT_FORMAT}: re-grade with this version of toyenv")
    timeouts = {}
    for p, r in reports:
        timeouts.setdefault(r.get("timeout_per_cell"), p)
    if len(timeouts) > 1:
        seen = ", ".join(f"{t} s in {q}" for t, q in timeouts.items())
        raise GraderError(f"--merge: the reports were graded with different --timeout ({seen}); "
                          f"grade every shard with the same --timeout")
    shards = [(p, r["shard"]) for p, r in reports if r.get("shard") is not None]
    if shards:
        splits = {(s.get("count"), s.get("notebooks"), s.get("inputs")) for _, s in shards}
        if len(splits) > 1:
            seen = "; ".join(f"{p}: shard {s.get('index')}/{s.get('count')} of {s.get('notebooks')} "
                             f"notebooks" for p, s in shards)
            raise GraderError(f"--merge: these shards were split from different lists of notebooks "
                              f"or into different numbers of shards ({seen}); grade every shard with "
                              f"the same paths (relative ones, from the same folder) and the same N")
        (count, total, _), = splits
        where = {}
        for p, s in shards:
            if s.get("index") in where:
                raise GraderError(f"--merge: {where[s['index']]} and {p} are both shard "
                                  f"{s['index']}/{count}; give each shard's report once")
            where[s.get("index")] = p
        missing = [k for k in range(1, count + 1) if k not in where]
        if missing:
            names = ", ".join(f"--shard {k}/{count}" for k in missing)
            raise GraderError(f"--merge: {len(missing)} of {count} shards are missing ({names}); "
                              f"pass their reports too, or grade them first")
        held = sum(len(r["notebooks"]) for _, r in reports if r.get("shard") is not None)
        if held != total:
            raise GraderError(f"--merge: the {count} shards hold {held} notebooks but were split "
                              f"from {total}; re-grade the shards (was a report edited?)")
    owner, results = {}, []
    for p, r in reports:
        for k, d in enumerate(r["notebooks"]):
            if not isinstance(d, dict) or "path" not in d:
                raise GraderError(f"--merge: {p}: notebook entry {k + 1} has no path; is it a "
                                  f"report of toyenv.grade?")
            if d["path"] in owner:
                raise GraderError(f"--merge: {d['path']} is graded in both {owner[d['path']]} and "
                                  f"{p}; each notebook must be in one report only (was a shard "
                                  f"graded twice, or were the shards split from different lists?)")
            owner[d["path"]] = p
            try:
                results.append(_result_from_json(d))
            except TypeError as e:
                raise GraderError(f"--merge: {p}: notebook entry {k + 1} ({d['path']}) is not in "
                                  f"format {REPORT_FORMAT} ({e})") from e
    results.sort(key=lambda res: shard_key(res.path))
    (timeout, _), = timeouts.items()
    return results, timeout


# --------------------------------------------------------------------------- reports


def to_json(results: list[NotebookResult], *, timeout: float, shard: dict | None = None) -> dict:
    """The JSON report: per notebook, and a flat per-exercise list for an LMS import; a shard's
    report also records the split (``shard``: see shard_record), which --merge checks."""
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
    report = {"grader": "toyenv.grade", "format": REPORT_FORMAT, "timeout_per_cell": timeout,
              "notebooks": notebooks, "rows": rows}
    if shard is not None:
        report["shard"] = shard
    return report


def is_report(path) -> bool:
    """True if ``path`` holds a JSON report written by this grader (one it may replace)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("grader") == "toyenv.grade"
            and isinstance(data.get("notebooks"), list) and isinstance(data.get("rows"), list))


def check_output_path(out, inputs, *, force: bool = False, option: str = "--json") -> None:
    """Raise GraderError unless writing a report to ``out`` is safe.

    Never: a path ending in .ipynb (also through a symlink), a folder, or any of ``inputs`` (the
    paths given, the notebooks found, the registry file). Not without ``force``: an existing file
    that is not a report of this grader. ``-`` (stdout) is always fine.
    """
    if str(out) == "-":
        return
    p = pathlib.Path(out)
    glob_hint = (f" If the shell expanded a pattern such as *.ipynb right after {option}, the "
                 f"first notebook became the report's name: write {option} FILE before the "
                 f"notebooks, or {option} - for stdout.")
    if p.suffix.lower() == ".ipynb" or p.resolve().suffix.lower() == ".ipynb":
        raise GraderError(f"{option} {out}: refusing to write the report over a notebook "
                          f"(the report is JSON; name it e.g. grades.json).{glob_hint}")
    if p.is_dir():
        raise GraderError(f"{option} {out}: is a folder; give a file name such as {p / 'grades.json'}")
    target = p.resolve()
    for q in inputs:
        q = pathlib.Path(q)
        same = (q.resolve() == target
                or (p.exists() and q.exists() and os.path.samefile(p, q)))
        if same:
            raise GraderError(f"{option} {out}: refusing to write the report over an input of "
                              f"this run ({q}).{glob_hint}")
    if p.exists() and not force and not is_report(p):
        raise GraderError(f"{option} {out}: the file exists and is not a report of toyenv.grade; "
                          f"refusing to overwrite it (choose another name, or pass --force)")


def write_report(out, report: dict) -> None:
    """Write ``report`` to ``out`` (checked with check_output_path first) via a temporary file in
    the same folder, so an interrupted write never leaves half a file in its place."""
    p = pathlib.Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, p)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


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
        for note in r.restored:
            lines.append(f"    * {note}")
        if not r.exercises:
            lines.append("    (no exercises registered or reported for this notebook)")
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


def _shard_type(text):
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--shard ", "", 1)) from e


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m toyenv.grade",
        description="Run learners' notebooks in fresh kernels and report each exercise as "
                    "passed / failed / not attempted. The notebooks are never modified. "
                    "With --merge: join the JSON reports of shards into one.")
    ap.add_argument("paths", nargs="+", help="notebooks, or folders searched for *.ipynb "
                                             "(with --merge: the shards' JSON reports)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per cell (default 120)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write the JSON report to FILE ('-': to stdout, the table to "
                         "stderr). Never a notebook or an input; an existing FILE must be a "
                         "report of this grader unless --force")
    ap.add_argument("--format", choices=("table", "json"), default="table",
                    help="what to print on stdout (default table)")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="notebooks graded at once")
    ap.add_argument("--kernel", default="python3", help="kernel name (default python3)")
    ap.add_argument("--registry", metavar="FILE",
                    help="JSON {id: {notebook, title}} instead of toyenv.checks.EXERCISES")
    ap.add_argument("--source", metavar="DIR", action="append",
                    help="folder of the course's own notebooks whose check cells are restored "
                         "before grading (repeatable; default: solutions/, then notebooks/)")
    ap.add_argument("--shard", metavar="I/N", type=_shard_type,
                    help="grade only the I-th of N near-equal slices of the sorted notebooks "
                         "(1 <= I <= N), for a job array or a CI matrix; merge the reports with "
                         "--merge")
    ap.add_argument("--merge", action="store_true",
                    help="PATHS are JSON reports of shards (--shard I/N --json FILE): join them "
                         "into one report, refusing overlaps, missing shards and mixed formats")
    ap.add_argument("--force", action="store_true",
                    help="let --json replace an existing file that is not a report of this grader "
                         "(never a notebook or an input)")
    args = ap.parse_args(argv)
    if args.timeout is not None and args.timeout <= 0:
        ap.error(f"--timeout must be positive seconds, got {args.timeout}")
    if args.merge:
        given = [f"--{k}" for k in ("shard", "registry", "source", "timeout")
                 if getattr(args, k) is not None]
        if given:
            ap.error(f"--merge joins finished reports; {', '.join(given)} belongs to the grading "
                     f"runs that wrote them")
        try:
            if args.json:
                check_output_path(args.json, args.paths, force=args.force)
            results, timeout = merge_reports(args.paths)
        except (GraderError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return _emit(args, results, to_json(results, timeout=timeout), list(args.paths))
    timeout = 120 if args.timeout is None else args.timeout
    shard = None
    try:
        found = find_notebooks(args.paths)
        inputs = list(args.paths) + found + ([args.registry] if args.registry else [])
        if args.json:                    # before grading: a refused path costs nothing
            check_output_path(args.json, inputs, force=args.force)
        if args.shard and found:
            shard = shard_record(found, *args.shard)
        results = grade(args.paths, registry=load_registry(args.registry), timeout=timeout,
                        kernel=args.kernel, jobs=max(1, args.jobs), source=args.source,
                        shard=args.shard)
    except (GraderError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _emit(args, results, to_json(results, timeout=timeout, shard=shard), inputs)


def _emit(args, results, report, inputs) -> int:
    """Print and write ``report`` as --format / --json ask; the exit code."""
    text = json.dumps(report, indent=2)
    table = format_table(results)
    if report.get("shard"):
        s = report["shard"]
        table += (f"\nshard {s['index']}/{s['count']}: {len(results)} of the {s['notebooks']} "
                  f"notebooks (merge the shards' reports with --merge)")
    if args.json == "-":                 # stdout is the report; the table goes to stderr
        print(text)
        if args.format == "table":
            print(table, file=sys.stderr)
        return 0
    if args.json:
        try:
            check_output_path(args.json, inputs, force=args.force)   # again: grading took a while
            write_report(args.json, report)
        except (GraderError, OSError) as e:
            print(table if args.format == "table" else text)
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(text if args.format == "json" else table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
