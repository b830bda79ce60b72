"""Brute-force twins of the exact quantities: walk every complete trajectory with plain recursion.

Independent of the tree arrays: it only asks the policy for pi(.|s) through mdp.state_index and
the verifier through mdp.reward, and sums over trajectories as the survey's definitions read.
"""
import math

import numpy as np


def trajectories(mdp, probs):
    """Yield (prompt, tokens, prob, visited [(state, action), ...]) for every complete trajectory."""
    for x in range(mdp.num_prompts):
        stack = [((), 1.0, [])]
        while stack:
            toks, pr, path = stack.pop()
            s = mdp.state_index(x, toks)
            for a in range(mdp.vocab_size):
                q = pr * probs[s, a]
                t2, p2 = toks + (a,), path + [(s, a)]
                if a == mdp.eos or len(t2) == mdp.horizon:
                    yield x, t2, q, p2
                else:
                    stack.append((t2, q, p2))


def quantities(mdp, probs, k=(1, 4, 64)):
    S, V = mdp.num_states, mdp.vocab_size
    occ = np.zeros((S, V))
    visits = np.zeros((S, V))
    succ = np.zeros(mdp.num_prompts)
    traj = {}
    for x, toks, q, path in trajectories(mdp, probs):
        w = mdp.prompt_weights[x] * q
        for s, a in path:
            occ[s, a] += w / len(toks)          # eta_t = 1/T(y), Eq. 2
            visits[s, a] += w
        if mdp.reward(x, toks) >= mdp.success_threshold:
            succ[x] += q
        traj[(x, toks)] = q
    pass_k = {kk: float(sum(mdp.prompt_weights[x] * (1 - (1 - succ[x]) ** kk) for x in range(mdp.num_prompts)))
              for kk in k}
    return dict(occ=occ, visits=visits, success=succ, traj=traj, pass_k=pass_k)


def seq_kl(mdp, p, q):
    """sum_x D(x) sum_y p(y|x) log p(y|x)/q(y|x) over trajectories."""
    tp = {(x, t): pr for x, t, pr, _ in trajectories(mdp, p)}
    tq = {(x, t): pr for x, t, pr, _ in trajectories(mdp, q)}
    total = 0.0
    for key, pr in tp.items():
        if pr > 0:
            total += mdp.prompt_weights[key[0]] * pr * (math.log(pr) - math.log(tq[key]))
    return total


def success_from(mdp, probs, x, toks):
    """P(correct | prefix) by enumerating the subtree below it."""
    total = 0.0
    s = mdp.state_index(x, toks)
    for a in range(mdp.vocab_size):
        t2 = toks + (a,)
        if a == mdp.eos or len(t2) == mdp.horizon:
            total += probs[s, a] * (mdp.reward(x, t2) >= mdp.success_threshold)
        else:
            total += probs[s, a] * success_from(mdp, probs, x, t2)
    return total
