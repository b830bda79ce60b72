"""Table 7's borderline cases (survey §6.5.5): online DPO's provenance, and the headline of each
side-by-side experiment in ``toyenv.analysis.borderline`` (one world, one evaluator, provenance
varied), with determinism and input validation.

Where the toy does not show Table 7's typical reading (row 3's role split), the test asserts what
does hold, as the function's docstring explains.
"""
import numpy as np
import pytest

import toyenv
from toyenv.analysis import borderline as bl
from toyenv.core.tree import check_same_world
from toyenv.methods import METHODS, online_dpo


# =========================================================================== online DPO (the new method)
@pytest.fixture(scope="module")
def scaffold():
    mdp = toyenv.make("scaffold")
    return mdp, mdp.base_policy()


def test_online_dpo_pairs_come_from_the_current_learner(scaffold):
    """Provenance: the pairs of refresh k are exactly preference_pairs of the learner at step
    k·refresh (seed + 1000·k), not of the start policy; every update records its generator."""
    mdp, base = scaffold
    run = online_dpo(base, refresh=5, steps=20, n_prompts=16, seed=3, snapshot_steps=range(21))
    assert run.method == "dpo/online"
    assert [s for s, _ in run.artifacts["pairs"]] == [0, 5, 10, 15]
    assert run.artifacts["generator_steps"] == [5 * (t // 5) for t in range(20)]
    for k, (step, pairs) in enumerate(run.artifacts["pairs"]):
        assert pairs == toyenv.preference_pairs(run.at(step), 16, seed=3 + 1000 * k)
    # after the learner has moved, its pairs differ from the start policy's with the same seed
    later = [p for s, p in run.artifacts["pairs"] if s > 0]
    assert any(p != toyenv.preference_pairs(base, 16, seed=3 + 1000 * (k + 1)) for k, p in enumerate(later))
    assert run.config["n_pairs"] == [len(p) for _, p in run.artifacts["pairs"]]


def test_online_dpo_with_one_refresh_is_offline_dpo(scaffold):
    """refresh >= steps draws one batch from the start policy: exactly dpo with the same seed."""
    _, base = scaffold
    a = online_dpo(base, refresh=30, steps=30, n_prompts=40, seed=1)
    b = toyenv.dpo(base, steps=30, n_prompts=40, seed=1)
    np.testing.assert_allclose(a.policy.probs(), b.policy.probs(), rtol=0, atol=1e-12)


def test_online_dpo_is_deterministic_and_leaves_its_input(scaffold):
    _, base = scaffold
    before = base.probs().copy()
    a, b = (online_dpo(base, refresh=4, steps=12, seed=2) for _ in range(2))
    assert a.history == b.history and a.artifacts["pairs"] == b.artifacts["pairs"]
    c = online_dpo(base, refresh=4, steps=12, seed=5)
    assert c.artifacts["pairs"] != a.artifacts["pairs"]
    np.testing.assert_array_equal(base.probs(), before)


def test_online_dpo_row_in_methods_table():
    row = METHODS["dpo/online"]
    assert row["function"] is online_dpo and row["interface"] == METHODS["dpo"]["interface"]
    assert "on-policy" in row["provenance"] and METHODS["dpo"]["provenance"] == "off-policy"
    assert "§4.2" in row["survey"] and "Table 7" in row["survey"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(refresh=0), ValueError, "refresh must be an integer >= 1"),
    (dict(refresh=2.5), ValueError, "refresh must be an integer"),
    (dict(refresh="10"), TypeError, "refresh must be an integer"),
    (dict(beta=0), ValueError, "beta must be a finite number > 0"),
    (dict(n_prompts=0), ValueError, "n_prompts"),
    (dict(n_candidates=1), ValueError, "n_candidates"),
    (dict(reward=np.zeros((2, 2))), ValueError, "reward must be an array"),
    (dict(lr=-1), ValueError, "lr must be"),
    (dict(batch_size=4), TypeError, "unknown option"),
])
def test_online_dpo_names_bad_input(scaffold, kwargs, error, match):
    _, base = scaffold
    with pytest.raises(error, match=match):
        online_dpo(base, steps=2, **kwargs)


def test_online_dpo_rejects_a_non_policy():
    with pytest.raises(TypeError, match="expected a policy"):
        online_dpo("base")


# =========================================================================== the five cases
@pytest.fixture(scope="module")
def cases():
    return {name: fn(seed=0) for name, fn in bl.CASES.items()}


