"""Distillation: a teacher's per-state distributions transferred into a student (survey §4.4, §5.4,
§7.1.5).

Provenance is one knob, ``on_policy`` (λ, as in GKD, Agarwal et al. 2024, survey ref [60]):

- λ = 0, *off-policy*: states come from teacher rollouts (§4.4). With ``targets="sample"`` the
  student imitates the sampled teacher tokens: SFT on teacher samples. With
  ``targets="distribution"`` it matches the teacher's whole next-token distribution on the states
  the teacher visits: token-level forward KL, "logit distillation".
- λ = 1, *on-policy*: states come from the student's own rollouts and the teacher scores them
  (§5.4): reverse KL(S‖T) per visited state as in GKD / MiniLLM (ref [6]), or forward KL / JSD
  on the student's states; with ``targets="sample"`` the teacher labels each visited state with
  one of its tokens (DAgger-style teacher targets).
- 0 < λ < 1 mixes the two: a fraction λ of the rollouts of every batch is the student's.

Gradients never flow through the choice of states: the states are data (GKD's convention); the
per-state divergence is differentiated. ``exact=True`` replaces the sampled rollouts by their
expectation: the loss is Σ_s w(s)·D(T(·|s)‖S(·|s)) with w(s) = D(x)·[λ·reach_S(s) + (1−λ)·reach_T(s)],
so with λ = 0 and forward KL the loss *is* the sequence-level KL(T‖S) (the chain rule over the tree).

Scaffold removal (amortization, §3.4): the teacher may read a different prompt from the student,
e.g. the hinted twin of a bare prompt. ``teacher_prompts`` maps each student prompt to the
teacher's prompt; a student state (x, y_<t) corresponds to the teacher state
(teacher_prompts[x], y_<t), see :func:`state_map`.

Also here: :func:`generalized_jsd`, GKD's JSD(β). Its mixture weight is called ``jsd_weight``
throughout the package, because ``beta`` always names a KL weight. The imitation loss of
``targets="sample"`` is :func:`toyenv.methods.losses.sft_loss` on teacher-token counts.
"""
from __future__ import annotations

import numpy as np
import torch

from .loop import (Run, check_choice, check_count, check_fraction, check_loop_options, check_policy,
                   default_lr, single_thread, train)
from .losses import sft_loss
from ..core.exact import kl_from_probs
from ..core.passes import reach_from_probs
from ..core.policies import Policy, TabularPolicy
from ..core.tree import TokenMDP, check_same_world, sample_pairs_from_probs

DIVERGENCES = ("forward", "reverse", "jsd")
TARGETS = ("distribution", "sample")



