"""Exercise checks: one per exercise, each runs the learner's function against the package.

A check takes the learner's function, calls it on several cases (edge cases included), compares
each answer with the package's exact reference and prints exactly one line::

    [exercise 02.1] passed: <what was checked>
    [exercise 02.1] failed: <a specific hint>
    [exercise 02.1] not attempted: <how to start>

and returns a :class:`CheckResult`. A wrong answer is diagnosed, not guessed: the check computes
the answer each typical mistake would give (forgot D(x), forgot 1/T(y), ``>`` instead of ``>=``,
...) and names the mistake whose answer the learner's matches. An exception raised by the learner's
function becomes a "failed" line naming the exception and the case; a function that still raises
``NotImplementedError`` (the learner edition's stub) gives "not attempted", so Run All never stops.

Use from a notebook::

    from toyenv.course import checks
    checks.check("02.1", occupancy_from_trajectories)

Add a check for a new exercise in ``toyenv/course/checks/nbNN.py`` (the same style everywhere)::

    from .framework import Case, compare, exercise

    @exercise("05.1", notebook="05_on_policy_rl", title="Exact pass@k",
              start="return sum_x D(x) * (1 - (1 - p_x)**k)")
    def _(fn):
        for case in [Case("many-paths base, k=1", (p, w, 1)), ...]:
            got = case.call(fn)
            compare(got, expected, case=case, mistakes={"you forgot D(x)": wrong_value})
        return "pass@k on 3 worlds, k = 1 and k = 256"

``EXERCISES`` maps every registered id to ``{"notebook": stem, "title": title}``; a grader reads it.

Under ``toyenv.grade`` each verdict also goes to the grader through ``toyenv.course.channel`` (a
signed record in a file only the grader reads); the printed line is then just for people.
"""
from __future__ import annotations

import copy
import functools
import re
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from toyenv.core.tree import TokenMDP
from toyenv.course.channel import report_verdict

STATUSES = ("passed", "failed", "not attempted")

EXERCISES: dict[str, dict] = {}
"""id ("NN.k") -> {"notebook": notebook stem, "title": short title}. Filled by :func:`exercise`."""

_CHECKS: dict[str, Callable] = {}
_LINE = re.compile(r"^\[exercise (\d\d\.\d+)\] (passed|failed|not attempted): (.*)$")


# ------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check. ``status`` is one of ``STATUSES``; ``line()`` is what was printed."""

    id: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def line(self) -> str:
        return f"[exercise {self.id}] {self.status}: {self.message}"

    def __str__(self):
        return self.line()

    def _ipython_display_(self):
        # The check has already printed its line; showing the result again would say it twice.
        pass


def parse_line(line: str) -> CheckResult | None:
    """Inverse of :meth:`CheckResult.line`: a printed check line -> CheckResult (None if not one)."""
    m = _LINE.match(line.strip())
    return CheckResult(*m.groups()) if m else None


class Failed(Exception):
    """Raised inside a check body: the learner's answer is wrong; the message is the hint."""


class NotAttempted(Exception):
    """Raised when the learner's function still raises NotImplementedError."""


# ------------------------------------------------------------------------------- cases
_TIMEOUT_S = 30.0


class _Timeout(BaseException):
    pass


@dataclass
class Case:
    """One call of the learner's function: a readable name (used in hints) and the arguments.

    ``errors`` maps an exception type to a hint appended when the learner's function raises it
    (e.g. ``{ZeroDivisionError: "T(y) counts the end token too"}``).
    """

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    def call(self, fn: Callable, timeout: float = _TIMEOUT_S):
        """Call ``fn`` on (copies of) the arguments; turn every failure into a hint.

        Arrays and occupancies are copied, so a function that writes into its input cannot change
        the next case; worlds (TokenMDP) are shared, they are never written to.
        """
        memo = {}
        for x in list(self.args) + list(self.kwargs.values()):
            _share_worlds(x, memo)
        args = copy.deepcopy(self.args, memo)
        kwargs = copy.deepcopy(self.kwargs, memo)
        try:
            with _time_limit(timeout):
                return fn(*args, **kwargs)
        except NotImplementedError:
            raise NotAttempted() from None
        except _Timeout:
            raise Failed(f"your function ran for more than {timeout:.0f} s on {self.name}: is there a "
                         "loop that never ends (e.g. a while loop whose variable never changes)?") from None
        except Exception as e:  # noqa: BLE001 - any learner error becomes a hint
            extra = next((h for t, h in self.errors.items() if isinstance(e, t)), "")
            raise Failed(f"your function raised {type(e).__name__}: {_short(e)} on {self.name}"
                         + (f". {extra}" if extra else "")) from None


