"""The built-in worlds: each is small and exists to make one phenomenon unmistakable.

``toyenv.make(name, **overrides)`` builds one; ``toyenv.presets()`` lists the names. Each world
comes with its canonical base policy (``mdp.base_policy()``), the "pretrained" model.
"""
from __future__ import annotations

import inspect

import numpy as np

from .tree import TokenMDP
from .policies import TabularPolicy

_PRESETS: dict = {}


def _preset(name):
    def register(fn):
        _PRESETS[name] = fn
        return fn
    return register


def presets() -> tuple:
    """Names of the built-in worlds."""
    return tuple(_PRESETS)


def describe(name: str) -> str:
    """The docstring of a preset: what it is for and what it can be overridden with."""
    return inspect.getdoc(_builder(name))


def _builder(name):
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; the presets are {', '.join(presets())} "
                         "(toyenv.presets() lists them)")
    return _PRESETS[name]


def make(name: str, **overrides) -> TokenMDP:
    """Build a preset world. ``overrides`` are the keyword arguments of that preset's builder."""
    fn = _builder(name)
    params = inspect.signature(fn).parameters
    bad = [k for k in overrides if k not in params]
    if bad:
        allowed = ", ".join(f"{k}={p.default!r}" for k, p in params.items())
        raise TypeError(f"{name!r} has no setting {', '.join(map(repr, bad))}; its settings are: {allowed}")
    return fn(**overrides)


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")


def _check_prob(name, value, lo=0.0, hi=1.0):
    if not isinstance(value, (int, float)) or not lo < value < hi:
        raise ValueError(f"{name} must be a number in ({lo}, {hi}), got {value!r}")


def _answer(seq: np.ndarray, eos: int) -> list:
    """Completion rows ``[N, T]`` (padded with -1) -> tuples without the end token."""
    return [tuple(int(t) for t in row if t >= 0 and t != eos) for row in seq]


def _rows(mdp, table):
    """Normalise a non-negative table ``[S, V]`` into probabilities."""
    table = np.asarray(table, float)
    return table / table.sum(1, keepdims=True)


# ------------------------------------------------------------------------------------ hidden-path
@_preset("hidden-path")
def hidden_path(num_prompts: int = 4, horizon: int = 4, p_hidden: float = 1e-4) -> TokenMDP:
    """Hidden path: the only correct answers start with a token the base policy almost never emits.

    Prompt ``qi`` is solved by exactly one completion, ``h k_i <eos>``: the hidden token ``h``
    followed by a prompt-specific key letter. The base policy emits ``h`` first with probability
    ``p_hidden`` (default 1e-4), so sampled on-policy RL essentially never sees a reward, while a few
    SFT demonstrations make the path reachable (support expansion, survey §3.3.2) and RL can then
    sharpen it (reshaping, §3.3.3).

    Settings: num_prompts (1-8), horizon (>= 3), p_hidden in (0, 0.5).
    """
    _check_int("num_prompts", num_prompts, 1, 8)
    _check_int("horizon", horizon, 3, 12)
    _check_prob("p_hidden", p_hidden, 0.0, 0.5)
    vocab = ("a", "b", "c", "h", "<eos>")
    A, B, C, H, E = range(5)
    keys = [A, B, C, A, B, C, A, B][:num_prompts]

    def verify(prompt, seq):
        k = np.array(keys)[prompt]
        return ((seq[:, 0] == H) & (seq[:, 1] == k) & (seq[:, 2] == E)).astype(float)

    def base(mdp):
        p = np.tile([0.35, 0.25, 0.2, 0.0, 0.2], (mdp.num_states, 1))
        root = mdp.depth == 0
        p[root] = [0.45, 0.3, 0.2 - p_hidden, p_hidden, 0.05]
        p[~root, H] = 0.01                       # h is rare everywhere
        after_h = (mdp.depth >= 1) & (mdp.tokens[:, 0] == H)
        p[after_h] = 1.0                         # never seen: the base is uniform there
        return TabularPolicy.from_probs(mdp, _rows(mdp, p))

    return TokenMDP(vocab, E, horizon, tuple(f"q{i}" for i in range(num_prompts)),
                    batch_verifier=verify, name="hidden-path", doc=inspect.getdoc(hidden_path),
                    base_factory=base, info={"hidden_token": H, "keys": tuple(keys)})


