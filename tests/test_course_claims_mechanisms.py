"""Claims of the sections added for the survey rows R1 (§3.3.5), M5 (§4.3), D1 (§7.1.1) in notebook 03,
M10 (§5.2) in notebook 06 and the open problems of Table 8 (§7.2.2, §7.2.3, §7.2.5, §7.2.6) in
notebook 11 — on the configurations the notebooks use."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import toyenv
from toyenv.analysis.costs import cost, interfaces_on_one_problem
from toyenv.analysis.filtering import filtering_risks
from toyenv.analysis.mechanisms import capability_boundary, local_expansion, process_mismatch, raise_action
from toyenv.methods import anchored_sft


# ----------------------------------------------------------------------------- 03: R1 (§3.3.5)
def test_03_one_local_action_expands_whole_subtrees():
    mdp = toyenv.make("hidden-path", horizon=3)
    base = mdp.base_policy()
    r = local_expansion(base, mdp.info["hidden_token"], 0.5, eps=1e-3)
    assert r["rows_changed"] == mdp.num_prompts == 4 and r["pairs_changed"] == 20
    assert r["changed_states_already_supported"]              # the edited roots were in the state support
    assert (r["new_states"], r["expanded_pairs"], r["new_answers"], r["new_correct_answers"]) == (20, 104, 84, 4)
    assert r["success_before"] == pytest.approx(4e-6) and r["success_after"] == pytest.approx(0.02)
    # nothing but the root rows moved
    moved = np.abs(r["after"].probs() - base.probs()).max(1) > 0
    assert set(np.nonzero(moved)[0]) == set(mdp.roots.tolist())


def test_raise_action_keeps_the_other_ratios_and_validates():
    mdp = toyenv.make("hidden-path", horizon=3)
    base = mdp.base_policy()
    H = mdp.info["hidden_token"]
    p0, p1 = base.probs(), raise_action(base, H, 0.5).probs()
    root = mdp.roots[0]
    others = np.arange(mdp.vocab_size) != H
    assert p1[root, H] == pytest.approx(0.5)
    assert np.allclose(p1[root, others] / p1[root, others].sum(), p0[root, others] / p0[root, others].sum())
    with pytest.raises(ValueError, match="prob"):
        raise_action(base, H, 1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        raise_action(base, 99, 0.5)


# ----------------------------------------------------------------------------- 03: M5 (§4.3)
@functools.lru_cache(maxsize=1)
def _risks():
    mp = toyenv.make("many-paths")
    return filtering_risks(mp.base_policy(), n_samples=256, steps=30, seed=0)


def test_03_a_self_generated_fixed_batch_goes_stale():
    gap = _risks()["gap"]
    assert gap[0] == 0.0
    assert gap[10] == pytest.approx(0.569, abs=1e-3) and gap[30] == pytest.approx(1.680, abs=1e-3)
    assert gap[0] < gap[10] < gap[30]


def test_03_over_narrow_filtering_attrits_correct_alternatives():
    r = _risks()
    rows, start = r["rows"], r["start"]
    assert start["correct_answers"] == 20 and rows["verifier"]["correct_answers"] == 20
    assert rows["over-narrow"]["kept_correct"] == 1.0
    assert rows["over-narrow"]["correct_answers"] == 8
    assert rows["over-narrow"]["pass1"] < rows["verifier"]["pass1"]
    assert rows["verifier"]["pass1"] == pytest.approx(0.634, abs=1e-3)
    assert rows["over-narrow"]["pass1"] == pytest.approx(0.560, abs=1e-3)


def test_03_evaluator_mismatch_keeps_wrong_traces_and_loses_the_gain():
    rows, start = _risks()["rows"], _risks()["start"]
    assert rows["verifier"]["kept"] == 50 and rows["verifier"]["kept_correct"] == 1.0
    assert rows["prompt-blind"]["kept"] == 85 and rows["prompt-blind"]["kept_correct"] == pytest.approx(0.588, abs=1e-3)
    assert rows["format only"]["kept"] == 208 and rows["format only"]["kept_correct"] == pytest.approx(0.24, abs=0.005)
    assert rows["format only"]["pass1"] == pytest.approx(0.237, abs=1e-3)
    assert start["pass1"] == pytest.approx(0.227, abs=1e-3)
    assert rows["format only"]["pass1"] - start["pass1"] < 0.02 < rows["verifier"]["pass1"] - start["pass1"]
    assert rows["prompt-blind"]["pass1"] < rows["verifier"]["pass1"]
    assert rows["prompt-blind"]["correct_answers"] == rows["format only"]["correct_answers"] == 20


def test_rejection_sampling_with_the_verifier_as_filter_is_the_default():
    mp = toyenv.make("many-paths")
    base = mp.base_policy()
    a = toyenv.rejection_sampling(base, n_samples=64, steps=5, seed=0)
    b = toyenv.rejection_sampling(base, n_samples=64, steps=5, seed=0, reward=mp.rewards)
    assert a.config["kept"] == b.config["kept"] and np.allclose(a.policy.probs(), b.policy.probs())


# ----------------------------------------------------------------------------- 03: D1 (§7.1.1)
@functools.lru_cache(maxsize=1)
def _anchored():
    mdp = toyenv.make("hidden-path", horizon=3)
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    runs = {0.0: toyenv.sft(base, demos, steps=100, seed=0),
            **{b: anchored_sft(base, demos, beta=b, steps=100, seed=0) for b in (0.3, 1.0)}}
    return base, runs


def test_03_anchored_sft_keeps_the_expansion_and_cuts_the_attrition():
    base, runs = _anchored()
    ch = {b: toyenv.support_change(base, r.policy, eps=1e-3) for b, r in runs.items()}
    assert [int(c.expanded.sum()) for c in ch.values()] == [12, 12, 12]
    assert [int(c.attrited.sum()) for c in ch.values()] == [172, 30, 7]
    kls = [toyenv.kl(r.policy, base) for r in runs.values()]
    succ = [toyenv.pass_at_k(r.policy, 1) for r in runs.values()]
    assert kls[0] > kls[1] > kls[2] and succ[0] > succ[1] > succ[2]      # the trade: less drift, less success
    assert np.round(succ, 2).tolist() == [0.94, 0.28, 0.1]


def test_anchored_sft_with_beta_zero_is_sft_and_is_registered():
    mdp = toyenv.make("hidden-path", horizon=3)
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    a = toyenv.sft(base, demos, steps=10, seed=0).policy.probs()
    b = anchored_sft(base, demos, beta=0.0, steps=10, seed=0).policy.probs()
    assert np.allclose(a, b, atol=1e-10)
    row = toyenv.METHODS["sft/anchored"]
    assert row["function"] is anchored_sft and row["provenance"] == "off-policy" and row["survey"] == "§7.1.1"
    with pytest.raises(ValueError, match="beta"):
        anchored_sft(base, demos, beta=-1.0)


def test_anchored_sft_loss_is_sft_plus_beta_times_the_exact_kl():
    import torch
    from toyenv.methods import token_targets
    from toyenv.methods.losses import anchored_sft_loss, sft_loss
    mdp = toyenv.make("many-paths")
    ref = mdp.base_policy()
    pi = toyenv.TabularPolicy(mdp, seed=1)
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    targets = token_targets(mdp, *mdp.encode(demos))
    with torch.no_grad():
        lp, ref_lp = pi.log_probs(), ref.log_probs()
        loss, info = anchored_sft_loss(mdp, lp, targets, ref_lp, beta=0.7)
        ce, _ = sft_loss(lp, targets)
    assert info["kl_to_anchor"] == pytest.approx(toyenv.kl(pi, ref), rel=1e-9)
    assert float(loss) == pytest.approx(float(ce) + 0.7 * toyenv.kl(pi, ref), rel=1e-9)


# ----------------------------------------------------------------------------- 06: M10 (§5.2)
@functools.lru_cache(maxsize=1)
def _mismatch():
    return process_mismatch(steps=100, seeds=(0,))


def test_06_a_biased_process_reward_amplifies_the_wrong_step():
    r = _mismatch()
    assert r["true_value_of_wrong_prefix"] == 0.0 and r["base_wrong_step_prob"] == pytest.approx(0.45)
    arms = {k: v[0] for k, v in r["arms"].items()}
    fitted, biased = arms["process reward (fitted PRM)"], arms["process reward (PRM overrates a wrong step)"]
    outcome = arms["outcome reward"]
    assert fitted["success"] > 0.99 and fitted["wrong_step_prob"] < 0.01
    assert biased["success"] < 1e-3 and biased["wrong_step_prob"] > 0.99
    assert outcome["success"] == pytest.approx(0.4956, abs=1e-4)
    assert biased["success"] < outcome["success"] < fitted["success"]


@pytest.mark.parametrize("value", [0.1, 0.5])
def test_06_the_amplification_does_not_depend_on_the_exact_overrating(value):
    r = process_mismatch(steps=100, seeds=(1,), wrong=((0,), value))
    biased = r["arms"]["process reward (PRM overrates a wrong step)"][0]
    assert biased["wrong_step_prob"] > 0.9 and biased["success"] < 0.01


def test_rl_process_values_validation_and_exact_values_recover_true():
    mdp = toyenv.make("hidden-path", p_hidden=1e-2)
    base = mdp.base_policy()
    with pytest.raises(ValueError, match="shape"):
        toyenv.rl(base, process=np.zeros(3), steps=1)
    run = toyenv.rl(base, beta=0.0, process=np.zeros(mdp.num_states), steps=2, seed=0)
    assert run.method == "rl/process" and run.config["process"] == "fixed values"


# ----------------------------------------------------------------------------- 11: O2, O5 (§7.2.2, §7.2.5)
@functools.lru_cache(maxsize=1)
def _interfaces():
    return interfaces_on_one_problem("scaffold", steps=60, seed=0)


def test_11_four_interfaces_on_one_problem():
    r = _interfaces()
    assert r["start_success"] == pytest.approx(0.0189, abs=1e-4)
    rows = r["rows"]
    succ = {k.split(" (")[0]: round(v["success"], 3) for k, v in rows.items()}
    assert succ == {"token targets": 0.959, "preferences": 0.459, "verifier reward": 0.985,
                    "teacher distributions": 0.646}
    assert {v["role"] for v in rows.values()} == {"reshaping-dominant"}
    costs = {k.split(" (")[0]: v["cost"] for k, v in rows.items()}
    assert costs["token targets"]["external_examples"] == 16 and costs["token targets"]["learner_samples"] == 0
    assert costs["preferences"]["learner_samples"] == costs["preferences"]["evaluator_calls"] == 256
    assert costs["verifier reward"]["learner_samples"] == 60 * 64 == 3840
    assert costs["teacher distributions"]["teacher_samples"] == 60 * 16 == 960
    assert all(c["updates"] == 60 for c in costs.values())


def _count_samples(monkeypatch):
    """Count every completion the methods sample (learner or teacher)."""
    import importlib
    data, dist, rlmod, rlhf = (importlib.import_module(f"toyenv.methods.{m}") for m in ("data", "distill", "rl", "rlhf"))
    counter = {"n": 0}

    def wrap(module, name):
        fn = getattr(module, name)

        def counted(*args, **kw):
            out = fn(*args, **kw)
            counter["n"] += len(out.s) if hasattr(out, "s") else len(out[0])
            return out
        monkeypatch.setattr(module, name, counted)
    for module in (data, dist, rlhf):
        wrap(module, "sample_pairs_from_probs")
    wrap(rlmod, "rollout_batch")
    return counter


@pytest.mark.parametrize("make_run, final_pass", [
    (lambda p, d: toyenv.rl(p, beta=0.0, steps=7, seed=0), 64),
    (lambda p, d: toyenv.rl(p, beta=0.0, steps=7, seed=0, epochs=3, group_size=4, n_prompts_per_step=3), 0),
    (lambda p, d: toyenv.rl(p, beta=0.0, steps=6, seed=0, epochs=3, group_size=4, n_prompts_per_step=3), 12),
    (lambda p, d: toyenv.rejection_sampling(p, n_samples=100, steps=3, seed=0), 0),
    (lambda p, d: toyenv.self_improve(p, rounds=3, n_samples=50, steps_per_round=2, seed=0), 0),
    (lambda p, d: toyenv.dpo(p, beta=0.1, steps=3, seed=0, n_prompts=20), 0),
    (lambda p, d: toyenv.online_dpo(p, beta=0.1, steps=7, refresh=3, n_prompts=10, seed=0), 0),
    (lambda p, d: toyenv.distill(p, toyenv.kl_optimum(p, 0.5), on_policy=0.25, n_samples=12, steps=5, seed=0), 12),
    (lambda p, d: toyenv.interleaved(p, d, mix=0.5, steps=4, seed=0), 64),
    (lambda p, d: toyenv.rlhf(p, steps=3, n_pairs=32, seed=0), 64),
    (lambda p, d: toyenv.sft(p, d, steps=3, seed=0), 0),
], ids=["grpo", "ppo-epochs", "ppo-epochs-final", "rft", "star", "dpo", "online-dpo", "distill", "interleaved",
        "rlhf", "sft"])
def test_cost_counts_every_sample_the_method_draws(monkeypatch, make_run, final_pass):
    """Every sample drawn is counted, except the batch the loop's last pass draws to log the final
    policy's loss (``final_pass``): it updates nothing, so ``cost`` leaves it out."""
    mp = toyenv.make("many-paths")
    base = mp.base_policy()
    demos = toyenv.demonstrations(mp, 8, seed=0)
    counter = _count_samples(monkeypatch)
    run = make_run(base, demos)
    c = cost(run)
    assert c["learner_samples"] + c["teacher_samples"] + final_pass == counter["n"]
    assert c["updates"] == run.history["step"][-1]


