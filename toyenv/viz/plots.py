"""Figures of the course: each function takes an optional Axes and returns what it drew.

Every figure shows one of the survey's distribution-level objects, computed exactly on the toy tree:

- :func:`plot_tree` — the prefix tree; node area = state occupancy d(s) (Eq. 3), edge colour = the
  change in d(s, a) (Eq. 2) between two policies, expanded (Eq. 6) and attrited (Eq. 8) pairs marked.
- :func:`plot_occupancy_heatmap` — d(s, a) as a states x tokens heatmap with the boundary of the
  effective support E_ε (Eq. 5).
- :func:`plot_support_vs_eps` — sizes of the expanded / shared C_ε / attrited sets (Eq. 6-8) as ε
  varies, on a log-ε axis.
- :func:`plot_pass_at_k` — exact pass@k on a log-k axis, crossovers marked (survey §7.2.1, ref [132]).
- :func:`plot_history` — training curves from ``run.history``.
- :func:`plot_kl_reward` — the KL-reward frontier (§5.1, over-optimisation ref [98]).
- :func:`plot_handoff` — what each pipeline stage gained, kept and lost (§6.2-6.4).
- :func:`plot_family_success` — success per task family for several policies (attrition through shared
  parameters, specialists and their consolidation; §6.2-6.4).
- :func:`plot_gold_proxy` — gold (verifier) and proxy (learned reward) after each stage (§6.4).

Conventions. A function never touches pyplot state except to create a figure when ``ax`` is None,
and never writes files. The returned dataclass holds the artists (so tests can check them and widgets
can update them in place); :class:`TreeArtists` and :class:`HeatmapArtists` have an ``update``
method that restyles the same artists for another policy or threshold. Colours come from the
colour-blind-safe Okabe-Ito palette in :data:`PALETTE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from ..core.exact import Occupancy, check_eps, kl, occupancy, pass_at_k, success_prob, support_sets
from ..core.passes import trajectory_probs_from
from ..core.tree import check_same_world

# ---------------------------------------------------------------------------------------- palette
PALETTE = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
    "grey": "#999999", "light": "#DDDDDD", "dark": "#3B3B3B",
}
"""The Okabe-Ito colour-blind-safe palette (plus three greys), the one place colours are defined."""

ROLE_COLORS = {"expanded": PALETTE["green"], "shared": PALETTE["blue"], "attrited": PALETTE["vermillion"]}
"""Colour of each support set (Eq. 6-8), used by every figure and widget."""

SERIES = [PALETTE[c] for c in ("black", "orange", "sky", "green", "vermillion", "blue", "purple", "grey")]
FRONTIER_SERIES = [(PALETTE[c], m) for c, m in (("blue", "o"), ("orange", "s"), ("green", "^"), ("purple", "D"),
                                                  ("sky", "v"), ("vermillion", "P"), ("black", "X"))]
"""(colour, marker) of the KL-reward series: no two of the first five share a hue family, and each
series has its own marker, so the figure reads in greyscale and for colour-blind readers."""
"""Colours for successive curves; the first (black) is the reference/base policy."""

CHANGE_CMAP = mcolors.LinearSegmentedColormap.from_list(
    "toyenv_change", [PALETTE["vermillion"], "#F4F4F4", PALETTE["blue"]])
"""Diverging map for a change in occupancy: vermillion = lost mass, blue = gained mass."""

OCC_EDGE_CMAP = mcolors.LinearSegmentedColormap.from_list(
    "toyenv_occ_edge", ["#C8C8C8", PALETTE["blue"], "#002A44"])
"""Sequential map for occupancy drawn on white (tree edges when there is no ``before``)."""

OCC_CMAP = "viridis"
"""Sequential map of the occupancy heatmap (perceptually uniform, colour-blind safe)."""

DEFAULT_EPS = 1e-3
FADED_ALPHA = 0.25

_MARKERS = {"expanded": "^", "attrited": "v", "correct": "*"}


# ---------------------------------------------------------------------------------------- helpers
def _new_ax(ax, figsize, layout="constrained"):
    """The given Axes, or a new figure's only Axes (the one place pyplot is used)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize, layout=layout)
    return ax


def _is_run(x) -> bool:
    return hasattr(x, "snapshots") and hasattr(x, "policy")


def _as_occ(x) -> Occupancy:
    """An Occupancy from a policy, an Occupancy or a Run (its final policy)."""
    if isinstance(x, Occupancy):
        return x
    if _is_run(x):
        x = x.policy
    if not hasattr(x, "probs") or not hasattr(x, "mdp"):
        raise TypeError(f"expected a policy, an Occupancy or a Run, got {type(x).__name__}")
    return occupancy(x)


def _check_eps(eps) -> float:
    return check_eps(DEFAULT_EPS if eps is None else eps)


def _prompts_arg(mdp, prompt) -> list:
    if prompt is None:
        return list(range(mdp.num_prompts))
    items = [prompt] if isinstance(prompt, (int, np.integer)) else list(prompt)
    for p in items:
        if not isinstance(p, (int, np.integer)) or not 0 <= p < mdp.num_prompts:
            raise ValueError(f"prompt must be a prompt index in [0, {mdp.num_prompts}) or a list of them, "
                             f"got {prompt!r}")
    return [int(p) for p in items]


def prefix_label(mdp, s: int, *, with_prompt: bool = True) -> str:
    """A short label for state ``s``: ``'q0 | h a'`` (the empty prefix is shown as a dot)."""
    p, toks = mdp.prefix(int(s))
    body = mdp.render(toks) if toks else "·"
    return f"{mdp.prompts[p]} | {body}" if with_prompt else body


def _fmt_eps(eps: float) -> str:
    e = math.floor(math.log10(eps))
    m = eps / 10**e
    return f"1e{e}" if abs(m - 1) < 1e-9 else f"{eps:.2g}"


