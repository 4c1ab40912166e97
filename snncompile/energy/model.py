"""Energy and latency of a mapped network, from event counts of the simulator.

Input. `counts[node] = {...}` summed over all samples and steps: FxLIF nodes give
``{"spikes", "neuron_updates"}`` (optionally ``"active_updates"``), FxDense / FxConv2d nodes
give ``{"synops"}`` (synaptic events), the Input node may give ``{"spikes"}``; plus
``counts["samples"]`` and ``counts["steps"]`` (steps per sample), or the same as keyword
arguments. Everything below is per inference (= per sample).

Dynamic energy, per layer (an FxLIF with the synapse node feeding it):

* ``synops``           synops x synop_j (conv: synop_conv_j; dense with zero weights:
                       synop_sparse_j when the table has one);
* ``neuron_active`` / ``neuron_inactive``  updates x neuron_update_{active,inactive}_j. A
                       neuron-step is *active* when it received at least one synaptic event.
                       The simulator reports only totals, so the active share is estimated
                       by assuming the layer's events land on random neuron-steps:
                       active = updates x (1 - exp(-synops_in / updates)). Exact when
                       ``"active_updates"`` is given;
* ``spikes_out``       spikes x spike_out_j;
* ``messages``         spikes x (messages per spike) x message_j; a spike sends one message
                       to each core holding neurons it has synapses onto (from the mapping);
* ``hops`` / ``chip_hops``  the same messages x their mesh hops (east-west and north-south
                       priced separately) and chip-boundary crossings, from the placement.
  Messages of the graph input (injected at tile (0, 0) of chip 0) are charged to the input
  row; its spike count is derived from the first layer's synops when not given
  (spikes_in = synops x inputs / synapses, i.e. uniform fan-out).

A neuron's reset option (`FxLIF.reset`: to zero, by subtraction, to the threshold) and its
compare (> or >=) cost the same: one neuron update per neuron and step, as on Loihi 2,
whose microcoded neuron runs the update whatever the reset (no separate figure is
published; this is the model's assumption).

Static energy = static_power_w x chips x latency per inference, shared among layers by the
cores they occupy (a core's share split by neurons).

Latency per inference = latency per step x (T + the steps whole-window attention adds:
`ir.timing.added_delay`; static energy stays charged for T steps, since in a stream of
samples that delay overlaps the next samples).

Latency per step = busiest core + longest used route + barrier sync. A core's work is the
average per-step events of its blocks (layer events shared by neurons, synops by synapses)
times the per-event times; the barrier grows linearly with tiles in use (Davies 2018
Table 2: 1 to 32 tiles). Per-step averages hide the slowest step: a lower bound on latency.

ANN comparison, as the attention-SNN literature computes it (Horowitz ISSCC 2014, 45 nm,
32-bit float): ANN energy = dense ops x E_MAC for every synapse layer (one pass); SNN energy
= T x dense ops x E_MAC for the encoding layer (when the input is graded; `first_layer_mac`
overrides) + synops x E_AC for the others (synops = T x dense ops x input firing rate).
Dense ops count real connections (padding taps excluded).

The per-node-type part lives in the `ENERGY` table: each node type's `NodeEnergy` rule says
how its counts become chip operations (a neuron layer's updates, spikes and messages, a
synapse type's price per synop, a co-processor partition's ops and bytes); node types
without a rule are refused in one line. The rest (latency, static energy, the report) is
common to all.

    >>> rep = estimate_energy(graph, mapping, counts, load_target("loihi1"))  # doctest: +SKIP
    >>> rep.energy_per_inference_j, rep.latency_per_step_s                    # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputFileError, UnsupportedError
from ..ir.graph import Graph
from ..ir.nodes import (Flatten, FxConv2d, FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate,
                        FxLI, FxLIF, FxRecDense, FxSigmaDelta, Input, Output)
from ..ir.registry import Rules
from ..ir.timing import added_delay
from snncompile.mapping.place import Mapping
from ..target import TargetSpec
from .report import EVENTS, EnergyReport

E_MAC_J = 4.6e-12  # 32-bit float multiply-accumulate, 45 nm (Horowitz, ISSCC 2014)
E_AC_J = 0.9e-12  # 32-bit float add, 45 nm (Horowitz, ISSCC 2014)

ENERGY = Rules("energy counts")
"""Node type -> `NodeEnergy`: how that node's event counts become chip operations."""

