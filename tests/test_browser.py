"""JupyterLab in a real browser: widgets render, a slider redraws the plot, no cell shows an error.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token: authentication stays on) and
drives it with headless Chromium (Debian's ``/usr/bin/chromium``, Python playwright). Each pytest
worker starts one server and loads JupyterLab in one page; the notebooks open in it one after the
other. Screenshots go to ``test-artifacts/browser/``.

- Run All of every notebook, in two halves that two workers can run at once: no error, every widget
  rendered (not printed as text, "IntSlider(value=...)", which is what a learner sees when the
  widget front end is missing), a figure, the first slider moved and the plot redrawn (notebook
  02's ε slider must be there). This run is also the learner edition's nbval run (conftest.py
  deselects nbval's own): the ``# NBVAL_CHECK_OUTPUT`` cells print their stored outputs and the
  exercise lines say "not attempted" (tests/notebook_runs.py).
- A wrong answer typed into exercise 00.1, whose check must answer with a hint.
- Nothing covers the first notebook a learner opens (no news pop-up, no "Select Kernel" dialog)
  with the JupyterLab defaults that ``make install`` puts in the environment
  (lab-settings/overrides.json), which a second server without those defaults does show.

The learner edition is used (the solutions when it is missing), copied into a temporary folder so
that JupyterLab's autosave never touches the repository; without any course, a small ipywidgets +
matplotlib fixture. ``make test`` installs chromium where it is missing (as root, with apt-get);
elsewhere the test skips with the reason (and nbval runs the learner edition).
"""
import contextlib
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import notebook_runs
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = pathlib.Path(os.environ.get("TOYENV_CHROMIUM", "/usr/bin/chromium"))
# CI sets it (.github/workflows/test.yml): there a missing browser fails instead of skipping
REQUIRE_BROWSER = bool(os.environ.get("TOYENV_REQUIRE_BROWSER"))
LAB_SETTINGS = ROOT / "lab-settings" / "overrides.json"   # make install copies it into the venv
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
WIDGET_AS_TEXT = ("IntSlider(", "FloatSlider(", "FloatLogSlider(", "SelectionSlider(",
                  "VBox(children=", "HBox(children=", "interactive(children=", "Image(value=",
                  "Output(", "Dropdown(", "ToggleButtons(", "Error displaying widget",
                  "Loading widget...", "A Jupyter widget could not be displayed")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() and not REQUIRE_BROWSER,
                       reason=f"no {CHROMIUM}: install Debian's chromium (make test does, as root)"),
]

FIXTURE_CELLS = [
    "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nimport numpy as np",
    "out = widgets.Output()\n"
    "slider = widgets.FloatSlider(value=1.0, min=0.5, max=3.0, step=0.5, description='freq')\n"
    "def draw(change=None):\n"
    "    with out:\n"
    "        out.clear_output(wait=True)\n"
    "        x = np.linspace(0, 2 * np.pi, 200)\n"
    "        fig, ax = plt.subplots(figsize=(4, 2.5))\n"
    "        ax.plot(x, np.sin(slider.value * x))\n"
    "        ax.set_title(f'sin({slider.value:g} x)')\n"
    "        plt.show()\n"
    "slider.observe(draw, names='value')\n"
    "draw()\n"
    "widgets.VBox([slider, out])",
]


def _course_notebooks():
    """The learner edition (what learners open), else the solutions; [] without the course."""
    if os.environ.get("TOYENV_BROWSER_FIXTURE"):       # debug the set-up without the course
        return []
    for edition in ("notebooks", "solutions"):
        found = sorted((ROOT / edition).glob("[0-9][0-9]_*.ipynb"))
        if found:
            return found
    return []


COURSE = _course_notebooks()


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    """A temporary folder with copies of the course notebooks (JupyterLab's autosave never
    touches the repository), or the widget fixture when there is no course yet."""
    root = tmp_path_factory.mktemp("lab-root")
    for course in COURSE:
        shutil.copyfile(course, root / course.name)
    if not COURSE:
        nb = new_notebook(cells=[new_markdown_cell("# Widget fixture")]
                          + [new_code_cell(s) for s in FIXTURE_CELLS])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "widget_fixture.ipynb")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    """A running JupyterLab serving the notebook's folder: yields (base_url, token). It runs with
    the JupyterLab defaults installed in this environment, as `make lab` does: the course's
    lab-settings/overrides.json, which `make install` copies there (no news pop-up)."""
    from jupyterlab.commands import get_app_dir

    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM} and TOYENV_REQUIRE_BROWSER is set: install chromium "
                    "(make browser-deps as root) or point CHROMIUM_BIN / TOYENV_CHROMIUM at one")
    installed = pathlib.Path(get_app_dir()) / "settings" / "overrides.json"
    if not installed.exists() or installed.read_text() != LAB_SETTINGS.read_text():
        pytest.fail(f"{installed} is not the course's lab-settings/overrides.json: run "
                    "`make install` (make test does), which copies it there")
    with _serve_lab(lab_root, tmp_path_factory.mktemp("lab-home")) as served:
        yield served


