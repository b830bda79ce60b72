"""Benchmark of the exact passes (issue 2). Prints figures; asserts nothing about time.

    python tests/benchmarks/bench_exact.py

- exact occupancy throughput, in state-action entries per second, on a tree of >= 10^6 entries
  (goal: >= 10^7 entries/s);
- the time of one exact probs() pass of the transformer over all states of each preset.
"""
import statistics
import time

import toyenv


def timed(fn, repeat=7):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    mdp = toyenv.make("hidden-path", horizon=9)
    entries = mdp.num_states * mdp.vocab_size
    pi = toyenv.TabularPolicy(mdp, seed=0)
    p = pi.probs()
    from toyenv.core.exact import occupancy_from_probs, reach_from_probs
    t_occ = timed(lambda: occupancy_from_probs(mdp, p))
    t_reach = timed(lambda: reach_from_probs(mdp, p))
    t_pol = timed(lambda: toyenv.occupancy(pi))
    print(f"tree: {mdp.num_states:,} states x {mdp.vocab_size} tokens = {entries:,} entries")
    print(f"occupancy (Eq. 2, eta=1/T, from probs): {t_occ * 1e3:8.1f} ms  "
          f"-> {entries / t_occ:,.0f} entries/s")
    print(f"reach only:                             {t_reach * 1e3:8.1f} ms  "
          f"-> {entries / t_reach:,.0f} entries/s")
    print(f"occupancy(policy) incl. softmax:        {t_pol * 1e3:8.1f} ms  "
          f"-> {entries / t_pol:,.0f} entries/s")
    for name in toyenv.presets():
        m = toyenv.make(name)
        tp = toyenv.TransformerPolicy(m, seed=0)
        t = timed(tp.probs)
        print(f"transformer probs() over all {m.num_states:5d} states of {name:12s}: {t * 1e3:7.2f} ms "
              f"({tp.num_parameters():,} parameters)")
    big = toyenv.make("hidden-path", horizon=6)
    tp = toyenv.TransformerPolicy(big, seed=0)
    print(f"transformer probs() over all {big.num_states:,} states of hidden-path(horizon=6): "
          f"{timed(tp.probs, 3) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
