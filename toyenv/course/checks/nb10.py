"""Checks for notebook 10, from exact to sampled (survey §7.2.1).

10.1 samples needed to see a behaviour of mass ε at confidence c; 10.2 a training step: one
REINFORCE update of per-state logits from sampled completions (the sampled twin of notebook 05's
exact gradient), used by the notebook's later cells; 10.3 the unbiased pass@k estimator.
Each check compares with :mod:`toyenv.estimate` and names the typical mistake it recognises.
"""
from __future__ import annotations

import math

import numpy as np

from .framework import Case, _world, compare, describe_pair, exercise

NB = "10_from_exact_to_sampled"


# ------------------------------------------------------------------------------- 10.1
@exercise("10.1", notebook=NB, title="Samples needed to see a behaviour of mass eps",
          hints=("A behaviour of mass eps is missed by one sample with probability 1 - eps. What is the "
                 "chance that k independent samples all miss it, and how large must k be for that to fall to "
                 "1 - confidence?",
                 "All k samples miss with probability (1 - eps)^k, which must be at most 1 - confidence. "
                 "Taking logs, k is at least ln(1 - confidence) / ln(1 - eps) (both logs are negative). "
                 "Round up to a whole number of samples; a k that reaches the confidence exactly is enough."),
          reread="notebook 10's section on how many samples it takes to see a behaviour",
          forbid=("toyenv.core.estimate.samples_to_detect",),
          own="solve for the number of samples yourself")
def check_samples_needed(fn):
    from toyenv.core.estimate import samples_to_detect
    cases = [Case("eps = 1e-4, confidence = 0.95", (1e-4, 0.95)),
             Case("eps = 0.3, confidence = 0.99 (a large eps)", (0.3, 0.99)),
             Case("eps = 0.5, confidence = 0.75 (two samples reach exactly 0.75)", (0.5, 0.75)),
             Case("eps = 0.05, confidence = 0.9", (0.05, 0.9)),
             Case("eps = 4e-6, confidence = 0.95 (the hidden path of notebook 00, per prompt)", (4e-6, 0.95)),
             Case("eps = 1e-3, confidence = 0.99", (1e-3, 0.99))]
    for case in cases:
        eps, c = case.args
        expected = samples_to_detect(eps, c)
        got = case.call(fn)
        exact = math.log(1 - c) / math.log(1 - eps)
        boundary = {}
        if -math.expm1(expected * math.log1p(-eps)) == c:     # k samples reach exactly c
            boundary = {"confidence exactly c is enough (>= c, not > c): two samples see a mass-0.5 event "
                        "with probability exactly 0.75": expected + 1}
        compare(got, expected, case=case, what="your sample count", rtol=0.0, atol=1e-9, mistakes={**boundary,
            "you used the approximation k ≈ -ln(1 - c)/eps (the small-eps form of eps_k ≈ -ln(1-c)/k); "
            "it overestimates, badly for large eps: solve 1 - (1 - eps)**k >= c exactly, "
            "k = ceil(ln(1 - c) / ln(1 - eps))": math.ceil(-math.log(1 - c) / eps),
            "3/eps is the 'rule of three', an approximation for confidence 0.95 only; solve "
            "1 - (1 - eps)**k >= confidence exactly": math.ceil(3 / eps),
            "you used ln(c): the chance to miss the behaviour in all k samples is (1 - eps)**k, and it "
            "must be at most 1 - c, so k >= ln(1 - c) / ln(1 - eps)": math.ceil(math.log(c) / math.log(1 - eps)),
            "you rounded down: k samples give confidence 1 - (1 - eps)**k, which is below c for the "
            "floor; round up (math.ceil)": math.floor(exact),
            "samples come in whole numbers: round ln(1 - c) / ln(1 - eps) up to the next integer "
            "(math.ceil)": exact,
        })
    return (f"{len(cases)} cases, from eps = 0.5 to the hidden path's 4e-6, including an exact boundary; "
            "equals toyenv.estimate.samples_to_detect")


# ------------------------------------------------------------------------------- 10.2
def reinforce_variant(mdp, logits, states, actions, lr, *, how: str = "right") -> np.ndarray:
    """One REINFORCE update of per-state logits ``[S, V]`` from sampled completions (default: right):
    ``logits + lr * (1/n) sum_i (r_i - mean r) sum_t (onehot(a_t) - pi(.|s_t))`` along each path.

    ``how``: "no-baseline" (r_i instead of r_i - mean r), "descent" (minus instead of plus),
    "onehot" (forgot - pi(.|s)), "last-only" (only the last token of each completion), "std" (GRPO's
    division by the batch std), "sum" (summed over completions instead of averaged).
    """
    L = np.asarray(logits, dtype=float)
    z = L - L.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    states = np.asarray(states, dtype=np.int64)
    actions = np.asarray(actions, dtype=np.int64)
    r = mdp.rewards[states, actions].astype(float)
    adv = r if how == "no-baseline" else r - r.mean()
    if how == "std":
        sd = r.std()
        adv = adv / sd if sd > 0 else np.zeros_like(adv)
    n = 1.0 if how == "sum" else float(len(states))
    g = np.zeros_like(L)
    for s, a, A in zip(states, actions, adv):
        s, a = int(s), int(a)
        while s >= 0:
            g[s, a] += A / n
            if how != "onehot":
                g[s] -= A / n * p[s]
            if how == "last-only":
                break
            s, a = int(mdp.parent[s]), int(mdp.last_token[s])
    return L - lr * g if how == "descent" else L + lr * g


