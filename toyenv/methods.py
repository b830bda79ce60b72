"""Post-training methods as public entry points: build the batch a loss needs, then :func:`train`.

Every method returns a :class:`toyenv.Run` and leaves its input policy unchanged. ``METHODS``
labels each with its trajectory provenance and supervision interface (survey Tables 3-4)::

    demos = toyenv.demonstrations(mdp, 32, seed=0)       # correct completions
    run = toyenv.sft(base, demos, steps=100, seed=0)      # off-policy, token targets
    run = toyenv.rl(run.policy, beta=0.1, steps=200, seed=0)   # on-policy, verifier reward
    run.policy; run.snapshots; run.history

Learning rates: ``lr=None`` picks a default by policy kind (Adam; tabular logits move fast, the
transformer needs a smaller step). The value used is recorded in ``run.config["lr"]``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .exact import sample_from, sample_pairs_from_probs  # noqa: F401 (sample_from is part of this module's API)
from .losses import (dpo_loss, exact_rl_loss, group_advantages, loo_advantages,
                     policy_gradient_loss, sft_loss, soft_optimum_probs, soft_values)
from .policies import Policy, TabularPolicy, as_pairs, check_same_world, sequence_log_prob
from .train import Run, train

METHODS = {
    "sft": dict(provenance="off-policy", interface="token targets", survey="§4.1",
                paper="supervised fine-tuning / behaviour cloning (InstructGPT, Ouyang et al. 2022)"),
    "dpo": dict(provenance="off-policy", interface="preferences", survey="§4.2",
                paper="Direct Preference Optimization (Rafailov et al. 2023)"),
    "rft": dict(provenance="off-policy (self-generated, filtered once)", interface="verifier filter",
                survey="§4.3", paper="rejection-sampling fine-tuning (Yuan et al. 2023)"),
    "self-improve": dict(provenance="on-policy rounds (iterated offline)", interface="verifier filter",
                         survey="§4.3, §5.3", paper="STaR (Zelikman et al. 2022)"),
    "rl/reinforce": dict(provenance="on-policy", interface="verifier reward", survey="§5.1",
                         paper="REINFORCE with leave-one-out baseline (Williams 1992; RLOO, Ahmadian et al. 2024)"),
    "rl/grpo": dict(provenance="on-policy", interface="verifier reward", survey="§5.1",
                    paper="GRPO (Shao et al. 2024, DeepSeekMath); PPO clipping (Schulman et al. 2017)"),
    "rl/exact": dict(provenance="on-policy (exact expectation, no sampling)", interface="verifier reward",
                     survey="§5.1", paper="KL-regularised policy gradient, computed over the whole tree"),
    "rl/process": dict(provenance="on-policy", interface="process reward (exact per-state success value)",
                       survey="§5.2", paper="process supervision (Lightman et al. 2023); dense V(s') - V(s) advantages"),
    "rl/guided": dict(provenance="hybrid (off-policy hint prefixes, on-policy continuations)",
                      interface="verifier reward + hint prefixes", survey="§5.1, §7.1.2",
                      paper="hint-guided RL (e.g. LUFFY, Yan et al. 2025; QuestA 2025)"),
    "interleaved": dict(provenance="hybrid", interface="token targets + verifier reward", survey="§7.1.3",
                        paper="interleaved SFT and RL (e.g. ReLIFT, Ma et al. 2025)"),
}
"""Method name -> provenance, supervision interface, survey section, paper. ``Run.method`` is a key."""

_LR = {"sft": (0.1, 3e-3), "dpo": (0.1, 3e-3), "rl": (0.1, 3e-3), "rl/exact": (0.1, 3e-3)}


def _lr(policy: Policy, lr, kind: str) -> float:
    if lr is not None:
        return lr
    tab, other = _LR[kind]
    return tab if isinstance(policy, TabularPolicy) else other


def _check_policy(policy):
    if not isinstance(policy, Policy):
        raise TypeError(f"expected a policy (TabularPolicy, TransformerPolicy, ...), got {type(policy).__name__}; "
                        "build one with mdp.base_policy() or toyenv.TabularPolicy(mdp)")


# =========================================================================== batch builders
def demonstrations(mdp, n: int, seed: int = 0, prompts=None) -> list:
    """``n`` correct demonstrations ``[(prompt_index, tokens), ...]``, as ``sample()`` returns.

    Prompts are drawn from D(x) (or fixed by ``prompts``: an int or n ints); the completion is
    uniform among the correct completions of its prompt. Raises if a chosen prompt has none.
    """
    rng = np.random.default_rng(seed)
    if prompts is None:
        x = rng.choice(mdp.num_prompts, size=n, p=mdp.prompt_weights)
    else:
        x = np.broadcast_to(np.asarray(prompts, dtype=np.int64), (n,))
    cs, ca = np.nonzero(mdp.correct)
    by_prompt = {p: np.nonzero(mdp.prompt_of[cs] == p)[0] for p in range(mdp.num_prompts)}
    pick_s, pick_a = [], []
    for p in x:
        if not 0 <= p < mdp.num_prompts:
            raise ValueError(f"prompts must be indices in [0, {mdp.num_prompts}), got {p}")
        idx = by_prompt[int(p)]
        if len(idx) == 0:
            raise ValueError(f"prompt {p} ({mdp.prompts[p]!r}) has no correct completion to demonstrate")
        j = idx[rng.integers(len(idx))]
        pick_s.append(cs[j])
        pick_a.append(ca[j])
    return mdp.decode(pick_s, pick_a)


def paths(mdp, states, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Terminal pairs -> the full token path of each trajectory: ``(st [B, T], ac [B, T], mask [B, T])``.

    ``st[i, t]`` is the state at step t of trajectory i and ``ac[i, t]`` the token taken there;
    padding is -1 and ``mask`` is False on it.
    """
    s = np.asarray(states, dtype=np.int64)
    B, T = len(s), mdp.horizon
    st, ac = np.full((B, T), -1), np.full((B, T), -1)
    rows = np.arange(B)
    st[rows, mdp.depth[s]], ac[rows, mdp.depth[s]] = s, np.asarray(actions)
    cur = s.copy()
    for _ in range(T - 1):
        up = mdp.parent[cur] >= 0
        if not up.any():
            break
        r, c = rows[up], cur[up]
        par = mdp.parent[c]
        st[r, mdp.depth[par]], ac[r, mdp.depth[par]] = par, mdp.last_token[c]
        cur[up] = par
    return st, ac, st >= 0


