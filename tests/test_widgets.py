"""Widgets built headless: set .value from code, check the figure changed, slider extremes do not crash
(toyenv/widgets.py). No kernel or browser: the App renders into an ipywidgets.Image."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import ipywidgets as W  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import toyenv  # noqa: E402
from toyenv import widgets  # noqa: E402
from test_plots import exact_rl_run, hidden_sft_run  # noqa: E402


@pytest.fixture(scope="module")
def many():
    mdp = toyenv.make("many-paths")
    base = mdp.base_policy()
    return base, {b: exact_rl_run(base, beta=b, steps=20, lr=0.15, num_snapshots=4) for b in (0.0, 0.3, 1.0)}


@pytest.fixture(scope="module")
def hidden():
    mdp = toyenv.make("hidden-path")
    base = mdp.base_policy()
    return base, hidden_sft_run(base)


def options(control):
    """The values a selection control can take."""
    return [o[1] if isinstance(o, tuple) else o for o in control.options]


def extremes(control):
    if isinstance(control, W.FloatLogSlider):
        return [control.base ** control.min, control.base ** control.max]
    vals = options(control)
    return [vals[0], vals[-1]]


def changes_image(app, name, value):
    """Set one control; return True if the rendered image changed."""
    before_png, before_px, n = app.image.value, app.pixels(), app.renders
    app.controls[name].value = value
    assert app.renders == n + 1, "one move, one render"
    return app.image.value != before_png and not np.array_equal(before_px, app.pixels())


def check_app(app, names):
    assert isinstance(app.widget, W.VBox) and app.image in app.widget.children and app.info in app.widget.children
    assert list(app.controls) == names
    assert app.ax is app.axes[0] and app.fig is app.ax.figure
    assert app.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert app.renders >= 1
    app.update()                      # the public update() works with no argument


def check_extremes(app):
    """Every control at both ends (and back) renders without error."""
    for name, control in app.controls.items():
        start = control.value
        for v in extremes(control) + [start]:
            control.value = v
            assert app.image.value


def check_blit_equals_full_redraw(app):
    px = app.pixels()
    app.update(full=True)
    assert np.array_equal(px, app.pixels()), "the blitted figure differs from a full redraw"


# ----------------------------------------------------------------------------------- occupancy explorer
def test_occupancy_explorer(hidden):
    base, run = hidden
    figs = plt.get_fignums()
    app = widgets.occupancy_explorer(run, eps=1e-3)
    check_app(app, ["eps", "step", "show", "view"])
    assert plt.get_fignums() == figs           # the figure is not a pyplot figure: never shown twice
    tree, heat = app.data["tree"], app.data["heatmap"]
    steps = [s for s, _ in run.snapshots]
    assert options(app.controls["step"]) == steps and app.controls["step"].value == steps[-1]

    # bars = support_change counts at the current eps, before = first snapshot
    def counts():
        return [int(b.get_height()) for b in app.data["bars"]]
    ch = toyenv.support_change(base, run.policy, 1e-3).counts()
    assert counts() == [ch["expanded"], ch["shared"], ch["attrited"]]
    assert "role" in app.info.value

    sizes = app.data["tree"].nodes.get_sizes().copy()
    assert changes_image(app, "step", steps[1])
    assert not np.allclose(sizes, tree.nodes.get_sizes())
    ch = toyenv.support_change(base, run.snapshots[1][1], 1e-3).counts()
    assert counts() == [ch["expanded"], ch["shared"], ch["attrited"]]

    faded = tree.faded.sum()
    assert changes_image(app, "eps", 1e-1)
    assert tree.faded.sum() > faded and tree.eps == pytest.approx(1e-1)
    ch = toyenv.support_change(base, run.snapshots[1][1], 1e-1).counts()
    assert counts() == [ch["expanded"], ch["shared"], ch["attrited"]]

    assert changes_image(app, "show", "before")            # node sizes of the starting policy
    np.testing.assert_allclose(tree.faded, toyenv.occupancy(base).s[tree.node_states] < 1e-1)

    assert changes_image(app, "view", "heatmap")
    assert heat.ax.get_visible() and not tree.ax.get_visible()
    data = heat.image.get_array().filled(0.0)
    np.testing.assert_allclose(data, toyenv.occupancy(base).sa[heat.states])
    assert changes_image(app, "show", "after")
    np.testing.assert_allclose(heat.image.get_array().filled(0.0),
                               toyenv.occupancy(run.snapshots[1][1]).sa[heat.states])
    check_blit_equals_full_redraw(app)

    # the first snapshot against itself: nothing expanded or attrited
    app.controls["step"].value = steps[0]
    assert counts()[0] == counts()[2] == 0
    check_extremes(app)
    app.controls["view"].value = "tree"
    check_extremes(app)
    app.controls["eps"].value = 1.0                       # nothing has occupancy 1: empty supports
    assert counts() == [0, 0, 0]
    check_blit_equals_full_redraw(app)


def test_occupancy_explorer_from_a_list_of_policies(many):
    base, runs = many
    app = widgets.occupancy_explorer([("base", base), ("β=0", runs[0.0].policy), ("β=1", runs[1.0].policy)],
                                     view="heatmap", prompt=[0, 7])
    assert options(app.controls["step"]) == ["base", "β=0", "β=1"]
    assert set(toyenv.make("many-paths").prompt_of[app.data["heatmap"].states]) == {0, 7}
    assert changes_image(app, "step", "β=0")
    check_extremes(app)
    with pytest.raises(ValueError, match="view"):
        widgets.occupancy_explorer([base], view="3d")


def test_moves_never_recompute_policies(hidden):
    base, run = hidden
    app = widgets.occupancy_explorer(run)
    calls = []
    for _, p in run.snapshots:
        original = p.probs
        p.probs = lambda original=original: calls.append(1) or original()
    try:
        for v in (1e-5, 1e-2):
            app.controls["eps"].value = v
        for s, _ in run.snapshots:
            app.controls["step"].value = s
        app.controls["view"].value = "heatmap"
    finally:
        for _, p in run.snapshots:
            del p.probs
    assert calls == [], "a slider move recomputed a policy: widgets must only scrub precomputed results"


# ----------------------------------------------------------------------------------- beta explorer
def test_beta_explorer(many):
    base, runs = many
    app = widgets.beta_explorer(runs)
    check_app(app, ["beta"])
    assert options(app.controls["beta"]) == [0.0, 0.3, 1.0]
    ks = app.data["ks"]
    sel = app.data["selected_line"]
    np.testing.assert_allclose(sel.get_ydata(), toyenv.pass_at_k(runs[0.0].policy, ks))
    assert changes_image(app, "beta", 1.0)
    np.testing.assert_allclose(sel.get_ydata(), toyenv.pass_at_k(runs[1.0].policy, ks))
    lines = app.data["lines"]
    assert lines[2].get_linewidth() > lines[0].get_linewidth()          # the chosen β is highlighted
    np.testing.assert_allclose(app.data["curves"][2][:, 0], [toyenv.kl(p, base) for _, p in runs[1.0].snapshots])
    # β = 0: pass@1 up, pass@k at the largest k below the base -> a crossover is marked
    app.controls["beta"].value = 0.0
    assert app.data["crossovers"][0] and "crosses the base" in app.info.value
    check_extremes(app)
    check_blit_equals_full_redraw(app)
    with pytest.raises(ValueError, match="dict"):
        widgets.beta_explorer([])


# ----------------------------------------------------------------------------------- pass@k explorer
def test_pass_at_k_explorer(many):
    base, runs = many
    run = runs[0.0]
    app = widgets.pass_at_k_explorer(run)
    check_app(app, ["step", "k"])
    ks, table = app.data["ks"], app.data["table"]
    np.testing.assert_allclose(table, [toyenv.pass_at_k(p, ks) for _, p in run.snapshots])
    first = run.snapshots[0][0]
    assert changes_image(app, "step", first)
    np.testing.assert_allclose(app.data["selected_line"].get_ydata(), table[0])
    k_small = options(app.controls["k"])[0]
    assert changes_image(app, "k", k_small)
    np.testing.assert_allclose(app.data["k_line"].get_ydata(), table[:, list(ks).index(k_small)])
    check_extremes(app)
    check_blit_equals_full_redraw(app)
    app2 = widgets.pass_at_k_explorer([base, run.policy], ks=[1, 2, 4, 8, 16], k=4)
    assert options(app2.controls["k"]) == [1, 2, 4, 8, 16] and app2.controls["k"].value == 4
    with pytest.raises(ValueError, match="k grid"):
        widgets.pass_at_k_explorer([base], ks=[1, 2, 4], k=3)


# ----------------------------------------------------------------------------------- chooser
def test_method_world_chooser(many, hidden):
    base, runs = many
    hbase, sft = hidden
    results = {("many-paths", "rl β=0"): runs[0.0], ("many-paths", "rl β=1"): runs[1.0],
               ("hidden-path", "sft"): sft}
    app = widgets.method_world_chooser(results)
    check_app(app, ["world", "method"])
    assert options(app.controls["world"]) == ["many-paths", "hidden-path"]
    assert options(app.controls["method"]) == ["rl β=0", "rl β=1"]
    n = app.renders
    app.controls["world"].value = "hidden-path"
    assert app.renders == n + 1                          # one render although two controls changed
    assert options(app.controls["method"]) == ["sft"] and app.controls["method"].value == "sft"
    assert "hidden-path" in app.info.value and "sft" in app.info.value
    pre = app.data["precomputed"][("hidden-path", "sft")]
    ch = toyenv.support_change(hbase, sft.policy, 1e-3).counts()
    assert pre["counts"] == {k: ch[k] for k in ("expanded", "shared", "attrited")}
    np.testing.assert_allclose(app.axes[0].get_lines()[0].get_ydata(), sft.history["success"])
    app.controls["world"].value = "many-paths"
    assert changes_image(app, "method", "rl β=1")
    check_extremes(app)
    check_blit_equals_full_redraw(app)
    with pytest.raises(ValueError, match="world, method"):
        widgets.method_world_chooser({"rl": runs[0.0]})


def test_app_displays_as_its_widget(many):
    base, runs = many
    app = widgets.pass_at_k_explorer(runs[0.0])
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == app.widget.model_id
    assert "renders" in repr(app)
    app.fig.savefig(__import__("io").BytesIO(), format="png")     # a normal save still draws everything