def test_every_case_is_one_world_one_evaluator_with_arms_read_alike(cases):
    assert list(cases) == ["preference", "verifier", "teacher", "self-improvement", "search"]
    for name, case in cases.items():
        assert isinstance(case, bl.Borderline) and "Table 7" in case.survey and case.evaluator
        assert len(case.arms) >= 2
        for arm in case.arms.values():
            check_same_world(case.start.mdp, arm.policy.mdp)            # one world (raises otherwise)
            assert arm.method in METHODS
            row = arm.row()
            for key in ("success", "pass@1", "pass@256", "expanded_mass", "reshaped_mass", "attrited_mass",
                        "kl_to_start", "generator_gap"):
                assert np.isfinite(row[key]), (name, arm.name, key)
            assert row["role"] in ("expansion-dominant", "reshaping-dominant", "mixed", "no change")
            assert arm.success == pytest.approx(float(case.start.mdp.prompt_weights @ toyenv.success_prob(arm.policy)))
            assert arm.kl_to_start == pytest.approx(toyenv.kl(arm.policy, case.start))
        assert case.table() and case.summary().count("generator:") == len(case.arms)


def test_case1_online_refresh_buys_more_pairs_on_the_learner_and_ends_higher(cases):
    """Same loss, verifier, updates and labelling budget: the offline batch (start policy, 2%
    success) holds few informative pairs; the online learner's candidates differ more often as it
    improves. Both reshape (no mass enters new support); online is far closer to on-policy."""
    c = cases["preference"]
    off, on = c["offline DPO"], c["online DPO"]
    h = c.headline
    assert h["pairs_online"] > 2 * h["pairs_offline"] > 0
    assert on.generator_gap < 0.1 < 1.0 < off.generator_gap
    assert on.success > off.success + 0.1
    assert off.role == on.role == "reshaping-dominant" and off.expanded_mass == on.expanded_mass == 0.0
    assert len(on.extra["n_pairs"]) == 10 and sum(on.extra["n_pairs"]) == h["pairs_online"]


def test_case2_same_verifier_filter_keeps_coverage_rl_squeezes_the_rare_answer(cases):
    """Rejection sampling (fixed batch from the start) converges to that batch: the rare prompts keep
    their share. On-policy RL amplifies its own majority: higher success, pass@256 below the start."""
    c = cases["verifier"]
    f, r = c["rejection sampling"], c["on-policy RL"]
    h = c.headline
    assert r.generator_gap == 0.0 and f.generator_gap > 1.0
    assert r.success > f.success > c.start_success
    assert h["pass@256_rl"] < h["pass@256_start"] - 0.1 and h["pass@256_filter"] > h["pass@256_start"] - 1e-6
    assert h["rare_success_rl"] < 0.01 < h["rare_success_start"] <= h["rare_success_filter"]
    assert (f.attrition_risk, r.attrition_risk) == ("low", "high")
    assert f.role == r.role == "reshaping-dominant"


def test_case3_provenance_moves_where_the_student_is_trained_not_the_verdict(cases):
    """Table 7's role split does not show with a tabular student that can copy the teacher: both
    arms end at the teacher with the same verdict at every checkpoint. What differs: the traces arm
    trains on the teacher's path states, the correction arm on its own (generator gap 0)."""
    c = cases["teacher"]
    tr, co = c["teacher traces"], c["teacher correction"]
    h = c.headline
    assert co.generator_gap == 0.0 < tr.generator_gap
    assert h["path_weight_traces"] > h["path_weight_correction"]
    assert h["path_weight_first_traces"] > h["path_weight_first_correction"] + 0.3
    assert h["roles_traces"] == h["roles_correction"]
    assert h["kl_between_arms"] < 1e-3
    assert tr.extra["retention"] > 0.95 and co.extra["retention"] > 0.95       # both consolidate


def test_case3_verdict_is_set_by_eps_not_by_provenance():
    a = bl.traces_vs_correction(eps=1e-2, checkpoints=(), steps=60)
    assert a["teacher traces"].role == a["teacher correction"].role == "expansion-dominant"
    b = bl.traces_vs_correction(eps=1e-3, checkpoints=(), steps=60)
    assert b["teacher traces"].role == b["teacher correction"].role == "reshaping-dominant"