def token_targets(mdp, states, actions, weights=None) -> np.ndarray:
    """Teacher-forcing targets ``[S, V]``: every token of every sequence, weighted ``weights/N``
    (default 1/N each), so that ``sft_loss`` is the mean negative log-likelihood."""
    st, ac, m = paths(mdp, states, actions)
    n = max(len(st), 1)
    w = np.full(len(st), 1.0 / n) if weights is None else np.asarray(weights, float) / n
    out = np.zeros((mdp.num_states, mdp.vocab_size))
    np.add.at(out, (st[m], ac[m]), np.broadcast_to(w[:, None], st.shape)[m])
    return out


def _token_logp(log_probs, st, ac, mask) -> torch.Tensor:
    """log pi of each path token ``[B, T]`` (0 on padding)."""
    lp = log_probs[torch.as_tensor(np.maximum(st, 0)), torch.as_tensor(np.maximum(ac, 0))]
    return lp * torch.as_tensor(mask, dtype=lp.dtype)


def _rewards_array(mdp, reward) -> np.ndarray:
    if reward is None:
        return mdp.rewards
    r = np.asarray(reward, float)
    if r.shape != (mdp.num_states, mdp.vocab_size):
        raise ValueError(f"reward must be an array [S, V] = {(mdp.num_states, mdp.vocab_size)} with "
                         f"values on terminal pairs (like mdp.rewards), got shape {r.shape}")
    return np.where(mdp.terminal, r, 0.0)


