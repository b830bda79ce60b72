"""toyenv: a token world small enough to compute LLM post-training exactly.

Layers, each importing only from itself and the layers before it:
    core/      the world and its exact numbers (no training)
    methods/   pure losses, one loop, one file per method family, the METHODS table
    analysis/  reading runs: role diagnosis, pipelines and handoffs, forgetting, experiments
    viz/       figures and widgets
    course/    the course's tooling (exercise checks, learner-edition build, grader); imports the
               science, imported by none of it

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
# the one place the version is written: pyproject.toml reads it, CHANGELOG.md's top entry matches it
__version__ = "0.1.0"

from .core.tree import TokenMDP, tree_size
from .core.policies import Policy, TabularPolicy, TransformerPolicy
from .core.presets import describe, make, presets
from .core.exact import (Occupancy, SupportChange, distinct_correct, effective_support, entropy,
                         expected_reward, held_out_attrition, informative_group_prob, kl, occupancy,
                         ROLE_RATIO, pass_at_k, pass_at_k_unbiased, reach, role_of, sample_pairs, success_prob,
                         success_value, support_change, support_sets, trajectory_probs, trajectory_support)
from .core import estimate  # noqa: F401  sampled estimators and their exact twins (notebook 10)
from .methods import (METHODS, RewardModel, Run, base_transformer, bon_kl_bound, bon_policy, bon_probs,
                      demonstrations, distill, dpo, fit, interleaved, kl_optimum, online_dpo, preference_pairs,
                      rejection_sampling, reward_model, rl, rlhf, self_improve, sft, state_map,
                      teacher_view, train)
from .analysis.pipeline import Diagnosis, PipelineReport, diagnose, pipeline
from .analysis.forgetting import (at_matched_gain, family_demos, family_success, family_task, forgetting,
                                 forgetting_curve, replay_sft)
from .analysis.experiments import after_slip, compare_provenance, mode_scan, overoptimization
from .analysis.borderline import borderline_cases
from .viz import plots, widgets  # noqa: F401  `from toyenv import plots, widgets`
from .viz.plots import (plot_handoff, plot_history, plot_kl_reward, plot_occupancy_heatmap, plot_pass_at_k,
                        plot_support_vs_eps, plot_tree)

__all__ = [
    "plot_tree", "plot_occupancy_heatmap", "plot_support_vs_eps", "plot_pass_at_k", "plot_history",
    "plot_kl_reward", "plot_handoff",
    "Run", "train", "METHODS", "demonstrations", "sft", "dpo", "online_dpo", "borderline_cases", "preference_pairs", "rejection_sampling",
    "self_improve", "rl", "interleaved", "kl_optimum",
    "distill", "state_map", "teacher_view", "mode_scan", "after_slip", "compare_provenance", "fit",
    "base_transformer", "RewardModel", "reward_model", "rlhf", "overoptimization", "bon_probs",
    "bon_policy", "bon_kl_bound", "pipeline", "PipelineReport", "diagnose", "Diagnosis", "forgetting",
    "forgetting_curve", "at_matched_gain", "family_success", "family_task", "family_demos", "replay_sft",
    "TokenMDP", "tree_size", "Policy", "TabularPolicy", "TransformerPolicy", "make", "presets",
    "describe", "Occupancy", "SupportChange", "occupancy", "effective_support", "support_change",
    "trajectory_support", "trajectory_probs", "reach", "success_prob", "expected_reward",
    "success_value", "pass_at_k", "pass_at_k_unbiased", "distinct_correct", "kl", "entropy",
    "sample_pairs", "role_of", "ROLE_RATIO", "held_out_attrition", "informative_group_prob", "support_sets",
]
