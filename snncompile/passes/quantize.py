"""Quantise a float graph to Loihi fixed point (as Lava's bit-accurate models define it).

For every LIF node and the synapse layer feeding it one scale `sigma` (integer units per
float unit of current) is chosen. With weight exponent `e` and mantissas `w`:

    w * 2**e ~= W * sigma        (effective integer weight; a = acc << e)
    vth      = round(theta * sigma)          (compared as v > vth << 6)
    u_int    = 64 * sigma * u,  v_int = 64 * sigma * v        (24-bit state)
    bias     = round(b * sigma * 64) = bias_mant << bias_exp
    du_q     = round(4096 * du) - 1,  dv_q = round(4096 * dv)  (Loihi decays u by (du_q+1))

Per-neuron du, dv and theta (arrays: PLIF, NIR per-neuron tau) are quantised element by
element at the layer's one `sigma` (the largest theta bounds it), on targets with
programmable neurons only. `sigma` is as large as the limits allow, because a larger sigma means finer thresholds,
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
from ..ir import (LI, LIF, Attention, Conv1d, Conv2d, Dense, Flatten, FxConv1d, FxConv2d,
                  FxDense, FxLI, FxLIF, Graph, Input, Output, SumPool1d, SumPool2d, per_neuron,
                  FxRecDense, RecDense)
from ..ir.registry import Rules
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
    vth: int | str             # per-neuron values: their range "lo..hi"
    vth_rel_error: float       # the largest over the neurons
    du: int | str
    dv: int | str
    du_eff: float | str
    dv_eff: float | str
    bias_exp: int
    bias_max_abs_error: float
    peak_state_fraction: float | None  # calibrated peak |u|,|v| as a fraction of 2**23
    limited_by: str
    more_synapses: list = dataclasses.field(default_factory=list)
    """The other synapses into the same LIF (a residual block's shortcut), same scale:
    [{synapse, weight_exp, sign_mode, weight_max_mant, weight_rel_error}]."""
    synapse_bias: list = dataclasses.field(default_factory=list)
    """The bias axons of the synapses into this neuron: [{synapse, bias_exp,
    bias_max_mant, bias_max_abs_error (float units)}]."""

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
        for i in range(0, self.flat.size, CHUNK):
            raw = self.flat[i:i + CHUNK]   # min and max in its own type: the same values
            cmin, cmax = float(raw.min()), float(raw.max())   # a NaN or inf shows here
            if not (math.isfinite(cmin) and math.isfinite(cmax)):
                self.finite = False
                return
            lo, hi = min(lo, cmin), max(hi, cmax)
            c = raw.astype(np.float64)
            sq += float(np.dot(c, c))
        self.wmin, self.wmax = lo, hi
        self.absmax = max(-lo, hi)
        self.norm = math.sqrt(sq)

    def _chunks(self):
        for i in range(0, self.flat.size, CHUNK):
            yield self.flat[i:i + CHUNK]

    def sign_mode(self) -> tuple[str, int, int]:
        # an all-zero layer is excitatory, as np.all(w >= 0) said
        return _mode_of(self.wmin if self.flat.size else 0.0, self.wmax)

    def quantize(self, sigma: float, e: int, step: int, lo: int, hi: int):
        """(int32 mantissas round(w * sigma / 2**e / step) * step in the layer's shape,
        how many fall outside [lo, hi], ||mantissas * 2**e / sigma - w||, the largest
        |mantissa|)."""
        out = np.empty(self.flat.size, np.int32)
        clipped, sq, top = 0, 0.0, 0.0
        # Powers of two scale exactly, so each float64 result below equals that of the
        # step-by-step chain w * sigma * 2**-e / step, round, * step, * 2**e / sigma - w
        # with fewer passes: (w * sigma) * 2**-e / step is w * (sigma * 2**-e / step),
        # and (m * 2**e) / sigma is m / (sigma * 2**-e), each rounded once.
        up = sigma * (2.0 ** -e / step)
        back = sigma * 2.0 ** -e
        for i, c in zip(range(0, self.flat.size, CHUNK), self._chunks()):
            q = np.multiply(c, up, dtype=np.float64)       # float64 of w, then the product
            np.rint(q, out=q)
            if step != 1:
                q *= step
            if q.size:
                qmin, qmax = float(q.min()), float(q.max())
                top = max(top, -qmin, qmax)
                if qmin < lo or qmax > hi:
                    clipped += int(np.count_nonzero((q < lo) | (q > hi)))
            out[i:i + q.size] = q
            np.divide(q, back, out=q)
            np.subtract(q, c, out=q, dtype=np.float64)
            sq += float(np.dot(q, q))
        return out.reshape(self.shape), clipped, math.sqrt(sq), int(top)


def _decay(name: str, key: str, value, unity: int, offset: int):
    """(12-bit decay, effective fraction) of a fraction in [0, 1]; each element of an
    array (a per-neuron decay) alike, an array that holds one value as a scalar."""
    if isinstance(value, np.ndarray):
        bad = ~((value >= 0.0) & (value <= 1.0))
        if bad.any():
            raise QuantizationError(f"{name}: {key} ({value[bad].flat[0]}) is outside [0, 1]")
        q = np.clip(np.round(value * unity) - offset, 0, unity - 1).astype(np.int64)
        if np.all(q == q.flat[0]):
            q = int(q.flat[0])
        return q, (q + offset) / unity
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise QuantizationError(f"{name}: {key} ({value}) is outside [0, 1]")
    q = int(np.clip(round(value * unity) - offset, 0, unity - 1))
    return q, (q + offset) / unity


def _span(value, fmt: str = "d"):
    """A scalar as itself; an array as its range 'lo..hi' (for the report)."""
    if not isinstance(value, np.ndarray):
        return value
    if value.ndim == 0:
        return value.item()
    lo, hi = value.min(), value.max()
    return f"{lo:{fmt}}..{hi:{fmt}}"


QUANTIZE = Rules("quantisation")
"""Float node type -> its rule, an object with

* `emit(node, ins, plan)`: add the node's fixed-point node(s) to `plan.new`, fed by `ins`;
* optionally `plan(node, plan)`, run for every node before any is emitted: a neuron's rule
  quantises the neuron together with the synapse (and attention layer) feeding it there;
* optionally `declare(node, plan)`, run after planning and before any node is emitted: a
  back edge (a recurrent synapse) enters the new graph before the neuron that reads it.

A pool's rule refuses it: `fold_pools` folds pools into the next synapse first."""


@dataclasses.dataclass
class _Plan:
    """What the quantiser decided, node by node, and the fixed-point graph it builds.

    fixed: float node name -> its fixed-point node (synapses and neurons);
    lowered: attention name -> (FxCoproc, [(variant, FxCoprocOut, FxGate)]);
    rename: float node name -> the fixed-point node that now carries its value (an
      attention layer's last gate); reports: one LayerQuant per neuron, in graph order."""

    graph: Graph
    spec: TargetSpec
    calib: dict
    new: Graph
    state_units: int
    fixed: dict = dataclasses.field(default_factory=dict)
    lowered: dict = dataclasses.field(default_factory=dict)
    rename: dict = dataclasses.field(default_factory=dict)
    reports: list = dataclasses.field(default_factory=list)


def quantize(graph: Graph, spec: TargetSpec, calib: dict | None = None
             ) -> tuple[Graph, list[LayerQuant]]:
    """Map a float graph (pools already folded) to a fixed-point graph.

    calib: {lif_name: {"peak_u": float, "peak_v": float}} from `run_float(..., record=...)`,
    and {"captured": {attention_name: float currents (N, T, *shape)}} for attention layers.
    """
    num = spec.numerics
    graph.input_node()              # exactly one Input
    plan = _Plan(graph, spec, calib or {}, Graph(dict(graph.meta, target=spec.name)),
                 state_units=(num.state_max - 1) >> num.act_shift)  # largest |u|, |v|
    for name in graph.order():
        rule = QUANTIZE.get(graph.node(name))
        if hasattr(rule, "plan"):
            rule.plan(graph.node(name), plan)
    for name in graph.order():      # back edges (recurrent synapses) before their readers
        rule = QUANTIZE.get(graph.node(name))
        if hasattr(rule, "declare"):
            rule.declare(graph.node(name), plan)
    for name in graph.order():
        node = graph.node(name)
        ins = [plan.rename.get(i, i) for i in graph.inputs(name)]
        QUANTIZE.rule(node).emit(node, ins, plan)
    plan.new.validate()
    return plan.new, plan.reports


def _not_here(node) -> UnsupportedError:
    return UnsupportedError(f"{node.name}: {type(node).__name__} cannot be quantised here; "
                            "run fold_pools first")


class _Keep:
    """Input, Flatten, Output: the same node in the fixed-point graph."""

    def emit(self, node, ins, plan: _Plan) -> None:
        plan.new.add(node, ins)


class _InputRule(_Keep):
    """The network input: kept; graded values must fit the target's graded spikes."""

    def plan(self, inp: Input, plan: _Plan) -> None:
        num, spec = plan.spec.numerics, plan.spec
        if inp.encoding == "graded":
            if num.graded_bits == 0:
                raise UnsupportedError(f"{inp.name}: graded inputs are not supported on "
                                       f"target '{spec.name}'; encode the input as spikes")
            if inp.bits > num.graded_bits:
                raise QuantizationError(f"{inp.name}: graded input width ({inp.bits} bits) "
                                        f"exceeds the target's graded spike width "
                                        f"({num.graded_bits})")


class _Planned:
    """A node the neuron it feeds (or is) quantised: its planned fixed-point node."""

    def emit(self, node, ins, plan: _Plan) -> None:
        if node.name not in plan.fixed:
            raise _not_here(node)
        plan.new.add(plan.fixed[node.name], ins)


class _SynapseRule(_Planned):
    """A synapse layer, quantised with the LIF it feeds: `exponent_range(numerics)` (the
    weight exponents it may use), `lower(...)` (its fixed-point node), `accumulator_bits`
    (the width of its output) and `limit_note` (appended to its scale limit's name)."""


class _DenseRule(_SynapseRule):
    """Dense -> FxDense with a weight exponent (and its synaptic delays)."""

    accumulator_bits = 32          # the synapse output the attention lowering reads
    limit_note = ""                # appended to the "weight mantissa" scale limit

    def exponent_range(self, num) -> tuple[int, int]:
        return num.weight_exp_min, num.weight_exp_max

    def lower(self, syn: Dense, wq, e: int, mode: str, msg_bits: int, num) -> FxDense:
        return FxDense(syn.name, weight=wq, weight_exp=e, num_weight_bits=num.weight_bits,
                       sign_mode=mode, num_message_bits=msg_bits, delay=syn.delay)


class _RecurrentRule(_DenseRule):
    """RecDense -> FxRecDense: one more synapse into its LIF, quantised with the LIF's
    feed-forward synapses at the LIF's scale, with its own weight exponent (as a residual
    block's shortcut is). A back edge: declared before the LIF, fed from it when emitted."""

    def lower(self, syn: RecDense, wq, e: int, mode: str, msg_bits: int, num) -> FxRecDense:
        return FxRecDense(syn.name, weight=wq, weight_exp=e, num_weight_bits=num.weight_bits,
                          sign_mode=mode)

    def declare(self, node: RecDense, plan: _Plan) -> None:
        if node.name not in plan.fixed:
            raise _not_here(node)
        plan.new.add_delay(plan.fixed[node.name], plan.graph.shape(node.name))

    def emit(self, node: RecDense, ins, plan: _Plan) -> None:
        plan.new.connect(ins[0], node.name)


class _ConvRule(_SynapseRule):
    """Conv2d -> FxConv2d; Lava's Conv ignores weight exponents, so e = 0."""

    accumulator_bits = 24          # Conv wraps at 24 bits
    limit_note = " (conv: no exponent)"

    def exponent_range(self, num) -> tuple[int, int]:
        return 0, 0

    def lower(self, syn: Conv2d, wq, e: int, mode: str, msg_bits: int, num) -> FxConv2d:
        return FxConv2d(syn.name, weight=wq, stride=syn.stride, padding=syn.padding,
                        groups=syn.groups, num_message_bits=msg_bits)


class _Conv1dRule(_ConvRule):
    """Conv1d -> FxConv1d (a height-1 FxConv2d), its dilation made a sparse dense kernel."""

    def lower(self, syn: Conv1d, wq, e: int, mode: str, msg_bits: int, num) -> FxConv1d:
        dense = Conv1d(syn.name, weight=wq, dilation=syn.dilation).dense_kernel()
        return FxConv1d(syn.name, weight=dense[:, :, None, :], stride=(1, syn.stride),
                        padding=(0, syn.padding), groups=syn.groups,
                        num_message_bits=msg_bits)


class _LIFRule(_Planned):
    """LIF -> FxLIF, quantised with the synapse feeding it (through an attention layer,
    which is then lowered to the co-processor at the same scale)."""

    def plan(self, node: LIF, plan: _Plan) -> None:
        graph, name = plan.graph, node.name
        preds = graph.inputs(name)
        atts = [p for p in preds if isinstance(QUANTIZE.get(graph.node(p)), _AttentionRule)]
        att = graph.node(atts[0]) if len(atts) == 1 else None
        feeds = graph.inputs(att.name) if att is not None else []
        if att is not None and len(feeds) == 1:   # the attention's synapse, in its place
            preds = [feeds[0] if p == att.name else p for p in preds]
        rules = [QUANTIZE.get(graph.node(p)) for p in preds]
        if not preds or not all(isinstance(r, _SynapseRule) for r in rules) \
                or len(atts) > 1 or (att is not None and len(feeds) != 1):
            raise UnsupportedError(f"{name}: a LIF must be fed by Dense, Conv2d or Conv1d "
                                   "layers (their currents add; one of them optionally "
                                   "through an attention layer)")
        syns = [graph.node(p) for p in preds]
        bits = [_msg_bits(s.name, graph.kind(graph.inputs(s.name)[0]), graph.input_node().bits)
                for s in syns]
        fss, fl, rep = _quantize_pair(syns, node, bits, plan.calib.get(name), plan.spec,
                                      plan.state_units)
        plan.fixed.update({s.name: fs for s, fs in zip(syns, fss)})
        plan.fixed[name] = fl
        syn_rule = rules[preds.index(feeds[0])] if att is not None else rules[0]
        plan.reports.append(rep)
        if att is not None:
            from .attention import lower_attention
            plan.lowered[att.name] = lower_attention(
                att, graph.shape(att.name), rep.scale, syn_rule.accumulator_bits,
                plan.calib.get("captured", {}).get(att.name), plan.spec)


class _AttentionRule:
    """Attention -> an FxCoproc computing its gains and one FxCoprocOut + FxGate per gain,
    chained on the current (lowered when the LIF it feeds was quantised)."""

    def emit(self, node: Attention, ins, plan: _Plan) -> None:
        if node.name not in plan.lowered:
            raise _not_here(node)
        coproc, chain, delayed = plan.lowered[node.name]
        plan.new.add(coproc, ins)
        current = ins[0]
        if delayed is not None:     # window mode: the gates read the buffered current
            plan.new.add(delayed, [coproc.name])
            current = delayed.name
        for _, out, gate in chain:
            plan.new.add(out, [coproc.name])
            plan.new.add(gate, [current, out.name])
            current = gate.name
        plan.rename[node.name] = current


class _NotFolded:
    """A pool: folded into the next synapse by `fold_pools`, never quantised itself."""

    def emit(self, node, ins, plan: _Plan) -> None:
        raise _not_here(node)


for _type in (Flatten, Output):
    QUANTIZE.add(_type, _Keep())
QUANTIZE.add(Input, _InputRule())
QUANTIZE.add(Dense, _DenseRule())
QUANTIZE.add(RecDense, _RecurrentRule())
QUANTIZE.add(Conv2d, _ConvRule())
QUANTIZE.add(Conv1d, _Conv1dRule())
QUANTIZE.add(LIF, _LIFRule())
QUANTIZE.add(Attention, _AttentionRule())
QUANTIZE.add(SumPool2d, _NotFolded())     # and AvgPool2d, its subclass
QUANTIZE.add(SumPool1d, _NotFolded())     # and AvgPool1d


def _quantize_pair(syns: list, lif: LIF, msg_bits: list[int], stats, spec: TargetSpec,
                   state_units: int):
    """(fixed synapses, FxLIF, LayerQuant) for the synapses feeding one LIF (one, or a
    residual block's body and shortcut, whose currents add: they share the LIF's scale, each
    with its own weight exponent), at the largest scale every limit allows."""
    num = spec.numerics
    name = lif.name
    stats_w = [_WeightStats(syn.weight) for syn in syns]
    bias = np.broadcast_to(np.asarray(lif.bias, dtype=np.float64), lif.shape)
    for syn, ws in zip(syns, stats_w):
        if not ws.finite:
            raise QuantizationError(f"{syn.name}: weight contains NaN or inf")
    if not np.all(np.isfinite(bias)):
        raise QuantizationError(f"{name}: bias contains NaN or inf")
    if not lif.lava_lif and not num.programmable_neurons:
        raise UnsupportedError(f"{name}: LIF reset '{lif.reset}' / fire_at '{lif.fire_at}' "
                               f"needs programmable neurons; target {spec.name} has only "
                               "Loihi 1's compartment (reset to 0, spike at v > vth)")
    if per_neuron(lif) and not num.programmable_neurons:
        raise UnsupportedError(f"{name}: per-neuron du/dv/vth need programmable neurons; "
                               f"target {spec.name} shares them through Loihi 1's compartment "
                               "profiles, whose per-core count its sources do not give; use "
                               "one value per layer")
    theta_all = np.asarray(lif.vth, dtype=np.float64)
    theta = float(theta_all.max())      # the largest threshold bounds the scale
    if not np.all(theta_all > 0) or not math.isfinite(theta):
        raise QuantizationError(f"{name}: threshold ({_span(theta_all, '.4g')}) must be a "
                                "finite value > 0")
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
    for syn in syns:
        caps.update(_synapse_bias_cap(syn, num, len(syns) > 1))
    for syn, ws in zip(syns, stats_w):
        syn_rule = QUANTIZE.rule(syn)
        mode, lo, hi = ws.sign_mode()
        if ws.absmax > 0:
            which = f" ({syn.name})" if len(syns) > 1 else ""
            caps["weight mantissa" + syn_rule.limit_note + which] = \
                (hi if mode != "inhibitory" else -lo) * 2.0 ** syn_rule.exponent_range(num)[1] \
                / ws.absmax
    limited_by = min(caps, key=caps.get)
    sigma = caps[limited_by]
    if not (sigma > 0 and math.isfinite(sigma)):   # e.g. a weight of 1e38 overflowed calib
        m = max(ws.absmax for ws in stats_w)
        raise QuantizationError(f"{name}: no fixed-point scale fits ({limited_by} allows "
                                f"{sigma:.3g}); weights reach {m:.3g}, threshold {theta:.3g}")
    lowered = [_lower_synapse(syn, ws, sigma, bits, num)
               for syn, ws, bits in zip(syns, stats_w, msg_bits)]
    # --- threshold
    vth, vth_err = _threshold(name, lif.vth, sigma, limited_by, num)
    # --- decays (Loihi adds 1 to du: ds_offset; none to dv)
    du, du_eff = _decay(name, "du", lif.du, num.decay_unity, 1)
    dv, dv_eff = _decay(name, "dv", lif.dv, num.decay_unity, 0)
    bias_mant, bias_exp, bias_err = _bias_mant(name, bias, sigma, num,
                                               "; reduce the bias or the threshold")
    peak_frac = None
    if stats:
        peak_frac = max(stats["peak_u"], stats["peak_v"]) * sigma / state_units
    fl = FxLIF(name, shape=lif.shape, du=du, dv=dv, vth=vth,
               bias_mant=bias_mant.astype(np.int32), bias_exp=bias_exp, reset=lif.reset,
               fire_at=lif.fire_at)
    first = lowered[0][1]
    rep = LayerQuant(layer=name, synapse=syns[0].name, scale=float(sigma),
                     weight_exp=first["weight_exp"], sign_mode=first["sign_mode"],
                     weight_max_mant=first["weight_max_mant"],
                     weight_rel_error=first["weight_rel_error"], weights_clipped=0,
                     vth=_span(vth), vth_rel_error=vth_err, du=_span(du), dv=_span(dv),
                     du_eff=_span(du_eff, ".6g"), dv_eff=_span(dv_eff, ".6g"),
                     bias_exp=bias_exp,
                     bias_max_abs_error=bias_err, peak_state_fraction=peak_frac,
                     limited_by=limited_by, more_synapses=[info for _, info in lowered[1:]],
                     synapse_bias=[_bias_info(fs) | {"bias_max_abs_error":
                                                     info["bias_max_abs_error"]}
                                   for fs, info in lowered if "bias_exp" in info])
    return [fs for fs, _ in lowered], fl, rep


def _bias_info(fs) -> dict:
    return {"synapse": fs.name, "bias_exp": int(fs.bias_exp),
            "bias_max_mant": int(np.abs(fs.bias_mant).max(initial=0))
            if fs.bias_mant is not None else 0}


def _threshold(name: str, theta, sigma: float, limited_by: str, num):
    """(vth mantissa, largest relative rounding error): round(theta * sigma) for a
    threshold or for each neuron's (an array that holds one value becomes a scalar)."""
    t = np.asarray(theta, dtype=np.float64) * sigma
    vth = np.round(t).astype(np.int64)
    if vth.min() < 1:
        low = float(np.min(theta)) if isinstance(theta, np.ndarray) else theta
        raise QuantizationError(f"{name}: threshold {low} rounds to 0 at "
                                f"scale {sigma:.4g} (scale limited by {limited_by}); the "
                                "threshold is too small relative to the weights, the bias or "
                                "the layer's largest threshold")
    if vth.max() > num.vth_max:
        raise QuantizationError(f"{name}: threshold mantissa ({int(vth.max())}) exceeds "
                                f"{num.vth_max}")
    err = float(np.max(np.abs(vth - t) / t))
    if not isinstance(theta, np.ndarray) or np.all(vth == vth.flat[0]):
        return int(vth.flat[0]), err
    return vth, err


def _lower_synapse(syn, ws: "_WeightStats", sigma: float, msg_bits: int, num):
    """(fixed synapse, {synapse, weight_exp, sign_mode, weight_max_mant, weight_rel_error})
    at scale `sigma`: the smallest exponent that fits the largest weight in 8 bits."""
    syn_rule = QUANTIZE.rule(syn)      # a _SynapseRule: its exponents and lowering
    e_min, e_max = syn_rule.exponent_range(num)
    mode, lo, hi = ws.sign_mode()
    mant, m = (hi if mode != "inhibitory" else -lo), ws.absmax
    e = int(np.clip(math.ceil(math.log2(m * sigma / mant) - 1e-12), e_min, e_max)) \
        if m > 0 else 0
    wq, clipped, err_norm, max_mant = ws.quantize(sigma, e, 2 if mode == "mixed" else 1,
                                                  lo, hi)
    if clipped:
        raise QuantizationError(f"{syn.name}: {clipped} weights exceed the 8-bit mantissa "
                                f"range [{lo}, {hi}] at weight exponent {e}")
    info = {"synapse": syn.name, "weight_exp": e, "sign_mode": mode,
            "weight_max_mant": max_mant,
            "weight_rel_error": float(err_norm / max(ws.norm, 1e-30))}
    return _with_bias(syn_rule.lower(syn, wq, e, mode, msg_bits, num), syn, sigma, num,
                      info), info


# ------------------------------------------------------------------ synapse bias
def _synapse_bias_cap(syn, num, several: bool = False) -> dict:
    """The scale limit a synapse bias sets: b * sigma (output units: what the synapse adds
    to a_in every step) must fit an 8-bit bias axon mantissa at the largest exponent."""
    b = getattr(syn, "bias", None)
    if b is None:
        return {}
    bmax = float(np.abs(np.asarray(b, np.float64)).max(initial=0))
    if not math.isfinite(bmax):
        raise QuantizationError(f"{syn.name}: bias contains NaN or inf")
    if bmax == 0:
        return {}
    mode, lo, hi = _mode_of(float(np.min(b)), float(np.max(b)))
    return {"synapse bias" + (f" ({syn.name})" if several else ""):
            (hi if mode != "inhibitory" else -lo) * 2.0 ** num.weight_exp_max / bmax}


def _with_bias(fs, syn, sigma: float, num, info: dict):
    """`fs` with the synapse's bias as a bias axon (`FxDense.bias_mant`): B = b * sigma in
    the synapse's output units, mantissas in Lava's 8-bit range for their sign mode (mixed
    ones even), the smallest exponent in [0, weight_exp_max] that fits; `info` gets the
    exponent and the largest error in float units."""
    b = getattr(syn, "bias", None)
    if b is None:
        return fs
    target = np.asarray(b, np.float64) * sigma
    mode, lo, hi = _mode_of(float(target.min()), float(target.max()))
    step = 2 if mode == "mixed" else 1
    bmax = float(np.abs(target).max())
    e = 0
    top = hi if mode != "inhibitory" else -lo
    while bmax / 2 ** e > top and e < num.weight_exp_max:
        e += 1
    mant = np.round(target / 2 ** e / step) * step
    if mant.min() < lo or mant.max() > hi:
        raise QuantizationError(f"{syn.name}: synapse bias ({bmax:.4g} integer units) "
                                f"exceeds an 8-bit bias axon mantissa [{lo}, {hi}] at "
                                f"exponent {num.weight_exp_max}")
    info["bias_exp"] = e
    info["bias_max_abs_error"] = float(np.abs(mant * 2 ** e - target).max() / sigma)
    info["bias_axon"] = bool(np.any(mant))
    return dataclasses.replace(fs, bias_mant=mant.astype(np.int32), bias_exp=e)


def _bias_mant(name: str, bias: np.ndarray, sigma: float, num, hint: str = ""):
    """(bias_mant, bias_exp, largest error in float units): bias = bias_mant << bias_exp,
    in 24-bit state units (not shifted by 6), the smallest exponent that fits."""
    b_int = bias * sigma * (1 << num.act_shift)
    bmax = float(np.abs(b_int).max()) if b_int.size else 0.0
    bias_exp = 0
    while bmax / 2 ** bias_exp > num.bias_mant_max and bias_exp < num.bias_exp_max:
        bias_exp += 1
    bias_mant = np.round(b_int / 2 ** bias_exp)
    if np.abs(bias_mant).max(initial=0) > num.bias_mant_max:
        raise QuantizationError(
            f"{name}: bias ({bmax:.4g} state units) exceeds the largest representable bias "
            f"({num.bias_mant_max} << {num.bias_exp_max}){hint}")
    bias_err = float(np.abs(bias_mant * 2 ** bias_exp - b_int).max(initial=0)
                     / (sigma * (1 << num.act_shift)))
    return bias_mant, bias_exp, bias_err


# ------------------------------------------------------------------ leaky-integrator readout
class _LIRule(_Planned):
    """LI -> FxLI, quantised with the one synapse feeding it (`_quantize_li`)."""

    def plan(self, node: LI, plan: _Plan) -> None:
        graph, name = plan.graph, node.name
        preds = graph.inputs(name)
        syn_rule = QUANTIZE.get(graph.node(preds[0])) if len(preds) == 1 else None
        if not hasattr(syn_rule, "lower"):       # a _SynapseRule
            raise UnsupportedError(f"{name}: an LI readout must be fed by exactly one Dense "
                                   "or Conv2d layer")
        syn = graph.node(preds[0])
        src = graph.inputs(syn.name)[0]
        in_kind = graph.kind(src)
        msg_bits = _msg_bits(syn.name, in_kind, graph.input_node().bits)
        in_max = (max(abs(v) for v in graph.input_node().value_range())
                  if in_kind == "graded" else 1.0)
        fs, fx, rep = _quantize_li(syn, node, msg_bits, plan.calib.get(name), plan.spec,
                                   plan.state_units, in_max=in_max)
        plan.fixed[syn.name], plan.fixed[name] = fs, fx
        plan.reports.append(rep)


QUANTIZE.add(LI, _LIRule())


def _readout_peak_bound(ws_rows: np.ndarray, bias: np.ndarray, du_eff: float,
                        dv_eff: float, in_max: float) -> float | None:
    """A sure bound on max(|u|, |v|) without calibration: |x| <= in_max * sum_j |W'_ij|
    per output (row), |u| <= |x| / du_eff, |v| <= (|u| + |bias|) / dv_eff; None when a
    decay is 0 (a pure integrator grows with the number of steps)."""
    if du_eff <= 0 or dv_eff <= 0:
        return None
    u = in_max * ws_rows / du_eff
    v = (u + np.abs(bias).reshape(u.shape)) / dv_eff
    return float(max(u.max(initial=0), v.max(initial=0)))


def _li_caps(syn, li: LI, bias, stats, num, state_units: int, du_eff: float,
             dv_eff: float, in_max: float) -> dict:
    """Scale limit name -> the largest scale it allows, for a readout: the state headroom
    (calibrated, or a sure bound) and the bias range; no threshold (vth is vth_max)."""
    caps = {}
    if stats:
        peak = max(stats["peak_u"], stats["peak_v"])
        if peak > 0:
            caps["state headroom"] = state_units / (HEADROOM * peak)
    else:
        w = np.abs(np.asarray(syn.weight, dtype=np.float64))
        rows = w.reshape(w.shape[0], -1).sum(axis=1)           # per output channel
        if getattr(syn, "bias", None) is not None:               # the bias axon adds |b|
            rows = rows + np.abs(np.asarray(syn.bias, np.float64)) / max(in_max, 1e-30)
        rows = np.broadcast_to(rows.reshape((-1,) + (1,) * (len(li.shape) - 1)), li.shape)
        bound = _readout_peak_bound(rows, bias, du_eff, dv_eff, in_max)
        if bound is None:
            raise QuantizationError(
                f"{li.name}: a readout with du or dv 0 has no state bound without "
                "calibration data (its voltage grows with the steps); pass --calib FILE.npz")
        if bound > 0:
            caps["state headroom (uncalibrated: sure bound)"] = state_units / bound
    bias_abs = float(np.abs(bias).max(initial=0))
    if bias_abs > 0:  # bias_mant << bias_exp must hold bias * sigma * 64
        caps["bias range"] = (num.bias_mant_max << num.bias_exp_max) / (
            bias_abs * (1 << num.act_shift))
    return caps


def _quantize_li(syn, li: LI, msg_bits: int, stats, spec: TargetSpec, state_units: int,
                 *, in_max: float = 1.0):
    """(fixed synapse, FxLI, LayerQuant) for a leaky-integrator readout and its synapse: one
    scale sigma, the largest the weight mantissa, the 1.5x state headroom and the bias range
    allow (no threshold: vth is the mantissa maximum, never reached while the headroom
    holds); weights, weight_exp and bias as `_quantize_pair`; the read value is
    v_int / (64 sigma) + offset (`scale` = 64 sigma)."""
    num = spec.numerics
    syn_rule = QUANTIZE.rule(syn)
    name = li.name
    ws = _WeightStats(syn.weight)
    bias = np.broadcast_to(np.asarray(li.bias, dtype=np.float64), li.shape)
    if not ws.finite:
        raise QuantizationError(f"{syn.name}: weight contains NaN or inf")
    if not np.all(np.isfinite(bias)):
        raise QuantizationError(f"{name}: bias contains NaN or inf")
    mode, lo, hi = ws.sign_mode()
    mant = hi if mode != "inhibitory" else -lo
    m = ws.absmax
    du, du_eff = _decay(name, "du", li.du, num.decay_unity, 1)
    dv, dv_eff = _decay(name, "dv", li.dv, num.decay_unity, 0)
    caps = _li_caps(syn, li, bias, stats, num, state_units, du_eff, dv_eff, in_max)
    caps.update(_synapse_bias_cap(syn, num))
    e_min, e_max = syn_rule.exponent_range(num)
    if m > 0:
        caps["weight mantissa" + syn_rule.limit_note] = mant * 2.0 ** e_max / m
    if not caps:
        raise QuantizationError(f"{name}: the readout's weights and bias are all 0: no "
                                "scale to choose")
    limited_by = min(caps, key=caps.get)
    sigma = caps[limited_by]
    if not (sigma > 0 and math.isfinite(sigma)):
        raise QuantizationError(f"{name}: no fixed-point scale fits ({limited_by} allows "
                                f"{sigma:.3g}); weights reach {m:.3g}")
    e = (int(np.clip(math.ceil(math.log2(m * sigma / mant) - 1e-12), e_min, e_max))
         if m > 0 else 0)
    wq, clipped, err_norm, max_mant = ws.quantize(sigma, e, 2 if mode == "mixed" else 1,
                                                  lo, hi)
    if clipped:
        raise QuantizationError(f"{syn.name}: {clipped} weights exceed the 8-bit mantissa "
                                f"range [{lo}, {hi}] at weight exponent {e}")
    bias_mant, bias_exp, bias_err = _bias_mant(name, bias, sigma, num)
    peak_frac = (max(stats["peak_u"], stats["peak_v"]) * sigma / state_units
                 if stats else None)
    binfo: dict = {}
    fs = _with_bias(syn_rule.lower(syn, wq, e, mode, msg_bits, num), syn, sigma, num, binfo)
    fx = FxLI(name, shape=li.shape, du=du, dv=dv, bias_mant=bias_mant.astype(np.int32),
              bias_exp=bias_exp, scale=float(sigma * (1 << num.act_shift)),
              offset=li.offset, decision=li.decision)
    rep = LayerQuant(layer=name, synapse=syn.name, scale=float(sigma), weight_exp=e,
                     sign_mode=mode, weight_max_mant=max_mant,
                     weight_rel_error=float(err_norm / max(ws.norm, 1e-30)),
                     weights_clipped=clipped, vth=num.vth_max, vth_rel_error=0.0,
                     du=du, dv=dv, du_eff=du_eff, dv_eff=dv_eff, bias_exp=bias_exp,
                     bias_max_abs_error=bias_err, peak_state_fraction=peak_frac,
                     limited_by=limited_by,
                     synapse_bias=[_bias_info(fs) | {"bias_max_abs_error":
                                                     binfo["bias_max_abs_error"]}]
                     if "bias_exp" in binfo else [])
    return fs, fx, rep


def _msg_bits(name: str, in_kind: str, input_bits: int) -> int:
    """0 for binary spikes; the graded payload width for graded (integer) inputs."""
    if in_kind == "spikes":
        return 0
    if in_kind == "graded":
        return input_bits
    raise GraphError(f"{name}: receives real values ('{in_kind}'); fold pools first")