# ================================================================================= prefix tree
@dataclass(eq=False)
class TreeArtists:
    """What :func:`plot_tree` drew. Node ``i`` is state ``node_states[i]``; edge ``j`` is the pair
    ``edge_pairs[j] = (s, a)`` leading to state ``mdp.child[s, a]``; leaf ``l`` is the correct terminal
    pair ``leaf_pairs[l]`` (a complete correct answer, drawn as a star)."""

    ax: Any
    mdp: Any
    nodes: Any                      # PathCollection, one point per node
    edges: Any                      # LineCollection, one segment per edge
    leaves: Any                     # PathCollection of correct answers (None when there are none)
    leaf_edges: Any                 # LineCollection from a state to its correct-answer leaf
    expanded: Any                   # PathCollection: markers on expanded pairs (Eq. 6)
    attrited: Any                   # PathCollection: markers on attrited pairs (Eq. 8)
    node_states: np.ndarray         # [N] state index of each node
    node_xy: np.ndarray             # [N, 2]
    edge_pairs: np.ndarray          # [E, 2] (s, a)
    leaf_pairs: np.ndarray          # [L, 2] (s, a)
    prompts: list                   # prompt indices shown
    eps: float
    faded: np.ndarray = None        # [N] bool: d(s) < eps for the policy shown
    expanded_pairs: np.ndarray = None   # [k, 2] pairs marked expanded (among the drawn states)
    attrited_pairs: np.ndarray = None   # [k, 2]
    pruned: bool = False            # True when states below eps were left out (tree above max_nodes)
    colorbar: Any = None
    labels: list = field(default_factory=list)
    norm: Any = None
    title: Any = None
    _pair_xy: dict = field(default_factory=dict, repr=False)   # (s, a) -> marker position
    _size_ref: float | None = None
    _max_size: float = 300.0

    @property
    def num_nodes(self) -> int:
        return len(self.node_states)

    def update(self, pi, before=None, *, eps=None, size_ref=None, vmax=None, title=None, show=None):
        """Restyle the same artists for another policy/threshold (sizes, colours, fading, markers).

        Edge colours and markers always describe the change from ``before`` to ``pi``; node sizes
        and fading show ``show`` (default ``pi``; pass ``before`` to see the starting occupancy).
        ``size_ref`` (occupancy drawn at full size) and ``vmax`` (largest |change| on the colour
        scale) keep scales fixed across calls, as the widgets need. Returns ``self``.
        """
        after = _as_occ(pi)
        prev = None if before is None else _as_occ(before)
        shown_occ = after if show is None else _as_occ(show)
        eps = self.eps if eps is None else _check_eps(eps)
        self.eps = eps
        S = self.node_states
        d_s = shown_occ.s[S]
        ref = size_ref or self._size_ref or max(float(d_s.max()), 1e-12)
        sizes = 6 + self._max_size * np.clip(d_s / ref, 0, 1)
        self.faded = d_s < eps
        face = np.tile(mcolors.to_rgba(PALETTE["dark"]), (len(S), 1))
        face[self.faded] = mcolors.to_rgba("#B0B0B0", 0.7)
        self.nodes.set_sizes(sizes)
        self.nodes.set_facecolors(face)
        self.nodes.set_edgecolors(np.where(self.faded[:, None], face, mcolors.to_rgba("white")))

        s_e, a_e = self.edge_pairs[:, 0], self.edge_pairs[:, 1]
        d_after = after.sa[s_e, a_e] if len(s_e) else np.zeros(0)
        d_before = prev.sa[s_e, a_e] if (prev is not None and len(s_e)) else d_after
        rgba, norm = self._edge_colors(after, prev, d_after, d_before, eps, vmax)
        self.norm = norm
        both_low = (d_after < eps) & (d_before < eps)
        rgba[both_low, 3] = FADED_ALPHA
        big = np.maximum(d_after, d_before)
        wref = ref if ref > 0 else 1.0
        self.edges.set_color(rgba)
        self.edges.set_linewidths(0.6 + 3.4 * np.sqrt(np.clip(big / wref, 0, 1)))

        if self.leaves is not None:
            s_l, a_l = self.leaf_pairs[:, 0], self.leaf_pairs[:, 1]
            d_l = shown_occ.sa[s_l, a_l]
            low = d_l < eps
            lface = np.tile(mcolors.to_rgba(PALETTE["yellow"]), (len(s_l), 1))
            lface[low, 3] = 0.35
            self.leaves.set_sizes(30 + 0.6 * self._max_size * np.sqrt(np.clip(d_l / ref, 0, 1)))
            self.leaves.set_facecolors(lface)
            lcol = np.tile(mcolors.to_rgba(PALETTE["grey"]), (len(s_l), 1))
            lcol[low, 3] = FADED_ALPHA
            self.leaf_edges.set_color(lcol)

        empty = np.zeros((0, 2))
        if prev is None:
            self.expanded_pairs = self.attrited_pairs = np.zeros((0, 2), int)
        else:
            shown = np.zeros(after.mdp.num_states, bool)
            shown[S] = True
            sets = support_sets(prev.sa, after.sa, eps)
            self.expanded_pairs = np.argwhere(sets["expanded"] & shown[:, None])
            self.attrited_pairs = np.argwhere(sets["attrited"] & shown[:, None])
        for coll, pairs in ((self.expanded, self.expanded_pairs), (self.attrited, self.attrited_pairs)):
            xy = np.array([self._pair_xy[(int(s), int(a))] for s, a in pairs]) if len(pairs) else empty
            coll.set_offsets(xy)
        if title is not None and self.title is not None:
            self.title.set_text(title)
        return self

    def _edge_colors(self, after, prev, d_after, d_before, eps, vmax):
        if prev is None:
            hi = max(float(after.sa.max()), 1e-12)
            norm = mcolors.LogNorm(vmin=max(hi * 1e-5, 1e-12), vmax=hi, clip=True)
            return OCC_EDGE_CMAP(norm(np.maximum(d_after, 1e-300))), norm
        delta = d_after - d_before
        m = vmax or max(float(np.abs(delta).max()) if len(delta) else 0.0, 10 * eps, 1e-9)
        norm = mcolors.SymLogNorm(linthresh=min(eps, m / 10), vmin=-m, vmax=m, base=10)
        return CHANGE_CMAP(norm(delta)), norm


def _tree_states(mdp, occs, eps, prompts, max_nodes):
    """States to draw: every state of the chosen prompts, or (above ``max_nodes``) those with
    d(s) >= eps under any of ``occs`` (closed under ancestors), dropping prompts from the end and
    finally raising the threshold if that is still too many. Returns (states, prompts, pruned)."""
    in_prompt = np.isin(mdp.prompt_of, prompts)
    states = np.nonzero(in_prompt)[0]
    if len(states) <= max_nodes:
        return states, prompts, False
    d = np.max([o.s for o in occs], axis=0)       # [S]
    keep = in_prompt & (d >= eps)
    keep[mdp.roots[prompts]] = True
    while keep.sum() > max_nodes and len(prompts) > 1:
        prompts = prompts[:-1]
        keep &= np.isin(mdp.prompt_of, prompts)
    if keep.sum() > max_nodes:                     # one prompt, still too big: keep the heaviest states
        cand = np.nonzero(keep)[0]
        top = cand[np.argsort(-d[cand], kind="stable")[:max_nodes]]
        keep[:] = False
        keep[top] = True
    # ancestors (d(child) <= d(parent) already makes the set closed; this guards the top-k cut)
    for s in np.nonzero(keep)[0][::-1]:
        p = mdp.parent[s]
        while p >= 0 and not keep[p]:
            keep[p] = True
            p = mdp.parent[p]
    return np.nonzero(keep)[0], prompts, True


def _tree_layout(mdp, states, leaf_pairs):
    """Tidy layered layout with networkx: leaves get consecutive slots in depth-first token order,
    a parent sits midway between its first and last child, prompts side by side with a gap."""
    import networkx as nx
    shown = set(int(s) for s in states)
    leaves_of = {}
    for s, a in leaf_pairs:
        leaves_of.setdefault(int(s), []).append(int(a))
    G = nx.DiGraph()
    for s in states:
        s = int(s)
        G.add_node(("s", s))
        for a in range(mdp.vocab_size):           # children in token order
            c = int(mdp.child[s, a])
            if c >= 0 and c in shown:
                G.add_edge(("s", s), ("s", c))
            elif a in leaves_of.get(s, ()):
                G.add_edge(("s", s), ("y", s, a))
    pos, slot = {}, 0.0
    for root in [int(r) for r in states if mdp.parent[r] < 0]:
        order = list(nx.dfs_preorder_nodes(G, ("s", root)))
        for n in order:
            if G.out_degree(n) == 0:
                pos[n] = [slot, 0.0]
                slot += 1
        for n in reversed(order):
            kids = list(G.successors(n))
            if kids:
                pos[n] = [(pos[kids[0]][0] + pos[kids[-1]][0]) / 2, 0.0]
            depth = mdp.depth[n[1]] + (1 if n[0] == "y" else 0)
            pos[n][1] = -float(depth)
        slot += 1.0                                # gap between prompts
    return G, {k: np.array(v) for k, v in pos.items()}, slot - 1.0


