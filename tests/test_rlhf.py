"""RLHF with a learned reward (survey §4.2, §5.1): features, Bradley-Terry, best-of-n identities,
and over-optimisation (Gao et al. 2023, ref [98]) in the two-skills world."""
import numpy as np
import pytest
import torch

import toyenv
from toyenv.core.exact import sample_pairs_from_probs, trajectory_probs_from
from toyenv.analysis.experiments import overoptimization, peak
from toyenv.methods.rlhf import (bon_kl_bound, bon_policy, bon_probs, completion_features, fit_bradley_terry,
                                 gold_preferences, policy_from_trajectory_probs, reward_model, rlhf)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield



def test_bag_features_count_tokens():
    mdp = toyenv.make("many-paths")
    phi, names = completion_features(mdp, "bag+length")
    assert names == ["count(a)", "count(b)", "count(c)", "ended", "length"]
    s, a = mdp.trajectories()
    for (x, toks), si, ai in zip(mdp.decode(s, a), s, a):
        want = [toks.count(0), toks.count(1), toks.count(2), float(toks[-1] == mdp.eos), len(toks)]
        np.testing.assert_array_equal(phi[si, ai], want)
    assert np.all(phi[~mdp.terminal] == 0)
    tab, _ = completion_features(mdp, "tabular")
    assert tab.shape[2] == mdp.num_trajectories and np.all(tab[mdp.terminal].sum(1) == 1)
    with pytest.raises(ValueError, match="kind"):
        completion_features(mdp, "words")


def test_bradley_terry_recovers_the_weights_and_is_stationary():
    rng = np.random.default_rng(0)
    w_true = np.array([1.5, -0.7, 0.3])
    phi1, phi2 = rng.normal(size=(20000, 3)), rng.normal(size=(20000, 3))
    p = 1 / (1 + np.exp(-(phi1 - phi2) @ w_true))
    y = (rng.random(20000) < p).astype(float)
    w = fit_bradley_terry(phi1, phi2, y, l2=0.0)
    np.testing.assert_allclose(w, w_true, atol=0.06)
    # the fit is a stationary point of the regularised loss
    wt = torch.tensor(fit_bradley_terry(phi1, phi2, y, l2=0.1), requires_grad=True)
    d = torch.as_tensor(phi1 - phi2)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(d @ wt, torch.as_tensor(y)) + 0.05 * (wt * wt).sum()
    loss.backward()
    assert wt.grad.abs().max() < 1e-8


def test_gold_preferences_follow_the_verifier_with_the_stated_noise():
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    s1, a1, s2, a2, y = gold_preferences(base, 4000, seed=0, noise=0.0)
    d = mdp.rewards[s1, a1] - mdp.rewards[s2, a2]
    assert np.all(y[d > 0] == 1) and np.all(y[d < 0] == 0)
    assert 0.45 < y[d == 0].mean() < 0.55                     # ties: a fair coin
    assert np.all(mdp.prompt_of[s1] == mdp.prompt_of[s2])     # both completions answer one prompt
    _, _, _, _, yn = gold_preferences(base, 4000, seed=0, noise=0.2)
    flipped = np.mean(yn[d != 0] != y[d != 0])
    assert abs(flipped - 0.2) < 4 * np.sqrt(0.2 * 0.8 / np.sum(d != 0))
    with pytest.raises(ValueError, match="noise"):
        gold_preferences(base, 10, noise=0.5)


# --------------------------------------------------------------------------- best-of-n (exact)
def test_bon_probs_formula_and_monte_carlo():
    mdp = toyenv.make("two-skills")
    pi = toyenv.TabularPolicy(mdp, seed=1, scale=0.8)
    t = trajectory_probs_from(mdp, pi.probs())
    np.testing.assert_allclose(bon_probs(pi, 1), t, atol=1e-15)       # n = 1 is the policy itself
    rm = reward_model(mdp.base_policy(), seed=0)
    for n in (2, 4, 8):
        b = bon_probs(pi, n, rm.table)
        per_prompt = np.bincount(mdp.prompt_of, weights=b.sum(1), minlength=mdp.num_prompts)
        np.testing.assert_allclose(per_prompt, 1.0, atol=1e-12)
    # Monte Carlo: draw n samples per prompt, keep the best (random tie-break), compare frequencies
    n, reps, x = 4, 20000, 0
    s, a = sample_pairs_from_probs(mdp, pi.probs(), n * reps, seed=0, prompts=x)
    s, a = s.reshape(reps, n), a.reshape(reps, n)
    rng = np.random.default_rng(1)
    score = rm.table[s, a] + 1e-9 * rng.random(s.shape)
    best = np.argmax(score, 1)
    bs, ba = s[np.arange(reps), best], a[np.arange(reps), best]
    freq = np.zeros_like(t)
    np.add.at(freq, (bs, ba), 1.0 / reps)
    want = bon_probs(pi, n, rm.table)
    se = np.sqrt(want * (1 - want) / reps)
    m = mdp.prompt_of == x
    assert np.all(np.abs(freq[m] - want[m]) <= 5 * se[m] + 1e-12)


