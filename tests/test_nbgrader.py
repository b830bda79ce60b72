"""`python -m toyenv.build --nbgrader DIR`: the course as an nbgrader course folder that nbgrader
0.9 accepts unmodified, and whose autograder gives the solution full marks and the release zero.

Layers: the exported metadata (every exercise an autograded answer and a test cell worth its
points), nbgrader's own validator and solution-stripping over all 12 notebooks (no "Solution region
detected in a non-solution cell"), then nbgrader's generate_assignment and autograde end to end on
notebook 00 (the fastest) in a temporary course folder.
"""
import os
import pathlib
import shutil
import sys

import nbformat
import pytest

from toyenv.course import build
from toyenv.course.checks import EXERCISES

nbgrader = pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STEM = "00_start_here"                                   # the fastest notebook to run


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    dest = tmp_path_factory.mktemp("nbgrader_course")
    assert build.main(["--nbgrader", str(dest), "--root", str(ROOT)]) == 0
    return dest


def _graded(nb):
    return [c for c in nb.cells if "nbgrader" in c.metadata]


def test_every_exercise_is_an_answer_cell_and_a_test_cell_worth_its_points(course):
    assert SOLUTIONS, "no solutions/ notebooks"
    answers, tests = {}, {}
    for src in SOLUTIONS:
        nb = nbformat.read(course / "source" / src.stem / f"{src.stem}.ipynb", as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            fenced = cell.cell_type == "code" and build.BEGIN in cell.source
            if fenced:     # every fenced cell is an autograded answer, and only those are
                assert meta == {"solution": True, "grade": False, "locked": False,
                                "grade_id": meta["grade_id"], "schema_version": 3}, cell.source
                answers[meta["grade_id"]] = src.stem
            elif meta and meta["grade"]:
                assert meta["locked"] and not meta["solution"] and cell.cell_type == "code"
                ex = meta["grade_id"].removeprefix("test_").replace("_", ".")
                assert EXERCISES[ex]["notebook"] == src.stem
                assert meta["points"] == EXERCISES[ex].get("points", 1)
                # the check prints and returns; the test cell must raise when it does not pass
                assert f'checks.check("{ex}", ' in cell.source
                assert "assert _result.passed, _result.line()" in cell.source
                tests[ex] = src.stem
            else:
                assert meta is None, cell.source
    assert sorted(tests) == sorted(EXERCISES)               # one test cell per registered exercise
    assert sorted(a.removeprefix("answer_").replace("_", ".") for a in answers) == sorted(EXERCISES)
    # the worked "wrong answer" demonstration in 00 (quiet=True) is not a test cell
    assert sum(1 for _ in tests) == len(EXERCISES)


def test_nbgrader_validates_and_strips_every_exported_notebook(course):
    """nbgrader's metadata validator and its solution stripper (the step that refuses solutions/
    as is) accept all 12 notebooks; the stripped version keeps no line of a solution."""
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.preprocessors import ClearSolutions

    for src in SOLUTIONS:
        nb = nbformat.read(course / "source" / src.stem / f"{src.stem}.ipynb", as_version=4)
        MetadataValidator().validate_nb(nb)
        released, _ = ClearSolutions().preprocess(nb, {"language": "python"})
        for cell in released.cells:
            assert build.BEGIN not in cell.source and build.END not in cell.source
    config = (course / "nbgrader_config.py").read_text()
    assert 'course_id = "toyenv"' in config and 'source_directory = "source"' in config
    assert f"c.Execute.timeout = {build.NBGRADER_TIMEOUT_S}" in config


def test_only_exports_one_notebook_and_keeps_an_edited_config(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # mine\n")
    assert build.main(["--nbgrader", str(tmp_path), "--only", "01", "--root", str(ROOT)]) == 0
    assert [p.name for p in (tmp_path / "source").iterdir()] == ["01_policies_over_trajectories"]
    assert (tmp_path / "nbgrader_config.py").read_text() == "c = get_config()  # mine\n"
    assert build.main(["--nbgrader", str(tmp_path), "--only", "99", "--root", str(ROOT)]) == 2


def test_a_check_cell_missing_is_an_error(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.source.strip() != 'checks.check("00.1", count_states)']
    with pytest.raises(build.BuildError, match="00.1"):
        build.nbgrader_source(nb, STEM)


@pytest.mark.filterwarnings("ignore:Object of type:Warning")     # nbgrader's own SQLAlchemy use
def test_nbgrader_autograde_gives_the_solution_full_marks_and_the_release_zero(course, monkeypatch):
    """nbgrader's own generate_assignment and autograde (its Python API, with the exported
    nbgrader_config.py), on notebook 00: the instructor edition submitted scores every point, the
    untouched release (what nbgrader hands learners) scores zero."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    # nbgrader runs the `alembic` command it installs: it must be on PATH (activated venv)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.chdir(course)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    api = NbGraderAPI(config=config)

    result = api.generate_assignment(STEM)
    assert result["success"], result.get("error") or result.get("log")
    release = course / "release" / STEM / f"{STEM}.ipynb"
    assert build.BEGIN not in release.read_text()
    submissions = {"instructor": course / "source" / STEM / f"{STEM}.ipynb", "learner": release}
    for student, nb in submissions.items():
        folder = course / "submitted" / student / STEM
        folder.mkdir(parents=True)
        shutil.copy(nb, folder / nb.name)
        result = api.autograde(STEM, student)
        assert result["success"], result.get("error") or result.get("log")

    points = sum(EXERCISES[e].get("points", 1) for e in EXERCISES if EXERCISES[e]["notebook"] == STEM)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission(STEM, s).score, gb.find_submission(STEM, s).max_score)
                  for s in submissions}
    assert scores == {"instructor": (points, points), "learner": (0, points)}
    graded = nbformat.read(course / "autograded" / "learner" / STEM / f"{STEM}.ipynb", as_version=4)
    errors = [o for c in graded.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    # the learner's zero comes from the test cell's assertion, carrying the check's own line
    assert errors and all(o.ename == "AssertionError" for o in errors)
    assert "not attempted" in errors[0].evalue
