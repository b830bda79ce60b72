"""A fresh virtual environment for install tests, in seconds rather than minutes.

``fresh_venv(path)`` runs ``python -m venv`` and then lets the new environment *see* the packages
of the environment running the tests (torch, numpy, JupyterLab, ...) through one ``.pth`` file that
lists this environment's site-packages: Python appends a path listed in a ``.pth`` file to
``sys.path`` after the environment's own site-packages, but does not read the ``.pth`` files inside
it. So the new environment's own installs win, the test environment's editable install of toyenv
(a ``.pth`` finder) is not active there, and ``pip`` finds the dependencies already satisfied
instead of downloading and unpacking a few GB again. ``pip`` never uninstalls what lies outside the
environment it runs in, so installing into the fresh environment leaves this one as it is.

Run code there with ``run_isolated``: ``python -I`` (no ``PYTHONPATH``, no user site, no current
folder on ``sys.path``), started in a scratch folder, without this session's ``PYTHONPATH`` or
``VIRTUAL_ENV``, so the source tree cannot leak in.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env | {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"} | extra


def site_packages(python: pathlib.Path) -> pathlib.Path:
    out = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, env=clean_env())
    return pathlib.Path(out.stdout.strip())


def fresh_venv(path: pathlib.Path, *, with_pip: bool = True, cwd: pathlib.Path | None = None) -> pathlib.Path:
    """Create a virtual environment at ``path`` that sees this environment's packages (see the
    module docstring); return its ``python``."""
    args = [sys.executable, "-m", "venv", str(path)] + ([] if with_pip else ["--without-pip"])
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    python = pathlib.Path(path) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site_packages(python) / "_toyenv_tests_deps.pth").write_text("\n".join(ours) + "\n")
    return python


def run_isolated(python: pathlib.Path, code: str, cwd: pathlib.Path, timeout: int = 600):
    """Run ``code`` with ``python -I`` in ``cwd``; fails the test with the output on an error."""
    run = subprocess.run([str(python), "-I", "-c", code], cwd=cwd, env=clean_env(),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return run.stdout
