"""The checks of notebook 11: a right answer passes, a stub is "not attempted", each typical mistake
gets its own hint, nothing escapes as a traceback. Wrong answers are written the way a learner would
write them."""
import pytest

from exercise_contract import ExerciseContract, run, stub  # noqa: F401
from toyenv.core.exact import ROLE_RATIO
from toyenv.course.checks import nb11


@pytest.fixture(autouse=True)
def _one_torch_thread():
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield


# ------------------------------------------------------------------------------ right answers
def place_stage(dg, trajectories, evaluator):
    provenance = "on-policy" if trajectories == "learner, fresh every update" else "off-policy"
    e = dg.evidence
    if e.get("retention", 0.0) >= 0.9:
        role = "consolidation"
    elif dg.role == "no change":
        role = "no change"
    elif e["expanded_mass"] >= ROLE_RATIO * e["reshaped_mass"]:
        role = "expansion"
    elif e["reshaped_mass"] >= ROLE_RATIO * e["expanded_mass"]:
        role = "reshaping"
    else:
        role = "mixed"
    return provenance, role, dg.attrition_risk


def read_case(gaps):
    return max(gaps, key=gaps.get), min(gaps, key=gaps.get)


RIGHT = {"11.1": "reshaping", "11.2": place_stage, "11.3": read_case}
DELEGATE = {"11.2": lambda dg, trajectories, evaluator: nb11.place_stage(dg, trajectories, evaluator),
            "11.3": lambda gaps: nb11.read_case(gaps)}


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


# ------------------------------------------------------------------------------ 11.2 mistakes
def test_11_2_dominant_suffix_is_accepted():
    res = run("11.2", lambda dg, t, e: (place_stage(dg, t, e)[0], place_stage(dg, t, e)[1] + "-dominant",
                                        dg.attrition_risk))
    assert res.passed, res.message


def test_11_2_provenance_from_the_evaluator():
    def wrong(dg, t, e):
        prov = "on-policy" if e in ("verifier", "learned reward") else "off-policy"
        return (prov,) + place_stage(dg, t, e)[1:]
    res = run("11.2", wrong)
    assert res.status == "failed" and "you read the provenance from the evaluator" in res.message, res.message


def test_11_2_self_generated_is_not_on_policy():
    def wrong(dg, t, e):
        prov = "on-policy" if t.startswith("learner") else "off-policy"
        return (prov,) + place_stage(dg, t, e)[1:]
    res = run("11.2", wrong)
    assert res.status == "failed" and "self-generated is not the same as on-policy" in res.message, res.message


def test_11_2_attrition_as_a_role():
    def wrong(dg, t, e):
        p, r, k = place_stage(dg, t, e)
        return p, ("attrition" if k == "high" else r), k
    res = run("11.2", wrong)
    assert res.status == "failed" and "attrition is not a role" in res.message, res.message


def test_11_2_ignored_teacher_and_any_teacher():
    def no_teacher(dg, t, e):
        p, r, k = place_stage(dg, t, e)
        if r == "consolidation":
            m = dg.evidence
            r = "reshaping" if m["reshaped_mass"] >= ROLE_RATIO * m["expanded_mass"] else "mixed"
        return p, r, k
    res = run("11.2", no_teacher)
    assert res.status == "failed" and "you ignored the teacher" in res.message, res.message

    def any_teacher(dg, t, e):
        p, r, k = place_stage(dg, t, e)
        return p, ("consolidation" if "retention" in dg.evidence else r), k
    res = run("11.2", any_teacher)
    assert res.status == "failed" and "a teacher alone does not make consolidation" in res.message, res.message


def test_11_2_factor_one():
    def wrong(dg, t, e):
        p, r, k = place_stage(dg, t, e)
        if r in ("expansion", "reshaping", "mixed"):
            m = dg.evidence
            r = "expansion" if m["expanded_mass"] > m["reshaped_mass"] else "reshaping"
        return p, r, k
    res = run("11.2", wrong)
    assert res.status == "failed" and "factor 1" in res.message, res.message


def test_11_2_bad_shapes_and_values():
    res = run("11.2", lambda dg, t, e: ("off-policy", "expansion"))
    assert res.status == "failed" and "three strings" in res.message
    res = run("11.2", lambda dg, t, e: ("offline",) + place_stage(dg, t, e)[1:])
    assert res.status == "failed" and "provenance 'offline' is not one of" in res.message
    res = run("11.2", lambda dg, t, e: place_stage(dg, t, e)[:2] + ("none",))
    assert res.status == "failed" and "risk 'none'" in res.message


# ------------------------------------------------------------------------------ 11.3 mistakes
def test_11_3_swapped():
    res = run("11.3", lambda g: read_case(g)[::-1])
    assert res.status == "failed" and "you swapped the two" in res.message, res.message


def test_11_3_names_instead_of_numbers():
    def by_name(g):
        names = list(g)
        off = next((n for n in names if any(w in n for w in ("offline", "traces", "cached", "rejection"))), names[0])
        on = next(n for n in names if n != off)
        return off, on
    res = run("11.3", by_name)
    assert res.status == "failed" and "unnamed" in res.message, res.message


def test_11_3_numbers_instead_of_names():
    res = run("11.3", lambda g: (max(g.values()), min(g.values())))
    assert res.status == "failed" and "return the arms' *names*" in res.message, res.message


# ------------------------------------------------------------------------------ 11.1 prediction
@pytest.mark.parametrize("value, hint", [
    ("expansion", "the answers started outside E_eps"),
    ("consolidation", "there is no teacher here"),
    ("no change", "every prompt's answers are sampled from the start"),
    ("mixed", "far larger than the other"),
    ("attrition", "attrition is not a role"),
    ("sharpening", "unknown role"),
    (("reshaping", "high"), "give the role as a string"),
])
def test_11_1_prediction_explains(value, hint):
    res = run("11.1", value)
    assert res.status == "failed" and hint in res.message, res.message


def test_11_1_accepts_the_dominant_suffix_and_reports_the_other_world():
    res = run("11.1", "Reshaping-dominant")
    assert res.passed and "expansion-dominant" in res.message
