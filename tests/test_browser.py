"""JupyterLab in a real browser: widgets render, a slider redraws the plot, no cell shows an error.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token: authentication stays on), opens
a widget notebook in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Python
playwright), runs all cells, moves the first slider and checks that the rendered plot changed and
that no output is an error or a widget printed as text ("IntSlider(value=...)" is what a learner
sees when the widget front end is missing). Screenshots go to ``test-artifacts/browser/``.

The notebook is the course's 02 (its ε slider), learner edition first, copied into a temporary
folder so that JupyterLab's autosave never touches the repository; until it exists, a small
ipywidgets + matplotlib fixture. ``make test`` installs chromium where it is missing (as root, with
apt-get); elsewhere the test skips with the reason.
"""
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
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = pathlib.Path(os.environ.get("TOYENV_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
WIDGET_AS_TEXT = ("IntSlider(", "FloatSlider(", "FloatLogSlider(", "SelectionSlider(",
                  "VBox(children=", "HBox(children=", "interactive(children=", "Image(value=",
                  "Output(", "Dropdown(", "ToggleButtons(", "Error displaying widget",
                  "Loading widget...", "A Jupyter widget could not be displayed")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
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


def _course_notebook():
    if os.environ.get("TOYENV_BROWSER_FIXTURE"):       # debug the set-up without the course
        return None
    for edition in ("notebooks", "solutions"):
        found = sorted((ROOT / edition).glob("02_*.ipynb"))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """(path inside the served folder, label): a copy of the course's 02, else the fixture."""
    root = tmp_path_factory.mktemp("lab-root")
    course = _course_notebook()
    if course is not None:
        shutil.copyfile(course, root / course.name)
        return root / course.name, f"{course.parent.name}/{course.name}"
    nb = new_notebook(cells=[new_markdown_cell("# Widget fixture")]
                      + [new_code_cell(s) for s in FIXTURE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "widget_fixture.ipynb")
    return root / "widget_fixture.ipynb", "fixture (no course notebook 02 yet)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(notebook, tmp_path_factory):
    """A running JupyterLab serving the notebook's folder: yields (base_url, token)."""
    home = tmp_path_factory.mktemp("lab-home")
    settings = home / "settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"))
    env.pop("MPLBACKEND", None)                  # the kernel must use the inline backend
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={notebook[0].parent}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=notebook[0].parent)
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


def _plot_state(page):
    """srcs of every image in the notebook's outputs (a widget Image or an Output's inline PNG)."""
    return page.eval_on_selector_all(".jp-Notebook .jp-OutputArea img", "els => els.map(e => e.src)")


def test_widget_notebook_in_jupyterlab(lab, notebook):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token = lab
    path, label = notebook
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings, console_errors = {}, []
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/lab/tree/{path.name}?reset&token={token}", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.content", timeout=90_000)
            _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 90, "the kernel to start")
            timings["open"] = time.monotonic() - t0

            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            _wait(page, JS_PENDING, lambda n: n == 0, 240, "every code cell to run")
            _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 240, "the kernel to be idle")
            timings["run all"] = time.monotonic() - t0 - timings["open"]

            slider = page.locator(".jp-Notebook .widget-slider").first
            try:
                slider.wait_for(state="attached", timeout=30_000)
            except PlaywrightTimeout:
                page.screenshot(path=str(ARTIFACTS / "01_no_slider.png"))
                texts = page.eval_on_selector_all(".jp-Notebook .jp-OutputArea-output",
                                                  "els => els.map(e => e.innerText)")
                shown = [t[:120] for t in texts if any(w in t for w in WIDGET_AS_TEXT)]
                raise AssertionError(f"no slider rendered after Run All; widgets shown as text: "
                                     f"{shown} (is jupyterlab_widgets installed and enabled in "
                                     "this JupyterLab?)") from None
            page.wait_for_function(
                "() => document.querySelectorAll('.jp-Notebook .jp-OutputArea img').length > 0",
                timeout=30_000)
            widget = slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')]")
            widget.scroll_into_view_if_needed()
            page.wait_for_timeout(500)                     # let the last images load
            page.screenshot(path=str(ARTIFACTS / "01_after_run_all.png"))
            widget.screenshot(path=str(ARTIFACTS / "02_widget_before.png"))
            before_png = widget.screenshot()

            readout = slider.locator(".widget-readout")
            value_before = readout.inner_text()
            images_before = _plot_state(page)
            t_move = time.monotonic()
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            for key in ("ArrowRight", "ArrowLeft", "ArrowLeft"):   # at the right end, go left
                handle.press(key)
                page.wait_for_timeout(100)
                if readout.inner_text() != value_before:
                    break
            value_after = readout.inner_text()
            assert value_after != value_before, f"the slider did not move ({value_before!r})"
            deadline = time.monotonic() + 30
            while _plot_state(page) == images_before and time.monotonic() < deadline:
                page.wait_for_timeout(50)
            timings["slider -> new image"] = time.monotonic() - t_move
            _wait(page, JS_KERNEL_STATUS, lambda s: s == "idle", 60, "the kernel after the move")
            page.wait_for_timeout(500)
            images_after = _plot_state(page)
            widget.screenshot(path=str(ARTIFACTS / "03_widget_after.png"))
            after_png = widget.screenshot()
            page.screenshot(path=str(ARTIFACTS / "04_after_slider.png"))

            cells = page.evaluate(JS_OUTPUTS)
            texts = page.eval_on_selector_all(".jp-Notebook .jp-OutputArea-output",
                                              "els => els.map(e => e.innerText)")
            n_widgets = page.locator(".jp-Notebook .jupyter-widgets").count()
        finally:
            browser.close()
    timings["total"] = time.monotonic() - t0
    print(f"\nbrowser test on {label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; slider {value_before!r} -> {value_after!r}; {n_widgets} widget elements")
    if console_errors:
        print("browser console errors (not failures):", *console_errors[:5], sep="\n  ")

    assert images_after != images_before, "moving the slider did not change the plot image"
    assert after_png != before_png, "the widget looks the same after moving the slider"
    errors = [(c["index"] + 1, o.get("ename"), o.get("evalue"))
              for c in cells for o in c["outputs"] if o.get("output_type") == "error"]
    assert not errors, f"cells show errors: {errors}"
    as_text = [t[:120] for t in texts if any(s in t for s in WIDGET_AS_TEXT)]
    assert not as_text, f"widgets shown as text (front end missing?): {as_text}"
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in cells for o in c["outputs"])
    assert views >= 1 and n_widgets >= views, f"{views} widget outputs, {n_widgets} rendered"
