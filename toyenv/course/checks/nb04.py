"""Checks of notebook 04 (preference optimization): the DPO loss, the shared support, the implicit
reward and a prediction about beta in hard-label DPO.

Registered with :mod:`toyenv.checks` (``checks.check("04.1", fn)``); see that module for the
machinery. Each check computes the answer of every typical mistake and names the one the learner's
answer matches.
"""
from __future__ import annotations

import functools

import numpy as np

from .framework import Case, Failed, _as_array, _tiny_world, _world, compare, describe_pair, exercise

NOTEBOOK = "04_preference_optimization"


# ------------------------------------------------------------------------------- 04.1
def _log_sigmoid(m: np.ndarray) -> np.ndarray:
    """log sigmoid(m), stable for large |m|."""
    return -np.logaddexp(0.0, -m)


def dpo_variant(lw, ll, rw, rl, beta, *, margin: str = "right", loss: str = "nll", reduce: str = "mean"):
    """The DPO loss (Rafailov et al. 2023) on summed log-probs ``[B]`` with the choices a learner can
    get wrong. Defaults give the right answer: ``-mean log sigmoid(beta ((lw - rw) - (ll - rl)))``."""
    lw, ll, rw, rl = (np.asarray(v, dtype=np.float64) for v in (lw, ll, rw, rl))
    m = {"right": beta * ((lw - rw) - (ll - rl)),
         "no-ref": beta * (lw - ll),
         "flipped": beta * ((ll - rl) - (lw - rw)),
         "no-beta": (lw - rw) - (ll - rl),
         "over-beta": ((lw - rw) - (ll - rl)) / beta,
         "plus-ref": beta * ((lw + rw) - (ll + rl))}[margin]
    per = {"nll": -_log_sigmoid(m),
           "no-minus": _log_sigmoid(m),
           "prob": 1.0 / (1.0 + np.exp(np.clip(-m, -700, 700))),
           "one-minus-prob": 1.0 - 1.0 / (1.0 + np.exp(np.clip(-m, -700, 700)))}[loss]
    return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduce]


_MARGIN_HINT = {
    "no-ref": "you left out the reference: the margin is beta * [(logp_w - ref_logp_w) - (logp_l - ref_logp_l)], "
              "the difference of the two implicit rewards, not of the raw log-probs",
    "flipped": "your margin has the wrong sign: it is chosen minus rejected, beta * [(logp_w - ref_logp_w) - "
               "(logp_l - ref_logp_l)], and the loss is small when the chosen answer gained more",
    "no-beta": "you left out beta: the margin is beta times the difference of log-ratios",
    "over-beta": "you divided by beta; the margin is beta times the difference of log-ratios",
    "plus-ref": "you added the reference log-probs; the implicit reward is a log-ratio, "
                "logp - ref_logp, so subtract them",
}
_LOSS_HINT = {
    "no-minus": "your loss is the mean of log sigmoid(margin), which is negative; DPO minimises its negative, "
                "-log sigmoid(margin)",
    "prob": "you used sigmoid(margin) itself; the loss is the negative log-likelihood -log sigmoid(margin)",
    "one-minus-prob": "you used 1 - sigmoid(margin); the loss is the negative log-likelihood -log sigmoid(margin)",
}
_REDUCE_HINT = {"sum": "you summed over the pairs; the loss is the mean over pairs"}


def _dpo_mistakes(args) -> dict:
    out = {}
    for margin in ("right", *_MARGIN_HINT):
        for loss in ("nll", *_LOSS_HINT):
            for reduce in ("mean", "sum"):
                parts = ([_MARGIN_HINT[margin]] if margin != "right" else []) + \
                        ([_LOSS_HINT[loss]] if loss != "nll" else []) + \
                        ([_REDUCE_HINT[reduce]] if reduce != "mean" else [])
                if parts:
                    out["; and ".join(parts)] = dpo_variant(*args[:4], args[4], margin=margin, loss=loss,
                                                            reduce=reduce)
    out = dict(sorted(out.items(), key=lambda kv: kv[0].count("; and ")))
    out["return one number, the mean over pairs, not the loss of every pair"] = dpo_variant(*args[:4], args[4],
                                                                                            reduce="none")
    return out


