"""Exact quantities of the survey, computed by passes over the enumerated prefix tree.

Each function takes a policy (anything with ``.mdp`` and ``.probs()``) or, where it says so, a
precomputed probability array. Passes run one depth level at a time over contiguous slices, so
their cost is a few numpy operations per level, never a loop over trajectories.

Survey references: occupancy Eq. 2-3 (§2.3), effective support Eq. 5 (§3.3.1), expansion Eq. 6
(§3.3.2), shared support Eq. 7 (§3.3.3), attrition Eq. 8 (§3.3.4).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from .passes import backward_from_probs, reach_from_probs, trajectory_probs_from
from .tree import TokenMDP, check_same_world, sample_pairs_from_probs


# --------------------------------------------------------------------------- inputs
def _probs_of(pi, mdp: TokenMDP | None = None) -> tuple[TokenMDP, np.ndarray]:
    if isinstance(pi, Occupancy):
        raise TypeError("this function needs a policy, not an Occupancy")
    if not hasattr(pi, "probs") or not hasattr(pi, "mdp"):
        raise TypeError(f"expected a policy (TabularPolicy, TransformerPolicy, ...), got {type(pi).__name__}")
    if mdp is not None:
        check_same_world(mdp, pi.mdp)
    p = pi.probs()
    return pi.mdp, p


def check_eps(eps) -> float:
    """ε must lie in (0, 1]: occupancy is a distribution, so thresholds above 1 select nothing."""
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a number in (0, 1], got {eps!r}") from None
    if not (0 < e <= 1):
        raise ValueError(f"eps must lie in (0, 1], got {eps!r}: with eps <= 0 every pair would be in "
                         "support; try a small positive value such as 1e-3")
    return e


# --------------------------------------------------------------------------- forward / backward passes


def reach(pi) -> np.ndarray:
    """Reach probability of every state given its prompt, ``[S]`` (prefix reachability, §2.3)."""
    mdp, p = _probs_of(pi)
    return reach_from_probs(mdp, p)


def trajectory_probs(pi) -> np.ndarray:
    """pi(y|x) of every complete trajectory, indexed by its terminal pair ``[S, V]``."""
    mdp, p = _probs_of(pi)
    return trajectory_probs_from(mdp, p)


# --------------------------------------------------------------------------- occupancy (Eq. 2-3)
@dataclass(frozen=True)
class Occupancy:
    """Exact occupancy of a policy.

    Attributes:
        sa: d(s, a), ``[S, V]`` (Eq. 2). With ``weighting="uniform"`` (eta_t = 1/T(y)) it sums to 1;
            with ``"visits"`` (eta_t = 1) it is the expected number of visits, summing to E[T(y)].
        s: state occupancy d(s) = sum_a d(s, a), ``[S]`` (Eq. 3).
        reach: P(s visited | prompt), ``[S]``.
        probs: the policy's pi(a|s) that produced it, ``[S, V]``.
    """

    mdp: TokenMDP
    sa: np.ndarray
    s: np.ndarray
    reach: np.ndarray
    probs: np.ndarray
    weighting: str

    def per_prompt(self) -> np.ndarray:
        """Occupancy mass of each prompt, ``[P]`` (D(x) for the uniform weighting)."""
        return np.bincount(self.mdp.prompt_of, weights=self.s, minlength=self.mdp.num_prompts)


def occupancy_from_probs(mdp: TokenMDP, p: np.ndarray, weighting: str = "uniform") -> Occupancy:
    """:func:`occupancy` for a probability array ``[S, V]`` instead of a policy."""
    r = reach_from_probs(mdp, p)
    visits = mdp.prompt_weights[mdp.prompt_of][:, None] * r[:, None] * p   # D(x) reach(s) pi(a|s)
    if weighting == "uniform":
        # E[1/T(y) | y passes through (s, a)]: 1/T at a terminal pair, else the child's expectation
        inv_len = np.where(mdp.terminal, 1.0 / np.maximum(mdp.length, 1), 0.0)
        w, _ = backward_from_probs(mdp, p, inv_len)
        sa = visits * w
    elif weighting == "visits":
        sa = visits
    else:
        raise ValueError(f"weighting must be 'uniform' (eta = 1/T(y), Eq. 2) or 'visits', got {weighting!r}")
    return Occupancy(mdp, sa, sa.sum(1), r, p, weighting)


def occupancy(pi, weighting: str = "uniform") -> Occupancy:
    """Normalised state-action occupancy d(s, a) of survey Eq. 2 and state occupancy Eq. 3.

    With ``weighting="uniform"``, eta_t(y) = 1/T(y): every trajectory spreads its probability
    evenly over its own steps, so d sums to 1 even though lengths vary. Exact: a backward pass
    gives E[1/T(y)] below each pair, a forward pass gives the reach.
    """
    mdp, p = _probs_of(pi)
    return occupancy_from_probs(mdp, p, weighting)


# --------------------------------------------------------------------------- support (Eq. 5-8)
def _occ(x, mdp=None) -> Occupancy:
    occ = x if isinstance(x, Occupancy) else occupancy(x)
    if mdp is not None:
        check_same_world(mdp, occ.mdp)
    return occ


def effective_support(pi_or_occ, eps: float) -> np.ndarray:
    """E_ε = {(s, a) : d(s, a) >= ε} (Eq. 5) as a boolean mask ``[S, V]``."""
    eps = check_eps(eps)
    return _occ(pi_or_occ).sa >= eps


def trajectory_support(pi, eps: float) -> np.ndarray:
    """Trajectory-level support {y : pi(y|x) >= ε} as a mask over terminal pairs ``[S, V]``."""
    eps = check_eps(eps)
    return trajectory_probs(pi) >= eps


@dataclass(frozen=True)
class SupportChange:
    """How a training stage moved effective support (survey §3.3), at threshold ``eps``.

    Masks are ``[S, V]`` over state-action pairs: ``expanded`` (Eq. 6), ``shared`` (Eq. 7),
    ``attrited`` (Eq. 8). ``traj_*`` are the same sets for complete trajectories, with
    pi(y|x) >= eps as the support. Masses are occupancy masses (Eq. 2), summing to at most 1.
    """

    eps: float
    before: Occupancy
    after: Occupancy
    expanded: np.ndarray
    shared: np.ndarray
    attrited: np.ndarray
    traj_expanded: np.ndarray
    traj_shared: np.ndarray
    traj_attrited: np.ndarray

    @property
    def expanded_mass(self) -> float:
        """Occupancy the new policy puts on pairs that were not in support before."""
        return float(self.after.sa[self.expanded].sum())

    @property
    def attrited_mass(self) -> float:
        """Occupancy the old policy had on pairs that left support."""
        return float(self.before.sa[self.attrited].sum())

    @property
    def reshaped_mass(self) -> float:
        """Mass moved inside the shared support C_ε (Eq. 7): half the L1 change of d there.

        The course's own measure of reshaping (§3.3.3 defines reshaping-dominance in words, as the
        main effect being redistribution inside C_ε, without a number)."""
        return float(0.5 * np.abs(self.after.sa - self.before.sa)[self.shared].sum())

    @property
    def role(self) -> str:
        """The course's proxy verdict from the masses (:func:`role_of`, threshold :data:`ROLE_RATIO`)."""
        return role_of(self.expanded_mass, self.reshaped_mass)

    def counts(self) -> dict:
        return {"expanded": int(self.expanded.sum()), "shared": int(self.shared.sum()),
                "attrited": int(self.attrited.sum()),
                "traj_expanded": int(self.traj_expanded.sum()), "traj_shared": int(self.traj_shared.sum()),
                "traj_attrited": int(self.traj_attrited.sum())}

    def summary(self) -> dict:
        return {"eps": self.eps, **self.counts(), "expanded_mass": self.expanded_mass,
                "reshaped_mass": self.reshaped_mass, "attrited_mass": self.attrited_mass,
                "role": self.role}


