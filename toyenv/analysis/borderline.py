"""The survey's borderline cases (Table 7, §6.5.5), each as a side-by-side exact experiment.

Every function here runs two or three *arms* on one world, scored by one evaluator, and differing
in trajectory provenance: where the trajectories that update the learner come from. Provenance
is the survey's top-level axis (§3.1); the evaluator (verifier, teacher, search) is a supervision
interface (§3.2) and does not by itself fix the regime (Table 7, row 2's boundary note).

Each arm is read with the same exact numbers (:class:`Arm`): success, pass@k, the expanded /
reshaped / attrited occupancy masses and the role verdict of :func:`toyenv.diagnose` (the course's
operational proxy for the Table 2 cues, not a rule from the survey), KL to the start policy, and the
provenance measured: ``generator`` names whose rollouts produced the updates' trajectories, and
``generator_gap`` is the mean over updates of the exact KL(generator ‖ learner at that update),
0 when every update trains on the current learner's own samples.

| function | Table 7 row | survey |
|---|---|---|
| :func:`offline_vs_online_dpo` | offline vs online preference optimisation | §4.2 |
| :func:`filter_vs_rl` | verifier as an offline filter vs on-policy correction | §4.3, §5.1 |
| :func:`traces_vs_correction` | teacher traces vs teacher correction on learner rollouts | §4.4, §5.4 |
| :func:`self_improvement_cache` | self-improvement with cached trajectories | §4.3, §5.3 |
| :func:`search_then_transfer` | search-heavy induction followed by transfer | §3.4, Table 5 |

:func:`borderline_cases` runs all five with their defaults. Everything is tabular and exact apart
from the methods' own sampling, which every function seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.exact import (check_eps, distinct_correct, kl, kl_from_probs, pass_at_k_from_success,
                          success_from_probs)
from ..core.passes import trajectory_probs_from
from ..core.policies import Policy
from ..core.presets import make
from ..core.tree import TokenMDP
from ..methods import METHODS
from ..methods.distill import distill, distill_weights, teacher_view
from ..methods.dpo import dpo, online_dpo
from ..methods.loop import Run, check_count, check_nonnegative, check_policy
from ..methods.rl import rl
from ..methods.rlhf import bon_policy
from ..methods.sft import rejection_sampling, self_improve
from .experiments import after_slip
from .pipeline import Diagnosis, diagnose

DEFAULT_KS = (1, 16, 256)


# =========================================================================== result objects
@dataclass(eq=False)
class Arm:
    """One side of a borderline comparison, read with exact numbers.

    Attributes:
        name: the arm's label, e.g. "offline DPO".
        method: its key in ``toyenv.METHODS`` ("" for an arm that trains nothing, e.g. a searcher).
        provenance, interface: from ``METHODS`` (or stated for a non-method arm).
        generator: whose rollouts produced the trajectories the updates used, in words.
        generator_gap: mean over updates t of the exact KL(generator_t ‖ learner_t), nats, prompts
            weighted by D(x): 0 when each update trains on the current learner's own samples
            (on-policy), large when the learner trains on someone else's (or its own old) samples.
        success: prompt-weighted success probability of the final policy. ``per_prompt``: ``[P]``.
        pass_at_k: ``{k: exact pass@k}``.
        kl_to_start: KL(final ‖ start), nats.
        diagnosis: :func:`toyenv.diagnose` (start -> final): role, attrition risk, masses, evidence.
        policy: the final policy. run: the :class:`toyenv.Run` (None for a non-training arm).
        extra: the case's own numbers (documented by the function that built the arm).
    """

    name: str
    method: str
    provenance: str
    interface: str
    generator: str
    generator_gap: float
    success: float
    per_prompt: np.ndarray = field(repr=False)
    pass_at_k: dict = field(repr=False)
    kl_to_start: float = 0.0
    diagnosis: Diagnosis = field(default=None, repr=False)
    policy: Policy = field(default=None, repr=False)
    run: Run | None = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def role(self) -> str:
        return self.diagnosis.role

    @property
    def attrition_risk(self) -> str:
        return self.diagnosis.attrition_risk

    @property
    def expanded_mass(self) -> float:
        return self.diagnosis.evidence["expanded_mass"]

    @property
    def reshaped_mass(self) -> float:
        return self.diagnosis.evidence["reshaped_mass"]

    @property
    def attrited_mass(self) -> float:
        return self.diagnosis.evidence["attrited_mass"]

    def row(self) -> dict:
        """The arm's headline numbers as one flat dict (a table row)."""
        out = {"arm": self.name, "method": self.method, "provenance": self.provenance,
               "generator": self.generator, "generator_gap": self.generator_gap, "success": self.success,
               **{f"pass@{k}": v for k, v in self.pass_at_k.items()},
               "expanded_mass": self.expanded_mass, "reshaped_mass": self.reshaped_mass,
               "attrited_mass": self.attrited_mass, "role": self.role, "attrition_risk": self.attrition_risk,
               "kl_to_start": self.kl_to_start}
        return out


