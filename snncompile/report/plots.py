"""Every picture snncompile draws, with ONE fixed colour per category.

A category keeps its colour in every plot and every report, whether or not it is empty in
one of them, so plots of two builds can be compared side by side:

* energy events (`EVENT_COLORS`): synops, neuron updates, spikes, messages, hops, ...;
* sources of spikes (`SOURCE_COLORS`): the float model and the compiled network, and the
  verify backends (reference, sim, lava, netx);
* where a node runs (`PART_COLORS`): neurocores or the co-processor;
* layers (`layer_color`): the k-th spiking layer of a graph in network order.

Each function takes plain data (the JSON documents of a build, arrays of spikes) and
returns a matplotlib Figure; `png_bytes` / `save_png` turn one into a PNG. Matplotlib runs
headless (Agg).
"""
from __future__ import annotations

import io
import math

import numpy as np

#: Energy event types in report order (same as snncompile.energy.report.EVENTS).
EVENT_COLORS = {
    "synops": "#1f77b4",
    "neuron_active": "#ff7f0e",
    "neuron_inactive": "#ffbb78",
    "spikes_out": "#2ca02c",
    "messages": "#9467bd",
    "hops": "#8c564b",
    "chip_hops": "#e377c2",
    "coproc": "#bcbd22",
    "system": "#17becf",
    "static": "#7f7f7f",
}
#: Energy table keys each event's price comes from (to mark estimates).
EVENT_KEYS = {
    "synops": ("synop_",), "neuron_active": ("neuron_update_active",),
    "neuron_inactive": ("neuron_update_inactive",), "spikes_out": ("spike_out",),
    "messages": ("message_",), "hops": ("hop_ew", "hop_ns"), "chip_hops": ("chip_hop",),
    "coproc": ("coproc",), "system": ("system_step",), "static": ("static_power",),
}
SOURCE_COLORS = {
    "float": "#1f77b4",
    "compiled": "#d62728",
    "reference": "#2ca02c",
    "sim": "#d62728",
    "lava": "#9467bd",
    "netx": "#17becf",
}
PART_COLORS = {"neuro": "#aec7e8", "coproc": "#ffbb78"}
LATENCY_COLORS = {"busiest_core_s": "#1f77b4", "route_s": "#8c564b",
                  "barrier_s": "#7f7f7f", "coproc_s": "#bcbd22"}
LATENCY_LABELS = {"busiest_core_s": "busiest core", "route_s": "longest route",
                  "barrier_s": "barrier sync", "coproc_s": "co-processor"}
_LAYER_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
                  "#8c6d31", "#843c39", "#7b4173", "#3182bd")
INPUT_COLOR = "#c7c7c7"


def layer_color(index: int) -> str:
    """Colour of the `index`-th spiking layer (network order; the input has INPUT_COLOR)."""
    return _LAYER_PALETTE[index % len(_LAYER_PALETTE)]


