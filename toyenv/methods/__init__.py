"""Post-training methods: pure losses, one loop, one file per method family (survey §4-§5, §7).

Every method has one shape: check the policy and options (the validators of ``loop.py``, before any
work), build its data (``data.py``), name its objective from the pure losses (``losses.py``), call
the one loop (``loop.py``) and return a :class:`Run` whose ``policy``, ``snapshots`` and ``history``
describe the training and whose ``artifacts`` hold anything else it built (the reward model of
:func:`rlhf`); the input policy is never changed. Every method accepts the loop's options (``steps``,
``lr``, ``seed``, ``optimizer``, ``snapshot_steps``, ``num_snapshots``). ``beta`` always means the
weight of a KL penalty (the JSD mixture weight of distillation is ``jsd_weight``).

``METHODS`` is the one table of methods: name -> the function that runs it, its trajectory
provenance, supervision interface, survey section and paper (survey Tables 3-4). ``Run.method`` is
one of its keys.
"""
from __future__ import annotations

from .data import demonstrations, preference_pairs, token_targets
from .distill import distill, state_map, teacher_view
from .dpo import dpo, online_dpo
from .fit import base_transformer, fit
from .loop import Run, train
from .rl import interleaved, kl_optimum, rl
from .rlhf import RewardModel, bon_kl_bound, bon_policy, bon_probs, reward_model, rlhf
from .sft import anchored_sft, rejection_sampling, self_improve, sft
from ..core.tree import paths  # noqa: F401 (kept importable from here)

METHODS = {
    "sft": dict(function=sft, provenance="off-policy", interface="token targets", survey="§4.1",
                paper="supervised fine-tuning / behaviour cloning (InstructGPT, Ouyang et al. 2022)"),
    "sft/anchored": dict(function=anchored_sft, provenance="off-policy", interface="token targets + KL anchor to a reference",
                         survey="§7.1.1", paper="anchored SFT (Zhu et al., ref. [126]); proximal SFT (ref. [124])"),
    "dpo": dict(function=dpo, provenance="off-policy", interface="preferences", survey="§4.2",
                paper="Direct Preference Optimization (Rafailov et al. 2023)"),
    "dpo/online": dict(function=online_dpo, provenance="on-policy-like (pairs refreshed from the current learner)",
                       interface="preferences", survey="§4.2, §6.5.5 (Table 7)",
                       paper="online / iterative DPO (Guo et al. 2024, online AI feedback; Xiong et al. 2024)"),
    "rft": dict(function=rejection_sampling, provenance="off-policy (self-generated, filtered once)", interface="verifier filter",
                survey="§4.3", paper="rejection-sampling fine-tuning (Yuan et al. 2023)"),
    "self-improve": dict(function=self_improve, provenance="on-policy rounds (iterated offline)", interface="verifier filter",
                         survey="§4.3, §5.3", paper="STaR (Zelikman et al. 2022)"),
    "rl/reinforce": dict(function=rl, provenance="on-policy", interface="verifier reward", survey="§5.1",
                         paper="REINFORCE with leave-one-out baseline (Williams 1992; RLOO, Ahmadian et al. 2024)"),
    "rl/grpo": dict(function=rl, provenance="on-policy", interface="verifier reward", survey="§5.1",
                    paper="GRPO (Shao et al. 2024, DeepSeekMath); PPO clipping (Schulman et al. 2017)"),
    "rl/exact": dict(function=rl, provenance="on-policy (exact expectation, no sampling)", interface="verifier reward",
                     survey="§5.1", paper="KL-regularised policy gradient, computed over the whole tree"),
    "rl/process": dict(function=rl, provenance="on-policy", interface="process reward (exact per-state success value)",
                       survey="§5.2", paper="process supervision (Lightman et al. 2023); dense V(s') - V(s) advantages"),
    "rl/guided": dict(function=rl, provenance="hybrid (off-policy hint prefixes, on-policy continuations)",
                      interface="verifier reward + hint prefixes", survey="§5.1, §7.1.3",
                      paper="off-policy prefix guidance (e.g. LUFFY, Yan et al. 2025, ref [112]; QuestA 2025)"),
    "interleaved": dict(function=interleaved, provenance="hybrid", interface="token targets + verifier reward", survey="§7.1.3",
                        paper="single-stage SFT + RL loss (e.g. SRFT, Fu et al., ref [113]; UFT, ref [114])"),
    "distill/off-policy": dict(function=distill, provenance="off-policy (teacher rollouts)", interface="teacher next-token distributions",
                               survey="§4.4", paper="logit distillation (Hinton et al. 2015); word-level KD (Kim & Rush 2016)"),
    "distill/sft": dict(function=distill, provenance="off-policy (teacher rollouts)", interface="teacher tokens (SFT on teacher samples)",
                        survey="§4.4, §4.1", paper="sequence-level KD (Kim & Rush 2016)"),
    "distill/on-policy": dict(function=distill, provenance="on-policy (student rollouts)", interface="teacher next-token distributions",
                              survey="§5.4, §7.1.5", paper="GKD (Agarwal et al. 2024, ref [60]); MiniLLM (Gu et al. 2024, ref [6])"),
    "distill/teacher-labels": dict(function=distill, provenance="on-policy or mixed (student rollouts)",
                                   interface="teacher tokens on student states", survey="§5.4",
                                   paper="DAgger (Ross et al. 2011)"),
    "distill/mixed": dict(function=distill, provenance="mixed: a fraction λ of student rollouts", interface="teacher next-token distributions",
                          survey="§4.4, §5.4", paper="GKD's student-data fraction λ (Agarwal et al. 2024)"),
    "rlhf": dict(function=rlhf, provenance="on-policy", interface="learned reward model (from preferences)", survey="§5.1, §4.2",
                 paper="RLHF (Christiano et al. 2017; Ouyang et al. 2022); over-optimisation (Gao et al. 2023, ref [98])"),
    "best-of-n": dict(function=bon_policy, provenance="on-policy samples, selected at inference", interface="reward model ranking",
                      survey="§5.1", paper="best-of-n sampling (Nakano et al. 2021; Gao et al. 2023)"),
}
"""Method name -> function, provenance, supervision interface, survey section, paper."""


def method_function(name: str):
    """The function behind a ``METHODS`` key or a method's function name ("rl/grpo" or "rl" -> rl)."""
    if name in METHODS:
        return METHODS[name]["function"]
    for entry in METHODS.values():
        if entry["function"].__name__ == name:
            return entry["function"]
    names = sorted(set(METHODS) | {e["function"].__name__ for e in METHODS.values()})
    raise ValueError(f"no method {name!r}; known: {', '.join(names)}")
