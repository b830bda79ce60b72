"""Checks of notebook 07 (support attrition, survey §3.3.4 Eq. 8, §6.4).

07.1  the attrited set A_ε = E_ε(before) \\ E_ε(after) from two occupancies (Eq. 8);
07.2  the attrition rate of a held-out set of prompts: the share of their old occupancy that left
      the support, the quantity notebook 07 monitors.

Cases are tabular policies of the built-in worlds (random and base policies: no training inside a
check) plus small hand-built occupancies with ties at ε. Every typical mistake is computed as a
variant and named in the hint (see :func:`toyenv.checks.compare`).
"""
from __future__ import annotations

import numpy as np

from .framework import Case, Failed, compare, describe_pair, exercise

NOTEBOOK = "07_support_attrition"


def _world(name, **kw):
    from toyenv.core.presets import make
    return make(name, **kw)


def _pairs():
    """(name, mdp, d_before [S, V], d_after [S, V]) cases: real occupancies of tabular policies."""
    from toyenv.core.exact import occupancy
    from toyenv.core.policies import TabularPolicy
    out = []
    mp = _world("many-paths")
    out.append(("many-paths: two random policies", mp, occupancy(TabularPolicy(mp, seed=1, scale=2.0)).sa,
                occupancy(TabularPolicy(mp, seed=2, scale=2.0)).sa))
    ts = _world("two-skills")
    base = ts.base_policy()
    # family A sharpened by hand (a tabular "after"): family B rows untouched, A's answer raised
    p = base.probs().copy()
    fam = np.asarray(ts.info["family"])[ts.prompt_of]
    a_root = (ts.depth == 0) & (fam == 0)
    p[a_root] = [0.9, 0.04, 0.04, 0.02]
    out.append(("two-skills: base -> family A sharpened (tabular)", ts, occupancy(base).sa,
                occupancy(TabularPolicy.from_probs(ts, p)).sa))
    sc = _world("scaffold")
    out.append(("scaffold: base -> random policy (hinted prompts have D(x) = 0)", sc,
                occupancy(sc.base_policy()).sa, occupancy(TabularPolicy(sc, seed=3, scale=1.5)).sa))
    return out


def _tie_case():
    """A hand-built 4x3 occupancy with entries exactly at ε = 0.1 before and after."""
    before = np.array([[0.10, 0.30, 0.05],
                       [0.20, 0.10, 0.00],
                       [0.05, 0.15, 0.05],
                       [0.25, 0.12, 0.00]])
    after = np.array([[0.05, 0.30, 0.20],
                      [0.10, 0.09, 0.06],
                      [0.00, 0.10, 0.05],
                      [0.02, 0.20, 0.00]])
    return before, after, 0.1


def attrited_variant(d_before, d_after, eps, kind="right"):
    """The attrited set (``kind="right"``) and the sets typical mistakes give, ``[S, V]`` bool."""
    b, a = np.asarray(d_before), np.asarray(d_after)
    e0, e1 = b >= eps, a >= eps
    return {
        "right": e0 & ~e1,
        "expanded": e1 & ~e0,
        "shared": e0 & e1,
        "xor": e0 ^ e1,
        "strict-before": (b > eps) & ~e1,
        "strict-after": e0 & ~(a > eps),
        "strict-both": (b > eps) & ~(a > eps),
        "decrease": a < b,
        "decrease-in-support": e0 & (a < b),
        "after-only": ~e1,
    }[kind]


_MASK_HINTS = {
    "expanded": "you returned the expanded set (Eq. 6: in support after, not before); the attrited set "
                "(Eq. 8) is the other way round: in E_eps before, out of it after",
    "shared": "you returned the shared support C_eps (Eq. 7: in support before and after); attrited pairs are "
              "in E_eps before but no longer after",
    "xor": "you returned every pair whose membership changed (expanded and attrited together); Eq. 8 keeps only "
           "the pairs that left: in E_eps before and not after",
    "strict-before": "a pair with d_before exactly eps was in the support (Eq. 5 uses >=), so it can be attrited: "
                     "use d_before >= eps",
    "strict-after": "a pair with d_after exactly eps is still in the support after (Eq. 5 uses >=), so it is not "
                    "attrited: the test for leaving is d_after < eps",
    "strict-both": "the support is d >= eps (Eq. 5), before and after: a pair is attrited when "
                   "d_before >= eps and d_after < eps",
    "decrease": "you returned every pair whose occupancy fell; attrition is about leaving the support, not any "
                "decrease: a pair that drops from 0.3 to 0.2 is reshaped, still shared",
    "decrease-in-support": "a pair that lost occupancy but still has d_after >= eps stays in the support "
                           "(reshaping, Eq. 7); attrited pairs end below eps",
    "after-only": "you returned every pair outside the support after, including pairs that were never in it; "
                  "a pair can only be attrited if it was in E_eps before (d_before >= eps)",
}