def preference_pairs(policy, n: int, seed: int = 0, reward=None, n_candidates: int = 4,
                     prompts=None) -> list:
    """Preference pairs from sampled candidates ranked by the verifier (or a given reward).

    For each of ``n`` prompts (from D(x), or fixed by ``prompts``), sample ``n_candidates``
    completions from ``policy``; the chosen one has the highest reward, the rejected one the
    lowest (ties broken at random). Prompts whose candidates all score the same give no pair, so
    fewer than ``n`` pairs may come back: a preference method is blind to what it never compares.

    Returns ``[(prompt_index, chosen_tokens, rejected_tokens), ...]``.
    """
    _check_policy(policy)
    mdp = policy.mdp
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2 to form a pair, got {n_candidates}")
    r = _rewards_array(mdp, reward)
    rng = np.random.default_rng(seed)
    x = rng.choice(mdp.num_prompts, size=n, p=mdp.prompt_weights) if prompts is None else \
        np.broadcast_to(np.asarray(prompts, dtype=np.int64), (n,))
    s, a = sample_pairs_from_probs(mdp, policy.probs(), n * n_candidates, seed=int(rng.integers(2**62)),
                                   prompts=np.repeat(x, n_candidates))
    s, a = s.reshape(n, n_candidates), a.reshape(n, n_candidates)
    rew = r[s, a] + 1e-9 * rng.random(s.shape)           # random tie-break among equal rewards
    out = []
    for i in range(n):
        if np.ptp(r[s[i], a[i]]) <= 0:
            continue
        w, l = int(np.argmax(rew[i])), int(np.argmin(rew[i]))
        (_, yw), (_, yl) = mdp.decode([s[i, w], s[i, l]], [a[i, w], a[i, l]])
        out.append((int(x[i]), yw, yl))
    return out


# =========================================================================== SFT (§4.1)
def _sft_objective(mdp, states, actions, batch_size):
    n = len(states)
    full = token_targets(mdp, states, actions)

    def objective(pi, log_probs, step, rng):
        if batch_size is None or batch_size >= n:
            targets = full
        else:
            idx = rng.choice(n, size=batch_size, replace=False)
            targets = token_targets(mdp, states[idx], actions[idx])
        return sft_loss(log_probs, targets)
    return objective


def sft(policy, demos, *, steps: int = 100, lr: float | None = None, batch_size: int | None = None,
        seed: int = 0, **train_options) -> Run:
    """Supervised fine-tuning: teacher-forced cross-entropy on demonstrations (survey §4.1).

    Provenance off-policy, interface token targets. ``demos``: ``[(prompt_index, tokens), ...]``
    as ``sample()`` and :func:`demonstrations` return (any completions, correct or not).
    ``batch_size=None`` uses all demonstrations each step; otherwise a minibatch drawn with ``seed``.
    ``train_options`` (snapshot_steps, num_snapshots, optimizer) go to :func:`train`.

    >>> run = toyenv.sft(base, toyenv.demonstrations(mdp, 32, seed=0), steps=100, seed=0)
    """
    _check_policy(policy)
    states, actions = as_pairs(policy.mdp, demos)
    if len(states) == 0:
        raise ValueError("demos is empty: pass at least one (prompt_index, tokens) demonstration")
    lr = _lr(policy, lr, "sft")
    config = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, n_demos=len(states))
    return train(policy, _sft_objective(policy.mdp, states, actions, batch_size), steps=steps, lr=lr,
                 seed=seed, method="sft", config=config, **train_options)


