"""Interactive widgets (ipywidgets 8) that scrub precomputed results; a move never retrains.

Each builder computes everything it can show when it is built (occupancies of every snapshot, pass@k
tables, KL and success along training), draws one matplotlib figure once, and on every control move
restyles the same artists in place (``set_sizes``, ``set_color``, ``set_ydata``, ...) and shows the
figure as a PNG in an ``ipywidgets.Image``. That needs no ipympl and no kernel-side display
machinery, so it renders in JupyterLab, in a notebook executed headless (nbval) and in plain pytest.
Only the artists that change are redrawn over a cached background (blitting), so a move costs a
few tens of milliseconds (``tests/benchmarks/bench_widgets.py``).

Every builder returns an :class:`App`: ``app.widget`` (display it, or just put ``app`` last in a
cell), ``app.controls`` (name -> widget; set ``.value`` to drive it from code), ``app.fig``,
``app.axes`` and ``app.update()``.

Builders (survey concept in brackets):

- :func:`occupancy_explorer` — ε, training step, before/after, tree or heatmap [occupancy Eq. 2-3,
  effective support Eq. 5, expanded/shared/attrited Eq. 6-8].
- :func:`beta_explorer` — KL weight β of precomputed RL runs [KL-regularised RL §5.1, pass@k §7.2.1].
- :func:`pass_at_k_explorer` — training step and k [pass@k crossover, ref [132]].
- :func:`method_world_chooser` — world x method [trajectory provenance §3.1, roles §3.3].
"""
from __future__ import annotations

import contextlib
import io
import math
import struct
import time
import zlib
from typing import Callable

import ipywidgets as W
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import plots
from ..core.exact import kl, occupancy, pass_at_k, role_of, success_prob, support_sets
from .plots import PALETTE, ROLE_COLORS, style_pass_at_k_axes

__all__ = ["App", "occupancy_explorer", "beta_explorer", "pass_at_k_explorer", "method_world_chooser"]

_SETS = ("expanded", "shared", "attrited")