@contextlib.contextmanager
def _serve_lab(lab_root, home, extra_args=()):
    """Start `jupyter lab` on `lab_root` with its state in `home`; yields (base_url, token)."""
    settings = home / "settings"
    # render every cell (JupyterLab 4 draws only the cells in view by default), so that the
    # checks below see every output and every widget
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"))
    env.pop("MPLBACKEND", None)                  # the kernel must use the inline backend
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={lab_root}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}", *extra_args]
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=lab_root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                req = urllib.request.Request(f"{base}/api/status",
                                             headers={"Authorization": f"token {token}"})
                if urllib.request.urlopen(req, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jupyter lab did not start:\n"
                                   + (home / "server.log").read_text()[-3000:])
            time.sleep(0.3)
        # the token is required: the API refuses a request without it
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/contents", timeout=5)
        assert refused.value.code == 403
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


JS_KERNEL_STATUS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.status : null;
}"""

JS_PENDING = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  let pending = 0;
  for (const cell of w.content.widgets) {
    if (cell.model.type === 'code' && cell.model.executionCount === null) pending += 1;
  }
  return pending;
}"""

JS_PENDING_ABOVE = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  return nb.widgets.slice(0, nb.activeCellIndex)
    .filter(c => c.model.type === 'code' && c.model.executionCount === null).length;
}"""

JS_OUTPUTS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return w.content.widgets.map((cell, i) =>
      cell.model.type === 'code' ? {index: i, outputs: cell.model.outputs.toJSON()} : null)
    .filter(x => x !== null);
}"""


def _wait(page, js, ok, timeout, what):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = page.evaluate(js)
        if ok(last):
            return last
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def lab_page(lab):
    """One Chromium and one JupyterLab page per worker: the notebooks open in it one after the
    other (loading JupyterLab in a page costs seconds of CPU; opening a notebook in it does not)."""
    from playwright.sync_api import sync_playwright

    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab?reset&token={token}", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=90_000)
            page.evaluate("async () => { await window.jupyterapp.restored; }")
            yield page
        finally:
            browser.close()


JS_OPEN = """async (path) => {
  const app = window.jupyterapp;
  const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await w.context.ready;
  app.shell.activateById(w.id);
  return w.id;
}"""

JS_CLOSE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (w && w.context) { w.context.model.dirty = false; w.dispose(); }
}"""

JS_NOTEBOOK = "() => window.jupyterapp.shell.currentWidget.context.model.toJSON()"


@contextlib.contextmanager
def _opened(page, lab, name):
    """Open `name` in the page's JupyterLab and wait for its kernel; yields a CSS selector of its
    panel. Closes it and stops its kernel afterwards, so the next notebook starts clean."""
    base, token = lab
    t0 = time.monotonic()
    panel = page.evaluate(JS_OPEN, name)
    _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 90, "the kernel to start")
    try:
        yield f'[id="{panel}"]', time.monotonic() - t0
    finally:
        page.evaluate(JS_CLOSE)
        _shutdown_kernels(base, token)


def _run_all(page):
    """Run All in the current notebook and wait until every cell ran and the kernel is idle."""
    t0 = time.monotonic()
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait(page, JS_PENDING, lambda n: n == 0, 240, "every code cell to run")
    _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 240, "the kernel to be idle")
    return time.monotonic() - t0


def _shutdown_kernels(base, token):
    """Stop every kernel of the server, so that the notebooks do not pile up running kernels."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers=headers)) as r:
        sessions = json.load(r)
    for session in sessions:
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/{session['id']}",
                                                      headers=headers, method="DELETE"))


