"""One pure loss function per post-training method, on tensors (survey §4-§5, Tables 3-4).

Each loss takes log-probabilities and a batch (targets, advantages, masks, rewards as arrays) and
returns ``(loss, info)``: a torch scalar to *minimise* and a small dict of floats. A loss never sees
a model, an optimiser or a random generator; the batch builders in :mod:`toyenv.methods` make the
batches and :func:`toyenv.methods.loop.train` runs the updates.

Shapes: ``S`` states, ``V`` tokens, ``B`` sequences, ``T`` horizon. ``log_probs`` is ``[S, V]``
(log pi(a|s) for every state); token-level inputs are ``[B, T]`` with a ``mask`` of real tokens.

The exact twins live here too: :func:`exact_rl_loss` (the expected objective over the whole tree,
differentiable), :func:`exact_policy_gradient` (its gradient by the Q - V identity) and
:func:`soft_optimum_probs` (the KL-regularised optimum pi* ∝ pi_ref·exp(r/beta)).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.passes import exact_policy_gradient, soft_optimum_probs, soft_values  # noqa: F401 (the exact twins)


# --------------------------------------------------------------------------- SFT (§4.1)
def sft_loss(log_probs: torch.Tensor, targets) -> tuple[torch.Tensor, dict]:
    """Teacher-forced cross-entropy: ``-sum_{s,a} targets(s, a) · log pi(a|s)``.

    Provenance: off-policy (external trajectories). Interface: token targets. Survey §4.1.

    ``targets [S, V]`` is the empirical token count of the demonstrations divided by their number
    (see :func:`toyenv.methods.token_targets`), so the loss is the mean over demonstrations of
    ``-log pi(y|x)``. Only states on a demonstrated prefix have non-zero targets, so with one logit
    row per state the gradient is exactly zero everywhere else (§2.3): off-policy supervision does
    not act on states only the learner visits. With the teacher's occupancy as ``targets`` it is
    token-level forward-KL distillation (up to the teacher's entropy, a constant).
    """
    targets = torch.as_tensor(targets, dtype=log_probs.dtype)
    if targets.shape != log_probs.shape:
        raise ValueError(f"targets must have the shape of log_probs {tuple(log_probs.shape)}, "
                         f"got {tuple(targets.shape)}")
    loss = -(targets * log_probs).sum()
    return loss, {"nll": float(loss.detach())}


def anchored_sft_loss(mdp, log_probs: torch.Tensor, targets, ref_log_probs, *,
                      beta: float) -> tuple[torch.Tensor, dict]:
    """KL-anchored SFT: ``sft_loss(log_probs, targets) + beta · KL(pi || pi_ref)`` (survey §7.1.1).

    Provenance: off-policy (external demonstrations). Interface: token targets, plus a drift
    constraint towards the reference. One of §7.1.1's model-aware redesigns of SFT, the line that
    "constrains policy drift" (anchored SFT, Zhu et al., survey ref. [126]; proximal SFT, ref. [124]
    bounds the drift with a trust region instead). The anchor is the exact sequence-level
    ``KL(pi || pi_ref)`` over the whole tree, prompt-weighted by D(x) (the chain rule: per-state KL
    weighted by pi's own reach), so unlike the cross-entropy it acts on every state the learner
    reaches, demonstrated or not. ``beta = 0`` is plain :func:`sft_loss`. ``ref_log_probs [S, V]``.
    """
    ce, _ = sft_loss(log_probs, targets)
    ref = torch.as_tensor(ref_log_probs, dtype=log_probs.dtype)
    if ref.shape != log_probs.shape:
        raise ValueError(f"ref_log_probs must have the shape of log_probs {tuple(log_probs.shape)}, "
                         f"got {tuple(ref.shape)}")
    p = log_probs.exp()
    reach = _reach_torch(mdp, p) * torch.as_tensor(mdp.prompt_weights[mdp.prompt_of], dtype=p.dtype)
    kl = (reach[:, None] * p * (log_probs - ref)).sum()
    loss = ce + beta * kl
    return loss, {"nll": float(ce.detach()), "kl_to_anchor": float(kl.detach())}


# --------------------------------------------------------------------------- DPO (§4.2)
def dpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_logp_w: torch.Tensor,
             ref_logp_l: torch.Tensor, *, beta: float, labels=None, weights=None) -> tuple[torch.Tensor, dict]:
    """Direct Preference Optimization loss (Rafailov et al. 2023, survey ref [2], §4.2).

    Provenance: off-policy (fixed preference pairs). Interface: preferences.

    Inputs ``[B]``: summed completion log-probs of the chosen (w) and rejected (l) completions under
    the policy and the reference. ``margin = beta·[(logp_w - ref_w) - (logp_l - ref_l)]``; the loss
    is the binary cross-entropy of ``sigmoid(margin)`` against ``labels`` (the probability that w is
    preferred; default 1, hard labels). With Bradley-Terry soft labels ``sigmoid(r_w - r_l)`` the
    population loss is minimised exactly at pi* = pi_ref·exp(r/beta)/Z; with hard labels it keeps
    pushing the margin up (the IPO critique). The loss is ``log 2`` when the policy is the reference.
    ``weights [B]`` (summing to 1) replace the plain mean: a population loss over all pairs.
    """
    margin = beta * ((logp_w - ref_logp_w) - (logp_l - ref_logp_l))
    if labels is None:
        per_pair = -F.logsigmoid(margin)
    else:
        y = torch.as_tensor(labels, dtype=margin.dtype)
        per_pair = -(y * F.logsigmoid(margin) + (1 - y) * F.logsigmoid(-margin))
    loss = per_pair.mean() if weights is None else (torch.as_tensor(weights, dtype=margin.dtype) * per_pair).sum()
    m = margin.detach()
    return loss, {"pref_acc": float((m > 0).double().mean()) if m.numel() else 0.0,
                  "margin": float(m.mean()) if m.numel() else 0.0}


# --------------------------------------------------------------------------- policy gradient (§5.1)
def group_advantages(rewards, *, normalize: bool = True, eps: float = 1e-6) -> tuple[np.ndarray, dict]:
    """GRPO group advantages (Shao et al. 2024, survey §5.1). ``rewards [G, K]``: K rollouts per prompt.

    ``A = (r - mean_group) / (std_group + eps)`` (``normalize=False`` keeps only the mean baseline).
    A group whose rewards are all equal (all wrong or all right) has zero advantage for every
    member: it carries no gradient. ``info["zero_variance_groups"]`` is the fraction of such groups.
    """
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [groups, group_size], got shape {r.shape}")
    centred = r - r.mean(1, keepdims=True)
    std = r.std(1, keepdims=True)
    adv = centred / (std + eps) if normalize else centred
    flat = np.isclose(std[:, 0], 0.0, atol=1e-12)
    adv[flat] = 0.0
    return adv, {"zero_variance_groups": float(flat.mean())}


def loo_advantages(rewards) -> tuple[np.ndarray, dict]:
    """REINFORCE with a leave-one-out baseline (RLOO): ``A_i = r_i - mean_{j != i} r_j``. ``[G, K]``.

    The baseline of each rollout does not depend on it, so the gradient estimate stays unbiased.
    """
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"rewards must be [groups, group_size >= 2], got shape {r.shape}")
    k = r.shape[1]
    adv = r - (r.sum(1, keepdims=True) - r) / (k - 1)
    flat = np.isclose(r.std(1), 0.0, atol=1e-12)
    return adv, {"zero_variance_groups": float(flat.mean())}


def policy_gradient_loss(logp_tok: torch.Tensor, advantages, mask, *, old_logp_tok=None,
                         clip: float | None = None) -> tuple[torch.Tensor, dict]:
    """Clipped-ratio policy-gradient surrogate (REINFORCE / PPO / GRPO; survey §5.1).

    Provenance: on-policy (the learner's own rollouts). Interface: verifier reward (via advantages).

    ``logp_tok [B, T]``: log pi of each generated token under the current policy; ``advantages
    [B, T]`` (a sequence advantage broadcast over its tokens, or per-token advantages);
    ``mask [B, T]`` marks real tokens (hint tokens and padding are 0). ``old_logp_tok``: log-probs
    under the policy that sampled the batch (default: the current one, detached, so ratio = 1 and
    the gradient is plain REINFORCE). ``clip``: PPO's epsilon; the surrogate is
    ``min(ratio·A, clip(ratio, 1-eps, 1+eps)·A)``. Tokens are summed per sequence and sequences
    averaged, so the estimate is unbiased for the sequence-level gradient (no 1/|y| length weighting).
    """
    adv = torch.as_tensor(advantages, dtype=logp_tok.dtype)
    m = torch.as_tensor(mask, dtype=logp_tok.dtype)
    old = logp_tok.detach() if old_logp_tok is None else torch.as_tensor(old_logp_tok, dtype=logp_tok.dtype)
    ratio = torch.exp((logp_tok - old) * m)
    surr = ratio * adv
    info = {}
    if clip is not None:
        clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * adv
        info["clip_frac"] = float((((ratio - 1).abs() > clip) & (m > 0)).double().sum() / m.sum().clamp(min=1))
        surr = torch.minimum(surr, clipped)
    loss = -(surr * m).sum(1).mean()
    return loss, info


# --------------------------------------------------------------------------- exact RL (the twin)
def _reach_torch(mdp, p: torch.Tensor) -> torch.Tensor:
    """Differentiable reach ``[S]``: products of pi along the path, one depth level at a time."""
    parts = [torch.ones(mdp.num_prompts, dtype=p.dtype)]
    for d, sl in mdp.levels():
        if d == 0:
            continue
        par = torch.as_tensor(mdp.parent[sl])
        prev = torch.cat(parts)                       # reach of every state shallower than d
        parts.append(prev[par] * p[par, torch.as_tensor(mdp.last_token[sl])])
    return torch.cat(parts)


def exact_rl_loss(mdp, log_probs: torch.Tensor, ref_log_probs=None, rewards=None, *,
                  beta: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Minus the exact KL-regularised objective ``E[r] - beta·KL(pi || pi_ref)`` over the whole tree.

    Provenance: on-policy in expectation (every trajectory, weighted by its probability; no
    sampling). Interface: verifier reward. Survey §5.1 (the KL-regularised objective of RLHF/RLVR,
    an instance of the Eq. 4 template).

    ``mdp`` supplies the tree arrays only. ``rewards [S, V]`` on terminal pairs (default
    ``mdp.rewards``); ``ref_log_probs [S, V]`` needed when ``beta > 0``. Differentiable through
    ``log_probs``: reach is a product of probabilities along each path. The gradient equals
    :func:`exact_policy_gradient` (the Q - V identity).
    """
    r = torch.as_tensor(mdp.rewards if rewards is None else rewards, dtype=log_probs.dtype)
    p = log_probs.exp()
    reach = _reach_torch(mdp, p) * torch.as_tensor(mdp.prompt_weights[mdp.prompt_of])   # D(x)·reach
    term = torch.as_tensor(mdp.terminal)
    reward = (reach[:, None] * p * torch.where(term, r, torch.zeros_like(r))).sum()
    kl = torch.zeros((), dtype=log_probs.dtype)
    if beta:
        if ref_log_probs is None:
            raise ValueError("beta > 0 needs ref_log_probs (the reference policy's log_probs())")
        ref = torch.as_tensor(ref_log_probs, dtype=log_probs.dtype)
        kl = (reach[:, None] * p * (log_probs - ref)).sum()
    objective = reward - beta * kl
    return -objective, {"expected_reward": float(reward.detach()), "kl": float(kl.detach()),
                        "objective": float(objective.detach())}


def token_logp(log_probs, st, ac, mask) -> torch.Tensor:
    """log pi of each path token ``[B, T]`` (0 on padding)."""
    lp = log_probs[torch.as_tensor(np.maximum(st, 0)), torch.as_tensor(np.maximum(ac, 0))]
    return lp * torch.as_tensor(mask, dtype=lp.dtype)