# The phases in which `NodeEnergy.price` runs, in this order over the whole graph (each in
# graph order): the input row first, then the neuron layers, then the co-processor charges
# (added to the rows of the layers they gate, so those rows must exist).
INPUT, LAYERS, COPROC = "input", "layers", "coproc"
PHASES = (INPUT, LAYERS, COPROC)


@dataclass
class Pricing:
    """The state of one `estimate_energy` call: its inputs and the rows built so far."""

    graph: Graph
    mapping: Mapping
    counts: dict
    spec: TargetSpec
    samples: int
    steps: int
    first_layer_mac: bool | None
    notes: list[str] = field(default_factory=list)
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)   # joules per row
    events: dict[str, dict[str, float]] = field(default_factory=dict)      # events per row
    block_rate: dict[str, dict[str, float]] = field(default_factory=dict)  # per step, latency
    payload_bits: dict[str, int] = field(default_factory=dict)  # graded sender -> bits
    coprocs: list[str] = field(default_factory=list)            # co-processor partitions
    ann_j: float = 0.0
    snn_ops_j: float = 0.0

    @property
    def e(self):
        return self.spec.energy

    @property
    def inp(self) -> str:
        return self.graph.input_node().name

    def count(self, node: str, key: str, required: bool = True) -> float:
        """counts[node][key] per inference (NaN when absent and not required)."""
        return _count(self.counts, node, key, required) / self.samples

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def traffic(self, layer: str, spikes: float) -> tuple[dict, dict]:
        """(events, joules) of the messages `spikes` of `layer` send, from the placement."""
        e, tr = self.e, self.mapping.layer_traffic.get(layer)
        n = self.mapping.layers[layer]["neurons"]
        if not tr or not n:
            return ({"messages": 0.0, "hops_ew": 0.0, "hops_ns": 0.0, "chip_hops": 0.0},
                    {"messages": 0.0, "hops": 0.0, "chip_hops": 0.0})
        ev = {k: spikes * tr[k] / n for k in ("messages", "hops_ew", "hops_ns", "chip_hops")}
        bits = self.payload_bits.get(layer, 0)
        en = {"messages": ev["messages"] * (e.message_j + bits * e.message_payload_bit_j),
              "hops": ev["hops_ew"] * e.hop_ew_j + ev["hops_ns"] * e.hop_ns_j,
              "chip_hops": ev["chip_hops"] * e.chip_hop_j}
        return ev, en


class NodeEnergy:
    """A node type's energy rule. `price` adds what the node's counts cost to the estimate
    in phase `phase`; a synapse type also answers `synops` (what its neuron layer pays)."""

    phase: str | None = None  # None: the node costs nothing of its own

    def price(self, p: Pricing, name: str) -> None:
        pass

    def synops(self, p: Pricing, name: str) -> tuple[float, float]:
        """(synaptic events per inference, joules per event) of synapse node `name`."""
        raise UnsupportedError(f"{name}: {type(p.graph.node(name)).__name__} is not a "
                               "synapse node; a neuron layer's synapse must be one")


def _count(counts: dict, node: str, key: str, required: bool = True) -> float:
    entry = counts.get(node)
    if entry is None or key not in entry:
        if not required:
            return math.nan
        raise InputFileError(f"counts: '{node}' lacks '{key}' (FxLIF nodes need 'spikes' and "
                             "'neuron_updates', FxDense/FxConv2d nodes 'synops')")
    value = entry[key]
    if not isinstance(value, (int, np.integer, float)) or value < 0:
        raise InputFileError(f"counts: '{node}'['{key}'] = {value!r} must be a count >= 0")
    return float(value)


def _has_zeros(node) -> bool:
    w = node.weight
    if all(s == 0 for s in w.strides):
        return w.size > 0 and w.flat[0] == 0
    return int(np.count_nonzero(w)) < w.size


# ---------------------------------------------------------------------- the rules
def _rule(*types: type):
    """Class decorator: an instance of the class is ENERGY's rule for `types`."""
    def deco(cls):
        ENERGY.register(*types)(cls())
        return cls
    return deco


