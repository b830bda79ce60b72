"""Distillation (survey §4.4, §5.4): divergences, the state map, exact vs sampled losses, the fit."""
import numpy as np
import pytest
import torch

import brute
import toyenv
from toyenv.analysis.experiments import mode_scan
from toyenv.methods.distill import (distill, distill_loss, distill_weights, generalized_jsd, prompt_map,
                                   state_map, teacher_view, token_divergence, visit_counts)
from toyenv.methods.losses import sft_loss
from toyenv.core.exact import sample_pairs_from_probs
from toyenv.methods.fit import base_transformer, clear_cache, fit


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield



def _rand_logp(rows, V, seed, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(rows, V, generator=g, dtype=torch.float64), -1)


# --------------------------------------------------------------------------- divergences
def test_generalized_jsd_limits_and_symmetry():
    t, s = _rand_logp(50, 5, 0), _rand_logp(50, 5, 1)
    fwd = token_divergence(t, s, "forward")
    rev = token_divergence(t, s, "reverse")
    np.testing.assert_allclose(fwd, (t.exp() * (t - s)).sum(-1), rtol=1e-14)
    for b in (1e-5, 1e-6):    # JSD(β)/β -> KL(T||S) as β -> 0, error O(β)
        np.testing.assert_allclose(generalized_jsd(t, s, b) / b, fwd, rtol=1e-3, atol=1e-8)
    for b in (1 - 1e-5, 1 - 1e-6):
        np.testing.assert_allclose(generalized_jsd(t, s, b) / (1 - b), rev, rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(generalized_jsd(t, s, 0.3), generalized_jsd(s, t, 0.7), rtol=1e-12)
    assert torch.all(generalized_jsd(t, s, 0.5) <= np.log(2) + 1e-12)     # bounded by log 2
    assert torch.allclose(generalized_jsd(t, t, 0.4), torch.zeros(50, dtype=t.dtype), atol=1e-15)
    with pytest.raises(ValueError, match="jsd_weight"):
        generalized_jsd(t, s, 1.0)


def test_divergences_are_zero_at_the_teacher_and_finite_with_teacher_zeros():
    mdp = toyenv.make("hidden-path")
    t = mdp.base_policy().log_probs().detach()        # zeros stored as logits -1000
    for d in ("forward", "reverse", "jsd"):
        assert torch.allclose(token_divergence(t, t, d), torch.zeros(len(t), dtype=t.dtype), atol=1e-12)
    s = toyenv.TabularPolicy(mdp, seed=0).log_probs().detach()
    for d in ("forward", "reverse", "jsd"):
        v = token_divergence(t, s, d)
        assert torch.isfinite(v).all() and (v >= -1e-12).all()


# --------------------------------------------------------------------------- states
def test_state_map_pairs_bare_and_hinted_states():
    mdp = toyenv.make("scaffold")
    hinted = mdp.info["hinted"]
    m = state_map(mdp, "hinted")
    np.testing.assert_array_equal(m, state_map(mdp, hinted))
    np.testing.assert_array_equal(state_map(mdp), np.arange(mdp.num_states))
    for s in range(mdp.num_states):
        x, toks = mdp.prefix(s)
        want = mdp.state_index(hinted[x] if x < len(hinted) else x, toks)
        assert m[s] == want
    np.testing.assert_array_equal(prompt_map(mdp, {0: 5}), [5, 1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="teacher prompt"):
        prompt_map(mdp, {0: 99})
    with pytest.raises(ValueError, match="'hinted'"):
        prompt_map(toyenv.make("two-skills"), "hinted")


def test_visit_counts_follow_every_path():
    mdp = toyenv.make("many-paths")
    pi = toyenv.TabularPolicy(mdp, seed=3)
    s, a = sample_pairs_from_probs(mdp, pi.probs(), 300, seed=0)
    sc, pc = visit_counts(mdp, s, a)
    want_s, want_p = np.zeros_like(sc), np.zeros_like(pc)
    for x, toks in mdp.decode(s, a):
        for t in range(len(toks)):
            st = mdp.state_index(x, toks[:t])
            want_s[st] += 1
            want_p[st, toks[t]] += 1
    np.testing.assert_array_equal(sc, want_s)
    np.testing.assert_array_equal(pc, want_p)
    assert sc[mdp.roots].sum() == 300


# --------------------------------------------------------------------------- exact = chain rule
@pytest.mark.parametrize("name", ["many-paths", "two-skills"])
def test_exact_forward_loss_is_sequence_kl_teacher_student(name):
    """λ = 0, forward KL on the teacher's enumerated states is exactly KL(T‖S) (chain rule);
    λ = 1, reverse KL on the student's states is exactly KL(S‖T)."""
    mdp = toyenv.make(name)
    teacher, student = toyenv.TabularPolicy(mdp, seed=1, scale=1.5), toyenv.TransformerPolicy(mdp, seed=2)
    tp, sp = teacher.probs(), student.probs()
    t_lp, s_lp = teacher.log_probs().detach(), student.log_probs()
    loss, _ = distill_loss(s_lp, t_lp, distill_weights(mdp, sp, tp, 0.0), divergence="forward")
    assert loss.item() == pytest.approx(brute.seq_kl(mdp, tp, sp), rel=1e-10)
    loss, _ = distill_loss(s_lp, t_lp, distill_weights(mdp, sp, tp, 1.0), divergence="reverse")
    assert loss.item() == pytest.approx(brute.seq_kl(mdp, sp, tp), rel=1e-10)
    # SFT on teacher samples in expectation: cross-entropy = KL(T‖S) + H(T)
    w = distill_weights(mdp, sp, tp, 0.0)
    ce, _ = sft_loss(s_lp, w[:, None] * tp)
    assert ce.item() == pytest.approx(toyenv.kl(teacher, student) + toyenv.entropy(teacher), rel=1e-10)


def test_exact_forward_loss_across_the_scaffold():
    """With the hinted teacher read in bare coordinates the same identity holds."""
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    tv = teacher_view(base, "hinted")
    student = toyenv.TabularPolicy(mdp, seed=4)
    run = distill(student, base, teacher_prompts="hinted", on_policy=0.0, exact=True, steps=0)
    assert run.history["loss"][0] == pytest.approx(toyenv.kl(tv, student), rel=1e-10)
    assert run.history["forward_kl"][0] == pytest.approx(toyenv.kl(tv, student), rel=1e-10)
    assert run.history["reverse_kl"][0] == pytest.approx(toyenv.kl(student, tv), rel=1e-10)
    np.testing.assert_allclose(toyenv.success_prob(tv)[:4], toyenv.success_prob(base)[4:], atol=1e-14)


@pytest.mark.parametrize("lam,div", [(0.0, "forward"), (1.0, "reverse"), (0.5, "jsd")])
def test_sampled_loss_and_gradient_match_the_exact_expectation(lam, div):
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    t_lp = base.log_probs().detach()[torch.as_tensor(state_map(mdp, "hinted"))]
    tp = t_lp.exp().numpy()
    student = toyenv.TabularPolicy(mdp, seed=5)
    s_lp = student.log_probs()
    sp = s_lp.detach().exp().numpy()
    exact, _ = distill_loss(s_lp, t_lp, distill_weights(mdp, sp, tp, lam), divergence=div)
    g_exact = torch.autograd.grad(exact, student.logits, retain_graph=True)[0].numpy()
    n, reps = 64, 300
    n_on = int(round(lam * n))
    vals, grads = [], []
    for r in range(reps):
        sc = visit_counts(mdp, *sample_pairs_from_probs(mdp, sp, n_on, seed=2 * r))[0]
        sc = sc + visit_counts(mdp, *sample_pairs_from_probs(mdp, tp, n - n_on, seed=2 * r + 1))[0]
        loss, _ = distill_loss(s_lp, t_lp, sc / n, divergence=div)
        vals.append(loss.item())
        grads.append(torch.autograd.grad(loss, student.logits, retain_graph=True)[0].numpy())
    vals, grads = np.array(vals), np.array(grads)
    se = vals.std() / np.sqrt(reps)
    assert abs(vals.mean() - exact.item()) < 4 * se
    g_mean, g_se = grads.mean(0), grads.std(0) / np.sqrt(reps)
    z = np.abs(g_mean - g_exact) / np.maximum(g_se, 1e-12)
    assert np.mean(z < 4) > 0.99
    np.testing.assert_allclose(g_mean, g_exact, atol=6 * g_se.max())


def test_exact_distillation_reaches_the_teacher_and_leaves_the_input_alone():
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    before = base.probs().copy()
    run = distill(base, base, teacher_prompts="hinted", exact=True, on_policy=0.0, steps=150)
    np.testing.assert_array_equal(base.probs(), before)
    assert run.history["forward_kl"][-1] < 1e-3
    assert run.history["reverse_kl"][-1] < 1e-3
    h = run.history["forward_kl"]
    assert h[-1] < h[0] / 1000
    again = distill(base, base, teacher_prompts="hinted", on_policy=0.5, steps=10, seed=3)
    twice = distill(base, base, teacher_prompts="hinted", on_policy=0.5, steps=10, seed=3)
    np.testing.assert_array_equal(again.policy.probs(), twice.policy.probs())


def test_distill_errors_name_the_fix():
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    with pytest.raises(ValueError, match="on_policy"):
        distill(base, base, on_policy=1.5)
    with pytest.raises(ValueError, match="divergence"):
        distill(base, base, divergence="kl")
    with pytest.raises(ValueError, match="jsd_weight"):
        distill(base, base, divergence="jsd", jsd_weight=0.0)
    with pytest.raises(ValueError, match="targets"):
        distill(base, base, targets="logits")
    with pytest.raises(ValueError, match="another world"):
        distill(base, toyenv.make("two-skills").base_policy())
    with pytest.raises(ValueError, match="n_samples"):
        distill(base, base, n_samples=0)


# --------------------------------------------------------------------------- forward vs reverse KL (refs. [6], [60])
def test_mode_scan_forward_covers_reverse_seeks():
    """Mode covering vs mode seeking (GKD; MiniLLM, ref [6]). A memoryless student cannot hold "a b" and "b a" without "a a" and "b b".
    Forward KL(T‖S) is smallest for the spread student (mass between the modes); reverse KL(S‖T)
    is smallest for the one-mode student (the other mode dropped)."""
    r = mode_scan()
    fwd, rev = r["forward_kl"], r["reverse_kl"]
    assert r["argmin_forward"] == 0.0 and np.all(np.diff(fwd) > 0)
    assert r["argmin_reverse"] >= 0.9
    assert rev[-1] < rev[0] - 2.0
    assert fwd[-1] > fwd[0] + 3.0
    assert r["mass_between"][0] > 0.45                       # spread: half the mass between modes
    assert r["mass_modes"][0, 1] > 0.2 and r["mass_modes"][-1, 1] < 1e-3   # the second mode dropped
    assert r["mass_modes"][-1, 0] > 0.99
    for prompt in (1, 5):                                       # any prompt, same shape
        other = mode_scan(prompt=prompt, ts=np.linspace(0, 1, 11))
        assert other["argmin_forward"] == 0.0 and other["argmin_reverse"] >= 0.9


# --------------------------------------------------------------------------- fitting
def test_fit_forward_kl_is_the_sequence_kl():
    mdp = toyenv.make("two-skills")
    target = toyenv.TabularPolicy(mdp, seed=0)
    student = toyenv.TabularPolicy(mdp, seed=1)
    run = fit(student, target, steps=0)
    assert run.history["fit_kl"][0] == pytest.approx(toyenv.kl(target, student), rel=1e-10)
    run = fit(student, target, steps=200, lr=0.1)
    assert run.history["fit_kl"][-1] < 1e-4


def test_base_transformer_is_cached_and_close_to_the_base():
    mdp = toyenv.make("two-skills")
    tf, run = base_transformer(mdp, return_run=True)
    base = mdp.base_policy()
    assert isinstance(tf, toyenv.TransformerPolicy)
    assert toyenv.kl(base, tf) < 5e-3
    np.testing.assert_allclose(toyenv.success_prob(tf), toyenv.success_prob(base), atol=0.01)
    again = base_transformer(toyenv.make("two-skills"))
    assert again is not tf and again.mdp is not tf.mdp
    np.testing.assert_array_equal(again.probs(), tf.probs())          # the same cached fit
    with torch.no_grad():
        tf.parameters()[0].add_(1.0)                                  # a caller's edit ...
    np.testing.assert_array_equal(base_transformer(mdp).probs(), again.probs())   # ... is not cached


def _same_run(a, b):
    """Bit-identical: every parameter of the final policy and of each snapshot, the history, the config."""
    assert a.steps == b.steps and a.method == b.method and a.config == b.config
    assert a.history == b.history                       # exact float equality (a fit logs no NaN)
    for (_, x), (_, y) in zip([(-1, a.policy)] + a.snapshots, [(-1, b.policy)] + b.snapshots):
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))
        assert [p.requires_grad for p in x.parameters()] == [p.requires_grad for p in y.parameters()]