ROLE_RATIO = 2.0
"""The course's one threshold for a dominant role: a stage is called expansion-dominant when the
occupancy mass on newly supported pairs is at least ``ROLE_RATIO`` times the mass moved inside the
shared support C_ε, reshaping-dominant in the opposite case, and mixed in between. A choice of this
course, not a number from the survey: Table 2 (§3.5) lists heuristic cues, not a decision rule.
Used by :func:`role_of`, :func:`toyenv.diagnose`, notebook 09's rule and the figures."""

ROLE_FLOOR = 1e-3
"""Below this mass on both sides a stage is reported as "no change"."""


def role_of(expanded_mass: float, reshaped_mass: float, ratio: float = ROLE_RATIO,
            floor: float = ROLE_FLOOR) -> str:
    """Dominant role from two masses: the course's operational proxy for the cues of survey Table 2.

    The survey's Table 2 (§3.5) gives heuristic cues for a dominant role and says it is not a
    checklist or a decision rule; whether a stage is expansion- or reshaping-dominant is a judgement
    in context. This function is the course's *proxy* for two of those cues (newly occupied regions,
    Eq. 6, versus redistribution inside the shared support, Eq. 7): "expansion-dominant" when the
    mass on newly supported pairs is at least ``ratio`` (:data:`ROLE_RATIO`) times the mass moved
    inside the shared support, "reshaping-dominant" in the opposite case, "mixed" in between, and
    "no change" when both are below ``floor``. "Reshaped mass" (half the L1 change of d inside C_ε)
    is the course's own measure, not a quantity the survey defines. Attrition is never a role here:
    it is a risk reported beside the role (:func:`toyenv.diagnose`).
    """
    if max(expanded_mass, reshaped_mass) < floor:
        return "no change"
    if expanded_mass >= ratio * reshaped_mass:
        return "expansion-dominant"
    if reshaped_mass >= ratio * expanded_mass:
        return "reshaping-dominant"
    return "mixed"


