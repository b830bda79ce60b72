"""Forgetting in the two-skills world: attrition of a skill that was never trained (survey §3.3.4,
§6.4), measured on each task family, along a run and at matched gain on the trained skill."""
from __future__ import annotations

import numpy as np

from ..core.exact import kl_from_probs, success_from_probs, trajectory_probs_from
from ..core.policies import Policy
from ..core.tree import check_same_world
from ..methods.loop import Run, check_count, check_policy


def _families(mdp) -> np.ndarray:
    if "family" not in mdp.info:
        raise ValueError(f"the world {mdp.name!r} has no task families (mdp.info['family']); use "
                         "toyenv.make('two-skills')")
    return np.asarray(mdp.info["family"])


def _check_family(mdp, family: int, what: str = "family") -> int:
    n = int(_families(mdp).max()) + 1
    if isinstance(family, bool) or not isinstance(family, (int, np.integer)) or not 0 <= family < n:
        raise ValueError(f"{what} must be a task family index in [0, {n}) (two-skills: 0 is A, 1 is B), "
                         f"got {family!r}")
    return int(family)


def family_success(policy: Policy) -> np.ndarray:
    """Mean success probability of each task family, ``[num_families]`` (two-skills: [A, B])."""
    check_policy(policy)
    return _family_means(policy.mdp, success_from_probs(policy.mdp, policy.probs()))


def _family_means(mdp, per_prompt: np.ndarray) -> np.ndarray:
    fam = _families(mdp)
    return np.array([per_prompt[fam == f].mean() for f in range(fam.max() + 1)])


def family_task(mdp, family: int = 0, answers=None) -> np.ndarray:
    """Reward ``[S, V]`` for training one family only: 1 on the family's prompts for a correct
    complete answer (by default the world's answer; ``answers`` lists accepted token tuples without
    the end token), 0 on every other prompt. With β = 0, RL on it leaves the other family's
    gradient exactly zero, so only shared parameters can move the other family."""
    fam = _families(mdp)
    _check_family(mdp, family)
    on = fam[mdp.prompt_of] == family
    if answers is None:
        return np.where(on[:, None], mdp.rewards, 0.0)
    ok = np.zeros_like(mdp.rewards)
    s, a = np.nonzero(mdp.terminal)
    for (x, toks), si, ai in zip(mdp.decode(s, a), s, a):
        body = toks[:-1] if toks[-1] == mdp.eos else None
        if body is not None and tuple(body) in {tuple(t) for t in answers}:
            ok[si, ai] = 1.0
    return np.where(on[:, None], ok, 0.0)


def family_demos(mdp, family: int = 0, answer=None, per_prompt: int = 8) -> list:
    """SFT demonstrations of one answer on every prompt of one family (default: the world's answer)."""
    fam = _families(mdp)
    _check_family(mdp, family)
    check_count(per_prompt, "per_prompt", fix="demonstrations per prompt, e.g. per_prompt=8")
    ans = tuple(mdp.info["answers"][family]) if answer is None else tuple(answer)
    return [(int(x), ans + (mdp.eos,)) for x in np.nonzero(fam == family)[0] for _ in range(per_prompt)]


def task_success(policy: Policy, task: np.ndarray, family: int = 0) -> float:
    """Expected ``task`` reward on one family's prompts (mean over its prompts)."""
    return _task_success(policy.mdp, policy.probs(), task, family)


def _task_success(mdp, p: np.ndarray, task: np.ndarray, family: int) -> float:
    fam = _families(mdp)
    t = trajectory_probs_from(mdp, p)
    per = np.bincount(mdp.prompt_of, weights=(t * task).sum(1), minlength=mdp.num_prompts)
    return float(per[fam == family].mean())


def forgetting(before: Policy, after: Policy, trained: int = 0, task: np.ndarray | None = None) -> dict:
    """What fine-tuning family ``trained`` did to the other family (attrition, §3.3.4; the
    matched-gain comparison of "RL's Razor", Shenfeld et al. 2025).

    Returns ``gain`` (trained family's task success change; ``task`` reward if given, else the
    verifier), ``other_before``, ``other_after``, ``other_change`` (mean success of the other
    families), ``kl`` = KL(after‖before) (reverse, prompt-weighted, nats) and per-prompt success changes.
    """
    check_policy(before, "before")
    check_policy(after, "after")
    check_same_world(before.mdp, after.mdp)
    _check_family(before.mdp, trained, "trained")
    return _forgetting(before.mdp, before.probs(), after.mdp, after.probs(), trained, task)


def _forgetting(mdp, p_before: np.ndarray, mdp_after, p_after: np.ndarray, trained: int, task) -> dict:
    """:func:`forgetting` from the two policies' probabilities (each policy evaluated once)."""
    fam = _families(mdp)
    s_before, s_after = success_from_probs(mdp, p_before), success_from_probs(mdp_after, p_after)
    fb, fa = _family_means(mdp, s_before), _family_means(mdp_after, s_after)
    others = [f for f in range(len(fb)) if f != trained]
    if task is None:
        g0, g1 = fb[trained], fa[trained]
    else:
        g0, g1 = _task_success(mdp, p_before, task, trained), _task_success(mdp_after, p_after, task, trained)
    per = (s_after if mdp_after is mdp else success_from_probs(mdp, p_after)) - s_before
    return {"trained_before": float(g0), "trained_after": float(g1), "gain": float(g1 - g0),
            "other_before": float(fb[others].mean()), "other_after": float(fa[others].mean()),
            "other_change": float(fa[others].mean() - fb[others].mean()),
            "kl": kl_from_probs(mdp_after, p_after, p_before), "per_prompt_change": per, "family": fam}