def _move_slider(page, panel, slider, stem):
    """Move `slider` one step with the keyboard (left when it sits at its right end) and wait for
    the plot to be redrawn; widget screenshots before and after go to the artifacts."""
    widget = slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')]")
    widget.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    widget.screenshot(path=str(ARTIFACTS / f"widget_{stem}_before.png"))
    before_png = widget.screenshot()
    readout = slider.locator(".widget-readout")
    value_before = readout.inner_text()
    images_before = _plot_state(page, panel)
    t_move = time.monotonic()
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for key in ("ArrowRight", "ArrowLeft", "ArrowLeft"):
        handle.press(key)
        page.wait_for_timeout(100)
        if readout.inner_text() != value_before:
            break
    value_after = readout.inner_text()
    assert value_after != value_before, f"the slider did not move ({value_before!r})"
    deadline = time.monotonic() + 30
    while _plot_state(page, panel) == images_before and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    seconds = time.monotonic() - t_move
    _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 60, "the kernel after the move")
    page.wait_for_timeout(500)
    widget.screenshot(path=str(ARTIFACTS / f"widget_{stem}_after.png"))
    return {"values": (value_before, value_after), "images": (images_before, _plot_state(page, panel)),
            "pngs": (before_png, widget.screenshot()), "seconds": seconds}


def _plot_state(page, panel):
    """srcs of every image in the notebook's outputs (a widget Image or an Output's inline PNG)."""
    return page.eval_on_selector_all(f"{panel} .jp-OutputArea img", "els => els.map(e => e.src)")


def _problems(page, panel):
    """Error outputs and widgets shown as text, as (cell number, what) pairs."""
    cells = page.evaluate(JS_OUTPUTS)
    errors = [(c["index"] + 1, f"{o.get('ename')}: {o.get('evalue')}")
              for c in cells for o in c["outputs"] if o.get("output_type") == "error"]
    texts = page.eval_on_selector_all(f"{panel} .jp-OutputArea-output",
                                      "els => els.map(e => e.innerText)")
    as_text = [t[:120] for t in texts if any(w in t for w in WIDGET_AS_TEXT)]
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in cells for o in c["outputs"])
    return errors, as_text, views


def _run_all_in_browser(page, lab, name):
    """Run All of one notebook in the browser: no error output, every widget rendered, a figure,
    the first slider (if any) redraws its plot. Notebook 02 (its ε slider; the fixture without a
    course) must have a slider, a rendered widget, and look different after the move. The run also
    carries nbval's checks of the notebook (conftest.py deselects nbval's own run of it): the
    ``# NBVAL_CHECK_OUTPUT`` cells print their stored outputs, and the exercise lines say "not
    attempted" in the learner edition (every exercise passed in the solutions edition)."""
    stem = pathlib.Path(name).stem
    with _opened(page, lab, name) as (panel, t_open):
        t_run = _run_all(page)
        page.wait_for_timeout(500)
        executed = notebook_runs.as_notebook(page.evaluate(JS_NOTEBOOK))
        errors, as_text, views = _problems(page, panel)
        n_widgets = page.locator(f"{panel} .jupyter-widgets").count()
        n_images = page.locator(f"{panel} .jp-OutputArea img").count()
        text = "\n".join(page.eval_on_selector_all(f"{panel} .jp-OutputArea-output",
                                                   "els => els.map(e => e.innerText)"))
        page.screenshot(path=str(ARTIFACTS / f"run_all_{stem}.png"))
        sliders = page.locator(f"{panel} .widget-slider")
        move = _move_slider(page, panel, sliders.first, stem) if sliders.count() else None
        errors_after, _, _ = _problems(page, panel)
    print(f"\n{name}: open {t_open:.1f} s, run all {t_run:.1f} s, "
          f"{n_images} images, {views} widget outputs"
          + (f", slider {move['values'][0]!r} -> {move['values'][1]!r}: new image in "
             f"{move['seconds']:.2f} s" if move else ""))
    assert not errors, f"{name}: cells show errors: {errors}"
    assert not as_text, f"{name}: widgets shown as text (front end missing?): {as_text}"
    assert n_widgets >= views, f"{name}: {views} widget outputs, {n_widgets} rendered"
    assert n_images >= 1, f"{name}: no figure rendered"
    if name.startswith("02_") or name == "widget_fixture.ipynb":
        assert move, f"{name}: no slider rendered after Run All (is jupyterlab_widgets installed and enabled?)"
        assert views >= 1, f"{name}: no widget output"
        assert move["pngs"][0] != move["pngs"][1], f"{name}: the widget looks the same after moving the slider"
    if move:
        assert move["images"][0] != move["images"][1], f"{name}: moving the slider did not redraw the plot"
        assert not errors_after, f"{name}: errors after moving the slider: {errors_after}"
    if not COURSE:
        return
    # nbval's checks, on the run JupyterLab made (tests/notebook_runs.py)
    source = next(p for p in COURSE if p.name == name)
    stored = nbformat.read(source, as_version=4)
    assert len(executed.cells) == len(stored.cells)
    assert not notebook_runs.errors(executed), f"{name}: {notebook_runs.errors(executed)}"
    differences = notebook_runs.checked_output_differences(stored, executed)
    assert not differences, f"{name}: checked outputs differ from the stored ones:\n" + "\n".join(differences)
    problems = notebook_runs.exercise_problems(stem, source.parent.name, executed)
    assert not problems, f"{name}: exercise lines: {problems}"
    if source.parent.name == "notebooks":
        assert "not attempted" in text and "] failed" not in text, \
            f"{name}: the learner edition's exercise lines should all say 'not attempted'"


