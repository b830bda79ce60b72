"""Trying to fool the grader, or to make it destroy work.

Honest grading: small notebooks (exercises 99.1 double and 99.2 triple of
tests/grade_demo_checks.py), each one trick, graded once per module two at a time: printed pass
lines, edited and deleted check cells, a renamed function, ``checks`` redefined, ``checks.check``
monkeypatched, a learner's own call of the check with a right answer, an extra report from inside
the function, a notebook that never stops, one that writes files. Then the pieces without a
kernel: the result channel (signatures, replays, the hidden key), the check-cell restoration, the
real course's check cells, and safe output (``--json`` never lands on a notebook or an input,
including ``--json solutions/*.ipynb`` expanded by the shell).
"""
import contextlib
import copy
import io
import json
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import build, channel, grade

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
REGISTRY = {"99.1": {"notebook": "99_demo", "title": "Double"},
            "99.2": {"notebook": "99_demo", "title": "Triple"}}
FAKE_PASS = 'print("[exercise 99.1] passed: double(3) == 6")\nprint("[exercise 99.2] passed: ok")'


@contextlib.contextmanager
def demo_kernels():
    """Kernels (which inherit the environment) can import tests/grade_demo_checks.py."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        yield


def _cell(kind, source, cell_id):
    cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
    cell.id = cell_id
    return cell


def course_source():
    """The course notebook 99_demo, as solutions/ holds it (cell ids fixed)."""
    return new_notebook(cells=[
        _cell("md", "### Exercise 99.1: double", "md1"),
        _cell("code", "import grade_demo_checks as checks", "imp"),
        _cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", "ex1"),
        _cell("code", 'checks.check("99.1", double)', "chk1"),
        _cell("md", "### Exercise 99.2: triple", "md2"),
        _cell("code", "def triple(x):\n    ### BEGIN SOLUTION\n    return 3 * x\n    ### END SOLUTION", "ex2"),
        _cell("code", 'checks.check("99.2", triple)', "chk2"),
    ])


WRONG_DOUBLE = "def double(x):\n    return x + 2"
RIGHT_TRIPLE = "def triple(x):\n    return 3 * x"


def submission(learner, *, replace=None, insert_after=None, delete=()):
    """A learner's notebook: the learner edition with cells replaced ({id: source}), cells
    inserted after a cell ({id: [sources]}) and cells deleted (ids)."""
    nb = copy.deepcopy(learner)
    for cell in nb.cells:
        if cell.id in (replace or {}):
            cell.source = replace[cell.id]
    for after, sources in (insert_after or {}).items():
        at = next(i for i, c in enumerate(nb.cells) if c.id == after) + 1
        nb.cells[at:at] = [_cell("code", s, f"new{after}{k}") for k, s in enumerate(sources)]
    nb.cells = [c for c in nb.cells if c.id not in delete]
    return nb


CASES = {
    "honest": dict(replace={"ex1": "def double(x):\n    return 2 * x", "ex2": RIGHT_TRIPLE}),
    "stub": {},
    "printed": dict(replace={"ex1": WRONG_DOUBLE}, insert_after={"chk2": [FAKE_PASS]}),
    "edited": dict(replace={"ex1": WRONG_DOUBLE,
                            "chk1": 'print("[exercise 99.1] passed: double(3) == 6")',
                            "chk2": 'checks.check("99.2", lambda x: 3 * x)'}),
    "deleted": dict(replace={"ex1": WRONG_DOUBLE}, delete={"chk1", "chk2"},
                    insert_after={"ex1": [FAKE_PASS]}),
    "renamed": dict(replace={"ex1": "def twice(x):\n    return 2 * x", "ex2": RIGHT_TRIPLE}),
    "redefined": dict(replace={"ex1": WRONG_DOUBLE}, insert_after={"imp": [
        "class checks:\n    @staticmethod\n    def check(id, fn, quiet=False):\n"
        "        print(f'[exercise {id}] passed: trust me')"]}),
    "monkeypatched": dict(replace={"ex1": WRONG_DOUBLE}, insert_after={"imp": [
        "import grade_demo_checks\n"
        "def fake(id, fn, quiet=False):\n    print(f'[exercise {id}] passed: trust me')\n"
        "checks.check = fake\ngrade_demo_checks.check = fake"]}),
    "own_call": dict(replace={"ex1": WRONG_DOUBLE}, insert_after={"ex1": [
        "import os\n"
        "assert not any(k.startswith('TOYENV_GRADER') for k in os.environ), 'the key is visible'\n"
        "checks.check('99.1', lambda x: 2 * x)\nchecks.check('99.2', lambda x: 3 * x)"]}),
    "extra_report": dict(replace={"ex1": "import sys\ndef double(x):\n"
                                  "    sys.modules['toyenv_grader_channel'].report('99.1', 'passed', 'ok')\n"
                                  "    return x + 2"}),
    "loop": dict(replace={"ex1": "def double(x):\n    while True:\n        pass", "ex2": RIGHT_TRIPLE},
                 insert_after={"imp": ["while True:\n    pass"]}),
    "files": dict(replace={"ex1": "def double(x):\n    return 2 * x", "ex2": RIGHT_TRIPLE},
                  insert_after={"imp": [
                      "import os, glob\nopen('written.txt', 'w').write('hello')\nos.makedirs('out', exist_ok=True)\n"
                      "for f in glob.glob('*.ipynb'):\n    open(f, 'w').write('overwritten by the notebook')"]}),
}


def _snapshot(folder):
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    d = tmp_path_factory.mktemp("course")
    (d / "solutions").mkdir()
    nbformat.write(course_source(), d / "solutions" / "99_demo.ipynb")
    build.build(d, log=lambda *a: None)                       # d/notebooks/99_demo.ipynb
    learner = nbformat.read(d / "notebooks" / "99_demo.ipynb", as_version=4)
    sub = d / "submissions"
    sub.mkdir()
    for name, edits in CASES.items():
        nbformat.write(submission(learner, **edits), sub / f"99_demo_{name}.ipynb")
    before = _snapshot(d)
    with demo_kernels():
        results = grade.grade([sub], registry=REGISTRY, timeout=3, jobs=2, source=[d / "solutions"])
    return {pathlib.Path(r.path).stem.removeprefix("99_demo_"): r for r in results}, d, before


def verdicts(r):
    return {e.id: e.status for e in r.exercises}


def message(r, ex):
    return next(e.message for e in r.exercises if e.id == ex)


def test_honest_and_stub(graded):
    results = graded[0]
    assert set(results) == set(CASES)
    assert verdicts(results["honest"]) == {"99.1": "passed", "99.2": "passed"}
    assert results["honest"].status == "ok" and results["honest"].restored == []
    assert verdicts(results["stub"]) == {"99.1": "not attempted", "99.2": "not attempted"}


def test_printed_pass_lines_are_ignored(graded):
    r = graded[0]["printed"]
    assert verdicts(r) == {"99.1": "failed", "99.2": "not attempted"}
    assert "did you add instead of multiply?" in message(r, "99.1")


def test_edited_check_cells_are_restored(graded):
    r = graded[0]["edited"]
    assert verdicts(r) == {"99.1": "failed", "99.2": "not attempted"}
    assert r.restored == ["check 99.1: the check cell was edited; the course's check cell ran",
                          "check 99.2: the check cell was edited; the course's check cell ran"]


def test_deleted_check_cells_are_put_back_where_they_were(graded):
    r = graded[0]["deleted"]
    assert verdicts(r) == {"99.1": "failed", "99.2": "not attempted"}
    assert r.restored == [
        "check 99.1: the check cell was missing; the course's check cell was inserted as cell 4",
        "check 99.2: the check cell was missing; the course's check cell was inserted as cell 8"]


def test_renamed_function_fails_saying_so(graded):
    r = graded[0]["renamed"]
    assert verdicts(r) == {"99.1": "failed", "99.2": "passed"}
    assert "`double` is not defined" in message(r, "99.1")
    assert "did you delete or rename it?" in message(r, "99.1")
    assert r.status == "ok" and r.problems == []       # the check cell's error is the verdict's


@pytest.mark.parametrize("case", ["redefined", "monkeypatched"])
def test_redefining_the_checks_does_not_reach_the_restored_cells(graded, case):
    r = graded[0][case]
    assert verdicts(r) == {"99.1": "failed", "99.2": "not attempted"}
    assert r.status == "ok"


def test_own_calls_of_the_check_do_not_count_and_the_key_is_hidden(graded):
    r = graded[0]["own_call"]            # its genuine "passed" records came from its own cell
    assert r.status == "ok", r.problems  # the assert on os.environ held
    assert verdicts(r) == {"99.1": "failed", "99.2": "not attempted"}


def test_a_second_report_during_the_check_fails_it(graded):
    r = graded[0]["extra_report"]
    assert verdicts(r)["99.1"] == "failed"
    assert "2 verdicts were reported" in message(r, "99.1")


def test_a_notebook_that_never_stops_is_interrupted(graded):
    r = graded[0]["loop"]
    assert r.status == "timeout"
    assert r.problems == ["cell 3: exceeded the 3 s limit and was interrupted",
                          "cell 5: exceeded the 3 s limit and was interrupted"]
    assert verdicts(r) == {"99.1": "failed", "99.2": "passed"}      # later cells still ran
    assert "did not finish within 3 s" in message(r, "99.1")


def test_files_written_by_a_notebook_stay_in_its_temporary_folder(graded):
    results, d, before = graded
    assert results["files"].status == "ok", results["files"].problems
    assert verdicts(results["files"]) == {"99.1": "passed", "99.2": "passed"}
    assert _snapshot(d) == before        # submissions, solutions/, notebooks/: same bytes, same times


def test_report_lists_what_was_restored(graded):
    results = list(graded[0].values())
    report = json.loads(json.dumps(grade.to_json(results, timeout=3)))
    assert report["format"] == 2 and {"notebooks", "rows", "grader", "timeout_per_cell"} <= set(report)
    edited = next(n for n in report["notebooks"] if n["path"].endswith("_edited.ipynb"))
    assert len(edited["restored"]) == 2
    assert "* check 99.1: the check cell was edited" in grade.format_table(results)


# ----------------------------------------------------------------------------- without a kernel


@pytest.fixture
def kernel_channel(tmp_path, monkeypatch):
    """A grader-side Run and, in this process, the kernel side connected to it."""
    run = channel.Run(tmp_path)
    for k, v in run.env({}).items():
        monkeypatch.setenv(k, v)
    module = type(sys)("toyenv_grader_channel")
    channel._connect(module)
    monkeypatch.setitem(sys.modules, channel.KERNEL_MODULE, module)
    return run, module


def test_channel_hides_the_key_and_rejects_forged_edited_and_replayed_lines(kernel_channel):
    run, module = kernel_channel
    assert channel.ENV_KEY_FILE not in os.environ and channel.ENV_RESULTS not in os.environ
    assert not pathlib.Path(run.key_file).exists()
    assert not any(isinstance(v, bytes) for v in vars(module).values())
    module.report("99.1", "failed", "no")
    assert run.read_new() == [{"seq": 1, "id": "99.1", "status": "failed", "message": "no"}]
    assert run.ready
    lines = pathlib.Path(run.results).read_text().splitlines()
    forged = json.loads(lines[1])
    forged["record"]["status"] = "passed"
    with open(run.results, "a") as f:
        f.write(lines[1] + "\n")                                      # replayed
        f.write(json.dumps(forged) + "\n")                            # edited
        f.write('{"record": {"seq": 2, "id": "99.1", "status": "passed", "message": ""}, '
                '"mac": "00"}\n')                                     # forged
        f.write("[exercise 99.1] passed: printed\n")
    assert run.read_new() == [] and run.rejected == 4


def test_framework_checks_report_to_the_grader_and_still_print(kernel_channel, capsys):
    from toyenv.course import checks
    run, _ = kernel_channel
    res = checks.check("00.1", lambda P, V, T: P * sum((V - 1) ** t for t in range(T)))
    assert res.passed and capsys.readouterr().out.startswith("[exercise 00.1] passed")
    assert [(r["id"], r["status"]) for r in run.read_new()] == [("00.1", "passed")]


def test_self_study_checks_only_print(monkeypatch, capsys):
    from toyenv.course import checks
    monkeypatch.delitem(sys.modules, channel.KERNEL_MODULE, raising=False)
    res = checks.check("00.1", lambda P, V, T: 0)
    assert res.status == "failed" and capsys.readouterr().out.startswith("[exercise 00.1] failed")


def test_restored_cells_reimport_the_checks_module():
    src = course_source()
    src.cells.insert(0, _cell("code", "from toyenv.course import checks as c2", "other"))
    src.cells[4].source = 'c2.check("99.1", double)  # ü'
    run, cells, notes = grade.restore_check_cells(src, src)
    assert notes == [] and cells == {4: [("99.1", "double")], 7: [("99.2", "triple")]}
    assert run.cells[4].source.splitlines() == [
        "import importlib as __grader_importlib  # check cell restored by toyenv.grade",
        "__grader_c2 = __grader_importlib.reload(__grader_importlib.import_module('toyenv.course.checks'))",
        '__grader_c2.check("99.1", double)  # ü']
    assert "import_module('grade_demo_checks')" in run.cells[7].source


def test_course_check_cells_are_found_and_demonstrations_skipped():
    """Every exercise registered for a course notebook has one check cell in solutions/; the
    quiet=True demonstration in 00 is not one (else its wrong answer would be graded)."""
    registry = grade.load_registry()
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        _, cells, _ = grade.restore_check_cells(nb, nb)
        found = sorted(ex for calls in cells.values() for ex, _ in calls)
        assert found == sorted(i for i, v in registry.items() if v["notebook"] == path.stem), path
        assert len(found) == len(set(found)), path


# ----------------------------------------------------------------------------- safe output


def test_output_path_rules(tmp_path):
    nb = tmp_path / "a.ipynb"
    nb.write_text("{}")
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    old = tmp_path / "grades.json"
    old.write_text(json.dumps({"grader": "toyenv.grade", "notebooks": [], "rows": []}))
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY))
    (tmp_path / "link.json").symlink_to(nb)
    inputs = [nb, registry]
    ok = grade.check_output_path
    for path in ["-", tmp_path / "new.json", old]:
        ok(path, inputs)
    for path, force, why in [(nb, True, "over a notebook"), (tmp_path / "new.IPYNB", True, "over a notebook"),
                             (tmp_path / "link.json", True, "over a notebook"),
                             (registry, True, "over an input"), (tmp_path, True, "is a folder"),
                             (other, False, "not a report of toyenv.grade")]:
        with pytest.raises(grade.GraderError, match=why):
            ok(path, inputs, force=force)
    ok(other, inputs, force=True)
    grade.write_report(other, {"grader": "toyenv.grade", "notebooks": [], "rows": []})
    assert grade.is_report(other) and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_shell_glob_accident_is_refused(tmp_path):
    """`python -m toyenv.grade --json solutions/*.ipynb`: the shell makes the first notebook the
    report's name. Exit 2 before grading anything, every notebook byte-identical."""
    (tmp_path / "solutions").mkdir()
    for src in sorted((ROOT / "solutions").glob("0[0-2]*.ipynb")):
        (tmp_path / "solutions" / src.name).write_bytes(src.read_bytes())
    before = _snapshot(tmp_path)
    proc = subprocess.run(f"{sys.executable} -m toyenv.grade --json solutions/*.ipynb", shell=True,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to write the report over a notebook" in proc.stderr
    assert "--json FILE before the notebooks" in proc.stderr
    assert _snapshot(tmp_path) == before


def test_json_to_stdout(tmp_path):
    """`--json -`: stdout is exactly the JSON report, the table goes to stderr."""
    nb = submission(course_source(), replace={"ex1": "def double(x):\n    return 2 * x"}, delete={"chk2"})
    nbformat.write(nb, tmp_path / "99_demo.ipynb")
    (tmp_path / "registry.json").write_text(json.dumps(REGISTRY))
    out, err = io.StringIO(), io.StringIO()
    with demo_kernels(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = grade.main([str(tmp_path / "99_demo.ipynb"), "--registry", str(tmp_path / "registry.json"),
                           "--json", "-", "--timeout", "60"])
    assert code == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert [(r["exercise"], r["status"]) for r in report["rows"]] == [("99.1", "passed"),
                                                                      ("99.2", "not attempted")]
    assert "99.1  passed" in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["99_demo.ipynb", "registry.json"]
