"""Every phenomenon notebooks 09 and 10 state, asserted on the package (same worlds, seeds, numbers).

Each test names the notebook and the sentence it backs; numbers quoted in the notebooks' prose are
asserted here, so a change of a world or a default breaks a test before it silently breaks the prose.
"""

import numpy as np
import pytest

import toyenv
from toyenv import estimate
from toyenv.course.checks.nb09 import LABELS, RISKS, _build, dominant_role, mystery_runs
from toyenv.analysis.experiments import peak


@pytest.fixture(autouse=True)
def _one_torch_thread():
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield


# =========================================================================================== 09
@pytest.fixture(scope="module")
def ablation():
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 16, seed=0)
    SFT = ("SFT", lambda pi: toyenv.sft(pi, demos, steps=60, seed=0))
    RL = ("RL", lambda pi: toyenv.rl(pi, beta=0.0, steps=100, seed=0))
    orders = {"SFT → RL": [SFT, RL], "RL → SFT": [RL, SFT], "RL alone": [RL], "SFT alone": [SFT]}
    return mdp, base, {name: toyenv.pipeline(base, st) for name, st in orders.items()}


def test_09_sft_then_rl_handoff_numbers(ablation):
    """09 §1: SFT expansion-dominant, 12 pairs enter, success 4e-6 -> 0.81; RL reshaping-dominant,
    no pair enters, success 0.996, KL 0.19 from the SFT policy against 9.8 for SFT."""
    mdp, base, reps = ablation
    sft, rl = reps["SFT → RL"]["SFT"], reps["SFT → RL"]["RL"]
    assert sft.diagnosis.role == "expansion-dominant" and sft.diagnosis.evidence["expanded"] == 12
    h = mdp.info["hidden_token"]
    assert np.all(sft.expanded[mdp.roots, h])                        # the hidden first token ...
    for x, key in enumerate(mdp.info["keys"]):                     # ... and the key letters after it
        assert sft.expanded[mdp.state_index(x, (h,)), key]
    assert sft.success[0] == pytest.approx(4e-6) and sft.success[1] == pytest.approx(0.814, abs=0.005)
    assert rl.diagnosis.role == "reshaping-dominant" and rl.diagnosis.evidence["expanded"] == 0
    assert rl.success[1] == pytest.approx(0.996, abs=0.0015)
    assert rl.kl_to_previous == pytest.approx(0.19, abs=0.01) and sft.kl_to_previous == pytest.approx(9.8, abs=0.05)
    assert sft.diagnosis.attrition_risk == rl.diagnosis.attrition_risk == "low"


def test_09_rl_first_changes_nothing_and_rl_then_sft_equals_sft_alone(ablation):
    """09 §2: RL first is "no change" — every GRPO group of every update failed, KL 0 — so RL → SFT
    ends exactly where SFT alone ends (0.81) and only SFT → RL reaches 0.996 (18 points more)."""
    mdp, base, reps = ablation
    first = reps["RL → SFT"]["RL"]
    assert first.diagnosis.role == "no change" and reps["RL alone"][0].diagnosis.role == "no change"
    assert min(first.run.history["zero_variance_groups"]) == 1.0
    assert toyenv.kl(first.after, base) == 0.0
    np.testing.assert_array_equal(reps["RL → SFT"].policy.probs(), reps["SFT alone"].policy.probs())
    final = {n: toyenv.success_prob(r.policy).mean() for n, r in reps.items()}
    assert final["SFT → RL"] > 0.995 and final["RL → SFT"] == pytest.approx(0.814, abs=0.005)
    assert final["RL alone"] == pytest.approx(4e-6)
    assert 0.17 < final["SFT → RL"] - final["RL → SFT"] < 0.19
    roles = {n: [dominant_role(h.diagnosis) for h in r.handoffs] for n, r in reps.items()}
    assert roles == {"SFT → RL": [("expansion", "low"), ("reshaping", "low")],
                     "RL → SFT": [("no change", "low"), ("expansion", "low")],
                     "RL alone": [("no change", "low")], "SFT alone": [("expansion", "low")]}