# Run All of every notebook, in two classes: `make test` distributes pytest-xdist work by scope
# (--dist loadscope), and a class is a scope of its own, so the two halves can run on the two
# workers at once (each worker then starts its own JupyterLab). Longest Run All first in each half.
_BY_TIME = ("11_", "08_", "07_", "06_", "09_", "05_", "10_", "03_", "04_", "00_", "02_", "01_")
_NAMES = sorted([p.name for p in COURSE] or ["widget_fixture.ipynb"],
                key=lambda n: next((i for i, pre in enumerate(_BY_TIME) if n.startswith(pre)), len(_BY_TIME)))


class TestRunAllFirstHalf:
    @pytest.mark.parametrize("name", _NAMES[0::2])
    def test_every_notebook_runs_in_jupyterlab(self, lab_page, lab, name):
        _run_all_in_browser(lab_page, lab, name)


class TestRunAllSecondHalf:
    @pytest.mark.parametrize("name", _NAMES[1::2] or [pytest.param(None, marks=pytest.mark.skip(reason="a single notebook"))])
    def test_every_notebook_runs_in_jupyterlab(self, lab_page, lab, name):
        _run_all_in_browser(lab_page, lab, name)


WRONG_ANSWER = """def count_states(num_prompts, vocab_size, horizon):
    return num_prompts * sum(vocab_size ** t for t in range(horizon))"""


@pytest.mark.skipif(not any(p.name.startswith("00_") for p in COURSE), reason="no notebook 00")
def test_a_wrong_answer_gets_a_hint_in_the_browser(lab_page, lab):
    """A learner types a classic mistake into exercise 00.1 and runs it: the check cell answers
    with a line naming the mistake, not a traceback."""
    page = lab_page
    name = next(p.name for p in COURSE if p.name.startswith("00_"))
    with _opened(page, lab, name) as (panel, _):
        index = page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.widgets
            .findIndex(c => c.model.sharedModel.getSource().startsWith('def count_states('))""")
        assert index >= 0, "exercise 00.1's cell not found"
        page.evaluate("""(i) => {                      // run the cells above the exercise
            window.jupyterapp.shell.currentWidget.content.activeCellIndex = i;
            return window.jupyterapp.commands.execute('notebook:run-all-above');
        }""", index)
        _wait(page, JS_PENDING_ABOVE, lambda n: n == 0, 120, "the cells above the exercise to run")
        _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 120, "the kernel to be idle")
        page.evaluate("""([i, src]) => {
            const nb = window.jupyterapp.shell.currentWidget.content;
            nb.widgets[i].model.sharedModel.setSource(src);
            nb.activeCellIndex = i;
            return window.jupyterapp.commands.execute('notebook:run-cell-and-select-next');
        }""", [index, WRONG_ANSWER])
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
        _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 60, "the kernel after the check")
        page.wait_for_timeout(500)
        check = page.locator(f"{panel} .jp-Cell").nth(index + 1)
        check.scroll_into_view_if_needed()
        out = check.locator(".jp-OutputArea-output").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "wrong_answer_hint.png"))
        errors, _, _ = _problems(page, panel)
    print(f"\nhint shown: {out.strip()[:300]}")
    assert "[exercise 00.1] failed" in out, out
    assert "Traceback" not in out and not errors, (out, errors)
    assert len(out.split("failed:", 1)[1].strip()) > 40, f"the hint is too short to help: {out!r}"


JS_COVERING = """() => ({
  toasts: [...document.querySelectorAll('.jp-toastContainer .Toastify__toast')].map(e => e.innerText),
  dialogs: [...document.querySelectorAll('.jp-Dialog')].map(e => e.innerText)})"""


def _first_looks(pages, base, token, names, watch=8.0, until=None):
    """Open each of `names` as a learner does, each in its own page, all at once, and watch them
    until each kernel is idle and `watch` seconds have passed since the notebooks appeared
    (without the course's defaults the news toast came after ~4 s here), or until `until(seen)`:
    per notebook, every toast and dialog seen over it, and the kernel's status at the end."""
    for page, name in zip(pages, names):
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}", timeout=90_000)
    for page in pages:
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.content", timeout=90_000)
    seen = [{"toasts": set(), "dialogs": set()} for _ in pages]
    done, start = [False] * len(pages), time.monotonic()
    while not all(done) and time.monotonic() < start + 90:
        for i, page in enumerate(pages):
            covering = page.evaluate(JS_COVERING)
            for kind in seen[i]:
                seen[i][kind].update(text.strip() for text in covering[kind])
            done[i] = (until is not None and until(seen[i])) or (
                until is None and time.monotonic() > start + watch
                and page.evaluate(JS_KERNEL_STATUS) == "idle")
        pages[0].wait_for_timeout(250)
    return [(s, page.evaluate(JS_KERNEL_STATUS)) for s, page in zip(seen, pages)]