@dataclass(eq=False)
class Borderline:
    """One Table 7 case: several :class:`Arm` on one world with one evaluator.

    ``case`` names the Table 7 row, ``survey`` the sections, ``evaluator`` the one signal every arm
    used, ``start`` the start policy (its success and pass@k in ``start_success``,
    ``start_pass_at_k``), ``arms`` the arms by name, ``headline`` the case's key numbers and
    ``reading`` what they show (and, where the toy differs from the survey's typical case, how).
    """

    case: str
    survey: str
    world: str
    evaluator: str
    eps: float
    start: Policy = field(repr=False)
    start_success: float
    start_pass_at_k: dict = field(repr=False)
    arms: dict = field(repr=False)
    headline: dict = field(default_factory=dict)
    reading: str = ""

    def __getitem__(self, name: str) -> Arm:
        if name not in self.arms:
            raise KeyError(f"no arm {name!r}; arms: {list(self.arms)}")
        return self.arms[name]

    def table(self) -> list:
        """One dict per arm (:meth:`Arm.row`), ready for a printed table or pandas."""
        return [a.row() for a in self.arms.values()]

    def summary(self) -> str:
        ks = list(self.start_pass_at_k)
        lines = [f"{self.case}  ({self.survey}; world {self.world!r}, evaluator: {self.evaluator}, eps = {self.eps:g})",
                 f"  start: success {self.start_success:.3f}, "
                 + ", ".join(f"pass@{k} {v:.3f}" for k, v in self.start_pass_at_k.items())]
        for a in self.arms.values():
            lines.append(f"  {a.name:<28} {a.provenance}")
            lines.append(f"    generator: {a.generator} (gap {a.generator_gap:.3f} nats)")
            lines.append(f"    success {a.success:.3f}  " + "  ".join(f"pass@{k} {a.pass_at_k[k]:.3f}" for k in ks)
                         + f"  KL to start {a.kl_to_start:.3f}")
            lines.append(f"    {a.role}, attrition risk {a.attrition_risk}: expanded {a.expanded_mass:.3f}, "
                         f"reshaped {a.reshaped_mass:.3f}, attrited {a.attrited_mass:.3f}")
        if self.reading:
            lines.append("  " + self.reading)
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return f"Borderline({self.case!r}, arms={list(self.arms)})"


# =========================================================================== shared pieces
def _world(world, policy, world_options) -> tuple[TokenMDP, Policy]:
    """The world (a preset name or a TokenMDP) and the start policy (default: its base policy)."""
    if policy is not None:
        check_policy(policy, "policy")
        if world is not None and not isinstance(world, str) and world is not policy.mdp:
            raise ValueError("give either world= or policy= (the policy carries its world), not two worlds")
        return policy.mdp, policy
    if isinstance(world, TokenMDP):
        if world_options:
            raise ValueError("world_options apply to a preset name, not to a built TokenMDP")
        return world, world.base_policy()
    if not isinstance(world, str):
        raise TypeError(f"world must be a preset name such as 'scaffold' or a TokenMDP, got {type(world).__name__}")
    mdp = make(world, **(world_options or {}))
    return mdp, mdp.base_policy()


def _ks(ks) -> tuple:
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks:
        raise ValueError("ks is empty: pass the pass@k values to report, e.g. ks=(1, 16, 256)")
    return tuple(check_count(k, "each k in ks", fix="pass@k needs k >= 1, e.g. ks=(1, 16, 256)") for k in ks)


def _pass(mdp, p, ks) -> dict:
    s = success_from_probs(mdp, p)
    return {k: float(pass_at_k_from_success(s, mdp.prompt_weights, k)) for k in ks}


def generator_gap(run: Run, generator) -> float:
    """Mean over the run's updates t = 0 .. steps-1 of the exact KL(generator_t ‖ learner_t), nats.

    ``generator(t)`` returns the ``[S, V]`` probabilities of the policy whose rollouts produced the
    trajectories of update t (the learner itself for on-policy training: the gap is then 0). The run
    must hold a snapshot at every step (pass ``snapshot_steps=range(steps + 1)`` to the method).
    """
    mdp = run.policy.mdp
    steps = run.steps[-1]
    if steps == 0:
        return 0.0
    if len(run.snapshots) != steps + 1:
        raise ValueError("generator_gap needs a snapshot at every step: run the method with "
                         "snapshot_steps=range(steps + 1)")
    return float(np.mean([kl_from_probs(mdp, generator(t), run.at(t).probs()) for t in range(steps)]))


