"""The package's plan, kept true: layers as folders, no import cycles, the course tooling on top.

Every ``import`` and ``from ... import`` of every module is parsed, including the ones inside
functions (an import hidden in a function is still a dependency, and hiding one is how cycles crept
in before). Layers, in order: ``core`` (the world and exact numbers) -> ``methods`` -> ``analysis``
-> ``viz``, then the flat contract ``toyenv/__init__.py`` with its ``plots`` / ``widgets`` aliases,
then ``course`` (checks, build, grade) with its ``checks`` / ``build`` / ``grade`` aliases. A module
imports only from its own layer or the layers before it.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "toyenv"
RANK = {"core": 0, "methods": 1, "analysis": 2, "viz": 3, "api": 4, "course": 5}
API_ALIASES = {"toyenv", "toyenv.plots", "toyenv.widgets"}
COURSE_ALIASES = {"toyenv.checks", "toyenv.build", "toyenv.grade"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(mod: str) -> str:
    if mod in API_ALIASES:
        return "api"
    if mod in COURSE_ALIASES:
        return "course"
    return mod.split(".")[1]


def imports_of(mod: str) -> set:
    """The toyenv modules ``mod`` imports, anywhere in its body."""
    path = MODULES[mod]
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        out.update(n for n in names if n in MODULES and n != mod)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_layers_exist():
    assert {layer(m) for m in MODULES} == set(RANK)


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_import_goes_to_the_same_or_an_earlier_layer():
    bad = [f"{m} ({layer(m)}) imports {n} ({layer(n)})" for m, ns in GRAPH.items() for n in sorted(ns)
           if RANK[layer(n)] > RANK[layer(m)]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if layer(m) not in ("course",)))
def test_the_science_never_imports_the_course(mod):
    assert not [n for n in GRAPH[mod] if layer(n) == "course"]


def test_the_parser_sees_imports_inside_functions(tmp_path):
    """The check above would be blind if it missed function-level imports: it does not."""
    assert "toyenv.core.exact" in GRAPH["toyenv.course.checks.nb02"]      # imported inside a check
