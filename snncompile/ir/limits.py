"""Range checks of a fixed-point graph read from a build: a build is as untrusted as a
checkpoint, so every integer field is checked against the target's numerics before a
simulator, the reference or Lava sees it (one place, one rule per node type).

    >>> check_fixed_graph(graph, spec.numerics, where="model.build/graph.json")

Limits are the target's (`targets/*.toml` [numerics]): weight mantissas within
`weight_bits` (Lava clips to [-2**8, 2**8 - 1]), weight exponents within
[weight_exp_min, weight_exp_max], du and dv 12-bit, vth within the `vth_mant_bits`
mantissa, bias mantissas within `bias_mant_bits` and exponents within [0, bias_exp_max].
Graphs imported from lava-dl netx files (meta frontend "netx") keep netx's own, wider
conventions, which the netx importer enforces the same way (snncompile.frontends.
netx_import): du = iDecay - 1 may be -1, vth and bias below 2**25 with bias_exp 6, conv
weights within 24 bits. Every value is also capped so that int64 arithmetic cannot
overflow, whatever the target file says. A violation raises `InputFileError`:
`<where>: node 'NAME': FIELD (VALUE) outside [LO, HI] (LIMIT); recompile`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputFileError
from snncompile.backends.sim.fixed import prepare_weights
from .nodes import (FLOAT_TYPES, FxConv2d, FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate,
                    FxLI, FxLIF, FxSigmaDelta, Input, Node)

MAX_ELEMENTS = 1 << 24     # neurons per node (a Loihi 2 chip holds about 2**20)
MAX_WEIGHTS = 1 << 28      # synapses per node
MAX_LOOP_STEPS = 1 << 16   # loop delays, strides, paddings, upsampling
MAX_BITS = 32              # message and input widths: Lava's int32 registers
SDNN_SAFE = 1 << 19        # sigma-delta vth, bias: scaled by 2**12 in int32 (netx import)
NETX_SAFE = 1 << 25        # CUBA vth, bias: << 6 must stay inside int32 (netx import)
NETX_BIAS_EXP = 6
CAP_WEIGHT_BITS = 24       # caps on a target file's own numbers (int64 headroom)
CAP_EXP = 24
CAP_MANT_BITS = 26


@dataclasses.dataclass(frozen=True)
class _Ctx:
    where: str
    num: object            # target Numerics
    netx: bool             # graph imported from a netx file
    graph: object = None

    def weight_bits(self) -> int:
        return min(int(self.num.weight_bits), CAP_WEIGHT_BITS)

    def fail(self, node: Node, field: str, value, lo, hi, limit: str):
        raise InputFileError(f"{self.where}: node '{node.name}': {field} ({value}) outside "
                             f"[{lo}, {hi}] ({limit}); recompile")

    def scalar(self, node: Node, field: str, lo: int, hi: int, limit: str) -> None:
        value = getattr(node, field)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not lo <= value <= hi:
            self.fail(node, field, value, lo, hi, limit)

    def array(self, node: Node, field: str, lo: int, hi: int, limit: str,
              max_size: int = MAX_WEIGHTS) -> None:
        a = getattr(node, field)
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
            kind = getattr(getattr(a, "dtype", None), "name", type(a).__name__)
            raise InputFileError(f"{self.where}: node '{node.name}': {field} has dtype "
                                 f"{kind}, not integers; recompile")
        if a.size > max_size:
            self.fail(node, f"{field} size", a.size, 0, max_size, "elements")
        if a.size:
            amin, amax = int(a.min()), int(a.max())
            if amin < lo or amax > hi:
                self.fail(node, field, amin if amin < lo else amax, lo, hi, limit)


_CHECKS: dict[type, object] = {}


def _check(cls):
    def register(fn):
        _CHECKS[cls] = fn
        return fn
    return register


def check_fixed_graph(graph, numerics, where: str = "graph") -> None:
    """Refuse a fixed-point graph whose fields lie outside what the target (or, for a
    netx import, netx and Lava) can hold; see the module docstring."""
    ctx = _Ctx(where, numerics, graph.meta.get("frontend") == "netx", graph)
    for name in graph.g.nodes:
        node = graph.node(name)
        if isinstance(node, FLOAT_TYPES):
            raise InputFileError(f"{where}: node '{name}' is a float {type(node).__name__} "
                                 "in a fixed-point graph; recompile")
        shape = graph.shape(name)
        size = int(np.prod(shape, dtype=np.float64))
        if any(s < 0 for s in shape) or size > MAX_ELEMENTS:
            ctx.fail(node, "shape", list(shape), 1, MAX_ELEMENTS, "elements per node")
        for cls in type(node).__mro__:
            if cls in _CHECKS:
                _CHECKS[cls](ctx, node, shape)
                break


def _message_bits(ctx: _Ctx, node: Node, lo: int = 0) -> None:
    ctx.scalar(node, "num_message_bits", lo, MAX_BITS, "int32 messages")


@_check(Input)
def _input(ctx: _Ctx, node: Input, shape) -> None:
    ctx.scalar(node, "bits", 1, MAX_BITS, "int32 inputs")


@_check(FxDense)
def _dense(ctx: _Ctx, node: FxDense, shape) -> None:
    wb, num = ctx.weight_bits(), ctx.num
    ctx.array(node, "weight", -(1 << wb), (1 << wb) - 1, f"{num.weight_bits}-bit mantissas")
    lo, hi = max(num.weight_exp_min, -CAP_EXP), min(num.weight_exp_max, CAP_EXP)
    ctx.scalar(node, "weight_exp", lo, hi, "the target's weight exponent range")
    if node.sign_mode not in ("mixed", "excitatory", "inhibitory"):
        raise InputFileError(f"{ctx.where}: node '{node.name}': sign_mode "
                             f"'{node.sign_mode}' is not mixed, excitatory or inhibitory; "
                             "recompile")
    ctx.scalar(node, "num_weight_bits", 1, wb + int(node.sign_mode == "mixed"),
               f"{num.weight_bits}-bit weights")
    # stored mantissas are what Lava uses: its clip and truncation leave them unchanged
    w = node.weight
    prepared = prepare_weights(w, node.sign_mode, node.num_weight_bits, max_bits=wb)
    if not np.array_equal(prepared, w):
        i = np.unravel_index(int(np.argmax(prepared != w)), w.shape)
        raise InputFileError(f"{ctx.where}: node '{node.name}': weight{list(i)} "
                             f"({int(w[i])}) is not a {node.num_weight_bits}-bit "
                             f"{node.sign_mode} mantissa (Lava would use {int(prepared[i])});"
                             " recompile")
    _message_bits(ctx, node)


@_check(FxConv2d)
def _conv(ctx: _Ctx, node: FxConv2d, shape) -> None:
    if ctx.netx:  # Lava's Conv wraps to 24 bits and does not clip its weights
        half = 1 << (min(ctx.num.state_bits, 32) - 1)
        ctx.array(node, "weight", -half + 1, half - 1, "24-bit conv weights (netx)")
    else:
        wb = ctx.weight_bits()
        ctx.array(node, "weight", -(1 << wb), (1 << wb) - 1,
                  f"{ctx.num.weight_bits}-bit mantissas")
    for field, lo in (("stride", 1), ("padding", 0)):
        for value in getattr(node, field):
            if not lo <= value <= MAX_LOOP_STEPS:
                ctx.fail(node, field, list(getattr(node, field)), lo, MAX_LOOP_STEPS, field)
    ctx.scalar(node, "groups", 1, MAX_ELEMENTS, "groups")
    _message_bits(ctx, node)


def _bias_shape(ctx: _Ctx, node: Node, shape) -> None:
    b = node.bias_mant
    try:
        ok = isinstance(b, np.ndarray) and np.broadcast_shapes(b.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise InputFileError(f"{ctx.where}: node '{node.name}': bias_mant of shape "
                             f"{getattr(b, 'shape', None)} does not fit the neurons "
                             f"{tuple(shape)}; recompile")


@_check(FxLIF)
def _lif(ctx: _Ctx, node: FxLIF, shape) -> None:
    num = ctx.num
    unity = 1 << min(int(num.decay_bits), 12)
    ctx.scalar(node, "du", -1 if ctx.netx else 0, unity - 1,
               f"{num.decay_bits}-bit decay" + (", netx iDecay - 1" if ctx.netx else ""))
    ctx.scalar(node, "dv", 0, unity, f"{num.decay_bits}-bit decay")
    if not node.lava_lif and not num.programmable_neurons:
        raise InputFileError(f"{ctx.where}: node '{node.name}': reset '{node.reset}' / "
                             f"fire_at '{node.fire_at}' needs programmable neurons, which "
                             "this target lacks; recompile")
    _bias_shape(ctx, node, shape)
    if ctx.netx:
        ctx.scalar(node, "vth", 0, NETX_SAFE - 1, "netx vThMant, int32 after << 6")
        ctx.array(node, "bias_mant", -NETX_SAFE + 1, NETX_SAFE - 1,
                  "netx bias, int32 after << 6", MAX_ELEMENTS)
        ctx.scalar(node, "bias_exp", 0, NETX_BIAS_EXP, "netx bias exponent")
        return
    vth_max = (1 << min(int(num.vth_mant_bits), CAP_MANT_BITS)) - 1
    ctx.scalar(node, "vth", 0, vth_max, f"{num.vth_mant_bits}-bit threshold mantissa")
    bmax = (1 << (min(int(num.bias_mant_bits), CAP_MANT_BITS) - 1)) - 1
    ctx.array(node, "bias_mant", -bmax - 1, bmax, f"{num.bias_mant_bits}-bit bias mantissa",
              MAX_ELEMENTS)
    ctx.scalar(node, "bias_exp", 0, min(int(num.bias_exp_max), 7),
               "the target's bias exponent range")


@_check(FxLI)
def _li(ctx: _Ctx, node: FxLI, shape) -> None:
    """The readout runs as a CUBA compartment at the largest threshold: its decays, bias
    mantissa and exponent have FxLIF's target limits; its read scale must be usable."""
    num = ctx.num
    unity = 1 << min(int(num.decay_bits), 12)
    ctx.scalar(node, "du", 0, unity - 1, f"{num.decay_bits}-bit decay")
    ctx.scalar(node, "dv", 0, unity, f"{num.decay_bits}-bit decay")
    _bias_shape(ctx, node, shape)
    bmax = (1 << (min(int(num.bias_mant_bits), CAP_MANT_BITS) - 1)) - 1
    ctx.array(node, "bias_mant", -bmax - 1, bmax, f"{num.bias_mant_bits}-bit bias mantissa",
              MAX_ELEMENTS)
    ctx.scalar(node, "bias_exp", 0, min(int(num.bias_exp_max), 7),
               "the target's bias exponent range")
    if not (np.isfinite(node.scale) and node.scale > 0):
        raise InputFileError(f"{ctx.where}: node '{node.name}': scale ({node.scale}) is not "
                             "a finite number > 0; recompile")
    if not np.all(np.isfinite(node.offset)):
        raise InputFileError(f"{ctx.where}: node '{node.name}': offset is not finite; "
                             "recompile")


