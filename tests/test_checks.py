"""The exercise checks: a right answer passes, a stub is "not attempted", each typical mistake
gets its own hint, and nothing ever escapes as a traceback.

The wrong solutions below are written the way a learner would write them (plain loops, the
package's arrays), not with the check's own variant machinery, so a hint is tested against the
code that really produces it.
"""

import functools

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
         "02.1": occupancy_from_trajectories, "02.2": "h a -> <eos>", "02.3": effective_support}


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
            "02.3": toyenv.effective_support}                    # the package function itself, passed in


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


# ------------------------------------------------------------------------------ every check
def test_registry_lists_every_check():
    assert set(RIGHT) <= set(checks.EXERCISES)
    for id, entry in checks.EXERCISES.items():
        assert set(entry) == {"notebook", "title", "kind", "points"}
        assert entry["kind"] in checks.KINDS and entry["points"] >= 1
        assert entry["notebook"].startswith(id[:2]) and entry["title"]
    assert checks.exercises_of("02_occupancy_and_support") == ["02.1", "02.2", "02.3"]


def test_right_answers_as_torch_tensors_and_lists_pass():
    import torch
    assert run("01.2", lambda mdp, t: torch.as_tensor(success_from_trajectories(mdp, t))).passed
    assert run("01.2", lambda mdp, t: list(success_from_trajectories(mdp, t))).passed
    assert run("02.3", lambda occ, eps: (occ.sa >= eps).astype(int)).passed   # 0/1 is a mask too
    assert run("00.1", lambda *a: float(count_states(*a))).passed


def test_learner_writing_into_its_input_does_not_leak_into_later_cases():
    def zeroes_input(occ, eps):
        mask = occ.sa >= eps
        occ.sa[:] = 0.0
        return mask
    assert run("02.3", zeroes_input).passed


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


# ------------------------------------------------------------------------------ 02.3 hints
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
    res = run("02.3", wrong)
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 02.2 (predict)
@pytest.mark.parametrize("answer", ["h a -> <eos>", "H A -> <EOS>", "  h a ->   <eos> ", "h a -> eos", "h a \u2192 <eos>"])
def test_path_prediction_accepts_the_option_however_it_is_spaced(answer):
    assert run("02.2", answer).passed


@pytest.mark.parametrize("wrong, says", [
    ("root -> h", "The rare choice (pi(h | root) = 1e-4) is not where d is smallest"),
    ("h -> a", "The middle step collects more completions than the last one"),
    ("together", "The three steps do not share one value"),
])
def test_path_prediction_explains_each_wrong_option(wrong, says):
    res = run("02.2", wrong)
    assert res.status == "failed" and says in res.message, res.message
    assert "closed under prefixes" in res.message and "9.17e-06 at root -> h" in res.message


def test_path_prediction_names_the_options_for_an_unknown_answer():
    for wrong in ("the last one", 3, ["h a -> <eos>"]):
        res = run("02.2", wrong)
        assert res.status == "failed" and "'root -> h', 'h -> a', 'h a -> <eos>', 'together'" in res.message


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


def _unregister(id):
    checks.EXERCISES.pop(id)
    checks.framework._CHECKS.pop(id)
    checks.framework._RULES.pop(id)


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
        _unregister("98.1")


def test_a_bug_in_a_check_is_still_one_line(capsys):
    @exercise("98.2", notebook="98_scratch", title="buggy", start="s")
    def _(fn):
        return 1 / 0
    try:
        res = checks.check("98.2", lambda: None)
        assert res.status == "failed" and "ZeroDivisionError" in res.message
        assert len(capsys.readouterr().out.splitlines()) == 1
    finally:
        _unregister("98.2")


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


# ------------------------------------------------------------------------------ hints on demand
def test_a_failed_attempt_still_names_its_mistake_and_not_the_hints():
    res = run("03.3", lambda before, after, eps: (before.sa >= eps) & (after.sa < eps))
    assert res.status == "failed" and res.message.startswith("you returned the attrited set (Eq. 8)")
    assert "checks.hint" not in res.message


def test_an_exercise_registered_the_old_way_still_gets_two_hint_steps():
    @exercise("98.5", notebook="98_scratch", title="double", start="return 2 * x")
    def _(fn):
        return Case("x = 1", (1,)).call(fn) and "ok"
    try:
        res = checks.check("98.5", stub, quiet=True)
        assert res.status == "not attempted" and "2 * x" not in res.message
        assert checks.hint("98.5", quiet=True).step == 1
        assert checks.hint("98.5", quiet=True).text == "return 2 * x"          # the method, on the 2nd ask
        assert "no more hints" in checks.hint("98.5", quiet=True).line()
        with pytest.raises(ValueError, match="hint steps 1..2"):
            checks.hint("98.5", step=3)
    finally:
        _unregister("98.5")
        checks.framework._HINTS_SEEN.pop("98.5", None)
    with pytest.raises(KeyError, match="no exercise"):
        checks.hint("98.5")