@_rule(Input)
class _InputEnergy(NodeEnergy):
    """The graph input: its messages into the first layers, charged to the input row.
    Its spike count is derived from the first layer's synops when not given."""

    phase = INPUT

    def price(self, p: Pricing, name: str) -> None:
        spikes_in = p.count(name, "spikes", required=False)
        if math.isnan(spikes_in):
            spikes_in = 0.0
            lifs = [n for n in p.graph.order() if p.graph.node(n).is_neuron]
            first = [l for l in lifs if _source(p.graph, p.mapping, l) == name]
            if first:
                syn = p.mapping.layers[first[0]]["synapse"]
                n_syn = p.mapping.layers[first[0]]["synapses"]
                if n_syn:
                    spikes_in = (p.count(syn, "synops")
                                 * p.mapping.layers[name]["neurons"] / n_syn)
                p.notes.append("input spikes derived from the first layer's synops assuming "
                               "uniform fan-out")
        ev, en = p.traffic(name, spikes_in)
        p.per_layer[name] = dict.fromkeys(EVENTS, 0.0) | en
        p.events[name] = {"spikes": spikes_in, **ev}


@_rule(FxLIF, FxSigmaDelta)
class _NeuronLayerEnergy(NodeEnergy):
    """A neuron layer with the synapse node feeding it: synops (priced by the synapse's
    rule), active / inactive neuron updates, spikes out and their messages; plus the
    literature-style ANN / SNN operation energy of the layer."""

    phase = LAYERS

    def price(self, p: Pricing, layer: str) -> None:
        e, info = p.e, p.mapping.layers[layer]
        syn = info["synapse"]
        # every feed-forward synapse into it (a residual block's body and shortcut)
        feeds = info.get("synapse_nodes") or ([syn] if syn else [])
        synops, e_syn = _add_synops(p, feeds, 0.0, 0.0)
        synops, e_syn = _with_recurrent(p, layer, synops, e_syn)
        updates = p.count(layer, "neuron_updates")
        spikes = p.count(layer, "spikes")
        active = p.count(layer, "active_updates", required=False)
        if math.isnan(active):
            active = updates * (1.0 - math.exp(-synops / updates)) if updates else 0.0
            p.note("active neuron updates estimated as updates x (1 - exp(-synops / "
                   "updates)) (events on random neuron-steps)")
        active = min(active, updates)
        inactive = updates - active
        ev, en = p.traffic(layer, spikes)
        p.per_layer[layer] = dict.fromkeys(EVENTS, 0.0) | {
            "synops": synops * e_syn,
            "neuron_active": active * e.neuron_update_active_j,
            "neuron_inactive": inactive * e.neuron_update_inactive_j,
            "spikes_out": spikes * e.spike_out_j,
        } | en
        p.events[layer] = {"synops": synops, "neuron_updates": updates,
                           "active_updates": active, "inactive_updates": inactive,
                           "spikes": spikes, **ev}
        for name in feeds:
            _bias_axon(p, layer, name, e_syn)
        p.block_rate[layer] = {k: v / p.steps for k, v in p.events[layer].items()}
        dense_ops = float(info["synapses"])
        p.ann_j += dense_ops * E_MAC_J
        encoding = _source(p.graph, p.mapping, layer) == p.inp
        mac_first = (p.graph.input_node().encoding == "graded" if p.first_layer_mac is None
                     else p.first_layer_mac)
        p.snn_ops_j += (p.steps * dense_ops * E_MAC_J if encoding and mac_first
                        else synops * E_AC_J)


def _bias_axon(p: Pricing, layer: str, syn: str | None, e_syn: float) -> None:
    """A synapse bias: its always-on axon's synaptic events are in the synapse's `synops`
    (priced above); its spike, one message into every core holding the layer at every
    step, is added here."""
    events = p.count(syn, "bias_events", required=False) if syn else math.nan
    if math.isnan(events) or not events:
        return
    cores = max(int(p.mapping.layers[layer].get("blocks", 1)), 1)
    msgs = events * cores
    p.per_layer[layer]["messages"] += msgs * p.e.message_j
    ev = p.events[layer]
    ev["bias_messages"] = ev.get("bias_messages", 0.0) + msgs
    bias_synops = p.count(syn, "bias_synops", required=False)
    ev["bias_synops"] = ev.get("bias_synops", 0.0) + bias_synops
    p.note(f"{layer}: the bias axon of {syn} costs {bias_synops:,.0f} synaptic events "
           f"({bias_synops * e_syn:.3g} J) and {msgs:,.0f} messages per inference (every "
           "step, into each of its cores)")