def _dpo_cases():
    import torch
    g = torch.Generator().manual_seed(4)

    def rnd(n, scale=3.0):
        return -scale * torch.rand(n, generator=g, dtype=torch.float64) - 0.05

    lw, ll, rw, rl = rnd(6), rnd(6), rnd(6), rnd(6)
    same_w, same_l = rnd(4), rnd(4)
    big = torch.tensor([-1.0, -2001.0], dtype=torch.float64)           # log-ratio gaps of +-2000 nats
    return [
        Case("B = 6 pairs of random summed log-probs, beta = 0.1", (lw, ll, rw, rl, 0.1)),
        Case("B = 4 pairs where the policy equals the reference, beta = 0.5 (the loss must be log 2)",
             (same_w, same_l, same_w.clone(), same_l.clone(), 0.5)),
        Case("a single pair (B = 1), beta = 2", (lw[:1], ll[:1], rw[:1], rl[:1], 2.0)),
        Case("B = 2 pairs with huge margins, +800 and -800 (beta = 0.4)",
             (big, big.flip(0), torch.zeros(2, dtype=torch.float64) - 1001.0,
              torch.zeros(2, dtype=torch.float64) - 1001.0, 0.4)),
    ]


@exercise("04.1", notebook=NOTEBOOK, title="The DPO loss on summed log-probs (§4.2)",
          hints=("DPO compares how much the policy raised the chosen answer over the reference with how much "
                 "it raised the rejected one. What is that difference, and which function turns it into a "
                 "loss that stays finite for huge margins?",
                 "The margin of a pair is beta times [(logp_w - ref_logp_w) - (logp_l - ref_logp_l)], chosen "
                 "minus rejected. Its loss is minus log sigmoid(margin); the result is the mean over pairs. "
                 "Take a stable log-sigmoid (torch's logsigmoid, or minus softplus of minus the margin): a "
                 "plain log of a sigmoid gives inf at a margin of -800."),
          reread="notebook 04's section on the DPO loss (§4.2)",
          forbid=("toyenv.methods.losses.dpo_loss", "toyenv.course.checks.nb04.dpo_variant"),
          own="compute the margins and the loss yourself")
def check_dpo_loss(fn):
    cases = _dpo_cases()
    for case in cases:
        lw, ll, rw, rl, beta = case.args
        args = tuple(v.numpy() for v in (lw, ll, rw, rl)) + (beta,)
        expected = dpo_variant(*args)
        got = case.call(fn)
        arr = _as_array(got, np.asarray(expected), case, "your loss")
        if arr.dtype != object and arr.size and not np.all(np.isfinite(arr.astype(float))):
            raise Failed(f"your loss is {arr.astype(float).ravel()[0]} on {case.name}: -log(sigmoid(m)) "
                         "overflows when sigmoid(m) rounds to 0 (m = -800); use "
                         "-torch.nn.functional.logsigmoid(margin), or torch.nn.functional.softplus(-margin)")
        compare(got, expected, case=case, what="your loss", rtol=1e-9, atol=1e-12,
                mistakes=_dpo_mistakes(args))
    return (f"{len(cases)} batches: random pairs, the policy at the reference (log 2), a single pair and "
            "margins of +-800")


