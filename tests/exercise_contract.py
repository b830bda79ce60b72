"""What every exercise check promises, whatever the exercise (the course's exercise scheme, README "For instructors").

A test file subclasses `ExerciseContract` with `RIGHT = {exercise id: a right answer}`; conftest
parametrizes `exercise_id` over those ids. The hints of each exercise's typical mistakes stay in
that file.
"""
from toyenv.course import checks


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError("exercise: replace these lines with your code")


def run(id, fn):
    return checks.check(id, fn, quiet=True)


class ExerciseContract:
    RIGHT: dict = {}

    def test_registered(self, exercise_id):
        assert exercise_id in checks.EXERCISES
        assert checks.EXERCISES[exercise_id]["notebook"].startswith(exercise_id[:2])

    def test_right_answer_passes_with_one_line(self, exercise_id, capsys):
        res = checks.check(exercise_id, self.RIGHT[exercise_id])
        out = capsys.readouterr().out
        assert res.status == "passed", res.message
        assert out == res.line() + "\n"
        assert out.startswith(f"[exercise {exercise_id}] passed: ")

    def test_stub_is_not_attempted_and_says_how_to_start(self, exercise_id, capsys):
        res = checks.check(exercise_id, stub)
        assert res.status == "not attempted"
        assert capsys.readouterr().out.splitlines() == [res.line()]
        assert "not implemented yet" in res.message and len(res.message) > 60

    def test_learner_exception_becomes_a_hint(self, exercise_id):
        res = run(exercise_id, lambda *a, **k: {}["oops"])
        assert res.status == "failed"
        assert "your function raised KeyError" in res.message and " on " in res.message

    def test_forgot_return(self, exercise_id):
        res = run(exercise_id, lambda *a, **k: None)
        assert res.status == "failed" and "forget to `return`" in res.message, res.message

    def test_a_result_instead_of_a_function(self, exercise_id):
        res = run(exercise_id, 42)
        assert res.status == "failed" and "pass your function itself" in res.message