def _add_synops(p: Pricing, names, synops: float, e_syn: float):
    """(synops, joules per synop) with the synaptic events of synapse nodes `names` added
    (each priced by its type's rule), joules as the average."""
    for name in names:
        n, e = ENERGY.rule(p.graph.node(name)).synops(p, name)
        if synops + n > 0:
            e_syn = (synops * e_syn + n * e) / (synops + n)
        synops += n
    return synops, e_syn


def _with_recurrent(p: Pricing, layer: str, synops: float, e_syn: float):
    """(synops, joules per synop) of a layer with its recurrent synapses (FxRecDense, on
    the layer's own core) added to its feed-forward ones, joules as the average."""
    recs = [i for i in p.graph.inputs(layer)
            if p.graph.node(i).is_synapse and p.graph.node(i).closes_loop]
    return _add_synops(p, recs, synops, e_syn)


READOUT_BITS = 24
"""Width of the voltage a leaky-integrator readout sends to the host each step (Loihi 2
graded spikes carry up to 24 bits)."""


@_rule(FxLI)
class _ReadoutEnergy(_NeuronLayerEnergy):
    """A leaky-integrator readout: priced as a neuron layer (synops, updates; it never
    spikes), plus one host read of each neuron's voltage every step, priced as one message
    with a 24-bit payload (an assumption, noted: no published figure for reading a
    compartment's voltage)."""

    def price(self, p: Pricing, layer: str) -> None:
        super().price(p, layer)
        e = p.e
        reads = float(p.mapping.layers[layer]["neurons"]) * p.steps
        p.per_layer[layer]["messages"] += reads * (e.message_j
                                                   + READOUT_BITS * e.message_payload_bit_j)
        p.events[layer]["host_reads"] = reads
        p.note(f"{layer}: its voltage read by the host once per neuron per step, priced as "
               f"one {READOUT_BITS}-bit graded message each (assumed)")


@_rule(FxDense, FxRecDense)
class _DenseEnergy(NodeEnergy):
    """Dense synapses: synop_j per event, synop_sparse_j when some weights are zero and the
    table has one."""

    def synops(self, p: Pricing, name: str) -> tuple[float, float]:
        e = p.e
        sparse = _has_zeros(p.graph.node(name)) and e.synop_sparse_j is not None
        return p.count(name, "synops"), (e.synop_sparse_j if sparse else e.synop_j)


@_rule(FxConv2d)
class _ConvEnergy(NodeEnergy):
    """Convolution synapses: synop_conv_j per event."""

    def synops(self, p: Pricing, name: str) -> tuple[float, float]:
        return p.count(name, "synops"), p.e.synop_conv_j


@_rule(FxCoproc)
class _CoprocEnergy(NodeEnergy):
    """A co-processor partition (attention): its ops and boundary bytes at the target's
    [coproc] prices, charged to the neuron layer whose current its gains multiply."""

    phase = COPROC

    def price(self, p: Pricing, name: str) -> None:
        cp = p.spec.raw.get("coproc", {})
        ops = sum(_count(p.counts, name, k) for k in
                  ("coproc_macs", "coproc_adds", "coproc_compares", "coproc_lookups"))
        nbytes = sum(_count(p.counts, name, k) for k in
                     ("bytes_to_coproc", "bytes_from_coproc"))
        buffered = 0.0
        if p.graph.node(name).window:   # the window written into its buffer, read once
            buffered = _count(p.counts, name, "coproc_buffer_bytes")
            p.note("whole-window attention: the co-processor's window buffer is priced per "
                   "byte written and read at [coproc] energy_per_byte_j (no figure for the "
                   "x86 core's memory)")
        j = (ops * cp.get("energy_per_op_j", 0.0)
             + (nbytes + buffered) * cp.get("energy_per_byte_j", 0.0)) / p.samples
        lif = _gated_lif(p.graph, name)
        p.per_layer[lif]["coproc"] += j
        p.events[lif].update({"coproc_ops": ops / p.samples,
                              "coproc_bytes": nbytes / p.samples})
        if buffered:
            p.events[lif]["coproc_buffer_bytes"] = buffered / p.samples
        p.coprocs.append(name)


# Nodes without events of their own: Flatten and Output only rewire; a gate's
# multiplication and a delay are part of the synaptic events of the layer they feed; the
# co-processor's output bytes are counted by its partition (FxCoproc).
ENERGY.register(Flatten, Output, FxGate, FxDelay, FxCoprocOut)(NodeEnergy())


