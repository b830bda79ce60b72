"""One training loop for every method (survey §4-§5): a loss function in, a :class:`Run` out.

Every method in :mod:`toyenv.methods` is "build the batch its loss needs, then call :func:`train`".
The loop copies the input policy (the input is never changed), runs Adam or SGD on the copy, and
records, at every step, the loss, the objective's own metrics and a few exact metrics of the
current policy (success probability, KL to the starting policy and to a reference). Frozen copies
taken at chosen steps make before/after comparisons and scrubbing through training free.
"""
from __future__ import annotations

import bisect
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..core.exact import kl_from_probs, success_from_probs
from ..core.passes import reach_from_probs
from ..core.policies import Policy, TabularPolicy
from ..core.tree import check_same_world

Objective = Callable[[Policy, torch.Tensor, int, np.random.Generator], tuple]


@dataclass(eq=False)
class Run:
    """The result of a training run. ``run.policy`` is a trained copy, never the input policy.

    Attributes:
        policy: the final policy (after ``steps`` updates).
        snapshots: ``[(step, frozen copy), ...]`` in increasing step order, always holding step 0
            (the starting policy) and the final step.
        history: ``{"step": [...], "loss": [...], "success": [...], "kl_to_start": [...], ...}``;
            every list has one entry per logged step. Row ``t`` describes the policy after ``t``
            updates (the same policy as ``run.at(t)``) and the loss evaluated on it.
        method: name of the method, a key of ``toyenv.methods.METHODS`` (e.g. "sft", "rl/grpo").
        config: the keyword arguments the method was called with.
        artifacts: what the method built besides the policy, by name (e.g. ``"reward_model"``, the
            :class:`toyenv.RewardModel` that :func:`toyenv.rlhf` trained against); empty for most.
    """

    policy: Policy
    snapshots: list
    history: dict
    method: str = ""
    config: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)

    def at(self, step: int) -> Policy:
        """The snapshot at the largest recorded step ``<= step``, for ``0 <= step <= last step``.

        A step the run never took raises: ask for one in ``[0, run.steps[-1]]`` (``run.policy`` is
        the final policy). Between snapshots the earlier one is returned; pass ``snapshot_steps`` to
        the method to keep the steps you want to read.
        """
        last = self.steps[-1]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an integer in [0, {last}], got {step!r}")
        if not 0 <= step <= last:
            raise ValueError(f"step {step} was never taken: this run has steps 0 to {last}; ask for a "
                             f"step in [0, {last}] (run.policy is the final policy)")
        i = bisect.bisect_right(self.steps, step) - 1
        return self.snapshots[i][1]

    @property
    def steps(self) -> list:
        """The steps at which snapshots were taken."""
        return [s for s, _ in self.snapshots]

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if k != "step" and v}
        return f"Run({self.method!r}, {len(self.history.get('step', [])) - 1} steps, final {last})"


def _snapshot_steps(steps: int, snapshot_steps, num_snapshots: int) -> set:
    if snapshot_steps is None:
        check_count(num_snapshots, "num_snapshots", minimum=2,
                    fix="how many evenly spaced frozen copies to keep (the start and the end at least)")
        chosen = np.round(np.linspace(0, steps, max(int(num_snapshots), 2))).astype(int)
    else:
        chosen = np.asarray(list(snapshot_steps))
        if chosen.size and not np.issubdtype(chosen.dtype, np.integer):
            raise ValueError(f"snapshot_steps must be integers in [0, steps={steps}], got {list(chosen)}")
        chosen = chosen.astype(int)
        if np.any((chosen < 0) | (chosen > steps)):
            raise ValueError(f"snapshot_steps must lie in [0, steps={steps}], got {sorted(chosen)}")
    return set(chosen.tolist()) | {0, steps}


@contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block, then restore the setting.

    The policies here are tiny: splitting their matrix products over threads only adds
    synchronisation, and on a busy 2-core machine two threads were measured 10-15x slower than one
    (tests/benchmarks/bench_methods_m2.py).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(policy: Policy, objective: Objective, *, steps: int, lr: float, seed: int = 0,
          snapshot_steps=None, num_snapshots: int = 21, method: str = "", config: dict | None = None,
          reference: Policy | None = None, optimizer: str = "adam") -> Run:
    """Minimise ``objective`` on a copy of ``policy`` for ``steps`` updates; return a :class:`Run`.

    Args:
        policy: the starting policy (tabular or transformer); it is copied, never changed.
        objective: ``objective(pi, log_probs, step, rng) -> (loss, info)``. ``pi`` is the trainable
            copy, ``log_probs = pi.log_probs()`` ([S, V], with grad) computed once per step, ``rng``
            a numpy Generator seeded from ``seed`` (draw batches from it), ``loss`` a torch scalar,
            ``info`` a dict of floats that is logged.
        steps: number of optimiser updates. lr: learning rate.
        seed: seeds ``rng``; the same seed gives the same run.
        snapshot_steps: steps at which to keep a frozen copy; default ``num_snapshots`` evenly
            spaced steps. Step 0 and the final step are always kept.
        reference: if given, ``kl_to_ref`` = exact KL(pi || reference) is logged as well.
        optimizer: "adam" or "sgd".
    """
    check_policy(policy)
    check_count(steps, "steps", minimum=0, fix="the number of optimiser updates, e.g. steps=100")
    check_positive(lr, "lr", fix="a learning rate such as lr=0.1 (tabular) or 3e-3 (transformer)")
    check_choice(optimizer, "optimizer", ("adam", "sgd"))
    if not callable(objective):
        raise TypeError(f"objective must be a function objective(pi, log_probs, step, rng) -> (loss, info), "
                        f"got {type(objective).__name__}")
    mdp = policy.mdp
    if reference is not None:
        check_same_world(mdp, reference.mdp, "reference policy")
    keep = _snapshot_steps(int(steps), snapshot_steps, num_snapshots)
    pi = policy.copy()
    for prm in pi.parameters():
        prm.requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(pi.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    p_start = policy.probs()
    p_ref = None if reference is None else reference.probs()
    history, snapshots = {"step": []}, []
    with single_thread():                          # tiny models: extra threads only add overhead
        for step in range(int(steps) + 1):          # the last pass only evaluates the final policy
            log_probs = pi.log_probs()                  # [S, V]
            loss, info = objective(pi, log_probs, step, rng)
            p = log_probs.detach().exp().numpy()
            r = reach_from_probs(mdp, p)                # one forward pass for the three metrics
            row = {"loss": float(loss.detach()), **{k: float(v) for k, v in info.items()},
                   "success": float(mdp.prompt_weights @ success_from_probs(mdp, p, r)),
                   "kl_to_start": kl_from_probs(mdp, p, p_start, reach=r)}
            if p_ref is not None:
                row["kl_to_ref"] = kl_from_probs(mdp, p, p_ref, reach=r)
            _log(history, step, row)
            if step in keep:
                snapshots.append((step, pi.frozen()))
            if step == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
    return Run(pi, snapshots, history, method, dict(config or {}))


def _log(history: dict, step: int, row: dict):
    """Append one row; a metric that appears late is padded with NaN before, a missing one after."""
    n = len(history["step"])
    history["step"].append(step)
    for k, v in row.items():
        history.setdefault(k, [math.nan] * n).append(v)
    for k, col in history.items():
        if len(col) == n:
            col.append(math.nan)


_LR = {"sft": (0.1, 3e-3), "dpo": (0.1, 3e-3), "rl": (0.1, 3e-3), "rl/exact": (0.1, 3e-3),
       "distill": (0.05, 3e-3)}


def default_lr(policy: Policy, lr, kind: str) -> float:
    """``lr`` if given, else the method family's default for a tabular or a neural policy."""
    if lr is not None:
        return lr
    tab, other = _LR[kind]
    return tab if isinstance(policy, TabularPolicy) else other


# --------------------------------------------------------------------------- validators
# Errors are part of the interface: every public method checks its arguments here, before any work,
# and the message names the bad value and the fix.
def check_policy(policy, what: str = "policy"):
    """Raise a TypeError naming the fix unless ``policy`` is a toyenv policy."""
    if not isinstance(policy, Policy):
        raise TypeError(f"expected a policy (TabularPolicy, TransformerPolicy, ...) for {what}, got "
                        f"{type(policy).__name__}; build one with mdp.base_policy() or toyenv.TabularPolicy(mdp)")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _number(value, name: str, fix: str) -> float:
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}{'; ' + fix if fix else ''}")
    return float(value)


def check_positive(value, name: str, *, fix: str = "") -> float:
    """A finite number > 0 (a learning rate, a DPO ``beta``, ...); returns it as a float."""
    v = _number(value, name, fix)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}{'; ' + fix if fix else ''}")
    return v


def check_nonnegative(value, name: str, *, fix: str = "") -> float:
    """A finite number >= 0 (a KL weight ``beta``, a clip range, ...); returns it as a float."""
    v = _number(value, name, fix)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}{'; ' + fix if fix else ''}")
    return v


def check_fraction(value, name: str, *, fix: str = "") -> float:
    """A number in [0, 1] (a mixing weight, a probability); returns it as a float."""
    v = _number(value, name, fix)
    if not 0.0 <= v <= 1.0:                                     # also False for nan
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}{'; ' + fix if fix else ''}")
    return v


def check_count(value, name: str, *, minimum: int = 1, fix: str = "") -> int:
    """An integer >= ``minimum`` (steps, sample sizes, group sizes); returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise (TypeError if not _is_number(value) else ValueError)(
            f"{name} must be an integer >= {minimum}, got {value!r}{'; ' + fix if fix else ''}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}{'; ' + fix if fix else ''}")
    return int(value)


def check_optional_count(value, name: str, *, minimum: int = 1, fix: str = ""):
    """None, or an integer >= ``minimum`` (e.g. ``batch_size=None`` for the full batch)."""
    return None if value is None else check_count(value, name, minimum=minimum, fix=fix)


def check_choice(value, name: str, choices):
    """One of ``choices``; the error lists them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


LOOP_OPTIONS = ("snapshot_steps", "num_snapshots", "optimizer")
"""The options of :func:`train` every method passes through, besides ``steps``, ``lr`` and ``seed``."""


def check_loop_options(steps, lr, seed, train_options: dict):
    """Validate the loop's options before a method does any work (sampling, building targets).

    ``lr=None`` means "the method's default". Unknown keys in ``train_options`` raise a TypeError
    listing the accepted ones.
    """
    unknown = sorted(set(train_options) - set(LOOP_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))}; besides its own options a method "
                        f"accepts steps, lr, seed and {', '.join(LOOP_OPTIONS)}")
    check_count(steps, "steps", minimum=0, fix="the number of optimiser updates, e.g. steps=100")
    if lr is not None:
        check_positive(lr, "lr", fix="a learning rate such as lr=0.1 (tabular) or 3e-3 (transformer), "
                                     "or lr=None for the method's default")
    check_count(seed, "seed", minimum=0, fix="an integer such as seed=0")
    if "optimizer" in train_options:
        check_choice(train_options["optimizer"], "optimizer", ("adam", "sgd"))
    if train_options.get("snapshot_steps") is not None:
        _snapshot_steps(int(steps), train_options["snapshot_steps"], 2)
    elif "num_snapshots" in train_options:
        _snapshot_steps(int(steps), None, train_options["num_snapshots"])
