"""The token world: enumeration, presets, policies and the contract of the README's code block."""
import numpy as np
import pytest

import toyenv


def test_presets_listed_and_documented():
    names = toyenv.presets()
    assert set(names) >= {"hidden-path", "many-paths", "two-skills", "scaffold"}
    for name in names:
        mdp = toyenv.make(name)
        assert len(mdp.doc) > 200 and "§" in mdp.doc, f"{name} must say which phenomenon it shows"
        assert 100 <= mdp.num_states <= 5000, "defaults stay small"
        base = mdp.base_policy()
        np.testing.assert_allclose(base.probs().sum(1), 1, atol=1e-12)
        assert mdp.base_policy() is not base, "each call gives a fresh copy"


def test_prefix_and_state_index_are_inverse(preset):
    for i in range(preset.num_states):
        x, toks = preset.prefix(i)
        assert preset.state_index(x, toks) == i
        assert len(toks) == preset.depth[i] < preset.horizon
        assert preset.eos not in toks


def test_tree_counts(preset):
    b = preset.vocab_size - 1
    assert preset.num_states == toyenv.tree_size(preset.num_prompts, preset.vocab_size, preset.horizon)
    assert preset.num_states == preset.num_prompts * sum(b**t for t in range(preset.horizon))
    # every (s, a) either continues to a child state or ends a trajectory
    assert preset.num_trajectories + (preset.num_states - preset.num_prompts) == preset.num_states * preset.vocab_size
    assert np.all(preset.terminal[:, preset.eos])
    assert np.all(preset.terminal[preset.depth == preset.horizon - 1])


def test_prefix_sharing_ids():
    mdp = toyenv.make("many-paths")
    for s in range(mdp.num_states):
        x, toks = mdp.prefix(s)
        assert mdp.prefix_id[s] == mdp.prefix_id[mdp.state_index(0, toks)]
    assert mdp.num_prefixes == mdp.num_states // mdp.num_prompts
    pi = toyenv.TabularPolicy(mdp, seed=0, share="prefix")
    p = pi.probs()
    np.testing.assert_array_equal(p[mdp.state_index(1, (0,))], p[mdp.state_index(5, (0,))])


def test_rewards_match_the_verifier_definitions():
    mdp = toyenv.make("hidden-path")
    h, keys, e = mdp.info["hidden_token"], mdp.info["keys"], mdp.eos
    for x in range(mdp.num_prompts):
        assert mdp.reward(x, (h, keys[x], e)) == 1.0
        assert mdp.reward(x, (h, (keys[x] + 1) % 3, e)) == 0.0
        assert mdp.reward(x, (0, 1, e)) == 0.0
    assert mdp.correct.sum() == mdp.num_prompts
    mp = toyenv.make("many-paths")
    a, b, c, e = 0, 1, 2, mp.eos
    assert mp.reward(0, (a, b, e)) == 1 and mp.reward(0, (c, c, e)) == 0
    rare = mp.info["rare_prompts"][0]
    assert mp.reward(rare, (c, c, e)) == 1 and mp.reward(rare, (a, a, e)) == 0
    ts = toyenv.make("two-skills")
    assert ts.reward(0, (0, 1, ts.eos)) == 1 and ts.reward(ts.num_prompts - 1, (1, 0, ts.eos)) == 1
    sc = toyenv.make("scaffold")
    for x, key in enumerate(sc.info["keys"]):
        assert sc.reward(x, key + (sc.eos,)) == 1
        assert sc.reward(sc.info["hinted"][x], key + (sc.eos,)) == 1


def test_presets_show_their_starting_point():
    hp = toyenv.make("hidden-path")
    base = hp.base_policy()
    assert toyenv.success_prob(base).max() < 1e-4          # the path is practically invisible
    root_h = toyenv.occupancy(base).sa[hp.roots, hp.info["hidden_token"]]
    assert np.all(root_h < 1e-4)
    mp = toyenv.make("many-paths")
    p = toyenv.success_prob(mp.base_policy())
    assert np.all(p > 0.05)                                  # every prompt is solvable by sampling
    assert np.all(toyenv.distinct_correct(mp.base_policy(), eps=1e-2)[:6] == 3)
    sc = toyenv.make("scaffold")
    p = toyenv.success_prob(sc.base_policy())
    bare, hinted = np.arange(4), np.array(sc.info["hinted"])
    assert np.all(p[hinted] > 0.5) and np.all(p[bare] < 0.05)