def test_09_8_one_method_several_roles(ablation):
    """09 §8, the world x method chooser: SFT is expansion-dominant on hidden-path, reshaping-dominant
    on many-paths; RL is "no change" on hidden-path from the base, reshaping-dominant after SFT and on
    many-paths; the scaffold distillation is reshaping-dominant by its masses, while section 3's rule
    calls it consolidation (it is mystery run B: it keeps >= 90% of the teacher's success)."""
    from toyenv import widgets
    mdp, base, reps = ablation
    mp = toyenv.make("many-paths")
    mp_base = mp.base_policy()
    sc = toyenv.make("scaffold")
    sc_base = sc.base_policy()
    results = {
        ("hidden-path", "SFT"): reps["SFT alone"]["SFT"].run,
        ("hidden-path", "RL"): reps["RL alone"]["RL"].run,
        ("hidden-path", "RL after SFT"): reps["SFT → RL"]["RL"].run,
        ("many-paths", "SFT"): toyenv.sft(mp_base, toyenv.demonstrations(mp, 16, seed=0), steps=60, seed=0),
        ("many-paths", "RL"): toyenv.rl(mp_base, beta=0.0, steps=60, seed=0),
        ("scaffold", "distillation"): toyenv.distill(sc_base, sc_base, teacher_prompts="hinted", on_policy=0.0,
                                                     steps=100, seed=0, n_samples=16),
    }
    k_grid = np.unique(np.round(2 ** np.arange(0, 12.01, 0.25)).astype(int))
    app = widgets.method_world_chooser(results, ks=k_grid)
    roles = {key: d["role"] for key, d in app.data["precomputed"].items()}
    assert roles == {("hidden-path", "SFT"): "expansion-dominant", ("hidden-path", "RL"): "no change",
                     ("hidden-path", "RL after SFT"): "reshaping-dominant",
                     ("many-paths", "SFT"): "reshaping-dominant", ("many-paths", "RL"): "reshaping-dominant",
                     ("scaffold", "distillation"): "reshaping-dominant"}
    for key, run in results.items():             # the widget's verdict is toyenv.diagnose's role
        assert toyenv.diagnose(run.snapshots[0][1], run.policy, 1e-3).role == roles[key], key
    # SFT's demonstrations are outside the base's support in hidden-path, inside it in many-paths
    assert app.data["precomputed"][("hidden-path", "SFT")]["counts"]["expanded"] == 12
    assert app.data["precomputed"][("many-paths", "SFT")]["counts"]["expanded"] == 0
    # RL from the base never saw a reward; after SFT it sharpens inside the support SFT created
    assert min(results[("hidden-path", "RL")].history["zero_variance_groups"]) == 1.0
    # the distillation run is mystery run B, which the rule of section 3 calls consolidation
    b = mystery_runs()["B"]
    np.testing.assert_array_equal(results[("scaffold", "distillation")].policy.probs(), b.after.probs())
    dg = b.diagnose()
    assert dg.role == "reshaping-dominant" and dg.evidence["retention"] >= 0.9
    assert dominant_role(dg)[0] == "consolidation"