# ===================================================================================== the app
class App:
    """A figure, its controls and an ``update`` that restyles precomputed artists.

    ``apply(values)`` restyles the artists for the controls' values and returns a *background key*:
    the static part of the figure (axes, ticks, legends) is drawn once per key and cached, and a
    move redraws only the ``dynamic`` artists over it (blitting). Return a new key when a move
    changes something static (axis limits, a panel shown or hidden).

    Attributes:
        widget: the container to display (controls, the figure image, a line of text).
        controls: ``{name: ipywidgets control}``; setting ``.value`` redraws.
        fig: the matplotlib Figure (not registered with pyplot, so it is never shown twice).
        axes: the figure's Axes, main panel first; ``ax`` is ``axes[0]``.
        image: the ``ipywidgets.Image`` holding the last rendered PNG.
        info: an ``ipywidgets.HTML`` under the image with the numbers behind the picture.
        data: the precomputed results the app scrubs (for inspection and tests).
        renders: how many times the figure was rendered; ``last_ms``: duration of the last update.
    """

    def __init__(self, fig: Figure, axes, controls: dict, apply: Callable[[dict], object], dynamic,
                 *, data: dict | None = None, dpi: float = 90.0, info: W.HTML | None = None,
                 image_format: str = "png"):
        self.fig, self.axes, self.controls = fig, tuple(axes), dict(controls)
        self._apply, self._dynamic = apply, list(dynamic)
        self.data = data or {}
        self.dpi = dpi
        self.fig.set_dpi(dpi)
        if self.fig.canvas is None or not isinstance(self.fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(self.fig)
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        self.image_format = image_format
        w = int(round(self.fig.get_figwidth() * dpi))
        self.image = W.Image(format=image_format, layout=W.Layout(width=f"{w}px", max_width="100%", height="auto"))
        self.info = info if info is not None else W.HTML()
        row = W.HBox(list(self.controls.values()),
                     layout=W.Layout(flex_flow="row wrap", align_items="center", grid_gap="4px 16px"))
        self.widget = W.VBox([row, self.image, self.info])
        self.renders, self.last_ms = 0, 0.0
        self._bgs, self._hold, self._last = {}, False, None
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        self.update(full=True)

    @property
    def ax(self):
        return self.axes[0]

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def _on_change(self, change):
        if not self._hold and self.values() != self._last:
            self.update()

    @contextlib.contextmanager
    def hold(self):
        """Change several controls, redraw once at the end."""
        self._hold = True
        try:
            yield self
        finally:
            self._hold = False
            self.update()

    def update(self, full: bool = False):
        """Apply the controls' values to the artists and re-render the image."""
        t0 = time.perf_counter()
        self._last = self.values()
        key = self._apply(self._last)
        self.render(key, full=full)
        self.last_ms = 1000 * (time.perf_counter() - t0)
        return self

    def render(self, key=None, full: bool = False):
        """Draw the figure into ``self.image``: the static background for ``key`` is drawn once
        (again with ``full=True``), then only the dynamic artists are drawn over it."""
        canvas = self.fig.canvas
        if full:
            self._bgs.clear()
        if key not in self._bgs:
            for a in self._dynamic:
                a.set_animated(True)
            canvas.draw()
            self._bgs[key] = canvas.copy_from_bbox(self.fig.bbox)
            for a in self._dynamic:          # so that fig.savefig(...) still draws everything
                a.set_animated(False)
        else:
            canvas.restore_region(self._bgs[key])
        for a in sorted(self._dynamic, key=lambda a: a.get_zorder()):
            if a.get_visible() and (a.axes is None or a.axes.get_visible()):
                self.fig.draw_artist(a)
        self.image.value = self.png()
        self.renders += 1

    def png(self) -> bytes:
        """The canvas encoded for the image: PNG (or JPEG when the app was built with
        ``image_format="jpeg"``)."""
        rgba = np.asarray(self.fig.canvas.buffer_rgba())
        if self.image_format == "png":
            return encode_png(rgba)
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(rgba[..., :3]).save(buf, format="jpeg", quality=92)
        return buf.getvalue()

    def pixels(self) -> np.ndarray:
        """The current canvas as an RGBA array ``[H, W, 4]`` (what the image shows)."""
        return np.asarray(self.fig.canvas.buffer_rgba()).copy()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return f"App(controls={list(self.controls)}, renders={self.renders}, last_ms={self.last_ms:.1f})"


def encode_png(rgba: np.ndarray, level: int = 1) -> bytes:
    """A minimal PNG encoder for an RGBA canvas ``[H, W, 4]`` (alpha dropped): no row filters and
    fast zlib compression, about twice as fast as Pillow's default path on figure-like images."""
    h, w = rgba.shape[:2]
    raw = np.zeros((h, 3 * w + 1), np.uint8)        # each row: filter byte 0, then RGB
    raw[:, 1:].reshape(h, w, 3)[...] = rgba[..., :3]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def _figure(width, height) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _snapshots(x) -> list:
    """``[(label, policy), ...]`` from a Run (its snapshots), a dict, or a list of policies or pairs."""
    if plots._is_run(x):
        snaps = list(x.snapshots)
        if not snaps:
            raise ValueError("this run has no snapshots; train with num_snapshots >= 2")
        return [(s, p) for s, p in snaps]
    if isinstance(x, dict):
        return list(x.items())
    items = list(x)
    if not items:
        raise ValueError("pass a Run or at least one policy")
    out = []
    for i, it in enumerate(items):
        out.append(it if isinstance(it, tuple) and len(it) == 2 else (i, it))
    return out


def _slider(options, value, description):
    return W.SelectionSlider(options=[(str(o), o) for o in options], value=value, description=description,
                             continuous_update=True, style={"description_width": "initial"},
                             layout=W.Layout(width="360px"))


def _eps_slider(eps, eps_range):
    lo, hi = (math.log10(e) for e in eps_range)
    return W.FloatLogSlider(value=eps, base=10, min=lo, max=hi, step=0.1, description="ε",
                            readout_format=".1e", continuous_update=True,
                            style={"description_width": "initial"}, layout=W.Layout(width="340px"))


def _table(rows, head=None) -> str:
    """A small HTML table for ``App.info``."""
    style = "padding:1px 10px 1px 0;text-align:left"
    out = "<table style='font-size:12px;border-collapse:collapse'>"
    if head:
        out += "<tr>" + "".join(f"<th style='{style}'>{h}</th>" for h in head) + "</tr>"
    for r in rows:
        out += "<tr>" + "".join(f"<td style='{style}'>{c}</td>" for c in r) + "</tr>"
    return out + "</table>"


def _counts_panel(ax, total):
    """Bars for the expanded / shared / attrited counts (Eq. 6-8) on a symlog axis."""
    from matplotlib.ticker import FuncFormatter
    x = np.arange(3)
    bars = ax.bar(x, [0, 0, 0], color=[ROLE_COLORS[k] for k in _SETS], width=0.65)
    bars[2].set_hatch("//")
    bars[2].set_edgecolor("white")
    ax.set_xticks(x, ["expanded\n(Eq. 6)", "shared C_ε\n(Eq. 7)", "attrited\n(Eq. 8)"], fontsize=8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylim(0, total)
    ax.set_ylabel("state-action pairs (count)")
    ax.spines[["top", "right"]].set_visible(False)
    texts = [ax.text(i, 0, "", ha="center", va="bottom", fontsize=9) for i in x]
    return list(bars), texts


def _set_counts(bars, texts, counts):
    for b, t, k in zip(bars, texts, _SETS):
        n = int(counts[k])
        b.set_height(n)
        t.set_position((t.get_position()[0], n))
        t.set_text(str(n))


def _sets(occ0, occ1, eps):
    return support_sets(occ0.sa, occ1.sa, eps)


def _masses(occ0, occ1, sets):
    em = float(occ1.sa[sets["expanded"]].sum())
    rm = float(0.5 * np.abs(occ1.sa - occ0.sa)[sets["shared"]].sum())
    am = float(occ0.sa[sets["attrited"]].sum())
    return em, rm, am


# ===================================================================================== occupancy
def occupancy_explorer(policies_or_run, *, eps: float = 1e-3, before=None, prompt=None, view: str = "tree",
                       max_nodes: int = 300, max_states: int = 32, eps_range=(1e-7, 1.0),
                       dpi: float = 90.0, image_format: str = "png") -> App:
    """Scrub occupancy and support through training (survey Eq. 2-3, 5-8).

    Controls: ``eps`` (log slider, the threshold of E_ε), ``step`` (a snapshot of the run, or the
    label/index of a policy in the list), ``show`` ("after" = the selected snapshot, "before" = the
    reference) and ``view`` ("tree" or "heatmap"). The left panel is the prefix tree
    (:func:`toyenv.plots.plot_tree`: node area = d(s) of the shown policy, edge colour = change in
    d(s, a) from before to the selected step, ▲ expanded / ▼ attrited pairs) or the occupancy heatmap
    (:func:`toyenv.plots.plot_occupancy_heatmap`, E_ε outlined); the right panel counts the expanded
    (Eq. 6), shared (Eq. 7) and attrited (Eq. 8) pairs at the current ε. Under the figure: the role
    verdict (the course's proxy for survey Table 2's cues, :func:`toyenv.role_of`), the masses and the
    success change.

    Args:
        policies_or_run: a Run (its snapshots), a list of policies or (label, policy) pairs, or a dict.
        before: the reference (default: the first snapshot, i.e. the starting policy).
        prompt, max_nodes, max_states: which states are drawn (fixed at build time; the tree is pruned
            at the initial ``eps`` when it has more than ``max_nodes`` states).
        eps_range: the ε slider's range.
    """
    snaps = _snapshots(policies_or_run)
    ref = snaps[0][1] if before is None else before
    if view not in ("tree", "heatmap"):
        raise ValueError(f"view must be 'tree' or 'heatmap', got {view!r}")
    eps = plots._check_eps(eps)
    occ0 = occupancy(ref)
    occs = [occupancy(p) for _, p in snaps]
    labels = [s for s, _ in snaps]
    succ0 = float(pass_at_k(ref, 1))
    succ = [float(pass_at_k(p, 1)) for _, p in snaps]
    mdp = occ0.mdp
    everything = occs + [occ0]

    fig = _figure(11.0, 5.2)
    ax_tree = fig.add_axes([0.05, 0.15, 0.55, 0.74])
    cax_tree = fig.add_axes([0.615, 0.15, 0.010, 0.74])
    ax_heat = fig.add_axes([0.15, 0.19, 0.38, 0.70])
    cax_heat = fig.add_axes([0.545, 0.19, 0.010, 0.70])
    ax_cnt = fig.add_axes([0.775, 0.19, 0.21, 0.70])

    # one node set, one row set and fixed colour/size scales for every snapshot
    prompts = plots._prompts_arg(mdp, prompt)
    states, _, _ = plots._tree_states(mdp, [occupancy_union(everything)], eps, prompts, max_nodes)
    size_ref = max(max(float(o.s[states].max()) for o in everything), 1e-12)
    vmax = max(max(float(np.abs(o.sa[states] - occ0.sa[states]).max()) for o in occs), 10 * eps, 1e-9)
    tree = plots.plot_tree(occs[-1], ax_tree, before=occ0, eps=eps, states=states, cax=cax_tree,
                           size_ref=size_ref, vmax=vmax, labels="auto" if len(states) <= 80 else False,
                           title="Prefix tree: node area = d(s) (Eq. 3), edge colour = change in d(s,a)\n"
                                 "▲ expanded (Eq. 6), ▼ attrited (Eq. 8) between before and the step")
    rows = plots._heatmap_states(mdp, everything, prompts, max_states)
    hi = max(float(o.sa[rows].max()) for o in everything)
    pos = np.concatenate([o.sa[rows][o.sa[rows] > 0] for o in everything])
    lo = max(float(pos.min()) if pos.size else hi * 1e-8, hi * 1e-8)
    heat = plots.plot_occupancy_heatmap(occs[-1], ax_heat, before=occ0, eps=eps, states=rows, cax=cax_heat,
                                        vmin=lo, vmax=hi,
                                        title="Occupancy d(s,a) (Eq. 2), E_ε outlined (Eq. 5)")
    for t in heat.ax.get_yticklabels():
        t.set_fontsize(6 if len(rows) > 30 else 7)
    bars, values = _counts_panel(ax_cnt, 3 * mdp.terminal.size)
    ax_cnt.set_title("support change at ε, before → step", fontsize=9)

    tree_dyn = [tree.nodes, tree.edges, tree.expanded, tree.attrited]
    tree_dyn += [a for a in (tree.leaves, tree.leaf_edges) if a is not None]
    heat_dyn = [heat.image, heat.halo, heat.boundary, heat.expanded, heat.attrited, heat.correct]
    dynamic = tree_dyn + heat_dyn + bars + values
    info = W.HTML()

    def apply(v):
        i = labels.index(v["step"])
        e = float(v["eps"])
        after = occs[i]
        shown = occ0 if v["show"] == "before" else after
        is_tree = v["view"] == "tree"
        for a in (ax_tree, cax_tree):
            a.set_visible(is_tree)
        for a in (ax_heat, cax_heat):
            a.set_visible(not is_tree)
        if is_tree:
            tree.update(after, occ0, eps=e, size_ref=size_ref, vmax=vmax, show=shown)
        else:
            heat.update(after, occ0, eps=e, show=shown)
        sets = _sets(occ0, after, e)
        _set_counts(bars, values, {k: m.sum() for k, m in sets.items()})
        em, rm, am = _masses(occ0, after, sets)
        info.value = (f"<b>{mdp.name}</b> · step <b>{v['step']}</b> vs before · showing the "
                      f"<b>{v['show']}</b> policy · ε = {e:.1e} · role: <b>{role_of(em, rm)}</b><br>"
                      + _table([["mass", f"{em:.4f}", f"{rm:.4f} (moved inside C_ε)", f"{am:.4f}"],
                                ["success", f"before {succ0:.4f}", f"step {v['step']}: {succ[i]:.4f}", ""]],
                               head=["", "expanded (Eq. 6)", "reshaped", "attrited (Eq. 8)"]))
        return v["view"]

    controls = {
        "eps": _eps_slider(eps, eps_range),
        "step": _slider(labels, labels[-1], "step"),
        "show": W.ToggleButtons(options=["after", "before"], value="after", description="show",
                                tooltips=["the selected step", "the reference policy"],
                                style={"description_width": "initial", "button_width": "84px"},
                                layout=W.Layout(width="auto")),
        "view": W.ToggleButtons(options=["tree", "heatmap"], value=view, description="view",
                                style={"description_width": "initial", "button_width": "84px"},
                                layout=W.Layout(width="auto")),
    }
    data = {"labels": labels, "occupancies": occs, "before": occ0, "success": succ, "tree": tree,
            "heatmap": heat, "bars": bars}
    return App(fig, (ax_tree, ax_heat, ax_cnt, cax_tree, cax_heat), controls, apply, dynamic, data=data,
               dpi=dpi, info=info, image_format=image_format)


def occupancy_union(occs):
    """An Occupancy whose ``s`` and ``sa`` are the elementwise maximum over ``occs`` (used to choose
    one node set that fits every snapshot)."""
    from dataclasses import replace
    return replace(occs[0], sa=np.max([o.sa for o in occs], axis=0), s=np.max([o.s for o in occs], axis=0))


# ===================================================================================== beta
def beta_explorer(runs_by_beta: dict, *, base=None, ks=None, dpi: float = 90.0, image_format: str = "png") -> App:
    """Choose the KL weight β among precomputed RL runs (survey §5.1; pass@k §7.2.1, ref [132]).

    Left: success against the exact sequence-level KL(π_t ‖ π_ref) along each run's snapshots
    (π_ref = ``base`` or the first run's first snapshot); the selected β is coloured, the others
    grey: the KL-reward trade-off β controls. Right: exact pass@k of the base and of the selected
    run's final policy on a log-k axis, the crossover marked when the curves cross (a large enough
    KL penalty removes it).

    Args:
        runs_by_beta: ``{beta: Run}`` (any objects with ``.snapshots`` and ``.policy``).
    """
    if not isinstance(runs_by_beta, dict) or not runs_by_beta:
        raise ValueError("runs_by_beta must be a non-empty dict {beta: Run}")
    betas = sorted(runs_by_beta)
    runs = [runs_by_beta[b] for b in betas]
    base = runs[0].snapshots[0][1] if base is None else base
    curves = [np.array([(kl(p, base), float(pass_at_k(p, 1))) for _, p in r.snapshots]) for r in runs]
    items = [("base", base)] + [(f"β={b:g}", r.policy) for b, r in zip(betas, runs)]
    ks = plots.default_ks(items) if ks is None else np.asarray(ks)
    pk_base = np.asarray(pass_at_k(base, ks), float)
    pk = [np.asarray(pass_at_k(r.policy, ks), float) for r in runs]
    cross = [plots.crossovers(ks, pk_base, y) for y in pk]

    fig = _figure(11.0, 4.2)
    a1 = fig.add_axes([0.065, 0.13, 0.40, 0.76])
    a2 = fig.add_axes([0.56, 0.13, 0.42, 0.76])
    lines = [a1.plot(c[:, 0], c[:, 1], "o-", color=PALETTE["light"], lw=1.2, ms=3, zorder=2)[0] for c in curves]
    for c, b in zip(curves, betas):
        a1.annotate(f"β={b:g}", c[-1], xytext=(4, 0), textcoords="offset points", fontsize=7,
                    color=PALETTE["grey"], va="center")
    a1.plot([0], [float(pass_at_k(base, 1))], "s", color="black", ms=6, zorder=4, label="base")
    a1.set_xlabel("KL(π_t ‖ π_ref) (nats, sequence level)")
    a1.set_ylabel("success probability (pass@1)")
    a1.grid(True, alpha=0.3)
    a1.legend(loc="lower right", fontsize=8, frameon=False)
    a1.set_title("KL–reward trade-off along training (§5.1)", fontsize=10)
    allc = np.concatenate(curves)
    a1.set_xlim(-0.03 * allc[:, 0].max() - 1e-3, allc[:, 0].max() * 1.18 + 1e-3)
    a1.set_ylim(max(0, allc[:, 1].min() - 0.05), min(1.02, allc[:, 1].max() + 0.05))
    a2.plot(ks, pk_base, "--", color="black", lw=2, label="base", zorder=3)
    for y in pk:
        a2.plot(ks, y, color=PALETTE["light"], lw=1, zorder=1)
    (sel,) = a2.plot(ks, pk[0], color=PALETTE["orange"], lw=2.4, zorder=4, label="selected β")
    (xmark,) = a2.plot([], [], "o", ms=8, mfc="white", mec=PALETTE["orange"], mew=2, zorder=5)
    (xline,) = a2.plot([ks[0], ks[0]], [0, 1.02], ls=":", color=PALETTE["orange"], lw=1, zorder=2)
    style_pass_at_k_axes(a2, "Exact pass@k of the final policy (§7.2.1); grey: other β", ks)
    info = W.HTML()

    def apply(v):
        i = betas.index(v["beta"])
        for j, ln in enumerate(lines):
            on = j == i
            ln.set_color(PALETTE["blue"] if on else PALETTE["light"])
            ln.set_linewidth(2.4 if on else 1.2)
            ln.set_zorder(3 if on else 2)
        sel.set_ydata(pk[i])
        if cross[i]:
            k, val, _ = cross[i][0]
            xmark.set_data([k], [val])
            xline.set_xdata([k, k])
            xline.set_visible(True)
            note = f"pass@k crosses the base at k ≈ <b>{k:.2g}</b>"
        else:
            xmark.set_data([], [])
            xline.set_visible(False)
            note = ("no crossover: at or above the base at every k" if np.all(pk[i] >= pk_base - 1e-12)
                    else "no crossover")
        c = curves[i]
        info.value = (f"β = <b>{betas[i]:g}</b>: success {c[0, 1]:.3f} → <b>{c[-1, 1]:.3f}</b> at "
                      f"KL(π‖π_ref) = <b>{c[-1, 0]:.3f}</b> nats; pass@{int(ks[-1])} {pk[i][-1]:.3f} "
                      f"(base {pk_base[-1]:.3f}); {note}")
        return None

    controls = {"beta": W.SelectionSlider(options=[(f"{b:g}", b) for b in betas], value=betas[0],
                                          description="β (KL weight)", continuous_update=True,
                                          style={"description_width": "initial"}, layout=W.Layout(width="380px"))}
    dynamic = lines + [sel, xmark, xline]
    data = {"betas": betas, "curves": curves, "ks": ks, "pass_at_k": pk, "pass_at_k_base": pk_base,
            "crossovers": cross, "selected_line": sel, "lines": lines}
    return App(fig, (a1, a2), controls, apply, dynamic, data=data, dpi=dpi, info=info, image_format=image_format)


# ===================================================================================== pass@k
def pass_at_k_explorer(policies_or_run, *, base=None, ks=None, k=None, dpi: float = 90.0,
                       image_format: str = "png") -> App:
    """Scrub pass@k through training (the crossover of Yue et al. 2025, survey ref [132], §7.2.1).

    Controls: ``step`` (a snapshot) and ``k``. Left: exact pass@k on a log-k axis for the base
    (dashed), every snapshot (grey) and the selected one (orange), the crossover marked, the chosen
    k as a vertical line. Right: pass@1 and pass@k (chosen k) against training step, the base as
    dashed lines: pass@1 rising while pass@k at large k falls is the widening gap.

    Args:
        policies_or_run: a Run (its snapshots) or a list/dict of policies.
        base: the reference curve (default: the first snapshot).
        ks: the k grid (default: log-spaced up to past 3 / smallest per-prompt success).
        k: the initial k (default: the largest k of the grid); the ``k`` control offers the powers
            of 2 in the grid, its largest value and ``k``.
    """
    snaps = _snapshots(policies_or_run)
    base = snaps[0][1] if base is None else base
    labels = [s for s, _ in snaps]
    ks = (plots.default_ks([("base", base)] + [(str(s), p) for s, p in snaps]) if ks is None
          else np.unique(np.asarray(ks, int)))
    table = np.array([np.asarray(pass_at_k(p, ks), float) for _, p in snaps])   # [N, K]
    pk_base = np.asarray(pass_at_k(base, ks), float)
    k_opts = sorted({int(x) for x in ks if (int(x) & (int(x) - 1)) == 0} | {int(ks[-1])})
    k0 = k_opts[-1] if k is None else int(k)
    if k0 not in set(ks.tolist()):
        raise ValueError(f"k={k!r} is not in the k grid (from {ks.min()} to {ks.max()}); pass ks= containing it")
    k_opts = sorted(set(k_opts) | {k0})
    kidx = {kk: int(np.nonzero(ks == kk)[0][0]) for kk in k_opts}
    numeric = all(isinstance(s, (int, float, np.integer, np.floating)) for s in labels)
    steps = np.array([float(s) for s in labels]) if numeric else np.arange(len(labels), dtype=float)
    cross = [plots.crossovers(ks, pk_base, row) for row in table]

    fig = _figure(11.0, 4.2)
    a1 = fig.add_axes([0.065, 0.13, 0.42, 0.76])
    a2 = fig.add_axes([0.58, 0.13, 0.40, 0.76])
    for row in table:
        a1.plot(ks, row, color=PALETTE["light"], lw=1, zorder=1)
    a1.plot(ks, pk_base, "--", color="black", lw=2, label="base", zorder=3)
    (sel,) = a1.plot(ks, table[-1], color=PALETTE["orange"], lw=2.4, label="selected step", zorder=4)
    (xmark,) = a1.plot([], [], "o", ms=8, mfc="white", mec=PALETTE["orange"], mew=2, zorder=5)
    (kline,) = a1.plot([k0, k0], [0, 1.02], color=PALETTE["blue"], lw=1.2, alpha=0.7, zorder=2)
    style_pass_at_k_axes(a1, "Exact pass@k (§7.2.1); snapshots in grey, blue line: chosen k", ks)
    (l1,) = a2.plot(steps, table[:, 0], "o-", color=PALETTE["orange"], lw=2, ms=4, label="pass@1")
    (lk,) = a2.plot(steps, table[:, kidx[k0]], "s-", color=PALETTE["blue"], lw=2, ms=4, label="pass@k (chosen k)")
    a2.axhline(pk_base[0], color=PALETTE["orange"], ls="--", lw=1, alpha=0.8)
    (hk,) = a2.plot([-1e12, 1e12], [pk_base[kidx[k0]]] * 2, color=PALETTE["blue"], ls="--", lw=1, alpha=0.8)
    pad = max(1.0, 0.03 * (steps.max() - steps.min()))
    (sline,) = a2.plot([steps[-1]] * 2, [0, 1.02], color=PALETTE["grey"], lw=1, ls=":")
    a2.set_ylim(0, 1.02)
    a2.set_xlim(steps.min() - pad, steps.max() + pad)
    a2.set_xlabel("training step (updates)" if numeric else "snapshot")
    a2.set_ylabel("probability")
    a2.grid(True, alpha=0.3)
    a2.legend(loc="lower left", fontsize=8, frameon=False, title="dashed: the base", title_fontsize=8)
    a2.set_title("pass@1 and pass@k over training", fontsize=10)
    info = W.HTML()

    def apply(v):
        i = labels.index(v["step"])
        kk = int(v["k"])
        j = kidx[kk]
        sel.set_ydata(table[i])
        if cross[i]:
            kc, val, _ = cross[i][0]
            xmark.set_data([kc], [val])
            note = f"crosses the base at k ≈ <b>{kc:.2g}</b>"
        else:
            xmark.set_data([], [])
            note = "no crossover with the base"
        kline.set_xdata([kk, kk])
        lk.set_ydata(table[:, j])
        hk.set_ydata([pk_base[j]] * 2)
        sline.set_xdata([steps[i]] * 2)
        info.value = (f"step <b>{v['step']}</b>: pass@1 {table[i, 0]:.3f} (base {pk_base[0]:.3f}), "
                      f"pass@{kk} <b>{table[i, j]:.3f}</b> (base {pk_base[j]:.3f}); {note}")
        return None

    controls = {"step": _slider(labels, labels[-1], "step"),
                "k": W.SelectionSlider(options=[(str(x), x) for x in k_opts], value=k0, description="k",
                                       continuous_update=True, style={"description_width": "initial"},
                                       layout=W.Layout(width="320px"))}
    dynamic = [sel, xmark, kline, lk, hk, sline]
    data = {"labels": labels, "ks": ks, "table": table, "pass_at_k_base": pk_base, "crossovers": cross,
            "selected_line": sel, "k_line": lk}
    return App(fig, (a1, a2), controls, apply, dynamic, data=data, dpi=dpi, info=info, image_format=image_format)


# ===================================================================================== method x world
def method_world_chooser(results: dict, *, eps: float = 1e-3, ks=None, dpi: float = 90.0,
                         image_format: str = "png") -> App:
    """Compare precomputed runs by world and method (trajectory provenance §3.1, roles §3.3).

    ``results``: ``{(world, method): Run}``. Controls: ``world`` and ``method`` dropdowns (the
    method list follows the world). Panels: success over training (``run.history["success"]``, or
    recomputed at the snapshots); exact pass@k of the start and the final policy with the crossover;
    the expanded / shared / attrited counts (Eq. 6-8) at ``eps`` from start to end. Under the
    figure: the role verdict, the success change and KL(final ‖ start).
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("results must be a non-empty dict {(world, method): Run}")
    for key in results:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"results keys must be (world, method) pairs, got {key!r}")
    eps = plots._check_eps(eps)
    pre = {}
    for key, run in results.items():
        start = run.snapshots[0][1]
        h = plots.history_table(run)
        if "success" in h:
            xs, ys = h["step"][: len(h["success"])], h["success"]
        else:
            xs, ys = plots.snapshot_metric(run, "success")
        kk = plots.default_ks([("start", start), ("final", run.policy)]) if ks is None else np.asarray(ks)
        o0, o1 = occupancy(start), occupancy(run.policy)
        sets = _sets(o0, o1, eps)
        em, rm, am = _masses(o0, o1, sets)
        pk0, pk1 = np.asarray(pass_at_k(start, kk), float), np.asarray(pass_at_k(run.policy, kk), float)
        w = start.mdp.prompt_weights
        pre[key] = dict(steps=np.asarray(xs, float), success=np.asarray(ys, float), ks=kk, pk0=pk0, pk1=pk1,
                        cross=plots.crossovers(kk, pk0, pk1), counts={k: int(m.sum()) for k, m in sets.items()},
                        masses=(em, rm, am), role=role_of(em, rm), kl=kl(run.policy, start),
                        s0=float(success_prob(start) @ w), s1=float(success_prob(run.policy) @ w))
    worlds = list(dict.fromkeys(w for w, _ in results))
    methods_of = {w: [m for ww, m in results if ww == w] for w in worlds}

    fig = _figure(12.0, 4.2)
    a1 = fig.add_axes([0.055, 0.15, 0.26, 0.72])
    a2 = fig.add_axes([0.39, 0.15, 0.27, 0.72])
    a3 = fig.add_axes([0.75, 0.19, 0.23, 0.68])
    (hline,) = a1.plot([], [], color=PALETTE["blue"], lw=2)
    a1.set_xlabel("training step (updates)")
    a1.set_ylabel("success probability (pass@1)")
    a1.set_ylim(0, 1.02)
    a1.grid(True, alpha=0.3)
    a1.set_title("training curve", fontsize=10)
    (p0,) = a2.plot([], [], "--", color="black", lw=2, label="start")
    (p1,) = a2.plot([], [], color=PALETTE["orange"], lw=2.4, label="final")
    (xmark,) = a2.plot([], [], "o", ms=8, mfc="white", mec=PALETTE["orange"], mew=2)
    style_pass_at_k_axes(a2, "exact pass@k (§7.2.1)")
    total = max(3 * next(iter(results.values())).policy.mdp.terminal.size, 10)
    bars, vals = _counts_panel(a3, total)
    a3.set_title(f"support change, start → final, ε = {eps:.0e}", fontsize=9)
    info = W.HTML()

    def apply(v):
        key = (v["world"], v["method"])
        if key not in pre:                        # mid-switch: the method list follows the world
            key = (v["world"], methods_of[v["world"]][0])
        d = pre[key]
        hline.set_data(d["steps"], d["success"])
        lo, hi = float(np.nanmin(d["steps"])), float(np.nanmax(d["steps"]))
        a1.set_xlim(lo - 0.02 * (hi - lo) - 0.5, hi + 0.02 * (hi - lo) + 0.5)
        p0.set_data(d["ks"], d["pk0"])
        p1.set_data(d["ks"], d["pk1"])
        a2.set_xlim(d["ks"].min(), d["ks"].max())
        if d["cross"]:
            xmark.set_data([d["cross"][0][0]], [d["cross"][0][1]])
            note = f"pass@k crosses the start at k ≈ <b>{d['cross'][0][0]:.2g}</b>"
        else:
            xmark.set_data([], [])
            note = "no pass@k crossover"
        _set_counts(bars, vals, d["counts"])
        em, rm, am = d["masses"]
        info.value = (f"<b>{key[0]}</b> · <b>{key[1]}</b>: role <b>{d['role']}</b> (mass expanded {em:.3f}, "
                      f"reshaped {rm:.3f}, attrited {am:.3f}); success {d['s0']:.3f} → <b>{d['s1']:.3f}</b>; "
                      f"KL(final ‖ start) = {d['kl']:.3f} nats; {note}")
        return key                                 # axis limits differ per run: one background each

    wdd = W.Dropdown(options=worlds, value=worlds[0], description="world", style={"description_width": "initial"})
    mdd = W.Dropdown(options=methods_of[worlds[0]], value=methods_of[worlds[0]][0], description="method",
                     style={"description_width": "initial"})
    ref = {}

    def on_world(change):        # registered first: sync the method list, then redraw once
        opts = methods_of[change["new"]]
        with ref["app"].hold():
            keep = mdd.value if mdd.value in opts else opts[0]
            mdd.options = opts
            mdd.value = keep
    wdd.observe(on_world, names="value")
    controls = {"world": wdd, "method": mdd}
    dynamic = [hline, p0, p1, xmark, *bars, *vals]
    ref["app"] = app = App(fig, (a1, a2, a3), controls, apply, dynamic,
                           data={"precomputed": pre, "methods_of": methods_of}, dpi=dpi, info=info,
                           image_format=image_format)
    return app
