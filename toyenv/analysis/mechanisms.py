"""Mechanisms behind the roles, each as one exact experiment: a local action change that expands
whole trajectories (survey §3.3.5), a process reward that amplifies a wrong step (§5.2), and the
injection-versus-elicitation reading of expansion and reshaping (§7.2.6).
"""
from __future__ import annotations

import numpy as np

from ..core.exact import check_eps, occupancy, success_prob, success_value, support_change, trajectory_probs
from ..core.policies import Policy, TabularPolicy
from ..core.presets import make
from ..methods.loop import check_count, check_fraction, check_policy
from ..methods.rl import rl


def raise_action(policy: Policy, action: int, prob: float, states=None) -> TabularPolicy:
    """A copy of ``policy`` (as a table, one row per state) in which ``action`` has probability
    ``prob`` at each of ``states`` (default: every prompt's root); the other tokens of those rows
    keep their ratios. Every other row is unchanged: a purely *local* action change (§3.3.5)."""
    check_policy(policy)
    mdp = policy.mdp
    check_fraction(prob, "prob", fix="the new probability of the action, e.g. prob=0.5")
    check_count(action, "action", minimum=0, fix=f"a token id below vocab_size={mdp.vocab_size}")
    if action >= mdp.vocab_size:
        raise ValueError(f"action must be a token id below vocab_size={mdp.vocab_size}, got {action}")
    states = np.asarray(mdp.roots if states is None else states, dtype=int).reshape(-1)
    p = policy.probs().copy()                                      # [S, V]
    for s in states:
        rest = 1.0 - p[s, action]
        others = np.arange(mdp.vocab_size) != action
        p[s, others] = (1.0 - prob) * (p[s, others] / rest if rest > 0 else 1.0 / others.sum())
        p[s, action] = prob
    return TabularPolicy.from_probs(mdp, p)


def local_expansion(policy: Policy, action: int, prob: float, eps: float = 1e-3, states=None) -> dict:
    """What one local action change does to the support (survey §3.3.5): make ``action``
    selectable (probability ``prob``) at ``states`` (default: the roots) and count, exactly, what
    became effectively reachable downstream.

    Returns the changed policy (``"after"``) and counts at threshold ``eps``:
    ``rows_changed`` and ``pairs_changed`` (the local edit), ``changed_states_already_supported``
    (the edited states were in the state-level support d(s) >= eps before: a support defined on
    states alone would not see the edit there), ``new_states`` (states whose occupancy d(s) (Eq. 3)
    crossed eps), ``expanded_pairs`` (Eq. 6), ``new_answers`` and ``new_correct_answers``
    (complete answers with pi(y|x) >= eps after and not before), ``success_before/after``.
    """
    eps = check_eps(eps)
    mdp = policy.mdp
    before = TabularPolicy.from_probs(mdp, policy.probs())
    after = raise_action(policy, action, prob, states)
    edited = np.abs(after.probs() - before.probs()) > 0                  # [S, V]
    o0, o1 = occupancy(before), occupancy(after)
    ch = support_change(o0, o1, eps)
    rows = edited.any(1)
    new_ans = ch.traj_expanded
    return {
        "after": after, "change": ch,
        "rows_changed": int(rows.sum()), "pairs_changed": int(edited.sum()),
        "changed_states_already_supported": bool((o0.s[rows] >= eps).all()),
        "new_states": int(((o1.s >= eps) & (o0.s < eps)).sum()),
        "expanded_pairs": int(ch.expanded.sum()),
        "new_answers": int(new_ans.sum()), "new_correct_answers": int((new_ans & mdp.correct).sum()),
        "success_before": float(mdp.prompt_weights @ success_prob(before)),
        "success_after": float(mdp.prompt_weights @ success_prob(after)),
    }