# ------------------------------------------------------------------------------- 04.3
def implicit_variant(mdp, traj, ref, beta, *, kind: str = "right") -> np.ndarray:
    """beta * log(pi(y|x) / pi_ref(y|x)) at terminal pairs (0 elsewhere), or a typical mistake."""
    T = mdp.terminal
    t = np.where(T, traj, 1.0)
    r = np.where(T, ref, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        val = {"right": beta * np.log(t / r),
               "inverted": beta * np.log(r / t),
               "no-beta": np.log(t / r),
               "over-beta": np.log(t / r) / beta,
               "difference": beta * (t - r),
               "log10": beta * np.log10(t / r),
               "log2": beta * np.log2(t / r),
               "weighted": beta * np.log(t / r) * mdp.prompt_weights[mdp.prompt_of][:, None],
               "ratio": beta * t / r}[kind]
    return np.where(T, val, 0.0)


_IMPLICIT_HINT = {
    "inverted": "your ratio is upside down: the implicit reward is beta * log(pi(y|x) / pi_ref(y|x)), "
                "positive where the policy raised an answer above the reference",
    "no-beta": "you left out beta: the implicit reward is beta * log(pi / pi_ref)",
    "over-beta": "you divided by beta; the implicit reward is beta * log(pi / pi_ref)",
    "difference": "you took beta * (pi - pi_ref); the implicit reward is beta times the log of the ratio, "
                  "beta * log(pi / pi_ref)",
    "log10": "you used log10; the implicit reward uses the natural logarithm (np.log)",
    "log2": "you used log2; the implicit reward uses the natural logarithm (np.log)",
    "weighted": "you multiplied by D(x); the implicit reward of an answer does not depend on how often its "
                "prompt is asked",
    "ratio": "you returned beta * pi / pi_ref; take the logarithm of the ratio",
}


@functools.cache
def _implicit_policies():
    from toyenv.methods import demonstrations, kl_optimum, sft
    from toyenv.core.policies import TabularPolicy
    mp = _world("many-paths")
    mb = mp.base_policy()
    rnd = TabularPolicy(mp, seed=11, scale=1.0)
    star = kl_optimum(mb, 0.5)
    hp = _world("hidden-path", horizon=3)
    hb = hp.base_policy()
    h_after = sft(hb, demonstrations(hp, 8, seed=0), steps=40, seed=0).policy
    return mb, rnd, star, hb, h_after


@exercise("04.3", notebook=NOTEBOOK, title="The implicit reward beta log(pi / pi_ref) (§4.2)",
          hints=("The implicit reward compares the policy with the reference on complete answers only. Where "
                 "are the complete answers in these [S, V] arrays, and what goes everywhere else?",
                 "At every terminal pair (mdp.terminal), the implicit reward is beta times the natural log "
                 "of traj_probs over ref_traj_probs (policy over reference); every other entry is 0. Take "
                 "the log only at terminal pairs, where both probabilities are positive, so that no inf or "
                 "nan appears elsewhere."),
          reread="notebook 04's section on what DPO cannot see, and the implicit reward of §4.2",
          forbid=("toyenv.course.checks.nb04.implicit_variant",),
          own="take the log-ratios yourself")
def check_implicit_reward(fn):
    from toyenv.core.exact import trajectory_probs
    mb, rnd, star, hb, h_after = _implicit_policies()
    tiny = _tiny_world()
    from toyenv.core.policies import TabularPolicy
    t_pi = TabularPolicy.from_probs(tiny, np.array([[0.8, 0.2]]))
    t_ref = TabularPolicy.from_probs(tiny, np.array([[0.4, 0.6]]))
    cases = [
        Case("many-paths: a random tabular policy against the base, beta = 0.1",
             (mb.mdp, trajectory_probs(rnd), trajectory_probs(mb), 0.1)),
        Case("many-paths: the KL-regularised optimum pi* against the base, beta = 0.5",
             (mb.mdp, trajectory_probs(star), trajectory_probs(mb), 0.5)),
        Case("hidden-path (horizon 3): a policy after 40 SFT steps against the base, beta = 2",
             (hb.mdp, trajectory_probs(h_after), trajectory_probs(hb), 2.0)),
        Case("many-paths: the base against itself (every implicit reward is 0), beta = 0.1",
             (mb.mdp, trajectory_probs(mb), trajectory_probs(mb), 0.1)),
        Case("a one-prompt world with horizon 1, pi = (0.8, 0.2), pi_ref = (0.4, 0.6), beta = 1",
             (tiny, trajectory_probs(t_pi), trajectory_probs(t_ref), 1.0)),
    ]
    for case in cases:
        mdp, traj, ref, beta = case.args
        expected = implicit_variant(mdp, traj, ref, beta)
        got = case.call(fn)
        arr = _as_array(got, expected, case, "your implicit rewards")
        if arr.shape == expected.shape and arr.dtype != object:
            bad = ~np.isfinite(arr.astype(float)) & ~mdp.terminal
            if bad.any():
                idx = tuple(np.argwhere(bad)[0])
                raise Failed(f"your implicit rewards hold inf or nan at {int(bad.sum())} pairs that end no "
                             f"trajectory (e.g. {describe_pair(mdp, *idx)}) on {case.name}: there both "
                             "probabilities are 0; compute the log only where mdp.terminal and put 0 elsewhere")
        compare(got, expected, case=case, what="your implicit rewards", rtol=1e-9, atol=1e-12,
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx),
                mistakes={h: implicit_variant(mdp, traj, ref, beta, kind=k) for k, h in _IMPLICIT_HINT.items()})
    return (f"{len(cases)} cases: a random policy, the closed-form optimum, ratios up to 1e5 after SFT, "
            "a policy against itself and a horizon-1 world")



