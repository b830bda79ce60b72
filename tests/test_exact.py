"""Every exact quantity against brute-force enumeration, sampling, and the identities it must obey."""
import numpy as np
import pytest
import torch

import brute
import toyenv
from toyenv.core.exact import occupancy_from_probs, reach_from_probs


def policies_of(mdp):
    """The base policy, a random tabular policy, a prompt-agnostic one and a random transformer."""
    return {
        "base": mdp.base_policy(),
        "tabular": toyenv.TabularPolicy(mdp, seed=1, scale=1.5),
        "prefix-shared": toyenv.TabularPolicy(mdp, seed=2, share="prefix"),
        "transformer": toyenv.TransformerPolicy(mdp, seed=3),
    }


@pytest.mark.parametrize("kind", ["base", "tabular", "prefix-shared", "transformer"])
def test_exact_matches_brute_force(preset, kind):
    pi = policies_of(preset)[kind]
    p = pi.probs()
    bf = brute.quantities(preset, p)
    occ = toyenv.occupancy(pi)
    np.testing.assert_allclose(occ.sa, bf["occ"], atol=1e-13)
    np.testing.assert_allclose(occ.s, bf["occ"].sum(1), atol=1e-13)
    np.testing.assert_allclose(toyenv.occupancy(pi, weighting="visits").sa, bf["visits"], atol=1e-13)
    np.testing.assert_allclose(toyenv.success_prob(pi), bf["success"], atol=1e-13)
    for k, v in bf["pass_k"].items():
        assert toyenv.pass_at_k(pi, k) == pytest.approx(v, abs=1e-12)
    t = toyenv.trajectory_probs(pi)
    assert len(bf["traj"]) == preset.num_trajectories
    for (x, toks), q in bf["traj"].items():
        s, a = preset.encode([(x, toks)])
        assert t[s[0], a[0]] == pytest.approx(q, abs=1e-14)


def test_occupancy_is_a_distribution(preset):
    for pi in policies_of(preset).values():
        occ = toyenv.occupancy(pi)
        assert occ.sa.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(occ.sa >= 0)
        np.testing.assert_allclose(occ.per_prompt(), preset.prompt_weights, atol=1e-12)


def test_flow_conservation(preset):
    """reach(s) = sum over continuing tokens of reach(child) + P(stop at s)."""
    pi = toyenv.TabularPolicy(preset, seed=5, scale=2.0)
    p = pi.probs()
    r = toyenv.reach(pi)
    stop = (p * preset.terminal).sum(1)
    into_children = np.zeros(preset.num_states)
    kids = preset.child >= 0
    s_idx, a_idx = np.nonzero(kids)
    np.add.at(into_children, s_idx, r[preset.child[s_idx, a_idx]])
    np.testing.assert_allclose(r, into_children + r * stop, atol=1e-13)
    # and the trajectories of each prompt carry all its mass
    t = toyenv.trajectory_probs(pi)
    per_prompt = np.bincount(preset.prompt_of, weights=t.sum(1), minlength=preset.num_prompts)
    np.testing.assert_allclose(per_prompt, 1.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["base", "transformer"])
def test_kl_chain_rule_matches_sequences(preset, kind):
    pols = policies_of(preset)
    p, q = pols[kind], pols["tabular"]
    want = brute.seq_kl(preset, p.probs(), q.probs())
    assert toyenv.kl(p, q) == pytest.approx(want, rel=1e-10, abs=1e-13)
    back = brute.seq_kl(preset, q.probs(), p.probs())
    assert toyenv.kl(q, p) == pytest.approx(back, rel=1e-10, abs=1e-13)
    assert toyenv.kl(p, p) == pytest.approx(0.0, abs=1e-14)