@_check(FxSigmaDelta)
def _sigma_delta(ctx: _Ctx, node: FxSigmaDelta, shape) -> None:
    ctx.scalar(node, "vth", 0, SDNN_SAFE - 1, "int32 after scaling by 2**12")
    _bias_shape(ctx, node, shape)
    ctx.array(node, "bias_mant", -SDNN_SAFE + 1, SDNN_SAFE - 1,
              "int32 after scaling by 2**12", MAX_ELEMENTS)
    _message_bits(ctx, node, lo=1)


@_check(FxGate)
def _gate(ctx: _Ctx, node: FxGate, shape) -> None:
    ctx.scalar(node, "shift", 0, MAX_BITS - 1, "int32 gains")
    ctx.scalar(node, "gain_bits", 1, 16, "gain width")
    for value in node.upsample:
        if not 1 <= value <= MAX_LOOP_STEPS:
            ctx.fail(node, "upsample", list(node.upsample), 1, MAX_LOOP_STEPS, "upsampling")


@_check(FxDelay)
def _delay(ctx: _Ctx, node: FxDelay, shape) -> None:
    ctx.scalar(node, "steps", 1, MAX_LOOP_STEPS, "loop delay")
    ctx.scalar(node, "latency", -MAX_LOOP_STEPS, MAX_LOOP_STEPS, "loop latency")
    ctx.scalar(node, "target_depth", 0, MAX_LOOP_STEPS, "depth")
    ctx.scalar(node, "init", -(1 << 24), 1 << 24, "initial gain")
    # the loop's timing is implied by the graph (FxDelay docstring): latency = steps +
    # depth(source) - depth(target); a re-declared one reads history that does not exist
    g = ctx.graph
    srcs, outs = g.inputs(node.name), g.outputs(node.name)
    d_src = g.depth(srcs[0]) if len(srcs) == 1 else None
    d_out = {g.depth(o) for o in outs}
    if d_src is None or d_out != {node.target_depth} or \
            node.latency != node.steps + d_src - node.target_depth:
        raise InputFileError(
            f"{ctx.where}: node '{node.name}': latency {node.latency} / target_depth "
            f"{node.target_depth} do not match the loop (steps {node.steps}, source depth "
            f"{d_src}, target depth {sorted(d_out)}: latency = steps + source depth - "
            "target depth); recompile")