# =========================================================================== DPO (§4.2)
def dpo(policy, pairs=None, *, beta: float = 0.1, reference=None, steps: int = 100,
        lr: float | None = None, seed: int = 0, n_prompts: int = 64, n_candidates: int = 4,
        reward=None, batch_size: int | None = None, **train_options) -> Run:
    """Direct Preference Optimization on preference pairs (survey §4.2; Rafailov et al. 2023).

    Provenance off-policy, interface preferences. ``pairs``: ``[(prompt, chosen, rejected), ...]``;
    by default built by :func:`preference_pairs` from ``n_prompts`` prompts with ``n_candidates``
    samples of the input policy each, ranked by the verifier (or by ``reward [S, V]``).
    ``reference`` defaults to a frozen copy of the input policy.

    >>> run = toyenv.dpo(base, beta=0.1, steps=100, seed=0)
    """
    _check_policy(policy)
    mdp = policy.mdp
    ref = policy.frozen() if reference is None else reference
    check_same_world(mdp, ref.mdp, "reference policy")
    if pairs is None:
        pairs = preference_pairs(policy, n_prompts, seed=seed, reward=reward, n_candidates=n_candidates)
    if len(pairs) == 0:
        warnings.warn("dpo: no preference pairs (every candidate scored the same), so the policy will "
                      "not move; sample more candidates or use a graded reward", stacklevel=2)
    sw, aw = as_pairs(mdp, [(x, yw) for x, yw, _ in pairs]) if pairs else (np.zeros(0, int),) * 2
    sl, al = as_pairs(mdp, [(x, yl) for x, _, yl in pairs]) if pairs else (np.zeros(0, int),) * 2
    with torch.no_grad():
        ref_lp = ref.log_probs()
        ref_w, ref_l = sequence_log_prob(mdp, ref_lp, sw, aw), sequence_log_prob(mdp, ref_lp, sl, al)
    n = len(sw)

    def objective(pi, log_probs, step, rng):
        idx = np.arange(n) if batch_size is None or batch_size >= n else rng.choice(n, batch_size, replace=False)
        if n == 0:
            return 0.0 * log_probs.sum(), {"pref_acc": 0.0, "margin": 0.0}
        return dpo_loss(sequence_log_prob(mdp, log_probs, sw[idx], aw[idx]),
                        sequence_log_prob(mdp, log_probs, sl[idx], al[idx]),
                        ref_w[idx], ref_l[idx], beta=beta)

    lr = _lr(policy, lr, "dpo")
    config = dict(beta=beta, steps=steps, lr=lr, seed=seed, n_pairs=n, n_prompts=n_prompts,
                  n_candidates=n_candidates, batch_size=batch_size, reward_given=reward is not None)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="dpo", config=config,
                 reference=ref, **train_options)


# =========================================================================== RFT and STaR (§4.3)
def _correct_samples(policy, n, seed, reward=None):
    mdp = policy.mdp
    s, a = sample_pairs_from_probs(mdp, policy.probs(), n, seed=seed)
    ok = (_rewards_array(mdp, reward)[s, a] >= mdp.success_threshold) if reward is not None else mdp.correct[s, a]
    return s[ok], a[ok]


def rejection_sampling(policy, *, n_samples: int = 256, steps: int = 100, lr: float | None = None,
                       seed: int = 0, **train_options) -> Run:
    """Rejection-sampling fine-tuning (RFT): sample one fixed batch from the input policy, keep the
    correct completions, SFT on them (survey §4.3).

    Provenance: self-generated but offline (filtered once, then fixed). Interface: verifier filter.
    If no sample is correct the run keeps the policy unchanged (``config["kept"] == 0``): the
    filter cannot create what sampling never produced.
    """
    _check_policy(policy)
    s, a = _correct_samples(policy, n_samples, seed)
    if len(s) == 0:
        warnings.warn(f"rejection_sampling: none of {n_samples} samples is correct; the policy will not move",
                      stacklevel=2)
    lr = _lr(policy, lr, "sft")
    objective = _sft_objective(policy.mdp, s, a, None)
    config = dict(n_samples=n_samples, steps=steps, lr=lr, seed=seed, kept=len(s))
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="rft", config=config, **train_options)


def self_improve(policy, *, rounds: int = 4, n_samples: int = 128, steps_per_round: int = 25,
                 lr: float | None = None, seed: int = 0) -> Run:
    """Iterated self-improvement, STaR-style: each round samples from the *current* policy,
    keeps the correct completions and fine-tunes the current policy on them (survey §4.3, §5.3).

    Provenance: on-policy across rounds, offline within a round. Interface: verifier filter.
    The returned Run joins the rounds: steps count updates over all rounds, snapshots are kept at
    every round boundary, ``history["round"]`` says which round a row belongs to and
    ``config["kept"]`` lists the number of correct samples per round.
    """
    _check_policy(policy)
    lr = _lr(policy, lr, "sft")
    current, kept, runs = policy, [], []
    for k in range(rounds):
        s, a = _correct_samples(current, n_samples, seed + 1000 * k)
        kept.append(len(s))
        run = train(current, _sft_objective(policy.mdp, s, a, None), steps=steps_per_round, lr=lr,
                    seed=seed + k, num_snapshots=2)
        run.history["round"] = [float(k)] * len(run.history["step"])
        runs.append(run)
        current = run.policy
    config = dict(rounds=rounds, n_samples=n_samples, steps_per_round=steps_per_round, lr=lr, seed=seed, kept=kept)
    return _concat(runs, "self-improve", config)