_STEP_HINTS = [
    ("you stepped downhill: REINFORCE *ascends* the expected reward, new logits = logits + lr * gradient "
     "estimate", "descent"),
    ("you used the raw rewards r_i; the exercise subtracts the batch mean reward (a baseline) from each "
     "r_i, so a batch where every completion has the same reward gives no update", "no-baseline"),
    ("the gradient of log pi(a|s) with respect to row s of the logits is onehot(a) - pi(.|s), not onehot(a) "
     "alone: every token of the row moves, the chosen one up, the others down by their probability",
     "onehot"),
    ("you updated only the last token of each completion; log pi(y|x) sums log pi(a_t|s_t) over every step, "
     "so walk each path from the terminal pair up to the root (mdp.parent, mdp.last_token)", "last-only"),
    ("you divided the advantages by the batch's standard deviation (GRPO's normalisation); this step is "
     "plain REINFORCE with the mean baseline: r_i - mean r, no division", "std"),
    ("you summed over the completions; average them (divide by n = len(states)), so the step size does not "
     "grow with the number of samples", "sum"),
]


def _step_cases():
    from toyenv.core.exact import sample_pairs
    from toyenv.core.policies import TabularPolicy
    cases = []
    mp = _world("many-paths")
    L_mp = TabularPolicy.from_probs(mp, mp.base_policy().probs()).logits.detach().numpy()
    s, a = sample_pairs(TabularPolicy(mp, L_mp), 16, seed=0)
    cases.append(Case("many-paths base (per-state logits), 16 samples, lr = 1", (mp, L_mp, s, a, 1.0)))
    rnd = TabularPolicy(mp, seed=4, scale=1.5)
    L_r = rnd.logits.detach().numpy()
    s, a = sample_pairs(rnd, 5, seed=3)
    cases.append(Case("many-paths random policy, 5 samples, lr = 0.5", (mp, L_r, s, a, 0.5)))
    s, a = sample_pairs(rnd, 64, seed=1)
    cases.append(Case("many-paths random policy, 64 samples, lr = 2", (mp, L_r, s, a, 2.0)))
    hp = _world("hidden-path")
    L_hp = TabularPolicy.from_probs(hp, hp.base_policy().probs()).logits.detach().numpy()
    s, a = sample_pairs(TabularPolicy(hp, L_hp), 32, seed=0)
    cases.append(Case("hidden-path base, 32 samples, none correct (the update must be exactly zero)",
                      (hp, L_hp, s, a, 1.0)))
    H, E = hp.info["hidden_token"], hp.eos
    good = hp.state_index(0, (H, hp.info["keys"][0]))
    bad = hp.state_index(1, (0, 1))
    s = np.array([good, bad, bad])
    a = np.array([E, E, E])
    cases.append(Case("hidden-path base, 3 hand-picked completions: one correct 'h a <eos>', two wrong",
                      (hp, L_hp, s, a, 0.3)))
    return cases


@exercise("10.2", notebook=NB, title="One REINFORCE step from sampled completions", kind="step",
          hints=("The exact policy gradient of notebook 05 needs the whole tree; a sample gives an unbiased "
                 "estimate of it. For one sampled completion, which logits does its log-probability depend "
                 "on, and how does each of them move it?",
                 "Turn the logits into probabilities row by row (softmax). Each completion's reward is "
                 "mdp.rewards at its terminal pair; its advantage is that reward minus the batch mean. Walk "
                 "each completion from its terminal pair up to the root with mdp.parent and mdp.last_token; "
                 "at every pair (s, a) on the way add advantage / n times (onehot of a minus the row "
                 "probabilities of s) to row s of a gradient array. The new logits are the old ones plus lr "
                 "times that array."),
          reread="notebook 10's section on learning from samples and notebook 05's policy gradient",
          forbid=("toyenv.core.policies.sequence_log_prob", "toyenv.methods.losses.policy_gradient_loss",
                  "toyenv.methods.losses.token_logp", "toyenv.core.passes.exact_policy_gradient",
                  "toyenv.course.checks.nb10.reinforce_variant"),
          own="compute the gradient of each sampled completion's log-probability yourself (onehot minus the "
              "row's probabilities, or torch autograd on your own log-softmax)")
