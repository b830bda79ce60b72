"""Exercise checks of Notebook 01, policies over trajectories: a sequence's probability by the chain rule, success probability."""
from __future__ import annotations

import numpy as np

from .framework import Case, _tiny_world, _world, compare, exercise


def _seq_prob_variant(mdp, probs, x, toks, *, first=True, last=True, combine="prod"):
    ts = range(0 if first else 1, len(toks) - (0 if last else 1))
    factors = [probs[mdp.state_index(x, toks[:t]), toks[t]] for t in ts]
    if combine == "prod":
        return float(np.prod(factors))
    if combine == "sum":
        return float(np.sum(factors))
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log(factors)))


@exercise("01.1", notebook="01_policies_over_trajectories",
          title="Sequence probability by the chain rule (Eq. 1)",
          hints=("The chain rule (Eq. 1) builds pi(y|x) from one factor per token. For token t, which state "
                 "is the policy in when it chooses it, and which entry of probs is the factor?",
                 "For every position t of the completion, first and last (often <eos>) included: the state "
                 "before token t is the prompt with the first t tokens as its prefix, and "
                 "mdp.state_index(prompt, prefix) gives its row. The factor is probs at that row, in the "
                 "column of token t. pi(y|x) is the product of all the factors: not their sum, not their "
                 "log, no D(x)."),
          reread="notebook 01's section on a policy on the prefix tree, and Eq. 1 (survey §2.1)",
          forbid=("toyenv.core.passes.trajectory_probs_from", "toyenv.trajectory_probs",
                  "toyenv.core.policies.sequence_log_prob", "toyenv.course.checks.nb01._seq_prob_variant"),
          own="multiply the per-token probabilities yourself")
def check_sequence_probability(fn):
    from toyenv.core.policies import TabularPolicy
    hp = _world("hidden-path")
    hp_p = hp.base_policy().probs()
    mp = _world("many-paths")
    rnd = TabularPolicy(mp, seed=7, scale=1.5).probs()       # one row per state: prompts differ
    tiny = _tiny_world()
    tiny_p = np.array([[0.3, 0.7]])
    a, b, c, h, E = range(5)
    cases = [
        Case("hidden-path base policy, prompt 0, y = 'a b <eos>'", (hp, hp_p, 0, (a, b, E))),
        Case("many-paths random policy, prompt 5, y = 'a b <eos>'", (mp, rnd, 5, (0, 1, 3))),
        Case("hidden-path base policy, prompt 1, y = 'a a b c' (ended by the horizon, no <eos>)",
             (hp, hp_p, 1, (a, a, b, c))),
        Case("hidden-path base policy, prompt 2, y = '<eos>' (a one-token completion)", (hp, hp_p, 2, (E,))),
        Case("hidden-path base policy, prompt 1, the correct answer 'h b <eos>' (probability ~4e-6)",
             (hp, hp_p, 1, (h, b, E))),
        Case("a one-prompt world with horizon 1, y = 'a'", (tiny, tiny_p, 0, (0,))),
    ]
    for case in cases:
        mdp, p, x, toks = case.args
        expected = _seq_prob_variant(mdp, p, x, toks)
        got = case.call(fn)
        compare(got, expected, case=case, rtol=1e-9, atol=1e-15, what="your probability", mistakes={
            "you left out the last token's factor: the final token (often <eos>) is an action too, "
            "so pi(y_T | x, y_<T) belongs to the product": _seq_prob_variant(mdp, p, x, toks, last=False),
            "you left out the first token's factor: the first token is chosen at the root state "
            "(the prompt with an empty prefix, tokens[:0]), so t starts at 0":
                _seq_prob_variant(mdp, p, x, toks, first=False),
            "you returned log pi(y|x); the exercise asks for the probability itself (multiply the "
            "factors, or exponentiate the sum of logs)": _seq_prob_variant(mdp, p, x, toks, combine="log"),
            "you added the per-token probabilities; the chain rule (Eq. 1) multiplies them":
                _seq_prob_variant(mdp, p, x, toks, combine="sum"),
            "you multiplied by the prompt weight D(x); pi(y|x) is conditional on the prompt":
                mdp.prompt_weights[x] * expected,
            "you used the states of prompt 0: look each state up under the given prompt, "
            "mdp.state_index(prompt_index, tokens[:t])": _seq_prob_variant(mdp, p, 0, toks),
        })
    return (f"{len(cases)} sequences: ended by <eos> or by the horizon, a one-token completion, a "
            "rare correct answer, a prompt-dependent policy and a horizon-1 world")


