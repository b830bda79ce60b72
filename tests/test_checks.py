"""The exercise checks: a right answer passes, a stub is "not attempted", each typical mistake
gets its own hint, and nothing ever escapes as a traceback.

The wrong solutions below are written the way a learner would write them (plain loops, the
package's arrays), not with the check's own variant machinery, so a hint is tested against the
code that really produces it.
"""

import numpy as np
import pytest

import toyenv
from toyenv.core.passes import trajectory_probs_from
from toyenv.course import checks
from exercise_contract import ExerciseContract, run, stub  # noqa: F401
from toyenv.course.checks import Case, CheckResult, Failed, compare, exercise



# ------------------------------------------------------------------------------ right answers
def count_states(num_prompts, vocab_size, horizon):
    return num_prompts * sum((vocab_size - 1) ** t for t in range(horizon))


def sequence_probability(mdp, probs, prompt_index, tokens):
    prob = 1.0
    for t in range(len(tokens)):
        prob *= probs[mdp.state_index(prompt_index, tokens[:t]), tokens[t]]
    return prob


def success_from_trajectories(mdp, traj_probs):
    out = np.zeros(mdp.num_prompts)
    for s, a in zip(*np.nonzero(mdp.correct)):
        out[mdp.prompt_of[s]] += traj_probs[s, a]
    return out


def occupancy_from_trajectories(mdp, traj_probs, *, weigh_prompt=True, length=lambda mdp, s, a: mdp.length[s, a],
                                start="here", stop_at_root=False):
    d = np.zeros((mdp.num_states, mdp.vocab_size))
    for s, a in zip(*mdp.trajectories()):
        w = traj_probs[s, a] / length(mdp, s, a)
        if weigh_prompt:
            w *= mdp.prompt_weights[mdp.prompt_of[s]]
        if start == "parent":
            s, a = mdp.parent[s], mdp.last_token[s]
        if start == "only":
            d[s, a] += w
            continue
        while (mdp.parent[s] >= 0) if stop_at_root else (s >= 0):
            d[s, a] += w
            s, a = mdp.parent[s], mdp.last_token[s]
    return d


def effective_support(occ, eps):
    return occ.sa >= eps


RIGHT = {"00.1": count_states, "01.1": sequence_probability, "01.2": success_from_trajectories,
         "02.1": occupancy_from_trajectories, "02.2": effective_support}


# ------------------------------------------------------------------------------ delegating answers
def _policy(mdp, traj):
    from toyenv.methods.rlhf import policy_from_trajectory_probs
    return policy_from_trajectory_probs(mdp, traj)


def delegate_sequence_probability(mdp, probs, prompt_index, tokens):
    s, a = mdp.encode([(prompt_index, tuple(tokens))])
    return trajectory_probs_from(mdp, probs)[s[0], a[0]]


DELEGATE = {"00.1": lambda P, V, T: toyenv.tree_size(P, V, T),
            "01.1": delegate_sequence_probability,
            "01.2": lambda mdp, traj: toyenv.success_prob(_policy(mdp, traj)),
            "02.1": lambda mdp, traj: toyenv.occupancy(_policy(mdp, traj)).sa,
            "02.2": toyenv.effective_support}                    # the package function itself, passed in


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


# ------------------------------------------------------------------------------ every check
def test_registry_lists_every_check():
    assert set(RIGHT) <= set(checks.EXERCISES)
    for id, entry in checks.EXERCISES.items():
        assert set(entry) == {"notebook", "title"}
        assert entry["notebook"].startswith(id[:2]) and entry["title"]
    assert checks.exercises_of("02_occupancy_and_support") == ["02.1", "02.2"]


def test_right_answers_as_torch_tensors_and_lists_pass():
    import torch
    assert run("01.2", lambda mdp, t: torch.as_tensor(success_from_trajectories(mdp, t))).passed
    assert run("01.2", lambda mdp, t: list(success_from_trajectories(mdp, t))).passed
    assert run("02.2", lambda occ, eps: (occ.sa >= eps).astype(int)).passed   # 0/1 is a mask too
    assert run("00.1", lambda *a: float(count_states(*a))).passed


def test_learner_writing_into_its_input_does_not_leak_into_later_cases():
    def zeroes_input(occ, eps):
        mask = occ.sa >= eps
        occ.sa[:] = 0.0
        return mask
    assert run("02.2", zeroes_input).passed