def plot_tree(pi, ax=None, *, before=None, eps=1e-3, prompt=None, max_nodes=300, labels="auto",
              colorbar=True, cax=None, states=None, size_ref=None, vmax=None, legend=True,
              title=None) -> TreeArtists:
    """The prefix tree of a world under policy ``pi`` (survey §2.3, Eq. 2-3, 5-8).

    Nodes are states (prompt + prefix); node area is proportional to the state occupancy d(s)
    (Eq. 3); nodes with d(s) < eps are faded. Edges are the pairs (s, a) that lead to another state;
    their colour is the change d_pi(s, a) - d_before(s, a) (blue = gained, vermillion = lost; with
    no ``before`` it is d(s, a) itself) and their width grows with d(s, a). Correct complete answers
    are yellow stars. With ``before``, pairs in the expanded set (Eq. 6) carry a green ▲ and pairs in
    the attrited set (Eq. 8) a vermillion ▼ (terminal pairs: just below their state).

    Args:
        pi: a policy, an Occupancy or a Run (its final policy; then ``before`` defaults to the
            run's first snapshot).
        before: the policy to compare with (e.g. the base), or None.
        eps: support threshold ε (Eq. 5).
        prompt: a prompt index or list of them; None = all prompts while they fit in ``max_nodes``.
        max_nodes: above this many states, states below eps (under both policies) are left out,
            then prompts from the end, then the lightest states.
        labels: "auto" (token names on edges when at most 120 nodes), True or False.
        colorbar: draw a colour bar (into ``cax`` if given).
        states: draw exactly these states (their ancestors are added); overrides the pruning.
        size_ref, vmax: fixed scales (see :meth:`TreeArtists.update`).
    Returns:
        :class:`TreeArtists`.
    """
    if _is_run(pi):
        if before is None and pi.snapshots:
            before = pi.snapshots[0][1]
        pi = pi.policy
    after = _as_occ(pi)
    prev = None if before is None else _as_occ(before)
    mdp = after.mdp
    if prev is not None:
        check_same_world(mdp, prev.mdp, "before policy")
    eps = _check_eps(eps)
    if not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive integer, got {max_nodes!r}")
    prompts = _prompts_arg(mdp, prompt)
    occs = [after] + ([prev] if prev is not None else [])
    if states is not None:
        keep = np.zeros(mdp.num_states, bool)
        keep[np.asarray(states, int)] = True
        for s in np.nonzero(keep)[0][::-1]:
            p = mdp.parent[s]
            while p >= 0 and not keep[p]:
                keep[p] = True
                p = mdp.parent[p]
        node_states = np.nonzero(keep)[0]
        prompts, pruned = sorted(set(mdp.prompt_of[node_states].tolist())), False
    else:
        node_states, prompts, pruned = _tree_states(mdp, occs, eps, prompts, max_nodes)
    leaf_pairs = np.argwhere(mdp.correct[node_states]) if len(node_states) else np.zeros((0, 2), int)
    leaf_pairs[:, 0] = node_states[leaf_pairs[:, 0]]
    G, pos, width = _tree_layout(mdp, node_states, leaf_pairs)
    n = len(node_states)
    max_depth = int(max(mdp.depth[node_states].max(),
                        (mdp.depth[leaf_pairs[:, 0]] + 1).max() if len(leaf_pairs) else 0))
    ax = _new_ax(ax, (float(np.clip(2.5 + 0.085 * width, 7.0, 14.0)), 1.6 + 1.05 * max(max_depth, 1)))

    import networkx as nx
    shown = set(node_states.tolist())
    edge_pairs = np.array([(int(mdp.parent[c]), int(mdp.last_token[c])) for c in node_states
                           if mdp.parent[c] >= 0], dtype=int).reshape(-1, 2)
    nodelist = [("s", int(s)) for s in node_states]
    edgelist = [(("s", int(s)), ("s", int(mdp.child[s, a]))) for s, a in edge_pairs]
    edges = nx.draw_networkx_edges(G, pos, edgelist=edgelist, ax=ax, arrows=False, width=1.0,
                                   edge_color=PALETTE["grey"], node_size=0)
    if not isinstance(edges, LineCollection):     # no edges: an empty collection keeps the API uniform
        edges = LineCollection([], zorder=1)
        ax.add_collection(edges)
    leaf_edges = None
    leaves = None
    if len(leaf_pairs):
        leaf_edges = LineCollection([[pos[("s", int(s))], pos[("y", int(s), int(a))]] for s, a in leaf_pairs],
                                    linestyles=":", linewidths=1.0, zorder=1)
        ax.add_collection(leaf_edges)
        leaves = ax.scatter(*np.array([pos[("y", int(s), int(a))] for s, a in leaf_pairs]).T,
                            marker=_MARKERS["correct"], s=60, c=PALETTE["yellow"], edgecolors="black",
                            linewidths=0.6, zorder=4)
    nodes = nx.draw_networkx_nodes(G, pos, nodelist=nodelist, ax=ax, node_size=20,
                                   node_color=PALETTE["dark"], linewidths=0.5)
    nodes.set_zorder(3)
    xy = np.array([pos[k] for k in nodelist])

    # marker positions for every pair of a drawn state
    V = mdp.vocab_size
    pair_xy = {}
    for s in node_states:
        x0, y0 = pos[("s", int(s))]
        for a in range(V):
            c = int(mdp.child[s, a])
            if c >= 0 and c in shown:   # 40% of the way down the edge (its token label sits at 65%)
                pair_xy[(int(s), a)] = 0.6 * pos[("s", int(s))] + 0.4 * pos[("s", c)]
            elif ("y", int(s), a) in pos:
                pair_xy[(int(s), a)] = (pos[("y", int(s), a)] + pos[("s", int(s))]) / 2
            else:                                  # a terminal (or pruned) pair: a slot under the state
                pair_xy[(int(s), a)] = np.array([x0 + (a - (V - 1) / 2) * 0.22, y0 - 0.4])
    mk = dict(s=46, edgecolors="black", linewidths=0.5, zorder=7)
    expanded = ax.scatter(np.zeros(0), np.zeros(0), marker=_MARKERS["expanded"], c=ROLE_COLORS["expanded"], **mk)
    attrited = ax.scatter(np.zeros(0), np.zeros(0), marker=_MARKERS["attrited"], c=ROLE_COLORS["attrited"], **mk)

    # the largest node is about one layout slot wide, so equal neighbours touch but do not overlap
    slot_pts = ax.get_position().width * ax.figure.get_figwidth() * 72 / (width + 0.8)
    max_size = float(np.clip((0.95 * slot_pts) ** 2, 20.0, 420.0))
    art = TreeArtists(ax, mdp, nodes, edges, leaves, leaf_edges, expanded, attrited, node_states, xy,
                      edge_pairs, leaf_pairs, list(prompts), eps, pruned=pruned, _pair_xy=pair_xy,
                      _size_ref=size_ref, _max_size=max_size)
    if size_ref is None:
        art._size_ref = max(max(float(o.s[node_states].max()) for o in occs), 1e-12)
    art.update(after, prev, eps=eps, vmax=vmax)

    # labels: prompt names above roots, token names on edges of small trees
    for r in [s for s in node_states if mdp.parent[s] < 0]:
        x0, y0 = pos[("s", int(r))]
        art.labels.append(ax.text(x0, y0 + 0.28, mdp.prompts[mdp.prompt_of[r]], ha="center", va="bottom",
                                  fontsize=9, fontweight="bold"))
    ax.set_xlim(-1.0, width - 0.2)
    ax.set_ylim(-max_depth - 0.6, 0.75)
    if labels is True or (labels == "auto" and n <= 120):
        fs = 7 if n <= 60 else 6
        to_px = ax.transData.transform
        for s, a in edge_pairs:
            c = ("s", int(mdp.child[s, a]))
            if G.out_degree(c) == 0:   # a layout leaf: siblings are one slot apart, label under the node
                xy, off, va = pos[c], (0.0, -(0.5 * np.sqrt(max_size) + 1.0)), "top"
            else:   # beside the edge (65% of the way down), offset perpendicular to it on screen
                p0, p1 = pos[("s", int(s))], pos[c]
                xy, va = 0.35 * p0 + 0.65 * p1, "center"
                ex, ey = to_px(p1) - to_px(p0)
                nx_, ny_ = np.array([-ey, ex]) / max(np.hypot(ex, ey), 1e-9)
                if ny_ < 0:
                    nx_, ny_ = -nx_, -ny_
                off = (7.0 * nx_, 7.0 * ny_)
            art.labels.append(ax.annotate(mdp.vocab[a], xy, xytext=off, textcoords="offset points", fontsize=fs,
                                          ha="center", va=va, color="#222222", zorder=6, annotation_clip=True))
    ax.set_yticks(-np.arange(max_depth + 1), [str(t) for t in range(max_depth + 1)])
    ax.tick_params(axis="y", left=True, labelleft=True, labelsize=8)
    ax.tick_params(axis="x", bottom=False, labelbottom=False)
    ax.set_ylabel("prefix length t (tokens)")
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    note = f", {len(prompts)} of {mdp.num_prompts} prompts" if len(prompts) < mdp.num_prompts else ""
    note += ", states below ε left out" if pruned else ""
    if title is None:
        head = "Prefix tree: node area = d(s) (Eq. 3)"
        head += ", edge colour = change in d(s,a) (Eq. 2)" if prev is not None else ", edge colour = d(s,a) (Eq. 2)"
        title = f"{head}\nε = {_fmt_eps(eps)}{note}"
    art.title = ax.set_title(title, fontsize=10)
    if colorbar:
        import matplotlib.cm as cm
        sm = cm.ScalarMappable(norm=art.norm, cmap=CHANGE_CMAP if prev is not None else OCC_EDGE_CMAP)
        label = "Δd(s,a) = after − before" if prev is not None else "d(s,a) (log scale)"
        fig = ax.figure
        art.colorbar = (fig.colorbar(sm, cax=cax, label=label) if cax is not None
                        else fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.01, label=label))
    if legend:
        handles = [Line2D([], [], ls="", marker="o", ms=7, mfc=PALETTE["dark"], mec="white",
                          label="state, area ∝ d(s)"),
                   Line2D([], [], ls="", marker="o", ms=4, mfc="#B0B0B0", mec="#B0B0B0", label="d(s) < ε")]
        if len(leaf_pairs):
            handles.append(Line2D([], [], ls="", marker="*", ms=10, mfc=PALETTE["yellow"], mec="black",
                                  label="correct answer"))
        if prev is not None:
            handles += [Line2D([], [], ls="", marker="^", ms=7, mfc=ROLE_COLORS["expanded"], mec="black",
                               label="expanded (Eq. 6)"),
                        Line2D([], [], ls="", marker="v", ms=7, mfc=ROLE_COLORS["attrited"], mec="black",
                               label="attrited (Eq. 8)")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
                  frameon=False, fontsize=8, handletextpad=0.3, columnspacing=1.0)
    return art


