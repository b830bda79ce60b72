"""Checks of notebook 07 (support attrition, survey §3.3.4 Eq. 8, §6.4).

07.1  the attrition rate of a held-out set of prompts: the share of their old occupancy that left
      the support (Eq. 8), the quantity notebook 07 monitors;
07.2  experiment: choose a replay weight that keeps family B's support while SFT teaches family A
      (``toyenv.replay_sft``, run exactly by the check).

07.1's cases are tabular policies of the built-in worlds (random and base policies: no training
inside the check) with a tie at ε. Every typical mistake is computed as a
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


# ------------------------------------------------------------------------------------------ 07.1
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


@exercise("07.1", notebook=NOTEBOOK, title="Attrition rate of held-out prompts",
          hints=("The rate asks: of the behaviour the held-out prompts had before, what share was on pairs "
                 "that left the support? Which states belong to the held-out prompts, and which mass goes "
                 "above and which below the fraction bar?",
                 "Select the states of the held-out prompts (mdp.prompt_of gives each state's prompt). "
                 "Numerator: the old occupancy d_before summed over their attrited pairs (Eq. 8: in the "
                 "support before, below eps after). Denominator: d_before summed over all their pairs. The rate is the ratio, one "
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


# ------------------------------------------------------------------------------------------ 07.2
REPLAY = dict(steps=40, lr=1e-3, seed=0, eps=1e-3, min_gain=0.9, min_retained=0.95)
"""Exercise 07.2's fixed setting and criterion: 40 SFT steps on family A (lr 1e-3, seed 0) from the
two-skills base transformer, replaying the base on family B; pass when family A's success is at
least ``min_gain`` and family B keeps at least ``min_retained`` of its old occupancy in the support
(held-out attrition rate at ``eps`` at most 1 - min_retained)."""


def run_replay(weight: float) -> dict:
    """Run exercise 07.2's experiment exactly: A's success, B's success and B's retained share."""
    from toyenv.analysis.forgetting import family_demos, family_success, replay_sft
    from toyenv.core.exact import held_out_attrition
    from toyenv.methods.fit import base_transformer
    mdp = _world("two-skills")
    tf = base_transformer(mdp)
    B = np.nonzero(np.asarray(mdp.info["family"]) == 1)[0]
    run = replay_sft(tf, family_demos(mdp, 0), B, float(weight), steps=REPLAY["steps"], lr=REPLAY["lr"],
                     seed=REPLAY["seed"], num_snapshots=2)
    fs = family_success(run.policy)
    return {"weight": float(weight), "gain": float(fs[0]), "other": float(fs[1]),
            "retained": 1.0 - held_out_attrition(tf, run.policy, REPLAY["eps"], B)}


@exercise("07.2", notebook=NOTEBOOK, title="Experiment: a replay weight that keeps the held-out family",
          kind="experiment",
          hints=("Two things pull on the weight. With none, the shared parameters carry 'start with a' over "
                 "to family B; with all of it, nothing teaches family A. Try a few weights with "
                 "toyenv.replay_sft and measure both numbers before you commit.",
                 "Run replay_sft with the setting of the exercise for weights spread over [0, 1] (say 0, 0.1, "
                 "0.3, 0.6, 1), and for each compute family A's success (toyenv.family_success) and one minus "
                 "the held-out attrition rate of family B at eps = 1e-3 (toyenv.held_out_attrition). Keep a "
                 "weight where the first is at least 0.9 and the second at least 0.95; a weight in the middle "
                 "of that range is safest."),
          reread="notebook 07's sections on monitoring attrition and on replay")
def check_replay_weight(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise Failed(f"give the replay weight as a number between 0 and 1, not {type(value).__name__}")
    w = float(value)
    if not 0.0 <= w <= 1.0:
        raise Failed(f"the replay weight must lie in [0, 1] (0 is plain SFT, 1 only replays); got {value!r}")
    r = run_replay(w)
    gain_ok, keep_ok = r["gain"] >= REPLAY["min_gain"], r["retained"] >= REPLAY["min_retained"]
    said = (f"with weight {w:g}, family A's success is {r['gain']:.3f} (needed >= {REPLAY['min_gain']}) and "
            f"family B keeps {r['retained']:.1%} of its old occupancy in the support (needed >= "
            f"{REPLAY['min_retained']:.0%}; its success is {r['other']:.3f})")
    if not keep_ok and not gain_ok:
        raise Failed(said + ": neither criterion holds; re-run the weights you tried and read both numbers")
    if not keep_ok:
        raise Failed(said + ": too little replay. The shared weights carry family A's first token over to family "
                     "B and its old behaviour leaves the support (Eq. 8); raise the weight")
    if not gain_ok:
        raise Failed(said + ": too much replay. The replay term dominates the loss and family A learns too "
                     "slowly in 40 steps; lower the weight")
    return (said + ": a little supervised replay of the old model's own behaviour on the held-out prompts "
            "keeps them in the support while the new skill is learned (§4.3 replay, §6.4)")
