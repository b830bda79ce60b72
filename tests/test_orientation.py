"""A learner can find their way: the orientation pages in notebooks/guide/ (course map, glossary,
notation, API cheat sheet) exist and are linked from the README and notebook 00, every relative
link resolves, the API sheet names every toyenv call the notebooks make (computed from their code,
so it stays true), the map gives every notebook a study time that its first screen repeats, the
notation table has one meaning per symbol, and every notebook has a key result on its first
screen, a Self-check cell, the primers where first needed and no wall of text."""
import ast
import importlib
import pathlib
import re
import types

import nbformat
import pytest

import toyenv
from toyenv.course import build

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = ROOT / "notebooks" / "guide"
PAGES = ("map.md", "glossary.md", "notation.md", "api.md")
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EDITIONS = SOLUTIONS + sorted((ROOT / "notebooks").glob("*.ipynb"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
STUDY = re.compile(r"about (\d+) min")
MAX_WORDS = 300


def _read(path):
    return nbformat.read(path, as_version=4)


def _relative_links(text):
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_the_guide_pages_exist_and_are_linked_from_readme_and_notebook_00():
    for page in PAGES:
        assert (GUIDE / page).is_file(), f"notebooks/guide/{page} is missing"
    readme = (ROOT / "README.md").read_text()
    for page in PAGES:
        assert f"(notebooks/guide/{page})" in readme, f"README does not link notebooks/guide/{page}"
    for edition in ("solutions", "notebooks"):
        nb = _read(ROOT / edition / "00_start_here.ipynb")
        top = "\n".join(c.source for c in nb.cells[:4] if c.cell_type == "markdown")
        for page in PAGES:
            assert f"(guide/{page})" in top, f"{edition}/00: no link to guide/{page} near the top"
        assert 'checks.hint("NN.k")' in top and "never the code" in top, \
            f"{edition}/00 does not say how to ask for a hint near the top"


def test_every_relative_link_resolves():
    """Links in the guide pages, the README and the notebooks' markdown, each resolved from the folder
    its notebook sits in (solutions/guide is a link to notebooks/guide, so the instructor edition's
    links open too)."""
    broken = []
    sources = [(p, p.parent, p.read_text()) for p in sorted(GUIDE.glob("*.md"))]
    sources.append((ROOT / "README.md", ROOT, (ROOT / "README.md").read_text()))
    for path in EDITIONS:
        text = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown")
        sources.append((path, path.parent, text))
    for path, base, text in sources:
        for target in _relative_links(text):
            if not (base / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


# ----------------------------------------------------------------------------- the API sheet

_SHORT = {"toyenv.plots": "plots", "toyenv.viz.plots": "plots", "toyenv.widgets": "widgets",
          "toyenv.viz.widgets": "widgets", "toyenv.estimate": "estimate", "toyenv.core.estimate": "estimate",
          "toyenv.course.checks": "checks", "toyenv.checks": "checks"}
_ROOTS = {"toyenv": "toyenv", "plots": "toyenv.viz.plots", "widgets": "toyenv.viz.widgets",
          "estimate": "toyenv.core.estimate", "checks": "toyenv.course.checks"}


def _resolve(chain):
    """The dotted name up to the first attribute that is not a module: `toyenv.methods.token_targets`,
    `toyenv.TabularPolicy` (for `toyenv.TabularPolicy.from_probs`), `plots.PALETTE`."""
    head, *rest = chain.split(".")
    obj, names = importlib.import_module(_ROOTS[head]), [head]
    for part in rest:
        if not isinstance(obj, types.ModuleType):
            break
        names.append(part)
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(f"{obj.__name__}.{part}")
            except ImportError:
                break
    return ".".join(names)


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def toyenv_names_called():
    """{name: first notebook} for every toyenv name the solutions' code cells use: `from toyenv...
    import x`, and attribute chains on toyenv and on its plots, widgets, estimate and checks."""
    found = {}
    for path in SOLUTIONS:
        for cell in _read(path).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))
            tree = ast.parse(code)
            aliases = {name: name for name in _ROOTS}
            inner = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                    inner.add(id(node.value))
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name == "toyenv":
                            aliases[a.asname or "toyenv"] = "toyenv"
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "toyenv":
                    for a in node.names:
                        full = f"{node.module}.{a.name}"
                        found.setdefault(full, path.stem[:2])
                        if full in _SHORT:
                            aliases[a.asname or a.name] = _SHORT[full]
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and id(node) not in inner:
                    chain = _chain(node)
                    if chain and chain[0] in aliases:
                        found.setdefault(_resolve(".".join([aliases[chain[0]]] + chain[1:])), path.stem[:2])
    return found


def test_the_api_sheet_names_every_toyenv_call_of_the_notebooks():
    sheet = (GUIDE / "api.md").read_text()
    names = toyenv_names_called()
    assert len(names) >= 60, sorted(names)                  # the parser found the course's calls
    missing = sorted(f"{n} (first used in {nb})" for n, nb in names.items()
                     if not re.search("`" + re.escape(n) + r"[`(\[ ]", sheet))
    assert not missing, "add to notebooks/guide/api.md:\n" + "\n".join(missing)


# ----------------------------------------------------------------------------- map, key results

def map_rows():
    """{stem: (row text, study minutes)} from the notebook table of map.md."""
    rows = {}
    for line in (GUIDE / "map.md").read_text().splitlines():
        m = re.search(r"\]\(\.\./(\d\d_\w+)\.ipynb\)", line)
        if m and line.startswith("|"):
            t = STUDY.findall(line)
            rows[m.group(1)] = (line, int(t[-1]) if t else None)
    return rows


def test_the_map_lists_every_notebook_with_a_study_time():
    rows = map_rows()
    assert sorted(rows) == [p.stem for p in SOLUTIONS]
    for stem, (line, minutes) in rows.items():
        assert minutes, f"map.md: no study time ('about N min') for {stem}"
        assert "§" in line, f"map.md: {stem} has no survey sections"


def test_the_instructors_schedule_gives_the_same_study_times():
    text = (ROOT / "solutions" / "INSTRUCTORS.md").read_text()
    for stem, (_, minutes) in map_rows().items():
        row = next((l for l in text.splitlines() if l.startswith("| ") and f"`{stem}`" in l and "min |" in l), None)
        assert row is not None, f"INSTRUCTORS.md: no schedule row for {stem}"
        assert int(re.findall(r"(\d+) min \|\s*$", row)[0]) == minutes, f"{stem}: INSTRUCTORS.md and map.md differ"


@pytest.mark.parametrize("path", EDITIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_first_screen_states_key_result_prerequisites_and_study_time(path):
    nb = _read(path)
    first = next(c for c in nb.cells[:2] if c.cell_type == "markdown" and "**Key result.**" in c.source)
    assert "**Prerequisites:**" in first.source, path.name
    times = STUDY.findall(first.source.split("**Study time:**")[1])
    assert times and int(times[0]) == map_rows()[path.stem][1], \
        f"{path.name}: study time differs from notebooks/guide/map.md"


def test_the_notation_table_has_no_symbol_twice():
    text = (GUIDE / "notation.md").read_text()
    table = [l for l in text.split("## ")[0].splitlines() if l.startswith("| ") and not l.startswith("| symbol")]
    symbols = []
    for line in table:
        cell = re.split(r"(?<!\\)\|", line)[1].strip().replace("\\|", "|")
        symbols += [s.strip() for s in re.split(r",\s(?![^()]*\))", cell) if s.strip()]
    assert len(table) >= 40
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    assert not dupes, f"symbols with two rows in notation.md: {dupes}"


# ----------------------------------------------------------------------------- self-check, text

@pytest.mark.parametrize("path", EDITIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_one_self_check_cell_with_three_to_five_collapsible_answers(path):
    nb = _read(path)
    idx = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Self-check")]
    assert len(idx) == 1, f"{path.name}: {len(idx)} Self-check cells"
    src = nb.cells[idx[0]].source
    n = src.count("<details>")
    assert 3 <= n <= 5 and src.count("<summary>Answer</summary>") == n and src.count("</details>") == n, path.name
    assert all(c.cell_type == "markdown" for c in nb.cells[idx[0] + 1:]), \
        f"{path.name}: the Self-check cell should come after the last code cell, before the takeaways"


def visible_words(markdown):
    """Words a reader sees without opening anything: collapsed <details> bodies do not count."""
    text = re.sub(r"<details>\s*<summary>(.*?)</summary>.*?</details>", r"\1", markdown, flags=re.S)
    return len(text.split())


@pytest.mark.parametrize("path", EDITIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_markdown_cell_is_a_wall_of_text(path):
    long = [(i, visible_words(c.source)) for i, c in enumerate(_read(path).cells)
            if c.cell_type == "markdown" and visible_words(c.source) > MAX_WORDS]
    assert not long, f"{path.name}: markdown cells over {MAX_WORDS} words (index, words): {long}"


def _first(nb, pred):
    return next((i for i, c in enumerate(nb.cells) if pred(c)), None)


def test_primers_come_before_first_use():
    """KL before 04 computes a KL, REINFORCE before 05's GRPO exercise, 1 − (1 − ε)^k in 02."""
    nb = _read(ROOT / "solutions" / "04_preference_optimization.ipynb")
    primer = _first(nb, lambda c: c.source.startswith("### Primer: the KL divergence"))
    use = _first(nb, lambda c: c.cell_type == "code" and "toyenv.kl(" in c.source)
    assert primer is not None and use is not None and primer < use
    nb = _read(ROOT / "solutions" / "05_onpolicy_rl_reshaping.ipynb")
    derivation = _first(nb, lambda c: "REINFORCE" in c.source and "log-derivative trick" in c.source)
    exercise = _first(nb, lambda c: c.cell_type == "code" and 'checks.check("05.1"' in c.source)
    assert derivation is not None and exercise is not None and derivation < exercise
    nb = _read(ROOT / "solutions" / "02_occupancy_and_support.ipynb")
    assert any(r"1 - (1 - \varepsilon)^k" in c.source for c in nb.cells if c.cell_type == "markdown")
    deep = [p.stem for p in SOLUTIONS if any("Optional deep dive:" in c.source for c in _read(p).cells)]
    assert len(deep) >= 4, deep


def test_the_learner_handout_ships_the_guide():
    files = build.handout_files(ROOT)
    for page in PAGES:
        assert f"notebooks/guide/{page}" in files