def test_cost_of_a_pipeline_is_the_sum_of_its_stages():
    mdp = toyenv.make("hidden-path", horizon=3)
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    rep = toyenv.pipeline(base, [("SFT", lambda p: toyenv.sft(p, demos, steps=5, seed=0)),
                                 ("RL", lambda p: toyenv.rl(p, beta=0.0, steps=4, seed=0))])
    c = cost(rep)
    assert c["updates"] == 9 and c["external_examples"] == 8 and c["learner_samples"] == 4 * 64
    assert cost(toyenv.rl(base, exact=True, steps=2))["exact"] is True
    with pytest.raises(TypeError, match="Run"):
        cost("not a run")


# ----------------------------------------------------------------------------- 11: O3, O5, O6 on Table 7's cases
@functools.lru_cache(maxsize=1)
def _cases():
    return toyenv.borderline_cases(seed=0)


def test_11_costs_of_the_table7_arms():
    cases = _cases()
    c = {(n, a.name): cost(a.run) for n, case in cases.items() for a in case.arms.values() if a.run is not None}
    assert c[("preference", "offline DPO")]["learner_samples"] == c[("preference", "online DPO")]["learner_samples"] == 640
    assert c[("verifier", "rejection sampling")]["evaluator_calls"] == c[("verifier", "on-policy RL")]["evaluator_calls"] == 6400
    assert c[("teacher", "teacher traces")]["exact"] and c[("search", "student: searcher traces")]["exact"]
    searcher = next(a for a in cases["search"].arms.values() if a.run is None)
    assert searcher.extra["samples_per_answer"] == 1024
    assert cases["preference"]["online DPO"].success > cases["preference"]["offline DPO"].success + 0.2


