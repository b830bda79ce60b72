"""Every phenomenon notebooks 00-02 state, asserted on the package (same worlds, seeds, numbers).

Each test names the notebook and the sentence it backs. Numbers a notebook quotes in prose are
asserted here, so changing a world or a default breaks a test before it silently breaks the prose.
"""
import math

import numpy as np
import pytest

import toyenv
from toyenv import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.fixture(scope="module")
def hidden():
    return toyenv.make("hidden-path")


@pytest.fixture(scope="module")
def many():
    return toyenv.make("many-paths")


# =========================================================================================== 00
def test_00_hidden_path_world_as_described(hidden):
    """00: vocabulary, end token, horizon, 340 states and 1364 complete trajectories."""
    assert hidden.vocab == ("a", "b", "c", "h", "<eos>") and hidden.eos == 4 and hidden.horizon == 4
    assert hidden.num_states == 340 and hidden.num_trajectories == 1364
    np.testing.assert_allclose(hidden.prompt_weights, 0.25)
    assert set(toyenv.presets()) >= {"hidden-path", "many-paths", "two-skills", "scaffold"}


def test_00_each_prompt_has_one_correct_answer_h_key_eos(hidden):
    """00: 'prompt qi has exactly one correct answer: h, then a key letter, then <eos>'."""
    s, a = np.nonzero(hidden.correct)
    answers = hidden.decode(s, a)
    assert sorted(p for p, _ in answers) == list(range(hidden.num_prompts))
    keys = hidden.info["keys"]
    for p, toks in answers:
        assert toks == (3, keys[p], 4)
    assert hidden.reward(0, (0, 1, 4)) == 0.0 and hidden.reward(0, (3, 0, 4)) == 1.0


def test_00_base_policy_first_token_and_exact_success(hidden):
    """00: 'the first token h has probability 1e-4'; success 4e-6 per prompt (= 1e-4 * 0.2 * 0.2)."""
    base = hidden.base_policy()
    np.testing.assert_allclose(base.probs()[0], [0.45, 0.3, 0.1999, 1e-4, 0.05], atol=1e-12)
    np.testing.assert_allclose(toyenv.success_prob(base), 1e-4 * 0.2 * 0.2, rtol=1e-9)


def test_00_tree_size_is_the_number_of_states():
    """00: the exercise's formula num_prompts * sum (V-1)^t equals every preset's state count."""
    for name in toyenv.presets():
        w = toyenv.make(name)
        assert toyenv.tree_size(w.num_prompts, w.vocab_size, w.horizon) == w.num_states
        assert w.num_states == w.num_prompts * sum((w.vocab_size - 1) ** t for t in range(w.horizon))


def test_00_the_h_branch_is_faint_in_the_tree(hidden):
    """00: 'the whole right-hand branch (first token h) is faint': below eps = 1e-3 everywhere."""
    occ = toyenv.occupancy(hidden.base_policy())
    under_h = (hidden.prompt_of == 0) & (hidden.depth >= 1) & (hidden.tokens[:, 0] == 3)
    assert occ.sa[0, 3] < 1e-3
    assert np.all(occ.s[under_h] < 1e-3)
    art = plots.plot_tree(hidden.base_policy(), prompt=0, eps=1e-3)
    faded = dict(zip(art.node_states.tolist(), art.faded.tolist()))
    assert all(faded[s] for s in np.nonzero(under_h)[0])


# =========================================================================================== 01
def test_01_many_paths_world_as_described(many):
    """01: 8 prompts, tokens a b c <eos>, horizon 3, 320 trajectories; one table for all prompts."""
    assert many.num_prompts == 8 and many.vocab == ("a", "b", "c", "<eos>") and many.horizon == 3
    assert many.num_trajectories == 320 and many.num_states == 104
    p = many.base_policy().probs()
    for pid in range(many.num_prefixes):          # the same prefix gets the same row under every prompt
        rows = p[many.prefix_id == pid]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=0)


