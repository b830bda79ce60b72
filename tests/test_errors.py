"""Bad input raises an error whose message names the fix."""
import numpy as np
import pytest

import toyenv


@pytest.fixture(scope="module")
def mdp():
    return toyenv.make("many-paths")


@pytest.mark.parametrize("eps", [0, -1e-3, 1.5, float("nan")])
def test_eps_outside_unit_interval(mdp, eps):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        toyenv.effective_support(mdp.base_policy(), eps)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        toyenv.support_change(mdp.base_policy(), mdp.base_policy(), eps)


def test_eps_not_a_number(mdp):
    with pytest.raises(TypeError, match="eps must be a number"):
        toyenv.effective_support(mdp.base_policy(), "small")


def test_policy_of_another_world(mdp):
    other = toyenv.make("two-skills")
    with pytest.raises(ValueError, match="another world"):
        toyenv.support_change(mdp.base_policy(), other.base_policy(), 1e-3)
    with pytest.raises(ValueError, match="same toyenv.make"):
        toyenv.kl(mdp.base_policy(), other.base_policy())


def test_same_settings_are_the_same_world(mdp):
    twin = toyenv.make("many-paths")
    assert toyenv.kl(mdp.base_policy(), twin.base_policy()) == 0


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match="hidden-path, many-paths, two-skills, scaffold"):
        toyenv.make("hiden-path")


def test_bad_override_lists_settings():
    with pytest.raises(TypeError, match=r"no setting 'horizn'.*horizon="):
        toyenv.make("hidden-path", horizn=5)
    with pytest.raises(ValueError, match="horizon must be an integer"):
        toyenv.make("hidden-path", horizon=0)
    with pytest.raises(ValueError, match="p_hidden"):
        toyenv.make("hidden-path", p_hidden=2.0)


def test_tree_too_big_gives_size_and_limit():
    with pytest.raises(ValueError, match=r"prefix tree of this world has 22,369,620 states.*limit of 2,000,000"):
        toyenv.make("hidden-path", horizon=12)