def _concat(runs: list, method: str, config: dict) -> Run:
    """Join consecutive runs: steps are offset, the first row of each later run is dropped
    (it repeats the previous run's last row)."""
    history, snapshots, offset = {}, [], 0
    for i, run in enumerate(runs):
        start = 0 if i == 0 else 1
        for k, col in run.history.items():
            vals = [v + offset for v in col] if k == "step" else col
            history.setdefault(k, []).extend(vals[start:])
        snapshots += [(s + offset, p) for s, p in run.snapshots if i == 0 or s > 0]
        offset += run.history["step"][-1]
    return Run(runs[-1].policy, snapshots, history, method, config)


# =========================================================================== RL (§5.1, §5.2, §7.1.2)
def _hint_table(mdp, hints, rng_seed: int):
    """Per prompt, the hint tokens (a prefix of a correct answer), or None."""
    if hints is None:
        return None, 0.0
    if not isinstance(hints, dict):
        raise TypeError('hints must be a dict: {"prob": 0.5, "length": 1} or {prompt_index: hint_tokens}')
    if "prob" in hints or "length" in hints:
        prob, length = float(hints.get("prob", 0.5)), int(hints.get("length", 1))
        if not 0 <= prob <= 1 or length < 1:
            raise ValueError(f'hints need 0 <= prob <= 1 and length >= 1, got {hints!r}')
        demos = demonstrations(mdp, mdp.num_prompts, seed=rng_seed, prompts=np.arange(mdp.num_prompts))
        return {x: toks[: min(length, len(toks) - 1)] for x, toks in demos}, prob
    table = {}
    for x, toks in hints.items():
        toks = mdp._as_tokens(toks)
        mdp.state_index(int(x), toks)               # the hint must be an unfinished prefix
        table[int(x)] = toks
    return table, 1.0


def _rl_objective(mdp, *, beta, exact, algo, group_size, n_prompts_per_step, clip, epochs,
                  ref_lp, rewards, hints, process, learn_hint, seed):
    ref_t = torch.as_tensor(ref_lp)
    if exact:
        def objective(pi, log_probs, step, rng):
            return exact_rl_loss(mdp, log_probs, ref_t, rewards, beta=beta)
        return objective
    hint_table, hint_prob = _hint_table(mdp, hints, seed)
    batch = {}

    def new_batch(log_probs, rng):
        p = log_probs.detach().exp().numpy()
        x = rng.choice(mdp.num_prompts, size=n_prompts_per_step, p=mdp.prompt_weights)
        x = np.repeat(x, group_size)                                   # [G*K] prompts, grouped
        start, hint_len = mdp.roots[x].copy(), np.zeros(len(x), int)
        if hint_table:
            use = rng.random(len(x)) < hint_prob
            for i in np.nonzero(use)[0]:
                toks = hint_table.get(int(x[i]))
                if toks:
                    start[i], hint_len[i] = mdp.state_index(int(x[i]), toks), len(toks)
        s, a = sample_from(mdp, p, start, rng)
        st, ac, mask = paths(mdp, s, a)
        depth = np.arange(mdp.horizon)[None, :]
        train_mask = mask & ((depth >= hint_len[:, None]) | learn_hint)
        r = rewards[s, a]
        info = {"reward": float(r.mean())}
        if hint_table:
            info["hinted"] = float((hint_len > 0).mean())
            info["unhinted_reward"] = float(r[hint_len == 0].mean()) if np.any(hint_len == 0) else float("nan")
        if process:   # dense advantages from the exact (soft) values of the current policy, §5.2
            Q, V = soft_values(mdp, p, np.exp(ref_lp), rewards, beta)
            adv = np.where(mask, Q[np.maximum(st, 0), np.maximum(ac, 0)] - V[np.maximum(st, 0)], 0.0)
            info["zero_variance_groups"] = group_advantages(r.reshape(-1, group_size))[1]["zero_variance_groups"]
        else:
            fn = loo_advantages if algo == "reinforce" else group_advantages
            seq_adv, ginfo = fn(r.reshape(-1, group_size))
            info.update(ginfo)
            adv = np.repeat(seq_adv.reshape(-1, 1), mdp.horizon, 1).astype(float)
            if beta:   # KL(pi||pi_ref) by its score-function estimator: -beta * log-ratio to go
                lr_tok = np.where(mask, np.log(p[np.maximum(st, 0), np.maximum(ac, 0)]) -
                                  ref_lp[np.maximum(st, 0), np.maximum(ac, 0)], 0.0)
                adv = adv - beta * np.cumsum(lr_tok[:, ::-1], 1)[:, ::-1]
        batch.update(st=st, ac=ac, mask=train_mask, adv=adv,
                     old=_token_logp(log_probs.detach(), st, ac, train_mask), info=info)

    def objective(pi, log_probs, step, rng):
        if step % epochs == 0:
            new_batch(log_probs, rng)
        lp_tok = _token_logp(log_probs, batch["st"], batch["ac"], batch["mask"])
        loss, info = policy_gradient_loss(lp_tok, batch["adv"], batch["mask"], old_logp_tok=batch["old"],
                                          clip=clip)
        return loss, {**batch["info"], **info}
    return objective


