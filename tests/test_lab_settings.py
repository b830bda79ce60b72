"""The course's JupyterLab defaults (lab-settings/overrides.json) are valid and get installed.

A first-time learner who runs `make lab` should see the first notebook and nothing over it: no
"Would you like to get notified about official Jupyter news?" toast, no update check, no "Select
Kernel" dialog. JupyterLab takes such defaults from `<app dir>/settings/overrides.json`, where
`make install` (for .venv) and `postBuild` (Binder, conda) copy the shipped file. These tests hold
the file to the installed JupyterLab's own schemas and run both install routes into a temporary
folder; tests/test_browser.py shows in a real browser that the installed file takes effect.
"""
import json
import os
import pathlib
import subprocess
import sys

import jsonschema
import pytest
from jupyterlab.commands import get_app_dir
from jupyterlab_server.settings_utils import get_settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "lab-settings" / "overrides.json"
APP_DIR = pathlib.Path(get_app_dir())
SCHEMAS = APP_DIR / "schemas"
NEWS = "@jupyterlab/apputils-extension:notification"


def _overrides():
    return json.loads(SHIPPED.read_text())


def _schema(plugin_id):
    package, plugin = plugin_id.split(":")
    path = SCHEMAS / package / f"{plugin}.json"
    assert path.exists(), f"{plugin_id}: no schema {path} in this JupyterLab (renamed plugin?)"
    return json.loads(path.read_text())


def test_the_news_popup_and_update_check_are_off():
    news = _overrides()[NEWS]
    assert news["fetchNews"] == "false", "fetchNews must be the string 'false' (Never), not 'none' (Ask)"
    assert news["checkForUpdates"] is False


@pytest.mark.parametrize("plugin_id", sorted(_overrides()))
def test_every_setting_exists_in_the_installed_schema_with_the_right_type(plugin_id):
    """Each key is a property of the plugin's schema, its value validates against it (type, enum),
    and differs from JupyterLab's default (an override equal to the default does nothing)."""
    values, schema = _overrides()[plugin_id], _schema(plugin_id)
    unknown = sorted(set(values) - set(schema["properties"]))
    assert not unknown, f"{plugin_id}: no such settings {unknown} in JupyterLab {APP_DIR}"
    jsonschema.validators.validator_for(schema)(schema).validate(values)
    same = [k for k, v in values.items() if schema["properties"][k].get("default") == v]
    assert not same, f"{plugin_id}: {same} already have these values by default"


def test_jupyterlab_reads_the_file_as_its_defaults(tmp_path):
    """JupyterLab's own settings loader, pointed at a folder holding the shipped file, serves
    the shipped values as the plugins' defaults (what the front end starts from)."""
    app_settings = tmp_path / "settings"
    app_settings.mkdir()
    (app_settings / "overrides.json").write_text(SHIPPED.read_text())
    for plugin_id, values in _overrides().items():
        result, _ = get_settings(str(app_settings), str(SCHEMAS), str(tmp_path / "user"),
                                 schema_name=plugin_id)
        served = {k: result["schema"]["properties"][k]["default"] for k in values}
        assert served == values, plugin_id


def test_make_install_copies_the_file_where_this_jupyterlab_reads_it(tmp_path):
    """`make install` into a temporary venv that is already installed: only the settings step
    runs (PYTHON=false makes any other step fail) and puts the file in the venv's app dir, which
    is `<prefix>/share/jupyter/lab`, the app dir of this test's own JupyterLab too."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    done = subprocess.run(["make", "-C", str(ROOT), "install", f"VENV={venv}", "PYTHON=false"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.read_text() == SHIPPED.read_text()
    assert APP_DIR == pathlib.Path(sys.prefix, "share", "jupyter", "lab").resolve(), \
        f"this JupyterLab reads its settings from {APP_DIR}, not from the prefix make copies to"
    again = subprocess.run(["make", "-C", str(ROOT), "-q", f"VENV={venv}", str(installed)])
    assert again.returncode == 0, "the settings step should be up to date after one run"


def test_postbuild_copies_the_file_for_binder_and_conda(tmp_path):
    """postBuild (run by repo2docker after environment.yml) asks JupyterLab for its app dir:
    here JUPYTERLAB_DIR points it at a temporary folder."""
    env = dict(os.environ, JUPYTERLAB_DIR=str(tmp_path / "lab"),
               PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ["PATH"]]))
    done = subprocess.run(["bash", str(ROOT / "postBuild")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "lab" / "settings" / "overrides.json").read_text() == SHIPPED.read_text()
    assert os.access(ROOT / "postBuild", os.X_OK), "repo2docker runs postBuild only if executable"


def test_nbgrader_does_not_reach_the_learners_jupyterlab():
    """nbgrader is installed for the instructors' tests; `make install` switches off its JupyterLab
    extension and server extensions, so a learner sees no nbgrader menu, sidebar or buttons."""
    import shutil
    import subprocess
    import sys
    jupyter = pathlib.Path(sys.executable).with_name("jupyter")
    if not jupyter.exists() or shutil.which("make") is None:
        pytest.skip("needs the course's .venv (make install)")
    lab = subprocess.run([str(jupyter), "labextension", "list"], capture_output=True, text=True)
    line = next((l for l in (lab.stdout + lab.stderr).splitlines() if "@jupyter/nbgrader" in l and " v" in l), None)
    if line is None:
        pytest.skip("nbgrader is not installed in this environment")
    assert "disabled" in line, f"run `make install`: {line.strip()}"
    srv = subprocess.run([str(jupyter), "server", "extension", "list"], capture_output=True, text=True)
    enabled = [l.strip() for l in (srv.stdout + srv.stderr).splitlines()
               if l.strip().startswith("nbgrader.server_extensions") and "enabled" in l]
    assert not enabled, f"run `make install`: {enabled}"
