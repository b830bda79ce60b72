"""Loss properties and exact gradients: statements about the math, not about training runs."""
import math

import numpy as np
import pytest
import torch

import toyenv
from toyenv.methods.losses import (dpo_loss, exact_policy_gradient, exact_rl_loss, group_advantages,
                           loo_advantages, policy_gradient_loss, sft_loss, soft_optimum_probs,
                           soft_values)
from toyenv.methods.rl import _rl_objective
from toyenv.methods import paths, token_targets


def logit_grad(pi, loss_fn):
    """Gradient of loss_fn(log_probs) w.r.t. the logits of a tabular policy, as numpy."""
    pi = pi.copy()
    loss, _ = loss_fn(pi.log_probs())
    (g,) = torch.autograd.grad(loss, pi.logits)
    return g.numpy()


def random_reward(mdp, seed):
    return np.where(mdp.terminal, np.random.default_rng(seed).normal(size=mdp.terminal.shape), 0.0)


# --------------------------------------------------------------------------- SFT
def test_sft_gradient_is_zero_off_the_demonstrations():
    """Identity: teacher forcing only acts on demonstrated prefixes (§2.3)."""
    mdp = toyenv.make("hidden-path")
    pi = toyenv.TabularPolicy(mdp, seed=0)
    demos = toyenv.demonstrations(mdp, 6, seed=0) + pi.sample(6, seed=1)
    s, a = mdp.encode(demos)
    st, ac, m = paths(mdp, s, a)
    on_path = np.zeros(mdp.num_states, bool)
    on_path[st[m]] = True
    g = logit_grad(pi, lambda lp: sft_loss(lp, token_targets(mdp, s, a)))
    assert np.all(g[~on_path] == 0.0), "no gradient at all on states no demonstration visits"
    assert np.all(np.abs(g[on_path]).sum(1) > 0)
    # the loss is the mean negative log-likelihood of the demonstrations
    loss, _ = sft_loss(pi.log_probs(), token_targets(mdp, s, a))
    assert float(loss.detach()) == pytest.approx(-float(pi.log_prob(demos).mean().detach()), rel=1e-12)


def test_sft_targets_validate_shape():
    mdp = toyenv.make("hidden-path")
    with pytest.raises(ValueError, match="shape of log_probs"):
        sft_loss(mdp.base_policy().log_probs(), np.zeros((3, 3)))


# --------------------------------------------------------------------------- DPO
def test_dpo_loss_is_log2_when_policy_equals_reference():
    g = torch.Generator().manual_seed(0)
    lw, ll = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    for labels in (None, torch.rand(50, generator=g, dtype=torch.float64)):
        loss, info = dpo_loss(lw, ll, lw.clone(), ll.clone(), beta=0.7, labels=labels)
        assert float(loss) == pytest.approx(math.log(2), abs=1e-15)
        assert info["margin"] == 0.0


def test_dpo_run_starts_at_log2():
    mdp = toyenv.make("many-paths")
    run = toyenv.dpo(mdp.base_policy(), steps=3, seed=0)
    assert run.history["loss"][0] == pytest.approx(math.log(2), abs=1e-12)
    assert run.history["loss"][-1] < math.log(2)


def _population_dpo(mdp, pi, p_ref, r, beta, soft):
    """DPO loss over every ordered pair of completions of each prompt, weighted D(x) q(y) q(y')."""
    s, a = np.nonzero(mdp.terminal)
    ref = toyenv.TabularPolicy.from_probs(mdp, p_ref)
    q = toyenv.trajectory_probs(ref)[s, a]
    iw, il, w = [], [], []
    for x in range(mdp.num_prompts):
        idx = np.nonzero(mdp.prompt_of[s] == x)[0]
        i, j = np.meshgrid(idx, idx, indexing="ij")
        iw.append(i.ravel()), il.append(j.ravel())
        w.append(mdp.prompt_weights[x] * q[i.ravel()] * q[j.ravel()])
    iw, il, w = np.concatenate(iw), np.concatenate(il), np.concatenate(w)
    rw, rl_ = r[s[iw], a[iw]], r[s[il], a[il]]
    labels = 1 / (1 + np.exp(-(rw - rl_))) if soft else (rw > rl_) + 0.5 * (rw == rl_)
    with torch.no_grad():
        ref_lp = ref.log_probs()
        ref_w = toyenv.core.policies.sequence_log_prob(mdp, ref_lp, s[iw], a[iw])
        ref_l = toyenv.core.policies.sequence_log_prob(mdp, ref_lp, s[il], a[il])

    def loss_fn(lp):
        return dpo_loss(toyenv.core.policies.sequence_log_prob(mdp, lp, s[iw], a[iw]),
                        toyenv.core.policies.sequence_log_prob(mdp, lp, s[il], a[il]),
                        ref_w, ref_l, beta=beta, labels=labels, weights=w / w.sum())
    return logit_grad(pi, loss_fn)


