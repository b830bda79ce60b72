"""Grading a large class on many machines: ``--shard I/N`` and ``--merge``.

Without a kernel: the shards partition the notebooks (union = all, pairwise disjoint, sizes within
one, the same split whatever order the paths arrive in), ``--shard`` is validated with a message
naming the fix, and ``--merge`` refuses what cannot be one report (a notebook in two reports, a
repeated or missing shard, shards of different splits, other formats or timeouts, files that are
not reports) and never writes over an input. With kernels (small synthetic notebooks, exercises
99.1 / 99.2 of tests/grade_demo_checks.py): the merge of three shards' reports is the report of
the unsharded run, timing aside.
"""
import contextlib
import io
import itertools
import json
import os
import pathlib
import random

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import build, grade

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
REGISTRY = {"99.1": {"notebook": "99_demo", "title": "Double"},
            "99.2": {"notebook": "99_demo", "title": "Triple"}}


# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("total", [0, 1, 2, 5, 11, 23, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
def test_shards_partition_the_notebooks(total, n):
    names = [pathlib.Path(f"subs/learner{k // 11:03d}/{k % 11:02d}_nb.ipynb") for k in range(total)]
    shards = [grade.split_shard(names, i, n) for i in range(1, n + 1)]
    assert [p for s in shards for p in s] == sorted(names, key=grade.shard_key)   # union, in order
    for a, b in itertools.combinations(shards, 2):
        assert not set(a) & set(b)                                                # disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1                     # balanced
    shuffled = random.Random(total * 31 + n).sample(names, len(names))
    again = [grade.split_shard(shuffled + names[:3], i, n) for i in range(1, n + 1)]
    assert again == shards        # stable: input order and a path given twice change nothing
    records = {json.dumps(grade.shard_record(shuffled, i, n) | {"index": 0}) for i in range(1, n + 1)}
    assert len(records) == 1      # every shard of one split records the same split


def test_shard_order_is_the_path_as_given_with_forward_slashes():
    paths = [pathlib.PureWindowsPath(r"subs\b\00.ipynb"), pathlib.PurePosixPath("subs/a/00.ipynb")]
    assert [grade.shard_key(p) for p in grade.split_shard(paths, 1, 1)] == [
        "subs/a/00.ipynb", "subs/b/00.ipynb"]


@pytest.mark.parametrize("text, words", [
    ("3/2", ["I must be between 1 and N=2", "--shard 1/2 ... --shard 2/2"]),
    ("0/4", ["numbered from 1", "--array=1-N"]),
    ("1/0", ["at least 1", "--shard 1/1"]),
    ("2", ["expected I/N", "--shard 1/4"]),
    ("a/b", ["expected I/N"]),
])
def test_bad_shards_are_refused_naming_the_fix(text, words, capsys):
    with pytest.raises(ValueError) as e:
        grade.parse_shard(text)
    assert all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(SystemExit) as stop:
        grade.main(["subs", "--shard", text])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument --shard: {text}: " in err
    assert all(w in err for w in words), err
    assert grade.parse_shard(" 2 / 3 ") == (2, 3)


