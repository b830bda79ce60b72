"""Checks for notebook 11, one map of post-training (survey §3, §3.7, Tables 6-7).

11.1 predict, then run: the dominant role one method (GRPO with a process reward) lands in on a
second world, many-paths, after notebook 06 showed it expanding the support of a rare hidden path
(§3.7: roles are context-dependent).

11.2 place a training stage on the survey's axes from its evidence:
``place_stage(dg, trajectories, evaluator) -> (provenance, role, risk)``. Provenance is read from
*whose trajectories* updated the learner (§3.1), never from the evaluator (§3.2; Table 7 row 2's
boundary note); the role from the masses with ``ROLE_RATIO`` (or consolidation, from retention
against a teacher, §3.4); the attrition risk beside it, never as a role (§3.3.4).

11.3 a Table 7 case from its measured provenance: ``read_case(gaps) -> (most off-policy arm, most
on-policy arm)`` from the arms' generator gaps (KL(generator ‖ learner) averaged over updates,
:func:`toyenv.analysis.borderline.generator_gap`), checked on small versions of the five cases of
:func:`toyenv.borderline_cases` and on arms whose names do not give the answer away.
"""
from __future__ import annotations

import dataclasses
import functools

from toyenv.core.exact import ROLE_RATIO, role_of

from .framework import Case, Failed, exercise

NB = "11_one_map_of_post_training"
EPS = 1e-3
RETENTION = 0.9
"""A stage with a teacher consolidates when it keeps at least this share of the teacher's success."""

TRAJECTORIES = {
    "learner, fresh every update": "on-policy",
    "learner, sampled once and reused": "off-policy",
    "teacher": "off-policy",
    "demonstrations": "off-policy",
}
"""Where the trajectories of a stage came from -> its provenance (§3.1; a self-generated batch
sampled once and reused is off-policy, §4.3)."""
EVALUATORS = ("token targets", "verifier", "teacher", "preferences", "learned reward")
"""The supervision attached to those trajectories (the interface layer, §3.2): not the provenance."""
PROVENANCES = ("off-policy", "on-policy")
ROLES = ("expansion", "reshaping", "mixed", "consolidation", "no change")
RISKS = ("low", "moderate", "high")


# ------------------------------------------------------------------------------- 11.2 reference
def place_stage(dg, trajectories: str, evaluator: str) -> tuple:
    """Reference for 11.2: ``(provenance, role, attrition risk)`` of one stage.

    provenance: ``TRAJECTORIES[trajectories]`` (the evaluator plays no part). role: "consolidation"
    when the diagnosis has a teacher and ``retention >= 0.9``; else "no change" when ``dg.role`` says
    so; else "expansion" / "reshaping" / "mixed" from the masses with ``ROLE_RATIO``. risk:
    ``dg.attrition_risk``.
    """
    if trajectories not in TRAJECTORIES:
        raise ValueError(f"trajectories must be one of {list(TRAJECTORIES)}, got {trajectories!r}")
    ev = dg.evidence
    if ev.get("retention", 0.0) >= RETENTION:
        role = "consolidation"
    elif dg.role == "no change":
        role = "no change"
    else:
        role = role_of(ev["expanded_mass"], ev["reshaped_mass"], ROLE_RATIO).replace("-dominant", "")
    return TRAJECTORIES[trajectories], role, dg.attrition_risk