def _arm(name, method, start, policy, ks, eps, *, generator, gap, run=None, provenance=None,
         interface=None, extra=None, teacher=None, teacher_prompts=None) -> Arm:
    mdp = start.mdp
    row = METHODS.get(method, {})
    dg = diagnose(start, policy, eps, k_large=max(ks), teacher=teacher, teacher_prompts=teacher_prompts)
    p = policy.probs()
    per = success_from_probs(mdp, p)
    return Arm(name, method, provenance or row.get("provenance", ""), interface or row.get("interface", ""),
               generator, float(gap), float(mdp.prompt_weights @ per), per, _pass(mdp, p, ks),
               kl(policy, start), dg, policy, run, dict(extra or {}))


def _borderline(case, survey, mdp, evaluator, eps, start, ks, arms, headline, reading) -> Borderline:
    p0 = start.probs()
    s0 = float(mdp.prompt_weights @ success_from_probs(mdp, p0))
    return Borderline(case, survey, mdp.name, evaluator, eps, start, s0, _pass(mdp, p0, ks),
                      {a.name: a for a in arms}, headline, reading)


def _every_step(steps: int) -> list:
    return list(range(int(steps) + 1))


# =========================================================================== 1. preference optimisation
def offline_vs_online_dpo(world="scaffold", *, policy=None, steps: int = 100, refresh: int = 10,
                          n_prompts: int = 16, n_candidates: int = 4, beta: float = 0.1, seed: int = 0,
                          eps: float = 1e-3, ks=DEFAULT_KS, world_options=None) -> Borderline:
    """Offline vs online preference optimisation (Table 7 row 1; survey §4.2, last paragraph).

    One objective (the DPO loss, :func:`toyenv.dpo`), one evaluator (the world's verifier ranks the
    candidates of each pair), the same number of updates (``steps``) and the same labelling budget
    (``n_prompts · n_candidates`` candidates labelled per refresh, ``ceil(steps / refresh)`` refreshes).
    Only provenance differs:

    - "offline DPO": every candidate is drawn once, from the start policy
      (``n_prompts · ceil(steps/refresh)`` prompts); every update uses that fixed batch.
    - "online DPO": :func:`toyenv.methods.online_dpo`, a fresh batch of ``n_prompts`` prompts from the
      *current* learner every ``refresh`` updates.

    ``arm.extra``: ``n_pairs`` (pairs per batch), ``pairs_total`` (informative pairs the budget
    bought: prompts whose candidates tied give none) and, for online DPO, ``generator_steps`` (the
    learner snapshot that generated each update's pairs).

    What the toy shows, on the default scaffold world (bare prompts solved 2% of the time): the
    start policy's candidates rarely differ, so the offline batch holds few pairs; the online
    learner's candidates differ more and more often as it improves, so the same budget buys more
    comparisons, on what the learner does now. Both arms reshape (no mass enters new support at
    ``eps``); the online arm's generator gap is far smaller, and its final success higher.
    """
    mdp, start = _world(world, policy, world_options)
    ks = _ks(ks)
    eps = check_eps(eps)
    check_count(steps, "steps", fix="the number of DPO updates of each arm, e.g. steps=100")
    refresh = check_count(refresh, "refresh", fix="updates between two refreshes, e.g. refresh=10")
    check_count(n_prompts, "n_prompts", fix="prompts per refresh, e.g. n_prompts=16")
    n_refresh = math.ceil(steps / refresh)
    common = dict(beta=beta, steps=steps, seed=seed, n_candidates=n_candidates, snapshot_steps=_every_step(steps))
    off = dpo(start, n_prompts=n_prompts * n_refresh, **common)
    on = online_dpo(start, refresh=refresh, n_prompts=n_prompts, **common)
    p0 = start.probs()
    gap_off = generator_gap(off, lambda t: p0)
    gen_steps = on.artifacts["generator_steps"]
    gap_on = generator_gap(on, lambda t: on.at(gen_steps[t]).probs())
    arms = [
        _arm("offline DPO", "dpo", start, off.policy, ks, eps, run=off, gap=gap_off,
             generator="the start policy, sampled once",
             extra={"n_pairs": [off.config["n_pairs"]], "pairs_total": off.config["n_pairs"]}),
        _arm("online DPO", "dpo/online", start, on.policy, ks, eps, run=on, gap=gap_on,
             generator=f"the current learner, refreshed every {refresh} updates",
             extra={"n_pairs": on.config["n_pairs"], "pairs_total": int(sum(on.config["n_pairs"])),
                    "generator_steps": gen_steps}),
    ]
    headline = {"labelled_candidates": n_prompts * n_refresh * n_candidates,
                "pairs_offline": arms[0].extra["pairs_total"], "pairs_online": arms[1].extra["pairs_total"],
                "success_offline": arms[0].success, "success_online": arms[1].success,
                "gap_offline": gap_off, "gap_online": gap_on}
    reading = (f"Same loss, evaluator, updates and labelling budget: offline DPO compared "
               f"{headline['pairs_offline']} pairs drawn from the start policy, online DPO "
               f"{headline['pairs_online']} pairs drawn from itself as it trained "
               f"(generator gap {gap_off:.3f} vs {gap_on:.3f} nats); success {arms[0].success:.3f} vs "
               f"{arms[1].success:.3f}. Refreshing the candidates is what moves the method towards on-policy.")
    return _borderline("offline vs online preference optimisation", "§4.2; Table 7 row 1", mdp,
                       "the verifier ranks each pair's candidates", eps, start, ks, arms, headline, reading)


