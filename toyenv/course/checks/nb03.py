"""Checks of notebook 03 (SFT as support expansion): the SFT token targets and the expanded set.

Registered with :mod:`toyenv.checks` (``checks.check("03.1", fn)``); see that module for the
machinery. Each check computes the answer of every typical mistake with a variant of the reference
and names the mistake whose answer the learner's matches.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

from .framework import Case, Failed, _tiny_world, _world, compare, describe_pair, exercise
from .steps import compare_update, optimizer_maker
from toyenv.core.tree import TokenMDP

NOTEBOOK = "03_sft_support_expansion"


# ------------------------------------------------------------------------------- 03.1
_PER_HINT = {
    "count": "you did not divide by the number of demonstrations N: the targets are token counts / N, so "
             "that the SFT loss is the mean negative log-likelihood per demonstration",
    "length": "you weighted each token by 1/(N T(y)), the occupancy weighting of Eq. 2; the SFT loss adds "
              "-log pi over every token of a demonstration, so each token gets weight 1/N",
    "tokens": "you divided by the total number of tokens, so your targets sum to 1; each token of each "
              "demonstration gets weight 1/N (N = the number of demonstrations), so they sum to the mean "
              "demonstration length",
}
_STEPS_HINT = {
    "last": "you counted only the last token of each demonstration; teacher forcing supervises every "
            "token y_t, at the state (x, y_<t) before it",
    "no-last": "you skipped the last token of each demonstration (often <eos>): ending the answer is an "
               "action the model has to learn too",
    "no-first": "you skipped the first token: it is chosen at the root state, "
                "mdp.state_index(x, ()) (the prompt with an empty prefix), so t starts at 0",
}
_WEIGH_HINT = ("you multiplied by the prompt weight D(x): the demonstrations already are a sample of "
               "prompts, and each one counts 1/N")
_PROMPT0_HINT = ("you used the states of prompt 0: look each state up under the demonstration's own prompt, "
                 "mdp.state_index(x, tokens[:t])")
_AFTER_HINT = ("If you looked up the state *after* token t: the state before token t is "
               "mdp.state_index(x, tokens[:t]); a complete sequence is not a state.")


def token_targets_variant(mdp, demos, *, per: str = "demo", steps: str = "all", weigh: bool = False,
                          prompt0: bool = False) -> np.ndarray:
    """SFT token targets ``[S, V]`` with the choices a learner can get wrong (defaults: right).

    ``per``: "demo" (1/N per token, right), "count" (1), "length" (1/(N T(y))), "tokens" (1/total
    tokens). ``steps``: "all", "last", "no-last", "no-first". ``weigh``: times D(x). ``prompt0``:
    states of prompt 0.
    """
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    n = len(demos)
    total = sum(len(t) for _, t in demos)
    for x, toks in demos:
        toks = tuple(int(t) for t in toks)
        L = len(toks)
        ts = {"all": range(L), "last": range(L - 1, L), "no-last": range(L - 1),
              "no-first": range(1, L)}[steps]
        w = {"demo": 1.0 / n, "count": 1.0, "length": 1.0 / (n * L), "tokens": 1.0 / total}[per]
        if weigh:
            w *= mdp.prompt_weights[x]
        for t in ts:
            out[mdp.state_index(0 if prompt0 else x, toks[:t]), toks[t]] += w
    return out


def _token_target_mistakes(mdp, demos) -> dict:
    out = {}
    for per, steps, weigh, p0 in itertools.product(("demo", "count", "length", "tokens"),
                                                   ("all", "last", "no-last", "no-first"),
                                                   (False, True), (False, True)):
        parts = ([_PER_HINT[per]] if per != "demo" else []) + \
                ([_STEPS_HINT[steps]] if steps != "all" else []) + \
                ([_WEIGH_HINT] if weigh else []) + ([_PROMPT0_HINT] if p0 else [])
        if parts:
            out["; and ".join(parts)] = token_targets_variant(mdp, demos, per=per, steps=steps,
                                                              weigh=weigh, prompt0=p0)
    return dict(sorted(out.items(), key=lambda kv: kv[0].count("; and ")))


def _demo_cases():
    mp = _world("many-paths")
    hp3 = _world("hidden-path", horizon=3)
    hp4 = _world("hidden-path")
    tiny = _tiny_world()
    from toyenv.methods import demonstrations
    mixed = mp.base_policy().sample(12, seed=3)                  # lengths 1 to 3, some not correct
    return [
        Case("many-paths: 12 completions sampled from the base policy (lengths 1 to 3)", (mp, mixed)),
        Case("hidden-path (horizon 3): 8 correct demonstrations from toyenv.demonstrations, with repeats",
             (hp3, demonstrations(hp3, 8, seed=0))),
        Case("hidden-path (horizon 4): 'h a <eos>' for q0 and 'a b c a' for q1 (ended by the horizon, "
             "no <eos>)", (hp4, [(0, (3, 0, 4)), (1, (0, 1, 2, 0))])),
        Case("many-paths: a single demonstration, q6 -> 'c c <eos>'", (mp, [(6, (2, 2, 3))])),
        Case("a one-prompt world with horizon 1: demonstrations 'a' and '<eos>'", (tiny, [(0, (0,)), (0, (1,))])),
    ]


@exercise("03.1", notebook=NOTEBOOK, title="SFT token targets (teacher forcing, §4.1)",
          hints=("Teacher forcing supervises every token of every demonstration, at the state just before "
                 "it. How much weight should one token get so that the SFT loss is a mean over "
                 "demonstrations?",
                 "For each demonstration (x, tokens) and each position t, the state is prompt x with the "
                 "first t tokens as its prefix (mdp.state_index) and the target is token t: add 1/N there, N "
                 "being the number of demonstrations. Every token counts, the first and the last (often "
                 "<eos>) included, and there are no D(x) or 1/T(y) weights."),
          reread="notebook 03's section on SFT as cross-entropy on someone else's trajectories (§4.1)",
          forbid=("toyenv.methods.token_targets", "toyenv.methods.data.token_targets",
                  "toyenv.course.checks.nb03.token_targets_variant"),
          own="count the demonstrations' tokens yourself")
def check_token_targets(fn):
    cases = _demo_cases()
    for case in cases:
        mdp, demos = case.args
        case.errors = {ValueError: _AFTER_HINT}
        expected = token_targets_variant(mdp, demos)
        got = case.call(fn)
        mean_len = float(np.mean([len(t) for _, t in demos]))

        def facts(arr, mean_len=mean_len):
            total = float(arr.sum())
            if abs(total - mean_len) > 1e-9:
                return (f"Your targets sum to {total:.6g}; the SFT targets sum to the mean demonstration "
                        f"length, {mean_len:.6g} here (each demonstration's T(y) tokens weigh 1/N each).")
            return None

        compare(got, expected, case=case, what="your targets", mistakes=_token_target_mistakes(mdp, demos),
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx), diagnose=facts)
    return (f"token targets of {len(cases)} demonstration sets (mixed lengths, repeats, a horizon-ended "
            "answer, a single demonstration, horizon 1) equal toyenv.methods.token_targets")


# ------------------------------------------------------------------------------- 03.2
def sft_step_variant(policy, optimizer, targets, *, logs: bool = True, reduce: str = "sum", sign: float = 1.0,
                     zero_grad: bool = True, step: bool = True) -> float:
    """One SFT update on token targets ``[S, V]`` with the choices a learner can get wrong (defaults:
    right): loss = -sum_{s,a} targets(s, a) log pi(a|s), clear the gradients, back-propagate, step.
    ``logs=False`` uses pi instead of log pi; ``reduce``: "sum" (right), "mean" (over all S*V
    entries), "per-demo" (divided once more by the targets' sum); ``sign=-1`` ascends the loss."""
    log_probs = policy.log_probs()
    t = torch.as_tensor(np.asarray(targets, dtype=float), dtype=log_probs.dtype)
    loss = -(t * (log_probs if logs else log_probs.exp())).sum()
    if reduce == "mean":
        loss = loss / t.numel()
    elif reduce == "per-demo":
        loss = loss / t.sum()
    loss = sign * loss
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return float(loss.detach())


def reference_sft_step(policy, optimizer, targets) -> float:
    """One SFT update from the package's pieces, the update ``toyenv.sft`` makes at every step: the
    teacher-forced cross-entropy ``toyenv.losses.sft_loss(policy.log_probs(), targets)``, then one
    optimizer step. Returns the loss. Notebook 03 trains with it while exercise 03.2 is unsolved."""
    from toyenv.methods.losses import sft_loss
    loss, _ = sft_loss(policy.log_probs(), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


_SFT_STEP_HINTS = [
    ("your update did not clear the gradients: loss.backward() adds to the .grad of every parameter, so the "
     "second update also applied the first one's gradient again; call optimizer.zero_grad() before "
     "loss.backward()", dict(zero_grad=False)),
    ("your update goes the wrong way: the optimizer minimises, so the loss is the negative log-likelihood, "
     "-sum targets(s, a) log pi(a|s); the demonstrated tokens must become more likely", dict(sign=-1.0)),
    ("you used pi(a|s) instead of log pi(a|s): the SFT loss is a cross-entropy, -sum targets(s, a) "
     "log pi(a|s), with the log-probabilities of policy.log_probs()", dict(logs=False)),
    ("you averaged over every (state, token) entry; the loss is the sum -sum_{s,a} targets(s, a) log pi(a|s) "
     "(the targets already carry the 1/N of the mean over demonstrations)", dict(reduce="mean")),
    ("you divided by the sum of the targets: they already carry the 1/N of the mean over demonstrations, "
     "so the loss is just -sum_{s,a} targets(s, a) log pi(a|s)", dict(reduce="per-demo")),
]


@functools.cache
def _sft_step_cases():
    """(name, policy, optimizer maker, batches) for the 03.2 check, built once."""
    from toyenv.core.policies import TabularPolicy
    from toyenv.methods import demonstrations
    from toyenv.methods.data import token_targets
    hp = _world("hidden-path", horizon=3)
    hb = hp.base_policy()
    t_hp = token_targets(hp, *hp.encode(demonstrations(hp, 8, seed=0)))
    mp = _world("many-paths")
    mb = mp.base_policy()                                     # one row per token prefix, shared by prompts
    own = mb.sample(12, seed=3)
    t_mp = token_targets(mp, *mp.encode(own))
    rand = TabularPolicy(hp, seed=5)                          # random logits, one row per state
    return [
        ("hidden-path (horizon 3) base policy, Adam lr 0.1, targets of 8 demonstrations", hb,
         optimizer_maker("adam", 0.1), ((t_hp,),)),
        ("hidden-path base policy, Adam lr 0.1, three updates in a row on the same targets", hb,
         optimizer_maker("adam", 0.1), ((t_hp,), (t_hp,), (t_hp,))),
        ("many-paths base policy (rows shared by prompts), SGD lr 0.5, targets of 12 of its own samples", mb,
         optimizer_maker("sgd", 0.5), ((t_mp,),)),
        ("hidden-path, a policy with random logits, SGD lr 1, two updates on the 8 demonstrations' targets",
         rand, optimizer_maker("sgd", 1.0), ((t_hp,), (t_hp,))),
    ]


@exercise("03.2", notebook=NOTEBOOK, title="One SFT update (teacher-forced cross-entropy, optimizer step)",
          kind="step",
          hints=("An update has two parts: a loss whose gradient makes the demonstrated tokens more likely, and "
                 "the optimizer's move. Which quantity of the policy does the SFT loss weigh with the token "
                 "targets, and does the optimizer maximise or minimise?",
                 "Take the log-probabilities of every state from policy.log_probs() (a torch tensor with "
                 "gradients), multiply them entry by entry with the targets (turned into a tensor of the same "
                 "dtype), add everything up and put a minus sign in front: the mean negative log-likelihood of "
                 "the demonstrations. Then clear the old gradients, back-propagate, let the optimizer step, and "
                 "give back the loss as a float."),
          reread="notebook 03's section on SFT as cross-entropy on someone else's trajectories (§4.1)",
          forbid=("toyenv.methods.losses.sft_loss", "toyenv.methods.sft.sft", "toyenv.methods.sft._sft_objective",
                  "toyenv.methods.loop.train", "toyenv.course.checks.nb03.reference_sft_step",
                  "toyenv.course.checks.nb03.sft_step_variant"),
          own="write the cross-entropy and the update yourself")
def check_sft_step(fn):
    cases = _sft_step_cases()
    for name, policy, make_opt, batches in cases:
        compare_update(fn, name, policy, make_opt, batches, reference_sft_step,
                       {hint: functools.partial(sft_step_variant, **kw) for hint, kw in _SFT_STEP_HINTS},
                       rtol=1e-7, atol=1e-9,
                       not_finite="your update made some parameters nan or inf: log pi is -inf where pi is 0, "
                                  "and 0 * (-inf) is nan; use policy.log_probs(), which stays finite")
    return (f"{len(cases)} cases: the hidden-path base, shared rows, random logits, Adam and SGD, several updates "
            "in a row")


# ------------------------------------------------------------------------------- 03.3
@functools.cache
def _sft_pairs():
    """(hidden-path base, after SFT) and (many-paths base, after SFT on its own correct samples)."""
    from toyenv.methods import demonstrations, sft
    hp = _world("hidden-path", horizon=3)
    hb = hp.base_policy()
    h_after = sft(hb, demonstrations(hp, 8, seed=0), steps=60, seed=0).policy
    mp = _world("many-paths")
    mb = mp.base_policy()
    own = [(x, t) for x, t in mb.sample(64, seed=0) if mp.is_correct(x, t)]
    m_after = sft(mb, own, steps=30, seed=0).policy
    return hb, h_after, mb, m_after


def expanded_variant(before, after, eps, *, after_ge: bool = True, before_lt: bool = True) -> np.ndarray:
    """Eq. 6 with either comparison possibly flipped: ``d_after >= eps`` and ``d_before < eps`` (right)."""
    a = after.sa >= eps if after_ge else after.sa > eps
    b = before.sa < eps if before_lt else before.sa <= eps
    return a & b


@exercise("03.3", notebook=NOTEBOOK, title="The expanded set (Eq. 6)",
          hints=("The expanded set is about pairs that cross the threshold in one direction. Which pairs "
                 "were outside E_eps before, and which are inside it after?",
                 "A pair is expanded when its occupancy after, occ_after.sa, is at least eps and its "
                 "occupancy before, occ_before.sa, is below eps (Eq. 6, with Eq. 5's >= for being in the "
                 "support). Combine the two entry-wise comparisons with a logical and: a boolean mask the "
                 "shape of occ_after.sa."),
          reread="notebook 03's section on expansion (the hidden path entering the support) and Eq. 6",
          forbid=("toyenv.support_change", "toyenv.core.exact.support_sets",
                  "toyenv.course.checks.nb03.expanded_variant"),
          own="compute the sets from the two occupancies")
def check_expanded_set(fn):
    from toyenv.core.exact import Occupancy, occupancy, occupancy_from_probs
    hb, h_after, mb, m_after = _sft_pairs()
    o_hb, o_ha, o_mb, o_ma = (occupancy(p) for p in (hb, h_after, mb, m_after))
    hp = o_hb.mdp
    h = hp.info["hidden_token"]
    tie_after = float(o_ha.sa[hp.roots[0], h])              # expanded pairs sit exactly at eps
    values = np.unique(o_mb.sa[o_mb.sa > 0])
    tie_same = float(values[len(values) // 2])               # pairs of both policies sit exactly at eps
    # one state, horizon 1, so d(s, a) = pi(a|s): a pair for every way a comparison at eps can go
    four = TokenMDP(("a", "b", "c", "d", "<eos>"), 4, 1, ("x",), verifier=lambda p, t: 0.0, name="one step")
    f0 = occupancy_from_probs(four, np.array([[0.1, 0.25, 0.35, 0.3, 0.0]]))
    f1 = occupancy_from_probs(four, np.array([[0.25, 0.3, 0.45, 0.0, 0.0]]))
    tiny = _tiny_world()
    t0 = occupancy_from_probs(tiny, np.array([[0.3, 0.7]]))
    t1 = occupancy_from_probs(tiny, np.array([[0.9, 0.1]]))
    cases = [
        Case("hidden-path (horizon 3): base -> after 60 SFT steps on 8 demonstrations, eps = 1e-3",
             (o_hb, o_ha, 1e-3)),
        Case("many-paths: base -> after SFT on its own correct samples, eps = 1e-3 (demonstrations "
             "already in support)", (o_mb, o_ma, 1e-3)),
        Case("a one-step world, d_before = (0.1, 0.25, 0.35, 0.3, 0) -> d_after = (0.25, 0.3, 0.45, 0, 0), "
             "eps = 0.25: pairs at eps before and after", (f0, f1, 0.25)),
        Case(f"hidden-path, base -> SFT, eps = {tie_after:.6g}, exactly d_after(q0 root, h)", (o_hb, o_ha, tie_after)),
        Case("hidden-path: the SFT policy as 'before' and the base as 'after', eps = 1e-3", (o_ha, o_hb, 1e-3)),
        Case(f"many-paths: the base policy before and after (nothing changes), eps = {tie_same:.6g}, "
             "exactly the occupancy of some pairs", (o_mb, o_mb, tie_same)),
        Case("a one-prompt world with horizon 1: pi = (0.3, 0.7) -> (0.9, 0.1), eps = 0.5", (t0, t1, 0.5)),
    ]
    for case in cases:
        before, after, eps = case.args
        assert isinstance(before, Occupancy)
        mdp = before.mdp
        expected = expanded_variant(before, after, eps)
        got = case.call(fn)
        e0, e1 = before.sa >= eps, after.sa >= eps
        compare(got, expected, case=case, what="your expanded set",
                where=lambda idx, mdp=mdp, b=before, a=after: describe_pair(mdp, *idx)
                + f" (d_before = {b.sa[idx]:.6g}, d_after = {a.sa[idx]:.6g})",
                mistakes={
                    "you returned E_eps(after), the whole support after training; Eq. 6 keeps only the "
                    "pairs that were NOT in E_eps(before)": e1,
                    "you returned the attrited set (Eq. 8): in the support before, out of it after; the "
                    "expanded set is the other way round": e0 & ~e1,
                    "you returned every pair whose membership changed (expanded and attrited together); "
                    "keep only those that entered the support": e0 ^ e1,
                    "you returned the shared support C_eps (Eq. 7), the pairs in both supports": e0 & e1,
                    "you returned the pairs outside E_eps(before) without asking that they are in "
                    "E_eps(after)": ~e0,
                    "a pair whose occupancy equals eps exactly is in the support (Eq. 5 uses >=): use "
                    "d_after >= eps, not >": expanded_variant(before, after, eps, after_ge=False),
                    "a pair with d_before exactly eps was already in E_eps(before), so it did not "
                    "expand: use d_before < eps, not <=": expanded_variant(before, after, eps, before_lt=False),
                    "both comparisons are off at eps itself: the support is d >= eps, so use d_after >= eps "
                    "and d_before < eps": expanded_variant(before, after, eps, after_ge=False, before_lt=False),
                    "you thresholded the change d_after - d_before; Eq. 6 asks whether a pair crosses "
                    "into the support: d_after >= eps and d_before < eps": after.sa - before.sa >= eps,
                    "you thresholded pi(a|s) (occ.probs), the action availability alone; Eq. 6 uses the "
                    "occupancy d(s, a) = occ.sa": (after.probs >= eps) & (before.probs < eps),
                    "you compared state occupancies d(s) (occ.s); Eq. 6 uses the state-action occupancy "
                    "d(s, a) = occ.sa": np.broadcast_to(((after.s >= eps) & (before.s < eps))[:, None],
                                                        after.sa.shape),
                    "return the mask itself, not its size (the size is mask.sum())": int(expected.sum()),
                })
    return (f"{len(cases)} cases: real expansion, nothing to expand, pairs exactly at eps, roles swapped, "
            "the same policy twice and a horizon-1 world")


# ------------------------------------------------------------------------------- 03.4
CHOICE_EPS = 1e-3
"""The threshold of exercise 03.4's support sets (Eq. 6 and 8)."""
CHOICE_STEPS = 100
"""SFT steps of exercise 03.4: ``toyenv.sft(base, demos, steps=100, seed=0)``, as in notebook 03."""
MAX_ATTRITED = 0.10
"""03.4's criterion: the attrited mass (Eq. 8, occupancy of the base) at most this."""
REPLAY_SEEDS = (100, 101, 102, 103, 104, 105)
REPLAY_SIZE = 64


def _hidden_world():
    return _world("hidden-path", horizon=3)


def hidden_answer(mdp, x: int) -> tuple:
    """Prompt ``x``'s only correct answer in hidden-path: h, its key, <eos>."""
    return (mdp.info["hidden_token"], mdp.info["keys"][x], mdp.eos)


@functools.cache
def demo_candidates() -> tuple:
    """Exercise 03.4's candidate list: ``((description, demos), ...)`` in the hidden-path world with
    horizon 3. Candidates 0-3 are the correct answers of q0-q3 (one demonstration each), 4-9 are
    replay sets: 64 completions sampled from the base policy each (its own behaviour, almost all wrong)."""
    mdp = _hidden_world()
    base = mdp.base_policy()
    out = [(f"{mdp.prompts[x]} -> {mdp.render(hidden_answer(mdp, x))} (the correct answer of {mdp.prompts[x]})",
            ((x, hidden_answer(mdp, x)),)) for x in range(mdp.num_prompts)]
    for k, seed in enumerate(REPLAY_SEEDS):
        samples = tuple(base.sample(REPLAY_SIZE, seed=seed))
        n_ok = sum(mdp.is_correct(x, y) for x, y in samples)
        out.append((f"replay set {k + 1}: {REPLAY_SIZE} completions sampled from the base policy (seed {seed}), "
                    f"{n_ok} of them correct", samples))
    return tuple(out)


@functools.cache
def choice_outcome(choice: tuple) -> dict:
    """SFT on the candidates ``choice`` (indices, repeats count twice): what exercise 03.4 measures."""
    from toyenv.core.exact import support_change, success_prob
    from toyenv.methods.sft import sft
    mdp = _hidden_world()
    base = mdp.base_policy()
    cands = demo_candidates()
    demos = [d for i in choice for d in cands[i][1]]
    policy = sft(base, demos, steps=CHOICE_STEPS, seed=0).policy
    ch = support_change(base, policy, CHOICE_EPS)
    missing = []
    for x in range(mdp.num_prompts):
        ans = hidden_answer(mdp, x)
        pairs = [(mdp.state_index(x, ans[:t]), ans[t]) for t in range(len(ans))]
        if not all(ch.expanded[s, a] for s, a in pairs):
            missing.append(x)
    return {"missing": missing, "expanded_mass": ch.expanded_mass, "attrited_mass": ch.attrited_mass,
            "attrited": int(ch.attrited.sum()), "expanded": int(ch.expanded.sum()),
            "success": [float(v) for v in success_prob(policy)], "n_demos": len(demos),
            "shown": sorted({x for i in choice for x, y in cands[i][1] if mdp.is_correct(x, y)})}


def choice_meets_target(choice) -> bool:
    out = choice_outcome(tuple(sorted(int(i) for i in choice)))
    return not out["missing"] and out["attrited_mass"] <= MAX_ATTRITED


@exercise("03.4", notebook=NOTEBOOK, title="Choose demonstrations that expand the hidden path with little attrition",
          kind="experiment",
          hints=("Two things happen in one SFT run: the demonstrated answers enter the support, and whatever the "
                 "targets leave out loses mass. What would keep the base's other behaviour in the targets, and "
                 "what does it cost the demonstrated answers?",
                 "Every prompt needs its own correct answer among the demonstrations (one row of logits per "
                 "state: nothing carries over between prompts). On their own, the four answers attrit most of "
                 "the base's support. Replay sets put the base's own completions back into the targets, which "
                 "protects its support but dilutes the demonstrations; too many and the hidden answers no "
                 "longer reach the threshold. Try a few mixtures with toyenv.sft and toyenv.support_change (100 "
                 "steps, seed 0, threshold 1e-3), repeating the correct answers if they get too diluted."),
          reread="notebook 03's sections on expansion and on the three sets (expanded, shared, attrited)")
def check_demo_choice(choice):
    cands = demo_candidates()
    if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool):
        choice = [choice]
    if not isinstance(choice, (list, tuple)) or not choice:
        raise Failed(f"your choice is {type(choice).__name__} {choice!r}; give a non-empty list of candidate "
                     f"indices, e.g. [0, 4] (0 to {len(cands) - 1}; an index given twice counts twice)")
    bad = [i for i in choice if isinstance(i, bool) or not isinstance(i, (int, np.integer))
           or not 0 <= int(i) < len(cands)]
    if bad:
        raise Failed(f"{bad[0]!r} is not a candidate index: the candidates are numbered 0 to {len(cands) - 1}")
    if len(choice) > 40:
        raise Failed(f"you chose {len(choice)} candidates; the experiment needs far fewer (at most 40)")
    key = tuple(sorted(int(i) for i in choice))
    out = choice_outcome(key)
    mdp = _hidden_world()
    got = (f"SFT on your {out['n_demos']} demonstrations (candidates {list(key)}) expanded {out['expanded']} pairs "
           f"(mass {out['expanded_mass']:.3f}) and attrited {out['attrited']} (mass {out['attrited_mass']:.3f}) at "
           f"eps = {CHOICE_EPS:g}")
    if out["missing"]:
        names = ", ".join(mdp.prompts[x] for x in out["missing"])
        unshown = [x for x in out["missing"] if x not in out["shown"]]
        if unshown:
            raise Failed(f"{got}, but the hidden answer of {', '.join(mdp.prompts[x] for x in unshown)} did not "
                         "expand: none of your demonstrations shows it, and with one row of logits per state a "
                         "demonstration for one prompt teaches nothing at another prompt's states")
        succ = ", ".join(f"{out['success'][x]:.4f}" for x in out["missing"])
        raise Failed(f"{got}, but the hidden answer of {names} did not enter the support (success {succ}): the "
                     "replay completions outnumber the demonstrations so much that the answer's pairs stay below "
                     "eps. Use fewer replay sets, or repeat the correct answers")
    if out["attrited_mass"] > MAX_ATTRITED:
        raise Failed(f"{got}: more than {MAX_ATTRITED} of the base's occupancy left the support. SFT concentrates "
                     "the policy on what its targets contain and everything else fades (Eq. 8). Put more of the "
                     "base's own behaviour into the targets: add replay sets")
    succ = sum(out["success"]) / len(out["success"])
    return (f"{got}: every hidden answer entered E_eps with little attrition (mean success {succ:.3f}). Replay keeps "
            "the base's behaviour in the targets (§3.3.4, Eq. 8) at the price of a weaker pull on the new answers")