def test_an_empty_shard_writes_an_empty_report(tmp_path):
    """More shards than notebooks: the extra shards grade nothing and still report, so a job
    array's merge finds every shard."""
    (tmp_path / "99_demo.ipynb").write_text("not a notebook")      # no kernel is needed
    out = tmp_path / "s2.json"
    with contextlib.redirect_stdout(io.StringIO()) as table:
        assert grade.main([str(tmp_path / "99_demo.ipynb"), "--shard", "2/2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["notebooks"] == [] and report["rows"] == []
    assert report["shard"]["index"] == 2 and report["shard"]["notebooks"] == 1
    assert "shard 2/2: 0 of the 1 notebooks" in table.getvalue()


# ----------------------------------------------------------------------------- merge, refusals


def _result(path, status="passed"):
    return grade.NotebookResult(path, "99_demo", "ok", exercises=[
        grade.ExerciseResult("99.1", status, "msg", "Double"),
        grade.ExerciseResult("99.2", "not attempted", "its check did not run", "Triple")], seconds=1.5)


def _write_shards(folder, paths, n, *, timeout=60, drop=()):
    """Reports of shards 1..n of ``paths`` as the grader writes them (results made up)."""
    files = []
    for i in range(1, n + 1):
        mine = grade.split_shard(paths, i, n)
        report = grade.to_json([_result(str(p)) for p in mine], timeout=timeout,
                               shard=grade.shard_record(paths, i, n))
        f = folder / f"shard{i}.json"
        if i not in drop:
            grade.write_report(f, report)
            files.append(f)
    return files


def _merge(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = grade.main(["--merge", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


PATHS = [f"subs/{name}/99_demo.ipynb" for name in ["ann", "bob", "cy", "dee", "eve"]]


def test_merge_joins_complete_shards_in_order(tmp_path):
    files = _write_shards(tmp_path, PATHS, 3)
    code, out, err = _merge(*reversed(files), "--json", tmp_path / "all.json", "--format", "json")
    assert code == 0, err
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged == json.loads(out)
    assert [n["path"] for n in merged["notebooks"]] == PATHS and "shard" not in merged
    assert merged == grade.to_json([_result(p) for p in PATHS], timeout=60)
    # an ordinary report (late submissions) merges in too; a notebook in two reports does not
    late = tmp_path / "late.json"
    grade.write_report(late, grade.to_json([_result("subs/zed/99_demo.ipynb")], timeout=60))
    assert _merge(*files, late)[0] == 0
    grade.write_report(late, grade.to_json([_result("subs/bob/99_demo.ipynb", "failed")], timeout=60))
    code, _, err = _merge(*files, late)
    assert code == 2 and "subs/bob/99_demo.ipynb is graded in both" in err and "late.json" in err


def test_merge_refuses_inconsistent_shards(tmp_path):
    files = _write_shards(tmp_path, PATHS, 3)
    cases = {}
    cases["missing"] = (files[:2], ["1 of 3 shards are missing", "--shard 3/3"])
    twice = tmp_path / "copy_of_shard2.json"
    twice.write_bytes(files[1].read_bytes())
    cases["repeated"] = ([*files, twice], ["are both shard 2/3"])
    cases["same file"] = ([*files, files[0]], ["is given twice"])
    other = tmp_path / "other"
    other.mkdir()
    other_files = _write_shards(other, PATHS + ["subs/fay/99_demo.ipynb"], 3)
    cases["other split"] = ([files[0], other_files[1], files[2]], ["split from different lists",
                                                                   "the same paths"])
    four = tmp_path / "four"
    four.mkdir()
    cases["other n"] = ([files[0], _write_shards(four, PATHS, 4)[1], files[2]], ["different numbers of shards"])
    old = tmp_path / "old_format.json"
    data = json.loads(files[2].read_text())
    old.write_text(json.dumps(dict(data, format=1)))
    cases["format"] = ([files[0], files[1], old], ["different formats", "has format 1",
                                                   "re-grade the older shards"])
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(dict(data, timeout_per_cell=120)))
    cases["timeout"] = ([files[0], files[1], slow], ["different --timeout", "the same --timeout"])
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    cases["not a report"] = ([*files, notes], ["notes.json is not a JSON report of toyenv.grade"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for case, (inputs, words) in cases.items():
        out = tmp_path / "all.json"
        code, stdout, err = _merge(*inputs, "--json", out)
        assert code == 2 and not out.exists() and stdout == "", case
        assert err.startswith("error: --merge: ") and all(w in err for w in words), (case, err)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_merge_never_writes_over_an_input_or_a_notebook(tmp_path):
    files = _write_shards(tmp_path, PATHS, 2)
    nb = tmp_path / "99_demo.ipynb"
    nb.write_text("{}")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for out, words in [(files[0], "over an input of this run"), (nb, "over a notebook"),
                       (notes, "not a report of toyenv.grade"), (tmp_path, "is a folder")]:
        code, _, err = _merge(*files, "--json", out)
        assert code == 2 and words in err, err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(SystemExit):       # --merge takes no grading options
        _merge(*files, "--timeout", "30")


# ----------------------------------------------------------------------------- with kernels


@contextlib.contextmanager
def demo_kernels():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        yield


def _nb(*sources):
    return new_notebook(cells=[new_markdown_cell("### Exercise 99.1")] + [new_code_cell(s) for s in sources])


CHECKS = 'import grade_demo_checks as checks\nchecks.check("99.1", double)'
TRIPLE = 'def triple(x):\n    return 3 * x\nchecks.check("99.2", triple)'


def test_merged_shards_equal_the_unsharded_report(tmp_path, monkeypatch):
    src = tmp_path / "solutions"
    src.mkdir()
    nbformat.write(_nb("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                       CHECKS, TRIPLE), src / "99_demo.ipynb")
    build.build(tmp_path, log=lambda *a: None)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a_99_demo.ipynb").write_bytes((tmp_path / "notebooks" / "99_demo.ipynb").read_bytes())
    nbformat.write(_nb("def double(x):\n    return 2 * x", CHECKS, TRIPLE), subs / "b_99_demo.ipynb")
    nbformat.write(_nb("def double(x):\n    return x + 2", CHECKS), subs / "c_99_demo.ipynb")
    nbformat.write(_nb("1 / 0", "def double(x):\n    return 2 * x", CHECKS), subs / "d_99_demo.ipynb")
    (subs / "e_99_demo.ipynb").write_text("not a notebook")
    (tmp_path / "registry.json").write_text(json.dumps(REGISTRY))
    monkeypatch.chdir(tmp_path)                          # relative paths, as on every machine
    common = ["subs", "--registry", "registry.json", "--source", "solutions", "--timeout", "60"]
    with demo_kernels(), contextlib.redirect_stdout(io.StringIO()):
        assert grade.main(common + ["--jobs", "2", "--json", "all.json"]) == 0
        for i in (1, 2, 3):
            assert grade.main(common + ["--shard", f"{i}/3", "--json", f"shard{i}.json"]) == 0
    shards = [json.loads((tmp_path / f"shard{i}.json").read_text()) for i in (1, 2, 3)]
    assert [len(s["notebooks"]) for s in shards] == [2, 2, 1]
    code, _, err = _merge("shard3.json", "shard1.json", "shard2.json", "--json", "merged.json")
    assert code == 0, err

    def timeless(report):
        report = json.loads(json.dumps(report))
        for n in report["notebooks"]:
            n.pop("seconds")
        return report
    whole = json.loads((tmp_path / "all.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert timeless(merged) == timeless(whole)
    assert [(n["path"], n["summary"]["passed"], n["status"]) for n in whole["notebooks"]] == [
        ("subs/a_99_demo.ipynb", 1, "ok"), ("subs/b_99_demo.ipynb", 2, "ok"),   # 99.2: the check cell (def + check) is restored
        ("subs/c_99_demo.ipynb", 1, "ok"), ("subs/d_99_demo.ipynb", 2, "errors"),
        ("subs/e_99_demo.ipynb", 0, "not a notebook")]
