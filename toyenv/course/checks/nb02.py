"""Exercise checks of Notebook 02, occupancy and support: d(s, a) of Eq. 2 from trajectories, a prediction
about which step of a path leaves the effective support first, the effective support of Eq. 5."""
from __future__ import annotations

import numpy as np

from .framework import Case, Failed, _tiny_world, _world, compare, describe_pair, exercise
from toyenv.core.tree import TokenMDP


_ETA = {"1/T(y)": lambda L, H: 1.0 / L, "1": lambda L, H: np.ones_like(L),
        "1/horizon": lambda L, H: np.full_like(L, 1.0 / H),
        "1/(T(y)+1)": lambda L, H: 1.0 / (L + 1),
        "1/(T(y)-1)": lambda L, H: np.divide(1.0, L - 1, out=np.full_like(L, np.inf), where=L > 1)}


_ETA_HINT = {
    "1": "you gave every step weight 1 instead of eta_t = 1/T(y), so your d sums to the expected "
         "length E[T(y)] instead of 1 (that is the visit count, reach x pi, not Eq. 2's normalised occupancy)",
    "1/horizon": "you divided by the horizon T instead of each trajectory's own length T(y)",
    "1/(T(y)+1)": "off by one in T(y): T(y) is the number of tokens of y, end token included "
                  "(mdp.length[s, a] at the terminal pair, = mdp.depth[s] + 1), not one more",
    "1/(T(y)-1)": "off by one in T(y): T(y) is the number of tokens of y, end token included "
                  "(mdp.length[s, a] at the terminal pair, = mdp.depth[s] + 1), not mdp.depth[s]",
}


_STEPS_HINT = {
    "last": "you credited only the last step of each trajectory; Eq. 2 credits every step "
            "(s_t, a_t), t = 1..T(y): walk up with s, a = mdp.parent[s], mdp.last_token[s]",
    "no-last": "you skipped the final step (s, a) of each trajectory: the last token is an action too",
    "no-root": "you stopped before the first step: the root state (the prompt with an empty prefix) "
               "and the first token count too (loop while s >= 0, not while mdp.parent[s] >= 0)",
}


def occupancy_variant(mdp: TokenMDP, traj: np.ndarray, *, prompt_weights: bool = True,
                      eta: str = "1/T(y)", steps: str = "all") -> np.ndarray:
    """d(s, a) of Eq. 2 from trajectory probabilities ``traj [S, V]`` (pi(y|x) at terminal pairs),
    with the choices a learner can get wrong: D(x) weighting, the step weight eta and which steps
    are credited. The defaults give the right answer. ``[S, V]``.
    """
    L = np.where(mdp.terminal, mdp.length, 1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(mdp.terminal, traj * _ETA[eta](L, mdp.horizon), 0.0)
    if prompt_weights:
        with np.errstate(invalid="ignore"):
            w = w * mdp.prompt_weights[mdp.prompt_of][:, None]
    below = np.zeros(mdp.num_states)        # weight of all trajectories through state s
    for _, sl in mdp.levels(reverse=True):
        ch = mdp.child[sl]
        with np.errstate(invalid="ignore"):
            below[sl] = w[sl].sum(1) + np.where(ch >= 0, below[np.maximum(ch, 0)], 0.0).sum(1)
    d_sa = np.where(mdp.terminal, w, below[np.maximum(mdp.child, 0)])
    if steps == "last":
        d_sa = np.where(mdp.terminal, w, 0.0)
    elif steps == "no-last":
        d_sa = np.where(mdp.terminal, 0.0, d_sa)
    elif steps == "no-root":
        d_sa = np.where((mdp.depth == 0)[:, None], 0.0, d_sa)
    return d_sa


def _occupancy_mistakes(mdp, traj) -> dict:
    out = {}
    for pw in (True, False):
        for eta in _ETA:
            for steps in ("all", "last", "no-last", "no-root"):
                parts = []
                if not pw:
                    parts.append("you did not weight the trajectories by the prompt distribution "
                                 "D(x) (mdp.prompt_weights[x])")
                if eta != "1/T(y)":
                    parts.append(_ETA_HINT[eta])
                if steps != "all":
                    parts.append(_STEPS_HINT[steps])
                if parts:
                    out["; and ".join(parts)] = occupancy_variant(mdp, traj, prompt_weights=pw, eta=eta,
                                                                  steps=steps)
    # one mistake is clearer than several: try single mistakes first
    return dict(sorted(out.items(), key=lambda kv: kv[0].count("; and ")))


@exercise("02.1", notebook="02_occupancy_and_support",
          title="Occupancy from trajectories (Eq. 2, eta = 1/T(y))",
          hints=("Eq. 2 spreads every complete trajectory's weight over the steps of its own path. What is "
                 "that weight (think of D(x) and pi(y|x)), and what share of it does each step get?",
                 "For every terminal pair (s, a) (mdp.trajectories() lists them), the trajectory's weight is "
                 "D(x) (mdp.prompt_weights of its prompt) times its probability in traj_probs, divided by "
                 "its length T(y) (mdp.length at the terminal pair, end token included). Add that share to "
                 "every (state, token) on its path, from the last step up to the root: mdp.parent and "
                 "mdp.last_token lead from a state to the step before it."),
          reread="notebook 02's section on occupancy (Eq. 2 with eta_t = 1/T(y))",
          forbid=("toyenv.occupancy", "toyenv.core.exact.occupancy_from_probs", "toyenv.methods.token_targets",
                  "toyenv.course.checks.nb02.occupancy_variant"),
          own="spread each trajectory's weight over its path yourself")
def check_occupancy(fn):
    from toyenv.core.exact import occupancy, trajectory_probs
    from toyenv.core.policies import TabularPolicy
    worlds = [("hidden-path base policy", _world("hidden-path"), None),
              ("scaffold base policy (unequal prompt weights, some zero)", _world("scaffold"), None),
              ("many-paths random policy", _world("many-paths"), 5),
              ("a one-prompt world with horizon 1", _tiny_world(), 2)]
    for name, mdp, seed in worlds:
        pi = mdp.base_policy() if seed is None else TabularPolicy(mdp, seed=seed, scale=1.5)
        traj = trajectory_probs(pi)
        expected = occupancy(pi).sa
        case = Case(name, (mdp, traj), errors={ZeroDivisionError: _ETA_HINT["1/(T(y)-1)"]})
        got = case.call(fn)

        def facts(arr, mdp=mdp):
            total = arr.sum()
            per_prompt = np.bincount(mdp.prompt_of, weights=arr.sum(1), minlength=mdp.num_prompts)
            if abs(total - 1) > 1e-9:
                return (f"Your d sums to {total:.6g}; Eq. 2 with eta_t = 1/T(y) sums to 1 (each "
                        "trajectory's weights eta_t add up to 1).")
            if not np.allclose(per_prompt, mdp.prompt_weights, atol=1e-9):
                return "Your d sums to 1 but prompt x does not carry mass D(x)."
            return None

        compare(got, expected, case=case, what="your occupancy", mistakes=_occupancy_mistakes(mdp, traj),
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx), diagnose=facts)
    return (f"d(s, a) on {len(worlds)} worlds (variable lengths, unequal and zero prompt weights, "
            "horizon 1) equals toyenv.occupancy")


