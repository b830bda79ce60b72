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

    from toyenv import checks
    checks.check("02.1", occupancy_from_trajectories)

Add a check for a new exercise (the same style everywhere)::

    from toyenv.checks import Case, compare, exercise

    @exercise("05.1", notebook="05_on_policy_rl", title="Exact pass@k",
              start="return sum_x D(x) * (1 - (1 - p_x)**k)")
    def _(fn):
        for case in [Case("many-paths base, k=1", (p, w, 1)), ...]:
            got = case.call(fn)
            compare(got, expected, case=case, mistakes={"you forgot D(x)": wrong_value})
        return "pass@k on 3 worlds, k = 1 and k = 256"

``EXERCISES`` maps every registered id to ``{"notebook": stem, "title": title}``; a grader reads it.
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

from .mdp import TokenMDP

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
    from .worlds import make
    return make(name, **kw)


def _tiny_world() -> TokenMDP:
    """Edge case: one prompt, horizon 1 (every completion is a single token)."""
    return TokenMDP(("a", "<eos>"), 1, 1, ("x",), verifier=lambda p, t: float(t == (0,)), name="tiny")


# ------------------------------------------------------------------------------- 00.1
def _count_states(P, V, T, *, b=None, lo=0, hi=None, prompts=True):
    b = V - 1 if b is None else b
    hi = T if hi is None else hi
    return (P if prompts else 1) * sum(b**t for t in range(lo, hi))


@exercise("00.1", notebook="00_start_here", title="Count the states of the prefix tree",
          start="Return num_prompts * (the number of token prefixes of length 0, 1, ..., horizon-1 "
                "that contain no end token).")
def check_count_states(fn):
    cases = [Case("num_prompts=4, vocab_size=5, horizon=4 (the hidden-path world)", (4, 5, 4)),
             Case("num_prompts=8, vocab_size=4, horizon=3 (the many-paths world)", (8, 4, 3)),
             Case("num_prompts=1, vocab_size=3, horizon=3", (1, 3, 3)),
             Case("num_prompts=2, vocab_size=5, horizon=1 (every completion is one token)", (2, 5, 1)),
             Case("num_prompts=3, vocab_size=2, horizon=6 (one token besides the end token)", (3, 2, 6))]
    for case in cases:
        P, V, T = case.args
        got = case.call(fn)
        if isinstance(got, (float, np.floating)) and float(got) != round(float(got)):
            raise Failed(f"your answer on {case.name} is {got}, not a whole number: states are counted")
        compare(got, _count_states(P, V, T), case=case, mistakes={
            "every state has vocab_size - 1 children, not vocab_size: emitting the end token finishes "
            "the sequence instead of making a new state": _count_states(P, V, T, b=V),
            "a prefix of horizon tokens is already complete (the horizon ends it), so state prefixes "
            "have lengths 0 .. horizon-1: range(horizon), not range(horizon + 1)": _count_states(P, V, T, hi=T + 1),
            "you left out the empty prefix: each prompt's root state (no token yet) is a state too, "
            "so lengths start at 0": _count_states(P, V, T, lo=1),
            "every prompt has its own tree: multiply by num_prompts": _count_states(P, V, T, prompts=False),
            "every state has vocab_size - 1 children and the lengths run 0 .. horizon-1 (you used "
            "vocab_size children and range(horizon + 1))": _count_states(P, V, T, b=V, hi=T + 1),
        })
    return f"{len(cases)} worlds, including horizon 1 and a two-token vocabulary, match toyenv.tree_size"


# ------------------------------------------------------------------------------- 01.1
def _seq_prob_variant(mdp, probs, x, toks, *, first=True, last=True, combine="prod"):
    ts = range(0 if first else 1, len(toks) - (0 if last else 1))
    factors = [probs[mdp.state_index(x, toks[:t]), toks[t]] for t in ts]
    if combine == "prod":
        return float(np.prod(factors))
    if combine == "sum":
        return float(np.sum(factors))
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log(factors)))