def test_09_mystery_runs_cover_the_roles_and_risks_with_decoys():
    """09 §4-5: seven runs, each with a dominant role and an attrition risk (never "attrition" as a
    role); three roles and all three risks occur (no run is "mixed": the rule's "mixed" cases are the
    edited ones of 09.2). The decoys the notebook promises: a big jump in mean success that hides a
    high attrition risk (a reshaping run), a big expanded mass none of which is useful with a high risk
    (an expansion run), a teacher whose behaviour was not kept (retention 0.19), and a consolidation
    whose masses say reshaping."""
    runs = mystery_runs()
    b = _build()
    got = {k: dominant_role(dg) for k, dg in b["diagnoses"].items()}
    labels = {k: r for k, (r, _) in got.items()}
    risks = {k: q for k, (_, q) in got.items()}
    assert sorted(runs) == list("ABCDEFG")
    assert set(labels.values()) == {"expansion", "reshaping", "consolidation"} and set(labels.values()) <= set(LABELS)
    assert set(risks.values()) == set(RISKS)
    assert all(risks[k] == dg.attrition_risk for k, dg in b["diagnoses"].items())
    ev = {k: dg.evidence for k, dg in b["diagnoses"].items()}
    by_what = {what: k for k, what in b["what"].items()}
    a = ev[by_what["rl-many-paths-shared"]]
    assert got[by_what["rl-many-paths-shared"]] == ("reshaping", "high")
    assert a["success_after"] > 3 * a["success_before"] and a["prompts_down"] == 2
    assert a["pass_large_before"] == pytest.approx(1.0, abs=0.005) and a["pass_large_after"] == pytest.approx(0.79, abs=0.01)
    e = ev[by_what["rlhf-two-skills"]]
    assert got[by_what["rlhf-two-skills"]] == ("expansion", "high")
    assert b["diagnoses"][by_what["rlhf-two-skills"]].role == "expansion-dominant"
    assert e["expanded_mass"] == pytest.approx(0.47, abs=0.01) and e["useful_expanded_mass"] < 0.001
    assert e["prompts_down"] == 6
    f = ev[by_what["distill-scaffold-10-steps"]]
    assert got[by_what["distill-scaffold-10-steps"]] == ("reshaping", "low") and f["retention"] == pytest.approx(0.19, abs=0.01)
    assert f["reshaped_mass"] == pytest.approx(0.19, abs=0.01) and f["expanded_mass"] == pytest.approx(0.01, abs=0.005)
    d = ev[by_what["distill-scaffold"]]
    assert got[by_what["distill-scaffold"]] == ("consolidation", "low") and d["retention"] > 0.99
    assert b["diagnoses"][by_what["distill-scaffold"]].role == "reshaping-dominant"
    c = ev[by_what["sft-hidden-path"]]
    assert got[by_what["sft-hidden-path"]] == ("expansion", "low") and c["correct_expanded"] == 4
    assert c["expanded_mass"] == pytest.approx(0.83, abs=0.01) and c["reshaped_mass"] == pytest.approx(0.22, abs=0.01)
    r = ev[by_what["rl-many-paths-per-state"]]
    assert got[by_what["rl-many-paths-per-state"]] == ("reshaping", "moderate") and r["expanded_mass"] == 0.0
    assert r["reshaped_mass"] == pytest.approx(0.40, abs=0.01) and r["prompts_down"] == 0
    g = ev[by_what["guided-rl-hidden-path"]]
    assert got[by_what["guided-rl-hidden-path"]] == ("expansion", "low") and g["expanded_mass"] > 0.99
    assert g["useful_expanded_mass"] > 0.99
    # only the two distillations had a teacher
    assert sorted(k for k, r in runs.items() if r.teacher is not None) == sorted(
        [by_what["distill-scaffold"], by_what["distill-scaffold-10-steps"]])


def test_09_solution_labels_match_the_rule():
    """The instructor edition's answer to 09.1 is the rule applied to the runs."""
    import nbformat
    import pathlib
    nb = nbformat.read(pathlib.Path(__file__).resolve().parents[1] / "solutions" / "09_pipelines_and_diagnosis.ipynb", 4)
    src = next(c.source for c in nb.cells if c.cell_type == "code" and "def my_labels" in c.source)
    ns = {}
    exec(src, ns)                                   # the cell only defines the function
    b = _build()
    assert ns["my_labels"]() == {k: dominant_role(dg) for k, dg in b["diagnoses"].items()}


@pytest.fixture(scope="module")
def overopt():
    ts = toyenv.make("two-skills")
    base = ts.base_policy()
    rm = toyenv.reward_model(base, n_pairs=256, seed=0)
    run = toyenv.rlhf(base, rm, beta=0.0, steps=200, num_snapshots=21, seed=0)
    return ts, base, rm, run, toyenv.overoptimization(base, rm, run=run)