def layer_colors(names) -> dict[str, str]:
    return {n: layer_color(i) for i, n in enumerate(names)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    # names come from model files: a '$' in a layer name must not start math text
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt
    return plt


def png_bytes(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return buf.getvalue()


def save_png(fig, path, dpi: int = 110) -> None:
    from pathlib import Path
    Path(path).write_bytes(png_bytes(fig, dpi))


def eng(x: float, unit: str) -> str:
    """Engineering notation: 1.23 uJ."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g} {unit}"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"),
                          (1e-15, "f")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _scale(vmax: float, unit: str) -> tuple[float, str]:
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if vmax >= scale:
            return scale, prefix + unit
    return 1e-15, "f" + unit


def estimated_events(estimates) -> set[str]:
    """Energy events whose price is an estimate (from EnergyReport.estimates keys)."""
    est = list(estimates or ())
    return {ev for ev, keys in EVENT_KEYS.items()
            if any(k.startswith(p) for k in est for p in keys)}


# ------------------------------------------------------------------ energy
def energy_figure(e: dict, model: str = ""):
    """Energy per inference from an EnergyReport JSON: left, the dynamic energy per layer
    stacked by event type (what the network's activity and mapping change); right, dynamic
    against static (leakage and clock over the inference's latency, not changed by the
    network's activity). Every event keeps its colour, empty ones included; events priced
    from estimates are marked '(est.)'."""
    from snncompile.energy.report import EVENTS

    plt = _plt()
    layers = list(e["per_layer"])
    dyn_events = [ev for ev in EVENTS if ev != "static"]
    est = estimated_events(e.get("estimates"))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 5.6),
                                  gridspec_kw={"width_ratios": [3.2, 1]})
    dyn_max = max([sum(v for k, v in d.items() if k != "static")
                   for d in e["per_layer"].values()] or [0.0])
    scale, unit = _scale(max(dyn_max, 1e-30), "J")
    bottom = np.zeros(len(layers))
    for ev in dyn_events:
        vals = np.array([e["per_layer"][l].get(ev, 0.0) for l in layers]) / scale
        ax.bar(layers, vals, bottom=bottom, color=EVENT_COLORS[ev], width=0.6,
               label=ev + (" (est.)" if ev in est else "") + ("" if vals.any() else " = 0"))
        bottom += vals
    ax.set_ylabel(f"dynamic energy per inference ({unit})")
    ax.set_title("dynamic energy per layer (changes with activity and mapping)", fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    ax.set_ylim(0, max(bottom.max() if len(bottom) else 0, 1e-30) * 1.15)
    dyn, stat = float(e["dynamic_j"]), float(e["static_j"])
    s2, u2 = _scale(max(dyn, stat, 1e-30), "J")
    ax2.bar(["dynamic"], [dyn / s2], color="#4c72b0", width=0.6)
    ax2.bar(["static"], [stat / s2], color=EVENT_COLORS["static"], width=0.6,
            hatch="//" if "static" in est else None, edgecolor="white")
    for x, v in ((0, dyn), (1, stat)):
        ax2.text(x, v / s2, eng(v, "J"), ha="center", va="bottom", fontsize=9)
    ax2.set_ylim(0, max(dyn, stat, 1e-30) / s2 * 1.18)
    ax2.set_ylabel(f"energy per inference ({u2})")
    ax2.set_title("dynamic vs static" + (" (static: estimate)" if "static" in est else ""),
                  fontsize=10)
    total = float(e["energy_per_inference_j"])
    share = stat / total if total else 0.0
    name = model or "model"
    fig.suptitle(f"{name} on {e['target']}: {eng(total, 'J')} per inference "
                 f"({e['steps']} steps); static {share:.0%} of it", fontsize=12)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.94))
    return fig


def latency_figure(e: dict, model: str = ""):
    """Latency per time step split into its parts (EnergyReport JSON latency_parts_s)."""
    plt = _plt()
    parts = dict(e.get("latency_parts_s", {}))
    keys = list(LATENCY_COLORS) + [k for k in parts if k not in LATENCY_COLORS]
    fig, ax = plt.subplots(figsize=(9, 2.6))
    total = sum(parts.values())
    scale, unit = _scale(max(total, 1e-30), "s")
    left = 0.0
    for k in keys:
        v = parts.get(k, 0.0) / scale
        ax.barh([0], [v], left=left, color=LATENCY_COLORS.get(k, "#cccccc"),
                label=LATENCY_LABELS.get(k, k) + ("" if v else " = 0"))
        left += v
    ax.set_yticks([])
    ax.set_xlabel(f"latency per time step ({unit}); lower bound: per-step averages")
    ax.set_title(f"{model or 'model'}: {eng(e['latency_per_step_s'], 's')} per step, "
                 f"{eng(e['latency_per_inference_s'], 's')} per inference "
                 f"({e['steps']} steps)", fontsize=10)
    ax.set_xlim(0, max(left, 1e-30) * 1.05)
    fig.legend(loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    return fig


# ------------------------------------------------------------------ spikes
def raster_figure(spikes: dict[str, dict[str, np.ndarray]], sample: int = 0,
                  max_neurons: int = 200, max_layers: int = 12):
    """Spike raster of one sample: a row per layer, a column per source ("float",
    "compiled"). `spikes[source][layer]` is (N, T, *shape), bool or graded (non-zero =
    event). At most `max_neurons` neurons per layer (the first ones) and the first
    `max_layers` layers are drawn."""
    plt = _plt()
    sources = list(spikes)
    layers = [l for l in next(iter(spikes.values()))][:max_layers] if spikes else []
    rows = max(len(layers), 1)
    fig, axes = plt.subplots(rows, max(len(sources), 1), squeeze=False,
                             figsize=(5.2 * max(len(sources), 1), 1.2 + 1.9 * rows))
    for j, src in enumerate(sources):
        for i, layer in enumerate(layers):
            ax = axes[i][j]
            arr = spikes[src].get(layer)
            if arr is None:
                ax.text(0.5, 0.5, "not in this model", ha="center", va="center",
                        transform=ax.transAxes, fontsize=9)
                ax.set_xticks([]), ax.set_yticks([])
                continue
            a = np.asarray(arr)[sample].reshape(np.asarray(arr).shape[1], -1)
            n = a.shape[1]
            shown = min(n, max_neurons)
            t, k = np.nonzero(a[:, :shown])
            size = float(np.clip(1500.0 / max(shown, 1) / max(a.shape[0], 1) * 8, 1, 40))
            ax.scatter(t, k, s=size, marker="s", color=SOURCE_COLORS.get(src, "#333333"),
                       linewidths=0)
            ax.set_xlim(-0.5, a.shape[0] - 0.5)
            ax.set_ylim(-0.5, shown - 0.5)
            events = int(np.count_nonzero(a))
            kind = "spikes" if a.dtype == bool else "graded spikes"
            ax.set_title(f"{src}: {layer} ({events:,} {kind}"
                         + (f"; neurons 0-{shown - 1} of {n:,}" if shown < n else "")
                         + ")", fontsize=9, color=SOURCE_COLORS.get(src, "#333333"))
            ax.set_ylabel("neuron", fontsize=8)
            if i == rows - 1:
                ax.set_xlabel("time step (local)", fontsize=8)
    fig.suptitle(f"spike raster, sample {sample}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def rates_figure(rates: dict[str, dict[str, float]],
                 ylabel: str = "spikes per neuron per step",
                 title: str = "firing rate per layer"):
    """Firing rate (spikes per neuron per step, over all samples) per layer, one bar per
    source. `rates[source][layer]`; a layer missing from a source is drawn as absent."""
    plt = _plt()
    sources = list(rates)
    layers: list[str] = []
    for src in sources:
        layers += [l for l in rates[src] if l not in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 1.1 * len(layers)), 4.2))
    w = 0.8 / max(len(sources), 1)
    x = np.arange(len(layers))
    for j, src in enumerate(sources):
        vals = [rates[src].get(l, np.nan) for l in layers]
        ax.bar(x + (j - (len(sources) - 1) / 2) * w, vals, width=w, label=src,
               color=SOURCE_COLORS.get(src, "#333333"))
    ax.set_xticks(x, layers, rotation=30)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def quant_figure(quant: list[dict]):
    """Quantisation error per layer: RMS relative weight error and threshold rounding error,
    and the calibrated peak state as a fraction of the 24-bit range."""
    plt = _plt()
    layers = [q["layer"] for q in quant]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(layers))
    ax.bar(x - 0.2, [q["weight_rel_error"] for q in quant], 0.4, label="weights (RMS)",
           color="#1f77b4")
    ax.bar(x + 0.2, [q["vth_rel_error"] for q in quant], 0.4, label="threshold (rounding)",
           color="#ff7f0e")
    ax.set_xticks(x, layers, rotation=30)
    ax.set_ylabel("relative error")
    ax.set_title("quantisation error per layer", fontsize=10)
    ax.legend(fontsize=8)
    peaks = [q.get("peak_state_fraction") for q in quant]
    ax2.bar(x, [p if p is not None else 0 for p in peaks], 0.6, color="#2ca02c")
    for i, p in enumerate(peaks):
        if p is None:
            ax2.text(i, 0.02, "unknown\n(no calib)", ha="center", fontsize=7)
    ax2.axhline(1.0, color="#d62728", lw=1, ls="--")
    ax2.set_xticks(x, layers, rotation=30)
    ax2.set_ylim(0, max([1.1] + [p * 1.1 for p in peaks if p is not None]))
    ax2.set_ylabel("peak |u|, |v| / 24-bit range")
    ax2.set_title("state headroom (dashed: overflow)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ mapping
def core_traffic(graph, spec, mapping_json: dict) -> dict[tuple[int, int], float]:
    """Messages per time step between cores ((src core, dst core) -> messages; -1 = input
    port), from the build's placement (mapping.json) and the firing rates it was placed
    with; the block edges are recomputed with split_graph (deterministic) and checked
    against mapping.json's blocks."""
    from snncompile.mapping.split import split_graph

    part = split_graph(graph, spec, rates=mapping_json.get("rates"),
                       work_cap=mapping_json.get("work_cap"))  # as the build was split
    blocks = mapping_json.get("blocks", [])
    if len(part.blocks) != len(blocks) or any(
            b.layer != j["layer"] or b.n_neurons != j["neurons"]
            for b, j in zip(part.blocks, blocks)):
        raise ValueError("mapping.json does not match the graph's blocks")
    core_of_block = {}
    for c in mapping_json["core_list"]:
        for b in c["blocks"]:
            core_of_block[b] = c["index"]
    rates = mapping_json.get("rates", {})
    layer_of = {b.index: b.layer for b in part.blocks}
    out: dict[tuple[int, int], float] = {}
    for s, d, n in part.edges.tolist():
        src_layer = part.input_name if s < 0 else layer_of[s]
        cs = -1 if s < 0 else core_of_block[s]
        cd = core_of_block[d]
        if cs == cd:
            continue
        out[(cs, cd)] = out.get((cs, cd), 0.0) + n * rates.get(src_layer, 1.0)
    return out


def coremap_figure(mapping_json: dict, chip: dict, traffic: dict | None = None,
                   layer_order: list[str] | None = None, model: str = "",
                   max_links: int = 40):
    """Cores on the (stitched) mesh of chips, coloured by the layer whose neurons they
    hold; arrows between tiles with width by messages per step (traffic: the `max_links`
    heaviest tile-to-tile links). `chip`: the target's [chip] numbers (mesh_x, mesh_y,
    cores_per_tile, chip_grid_x)."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    mx, my = int(chip["mesh_x"]), int(chip["mesh_y"])
    cpt, gx = max(1, int(chip["cores_per_tile"])), max(1, int(chip["chip_grid_x"]))
    cores = mapping_json["core_list"]
    blocks = mapping_json["blocks"]
    layers = layer_order or list(dict.fromkeys(b["layer"] for b in blocks))
    colors = layer_colors(layers)

    def gpos(c):
        k = int(c["chip"])
        return (k % gx) * mx + c["tile"][0], (k // gx) * my + c["tile"][1]

    pos = {c["index"]: gpos(c) for c in cores}
    xs = [p[0] for p in pos.values()] + [0]
    ys = [p[1] for p in pos.values()] + [0]
    chips = int(mapping_json.get("chips", 1))
    if chips <= 4:   # whole chips
        x1 = min(chips, gx) * mx
        y1 = math.ceil(chips / gx) * my
        x0 = y0 = 0
    else:            # only the used region of a large system
        x0, y0, x1, y1 = 0, 0, max(xs) + 1, max(ys) + 1
    w, h = x1 - x0, y1 - y0
    fig_w = min(14.0, max(6.0, 0.55 * w + 3.5))
    fig_h = min(11.0, max(3.5, 0.55 * h + 1.8))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    sub = math.ceil(math.sqrt(cpt))
    for tx in range(x0, x1 if w * h <= 4096 else x0):   # grid only while it is readable
        for ty in range(y0, y1):
            ax.add_patch(Rectangle((tx - 0.45, ty - 0.45), 0.9, 0.9, fill=False,
                                   ec="#dddddd", lw=0.6))
    for c in cores:
        by = {}
        for b in c["blocks"]:
            by[blocks[b]["layer"]] = by.get(blocks[b]["layer"], 0) + blocks[b]["neurons"]
        px, py = pos[c["index"]]
        s = int(c["slot"])
        cw = 0.9 / sub
        ox, oy = px - 0.45 + (s % sub) * cw, py - 0.45 + (s // sub) * cw
        total = sum(by.values()) or 1
        left = ox
        for layer in sorted(by, key=lambda l: layers.index(l) if l in layers else 0):
            wk = cw * by[layer] / total   # a stripe per layer, width by its neurons here
            ax.add_patch(Rectangle((left, oy), wk, cw, color=colors.get(layer, "#333333"),
                                   lw=0))
            left += wk
        ax.add_patch(Rectangle((ox, oy), cw, cw, fill=False, ec="white", lw=0.8))
    for k in range(chips if chips <= 4 else 0):
        kx, ky = (k % gx) * mx, (k // gx) * my
        ax.add_patch(Rectangle((kx - 0.5, ky - 0.5), mx, my, fill=False, ec="#555555",
                               lw=1.2))
        ax.text(kx - 0.45, ky + my - 0.5, f"chip {k}", fontsize=8, va="bottom")
    ax.plot([0], [0], marker="*", ms=12, color="black", ls="none")
    links = []
    if traffic:   # between tiles (cores of one tile talk without a hop)
        per_tile: dict = {}
        for (a, b), v in traffic.items():
            pa, pb = ((0, 0) if a < 0 else pos[a]), pos[b]
            if pa != pb:
                per_tile[(pa, pb)] = per_tile.get((pa, pb), 0.0) + v
        links = sorted(per_tile.items(), key=lambda kv: -kv[1])
        shown = links[:max_links]
        tmax = shown[0][1] if shown else 1.0
        for (pa, pb), v in reversed(shown):
            ax.annotate("", xy=pb, xytext=pa,
                        arrowprops=dict(arrowstyle="-|>", lw=0.3 + 3.2 * v / tmax,
                                        color="black", alpha=0.25 + 0.5 * v / tmax,
                                        shrinkA=3, shrinkB=3,
                                        connectionstyle="arc3,rad=0.12"))
    ax.set_xlim(x0 - 0.7, x1 - 0.3)
    ax.set_ylim(y1 - 0.3, y0 - 0.7)  # tile (0, 0) at the top left
    ax.set_aspect("equal")
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    used = {blocks[b]["layer"] for c in cores for b in c["blocks"]}
    handles = [Patch(color=colors[l], label=l) for l in layers if l in used]
    handles.append(Line2D([], [], marker="*", color="black", ls="none", label="input port"))
    if links:
        handles.append(Line2D([], [], color="black", alpha=0.75, lw=3.5,
                              label=f"{links[0][1]:.3g} messages/step (heaviest link)"))
        handles.append(Line2D([], [], color="none", label=(
            f"{min(len(links), max_links)} heaviest of {len(links)} tile-to-tile links"
            if len(links) > max_links else f"all {len(links)} tile-to-tile links")))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    n = len(cores)
    ax.set_title(f"{model + ': ' if model else ''}{n} core{'s' if n != 1 else ''} on "
                 f"{chips} chip{'s' if chips != 1 else ''} ({mapping_json['target']}), "
                 "coloured by layer\n(a core holding several is striped by their neurons); "
                 "arrows: spike messages per step between tiles", fontsize=10)
    fig.tight_layout()
    return fig


def partition_figure(partition: dict, order: list[str], edges=()):
    """The graph in network order, each node coloured by where it runs (neurocores or the
    co-processor), with the boundary channels drawn between them (values/step, bits)."""
    plt = _plt()
    where = partition["assignment"]
    nodes = [n for n in order if n in where]
    y = {n: -i for i, n in enumerate(nodes)}
    col = {"neuro": 0.0, "coproc": 1.6}
    fig, ax = plt.subplots(figsize=(9, min(16.0, 1.0 + 0.42 * len(nodes))))
    for n in nodes:
        x = col[where[n]]
        ax.text(x, y[n], n, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc=PART_COLORS[where[n]], ec="#555555"))
    for s, d in edges:   # the graph's own edges, grey; the boundary ones are drawn in red
        if s in y and d in y and where[s] == where[d]:
            ax.annotate("", xy=(col[where[d]], y[d]), xytext=(col[where[s]], y[s]),
                        arrowprops=dict(arrowstyle="-|>", color="#999999", lw=0.8,
                                        shrinkA=7, shrinkB=7))
    for ch in partition.get("channels", []):
        s, d = ch["src"], ch["dst"]
        if s not in y or d not in y:
            continue
        ax.annotate("", xy=(col[where[d]], y[d]), xytext=(col[where[s]], y[s]),
                    arrowprops=dict(arrowstyle="-|>", color="#d62728", lw=1.4,
                                    shrinkA=12, shrinkB=12))
        ax.text((col[where[s]] + col[where[d]]) / 2, (y[s] + y[d]) / 2,
                f"{ch['values_per_step']:,} values x {ch['bits']} b per step", fontsize=7,
                color="#d62728",
                ha="center", va="bottom")
    ax.axvline(0.8, color="#555555", ls="--", lw=1)
    ax.text(0.0, 1, "neurocores", ha="center", fontsize=10, weight="bold")
    ax.text(1.6, 1, "co-processor (x86)", ha="center", fontsize=10, weight="bold")
    ax.set_xlim(-0.9, 2.5)
    ax.set_ylim(-len(nodes) + 0.2, 1.6)
    ax.axis("off")
    ax.set_title(f"partition: {partition['bytes_per_step']:,} bytes cross the boundary per "
                 f"step per sample (red: boundary channels)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ verify
def divergence_figure(div: dict, traces: dict | None = None):
    """The first divergence of a verify report: each backend's spike, u and v at that step
    (from the JSON); with `traces` ({backend: {"u": (T,), "v": (T,), "spike": (T,),
    "vth": int}} of that neuron and sample) also the traces over time, the step marked."""
    plt = _plt()
    sides = div.get("sides", {})
    if div.get("kind") == "co-processor value":
        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = list(sides)
        ax.bar(names, [sides[b] for b in names],
               color=[SOURCE_COLORS.get(b, "#333333") for b in names])
        ax.set_ylabel("integer value sent")
        ax.set_title(f"first divergence: co-processor output {div['channel']}, element "
                     f"{div['element']}, sample {div['sample']}, step {div['step']}",
                     fontsize=10)
        fig.tight_layout()
        return fig
    step = int(div["step"])
    if traces:
        fig, (au, av) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True)
        for j, (b, tr) in enumerate(traces.items()):
            c = SOURCE_COLORS.get(b, "#333333")
            t = np.arange(len(tr["u"]))
            style = dict(color=c, label=f"{b} (re-run)", lw=2.6 if j == 0 else 1.3,
                         ls="-" if j == 0 else "--", drawstyle="steps-mid")
            au.plot(t, tr["u"], **style)
            av.plot(t, tr["v"], **style)
            sp = np.nonzero(np.asarray(tr["spike"]))[0]
            av.plot(sp, np.asarray(tr["v"])[sp], "v", color=c, ms=6, ls="none")
            if tr.get("vth") is not None:
                av.axhline(tr["vth"], color="#999999", ls=":", lw=1)
        for ax in (au, av):
            ax.axvline(step, color="#d62728", ls="--", lw=1)
        for b, s in sides.items():
            if isinstance(s.get("u"), (int, float)):
                c = SOURCE_COLORS.get(b, "#333333")
                au.plot([step], [s["u"]], "o", mfc="none", mec=c, ms=9)
                av.plot([step], [s["v"]], "o", mfc="none", mec=c, ms=9)
        rec = "; ".join(f"{b}: spike={s.get('spike')} u={s.get('u')} v={s.get('v')}"
                        for b, s in sides.items())
        au.set_title(f"recorded by verify at step {step}: {rec}", fontsize=8)
        au.set_ylabel("u (current)")
        av.set_ylabel("v (voltage)")
        av.set_xlabel("time step (local); dashed: first divergence; circles: each side "
                      "there; triangles: spikes")
        au.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        fig, av = plt.subplots(figsize=(8, 3.4))
        names = list(sides)
        vals = [s.get("v") for s in sides.values()]
        if all(isinstance(v, (int, float)) for v in vals):
            av.bar(names, vals, color=[SOURCE_COLORS.get(b, "#333333") for b in names])
            av.set_ylabel(f"v at step {step}")
        for i, b in enumerate(names):
            s = sides[b]
            av.text(i, 0, f"spike={s.get('spike')}\nu={s.get('u')}", ha="center",
                    va="bottom", fontsize=8)
    fig.suptitle(f"first divergence: layer {div['layer']}, neuron {div['neuron']}, sample "
                 f"{div['sample']}, step {step} (global {div['global_step']})", fontsize=10)
    fig.tight_layout()
    return fig


def membrane_figure(traces: dict[str, dict], sample: int = 0):
    """Voltage v of a few neurons per layer over one sample's steps (compiled network),
    with the threshold; `traces[layer] = {"v": (T, k), "spike": (T, k), "neurons": [k
    indices], "vth": int, or one per neuron (per-neuron thresholds)}`."""
    plt = _plt()
    layers = list(traces)
    fig, axes = plt.subplots(len(layers), 1, squeeze=False,
                             figsize=(9, 1.0 + 2.0 * max(len(layers), 1)))
    for ax, layer in zip(axes[:, 0], layers):
        tr = traces[layer]
        v, sp = np.asarray(tr["v"]), np.asarray(tr["spike"])
        t = np.arange(v.shape[0])
        vths = np.broadcast_to(np.asarray(tr["vth"]), (len(tr["neurons"]),))
        for j, n in enumerate(tr["neurons"]):
            c = layer_color(j)
            ax.plot(t, v[:, j], color=c, lw=1.2, drawstyle="steps-mid", label=f"neuron {n}")
            hit = np.nonzero(sp[:, j])[0]
            ax.plot(hit, np.full(len(hit), vths[j]), "v", color=c, ms=5, ls="none")
            if np.ndim(tr["vth"]):          # per-neuron thresholds: each its own line
                ax.axhline(vths[j], color=c, ls=":", lw=1)
        if not np.ndim(tr["vth"]):
            ax.axhline(tr["vth"], color="#999999", ls=":", lw=1)
        ax.set_ylabel(f"{layer}: v", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1, 0].set_xlabel("time step (local); dotted: threshold; triangles: spikes "
                           "(v resets to 0)")
    fig.suptitle(f"membrane voltage (after each step's reset), compiled network, sample "
                 f"{sample}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