# ------------------------------------------------------------------------------- 02.2
PATH_OPTIONS = {
    "root -> h": "the first step, the rare choice of h at q0's root",
    "h -> a": "the middle step, the key a after h",
    "h a -> <eos>": "the last step, <eos> after h a",
    "together": "all three leave at the same eps",
}
"""Exercise 02.2's answers: which step of q0's correct path (hidden-path, horizon 3) leaves E_eps first
as eps rises."""


def path_occupancies() -> list:
    """[(option, d(s, a))] for the three steps of q0's correct answer, h a <eos>, under the base policy
    of hidden-path with horizon 3 (notebook 02's world)."""
    from toyenv.core.exact import occupancy
    mdp = _world("hidden-path", horizon=3)
    occ = occupancy(mdp.base_policy())
    ans = (mdp.info["hidden_token"], mdp.info["keys"][0], mdp.eos)
    return [(opt, float(occ.sa[mdp.state_index(0, ans[:t]), ans[t]])) for t, opt in enumerate(list(PATH_OPTIONS)[:3])]


def first_to_leave() -> str:
    """The right answer of exercise 02.2, from the exact occupancies: the step with the smallest d."""
    d = path_occupancies()
    values = [v for _, v in d]
    if np.allclose(values, values[0], rtol=1e-12, atol=0):
        return "together"
    return min(d, key=lambda kv: kv[1])[0]


def _path_option(value) -> str | None:
    if not isinstance(value, str):
        return None
    v = " ".join(value.strip().strip("'\"").lower().replace("\u2192", "->").replace("eos>", "<eos>")
                 .replace("<<eos>", "<eos>").split())
    v = v.replace("h a -> eos", "h a -> <eos>").replace("ha -> <eos>", "h a -> <eos>")
    return v if v in PATH_OPTIONS else None


@exercise("02.2", notebook="02_occupancy_and_support", title="Predict: which step of the correct path leaves E_eps first",
          kind="predict",
          hints=("Take one completion that ends with the last step of the path. Which earlier steps does it also "
                 "take, and with what weight does Eq. 2 count it at each of them?",
                 "Write d(s, a) of Eq. 2 as a sum over the completions that pass through (s, a), each counted "
                 "with D(x) pi(y|x) / T(y), the same amount at every step it takes. List the completions that "
                 "pass through each of the three steps and see which list contains which. The step with the "
                 "shortest list has the smallest d, and leaves E_eps first when eps rises (Eq. 5)."),
          reread="notebook 02's sections on occupancy (Eq. 2) and on reachability versus availability")
