"""The exact experiments the notebooks call: mode covering vs mode seeking (survey §4.4, §5.4),
recovery after a slip and the provenance of distillation (§5.4, §7.1.5), and over-optimisation of a
learned reward (§5.1; Gao et al. 2023)."""
from __future__ import annotations

import numpy as np

from ..core.exact import kl_from_probs, kl_terms, success_value
from ..core.passes import reach_from_probs, soft_optimum_probs, trajectory_probs_from
from ..core.policies import Policy
from ..core.presets import make
from ..core.tree import TokenMDP, check_same_world
from ..methods.distill import distill, state_map
from ..methods.loop import Run, check_count, check_fraction, check_policy
from ..methods.rlhf import RewardModel, bon_policy


def mode_scan(mdp: TokenMDP | None = None, *, modes=None, prompt: int = 0, ts=None,
              floor: float = 1e-3) -> dict:
    """Exact forward and reverse KL along a path from a spread student to a one-mode student (mode covering vs mode seeking; survey refs. [6], [60]).

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
        per_t = float(kl_terms(mdp, t_rows, s_rows)[keep].sum())
        per_s = float(kl_terms(mdp, s_rows, t_rows)[keep].sum())
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


def after_slip(policy: Policy, teacher: Policy, teacher_prompts=None) -> dict:
    """Success of ``policy`` right after a first-token slip, and on the teacher's path (the DAgger argument, survey ref. [53]; §5.4).

    For every prompt with weight D(x) > 0: ``on_path`` is the policy's success probability from the
    state after the teacher's most likely first token, ``after_slip`` the mean success from the
    states after each other non-end first token (a slip). Both are exact (:func:`toyenv.success_value`),
    prompt-weighted. Off-policy data rarely visits slip states when the teacher rarely slips, so a
    student distilled off-policy recovers worse (DAgger's argument, survey ref [53]).
    """
    check_policy(policy)
    check_policy(teacher, "teacher")
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
    """Off- vs on-policy distillation at equal numbers of updates (GKD, Agarwal et al. 2024, ref [60]), exact evaluation.

    Runs :func:`distill` for every λ in ``on_policy`` and every seed, for ``max(checkpoints)`` steps,
    and reads the snapshots at ``checkpoints``. ``student_factory(seed)`` (optional) builds a fresh
    student per seed (e.g. a transformer); otherwise ``student`` is used for every seed.

    Returns arrays ``[len(on_policy), len(seeds), len(checkpoints)]``: ``success`` (D(x)-weighted),
    ``reverse_kl`` KL(S‖T), ``after_slip`` and ``on_path`` (:func:`after_slip`), plus the axes.
    """
    if student_factory is None:
        check_policy(student, "student")
    check_policy(teacher, "teacher")
    lams = tuple(check_fraction(lam, "each on_policy value", fix="λ is the fraction of student rollouts")
                 for lam in np.atleast_1d(on_policy))
    cps = tuple(check_count(c, "each checkpoint", minimum=0, fix="checkpoints are step counts, e.g. (25, 50, 100)")
                for c in np.atleast_1d(checkpoints))
    seeds = tuple(np.atleast_1d(seeds).tolist())
    for what, v in (("on_policy", lams), ("checkpoints", cps), ("seeds", seeds)):
        if not v:
            raise ValueError(f"{what} is empty: give at least one value")
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


def _pack(rows, **axis) -> dict:
    k, g, p = (np.array(c) for c in zip(*rows))
    return {**axis, "kl": k, "sqrt_kl": np.sqrt(np.maximum(k, 0)), "gold": g, "proxy": p}


def overoptimization(reference: Policy, proxy, *, betas=None, bon_ns=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                     run=None, gold=None) -> dict:
    """Gold and proxy reward against KL to the reference (Gao et al. 2023, ref [98]).

    Args:
        reference: π_ref (the policy the reward model's data came from, usually).
        proxy: a :class:`RewardModel` or an ``[S, V]`` reward table.
        betas: KL weights for the exact optimum π*_β ∝ π_ref·exp(r̂/β) (default: 40 values from 10
            down to 0.01); smaller β = harder optimisation.
        bon_ns: best-of-n sizes (exact :func:`bon_probs` under the proxy).
        run: optionally a :class:`toyenv.Run` (e.g. ``toyenv.rl(reference, reward=rm.table, ...)``):
            its snapshots are evaluated too.
        gold: the gold reward table ``[S, V]`` (default: the verifier ``mdp.rewards``).

    Returns a dict of dicts, one per family ("beta", "bon", and "run" if given), each holding arrays
    ``kl`` (KL(π‖π_ref), nats), ``sqrt_kl``, ``gold``, ``proxy`` (prompt-weighted expectations), and
    its own axis (``beta``, ``n`` or ``step``), ordered by increasing optimisation strength.
    """
    check_policy(reference, "reference")
    mdp = reference.mdp
    table = proxy.table if isinstance(proxy, RewardModel) else np.asarray(proxy, float)
    if table.shape != (mdp.num_states, mdp.vocab_size):
        raise ValueError(f"proxy must be a RewardModel or an [S, V] = {(mdp.num_states, mdp.vocab_size)} reward "
                         f"table of this world, got shape {table.shape}")
    bon_ns = tuple(check_count(n, "each n in bon_ns", fix="best-of-n needs n >= 1") for n in bon_ns)
    if run is not None and not isinstance(run, Run):
        raise TypeError(f"run must be a toyenv Run (e.g. toyenv.rlhf(...)), got {type(run).__name__}")
    gold_t = mdp.rewards if gold is None else np.asarray(gold, float)
    p_ref = reference.probs()
    betas = np.geomspace(10, 0.01, 40) if betas is None else np.asarray(betas, float)

    def row(p):
        k = kl_from_probs(mdp, p, p_ref)
        return k, _expect(mdp, p, gold_t), _expect(mdp, p, table)

    out = {}
    rows = [row(soft_optimum_probs(mdp, p_ref, table, b)) for b in betas]
    out["beta"] = _pack(rows, beta=betas)
    rows = [row(bon_policy(reference, int(n), table).probs()) for n in bon_ns]
    out["bon"] = _pack(rows, n=np.asarray(bon_ns))
    if run is not None:
        check_same_world(mdp, run.policy.mdp, "run")
        rows = [row(pi.probs()) for _, pi in run.snapshots]
        out["run"] = _pack(rows, step=np.array(run.steps))
    return out


def peak(curve: dict) -> dict:
    """Where gold reward peaks along one curve of :func:`overoptimization`, and how far it falls
    afterwards: ``{"index", "sqrt_kl", "gold_peak", "gold_start", "gold_end", "drop"}``."""
    g = curve["gold"]
    i = int(np.argmax(g))
    return {"index": i, "sqrt_kl": float(curve["sqrt_kl"][i]), "gold_peak": float(g[i]),
            "gold_start": float(g[0]), "gold_end": float(g[-1]), "drop": float(g[i] - g[-1])}


def _expect(mdp, p, table) -> float:
    t = trajectory_probs_from(mdp, p)
    per = np.bincount(mdp.prompt_of, weights=(t * table).sum(1), minlength=mdp.num_prompts)
    return float(mdp.prompt_weights @ per)
