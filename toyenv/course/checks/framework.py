"""Exercise checks: one per exercise, each runs the learner's function against the package.

A check takes the learner's function, calls it on several cases (edge cases included), compares
each answer with the package's exact reference and prints exactly one line::

    [exercise 02.1] passed: <what was checked>
    [exercise 02.1] failed: <a specific hint>
    [exercise 02.1] not attempted: <how to ask for a hint>

and returns a :class:`CheckResult`. A wrong answer is diagnosed, not guessed: the check computes
the answer each typical mistake would give (forgot D(x), forgot 1/T(y), ``>`` instead of ``>=``,
...) and names the mistake whose answer the learner's matches. An exception raised by the learner's
function becomes a "failed" line naming the exception and the case; a function that still raises
``NotImplementedError`` (the learner edition's stub) gives "not attempted", so Run All never stops.

Hints come on demand, never before an attempt: "not attempted" says only how to ask,
``checks.hint("02.1")``. Each call of :func:`hint` reveals one more step: first a nudge (what to
think about), then the method in words (which quantities, which formula, which arrays; never the
code), then "no more hints" and the part of the notebook to re-read. A failed attempt still gets the
targeted hint naming its mistake.

Own work only: while a check runs the learner's function, the package functions that answer the
exercise (``forbid=`` of :func:`exercise`) are switched off. Every ``toyenv.*`` module attribute
that is one of them, and every entry of the learner function's globals, closure and defaults that
is one, is replaced by a stub for the duration of the call; calling it fails the check with
:class:`Delegated`, naming the function. Everything is restored afterwards, also when the function
raises or times out, and the check's own reference answers (computed outside the call) are
untouched.

Use from a notebook::

    from toyenv.course import checks
    checks.check("02.1", occupancy_from_trajectories)

Add a check for a new exercise in ``toyenv/course/checks/nbNN.py`` (the same style everywhere)::

    from .framework import Case, compare, exercise

    @exercise("05.1", notebook="05_on_policy_rl", title="Exact pass@k",
              hints=("What is the chance that all k samples fail? Compute it per prompt first.",
                     "Per prompt, one minus (1 - p_x)^k; average the prompts with the weights D(x)."),
              reread="notebook 05's section on pass@k", forbid=("toyenv.pass_at_k",),
              own="combine the per-prompt success probabilities yourself")
    def _(fn):
        for case in [Case("many-paths base, k=1", (p, w, 1)), ...]:
            got = case.call(fn)
            compare(got, expected, case=case, mistakes={"you forgot D(x)": wrong_value})
        return "pass@k on 3 worlds, k = 1 and k = 256"

``EXERCISES`` maps every registered id to ``{"notebook": stem, "title": title}``; a grader reads it.
:func:`forbidden` lists an exercise's switched-off functions.

Under ``toyenv.grade`` each verdict also goes to the grader through ``toyenv.course.channel`` (a
signed record in a file only the grader reads); the printed line is then just for people.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import re
import signal
import sys
import threading
import types
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


class Delegated(Failed):
    """Raised when the learner's function called a package function its exercise is about."""


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
        # Inside a check, the exercise's own package functions are off for the call (own work only).
        # The timer stops before they are switched back on, so a timeout cannot interrupt restoring.
        guard = _SwitchedOff(_ACTIVE[-1], fn) if _ACTIVE else None
        try:
            with guard or contextlib.nullcontext():
                call = guard.entry(fn) if guard else fn
                with _time_limit(timeout):
                    return call(*args, **kwargs)
        except Delegated:
            raise
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
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                signal.signal(signal.SIGALRM, self.old)
        return False


def _short(e: BaseException, limit: int = 200) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else "(no message)"
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ------------------------------------------------------------------------------- own work only
@dataclass
class _Rules:
    """What one exercise asks of the learner: its hints and the package functions it switches off."""

    id: str
    notebook: str
    hints: tuple                 # (nudge, method), in words, never the code
    reread: str                  # where to look once the hints are used up
    forbid: tuple = ()           # dotted names of module-level functions, e.g. "toyenv.support_change"
    own: str = "write the computation yourself from the arguments"
    start: str | None = None     # the old one-line recipe, kept only so that tests can say it is not shown

    def delegated(self, name: str) -> str:
        return (f"{self.id} asks for your own code: your function called {name}, which this exercise is "
                f"about; {self.own} instead")


