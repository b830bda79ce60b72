"""Checks of notebook 06 (guided RL and hybrids), in the notebook's order:

06.1  the fraction of GRPO groups that carry a gradient when some rollouts are hinted;
06.2  predict, then run: which of the section's four guided runs teach the *unhinted* policy the
      hidden path;
06.3  process advantages V(s') - V(s) from a value array (§5.2).

Registered with :mod:`toyenv.checks` (``checks.check("06.1", fn)``); see that module for the
machinery. Each check computes the answer of every typical mistake and names the mistake whose
answer the learner's matches.
"""
from __future__ import annotations

import numpy as np

from .framework import Case, Failed, _as_array, _world, compare, exercise

NOTEBOOK = "06_guided_rl_and_hybrids"


# ------------------------------------------------------------------------------- 06.3
def process_advantages_variant(mdp, V, x, tokens, *, how: str = "right") -> np.ndarray:
    """Per-token process advantages ``[len(tokens)]`` (default: right): A_t = V(s_{t+1}) - V(s_t)
    with s_t = (x, y_<t) and, after the last token, the verifier's reward r(x, y) in place of V.

    ``how``: "flip" (V(s_t) - V(s_{t+1})), "last-zero" (0 instead of r after the last token),
    "outcome" (r - V(root) on every token), "no-baseline" (V(s_{t+1}) only), "sum" (the telescoped
    total r - V(root), a single number).
    """
    toks = tuple(int(t) for t in tokens)
    r = float(mdp.reward(x, toks))
    v = np.array([V[mdp.state_index(x, toks[:t])] for t in range(len(toks))], dtype=float)
    nxt = np.append(v[1:], 0.0 if how == "last-zero" else r)
    if how == "flip":
        return v - nxt
    if how == "outcome":
        return np.full(len(toks), r - v[0])
    if how == "no-baseline":
        return nxt
    if how == "sum":
        return float(r - v[0])
    return nxt - v


_PROC_HINTS = [
    ("your advantages have the wrong sign: A_t = V(s_{t+1}) - V(s_t), positive when the token made "
     "success more likely", "flip"),
    ("after the last token there is no next state: use the verifier's reward r(x, y) = "
     "mdp.reward(prompt_index, tokens) in place of V(s_{t+1}) (you used 0)", "last-zero"),
    ("you gave every token the outcome advantage r(x, y) - V(root); the process advantage of token t "
     "is V(s_{t+1}) - V(s_t), which credits each step with its own change in success value", "outcome"),
    ("you returned V(s_{t+1}) (or r at the end) without the baseline: subtract V(s_t), the value "
     "before the token", "no-baseline"),
    ("you returned the sum over tokens (it telescopes to r(x, y) - V(root)); return one advantage per "
     "token, an array of length len(tokens)", "sum"),
]


@exercise("06.3", notebook=NOTEBOOK, title="Process advantages V(s') - V(s) (§5.2)",
          hints=("A process advantage credits each token with the change it made to the chance of success. "
                 "Which value do you have before token t, which after it, and what stands in for 'after' at "
                 "the last token?",
                 "For each position t, the state before token t is the prompt with the first t tokens as its "
                 "prefix (mdp.state_index); V there is the value before. The value after is V at the next "
                 "state or, after the last token, the verifier's reward mdp.reward(prompt_index, tokens). "
                 "The advantage of token t is value after minus value before: one number per token."),
          reread="notebook 06's section on process reward versus outcome reward (§5.2)",
          forbid=("toyenv.course.checks.nb06.process_advantages_variant",),
          own="take the differences of the values yourself")
def check_process_advantages(fn):
    from toyenv.core.exact import success_value
    from toyenv.core.policies import TabularPolicy
    hp = _world("hidden-path")
    V_hp, _ = success_value(hp.base_policy())
    mp = _world("many-paths")
    V_mp, _ = success_value(TabularPolicy(mp, seed=3, scale=1.5))
    a, b, c, h, E = range(5)
    cases = [
        Case("hidden-path base policy, prompt 0, the correct answer 'h a <eos>'", (hp, V_hp, 0, (h, a, E))),
        Case("hidden-path base policy, prompt 1, a wrong answer 'a b <eos>'", (hp, V_hp, 1, (a, b, E))),
        Case("hidden-path base policy, prompt 2, 'h c a <eos>' (the right key, but <eos> comes too late)",
             (hp, V_hp, 2, (h, c, a, E))),
        Case("hidden-path base policy, prompt 3, 'a a b c' (ended by the horizon, no <eos>)",
             (hp, V_hp, 3, (a, a, b, c))),
        Case("hidden-path base policy, prompt 0, '<eos>' (a one-token completion)", (hp, V_hp, 0, (E,))),
        Case("many-paths random policy, prompt 7, the correct answer 'c c <eos>'", (mp, V_mp, 7, (2, 2, 3))),
        Case("many-paths random policy, prompt 2, 'a b <eos>'", (mp, V_mp, 2, (0, 1, 3))),
    ]
    for case in cases:
        mdp, V, x, toks = case.args
        expected = process_advantages_variant(mdp, V, x, toks)
        got = case.call(fn)
        arr = _as_array(got, expected, case, "your advantages")
        if arr.ndim == 1 and len(arr) == len(toks) - 1:
            raise Failed(f"your function returned {len(arr)} advantages for {len(toks)} tokens on {case.name}: "
                         "the last token gets one too, A_T = r(x, y) - V(s_T)")
        compare(arr, expected, case=case, what="your advantages", rtol=1e-9, atol=1e-15,
                mistakes=[(hint, process_advantages_variant(mdp, V, x, toks, how=how)) for hint, how in _PROC_HINTS],
                where=lambda idx, toks=toks, mdp=mdp: (f"token {idx[0]} ({mdp.vocab[toks[idx[0]]]!r})"
                                                       if idx else ""))
    return (f"{len(cases)} completions: correct and wrong, ended by <eos> or by the horizon, one token "
            "long, in two worlds")


