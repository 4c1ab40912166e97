"""Time: the one place that says when each node of a compiled graph computes what.

Every backend (simulator, integer reference, Lava, netx in Lava), verify's first-divergence
search and the mapper's latency ask this module instead of computing depths and offsets
themselves.

Definitions (the chip's, and Lava's):

* **depth** of a node: the number of synapse nodes (`is_synapse`: FxDense, FxConv2d) on the
  longest path from the input to it. A synapse delivers its result one step after it
  receives its input, so a node at depth d sees input frame t at **global** step t + d.
* **local** step t of a node at depth d is global step t + d: in local time every node
  computes the delay-free recurrence the float model was trained with. All backends
  return values in local time, shape (N, T, *shape).
* **one sample** takes T local steps; its last node finishes at global step
  T - 1 + max depth, so a sample on its own runs `global_steps = T + max depth` steps.
* **per-sample reset**: a node that resets (FxLIF) zeroes its state right before it
  integrates its first input of a sample, i.e. at its local step 0. Nodes with
  `runs_in_global_time` (sigma-delta) never reset; they run from global step 0 and only
  their outputs are read in local time (window [depth, depth + T)).
* **a stream of samples** (Lava runs N samples back to back): sample n's frame t enters at
  stream step n*T + t; the stream lasts N*T + max depth steps. Lava numbers steps from 1,
  so a node at depth d computes local step t of sample n at Lava time step
  n*T + t + d + 1, and resets when time_step % T == (d + 1) % T.
* **unequal path depths** (residual blocks: a shortcut and a deeper body summed into one
  neuron): the float model and the training layers compute the delay-free sum, so every
  input of a node must arrive at the same global step. `balance` makes them: it gives each
  early synapse (`can_align`: FxDense, Lava DelayDense) an `align` of the missing steps,
  which the chip adds to its synaptic delay and which local time never sees. A graph
  whose inputs still disagree has no Timing (`timing` refuses it in one line).
* a synapse's **bias axon** (`FxDense.bias_mant`, `FxConv2d.bias_mant`) is always on: the
  reference adds it at every local step, the simulator at every global step, Lava sends
  it from a RingBuffer of ones from Lava step `LAVA_FIRST_STEP`, so it arrives from global
  step 1 (depth 1, the shallowest neuron's local step 0) and never stops. Only neurons
  zeroed at their local step 0 (`takes_synapse_bias`: FxLIF, FxLI) take one, so what
  arrives before their window, or between a stream's samples, is cleared: in local time
  the bias is there at every step t in [0, T), on every backend. In front of an attention
  layer the same holds for its parts (FxGate: stateless, into such a LIF; FxCoproc: reset
  or buffered from its own window's start), which see current + bias.
* a loop delay (FxDelay, the top-down attention loop) reads, at its target's local step t,
  what its source produced at local step t - latency (`init` before that).
* a **window partition** (FxCoproc with `window` = T > 0: whole-window attention, as
  released) whose input is at depth d receives local steps 0 .. T-1 of it at global
  steps d .. d + T - 1 (from `buffers_from`), buffers them, and computes once the window
  is complete (global step d + T - 1, `window_done`). It sends what belongs to local
  step t (a gain, and the buffered current it gates) at global step d + T + latency + t:
  its `output_delay` is `coproc_delay` = T + latency steps, and its own depth, like a
  synapse's, is where its outputs are (d + T + latency). Every node after it has a depth
  larger by that much than in causal mode (`added_delay` sums it over the graph). In
  local time nothing changes: the gate at local step t multiplies current t by the gain
  of the whole window. In a stream of samples (Lava), the partition buffers sample n + 1
  while it sends sample n back.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from ..errors import GraphError

LAVA_FIRST_STEP = 1
"""Lava's first time step is 1: a RingBuffer sends frame t at time step t + 1."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """When every node of one graph computes, for windows of `steps` local steps."""

    steps: int                       # T: local steps per sample
    depth: Mapping[str, int]         # node name -> depth
    delays: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #                                  window partition -> its coproc_delay (T + latency)

    @property
    def max_depth(self) -> int:
        return max(self.depth.values(), default=0)

    @property
    def global_steps(self) -> int:
        """Steps one sample needs on its own: T + max depth."""
        return self.steps + self.max_depth

    def stream_steps(self, samples: int) -> int:
        """Steps `samples` samples need back to back: N*T + max depth."""
        return samples * self.steps + self.max_depth

    def local(self, name: str, global_step: int) -> int:
        """The local step node `name` computes at `global_step` (may be outside [0, T))."""
        return global_step - self.depth[name]

    def to_global(self, name: str, local_step: int) -> int:
        return local_step + self.depth[name]

    def active(self, name: str, global_step: int) -> bool:
        """True when `global_step` falls in node `name`'s local window [0, T)."""
        return 0 <= global_step - self.depth[name] < self.steps

    def window(self, name: str) -> slice:
        """The global steps [depth, depth + T) that hold node `name`'s local window."""
        d = self.depth[name]
        return slice(d, d + self.steps)

    def lava_start(self, name: str) -> int:
        """Lava time step at which node `name` computes local step 0 of sample 0."""
        return self.depth[name] + LAVA_FIRST_STEP

    def buffers_from(self, name: str) -> int:
        """Global step at which window partition `name` receives local step 0 of its
        window: its depth (where its outputs are) minus its delay."""
        return self.depth[name] - self.delays[name]

    def buffering(self, name: str, global_step: int) -> bool:
        """True while window partition `name` receives its window (local steps 0..T-1)."""
        return 0 <= global_step - self.buffers_from(name) < self.steps

    def window_done(self, name: str) -> int:
        """Global step at which window partition `name` holds its whole window (its input's
        local step T - 1): when it computes."""
        return self.buffers_from(name) + self.steps - 1

    def lava_buffer_start(self, name: str) -> int:
        """Lava time step at which window partition `name` receives local step 0 of
        sample 0's window."""
        return self.buffers_from(name) + LAVA_FIRST_STEP

    def lava_reset_offset(self, name: str) -> int:
        """`reset_offset` of a Lava LIFReset at node `name` (reset_interval = T)."""
        return (self.depth[name] + LAVA_FIRST_STEP) % self.steps