# =========================================================================== 2. verifier: filter vs RL
def filter_vs_rl(world="many-paths", *, policy=None, steps: int = 100, n_prompts_per_step: int = 8,
                 group_size: int = 8, beta: float = 0.0, seed: int = 0, eps: float = 1e-3, ks=DEFAULT_KS,
                 world_options=None) -> Borderline:
    """One verifier, two regimes: an offline filter vs on-policy RL (Table 7 row 2; §4.3, §5.1).

    - "rejection sampling": :func:`toyenv.rejection_sampling` samples one batch of
      ``steps · n_prompts_per_step · group_size`` completions from the start policy, keeps those the
      verifier accepts and fine-tunes on that fixed batch for ``steps`` updates. Self-generated, but
      a fixed batch: off-policy (§4.3's rule).
    - "on-policy RL": :func:`toyenv.rl` (GRPO) with the same verifier as reward, ``steps`` updates of
      ``n_prompts_per_step · group_size`` fresh rollouts each: the same number of verifier calls.
      ``beta`` (default 0) is its KL weight; 0 matches the filter arm, which has no KL term either.

    ``arm.extra``: ``kept`` (accepted samples of the filter) and ``rare_success`` (success on the
    world's rare prompts, ``mdp.info["rare_prompts"]``, when the world has them).

    What the toy shows, on the default many-paths world (a prompt-agnostic policy; two rare prompts
    are solved only by ``c c``): the filtered batch holds ``c c`` in its start proportion and SFT on
    a fixed batch converges to that batch, so the rare prompts keep their share and pass@256 stays
    at 1. On-policy RL feeds its own improvements back into its samples, amplifies the shortcut of
    the common prompts and squeezes the rare answer out: higher success, pass@256 below the start,
    attrition risk high. The verifier is the same; where the updated trajectories come from decides.
    """
    mdp, start = _world(world, policy, world_options)
    ks = _ks(ks)
    eps = check_eps(eps)
    check_count(steps, "steps", fix="the number of updates of each arm, e.g. steps=100")
    check_count(n_prompts_per_step, "n_prompts_per_step", fix="prompts per RL batch, e.g. 8")
    check_count(group_size, "group_size", minimum=2, fix="rollouts per prompt, e.g. group_size=8")
    check_nonnegative(beta, "beta", fix="the KL weight of the RL arm, e.g. beta=0.0")
    budget = steps * n_prompts_per_step * group_size
    rft = rejection_sampling(start, n_samples=budget, steps=steps, seed=seed, snapshot_steps=_every_step(steps))
    pol = rl(start, beta=beta, steps=steps, seed=seed, n_prompts_per_step=n_prompts_per_step,
             group_size=group_size, snapshot_steps=_every_step(steps))
    p0 = start.probs()
    rare = list(mdp.info.get("rare_prompts", ()))

    def rare_success(pi):
        return float(np.mean(success_from_probs(mdp, pi.probs())[rare])) if rare else float("nan")

    arms = [
        _arm("rejection sampling", "rft", start, rft.policy, ks, eps, run=rft, gap=generator_gap(rft, lambda t: p0),
             generator="the start policy, sampled once and filtered by the verifier",
             extra={"kept": rft.config["kept"], "rare_success": rare_success(rft.policy)}),
        _arm("on-policy RL", "rl/grpo", start, pol.policy, ks, eps, run=pol,
             gap=generator_gap(pol, lambda t: pol.at(t).probs()),
             generator="the current learner, fresh rollouts every update, scored by the verifier",
             extra={"rare_success": rare_success(pol.policy)}),
    ]
    kmax = max(ks)
    headline = {"verifier_calls": budget, "success_filter": arms[0].success, "success_rl": arms[1].success,
                f"pass@{kmax}_start": _pass(mdp, p0, ks)[kmax], f"pass@{kmax}_filter": arms[0].pass_at_k[kmax],
                f"pass@{kmax}_rl": arms[1].pass_at_k[kmax], "rare_success_start": rare_success(start),
                "rare_success_filter": arms[0].extra["rare_success"], "rare_success_rl": arms[1].extra["rare_success"],
                "risk_filter": arms[0].attrition_risk, "risk_rl": arms[1].attrition_risk}
    reading = (f"Same verifier, same {budget} verifier calls and {steps} updates: the offline filter reaches success "
               f"{arms[0].success:.3f} with pass@{kmax} {arms[0].pass_at_k[kmax]:.3f}; on-policy RL reaches "
               f"{arms[1].success:.3f} with pass@{kmax} {arms[1].pass_at_k[kmax]:.3f} (attrition risk "
               f"{arms[1].attrition_risk}). The evaluator does not decide the regime: provenance does.")
    return _borderline("verifier as offline filter vs on-policy correction", "§4.3, §5.1; Table 7 row 2", mdp,
                       "the world's 0/1 verifier", eps, start, ks, arms, headline, reading)