def test_overrides_resize_the_world():
    small = toyenv.make("hidden-path", horizon=3, num_prompts=2)
    assert small.horizon == 3 and small.num_prompts == 2
    big = toyenv.make("hidden-path", horizon=6)
    assert big.num_states == toyenv.tree_size(4, 5, 6)


def test_contract_block_runs_as_written():
    mdp = toyenv.make("hidden-path", horizon=5)
    assert isinstance(mdp.vocab, tuple) and mdp.vocab_size == len(mdp.vocab)
    assert mdp.vocab[mdp.eos] == "<eos>" and mdp.horizon == 5
    assert isinstance(mdp.prompts, tuple) and mdp.prompt_weights.sum() == pytest.approx(1)
    x, toks = mdp.prefix(7)
    assert mdp.state_index(x, toks) == 7
    assert mdp.reward(0, (3, 0, mdp.eos)) == 1.0
    base = mdp.base_policy()
    pi = toyenv.TabularPolicy(mdp, seed=0)
    tp = toyenv.TransformerPolicy(mdp, seed=0)
    assert pi.mdp is mdp and pi.probs().shape == (mdp.num_states, mdp.vocab_size)
    assert tp.probs().shape == (mdp.num_states, mdp.vocab_size)
    seqs = pi.sample(5, seed=0)
    assert all(isinstance(x, int) and isinstance(t, tuple) for x, t in seqs)
    occ = toyenv.occupancy(pi)
    assert occ.sa.shape == (mdp.num_states, mdp.vocab_size) and occ.s.shape == (mdp.num_states,)
    assert toyenv.effective_support(pi, 1e-3).dtype == bool
    ch = toyenv.support_change(base, pi, 1e-3)
    assert ch.expanded.shape == ch.attrited.shape == ch.shared.shape and isinstance(ch.role, str)
    assert toyenv.success_prob(pi).shape == (mdp.num_prompts,)
    assert 0 <= toyenv.pass_at_k(pi, 4) <= 1
    assert toyenv.kl(pi, base) > 0


def test_frozen_copy_is_a_reference():
    mdp = toyenv.make("two-skills")
    for pi in (toyenv.TabularPolicy(mdp, seed=0), toyenv.TransformerPolicy(mdp, seed=0)):
        ref = pi.frozen()
        assert all(not p.requires_grad for p in ref.parameters())
        np.testing.assert_array_equal(ref.probs(), pi.probs())
        with __import__("torch").no_grad():
            for p in pi.parameters():
                p.add_(0.5)
        assert not np.array_equal(ref.probs(), pi.probs()), "the reference must not follow the policy"


def test_fast_copy_is_a_plain_deepcopy_that_shares_only_read_only_attributes():
    """Policy.__deepcopy__ (used by copy() and frozen()) shares the world and the index tensors and
    gives each module fresh hook dicts; the copy must equal a plain deepcopy and be independent."""
    import copy
    import torch
    mdp = toyenv.make("two-skills")
    for pi in (toyenv.TabularPolicy(mdp, seed=0), toyenv.TabularPolicy(mdp, seed=1, share="prefix"),
               toyenv.TransformerPolicy(mdp, seed=0)):
        plain = copy.deepcopy(dict(vars(pi)))           # the old, generic deepcopy of the attributes
        for c in (pi.copy(), copy.deepcopy(pi), copy.deepcopy([pi, pi])[0]):
            assert type(c) is type(pi) and set(vars(c)) == set(plain)
            assert c.mdp is pi.mdp
            assert all(getattr(c, k) is getattr(pi, k) for k in type(pi)._read_only if hasattr(pi, k))
            ps, qs = pi.parameters(), c.parameters()
            assert len(ps) == len(qs) == len(plain_params(plain))
            for p, q in zip(ps, qs):
                assert q is not p and q.data_ptr() != p.data_ptr() and torch.equal(q, p)
                assert q.requires_grad == p.requires_grad and q.grad is None
            np.testing.assert_array_equal(c.probs(), pi.probs())
            if isinstance(pi, toyenv.TransformerPolicy):
                mods = list(c.model.modules())
                assert [type(m) for m in mods] == [type(m) for m in pi.model.modules()]
                for m, m0 in zip(mods, pi.model.modules()):
                    assert m is not m0 and m.training == m0.training
                    for k, v in vars(m).items():
                        if isinstance(v, (dict, set)):
                            assert v is not vars(m0)[k] and type(v) is type(vars(m0)[k]), k
                            assert list(v) == list(vars(m0)[k]), k
                c.model.register_forward_hook(lambda *a: None)   # hooks of a copy stay its own
                assert not pi.model._forward_hooks
            with torch.no_grad():                         # training the copy leaves the original alone
                for q in c.parameters():
                    q.add_(0.25)
            assert not np.array_equal(c.probs(), pi.probs())
    shared = copy.deepcopy([pi, pi])                      # the memo still makes shared objects shared
    assert shared[0] is shared[1]