def test_success_value_is_success_from_each_prefix(preset):
    pi = toyenv.TabularPolicy(preset, seed=7, scale=2.0)
    p = pi.probs()
    V, Q = toyenv.success_value(pi)
    np.testing.assert_allclose(V[preset.roots], toyenv.success_prob(pi), atol=1e-13)
    for s in range(0, preset.num_states, max(1, preset.num_states // 25)):
        x, toks = preset.prefix(s)
        assert V[s] == pytest.approx(brute.success_from(preset, p, x, toks), abs=1e-13)
    np.testing.assert_allclose((p * Q).sum(1), V, atol=1e-13)


def test_exact_matches_sampling(preset):
    """Monte Carlo from sample() agrees with the exact occupancy and success within sampling error."""
    pi = policies_of(preset)["tabular"]
    n = 40_000
    s, a = toyenv.sample_pairs(pi, n, seed=11)
    mdp = preset
    # empirical Eq. 2: each sampled trajectory spreads 1/T(y) over its own steps
    emp = np.zeros((mdp.num_states, mdp.vocab_size))
    length = mdp.depth[s] + 1
    cur = s.copy()
    np.add.at(emp, (s, a), 1.0 / length)
    for _ in range(mdp.horizon - 1):
        ok = mdp.parent[cur] >= 0
        np.add.at(emp, (mdp.parent[cur[ok]], mdp.last_token[cur[ok]]), 1.0 / length[ok])
        cur = np.where(ok, mdp.parent[cur], cur)
    emp /= n
    exact = toyenv.occupancy(pi).sa
    # each entry is a mean of n values in [0, 1]: its standard error is at most sqrt(d / n)
    z = np.abs(emp - exact) / np.sqrt(np.maximum(exact, 1e-6) / n)
    assert z.max() < 6
    succ = np.bincount(mdp.prompt_of[s], weights=mdp.correct[s, a], minlength=mdp.num_prompts)
    counts = np.bincount(mdp.prompt_of[s], minlength=mdp.num_prompts)
    p = toyenv.success_prob(pi)
    seen = counts > 0
    se = np.sqrt(p * (1 - p) / np.maximum(counts, 1)) + 1e-9
    assert np.all(np.abs(succ[seen] / counts[seen] - p[seen]) / se[seen] < 6)
    np.testing.assert_allclose(counts / n, mdp.prompt_weights, atol=6 * np.sqrt(0.25 / n))


def test_sample_matches_trajectory_probs():
    mdp = toyenv.make("many-paths")
    pi = toyenv.TabularPolicy(mdp, seed=0)
    n = 50_000
    s, a = toyenv.sample_pairs(pi, n, seed=3, prompts=0)
    t = toyenv.trajectory_probs(pi)
    freq = np.zeros_like(t)
    np.add.at(freq, (s, a), 1.0 / n)
    mask = mdp.prompt_of == 0
    sd = np.sqrt(t[mask] * (1 - t[mask]) / n) + 1e-12
    assert np.max(np.abs(freq[mask] - t[mask]) / sd) < 6


def test_log_prob_of_sequences(preset):
    for pi in policies_of(preset).values():
        seqs = pi.sample(50, seed=0)
        t = toyenv.trajectory_probs(pi)
        s, a = preset.encode(seqs)
        lp = pi.log_prob(seqs)
        np.testing.assert_allclose(lp.detach().numpy(), np.log(t[s, a]), atol=1e-10)
        assert lp.requires_grad or pi.num_parameters() == 0


def test_pass_at_k_identities():
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy()
    ks = np.array([1, 2, 8, 64, 1024])
    curve = toyenv.pass_at_k(pi, ks)
    assert curve.shape == ks.shape and np.all(np.diff(curve) >= 0)
    assert curve[0] == pytest.approx(float(mdp.prompt_weights @ toyenv.success_prob(pi)), abs=1e-14)
    per = toyenv.pass_at_k(pi, ks, per_prompt=True)
    np.testing.assert_allclose(mdp.prompt_weights @ per, curve, atol=1e-14)


def test_unbiased_estimator_expectation():
    """E[1 - C(n-c,k)/C(n,k)] under c ~ Binomial(n, p) is exactly 1 - (1-p)^k; the plug-in is biased."""
    from math import comb
    n, k, p = 40, 10, 0.07
    pmf = [comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    unbiased = sum(w * toyenv.pass_at_k_unbiased(n, c, k) for c, w in enumerate(pmf))
    plug_in = sum(w * (1 - (1 - c / n) ** k) for c, w in enumerate(pmf))
    assert unbiased == pytest.approx(1 - (1 - p) ** k, abs=1e-12)
    assert unbiased == pytest.approx(0.5160, abs=1e-4)
    assert plug_in == pytest.approx(0.4765, abs=1e-4)


def test_distinct_correct(preset):
    pi = toyenv.TabularPolicy(preset, seed=4)
    t = toyenv.trajectory_probs(pi)
    s, a = np.nonzero(preset.correct)
    k = 16
    want = np.bincount(preset.prompt_of[s], weights=1 - (1 - t[s, a]) ** k, minlength=preset.num_prompts)
    np.testing.assert_allclose(toyenv.distinct_correct(pi, k=k), want, atol=1e-13)
    eps = 1e-3
    want = np.bincount(preset.prompt_of[s], weights=t[s, a] >= eps, minlength=preset.num_prompts)
    np.testing.assert_array_equal(toyenv.distinct_correct(pi, eps=eps), want)


def test_support_sets_partition(preset):
    before = preset.base_policy()
    after = toyenv.TabularPolicy(preset, seed=9)
    eps = 1e-3
    ch = toyenv.support_change(before, after, eps)
    e0 = toyenv.effective_support(before, eps)
    e1 = toyenv.effective_support(after, eps)
    np.testing.assert_array_equal(ch.expanded, e1 & ~e0)        # Eq. 6
    np.testing.assert_array_equal(ch.shared, e0 & e1)            # Eq. 7
    np.testing.assert_array_equal(ch.attrited, e0 & ~e1)         # Eq. 8
    assert not np.any(ch.expanded & ch.shared) and not np.any(ch.attrited & ch.shared)
    np.testing.assert_array_equal(ch.shared | ch.attrited, e0)
    np.testing.assert_array_equal(ch.shared | ch.expanded, e1)
    assert ch.role in ("expansion-dominant", "reshaping-dominant", "mixed", "no change")
    same = toyenv.support_change(before, before, eps)
    assert same.counts()["expanded"] == 0 and same.counts()["attrited"] == 0
    assert same.role == "no change" and same.reshaped_mass == 0
    # effective_support accepts an occupancy too
    np.testing.assert_array_equal(toyenv.effective_support(toyenv.occupancy(after), eps), e1)


def test_support_change_trajectory_level():
    mdp = toyenv.make("hidden-path")
    before = mdp.base_policy()
    p = before.probs().copy()
    # move most root mass of prompt 0 onto the hidden token: its correct path enters the support
    root = mdp.roots[0]
    p[root] = [0.1, 0.1, 0.1, 0.6, 0.1]
    after = toyenv.TabularPolicy.from_probs(mdp, p)
    ch = toyenv.support_change(before, after, 1e-3)
    assert ch.expanded[root, mdp.info["hidden_token"]]
    assert ch.traj_expanded.sum() > 0 and ch.expanded_mass > 0


def test_entropy_chain_rule():
    mdp = toyenv.make("many-paths")
    pi = toyenv.TabularPolicy(mdp, seed=0)
    t = toyenv.trajectory_probs(pi)
    s, a = mdp.trajectories()
    q = t[s, a]
    per = np.bincount(mdp.prompt_of[s], weights=-q * np.log(q), minlength=mdp.num_prompts)
    np.testing.assert_allclose(toyenv.entropy(pi, per_prompt=True), per, atol=1e-12)


def test_determinism():
    mdp = toyenv.make("two-skills")
    a = toyenv.TransformerPolicy(mdp, seed=4).probs()
    b = toyenv.TransformerPolicy(mdp, seed=4).probs()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, toyenv.TransformerPolicy(mdp, seed=5).probs())
    state = torch.random.get_rng_state()
    toyenv.TransformerPolicy(mdp, seed=4)
    assert torch.equal(state, torch.random.get_rng_state()), "construction must not touch the global RNG"
    pi = toyenv.TabularPolicy(mdp, seed=1)
    assert pi.sample(20, seed=3) == pi.sample(20, seed=3)
    assert pi.sample(20, seed=3) != pi.sample(20, seed=4)
    np.testing.assert_array_equal(toyenv.TabularPolicy(mdp, seed=1).probs(), pi.probs())


def test_reach_vectorised_equals_definition():
    mdp = toyenv.make("scaffold")
    p = mdp.base_policy().probs()
    r = reach_from_probs(mdp, p)
    for s in range(0, mdp.num_states, 17):
        x, toks = mdp.prefix(s)
        want, cur = 1.0, mdp.state_index(x, ())
        for tok in toks:
            want *= p[cur, tok]
            cur = mdp.child[cur, tok]
        assert r[s] == pytest.approx(want, abs=1e-15)
    occ = occupancy_from_probs(mdp, p)
    assert occ.sa.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("K", [1, 2, 3, 6])
def test_informative_group_prob_against_enumerated_groups(K):
    """1 - p^K - (1-p)^K equals the summed probability of every outcome of K rollouts that mixes a
    success and a failure (the GRPO groups with a gradient)."""
    import itertools
    for p in (0.0, 4e-6, 0.3, 0.5, 1.0):
        brute_force = sum(np.prod([p if o else 1 - p for o in outcome])
                          for outcome in itertools.product((0, 1), repeat=K) if 0 < sum(outcome) < K)
        assert toyenv.informative_group_prob(p, K) == pytest.approx(brute_force, abs=1e-15)
    np.testing.assert_allclose(toyenv.informative_group_prob(np.array([0.2, 0.7]), K),
                               [toyenv.informative_group_prob(0.2, K), toyenv.informative_group_prob(0.7, K)])
    with pytest.raises(ValueError, match="success probability"):
        toyenv.informative_group_prob(1.5, K)


def test_held_out_attrition_against_a_loop_over_pairs():
    """The attrition rate of held-out prompts equals its definition summed pair by pair, and the
    right answer of exercise 07.2's check."""
    from toyenv.course.checks.nb07 import held_out_variant
    mdp = toyenv.make("two-skills")
    before, after = mdp.base_policy(), toyenv.TabularPolicy(mdp, seed=4, scale=2.0)
    d0, d1 = toyenv.occupancy(before).sa, toyenv.occupancy(after).sa
    for eps in (1e-4, 1e-3, 1e-2):
        for prompts in ([4, 5, 6, 7], [0], list(range(mdp.num_prompts))):
            num = den = 0.0
            for s in range(mdp.num_states):
                if mdp.prompt_of[s] in prompts:
                    for a in range(mdp.vocab_size):
                        den += d0[s, a]
                        num += d0[s, a] if (d0[s, a] >= eps and d1[s, a] < eps) else 0.0
            got = toyenv.held_out_attrition(before, after, eps, prompts)
            assert got == pytest.approx(num / den, rel=1e-12, abs=1e-15)
            assert got == pytest.approx(held_out_variant(mdp, d0, d1, eps, prompts), rel=1e-12, abs=1e-15)
    assert toyenv.held_out_attrition(before, before, 1e-3, [4]) == 0.0
    with pytest.raises(ValueError, match="selects no prompt"):
        toyenv.held_out_attrition(before, after, 1e-3, [99])


def test_support_sets_is_the_one_definition_of_eq_6_to_8(preset):
    """support_sets partitions the union of the two supports; support_change, plots and widgets use it."""
    from toyenv.viz import widgets
    base = preset.base_policy()
    other = toyenv.TabularPolicy(preset, seed=3, scale=2.0)
    b, a = toyenv.occupancy(base), toyenv.occupancy(other)
    for eps in (1e-4, 1e-3, 1e-2):
        sets = toyenv.support_sets(b.sa, a.sa, eps)
        e0, e1 = b.sa >= eps, a.sa >= eps
        assert not (sets["expanded"] & sets["shared"]).any() and not (sets["shared"] & sets["attrited"]).any()
        assert np.array_equal(sets["expanded"] | sets["shared"] | sets["attrited"], e0 | e1)
        assert np.array_equal(sets["shared"], e0 & e1)                       # C_ε of Eq. 7
        ch = toyenv.support_change(base, other, eps)
        for k in sets:
            assert np.array_equal(getattr(ch, k), sets[k])
            assert np.array_equal(widgets._sets(b, a, eps)[k], sets[k])


@pytest.mark.parametrize("name", ["two-skills", "scaffold", "many-paths"])
def test_shared_passes_give_the_same_bits(name):
    """The fast paths (precomputed parent-pair indices, one reach shared by several metrics, each
    policy evaluated once in forgetting_curve) must give exactly the numbers of the plain passes."""
    from toyenv.core.exact import kl_from_probs, success_from_probs
    from toyenv.core.passes import reach_from_probs
    mdp = toyenv.make(name)
    p = toyenv.TabularPolicy(mdp, seed=3).probs()
    q = mdp.base_policy().probs()
    slow = np.empty(mdp.num_states)                       # the per-level loop, written out
    slow[: mdp.num_prompts] = 1.0
    for d, sl in mdp.levels():
        if d:
            slow[sl] = slow[mdp.parent[sl]] * p[mdp.parent[sl], mdp.last_token[sl]]
    r = reach_from_probs(mdp, p)
    assert np.array_equal(r, slow)
    assert np.array_equal(reach_from_probs(mdp, np.asfortranarray(p)), slow)
    with pytest.raises(ValueError, match=r"\[S, V\].*policy.probs\(\)"):
        reach_from_probs(mdp, p[:, :-1])
    assert np.array_equal(success_from_probs(mdp, p, r), success_from_probs(mdp, p))
    traj = toyenv.trajectory_probs(toyenv.TabularPolicy(mdp, seed=3))
    s, a = np.nonzero(mdp.correct)
    assert np.array_equal(success_from_probs(mdp, p),
                          np.bincount(mdp.prompt_of[s], weights=traj[s, a], minlength=mdp.num_prompts))
    assert kl_from_probs(mdp, p, q, reach=r) == kl_from_probs(mdp, p, q)
    assert np.array_equal(kl_from_probs(mdp, p, q, True, reach=r), kl_from_probs(mdp, p, q, True))


def test_forgetting_curve_is_forgetting_at_every_snapshot():
    mdp = toyenv.make("two-skills")
    run = toyenv.sft(mdp.base_policy(), toyenv.family_demos(mdp, 0), steps=6, num_snapshots=4)
    task = toyenv.family_task(mdp, 0)
    for base, tk in ((None, None), (toyenv.TabularPolicy(mdp, seed=1), task)):
        curve = toyenv.forgetting_curve(run, base=base, task=tk)
        rows = [toyenv.forgetting(run.at(0) if base is None else base, pi, 0, tk) for _, pi in run.snapshots]
        assert np.array_equal(curve["trained"], [r["trained_after"] for r in rows])
        assert np.array_equal(curve["other"], [r["other_after"] for r in rows])
        assert np.array_equal(curve["kl"], [r["kl"] for r in rows])
        assert np.array_equal(curve["kl"], [toyenv.kl(pi, run.at(0) if base is None else base)
                                            for _, pi in run.snapshots])
