"""HTDA's top-down loop (snncompile.nn.htda) in the graph: put into the float graph, set
aside before quantisation, lowered onto the chip after it.

In the float graph the loop is three nodes (snncompile.ir: TopDown, Delay, Gate):

    source LIF --spikes--> TopDown --map--> Delay(latency L) --back edge--> Gate --> target LIF
                                                          conv (target's synapse) --^

`insert_loop` adds them to the feed-forward SNN's graph (the frontend does, so an HTDA
checkpoint has one float graph); `set_aside_loop` takes them out again (the compiler
quantises the feed-forward SNN as usual, calibrated without the loop, as before the loop
was in the float graph) and `lower_htda` adds the chip's loop to the quantised graph.

The feed-forward SNN is quantised as usual. The ANN branch becomes a co-processor
partition that reads the source layer's spikes, and its map gates the encoding layer's
current through a loop delay:

    source FxLIF --spikes--> FxCoproc: count = Accumulate(s); z = conv2(relu(conv1(count)))
                                       m = [z >= 0]   (the binary map, a 0/1 table)
          --> FxCoprocOut --> FxDelay(steps D) --> FxGate(shift 0, upsample) --> target FxLIF

Integer arithmetic: counts are exact integers; conv weights are int8 (w = round(W * 2**k)),
biases int32 at the accumulator's scale, shifts to 16 bits chosen from calibration counts.
conv1's shift rounds to nearest (ties to even, as the attention lowering's: a floor shift
would bias the hidden layer by -1/2 LSB); conv2's shift floors on purpose: the binary map
only needs the sign of z, which a floor shift preserves exactly (floor(z / 2**s) >= 0 iff
z >= 0), where rounding would turn z in [-2**(s-1), 0) into 0, i.e. "on". The gate's
shift is 0, so its product is exact under either rounding.

Timing: the trained latency L (local steps) must equal the chip's loop latency
D + depth(source) - depth(target) with a delay of D >= 1 step (the co-processor answers in
the same step; the loop needs one delay to be causal). So L >= depth(source) -
depth(target) + 1; a checkpoint trained with a smaller L is refused with the L to use.
Supported: read "count", mask "binary", init "ones".
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..coproc import CoprocGraph, ValueSpec
from ..coproc.ops import Accumulate, Conv2d, Relu, SigmoidLUT
from ..errors import QuantizationError, UnsupportedError
from ..ir import (FxCoproc, FxCoprocOut, FxDelay, FxGate, FxLIF, Delay, Gate, Graph, TopDown)
from .attention import ROUNDING, _int8, _shift_for, check_coproc_target

HIDDEN_BITS = 16
COUNT_BITS = 16


@dataclasses.dataclass
class TopDownLoop:
    """HTDA's loop as float nodes, with the LIFs it joins: `top_down` reads `source`'s
    spikes, `delay` carries its map `latency` steps, `gate` multiplies `target`'s current
    (the output of its synapse) by it."""

    top_down: TopDown
    delay: Delay
    gate: Gate
    source: str
    target: str

    @property
    def names(self) -> tuple[str, str, str]:
        return self.top_down.name, self.delay.name, self.gate.name


def insert_loop(graph: Graph, loop: TopDownLoop) -> Graph:
    """`graph` (a feed-forward float graph) with `loop` added: the gate between the
    target's synapse and the target, the top-down branch after the source."""
    syn = graph.inputs(loop.target)
    if len(syn) != 1:
        raise UnsupportedError(f"{loop.target}: the top-down gate needs a target with one "
                               f"input (its synapse), not {len(syn)}")
    new = Graph(graph.meta)
    for name in graph.order():
        ins = graph.inputs(name)
        if name == loop.target:
            new.add_delay(loop.delay, loop.top_down.out_shape([graph.shape(loop.source)]))
            new.add(loop.gate, [syn[0], loop.delay.name])
            ins = [loop.gate.name]
        new.add(graph.node(name), ins)
        if name == loop.source:
            new.add(loop.top_down, [loop.source])
            new.connect(loop.top_down.name, loop.delay.name)
    new.validate()
    return new