def _rl_method(exact, process, hints, algo):
    if exact:
        return "rl/exact"
    if process:
        return "rl/process"
    if hints is not None:
        return "rl/guided"
    return f"rl/{algo}"


def rl(policy, *, beta: float = 0.1, exact: bool = False, steps: int = 200, lr: float | None = None,
       seed: int = 0, algo: str = "grpo", group_size: int = 8, n_prompts_per_step: int = 8,
       clip: float | None = None, epochs: int = 1, reference=None, reward=None, hints=None,
       process: bool = False, learn_hint: bool = False, **train_options) -> Run:
    """On-policy RL with a verifier reward and a KL penalty: maximise ``E[r] - beta·KL(pi || pi_ref)``
    (survey §5.1).

    Args:
        beta: KL weight; ``reference`` (default: frozen input policy) is pi_ref.
        exact: use the exact expected gradient over the whole tree (no sampling) instead of rollouts.
        algo: "grpo" (group advantages (r - mean)/std) or "reinforce" (leave-one-out baseline,
            unbiased). Each step samples ``n_prompts_per_step`` prompts from D(x) and ``group_size``
            rollouts for each. A group whose rewards are all equal gets zero advantage: the fraction
            is logged as ``zero_variance_groups``. The KL term enters every token as
            ``-beta·(log-ratio to go)``, an unbiased estimate of its gradient. GRPO divides the
            task advantage by the group std (often < 0.5 for 0/1 rewards), so the same beta
            restrains GRPO less than REINFORCE or ``exact=True``.
        clip, epochs: PPO-style ratio clipping with ``epochs`` updates per sampled batch.
        reward: ``[S, V]`` terminal rewards (default ``mdp.rewards``, the verifier).
        process: process-reward RL (§5.2): per-token advantage ``Q(s_t, a_t) - V(s_t)`` from the exact
            values of the current policy (with beta = 0: V(s_{t+1}) - V(s_t) of
            :func:`toyenv.success_value`), a dense step reward instead of one outcome per rollout.
        hints: guided RL (§5.1, §7.1.2): ``{"prob": 0.5, "length": 1}`` forces the first ``length``
            tokens of a correct answer at the start of a fraction ``prob`` of rollouts, or
            ``{prompt_index: hint_tokens}`` forces those prefixes on every rollout of those prompts.
            Hint tokens are off-policy and excluded from the loss unless ``learn_hint=True``.
        train_options: snapshot_steps, num_snapshots, optimizer (passed to :func:`train`).

    >>> run = toyenv.rl(base, beta=0.1, exact=False, steps=200, seed=0)
    """
    _check_policy(policy)
    mdp = policy.mdp
    if algo not in ("grpo", "reinforce"):
        raise ValueError(f"algo must be 'grpo' or 'reinforce', got {algo!r}")
    if beta < 0:
        raise ValueError(f"beta is a KL weight and must be >= 0, got {beta!r}")
    if exact and (process or hints is not None):
        raise ValueError("exact=True already uses every trajectory; process and hints apply to sampled RL")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (a group baseline needs two rollouts), got {group_size}")
    ref = policy.frozen() if reference is None else reference
    check_same_world(mdp, ref.mdp, "reference policy")
    with torch.no_grad():
        ref_lp = ref.log_probs().numpy()
    objective = _rl_objective(mdp, beta=beta, exact=exact, algo=algo, group_size=group_size,
                              n_prompts_per_step=n_prompts_per_step, clip=clip, epochs=max(int(epochs), 1),
                              ref_lp=ref_lp, rewards=_rewards_array(mdp, reward), hints=hints,
                              process=process, learn_hint=learn_hint, seed=seed)
    lr = _lr(policy, lr, "rl/exact" if exact else "rl")
    config = dict(beta=beta, exact=exact, steps=steps, lr=lr, seed=seed, algo=algo, group_size=group_size,
                  n_prompts_per_step=n_prompts_per_step, clip=clip, epochs=epochs, process=process,
                  hints=hints, learn_hint=learn_hint, reward_given=reward is not None)
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method=_rl_method(exact, process, hints, algo),
                 config=config, reference=ref, **train_options)


