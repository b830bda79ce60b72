"""Checks of notebook 03 (SFT as support expansion): the SFT token targets and the expanded set.

Registered with :mod:`toyenv.checks` (``checks.check("03.1", fn)``); see that module for the
machinery. Each check computes the answer of every typical mistake with a variant of the reference
and names the mistake whose answer the learner's matches.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from .framework import Case, _tiny_world, _world, compare, describe_pair, exercise
from toyenv.core.tree import TokenMDP

NOTEBOOK = "03_sft_support_expansion"


# ------------------------------------------------------------------------------- 03.1
_PER_HINT = {
    "count": "you did not divide by the number of demonstrations N: the targets are token counts / N, so "
             "that the SFT loss is the mean negative log-likelihood per demonstration",
    "length": "you weighted each token by 1/(N T(y)), the occupancy weighting of Eq. 2; the SFT loss adds "
              "-log pi over every token of a demonstration, so each token gets weight 1/N",
    "tokens": "you divided by the total number of tokens, so your targets sum to 1; each token of each "
              "demonstration gets weight 1/N (N = the number of demonstrations), so they sum to the mean "
              "demonstration length",
}
_STEPS_HINT = {
    "last": "you counted only the last token of each demonstration; teacher forcing supervises every "
            "token y_t, at the state (x, y_<t) before it",
    "no-last": "you skipped the last token of each demonstration (often <eos>): ending the answer is an "
               "action the model has to learn too",
    "no-first": "you skipped the first token: it is chosen at the root state, "
                "mdp.state_index(x, ()) (the prompt with an empty prefix), so t starts at 0",
}
_WEIGH_HINT = ("you multiplied by the prompt weight D(x): the demonstrations already are a sample of "
               "prompts, and each one counts 1/N")
_PROMPT0_HINT = ("you used the states of prompt 0: look each state up under the demonstration's own prompt, "
                 "mdp.state_index(x, tokens[:t])")
_AFTER_HINT = ("If you looked up the state *after* token t: the state before token t is "
               "mdp.state_index(x, tokens[:t]); a complete sequence is not a state.")


def token_targets_variant(mdp, demos, *, per: str = "demo", steps: str = "all", weigh: bool = False,
                          prompt0: bool = False) -> np.ndarray:
    """SFT token targets ``[S, V]`` with the choices a learner can get wrong (defaults: right).

    ``per``: "demo" (1/N per token, right), "count" (1), "length" (1/(N T(y))), "tokens" (1/total
    tokens). ``steps``: "all", "last", "no-last", "no-first". ``weigh``: times D(x). ``prompt0``:
    states of prompt 0.
    """
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    n = len(demos)
    total = sum(len(t) for _, t in demos)
    for x, toks in demos:
        toks = tuple(int(t) for t in toks)
        L = len(toks)
        ts = {"all": range(L), "last": range(L - 1, L), "no-last": range(L - 1),
              "no-first": range(1, L)}[steps]
        w = {"demo": 1.0 / n, "count": 1.0, "length": 1.0 / (n * L), "tokens": 1.0 / total}[per]
        if weigh:
            w *= mdp.prompt_weights[x]
        for t in ts:
            out[mdp.state_index(0 if prompt0 else x, toks[:t]), toks[t]] += w
    return out


def _token_target_mistakes(mdp, demos) -> dict:
    out = {}
    for per, steps, weigh, p0 in itertools.product(("demo", "count", "length", "tokens"),
                                                   ("all", "last", "no-last", "no-first"),
                                                   (False, True), (False, True)):
        parts = ([_PER_HINT[per]] if per != "demo" else []) + \
                ([_STEPS_HINT[steps]] if steps != "all" else []) + \
                ([_WEIGH_HINT] if weigh else []) + ([_PROMPT0_HINT] if p0 else [])
        if parts:
            out["; and ".join(parts)] = token_targets_variant(mdp, demos, per=per, steps=steps,
                                                              weigh=weigh, prompt0=p0)
    return dict(sorted(out.items(), key=lambda kv: kv[0].count("; and ")))


def _demo_cases():
    mp = _world("many-paths")
    hp3 = _world("hidden-path", horizon=3)
    hp4 = _world("hidden-path")
    tiny = _tiny_world()
    from toyenv.methods import demonstrations
    mixed = mp.base_policy().sample(12, seed=3)                  # lengths 1 to 3, some not correct
    return [
        Case("many-paths: 12 completions sampled from the base policy (lengths 1 to 3)", (mp, mixed)),
        Case("hidden-path (horizon 3): 8 correct demonstrations from toyenv.demonstrations, with repeats",
             (hp3, demonstrations(hp3, 8, seed=0))),
        Case("hidden-path (horizon 4): 'h a <eos>' for q0 and 'a b c a' for q1 (ended by the horizon, "
             "no <eos>)", (hp4, [(0, (3, 0, 4)), (1, (0, 1, 2, 0))])),
        Case("many-paths: a single demonstration, q6 -> 'c c <eos>'", (mp, [(6, (2, 2, 3))])),
        Case("a one-prompt world with horizon 1: demonstrations 'a' and '<eos>'", (tiny, [(0, (0,)), (0, (1,))])),
    ]


@exercise("03.1", notebook=NOTEBOOK, title="SFT token targets (teacher forcing, §4.1)",
          hints=("Teacher forcing supervises every token of every demonstration, at the state just before "
                 "it. How much weight should one token get so that the SFT loss is a mean over "
                 "demonstrations?",
                 "For each demonstration (x, tokens) and each position t, the state is prompt x with the "
                 "first t tokens as its prefix (mdp.state_index) and the target is token t: add 1/N there, N "
                 "being the number of demonstrations. Every token counts, the first and the last (often "
                 "<eos>) included, and there are no D(x) or 1/T(y) weights."),
          reread="notebook 03's section on SFT as cross-entropy on someone else's trajectories (§4.1)",
          forbid=("toyenv.methods.token_targets", "toyenv.methods.data.token_targets",
                  "toyenv.course.checks.nb03.token_targets_variant"),
          own="count the demonstrations' tokens yourself")
def check_token_targets(fn):
    cases = _demo_cases()
    for case in cases:
        mdp, demos = case.args
        case.errors = {ValueError: _AFTER_HINT}
        expected = token_targets_variant(mdp, demos)
        got = case.call(fn)
        mean_len = float(np.mean([len(t) for _, t in demos]))

        def facts(arr, mean_len=mean_len):
            total = float(arr.sum())
            if abs(total - mean_len) > 1e-9:
                return (f"Your targets sum to {total:.6g}; the SFT targets sum to the mean demonstration "
                        f"length, {mean_len:.6g} here (each demonstration's T(y) tokens weigh 1/N each).")
            return None

        compare(got, expected, case=case, what="your targets", mistakes=_token_target_mistakes(mdp, demos),
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx), diagnose=facts)
    return (f"token targets of {len(cases)} demonstration sets (mixed lengths, repeats, a horizon-ended "
            "answer, a single demonstration, horizon 1) equal toyenv.methods.token_targets")


# ------------------------------------------------------------------------------- 03.2
@functools.cache
def _sft_pairs():
    """(hidden-path base, after SFT) and (many-paths base, after SFT on its own correct samples)."""
    from toyenv.methods import demonstrations, sft
    hp = _world("hidden-path", horizon=3)
    hb = hp.base_policy()
    h_after = sft(hb, demonstrations(hp, 8, seed=0), steps=60, seed=0).policy
    mp = _world("many-paths")
    mb = mp.base_policy()
    own = [(x, t) for x, t in mb.sample(64, seed=0) if mp.is_correct(x, t)]
    m_after = sft(mb, own, steps=30, seed=0).policy
    return hb, h_after, mb, m_after


def expanded_variant(before, after, eps, *, after_ge: bool = True, before_lt: bool = True) -> np.ndarray:
    """Eq. 6 with either comparison possibly flipped: ``d_after >= eps`` and ``d_before < eps`` (right)."""
    a = after.sa >= eps if after_ge else after.sa > eps
    b = before.sa < eps if before_lt else before.sa <= eps
    return a & b


@exercise("03.2", notebook=NOTEBOOK, title="The expanded set (Eq. 6)",
          hints=("The expanded set is about pairs that cross the threshold in one direction. Which pairs "
                 "were outside E_eps before, and which are inside it after?",
                 "A pair is expanded when its occupancy after, occ_after.sa, is at least eps and its "
                 "occupancy before, occ_before.sa, is below eps (Eq. 6, with Eq. 5's >= for being in the "
                 "support). Combine the two entry-wise comparisons with a logical and: a boolean mask the "
                 "shape of occ_after.sa."),
          reread="notebook 03's section on expansion (the hidden path entering the support) and Eq. 6",
          forbid=("toyenv.support_change", "toyenv.core.exact.support_sets",
                  "toyenv.course.checks.nb03.expanded_variant"),
          own="compute the sets from the two occupancies")
def check_expanded_set(fn):
    from toyenv.core.exact import Occupancy, occupancy, occupancy_from_probs
    hb, h_after, mb, m_after = _sft_pairs()
    o_hb, o_ha, o_mb, o_ma = (occupancy(p) for p in (hb, h_after, mb, m_after))
    hp = o_hb.mdp
    h = hp.info["hidden_token"]
    tie_after = float(o_ha.sa[hp.roots[0], h])              # expanded pairs sit exactly at eps
    values = np.unique(o_mb.sa[o_mb.sa > 0])
    tie_same = float(values[len(values) // 2])               # pairs of both policies sit exactly at eps
    # one state, horizon 1, so d(s, a) = pi(a|s): a pair for every way a comparison at eps can go
    four = TokenMDP(("a", "b", "c", "d", "<eos>"), 4, 1, ("x",), verifier=lambda p, t: 0.0, name="one step")
    f0 = occupancy_from_probs(four, np.array([[0.1, 0.25, 0.35, 0.3, 0.0]]))
    f1 = occupancy_from_probs(four, np.array([[0.25, 0.3, 0.45, 0.0, 0.0]]))
    tiny = _tiny_world()
    t0 = occupancy_from_probs(tiny, np.array([[0.3, 0.7]]))
    t1 = occupancy_from_probs(tiny, np.array([[0.9, 0.1]]))
    cases = [
        Case("hidden-path (horizon 3): base -> after 60 SFT steps on 8 demonstrations, eps = 1e-3",
             (o_hb, o_ha, 1e-3)),
        Case("many-paths: base -> after SFT on its own correct samples, eps = 1e-3 (demonstrations "
             "already in support)", (o_mb, o_ma, 1e-3)),
        Case("a one-step world, d_before = (0.1, 0.25, 0.35, 0.3, 0) -> d_after = (0.25, 0.3, 0.45, 0, 0), "
             "eps = 0.25: pairs at eps before and after", (f0, f1, 0.25)),
        Case(f"hidden-path, base -> SFT, eps = {tie_after:.6g}, exactly d_after(q0 root, h)", (o_hb, o_ha, tie_after)),
        Case("hidden-path: the SFT policy as 'before' and the base as 'after', eps = 1e-3", (o_ha, o_hb, 1e-3)),
        Case(f"many-paths: the base policy before and after (nothing changes), eps = {tie_same:.6g}, "
             "exactly the occupancy of some pairs", (o_mb, o_mb, tie_same)),
        Case("a one-prompt world with horizon 1: pi = (0.3, 0.7) -> (0.9, 0.1), eps = 0.5", (t0, t1, 0.5)),
    ]
    for case in cases:
        before, after, eps = case.args
        assert isinstance(before, Occupancy)
        mdp = before.mdp
        expected = expanded_variant(before, after, eps)
        got = case.call(fn)
        e0, e1 = before.sa >= eps, after.sa >= eps
        compare(got, expected, case=case, what="your expanded set",
                where=lambda idx, mdp=mdp, b=before, a=after: describe_pair(mdp, *idx)
                + f" (d_before = {b.sa[idx]:.6g}, d_after = {a.sa[idx]:.6g})",
                mistakes={
                    "you returned E_eps(after), the whole support after training; Eq. 6 keeps only the "
                    "pairs that were NOT in E_eps(before)": e1,
                    "you returned the attrited set (Eq. 8): in the support before, out of it after; the "
                    "expanded set is the other way round": e0 & ~e1,
                    "you returned every pair whose membership changed (expanded and attrited together); "
                    "keep only those that entered the support": e0 ^ e1,
                    "you returned the shared support C_eps (Eq. 7), the pairs in both supports": e0 & e1,
                    "you returned the pairs outside E_eps(before) without asking that they are in "
                    "E_eps(after)": ~e0,
                    "a pair whose occupancy equals eps exactly is in the support (Eq. 5 uses >=): use "
                    "d_after >= eps, not >": expanded_variant(before, after, eps, after_ge=False),
                    "a pair with d_before exactly eps was already in E_eps(before), so it did not "
                    "expand: use d_before < eps, not <=": expanded_variant(before, after, eps, before_lt=False),
                    "both comparisons are off at eps itself: the support is d >= eps, so use d_after >= eps "
                    "and d_before < eps": expanded_variant(before, after, eps, after_ge=False, before_lt=False),
                    "you thresholded the change d_after - d_before; Eq. 6 asks whether a pair crosses "
                    "into the support: d_after >= eps and d_before < eps": after.sa - before.sa >= eps,
                    "you thresholded pi(a|s) (occ.probs), the action availability alone; Eq. 6 uses the "
                    "occupancy d(s, a) = occ.sa": (after.probs >= eps) & (before.probs < eps),
                    "you compared state occupancies d(s) (occ.s); Eq. 6 uses the state-action occupancy "
                    "d(s, a) = occ.sa": np.broadcast_to(((after.s >= eps) & (before.s < eps))[:, None],
                                                        after.sa.shape),
                    "return the mask itself, not its size (the size is mask.sum())": int(expected.sum()),
                })
    return (f"{len(cases)} cases: real expansion, nothing to expand, pairs exactly at eps, roles swapped, "
            "the same policy twice and a horizon-1 world")
