"""Checks that read nbval's run of a course notebook instead of running the notebook again.

`make test` runs nbval over both editions (``--nbval-lax``: every cell runs in a fresh kernel,
``# NBVAL_CHECK_OUTPUT`` cells are compared with their stored outputs). The grader's statement
about the whole course used to run both editions once more in fresh kernels; here it is a pytest
item appended to nbval's notebook file, after its last cell: it runs on the same xdist worker
(``--dist loadscope`` keeps a file's items together) and reads the outputs nbval recorded.

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
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
COURSE = re.compile(r"[0-9][0-9]_.*\.ipynb")


def _edition(parent):
    path = pathlib.Path(str(parent.path))
    if COURSE.fullmatch(path.name) and path.parent.name in ("solutions", "notebooks") \
            and path.parent.parent == ROOT:
        return path.parent.name
    return None


# Longest first, so that the two xdist workers finish together (`make test` passes
# --no-loadscope-reorder, which keeps this order; xdist's own order is by number of tests per
# file). Measured with --durations: the browser module runs every notebook in JupyterLab, in two
# classes that the two workers take at once (about 4 minutes each); then the slowest package
# tests; then the notebooks; the rest in collection order.
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


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (a stable sort: a file's items keep their order)."""
    items.sort(key=_rank)


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
        import nbformat
        from nbformat.v4 import new_code_cell, new_notebook

        from toyenv.course import grade

        self._require_nbval_run()
        ran = [c for c in self.cells if hasattr(c, "test_outputs")]
        executed = new_notebook(cells=[new_code_cell(c.cell.source, outputs=c.test_outputs)
                                       for c in ran])
        errors = [f"{c.name}: {o.get('ename')}: {o.get('evalue')}"
                  for c in ran for o in c.test_outputs if o.get("output_type") == "error"]
        assert not errors, f"{self.parent.name}: cells show errors: {errors}"
        stem = pathlib.Path(str(self.parent.path)).stem
        expected = {i for i, v in grade.load_registry().items() if v["notebook"] == stem}
        printed = grade.parse_verdicts(nbformat.from_dict(executed))
        verdicts = {i: (printed[i].status, printed[i].message) if i in printed
                    else ("not attempted", "its check did not run") for i in expected | set(printed)}
        if _edition(self.parent) == "solutions":
            assert set(printed) <= expected, \
                f"{self.parent.name}: unregistered exercises printed: {sorted(set(printed) - expected)}"
            failing = {i: v for i, v in verdicts.items() if v[0] != "passed"}
            assert not failing, f"{self.parent.name}: {failing}"
        else:
            attempted = {i: v for i, v in verdicts.items() if v[0] != "not attempted"}
            assert not attempted, f"{self.parent.name}: {attempted}"


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
