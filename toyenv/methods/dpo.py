"""Direct preference optimisation on fixed pairs (survey §4.2; Rafailov et al. 2023), and online DPO,
whose pairs are refreshed from the current learner (survey §4.2's last paragraph, Table 7 row 1)."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .data import _rewards_array, preference_pairs
from .loop import (Run, check_count, check_loop_options, check_optional_count, check_policy, check_positive,
                   default_lr, train)
from .losses import dpo_loss
from ..core.policies import as_pairs, sequence_log_prob
from ..core.tree import check_same_world


def dpo(policy, pairs=None, *, beta: float = 0.1, reference=None, steps: int = 100,
        lr: float | None = None, seed: int = 0, n_prompts: int = 64, n_candidates: int = 4,
        reward=None, batch_size: int | None = None, **train_options) -> Run:
    """Direct Preference Optimization on preference pairs (survey §4.2; Rafailov et al. 2023).

    Provenance off-policy, interface preferences. ``pairs``: ``[(prompt, chosen, rejected), ...]``;
    by default built by :func:`preference_pairs` from ``n_prompts`` prompts with ``n_candidates``
    samples of the input policy each, ranked by the verifier (or by ``reward [S, V]``).
    ``reference`` defaults to a frozen copy of the input policy. ``beta > 0`` is the KL weight of
    the implicit objective (small beta: far from the reference). An explicit empty ``pairs`` is an
    error; pairs built here may come out empty (every candidate tied), which warns and leaves the
    policy where it is: a preference method is blind to what it never compares.

    >>> run = toyenv.dpo(base, beta=0.1, steps=100, seed=0)
    """
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    beta = check_positive(beta, "beta", fix="the KL weight of DPO's implicit reward, e.g. beta=0.1")
    batch_size = check_optional_count(batch_size, "batch_size", fix="or batch_size=None for every pair")
    mdp = policy.mdp
    ref = policy.frozen() if reference is None else reference
    check_policy(ref, "reference")
    check_same_world(mdp, ref.mdp, "reference policy")
    if pairs is not None and len(pairs) == 0:
        raise ValueError("pairs is empty, so DPO would train on nothing: pass (prompt, chosen, rejected) "
                         "triples, e.g. toyenv.preference_pairs(policy, 64), or pairs=None to build them here")
    if pairs is not None:
        bad = next((k for k, t in enumerate(pairs) if not (isinstance(t, (tuple, list)) and len(t) == 3)), None)
        if bad is not None:
            raise ValueError(f"pairs[{bad}] is {pairs[bad]!r}; each pair must be a triple "
                             "(prompt_index, chosen_tokens, rejected_tokens), as toyenv.preference_pairs returns")
    pairs_given = pairs is not None
    if pairs is None:
        check_count(n_prompts, "n_prompts", fix="how many prompts to draw candidate pairs from, e.g. 64")
        check_count(n_candidates, "n_candidates", minimum=2, fix="samples per prompt; a pair needs two")
        pairs = preference_pairs(policy, n_prompts, seed=seed, reward=reward, n_candidates=n_candidates)
    if len(pairs) == 0:
        warnings.warn("dpo: no preference pairs (every candidate scored the same), so the policy will "
                      "not move; sample more candidates or use a graded reward", stacklevel=2)
    sw, aw = as_pairs(mdp, [(x, yw) for x, yw, _ in pairs]) if pairs else (np.zeros(0, int),) * 2
    sl, al = as_pairs(mdp, [(x, yl) for x, _, yl in pairs]) if pairs else (np.zeros(0, int),) * 2
    with torch.no_grad():
        ref_lp = ref.log_probs()
        ref_w, ref_l = sequence_log_prob(mdp, ref_lp, sw, aw), sequence_log_prob(mdp, ref_lp, sl, al)
    n = len(sw)

    def objective(pi, log_probs, step, rng):
        idx = np.arange(n) if batch_size is None or batch_size >= n else rng.choice(n, batch_size, replace=False)
        if n == 0:
            return 0.0 * log_probs.sum(), {"pref_acc": 0.0, "margin": 0.0}
        return dpo_loss(sequence_log_prob(mdp, log_probs, sw[idx], aw[idx]),
                        sequence_log_prob(mdp, log_probs, sl[idx], al[idx]),
                        ref_w[idx], ref_l[idx], beta=beta)

    lr = default_lr(policy, lr, "dpo")
    config = dict(beta=beta, steps=steps, lr=lr, seed=seed, n_pairs=n, n_prompts=n_prompts,
                  n_candidates=n_candidates, batch_size=batch_size, reward_given=reward is not None,
                  pairs_given=pairs_given)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="dpo", config=config,
                 reference=ref, **train_options)


def _pair_arrays(mdp, ref, pairs):
    """Terminal pairs of the chosen and rejected completions, and their reference log-probs."""
    sw, aw = as_pairs(mdp, [(x, yw) for x, yw, _ in pairs]) if pairs else (np.zeros(0, int),) * 2
    sl, al = as_pairs(mdp, [(x, yl) for x, _, yl in pairs]) if pairs else (np.zeros(0, int),) * 2
    with torch.no_grad():
        ref_lp = ref.log_probs()
        return sw, aw, sl, al, sequence_log_prob(mdp, ref_lp, sw, aw), sequence_log_prob(mdp, ref_lp, sl, al)


def online_dpo(policy, *, beta: float = 0.1, refresh: int = 10, reference=None, steps: int = 100,
               lr: float | None = None, seed: int = 0, n_prompts: int = 16, n_candidates: int = 4,
               reward=None, **train_options) -> Run:
    """Online DPO: the DPO loss on pairs sampled from the *current* learner, refreshed every
    ``refresh`` updates and labelled by the same evaluator (survey §4.2, last paragraph; Table 7 row 1;
    online / iterative DPO, e.g. Guo et al. 2024 "Direct language model alignment from online AI
    feedback", Xiong et al. 2024 iterative DPO).

    Provenance on-policy-like: at updates ``0, refresh, 2·refresh, ...`` a fresh batch of
    :func:`preference_pairs` is drawn from ``n_prompts`` prompts with ``n_candidates`` samples *of the
    policy being trained*, ranked by the verifier (or by ``reward [S, V]``), and the next ``refresh``
    updates use it (refresh ``k`` samples with seed ``seed + 1000·k``). ``refresh = 1`` refreshes every
    update; ``refresh >= steps`` draws one batch from the start policy and is then exactly
    :func:`dpo` with the same ``n_prompts``, ``n_candidates`` and ``seed``: offline DPO.
    Interface: preferences, as in :func:`dpo`. ``reference`` (default the frozen input policy) stays
    fixed. A refresh whose candidates all tie gives no pairs: the policy does not move until the next
    refresh (once the learner always succeeds, nothing is left to compare).

    ``run.artifacts``: ``"pairs"`` = ``[(step, pairs), ...]``, one entry per refresh (the step whose
    learner generated them); ``"generator_steps"`` = for every update ``t``, the step of the learner
    snapshot whose samples formed its pairs. ``history["n_pairs"]`` logs the batch size in use.

    >>> run = toyenv.methods.online_dpo(base, beta=0.1, refresh=10, steps=100, seed=0)
    """
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    beta = check_positive(beta, "beta", fix="the KL weight of DPO's implicit reward, e.g. beta=0.1")
    refresh = check_count(refresh, "refresh", fix="updates between two fresh batches of pairs from the "
                                                  "current learner, e.g. refresh=10 (1 = every update)")
    check_count(n_prompts, "n_prompts", fix="prompts per refresh to draw candidate pairs from, e.g. 16")
    check_count(n_candidates, "n_candidates", minimum=2, fix="samples per prompt; a pair needs two")
    mdp = policy.mdp
    ref = policy.frozen() if reference is None else reference
    check_policy(ref, "reference")
    check_same_world(mdp, ref.mdp, "reference policy")
    if reward is not None:
        _rewards_array(mdp, reward)                               # validates the table before any work
    refreshes, generator_steps = [], []
    batch = None

    def objective(pi, log_probs, step, rng):
        nonlocal batch
        if step < steps and step % refresh == 0:                  # fresh pairs from the learner as it is now
            pairs = preference_pairs(pi, n_prompts, seed=seed + 1000 * len(refreshes), reward=reward,
                                     n_candidates=n_candidates)
            refreshes.append((step, pairs))
            batch = _pair_arrays(mdp, ref, pairs)
        if step < steps:
            generator_steps.append(refreshes[-1][0])
        if batch is None or len(batch[0]) == 0:
            return 0.0 * log_probs.sum(), {"pref_acc": 0.0, "margin": 0.0, "n_pairs": 0.0}
        sw, aw, sl, al, ref_w, ref_l = batch
        loss, info = dpo_loss(sequence_log_prob(mdp, log_probs, sw, aw), sequence_log_prob(mdp, log_probs, sl, al),
                              ref_w, ref_l, beta=beta)
        return loss, {**info, "n_pairs": float(len(sw))}

    lr = default_lr(policy, lr, "dpo")
    config = dict(beta=beta, refresh=refresh, steps=steps, lr=lr, seed=seed, n_prompts=n_prompts,
                  n_candidates=n_candidates, reward_given=reward is not None)
    run = train(policy, objective, steps=steps, lr=lr, seed=seed, method="dpo/online", config=config,
                reference=ref, **train_options)
    run.artifacts["pairs"] = refreshes
    run.artifacts["generator_steps"] = generator_steps
    run.config["n_pairs"] = [len(p) for _, p in refreshes]
    return run