def test_population_dpo_optimum_is_the_kl_optimum_with_soft_labels_only():
    """Rafailov et al. 2023 (DPO): with Bradley-Terry soft labels the population DPO gradient vanishes at
    pi* = pi_ref exp(r/beta)/Z; with hard labels it does not (the IPO critique)."""
    mdp = toyenv.make("many-paths", num_prompts=2, num_rare=1)
    p_ref = toyenv.TabularPolicy(mdp, seed=3).probs()
    r, beta = random_reward(mdp, 0), 0.5
    star = toyenv.TabularPolicy.from_probs(mdp, soft_optimum_probs(mdp, p_ref, r, beta))
    g_soft = _population_dpo(mdp, star, p_ref, r, beta, soft=True)
    g_hard = _population_dpo(mdp, star, p_ref, r, beta, soft=False)
    assert np.abs(g_soft).max() < 1e-12
    assert np.abs(g_hard).max() > 1e-3
    # and away from pi* the soft-label gradient is not zero
    ref_pi = toyenv.TabularPolicy.from_probs(mdp, p_ref)
    assert np.abs(_population_dpo(mdp, ref_pi, p_ref, r, beta, soft=True)).max() > 1e-3


# --------------------------------------------------------------------------- group advantages
def test_group_advantages_vanish_when_a_group_is_unanimous():
    r = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0.5, 0.5, 1.0, 0.0]])
    adv, info = group_advantages(r)
    assert np.all(adv[:2] == 0.0)
    assert info["zero_variance_groups"] == 0.5
    np.testing.assert_allclose(adv.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(adv[2:].std(1), 1, atol=1e-5)          # normalised by the group std
    loo, info2 = loo_advantages(r)
    assert np.all(loo[:2] == 0.0) and info2["zero_variance_groups"] == 0.5
    np.testing.assert_allclose(loo[2], [1, -1 / 3, -1 / 3, -1 / 3])


def test_a_zero_variance_batch_carries_no_gradient():
    """Hidden-path base: every group fails, so GRPO (and REINFORCE) give exactly zero gradient."""
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    for algo in ("grpo", "reinforce"):
        obj = _rl_objective(mdp, beta=0.0, exact=False, algo=algo, group_size=8, n_prompts_per_step=8,
                            clip=None, epochs=1, ref_lp=base.probs(), rewards=mdp.rewards, hints=None,
                            process=False, learn_hint=False, seed=0)
        pi = base.copy()
        loss, info = obj(pi, pi.log_probs(), 0, np.random.default_rng(0))
        assert info["zero_variance_groups"] == 1.0
        (g,) = torch.autograd.grad(loss, pi.logits)
        assert torch.all(g == 0)


def test_policy_gradient_loss_is_reinforce_at_ratio_one_and_clips():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(4, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 2] = False
    loss, _ = policy_gradient_loss(lp, adv, mask)
    (grad,) = torch.autograd.grad(loss, lp)
    np.testing.assert_allclose(grad.numpy(), -(adv * mask).numpy() / 4, atol=1e-15)
    # a token whose ratio already left [1-eps, 1+eps] in the advantage's direction gets no gradient
    old = lp.detach() - torch.tensor([[0.5, 0.0, 0.0]] * 4, dtype=torch.float64)  # ratio e^0.5 on column 0
    pos = torch.ones(4, 3, dtype=torch.float64)
    loss, info = policy_gradient_loss(lp, pos, mask, old_logp_tok=old, clip=0.2)
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.all(grad[:, 0] == 0) and torch.all(grad[1:, 1:] != 0)
    assert info["clip_frac"] == pytest.approx(4 / 11)


# --------------------------------------------------------------------------- exact gradient
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_exact_gradient_matches_q_minus_v_identity_and_finite_differences(beta):
    mdp = toyenv.make("many-paths", num_prompts=3, num_rare=1)
    pi = toyenv.TabularPolicy(mdp, seed=0, scale=1.5)
    ref = toyenv.TabularPolicy(mdp, seed=1)
    ref_lp = ref.log_probs().detach()
    r = random_reward(mdp, 2)
    g = logit_grad(pi, lambda lp: exact_rl_loss(mdp, lp, ref_lp, r, beta=beta))
    ident = exact_policy_gradient(mdp, pi.probs(), ref.probs(), r, beta)
    np.testing.assert_allclose(-g, ident, atol=1e-13)
    # central finite differences on a few coordinates, objective in float64
    rng = np.random.default_rng(0)
    for s, a in zip(rng.integers(mdp.num_states, size=8), rng.integers(mdp.vocab_size, size=8)):
        vals = []
        for h in (1e-6, -1e-6):
            z = pi.logits.detach().clone()
            z[s, a] += h
            lp = torch.log_softmax(z, -1)
            vals.append(float(exact_rl_loss(mdp, lp, ref_lp, r, beta=beta)[0]))
        assert (vals[0] - vals[1]) / 2e-6 == pytest.approx(g[s, a], abs=1e-8)


def test_exact_objective_value_matches_exact_module():
    """The differentiable objective equals E[r] - beta KL computed by toyenv.exact, for a transformer too."""
    mdp = toyenv.make("two-skills")
    ref = mdp.base_policy()
    for pi in (toyenv.TabularPolicy(mdp, seed=0), toyenv.TransformerPolicy(mdp, seed=0)):
        loss, info = exact_rl_loss(mdp, pi.log_probs(), ref.log_probs().detach(), beta=0.2)
        want_r = float(mdp.prompt_weights @ toyenv.expected_reward(pi))
        assert info["expected_reward"] == pytest.approx(want_r, abs=1e-12)
        assert info["kl"] == pytest.approx(toyenv.kl(pi, ref), rel=1e-9)
        assert float(loss.detach()) == pytest.approx(-(want_r - 0.2 * toyenv.kl(pi, ref)), abs=1e-9)


def test_exact_gradient_of_shared_rows_is_the_sum_over_states():
    mdp = toyenv.make("many-paths", num_prompts=3, num_rare=1)
    pi = toyenv.TabularPolicy(mdp, seed=4, share="prefix")
    g = logit_grad(pi, lambda lp: exact_rl_loss(mdp, lp))
    per_state = exact_policy_gradient(mdp, pi.probs())
    want = np.zeros_like(g)
    np.add.at(want, mdp.prefix_id, per_state)
    np.testing.assert_allclose(-g, want, atol=1e-13)


def test_soft_values_at_beta_zero_are_success_values():
    mdp = toyenv.make("hidden-path")
    pi = toyenv.TabularPolicy(mdp, seed=0)
    Q, V = soft_values(mdp, pi.probs(), None, mdp.rewards, 0.0)
    V2, Q2 = toyenv.success_value(pi)
    np.testing.assert_allclose(V, V2, atol=1e-14)
    np.testing.assert_allclose(np.where(mdp.terminal | (mdp.child >= 0), Q, 0), Q2, atol=1e-14)


def test_soft_optimum_is_the_sequence_level_closed_form():
    """pi* ∝ pi_ref exp(r/beta) per complete sequence; the exact gradient vanishes there."""
    mdp = toyenv.make("many-paths", num_prompts=3, num_rare=1)
    ref = toyenv.TabularPolicy(mdp, seed=5)
    r, beta = random_reward(mdp, 1), 0.4
    star = toyenv.TabularPolicy.from_probs(mdp, soft_optimum_probs(mdp, ref.probs(), r, beta))
    t_ref, t_star = toyenv.trajectory_probs(ref), toyenv.trajectory_probs(star)
    s, a = np.nonzero(mdp.terminal)
    unnorm = t_ref[s, a] * np.exp(r[s, a] / beta)
    Z = np.bincount(mdp.prompt_of[s], weights=unnorm)
    np.testing.assert_allclose(t_star[s, a], unnorm / Z[mdp.prompt_of[s]], rtol=1e-12)
    g = exact_policy_gradient(mdp, star.probs(), ref.probs(), r, beta)
    assert np.abs(g).max() < 1e-13
    # the optimal objective is beta log Z
    _, info = exact_rl_loss(mdp, star.log_probs(), ref.log_probs(), r, beta=beta)
    assert info["objective"] == pytest.approx(mdp.prompt_weights @ (beta * np.log(Z)), rel=1e-12)
    # single 0/1-reward prompt: p* = p e^{1/beta} / (p e^{1/beta} + 1 - p)
    p0 = toyenv.success_prob(ref)
    opt = toyenv.kl_optimum(ref, beta)
    np.testing.assert_allclose(toyenv.success_prob(opt), p0 * np.exp(1 / beta) / (p0 * np.exp(1 / beta) + 1 - p0),
                               rtol=1e-12)


# --------------------------------------------------------------------------- sampled vs exact
@pytest.mark.parametrize("beta", [0.0, 0.2])
def test_sampled_reinforce_gradient_is_unbiased(beta):
    """The mean of many sampled REINFORCE (leave-one-out) gradients agrees with the exact gradient.

    Compared along fixed directions u (random ones and the exact gradient's own): u·g per batch is a
    sum over many pairs, so its batch mean is close to normal and a z-score bound is honest.
    (Per-coordinate z-scores are not: a rarely visited pair gives a skewed, mostly-zero estimate.)
    """
    mdp = toyenv.make("many-paths", num_prompts=3, num_rare=1)
    pi = toyenv.TabularPolicy(mdp, seed=2, scale=1.0)
    ref = toyenv.TabularPolicy(mdp, seed=7, scale=0.5)
    exact = exact_policy_gradient(mdp, pi.probs(), ref.probs(), mdp.rewards, beta).ravel()
    wrong = exact_policy_gradient(mdp, pi.probs(), ref.probs(), mdp.rewards, beta + 0.5).ravel()
    obj = _rl_objective(mdp, beta=beta, exact=False, algo="reinforce", group_size=4, n_prompts_per_step=32,
                        clip=None, epochs=1, ref_lp=np.log(ref.probs()), rewards=mdp.rewards, hints=None,
                        process=False, learn_hint=False, seed=0)
    rng = np.random.default_rng(0)
    n = 600
    grads = np.empty((n, exact.size))
    for i in range(n):
        loss, _ = obj(pi, pi.log_probs(), i, rng)
        (g,) = torch.autograd.grad(loss, pi.logits)
        grads[i] = -g.numpy().ravel()
    dirs = np.random.default_rng(1).normal(size=(20, exact.size))
    dirs = np.vstack([dirs, exact / np.linalg.norm(exact)])
    proj = grads @ dirs.T                                         # [n, directions]
    z = (proj.mean(0) - dirs @ exact) / (proj.std(0, ddof=1) / np.sqrt(n))
    assert np.abs(z).max() < 4.0, f"z-scores {np.round(z, 2)}"
    # power: the same test rejects the gradient of a different objective (KL weight + 0.5)
    u = (wrong - exact) / np.linalg.norm(wrong - exact)
    pu = grads @ u
    assert abs(pu.mean() - u @ wrong) / (pu.std(ddof=1) / np.sqrt(n)) > 5.0


def test_process_advantages_are_value_differences():
    """Process RL (§5.2): at beta = 0, each token's advantage is V(s_{t+1}) - V(s_t)."""
    mdp = toyenv.make("hidden-path")
    pi = toyenv.TabularPolicy(mdp, seed=0)
    V, Q = toyenv.success_value(pi)
    Qs, Vs = soft_values(mdp, pi.probs(), None, mdp.rewards, 0.0)
    s, a = toyenv.sample_pairs(pi, 50, seed=0)
    st, ac, m = paths(mdp, s, a)
    nxt = np.where(m, mdp.child[np.maximum(st, 0), np.maximum(ac, 0)], -1)
    v_next = np.where(nxt >= 0, V[np.maximum(nxt, 0)], mdp.rewards[np.maximum(st, 0), np.maximum(ac, 0)])
    adv = Qs[np.maximum(st, 0), np.maximum(ac, 0)] - Vs[np.maximum(st, 0)]
    np.testing.assert_allclose(adv[m], (v_next - V[np.maximum(st, 0)])[m], atol=1e-14)
    # and the advantages of a trajectory telescope to r(y) - V(root)
    tele = np.where(m, adv, 0).sum(1)
    np.testing.assert_allclose(tele, mdp.rewards[s, a] - V[mdp.prompt_of[s]], atol=1e-13)
