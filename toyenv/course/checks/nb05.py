"""Checks of notebook 05 (on-policy RL as reshaping): GRPO group advantages, the closed-form
KL-regularised success probability, and exact pass@k from per-prompt success.

Registered with :mod:`toyenv.checks` (``checks.check("05.1", fn)``); see that module for the
machinery. Each check computes the answer of every typical mistake and names the mistake whose
answer the learner's matches.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .framework import Case, Failed, _as_array, _world, compare, exercise
from .steps import compare_update, optimizer_maker

NOTEBOOK = "05_onpolicy_rl_reshaping"


# ------------------------------------------------------------------------------- 05.1
def grpo_advantages_variant(rewards, *, center: str = "group", scale: str = "group", ddof: int = 0,
                            flat: str = "zero", sign: float = 1.0) -> np.ndarray:
    """GRPO group advantages ``[G, K]`` with the choices a learner can get wrong (defaults: right).

    ``center``: "group" (r - group mean), "batch" (r - mean over all rollouts), "none", "loo"
    (leave-one-out mean, RLOO). ``scale``: "group" (divide by the group std), "batch", "none".
    ``ddof``: 0 (population std, right) or 1 (sample std). ``flat``: "zero" (a group with equal
    rewards gets advantage 0, right) or "nan" (0/0). ``sign``: -1 flips the advantages.
    """
    r = np.asarray(rewards, dtype=float)
    k = r.shape[1]
    if center == "group":
        c = r - r.mean(1, keepdims=True)
    elif center == "batch":
        c = r - r.mean()
    elif center == "loo":
        c = r - (r.sum(1, keepdims=True) - r) / (k - 1)
    else:
        c = r.copy()
    if scale == "group":
        sd = np.broadcast_to(r.std(1, ddof=ddof, keepdims=True), r.shape)
    elif scale == "batch":
        sd = np.full(r.shape, r.std(ddof=ddof))
    else:
        sd = np.ones(r.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = c / sd
    zero_sd = np.isclose(sd, 0.0, atol=1e-12)
    adv = np.where(zero_sd, 0.0 if flat == "zero" else np.nan, adv)
    return sign * adv


_ADV_HINTS = [
    ("you divided by the sample standard deviation (ddof=1); GRPO uses the group's population std, "
     "r.std() with numpy's default ddof=0", dict(ddof=1)),
    ("you subtracted the group mean but did not divide by the group's standard deviation: that is "
     "REINFORCE with a mean baseline; GRPO also scales each group by its std", dict(scale="none")),
    ("you divided by the standard deviation but did not subtract the group mean: the advantage is "
     "(r - mean) / std", dict(center="none")),
    ("you normalised with the mean and std of the whole batch; GRPO normalises inside each group "
     "(each row: the rollouts of one prompt)", dict(center="batch", scale="batch")),
    ("you used the batch mean but the group std; both statistics are per group (per row)",
     dict(center="batch")),
    ("you used the group mean but the batch std; both statistics are per group (per row)",
     dict(scale="batch")),
    ("you used a leave-one-out baseline (RLOO: r_i - mean of the others); GRPO subtracts the mean of "
     "the whole group, including r_i, and divides by the group std", dict(center="loo")),
    ("your advantages have the wrong sign: a rollout with more reward than its group's mean gets a "
     "positive advantage, (r - mean) / std", dict(sign=-1.0)),
]


def _flat_rows(r: np.ndarray) -> np.ndarray:
    return np.isclose(r.std(1), 0.0, atol=1e-12)


@exercise("05.1", notebook=NOTEBOOK, title="GRPO group advantages (zero-variance groups)",
          hints=("GRPO compares each rollout with the other rollouts of the same prompt. Which statistics of "
                 "a group (one row) do you need, and what should happen to a group whose rewards are all "
                 "equal?",
                 "For each row (one prompt's K rollouts): subtract the row's mean reward and divide by the "
                 "row's population standard deviation (ddof 0). A row whose rewards are all equal has "
                 "standard deviation 0: give all its rollouts advantage 0 instead of dividing."),
          reread="notebook 05's section on on-policy RL in one line (group advantages, §5.1)",
          forbid=("toyenv.methods.losses.group_advantages", "toyenv.course.checks.nb05.grpo_advantages_variant"),
          own="normalise the rewards of each group yourself")
def check_grpo_advantages(fn):
    cases = [
        Case("rewards [[1, 0, 0, 0], [0, 1, 1, 0]] (two mixed groups)", (np.array([[1., 0, 0, 0], [0, 1, 1, 0]]),)),
        Case("rewards [[0]*8, [1, 0, 0, 0, 0, 0, 0, 0]] (an all-wrong group and a group with one success)",
             (np.array([[0.] * 8, [1.] + [0.] * 7]),)),
        Case("rewards [[1, 1, 1], [0, 1, 0], [0, 0, 0]] (all right, mixed, all wrong)",
             (np.array([[1., 1, 1], [0, 1, 0], [0, 0, 0]]),)),
        Case("8 groups of 8 rollouts, every reward 0 (the hidden-path world under its base policy)",
             (np.zeros((8, 8)),)),
        Case("real-valued rewards [[0.2, 0.5, 0.9, 0.4], [0.3, 0.3, 0.3, 0.3]]",
             (np.array([[0.2, 0.5, 0.9, 0.4], [0.3, 0.3, 0.3, 0.3]]),)),
        Case("one group of two rollouts, rewards [[1, 0]]", (np.array([[1., 0]]),)),
    ]
    for case in cases:
        (r,) = case.args
        expected = grpo_advantages_variant(r)
        got = case.call(fn)
        arr = _as_array(got, expected, case, "your advantages")
        flat = _flat_rows(r)
        if arr.shape == expected.shape and flat.any():
            bad = arr[flat].astype(float)
            if not np.all(np.isfinite(bad)):
                raise Failed(f"your advantages contain nan or inf in a group whose rewards are all equal "
                             f"(seen on {case.name}): its std is 0, so (r - mean) / std is 0/0. Such a group "
                             "carries no learning signal: give all its members advantage 0 "
                             "(e.g. np.where(std > 0, (r - mean) / np.where(std > 0, std, 1), 0.0))")
            if np.any(np.abs(bad) > 1e-9):
                raise Failed(f"a group whose rewards are all equal must get advantage 0 for every member "
                             f"(seen on {case.name}); yours has {bad[np.abs(bad) > 1e-9][0]:.6g}")
        compare(arr, expected, case=case, what="your advantages", rtol=1e-4, atol=1e-9,
                mistakes=[(hint, grpo_advantages_variant(r, **kw)) for hint, kw in _ADV_HINTS],
                where=lambda idx: f"group {idx[0]}, rollout {idx[1]}")
    return (f"{len(cases)} reward tables: mixed groups, all-right and all-wrong groups (advantage 0), "
            "real-valued rewards and groups of 2")


# ------------------------------------------------------------------------------- 05.2
def grpo_step_variant(policy, optimizer, rollouts, rewards, group_size, *, center: str = "group",
                      scale: str = "group", ddof: int = 0, flat: str = "zero", groups: str = "rows",
                      mask: str = "mask", tokens: str = "sum", batch: str = "mean", sign: float = 1.0,
                      zero_grad: bool = True, step: bool = True) -> float:
    """One GRPO update without a KL term (beta = 0) with the choices a learner can get wrong
    (defaults: right). Advantages: :func:`grpo_advantages_variant` of the rewards grouped in
    consecutive blocks of ``group_size`` (``groups="columns"`` groups them the wrong way round).
    ``mask``: "mask" (padding left out, right), "clamp" (padding read at state 0, token 0), "raw"
    (padding indices -1 used as they are). ``tokens``: "sum" over a rollout's tokens (right) or
    "mean". ``batch``: "mean" over rollouts (right) or "sum". ``sign``: -1 ascends the loss."""
    log_probs = policy.log_probs()                                           # [S, V], with grad
    r = np.asarray(rewards, dtype=float)
    table = r.reshape(-1, group_size) if groups == "rows" else r.reshape(group_size, -1)
    adv = grpo_advantages_variant(table, center=center, scale=scale, ddof=ddof, flat=flat).reshape(-1)
    st, ac, m = np.asarray(rollouts.st), np.asarray(rollouts.ac), np.asarray(rollouts.mask)
    if mask == "raw":
        lp_tok = log_probs[torch.as_tensor(st), torch.as_tensor(ac)]
    else:
        lp_tok = log_probs[torch.as_tensor(np.maximum(st, 0)), torch.as_tensor(np.maximum(ac, 0))]
        if mask == "mask":
            lp_tok = lp_tok * torch.as_tensor(m, dtype=lp_tok.dtype)
    seq = lp_tok.sum(1)                                                      # log pi(y|x) per rollout
    if tokens == "mean":
        seq = seq / torch.as_tensor(m.sum(1), dtype=seq.dtype)
    per = torch.as_tensor(adv, dtype=seq.dtype) * seq
    loss = -sign * (per.mean() if batch == "mean" else per.sum())
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return float(loss.detach())


def reference_grpo_step(policy, optimizer, rollouts, rewards, group_size) -> float:
    """One GRPO update (beta = 0) from the package's pieces, the update ``toyenv.rl(..., beta=0)``
    makes at every step: group advantages (:func:`toyenv.methods.losses.group_advantages`), the
    policy-gradient loss on the rollouts' token log-probs (``policy_gradient_loss``), then one
    optimizer step. Returns the loss. Notebook 05 trains with it while exercise 05.2 is unsolved."""
    from toyenv.methods.losses import group_advantages, policy_gradient_loss, token_logp
    log_probs = policy.log_probs()
    adv, _ = group_advantages(np.asarray(rewards, dtype=float).reshape(-1, group_size))
    lp_tok = token_logp(log_probs, rollouts.st, rollouts.ac, rollouts.mask)
    loss, _ = policy_gradient_loss(lp_tok, np.repeat(adv.reshape(-1, 1), lp_tok.shape[1], 1), rollouts.mask)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


_STEP_HINTS = [
    ("your update did not clear the gradients: loss.backward() adds to the .grad of every parameter, so "
     "the second update also applied the first batch's gradient; call optimizer.zero_grad() before "
     "loss.backward()", dict(zero_grad=False)),
    ("your update goes the wrong way: the optimizer minimises, so the loss is minus the objective, "
     "-(1/B) sum_i A_i log pi(y_i|x_i); rollouts with a positive advantage must become more likely",
     dict(sign=-1.0)),
    ("you used the rollouts' padding: after a rollout ends, its states and tokens are -1 (an index "
     "that reads the last row), and they must not count; multiply the token log-probs by rollouts.mask",
     dict(mask="raw")),
    ("you read the padding at state 0 and token 0 (a clipped index) without masking it out; multiply the "
     "token log-probs by rollouts.mask", dict(mask="clamp")),
    ("you averaged the log-probs over each rollout's tokens (1/|y_i|, as the GRPO paper does); this "
     "course sums them, log pi(y|x) = sum_t log pi(a_t|s_t), and averages over rollouts (see the loss above)",
     dict(tokens="mean")),
    ("you summed over the rollouts of the batch; the loss is their mean, (1/B) sum_i, so that the step size "
     "does not grow with the batch", dict(batch="sum")),
    ("you grouped the rewards the wrong way round: the rollouts of one prompt are consecutive, so the "
     "groups are rewards.reshape(-1, group_size) (one row per prompt)", dict(groups="columns")),
    ("you did not divide by the group's standard deviation: that is REINFORCE with a mean baseline; "
     "GRPO's advantage is (r - group mean) / group std", dict(scale="none")),
    ("you used the rewards themselves as advantages: GRPO subtracts the group mean and divides by the "
     "group std", dict(center="none", scale="none")),
    ("you divided by the sample standard deviation (ddof=1); the course's GRPO uses the group's "
     "population std (numpy's default, ddof=0), as in exercise 05.1", dict(ddof=1)),
    ("you normalised the rewards with the mean and std of the whole batch; GRPO normalises inside each "
     "group", dict(center="batch", scale="batch")),
]


@functools.cache
def _step_cases():
    """(name, policy, optimizer maker, batches) for the 05.2 check, built once."""
    from toyenv.core.policies import TabularPolicy
    from toyenv.methods.rl import rollout_batch
    mp = _world("many-paths")
    shared = mp.base_policy()                                  # one row per token prefix, shared by prompts
    per_state = TabularPolicy.from_probs(mp, shared.probs())
    hp = _world("hidden-path")
    hb = hp.base_policy()

    def batch(mdp, policy, seed, n_prompts=8, group_size=8, rewards=None):
        rng = np.random.default_rng(seed)
        ro = rollout_batch(mdp, policy.probs(), rng, n_prompts=n_prompts, group_size=group_size)
        r = mdp.rewards[ro.s, ro.a] if rewards is None else rewards(rng, len(ro.s))
        return (ro, np.asarray(r, dtype=float), group_size)

    uniform = lambda rng, n: np.round(rng.uniform(0, 1, n), 3)          # noqa: E731
    return [
        ("many-paths base policy (rows shared by prompts), Adam lr 0.1, 8 prompts x 8 rollouts (seed 0)",
         shared, optimizer_maker("adam", 0.1), (batch(mp, shared, 0),)),
        ("many-paths base policy, Adam lr 0.1, two updates in a row on two batches (seeds 1 and 2)",
         shared, optimizer_maker("adam", 0.1), (batch(mp, shared, 1), batch(mp, shared, 2))),
        ("many-paths, one row per state, SGD lr 1, 4 prompts x 8 rollouts with rewards drawn from [0, 1] (seed 3)",
         per_state, optimizer_maker("sgd", 1.0), (batch(mp, per_state, 3, n_prompts=4, rewards=uniform),)),
        ("hidden-path base policy, SGD lr 1, 8 prompts x 8 rollouts, every reward 0 (no group has variance)",
         hb, optimizer_maker("sgd", 1.0), (batch(hp, hb, 4),)),
    ]


@exercise("05.2", notebook=NOTEBOOK, title="One GRPO update on a sampled batch (advantages, loss, step)",
          kind="step", points=3,                    # heavier than 03.2: grouping, padding and advantages too
          hints=("An update has three parts: a number per rollout saying how much better it did than its "
                 "group, a loss whose gradient raises the log-probability of the better rollouts, and the "
                 "optimizer's move. Which token log-probabilities belong to a rollout, and which entries of "
                 "its path are padding?",
                 "Group the rewards in consecutive blocks of group_size and turn them into GRPO advantages "
                 "(your function of exercise 05.1). Read log pi at every step of every rollout from "
                 "policy.log_probs() with the path arrays rollouts.st and rollouts.ac, zero the padding "
                 "with rollouts.mask and add along each rollout: that is log pi(y_i|x_i). The loss is minus "
                 "the mean over rollouts of advantage times log pi(y_i|x_i). Then clear the old gradients, "
                 "back-propagate, let the optimizer step, and give back the loss as a float."),
          reread="notebook 05's sections on on-policy RL in one line and on exercise 05.1 (group advantages)",
          forbid=("toyenv.methods.losses.policy_gradient_loss", "toyenv.methods.losses.group_advantages",
                  "toyenv.methods.losses.token_logp", "toyenv.methods.rl.outcome_advantages",
                  "toyenv.methods.rl.rl_batch", "toyenv.methods.rl.sampled_rl_objective",
                  "toyenv.methods.loop.train", "toyenv.methods.rl.rl",
                  "toyenv.course.checks.nb05.reference_grpo_step", "toyenv.course.checks.nb05.grpo_step_variant",
                  "toyenv.course.checks.nb05.grpo_advantages_variant"),
          own="compute the advantages (your grpo_advantages), the loss and the update yourself")
def check_grpo_step(fn):
    cases = _step_cases()
    for name, policy, make_opt, batches in cases:
        compare_update(fn, name, policy, make_opt, batches, reference_grpo_step,
                       {hint: functools.partial(grpo_step_variant, **kw) for hint, kw in _STEP_HINTS},
                       rtol=1e-5, atol=1e-7, errors={IndexError: "rollouts.st and rollouts.ac are [B, T] "
                                                     "arrays, with -1 after a rollout has ended"},
                       not_finite="your update made some parameters nan or inf: in a group whose rewards "
                                  "are all equal the std is 0, so (r - mean) / std is 0/0; such a group "
                                  "gets advantage 0 (exercise 05.1)")
    return (f"{len(cases)} cases: shared and per-state rows, Adam and SGD, two updates in a row, real-valued "
            "rewards, padded rollouts and a batch without any reward")


# ------------------------------------------------------------------------------- 05.3
def kl_success_variant(p, beta, *, exponent: str = "1/beta", normalise: str = "right"):
    """Success probability of the KL-regularised optimum for a 0/1 prompt (defaults: right):
    p* = p e^{1/beta} / (p e^{1/beta} + 1 - p). ``exponent``: "1/beta", "beta", "-1/beta".
    ``normalise``: "right", "none" (p e^{1/beta}), "plus-one" (denominator p e^{1/beta} + 1),
    "logz" (returns beta log Z, the optimal objective)."""
    p = np.asarray(p, dtype=float)
    e = {"1/beta": 1.0 / beta, "beta": beta, "-1/beta": -1.0 / beta}[exponent]
    w = p * np.exp(e)
    if normalise == "none":
        return w
    if normalise == "plus-one":
        return w / (w + 1.0)
    if normalise == "logz":
        return beta * np.log(w + 1.0 - p)
    return w / (w + 1.0 - p)


_KL_HINTS = [
    ("the exponent is r / beta, i.e. e^(1/beta) for the correct answers (reward 1): you used e^beta",
     dict(exponent="beta")),
    ("the exponent is +r / beta: correct answers (reward 1) are up-weighted by e^(1/beta), not "
     "down-weighted by e^(-1/beta)", dict(exponent="-1/beta")),
    ("you did not normalise: pi* = pi_ref e^(r/beta) / Z, and Z = p e^(1/beta) + (1 - p) (the "
     "incorrect answers keep their mass 1 - p, times e^0 = 1)", dict(normalise="none")),
    ("the normaliser is Z = p e^(1/beta) + (1 - p): the incorrect answers carry mass 1 - p under the "
     "reference, not 1", dict(normalise="plus-one")),
    ("you returned beta log Z, the optimal value of the objective E[r] - beta KL; the exercise asks "
     "for the success probability p* = p e^(1/beta) / Z", dict(normalise="logz")),
]


@exercise("05.3", notebook=NOTEBOOK, title="Success at the KL-regularised optimum (closed form)",
          hints=("At the KL-regularised optimum, pi* is proportional to pi_ref times e^(r/beta). For one "
                 "prompt, what total mass do the correct answers get, and what do the wrong ones keep?",
                 "Correct answers (r = 1) carry their reference mass p multiplied by e^(1/beta); wrong ones "
                 "(r = 0) keep 1 - p. The success probability is the correct mass divided by the normaliser "
                 "Z, the sum of both masses. Write it so that it works entry by entry for an array of p."),
          reread="notebook 05's section on where the KL penalty stops RL (the closed-form optimum)",
          forbid=("toyenv.course.checks.nb05.kl_success_variant",),
          own="write the closed form yourself")
def check_kl_optimal_success(fn):
    cases = [
        Case("p = 4e-6, beta = 0.1 (a hidden-path prompt)", (4e-6, 0.1)),
        Case("p = 0.5, beta = 1", (0.5, 1.0)),
        Case("p = 4e-6, beta = 0.05", (4e-6, 0.05)),
        Case("p = array([0.27573, 0.0819]), beta = 0.5 (the two kinds of many-paths prompts)",
             (np.array([0.27573, 0.0819]), 0.5)),
        Case("p = array([0.0, 1.0, 0.3]), beta = 0.2 (never right, always right, in between)",
             (np.array([0.0, 1.0, 0.3]), 0.2)),
        Case("p = 0.01, beta = 0.02 (a small beta: e^(1/beta) = e^50)", (0.01, 0.02)),
    ]
    for case in cases:
        p, beta = case.args
        expected = kl_success_variant(p, beta)
        got = case.call(fn)
        compare(got, expected, case=case, what="your p*", rtol=1e-9, atol=1e-15,
                mistakes=[(hint, kl_success_variant(p, beta, **kw)) for hint, kw in _KL_HINTS],
                diagnose=lambda a: ("Some of your values exceed 1: a probability needs the normaliser Z."
                                    if np.any(a > 1 + 1e-12) else None))
    return (f"{len(cases)} cases: tiny and moderate p, p = 0 and p = 1, arrays of prompts, beta from "
            "0.02 to 1")


# ------------------------------------------------------------------------------- 05.4
def pass_at_k_variant(success, weights, ks, *, how: str = "right"):
    """Exact pass@k ``[len(ks)]`` from per-prompt success ``[P]`` and D(x) ``[P]`` (default: right).

    ``how``: "right" sum_x D(x) [1 - (1 - p_x)^k]; "mean" (no D(x)); "pool" (1 - (1 - sum D p)^k);
    "fail" (sum D (1-p)^k); "all" (sum D p^k); "linear" (sum D k p); "per-prompt" ([P, K]).
    """
    p = np.asarray(success, float)[:, None]
    w = np.asarray(weights, float)
    k = np.asarray(ks, float)[None, :]
    if how == "mean":
        return (1 - (1 - p) ** k).mean(0)
    if how == "pool":
        return 1 - (1 - w @ p[:, 0]) ** k[0]
    if how == "fail":
        return w @ (1 - p) ** k
    if how == "all":
        return w @ p ** k
    if how == "linear":
        return w @ (k * p)
    if how == "per-prompt":
        return 1 - (1 - p) ** k
    return w @ (1 - (1 - p) ** k)


_PK_HINTS = [
    ("you averaged over prompts without the prompt weights D(x); pass@k = sum_x D(x) [1 - (1 - p_x)^k]",
     "mean"),
    ("you averaged the success probabilities first and then computed 1 - (1 - p)^k; pass@k must be "
     "computed per prompt and then averaged (1 - (1 - p)^k is not linear in p: a prompt with p = 0 "
     "stays unsolved at every k)", "pool"),
    ("you returned the probability that all k samples fail, (1 - p)^k; pass@k is one minus it", "fail"),
    ("you returned the probability that all k samples are correct, p^k; pass@k is the probability "
     "that at least one is: 1 - (1 - p)^k", "all"),
    ("you used k p (a union bound, which can exceed 1); the exact value is 1 - (1 - p)^k", "linear"),
    ("you returned one row per prompt; average the prompts with their weights D(x) to get one number "
     "per k", "per-prompt"),
]


@exercise("05.4", notebook=NOTEBOOK, title="Exact pass@k from per-prompt success",
          hints=("pass@k is the chance that at least one of k samples is correct, averaged over prompts. Why "
                 "must it be computed per prompt first, rather than from the average success probability?",
                 "For a prompt with success p_x, all k samples fail with probability (1 - p_x)^k, so its "
                 "pass@k is one minus that. Average the prompts with their weights D(x): one number for "
                 "every k in ks, an array of length len(ks)."),
          reread="notebook 05's section on many paths (pass@1 up, pass@k down)",
          forbid=("toyenv.core.exact.pass_at_k_from_success", "toyenv.pass_at_k",
                  "toyenv.course.checks.nb05.pass_at_k_variant"),
          own="combine the per-prompt success probabilities yourself")
def check_pass_at_k(fn):
    from toyenv.core.exact import success_prob
    mp = _world("many-paths")
    sc = _world("scaffold")
    ks = np.array([1, 2, 4, 16, 64, 256])
    sp_m = success_prob(mp.base_policy())
    sp_s = success_prob(sc.base_policy())
    cases = [
        Case("many-paths base policy, k = 1, 2, 4, 16, 64, 256", (sp_m, mp.prompt_weights.copy(), ks)),
        Case("scaffold base policy (D(x) = 0 on the hinted prompts), k = 1, 2, 4, 16, 64, 256",
             (sp_s, sc.prompt_weights.copy(), ks)),
        Case("success [0, 1, 0.5] with weights [0.5, 0.25, 0.25], k = 1, 3, 10",
             (np.array([0.0, 1.0, 0.5]), np.array([0.5, 0.25, 0.25]), np.array([1, 3, 10]))),
        Case("one prompt with success 4e-6, k = 1, 1000, 100000", (np.array([4e-6]), np.array([1.0]),
                                                                 np.array([1, 1000, 100000]))),
    ]
    for case in cases:
        sp, w, kk = case.args
        expected = pass_at_k_variant(sp, w, kk)
        got = case.call(fn)
        compare(got, expected, case=case, what="your pass@k", rtol=1e-9, atol=1e-14,
                mistakes=[(hint, pass_at_k_variant(sp, w, kk, how=how)) for hint, how in _PK_HINTS],
                where=lambda idx, kk=kk: f"k = {int(kk[idx[0]])}" if idx else "")
    return (f"{len(cases)} cases: equal and unequal (zero) prompt weights, p = 0 and p = 1, tiny p "
            "with k up to 100000")


# ------------------------------------------------------------------------------- 05.5
BETA_STEPS = 200
"""The exact runs of exercise 05.5: ``toyenv.rl(many-paths base, beta=..., exact=True, steps=200, seed=0)``."""
PASS1_TARGET = 0.6
"""05.5's criterion: pass@1 at least this (the base has 0.23) ..."""
PASS256_TOL = 1e-3
"""... and pass@256 at most this much below the base's."""


