"""Partition a fixed-point graph between the neurocores and the co-processor.

Every node is assigned to `neuro` (synapses, LIFs, gates: the programmable neurons) or
`coproc` (FxCoproc partitions, their outputs and loop delays: the embedded x86 cores), as
its mapping rule (split.SPLIT) says. Each edge that crosses is a boundary channel carrying
one integer value per element per time step (its width: the BOUNDARY rule of the
co-processor end's node type):

* neuro -> coproc: the synapse's current, at the co-processor graph's declared input width;
* coproc -> neuro: an 8-bit unsigned gain per element of the gain tensor.

Bytes per step are bit-packed (ceil(values * bits / 8)) per sample. The latency a
partition adds to every time step is estimated from the target's [coproc] section (all
estimates for Loihi 2):

    compute  = (MACs * cycles_per_mac + (adds + compares + lookups) * cycles_per_op) / clock
    transfer = (bytes in + bytes out) / bytes_per_s
    latency  = message_latency_s + transfer + compute

Partitions are given to the x86 cores round-robin; they run in parallel within a step, so
the step gets longer by the busiest core's total.

A window partition (whole-window attention, FxCoproc `window` = T) receives one step of
its window and sends one row of each output (gains and the delayed current) per step, and
computes once per window: its compute time falls in the step the window completes, and
the per-step latency counts it as an average (compute / T), a lower bound like every
per-step average of the latency model. What it adds on top is a delay of T + latency steps
(`ir.timing.coproc_delay`) and a buffer of T x current size x bits (`buffer_bytes`).
"""
from __future__ import annotations

import math

from snncompile.ir import FxCoproc, FxCoprocOut, FxDelay, Graph
from snncompile.ir.registry import Rules
from snncompile.ir.timing import added_delay, coproc_delay
from snncompile.mapping.split import core_role
from snncompile.target import TargetSpec


def assign(graph: Graph) -> dict[str, str]:
    """Node name -> "coproc" for the nodes whose mapping rule (split.SPLIT) puts them on
    the co-processor (FxCoproc, FxCoprocOut, and FxDelay: a loop delay buffers on the x86
    core), "neuro" for every other node."""
    return {n: "coproc" if core_role(graph, n) == "coproc" else "neuro" for n in graph.order()}


BOUNDARY = Rules("co-processor boundary")
"""Co-processor node type -> `rule(graph, name, neuro)`: the ValueSpec (shape, bits,
signed) of the channel between co-processor node `name` and neurocore node `neuro`."""


@BOUNDARY.register(FxCoproc)
def _into_coproc(graph: Graph, name: str, neuro: str):
    """neuro -> coproc: the synapse's current, at the co-processor graph's input width."""
    node = graph.node(name)
    return node.port_spec(list(node.cgraph.inputs)[graph.inputs(name).index(neuro)])


@BOUNDARY.register(FxCoprocOut)
def _out_of_coproc(graph: Graph, name: str, neuro: str):
    """coproc -> neuro: the output port's value (a gain; in window mode also the delayed
    current), one step of it."""
    return graph.node(graph.inputs(name)[0]).port_spec(graph.node(name).port)


@BOUNDARY.register(FxDelay)
def _through_delay(graph: Graph, name: str, neuro: str):
    """coproc -> neuro through a loop delay: the value the delay holds (its input's)."""
    src = graph.inputs(name)[0]
    return BOUNDARY.rule(graph.node(src))(graph, src, neuro)