# ------------------------------------------------------------------------------ own work only
@pytest.fixture
def own_work_exercise():
    """98.3: count states, with toyenv.tree_size switched off; its reference uses tree_size before and
    after the learner's call (a check's own answers keep working)."""
    @exercise("98.3", notebook="98_scratch", title="count", hints=("think", "the method, in words"),
              forbid=("toyenv.tree_size", "toyenv.core.tree.tree_size"), own="count the prefixes yourself")
    def _(fn):
        case = Case("P = 2, V = 3, T = 3", (2, 3, 3))
        before = toyenv.tree_size(2, 3, 3)
        got = case.call(fn, timeout=1.0)
        compare(got, before, case=case)
        compare(got, toyenv.tree_size(2, 3, 3), case=case)
        return "ok"
    yield "98.3"
    _unregister("98.3")


ORIGINAL_TREE_SIZE = toyenv.tree_size


def _all_restored():
    from toyenv.core import tree
    assert toyenv.tree_size is ORIGINAL_TREE_SIZE and tree.tree_size is ORIGINAL_TREE_SIZE
    assert not checks.framework._STUB_OF and not checks.framework._ACTIVE and not checks.framework._GUARDS


DELEGATED = ("98.3 asks for your own code: your function called toyenv.tree_size, which this exercise is "
             "about; count the prefixes yourself instead")


def test_every_alias_is_switched_off_and_restored(own_work_exercise):
    from toyenv.core import tree
    import toyenv.core.tree as tree_module
    for fn in (lambda P, V, T: toyenv.tree_size(P, V, T),            # the public name
               lambda P, V, T: tree.tree_size(P, V, T),              # the defining module
               lambda P, V, T: tree_module.tree_size(P, V, T),
               toyenv.tree_size,                                     # the function itself, passed in
               functools.partial(toyenv.tree_size, 2)):
        res = run("98.3", fn)
        assert (res.status, res.message) == ("failed", DELEGATED)
        _all_restored()
    assert run("98.3", count_states).passed


def test_names_the_learner_imported_before_the_check_are_switched_off_too(own_work_exercise):
    ns = {}
    exec("from toyenv import tree_size\n"                                  # noqa: S102 - a notebook's namespace
         "ts = tree_size\n"
         "def delegating(P, V, T):\n"
         "    return ts(P, V, T)\n", ns)
    res = run("98.3", ns["delegating"])
    assert (res.status, res.message) == ("failed", DELEGATED)
    assert ns["tree_size"] is ns["ts"] is ORIGINAL_TREE_SIZE                  # the namespace is given back
    _all_restored()

    def closure():
        f = toyenv.tree_size
        return lambda P, V, T: f(P, V, T)

    def default(P, V, T, f=toyenv.tree_size):
        return f(P, V, T)

    def kwdefault(P, V, T, *, f=toyenv.tree_size):
        return f(P, V, T)

    for fn in (closure(), default, kwdefault):
        assert run("98.3", fn).message == DELEGATED
    assert default.__defaults__ == (ORIGINAL_TREE_SIZE,) and kwdefault.__kwdefaults__ == {"f": ORIGINAL_TREE_SIZE}
    assert closure().__closure__[0].cell_contents is ORIGINAL_TREE_SIZE
    _all_restored()


def test_a_caught_stub_error_still_fails_and_errors_and_timeouts_restore(own_work_exercise):
    def swallows(P, V, T):
        try:
            return toyenv.tree_size(P, V, T)
        except Exception:
            return count_states(P, V, T)

    def raises_after(P, V, T):
        toyenv.tree_size(P, V, T)

    def loops_after(P, V, T):
        try:
            toyenv.tree_size(P, V, T)
        except Exception:
            pass
        while True:
            pass

    def loops(P, V, T):
        while True:
            pass

    for fn in (swallows, raises_after, loops_after):
        assert run("98.3", fn).message == DELEGATED
        _all_restored()
    res = run("98.3", loops)
    assert res.status == "failed" and "loop that never ends" in res.message
    _all_restored()
    assert run("98.3", lambda P, V, T: {}["x"]).message.startswith("your function raised KeyError")
    _all_restored()
    assert issubclass(checks.Delegated, checks.Failed)


