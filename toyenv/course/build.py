"""Build the learner edition: ``notebooks/`` from ``solutions/`` (the single source).

    python -m toyenv.build                  # write notebooks/ (also: make notebooks)
    python -m toyenv.build --check          # exit 1 if notebooks/ is stale (CI, tests/test_build.py)
    python -m toyenv.build --force          # overwrite edited notebooks, keeping NAME.ipynb.bak
    python -m toyenv.build --normalize-solutions   # tidy solutions/ in place, then build
    python -m toyenv.build --execute        # run solutions/, store NBVAL_CHECK_OUTPUT outputs, build

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


def _exercise_id(stem: str, cells, index: int, ordinal: int) -> str:
    """The id of the exercise fenced in cells[index]: named in the cell ("exercise 02.1"), else
    in the markdown cells just above it, else '<notebook number>.<ordinal>'."""
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
            if any(indent == "" for _, _, indent in regions) and \
                    "raises-exception" not in cell.metadata.get("tags", []):
                raise BuildError(f"{where}: the fence is at top level, so the stub would raise "
                                 "when the cell runs and stop Run All; put the solution inside a "
                                 "function that the check calls (or tag the cell raises-exception)")
            ordinal += 1
            ex = _exercise_id(stem, out.cells, i, ordinal)
            stub = ["# YOUR CODE HERE",
                    f'raise NotImplementedError("exercise {ex}: replace these lines with your code")']
            cell.source = _strip_fences(cell.source, stub, where)
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
    ap.add_argument("--root", type=pathlib.Path, default=None, help="course folder (default: this checkout)")
    ap.add_argument("--solutions", type=pathlib.Path, default=None, help="default ROOT/solutions")
    ap.add_argument("--notebooks", type=pathlib.Path, default=None, help="default ROOT/notebooks")
    args = ap.parse_args(argv)
    root = args.root or default_root()
    src_dir = args.solutions or root / "solutions"
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