def test_base_transformer_disk_cache_loads_the_same_fit(tmp_path, monkeypatch):
    """With TOYENV_CACHE_DIR set, a second process (here: the in-memory cache cleared) loads the fit
    instead of fitting: bit-identical weights and history. Another key misses; a corrupt file is
    fitted again and replaced."""
    import importlib
    fit_module = importlib.import_module("toyenv.methods.fit")
    monkeypatch.setenv("TOYENV_CACHE_DIR", str(tmp_path))
    clear_cache()
    mdp, small = toyenv.make("two-skills"), dict(steps=30, d_model=16, n_heads=2)
    tf, run = base_transformer(mdp, return_run=True, **small)           # fitted, then written
    [file] = list(tmp_path.iterdir())
    clear_cache()
    with monkeypatch.context() as m:
        m.setattr(fit_module, "fit", lambda *a, **k: pytest.fail("fitted instead of loading"))
        loaded, loaded_run = base_transformer(mdp, return_run=True, **small)
    _same_run(run, loaded_run)
    np.testing.assert_array_equal(loaded.probs(), tf.probs())
    assert loaded.mdp is mdp and all(p.requires_grad for p in loaded.parameters())

    base_transformer(mdp, seed=1, return_run=True, **small)              # another key: a second file
    assert len(list(tmp_path.iterdir())) == 2

    file.write_bytes(b"not a torch file")
    clear_cache()
    _same_run(run, base_transformer(mdp, return_run=True, **small)[1])    # fitted again ...
    clear_cache()
    with monkeypatch.context() as m:
        m.setattr(fit_module, "fit", lambda *a, **k: pytest.fail("the rewritten file was not loaded"))
        _same_run(run, base_transformer(mdp, return_run=True, **small)[1])   # ... and written again
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".pt", ".pt"]   # no temporary file left
    clear_cache()
