"""Every phenomenon notebooks 07 and 08 state, asserted on the package with the notebooks' own worlds,
seeds and settings. Each test names the notebook and the sentence it backs; numbers a notebook quotes
in prose are asserted here, so a change of a world or a default breaks a test before it silently
breaks the prose. (Findings the package already asserts across seeds — tests/test_phenomena_transfer.py,
tests/test_distill.py, tests/test_pipeline.py — are not repeated.)
"""
import numpy as np
import pytest

import toyenv
from toyenv.core.exact import kl_per_state
from toyenv.methods.fit import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


# =========================================================================================== 07
@pytest.fixture(scope="module")
def nb07():
    with single_thread():
        mdp = toyenv.make("two-skills")
        tab, tf = mdp.base_policy(), toyenv.base_transformer(mdp)
        demos = toyenv.family_demos(mdp, 0)
        snaps = dict(snapshot_steps=range(0, 41, 2))
        run_tab = toyenv.sft(tab, demos, steps=40, seed=0, **snaps)
        run_tf = toyenv.sft(tf, demos, steps=40, lr=1e-3, seed=0, **snaps)
        task = toyenv.family_task(mdp, 0, answers=[(0, 1), (0, 2)])
        every = dict(snapshot_steps=range(41))
        runs = {"rl": toyenv.rl(tf, beta=0.0, exact=True, reward=task, steps=40, lr=1e-3, seed=0, **every),
                "sft-unlikely": toyenv.sft(tf, toyenv.family_demos(mdp, 0, (0, 2)), steps=40, lr=1e-3, seed=0,
                                           **every),
                "sft-likely": toyenv.sft(tf, toyenv.family_demos(mdp, 0, (0, 1)), steps=40, lr=1e-3, seed=0,
                                         **every)}
        curves = {k: toyenv.forgetting_curve(r, tf, 0, task) for k, r in runs.items()}
        run_rl = toyenv.rl(tf, beta=0.0, exact=True, reward=toyenv.family_task(mdp, 0), steps=40, lr=1e-3,
                           seed=0, **snaps)
    B = np.nonzero(np.asarray(mdp.info["family"]) == 1)[0]
    return dict(mdp=mdp, tab=tab, tf=tf, run_tab=run_tab, run_tf=run_tf, runs=runs, curves=curves,
                run_rl=run_rl, B=B, on_B=np.isin(mdp.prompt_of, B))


def test_07_world_as_described(nb07):
    """§1: each family's own answer ≈ 0.33 under the base, the other's ≈ 0.25; the transformer copies
    the table (KL ≈ 4e-5)."""
    mdp, tab, tf = nb07["mdp"], nb07["tab"], nb07["tf"]
    np.testing.assert_allclose(toyenv.family_success(tab), 0.4 * 0.91 * 0.91, rtol=1e-12)
    traj = toyenv.trajectory_probs(tab)
    assert traj[mdp.state_index(0, (1, 0)), mdp.eos] == pytest.approx(0.3 * 0.91 * 0.91, rel=1e-12)
    assert toyenv.kl(tab, tf) < 1e-3
    assert 20_000 < tf.num_parameters() < 30_000                           # "about 26k parameters"


def test_07_tabular_leaves_family_b_exactly_alone(nb07):
    """§2/§4: the tabular SFT run learns A, changes B's rows by exactly zero and attrits no pair of B at
    any threshold; its attrited pairs all lie on A (the wrong answers leaving)."""
    tab, after, on_B = nb07["tab"], nb07["run_tab"].policy, nb07["on_B"]
    assert toyenv.family_success(after)[0] > 0.95
    assert np.abs(after.probs()[on_B] - tab.probs()[on_B]).max() == 0.0
    for eps in np.logspace(-8, 0, 65):
        ch = toyenv.support_change(tab, after, eps)
        assert not ch.attrited[on_B].any()
        assert toyenv.held_out_attrition(tab, after, eps, nb07["B"]) == 0.0
    assert toyenv.support_change(tab, after, 1e-3).attrited[~on_B].sum() > 10