# ------------------------------------------------------------------------------------ many-paths
@_preset("many-paths")
def many_paths(num_prompts: int = 8, num_rare: int = 2, horizon: int = 3) -> TokenMDP:
    """Many paths: several correct answers already in the base support, and a shortcut.

    Common prompts are solved by any of ``a a``, ``a b`` and ``b a``; the ``num_rare`` rare prompts
    only by ``c c``. The base policy is prompt-agnostic (a tabular policy with one row per token
    prefix, shared by all prompts), so raising the shortcut on the common prompts squeezes ``c c``
    out on the rare ones. On-policy RL raises pass@1 while pass@k at large k falls below the base
    (the crossover of Yue et al. 2025, survey ref [132]; §3.3.3) and alternative correct answers leave
    the support. With one row per state (``TabularPolicy.from_probs(mdp, base.probs())``) no prompt
    can get worse: the negative control.

    Settings: num_prompts (2-16), num_rare (1 to num_prompts-1), horizon (>= 3).
    """
    _check_int("num_prompts", num_prompts, 2, 16)
    _check_int("num_rare", num_rare, 1, num_prompts - 1)
    _check_int("horizon", horizon, 3, 8)
    vocab = ("a", "b", "c", "<eos>")
    A, B, C, E = range(4)
    rare = np.arange(num_prompts) >= num_prompts - num_rare
    common_answers = {(A, A), (A, B), (B, A)}

    def verify(prompt, seq):
        ans = _answer(seq, E)
        ended = (seq == E).any(1)
        ok = np.array([a in common_answers for a in ans]) & ~rare[prompt]
        ok |= np.array([a == (C, C) for a in ans]) & rare[prompt]
        return (ok & ended).astype(float)

    def base(mdp):
        t = np.zeros((mdp.num_prefixes, 4))
        depth = np.zeros(mdp.num_prefixes, int)
        depth[mdp.prefix_id] = mdp.depth
        t[:] = [0.3, 0.3, 0.3, 0.1]
        t[depth == 0] = [0.34, 0.33, 0.3, 0.03]
        t[depth == 2] = [0.03, 0.03, 0.03, 0.91]
        return TabularPolicy.from_probs(mdp, _rows(mdp, t), share="prefix")

    prompts = tuple(f"q{i}" for i in range(num_prompts))
    return TokenMDP(vocab, E, horizon, prompts, batch_verifier=verify, name="many-paths",
                    doc=inspect.getdoc(many_paths), base_factory=base,
                    info={"rare_prompts": tuple(np.nonzero(rare)[0].tolist()),
                          "common_answers": tuple(sorted(common_answers)), "rare_answer": (C, C)})


# ------------------------------------------------------------------------------------ two-skills
@_preset("two-skills")
def two_skills(prompts_per_family: int = 4, horizon: int = 3, overlap: float = 0.3) -> TokenMDP:
    """Two skills: prompts from two task families, where one family's answer is a likely wrong
    answer for the other.

    Family A (prompts ``A i``) is solved by ``a b``, family B (``B i``) by ``b a``. Under the base
    policy each family gives its own answer with probability about 0.4 and the other family's
    answer with probability about ``overlap``. Fine-tuning family A with a shared-parameter policy
    (the transformer) can move family B too: attrition of a skill that was never trained on
    (survey §3.3.4, §6.4). A tabular policy has one row per state, so B cannot move at all: the
    negative control.

    Settings: prompts_per_family (1-8), horizon (>= 3), overlap in (0, 0.55).
    """
    _check_int("prompts_per_family", prompts_per_family, 1, 8)
    _check_int("horizon", horizon, 3, 8)
    _check_prob("overlap", overlap, 0.0, 0.55)
    vocab = ("a", "b", "c", "<eos>")
    A, B, C, E = range(4)
    n = prompts_per_family
    family = np.array([0] * n + [1] * n)
    answers = [(A, B), (B, A)]

    def verify(prompt, seq):
        ans = _answer(seq, E)
        ended = (seq == E).any(1)
        ok = np.array([a == answers[f] for a, f in zip(ans, family[prompt])])
        return (ok & ended).astype(float)

    def base(mdp):
        own, other = 0.4, overlap
        p = np.tile([0.3, 0.3, 0.3, 0.1], (mdp.num_states, 1))
        fam = family[mdp.prompt_of]
        # the answer distribution is fixed by the first token: own first token leads to own answer
        for f in (0, 1):
            first_own, first_other = answers[f][0], answers[1 - f][0]
            root = (mdp.depth == 0) & (fam == f)
            row = np.zeros(4)
            row[[first_own, first_other, C, E]] = [own, other, 0.98 - own - other, 0.02]
            p[root] = row
            for first, second in (answers[f], answers[1 - f]):
                at1 = (mdp.depth == 1) & (fam == f) & (mdp.tokens[:, 0] == first)
                p[at1] = 0.03
                p[at1, second] = 0.91
            at2 = mdp.depth == 2
            p[at2] = [0.03, 0.03, 0.03, 0.91]
        return TabularPolicy.from_probs(mdp, _rows(mdp, p))

    prompts = tuple([f"A {i}" for i in range(n)] + [f"B {i}" for i in range(n)])
    return TokenMDP(vocab, E, horizon, prompts, batch_verifier=verify, name="two-skills",
                    doc=inspect.getdoc(two_skills), base_factory=base,
                    info={"family": tuple(family.tolist()), "answers": tuple(answers)})


