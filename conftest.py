"""How `make test` runs the course notebooks, and the checks that read a run instead of running
the notebook again.

`make test` runs nbval over both editions (``--nbval-lax``: every cell runs in a fresh kernel,
``# NBVAL_CHECK_OUTPUT`` cells are compared with their stored outputs), and tests/test_browser.py
runs the learner edition in JupyterLab in a real browser. The learner edition is thus run once, by
the browser, which carries nbval's checks of it (tests/notebook_runs.py); nbval's items of a
notebook the browser runs in this session are deselected (see pytest_collection_modifyitems).
Without a browser the browser test skips and nbval runs the learner edition as before.

Items appended to nbval's notebook file, after its last cell: they run on the same xdist worker
(``--dist loadscope`` keeps a file's items together) and read the outputs nbval recorded.

``solutions/NN_name.ipynb::run_all_again``
    Run All a second time in nbval's kernel: no error, and the checked key numbers again (see
    RerunAfterNbval).

``<edition>/NN_name.ipynb::exercises`` (both editions)
    The exercise lines printed during nbval's run, read with the grader's own parser
    (``toyenv.grade.parse_verdicts``): on solutions/ every exercise registered for the notebook
    passed and no other was printed; on notebooks/ (the learner edition) every registered or
    printed exercise is "not attempted". Like the grader, no cell may show an error. (Before: the
    grader ran each folder again in fresh kernels, tests/test_grade.py. The grader's mechanics,
    copies, time limits, errors, renamed files, are tested there on small notebooks.)

It needs nbval's run of every cell of the notebook in this session; when some cells were not run
(deselected with -k, or nbval timed out), it fails and says so rather than check half a run.

One fit of each base transformer per session: ``TOYENV_CACHE_DIR`` (``toyenv.base_transformer``'s
disk cache) names a temporary directory that the xdist workers, the notebook kernels and the
browser test's JupyterLab inherit, so the first process that needs a fit runs it and the others load
it, bit for bit. The directory is removed at the end; a ``TOYENV_CACHE_DIR`` already set is kept.
"""
import copy
import os
import pathlib
import re
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
import notebook_runs  # noqa: E402  (tests/notebook_runs.py: what a notebook's run must show)
COURSE = re.compile(r"[0-9][0-9]_.*\.ipynb")


def _edition(parent):
    path = pathlib.Path(str(parent.path))
    if COURSE.fullmatch(path.name) and path.parent.name in ("solutions", "notebooks") \
            and path.parent.parent == ROOT:
        return path.parent.name
    return None


# Longest first, so that the two xdist workers finish together (`make test` passes
# --no-loadscope-reorder, which keeps this order; xdist's own order is by number of tests per
# file). Measured with --durations: the browser module runs every learner notebook in JupyterLab,
# in two classes that the two workers take at once; then the slowest package tests; then the
# notebooks; the rest in collection order.
LONG_FIRST = ("tests/test_browser.py", "tests/test_phenomena_transfer.py",
              "tests/test_course_claims_nb07_08.py", "solutions/",
              "notebooks/")


def pytest_configure(config):
    """On the controller (not an xdist worker, which inherits it): a fresh fit cache for the session."""
    if not hasattr(config, "workerinput") and not os.environ.get("TOYENV_CACHE_DIR"):
        config._toyenv_fits = os.environ["TOYENV_CACHE_DIR"] = tempfile.mkdtemp(prefix="toyenv-fits-")


