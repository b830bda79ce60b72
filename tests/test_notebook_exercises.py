"""Every notebook's exercises against its checks: in solutions/ each passes, in notebooks/ each
stub is "not attempted", and each notebook checks exactly the exercises registered for it.

Only the notebook's first code cell (its imports) and its exercise cells are executed, so this runs
in seconds; nbval runs the notebooks whole (conftest.py reads their exercise lines).
"""
import json
import pathlib
import re

import pytest

from toyenv.course import checks

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEMS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _exercise_functions(path):
    """Execute the imports and the exercise cells of a notebook; return their namespace and the
    function each check cell passes to its check."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    ns, checked = {}, {}
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        if i == 0 or "### BEGIN SOLUTION" in src or "YOUR CODE HERE" in src or "YOUR ANSWER HERE" in src:
            exec(compile(src, str(path), "exec"), ns)      # noqa: S102 - test code reading our notebook
        for id, name in re.findall(r"check\(\"(\d\d\.\d+)\", (\w+)\)", src):
            checked[id] = name
    return ns, checked


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_solutions_pass_and_learner_stubs_are_not_attempted(stem):
    ids = checks.exercises_of(stem)
    assert ids, f"no exercise registered for {stem}"
    for edition, want in (("solutions", "passed"), ("notebooks", "not attempted")):
        path = ROOT / edition / f"{stem}.ipynb"
        ns, checked = _exercise_functions(path)
        assert sorted(checked) == ids, f"{path} must check exactly the exercises {ids}"
        for id in ids:
            res = checks.check(id, ns[checked[id]], quiet=True)
            assert res.status == want, (edition, id, res.line())


_HEADING = re.compile(r"^#+ .*?\bExercise (\d\d\.\d+)\b", re.M)
_CHECK = re.compile(r"\bcheck\(\s*[\"'](\d\d\.\d+)[\"']")


@pytest.mark.parametrize("edition", ["solutions", "notebooks"])
@pytest.mark.parametrize("stem", STEMS)
def test_exercise_ids_follow_the_notebook_order(stem, edition):
    """The check calls of a notebook name NN.1, NN.2, ... in the order they appear, without gaps,
    and the markdown headings "Exercise NN.k" name the same ids in the same order."""
    cells = json.loads((ROOT / edition / f"{stem}.ipynb").read_text())["cells"]
    checked, headed = [], []
    for cell in cells:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code":
            checked += [i for i in _CHECK.findall(src) if i not in checked]
        else:
            headed += _HEADING.findall(src)
    nn = stem[:2]
    assert checked == [f"{nn}.{k}" for k in range(1, len(checked) + 1)], \
        f"{edition}/{stem}: exercise ids in notebook order are {checked}; number them {nn}.1, {nn}.2, ..."
    assert headed == checked, f"{edition}/{stem}: headings 'Exercise NN.k' {headed} do not match the checks {checked}"