# ================================================================================= heatmap
@dataclass(eq=False)
class HeatmapArtists:
    """What :func:`plot_occupancy_heatmap` drew: ``image`` (a QuadMesh, ``image.get_array()`` is
    ``[R, V]``) holds d(s, a) for the states ``states`` (rows) and every token (columns), cell (i, j)
    centred at x = j, y = i; ``boundary`` outlines E_ε (Eq. 5)."""

    ax: Any
    mdp: Any
    image: Any
    boundary: Any                   # LineCollection around the cells with d(s, a) >= eps
    correct: Any                    # PathCollection: correct terminal pairs
    expanded: Any                   # PathCollection (empty without ``before``)
    attrited: Any
    states: np.ndarray              # [R] state of each row
    eps: float
    norm: Any
    colorbar: Any = None
    title: Any = None
    support: np.ndarray = None      # [R, V] bool: the cells inside E_ε
    halo: Any = None                # white LineCollection under ``boundary``

    @property
    def shape(self) -> tuple:
        return self.image.get_array().shape

    def update(self, pi_or_occ, before=None, *, eps=None, title=None, show=None):
        """Show another policy/threshold in the same artists. The cells show ``show`` (default
        ``pi_or_occ``) and its E_ε; the ▲/▼ markers always compare ``pi_or_occ`` with ``before``.
        Returns ``self``."""
        occ = _as_occ(pi_or_occ)
        prev = None if before is None else _as_occ(before)
        shown_occ = occ if show is None else _as_occ(show)
        eps = self.eps if eps is None else _check_eps(eps)
        self.eps = eps
        data = shown_occ.sa[self.states]                           # [R, V]
        self.image.set_array(np.ma.masked_less_equal(data, 0.0))
        self.support = data >= eps
        data_after = occ.sa[self.states]
        segs = support_boundary(self.support)
        self.boundary.set_segments(segs)
        if self.halo is not None:
            self.halo.set_segments(segs)
        empty = np.zeros((0, 2))
        for coll, which in ((self.expanded, "expanded"), (self.attrited, "attrited")):
            if prev is None:
                coll.set_offsets(empty)
                continue
            mask = support_sets(prev.sa[self.states], data_after, eps)[which]
            rc = np.argwhere(mask)
            coll.set_offsets(np.c_[rc[:, 1] + 0.22, rc[:, 0] + 0.2] if len(rc) else empty)
        if title is not None and self.title is not None:
            self.title.set_text(title)
        return self


def support_boundary(mask: np.ndarray) -> list:
    """Segments outlining the True cells of a boolean grid ``[R, C]`` (cell (i, j) spans
    x in [j - .5, j + .5], y in [i - .5, i + .5]): one segment per cell side facing a False cell
    or the border."""
    m = np.pad(np.asarray(mask, bool), 1)
    inner = m[1:-1, 1:-1]
    segs = []
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = m[1 + di: m.shape[0] - 1 + di, 1 + dj: m.shape[1] - 1 + dj]
        for i, j in np.argwhere(inner & ~nb):
            if di:
                y = i + di * 0.5
                segs.append([(j - 0.5, y), (j + 0.5, y)])
            else:
                x = j + dj * 0.5
                segs.append([(x, i - 0.5), (x, i + 0.5)])
    return segs


def _heatmap_states(mdp, occs, prompts, max_states):
    in_prompt = np.isin(mdp.prompt_of, prompts)
    cand = np.nonzero(in_prompt)[0]
    if len(cand) > max_states:
        d = np.max([o.s for o in occs], axis=0)
        cand = np.sort(cand[np.argsort(-d[cand], kind="stable")[:max_states]])
    # depth-first (prefix) order: by prompt, then lexicographically by tokens
    keys = [(int(mdp.prompt_of[s]),) + tuple(int(t) for t in mdp.tokens[s, : mdp.depth[s]]) for s in cand]
    order = sorted(range(len(cand)), key=lambda i: keys[i])
    return cand[order]


def plot_occupancy_heatmap(pi_or_occ, ax=None, *, eps=None, prompt=None, max_states=60, before=None,
                           states=None, vmin=None, vmax=None, colorbar=True, cax=None,
                           title=None) -> HeatmapArtists:
    """State-action occupancy d(s, a) (survey Eq. 2) as a heatmap with the effective support E_ε.

    Rows are states labelled ``prompt | prefix`` in depth-first order, columns are tokens; the colour
    scale is logarithmic (cells with d = 0 are light grey). Cells with d(s, a) >= eps, the effective
    support E_ε (Eq. 5), are outlined in black; correct complete answers carry a yellow star. With
    ``before``, expanded cells (Eq. 6) carry a green ▲ and attrited cells (Eq. 8) a vermillion ▼.

    Args:
        pi_or_occ: a policy, an Occupancy or a Run (its final policy).
        eps: support threshold (None: 1e-3).
        prompt: a prompt index or list of them (None: all).
        max_states: at most this many rows: the states with the largest d(s) (under ``pi`` or
            ``before``) are kept.
        states: exact rows to show (overrides ``prompt`` and ``max_states``).
        vmin, vmax: colour scale limits (default: the data, at most 8 decades).
    """
    occ = _as_occ(pi_or_occ)
    prev = None if before is None else _as_occ(before)
    mdp = occ.mdp
    eps = _check_eps(eps)
    if not isinstance(max_states, (int, np.integer)) or max_states < 1:
        raise ValueError(f"max_states must be a positive integer, got {max_states!r}")
    occs = [occ] + ([prev] if prev is not None else [])
    rows = (np.asarray(states, int) if states is not None
            else _heatmap_states(mdp, occs, _prompts_arg(mdp, prompt), max_states))
    R, V = len(rows), mdp.vocab_size
    ax = _new_ax(ax, (2.4 + 0.55 * V, 1.4 + 0.19 * R))
    data = occ.sa[rows]
    hi = vmax or max(max(float(o.sa[rows].max()) for o in occs), 1e-12)
    pos = np.concatenate([o.sa[rows][o.sa[rows] > 0] for o in occs])
    lo = vmin or max(float(pos.min()) if pos.size else hi * 1e-8, hi * 1e-8)
    norm = mcolors.LogNorm(vmin=lo, vmax=hi, clip=False)
    import matplotlib
    cmap = matplotlib.colormaps[OCC_CMAP].with_extremes(bad="#EFEFEF", under="#EFEFEF")
    # a QuadMesh (one quad per cell) redraws ~25x faster than a resampled imshow: widgets need that
    image = ax.pcolormesh(np.arange(V + 1) - 0.5, np.arange(R + 1) - 0.5, np.ma.masked_less_equal(data, 0.0),
                          cmap=cmap, norm=norm, shading="flat")
    # a white halo under a black line keeps the outline visible on every colour (two plain
    # collections: path effects would draw each segment separately, 20x slower)
    halo = LineCollection([], colors="white", linewidths=3.2, zorder=3, capstyle="projecting")
    boundary = LineCollection([], colors="black", linewidths=1.4, zorder=3.1, capstyle="projecting")
    ax.add_collection(halo)
    ax.add_collection(boundary)
    # markers no taller than a row
    row_pt = ax.get_position().height * ax.figure.get_figheight() * 72 / max(R, 1)
    m_area = float(np.clip((0.8 * row_pt) ** 2, 10.0, 36.0))
    rc = np.argwhere(mdp.correct[rows])
    correct = ax.scatter(rc[:, 1] - 0.22, rc[:, 0] - 0.1, marker="*", s=2 * m_area, c="black",
                         edgecolors="white", linewidths=0.7, zorder=4)
    mk = dict(s=m_area, edgecolors="black", linewidths=0.5, zorder=5)
    expanded = ax.scatter(np.zeros(0), np.zeros(0), marker="^", c=ROLE_COLORS["expanded"], **mk)
    attrited = ax.scatter(np.zeros(0), np.zeros(0), marker="v", c=ROLE_COLORS["attrited"], **mk)
    art = HeatmapArtists(ax, mdp, image, boundary, correct, expanded, attrited, rows, eps, norm, halo=halo)
    art.update(occ, prev, eps=eps)
    fs = 8 if R <= 30 else (7 if R <= 50 else 6)
    ax.set_yticks(np.arange(R), [prefix_label(mdp, s) for s in rows], fontsize=fs)
    ax.set_xticks(np.arange(V), list(mdp.vocab), fontsize=8)
    ax.set_xlabel("next token a")
    ax.set_ylabel("state s = prompt | prefix")
    ax.set_xlim(-0.5, V - 0.5)
    ax.set_ylim(R - 0.5, -0.5)
    if title is None:
        title = f"Occupancy d(s,a) (Eq. 2), E_ε outlined (Eq. 5)\nε = {_fmt_eps(eps)}"
    art.title = ax.set_title(title, fontsize=10)
    handles = [Line2D([], [], ls="", marker="s", ms=9, mfc="white", mec="black", mew=1.4, label="in E_ε"),
               Line2D([], [], ls="", marker="*", ms=10, mfc="black", mec="white", label="correct answer")]
    if prev is not None:
        handles += [Line2D([], [], ls="", marker="^", ms=7, mfc=ROLE_COLORS["expanded"], mec="black",
                           label="expanded (Eq. 6)"),
                    Line2D([], [], ls="", marker="v", ms=7, mfc=ROLE_COLORS["attrited"], mec="black",
                           label="attrited (Eq. 8)")]
    wide = ax.get_position().width * ax.figure.get_figwidth() > 4.0
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=4.2,
              ncol=len(handles) if wide else 2, frameon=False, fontsize=8, handletextpad=0.3,
              columnspacing=0.8)
    if colorbar:
        fig = ax.figure
        label = "d(s,a) (log scale)"
        art.colorbar = (fig.colorbar(image, cax=cax, label=label, extend="min") if cax is not None
                        else fig.colorbar(image, ax=ax, fraction=0.08, pad=0.02, label=label, extend="min"))
    return art


