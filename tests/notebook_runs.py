"""What a run of a course notebook must show, wherever it ran: in nbval's kernel (conftest.py) or in
JupyterLab in the browser (tests/test_browser.py), which carries nbval's checks of the learner
edition when it runs it (see :func:`carried_by_run_all`).

nbval's checks of a notebook, as `make test` runs it (``--nbval-lax``): every code cell runs without
an error, and the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` equal the stored ones
(streams coalesced by name, images, widget views and metadata not compared). The course adds the
exercise lines: on solutions/ every exercise of the notebook passed, on notebooks/ every one is
"not attempted".
"""
import copy
import json
import pathlib
import re
from collections import defaultdict

import nbformat
from nbval.plugin import coalesce_streams

MARKER = re.compile(r"#\s*NBVAL_([A-Z_]+)")
# what nbval --nbval-lax leaves out of a comparison (nbval.plugin.IPyNbFile.skip_compare)
NOT_COMPARED = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")


def markers(cell) -> set:
    """nbval's markers of a code cell: comment markers and ``nbval-*`` metadata tags."""
    found = set(MARKER.findall(cell.get("source", "")))
    found |= {t[len("nbval-"):].upper().replace("-", "_")
              for t in cell.get("metadata", {}).get("tags", []) if t.startswith("nbval-")}
    return found


def carried_by_run_all(nb) -> bool:
    """A plain Run All checks this notebook as nbval does: no cell is to be skipped or may raise
    (``NBVAL_CHECK_OUTPUT`` is the only marker)."""
    return all(markers(c) <= {"CHECK_OUTPUT"} for c in nb.cells if c.cell_type == "code")


def as_notebook(nb_json: dict):
    """An nbformat notebook from JupyterLab's JSON (multi-line strings joined as nbformat does)."""
    for cell in nb_json["cells"]:                     # JupyterLab writes "attachments": null
        if cell.get("attachments", {}) is None:
            del cell["attachments"]
    return nbformat.reads(json.dumps(nb_json), as_version=4)


def errors(executed) -> list:
    """``cell N: Name: value`` for every error output."""
    return [f"cell {i + 1}: {o.get('ename')}: {o.get('evalue')}"
            for i, c in enumerate(executed.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _compared(outputs) -> dict:
    """The outputs as nbval compares them: {stream name or mime type or key: [values]}."""
    flat = defaultdict(list)
    for out in coalesce_streams([nbformat.from_dict(copy.deepcopy(o)) for o in outputs]):
        if out.output_type == "stream":
            flat[out.name].append(out.text)
            continue
        for key, value in out.items():
            if key == "data":
                for mime, v in value.items():
                    if mime not in NOT_COMPARED:
                        flat[mime].append(v)
            elif key not in NOT_COMPARED:
                flat[key].append(value)
    return dict(flat)


def checked_output_differences(stored, executed) -> list:
    """For each ``# NBVAL_CHECK_OUTPUT`` cell of ``stored``: its outputs in ``executed`` (the same
    notebook, run) differ from the stored ones. Each difference names the cell and shows both."""
    if [c.source for c in stored.cells] != [c.source for c in executed.cells]:
        return ["the executed notebook's cells are not the stored notebook's"]
    out = []
    for i, (ref, run) in enumerate(zip(stored.cells, executed.cells)):
        if ref.cell_type == "code" and "CHECK_OUTPUT" in markers(ref):
            want, got = _compared(ref.outputs), _compared(run.get("outputs", []))
            if want != got:
                out.append(f"cell {i + 1} (# NBVAL_CHECK_OUTPUT): stored {want!r}\n   ran {got!r}")
    return out


def exercise_problems(stem: str, edition: str, executed) -> list:
    """The exercise lines printed by a run: on solutions/ every exercise registered for notebook
    ``stem`` passed and no other was printed; on notebooks/ every one says "not attempted". Read
    with the grader's own parser (which reads printed lines; the grade itself never trusts them)."""
    from toyenv.course import grade

    expected = {i for i, v in grade.load_registry().items() if v["notebook"] == stem}
    printed = grade.parse_verdicts(executed)
    verdicts = {i: (printed[i].status, printed[i].message) if i in printed
                else ("not attempted", "its check did not run") for i in expected | set(printed)}
    if edition == "solutions":
        problems = [f"unregistered exercise printed: {i}" for i in sorted(set(printed) - expected)]
        return problems + [f"{i}: {v}" for i, v in sorted(verdicts.items()) if v[0] != "passed"]
    return [f"{i}: {v}" for i, v in sorted(verdicts.items()) if v[0] != "not attempted"]


def edition_and_stem(path) -> tuple:
    path = pathlib.Path(str(path))
    return path.parent.name, path.stem
