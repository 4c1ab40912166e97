"""Lower a float `Attention` node to the chip: an integer co-processor partition that
computes the gains, and a chain of `FxGate`s on the neurocore that applies them.

    synapse --a--> FxCoproc --> FxCoprocOut (g_ta, g_ca, g_sa: uint8 gains)
       |                              |
       +--a--> FxGate(ta) --> FxGate(ca) --> FxGate(sa, relu) --> FxLIF

`a` is the synapse's integer current (a ~= X * sigma, sigma the LIF's scale). Each gain is
`sigmoid(MLP(avg) + MLP(max))` (TA, CA) or `sigmoid(conv([mean, max]))` (SA) in integers:

* descriptors: ReduceMean (division rounded to nearest) and ReduceMax over the axes the
  training layer pools (CA: H, W of step t; SA: channels of step t; TA: C, H, W of the last
  `window` steps, kept by a History op);
* MLP / conv: 16-bit weights w = round(W * 2**k) (k the largest with |w| <= 2**15 - 1;
  the x86 core multiplies 16-bit values as cheaply as 8-bit ones, and with 8 bits a small
  weight next to a large one in these tiny MLPs, e.g. 2.65 beside -29.8 in a trained-size
  TA MLP, is off by 4%, a fixed error of the network's gain), int64 accumulation, a shift
  to 16 bits chosen from calibration data (2x headroom);
* sigmoid: a 256-entry table indexed by rnd(logit / 2**s) (covering about +-8 in float),
  entry i = round(256 * sigmoid(i * 2**s / scale)), clipped to 255 (as the training layer
  rounds its 8-bit gains);
* gates: rnd(a * g / 256) on the neurocore (`FxGate`, rounding "nearest_even").

Rounding. Every shift and division here rounds to nearest with ties to even (`ROUNDING`,
see snncompile.coproc.ops), none floors: a floor shift errs by -1/2 LSB on average, a
table read at the floored logit sits half an index step low (about -2/256 of gain at the
sigmoid's steepest with this table), and TCSA chains three gains, each on the previous
product, so floor errors add up to a gain systematically below the float model's (the
integer network then fires less, more so in deeper layers). With round-to-nearest the
expected error of every stage is zero and only the unbiased quantisation noise remains.

For TCSA the co-processor also forms a1 = rnd(a * g_ta / 256) and a2 = rnd(a1 * g_ca / 256)
with exactly the gates' arithmetic, so that CA and SA see what the neurocore sees.

Two modes, as the training layer's:

* "causal" streams: the partition runs every step on that step's current (TA keeps the
  last `window` steps in a History op) and its gains act in the same step;
* "window" (the released form) pools the whole time window. The partition (FxCoproc
  `window` = T) buffers the current of all T steps of a sample, (T, *shape), and runs
  once when the window is complete, with the same ops over one more axis: the window mean
  is ReduceMean over (T, H, W) (CA) or (T, C) (SA), or over (C, H, W) of each step (TA,
  whose MLP then maps the T per-step descriptors to T logits, as released). It sends
  back the gains and the buffered current, and the gates act on that delayed copy: the
  neurons after the attention run T steps later than in causal mode (`ir.timing`).
"""
from __future__ import annotations

import math

import numpy as np

from ..coproc import CoprocGraph, ValueSpec
from ..coproc.ops import (Add, Concat, Conv2d, History, Linear, Mul, ReduceMax, ReduceMean,
                          Relu, Reshape, SigmoidLUT, make_sigmoid_table)
from ..errors import QuantizationError, UnsupportedError
from ..ir import ATTENTION_PARTS, Attention, FxCoproc, FxCoprocOut, FxGate
from ..target import TargetSpec

HIDDEN_BITS = 16
GAIN_SHIFT = 8          # g / 256
LUT_BITS = 8            # table index width
LUT_RANGE = 8.0         # float logit covered by the table: [-8, 8)
HEADROOM = 2.0
WEIGHT_BITS = 16        # co-processor MLP / conv weights (signed)
ROUNDING = "nearest_even"   # every shift, division and gate (see the module docstring)


WINDOW_LATENCY = 0
"""Steps a window partition waits after its window before the first output: 0, because it
computes in the step the window completes (that step gets longer by the window's compute
time, which the partition report and the latency model add) and answers in the next."""


