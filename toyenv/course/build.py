"""Build the learner edition: ``notebooks/`` from ``solutions/`` (the single source).

    python -m toyenv.build                  # write notebooks/ (also: make notebooks)
    python -m toyenv.build --check          # exit 1 if notebooks/ is stale (CI, tests/test_build.py)
    python -m toyenv.build --force          # overwrite edited notebooks, keeping NAME.ipynb.bak
    python -m toyenv.build --normalize-solutions   # tidy solutions/ in place, then build
    python -m toyenv.build --execute        # run solutions/, store NBVAL_CHECK_OUTPUT outputs, build
    python -m toyenv.build --nbgrader DIR   # write an nbgrader course folder (DIR/source/<stem>/)
    python -m toyenv.build --handout course.zip   # the learner zip: package + notebooks/, no answers

The exercise scheme (nbgrader's markers, so instructors who prefer nbgrader can use it as is):

* Solution code sits inside a code cell between the lines ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``. In the learner edition the fenced lines (markers included) become a stub at
  the indentation of the ``BEGIN`` line::

      # YOUR CODE HERE
      raise NotImplementedError("exercise 02.1: replace these lines with your code")

  The lines above the fence (``def f(...):`` and its docstring) and below it stay. The exercise id
  is read from the cell or the markdown above it ("Exercise 02.1"); failing that it is
  ``<notebook number>.<k>`` for the k-th fenced cell. In a markdown cell the fenced text becomes
  ``YOUR ANSWER HERE``.
* Outputs are stripped except in cells containing ``# NBVAL_CHECK_OUTPUT``: nbval compares those
  against the stored output, so both editions carry the same output (such a cell must therefore
  not depend on exercise code). Execution counts are cleared, except that those cells keep their
  position among the code cells (nbval skips a reference cell without a count), the notebook
  metadata is reduced to the kernelspec below, and cell metadata to ``tags``.
* Every generated notebook records the sha256 of its own content in ``metadata.toyenv``. Before
  overwriting a notebook the build recomputes that hash: if the file changed since the build wrote
  it (a learner's work), the build refuses and names the file; ``--force`` overwrites it and keeps
  the old file as ``NAME.ipynb.bak``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHECK_OUTPUT = "# NBVAL_CHECK_OUTPUT"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (toyenv)", "language": "python"}
NOTEBOOK_METADATA = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
CELL_METADATA_KEPT = ("tags",)
RECORD = "toyenv"                 # notebook metadata key of the build record

_FENCE = re.compile(r"^(?P<indent>[ \t]*)### (?P<kind>BEGIN|END) SOLUTION[ \t]*$")
_EXERCISE_ID = re.compile(r"exercise\s+(\d+\.\d+)", re.IGNORECASE)
_STEM_NUMBER = re.compile(r"^(\d+)")


class BuildError(Exception):
    """A solutions notebook cannot be turned into a learner notebook (names file and cell)."""


def default_root() -> pathlib.Path:
    """The course folder: the checkout this package lives in, else the current directory."""
    here = pathlib.Path(__file__).resolve().parents[2]
    if (here / "solutions").is_dir():
        return here
    return pathlib.Path.cwd()


# --------------------------------------------------------------------------- stripping


def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def has_check_output(cell) -> bool:
    """True for a code cell whose output nbval compares (contains ``# NBVAL_CHECK_OUTPUT``)."""
    return cell.get("cell_type") == "code" and CHECK_OUTPUT in _cell_source(cell)


def fences(source: str, *, where: str = "cell") -> list[tuple[int, int, str]]:
    """Fenced regions of one cell's source as (begin_line, end_line, indent), lines 0-based.

    Raises BuildError naming ``where`` for a BEGIN without END, an END without BEGIN, or a
    BEGIN inside an open fence.
    """
    out, open_at, indent = [], None, ""
    for i, line in enumerate(source.split("\n")):
        m = _FENCE.match(line)
        if not m:
            continue
        if m["kind"] == "BEGIN":
            if open_at is not None:
                raise BuildError(f"{where}: '{BEGIN}' on line {i + 1} inside the fence opened on "
                                 f"line {open_at + 1}; close it with '{END}' first")
            open_at, indent = i, m["indent"]
        else:
            if open_at is None:
                raise BuildError(f"{where}: '{END}' on line {i + 1} without a '{BEGIN}' above it")
            out.append((open_at, i, indent))
            open_at = None
    if open_at is not None:
        raise BuildError(f"{where}: '{BEGIN}' on line {open_at + 1} has no matching '{END}'; "
                         f"add '{END}' after the solution code")
    return out


def _strip_fences(source: str, stub, where: str) -> str:
    lines = source.split("\n")
    regions = fences(source, where=where)
    for begin, end, indent in reversed(regions):
        lines[begin:end + 1] = [indent + s for s in stub]
    return "\n".join(lines)


_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")


def _exercise_id(stem: str, cells, index: int, ordinal: int) -> str:
    """The id of the exercise fenced in cells[index]: the id of the first check call
    (``checks.check("02.1", fn)``) after it and before the next fenced cell, else named in the cell
    ("exercise 02.1"), else in the markdown cells just above it, else '<notebook number>.<ordinal>'.
    The check call comes first because prose above an exercise may mention other exercises; a
    check call in the fenced cell itself (a prediction checked where it is made) comes first of all."""
    own = _CHECK_CALL.findall(_cell_source(cells[index]).split(END)[-1])
    if own:
        return own[0]
    for cell in cells[index + 1:]:
        if cell.get("cell_type") != "code":
            continue
        src = _cell_source(cell)
        if BEGIN in src:
            break
        found = _CHECK_CALL.findall(src)
        if found:
            return found[0]
    found = _EXERCISE_ID.findall(_cell_source(cells[index]))
    if found:
        return found[0]
    j = index - 1
    while j >= 0 and cells[j].get("cell_type") == "markdown":
        found = _EXERCISE_ID.findall(_cell_source(cells[j]))
        if found:
            return found[-1]
        j -= 1
    number = _STEM_NUMBER.match(stem)
    return f"{number.group(1) if number else stem}.{ordinal}"


def expected_count(nb, index: int):
    """The execution count a cell keeps in normal form: None, except for an NBVAL_CHECK_OUTPUT
    cell with outputs, which gets its position among the code cells (what a top-to-bottom run
    gives it). nbval refuses a reference cell with outputs but no count ("Unrun reference cell
    has outputs"), so such a cell needs one, and a deterministic one keeps the build stable."""
    cell = nb.cells[index]
    if cell.get("cell_type") != "code" or not (has_check_output(cell) and cell.get("outputs")):
        return None
    return sum(c.get("cell_type") == "code" for c in nb.cells[:index + 1])


def _normalise_cell(cell, index: int, stem: str, count):
    meta = {k: cell["metadata"][k] for k in CELL_METADATA_KEPT if k in cell.get("metadata", {})}
    out = {"cell_type": cell["cell_type"], "metadata": meta, "source": _cell_source(cell)}
    cid = cell.get("id") or hashlib.sha1(f"{stem}:{index}".encode()).hexdigest()[:8]
    out["id"] = cid
    if cell["cell_type"] == "code":
        out["execution_count"] = count
        outputs = []
        if count is not None:                      # an NBVAL_CHECK_OUTPUT cell with outputs
            for o in cell.get("outputs", []):
                o = copy.deepcopy(dict(o))
                if "execution_count" in o:
                    o["execution_count"] = count
                outputs.append(o)
        out["outputs"] = outputs
    elif "attachments" in cell:
        out["attachments"] = copy.deepcopy(cell["attachments"])
    return nbformat.from_dict(out)


def normalise(nb, stem: str):
    """A copy of ``nb`` with outputs kept only in NBVAL_CHECK_OUTPUT cells, execution counts
    cleared except on those cells (see expected_count), notebook metadata = NOTEBOOK_METADATA
    and deterministic cell ids (nbformat 4.5)."""
    cells = [_normalise_cell(c, i, stem, expected_count(nb, i)) for i, c in enumerate(nb.cells)]
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5,
                               "metadata": copy.deepcopy(NOTEBOOK_METADATA), "cells": cells})


