"""The data post-training methods learn from: demonstrations, token targets, preference pairs.

Each builder samples or enumerates from the world and returns plain arrays or lists; the methods in
this folder turn them into a loss (``losses.py``) and call the one loop (``loop.py``).
"""
from __future__ import annotations

import numpy as np

from ..core.policies import as_pairs
from ..core.tree import paths, sample_pairs_from_probs
from .loop import check_count, check_policy


def check_demos(mdp, demos) -> tuple[np.ndarray, np.ndarray]:
    """Demonstrations ``[(prompt_index, tokens), ...]`` (or terminal pairs) -> terminal pairs, or a
    clear error when there are none or one is malformed."""
    if demos is None or (hasattr(demos, "__len__") and len(demos) == 0):
        raise ValueError(f"demos is empty: pass at least one (prompt_index, tokens) demonstration, e.g. "
                         f"toyenv.demonstrations(mdp, 32) or policy.sample(32); got {demos!r}")
    states, actions = as_pairs(mdp, demos)
    if len(states) == 0:
        raise ValueError("demos is empty: pass at least one (prompt_index, tokens) demonstration, e.g. "
                         "toyenv.demonstrations(mdp, 32) or policy.sample(32)")
    return states, actions


def demonstrations(mdp, n: int, seed: int = 0, prompts=None) -> list:
    """``n`` correct demonstrations ``[(prompt_index, tokens), ...]``, as ``sample()`` returns.

    Prompts are drawn from D(x) (or fixed by ``prompts``: an int or n ints); the completion is
    uniform among the correct completions of its prompt. Raises if a chosen prompt has none.
    """
    check_count(n, "n", minimum=0, fix="the number of demonstrations, e.g. demonstrations(mdp, 32)")
    rng = np.random.default_rng(seed)
    if prompts is None:
        x = rng.choice(mdp.num_prompts, size=n, p=mdp.prompt_weights)
    else:
        x = np.broadcast_to(np.asarray(prompts, dtype=np.int64), (n,))
    cs, ca = np.nonzero(mdp.correct)
    by_prompt = {p: np.nonzero(mdp.prompt_of[cs] == p)[0] for p in range(mdp.num_prompts)}
    pick_s, pick_a = [], []
    for p in x:
        if not 0 <= p < mdp.num_prompts:
            raise ValueError(f"prompts must be indices in [0, {mdp.num_prompts}), got {p}")
        idx = by_prompt[int(p)]
        if len(idx) == 0:
            raise ValueError(f"prompt {p} ({mdp.prompts[p]!r}) has no correct completion to demonstrate")
        j = idx[rng.integers(len(idx))]
        pick_s.append(cs[j])
        pick_a.append(ca[j])
    return mdp.decode(pick_s, pick_a)


def token_targets(mdp, states, actions, weights=None) -> np.ndarray:
    """Teacher-forcing targets ``[S, V]``: every token of every sequence, weighted ``weights/N``
    (default 1/N each), so that ``sft_loss`` is the mean negative log-likelihood."""
    st, ac, m = paths(mdp, states, actions)
    n = max(len(st), 1)
    w = np.full(len(st), 1.0 / n) if weights is None else np.asarray(weights, float) / n
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    np.add.at(out, (st[m], ac[m]), np.broadcast_to(w[:, None], st.shape)[m])
    return out


def _rewards_array(mdp, reward) -> np.ndarray:
    if reward is None:
        return mdp.rewards
    r = np.asarray(reward, float)
    if r.shape != (mdp.num_states, mdp.vocab_size):
        raise ValueError(f"reward must be an array [S, V] = {(mdp.num_states, mdp.vocab_size)} with "
                         f"values on terminal pairs (like mdp.rewards), got shape {r.shape}")
    if not np.isfinite(r[mdp.terminal]).all():
        raise ValueError("reward has NaN or infinite values on terminal pairs; give every complete "
                         "sequence a finite reward (like mdp.rewards)")
    return np.where(mdp.terminal, r, 0.0)


def preference_pairs(policy, n: int, seed: int = 0, reward=None, n_candidates: int = 4,
                     prompts=None) -> list:
    """Preference pairs from sampled candidates ranked by the verifier (or a given reward).

    For each of ``n`` prompts (from D(x), or fixed by ``prompts``), sample ``n_candidates``
    completions from ``policy``; the chosen one has the highest reward, the rejected one the
    lowest (ties broken at random). Prompts whose candidates all score the same give no pair, so
    fewer than ``n`` pairs may come back: a preference method is blind to what it never compares.

    Returns ``[(prompt_index, chosen_tokens, rejected_tokens), ...]``.
    """
    check_policy(policy)
    mdp = policy.mdp
    check_count(n, "n", minimum=0, fix="the number of prompts to draw pairs from")
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) or n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2 to form a pair, got {n_candidates}")
    r = _rewards_array(mdp, reward)
    rng = np.random.default_rng(seed)
    x = rng.choice(mdp.num_prompts, size=n, p=mdp.prompt_weights) if prompts is None else \
        np.broadcast_to(np.asarray(prompts, dtype=np.int64), (n,))
    s, a = sample_pairs_from_probs(mdp, policy.probs(), n * n_candidates, seed=int(rng.integers(2**62)),
                                   prompts=np.repeat(x, n_candidates))
    s, a = s.reshape(n, n_candidates), a.reshape(n, n_candidates)
    rew = r[s, a] + 1e-9 * rng.random(s.shape)           # random tie-break among equal rewards
    out = []
    for i in range(n):
        if np.ptp(r[s[i], a[i]]) <= 0:
            continue
        w, l = int(np.argmax(rew[i])), int(np.argmin(rew[i]))
        (_, yw), (_, yl) = mdp.decode([s[i, w], s[i, l]], [a[i, w], a[i, l]])
        out.append((int(x[i]), yw, yl))
    return out


def _correct_samples(policy, n, seed, reward=None):
    mdp = policy.mdp
    s, a = sample_pairs_from_probs(mdp, policy.probs(), n, seed=seed)
    ok = (_rewards_array(mdp, reward)[s, a] >= mdp.success_threshold) if reward is not None else mdp.correct[s, a]
    return s[ok], a[ok]
