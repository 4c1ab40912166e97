"""Lower HTDA's top-down loop (snncompile.nn.htda) onto the chip.

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

import numpy as np
import torch

from ..coproc import CoprocGraph, ValueSpec
from ..coproc.ops import Accumulate, Conv2d, Relu, SigmoidLUT
from ..errors import QuantizationError, UnsupportedError
from ..ir import FxCoproc, FxCoprocOut, FxDelay, FxGate, FxLIF, Graph
from .attention import ROUNDING, _int8, _shift_for, check_coproc_target

HIDDEN_BITS = 16
COUNT_BITS = 16


def lower_htda(model, fixed: Graph, spec, x_cal: np.ndarray | None) -> Graph:
    """Return `fixed` (the quantised feed-forward SNN) with HTDA's loop added."""
    cfg = model.config["htda"]
    where = "htda"
    for key, want in (("read", "count"), ("mask", "binary"), ("init", "ones")):
        if cfg.get(key, {"read": "rate", "mask": "soft", "init": "ones"}[key]) != want:
            raise UnsupportedError(
                f"{where}: {key} '{cfg.get(key)}' cannot be compiled yet; the chip runs "
                f"HTDA with read 'count', mask 'binary', init 'ones' (retrain with those)")
    check_coproc_target(where, spec)
    if x_cal is None or not len(x_cal):
        raise QuantizationError(f"{where}: HTDA needs calibration data (--calib) to choose "
                                "the co-processor's scales")
    target, source = model.target, model.source
    d_t, d_s = fixed.depth(target), fixed.depth(source)
    steps = model.latency - (d_s - d_t)
    if steps < 1:
        raise QuantizationError(
            f"{where}: trained top-down latency {model.latency} step(s) is shorter than the "
            f"chip's loop: {source} (depth {d_s}) reaches {target} (depth {d_t}) after at "
            f"least {d_s - d_t + 1} steps; retrain with latency >= {d_s - d_t + 1}")
    # --- calibration: the source's spike counts on the float model
    rec: dict = {}
    with torch.no_grad():
        model(torch.as_tensor(np.asarray(x_cal), dtype=torch.float32), record=rec)
    counts = rec[source]["spikes"].cumsum(1).numpy().astype(np.int64)   # (N, T, C, H, W)
    conv1, conv2 = model.ann[0], model.ann[2]
    w1q, k1 = _int8(conv1.weight.detach().numpy().astype(np.float64), f"{where} conv1")
    w2q, k2 = _int8(conv2.weight.detach().numpy().astype(np.float64), f"{where} conv2")
    pad = w1q.shape[-1] // 2
    s_shape = tuple(fixed.shape(source))
    b1 = np.round(conv1.bias.detach().numpy().astype(np.float64) * 2.0 ** k1)
    probe = CoprocGraph({"c": ValueSpec(s_shape, COUNT_BITS)},
                        [Conv2d("p1", ("c",), weight=w1q, bias=b1.astype(np.int64),
                                padding=(pad, pad), shift=0, out_bits=32)], ["p1"])
    flat = counts.reshape((-1,) + s_shape)
    peak1 = float(np.abs(probe.run({"c": flat[:, None]})["p1"]).max(initial=0))
    s1 = _shift_for(peak1, HIDDEN_BITS)
    b2 = np.round(conv2.bias.detach().numpy().astype(np.float64) * 2.0 ** (k1 - s1 + k2))
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
    # --- rebuild the graph with the loop: syn -> gate(syn, delay) -> target
    syn = fixed.inputs(target)[0]
    new = Graph(dict(fixed.meta, htda={"source": source, "target": target,
                                       "latency": model.latency, "delay_steps": steps}))
    m_shape = cg.specs["map"].shape
    delay = FxDelay(f"{where}.delay", steps=steps, latency=model.latency, target_depth=d_t,
                    init=1)
    gate = FxGate(f"{where}.gate", shift=0, gain_bits=1, relu=False,
                  upsample=tuple(model.upsample))
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
