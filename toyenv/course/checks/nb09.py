"""Checks for notebook 09, pipelines and diagnosis (survey §3.5 Table 2, §6, §7.2), and the
"mystery runs" the learner diagnoses.

:func:`mystery_runs` builds seven training stages from seeded package calls and hands them out under
letters, with the method that produced them hidden (each :class:`MysteryRun` holds the policy before
and after the stage, and the teacher when the stage had one). The labels live in this module: reading
them before answering spoils the exercise.

09.1 the learner's diagnosis of the mystery runs (a dict letter -> (dominant role, attrition risk));
the hint for a wrong entry points at the evidence that decides it. 09.2 predict, then run: the
(role, risk) pair of a run described in words, before its diagnosis is shown. :func:`dominant_role`
is the notebook's rule, ``dominant_role(diagnosis) -> (role, risk)``, the course's operational proxy
for Table 2's heuristic cues (the survey does not intend Table 2 as a decision rule). Attrition is
never a role: the survey lists it beside the roles, as a risk.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from toyenv.core.exact import ROLE_RATIO, role_of

from .framework import Case, Failed, exercise

NB = "09_pipelines_and_diagnosis"
LABELS = ("expansion", "reshaping", "mixed", "consolidation")
"""The dominant roles of exercise 09.1 (the rule :func:`dominant_role` may also say "no change")."""
RISKS = ("low", "moderate", "high")
"""The attrition risks, reported beside the role (``Diagnosis.attrition_risk``)."""
RETENTION = 0.9
"""A stage with a teacher consolidates when it keeps at least this share of the teacher's success."""
EPS = 1e-3
"""Support threshold used for every diagnosis in notebook 09."""


# ------------------------------------------------------------------------------- the rule
def dominant_role(dg) -> tuple:
    """Notebook 09's rule: the course's operational proxy for Table 2's cues (§3.5), one stage.

    Returns ``(role, attrition_risk)``. The role:

    1. "consolidation" if the stage had a teacher and keeps >= 90% of its success
       (``dg.evidence["retention"] >= 0.9``): the behaviour survived the handoff (§3.4);
    2. "no change" if both masses are negligible (``dg.role == "no change"``);
    3. from the masses with the course's one threshold ``ROLE_RATIO`` (= 2, :mod:`toyenv.core.exact`):
       "expansion" if ``expanded_mass >= ROLE_RATIO * reshaped_mass``, "reshaping" if
       ``reshaped_mass >= ROLE_RATIO * expanded_mass``, else "mixed" (§3.3.2-3.3.3, §3.3.5).

    The risk is ``dg.attrition_risk`` ("low", "moderate", "high"), whatever the role: the survey lists
    attrition separately, as a risk to monitor, never as a fourth role (Table 2, §3.3.4).
    """
    ev = dg.evidence
    risk = dg.attrition_risk
    if ev.get("retention", 0.0) >= RETENTION:
        return ("consolidation", risk)
    if dg.role == "no change":
        return ("no change", risk)
    role = role_of(ev["expanded_mass"], ev["reshaped_mass"], ROLE_RATIO)
    return (role.replace("-dominant", ""), risk)


# ------------------------------------------------------------------------------- mystery runs
@dataclass(eq=False)
class MysteryRun:
    """One training stage with its method hidden: the policy ``before`` and ``after`` it, in the
    world ``world``; ``teacher`` (with ``teacher_prompts``) when the stage learned from a teacher model.
    ``diagnose()`` is ``toyenv.diagnose`` with the teacher filled in."""

    name: str
    world: str
    before: object
    after: object
    teacher: object = None
    teacher_prompts: object = None

    def diagnose(self, eps: float = EPS):
        from toyenv.analysis.pipeline import diagnose
        return diagnose(self.before, self.after, eps, teacher=self.teacher, teacher_prompts=self.teacher_prompts)

    def __repr__(self):
        t = ", with a teacher" if self.teacher is not None else ""
        return f"MysteryRun({self.name!r}, world {self.world!r}{t})"


# letter -> (what it is, its label). The letters are shuffled on purpose.
_ORDER = {"A": "rl-many-paths-shared", "B": "distill-scaffold", "C": "sft-hidden-path",
          "D": "rl-many-paths-per-state", "E": "rlhf-two-skills", "F": "distill-scaffold-10-steps",
          "G": "guided-rl-hidden-path"}


