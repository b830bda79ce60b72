"""From exact to sampled: what a finite sample of completions can tell you (survey §7.2.1).

On a real LLM the prefix tree cannot be enumerated: effective support, pass@k and the mass of rare
behaviour have to be *estimated* from sampled completions. Every estimator here has an exact twin
in :mod:`toyenv.exact` (or a closed form below), and tests/test_estimate.py checks that they agree
within sampling error: every sampled quantity here has an exact twin.

- Detectability: a completion (or any event) of probability ε shows up at
  least once in k independent samples with probability 1 − (1 − ε)^k
  (:func:`detection_prob`); at confidence c the smallest mass you can expect to see is
  ε_k = 1 − (1 − c)^{1/k} ≈ −ln(1 − c)/k (:func:`detectable_mass`), and
  :func:`samples_to_detect` inverts it.
- pass@k from n samples with c correct: the unbiased estimator 1 − C(n−c, k)/C(n, k) (Chen et al.
  2021) and the biased plug-in 1 − (1 − c/n)^k (:func:`pass_at_k_estimator`), with their exact
  sampling distributions under c ~ Binomial(n, p) (:func:`estimator_distribution`).
  :func:`sampled_pass_at_k` estimates a policy's pass@k; its exact twin is :func:`toyenv.pass_at_k`.
- Occupancy and effective support from samples: :func:`empirical_occupancy` is an unbiased
  estimate of d(s, a) (Eq. 2) and :func:`sampled_support` thresholds it (Eq. 5); exact twins
  :func:`toyenv.occupancy`, :func:`toyenv.effective_support`.
- Unseen behaviour: :func:`expected_distinct` (exact expected number of distinct completions in
  n samples), :func:`good_turing` (the Good-Turing estimate of the probability mass of completions
  never seen) and its exact twins :func:`missing_mass` / :func:`expected_missing_mass`.

All samplers take a ``seed``; nothing draws from a global random state.
"""
from __future__ import annotations

import math

import numpy as np

from .exact import _probs_of, check_count, check_eps, success_prob
from .passes import trajectory_probs_from
from .tree import paths, sample_pairs_from_probs

KINDS = ("unbiased", "plugin")


# --------------------------------------------------------------------------- argument checks
def _check_confidence(confidence) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        raise TypeError(f"confidence must be a number in (0, 1), got {confidence!r}") from None
    if not 0 < c < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return c


def _check_mass(eps, name="eps") -> np.ndarray:
    e = np.asarray(eps, dtype=float)
    if np.any(~(e > 0)) or np.any(e > 1):
        raise ValueError(f"{name} is a probability mass in (0, 1], got {eps!r}")
    return e