@functools.cache
def _beta_numbers(beta: float) -> dict:
    """pass@1, pass@256, KL and the rare prompts' success of the exact RL run with KL weight ``beta``."""
    from toyenv.core.exact import kl, pass_at_k, success_prob
    from toyenv.methods.rl import rl
    mp = _world("many-paths")
    base = mp.base_policy()
    pi = rl(base, beta=beta, exact=True, steps=BETA_STEPS, seed=0).policy
    rare = list(mp.info["rare_prompts"])
    p1, p256 = (float(v) for v in pass_at_k(pi, [1, 256]))
    b1, b256 = (float(v) for v in pass_at_k(base, [1, 256]))
    return {"pass1": p1, "pass256": p256, "kl": float(kl(pi, base)), "rare": float(success_prob(pi)[rare].mean()),
            "base_pass1": b1, "base_pass256": b256, "base_rare": float(success_prob(base)[rare].mean())}


def beta_meets_target(beta: float) -> bool:
    """05.5's criterion for ``beta``: pass@1 >= PASS1_TARGET and pass@256 >= base's - PASS256_TOL."""
    n = _beta_numbers(float(beta))
    return n["pass1"] >= PASS1_TARGET and n["pass256"] >= n["base_pass256"] - PASS256_TOL


@exercise("05.5", notebook=NOTEBOOK, title="Find a beta that keeps pass@256 at the base's while raising pass@1",
          kind="experiment",
          hints=("The KL weight pulls the trained policy back towards the base. What does a very small weight do "
                 "to the rare prompts, and what does a very large one do to the gain on the common prompts? The "
                 "answer lies between the two.",
                 "Run the exact learner yourself for a few weights (the same call as the check, toyenv.rl with "
                 "exact=True, 200 steps, seed 0, on the many-paths base) and print pass@1 and pass@256 of each "
                 "final policy. pass@256 stays at the base's only if the rare prompts keep some success, which "
                 "needs a strong enough penalty; pass@1 above 0.6 needs a weak enough one. Bisect between a "
                 "weight that fails on pass@256 and one that fails on pass@1."),
          reread="notebook 05's sections on pass@k (many paths) and on the KL weight beta")