@functools.lru_cache(maxsize=1)
def _build() -> dict:
    import toyenv
    from toyenv.methods.fit import single_thread
    out = {}
    with single_thread():
        hp = toyenv.make("hidden-path")
        hb = hp.base_policy()
        out["sft-hidden-path"] = MysteryRun("", "hidden-path", hb, toyenv.sft(
            hb, toyenv.demonstrations(hp, 16, seed=0), steps=60, seed=0).policy)
        out["guided-rl-hidden-path"] = MysteryRun("", "hidden-path", hb, toyenv.rl(
            hb, beta=0.0, steps=200, seed=0, hints={"prob": 0.5, "length": 1}).policy)
        mp = toyenv.make("many-paths")
        mb = mp.base_policy()
        out["rl-many-paths-shared"] = MysteryRun("", "many-paths", mb, toyenv.rl(
            mb, beta=0.0, steps=200, seed=0).policy)
        per_state = toyenv.TabularPolicy.from_probs(mp, mb.probs())
        out["rl-many-paths-per-state"] = MysteryRun("", "many-paths", per_state, toyenv.rl(
            per_state, beta=0.0, steps=200, seed=0).policy)
        ts = toyenv.make("two-skills")
        tb = ts.base_policy()
        run = toyenv.rlhf(tb, steps=100, seed=0)
        out["rlhf-two-skills"] = MysteryRun("", "two-skills", tb, run.policy)
        sc = toyenv.make("scaffold")
        sb = sc.base_policy()
        d = toyenv.distill(sb, sb, teacher_prompts="hinted", on_policy=0.0, steps=100, seed=0, n_samples=16,
                           snapshot_steps=[10])
        out["distill-scaffold"] = MysteryRun("", "scaffold", sb, d.policy, sb, "hinted")
        out["distill-scaffold-10-steps"] = MysteryRun("", "scaffold", sb, d.at(10), sb, "hinted")
    runs = {}
    for letter, key in _ORDER.items():
        runs[letter] = dataclasses.replace(out[key], name=letter)
    diagnoses = {letter: r.diagnose() for letter, r in runs.items()}
    return {"runs": runs, "diagnoses": diagnoses, "what": dict(_ORDER)}


def mystery_runs() -> dict:
    """The seven mystery runs of notebook 09, ``{letter: MysteryRun}`` (built once, then cached)."""
    return dict(_build()["runs"])


def _answers() -> dict:
    b = _build()
    return {letter: dominant_role(dg) for letter, dg in b["diagnoses"].items()}


# ------------------------------------------------------------------------------- 09.1
def _normalise(label) -> str:
    s = str(label).strip().lower().replace("_", "-")
    for suffix in ("-dominant", " dominant"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
    return s


def _masses(dg) -> str:
    e = dg.evidence
    return (f"expanded mass {e['expanded_mass']:.3f} vs reshaped mass {e['reshaped_mass']:.3f} "
            f"(dg.evidence['expanded_mass'], ['reshaped_mass']; a role dominates at ROLE_RATIO = {ROLE_RATIO:g}x)")


def _role_hint(letter: str, said: str, truth: str, dg) -> str:
    e = dg.evidence
    masses = _masses(dg)
    if said == "attrition":
        return (f"attrition is not a role: Table 2 lists it beside the roles, as a risk to monitor (§3.3.4). "
                f"Give run {letter} its dominant role ({masses}) and put the loss in its risk, "
                f"dg.attrition_risk = {dg.attrition_risk!r}")
    if truth == "consolidation":
        return (f"run {letter} learned from a teacher and keeps {e['retention']:.0%} of its success without the "
                f"teacher's hint (dg.evidence['retention'] = {e['retention']:.2f}, KL to the teacher "
                f"{e['kl_to_teacher']:.3f}): the behaviour survived the handoff, whatever the masses say")
    if said == "consolidation" and "retention" not in e:
        return (f"run {letter} had no teacher (run.teacher is None): consolidation is judged against a teacher "
                f"whose behaviour the stage should keep (dg.evidence['retention']); judge it by its masses: {masses}")
    if said == "consolidation":
        return (f"run {letter} had a teacher but keeps only {e['retention']:.0%} of its success "
                f"(dg.evidence['retention'] = {e['retention']:.2f}): the behaviour has not survived the handoff; "
                f"judge it by its masses: {masses}")
    if truth == "expansion":
        extra = ""
        if e["useful_expanded_mass"] < 0.5 * e["expanded_mass"]:
            extra = (f"; only {e['useful_expanded_mass']:.3f} of it leads to success "
                     "(dg.evidence['useful_expanded_mass']): expansion into wrong behaviour is still expansion")
        return (f"run {letter} puts {e['expanded_mass']:.2f} of its occupancy on {e['expanded']} pairs that were "
                f"outside E_eps before: {masses}; {e['correct_expanded']} correct answers entered the support"
                + extra)
    if truth == "mixed":
        return f"run {letter} has {masses}: neither is {ROLE_RATIO:g}x the other, so no role dominates"
    return (f"run {letter} has {masses}: probability moved inside the shared support, "
            f"{e['expanded']} pairs entered it")


def _risk_hint(letter: str, said: str, dg) -> str:
    e = dg.evidence
    truth = dg.attrition_risk
    if truth == "high":
        lost = [f"{e['prompts_down']} prompts lost success (largest drop {e['largest_drop']:.2f}, "
                "dg.evidence['prompts_down'])"] if e["prompts_down"] else []
        if e["pass_large_after"] < e["pass_large_before"] - 0.02:
            lost.append(f"pass@{e['k_large']} fell {e['pass_large_before']:.2f} -> {e['pass_large_after']:.2f}")
        extra = ""
        if e["success_after"] > e["success_before"]:
            extra = f"; mean success rose {e['success_before']:.2f} -> {e['success_after']:.2f}, which hides the loss"
        return f"run {letter}'s attrition risk is 'high': " + " and ".join(lost) + extra
    if truth == "moderate":
        return (f"run {letter}'s attrition risk is 'moderate', not {said!r}: no prompt lost more than 0.02 success "
                f"(dg.evidence['prompts_down'] = {e['prompts_down']}), but occupancy that led to success left the "
                f"support (dg.evidence['useful_attrited_mass'] = {e['useful_attrited_mass']:.3f}; "
                f"{e['correct_attrited']} correct answers left it)")
    return (f"run {letter}'s attrition risk is 'low', not {said!r}: no prompt lost success "
            f"(dg.evidence['prompts_down'] = {e['prompts_down']}), pass@{e['k_large']} did not fall, and what left "
            f"the support did not lead to success (dg.evidence['useful_attrited_mass'] = "
            f"{e['useful_attrited_mass']:.3f})")


def _pair(v):
    """(role, risk) from what the learner wrote, or None when it is not a pair of strings."""
    if isinstance(v, dict):
        v = (v.get("role"), v.get("risk", v.get("attrition_risk")))
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, str) for x in v):
        return _normalise(v[0]), str(v[1]).strip().lower()
    return None