@pytest.mark.parametrize("seq, msg", [
    ((0, (0, 3)), "not a single pair"),
    ([(0, ())], "empty"),
    ([(0, (0, 0, 0, 3))], "more than the horizon"),
    ([(0, (3, 0, 3))], "continues after the end token"),
    ([(0, (0, 1))], "unfinished"),
    ([(0, "ab")], "not the string"),
    ([(0, (0, 9, 3))], r"token ids must lie in \[0, 4\)"),
    ([(42, (0, 3))], r"prompt_index must be an integer in \[0, 8\)"),
    ([(0,)], "each sequence must be a pair"),
])
def test_malformed_sequences(mdp, seq, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        mdp.encode(seq)


def test_malformed_state_lookup(mdp):
    with pytest.raises(ValueError, match="is not a state"):
        mdp.state_index(0, (0, mdp.eos))
    with pytest.raises(IndexError, match="state index"):
        mdp.prefix(10**6)


def test_bad_policy_construction(mdp):
    with pytest.raises(ValueError, match="logits must have shape"):
        toyenv.TabularPolicy(mdp, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="rows summing to 1"):
        toyenv.TabularPolicy.from_probs(mdp, np.ones((mdp.num_states, mdp.vocab_size)))
    with pytest.raises(ValueError, match="share must be"):
        toyenv.TabularPolicy(mdp, share="prompt")
    with pytest.raises(TypeError, match="TokenMDP"):
        toyenv.TransformerPolicy("many-paths")
    with pytest.raises(TypeError, match="expected a policy"):
        toyenv.occupancy(mdp)


def test_bad_k(mdp):
    with pytest.raises(ValueError, match="k must be >= 1"):
        toyenv.pass_at_k(mdp.base_policy(), 0)
    with pytest.raises(TypeError, match="positive integer"):
        toyenv.pass_at_k(mdp.base_policy(), 1.5)
    with pytest.raises(ValueError, match="need 0 <= c <= n"):
        toyenv.pass_at_k_unbiased(10, 11, 2)


def test_bad_world_definition():
    with pytest.raises(ValueError, match="verifier"):
        toyenv.TokenMDP(("a", "<eos>"), 1, 3, ("x",))
    with pytest.raises(ValueError, match="prompt_weights"):
        toyenv.TokenMDP(("a", "<eos>"), 1, 3, ("x",), verifier=lambda x, y: 0.0, prompt_weights=[-1])
    with pytest.raises(ValueError, match="eos must be a token id"):
        toyenv.TokenMDP(("a", "<eos>"), 5, 3, ("x",), verifier=lambda x, y: 0.0)


def test_custom_world_with_scalar_verifier():
    mdp = toyenv.TokenMDP(("a", "b", "<eos>"), 2, 3, ("x", "y"),
                          verifier=lambda x, toks: float(toks[:1] == (x,)))
    assert mdp.reward(0, (0, 2)) == 1.0 and mdp.reward(1, (0, 2)) == 0.0
    # a custom world has no pretrained policy unless it is given one; the error says how
    with pytest.raises(ValueError, match="base_factory="):
        mdp.base_policy()
    uniform = toyenv.TabularPolicy(mdp, logits=np.zeros((mdp.num_states, mdp.vocab_size)))
    assert toyenv.success_prob(uniform) == pytest.approx([1 / 3, 1 / 3])
    mdp = toyenv.TokenMDP(("a", "b", "<eos>"), 2, 3, ("x", "y"), verifier=lambda x, toks: float(toks[:1] == (x,)),
                          base_factory=lambda m: toyenv.TabularPolicy(m, logits=np.zeros((m.num_states, m.vocab_size))))
    assert toyenv.success_prob(mdp.base_policy()) == pytest.approx([1 / 3, 1 / 3])


# --------------------------------------------------------------------------- methods and analysis
# Mistakes a new user makes with the training methods, each caught before any training, with a message
# that names the fix. One test per family of mistakes, parametrized over every public function it
# applies to.
@pytest.fixture(scope="module")
def hp():
    return toyenv.make("hidden-path")


DEMO = [(0, (3, 0, 1, 4))]                       # a finished hidden-path sequence


def _every_method(hp):
    """name -> function(**options) training the hidden-path base policy with every other argument valid."""
    base = hp.base_policy()
    return {
        "sft": lambda **kw: toyenv.sft(base, DEMO, **kw),
        "dpo": lambda **kw: toyenv.dpo(base, [(0, (3, 0, 1, 4), (4,))], **kw),
        "rejection_sampling": lambda **kw: toyenv.rejection_sampling(base, n_samples=4, **kw),
        "self_improve": lambda **kw: toyenv.self_improve(base, rounds=1, n_samples=4, **kw),
        "rl": lambda **kw: toyenv.rl(base, **kw),
        "interleaved": lambda **kw: toyenv.interleaved(base, DEMO, **kw),
        "distill": lambda **kw: toyenv.distill(base, base, **kw),
        "rlhf": lambda **kw: toyenv.rlhf(base, base.mdp.rewards, **kw),
        "fit": lambda **kw: toyenv.fit(base, base, **kw),
    }


METHOD_NAMES = ["sft", "dpo", "rejection_sampling", "self_improve", "rl", "interleaved", "distill", "rlhf", "fit"]
BAD_LOOP_OPTIONS = [
    (dict(steps=-1), ValueError, r"steps must be an integer >= 0"),
    (dict(steps=2.5), ValueError, r"steps must be an integer"),
    (dict(lr=0), ValueError, r"lr must be a finite number > 0"),
    (dict(lr=-0.1), ValueError, r"lr must be a finite number > 0"),
    (dict(lr=float("nan")), ValueError, r"lr must be a finite number > 0"),
    (dict(lr="fast"), TypeError, r"lr must be a number"),
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0"),
    (dict(optimizer="lbfgs"), ValueError, r"optimizer must be one of 'adam', 'sgd'"),
    (dict(num_snapshots=1), ValueError, r"num_snapshots must be an integer >= 2"),
    (dict(snapshot_steps=[500]), ValueError, r"snapshot_steps must lie in \[0, steps"),
]


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("options, error, msg", BAD_LOOP_OPTIONS, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_every_method_checks_the_loop_options(hp, name, options, error, msg):
    if name == "self_improve" and "steps" in options:
        options = dict(steps_per_round=options["steps"])        # self_improve counts updates per round
        msg = msg.replace("steps", "steps_per_round")
    with pytest.raises(error, match=msg):
        _every_method(hp)[name](**options)


@pytest.mark.parametrize("name", ["sft", "dpo", "rejection_sampling", "rl", "interleaved", "distill", "rlhf", "fit"])
def test_every_method_names_its_accepted_options(hp, name):
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'snapshots'.*snapshot_steps, num_snapshots, optimizer"):
        _every_method(hp)[name](snapshots=[3])


@pytest.mark.parametrize("call", [
    lambda mdp: toyenv.sft(mdp, DEMO), lambda mdp: toyenv.dpo(mdp), lambda mdp: toyenv.rejection_sampling(mdp),
    lambda mdp: toyenv.self_improve(mdp), lambda mdp: toyenv.rl(mdp), lambda mdp: toyenv.interleaved(mdp, DEMO),
    lambda mdp: toyenv.distill(mdp, mdp.base_policy()), lambda mdp: toyenv.distill(mdp.base_policy(), mdp),
    lambda mdp: toyenv.rlhf(mdp), lambda mdp: toyenv.fit(mdp, mdp.base_policy()),
    lambda mdp: toyenv.kl_optimum(mdp, 0.1), lambda mdp: toyenv.reward_model(mdp),
    lambda mdp: toyenv.pipeline(mdp, [("id", lambda p: p)]), lambda mdp: toyenv.diagnose(mdp, mdp.base_policy()),
    lambda mdp: toyenv.train(mdp, lambda *a: None, steps=1, lr=0.1),
])
def test_a_world_is_not_a_policy(hp, call):
    with pytest.raises(TypeError, match=r"expected a policy .*mdp.base_policy\(\)"):
        call(hp)


@pytest.mark.parametrize("call", [
    lambda b, o: toyenv.distill(b, o), lambda b, o: toyenv.rl(b, reference=o), lambda b, o: toyenv.dpo(b, reference=o),
    lambda b, o: toyenv.interleaved(b, DEMO, reference=o), lambda b, o: toyenv.fit(b, o),
    lambda b, o: toyenv.pipeline(b, [("id", lambda p: p)], base=o), lambda b, o: toyenv.diagnose(b, o),
    lambda b, o: toyenv.rlhf(b, toyenv.reward_model(o, n_pairs=8)),
])
def test_policies_of_different_worlds(hp, call):
    with pytest.raises(ValueError, match=r"another world.*same toyenv.make"):
        call(hp.base_policy(), toyenv.make("many-paths").base_policy())


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -0.1])
@pytest.mark.parametrize("name", ["rl", "rl exact", "interleaved", "rlhf"])
def test_the_kl_weight_beta_must_be_finite_and_non_negative(hp, name, beta):
    """rl(beta=nan) used to train and log nan; beta=inf the same."""
    base = hp.base_policy()
    call = {"rl": lambda: toyenv.rl(base, beta=beta), "rl exact": lambda: toyenv.rl(base, beta=beta, exact=True),
            "interleaved": lambda: toyenv.interleaved(base, DEMO, beta=beta),
            "rlhf": lambda: toyenv.rlhf(base, base.mdp.rewards, beta=beta)}[name]
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0.*KL weight"):
        call()