def test_09_reward_model_is_order_blind_and_prefers_a_wrong_answer(overopt):
    """09 §7: a b and b a score the same; the proxy's favourite completion, b b <eos>, is correct for
    no prompt; c-answers are penalised and ending is rewarded; the RLHF run ends on b b <eos>."""
    ts, base, rm, run, _ = overopt
    score = lambda toks: rm.table[ts.state_index(0, toks), ts.eos]          # noqa: E731
    assert score((0, 1)) == pytest.approx(score((1, 0)), abs=1e-12)
    assert score((1, 1)) == pytest.approx(rm.table[ts.terminal].max(), abs=1e-12)
    assert np.argmax(rm.weights) == rm.names.index("ended") and np.argmin(rm.weights) == rm.names.index("count(c)")
    bb = [ts.state_index(x, (1, 1)) for x in range(ts.num_prompts)]
    assert not ts.correct[bb, ts.eos].any()
    assert np.all(toyenv.trajectory_probs(run.policy)[bb, ts.eos] > 0.99)
    assert rm.pair_accuracy == pytest.approx(0.65, abs=0.01)


def test_09_gold_rises_peaks_and_collapses_while_the_proxy_rises(overopt):
    """09 §7: for the exact optimum, best-of-n and the RLHF run, gold goes 0.33 -> about 0.5 near
    sqrt(KL) ≈ 0.6, then to almost 0; the proxy rises (monotonically along pi*_beta and best-of-n);
    a larger beta means a smaller KL (the brake keeps pi*_beta left of the peak)."""
    *_, rep = overopt
    for fam in ("beta", "bon", "run"):
        pk = peak(rep[fam])
        assert pk["gold_start"] == pytest.approx(0.335, abs=0.01)
        assert 0.47 < pk["gold_peak"] < 0.52 and 0.55 < pk["sqrt_kl"] < 0.7
        assert pk["gold_end"] < 0.01
        assert rep[fam]["proxy"][-1] > rep[fam]["proxy"][0] + 0.5
    for fam in ("beta", "bon"):
        assert np.all(np.diff(rep[fam]["proxy"]) >= -1e-10) and np.all(np.diff(rep[fam]["kl"]) >= -1e-10)
    assert np.all(np.diff(rep["beta"]["beta"]) < 0)               # ordered from large to small beta


# =========================================================================================== 10
def test_10_a_longer_horizon_cannot_be_enumerated():
    with pytest.raises(ValueError, match="22,369,620 states"):
        toyenv.make("hidden-path", horizon=12)
    assert len(str(toyenv.tree_size(1, 50_000, 100))) == 466


def test_10_detectability_numbers():
    """10 §2-3: eps_k(8192, 0.95) = 3.66e-4; the hidden path is seen in 8192 samples 3% of the time and
    needs about 750,000 samples per prompt; the budget table."""
    assert estimate.detectable_mass(8192, 0.95) == pytest.approx(3.66e-4, rel=2e-3)
    assert estimate.detection_prob(4e-6, 8192) == pytest.approx(0.032, abs=0.001)
    assert estimate.samples_to_detect(4e-6, 0.95) == 748_932
    assert [estimate.samples_to_detect(e, 0.95) for e in (1e-2, 1e-3, 1e-4)] == [299, 2995, 29956]
    assert toyenv.success_prob(toyenv.make("hidden-path").base_policy()) == pytest.approx(4e-6)


def test_10_sampled_support_is_reliable_down_to_about_10_over_n():
    """10 §5: a handful of errors among hundreds of pairs at eps ≈ 10/n; the estimate is flat below
    1/(4n) (the smallest non-zero value is 1/(n T(y)) >= 1/(4n)); ~10 of 1e5 samples start with h, no
    correct completion (0.4 expected)."""
    hp = toyenv.make("hidden-path")
    base = hp.base_policy()
    occ = toyenv.occupancy(base)
    for n, eps in [(100_000, 1e-4), (10_000, 1e-3)]:
        d = estimate.sampled_occupancy(base, n, seed=0)
        exact, est = toyenv.effective_support(occ, eps), d >= eps
        assert (exact ^ est).sum() <= 0.1 * exact.sum() and (exact ^ est).sum() <= 15
        assert d[d > 0].min() >= 1 / (n * hp.horizon) - 1e-15
    d = estimate.sampled_occupancy(base, 100, seed=0)
    assert (d >= 1e-4).sum() == (d >= 1 / 400).sum() == (d > 0).sum()
    s, a = toyenv.sample_pairs(base, 100_000, seed=0)
    starts_h = (hp.tokens[s, 0] == hp.info["hidden_token"]) | ((hp.depth[s] == 0) & (a == hp.info["hidden_token"]))
    assert 5 <= starts_h.sum() <= 20
    assert hp.correct[s, a].sum() == 0 and 100_000 * 4e-6 == pytest.approx(0.4)