@exercise("09.1", notebook=NB, title="Diagnose the mystery runs",
          hints=("Every run's run.diagnose() holds the evidence. Take the runs one by one and ask the "
                 "notebook's questions in order: did it learn from a teacher and keep that behaviour, which "
                 "role do the masses point to, and separately, did some prompt or some useful occupancy lose?",
                 "The role: 'consolidation' if the run had a teacher and its evidence's retention is at least "
                 "0.9; otherwise read the masses with the course's threshold ROLE_RATIO (expansion when the "
                 "expanded mass is at least ROLE_RATIO times the reshaped mass, reshaping the other way round, "
                 "mixed in between). The attrition risk is read apart from the role, from prompts that lost "
                 "success and useful occupancy that left the support. Return a dict from every letter A-G to "
                 "the pair (role, risk)."),
          reread="notebook 09's sections on the course's proxy for Table 2 (toyenv.diagnose) and the seven "
                 "mystery runs",
          forbid=("toyenv.course.checks.nb09.dominant_role", "toyenv.course.checks.nb09._answers"),
          own="read each run's evidence and decide its role and risk yourself")
def check_mystery_labels(fn):
    case = Case("the seven mystery runs")
    got = case.call(fn)
    truth = _answers()
    diagnoses = _build()["diagnoses"]
    if got is None:
        raise Failed("your function returned None: did you forget to `return` the dict of diagnoses?")
    if not isinstance(got, dict):
        raise Failed(f"return a dict such as {{'A': ('reshaping', 'low'), 'B': ...}}, not a {type(got).__name__}")
    got = {str(k).strip().upper(): v for k, v in got.items()}
    missing = [k for k in truth if k not in got]
    if missing:
        raise Failed(f"your dict has no entry for run(s) {', '.join(missing)}; diagnose all of {', '.join(truth)}")
    extra = [k for k in got if k not in truth]
    if extra:
        raise Failed(f"there is no run {', '.join(extra)}; the runs are {', '.join(truth)}")
    pairs = {}
    for k, v in got.items():
        pair = _pair(v)
        if pair is None:
            if isinstance(v, str) and _normalise(v) == "attrition":
                raise Failed(f"run {k}: attrition is not a role but a risk (Table 2 lists it separately); give "
                             f"each run a pair (role, attrition risk), e.g. ('reshaping', 'high')")
            raise Failed(f"run {k}: give a pair (role, attrition risk) such as ('reshaping', 'low'), not {v!r}")
        role, risk = pair
        if role not in LABELS and role != "attrition":
            raise Failed(f"run {k}: {role!r} is not one of the roles {', '.join(map(repr, LABELS))}")
        if risk not in RISKS:
            raise Failed(f"run {k}: the attrition risk {risk!r} is not one of {', '.join(map(repr, RISKS))}")
        pairs[k] = pair
    wrong = [k for k in truth if pairs[k] != truth[k]]
    if wrong:
        k = wrong[0]
        more = f" ({len(wrong)} of {len(truth)} runs are wrong: {', '.join(wrong)})" if len(wrong) > 1 else ""
        role, risk = pairs[k]
        if role != truth[k][0]:
            raise Failed(f"you gave run {k} the role {role!r}: "
                         + _role_hint(k, role, truth[k][0], diagnoses[k]) + more)
        raise Failed(f"you gave run {k} the attrition risk {risk!r}: " + _risk_hint(k, risk, diagnoses[k]) + more)
    return f"all {len(truth)} runs diagnosed as the evidence says: a dominant role and an attrition risk each"


