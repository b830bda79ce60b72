"""Checks for notebook 10, from exact to sampled (survey §7.2.1).

10.1 samples needed to see a behaviour of mass ε at confidence c; 10.2 the empirical occupancy
(an unbiased estimate of Eq. 2 from sampled completions); 10.3 the unbiased pass@k estimator.
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
def empirical_occupancy_variant(mdp, states, actions, *, eta: str = "1/T(y)", norm: str = "n",
                                weigh_prompts: bool = False, steps: str = "all",
                                unique: bool = False) -> np.ndarray:
    """The empirical occupancy with the choices a learner can get wrong (defaults: right). ``[S, V]``."""
    s = np.asarray(states, dtype=np.int64)
    a = np.asarray(actions, dtype=np.int64)
    if unique:
        pairs = np.unique(np.stack([s, a], 1), axis=0)
        s, a = pairs[:, 0], pairs[:, 1]
    n = len(s)
    L = mdp.length[s, a].astype(float)
    w = {"1/T(y)": 1.0 / L, "1": np.ones(n), "1/horizon": np.full(n, 1.0 / mdp.horizon)}[eta]
    if norm == "n":
        w = w / n
    elif norm == "per-prompt":
        cnt = np.bincount(mdp.prompt_of[s], minlength=mdp.num_prompts)
        w = w / cnt[mdp.prompt_of[s]]
    if weigh_prompts:
        w = w * mdp.prompt_weights[mdp.prompt_of[s]]
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    for si, ai, wi in zip(s, a, w):
        first = True
        while si >= 0:
            if steps == "all" or (steps == "last" and first):
                out[si, ai] += wi
            first = False
            si, ai = mdp.parent[si], mdp.last_token[si]
    return out


def _emp_mistakes(mdp, s, a) -> dict:
    v = lambda **kw: empirical_occupancy_variant(mdp, s, a, **kw)   # noqa: E731
    return {
        "you multiplied by D(x): the prompts were already drawn from D(x), so the sample carries D(x) "
        "(a prompt's share of the sample is its weight); give every step 1/(n T(y)), no probability "
        "weights": v(weigh_prompts=True),
        "you gave every step weight 1/n instead of 1/(n T(y)), so your estimate sums to the mean "
        "length, not 1: Eq. 2 spreads each trajectory's unit of weight over its T(y) steps": v(eta="1"),
        "you did not divide by n, the number of samples: the estimate is an average over samples": v(norm="none"),
        "you divided by the number of samples of each prompt, so every prompt gets total mass 1; "
        "divide by the total number of samples n, so that prompt x gets its sample frequency (≈ D(x))":
            v(norm="per-prompt"),
        "you divided by the horizon T instead of each completion's own length T(y) = mdp.length[s, a]":
            v(eta="1/horizon"),
        "you credited only the last step of each completion; Eq. 2 credits every step on its path: "
        "walk up with s, a = mdp.parent[s], mdp.last_token[s] while s >= 0": v(steps="last"),
        "a completion that was sampled twice counts twice: do not remove repeated samples":
            v(unique=True),
    }


@exercise("10.2", notebook=NB, title="Occupancy from sampled completions (Eq. 2, estimated)",
          hints=("Sampled completions already carry D(x) and pi: a completion's share of the sample plays "
                 "the role of its probability. How much weight does each sampled completion hand out, and to "
                 "which steps?",
                 "Each of the n sampled completions (a terminal pair s, a) gives 1/(n T(y)) to every (state, "
                 "token) on its path, T(y) being mdp.length at the terminal pair; walk from the last step up "
                 "to the root with mdp.parent and mdp.last_token, as in exercise 02.1. No probability or "
                 "D(x) weights, and a completion sampled twice counts twice."),
          reread="notebook 10's section on occupancy and effective support from samples, and exercise 02.1",
          forbid=("toyenv.core.estimate.empirical_occupancy", "toyenv.methods.token_targets",
                  "toyenv.course.checks.nb10.empirical_occupancy_variant"),
          own="spread each sample's weight over its path yourself")
def check_empirical_occupancy(fn):
    from toyenv.core.estimate import empirical_occupancy
    from toyenv.core.exact import sample_pairs
    from toyenv.core.policies import TabularPolicy
    hp3 = _world("hidden-path", horizon=3)
    sc = _world("scaffold")
    mp = _world("many-paths")
    ts = _world("two-skills")
    setups = [("hidden-path (horizon 3) random policy, 40 samples", hp3, TabularPolicy(hp3, seed=0), 40, 0),
              ("scaffold base policy, 200 samples (hinted prompts have D(x) = 0)", sc, sc.base_policy(), 200, 1),
              ("many-paths base policy, 300 samples (repeated completions)", mp, mp.base_policy(), 300, 2),
              ("two-skills random policy, a single sample", ts, TabularPolicy(ts, seed=3), 1, 3)]
    for name, mdp, pi, n, seed in setups:
        s, a = sample_pairs(pi, n, seed=seed)
        expected = empirical_occupancy(mdp, s, a)
        case = Case(name, (mdp, s, a))
        got = case.call(fn)

        def facts(arr):
            total = float(arr.sum())
            if abs(total - 1) > 1e-9:
                return (f"Your estimate sums to {total:.6g}; it should sum to 1 (each sampled completion "
                        "hands out 1/n, spread over its T(y) steps).")
            return None

        compare(got, expected, case=case, what="your estimate", mistakes=_emp_mistakes(mdp, s, a),
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx), diagnose=facts)
    return (f"{len(setups)} samples (repeated completions, zero-weight prompts, a single sample) give "
            "toyenv.estimate.empirical_occupancy")


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