def check_attention(node: Attention, spec: TargetSpec) -> None:
    """Refuse what the target cannot host, with the reason and the alternative."""
    if node.mode not in ("causal", "window"):
        raise UnsupportedError(f"{node.name}: attention mode '{node.mode}' is not one of "
                               "causal, window")
    if node.mode == "window" and node.steps < 1:
        raise UnsupportedError(f"{node.name}: window-mode attention needs its window length "
                               "T (steps) to be compiled")
    check_coproc_target(node.name, spec)


def check_coproc_target(name: str, spec: TargetSpec) -> None:
    """The target must describe a co-processor and carry graded messages to it."""
    chip = getattr(spec, "chip", None)
    if not getattr(chip, "x86_cores", 0) or "coproc" not in spec.raw:
        raise UnsupportedError(f"{name}: target '{spec.name}' describes no co-processor "
                               "([chip] x86_cores and a [coproc] section) for the attention "
                               "branch")
    if spec.numerics.graded_bits == 0:
        raise UnsupportedError(f"{name}: target '{spec.name}' cannot send values to a "
                               "co-processor (no graded messages)")


def _int8(w: np.ndarray, where: str, bits: int = 8) -> tuple[np.ndarray, int]:
    """(signed `bits`-wide weights, k) with w_int = round(w * 2**k), the largest k keeping
    |w| <= 2**(bits-1) - 1 (int8 for 8 bits, int16 up to 16)."""
    m = float(np.abs(w).max(initial=0))
    lim = 2 ** (bits - 1) - 1
    dtype = np.int8 if bits <= 8 else np.int16
    if not np.all(np.isfinite(w)):
        raise QuantizationError(f"{where}: weights contain NaN or inf")
    if m == 0:
        return np.zeros(w.shape, dtype), 0
    k = int(math.floor(math.log2(lim / m)))
    return np.clip(np.round(w * 2.0 ** k), -lim, lim).astype(dtype), k


def _shift_for(peak: float, bits: int) -> int:
    """Smallest floor shift that keeps HEADROOM * peak within signed `bits`."""
    limit = 2 ** (bits - 1) - 1
    need = HEADROOM * peak / limit
    return max(0, math.ceil(math.log2(need))) if need > 1 else 0


class _Builder:
    """Grows a CoprocGraph op by op, evaluating it on calibration data to pick shifts."""

    def __init__(self, name: str, shape: tuple[int, ...], bits: int, a_cal: np.ndarray,
                 window: int = 0):
        self.prefix = name
        self.input = "a"
        self.window = window        # window mode: the input is the whole (T, *shape) window
        self.inputs = {"a": ValueSpec(((window,) if window else ()) + tuple(shape), bits)}
        self.ops: list = []
        self.cal = {"a": a_cal}
        self.outputs: list[str] = []

    def add(self, op) -> str:
        self.ops.append(op)
        return op.name

    def values(self, name: str) -> np.ndarray:
        g = CoprocGraph(self.inputs, self.ops, [name])
        if self.window:             # one run per sample, on its whole window
            return g.run_step(self.cal)[0][name].astype(np.int64)
        return g.run(self.cal)[name].astype(np.int64)

    def mlp_gain(self, key: str, descriptors: list[str], w1, w2, scale: float,
                 where: str) -> tuple[str, float]:
        """sigmoid(sum over descriptors of W2 relu(W1 d)) as an 8-bit gain; `scale`:
        integer units per float unit of the descriptors. Returns (gain value, logit scale)."""
        w1q, k1 = _int8(np.asarray(w1, np.float64), f"{where} {key} MLP", WEIGHT_BITS)
        w2q, k2 = _int8(np.asarray(w2, np.float64), f"{where} {key} MLP", WEIGHT_BITS)
        peak1 = max(float(np.abs(self.values(d).reshape(-1, w1q.shape[1]).astype(np.float64)
                                 @ w1q.T.astype(np.float64)).max(initial=0))
                    for d in descriptors)
        s1 = _shift_for(peak1, HIDDEN_BITS)
        hidden = []
        for i, d in enumerate(descriptors):
            h = self.add(Linear(f"{key}_fc1_{i}", (d,), weight=w1q, shift=s1,
                                out_bits=HIDDEN_BITS, rounding=ROUNDING,
                                weight_bits=WEIGHT_BITS))
            hidden.append(self.add(Relu(f"{key}_relu_{i}", (h,))))
        peak2 = max(float(np.abs(self.values(h).reshape(-1, w2q.shape[1]).astype(np.float64)
                                 @ w2q.T.astype(np.float64)).max(initial=0)) for h in hidden)
        s2 = _shift_for(peak2 * len(hidden), HIDDEN_BITS)
        outs = [self.add(Linear(f"{key}_fc2_{i}", (h,), weight=w2q, shift=s2,
                                out_bits=HIDDEN_BITS, rounding=ROUNDING,
                                weight_bits=WEIGHT_BITS))
                for i, h in enumerate(hidden)]
        logit = outs[0]
        for i, o in enumerate(outs[1:], 1):
            logit = self.add(Add(f"{key}_sum_{i}", (logit, o), out_bits=HIDDEN_BITS + 1))
        logit_scale = scale * 2.0 ** (k1 - s1) * 2.0 ** (k2 - s2)
        return self.lut(key, logit, logit_scale), logit_scale

    def lut(self, key: str, logit: str, scale: float) -> str:
        """8-bit gain = table[rnd(logit / 2**s)], the table covering about +-LUT_RANGE in
        float: entry i holds the gain at logit i * 2**s exactly, the logits it serves lie
        within half a step on either side."""
        s = max(0, math.ceil(math.log2(LUT_RANGE * scale / 2 ** (LUT_BITS - 1))))
        table = make_sigmoid_table(LUT_BITS, scale / 2.0 ** s)
        return self.add(SigmoidLUT(f"g_{key}", (logit,), in_scale_shift=s, table=table,
                                   rounding=ROUNDING))