@_check(FxCoproc)
def _coproc(ctx: _Ctx, node: FxCoproc, shape) -> None:
    for key, a in node.arrays.items():
        if a.dtype.kind not in "iub" or a.size > MAX_WEIGHTS:
            raise InputFileError(f"{ctx.where}: node '{node.name}': co-processor array "
                                 f"'{key}' ({a.dtype.name}, {a.size} elements) is not an "
                                 f"integer array of at most {MAX_WEIGHTS}; recompile")
        if a.size and (int(a.min()) < -(1 << 31) or int(a.max()) >= 1 << 32):
            ctx.fail(node, f"arrays[{key}]", int(a.max()), -(1 << 31), (1 << 32) - 1,
                     "32-bit co-processor integers")


@_check(FxCoprocOut)
def _coproc_out(ctx: _Ctx, node: FxCoprocOut, shape) -> None:
    """Its declared port and shape are the co-processor graph's."""
    srcs = ctx.graph.inputs(node.name)
    src = ctx.graph.node(srcs[0]) if len(srcs) == 1 else None
    if not isinstance(src, FxCoproc):
        raise InputFileError(f"{ctx.where}: node '{node.name}': an FxCoprocOut must read "
                             "one FxCoproc; recompile")
    cg = src.cgraph
    if node.port not in cg.outputs or \
            tuple(src.port_spec(node.port).shape) != tuple(shape):    # per step
        want = {o: list(src.port_spec(o).shape) for o in cg.outputs}
        raise InputFileError(f"{ctx.where}: node '{node.name}': port {node.port!r} of shape "
                             f"{list(shape)} is not an output of '{src.name}' ({want}); "
                             "recompile")


