"""Pipelines of stages and the role diagnosis of a stage (survey §3.5, §3.6, §6).

- :func:`pipeline` runs stages one after another (e.g. SFT → RL → distill) and reports, at every
  handoff, what the stage gained, kept and lost: expanded and attrited sets, success, pass@k, KL to
  the previous stage and to the base (§6.4 stage-transition risk).
- :func:`diagnose` computes the course's operational proxies for some of the survey's Table 2 cues
  (§3.5): a dominant-role verdict (expansion-dominant, reshaping-dominant or mixed, by the mass
  ratio :data:`toyenv.core.exact.ROLE_RATIO`) and, separately, an attrition risk, with the evidence
  behind both. Table 2 is a list of heuristic cues, not a decision rule; the thresholds are the
  course's choices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core.exact import (ROLE_RATIO, SupportChange, check_eps, kl, pass_at_k_from_success, role_of,
                          success_from_probs, support_change)
from ..core.passes import backward_from_probs
from ..core.policies import Policy
from ..core.tree import check_same_world
from ..methods import method_function
from ..methods.distill import teacher_view
from ..methods.loop import Run, check_count, check_nonnegative, check_policy, check_positive, single_thread

DEFAULT_KS = (1, 4, 16, 64, 256)


# =========================================================================== diagnosis (proxies for Table 2's cues)
@dataclass(eq=False)
class Diagnosis:
    """The course's operational proxies for the survey's Table 2 cues, for one stage (§3.5).

    Table 2 lists heuristic cues and says it is not a checklist or a decision rule; ``role`` and
    ``attrition_risk`` are this course's proxies, with thresholds it chose, and the evidence is there
    so that a reader can judge for themselves.

    Attributes:
        role: "expansion-dominant", "reshaping-dominant", "mixed" or "no change", from the
            occupancy mass on newly supported pairs vs the mass moved inside the shared support
            (:func:`toyenv.role_of` with ``ratio``, by default :data:`toyenv.core.exact.ROLE_RATIO`).
            Never "attrition": the survey lists attrition as a risk, not as a role.
        attrition_risk: "high", "moderate" or "low" (see :func:`diagnose` for the rule), reported
            beside the role.
        evidence: the numbers behind both verdicts (masses, counts, success, pass@k, KL, ...).
        change: the underlying :class:`toyenv.SupportChange`.
        per_prompt: success per prompt before and after, ``[2, P]``.
        reasons: one sentence per cue that fired.
    """

    role: str
    attrition_risk: str
    evidence: dict
    change: SupportChange = field(repr=False)
    per_prompt: np.ndarray = field(repr=False)
    reasons: list = field(default_factory=list)

    def summary(self) -> str:
        e = self.evidence
        lines = [
            f"role: {self.role}   attrition risk: {self.attrition_risk}   (eps = {e['eps']:g})",
            f"  occupancy mass: expanded {e['expanded_mass']:.3f}, reshaped {e['reshaped_mass']:.3f}, "
            f"attrited {e['attrited_mass']:.3f} (useful {e['useful_attrited_mass']:.3f})",
            f"  pairs: expanded {e['expanded']}, shared {e['shared']}, attrited {e['attrited']};  "
            f"correct answers in support: +{e['correct_expanded']} / -{e['correct_attrited']}",
            f"  success {e['success_before']:.3f} -> {e['success_after']:.3f};  pass@{e['k_large']} "
            f"{e['pass_large_before']:.3f} -> {e['pass_large_after']:.3f};  prompts up {e['prompts_up']}, "
            f"down {e['prompts_down']} (largest drop {e['largest_drop']:.3f})",
            f"  KL(after || before) = {e['kl_after_before']:.3f} nats, KL(before || after) = "
            f"{e['kl_before_after']:.3f} nats",
        ]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)

    __str__ = summary


def diagnose(before: Policy, after: Policy, eps: float = 1e-3, *, ratio: float = ROLE_RATIO, tol: float = 0.02,
             k_large: int = 256, teacher: Policy | None = None, teacher_prompts=None) -> Diagnosis:
    """Diagnose what a stage did between two policies: the course's operational proxy for the
    heuristic cues of survey Table 2 (§3.5), which the survey does not intend as a decision rule.

    Role (positive evidence for expansion vs reshaping): the occupancy mass the new policy puts on
    pairs that were outside E_ε before (expansion, Eq. 6) against the mass moved inside the shared
    support C_ε (reshaping, Eq. 7; "reshaped mass" is the course's own measure);
    :func:`toyenv.role_of` decides with ``ratio`` (default :data:`toyenv.core.exact.ROLE_RATIO`, the
    one threshold the course uses everywhere). The evidence also
    counts correct complete answers entering and leaving the trajectory-level support, and the
    *useful* expanded mass Σ over expanded pairs of d_after(s, a)·Q_after(s, a) (Q = probability of
    success after (s, a)): expansion into wrong behaviour is expansion, but not the useful kind.

    Attrition risk (Table 2, last column): "high" when some prompt's success falls by more than
    ``tol`` or pass@``k_large`` falls by more than ``tol``; "moderate" when, without such a loss,
    correct answers leave the trajectory support or the *useful* attrited mass exceeds ``tol``;
    "low" otherwise. Useful attrited mass = Σ over attrited pairs of d_before(s, a)·Q_before(s, a),
    the occupancy that led to success through pairs now below ε (wrong behaviour leaving the
    support is not a risk).

    Consolidation (Table 2's third role) needs a reference point: pass the ``teacher`` (and
    ``teacher_prompts``, e.g. "hinted", when it reads other prompts) to add ``teacher_success``,
    ``retention`` = success after / teacher's success, and ``kl_to_teacher`` = KL(after‖teacher) to the
    evidence: behaviour kept without the scaffold (§3.4).
    """
    check_policy(before, "before")
    check_policy(after, "after")
    check_positive(ratio, "ratio", fix="how many times larger one mass must be to call a role, e.g. ratio=2")
    check_nonnegative(tol, "tol", fix="the success change treated as noise, e.g. tol=0.02")
    check_count(k_large, "k_large", fix="the k of the pass@k that measures coverage, e.g. k_large=256")
    if teacher is not None:
        check_policy(teacher, "teacher")
    ch = support_change(before, after, eps)
    mdp = ch.before.mdp
    sb = success_from_probs(mdp, ch.before.probs)
    sa = success_from_probs(mdp, ch.after.probs)
    w = mdp.prompt_weights
    live = w > 0
    d = sa - sb
    corr = mdp.correct
    pl_b = float(pass_at_k_from_success(sb, w, k_large))
    pl_a = float(pass_at_k_from_success(sa, w, k_large))
    ev = dict(ch.summary())
    ev["role"] = role_of(ev["expanded_mass"], ev["reshaped_mass"], ratio)
    Q, _ = backward_from_probs(mdp, ch.before.probs, corr.astype(float))
    useful = float((ch.before.sa * Q)[ch.attrited].sum())
    Q_after, _ = backward_from_probs(mdp, ch.after.probs, corr.astype(float))
    ev.update(
        useful_attrited_mass=useful,
        useful_expanded_mass=float((ch.after.sa * Q_after)[ch.expanded].sum()),
        correct_expanded=int((ch.traj_expanded & corr).sum()),
        correct_attrited=int((ch.traj_attrited & corr).sum()),
        success_before=float(w @ sb), success_after=float(w @ sa), success_change=float(w @ d),
        prompts_up=int(((d > tol) & live).sum()), prompts_down=int(((d < -tol) & live).sum()),
        largest_drop=float(max(0.0, -d[live].min())) if live.any() else 0.0,
        k_large=int(k_large), pass_large_before=pl_b, pass_large_after=pl_a,
        kl_after_before=kl(after, before), kl_before_after=kl(before, after),
    )
    reasons = []
    if ev["role"] == "expansion-dominant":
        reasons.append(f"{ev['expanded_mass']:.3f} of the new occupancy lies on {ev['expanded']} pairs that "
                       f"were below eps before, >= {ratio:g}x the mass reshaped inside shared support; "
                       f"{ev['useful_expanded_mass']:.3f} of it leads to success")
    elif ev["role"] == "reshaping-dominant":
        reasons.append(f"{ev['reshaped_mass']:.3f} of occupancy moved inside the shared support, >= {ratio:g}x "
                       f"the mass on newly supported pairs ({ev['expanded_mass']:.3f})")
    elif ev["role"] == "mixed":
        reasons.append("expanded and reshaped masses are within a factor "
                       f"{ratio:g} of each other ({ev['expanded_mass']:.3f} vs {ev['reshaped_mass']:.3f})")
    if ev["correct_expanded"]:
        reasons.append(f"{ev['correct_expanded']} correct answers entered the support (pi(y|x) >= eps)")
    high = []
    if ev["prompts_down"]:
        high.append(f"{ev['prompts_down']} prompts lost more than {tol:g} success "
                    f"(largest drop {ev['largest_drop']:.3f})")
    if pl_a < pl_b - tol:
        high.append(f"pass@{k_large} fell {pl_b:.3f} -> {pl_a:.3f}")
    moderate = []
    if ev["correct_attrited"]:
        moderate.append(f"{ev['correct_attrited']} correct answers left the support")
    if useful > tol:
        moderate.append(f"useful attrited mass {useful:.3f} > {tol:g} (occupancy that led to success "
                        "through pairs now below eps)")
    if teacher is not None:
        tv = teacher_view(teacher, teacher_prompts)
        ts = float(w @ success_from_probs(mdp, tv.probs()))
        ev.update(teacher_success=ts, retention=float(ev["success_after"] / ts) if ts > 0 else float("nan"),
                  kl_to_teacher=kl(after, tv))
        reasons.append(f"consolidation: keeps {ev['retention']:.0%} of the teacher's success "
                       f"({ev['success_after']:.3f} of {ts:.3f}) without the teacher's context")
    risk = "high" if high else "moderate" if moderate else "low"
    reasons += high + moderate
    return Diagnosis(ev["role"], risk, ev, ch, np.stack([sb, sa]), reasons)


# =========================================================================== pipeline
@dataclass(eq=False)
class Handoff:
    """One stage of a pipeline and what it changed (survey §6.4).

    ``before``/``after`` are policies; ``diagnosis`` the :func:`diagnose` of the stage;
    ``success`` (before, after) prompt-weighted; ``pass_at_k`` ``{k: (before, after)}``;
    ``kl_to_previous`` = KL(after‖before) and ``kl_to_base`` = KL(after‖base), nats.
    ``expanded``/``attrited`` are the pair masks at ``eps`` (also in ``diagnosis.change``).
    """

    name: str
    run: Run | None
    before: Policy
    after: Policy
    diagnosis: Diagnosis
    success: tuple
    pass_at_k: dict
    kl_to_previous: float
    kl_to_base: float

    @property
    def expanded(self) -> np.ndarray:
        return self.diagnosis.change.expanded

    @property
    def attrited(self) -> np.ndarray:
        return self.diagnosis.change.attrited

    def row(self) -> dict:
        e = self.diagnosis.evidence
        out = {"stage": self.name, "role": self.diagnosis.role, "attrition_risk": self.diagnosis.attrition_risk,
               "success_before": self.success[0], "success_after": self.success[1],
               "expanded": e["expanded"], "attrited": e["attrited"], "expanded_mass": e["expanded_mass"],
               "reshaped_mass": e["reshaped_mass"], "attrited_mass": e["attrited_mass"],
               "kl_to_previous": self.kl_to_previous, "kl_to_base": self.kl_to_base}
        out.update({f"pass@{k}": v[1] for k, v in self.pass_at_k.items()})
        return out


@dataclass(eq=False)
class PipelineReport:
    """The result of :func:`pipeline`: the base, one :class:`Handoff` per stage, the final policy."""

    base: Policy
    handoffs: list
    eps: float
    ks: tuple

    @property
    def policy(self) -> Policy:
        return self.handoffs[-1].after if self.handoffs else self.base

    @property
    def runs(self) -> list:
        return [h.run for h in self.handoffs]

    @property
    def policies(self) -> list:
        """The base followed by the policy after each stage."""
        return [self.base] + [h.after for h in self.handoffs]

    def __getitem__(self, name_or_index):
        if isinstance(name_or_index, str):
            for h in self.handoffs:
                if h.name == name_or_index:
                    return h
            raise KeyError(f"no stage named {name_or_index!r}; stages: {[h.name for h in self.handoffs]}")
        return self.handoffs[name_or_index]

    def table(self) -> list:
        """One dict per stage (see :meth:`Handoff.row`), ready for a printed table or pandas."""
        return [h.row() for h in self.handoffs]

    def summary(self) -> str:
        head = f"{'stage':<14}{'role':<20}{'risk':<10}{'success':>16}{'+pairs':>8}{'-pairs':>8}" \
               f"{'KL prev':>9}{'KL base':>9}  " + " ".join(f"pass@{k}" for k in self.ks)
        lines = [f"pipeline at eps = {self.eps:g}", head]
        for h in self.handoffs:
            r = h.row()
            lines.append(f"{h.name:<14}{r['role']:<20}{r['attrition_risk']:<10}"
                         f"{r['success_before']:>7.3f} -> {r['success_after']:.3f}{r['expanded']:>8}{r['attrited']:>8}"
                         f"{r['kl_to_previous']:>9.3f}{r['kl_to_base']:>9.3f}  "
                         + " ".join(f"{h.pass_at_k[k][1]:.3f}".rjust(len(f'pass@{k}')) for k in self.ks))
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return f"PipelineReport({[h.name for h in self.handoffs]}, eps={self.eps:g})"


def _stage_callable(stage, i) -> tuple[str, Callable]:
    """(name, callable policy -> Run or Policy) from a tuple, a dict or a bare callable."""
    if callable(stage) and not isinstance(stage, dict):
        return getattr(stage, "__name__", f"stage{i}"), stage
    if isinstance(stage, tuple) and len(stage) == 2 and callable(stage[1]):
        return str(stage[0]), stage[1]
    if isinstance(stage, dict):
        spec = dict(stage)
        method = spec.pop("method", None)
        name = spec.pop("name", None)
        if callable(method):
            fn = method
        elif isinstance(method, str):
            try:
                fn = method_function(method)
            except ValueError as e:
                raise ValueError(f"stage {i}: 'method' must be a method of toyenv.METHODS such as 'sft', "
                                 f"'rl', 'dpo', 'distill', or a callable; {e}") from None
        else:
            raise ValueError(f"stage {i}: 'method' must be a method name such as 'sft', 'rl', "
                             f"'dpo', 'distill', or a callable; got {method!r}")
        name = name or (method if isinstance(method, str) else getattr(fn, "__name__", f"stage{i}"))
        args = spec.pop("args", ())
        return name, lambda pi: fn(pi, *args, **spec)
    raise TypeError(f"stage {i} is {stage!r}: give (name, callable) with callable(policy) -> Run, "
                    "or a dict like {'method': 'rl', 'beta': 0.1, 'steps': 100}")


def pipeline(policy: Policy, stages, *, eps: float = 1e-3, ks=DEFAULT_KS, base: Policy | None = None,
             tol: float = 0.02) -> PipelineReport:
    """Run ``stages`` one after another from ``policy`` and report every handoff (survey §3.6, §6).

    Args:
        policy: the starting policy (left unchanged).
        stages: a list of ``(name, fn)`` with ``fn(policy) -> Run`` (or a Policy), or dicts
            ``{"method": "sft", "name": "SFT", "args": (demos,), **keyword_arguments}`` calling
            ``toyenv.<method>(policy, *args, **kw)``, e.g.
            ``[("SFT", lambda p: toyenv.sft(p, demos, steps=50)), {"method": "rl", "beta": 0.1}]``.
        eps: support threshold for expanded / attrited sets. ks: pass@k values reported.
        base: the policy KLs "to the base" are measured against (default: ``policy``).
        tol: success-change tolerance of :func:`diagnose`.

    Returns a :class:`PipelineReport`; ``print(report)`` gives the handoff table.
    """
    check_policy(policy)
    if isinstance(stages, (dict, tuple)) or callable(stages):
        stages = [stages]
    stages = list(stages)
    if not stages:
        raise ValueError("stages is empty: pass at least one stage, e.g. "
                         "[('SFT', lambda p: toyenv.sft(p, demos)), {'method': 'rl', 'beta': 0.1}]")
    base = policy if base is None else base
    check_policy(base, "base")
    check_same_world(policy.mdp, base.mdp, "base policy")
    eps = check_eps(eps)
    check_nonnegative(tol, "tol", fix="the success change treated as noise, e.g. tol=0.02")
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks:
        raise ValueError("ks is empty: pass the pass@k values to report, e.g. ks=(1, 16, 256)")
    ks = tuple(check_count(k, "each k in ks", fix="pass@k needs k >= 1, e.g. ks=(1, 16, 256)") for k in ks)
    named = [_stage_callable(stage, i) for i, stage in enumerate(stages)]     # every stage checked up front
    mdp = policy.mdp
    current, handoffs = policy, []
    for name, fn in named:
        with single_thread():
            out = fn(current)
        run = out if isinstance(out, Run) else None
        after = out.policy if isinstance(out, Run) else out
        if not isinstance(after, Policy):
            raise TypeError(f"stage {name!r} returned {type(out).__name__}; it must return a toyenv Run or a policy")
        check_same_world(mdp, after.mdp, f"policy returned by stage {name!r}")
        dg = diagnose(current, after, eps, tol=tol, k_large=max(ks))
        sb = success_from_probs(mdp, dg.change.before.probs)
        sa = success_from_probs(mdp, dg.change.after.probs)
        pk = {k: (float(pass_at_k_from_success(sb, mdp.prompt_weights, k)),
                  float(pass_at_k_from_success(sa, mdp.prompt_weights, k))) for k in ks}
        handoffs.append(Handoff(name, run, current, after, dg,
                                (dg.evidence["success_before"], dg.evidence["success_after"]), pk,
                                dg.evidence["kl_after_before"], kl(after, base)))
        current = after
    return PipelineReport(base, handoffs, float(eps), ks)


# =========================================================================== forgetting (§3.3.4)