def test_11_what_transfers_from_the_searcher():
    s = _cases()["search"]
    searcher = next(a for a in s.arms.values() if a.run is None)
    traces, own = s["student: searcher traces"], s["student: on its own rollouts"]
    ok = s.start.mdp.correct
    for a in (traces, own):
        ch = toyenv.support_change(searcher.policy, a.policy, 1e-3)
        assert int((ch.traj_shared & ok).sum()) == 4 and int((ch.traj_attrited & ok).sum()) == 0
        assert int(ch.attrited.sum()) == 0
    assert round(traces.diagnosis.evidence["retention"], 2) == 0.93 and round(own.diagnosis.evidence["retention"], 2) == 0.99
    assert round(toyenv.kl(traces.policy, searcher.policy), 3) == 0.043 and toyenv.kl(own.policy, searcher.policy) < 5e-4


def test_11_injection_versus_elicitation():
    cases = _cases()
    v = cases["verifier"]
    rft = capability_boundary(v.start, v["rejection sampling"].policy, 1e-2)
    rl = capability_boundary(v.start, v["on-policy RL"].policy, 1e-2)
    assert (rft["boundary_start"], rft["inside"], rft["injected"], rft["lost"]) == (20, 20, 0, 0)
    assert (rl["inside"], rl["injected"], rl["lost"]) == (18, 0, 2)
    hp = toyenv.make("hidden-path")
    base = hp.base_policy()
    sft = toyenv.sft(base, toyenv.demonstrations(hp, 16, seed=0), steps=60, seed=0).policy
    b = capability_boundary(base, sft, 1e-2)
    assert (b["boundary_start"], b["injected"]) == (0, 4)
    s = cases["search"]
    st = capability_boundary(s.start, s["student: on its own rollouts"].policy, 1e-2)
    assert (st["boundary_start"], st["injected"]) == (0, 4)
    # the boundary is a threshold: below the hidden answer's probability it is inside
    assert capability_boundary(base, sft, 1e-6)["injected"] == 0
    for arm in ("teacher traces", "teacher correction"):             # "both keep 99.8%"
        assert round(cases["teacher"][arm].diagnosis.evidence["retention"], 3) in (0.998, 0.999)