def _code_stub(ex: str) -> list[str]:
    return ["# YOUR CODE HERE",
            f'raise NotImplementedError("exercise {ex}: replace these lines with your code")']


def answer_names(fenced: str, *, where: str = "cell") -> list[str]:
    """The names a top-level fence assigns, in order: the answer of a *predict* or *experiment*
    exercise (``predicted_k = 299``). Raises BuildError unless the fence holds only assignments
    to plain names (and comments), since anything else would run, or fail, in the learner edition."""
    import ast
    try:
        tree = ast.parse(fenced)
    except SyntaxError as e:
        raise BuildError(f"{where}: the top-level fence is not valid Python ({e.msg}, line {e.lineno})") from None
    names = []
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else \
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else None
        if not targets or not all(isinstance(t, ast.Name) for t in targets):
            raise BuildError(f"{where}: the fence is at top level, so its lines would run in the "
                             "learner edition; a top-level fence may only assign the answer to names "
                             "(`predicted_k = 299`), otherwise put the solution inside a function that "
                             "the check calls (or tag the cell raises-exception)")
        names += [t.id for t in targets if t.id not in names]
    if not names:
        raise BuildError(f"{where}: the top-level fence assigns nothing; put the answer in it "
                         "(`predicted_k = 299`)")
    return names