def coproc_delay(node) -> int:
    """Global steps between a co-processor partition's input and its output: 0 for a
    streaming one (it answers in the same step), T + latency for a window partition
    (FxCoproc `window` = T): it waits for the whole window, then `latency` more steps."""
    return int(node.window) + int(node.latency) if node.window else 0


def added_delay(graph) -> int:
    """Steps the window partitions add to the path from the input to the output (0 without
    any): the output's depth minus what it would be if every partition streamed. The
    path-balancing delays (`balance`: aligns, relay stages) are left out of that causal
    depth, because they exist only to match a deeper path: a window partition inside a
    residual block's body makes `balance` delay the shortcut by the same T steps, and the
    network's latency grows by T, not by nothing."""
    out = graph.output_node().name
    order = graph.order()
    relays = {graph.inputs(r)[0] for r in delay_neurons(graph) if r in graph}
    base: dict[str, int] = {}
    for n in order:
        ins = [i for i in graph.inputs(n) if not graph.node(i).closes_loop]
        base[n] = max((base[i] + _streaming_delay(graph.node(i), relays) for i in ins),
                      default=0)
    return graph.depth(out) - (base[out] + _streaming_delay(graph.node(out), relays))


def _streaming_delay(node, relays=frozenset()) -> int:
    """A node's output delay if every partition streamed and no path were balanced."""
    if node.name in relays:      # a relay stage's identity synapse (`_relay`)
        return 0
    return (node.output_delay() - int(getattr(node, "align", 0) or 0)
            - (coproc_delay(node) if getattr(node, "window", 0) and node.on_coproc else 0))


def window_row(value: np.ndarray, local_step: int) -> np.ndarray:
    """Row `local_step` of a window partition's output (N, T or 1, *shape): the value it
    sends for that local step (a leading axis of 1: the same at every step)."""
    return value[:, 0] if value.shape[1] == 1 else value[:, local_step]


def timing(graph, steps: int) -> Timing:
    """The Timing of `graph` for windows of `steps` local steps (depths from the graph's
    cached order; see `Graph.depth`). Refuses a graph whose paths are not balanced."""
    late = graph.misaligned()
    if late:
        src, dst, k = late[0]
        raise GraphError(f"{dst}: input '{src}' arrives {k} step(s) before the node's other "
                         "inputs (unequal path depths); balance the graph first "
                         "(snncompile.ir.timing.balance)")
    delays = {}
    for name in graph.order():
        window = getattr(graph.node(name), "window", 0) if graph.node(name).on_coproc else 0
        if window and window != int(steps):
            raise GraphError(f"{name}: the whole-window attention partition was compiled for "
                             f"windows of {window} steps; the inputs have {int(steps)} steps "
                             "per sample")
        if window:
            delays[name] = coproc_delay(graph.node(name))
    return Timing(int(steps), {name: graph.depth(name) for name in graph.order()}, delays)


