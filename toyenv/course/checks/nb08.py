"""Checks of notebook 08 (distillation as consolidation, survey §3.4, §4.4, §5.4, §7.1.4-7.1.5).

08.1  the teacher state of every student state when the teacher reads another prompt (scaffold
      removal: the hinted twin of a bare prompt);
08.2  per-state KL(p(.|s) || q(.|s)) with 0·log 0 = 0, the building block of forward and reverse KL;
08.3  predict, then run: which divergence's best memoryless student keeps both of a bimodal
      teacher's modes, and how much mass it puts on neither;
08.4  the sequence-level KL by the chain rule: sum_x D(x) sum_s reach_p(s) KL_s (the chain rule over the tree).

Cases use the built-in worlds' policies and small hand-built tables (zeros, a bimodal teacher).
Every typical mistake is computed as a variant and named in the hint.
"""
from __future__ import annotations

import numpy as np

from .framework import Case, Failed, compare, describe_pair, exercise

NOTEBOOK = "08_distillation_consolidation"


def _world(name, **kw):
    from toyenv.core.presets import make
    return make(name, **kw)


# ------------------------------------------------------------------------------------------ 08.1
def state_map_variant(mdp, teacher_prompt, kind="right"):
    """Teacher state of every student state ``[S]`` and what typical mistakes give."""
    tp = np.asarray(teacher_prompt)
    table = np.empty((mdp.num_prompts, mdp.num_prefixes), dtype=np.int64)
    table[mdp.prompt_of, mdp.prefix_id] = np.arange(mdp.num_states)
    if kind == "right":
        return table[tp[mdp.prompt_of], mdp.prefix_id]
    if kind == "identity":
        return np.arange(mdp.num_states)
    if kind == "roots":                     # the teacher's root for every state (the prefix dropped)
        return mdp.roots[tp[mdp.prompt_of]]
    if kind == "shift":                     # s + (teacher prompt - prompt): right at the roots only
        return np.arange(mdp.num_states) + tp[mdp.prompt_of] - mdp.prompt_of
    raise ValueError(kind)


_MAP_HINTS = {
    "identity": "you returned every student state itself: the teacher reads the same prefix under ANOTHER prompt, "
                "teacher_prompt[x], so look the prefix up there: mdp.state_index(teacher_prompt[x], prefix)",
    "roots": "you returned the teacher prompt (its root state) for every state and dropped the prefix; keep the "
             "prefix: x, prefix = mdp.prefix(s); mdp.state_index(teacher_prompt[x], prefix)",
    "shift": "adding the prompt offset to the state index is right only at the roots: states are numbered level "
             "by level, so look the prefix up with mdp.state_index(teacher_prompt[x], prefix)",
}


@exercise("08.1", notebook=NOTEBOOK, title="Teacher states for a student without the hint",
          hints=("The teacher reads the same prefix as the student, under another prompt. What are a student "
                 "state's prompt and prefix, and how do you find the state with the same prefix under the "
                 "teacher's prompt?",
                 "For every state s, mdp.prefix(s) gives its prompt x and its prefix tokens; the teacher "
                 "state is the state of prompt teacher_prompt[x] with the same prefix, which mdp.state_index "
                 "finds. Return the indices as an integer array, one entry per state."),
          reread="notebook 08's section on a teacher that needs a hint",
          forbid=("toyenv.state_map", "toyenv.methods.distill.state_map",
                  "toyenv.course.checks.nb08.state_map_variant"),
          own="look the teacher states up yourself")
