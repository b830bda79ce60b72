"""Running a learner's *training step* inside a check (exercise kind "step").

A step exercise asks for ``step(policy, optimizer, *batch) -> loss``: compute a loss on the batch,
back-propagate, update the parameters with the optimizer, return the loss. A check cannot compare
a return value alone, it has to see what the step did to the policy, so it

* gives the learner's step a fresh trainable copy of a policy and a fresh optimizer (Adam or SGD),
* runs one or more updates on fixed batches (several updates in a row catch a step that never
  clears the gradients),
* runs the reference step, and the step of every typical mistake, the same way on their own copies,
* compares the learner's parameters after the updates with the reference's, naming the mistake
  whose parameters the learner's match.

:meth:`Case.call <toyenv.course.checks.framework.Case.call>` deep-copies the arguments of the
learner's function so that a function writing into its input cannot change the next case; a step
*must* change its policy and optimizer, so those two are passed through uncopied (:func:`_shared`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .framework import Case, Failed, _as_array, compare

_SHARED: dict = {}


def _shared(obj):
    """Make ``obj`` come through ``copy.deepcopy`` as itself (for one :meth:`Case.call`): its class
    becomes a subclass of the same name whose ``__deepcopy__`` returns the object. :func:`_unshared`
    undoes it."""
    cls = type(obj)
    if cls in _SHARED.values():
        return obj
    sub = _SHARED.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls,), {"__deepcopy__": lambda self, memo: self,
                                          "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _SHARED[cls] = sub
    obj.__class__ = sub
    return obj


def _unshared(obj):
    if type(obj) in _SHARED.values():
        obj.__class__ = type(obj).__mro__[1]
    return obj


def optimizer_maker(kind: str, lr: float) -> Callable:
    """``params -> optimizer``: a fresh ``torch.optim.Adam`` or ``torch.optim.SGD``."""
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[kind]
    return lambda params: cls(params, lr=lr)


def trainable_copy(policy):
    pi = policy.copy()
    for p in pi.parameters():
        p.requires_grad_(True)
    return pi


def flat_parameters(policy) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel().copy() for p in policy.parameters()])


def run_reference(step: Callable, policy, make_opt: Callable, batches) -> tuple:
    """Run ``step`` (a package function, outside any check) on a fresh copy: (returns, parameters)."""
    pi = trainable_copy(policy)
    opt = make_opt(pi.parameters())
    outs = [step(pi, opt, *b) for b in batches]
    return outs, flat_parameters(pi)


def run_learner(fn: Callable, name: str, policy, make_opt: Callable, batches, errors=None) -> tuple:
    """Run the learner's step through :meth:`Case.call` (own work only, time limit, readable errors),
    one call per batch, on a fresh copy of ``policy``: (returns, parameters after the last update)."""
    pi = trainable_copy(policy)
    opt = make_opt(pi.parameters())
    outs = []
    for i, batch in enumerate(batches):
        label = name if len(batches) == 1 else f"{name} (update {i + 1} of {len(batches)})"
        case = Case(label, (_shared(pi), _shared(opt)) + tuple(batch), errors=dict(errors or {}))
        try:
            got = case.call(fn)
        finally:
            _unshared(pi)
            _unshared(opt)
        loss = _as_array(got, np.float64(0.0), case, "the loss your step returned")
        if loss.size != 1 or not np.issubdtype(loss.dtype, np.number):
            raise Failed(f"your step returned {type(got).__name__} of shape {loss.shape} on {label}; return the "
                         "loss of the batch as a single number (e.g. float(loss))")
        outs.append(float(loss.ravel()[0]))
    return outs, flat_parameters(pi)


def compare_update(fn: Callable, name: str, policy, make_opt: Callable, batches, reference: Callable,
                   mistakes: dict, *, rtol: float = 1e-5, atol: float = 1e-8, errors=None,
                   not_finite: str | None = None) -> None:
    """Fail with a targeted hint unless the learner's step leaves ``policy``'s parameters where the
    reference step leaves them after the same updates. ``mistakes``: {hint: a wrong step}."""
    start = flat_parameters(policy)
    _, expected = run_reference(reference, policy, make_opt, batches)
    _, got = run_learner(fn, name, policy, make_opt, batches, errors)
    case = Case(name)
    if not np.all(np.isfinite(got)) and not_finite:
        raise Failed(f"{not_finite} (seen on {name})")
    if np.allclose(got, expected, rtol=rtol, atol=atol):
        return
    wrong = {}                                  # only a wrong answer pays for running the mistakes
    for hint, step in mistakes.items():
        try:
            wrong[hint] = run_reference(step, policy, make_opt, batches)[1]
        except Exception:  # noqa: BLE001 - a mistake that cannot run on this case is not a candidate
            continue
    if not np.allclose(got, expected, rtol=rtol, atol=atol) and np.allclose(got, start, rtol=0, atol=0) \
            and not np.allclose(expected, start, rtol=0, atol=0):
        raise Failed(f"your step did not change the parameters on {name}: after loss.backward() (which only "
                     "computes the gradients), optimizer.step() applies the update")
    compare(got, expected, case=case, what="the parameters after your update", rtol=rtol, atol=atol,
            mistakes=wrong,
            diagnose=lambda g: (f"Your update moved the parameters by {np.abs(g - start).max():.3g} at most, "
                                f"the reference by {np.abs(expected - start).max():.3g}."))