def _without_kernel_metadata(lab_root, name, prefix="no_kernelspec_"):
    """A copy of `name` with no kernelspec, like a notebook from elsewhere: JupyterLab asks
    which kernel to start unless told to start the preferred one."""
    nb = nbformat.read(lab_root / name, as_version=4)
    nb.metadata.pop("kernelspec", None)
    nb.metadata.pop("language_info", None)
    copy = lab_root / f"{prefix}{name}"
    nbformat.write(nb, copy)
    return copy.name


def _news_and_kernel_dialog(seen):
    """Both distractions seen (lower case: a dialog's body, "Select kernel for: ...", may be
    read before its title)."""
    return (any("jupyter news" in t.lower() for t in seen["toasts"])
            and any("select kernel" in t.lower() for t in seen["dialogs"]))


def test_nothing_covers_the_first_notebook(lab_page, lab, lab_root, tmp_path_factory):
    """What a learner sees first: notebook 00 (and a notebook without kernel metadata) opens with
    its kernel started and nothing over it. The same check against a server without the course's
    defaults must see the news toast and the "Select Kernel" dialog, so it is not blind."""
    first = next((p.name for p in COURSE if p.name.startswith("00_")), None) \
        or sorted(p.name for p in lab_root.glob("*.ipynb"))[0]
    bare = _without_kernel_metadata(lab_root, first)
    # its own copy: JupyterLab's autosave may write the kernel it started into `bare`
    control_copy = _without_kernel_metadata(lab_root, first, prefix="control_no_kernelspec_")
    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    looks, t0 = {}, time.monotonic()
    browser = lab_page.context.browser                 # fresh pages of the worker's browser
    stems = {first: "first_look", bare: "first_look_no_kernelspec"}
    pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in stems]
    for (name, stem), page, look in zip(stems.items(), pages, _first_looks(pages, base, token, list(stems))):
        looks[name] = look
        page.screenshot(path=str(ARTIFACTS / f"{stem}.png"))
        page.close()
    _shutdown_kernels(base, token)
    home = tmp_path_factory.mktemp("lab-home-defaults")
    (home / "app-settings").mkdir()
    with _serve_lab(lab_root, home, [f"--LabApp.app_settings_dir={home / 'app-settings'}"]) as (base0, token0):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        [(control, _)] = _first_looks([page], base0, token0, [control_copy], until=_news_and_kernel_dialog)
        page.screenshot(path=str(ARTIFACTS / "first_look_without_course_defaults.png"))
        page.close()
        _shutdown_kernels(base0, token0)
    print(f"\nfirst look in {time.monotonic() - t0:.1f} s; without the course's defaults: {control}")
    assert _news_and_kernel_dialog(control), \
        f"without the defaults JupyterLab should show the news toast and Select Kernel: {control}"
    for name, (seen, status) in looks.items():
        assert not seen["toasts"] and not seen["dialogs"], f"{name}: covered by {seen}"
        assert status == "idle", f"{name}: kernel {status!r} (it should start by itself)"