def check_teacher_states(fn):
    sc = _world("scaffold")
    n = sc.num_prompts // 2
    hinted = np.r_[np.arange(n, 2 * n), np.arange(n, 2 * n)]            # bare -> hinted, hinted -> itself
    sc2 = _world("scaffold", num_tasks=3, answer_length=2, slack=1)
    m = sc2.num_prompts // 2
    hinted2 = np.r_[np.arange(m, 2 * m), np.arange(m, 2 * m)]
    ts = _world("two-skills")
    swap = np.r_[np.arange(4, 8), np.arange(0, 4)]                    # family A reads B's prompts and back
    cases = [
        Case("scaffold: every bare prompt qi read by the teacher as 'qi hint'", (sc, hinted)),
        Case("scaffold with 3 tasks, answers of 2 letters and slack 1 (horizon 4)", (sc2, hinted2)),
        Case("two-skills: families swapped (A i <-> B i)", (ts, swap)),
        Case("scaffold: the identity map (the teacher reads the same prompt)", (sc, np.arange(sc.num_prompts))),
    ]
    for case in cases:
        mdp, tp = case.args
        expected = state_map_variant(mdp, tp)
        got = case.call(fn)
        compare(got, expected, case=case, what="your teacher states", rtol=0, atol=0,
                where=lambda idx, mdp=mdp: "student " + describe_pair(mdp, idx[0]),
                mistakes={h: state_map_variant(mdp, tp, k) for k, h in _MAP_HINTS.items()})
    return f"{len(cases)} maps: hinted twins in two scaffold worlds, a permutation and the identity"


