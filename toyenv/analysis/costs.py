"""What a run cost, counted from its method and configuration, and four supervision interfaces on
one problem (survey Table 8: choosing interfaces, §7.2.2; evaluating multi-stage systems with their
cost, §7.2.5).

:func:`cost` reads a :class:`Run` (or several, e.g. a pipeline's stages) and returns the counts a
cost-aware report needs: optimiser updates, completions sampled from the learner, completions
sampled from a teacher, states a teacher scored, evaluator calls (verifier, reward model or
preference labels), external examples (demonstrations or given pairs), and whether the run used
the exact expectation over the whole tree instead of samples (a twin no real system has). The
counts follow each method's sampling schedule exactly and count what the updates used: the
training loop's last pass, which only logs the final policy's loss, may draw one more batch that
updates nothing and is left out. ``tests/test_course_claims_mechanisms.py`` checks the counts
against the samples the methods actually draw.
"""
from __future__ import annotations

import math

from ..core.exact import pass_at_k, success_prob
from ..core.presets import make
from ..methods.data import demonstrations
from ..methods.distill import distill
from ..methods.dpo import dpo
from ..methods.loop import Run, check_count
from ..methods.rl import kl_optimum, rl
from ..methods.sft import sft
from .pipeline import PipelineReport, diagnose

COST_KEYS = ("updates", "learner_samples", "teacher_samples", "teacher_scored", "evaluator_calls",
             "external_examples", "exact")


def _zero() -> dict:
    return {k: 0 for k in COST_KEYS if k != "exact"} | {"exact": False}


def cost(run) -> dict:
    """Cost counts of a :class:`Run`, a list of runs or a :class:`PipelineReport` (summed over stages).

    Keys: ``updates``; ``learner_samples`` (completions sampled from the policy being trained, at
    any time: a filter's one batch, RL's rollouts, DPO's candidates); ``teacher_samples``
    (completions a teacher generated); ``teacher_scored`` (learner completions whose states a
    teacher scored); ``evaluator_calls`` (completions scored by a verifier or a reward model, plus
    preference labels); ``external_examples`` (demonstrations or preference pairs given from
    outside); ``exact`` (True if any stage used the exact expectation over the whole tree).
    """
    if isinstance(run, PipelineReport):
        run = run.runs
    if isinstance(run, (list, tuple)):
        total = _zero()
        for r in run:
            c = cost(r)
            for k in COST_KEYS:
                total[k] = (total[k] or c[k]) if k == "exact" else total[k] + c[k]
        return total
    if not isinstance(run, Run):
        raise TypeError(f"cost needs a Run, a list of runs or a PipelineReport, got {type(run).__name__}")
    m, c = run.method, run.config
    out = _zero()
    out["updates"] = int(c.get("steps", run.history["step"][-1]))
    steps = out["updates"]
    if m in ("sft", "sft/anchored"):
        out["external_examples"] = int(c["n_demos"])
    elif m == "rft":
        out["learner_samples"] = out["evaluator_calls"] = int(c["n_samples"])
    elif m == "self-improve":
        out["learner_samples"] = out["evaluator_calls"] = int(c["rounds"]) * int(c["n_samples"])
    elif m == "dpo":
        if c.get("pairs_given"):
            out["external_examples"] = int(c["n_pairs"])
        else:
            n = int(c["n_prompts"]) * int(c["n_candidates"])
            out["learner_samples"] = out["evaluator_calls"] = n
    elif m == "dpo/online":
        n = math.ceil(steps / int(c["refresh"])) * int(c["n_prompts"]) * int(c["n_candidates"])
        out["learner_samples"] = out["evaluator_calls"] = n
    elif m.startswith("rl/") or m == "interleaved" or m == "rlhf":
        if c.get("exact"):
            out["exact"] = True
        else:
            batches = math.ceil(steps / int(c.get("epochs", 1) or 1))
            n = batches * int(c["n_prompts_per_step"]) * int(c["group_size"])
            out["learner_samples"] = out["evaluator_calls"] = n
        if m == "interleaved":
            out["external_examples"] = int(c["n_demos"])
        if m == "rlhf":                          # the reward model: 2 start-policy samples and a label per pair
            out["learner_samples"] += 2 * int(c.get("n_pairs", 0))
            out["evaluator_calls"] += int(c.get("n_pairs", 0))
    elif m.startswith("distill"):
        if c.get("exact"):
            out["exact"] = True
        else:
            n = int(c["n_samples"])
            n_on = int(round(float(c["on_policy"]) * n))
            out["learner_samples"] = out["teacher_scored"] = steps * n_on
            out["teacher_samples"] = steps * (n - n_on)
    else:
        raise ValueError(f"cost does not know the method {m!r} of this run")
    return out


def interfaces_on_one_problem(world: str = "scaffold", *, steps: int = 60, seed: int = 0, n_demos: int = 16,
                              eps: float = 1e-3) -> dict:
    """Four supervision interfaces on one problem (survey §7.2.2's controlled comparison): one
    world, one start policy, one verifier, the same number of updates; only the interface differs.

    - token targets: :func:`toyenv.sft` on ``n_demos`` correct demonstrations (external);
    - preferences: :func:`toyenv.dpo` on pairs of the start policy's candidates ranked by the verifier;
    - verifier reward: :func:`toyenv.rl` (GRPO, beta = 0) on the learner's own rollouts;
    - teacher distributions: :func:`toyenv.distill`, off-policy (teacher rollouts), the teacher being
      the world's hinted view when it has one (the scaffold), else the KL-optimum of the verifier.

    Returns ``{"world", "start", "rows"}``; each row holds the run, success, pass@256, the
    :func:`toyenv.diagnose` verdict (role and attrition risk) and :func:`cost`.
    """
    check_count(steps, "steps", fix="updates per interface, e.g. steps=60")
    mdp = make(world)
    start = mdp.base_policy()
    hinted = "hinted" in mdp.info
    runs = {
        "token targets (SFT on demonstrations)": sft(start, demonstrations(mdp, n_demos, seed=seed), steps=steps,
                                                     seed=seed),
        "preferences (DPO, verifier-ranked pairs)": dpo(start, beta=0.1, steps=steps, seed=seed),
        "verifier reward (GRPO)": rl(start, beta=0.0, steps=steps, seed=seed),
        "teacher distributions (distillation)": distill(start, start if hinted else kl_optimum(start, 0.1),
                                                        on_policy=0.0, steps=steps, seed=seed, n_samples=16,
                                                        teacher_prompts="hinted" if hinted else None),
    }
    rows = {}
    for name, run in runs.items():
        dg = diagnose(start, run.policy, eps)
        rows[name] = {"run": run, "success": float(mdp.prompt_weights @ success_prob(run.policy)),
                      "pass256": float(pass_at_k(run.policy, 256)), "role": dg.role,
                      "risk": dg.attrition_risk, "diagnosis": dg, "cost": cost(run)}
    return {"world": mdp, "start": start, "start_success": float(mdp.prompt_weights @ success_prob(start)),
            "rows": rows}


__all__ = ["COST_KEYS", "cost", "interfaces_on_one_problem"]