def check_beta_choice(beta):
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise Failed(f"your beta is {type(beta).__name__} {beta!r}; give the KL weight as a number, e.g. "
                     "beta_choice = 0.7")
    beta = float(beta)
    if not np.isfinite(beta) or beta < 0:
        raise Failed(f"your beta is {beta}; the KL weight is a finite number >= 0")
    if beta > 1000:
        raise Failed(f"beta = {beta:g} holds the policy at the base: nothing can improve pass@1; try values "
                     "between 0 and a few")
    n = _beta_numbers(beta)
    got = (f"with beta = {beta:g} the exact run ends at pass@1 {n['pass1']:.4f} (base {n['base_pass1']:.4f}) and "
           f"pass@256 {n['pass256']:.6f} (base {n['base_pass256']:.6f}), KL to the base {n['kl']:.3f} nats")
    low256 = n["pass256"] < n["base_pass256"] - PASS256_TOL
    if low256:
        raise Failed(f"{got}: pass@256 fell {n['base_pass256'] - n['pass256']:.4f} below the base's. The "
                     f"rare prompts' success went from {n['base_rare']:.3f} to {n['rare']:.4f}: with rows shared by "
                     "every prompt, raising the common answers lowers c c, and this penalty is too weak to stop "
                     "it. Increase beta")
    if n["pass1"] < PASS1_TARGET:
        raise Failed(f"{got}: pass@256 stays at the base's, but pass@1 is below {PASS1_TARGET}. The penalty "
                     "holds the policy so close to the base that the common prompts gain little. Decrease beta")
    return (f"{got}. The KL term keeps the rare prompts' c c alive (success {n['rare']:.3f}, base "
            f"{n['base_rare']:.3f}) while the common prompts gain: beta trades pass@1 against staying near the "
            "reference (§5.1)")