def test_01_trajectory_probabilities_sum_to_one_and_match_the_chain_rule(many):
    """01: per prompt the trajectory probabilities sum to 1; Eq. 1 = trajectory_probs = log_prob."""
    base = many.base_policy()
    p = base.probs()
    traj = toyenv.trajectory_probs(base)
    np.testing.assert_allclose(np.bincount(many.prompt_of, weights=traj.sum(1)), 1.0, atol=1e-12)
    s, a = many.trajectories()
    seqs = many.decode(s, a)
    chain = [np.prod([p[many.state_index(x, t[:i]), t[i]] for i in range(len(t))]) for x, t in seqs]
    np.testing.assert_allclose(chain, traj[s, a], rtol=1e-12)
    np.testing.assert_allclose(base.log_prob(seqs).exp().detach().numpy(), traj[s, a], rtol=1e-10)


def test_01_top_trajectories_of_q0(many):
    """01: the five most likely completions of q0 (the cell lists them with their probabilities)."""
    traj = toyenv.trajectory_probs(many.base_policy())
    s, a = np.nonzero(many.terminal & (many.prompt_of == 0)[:, None])
    top = np.argsort(-traj[s, a], kind="stable")[:3]
    got = [many.render(t) for _, t in many.decode(s[top], a[top])]
    assert got == ["a a <eos>", "a b <eos>", "a c <eos>"]
    assert traj[s[top[0]], a[top[0]]] == pytest.approx(0.34 * 0.3 * 0.91)


def _tv_curve(mdp, seed=1, ns=(10, 100, 1_000, 10_000, 100_000)):
    base = mdp.base_policy()
    joint = toyenv.trajectory_probs(base) * mdp.prompt_weights[mdp.prompt_of][:, None]
    tv = []
    for n in ns:
        s, a = toyenv.sample_pairs(base, n, seed=seed)
        f = np.zeros_like(joint)
        np.add.at(f, (s, a), 1.0 / n)
        tv.append(0.5 * np.abs(f - joint).sum())
    p = joint[mdp.terminal]
    pred = [0.5 * np.sqrt(2 * p * (1 - p) / (np.pi * n)).sum() for n in ns]
    return np.array(ns), np.array(tv), np.array(pred)


def test_01_sampled_frequencies_converge_like_one_over_sqrt_n(many):
    """01: the distance shrinks with n; for n >= 1000 it is within a few percent of the normal
    prediction (we assert 10%); at n = 10 the prediction overshoots 1, the measured distance cannot."""
    ns, tv, pred = _tv_curve(many)
    assert np.all(np.diff(tv) < 0)
    big = ns >= 1000
    np.testing.assert_allclose(tv[big], pred[big], rtol=0.10)
    assert pred[0] > 1.0 >= tv[0]
    # and the same holds for other seeds (the claim is not a property of seed 1)
    for seed in (2, 3):
        ns, tv, pred = _tv_curve(many, seed=seed, ns=(1_000, 10_000, 100_000))
        np.testing.assert_allclose(tv, pred, rtol=0.15)


def test_01_samples_do_not_show_the_hidden_answer(hidden):
    """01: 'a sample contains it at least once with probability 0.4% (n=1000), 4% (n=10 000)';
    the seeded samples of the notebook contain none."""
    p = toyenv.success_prob(hidden.base_policy())[0]
    assert p == pytest.approx(4e-6)
    assert 1 - (1 - p) ** 1_000 == pytest.approx(0.004, abs=5e-4)
    assert 1 - (1 - p) ** 10_000 == pytest.approx(0.039, abs=1e-3)
    for n in (1_000, 10_000):
        s, a = toyenv.sample_pairs(hidden.base_policy(), n, seed=0)
        assert hidden.correct[s, a].sum() == 0


