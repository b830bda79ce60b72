"""The checks of notebooks 09 and 10: a right answer passes, a stub is "not attempted", each typical
mistake gets its own hint, nothing escapes as a traceback. Wrong answers are written the way a learner
would write them."""
import math

import numpy as np
import pytest

import toyenv
from toyenv.core.estimate import samples_to_detect
from toyenv.course import checks
from exercise_contract import ExerciseContract, run, stub  # noqa: F401
from toyenv.core.exact import ROLE_RATIO
from toyenv.course.checks.nb09 import LABELS, RISKS, _build, dominant_role


@pytest.fixture(autouse=True)
def _one_torch_thread():
    from toyenv.methods.fit import single_thread
    with single_thread():
        yield


# ------------------------------------------------------------------------------ right answers
def answers():
    return {k: dominant_role(dg) for k, dg in _build()["diagnoses"].items()}


def rule(dg):
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
    return role, dg.attrition_risk


def samples_needed(eps, confidence):
    return math.ceil(math.log(1 - confidence) / math.log(1 - eps))


def empirical_occupancy(mdp, states, actions, *, eta=lambda mdp, s, a: 1 / mdp.length[s, a], by_n=True,
                        weigh=False, per_prompt=False, last_only=False, dedupe=False):
    pairs = list(zip(states, actions))
    if dedupe:
        pairs = sorted(set(pairs))
    n = len(pairs)
    counts = np.bincount([mdp.prompt_of[s] for s, _ in pairs], minlength=mdp.num_prompts)
    d = np.zeros((mdp.num_states, mdp.vocab_size))
    for s, a in pairs:
        w = eta(mdp, s, a)
        if by_n:
            w /= counts[mdp.prompt_of[s]] if per_prompt else n
        if weigh:
            w *= mdp.prompt_weights[mdp.prompt_of[s]]
        while s >= 0:
            d[s, a] += w
            if last_only:
                break
            s, a = mdp.parent[s], mdp.last_token[s]
    return d


def pass_at_k_unbiased(n, c, k):
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def own_answers():
    return {k: rule(dg) for k, dg in _build()["diagnoses"].items()}


RIGHT = {"09.1": own_answers, "09.2": ("reshaping", "high"), "10.1": samples_needed,
         "10.2": lambda *a: reinforce_step(*a), "10.3": pass_at_k_unbiased}


DELEGATE = {"09.1": lambda: answers(),                   # the check's own rule, nb09.dominant_role
            "10.1": lambda eps, confidence: samples_to_detect(eps, confidence),
            "10.2": lambda *a: delegating_step(*a),
            "10.3": lambda n, c, k: toyenv.pass_at_k_unbiased(n, c, k)}


class TestEveryCheck(ExerciseContract):
    RIGHT = RIGHT
    DELEGATE = DELEGATE


def test_registered_for_the_right_notebooks():
    assert checks.exercises_of("09_pipelines_and_diagnosis") == ["09.1", "09.2"]
    assert checks.exercises_of("10_from_exact_to_sampled") == ["10.1", "10.2", "10.3"]
    assert [checks.EXERCISES[i]["kind"] for i in ("09.1", "09.2", "10.2")] == ["function", "predict", "step"]


# ------------------------------------------------------------------------------ 09.1
def _with(**changes):
    out = answers()
    out.update(changes)
    return lambda: out


def _letter(what):
    return {w: k for k, w in _build()["what"].items()}[what]


@pytest.mark.parametrize("what, pair, hint", [
    ("rl-many-paths-shared", ("attrition", "high"), "attrition is not a role"),
    ("rl-many-paths-shared", ("reshaping", "low"), "mean success rose 0.23 -> 0.75, which hides the loss"),
    ("rl-many-paths-shared", ("reshaping", "low"), "pass@256 fell 1.00 -> 0.79"),
    ("rlhf-two-skills", ("attrition", "high"), "attrition is not a role"),
    ("rlhf-two-skills", ("reshaping", "high"), "only 0.000 of it leads to success"),
    ("distill-scaffold", ("reshaping", "low"), "keeps 100% of its success without the teacher's hint"),
    ("distill-scaffold-10-steps", ("consolidation", "low"), "keeps only 19% of its success"),
    ("rl-many-paths-per-state", ("reshaping", "high"), "attrition risk is 'moderate', not 'high'"),
    ("rl-many-paths-per-state", ("reshaping", "low"), "useful_attrited_mass"),
    ("sft-hidden-path", ("reshaping", "low"), "expanded mass 0.825 vs reshaped mass 0.219"),
    ("sft-hidden-path", ("mixed", "low"), "ROLE_RATIO = 2x"),
    ("sft-hidden-path", ("consolidation", "low"), "had no teacher"),
    ("guided-rl-hidden-path", ("reshaping", "low"), "4 correct answers entered the support"),
])
def test_mystery_label_hints_point_at_the_evidence(what, pair, hint):
    k = _letter(what)
    res = run("09.1", _with(**{k: pair}))
    assert res.status == "failed" and f"run {k}" in res.message and hint in res.message, res.message


