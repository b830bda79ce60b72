"""`make handout` (python -m toyenv.build --handout ZIP): the learner zip holds the package, the
learner edition, the set-up files and answer-free tests, nothing that holds an answer, and it
installs and runs in a fresh virtual environment as the README says."""
import os
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import nbformat
import pytest

from fresh_venv import clean_env, fresh_venv, run_isolated
from toyenv.course import build

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """(zip path, {archive name: bytes}), built once from this checkout."""
    zip_path = tmp_path_factory.mktemp("handout") / "course.zip"
    assert build.main(["--handout", str(zip_path), "--root", str(ROOT)]) == 0
    with zipfile.ZipFile(zip_path) as z:
        return zip_path, {n: z.read(n) for n in z.namelist()}


def _solution_blocks():
    """Every fenced solution region of solutions/, dedented, as text (the answers)."""
    for src in SOLUTIONS:
        for cell in nbformat.read(src, as_version=4).cells:
            lines = cell.source.split("\n")
            for begin, end, _ in build.fences(cell.source):
                block = textwrap.dedent("\n".join(lines[begin + 1:end])).strip()
                if block:
                    yield src.stem, block


def test_handout_has_the_course_and_none_of_its_answers(handout):
    _, files = handout
    names = {n.split("/", 1)[1] for n in files}
    assert all(n.startswith("course/") for n in files)
    for need in ("pyproject.toml", "Makefile", "environment.yml", "README.md", "toyenv/__init__.py",
                 "toyenv/course/checks/framework.py", "LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert need in names
    assert {f"notebooks/{p.name}" for p in SOLUTIONS} <= names
    # withheld: the instructor edition, the tests with a RIGHT table, the build and grade tools
    assert not [n for n in names if n.startswith("solutions/") or n.startswith("tests/test_checks")
                or n in ("tests/exercise_contract.py", *build.HANDOUT_EXCLUDED)]
    texts = {n: data.decode("utf-8", errors="replace") for n, data in files.items()}
    for name, text in texts.items():
        assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text, name
        assert "RIGHT =" not in text and "RIGHT=" not in text, name
    # no solution's code is in any file (the package's own reference functions are named, public,
    # and differently written; a verbatim solution block would mean a leak)
    blocks = list(_solution_blocks())
    assert len(blocks) >= 24
    leaks = [(stem, name) for stem, block in blocks for name, text in texts.items()
             if block in text or block in textwrap.dedent(text)]
    assert not leaks, leaks
    readme = texts["course/README.md"]
    assert "git archive" not in readme and "nbgrader" not in readme


def test_handout_tests_collect_without_the_withheld_files(handout, tmp_path):
    """`make test` in the handout runs tests/ and notebooks/: the shipped tests import nothing
    the handout leaves out (collected here with this environment, the handout on sys.path)."""
    zip_path, _ = handout
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path)
    course = tmp_path / "course"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(course)}
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests"],
                         cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " tests collected" in run.stdout or "tests collected" in run.stdout


@pytest.mark.slow
def test_handout_installs_in_a_fresh_venv_and_runs_notebook_00(handout, tmp_path):
    """Unzip, `python -m venv .venv`, `pip install -e ".[lab]"` and register the kernel (the
    README's pip lines), then run notebooks/00 top to bottom in that kernel with nbclient.

    The fresh venv sees this environment's packages through a .pth file (tests/fresh_venv.py), so
    pip resolves every requirement of the handout's pyproject.toml and finds the ones this
    environment already has satisfied instead of unpacking torch & co. again (minutes); it still
    builds and installs the handout's toyenv, and anything the handout needs beyond this
    environment would be installed into the venv."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    zip_path, _ = handout
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path)
    course = tmp_path / "course"
    env = clean_env()
    py = fresh_venv(course / ".venv", cwd=course)          # python -m venv .venv, + the .pth
    for cmd in ([str(py), "-m", "pip", "install", "--quiet", "-e", ".[lab]"],
                [str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
                 "--display-name", "Python 3 (toyenv)"]):
        run = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, f"{cmd}: {run.stdout[-2000:]}{run.stderr[-2000:]}"

    nb = nbformat.read(course / "notebooks" / "00_start_here.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import toyenv; print(toyenv.__file__)"))
    ksm = KernelSpecManager(kernel_dirs=[str(course / ".venv" / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    NotebookClient(nb, km=km, timeout=300,
                   resources={"metadata": {"path": str(course / "notebooks")}}).execute(
        env=env | {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    out = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in out if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in out if o.output_type == "stream")
    assert "[exercise 00.1] not attempted" in text           # the learner edition's stub, run through
    assert str(course / "toyenv") in text                     # the handout's package, in its venv
    # the handout's toyenv is installed in the venv itself, not seen through the .pth file
    assert run_isolated(py, "import importlib.metadata as m, sys; print(m.distribution('toyenv').locate_file(''))",
                        cwd=tmp_path).strip().startswith(str(course / ".venv"))