def set_aside_loop(graph: Graph) -> tuple[Graph, TopDownLoop | None]:
    """(the graph without its top-down loop, the loop) or (graph, None) when it has none;
    the target's synapse feeds the target directly again."""
    tops = graph.nodes(TopDown)
    if not tops:
        return graph, None
    top = tops[0]
    where = top.name
    delay, gate = _only(graph, top.name, Delay), None
    if delay is not None:
        gate = _only(graph, delay.name, Gate)
    target = _only(graph, gate.name, None) if gate is not None else None
    ins = graph.inputs(gate.name) if gate is not None else []
    if len(tops) > 1 or target is None or len(ins) != 2 or ins[1] != delay.name:
        raise UnsupportedError(f"{where}: a top-down branch must be one TopDown -> Delay -> "
                               "Gate(current, map) -> LIF chain (one per graph)")
    loop = TopDownLoop(top, delay, gate, graph.inputs(top.name)[0], target.name)
    skip = set(loop.names)
    new = Graph(graph.meta)
    for name in graph.order():
        if name not in skip:
            new.add(graph.node(name), [ins[0] if i == gate.name else i
                                       for i in graph.inputs(name)])
    new.validate()
    return new, loop


def _only(graph: Graph, name: str, cls):
    """The one consumer of `name` if there is exactly one (and it is a `cls`), else None."""
    outs = graph.outputs(name)
    if len(outs) != 1 or (cls is not None and not isinstance(graph.node(outs[0]), cls)):
        return None
    return graph.node(outs[0])


def lower_htda(loop: TopDownLoop, fixed: Graph, spec,
               source_spikes: np.ndarray | None) -> Graph:
    """Return `fixed` (the quantised feed-forward SNN) with HTDA's loop added.
    `source_spikes`: the float graph's spikes of the loop's source on the calibration
    samples ((N, T, C, H, W); None without calibration data)."""
    top, where = loop.top_down, "htda"
    settings = {"read": top.read, "mask": top.mask,
                "init": "ones" if loop.delay.init is None else "learned"}
    for key, want in (("read", "count"), ("mask", "binary"), ("init", "ones")):
        if settings[key] != want:
            raise UnsupportedError(
                f"{where}: {key} '{settings[key]}' cannot be compiled yet; the chip runs "
                f"HTDA with read 'count', mask 'binary', init 'ones' (retrain with those)")
    check_coproc_target(where, spec)
    gated = fixed.node(fixed.inputs(loop.target)[0])
    if getattr(gated, "bias_mant", None) is not None:
        raise UnsupportedError(f"{where}: the gated synapse {gated.name} has a bias; a "
                               "bias under an HTDA map is not compiled yet (its gate before "
                               "the loop's latency is untested; retrain it without bias)")
    if source_spikes is None or not len(source_spikes):
        raise QuantizationError(f"{where}: HTDA needs calibration data (--calib) to choose "
                                "the co-processor's scales")
    target, source, latency = loop.target, loop.source, loop.delay.latency
    d_t, d_s = fixed.depth(target), fixed.depth(source)
    steps = latency - (d_s - d_t)
    if steps < 1:
        raise QuantizationError(
            f"{where}: trained top-down latency {latency} step(s) is shorter than the "
            f"chip's loop: {source} (depth {d_s}) reaches {target} (depth {d_t}) after at "
            f"least {d_s - d_t + 1} steps; retrain with latency >= {d_s - d_t + 1}")
    counts = np.asarray(source_spikes).cumsum(1, dtype=np.int64)     # (N, T, C, H, W)
    s_shape = tuple(fixed.shape(source))
    doc, arrays, m_shape = _coproc_doc(top, counts.reshape((-1,) + s_shape), s_shape, where)
    return _with_loop(fixed, loop, doc, arrays, m_shape, steps, where)