# ------------------------------------------------------------------------------ 00.1 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda P, V, T: P * sum(V**t for t in range(T)), "vocab_size - 1 children"),
    (lambda P, V, T: P * sum((V - 1) ** t for t in range(T + 1)), "range(horizon), not range(horizon + 1)"),
    (lambda P, V, T: P * sum((V - 1) ** t for t in range(1, T)), "left out the empty prefix"),
    (lambda P, V, T: sum((V - 1) ** t for t in range(T)), "multiply by num_prompts"),
    (lambda P, V, T: P * sum(V**t for t in range(T + 1)), "you used vocab_size children and range(horizon + 1)"),
    (lambda P, V, T: 340.5, "not a whole number"),
    (lambda P, V, T: P * V**T, "expected 340"),
])
def test_count_states_hints(wrong, hint):
    res = run("00.1", wrong)
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 01.1 hints
def _seq(combine="prod", last=True, prompt=None, weigh=False, start=0):
    def f(mdp, probs, x, toks):
        xs = x if prompt is None else prompt
        factors = [probs[mdp.state_index(xs, toks[:t]), toks[t]] for t in range(start, len(toks) - (0 if last else 1))]
        out = {"prod": np.prod, "sum": np.sum, "log": lambda f: np.sum(np.log(f))}[combine](factors)
        return out * mdp.prompt_weights[x] if weigh else out
    return f


@pytest.mark.parametrize("wrong, hint", [
    (_seq(last=False), "left out the last token's factor"),
    (_seq(start=1), "left out the first token's factor"),
    (_seq(combine="log"), "you returned log pi(y|x)"),
    (_seq(combine="sum"), "the chain rule (Eq. 1) multiplies them"),
    (_seq(weigh=True), "multiplied by the prompt weight D(x)"),
    (_seq(prompt=0), "you used the states of prompt 0"),
])
def test_sequence_probability_hints(wrong, hint):
    res = run("01.1", wrong)
    assert res.status == "failed" and hint in res.message, res.message


def test_sequence_probability_shifted_state_names_the_exception_and_case():
    def shifted(mdp, probs, x, toks):                  # the state *after* token t: not a state at the end
        return np.prod([probs[mdp.state_index(x, toks[: t + 1]), toks[t]] for t in range(len(toks))])
    res = run("01.1", shifted)
    assert res.status == "failed"
    assert "raised ValueError" in res.message and "hidden-path base policy, prompt 0" in res.message


# ------------------------------------------------------------------------------ 01.2 hints
def _success(mask="correct", weigh=False, count=False, average=False):
    def f(mdp, traj):
        m = {"correct": mdp.correct, "all": mdp.terminal, "wrong": mdp.terminal & ~mdp.correct}[mask]
        out = np.zeros(mdp.num_prompts)
        for s, a in zip(*np.nonzero(m)):
            out[mdp.prompt_of[s]] += 1.0 if count else traj[s, a]
        if weigh:
            out = out * mdp.prompt_weights
        return float(mdp.prompt_weights @ out) if average else out
    return f


@pytest.mark.parametrize("wrong, hint", [
    (_success(weigh=True), "you multiplied by D(x)"),
    (_success(average=True), "you returned the prompt-weighted average"),
    (_success(mask="all"), "keep only the correct ones"),
    (_success(count=True), "you counted the correct completions"),
    (_success(mask="wrong"), "that is 1 - p_x"),
])
def test_success_hints(wrong, hint):
    res = run("01.2", wrong)
    assert res.status == "failed" and hint in res.message, res.message


def test_success_wrong_shape_is_named():
    res = run("01.2", lambda mdp, traj: np.zeros(3))
    assert res.status == "failed" and "has shape (3,)" in res.message and "(8,)" in res.message


# ------------------------------------------------------------------------------ 02.1 hints
def _occ(**kw):
    return lambda mdp, traj: occupancy_from_trajectories(mdp, traj, **kw)


@pytest.mark.parametrize("wrong, hint", [
    (_occ(length=lambda mdp, s, a: 1), "you gave every step weight 1 instead of eta_t = 1/T(y)"),
    (_occ(weigh_prompt=False), "you did not weight the trajectories by the prompt distribution D(x)"),
    (_occ(length=lambda mdp, s, a: mdp.horizon), "divided by the horizon T"),
    (_occ(length=lambda mdp, s, a: mdp.depth[s] + 2), "off by one in T(y)"),
    (_occ(length=lambda mdp, s, a: mdp.depth[s]), "not mdp.depth[s]"),           # float division -> inf
    (_occ(start="only"), "you credited only the last step"),
    (_occ(start="parent"), "you skipped the final step"),
    (_occ(stop_at_root=True), "you stopped before the first step"),
])
def test_occupancy_hints(wrong, hint):
    with np.errstate(divide="ignore", invalid="ignore"):
        res = run("02.1", wrong)
    assert res.status == "failed" and hint in res.message, res.message
    assert "; and " not in res.message          # a single mistake is named alone


def test_occupancy_two_mistakes_are_both_named():
    res = run("02.1", _occ(weigh_prompt=False, length=lambda mdp, s, a: 1))
    assert "D(x)" in res.message and "eta_t = 1/T(y)" in res.message and "; and " in res.message


