"""toyenv: a token world small enough to compute LLM post-training exactly.

A companion package to the course on the survey "LLM post-training" (arXiv 2604.07941). The whole
prefix tree of a small token MDP is enumerated, so the survey's distribution-level objects
(occupancy, effective support, expansion, reshaping, attrition) are computed exactly.

Glossary (used in names, docstrings and shape comments):
    x       prompt                      y      completion (tokens, ending in <eos> or at the horizon)
    s       state = (x, y_<t), a prefix a      action = the next token
    S, V    number of states, vocabulary size   P   number of prompts
    pi      policy pi(a|s)              pi_ref reference policy
    r       verifier reward r(x, y)     eps    support threshold ε
    d       occupancy d(s, a) (Eq. 2)   beta   KL weight
    reach   P(prefix s is visited | x)  terminal pair  the (s, a) whose token ends a trajectory
"""
from .mdp import TokenMDP, tree_size
from .policies import Policy, TabularPolicy, TransformerPolicy
from .worlds import describe, make, presets
from .exact import (Occupancy, SupportChange, distinct_correct, effective_support, entropy,
                    expected_reward, kl, occupancy, pass_at_k, pass_at_k_unbiased, reach,
                    role_of, sample_pairs, success_prob, success_value, support_change,
                    trajectory_probs, trajectory_support)

__all__ = [
    "TokenMDP", "tree_size", "Policy", "TabularPolicy", "TransformerPolicy", "make", "presets",
    "describe", "Occupancy", "SupportChange", "occupancy", "effective_support", "support_change",
    "trajectory_support", "trajectory_probs", "reach", "success_prob", "expected_reward",
    "success_value", "pass_at_k", "pass_at_k_unbiased", "distinct_correct", "kl", "entropy",
    "sample_pairs", "role_of",
]
__version__ = "0.1.0"
