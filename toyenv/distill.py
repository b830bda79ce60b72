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
so with λ = 0 and forward KL the loss *is* the sequence-level KL(T‖S) (chain rule, FINDINGS).

Scaffold removal (amortization, §3.4): the teacher may read a different prompt from the student,
e.g. the hinted twin of a bare prompt. ``teacher_prompts`` maps each student prompt to the
teacher's prompt; a student state (x, y_<t) corresponds to the teacher state
(teacher_prompts[x], y_<t), see :func:`state_map`.

Also here: :func:`generalized_jsd` (GKD's JSD(β)) and :func:`mode_scan`, an exact scan of forward
and reverse KL along a path from a spread student to a one-mode student (FINDINGS F8).
"""
from __future__ import annotations

import numpy as np
import torch

from .exact import reach_from_probs, sample_pairs_from_probs
from .mdp import TokenMDP
from .policies import Policy, TabularPolicy, check_same_world
from .train import Run, kl_from_probs, train

DIVERGENCES = ("forward", "reverse", "jsd")
TARGETS = ("distribution", "sample")

from .methods import METHODS as _ALL_METHODS  # noqa: E402

METHODS = {
    "distill/off-policy": dict(provenance="off-policy (teacher rollouts)", interface="teacher next-token distributions",
                               survey="§4.4", paper="logit distillation (Hinton et al. 2015); word-level KD (Kim & Rush 2016)"),
    "distill/sft": dict(provenance="off-policy (teacher rollouts)", interface="teacher tokens (SFT on teacher samples)",
                        survey="§4.4, §4.1", paper="sequence-level KD (Kim & Rush 2016)"),
    "distill/on-policy": dict(provenance="on-policy (student rollouts)", interface="teacher next-token distributions",
                              survey="§5.4, §7.1.5", paper="GKD (Agarwal et al. 2024, ref [60]); MiniLLM (Gu et al. 2024, ref [6])"),
    "distill/teacher-labels": dict(provenance="on-policy or mixed (student rollouts)",
                                   interface="teacher tokens on student states", survey="§5.4",
                                   paper="DAgger (Ross et al. 2011)"),
    "distill/mixed": dict(provenance="mixed: a fraction λ of student rollouts", interface="teacher next-token distributions",
                          survey="§4.4, §5.4", paper="GKD's student-data fraction λ (Agarwal et al. 2024)"),
}
"""Labels of the distillation runs (``Run.method``): provenance, interface, survey section, paper."""
_ALL_METHODS.update(METHODS)   # one table of provenance and interface: toyenv.METHODS


# --------------------------------------------------------------------------- pure losses
def generalized_jsd(teacher_logp: torch.Tensor, student_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence of GKD (survey ref [60]), per row.

    JSD(β) = β·KL(T‖M) + (1−β)·KL(S‖M) with M = β·T + (1−β)·S. Inputs are log-probabilities
    ``[..., V]``; the output has the leading shape. JSD(β)/β → KL(T‖S) as β → 0 and
    JSD(β)/(1−β) → KL(S‖T) as β → 1.
    """
    beta = _check_beta(beta)
    log_m = torch.logaddexp(np.log(beta) + teacher_logp, np.log1p(-beta) + student_logp)
    kl_t = (teacher_logp.exp() * (teacher_logp - log_m)).sum(-1)
    kl_s = (student_logp.exp() * (student_logp - log_m)).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


def token_divergence(teacher_logp: torch.Tensor, student_logp: torch.Tensor,
                     divergence: str = "forward", beta: float = 0.5) -> torch.Tensor:
    """Per-state divergence between next-token distributions, ``[S, V]`` log-probs -> ``[S]``.

    "forward": KL(T(·|s)‖S(·|s)) (mode covering); "reverse": KL(S(·|s)‖T(·|s)) (mode seeking);
    "jsd": :func:`generalized_jsd` with weight ``beta``. Teacher zeros are log-probs near −1000
    (as :meth:`TabularPolicy.from_probs` stores them), so every value stays finite.
    """
    if divergence == "forward":
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if divergence == "reverse":
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    if divergence == "jsd":
        return generalized_jsd(teacher_logp, student_logp, beta)
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


def distill_loss(student_logp: torch.Tensor, teacher_logp: torch.Tensor, state_weight, *,
                 divergence: str = "forward", beta: float = 0.5) -> tuple:
    """Token-level distillation loss Σ_s w(s)·D(T(·|s)‖S(·|s)) (GKD's objective, survey §4.4/§5.4).

    Args:
        student_logp, teacher_logp: ``[S, V]`` log-probabilities, the teacher's already read at the
            corresponding teacher states (see :func:`state_map`) and detached.
        state_weight: ``[S]`` non-negative weights: visit counts per rollout (sampled) or the exact
            occupancy mixture (see :func:`distill_weights`).
    Returns ``(loss, info)``.
    """
    w = torch.as_tensor(np.asarray(state_weight, dtype=np.float64))
    div = token_divergence(teacher_logp, student_logp, divergence, beta)
    loss = (w * div).sum()
    return loss, {"states_weighted": float((w > 0).sum())}


def imitation_loss(student_logp: torch.Tensor, target_weight) -> tuple:
    """Cross-entropy on teacher tokens, −Σ_(s,a) c(s,a)·log S(a|s) (SFT on teacher targets, §4.1).

    ``target_weight`` ``[S, V]``: how often the teacher's token ``a`` was the target at state ``s``
    (per rollout), or its expectation w(s)·T(a|s) in the exact case.
    """
    c = torch.as_tensor(np.asarray(target_weight, dtype=np.float64))
    return -(c * student_logp).sum(), {"targets": float(c.sum())}


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
            jsd_beta: float = 0.5, targets: str = "distribution", steps: int = 100, lr: float | None = None,
            seed: int = 0, n_samples: int = 64, teacher_prompts=None, exact: bool = False,
            snapshot_steps=None, num_snapshots: int = 21, optimizer: str = "adam") -> Run:
    """Distil ``teacher`` into a copy of ``student``; returns a :class:`toyenv.train.Run`.

    Provenance: off-policy (teacher rollouts, λ = 0, survey §4.4) to on-policy (student rollouts,
    λ = 1, §5.4), mixed by ``on_policy`` = λ. Interface: teacher next-token distributions
    (``targets="distribution"``) or teacher tokens (``targets="sample"``) on the chosen states.

    Args:
        student: the policy to train (tabular or transformer); copied, never changed.
        teacher: a policy of the same world; frozen (read once).
        on_policy: λ in [0, 1], the fraction of each batch's rollouts sampled from the student.
        divergence: "forward" KL(T‖S), "reverse" KL(S‖T) or "jsd" (generalised JSD, ``jsd_beta``),
            per visited state. Ignored with ``targets="sample"`` (cross-entropy on the tokens).
        targets: "distribution" (the teacher's full next-token distribution) or "sample" (one
            teacher token per visited state: SFT on teacher samples when λ = 0).
        steps, lr, seed, optimizer, snapshot_steps, num_snapshots: as in :func:`toyenv.train.train`;
            ``lr=None`` picks 0.05 for a tabular student and 3e-3 otherwise (Adam).
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
    mdp = student.mdp
    check_same_world(mdp, teacher.mdp, "teacher")
    lam = float(on_policy)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"on_policy must lie in [0, 1] (the fraction of student rollouts), got {on_policy!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    if divergence == "jsd":
        _check_beta(jsd_beta)
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    smap = state_map(mdp, teacher_prompts)
    with torch.no_grad():
        t_logp = teacher.log_probs().detach()[torch.as_tensor(smap)]      # [S, V] student coordinates
    t_p = t_logp.exp().numpy()
    t_p = t_p / t_p.sum(1, keepdims=True)
    n_on = int(round(lam * n_samples))
    if lr is None:
        lr = 0.05 if isinstance(student, TabularPolicy) else 3e-3
    lam_eff = lam if exact else n_on / n_samples

    def objective(pi, log_probs, step, rng):
        p = log_probs.detach().exp().numpy()
        if exact:
            w = distill_weights(mdp, p, t_p, lam_eff)
            if targets == "sample":
                loss, info = imitation_loss(log_probs, w[:, None] * t_p)
            else:
                loss, info = distill_loss(log_probs, t_logp, w, divergence=divergence, beta=jsd_beta)
        else:
            seeds = rng.integers(0, 2**63 - 1, size=3)
            sc_on, pc_on = visit_counts(mdp, *sample_pairs_from_probs(mdp, p, n_on, seed=int(seeds[0])))
            sc_off, pc_off = visit_counts(mdp, *sample_pairs_from_probs(mdp, t_p, n_samples - n_on,
                                                                        seed=int(seeds[1])))
            if targets == "sample":
                # teacher rollouts carry their own tokens; on student states the teacher labels each visit
                labels = _teacher_labels(t_p, sc_on, np.random.default_rng(int(seeds[2])))
                loss, info = imitation_loss(log_probs, (pc_off + labels) / n_samples)
            else:
                loss, info = distill_loss(log_probs, t_logp, (sc_on + sc_off) / n_samples,
                                          divergence=divergence, beta=jsd_beta)
        info["reverse_kl"] = kl_from_probs(mdp, p, t_p)
        info["forward_kl"] = kl_from_probs(mdp, t_p, p)
        return loss, info

    config = dict(on_policy=lam, divergence=divergence, jsd_beta=jsd_beta, targets=targets, steps=steps,
                  lr=lr, seed=seed, n_samples=n_samples, teacher_prompts=teacher_prompts, exact=exact)
    if targets == "sample":
        method = "distill/sft" if lam == 0 else "distill/teacher-labels"
    else:
        method = {0.0: "distill/off-policy", 1.0: "distill/on-policy"}.get(lam, "distill/mixed")
    from .fit import single_thread
    with single_thread():
        return train(student, objective, steps=steps, lr=lr, seed=seed, snapshot_steps=snapshot_steps,
                     num_snapshots=num_snapshots,
                     method=method,
                     config=config, optimizer=optimizer)


def _teacher_labels(t_p: np.ndarray, state_counts: np.ndarray, rng) -> np.ndarray:
    """One teacher token per visit: multinomial counts ``[S, V]`` for the visited states."""
    out = np.zeros_like(t_p)
    for s in np.nonzero(state_counts)[0]:
        out[s] = rng.multinomial(int(state_counts[s]), t_p[s])
    return out


def _check_beta(beta) -> float:
    b = float(beta)
    if not 0.0 < b < 1.0:
        raise ValueError(f"jsd_beta must lie strictly between 0 and 1, got {beta!r}: at 0 or 1 the JSD "
                         "is identically 0; use divergence='forward' or 'reverse' for the limits")
    return b


# --------------------------------------------------------------------------- F8: forward vs reverse KL
def mode_scan(mdp: TokenMDP | None = None, *, modes=None, prompt: int = 0, ts=None,
              floor: float = 1e-3) -> dict:
    """Exact forward and reverse KL along a path from a spread student to a one-mode student (F8).

    The teacher puts probability 1/2 on each of two complete answers (``modes``; by default the
    two-skills world's ``a b`` and ``b a``) at ``prompt``. The student is *memoryless*: at depth t it
    draws its token from one distribution q_t that ignores the earlier tokens, so it cannot hold both
    modes without also producing the sequences "between" them (``a a``, ``b b``). The path
    goes from the product of the teacher's per-position marginals (t = 0: the forward-KL optimum of
    this family) to the point mass on the first mode (t = 1); every row is mixed with ``floor``
    uniform mass so every KL is finite.

    Returns a dict of arrays over ``ts``: ``t``, ``forward_kl`` = KL(T‖S_t), ``reverse_kl`` = KL(S_t‖T),
    ``mass_modes`` (student mass on each mode, ``[len(ts), 2]``) and ``mass_between`` (student mass
    on complete answers that are neither mode), plus ``argmin_forward``/``argmin_reverse``.
    Forward KL is smallest at the spread end, reverse KL at the one-mode end: mode covering vs mode
    seeking (survey §4.4/§5.4; MiniLLM, ref [6]).
    """
    if mdp is None:
        from .worlds import make
        mdp = make("two-skills")
    V, E = mdp.vocab_size, mdp.eos
    if modes is None:
        modes = [tuple(m) + (E,) for m in mdp.info.get("answers", ((0, 1), (1, 0)))]
    modes = [tuple(int(t) for t in m) for m in modes]
    if len(modes) != 2 or len(modes[0]) != len(modes[1]):
        raise ValueError(f"modes must be two complete answers of equal length, got {modes!r}")
    mdp.encode([(prompt, m) for m in modes])                          # validates both
    L = len(modes[0])
    ts = np.linspace(0, 1, 41) if ts is None else np.asarray(ts, float)
    if not 0 < floor < 1:
        raise ValueError(f"floor must lie in (0, 1), got {floor!r}")
    uniform = np.full(V, 1.0 / V)
    # teacher: the two modes with probability 1/2 each, at every prompt
    t_rows = np.tile(uniform, (mdp.num_states, 1))
    for m in modes:
        for d in range(L):
            s = mdp.state_index(prompt, m[:d])
            t_rows[s] = 0.0
    for m in modes:
        for d in range(L):
            s = mdp.state_index(prompt, m[:d])
            t_rows[s, m[d]] += 1.0
    t_rows = t_rows / t_rows.sum(1, keepdims=True)
    t_rows = (1 - floor) * t_rows + floor * uniform
    marg = np.zeros((mdp.horizon, V))
    marg[:, E] = 1.0
    for d in range(L):
        marg[d] = 0.0
        for m in modes:
            marg[d, m[d]] += 0.5
    point = marg.copy()
    for d in range(L):
        point[d] = 0.0
        point[d, modes[0][d]] = 1.0
    keep = mdp.prompt_of == prompt
    fwd, rev, mm, mb = [], [], [], []
    mode_pairs = mdp.encode([(prompt, m) for m in modes])
    for t in ts:
        q = (1 - floor) * ((1 - t) * marg + t * point) + floor * uniform       # [T, V] per depth
        s_rows = q[mdp.depth]
        per_t = _prompt_kl(mdp, t_rows, s_rows, prompt, keep)
        per_s = _prompt_kl(mdp, s_rows, t_rows, prompt, keep)
        fwd.append(per_t)
        rev.append(per_s)
        traj = reach_from_probs(mdp, s_rows)[:, None] * s_rows * mdp.terminal
        traj = np.where(keep[:, None], traj, 0.0)
        on_modes = traj[mode_pairs]
        mm.append(on_modes)
        mb.append(traj.sum() - on_modes.sum())
    fwd, rev = np.array(fwd), np.array(rev)
    return {"t": ts, "forward_kl": fwd, "reverse_kl": rev, "mass_modes": np.array(mm),
            "mass_between": np.array(mb), "argmin_forward": float(ts[np.argmin(fwd)]),
            "argmin_reverse": float(ts[np.argmin(rev)]), "modes": modes, "prompt": prompt}


def _prompt_kl(mdp, p, q, prompt, keep) -> float:
    from .exact import kl_per_state
    r = reach_from_probs(mdp, p)
    return float((r * kl_per_state(p, q))[keep].sum())


# --------------------------------------------------------------------------- why on-policy can win
def after_slip(policy: Policy, teacher: Policy, teacher_prompts=None) -> dict:
    """Success of ``policy`` right after a first-token slip, and on the teacher's path (F7, F9).

    For every prompt with weight D(x) > 0: ``on_path`` is the policy's success probability from the
    state after the teacher's most likely first token, ``after_slip`` the mean success from the
    states after each other non-end first token (a slip). Both are exact (:func:`toyenv.success_value`),
    prompt-weighted. Off-policy data rarely visits slip states when the teacher rarely slips, so a
    student distilled off-policy recovers worse (DAgger's argument, survey ref [53]).
    """
    from .exact import success_value
    mdp = policy.mdp
    check_same_world(mdp, teacher.mdp, "teacher")
    V, _ = success_value(policy)
    tp = teacher.probs()[state_map(mdp, teacher_prompts)]
    on, off = np.zeros(mdp.num_prompts), np.zeros(mdp.num_prompts)
    for x in range(mdp.num_prompts):
        if mdp.horizon < 2:
            break
        root = mdp.roots[x]
        best = int(np.argmax(np.where(np.arange(mdp.vocab_size) == mdp.eos, -1, tp[root])))
        kids = [a for a in range(mdp.vocab_size) if a not in (mdp.eos, best)]
        on[x] = V[mdp.child[root, best]]
        off[x] = np.mean([V[mdp.child[root, a]] for a in kids]) if kids else np.nan
    w = mdp.prompt_weights
    return {"on_path": float(w @ on), "after_slip": float(w @ off)}


def compare_provenance(student: Policy, teacher: Policy, *, on_policy=(0.0, 0.5, 1.0),
                       checkpoints=(25, 50, 100, 200), seeds=(0, 1, 2), divergence: str = "forward",
                       teacher_prompts=None, student_factory=None, **distill_kw) -> dict:
    """Off- vs on-policy distillation at equal numbers of updates (FINDINGS F7), exact evaluation.

    Runs :func:`distill` for every λ in ``on_policy`` and every seed, for ``max(checkpoints)`` steps,
    and reads the snapshots at ``checkpoints``. ``student_factory(seed)`` (optional) builds a fresh
    student per seed (e.g. a transformer); otherwise ``student`` is used for every seed.

    Returns arrays ``[len(on_policy), len(seeds), len(checkpoints)]``: ``success`` (D(x)-weighted),
    ``reverse_kl`` KL(S‖T), ``after_slip`` and ``on_path`` (:func:`after_slip`), plus the axes.
    """
    lams, cps = tuple(on_policy), tuple(int(c) for c in checkpoints)
    shape = (len(lams), len(seeds), len(cps))
    out = {k: np.zeros(shape) for k in ("success", "reverse_kl", "after_slip", "on_path")}
    for i, lam in enumerate(lams):
        for j, seed in enumerate(seeds):
            st = student if student_factory is None else student_factory(seed)
            run = distill(st, teacher, on_policy=lam, divergence=divergence, steps=max(cps), seed=seed,
                          teacher_prompts=teacher_prompts, snapshot_steps=cps, **distill_kw)
            for k, c in enumerate(cps):
                out["success"][i, j, k] = run.history["success"][c]
                out["reverse_kl"][i, j, k] = run.history["reverse_kl"][c]
                sl = after_slip(run.at(c), teacher, teacher_prompts)
                out["after_slip"][i, j, k], out["on_path"][i, j, k] = sl["after_slip"], sl["on_path"]
    return {"on_policy": np.array(lams), "seeds": np.array(seeds), "checkpoints": np.array(cps), **out}