def check_reinforce_step(fn):
    cases = _step_cases()
    for case in cases:
        mdp, L, s, a, lr = case.args
        expected = reinforce_variant(mdp, L, s, a, lr)
        got = case.call(fn)
        if got is not None and hasattr(got, "detach"):
            got = got.detach().numpy()
        compare(got, expected, case=case, what="your new logits", rtol=1e-7, atol=1e-9,
                mistakes=[(h, reinforce_variant(mdp, L, s, a, lr, how=k)) for h, k in _STEP_HINTS] + [
                    ("you returned the gradient estimate (or the change of the logits); return the NEW logits: "
                     "the old ones plus lr times the estimate", reinforce_variant(mdp, L, s, a, lr) - L),
                    ("you returned the logits unchanged; add lr times the gradient estimate", L)],
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx) if len(idx) == 2 else str(idx))
    return (f"{len(cases)} batches: base and random policies, 3 to 64 samples, a batch without any success "
            "(no update) and one with a single success")


# ------------------------------------------------------------------------------- 10.3
def _ratio(n, c, k):
    return math.comb(n - c, k) / math.comb(n, k)


@exercise("10.3", notebook=NB, title="The unbiased pass@k estimator",
          hints=("Of the n samples, c are correct. If you pick k of the n at random, without replacement, "
                 "what is the chance that none of the k is correct?",
                 "The number of ways to choose k samples among the n - c incorrect ones, divided by the "
                 "number of ways to choose k among all n, is the chance that all k are incorrect; the "
                 "estimate is one minus it. Use exact integer binomial coefficients (math.comb): with n - c "
                 "< k the ratio is 0 and the estimate 1, and a float C(5000, 2500) overflows."),
          reread="notebook 10's section on pass@k from samples",
          forbid=("toyenv.pass_at_k_unbiased", "toyenv.core.estimate.pass_at_k_estimator"),
          own="compute the ratio of binomial coefficients yourself")
def check_pass_at_k_unbiased(fn):
    from toyenv.core.estimate import pass_at_k_estimator
    cases = [Case("n = 40, c = 3, k = 10", (40, 3, 10)),
             Case("n = 10, c = 0, k = 1 (no correct sample)", (10, 0, 1)),
             Case("n = 100, c = 1, k = 1", (100, 1, 1)),
             Case("n = 40, c = 35, k = 10 (fewer than k incorrect samples)", (40, 35, 10),
                  errors={ValueError: "with fewer than k incorrect samples (n - c < k) every choice of k "
                                      "samples holds a correct one: C(n-c, k) = 0 and the estimate is 1"}),
             Case("n = 16, c = 16, k = 16 (all correct, k = n)", (16, 16, 16)),
             Case("n = 200, c = 7, k = 50", (200, 7, 50)),
             Case("n = 5000, c = 1, k = 2500 (C(5000, 2500) has 1504 digits)", (5000, 1, 2500),
                  errors={OverflowError: "C(5000, 2500) does not fit in a float: use math.comb (exact "
                                         "integers), or the product form prod_{i=n-c+1}^{n} (1 - k/i)"})]
    for case in cases:
        n, c, k = case.args
        expected = float(pass_at_k_estimator(n, c, k))
        got = case.call(fn)

        def facts(arr):
            if not np.all(np.isfinite(np.asarray(arr, float))):
                return ("C(n, k) overflows a float for large n: use math.comb (exact integers) or the "
                        "product form prod_{i=n-c+1}^{n} (1 - k/i)")
            return None

        mistakes = {
            "you used the plug-in 1 - (1 - c/n)**k: it treats c/n as the true p and is biased low "
            "(n=40, k=10, p=0.07: 0.4765 on average instead of 0.5160); use 1 - C(n-c, k)/C(n, k)":
                1 - (1 - c / n) ** k,
            "C(n-c, k)/C(n, k) is the chance that k samples drawn from the n are all incorrect; pass@k "
            "is one minus it": _ratio(n, c, k),
            "c/n estimates pass@1 only; for k > 1 use 1 - C(n-c, k)/C(n, k)": c / n,
            "you used C(c, k) (all k correct); pass@k needs at least one correct among k: "
            "1 - C(n-c, k)/C(n, k)": 1 - math.comb(c, k) / math.comb(n, k),
            "you used C(c, k)/C(n, k), the chance that all k are correct; pass@k is the chance that at "
            "least one is: 1 - C(n-c, k)/C(n, k)": math.comb(c, k) / math.comb(n, k),
        }
        compare(got, expected, case=case, what="your estimate", rtol=1e-9, atol=1e-12, mistakes=mistakes,
                diagnose=facts)
    return (f"{len(cases)} cases: c = 0, c = n, fewer than k incorrect samples, and n = 5000 where C(n, k) "
            "overflows a float")