def _stub_cell(source: str, ex: str, where: str, *, raises: bool = False) -> str:
    """The learner's version of a fenced code cell. A fence inside a function becomes a stub that
    raises NotImplementedError; a top-level fence of answer assignments (a prediction, an
    experiment's choice) becomes ``name = None  # YOUR ANSWER HERE (exercise ex)``, so the cell
    still runs and the check says "not attempted" (a cell tagged raises-exception gets the raising
    stub even at top level)."""
    lines = source.split("\n")
    for begin, end, indent in reversed(fences(source, where=where)):
        if indent == "" and not raises:
            names = answer_names("\n".join(lines[begin + 1:end]), where=where)
            lines[begin:end + 1] = [f"{n} = None  # YOUR ANSWER HERE (exercise {ex})" for n in names]
        else:
            lines[begin:end + 1] = [indent + s for s in _code_stub(ex)]
    return "\n".join(lines)


def learner_edition(nb, stem: str, *, source_name: str = ""):
    """The learner notebook for the solutions notebook ``nb`` (named ``stem``), with its build
    record. Raises BuildError for malformed fences, naming the file and the cell."""
    out = normalise(nb, stem)
    ordinal = 0
    for i, cell in enumerate(out.cells):
        where = f"{source_name or stem}, cell {i + 1} (id {cell.id})"
        if BEGIN not in cell.source and END not in cell.source:
            continue
        if cell.cell_type == "code":
            regions = fences(cell.source, where=where)
            if not regions:
                continue
            ordinal += 1
            ex = _exercise_id(stem, out.cells, i, ordinal)
            cell.source = _stub_cell(cell.source, ex, where,
                                     raises="raises-exception" in cell.metadata.get("tags", []))
        elif cell.cell_type == "markdown":
            cell.source = _strip_fences(cell.source, ["YOUR ANSWER HERE"], where)
    out.metadata[RECORD] = {"generated_from": source_name or f"solutions/{stem}.ipynb",
                            "sha256": content_hash(out)}
    return out


def content_hash(nb) -> str:
    """sha256 of a notebook's JSON without its build record (key order and spacing ignored)."""
    d = json.loads(json.dumps(nb))
    d.get("metadata", {}).pop(RECORD, None)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def was_edited(nb) -> bool:
    """True if ``nb`` (read from notebooks/) differs from what the build last wrote there, or
    carries no build record at all (so nobody can tell)."""
    record = nb.get("metadata", {}).get(RECORD)
    if not isinstance(record, dict) or "sha256" not in record:
        return True
    return record["sha256"] != content_hash(nb)


def dumps(nb) -> str:
    return nbformat.writes(nb) + "\n"


# --------------------------------------------------------------------------- files