@functools.lru_cache(maxsize=1)
def stages() -> tuple:
    """The cases of 11.2: ``(name, diagnosis, trajectories, evaluator)``, built once (a few seconds)."""
    import toyenv
    from toyenv.methods.fit import single_thread
    out = []
    with single_thread():
        hp = toyenv.make("hidden-path")
        hb = hp.base_policy()
        mp = toyenv.make("many-paths")
        mb = mp.base_policy()
        sc = toyenv.make("scaffold")
        sb = sc.base_policy()
        ts = toyenv.make("two-skills")
        tb = ts.base_policy()
        sft_hp = toyenv.sft(hb, toyenv.demonstrations(hp, 16, seed=0), steps=60, seed=0).policy
        out.append(("SFT on hidden-path", toyenv.diagnose(hb, sft_hp, EPS), "demonstrations", "token targets"))
        sft_mp = toyenv.sft(mb, toyenv.demonstrations(mp, 16, seed=0), steps=60, seed=0).policy
        out.append(("SFT on many-paths", toyenv.diagnose(mb, sft_mp, EPS), "demonstrations", "token targets"))
        rft = toyenv.rejection_sampling(mb, n_samples=256, steps=100, seed=0).policy
        out.append(("rejection sampling on many-paths", toyenv.diagnose(mb, rft, EPS),
                    "learner, sampled once and reused", "verifier"))
        rl_mp = toyenv.rl(mb, beta=0.0, steps=60, seed=0).policy
        out.append(("GRPO on many-paths", toyenv.diagnose(mb, rl_mp, EPS), "learner, fresh every update", "verifier"))
        rl_hp = toyenv.rl(hb, beta=0.0, steps=30, seed=0).policy
        out.append(("GRPO on hidden-path from the base", toyenv.diagnose(hb, rl_hp, EPS),
                    "learner, fresh every update", "verifier"))
        d_off = toyenv.distill(sb, sb, teacher_prompts="hinted", on_policy=0.0, steps=100, seed=0, n_samples=16,
                               snapshot_steps=[10])
        out.append(("off-policy distillation on scaffold", toyenv.diagnose(sb, d_off.policy, EPS, teacher=sb,
                                                                         teacher_prompts="hinted"),
                    "teacher", "teacher"))
        out.append(("off-policy distillation on scaffold, stopped after 10 updates",
                    toyenv.diagnose(sb, d_off.at(10), EPS, teacher=sb, teacher_prompts="hinted"), "teacher", "teacher"))
        d_on = toyenv.distill(sb, sb, teacher_prompts="hinted", on_policy=1.0, steps=100, seed=0, n_samples=16)
        out.append(("on-policy distillation on scaffold", toyenv.diagnose(sb, d_on.policy, EPS, teacher=sb,
                                                                        teacher_prompts="hinted"),
                    "learner, fresh every update", "teacher"))
        rlhf = toyenv.rlhf(tb, steps=100, seed=0).policy
        out.append(("RLHF on two-skills", toyenv.diagnose(tb, rlhf, EPS), "learner, fresh every update", "learned reward"))
        dpo = toyenv.dpo(mb, n_prompts=32, steps=40, seed=0).policy
        out.append(("offline DPO on many-paths (pairs sampled once from the start policy)", toyenv.diagnose(mb, dpo, EPS),
                    "learner, sampled once and reused", "preferences"))
    # an edited stage between the two ratios, with a high risk: "mixed", and the risk beside it
    sft = out[0][1]
    ev = dict(sft.evidence, expanded_mass=0.30, reshaped_mass=0.20)
    out.append(("a stage with expanded mass 0.30 and reshaped mass 0.20, attrition risk high",
                dataclasses.replace(sft, role=role_of(0.30, 0.20, ROLE_RATIO), attrition_risk="high", evidence=ev),
                "demonstrations", "token targets"))
    return tuple(out)


def _variants() -> dict:
    """hint -> a wrong placement a learner might write."""
    by_eval = {"token targets": "off-policy", "teacher": "off-policy", "preferences": "off-policy",
               "verifier": "on-policy", "learned reward": "on-policy"}

    def from_evaluator(dg, traj, evaluator):
        return (by_eval.get(evaluator, "off-policy"),) + place_stage(dg, traj, evaluator)[1:]

    def self_generated(dg, traj, evaluator):
        prov = "on-policy" if traj.startswith("learner") else "off-policy"
        return (prov,) + place_stage(dg, traj, evaluator)[1:]

    def no_teacher(dg, traj, evaluator):
        ev = {k: v for k, v in dg.evidence.items() if k != "retention"}
        return place_stage(dataclasses.replace(dg, evidence=ev), traj, evaluator)

    def any_teacher(dg, traj, evaluator):
        p, r, k = place_stage(dg, traj, evaluator)
        return (p, "consolidation" if "retention" in dg.evidence else r, k)

    def attrition_role(dg, traj, evaluator):
        p, r, k = place_stage(dg, traj, evaluator)
        return (p, "attrition" if k == "high" else r, k)

    def one_x(dg, traj, evaluator):
        p, r, k = place_stage(dg, traj, evaluator)
        if r in ("expansion", "reshaping", "mixed"):
            e = dg.evidence
            r = "expansion" if e["expanded_mass"] > e["reshaped_mass"] else "reshaping"
        return p, r, k

    return {
        "you read the provenance from the evaluator: a verifier or a reward does not make a stage on-policy, nor "
        "does a teacher make it off-policy. Provenance is whose trajectories updated the learner (§3.1; Table 7 "
        "row 2: the same verifier can curate a fixed batch or score fresh rollouts)": from_evaluator,
        "self-generated is not the same as on-policy: a batch sampled once from the learner and reused for "
        "every update trains on the learner's *old* samples, off-policy (§4.3); only 'learner, fresh every "
        "update' is on-policy": self_generated,
        "you ignored the teacher: when the diagnosis has a retention (a teacher was given) and it is >= 0.9, the "
        "behaviour survived the handoff and the role is 'consolidation' (§3.4)": no_teacher,
        "a teacher alone does not make consolidation: require dg.evidence['retention'] >= 0.9 (a distillation "
        "stopped early keeps little of its teacher's success)": any_teacher,
        "attrition is not a role: the survey lists it beside the roles, as a risk (§3.3.4, Table 2). Keep the "
        "role from the masses and report the loss as the third element, dg.attrition_risk": attrition_role,
        f"you compared the masses with a factor 1: a role dominates only at ROLE_RATIO = {ROLE_RATIO:g} "
        "(toyenv.ROLE_RATIO), 'mixed' in between": one_x,
    }