@pytest.mark.parametrize("beta", [0, float("nan"), float("inf"), -1])
def test_dpo_beta_must_be_finite_and_positive(hp, beta):
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0.*beta=0.1"):
        toyenv.dpo(hp.base_policy(), beta=beta)


@pytest.mark.parametrize("call, msg", [
    (lambda b: toyenv.dpo(b, []), r"pairs is empty, so DPO would train on nothing.*preference_pairs"),
    (lambda b: toyenv.dpo(b, [(0, (4,))]), r"pairs\[0\].*triple \(prompt_index, chosen_tokens, rejected_tokens\)"),
    (lambda b: toyenv.sft(b, []), r"demos is empty.*toyenv.demonstrations"),
    (lambda b: toyenv.sft(b, None), r"demos is empty"),
    (lambda b: toyenv.interleaved(b, []), r"demos is empty"),
])
def test_nothing_to_learn_from(hp, call, msg):
    with pytest.raises(ValueError, match=msg):
        call(hp.base_policy())


def test_a_bad_prompt_index_is_blamed_on_the_prompt(hp):
    """An out-of-range prompt with unfinished tokens used to raise 'unfinished', hiding the real mistake."""
    with pytest.raises(ValueError, match=r"sequence 0: prompt_index must be an integer in \[0, 4\), got 42.*prompt first"):
        toyenv.sft(hp.base_policy(), [(42, (0, 1, 2))])
    with pytest.raises(ValueError, match=r"prompt_index.*prompt first"):
        toyenv.sft(hp.base_policy(), [((3, 0, 1, 4), 0)])     # pair written the wrong way round


