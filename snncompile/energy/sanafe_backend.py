"""SANA-FE as a second, independent energy and latency backend.

SANA-FE (Boyle et al., "SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast
Exploration", IEEE TCAD 2025; PyPI `sanafe` 2.2.9) is an event-driven simulator of
neuromorphic chips with its own timing model (per-core pipelines, NoC messages, barrier).
This module rebuilds a compiled graph as a SANA-FE network, puts every neuron on the core
snncompile's placement (the build's mapping.json) gave it, drives the input neurons with the
same input spikes, and runs it.

Architecture descriptions
* loihi1 targets: SANA-FE's own `loihi.yaml` (shipped in the wheel; event energies from
  Davies et al. 2018 Table 2 recalibrated by SANA-FE's authors against Loihi silicon).
  Independent of snncompile's constants.
* loihi2: SANA-FE ships no Loihi 2 description. `loihi2_arch_yaml` writes one in SANA-FE's
  format from targets/loihi2.toml ([energy] and [chip]: 16 x 8 mesh, one core per
  position). There SANA-FE contributes the simulation and timing model, not the constants.

Neurons. Lava's fixed-point CUBA LIF (`FxLIF`) becomes SANA-FE's `leaky_integrate_fire` with
input_decay = (4095 - du) / 4096, leak_decay = (4096 - dv) / 4096, threshold = vth << 6,
bias = bias_mant << bias_exp, weights = (Lava-prepared w) * 2**weight_exp * 64, hard reset to 0. SANA-FE
computes in floating point without Lava's truncation and 24-bit wrap: spikes are identical
when du = 4095 and dv = 0 (no rounding occurs) and can differ slightly otherwise; the
result carries both spike counts so any difference is visible.

Time. SANA-FE delivers a spike one step later, like the simulator; a layer at depth d starts
integrating at global step d. The run lasts steps + depth steps (input silent after `steps`)
and each layer's spikes are counted in its own window [d, d + steps).

What each node type becomes is its rule in the `SANAFE` table; node types without one
(sigma-delta neurons, co-processor partitions, ...) are refused in one line naming the node.
A bias-encoded input (netx's PilotNet LIF) becomes the bias of the layer it drives,
(bias_mant + frame) << bias_exp, held for the input steps and removed for the drain.
Also not supported (UnsupportedError naming the node): graded spikes, synaptic delays,
multi-chip mappings.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedError
from ..ir.graph import Graph
from ..ir.nodes import Flatten, FxConv1d, FxConv2d, FxDense, FxLIF, Input, Output, per_neuron
from ..ir.registry import Rules
from snncompile.backends.sim.fixed import prepare_weights
from ..target import TargetSpec

SANAFE_VERSION = "2.2.9"
INPUT_UNITS = 1024  # `input` soma units per core (one per input neuron; more slow SANA-FE)
# SANA-FE 2.2.9 simulates at most 1024 neurons on one core whatever the description's
# max_neurons_supported says (1025 fail with "vector::_M_range_check: __n (which is
# 1024)", tests/test_energy_sanafe.py): Loihi 2 cores placed fuller are refused up front.
CORE_NEURONS = 1024


@dataclass
class SanafeResult:
    """Per inference (mean over the samples SANA-FE ran)."""

    arch: str                 # which architecture description was used
    constants: str            # where its event energies come from
    samples: int
    steps: int                # steps per inference (the input's)
    steps_run: int            # steps simulated per inference (steps + pipeline depth)
    dynamic_j: float
    static_j: float           # static_power_w of snncompile's table x chips x sim time
    energy_per_inference_j: float
    latency_per_step_s: float
    latency_per_inference_s: float
    energy_parts_j: dict[str, float]
    spikes: dict[str, float]  # per layer, per inference, SANA-FE's
    packets: float
    synaptic_events: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in self.__dict__.items()}


def _sanafe():
    try:
        import sanafe
    except ImportError as exc:  # pragma: no cover - installed by requirements/base.txt
        raise UnsupportedError(f"--backend sanafe needs the 'sanafe' package ({exc}); "
                               f"pip install sanafe=={SANAFE_VERSION}") from exc
    return sanafe


def loihi2_arch_yaml(spec: TargetSpec) -> str:
    """A Loihi 2 architecture description in SANA-FE's YAML format, from `spec`'s tables."""
    e, raw = spec.energy, spec.raw.get("chip", {})
    w, h = int(raw.get("mesh_x", 16)), int(raw.get("mesh_y", 8))
    per_tile = int(raw.get("cores_per_tile", 1))
    n_tiles = w * h
    neurons = int(spec.raw.get("limits", {}).get("neurons", 8192))
    lines = [
        "# Loihi 2 for SANA-FE, written by snncompile from targets/loihi2.toml: every",
        "# constant is snncompile's (see that file for sources and estimates).",
        "architecture:",
        "  name: loihi2_chip",
        "  attributes: {topology: mesh, width: %d, height: %d, link_buffer_size: 16," % (w, h),
        "               sync_model: fixed, latency_sync: %r}" % e.barrier_s(n_tiles),
        "  tile:",
        f"    - name: loihi2_tile[0..{n_tiles - 1}]",
        "      attributes: {energy_north_hop: %r, latency_north_hop: %r, energy_south_hop: %r,"
        % (e.hop_ns_j, e.hop_ns_s, e.hop_ns_j),
        "                   latency_south_hop: %r, energy_east_hop: %r, latency_east_hop: %r,"
        % (e.hop_ns_s, e.hop_ew_j, e.hop_ew_s),
        "                   energy_west_hop: %r, latency_west_hop: %r}" % (e.hop_ew_j, e.hop_ew_s),
        "      core:",
        f"        - name: loihi2_core[0..{per_tile - 1}]",
        "          attributes: {buffer_position: soma, buffer_inside_unit: false, "
        f"max_neurons_supported: {neurons}}}",
        "          axon_in:",
        "            - name: l2_in",
        "              attributes: {energy_message_in: 0.0, latency_message_in: %r}"
        % e.message_s,
        "          soma:",
        "            - name: l2_lif",
        "              attributes: {model: leaky_integrate_fire, energy_access_neuron: %r,"
        % e.neuron_update_inactive_j,
        "                           latency_access_neuron: %r, energy_update_neuron: %r,"
        % (e.neuron_update_inactive_s, e.neuron_update_active_j - e.neuron_update_inactive_j),
        "                           latency_update_neuron: %r, energy_spike_out: %r,"
        % (e.neuron_update_active_s - e.neuron_update_inactive_s, e.spike_out_j),
        "                           latency_spike_out: %r}" % e.spike_out_s,
        "            - name: l2_inputs[0..%d]" % (INPUT_UNITS - 1),
        "              attributes: {model: input, energy_access_neuron: 0.0, "
        "latency_access_neuron: 0.0,",
        "                           energy_update_neuron: 0.0, latency_update_neuron: 0.0,",
        "                           energy_spike_out: 0.0, latency_spike_out: 0.0}",
        "          dendrite:",
        "            - name: l2_dendrites",
        "              attributes: {model: accumulator, energy_update: 0.0, "
        "latency_update: 0.0}",
        "          synapse:",
        "            - name: l2_dense_synapse",
        "              attributes: {model: current_based, energy_process_spike: %r, "
        "latency_process_spike: %r}" % (e.synop_j, e.synop_s),
        "            - name: l2_conv_synapse",
        "              attributes: {model: current_based, energy_process_spike: %r, "
        "latency_process_spike: %r}" % (e.synop_conv_j, e.synop_s),
        "          axon_out:",
        "            - name: l2_out",
        "              attributes: {energy_message_out: %r, latency_message_out: %r}"
        % (e.message_j, e.message_s),
    ]
    return "\n".join(lines) + "\n"


def _arch(spec: TargetSpec):
    """(sanafe Architecture, description, unit names) for `spec`."""
    sf = _sanafe()
    family = spec.name.split("-")[0]
    if family == "loihi1":
        units = {"lif": "loihi_lif", "input": "loihi_inputs", "capacity": 1024,
                 "dense": "loihi_dense_synapse", "sparse": "loihi_sparse_synapse",
                 "conv": "loihi_conv_synapse"}
        return (sf.load_loihi(), "SANA-FE loihi.yaml (shipped with sanafe "
                f"{SANAFE_VERSION})", "SANA-FE (silicon-calibrated Loihi 1 events)", units)
    if family == "loihi2":
        units = {"lif": "l2_lif", "input": "l2_inputs", "dense": "l2_dense_synapse",
                 "capacity": min(int(spec.raw.get("limits", {}).get("neurons", 8192)),
                                 CORE_NEURONS),
                 "sparse": "l2_dense_synapse", "conv": "l2_conv_synapse"}
        fd, path = tempfile.mkstemp(suffix=".yaml", prefix="loihi2_sanafe_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(loihi2_arch_yaml(spec))
            arch = sf.load_arch(path)
        finally:
            os.unlink(path)
        return (arch, "Loihi 2 description written from targets/loihi2.toml",
                f"snncompile {spec.energy.source}", units)
    raise UnsupportedError(f"--backend sanafe: no SANA-FE architecture for target "
                           f"'{spec.name}' (loihi1* and loihi2 are supported)")


SANAFE = Rules("SANA-FE export")
"""Node type -> `SanafeNode`: how a node of that type becomes SANA-FE neurons / synapses."""


class SanafeNode:
    """A node type's SANA-FE rule. `check` refuses (one line) what SANA-FE cannot model;
    `forwards` marks nodes that pass their source's spikes on unchanged (no neurons)."""

    forwards = False

    def check(self, node) -> None:
        pass