@exercise("01.1", notebook="01_policies_over_trajectories",
          title="Sequence probability by the chain rule (Eq. 1)",
          start="Multiply probs[s_t, y_t] over the tokens of y, where s_t = "
                "mdp.state_index(prompt_index, tokens[:t]) is the state before token t.")
def check_sequence_probability(fn):
    from .policies import TabularPolicy
    hp = _world("hidden-path")
    hp_p = hp.base_policy().probs()
    mp = _world("many-paths")
    rnd = TabularPolicy(mp, seed=7, scale=1.5).probs()       # one row per state: prompts differ
    tiny = _tiny_world()
    tiny_p = np.array([[0.3, 0.7]])
    a, b, c, h, E = range(5)
    cases = [
        Case("hidden-path base policy, prompt 0, y = 'a b <eos>'", (hp, hp_p, 0, (a, b, E))),
        Case("many-paths random policy, prompt 5, y = 'a b <eos>'", (mp, rnd, 5, (0, 1, 3))),
        Case("hidden-path base policy, prompt 1, y = 'a a b c' (ended by the horizon, no <eos>)",
             (hp, hp_p, 1, (a, a, b, c))),
        Case("hidden-path base policy, prompt 2, y = '<eos>' (a one-token completion)", (hp, hp_p, 2, (E,))),
        Case("hidden-path base policy, prompt 1, the correct answer 'h b <eos>' (probability ~4e-6)",
             (hp, hp_p, 1, (h, b, E))),
        Case("a one-prompt world with horizon 1, y = 'a'", (tiny, tiny_p, 0, (0,))),
    ]
    for case in cases:
        mdp, p, x, toks = case.args
        expected = _seq_prob_variant(mdp, p, x, toks)
        got = case.call(fn)
        compare(got, expected, case=case, rtol=1e-9, atol=1e-15, what="your probability", mistakes={
            "you left out the last token's factor: the final token (often <eos>) is an action too, "
            "so pi(y_T | x, y_<T) belongs to the product": _seq_prob_variant(mdp, p, x, toks, last=False),
            "you left out the first token's factor: the first token is chosen at the root state "
            "(the prompt with an empty prefix, tokens[:0]), so t starts at 0":
                _seq_prob_variant(mdp, p, x, toks, first=False),
            "you returned log pi(y|x); the exercise asks for the probability itself (multiply the "
            "factors, or exponentiate the sum of logs)": _seq_prob_variant(mdp, p, x, toks, combine="log"),
            "you added the per-token probabilities; the chain rule (Eq. 1) multiplies them":
                _seq_prob_variant(mdp, p, x, toks, combine="sum"),
            "you multiplied by the prompt weight D(x); pi(y|x) is conditional on the prompt":
                mdp.prompt_weights[x] * expected,
            "you used the states of prompt 0: look each state up under the given prompt, "
            "mdp.state_index(prompt_index, tokens[:t])": _seq_prob_variant(mdp, p, 0, toks),
        })
    return (f"{len(cases)} sequences: ended by <eos> or by the horizon, a one-token completion, a "
            "rare correct answer, a prompt-dependent policy and a horizon-1 world")


# ------------------------------------------------------------------------------- 01.2
def _success_variant(mdp, traj, *, mask=None, weight_prompts=False, count=False):
    mask = mdp.correct if mask is None else mask
    s, a = np.nonzero(mask)
    w = np.ones(len(s)) if count else traj[s, a]
    out = np.bincount(mdp.prompt_of[s], weights=w, minlength=mdp.num_prompts)
    return out * mdp.prompt_weights if weight_prompts else out


@exercise("01.2", notebook="01_policies_over_trajectories",
          title="Exact success probability from trajectory probabilities",
          start="For every prompt x, add up traj_probs[s, a] over the terminal pairs (s, a) of x "
                "whose completion is correct (mdp.correct[s, a]); mdp.prompt_of[s] is the prompt of state s.")
