"""The instructor kit (solutions/INSTRUCTORS.md) cannot go stale.

Its points table is generated from the exercise registry (``toyenv.course.checks.EXERCISES``): the
test fails when the table is not exactly what the registry gives today (an exercise added, removed,
renamed or re-weighted), and says how to regenerate it:

    python tests/test_instructors_page.py      # rewrite the table in place from the registry

It also checks that the page has a schedule row and discussion prompts for every notebook of the
course, that the grader options it documents exist, and that the README links to it.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "solutions" / "INSTRUCTORS.md"
BEGIN = "<!-- points table: generated from the exercise registry by `python tests/test_instructors_page.py`; do not edit by hand -->"
END = "<!-- end of points table -->"


def points_table() -> str:
    """The markdown table of every registered exercise, its notebook, title and points (the
    registry's ``points`` if it has them, else 1 each, as the nbgrader export counts them)."""
    sys.path.insert(0, str(ROOT))
    from toyenv.course.checks import EXERCISES
    key = lambda i: tuple(int(p) for p in i.split("."))      # noqa: E731
    lines = ["| exercise | notebook | kind | what the learner writes or decides | points |",
             "|---|---|---|---|---:|"]
    total = 0
    for ex in sorted(EXERCISES, key=key):
        e = EXERCISES[ex]
        pts = int(e.get("points", 1))
        total += pts
        title = e["title"].replace("|", "\\|")
        lines.append(f"| {ex} | `{e['notebook']}` | {e['kind']} | {title} | {pts} |")
    lines.append(f"| **total** | {len({e['notebook'] for e in EXERCISES.values()})} notebooks | | "
                 f"{len(EXERCISES)} exercises | **{total}** |")
    return "\n".join(lines)


def _current_table(text: str) -> str:
    assert BEGIN in text and END in text, f"{PAGE} lost its table markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write() -> None:
    text = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(text.replace(_current_table(text), points_table()) if _current_table(text)
                    else text.replace(BEGIN + "\n", BEGIN + "\n" + points_table() + "\n"), encoding="utf-8")


def test_points_table_lists_exactly_the_registered_exercises():
    from toyenv.course.checks import EXERCISES
    table = _current_table(PAGE.read_text(encoding="utf-8"))
    listed = re.findall(r"^\| (\d\d\.\d+) \|", table, flags=re.M)
    assert sorted(listed) == sorted(EXERCISES) and len(listed) == len(set(listed))
    assert table == points_table(), ("solutions/INSTRUCTORS.md: the points table is stale; "
                                     "regenerate it with `python tests/test_instructors_page.py`")


def test_every_notebook_has_a_schedule_row_and_discussion_prompts():
    text = PAGE.read_text(encoding="utf-8")
    prompts = text.split("## Discussion prompts", 1)[1].split("\n## ", 1)[0]
    schedule = text.split("## A suggested schedule", 1)[1].split("\n## ", 1)[0]
    for nb in sorted((ROOT / "solutions").glob("*.ipynb")):
        assert f"`{nb.stem}`" in schedule, f"no schedule row for {nb.stem}"
        section = prompts.split(f"### `{nb.stem}`", 1)
        assert len(section) == 2, f"no discussion prompts for {nb.stem}"
        n = len(re.findall(r"^- ", section[1].split("\n### ", 1)[0], flags=re.M))
        assert 2 <= n <= 3, f"{nb.stem}: {n} discussion prompts, want 2-3"


def test_documented_grader_options_exist_and_the_readme_links_here():
    from toyenv.course import grade
    text = PAGE.read_text(encoding="utf-8")
    src = pathlib.Path(grade.__file__).read_text(encoding="utf-8")
    for opt in set(re.findall(r"python -m toyenv\.grade[^\n`]*", text)):
        for flag in re.findall(r"(--[a-z][a-z-]*)", opt):
            assert f'"{flag}"' in src, f"the page documents {flag}, which the grader does not have"
    assert "(solutions/INSTRUCTORS.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote the points table of {PAGE}")
