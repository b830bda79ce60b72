"""The training loop and every method: short runs on tabular and transformer policies, the Run
contract, determinism, no mutation of inputs, exact equivalences between methods, clear errors."""

import numpy as np
import pytest

import toyenv
from toyenv.methods import METHODS, paths, token_targets


def _short_runs(pi, mdp):
    """Every public method, a few steps each, on policy pi."""
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    teacher = toyenv.TabularPolicy(mdp, seed=1)
    h = {x: d[1][:1] for x, d in enumerate(toyenv.demonstrations(mdp, mdp.num_prompts, seed=0,
                                                                   prompts=np.arange(mdp.num_prompts)))}
    return {
        "sft": lambda: toyenv.sft(pi, demos, steps=3, seed=0),
        "dpo": lambda: toyenv.dpo(pi, steps=3, seed=0, n_prompts=16),
        "dpo/online": lambda: toyenv.methods.online_dpo(pi, refresh=2, steps=3, seed=0, n_prompts=16),
        "rft": lambda: toyenv.rejection_sampling(pi, n_samples=64, steps=3, seed=0),
        "self-improve": lambda: toyenv.self_improve(pi, rounds=2, n_samples=32, steps_per_round=2, seed=0),
        "rl/grpo": lambda: toyenv.rl(pi, steps=3, seed=0),
        "rl/reinforce": lambda: toyenv.rl(pi, algo="reinforce", clip=0.2, epochs=2, steps=3, seed=0),
        "rl/exact": lambda: toyenv.rl(pi, exact=True, steps=3, seed=0),
        "rl/process": lambda: toyenv.rl(pi, process=True, steps=3, seed=0),
        "rl/guided": lambda: toyenv.rl(pi, hints=h, steps=3, seed=0),
        "interleaved": lambda: toyenv.interleaved(pi, demos, steps=3, seed=0),
        "sft/anchored": lambda: toyenv.methods.anchored_sft(pi, demos, beta=0.5, steps=3, seed=0),
        "distill/off-policy": lambda: toyenv.distill(pi, teacher, on_policy=0.0, steps=3, seed=0),
        "distill/sft": lambda: toyenv.distill(pi, teacher, on_policy=0.0, targets="sample", steps=3, seed=0),
        "distill/on-policy": lambda: toyenv.distill(pi, teacher, on_policy=1.0, steps=3, seed=0),
        "distill/teacher-labels": lambda: toyenv.distill(pi, teacher, on_policy=1.0, targets="sample",
                                                         steps=3, seed=0),
        "distill/mixed": lambda: toyenv.distill(pi, teacher, on_policy=0.5, steps=3, seed=0),
        "rlhf": lambda: toyenv.rlhf(pi, steps=3, seed=0),
    }


@pytest.mark.parametrize("kind", ["tabular", "transformer"])
def test_every_method_runs_and_keeps_the_contract(kind):
    mdp = toyenv.make("many-paths")
    pi = mdp.base_policy() if kind == "tabular" else toyenv.TransformerPolicy(mdp, seed=0, d_model=16)
    before = pi.probs().copy()
    runs = _short_runs(pi, mdp)
    inference_only = {"best-of-n"}               # selects among samples; nothing is trained
    assert set(runs) == set(METHODS) - inference_only, "every method in the table has a short run here"
    for name, make_run in runs.items():
        run = make_run()
        assert isinstance(run, toyenv.Run) and run.method == name
        assert run.method in METHODS
        last = run.history["step"][-1]
        assert run.steps[0] == 0 and run.steps[-1] == last
        assert all(len(v) == len(run.history["step"]) for v in run.history.values()), name
        assert {"loss", "success", "kl_to_start"} <= set(run.history)
        assert np.isfinite(run.history["loss"]).all() and np.isfinite(run.history["success"]).all()
        assert run.policy is not pi and run.at(last) is not run.policy
        np.testing.assert_array_equal(run.at(last).probs(), run.policy.probs())
        np.testing.assert_array_equal(run.at(0).probs(), before)
        assert run.history["kl_to_start"][0] == pytest.approx(0.0, abs=1e-12)
        assert run.history["success"][-1] == pytest.approx(float(mdp.prompt_weights @ toyenv.success_prob(run.policy)),
                                                           abs=1e-6)
        assert isinstance(run.config, dict) and run.config
    np.testing.assert_array_equal(pi.probs(), before)            # the input policy is never changed