def test_07_transformer_erases_family_b(nb07):
    """§2: the transformer run learns A too, pushes pairs of B out of the support, B's success collapses
    from 0.33 to about 0.01; it learnt "start with a" for every prompt, and B 0's branch 'b' lost its mass."""
    mdp, tf, after, on_B = nb07["mdp"], nb07["tf"], nb07["run_tf"].policy, nb07["on_B"]
    fs = toyenv.family_success(after)
    assert fs[0] > 0.9 and fs[1] < 0.02
    ch = toyenv.support_change(tf, after, 1e-3)
    assert ch.attrited[on_B].sum() > 20 and ch.attrited[~on_B].sum() > 20
    assert ch.before.sa[ch.attrited & on_B[:, None]].sum() > 0.1
    p, p0 = after.probs(), tf.probs()
    assert np.all(p[mdp.roots, 0] > 0.8)                                  # 'a' first, every prompt
    b0 = mdp.roots[4]
    assert p0[b0, 1] > 0.35 and p[b0, 1] < 0.1
    assert ch.attrited[mdp.state_index(4, (1,)), 0] and ch.attrited[mdp.state_index(4, (1, 0)), mdp.eos]
    assert np.abs(p[on_B] - p0[on_B]).max() > 0.3


def test_07_matched_gain_rl_equals_base_likely_sft_and_unlikely_sft_drifts(nb07):
    """§5: RL and SFT on the likely answer lie on top of each other; SFT on the unlikely answer first
    raises A's success, falls back, then climbs at a KL 7-28 times larger, and at A success 0.6 keeps B at ≈ 0.05
    against ≈ 0.19 under RL; after 40 steps RL's B success is below 0.01."""
    c = nb07["curves"]
    for level in (0.5, 0.6, 0.7):
        r, u, l = (toyenv.at_matched_gain(c[k], level) for k in ("rl", "sft-unlikely", "sft-likely"))
        assert abs(l["other"] - r["other"]) < 0.01 and 0.9 < l["kl"] / r["kl"] < 1.1
        assert 6 < u["kl"] / r["kl"] < 35
        assert u["other"] < 0.4 * r["other"]
    r6, u6 = toyenv.at_matched_gain(c["rl"], 0.6), toyenv.at_matched_gain(c["sft-unlikely"], 0.6)
    assert 0.17 < r6["other"] < 0.21 and 0.04 < u6["other"] < 0.07
    un = c["sft-unlikely"]["trained"]
    i = int(np.argmax(un[:20]))                      # first up ('a' serves both answers), then back
    assert un[i] > un[0] + 0.05 and un[i:].min() < un[i] - 0.05 and un[-1] > 0.75
    assert c["rl"]["other"][-1] < 0.01


def test_07_default_task_sft_and_rl_forget_alike(nb07):
    """§5: in the default world (one answer for A) SFT and RL forget alike at matched gain."""
    tf = nb07["tf"]
    c_sft, c_rl = toyenv.forgetting_curve(nb07["run_tf"], tf), toyenv.forgetting_curve(nb07["run_rl"], tf)
    for level in (0.6, 0.8):
        s, r = toyenv.at_matched_gain(c_sft, level), toyenv.at_matched_gain(c_rl, level)
        assert abs(s["other"] - r["other"]) < 0.01 and 0.9 < s["kl"] / r["kl"] < 1.1


def test_07_small_overlap_is_no_worse_for_family_b():
    """§5 caveat: interference is not automatic — with overlap=0.02 the same SFT run on A leaves B no
    worse off (measured: B rises 0.33 -> 0.42)."""
    mdp = toyenv.make("two-skills", overlap=0.02)
    tf = toyenv.base_transformer(mdp)
    after = toyenv.sft(tf, toyenv.family_demos(mdp, 0), steps=40, lr=1e-3, seed=0).policy
    before, now = toyenv.family_success(tf), toyenv.family_success(after)
    assert now[0] > 0.9 and now[1] >= before[1] - 0.01


