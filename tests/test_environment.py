"""environment.yml (conda, Binder) lists the same packages as pyproject.toml."""
import pathlib
import re
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONDA_NAME = {"torch": "pytorch"}      # pip name -> conda-forge name


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][:1] == ["conda-forge"] and "nodefaults" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_names = {_name(d) for d in conda} - {"python", "pip"}
    assert {CONDA_NAME.get(n, n) for n in pip_names} == conda_names
    torch_line = next(d for d in conda if d.startswith("pytorch"))
    assert "cpu" in torch_line, "conda users must get the CPU build"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def test_torch_is_pinned_to_the_cpu_wheel():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps, "a looser torch requirement pulls a multi-GB CUDA build"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_readme_architecture_names_every_module():
    """A maintainer finds every toyenv module in the README's architecture table, under its layer."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture"):readme.index("## The worlds")]
    modules = sorted(str(p.relative_to(ROOT / "toyenv")) for p in (ROOT / "toyenv").rglob("*.py")
                     if not (p.name == "__init__.py" and p.parent.name != "methods"))
    checks = [m for m in modules if m.startswith("course/checks/nb")]
    missing = [m for m in modules if m not in checks and f"`{m}`" not in section]
    assert not missing, f"add {missing} to the README's architecture table"
    assert "`course/checks/nb00.py` … `course/checks/nb11.py`" in section and len(checks) == 12


def test_nothing_cites_a_document_the_learner_does_not_have():
    """Docstrings, messages and notebooks cite the survey or a paper, never a team document outside
    this repository (a learner has only the repository)."""
    pattern = re.compile(r"\bFINDINGS\b|\bSTYLE\.md\b|\bSTYLE:|\bDESIGN\b|\bFIDELITY\b|\bARCHITECTURE\.md\b|the slow test")
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".ipynb", ".md", ".yml", ".toml")
             and not any(part.startswith(".") and part not in (".github",) for part in p.relative_to(ROOT).parts)
             and "build" not in p.relative_to(ROOT).parts[:1]]
    hits = [f"{p.relative_to(ROOT)}:{i + 1}: {line.strip()[:80]}" for p in files
            for i, line in enumerate(p.read_text(errors="replace").splitlines()) if pattern.search(line)
            and p.name != "test_environment.py"]
    assert not hits, "cite the survey section or the paper instead:\n" + "\n".join(hits)


def test_every_layer_is_installed_not_only_in_editable_mode():
    """A plain `pip install .` ships every subpackage (core, methods, analysis, viz, course)."""
    import setuptools
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(setuptools.find_packages(str(ROOT), **conf["packages"]["find"]))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "toyenv").rglob("__init__.py")}
    assert on_disk <= found, f"not installed: {sorted(on_disk - found)}"


def test_licence_is_mit_and_declared_as_spdx():
    """LICENSE grants the MIT licence pyproject.toml declares, as an SPDX string (PEP 639: no
    deprecation warning on install), with a setuptools that reads it."""
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert "Copyright (c) 2026 the toyenv course authors" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT" and pyproject["project"]["license-files"] == ["LICENSE"]
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    assert "these machines" not in (ROOT / "pyproject.toml").read_text()


def test_citation_cff_names_the_course_and_the_survey():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "type", "version", "license", "references"):
        assert key in cff, f"CITATION.cff lacks {key}"
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert str(cff["version"]) == _source_version()
    (survey,) = [r for r in cff["references"] if "2604.07941" in r.get("url", "")]
    assert survey["title"].startswith("Large Language Model Post-Training")
    assert survey["year"] == 2026 and len(survey["authors"]) == 13
    assert {"family-names": "Zhao", "given-names": "Shiwan"} == survey["authors"][0]


def _source_version() -> str:
    return re.search(r'^__version__ = "([^"]+)"$', (ROOT / "toyenv" / "__init__.py").read_text(), re.M)[1]


def test_version_has_one_source_and_the_changelog_follows_it():
    """pyproject.toml reads the version from toyenv.__version__; CHANGELOG.md's top entry is it."""
    import toyenv
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "toyenv.__version__"}
    assert toyenv.__version__ == _source_version()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    top = re.search(r"^## \[([^\]]+)\]", changelog, re.M)[1]
    assert top == toyenv.__version__, f"CHANGELOG.md's top entry is {top}, toyenv.__version__ {toyenv.__version__}"


def test_readme_links_licence_citation_and_changelog():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Licence and citation"):]
    for target in ("LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert f"]({target})" in section and (ROOT / target).is_file()