# ---------------------------------------------------------------------- the estimate
def estimate_energy(graph: Graph, mapping: Mapping, counts: dict, spec: TargetSpec,
                    samples: int | None = None, steps: int | None = None,
                    first_layer_mac: bool | None = None) -> EnergyReport:
    """Energy, latency and EDP per inference of `graph` placed as `mapping` on `spec`.

    `counts`: event counts summed over all samples and steps (see the module docstring).
    """
    if spec.energy is None:
        raise UnsupportedError(f"target '{spec.name}' has no [energy] section; pass an "
                               "energy table (load_target(name, energy=...))")
    samples = int(samples if samples is not None else counts.get("samples", 0))
    steps = int(steps if steps is not None else counts.get("steps", 0))
    if samples < 1 or steps < 1:
        raise InputFileError(f"counts: samples ({samples}) and steps ({steps}) must be >= 1")
    ENERGY.check(graph.node(n) for n in graph.order())
    p = Pricing(graph, mapping, counts, spec, samples, steps, first_layer_mac)
    _graded_senders(p)
    missing = [n for n in graph.order()
               if (graph.node(n).is_neuron or n == p.inp) and n not in mapping.layers]
    if missing:
        raise UnsupportedError(f"mapping has no layer {', '.join(missing)}; map this graph "
                               "with map_graph first")
    for phase in PHASES:
        for name in graph.order():
            rule = ENERGY.rule(graph.node(name))
            if rule.phase == phase:
                rule.price(p, name)
    coproc_s = 0.0
    if p.coprocs:
        from snncompile.mapping.coproc_assign import partition
        coproc_s = partition(graph, spec)["added_latency_per_step_s"]
        p.notes.append("co-processor energy and latency from the target's [coproc] estimates")
    core_t = _core_times(p)
    parts, busiest = _latency_parts(p, core_t, coproc_s)
    step_s = sum(parts.values())
    _static(p, step_s * steps)
    delay = added_delay(graph)
    if delay:
        p.notes.append(f"whole-window attention delays each inference by {delay} steps "
                       f"({delay * step_s * 1e6:.3g} us), included in the latency per "
                       "inference; in a stream of samples the delay overlaps the next "
                       "samples, so static energy is charged for the sample's own steps")
    return _report(p, parts, busiest, step_s, delay)


def _graded_senders(p: Pricing) -> None:
    """Layers whose messages carry a payload (bits) to a graded synapse, and their notes."""
    from snncompile.mapping.split import _source_of

    for n in p.graph.order():
        node = p.graph.node(n)
        bits = int(getattr(node, "num_message_bits", 0) or 0)
        if bits and node.is_synapse:
            src = _source_of(p.graph, p.graph.inputs(n)[0])
            p.payload_bits[src] = max(p.payload_bits.get(src, 0), bits)
    if p.payload_bits:
        p.notes.append("graded-spike synaptic operations are priced as binary ones (no "
                       "published per-operation energy for graded messages): an underestimate")
        if p.e.message_payload_bit_j:
            p.notes.append("graded messages priced by payload width (message_payload_bit_j "
                           "per bit)")


def _core_times(p: Pricing) -> np.ndarray:
    """Seconds per step of each core: its blocks' share of their layers' per-step events."""
    e, mapping = p.e, p.mapping
    core_t = np.zeros(mapping.n_cores)
    for c in mapping.cores:
        t = 0.0
        for b in c.blocks:
            blk = mapping.blocks[b]
            # attention relay neurons (mapping): the gated layer's synaptic events again
            r = p.block_rate[mapping.layers[blk.layer].get("relay_of") or blk.layer]
            info = mapping.layers[blk.layer]
            fn = blk.n_neurons / info["neurons"]
            fs = blk.synapses / info["synapses"] if info["synapses"] else 0.0
            t += (r["synops"] * fs * e.synop_s
                  + r["active_updates"] * fn * e.neuron_update_active_s
                  + r["inactive_updates"] * fn * e.neuron_update_inactive_s
                  + r["spikes"] * fn * e.spike_out_s
                  + r["messages"] * fn * (e.message_s + p.payload_bits.get(blk.layer, 0)
                                          * e.message_payload_bit_s))
        core_t[c.index] = t
    return core_t


