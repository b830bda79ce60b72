"""Where the CPU of a test run goes, by kind of process. Prints figures; asserts nothing.

    python tests/benchmarks/profile_test_cpu.py                 # the command `make test` runs
    python tests/benchmarks/profile_test_cpu.py tests/test_world.py -q

Runs pytest with `make test`'s options and environment (or with the arguments given) and samples
/proc every 0.3 s: the CPU time (user + sys) of every process seen, grouped as notebook kernels,
Chromium, JupyterLab servers, pytest workers (the package tests) and other subprocesses. `time make test` misses the
processes that are not waited for (Chromium's); this does not. A process that lives less than one
sample is missed, so the total is a lower bound. Linux only (/proc); not part of `make bench`, as
it takes as long as the test run.

On 2 cores, the wall time of a saturated run is at least the total CPU / 2: the figures say which
checks a faster `make test` would have to make cheaper.
"""
import collections
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAKE_TEST = ["-n", "2", "--dist", "loadscope", "--no-loadscope-reorder", "tests",
             *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("notebooks/*.ipynb")),
             *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("solutions/*.ipynb")),
             "--nbval-lax", "--nbval-current-env", "-q", "-p", "no:cacheprovider"]
TICK = os.sysconf("SC_CLK_TCK")
KINDS = (            # (kind, a test on the command line), first match wins
    ("notebook kernel started by JupyterLab (browser test)", lambda c: "ipykernel_launcher" in c and "lab-home" in c),
    ("notebook kernel, other (nbval, grader, nbgrader, handout)", lambda c: "ipykernel_launcher" in c),
    ("Chromium", lambda c: "chrom" in c),
    ("JupyterLab server", lambda c: "jupyterlab" in c or "jupyter-lab" in c),
    ("Playwright driver", lambda c: "playwright" in c),
    ("pytest worker (package tests)", lambda c: "exec(eval(sys.stdin.readline()))" in c),
    ("pytest controller", lambda c: "-m pytest" in c and "--dist" in c),
    ("other subprocess (pytest, pip, CLI)", lambda c: True),
)


def _sample(seen):
    """Add each process's CPU seconds so far to `seen` {pid: [cpu, command line]}."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            if pid not in seen:
                cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                seen[pid] = [0.0, cmd]
        except OSError:                      # the process ended meanwhile
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        seen[pid][0] = max(seen[pid][0], (int(fields[11]) + int(fields[12])) / TICK)


def main(args):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.setdefault("TOYENV_CHROMIUM", "/usr/bin/chromium")
    before = {}
    _sample(before)                          # processes already running are not counted
    seen, t0 = {}, time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *(args or MAKE_TEST)], cwd=ROOT, env=env)
    while proc.poll() is None:
        _sample(seen)
        time.sleep(0.3)
    wall = time.monotonic() - t0
    by_kind, count = collections.Counter(), collections.Counter()
    for pid, (cpu, cmd) in seen.items():
        if pid in before and before[pid][1] == cmd or not cmd.strip():
            continue
        kind = next(k for k, match in KINDS if match(cmd))
        by_kind[kind] += cpu
        count[kind] += 1
    total = sum(by_kind.values())
    print(f"\nwall {wall:.0f} s, CPU {total:.0f} s (at least; {os.cpu_count()} cores: "
          f"{total / os.cpu_count():.0f} s if every core were busy all along)")
    for kind, cpu in by_kind.most_common():
        print(f"{cpu:8.1f} s  {cpu / total:5.1%}  {count[kind]:4d} processes  {kind}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