# ================================================================================= support vs eps
@dataclass(eq=False)
class SupportEpsArtists:
    """What :func:`plot_support_vs_eps` drew: one line per set, over ``eps_grid``."""

    ax: Any
    lines: dict                     # "expanded" / "shared" / "attrited" -> Line2D
    eps_grid: np.ndarray
    values: dict                    # same keys -> np.ndarray [len(eps_grid)]
    marker: Any = None              # vertical line at ``eps`` (None if not asked)
    title: Any = None


def support_counts_vs_eps(before, after, eps_grid, *, mass=False, level="pairs") -> dict:
    """Sizes (or masses) of the expanded, shared and attrited sets (Eq. 6-8) at each ε in
    ``eps_grid``. ``level="trajectories"`` uses trajectory support {y : pi(y|x) >= ε}."""
    b, a = _as_occ(before), _as_occ(after)
    check_same_world(b.mdp, a.mdp, "after policy")
    if level == "pairs":
        x0, x1 = b.sa, a.sa
    elif level == "trajectories":
        x0 = trajectory_probs_from(b.mdp, b.probs, b.reach)
        x1 = trajectory_probs_from(a.mdp, a.probs, a.reach)
        term = b.mdp.terminal
        x0, x1 = np.where(term, x0, -1.0), np.where(term, x1, -1.0)
    else:
        raise ValueError(f"level must be 'pairs' (Eq. 5-8 on d(s,a)) or 'trajectories', got {level!r}")
    eps_grid = np.asarray(eps_grid, float)
    out = {k: np.zeros(len(eps_grid)) for k in ("expanded", "shared", "attrited")}
    for i, e in enumerate(eps_grid):
        _check_eps(e)
        sets = support_sets(x0, x1, e)
        for k, m in sets.items():
            if not mass:
                out[k][i] = m.sum()
            else:   # occupancy mass: after's for expanded/shared, before's for attrited
                src = x0 if k == "attrited" else x1
                out[k][i] = src[m].sum()
    return out


