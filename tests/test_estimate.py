"""Sampled estimators and their exact twins (survey §7.2.1; every sampled quantity has an
exact twin, and a test says they agree within sampling error)."""
import math

import numpy as np
import pytest

import toyenv
from toyenv import estimate as E
from toyenv.core.exact import sample_pairs


# --------------------------------------------------------------------------- detectability
def test_detection_prob_identities():
    """1 − (1 − ε)^k; ε_k inverts it exactly; the −ln(1−c)/k approximation."""
    assert E.detection_prob(0.5, 1) == pytest.approx(0.5, abs=1e-15)
    assert E.detection_prob(0.1, 3) == pytest.approx(1 - 0.9**3, abs=1e-15)
    assert E.detection_prob(1e-12, 10) == pytest.approx(1e-11, rel=1e-9)      # no cancellation
    np.testing.assert_allclose(E.detection_prob(np.array([1e-3, 1e-2]), np.array([[1], [100]])),
                               1 - (1 - np.array([[1e-3, 1e-2]])) ** np.array([[1], [100]]), rtol=1e-12)
    for k in (1, 10, 8192, 10**6):
        for c in (0.5, 0.9, 0.95, 0.99):
            assert E.detection_prob(E.detectable_mass(k, c), k) == pytest.approx(c, abs=1e-12)
            assert E.detectable_mass(k, c) <= E.detectable_mass(k, c, approx=True)
    assert E.detectable_mass(8192, 0.95, approx=True) == pytest.approx(3.66e-4, rel=1e-3)
    assert E.detectable_mass(8192, 0.95) == pytest.approx(3.656e-4, rel=1e-3)


def test_samples_to_detect_is_the_smallest_sufficient_k():
    for eps in (0.5, 0.3, 0.1, 1e-2, 1e-4, 4e-6):
        for c in (0.5, 0.75, 0.95, 0.99):
            k = E.samples_to_detect(eps, c)
            assert isinstance(k, int)
            assert E.detection_prob(eps, k) >= c
            assert k == 1 or E.detection_prob(eps, k - 1) < c
    assert E.samples_to_detect(0.5, 0.75) == 2                      # exact boundary: 1 - 0.5^2 = 0.75
    assert E.samples_to_detect(1e-4, 0.95) == 29956
    assert E.samples_to_detect(4e-6, 0.95) == 748932                 # the hidden path, per prompt
    assert E.samples_to_detect(1.0, 0.99) == 1
    np.testing.assert_array_equal(E.samples_to_detect([0.5, 0.1], 0.75), [2, 14])


def test_detection_prob_matches_monte_carlo():
    """The probability that a completion of known mass shows up in k samples, by simulation."""
    mdp = toyenv.make("many-paths")
    base = mdp.base_policy()
    cc = mdp.state_index(0, (2, 2))              # "c c <eos>" on a common prompt
    eps = float(toyenv.trajectory_probs(base)[cc, mdp.eos])
    k, reps = 16, 3000
    s, a = sample_pairs(base, k * reps, seed=3, prompts=0)
    seen = ((s == cc) & (a == mdp.eos)).reshape(reps, k).any(1)
    q = E.detection_prob(eps, k)
    assert abs(seen.mean() - q) < 4 * math.sqrt(q * (1 - q) / reps)


def test_detectability_errors_name_the_fix():
    with pytest.raises(ValueError, match="confidence"):
        E.detectable_mass(10, 1.0)
    with pytest.raises(ValueError, match="eps"):
        E.samples_to_detect(0.0, 0.9)
    with pytest.raises(ValueError, match="k must be >= 1"):
        E.detection_prob(0.1, 0)


# --------------------------------------------------------------------------- pass@k estimators
def test_unbiased_estimator_matches_the_combinatorial_form():
    for n, k in [(1, 1), (10, 1), (10, 10), (40, 10), (200, 64)]:
        c = np.arange(n + 1)
        got = E.pass_at_k_estimator(n, c, k)
        want = [toyenv.pass_at_k_unbiased(n, int(ci), k) for ci in c]
        np.testing.assert_allclose(got, want, atol=1e-12)
    # the product form survives n where C(n, k) overflows a float
    assert E.pass_at_k_estimator(5000, 1, 2500) == pytest.approx(0.5, abs=1e-12)
    assert E.pass_at_k_estimator(5000, 0, 2500) == 0.0
    assert E.pass_at_k_estimator(5000, 2501, 2500) == 1.0