def partition(graph: Graph, spec: TargetSpec) -> dict:
    """The partition report (JSON-safe): assignment, boundary channels, per-partition ops
    and latency, and the latency added per time step."""
    where = assign(graph)
    channels = []
    for src, dst in graph.g.edges:
        if where[src] == where[dst]:
            continue
        coproc, neuro = (dst, src) if where[dst] == "coproc" else (src, dst)
        value = BOUNDARY.rule(graph.node(coproc))(graph, coproc, neuro)
        shape, bits, signed = value.shape, value.bits, value.signed
        values = int(math.prod(shape))
        channels.append({"src": src, "dst": dst,
                         "direction": f"{where[src]}->{where[dst]}",
                         "values_per_step": values, "bits": int(bits), "signed": bool(signed),
                         "bytes_per_step": (values * int(bits) + 7) // 8})
    cp = spec.raw.get("coproc", {})
    cores = max(1, int(getattr(getattr(spec, "chip", None), "x86_cores", 1) or 1))
    parts, busy = [], [0.0] * cores
    for i, node in enumerate(graph.nodes(FxCoproc)):
        q = _partition_costs(node, cp)
        core = i % cores
        busy[core] += q["latency_s"]
        parts.append({"node": node.name, "x86_core": core, **q})
    estimates = sorted(k for k, v in dict(cp.get("estimate", {})).items() if v)
    out = {"assignment": where, "channels": channels, "partitions": parts,
           "x86_cores": cores, "added_latency_per_step_s": max(busy) if parts else 0.0,
           "bytes_per_step": sum(ch["bytes_per_step"] for ch in channels),
           "estimates": estimates}
    delay = added_delay(graph)
    if delay:           # whole-window attention (absent: every partition streams)
        out["added_delay_steps"] = delay
    return out


def _partition_costs(node: FxCoproc, cp: dict) -> dict:
    """Ops, bytes and seconds of one partition (see the module docstring): per step, and
    for a window partition also per window."""
    cg = node.cgraph
    c, io = cg.op_counts(), node.step_io_bytes()
    compute = ((c.macs * cp.get("cycles_per_mac", 1)
                + (c.adds + c.compares + c.lut) * cp.get("cycles_per_op", 1))
               / cp.get("clock_hz", 1e9))
    per_step = compute / node.window if node.window else compute
    transfer = io.total / cp.get("bytes_per_s", 1e9)
    latency = cp.get("message_latency_s", 0.0) + transfer + per_step
    q = {"ops": [f"{op.name}: {type(op).__name__}" for op in cg.ops],
         "macs": c.macs, "adds": c.adds, "compares": c.compares,
         "lookups": c.lut, "state_bytes": cg.state_bytes(),
         "bytes_in": io.inp, "bytes_out": io.out,
         "compute_s": per_step, "transfer_s": transfer, "latency_s": latency}
    if node.window:
        shape = list(cg.inputs.values())[0].shape
        q.update(window=node.window, delay_steps=coproc_delay(node),
                 buffer_bytes=node.buffer_bytes(), window_compute_s=compute,
                 buffer=f"{node.window} steps x {math.prod(shape[1:]):,} values x "
                        f"{list(cg.inputs.values())[0].bits} bits")
    return q


def partition_markdown(p: dict) -> str:
    from snncompile.report.compile import table

    lines = ["Nodes on the co-processor: "
             + (", ".join(n for n, w in p["assignment"].items() if w == "coproc") or "none")
             + "; everything else runs on neurocores.", ""]
    lines.append(table(["channel", "direction", "values/step", "bits", "bytes/step"],
                       [[f"{c['src']} -> {c['dst']}", c["direction"], c["values_per_step"],
                         f"{c['bits']} {'signed' if c['signed'] else 'unsigned'}",
                         c["bytes_per_step"]] for c in p["channels"]], "llrlr"))
    lines.append("")
    lines.append(table(["partition", "x86 core", "ops", "MACs", "adds", "compares", "lookups",
                        "latency/step"],
                       [[q["node"], q["x86_core"], len(q["ops"]), q["macs"], q["adds"],
                         q["compares"], q["lookups"], f"{q['latency_s'] * 1e6:.3g} us"]
                        for q in p["partitions"]], "lrrrrrrr"))
    lines.append("")
    lines.append(f"{p['bytes_per_step']:,} bytes cross the boundary per step per sample; the "
                 f"co-processor adds about {p['added_latency_per_step_s'] * 1e6:.3g} us per "
                 f"time step ({p['x86_cores']} x86 cores; estimates: "
                 f"{', '.join(p['estimates']) or 'none'}).")
    lines += window_lines(p)
    for q in p["partitions"]:
        lines.append(f"- {q['node']}: " + "; ".join(q["ops"]))
    return "\n".join(lines)


def window_lines(p: dict) -> list[str]:
    """What whole-window attention costs, one paragraph per window partition: the buffer,
    and the added latency in steps and (when the compile priced a step) in microseconds."""
    out = []
    delay = p.get("window_delay", {})
    for q in p["partitions"]:
        if not q.get("window"):
            continue
        us = (f", about {q['delay_steps'] * delay['step_s'] * 1e6:.3g} us at "
              f"{delay['step_s'] * 1e6:.3g} us per step ({delay['source']})"
              if delay.get("step_s") else ", microseconds not estimated (no calibration run)")
        out += ["", f"Whole-window attention {q['node']}: the co-processor buffers the "
                f"current of all {q['window']} steps of a sample ({q['buffer']} = "
                f"{q['buffer_bytes']:,} bytes per sample; a stream of samples needs two such "
                f"buffers, one filling while the other is sent back), computes the gains "
                f"once the window is complete ({q['window_compute_s'] * 1e6:.3g} us of "
                f"compute in that step; latency/step above averages it over the window) and "
                f"sends them back with the buffered current: the neurons after it run "
                f"{q['delay_steps']} steps later than in causal mode{us}."]
    if any(q.get("window") for q in p["partitions"]):
        out.append(f"Added latency per inference: {p['added_delay_steps']} steps"
                   + (f", about {delay['seconds'] * 1e6:.3g} us" if delay.get("seconds")
                      else "") + ".")
    return out