_RULES: dict[str, _Rules] = {}
_ACTIVE: list[_Rules] = []          # the exercises whose checks are running, innermost last
_GUARDS: list = []                  # the learner calls in progress (_SwitchedOff), innermost last
_STUB_OF: dict[int, object] = {}    # id(installed stub) -> the original it stands for


def _original(v):
    """The function ``v`` stands for: ``v`` itself, or the original behind one of our stubs."""
    return _STUB_OF.get(id(v), v)


def _resolve(name: str):
    """``"toyenv.core.exact.support_change"`` -> the module-level object (never one of our stubs)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return _original(obj)
    raise ImportError(f"no module in {name!r}")


def forbidden(id: str) -> tuple:
    """The package functions exercise ``id`` switches off while its check runs the learner's function."""
    return _RULES[id].forbid


class _SwitchedOff:
    """For the duration of one call of the learner's function ``fn``: every forbidden function of
    ``rules`` is replaced by a stub wherever it can be reached from the learner's code, i.e. in every
    ``toyenv.*`` module and in ``fn``'s globals, closure cells and defaults (a ``from toyenv import
    support_change`` made before the check). A stub records the call and raises :class:`Delegated`;
    on exit every replaced entry that still holds its stub gets back what it held before (so checks
    can nest: an inner check restores the outer one's stubs), and a recorded call fails the case
    even if the learner's function caught the exception. While a check nested inside the learner's
    function runs its own code, the outer stubs are ``suspended`` and call the original.
    """

    def __init__(self, rules: _Rules, fn: Callable):
        self.rules, self.fn = rules, fn
        self.targets = {}                          # id(original) -> (original, the name to report)
        for name in rules.forbid:
            try:
                obj = _resolve(name)
            except (ImportError, AttributeError) as e:
                raise RuntimeError(f"exercise {rules.id} switches off {name!r}, which does not exist "
                                   f"({type(e).__name__}: {e})") from None
            self.targets.setdefault(id(obj), (obj, name))
        self.called: list = []
        self.undo: list = []
        self.suspended = False

    def _stub(self, original, name):
        rules, called, guard = self.rules, self.called, self

        @functools.wraps(original)
        def switched_off(*args, **kwargs):
            if guard.suspended:                 # a check running inside the learner's function
                return original(*args, **kwargs)
            caller = sys._getframe(1)
            module = caller.f_globals.get("__name__", "")
            if module.startswith("toyenv.") and not module.startswith("toyenv.course."):
                name_ = f"{name} (through {module}.{caller.f_code.co_name})"   # a package function using it
            else:
                name_ = name
            called.append(name_)
            raise Delegated(rules.delegated(name_))
        del switched_off.__wrapped__
        return switched_off

    def _stub_for(self, v):
        """(original, stub) when ``v`` is a forbidden function (or a stub standing for one), else None."""
        orig = _original(v)
        hit = self.stubs.get(id(orig))
        return hit if hit is not None and orig is hit[0] else None

    def __enter__(self):
        self.stubs = {k: (orig, self._stub(orig, name)) for k, (orig, name) in self.targets.items()}
        for orig, stub in self.stubs.values():
            _STUB_OF[id(stub)] = orig
        _GUARDS.append(self)
        try:
            self._patch_modules()
            self._patch_function(self.fn)
        except BaseException:
            self._restore()
            raise
        return self

    def entry(self, fn):
        """What to call for ``fn``: its stub when the learner passed a forbidden function itself
        (``check("02.2", toyenv.effective_support)``), else ``fn``."""
        if isinstance(fn, functools.partial) and self._stub_for(fn.func):
            return functools.partial(self._stub_for(fn.func)[1], *fn.args, **fn.keywords)
        if isinstance(fn, types.MethodType) and self._stub_for(fn.__func__):
            return self._stub_for(fn.__func__)[1]
        hit = self._stub_for(fn)
        return hit[1] if hit else fn

    def __exit__(self, *exc):
        self._restore()
        if self.called:
            raise Delegated(self.rules.delegated(self.called[0])) from None
        return False

    # -- where the learner's code can reach a function
    def _patch_modules(self):
        seen = set()
        for mname, mod in list(sys.modules.items()):
            if not (mname == "toyenv" or mname.startswith("toyenv.")) or mod is None or id(mod) in seen:
                continue
            seen.add(id(mod))
            self._patch_dict(vars(mod))

    def _patch_dict(self, d: dict):
        for key, v in list(d.items()):
            hit = self._stub_for(v)
            if hit is not None:
                stub = hit[1]
                d[key] = stub
                self.undo.append(lambda d=d, key=key, old=v, stub=stub:
                                 d.__setitem__(key, old) if d.get(key) is stub else None)

    def _patch_function(self, fn):
        seen = set()
        todo = [fn]
        while todo:
            f = todo.pop()
            if f is None or id(f) in seen:
                continue
            seen.add(id(f))
            if isinstance(f, types.MethodType):
                todo.append(f.__func__)
            elif isinstance(f, functools.partial):
                todo.append(f.func)
            elif isinstance(f, types.FunctionType):
                self._patch_dict(f.__globals__)
                if f.__kwdefaults__:
                    self._patch_dict(f.__kwdefaults__)
                for cell in f.__closure__ or ():
                    try:
                        v = cell.cell_contents
                    except ValueError:                       # an empty cell
                        continue
                    hit = self._stub_for(v)
                    if hit is not None:
                        cell.cell_contents = hit[1]
                        self.undo.append(lambda cell=cell, old=v, stub=hit[1]:
                                         setattr(cell, "cell_contents", old) if cell.cell_contents is stub
                                         else None)
                if f.__defaults__ and any(self._stub_for(v) for v in f.__defaults__):
                    old = f.__defaults__
                    new = tuple(self._stub_for(v)[1] if self._stub_for(v) else v for v in old)
                    f.__defaults__ = new
                    self.undo.append(lambda f=f, old=old, new=new:
                                     setattr(f, "__defaults__", old) if f.__defaults__ is new else None)
            elif callable(f) and not isinstance(f, type):
                call = getattr(type(f), "__call__", None)
                if isinstance(call, types.FunctionType):
                    todo.append(call)

    def _restore(self):
        while self.undo:
            self.undo.pop()()
        for _, stub in getattr(self, "stubs", {}).values():
            _STUB_OF.pop(id(stub), None)
        if self in _GUARDS:
            _GUARDS.remove(self)


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
_NUDGE = ("Before writing code, say in one sentence what the function returns and what each argument "
          "holds (print one, or its .shape); then find the definition it uses in the notebook above.")


