"""Benchmark of the distillation, fitting, RLHF and pipeline functions (issue 3). Prints figures;
asserts nothing about time.

    python tests/benchmarks/bench_methods_m2.py [--threads N] [--repeat R]

Wall time of each default run, for the world's tabular base policy and a transformer, after one
warm-up call. Also the cost of torch's thread count for these tiny models: the same 100-step fit
with 1 and with 2 intra-op threads (``toyenv.fit.single_thread`` is what distill, fit, rlhf and
pipeline use).
"""
import argparse
import os
import time
import warnings

import torch

import toyenv
from toyenv.methods.fit import clear_cache, fit


def timed(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads outside single_thread()")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    os.environ.pop("TOYENV_CACHE_DIR", None)        # time the fit itself, not a load from the disk cache
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}")
    two = toyenv.make("two-skills")
    fit(toyenv.TransformerPolicy(two, seed=0), two.base_policy(), steps=2)        # warm-up

    print("\nthreads for a tiny transformer (two-skills fit, 100 steps):")
    before = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        t = timed(lambda: toyenv.train(toyenv.TransformerPolicy(two, seed=0),
                                       lambda pi, lp, st, rng: (-(lp.exp().detach() * lp).sum(), {}),
                                       steps=100, lr=1e-3, num_snapshots=2), args.repeat)
        print(f"  {n} thread(s): {t:6.2f} s")
    torch.set_num_threads(before)

    print("\nbase_transformer (fit to the base policy, default 300 steps; cached afterwards):")
    for name in toyenv.presets():
        mdp = toyenv.make(name)
        clear_cache()
        t0 = time.perf_counter()
        tf, run = toyenv.base_transformer(mdp, return_run=True)
        t1 = time.perf_counter()
        toyenv.base_transformer(mdp)
        t2 = time.perf_counter()
        print(f"  {name:12s} {mdp.num_states:5d} states: fit {t1 - t0:6.2f} s (final KL {run.history['fit_kl'][-1]:.1e}),"
              f" cached call {1e3 * (t2 - t1):.1f} ms")

    sc = toyenv.make("scaffold")
    sc_base = sc.base_policy()
    rec = toyenv.make("scaffold", slack=1, hint_accuracy=0.99)
    rec_base = rec.base_policy()
    small = toyenv.TransformerPolicy(sc, seed=0, d_model=8, n_heads=2)
    rec_small = toyenv.TransformerPolicy(rec, seed=0, d_model=8, n_heads=2)
    rows = {
        "distill off-policy (scaffold, 100)": (lambda: toyenv.distill(sc_base, sc_base, teacher_prompts="hinted", on_policy=0.0),
                                               lambda: toyenv.distill(small, sc_base, teacher_prompts="hinted", on_policy=0.0)),
        "distill on-policy (scaffold, 100)": (lambda: toyenv.distill(sc_base, sc_base, teacher_prompts="hinted"),
                                              lambda: toyenv.distill(small, sc_base, teacher_prompts="hinted")),
        "distill exact (scaffold, 100)": (lambda: toyenv.distill(sc_base, sc_base, teacher_prompts="hinted", exact=True),
                                          lambda: toyenv.distill(small, sc_base, teacher_prompts="hinted", exact=True)),
        "distill on-policy (slack=1, 200)": (lambda: toyenv.distill(rec_base, rec_base, teacher_prompts="hinted", steps=200),
                                             lambda: toyenv.distill(rec_small, rec_base, teacher_prompts="hinted", steps=200)),
        "rlhf grpo (two-skills, 200)": (lambda: toyenv.rlhf(two.base_policy(), steps=200),
                                        lambda: toyenv.rlhf(toyenv.base_transformer(two), steps=200)),
        "overoptimization (40 betas, 9 n)": (lambda: toyenv.overoptimization(two.base_policy(), toyenv.reward_model(two.base_policy())),
                                             None),
    }
    hp = toyenv.make("hidden-path")
    demos = toyenv.demonstrations(hp, 16, seed=0)
    stages = [("SFT", lambda p: toyenv.sft(p, demos, steps=60)), {"method": "rl", "beta": 0.0, "steps": 100}]
    rows["pipeline SFT->RL (hidden-path)"] = (lambda: toyenv.pipeline(hp.base_policy(), stages),
                                              lambda: toyenv.pipeline(toyenv.base_transformer(hp), stages))
    rows["compare_provenance 3 lam x 3 seeds x 200"] = (
        lambda: toyenv.compare_provenance(rec_base, rec_base, teacher_prompts="hinted", on_policy=(0, .5, 1),
                                          checkpoints=(50, 100, 200), n_samples=16), None)
    print(f"\n{'run':42s} {'tabular s':>10s} {'transformer s':>14s}")
    for name, (tab, tf) in rows.items():
        a = timed(tab, args.repeat)
        b = timed(tf, args.repeat) if tf else float("nan")
        print(f"{name:42s} {a:10.2f} {b:14.2f}")


if __name__ == "__main__":
    main()
