"""The checks that a run of a course notebook must pass (tests/notebook_runs.py), on small
notebooks, and the rule that lets the browser's Run All carry nbval's checks of the learner edition."""
import os
import pathlib
import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import notebook_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _stdout(text):
    return new_output("stream", name="stdout", text=text)


def _stored():
    return new_notebook(cells=[
        new_markdown_cell("# a notebook"),
        new_code_cell("x = 1"),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('a', 0.25)\nprint('b')", outputs=[_stdout("a 0.25\nb\n")]),
        new_code_cell("plot()", outputs=[new_output("display_data", data={"image/png": "AAAA",
                                                                          "text/plain": "<Figure>"})]),
    ])


def _run(checked_outputs):
    """A run of `_stored()` whose checked cell printed `checked_outputs`."""
    run = _stored()
    run.cells[2].outputs = checked_outputs
    return run


def test_checked_outputs_compare_as_nbval_does():
    stored = _stored()
    # the same text in two stream outputs (JupyterLab or the kernel may split a stream): equal
    assert notebook_runs.checked_output_differences(stored, _run([_stdout("a 0.25\n"), _stdout("b\n")])) == []
    # one digit changed: a difference naming the cell and showing both
    diff = notebook_runs.checked_output_differences(stored, _run([_stdout("a 0.26\nb\n")]))
    assert len(diff) == 1 and "cell 3" in diff[0] and "0.25" in diff[0] and "0.26" in diff[0]
    # nothing printed, or stderr instead of stdout: a difference
    assert notebook_runs.checked_output_differences(stored, _run([]))
    assert notebook_runs.checked_output_differences(
        stored, _run([new_output("stream", name="stderr", text="a 0.25\nb\n")]))
    # only checked cells are compared: another figure in an unchecked cell is fine
    run = _stored()
    run.cells[3].outputs = [new_output("display_data", data={"image/png": "BBBB", "text/plain": "<Figure>"})]
    assert notebook_runs.checked_output_differences(stored, run) == []
    # a run of another notebook is refused
    other = _stored()
    other.cells[1].source = "x = 2"
    assert notebook_runs.checked_output_differences(stored, other)


def test_errors_name_the_cell():
    run = _stored()
    run.cells[1].outputs = [new_output("error", ename="NameError", evalue="name 'y' is not defined",
                                       traceback=[])]
    assert notebook_runs.errors(run) == ["cell 2: NameError: name 'y' is not defined"]
    assert notebook_runs.errors(_stored()) == []


def test_a_run_all_carries_only_notebooks_without_skip_or_raises():
    assert notebook_runs.carried_by_run_all(_stored())
    for marked in (new_code_cell("# NBVAL_SKIP\nslow()"), new_code_cell("# NBVAL_RAISES_EXCEPTION\n1/0"),
                   new_code_cell("1/0", metadata={"tags": ["nbval-raises-exception"]})):
        nb = _stored()
        nb.cells.append(marked)
        assert not notebook_runs.carried_by_run_all(nb)
    for name in ("notebooks", "solutions"):
        for path in sorted((ROOT / name).glob("[0-9][0-9]_*.ipynb")):
            assert notebook_runs.carried_by_run_all(nbformat.read(path, as_version=4)), path


def test_exercise_lines_by_edition():
    line = "[exercise 00.1] {}"
    run = new_notebook(cells=[new_code_cell("check()", outputs=[_stdout(line.format("not attempted: try it") + "\n")])])
    assert notebook_runs.exercise_problems("00_start_here", "notebooks", run) == []
    assert notebook_runs.exercise_problems("00_start_here", "solutions", run)          # must have passed
    run.cells[0].outputs = [_stdout(line.format("passed") + "\n")]
    assert notebook_runs.exercise_problems("00_start_here", "solutions", run) == []
    assert notebook_runs.exercise_problems("00_start_here", "notebooks", run)          # a learner stub passed?
    # a notebook whose check never printed: not attempted in the learner edition, a failure in solutions
    silent = new_notebook(cells=[new_code_cell("x = 1")])
    assert notebook_runs.exercise_problems("00_start_here", "notebooks", silent) == []
    assert notebook_runs.exercise_problems("00_start_here", "solutions", silent)


def test_the_browser_run_replaces_nbvals_run_of_the_learner_edition_only_when_it_runs(tmp_path):
    """Collected together, nbval's items of notebooks/00 are deselected when the browser test will
    run notebook 00 (a browser is there), and kept when it cannot (no browser: it skips)."""
    fake = tmp_path / "chromium"                       # exists: the browser test would run
    fake.write_text("#!/bin/sh\n")
    runs = {}
    for key, chromium in (("without", "/nonexistent/chromium"), ("with", str(fake))):   # at once
        env = dict(os.environ, TOYENV_CHROMIUM=chromium)
        env.pop("TOYENV_REQUIRE_BROWSER", None)
        runs[key] = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "--nbval-lax",
             "--nbval-current-env", "notebooks/00_start_here.ipynb", "solutions/00_start_here.ipynb",
             "tests/test_browser.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collected = {}
    for key, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
        collected[key] = [line for line in out.splitlines() if "::" in line]
    without, with_browser = collected["without"], collected["with"]
    assert any(i.startswith("notebooks/00_start_here.ipynb::") for i in without)
    assert any(i.startswith("solutions/00_start_here.ipynb::") for i in without)
    assert not any(i.startswith("notebooks/00_start_here.ipynb::") for i in with_browser)
    assert any(i.startswith("solutions/00_start_here.ipynb::") for i in with_browser)
    assert any("test_every_notebook_runs_in_jupyterlab[00_start_here.ipynb]" in i for i in with_browser)
