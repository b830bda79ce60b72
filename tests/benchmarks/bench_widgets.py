"""Benchmark: widget control move -> figure redrawn and encoded (issue 4). Prints figures; asserts nothing.

    python tests/benchmarks/bench_widgets.py [--repeat 3] [--format png|jpeg] [--dpi 90]

For every default world, a run is trained once (toyenv.sft on 32 demonstrations, 60 steps, 7
snapshots; on many-paths also exact RL for beta in {0, 0.1, 0.3, 1}), each widget is built, and
each control is moved through its values ``--repeat`` times. A move is timed from setting
``control.value`` to the new PNG being in ``app.image.value`` (observer, artist updates, blitted
redraw, PNG encoding), i.e. everything the kernel does; the browser's decode and paint are not
included (issue 4 measures those in JupyterLab). Goal: median < 50 ms, 95th percentile < 150 ms.
The last two blocks build pass_at_k_explorer and method_world_chooser with the arguments notebooks 05
and 09 pass them (the same runs, the k grid 1 ... 4096 on quarter powers of 2).
"""
import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

import toyenv  # noqa: E402
from toyenv import widgets  # noqa: E402

WORLDS = ("hidden-path", "many-paths", "two-skills", "scaffold")


def values_of(control, n_eps=20):
    if hasattr(control, "base") and hasattr(control, "min"):       # FloatLogSlider: sweep its range
        return list(control.base ** np.linspace(control.min, control.max, n_eps))
    return [o[1] if isinstance(o, tuple) else o for o in control.options]


def time_moves(app, name, repeat):
    """Move one control through all its values ``repeat`` times (back and forth); return ms per move."""
    control = app.controls[name]
    vals = values_of(control)
    out = []
    for r in range(repeat):
        for v in (vals if r % 2 == 0 else vals[::-1]):
            if control.value == v:
                continue
            t0 = time.perf_counter()
            control.value = v
            out.append(1000 * (time.perf_counter() - t0))
    return out


def row(label, ms):
    ms = np.asarray(ms)
    print(f"{label:44s} {len(ms):5d} {np.median(ms):9.1f} {np.percentile(ms, 95):9.1f} {ms.max():9.1f}")