def test_10_good_turing_sizes_the_unseen_mass_but_the_answer_stays_unseen():
    hp = toyenv.make("hidden-path")
    base = hp.base_policy()
    errors = []
    for n in [10, 100, 1_000, 10_000]:
        s, a = estimate.sample_per_prompt(base, n, seed=1)
        gt, mm = estimate.good_turing(hp, s, a).mean(), estimate.missing_mass(base, s, a).mean()
        errors.append(abs(gt - mm))
        # the correct answers stay unseen, except once, by luck, at 10,000 per prompt (4% per prompt)
        assert hp.correct[s, a].sum() == (1 if n == 10_000 else 0)
    assert errors[0] < 0.15 and errors[1] < 0.05 and max(errors[2:]) < 0.002
    assert estimate.detection_prob(4e-6, 10_000) == pytest.approx(0.04, abs=0.001)
    assert hp.num_trajectories // hp.num_prompts == 341


def test_10_estimator_numbers():
    """10 §6: 0.4765 vs 0.5160; the unbiased estimator spreads more; the plug-in's bias is largest
    near p ≈ 0.1 for n = 40, k = 10."""
    assert estimate.estimator_mean(40, 0.07, 10, "plugin") == pytest.approx(0.4765, abs=5e-5)
    assert estimate.estimator_mean(40, 0.07, 10) == pytest.approx(1 - 0.93**10, abs=1e-12)
    assert estimate.estimator_std(40, 0.07, 10) > estimate.estimator_std(40, 0.07, 10, "plugin")
    ps = np.linspace(0.002, 0.6, 150)
    bias = [estimate.estimator_mean(40, p, 10, "plugin") - (1 - (1 - p) ** 10) for p in ps]
    assert 0.05 < ps[int(np.argmin(bias))] < 0.15


def test_10_crossover_seen_by_sampling_but_not_the_tail():
    """10 §7: with 256 samples per prompt the estimated crossover lies between k = 4 and 8, like the
    exact one (k ≈ 6.2); the RL policy's rare prompts (p ≈ 6.7e-4) show no correct sample with
    probability 0.84, so the k = 256 estimate understates the exact value; the exact RL curve keeps
    rising past k ≈ 1000."""
    mp = toyenv.make("many-paths")
    base = mp.base_policy()
    rl = toyenv.rl(base, beta=0.0, steps=200, seed=0).policy
    rare = list(mp.info["rare_prompts"])
    p = toyenv.success_prob(rl)[rare]
    np.testing.assert_allclose(p, 6.71e-4, rtol=0.01)
    assert (1 - p[0]) ** 256 == pytest.approx(0.842, abs=0.002)
    ks = 2 ** np.arange(0, 9)
    gap_exact = toyenv.pass_at_k(base, ks) - toyenv.pass_at_k(rl, ks)
    gap_est = estimate.sampled_pass_at_k(base, 256, ks, seed=0) - estimate.sampled_pass_at_k(rl, 256, ks, seed=0)
    for gap in (gap_exact, gap_est):
        assert np.all(gap[ks <= 4] < 0) and np.all(gap[ks >= 8] > 0)
    from toyenv.plots import crossovers
    (k_cross, _, _), = crossovers(np.arange(1, 65), toyenv.pass_at_k(base, np.arange(1, 65)),
                                  toyenv.pass_at_k(rl, np.arange(1, 65)))
    assert 6.0 < k_cross < 6.5
    assert estimate.sampled_pass_at_k(rl, 256, 256, seed=0) < toyenv.pass_at_k(rl, 256) - 0.02
    assert toyenv.pass_at_k(rl, 256) < toyenv.pass_at_k(rl, 1000) < toyenv.pass_at_k(rl, 4096) - 0.05
    assert toyenv.pass_at_k(rl, 4096) > 0.95


