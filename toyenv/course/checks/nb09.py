"""Checks for notebook 09, pipelines and diagnosis (survey §3.5 Table 2, §6, §7.2), and the
"mystery runs" the learner diagnoses.

:func:`mystery_runs` builds seven training stages from seeded package calls and hands them out under
letters, with the method that produced them hidden (each :class:`MysteryRun` holds the policy before
and after the stage, and the teacher when the stage had one). The labels live in this module: reading
them before answering spoils the exercise.

09.1 the learner's labels for the mystery runs (a dict letter -> role); the hint for a wrong label
points at the evidence that decides it. 09.2 the notebook's decision rule, Table 2 turned into code,
``dominant_role(diagnosis) -> label``, checked on the mystery runs, pipeline stages and edge cases.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from .framework import Case, Failed, exercise

NB = "09_pipelines_and_diagnosis"
LABELS = ("expansion", "reshaping", "attrition", "consolidation")
"""The four answers of exercise 09.1 (the rule of 09.2 may also say "no change")."""
RETENTION = 0.9
"""A stage with a teacher consolidates when it keeps at least this share of the teacher's success."""
EPS = 1e-3
"""Support threshold used for every diagnosis in notebook 09."""


# ------------------------------------------------------------------------------- the rule
def dominant_role(dg) -> str:
    """Notebook 09's decision rule (Table 2 as numbers, §3.5): the label of one stage.

    1. "consolidation" if the stage had a teacher and keeps >= 90% of its success
       (``dg.evidence["retention"] >= 0.9``): the behaviour survived the handoff (§3.4);
    2. "attrition" if ``dg.attrition_risk == "high"``: some prompt lost success or pass@k at large k
       fell, whatever else happened (§3.3.4, §6.4);
    3. "no change" if ``dg.role == "no change"``;
    4. "expansion" if more occupancy lies on newly supported pairs than was moved inside the shared
       support (``expanded_mass > reshaped_mass``), else "reshaping" (§3.3.2-3.3.3).
    """
    ev = dg.evidence
    if ev.get("retention", 0.0) >= RETENTION:
        return "consolidation"
    if dg.attrition_risk == "high":
        return "attrition"
    if dg.role == "no change":
        return "no change"
    return "expansion" if ev["expanded_mass"] > ev["reshaped_mass"] else "reshaping"


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
        run, _ = toyenv.rlhf(tb, steps=100, seed=0)
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


def _evidence_hint(letter: str, said: str, truth: str, dg) -> str:
    e = dg.evidence
    masses = (f"expanded mass {e['expanded_mass']:.3f} vs reshaped mass {e['reshaped_mass']:.3f} "
              "(dg.evidence['expanded_mass'], ['reshaped_mass'])")
    if truth == "consolidation":
        return (f"run {letter} learned from a teacher and keeps {e['retention']:.0%} of its success without the "
                f"teacher's hint (dg.evidence['retention'] = {e['retention']:.2f}, KL to the teacher "
                f"{e['kl_to_teacher']:.3f}): the behaviour survived the handoff, whatever the masses say")
    if truth == "attrition":
        lost = [f"{e['prompts_down']} prompts lost success (largest drop {e['largest_drop']:.2f}, "
                "dg.evidence['prompts_down'])"] if e["prompts_down"] else []
        if e["pass_large_after"] < e["pass_large_before"] - 0.02:
            lost.append(f"pass@{e['k_large']} fell {e['pass_large_before']:.2f} -> {e['pass_large_after']:.2f}")
        extra = ""
        if said == "expansion" and e["expanded_mass"] > e["reshaped_mass"]:
            extra = (f"; its expanded mass {e['expanded_mass']:.2f} is large, but only "
                     f"{e['useful_expanded_mass']:.3f} of it leads to success (dg.evidence['useful_expanded_mass'])")
        elif said == "expansion":
            extra = f"; and its expanded mass is only {e['expanded_mass']:.3f}"
        elif e["success_after"] > e["success_before"]:
            extra = f"; mean success rose {e['success_before']:.2f} -> {e['success_after']:.2f}, which hides the loss"
        return f"run {letter} has attrition risk 'high': " + " and ".join(lost) + extra
    if said == "consolidation" and "retention" not in e:
        return (f"run {letter} had no teacher (run.teacher is None): consolidation is judged against a teacher "
                f"whose behaviour the stage should keep (dg.evidence['retention']); judge it by its masses: {masses}")
    if said == "consolidation":
        return (f"run {letter} had a teacher but keeps only {e['retention']:.0%} of its success "
                f"(dg.evidence['retention'] = {e['retention']:.2f}): the behaviour has not survived the handoff; "
                f"judge it by its masses: {masses}")
    if said == "attrition":
        return (f"run {letter}'s attrition risk is '{dg.attrition_risk}', not 'high': no prompt lost more than "
                f"0.02 success (dg.evidence['prompts_down'] = {e['prompts_down']}) and pass@{e['k_large']} did "
                f"not fall; what left the support did not lead to success. Judge it by its masses: {masses}")
    if truth == "expansion":
        return (f"run {letter} puts {e['expanded_mass']:.2f} of its occupancy on {e['expanded']} pairs that were "
                f"outside E_eps before: {masses}; {e['correct_expanded']} correct answers entered the support")
    return (f"run {letter} has {masses}: probability moved inside the shared support, "
            f"{e['expanded']} pairs entered it")


