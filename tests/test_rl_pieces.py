"""The named pieces of a sampled RL step (survey §5.1, §5.2, §7.1.2), tested directly on small arrays."""
import numpy as np
import pytest
import torch

import toyenv
from toyenv.methods.losses import group_advantages, loo_advantages, soft_values
from toyenv.methods.rl import (SampledRL, hint_mask, hint_table, hinted_starts, kl_to_go, outcome_advantages,
                               process_advantages, rl_batch, rollout_batch)


def test_kl_to_go_sums_the_log_ratio_from_each_token_to_the_end():
    log_ratio = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 7.0]])
    mask = np.array([[True, True, True], [True, True, False]])        # row 1: two real tokens
    np.testing.assert_array_equal(kl_to_go(log_ratio, mask), [[6.0, 5.0, 3.0], [-0.5, -1.0, 0.0]])


def test_hint_mask_drops_forced_tokens_unless_asked():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(hint_mask(mask, np.array([0, 2])), [[1, 1, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(hint_mask(mask, np.array([0, 2]), learn_hint=True), mask)


def test_outcome_advantages_are_group_advantages_on_every_token():
    r = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])          # two groups of 4
    for algo, fn in (("grpo", group_advantages), ("reinforce", loo_advantages)):
        adv, info = outcome_advantages(r, 4, 3, algo)
        want, want_info = fn(r.reshape(2, 4))
        assert adv.shape == (8, 3)
        np.testing.assert_array_equal(adv, np.repeat(want.reshape(-1, 1), 3, 1))
        assert info == want_info and info["zero_variance_groups"] == 0.5


def test_process_advantages_telescope_to_reward_minus_root_value():
    """§5.2 at beta = 0: Q(s_t, a_t) - V(s_t) summed along a rollout is r(y) - V(root)."""
    mdp = toyenv.make("many-paths")
    pi = toyenv.TabularPolicy(mdp, seed=3)
    Q, V = soft_values(mdp, pi.probs(), None, mdp.rewards, 0.0)
    s, a = toyenv.sample_pairs(pi, 40, seed=1)
    st, ac, m = toyenv.methods.paths(mdp, s, a)
    adv = process_advantages(Q, V, st, ac, m)
    assert np.all(adv[~m] == 0)
    np.testing.assert_allclose(adv.sum(1), mdp.rewards[s, a] - V[mdp.roots[mdp.prompt_of[s]]], atol=1e-13)


def test_hinted_starts_and_rollout_batch():
    mdp = toyenv.make("hidden-path")
    h = mdp.info["hidden_token"]
    x = np.array([0, 0, 1, 1])
    rng = np.random.default_rng(0)
    start, hint_len = hinted_starts(mdp, x, None, 1.0, rng)              # no hints: roots, no draw
    np.testing.assert_array_equal(start, mdp.roots[x])
    assert not hint_len.any() and rng.random() == np.random.default_rng(0).random()
    start, hint_len = hinted_starts(mdp, x, {0: (h,)}, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(start, [mdp.state_index(0, (h,))] * 2 + list(mdp.roots[[1, 1]]))
    np.testing.assert_array_equal(hint_len, [1, 1, 0, 0])
    table, prob = hint_table(mdp, {"prob": 0.5, "length": 1}, seed=0)
    demos = toyenv.demonstrations(mdp, mdp.num_prompts, seed=0, prompts=np.arange(mdp.num_prompts))
    assert prob == 0.5 and table == {x_: y[:1] for x_, y in demos}       # first token of a correct answer
    ro = rollout_batch(mdp, mdp.base_policy().probs(), np.random.default_rng(1), n_prompts=3, group_size=4)
    assert ro.x.shape == (12,) and np.all(ro.x.reshape(3, 4) == ro.x.reshape(3, 4)[:, :1])   # grouped
    assert np.all(mdp.prompt_of[ro.s] == ro.x) and np.all(mdp.terminal[ro.s, ro.a])
    again = rollout_batch(mdp, mdp.base_policy().probs(), np.random.default_rng(1), n_prompts=3, group_size=4)
    np.testing.assert_array_equal(ro.s, again.s)                         # same rng, same batch


def test_rl_batch_masks_hints_and_shapes_advantages_with_the_kl():
    mdp = toyenv.make("hidden-path")
    pi, ref = toyenv.TabularPolicy(mdp, seed=0), mdp.base_policy()
    lp = pi.log_probs().detach()
    ref_lp = ref.log_probs().detach().numpy()
    hints = ({x: (mdp.info["hidden_token"],) for x in range(mdp.num_prompts)}, 1.0)
    cfg = SampledRL(mdp.rewards, ref_lp, beta=0.0, group_size=4, n_prompts_per_step=2, hints=hints)
    b = rl_batch(mdp, lp, np.random.default_rng(0), cfg)
    assert not b.mask[:, 0].any() and b.mask[:, 1].any()               # the forced first token is not trained
    assert b.info["hinted"] == 1.0
    shaped = rl_batch(mdp, lp, np.random.default_rng(0), SampledRL(mdp.rewards, ref_lp, beta=0.5, group_size=4,
                                                                   n_prompts_per_step=2, hints=hints))
    np.testing.assert_array_equal(shaped.st, b.st)                       # same rollouts
    p = lp.exp().numpy()
    s0, a0 = np.maximum(b.st, 0), np.maximum(b.ac, 0)
    real = b.st >= 0
    want = b.adv - 0.5 * kl_to_go(np.log(p[s0, a0]) - ref_lp[s0, a0], real)
    np.testing.assert_allclose(shaped.adv, want, atol=1e-12)
    assert isinstance(b.old, torch.Tensor) and b.old.shape == b.st.shape