# =========================================================================== 3. teacher traces vs correction
def _teacher_path_states(mdp, teacher_probs) -> np.ndarray:
    """Boolean ``[S]``: the states on the teacher's most likely (greedy) completion of every prompt."""
    on = np.zeros(mdp.num_states, bool)
    for x in range(mdp.num_prompts):
        s = mdp.roots[x]
        while s >= 0:
            on[s] = True
            a = int(np.argmax(teacher_probs[s]))
            if a == mdp.eos:
                break
            s = mdp.child[s, a]
    return on


def traces_vs_correction(world="scaffold", *, policy=None, teacher=None, teacher_prompts="hinted",
                         steps: int = 100, checkpoints=(10, 25), divergence: str = "forward",
                         exact: bool = True, seed: int = 0, eps: float = 1e-3, ks=DEFAULT_KS,
                         world_options=None) -> Borderline:
    """Teacher traces vs teacher correction on the learner's rollouts (Table 7 row 3; §4.4, §5.4).

    One teacher (default: the scaffold world's base policy reading the hinted prompt,
    ``teacher_prompts="hinted"``), one divergence, the same number of updates; only provenance
    differs: :func:`toyenv.distill` with ``on_policy=0`` (states from the teacher's rollouts) and
    ``on_policy=1`` (states from the student's own rollouts). ``exact=True`` (default) uses the
    expected loss over all states, so the comparison carries no sampling noise.

    ``arm.extra``: ``teacher_path_weight`` (share of the update weight, averaged over updates, on the
    states of the teacher's greedy path: *where* the student was optimised; expected weights
    :func:`toyenv.methods.distill.distill_weights` even when ``exact=False``),
    ``teacher_path_weight_first`` (the same share at the first update), ``roles`` (the role
    verdict at each of ``checkpoints`` and at the end), ``after_slip`` / ``on_path`` (success right
    after a first-token slip and on the teacher's path, :func:`toyenv.after_slip`), ``retention``
    (student success / teacher success, consolidation's measure, §3.4).

    Table 7 assigns traces "expansion or consolidation" and correction "reshaping or consolidation".
    What the toy shows is narrower, and the docstring says so: a tabular student can represent this
    teacher exactly, and the scaffold base reaches every answer prefix with non-negligible
    probability, so both arms converge to the same policy with the same role verdict at every
    checkpoint (which verdict depends on ``eps``, not on provenance: reshaping-dominant at 1e-3,
    expansion-dominant at 1e-2), and both consolidate (retention near 1). What provenance changes is
    where the updates act: the traces arm puts far more of its weight on the teacher's path states,
    the correction arm on the states the student itself wanders into; and its generator gap is 0.
    """
    mdp, start = _world(world, policy, world_options)
    teacher = start if teacher is None else teacher
    check_policy(teacher, "teacher")
    ks = _ks(ks)
    eps = check_eps(eps)
    check_count(steps, "steps", fix="the number of distillation updates of each arm, e.g. steps=100")
    cps = sorted({check_count(c, "each checkpoint", minimum=0, fix="checkpoints are steps in [0, steps]")
                  for c in np.atleast_1d(checkpoints).tolist()})
    if any(c > steps for c in cps):
        raise ValueError(f"checkpoints must lie in [0, steps={steps}], got {cps}")
    tv = teacher_view(teacher, teacher_prompts).probs()
    path = _teacher_path_states(mdp, tv)
    arms = []
    for name, lam, gen in (("teacher traces", 0.0, "the teacher (its own rollouts)"),
                           ("teacher correction", 1.0, "the student (its own rollouts), labelled by the teacher")):
        run = distill(start, teacher, on_policy=lam, divergence=divergence, steps=steps, seed=seed, exact=exact,
                      teacher_prompts=teacher_prompts, snapshot_steps=_every_step(steps))
        weights = [distill_weights(mdp, run.at(t).probs(), tv, lam) for t in range(steps)] or [np.zeros(mdp.num_states)]
        shares = [w[path].sum() / w.sum() if w.sum() > 0 else 0.0 for w in weights]
        roles = {c: diagnose(start, run.at(c), eps).role for c in cps}
        roles[steps] = None                                                     # filled by the arm below
        gap = generator_gap(run, (lambda t: tv) if lam == 0 else (lambda t, r=run: r.at(t).probs()))
        arm = _arm(name, run.method, start, run.policy, ks, eps, run=run, gap=gap, generator=gen,
                   teacher=teacher, teacher_prompts=teacher_prompts,
                   extra={"teacher_path_weight": float(np.mean(shares)), "teacher_path_weight_first": float(shares[0]),
                          **after_slip(run.policy, teacher, teacher_prompts)})
        roles[steps] = arm.role
        arm.extra["roles"] = roles
        arm.extra["retention"] = arm.diagnosis.evidence["retention"]
        arms.append(arm)
    t_succ = arms[0].diagnosis.evidence["teacher_success"]
    headline = {"teacher_success": t_succ, "success_traces": arms[0].success, "success_correction": arms[1].success,
                "path_weight_traces": arms[0].extra["teacher_path_weight"],
                "path_weight_correction": arms[1].extra["teacher_path_weight"],
                "path_weight_first_traces": arms[0].extra["teacher_path_weight_first"],
                "path_weight_first_correction": arms[1].extra["teacher_path_weight_first"],
                "roles_traces": arms[0].extra["roles"], "roles_correction": arms[1].extra["roles"],
                "kl_between_arms": kl(arms[0].policy, arms[1].policy)}
    reading = (f"Same teacher and updates: the traces arm spent {headline['path_weight_traces']:.0%} of its update "
               f"weight on the teacher's path ({headline['path_weight_first_traces']:.0%} at the first update), the "
               f"correction arm {headline['path_weight_correction']:.0%} ({headline['path_weight_first_correction']:.0%} "
               "at the first update, when the student still wanders). Both end "
               f"{arms[0].role} / {arms[1].role} and keep {arms[0].extra['retention']:.0%} / "
               f"{arms[1].extra['retention']:.0%} of the teacher's success: here provenance changes where the "
               "student is optimised, not the verdict (a tabular student can copy this teacher exactly).")
    return _borderline("teacher traces vs teacher correction on learner rollouts", "§4.4, §5.4; Table 7 row 3", mdp,
                       "the teacher's next-token distributions", eps, start, ks, arms, headline, reading)