def test_01_success_common_vs_rare_prompts(many):
    """01: common prompts succeed with about 0.28, the rare ones with about 0.08; pass@1 is the mean."""
    succ = toyenv.success_prob(many.base_policy())
    rare = list(many.info["rare_prompts"])
    common = [i for i in range(many.num_prompts) if i not in rare]
    np.testing.assert_allclose(succ[common], 0.27573, atol=1e-5)
    np.testing.assert_allclose(succ[rare], 0.0819, atol=1e-5)
    assert toyenv.pass_at_k(many.base_policy(), 1) == pytest.approx(many.prompt_weights @ succ)


def test_01_off_policy_demo_is_one_in_a_quarter_million(hidden):
    """01: pi_base('h a <eos>' | q0) = 4e-6, about 250,000 samples to see it once."""
    p = float(hidden.base_policy().log_prob([(0, (3, 0, 4))]).detach().exp()[0])
    assert p == pytest.approx(4e-6, rel=1e-9)
    assert round(1 / p) == 250_000


# =========================================================================================== 02
@pytest.fixture(scope="module")
def short():
    """Notebook 02's world (and 00's widget): hidden-path with horizon 3, 21 states per prompt."""
    return toyenv.make("hidden-path", horizon=3)


def test_02_short_world_as_described(short):
    """02: 'all 21 states of a prompt'; 84 states; the correct answer of q0 is still h a <eos>."""
    assert short.num_states == 84 and short.num_states // short.num_prompts == 21
    assert short.is_correct(0, (3, 0, 4))
    assert np.nonzero(short.correct)[0].size == short.num_prompts


def test_02_occupancy_is_a_distribution_with_mass_d_of_x(short):
    """02: d sums to 1 and each prompt carries D(x)."""
    occ = toyenv.occupancy(short.base_policy())
    assert occ.sa.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(occ.per_prompt(), short.prompt_weights, atol=1e-12)


def test_02_visit_counts_sum_to_the_mean_length(short):
    """02: without 1/T(y) the occupancy sums to E[T(y)] (2.711881 here)."""
    base = short.base_policy()
    traj = toyenv.trajectory_probs(base)
    mean_len = float((short.prompt_weights[short.prompt_of][:, None] * traj * short.length).sum())
    visits = toyenv.occupancy(base, weighting="visits")
    assert visits.sa.sum() == pytest.approx(mean_len, abs=1e-12)
    assert round(mean_len, 6) == 2.711881


@pytest.mark.parametrize("name, kw", [("hidden-path", {"horizon": 3}), ("hidden-path", {}), ("scaffold", {})])
def test_02_conditional_of_uniform_occupancy_is_not_pi(name, kw):
    """02: with eta = 1/T(y), d(s,a)/d(s) != pi(a|s) (early <eos> weighs more); with visit counts it
    is pi(a|s) exactly, at every visited state."""
    mdp = toyenv.make(name, **kw)
    base = mdp.base_policy()
    p = base.probs()
    occ = toyenv.occupancy(base)
    vis = toyenv.occupancy(base, weighting="visits")
    seen = vis.s > 0
    np.testing.assert_allclose(vis.sa[seen] / vis.s[seen][:, None], p[seen], atol=1e-9)
    if name == "hidden-path":
        ratio = occ.sa[0] / occ.s[0]
        assert ratio[mdp.eos] > 2 * p[0, mdp.eos]          # 0.126 vs 0.05 (horizon 3)


def test_02_reachability_versus_availability(short):
    """02: (q0 root, h): reached surely, chosen with 1e-4; (q0|h, a): chosen with 0.2, reached with
    1e-4; both have tiny occupancy, unlike (q0 root, a)."""
    occ = toyenv.occupancy(short.base_policy())
    H = short.info["hidden_token"]
    root, after_h = short.state_index(0, ()), short.state_index(0, (H,))
    assert occ.reach[root] == 1.0 and occ.probs[root, H] == pytest.approx(1e-4)
    assert occ.reach[after_h] == pytest.approx(1e-4) and occ.probs[after_h, 0] == pytest.approx(0.2)
    assert occ.sa[root, H] == pytest.approx(9.166667e-6, rel=1e-6)
    assert occ.sa[after_h, 0] == pytest.approx(1.666667e-6, rel=1e-6)
    assert occ.sa[root, 0] > 1e-2