@exercise("09.1", notebook=NB, title="Diagnose the mystery runs",
          hints=("Every run's run.diagnose() holds the evidence. Take the runs one by one and ask the "
                 "notebook's questions in order: did it learn from a teacher and keep that behaviour, did "
                 "some prompt lose, and where did the moved occupancy go?",
                 "A run is 'consolidation' if it had a teacher and its evidence's retention is at least 0.9; "
                 "otherwise 'attrition' if its attrition risk is 'high'; otherwise 'expansion' if its "
                 "expanded mass exceeds its reshaped mass, else 'reshaping'. Return a dict from every letter "
                 "A-G to its label."),
          reread="notebook 09's sections on Table 2 as numbers (toyenv.diagnose) and the seven mystery runs",
          forbid=("toyenv.course.checks.nb09.dominant_role", "toyenv.course.checks.nb09._answers"),
          own="read each run's evidence and decide its label yourself")
def check_mystery_labels(fn):
    case = Case("the seven mystery runs")
    got = case.call(fn)
    truth = _answers()
    diagnoses = _build()["diagnoses"]
    if got is None:
        raise Failed("your function returned None: did you forget to `return` the dict of labels?")
    if not isinstance(got, dict):
        raise Failed(f"return a dict such as {{'A': 'reshaping', 'B': ...}}, not a {type(got).__name__}")
    got = {str(k).strip().upper(): v for k, v in got.items()}
    missing = [k for k in truth if k not in got]
    if missing:
        raise Failed(f"your dict has no label for run(s) {', '.join(missing)}; label all of {', '.join(truth)}")
    extra = [k for k in got if k not in truth]
    if extra:
        raise Failed(f"there is no run {', '.join(extra)}; the runs are {', '.join(truth)}")
    for k, v in got.items():
        if _normalise(v) not in LABELS:
            raise Failed(f"run {k}: {v!r} is not one of the labels {', '.join(map(repr, LABELS))}")
    wrong = [k for k in truth if _normalise(got[k]) != truth[k]]
    if wrong:
        k = wrong[0]
        more = f" ({len(wrong)} of {len(truth)} labels are wrong: {', '.join(wrong)})" if len(wrong) > 1 else ""
        raise Failed(f"you labelled run {k} {_normalise(got[k])!r}: "
                     + _evidence_hint(k, _normalise(got[k]), truth[k], diagnoses[k]) + more)
    return f"all {len(truth)} runs labelled as the evidence says"