def _latency_parts(p: Pricing, core_t: np.ndarray, coproc_s: float) -> tuple[dict, int]:
    """(seconds per step by part: busiest core, route, barrier, co-processor, system;
    index of the busiest core). Also charges the per-step system energy to the input row."""
    e, mapping = p.e, p.mapping
    busiest = int(np.argmax(core_t)) if len(core_t) else 0
    route_s = float(mapping.max_route.get("seconds", 0.0)) if mapping.max_route else 0.0
    barrier = e.barrier_s(mapping.tiles_used)
    if mapping.chips > 1:
        p.notes.append("barrier sync across chips modelled as the single-chip maximum")
        barrier = e.barrier_max_s
    parts = {"busiest_core_s": float(core_t[busiest]) if len(core_t) else 0.0,
             "route_s": route_s, "barrier_s": barrier, "coproc_s": coproc_s,
             "system_s": e.system_step_s}
    # per-step system cost (host / x86 I/O and management), charged to the input row
    p.per_layer[p.inp]["system"] = e.system_step_j * p.steps
    if e.system_step_j or e.system_step_s:
        p.notes.append(f"per-step system cost {e.system_step_j * 1e6:.3g} uJ and "
                       f"{e.system_step_s * 1e6:.3g} us per step (host / x86 I/O) included")
    return parts, busiest


def _static(p: Pricing, inference_s: float) -> None:
    """Static energy of the inference, shared by the cores each layer occupies."""
    mapping = p.mapping
    static = p.e.static_power_w * mapping.chips * inference_s
    share = {l: 0.0 for l in p.per_layer}
    for c in mapping.cores:
        n_c = sum(mapping.blocks[b].n_neurons for b in c.blocks)
        for b in c.blocks:
            blk = mapping.blocks[b]
            owner = mapping.layers[blk.layer].get("relay_of") or blk.layer  # relays
            share[owner] += (blk.n_neurons / n_c if n_c else 1 / len(c.blocks)) \
                / mapping.n_cores
    for l in p.per_layer:
        p.per_layer[l]["static"] = static * share[l]
    if not mapping.cores:  # nothing placed: the whole static energy on the input row
        p.per_layer[p.inp]["static"] = static


def _report(p: Pricing, parts: dict, busiest: int, step_s: float,
            delay_steps: int = 0) -> EnergyReport:
    e, per_layer = p.e, p.per_layer
    inference_s = step_s * (p.steps + delay_steps)   # + whole-window attention's delay
    per_event = {ev_: sum(d[ev_] for d in per_layer.values()) for ev_ in EVENTS}
    total = sum(sum(d.values()) for d in per_layer.values())
    static_j = per_event["static"]
    estimates = sorted(e.estimates)
    if p.coprocs:
        estimates = sorted(set(estimates) | {f"coproc.{k}" for k, v in dict(
            p.spec.raw.get("coproc", {}).get("estimate", {})).items() if v})
    return EnergyReport(
        target=p.spec.name, energy_table=e.source, samples=p.samples, steps=p.steps,
        energy_per_inference_j=total, dynamic_j=total - static_j, static_j=static_j,
        latency_per_step_s=step_s, latency_per_inference_s=inference_s,
        edp_js=total * inference_s, cores=p.mapping.n_cores, chips=p.mapping.chips,
        per_layer=per_layer, per_event=per_event, events=p.events, latency_parts_s=parts,
        busiest_core=busiest,
        ann={"ann_j": p.ann_j, "snn_ops_j": p.snn_ops_j,
             "ann_over_snn": p.ann_j / p.snn_ops_j if p.snn_ops_j else math.inf,
             "e_mac_j": E_MAC_J, "e_ac_j": E_AC_J},
        estimates=estimates, notes=p.notes)


def _gated_lif(graph: Graph, coproc: str) -> str:
    """The neuron layer whose input current the co-processor partition's gains multiply."""
    todo = list(graph.outputs(coproc))
    while todo:
        n = todo.pop(0)
        if graph.node(n).is_neuron:
            return n
        todo.extend(graph.outputs(n))
    raise UnsupportedError(f"{coproc}: feeds no LIF")


def _source(graph: Graph, mapping: Mapping, layer: str) -> str:
    """The spiking source (Input or neuron layer) of `layer`'s synapse node."""
    from snncompile.mapping.split import _source_of

    syn = mapping.layers[layer]["synapse"]
    if syn is None:
        return ""
    return _source_of(graph, graph.inputs(syn)[0])