@pytest.mark.parametrize("name, kw", [("hidden-path", {"horizon": 3}), ("many-paths", {}), ("scaffold", {})])
def test_02_state_occupancy_and_reach(name, kw):
    """02 §3: the survey reads reachability from d(s) (Eq. 3), the course reports reach(s); with uniform
    weights d(s) = D(x) reach(s) E[1/T | through s], so D(x) reach(s) / H <= d(s) <= D(x) reach(s) / (t+1)
    at depth t; Eq. 2's weights are non-negative and sum to 1 per trajectory (the package's uniform)."""
    mdp = toyenv.make(name, **kw)
    occ = toyenv.occupancy(mdp.base_policy())
    Dr = mdp.prompt_weights[mdp.prompt_of] * occ.reach
    inside = mdp.depth < mdp.horizon                 # states at which an action is still taken
    assert np.all(occ.s[inside] <= Dr[inside] / (mdp.depth[inside] + 1) * (1 + 1e-9) + 1e-15)
    assert np.all(occ.s[inside] >= Dr[inside] / mdp.horizon * (1 - 1e-9) - 1e-15)
    root = mdp.roots
    np.testing.assert_allclose(occ.sa.sum(), 1.0, atol=1e-12)
    assert np.all(occ.s[root] <= mdp.prompt_weights * (1 + 1e-12))


def test_02_the_two_columns_of_the_reachability_table(short):
    """02 §3: q0 root and q0|h: reach 1 and 1e-4; d(s) smaller by the factor D(x) E[1/T]."""
    occ = toyenv.occupancy(short.base_policy())
    H = short.info["hidden_token"]
    root, after_h = short.state_index(0, ()), short.state_index(0, (H,))
    for s, depth in ((root, 0), (after_h, 1)):
        ratio = occ.s[s] / (short.prompt_weights[0] * occ.reach[s])
        assert 1 / short.horizon - 1e-12 <= ratio <= 1 / (depth + 1) + 1e-12


def test_02_heatmap_shows_both_kinds_of_rarity(short):
    """02: in the heatmap of q0 (eps = 1e-3) the h column and the rows from q0|h down lie outside
    E_eps; every other row has a pair inside."""
    H = short.info["hidden_token"]
    art = plots.plot_occupancy_heatmap(short.base_policy(), eps=1e-3, prompt=0, max_states=21)
    assert len(art.states) == 21
    assert not art.support[:, H].any()
    below_h = np.array([short.depth[s] >= 1 and short.tokens[s, 0] == H for s in art.states])
    assert not art.support[below_h].any()
    ends_in_h = np.array([short.depth[s] >= 1 and short.last_token[s] == H for s in art.states])
    assert art.support[~below_h & ~ends_in_h].any(axis=1).all()


def test_02_effective_support_shrinks_as_eps_grows(short):
    """02: |E_eps| and the mass it covers are non-increasing in eps (the two step curves)."""
    grid = np.logspace(-8, -1, 57)
    for mdp in (short, toyenv.make("many-paths")):
        occ = toyenv.occupancy(mdp.base_policy())
        size = np.array([toyenv.effective_support(occ, e).sum() for e in grid])
        mass = np.array([occ.sa[toyenv.effective_support(occ, e)].sum() for e in grid])
        assert np.all(np.diff(size) <= 0) and np.all(np.diff(mass) <= 1e-15)


def test_02_mass_is_covered_long_before_the_count_stops_growing(short):
    """02: 'the 180 pairs with d >= 1e-3 already hold 97% of the occupancy, and the other 240 pairs
    share the last 3%'."""
    occ = toyenv.occupancy(short.base_policy())
    m3 = toyenv.effective_support(occ, 1e-3)
    assert m3.sum() == 180 and round(float(occ.sa[m3].sum()), 2) == 0.97
    assert (occ.sa > 0).sum() - m3.sum() == 240