def _coproc_doc(top: TopDown, flat: np.ndarray, s_shape: tuple, where: str):
    """The co-processor partition (doc, arrays, map shape): the ANN in integers, its
    shifts chosen from the calibration counts `flat` (M, C, H, W)."""
    w1q, k1 = _int8(top.w1.astype(np.float64), f"{where} conv1")
    w2q, k2 = _int8(top.w2.astype(np.float64), f"{where} conv2")
    pad = w1q.shape[-1] // 2
    b1 = np.round(top.b1.astype(np.float64) * 2.0 ** k1)
    probe = CoprocGraph({"c": ValueSpec(s_shape, COUNT_BITS)},
                        [Conv2d("p1", ("c",), weight=w1q, bias=b1.astype(np.int64),
                                padding=(pad, pad), shift=0, out_bits=32)], ["p1"])
    peak1 = float(np.abs(probe.run({"c": flat[:, None]})["p1"]).max(initial=0))
    s1 = _shift_for(peak1, HIDDEN_BITS)
    b2 = np.round(top.b2.astype(np.float64) * 2.0 ** (k1 - s1 + k2))
    for b, name in ((b1, "conv1"), (b2, "conv2")):
        if np.abs(b).max(initial=0) >= 2 ** 31:
            raise QuantizationError(f"{where}: {name} bias does not fit 32 bits")
    h = CoprocGraph({"c": ValueSpec(s_shape, COUNT_BITS)},
                    [Conv2d("p1", ("c",), weight=w1q, bias=b1.astype(np.int64),
                            padding=(pad, pad), shift=s1, out_bits=HIDDEN_BITS,
                            rounding=ROUNDING),
                     Relu("r1", ("p1",)),
                     Conv2d("p2", ("r1",), weight=w2q, bias=b2.astype(np.int64),
                            padding=(pad, pad), shift=0, out_bits=32)], ["p2"])
    peak2 = float(np.abs(h.run({"c": flat[:, None]})["p2"]).max(initial=0))
    s2 = _shift_for(peak2, HIDDEN_BITS)
    table = np.zeros(256, np.uint8)
    table[128:] = 1                                     # index v >= 0  <=>  z >= 0
    ops = [Accumulate("count", ("s",), out_bits=COUNT_BITS),
           Conv2d("td_conv1", ("count",), weight=w1q, bias=b1.astype(np.int64),
                  padding=(pad, pad), shift=s1, out_bits=HIDDEN_BITS, rounding=ROUNDING),
           Relu("td_relu", ("td_conv1",)),
           Conv2d("td_conv2", ("td_relu",), weight=w2q, bias=b2.astype(np.int64),
                  padding=(pad, pad), shift=s2, out_bits=HIDDEN_BITS),
           SigmoidLUT("map", ("td_conv2",), in_scale_shift=0, table=table)]
    cg = CoprocGraph({"s": ValueSpec(s_shape, 1, signed=False)}, ops, ["map"])  # spikes
    doc, arrays = cg.to_dict()
    return doc, arrays, cg.specs["map"].shape


def _with_loop(fixed: Graph, loop: TopDownLoop, doc, arrays, m_shape, steps: int,
               where: str) -> Graph:
    """Rebuild `fixed` with the chip's loop: syn -> gate(syn, delay) -> target, and
    source -> coproc -> map -> delay."""
    target, source, latency = loop.target, loop.source, loop.delay.latency
    d_t = fixed.depth(target)
    syn = fixed.inputs(target)[0]
    new = Graph(dict(fixed.meta, htda={"source": source, "target": target,
                                       "latency": latency, "delay_steps": steps}))
    delay = FxDelay(f"{where}.delay", steps=steps, latency=latency, target_depth=d_t,
                    init=1)
    gate = FxGate(f"{where}.gate", shift=0, gain_bits=1, relu=False,
                  upsample=tuple(loop.top_down.upsample))
    for name in fixed.order():
        node = fixed.node(name)
        ins = fixed.inputs(name)
        if name == target:
            new.add_delay(delay, m_shape)
            new.add(gate, [syn, delay.name])
            ins = [gate.name]
        new.add(node, ins)
        if name == source:
            coproc = FxCoproc(f"{where}.coproc", doc=doc, arrays=arrays)
            new.add(coproc, [source])
            new.add(FxCoprocOut(f"{where}.map", port="map", shape=m_shape), [coproc.name])
            new.connect(f"{where}.map", delay.name)
    if not isinstance(new.node(target), FxLIF):
        raise UnsupportedError(f"{where}: target '{target}' is not a LIF")
    new.validate()
    return new