def _share_worlds(x, memo):
    """Make deepcopy reuse TokenMDP objects (they are read-only and not cheap to copy)."""
    if isinstance(x, TokenMDP):
        memo[id(x)] = x
    mdp = getattr(x, "mdp", None)
    if isinstance(mdp, TokenMDP):
        memo[id(mdp)] = mdp


class _time_limit:
    """Interrupt the learner's function after ``seconds`` (main thread on Unix only; else no limit)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.active = (hasattr(signal, "setitimer") and seconds
                       and threading.current_thread() is threading.main_thread())

    def __enter__(self):
        if self.active:
            def handler(signum, frame):
                raise _Timeout()
            self.old = signal.signal(signal.SIGALRM, handler)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
        return False


def _short(e: BaseException, limit: int = 200) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else "(no message)"
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ------------------------------------------------------------------------------- comparing
def _as_array(got, expected: np.ndarray, case: Case, what: str) -> np.ndarray:
    if hasattr(got, "detach"):                       # a torch tensor
        got = got.detach().cpu().numpy()
    if got is None:
        raise Failed(f"{what} is None on {case.name}: did you forget to `return` the result?")
    try:
        arr = np.asarray(got)
    except Exception:  # noqa: BLE001
        raise Failed(f"{what} on {case.name} is a {type(got).__name__}, which is not a number or an "
                     f"array; return {_describe_expected(expected)}") from None
    if arr.dtype == object:
        raise Failed(f"{what} on {case.name} could not be read as numbers ({type(got).__name__}); "
                     f"return {_describe_expected(expected)}")
    return arr


def _describe_expected(expected: np.ndarray) -> str:
    if expected.ndim == 0:
        return "a single number"
    kind = "boolean mask" if expected.dtype == bool else "array"
    return f"a {kind} of shape {expected.shape}"


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    if a.shape != b.shape:
        return False
    if b.dtype == bool or a.dtype == bool:
        return a.dtype != object and np.array_equal(a.astype(bool), b.astype(bool)) and \
            np.all(np.isin(a, [0, 1]))
    with np.errstate(invalid="ignore"):
        return bool(np.allclose(a.astype(float), b.astype(float), rtol=rtol, atol=atol, equal_nan=True))


def compare(got, expected, *, case: Case, what: str = "your answer", rtol: float = 1e-7,
            atol: float = 1e-12, mistakes=(), where: Callable | None = None,
            diagnose: Callable | None = None) -> None:
    """Raise :class:`Failed` with a targeted hint unless ``got`` matches ``expected``.

    Args:
        got: the learner's answer (number, array, tensor, bool mask).
        expected: the reference answer.
        case: the case it came from (its name goes into the hint).
        mistakes: ``{hint: wrong_answer}`` (or ``[(hint, wrong_answer), ...]``): the answer each
            typical mistake gives on this case. The first one ``got`` matches names the mistake.
            Mistakes whose answer equals the reference on this case are skipped.
        where: ``index tuple -> str`` naming an entry of an array (e.g. a state and a token).
        diagnose: ``got -> str | None``, extra facts about a wrong answer (e.g. "it sums to 2.3").
    """
    expected = np.asarray(expected)
    arr = _as_array(got, expected, case, what)
    if _close(arr, expected, rtol, atol):
        return
    items = mistakes.items() if isinstance(mistakes, dict) else mistakes
    for hint, wrong in items:
        wrong = np.asarray(wrong)
        if not _close(wrong, expected, rtol, atol) and _close(arr, wrong, rtol, atol):
            raise Failed(f"{hint} (seen on {case.name})")
    if arr.shape != expected.shape:
        raise Failed(f"{what} on {case.name} has shape {arr.shape}; expected "
                     f"{_describe_expected(expected)}")
    extra = diagnose(arr) if diagnose is not None else None
    extra = f" {extra}" if extra else ""
    if expected.dtype == bool:
        if arr.dtype != bool and not np.all(np.isin(arr, [0, 1])):
            odd = arr[~np.isin(arr, [0, 1])].flat[0]
            raise Failed(f"{what} on {case.name} holds values other than True/False (e.g. {odd:.6g}); "
                         f"return a boolean mask, such as the result of a comparison `values >= threshold`"
                         f"{extra}")
        a = arr.astype(bool)
        bad = np.argwhere(a != expected)
        idx = tuple(bad[0])
        loc = where(idx) if where else f"index {idx}"
        raise Failed(f"{what} on {case.name} differs at {len(bad)} of {expected.size} entries; e.g. at "
                     f"{loc} yours is {bool(a[idx])}, expected {bool(expected[idx])}.{extra}")
    a = arr.astype(float)
    e = expected.astype(float)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))
        idx = tuple(bad[0])
        loc = where(idx) if (where and idx) else (f"index {idx}" if idx else "")
        raise Failed(f"{what} on {case.name} contains inf or nan ({len(bad)} entries"
                     + (f", e.g. at {loc}" if loc else "") + "): a division by zero?" + extra)
    if expected.ndim == 0:
        raise Failed(f"{what} on {case.name} is {float(a):.6g}; expected {float(e):.6g}.{extra}")
    err = np.abs(a - e)
    bad = np.argwhere(~np.isclose(a, e, rtol=rtol, atol=atol))
    idx = tuple(np.unravel_index(np.argmax(err), err.shape))
    loc = where(idx) if where else f"index {idx}"
    raise Failed(f"{what} on {case.name} differs at {len(bad)} of {e.size} entries; the largest "
                 f"difference is at {loc}: yours {a[idx]:.6g}, expected {e[idx]:.6g}.{extra}")


def describe_pair(mdp: TokenMDP, s: int, a: int | None = None) -> str:
    """A readable name for state ``s`` (and token ``a``) to put in a hint."""
    p, toks = mdp.prefix(int(s))
    prefix = f"prefix {mdp.render(toks)!r}" if toks else "empty prefix"
    out = f"state {int(s)} (prompt {mdp.prompts[p]!r}, {prefix})"
    return out if a is None else out + f", token {mdp.vocab[int(a)]!r}"


# ------------------------------------------------------------------------------- registry
def exercise(id: str, *, notebook: str, title: str, start: str):
    """Register a check under ``id`` ("NN.k", NN = the notebook's number).

    The decorated body takes the learner's function, raises :class:`Failed` (via
    :meth:`Case.call` and :func:`compare`) on a wrong answer and returns a short description of
    what it checked. The decorator turns that into the printed line and a :class:`CheckResult`.
    ``start`` is the hint shown while the function is still a stub.
    """
    if not re.fullmatch(r"\d\d\.\d+", id):
        raise ValueError(f"exercise ids look like '02.1' (notebook number, dot, exercise number), got {id!r}")
    if not notebook.startswith(id[:2]):
        raise ValueError(f"exercise {id} must belong to a notebook whose stem starts with {id[:2]!r}, "
                         f"got {notebook!r}")
    if id in EXERCISES and EXERCISES[id]["notebook"] != notebook:
        raise ValueError(f"exercise id {id} is already registered for {EXERCISES[id]['notebook']}")

    def register(body: Callable) -> Callable:
        @functools.wraps(body)
        def run(fn, *, quiet: bool = False) -> CheckResult:
            if not callable(fn):
                res = CheckResult(id, "failed", f"pass your function itself, e.g. check({id!r}, my_function), "
                                  f"not {type(fn).__name__} (a result of calling it)")
            else:
                try:
                    res = CheckResult(id, "passed", body(fn))
                except NotAttempted:
                    res = CheckResult(id, "not attempted",
                                      f"not implemented yet (the function still raises NotImplementedError). {start}")
                except Failed as e:
                    res = CheckResult(id, "failed", str(e))
                except Exception as e:  # noqa: BLE001 - a check never shows a traceback
                    res = CheckResult(id, "failed", f"the check could not use your answer: "
                                      f"{type(e).__name__}: {_short(e)}")
            report_verdict(res.id, res.status, res.message)     # to toyenv.grade, if it runs us
            if not quiet:
                print(res.line(), flush=True)
            return res

        run.exercise_id = id
        EXERCISES[id] = {"notebook": notebook, "title": title}
        _CHECKS[id] = run
        return run

    return register


def check(id: str, fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Run the check of exercise ``id`` on the learner's function ``fn``; print one line."""
    if id not in _CHECKS:
        raise KeyError(f"no exercise {id!r}; known exercises: {', '.join(sorted(_CHECKS))}")
    return _CHECKS[id](fn, quiet=quiet)


def exercises_of(notebook: str) -> list:
    """Ids of the exercises registered for a notebook stem, in order."""
    return sorted((i for i, e in EXERCISES.items() if e["notebook"] == notebook),
                  key=lambda i: (int(i[:2]), int(i[3:])))


# ================================================================================ the exercises
# Each check builds its cases from the package, computes the reference with the package's exact
# functions, and computes the answer every typical mistake would give.

def _world(name, **kw):
    from toyenv.core.presets import make
    return make(name, **kw)


def _tiny_world() -> TokenMDP:
    """Edge case: one prompt, horizon 1 (every completion is a single token)."""
    return TokenMDP(("a", "<eos>"), 1, 1, ("x",), verifier=lambda p, t: float(t == (0,)), name="tiny")