def forgetting_curve(run: Run, base: Policy | None = None, trained: int = 0, task=None) -> dict:
    """:func:`forgetting` at every snapshot of ``run`` (against ``base``, default the run's start):
    arrays ``step``, ``trained`` (task success), ``other`` (other-family success), ``kl`` (KL(π‖base))."""
    if not isinstance(run, Run):
        raise TypeError(f"forgetting_curve needs a toyenv Run (what toyenv.sft, toyenv.rl, ... return), got "
                        f"{type(run).__name__}; for two policies use toyenv.forgetting(before, after)")
    base = run.at(0) if base is None else base
    check_policy(base, "base")
    _check_family(base.mdp, trained, "trained")
    p_base = base.probs()                              # evaluated once, not once per snapshot
    rows = []
    for _, pi in run.snapshots:
        check_policy(pi, "after")
        check_same_world(base.mdp, pi.mdp)
        rows.append(_forgetting(base.mdp, p_base, pi.mdp, pi.probs(), trained, task))
    return {"step": np.array(run.steps), "trained": np.array([r["trained_after"] for r in rows]),
            "other": np.array([r["other_after"] for r in rows]), "kl": np.array([r["kl"] for r in rows])}


def at_matched_gain(curve: dict, level: float) -> dict:
    """Other-family success and KL where the trained family's success first reaches ``level``
    (linear interpolation between snapshots; NaN if never reached)."""
    missing = {"trained", "other", "kl", "step"} - set(curve) if isinstance(curve, dict) else None
    if missing is None or missing:
        raise ValueError("curve must be the dict toyenv.forgetting_curve(run) returns (keys step, trained, "
                         f"other, kl); got {type(curve).__name__}{'' if missing is None else ' missing ' + str(sorted(missing))}")
    tr = curve["trained"]
    idx = np.nonzero(tr >= level)[0]
    if len(idx) == 0:
        return {"level": level, "other": np.nan, "kl": np.nan, "step": np.nan}
    i = int(idx[0])
    if i == 0:
        return {"level": level, "other": float(curve["other"][0]), "kl": float(curve["kl"][0]),
                "step": float(curve["step"][0])}
    f = (level - tr[i - 1]) / (tr[i] - tr[i - 1])
    lerp = lambda v: float(v[i - 1] + f * (v[i] - v[i - 1]))   # noqa: E731
    return {"level": level, "other": lerp(curve["other"]), "kl": lerp(curve["kl"]), "step": lerp(curve["step"])}


def replay_sft(policy: Policy, demos, replay_prompts, weight: float, *, steps: int = 40, lr: float | None = None,
               seed: int = 0, replay_from: Policy | None = None, **train_options) -> Run:
    """SFT on ``demos`` while replaying the old policy's own behaviour on ``replay_prompts``: every step
    minimises ``(1 - weight)·SFT(demos) + weight·SFT(replay)`` (survey §4.3: supervised replay of
    previously produced traces; §6.4: attrition across a stage).

    The replay term is the cross-entropy of the current policy on the completions that ``replay_from``
    (default: ``policy``, the model before the stage) produces on ``replay_prompts``, in expectation:
    the teacher-forcing targets of infinitely many of its samples there, so the run is exact and
    needs no verifier for those prompts. ``weight = 0`` is plain SFT, ``weight = 1`` only replays.
    Exercise 07.2 picks ``weight``.
    """
    from ..core.passes import reach_from_probs
    from ..methods.data import check_demos, token_targets
    from ..methods.loop import check_fraction, check_loop_options, default_lr, train
    from ..methods.losses import sft_loss
    check_policy(policy)
    check_loop_options(steps, lr, seed, train_options)
    weight = check_fraction(weight, "weight", fix="the replay weight: 0 is plain SFT, 1 only replays")
    mdp = policy.mdp
    old = policy if replay_from is None else replay_from
    check_policy(old, "replay_from")
    check_same_world(mdp, old.mdp, "replay_from")
    prompts = np.unique(np.asarray(replay_prompts, dtype=np.int64).ravel())
    if prompts.size == 0 or prompts.min() < 0 or prompts.max() >= mdp.num_prompts:
        raise ValueError(f"replay_prompts must be prompt indices in [0, {mdp.num_prompts}), got {replay_prompts!r}")
    states, actions = check_demos(mdp, demos)
    demo_targets = token_targets(mdp, states, actions)
    p_old = old.probs()
    rows = np.isin(mdp.prompt_of, prompts)
    replay_targets = np.where(rows[:, None], reach_from_probs(mdp, p_old)[:, None] * p_old, 0.0) / prompts.size

    def objective(pi, log_probs, step, rng):
        l_demo, _ = sft_loss(log_probs, demo_targets)
        l_replay, _ = sft_loss(log_probs, replay_targets)
        return (1 - weight) * l_demo + weight * l_replay, {"sft_loss": float(l_demo.detach()),
                                                         "replay_loss": float(l_replay.detach())}

    lr = default_lr(policy, lr, "sft")
    config = dict(weight=weight, steps=steps, lr=lr, seed=seed, n_demos=len(states), replay_prompts=prompts.tolist())
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="sft", config=config, **train_options)