def test_bon_kl_is_at_most_log_n_minus_n_minus_1_over_n():
    """KL(BoN‖pi_ref) <= log n - (n-1)/n, with ties (gold 0/1) and without (random reward)."""
    mdp = toyenv.make("scaffold", slack=1)
    rng = np.random.default_rng(0)
    continuous = np.where(mdp.terminal, rng.random(mdp.terminal.shape), 0.0)
    for pi in (mdp.base_policy(), toyenv.TabularPolicy(mdp, seed=0, scale=0.3)):
        for reward in (None, continuous):
            for n in (1, 2, 8, 128):
                bp = bon_policy(pi, n, reward)
                k = toyenv.kl(bp, pi)
                assert k <= bon_kl_bound(n) + 1e-10
                # the tabular policy reproduces the BoN sequence distribution exactly
                np.testing.assert_allclose(toyenv.trajectory_probs(bp)[mdp.prompt_weights[mdp.prompt_of] > 0],
                                           bon_probs(pi, n, reward)[mdp.prompt_weights[mdp.prompt_of] > 0],
                                           atol=1e-12)
    # with fine-grained continuous rewards the bound is nearly attained
    k = toyenv.kl(bon_policy(toyenv.TabularPolicy(mdp, seed=0, scale=0.3), 16, continuous),
                  toyenv.TabularPolicy(mdp, seed=0, scale=0.3))
    assert k > 0.95 * bon_kl_bound(16)


def test_policy_from_trajectory_probs_round_trip():
    mdp = toyenv.make("hidden-path")
    pi = toyenv.TabularPolicy(mdp, seed=2)
    back = policy_from_trajectory_probs(mdp, toyenv.trajectory_probs(pi))
    np.testing.assert_allclose(back.probs(), pi.probs(), atol=1e-10)


# --------------------------------------------------------------------------- over-optimisation
def test_proxy_reward_is_monotone_along_the_exact_optimum_and_best_of_n():
    """Exact: E_{pi*_beta}[r̂] rises as beta falls (its derivative in 1/beta is a variance), and
    E_BoN[r̂] rises with n, for any proxy."""
    for name in ("two-skills", "many-paths"):
        mdp = toyenv.make(name)
        base = mdp.base_policy()
        for seed in (0, 1):
            rep = overoptimization(base, reward_model(base, seed=seed))
            for fam in ("beta", "bon"):
                assert np.all(np.diff(rep[fam]["proxy"]) >= -1e-10)
                assert np.all(np.diff(rep[fam]["kl"]) >= -1e-10)
            assert rep["bon"]["kl"][0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gold_rises_then_falls_against_sqrt_kl_in_two_skills(seed):
    """Over-optimisation (Gao et al. 2023, ref [98]). A bag-of-tokens reward model cannot see token order, so in the
    two-skills world it cannot tell "a b" from "b a". Optimising it first helps (wrong-token answers
    go away) and then hurts (the policy piles onto whichever answer order the proxy happens to
    favour, on both families): gold peaks at moderate sqrt(KL) and falls far below the peak while
    the proxy keeps rising. Holds for the exact KL-regularised optimum over beta and for best-of-n."""
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    rm = reward_model(base, n_pairs=256, seed=seed, noise=0.1)
    rep = overoptimization(base, rm)
    for fam in ("beta", "bon"):
        pk = peak(rep[fam])
        assert pk["gold_peak"] > pk["gold_start"] + 0.1
        assert pk["gold_end"] < pk["gold_peak"] - 0.3
        assert 0.3 < pk["sqrt_kl"] < 1.0
        assert rep[fam]["proxy"][-1] > rep[fam]["proxy"][pk["index"]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rlhf_run_overoptimises_the_gold_reward(seed):
    """Along a sampled RLHF run (GRPO on the proxy, gold verifier kept aside) gold success rises
    above the base, then falls below its peak as KL keeps growing; the proxy rises overall."""
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    run = rlhf(base, seed=seed, beta=0.0, steps=200, num_snapshots=21)
    rm = run.artifacts["reward_model"]
    r = overoptimization(base, rm, run=run, bon_ns=(1,))["run"]
    pk = peak(r)
    assert pk["gold_peak"] > pk["gold_start"] + 0.15
    assert pk["drop"] > 0.2
    assert r["proxy"][-1] > r["proxy"][0] + 0.3
    assert r["kl"][-1] > r["kl"][pk["index"]]
    np.testing.assert_allclose(run.history["success"][-1], r["gold"][-1], atol=1e-12)   # logged gold


def test_reward_model_generalises_imperfectly():
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    rm = reward_model(base, seed=0)
    assert rm.table.shape == mdp.rewards.shape and np.all(rm.table[~mdp.terminal] == 0)
    assert 0.5 < rm.pair_accuracy < 0.9
    assert 0.5 < rm.gold_agreement(base) < 0.75          # order-blind: many gold orderings missed
    exact = reward_model(base, seed=0, features="tabular", n_pairs=4000, noise=0.0)
    assert exact.gold_agreement(base) > rm.gold_agreement(base)