def lower_attention(node: Attention, shape: tuple[int, ...], sigma: float, in_bits: int,
                    x_cal: np.ndarray, spec: TargetSpec) -> tuple[FxCoproc, list, object]:
    """Return the FxCoproc node, [(variant, FxCoprocOut, FxGate)] in gate order, and the
    FxCoprocOut of the delayed current the first gate reads (window mode; None in causal
    mode, where the gate reads the synapse's current itself).

    shape: the current's per-step shape; sigma: integer units per float unit of current;
    in_bits: width of the synapse output; x_cal: float calibration currents (N, T, *shape)
    recorded at the attention's input."""
    check_attention(node, spec)
    if x_cal is None or not len(x_cal):
        raise QuantizationError(f"{node.name}: attention layers need calibration data "
                                "(--calib) to choose the co-processor's scales")
    if "sa" in ATTENTION_PARTS[node.variant] and len(shape) != 3:
        raise UnsupportedError(f"{node.name}: spatial attention needs a (C, H, W) current")
    window = int(node.steps) if node.mode == "window" else 0
    if window and np.shape(x_cal)[1] != window:
        raise QuantizationError(f"{node.name}: whole-window attention built for T = {window} "
                                f"steps, calibrated on {np.shape(x_cal)[1]}-step samples")
    a_cal = np.clip(np.round(np.asarray(x_cal, np.float64) * sigma),
                    -(2 ** (in_bits - 1)), 2 ** (in_bits - 1) - 1).astype(np.int64)
    b = _Builder(node.name, shape, in_bits, a_cal, window)
    gains = _gains(b, node, tuple(shape), sigma, in_bits)
    if window:                  # the buffered current goes back, delayed, to the gates
        b.outputs.append(b.add(Reshape("a_delayed", ("a",), shape=(window,) + tuple(shape))))
    cg = CoprocGraph(b.inputs, b.ops, b.outputs)
    doc, arrays = cg.to_dict()
    coproc = FxCoproc(f"{node.name}.coproc", doc=doc, arrays=arrays, window=window,
                      latency=WINDOW_LATENCY if window else 0)
    lead = 1 if window else 0   # a window port's leading axis: T steps, or 1 for all
    chain = []
    for i, (v, g) in enumerate(gains):
        out = FxCoprocOut(f"{node.name}.g_{v}", port=g, shape=cg.specs[g].shape[lead:])
        gate = FxGate(f"{node.name}.gate_{v}", shift=GAIN_SHIFT, gain_bits=8,
                      relu=(i == len(gains) - 1), rounding=ROUNDING)
        chain.append((v, out, gate))
    delayed = (FxCoprocOut(f"{node.name}.current", port="a_delayed", shape=tuple(shape))
               if window else None)
    return coproc, chain, delayed


def _gains(b: _Builder, node: Attention, shape: tuple[int, ...], sigma: float,
           in_bits: int) -> list[tuple[str, str]]:
    """[(variant, gain value)] in gate order; each gain after the first reads the current
    as the gates before it modulated it (Mul with the gates' arithmetic)."""
    variants = list(ATTENTION_PARTS[node.variant])
    make = {"ta": _ta_gain, "ca": _ca_gain, "sa": _sa_gain}
    cur, gains = "a", []
    for i, v in enumerate(variants):
        g = make[v](b, node, cur, shape, sigma)
        gains.append((v, g))
        b.outputs.append(g)
        if i + 1 < len(variants):
            cur = b.add(Mul(f"a_{v}", (cur, g), shift=GAIN_SHIFT, out_bits=in_bits,
                            rounding=ROUNDING))
    return gains


