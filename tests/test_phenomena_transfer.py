"""Phenomena of transfer and attrition, under default settings and other seeds (GKD ref [60], MiniLLM ref [6], RL's Razor (Shenfeld et al. 2025);
survey §3.3.4, §3.4, §4.4, §5.4). What is asserted is what the toy shows; where a published finding
does not hold as stated, the test says what holds instead."""
import numpy as np
import pytest

import toyenv
from toyenv.analysis.experiments import compare_provenance, mode_scan
from toyenv.methods.distill import distill, teacher_view
from toyenv.methods.fit import base_transformer
from toyenv.methods.fit import single_thread
from toyenv.analysis.forgetting import (at_matched_gain, family_demos, family_success, family_task,
                             forgetting, forgetting_curve)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread is many times faster on a busy 2-core machine."""
    with single_thread():
        yield


# =========================================================================== two skills (forgetting at matched gain, RL's Razor)
def _fine_tune_a(start, mdp, seed, task=None, answer=None, steps=40):
    """SFT on family-A demonstrations and RL on family-A prompts only (beta = 0: no gradient on B)."""
    task = family_task(mdp, 0) if task is None else task
    snaps = dict(snapshot_steps=range(steps + 1))
    lr = 1e-3 if isinstance(start, toyenv.TransformerPolicy) else None
    return {
        "sft": toyenv.sft(start, family_demos(mdp, 0, answer), steps=steps, lr=lr, seed=seed, **snaps),
        "rl-exact": toyenv.rl(start, beta=0.0, exact=True, reward=task, steps=steps, lr=lr, seed=seed, **snaps),
        "rl-grpo": toyenv.rl(start, beta=0.0, reward=task, steps=steps, lr=lr, seed=seed, **snaps),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_two_skills_transformer_forgets_tabular_does_not(seed):
    """Fine-tuning family A moves family B only through shared parameters: with the transformer
    (fitted to the base) B's success collapses; with the tabular base it does not change at all."""
    mdp = toyenv.make("two-skills")
    tab = mdp.base_policy()
    for name, run in _fine_tune_a(tab, mdp, seed).items():
        f = forgetting(tab, run.policy)
        assert f["trained_after"] > 0.9, name
        np.testing.assert_array_equal(toyenv.success_prob(run.policy)[4:], toyenv.success_prob(tab)[4:])
        fam = np.asarray(mdp.info["family"])
        np.testing.assert_array_equal(run.policy.probs()[fam[mdp.prompt_of] == 1],
                                      tab.probs()[fam[mdp.prompt_of] == 1])        # B rows untouched
    tf = base_transformer(mdp, seed=seed)
    assert np.abs(family_success(tf) - family_success(tab)).max() < 0.01
    for name, run in _fine_tune_a(tf, mdp, seed).items():
        f = forgetting(tf, run.policy)
        assert f["trained_after"] > 0.85, name
        assert f["other_change"] < -0.2, name                 # B: 0.33 -> below 0.13
        m = at_matched_gain(forgetting_curve(run, tf), 0.6)
        assert m["other"] < family_success(tf)[1] - 0.1, name


@pytest.mark.parametrize("seed", [0, 1])
def test_two_skills_sft_and_rl_forget_alike_when_the_answer_is_unique(seed):
    """The matched-gain claim as stated ("SFT drifts further than RL at matched gain") does NOT hold in the default
    two-skills world: family A has one correct answer, so SFT's targets and RL's optimum coincide,
    and at matched A success SFT and exact RL sit at the same KL from the base and the same B
    success. Forgetting tracks KL, not the method's name."""
    mdp = toyenv.make("two-skills")
    tf = base_transformer(mdp, seed=seed)
    runs = _fine_tune_a(tf, mdp, seed)
    c_sft, c_rl = forgetting_curve(runs["sft"], tf), forgetting_curve(runs["rl-exact"], tf)
    for level in (0.5, 0.6, 0.7, 0.8):
        s, r = at_matched_gain(c_sft, level), at_matched_gain(c_rl, level)
        assert abs(s["other"] - r["other"]) < 0.03
        assert 0.8 < s["kl"] / r["kl"] < 1.25


