"""Policies over the token tree: one protocol, two implementations (survey §2.1).

Every policy gives ``log_probs()``, a differentiable ``[S, V]`` tensor of log pi(a|s) for every
non-terminal state, computed in one pass. Everything else (``probs``, ``sample``, ``log_prob`` of
sequences, exact occupancy, KL, ...) is written once on top of it.

- :class:`TabularPolicy`: one logit row per state (``share="state"``), or one row per token prefix
  shared by all prompts (``share="prefix"``, a prompt-agnostic policy), the simplest case of shared
  parameters.
- :class:`TransformerPolicy`: a tiny causal transformer over prompt words + prefix tokens. All states
  are scored by one forward pass over the deepest prefixes (each shallower state is a prefix of one).
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .tree import TokenMDP, sample_pairs_from_probs

_NEG = -1e3  # logit standing in for probability 0: exp(-1000) == 0.0 in float64, gradients stay finite


class Policy:
    """The policy protocol. Subclasses implement :meth:`log_probs` and :meth:`parameters`."""

    mdp: TokenMDP
    _read_only: tuple = ("mdp",)
    """Attributes a copy shares instead of copying: the world and index tensors, never written to."""

    def log_probs(self) -> torch.Tensor:
        """log pi(a|s) for every non-terminal state, differentiable. ``[S, V]`` float64."""
        raise NotImplementedError

    def parameters(self) -> list:
        raise NotImplementedError

    # -- written once for every policy -------------------------------------------------------
    def probs(self) -> np.ndarray:
        """pi(a|s) for every non-terminal state as a numpy array ``[S, V]``; rows sum to 1."""
        with torch.no_grad():
            return self.log_probs().exp().numpy()

    def log_prob(self, seqs, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Summed log pi(y|x) of complete sequences ``[(prompt_index, tokens), ...]`` -> ``[N]``.

        Differentiable. ``seqs`` may also be terminal pairs ``(states, actions)`` as arrays.
        """
        states, actions = as_pairs(self.mdp, seqs)
        lp = self.log_probs() if log_probs is None else log_probs
        return sequence_log_prob(self.mdp, lp, states, actions)

    def sample(self, n: int, seed: int = 0, prompts=None) -> list:
        """``n`` complete trajectories ``[(prompt_index, tokens), ...]``, reproducible by ``seed``.

        ``prompts``: None draws prompts from D(x); an int or an array of n ints fixes them.
        """
        return self.mdp.decode(*sample_pairs_from_probs(self.mdp, self.probs(), n, seed=seed, prompts=prompts))

    def copy(self) -> "Policy":
        """An independent trainable copy."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo):
        """``copy.deepcopy`` that shares the read-only attributes (:attr:`_read_only`) and copies
        modules with :func:`_copy_module`; every parameter is still cloned.

        The same copy as a plain deepcopy, a few times faster for a transformer (a plain deepcopy
        spends most of its time rebuilding the ~300 empty hook dicts of the modules)."""
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name in self._read_only:
            v = self.__dict__.get(name)
            if v is not None:
                memo.setdefault(id(v), v)
        for k, v in self.__dict__.items():
            new.__dict__[k] = _copy_module(v, memo) if isinstance(v, nn.Module) else copy.deepcopy(v, memo)
        return new

    def frozen(self) -> "Policy":
        """A copy whose parameters do not require gradients: a reference policy."""
        out = copy.deepcopy(self)
        for p in out.parameters():
            p.requires_grad_(False)
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_ATOMIC = (type(None), bool, int, float, str, type(len), type(lambda: 0))


def _copy_module(m: nn.Module, memo: dict) -> nn.Module:
    """``copy.deepcopy(m, memo)`` for a torch module, without deep-copying empty containers.

    Follows deepcopy's own steps for a module (``__getstate__``, a deep copy of that state,
    ``__setstate__`` on a new instance), but gives an empty dict or set a fresh empty one and keeps
    numbers, strings and functions as they are (deepcopy returns those unchanged too). A module class
    with its own copy or pickle protocol goes through ``copy.deepcopy``."""
    y = memo.get(id(m))
    if y is not None:
        return y
    cls = type(m)
    if (getattr(cls, "__deepcopy__", None) is not None or cls.__reduce_ex__ is not object.__reduce_ex__
            or cls.__reduce__ is not object.__reduce__ or cls.__getstate__ is not nn.Module.__getstate__):
        return copy.deepcopy(m, memo)
    y = cls.__new__(cls)
    memo[id(m)] = y
    state = {}
    for k, v in m.__getstate__().items():
        t = type(v)
        if k == "_modules" and t is dict:
            state[k] = {n: None if c is None else _copy_module(c, memo) for n, c in v.items()}
        elif t in _ATOMIC:
            state[k] = v
        elif t in (dict, OrderedDict, set) and not v:
            state[k] = t()
        else:
            state[k] = copy.deepcopy(v, memo)
    y.__setstate__(state)
    return y


def as_pairs(mdp: TokenMDP, seqs) -> tuple[np.ndarray, np.ndarray]:
    """Accept sequences or terminal pairs; return terminal pairs."""
    if (isinstance(seqs, tuple) and len(seqs) == 2 and isinstance(seqs[0], np.ndarray)
            and isinstance(seqs[1], np.ndarray)):
        s, a = (np.asarray(x, dtype=np.int64) for x in seqs)
        if s.shape != a.shape or np.any(~mdp.terminal[s, a]):
            raise ValueError("terminal pairs must be equal-length arrays of (state, action) that end "
                             "a sequence; use mdp.encode(sequences) to build them")
        return s, a
    return mdp.encode(seqs)


def sequence_log_prob(mdp: TokenMDP, log_probs: torch.Tensor, states, actions) -> torch.Tensor:
    """Sum of log pi along the path to each terminal pair: ``[N]``."""
    states = torch.as_tensor(states, dtype=torch.long)
    actions = torch.as_tensor(actions, dtype=torch.long)
    total = log_probs[states, actions]
    s = states
    parent = torch.as_tensor(mdp.parent)
    last = torch.as_tensor(mdp.last_token)
    for _ in range(mdp.horizon - 1):
        has_parent = parent[s] >= 0
        if not has_parent.any():
            break
        p = torch.where(has_parent, parent[s], s)
        total = total + torch.where(has_parent, log_probs[p, last[s].clamp(min=0)], 0.0)
        s = p
    return total


class TabularPolicy(Policy):
    """One row of logits per state (or per prefix shared across prompts).

    Args:
        mdp: the world.
        logits: optional initial logits, ``[S, V]`` (or ``[num_prefixes, V]`` with share="prefix").
        seed: seeds the random initial logits when ``logits`` is not given.
        scale: standard deviation of the random initial logits.
        share: "state" (one row per state, no sharing) or "prefix" (one row per token prefix,
            shared by every prompt: the policy cannot tell prompts apart).
    """

    _read_only = ("mdp", "_rows")

    def __init__(self, mdp: TokenMDP, logits=None, *, seed: int = 0, scale: float = 1.0,
                 share: str = "state"):
        if not isinstance(mdp, TokenMDP):
            raise TypeError(f"the first argument must be a TokenMDP (toyenv.make(...)), got {type(mdp).__name__}")
        if share not in ("state", "prefix"):
            raise ValueError(f"share must be 'state' or 'prefix', got {share!r}")
        self.mdp, self.share = mdp, share
        rows = mdp.num_states if share == "state" else mdp.num_prefixes
        if logits is None:
            g = torch.Generator().manual_seed(int(seed))
            logits = scale * torch.randn(rows, mdp.vocab_size, generator=g, dtype=torch.float64)
        logits = torch.as_tensor(np.asarray(logits, dtype=np.float64))
        if logits.shape != (rows, mdp.vocab_size):
            raise ValueError(f"logits must have shape {(rows, mdp.vocab_size)} for share={share!r}, "
                             f"got {tuple(logits.shape)}")
        if not torch.isfinite(logits).all():
            raise ValueError("logits must be finite; use from_probs for probabilities with zeros")
        self.logits = nn.Parameter(logits.clone())
        self._rows = torch.as_tensor(np.arange(mdp.num_states) if share == "state" else mdp.prefix_id)

    @classmethod
    def from_probs(cls, mdp: TokenMDP, probs, *, share: str = "state") -> "TabularPolicy":
        """Build from probabilities ``[S, V]`` (rows summing to 1; zeros allowed)."""
        p = np.asarray(probs, dtype=np.float64)
        rows = mdp.num_states if share == "state" else mdp.num_prefixes
        if p.shape != (rows, mdp.vocab_size):
            raise ValueError(f"probs must have shape {(rows, mdp.vocab_size)}, got {p.shape}")
        if np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-9):
            raise ValueError("probs must be non-negative with rows summing to 1 (normalise each row)")
        with np.errstate(divide="ignore"):
            logits = np.where(p > 0, np.log(np.where(p > 0, p, 1)), _NEG)
        return cls(mdp, logits, share=share)

    def log_probs(self) -> torch.Tensor:
        return F.log_softmax(self.logits, dim=-1)[self._rows]

    def parameters(self) -> list:
        return [self.logits]

    def __repr__(self):
        return f"TabularPolicy({self.mdp.name!r}, share={self.share!r}, {self.num_parameters()} parameters)"


class _TinyCausalLM(nn.Module):
    def __init__(self, n_in, n_out, length, d_model, n_layers, n_heads):
        super().__init__()
        self.embed = nn.Embedding(n_in, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, x):  # x [B, L] -> logits [B, L, n_out]
        h = self.embed(x) + self.pos[: x.shape[1]]
        h = self.blocks(h, mask=self.mask[: x.shape[1], : x.shape[1]], is_causal=True)
        return self.head(self.norm(h))


class TransformerPolicy(Policy):
    """A tiny causal transformer over ``[prompt words] SEP [prefix tokens]`` (PyTorch, CPU).

    Parameters are shared across all states, so an update on some prefixes moves others: this is
    where transfer and forgetting come from (survey §3.3.4). ``probs()`` is exact: one batched
    forward pass over the deepest prefixes reads off every state.

    Args:
        mdp: the world.
        seed: seeds the initial weights (the global torch RNG is left as it was).
        d_model, n_layers, n_heads: model size (defaults give a few thousand to ~20k parameters).
    """

    _read_only = ("mdp", "_x", "_row", "_col")

    def __init__(self, mdp: TokenMDP, seed: int = 0, *, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4):
        if not isinstance(mdp, TokenMDP):
            raise TypeError(f"the first argument must be a TokenMDP (toyenv.make(...)), got {type(mdp).__name__}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.mdp = mdp
        self.config = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, seed=seed)
        words = [p.split() for p in mdp.prompts]
        self.words = sorted({w for ws in words for w in ws})
        pad, sep = 0, 1
        w_id = {w: i + 2 for i, w in enumerate(self.words)}
        tok0 = 2 + len(self.words)                       # output token t has input id tok0 + t
        P = max(len(ws) for ws in words)                 # prompts are left-padded to P words
        T = mdp.horizon
        prompt_ids = np.full((mdp.num_prompts, P + 1), pad)
        for i, ws in enumerate(words):
            prompt_ids[i, P - len(ws):P] = [w_id[w] for w in ws]
        prompt_ids[:, P] = sep
        # every state is a prefix of a deepest state: follow the first non-end token downwards
        deep_first = mdp.level_start[T - 1]
        first = next(a for a in range(mdp.vocab_size) if a != mdp.eos)
        desc = np.arange(mdp.num_states)
        for _ in range(T - 1):
            c = mdp.child[desc, first]
            desc = np.where(c >= 0, c, desc)
        deep = np.arange(deep_first, mdp.num_states)
        body = mdp.tokens[deep, : T - 1] + tok0 if T > 1 else np.zeros((len(deep), 0), int)
        x = np.concatenate([prompt_ids[mdp.prompt_of[deep]], body], axis=1)
        self._x = torch.as_tensor(x, dtype=torch.long)                              # [D, P+T]
        self._row = torch.as_tensor(desc - deep_first)                               # [S]
        self._col = torch.as_tensor(P + mdp.depth)                                   # [S]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.model = _TinyCausalLM(tok0 + mdp.vocab_size, mdp.vocab_size, x.shape[1],
                                       d_model, n_layers, n_heads)

    def log_probs(self) -> torch.Tensor:
        logits = self.model(self._x)[self._row, self._col]          # [S, V]
        return F.log_softmax(logits.double(), dim=-1)

    def parameters(self) -> list:
        return list(self.model.parameters())

    def __repr__(self):
        c = self.config
        return (f"TransformerPolicy({self.mdp.name!r}, d_model={c['d_model']}, n_layers={c['n_layers']}, "
                f"{self.num_parameters()} parameters)")