def pytest_unconfigure(config):
    folder = getattr(config, "_toyenv_fits", None)
    if folder:
        del os.environ["TOYENV_CACHE_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


def _rank(item):
    nodeid = item.nodeid
    return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)),
                len(LONG_FIRST))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Longest files first (a stable sort: a file's items keep their order); run last, after
    -k and -m deselected theirs.

    A notebook that tests/test_browser.py runs in JupyterLab in this session is not run by
    nbval a second time: the browser's Run All (a fresh kernel, as a learner runs it) carries
    nbval's checks of it (tests/notebook_runs.py: no error, the checked outputs, the exercise
    lines, as --nbval-lax checks). Without a browser (the test skips), under strict --nbval, or
    with nbval markers a Run All cannot honour (NBVAL_SKIP, NBVAL_RAISES_EXCEPTION), nbval runs it."""
    carried = set()
    for item in items if getattr(config.option, "nbval_lax", False) else ():   # the checks of --nbval-lax
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.nodeid.startswith("tests/test_browser.py::TestRunAll") and params.get("name") \
                and not any(m.args and m.args[0] for m in item.iter_markers("skipif")):
            carried |= {p.resolve() for p in item.module.COURSE if p.name == params["name"]}
    carried = {p for p in carried if notebook_runs.carried_by_run_all(_read(p))}
    dropped = [i for i in items if _edition(i.parent) and pathlib.Path(str(i.path)).resolve() in carried]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        dropped = set(dropped)
        items[:] = [i for i in items if i not in dropped]
    items.sort(key=_rank)


def _read(path):
    import nbformat
    return nbformat.read(path, as_version=4)


@pytest.hookimpl(hookwrapper=True)
def pytest_collect_file(file_path, parent):
    """nbval's collector of a course notebook yields the items below after its cells."""
    outcome = yield
    for nbfile in outcome.get_result() or []:
        if type(nbfile).__name__ == "IPyNbFile" and _edition(nbfile):
            nbfile.collect = _with_items_after_nbval(nbfile, nbfile.collect)


def _with_items_after_nbval(nbfile, collect_cells):
    def collect():
        cells = list(collect_cells())
        for c in cells:             # nbval coalesces stream outputs in place when it compares, so a
            c.stored_outputs = copy.deepcopy(getattr(c.cell, "outputs", []))   # second comparison needs these
        yield from cells
        yield ExercisesAfterNbval.from_parent(nbfile, name="exercises", cells=cells)
        if _edition(nbfile) == "solutions":
            yield RerunAfterNbval.from_parent(nbfile, name="run_all_again", cells=cells)
    return collect


class _AfterNbval(pytest.Item):
    def __init__(self, *, cells, **kwargs):
        super().__init__(**kwargs)
        self.cells = cells

    def reportinfo(self):
        return self.path, None, f"{self.parent.name}::{self.name}"

    def _require_nbval_run(self):
        """nbval ran every cell of this notebook in this session (each ran cell keeps its
        outputs in .test_outputs)."""
        missing = [c.name for c in self.cells
                   if not c.options["skip"] and not hasattr(c, "test_outputs")]
        if missing or self.parent.timed_out:
            pytest.fail(f"{self.parent.name}: needs nbval's run of every cell first; not run: "
                        f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
                        f"{' (nbval timed out)' if self.parent.timed_out else ''}", pytrace=False)


class ExercisesAfterNbval(_AfterNbval):
    """solutions/: every registered exercise passed; notebooks/: every one is "not attempted"."""

    def runtest(self):
        from nbformat.v4 import new_code_cell, new_notebook

        self._require_nbval_run()
        ran = [c for c in self.cells if hasattr(c, "test_outputs")]
        executed = new_notebook(cells=[new_code_cell(c.cell.source, outputs=c.test_outputs)
                                       for c in ran])
        errors = notebook_runs.errors(executed)
        assert not errors, f"{self.parent.name}: cells show errors: {errors}"
        edition, stem = notebook_runs.edition_and_stem(self.parent.path)
        problems = notebook_runs.exercise_problems(stem, edition, executed)
        assert not problems, f"{self.parent.name}: {problems}"


class RerunAfterNbval(_AfterNbval):
    """solutions/: Run All a second time in nbval's kernel (the same kernel, not restarted): every
    cell runs again without an error and the ``# NBVAL_CHECK_OUTPUT`` cells print the stored key
    numbers again, so no cell depends on what an earlier run left behind (a policy trained in place,
    a global random state, a cache that changes results). nbval's own cell items do the executing
    and the comparing. (Before: tests/test_rerun.py ran each notebook twice in a kernel of its own.)"""

    def runtest(self):
        self._require_nbval_run()
        for cell in self.cells:
            if cell.options["skip"]:
                continue
            cell.cell.outputs = copy.deepcopy(cell.stored_outputs)
            try:
                cell.runtest()
            except Exception as e:          # nbval's NbCellError: a mismatch or an error in the cell
                detail = "\n".join(str(x) for x in getattr(cell, "comparison_traceback", []) or [])
                pytest.fail(f"{self.parent.name}, second Run All in the same kernel, {cell.name}: "
                            f"{type(e).__name__}: {e}\n{detail}", pytrace=False)