def test_module_copy_matches_a_plain_deepcopy():
    """_copy_module follows deepcopy's steps; the result must look like deepcopy's, module by module."""
    import copy
    import torch
    from toyenv.core.policies import _copy_module

    def describe(model):
        out = []
        for name, m in model.named_modules():
            attrs = sorted((k, type(v).__name__, v if isinstance(v, (int, float, str, bool, type(None)))
                            else sorted(v) if isinstance(v, (dict, set)) else "") for k, v in vars(m).items())
            out.append((name, type(m).__name__, m.training, attrs))
        return out
    model = toyenv.TransformerPolicy(toyenv.make("scaffold"), seed=2, n_layers=3).model
    plain, fast = copy.deepcopy(model), _copy_module(model, {})
    assert describe(fast) == describe(plain) == describe(model)
    assert [(n, p.requires_grad) for n, p in fast.named_parameters()] == \
        [(n, p.requires_grad) for n, p in plain.named_parameters()]
    for (n, a), (_, b) in zip(fast.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), n
    x = torch.randint(0, 5, (3, 6))
    assert torch.equal(fast(x), model(x)) and torch.equal(plain(x), model(x))


def plain_params(attrs: dict) -> list:
    import torch
    out = []
    for v in attrs.values():
        if isinstance(v, torch.nn.Parameter):
            out.append(v)
        elif isinstance(v, torch.nn.Module):
            out.extend(v.parameters())
    return out


def test_policy_from_logits_and_probs():
    mdp = toyenv.make("many-paths")
    logits = np.random.default_rng(0).normal(size=(mdp.num_states, mdp.vocab_size))
    pi = toyenv.TabularPolicy(mdp, logits)
    want = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(pi.probs(), want, atol=1e-14)
    back = toyenv.TabularPolicy.from_probs(mdp, want)
    np.testing.assert_allclose(back.probs(), want, atol=1e-14)
    hard = want.copy()
    hard[:, 0] = 0
    hard /= hard.sum(1, keepdims=True)
    z = toyenv.TabularPolicy.from_probs(mdp, hard).probs()
    assert np.all(z[:, 0] == 0) and np.isfinite(z).all()


def test_transformer_is_small_and_exact():
    mdp = toyenv.make("scaffold")
    tp = toyenv.TransformerPolicy(mdp, seed=0)
    assert 1_000 <= tp.num_parameters() <= 100_000
    lp = tp.log_probs()
    assert lp.shape == (mdp.num_states, mdp.vocab_size) and lp.requires_grad
    # the prefix read off a deep row is the same as scoring that prefix alone
    import torch
    s = mdp.state_index(5, (0, 1))
    x = tp._x[tp._row[s]: tp._row[s] + 1, : int(tp._col[s]) + 1]
    with torch.no_grad():
        alone = torch.log_softmax(tp.model(x)[0, -1].double(), -1)
    np.testing.assert_allclose(alone.numpy(), lp[s].detach().numpy(), atol=1e-6)


def test_decode_is_prefix_plus_action_for_every_pair():
    """decode's vectorised path must give what prefix() gives pair by pair (python ints, zip length,
    the same IndexError for a bad state)."""
    mdp = toyenv.make("scaffold")
    s, a = toyenv.sample_pairs(mdp.base_policy(), 500, seed=1)
    want = [(mdp.prefix(int(x))[0], mdp.prefix(int(x))[1] + (int(y),)) for x, y in zip(s, a)]
    got = mdp.decode(s, a)
    assert got == want and all(type(v) is int for x, t in got for v in (x,) + t)
    assert mdp.decode(s[:3], a) == want[:3] and mdp.decode([], []) == []
    assert mdp.decode(list(s[:4]), list(a[:4])) == want[:4]
    assert mdp.decode(s[:5].astype(float), a[:5]) == want[:5]
    with pytest.raises(IndexError, match="state index"):
        mdp.decode(np.array([0, mdp.num_states]), np.array([0, 0]))
