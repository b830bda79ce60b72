"""Every number and verdict notebook 11 states, asserted on the package (same worlds, seeds, numbers).

Each test names the notebook section and the sentence it backs; a change of a world or a default
breaks a test here before it silently breaks the prose.
"""
import numpy as np
import pytest

import toyenv
from toyenv.course.checks.nb11 import read_case

EPS = 1e-3


@pytest.fixture(autouse=True)
def _one_torch_thread():
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield


@pytest.fixture(scope="module")
def course():
    from toyenv.methods.fit import single_thread
    with single_thread():
        worlds = {name: toyenv.make(name) for name in toyenv.presets()}
        base = {name: mdp.base_policy() for name, mdp in worlds.items()}
        hp, mp = worlds["hidden-path"], worlds["many-paths"]
        cases = toyenv.borderline_cases(seed=0)
        own = {
            ("hidden-path", "SFT"): toyenv.sft(base["hidden-path"], toyenv.demonstrations(hp, 16, seed=0), steps=60, seed=0),
            ("many-paths", "SFT"): toyenv.sft(base["many-paths"], toyenv.demonstrations(mp, 16, seed=0), steps=60, seed=0),
            ("hidden-path", "GRPO"): toyenv.rl(base["hidden-path"], beta=0.0, steps=60, seed=0),
            ("many-paths", "GRPO, process reward"): toyenv.rl(base["many-paths"], beta=0.0, steps=60, process=True, seed=0),
            ("hidden-path", "interleaved SFT + RL"): toyenv.interleaved(
                base["hidden-path"], toyenv.demonstrations(hp, 16, seed=0), steps=100, seed=0),
            ("two-skills", "RLHF"): toyenv.rlhf(base["two-skills"], steps=100, seed=0),
        }
        dg = {key: toyenv.diagnose(base[key[0]], run.policy, EPS) for key, run in own.items()}
    return dict(worlds=worlds, base=base, cases=cases, own=own, dg=dg)


# =========================================================================== §1
def test_11_1_interfaces_repeat_across_provenances():
    """§1: teacher next-token distributions with teacher rollouts (off-policy) and with student
    rollouts (on-policy); a verifier as an offline filter (rft) and as an on-policy reward (rl/*)."""
    M = toyenv.METHODS
    assert M["distill/off-policy"]["interface"] == M["distill/on-policy"]["interface"] == "teacher next-token distributions"
    assert M["distill/off-policy"]["provenance"].startswith("off-policy")
    assert M["distill/on-policy"]["provenance"].startswith("on-policy")
    assert "verifier" in M["rft"]["interface"] and M["rft"]["provenance"].startswith("off-policy")
    assert "verifier" in M["rl/grpo"]["interface"] and M["rl/grpo"]["provenance"] == "on-policy"
    assert all("role" not in row for row in M.values())          # the third layer is measured, not stored


# =========================================================================== §2 Table 6
def test_11_2_sft_and_preferences(course):
    """§2: SFT on hidden-path expansion-dominant (0.82 expanded); offline and online DPO reshape with no
    expanded mass, generator gap 3.4 vs 0.05 nats, success 0.73 vs 0.98."""
    e = course["dg"][("hidden-path", "SFT")]
    assert e.role == "expansion-dominant" and round(e.evidence["expanded_mass"], 2) == 0.82
    pref = course["cases"]["preference"]
    off, on = pref["offline DPO"], pref["online DPO"]
    for a in (off, on):
        assert a.role == "reshaping-dominant" and a.expanded_mass == 0.0
    assert round(off.generator_gap, 1) == 3.4 and round(on.generator_gap, 2) == 0.05
    assert round(off.success, 2) == 0.73 and round(on.success, 2) == 0.98


def test_11_2_filter_vs_rl_risk(course):
    """§2 / §5: the filter keeps pass@256 at 1 (risk low); RL reaches 0.75 vs 0.69 but pass@256 0.81, risk high."""
    v = course["cases"]["verifier"]
    f, r = v["rejection sampling"], v["on-policy RL"]
    assert f.role == r.role == "reshaping-dominant"
    assert f.attrition_risk == "low" and round(f.pass_at_k[256], 3) == 1.0
    assert r.attrition_risk == "high" and round(r.pass_at_k[256], 2) == 0.81
    assert round(r.success, 2) == 0.75 and round(f.success, 2) == 0.69
    assert r.generator_gap == 0.0


def test_11_2_rlhf_process_hybrid(course):
    """§2: RLHF expansion-dominant, risk high, success 0.33 -> 0.14; process guidance reshaping with a high
    risk; the one-stage hybrid expansion-dominant."""
    d = course["dg"][("two-skills", "RLHF")]
    assert d.role == "expansion-dominant" and d.attrition_risk == "high"
    assert round(d.evidence["success_before"], 2) == 0.33 and round(d.evidence["success_after"], 2) == 0.14
    p = course["dg"][("many-paths", "GRPO, process reward")]
    assert p.role == "reshaping-dominant" and p.attrition_risk == "high"
    assert course["dg"][("hidden-path", "interleaved SFT + RL")].role == "expansion-dominant"


