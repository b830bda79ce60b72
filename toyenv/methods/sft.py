"""Supervised fine-tuning and its variants: SFT on demonstrations (survey §4.1), KL-anchored SFT
(§7.1.1), rejection-sampling fine-tuning (§4.3) and self-improvement by STaR rounds (§4.3, §5.3).
"""
from __future__ import annotations

import warnings

import numpy as np

from .data import _correct_samples, check_demos, token_targets
from .loop import (Run, check_count, check_nonnegative, check_loop_options, check_optional_count, check_policy, default_lr,
                   train)
import torch

from .losses import anchored_sft_loss, sft_loss


def _sft_objective(mdp, states, actions, batch_size):
    n = len(states)
    full = token_targets(mdp, states, actions)

    def objective(pi, log_probs, step, rng):
        if batch_size is None or batch_size >= n:
            targets = full
        else:
            idx = rng.choice(n, size=batch_size, replace=False)
            targets = token_targets(mdp, states[idx], actions[idx])
        return sft_loss(log_probs, targets)
    return objective


def sft(policy, demos, *, steps: int = 100, lr: float | None = None, batch_size: int | None = None,
        seed: int = 0, **train_options) -> Run:
    """Supervised fine-tuning: teacher-forced cross-entropy on demonstrations (survey §4.1).

    Provenance off-policy, interface token targets. ``demos``: ``[(prompt_index, tokens), ...]``
    as ``sample()`` and :func:`demonstrations` return (any completions, correct or not).
    ``batch_size=None`` uses all demonstrations each step; otherwise a minibatch drawn with ``seed``.
    ``train_options`` (snapshot_steps, num_snapshots, optimizer) go to :func:`train`.

    >>> run = toyenv.sft(base, toyenv.demonstrations(mdp, 32, seed=0), steps=100, seed=0)
    """
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    batch_size = check_optional_count(batch_size, "batch_size", fix="or batch_size=None for every demonstration")
    states, actions = check_demos(policy.mdp, demos)
    lr = default_lr(policy, lr, "sft")
    config = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, n_demos=len(states))
    return train(policy, _sft_objective(policy.mdp, states, actions, batch_size), steps=steps, lr=lr,
                 seed=seed, method="sft", config=config, **train_options)


def anchored_sft(policy, demos, *, beta: float = 1.0, reference=None, steps: int = 100, lr: float | None = None,
                 seed: int = 0, **train_options) -> Run:
    """KL-anchored SFT: cross-entropy on the demonstrations plus ``beta`` times the exact
    ``KL(pi || pi_ref)`` to a reference, by default the frozen input policy (survey §7.1.1).

    Provenance off-policy, interface token targets with a drift constraint
    (:func:`toyenv.methods.losses.anchored_sft_loss`). Plain :func:`sft` moves only the rows of
    demonstrated states, but it moves them as far as the demonstrations ask, and concentrating on a
    few demonstrations pushes the rest of the support out (attrition). The anchor keeps the learner
    near its reference where the demonstrations do not insist: one of §7.1.1's "model-aware" SFT
    objectives (anchored SFT, ref. [126]; a trust-region version is proximal SFT, ref. [124]).
    ``beta=0`` is :func:`sft` (full batch). ``demos`` as for :func:`sft`.

    >>> run = toyenv.methods.anchored_sft(base, toyenv.demonstrations(mdp, 8, seed=0), beta=1.0, steps=100)
    """
    check_policy(policy)
    check_policy(policy if reference is None else reference, "reference")
    check_loop_options(steps, lr, seed, train_options)
    beta = check_nonnegative(beta, "beta", fix="the weight of the KL anchor, e.g. beta=1.0 (0 is plain SFT)")
    states, actions = check_demos(policy.mdp, demos)
    mdp = policy.mdp
    targets = token_targets(mdp, states, actions)
    with torch.no_grad():
        ref_lp = (policy if reference is None else reference).log_probs().numpy()       # [S, V]

    def objective(pi, log_probs, step, rng):
        return anchored_sft_loss(mdp, log_probs, targets, ref_lp, beta=beta)

    lr = default_lr(policy, lr, "sft")
    config = dict(beta=beta, steps=steps, lr=lr, seed=seed, n_demos=len(states), reference_given=reference is not None)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="sft/anchored", config=config,
                 reference=reference, **train_options)