def _scalar(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x


# --------------------------------------------------------------------------- detectability
def detection_prob(eps, k):
    """P(an event of probability ``eps`` occurs at least once in ``k`` samples) = 1 − (1 − ε)^k.

    Broadcasts over ``eps`` and ``k``. Computed as −expm1(k·log1p(−ε)), accurate for tiny ε.
    """
    e = _check_mass(eps)
    k_arr = check_count(k)
    with np.errstate(divide="ignore"):
        return _scalar(-np.expm1(k_arr * np.log1p(-e)))


def detectable_mass(k, confidence: float = 0.95, approx: bool = False):
    """The smallest mass ε_k seen at least once in ``k`` samples with probability ``confidence``.

    Exact: ε_k = 1 − (1 − c)^{1/k}, the solution of :func:`detection_prob` (ε, k) = c. With
    ``approx=True``: −ln(1 − c)/k (k = 8192, c = 0.95 → 3.66·10⁻⁴), the "rule of three"
    for c = 0.95. A behaviour rarer than ε_k is missed entirely with probability above 1 − c.
    """
    c = _check_confidence(confidence)
    k_arr = check_count(k).astype(float)
    if approx:
        return _scalar(-math.log1p(-c) / k_arr)
    return _scalar(-np.expm1(math.log1p(-c) / k_arr))


def samples_to_detect(eps, confidence: float = 0.95):
    """The smallest k with 1 − (1 − ε)^k ≥ ``confidence``: samples needed to see a behaviour of
    mass ``eps`` at least once with that confidence. ``ceil(ln(1 − c) / ln(1 − ε))``, corrected
    for floating-point rounding at exact boundaries. Broadcasts over ``eps``; returns int(s)."""
    c = _check_confidence(confidence)
    e = _check_mass(eps)
    out = []
    for ei in np.atleast_1d(e).ravel():
        if ei >= 1.0:
            out.append(1)
            continue
        k = max(1, math.ceil(math.log1p(-c) / math.log1p(-ei)))
        while k > 1 and -math.expm1((k - 1) * math.log1p(-ei)) >= c:
            k -= 1
        while -math.expm1(k * math.log1p(-ei)) < c:
            k += 1
        out.append(k)
    arr = np.array(out, dtype=np.int64).reshape(np.shape(e))
    return int(arr) if arr.ndim == 0 else arr


# --------------------------------------------------------------------------- pass@k estimators
def pass_at_k_estimator(n: int, c, k: int, kind: str = "unbiased"):
    """Estimate pass@k from ``n`` samples of which ``c`` are correct (``c`` may be an array).

    kind "unbiased": 1 − C(n−c, k)/C(n, k) (Chen et al. 2021), whose expectation under
    c ~ Binomial(n, p) is exactly 1 − (1 − p)^k; computed as the product Π_{i=n−c+1}^{n} (1 − k/i),
    which never overflows (C(n, k) does, in floating point, for n in the thousands).
    kind "plugin": 1 − (1 − c/n)^k, the exact formula with p replaced by c/n; biased low because
    p ↦ 1 − (1 − p)^k is concave (Jensen). Needs 1 <= k <= n for "unbiased".
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    n = int(n)
    k = int(check_count(k))
    c_arr = np.asarray(c)
    if c_arr.dtype.kind not in "iu" and not np.all(c_arr == np.round(c_arr)):
        raise TypeError(f"c counts correct samples: integers, got {c!r}")
    c_arr = c_arr.astype(np.int64)
    if np.any((c_arr < 0) | (c_arr > n)):
        raise ValueError(f"need 0 <= c <= n = {n}, got c = {c!r}")
    if kind == "plugin":
        return _scalar(1.0 - (1.0 - c_arr / n) ** k)
    if k > n:
        raise ValueError(f"the unbiased estimator needs k <= n (k = {k}, n = {n}): draw at least k samples")
    # ratio[c] = C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i), ratio[0] = 1; zero once n-c < k
    ratio = np.concatenate([[1.0], np.cumprod(1.0 - k / np.arange(n, 0, -1, dtype=float))])
    ratio[np.arange(n + 1) > n - k] = 0.0
    return _scalar(1.0 - ratio[c_arr])


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(c = 0..n) for c ~ Binomial(n, p), ``[n + 1]`` (log-space, exact to ~1e-15)."""
    n = int(n)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    c = np.arange(n + 1)
    if p == 0.0 or p == 1.0:
        out = np.zeros(n + 1)
        out[0 if p == 0.0 else n] = 1.0
        return out
    logc = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in c])
    return np.exp(logc + c * math.log(p) + (n - c) * math.log1p(-p))


def estimator_distribution(n: int, p: float, k: int, kind: str = "unbiased") -> tuple[np.ndarray, np.ndarray]:
    """Exact sampling distribution of a pass@k estimator when each of ``n`` samples is correct
    with probability ``p``: ``(values [n+1], probabilities [n+1])``, value c ↦ estimate."""
    return np.asarray(pass_at_k_estimator(n, np.arange(n + 1), k, kind), float), binomial_pmf(n, p)


def estimator_mean(n: int, p: float, k: int, kind: str = "unbiased") -> float:
    """E[estimate] under c ~ Binomial(n, p): 1 − (1 − p)^k for "unbiased" (exactly; that is the
    point), less for "plugin" (n=40, k=10, p=0.07 → 0.5160 vs 0.4765)."""
    v, w = estimator_distribution(n, p, k, kind)
    return float(w @ v)


def estimator_std(n: int, p: float, k: int, kind: str = "unbiased") -> float:
    """Standard deviation of a pass@k estimate from ``n`` samples (exact, over c ~ Binomial(n, p))."""
    v, w = estimator_distribution(n, p, k, kind)
    m = w @ v
    return float(np.sqrt(max(w @ (v - m) ** 2, 0.0)))


