"""On-policy RL with a verifier reward (survey §5.1-§5.2), hint-guided RL (§7.1.2), interleaved
SFT + RL (§7.1.3) and the closed-form KL-regularised optimum.

A sampled RL step is a few named pieces, each a pure function of arrays:

1. :func:`rollout_batch` draws ``n_prompts`` prompts from D(x) and ``group_size`` rollouts of each
   (§5.1), starting some of them after a hint (:func:`hinted_starts`, §7.1.2);
2. the advantages: :func:`outcome_advantages` (one per rollout, GRPO or leave-one-out, §5.1) shaped
   by the KL penalty :func:`kl_to_go` (§5.1), or :func:`process_advantages` (one per token, §5.2);
3. :func:`hint_mask` removes the off-policy hint tokens from the loss (§7.1.2);
4. :func:`toyenv.methods.losses.policy_gradient_loss` turns them into a loss.

:func:`rl_batch` composes 1-3 and :func:`sampled_rl_objective` calls it once every ``epochs``
updates; :func:`rl` validates, builds the pieces, trains and returns the :class:`Run`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .data import _rewards_array, check_demos, demonstrations
from .sft import _sft_objective
from .loop import (Run, check_choice, check_count, check_fraction, check_loop_options, check_nonnegative,
                   check_optional_count, check_policy, check_positive, default_lr, train)
from .losses import (exact_rl_loss, group_advantages, loo_advantages, policy_gradient_loss,
                     soft_optimum_probs, soft_values, token_logp)
from ..core.policies import TabularPolicy
from ..core.tree import check_same_world, paths, sample_from

ALGOS = ("grpo", "reinforce")


# =========================================================================== rollouts (§5.1, §7.1.2)
def hint_table(mdp, hints, seed: int = 0) -> tuple[dict | None, float]:
    """The hints of guided RL (survey §7.1.2) as ``({prompt_index: hint_tokens}, probability)``.

    ``hints``: None (no hints: ``(None, 0.0)``), ``{"prob": p, "length": n}`` (the first ``n`` tokens
    of one correct answer per prompt, drawn with ``seed``, forced on a fraction ``p`` of rollouts) or
    ``{prompt_index: hint_tokens}`` (those prefixes, forced on every rollout of those prompts). A
    hint is an unfinished prefix; anything else raises.
    """
    if hints is None:
        return None, 0.0
    if not isinstance(hints, dict):
        raise TypeError('hints must be a dict: {"prob": 0.5, "length": 1} or {prompt_index: hint_tokens}')
    if "prob" in hints or "length" in hints:
        prob = check_fraction(hints.get("prob", 0.5), 'hints["prob"]',
                              fix="the fraction of rollouts that start after a hint")
        length = check_count(hints.get("length", 1), 'hints["length"]', fix="the number of hint tokens")
        demos = demonstrations(mdp, mdp.num_prompts, seed=seed, prompts=np.arange(mdp.num_prompts))
        return {x: toks[: min(length, len(toks) - 1)] for x, toks in demos}, prob
    table = {}
    for x, toks in hints.items():
        toks = mdp._as_tokens(toks)
        mdp.state_index(x, toks)                    # the hint must be an unfinished prefix
        table[int(x)] = toks
    return table, 1.0


def hinted_starts(mdp, x, table: dict | None, prob: float, rng: np.random.Generator):
    """Start states of rollouts of prompts ``x [B]``: the root, or the state after the prompt's hint
    for a fraction ``prob`` of them (guided RL, survey §7.1.2).

    Returns ``(start [B], hint_len [B])``; ``hint_len`` is 0 for unhinted rollouts. Draws from ``rng``
    only when there are hints.
    """
    start, hint_len = mdp.roots[x].copy(), np.zeros(len(x), int)
    if table:
        use = rng.random(len(x)) < prob
        for i in np.nonzero(use)[0]:
            toks = table.get(int(x[i]))
            if toks:
                start[i], hint_len[i] = mdp.state_index(int(x[i]), toks), len(toks)
    return start, hint_len


class Rollouts(NamedTuple):
    """A batch of ``B = n_prompts * group_size`` rollouts, grouped by prompt (survey §5.1).

    ``x [B]`` prompts; ``s, a [B]`` terminal pairs; ``st, ac, mask [B, T]`` the path of each rollout
    (states, tokens, real-token mask, hint tokens included); ``hint_len [B]`` forced hint tokens.
    """
    x: np.ndarray
    s: np.ndarray
    a: np.ndarray
    st: np.ndarray
    ac: np.ndarray
    mask: np.ndarray
    hint_len: np.ndarray


def rollout_batch(mdp, p: np.ndarray, rng: np.random.Generator, *, n_prompts: int, group_size: int,
                  hints: tuple = (None, 0.0)) -> Rollouts:
    """Draw ``n_prompts`` prompts from D(x) and ``group_size`` rollouts of each under ``p [S, V]``
    (the on-policy batch of GRPO / RLOO, survey §5.1), optionally after hints (``hints`` is
    :func:`hint_table`'s output, §7.1.2). Rollouts of one prompt are consecutive."""
    x = np.repeat(rng.choice(mdp.num_prompts, size=n_prompts, p=mdp.prompt_weights), group_size)   # [B]
    start, hint_len = hinted_starts(mdp, x, *hints, rng)
    s, a = sample_from(mdp, p, start, rng)
    st, ac, mask = paths(mdp, s, a)
    return Rollouts(x, s, a, st, ac, mask, hint_len)


def hint_mask(mask: np.ndarray, hint_len: np.ndarray, learn_hint: bool = False) -> np.ndarray:
    """Tokens the policy-gradient loss trains on, ``[B, T]`` (guided RL, survey §7.1.2).

    The first ``hint_len[i]`` tokens of rollout i were forced, not sampled: they are off-policy and
    left out of the loss unless ``learn_hint``.
    """
    depth = np.arange(mask.shape[1])[None, :]
    return mask & ((depth >= np.asarray(hint_len)[:, None]) | learn_hint)


# =========================================================================== advantages (§5.1, §5.2)
def outcome_advantages(rewards: np.ndarray, group_size: int, horizon: int, algo: str = "grpo"):
    """One advantage per rollout from its outcome reward, broadcast over its tokens (survey §5.1).

    ``rewards [B]`` grouped by prompt (``group_size`` consecutive rollouts each). ``algo="grpo"``:
    (r - group mean) / group std; ``"reinforce"``: leave-one-out baseline. Returns
    ``(advantages [B, horizon], info)`` with ``info["zero_variance_groups"]``.
    """
    fn = loo_advantages if algo == "reinforce" else group_advantages
    seq_adv, info = fn(np.asarray(rewards).reshape(-1, group_size))
    return np.repeat(seq_adv.reshape(-1, 1), horizon, 1).astype(float), info


def kl_to_go(log_ratio: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-token KL penalty of KL-regularised RL: the sum of ``log pi/pi_ref`` from token t to the
    end of the rollout, ``[B, T]`` (survey §5.1).

    ``log_ratio [B, T]``: ``log pi(a_t|s_t) - log pi_ref(a_t|s_t)`` of each sampled token (padding is
    ignored through ``mask``). Subtracting ``beta`` times it from the advantages makes the policy
    gradient an unbiased estimate of the gradient of ``E[r] - beta·KL(pi || pi_ref)`` (score-function
    estimator of the KL; a token's choice affects only the log-ratios that follow it).
    """
    lr_tok = np.where(mask, log_ratio, 0.0)
    return np.cumsum(lr_tok[:, ::-1], 1)[:, ::-1]


def process_advantages(Q: np.ndarray, V: np.ndarray, st: np.ndarray, ac: np.ndarray,
                       mask: np.ndarray) -> np.ndarray:
    """Dense per-token advantages ``Q(s_t, a_t) - V(s_t)``, ``[B, T]`` (process rewards, survey §5.2).

    ``Q [S, V]``, ``V [S]``: exact (soft) values of the current policy, e.g.
    :func:`toyenv.methods.losses.soft_values`. With ``beta = 0`` this is ``V(s_{t+1}) - V(s_t)``:
    each step is credited with the change in success probability it caused, and the advantages of a
    rollout telescope to ``r(y) - V(root)``. Zero on padding.
    """
    s0, a0 = np.maximum(st, 0), np.maximum(ac, 0)
    return np.where(mask, Q[s0, a0] - V[s0], 0.0)


# =========================================================================== the sampled objective
@dataclass(frozen=True, eq=False)
class SampledRL:
    """Settings of sampled policy-gradient RL, as :func:`rl` documents them."""

    rewards: np.ndarray = field(repr=False)
    """``[S, V]`` terminal rewards the rollouts are scored with."""
    ref_lp: np.ndarray = field(repr=False)
    """``[S, V]`` log pi_ref, the reference of the KL penalty."""
    beta: float = 0.1
    """KL weight."""
    algo: str = "grpo"
    """"grpo" or "reinforce" (outcome advantages)."""
    group_size: int = 8
    """Rollouts per prompt."""
    n_prompts_per_step: int = 8
    """Prompts per batch."""
    clip: float | None = None
    """PPO ratio clip epsilon, or None."""
    epochs: int = 1
    """Updates per sampled batch."""
    process: object = False
    """Dense advantages Q - V (§5.2) instead of outcome advantages: ``True`` for the exact values of
    the current policy, or a fixed value table ``V_hat [S]`` (a process reward model)."""
    hints: tuple = (None, 0.0)
    """:func:`hint_table` output."""
    learn_hint: bool = False
    """Train on the hint tokens too."""


class PolicyGradientBatch(NamedTuple):
    """What the policy-gradient loss needs: paths ``st, ac [B, T]``, the trained-token ``mask``,
    ``adv [B, T]``, the sampling policy's token log-probs ``old [B, T]`` and the batch's ``info``."""
    st: np.ndarray
    ac: np.ndarray
    mask: np.ndarray
    adv: np.ndarray
    old: torch.Tensor
    info: dict


def rl_batch(mdp, log_probs: torch.Tensor, rng: np.random.Generator, cfg: SampledRL) -> PolicyGradientBatch:
    """Sample a batch with the current policy (``log_probs [S, V]``, detached) and compute its
    advantages and mask: :func:`rollout_batch`, then :func:`process_advantages` or
    :func:`outcome_advantages` minus ``beta`` · :func:`kl_to_go`, then :func:`hint_mask`."""
    p = log_probs.exp().numpy()
    ro = rollout_batch(mdp, p, rng, n_prompts=cfg.n_prompts_per_step, group_size=cfg.group_size,
                       hints=cfg.hints)
    s0, a0 = np.maximum(ro.st, 0), np.maximum(ro.ac, 0)
    r = cfg.rewards[ro.s, ro.a]
    info = {"reward": float(r.mean())}
    if cfg.hints[0]:
        info["hinted"] = float((ro.hint_len > 0).mean())
        info["unhinted_reward"] = float(r[ro.hint_len == 0].mean()) if np.any(ro.hint_len == 0) else float("nan")
    if cfg.process is not False:
        if cfg.process is True:
            Q, V = soft_values(mdp, p, np.exp(cfg.ref_lp), cfg.rewards, cfg.beta)
        else:                                     # a fixed process reward model: V_hat of the next state
            V = cfg.process
            Q = np.where(mdp.terminal, cfg.rewards, V[np.maximum(mdp.child, 0)])
        adv = process_advantages(Q, V, ro.st, ro.ac, ro.mask)
        info["zero_variance_groups"] = group_advantages(r.reshape(-1, cfg.group_size))[1]["zero_variance_groups"]
    else:
        adv, ginfo = outcome_advantages(r, cfg.group_size, mdp.horizon, cfg.algo)
        info.update(ginfo)
        if cfg.beta:
            adv = adv - cfg.beta * kl_to_go(np.log(p[s0, a0]) - cfg.ref_lp[s0, a0], ro.mask)
    train_mask = hint_mask(ro.mask, ro.hint_len, cfg.learn_hint)
    return PolicyGradientBatch(ro.st, ro.ac, train_mask, adv, token_logp(log_probs, ro.st, ro.ac, train_mask), info)


def sampled_rl_objective(mdp, cfg: SampledRL):
    """The objective :func:`toyenv.train` minimises for sampled RL: a fresh :func:`rl_batch` every
    ``cfg.epochs`` updates (PPO-style reuse in between), scored by ``policy_gradient_loss``."""
    batch = None

    def objective(pi, log_probs, step, rng):
        nonlocal batch
        if step % cfg.epochs == 0:
            batch = rl_batch(mdp, log_probs.detach(), rng, cfg)
        lp_tok = token_logp(log_probs, batch.st, batch.ac, batch.mask)
        loss, info = policy_gradient_loss(lp_tok, batch.adv, batch.mask, old_logp_tok=batch.old, clip=cfg.clip)
        return loss, {**batch.info, **info}
    return objective


def exact_rl_objective(mdp, ref_lp: np.ndarray, rewards: np.ndarray, beta: float):
    """The objective of ``exact=True``: minus ``E[r] - beta·KL(pi || pi_ref)`` over the whole tree
    (:func:`toyenv.methods.losses.exact_rl_loss`, survey §5.1); no sampling."""
    ref_t = torch.as_tensor(ref_lp)

    def objective(pi, log_probs, step, rng):
        return exact_rl_loss(mdp, log_probs, ref_t, rewards, beta=beta)
    return objective


def _rl_objective(mdp, *, beta, exact, algo, group_size, n_prompts_per_step, clip, epochs,
                  ref_lp, rewards, hints, process, learn_hint, seed):
    """:func:`rl`'s objective without the training loop (tests evaluate it on chosen policies)."""
    if exact:
        return exact_rl_objective(mdp, ref_lp, rewards, beta)
    return sampled_rl_objective(mdp, SampledRL(rewards, ref_lp, beta, algo, group_size, n_prompts_per_step,
                                               clip, epochs, process, hint_table(mdp, hints, seed), learn_hint))


def _rl_method(exact, process, hints, algo):
    if exact:
        return "rl/exact"
    if process is not False:
        return "rl/process"
    if hints is not None:
        return "rl/guided"
    return f"rl/{algo}"


def _check_rl_options(beta, algo, group_size, n_prompts_per_step) -> float:
    check_choice(algo, "algo", ALGOS)
    beta = check_nonnegative(beta, "beta", fix="beta is the KL weight: 0 for no penalty, e.g. beta=0.1")
    check_count(group_size, "group_size", minimum=2,
                fix="a group baseline needs two rollouts per prompt, e.g. group_size=8")
    check_count(n_prompts_per_step, "n_prompts_per_step", fix="prompts per batch, e.g. n_prompts_per_step=8")
    return beta


def _check_process(mdp, process):
    """``False``, ``True`` or a finite value table ``[S]`` (a fixed process reward model)."""
    if isinstance(process, (bool, np.bool_)):
        return bool(process)
    try:
        v = np.asarray(process, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"process must be True, False or an array of state values [num_states={mdp.num_states}], "
                        f"got {type(process).__name__}") from None
    if v.shape != (mdp.num_states,) or not np.all(np.isfinite(v)):
        raise ValueError(f"process=V_hat must be a finite array of shape ({mdp.num_states},) (one value per state), "
                         f"got shape {v.shape}")
    return v


def _reference(policy, reference):
    ref = policy.frozen() if reference is None else reference
    check_policy(ref, "reference")
    check_same_world(policy.mdp, ref.mdp, "reference policy")
    return ref


# =========================================================================== rl (§5.1, §5.2, §7.1.2)
def rl(policy, *, beta: float = 0.1, exact: bool = False, steps: int = 200, lr: float | None = None,
       seed: int = 0, algo: str = "grpo", group_size: int = 8, n_prompts_per_step: int = 8,
       clip: float | None = None, epochs: int = 1, reference=None, reward=None, hints=None,
       process: bool = False, learn_hint: bool = False, **train_options) -> Run:
    """On-policy RL with a verifier reward and a KL penalty: maximise ``E[r] - beta·KL(pi || pi_ref)``
    (survey §5.1).

    Args:
        beta: KL weight (finite, >= 0); ``reference`` (default: frozen input policy) is pi_ref.
        exact: use the exact expected gradient over the whole tree (no sampling) instead of rollouts.
        algo: "grpo" (group advantages (r - mean)/std) or "reinforce" (leave-one-out baseline,
            unbiased). Each step samples ``n_prompts_per_step`` prompts from D(x) and ``group_size``
            rollouts for each. A group whose rewards are all equal gets zero advantage: the fraction
            is logged as ``zero_variance_groups``. The KL term enters every token as
            ``-beta·(log-ratio to go)`` (:func:`kl_to_go`), an unbiased estimate of its gradient. GRPO
            divides the task advantage by the group std (often < 0.5 for 0/1 rewards), so the same
            beta restrains GRPO less than REINFORCE or ``exact=True``.
        clip, epochs: PPO-style ratio clipping with ``epochs`` updates per sampled batch.
        reward: ``[S, V]`` terminal rewards (default ``mdp.rewards``, the verifier).
        process: process-reward RL (§5.2): per-token advantage ``Q(s_t, a_t) - V(s_t)`` from the exact
            values of the current policy (:func:`process_advantages`; with beta = 0: V(s_{t+1}) - V(s_t)
            of :func:`toyenv.success_value`), a dense step reward instead of one outcome per rollout.
            ``process=V_hat`` (an array ``[S]``) uses a fixed process reward model instead:
            advantages ``V_hat(s_{t+1}) - V_hat(s_t)``, with the reward after the last token; an
            imperfect ``V_hat`` shows §5.2's risk (dense credit amplifying a wrong step).
        hints: guided RL (§5.1, §7.1.2): ``{"prob": 0.5, "length": 1}`` forces the first ``length``
            tokens of a correct answer at the start of a fraction ``prob`` of rollouts, or
            ``{prompt_index: hint_tokens}`` forces those prefixes on every rollout of those prompts.
            Hint tokens are off-policy and excluded from the loss unless ``learn_hint=True``
            (:func:`hint_mask`).
        train_options: snapshot_steps, num_snapshots, optimizer (passed to :func:`train`).

    >>> run = toyenv.rl(base, beta=0.1, exact=False, steps=200, seed=0)
    """
    # validate
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    beta = _check_rl_options(beta, algo, group_size, n_prompts_per_step)
    process = _check_process(policy.mdp, process)
    if exact and (process is not False or hints is not None):
        raise ValueError("exact=True already uses every trajectory; process and hints apply to sampled RL")
    clip = None if clip is None else check_positive(clip, "clip", fix="PPO's ratio range, e.g. clip=0.2, "
                                                                      "or clip=None for no clipping")
    epochs = check_count(epochs, "epochs", fix="updates per sampled batch, e.g. epochs=1")
    mdp = policy.mdp
    ref = _reference(policy, reference)
    # build the pieces
    rewards = _rewards_array(mdp, reward)
    with torch.no_grad():
        ref_lp = ref.log_probs().numpy()                                          # [S, V]
    if exact:
        objective = exact_rl_objective(mdp, ref_lp, rewards, beta)
    else:
        objective = sampled_rl_objective(mdp, SampledRL(
            rewards, ref_lp, beta=beta, algo=algo, group_size=group_size, n_prompts_per_step=n_prompts_per_step,
            clip=clip, epochs=epochs, process=process, hints=hint_table(mdp, hints, seed), learn_hint=learn_hint))
    # train
    lr = default_lr(policy, lr, "rl/exact" if exact else "rl")
    config = dict(beta=beta, exact=exact, steps=steps, lr=lr, seed=seed, algo=algo, group_size=group_size,
                  n_prompts_per_step=n_prompts_per_step, clip=clip, epochs=epochs,
                  process=process if isinstance(process, bool) else "fixed values",
                  hints=hints, learn_hint=learn_hint, reward_given=reward is not None)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method=_rl_method(exact, process, hints, algo),
                 config=config, reference=ref, **train_options)


# =========================================================================== interleaved (§7.1.3)
def interleaved(policy, demos, *, mix: float = 0.5, steps: int = 200, beta: float = 0.1,
                lr: float | None = None, seed: int = 0, algo: str = "grpo", group_size: int = 8,
                n_prompts_per_step: int = 8, batch_size: int | None = None, reference=None,
                **train_options) -> Run:
    """Interleaved SFT + RL with one loss: ``mix·SFT + (1 - mix)·RL`` every step (survey §7.1.3).

    Provenance hybrid (demonstrations and own rollouts); interface token targets + verifier
    reward. ``mix = 1`` is SFT, ``mix = 0`` is sampled RL. The history logs both parts
    (``sft_loss``, ``rl_loss``).
    """
    # validate
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    mix = check_fraction(mix, "mix", fix="the weight of the SFT loss: 1 is SFT only, 0 is RL only")
    beta = _check_rl_options(beta, algo, group_size, n_prompts_per_step)
    batch_size = check_optional_count(batch_size, "batch_size", fix="or batch_size=None for every demonstration")
    mdp = policy.mdp
    states, actions = check_demos(mdp, demos)
    ref = _reference(policy, reference)
    # build the pieces
    with torch.no_grad():
        ref_lp = ref.log_probs().numpy()
    sft_obj = _sft_objective(mdp, states, actions, batch_size)
    rl_obj = sampled_rl_objective(mdp, SampledRL(mdp.rewards, ref_lp, beta=beta, algo=algo, group_size=group_size,
                                                 n_prompts_per_step=n_prompts_per_step))

    def objective(pi, log_probs, step, rng):
        l_sft, i_sft = sft_obj(pi, log_probs, step, rng)
        l_rl, i_rl = rl_obj(pi, log_probs, step, rng)
        return mix * l_sft + (1 - mix) * l_rl, {**i_sft, **i_rl, "sft_loss": float(l_sft.detach()),
                                                "rl_loss": float(l_rl.detach())}

    # train
    lr = default_lr(policy, lr, "rl")
    config = dict(mix=mix, steps=steps, beta=beta, lr=lr, seed=seed, algo=algo, group_size=group_size,
                  n_prompts_per_step=n_prompts_per_step, batch_size=batch_size, n_demos=len(states))
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="interleaved", config=config,
                 reference=ref, **train_options)


# =========================================================================== closed form
def kl_optimum(reference, beta: float, reward=None) -> TabularPolicy:
    """The exact maximiser of ``E[r] - beta·KL(pi || reference)``: pi* ∝ reference·exp(r/beta)
    at the sequence level, as a tabular policy (survey §5.1; the DPO optimum, §4.2)."""
    check_policy(reference)
    mdp = reference.mdp
    return TabularPolicy.from_probs(mdp, soft_optimum_probs(mdp, reference.probs(), _rewards_array(mdp, reward), beta))