def read(path: pathlib.Path):
    """Read a notebook, turning bad JSON / bad nbformat into a BuildError naming the file."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:       # nbformat raises several types for unreadable files
        raise BuildError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None


def _write_atomic(path: pathlib.Path, text: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask                # what open() would give a new file
    if path.exists():
        mode |= path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.chmod(tmp, mode)                  # mkstemp makes 0o600 files; keep them readable
    os.replace(tmp, path)


def backup_path(path: pathlib.Path) -> pathlib.Path:
    """NAME.ipynb.bak, or NAME.ipynb.bak2, .bak3, ... if that exists already."""
    candidate, n = path.with_name(path.name + ".bak"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak{n}")
    return candidate


@dataclass
class Report:
    """What a build did (or, with check=True, would do)."""
    written: list = field(default_factory=list)       # notebooks (re)generated
    unchanged: list = field(default_factory=list)     # already up to date
    backups: list = field(default_factory=list)       # (notebook, backup) pairs, --force
    removed: list = field(default_factory=list)       # generated notebooks whose source is gone
    refused: list = field(default_factory=list)       # (notebook, reason): edited, not overwritten
    stale: list = field(default_factory=list)         # (notebook, reason), check mode
    untidy: list = field(default_factory=list)        # (solutions notebook, reason)

    @property
    def ok(self) -> bool:
        return not (self.refused or self.stale)


def solution_problems(nb) -> list[str]:
    """Why a solutions notebook is not in normal form (stored outputs, kernelspec), or []."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") and not has_check_output(cell):
            problems.append(f"cell {i + 1} stores outputs but has no '{CHECK_OUTPUT}'")
        if cell.get("execution_count") != expected_count(nb, i):
            problems.append(f"cell {i + 1} stores execution count {cell.get('execution_count')}, "
                            f"expected {expected_count(nb, i)}")
    if nb.metadata.get("kernelspec") != KERNELSPEC:
        problems.append(f"kernelspec is {nb.metadata.get('kernelspec')!r}, expected {KERNELSPEC!r}")
    return problems


def build(root: pathlib.Path | None = None, *, solutions: pathlib.Path | None = None,
          notebooks: pathlib.Path | None = None, check: bool = False, force: bool = False,
          log=print) -> Report:
    """Write ``notebooks/*.ipynb`` from ``solutions/*.ipynb`` (see the module docstring).

    check=True writes nothing and lists stale notebooks in ``Report.stale``. Edited notebooks are
    listed in ``Report.refused`` and left alone unless force=True (then backed up first).
    Raises BuildError for a malformed solutions notebook.
    """
    root = pathlib.Path(root) if root is not None else default_root()
    src_dir = pathlib.Path(solutions) if solutions is not None else root / "solutions"
    dst_dir = pathlib.Path(notebooks) if notebooks is not None else root / "notebooks"
    report = Report()
    sources = sorted(src_dir.glob("*.ipynb")) if src_dir.is_dir() else []
    if not check:
        dst_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        nb = read(src)
        try:
            rel = src.relative_to(root).as_posix()
        except ValueError:
            rel = src.name
        for p in solution_problems(nb):
            report.untidy.append((src, p))
        new = learner_edition(nb, src.stem, source_name=rel)
        dst = dst_dir / src.name
        if dst.exists():
            try:
                old = read(dst)
            except BuildError as e:
                old, old_error = None, str(e)
            if old is not None and json.loads(json.dumps(old)) == json.loads(json.dumps(new)):
                report.unchanged.append(dst)
                continue
            if check:
                report.stale.append((dst, f"differs from what {rel} builds"))
                continue
            if old is None or was_edited(old):
                reason = old_error if old is None else "changed since the build wrote it"
                if not force:
                    report.refused.append((dst, reason))
                    log(f"REFUSED  {dst}: {reason}; not overwritten. To replace it with a fresh "
                        f"copy run `python -m toyenv.build --force` (keeps {backup_path(dst).name})")
                    continue
                bak = backup_path(dst)
                shutil.copy2(dst, bak)
                report.backups.append((dst, bak))
                log(f"backup   {dst} -> {bak}")
        elif check:
            report.stale.append((dst, f"missing; {rel} builds it"))
            continue
        _write_atomic(dst, dumps(new))
        report.written.append(dst)
        log(f"wrote    {dst}")
    names = {s.name for s in sources}
    for dst in sorted(dst_dir.glob("*.ipynb")) if dst_dir.is_dir() else []:
        if dst.name in names:
            continue
        try:
            old = read(dst)
        except BuildError:
            old = None
        generated = old is not None and isinstance(old.metadata.get(RECORD), dict)
        if check:
            why = ("its source in solutions/ is gone" if generated
                   else "not generated from solutions/ (write it in solutions/ instead)")
            report.stale.append((dst, why))
        elif generated and not was_edited(old):
            dst.unlink()
            report.removed.append(dst)
            log(f"removed  {dst} (its source in solutions/ is gone)")
        else:
            log(f"kept     {dst} (no source in solutions/; not generated or edited)")
    return report