# ------------------------------------------------------------------------------------------ 08.2
def kl_rows_variant(p, q, kind="right"):
    """Per-row KL(p || q) ``[S]`` and what typical mistakes give."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    pos = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logr = np.where(pos, np.log(np.where(pos, p, 1)) - np.log(np.where(pos, q, 1)), 0.0)
        if kind == "right":
            return np.where(pos, p * logr, 0.0).sum(1)
        if kind == "swapped":
            return kl_rows_variant(q, p)
        if kind == "log2":
            return np.where(pos, p * logr, 0.0).sum(1) / np.log(2)
        if kind == "unweighted":
            return np.where(pos, logr, 0.0).sum(1)
        if kind == "cross-entropy":
            return -np.where(pos, p * np.log(np.where(pos, q, 1)), 0.0).sum(1)
        if kind == "total":
            return float(np.where(pos, p * logr, 0.0).sum())
        if kind == "symmetric":
            return kl_rows_variant(p, q) + kl_rows_variant(q, p)
        if kind == "ratio-flipped":
            return np.where(pos, -p * logr, 0.0).sum(1)
    raise ValueError(kind)


_KL_HINTS = {
    "swapped": "you computed KL(q || p): the FIRST argument weighs the log-ratio, KL(p || q) = sum_a p(a) log(p(a)/q(a))",
    "log2": "you used log base 2 (bits); the package uses natural logarithms (nats): np.log",
    "unweighted": "you added up log(p/q) without weighting by p(a): KL(p || q) = sum_a p(a) log(p(a)/q(a))",
    "cross-entropy": "you returned the cross-entropy -sum_a p log q; KL subtracts p's own entropy: "
                     "sum_a p (log p - log q)",
    "total": "return one KL per state (an array of shape (num_states,)), not the sum over states",
    "symmetric": "you added KL(p || q) and KL(q || p) (Jeffreys' divergence); return KL(p || q) only",
    "ratio-flipped": "your log-ratio is upside down, log(q/p); KL(p || q) uses log(p/q) (it is never negative)",
}


def _nan_hint(arr):
    if not np.all(np.isfinite(arr)):
        return ("Terms with p(a) = 0 contribute 0 (0 log 0 = 0): compute them with np.where(p > 0, ..., 0.0) "
                "rather than p * np.log(p / q).")
    return "KL is never negative." if np.any(arr < -1e-12) else None


def _bimodal_rows():
    """A bimodal teacher row, a one-mode and a spread student, and rows with zeros (4 tokens)."""
    p = np.array([[0.5, 0.5, 0.0, 0.0],
                  [0.5, 0.5, 0.0, 0.0],
                  [0.25, 0.25, 0.25, 0.25],
                  [0.0, 0.0, 0.0, 1.0],
                  [0.1, 0.2, 0.3, 0.4]])
    q = np.array([[0.97, 0.01, 0.01, 0.01],
                  [0.45, 0.45, 0.05, 0.05],
                  [0.25, 0.25, 0.25, 0.25],
                  [0.1, 0.1, 0.1, 0.7],
                  [0.4, 0.3, 0.2, 0.1]])
    return p, q


@exercise("08.2", notebook=NOTEBOOK, title="Per-state KL (forward and reverse)",
          hints=("KL(p || q) at one state compares two next-token distributions, weighted by p. What should "
                 "a token that p never emits (p = 0) contribute?",
                 "For each row s: the sum over tokens a of p(a) times (log p(a) minus log q(a)), natural "
                 "log. Terms with p(a) = 0 contribute 0 (0 log 0 = 0): mask them out before taking logs. A "
                 "token with p(a) > 0 and q(a) = 0 makes that row's KL infinite, which is right. One number "
                 "per row."),
          reread="notebook 08's section on forward versus reverse KL",
          forbid=("toyenv.core.exact.kl_per_state", "toyenv.course.checks.nb08.kl_rows_variant"),
          own="sum the per-token terms yourself")
def check_kl_rows(fn):
    from toyenv.methods.distill import teacher_view
    from toyenv.core.policies import TabularPolicy
    p, q = _bimodal_rows()
    sc = _world("scaffold")
    teacher = teacher_view(sc.base_policy(), "hinted").probs()
    student = sc.base_policy().probs()
    mp = _world("many-paths")
    r1, r2 = TabularPolicy(mp, seed=4, scale=2.0).probs(), TabularPolicy(mp, seed=5, scale=2.0).probs()
    cases = [
        Case("a bimodal teacher row p = [.5, .5, 0, 0] against a one-mode and a spread student, and rows with "
             "zeros (forward KL, p = teacher)", (p, q)),
        Case("the same rows the other way round (reverse KL, p = student, q = teacher with zeros)", (q, p)),
        Case("scaffold: the hinted teacher in student coordinates against the bare base", (teacher, student)),
        Case("many-paths: two random policies", (r1, r2)),
        Case("many-paths: a policy against itself (every KL is 0)", (r1, r1.copy())),
    ]
    for case in cases:
        a, b = case.args
        expected = kl_rows_variant(a, b)
        got = case.call(fn)
        compare(got, expected, case=case, what="your per-state KL", rtol=1e-9, atol=1e-12, diagnose=_nan_hint,
                where=lambda idx: f"row {idx[0]}",
                mistakes={h: kl_rows_variant(a, b, k) for k, h in _KL_HINTS.items()})
    return (f"{len(cases)} cases: zeros in p (0 log 0 = 0), zeros in q where p = 0 too, infinite reverse KL, "
            "two worlds and KL(p || p) = 0")


# ------------------------------------------------------------------------------------------ 08.4
def sequence_kl_variant(mdp, p, q, kind="right"):
    """Sequence-level KL(p || q) by the chain rule and what typical mistakes give."""
    from toyenv.core.exact import kl_per_state, occupancy_from_probs, reach_from_probs
    per_state = kl_per_state(np.asarray(p, float), np.asarray(q, float))
    reach_p = reach_from_probs(mdp, p)
    D = mdp.prompt_weights
    per_prompt = lambda w: np.bincount(mdp.prompt_of, weights=w * per_state, minlength=mdp.num_prompts)  # noqa: E731
    if kind == "right":
        return float(D @ per_prompt(reach_p))
    if kind == "reach-q":
        return float(D @ per_prompt(reach_from_probs(mdp, q)))
    if kind == "no-D":
        return float(per_prompt(reach_p).sum())
    if kind == "uniform-D":
        return float(per_prompt(reach_p).mean())
    if kind == "no-reach":
        return float(D @ per_prompt(np.ones(mdp.num_states)))
    if kind == "occupancy":
        return float((occupancy_from_probs(mdp, p).s * per_state).sum())
    if kind == "per-prompt":
        return per_prompt(reach_p)
    if kind == "roots":
        return float(D @ per_state[mdp.roots])
    if kind == "reach-double-D":
        return float(D @ per_prompt(reach_p * D[mdp.prompt_of]))
    raise ValueError(kind)


_SEQ_HINTS = {
    "reach-q": "you weighted the states by the reach of q; the chain rule weights KL(p || q) by the reach of the "
               "FIRST argument p (the policy whose sequences are averaged over). That is why forward and reverse "
               "KL look at different states",
    "no-D": "you added the prompts' KLs; weight each prompt by D(x) (mdp.prompt_weights)",
    "uniform-D": "you averaged the prompts uniformly; weight each prompt by D(x) (mdp.prompt_weights), which is "
                 "not uniform here (e.g. the scaffold's hinted prompts have D(x) = 0)",
    "no-reach": "you added every state's KL without weighting by how often p reaches it; multiply each state's "
                "KL by reach_p(s) (1 at the roots, the product of p along the prefix below)",
    "occupancy": "you weighted by the state occupancy d(s) of Eq. 3, which carries eta = 1/T(y); the chain rule "
                 "weights by the reach probability reach_p(s) (and D(x))",
    "per-prompt": "return one number, the D(x)-weighted sum over prompts, not the per-prompt KLs",
    "roots": "you kept only the first token's KL (the roots); the chain rule adds the KL of every later state, "
             "weighted by its reach under p",
    "reach-double-D": "you multiplied by D(x) twice (once per state and once per prompt)",
}


@exercise("08.4", notebook=NOTEBOOK, title="Sequence KL by the chain rule",
          hints=("The chain rule adds up the per-state KLs, each weighted by how often p reaches its state, "
                 "and weights the prompts by D(x). How do you get the reach probability of every state from "
                 "p?",
                 "Reach is 1 at each root; below, a state's reach is its parent's reach times p at (parent, "
                 "the token that leads to it), from mdp.parent and mdp.last_token (states are stored depth "
                 "by depth, so parents come first). The answer is the sum over states of D(x) of the state's "
                 "prompt, times its reach under p, times the per-state KL(p(.|s) || q(.|s)) of exercise 08.2 "
                 "(your function, or toyenv.core.exact.kl_per_state)."),
          reread="notebook 08's section on the sequence KL by the chain rule, and toyenv.kl's docstring",
          forbid=("toyenv.kl", "toyenv.core.exact.kl_from_probs", "toyenv.core.exact.kl_terms",
                  "toyenv.course.checks.nb08.sequence_kl_variant"),
          own="compute the reach probabilities and the weighted sum yourself")
def check_sequence_kl(fn):
    from toyenv.methods.distill import teacher_view
    from toyenv.core.exact import kl_per_state
    from toyenv.core.policies import TabularPolicy
    sc = _world("scaffold")
    teacher = teacher_view(sc.base_policy(), "hinted").probs()
    bare = sc.base_policy().probs()
    ts = _world("two-skills")
    t1, t2 = TabularPolicy(ts, seed=6, scale=1.5).probs(), TabularPolicy(ts, seed=7, scale=1.5).probs()
    hp = _world("hidden-path")
    hp_base = hp.base_policy().probs()
    hp_rand = TabularPolicy(hp, seed=8).probs()
    mp = _world("many-paths", num_prompts=4, num_rare=1)
    z = TabularPolicy(mp, seed=9, scale=2.0).probs()
    z[:, 2] = 0.0                                      # p never emits 'c': zeros in p
    z /= z.sum(1, keepdims=True)
    full = TabularPolicy(mp, seed=10).probs()
    cases = [
        Case("scaffold: forward KL(teacher || bare base), teacher read in student coordinates (D(x) = 0 on the "
             "hinted prompts)", (sc, teacher, bare)),
        Case("scaffold: reverse KL(bare base || teacher)", (sc, bare, teacher)),
        Case("two-skills: two random policies", (ts, t1, t2)),
        Case("hidden-path: base against a random policy (a rarely reached branch under h)", (hp, hp_base, hp_rand)),
        Case("many-paths (4 prompts): a p that never emits 'c' (zeros in p)", (mp, z, full)),
    ]
    for case in cases:
        mdp, p, q = case.args
        expected = sequence_kl_variant(mdp, p, q)
        got = case.call(fn)

        def facts(x, p=p, q=q):
            if np.ndim(x) == 0 and np.isfinite(x) and abs(float(x) - float(kl_per_state(p, q).sum())) < 1e-9:
                return "That is the plain sum of the per-state KLs: weight each by D(x) * reach_p(s)."
            return None
        compare(got, expected, case=case, what="your sequence KL", rtol=1e-9, atol=1e-12, diagnose=facts,
                mistakes={h: sequence_kl_variant(mdp, p, q, k) for k, h in _SEQ_HINTS.items()})
    return (f"{len(cases)} cases: forward and reverse KL with zero-weight prompts, a rarely reached branch, "
            "zeros in p; equals toyenv.kl")


# ------------------------------------------------------------------------------------------ 08.3
DIVERGENCES = ("forward", "reverse", "both", "neither")


def mode_facts() -> dict:
    """What notebook 08's mode scan shows, computed exactly: which divergence's minimiser keeps both
    modes (at least 0.1 on each) and the mass the forward-KL minimiser puts on neither mode."""
    from toyenv.analysis.experiments import mode_scan
    scan = mode_scan()
    keeps = {}
    for name, key in (("forward", "argmin_forward"), ("reverse", "argmin_reverse")):
        i = int(np.argmin(np.abs(scan["t"] - scan[key])))
        keeps[name] = bool(np.all(scan["mass_modes"][i] >= 0.1))
    i_fwd = int(np.argmin(np.abs(scan["t"] - scan["argmin_forward"])))
    keeper = {(True, True): "both", (True, False): "forward", (False, True): "reverse",
              (False, False): "neither"}[(keeps["forward"], keeps["reverse"])]
    return {"keeps_both": keeper, "between": float(scan["mass_between"][i_fwd])}


_BAND_08 = 0.1


@exercise("08.3", notebook=NOTEBOOK, title="Predict: which divergence keeps both modes", kind="predict",
          hints=("The student picks each token from a distribution that ignores the earlier ones. Think about "
                 "which divergence punishes a student for missing a teacher mode and which punishes it for "
                 "putting mass where the teacher has none.",
                 "Forward KL(T||S) is infinite when the student gives zero to a teacher mode; reverse KL(S||T) "
                 "is large when the student produces sequences the teacher never does. A memoryless student "
                 "that keeps both answers must choose each position's token from that position's marginal; "
                 "multiply the per-position probabilities of the four two-token sequences to get the mass "
                 "that lands on the two that are neither mode."),
          reread="notebook 08's section on forward versus reverse KL")
def check_mode_prediction(value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Failed("give a pair (divergence, mass): the divergence one of "
                     + ", ".join(repr(d) for d in DIVERGENCES) + ", the mass a number in [0, 1]")
    which, mass = value
    if not isinstance(which, str) or which not in DIVERGENCES:
        raise Failed(f"the first entry must be one of {', '.join(repr(d) for d in DIVERGENCES)}; got {which!r}")
    if isinstance(mass, bool) or not isinstance(mass, (int, float, np.integer, np.floating)) or \
            not 0.0 <= float(mass) <= 1.0:
        raise Failed(f"the second entry is a probability mass, a number in [0, 1]; got {mass!r}")
    facts = mode_facts()
    if which != facts["keeps_both"]:
        why = {"reverse": "reverse KL(S||T) weighs the student's own sequences: every 'a a' or 'b b' it produces "
                          "costs a lot because the teacher never does, so its best student commits to one answer "
                          "and drops the other (mode seeking)",
               "both": "the two divergences disagree here: reverse KL's best student drops a mode, because "
                       "producing sequences the teacher never does costs more than missing one of its answers",
               "neither": "forward KL(T||S) is infinite when the student misses a teacher mode, so its best "
                          "student keeps both answers (mode covering), at a price"}[which]
        raise Failed(f"you predicted {which!r}, but {why}. The divergence that keeps both modes is the one that "
                     "averages over the teacher's sequences (§4.4, refs. [6], [60])")
    if abs(float(mass) - facts["between"]) > _BAND_08:
        raise Failed(f"right divergence, but the mass on neither mode is {facts['between']:.2f}, not "
                     f"{float(mass):.2f} (band +-{_BAND_08}): a memoryless student that keeps both answers draws "
                     "each position from the teacher's marginal, half 'a' and half 'b', so each of the four "
                     "two-token sequences gets a quarter, and two of them are neither mode")
    return (f"the forward-KL student keeps both modes and pays for it with {facts['between']:.2f} of its mass on "
            "sequences that are neither mode ('a a', 'b b'); the reverse-KL student commits to one (mode "
            "covering versus mode seeking, refs. [6], [60])")
