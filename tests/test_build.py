"""The exercise scheme: notebooks/ is built from solutions/ (toyenv.build) and is never stale.

Layers: the repository's own notebooks (up to date, no stray outputs, one kernelspec), then the
build on small synthetic notebooks in tmp folders (stubs, outputs, refusal, backup, bad fences).
"""
import json
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from toyenv.course import build
from toyenv.course.build import BuildError, KERNELSPEC

ROOT = pathlib.Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))


# ----------------------------------------------------------------------------- the repository


def test_notebooks_are_up_to_date(capsys):
    """`python -m toyenv.build --check`: notebooks/ is what solutions/ builds (trivially true
    while solutions/ is empty: then there is nothing to be stale)."""
    code = build.main(["--check", "--root", str(ROOT)])
    err = capsys.readouterr().err
    assert code == 0, f"notebooks/ is stale; run `make notebooks`:\n{err}"


def test_course_notebooks_are_clean():
    """No stored outputs except in NBVAL_CHECK_OUTPUT cells, no execution counts but theirs
    (nbval needs one on a reference cell with outputs), and exactly
    the course kernelspec (every notebook opens on the kernel `make lab` installs). One test over
    all notebooks, so that it passes (rather than skips) while there are none."""
    problems = []
    for path in COURSE:
        nb = nbformat.read(path, as_version=4)
        name = f"{path.parent.name}/{path.name}"
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if cell.outputs and not build.has_check_output(cell):
                problems.append(f"{name} cell {i + 1} stores outputs")
            if cell.execution_count != build.expected_count(nb, i):
                problems.append(f"{name} cell {i + 1}: execution count {cell.execution_count}; "
                                "only NBVAL_CHECK_OUTPUT cells keep one (their code-cell position)")
        if nb.metadata.get("kernelspec") != KERNELSPEC:
            problems.append(f"{name}: kernelspec {nb.metadata.get('kernelspec')!r} != {KERNELSPEC!r}")
    assert not problems, ("\n".join(problems) + "\nfix: python -m toyenv.build "
                          "--normalize-solutions, then make notebooks")


def test_checked_outputs_are_the_same_in_both_editions():
    for src in sorted((ROOT / "solutions").glob("*.ipynb")):
        dst = ROOT / "notebooks" / src.name
        if not dst.exists():
            continue                   # reported by test_notebooks_are_up_to_date
        a = [c.outputs for c in nbformat.read(src, 4).cells if build.has_check_output(c)]
        b = [c.outputs for c in nbformat.read(dst, 4).cells if build.has_check_output(c)]
        assert a == b, f"{src.name}: NBVAL_CHECK_OUTPUT outputs differ between the editions"


# ----------------------------------------------------------------------------- synthetic courses

SOLUTION = '''def double(x):
    """Return 2 * x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION


def triple(x):
    ### BEGIN SOLUTION
    return 3 * x
    ### END SOLUTION
'''


def solution_notebook(extra_cells=()):
    nb = new_notebook(cells=[
        new_markdown_cell("# Demo\n\n### Exercise 07.3: double and triple"),
        new_code_cell(SOLUTION, execution_count=5, outputs=[new_output("stream", text="junk\n")]),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(42)", execution_count=6,
                      outputs=[new_output("stream", text="42\n"),
                               new_output("execute_result", {"text/plain": "1"}, execution_count=6)]),
        new_code_cell("import matplotlib", outputs=[new_output("display_data", {"image/png": "AAAA"})]),
        *extra_cells])
    nb.metadata["kernelspec"] = {"name": "someone-elses-env", "display_name": "X"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells[1].metadata["ExecuteTime"] = {"end_time": "yesterday"}
    nb.cells[1].metadata["tags"] = ["exercise"]
    return nb


@pytest.fixture
def course(tmp_path):
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution_notebook(), tmp_path / "solutions" / "07_demo.ipynb")
    return tmp_path


def quiet(*_):
    pass


def run_build(root, **kw):
    return build.build(root, log=quiet, **kw)


def learner(root, name="07_demo.ipynb"):
    return nbformat.read(root / "notebooks" / name, as_version=4)