def check_float_graph(graph, where: str = "graph") -> None:
    """A build's float graph (used for float-vs-compiled accuracy): real, finite arrays of
    bounded size, only float-stage node types, bounded shapes."""
    from .nodes import FIXED_TYPES
    for name in graph.g.nodes:
        node = graph.node(name)
        if isinstance(node, FIXED_TYPES):
            raise InputFileError(f"{where}: node '{name}' is a fixed-point "
                                 f"{type(node).__name__} in the float graph; recompile")
        size = int(np.prod(graph.shape(name), dtype=np.float64))
        if size > MAX_ELEMENTS:
            raise InputFileError(f"{where}: node '{name}': shape {list(graph.shape(name))} "
                                 f"exceeds {MAX_ELEMENTS} elements; recompile")
        for f in dataclasses.fields(node):
            a = getattr(node, f.name)
            if not isinstance(a, np.ndarray):
                continue
            if a.dtype.kind not in "fiub" or a.size > MAX_WEIGHTS or \
                    (a.dtype.kind == "f" and not np.isfinite(a).all()):
                raise InputFileError(f"{where}: node '{name}': {f.name} ({a.dtype.name}, "
                                     f"{a.size} elements) must be finite real numbers, at "
                                     f"most {MAX_WEIGHTS}; recompile")


def check_attr_types(doc: dict, where: str) -> None:
    """Refuse a graph document whose integer attributes are floats or booleans (which the
    nodes would silently truncate: 2.5 bits becoming 2)."""
    from .nodes import NODE_TYPES
    for entry in doc.get("nodes", []) if isinstance(doc, dict) else []:
        if not isinstance(entry, dict):
            continue
        cls = NODE_TYPES.get(entry.get("op"))
        attrs = entry.get("attrs")
        if cls is None or not isinstance(attrs, dict):
            continue
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in attrs.items():
            want = types.get(key)
            ints = ("int", "tuple[int, int]", "tuple[int, ...]")
            if want in ints:
                values = value if isinstance(value, list) else [value]
                bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
                if bad:
                    raise InputFileError(f"{where}: node '{entry.get('name')}': {key} "
                                         f"({bad[0]!r}) must be an integer; recompile")
