"""Checks of notebooks 07 and 08: a right answer passes, a stub is "not attempted", each typical mistake
gets its own hint, and nothing escapes as a traceback.

The wrong solutions are written the way a learner would write them (plain loops and numpy on the
arguments), not with the checks' variant functions, so each hint is tested against code that really
produces it.
"""
import numpy as np
import pytest

from toyenv.course import checks
from exercise_contract import ExerciseContract, run, stub  # noqa: F401
import toyenv
from toyenv.core.exact import kl_from_probs, kl_per_state, occupancy_from_probs, support_sets


# ------------------------------------------------------------------------------ right answers
def attrited_set(d_before, d_after, eps):
    return (d_before >= eps) & (d_after < eps)


def held_out_attrition(mdp, d_before, d_after, eps, prompts):
    rows = np.isin(mdp.prompt_of, prompts)
    mask = attrited_set(d_before, d_after, eps) & rows[:, None]
    return d_before[mask].sum() / d_before[rows].sum()


def teacher_states(mdp, teacher_prompt):
    out = []
    for s in range(mdp.num_states):
        x, tokens = mdp.prefix(s)
        out.append(mdp.state_index(int(teacher_prompt[x]), tokens))
    return np.array(out)


def kl_rows(p, q):
    out = np.zeros(len(p))
    for s in range(len(p)):
        for a in range(p.shape[1]):
            if p[s, a] > 0:
                out[s] += p[s, a] * np.log(p[s, a] / q[s, a]) if q[s, a] > 0 else np.inf
    return out


def _reach(mdp, p):
    reach = np.ones(mdp.num_states)
    for s in range(mdp.num_prompts, mdp.num_states):
        reach[s] = reach[mdp.parent[s]] * p[mdp.parent[s], mdp.last_token[s]]
    return reach


def sequence_kl(mdp, p, q):
    total = 0.0
    reach = _reach(mdp, p)
    per_state = kl_per_state(p, q)
    for s in range(mdp.num_states):
        total += mdp.prompt_weights[mdp.prompt_of[s]] * reach[s] * per_state[s]
    return total


RIGHT = {"07.1": held_out_attrition, "07.2": 0.25, "08.1": teacher_states, "08.2": kl_rows,
         "08.3": ("forward", 0.5), "08.4": sequence_kl}


def delegate_held_out(mdp, d_before, d_after, eps, prompts):
    rows = np.isin(mdp.prompt_of, prompts)
    mask = support_sets(d_before, d_after, eps)["attrited"] & rows[:, None]
    return d_before[mask].sum() / d_before[rows].sum()


DELEGATE = {"07.1": delegate_held_out,
            "08.1": lambda mdp, teacher_prompt: toyenv.state_map(mdp, teacher_prompt),
            "08.2": lambda p, q: kl_per_state(p, q),
            "08.4": lambda mdp, p, q: kl_from_probs(mdp, p, q)}


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


# ------------------------------------------------------------------------------ every check
def test_registered_for_the_right_notebooks():
    assert checks.exercises_of("07_support_attrition") == ["07.1", "07.2"]
    assert checks.exercises_of("08_distillation_consolidation") == ["08.1", "08.2", "08.3", "08.4"]
    assert [checks.EXERCISES[i]["kind"] for i in ("07.1", "07.2", "08.3")] == ["function", "experiment", "predict"]


def test_right_answers_in_other_types_pass():
    import torch
    assert run("07.1", lambda *args: float(held_out_attrition(*args))).passed
    assert run("08.1", lambda mdp, tp: list(teacher_states(mdp, tp))).passed
    assert run("08.2", lambda p, q: torch.as_tensor(kl_rows(p, q))).passed
    assert run("08.4", lambda mdp, p, q: np.array(sequence_kl(mdp, p, q))).passed


# ------------------------------------------------------------------------------ 07.1 hints
def _rate(kind):
    def f(mdp, b, a, eps, prompts):
        rows = np.isin(mdp.prompt_of, prompts)
        R = rows[:, None] & np.ones_like(b, dtype=bool)
        att = (b >= eps) & (a < eps)
        if kind == "mass":
            return b[att & R].sum()
        if kind == "whole":
            return b[att].sum() / b.sum()
        if kind == "after":
            return a[att & R].sum() / b[R].sum()
        if kind == "net":
            return (b - a)[att & R].sum() / b[R].sum()
        if kind == "count":
            return int((att & R).sum())
        if kind == "count-share":
            return (att & R).sum() / ((b >= eps) & R).sum()
        if kind == "drop":
            return np.clip(b - a, 0, None)[R].sum() / b[R].sum()
        if kind == "support":
            return b[att & R].sum() / b[(b >= eps) & R].sum()
        if kind == "strict":
            return b[(b > eps) & (a <= eps) & R].sum() / b[R].sum()
        if kind == "states":
            S = np.zeros_like(b, dtype=bool)
            S[list(prompts)] = True
            return b[att & S].sum() / b[S].sum()
        if kind == "big":
            return 1.7
    return f