def _triple(ans):
    if isinstance(ans, (tuple, list)) and len(ans) == 3 and all(isinstance(x, str) for x in ans):
        p, r, k = (x.strip().lower() for x in ans)
        for suffix in ("-dominant", " dominant"):
            if r.endswith(suffix):
                r = r[: -len(suffix)]
        return p, r, k
    return None


@exercise("11.2", notebook=NB, title="Place a stage on the survey's axes",
          hints=("Three separate questions, each answered from a different input: whose trajectories updated "
                 "the learner (not who scored them), which role the evidence points to, and whether anything "
                 "useful left the support.",
                 "Provenance is on-policy only when the learner's own, current samples were trained on; the "
                 "evaluator never decides it. The role: consolidation when a teacher's behaviour was kept "
                 "(retention at least 0.9), 'no change' when the diagnosis says so, otherwise compare the two "
                 "masses with the course's threshold ROLE_RATIO (expansion, reshaping, or mixed in between). "
                 "The risk is the diagnosis's attrition risk, never a role."),
          reread="notebook 11's sections on the three layers and on Table 6 rebuilt from the course's runs",
          forbid=("toyenv.course.checks.nb11.place_stage",),
          own="read the provenance, role and risk off the inputs yourself")
def check_place_stage(fn):
    cases = stages()
    truth = [place_stage(dg, t, e) for _, dg, t, e in cases]
    got = []
    for (name, dg, traj, evaluator), t in zip(cases, truth):
        c = Case(f"{name} (trajectories {traj!r}, evaluator {evaluator!r})", (dg, traj, evaluator))
        ans = c.call(fn)
        if ans is None:
            raise Failed(f"your function returned None on {name}: did you forget to `return` "
                         "(provenance, role, risk)?")
        tri = _triple(ans)
        if tri is None:
            raise Failed(f"return three strings (provenance, role, attrition risk), e.g. ('off-policy', "
                         f"'expansion', 'low'), not {ans!r}, on {name}")
        p, r, k = tri
        if p not in PROVENANCES:
            raise Failed(f"on {name} the provenance {p!r} is not one of {', '.join(map(repr, PROVENANCES))}")
        if r == "attrition":
            raise Failed(f"on {name} you returned the role 'attrition': attrition is not a role but a risk "
                         "(§3.3.4, Table 2). Give the role from the masses and put the loss in the risk, "
                         "dg.attrition_risk")
        if r not in ROLES:
            raise Failed(f"on {name} the role {r!r} is not one of {', '.join(map(repr, ROLES))}")
        if k not in RISKS:
            raise Failed(f"on {name} the risk {k!r} is not one of {', '.join(map(repr, RISKS))}")
        got.append(tri)
    wrong = [i for i, (g, t) in enumerate(zip(got, truth)) if g != t]
    if not wrong:
        return (f"{len(cases)} stages placed: provenance from whose trajectories (a fixed self-generated batch is "
                "off-policy, a teacher on learner rollouts on-policy), role from the masses or the retention, "
                "attrition as a risk")
    first = wrong[0]
    name, dg, traj, evaluator = cases[first]
    for hint, rule in _variants().items():
        alt = [rule(d, t, e) for _, d, t, e in cases]
        if all(alt[i] == got[i] for i in wrong) and alt[first] != truth[first]:
            raise Failed(f"{hint} (seen on {name}: you said {got[first]!r}, the evidence gives {truth[first]!r})")
    e = dg.evidence
    which = ("provenance" if got[first][0] != truth[first][0] else
             "role" if got[first][1] != truth[first][1] else "attrition risk")
    raise Failed(f"on {name} your {which} differs: you said {got[first]!r}, the evidence gives {truth[first]!r} "
                 f"(trajectories {traj!r}; expanded mass {e['expanded_mass']:.3f}, reshaped mass "
                 f"{e['reshaped_mass']:.3f}, retention {e.get('retention', float('nan')):.2f}, attrition risk "
                 f"{dg.attrition_risk}); {len(wrong)} of {len(cases)} stages differ")