def test_case4_rounds_confirm_themselves_the_cached_batch_does_not(cases):
    """STaR rounds on the prompt-agnostic many-paths policy squeeze the rare prompts' only answer
    round after round (self-confirmation); one cached batch from the start keeps them."""
    c = cases["self-improvement"]
    star, cache = c["STaR rounds"], c["one cached batch"]
    h = c.headline
    by_round = h["rare_success_by_round"]
    assert len(by_round) == 5 and np.all(np.diff(by_round[1:]) < 0) and by_round[-1] < 0.01
    assert h["rare_success_cached"] >= h["rare_success_start"] > 0.05
    assert h["pass@256_rounds"] < 0.9 < h["pass@256_cached"]
    assert (star.attrition_risk, cache.attrition_risk) == ("high", "low")
    assert 0 < star.generator_gap < cache.generator_gap
    assert star.extra["round_success"].shape == (5, c.start.mdp.num_prompts)


def test_case5_search_induces_then_transfer_keeps_it(cases):
    """Best-of-1024 brings the hidden answers into support; students that sample once keep most of
    the searcher's success and every correct answer in its support."""
    c = cases["search"]
    s = c["searcher (best-of-1024)"]
    h = c.headline
    assert s.success > 100 * h["success_start"]
    assert s.diagnosis.evidence["correct_expanded"] == h["correct_in_searcher_support"] > 0
    assert s.expanded_mass > 0.1
    for name in ("student: searcher traces", "student: on its own rollouts"):
        st = c[name]
        assert 0.9 < st.extra["retention"] <= 1.0 + 1e-9 and st.success <= s.success + 1e-9
        assert st.extra["lost"] == 0 and st.extra["kept"] == h["correct_in_searcher_support"]
    assert c["student: on its own rollouts"].generator_gap == 0.0 < c["student: searcher traces"].generator_gap


def test_case5_a_prompt_blind_student_loses_what_search_found():
    """Table 5's failure: many-paths' student cannot condition on the prompt, so the rare prompts the
    searcher solved are lost in transfer."""
    c = bl.search_then_transfer("many-paths", n=16, steps=60)
    rare = list(c.start.mdp.info["rare_prompts"])
    s, st = c["searcher (best-of-16)"], c["student: searcher traces"]
    assert st.extra["retention"] < 0.8
    assert s.per_prompt[rare].mean() > 0.5 > st.per_prompt[rare].mean()


# =========================================================================== determinism, validation
def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b = bl.filter_vs_rl(steps=20, seed=4), bl.filter_vs_rl(steps=20, seed=4)
    assert a.table() == b.table()
    c = bl.filter_vs_rl(steps=20, seed=5)
    assert c.table() != a.table()
    d, e = bl.offline_vs_online_dpo(steps=20, seed=1), bl.offline_vs_online_dpo(steps=20, seed=1)
    assert d.table() == e.table() and d["online DPO"].extra["n_pairs"] == e["online DPO"].extra["n_pairs"]


def test_generator_gap_needs_a_snapshot_per_step(scaffold):
    _, base = scaffold
    run = toyenv.dpo(base, steps=50, n_prompts=16, seed=0)          # default 21 snapshots: not every step
    with pytest.raises(ValueError, match="snapshot at every step"):
        bl.generator_gap(run, lambda t: base.probs())


@pytest.mark.parametrize("call, error, match", [
    (lambda: bl.offline_vs_online_dpo("no-such-world"), ValueError, "unknown preset"),
    (lambda: bl.offline_vs_online_dpo(3), TypeError, "world must be a preset name"),
    (lambda: bl.offline_vs_online_dpo(refresh=0), ValueError, "refresh"),
    (lambda: bl.offline_vs_online_dpo(eps=0), ValueError, "eps must lie in"),
    (lambda: bl.filter_vs_rl(group_size=1), ValueError, "group_size"),
    (lambda: bl.filter_vs_rl(beta=-1), ValueError, "beta"),
    (lambda: bl.filter_vs_rl(ks=()), ValueError, "ks is empty"),
    (lambda: bl.traces_vs_correction(checkpoints=(500,)), ValueError, "checkpoints must lie in"),
    (lambda: bl.traces_vs_correction(teacher="t"), TypeError, "expected a policy"),
    (lambda: bl.self_improvement_cache(rounds=0), ValueError, "rounds"),
    (lambda: bl.search_then_transfer(n=0), ValueError, "n must be"),
    (lambda: bl.search_then_transfer(policy="p"), TypeError, "expected a policy"),
    (lambda: bl.filter_vs_rl(toyenv.make("many-paths"), world_options={"num_rare": 1}), ValueError,
     "world_options apply to a preset name"),
])
def test_cases_name_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