def _rule(*types: type):
    """Class decorator: an instance of the class is SANAFE's rule for `types`."""
    def deco(cls):
        SANAFE.register(*types)(cls())
        return cls
    return deco


@_rule(Input)
class _SanafeInput(SanafeNode):
    """The graph input: a group of `input` soma units replaying the input spike trains."""

    def check(self, node: Input) -> None:
        if node.encoding not in ("spikes", "bias"):
            raise UnsupportedError(f"--backend sanafe: input '{node.name}' is "
                                   f"{node.encoding}; only binary spike and bias inputs are "
                                   "supported")


class _SanafeSynapse(SanafeNode):
    """A synapse node: the sparse connections from its source's group to its neuron's,
    on the synapse unit named `unit` in the architecture's unit table."""

    unit = "dense"

    def check(self, node) -> None:
        if getattr(node, "num_message_bits", 0):
            raise UnsupportedError(f"--backend sanafe: '{node.name}' takes graded spikes "
                                   "(SANA-FE's LIF sends binary spikes only)")
        if getattr(node, "delay", None) is not None or getattr(node, "align", 0):
            raise UnsupportedError(f"--backend sanafe: '{node.name}' has synaptic delays"
                                   + (" (path alignment of a residual block)"
                                      if getattr(node, "align", 0) else ""))

    def edges(self, node, graph: Graph):
        """(source index, destination index, SANA-FE weight) of every connection."""
        raise NotImplementedError