# ------------------------------------------------------------------------------- 11.3
def read_case(gaps: dict) -> tuple:
    """Reference for 11.3: ``(arm with the largest generator gap, arm with the smallest)``."""
    names = list(gaps)
    return max(names, key=lambda n: gaps[n]), min(names, key=lambda n: gaps[n])


@functools.lru_cache(maxsize=1)
def gap_cases() -> tuple:
    """The cases of 11.3: ``(name, {arm: generator gap})``, from small versions of Table 7's five cases
    (fewer updates than the notebook's, same worlds and seeds) and two with neutral arm names."""
    from toyenv.analysis import borderline as bl
    from toyenv.methods.fit import single_thread
    with single_thread():
        small = [bl.offline_vs_online_dpo(steps=20, refresh=5, seed=0),
                 bl.filter_vs_rl(steps=20, seed=0),
                 bl.traces_vs_correction(steps=20, checkpoints=(10,), seed=0),
                 bl.self_improvement_cache(rounds=2, steps_per_round=10, seed=0),
                 bl.search_then_transfer(steps=20, seed=0)]
    out = [(f"{c.case} (short runs)", {a.name: float(a.generator_gap) for a in c.arms.values()
                                       if a.run is not None}) for c in small]
    # neutral names: the answer cannot be read off a name such as "offline" or "traces"
    verifier = out[1][1]
    out.append(("two unnamed arms (the verifier case)", {"arm 1": verifier["on-policy RL"],
                                                           "arm 2": verifier["rejection sampling"]}))
    selfimp = out[3][1]
    out.append(("three unnamed arms", {"arm X": selfimp["STaR rounds"], "arm Y": 0.0,
                                       "arm Z": selfimp["one cached batch"]}))
    return tuple(out)


@exercise("11.3", notebook=NB, title="Which arm is off-policy? Read the generator gaps",
          hints=("The generator gap measures how far the policy that produced the training trajectories was "
                 "from the learner being updated. Which end of that scale is off-policy?",
                 "The arm with the largest gap trained furthest from its own current samples (the most "
                 "off-policy); the arm with the smallest gap the closest (the most on-policy). Return their "
                 "names, in that order."),
          reread="notebook 11's section on Table 7 in one cell",
          forbid=("toyenv.course.checks.nb11.read_case",),
          own="compare the gaps yourself")
def check_read_case(fn):
    cases = gap_cases()
    for name, gaps in cases:
        truth = read_case(gaps)
        ans = Case(name, (gaps,)).call(fn)
        if ans is None:
            raise Failed(f"your function returned None on {name}: did you forget to `return` the two arm names?")
        if not (isinstance(ans, (tuple, list)) and len(ans) == 2):
            raise Failed(f"return a pair of arm names (most off-policy, most on-policy), not {ans!r}, on {name}")
        if any(isinstance(x, float) for x in ans):
            raise Failed(f"on {name} you returned numbers {ans!r}: return the arms' *names* (the dict's keys), "
                         "e.g. max(gaps, key=gaps.get)")
        if any(x not in gaps for x in ans):
            raise Failed(f"on {name} {ans!r} are not all arm names; the arms are {list(gaps)}")
        got = tuple(ans)
        if got == truth:
            continue
        if got == truth[::-1]:
            raise Failed(f"on {name} you swapped the two: the generator gap is KL(generator ‖ learner), 0 when "
                         "every update trains on the learner's own current samples (on-policy); the *largest* gap "
                         f"is the most off-policy arm. Gaps: {', '.join(f'{k} {v:.3f}' for k, v in gaps.items())}")
        raise Failed(f"on {name} you said {got!r}, the gaps give {truth!r} "
                     f"({', '.join(f'{k} {v:.3f}' for k, v in gaps.items())}): read the numbers, not the names")
    return (f"{len(cases)} cases: the off-policy arm of each Table 7 case found from its measured generator gap, "
            "with and without telling names")


