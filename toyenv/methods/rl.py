"""On-policy RL with a verifier reward (survey §5.1-§5.2), hint-guided RL (§7.1.2), interleaved
SFT + RL (§7.1.3) and the closed-form KL-regularised optimum."""
from __future__ import annotations

import numpy as np
import torch

from .data import _rewards_array, demonstrations
from .sft import _sft_objective
from .loop import Run, check_policy, default_lr, train
from .losses import (exact_rl_loss, group_advantages, loo_advantages, policy_gradient_loss,
                     soft_optimum_probs, soft_values, token_logp)
from ..core.policies import TabularPolicy, as_pairs
from ..core.tree import check_same_world, paths, sample_from



# =========================================================================== batch builders


# =========================================================================== SFT (§4.1)


# =========================================================================== DPO (§4.2)


# =========================================================================== RFT and STaR (§4.3)


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
                     old=token_logp(log_probs.detach(), st, ac, train_mask), info=info)

    def objective(pi, log_probs, step, rng):
        if step % epochs == 0:
            new_batch(log_probs, rng)
        lp_tok = token_logp(log_probs, batch["st"], batch["ac"], batch["mask"])
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
    check_policy(policy)
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
    lr = default_lr(policy, lr, "rl/exact" if exact else "rl")
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
    check_policy(policy)
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

    lr = default_lr(policy, lr, "rl")
    config = dict(mix=mix, steps=steps, beta=beta, lr=lr, seed=seed, algo=algo, group_size=group_size,
                  n_prompts_per_step=n_prompts_per_step, batch_size=batch_size, n_demos=len(states))
    return train(policy, objective, steps=steps, lr=lr, seed=seed, method="interleaved", config=config,
                 reference=ref, **train_options)


# =========================================================================== closed form
def kl_optimum(reference, beta: float, reward=None) -> TabularPolicy:
    """The exact maximiser of ``E[r] - beta·KL(pi || reference)``: pi* ∝ reference·exp(r/beta)
    at the sequence level, as a tabular policy (survey §5.1; the DPO optimum, §4.2)."""
    check_policy(reference)
    mdp = reference.mdp
    return TabularPolicy.from_probs(mdp, soft_optimum_probs(mdp, reference.probs(), _rewards_array(mdp, reward), beta))
