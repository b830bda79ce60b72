"""Checks for notebook 09, pipelines and diagnosis (survey §3.5 Table 2, §6, §7.2), and the
"mystery runs" the learner diagnoses.

:func:`mystery_runs` builds seven training stages from seeded package calls and hands them out under
letters, with the method that produced them hidden (each :class:`MysteryRun` holds the policy before
and after the stage, and the teacher when the stage had one). The labels live in this module: reading
them before answering spoils the exercise.

09.1 the learner's diagnosis of the mystery runs (a dict letter -> (dominant role, attrition risk));
the hint for a wrong entry points at the evidence that decides it. 09.2 the notebook's rule,
``dominant_role(diagnosis) -> (role, risk)``, the course's operational proxy for Table 2's heuristic
cues (the survey does not intend Table 2 as a decision rule), checked on the mystery runs, pipeline
stages and edge cases. Attrition is never a role: the survey lists it beside the roles, as a risk.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from toyenv.core.exact import ROLE_RATIO, role_of

from .framework import Case, Failed, exercise

NB = "09_pipelines_and_diagnosis"
LABELS = ("expansion", "reshaping", "mixed", "consolidation")
"""The dominant roles of exercise 09.1 (the rule of 09.2 may also say "no change")."""
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
def _variants() -> dict:
    """hint -> a wrong rule a learner might write."""
    def masses_1x(dg):
        e = dg.evidence
        return "expansion" if e["expanded_mass"] > e["reshaped_mass"] else "reshaping"

    def by_masses(dg):
        return dominant_role(dataclasses.replace(dg, evidence={k: v for k, v in dg.evidence.items()
                                                               if k != "retention"}))

    def no_teacher(dg):
        return by_masses(dg)

    def any_teacher(dg):
        return ("consolidation", dg.attrition_risk) if "retention" in dg.evidence else by_masses(dg)

    def one_x(dg):
        r, risk = dominant_role(dg)
        return (masses_1x(dg), risk) if r in ("expansion", "reshaping", "mixed") else (r, risk)

    def attrition_role(dg):
        r, risk = dominant_role(dg)
        return ("attrition", risk) if risk == "high" else (r, risk)

    def risk_low(dg):
        return (dominant_role(dg)[0], "low")

    def no_change_reshaping(dg):
        r, risk = dominant_role(dg)
        return ("reshaping", risk) if r == "no change" else (r, risk)

    return {
        "you ignored the teacher: check the retention first (dg.evidence.get('retention', 0) >= 0.9 -> "
        "'consolidation'); a distilled student keeping its teacher's success is consolidation even when its "
        "masses look like reshaping": no_teacher,
        "a teacher alone does not make consolidation: require the retention, dg.evidence['retention'] >= 0.9 "
        "(a distillation stopped early keeps little of the teacher's success)": any_teacher,
        f"you compared the masses with a factor 1: the course uses one threshold, ROLE_RATIO = {ROLE_RATIO:g} "
        "(toyenv.ROLE_RATIO): 'expansion' when expanded_mass >= ROLE_RATIO * reshaped_mass, 'reshaping' when "
        "reshaped_mass >= ROLE_RATIO * expanded_mass, 'mixed' in between": one_x,
        "attrition is not a role: the survey lists it beside the roles, as a risk (Table 2, §3.3.4). Keep the "
        "role from the masses (or the retention) and report the loss as the risk, dg.attrition_risk": attrition_role,
        "the second element is the stage's attrition risk, dg.attrition_risk ('low', 'moderate' or 'high'), "
        "whatever the role": risk_low,
        "when nothing moved (dg.role == 'no change') the role is 'no change'": no_change_reshaping,
    }


@functools.lru_cache(maxsize=1)
def _rule_cases() -> tuple:
    """(name, diagnosis) pairs: the mystery runs, a pipeline's stages and edited edge cases."""
    import toyenv
    from toyenv.methods.fit import single_thread
    from toyenv.analysis.pipeline import diagnose
    b = _build()
    letter = {what: k for k, what in b["what"].items()}
    cases = [(f"mystery run {k}", dg) for k, dg in b["diagnoses"].items()]
    hp_sft = b["runs"][letter["sft-hidden-path"]]
    with single_thread():
        rl_after = toyenv.rl(hp_sft.after, beta=0.0, steps=100, seed=0).policy
        rl_alone = toyenv.rl(hp_sft.before, beta=0.0, steps=100, seed=0).policy
    cases.append(("hidden-path: RL after SFT", diagnose(hp_sft.after, rl_after, EPS)))
    cases.append(("hidden-path: RL alone (nothing to reinforce)", diagnose(hp_sft.before, rl_alone, EPS)))
    # edge cases: the same diagnoses with edited evidence (role kept consistent with the masses)
    sft = b["diagnoses"][letter["sft-hidden-path"]]
    dist = b["diagnoses"][letter["distill-scaffold"]]
    for x, r in ((0.30, 0.20), (0.20, 0.30), (0.50, 0.20)):
        ev = dict(sft.evidence, expanded_mass=x, reshaped_mass=r)
        cases.append((f"a stage with expanded mass {x:.2f} and reshaped mass {r:.2f}",
                      dataclasses.replace(sft, role=role_of(x, r, ROLE_RATIO), evidence=ev)))
    ev = dict(sft.evidence, expanded_mass=0.30, reshaped_mass=0.20)
    cases.append(("a 'mixed' stage (0.30 vs 0.20) with attrition risk 'high'",
                  dataclasses.replace(sft, role=role_of(0.30, 0.20, ROLE_RATIO), attrition_risk="high", evidence=ev)))
    ev = dict(dist.evidence, retention=0.95)
    cases.append(("a distillation keeping 95% of the teacher's success, attrition risk 'high'",
                  dataclasses.replace(dist, attrition_risk="high", evidence=ev)))
    return tuple(cases)