def test_mystery_label_format_hints():
    good = answers()
    lenient = {k.lower(): [v[0].upper() + "-dominant", v[1].upper()] for k, v in good.items()}
    assert run("09.1", lambda: lenient).passed
    assert run("09.1", lambda: {k: {"role": r, "risk": q} for k, (r, q) in good.items()}).passed
    assert "no entry for run(s) A" in run("09.1", lambda: {k: v for k, v in good.items() if k != "A"}).message
    assert "there is no run H" in run("09.1", lambda: {**good, "H": ("expansion", "low")}).message
    assert "is not one of the roles" in run("09.1", lambda: {**good, "A": ("forgetting", "low")}).message
    assert "is not one of 'low'" in run("09.1", lambda: {**good, "A": ("reshaping", "severe")}).message
    assert "attrition is not a role but a risk" in run("09.1", lambda: {**good, "A": "attrition"}).message
    assert "give a pair (role, attrition risk)" in run("09.1", lambda: {**good, "A": "reshaping"}).message
    assert "return a dict" in run("09.1", lambda: list(good.values())).message
    res = run("09.1", lambda: {k: ("reshaping", "low") for k in good})
    assert res.status == "failed" and "runs are wrong" in res.message


# ------------------------------------------------------------------------------ 09.2
@pytest.mark.parametrize("value, hint", [
    (("expansion", "high"), "probability moved inside the shared support"),
    (("attrition", "high"), "attrition is not a role"),
    (("reshaping", "low"), "the attrition risk of GRPO on many-paths is 'high'"),
    (("reshaping", "moderate"), "pass@256 fell"),
    (("reshaping-dominant", "low"), "which hides the loss"),
    (("mixed", "high"), "probability moved inside the shared support"),
    (("sharpening", "high"), "unknown role"),
    (("reshaping", "severe"), "unknown attrition risk"),
    ("reshaping", "give a pair of strings (role, attrition risk)"),
])
def test_role_prediction_points_at_the_evidence(value, hint):
    res = run("09.2", value)
    assert res.status == "failed" and hint in res.message, res.message


def test_role_prediction_accepts_the_dominant_suffix_and_a_dict():
    assert run("09.2", ("reshaping-dominant", "high")).passed
    assert run("09.2", {"role": "reshaping", "risk": "high"}).passed


def test_reference_rule_reports_a_role_and_a_risk_never_attrition_as_a_role():
    """Every mystery run gets a role and a risk; 'attrition' is never a role; the runs show three
    roles and all three risks."""
    got = answers()
    roles = {r for r, _ in got.values()}
    assert "attrition" not in roles and roles <= set(LABELS)
    assert roles == {"expansion", "reshaping", "consolidation"}
    assert {q for _, q in got.values()} == set(RISKS)


def test_rule_threshold_is_the_package_constant():
    """One threshold everywhere: the 09 rule, role_of and diagnose all use ROLE_RATIO (= 2)."""
    import inspect
    import toyenv
    from toyenv.analysis.pipeline import diagnose
    assert ROLE_RATIO == toyenv.ROLE_RATIO == 2.0
    assert inspect.signature(toyenv.role_of).parameters["ratio"].default == ROLE_RATIO
    assert inspect.signature(diagnose).parameters["ratio"].default == ROLE_RATIO
    assert toyenv.role_of(0.30, 0.20) == "mixed" and toyenv.role_of(0.40, 0.20) == "expansion-dominant"


# ------------------------------------------------------------------------------ 10.1
@pytest.mark.parametrize("wrong, hint", [
    (lambda e, c: math.ceil(-math.log(1 - c) / e), "you used the approximation"),
    (lambda e, c: math.ceil(math.log(c) / math.log(1 - e)), "you used ln(c)"),
    (lambda e, c: math.floor(math.log(1 - c) / math.log(1 - e)), "you rounded down"),
    (lambda e, c: int(math.log(1 - c) / math.log(1 - e)), "you rounded down"),
    (lambda e, c: math.log(1 - c) / math.log(1 - e), "samples come in whole numbers"),
    (lambda e, c: math.ceil(3 / e), "rule of three"),
    (lambda e, c: next(k for k in range(1, 10**7) if 1 - (1 - e) ** k > c), "confidence exactly c is enough"),
])
def test_samples_needed_hints(wrong, hint):
    res = run("10.1", wrong)
    assert res.status == "failed" and hint in res.message, res.message


def test_samples_needed_loop_solution_passes():
    def by_loop(eps, c):
        k = 1
        while 1 - (1 - eps) ** k < c:
            k += 1
        return k
    assert run("10.1", lambda e, c: by_loop(e, c) if e > 1e-3 else samples_needed(e, c)).passed
    assert run("10.1", lambda e, c: float(samples_needed(e, c))).passed