def check_success_probability(fn):
    from .exact import trajectory_probs
    from .policies import TabularPolicy
    worlds = [("many-paths base policy", _world("many-paths"), None),
              ("scaffold base policy (D(x) = 0 on the hinted prompts)", _world("scaffold"), None),
              ("two-skills random policy", _world("two-skills"), 3),
              ("hidden-path base policy (success ~2e-5 per prompt)", _world("hidden-path"), None),
              ("a one-prompt world with horizon 1", _tiny_world(), 4)]
    n = 0
    for name, mdp, seed in worlds:
        pi = mdp.base_policy() if seed is None else TabularPolicy(mdp, seed=seed, scale=1.5)
        traj = trajectory_probs(pi)
        case = Case(name, (mdp, traj))
        expected = _success_variant(mdp, traj)
        got = case.call(fn)
        compare(got, expected, case=case, rtol=1e-9, atol=1e-15, what="your success probabilities",
                mistakes={
                    "you multiplied by D(x): the success probability p_x = P(correct | x) is per "
                    "prompt and conditional on x (the weighted average sum_x D(x) p_x is another number)":
                        _success_variant(mdp, traj, weight_prompts=True),
                    "you returned the prompt-weighted average; return one number per prompt, an array "
                    "of shape (num_prompts,)": float(mdp.prompt_weights @ expected),
                    "you added up every complete trajectory (that gives 1 per prompt); keep only the "
                    "correct ones, mdp.correct[s, a]": _success_variant(mdp, traj, mask=mdp.terminal),
                    "you counted the correct completions; weight each by its probability "
                    "traj_probs[s, a]": _success_variant(mdp, traj, count=True),
                    "you added up the incorrect completions: that is 1 - p_x":
                        _success_variant(mdp, traj, mask=mdp.terminal & ~mdp.correct),
                })
        n += 1
    return f"per-prompt success on {n} worlds, with unequal prompt weights and a horizon-1 world"


# ------------------------------------------------------------------------------- 02.1
_ETA = {"1/T(y)": lambda L, H: 1.0 / L, "1": lambda L, H: np.ones_like(L),
        "1/horizon": lambda L, H: np.full_like(L, 1.0 / H),
        "1/(T(y)+1)": lambda L, H: 1.0 / (L + 1),
        "1/(T(y)-1)": lambda L, H: np.divide(1.0, L - 1, out=np.full_like(L, np.inf), where=L > 1)}
_ETA_HINT = {
    "1": "you gave every step weight 1 instead of eta_t = 1/T(y), so your d sums to the expected "
         "length E[T(y)] instead of 1 (that is the visit count, reach x pi, not Eq. 2's normalised occupancy)",
    "1/horizon": "you divided by the horizon T instead of each trajectory's own length T(y)",
    "1/(T(y)+1)": "off by one in T(y): T(y) is the number of tokens of y, end token included "
                  "(mdp.length[s, a] at the terminal pair, = mdp.depth[s] + 1), not one more",
    "1/(T(y)-1)": "off by one in T(y): T(y) is the number of tokens of y, end token included "
                  "(mdp.length[s, a] at the terminal pair, = mdp.depth[s] + 1), not mdp.depth[s]",
}
_STEPS_HINT = {
    "last": "you credited only the last step of each trajectory; Eq. 2 credits every step "
            "(s_t, a_t), t = 1..T(y): walk up with s, a = mdp.parent[s], mdp.last_token[s]",
    "no-last": "you skipped the final step (s, a) of each trajectory: the last token is an action too",
    "no-root": "you stopped before the first step: the root state (the prompt with an empty prefix) "
               "and the first token count too (loop while s >= 0, not while mdp.parent[s] >= 0)",
}


