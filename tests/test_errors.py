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