def test_fenced_code_becomes_a_stub_below_the_signature(course):
    report = run_build(course)
    assert [p.name for p in report.written] == ["07_demo.ipynb"]
    src = learner(course).cells[1].source
    assert src == ('def double(x):\n    """Return 2 * x."""\n    # YOUR CODE HERE\n'
                   '    raise NotImplementedError("exercise 07.3: replace these lines with your code")\n'
                   '\n\ndef triple(x):\n    # YOUR CODE HERE\n'
                   '    raise NotImplementedError("exercise 07.3: replace these lines with your code")\n')
    ns = {}
    exec(src, ns)                                   # the stub is valid Python
    with pytest.raises(NotImplementedError, match="exercise 07.3"):
        ns["double"](1)


def test_exercise_id_falls_back_to_notebook_number_and_ordinal(tmp_path):
    nb = new_notebook(cells=[new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n"
                                           "    ### END SOLUTION"),
                             new_code_cell("def g():\n    ### BEGIN SOLUTION\n    return 2\n"
                                           "    ### END SOLUTION")])
    out = build.learner_edition(nb, "05_rl")
    assert 'exercise 05.1:' in out.cells[0].source and 'exercise 05.2:' in out.cells[1].source


def test_outputs_counts_and_metadata_are_normalised(course):
    run_build(course)
    nb = learner(course)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [None, 2, None]
    assert code[0].outputs == [] and code[2].outputs == []
    kept = code[1].outputs                             # the NBVAL_CHECK_OUTPUT cell keeps its output
    assert [o.output_type for o in kept] == ["stream", "execute_result"]
    assert kept[0].text == "42\n" and kept[1].execution_count == 2
    assert nb.metadata.kernelspec == KERNELSPEC
    assert set(nb.metadata) == {"kernelspec", "language_info", build.RECORD}
    assert nb.metadata[build.RECORD]["generated_from"] == "solutions/07_demo.ipynb"
    assert nb.cells[1].metadata == {"tags": ["exercise"]}
    nbformat.validate(nb)


def test_build_is_deterministic_and_idempotent(course):
    run_build(course)
    first = (course / "notebooks" / "07_demo.ipynb").read_bytes()
    report = run_build(course)
    assert report.written == [] and len(report.unchanged) == 1
    (course / "notebooks" / "07_demo.ipynb").unlink()
    run_build(course)
    assert (course / "notebooks" / "07_demo.ipynb").read_bytes() == first


def test_check_reports_missing_and_outdated_notebooks(course):
    report = run_build(course, check=True)
    assert not report.ok and "missing" in report.stale[0][1]
    assert not (course / "notebooks").exists(), "--check must write nothing"
    run_build(course)
    assert run_build(course, check=True).ok
    nb = solution_notebook([new_code_cell("print('new cell')")])
    nbformat.write(nb, course / "solutions" / "07_demo.ipynb")
    report = run_build(course, check=True)
    assert [p.name for p, _ in report.stale] == ["07_demo.ipynb"]


def test_unedited_notebook_is_regenerated_when_its_solution_changes(course):
    run_build(course)
    nbformat.write(solution_notebook([new_code_cell("print('new cell')")]),
                   course / "solutions" / "07_demo.ipynb")
    report = run_build(course)
    assert [p.name for p in report.written] == ["07_demo.ipynb"] and not report.backups
    assert learner(course).cells[-1].source == "print('new cell')"


def _edit(root):
    """What a learner does: write an answer, run the cell, save."""
    path = root / "notebooks" / "07_demo.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "def double(x):\n    return x + x  # my answer\n"
    nb.cells[1].execution_count = 1
    nbformat.write(nb, path)
    return path.read_bytes()


def test_edited_notebook_is_never_overwritten_silently(course):
    run_build(course)
    edited = _edit(course)
    nbformat.write(solution_notebook([new_code_cell("print('new cell')")]),
                   course / "solutions" / "07_demo.ipynb")
    report = run_build(course)
    assert [p.name for p, _ in report.refused] == ["07_demo.ipynb"] and not report.written
    assert (course / "notebooks" / "07_demo.ipynb").read_bytes() == edited
    assert not list((course / "notebooks").glob("*.bak*"))