@pytest.mark.parametrize("n, k", [(1, 1), (10, 3), (40, 10), (100, 100), (256, 64)])
def test_unbiased_estimator_is_exactly_unbiased(n, k):
    """E[1 − C(n−c,k)/C(n,k)] = 1 − (1 − p)^k for c ~ Binomial(n, p) (to 1e-12)."""
    for p in (0.0, 1e-4, 0.07, 0.3, 0.9, 1.0):
        assert E.estimator_mean(n, p, k) == pytest.approx(1 - (1 - p) ** k, abs=1e-12)
        assert E.binomial_pmf(n, p).sum() == pytest.approx(1.0, abs=1e-12)


def test_plugin_is_biased_low_with_the_findings_numbers():
    """n=40, k=10, p=0.07: exact 0.5160, plug-in mean 0.4765 ; low for every p (Jensen)."""
    assert 1 - 0.93**10 == pytest.approx(0.5160, abs=5e-5)
    assert E.estimator_mean(40, 0.07, 10) == pytest.approx(0.5160, abs=5e-5)
    assert E.estimator_mean(40, 0.07, 10, "plugin") == pytest.approx(0.4765, abs=5e-5)
    for p in np.linspace(0.01, 0.99, 25):
        assert E.estimator_mean(40, p, 10, "plugin") < 1 - (1 - p) ** 10
    # with k = 1 the plug-in is the sample mean, unbiased too
    assert E.estimator_mean(40, 0.07, 1, "plugin") == pytest.approx(0.07, abs=1e-12)
    # more spread than the plug-in at small n: unbiasedness is paid in variance
    assert E.estimator_std(40, 0.07, 10) > E.estimator_std(40, 0.07, 10, "plugin")


def test_estimator_distribution_matches_monte_carlo():
    n, p, k, reps = 40, 0.07, 10, 20000
    rng = np.random.default_rng(0)
    c = rng.binomial(n, p, size=reps)
    for kind in E.KINDS:
        est = np.asarray(E.pass_at_k_estimator(n, c, k, kind))
        mean, sd = E.estimator_mean(n, p, k, kind), E.estimator_std(n, p, k, kind)
        assert abs(est.mean() - mean) < 4 * sd / math.sqrt(reps)
        assert est.std() == pytest.approx(sd, rel=0.05)


@pytest.mark.parametrize("world", ["many-paths", "two-skills", "scaffold"])
def test_sampled_pass_at_k_agrees_with_exact_within_sampling_error(world):
    mdp = toyenv.make(world)
    pi = toyenv.TabularPolicy(mdp, seed=1, scale=1.5) if world == "two-skills" else mdp.base_policy()
    ks = np.array([1, 4, 16, 64])
    exact = toyenv.pass_at_k(pi, ks)
    sd = E.sampled_pass_at_k_std(pi, 128, ks)
    for seed in (0, 1):
        est = E.sampled_pass_at_k(pi, 128, ks, seed=seed)
        assert est.shape == ks.shape
        assert np.all(np.abs(est - exact) <= 4.5 * sd + 1e-12), (est, exact, sd)
    # per prompt: success counts are Binomial(n, p_x)
    c = E.success_counts(pi, 128, seed=0)
    p = toyenv.success_prob(pi)
    assert np.all(np.abs(c / 128 - p) <= 4.5 * np.sqrt(p * (1 - p) / 128) + 1e-12)
    # the same samples give every k: pass@1 estimate is c/n per prompt
    np.testing.assert_allclose(E.sampled_pass_at_k(pi, 128, 1, seed=0, per_prompt=True), c / 128, atol=1e-15)


def test_sampled_pass_at_k_average_over_seeds_converges_to_exact():
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy()
    ks = np.array([1, 8, 32])
    ests = np.array([E.sampled_pass_at_k(pi, 32, ks, seed=s) for s in range(40)])
    sd = E.sampled_pass_at_k_std(pi, 32, ks) / math.sqrt(40)
    assert np.all(np.abs(ests.mean(0) - toyenv.pass_at_k(pi, ks)) < 4 * sd)


def test_pass_at_k_estimator_errors():
    with pytest.raises(ValueError, match="k <= n"):
        E.pass_at_k_estimator(5, 1, 6)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        E.pass_at_k_estimator(5, 6, 1)
    with pytest.raises(ValueError, match="kind"):
        E.pass_at_k_estimator(5, 1, 1, kind="naive")
    assert E.pass_at_k_estimator(5, 1, 6, kind="plugin") == pytest.approx(1 - 0.8**6)


# --------------------------------------------------------------------------- occupancy, support
def test_empirical_occupancy_equals_the_definition_on_a_small_sample():
    mdp = toyenv.make("hidden-path", horizon=3)
    pi = toyenv.TabularPolicy(mdp, seed=0)
    s, a = sample_pairs(pi, 50, seed=0)
    d = np.zeros((mdp.num_states, mdp.vocab_size))
    for si, ai in zip(s, a):
        w = 1 / (50 * mdp.length[si, ai])
        while si >= 0:
            d[si, ai] += w
            si, ai = mdp.parent[si], mdp.last_token[si]
    np.testing.assert_allclose(E.empirical_occupancy(mdp, s, a), d, atol=1e-15)
    assert E.empirical_occupancy(mdp, s, a).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("world", ["hidden-path", "many-paths", "scaffold"])