def _no_bias_axon(node) -> None:
    if node.bias_mant is not None:
        raise UnsupportedError(f"{node.name}: a synapse bias axon is not described to SANA-FE "
                               "yet; use the built-in energy model (--backend model)")


@_rule(FxDense)
class _SanafeDense(_SanafeSynapse):
    def edges(self, node: FxDense, graph: Graph):
        _no_bias_axon(node)
        w = prepare_weights(node.weight, node.sign_mode, node.num_weight_bits)
        di, si = np.nonzero(w)
        return si, di, w[di, si].astype(float) * 2.0 ** node.weight_exp * 64


@_rule(FxConv2d)
class _SanafeConv(_SanafeSynapse):
    unit = "conv"

    def edges(self, node: FxConv2d, graph: Graph):
        _no_bias_axon(node)
        si, di, wv = _conv_edges(node, graph.shape(graph.inputs(node.name)[0]),
                                 graph.shape(node.name))
        return si, di, wv * 64


@_rule(FxConv1d)
class _SanafeConv1d(_SanafeConv):
    def edges(self, node: FxConv1d, graph: Graph):
        in_shape = graph.shape(graph.inputs(node.name)[0])
        si, di, wv = _conv_edges(node, node.image_shape(in_shape),
                                 node.image_shape(graph.shape(node.name)))
        return si, di, wv * 64