def plot_support_vs_eps(before, after, ax=None, *, eps_grid=None, mass=False, level="pairs",
                        eps=None, title=None) -> SupportEpsArtists:
    """How many state-action pairs are expanded (Eq. 6), shared (C_ε, Eq. 7) and attrited (Eq. 8)
    between ``before`` and ``after``, as the threshold ε varies (log-ε axis).

    The sets depend on ε; this figure shows how much. ``mass=True`` plots occupancy mass instead of
    counts (after's mass for expanded/shared, before's for attrited). ``level="trajectories"`` counts
    complete answers with pi(y|x) >= ε. ``eps`` draws a vertical line at a chosen threshold.
    """
    b, a = _as_occ(before), _as_occ(after)
    if eps_grid is None:
        both = np.concatenate([b.sa[b.sa > 0], a.sa[a.sa > 0]])
        lo = max(10 ** math.floor(math.log10(both.min())), 1e-10) if both.size else 1e-8
        eps_grid = np.logspace(math.log10(lo), 0, 61)
    eps_grid = np.asarray(eps_grid, float)
    values = support_counts_vs_eps(b, a, eps_grid, mass=mass, level=level)
    ax = _new_ax(ax, (6.0, 3.8))
    names = {"expanded": "expanded (Eq. 6)", "shared": "shared C_ε (Eq. 7)", "attrited": "attrited (Eq. 8)"}
    styles = {"expanded": "-", "shared": "--", "attrited": "-."}
    lines = {}
    for k in ("shared", "expanded", "attrited"):
        (lines[k],) = ax.plot(eps_grid, values[k], styles[k], color=ROLE_COLORS[k], lw=2, label=names[k])
    ax.set_xscale("log")
    if mass:
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("occupancy mass: d after the stage on\nexpanded and shared, d before on attrited", fontsize=8)
    else:
        from matplotlib.ticker import FuncFormatter
        ax.set_yscale("symlog", linthresh=1.0)
        top = max(max(float(v.max()) for v in values.values()), 1.0)
        ax.set_ylim(0, top * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        unit = "state-action pairs" if level == "pairs" else "complete answers"
        ax.set_ylabel(f"{unit} (count)")
    ax.set_xlabel("threshold ε (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    marker = None
    if eps is not None:
        marker = ax.axvline(_check_eps(eps), color=PALETTE["grey"], lw=1, ls=":", label=f"ε = {_fmt_eps(eps)}")
    ax.legend(fontsize=8, frameon=False, loc="best", ncol=2 if not mass else 1)
    if title is None:
        title = ("Support decomposition vs ε: effective support E_ε (Eq. 5)" if level == "pairs" else
                 "Answer-level support vs ε: {y : π(y|x) ≥ ε}")
    t = ax.set_title(title, fontsize=10)
    return SupportEpsArtists(ax, lines, eps_grid, values, marker, t)


# ================================================================================= pass@k
@dataclass
class Crossover:
    """Where curve ``label`` crosses the reference curve: at ``k`` (interpolated on log k) with
    pass@k ``value``; ``direction`` is "above->below" when ``label`` starts above the reference."""

    label: str
    reference: str
    k: float
    value: float
    direction: str


def crossovers(ks, reference, values) -> list:
    """Sign changes of ``values - reference`` over ``ks`` as ``[(k, value, direction)]``,
    interpolated linearly in log k. Differences below 1e-9 count as ties and are skipped."""
    ks = np.asarray(ks, float)
    diff = np.asarray(values, float) - np.asarray(reference, float)
    sign = np.where(np.abs(diff) < 1e-9, 0, np.sign(diff))
    idx = np.nonzero(sign)[0]
    out = []
    for i, j in zip(idx[:-1], idx[1:]):
        if sign[i] != sign[j]:
            t = diff[i] / (diff[i] - diff[j])
            lk = math.log(ks[i]) + t * (math.log(ks[j]) - math.log(ks[i]))
            v = values[i] + t * (values[j] - values[i])
            out.append((math.exp(lk), float(v), "above->below" if sign[i] > 0 else "below->above"))
    return out


def _labelled(policies) -> list:
    if _is_run(policies):
        return [("start", policies.snapshots[0][1]), (getattr(policies, "method", "") or "final", policies.policy)]
    if isinstance(policies, dict):
        return [(str(k), v) for k, v in policies.items()]
    out = []
    for i, item in enumerate(policies):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append(item)
        else:
            out.append((f"policy {i}", item))
    if not out:
        raise ValueError("pass at least one policy")
    return out


def default_ks(policies, k_max=None) -> np.ndarray:
    """A log-spaced grid of integer k from 1 to a K large enough to show the tail: at least
    3 / (smallest positive success probability of any prompt), at most 2**16."""
    if k_max is None:
        p_min = 1.0
        for _, pi in policies:
            sp = success_prob(pi)
            w = pi.mdp.prompt_weights
            pos = sp[(sp > 0) & (w > 0)]
            if pos.size:
                p_min = min(p_min, float(pos.min()))
        k_max = int(2 ** np.clip(math.ceil(math.log2(3.0 / p_min)), 6, 16))
    return np.unique(np.round(np.logspace(0, math.log10(k_max), 64)).astype(int))


@dataclass(eq=False)
class PassAtKArtists:
    """What :func:`plot_pass_at_k` drew: one Line2D per policy label, the values, the crossovers
    (against the first, reference curve) and the artists marking them."""

    ax: Any
    ks: np.ndarray
    lines: dict
    values: dict
    crossovers: list
    crossover_artists: list
    reference: str
    title: Any = None


def mark_crossovers(ax, ks, ref_label, ref_values, label, values, color, *, annotate=True):
    """Mark where ``values`` crosses ``ref_values`` on ``ax`` (dotted vertical line, open circle and,
    with ``annotate``, a "crossover k ≈ ..." note); returns (crossovers, artists)."""
    found, arts = [], []
    for n, (k, v, direction) in enumerate(crossovers(ks, ref_values, values)):
        found.append(Crossover(label, ref_label, k, v, direction))
        arts.append(ax.axvline(k, color=color, lw=1, ls=":", alpha=0.8, zorder=1))
        arts.append(ax.plot([k], [v], "o", ms=7, mfc="white", mec=color, mew=2, zorder=5)[0])
        if annotate:
            arts.append(ax.annotate(f"crossover\nk ≈ {k:.2g}", (k, v), xytext=(8, -28 - 24 * n),
                                    textcoords="offset points", fontsize=8, color=color,
                                    arrowprops=dict(arrowstyle="-", color=color, lw=0.8)))
    return found, arts


def style_pass_at_k_axes(ax, title, ks=None):
    """The pass@k axes every pass@k figure and widget shares: log k, probability, grid, legend
    (call after the curves are drawn); returns the title."""
    ax.set_xscale("log")
    if ks is not None:
        ax.set_xlim(ks.min(), ks.max())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (samples per prompt, log scale)")
    ax.set_ylabel("pass@k (probability)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return ax.set_title(title, fontsize=10)


def plot_pass_at_k(policies, ax=None, *, ks=None, title=None, mark=True) -> PassAtKArtists:
    """Exact pass@k = sum_x D(x) [1 - (1 - p_x)^k] on a log-k axis, for several policies.

    ``policies``: a dict label -> policy, a list of (label, policy) or of policies, or a Run (its
    first snapshot vs its final policy). The first curve is the reference (drawn black); every point
    where another curve crosses it is marked with its k (the RL-vs-base crossover of Yue et al. 2025,
    survey ref [132], §7.2.1).
    """
    items = _labelled(policies)
    ks = default_ks(items) if ks is None else np.asarray(ks)
    ax = _new_ax(ax, (6.0, 3.8))
    lines, values, found, arts = {}, {}, [], []
    ref_label = items[0][0]
    for i, (label, pi) in enumerate(items):
        y = np.asarray(pass_at_k(pi, ks), float)
        values[label] = y
        color = SERIES[i % len(SERIES)]
        (lines[label],) = ax.plot(ks, y, color=color, lw=2.2 if i else 2.0, label=label,
                                  ls="-" if i else "--", zorder=3)
    if mark:
        per = {label: crossovers(ks, values[ref_label], values[label]) for label, _ in items[1:]}
        single = sum(len(c) for c in per.values()) == 1
        for i, (label, _) in enumerate(items[1:], start=1):
            f, a = mark_crossovers(ax, ks, ref_label, values[ref_label], label, values[label],
                                   SERIES[i % len(SERIES)], annotate=single)
            found += f
            arts += a
            if f:   # the legend names the crossing k, so several crossovers stay legible
                lines[label].set_label(f"{label} (crosses {ref_label} at k ≈ "
                                       + ", ".join(f"{c.k:.2g}" for c in f) + ")")
    t = style_pass_at_k_axes(ax, title or "Exact pass@k (§7.2.1): base vs trained, crossover marked", ks)
    return PassAtKArtists(ax, ks, lines, values, found, arts, ref_label, t)


# ================================================================================= history
_UNITS = {"success": "success probability (pass@1)", "loss": "loss", "reward": "expected reward",
          "entropy": "entropy (nats)"}


def history_table(run) -> dict:
    """``run.history`` as ``{name: np.ndarray}``; accepts a dict of lists or a list of row dicts.
    A ``"step"`` column is added (0, 1, ...) when missing."""
    h = getattr(run, "history", run)
    if isinstance(h, (list, tuple)):
        keys = sorted({k for row in h for k in row})
        h = {k: [row.get(k, math.nan) for row in h] for k in keys}
    if not isinstance(h, dict):
        raise TypeError(f"run.history must be a dict of lists (or a list of dicts), got {type(h).__name__}")
    out = {k: np.asarray(v, float) for k, v in h.items()}
    if "step" not in out:
        n = max((len(v) for v in out.values()), default=0)
        out["step"] = np.arange(n, dtype=float)
    return out


def snapshot_metric(run, key: str, ref=None) -> tuple:
    """A metric recomputed exactly at every snapshot: ``"success"``, ``"pass@K"``,
    ``"kl"`` (KL(pi_t || ref), ref = first snapshot by default). Returns (steps, values)."""
    snaps = list(run.snapshots)
    if not snaps:
        raise ValueError("this run has no snapshots to compute metrics from")
    steps = np.array([s for s, _ in snaps], float)
    ref = snaps[0][1] if ref is None else ref
    if key == "success":
        vals = [pass_at_k(p, 1) for _, p in snaps]
    elif key.startswith("pass@"):
        k = int(key[5:])
        vals = [pass_at_k(p, k) for _, p in snaps]
    elif key == "kl":
        vals = [kl(p, ref) for _, p in snaps]
    else:
        raise KeyError(key)
    return steps, np.asarray(vals, float)


@dataclass(eq=False)
class HistoryArtists:
    """What :func:`plot_history` drew: ``lines[(run label, key)]``; ``axes`` holds the Axes (two
    when the second key has other units and is drawn on a twin y-axis)."""

    ax: Any
    lines: dict                     # (run label, key) -> Line2D
    axes: tuple = ()
    title: Any = None


def _unit(key: str) -> str:
    if key in _UNITS:
        return _UNITS[key]
    if key.startswith("kl"):
        return "KL (nats)"
    if key.startswith("pass@"):
        return "pass@k (probability)"
    return key


def _kind(key: str) -> str:
    """Keys of one kind share a y-axis."""
    if key == "success" or key.startswith("pass@"):
        return "probability"
    return "KL (nats)" if key.startswith("kl") else _unit(key)


def _runs_arg(run) -> list:
    if isinstance(run, dict):
        return [(str(k), v) for k, v in run.items()]
    if isinstance(run, (list, tuple)) and run and not isinstance(run[0], dict):
        return [(p[0], p[1]) if isinstance(p, tuple) else (getattr(p, "method", "") or f"run {i}", p)
                for i, p in enumerate(run)]
    return [(getattr(run, "method", "") or "run", run)]


def plot_history(run, keys=("success",), ax=None, *, title=None) -> HistoryArtists:
    """Training curves from ``run.history`` (a dict with ``"step"`` and one list per metric).

    ``run`` may also be a dict label -> Run: one colour per run, one line style per key. Two keys
    with different units (e.g. ``("success", "kl_to_start")``) get two y-axes. A key missing from
    the history but of the form ``"success"``, ``"pass@K"`` or ``"kl"`` is recomputed exactly at
    the run's snapshots (dots). KL names follow the history (``kl_to_start`` = KL(pi_t || pi_0)).
    """
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError("pass at least one history key, e.g. keys=('success',)")
    runs = _runs_arg(run)
    ax = _new_ax(ax, (6.2, 3.6))
    twin = len(keys) == 2 and _kind(keys[0]) != _kind(keys[1])
    axes = (ax, ax.twinx()) if twin else (ax,)
    styles = ["-", "--", ":", "-."]
    lines = {}
    for i, (label, r) in enumerate(runs):
        table = history_table(r)
        for j, key in enumerate(keys):
            color = (SERIES[(i + 1) % len(SERIES)] if len(runs) > 1 else
                     SERIES[(j + 1) % len(SERIES)] if len(keys) > 1 else PALETTE["blue"])
            name = key if len(runs) == 1 else (f"{label}: {key}" if len(keys) > 1 else label)
            target = axes[1] if (twin and j == 1) else ax
            if key in table:
                y = table[key]
                (lines[(label, key)],) = target.plot(table["step"][: len(y)], y, styles[j % 4], color=color,
                                                     lw=2, label=name)
            else:
                try:
                    x, y = snapshot_metric(r, key)
                except (KeyError, AttributeError, ValueError):
                    avail = ", ".join(sorted(k for k in table if k != "step"))
                    raise KeyError(f"{key!r} is not in this run's history ({avail}) and cannot be "
                                   "recomputed from snapshots (only 'success', 'pass@K', 'kl')") from None
                (lines[(label, key)],) = target.plot(x, y, styles[j % 4], marker="o", color=color, lw=2, ms=4,
                                                     label=f"{name} (snapshots)")
    ax.set_xlabel("training step (updates)")
    if twin:
        ax.set_ylabel(f"{_unit(keys[0])}  [—]")
        axes[1].set_ylabel(f"{_unit(keys[1])}  [- -]")
    else:
        units, kinds = {_unit(k) for k in keys}, {_kind(k) for k in keys}
        ax.set_ylabel(units.pop() if len(units) == 1 else kinds.pop() if len(kinds) == 1 else "value")
    ax.grid(True, alpha=0.3)
    if len(lines) > 1:
        handles = [ln for a in axes for ln in a.get_lines()]
        if len(handles) <= 3 and not twin:
            ax.legend(handles=handles, fontsize=8, frameon=False, loc="best")
        else:   # below the axes, where it cannot cover a curve
            ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper center",
                      bbox_to_anchor=(0.5, -0.16), ncol=2 if len(handles) > 2 else len(handles))
    method = getattr(runs[0][1], "method", "") if len(runs) == 1 else ""
    t = ax.set_title(title or f"Training curves{': ' + method if method else ''} ({', '.join(keys)})",
                     fontsize=10)
    return HistoryArtists(ax, lines, axes, t)


# ================================================================================= KL-reward frontier
@dataclass(eq=False)
class FrontierArtists:
    ax: Any
    lines: dict                     # label -> Line2D (reward)
    gold_lines: dict                # label -> Line2D (gold reward, when given)
    frontier: Any                   # Line2D: best reward at KL <= x over all points
    points: list                    # the normalised points: dicts label, kl, reward, gold
    title: Any = None


def _frontier_points(points, ref=None) -> list:
    out = []
    if _is_run(points) or (isinstance(points, dict) and points and all(_is_run(v) for v in points.values())):
        runs = [("run", points)] if _is_run(points) else list(points.items())
        points = [r for r in runs]
    for item in points:
        if isinstance(item, tuple) and len(item) == 2 and _is_run(item[1]):
            label, run = item
        elif _is_run(item):
            label, run = getattr(item, "method", "") or "run", item
        else:
            run = None
        if run is not None:
            base = ref if ref is not None else run.snapshots[0][1]
            for step, p in run.snapshots:
                out.append({"label": str(label), "kl": kl(p, base), "reward": pass_at_k(p, 1),
                            "gold": None, "step": step})
            continue
        if isinstance(item, dict):
            d = dict(item)
        elif isinstance(item, (tuple, list)) and len(item) in (3, 4):
            d = dict(zip(("label", "kl", "reward", "gold"), item))
        else:
            raise TypeError(f"a point must be a dict with label/kl/reward[/gold], a tuple "
                            f"(label, kl, reward[, gold]) or a Run; got {item!r}")
        for k in ("label", "kl", "reward"):
            if k not in d:
                raise ValueError(f"point {item!r} lacks {k!r}")
        out.append({"label": str(d["label"]), "kl": float(d["kl"]), "reward": float(d["reward"]),
                    "gold": None if d.get("gold") is None else float(d["gold"])})
    if not out:
        raise ValueError("pass at least one point")
    return out


def plot_kl_reward(points, ax=None, *, ref=None, sqrt_kl=False, title=None) -> FrontierArtists:
    """The KL-reward frontier: reward against KL(pi || pi_ref), one series per label (§5.1).

    ``points``: dicts ``{"label", "kl", "reward"[, "gold"]}``, tuples ``(label, kl, reward[, gold])``,
    Runs or a dict label -> Run (one point per snapshot: KL(pi_t || ref) with ``ref`` the run's first
    snapshot by default, reward = exact success). A ``gold`` value (the true verifier when ``reward``
    is a learned proxy) is drawn dashed with hollow markers: proxy up, gold up-then-down is the
    over-optimisation of Gao et al. 2023 (survey ref [98]). The grey step line is the frontier: the
    best reward seen at KL <= x.
    """
    pts = _frontier_points(points, ref)
    ax = _new_ax(ax, (6.0, 3.8))
    f = (lambda v: math.sqrt(max(v, 0.0))) if sqrt_kl else (lambda v: v)
    labels = list(dict.fromkeys(p["label"] for p in pts))
    lines, gold_lines = {}, {}
    for i, lab in enumerate(labels):
        ser = sorted((p for p in pts if p["label"] == lab), key=lambda p: p["kl"])
        x = [f(p["kl"]) for p in ser]
        color, marker = FRONTIER_SERIES[i % len(FRONTIER_SERIES)]
        (lines[lab],) = ax.plot(x, [p["reward"] for p in ser], "-", marker=marker, color=color, lw=1.8, ms=5,
                                label=lab)
        if any(p["gold"] is not None for p in ser):
            g = [np.nan if p["gold"] is None else p["gold"] for p in ser]
            (gold_lines[lab],) = ax.plot(x, g, "--", marker=marker, color=color, lw=1.5, ms=5, mfc="white",
                                         label=f"{lab} (gold)")
    order = sorted(pts, key=lambda p: p["kl"])
    fx = [f(p["kl"]) for p in order]
    fy = np.maximum.accumulate([p["reward"] for p in order])
    (frontier,) = ax.step(fx, fy, where="post", color=PALETTE["grey"], lw=3, alpha=0.45, zorder=1,
                          label="frontier: best reward at ≤ KL")
    ax.set_xlabel("√KL(π‖π_ref) (√nats)" if sqrt_kl else "KL(π‖π_ref) (nats, sequence level)")
    ax.set_ylabel("reward (success probability)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="best")
    t = ax.set_title(title or "KL–reward frontier (§5.1; over-optimisation, ref [98])", fontsize=10)
    return FrontierArtists(ax, lines, gold_lines, frontier, pts, t)


# ================================================================================= pipeline handoff
HANDOFF_KEYS = ("stage", "success", "expanded", "attrited", "kl_prev", "kl_base")


_HANDOFF_ALIASES = {"stage": ("stage", "name", "method"), "success": ("success", "success_after"),
                    "expanded": ("expanded",), "attrited": ("attrited",),
                    "kl_prev": ("kl_prev", "kl_to_previous"), "kl_base": ("kl_base", "kl_to_base")}


def handoff_rows(report) -> list:
    """Normalise a pipeline report into a list of dicts with :data:`HANDOFF_KEYS`.

    Accepted shapes:

    - a :class:`toyenv.PipelineReport` (its ``table()`` rows, after a ``start`` row with the success
      of the starting policy);
    - a list of dicts (or objects with those attributes) with keys ``stage`` (name), ``success``
      (prompt-weighted success after the stage; ``success_after`` also accepted), ``expanded`` and
      ``attrited`` (counts of pairs, Eq. 6 and 8, against the previous stage; a boolean mask is
      counted), ``kl_prev`` (KL(stage || previous stage); ``kl_to_previous``) and ``kl_base``
      (KL(stage || base); ``kl_to_base``);
    - an object holding such a list as ``.stages`` / ``.rows`` / ``.records`` (or returning it from
      ``.rows()`` / ``.to_records()``), or a pandas DataFrame.

    A missing value is NaN (no bar). A stage may carry a ``change`` (a
    :class:`~toyenv.SupportChange`) instead of the counts.
    """
    rows = report
    start = None
    if hasattr(report, "table") and callable(report.table) and hasattr(report, "handoffs"):
        rows = report.table()
        if rows and "success_before" in rows[0]:
            start = {"stage": "start", "success": rows[0]["success_before"]}
    else:
        for attr in ("stages", "rows", "records", "to_records"):
            if hasattr(rows, attr) and not isinstance(rows, (list, tuple, dict)):
                rows = getattr(rows, attr)
                rows = rows() if callable(rows) else rows
                break
    if hasattr(rows, "to_dict") and not isinstance(rows, dict):    # a pandas DataFrame
        rows = rows.to_dict("records")
    if isinstance(rows, dict):
        raise TypeError("pass a list of per-stage dicts (stage, success, expanded, attrited, kl_prev, kl_base)")
    rows = ([start] if start else []) + list(rows)
    out = []
    for i, r in enumerate(rows):
        def get(k, r=r):
            return r.get(k) if isinstance(r, dict) else getattr(r, k, None)

        def first(key):
            for alias in _HANDOFF_ALIASES[key]:
                v = get(alias)
                if v is not None:
                    return v
            return None
        row = {"stage": str(first("stage") or f"stage {i}")}
        change = get("change")
        counts = change.counts() if change is not None and hasattr(change, "counts") else {}
        for k in HANDOFF_KEYS[1:]:
            v = first(k)
            if v is None and k in counts:
                v = counts[k]
            if isinstance(v, np.ndarray) and v.dtype == bool:
                v = int(v.sum())
            if isinstance(v, tuple) and k == "success":     # (before, after)
                v = v[-1]
            row[k] = math.nan if v is None else float(v)
        out.append(row)
    if not out:
        raise ValueError("the pipeline report has no stages")
    return out


@dataclass(eq=False)
class HandoffArtists:
    axes: tuple                     # (success, support change, KL) panels, inset in the given Axes
    success_bars: Any
    expanded_bars: Any
    attrited_bars: Any
    kl_prev_bars: Any
    kl_base_bars: Any
    stages: list
    rows: list


def plot_handoff(report, ax=None, *, title=None) -> HandoffArtists:
    """What each pipeline stage gained, kept and lost (survey §6.2-6.4; handoff fidelity, §7.2).

    Three panels inside ``ax`` (one Axes, split with inset axes): success after each stage; pairs
    expanded (Eq. 6, green, up) and attrited (Eq. 8, vermillion, down) at the handoff into that stage;
    KL to the previous stage and to the base. ``report``: see :func:`handoff_rows` for the shapes
    accepted (a PipelineReport or a list of dicts with keys stage, success, expanded, attrited,
    kl_prev, kl_base).
    """
    rows = handoff_rows(report)
    n = len(rows)
    ax = _new_ax(ax, (float(np.clip(4.0 + 1.6 * n, 8.0, 14.0)), 3.6), layout=None)
    if ax.figure.get_layout_engine() is None:
        ax.figure.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.84)
    ax.set_axis_off()
    stages = [r["stage"] for r in rows]
    x = np.arange(n)
    gap = 0.1
    w = (1 - 2 * gap) / 3
    panels = tuple(ax.inset_axes([i * (w + gap), 0.0, w, 0.86]) for i in range(3))
    a1, a2, a3 = panels
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    succ = col("success")
    sb = a1.bar(x, np.nan_to_num(succ), color=PALETTE["blue"], width=0.6)
    for xi, v in zip(x, succ):
        if np.isfinite(v):
            a1.text(xi, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    a1.set_ylim(0, 1.12)
    a1.set_ylabel("success probability")
    a1.set_title("success after stage", fontsize=9)
    exp, att = col("expanded"), col("attrited")
    eb = a2.bar(x, np.nan_to_num(exp), color=ROLE_COLORS["expanded"], width=0.6, label="expanded (Eq. 6)")
    ab = a2.bar(x, -np.nan_to_num(att), color=ROLE_COLORS["attrited"], width=0.6, label="attrited (Eq. 8)",
                hatch="//", edgecolor="white")
    a2.axhline(0, color="black", lw=0.8)
    for xi, e, t in zip(x, exp, att):
        if np.isfinite(e):
            a2.text(xi, e, f"+{e:.0f}", ha="center", va="bottom", fontsize=8)
        if np.isfinite(t):
            a2.text(xi, -t, f"−{t:.0f}", ha="center", va="top", fontsize=8)
    m = max(np.nanmax(np.r_[exp, att, 1.0]), 1.0)
    a2.set_ylim(-1.3 * m, 1.3 * m)
    a2.set_ylabel("state-action pairs (count)")
    a2.set_title("support gained / lost at handoff", fontsize=9)
    a2.legend(fontsize=7, frameon=False, loc="upper left")
    kp, kb = col("kl_prev"), col("kl_base")
    bw = 0.38
    pb = a3.bar(x - bw / 2, np.nan_to_num(kp), width=bw, color=PALETTE["orange"], label="KL(stage ‖ previous)")
    bb = a3.bar(x + bw / 2, np.nan_to_num(kb), width=bw, color=PALETTE["purple"], label="KL(stage ‖ base)",
                hatch="..", edgecolor="white")
    a3.set_ylabel("KL (nats)")
    a3.set_title("drift", fontsize=9)
    a3.legend(fontsize=7, frameon=False, loc="upper left")
    top = np.nanmax(np.r_[kp, kb, 1e-3])
    a3.set_ylim(0, 1.35 * top)
    for p in panels:
        p.set_xticks(x, stages, rotation=20 if max(len(s) for s in stages) > 6 else 0, ha="right"
                     if max(len(s) for s in stages) > 6 else "center", fontsize=8)
        p.tick_params(axis="y", labelsize=8)
        p.spines[["top", "right"]].set_visible(False)
        p.set_xlabel("pipeline stage")
    ax.set_title(title or "Pipeline handoff: gained, kept, lost (§6.2–6.4)", fontsize=10)
    return HandoffArtists(panels, sb, eb, ab, pb, bb, stages, rows)


# ================================================================================= per-family success
@dataclass(eq=False)
class FamilyArtists:
    ax: Any
    bars: dict                      # family name -> BarContainer (one bar per policy)
    labels: list                    # the policies, left to right
    values: np.ndarray              # [policy, family] success
    title: Any = None


def plot_family_success(values, ax=None, *, families=None, title=None) -> FamilyArtists:
    """Success on each task family, side by side for several policies (two-skills: families A and B).

    ``values``: a dict ``label -> [success on family 0, success on family 1, ...]`` (e.g. the
    ``family_success`` of :func:`toyenv.analysis.handoffs.specialists`), in the order to draw.
    ``families``: the family names (default "family A", "family B", ...). One group of bars per
    policy, one colour per family: a stage that raises one family and lowers the other (attrition
    through shared parameters, §3.3.4, §6.4) shows as bars that swap heights.
    """
    if not isinstance(values, dict) or not values:
        raise TypeError("values must be a non-empty dict label -> [success per family], e.g. "
                        "{'base': [0.33, 0.33], 'after SFT on B': [0.01, 0.90]}")
    labels = [str(k) for k in values]
    rows = [np.atleast_1d(np.asarray(v, float)) for v in values.values()]
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1:
        raise ValueError("every policy needs one success value per family, the same number for all")
    vals = np.vstack(rows)
    n_fam = vals.shape[1]
    families = [f"family {chr(65 + i)}" for i in range(n_fam)] if families is None else [str(f) for f in families]
    if len(families) != n_fam:
        raise ValueError(f"families names {len(families)} families, the values have {n_fam}")
    ax = _new_ax(ax, (max(5.0, 1.3 * len(labels) + 2.0), 3.4))
    x = np.arange(len(labels))
    w = 0.8 / n_fam
    colors = [PALETTE[c] for c in ("blue", "orange", "green", "purple", "sky", "vermillion")]
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    bars = {}
    for j, fam in enumerate(families):
        xs = x - 0.4 + w * (j + 0.5)
        bars[fam] = ax.bar(xs, vals[:, j], width=w, color=colors[j % len(colors)], hatch=hatches[j % len(hatches)],
                           edgecolor="white", label=fam)
        for xi, v in zip(xs, vals[:, j]):
            ax.text(xi, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels, fontsize=8, rotation=15 if max(map(len, labels)) > 10 else 0,
                  ha="right" if max(map(len, labels)) > 10 else "center")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("success probability")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=n_fam)
    t = ax.set_title(title or "success per task family", fontsize=10)
    return FamilyArtists(ax, bars, labels, vals, t)


# ================================================================================= gold vs proxy per stage
@dataclass(eq=False)
class GoldProxyArtists:
    ax: Any                         # gold success (left axis)
    proxy_ax: Any                   # proxy reward (right axis, a twin of ax)
    gold_lines: dict                # pipeline label -> Line2D
    proxy_lines: dict
    title: Any = None


def plot_gold_proxy(orders, ax=None, *, title=None) -> GoldProxyArtists:
    """Gold (verifier) success and proxy (learned reward) after each stage of several pipelines.

    ``orders``: a dict ``label -> {"gold": [start, after stage 1, ...], "proxy": [...]}`` (e.g. the
    ``orders`` of :func:`toyenv.analysis.handoffs.evaluator_inconsistency`). Gold is drawn solid on
    the left axis, the proxy dashed with hollow markers on a twin right axis (its scale is the reward
    model's, not a probability). Two evaluators that disagree across stages (§6.4) show as a stage
    where the dashed line rises and the solid one falls.
    """
    if not isinstance(orders, dict) or not orders:
        raise TypeError("orders must be a non-empty dict label -> {'gold': [...], 'proxy': [...]}")
    for k, v in orders.items():
        if not isinstance(v, dict) or "gold" not in v or "proxy" not in v or len(v["gold"]) != len(v["proxy"]):
            raise ValueError(f"orders[{k!r}] needs 'gold' and 'proxy' lists of equal length (start, after each stage)")
    ax = _new_ax(ax, (6.5, 3.6))
    ax2 = ax.twinx()
    gold_lines, proxy_lines = {}, {}
    n = max(len(v["gold"]) for v in orders.values())
    for i, (label, v) in enumerate(orders.items()):
        color, marker = FRONTIER_SERIES[i % len(FRONTIER_SERIES)]
        x = np.arange(len(v["gold"]))
        (gold_lines[label],) = ax.plot(x, v["gold"], "-", marker=marker, color=color, lw=2, ms=6,
                                       label=f"{label}: gold")
        (proxy_lines[label],) = ax2.plot(x, v["proxy"], "--", marker=marker, color=color, lw=1.5, ms=6,
                                         mfc="white", label=f"{label}: proxy")
    ax.set_xticks(np.arange(n), ["start"] + [f"after stage {j}" for j in range(1, n)], fontsize=8)
    ax.set_ylim(-0.03, 1.08)
    ax.set_ylabel("gold success (verifier), solid")
    ax2.set_ylabel("proxy reward (reward model), dashed")
    ax.grid(True, alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.12, 0.5))
    t = ax.set_title(title or "gold and proxy across stages (§6.4, evaluator inconsistency)", fontsize=10)
    return GoldProxyArtists(ax, ax2, gold_lines, proxy_lines, t)