def test_methods_table_labels_provenance_and_interface():
    for name, row in METHODS.items():
        assert {"provenance", "interface", "survey", "paper"} <= set(row)
        assert "§" in row["survey"]
    assert METHODS["sft"]["provenance"] == "off-policy" and METHODS["rl/grpo"]["provenance"] == "on-policy"
    assert METHODS["interleaved"]["provenance"] == "hybrid"


def test_same_seed_same_run_other_seed_other_run():
    mdp = toyenv.make("many-paths")
    base = mdp.base_policy()
    a, b = toyenv.rl(base, steps=20, seed=3), toyenv.rl(base, steps=20, seed=3)
    assert a.history == b.history
    np.testing.assert_array_equal(a.policy.probs(), b.policy.probs())
    c = toyenv.rl(base, steps=20, seed=4)
    assert c.history["loss"] != a.history["loss"]
    tp = toyenv.TransformerPolicy(mdp, seed=0, d_model=16)
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    x, y = toyenv.sft(tp, demos, steps=5, batch_size=4, seed=1), toyenv.sft(tp, demos, steps=5, batch_size=4, seed=1)
    np.testing.assert_array_equal(x.policy.probs(), y.policy.probs())


def test_run_snapshots_and_at():
    mdp = toyenv.make("hidden-path")
    run = toyenv.sft(mdp.base_policy(), toyenv.demonstrations(mdp, 8, seed=0), steps=10, seed=0,
                     snapshot_steps=[3, 7])
    assert run.steps == [0, 3, 7, 10]
    assert run.at(5) is run.snapshots[1][1] and run.at(0) is run.snapshots[0][1] and run.at(10) is run.snapshots[-1][1]
    for never in (-1, 99):                       # a step the run never took is an error, not the nearest end
        with pytest.raises(ValueError, match=r"never taken.*\[0, 10\]"):
            run.at(never)
    assert all(not p.requires_grad for _, s in run.snapshots for p in s.parameters())
    assert run.history["step"] == list(range(11))
    default = toyenv.sft(mdp.base_policy(), toyenv.demonstrations(mdp, 8, seed=0), steps=100, seed=0)
    assert len(default.snapshots) == 21 and default.steps[1] == 5
    # the snapshot at step t is the policy whose metrics are logged at row t
    t = 7
    assert run.history["success"][t] == pytest.approx(float(mdp.prompt_weights @ toyenv.success_prob(run.at(t))), abs=1e-9)
    assert run.history["kl_to_start"][t] == pytest.approx(toyenv.kl(run.at(t), mdp.base_policy()), rel=1e-9)
    assert "Run('sft'" in repr(run)


