"""Fitting a policy to a target policy by exact forward KL over the tree, and a cached transformer
copy of each world's base policy.

The worlds define their base ("pretrained") policy as a table. Forgetting and transfer need shared
parameters, so the course also needs a *transformer* that behaves like the base policy:
:func:`base_transformer` fits one (exact forward KL, a few seconds) and keeps it in memory, so
every notebook cell that asks for the same world and settings gets a copy of the same fit (and, when
``TOYENV_CACHE_DIR`` is set, on disk, so other processes load it instead of fitting it again).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import tempfile
from collections import OrderedDict
from functools import cache

import numpy as np
import torch

from . import loop
from .loop import Run, check_loop_options, check_policy, single_thread, train  # noqa: F401 (single_thread is re-exported)
from ..core import exact, passes, policies, tree
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

    Opt-in disk cache: when the environment variable ``TOYENV_CACHE_DIR`` names a directory, the
    fit is also stored there (weights, history, config; ``torch.save``) and other processes load it
    instead of fitting again: bit-identical parameters and history. The file's key adds torch's and
    numpy's versions, torch's thread count, toyenv's version and the source of the modules the fit
    runs, so an edited fit never loads an old result; an unreadable file is fitted again. ``make
    test`` sets it to a temporary directory for the session; unset (the default), nothing is written.

    Example::

        mdp = toyenv.make("two-skills")
        tf = toyenv.base_transformer(mdp)          # seconds the first time, instant afterwards
        toyenv.kl(mdp.base_policy(), tf)           # small: the transformer behaves like the base
    """
    if not isinstance(mdp, TokenMDP):
        raise TypeError(f"base_transformer needs a TokenMDP (toyenv.make(...)), got {type(mdp).__name__}")
    key = _key(mdp, seed, steps, lr, model_kw)
    if key not in _CACHE:
        path = _disk_path(key)
        run = _load(path, mdp, seed, model_kw) if path is not None else None
        if run is None:
            student = TransformerPolicy(mdp, seed=seed, **model_kw)
            run = fit(student, mdp.base_policy(), steps=steps, lr=lr, seed=seed, num_snapshots=2)
            if path is not None:
                _save(path, run)
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


@cache
def _sources_digest() -> str:
    """The source of the modules a fit runs: editing any of them changes the disk key."""
    h = hashlib.sha256()
    for module in (tree, passes, exact, policies, loop, sys.modules[__name__]):
        h.update(pathlib.Path(module.__file__).read_bytes())
    return h.hexdigest()


def _disk_path(key: tuple) -> pathlib.Path | None:
    """The file of ``key`` in ``$TOYENV_CACHE_DIR``, or None when the variable is unset or empty."""
    folder = os.environ.get("TOYENV_CACHE_DIR")
    if not folder:
        return None
    version = sys.modules["toyenv"].__version__        # the package this module belongs to (imported)
    full = (key, torch.__version__, np.__version__, torch.get_num_threads(), version, _sources_digest())
    return pathlib.Path(folder) / f"base_transformer-{hashlib.sha256(repr(full).encode()).hexdigest()[:32]}.pt"


def _save(path: pathlib.Path, run: Run):
    """Write ``run`` (weights of the final policy and of each snapshot, history, config) atomically:
    a temporary file in the same directory, then renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(policy=run.policy.model.state_dict(), history=run.history, method=run.method,
                 config=run.config, snapshots=[(step, pi.model.state_dict()) for step, pi in run.snapshots])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: pathlib.Path, mdp: TokenMDP, seed: int, model_kw: dict) -> Run | None:
    """The :class:`Run` stored at ``path``, or None when there is none or it cannot be read."""
    def policy(weights, trainable):
        pi = TransformerPolicy(mdp, seed=seed, **model_kw)
        pi.model.load_state_dict(weights)
        for prm in pi.parameters():
            prm.requires_grad_(trainable)
        return pi

    try:
        state = torch.load(path, weights_only=True)
        return Run(policy(state["policy"], True), [(step, policy(w, False)) for step, w in state["snapshots"]],
                   state["history"], state["method"], state["config"])
    except Exception:                   # none yet, or a truncated or foreign file: fit (and write) again
        return None


def clear_cache():
    """Forget every cached :func:`base_transformer` fit."""
    _CACHE.clear()