@pytest.mark.parametrize("kind, hint", [
    ("mass", "you returned the attrited mass itself"),
    ("whole", "you measured the whole world"),
    ("after", "you summed d_after over the attrited pairs"),
    ("net", "you subtracted what remains"),
    ("count", "you counted attrited pairs"),
    ("count-share", "share of support PAIRS"),
    ("drop", "every occupancy decrease"),
    ("support", "occupancy INSIDE E_eps before"),
    ("strict", "the support is d >= eps (Eq. 5)"),
    ("states", "prompts are prompt indices, not state indices"),
    ("big", "A rate lies between 0 and 1"),
])
def test_held_out_attrition_hints(kind, hint):
    res = run("07.1", _rate(kind))
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 08.1 hints
def _map(kind):
    def f(mdp, tp):
        tp = np.asarray(tp)
        out = []
        for s in range(mdp.num_states):
            x, tokens = mdp.prefix(s)
            if kind == "identity":
                out.append(s)
            elif kind == "roots":
                out.append(mdp.state_index(int(tp[x]), ()))
            elif kind == "shift":
                out.append(s + int(tp[x]) - x)
            elif kind == "prompts":                 # the teacher prompt's index = its root state
                out.append(int(tp[x]))
        return np.array(out)
    return f


@pytest.mark.parametrize("kind, hint", [
    ("identity", "you returned every student state itself"),
    ("roots", "dropped the prefix"),
    ("prompts", "its root state"),
    ("shift", "right only at the roots"),
])
def test_teacher_states_hints(kind, hint):
    res = run("08.1", _map(kind))
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 08.2 hints
def _kl(kind):
    def f(p, q):
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "naive":
                return (p * np.log(p / q)).sum(1)
            if kind == "swapped":
                return kl_rows(q, p)
            if kind == "log2":
                return np.nansum(np.where(p > 0, p * np.log2(p / q), 0.0), axis=1)
            if kind == "unweighted":
                return np.where(p > 0, np.log(p / q), 0.0).sum(1)
            if kind == "cross-entropy":
                return -np.where(p > 0, p * np.log(q), 0.0).sum(1)
            if kind == "total":
                return kl_rows(p, q).sum()
            if kind == "symmetric":
                return kl_rows(p, q) + kl_rows(q, p)
            if kind == "flipped":
                return np.where(p > 0, p * np.log(q / p), 0.0).sum(1)
    return f


@pytest.mark.parametrize("kind, hint", [
    ("naive", "0 log 0 = 0"),
    ("swapped", "you computed KL(q || p)"),
    ("log2", "log base 2"),
    ("unweighted", "without weighting by p(a)"),
    ("cross-entropy", "cross-entropy"),
    ("total", "not the sum over states"),
    ("symmetric", "Jeffreys"),
    ("flipped", "upside down"),
])
def test_kl_rows_hints(kind, hint):
    res = run("08.2", _kl(kind))
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 08.4 hints
def _seq(kind):
    def f(mdp, p, q):
        reach = _reach(mdp, q if kind == "reach-q" else p)
        D = mdp.prompt_weights[mdp.prompt_of]
        per = kl_per_state(p, q)
        if kind == "reach-q":
            return float((D * reach * per).sum())
        if kind == "no-D":
            return float((reach * per).sum())
        if kind == "uniform":
            return float((reach * per).sum() / mdp.num_prompts)
        if kind == "no-reach":
            return float((D * per).sum())
        if kind == "occupancy":
            return float((occupancy_from_probs(mdp, p).s * per).sum())
        if kind == "per-prompt":
            return np.bincount(mdp.prompt_of, weights=reach * per, minlength=mdp.num_prompts)
        if kind == "roots":
            return float((D * per)[: mdp.num_prompts].sum())
        if kind == "double-D":
            return float((D * D * reach * per).sum())
        if kind == "plain":
            return float(per.sum())
    return f


@pytest.mark.parametrize("kind, hint", [
    ("reach-q", "the reach of the FIRST argument p"),
    ("no-D", "you added the prompts' KLs"),
    ("uniform", "you averaged the prompts uniformly"),
    ("no-reach", "without weighting by how often p reaches it"),
    ("occupancy", "state occupancy d(s) of Eq. 3"),
    ("per-prompt", "not the per-prompt KLs"),
    ("roots", "only the first token's KL"),
    ("double-D", "D(x) twice"),
    ("plain", "plain sum of the per-state KLs"),
])
def test_sequence_kl_hints(kind, hint):
    res = run("08.4", _seq(kind))
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 07.2 experiment
@pytest.mark.parametrize("weight, hint", [
    (0.0, "too little replay"),
    (1.0, "too much replay"),
    (1.5, "must lie in [0, 1]"),
    ("0.3", "as a number between 0 and 1"),
])
def test_replay_weight_failures_say_which_way_to_move(weight, hint):
    res = run("07.2", weight)
    assert res.status == "failed" and hint in res.message, res.message


# ------------------------------------------------------------------------------ 08.3 prediction
@pytest.mark.parametrize("value, hint", [
    (("reverse", 0.5), "mode seeking"),
    (("both", 0.5), "the two divergences disagree"),
    (("neither", 0.5), "mode covering"),
    (("forward", 0.25), "each of the four"),
    (("forward", 0.0), "each of the four"),
    (("sideways", 0.5), "the first entry must be one of"),
    (("forward", 2.0), "a number in [0, 1]"),
    ("forward", "give a pair (divergence, mass)"),
])
def test_mode_prediction_explains(value, hint):
    res = run("08.3", value)
    assert res.status == "failed" and hint in res.message, res.message


def test_mode_prediction_band_is_stated():
    assert run("08.3", ("forward", 0.42)).passed and run("08.3", ("forward", 0.58)).passed