# --------------------------------------------------------------------------- pure losses
def generalized_jsd(teacher_logp: torch.Tensor, student_logp: torch.Tensor, jsd_weight: float) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024, survey ref [60]), per row.

    With w = ``jsd_weight`` (GKD's β, a mixture weight, not a KL weight):
    JSD(w) = w·KL(T‖M) + (1−w)·KL(S‖M) with M = w·T + (1−w)·S. Inputs are log-probabilities
    ``[..., V]``; the output has the leading shape. JSD(w)/w → KL(T‖S) as w → 0 and
    JSD(w)/(1−w) → KL(S‖T) as w → 1.
    """
    w = _check_jsd_weight(jsd_weight)
    log_m = torch.logaddexp(np.log(w) + teacher_logp, np.log1p(-w) + student_logp)
    kl_t = (teacher_logp.exp() * (teacher_logp - log_m)).sum(-1)
    kl_s = (student_logp.exp() * (student_logp - log_m)).sum(-1)
    return w * kl_t + (1 - w) * kl_s


def token_divergence(teacher_logp: torch.Tensor, student_logp: torch.Tensor,
                     divergence: str = "forward", jsd_weight: float = 0.5) -> torch.Tensor:
    """Per-state divergence between next-token distributions, ``[S, V]`` log-probs -> ``[S]``.

    "forward": KL(T(·|s)‖S(·|s)) (mode covering); "reverse": KL(S(·|s)‖T(·|s)) (mode seeking);
    "jsd": :func:`generalized_jsd` with mixture weight ``jsd_weight``. Teacher zeros are log-probs near −1000
    (as :meth:`TabularPolicy.from_probs` stores them), so every value stays finite.
    """
    if divergence == "forward":
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if divergence == "reverse":
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    if divergence == "jsd":
        return generalized_jsd(teacher_logp, student_logp, jsd_weight)
    raise ValueError(f"divergence must be one of {', '.join(map(repr, DIVERGENCES))}; got {divergence!r}")


def distill_loss(student_logp: torch.Tensor, teacher_logp: torch.Tensor, state_weight, *,
                 divergence: str = "forward", jsd_weight: float = 0.5) -> tuple:
    """Token-level distillation loss Σ_s w(s)·D(T(·|s)‖S(·|s)) (GKD's objective, survey §4.4/§5.4).

    Args:
        student_logp, teacher_logp: ``[S, V]`` log-probabilities, the teacher's already read at the
            corresponding teacher states (see :func:`state_map`) and detached.
        state_weight: ``[S]`` non-negative weights: visit counts per rollout (sampled) or the exact
            occupancy mixture (see :func:`distill_weights`).
    Returns ``(loss, info)``.
    """
    w = torch.as_tensor(np.asarray(state_weight, dtype=np.float64))
    div = token_divergence(teacher_logp, student_logp, divergence, jsd_weight)
    loss = (w * div).sum()
    return loss, {"states_weighted": float((w > 0).sum())}


def _imitation(student_logp: torch.Tensor, target_weight) -> tuple:
    """SFT on teacher tokens (survey §4.1, §4.4): :func:`sft_loss` with ``target_weight [S, V]`` =
    how often the teacher's token ``a`` was the target at ``s`` per rollout (or its expectation
    w(s)·T(a|s)); also logs ``targets``, the number of target tokens per rollout."""
    loss, info = sft_loss(student_logp, target_weight)
    return loss, {**info, "targets": float(torch.as_tensor(np.asarray(target_weight, dtype=np.float64)).sum())}


# --------------------------------------------------------------------------- states and weights
def prompt_map(mdp: TokenMDP, teacher_prompts=None) -> np.ndarray:
    """Teacher prompt of every student prompt, ``[P]``.

    ``teacher_prompts``: None (identity), a dict ``{student_prompt: teacher_prompt}``, the string
    ``"hinted"`` (``mdp.info["hinted"]``, the scaffold world's bare -> hinted map) or a sequence
    whose i-th entry is the teacher prompt of student prompt i. Prompts it does not mention map to
    themselves, so ``mdp.info["hinted"]`` (one entry per bare prompt) can be passed as it is.
    """
    P = mdp.num_prompts
    out = np.arange(P)
    if teacher_prompts is None:
        return out
    if isinstance(teacher_prompts, str):
        if teacher_prompts != "hinted" or "hinted" not in mdp.info:
            raise ValueError(f"teacher_prompts={teacher_prompts!r} is not understood: the only string "
                             "allowed is 'hinted', in a world whose mdp.info has a 'hinted' map "
                             "(the scaffold world)")
        teacher_prompts = mdp.info["hinted"]
    items = teacher_prompts.items() if isinstance(teacher_prompts, dict) else enumerate(teacher_prompts)
    for i, j in items:
        for v, what in ((i, "student"), (j, "teacher")):
            if not isinstance(v, (int, np.integer)) or not 0 <= v < P:
                raise ValueError(f"teacher_prompts maps {i!r} -> {j!r}: {what} prompt indices must be "
                                 f"integers in [0, {P})")
        out[i] = j
    return out


def state_map(mdp: TokenMDP, teacher_prompts=None) -> np.ndarray:
    """For every student state (x, y_<t), the index of the teacher state (teacher_prompts[x], y_<t).

    Returns ``[S]`` state indices. Every prompt has the same prefix tree, so the map is a lookup
    by (prompt, prefix id).
    """
    pm = prompt_map(mdp, teacher_prompts)
    table = np.empty((mdp.num_prompts, mdp.num_prefixes), dtype=np.int64)
    table[mdp.prompt_of, mdp.prefix_id] = np.arange(mdp.num_states)
    return table[pm[mdp.prompt_of], mdp.prefix_id]


def teacher_view(teacher: Policy, teacher_prompts=None) -> TabularPolicy:
    """The teacher read in student coordinates: a tabular policy whose row at student state s is the
    teacher's distribution at the corresponding teacher state. ``kl(student, teacher_view(...))`` is
    the reverse KL the student is distilled towards."""
    p = teacher.probs()[state_map(teacher.mdp, teacher_prompts)]
    return TabularPolicy.from_probs(teacher.mdp, p / p.sum(1, keepdims=True))


def visit_counts(mdp: TokenMDP, states, actions) -> tuple[np.ndarray, np.ndarray]:
    """States and state-action pairs visited by complete trajectories given as terminal pairs.

    Returns ``(state_counts [S], pair_counts [S, V])``: how many of the trajectories pass through each
    state, and through each (state, token) pair, including the final pair.
    """
    S, V = mdp.num_states, mdp.vocab_size
    sc, pc = np.zeros(S), np.zeros((S, V))
    s, a = np.asarray(states, np.int64), np.asarray(actions, np.int64)
    while s.size:
        np.add.at(sc, s, 1.0)
        np.add.at(pc, (s, a), 1.0)
        keep = mdp.parent[s] >= 0
        s, a = mdp.parent[s[keep]], mdp.last_token[s[keep]]
    return sc, pc


def distill_weights(mdp: TokenMDP, p_student: np.ndarray, p_teacher: np.ndarray, on_policy: float) -> np.ndarray:
    """Exact expected state weight w(s) = D(x)·[λ·reach_S(s) + (1−λ)·reach_T(s)], ``[S]``.

    ``p_teacher`` is the teacher in student coordinates. The expectation of the sampled visit counts
    per rollout, so the exact loss is the expectation of the sampled one.
    """
    d = mdp.prompt_weights[mdp.prompt_of]
    r = 0.0
    if on_policy > 0:
        r = r + on_policy * reach_from_probs(mdp, p_student)
    if on_policy < 1:
        r = r + (1 - on_policy) * reach_from_probs(mdp, p_teacher)
    return d * r


# --------------------------------------------------------------------------- the method
def distill(student: Policy, teacher: Policy, *, on_policy: float = 1.0, divergence: str = "forward",
            jsd_weight: float = 0.5, targets: str = "distribution", steps: int = 100, lr: float | None = None,
            seed: int = 0, n_samples: int = 64, teacher_prompts=None, exact: bool = False,
            **train_options) -> Run:
    """Distil ``teacher`` into a copy of ``student``; returns a :class:`toyenv.Run`.

    Provenance: off-policy (teacher rollouts, λ = 0, survey §4.4) to on-policy (student rollouts,
    λ = 1, §5.4), mixed by ``on_policy`` = λ. Interface: teacher next-token distributions
    (``targets="distribution"``) or teacher tokens (``targets="sample"``) on the chosen states.

    Args:
        student: the policy to train (tabular or transformer); copied, never changed.
        teacher: a policy of the same world; frozen (read once).
        on_policy: λ in [0, 1], the fraction of each batch's rollouts sampled from the student.
        divergence: "forward" KL(T‖S), "reverse" KL(S‖T) or "jsd" (generalised JSD with mixture
            weight ``jsd_weight`` in (0, 1), GKD's β), per visited state. Ignored with
            ``targets="sample"`` (cross-entropy on the tokens).
        targets: "distribution" (the teacher's full next-token distribution) or "sample" (one
            teacher token per visited state: SFT on teacher samples when λ = 0).
        steps, lr, seed, train_options (optimizer, snapshot_steps, num_snapshots): as in
            :func:`toyenv.train`; ``lr=None`` picks 0.05 for a tabular student and 3e-3 otherwise.
        n_samples: rollouts per step (round(λ·n) of them the student's).
        teacher_prompts: student prompt -> teacher prompt (see :func:`prompt_map`); e.g.
            ``"hinted"`` in the scaffold world distils the hinted teacher into the bare student.
        exact: use the expected loss over all states (:func:`distill_weights`) instead of samples.

    History adds ``reverse_kl`` = exact KL(S‖T) and ``forward_kl`` = exact KL(T‖S), sequence level,
    with the teacher read in student coordinates and prompts weighted by D(x).

    Example::

        mdp = toyenv.make("scaffold")
        base = mdp.base_policy()
        run = toyenv.distill(base, base, teacher_prompts="hinted", steps=100)
        toyenv.success_prob(run.policy)[:4]     # bare prompts now solved without the hint
    """
    # validate
    if "jsd_beta" in train_options:
        raise TypeError("distill's jsd_beta is now called jsd_weight (the JSD mixture weight; beta always "
                        "means a KL weight): pass jsd_weight=...")
    check_policy(student, "student")
    check_policy(teacher, "teacher")
    check_loop_options(steps, lr, seed, train_options)
    mdp = student.mdp
    check_same_world(mdp, teacher.mdp, "teacher")
    lam = check_fraction(on_policy, "on_policy", fix="the fraction of student rollouts: 0 is off-policy "
                                                     "(teacher rollouts), 1 on-policy")
    check_choice(divergence, "divergence", DIVERGENCES)
    check_choice(targets, "targets", TARGETS)
    if divergence == "jsd":
        _check_jsd_weight(jsd_weight)
    check_count(n_samples, "n_samples", fix="rollouts per step, e.g. n_samples=64")
    # build the pieces
    smap = state_map(mdp, teacher_prompts)
    with torch.no_grad():
        t_logp = teacher.log_probs().detach()[torch.as_tensor(smap)]      # [S, V] student coordinates
    t_p = t_logp.exp().numpy()
    t_p = t_p / t_p.sum(1, keepdims=True)
    r_t = reach_from_probs(mdp, t_p)              # the teacher's reach, the same at every step
    n_on = int(round(lam * n_samples))
    lam_eff = lam if exact else n_on / n_samples

    def objective(pi, log_probs, step, rng):
        p = log_probs.detach().exp().numpy()
        if exact:
            w = distill_weights(mdp, p, t_p, lam_eff)
            if targets == "sample":
                loss, info = _imitation(log_probs, w[:, None] * t_p)
            else:
                loss, info = distill_loss(log_probs, t_logp, w, divergence=divergence, jsd_weight=jsd_weight)
        else:
            seeds = rng.integers(0, 2**63 - 1, size=3)
            sc_on, pc_on = visit_counts(mdp, *sample_pairs_from_probs(mdp, p, n_on, seed=int(seeds[0])))
            sc_off, pc_off = visit_counts(mdp, *sample_pairs_from_probs(mdp, t_p, n_samples - n_on,
                                                                        seed=int(seeds[1])))
            if targets == "sample":
                # teacher rollouts carry their own tokens; on student states the teacher labels each visit
                labels = _teacher_labels(t_p, sc_on, np.random.default_rng(int(seeds[2])))
                loss, info = _imitation(log_probs, (pc_off + labels) / n_samples)
            else:
                loss, info = distill_loss(log_probs, t_logp, (sc_on + sc_off) / n_samples,
                                          divergence=divergence, jsd_weight=jsd_weight)
        info["reverse_kl"] = kl_from_probs(mdp, p, t_p)
        info["forward_kl"] = kl_from_probs(mdp, t_p, p, reach=r_t)
        return loss, info

    # train
    lr = default_lr(student, lr, "distill")
    config = dict(on_policy=lam, divergence=divergence, jsd_weight=jsd_weight, targets=targets, steps=steps,
                  lr=lr, seed=seed, n_samples=n_samples, teacher_prompts=teacher_prompts, exact=exact)
    if targets == "sample":
        method = "distill/sft" if lam == 0 else "distill/teacher-labels"
    else:
        method = {0.0: "distill/off-policy", 1.0: "distill/on-policy"}.get(lam, "distill/mixed")
    return train(student, objective, steps=steps, lr=lr, seed=seed, method=method, config=config,
                 **train_options)


def _teacher_labels(t_p: np.ndarray, state_counts: np.ndarray, rng) -> np.ndarray:
    """One teacher token per visit: multinomial counts ``[S, V]`` for the visited states."""
    out = np.zeros_like(t_p)
    for s in np.nonzero(state_counts)[0]:
        out[s] = rng.multinomial(int(state_counts[s]), t_p[s])
    return out


def _check_jsd_weight(jsd_weight) -> float:
    w = float(jsd_weight)
    if not 0.0 < w < 1.0:
        raise ValueError(f"jsd_weight must lie strictly between 0 and 1, got {jsd_weight!r}: at 0 or 1 the "
                         "JSD is identically 0; use divergence='forward' or 'reverse' for the limits")
    return w


# --------------------------------------------------------------------------- forward vs reverse KL (MiniLLM, survey ref. [6]; GKD, ref. [60])


# --------------------------------------------------------------------------- why on-policy can win