def test_07_total_attrited_mass_does_not_separate_forgetting(nb07):
    """§6: both SFT runs (tabular and transformer) show plenty of attrited mass at eps = 1e-3."""
    for before, run in ((nb07["tab"], nb07["run_tab"]), (nb07["tf"], nb07["run_tf"])):
        assert toyenv.support_change(before, run.policy, 1e-3).attrited_mass > 0.2


def test_07_held_out_monitoring(nb07):
    """§7: at eps = 1e-3 SFT on 'a b' and RL erode B's support (rate rising over training, > 0.3 after
    40 steps) while SFT on 'a c' hardly registers (< 0.15) although B's success fell to about 0.03 — it
    shows as heavy attrition between eps = 3e-3 and 1e-2."""
    tf, runs, B, mdp = nb07["tf"], nb07["runs"], nb07["B"], nb07["mdp"]
    for k in ("rl", "sft-likely"):
        rates = [toyenv.held_out_attrition(tf, pi, 1e-3, B) for _, pi in runs[k].snapshots]
        assert rates[0] == 0.0 and rates[-1] > 0.3 and rates[-1] == max(rates)
    un = runs["sft-unlikely"].policy
    assert toyenv.held_out_attrition(tf, un, 1e-3, B) < 0.15
    assert 0.02 < toyenv.family_success(un)[1] < 0.05
    for eps in (3e-3, 1e-2):
        assert toyenv.held_out_attrition(tf, un, eps, B) > 0.3
    # B's correct path keeps occupancy >= 1e-3 under SFT on 'a c'
    occ = toyenv.occupancy(un)
    for prompt in B:
        path = [(mdp.state_index(prompt, ()), 1), (mdp.state_index(prompt, (1,)), 0),
                (mdp.state_index(prompt, (1, 0)), mdp.eos)]
        assert min(occ.sa[s, a] for s, a in path) >= 1e-3


def test_07_diagnosis(nb07):
    """§7: diagnose calls the tabular run low risk (no prompt down, no useful attrited mass) and the
    transformer run high risk (4 prompts down)."""
    t = toyenv.diagnose(nb07["tab"], nb07["run_tab"].policy, 1e-3)
    assert t.attrition_risk == "low" and t.role == "reshaping-dominant"
    assert t.evidence["prompts_down"] == 0 and t.evidence["useful_attrited_mass"] == 0.0
    f = toyenv.diagnose(nb07["tf"], nb07["run_tf"].policy, 1e-3)
    assert f.attrition_risk == "high" and f.evidence["prompts_down"] == 4
    assert f.evidence["useful_attrited_mass"] > 0.05


# =========================================================================================== 08
CHECKPOINTS = tuple(sorted(tuple(range(10, 201, 10)) + (25,)))


@pytest.fixture(scope="module")
def nb08():
    with single_thread():
        mdp = toyenv.make("scaffold", slack=1, hint_accuracy=0.99)
        base = mdp.base_policy()
        teacher = toyenv.teacher_view(base, "hinted")
        res = toyenv.compare_provenance(base, base, teacher_prompts="hinted", on_policy=(0.0, 0.5, 1.0),
                                        checkpoints=CHECKPOINTS, seeds=(0, 1, 2), n_samples=16)
        students = {(lam, seed): toyenv.distill(base, base, teacher_prompts="hinted", on_policy=lam, steps=100,
                                                seed=seed, n_samples=16).policy
                    for lam in (0.0, 1.0) for seed in (0, 1, 2)}
    return dict(mdp=mdp, base=base, teacher=teacher, res=res, students=students)


