"""Pipelines and the role diagnosis (survey §3.5 Table 2, §3.6, §6.4)."""
import numpy as np
import pytest

import toyenv
from toyenv.analysis.pipeline import Diagnosis, PipelineReport, diagnose, pipeline


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield



@pytest.fixture(scope="module")
def hidden():
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 16, seed=0)
    report = pipeline(base, [("SFT", lambda p: toyenv.sft(p, demos, steps=60, seed=0)),
                             {"method": "rl", "name": "RL", "beta": 0.0, "steps": 100, "seed": 0}])
    return mdp, base, report


def test_sft_then_rl_handoffs(hidden):
    """Hidden path: SFT is expansion-dominant and its expanded set holds the hidden first action at
    every prompt; RL after it is reshaping-dominant and raises success (§3.3.2, §3.3.3)."""
    mdp, base, rep = hidden
    assert isinstance(rep, PipelineReport) and [h.name for h in rep.handoffs] == ["SFT", "RL"]
    sft, rl = rep["SFT"], rep["RL"]
    assert sft.diagnosis.role == "expansion-dominant"
    assert np.all(sft.expanded[mdp.roots, mdp.info["hidden_token"]])
    assert sft.diagnosis.evidence["correct_expanded"] == mdp.num_prompts
    assert rl.diagnosis.role == "reshaping-dominant"
    assert rl.expanded.sum() == 0
    assert sft.success[0] < 1e-4 < sft.success[1] < rl.success[1]
    assert rl.success[1] > 0.95
    # handoff numbers are the package's exact quantities
    assert rl.kl_to_previous == pytest.approx(toyenv.kl(rl.after, sft.after), rel=1e-12)
    assert rl.kl_to_base == pytest.approx(toyenv.kl(rl.after, base), rel=1e-12)
    assert rep.policy is rl.after and rep.policies[0] is base and rep.runs[1] is rl.run
    for k, (b, a) in rl.pass_at_k.items():
        assert a == pytest.approx(toyenv.pass_at_k(rl.after, k), abs=1e-12)
        assert b == pytest.approx(toyenv.pass_at_k(sft.after, k), abs=1e-12)
    np.testing.assert_array_equal(base.probs(), mdp.base_policy().probs())     # input untouched
    text = str(rep)
    assert "SFT" in text and "expansion-dominant" in text and "pass@256" in text
    assert len(rep.table()) == 2 and rep.table()[0]["role"] == "expansion-dominant"


def test_rl_alone_cannot_expand(hidden):
    mdp, base, _ = hidden
    rep = pipeline(base, [{"method": "rl", "beta": 0.0, "steps": 100, "seed": 0}])
    assert rep[0].success[1] < 1e-3
    assert not np.any(rep[0].expanded[mdp.roots, mdp.info["hidden_token"]])


def test_diagnose_flags_attrition_in_many_paths():
    """many-paths: RL on the prompt-agnostic base raises pass@1, lowers pass@256 and the rare
    prompts: reshaping-dominant with high attrition risk. With one row per state (the negative
    control) no prompt gets worse, so the risk is not high."""
    mdp = toyenv.make("many-paths")
    base = mdp.base_policy()
    after = toyenv.rl(base, beta=0.0, exact=True, steps=200).policy
    dg = diagnose(base, after, 1e-3)
    assert isinstance(dg, Diagnosis)
    assert dg.role == "reshaping-dominant" and dg.attrition_risk == "high"
    e = dg.evidence
    assert e["prompts_down"] == len(mdp.info["rare_prompts"])
    assert e["pass_large_after"] < e["pass_large_before"] and e["success_after"] > e["success_before"]
    assert e["correct_attrited"] >= 1 and e["useful_attrited_mass"] > 0.02
    assert "pass@256 fell" in str(dg)
    per_state = toyenv.TabularPolicy.from_probs(mdp, base.probs())
    ctrl = diagnose(per_state, toyenv.rl(per_state, beta=0.0, exact=True, steps=200).policy, 1e-3)
    assert ctrl.evidence["prompts_down"] == 0 and ctrl.attrition_risk != "high"


def test_diagnose_evidence_matches_support_change():
    mdp = toyenv.make("two-skills")
    a, b = toyenv.TabularPolicy(mdp, seed=0), toyenv.TabularPolicy(mdp, seed=1)
    dg = diagnose(a, b, 1e-2)
    ch = toyenv.support_change(a, b, 1e-2)
    for k in ("expanded_mass", "reshaped_mass", "attrited_mass"):
        assert dg.evidence[k] == pytest.approx(getattr(ch, k), abs=1e-14)
    assert dg.role == ch.role
    assert dg.evidence["kl_after_before"] == pytest.approx(toyenv.kl(b, a), rel=1e-12)
    np.testing.assert_allclose(dg.per_prompt, [toyenv.success_prob(a), toyenv.success_prob(b)], atol=1e-14)
    same = diagnose(a, a.copy(), 1e-3)
    assert same.role == "no change" and same.attrition_risk == "low" and same.reasons == []


def test_diagnose_reports_consolidation_against_a_teacher():
    mdp = toyenv.make("scaffold")
    base = mdp.base_policy()
    run = toyenv.distill(base, base, teacher_prompts="hinted", exact=True, on_policy=0.0, steps=150)
    dg = diagnose(base, run.policy, 1e-3, teacher=base, teacher_prompts="hinted")
    assert dg.evidence["retention"] > 0.98
    assert dg.evidence["kl_to_teacher"] < 1e-2
    assert "consolidation" in str(dg)


def test_pipeline_errors_name_the_fix():
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    with pytest.raises(ValueError, match="a method of toyenv.METHODS"):
        pipeline(base, [{"method": "nonsense"}])
    with pytest.raises(TypeError, match="stage 0"):
        pipeline(base, [42])
    with pytest.raises(TypeError, match="must return a toyenv Run or a policy"):
        pipeline(base, [("bad", lambda p: 3)])
    # a stage may return a policy directly
    rep = pipeline(base, [("identity", lambda p: p.copy())])
    assert rep[0].diagnosis.role == "no change"


def test_useful_expansion_separates_sft_from_proxy_hacking(hidden):
    """Expansion by the numbers can be useful (SFT imports the hidden correct path) or not (RL on
    an order-blind learned reward pushes mass onto wrong answers it never saw): the evidence says which."""
    _, _, rep = hidden
    e = rep["SFT"].diagnosis.evidence
    assert e["useful_expanded_mass"] > 0.5 * e["expanded_mass"]
    mdp = toyenv.make("two-skills")
    base = mdp.base_policy()
    run = toyenv.rlhf(base, steps=100, seed=0)
    dg = diagnose(base, run.policy)
    assert dg.evidence["expanded_mass"] > 0.1
    assert dg.evidence["useful_expanded_mass"] < 0.1 * dg.evidence["expanded_mass"]
    assert dg.attrition_risk == "high"