def test_run_at_a_step_never_taken(hp):
    run = toyenv.sft(hp.base_policy(), DEMO, steps=3)
    for step in (999, -1):
        with pytest.raises(ValueError, match=r"step .* was never taken.*\[0, 3\].*run.policy"):
            run.at(step)
    with pytest.raises(TypeError, match=r"step must be an integer"):
        run.at(1.5)
    assert run.at(3) is run.snapshots[-1][1]


@pytest.mark.parametrize("call, msg", [
    (lambda b: toyenv.interleaved(b, DEMO, mix=1.5), r"mix must lie in \[0, 1\].*weight of the SFT loss"),
    (lambda b: toyenv.interleaved(b, DEMO, mix=float("nan")), r"mix must lie in \[0, 1\]"),
    (lambda b: toyenv.distill(b, b, on_policy=-0.1), r"on_policy must lie in \[0, 1\].*fraction of student rollouts"),
    (lambda b: toyenv.rl(b, hints={"prob": 2.0}), r'hints\["prob"\] must lie in \[0, 1\]'),
    (lambda b: toyenv.compare_provenance(b, b, on_policy=(0.0, 1.5)), r"on_policy value must lie in \[0, 1\]"),
    (lambda b: toyenv.distill(b, b, divergence="jsd", jsd_weight=1.0), r"jsd_weight must lie strictly between 0 and 1"),
])
def test_fractions_outside_the_unit_interval(hp, call, msg):
    with pytest.raises(ValueError, match=msg):
        call(hp.base_policy())


@pytest.mark.parametrize("call, msg", [
    (lambda b: toyenv.rl(b, group_size=1), r"group_size must be an integer >= 2.*two rollouts"),
    (lambda b: toyenv.rl(b, algo="reinforce", group_size=1), r"group_size must be an integer >= 2"),
    (lambda b: toyenv.rl(b, group_size=2.5), r"group_size must be an integer"),
    (lambda b: toyenv.interleaved(b, DEMO, group_size=1), r"group_size must be an integer >= 2"),
    (lambda b: toyenv.rlhf(b, b.mdp.rewards, group_size=1), r"group_size must be an integer >= 2"),
    (lambda b: toyenv.rl(b, n_prompts_per_step=0), r"n_prompts_per_step must be an integer >= 1"),
    (lambda b: toyenv.rl(b, epochs=0), r"epochs must be an integer >= 1"),
    (lambda b: toyenv.rl(b, clip=0), r"clip must be a finite number > 0.*clip=None"),
    (lambda b: toyenv.rl(b, hints={"length": 0}), r'hints\["length"\] must be an integer >= 1'),
    (lambda b: toyenv.sft(b, DEMO, batch_size=0), r"batch_size must be an integer >= 1.*batch_size=None"),
    (lambda b: toyenv.dpo(b, batch_size=0), r"batch_size must be an integer >= 1"),
    (lambda b: toyenv.dpo(b, n_candidates=1), r"n_candidates must be an integer >= 2"),
    (lambda b: toyenv.rejection_sampling(b, n_samples=0), r"n_samples must be an integer >= 1"),
    (lambda b: toyenv.self_improve(b, rounds=0), r"rounds must be an integer >= 1"),
    (lambda b: toyenv.self_improve(b, rounds=3, steps=10), r"steps=10 is not a multiple of rounds=3"),
    (lambda b: toyenv.distill(b, b, n_samples=0), r"n_samples must be an integer >= 1"),
    (lambda b: toyenv.reward_model(b, n_pairs=0), r"n_pairs must be an integer >= 1"),
    (lambda b: toyenv.demonstrations(b.mdp, -1), r"n must be an integer >= 0"),
    (lambda b: toyenv.bon_policy(b, 0), r"n must be a positive integer"),
])
def test_sizes_and_counts(hp, call, msg):
    with pytest.raises(ValueError, match=msg):
        call(hp.base_policy())