def biased_process_values(policy: Policy, wrong: dict) -> np.ndarray:
    """A fixed process reward model ``V_hat [S]``: the exact success value of ``policy`` (a PRM
    fitted once, to that policy) with the states of ``wrong`` overrated: ``wrong`` maps a prefix
    (tuple of token ids, the same under every prompt) to the value the biased PRM gives it."""
    check_policy(policy)
    mdp = policy.mdp
    V, _ = success_value(policy)
    V = V.copy()
    for tokens, value in wrong.items():
        for x in range(mdp.num_prompts):
            V[mdp.state_index(x, tuple(tokens))] = float(value)
    return V


def process_mismatch(world: str = "hidden-path", *, p_hidden: float = 1e-2, wrong=((0,), 0.3),
                     steps: int = 200, seeds=(0, 1, 2)) -> dict:
    """Process supervision with an imperfect process signal (survey §5.2): the same GRPO rollouts
    scored three ways — the outcome reward, a fixed process reward model fitted to the base policy
    (exact success values ``V_base``), and the same PRM with one *wrong* step overrated
    (``wrong = (prefix, value)``: by default the prefix ``a`` — a wrong first token — valued 0.3).

    Advantages of the process runs are ``V_hat(s_{t+1}) - V_hat(s_t)`` with the verifier's reward
    after the last token (:func:`toyenv.rl` with ``process=V_hat``). Returns, per arm and seed, the
    final success and the final probability of the overrated step at the roots (prompt-weighted).
    """
    check_count(steps, "steps", fix="updates per run, e.g. steps=200")
    mdp = make(world, p_hidden=p_hidden) if world == "hidden-path" else make(world)
    base = mdp.base_policy()
    prefix, value = wrong
    prefix = tuple(prefix)
    fitted = biased_process_values(base, {})
    biased = biased_process_values(base, {prefix: value})
    arms = {"outcome reward": dict(process=False), "process reward (fitted PRM)": dict(process=fitted),
            "process reward (PRM overrates a wrong step)": dict(process=biased)}
    step_token = prefix[0]
    out = {}
    for name, kw in arms.items():
        rows = []
        for seed in seeds:
            run = rl(base, beta=0.0, steps=steps, seed=seed, **kw)
            p = run.policy.probs()
            rows.append({"seed": seed, "success": float(run.history["success"][-1]),
                         "wrong_step_prob": float(mdp.prompt_weights @ p[mdp.roots, step_token]),
                         "run": run})
        out[name] = rows
    return {"world": mdp, "base": base, "wrong_prefix": prefix, "wrong_value": float(value),
            "true_value_of_wrong_prefix": float(fitted[mdp.state_index(0, prefix)]),
            "base_wrong_step_prob": float(mdp.prompt_weights @ base.probs()[mdp.roots, step_token]),
            "base_success": float(mdp.prompt_weights @ success_prob(base)), "arms": out}


def capability_boundary(start: Policy, after: Policy, eps: float = 1e-2) -> dict:
    """Injection versus elicitation (survey §7.2.6), read at the answer level: which correct
    answers the trained policy supports (pi(y|x) >= eps) and whether the start policy already did.

    ``inside``: correct answers supported after and before (elicited from what was already
    there); ``injected``: supported after, not before (outside the start's boundary at this eps);
    ``lost``: supported before, not after; ``boundary_start``: correct answers the start supports.
    Also the correct answers a start policy could ever show (pi(y|x) > 0, its full boundary).
    """
    eps = check_eps(eps)
    mdp = start.mdp
    t0, t1 = trajectory_probs(start), trajectory_probs(after)
    ok = mdp.correct
    before, now = ok & (t0 >= eps), ok & (t1 >= eps)
    return {"boundary_start": int(before.sum()), "inside": int((before & now).sum()),
            "injected": int((now & ~before).sum()), "lost": int((before & ~now).sum()),
            "supported_after": int(now.sum()),
            "success_start": float(mdp.prompt_weights @ success_prob(start)),
            "success_after": float(mdp.prompt_weights @ success_prob(after))}


__all__ = ["raise_action", "local_expansion", "biased_process_values", "process_mismatch", "capability_boundary"]
