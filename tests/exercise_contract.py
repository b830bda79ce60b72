"""What every exercise check promises, whatever the exercise (the course's exercise scheme, README "For instructors").

A test file subclasses `ExerciseContract` with `RIGHT = {exercise id: a right answer}` and
`DELEGATE = {exercise id: an answer that calls the package function(s) solving the exercise}`;
conftest parametrizes `exercise_id` over the ids of RIGHT. The hints of each exercise's typical
mistakes stay in that file.
"""
import re
import sys

import pytest

from toyenv.course import checks
from toyenv.course.checks import framework

# What code looks like, as opposed to a method said in words (formulas and array names are fine).
CODE = re.compile(r"\breturn\b|\bnp\.|\bnumpy\b|\btorch\.|\bdef\b|\blambda\b|\brange\(|\bzip\(|\+=|\[:|\*\*|"
                  r"\.sum\(|\bwhile\b")


def words(text, n=5):
    """Every run of n consecutive words of ``text``: a message containing one shows part of the text."""
    w = text.split()
    return {" ".join(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))}


def toyenv_attributes_are_the_originals(id):
    """No stub is left anywhere in the toyenv.* modules after a check of exercise ``id``."""
    assert not framework._STUB_OF and not framework._GUARDS, "stubs still registered after the check"
    for name in checks.forbidden(id):
        obj = framework._resolve(name)
        for mname, mod in list(sys.modules.items()):
            if mname.startswith("toyenv") and mod is not None:
                for attr, v in vars(mod).items():
                    assert getattr(v, "__name__", None) != "switched_off", f"{mname}.{attr} is still a stub"
        assert getattr(obj, "__name__", None) != "switched_off"


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError("exercise: replace these lines with your code")


def run(id, fn):
    return checks.check(id, fn, quiet=True)


def is_value(id):
    """A *predict* or *experiment* exercise: the answer is a value, the check runs no learner code."""
    return checks.EXERCISES[id]["kind"] in framework.VALUE_KINDS


class ExerciseContract:
    RIGHT: dict = {}
    DELEGATE: dict = {}

    def test_registered(self, exercise_id):
        assert exercise_id in checks.EXERCISES
        assert checks.EXERCISES[exercise_id]["notebook"].startswith(exercise_id[:2])

    def test_right_answer_passes_with_one_line(self, exercise_id, capsys):
        res = checks.check(exercise_id, self.RIGHT[exercise_id])
        out = capsys.readouterr().out
        assert res.status == "passed", res.message
        assert out == res.line() + "\n"
        assert out.startswith(f"[exercise {exercise_id}] passed: ")
        assert checks.passed(exercise_id)
        assert checks.EXERCISES[exercise_id]["points"] >= 1
        if is_value(exercise_id):
            return              # a value: no learner code runs inside the check, nothing to switch off
        # ... with the package functions that answer the exercise switched off, and back on afterwards
        assert checks.forbidden(exercise_id), f"exercise {exercise_id} switches off no package function"
        toyenv_attributes_are_the_originals(exercise_id)

    def test_stub_is_not_attempted_and_says_how_to_ask_for_a_hint(self, exercise_id, capsys):
        res = checks.check(exercise_id, None if is_value(exercise_id) else stub)
        assert res.status == "not attempted"
        assert not checks.passed(exercise_id)
        assert capsys.readouterr().out.splitlines() == [res.line()]
        assert ("no answer yet" if is_value(exercise_id) else "not implemented yet") in res.message
        assert len(res.message) > 60
        assert f'checks.hint("{exercise_id}")' in res.message
        rules = framework._RULES[exercise_id]
        shown = words(res.message)
        for text in rules.hints + ((rules.start,) if rules.start else ()):     # nothing of the method
            assert not shown & words(text), (exercise_id, shown & words(text))
        assert not CODE.search(res.message), res.message

    def test_hints_come_in_steps_and_end(self, exercise_id, capsys):
        framework._HINTS_SEEN.pop(exercise_id, None)
        try:
            got = [checks.hint(exercise_id) for _ in range(4)]
        finally:
            framework._HINTS_SEEN.pop(exercise_id, None)
        assert capsys.readouterr().out.splitlines() == [h.line() for h in got]
        nudge, method, done, again = got
        assert (nudge.step, method.step, done.step, again.step) == (1, 2, 0, 0)
        assert nudge.line().startswith(f"[hint {exercise_id}, 1 of 2] ")
        assert f'checks.hint("{exercise_id}") again gives the method' in nudge.text
        assert nudge.text != method.text and not words(nudge.text) & words(method.text)
        assert len(method.text) > len(framework._RULES[exercise_id].hints[0]) / 2 and len(method.text) > 80
        for h in (nudge, method):
            assert not CODE.search(h.text), (exercise_id, h.step, CODE.search(h.text).group(), h.text)
        assert "no more hints" in done.line() and done.text == again.text
        assert framework._RULES[exercise_id].reread in done.text
        assert f"notebook {exercise_id[:2]}" in done.text
        assert checks.hint(exercise_id, step=1, quiet=True).text == nudge.text      # shown again, on request

    def test_delegating_answer_fails_naming_the_function(self, exercise_id):
        if is_value(exercise_id):        # a function computing the right value with the package fails
            right = self.RIGHT[exercise_id]
            res = run(exercise_id, lambda: right)
            assert res.status == "failed" and "asks for a value" in res.message, res.line()
            return
        assert exercise_id in self.DELEGATE, (f"add to DELEGATE an answer of {exercise_id} that calls the "
                                              "package function(s) the exercise is about")
        res = run(exercise_id, self.DELEGATE[exercise_id])
        assert res.status == "failed", res.line()
        m = re.match(rf"{re.escape(exercise_id)} asks for your own code: your function called ([\w.]+), which "
                     r"this exercise is about; .+ instead$", res.message)
        assert m, res.message
        assert m.group(1) in checks.forbidden(exercise_id)
        toyenv_attributes_are_the_originals(exercise_id)

    def test_delegating_answer_is_right_when_nothing_is_switched_off(self, exercise_id, monkeypatch):
        """DELEGATE holds real answers, so the failure above is the switch and not a wrong answer."""
        if is_value(exercise_id):
            pytest.skip("a value answer calls nothing")
        monkeypatch.setattr(framework._RULES[exercise_id], "forbid", ())
        res = run(exercise_id, self.DELEGATE[exercise_id])
        assert res.passed, res.line()

    def test_a_value_of_the_wrong_kind_is_a_readable_failure(self, exercise_id):
        if not is_value(exercise_id):
            pytest.skip("function answers: see the tests below")
        for wrong in ("oops", object(), float("nan")):
            res = run(exercise_id, wrong)
            assert res.status == "failed" and "Traceback" not in res.message, res.line()

    def test_learner_exception_becomes_a_hint(self, exercise_id):
        if is_value(exercise_id):
            pytest.skip("a value answer runs no learner code")
        res = run(exercise_id, lambda *a, **k: {}["oops"])
        assert res.status == "failed"
        assert "your function raised KeyError" in res.message and " on " in res.message

    def test_forgot_return(self, exercise_id):
        if is_value(exercise_id):
            pytest.skip("a value answer runs no learner code")
        res = run(exercise_id, lambda *a, **k: None)
        assert res.status == "failed" and "forget to `return`" in res.message, res.message

    def test_a_result_instead_of_a_function(self, exercise_id):
        if is_value(exercise_id):
            pytest.skip("the answer is a value")
        res = run(exercise_id, 42)
        assert res.status == "failed" and "pass your function itself" in res.message