def test_02_correct_path_is_among_the_last_to_enter(short):
    """02: q0's correct path is inside E_eps exactly when eps <= its smallest occupancy, and its last
    step 'q0 | h a -> <eos>' has the smallest occupancy of the whole world."""
    occ = toyenv.occupancy(short.base_policy())
    H = short.info["hidden_token"]
    path = [(0, H), (short.state_index(0, (H,)), 0), (short.state_index(0, (H, 0)), short.eos)]
    lo = min(occ.sa[s, a] for s, a in path)
    assert lo == occ.sa[path[-1]] == pytest.approx(1 / 3 * 1e-6, rel=1e-9)
    assert lo == pytest.approx(occ.sa[occ.sa > 0].min(), rel=1e-12)
    inside = toyenv.effective_support(occ, lo)
    assert all(inside[s, a] for s, a in path)
    above = toyenv.effective_support(occ, lo * (1 + 1e-9))
    assert not above[path[-1]]


def test_02_support_sizes_quoted_in_the_checked_cell(short):
    """02: the NBVAL_CHECK_OUTPUT cell's sizes (kept in step with the prose)."""
    occ = toyenv.occupancy(short.base_policy())
    sizes = [int(toyenv.effective_support(occ, e).sum()) for e in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)]
    assert sizes == [24, 180, 228, 304, 340]
    assert math.isclose(occ.sa[toyenv.effective_support(occ, 1e-2)].sum(), 0.494518, abs_tol=1e-6)


def test_02_widget_slider_moves_the_support_outline(short):
    """00/02: the occupancy explorer (heatmap view, q0) redraws when eps moves and its counts
    panel shows |E_eps| over all prompts."""
    from toyenv import widgets
    app = widgets.occupancy_explorer([short.base_policy()], eps=1e-3, prompt=0, view="heatmap",
                                     max_states=21)
    before = app.pixels()
    bars = app.data["bars"]
    assert bars[1].get_height() == 180
    app.controls["eps"].value = 1e-6
    assert bars[1].get_height() == 340
    assert not np.array_equal(before, app.pixels())


def test_02_occupancy_falls_along_the_correct_path_and_the_support_is_prefix_closed(short):
    """02, exercise 02.2 and its reveal: along q0's h a <eos>, d is 9.17e-06, 1.67e-06, 3.33e-07, so the
    last step leaves E_eps first; every pair's parent pair carries at least the state's occupancy d(s),
    so E_eps is closed under prefixes (also in the other worlds and for a random policy)."""
    from toyenv.course.checks import nb02
    occ = toyenv.occupancy(short.base_policy())
    H = short.info["hidden_token"]
    path = [(short.state_index(0, ()), H), (short.state_index(0, (H,)), 0), (short.state_index(0, (H, 0)), short.eos)]
    d = [occ.sa[s, a] for s, a in path]
    assert [f"{v:.2e}" for v in d] == ["9.17e-06", "1.67e-06", "3.33e-07"]
    assert d[0] > d[1] > d[2] and nb02.first_to_leave() == "h a -> <eos>"
    assert 4 < d[0] / d[1] < 6 and 4 < d[1] / d[2] < 6                    # 'a factor of about 5 more at each step'
    assert short.base_policy().probs()[path[0]] == pytest.approx(1e-4)        # the rare choice of h
    for mdp, pi in [(short, short.base_policy()), (toyenv.make("many-paths"), None), (toyenv.make("scaffold"), None),
                    (short, toyenv.TabularPolicy(short, seed=3))]:
        o = toyenv.occupancy(pi if pi is not None else mdp.base_policy())
        inner = np.nonzero(mdp.parent >= 0)[0]
        assert np.all(o.sa[mdp.parent[inner], mdp.last_token[inner]] >= o.s[inner] - 1e-15)
        for eps in (1e-6, 1e-4, 1e-3, 1e-2):
            E = o.sa >= eps
            assert np.all(E[mdp.parent[inner], mdp.last_token[inner]] | ~E[inner].any(1))
