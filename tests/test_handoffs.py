"""The survey's map of stages as exact experiments (toyenv.analysis.handoffs): Table 5's pipelines,
§6.4's handoff failures, §3.4's four forms of consolidation.

Each experiment runs once per module at its defaults; the tests assert the directions the toy shows
(explained in each function's docstring), that the numbers are the package's exact quantities, that
the same seed gives the same numbers, and that bad input is named."""
import numpy as np
import pytest

import toyenv
from toyenv.analysis import handoffs as H
from toyenv.analysis.forgetting import family_demos, family_success, family_task
from toyenv.analysis.pipeline import PipelineReport


@pytest.fixture(autouse=True)
def _one_torch_thread():
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield


@pytest.fixture(scope="module")
def dpo_result():
    return H.sft_then_dpo()


@pytest.fixture(scope="module")
def spec():
    return H.specialists()


@pytest.fixture(scope="module")
def interference():
    return H.gradient_interference()


@pytest.fixture(scope="module")
def evaluators():
    return H.evaluator_inconsistency()


@pytest.fixture(scope="module")
def calib():
    return H.calibration()


@pytest.fixture(scope="module")
def mismatch():
    return H.stage_mismatch()


@pytest.fixture(scope="module")
def consolidation():
    return H.consolidation_forms()


# =========================================================================== Table 5
def test_sft_then_dpo_expands_then_reshapes(dpo_result):
    """SFT makes the hidden answer reachable (expansion), DPO on the SFT policy's pairs reshapes and
    raises success; DPO from the base gets no pairs and changes nothing."""
    r = dpo_result
    assert isinstance(r.report, PipelineReport) and [h.name for h in r.report.handoffs] == ["SFT", "DPO"]
    assert r.roles == {"SFT": "expansion-dominant", "DPO": "reshaping-dominant", "DPO alone": "no change"}
    assert r.pairs["base"] == 0 and r.pairs["after SFT"] > 0
    s = r.success
    assert s["base"] < 1e-3 and s["DPO alone"] == s["base"]
    assert s["after SFT"] < s["after SFT->DPO"]
    assert s["after SFT->DPO"] > 5 * s["after SFT"]              # measured 0.035 -> 0.47
    assert r.pass_large["after SFT"] > 0.99 > 0.01 > r.pass_large["base"]
    assert r.report["DPO"].success == pytest.approx((s["after SFT"], s["after SFT->DPO"]), abs=1e-12)
    assert "SFT -> DPO" in str(r)


def test_specialists_distilled_keep_their_gains_merge_keeps_most(spec):
    """Each specialist is strong on its family and (shared parameters) collapses on the other; the
    distilled student keeps ≥ 98% of both; the parameter average keeps less, yet far more than either
    specialist on its other family; the student sits much closer to the routed specialists."""
    fs = spec.family_success
    assert fs["specialist A"][0] > 0.95 and fs["specialist A"][1] < 0.05
    assert fs["specialist B"][1] > 0.95 and fs["specialist B"][0] < 0.05
    assert min(spec.retention["student"]) > 0.98
    assert min(spec.retention["merged"]) < min(spec.retention["student"])
    assert min(fs["merged"]) > 0.5 > max(fs["specialist A"][1], fs["specialist B"][0])
    assert spec.kl_to_teacher["student"] < 0.1 * spec.kl_to_teacher["merged"]
    for name in ("specialist A", "specialist B"):
        rep = spec.reports[name]
        assert [h.name[:3] for h in rep.handoffs] == ["SFT", "RL "]
        assert rep.policy is spec.policies[name]
    assert spec.reports["distill"].policy is spec.policies["student"]
    np.testing.assert_allclose(fs["student"], family_success(spec.policies["student"]), atol=1e-12)
    assert spec.kl_to_teacher["student"] == pytest.approx(toyenv.kl(spec.policies["student"],
                                                                     spec.policies["router"]), rel=1e-12)


def test_family_router_and_average_parameters():
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    a = toyenv.TabularPolicy(mdp, seed=1)
    router = H.family_router(mdp, [base, a])
    fam = np.asarray(mdp.info["family"])[mdp.prompt_of]
    np.testing.assert_allclose(router.probs()[fam == 0], base.probs()[fam == 0], atol=1e-12)
    np.testing.assert_allclose(router.probs()[fam == 1], a.probs()[fam == 1], atol=1e-12)
    m = H.average_parameters(toyenv.TabularPolicy(mdp, seed=2), a, weight=1.0)
    np.testing.assert_allclose(m.probs(), a.probs(), atol=1e-12)
    with pytest.raises(ValueError, match="one policy per task family"):
        H.family_router(mdp, [base])
    with pytest.raises(ValueError, match="one architecture"):
        H.average_parameters(a, toyenv.TransformerPolicy(mdp, seed=0, d_model=8, n_heads=2))
    with pytest.raises(ValueError, match="weight"):
        H.average_parameters(a, a, weight=1.5)


