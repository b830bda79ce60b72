"""Benchmark of every method's default run (issue 3). Prints figures; asserts nothing about time.

    python tests/benchmarks/bench_methods.py [--threads N]

Wall time of each public method with its default step count, on the hidden-path world (340
states) and the many-paths world (104 states), for the world's tabular base policy and a default
TransformerPolicy (d_model 32, 2 layers). Each figure is the fastest of ``--repeat`` runs after one
warm-up call (the first torch call of a process pays for imports). Goal: tabular runs in seconds,
transformer runs well under a minute on 2 cores.
"""
import argparse
import os
import time

import torch

import toyenv


def runs(mdp, pi):
    demos = toyenv.demonstrations(mdp, 32, seed=0)
    return {
        "sft (100 steps)": lambda: toyenv.sft(pi, demos, seed=0),
        "dpo (100 steps)": lambda: toyenv.dpo(pi, seed=0),
        "rejection_sampling (100)": lambda: toyenv.rejection_sampling(pi, seed=0),
        "self_improve (4x25)": lambda: toyenv.self_improve(pi, seed=0),
        "rl grpo (200 steps)": lambda: toyenv.rl(pi, seed=0),
        "rl reinforce+clip (200)": lambda: toyenv.rl(pi, algo="reinforce", clip=0.2, seed=0),
        "rl exact (200 steps)": lambda: toyenv.rl(pi, exact=True, seed=0),
        "rl process (200 steps)": lambda: toyenv.rl(pi, process=True, seed=0),
        "rl guided (200 steps)": lambda: toyenv.rl(pi, hints={"prob": 0.5, "length": 1}, seed=0),
        "interleaved (200 steps)": lambda: toyenv.interleaved(pi, demos, seed=0),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}")
    import warnings
    warnings.simplefilter("ignore")
    for world in ("hidden-path", "many-paths"):
        mdp = toyenv.make(world)
        policies = {"tabular": mdp.base_policy(), "transformer": toyenv.TransformerPolicy(mdp, seed=0)}
        toyenv.rl(policies["transformer"], steps=2)                 # warm-up: imports, allocator
        print(f"\n{world}: {mdp.num_states} states, transformer {policies['transformer'].num_parameters()} parameters")
        print(f"{'method':28s} {'tabular s':>10s} {'transformer s':>14s}")
        table = {k: runs(mdp, pi) for k, pi in policies.items()}
        for name in table["tabular"]:
            cells = []
            for kind in ("tabular", "transformer"):
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    table[kind][name]()
                    best = min(best, time.perf_counter() - t0)
                cells.append(best)
            print(f"{name:28s} {cells[0]:10.2f} {cells[1]:14.2f}")


if __name__ == "__main__":
    main()