# =========================================================================================== 09 §9
# Handoffs (Table 5, §6.4): the notebook's calls, toyenv.analysis.handoffs at its defaults.
@pytest.fixture(scope="module")
def ho():
    from toyenv.analysis import handoffs
    from toyenv.methods.fit import single_thread
    with single_thread():
        return dict(pref=handoffs.sft_then_dpo(), spec=handoffs.specialists(), gi=handoffs.gradient_interference(),
                    ev=handoffs.evaluator_inconsistency(), cal=handoffs.calibration(), mm=handoffs.stage_mismatch())


def test_09_9_1_sft_then_dpo(ho):
    """09 §9.1: SFT expansion-dominant (0.000 -> 0.035, 12 pairs enter, pass@256 1.00); DPO on its 7
    pairs reshaping-dominant (no pair enters, 0.035 -> 0.47); DPO from the base forms no pair (every
    candidate fails) and is "no change"."""
    r = ho["pref"]
    sft, dpo = r.report["SFT"], r.report["DPO"]
    assert sft.diagnosis.role == "expansion-dominant" and int(sft.expanded.sum()) == 12
    assert r.success["base"] < 5e-4 and r.success["after SFT"] == pytest.approx(0.035, abs=0.0005)
    assert r.pass_large["after SFT"] > 0.995
    assert r.pairs == {"after SFT": 7, "base": 0}
    assert dpo.diagnosis.role == "reshaping-dominant" and int(dpo.expanded.sum()) == 0
    assert r.success["after SFT->DPO"] == pytest.approx(0.47, abs=0.005)
    assert r.roles["DPO alone"] == "no change" and r.success["DPO alone"] == r.success["base"]
    mdp = toyenv.make("hidden-path")                  # "every candidate fails": base success ~ 4e-6 per prompt
    assert toyenv.success_prob(mdp.base_policy()).max() < 1e-4


def test_09_9_2_specialists_distilled_keep_995_merged_93_94(ho):
    """09 §9.2: each specialist 0.99 on its family, < 0.01 on the other; the student keeps 99.5% of both
    at KL 0.001 and every pair and completion of the routed specialists (eps 1e-3), adding none; the
    merge keeps 93-94% at KL 0.22, loses 9 of the 44 completions, adds 24 pairs, and still beats either
    specialist on the family it was not trained for."""
    s = ho["spec"]
    fs = s.family_success
    assert fs["specialist A"][0] == pytest.approx(0.99, abs=0.005) and fs["specialist B"][1] == pytest.approx(0.99, abs=0.005)
    assert fs["specialist A"][1] < 0.01 and fs["specialist B"][0] < 0.01
    assert s.retention["student"] == pytest.approx([0.995, 0.995], abs=0.0015)
    assert s.kl_to_teacher["student"] == pytest.approx(0.001, abs=0.0005)
    assert all(0.925 <= v < 0.945 for v in s.retention["merged"])
    assert s.kl_to_teacher["merged"] == pytest.approx(0.22, abs=0.005)
    router = s.policies["router"]
    st = toyenv.support_change(router, s.policies["student"], 1e-3).counts()
    mg = toyenv.support_change(router, s.policies["merged"], 1e-3).counts()
    assert (st["shared"], st["attrited"], st["traj_shared"], st["traj_attrited"], st["expanded"]) == (24, 0, 44, 0, 0)
    assert (mg["shared"], mg["attrited"], mg["traj_shared"], mg["traj_attrited"], mg["expanded"]) == (24, 0, 35, 9, 24)
    assert min(fs["merged"]) > max(fs["specialist A"][1], fs["specialist B"][0])