def support_sets(before: np.ndarray, after: np.ndarray, eps: float) -> dict:
    """The expanded (Eq. 6), shared C_ε (Eq. 7) and attrited (Eq. 8) sets, from two arrays of masses.

    ``before`` and ``after`` are masses of the same shape (occupancies d(s, a), or trajectory
    probabilities); an entry is in the effective support when its mass is at least ``eps`` (Eq. 5).
    Returns boolean masks ``{"expanded": E1 & ~E0, "shared": E0 & E1, "attrited": E0 & ~E1}``. The one
    definition of the three sets: :func:`support_change`, the figures and the widgets all use it.
    """
    e0, e1 = np.asarray(before) >= eps, np.asarray(after) >= eps
    return {"expanded": e1 & ~e0, "shared": e0 & e1, "attrited": e0 & ~e1}


def support_change(before, after, eps: float) -> SupportChange:
    """Expanded (Eq. 6), shared (Eq. 7) and attrited (Eq. 8) sets between two policies.

    ``before`` and ``after`` are policies of the same world (or their occupancies).
    """
    eps = check_eps(eps)
    b = _occ(before)
    a = _occ(after, b.mdp)
    pairs = support_sets(b.sa, a.sa, eps)
    traj = support_sets(trajectory_probs_from(b.mdp, b.probs, b.reach),
                        trajectory_probs_from(a.mdp, a.probs, a.reach), eps)
    return SupportChange(eps, b, a, pairs["expanded"], pairs["shared"], pairs["attrited"],
                         traj["expanded"], traj["shared"], traj["attrited"])


def held_out_attrition(before, after, eps: float, prompts) -> float:
    """Attrition rate of held-out prompts: the share of their old occupancy that lies on attrited
    pairs (Eq. 8), sum_{(s,a) in A_eps, x(s) in H} d_before(s, a) / sum_{x(s) in H} d_before(s).

    Needs no verifier for the held-out prompts ``prompts`` (indices), only the two policies (or their
    occupancies, to reuse them across thresholds); the monitoring quantity of notebook 07 (exercise 07.2)."""
    ch = support_change(before, after, eps)
    rows = np.isin(ch.before.mdp.prompt_of, np.asarray(prompts, dtype=np.int64))
    if not rows.any():
        raise ValueError(f"prompts={prompts!r} selects no prompt: pass prompt indices in "
                         f"0..{ch.before.mdp.num_prompts - 1}")
    return float(ch.before.sa[ch.attrited & rows[:, None]].sum() / ch.before.sa[rows].sum())