def test_08_scaffold_world_as_described():
    """§1-2: D(x) only on bare prompts; hinted success 0.9^4, bare 0.0189; (q0, 'b a') is read as
    (q0 hint, 'b a'); the teacher view has the hinted success on the bare prompts."""
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    np.testing.assert_allclose(mdp.prompt_weights, [0.25] * 4 + [0.0] * 4)
    s = toyenv.success_prob(base)
    np.testing.assert_allclose(s[4:], 0.9 ** 4, rtol=1e-12)
    np.testing.assert_allclose(s[:4], 0.0189, rtol=1e-9)
    smap = toyenv.state_map(mdp, "hinted")
    assert mdp.prefix(int(smap[mdp.state_index(0, (1, 0))])) == (4, (1, 0))
    np.testing.assert_allclose(toyenv.success_prob(toyenv.teacher_view(base, "hinted"))[:4], 0.9 ** 4, rtol=1e-12)


def test_08_recoverable_teacher(nb08):
    """§3: the recoverable teacher succeeds 97% of the time and recovers after 96% of its slips."""
    sl = toyenv.after_slip(nb08["teacher"], nb08["base"], "hinted")
    assert sl["after_slip"] > 0.95
    assert toyenv.success_prob(nb08["teacher"])[0] == pytest.approx(0.970202, abs=1e-6)


def test_08_on_policy_ahead_from_50_updates_by_a_few_points(nb08):
    """§3: from 50 updates on, on-policy has a few points more success than off-policy for every seed,
    the mixture in between; at 10 updates on-policy is behind; on the teacher's path both are good
    (on-path success > 0.9 from 100 updates); after a slip on-policy recovers far better."""
    r = nb08["res"]
    s, cps = r["success"], list(CHECKPOINTS)
    assert np.all(s[2, :, cps.index(10)] < s[0, :, cps.index(10)])
    for k, c in enumerate(cps):
        if c < 50:
            continue
        assert s[2, :, k].min() > s[0, :, k].max()
        assert s[0, :, k].mean() < s[1, :, k].mean() < s[2, :, k].mean()
        assert s[2, :, k].mean() - s[0, :, k].mean() < 0.06
        assert np.all(r["after_slip"][2, :, k] > r["after_slip"][0, :, k])
        if c >= 100:
            assert r["on_path"][:, :, k].min() > 0.9
            assert np.all(r["after_slip"][2, :, k] > r["after_slip"][0, :, k] + 0.1)


def test_08_one_state_forward_and_reverse():
    """§5: forward KL prefers the spread student, reverse KL the one-mode student (the spread one is
    infinitely bad under reverse KL)."""
    t = np.array([[0.5, 0.5, 0.0, 0.0]])
    spread, one = np.array([[0.45, 0.45, 0.05, 0.05]]), np.array([[0.98, 0.02, 0.0, 0.0]])
    assert kl_per_state(t, spread)[0] < kl_per_state(t, one)[0]
    assert np.isinf(kl_per_state(spread, t)[0]) and np.isfinite(kl_per_state(one, t)[0])


def test_08_mode_scan_numbers():
    """§5: the spread student puts half its mass on neither mode; the one-mode student gives 'b a'
    probability below 1e-7."""
    scan = toyenv.mode_scan()
    assert scan["argmin_forward"] == 0.0 and scan["argmin_reverse"] == 1.0
    assert 0.49 < scan["mass_between"][0] < 0.51
    assert scan["mass_modes"][-1, 1] < 1e-7