# =========================================================================== §6.4
def test_gradient_interference_needs_shared_parameters(interference):
    """Transformer: RL on A erases more than SFT's whole gain on B (B ends below the base) and the two
    stages' gradients point apart. Tabular: B keeps its gain exactly, cosine exactly 0."""
    tf, tab = interference.rows["transformer"], interference.rows["tabular"]
    for r in (tf, tab):
        assert r["b_after_sft"] > r["b_base"] + 0.3 and r["a_after_rl"] > 0.9
    assert tf["gain_lost"] > 1.0 and tf["b_after_rl"] < tf["b_base"]
    assert tf["cosine"] < -0.2
    assert tab["gain_lost"] == 0.0 and tab["b_after_rl"] == tab["b_after_sft"]
    assert tab["cosine"] == 0.0


def test_gradient_cosine_is_exactly_zero_for_disjoint_tabular_objectives():
    mdp = toyenv.make("two-skills")
    assert H.gradient_cosine(mdp.base_policy(), family_demos(mdp, 1), family_task(mdp, 0)) == 0.0
    # the same family: SFT on A and RL on A pull the same way
    assert H.gradient_cosine(mdp.base_policy(), family_demos(mdp, 0), family_task(mdp, 0)) > 0.5


def test_evaluator_inconsistency_costs_in_both_orders(evaluators):
    """The bag-of-tokens proxy disagrees with the verifier on a large share of base pairs and its top
    answer is wrong on every prompt; a proxy stage after a verifier stage throws away nearly all the
    gold gain; a proxy stage before a sampled verifier stage leaves it far short of the verifier
    alone."""
    r = evaluators
    assert r.disagreement["base"] > 0.3 and r.top_wrong == 1.0
    vp, pv, v = r.orders["verifier->proxy"], r.orders["proxy->verifier"], r.orders["verifier only"]
    assert vp["gold"][1] > 0.95 and vp["gold"][2] < 0.05
    assert vp["proxy"][2] > vp["proxy"][1]                        # the proxy stage did its job
    assert pv["gold"][1] < 0.05 and pv["gold"][2] < v["gold"][1] - 0.3
    assert r.cost["gold_lost_in_stage_2"] > 0.9 and r.cost["gold_short_of_verifier_only"] > 0.3
    assert r.reports["verifier->proxy"]["proxy RL"].diagnosis.attrition_risk == "high"


def test_calibration_weak_sft_starves_rl_narrow_sft_costs_diversity(calib):
    rows = {(r["world"], r["demos"], r["sft_steps"]): r for r in calib.rows}
    weak0, weak10, ok = (rows[("hidden-path", "hidden path", n)] for n in (0, 10, 100))
    assert weak0["success_rl"] < 0.01 and weak10["success_rl"] < 0.01 and ok["success_rl"] > 0.95
    assert weak0["zero_variance"] > 0.99 > ok["zero_variance"]
    n20, n200 = rows[("many-paths", "one answer", 20)], rows[("many-paths", "one answer", 200)]
    b20, b200 = rows[("many-paths", "every answer", 20)], rows[("many-paths", "every answer", 200)]
    # too narrow and too strong: fewer correct answers survive RL; broad SFT keeps all of them
    assert n200["distinct_rl"] < n20["distinct_rl"] < b20["distinct_rl"] == b200["distinct_rl"]
    assert n200["distinct_rl"] == toyenv.make("many-paths").num_prompts    # one answer per prompt
    # ... while accuracy and pass@256 do not show the cost
    for r in (n20, n200, b20, b200):
        assert r["success_rl"] > 0.99 and r["pass_large_rl"] > 0.999
    assert "too weak" in str(calib)


def test_stage_mismatch_data_where_the_learner_never_goes(mismatch):
    mm, ok = mismatch.rows["mismatched"], mismatch.rows["matched"]
    assert mm["data_off_learner"] == 1.0 and ok["data_off_learner"] == 0.0
    assert mm["learner_off_data"] == pytest.approx(1.0, abs=1e-12) and 0.0 < ok["learner_off_data"] < 0.1    # slips stay uncovered
    assert mm["bare_success"][1] == mm["bare_success"][0] and mm["kl_to_start"] == 0.0
    assert mm["hinted_success"][1] > mm["hinted_success"][0] + 0.2
    assert ok["bare_success"][0] < 0.05 and ok["bare_success"][1] > 0.9