@pytest.mark.parametrize("call, msg", [
    (lambda b: toyenv.rl(b, algo="ppo"), r"algo must be one of 'grpo', 'reinforce'"),
    (lambda b: toyenv.distill(b, b, divergence="kl"), r"divergence must be one of 'forward', 'reverse', 'jsd'"),
    (lambda b: toyenv.distill(b, b, targets="logits"), r"targets must be one of 'distribution', 'sample'"),
    (lambda b: toyenv.rlhf(b, features="bags"), r"features must be one of 'bag', 'bag\+length', 'tabular'"),
    (lambda b: toyenv.pipeline(b, [{"method": "grpo"}]), r"'method' must be a method of toyenv.METHODS.*known:"),
])
def test_unknown_names_list_the_known_ones(hp, call, msg):
    with pytest.raises(ValueError, match=msg):
        call(hp.base_policy())


def test_renamed_and_misplaced_options(hp):
    base = hp.base_policy()
    with pytest.raises(TypeError, match=r"jsd_beta is now called jsd_weight.*beta always means a KL weight"):
        toyenv.distill(base, base, divergence="jsd", jsd_beta=0.3)
    with pytest.raises(TypeError, match=r"pass the reward as proxy="):
        toyenv.rlhf(base, reward=hp.rewards)
    with pytest.raises(ValueError, match=r"reward has NaN or infinite values"):
        toyenv.rl(base, reward=np.full(hp.rewards.shape, np.nan))


@pytest.mark.parametrize("call, error, msg", [
    (lambda b: toyenv.pipeline(b, []), ValueError, r"stages is empty: pass at least one stage"),
    (lambda b: toyenv.pipeline(b, [("id", lambda p: p)], ks=(0, 4)), ValueError, r"each k in ks must be an integer >= 1"),
    (lambda b: toyenv.pipeline(b, [("id", lambda p: p)], eps=0), ValueError, r"eps must lie in \(0, 1\]"),
    (lambda b: toyenv.pipeline(b, [("id", lambda p: p), "rl"]), TypeError, r"stage 1 is 'rl'"),
    (lambda b: toyenv.diagnose(b, b, ratio=0), ValueError, r"ratio must be a finite number > 0"),
    (lambda b: toyenv.diagnose(b, b, k_large=0), ValueError, r"k_large must be an integer >= 1"),
    (lambda b: toyenv.compare_provenance(b, b, checkpoints=(-5,)), ValueError, r"each checkpoint must be an integer >= 0"),
    (lambda b: toyenv.compare_provenance(b, b, seeds=()), ValueError, r"seeds is empty"),
    (lambda b: toyenv.overoptimization(b, np.zeros(3)), ValueError, r"proxy must be a RewardModel or an \[S, V\]"),
    (lambda b: toyenv.overoptimization(b, b.mdp.rewards, run=b), TypeError, r"run must be a toyenv Run"),
])
def test_analysis_arguments(hp, call, error, msg):
    with pytest.raises(error, match=msg):
        call(hp.base_policy())


def test_forgetting_arguments():
    ts = toyenv.make("two-skills")
    base = ts.base_policy()
    with pytest.raises(ValueError, match=r"family must be a task family index in \[0, 2\)"):
        toyenv.family_demos(ts, 2)
    with pytest.raises(ValueError, match=r"family must be a task family index"):
        toyenv.family_task(ts, -1)
    with pytest.raises(ValueError, match=r"trained must be a task family index"):
        toyenv.forgetting(base, base, trained=5)
    with pytest.raises(TypeError, match=r"forgetting_curve needs a toyenv Run.*toyenv.forgetting\(before, after\)"):
        toyenv.forgetting_curve(base)
    with pytest.raises(ValueError, match=r"curve must be the dict toyenv.forgetting_curve"):
        toyenv.at_matched_gain({"trained": [0.1]}, 0.5)
    with pytest.raises(ValueError, match=r"no task families.*two-skills"):
        toyenv.family_success(toyenv.make("hidden-path").base_policy())