@exercise("07.1", notebook=NOTEBOOK, title="The attrited set (Eq. 8)",
          hints=("Attrition is the mirror image of expansion. Which pairs were in E_eps before training, and "
                 "which of those are no longer in it after?",
                 "A pair is attrited when d_before is at least eps (in the support before; Eq. 5 uses >=) "
                 "and d_after is below eps (out of it after): Eq. 8. Combine the two entry-wise comparisons "
                 "with a logical and; the answer is that boolean mask, the shape of d_before."),
          reread="notebook 07's section 'attrition is a set' (Eq. 8)",
          forbid=("toyenv.support_change", "toyenv.core.exact.support_sets",
                  "toyenv.course.checks.nb07.attrited_variant"),
          own="compare the two occupancies with eps yourself")
def check_attrited_set(fn):
    cases = []
    for name, mdp, b, a in _pairs():
        for eps in (1e-2, 1e-3):
            cases.append((Case(f"{name}, eps = {eps:g}", (b, a, eps)), mdp))
    tb, ta, teps = _tie_case()
    cases.append((Case("a hand-built 4x3 occupancy with entries exactly at eps = 0.1, before and after",
                       (tb, ta, teps)), None))
    _, mdp0, b0, _ = _pairs()[0]
    cases.append((Case("the same policy before and after (nothing can be attrited)", (b0, b0.copy(), 1e-3)), mdp0))
    for case, mdp in cases:
        b, a, eps = case.args
        expected = attrited_variant(b, a, eps)
        got = case.call(fn)
        arr = np.asarray(got) if got is not None and np.ndim(got) else None
        if arr is not None and arr.shape == expected.shape and arr.dtype != object and \
                not np.any(arr) and np.any(expected):
            raise Failed(f"your attrited set on {case.name} is empty, but {int(expected.sum())} pairs left the "
                         "support there: a pair is attrited when d_before >= eps and d_after < eps")
        where = (lambda idx, mdp=mdp, b=b, a=a: describe_pair(mdp, *idx)
                 + f" (d_before = {b[idx]:.4g}, d_after = {a[idx]:.4g})") if mdp is not None else \
            (lambda idx, b=b, a=a: f"entry {idx} (d_before = {b[idx]:.4g}, d_after = {a[idx]:.4g})")
        compare(got, expected, case=case, what="your attrited set", where=where,
                mistakes={h: v for k, h in _MASK_HINTS.items() if (v := attrited_variant(b, a, eps, k)).any()} | {
                    "return the mask itself, not the number of attrited pairs (that is mask.sum())":
                        int(expected.sum())})
    return (f"{len(cases)} cases: three worlds at two thresholds, ties exactly at eps and an unchanged "
            "policy")


# ------------------------------------------------------------------------------------------ 07.2
def held_out_variant(mdp, d_before, d_after, eps, prompts, kind="right"):
    """Attrition rate of the prompts ``prompts`` and the values typical mistakes give."""
    b, a = np.asarray(d_before, float), np.asarray(d_after, float)
    rows = np.isin(mdp.prompt_of, np.asarray(prompts))[:, None]            # [S, 1]
    att = (b >= eps) & (a < eps)
    total = b[np.broadcast_to(rows, b.shape)].sum()
    if kind == "right":
        return (b * (att & rows)).sum() / total
    if kind == "mass":
        return (b * (att & rows)).sum()
    if kind == "whole-world":
        return (b * att).sum() / b.sum()
    if kind == "after-mass":
        return (a * (att & rows)).sum() / total
    if kind == "net":
        return ((b - a) * (att & rows)).sum() / total
    if kind == "count":
        return float((att & rows).sum())
    if kind == "count-share":
        return float((att & rows).sum()) / max(float((rows & (b >= eps)).sum()), 1.0)
    if kind == "drop":
        return (np.maximum(b - a, 0) * rows).sum() / total
    if kind == "normalise-support":
        return (b * (att & rows)).sum() / (b * ((b >= eps) & rows)).sum()
    if kind == "strict":
        att2 = (b > eps) & ~(a >= eps)
        return (b * (att2 & rows)).sum() / total
    if kind == "state-index":                      # prompts read as state indices
        r2 = np.zeros((mdp.num_states, 1), bool)
        r2[np.asarray(prompts)] = True
        t2 = b[np.broadcast_to(r2, b.shape)].sum()
        return (b * (att & r2)).sum() / t2 if t2 > 0 else np.nan
    raise ValueError(kind)