def normalize_solutions(src_dir: pathlib.Path, log=print) -> list[pathlib.Path]:
    """Rewrite solutions/*.ipynb in normal form in place (strip outputs outside
    NBVAL_CHECK_OUTPUT cells, clear execution counts, kernelspec). Returns the files changed."""
    changed = []
    for src in sorted(pathlib.Path(src_dir).glob("*.ipynb")):
        nb = read(src)
        for i, cell in enumerate(nb.cells):      # malformed fences fail here, not half-way later
            if cell.cell_type == "code":
                fences(cell.source, where=f"{src}, cell {i + 1}")
        new = normalise(nb, src.stem)
        if json.loads(json.dumps(new)) != json.loads(json.dumps(nb)):
            _write_atomic(src, dumps(new))
            changed.append(src)
            log(f"normalised {src}")
    return changed


def execute_solutions(src_dir: pathlib.Path, *, timeout: int = 300, kernel: str = "python3",
                      log=print) -> None:
    """Run every solutions notebook and store the outputs of its NBVAL_CHECK_OUTPUT cells
    (streams and text/plain only: images are never compared by nbval, HTML carries ids). Other
    cells' outputs are dropped."""
    from nbclient import NotebookClient

    for src in sorted(pathlib.Path(src_dir).glob("*.ipynb")):
        nb = read(src)
        ran = copy.deepcopy(nb)
        try:
            NotebookClient(ran, timeout=timeout, kernel_name=kernel,
                           resources={"metadata": {"path": str(src.parent)}}).execute()
        except Exception as e:      # CellExecutionError, timeouts, no kernel: name the notebook
            first = str(e).strip().splitlines()[-1:] or [""]
            raise BuildError(f"{src}: executing it failed ({type(e).__name__}: {first[0][:300]}); "
                             "nothing was written, fix the solution and re-run") from None
        for cell, done in zip(nb.cells, ran.cells):
            if cell.cell_type != "code":
                continue
            if has_check_output(cell):
                cell.outputs = [_text_only(o) for o in done.outputs]
                cell.outputs = [o for o in cell.outputs if o is not None]
            else:
                cell.outputs = []
        _write_atomic(src, dumps(normalise(nb, src.stem)))
        log(f"executed {src}")


def _text_only(output):
    if output.get("output_type") in ("execute_result", "display_data"):
        data = {k: v for k, v in output.get("data", {}).items() if k == "text/plain"}
        if not data:
            return None
        output = copy.deepcopy(output)
        output["data"] = data
    return output


# --------------------------------------------------------------------------- nbgrader export

NBGRADER_SCHEMA = 3
NBGRADER_TIMEOUT_S = 300          # per cell; the slowest cells train policies for a few seconds
_CHECK_CELL = re.compile(r'^\s*checks\.check\(\s*"(?P<id>\d+\.\d+)"\s*,\s*(?P<fn>[A-Za-z_]\w*)\s*\)\s*;?\s*$')


def exercise_points(ex: str) -> int:
    """Points of exercise ``ex`` in nbgrader: the registry's ``points`` if it has one, else 1."""
    from .checks import EXERCISES
    return int(EXERCISES.get(ex, {}).get("points", 1))


def _grade_id(kind: str, ex: str) -> str:
    return f"{kind}_{ex.replace('.', '_')}"          # e.g. answer_02_1, test_02_1


def _test_cell_source(ex: str, fn: str) -> str:
    # Checks print a line and return a CheckResult; they never raise. nbgrader needs a test cell
    # that raises, so assert on the result and let the hint be the assertion message.
    return (f"# Autograded test of exercise {ex} (from `checks.check(\"{ex}\", {fn})`): raises unless it passes\n"
            "from toyenv.course import checks\n"
            f"_result = checks.check(\"{ex}\", {fn})\n"
            "assert _result.passed, _result.line()")