def check_path_prediction(value):
    opt = _path_option(value)
    options = ", ".join(repr(k) for k in PATH_OPTIONS)
    if opt is None:
        raise Failed(f"your prediction is {type(value).__name__} {value!r}; answer with one of the options "
                     f"{options} (a string)")
    answer = first_to_leave()
    d = dict(path_occupancies())
    facts = ("Along q0's correct path d(s, a) is " + ", ".join(f"{d[k]:.2e} at {k}" for k in d)
             + f": the first to leave as eps rises is {answer!r}")
    why = ("every completion that takes a later step of the path also takes all the earlier ones, and Eq. 2 "
           "counts it with the same weight D(x) pi(y|x)/T(y) at each of them; the earlier steps also collect "
           "completions that branch off ('h <eos>', 'h b ...'). So d can only fall along a path, E_eps is closed "
           "under prefixes, and a path leaves the support from its end (§2.3, Eq. 2 and 5)")
    if opt != answer:
        extra = {"root -> h": "The rare choice (pi(h | root) = 1e-4) is not where d is smallest: ",
                 "h -> a": "The middle step collects more completions than the last one: ",
                 "together": "The three steps do not share one value: "}.get(opt, "")
        raise Failed(f"you predicted {opt!r}. {facts}. {extra}{why}")
    return f"{opt!r}, as you predicted. {facts}: {why}"


@exercise("02.3", notebook="02_occupancy_and_support", title="Effective support (Eq. 5)",
          hints=("E_eps keeps the state-action pairs whose occupancy is large enough. Which field of occ "
                 "holds d(s, a), and is a pair exactly at eps in or out?",
                 "Compare the state-action occupancy occ.sa (not occ.probs, occ.s or occ.reach) with eps "
                 "entry by entry: pairs with d(s, a) at least eps are in (Eq. 5 uses >=). Return the boolean "
                 "mask itself, the shape of occ.sa, not its size."),
          reread="notebook 02's sections on reachability versus availability and on effective support (Eq. 5)",
          forbid=("toyenv.effective_support", "toyenv.core.exact.effective_support"),
          own="compare the occupancy with eps yourself")
def check_effective_support(fn):
    from toyenv.core.exact import occupancy
    hp = occupancy(_world("hidden-path").base_policy())
    sc = occupancy(_world("scaffold").base_policy())
    mp = occupancy(_world("many-paths").base_policy())
    h_state = hp.mdp.state_index(0, (3,))
    tie = float(hp.sa[h_state, 0])                  # a value many pairs share exactly
    smallest = float(sc.sa[sc.sa > 0].min())
    cases = [
        Case("hidden-path base policy, eps = 1e-3", (hp, 1e-3)),
        Case(f"hidden-path base policy, eps = {tie:.6g}, exactly the occupancy of several pairs", (hp, tie)),
        Case("scaffold base policy, eps = 1e-2 (hinted prompts have D(x) = 0)", (sc, 1e-2)),
        Case("many-paths base policy, eps = 1e-4", (mp, 1e-4)),
        Case("scaffold base policy, eps = the smallest non-zero occupancy", (sc, smallest)),
        Case("many-paths base policy, eps = 1 (nothing reaches it)", (mp, 1.0)),
    ]
    for case in cases:
        occ, eps = case.args
        mdp = occ.mdp
        expected = occ.sa >= eps
        got = case.call(fn)
        compare(got, expected, case=case, what="your support mask",
                where=lambda idx, mdp=mdp, occ=occ: describe_pair(mdp, *idx) + f" (d = {occ.sa[idx]:.6g})",
                mistakes={
                    "pairs whose occupancy equals eps exactly belong to E_eps: Eq. 5 uses >=, not >":
                        occ.sa > eps,
                    "you thresholded pi(a|s) (occ.probs), the action availability alone; E_eps thresholds "
                    "the occupancy d(s, a) = occ.sa, which also counts how often s is reached":
                        occ.probs >= eps,
                    "you thresholded the state occupancy d(s) (occ.s), the reachability alone; an action "
                    "rarely chosen in a well-visited state is outside E_eps: threshold d(s, a) = occ.sa":
                        np.broadcast_to((occ.s >= eps)[:, None], occ.sa.shape),
                    "you thresholded reach(s) (occ.reach), the reachability alone; threshold d(s, a) = occ.sa":
                        np.broadcast_to((occ.reach >= eps)[:, None], occ.sa.shape),
                    "you thresholded reach(s) * pi(a|s); Eq. 5 uses the normalised occupancy d(s, a) "
                    "= occ.sa, which also carries D(x) and eta_t = 1/T(y)":
                        occ.reach[:, None] * occ.probs >= eps,
                    "you returned the pairs outside the support (d < eps); E_eps is where d >= eps":
                        occ.sa < eps,
                    "return the mask itself, not its size (the size is mask.sum())": int(expected.sum()),
                })
    return (f"{len(cases)} cases: ties at eps, zero-weight prompts, the smallest non-zero occupancy "
            "and eps = 1")