# ------------------------------------------------------------------------------- 09.2
PREDICT_RUN = dict(world="many-paths", method="GRPO", beta=0.0, steps=60, seed=0)
"""The run whose role and risk exercise 09.2 asks to predict: sampled GRPO (8 prompts x 8 rollouts per
update, no KL penalty) for 60 updates from the many-paths base policy, the run of section 8's chooser."""


@functools.lru_cache(maxsize=1)
def predicted_run_diagnosis():
    """The diagnosis of :data:`PREDICT_RUN` (trained once per process, under a second)."""
    from toyenv.analysis.pipeline import diagnose
    from toyenv.core.presets import make
    from toyenv.methods.rl import rl
    mdp = make(PREDICT_RUN["world"])
    base = mdp.base_policy()
    run = rl(base, beta=PREDICT_RUN["beta"], steps=PREDICT_RUN["steps"], seed=PREDICT_RUN["seed"])
    return diagnose(base, run.policy, EPS)


@exercise("09.2", notebook=NB, title="Predict a run's role and attrition risk from its description",
          kind="predict",
          hints=("Recall what this kind of training did in this world in notebook 05: did any correct answer "
                 "enter the support, and did every prompt keep its answers? Those are two separate questions.",
                 "The role comes from where the new occupancy sits: on pairs that were already in E_eps "
                 "(reshaped mass) or on new ones (expanded mass), compared with the factor ROLE_RATIO. The risk "
                 "is read beside it from the prompts whose success fell and from pass@k at large k: RL without a "
                 "KL penalty sharpens the answers it samples most and squeezes out what it rarely samples."),
          reread="notebook 09's sections on the proxy for Table 2 and on one method in several roles, and "
                 "notebook 05's pass@k crossover")
def check_role_prediction(value):
    pair = _pair(value)
    if pair is None:
        raise Failed("give a pair of strings (role, attrition risk), e.g. ('mixed', 'low'): the role one of "
                     + ", ".join(repr(r) for r in LABELS + ("no change",)) + "; the risk one of "
                     + ", ".join(repr(r) for r in RISKS))
    role, risk = pair
    if role not in LABELS + ("no change", "attrition"):
        raise Failed(f"unknown role {value[0]!r}: choose one of " + ", ".join(repr(r) for r in LABELS + ("no change",)))
    if risk not in RISKS:
        raise Failed(f"unknown attrition risk {risk!r}: choose one of " + ", ".join(repr(r) for r in RISKS))
    dg = predicted_run_diagnosis()
    truth_role, truth_risk = dominant_role(dg)
    wrong = []
    if role != truth_role:
        wrong.append(_role_hint("GRPO on many-paths", role, truth_role, dg).replace("run GRPO", "GRPO"))
    if risk != truth_risk:
        wrong.append(_risk_hint("GRPO on many-paths", risk, dg).replace("run GRPO on many-paths's attrition risk", "the attrition risk of GRPO on many-paths"))
    if wrong:
        raise Failed("; ".join(wrong) + ". Role and risk are separate verdicts (§3.3.4, §3.5)")
    e = dg.evidence
    return (f"{truth_role}-dominant (expanded {e['expanded_mass']:.2f}, reshaped {e['reshaped_mass']:.2f}) with "
            f"attrition risk {truth_risk}: pass@1 rose {e['success_before']:.2f} -> {e['success_after']:.2f} while "
            f"pass@{e['k_large']} fell {e['pass_large_before']:.2f} -> {e['pass_large_after']:.2f}; a gain that "
            "masks a loss, read from the run's description before any number")