# ------------------------------------------------------------------------------------ scaffold
@_preset("scaffold")
def scaffold(num_tasks: int = 4, answer_length: int = 3, hint_accuracy: float = 0.9,
             slack: int = 0) -> TokenMDP:
    """Scaffold: the teacher solves a task only when the prompt carries a hint.

    Task ``qi`` is solved by one prompt-specific answer of ``answer_length`` letters followed by the
    end token. The world has each task twice, bare (``qi``) and with a hint (``qi hint``). The base
    policy follows the answer with probability ``hint_accuracy`` per step when hinted and guesses
    uniformly when bare. Distilling the hinted teacher into a student that sees only the bare prompt
    is scaffold removal, a form of behavioural consolidation (survey §3.4, §4.4, §5.4, §7.1.4);
    ``mdp.info["hinted"]`` maps each bare prompt to its hinted twin. Prompt weights put all
    evaluation mass on the bare prompts.

    ``slack > 0`` makes a slip recoverable: the horizon grows by ``slack`` tokens and a completion
    is correct when it *ends* with the answer and the end token, so after a wrong token the answer
    can be started again. The hinted teacher then restarts after a slip (it continues the longest
    suffix of its prefix that begins the answer). This is the setting where on-policy distillation
    can beat off-policy: only the student's own rollouts show it the states after its own slips
    (GKD, ref [60]; DAgger, survey ref [53]). ``slack=0`` (default) is the original world.

    Settings: num_tasks (1-8), answer_length (1-5), hint_accuracy in (0.25, 1), slack (0-2).
    """
    _check_int("num_tasks", num_tasks, 1, 8)
    _check_int("answer_length", answer_length, 1, 5)
    _check_prob("hint_accuracy", hint_accuracy, 0.25, 1.0)
    _check_int("slack", slack, 0, 2)
    vocab = ("a", "b", "c", "<eos>")
    E = 3
    rng = np.random.default_rng(1234)
    keys = np.array([rng.integers(0, 3, answer_length) for _ in range(num_tasks)])   # [tasks, L]
    task = np.tile(np.arange(num_tasks), 2)
    hinted = np.arange(2 * num_tasks) >= num_tasks
    L = answer_length

    def verify(prompt, seq):
        k = keys[task[prompt]]
        if slack == 0:
            return ((seq[:, :L] == k).all(1) & (seq[:, L] == E)).astype(float)
        # correct when the completion ends with the answer and the end token
        n = np.argmax(np.concatenate([seq, np.full((len(seq), 1), E)], 1) == E, axis=1)  # eos position
        ok = (n >= L) & (seq[np.arange(len(seq)), np.minimum(n, seq.shape[1] - 1)] == E)
        for t in range(L):
            ok &= seq[np.arange(len(seq)), np.maximum(n - L + t, 0)] == k[:, t]
        return ok.astype(float)

    def base(mdp):
        p = np.full((mdp.num_states, 4), 0.25)
        d = mdp.depth
        h = hinted[mdp.prompt_of]
        k = keys[task[mdp.prompt_of]]
        # the hinted teacher is "on track" when its prefix matches the key so far
        on = np.ones(mdp.num_states, bool)
        for t in range(L):
            on &= (d <= t) | (mdp.tokens[:, min(t, mdp.tokens.shape[1] - 1)] == k[:, t])
        target = np.where(d < L, k[np.arange(mdp.num_states), np.minimum(d, L - 1)], E)
        if slack > 0:   # recoverable: continue the longest suffix of the prefix that starts the answer
            m = _answer_progress(mdp.tokens, d, k, L)
            on = np.ones(mdp.num_states, bool)
            target = np.where(m < L, k[np.arange(mdp.num_states), np.minimum(m, L - 1)], E)
        sel = h & on
        p[sel] = (1 - hint_accuracy) / 3
        p[sel, target[sel]] = hint_accuracy
        bare = ~h
        p[bare] = [0.3, 0.3, 0.3, 0.1]
        p[bare & (d >= L)] = [0.1, 0.1, 0.1, 0.7]
        return TabularPolicy.from_probs(mdp, _rows(mdp, p))

    prompts = tuple([f"q{i}" for i in range(num_tasks)] + [f"q{i} hint" for i in range(num_tasks)])
    weights = np.where(hinted, 0.0, 1.0)
    return TokenMDP(vocab, E, L + 1 + slack, prompts, batch_verifier=verify, prompt_weights=weights,
                    name="scaffold", doc=inspect.getdoc(scaffold), base_factory=base,
                    info={"hinted": tuple(range(num_tasks, 2 * num_tasks)),
                          "keys": tuple(map(tuple, keys.tolist())), "slack": slack})


def _answer_progress(tokens: np.ndarray, depth: np.ndarray, keys: np.ndarray, L: int) -> np.ndarray:
    """Length of the longest suffix of each prefix that is a prefix of its answer, ``[S]``."""
    S = len(depth)
    rows = np.arange(S)
    m = np.zeros(S, dtype=np.int64)
    for j in range(1, L + 1):          # does the prefix end with answer[:j]?
        ok = depth >= j
        for t in range(j):
            ok &= tokens[rows, np.clip(depth - j + t, 0, tokens.shape[1] - 1)] == keys[:, t]
        m = np.where(ok, j, m)
    return m