def test_train_accepts_any_objective_and_a_frozen_input():
    mdp = toyenv.make("two-skills")
    ref = mdp.base_policy().frozen()

    def objective(pi, log_probs, step, rng):
        return -log_probs[mdp.roots, 0].mean(), {"draw": float(rng.random())}

    run = toyenv.train(ref, objective, steps=5, lr=0.1, seed=0, reference=ref, optimizer="sgd", method="custom")
    assert run.history["loss"][-1] < run.history["loss"][0]
    assert run.history["draw"][0] == np.random.default_rng(0).random()
    assert "kl_to_ref" in run.history and all(not p.requires_grad for p in ref.parameters())
    with pytest.raises(ValueError, match="optimizer"):
        toyenv.train(ref, objective, steps=1, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr"):
        toyenv.train(ref, objective, steps=1, lr=0)
    with pytest.raises(ValueError, match="snapshot_steps"):
        toyenv.train(ref, objective, steps=3, lr=0.1, snapshot_steps=[5])


def test_contract_block_runs_as_written():
    mdp = toyenv.make("hidden-path", horizon=5)
    base = mdp.base_policy()
    before = base.probs().copy()
    demos = base.sample(64, seed=0)
    toyenv.sft(base, demos, steps=100, seed=0)
    run = toyenv.rl(base, beta=0.1, exact=False, steps=200, seed=0)
    assert run.policy is not base and run.snapshots and len(run.history) > 0
    np.testing.assert_array_equal(base.probs(), before)


# --------------------------------------------------------------------------- batch builders
def test_demonstrations_are_correct_and_follow_the_prompt_weights():
    mdp = toyenv.make("many-paths")
    demos = toyenv.demonstrations(mdp, 400, seed=0)
    assert all(mdp.is_correct(x, y) for x, y in demos)
    common = {y for x, y in demos if x not in mdp.info["rare_prompts"]}
    assert len(common) == 3, "uniform among the three correct answers of a common prompt"
    counts = np.bincount([x for x, _ in demos], minlength=mdp.num_prompts)
    assert counts.min() > 20
    assert all(x == 2 for x, _ in toyenv.demonstrations(mdp, 5, seed=0, prompts=2))
    sc = toyenv.make("scaffold")                      # hinted prompts have weight 0: never drawn
    assert all(x < 4 for x, _ in toyenv.demonstrations(sc, 50, seed=0))


def test_paths_and_token_targets():
    mdp = toyenv.make("hidden-path")
    seqs = [(0, (3, 0, mdp.eos)), (1, (mdp.eos,)), (2, (0, 1, 2, 0))]
    s, a = mdp.encode(seqs)
    st, ac, m = paths(mdp, s, a)
    for i, (x, y) in enumerate(seqs):
        assert tuple(ac[i, m[i]]) == y
        assert [mdp.prefix(int(q)) for q in st[i, m[i]]] == [(x, y[:t]) for t in range(len(y))]
    t = token_targets(mdp, s, a)
    assert t.sum() == pytest.approx(sum(len(y) for _, y in seqs) / 3)


def test_preference_pairs_prefer_higher_reward():
    mdp = toyenv.make("many-paths")
    pairs = toyenv.preference_pairs(mdp.base_policy(), 50, seed=0)
    assert 0 < len(pairs) <= 50
    assert all(mdp.reward(x, w) > mdp.reward(x, l) for x, w, l in pairs)
    r = np.where(mdp.terminal, np.random.default_rng(0).normal(size=mdp.terminal.shape), 0)
    pairs = toyenv.preference_pairs(mdp.base_policy(), 20, seed=0, reward=r)
    for x, w, l in pairs:
        (sw, sl), (aw, al) = mdp.encode([(x, w), (x, l)])
        assert r[sw, aw] > r[sl, al]


# --------------------------------------------------------------------------- exact equivalences
def test_interleaved_endpoints_are_sft_and_rl():
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    demos = toyenv.demonstrations(mdp, 8, seed=0)
    only_sft = toyenv.interleaved(base, demos, mix=1.0, steps=15, seed=2)
    np.testing.assert_allclose(only_sft.policy.probs(), toyenv.sft(base, demos, steps=15, seed=2).policy.probs(),
                               atol=1e-12)
    mp = toyenv.make("many-paths")
    only_rl = toyenv.interleaved(mp.base_policy(), toyenv.demonstrations(mp, 8, seed=0), mix=0.0, steps=15, seed=2)
    np.testing.assert_allclose(only_rl.policy.probs(), toyenv.rl(mp.base_policy(), steps=15, seed=2).policy.probs(),
                               atol=1e-12)


def test_hint_tokens_are_off_policy_and_not_trained_unless_asked():
    """Guided RL with every rollout hinted: the root rows (the hint tokens) get no gradient, so the
    unhinted policy's first token is unchanged, while the continuation after the hint is learned."""
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    hints = {x: (mdp.info["hidden_token"],) for x in range(mdp.num_prompts)}
    run = toyenv.rl(base, hints=hints, beta=0.0, steps=40, seed=0)
    np.testing.assert_array_equal(run.policy.probs()[mdp.roots], base.probs()[mdp.roots])
    hinted = [mdp.state_index(x, t) for x, t in hints.items()]
    assert run.history["reward"][-1] > 0.5                        # it learned to finish from the hint
    assert toyenv.success_value(run.policy)[0][hinted].min() > 0.5
    assert run.history["success"][-1] < 1e-3                      # but unhinted success stays ~0
    # training on the hint tokens too does not help when *every* rollout carries the hint: the
    # group advantages of a prompt sum to zero and all of them sit on the same first token
    same = toyenv.rl(base, hints=hints, beta=0.0, steps=40, seed=0, learn_hint=True)
    np.testing.assert_allclose(same.policy.probs()[mdp.roots], base.probs()[mdp.roots], atol=1e-9)


def test_mixed_hints_guide_rl_to_the_hidden_path():
    """Half the rollouts hinted (off-policy prefix guidance, §5.1, §7.1.3): hinted successes and unhinted failures share a group.
    Training on the hint tokens (learn_hint) reaches the path sooner; even without it the unhinted
    failures' negative advantages push the root away from the wrong first tokens."""
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    half = {"prob": 0.5, "length": 1}
    first = {}
    for learn in (False, True):
        run = toyenv.rl(base, hints=half, beta=0.0, steps=200, seed=0, learn_hint=learn)
        s = np.array(run.history["success"])
        assert s[-1] > 0.9
        first[learn] = int(np.argmax(s > 0.5))
    assert first[True] < first[False]


def test_rejection_sampling_filters_and_cannot_create():
    mp = toyenv.make("many-paths")
    run = toyenv.rejection_sampling(mp.base_policy(), n_samples=200, steps=50, seed=0)
    assert 0 < run.config["kept"] < 200
    assert run.history["success"][-1] > run.history["success"][0]
    hp = toyenv.make("hidden-path")
    with pytest.warns(UserWarning, match="none of"):
        nothing = toyenv.rejection_sampling(hp.base_policy(), n_samples=200, steps=5, seed=0)
    assert nothing.config["kept"] == 0
    np.testing.assert_array_equal(nothing.policy.probs(), hp.base_policy().probs())


def test_self_improve_joins_rounds():
    mp = toyenv.make("many-paths")
    run = toyenv.self_improve(mp.base_policy(), rounds=3, n_samples=64, steps_per_round=5, seed=0)
    assert run.history["step"] == list(range(16))
    assert run.history["round"] == [0.0] * 6 + [1.0] * 5 + [2.0] * 5
    assert run.steps == [0, 5, 10, 15] and len(run.config["kept"]) == 3
    assert run.history["success"][-1] > run.history["success"][0]


def test_dpo_is_blind_without_pairs_and_learns_with_them():
    hp = toyenv.make("hidden-path")
    with pytest.warns(UserWarning, match="no preference pairs"):
        blind = toyenv.dpo(hp.base_policy(), steps=5, seed=0)
    np.testing.assert_array_equal(blind.policy.probs(), hp.base_policy().probs())
    mp = toyenv.make("many-paths")
    run = toyenv.dpo(mp.base_policy(), steps=50, seed=0)
    assert run.history["pref_acc"][-1] > 0.9 and run.history["success"][-1] > run.history["success"][0]
    assert run.history["kl_to_ref"] == run.history["kl_to_start"]


def test_clipping_is_active_with_several_epochs():
    mp = toyenv.make("many-paths")
    run = toyenv.rl(mp.base_policy(), clip=0.1, epochs=4, steps=40, seed=0, lr=0.3)
    assert max(run.history["clip_frac"]) > 0
    assert run.history["clip_frac"][0] == 0        # ratio = 1 on the first update of each batch


# --------------------------------------------------------------------------- errors
def test_errors_name_the_fix():
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    with pytest.raises(ValueError, match="empty"):
        toyenv.sft(base, [], steps=1)
    with pytest.raises(ValueError, match="unfinished"):
        toyenv.sft(base, [(0, (0, 1))], steps=1)
    with pytest.raises(TypeError, match="policy"):
        toyenv.sft(mdp, [(0, (4,))])
    with pytest.raises(ValueError, match="algo"):
        toyenv.rl(base, algo="ppo")
    with pytest.raises(ValueError, match="beta"):
        toyenv.rl(base, beta=-1)
    with pytest.raises(ValueError, match="exact"):
        toyenv.rl(base, exact=True, process=True)
    with pytest.raises(ValueError, match="group_size"):
        toyenv.rl(base, group_size=1)
    with pytest.raises(ValueError, match="not a state"):
        toyenv.rl(base, hints={0: (mdp.eos,)}, steps=1)
    with pytest.raises(ValueError, match="reward must be an array"):
        toyenv.rl(base, reward=np.zeros(3), steps=1)
    with pytest.raises(ValueError, match="another world"):
        toyenv.rl(base, reference=toyenv.make("many-paths").base_policy())
    with pytest.raises(ValueError, match="mix"):
        toyenv.interleaved(base, [(0, (4,))], mix=2)
    with pytest.raises(ValueError, match="steps"):
        toyenv.sft(base, [(0, (4,))], steps=-1)