# ------------------------------------------------------------------------------- 06.1
def informative_variant(p_bare, p_hinted, hint_prob, group_size, *, how: str = "right"):
    """P(a GRPO group of ``group_size`` i.i.d. rollouts has both a success and a failure) when each
    rollout starts from the hint with probability ``hint_prob`` (default: right).

    ``how``: "any" (at least one success), "per-group" (the hint drawn once per group), "hinted"
    (hinted rollouts only), "flat" (the zero-variance probability), "swapped" (hint_prob on the
    bare rollouts).
    """
    q, K = hint_prob, group_size

    def f(p):
        return 1.0 - p ** K - (1.0 - p) ** K

    p = (1 - q) * p_bare + q * p_hinted
    if how == "any":
        return 1.0 - (1.0 - p) ** K
    if how == "per-group":
        return (1 - q) * f(p_bare) + q * f(p_hinted)
    if how == "hinted":
        return f(p_hinted)
    if how == "flat":
        return 1.0 - f(p)
    if how == "swapped":
        return f(q * p_bare + (1 - q) * p_hinted)
    return f(p)


_INF_HINTS = [
    ("you computed the probability of at least one success, 1 - (1 - p)^K; a group whose rollouts all "
     "succeed has zero variance too, so subtract p^K as well", "any"),
    ("you drew the hint once per group; in rl(..., hints=...) every rollout draws its own hint, so each "
     "rollout succeeds with p = (1 - q) p_bare + q p_hinted, independently", "per-group"),
    ("you used only the hinted success probability; a rollout is hinted with probability q = hint_prob, "
     "so its success probability is (1 - q) p_bare + q p_hinted", "hinted"),
    ("you returned the probability that a group has zero variance (all equal); the exercise asks for "
     "the complement: the groups that carry a gradient", "flat"),
    ("you swapped the weights: a rollout is hinted with probability hint_prob, so p = (1 - hint_prob) "
     "p_bare + hint_prob p_hinted", "swapped"),
]


@exercise("06.1", notebook=NOTEBOOK, title="Which GRPO groups carry a gradient, with hints",
          hints=("A GRPO group carries a gradient only when its rollouts disagree. What is one rollout's "
                 "success probability when it is hinted with probability hint_prob, and which groups have "
                 "zero variance?",
                 "One rollout succeeds with p = (1 - hint_prob) p_bare + hint_prob p_hinted, independently "
                 "of the others (each draws its own hint). A group of K rollouts has zero variance when all "
                 "succeed (p^K) or all fail ((1 - p)^K); the answer is one minus both."),
          reread="notebook 06's section on hints (some rollouts start on the right path)",
          forbid=("toyenv.informative_group_prob", "toyenv.course.checks.nb06.informative_variant"),
          own="write the probability yourself")
def check_informative_fraction(fn):
    from toyenv.core.exact import success_value
    hp = _world("hidden-path")
    V, _ = success_value(hp.base_policy())
    h = hp.info["hidden_token"]
    p_bare = float(V[hp.roots[0]])
    p_h1 = float(V[hp.state_index(0, (h,))])
    p_h2 = float(V[hp.state_index(0, (h, hp.info["keys"][0]))])
    cases = [   # the first case tells every listed mistake apart (hint_prob not in {0, 0.5, 1})
        Case("p_bare = 0.3, p_hinted = 1.0, hint_prob = 0.25, K = 2", (0.3, 1.0, 0.25, 2)),
        Case("hidden-path base policy, no hint (hint_prob = 0), K = 8", (p_bare, p_h1, 0.0, 8)),
        Case("hidden-path base policy, hint 'h' on half the rollouts, K = 8", (p_bare, p_h1, 0.5, 8)),
        Case("hidden-path base policy, hint 'h a' on half the rollouts, K = 8", (p_bare, p_h2, 0.5, 8)),
        Case("hidden-path base policy, hint 'h' on every rollout, K = 8", (p_bare, p_h1, 1.0, 8)),
        Case("p_bare = 0.0, p_hinted = 1.0, hint_prob = 1.0, K = 4 (every rollout succeeds)", (0.0, 1.0, 1.0, 4)),
        Case("p_bare = 0.6, p_hinted = 0.9, hint_prob = 0.5, K = 16", (0.6, 0.9, 0.5, 16)),
    ]
    for case in cases:
        expected = informative_variant(*case.args)
        got = case.call(fn)
        compare(got, expected, case=case, what="your fraction", rtol=1e-7, atol=1e-13,
                mistakes=[(hint, informative_variant(*case.args, how=how)) for hint, how in _INF_HINTS],
                diagnose=lambda a: ("It is outside [0, 1], so it cannot be a probability."
                                    if np.any((a < -1e-12) | (a > 1 + 1e-12)) else None))
    return (f"{len(cases)} cases: no hint, partial and full hints, all-success groups, groups of 2 to 16 "
            "rollouts")