@_rule(FxLIF)
class _SanafeLIF(SanafeNode):
    """Lava's CUBA LIF as SANA-FE's leaky_integrate_fire (see the module docstring)."""

    def check(self, node: FxLIF) -> None:
        if per_neuron(node):   # one neuron group: one set of soma attributes
            raise UnsupportedError(f"--backend sanafe: '{node.name}' has per-neuron du/dv/vth "
                                   f"({node.summary()}); its soma attributes are one per "
                                   "neuron group")

    def attributes(self, node: FxLIF) -> dict:
        du, dv, vth = (int(np.asarray(getattr(node, f)).flat[0]) for f in ("du", "dv", "vth"))
        vth = float(vth << 6)
        return {"threshold": vth, "reset": vth if node.reset == "threshold" else 0.0,
                "reset_mode": "soft" if node.reset == "subtract" else "hard",
                "leak_decay": (4096 - dv) / 4096, "input_decay": (4095 - du) / 4096}

    def biases(self, node: FxLIF, frames: np.ndarray | None = None) -> np.ndarray:
        """bias_mant << bias_exp per neuron; a bias input's frame (`frames`: (steps, n),
        held for the sample, the first step's used) is added to the mantissa, as the
        simulator does: (bias_mant + frame) << bias_exp."""
        mant = np.broadcast_to(np.asarray(node.bias_mant, np.int64), node.shape).ravel()
        if frames is not None:
            mant = mant + np.asarray(frames[0], np.int64).ravel()
        return mant * (1 << node.bias_exp)

    def exact(self, node: FxLIF) -> bool:
        """Whether SANA-FE's float LIF computes exactly Lava's fixed point for `node`
        (only for v > vth: SANA-FE's compare is not checked for v >= vth here)."""
        return bool(np.all(node.du == 4095) and np.all(node.dv == 0)) and node.fire_at == ">"


@_rule(Flatten)
class _SanafeFlatten(SanafeNode):
    forwards = True


SANAFE.register(Output)(SanafeNode())


def _check(graph: Graph) -> None:
    for name in graph.order():
        node = graph.node(name)
        if not SANAFE.supports(node):
            raise UnsupportedError(f"--backend sanafe: {SANAFE.refusal(node)}")
        SANAFE.rule(node).check(node)


def _conv_edges(node: FxConv2d, in_shape, out_shape):
    """(src, dst, weight) of every non-zero connection of a conv, C-order neuron indices."""
    w = np.asarray(node.weight)
    co_n, ci_g, kh, kw = w.shape
    ci_n, ih, iw = in_shape
    _, oh, ow = out_shape
    sy, sx = node.stride
    py, px = node.padding
    groups = node.groups
    co_per_g = co_n // groups
    srcs, dsts, ws = [], [], []
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    for co, ci, ky, kx in zip(*np.nonzero(w)):
        cin = (co // co_per_g) * ci_g + ci
        y = oy * sy - py + ky
        x = ox * sx - px + kx
        ok = (y >= 0) & (y < ih) & (x >= 0) & (x < iw)
        srcs.append(((cin * ih + y[ok]) * iw + x[ok]).ravel())
        dsts.append(((co * oh + oy[ok]) * ow + ox[ok]).ravel())
        ws.append(np.full(int(ok.sum()), float(w[co, ci, ky, kx])))
    if not srcs:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws)


def _block_neurons(block: dict, shape) -> np.ndarray:
    if "range" in block:
        return np.arange(block["range"][0], block["range"][1])
    c0, c1, y0, y1, x0, x1 = block["tile"]
    _, h, w = shape if len(shape) == 3 else (shape[0], 1, shape[-1])  # Conv1d-fed: (O, 1, L')
    c, y, x = np.meshgrid(np.arange(c0, c1), np.arange(y0, y1), np.arange(x0, x1),
                          indexing="ij")
    return ((c * h + y) * w + x).ravel()


@dataclass
class _Plan:
    """What every sample's SANA-FE network shares: the layers, their wiring and timing,
    the architecture and where the mapping puts each block."""

    graph: Graph
    lifs: list[str]                    # neuron layers, graph order
    feed: dict[str, tuple[str | None, str]]  # layer -> (its synapse node, that synapse's
    #                                          source); (None, input) for a bias-fed layer
    depth: dict[str, int]              # global step at which each layer starts integrating
    steps: int
    blocks: list[dict]
    core_of_block: dict[int, tuple[int, int]]  # block -> (tile index, core slot)
    mesh_y: int
    arch: object
    units: dict
    biased: list[str] = field(default_factory=list)  # layers driven by a bias input

    @property
    def max_depth(self) -> int:
        return max(self.depth.values())