def rejection_sampling(policy, *, n_samples: int = 256, steps: int = 100, lr: float | None = None,
                       seed: int = 0, reward=None, **train_options) -> Run:
    """Rejection-sampling fine-tuning (RFT): sample one fixed batch from the input policy, keep the
    correct completions, SFT on them (survey §4.3).

    Provenance: self-generated but offline (filtered once, then fixed). Interface: verifier filter.
    If no sample is correct the run keeps the policy unchanged (``config["kept"] == 0``): the
    filter cannot create what sampling never produced.

    ``reward``: ``[S, V]`` terminal scores of the filter (default: the world's verifier); a sample
    is kept when its score is at least ``mdp.success_threshold``. A filter other than the verifier
    is how §4.3's risks are shown: an over-narrow filter, or an evaluator that checks a proxy.
    """
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    check_count(n_samples, "n_samples", fix="how many completions to sample and filter, e.g. n_samples=256")
    s, a = _correct_samples(policy, n_samples, seed, reward=reward)
    if len(s) == 0:
        warnings.warn(f"rejection_sampling: none of {n_samples} samples is correct; the policy will not move",
                      stacklevel=2)
    lr = default_lr(policy, lr, "sft")
    objective = _sft_objective(policy.mdp, s, a, None)
    config = dict(n_samples=n_samples, steps=steps, lr=lr, seed=seed, kept=len(s), reward_given=reward is not None)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="rft", config=config, **train_options)


def self_improve(policy, *, rounds: int = 4, n_samples: int = 128, steps_per_round: int = 25,
                 steps: int | None = None, lr: float | None = None, seed: int = 0, snapshot_steps=None,
                 num_snapshots: int | None = None, optimizer: str = "adam") -> Run:
    """Iterated self-improvement, STaR-style: each round samples from the *current* policy,
    keeps the correct completions and fine-tunes the current policy on them (survey §4.3, §5.3).

    Provenance: on-policy across rounds, offline within a round. Interface: verifier filter.
    The returned Run joins the rounds: steps count updates over all rounds, snapshots are kept at
    every round boundary, ``history["round"]`` says which round a row belongs to and
    ``config["kept"]`` lists the number of correct samples per round.

    ``steps`` (optional) is the total number of updates, ``rounds * steps_per_round``; give one of
    the two. ``snapshot_steps`` / ``num_snapshots`` count over all rounds and add to the round
    boundaries (default: the boundaries only); ``lr``, ``seed``, ``optimizer`` as in :func:`train`
    (the optimiser restarts each round).
    """
    check_policy(policy)
    rounds = check_count(rounds, "rounds", fix="the number of sample-filter-train rounds, e.g. rounds=4")
    check_count(n_samples, "n_samples", fix="how many completions to sample per round, e.g. n_samples=128")
    if steps is not None:
        check_count(steps, "steps", minimum=0, fix="the total number of updates over all rounds")
        if steps % rounds:
            raise ValueError(f"steps={steps} is not a multiple of rounds={rounds}: each round takes the same "
                             f"number of updates; pass steps_per_round instead, or a multiple of {rounds}")
        steps_per_round = steps // rounds
    steps_per_round = check_count(steps_per_round, "steps_per_round", minimum=0,
                                  fix="the number of updates per round, e.g. steps_per_round=25")
    total = rounds * steps_per_round
    options = {"optimizer": optimizer}
    if snapshot_steps is not None:
        options["snapshot_steps"] = snapshot_steps
    elif num_snapshots is not None:
        options["num_snapshots"] = num_snapshots
    check_loop_options(total, lr, seed, options)
    keep = {k * steps_per_round for k in range(rounds + 1)}
    if snapshot_steps is not None:
        keep |= {int(t) for t in snapshot_steps}
    elif num_snapshots is not None:
        keep |= set(np.round(np.linspace(0, total, num_snapshots)).astype(int).tolist())
    lr = default_lr(policy, lr, "sft")
    current, kept, runs = policy, [], []
    for k in range(rounds):
        s, a = _correct_samples(current, n_samples, seed + 1000 * k)
        kept.append(len(s))
        offset = k * steps_per_round
        local = [t - offset for t in sorted(keep) if offset <= t <= offset + steps_per_round]
        run = train(current, _sft_objective(policy.mdp, s, a, None), steps=steps_per_round, lr=lr,
                    seed=seed + k, snapshot_steps=local, optimizer=optimizer)
        run.history["round"] = [float(k)] * len(run.history["step"])
        runs.append(run)
        current = run.policy
    config = dict(rounds=rounds, n_samples=n_samples, steps_per_round=steps_per_round, steps=total, lr=lr,
                  seed=seed, optimizer=optimizer, kept=kept)
    return _concat(runs, "self-improve", config)


def _concat(runs: list, method: str, config: dict) -> Run:
    """Join consecutive runs: steps are offset, the first row of each later run is dropped
    (it repeats the previous run's last row)."""
    history, snapshots, offset = {}, [], 0
    for i, run in enumerate(runs):
        start = 0 if i == 0 else 1
        for k, col in run.history.items():
            vals = [v + offset for v in col] if k == "step" else col
            history.setdefault(k, []).extend(vals[start:])
        snapshots += [(s + offset, p) for s, p in run.snapshots if i == 0 or s > 0]
        offset += run.history["step"][-1]
    return Run(runs[-1].policy, snapshots, history, method, config)