# ------------------------------------------------------------------------------- 06.2
HINT_RUNS = ("RL alone", "hint on every rollout", "hint on half", "hint on half, learn_hint=True")
"""The four runs of notebook 06, section 1 (hidden-path base, beta = 0, 200 steps, seed 0)."""
HINT_RUNS_THAT_SOLVE = frozenset({"hint on half", "hint on half, learn_hint=True"})
"""The runs whose *unhinted* success passes 0.5 within 200 steps. The value is a measurement of the
package's runs, asserted by tests/test_course_claims_nb05_06.py (training the four runs inside the
check would take about ten seconds)."""

_WHY_RUN = {
    "RL alone": ("RL alone never samples a correct answer (probability 4e-6 per rollout), so every group "
                 "has zero variance and carries no gradient (notebook 05)"),
    "hint on every rollout": ("with every rollout hinted, the hint tokens are never trained and every rollout "
                              "of a group starts with the same token h: nothing teaches the root to say h, so "
                              "the policy learns to finish the path but not to start it; its unhinted success "
                              "stays near 1e-4, the probability of starting with h"),
    "hint on half": ("with half the rollouts hinted, hinted successes and unhinted failures share a group; the "
                     "unhinted rollouts get negative advantages that push down the wrong first tokens at the "
                     "root, and their mass flows to h: the unhinted policy learns the path"),
    "hint on half, learn_hint=True": ("training on the hint tokens as well adds a direct push on h at the root, "
                                      "on top of the negative advantages of the unhinted failures in mixed "
                                      "groups: the unhinted policy learns the path, sooner"),
}


@exercise("06.2", notebook=NOTEBOOK, title="Predict: which guided runs teach the unhinted policy",
          kind="predict",
          hints=("Guidance changes the rollouts, not the reward, and by default the hint tokens get no gradient. "
                 "For each run, ask which tokens at the root of an unhinted prompt receive a non-zero advantage, "
                 "and with which sign.",
                 "A GRPO group teaches only when its rollouts disagree. Without hints no rollout succeeds. With "
                 "every rollout hinted, all rollouts of a group share the forced first token, and that token is "
                 "masked out of the loss. With some rollouts hinted, hinted successes and unhinted failures meet "
                 "in one group: the failures' first tokens get negative advantages, and the probability they lose "
                 "goes to the other first tokens, h included. Learning the hint tokens adds a direct positive "
                 "push on h."),
          reread="notebook 06's section on hints (some rollouts start on the right path) and notebook 05's "
                 "groups without variance")
def check_hint_prediction(value):
    if isinstance(value, str):
        value = {value}
    try:
        chosen = {str(v) for v in value}
    except TypeError:
        raise Failed(f"give a set of run names, e.g. {{{HINT_RUNS[0]!r}}} (or an empty set), not "
                     f"{type(value).__name__}") from None
    if not isinstance(value, (set, frozenset, list, tuple)) or any(not isinstance(v, str) for v in value):
        raise Failed("give a set of run names (strings), chosen among: " + ", ".join(repr(r) for r in HINT_RUNS))
    unknown = sorted(chosen - set(HINT_RUNS))
    if unknown:
        raise Failed(f"unknown run name(s) {', '.join(repr(u) for u in unknown)}: choose among "
                     + ", ".join(repr(r) for r in HINT_RUNS))
    right = set(HINT_RUNS_THAT_SOLVE)
    wrong_in = sorted(chosen - right, key=HINT_RUNS.index)
    missed = sorted(right - chosen, key=HINT_RUNS.index)
    if wrong_in or missed:
        parts = ([f"you predicted that {r!r} solves the task, but " + _WHY_RUN[r] for r in wrong_in]
                 + [f"you predicted that {r!r} does not, but " + _WHY_RUN[r] for r in missed])
        raise Failed("; ".join(parts) + ". Run the next cell to see the four curves (§5.1: guidance expands "
                     "selectively, only where it points)")
    return ("exactly the runs that hint some rollouts, not all, teach the unhinted policy: mixed groups put "
            "negative advantages on the wrong first tokens (§5.1, §7.1.3)")