# ------------------------------------------------------------------------------- 11.1
ROLES = ("expansion", "reshaping", "mixed", "consolidation", "no change")
PROCESS_RUN = dict(world="many-paths", beta=0.0, steps=60, process=True, seed=0)
"""The run of exercise 11.1: GRPO with the exact process reward, 60 updates from the many-paths base
(row "on-policy process guidance" of section 2's table)."""


@functools.lru_cache(maxsize=1)
def process_run_verdicts() -> dict:
    """The (role, risk) of :data:`PROCESS_RUN` and of notebook 06's process run on the rare hidden path
    (p_hidden = 1e-2, 200 updates), by the rule of notebook 09."""
    from toyenv.analysis.pipeline import diagnose
    from toyenv.core.presets import make
    from toyenv.methods.rl import rl
    from .nb09 import dominant_role
    out = {}
    mp = make("many-paths")
    run = rl(mp.base_policy(), beta=0.0, steps=PROCESS_RUN["steps"], process=True, seed=PROCESS_RUN["seed"])
    out["many-paths"] = (dominant_role(diagnose(mp.base_policy(), run.policy, 1e-3)),
                         diagnose(mp.base_policy(), run.policy, 1e-3).evidence)
    rare = make("hidden-path", p_hidden=1e-2)
    run = rl(rare.base_policy(), beta=0.0, steps=200, process=True, seed=0)
    out["hidden-path, p_hidden = 1e-2"] = (dominant_role(diagnose(rare.base_policy(), run.policy, 1e-3)), None)
    return out


@exercise("11.1", notebook=NB, title="Predict: the role of one method on a second world", kind="predict",
          hints=("What decided the role in notebook 06 was not the process reward itself but where the correct "
                 "answers were before training. In many-paths, are the correct answers already sampled by the "
                 "base policy?",
                 "A stage is expansion-dominant when its new occupancy sits on pairs outside the old E_eps, "
                 "reshaping-dominant when it moves probability among pairs that were already there. In the rare "
                 "hidden path the answers started below eps, so learning them expanded the support; in "
                 "many-paths every correct answer already has occupancy above eps under the base policy, and a "
                 "denser reward changes how fast, not where, mass moves."),
          reread="notebook 11's section on one method in two roles, notebook 06's process-reward section and "
                 "notebook 09's rule")
def check_process_role(value):
    if not isinstance(value, str):
        raise Failed("give the role as a string, one of " + ", ".join(repr(r) for r in ROLES))
    role = value.strip().lower().replace("-dominant", "").replace(" dominant", "")
    if role == "attrition":
        raise Failed("attrition is not a role: the survey lists it beside the roles, as a risk (§3.3.4); "
                     "predict the dominant role, one of " + ", ".join(repr(r) for r in ROLES))
    if role not in ROLES:
        raise Failed(f"unknown role {value!r}: choose one of " + ", ".join(repr(r) for r in ROLES))
    verdicts = process_run_verdicts()
    (truth, risk), e = verdicts["many-paths"]
    (rare_role, _), _ = verdicts["hidden-path, p_hidden = 1e-2"]
    if role != truth:
        why = {"expansion": f"in notebook 06's rare hidden path the process reward was {rare_role}-dominant because "
                            "the answers started outside E_eps; in many-paths every correct answer is already in "
                            "the base's support, so nothing can enter it",
               "consolidation": "there is no teacher here, so no behaviour is carried across a handoff (§3.4)",
               "no change": "the process reward moves a lot of probability here: every prompt's answers are "
                            "sampled from the start",
               "mixed": "one of the two masses is far larger than the other"}.get(role, "")
        raise Failed(f"you predicted {role!r}; the run is {truth}-dominant (expanded mass "
                     f"{e['expanded_mass']:.2f}, reshaped mass {e['reshaped_mass']:.2f})"
                     + (f": {why}" if why else "") + ". Same method, another world, another role (§3.7)")
    return (f"{truth}-dominant in many-paths (expanded {e['expanded_mass']:.2f}, reshaped "
            f"{e['reshaped_mass']:.2f}, attrition risk {risk}), where notebook 06's rare hidden path made it "
            f"{rare_role}-dominant: a role belongs to a stage in its context, not to a method (§3.7)")
