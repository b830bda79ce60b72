"""The token MDP: prompts, tokens as actions, prefixes as states, a verifier (survey §2.1, §2.3).

A state is a prompt plus a prefix, ``s_t = (x, y_<t)``; an action is the next token. A trajectory
ends when the end token is emitted or when it holds ``horizon`` tokens. The whole prefix tree is
enumerated once into flat arrays, ordered by depth, so that every exact quantity is a handful of
vectorised passes, one per depth level.

Every complete trajectory is the last step of exactly one *terminal pair* ``(s, a)``: the state
before the final token and the final token. Terminal pairs are therefore the natural index of
trajectories, and the arrays ``terminal``, ``rewards`` and ``correct`` are ``[S, V]`` masks over
state-action pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

DEFAULT_MAX_STATES = 2_000_000
"""Largest tree (non-terminal states) that is enumerated without ``max_states=`` being raised."""

Verifier = Callable[[int, tuple], float]
BatchVerifier = Callable[[np.ndarray, np.ndarray], np.ndarray]


def tree_size(num_prompts: int, vocab_size: int, horizon: int) -> int:
    """Number of non-terminal states: prefixes of length < horizon with no end token."""
    b = vocab_size - 1
    return num_prompts * sum(b**t for t in range(horizon))


@dataclass(eq=False)
class TokenMDP:
    """A finite token world whose prefix tree is enumerated exactly.

    Args:
        vocab: token strings, one of them the end token.
        eos: id of the end token in ``vocab``.
        horizon: T, the largest number of tokens in a completion (the end token counts).
        prompts: prompt strings; words separated by spaces are the prompt's tokens
            (the transformer policy reads them).
        prompt_weights: D(x), non-negative, normalised here. Uniform when omitted.
        verifier: ``r(prompt_index, tokens) -> float`` on complete sequences (tokens include the
            trailing end token when there is one).
        batch_verifier: optional vectorised verifier ``(prompt_index[N], tokens[N, T]) -> [N]``,
            tokens padded with -1; used instead of ``verifier`` to score the tree quickly.
        success_threshold: a completion is *correct* when its reward is at least this.
        name: a label; ``doc`` says what the world is for.
        max_states: enumeration limit; a larger tree raises an error giving both numbers.
    """

    vocab: tuple
    eos: int
    horizon: int
    prompts: tuple
    verifier: Verifier | None = None
    prompt_weights: np.ndarray | None = None
    batch_verifier: BatchVerifier | None = None
    success_threshold: float = 1.0
    name: str = "custom"
    doc: str = ""
    max_states: int = DEFAULT_MAX_STATES
    base_factory: Callable | None = field(default=None, repr=False)
    info: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.vocab = tuple(str(t) for t in self.vocab)
        self.prompts = tuple(str(p) for p in self.prompts)
        V, P, T = len(self.vocab), len(self.prompts), self.horizon
        if V < 2 or len(set(self.vocab)) != V:
            raise ValueError(f"vocab must hold at least 2 distinct tokens, got {self.vocab!r}")
        if not (isinstance(self.eos, (int, np.integer)) and 0 <= self.eos < V):
            raise ValueError(f"eos must be a token id in [0, {V}), got {self.eos!r}")
        if not (isinstance(T, (int, np.integer)) and T >= 1):
            raise ValueError(f"horizon must be an integer >= 1, got {T!r}")
        if P == 0:
            raise ValueError("a world needs at least one prompt")
        w = np.ones(P) if self.prompt_weights is None else np.asarray(self.prompt_weights, float)
        if w.shape != (P,) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"prompt_weights must be {P} non-negative numbers with a positive sum, got {w!r}")
        self.prompt_weights = w / w.sum()
        if self.verifier is None and self.batch_verifier is None:
            raise ValueError("a world needs a verifier: pass verifier=f(prompt_index, tokens)")
        size = tree_size(P, V, T)
        if size > self.max_states:
            raise ValueError(
                f"the prefix tree of this world has {size:,} states, above the enumeration limit "
                f"of {self.max_states:,}: lower horizon, the vocabulary or the number of prompts, "
                f"or pass max_states={size} if you have the memory (about {size * V * 60 / 1e9:.1f} GB)")
        self._enumerate()
        self._score()

    # ------------------------------------------------------------------ enumeration
    def _enumerate(self):
        V, P, T, eos = self.vocab_size, len(self.prompts), self.horizon, self.eos
        emit = np.array([a for a in range(V) if a != eos])  # tokens that keep the sequence going
        parents, lasts, prompt = [np.full(P, -1)], [np.full(P, -1)], [np.arange(P)]
        level_start = [0]
        n = P
        for d in range(1, T):
            prev = np.arange(level_start[-1], n)
            parents.append(np.repeat(prev, len(emit)))
            lasts.append(np.tile(emit, len(prev)))
            prompt.append(np.repeat(prompt[-1], len(emit)))
            level_start.append(n)
            n += len(prev) * len(emit)
        level_start.append(n)
        self.parent = np.concatenate(parents)                 # [S] -1 at roots
        self.last_token = np.concatenate(lasts)               # [S] -1 at roots
        self.prompt_of = np.concatenate(prompt)               # [S]
        self.level_start = np.array(level_start)              # [T+1] states of depth d: [ls[d], ls[d+1])
        S = n
        self.depth = np.repeat(np.arange(T), np.diff(self.level_start))  # [S]
        self.child = np.full((S, V), -1)                      # [S, V] -1 where (s, a) ends the sequence
        nonroot = np.arange(P, S)
        self.child[self.parent[nonroot], self.last_token[nonroot]] = nonroot
        self.terminal = self.child < 0                        # [S, V]
        # tokens[s, :depth] is the prefix of state s
        self.tokens = np.full((S, max(T - 1, 1)), -1)
        for d in range(1, T):
            sl = slice(self.level_start[d], self.level_start[d + 1])
            self.tokens[sl, : d - 1] = self.tokens[self.parent[sl], : d - 1]
            self.tokens[sl, d - 1] = self.last_token[sl]
        self.roots = np.arange(P)
        # the same prefix under every prompt shares one id: the row of a prompt-agnostic policy
        per_prompt = np.diff(self.level_start) // P     # states per prompt at each depth
        offset = np.concatenate([[0], np.cumsum(per_prompt)])
        pos = np.arange(S) - self.level_start[self.depth]
        self.prefix_id = offset[self.depth] + pos - self.prompt_of * per_prompt[self.depth]
        self.num_prefixes = int(offset[-1])

    def _score(self):
        s, a = np.nonzero(self.terminal)
        seq = np.full((len(s), self.horizon), -1)
        if self.horizon > 1:
            seq[:, : self.horizon - 1] = self.tokens[s, : self.horizon - 1]
        seq[np.arange(len(s)), self.depth[s]] = a
        if self.batch_verifier is not None:
            r = np.asarray(self.batch_verifier(self.prompt_of[s], seq), float)
        else:
            r = np.array([self.verifier(int(p), tuple(int(t) for t in row[row >= 0]))
                          for p, row in zip(self.prompt_of[s], seq)], float)
        if r.shape != (len(s),) or not np.all(np.isfinite(r)):
            raise ValueError("the verifier must return one finite number per complete sequence")
        self.rewards = np.zeros((self.num_states, self.vocab_size))   # [S, V], 0 off terminal pairs
        self.rewards[s, a] = r
        self.correct = self.terminal & (self.rewards >= self.success_threshold)  # [S, V]
        self.length = np.where(self.terminal, self.depth[:, None] + 1, 0)     # [S, V] T(y)

    # ------------------------------------------------------------------ the contract
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def num_prompts(self) -> int:
        return len(self.prompts)

    @property
    def num_states(self) -> int:
        """Non-terminal states: prefixes that can still emit a token."""
        return len(self.parent)

    @property
    def num_trajectories(self) -> int:
        """Complete trajectories, one per terminal pair."""
        return int(self.terminal.sum())

    def prefix(self, i: int) -> tuple:
        """State ``i`` as ``(prompt_index, tuple_of_token_ids)``."""
        i = self._check_state(i)
        return int(self.prompt_of[i]), tuple(int(t) for t in self.tokens[i, : self.depth[i]])

    def state_index(self, prompt_index: int, tokens: Sequence[int]) -> int:
        """Index of the state ``(prompt, tokens)``; inverse of :meth:`prefix`."""
        s = self._check_prompt(prompt_index)
        tokens = self._as_tokens(tokens)
        for t, a in enumerate(tokens):
            c = self.child[s, a]
            if c < 0:
                what = "the end token" if a == self.eos else f"the horizon ({self.horizon})"
                raise ValueError(f"{self.render(tokens)!r} is not a state: it is ended by {what} "
                                 f"at position {t}; a state is an unfinished prefix")
            s = c
        return int(s)

    def reward(self, prompt_index: int, tokens: Sequence[int]) -> float:
        """Verifier score r(x, y) of a complete sequence."""
        s, a = self.encode([(prompt_index, tokens)])
        return float(self.rewards[s[0], a[0]])

    def is_correct(self, prompt_index: int, tokens: Sequence[int]) -> bool:
        s, a = self.encode([(prompt_index, tokens)])
        return bool(self.correct[s[0], a[0]])

    def levels(self, reverse: bool = False):
        """``(depth, slice of the states at that depth)`` for every depth, root level first.

        The one iteration behind every forward (``reverse=False``) or backward pass of the package.
        """
        depths = range(self.horizon - 1, -1, -1) if reverse else range(self.horizon)
        for d in depths:
            yield d, slice(int(self.level_start[d]), int(self.level_start[d + 1]))

    def level_pairs(self) -> list:
        """``[(slice of the states at depth d, their parents, flat index parent·V + last token), ...]``
        for d = 1..T-1: the parent pair of every state, read as ``p.reshape(-1)[flat]`` by the forward
        pass. Computed once per world."""
        cached = self.__dict__.get("_level_pairs")
        if cached is None:
            cached = []
            for d, sl in self.levels():
                if d:
                    par = self.parent[sl]
                    cached.append((sl, par, par * self.vocab_size + self.last_token[sl]))
            self.__dict__["_level_pairs"] = cached
        return cached

    def base_policy(self):
        """The world's "pretrained" policy (a fresh copy each call)."""
        if self.base_factory is None:
            raise ValueError(f"the world {self.name!r} has no base policy: build it with "
                             "TokenMDP(..., base_factory=lambda mdp: toyenv.TabularPolicy(mdp)) or start "
                             "from toyenv.TabularPolicy(mdp) directly; every preset of toyenv.make has one")
        return self.base_factory(self)

    # ------------------------------------------------------------------ sequences
    def encode(self, seqs) -> tuple[np.ndarray, np.ndarray]:
        """Complete sequences ``[(prompt_index, tokens), ...]`` -> terminal pairs ``(states, actions)``.

        A malformed sequence raises an error saying what is wrong with it.
        """
        if isinstance(seqs, tuple) and len(seqs) == 2 and isinstance(seqs[0], (int, np.integer)):
            raise TypeError("pass a list of (prompt_index, tokens) pairs, e.g. [(0, (1, 2, eos))], "
                            "not a single pair")
        states, actions = [], []
        for k, item in enumerate(seqs):
            try:
                p, toks = item
            except (TypeError, ValueError):
                raise TypeError(f"sequence {k} is {item!r}; each sequence must be a pair "
                                "(prompt_index, tuple_of_token_ids), as sample() returns") from None
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < self.num_prompts:
                # checked first: with a bad prompt the tokens are not the mistake
                raise ValueError(f"sequence {k}: prompt_index must be an integer in [0, {self.num_prompts}), "
                                 f"got {p!r}; each sequence is (prompt_index, tokens), prompt first")
            toks = self._as_tokens(toks)
            if len(toks) == 0:
                raise ValueError(f"sequence {k} is empty; a completion has at least one token")
            if len(toks) > self.horizon:
                raise ValueError(f"sequence {k} has {len(toks)} tokens, more than the horizon "
                                 f"{self.horizon}: truncate it")
            if self.eos in toks[:-1]:
                raise ValueError(f"sequence {k} ({self.render(toks)!r}) continues after the end token: "
                                 "cut it at the first end token")
            if toks[-1] != self.eos and len(toks) < self.horizon:
                raise ValueError(f"sequence {k} ({self.render(toks)!r}) is unfinished: end it with the "
                                 f"end token {self.eos} ({self.vocab[self.eos]!r}) or fill the horizon")
            states.append(self.state_index(p, toks[:-1]))
            actions.append(toks[-1])
        return np.array(states, dtype=np.int64), np.array(actions, dtype=np.int64)

    def decode(self, states, actions) -> list:
        """Terminal pairs -> ``[(prompt_index, tokens), ...]``."""
        st, ac = np.asarray(states), np.asarray(actions)
        if st.ndim == ac.ndim == 1 and st.dtype.kind in "iu" and ac.dtype.kind in "iu":
            n = min(len(st), len(ac))                # zip's length, as below
            st, ac = st[:n], ac[:n]
            bad = np.nonzero((st < 0) | (st >= self.num_states))[0]
            if bad.size:
                self._check_state(int(st[bad[0]]))   # raises the error prefix() gives
            rows, depth = self.tokens[st].tolist(), self.depth[st].tolist()
            return [(x, tuple(r[:d]) + (a,)) for x, r, d, a in zip(self.prompt_of[st].tolist(), rows, depth,
                                                                    ac.tolist())]
        out = []
        for s, a in zip(st, ac):
            p, toks = self.prefix(int(s))
            out.append((p, toks + (int(a),)))
        return out

    def render(self, tokens) -> str:
        """Token ids as a readable string."""
        return " ".join(self.vocab[t] if 0 <= t < self.vocab_size else f"<{t}?>" for t in tokens)

    def trajectories(self) -> tuple[np.ndarray, np.ndarray]:
        """All complete trajectories as terminal pairs ``(states, actions)``, in tree order."""
        return np.nonzero(self.terminal)

    @property
    def signature(self) -> tuple:
        """What two worlds must share for their policies to be comparable."""
        return (self.vocab, self.eos, self.horizon, self.prompts,
                tuple(np.round(self.prompt_weights, 15)))

    # ------------------------------------------------------------------ validation helpers
    def _check_state(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_states:
            raise IndexError(f"state index must be an integer in [0, {self.num_states}), got {i!r}")
        return int(i)

    def _check_prompt(self, p) -> int:
        if not isinstance(p, (int, np.integer)) or not 0 <= p < self.num_prompts:
            raise ValueError(f"prompt_index must be an integer in [0, {self.num_prompts}), got {p!r}")
        return int(p)

    def _as_tokens(self, tokens) -> tuple:
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be token ids, not the string {tokens!r}; "
                            f"ids are positions in mdp.vocab = {self.vocab}")
        try:
            toks = tuple(int(t) for t in tokens)
        except (TypeError, ValueError):
            raise TypeError(f"tokens must be a sequence of token ids, got {tokens!r}") from None
        bad = [t for t in toks if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got {bad}")
        return toks

    def __repr__(self):
        return (f"TokenMDP({self.name!r}: {self.num_prompts} prompts, vocab {self.vocab}, "
                f"horizon {self.horizon}, {self.num_states} states, "
                f"{self.num_trajectories} trajectories)")


def check_same_world(mdp: TokenMDP, other: TokenMDP, what: str = "policy"):
    """Raise a clear error when two objects belong to different worlds."""
    if mdp is other:
        return
    if mdp.signature != other.signature:
        raise ValueError(f"this {what} belongs to another world ({other!r}) than the one expected "
                         f"({mdp!r}); build both from the same toyenv.make(...) call")


def sample_pairs_from_probs(mdp: TokenMDP, p: np.ndarray, n: int, seed: int = 0, prompts=None):
    """Sample terminal pairs from a probability array ``[S, V]``, vectorised by depth level.

    ``prompts``: None draws prompts from D(x); an int or ``n`` ints fix them. Same seed, same draws.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    if prompts is None:
        x = rng.choice(mdp.num_prompts, size=n, p=mdp.prompt_weights)
    else:
        x = np.broadcast_to(np.asarray(prompts, dtype=np.int64), (n,)).copy()
        if np.any((x < 0) | (x >= mdp.num_prompts)):
            raise ValueError(f"prompts must be indices in [0, {mdp.num_prompts}), got {prompts!r}")
    return sample_from(mdp, p, mdp.roots[x], rng)


def sample_from(mdp: TokenMDP, p: np.ndarray, start, rng: np.random.Generator):
    """Complete trajectories from given start states ``[B]`` under ``p [S, V]``, as terminal pairs.

    One vectorised step per depth level; ``rng`` is a numpy Generator (the caller's).
    """
    s = np.asarray(start, dtype=np.int64).copy()
    n = len(s)
    out_s, out_a = np.empty(n, np.int64), np.empty(n, np.int64)
    active = np.arange(n)
    cum = np.cumsum(p, axis=1)
    child, last = mdp.child, mdp.vocab_size - 1
    for _ in range(mdp.horizon):
        if active.size == 0:
            break
        st = s[active]
        cs = cum[st]
        u = rng.random(active.size) * cs[:, -1]
        a = np.minimum((cs <= u[:, None]).sum(1), last)
        nxt = child[st, a]
        done = nxt < 0
        if done.all():                           # the last level of the tree: every rollout ends
            out_s[active], out_a[active] = st, a
            break
        go = ~done
        out_s[active[done]], out_a[active[done]] = st[done], a[done]
        s[active[go]] = nxt[go]
        active = active[go]
    return out_s, out_a


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