def test_11_2_self_improvement_and_teacher(course):
    """§2 / §5: STaR reshapes with a high risk, rare prompts 0.08 -> 0.001; teacher transfer keeps all of
    the teacher's success (retention about 1) while the masses alone read reshaping."""
    s = course["cases"]["self-improvement"]
    star = s["STaR rounds"]
    assert star.role == "reshaping-dominant" and star.attrition_risk == "high"
    rare = s.headline["rare_success_by_round"]
    assert round(rare[0], 2) == 0.08 and round(rare[-1], 3) == 0.001
    assert s["one cached batch"].attrition_risk == "low"
    t = course["cases"]["teacher"]
    for a in t.arms.values():
        assert a.role == "reshaping-dominant" and a.extra["retention"] >= 0.99
        assert a.diagnosis.evidence["reshaped_mass"] >= toyenv.ROLE_RATIO * a.diagnosis.evidence["expanded_mass"]


def test_11_2_figure_reading(course):
    """§2 figure: off-policy runs at both ends (SFT high, the filter and offline DPO on the floor)."""
    assert course["dg"][("hidden-path", "SFT")].evidence["expanded_mass"] > 0.8
    assert course["cases"]["verifier"]["rejection sampling"].expanded_mass == 0.0
    assert course["cases"]["preference"]["offline DPO"].expanded_mass == 0.0


# =========================================================================== §4
def _outside(mdp, demos, policy):
    support = toyenv.effective_support(policy, EPS)
    pairs = []
    for x, tokens in demos:
        s = mdp.roots[x]
        for a in tokens:
            pairs.append(support[s, a])
            s = mdp.child[s, a]
            if s < 0:
                break
    return 1.0 - float(np.mean(pairs))


def test_11_4_one_method_two_roles(course):
    """§4: SFT expansion-dominant on hidden-path (100% of demonstrated pairs outside E_eps), reshaping-
    dominant on many-paths (0%); GRPO 'no change' on hidden-path, reshaping with high risk on many-paths."""
    w, b = course["worlds"], course["base"]
    assert _outside(w["hidden-path"], toyenv.demonstrations(w["hidden-path"], 16, seed=0), b["hidden-path"]) == 1.0
    assert _outside(w["many-paths"], toyenv.demonstrations(w["many-paths"], 16, seed=0), b["many-paths"]) == 0.0
    mp = course["dg"][("many-paths", "SFT")]
    assert mp.role == "reshaping-dominant" and mp.evidence["expanded_mass"] == 0.0
    assert course["dg"][("hidden-path", "GRPO")].role == "no change"
    rl = course["cases"]["verifier"]["on-policy RL"]
    assert rl.role == "reshaping-dominant" and rl.attrition_risk == "high"


# =========================================================================== §5 Table 7
def test_11_5_search_then_transfer(course):
    """§5: the searcher is 'mixed' (0.37 expanded vs 0.28 reshaped); the students keep 93% and 99%."""
    s = course["cases"]["search"]
    searcher = next(a for a in s.arms.values() if a.run is None)
    assert searcher.role == "mixed"
    assert round(searcher.expanded_mass, 2) == 0.37 and round(searcher.reshaped_mass, 2) == 0.28
    assert round(s.headline["retention_traces"], 2) == 0.93 and round(s.headline["retention_own"], 2) == 0.99


def test_11_5_every_case_keeps_one_role_across_arms(course):
    """§5 / takeaways: in the toy, provenance changes the risk and success, not the role verdict."""
    for case in course["cases"].values():
        assert len({a.role for a in case.arms.values()}) == 1


def test_11_7_reference_reading_of_the_cases(course):
    """§7: the off-policy arm of each case, from its generator gap."""
    got = {}
    for name, case in course["cases"].items():
        gaps = {a.name: a.generator_gap for a in case.arms.values() if a.run is not None}
        got[name] = read_case(gaps)
    assert got == {"preference": ("offline DPO", "online DPO"),
                   "verifier": ("rejection sampling", "on-policy RL"),
                   "teacher": ("teacher traces", "teacher correction"),
                   "self-improvement": ("one cached batch", "STaR rounds"),
                   "search": ("student: searcher traces", "student: on its own rollouts")}


def test_11_exercise_11_1_process_reward_changes_role_with_the_world():
    """11 exercise 11.1 (and 06 §5): GRPO with the exact process reward is reshaping-dominant on
    many-paths (60 updates) and expansion-dominant on the rare hidden path (p_hidden = 1e-2, 200)."""
    from toyenv.course.checks.nb11 import process_run_verdicts
    v = process_run_verdicts()
    (role, risk), e = v["many-paths"]
    assert role == "reshaping" and risk == "high" and e["expanded_mass"] < 1e-3
    (rare_role, _), _ = v["hidden-path, p_hidden = 1e-2"]
    assert rare_role == "expansion"
