"""The exercise checks of notebooks 05 and 06: a right answer passes, a stub is "not attempted",
each typical mistake gets its own hint, and the notebooks' solutions pass while their learner
editions are not attempted.

The wrong solutions are written the way a learner would write them (plain NumPy), not with the
checks' variant functions, so each hint is tested against code that really produces it.
"""

import numpy as np
import torch
import pytest

import toyenv
from toyenv.course import checks
from toyenv.course.checks import nb05, nb06
from toyenv.methods.losses import group_advantages
from exercise_contract import ExerciseContract, run, stub  # noqa: F401

STEMS = {"05": "05_onpolicy_rl_reshaping", "06": "06_guided_rl_and_hybrids"}


# ------------------------------------------------------------------------------ right answers
def grpo_advantages(rewards):
    r = np.asarray(rewards, dtype=float)
    mean, std = r.mean(1, keepdims=True), r.std(1, keepdims=True)
    return np.where(std > 0, (r - mean) / np.where(std > 0, std, 1.0), 0.0)


def grpo_advantages_eps(rewards):
    """GRPO as the papers write it, with a small constant in the denominator: also right."""
    r = np.asarray(rewards, dtype=float)
    return (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-8)


def kl_optimal_success(p, beta):
    w = p * np.exp(1.0 / beta)
    return w / (w + 1.0 - p)