# =========================================================================== interleaved (§7.1.3)
def interleaved(policy, demos, *, mix: float = 0.5, steps: int = 200, beta: float = 0.1,
                lr: float | None = None, seed: int = 0, algo: str = "grpo", group_size: int = 8,
                n_prompts_per_step: int = 8, batch_size: int | None = None, reference=None,
                **train_options) -> Run:
    """Interleaved SFT + RL with one loss: ``mix·SFT + (1 - mix)·RL`` every step (survey §7.1.3).

    Provenance hybrid (demonstrations and own rollouts); interface token targets + verifier
    reward. ``mix = 1`` is SFT, ``mix = 0`` is sampled RL. The history logs both parts
    (``sft_loss``, ``rl_loss``).
    """
    _check_policy(policy)
    if not 0 <= mix <= 1:
        raise ValueError(f"mix must lie in [0, 1], got {mix!r}")
    mdp = policy.mdp
    states, actions = as_pairs(mdp, demos)
    ref = policy.frozen() if reference is None else reference
    with torch.no_grad():
        ref_lp = ref.log_probs().numpy()
    sft_obj = _sft_objective(mdp, states, actions, batch_size)
    rl_obj = _rl_objective(mdp, beta=beta, exact=False, algo=algo, group_size=group_size,
                           n_prompts_per_step=n_prompts_per_step, clip=None, epochs=1, ref_lp=ref_lp,
                           rewards=mdp.rewards, hints=None, process=False, learn_hint=False, seed=seed)

    def objective(pi, log_probs, step, rng):
        l_sft, i_sft = sft_obj(pi, log_probs, step, rng)
        l_rl, i_rl = rl_obj(pi, log_probs, step, rng)
        return mix * l_sft + (1 - mix) * l_rl, {**i_sft, **i_rl, "sft_loss": float(l_sft.detach()),
                                                "rl_loss": float(l_rl.detach())}

    lr = _lr(policy, lr, "rl")
    config = dict(mix=mix, steps=steps, beta=beta, lr=lr, seed=seed, algo=algo, group_size=group_size,
                  n_prompts_per_step=n_prompts_per_step, batch_size=batch_size, n_demos=len(states))
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="interleaved", config=config,
                 reference=ref, **train_options)


# =========================================================================== closed form
def kl_optimum(reference, beta: float, reward=None) -> TabularPolicy:
    """The exact maximiser of ``E[r] - beta·KL(pi || reference)``: pi* ∝ reference·exp(r/beta)
    at the sequence level, as a tabular policy (survey §5.1; the DPO optimum, §4.2)."""
    _check_policy(reference)
    mdp = reference.mdp
    return TabularPolicy.from_probs(mdp, soft_optimum_probs(mdp, reference.probs(), _rewards_array(mdp, reward), beta))