@pytest.mark.parametrize("seed", [0, 1])
def test_two_skills_sft_on_base_unlikely_answers_drifts_and_forgets_more(seed):
    """The matched-gain claim with its control (RL's Razor): give family A two correct answers, "a b" (likely under the
    base, p ≈ 0.33) and "a c" (unlikely, p ≈ 0.01). RL on this task raises the likely one and stays
    close to the base; SFT on the unlikely answer reaches the same task success far from the base
    (KL many times larger) and forgets family B more. SFT on the likely answer (the control)
    behaves like RL: the driver is how unlikely the demonstrations are, not SFT as such."""
    mdp = toyenv.make("two-skills")
    tf = base_transformer(mdp, seed=seed)
    task = family_task(mdp, 0, answers=[(0, 1), (0, 2)])
    rl_run = _fine_tune_a(tf, mdp, seed, task=task)["rl-exact"]
    unlikely = toyenv.sft(tf, family_demos(mdp, 0, (0, 2)), steps=40, lr=1e-3, seed=seed,
                          snapshot_steps=range(41))
    likely = toyenv.sft(tf, family_demos(mdp, 0, (0, 1)), steps=40, lr=1e-3, seed=seed,
                        snapshot_steps=range(41))
    c_rl, c_un, c_li = (forgetting_curve(r, tf, 0, task) for r in (rl_run, unlikely, likely))
    for level in (0.5, 0.6, 0.7):
        r, u, l = (at_matched_gain(c, level) for c in (c_rl, c_un, c_li))
        assert u["kl"] > 5 * r["kl"]
        assert u["other"] < 0.5 * r["other"]          # measured: 0.2-0.3x RL's B success
        assert abs(l["other"] - r["other"]) < 0.03 and 0.8 < l["kl"] / r["kl"] < 1.25


# =========================================================================== scaffold (on- vs off-policy distillation, GKD, survey ref. [60])
def test_scaffold_distillation_removes_the_hint():
    """The bare student (no hint) reaches the hinted teacher's success after distillation,
    off-policy and on-policy, tabular student; the base guesses (≈ 0.02)."""
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    teacher = toyenv.success_prob(base)[list(mdp.info["hinted"])].mean()
    assert toyenv.success_prob(base)[:4].max() < 0.05 and teacher > 0.6
    for lam in (0.0, 1.0):
        for seed in (0, 1):
            run = distill(base, base, teacher_prompts="hinted", on_policy=lam, steps=100, seed=seed,
                          n_samples=16)
            assert toyenv.success_prob(run.policy)[:4].min() > teacher - 0.02
    sft = distill(base, base, teacher_prompts="hinted", on_policy=0.0, targets="sample", steps=100,
                  n_samples=16)
    assert sft.method == "distill/sft" and sft.history["success"][-1] > teacher - 0.05


def test_scaffold_default_on_policy_leads_only_briefly_and_nothing_after_a_slip():
    """Default (unrecoverable) scaffold, tabular student: on-policy is behind at 25 updates, ahead at
    50, and both reach the teacher by 200; a slip can never be repaired, so success after a slip is
    exactly 0 for both — there is nothing for on-policy data to teach there."""
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    r = compare_provenance(base, base, teacher_prompts="hinted", on_policy=(0.0, 1.0),
                           checkpoints=(25, 50, 200), seeds=(0, 1, 2), n_samples=16)
    s = r["success"]                                        # [lam, seed, checkpoint]
    assert np.all(s[1, :, 0] < s[0, :, 0])                  # 25 updates: on-policy behind
    assert np.all(s[1, :, 1] > s[0, :, 1])                  # 50 updates: on-policy ahead
    teacher = toyenv.success_prob(teacher_view(base, "hinted"))[:4].mean()
    assert np.all(np.abs(s[:, :, 2] - teacher) < 0.01)       # 200: both at the teacher
    assert np.all(r["after_slip"] == 0.0)