def test_checks_can_nest(own_work_exercise):
    """A learner's function that runs a check itself (or the same check again) leaves everything
    switched back on afterwards, and each level judges its own function."""
    inner = []

    def outer_own(P, V, T):
        inner.append(checks.check("98.3", count_states, quiet=True).status)
        inner.append(checks.check("98.3", lambda *a: toyenv.tree_size(*a), quiet=True).status)
        inner.append(checks.check("02.3", lambda occ, eps: occ.sa >= eps, quiet=True).status)
        return count_states(P, V, T)

    assert run("98.3", outer_own).passed and inner == ["passed", "failed", "passed"]
    _all_restored()

    def outer_delegating(P, V, T):
        checks.check("98.3", count_states, quiet=True)
        return toyenv.tree_size(P, V, T)

    assert run("98.3", outer_delegating).message == DELEGATED
    _all_restored()


def test_a_package_function_that_uses_a_switched_off_one_is_named():
    def via_policy(mdp, probs, x, tokens):                # Policy.log_prob sums log-probs for you
        lp = toyenv.TabularPolicy.from_probs(mdp, probs).log_prob([(x, tuple(tokens))])
        return float(np.exp(lp[0].item()))
    res = run("01.1", via_policy)
    assert res.status == "failed"
    assert ("your function called toyenv.core.policies.sequence_log_prob (through "
            "toyenv.core.policies.log_prob)") in res.message


def test_outside_a_check_nothing_is_switched_off():
    assert Case("x", (2, 3, 3)).call(lambda *a: toyenv.tree_size(*a)) == 14
    assert toyenv.tree_size is ORIGINAL_TREE_SIZE


def test_every_forbidden_name_exists_and_is_a_function():
    import types
    for id in checks.EXERCISES:
        for name in checks.forbidden(id):
            assert isinstance(checks.framework._resolve(name), types.FunctionType), (id, name)


# ----------------------------------------------------------------- value answers and training steps
@pytest.fixture
def scratch_exercises():
    """Register throw-away exercises under notebook 99; the registry is restored afterwards."""
    from toyenv.course.checks import framework
    saved = [(d, dict(d)) for d in (framework.EXERCISES, framework._CHECKS, framework._RULES, framework._LAST)]
    yield framework
    for d, copy in saved:
        d.clear()
        d.update(copy)


def test_a_prediction_is_a_value_and_none_is_not_attempted(scratch_exercises, capsys):
    fw = scratch_exercises

    @fw.exercise("99.1", notebook="99_scratch", title="predict a count", kind="predict",
                 hints=("Think about how many states there are.", "Count the prefixes of every length."))
    def _(value):
        if int(value) != 7:
            raise fw.Failed(f"you predicted {value}; the tree has 7 states")
        return "7 states, as you predicted"

    assert fw.EXERCISES["99.1"] == {"notebook": "99_scratch", "title": "predict a count", "kind": "predict",
                                     "points": fw.DEFAULT_POINTS["predict"]}
    for unanswered in (None, ..., (None, 3), {"k": None}):
        res = fw.check("99.1", unanswered, quiet=True)
        assert res.status == "not attempted" and 'checks.hint("99.1")' in res.message
        assert "before running the cells below" in res.message
    assert fw.check("99.1", 6, quiet=True).message == "you predicted 6; the tree has 7 states"
    assert not fw.passed("99.1")
    assert "asks for a value" in fw.check("99.1", lambda: 7, quiet=True).message
    assert fw.check("99.1", 7).passed and fw.passed("99.1")
    assert capsys.readouterr().out == "[exercise 99.1] passed: 7 states, as you predicted\n"


def test_yours_or_reference_uses_the_learners_step_only_once_it_passed(scratch_exercises, capsys):
    fw = scratch_exercises

    @fw.exercise("99.2", notebook="99_scratch", title="a step", kind="step", points=3,
                 hints=("What does one update change?", "Add one to the counter."))
    def _(fn):
        if fn(1) != 2:
            raise fw.Failed("one step from 1 should give 2")
        return "one step adds one"

    def mine(x):
        return x + 1

    def reference(x):
        return x + 1
    assert fw.EXERCISES["99.2"]["points"] == 3
    assert fw.yours_or_reference("99.2", mine, reference) is reference
    assert "exercise 99.2 has not passed (not checked yet)" in capsys.readouterr().out
    fw.check("99.2", lambda x: x, quiet=True)
    assert fw.yours_or_reference("99.2", mine, reference) is reference
    assert "exercise 99.2 has not passed (failed)" in capsys.readouterr().out
    fw.check("99.2", mine, quiet=True)
    assert fw.yours_or_reference("99.2", mine, reference) is mine
    assert capsys.readouterr().out == "[using 99.2] yours (mine: exercise 99.2 passed)\n"
    with pytest.raises(ValueError, match="kind must be one of"):
        fw.exercise("99.3", notebook="99_scratch", title="x", kind="essay", hints=("a", "b"))