# ----------------------------------------------------------------------------- 05: E4 (Eq. 4, §2.4)
def test_05_eq4_table_places_each_method_with_the_packages_provenance():
    """Notebook 05's Eq. 4 table (D: whose trajectories, z: signal) agrees with toyenv.METHODS."""
    import pathlib
    import nbformat
    nb = nbformat.read(pathlib.Path(__file__).parents[1] / "solutions" / "05_onpolicy_rl_reshaping.ipynb", 4)
    cell = next(c.source for c in nb.cells if c.source.lstrip().startswith("| method (notebook) |"))
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in cell.splitlines()
            if line.startswith("| ") and "method (notebook)" not in line}
    expected = {"SFT (03)": "sft", "rejection-sampling fine-tuning (03 §5)": "rft", "DPO (04)": "dpo",
                "RL with a verifier, GRPO (05)": "rl/grpo", "RL with a process reward (06)": "rl/process",
                "RL with hints (06)": "rl/guided", "SFT + RL in one loss (06)": "interleaved", "RLHF (09)": "rlhf",
                "off-policy distillation (08)": "distill/off-policy", "on-policy distillation (08)": "distill/on-policy"}
    assert set(rows) == set(expected)
    for name, method in expected.items():
        stated, package = rows[name], toyenv.METHODS[method]["provenance"]
        if stated.startswith("off-policy"):
            assert package.startswith("off-policy"), (name, package)
        elif stated.startswith("on-policy"):
            assert package.startswith("on-policy"), (name, package)
        else:
            assert stated.startswith("mixed") and package.startswith(("hybrid", "mixed")), (name, package)