def test_09_9_3_gradient_interference(ho):
    """09 §9.3: transformer: RL on A takes B from 0.90 to 0.14, below the base's 0.33 (more than the
    whole gain), cosine -0.44; tabular: B keeps exactly 0.79, cosine exactly 0."""
    tf, tab = ho["gi"].rows["transformer"], ho["gi"].rows["tabular"]
    assert tf["b_base"] == pytest.approx(0.33, abs=0.005) and tf["b_after_sft"] == pytest.approx(0.90, abs=0.005)
    assert tf["b_after_rl"] == pytest.approx(0.14, abs=0.005) and tf["b_after_rl"] < tf["b_base"]
    assert tf["gain_lost"] > 1.0 and tf["a_after_rl"] > 0.95
    assert tf["cosine"] == pytest.approx(-0.44, abs=0.005)
    assert tab["b_after_rl"] == tab["b_after_sft"] and tab["b_after_sft"] == pytest.approx(0.79, abs=0.005)
    assert tab["cosine"] == 0.0


def test_09_9_4_evaluator_inconsistency(ho):
    """09 §9.4: section 7's reward model; it orders only 60% of verifier-separable base pairs like the
    verifier and ranks a wrong completion top on every prompt; verifier -> proxy: gold 0.99 -> 0.003
    while the proxy climbs 0.87 -> 1.25; proxy -> verifier: gold 0.002, then 0.36 against 0.99 for the
    verifier stage alone."""
    ev = ho["ev"]
    ts = toyenv.make("two-skills")
    rm = toyenv.reward_model(ts.base_policy(), n_pairs=256, seed=0)            # section 7's cell
    np.testing.assert_array_equal(ev.reward_model.weights, rm.weights)
    assert 1 - ev.disagreement["base"] == pytest.approx(0.60, abs=0.005) and ev.top_wrong == 1.0
    vp, pv, v = ev.orders["verifier->proxy"], ev.orders["proxy->verifier"], ev.orders["verifier only"]
    assert vp["gold"][1] == pytest.approx(0.99, abs=0.005) and vp["gold"][2] == pytest.approx(0.003, abs=0.001)
    assert vp["proxy"][1] == pytest.approx(0.87, abs=0.005) and vp["proxy"][2] == pytest.approx(1.25, abs=0.005)
    assert pv["gold"][1] == pytest.approx(0.002, abs=0.001) and pv["gold"][2] == pytest.approx(0.36, abs=0.005)
    assert v["gold"][1] == pytest.approx(0.99, abs=0.005)


def test_09_9_5_calibration_too_weak_costs_most_narrow_costs_diversity(ho):
    """09 §9.5: too weak (0 or 10 SFT updates): RL ends below 0.01, > 99% of its groups without signal;
    100 updates: 0.997. Many-paths: success > 0.99 and pass@256 1.000 everywhere; RL after one-answer
    SFT keeps 16 (20 updates) or 8 = one per prompt (200 updates) of the 20 correct answers, after
    every-answer SFT all 20 at both strengths; RL never brings back answers SFT squeezed out."""
    rows = {(r["demos"], r["sft_steps"]): r for r in ho["cal"].rows}
    for n in (0, 10):
        assert rows[("hidden path", n)]["success_rl"] < 0.01 and rows[("hidden path", n)]["zero_variance"] > 0.99
    assert rows[("hidden path", 100)]["success_rl"] == pytest.approx(0.997, abs=0.0005)
    mp = toyenv.make("many-paths")
    n_correct = int((mp.rewards > 0).sum())
    assert n_correct == 20 and mp.num_prompts == 8
    many = [rows[(d, n)] for d in ("one answer", "every answer") for n in (20, 200)]
    for r in many:
        assert r["success_rl"] > 0.99 and r["pass_large_rl"] > 0.9995
        assert r["distinct_rl"] <= r["distinct_sft"]
    assert rows[("one answer", 20)]["distinct_rl"] == 16 and rows[("one answer", 200)]["distinct_rl"] == mp.num_prompts
    assert rows[("every answer", 20)]["distinct_rl"] == rows[("every answer", 200)]["distinct_rl"] == n_correct