# ------------------------------------------------------------------------------ 10.2
def reinforce_step(mdp, logits, states, actions, lr, *, baseline=True, sign=1.0, onehot_only=False,
                   last_only=False, std=False, mean=True):
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    r = mdp.rewards[states, actions]
    adv = r - r.mean() if baseline else r.copy()
    if std:
        adv = adv / r.std() if r.std() > 0 else 0 * adv
    n = len(states) if mean else 1
    grad = np.zeros_like(logits)
    for s, a, A in zip(states, actions, adv):
        while s >= 0:
            grad[s, a] += A / n
            if not onehot_only:
                grad[s] -= A / n * probs[s]
            if last_only:
                break
            s, a = mdp.parent[s], mdp.last_token[s]
    return logits + sign * lr * grad


def reinforce_step_autograd(mdp, logits, states, actions, lr):
    """Also right: autograd through the learner's own log-softmax (no package function)."""
    import torch
    L = torch.tensor(logits, requires_grad=True)
    logp = torch.log_softmax(L, dim=1)
    r = torch.as_tensor(mdp.rewards[states, actions])
    total = 0.0
    for s, a, A in zip(states, actions, r - r.mean()):
        while s >= 0:
            total = total + A * logp[s, a] / len(states)
            s, a = mdp.parent[s], mdp.last_token[s]
    total.backward()
    return logits + lr * L.grad.numpy()


def delegating_step(mdp, logits, states, actions, lr):
    import torch
    from toyenv.core.policies import sequence_log_prob
    pi = toyenv.TabularPolicy(mdp, logits)
    lp = sequence_log_prob(mdp, pi.log_probs(), states, actions)
    r = torch.as_tensor(mdp.rewards[states, actions], dtype=lp.dtype)
    (-((r - r.mean()) * lp).mean()).backward()
    return logits - lr * pi.logits.grad.numpy()


@pytest.mark.parametrize("kw, hint", [
    (dict(sign=-1.0), "you stepped downhill"),
    (dict(baseline=False), "you used the raw rewards"),
    (dict(onehot_only=True), "not onehot(a) alone"),
    (dict(last_only=True), "you updated only the last token"),
    (dict(std=True), "GRPO's normalisation"),
    (dict(mean=False), "you summed over the completions"),
])
def test_reinforce_step_hints(kw, hint):
    res = run("10.2", lambda *a: reinforce_step(*a, **kw))
    assert res.status == "failed" and hint in res.message, res.message


def test_reinforce_step_other_forms_and_wrong_returns():
    import torch
    assert run("10.2", reinforce_step_autograd).passed
    assert run("10.2", lambda *a: torch.as_tensor(reinforce_step(*a))).passed
    res = run("10.2", lambda mdp, L, s, a, lr: reinforce_step(mdp, L, s, a, lr) - L)
    assert res.status == "failed" and "return the NEW logits" in res.message
    res = run("10.2", lambda mdp, L, s, a, lr: L)
    assert res.status == "failed" and "unchanged" in res.message


def test_yours_or_reference_picks_the_learners_step_once_it_passed():
    checks.check("10.2", stub, quiet=True)
    assert checks.yours_or_reference("10.2", reinforce_step, delegating_step, quiet=True) is delegating_step
    checks.check("10.2", reinforce_step, quiet=True)
    assert checks.yours_or_reference("10.2", reinforce_step, delegating_step, quiet=True) is reinforce_step


# ------------------------------------------------------------------------------ 10.3
def _float_comb(n, k):
    return math.factorial(n) / (math.factorial(k) * math.factorial(n - k))     # float overflow for n = 5000


@pytest.mark.parametrize("wrong, hint", [
    (lambda n, c, k: 1 - (1 - c / n) ** k, "you used the plug-in"),
    (lambda n, c, k: math.comb(n - c, k) / math.comb(n, k), "pass@k is one minus it"),
    (lambda n, c, k: c / n, "c/n estimates pass@1 only"),
    (lambda n, c, k: 1 - math.comb(c, k) / math.comb(n, k), "you used C(c, k)"),
    (lambda n, c, k: 1 - math.factorial(n - c) / (math.factorial(k) * math.factorial(n - c - k)) / _float_comb(n, k),
     "with fewer than k incorrect samples"),
    (lambda n, c, k: 1.0 if n - c < k else 1 - float(math.comb(n - c, k)) / float(math.comb(n, k)),
     "does not fit in a float"),
])
def test_pass_at_k_hints(wrong, hint):
    res = run("10.3", wrong)
    assert res.status == "failed" and hint in res.message, res.message


def test_pass_at_k_product_form_passes():
    def product(n, c, k):
        if n - c < k:
            return 1.0
        return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
    assert run("10.3", product).passed