def test_scaffold_recoverable_on_policy_beats_off_policy_tabular():
    """On-policy distillation (GKD, ref [60]) where it holds: a recoverable task (slack=1: the answer may be restarted after a
    slip) with a teacher that rarely slips (hint_accuracy=0.99). Off-policy data almost never shows
    the student a slip state, on-policy data shows it its own: at 50, 100 and 200 equal updates
    on-policy distillation has higher success for every seed, lower reverse KL, and far better
    success after a slip; at 10 updates it is still behind (its early rollouts are noise)."""
    mdp = toyenv.make("scaffold", slack=1, hint_accuracy=0.99)
    base = mdp.base_policy()
    r = compare_provenance(base, base, teacher_prompts="hinted", on_policy=(0.0, 0.5, 1.0),
                           checkpoints=(10, 50, 100, 200), seeds=(0, 1, 2), n_samples=16)
    s, rk, sl = r["success"], r["reverse_kl"], r["after_slip"]
    assert np.all(s[2, :, 0] < s[0, :, 0])
    for k in (1, 2, 3):
        assert s[2, :, k].min() > s[0, :, k].max()
        assert rk[2, :, k].max() < rk[0, :, k].min()
        assert s[0, :, k].mean() < s[1, :, k].mean() < s[2, :, k].mean()   # more student data, better
    assert np.all(sl[2, :, 2] > sl[0, :, 2] + 0.1)          # 100 updates: recovery after a slip


@pytest.mark.slow
def test_scaffold_recoverable_transformer_student():
    """Capacity-limited transformer student (d_model=8), recoverable scaffold: on-policy is far
    behind early (50 updates) and, at 200 updates, ends closer to the teacher in reverse KL and
    recovers better after a slip; its success is then within a few points of off-policy (measured
    0.93 vs 0.92 on average, not a robust win — reported, not asserted)."""
    mdp = toyenv.make("scaffold", slack=1, hint_accuracy=0.99)
    base = mdp.base_policy()
    r = compare_provenance(None, base, teacher_prompts="hinted", on_policy=(0.0, 1.0),
                           checkpoints=(50, 200), seeds=(0, 1), n_samples=64,
                           student_factory=lambda s: toyenv.TransformerPolicy(mdp, seed=s, d_model=8, n_heads=2))
    s, rk, sl = r["success"], r["reverse_kl"], r["after_slip"]
    assert np.all(s[1, :, 0] < s[0, :, 0] - 0.05)
    assert np.all(rk[1, :, 1] < rk[0, :, 1])
    assert np.all(sl[1, :, 1] > sl[0, :, 1])
    assert np.all(np.abs(s[1, :, 1] - s[0, :, 1]) < 0.05)
    assert np.all(s[:, :, 1] > 0.5)                         # bare student: 0.03 -> above 0.5


# =========================================================================== forward vs reverse KL (refs. [6], [60])
@pytest.mark.parametrize("modes", [None, [(0, 2, 3), (2, 0, 3)], [(1, 2, 3), (2, 1, 3)]])
def test_forward_covers_reverse_seeks_for_any_pair_of_modes(modes):
    """Mode covering vs mode seeking along the exact spread -> one-mode path, for several mode pairs and prompts."""
    mdp = toyenv.make("two-skills")
    for prompt in (0, 7):
        r = mode_scan(mdp, modes=modes, prompt=prompt)
        assert r["argmin_forward"] == 0.0 and r["argmin_reverse"] >= 0.9
        assert r["mass_between"][0] > 0.45 and r["mass_modes"][-1, 1] < 1e-3