# ------------------------------------------------------------------------------- 04.2
@functools.lru_cache(maxsize=1)
def _dpo_pair():
    """Notebook 04's DPO run: many-paths base -> 100 DPO steps on 64 sampled prompts' pairs."""
    from toyenv.methods import dpo, preference_pairs
    from toyenv.methods.fit import single_thread
    mp = _world("many-paths")
    mb = mp.base_policy()
    with single_thread():
        after = dpo(mb, preference_pairs(mb, 64, seed=0), beta=0.1, steps=100, seed=0).policy
    return mb, after


def shared_variant(before, after, eps, *, ge: bool = True) -> np.ndarray:
    """Eq. 7, C_eps = E_eps(before) & E_eps(after), with ``>=`` (right) or ``>``."""
    if ge:
        return (before.sa >= eps) & (after.sa >= eps)
    return (before.sa > eps) & (after.sa > eps)


@exercise("04.2", notebook=NOTEBOOK, title="The shared support C_eps (Eq. 7)",
          hints=("Eq. 7 is built from two effective supports (Eq. 5), one per policy. Which pairs belong to "
                 "both, and does the threshold include the boundary?",
                 "Compare each occupancy's state-action array with eps (at least eps counts as in support) "
                 "and keep the pairs that pass under both policies; the answer has the shape of the "
                 "occupancy arrays."),
          reread="notebook 04's section on Eq. 7, the shared support C_ε",
          forbid=("toyenv.support_sets", "toyenv.effective_support", "toyenv.support_change"),
          own="compare the two occupancies with eps yourself")