def _ta_gain(b: _Builder, node: Attention, cur: str, shape, sigma: float) -> str:
    """TA: per step, mean and max over (C, H, W). Causal: the last `window` steps' pairs
    (History) -> MLP w -> 1; window: all T steps' -> MLP T -> T, one gain per step."""
    nd = len(shape)
    axes = tuple(range(1, nd + 1)) if b.window else tuple(range(nd))
    avg = b.add(ReduceMean("ta_avg", (cur,), axes=axes, rounding=ROUNDING))
    mx = b.add(ReduceMax("ta_max", (cur,), axes=axes))
    w = node.window
    if not b.window and w > 1:
        avg = b.add(History("ta_hist_avg", (avg,), k=w))
        mx = b.add(History("ta_hist_max", (mx,), k=w))
    elif not b.window:
        avg = b.add(Reshape("ta_vec_avg", (avg,), shape=(1,)))
        mx = b.add(Reshape("ta_vec_max", (mx,), shape=(1,)))
    g, _ = b.mlp_gain("ta", [avg, mx], node.ta_w1, node.ta_w2, sigma, node.name)
    lead = (b.window,) if b.window else ()
    return b.add(Reshape("g_ta_b", (g,), shape=lead + (1,) * nd))


def _ca_gain(b: _Builder, node: Attention, cur: str, shape, sigma: float) -> str:
    """CA: per channel, mean and max over (H, W) (a conv1d current: L) of the step
    (causal) or over (T, H, W) of the window; a causal dense current is its own mean and
    max."""
    spatial = len(shape) > 1
    rest = tuple(range(1, len(shape)))          # the axes after C
    axes = ((0,) + tuple(a + 1 for a in rest)) if b.window else rest
    if axes:
        descs = [b.add(ReduceMean("ca_avg", (cur,), axes=axes, rounding=ROUNDING)),
                 b.add(ReduceMax("ca_max", (cur,), axes=axes))]
    else:   # a dense current has no H, W: avg = max = the current itself
        descs = [cur, cur]
    g, _ = b.mlp_gain("ca", descs, node.ca_w1, node.ca_w2, sigma, node.name)
    lead = (1,) if b.window else ()
    if spatial or b.window:
        g = b.add(Reshape("g_ca_b", (g,), shape=lead + (shape[0],) + (1,) * (len(shape) - 1)))
    return g


def _sa_gain(b: _Builder, node: Attention, cur: str, shape, sigma: float) -> str:
    """SA: mean and max over the channels of the step (causal) or over all T x C maps of
    the window -> conv 2 -> 1 -> sigmoid table: one H x W map."""
    hw = tuple(shape[1:])
    axes = (0, 1) if b.window else (0,)
    avg = b.add(ReduceMean("sa_avg", (cur,), axes=axes, keepdims=True, rounding=ROUNDING))
    mx = b.add(ReduceMax("sa_max", (cur,), axes=axes, keepdims=True))
    if b.window:
        avg = b.add(Reshape("sa_map_avg", (avg,), shape=(1,) + hw))
        mx = b.add(Reshape("sa_map_max", (mx,), shape=(1,) + hw))
    both = b.add(Concat("sa_cat", (avg, mx), axis=0))
    wq, k = _int8(np.asarray(node.sa_w, np.float64), f"{node.name} sa conv", WEIGHT_BITS)
    pad = wq.shape[-1] // 2
    probe = Conv2d("sa_probe", (both,), weight=wq, padding=(pad, pad), shift=0,
                   out_bits=32, weight_bits=WEIGHT_BITS)
    b.ops.append(probe)
    peak = float(np.abs(b.values("sa_probe")).max(initial=0))
    b.ops.pop()
    s = _shift_for(peak, HIDDEN_BITS)
    logit = b.add(Conv2d("sa_conv", (both,), weight=wq, padding=(pad, pad), shift=s,
                         out_bits=HIDDEN_BITS, rounding=ROUNDING, weight_bits=WEIGHT_BITS))
    g = b.lut("sa", logit, sigma * 2.0 ** (k - s))
    if b.window:
        g = b.add(Reshape("g_sa_b", (g,), shape=(1, 1) + hw))
    return g