def nbgrader_source(nb, stem: str, *, source_name: str = ""):
    """The nbgrader source notebook for the solutions notebook ``nb`` (named ``stem``).

    Every code cell with solution fences becomes an "Autograded answer" (solution, not graded,
    ``grade_id`` answer_NN_k); every check cell ``checks.check("NN.k", fn)`` becomes an
    "Autograded tests" cell (graded, locked, ``exercise_points`` points) that asserts the check
    passed; a markdown cell with fences becomes a "Manually graded answer" worth 0 points. Other
    cells are left as they are. Raises BuildError if a registered exercise of this notebook has no
    check cell, or a check cell no exercise.
    """
    from .checks import EXERCISES
    out = normalise(nb, stem)
    where_nb = source_name or stem
    answers, tests = [], {}
    ordinal = 0
    for i, cell in enumerate(out.cells):
        where = f"{where_nb}, cell {i + 1} (id {cell.id})"
        meta = None
        if cell.cell_type == "code" and fences(cell.source, where=where):
            ordinal += 1
            answers.append((i, ordinal))
        elif cell.cell_type == "code" and (m := _CHECK_CELL.match(cell.source)):
            ex = m["id"]
            if ex not in EXERCISES:
                raise BuildError(f"{where}: checks.check(\"{ex}\", ...) names no registered exercise")
            if ex in tests:
                raise BuildError(f"{where}: a second check cell for exercise {ex}")
            tests[ex] = i
            cell.source = _test_cell_source(ex, m["fn"])
            meta = {"grade": True, "solution": False, "locked": True,
                    "points": exercise_points(ex), "grade_id": _grade_id("test", ex)}
        elif cell.cell_type == "markdown" and fences(cell.source, where=where):
            meta = {"grade": True, "solution": True, "locked": False, "points": 0,
                    "grade_id": _grade_id("written", f"{stem[:2]}.{i + 1}")}
        if meta is not None:
            cell.metadata["nbgrader"] = {**meta, "schema_version": NBGRADER_SCHEMA}
    for i, ordinal in answers:
        # the exercise is the one whose check cell follows; else as the learner build names it
        nxt = next((j for j in range(i + 1, len(out.cells)) if out.cells[j].cell_type == "code"), None)
        ex = next((e for e, j in tests.items() if j == nxt), None) or _exercise_id(stem, out.cells, i, ordinal)
        out.cells[i].metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                             "grade_id": _grade_id("answer", ex),
                                             "schema_version": NBGRADER_SCHEMA}
    missing = sorted(e for e, v in EXERCISES.items() if v["notebook"] == stem and e not in tests)
    if missing:
        raise BuildError(f"{where_nb}: exercise(s) {', '.join(missing)} have no check cell "
                         "`checks.check(\"NN.k\", fn)` on a line of its own, so nbgrader would not grade them")
    ids = [c.metadata["nbgrader"]["grade_id"] for c in out.cells if "nbgrader" in c.metadata]
    if len(ids) != len(set(ids)):
        raise BuildError(f"{where_nb}: two nbgrader cells share a grade_id ({sorted(ids)})")
    return out


NBGRADER_CONFIG = """\
# nbgrader configuration of the toyenv course, written by `python -m toyenv.build --nbgrader`.
# The build writes this file only when it is missing: edit it freely.
c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "toyenv"
c.CourseDirectory.source_directory = "source"     # source/<notebook>/<notebook>.ipynb
c.CourseDirectory.db_assignments = {assignments!r}

# autograde runs each submission top to bottom in a fresh kernel (a failing cell does not stop
# it): a per-cell limit in seconds (nbgrader's default is 30), then the cell is interrupted.
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
"""


def export_nbgrader(dest: pathlib.Path, root: pathlib.Path | None = None, *,
                    solutions: pathlib.Path | None = None, only: str | None = None,
                    log=print) -> list[pathlib.Path]:
    """Write an nbgrader course folder: ``dest/source/<stem>/<stem>.ipynb`` for every solutions
    notebook (or only the one whose stem is, or starts with, ``only``: "02" or "02_occupancy...")
    and ``dest/nbgrader_config.py`` if missing. Returns the notebooks written."""
    root = pathlib.Path(root) if root is not None else default_root()
    src_dir = pathlib.Path(solutions) if solutions is not None else root / "solutions"
    sources = sorted(src_dir.glob("*.ipynb")) if src_dir.is_dir() else []
    if only:
        sources = [s for s in sources if s.stem == only or s.stem.startswith(f"{only}_")]
    if not sources:
        raise BuildError(f"no solutions notebook {'matching ' + repr(only) + ' ' if only else ''}in {src_dir}")
    dest = pathlib.Path(dest)
    written = []
    for src in sources:
        nb = nbgrader_source(read(src), src.stem, source_name=str(src))
        path = dest / "source" / src.stem / f"{src.stem}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, dumps(nb))
        written.append(path)
        log(f"wrote    {path}")
    config = dest / "nbgrader_config.py"
    if config.exists():
        log(f"kept     {config} (exists; delete it to get the default)")
    else:
        names = [{"name": s.stem} for s in sorted(src_dir.glob("*.ipynb"))]
        _write_atomic(config, NBGRADER_CONFIG.format(assignments=names, timeout=NBGRADER_TIMEOUT_S))
        log(f"wrote    {config}")
    return written


