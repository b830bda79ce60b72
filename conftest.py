"""Checks that read nbval's run of a course notebook instead of running the notebook again.

`make test` runs nbval over both editions (``--nbval-lax``: every cell runs in a fresh kernel,
``# NBVAL_CHECK_OUTPUT`` cells are compared with their stored outputs). Two more statements about
the whole course need a run of every notebook, and each used to start its own (with the grader's
tests, the course ran four times per `make test`). Here they are pytest items appended to nbval's
notebook file, after its last cell: they run on the same xdist worker (``--dist loadscope`` keeps
a file's items together), in nbval's still-running kernel, and read the outputs nbval recorded.

``<edition>/NN_name.ipynb::exercises`` (both editions)
    The exercise lines printed during nbval's run, read with the grader's own parser
    (``toyenv.grade.parse_verdicts``): on solutions/ every exercise registered for the notebook
    passed and no other was printed; on notebooks/ (the learner edition) every registered or
    printed exercise is "not attempted". Like the grader, no cell may show an error. (Before: the
    grader ran each folder again in fresh kernels, tests/test_grade.py. The grader's mechanics,
    copies, time limits, errors, renamed files, are tested there on small notebooks.)

``solutions/NN_name.ipynb::run_all_again`` (DESIGN §4: re-runnable without stale state)
    Run All a second time in the kernel nbval's Run All used, and the ``# NBVAL_CHECK_OUTPUT``
    cells print the stored key numbers again (stream text, as before); a cell that raises in the
    second run fails it. This catches cells that depend on what an earlier run left behind (a
    policy trained in place, a global random state, a cache that changes results). (Before:
    tests/test_rerun.py ran each notebook twice in a kernel of its own.)

Both need nbval's run of every cell of the notebook in this session; when some cells were not run
(deselected with -k, or nbval timed out), they fail and say so rather than check half a run.
"""
import pathlib
import re
from queue import Empty

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
COURSE = re.compile(r"[0-9][0-9]_.*\.ipynb")
RERUN_CELL_TIMEOUT = 600          # seconds per cell in the second Run All (nbclient's, before)
IOPUB_TIMEOUT = 60                # seconds to wait for a cell's outputs once it has finished


def _edition(parent):
    path = pathlib.Path(str(parent.path))
    if COURSE.fullmatch(path.name) and path.parent.name in ("solutions", "notebooks") \
            and path.parent.parent == ROOT:
        return path.parent.name
    return None


# Longest first, so that the two xdist workers finish together (`make test` passes
# --no-loadscope-reorder, which keeps this order; xdist's own order is by number of tests per
# file). Measured with --durations: the browser module runs every notebook in JupyterLab, one
# after the other on one worker (~28 % of the time of all tests); then the slowest package tests;
# then the notebooks (the solutions carry their second Run All); the rest in collection order.
LONG_FIRST = ("tests/test_browser.py", "tests/test_phenomena_transfer.py",
              "tests/test_course_claims_nb07_08.py", "solutions/", "notebooks/")


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
        yield from cells
        yield ExercisesAfterNbval.from_parent(nbfile, name="exercises", cells=cells)
        if _edition(nbfile) == "solutions":
            yield RunAllAgain.from_parent(nbfile, name="run_all_again", cells=cells)
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

        from toyenv import grade

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


class RunAllAgain(_AfterNbval):
    """A second Run All in nbval's kernel prints the stored key numbers again."""

    def runtest(self):
        self._require_nbval_run()
        kernel = self.parent.kernel
        checked = [c for c in self.cells if "NBVAL_CHECK_OUTPUT" in c.cell.source]
        assert checked, f"{self.parent.name} has no # NBVAL_CHECK_OUTPUT cell"
        if kernel is None or not kernel.is_alive():
            pytest.fail(f"{self.parent.name}: nbval's kernel is not running", pytrace=False)
        second = {}
        for c in self.cells:
            if c.options["skip"]:
                continue
            text, error = _run(kernel, c.cell.source)
            if error:
                pytest.fail(f"{self.parent.name}, {c.name}: the second Run All in the same "
                            f"kernel raised {error}", pytrace=False)
            second[c] = text
        for c in checked:
            assert second[c] == _stream_text(c.cell.outputs), \
                f"{self.parent.name}, {c.name}: the second Run All in the same kernel printed other key numbers"


def _stream_text(outputs):
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def _run(kernel, source):
    """Execute `source` in nbval's RunningKernel: (stream text in order, 'Name: value' of an
    error or None)."""
    msg_id = kernel.execute_cell_input(source, allow_stdin=False)
    try:
        kernel.await_reply(msg_id, timeout=RERUN_CELL_TIMEOUT)
    except Empty:
        kernel.interrupt()
        return "", f"a timeout ({RERUN_CELL_TIMEOUT} s)"
    text, error, clear_on_next = [], None, False
    while True:
        try:
            msg = kernel.get_message("iopub", timeout=IOPUB_TIMEOUT)
        except Empty:
            return "".join(text), f"no outputs within {IOPUB_TIMEOUT} s"
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return "".join(text), error
        if kind == "clear_output":            # as a notebook (and nbclient) would clear the cell
            text, clear_on_next = ([], False) if not content.get("wait") else (text, True)
            continue
        if kind in ("stream", "display_data", "execute_result", "error") and clear_on_next:
            text, clear_on_next = [], False
        if kind == "stream":
            text.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
