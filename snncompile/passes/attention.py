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
with exactly the gates' arithmetic, so that CA and SA see what the neurocore sees. Only the
causal modes stream; "window" mode pools the whole time window and is refused.
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


def check_attention(node: Attention, spec: TargetSpec) -> None:
    """Refuse what the target cannot host, with the reason and the alternative."""
    if node.mode != "causal":
        raise UnsupportedError(
            f"{node.name}: attention mode '{node.mode}' pools over the whole time window, so "
            "the first gain exists only after all T steps; a streaming chip would have to "
            "buffer the window (latency T). Retrain with mode 'causal' (per-step CA/SA, "
            "causal-window TA)")
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

    def __init__(self, name: str, shape: tuple[int, ...], bits: int, a_cal: np.ndarray):
        self.prefix = name
        self.input = "a"
        self.inputs = {"a": ValueSpec(shape, bits)}
        self.ops: list = []
        self.cal = {"a": a_cal}
        self.outputs: list[str] = []

    def add(self, op) -> str:
        self.ops.append(op)
        return op.name

    def values(self, name: str) -> np.ndarray:
        g = CoprocGraph(self.inputs, self.ops, [name])
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
                    x_cal: np.ndarray, spec: TargetSpec) -> tuple[FxCoproc, list]:
    """Return the FxCoproc node and [(variant, FxCoprocOut, FxGate)] in gate order.

    shape: the current's per-step shape; sigma: integer units per float unit of current;
    in_bits: width of the synapse output; x_cal: float calibration currents (N, T, *shape)
    recorded at the attention's input."""
    check_attention(node, spec)
    if x_cal is None or not len(x_cal):
        raise QuantizationError(f"{node.name}: attention layers need calibration data "
                                "(--calib) to choose the co-processor's scales")
    spatial = len(shape) == 3
    variants = list(ATTENTION_PARTS[node.variant])
    if "sa" in variants and not spatial:
        raise UnsupportedError(f"{node.name}: spatial attention needs a (C, H, W) current")
    a_cal = np.clip(np.round(np.asarray(x_cal, np.float64) * sigma),
                    -(2 ** (in_bits - 1)), 2 ** (in_bits - 1) - 1).astype(np.int64)
    b = _Builder(node.name, shape, in_bits, a_cal)
    cur = "a"
    gains = []
    nd = len(shape)
    for i, v in enumerate(variants):
        if v == "ta":
            avg = b.add(ReduceMean("ta_avg", (cur,), axes=tuple(range(nd)),
                                   rounding=ROUNDING))
            mx = b.add(ReduceMax("ta_max", (cur,), axes=tuple(range(nd))))
            w = node.window
            if w > 1:
                avg = b.add(History("ta_hist_avg", (avg,), k=w))
                mx = b.add(History("ta_hist_max", (mx,), k=w))
            else:
                avg = b.add(Reshape("ta_vec_avg", (avg,), shape=(1,)))
                mx = b.add(Reshape("ta_vec_max", (mx,), shape=(1,)))
            g, _ = b.mlp_gain("ta", [avg, mx], node.ta_w1, node.ta_w2, sigma, node.name)
            g = b.add(Reshape("g_ta_b", (g,), shape=(1,) * nd))
        elif v == "ca":
            if spatial:
                descs = [b.add(ReduceMean("ca_avg", (cur,), axes=(1, 2), rounding=ROUNDING)),
                         b.add(ReduceMax("ca_max", (cur,), axes=(1, 2)))]
            else:  # a dense current has no H, W: avg = max = the current itself
                descs = [cur, cur]
            g, _ = b.mlp_gain("ca", descs, node.ca_w1, node.ca_w2, sigma, node.name)
            if spatial:
                g = b.add(Reshape("g_ca_b", (g,), shape=(shape[0], 1, 1)))
        else:  # sa
            avg = b.add(ReduceMean("sa_avg", (cur,), axes=(0,), keepdims=True,
                                   rounding=ROUNDING))
            mx = b.add(ReduceMax("sa_max", (cur,), axes=(0,), keepdims=True))
            both = b.add(Concat("sa_cat", (avg, mx), axis=0))
            wq, k = _int8(np.asarray(node.sa_w, np.float64), f"{node.name} sa conv",
                          WEIGHT_BITS)
            pad = wq.shape[-1] // 2
            probe = Conv2d("sa_probe", (both,), weight=wq, padding=(pad, pad), shift=0,
                           out_bits=32, weight_bits=WEIGHT_BITS)
            b.ops.append(probe)
            peak = float(np.abs(b.values("sa_probe")).max(initial=0))
            b.ops.pop()
            s = _shift_for(peak, HIDDEN_BITS)
            logit = b.add(Conv2d("sa_conv", (both,), weight=wq, padding=(pad, pad), shift=s,
                                 out_bits=HIDDEN_BITS, rounding=ROUNDING,
                                 weight_bits=WEIGHT_BITS))
            g = b.lut("sa", logit, sigma * 2.0 ** (k - s))
        gains.append((v, g))
        b.outputs.append(g)
        if i + 1 < len(variants):  # the next gain reads the already modulated current
            cur = b.add(Mul(f"a_{v}", (cur, g), shift=GAIN_SHIFT, out_bits=in_bits,
                            rounding=ROUNDING))
    cg = CoprocGraph(b.inputs, b.ops, b.outputs)
    doc, arrays = cg.to_dict()
    coproc = FxCoproc(f"{node.name}.coproc", doc=doc, arrays=arrays)
    chain = []
    for i, (v, g) in enumerate(gains):
        out = FxCoprocOut(f"{node.name}.g_{v}", port=g, shape=cg.specs[g].shape)
        gate = FxGate(f"{node.name}.gate_{v}", shift=GAIN_SHIFT, gain_bits=8,
                      relu=(i == len(gains) - 1), rounding=ROUNDING)
        chain.append((v, out, gate))
    return coproc, chain