def notebook_widgets(opts, repeat):
    """pass_at_k_explorer as notebook 05 builds it, method_world_chooser as notebook 09 does."""
    k_grid = np.unique(np.round(2 ** np.arange(0, 12.01, 0.25)).astype(int))
    mp = toyenv.make("many-paths")
    mp_base = mp.base_policy()
    rl_shared = toyenv.rl(mp_base, beta=0.0, steps=200, seed=0, snapshot_steps=[50, 100, 150])
    t = time.perf_counter()
    app = widgets.pass_at_k_explorer(rl_shared, base=mp_base, ks=k_grid, k=256, **opts)
    print(f"pass_at_k_explorer as in notebook 05 (GRPO, 5 snapshots, {len(k_grid)} k): "
          f"built in {1000 * (time.perf_counter() - t):.0f} ms")
    out = []
    for name in ("step", "k"):
        ms = time_moves(app, name, repeat)
        out += ms
        row(f"  {name}", ms)

    hp = toyenv.make("hidden-path")
    hb = hp.base_policy()
    demos = toyenv.demonstrations(hp, 16, seed=0)
    sft = toyenv.sft(hb, demos, steps=60, seed=0)
    sc = toyenv.make("scaffold")
    sb = sc.base_policy()
    results = {
        ("hidden-path", "SFT"): sft,
        ("hidden-path", "RL"): toyenv.rl(hb, beta=0.0, steps=100, seed=0),
        ("hidden-path", "RL after SFT"): toyenv.rl(sft.policy, beta=0.0, steps=100, seed=0),
        ("many-paths", "SFT"): toyenv.sft(mp_base, toyenv.demonstrations(mp, 16, seed=0), steps=60, seed=0),
        ("many-paths", "RL"): toyenv.rl(mp_base, beta=0.0, steps=60, seed=0),
        ("scaffold", "distillation"): toyenv.distill(sb, sb, teacher_prompts="hinted", on_policy=0.0, steps=100,
                                                     seed=0, n_samples=16),
    }
    t = time.perf_counter()
    app = widgets.method_world_chooser(results, ks=k_grid, **opts)
    print(f"method_world_chooser as in notebook 09 ({len(results)} runs): built in "
          f"{1000 * (time.perf_counter() - t):.0f} ms")
    ms_world, ms_method = [], []
    for r in range(repeat + 1):                  # the first pass draws each run's background once
        for w in values_of(app.controls["world"]):
            t0 = time.perf_counter()
            app.controls["world"].value = w
            (ms_world if r else []).append(1000 * (time.perf_counter() - t0))
            ms = time_moves(app, "method", 1)
            if r:
                ms_method += ms
    row("  world (backgrounds cached)", ms_world)
    row("  method (backgrounds cached)", ms_method)
    return out + ms_world + ms_method


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="png", choices=("png", "jpeg"))
    ap.add_argument("--dpi", type=float, default=90.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"matplotlib {matplotlib.__version__}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, "
          f"image {args.format} at {args.dpi:g} dpi")
    opts = dict(dpi=args.dpi, image_format=args.format)
    t0 = time.perf_counter()
    runs, bases = {}, {}
    for world in WORLDS:
        mdp = toyenv.make(world)
        bases[world] = base = mdp.base_policy()
        runs[(world, "sft")] = toyenv.sft(base, toyenv.demonstrations(mdp, 32, seed=0), steps=60, seed=0,
                                          num_snapshots=7)
    mp = bases["many-paths"]
    by_beta = {b: toyenv.rl(mp, beta=b, exact=True, steps=60, seed=0, num_snapshots=7) for b in (0.0, 0.1, 0.3, 1.0)}
    runs[("many-paths", "rl exact β=0")] = by_beta[0.0]
    runs[("many-paths", "rl exact β=1")] = by_beta[1.0]
    print(f"training the runs: {time.perf_counter() - t0:.1f} s (not part of any widget)\n")

    everything = []
    print(f"{'widget / control':44s} {'moves':>5s} {'median':>9s} {'p95':>9s} {'max':>9s}   (ms)")
    for world in WORLDS:
        run = by_beta[0.0] if world == "many-paths" else runs[(world, "sft")]
        t = time.perf_counter()
        app = widgets.occupancy_explorer(run, **opts)
        build = time.perf_counter() - t
        mdp = run.policy.mdp
        print(f"occupancy_explorer, {world} ({mdp.num_states} states, {len(app.data['tree'].node_states)} "
              f"nodes drawn): built in {1000 * build:.0f} ms")
        for view in ("tree", "heatmap"):
            app.controls["view"].value = view
            for name in ("eps", "step", "show"):
                ms = time_moves(app, name, args.repeat)
                everything += ms
                row(f"  {view}: {name}", ms)
        ms = time_moves(app, "view", args.repeat)
        everything += ms
        row("  view (tree <-> heatmap)", ms)

    t = time.perf_counter()
    app = widgets.pass_at_k_explorer(by_beta[0.0], **opts)
    print(f"pass_at_k_explorer, many-paths RL: built in {1000 * (time.perf_counter() - t):.0f} ms")
    for name in ("step", "k"):
        ms = time_moves(app, name, args.repeat)
        everything += ms
        row(f"  {name}", ms)

    t = time.perf_counter()
    app = widgets.beta_explorer(by_beta, **opts)
    print(f"beta_explorer, many-paths, 4 runs: built in {1000 * (time.perf_counter() - t):.0f} ms")
    ms = time_moves(app, "beta", args.repeat)
    everything += ms
    row("  beta", ms)

    t = time.perf_counter()
    app = widgets.method_world_chooser(runs, **opts)
    print(f"method_world_chooser, {len(runs)} runs: built in {1000 * (time.perf_counter() - t):.0f} ms "
          "(first visit of a run draws its background)")
    for name in ("world", "method"):
        ms = []
        for r in range(args.repeat):
            for w in values_of(app.controls["world"]):
                if name == "world":
                    t0 = time.perf_counter()
                    app.controls["world"].value = w
                    ms.append(1000 * (time.perf_counter() - t0))
                else:
                    app.controls["world"].value = w
                    ms += time_moves(app, "method", 1)
        everything += ms
        row(f"  {name}", ms)

    everything += notebook_widgets(opts, args.repeat)

    print()
    row("ALL MOVES", everything)
    e = np.asarray(everything)
    print(f"goal: median < 50 ms ({'met' if np.median(e) < 50 else 'NOT met'}), "
          f"95th percentile < 150 ms ({'met' if np.percentile(e, 95) < 150 else 'NOT met'})")


if __name__ == "__main__":
    main()