def test_occupancy_integer_division_by_zero_gets_the_length_hint():
    def python_floats(mdp, traj):
        d = np.zeros((mdp.num_states, mdp.vocab_size))
        for s, a in zip(*mdp.trajectories()):
            w = float(traj[s, a]) / int(mdp.depth[s])         # ZeroDivisionError at depth 0
            while s >= 0:
                d[s, a] += w
                s, a = mdp.parent[s], mdp.last_token[s]
        return d
    res = run("02.1", python_floats)
    assert "raised ZeroDivisionError" in res.message and "T(y) is the number of tokens" in res.message


def test_occupancy_unknown_mistake_reports_mass_and_location():
    def noisy(mdp, traj):
        d = occupancy_from_trajectories(mdp, traj)
        d[mdp.state_index(0, (0,)), 1] += 0.01
        return d
    res = run("02.1", noisy)
    assert "differs at 1 of" in res.message and "prefix 'a'), token 'b'" in res.message
    assert "sums to 1.01" in res.message


# ------------------------------------------------------------------------------ 02.2 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda occ, eps: occ.sa > eps, "Eq. 5 uses >=, not >"),
    (lambda occ, eps: occ.probs >= eps, "the action availability alone"),
    (lambda occ, eps: np.repeat((occ.s >= eps)[:, None], occ.sa.shape[1], 1), "state occupancy d(s)"),
    (lambda occ, eps: np.repeat((occ.reach >= eps)[:, None], occ.sa.shape[1], 1), "thresholded reach(s) (occ.reach)"),
    (lambda occ, eps: occ.reach[:, None] * occ.probs >= eps, "reach(s) * pi(a|s)"),
    (lambda occ, eps: occ.sa < eps, "pairs outside the support"),
    (lambda occ, eps: int((occ.sa >= eps).sum()), "not its size"),
    (lambda occ, eps: occ.sa, "values other than True/False"),
    (lambda occ, eps: occ.s >= eps, "has shape (340,)"),
])
def test_support_hints(wrong, hint):
    res = run("02.2", wrong)
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ the machinery
def test_line_round_trip():
    r = CheckResult("02.1", "not attempted", "start here: d = ...")
    assert checks.parse_line(r.line()) == r
    assert checks.parse_line("[exercise 10.12] passed: ok") == CheckResult("10.12", "passed", "ok")
    assert checks.parse_line("some other output") is None


def test_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError, match="02.1"):
        checks.check("99.9", count_states)


def test_bad_registration_is_refused():
    with pytest.raises(ValueError, match="look like '02.1'"):
        exercise("2.1", notebook="02_x", title="t", start="s")
    with pytest.raises(ValueError, match="stem starts with '03'"):
        exercise("03.1", notebook="02_x", title="t", start="s")


def test_a_new_check_in_the_same_style(capsys):
    """What another notebook's author writes: a body with cases, compare and mistakes."""
    @exercise("98.1", notebook="98_scratch", title="double", start="return 2 * x")
    def _(fn):
        for x in (2.0, -3.0, 0.0):
            case = Case(f"x = {x}", (x,))
            compare(case.call(fn), 2 * x, case=case, mistakes={"you squared x": x * x})
        return "three numbers"
    try:
        assert checks.check("98.1", lambda x: 2 * x).passed
        res = checks.check("98.1", lambda x: x * x)
        assert res.message == "you squared x (seen on x = -3.0)"   # x = 2: the mistake is invisible
        res = checks.check("98.1", lambda x: x + 1)
        assert res.message == "your answer on x = 2.0 is 3; expected 4."
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and all(checks.parse_line(x) for x in lines)
    finally:
        checks.EXERCISES.pop("98.1")
        checks.framework._CHECKS.pop("98.1")


def test_a_bug_in_a_check_is_still_one_line(capsys):
    @exercise("98.2", notebook="98_scratch", title="buggy", start="s")
    def _(fn):
        return 1 / 0
    try:
        res = checks.check("98.2", lambda: None)
        assert res.status == "failed" and "ZeroDivisionError" in res.message
        assert len(capsys.readouterr().out.splitlines()) == 1
    finally:
        checks.EXERCISES.pop("98.2")
        checks.framework._CHECKS.pop("98.2")


def test_endless_loop_is_stopped_with_a_hint():
    def forever(x):
        while True:
            pass
    with pytest.raises(Failed, match="more than 0 s.*loop that never ends"):
        Case("x = 1", (1,)).call(forever, timeout=0.2)


def test_compare_failure_messages():
    case = Case("c")
    with pytest.raises(Failed, match="shape"):
        compare(np.zeros(3), np.zeros(4), case=case)
    with pytest.raises(Failed, match="inf or nan"):
        compare(np.array([1.0, np.inf]), np.ones(2), case=case)
    with pytest.raises(Failed, match="not a number or an array|could not be read"):
        compare({"a": 1}, np.ones(2), case=case)
    compare(np.ones(2) + 1e-14, np.ones(2), case=case)           # within tolerance


def test_result_does_not_display_twice():
    assert CheckResult("00.1", "passed", "ok")._ipython_display_() is None