# --------------------------------------------------------------------------- learner handout

# What a learner needs besides the package and notebooks/: set-up files, when present.
HANDOUT_FILES = ("pyproject.toml", "Makefile", "environment.yml", "README.md", ".gitignore",
                 "LICENSE", "CITATION.cff", "CHANGELOG.md",
                 "postBuild", "apt.txt", "runtime.txt", "requirements.txt", "overrides.json",
                 "jupyter_lab_config.py", "jupyter_server_config.py", "jupyter_notebook_config.py")
HANDOUT_DIRS = ("binder", ".binder", ".jupyter", "lab-settings")   # JupyterLab settings / Binder set-up
# Instructor tooling: it builds and grades, a learner needs neither (and the build names the fences).
HANDOUT_EXCLUDED = ("toyenv/build.py", "toyenv/grade.py", "toyenv/course/build.py",
                    "toyenv/course/grade.py")
# A test ships only if it holds no answer and needs nothing the handout leaves out.
_TEST_WITHHELD = re.compile(r"RIGHT\s*=|### (BEGIN|END) SOLUTION|solutions|exercise_contract import|"
                            r"import exercise_contract|toyenv\.(build|grade)|course\.(build|grade)|"
                            r"course import [\w, ]*\b(build|grade)\b")
_JUNK = re.compile(r"(^|/)(__pycache__|\.ipynb_checkpoints)(/|$)|\.pyc$|\.bak\d*$")
INSTRUCTOR_SECTION = "## For instructors"
LEARNER_NOTE = """## For instructors

This is the learner handout: the instructor edition (`solutions/`), the course tooling that
builds and grades it, and the tests that hold the exercises' answers stay in the course
repository.
"""


def learner_readme(text: str) -> str:
    """README.md without its "For instructors" section (replaced by a one-paragraph note)."""
    lines = text.split("\n")
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == INSTRUCTOR_SECTION)
    except StopIteration:
        return text
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + LEARNER_NOTE.split("\n") + lines[end:])


