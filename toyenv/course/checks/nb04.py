"""Checks of notebook 04 (preference optimization): the DPO loss and the implicit reward.

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


# ------------------------------------------------------------------------------- 04.2
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


@exercise("04.2", notebook=NOTEBOOK, title="The implicit reward beta log(pi / pi_ref) (§4.2)",
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