_RATE_HINTS = {
    "mass": "you returned the attrited mass itself; divide by the held-out prompts' total occupancy before "
            "(the sum of d_before over their states), so the rate does not depend on how many prompts there are",
    "whole-world": "you measured the whole world; keep only the states of the held-out prompts "
                   "(np.isin(mdp.prompt_of, prompts)) in both sums",
    "after-mass": "you summed d_after over the attrited pairs (what the new policy still puts there, each below "
                  "eps); the lost behaviour is the OLD occupancy d_before on those pairs",
    "net": "you subtracted what remains (d_before - d_after); report the old occupancy d_before of the "
           "attrited pairs, as toyenv.SupportChange.attrited_mass does",
    "count": "you counted attrited pairs; weigh each by its old occupancy d_before and divide by the held-out "
             "prompts' total d_before",
    "count-share": "you returned the share of support PAIRS that left; weigh pairs by their old occupancy "
                   "d_before (a rare pair leaving matters less than a frequent one)",
    "drop": "you added up every occupancy decrease on the held-out prompts; that includes reshaping inside "
            "the support. Only pairs that leave E_eps (d_before >= eps, d_after < eps) are attrited",
    "normalise-support": "you divided by the held-out prompts' occupancy INSIDE E_eps before; divide by all of "
                         "their occupancy before (sum of d_before over their states)",
    "strict": "the support is d >= eps (Eq. 5): a pair with d_before exactly eps is in it, one with d_after "
              "exactly eps stays in it",
    "state-index": "prompts are prompt indices, not state indices: select the states s with "
                   "mdp.prompt_of[s] in prompts",
}


@exercise("07.2", notebook=NOTEBOOK, title="Attrition rate of held-out prompts",
          hints=("The rate asks: of the behaviour the held-out prompts had before, what share was on pairs "
                 "that left the support? Which states belong to the held-out prompts, and which mass goes "
                 "above and which below the fraction bar?",
                 "Select the states of the held-out prompts (mdp.prompt_of gives each state's prompt). "
                 "Numerator: the old occupancy d_before summed over their attrited pairs (Eq. 8, as in "
                 "07.1). Denominator: d_before summed over all their pairs. The rate is the ratio, one "
                 "number between 0 and 1."),
          reread="notebook 07's section on monitoring attrition",
          forbid=("toyenv.held_out_attrition", "toyenv.support_change", "toyenv.core.exact.support_sets",
                  "toyenv.course.checks.nb07.held_out_variant"),
          own="select the held-out states and add up their attrited occupancy yourself")
def check_held_out_attrition(fn):
    cases = []
    ts = _world("two-skills")
    fam = np.asarray(ts.info["family"])
    for name, mdp, b, a in _pairs():
        if mdp.name == "two-skills":
            cases.append(Case(f"{name}, held out = family B (prompts 4-7), eps = 1e-3",
                              (mdp, b, a, 1e-3, list(np.nonzero(fam == 1)[0]))))
            cases.append(Case(f"{name}, held out = family A (prompts 0-3), eps = 1e-2",
                              (mdp, b, a, 1e-2, list(np.nonzero(fam == 0)[0]))))
        elif mdp.name == "many-paths":
            cases.append(Case(f"{name}, held out = the rare prompts {list(mdp.info['rare_prompts'])}, eps = 1e-3",
                              (mdp, b, a, 1e-3, list(mdp.info["rare_prompts"]))))
            cases.append(Case(f"{name}, held out = every prompt, eps = 1e-2",
                              (mdp, b, a, 1e-2, list(range(mdp.num_prompts)))))
            rows = np.isin(mdp.prompt_of, [0, 1])[:, None]
            tie = float(b[(b >= 1e-3) & (a < 1e-3) & rows].min())     # an attrited pair exactly at eps
            cases.append(Case(f"{name}, held out = prompts [0, 1], eps = {tie:.6g} (exactly the old "
                              "occupancy of one of their pairs)", (mdp, b, a, tie, [0, 1])))
        else:
            cases.append(Case(f"{name}, held out = prompts [1, 2], eps = 1e-3", (mdp, b, a, 1e-3, [1, 2])))
    _, mdp0, b0, _ = _pairs()[0]
    cases.append(Case("the same policy before and after, held out = [4, 5] (rate 0)",
                      (mdp0, b0, b0.copy(), 1e-3, [4, 5])))
    for case in cases:
        mdp, b, a, eps, prompts = case.args
        expected = held_out_variant(mdp, b, a, eps, prompts)
        got = case.call(fn)
        compare(got, expected, case=case, what="your attrition rate", rtol=1e-9, atol=1e-14,
                mistakes={h: held_out_variant(mdp, b, a, eps, prompts, k) for k, h in _RATE_HINTS.items()},
                diagnose=lambda x: ("A rate lies between 0 and 1." if not 0 <= float(x) <= 1 else None))
    return (f"{len(cases)} cases: three worlds, held-out families and rare prompts, two thresholds and an "
            "unchanged policy")
