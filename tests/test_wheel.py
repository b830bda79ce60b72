"""A plain, non-editable install carries the whole package.

An editable install (``make install``, ``pip install -e .``) imports toyenv from the source tree, so
it hides a subpackage the build leaves out; a JupyterHub image or a wheel (``pip install .``) does
not. Here the wheel is built from a copy of the sources, installed (not editable) into a fresh
virtual environment, and from there every module in the wheel is imported and the package's
contract (the names learners type and graders call) is run, with ``toyenv`` coming from that
environment and never from this checkout.

The fresh environment sees this environment's dependencies through a ``.pth`` file
(``tests/fresh_venv.py``) instead of installing torch & co. again: the test is about what the wheel
carries, not about downloading its dependencies.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from fresh_venv import clean_env, fresh_venv, run_isolated

ROOT = pathlib.Path(__file__).resolve().parents[1]
# what the build reads: pyproject.toml, the readme and licence it names, the package
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "toyenv")


def source_version() -> str:
    """``__version__`` as written in toyenv/__init__.py (the one place it is written)."""
    return re.search(r'^__version__ = "([^"]+)"$', (ROOT / "toyenv" / "__init__.py").read_text(), re.M)[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel of this checkout, built by pip from a copy of the sources (a build in place would
    leave build/ and toyenv.egg-info/ in the checkout), with the setuptools of this environment."""
    pytest.importorskip("setuptools", reason="the test extra installs setuptools: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                          "--no-index", "--wheel-dir", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True, env=clean_env(), timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # -v shows the build backend's output on any pip (pip >= 25 shows its warnings anyway): the deprecated
    # `license = { text = ... }` table made setuptools warn on every install
    warnings = re.findall(r"\w*Warning: .*", out)
    assert not warnings, "the build warns:\n" + "\n".join(warnings)
    (built,) = (tmp / "dist").glob("toyenv-*.whl")
    return built


def test_wheel_carries_every_module_and_the_licence(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "toyenv").rglob("*.py")}
    packaged = {n for n in names if n.endswith(".py")}
    assert on_disk <= packaged, f"left out of the wheel: {sorted(on_disk - packaged)}"
    assert packaged <= on_disk, f"in the wheel but not in toyenv/: {sorted(packaged - on_disk)}"
    for layer in ("core", "methods", "analysis", "viz", "course", "course/checks"):
        assert f"toyenv/{layer}/__init__.py" in names
    info = f"toyenv-{source_version()}.dist-info"
    assert {n.split("/")[0] for n in names} == {"toyenv", info}
    assert f"{info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert re.search(r"^License-Expression: MIT$", metadata, re.M)
    assert re.search(rf"^Version: {re.escape(source_version())}$", metadata, re.M)


# The package's contract, statement for statement, run in the fresh environment (only the training
# runs are shorter than in its example: steps=10; the names and signatures are what is checked).
CONTRACT = """
import toyenv
toyenv.presets()                       # names of the built-in worlds
mdp = toyenv.make("hidden-path", horizon=5)   # a TokenMDP; overrides are keyword arguments
mdp.vocab            # tuple of token strings;  mdp.vocab_size == len(mdp.vocab)
mdp.eos              # id of the end token
mdp.horizon          # T
mdp.prompts          # tuple of prompts;  mdp.prompt_weights: np.ndarray summing to 1
mdp.num_states       # non-terminal states (prefixes that can still emit a token)
p_i, toks = mdp.prefix(3)               # -> (prompt_index, tuple_of_token_ids) for state i
mdp.state_index(p_i, toks)             # inverse of prefix
base = mdp.base_policy()               # the world's "pretrained" policy
pi = toyenv.TabularPolicy(mdp, seed=0);  toyenv.TransformerPolicy(mdp, seed=0)
pi.mdp;  pi.probs()                    # np.ndarray [num_states, vocab_size], rows sum to 1
samples = pi.sample(4, seed=0)         # list of (prompt_index, tuple_of_token_ids)
mdp.reward(*samples[0])                # verifier score of a complete sequence
occ = toyenv.occupancy(pi)             # occ.sa [num_states, vocab_size] (Eq. 2, eta=1/T(y)), occ.s (Eq. 3)
eps = 1e-3
toyenv.effective_support(pi, eps)      # bool [num_states, vocab_size]; also accepts an occupancy
before, after = base, pi
ch = toyenv.support_change(before, after, eps)  # ch.expanded, ch.attrited, ch.shared masks; ch.role
toyenv.success_prob(pi)                # np.ndarray [num_prompts]
toyenv.pass_at_k(pi, 4)                # prompt-weighted exact pass@k
toyenv.kl(pi, base)                    # exact sequence-level KL(p || q), prompt-weighted
demos = base.sample(64, seed=0)         # demonstrations: (prompt_index, tokens) pairs, as sample returns
run = toyenv.sft(base, demos, steps=10, seed=0)           # likewise toyenv.dpo, toyenv.distill
run = toyenv.rl(base, beta=0.1, exact=False, steps=10, seed=0)   # beta: KL weight; exact: expected gradient
run.policy;  run.snapshots;  run.history   # the input policy is left unchanged
"""

CHECKS = """
import numpy as np
assert mdp.vocab_size == len(mdp.vocab) and isinstance(mdp.vocab, tuple)
assert np.isclose(mdp.prompt_weights.sum(), 1)
assert mdp.state_index(*mdp.prefix(3)) == 3
assert np.allclose(pi.probs().sum(1), 1) and pi.probs().shape == (mdp.num_states, mdp.vocab_size)
assert occ.sa.shape == (mdp.num_states, mdp.vocab_size)
assert toyenv.effective_support(pi, eps).dtype == bool
assert np.allclose(base.probs(), mdp.base_policy().probs()), "training changed its input policy"
assert run.policy is not base and len(run.history) > 0
"""

PROBE = """
import importlib, importlib.metadata, json, sys
names = json.loads(open("modules.json").read())
files = {n: importlib.import_module(n).__file__ for n in names}
dist = importlib.metadata.distribution("toyenv")
print(json.dumps({"files": files, "prefix": sys.prefix, "path": sys.path,
                  "version": toyenv.__version__, "dist_version": dist.version,
                  "dist_at": str(dist.locate_file("")),
                  "editable_finder": [m for m in sys.modules if "editable" in m]}))
"""


def test_wheel_installs_into_a_fresh_venv_and_runs_the_contract(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", with_pip=False)
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-index", "--ignore-installed", str(wheel)],
                         capture_output=True, text=True, env=clean_env(), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__")
                     for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py"))
    scratch = tmp_path / "scratch"          # the working folder: nothing of this checkout in it
    scratch.mkdir()
    (scratch / "modules.json").write_text(json.dumps(modules))
    out = run_isolated(python, textwrap.dedent(CONTRACT) + CHECKS + PROBE, cwd=scratch)
    report = json.loads(out.strip().splitlines()[-1])

    venv = (tmp_path / "venv").resolve()
    assert pathlib.Path(report["prefix"]).resolve() == venv
    assert sorted(report["files"]) == modules and len(modules) > 40
    outside = {n: f for n, f in report["files"].items() if not pathlib.Path(f).resolve().is_relative_to(venv)}
    assert not outside, f"imported from outside the fresh environment (the source tree leaked in): {outside}"
    assert not [p for p in report["path"] if p and pathlib.Path(p).resolve() == ROOT.resolve()]
    assert not report["editable_finder"], "the test environment's editable install is active"
    assert pathlib.Path(report["dist_at"]).resolve().is_relative_to(venv)
    assert report["version"] == report["dist_version"] == source_version()