def _plan(graph: Graph, mapping: dict, spec: TargetSpec, steps: int, arch, units) -> _Plan:
    """Layers, the synapse feeding each and its spiking source, depths and placement."""
    inp = graph.input_node()
    lifs = [n for n in graph.order() if graph.node(n).is_neuron]
    feed: dict[str, tuple[str | None, str]] = {}
    depth = {inp.name: 0}
    biased = graph.bias_fed()
    for lif in lifs:
        if lif in biased:   # driven by its bias (the frame): integrates from step 0
            feed[lif] = (None, inp.name)
            depth[lif] = 0
            continue
        syn = graph.inputs(lif)
        if len(syn) != 1 or not graph.node(syn[0]).is_synapse:
            raise UnsupportedError(f"--backend sanafe: '{lif}' must be fed by one dense or "
                                   "conv synapse node")
        src = graph.inputs(syn[0])[0]
        while SANAFE.rule(graph.node(src)).forwards:
            src = graph.inputs(src)[0]
        feed[lif] = (syn[0], src)
        depth[lif] = depth[src] + 1
    core_of_block = {}
    mesh_y = int(spec.raw.get("chip", {}).get("mesh_y", 1))
    for c in mapping["core_list"]:
        for b in c["blocks"]:
            core_of_block[b] = (int(c["tile"][0]) * mesh_y + int(c["tile"][1]), int(c["slot"]))
    return _Plan(graph, lifs, feed, depth, steps, mapping["blocks"], core_of_block, mesh_y,
                 arch, units, sorted(biased))


def _network(sf, plan: _Plan, frames: np.ndarray):
    """One sample's SANA-FE network: groups, connections, placement and input trains."""
    graph, units = plan.graph, plan.units
    inp = graph.input_node()
    net = sf.Network()
    n_in = int(np.prod(inp.shape))
    groups = {} if inp.is_bias else {inp.name: net.create_neuron_group(inp.name, n_in)}
    for lif in plan.lifs:
        node = graph.node(lif)
        rule = SANAFE.rule(node)
        syn = plan.feed[lif][0]
        unit = SANAFE.rule(graph.node(syn)).unit if syn else "dense"
        g = net.create_neuron_group(lif, int(np.prod(node.shape)),
                                    model_attributes=rule.attributes(node),
                                    soma_hw_name=units["lif"],
                                    default_synapse_hw_name=units[unit], log_spikes=True)
        bias = rule.biases(node, frames if lif in plan.biased else None)
        for i in np.nonzero(bias)[0]:
            g.neurons[int(i)].set_attributes(model_attributes={"bias": float(bias[i])})
        groups[lif] = g
    for lif in plan.lifs:
        syn_name, src = plan.feed[lif]
        if syn_name is None:    # bias-fed: no synapses
            continue
        syn = graph.node(syn_name)
        si, di, wv = SANAFE.rule(syn).edges(syn, graph)
        groups[src].connect_neurons_sparse(groups[lif], {"weight": wv.tolist()},
                                           list(zip(si.tolist(), di.tolist())))
    # placement: the build's mapping; the input enters at tile 0 (as in snncompile)
    tiles = plan.arch.tiles
    for b, blk in enumerate(plan.blocks):
        layer = blk["layer"]
        if layer not in groups or layer == inp.name:
            continue
        t, slot = plan.core_of_block[b]
        core = tiles[t].cores[slot]
        for i in _block_neurons(blk, graph.shape(layer)):
            groups[layer].neurons[int(i)].map_to_core(core)
    if not inp.is_bias:
        _place_inputs(plan, groups[inp.name], n_in, frames)
    return net


def _silence_bias(chip, plan: _Plan) -> None:
    """After the input steps: the bias-fed layers' biases back to their own (no frame),
    as the spike inputs fall silent, so the pipeline drains without new input."""
    for lif in plan.biased:
        node = plan.graph.node(lif)
        bias = SANAFE.rule(node).biases(node)
        for i, mn in enumerate(chip.mapped_neuron_groups[lif]):
            mn.set_attributes(model_attributes={"bias": float(bias[i])})