def kl_optimal_success_stable(p, beta):
    """The same number through the logistic function: also right."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p) + 1.0 / beta
    return 1.0 / (1.0 + np.exp(-logit))


def pass_at_k_from_success(success, weights, ks):
    return np.array([np.sum(weights * (1 - (1 - success) ** k)) for k in ks])


def _package_pass_at_k(success, weights, ks):
    from toyenv.core.exact import pass_at_k_from_success
    return pass_at_k_from_success(success, weights, ks)


def process_advantages(mdp, V, prompt_index, tokens):
    out = []
    for t in range(len(tokens)):
        before = V[mdp.state_index(prompt_index, tokens[:t])]
        after = V[mdp.state_index(prompt_index, tokens[:t + 1])] if t + 1 < len(tokens) else \
            mdp.reward(prompt_index, tokens)
        out.append(after - before)
    return np.array(out)


def informative_fraction(p_bare, p_hinted, hint_prob, group_size):
    p = (1 - hint_prob) * p_bare + hint_prob * p_hinted
    return 1 - p ** group_size - (1 - p) ** group_size


def grpo_step(policy, optimizer, rollouts, rewards, group_size, *, mask="mask", tokens="sum", batch="mean",
              sign=1.0, clear=True, step=True, groups="rows", adv=grpo_advantages):
    """One GRPO update (beta = 0), written the way a learner would; the keywords make the mistakes."""
    table = np.reshape(rewards, (-1, group_size) if groups == "rows" else (group_size, -1))
    a = torch.as_tensor(np.asarray(adv(table)).reshape(-1))
    log_probs = policy.log_probs()
    if mask == "raw":
        token_lp = log_probs[rollouts.st, rollouts.ac]
    else:
        token_lp = log_probs[np.maximum(rollouts.st, 0), np.maximum(rollouts.ac, 0)]
        if mask == "mask":
            token_lp = token_lp * torch.as_tensor(rollouts.mask, dtype=token_lp.dtype)
    seq = token_lp.sum(1) if tokens == "sum" else token_lp.sum(1) / torch.as_tensor(rollouts.mask.sum(1))
    loss = -sign * ((a * seq).mean() if batch == "mean" else (a * seq).sum())
    if clear:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return loss.item()


def grpo_step_delegating(policy, optimizer, rollouts, rewards, group_size):
    from toyenv.methods.losses import policy_gradient_loss, token_logp
    adv, _ = group_advantages(np.reshape(rewards, (-1, group_size)))
    lp_tok = token_logp(policy.log_probs(), rollouts.st, rollouts.ac, rollouts.mask)
    loss, _ = policy_gradient_loss(lp_tok, np.repeat(adv.reshape(-1, 1), lp_tok.shape[1], 1), rollouts.mask)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


RIGHT = {"05.1": grpo_advantages, "05.2": grpo_step, "05.3": kl_optimal_success, "05.4": pass_at_k_from_success,
         "05.5": 0.25,
         "06.1": informative_fraction, "06.2": {"hint on half", "hint on half, learn_hint=True"},
         "06.3": process_advantages}


DELEGATE = {"05.1": lambda rewards: group_advantages(rewards, eps=1e-12)[0],
            "05.2": grpo_step_delegating,
            "05.3": lambda p, beta: nb05.kl_success_variant(p, beta),
            "05.4": lambda success, weights, ks: _package_pass_at_k(np.asarray(success), np.asarray(weights),
                                                                    np.asarray(ks)),
            "06.1": lambda pb, ph, q, K: toyenv.informative_group_prob((1 - q) * pb + q * ph, K),
            "06.3": lambda mdp, V, x, tokens: nb06.process_advantages_variant(mdp, V, x, tokens)}


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


def assert_hint(id, fn, hint):
    res = run(id, fn)
    assert res.status == "failed", res.line()
    assert hint in res.message, res.line()


# ------------------------------------------------------------------------------ every check
def test_registered_for_the_notebooks():
    for id in RIGHT:
        assert checks.EXERCISES[id]["notebook"] == STEMS[id[:2]]
    assert checks.exercises_of(STEMS["05"]) == ["05.1", "05.2", "05.3", "05.4", "05.5"]
    assert [checks.EXERCISES[i]["kind"] for i in ("05.2", "05.5")] == ["step", "experiment"]
    assert checks.exercises_of(STEMS["06"]) == ["06.1", "06.2", "06.3"]
    assert checks.EXERCISES["06.2"]["kind"] == "predict"


@pytest.mark.parametrize("fn", [grpo_advantages_eps, kl_optimal_success_stable])
def test_other_right_forms_pass(fn):
    id = "05.1" if fn is grpo_advantages_eps else "05.3"
    assert run(id, fn).passed


def test_torch_and_list_answers_pass():
    import torch
    assert run("05.1", lambda r: torch.as_tensor(grpo_advantages(r))).passed
    assert run("06.3", lambda *a: list(process_advantages(*a))).passed


# ------------------------------------------------------------------------------ 05.1 hints
def _adv(rewards, *, ddof=0, center="group", scale="group", nan=False):
    r = np.asarray(rewards, dtype=float)
    c = {"group": r - r.mean(1, keepdims=True), "batch": r - r.mean(), "none": r,
         "loo": r - (r.sum(1, keepdims=True) - r) / (r.shape[1] - 1)}[center]
    sd = {"group": r.std(1, ddof=ddof, keepdims=True), "batch": r.std(ddof=ddof), "none": 1.0}[scale]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = c / sd
    if not nan:
        out = np.where(np.broadcast_to(sd, r.shape) > 0, out, 0.0)
    return out


@pytest.mark.parametrize("wrong, hint", [
    (lambda r: _adv(r, ddof=1), "ddof=1"),
    (lambda r: _adv(r, scale="none"), "did not divide by the group's standard deviation"),
    (lambda r: _adv(r, center="none"), "did not subtract the group mean"),
    (lambda r: _adv(r, center="batch", scale="batch"), "mean and std of the whole batch"),
    (lambda r: _adv(r, center="loo"), "leave-one-out"),
    (lambda r: -grpo_advantages(r), "wrong sign"),
    (lambda r: _adv(r, nan=True), "0/0"),
    (lambda r: np.where(np.asarray(r).std(1, keepdims=True) > 0, grpo_advantages(r), 1.0),
     "must get advantage 0"),
])
def test_grpo_hints(wrong, hint):
    assert_hint("05.1", wrong, hint)


def test_grpo_flat_output_names_the_shape():
    res = run("05.1", lambda r: grpo_advantages(r).ravel())
    assert res.status == "failed" and "shape" in res.message


# ------------------------------------------------------------------------------ 05.3 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda p, b: p * np.exp(b) / (p * np.exp(b) + 1 - p), "you used e^beta"),
    (lambda p, b: p * np.exp(-1 / b) / (p * np.exp(-1 / b) + 1 - p), "not down-weighted"),
    (lambda p, b: p * np.exp(1 / b), "you did not normalise"),
    (lambda p, b: p * np.exp(1 / b) / (p * np.exp(1 / b) + 1), "carry mass 1 - p"),
    (lambda p, b: b * np.log(p * np.exp(1 / b) + 1 - p), "beta log Z"),
])
def test_kl_optimum_hints(wrong, hint):
    assert_hint("05.3", wrong, hint)


# ------------------------------------------------------------------------------ 05.4 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda s, w, ks: np.array([np.mean(1 - (1 - s) ** k) for k in ks]), "without the prompt weights"),
    (lambda s, w, ks: np.array([1 - (1 - np.sum(w * s)) ** k for k in ks]), "averaged the success probabilities first"),
    (lambda s, w, ks: np.array([np.sum(w * (1 - s) ** k) for k in ks]), "all k samples fail"),
    (lambda s, w, ks: np.array([np.sum(w * s ** k) for k in ks]), "all k samples are correct"),
    (lambda s, w, ks: np.array([np.sum(w * k * s) for k in ks]), "union bound"),
    (lambda s, w, ks: 1 - (1 - np.asarray(s)[:, None]) ** np.asarray(ks)[None, :], "one row per prompt"),
])
def test_pass_at_k_hints(wrong, hint):
    assert_hint("05.4", wrong, hint)


# ------------------------------------------------------------------------------ 06.3 hints
def _proc(mdp, V, x, tokens, *, last=None, flip=False, baseline=True):
    vals = [V[mdp.state_index(x, tokens[:t])] for t in range(len(tokens))]
    nxt = vals[1:] + [mdp.reward(x, tokens) if last is None else last]
    out = np.array(nxt) - (np.array(vals) if baseline else 0.0)
    return -out if flip else out


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, V, x, t: _proc(m, V, x, t, flip=True), "wrong sign"),
    (lambda m, V, x, t: _proc(m, V, x, t, last=0.0), "(you used 0)"),
    (lambda m, V, x, t: np.full(len(t), m.reward(x, t) - V[m.state_index(x, ())]), "outcome advantage"),
    (lambda m, V, x, t: _proc(m, V, x, t, baseline=False), "without the baseline"),
    (lambda m, V, x, t: m.reward(x, t) - V[m.state_index(x, ())], "telescopes"),
    (lambda m, V, x, t: _proc(m, V, x, t)[:-1], "the last token gets one too"),
])
def test_process_advantage_hints(wrong, hint):
    assert_hint("06.3", wrong, hint)


def test_process_advantage_state_after_the_token_is_a_named_exception():
    def after(mdp, V, x, tokens):        # looks up the state *after* each token: fails at the end
        return np.array([V[mdp.state_index(x, tokens[:t + 1])] for t in range(len(tokens))])
    res = run("06.3", after)
    assert res.status == "failed" and "raised" in res.message and "on hidden-path" in res.message


# ------------------------------------------------------------------------------ 06.1 hints
@pytest.mark.parametrize("wrong, hint", [
    (lambda pb, ph, q, K: 1 - (1 - ((1 - q) * pb + q * ph)) ** K, "at least one success"),
    (lambda pb, ph, q, K: (1 - q) * (1 - pb ** K - (1 - pb) ** K) + q * (1 - ph ** K - (1 - ph) ** K),
     "once per group"),
    (lambda pb, ph, q, K: 1 - ph ** K - (1 - ph) ** K, "only the hinted success probability"),
    (lambda pb, ph, q, K: ((1 - q) * pb + q * ph) ** K + (1 - (1 - q) * pb - q * ph) ** K, "zero variance"),
    (lambda pb, ph, q, K: informative_fraction(ph, pb, q, K), "swapped the weights"),
])
def test_informative_fraction_hints(wrong, hint):
    assert_hint("06.1", wrong, hint)


# ------------------------------------------------------------------------------ 06.2 prediction
@pytest.mark.parametrize("value, hint", [
    ({"hint on every rollout", "hint on half", "hint on half, learn_hint=True"}, "learns to finish the path but not to start it"),
    ({"RL alone", "hint on half", "hint on half, learn_hint=True"}, "never samples a correct answer"),
    ({"hint on half, learn_hint=True"}, "negative advantages that push down the wrong first tokens"),
    ({"hint on half"}, "adds a direct push on h"),
    (set(), "you predicted that 'hint on half' does not"),
    ({"hint on half", "half"}, "unknown run name"),
    (3, "give a set of run names"),
])
def test_hint_prediction_explains_each_run(value, hint):
    assert_hint("06.2", value, hint)


def test_hint_prediction_accepts_a_list():
    assert run("06.2", ["hint on half, learn_hint=True", "hint on half"]).passed


# ------------------------------------------------------------------------------ the notebooks


# ------------------------------------------------------------------------------ 05.2 (step) hints
def _reinforce(r):
    r = np.asarray(r, dtype=float)
    return r - r.mean(1, keepdims=True)


@pytest.mark.parametrize("kw, hint", [
    (dict(clear=False), "did not clear the gradients"),
    (dict(sign=-1.0), "your update goes the wrong way"),
    (dict(mask="raw"), "you used the rollouts' padding"),
    (dict(mask="clamp"), "you read the padding at state 0 and token 0"),
    (dict(tokens="mean"), "you averaged the log-probs over each rollout's tokens"),
    (dict(batch="sum"), "you summed over the rollouts of the batch"),
    (dict(groups="columns"), "you grouped the rewards the wrong way round"),
    (dict(adv=_reinforce), "REINFORCE with a mean baseline"),
    (dict(adv=lambda r: np.asarray(r, dtype=float)), "you used the rewards themselves as advantages"),
    (dict(adv=lambda r: _adv(r, ddof=1)), "ddof=1"),
    (dict(adv=lambda r: _adv(r, center="batch", scale="batch")), "mean and std of the whole batch"),
    (dict(adv=lambda r: _adv(r, nan=True)), "0/0"),
    (dict(step=False), "your step did not change the parameters"),
])
def test_grpo_step_hints(kw, hint):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert_hint("05.2", lambda *a: grpo_step(*a, **kw), hint)


def test_grpo_step_with_the_package_advantages_is_delegating():
    res = run("05.2", lambda *a: grpo_step(*a, adv=lambda r: group_advantages(r)[0]))
    assert res.status == "failed" and "group_advantages" in res.message


# ------------------------------------------------------------------------------ 05.5 (experiment)
@pytest.mark.parametrize("beta, says", [
    (0.0, "Increase beta"), (0.1, "Increase beta"), (0.15, "Increase beta"),
    (0.35, "Decrease beta"), (0.5, "Decrease beta"), (2, "Decrease beta"),
])
def test_beta_choice_says_which_way_to_move(beta, says):
    assert_hint("05.5", beta, says)


@pytest.mark.parametrize("beta", [0.2, 0.25, 0.3, np.float64(0.22)])
def test_beta_choices_that_pass(beta):
    res = run("05.5", beta)
    assert res.passed and "keeps the rare prompts' c c alive" in res.message


@pytest.mark.parametrize("bad, says", [(-1, "finite number >= 0"), (float("inf"), "finite number >= 0"),
                                       (True, "give the KL weight as a number"), ("0.25", "as a number"),
                                       (1e6, "holds the policy at the base")])
def test_beta_choice_validates_the_value(bad, says):
    assert_hint("05.5", bad, says)