def test_empirical_occupancy_is_unbiased(world):
    """Each sample contributes X(s,a) = 1/T(y)·1{(s,a) on y} in [0, 1], so Var X <= E X = d(s,a):
    every entry seen often enough (n·d >= 5) lies within 5·sqrt(d/n) of the exact occupancy
    (Eq. 2); the rare entries, taken together, carry their exact total mass within 5 sigma."""
    mdp = toyenv.make(world)
    pi = mdp.base_policy()
    d = toyenv.occupancy(pi).sa
    n = 20000
    est = E.sampled_occupancy(pi, n, seed=0)
    often = n * d >= 5
    assert np.all(np.abs(est - d)[often] <= 5 * np.sqrt(d[often] / n))
    rare = ~often
    assert abs(est[rare].sum() - d[rare].sum()) <= 5 * np.sqrt(d[rare].sum() / n) + 1e-12
    assert np.all(est[d == 0] == 0)


def test_sampled_support_agrees_with_exact_away_from_the_threshold():
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy()
    d = toyenv.occupancy(pi).sa
    eps, n = 1e-3, 50000
    est = E.sampled_support(pi, n, eps, seed=0)
    exact = toyenv.effective_support(pi, eps)
    assert np.all(est[d >= 2 * eps]) and not np.any(est[d <= eps / 2])
    assert (est != exact).sum() <= 0.05 * exact.sum()
    # with few samples, the support estimate misses what it cannot see
    small = E.sampled_support(pi, 200, 1e-4, seed=0)
    assert small.sum() < toyenv.effective_support(pi, 1e-4).sum()
    with pytest.raises(ValueError, match="eps"):
        E.sampled_support(pi, 10, 0.0)


def test_hidden_path_is_invisible_to_a_realistic_sample():
    """The hidden path (π = 4e-6 per prompt) is never seen in 8192 samples per prompt; the pair
    (root, h) is outside the sampled support at every eps, inside the exact one for eps <= d."""
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    s, a = E.sample_per_prompt(base, 8192, seed=0)
    assert not mdp.correct[s, a].any()
    h = mdp.info["hidden_token"]
    d_h = toyenv.occupancy(base).sa[mdp.roots, h]
    assert np.all(d_h > 1e-6)
    assert E.detection_prob(4e-6, 8192) < 0.04
    est = E.empirical_occupancy(mdp, s, a)
    assert np.all(est[mdp.roots, h] <= 1 / (8192 * 4))        # at most a handful of 'h' starts


# --------------------------------------------------------------------------- unseen mass
def test_expected_distinct_matches_sampling_and_distinct_correct():
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy()
    n, reps = 32, 300
    counts = []
    for r in range(reps):
        s, a = E.sample_per_prompt(pi, n, seed=r)
        counts.append([len(set(zip(s[x], a[x]))) for x in range(mdp.num_prompts)])
    counts = np.array(counts, float)
    exp = E.expected_distinct(pi, n)
    assert np.all(np.abs(counts.mean(0) - exp) < 4 * counts.std(0) / math.sqrt(reps) + 1e-9)
    np.testing.assert_allclose(E.expected_distinct(pi, n, correct_only=True),
                               toyenv.distinct_correct(pi, k=n), atol=1e-12)


def test_good_turing_estimates_the_missing_mass():
    """E[N1/n] = Σ π(1−π)^{n−1} exactly; the exact missing mass averages to Σ π(1−π)^n; the two
    expectations are close, so the sample's singletons estimate the mass never seen."""
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy()
    n, reps = 64, 400
    gt, mm = [], []
    for r in range(reps):
        s, a = E.sample_per_prompt(pi, n, seed=100 + r)
        gt.append(E.good_turing(mdp, s, a))
        mm.append(E.missing_mass(pi, s, a))
    gt, mm = np.array(gt), np.array(mm)
    for est, want in ((gt, E.expected_missing_mass(pi, n, good_turing_estimate=True)),
                      (mm, E.expected_missing_mass(pi, n))):
        assert np.all(np.abs(est.mean(0) - want) < 4 * est.std(0) / math.sqrt(reps) + 1e-12)
    assert np.all(np.abs(E.expected_missing_mass(pi, n, True) - E.expected_missing_mass(pi, n)) < 0.01)
    with pytest.raises(ValueError, match="num_prompts"):
        E.good_turing(mdp, np.zeros(5, int), np.zeros(5, int))