def _place_inputs(plan: _Plan, g_in, n_in: int, frames: np.ndarray) -> None:
    """Input neurons on the free neuron slots of the cores nearest tile (0, 0); each needs
    its own `input` soma unit (sharing one loses spikes in SANA-FE 2.2.9)."""
    inp, units, tiles = plan.graph.input_node().name, plan.units, plan.arch.tiles
    used: dict[tuple[int, int], int] = {}
    for b, blk in enumerate(plan.blocks):
        if blk["layer"] != inp and b in plan.core_of_block:
            used[plan.core_of_block[b]] = (used.get(plan.core_of_block[b], 0)
                                           + int(blk["neurons"]))
    slots = sorted(((t, c) for t in range(len(tiles)) for c in range(len(tiles[t].cores))),
                   key=lambda tc: ((tc[0] // plan.mesh_y) + (tc[0] % plan.mesh_y), tc))
    i = 0
    for t, c in slots:
        free = min(units["capacity"] - used.get((t, c), 0), INPUT_UNITS)
        for k in range(max(free, 0)):
            if i == n_in:
                break
            train = frames[:, i].tolist() + [False] * plan.max_depth
            g_in.neurons[i].set_attributes(soma_hw_name=f"{units['input']}[{k}]",
                                           model_attributes={"spikes": train})
            g_in.neurons[i].map_to_core(tiles[t].cores[c])
            i += 1
        if i == n_in:
            break
    if i < n_in:
        raise UnsupportedError(f"--backend sanafe: no free neuron slots for input "
                               f"'{inp}' ({n_in - i} of {n_in} left over)")


def run_sanafe(graph: Graph, mapping: dict, inputs: np.ndarray, spec: TargetSpec,
               max_samples: int | None = None) -> SanafeResult:
    """Simulate `inputs` (samples, steps, *shape) on SANA-FE with `mapping` (mapping.json)."""
    sf = _sanafe()
    _check(graph)
    if int(mapping.get("chips", 1)) > 1:
        raise UnsupportedError("--backend sanafe: the mapping spans "
                               f"{mapping['chips']} chips; SANA-FE models one chip here")
    inputs = np.asarray(inputs)
    n_samples = inputs.shape[0] if max_samples is None else min(inputs.shape[0], max_samples)
    steps = int(inputs.shape[1])
    _check_capacity(graph, mapping)
    arch, arch_desc, constants, units = _arch(spec)
    plan = _plan(graph, mapping, spec, steps, arch, units)
    steps_run = steps + plan.max_depth
    notes: list[str] = []
    if not all(SANAFE.rule(graph.node(l)).exact(graph.node(l)) for l in plan.lifs):
        notes.append("SANA-FE's LIF is floating point: with du != 4095 or dv != 0 "
                     "its spikes can differ from Lava's truncating fixed point")
    totals: dict[str, float] = {}
    spikes = dict.fromkeys(plan.lifs, 0.0)
    packets = synev = sim_time = 0.0
    chip = sf.SpikingChip(arch)  # built once (seconds); reset and reloaded per sample
    bias_in = graph.input_node().is_bias
    for s in range(n_samples):
        frames = inputs[s].reshape(steps, -1)
        net = _network(sf, plan, frames if bias_in else frames != 0)
        chip.reset()
        try:
            chip.load(net)
        except Exception as exc:  # SANA-FE reports capacity errors as RuntimeError
            raise UnsupportedError(f"--backend sanafe: SANA-FE refused the mapped network: "
                                   f"{exc}") from exc
        if bias_in:   # frame held for the input steps, then the pipeline drains
            runs = [chip.sim(steps, spike_trace=True)]
            _silence_bias(chip, plan)
            if plan.max_depth:
                runs.append(chip.sim(plan.max_depth, spike_trace=True))
        else:
            runs = [chip.sim(steps_run, spike_trace=True)]
        trace = []
        for res in runs:
            for k, v in res["energy"].items():
                totals[k] = totals.get(k, 0.0) + float(v)
            packets += res["packets_sent"]
            synev += res["spikes"]
            sim_time += res["sim_time"]
            trace += list(res["spike_trace"])
        _count_spikes(trace, spikes, plan)
    per = {k: v / n_samples for k, v in totals.items()}
    dyn = per.pop("total")
    inference_s = sim_time / n_samples
    static = spec.energy.static_power_w * inference_s
    notes.append(f"SANA-FE simulated {steps_run} steps per inference ({steps} input steps + "
                 f"{plan.max_depth} pipeline-drain steps) and {n_samples} sample(s); static "
                 "energy is snncompile's static_power_w x SANA-FE's time (SANA-FE has no "
                 "static power)")
    return SanafeResult(
        arch=arch_desc, constants=constants, samples=n_samples, steps=steps,
        steps_run=steps_run, dynamic_j=dyn, static_j=static,
        energy_per_inference_j=dyn + static, latency_per_step_s=inference_s / steps_run,
        latency_per_inference_s=inference_s, energy_parts_j=per,
        spikes={k: v / n_samples for k, v in spikes.items()},
        packets=packets / n_samples, synaptic_events=synev / n_samples, notes=notes)


def _check_capacity(graph: Graph, mapping: dict) -> None:
    """Refuse (one line) a placement with a core fuller than SANA-FE can simulate."""
    inp = graph.input_node().name
    per_core: dict[tuple, int] = {}
    for c in mapping["core_list"]:
        n = sum(int(mapping["blocks"][b]["neurons"]) for b in c["blocks"]
                if mapping["blocks"][b]["layer"] != inp)
        per_core[tuple(c["tile"]) + (int(c["slot"]),)] = n
    if per_core:
        where, n = max(per_core.items(), key=lambda kv: kv[1])
        if n > CORE_NEURONS:
            raise UnsupportedError(
                f"--backend sanafe: core at tile {where[:2]} slot {where[2]} holds {n} neurons;"
                f" SANA-FE {SANAFE_VERSION} simulates at most {CORE_NEURONS} per core "
                "(whatever the description says): compile for a target with [limits] "
                f"neurons <= {CORE_NEURONS} to run it through SANA-FE")


def _count_spikes(trace, spikes: dict[str, float], plan: _Plan) -> None:
    """Add each layer's spikes of one sample's trace within its window [d, d + steps)."""
    for t, fired in enumerate(trace):
        for nid in fired:
            layer = str(nid).split(".")[0]
            if layer in spikes and plan.depth[layer] <= t < plan.depth[layer] + plan.steps:
                spikes[layer] += 1


def compare_text(ours, theirs: SanafeResult) -> str:
    """Side-by-side table: snncompile's model and SANA-FE, with the ratio."""
    rows = [("dynamic energy / inference", ours.dynamic_j, theirs.dynamic_j, "J"),
            ("static energy / inference", ours.static_j, theirs.static_j, "J"),
            ("total energy / inference", ours.energy_per_inference_j,
             theirs.energy_per_inference_j, "J"),
            ("latency / step", ours.latency_per_step_s, theirs.latency_per_step_s, "s"),
            ("latency / inference", ours.latency_per_inference_s,
             theirs.latency_per_inference_s, "s")]
    ours_spk = sum(ours.events[l].get("spikes", 0.0) for l in theirs.spikes)
    their_spk = sum(theirs.spikes.values())
    ours_syn = sum(ours.events[l].get("synops", 0.0) for l in theirs.spikes)
    ours_msg = sum(ev.get("messages", 0.0) for ev in ours.events.values())
    rows += [("spikes / inference", ours_spk, their_spk, ""),
             ("synaptic events / inference", ours_syn, theirs.synaptic_events, ""),
             ("messages / inference", ours_msg, theirs.packets, "")]
    lines = [f"SANA-FE backend: {theirs.arch}; event energies: {theirs.constants}",
             f"{'':<30}{'snncompile':>14}{'SANA-FE':>14}{'SANA-FE/ours':>14}"]
    for label, a, b, unit in rows:
        ratio = b / a if a else math.inf if b else 1.0
        lines.append(f"{label:<30}{_fmt(a, unit):>14}{_fmt(b, unit):>14}{ratio:>14.2f}")
    for name, v in theirs.energy_parts_j.items():
        lines.append(f"  SANA-FE {name:<21}{'':>14}{_fmt(v, 'J'):>14}")
    lines += [f"note: {n}" for n in theirs.notes]
    return "\n".join(lines)


def _fmt(x: float, unit: str) -> str:
    if not unit:
        return f"{x:,.0f}"
    for scale, p in ((1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1, "")):
        if abs(x) < scale * 1000:
            return f"{x / scale:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"
