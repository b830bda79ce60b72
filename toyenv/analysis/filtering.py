"""Offline filtering, rejection sampling and replay (survey §4.3), with the family's risks measured.

§4.3's rule: a method that samples once from the learner, filters the batch and then trains on it
is off-policy, even though the learner wrote every trace — the update acts on a fixed batch, not on
fresh rollouts. Its recurring risk is the evaluator: a filter that keeps too little narrows the
retained behaviour (attrition of alternatives), and a filter that checks a superficial proxy keeps
wrong traces (evaluator mismatch). :func:`filtering_risks` runs one fixed batch through four
filters on the many-paths world and measures each.
"""
from __future__ import annotations

import numpy as np

from ..core.exact import distinct_correct, kl_from_probs, pass_at_k, success_prob
from ..core.policies import Policy
from ..core.presets import make
from ..methods.data import _correct_samples
from ..methods.loop import check_count, check_policy
from ..methods.sft import rejection_sampling


def reward_table(mdp, accept) -> np.ndarray:
    """``[S, V]`` 0/1 scores of a filter: 1 at the terminal pair of every complete trajectory
    ``(prompt_index, tokens)`` for which ``accept(prompt_index, tokens)`` is true."""
    s, a = mdp.trajectories()
    r = np.zeros((mdp.num_states, mdp.vocab_size))
    for (x, y), si, ai in zip(mdp.decode(s, a), s, a):
        r[si, ai] = float(bool(accept(x, y)))
    return r


def _answer(mdp, tokens):
    return tuple(tokens[:-1]) if tokens and tokens[-1] == mdp.eos else None


def many_paths_filters(mdp) -> dict:
    """The four filters of :func:`filtering_risks` on a many-paths world, name -> ``[S, V]`` scores.

    - "verifier": the world's verifier (keeps exactly the correct samples);
    - "over-narrow": correct *and* one preferred answer per prompt (``a a`` on the common prompts,
      ``c c`` on the rare ones) — a filter stricter than the task;
    - "prompt-blind": accepts any answer that is correct for *some* prompt (it never reads the prompt);
    - "format only": accepts any two-token answer that ends with ``<eos>`` — a superficial proxy.
    """
    common, rare_answer = set(mdp.info["common_answers"]), tuple(mdp.info["rare_answer"])
    rare = set(mdp.info["rare_prompts"])
    preferred = {x: (rare_answer if x in rare else (0, 0)) for x in range(mdp.num_prompts)}
    return {
        "verifier": mdp.rewards.copy(),
        "over-narrow": reward_table(mdp, lambda x, y: mdp.is_correct(x, y) and _answer(mdp, y) == preferred[x]),
        "prompt-blind": reward_table(mdp, lambda x, y: _answer(mdp, y) in common | {rare_answer}),
        "format only": reward_table(mdp, lambda x, y: _answer(mdp, y) is not None and len(_answer(mdp, y)) == 2),
    }


def filtering_risks(policy: Policy | None = None, *, n_samples: int = 256, steps: int = 30, seed: int = 0,
                    eps: float = 1e-2, checkpoints=(0, 10, 30)) -> dict:
    """One batch of ``n_samples`` self-generated completions, four filters, SFT on what each keeps
    (:func:`toyenv.rejection_sampling` with ``reward=``), on the many-paths world (survey §4.3).

    Per filter (``result["rows"]``): ``kept`` samples, the share of them the verifier calls correct
    (``kept_correct``), pass@1, the rare prompts' success, the number of correct answers with
    ``pi(y|x) >= eps`` (alternatives kept in the support), pass@256 and the run. ``result["gap"]``:
    for the verifier filter, the exact KL(start || learner) at ``checkpoints``: the distance from the
    policy that generated the fixed batch to the policy being updated (0 only at the first update —
    why a self-generated batch is off-policy data from then on).
    """
    mdp = make("many-paths") if policy is None else policy.mdp
    if policy is None:
        policy = mdp.base_policy()
    check_policy(policy)
    check_count(n_samples, "n_samples", fix="how many completions to sample once, e.g. n_samples=256")
    for key in ("common_answers", "rare_answer", "rare_prompts"):
        if key not in mdp.info:
            raise ValueError(f"filtering_risks needs a many-paths world (mdp.info has no {key!r}); "
                             f"use toyenv.make('many-paths')")
    rare = list(mdp.info["rare_prompts"])
    w = mdp.prompt_weights
    rows = {}
    p0 = policy.probs()
    for name, table in many_paths_filters(mdp).items():
        s, a = _correct_samples(policy, n_samples, seed, reward=table)
        kept = mdp.decode(s, a)
        run = rejection_sampling(policy, n_samples=n_samples, steps=steps, seed=seed, reward=table,
                                 snapshot_steps=[c for c in checkpoints if c <= steps])
        sp = success_prob(run.policy)
        rows[name] = {"kept": len(kept), "kept_correct": float(np.mean([mdp.is_correct(x, y) for x, y in kept]))
                      if kept else float("nan"),
                      "pass1": float(w @ sp), "rare_success": float(sp[rare].mean()),
                      "correct_answers": int(distinct_correct(run.policy, eps=eps).sum()),
                      "pass256": float(pass_at_k(run.policy, 256)), "run": run}
    ref = rows["verifier"]["run"]
    gap = {c: kl_from_probs(mdp, p0, ref.at(c).probs()) for c in checkpoints if c <= steps}
    sp0 = success_prob(policy)
    start = {"pass1": float(w @ sp0), "rare_success": float(sp0[rare].mean()),
             "correct_answers": int(distinct_correct(policy, eps=eps).sum()), "pass256": float(pass_at_k(policy, 256))}
    return {"world": mdp, "start": start, "rows": rows, "gap": gap, "eps": eps, "n_samples": n_samples}


__all__ = ["reward_table", "many_paths_filters", "filtering_risks"]
