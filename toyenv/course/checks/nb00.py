"""Exercise checks of Notebook 00, start here: counting the states of the prefix tree."""
from __future__ import annotations

import numpy as np

from .framework import Case, Failed, compare, exercise


def _count_states(P, V, T, *, b=None, lo=0, hi=None, prompts=True):
    b = V - 1 if b is None else b
    hi = T if hi is None else hi
    return (P if prompts else 1) * sum(b**t for t in range(lo, hi))


@exercise("00.1", notebook="00_start_here", title="Count the states of the prefix tree",
          hints=("A state is a prompt plus a prefix that can still grow. Which prefixes can still grow: how "
                 "long can they be, and which tokens may they contain?",
                 "Count per prompt, by prefix length t, from 0 (the empty prefix, the root) up to horizon - "
                 "1: a prefix never contains the end token, so each of its t positions has vocab_size - 1 "
                 "choices, (vocab_size - 1)^t prefixes in all. Add the lengths up, then multiply by the "
                 "number of prompts: every prompt has its own tree."),
          reread="notebook 00's section on states, actions and trajectories (the prefix tree of one prompt)",
          forbid=("toyenv.tree_size", "toyenv.core.tree.tree_size", "toyenv.course.checks.nb00._count_states"),
          own="count the prefixes yourself")
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