def check_shared_support(fn):
    from toyenv.core.exact import occupancy, occupancy_from_probs
    from toyenv.core.tree import TokenMDP
    mb, m_after = _dpo_pair()
    o_mb, o_ma = occupancy(mb), occupancy(m_after)
    values = np.unique(o_mb.sa[o_mb.sa > 0])
    tie = float(values[len(values) // 2])                  # some pairs sit exactly at eps
    four = TokenMDP(("a", "b", "c", "d", "<eos>"), 4, 1, ("x",), verifier=lambda p, t: 0.0, name="one step")
    f0 = occupancy_from_probs(four, np.array([[0.1, 0.25, 0.35, 0.3, 0.0]]))
    f1 = occupancy_from_probs(four, np.array([[0.25, 0.3, 0.45, 0.0, 0.0]]))
    tiny = _tiny_world()
    t0 = occupancy_from_probs(tiny, np.array([[0.3, 0.7]]))
    t1 = occupancy_from_probs(tiny, np.array([[0.9, 0.1]]))
    cases = [
        Case("a one-step world, d_before = (0.1, 0.25, 0.35, 0.3, 0) -> d_after = (0.25, 0.3, 0.45, 0, 0), "
             "eps = 0.25: pairs at eps before and after", (f0, f1, 0.25)),
        Case("many-paths: base -> after 100 DPO steps (notebook 04's run), eps = 1e-3", (o_mb, o_ma, 1e-3)),
        Case(f"many-paths: the base policy before and after (nothing changes), eps = {tie:.6g}, exactly the "
             "occupancy of some pairs", (o_mb, o_mb, tie)),
        Case("many-paths: the DPO policy as 'before' and the base as 'after', eps = 1e-3", (o_ma, o_mb, 1e-3)),
        Case("a one-prompt world with horizon 1: pi = (0.3, 0.7) -> (0.9, 0.1), eps = 0.5", (t0, t1, 0.5)),
    ]
    for case in cases:
        before, after, eps = case.args
        mdp = before.mdp
        expected = shared_variant(before, after, eps)
        got = case.call(fn)
        e0, e1 = before.sa >= eps, after.sa >= eps
        compare(got, expected, case=case, what="your shared support",
                where=lambda idx, mdp=mdp, b=before, a=after: describe_pair(mdp, *idx)
                + f" (d_before = {b.sa[idx]:.6g}, d_after = {a.sa[idx]:.6g})",
                mistakes={
                    "you returned the union E_eps(before) | E_eps(after); Eq. 7 is the intersection: pairs in "
                    "BOTH supports": e0 | e1,
                    "you returned E_eps(after), the whole support after training; C_eps also requires the pair "
                    "to have been in E_eps(before)": e1,
                    "you returned E_eps(before); C_eps also requires the pair to still be in E_eps(after)": e0,
                    "you returned the expanded set (Eq. 6), in the support after but not before": e1 & ~e0,
                    "you returned the attrited set (Eq. 8), in the support before but not after": e0 & ~e1,
                    "a pair whose occupancy equals eps exactly is in the support (Eq. 5 uses >=): use "
                    ">= eps, not >": shared_variant(before, after, eps, ge=False),
                    "you thresholded pi(a|s) (occ.probs), the action availability alone; Eq. 7 uses the "
                    "occupancy d(s, a) = occ.sa": (before.probs >= eps) & (after.probs >= eps),
                    "you compared state occupancies d(s) (occ.s); Eq. 7 uses the state-action occupancy "
                    "d(s, a) = occ.sa": np.broadcast_to(((before.s >= eps) & (after.s >= eps))[:, None],
                                                        after.sa.shape),
                    "you kept the pairs whose occupancy changed by less than eps; C_eps asks whether a pair "
                    "is in both supports, not how much it moved": np.abs(after.sa - before.sa) < eps,
                    "return the mask itself, not its size (the size is mask.sum())": int(expected.sum()),
                })
    return (f"{len(cases)} cases: a DPO run, pairs exactly at eps, swapped roles and a one-step world; "
            "C_eps = E_eps(before) & E_eps(after)")


# ------------------------------------------------------------------------------- 04.4
BETA_OPTIONS = {
    "falls like pi*": "the final KL falls about as much as the optimum's (ten times or more)",
    "falls a little": "the final KL falls, but by less than a factor of 4",
    "rises": "the final KL rises with beta",
}
"""Exercise 04.4's answers: what happens to the KL(pi || pi_ref) that hard-label DPO reaches after 100
steps when beta goes from 0.1 to 2."""
BETA_LOW, BETA_HIGH = 0.1, 2.0


@functools.cache
def hard_label_kl() -> dict:
    """The numbers exercise 04.4 is about, on notebook 04's pairs and its one-row-per-state policy:
    KL(pi || pi_ref) after 100 steps of hard-label DPO and of the closed-form optimum pi*_beta, for
    beta = 0.1 and 2, and the option they make right."""
    from toyenv.core.exact import kl
    from toyenv.core.policies import TabularPolicy
    from toyenv.methods import preference_pairs
    from toyenv.methods.dpo import dpo
    from toyenv.methods.rl import kl_optimum
    many = _world("many-paths")
    base = many.base_policy()
    pairs = preference_pairs(base, 64, seed=0, n_candidates=4)
    separate = TabularPolicy.from_probs(many, base.probs())
    out = {}
    for b in (BETA_LOW, BETA_HIGH):
        out[("dpo", b)] = float(kl(dpo(separate, pairs, beta=b, steps=100, seed=0).policy, separate))
        out[("star", b)] = float(kl(kl_optimum(separate, b), separate))
    dpo_ratio = out[("dpo", BETA_LOW)] / out[("dpo", BETA_HIGH)]
    star_ratio = out[("star", BETA_LOW)] / out[("star", BETA_HIGH)]
    answer = "rises" if dpo_ratio <= 1 else "falls a little" if dpo_ratio < 4 else \
        "falls like pi*" if dpo_ratio >= 10 else None
    return {"kl": out, "dpo_ratio": dpo_ratio, "star_ratio": star_ratio, "answer": answer}


def _option(value) -> str | None:
    """The option a learner's string names (case, spaces and quotes do not matter), else None."""
    if not isinstance(value, str):
        return None
    v = " ".join(value.strip().strip("'\"").lower().replace("π", "pi").split())
    return v if v in BETA_OPTIONS else None


@exercise("04.4", notebook=NOTEBOOK, title="Predict: does a larger beta stop hard-label DPO?", kind="predict",
          hints=("beta scales the margin inside the sigmoid. With label 1 for every pair, where is the loss "
                 "smallest, and does a larger beta move that place or only the speed of getting there?",
                 "The gradient of the loss with respect to a margin is sigma(m) - 1: negative at every finite "
                 "margin, so each pair's margin keeps growing whatever beta is. A larger beta only means that a "
                 "smaller change of the log-ratios buys the same margin; it does not set a stopping point as it "
                 "does for pi*, whose distance from the reference is fixed by beta. Decide whether the KL after "
                 "100 steps can shrink as fast as pi*'s does."),
          reread="notebook 04's section on the closed-form optimum and why hard labels overshoot it")
def check_beta_prediction(value):
    opt = _option(value)
    options = ", ".join(repr(k) for k in BETA_OPTIONS)
    if opt is None:
        raise Failed(f"your prediction is {type(value).__name__} {value!r}; answer with one of the options "
                     f"{options} (a string)")
    n = hard_label_kl()
    kl_ = n["kl"]
    facts = (f"From beta = {BETA_LOW:g} to {BETA_HIGH:g}, hard-label DPO ends at KL {kl_[('dpo', BETA_LOW)]:.2f} "
             f"and {kl_[('dpo', BETA_HIGH)]:.2f} nats (a factor {n['dpo_ratio']:.1f}), pi* at "
             f"{kl_[('star', BETA_LOW)]:.2f} and {kl_[('star', BETA_HIGH)]:.3f} (a factor {n['star_ratio']:.0f})")
    why = ("with hard labels the gradient of each pair is sigma(m) - 1 < 0 at every margin, so no beta makes it "
           "vanish: beta changes how far the log-ratios must move for a given margin, not where training stops "
           "(§4.2; the IPO critique)")
    if opt != n["answer"]:
        extra = {"falls like pi*": "You expected beta to hold DPO near the reference as it holds pi*, but ",
                 "rises": "The KL does fall with beta, a little: a larger beta reaches the same margin with smaller "
                          "log-ratios, but ",
                 "falls a little": "Here the KL changed by more than you predicted: "}[opt]
        raise Failed(f"you predicted {opt!r}. {facts}. {extra}{why}")
    return f"{opt!r}, as you predicted. {facts}: {why}"
