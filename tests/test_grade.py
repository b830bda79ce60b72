"""The grader (toyenv.grade): runs copies of notebooks in fresh kernels, collects the verdicts.

Synthetic notebooks (in a tmp folder, graded once per module, two at a time) cover a passing, a
failing, a stub (the learner edition built by toyenv.build), an erroring, a looping, a silent and
a broken notebook. The course itself (every exercise passes on solutions/, none is attempted on
notebooks/) is checked from nbval's run of each notebook, with the grader's parser: the
``::exercises`` items of the repository's conftest.py. The synthetic exercises are
tests/grade_demo_checks.py (standard library only, so a kernel starts in a second);
tests/test_grade_adversarial.py tries to fool the grader.
"""
import contextlib
import json
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import build, grade

ROOT = pathlib.Path(__file__).resolve().parents[1]
REGISTRY = {"99.1": {"notebook": "99_demo", "title": "Double"},
            "99.2": {"notebook": "99_demo", "title": "Triple"}}

SOLUTION = '''def double(x):
    """Return 2 * x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
'''
WRONG = "def double(x):\n    return x + 2\n"
CHECK = 'import grade_demo_checks as checks\nchecks.check("99.1", double)'
TRIPLE = "def triple(x):\n    return 3 * x"
TRIPLE_CHECK = 'checks.check("99.2", triple)'
TESTS = pathlib.Path(__file__).resolve().parent


@contextlib.contextmanager
def demo_kernels():
    """Kernels (which inherit the environment) can import tests/grade_demo_checks.py."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        yield


def _nb(*sources, markdown="### Exercise 99.1"):
    return new_notebook(cells=[new_markdown_cell(markdown)] + [new_code_cell(s) for s in sources])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every synthetic notebook once; returns (results by file name, folder, bytes before)."""
    d = tmp_path_factory.mktemp("submissions")
    (d / "solutions").mkdir()
    nbformat.write(_nb(SOLUTION, CHECK, TRIPLE, TRIPLE_CHECK), d / "solutions" / "99_demo.ipynb")
    build.build(d, log=lambda *a: None)                     # d/notebooks/99_demo.ipynb: the stub
    sub = d / "subs"
    sub.mkdir()
    (sub / "stub.ipynb").write_bytes((d / "notebooks" / "99_demo.ipynb").read_bytes())
    nbformat.write(_nb(SOLUTION.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""),
                       CHECK, TRIPLE, TRIPLE_CHECK), sub / "99_demo.ipynb")
    nbformat.write(_nb(WRONG, CHECK), sub / "alice_99_demo.ipynb")
    nbformat.write(_nb("undefined_name + 1", WRONG.replace("x + 2", "2 * x"), CHECK),
                   sub / "99_demo_error.ipynb")
    nbformat.write(_nb("while True:\n    pass", WRONG, CHECK), sub / "99_demo_loop.ipynb")
    nbformat.write(_nb("x = 1"), sub / "99_demo_silent.ipynb")
    (sub / "99_demo_broken.ipynb").write_text('{"cells": [ this is not json')
    (sub / "99_demo_notnb.ipynb").write_text('{"hello": "a JSON file, not a notebook"}')
    (sub / ".ipynb_checkpoints").mkdir()
    (sub / ".ipynb_checkpoints" / "stub-checkpoint.ipynb").write_text("{}")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sub.iterdir() if p.is_file()}
    with demo_kernels():
        results = grade.grade([sub], registry=REGISTRY, timeout=3, jobs=2, source=[d / "solutions"])
    return {pathlib.Path(r.path).name: r for r in results}, sub, before


def statuses(result):
    return {e.id: e.status for e in result.exercises}


def test_folder_is_searched_without_checkpoints(graded):
    results, _, _ = graded
    assert set(results) == {"stub.ipynb", "99_demo.ipynb", "alice_99_demo.ipynb",
                            "99_demo_error.ipynb", "99_demo_loop.ipynb", "99_demo_silent.ipynb",
                            "99_demo_broken.ipynb", "99_demo_notnb.ipynb"}


def test_passing_notebook(graded):
    r = graded[0]["99_demo.ipynb"]
    assert r.status == "ok" and r.problems == []
    assert statuses(r) == {"99.1": "passed", "99.2": "passed"}
    assert r.exercises[0].title == "Double" and r.exercises[0].message == "double(3) == 6"


def test_failing_notebook_keeps_the_hint_and_matches_a_renamed_file(graded):
    r = graded[0]["alice_99_demo.ipynb"]
    assert r.notebook == "99_demo"
    assert statuses(r) == {"99.1": "failed", "99.2": "failed"}
    assert "did you add instead of multiply?" in r.exercises[0].message
    assert "`triple` is not defined" in r.exercises[1].message     # its check cell was put back
    assert r.restored == ["check 99.2: the check cell was missing; the course's check cell was "
                          "inserted as cell 4"]