# ------------------------------------------------------------------------------- 09.2
def _variants() -> dict:
    """hint -> a wrong rule a learner might write."""
    def masses(dg):
        e = dg.evidence
        return "expansion" if e["expanded_mass"] > e["reshaped_mass"] else "reshaping"

    def no_teacher(dg):
        if dg.attrition_risk == "high":
            return "attrition"
        return "no change" if dg.role == "no change" else masses(dg)

    def any_teacher(dg):
        return "consolidation" if "retention" in dg.evidence else no_teacher(dg)

    def expansion_first(dg):
        r = dominant_role(dg)
        if r == "attrition" and masses(dg) == "expansion" and dg.role != "no change":
            return "expansion"
        return r

    def never_attrition(dg):
        r = dominant_role(dg)
        return ("no change" if dg.role == "no change" else masses(dg)) if r == "attrition" else r

    def moderate(dg):
        r = dominant_role(dg)
        return "attrition" if r in ("expansion", "reshaping") and dg.attrition_risk == "moderate" else r

    def role_only(dg):
        r = dominant_role(dg)
        if r in ("expansion", "reshaping") and dg.role == "mixed":
            return "reshaping"
        return r

    def no_change_reshaping(dg):
        r = dominant_role(dg)
        return "reshaping" if r == "no change" else r

    return {
        "you ignored the teacher: check the retention first (dg.evidence.get('retention', 0) >= 0.9 -> "
        "'consolidation'); a distilled student keeping its teacher's success is consolidation even when its "
        "masses look like reshaping": no_teacher,
        "a teacher alone does not make consolidation: require the retention, dg.evidence['retention'] >= 0.9 "
        "(a distillation stopped early keeps little of the teacher's success)": any_teacher,
        "you checked the masses before the attrition risk: a stage with dg.attrition_risk == 'high' is "
        "'attrition' even when its expanded mass is large (expansion into wrong answers while others are lost)":
            expansion_first,
        "you never return 'attrition': when dg.attrition_risk == 'high' (a prompt lost success or pass@k at "
        "large k fell) the stage's main story is the loss": never_attrition,
        "only dg.attrition_risk == 'high' is attrition; 'moderate' means wrong or unused behaviour left the "
        "support with no prompt losing success: decide those by the masses": moderate,
        "for a 'mixed' role compare the masses: 'expansion' when expanded_mass > reshaped_mass, else "
        "'reshaping' (you used dg.role alone)": role_only,
        "when nothing moved (dg.role == 'no change') return 'no change'": no_change_reshaping,
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
    # edge cases: the same diagnoses with edited evidence
    sft = b["diagnoses"][letter["sft-hidden-path"]]
    dist = b["diagnoses"][letter["distill-scaffold"]]
    ev = dict(sft.evidence, expanded_mass=0.30, reshaped_mass=0.20)
    cases.append(("a 'mixed' stage with expanded mass 0.30 > reshaped mass 0.20",
                  dataclasses.replace(sft, role="mixed", evidence=ev)))
    ev = dict(sft.evidence, expanded_mass=0.20, reshaped_mass=0.30)
    cases.append(("a 'mixed' stage with expanded mass 0.20 < reshaped mass 0.30",
                  dataclasses.replace(sft, role="mixed", evidence=ev)))
    ev = dict(dist.evidence, retention=0.95)
    cases.append(("a distillation keeping 95% of the teacher's success, attrition risk 'high'",
                  dataclasses.replace(dist, attrition_risk="high", evidence=ev)))
    return tuple(cases)


@exercise("09.2", notebook=NB, title="Table 2 as a decision rule",
          hints=("Table 2 as code is a list of questions asked in order; the first that applies decides. "
                 "Which question has to come before the masses, and why does a teacher's retention come "
                 "first of all?",
                 "Answer 'consolidation' when the evidence has a retention of at least 0.9; otherwise "
                 "'attrition' when the attrition risk is 'high'; otherwise 'no change' when the role is 'no "
                 "change'; otherwise 'expansion' if the expanded mass exceeds the reshaped mass, else "
                 "'reshaping'."),
          reread="notebook 09's section on Table 2 as numbers, and your labels of exercise 09.1",
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
            raise Failed(f"your function returned None on {name}: did you forget to `return` the label?")
        if not isinstance(ans, str):
            raise Failed(f"return a label (a string such as 'reshaping'), not a {type(ans).__name__}, on {name}")
        got.append(ans.strip().lower())
    wrong = [i for i, (g, t) in enumerate(zip(got, truth)) if g != t]
    if not wrong:
        return (f"{len(cases)} diagnoses: the mystery runs, a pipeline's stages, 'no change', 'mixed' roles "
                "and a consolidation with high risk")
    first = wrong[0]
    name = cases[first][0]
    if got[first] in ("expansion-dominant", "reshaping-dominant", "mixed"):
        raise Failed(f"on {name} you returned {got[first]!r}, the diagnosis's role string: return one of the "
                     f"labels {', '.join(map(repr, LABELS + ('no change',)))}")
    for hint, rule in _variants().items():
        alt = [rule(dg) for _, dg in cases]
        if all(alt[i] == got[i] for i in wrong) and alt[first] != truth[first]:
            raise Failed(f"{hint} (seen on {name}: you said {got[first]!r}, the rule gives {truth[first]!r})")
    e = cases[first][1].evidence
    raise Failed(f"on {name} you said {got[first]!r}, the rule gives {truth[first]!r} (role {cases[first][1].role}, "
                 f"attrition risk {cases[first][1].attrition_risk}, expanded mass {e['expanded_mass']:.3f}, reshaped "
                 f"mass {e['reshaped_mass']:.3f}, retention {e.get('retention', float('nan')):.2f}); "
                 f"{len(wrong)} of {len(cases)} cases differ")
