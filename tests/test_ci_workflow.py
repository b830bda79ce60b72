"""The GitHub Actions workflow an instructor's copy runs (.github/workflows/test.yml).

It must be valid (actionlint, with shellcheck on its `run:` scripts, finds nothing), run the
README's test command and nothing else in its place, and hand the Makefile what it needs on
GitHub's runners: the CPU-only PyTorch index (PIP_EXTRA) and a browser (CHROMIUM_BIN), checked
here by asking make what it would run with those variables set.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "test.yml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _workflow():
    wf = yaml.safe_load(WORKFLOW.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))           # YAML 1.1 reads the key `on` as True
    return wf


def _job():
    (job,) = _workflow()["jobs"].values()
    return job


def _step(uses=None, run=None):
    steps = _job()["steps"]
    found = [s for s in steps if (uses and s.get("uses", "").startswith(uses + "@"))
             or (run and s.get("run", "").strip() == run)]
    assert len(found) == 1, f"one step {uses or run!r} expected in {WORKFLOW.name}: {steps}"
    return found[0]


def _tool(name):
    """`name` from this environment's bin folder (where pip puts it) or PATH."""
    path = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e \".[test]\" (make install does)")
    return found


def readme_test_command():
    """The README's test command: the `make test` line of its shell blocks, without the comment."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [line for line in lines if re.fullmatch(r"make test\b.*", line)]
    assert len(commands) == 1, f"the README should give one test command, found {commands}"
    return commands[0]


def test_actionlint_and_shellcheck_find_nothing():
    done = subprocess.run([_tool("actionlint"), "-no-color", f"-shellcheck={_tool('shellcheck')}",
                           str(WORKFLOW.relative_to(ROOT))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_it_runs_the_readme_test_command():
    command = readme_test_command()
    _step(run=command)                                   # exactly the README's line
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(command)}$", ci, re.M), ".ci/run and the workflow differ"


def test_it_runs_on_push_and_pull_request_on_ubuntu_with_python_311():
    assert {"push", "pull_request"} <= set(_workflow()["on"])
    assert _job()["runs-on"] == "ubuntu-latest"
    python = _step(uses="actions/setup-python")["with"]
    assert str(python["python-version"]) == "3.11"
    assert python["cache"] == "pip" and python["cache-dependency-path"] == "pyproject.toml"


def test_make_gets_cpu_torch_and_the_browser_from_the_workflow(tmp_path):
    """With the job's PIP_EXTRA and a CHROMIUM_BIN as the browser step exports it, make's install
    line takes PyTorch's CPU index and the browser test is handed that browser."""
    env = _job()["env"]
    assert CPU_INDEX in env["PIP_EXTRA"]
    browser_step = next(s["run"] for s in _job()["steps"] if "CHROMIUM_BIN=" in s.get("run", ""))
    assert "GITHUB_ENV" in browser_step, "the browser step must export CHROMIUM_BIN to later steps"
    assert str(env.get("TOYENV_REQUIRE_BROWSER")) == "1"
    assert "TOYENV_REQUIRE_BROWSER" in (ROOT / "tests" / "test_browser.py").read_text()
    make_env = dict(os.environ, PIP_EXTRA=env["PIP_EXTRA"], CHROMIUM_BIN="/opt/some/chrome")
    make_env.pop("TOYENV_CHROMIUM", None)
    done = subprocess.run(["make", "-n", "-C", str(ROOT), "test", f"VENV={tmp_path / 'venv'}"],
                          env=make_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pip = [line for line in done.stdout.splitlines() if "pip install" in line and "-e " in line]
    assert pip and all(f"--extra-index-url {CPU_INDEX}" in line for line in pip), pip
    pytest_line = next(line for line in done.stdout.splitlines() if " -m pytest" in line)
    assert "TOYENV_CHROMIUM=/opt/some/chrome" in pytest_line, pytest_line


def test_it_uploads_test_artifacts_even_when_tests_fail():
    step = _step(uses="actions/upload-artifact")
    assert step["with"]["path"].rstrip("/") == "test-artifacts"
    assert step.get("if") == "always()"
    steps = _job()["steps"]
    assert steps.index(step) > steps.index(_step(run=readme_test_command()))