def balance(graph) -> list[dict]:
    """Delay every early input of the graph (in place) so that all inputs of each node
    arrive at the same global step; return one entry per inserted delay for the report:
    {"synapse", "into", "steps", "synapses", "cost"}.

    Each early input must be a synapse feeding only that node. A dense synapse
    (`can_align`) takes the steps as synaptic delay (`delay + align` within the target's
    delay bits); any other synapse (a conv shortcut: Lava's Conv has no delays) gets delay
    neurons in front of it (`_relay`), which needs binary spikes at its input. Otherwise
    one GraphError names the synapse, what it needs and the limit."""
    inserted = []
    for _ in range(len(graph)):          # each round fixes the earliest late node
        late = graph.misaligned()
        if not late:
            return inserted
        dst = late[0][1]
        for src, node_name, k in late:
            if node_name == dst:
                inserted.append(_align(graph, src, dst, k))
        graph.g._changed()               # depths depend on the aligns just set
    raise GraphError("balance: path depths did not converge")  # unreachable for a DAG


def _align(graph, src: str, dst: str, steps: int) -> dict:
    """Give synapse `src` `steps` more steps of path alignment (see `balance`)."""
    node = graph.node(src)
    what = type(node).__name__
    if not node.is_synapse:
        raise GraphError(f"{dst}: input '{src}' ({what}) arrives {steps} step(s) early and "
                         "is not a synapse that could be delayed")
    if graph.outputs(src) != [dst]:
        raise GraphError(f"{src}: a synapse delayed to meet '{dst}' must feed only it "
                         f"(it feeds {', '.join(graph.outputs(src))})")
    if not node.can_align:
        return _relay(graph, src, dst, steps)
    base = 0 if node.delay is None else int(node.delay.max(initial=0))
    if base + node.align + steps > node.MAX_DELAY:
        raise GraphError(f"{src}: needs {base + node.align + steps} steps of synaptic delay "
                         f"to meet '{dst}'; the limit is {node.MAX_DELAY}")
    node.align += steps
    out = int(node.weight.shape[0])
    return {"synapse": src, "into": dst, "steps": int(node.align),
            "synapses": int(node.weight.size),
            "cost": f"no extra neurons, synapses or cores; the synapse's {out} output "
                    f"accumulators keep {node.align + base + 1} step slot(s) "
                    "(Lava DelayDense ring buffer)"}


RELAY = {"du": 4095, "dv": 4095, "vth": 0}
"""A delay neuron (FxLIF): u = a << 6 (no current memory), v = u + trunc(v / 4096), spike
when v > 0 and reset, so that with a weight-1 identity synapse in front it repeats its
binary input spikes one step later, exactly (v is 0 whenever it did not spike)."""


def _relay(graph, src: str, dst: str, steps: int) -> dict:
    """Delay synapse `src`'s input spikes by `steps` steps with `steps` stages of delay
    neurons (a weight-1 identity synapse and an FxLIF relay each) between its input and it."""
    from .nodes import FxConv1d, FxConv2d, FxDense, FxLIF
    feed = graph.inputs(src)
    shape = graph.shape(feed[0])
    if len(feed) != 1 or graph.kind(feed[0]) != "spikes":
        raise GraphError(f"{src}: {type(graph.node(src)).__name__} has no synaptic delays and "
                         f"its input is not binary spikes, so delay neurons cannot hold the "
                         f"{steps} step(s) it needs to meet '{dst}'")
    prev = feed[0]
    conv = FxConv1d if len(shape) == 2 else FxConv2d      # (C, L) or (C, H, W)
    for k in range(steps):
        ident = (FxDense(f"{src}.relay{k}.syn", weight=np.eye(shape[0], dtype=np.int32),
                         sign_mode="excitatory") if len(shape) == 1 else
                 conv(f"{src}.relay{k}.syn", groups=shape[0],
                      weight=np.ones((shape[0], 1, 1, 1), np.int32)))
        graph.add(ident, [prev])
        graph.add(FxLIF(f"{src}.relay{k}", shape=shape, **RELAY), [ident.name])
        prev = f"{src}.relay{k}"
    graph.g.remove_edge(feed[0], src)
    graph.g.add_edge(prev, src, shape=graph.shape(prev), kind=graph.kind(prev))
    n = int(np.prod(shape))
    return {"synapse": src, "into": dst, "steps": int(steps), "synapses": n * steps,
            "delay_neurons": [f"{src}.relay{k}" for k in range(steps)],
            "cost": f"{n * steps} delay neurons and {n * steps} identity synapses "
                    f"({steps} relay stage(s) of {n}) in front of it"}


def delay_neurons(graph) -> set[str]:
    """The relay neurons `balance` inserted (recorded in the graph's meta): copies of
    their input spikes, part of no trained layer (fidelity does not judge them)."""
    return {n for d in graph.meta.get("path_delays", []) for n in d.get("delay_neurons", [])}


def loop_source_step(delay, local_step: int) -> int:
    """The local step of its source whose value loop delay `delay` (FxDelay) passes on at
    its target's local step `local_step`: local_step - latency (negative: `delay.init`)."""
    return local_step - delay.latency
