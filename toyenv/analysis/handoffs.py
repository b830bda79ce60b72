"""The survey's map of multi-stage post-training, as exact experiments: Table 5's pipelines, §6.4's
handoff failures and §3.4's four forms of consolidation.

Each function runs one small experiment under default settings (seconds on a 2-core CPU, after
the cached base transformer of two-skills is fitted once) and returns
a small result object of exact numbers (prompt-weighted success, pass@k, distinct correct answers,
sequence-level KL in nats) with a ``summary()`` for printing; the policies and
:class:`toyenv.PipelineReport` handoff reports behind the numbers are kept on the object for plots.

- :func:`sft_then_dpo` — Table 5, row "SFT → preference optimisation".
- :func:`specialists` — Table 5, row "SFT → RL → distillation", with two specialists merged or
  distilled into one student (§6.2, §7.1.4).
- :func:`gradient_interference` — §6.4 "gradient interference across stages".
- :func:`evaluator_inconsistency` — §6.4 "evaluator inconsistency".
- :func:`calibration` — §6.4 "stage-transition calibration" (Table 5, row "SFT → RLHF / RLVR").
- :func:`stage_mismatch` — §6.4 "stage mismatch".
- :func:`consolidation_forms` — §3.4: retention, transfer, amortisation, compression.

Where the toy does not show what the survey describes, the docstring says what it shows instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.passes import reach_from_probs
from ..core.exact import check_eps, distinct_correct, kl, occupancy, pass_at_k, success_prob
from ..core.policies import Policy, TabularPolicy, TransformerPolicy
from ..core.presets import make
from ..core.tree import check_same_world
from ..methods.data import check_demos, demonstrations, preference_pairs, token_targets
from ..methods.distill import distill, teacher_view
from ..methods.dpo import dpo
from ..methods.fit import base_transformer
from ..methods.loop import check_count, check_nonnegative, check_policy, single_thread
from ..methods.losses import exact_rl_loss, sft_loss
from ..methods.rl import rl
from ..methods.rlhf import RewardModel, reward_model, rlhf
from ..methods.sft import sft
from .experiments import _expect
from .forgetting import _families, family_demos, family_success, family_task
from .pipeline import PipelineReport, pipeline

K_LARGE = 256
"""The k of "pass@k at large k" in every result here."""


def _steps(value, name: str, minimum: int = 1) -> int:
    return check_count(value, name, minimum=minimum, fix=f"a number of optimiser updates, e.g. {name}=20")


def _seed(value) -> int:
    return check_count(value, "seed", minimum=0, fix="an integer such as seed=0")


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())


# =========================================================================== shared pieces
def family_router(mdp, policies) -> TabularPolicy:
    """One teacher that answers each task family with its own specialist: the row of every state of
    a family-f prompt is ``policies[f]``'s row there (two-skills: ``[specialist_A, specialist_B]``).

    Distilling it is distilling each specialist on its own family's prompts, in one loss (the
    specialist-synthesis step of survey §7.1.4). Returns a :class:`toyenv.TabularPolicy`.
    """
    fam = _families(mdp)
    policies = list(policies)
    if len(policies) != int(fam.max()) + 1:
        raise ValueError(f"give one policy per task family ({int(fam.max()) + 1}), got {len(policies)}")
    rows = fam[mdp.prompt_of]
    p = np.zeros((mdp.num_states, mdp.vocab_size))
    for f, pi in enumerate(policies):
        check_policy(pi, f"policies[{f}]")
        check_same_world(mdp, pi.mdp, f"policies[{f}]")
        p[rows == f] = pi.probs()[rows == f]
    return TabularPolicy.from_probs(mdp, p / p.sum(1, keepdims=True))


def average_parameters(a: Policy, b: Policy, weight: float = 0.5) -> Policy:
    """Parameter averaging ("merging") of two copies of one architecture: θ = (1−w)·θ_a + w·θ_b.

    Meaningful when both were fine-tuned from the same starting point (survey §6.2 and §7.1.4 mention
    merging specialists). For tabular policies this averages logits, a per-state product of experts.
    """
    check_policy(a, "a")
    check_policy(b, "b")
    check_same_world(a.mdp, b.mdp, "b")
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight!r}")
    if type(a) is not type(b) or [p.shape for p in a.parameters()] != [p.shape for p in b.parameters()]:
        raise ValueError(f"merging needs two copies of one architecture, got {a!r} and {b!r}")
    out = a.frozen()
    with torch.no_grad():
        for po, pb in zip(out.parameters(), b.parameters()):
            po.mul_(1.0 - weight).add_(weight * pb.detach())
    return out


def gradient_cosine(policy: Policy, demos, task: np.ndarray) -> float:
    """Cosine between the gradients of two stage objectives at ``policy``, over all its parameters:
    the SFT loss on ``demos`` (§4.1) and the exact RL loss −E[task reward] (§5.1, β = 0).

    Negative: a step down one loss climbs the other (interference, survey §6.4). A tabular policy whose
    two objectives touch disjoint states gives exactly 0.
    """
    check_policy(policy)
    mdp = policy.mdp
    states, actions = check_demos(mdp, demos)
    targets = token_targets(mdp, states, actions)
    grads = []
    with single_thread():
        for which in ("sft", "rl"):
            q = policy.copy()
            for prm in q.parameters():
                prm.requires_grad_(True)
                prm.grad = None
            lp = q.log_probs()
            loss = sft_loss(lp, targets)[0] if which == "sft" else exact_rl_loss(mdp, lp, None, task)[0]
            loss.backward()
            grads.append(torch.cat([prm.grad.flatten().double() for prm in q.parameters()]))
    g1, g2 = grads
    n = float(g1.norm() * g2.norm())
    return float(g1 @ g2) / n if n > 0 else 0.0


def _family_view(pi) -> list:
    return [float(v) for v in family_success(pi)]


def _two_skills_start(kind: str, mdp):
    if kind == "transformer":
        return base_transformer(mdp)
    if kind == "tabular":
        return mdp.base_policy()
    raise ValueError(f"policy must be 'transformer' (shared parameters) or 'tabular' (one row per state), got {kind!r}")


# =========================================================================== Table 5: SFT → DPO
@dataclass(eq=False)
class SftDpoResult:
    """:func:`sft_then_dpo`'s result. ``report``: the SFT → DPO :class:`PipelineReport`;
    ``dpo_alone``: DPO straight from the base (a one-stage report); ``pairs``: preference pairs each
    DPO stage saw ``{"after SFT": n, "base": n}``; ``success``: base, after SFT, after SFT → DPO,
    after DPO alone; ``pass_large`` the same at k = 256; ``roles`` of the two stages."""

    report: PipelineReport = field(repr=False)
    dpo_alone: PipelineReport = field(repr=False)
    pairs: dict
    success: dict
    pass_large: dict
    roles: dict

    def summary(self) -> str:
        return "\n".join([
            "SFT -> DPO (survey Table 5, first row)",
            f"  roles: {_fmt(self.roles)}",
            f"  preference pairs: {_fmt(self.pairs)}",
            f"  success: {_fmt(self.success)}",
            f"  pass@{K_LARGE}: {_fmt(self.pass_large)}",
        ])

    __str__ = summary


def sft_then_dpo(*, n_demos: int = 16, sft_steps: int = 30, dpo_steps: int = 60, beta: float = 0.1,
                 n_prompts: int = 64, seed: int = 0, eps: float = 1e-3) -> SftDpoResult:
    """Table 5's first row, SFT → preference optimisation, in the hidden-path world (tabular).

    SFT on ``n_demos`` correct demonstrations makes the hidden answer reachable (expansion, §3.3.2);
    DPO on pairs sampled from the SFT policy and ranked by the verifier (§4.2) then reweights inside
    that support (reshaping, §3.3.3). DPO straight from the base gets no pairs at all — every
    candidate fails, so nothing is compared — and leaves the policy where it was: preference
    optimisation reweights what an earlier stage made available, it does not supply it (§6.2).

    What the toy shows (seed 0): SFT for 30 steps leaves success at ≈ 0.035 but pass@256 ≈ 1 (the
    answer is reachable, rarely chosen); DPO on the 7 pairs it yields lifts success to ≈ 0.47 without
    expanding anything; DPO from the base: 0 pairs, no change.

    The survey's miscalibration risk for this row (ranking over-optimisation while rollout failures
    stay unresolved) is not staged here; see :func:`evaluator_inconsistency` for a later stage
    optimising a signal that disagrees with the verifier.
    """
    n_demos = check_count(n_demos, "n_demos", fix="the number of SFT demonstrations, e.g. n_demos=16")
    sft_steps, dpo_steps = _steps(sft_steps, "sft_steps"), _steps(dpo_steps, "dpo_steps")
    n_prompts = check_count(n_prompts, "n_prompts", fix="prompts DPO draws candidate pairs from, e.g. 64")
    seed, eps = _seed(seed), check_eps(eps)
    mdp = make("hidden-path")
    base = mdp.base_policy()
    demos = demonstrations(mdp, n_demos, seed=seed)
    n_pairs = {}

    def dpo_stage(where):
        def stage(p):
            pairs = preference_pairs(p, n_prompts, seed=seed)
            n_pairs[where] = len(pairs)
            if not pairs:                               # nothing compared: DPO cannot move the policy
                return p.frozen()
            return dpo(p, pairs, beta=beta, steps=dpo_steps, seed=seed, num_snapshots=2)
        return stage

    rep = pipeline(base, [("SFT", lambda p: sft(p, demos, steps=sft_steps, seed=seed, num_snapshots=2)),
                          ("DPO", dpo_stage("after SFT"))], eps=eps, ks=(1, K_LARGE))
    alone = pipeline(base, [("DPO", dpo_stage("base"))], eps=eps, ks=(1, K_LARGE))
    w = mdp.prompt_weights
    pols = {"base": base, "after SFT": rep["SFT"].after, "after SFT->DPO": rep["DPO"].after,
            "DPO alone": alone["DPO"].after}
    return SftDpoResult(rep, alone, n_pairs,
                        {k: float(w @ success_prob(p)) for k, p in pols.items()},
                        {k: float(pass_at_k(p, K_LARGE)) for k, p in pols.items()},
                        {"SFT": rep["SFT"].diagnosis.role, "DPO": rep["DPO"].diagnosis.role,
                         "DPO alone": alone["DPO"].diagnosis.role})


# =========================================================================== Table 5: SFT → RL → distill
@dataclass(eq=False)
class SpecialistResult:
    """:func:`specialists`' result. ``family_success`` maps each policy ("base", "specialist A",
    "specialist B", "merged", "student") to its success on family [A, B]; ``retention`` maps
    "merged"/"student" to [A, B] = its family success / the family's specialist's; ``kl_to_teacher``
    = KL(π‖router) for the merged model and the student; ``reports``: the SFT → RL pipeline of each
    specialist and the consolidation stage of the student and of the merge (base = the base
    transformer); ``policies``: the policies themselves."""

    family_success: dict
    retention: dict
    kl_to_teacher: dict
    reports: dict = field(repr=False)
    policies: dict = field(repr=False)

    def summary(self) -> str:
        lines = ["SFT -> RL -> distillation with two specialists (survey Table 5, §7.1.4)",
                 "  family success [A, B]:"]
        lines += [f"    {k:<14}[{v[0]:.3f}, {v[1]:.3f}]" for k, v in self.family_success.items()]
        lines += [f"  retention of the specialists' success: {k} [{v[0]:.3f}, {v[1]:.3f}]"
                  for k, v in self.retention.items()]
        lines.append(f"  KL to the routed specialists (nats): {_fmt(self.kl_to_teacher)}")
        return "\n".join(lines)

    __str__ = summary


def specialists(*, sft_steps: int = 10, rl_steps: int = 20, distill_steps: int = 40, on_policy: float = 0.0,
                seed: int = 0, eps: float = 1e-3) -> SpecialistResult:
    """Table 5's row SFT → RL → distillation, the specialist version of §6.2 and §7.1.4, in two-skills.

    Two specialists start from the same base transformer (shared parameters): specialist A is
    SFT on family-A demonstrations (``sft_steps``) then exact RL on family A's task only (β = 0,
    ``rl_steps``); specialist B the same on family B. Each becomes strong on its family and, through
    shared parameters, loses the other (attrition, §3.3.4). Consolidation into one model, two ways:

    - **merge**: :func:`average_parameters` of the two specialists (θ_A + θ_B)/2;
    - **distil**: a copy of the base transformer distilled (exact forward KL, ``on_policy`` = λ)
      from :func:`family_router` — specialist A on A's prompts, specialist B on B's.

    What the toy shows (seed 0): each specialist ≈ 0.99 on its family and < 0.01 on the other; the
    distilled student keeps ≈ 99.5% of both specialists' success at KL ≈ 0.001 nats to the routed
    teacher; the parameter average keeps most but not all (≈ 93% of A's, ≈ 94% of B's) at KL ≈ 0.22,
    far from either specialist's collapse on the other family. Merging is cheaper and lossier; distillation needs the
    specialists' outputs but preserves their gains — Table 5's failure ("specialist gains are not
    preserved") is the merge's shortfall here.
    """
    sft_steps, rl_steps, distill_steps = (_steps(sft_steps, "sft_steps"), _steps(rl_steps, "rl_steps"),
                                          _steps(distill_steps, "distill_steps"))
    if not 0.0 <= float(on_policy) <= 1.0:
        raise ValueError(f"on_policy must lie in [0, 1] (0: teacher states, 1: student rollouts), got {on_policy!r}")
    seed, eps = _seed(seed), check_eps(eps)
    mdp = make("two-skills")
    tf = base_transformer(mdp)
    reports, specs = {}, []
    for f, name in ((0, "A"), (1, "B")):
        demos, task = family_demos(mdp, f), family_task(mdp, f)
        rep = pipeline(tf, [(f"SFT {name}", lambda p, d=demos: sft(p, d, steps=sft_steps, seed=seed, num_snapshots=2)),
                            (f"RL {name}", lambda p, t=task: rl(p, beta=0.0, exact=True, reward=t, steps=rl_steps,
                                                                seed=seed, num_snapshots=2))],
                       eps=eps, ks=(1, K_LARGE))
        reports[f"specialist {name}"] = rep
        specs.append(rep.policy)
    router = family_router(mdp, specs)
    merged = average_parameters(specs[0], specs[1])
    reports["merge"] = pipeline(tf, [("merge", lambda p: merged)], eps=eps, ks=(1, K_LARGE))
    reports["distill"] = pipeline(tf, [("distill", lambda p: distill(p, router, on_policy=float(on_policy), exact=True,
                                                                     steps=distill_steps, seed=seed, num_snapshots=2))],
                                  eps=eps, ks=(1, K_LARGE))
    student = reports["distill"].policy
    pols = {"base": tf, "specialist A": specs[0], "specialist B": specs[1], "merged": merged, "student": student}
    fs = {k: _family_view(p) for k, p in pols.items()}
    own = [fs["specialist A"][0], fs["specialist B"][1]]
    return SpecialistResult(fs, {k: [fs[k][i] / own[i] for i in (0, 1)] for k in ("merged", "student")},
                            {k: kl(pols[k], router) for k in ("merged", "student")}, reports,
                            {**pols, "router": router})


# =========================================================================== §6.4: gradient interference
@dataclass(eq=False)
class InterferenceResult:
    """:func:`gradient_interference`'s result, one entry per policy kind ("transformer",
    "tabular"): ``rows[kind]`` holds family-B success at the base, after SFT on B and after the
    following RL on A (``b_base``, ``b_after_sft``, ``b_after_rl``), family-A success after RL
    (``a_after_rl``), ``gain_lost`` = (b_after_sft − b_after_rl)/(b_after_sft − b_base) (1 = all of
    the first stage's gain gone), and ``cosine`` of the two stages' gradients at the handoff."""

    rows: dict
    policies: dict = field(repr=False)

    def summary(self) -> str:
        lines = ["Gradient interference across stages: SFT on family B, then RL on family A (survey §6.4)"]
        lines += [f"  {k:<12}{_fmt(v)}" for k, v in self.rows.items()]
        return "\n".join(lines)

    __str__ = summary


def gradient_interference(*, sft_steps: int = 10, rl_steps: int = 20, seed: int = 0,
                          kinds=("transformer", "tabular")) -> InterferenceResult:
    """§6.4's gradient interference across stages, in two-skills.

    Stage 1: SFT on family-B demonstrations (``sft_steps``) raises B. Stage 2: exact RL on family A's
    task only (β = 0, ``rl_steps``). The second objective never rewards or penalises anything on B's
    prompts, so whatever B loses is interference through shared parameters. Also measured at the
    handoff (after stage 1): the cosine between the gradient of stage 1's SFT loss and of stage 2's
    RL loss (:func:`gradient_cosine`).

    What the toy shows (seed 0): with the base transformer, SFT lifts B 0.33 → ≈ 0.90 and RL on A
    then drops B to ≈ 0.14 — more than the whole gain (``gain_lost`` > 1, B ends below the base)
    while A rises to ≈ 0.96; the two gradients point apart (cosine ≈ −0.44). With the tabular policy
    (one row per state) B keeps its gain (0.33 → 0.79) exactly and the cosine is exactly 0: interference needs
    shared parameters. This is the survey's sequential-stage case; interleaved objectives
    (``toyenv.interleaved``) share the same gradients.
    """
    sft_steps, rl_steps, seed = _steps(sft_steps, "sft_steps"), _steps(rl_steps, "rl_steps"), _seed(seed)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds:
        raise ValueError("kinds is empty: give 'transformer' and/or 'tabular'")
    mdp = make("two-skills")
    demos_b, task_a = family_demos(mdp, 1), family_task(mdp, 0)
    rows, pols = {}, {}
    for kind in kinds:
        start = _two_skills_start(kind, mdp)
        with single_thread():
            s1 = sft(start, demos_b, steps=sft_steps, seed=seed, num_snapshots=2).policy
            s2 = rl(s1, beta=0.0, exact=True, reward=task_a, steps=rl_steps, seed=seed, num_snapshots=2).policy
        f0, f1, f2 = family_success(start), family_success(s1), family_success(s2)
        gain = f1[1] - f0[1]
        rows[kind] = {"b_base": float(f0[1]), "b_after_sft": float(f1[1]), "b_after_rl": float(f2[1]),
                      "a_before_rl": float(f1[0]), "a_after_rl": float(f2[0]),
                      "gain_lost": float((f1[1] - f2[1]) / gain) if gain > 0 else float("nan"),
                      "cosine": gradient_cosine(s1, demos_b, task_a)}
        pols[kind] = (start, s1, s2)
    return InterferenceResult(rows, pols)


# =========================================================================== §6.4: evaluator inconsistency
@dataclass(eq=False)
class EvaluatorResult:
    """:func:`evaluator_inconsistency`'s result.

    ``disagreement``: how often the learned reward model orders two samples unlike the verifier
    (among pairs the verifier tells apart), under the base and under each stage's policy;
    ``top_wrong``: fraction of prompts whose highest-scored completion under the proxy is wrong.
    ``orders``: for "verifier->proxy", "proxy->verifier" and "verifier only", the gold (verifier)
    success and proxy reward after each stage (``gold``, ``proxy`` lists: start, stage 1[, stage 2]).
    ``cost``: ``gold_lost_in_stage_2`` (verifier → proxy) and ``gold_short_of_verifier_only``
    (proxy → verifier against the verifier stage alone from the base). ``reports``: the pipelines.
    """

    disagreement: dict
    top_wrong: float
    orders: dict
    cost: dict
    reward_model: RewardModel = field(repr=False)
    reports: dict = field(repr=False)

    def summary(self) -> str:
        lines = ["Evaluator inconsistency across stages: learned reward model vs verifier (survey §6.4)",
                 f"  proxy-vs-verifier pair disagreement: {_fmt(self.disagreement)}",
                 f"  prompts whose top proxy answer is wrong: {self.top_wrong:.3f}"]
        for k, v in self.orders.items():
            lines.append(f"  {k:<16} gold {' -> '.join(f'{g:.3f}' for g in v['gold'])};  "
                         f"proxy {' -> '.join(f'{g:.3f}' for g in v['proxy'])}")
        lines.append(f"  cost: {_fmt(self.cost)}")
        return "\n".join(lines)

    __str__ = summary


def evaluator_inconsistency(*, n_pairs: int = 256, verifier_steps: int = 100, proxy_steps: int = 100,
                            proxy_beta: float = 0.0, seed: int = 0, eps: float = 1e-3) -> EvaluatorResult:
    """§6.4's evaluator inconsistency, in two-skills (tabular): a reward model and the verifier that
    disagree, used in different stages.

    The proxy is :func:`toyenv.reward_model` learned from ``n_pairs`` verifier-labelled pairs of base
    samples; its bag-of-tokens features ignore order and prompt, so it cannot tell A's answer "a b"
    from B's "b a". Verifier stages are sampled GRPO (β = 0, ``verifier_steps``, an RLVR stage);
    proxy stages are exact RL on the proxy (:func:`toyenv.rlhf`, ``proxy_beta``, ``proxy_steps``:
    the proxy optimised as far as those steps go). Both orders are run:

    - verifier → proxy: the later stage undoes what the earlier stage taught (it reinforces what the
      verifier suppressed); cost = gold success lost in stage 2.
    - proxy → verifier: the proxy stage pushes the correct answers out of practical reach, so the
      sampled verifier stage that follows rarely sees a reward; cost = gold success short of the
      same verifier stage run from the base.

    What the toy shows (seed 0): the proxy disagrees with the verifier on ≈ 40% of base pairs;
    verifier → proxy goes ≈ 0.99 → ≈ 0.00 gold while the proxy reward rises; proxy → verifier ends
    ≈ 0.4 gold against ≈ 0.99 for the verifier stage alone.
    """
    n_pairs = check_count(n_pairs, "n_pairs", fix="verifier-labelled pairs for the reward model, e.g. 256")
    verifier_steps, proxy_steps = _steps(verifier_steps, "verifier_steps"), _steps(proxy_steps, "proxy_steps")
    proxy_beta = check_nonnegative(proxy_beta, "proxy_beta", fix="the KL weight of the proxy stage, e.g. 0.0")
    seed, eps = _seed(seed), check_eps(eps)
    mdp = make("two-skills")
    base = mdp.base_policy()
    rm = reward_model(base, n_pairs=n_pairs, seed=seed)

    def verifier(p):
        return rl(p, beta=0.0, steps=verifier_steps, seed=seed, num_snapshots=2)

    def proxy(p):
        return rlhf(p, rm, beta=proxy_beta, exact=True, steps=proxy_steps, seed=seed, num_snapshots=2)

    reports = {
        "verifier->proxy": pipeline(base, [("verifier RL", verifier), ("proxy RL", proxy)], eps=eps, ks=(1, K_LARGE)),
        "proxy->verifier": pipeline(base, [("proxy RL", proxy), ("verifier RL", verifier)], eps=eps, ks=(1, K_LARGE)),
        "verifier only": pipeline(base, [("verifier RL", verifier)], eps=eps, ks=(1, K_LARGE)),
    }
    orders = {k: {"gold": [_expect(mdp, p.probs(), mdp.rewards) for p in r.policies],
                  "proxy": [_expect(mdp, p.probs(), rm.table) for p in r.policies]} for k, r in reports.items()}
    dis = {"base": 1.0 - rm.gold_agreement(base)}
    for k in ("verifier->proxy", "proxy->verifier"):
        for h in reports[k].handoffs:
            dis[f"{k}: after {h.name}"] = 1.0 - rm.gold_agreement(h.after)
    s, a = np.nonzero(mdp.terminal)
    wrong = []
    for x in range(mdp.num_prompts):
        m = mdp.prompt_of[s] == x
        j = int(np.argmax(rm.table[s[m], a[m]]))
        wrong.append(mdp.rewards[s[m][j], a[m][j]] <= 0)
    cost = {"gold_lost_in_stage_2": orders["verifier->proxy"]["gold"][1] - orders["verifier->proxy"]["gold"][2],
            "gold_short_of_verifier_only": orders["verifier only"]["gold"][1] - orders["proxy->verifier"]["gold"][2]}
    return EvaluatorResult(dis, float(np.mean(wrong)), orders, cost, rm, reports)


# =========================================================================== §6.4: calibration
@dataclass(eq=False)
class CalibrationResult:
    """:func:`calibration`'s result: ``rows``, one dict per condition with ``world``, ``demos``
    ("hidden path", "one answer", "every answer"), ``sft_steps``, and after SFT and after the same RL
    stage: ``success_*``, ``pass_large_*`` (pass@256), ``distinct_*`` (correct completions with
    π(y|x) ≥ eps, summed over prompts) and ``zero_variance`` (mean fraction of RL groups with no
    signal)."""

    rows: list
    eps: float

    def table(self) -> list:
        return list(self.rows)

    def summary(self) -> str:
        lines = ["Stage-transition calibration: SFT too weak, too strong, too narrow, then the same RL (survey §6.4)",
                 f"  {'world':<12}{'demos':<14}{'SFT steps':>10}{'success':>18}{'pass@256':>18}{'distinct':>12}"
                 f"{'RL groups without signal':>27}"]
        for r in self.rows:
            lines.append(f"  {r['world']:<12}{r['demos']:<14}{r['sft_steps']:>10}"
                         f"{r['success_sft']:>9.3f} -> {r['success_rl']:.3f}{r['pass_large_sft']:>9.3f} -> "
                         f"{r['pass_large_rl']:.3f}{r['distinct_sft']:>6} -> {r['distinct_rl']:<3}"
                         f"{r['zero_variance']:>26.1%}")
        lines.append(f"  (distinct: correct completions with probability >= {self.eps:g}, summed over prompts; "
                     "columns: after SFT -> after RL)")
        return "\n".join(lines)

    __str__ = summary


def calibration(*, weak_steps=(0, 10, 100), narrow_steps=(20, 200), rl_steps: int = 100, seed: int = 0,
                eps: float = 1e-3) -> CalibrationResult:
    """§6.4's stage-transition calibration (Table 5, row SFT → RLHF / RLVR): the same sampled RL stage
    (GRPO, β = 0, ``rl_steps``) after SFT of different strength and breadth.

    - **Too weak** (hidden-path, tabular): SFT on 16 demonstrations for each of ``weak_steps``. With
      0 or 10 steps the hidden answer is still out of practical reach and RL stays near 0 (its groups
      carry no signal); with 100 steps RL reaches ≈ 1.
    - **Too strong / too narrow** (many-paths, with one logit row per state so that RL itself does
      not squeeze prompts, see ``describe("many-paths")``): demonstrations of one correct answer per
      prompt vs every correct answer, for each of ``narrow_steps``. Narrow SFT run long leaves one
      correct answer per prompt in the support (8 of 20) and RL, being on-policy, does not bring the
      others back; broad SFT keeps all 20. Final success and pass@256 are ≈ 1 in all four: in this
      toy the cost of over-narrow SFT is the diversity of correct answers, not accuracy; long SFT on
      broad demonstrations costs RL nothing.
    """
    weak = tuple(check_count(s, "each weak_steps value", minimum=0, fix="SFT step counts, e.g. (0, 10, 100)")
                 for s in np.atleast_1d(weak_steps))
    narrow = tuple(check_count(s, "each narrow_steps value", minimum=0, fix="SFT step counts, e.g. (20, 200)")
                   for s in np.atleast_1d(narrow_steps))
    rl_steps, seed, eps = _steps(rl_steps, "rl_steps"), _seed(seed), check_eps(eps)
    rows = []

    def row(world, name, n, start, demos):
        p = sft(start, demos, steps=n, seed=seed, num_snapshots=2).policy if n else start
        run = rl(p, beta=0.0, steps=rl_steps, seed=seed, num_snapshots=2)
        q, w = run.policy, start.mdp.prompt_weights
        out = {"world": world, "demos": name, "sft_steps": n}
        for tag, pi in (("sft", p), ("rl", q)):
            out[f"success_{tag}"] = float(w @ success_prob(pi))
            out[f"pass_large_{tag}"] = float(pass_at_k(pi, K_LARGE))
            out[f"distinct_{tag}"] = int(distinct_correct(pi, eps=eps).sum())
        out["zero_variance"] = float(np.nanmean(run.history["zero_variance_groups"][:-1]))
        rows.append(out)

    hp = make("hidden-path")
    hp_demos = demonstrations(hp, 16, seed=seed)
    for n in weak:
        row("hidden-path", "hidden path", n, hp.base_policy(), hp_demos)
    mp = make("many-paths")
    start = TabularPolicy.from_probs(mp, mp.base_policy().probs())
    rare = set(mp.info["rare_prompts"])
    E = mp.eos
    one, every = [], []
    for x in range(mp.num_prompts):
        answers = [mp.info["rare_answer"]] if x in rare else list(mp.info["common_answers"])
        one += [(x, tuple(answers[0]) + (E,))] * 3
        every += [(x, tuple(a) + (E,)) for a in (answers * 3)[:3]]
    for name, demos in (("one answer", one), ("every answer", every)):
        for n in narrow:
            row("many-paths", name, n, start, demos)
    return CalibrationResult(rows, float(eps))


# =========================================================================== §6.4: stage mismatch
@dataclass(eq=False)
class MismatchResult:
    """:func:`stage_mismatch`'s result. For each stage ("mismatched": demonstrations on the hinted
    prompts; "matched": the same completions on the bare prompts the learner is deployed on):
    ``data_off_learner`` = fraction of the stage's supervised tokens at states the deployed learner
    never reaches (D(x)·reach = 0), ``learner_off_data`` = fraction of the learner's state occupancy
    (Eq. 3, deployed prompts, after the stage) on states the data never supervises (the exposure side
    of the mismatch: what the learner meets that the stage never covered), ``bare_success`` and ``hinted_success`` (before, after),
    ``kl_to_start`` = KL(after‖before) on the deployed prompts."""

    rows: dict
    policies: dict = field(repr=False)

    def summary(self) -> str:
        lines = ["Stage mismatch: supervision on states the learner does not reach (survey §6.4)"]
        for k, r in self.rows.items():
            lines.append(f"  {k:<11} data off the learner's states {r['data_off_learner']:.3f}, learner off the "
                         f"data {r['learner_off_data']:.3f};  bare success "
                         f"{r['bare_success'][0]:.3f} -> {r['bare_success'][1]:.3f};  hinted "
                         f"{r['hinted_success'][0]:.3f} -> {r['hinted_success'][1]:.3f};  KL {r['kl_to_start']:.4f}")
        return "\n".join(lines)

    __str__ = summary


def stage_mismatch(student: Policy | None = None, *, n_demos: int = 32, steps: int = 50,
                   seed: int = 0) -> MismatchResult:
    """§6.4's stage mismatch, in the scaffold world: a stage whose data lives where the learner
    does not go.

    The learner is deployed on bare prompts. The stage is SFT on ``n_demos`` correct completions
    recorded on the *hinted* prompts (where the teacher produced them); the matched control puts the
    same completions on the bare twin prompts. ``student`` defaults to the world's tabular base; a
    transformer of the scaffold world (e.g. ``toyenv.base_transformer(mdp)``) can be passed.

    What the toy shows: with the tabular learner, 100% of the mismatched stage's tokens sit on
    states the deployed learner never reaches, its bare-prompt success does not move at all (the
    SFT gradient is exactly zero off the demonstrated states) and the KL on deployed prompts is 0,
    while hinted success rises; the matched stage lifts bare success from ≈ 0.02 to ≈ 0.95, and
    ≈ 2% of the learner's own occupancy after it still lies on states no demonstration covers (its
    slips: the exposure side of the mismatch, which on-policy data would reach, §4.1, §5.4). A
    shared-parameter learner can carry some of the gain across prompts; measure it by passing one.
    """
    n_demos = check_count(n_demos, "n_demos", fix="the number of demonstrations, e.g. n_demos=32")
    steps, seed = _steps(steps, "steps"), _seed(seed)
    mdp = make("scaffold")
    if student is None:
        student = mdp.base_policy()
    check_policy(student, "student")
    if student.mdp.name != "scaffold":
        raise ValueError(f"stage_mismatch needs a policy of the scaffold world, got one of {student.mdp.name!r}; "
                         "build it on toyenv.make('scaffold')")
    mdp = student.mdp
    hinted = np.asarray(mdp.info["hinted"])
    bare = np.arange(len(hinted))
    picks = np.random.default_rng(seed).integers(len(hinted), size=n_demos)
    on_hinted = demonstrations(mdp, n_demos, seed=seed, prompts=hinted[picks])
    on_bare = [(int(bare[np.nonzero(hinted == x)[0][0]]), toks) for x, toks in on_hinted]
    reached = (mdp.prompt_weights[mdp.prompt_of] * reach_from_probs(mdp, student.probs())) > 0     # [S]
    rows, pols = {}, {}
    for name, demos in (("mismatched", on_hinted), ("matched", on_bare)):
        s, a = check_demos(mdp, demos)
        tg = token_targets(mdp, s, a)
        after = sft(student, demos, steps=steps, seed=seed, num_snapshots=2).policy
        sb, sa = success_prob(student), success_prob(after)
        d_after = occupancy(after).s                                  # [S], Eq. 3 state occupancy
        d_after = d_after * (mdp.prompt_weights[mdp.prompt_of] > 0)
        rows[name] = {"data_off_learner": float(tg[~reached].sum() / tg.sum()),
                      "learner_off_data": float(d_after[tg.sum(1) == 0].sum() / d_after.sum()),
                      "bare_success": (float(sb[bare].mean()), float(sa[bare].mean())),
                      "hinted_success": (float(sb[hinted].mean()), float(sa[hinted].mean())),
                      "kl_to_start": kl(after, student)}
        pols[name] = after
    return MismatchResult(rows, {"start": student, **pols})


# =========================================================================== §3.4: consolidation
@dataclass(eq=False)
class ConsolidationResult:
    """:func:`consolidation_forms`' result: ``rows[form]`` for "retention", "transfer",
    "amortisation" and "compression" (one row per student size for compression), each with
    ``teacher_success``, ``student_before``, ``student_after`` (on the behaviour being consolidated),
    ``retention`` = student_after / teacher_success, ``kl_to_teacher`` = KL(student‖teacher), nats,
    ``teacher_params``, ``student_params`` and form-specific extras."""

    rows: dict
    policies: dict = field(repr=False)

    def summary(self) -> str:
        lines = ["Consolidation's four forms (survey §3.4)"]
        for k, r in self.rows.items():
            lines.append(f"  {k:<22}teacher {r['teacher_success']:.3f}, student {r['student_before']:.3f} -> "
                         f"{r['student_after']:.3f} (retention {r['retention']:.3f}), KL to teacher "
                         f"{r['kl_to_teacher']:.4f}, params {r['teacher_params']} -> {r['student_params']}")
        return "\n".join(lines)

    __str__ = summary


def consolidation_forms(*, steps: int = 40, amortise_steps: int = 100, compress_steps: int = 100, seed: int = 0,
                        compress_sizes=(dict(d_model=8, n_layers=1, n_heads=2),
                                        dict(d_model=4, n_layers=1, n_heads=1))) -> ConsolidationResult:
    """§3.4's four forms of consolidation, each measured by the small experiment that shows it.

    - **retention across stages** (two-skills, base transformer): SFT on family A (10 steps), then
      SFT on family B (10 steps) erodes A; distilling the current model (exact, off-policy,
      ``steps``) from :func:`family_router` — the stage-1 checkpoint on A's prompts, itself on B's —
      restores A and keeps B. Teacher = the stage-1 checkpoint on A.
    - **transfer** (two-skills): a teacher made by exact RL on the verifier (20 steps from the base
      transformer) is distilled into a successor student (a copy of the base transformer).
    - **amortisation / scaffold removal** (scaffold, tabular): the hinted teacher is distilled into
      the bare student (``teacher_prompts="hinted"``, exact, off-policy, ``amortise_steps``; §7.1.4):
      the behaviour no longer needs the hint.
    - **compression** (two-skills): the transfer teacher (26k parameters) distilled into smaller
      randomly initialised transformers (``compress_sizes``; lr 1e-2, ``compress_steps``).

    What the toy shows (seed 0): retention brings A from ≈ 0.67 back to ≈ 0.91 (≈ 100% of the
    checkpoint's) while B stays at ≈ 0.52; transfer (0.33 → 0.98 of 0.97) and amortisation (bare
    0.02 → 0.655 of the hinted 0.656) reach ≈ 100% of the teacher's success; compression keeps ≈ 100%
    with the 1k-parameter student (KL ≈ 0.006) and ≈ 98% with the 340-parameter one (KL ≈ 0.05):
    the loss of over-compression (§6.4 transfer attrition) shows in KL before it shows in success.
    """
    steps, compress_steps, seed = _steps(steps, "steps"), _steps(compress_steps, "compress_steps"), _seed(seed)
    amortise_steps = _steps(amortise_steps, "amortise_steps")
    sizes = [dict(s) for s in ((compress_sizes,) if isinstance(compress_sizes, dict) else compress_sizes)]
    for s in sizes:
        bad = set(s) - {"d_model", "n_layers", "n_heads"}
        if bad:
            raise ValueError(f"compress_sizes entries are TransformerPolicy settings (d_model, n_layers, n_heads), "
                             f"got {sorted(bad)}")
    rows, pols = {}, {}
    ts = make("two-skills")
    tf = base_transformer(ts)
    n_tf = tf.num_parameters()

    def row(teacher_success, before, after, teacher_policy, student_policy, teacher_params, **extra):
        return {"teacher_success": float(teacher_success), "student_before": float(before),
                "student_after": float(after), "retention": float(after / teacher_success),
                "kl_to_teacher": kl(student_policy, teacher_policy), "teacher_params": int(teacher_params),
                "student_params": int(student_policy.num_parameters()), **extra}

    with single_thread():
        # retention across stages
        a1 = sft(tf, family_demos(ts, 0), steps=10, seed=seed, num_snapshots=2).policy
        b2 = sft(a1, family_demos(ts, 1), steps=10, seed=seed, num_snapshots=2).policy
        router = family_router(ts, [a1, b2])
        kept = distill(b2, router, on_policy=0.0, exact=True, steps=steps, seed=seed, num_snapshots=2).policy
        f1, f2, f3 = family_success(a1), family_success(b2), family_success(kept)
        rows["retention"] = row(f1[0], f2[0], f3[0], router, kept, n_tf, other_before=float(f2[1]),
                                other_after=float(f3[1]))
        pols["retention"] = (a1, b2, kept)
        # transfer
        teacher = rl(tf, beta=0.0, exact=True, steps=20, seed=seed, num_snapshots=2).policy
        w = ts.prompt_weights
        t_succ = float(w @ success_prob(teacher))
        moved = distill(tf, teacher, on_policy=0.0, exact=True, steps=steps, seed=seed, num_snapshots=2).policy
        rows["transfer"] = row(t_succ, w @ success_prob(tf), w @ success_prob(moved), teacher, moved, n_tf)
        pols["transfer"] = (teacher, moved)
        # amortisation (scaffold removal)
        sc = make("scaffold")
        sb = sc.base_policy()
        view = teacher_view(sb, "hinted")
        bare = np.arange(len(sc.info["hinted"]))
        am = distill(sb, sb, teacher_prompts="hinted", on_policy=0.0, exact=True, steps=amortise_steps, seed=seed,
                     num_snapshots=2).policy
        rows["amortisation"] = row(success_prob(view)[bare].mean(), success_prob(sb)[bare].mean(),
                                   success_prob(am)[bare].mean(), view, am, sb.num_parameters())
        pols["amortisation"] = (sb, am)
        # compression
        for s in sizes:
            small = TransformerPolicy(ts, seed=seed + 1, **s)
            c = distill(small, teacher, on_policy=0.0, exact=True, steps=compress_steps, lr=1e-2, seed=seed,
                        num_snapshots=2).policy
            key = f"compression d{s.get('d_model', 32)}x{s.get('n_layers', 2)}"
            rows[key] = row(t_succ, w @ success_prob(small), w @ success_prob(c), teacher, c, n_tf)
            pols[key] = c
    return ConsolidationResult(rows, pols)