def test_refusal_from_the_command_line_names_the_file_and_force(course):
    run_build(course)
    _edit(course)
    nbformat.write(solution_notebook([new_code_cell("1")]), course / "solutions" / "07_demo.ipynb")
    proc = subprocess.run([sys.executable, "-m", "toyenv.build", "--root", str(course)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "07_demo.ipynb" in out and "--force" in out and ".bak" in out


def test_force_overwrites_and_keeps_a_backup(course):
    run_build(course)
    edited = _edit(course)
    report = run_build(course, force=True)
    (nb_path, bak), = report.backups
    assert bak.name == "07_demo.ipynb.bak" and bak.read_bytes() == edited
    assert "YOUR CODE HERE" in learner(course).cells[1].source
    _edit(course)
    (_, bak2), = run_build(course, force=True).backups       # an older backup is not clobbered
    assert bak2.name == "07_demo.ipynb.bak2" and bak.read_bytes() == edited


def test_notebook_without_a_build_record_counts_as_edited(course):
    (course / "notebooks").mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("my own work")]),
                   course / "notebooks" / "07_demo.ipynb")
    assert [p.name for p, _ in run_build(course).refused] == ["07_demo.ipynb"]


def test_solution_without_fences_is_copied_clean(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# Start here"),
                             new_code_cell("import toyenv\nprint(toyenv.presets())",
                                           outputs=[new_output("stream", text="x\n")])])
    out = build.learner_edition(nb, "00_start")
    assert [c.source for c in out.cells] == [c.source for c in nb.cells]
    assert out.cells[1].outputs == []


def test_markdown_answer_fence(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause.\n"
                                               "### END SOLUTION")])
    assert build.learner_edition(nb, "01_x").cells[0].source == "Why?\n\nYOUR ANSWER HERE"


@pytest.mark.parametrize("source, message", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "no matching '### END SOLUTION'"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a '### BEGIN SOLUTION'"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION\n",
     "inside the fence"),
    ("### BEGIN SOLUTION\nprint(1)\n### END SOLUTION\n", "top level"),
    ("### BEGIN SOLUTION\nx[0] = 1\n### END SOLUTION\n", "top level"),
    ("### BEGIN SOLUTION\n# nothing\n### END SOLUTION\n", "assigns nothing"),
])
def test_malformed_fences_name_the_file_and_cell(course, source, message):
    nb = solution_notebook([new_code_cell(source)])
    nbformat.write(nb, course / "solutions" / "07_demo.ipynb")
    with pytest.raises(BuildError) as err:
        run_build(course)
    assert message in str(err.value)
    assert "solutions/07_demo.ipynb" in str(err.value) and "cell 5" in str(err.value)
    assert not (course / "notebooks" / "07_demo.ipynb").exists()


def test_unreadable_solution_is_a_clear_error(course):
    (course / "solutions" / "08_broken.ipynb").write_text("{ not json")
    with pytest.raises(BuildError, match="08_broken.ipynb: not a readable notebook"):
        run_build(course)


def test_orphans_generated_are_removed_others_kept(course):
    run_build(course)
    (course / "notebooks" / "scratch.ipynb").write_text(json.dumps(new_notebook()))
    (course / "solutions" / "07_demo.ipynb").unlink()
    stale = {p.name for p, _ in run_build(course, check=True).stale}
    assert stale == {"07_demo.ipynb", "scratch.ipynb"}
    report = run_build(course)
    assert [p.name for p in report.removed] == ["07_demo.ipynb"]
    assert (course / "notebooks" / "scratch.ipynb").exists()


def test_normalize_solutions_in_place(course):
    src = course / "solutions" / "07_demo.ipynb"
    assert build.solution_problems(nbformat.read(src, 4))
    assert build.normalize_solutions(course / "solutions", log=quiet) == [src]
    nb = nbformat.read(src, 4)
    assert build.solution_problems(nb) == []
    assert "### BEGIN SOLUTION" in nb.cells[1].source            # the solution itself is kept
    assert nb.cells[2].outputs[0].text == "42\n"
    assert build.normalize_solutions(course / "solutions", log=quiet) == []


