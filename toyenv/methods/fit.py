"""Fitting a policy to a target policy by exact forward KL over the tree, and a cached transformer
copy of each world's base policy.

The worlds define their base ("pretrained") policy as a table. Forgetting and transfer need shared
parameters, so the course also needs a *transformer* that behaves like the base policy:
:func:`base_transformer` fits one (exact forward KL, a few seconds) and keeps it in memory, so
every notebook cell that asks for the same world and settings gets a copy of the same fit.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from .loop import Run, check_loop_options, check_policy, single_thread, train  # noqa: F401 (single_thread is re-exported)
from ..core.passes import reach_from_probs
from ..core.policies import Policy, TransformerPolicy
from ..core.tree import TokenMDP, check_same_world

FIT_STEPS = 300
"""Default number of Adam updates of :func:`base_transformer`."""
FIT_LR = 1e-2
"""Default Adam learning rate of :func:`base_transformer`."""


def fit(policy: Policy, target: Policy, *, steps: int = FIT_STEPS, lr: float = FIT_LR, seed: int = 0,
        prompt_weights="uniform", **train_options) -> Run:
    """Fit a copy of ``policy`` to ``target`` by minimising the exact forward KL(target‖policy).

    The loss is Σ_x w(x) Σ_s reach_target(s)·KL(target(·|s)‖pi(·|s)), the chain-rule form of the
    sequence-level KL (the chain rule over the tree): every state is weighted by how often the target
    visits it, so the fit is exact where the target goes and free where it never goes. It is
    off-policy distillation with the teacher's states enumerated (survey §4.4).

    Args:
        policy: the policy to fit (usually a fresh :class:`TransformerPolicy`); copied.
        target: a policy of the same world (e.g. ``mdp.base_policy()``).
        prompt_weights: "uniform" (every prompt counts equally, default: a base policy must be
            fitted on prompts the world gives zero evaluation weight too, e.g. the scaffold's hinted
            prompts), "world" (the world's D(x)), or an array ``[P]``.
        steps, lr, seed, train_options: as in :func:`toyenv.train.train` (Adam, full batch).

    The history adds ``fit_kl``, the weighted KL(target‖pi) in nats (the loss).
    """
    check_policy(policy)
    check_policy(target, "target")
    check_loop_options(steps, lr, seed, train_options)
    mdp = policy.mdp
    check_same_world(mdp, target.mdp, "target policy")
    w = _prompt_weights(mdp, prompt_weights)
    with torch.no_grad():
        t_logp = target.log_probs().detach()
    t_p = t_logp.exp().numpy()
    state_w = torch.as_tensor(w[mdp.prompt_of] * reach_from_probs(mdp, t_p))          # [S]
    t_ent = (t_logp.exp() * t_logp).sum(-1)                                           # [S] -H(T(.|s))

    def objective(pi, log_probs, step, rng):
        ce = -(t_logp.exp() * log_probs).sum(-1)                                      # [S]
        loss = (state_w * (ce + t_ent)).sum()
        return loss, {"fit_kl": float(loss.detach())}

    config = dict(steps=steps, lr=lr, seed=seed, prompt_weights=prompt_weights
                  if isinstance(prompt_weights, str) else "custom")
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="fit", config=config,
                 **train_options)


def _prompt_weights(mdp: TokenMDP, prompt_weights) -> np.ndarray:
    if isinstance(prompt_weights, str):
        if prompt_weights == "uniform":
            return np.full(mdp.num_prompts, 1.0 / mdp.num_prompts)
        if prompt_weights == "world":
            return mdp.prompt_weights
        raise ValueError(f"prompt_weights must be 'uniform', 'world' or an array of {mdp.num_prompts} "
                         f"weights, got {prompt_weights!r}")
    w = np.asarray(prompt_weights, float)
    if w.shape != (mdp.num_prompts,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"prompt_weights must be {mdp.num_prompts} non-negative numbers with a positive "
                         f"sum, got {prompt_weights!r}")
    return w / w.sum()


# --------------------------------------------------------------------------- cached base transformer
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 16


def _key(mdp: TokenMDP, seed, steps, lr, model_kw) -> tuple:
    base = mdp.base_policy().probs()
    digest = hashlib.sha1(np.ascontiguousarray(np.round(base, 12)).tobytes()).hexdigest()
    return (mdp.signature, digest, int(seed), int(steps), float(lr), tuple(sorted(model_kw.items())))


def base_transformer(mdp: TokenMDP, seed: int = 0, *, steps: int = FIT_STEPS, lr: float = FIT_LR,
                     return_run: bool = False, **model_kw):
    """A :class:`TransformerPolicy` fitted to ``mdp.base_policy()`` (exact forward KL, :func:`fit`).

    The fit is cached in memory, keyed by the world's signature, its base policy, ``seed``, the fit
    settings and the model settings (``d_model``, ``n_layers``, ``n_heads``), so repeated calls (and
    every notebook in one kernel) reuse it. Each call returns an independent copy bound to ``mdp``.
    ``return_run=True`` returns ``(policy, run)`` with the fit's history (``fit_kl`` per step).

    Example::

        mdp = toyenv.make("two-skills")
        tf = toyenv.base_transformer(mdp)          # seconds the first time, instant afterwards
        toyenv.kl(mdp.base_policy(), tf)           # small: the transformer behaves like the base
    """
    if not isinstance(mdp, TokenMDP):
        raise TypeError(f"base_transformer needs a TokenMDP (toyenv.make(...)), got {type(mdp).__name__}")
    key = _key(mdp, seed, steps, lr, model_kw)
    if key not in _CACHE:
        student = TransformerPolicy(mdp, seed=seed, **model_kw)
        run = fit(student, mdp.base_policy(), steps=steps, lr=lr, seed=seed, num_snapshots=2)
        _CACHE[key] = run
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    run = _CACHE[key]
    policy = run.policy.frozen()
    for prm in policy.parameters():
        prm.requires_grad_(True)
    policy.mdp = mdp
    return (policy, run) if return_run else policy


def clear_cache():
    """Forget every cached :func:`base_transformer` fit."""
    _CACHE.clear()