def _success_variant(mdp, traj, *, mask=None, weight_prompts=False, count=False):
    mask = mdp.correct if mask is None else mask
    s, a = np.nonzero(mask)
    w = np.ones(len(s)) if count else traj[s, a]
    out = np.bincount(mdp.prompt_of[s], weights=w, minlength=mdp.num_prompts)
    return out * mdp.prompt_weights if weight_prompts else out


@exercise("01.2", notebook="01_policies_over_trajectories",
          title="Exact success probability from trajectory probabilities",
          hints=("p_x is the probability that a completion of prompt x is correct. Which entries of "
                 "traj_probs are complete and correct completions, and to which prompt does each belong?",
                 "Keep the terminal pairs (s, a) marked correct in mdp.correct; add each one's trajectory "
                 "probability, traj_probs at (s, a), to the total of its prompt, mdp.prompt_of at s. The "
                 "result has one entry per prompt, and is conditional on the prompt: no D(x) weights."),
          reread="notebook 01's section on sampling versus exact probabilities",
          forbid=("toyenv.success_prob", "toyenv.core.exact.success_from_probs", "toyenv.expected_reward",
                  "toyenv.success_value", "toyenv.course.checks.nb01._success_variant"),
          own="add up the probabilities of the correct completions yourself")
def check_success_probability(fn):
    from toyenv.core.exact import trajectory_probs
    from toyenv.core.policies import TabularPolicy
    worlds = [("many-paths base policy", _world("many-paths"), None),
              ("scaffold base policy (D(x) = 0 on the hinted prompts)", _world("scaffold"), None),
              ("two-skills random policy", _world("two-skills"), 3),
              ("hidden-path base policy (success ~2e-5 per prompt)", _world("hidden-path"), None),
              ("a one-prompt world with horizon 1", _tiny_world(), 4)]
    n = 0
    for name, mdp, seed in worlds:
        pi = mdp.base_policy() if seed is None else TabularPolicy(mdp, seed=seed, scale=1.5)
        traj = trajectory_probs(pi)
        case = Case(name, (mdp, traj))
        expected = _success_variant(mdp, traj)
        got = case.call(fn)
        compare(got, expected, case=case, rtol=1e-9, atol=1e-15, what="your success probabilities",
                mistakes={
                    "you multiplied by D(x): the success probability p_x = P(correct | x) is per "
                    "prompt and conditional on x (the weighted average sum_x D(x) p_x is another number)":
                        _success_variant(mdp, traj, weight_prompts=True),
                    "you returned the prompt-weighted average; return one number per prompt, an array "
                    "of shape (num_prompts,)": float(mdp.prompt_weights @ expected),
                    "you added up every complete trajectory (that gives 1 per prompt); keep only the "
                    "correct ones, mdp.correct[s, a]": _success_variant(mdp, traj, mask=mdp.terminal),
                    "you counted the correct completions; weight each by its probability "
                    "traj_probs[s, a]": _success_variant(mdp, traj, count=True),
                    "you added up the incorrect completions: that is 1 - p_x":
                        _success_variant(mdp, traj, mask=mdp.terminal & ~mdp.correct),
                })
        n += 1
    return f"per-prompt success on {n} worlds, with unequal prompt weights and a horizon-1 world"
