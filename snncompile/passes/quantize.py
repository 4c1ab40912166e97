"""Quantise a float graph to Loihi fixed point (as Lava's bit-accurate models define it).

For every LIF node and the synapse layer feeding it one scale `sigma` (integer units per
float unit of current) is chosen. With weight exponent `e` and mantissas `w`:

    w * 2**e ~= W * sigma        (effective integer weight; a = acc << e)
    vth      = round(theta * sigma)          (compared as v > vth << 6)
    u_int    = 64 * sigma * u,  v_int = 64 * sigma * v        (24-bit state)
    bias     = round(b * sigma * 64) = bias_mant << bias_exp
    du_q     = round(4096 * du) - 1,  dv_q = round(4096 * dv)  (Loihi decays u by (du_q+1))

`sigma` is as large as the limits allow, because a larger sigma means finer thresholds,
biases and weights: vth <= 2**17 - 1; |bias| * sigma * 64 <= 4095 << 7; the calibrated
peak |u|, |v| times sigma stays below the 24-bit state range with a 1.5x margin; weight
mantissas stay within 8 bits at the largest weight exponent. `e` is then the smallest exponent that fits the largest weight in 8 bits.
Lava's Conv ignores weight exponents, so conv layers use e = 0.

Mantissa ranges follow Lava's weight preparation (clip to 8 bits, then truncate
`8 - num_weight_bits + mixed` LSBs): mixed-sign layers use even values in [-256, 254],
excitatory [0, 255], inhibitory [-255, 0]. A value the target cannot represent is a
`QuantizationError` naming the layer and the limit, never a silent clip.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import GraphError, QuantizationError, UnsupportedError
from ..ir import (LIF, Attention, Conv2d, Dense, Flatten, FxConv2d, FxDense, FxLIF, Graph,
                  Input, Output)
from ..target import TargetSpec

HEADROOM = 1.5  # calibrated peak state may grow by this factor before it wraps


@dataclasses.dataclass
class LayerQuant:
    """What the quantiser chose for one (synapse, LIF) pair, and what it cost."""

    layer: str
    synapse: str
    scale: float
    weight_exp: int
    sign_mode: str
    weight_max_mant: int
    weight_rel_error: float
    weights_clipped: int
    vth: int
    vth_rel_error: float
    du: int
    dv: int
    du_eff: float
    dv_eff: float
    bias_exp: int
    bias_max_abs_error: float
    peak_state_fraction: float | None  # calibrated peak |u|,|v| as a fraction of 2**23
    limited_by: str

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


def _sign_mode(w: np.ndarray) -> tuple[str, int, int]:
    """(mode, min mantissa, max mantissa) for 8-bit weights as Lava prepares them."""
    return _mode_of(float(w.min(initial=0)), float(w.max(initial=0)))


def _mode_of(wmin: float, wmax: float) -> tuple[str, int, int]:
    if wmin >= 0:
        return "excitatory", 0, 255
    if wmax <= 0:
        return "inhibitory", -255, 0
    return "mixed", -256, 254


CHUNK = 1 << 17   # weights per block: its float64 temporaries (1 MB) stay in L2 at any size


class _WeightStats:
    """A layer's float weights read in blocks of CHUNK: one pass for the statistics the
    scale needs (finite, min, max, norm), one pass that writes the int32 mantissas in
    place. Time is linear in the number of synapses and no temporary grows with it (the
    former whole-array float64 chain allocated several arrays of 8 bytes per synapse)."""

    def __init__(self, weight):
        w = np.asarray(weight)
        if w.dtype.kind not in "fiub":
            w = w.astype(np.float64)
        self.shape = w.shape
        self.flat = np.ascontiguousarray(w).reshape(-1)
        self.finite, lo, hi, sq = True, 0.0, 0.0, 0.0
        for c in self._chunks():
            if c.size:   # a NaN or inf shows in the block's min or max
                cmin, cmax = float(c.min()), float(c.max())
                if not (math.isfinite(cmin) and math.isfinite(cmax)):
                    self.finite = False
                    return
                lo, hi = min(lo, cmin), max(hi, cmax)
                sq += float(np.dot(c, c))
        self.wmin, self.wmax = lo, hi
        self.absmax = max(-lo, hi)
        self.norm = math.sqrt(sq)

    def _chunks(self):
        for i in range(0, self.flat.size, CHUNK):
            yield self.flat[i:i + CHUNK].astype(np.float64)

    def sign_mode(self) -> tuple[str, int, int]:
        # an all-zero layer is excitatory, as np.all(w >= 0) said
        return _mode_of(self.wmin if self.flat.size else 0.0, self.wmax)

    def quantize(self, sigma: float, e: int, step: int, lo: int, hi: int):
        """(int32 mantissas round(w * sigma / 2**e / step) * step in the layer's shape,
        how many fall outside [lo, hi], ||mantissas * 2**e / sigma - w||)."""
        out = np.empty(self.flat.size, np.int32)
        clipped, sq = 0, 0.0
        down = 2.0 ** -e / step   # a power of two: multiplying by it is dividing exactly
        for i, c in zip(range(0, self.flat.size, CHUNK), self._chunks()):
            q = c * sigma
            q *= down
            np.round(q, out=q)
            q *= step
            if q.size and (q.min() < lo or q.max() > hi):
                clipped += int(np.count_nonzero((q < lo) | (q > hi)))
            out[i:i + q.size] = q
            q *= 2.0 ** e
            q /= sigma
            q -= c
            sq += float(np.dot(q, q))
        return out.reshape(self.shape), clipped, math.sqrt(sq)


def _decay(name: str, key: str, value: float, unity: int, offset: int) -> tuple[int, float]:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise QuantizationError(f"{name}: {key} ({value}) is outside [0, 1]")
    q = int(np.clip(round(value * unity) - offset, 0, unity - 1))
    return q, (q + offset) / unity


def quantize(graph: Graph, spec: TargetSpec, calib: dict | None = None
             ) -> tuple[Graph, list[LayerQuant]]:
    """Map a float graph (pools already folded) to a fixed-point graph.

    calib: {lif_name: {"peak_u": float, "peak_v": float}} from `run_float(..., record=...)`,
    and {"captured": {attention_name: float currents (N, T, *shape)}} for attention layers.
    """
    num = spec.numerics
    state_units = (num.state_max - 1) >> num.act_shift  # largest |u|, |v| in input units
    inp = graph.input_node()
    if inp.encoding == "graded":
        if num.graded_bits == 0:
            raise UnsupportedError(f"{inp.name}: graded inputs are not supported on target "
                                   f"'{spec.name}'; encode the input as spikes")
        if inp.bits > num.graded_bits:
            raise QuantizationError(f"{inp.name}: graded input width ({inp.bits} bits) exceeds "
                                    f"the target's graded spike width ({num.graded_bits})")
    new = Graph(dict(graph.meta, target=spec.name))
    reports: list[LayerQuant] = []
    fixed: dict[str, object] = {}
    lowered: dict[str, tuple] = {}   # attention name -> (FxCoproc, [(variant, out, gate)])
    captured = (calib or {}).get("captured", {})
    for name in graph.order():
        node = graph.node(name)
        if not isinstance(node, LIF):
            continue
        preds = graph.inputs(name)
        att = None
        if len(preds) == 1 and isinstance(graph.node(preds[0]), Attention):
            att = graph.node(preds[0])
            preds = graph.inputs(att.name)
        if len(preds) != 1 or not isinstance(graph.node(preds[0]), (Dense, Conv2d)):
            raise UnsupportedError(f"{name}: a LIF must be fed by exactly one Dense or Conv2d "
                                   "layer (optionally through an attention layer)")
        syn = graph.node(preds[0])
        stats = (calib or {}).get(name)
        in_kind = graph.kind(graph.inputs(syn.name)[0])
        msg_bits = _msg_bits(syn.name, in_kind, inp.bits)
        fs, fl, rep = _quantize_pair(syn, node, msg_bits, stats, spec, state_units)
        fixed[syn.name], fixed[name] = fs, fl
        reports.append(rep)
        if att is not None:
            from .attention import lower_attention
            in_bits = 24 if isinstance(syn, Conv2d) else 32  # Conv wraps at 24 bits
            lowered[att.name] = lower_attention(att, graph.shape(att.name), rep.scale,
                                                in_bits, captured.get(att.name), spec)
    rename: dict[str, str] = {}
    for name in graph.order():
        node = graph.node(name)
        ins = [rename.get(i, i) for i in graph.inputs(name)]
        if isinstance(node, (Input, Flatten, Output)):
            new.add(node, ins)
        elif name in fixed:
            new.add(fixed[name], ins)
        elif name in lowered:
            coproc, chain = lowered[name]
            new.add(coproc, ins)
            current = ins[0]
            for _, out, gate in chain:
                new.add(out, [coproc.name])
                new.add(gate, [current, out.name])
                current = gate.name
            rename[name] = current
        else:
            raise UnsupportedError(f"{name}: {type(node).__name__} cannot be quantised here; "
                                   "run fold_pools first")
    new.validate()
    return new, reports


def _quantize_pair(syn, lif: LIF, msg_bits: int, stats, spec: TargetSpec, state_units: int):
    num = spec.numerics
    name = lif.name
    ws = _WeightStats(syn.weight)
    bias = np.broadcast_to(np.asarray(lif.bias, dtype=np.float64), lif.shape)
    if not ws.finite:
        raise QuantizationError(f"{syn.name}: weight contains NaN or inf")
    if not np.all(np.isfinite(bias)):
        raise QuantizationError(f"{name}: bias contains NaN or inf")
    theta = float(lif.vth)
    if not (theta > 0) or not math.isfinite(theta):
        raise QuantizationError(f"{name}: threshold ({theta}) must be a finite value > 0")
    mode, lo, hi = ws.sign_mode()
    mant = hi if mode != "inhibitory" else -lo
    m = ws.absmax
    # --- the largest scale every limit allows
    caps = {"threshold mantissa": num.vth_max / theta}
    if stats:
        peak = max(stats["peak_u"], stats["peak_v"], theta)
        caps["state headroom"] = state_units / (HEADROOM * peak)
    else:
        caps["state headroom (uncalibrated: 4x threshold)"] = state_units / (4 * theta)
    bias_abs = float(np.abs(bias).max(initial=0))
    if bias_abs > 0:  # bias_mant << bias_exp must hold bias * sigma * 64
        caps["bias range"] = (num.bias_mant_max << num.bias_exp_max) / (
            bias_abs * (1 << num.act_shift))
    is_conv = isinstance(syn, Conv2d)
    e_max = 0 if is_conv else num.weight_exp_max
    e_min = 0 if is_conv else num.weight_exp_min
    if m > 0:
        caps["weight mantissa" + (" (conv: no exponent)" if is_conv else "")] = \
            mant * 2.0 ** e_max / m
    limited_by = min(caps, key=caps.get)
    sigma = caps[limited_by]
    if not (sigma > 0 and math.isfinite(sigma)):   # e.g. a weight of 1e38 overflowed calib
        raise QuantizationError(f"{name}: no fixed-point scale fits ({limited_by} allows "
                                f"{sigma:.3g}); weights reach {m:.3g}, threshold {theta:.3g}")
    if m > 0:
        e = int(np.clip(math.ceil(math.log2(m * sigma / mant) - 1e-12), e_min, e_max))
    else:
        e = 0
    # --- weights
    wq, clipped, err_norm = ws.quantize(sigma, e, 2 if mode == "mixed" else 1, lo, hi)
    if clipped:
        raise QuantizationError(f"{syn.name}: {clipped} weights exceed the 8-bit mantissa "
                                f"range [{lo}, {hi}] at weight exponent {e}")
    weight_err = float(err_norm / max(ws.norm, 1e-30))
    # --- threshold
    vth = int(round(theta * sigma))
    if vth < 1:
        raise QuantizationError(f"{name}: threshold {theta} rounds to 0 at scale {sigma:.4g} "
                                f"(scale limited by {limited_by}); the threshold is too small "
                                "relative to the weights or the bias")
    if vth > num.vth_max:
        raise QuantizationError(f"{name}: threshold mantissa ({vth}) exceeds {num.vth_max}")
    # --- decays (Loihi adds 1 to du: ds_offset; none to dv)
    du, du_eff = _decay(name, "du", lif.du, num.decay_unity, 1)
    dv, dv_eff = _decay(name, "dv", lif.dv, num.decay_unity, 0)
    # --- bias = bias_mant << bias_exp, in 24-bit state units (not shifted by 6)
    b_int = bias * sigma * (1 << num.act_shift)
    bmax = float(np.abs(b_int).max()) if b_int.size else 0.0
    bias_exp = 0
    while bmax / 2 ** bias_exp > num.bias_mant_max and bias_exp < num.bias_exp_max:
        bias_exp += 1
    bias_mant = np.round(b_int / 2 ** bias_exp)
    if np.abs(bias_mant).max(initial=0) > num.bias_mant_max:
        raise QuantizationError(
            f"{name}: bias ({bmax:.4g} state units) exceeds the largest representable bias "
            f"({num.bias_mant_max} << {num.bias_exp_max}); reduce the bias or the threshold")
    bias_err = float(np.abs(bias_mant * 2 ** bias_exp - b_int).max(initial=0)
                     / (sigma * (1 << num.act_shift)))
    peak_frac = None
    if stats:
        peak_frac = max(stats["peak_u"], stats["peak_v"]) * sigma / state_units
    if is_conv:
        fs = FxConv2d(syn.name, weight=wq, stride=syn.stride, padding=syn.padding,
                      groups=syn.groups, num_message_bits=msg_bits)
    else:
        fs = FxDense(syn.name, weight=wq, weight_exp=e, num_weight_bits=num.weight_bits,
                     sign_mode=mode, num_message_bits=msg_bits, delay=syn.delay)
    fl = FxLIF(name, shape=lif.shape, du=du, dv=dv, vth=vth,
               bias_mant=bias_mant.astype(np.int32), bias_exp=bias_exp)
    rep = LayerQuant(layer=name, synapse=syn.name, scale=float(sigma), weight_exp=e,
                     sign_mode=mode, weight_max_mant=int(np.abs(wq).max(initial=0)),
                     weight_rel_error=weight_err, weights_clipped=clipped, vth=vth,
                     vth_rel_error=abs(vth - theta * sigma) / (theta * sigma),
                     du=du, dv=dv, du_eff=du_eff, dv_eff=dv_eff, bias_exp=bias_exp,
                     bias_max_abs_error=bias_err, peak_state_fraction=peak_frac,
                     limited_by=limited_by)
    return fs, fl, rep


def _msg_bits(name: str, in_kind: str, input_bits: int) -> int:
    """0 for binary spikes; the graded payload width for graded (integer) inputs."""
    if in_kind == "spikes":
        return 0
    if in_kind == "graded":
        return input_bits
    raise GraphError(f"{name}: receives real values ('{in_kind}'); fold pools first")