KINDS = {
    "function": "write a function the check calls on its own cases",
    "step": "write a training step that later cells use",
    "predict": "predict, then run: commit a prediction before the cell that reveals the answer",
    "experiment": "experiment: choose a setting, the check runs it exactly",
}
"""The kinds of exercise. *function* and *step* answers are functions; *predict* and *experiment*
answers are values (a number, a choice, a tuple of them), None until the learner commits one."""
VALUE_KINDS = ("predict", "experiment")
DEFAULT_POINTS = {"function": 1, "step": 2, "predict": 1, "experiment": 2}


def _unanswered(value) -> bool:
    """A value answer the learner has not (fully) committed: None or ``...``, alone or inside a
    tuple, list or dict (the learner edition stubs every answer name with None)."""
    if value is None or value is Ellipsis:
        return True
    if isinstance(value, (tuple, list)):
        return any(_unanswered(v) for v in value)
    if isinstance(value, dict):
        return any(_unanswered(v) for v in value.values())
    return False


def exercise(id: str, *, notebook: str, title: str, hints: tuple | None = None, reread: str | None = None,
             forbid: tuple = (), own: str | None = None, start: str | None = None,
             kind: str = "function", points: int | None = None):
    """Register a check under ``id`` ("NN.k", NN = the notebook's number).

    The decorated body takes the learner's function, raises :class:`Failed` (via
    :meth:`Case.call` and :func:`compare`) on a wrong answer and returns a short description of
    what it checked. The decorator turns that into the printed line and a :class:`CheckResult`.

    Args:
        hints: ``(nudge, method)``, what :func:`hint` reveals step by step: what to think about,
            then the method in words (which quantities, which formula, which arrays), never the code.
        reread: where to look once the hints are used up ("notebook 03's section on ...").
        forbid: dotted names of the package functions that answer the exercise, e.g.
            ``("toyenv.support_change", "toyenv.core.exact.support_sets")``: switched off while the
            learner's function runs (every alias in ``toyenv.*`` and in the learner's namespace too).
        own: what to do instead, ending the message of a delegating answer ("compute the sets from
            the two occupancies").
        start: the older one-line recipe; without ``hints`` it becomes the method hint (after a
            generic nudge). It is never printed before an attempt.
        kind: one of :data:`KINDS`. The body of a *predict* or *experiment* check receives the
            learner's value (never None: an unanswered value is "not attempted" before the body runs).
        points: what the exercise is worth (nbgrader, the instructors' table); default by kind.
    """
    if kind not in KINDS:
        raise ValueError(f"exercise {id}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    points = DEFAULT_POINTS[kind] if points is None else int(points)
    if points < 1:
        raise ValueError(f"exercise {id}: points must be a positive integer, got {points!r}")
    if not re.fullmatch(r"\d\d\.\d+", id):
        raise ValueError(f"exercise ids look like '02.1' (notebook number, dot, exercise number), got {id!r}")
    if not notebook.startswith(id[:2]):
        raise ValueError(f"exercise {id} must belong to a notebook whose stem starts with {id[:2]!r}, "
                         f"got {notebook!r}")
    if id in EXERCISES and EXERCISES[id]["notebook"] != notebook:
        raise ValueError(f"exercise id {id} is already registered for {EXERCISES[id]['notebook']}")
    if hints is None:
        if start is None:
            raise ValueError(f"exercise {id}: give hints=(nudge, method) (or at least start=)")
        hints = (_NUDGE, start)
    hints = tuple(hints)
    if len(hints) < 1 or not all(isinstance(h, str) and h.strip() for h in hints):
        raise ValueError(f"exercise {id}: hints must be non-empty strings, a nudge then the method")
    if isinstance(forbid, str):
        forbid = (forbid,)
    rules = _Rules(id, notebook, hints, reread or f"the part of notebook {notebook} just before exercise {id}",
                   tuple(forbid), own or _Rules.own, start)

    def register(body: Callable) -> Callable:
        @functools.wraps(body)
        def run(fn, *, quiet: bool = False) -> CheckResult:
            if kind in VALUE_KINDS and _unanswered(fn):
                res = CheckResult(id, "not attempted",
                                  "no answer yet (the answer above is still None): write your "
                                  + ("prediction" if kind == "predict" else "choice")
                                  + " in its place and run this cell again"
                                  + (", before running the cells below" if kind == "predict" else "")
                                  + f'. Stuck? checks.hint("{id}") gives a first hint, without the answer')
            elif kind in VALUE_KINDS and callable(fn):
                res = CheckResult(id, "failed", f"exercise {id} asks for a value (a number or a choice), "
                                  f"not a function: assign your answer to the name the cell gives")
            elif kind not in VALUE_KINDS and not callable(fn):
                res = CheckResult(id, "failed", f"pass your function itself, e.g. check({id!r}, my_function), "
                                  f"not {type(fn).__name__} (a result of calling it)")
            else:
                _ACTIVE.append(rules)
                outer = [g for g in _GUARDS if not g.suspended]     # a check inside a learner's function:
                for g in outer:                                     # its own code may use anything
                    g.suspended = True
                try:
                    res = CheckResult(id, "passed", body(fn))
                except NotAttempted:
                    res = CheckResult(id, "not attempted",
                                      "not implemented yet (the function still raises NotImplementedError): "
                                      "write your attempt in it and run this cell again. Stuck? "
                                      f'checks.hint("{id}") gives a first hint, without the answer')
                except Failed as e:
                    res = CheckResult(id, "failed", str(e))
                except Exception as e:  # noqa: BLE001 - a check never shows a traceback
                    res = CheckResult(id, "failed", f"the check could not use your answer: "
                                      f"{type(e).__name__}: {_short(e)}")
                finally:
                    _ACTIVE.remove(rules)
                    for g in outer:
                        g.suspended = False
            _LAST[id] = res
            report_verdict(res.id, res.status, res.message)     # to toyenv.grade, if it runs us
            if not quiet:
                print(res.line(), flush=True)
            return res

        run.exercise_id = id
        EXERCISES[id] = {"notebook": notebook, "title": title, "kind": kind, "points": points}
        _CHECKS[id] = run
        _RULES[id] = rules
        return run

    return register


def check(id: str, fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Run the check of exercise ``id`` on the learner's answer ``fn`` (a function, or for a
    *predict* or *experiment* exercise a value); print one line."""
    if id not in _CHECKS:
        raise KeyError(f"no exercise {id!r}; known exercises: {', '.join(sorted(_CHECKS))}")
    return _CHECKS[id](fn, quiet=quiet)


_LAST: dict[str, CheckResult] = {}
"""id -> the latest verdict of its check in this kernel."""


def passed(id: str) -> bool:
    """Whether the latest check of exercise ``id`` in this kernel passed."""
    if id not in _CHECKS:
        raise KeyError(f"no exercise {id!r}; known exercises: {', '.join(sorted(_CHECKS))}")
    res = _LAST.get(id)
    return bool(res and res.passed)


def yours_or_reference(id: str, yours, reference, *, quiet: bool = False):
    """``yours`` if exercise ``id``'s check passed in this kernel, else ``reference``, saying which:
    later cells of a notebook use the learner's training step once it is right, and the reference
    step until then, so Run All works before the exercise is solved."""
    if passed(id):
        chosen, why = yours, f"yours ({getattr(yours, '__name__', 'your answer')}: exercise {id} passed)"
    else:
        status = _LAST[id].status if id in _LAST else "not checked yet"
        chosen, why = reference, (f"the reference ({getattr(reference, '__name__', 'reference')}), because "
                                  f"exercise {id} has not passed ({status}); solve it and re-run to use yours")
    if not quiet:
        print(f"[using {id}] {why}", flush=True)
    return chosen


# ------------------------------------------------------------------------------- hints on demand
_HINTS_SEEN: dict[str, int] = {}
"""id -> how many hint steps the learner has asked for (this kernel)."""


@dataclass(frozen=True)
class Hint:
    """One step of :func:`hint`: ``step`` 1..len(hints), or 0 once there are no more hints."""

    id: str
    step: int
    of: int
    text: str

    def line(self) -> str:
        where = f"{self.step} of {self.of}" if self.step else "no more hints"
        return f"[hint {self.id}, {where}] {self.text}"

    def __str__(self):
        return self.line()

    def _ipython_display_(self):
        pass                                   # already printed


def hint(id: str, step: int | None = None, *, quiet: bool = False) -> Hint:
    """The next hint for exercise ``id``: a nudge first, then the method in words; after that, where
    to re-read. ``step=k`` shows step k again without moving on. Prints one line, returns a :class:`Hint`.
    """
    if id not in _RULES:
        raise KeyError(f"no exercise {id!r}; known exercises: {', '.join(sorted(_RULES))}")
    rules = _RULES[id]
    n = len(rules.hints)
    if step is None:
        step = _HINTS_SEEN.get(id, 0) + 1
        _HINTS_SEEN[id] = min(step, n + 1)
    elif not 1 <= step <= n:
        raise ValueError(f"exercise {id} has hint steps 1..{n}, got step={step!r}")
    if step <= n:
        text = rules.hints[step - 1]
        if step < n:
            text += f' (Still stuck after trying? checks.hint("{id}") again gives the method.)'
        res = Hint(id, step, n, text)
    else:
        res = Hint(id, 0, n, f"there are no more hints for exercise {id}. Re-read {rules.reread}, then "
                             f'compare your function with the method (checks.hint("{id}", step={n}) shows it '
                             "again). Once you run the check, a failed line names the mistake it recognises.")
    if not quiet:
        print(res.line(), flush=True)
    return res


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