# =========================================================================== §3.4
def test_consolidation_four_forms(consolidation):
    rows = consolidation.rows
    assert {"retention", "transfer", "amortisation"} <= set(rows)
    comp = [k for k in rows if k.startswith("compression")]
    assert len(comp) == 2
    ret = rows["retention"]
    assert ret["student_before"] < ret["teacher_success"] - 0.15 and ret["retention"] > 0.98
    assert ret["other_after"] > ret["other_before"] - 0.02          # B kept while A comes back
    for k in ("transfer", "amortisation"):
        assert rows[k]["student_before"] < 0.5 * rows[k]["teacher_success"] and rows[k]["retention"] > 0.95
    big, small = rows[comp[0]], rows[comp[1]]
    assert big["teacher_params"] > 20 * big["student_params"] > 20 * small["student_params"]
    assert big["retention"] > 0.97 and small["retention"] > 0.9
    assert small["kl_to_teacher"] > 3 * big["kl_to_teacher"] > 3 * rows["transfer"]["kl_to_teacher"]
    assert "amortisation" in str(consolidation)


# =========================================================================== determinism, validation
def test_same_seed_same_numbers(dpo_result, mismatch, interference):
    again = H.sft_then_dpo()
    assert again.success == dpo_result.success and again.pairs == dpo_result.pairs
    assert H.stage_mismatch().rows == mismatch.rows
    assert H.gradient_interference(kinds="transformer").rows["transformer"] == interference.rows["transformer"]
    a = H.calibration(weak_steps=(10,), narrow_steps=(5,), rl_steps=10, seed=3)
    b = H.calibration(weak_steps=(10,), narrow_steps=(5,), rl_steps=10, seed=3)
    assert a.rows == b.rows
    e1 = H.evaluator_inconsistency(verifier_steps=5, proxy_steps=5, seed=2)
    e2 = H.evaluator_inconsistency(verifier_steps=5, proxy_steps=5, seed=2)
    assert e1.orders == e2.orders and e1.disagreement == e2.disagreement
    s1 = H.specialists(sft_steps=2, rl_steps=2, distill_steps=2, seed=1)
    s2 = H.specialists(sft_steps=2, rl_steps=2, distill_steps=2, seed=1)
    assert s1.family_success == s2.family_success and s1.kl_to_teacher == s2.kl_to_teacher
    c1 = H.consolidation_forms(steps=2, amortise_steps=2, compress_steps=2, seed=1)
    c2 = H.consolidation_forms(steps=2, amortise_steps=2, compress_steps=2, seed=1)
    assert c1.rows == c2.rows


@pytest.mark.parametrize("call, exc, match", [
    (lambda: H.sft_then_dpo(sft_steps=0), ValueError, "sft_steps"),
    (lambda: H.sft_then_dpo(seed=-1), ValueError, "seed"),
    (lambda: H.sft_then_dpo(eps=0), ValueError, "eps"),
    (lambda: H.specialists(on_policy=2), ValueError, "on_policy"),
    (lambda: H.specialists(rl_steps=1.5), ValueError, "rl_steps"),
    (lambda: H.gradient_interference(kinds=("lstm",)), ValueError, "transformer"),
    (lambda: H.gradient_interference(kinds=()), ValueError, "kinds is empty"),
    (lambda: H.evaluator_inconsistency(proxy_beta=-1), ValueError, "proxy_beta"),
    (lambda: H.evaluator_inconsistency(n_pairs=0), ValueError, "n_pairs"),
    (lambda: H.calibration(weak_steps=(-1,)), ValueError, "weak_steps"),
    (lambda: H.stage_mismatch(toyenv.make("two-skills").base_policy()), ValueError, "scaffold"),
    (lambda: H.stage_mismatch("base"), TypeError, "policy"),
    (lambda: H.consolidation_forms(compress_sizes=[dict(width=3)]), ValueError, "d_model"),
    (lambda: H.consolidation_forms(steps="10"), TypeError, "steps"),
    (lambda: H.gradient_cosine(toyenv.make("two-skills").base_policy(), [], None), ValueError, "demos is empty"),
])
def test_bad_input_is_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