def test_learner_edition_stub_is_not_attempted(graded):
    r = graded[0]["stub.ipynb"]        # renamed, matched through the build record
    assert r.status == "ok" and r.notebook == "99_demo"
    assert statuses(r) == {"99.1": "not attempted", "99.2": "passed"}


def test_errors_are_reported_and_execution_continues(graded):
    r = graded[0]["99_demo_error.ipynb"]
    assert r.status == "errors"
    assert r.problems == ["cell 2: NameError: name 'undefined_name' is not defined"]
    assert statuses(r)["99.1"] == "passed"


def test_infinite_loop_is_interrupted_and_execution_continues(graded):
    r = graded[0]["99_demo_loop.ipynb"]
    assert r.status == "timeout"
    assert r.problems == ["cell 2: exceeded the 3 s limit and was interrupted"]
    assert statuses(r)["99.1"] == "failed"                 # the cells after the loop still ran


def test_silent_notebook_fails_its_restored_checks(graded):
    r = graded[0]["99_demo_silent.ipynb"]
    assert r.status == "ok" and statuses(r) == {"99.1": "failed", "99.2": "failed"}
    assert all("did you delete or rename it?" in e.message for e in r.exercises)


@pytest.mark.parametrize("name", ["99_demo_broken.ipynb", "99_demo_notnb.ipynb"])
def test_non_notebooks_get_a_line_not_a_crash(graded, name):
    r = graded[0][name]
    assert r.status == "not a notebook"
    assert r.problems[0].startswith("cannot read as a Jupyter notebook")
    assert statuses(r) == {"99.1": "not attempted", "99.2": "not attempted"}


def test_originals_are_unchanged(graded):
    _, sub, before = graded
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sub.iterdir() if p.is_file()}
    assert after == before


def test_reports(graded):
    results = list(graded[0].values())
    table = grade.format_table(results)
    assert "alice_99_demo.ipynb" in table and "not a notebook" in table
    assert "exceeded the 3 s limit" in table
    report = json.loads(json.dumps(grade.to_json(results, timeout=3)))
    assert {n["path"] for n in report["notebooks"]} == {r.path for r in results}
    row = next(x for x in report["rows"]
               if x["path"].endswith("alice_99_demo.ipynb") and x["exercise"] == "99.1")
    assert row["status"] == "failed" and row["title"] == "Double"
    n = next(n for n in report["notebooks"] if n["path"].endswith("/99_demo.ipynb"))
    assert n["summary"] == {"passed": 2, "failed": 0, "not_attempted": 0, "total": 2}


def test_parse_verdicts_takes_the_last_line_and_ignores_others():
    nb = new_notebook(cells=[new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", text="[exercise 01.1] failed: no\nnoise\n"),
        nbformat.v4.new_output("stream", text="\x1b[32m[exercise 01.1] passed: yes\x1b[0m\n"),
        nbformat.v4.new_output("execute_result", {"text/plain": "[exercise 01.2] not attempted: x"}),
        nbformat.v4.new_output("stream", text="[exercise 01.3] maybe: ?\n")])])
    v = grade.parse_verdicts(nb)
    assert {k: (e.status, e.message) for k, e in v.items()} == {
        "01.1": ("passed", "yes"), "01.2": ("not attempted", "x")}


def test_command_line(tmp_path, capsys):
    """`python -m toyenv.grade FILES --registry R --json OUT`: exit 0 with bad notebooks among
    them, a table on stdout and the JSON file; exit 2 when there is nothing to grade."""
    nbformat.write(_nb(SOLUTION, CHECK), tmp_path / "99_demo.ipynb")
    (tmp_path / "junk.txt").write_text("hello")
    (tmp_path / "registry.json").write_text(json.dumps(REGISTRY))
    out = tmp_path / "grades.json"
    cmd = [sys.executable, "-m", "toyenv.grade", str(tmp_path / "99_demo.ipynb"),
           str(tmp_path / "junk.txt"), "--registry", str(tmp_path / "registry.json"),
           "--json", str(out), "--timeout", "60"]
    with demo_kernels():
        proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "99.1  passed" in proc.stdout and "junk.txt" in proc.stdout
    report = json.loads(out.read_text())
    assert [n["status"] for n in report["notebooks"]] == ["ok", "not a notebook"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert grade.main([str(empty)]) == 2
    assert "no notebooks found" in capsys.readouterr().err