def occupancy_variant(mdp: TokenMDP, traj: np.ndarray, *, prompt_weights: bool = True,
                      eta: str = "1/T(y)", steps: str = "all") -> np.ndarray:
    """d(s, a) of Eq. 2 from trajectory probabilities ``traj [S, V]`` (pi(y|x) at terminal pairs),
    with the choices a learner can get wrong: D(x) weighting, the step weight eta and which steps
    are credited. The defaults give the right answer. ``[S, V]``.
    """
    L = np.where(mdp.terminal, mdp.length, 1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(mdp.terminal, traj * _ETA[eta](L, mdp.horizon), 0.0)
    if prompt_weights:
        with np.errstate(invalid="ignore"):
            w = w * mdp.prompt_weights[mdp.prompt_of][:, None]
    below = np.zeros(mdp.num_states)        # weight of all trajectories through state s
    for d in reversed(range(mdp.horizon)):
        sl = slice(mdp.level_start[d], mdp.level_start[d + 1])
        ch = mdp.child[sl]
        with np.errstate(invalid="ignore"):
            below[sl] = w[sl].sum(1) + np.where(ch >= 0, below[np.maximum(ch, 0)], 0.0).sum(1)
    d_sa = np.where(mdp.terminal, w, below[np.maximum(mdp.child, 0)])
    if steps == "last":
        d_sa = np.where(mdp.terminal, w, 0.0)
    elif steps == "no-last":
        d_sa = np.where(mdp.terminal, 0.0, d_sa)
    elif steps == "no-root":
        d_sa = np.where((mdp.depth == 0)[:, None], 0.0, d_sa)
    return d_sa


def _occupancy_mistakes(mdp, traj) -> dict:
    out = {}
    for pw in (True, False):
        for eta in _ETA:
            for steps in ("all", "last", "no-last", "no-root"):
                parts = []
                if not pw:
                    parts.append("you did not weight the trajectories by the prompt distribution "
                                 "D(x) (mdp.prompt_weights[x])")
                if eta != "1/T(y)":
                    parts.append(_ETA_HINT[eta])
                if steps != "all":
                    parts.append(_STEPS_HINT[steps])
                if parts:
                    out["; and ".join(parts)] = occupancy_variant(mdp, traj, prompt_weights=pw, eta=eta,
                                                                  steps=steps)
    # one mistake is clearer than several: try single mistakes first
    return dict(sorted(out.items(), key=lambda kv: kv[0].count("; and ")))


@exercise("02.1", notebook="02_occupancy_and_support",
          title="Occupancy from trajectories (Eq. 2, eta = 1/T(y))",
          start="Start from d = np.zeros((mdp.num_states, mdp.vocab_size)); for every complete "
                "trajectory, i.e. terminal pair (s, a) in zip(*mdp.trajectories()), add "
                "D(x) * traj_probs[s, a] / T(y) to every (state, token) on its path, walking up with "
                "mdp.parent and mdp.last_token.")
def check_occupancy(fn):
    from .exact import occupancy, trajectory_probs
    from .policies import TabularPolicy
    worlds = [("hidden-path base policy", _world("hidden-path"), None),
              ("scaffold base policy (unequal prompt weights, some zero)", _world("scaffold"), None),
              ("many-paths random policy", _world("many-paths"), 5),
              ("a one-prompt world with horizon 1", _tiny_world(), 2)]
    for name, mdp, seed in worlds:
        pi = mdp.base_policy() if seed is None else TabularPolicy(mdp, seed=seed, scale=1.5)
        traj = trajectory_probs(pi)
        expected = occupancy(pi).sa
        case = Case(name, (mdp, traj), errors={ZeroDivisionError: _ETA_HINT["1/(T(y)-1)"]})
        got = case.call(fn)

        def facts(arr, mdp=mdp):
            total = arr.sum()
            per_prompt = np.bincount(mdp.prompt_of, weights=arr.sum(1), minlength=mdp.num_prompts)
            if abs(total - 1) > 1e-9:
                return (f"Your d sums to {total:.6g}; Eq. 2 with eta_t = 1/T(y) sums to 1 (each "
                        "trajectory's weights eta_t add up to 1).")
            if not np.allclose(per_prompt, mdp.prompt_weights, atol=1e-9):
                return "Your d sums to 1 but prompt x does not carry mass D(x)."
            return None

        compare(got, expected, case=case, what="your occupancy", mistakes=_occupancy_mistakes(mdp, traj),
                where=lambda idx, mdp=mdp: describe_pair(mdp, *idx), diagnose=facts)
    return (f"d(s, a) on {len(worlds)} worlds (variable lengths, unequal and zero prompt weights, "
            "horizon 1) equals toyenv.occupancy")


# ------------------------------------------------------------------------------- 02.2
@exercise("02.2", notebook="02_occupancy_and_support", title="Effective support (Eq. 5)",
          start="Return a boolean mask of shape occ.sa.shape that is True where the occupancy "
                "d(s, a) = occ.sa[s, a] is at least eps.")
def check_effective_support(fn):
    from .exact import occupancy
    hp = occupancy(_world("hidden-path").base_policy())
    sc = occupancy(_world("scaffold").base_policy())
    mp = occupancy(_world("many-paths").base_policy())
    h_state = hp.mdp.state_index(0, (3,))
    tie = float(hp.sa[h_state, 0])                  # a value many pairs share exactly
    smallest = float(sc.sa[sc.sa > 0].min())
    cases = [
        Case("hidden-path base policy, eps = 1e-3", (hp, 1e-3)),
        Case(f"hidden-path base policy, eps = {tie:.6g}, exactly the occupancy of several pairs", (hp, tie)),
        Case("scaffold base policy, eps = 1e-2 (hinted prompts have D(x) = 0)", (sc, 1e-2)),
        Case("many-paths base policy, eps = 1e-4", (mp, 1e-4)),
        Case("scaffold base policy, eps = the smallest non-zero occupancy", (sc, smallest)),
        Case("many-paths base policy, eps = 1 (nothing reaches it)", (mp, 1.0)),
    ]
    for case in cases:
        occ, eps = case.args
        mdp = occ.mdp
        expected = occ.sa >= eps
        got = case.call(fn)
        compare(got, expected, case=case, what="your support mask",
                where=lambda idx, mdp=mdp, occ=occ: describe_pair(mdp, *idx) + f" (d = {occ.sa[idx]:.6g})",
                mistakes={
                    "pairs whose occupancy equals eps exactly belong to E_eps: Eq. 5 uses >=, not >":
                        occ.sa > eps,
                    "you thresholded pi(a|s) (occ.probs), the action availability alone; E_eps thresholds "
                    "the occupancy d(s, a) = occ.sa, which also counts how often s is reached":
                        occ.probs >= eps,
                    "you thresholded the state occupancy d(s) (occ.s), the reachability alone; an action "
                    "rarely chosen in a well-visited state is outside E_eps: threshold d(s, a) = occ.sa":
                        np.broadcast_to((occ.s >= eps)[:, None], occ.sa.shape),
                    "you thresholded reach(s) (occ.reach), the reachability alone; threshold d(s, a) = occ.sa":
                        np.broadcast_to((occ.reach >= eps)[:, None], occ.sa.shape),
                    "you thresholded reach(s) * pi(a|s); Eq. 5 uses the normalised occupancy d(s, a) "
                    "= occ.sa, which also carries D(x) and eta_t = 1/T(y)":
                        occ.reach[:, None] * occ.probs >= eps,
                    "you returned the pairs outside the support (d < eps); E_eps is where d >= eps":
                        occ.sa < eps,
                    "return the mask itself, not its size (the size is mask.sum())": int(expected.sum()),
                })
    return (f"{len(cases)} cases: ties at eps, zero-weight prompts, the smallest non-zero occupancy "
            "and eps = 1")


# The checks of notebooks 03-10 live in one module per notebook; importing them registers them here.
from . import checks_nb03  # noqa: E402,F401
from . import checks_nb04  # noqa: E402,F401
from . import checks_nb05  # noqa: E402,F401
from . import checks_nb06  # noqa: E402,F401
from . import checks_nb07  # noqa: E402,F401
from . import checks_nb08  # noqa: E402,F401
from . import checks_nb09  # noqa: E402,F401
from . import checks_nb10  # noqa: E402,F401
