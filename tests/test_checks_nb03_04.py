"""The checks of notebooks 03 and 04: a right answer passes, a stub is "not attempted", and each
typical mistake gets its own hint.

The wrong answers are written the way a learner would write them (loops over demonstrations,
torch or numpy on the given arrays), not with the checks' variant functions, so each hint is tested
against code that really produces it.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toyenv
from toyenv.course import checks
from exercise_contract import ExerciseContract, run, stub  # noqa: F401
from toyenv.course.checks.nb03 import _demo_cases, token_targets_variant
from toyenv.methods import token_targets
from toyenv.methods.losses import dpo_loss, sft_loss


def failed_with(id, fn, hint):
    res = run(id, fn)
    assert res.status == "failed" and hint in res.message, res.message
    return res


# ------------------------------------------------------------------------------ right answers
def sft_token_targets(mdp, demos, *, per="demo", start=0, stop=0, weigh=False, prompt=None, after=False):
    c = np.zeros((mdp.num_states, mdp.vocab_size))
    total = sum(len(t) for _, t in demos)
    for x, tokens in demos:
        w = {"demo": 1 / len(demos), "count": 1.0, "length": 1 / (len(demos) * len(tokens)),
             "tokens": 1 / total}[per]
        if weigh:
            w *= mdp.prompt_weights[x]
        for t in range(start, len(tokens) - stop):
            s = mdp.state_index(x if prompt is None else prompt, tokens[: t + 1] if after else tokens[:t])
            c[s, tokens[t]] += w
    return c


def expanded_set(occ_before, occ_after, eps):
    return (occ_after.sa >= eps) & (occ_before.sa < eps)


def dpo_loss_fn(logp_w, logp_l, ref_logp_w, ref_logp_l, beta):
    margin = beta * ((logp_w - ref_logp_w) - (logp_l - ref_logp_l))
    return -F.logsigmoid(margin).mean()


def implicit_reward(mdp, traj_probs, ref_traj_probs, beta):
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    T = mdp.terminal
    out[T] = beta * np.log(traj_probs[T] / ref_traj_probs[T])
    return out


def shared_support(occ_before, occ_after, eps):
    return (occ_before.sa >= eps) & (occ_after.sa >= eps)


def sft_step(policy, optimizer, targets, *, probs=False, reduce="sum", sign=1.0, clear=True, step=True):
    """One SFT update, written the way a learner would; the keywords make the typical mistakes."""
    log_probs = policy.log_probs()
    x = log_probs.exp() if probs else log_probs
    loss = -sign * (torch.as_tensor(targets, dtype=x.dtype) * x).sum()
    if reduce == "mean":
        loss = loss / x.numel()
    elif reduce == "per-demo":
        loss = loss / float(np.sum(targets))
    if clear:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return loss.item()


def sft_step_delegating(policy, optimizer, targets):
    loss, _ = sft_loss(policy.log_probs(), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


RIGHT = {"03.1": sft_token_targets, "03.2": sft_step, "03.3": expanded_set, "03.4": [0, 1, 2, 3, 4, 5, 6],
         "04.1": dpo_loss_fn, "04.2": shared_support, "04.3": implicit_reward, "04.4": "falls a little"}


def delegate_implicit_reward(mdp, traj_probs, ref_traj_probs, beta):
    from toyenv.course.checks.nb04 import implicit_variant
    return implicit_variant(mdp, traj_probs, ref_traj_probs, beta)


DELEGATE = {"03.1": lambda mdp, demos: token_targets(mdp, *mdp.encode(demos)),
            "03.3": lambda before, after, eps: toyenv.support_change(before, after, eps).expanded,
            "04.1": lambda lw, ll, rw, rl, beta: dpo_loss(lw, ll, rw, rl, beta=beta)[0],
            "04.3": delegate_implicit_reward,
            "04.2": lambda b, a, e: toyenv.support_sets(b.sa, a.sa, e)["shared"],
            "03.2": sft_step_delegating}


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


def test_registered_for_the_right_notebooks():
    assert checks.exercises_of("03_sft_support_expansion") == ["03.1", "03.2", "03.3", "03.4"]
    assert checks.exercises_of("04_preference_optimization") == ["04.1", "04.2", "04.3", "04.4"]
    kinds = {id: checks.EXERCISES[id]["kind"] for id in ("03.2", "03.4", "04.4")}
    assert kinds == {"03.2": "step", "03.4": "experiment", "04.4": "predict"}


def test_reference_variants_are_the_package():
    """The checks' reference answers are the package's functions."""
    for case in _demo_cases():
        mdp, demos = case.args
        np.testing.assert_allclose(token_targets_variant(mdp, demos), token_targets(mdp, *mdp.encode(demos)),
                                   atol=1e-15)
    g = torch.Generator().manual_seed(0)
    lw, ll, rw, rl = (torch.randn(7, generator=g, dtype=torch.float64) for _ in range(4))
    from toyenv.course.checks.nb04 import dpo_variant
    from toyenv.methods.losses import dpo_loss
    assert dpo_variant(lw, ll, rw, rl, 0.3) == pytest.approx(float(dpo_loss(lw, ll, rw, rl, beta=0.3)[0]), abs=1e-14)


def test_other_answer_types_pass():
    assert run("03.1", lambda mdp, demos: torch.as_tensor(sft_token_targets(mdp, demos))).passed
    assert run("03.3", lambda b, a, e: ((a.sa >= e) & (b.sa < e)).astype(int)).passed
    assert run("04.1", lambda *a: float(dpo_loss_fn(*a))).passed
    assert run("04.1", lambda lw, ll, rw, rl, beta: F.softplus(-beta * ((lw - rw) - (ll - rl))).mean()).passed

    def where_style(mdp, traj, ref, beta):                    # np.where evaluates the log everywhere
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(mdp.terminal, beta * np.log(traj / ref), 0.0)
    assert run("04.3", where_style).passed


# ------------------------------------------------------------------------------ 03.1 hints
def _tt(**kw):
    return lambda mdp, demos: sft_token_targets(mdp, demos, **kw)


@pytest.mark.parametrize("wrong, hint", [
    (_tt(per="count"), "you did not divide by the number of demonstrations N"),
    (_tt(per="length"), "the occupancy weighting of Eq. 2"),
    (_tt(per="tokens"), "you divided by the total number of tokens"),
    (_tt(stop=1), "you skipped the last token of each demonstration"),
    (_tt(start=1), "you skipped the first token"),
    (_tt(weigh=True), "you multiplied by the prompt weight D(x)"),
    (_tt(prompt=0), "you used the states of prompt 0"),
])
def test_token_target_hints(wrong, hint):
    res = failed_with("03.1", wrong, hint)
    assert "; and " not in res.message                # a single mistake is named alone


def test_token_targets_only_last_token():
    def last_only(mdp, demos):
        c = np.zeros((mdp.num_states, mdp.vocab_size))
        s, a = mdp.encode(demos)
        np.add.at(c, (s, a), 1 / len(demos))
        return c
    failed_with("03.1", last_only, "you counted only the last token")


def test_token_targets_two_mistakes_are_both_named():
    res = failed_with("03.1", _tt(per="count", stop=1), "divide by the number of demonstrations")
    assert "skipped the last token" in res.message and "; and " in res.message


def test_token_targets_state_after_the_token_gets_the_lookup_hint():
    res = failed_with("03.1", _tt(after=True), "raised ValueError")
    assert "mdp.state_index(x, tokens[:t])" in res.message


def test_token_targets_unknown_mistake_reports_the_sum():
    def extra(mdp, demos):
        c = sft_token_targets(mdp, demos)
        c[0, 0] += 0.5
        return c
    res = failed_with("03.1", extra, "the mean demonstration length")
    assert "sum to" in res.message and "token 'a'" in res.message


# ------------------------------------------------------------------------------ 03.3 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda b, a, e: a.sa >= e, "you returned E_eps(after)"),
    (lambda b, a, e: (b.sa >= e) & (a.sa < e), "you returned the attrited set (Eq. 8)"),
    (lambda b, a, e: (b.sa >= e) != (a.sa >= e), "expanded and attrited together"),
    (lambda b, a, e: (b.sa >= e) & (a.sa >= e), "the shared support C_eps (Eq. 7)"),
    (lambda b, a, e: b.sa < e, "without asking that they are in E_eps(after)"),
    (lambda b, a, e: (a.sa > e) & (b.sa < e), "use d_after >= eps, not >"),
    (lambda b, a, e: (a.sa >= e) & (b.sa <= e), "use d_before < eps, not <="),
    (lambda b, a, e: (a.sa > e) & (b.sa <= e), "both comparisons are off at eps"),
    (lambda b, a, e: a.sa - b.sa >= e, "you thresholded the change"),
    (lambda b, a, e: (a.probs >= e) & (b.probs < e), "the action availability alone"),
    (lambda b, a, e: np.repeat(((a.s >= e) & (b.s < e))[:, None], a.sa.shape[1], 1), "state occupancies d(s)"),
    (lambda b, a, e: int(((a.sa >= e) & (b.sa < e)).sum()), "not its size"),
])
def test_expanded_set_hints(wrong, hint):
    failed_with("03.3", wrong, hint)


def test_expanded_set_unknown_mistake_names_the_pair_and_occupancies():
    def off_by_one_pair(b, a, e):
        m = (a.sa >= e) & (b.sa < e)
        m[0, 0] = ~m[0, 0]
        return m
    res = failed_with("03.3", off_by_one_pair, "differs at 1 of")
    assert "d_before = " in res.message and "d_after = " in res.message


# ------------------------------------------------------------------------------ 04.1 hints
def _dpo(margin="right", loss="nll", reduce="mean"):
    def f(lw, ll, rw, rl, beta):
        m = {"right": beta * ((lw - rw) - (ll - rl)), "no-ref": beta * (lw - ll),
             "flipped": beta * ((ll - rl) - (lw - rw)), "no-beta": (lw - rw) - (ll - rl),
             "over-beta": ((lw - rw) - (ll - rl)) / beta, "plus-ref": beta * ((lw + rw) - (ll + rl)),
             "ratio-flipped": beta * ((rw - lw) - (rl - ll))}[margin]
        per = {"nll": -F.logsigmoid(m), "no-minus": F.logsigmoid(m), "prob": torch.sigmoid(m),
               "one-minus": 1 - torch.sigmoid(m)}[loss]
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduce]
    return f


@pytest.mark.parametrize("wrong, hint", [
    (_dpo(margin="no-ref"), "you left out the reference"),
    (_dpo(margin="flipped"), "your margin has the wrong sign"),
    (_dpo(margin="ratio-flipped"), "your margin has the wrong sign"),
    (_dpo(margin="no-beta"), "you left out beta"),
    (_dpo(margin="over-beta"), "you divided by beta"),
    (_dpo(margin="plus-ref"), "you added the reference log-probs"),
    (_dpo(loss="no-minus"), "DPO minimises its negative"),
    (_dpo(loss="prob"), "you used sigmoid(margin) itself"),
    (_dpo(loss="one-minus"), "you used 1 - sigmoid(margin)"),
    (_dpo(reduce="sum"), "you summed over the pairs"),
    (_dpo(reduce="none"), "return one number, the mean over pairs"),
])
def test_dpo_hints(wrong, hint):
    res = failed_with("04.1", wrong, hint)
    assert "; and " not in res.message


def test_dpo_two_mistakes_are_both_named():
    res = failed_with("04.1", _dpo(margin="no-beta", reduce="sum"), "you left out beta")
    assert "you summed over the pairs" in res.message


def test_dpo_naive_log_sigmoid_overflow_is_explained():
    res = failed_with("04.1", lambda lw, ll, rw, rl, beta: -torch.log(torch.sigmoid(beta * ((lw - rw) - (ll - rl)))).mean(),
                      "overflows")
    assert "logsigmoid" in res.message and "+800 and -800" in res.message
    # the naive formula is right on ordinary margins: only the large-margin case fails
    assert "B = 6" not in res.message


def test_dpo_loss_at_the_reference_is_log2_in_the_check_case():
    from toyenv.course.checks.nb04 import _dpo_cases, dpo_variant
    lw, ll, rw, rl, beta = _dpo_cases()[1].args
    assert dpo_variant(lw.numpy(), ll.numpy(), rw.numpy(), rl.numpy(), beta) == pytest.approx(math.log(2), abs=1e-15)


# ------------------------------------------------------------------------------ 04.3 hints
def _ir(kind):
    def f(mdp, traj, ref, beta):
        out = np.zeros((mdp.num_states, mdp.vocab_size))
        T = mdp.terminal
        t, r = traj[T], ref[T]
        out[T] = {"inverted": beta * np.log(r / t), "no-beta": np.log(t / r), "over-beta": np.log(t / r) / beta,
                  "difference": beta * (t - r), "log10": beta * np.log10(t / r), "log2": beta * np.log2(t / r),
                  "weighted": beta * np.log(t / r) * mdp.prompt_weights[mdp.prompt_of[np.nonzero(T)[0]]],
                  "ratio": beta * t / r}[kind]
        return out
    return f


@pytest.mark.parametrize("kind, hint", [
    ("inverted", "your ratio is upside down"),
    ("no-beta", "you left out beta"),
    ("over-beta", "you divided by beta"),
    ("difference", "beta * (pi - pi_ref)"),
    ("log10", "you used log10"),
    ("log2", "you used log2"),
    ("weighted", "you multiplied by D(x)"),
    ("ratio", "take the logarithm of the ratio"),
])
def test_implicit_reward_hints(kind, hint):
    failed_with("04.3", _ir(kind), hint)


def test_implicit_reward_nan_off_the_terminal_pairs_is_explained():
    def everywhere(mdp, traj, ref, beta):
        with np.errstate(divide="ignore", invalid="ignore"):
            return beta * np.log(traj / ref)
    res = failed_with("04.3", everywhere, "compute the log only where mdp.terminal")
    assert "pairs that end no trajectory" in res.message


def test_implicit_reward_one_dimensional_answer_gets_the_shape():
    res = failed_with("04.3", lambda mdp, t, r, b: b * np.log(t[mdp.terminal] / r[mdp.terminal]), "has shape (320,)")
    assert "(104, 4)" in res.message


def test_checks_do_not_change_the_learners_inputs_between_cases():
    def writes(mdp, traj, ref, beta):
        out = implicit_reward(mdp, traj, ref, beta)
        traj[:] = 0.0
        return out
    assert run("04.3", writes).passed
    assert isinstance(toyenv.make("many-paths"), toyenv.TokenMDP)


# ------------------------------------------------------------------------------ 04.2 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda b, a, e: (b.sa >= e) | (a.sa >= e), "you returned the union"),
    (lambda b, a, e: a.sa >= e, "you returned E_eps(after)"),
    (lambda b, a, e: b.sa >= e, "you returned E_eps(before)"),
    (lambda b, a, e: (a.sa >= e) & (b.sa < e), "you returned the expanded set (Eq. 6)"),
    (lambda b, a, e: (b.sa >= e) & (a.sa < e), "you returned the attrited set (Eq. 8)"),
    (lambda b, a, e: (b.sa > e) & (a.sa > e), "use >= eps, not >"),
    (lambda b, a, e: (b.probs >= e) & (a.probs >= e), "you thresholded pi(a|s)"),
    (lambda b, a, e: np.broadcast_to(((b.s >= e) & (a.s >= e))[:, None], a.sa.shape), "you compared state occupancies"),
    (lambda b, a, e: np.abs(a.sa - b.sa) < e, "not how much it moved"),
    (lambda b, a, e: int(((b.sa >= e) & (a.sa >= e)).sum()), "not its size"),
])
def test_shared_support_hints(wrong, hint):
    res = run("04.2", wrong)
    assert res.status == "failed" and hint in res.message, res.message


def test_shared_support_package_version_is_not_an_answer():
    import toyenv
    # calling the package's own sets is not an answer: the check switches them off (own work only)
    for delegate in (lambda b, a, e: toyenv.support_sets(b.sa, a.sa, e)["shared"],
                     lambda b, a, e: toyenv.effective_support(b, e) & toyenv.effective_support(a, e)):
        res = run("04.2", delegate)
        assert not res.passed and "asks for your own code" in res.message


# ------------------------------------------------------------------------------ 03.2 (step) hints
@pytest.mark.parametrize("kw, hint", [
    (dict(clear=False), "did not clear the gradients"),
    (dict(sign=-1.0), "your update goes the wrong way"),
    (dict(probs=True), "you used pi(a|s) instead of log pi(a|s)"),
    (dict(reduce="mean"), "you averaged over every (state, token) entry"),
    (dict(reduce="per-demo"), "you divided by the sum of the targets"),
    (dict(step=False), "your step did not change the parameters"),
])
def test_sft_step_hints(kw, hint):
    failed_with("03.2", lambda p, o, t: sft_step(p, o, t, **kw), hint)


def test_sft_step_that_returns_a_tensor_passes_and_one_that_forgets_the_loss_is_told():
    def tensor_loss(policy, optimizer, targets):
        sft_step(policy, optimizer, targets)
        return torch.tensor(1.0)
    assert run("03.2", tensor_loss).passed
    failed_with("03.2", lambda p, o, t: [sft_step(p, o, t)] * 2, "as a single number")


def test_a_step_exercise_gives_the_learner_its_own_policy_and_optimizer():
    """The check passes the policy and optimizer through uncopied (the step must change them) and
    gives them back their own classes afterwards; the learner's inputs are not shared between cases."""
    from toyenv.course.checks import steps
    seen = []

    def spy(policy, optimizer, targets):
        seen.append((policy, optimizer))
        assert copy.deepcopy(policy) is policy                  # a Case cannot copy them away
        return sft_step(policy, optimizer, targets)
    assert run("03.2", spy).passed
    assert len({id(p) for p, _ in seen}) == 4                  # a fresh policy per case ...
    assert len(seen) == 1 + 3 + 1 + 2                          # ... one call per update
    for p, o in seen:
        assert type(p) is toyenv.TabularPolicy and type(o) in (torch.optim.Adam, torch.optim.SGD)
        assert type(p) not in steps._SHARED.values()