def test_09_9_6_stage_mismatch(ho):
    """09 §9.6: all of the mismatched stage's tokens on states the deployed learner never visits, bare
    success exactly unchanged at 0.019, KL exactly 0, hinted 0.66 -> 0.99; matched: bare 0.02 -> 0.95,
    2% of the learner's occupancy on states no demonstration covers."""
    mm, ok = ho["mm"].rows["mismatched"], ho["mm"].rows["matched"]
    assert mm["data_off_learner"] == 1.0
    assert mm["bare_success"][1] == mm["bare_success"][0] == pytest.approx(0.019, abs=0.0005)
    assert mm["kl_to_start"] == 0.0
    assert mm["hinted_success"][0] == pytest.approx(0.66, abs=0.005) and mm["hinted_success"][1] == pytest.approx(0.99, abs=0.005)
    assert ok["bare_success"][0] == pytest.approx(0.02, abs=0.005) and ok["bare_success"][1] == pytest.approx(0.95, abs=0.005)
    assert ok["learner_off_data"] == pytest.approx(0.02, abs=0.005)

def test_09_exercise_09_2_verdict():
    """09 exercise 09.2: GRPO (beta = 0, 60 updates) on many-paths is reshaping-dominant with a high
    attrition risk: nothing expands, pass@1 rises, two prompts fall and pass@256 falls."""
    from toyenv.course.checks.nb09 import predicted_run_diagnosis
    dg = predicted_run_diagnosis()
    e = dg.evidence
    assert dominant_role(dg) == ("reshaping", "high")
    assert e["expanded_mass"] < 1e-3 and e["success_after"] > e["success_before"] + 0.4
    assert e["prompts_down"] == 2 and e["pass_large_after"] < e["pass_large_before"] - 0.1


def _sampled_training(mdp, n, updates=60, lr=5.0):
    """Notebook 10 §5's loop with the reference step (autograd through sequence_log_prob)."""
    import torch
    from toyenv.core.passes import exact_policy_gradient
    from toyenv.core.policies import sequence_log_prob

    def step(mdp, logits, states, actions, lr):
        pi = toyenv.TabularPolicy(mdp, logits)
        lp = sequence_log_prob(mdp, pi.log_probs(), states, actions)
        r = torch.as_tensor(mdp.rewards[states, actions], dtype=lp.dtype)
        (-((r - r.mean()) * lp).mean()).backward()
        return logits - lr * pi.logits.grad.numpy()

    logits = toyenv.TabularPolicy.from_probs(mdp, mdp.base_policy().probs()).logits.detach().numpy()
    start, success = logits.copy(), []
    for u in range(updates + 1):
        pi = toyenv.TabularPolicy(mdp, logits)
        success.append(float(mdp.prompt_weights @ toyenv.success_prob(pi)))
        if u == updates:
            break
        if n is None:
            logits = logits + lr * exact_policy_gradient(mdp, pi.probs())
        else:
            s, a = toyenv.sample_pairs(pi, n, seed=u)
            logits = step(mdp, logits, s, a, lr)
    return np.array(success), logits, start


def test_10_sampled_reinforce_tracks_the_exact_gradient_and_sees_nothing_on_the_hidden_path():
    """10 §5 (exercise 10.2): with 64 samples per update the sampled run stays close to the exact
    gradient; with 8 it lags; on the hidden path 60 x 64 samples hold no correct completion and the
    update is exactly zero."""
    mp = toyenv.make("many-paths")
    exact, _, _ = _sampled_training(mp, None)
    s64, _, _ = _sampled_training(mp, 64)
    s8, _, _ = _sampled_training(mp, 8)
    assert exact[0] == pytest.approx(0.227, abs=1e-3) and exact[-1] > 0.85
    assert np.abs(s64 - exact).max() < 0.05
    assert s8[-1] < s64[-1] and s8[-1] < exact[-1]
    hp = toyenv.make("hidden-path")
    s_hp, logits, start = _sampled_training(hp, 64)
    np.testing.assert_array_equal(logits, start)
    assert np.all(s_hp == s_hp[0])