# --------------------------------------------------------------------------- success, pass@k
def success_prob(pi) -> np.ndarray:
    """Probability that a sampled completion is correct, per prompt ``[P]``."""
    mdp, p = _probs_of(pi)
    return success_from_probs(mdp, p)


def success_from_probs(mdp: TokenMDP, p: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
    """:func:`success_prob` for a probability array ``[S, V]``; ``reach``: its
    ``reach_from_probs(mdp, p)`` if already computed."""
    p = np.asarray(p)
    r = reach_from_probs(mdp, p) if reach is None else reach
    s, a = np.nonzero(mdp.correct)               # correct pairs are terminal: pi(y|x) = reach(s)·pi(a|s)
    return np.bincount(mdp.prompt_of[s], weights=r[s] * p[s, a], minlength=mdp.num_prompts)


def expected_reward(pi) -> np.ndarray:
    """E[r(x, y)] per prompt ``[P]`` (equals success_prob for a 0/1 verifier)."""
    mdp, p = _probs_of(pi)
    _, V = backward_from_probs(mdp, p, mdp.rewards)
    return V[mdp.roots]


def success_value(pi) -> tuple[np.ndarray, np.ndarray]:
    """Exact probability of eventually succeeding from every prefix: the ideal process reward (§5.2).

    Returns ``(V [S], Q [S, V])``: V(s) = P(correct | s, pi), Q(s, a) = P(correct | s, a, pi).
    """
    mdp, p = _probs_of(pi)
    Q, V = backward_from_probs(mdp, p, mdp.correct.astype(float))
    return V, Q


def check_count(k, name: str = "k") -> np.ndarray:
    """``k`` (an int or an array of ints, e.g. a sample count) as int64, else a clear error."""
    k_arr = np.asarray(k)
    if k_arr.dtype.kind not in "iu" and not (k_arr.dtype.kind == "f" and np.all(k_arr == np.round(k_arr))):
        raise TypeError(f"{name} must be a positive integer (or an array of them), got {k!r}")
    if np.any(k_arr < 1):
        raise ValueError(f"{name} must be >= 1, got {k!r}")
    return k_arr.astype(np.int64)


def pass_at_k_from_success(success: np.ndarray, weights: np.ndarray, k) -> np.ndarray | float:
    k_arr = check_count(k)
    fail = np.clip(1.0 - np.asarray(success)[:, None], 0.0, 1.0) ** k_arr.reshape(1, -1)   # [P, K]
    out = weights @ (1.0 - fail)
    return float(out[0]) if k_arr.ndim == 0 else out.reshape(k_arr.shape)


def pass_at_k(pi, k, per_prompt: bool = False):
    """Exact pass@k = sum_x D(x) [1 - (1 - p_x)^k]; ``k`` an int or an array of ints.

    ``per_prompt=True`` returns ``[P]`` (or ``[P, K]``) instead of the prompt-weighted average.
    """
    mdp, p = _probs_of(pi)
    succ = success_from_probs(mdp, p)
    if per_prompt:
        k_arr = check_count(k)
        out = 1.0 - (1.0 - succ[:, None]) ** k_arr.reshape(1, -1)
        return out[:, 0] if k_arr.ndim == 0 else out.reshape((mdp.num_prompts,) + k_arr.shape)
    return pass_at_k_from_success(succ, mdp.prompt_weights, k)


def informative_group_prob(p, group_size: int):
    """P(a group of ``group_size`` i.i.d. rollouts, each correct with probability ``p``, holds both a
    success and a failure) = 1 - p^K - (1 - p)^K. Only such a GRPO group has non-zero advantages and
    carries a gradient (§5.1); with hints, ``p`` is the mixture of hinted and unhinted success."""
    K = int(check_count(group_size, "group_size"))
    p = np.asarray(p, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p is a success probability in [0, 1], got {p!r}")
    out = 1.0 - p ** K - (1.0 - p) ** K
    return float(out) if out.ndim == 0 else out


def pass_at_k_unbiased(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def distinct_correct(pi, eps: float | None = None, k: int | None = None) -> np.ndarray:
    """Per prompt ``[P]``: with ``eps``, the number of correct completions with pi(y|x) >= eps;
    with ``k``, the expected number of distinct correct completions among k samples,
    sum_y [1 - (1 - pi(y|x))^k] over correct y."""
    mdp, p = _probs_of(pi)
    t = trajectory_probs_from(mdp, p)
    s, a = np.nonzero(mdp.correct)
    if (eps is None) == (k is None):
        raise ValueError("pass exactly one of eps= (a support threshold) or k= (a sample count)")
    w = (t[s, a] >= check_eps(eps)).astype(float) if eps is not None else 1 - (1 - t[s, a]) ** int(check_count(k))
    return np.bincount(mdp.prompt_of[s], weights=w, minlength=mdp.num_prompts)


# --------------------------------------------------------------------------- KL (chain rule)
def kl_per_state(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p(.|s) || q(.|s)) for every state ``[S]``; +inf where q misses mass p has."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = p > 0
        terms = np.where(pos, p * (np.log(np.where(pos, p, 1)) - np.log(q)), 0.0)
    return terms.sum(1)


def kl_terms(mdp: TokenMDP, p: np.ndarray, q: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
    """The chain-rule terms of the sequence KL(p || q): reach_p(s)·KL(p(.|s) || q(.|s)) per state ``[S]``.

    Summed over a prompt's states they give KL(p(.|x) || q(.|x)); summed over a subset of states,
    the KL accumulated there. ``reach``: ``reach_from_probs(mdp, p)`` if already computed.
    """
    return (reach_from_probs(mdp, p) if reach is None else reach) * kl_per_state(p, q)


def kl_from_probs(mdp: TokenMDP, p: np.ndarray, q: np.ndarray, per_prompt: bool = False,
                  reach: np.ndarray | None = None):
    """Exact sequence-level KL(p || q) from probability arrays ``[S, V]``: the array form of :func:`kl`.

    ``reach``: ``reach_from_probs(mdp, p)`` if already computed (one forward pass for several KLs)."""
    per = np.bincount(mdp.prompt_of, weights=kl_terms(mdp, p, q, reach), minlength=mdp.num_prompts)
    return per if per_prompt else float(mdp.prompt_weights @ per)


def kl(p, q, per_prompt: bool = False):
    """Exact sequence-level KL(p || q), prompt-weighted, by the chain rule over the tree.

    KL(p || q) = sum_x D(x) sum_s reach_p(s) KL(p(.|s) || q(.|s)): states are weighted by the reach
    of the *first* argument. Forward KL of a student to a teacher is ``kl(teacher, student)``,
    reverse KL is ``kl(student, teacher)``.
    """
    mdp, pp = _probs_of(p)
    _, qq = _probs_of(q, mdp)
    return kl_from_probs(mdp, pp, qq, per_prompt)


def entropy(pi, per_prompt: bool = False):
    """Sequence-level entropy H(pi(.|x)) by the chain rule, prompt-weighted (nats)."""
    mdp, p = _probs_of(pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_s = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0).sum(1)
    per = np.bincount(mdp.prompt_of, weights=reach_from_probs(mdp, p) * h_s, minlength=mdp.num_prompts)
    return per if per_prompt else float(mdp.prompt_weights @ per)


# --------------------------------------------------------------------------- sampling
def sample_pairs(pi, n: int, seed: int = 0, prompts=None):
    """Sample ``n`` trajectories of a policy as terminal pairs ``(states [n], actions [n])``."""
    mdp, p = _probs_of(pi)
    return sample_pairs_from_probs(mdp, p, n, seed=seed, prompts=prompts)