# ------------------------------------------------------------------------------ 03.4 (experiment)
@pytest.mark.parametrize("choice, says", [
    ([0, 1, 2, 3], "more than 0.1 of the base's occupancy left the support"),
    ([0, 1, 2, 4, 5, 6], "the hidden answer of q3 did not expand: none of your demonstrations shows it"),
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "Use fewer replay sets, or repeat the correct answers"),
    ([4, 5, 6], "the hidden answer of q0, q1, q2, q3 did not expand"),
])
def test_demo_choice_explains_what_went_wrong(choice, says):
    failed_with("03.4", choice, says)


@pytest.mark.parametrize("choice", [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6, 7], (3, 2, 1, 0, 9, 8, 7),
                                    [0, 1, 2, 3] * 2 + [4, 5, 6, 7, 8, 9]])
def test_demo_choices_that_pass(choice):
    res = run("03.4", choice)
    assert res.passed and "every hidden answer entered E_eps" in res.message


@pytest.mark.parametrize("bad, says", [([], "non-empty list"), ([0, 10], "not a candidate index"),
                                       ([0, -1], "not a candidate index"), ([True, 1], "not a candidate index"),
                                       ([0.5], "not a candidate index"), ("0123", "non-empty list")])
def test_demo_choice_validates_the_indices(bad, says):
    failed_with("03.4", bad, says)


# ------------------------------------------------------------------------------ 04.4 (predict)
@pytest.mark.parametrize("wrong, says", [
    ("falls like pi*", "You expected beta to hold DPO near the reference as it holds pi*"),
    ("rises", "The KL does fall with beta, a little"),
])
def test_beta_prediction_explains_each_wrong_option(wrong, says):
    res = failed_with("04.4", wrong, says)
    assert "sigma(m) - 1 < 0" in res.message and "a factor 65" in res.message


def test_beta_prediction_accepts_spacing_and_names_the_options():
    assert run("04.4", "  Falls A Little ").passed
    assert run("04.4", "falls like π*").status == "failed"
    failed_with("04.4", "it stops", "'falls like pi*', 'falls a little', 'rises'")