def test_execute_stores_only_the_checked_text_outputs(course):
    nb = solution_notebook()
    nb.cells[3].source = ("# NBVAL_CHECK_OUTPUT\nfrom IPython.display import display, HTML\n"
                          "print('checked'); display(HTML('<b>x</b>'))")
    nbformat.write(nb, course / "solutions" / "07_demo.ipynb")
    build.execute_solutions(course / "solutions", timeout=60, log=quiet)
    out = nbformat.read(course / "solutions" / "07_demo.ipynb", 4)
    assert out.cells[1].outputs == []                         # defines functions, prints nothing
    assert [o.get("text") for o in out.cells[2].outputs] == ["42\n"]    # re-run, not kept
    kept = out.cells[3].outputs
    assert kept[0].text == "checked\n" and set(kept[1].data) == {"text/plain"}
    assert build.solution_problems(out) == []
    nb.cells.append(new_code_cell("raise ValueError('broken solution')"))
    nbformat.write(nb, course / "solutions" / "07_demo.ipynb")
    with pytest.raises(BuildError, match="07_demo.ipynb: executing it failed"):
        build.execute_solutions(course / "solutions", timeout=60, log=quiet)


def test_nbval_accepts_both_built_editions(course):
    """The contract with CI: nbval (lax) passes on the solutions in normal form and on the
    learner edition the build makes of them (checked output identical in both)."""
    nb = solution_notebook([new_code_cell("print(double(2), triple(2))")])
    nb.cells[-1].source = "try:\n    print(double(2))\nexcept NotImplementedError as e:\n    print(e)"
    nbformat.write(nb, course / "solutions" / "07_demo.ipynb")
    build.execute_solutions(course / "solutions", timeout=60, log=quiet)   # python -m toyenv.build --execute
    run_build(course)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "solutions/07_demo.ipynb", "notebooks/07_demo.ipynb"],
        cwd=course, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "passed" in proc.stdout and "skipped" not in proc.stdout


def test_written_files_keep_ordinary_permissions(course):
    run_build(course)
    path = course / "notebooks" / "07_demo.ipynb"
    assert path.stat().st_mode & 0o044 == 0o044, "learner notebooks must be readable by others"


def test_default_root_is_the_checkout_from_anywhere(monkeypatch, tmp_path):
    """`python -m toyenv.build` run from another folder still finds this checkout's solutions/."""
    monkeypatch.chdir(tmp_path)
    assert (build.default_root() / "solutions").is_dir()
    assert build.default_root() == pathlib.Path(build.__file__).resolve().parents[2]


def test_every_stub_names_the_exercise_its_check_cell_checks():
    """The learner stub's message names the exercise of the check call below it, not one the prose
    above happens to mention (10.2's stub once said "exercise 02.1")."""
    import re
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        stubs = []                       # a function stub raises, a value answer is None (one per cell)
        for c in nb.cells:
            found = re.findall(r'NotImplementedError\("exercise ([0-9.]+)|YOUR ANSWER HERE \(exercise ([0-9.]+)\)',
                               c.source)
            stubs += list(dict.fromkeys(a or b for a, b in found))
        calls = [m for c in nb.cells if c.cell_type == "code"
                 for m in re.findall(r'^checks\.check\("([0-9.]+)"', c.source, re.M)]
        assert stubs == calls, path.name


def test_a_top_level_fence_of_answers_becomes_none_so_run_all_goes_on():
    """A prediction or an experiment's choice: the learner edition assigns None (the check says
    "not attempted") instead of a stub that would raise and stop Run All."""
    src = ("# predict before running the next cell\n### BEGIN SOLUTION\npredicted_k = 299\n"
           "# the pair you expect to leave\nleaves: tuple = (3, 1)\n### END SOLUTION\n"
           "checks.check(\"07.3\", (predicted_k, leaves))")
    nb = solution_notebook([new_code_cell(src)])
    cell = build.learner_edition(nb, "07_x").cells[-1]
    assert cell.source == ("# predict before running the next cell\n"
                           "predicted_k = None  # YOUR ANSWER HERE (exercise 07.3)\n"
                           "leaves = None  # YOUR ANSWER HERE (exercise 07.3)\n"
                           "checks.check(\"07.3\", (predicted_k, leaves))")
    assert "299" not in cell.source and "(3, 1)" not in cell.source