def _as_pair(ans):
    if isinstance(ans, (tuple, list)) and len(ans) == 2 and all(isinstance(x, str) for x in ans):
        return (ans[0].strip().lower(), ans[1].strip().lower())
    return None


@exercise("09.2", notebook=NB, title="The course's proxy for Table 2, as code",
          hints=("Table 2's cues as code are questions asked in order; the first that applies decides the "
                 "role. Which question has to come before the masses, and why does a teacher's retention come "
                 "first of all? The attrition risk is not one of the roles: where does it come from?",
                 "Role: 'consolidation' when the evidence has a retention of at least 0.9; otherwise 'no "
                 "change' when the diagnosis says so; otherwise compare the expanded and reshaped masses with "
                 "the course's threshold ROLE_RATIO ('expansion', 'reshaping', or 'mixed' in between). Risk: "
                 "the diagnosis's attrition risk. Return the pair (role, risk)."),
          reread="notebook 09's section on the course's proxy for Table 2, and your answers to exercise 09.1",
          forbid=("toyenv.course.checks.nb09.dominant_role",),
          own="write the rule yourself")
def check_dominant_role(fn):
    cases = _rule_cases()
    truth = [dominant_role(dg) for _, dg in cases]
    got = []
    for (name, dg), t in zip(cases, truth):
        c = Case(name, (dg,))
        ans = c.call(fn)
        if ans is None:
            raise Failed(f"your function returned None on {name}: did you forget to `return` (role, risk)?")
        if isinstance(ans, str):
            if ans.strip().lower() == "attrition":
                raise Failed(f"on {name} you returned 'attrition': attrition is not a role but a risk (Table 2 "
                             "lists it separately). Return a pair (role, dg.attrition_risk)")
            raise Failed(f"on {name} you returned the string {ans!r}: return a pair (role, attrition risk), "
                         "e.g. ('reshaping', dg.attrition_risk)")
        pair = _as_pair(ans)
        if pair is None:
            raise Failed(f"return a pair of strings (role, attrition risk), not {ans!r}, on {name}")
        got.append(pair)
    wrong = [i for i, (g, t) in enumerate(zip(got, truth)) if g != t]
    if not wrong:
        return (f"{len(cases)} diagnoses: the mystery runs, a pipeline's stages, 'no change', 'mixed' roles at "
                f"ROLE_RATIO = {ROLE_RATIO:g}, and a consolidation with high risk")
    first = wrong[0]
    name = cases[first][0]
    if got[first][0] in ("expansion-dominant", "reshaping-dominant"):
        raise Failed(f"on {name} you returned {got[first][0]!r}, the diagnosis's role string: return one of the "
                     f"roles {', '.join(map(repr, LABELS + ('no change',)))}")
    for hint, rule in _variants().items():
        alt = [rule(dg) for _, dg in cases]
        if all(alt[i] == got[i] for i in wrong) and alt[first] != truth[first]:
            raise Failed(f"{hint} (seen on {name}: you said {got[first]!r}, the rule gives {truth[first]!r})")
    dg = cases[first][1]
    e = dg.evidence
    raise Failed(f"on {name} you said {got[first]!r}, the rule gives {truth[first]!r} (role {dg.role}, "
                 f"attrition risk {dg.attrition_risk}, expanded mass {e['expanded_mass']:.3f}, reshaped "
                 f"mass {e['reshaped_mass']:.3f}, retention {e.get('retention', float('nan')):.2f}); "
                 f"{len(wrong)} of {len(cases)} cases differ")