def test_08_reverse_kl_lives_after_the_students_slips(nb08):
    """§6: for the students after 100 updates, the reverse KL is several times the forward KL, about 90%
    of it sits on states after a slip, the student reaches a slip state a few percent of the time, and
    on-policy distillation roughly halves the reverse KL."""
    mdp, teacher = nb08["mdp"], nb08["teacher"]
    key_of = np.array(mdp.info["keys"])[np.arange(mdp.num_prompts) % 4][mdp.prompt_of]
    on_path = np.array([d <= 3 and tuple(mdp.tokens[s, :d]) == tuple(key_of[s, :d])
                        for s, d in enumerate(mdp.depth)])
    D = mdp.prompt_weights[mdp.prompt_of]
    for seed in (0, 1, 2):
        revs = {}
        for lam in (0.0, 1.0):
            st = nb08["students"][(lam, seed)]
            rev = D * toyenv.reach(st) * kl_per_state(st.probs(), teacher.probs())
            fwd = D * toyenv.reach(teacher) * kl_per_state(teacher.probs(), st.probs())
            assert rev.sum() == pytest.approx(toyenv.kl(st, teacher), rel=1e-9)
            assert rev.sum() > 3 * fwd.sum()
            assert 0.8 < rev[~on_path].sum() / rev.sum() < 0.95
            slip = (D * toyenv.reach(st))[(~on_path) & (mdp.depth == 1)].sum()
            assert 0.01 < slip < 0.1
            revs[lam] = rev.sum()
        assert revs[1.0] < 0.6 * revs[0.0]


def test_08_handoff_loses_only_rare_teacher_behaviour(nb08):
    """§7: at eps = 1e-3 neither student misses a pair of the teacher's support; at eps = 1e-4 the
    off-policy student misses about twice as many of the teacher's pairs as the on-policy one."""
    teacher = nb08["teacher"]
    for seed in (0, 1, 2):
        off, on = nb08["students"][(0.0, seed)], nb08["students"][(1.0, seed)]
        for st in (off, on):
            assert toyenv.support_change(teacher, st, 1e-3).attrited.sum() == 0
        n_off = toyenv.support_change(teacher, off, 1e-4).attrited.sum()
        n_on = toyenv.support_change(teacher, on, 1e-4).attrited.sum()
        assert 1.7 * n_on < n_off < 3.0 * n_on



def test_08_on_policy_default_loss_is_forward_kl_on_the_students_states(nb08):
    """08 §6: distill's default divergence is the per-state forward KL(T||S), weighted on-policy by the
    student's reach: that is neither the sequence reverse KL(S||T) nor the sequence forward KL(T||S);
    the per-state reverse KL on the student's states has the sequence reverse KL as its value."""
    import inspect
    import torch
    from toyenv.core.exact import kl_per_state
    from toyenv.methods.distill import distill_loss
    assert inspect.signature(toyenv.distill).parameters["divergence"].default == "forward"
    mdp, teacher = nb08["mdp"], nb08["teacher"]
    student = nb08["students"][(1.0, 0)]
    S, T = student.probs(), teacher.probs()
    w = mdp.prompt_weights[mdp.prompt_of] * toyenv.reach(student)
    logS, logT = torch.as_tensor(np.log(np.maximum(S, 1e-300))), torch.as_tensor(np.log(np.maximum(T, 1e-300)))
    fwd_on_student = float(distill_loss(logS, logT, w)[0])
    rev_on_student = float(distill_loss(logS, logT, w, divergence="reverse")[0])
    assert fwd_on_student == pytest.approx(float(w @ kl_per_state(T, S)), rel=1e-9)
    assert rev_on_student == pytest.approx(toyenv.kl(student, teacher), rel=1e-6)
    assert abs(fwd_on_student - toyenv.kl(student, teacher)) > 0.01 * toyenv.kl(student, teacher)
    assert abs(fwd_on_student - toyenv.kl(teacher, student)) > 0.01 * toyenv.kl(teacher, student)


# 08 §8: consolidation's four forms (§3.4), the notebook's call: handoffs.consolidation_forms()
@pytest.fixture(scope="module")
def forms():
    from toyenv.analysis import handoffs
    with single_thread():
        return handoffs.consolidation_forms()