def handout_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Archive name -> file for the learner handout of the course folder ``root``."""
    root = pathlib.Path(root)
    files = {}

    def add(path: pathlib.Path):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not _JUNK.search(rel) and rel not in HANDOUT_EXCLUDED:
            files[rel] = path

    for name in HANDOUT_FILES:
        add(root / name)
    for d in HANDOUT_DIRS + ("toyenv",):
        for path in sorted((root / d).rglob("*")) if (root / d).is_dir() else []:
            add(path)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        add(path)
    for path in sorted((root / "notebooks" / "guide").glob("*.md")):     # the course map, glossary, ...
        add(path)
    for path in sorted((root / "tests").rglob("*.py")):
        if not _TEST_WITHHELD.search(path.read_text(encoding="utf-8")):
            add(path)
    return files


def answer_leaks(name: str, text: str) -> list[str]:
    """Why the file ``name`` (its text) must not be handed out: a solution fence or a RIGHT table."""
    found = []
    for needle in (BEGIN, END):
        if needle in text:
            found.append(f"{name} contains '{needle}'")
    if re.search(r"\bRIGHT\s*=", text):
        found.append(f"{name} contains a RIGHT table ('RIGHT =')")
    return found


def make_handout(zip_path: pathlib.Path, root: pathlib.Path | None = None, *, log=print) -> list[str]:
    """Write the learner zip (every file under the folder ``<zip stem>/``): the package without the
    instructor tooling, notebooks/, the answer-free tests and the set-up files, README without its
    instructor section. Refuses (BuildError) if notebooks/ is stale or any file would carry a
    solution fence or a RIGHT table. Returns the archive names."""
    import zipfile

    root = pathlib.Path(root) if root is not None else default_root()
    report = build(root, check=True, log=lambda *a: None)
    if report.stale:
        raise BuildError("notebooks/ is out of date (" + "; ".join(f"{p.name}: {w}" for p, w in report.stale)
                         + "): run `make notebooks` before making the handout")
    files = handout_files(root)
    if not any(n.startswith("notebooks/") for n in files):
        raise BuildError(f"{root}/notebooks has no notebooks: run `make notebooks` first")
    top = pathlib.Path(zip_path).stem
    contents = {}
    for name, path in files.items():
        data = path.read_bytes()
        if name == "README.md":
            data = learner_readme(data.decode("utf-8")).encode("utf-8")
        problems = answer_leaks(name, data.decode("utf-8", errors="replace"))
        if problems:
            raise BuildError("; ".join(problems) + ": not written into the handout")
        contents[name] = (data, path.stat().st_mode)
    zip_path = pathlib.Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in sorted(contents.items()):
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.replace(tmp, zip_path)
    log(f"wrote    {zip_path} ({len(contents)} files under {top}/; unzip, then `make lab`)")
    return [f"{top}/{n}" for n in sorted(contents)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toyenv.build",
                                 description="Write the learner edition notebooks/ from solutions/.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if notebooks/ is stale or solutions/ is untidy")
    ap.add_argument("--force", action="store_true",
                    help="overwrite notebooks edited since the last build (keeps NAME.ipynb.bak)")
    ap.add_argument("--normalize-solutions", action="store_true",
                    help="first rewrite solutions/ in normal form (outputs, counts, kernelspec)")
    ap.add_argument("--execute", action="store_true",
                    help="first run solutions/ and store the NBVAL_CHECK_OUTPUT outputs")
    ap.add_argument("--nbgrader", type=pathlib.Path, default=None, metavar="DIR",
                    help="write an nbgrader course folder DIR (source/<stem>/<stem>.ipynb, "
                         "nbgrader_config.py) instead of building notebooks/")
    ap.add_argument("--only", default=None, metavar="STEM",
                    help="with --nbgrader: export only this notebook (its stem, or its number: 02)")
    ap.add_argument("--handout", type=pathlib.Path, default=None, metavar="ZIP",
                    help="write the learner zip (package, notebooks/, set-up files; no answers)")
    ap.add_argument("--root", type=pathlib.Path, default=None, help="course folder (default: this checkout)")
    ap.add_argument("--solutions", type=pathlib.Path, default=None, help="default ROOT/solutions")
    ap.add_argument("--notebooks", type=pathlib.Path, default=None, help="default ROOT/notebooks")
    args = ap.parse_args(argv)
    root = args.root or default_root()
    src_dir = args.solutions or root / "solutions"
    if args.only and not args.nbgrader:
        ap.error("--only goes with --nbgrader")
    if args.nbgrader or args.handout:
        try:
            if args.nbgrader:
                export_nbgrader(args.nbgrader, root, solutions=src_dir, only=args.only)
            if args.handout:
                make_handout(args.handout, root)
        except BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.execute and not args.check:
            execute_solutions(src_dir)
        elif args.normalize_solutions and not args.check:
            normalize_solutions(src_dir)
        report = build(root, solutions=src_dir, notebooks=args.notebooks, check=args.check,
                       force=args.force, log=(lambda *a: None) if args.check else print)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, why in report.untidy:
        print(f"untidy   {path}: {why}; fix with `python -m toyenv.build --normalize-solutions`",
              file=sys.stderr)
    if args.check:
        for path, why in report.stale:
            print(f"stale    {path}: {why}", file=sys.stderr)
        if report.stale:
            print("notebooks/ is out of date: run `make notebooks` (python -m toyenv.build)",
                  file=sys.stderr)
        if report.untidy:
            print("solutions/ is not in normal form: run `python -m toyenv.build "
                  "--normalize-solutions` (or --execute to refresh the checked outputs)",
                  file=sys.stderr)
        if report.stale or report.untidy:
            return 1
        print(f"notebooks/ is up to date ({len(report.unchanged)} notebooks)")
        return 0
    if report.refused:
        print(f"{len(report.refused)} edited notebook(s) left alone: "
              + ", ".join(str(p) for p, _ in report.refused)
              + ". Re-run with --force to overwrite them (a .bak copy is kept).", file=sys.stderr)
        return 1
    print(f"{len(report.written)} written, {len(report.unchanged)} up to date, "
          f"{len(report.removed)} removed, {len(report.backups)} backed up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