# --------------------------------------------------------------------------- sampling a policy
def sample_per_prompt(pi, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` completions for every prompt, as terminal pairs ``(states [P, n], actions [P, n])``."""
    mdp, p = _probs_of(pi)
    n = int(check_count(n, "n"))
    s, a = sample_pairs_from_probs(mdp, p, n * mdp.num_prompts, seed=seed,
                                   prompts=np.repeat(np.arange(mdp.num_prompts), n))
    return s.reshape(mdp.num_prompts, n), a.reshape(mdp.num_prompts, n)


def success_counts(pi, n: int, seed: int = 0) -> np.ndarray:
    """Number of correct completions among ``n`` samples of every prompt, ``[P]`` ints
    (c_x ~ Binomial(n, p_x), p_x = :func:`toyenv.success_prob`)."""
    s, a = sample_per_prompt(pi, n, seed)
    return pi.mdp.correct[s, a].sum(1)


def sampled_pass_at_k(pi, n: int, k, seed: int = 0, kind: str = "unbiased", per_prompt: bool = False):
    """pass@k estimated from ``n`` sampled completions per prompt (exact twin: :func:`toyenv.pass_at_k`).

    ``k`` an int or an array of ints (each <= n for "unbiased"). Returns the prompt-weighted
    estimate (``[K]`` for an array ``k``), or ``[P]`` / ``[P, K]`` with ``per_prompt=True``. The same
    samples serve every k, as in practice.
    """
    mdp = pi.mdp
    c = success_counts(pi, n, seed)
    ks = np.atleast_1d(check_count(k))
    est = np.stack([np.asarray(pass_at_k_estimator(n, c, int(kk), kind), float) for kk in ks], 1)  # [P, K]
    out = est if per_prompt else mdp.prompt_weights @ est
    if np.ndim(k) == 0:
        out = out[..., 0]
    return _scalar(out)


def sampled_pass_at_k_std(pi, n: int, k, kind: str = "unbiased") -> np.ndarray | float:
    """Exact standard deviation of :func:`sampled_pass_at_k` (prompt-weighted, prompts sampled
    independently): sqrt(Σ_x D(x)² Var_x). Use it for error bars."""
    p = success_prob(pi)
    w = pi.mdp.prompt_weights
    ks = np.atleast_1d(check_count(k))
    var = np.array([sum(wx**2 * estimator_std(n, float(px), int(kk), kind) ** 2 for wx, px in zip(w, p))
                    for kk in ks])
    return _scalar(np.sqrt(var) if np.ndim(k) else np.sqrt(var[0]))


# --------------------------------------------------------------------------- occupancy from samples
def empirical_occupancy(mdp, states, actions) -> np.ndarray:
    """Unbiased estimate of d(s, a) (survey Eq. 2, η_t = 1/T(y)) from sampled trajectories.

    ``states, actions`` are the terminal pairs of n completions whose prompts were drawn from D(x)
    (``toyenv.sample_pairs(pi, n, seed)``). Each step of each path gets 1/(n·T(y)): the sample
    already carries D(x) and π, so no probability weights appear. ``[S, V]``, sums to 1.
    Exact twin: ``toyenv.occupancy(pi).sa`` (the expectation of this estimate).
    """
    s = np.asarray(states, dtype=np.int64).ravel()
    a = np.asarray(actions, dtype=np.int64).ravel()
    if len(s) == 0:
        raise ValueError("no samples: pass the terminal pairs of at least one sampled completion")
    if not np.all(mdp.terminal[s, a]):
        raise ValueError("states/actions must be terminal pairs (the last step of each completion), "
                         "as toyenv.sample_pairs returns")
    st, ac, m = paths(mdp, s, a)
    w = 1.0 / (len(s) * mdp.length[s, a])                                     # [n]
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    np.add.at(out, (st[m], ac[m]), np.broadcast_to(w[:, None], st.shape)[m])
    return out


def sampled_occupancy(pi, n: int, seed: int = 0) -> np.ndarray:
    """:func:`empirical_occupancy` of ``n`` completions of ``pi`` (prompts from D(x)). ``[S, V]``."""
    mdp, p = _probs_of(pi)
    s, a = sample_pairs_from_probs(mdp, p, int(check_count(n, "n")), seed=seed)
    return empirical_occupancy(mdp, s, a)


def sampled_support(pi, n: int, eps: float, seed: int = 0) -> np.ndarray:
    """Effective support estimated from ``n`` samples: {(s, a) : d̂(s, a) >= ε} (Eq. 5), ``[S, V]``.
    Exact twin: :func:`toyenv.effective_support`. Pairs whose d is far below 1/n are never seen."""
    eps = check_eps(eps)
    return sampled_occupancy(pi, n, seed) >= eps


# --------------------------------------------------------------------------- unseen completions
def completion_counts(mdp, states, actions) -> np.ndarray:
    """How often each complete trajectory (terminal pair) occurs in a sample, ``[S, V]`` ints."""
    out = np.zeros((mdp.num_states, mdp.vocab_size), dtype=np.int64)
    np.add.at(out, (np.asarray(states).ravel(), np.asarray(actions).ravel()), 1)
    return out


def expected_distinct(pi, n: int, correct_only: bool = False) -> np.ndarray:
    """Expected number of distinct completions among ``n`` samples of each prompt, ``[P]``:
    Σ_y [1 − (1 − π(y|x))^n] (with ``correct_only``, over correct y: ``distinct_correct(pi, k=n)``)."""
    mdp, p = _probs_of(pi)
    t = trajectory_probs_from(mdp, p)
    mask = mdp.correct if correct_only else mdp.terminal
    s, a = np.nonzero(mask)
    w = -np.expm1(int(check_count(n, "n")) * np.log1p(-np.minimum(t[s, a], 1.0)))
    return np.bincount(mdp.prompt_of[s], weights=w, minlength=mdp.num_prompts)


def good_turing(mdp, states, actions) -> np.ndarray:
    """Good-Turing estimate of the unseen probability mass per prompt, ``[P]``: N₁/n, the fraction
    of a prompt's samples whose completion occurs exactly once. ``states, actions`` are
    ``[P, n]`` (:func:`sample_per_prompt`). It says *how much* mass was never seen, not *which*
    completions carry it. Exact twin of its expectation: Σ_y π(y|x)(1 − π(y|x))^{n−1}."""
    s, a = np.asarray(states), np.asarray(actions)
    if s.ndim != 2 or s.shape[0] != mdp.num_prompts:
        raise ValueError(f"states must be [num_prompts={mdp.num_prompts}, n] (toyenv.estimate.sample_per_prompt), "
                         f"got shape {s.shape}")
    out = np.zeros(mdp.num_prompts)
    for x in range(mdp.num_prompts):
        _, counts = np.unique(s[x] * mdp.vocab_size + a[x], return_counts=True)
        out[x] = (counts == 1).sum() / s.shape[1]
    return out


def missing_mass(pi, states, actions) -> np.ndarray:
    """Exact probability mass, per prompt, of the completions that do *not* occur in the sample
    ``[P, n]`` (needs the exact π: the quantity Good-Turing estimates). ``[P]``."""
    mdp, p = _probs_of(pi)
    t = trajectory_probs_from(mdp, p)
    seen = completion_counts(mdp, states, actions) > 0
    unseen = mdp.terminal & ~seen
    return np.bincount(mdp.prompt_of, weights=np.where(unseen, t, 0.0).sum(1), minlength=mdp.num_prompts)


def expected_missing_mass(pi, n: int, good_turing_estimate: bool = False) -> np.ndarray:
    """E[missing mass] after ``n`` samples of each prompt: Σ_y π(y|x)(1 − π(y|x))^n, ``[P]``.
    With ``good_turing_estimate=True``: the expectation of :func:`good_turing`,
    Σ_y π(y|x)(1 − π(y|x))^{n−1}; the two differ by Σ_y π(y|x)²(1 − π(y|x))^{n−1}, small unless
    a single completion of mass ~1/n is still unseen."""
    mdp, p = _probs_of(pi)
    t = trajectory_probs_from(mdp, p)
    s, a = np.nonzero(mdp.terminal)
    n = int(check_count(n, "n"))
    e = n - 1 if good_turing_estimate else n
    w = t[s, a] * (1.0 - t[s, a]) ** e
    return np.bincount(mdp.prompt_of[s], weights=w, minlength=mdp.num_prompts)