def test_08_consolidation_four_forms_keep_at_least_98_percent(forms):
    """08 §8: every form reaches at least 98% of its teacher's success; retention brings family A back
    from 0.67 to 0.91 (the checkpoint's level) while B stays at 0.52; transfer 0.33 -> 0.98 (teacher
    0.97); amortisation 0.02 -> 0.655 without the hint (teacher 0.656)."""
    rows = forms.rows
    assert list(rows) == ["retention", "transfer", "amortisation", "compression d8x1", "compression d4x1"]
    assert min(r["retention"] for r in rows.values()) >= 0.98
    ret = rows["retention"]
    assert ret["student_before"] == pytest.approx(0.67, abs=0.005)
    assert ret["student_after"] == pytest.approx(0.91, abs=0.005) and ret["teacher_success"] == pytest.approx(0.91, abs=0.005)
    assert ret["other_before"] == pytest.approx(0.52, abs=0.005) and abs(ret["other_after"] - ret["other_before"]) < 0.005
    tr = rows["transfer"]
    assert tr["student_before"] == pytest.approx(0.33, abs=0.005) and tr["student_after"] == pytest.approx(0.98, abs=0.005)
    assert tr["teacher_success"] == pytest.approx(0.97, abs=0.005)
    am = rows["amortisation"]
    assert am["student_before"] == pytest.approx(0.02, abs=0.005)
    assert am["student_after"] == pytest.approx(0.655, abs=0.0005) and am["teacher_success"] == pytest.approx(0.656, abs=0.0005)


def test_08_compression_loss_shows_in_kl_before_success(forms):
    """08 §8: the transfer teacher (26,148 parameters) compressed into 1,060 and 340 parameters keeps
    100% and 98% of its success; the smaller student's KL to the teacher is more than eight times larger
    (0.049 against 0.006 nats)."""
    big, small = forms.rows["compression d8x1"], forms.rows["compression d4x1"]
    assert big["teacher_params"] == small["teacher_params"] == 26148
    assert (big["student_params"], small["student_params"]) == (1060, 340)
    assert big["retention"] == pytest.approx(1.0, abs=0.005) and small["retention"] == pytest.approx(0.98, abs=0.005)
    assert big["kl_to_teacher"] == pytest.approx(0.006, abs=0.0005) and small["kl_to_teacher"] == pytest.approx(0.049, abs=0.0005)
    assert small["kl_to_teacher"] > 8 * big["kl_to_teacher"]

def test_07_replay_experiment(nb07):
    """07 §8 (exercise 07.2): without replay about half of B's old occupancy leaves the support; replay
    only does not teach A; weights 0.1 to 0.5 meet both criteria (A >= 0.9, B keeps >= 95%); the
    weight-0.25 run keeps B whole."""
    from toyenv.course.checks.nb07 import REPLAY, run_replay
    r0, r1 = run_replay(0.0), run_replay(1.0)
    assert 0.4 < r0["retained"] < 0.7 and r0["gain"] >= REPLAY["min_gain"] and r0["other"] < 0.05
    assert r1["gain"] < 0.4 and r1["retained"] == pytest.approx(1.0)
    for w in (0.1, 0.25, 0.5):
        r = run_replay(w)
        assert r["gain"] >= REPLAY["min_gain"] and r["retained"] >= REPLAY["min_retained"], r
    assert run_replay(0.25)["retained"] > 0.999
    # replay weight 0 is plain SFT
    plain = toyenv.family_success(nb07["run_tf"].policy)[0]
    assert r0["gain"] == pytest.approx(plain, abs=1e-6)


def test_08_exercise_08_3_mode_facts():
    """08 exercise 08.3: the forward-KL student keeps both modes (reverse drops one) and puts half its
    mass on neither mode."""
    from toyenv.course.checks.nb08 import mode_facts
    facts = mode_facts()
    assert facts["keeps_both"] == "forward" and facts["between"] == pytest.approx(0.5, abs=0.01)