# =========================================================================== 4. self-improvement
def self_improvement_cache(world="many-paths", *, policy=None, rounds: int = 4, n_samples: int = 128,
                           steps_per_round: int = 25, seed: int = 0, eps: float = 1e-3, ks=DEFAULT_KS,
                           world_options=None) -> Borderline:
    """Self-improvement with cached trajectories, and its self-confirmation risk (Table 7 row 4;
    §4.3, §5.3).

    One verifier filters the learner's own samples in both arms, with the same number of samples
    and updates:

    - "STaR rounds": :func:`toyenv.self_improve`, ``rounds`` rounds of (sample ``n_samples`` from the
      *current* policy, keep the correct ones, ``steps_per_round`` updates on them): fresh learner
      states every round, offline within a round.
    - "one cached batch": :func:`toyenv.rejection_sampling` on ``rounds · n_samples`` samples drawn
      once from the start policy, reused for all ``rounds · steps_per_round`` updates.

    ``arm.extra``: ``kept`` (accepted samples, per round for STaR), ``rare_success`` (the world's
    rare prompts), ``distinct_correct`` (correct answers with π(y|x) >= eps, per prompt) and, for
    STaR, ``round_success`` (``[rounds + 1, P]`` success per prompt at every round boundary).

    What the toy shows, on the default many-paths world (a prompt-agnostic policy): each round's
    filtered samples over-represent the answers the learner already favours, so the rounds confirm
    the majority; the rare prompts' only answer ``c c`` is squeezed out round after round
    (self-confirmation, measured exactly by ``round_success`` and pass@256). The cached batch cannot
    confirm itself: it converges to the start's filtered distribution and keeps the rare prompts.
    """
    mdp, start = _world(world, policy, world_options)
    ks = _ks(ks)
    eps = check_eps(eps)
    rounds = check_count(rounds, "rounds", fix="the number of sample-filter-train rounds, e.g. rounds=4")
    check_count(n_samples, "n_samples", fix="samples per round, e.g. n_samples=128")
    spr = check_count(steps_per_round, "steps_per_round", fix="updates per round, e.g. steps_per_round=25")
    total = rounds * spr
    star = self_improve(start, rounds=rounds, n_samples=n_samples, steps_per_round=spr, seed=seed,
                        snapshot_steps=_every_step(total))
    cache = rejection_sampling(start, n_samples=rounds * n_samples, steps=total, seed=seed,
                               snapshot_steps=_every_step(total))
    p0 = start.probs()
    rare = list(mdp.info.get("rare_prompts", ()))

    def rare_success(pi):
        return float(np.mean(success_from_probs(mdp, pi.probs())[rare])) if rare else float("nan")

    round_success = np.stack([success_from_probs(mdp, star.at(k * spr).probs()) for k in range(rounds + 1)])
    arms = [
        _arm("STaR rounds", "self-improve", start, star.policy, ks, eps, run=star,
             gap=generator_gap(star, lambda t: star.at((t // spr) * spr).probs()) if spr else 0.0,
             generator=f"the learner at the start of each of {rounds} rounds, filtered by the verifier",
             extra={"kept": star.config["kept"], "rare_success": rare_success(star.policy),
                    "distinct_correct": distinct_correct(star.policy, eps=eps), "round_success": round_success}),
        _arm("one cached batch", "rft", start, cache.policy, ks, eps, run=cache, gap=generator_gap(cache, lambda t: p0),
             generator="the start policy, sampled once, filtered, replayed for every update",
             extra={"kept": cache.config["kept"], "rare_success": rare_success(cache.policy),
                    "distinct_correct": distinct_correct(cache.policy, eps=eps)}),
    ]
    kmax = max(ks)
    headline = {"samples": rounds * n_samples, "updates": total,
                "success_rounds": arms[0].success, "success_cached": arms[1].success,
                "rare_success_start": rare_success(start), "rare_success_rounds": arms[0].extra["rare_success"],
                "rare_success_cached": arms[1].extra["rare_success"],
                "rare_success_by_round": round_success[:, rare].mean(1) if rare else None,
                f"pass@{kmax}_start": _pass(mdp, p0, ks)[kmax], f"pass@{kmax}_rounds": arms[0].pass_at_k[kmax],
                f"pass@{kmax}_cached": arms[1].pass_at_k[kmax],
                "risk_rounds": arms[0].attrition_risk, "risk_cached": arms[1].attrition_risk}
    reading = (f"Same verifier, {rounds * n_samples} samples and {total} updates: the rounds reach success "
               f"{arms[0].success:.3f} but their pass@{kmax} falls to {arms[0].pass_at_k[kmax]:.3f}"
               + (f" as the rare prompts go {rare_success(start):.3f} -> "
                  + " -> ".join(f"{v:.3f}" for v in round_success[1:, rare].mean(1)) + " over the rounds"
                  if rare else "")
               + f" (self-confirmation); the cached batch reaches {arms[1].success:.3f} with pass@{kmax} "
               f"{arms[1].pass_at_k[kmax]:.3f}.")
    return _borderline("self-improvement with cached trajectories", "§4.3, §5.3; Table 7 row 4", mdp,
                       "the world's 0/1 verifier as a filter", eps, start, ks, arms, headline, reading)


# =========================================================================== 5. search, then transfer
def search_then_transfer(world="hidden-path", *, policy=None, n: int = 1024, steps: int = 100,
                         exact: bool = True, seed: int = 0, eps: float = 1e-3, ks=DEFAULT_KS,
                         world_options=None) -> Borderline:
    """Search-heavy induction followed by transfer into a policy that no longer searches (Table 7
    row 5; Table 5's last row; §3.4 amortisation).

    The searcher is best-of-``n`` under the verifier (:func:`toyenv.bon_policy`, exact): strong but
    ``n`` samples and ``n`` verifier calls per answer. It is then distilled into the start policy
    with :func:`toyenv.distill` (forward KL, ``exact`` by default), from the searcher's own traces
    (``on_policy=0``) and on the student's rollouts (``on_policy=1``). The students sample once.

    The default world is hidden-path with ``p_hidden = 0.02`` (``world_options``), so that a search
    of affordable ``n`` finds the hidden answers (the start policy's success is still below 0.001).
    For other worlds pass ``world`` (and ``world_options``); ``world="many-paths"`` shows a student
    that cannot condition on the prompt losing the rare prompts the searcher solved.

    ``arm.extra`` (students): ``retention`` = student success / searcher success; ``kept``,
    ``lost`` = correct answers in the searcher's trajectory support (π(y|x) >= eps) that are / are
    not in the student's; ``kl_to_searcher`` = KL(student ‖ searcher). The searcher's arm reads its
    role against the start policy (induction) and its ``extra["samples_per_answer"]`` = n.

    Table 7 reads this pattern as expansion first, then consolidation. In the toy, with the
    defaults: the search brings the hidden answers into support (correct answers enter the
    trajectory support, expanded mass about 0.37) but the course's 2x rule calls the searcher
    "mixed", because the search also moves about 0.28 of mass inside the old support; the students
    keep most of the searcher's success (consolidation: retention above 0.9, no supported correct
    answer lost), the on-policy student slightly more.
    """
    if world == "hidden-path" and world_options is None and policy is None:
        world_options = {"p_hidden": 0.02}
    mdp, start = _world(world, policy, world_options)
    ks = _ks(ks)
    eps = check_eps(eps)
    n = check_count(n, "n", fix="the number of samples the searcher draws and ranks, e.g. n=1024")
    check_count(steps, "steps", fix="the number of distillation updates, e.g. steps=100")
    searcher = bon_policy(start, n)
    ps = searcher.probs()
    arms = [_arm(f"searcher (best-of-{n})", "best-of-n", start, searcher, ks, eps, gap=0.0,
                 generator=f"the start policy, {n} samples per answer ranked by the verifier",
                 extra={"samples_per_answer": n})]
    t_search = trajectory_probs_from(mdp, ps) >= eps
    corr = mdp.correct
    for name, lam, gen in (("student: searcher traces", 0.0, "the searcher (its own rollouts)"),
                           ("student: on its own rollouts", 1.0, "the student (its own rollouts), labelled by the searcher")):
        run = distill(start, searcher, on_policy=lam, steps=steps, seed=seed, exact=exact,
                      snapshot_steps=_every_step(steps))
        gap = generator_gap(run, (lambda t: ps) if lam == 0 else (lambda t, r=run: r.at(t).probs()))
        t_student = trajectory_probs_from(mdp, run.policy.probs()) >= eps
        arm = _arm(name, run.method, start, run.policy, ks, eps, run=run, gap=gap, generator=gen,
                   teacher=searcher,
                   extra={"kept": int((t_search & t_student & corr).sum()), "lost": int((t_search & ~t_student & corr).sum()),
                          "kl_to_searcher": kl(run.policy, searcher)})
        arm.extra["retention"] = arm.diagnosis.evidence["retention"]
        arms.append(arm)
    headline = {"success_start": float(mdp.prompt_weights @ success_from_probs(mdp, start.probs())),
                "success_searcher": arms[0].success, "role_searcher": arms[0].role,
                "success_student_traces": arms[1].success, "success_student_own": arms[2].success,
                "retention_traces": arms[1].extra["retention"], "retention_own": arms[2].extra["retention"],
                "correct_in_searcher_support": int((t_search & corr).sum()),
                "lost_traces": arms[1].extra["lost"], "lost_own": arms[2].extra["lost"]}
    reading = (f"Search induces the behaviour (success {headline['success_start']:.4f} -> {arms[0].success:.3f} at "
               f"{n} samples per answer, {arms[0].role}, {arms[0].diagnosis.evidence['correct_expanded']} correct "
               f"answers entered the support); distilled into a policy that samples once, it keeps "
               f"{arms[1].extra['retention']:.0%} (searcher traces) / {arms[2].extra['retention']:.0%} (own rollouts) "
               f"of the searcher's success, losing {arms[1].extra['lost']} / {arms[2].extra['lost']} of its "
               f"{headline['correct_in_searcher_support']} supported correct answers.")
    return _borderline("search-heavy induction followed by transfer", "§3.4, §6.2 (Table 5); Table 7 row 5", mdp,
                       "the world's 0/1 verifier (ranking the search, then through the searcher)", eps, start, ks,
                       arms, headline, reading)


# =========================================================================== all five
CASES = {
    "preference": offline_vs_online_dpo,
    "verifier": filter_vs_rl,
    "teacher": traces_vs_correction,
    "self-improvement": self_improvement_cache,
    "search": search_then_transfer,
}
"""Table 7's rows, in its order: short name -> the function that runs the case."""


def borderline_cases(seed: int = 0) -> dict:
    """All five Table 7 cases with their defaults and one seed: ``{short name: Borderline}``."""
    return {name: fn(seed=seed) for name, fn in CASES.items()}
