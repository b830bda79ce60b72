"""RLHF with a learned reward model, over-optimisation, and best-of-n (survey §4.2, §5.1).

The gold verifier of a world stays aside. A *proxy* reward is learned from preference pairs:
completions sampled from a policy, compared by the gold verifier (with label noise), fitted with a
Bradley-Terry model over a few features of the completion (a linear reward model). The features
cannot express the gold verifier exactly, so the proxy generalises imperfectly, and optimising it
hard eventually lowers the gold reward: over-optimisation (Gao et al. 2023, survey ref [98]). Everything downstream is exact: the KL-regularised optimum of the proxy for every
beta (π* ∝ π_ref·exp(r̂/β)), best-of-n distributions, and any RL run's snapshots.

Typical use::

    mdp = toyenv.make("many-paths")
    base = mdp.base_policy()
    rm = toyenv.reward_model(base, n_pairs=256, seed=0)       # learned proxy, rm.table [S, V]
    run = toyenv.rl(base, reward=rm.table, beta=0.05, exact=True, steps=200)   # RLHF
    report = toyenv.overoptimization(base, rm, run=run)     # gold vs proxy vs sqrt(KL)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .loop import Run, check_count, check_choice, check_policy
from .rl import rl
from ..core.passes import trajectory_probs_from
from ..core.policies import Policy, TabularPolicy
from ..core.tree import TokenMDP, check_same_world, sample_pairs_from_probs

FEATURES = ("bag", "bag+length", "tabular")


# --------------------------------------------------------------------------- features
def completion_features(mdp: TokenMDP, kind: str = "bag") -> tuple[np.ndarray, list]:
    """Features of every complete trajectory, indexed by its terminal pair: ``([S, V, F], names)``.

    kinds:
        "bag": how many times each non-end token occurs, and whether the completion was ended by
            the end token (not cut at the horizon). Blind to order and to the prompt.
        "bag+length": "bag" plus the completion length T(y).
        "tabular": one indicator per complete trajectory: a reward model that memorises the pairs
            it saw and says 0 about every other completion.
    Values off terminal pairs are 0.
    """
    s, a = np.nonzero(mdp.terminal)
    toks = np.concatenate([mdp.tokens[s, : max(mdp.horizon - 1, 1)], np.full((len(s), 1), -1)], 1)
    toks[np.arange(len(s)), mdp.depth[s]] = a                                   # [N, T] padded -1
    if kind in ("bag", "bag+length"):
        letters = [t for t in range(mdp.vocab_size) if t != mdp.eos]
        cols = [(toks == t).sum(1) for t in letters] + [(a == mdp.eos).astype(int)]
        names = [f"count({mdp.vocab[t]})" for t in letters] + ["ended"]
        if kind == "bag+length":
            cols.append(mdp.depth[s] + 1)
            names.append("length")
        phi = np.stack(cols, 1).astype(float)
    elif kind == "tabular":
        phi = np.eye(len(s))
        names = [f"y{i}" for i in range(len(s))]
    else:
        raise ValueError(f"kind must be one of {FEATURES}, got {kind!r}")
    out = np.zeros((mdp.num_states, mdp.vocab_size, phi.shape[1]))
    out[s, a] = phi
    return out, names


# --------------------------------------------------------------------------- preference data
def gold_preferences(policy: Policy, n_pairs: int, *, seed: int = 0, noise: float = 0.0,
                     reward=None, prompts=None) -> tuple[np.ndarray, ...]:
    """Preference pairs sampled from ``policy`` and labelled by the gold reward (survey §4.2).

    For each pair, a prompt is drawn from D(x) (or from ``prompts``, a list of prompt indices) and two
    completions from ``policy``. The label says whether the first is preferred: 1 if its gold reward
    is higher, 0 if lower, a fair coin if they tie; then each label is flipped with probability
    ``noise``. Coverage is limited to what the policy samples.

    Returns terminal pairs and labels: ``(s1 [n], a1 [n], s2 [n], a2 [n], label [n])``.
    """
    check_policy(policy)
    check_count(n_pairs, "n_pairs", fix="the number of preference pairs to sample, e.g. n_pairs=256")
    mdp = policy.mdp
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not 0.0 <= noise < 0.5:
        raise ValueError(f"noise is a label-flip probability in [0, 0.5), got {noise!r}")
    r = mdp.rewards if reward is None else np.asarray(reward, float)
    rng = np.random.default_rng(seed)
    if prompts is None:
        x = rng.choice(mdp.num_prompts, size=n_pairs, p=mdp.prompt_weights)
    else:
        x = rng.choice(np.asarray(prompts, dtype=np.int64), size=n_pairs)
    s, a = sample_pairs_from_probs(mdp, policy.probs(), 2 * n_pairs, seed=int(rng.integers(2**62)),
                                   prompts=np.repeat(x, 2))
    s1, s2, a1, a2 = s[0::2], s[1::2], a[0::2], a[1::2]
    d = r[s1, a1] - r[s2, a2]
    label = np.where(d > 0, 1.0, np.where(d < 0, 0.0, (rng.random(n_pairs) < 0.5).astype(float)))
    flip = rng.random(n_pairs) < noise
    label = np.where(flip, 1.0 - label, label)
    return s1, a1, s2, a2, label


# --------------------------------------------------------------------------- the reward model
@dataclass(eq=False)
class RewardModel:
    """A linear Bradley-Terry reward model r̂(x, y) = w·φ(y) learned from preferences.

    Attributes:
        table: r̂ on every terminal pair, ``[S, V]`` (0 elsewhere): pass it as ``reward=`` to
            ``toyenv.rl`` / ``toyenv.dpo`` / :func:`bon_policy`.
        weights: w ``[F]``; ``names`` the features; ``kind`` the feature set.
        pair_accuracy: fraction of training pairs whose label the model gets right.
        n_pairs, noise, seed: how the data was made.
    """

    mdp: TokenMDP
    table: np.ndarray
    weights: np.ndarray
    names: list
    kind: str
    pair_accuracy: float
    config: dict = field(default_factory=dict)

    def gold_agreement(self, policy: Policy) -> float:
        """Probability that r̂ orders two independent samples of ``policy`` like the gold reward,
        among pairs whose gold rewards differ (exact, prompt-weighted)."""
        mdp = self.mdp
        t = trajectory_probs_from(mdp, policy.probs())
        s, a = np.nonzero(mdp.terminal)
        num = den = 0.0
        for x in range(mdp.num_prompts):
            m = mdp.prompt_of[s] == x
            if mdp.prompt_weights[x] == 0 or not m.any():
                continue
            p, g, h = t[s[m], a[m]], mdp.rewards[s[m], a[m]], self.table[s[m], a[m]]
            w = p[:, None] * p[None, :] * (g[:, None] > g[None, :])
            num += mdp.prompt_weights[x] * (w * (h[:, None] > h[None, :])).sum()
            den += mdp.prompt_weights[x] * w.sum()
        return float(num / den) if den > 0 else float("nan")

    def __repr__(self):
        w = ", ".join(f"{n}={v:+.2f}" for n, v in zip(self.names[:8], self.weights[:8]))
        return f"RewardModel({self.kind!r}, {w}{', ...' if len(self.names) > 8 else ''}; pair acc {self.pair_accuracy:.2f})"


def fit_bradley_terry(phi1: np.ndarray, phi2: np.ndarray, label: np.ndarray, l2: float = 1e-2,
                      iters: int = 200) -> np.ndarray:
    """Weights w minimising mean BCE(σ(w·(φ1 − φ2)), label) + l2/2·‖w‖² (Bradley-Terry; §4.2).

    Inputs ``[n, F]``, ``[n, F]``, ``[n]``; returns ``[F]``. Deterministic (L-BFGS from zero).
    """
    d = torch.as_tensor(phi1 - phi2, dtype=torch.float64)
    y = torch.as_tensor(label, dtype=torch.float64)
    w = torch.zeros(d.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=iters, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(d @ w, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().copy()


def reward_model(policy: Policy, *, n_pairs: int = 256, seed: int = 0, noise: float = 0.1,
                 features: str = "bag", l2: float = 1e-2, prompts=None) -> RewardModel:
    """Learn a proxy reward from ``n_pairs`` gold-labelled preference pairs sampled from ``policy``.

    Provenance: off-policy comparisons of the policy's own samples; interface: preferences, turned
    into a scalar reward (the RLHF recipe, survey §4.2 and §5.1). See :func:`gold_preferences`
    (``noise`` label flips) and :func:`completion_features` (``features``).
    """
    check_policy(policy)
    check_choice(features, "features", FEATURES)
    mdp = policy.mdp
    phi, names = completion_features(mdp, features)
    s1, a1, s2, a2, label = gold_preferences(policy, n_pairs, seed=seed, noise=noise, prompts=prompts)
    w = fit_bradley_terry(phi[s1, a1], phi[s2, a2], label, l2=l2)
    table = np.where(mdp.terminal, phi @ w, 0.0)
    pred = (table[s1, a1] - table[s2, a2]) > 0
    acc = float(np.mean(pred == (label > 0.5)))
    return RewardModel(mdp, table, w, names, features, acc,
                       dict(n_pairs=n_pairs, seed=seed, noise=noise, l2=l2))


# --------------------------------------------------------------------------- trajectory distributions
def policy_from_trajectory_probs(mdp: TokenMDP, traj: np.ndarray, fallback: np.ndarray | None = None) -> TabularPolicy:
    """The tabular policy whose sequence distribution is ``traj`` (``[S, V]``, mass on terminal pairs,
    summing to 1 per prompt): π(a|s) = mass below (s, a) / mass below s. Rows with no mass below
    them copy ``fallback`` (default uniform)."""
    below = np.where(mdp.terminal, traj, 0.0)
    M = np.zeros(mdp.num_states)
    for _, sl in mdp.levels(reverse=True):
        ch = mdp.child[sl]
        below[sl] = np.where(ch >= 0, M[np.maximum(ch, 0)], below[sl])
        M[sl] = below[sl].sum(1)
    fb = np.full((mdp.num_states, mdp.vocab_size), 1.0 / mdp.vocab_size) if fallback is None else fallback
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(M[:, None] > 0, below / M[:, None], fb)
    return TabularPolicy.from_probs(mdp, p / p.sum(1, keepdims=True))


def bon_probs(policy: Policy, n: int, reward=None) -> np.ndarray:
    """Exact best-of-n distribution: sample n completions from ``policy``, keep the highest reward.

    For each prompt, order completions by reward; with F(y) = P(reward < r(y)) + P(y) and
    F⁻(y) = P(reward < r(y)) (ties: a tied group G gets F(G)ⁿ − F⁻(G)ⁿ, split in proportion to π(y),
    as random tie-breaking does), P_BoN(y) = F(y)ⁿ − F⁻(y)ⁿ. Returns ``[S, V]`` on terminal pairs.
    ``reward``: ``[S, V]`` (default: the gold verifier ``mdp.rewards``).
    """
    mdp = policy.mdp
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    r = mdp.rewards if reward is None else np.asarray(reward, float)
    t = trajectory_probs_from(mdp, policy.probs())
    s, a = np.nonzero(mdp.terminal)
    out = np.zeros_like(t)
    for x in range(mdp.num_prompts):
        m = np.nonzero(mdp.prompt_of[s] == x)[0]
        p, rv = t[s[m], a[m]], r[s[m], a[m]]
        levels, inv = np.unique(rv, return_inverse=True)          # sorted reward levels
        mass = np.bincount(inv, weights=p, minlength=len(levels))
        hi = np.cumsum(mass)
        lo = hi - mass
        hi, lo = np.minimum(hi, 1.0), np.minimum(lo, 1.0)
        group = hi**n - lo**n
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(mass[inv] > 0, p / mass[inv], 0.0)
        out[s[m], a[m]] = group[inv] * share
    return out


def bon_policy(policy: Policy, n: int, reward=None) -> TabularPolicy:
    """Best-of-n as a tabular policy (:func:`bon_probs` turned into π(a|s)); its KL to ``policy`` is
    at most log n − (n−1)/n per prompt (equality when no two completions tie)."""
    return policy_from_trajectory_probs(policy.mdp, bon_probs(policy, n, reward), fallback=policy.probs())


def bon_kl_bound(n) -> np.ndarray:
    """The analytical KL(BoN‖π_ref) = log n − (n−1)/n, an upper bound for discrete rewards."""
    n = np.asarray(n, float)
    return np.log(n) - (n - 1) / n


# --------------------------------------------------------------------------- over-optimisation


# --------------------------------------------------------------------------- the method
def rlhf(policy: Policy, proxy=None, *, beta: float = 0.05, n_pairs: int = 256, noise: float = 0.1,
         features: str = "bag", seed: int = 0, **rl_options) -> Run:
    """RLHF: learn a reward model from gold-labelled preferences, then run on-policy RL against it.

    Provenance on-policy; interface a learned scalar reward (survey §5.1, §4.2). ``proxy`` is a
    :class:`RewardModel` or ``[S, V]`` table; by default one is learned from ``policy``'s samples
    (:func:`reward_model` with ``n_pairs``, ``noise``, ``features``, ``seed``). The gold verifier
    is kept aside: the run's ``history["success"]`` is the gold success it never trained on.
    ``beta`` is the KL weight; ``rl_options`` go to :func:`toyenv.rl` (``exact``, ``steps``, ``lr``,
    ``algo``, ``optimizer``, ``snapshot_steps``, ...).

    Returns a :class:`Run` whose ``artifacts["reward_model"]`` is the proxy it optimised (a
    :class:`RewardModel`, or the table given); evaluate with
    :func:`overoptimization` ``(policy, run.artifacts["reward_model"], run=run)``.
    """
    check_policy(policy)
    if "reward" in rl_options:
        raise TypeError("rlhf trains against its reward model: pass the reward as proxy=..., not reward=...")
    if proxy is None:
        rm = reward_model(policy, n_pairs=n_pairs, seed=seed, noise=noise, features=features)
    elif isinstance(proxy, RewardModel):
        check_same_world(policy.mdp, proxy.mdp, "reward model")
        rm = proxy
    else:
        rm = np.asarray(proxy, float)
    table = rm.table if isinstance(rm, RewardModel) else rm
    run = rl(policy, beta=beta, reward=table, seed=seed, **rl_options)
    run.method = "rlhf"
    run.config["reward_model"] = repr(rm) if isinstance(rm, RewardModel) else "table"
    run.config["n_pairs"] = n_pairs if proxy is None else 0      # preference pairs this call labelled
    run.artifacts["reward_model"] = rm
    return run
