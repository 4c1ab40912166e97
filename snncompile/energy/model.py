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

Static energy = static_power_w x chips x latency per inference, shared among layers by the
cores they occupy (a core's share split by neurons).

Latency per step = busiest core + longest used route + barrier sync. A core's work is the
average per-step events of its blocks (layer events shared by neurons, synops by synapses)
times the per-event times; the barrier grows linearly with tiles in use (Davies 2018
Table 2: 1 to 32 tiles). Per-step averages hide the slowest step: a lower bound on latency.

ANN comparison, as the attention-SNN literature computes it (Horowitz ISSCC 2014, 45 nm,
32-bit float): ANN energy = dense ops x E_MAC for every synapse layer (one pass); SNN energy
= T x dense ops x E_MAC for the encoding layer (when the input is graded; `first_layer_mac`
overrides) + synops x E_AC for the others (synops = T x dense ops x input firing rate).
Dense ops count real connections (padding taps excluded).

    >>> rep = estimate_energy(graph, mapping, counts, load_target("loihi1"))  # doctest: +SKIP
    >>> rep.energy_per_inference_j, rep.latency_per_step_s                    # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputFileError, UnsupportedError
from ..ir.graph import Graph
from ..ir.nodes import NEURON_TYPES, FxConv2d, FxCoproc, FxDense, FxLIF
from snncompile.mapping.place import Mapping
from ..target import TargetSpec
from .report import EVENTS, EnergyReport

E_MAC_J = 4.6e-12  # 32-bit float multiply-accumulate, 45 nm (Horowitz, ISSCC 2014)
E_AC_J = 0.9e-12  # 32-bit float add, 45 nm (Horowitz, ISSCC 2014)


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


def estimate_energy(graph: Graph, mapping: Mapping, counts: dict, spec: TargetSpec,
                    samples: int | None = None, steps: int | None = None,
                    first_layer_mac: bool | None = None) -> EnergyReport:
    """Energy, latency and EDP per inference of `graph` placed as `mapping` on `spec`.

    `counts`: event counts summed over all samples and steps (see the module docstring).
    """
    e = spec.energy
    if e is None:
        raise UnsupportedError(f"target '{spec.name}' has no [energy] section; pass an "
                               "energy table (load_target(name, energy=...))")
    samples = int(samples if samples is not None else counts.get("samples", 0))
    steps = int(steps if steps is not None else counts.get("steps", 0))
    if samples < 1 or steps < 1:
        raise InputFileError(f"counts: samples ({samples}) and steps ({steps}) must be >= 1")
    inp = graph.input_node().name
    notes: list[str] = []
    per_layer: dict[str, dict[str, float]] = {}
    events: dict[str, dict[str, float]] = {}
    block_rate: dict[str, dict[str, float]] = {}  # per-layer per-step events, for latency
    ann_j = snn_ops_j = 0.0

    # graded senders: layers whose messages carry a payload (bits) to a graded synapse
    payload_bits: dict[str, int] = {}
    for n in graph.order():
        bits = int(getattr(graph.node(n), "num_message_bits", 0) or 0)
        if bits and getattr(graph.node(n), "is_synapse", False):
            from snncompile.mapping.split import _source_of
            src = _source_of(graph, graph.inputs(n)[0])
            payload_bits[src] = max(payload_bits.get(src, 0), bits)

    def traffic(layer: str, spikes: float) -> tuple[dict, dict]:
        tr = mapping.layer_traffic.get(layer)
        n = mapping.layers[layer]["neurons"]
        if not tr or not n:
            return ({"messages": 0.0, "hops_ew": 0.0, "hops_ns": 0.0, "chip_hops": 0.0},
                    {"messages": 0.0, "hops": 0.0, "chip_hops": 0.0})
        ev = {k: spikes * tr[k] / n for k in ("messages", "hops_ew", "hops_ns", "chip_hops")}
        bits = payload_bits.get(layer, 0)
        en = {"messages": ev["messages"] * (e.message_j + bits * e.message_payload_bit_j),
              "hops": ev["hops_ew"] * e.hop_ew_j + ev["hops_ns"] * e.hop_ns_j,
              "chip_hops": ev["chip_hops"] * e.chip_hop_j}
        return ev, en

    # ---- the graph input: its messages into the first layers
    lifs = [n for n in graph.order() if isinstance(graph.node(n), NEURON_TYPES)]
    if payload_bits:
        notes.append("graded-spike synaptic operations are priced as binary ones (no "
                     "published per-operation energy for graded messages): an underestimate")
        if e.message_payload_bit_j:
            notes.append("graded messages priced by payload width (message_payload_bit_j "
                         "per bit)")
    missing = [n for n in lifs + [inp] if n not in mapping.layers]
    if missing:
        raise UnsupportedError(f"mapping has no layer {', '.join(missing)}; map this graph "
                               "with map_graph first")
    spikes_in = _count(counts, inp, "spikes", required=False) / samples
    if math.isnan(spikes_in):
        spikes_in = 0.0
        first = [l for l in lifs if _source(graph, mapping, l) == inp]
        if first:
            syn = mapping.layers[first[0]]["synapse"]
            n_syn = mapping.layers[first[0]]["synapses"]
            if n_syn:
                spikes_in = (_count(counts, syn, "synops") / samples
                             * mapping.layers[inp]["neurons"] / n_syn)
            notes.append("input spikes derived from the first layer's synops assuming "
                         "uniform fan-out")
    ev, en = traffic(inp, spikes_in)
    per_layer[inp] = dict.fromkeys(EVENTS, 0.0) | en
    events[inp] = {"spikes": spikes_in, **ev}

    # ---- neuron layers
    for layer in lifs:
        info = mapping.layers[layer]
        syn = info["synapse"]
        synops = _count(counts, syn, "synops") / samples if syn else 0.0
        updates = _count(counts, layer, "neuron_updates") / samples
        spikes = _count(counts, layer, "spikes") / samples
        active = _count(counts, layer, "active_updates", required=False) / samples
        if math.isnan(active):
            active = updates * (1.0 - math.exp(-synops / updates)) if updates else 0.0
            note = ("active neuron updates estimated as updates x (1 - exp(-synops / "
                    "updates)) (events on random neuron-steps)")
            if note not in notes:
                notes.append(note)
        active = min(active, updates)
        inactive = updates - active
        node = graph.node(syn) if syn else None
        if isinstance(node, FxConv2d):
            e_syn = e.synop_conv_j
        elif isinstance(node, FxDense) and _has_zeros(node) and e.synop_sparse_j is not None:
            e_syn = e.synop_sparse_j
        else:
            e_syn = e.synop_j
        ev, en = traffic(layer, spikes)
        per_layer[layer] = dict.fromkeys(EVENTS, 0.0) | {
            "synops": synops * e_syn,
            "neuron_active": active * e.neuron_update_active_j,
            "neuron_inactive": inactive * e.neuron_update_inactive_j,
            "spikes_out": spikes * e.spike_out_j,
        } | en
        events[layer] = {"synops": synops, "neuron_updates": updates, "active_updates": active,
                         "inactive_updates": inactive, "spikes": spikes, **ev}
        block_rate[layer] = {k: v / steps for k, v in events[layer].items()}
        # literature-style ANN / SNN operation energy
        dense_ops = float(info["synapses"])
        ann_j += dense_ops * E_MAC_J
        src = _source(graph, mapping, layer)
        encoding = src == inp
        mac_first = (graph.input_node().encoding == "graded" if first_layer_mac is None
                     else first_layer_mac)
        snn_ops_j += (steps * dense_ops * E_MAC_J if encoding and mac_first
                      else synops * E_AC_J)

    # ---- co-processor partitions (attention): ops and boundary bytes, charged to the LIF
    # whose current they gate; their per-step latency from the partition report
    coproc_s = 0.0
    coprocs = [n for n in graph.order() if isinstance(graph.node(n), FxCoproc)]
    if coprocs:
        from snncompile.mapping.coproc_assign import partition
        cp = spec.raw.get("coproc", {})
        for name in coprocs:
            ops = sum(_count(counts, name, k) for k in
                      ("coproc_macs", "coproc_adds", "coproc_compares", "coproc_lookups"))
            nbytes = sum(_count(counts, name, k) for k in
                         ("bytes_to_coproc", "bytes_from_coproc"))
            j = (ops * cp.get("energy_per_op_j", 0.0)
                 + nbytes * cp.get("energy_per_byte_j", 0.0)) / samples
            lif = _gated_lif(graph, name)
            per_layer[lif]["coproc"] += j
            events[lif].update({"coproc_ops": ops / samples, "coproc_bytes": nbytes / samples})
        coproc_s = partition(graph, spec)["added_latency_per_step_s"]
        notes.append("co-processor energy and latency from the target's [coproc] estimates")

    # ---- latency: busiest core, longest route, barrier
    core_t = np.zeros(mapping.n_cores)
    for c in mapping.cores:
        t = 0.0
        for b in c.blocks:
            blk = mapping.blocks[b]
            # attention relay neurons (mapping): the gated layer's synaptic events again
            r = block_rate[mapping.layers[blk.layer].get("relay_of") or blk.layer]
            info = mapping.layers[blk.layer]
            fn = blk.n_neurons / info["neurons"]
            fs = blk.synapses / info["synapses"] if info["synapses"] else 0.0
            t += (r["synops"] * fs * e.synop_s
                  + r["active_updates"] * fn * e.neuron_update_active_s
                  + r["inactive_updates"] * fn * e.neuron_update_inactive_s
                  + r["spikes"] * fn * e.spike_out_s
                  + r["messages"] * fn * (e.message_s + payload_bits.get(blk.layer, 0)
                                          * e.message_payload_bit_s))
        core_t[c.index] = t
    busiest = int(np.argmax(core_t)) if len(core_t) else 0
    route_s = float(mapping.max_route.get("seconds", 0.0)) if mapping.max_route else 0.0
    tiles = mapping.tiles_used
    barrier = e.barrier_s(tiles)
    if mapping.chips > 1:
        notes.append("barrier sync across chips modelled as the single-chip maximum")
        barrier = e.barrier_max_s
    parts = {"busiest_core_s": float(core_t[busiest]) if len(core_t) else 0.0,
             "route_s": route_s, "barrier_s": barrier, "coproc_s": coproc_s,
             "system_s": e.system_step_s}
    # per-step system cost (host / x86 I/O and management), charged to the input row
    per_layer[inp]["system"] = e.system_step_j * steps
    if e.system_step_j or e.system_step_s:
        notes.append(f"per-step system cost {e.system_step_j * 1e6:.3g} uJ and "
                     f"{e.system_step_s * 1e6:.3g} us per step (host / x86 I/O) included")
    step_s = sum(parts.values())
    inference_s = step_s * steps

    # ---- static energy, shared by the cores each layer occupies
    static = e.static_power_w * mapping.chips * inference_s
    share = {l: 0.0 for l in per_layer}
    for c in mapping.cores:
        n_c = sum(mapping.blocks[b].n_neurons for b in c.blocks)
        for b in c.blocks:
            blk = mapping.blocks[b]
            owner = mapping.layers[blk.layer].get("relay_of") or blk.layer  # relays
            share[owner] += (blk.n_neurons / n_c if n_c else 1 / len(c.blocks)) \
                / mapping.n_cores
    for l in per_layer:
        per_layer[l]["static"] = static * share[l]
    if not mapping.cores:  # nothing placed: the whole static energy on the input row
        per_layer[inp]["static"] = static

    per_event = {ev_: sum(d[ev_] for d in per_layer.values()) for ev_ in EVENTS}
    total = sum(sum(d.values()) for d in per_layer.values())
    static_j = per_event["static"]
    estimates = sorted(e.estimates)
    if coprocs:
        estimates = sorted(set(estimates) | {f"coproc.{k}" for k, v in dict(
            spec.raw.get("coproc", {}).get("estimate", {})).items() if v})
    return EnergyReport(
        target=spec.name, energy_table=e.source, samples=samples, steps=steps,
        energy_per_inference_j=total, dynamic_j=total - static_j, static_j=static_j,
        latency_per_step_s=step_s, latency_per_inference_s=inference_s,
        edp_js=total * inference_s, cores=mapping.n_cores, chips=mapping.chips,
        per_layer=per_layer, per_event=per_event, events=events, latency_parts_s=parts,
        busiest_core=busiest,
        ann={"ann_j": ann_j, "snn_ops_j": snn_ops_j,
             "ann_over_snn": ann_j / snn_ops_j if snn_ops_j else math.inf,
             "e_mac_j": E_MAC_J, "e_ac_j": E_AC_J},
        estimates=estimates, notes=notes)


def _gated_lif(graph: Graph, coproc: str) -> str:
    """The FxLIF whose input current the co-processor partition's gains multiply."""
    todo = list(graph.outputs(coproc))
    while todo:
        n = todo.pop(0)
        if isinstance(graph.node(n), FxLIF):
            return n
        todo.extend(graph.outputs(n))
    raise UnsupportedError(f"{coproc}: feeds no LIF")


def _source(graph: Graph, mapping: Mapping, layer: str) -> str:
    """The spiking source (Input or FxLIF) of `layer`'s synapse node."""
    from snncompile.mapping.split import _source_of

    syn = mapping.layers[layer]["synapse"]
    if syn is None:
        return ""
    return _source_of(graph, graph.inputs(syn)[0])
