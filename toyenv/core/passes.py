"""Every depth-level pass over the prefix tree, once (survey §2.3, §5.1).

The tree's states are stored depth by depth, so a forward pass (reach probabilities) or a backward
pass (values below each state-action pair) is one vectorised numpy step per depth level. Everything
exact in the package (occupancy, success, KL, the exact policy gradient, the KL-regularised optimum)
is built from these passes.
"""
from __future__ import annotations

import numpy as np

from .tree import TokenMDP


def reach_from_probs(mdp: TokenMDP, p: np.ndarray) -> np.ndarray:
    """P(prefix s is visited | its prompt) for every state. ``[S]``; 1 at the roots."""
    p = np.asarray(p)
    if p.shape != (mdp.num_states, mdp.vocab_size):
        raise ValueError(f"reach needs pi(a|s) of this world as an [S, V] = [{mdp.num_states}, "
                         f"{mdp.vocab_size}] array (policy.probs()), got shape {p.shape}")
    reach = np.empty(mdp.num_states)
    reach[: mdp.num_prompts] = 1.0
    flat = p.reshape(-1)
    for sl, par, idx in mdp.level_pairs():      # depth by depth: reach(parent) * p(parent, last token)
        reach[sl] = reach[par] * flat[idx]
    return reach


def backward_from_probs(mdp: TokenMDP, p: np.ndarray, leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected leaf value below every pair and state.

    ``leaf [S, V]`` gives the value of each terminal pair. Returns ``Q [S, V]`` (the value of
    taking a at s: the leaf value if (s, a) ends the sequence, else V of the child) and ``V [S]``.
    """
    Q = np.where(mdp.terminal, leaf, 0.0)
    V = np.zeros(mdp.num_states)
    for d, sl in mdp.levels(reverse=True):
        ch = mdp.child[sl]
        if d < mdp.horizon - 1:
            Q[sl] = np.where(ch >= 0, V[np.maximum(ch, 0)], Q[sl])
        V[sl] = (p[sl] * Q[sl]).sum(1)
    return Q, V


def trajectory_probs_from(mdp: TokenMDP, p: np.ndarray, r: np.ndarray | None = None) -> np.ndarray:
    """pi(y|x) of every complete trajectory, at its terminal pair; 0 elsewhere. ``[S, V]``."""
    r = reach_from_probs(mdp, p) if r is None else r
    return np.where(mdp.terminal, r[:, None] * p, 0.0)


def soft_values(mdp, p: np.ndarray, p_ref: np.ndarray | None, rewards: np.ndarray,
                beta: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Regularised values of the current policy: ``Q [S, V]``, ``V [S]`` (a backward pass).

    ``Q(s, a) = -beta·log(pi(a|s)/pi_ref(a|s)) + (r(s, a) at a terminal pair, else V(s·a))`` and
    ``V(s) = sum_a pi(a|s) Q(s, a)``. With ``beta = 0`` and a 0/1 verifier these are the exact
    success values of :func:`toyenv.success_value` (the ideal process reward, §5.2).
    """
    if not beta:
        return backward_from_probs(mdp, p, np.where(mdp.terminal, rewards, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        pen = np.where(p > 0, -beta * (np.log(np.where(p > 0, p, 1)) - np.log(p_ref)), 0.0)
    Q = np.where(mdp.terminal, rewards, 0.0) + pen
    V = np.zeros(mdp.num_states)
    for _, sl in mdp.levels(reverse=True):
        ch = mdp.child[sl]
        Q[sl] += np.where(ch >= 0, V[np.maximum(ch, 0)], 0.0)
        V[sl] = (p[sl] * Q[sl]).sum(1)
    return Q, V


def exact_policy_gradient(mdp, p: np.ndarray, p_ref: np.ndarray | None = None, rewards=None,
                          beta: float = 0.0) -> np.ndarray:
    """Gradient of ``E[r] - beta·KL(pi||pi_ref)`` w.r.t. per-state logits: ``[S, V]``.

    The tabular policy-gradient identity: ``D(x)·reach(s)·pi(a|s)·(Q(s, a) - V(s))`` with the soft
    values of :func:`soft_values`. Reverse-KL distillation is the case r = 0, beta = 1,
    pi_ref = teacher. For a policy with shared rows, sum the entries of the states sharing a row.
    """
    r = mdp.rewards if rewards is None else np.asarray(rewards, float)
    Q, V = soft_values(mdp, p, p_ref, r, beta)
    w = mdp.prompt_weights[mdp.prompt_of] * reach_from_probs(mdp, p)
    return w[:, None] * p * (Q - V[:, None])


def soft_optimum_probs(mdp, p_ref: np.ndarray, rewards=None, beta: float = 0.1) -> np.ndarray:
    """The KL-regularised optimum pi* ∝ pi_ref·exp(r/beta) at the sequence level, as pi*(a|s) ``[S, V]``.

    A soft backward pass: ``W(s·a) = r(s, a)`` at terminal pairs, else ``beta·log sum_b
    pi_ref(b|s·a) exp(W(s·a·b)/beta)``; ``pi*(a|s) ∝ pi_ref(a|s)·exp(W(s·a)/beta)``. The value at
    the root is ``beta·log Z(x)``, the optimal objective (survey §5.1; Rafailov et al. 2023).
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}; beta -> 0 is the argmax policy")
    r = mdp.rewards if rewards is None else np.asarray(rewards, float)
    logit = np.zeros((mdp.num_states, mdp.vocab_size))
    Vs = np.zeros(mdp.num_states)
    with np.errstate(divide="ignore"):
        log_ref = np.log(p_ref)
    for _, sl in mdp.levels(reverse=True):
        ch = mdp.child[sl]
        W = np.where(ch >= 0, Vs[np.maximum(ch, 0)], r[sl])        # [n, V]
        logit[sl] = log_ref[sl] + W / beta
        m = logit[sl].max(1, keepdims=True)
        Vs[sl] = beta * (m[:, 0] + np.log(np.exp(logit[sl] - m).sum(1)))
    out = np.exp(logit - logit.max(1, keepdims=True))
    return out / out.sum(1, keepdims=True)
