"""Export a `CoprocGraph`'s per-step function as a standalone, integer-only ONNX model.

The model computes exactly `CoprocGraph.run_step`:

* inputs: one per graph input, shape (N, *shape), in the spec's dtype (int8 / uint8 /
  int32); then, for every stateful op, `state_in.<op>`: int64 (N, *op.state_shape(spec)),
  i.e. (N, k-1, *shape) for Window/History and (N, *shape) for Accumulate;
* outputs: one per graph output, in the spec's dtype (uint8 for gains); then
  `state_out.<op>` for every stateful op (feed it back as `state_in.<op>` next step);
* every intermediate tensor is int64 (constants too, except the uint8 LUT); no float
  tensor appears anywhere (`_assert_integer_only` checks).

Floor shift. ONNX `BitShift` is defined for unsigned types only, and integer `Div`
truncates toward zero (onnx/reference/ops/op_div.py does the same: floor_divide, then +1
where the signs differ and the remainder is non-zero). So with d = 2**s (or the element
count n of a mean):

    r = x & (d - 1)      # d = 2**s: int64 & is two's complement, so 0 <= r < d
    r = Mod(x, d)        # other d: fmod=0 takes the sign of the divisor, 0 <= r < d
    q = Div(x - r, d)    # x - r is an exact multiple of d: every Div rounding agrees

gives q = floor(x / d) = x >> s for every int64 x that the graph's static bound allows
(|x| < 2**61, so x - r cannot overflow).

Rounding to nearest, ties to even (ops with rounding "nearest_even"), for d = 2**s (s >= 1)
with one Div: the parity of floor(x / d) is bit s of x, and

    p  = Clip(x & d, 0, 1)                      # bit s of x: 0 or 1
    y  = Div(x + O + (d/2 - 1) + p, d) - O/d    # O = 2**62, a multiple of d

is floor((x + d/2 - 1 + p) / d) = `ops.shift_round`: the numerator is positive and below
2**63 because |x| < 2**61 (ops.INT64_SAFE_BITS), so truncation is the floor. For another
d (the element count n of a mean), from the q, r above:

    p  = q & 1                           # the parity of q: 0 or 1, also for q < 0
    up = Clip(2r + p - d, 0, 1)          # an integer: 1 iff 2r + p > d, else 0
    y  = q + up

which is `ops.div_round` term by term (there `up = (2r + p + d - 1) // 2d`, the same 0 or
1). Masks, Clip and one Div instead of Mod and two Divs where they are exact: onnx's
reference evaluator divides slowly and runs every node in Python, and the gates' Mul on
the whole current is rounded this way every step.

Opset 18, IR version 8. Example::

    model = export_onnx(cgraph, "attn.onnx")
    outs, state = run_onnx(model, cgraph, {"x": x_t}, state)   # onnx.reference
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GraphError, UnsupportedError
from .graph import CoprocGraph
from .ops import (INT64_SAFE_BITS, Accumulate, Add, Concat, Conv2d, History, Linear, Mul, Op,
                  ReduceMax, ReduceMean, Relu, Reshape, SigmoidLUT, Window)

OPSET = 18
IR_VERSION = 8
_INT_TYPES = {np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8",
              np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UnsupportedError("ONNX export needs the `onnx` package: pip install onnx") \
            from None
    return onnx


_OFFSET = 2 ** 62
"""Added before the one Div of a power-of-2 rounding: a multiple of every d <= 2**61 that
makes the numerator non-negative for |x| < 2**INT64_SAFE_BITS (= 2**61), far from 2**63."""
assert INT64_SAFE_BITS <= 61


def state_names(op: Op) -> tuple[str, str]:
    """(ONNX state input name, state output name) of a stateful op."""
    return f"state_in.{op.name}", f"state_out.{op.name}"


class _Builder:
    """Accumulates nodes and int64 constants; value names map to int64 tensor names."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes, self.inits = [], []
        self._n = 0

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}/{self._n}"

    def const(self, value, hint: str, dtype=np.int64) -> str:
        name = self.fresh(hint)
        arr = np.asarray(value, dtype=dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # -- exact integer helpers
    def _remainder(self, x: str, d: int, hint: str) -> str:
        """x mod d in [0, d) for d > 0: a mask for d = 2**s (int64 & is two's complement),
        else Mod with fmod=0 (the sign of the divisor)."""
        if d & (d - 1) == 0:
            return self.node("BitwiseAnd", [x, self.const(d - 1, f"{hint}/mask")],
                             f"{hint}/mod")
        return self.node("Mod", [x, self.const(d, f"{hint}/d")], f"{hint}/mod", fmod=0)

    def floor_div(self, x: str, d: int, hint: str) -> str:
        """floor(x / d) for d > 0, exact (see the module docstring)."""
        return self._floor_div(x, self._remainder(x, d, hint), d, hint) if d != 1 else x

    def _floor_div(self, x: str, r: str, d: int, hint: str) -> str:
        t = self.node("Sub", [x, r], f"{hint}/sub")
        return self.node("Div", [t, self.const(d, f"{hint}/d")], f"{hint}/div")

    def round_div(self, x: str, d: int, rounding: str, hint: str) -> str:
        """x / d for d >= 1 rounded as `rounding` (floor / nearest_even), exact."""
        if d == 1 or rounding == "floor":
            return self.floor_div(x, d, hint)
        if d & (d - 1) == 0:     # 2**s, s >= 1: one Div of a non-negative numerator
            par = self.clip(self.node("BitwiseAnd", [x, self.const(d, f"{hint}/bit")],
                                      f"{hint}/bit_s"), 0, 1, f"{hint}/parity")
            z = self.node("Add", [x, self.const(_OFFSET + d // 2 - 1, f"{hint}/off")],
                          f"{hint}/offset")
            q = self.node("Div", [self.node("Add", [z, par], f"{hint}/z"),
                                  self.const(d, f"{hint}/d")], f"{hint}/div")
            return self.node("Sub", [q, self.const(_OFFSET // d, f"{hint}/back")],
                             f"{hint}/rnd")
        r = self._remainder(x, d, hint)
        q = self._floor_div(x, r, d, hint)
        p = self.node("BitwiseAnd", [q, self.const(1, f"{hint}/one")], f"{hint}/parity")
        num = self.node("Add", [self.node("Add", [r, r], f"{hint}/2r"), p], f"{hint}/2rp")
        num = self.node("Sub", [num, self.const(d, f"{hint}/dd")], f"{hint}/num")
        up = self.clip(num, 0, 1, f"{hint}/up")
        return self.node("Add", [q, up], f"{hint}/rnd")

    def shift(self, x: str, s: int, rounding: str, hint: str) -> str:
        """x / 2**s rounded as `rounding` (the ops' `shift_round`)."""
        return self.round_div(x, 2 ** int(s), rounding, hint) if s else x

    def clip(self, x: str, lo: int, hi: int, hint: str) -> str:
        return self.node("Clip", [x, self.const(lo, f"{hint}/lo"),
                                  self.const(hi, f"{hint}/hi")], f"{hint}/clip")

    def clip_bits(self, x: str, bits: int, hint: str) -> str:
        return self.clip(x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, hint)

    def move_last(self, x: str, ax: int, ndim: int, hint: str, back: bool = False) -> str:
        """Transpose tensor axis `ax` (of ndim) to the end (or back from the end)."""
        if ax == ndim - 1:
            return x
        perm = [i for i in range(ndim) if i != ax] + [ax]
        if back:
            perm = list(np.argsort(perm))
        return self.node("Transpose", [x], f"{hint}/transpose", perm=[int(p) for p in perm])


def _lower(b: _Builder, op: Op, xs: list[str], cg: CoprocGraph, state_in: str | None):
    """Emit nodes for one op; return (int64 result, state out or None)."""
    specs = [cg.specs[i] for i in op.inputs]
    hint = op.name
    if isinstance(op, Linear):
        nd = len(specs[0].shape) + 1
        ax = op.axis % (nd - 1) + 1
        x = b.move_last(xs[0], ax, nd, hint)
        acc = b.node("MatMul", [x, b.const(op.weight.astype(np.int64).T, f"{hint}/wT")],
                     f"{hint}/matmul")
        if op.bias is not None:
            acc = b.node("Add", [acc, b.const(op.bias, f"{hint}/b")], f"{hint}/bias")
        y = b.clip_bits(b.shift(acc, op.shift, op.rounding, f"{hint}/shr"), op.out_bits, hint)
        return b.move_last(y, ax, nd, f"{hint}/back", back=True), None
    if isinstance(op, Conv2d):
        return _lower_conv(b, op, xs[0], specs[0]), None
    if isinstance(op, Relu):
        return b.node("Relu", xs, f"{hint}/relu"), None
    if isinstance(op, Add):
        return b.clip_bits(b.node("Add", xs, f"{hint}/add"), op.out_bits, hint), None
    if isinstance(op, Mul):
        p = b.node("Mul", xs, f"{hint}/mul")
        return b.clip_bits(b.shift(p, op.shift, op.rounding, f"{hint}/shr"), op.out_bits,
                           hint), None
    if isinstance(op, Concat):
        ax = op.axis % len(specs[0].shape) + 1
        return b.node("Concat", xs, f"{hint}/concat", axis=ax), None
    if isinstance(op, Reshape):
        return b.node("Reshape", [xs[0], b.const([0, *op.shape], f"{hint}/shape")],
                      f"{hint}/reshape"), None
    if isinstance(op, (ReduceMean, ReduceMax)):
        nd = len(specs[0].shape)
        axes = sorted(a % nd + 1 for a in op.axes)
        ax_c = b.const(axes, f"{hint}/axes")
        kd = int(op.keepdims)
        if isinstance(op, ReduceMax):
            return b.node("ReduceMax", [xs[0], ax_c], f"{hint}/max", keepdims=kd), None
        s = b.node("ReduceSum", [xs[0], ax_c], f"{hint}/sum", keepdims=kd)
        n = int(np.prod([specs[0].shape[a - 1] for a in axes]))
        return b.round_div(s, n, op.rounding, f"{hint}/mean"), None
    if isinstance(op, SigmoidLUT):
        v = b.clip(b.shift(xs[0], op.in_scale_shift, op.rounding, f"{hint}/shr"), op.lo,
                   -op.lo - 1, hint)
        idx = b.node("Sub", [v, b.const(op.lo, f"{hint}/lo_off")], f"{hint}/index")
        g = b.node("Gather", [b.const(op.table, f"{hint}/table", np.uint8), idx],
                   f"{hint}/gather", axis=0)
        return b.node("Cast", [g], f"{hint}/cast", to=b.onnx.TensorProto.INT64), None
    if isinstance(op, Window):  # History too (a subclass)
        xu = b.node("Unsqueeze", [xs[0], b.const([1], f"{hint}/ax1")], f"{hint}/unsq")
        full = b.node("Concat", [state_in, xu], f"{hint}/full", axis=1)
        st = b.node("Slice", [full, b.const([1], f"{hint}/start"),
                              b.const([op.k], f"{hint}/end"), b.const([1], f"{hint}/sax")],
                    f"{hint}/state")
        if isinstance(op, History):
            return full, st
        s = b.node("ReduceSum", [full, b.const([1], f"{hint}/wax")], f"{hint}/wsum",
                   keepdims=0)
        return b.clip_bits(s, op.out_bits, hint), st
    if isinstance(op, Accumulate):
        y = b.clip_bits(b.node("Add", [state_in, xs[0]], f"{hint}/add"), op.out_bits, hint)
        return y, y
    raise UnsupportedError(f"{op.name}: {type(op).__name__} has no ONNX lowering")


def _lower_conv(b: _Builder, op: Conv2d, x: str, spec) -> str:
    """Integer conv as im2col + MatMul (ONNX Conv is float-only; ConvInteger is 8-bit in,
    int32 out): each (dy, dx) tap is a strided Slice of the zero-padded input."""
    hint = op.name
    o, c, kh, kw = op.weight.shape
    (ph, pw), (sh, sw) = op.padding, op.stride
    _, h, w = spec.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ph or pw:
        pads = b.const([0, 0, ph, pw, 0, 0, ph, pw], f"{hint}/pads")
        x = b.node("Pad", [x, pads], f"{hint}/pad", mode="constant")
    ax23 = b.const([2, 3], f"{hint}/ax23")
    steps = b.const([sh, sw], f"{hint}/steps")
    ax1 = b.const([1], f"{hint}/ax1")
    taps = []
    for dy in range(kh):
        for dx in range(kw):
            t = b.node("Slice", [x, b.const([dy, dx], f"{hint}/s"),
                                 b.const([dy + sh * (oh - 1) + 1, dx + sw * (ow - 1) + 1],
                                         f"{hint}/e"), ax23, steps], f"{hint}/tap")
            taps.append(b.node("Unsqueeze", [t, ax1], f"{hint}/unsq"))
    cols = b.node("Concat", taps, f"{hint}/cols", axis=1) if len(taps) > 1 else taps[0]
    cols = b.node("Reshape", [cols, b.const([0, kh * kw * c, oh, ow], f"{hint}/shape")],
                  f"{hint}/im2col")  # (N, taps * C, OH, OW), tap-major
    cols = b.node("Transpose", [cols], f"{hint}/nhwk", perm=[0, 2, 3, 1])
    wmat = op.weight.astype(np.int64).transpose(2, 3, 1, 0).reshape(kh * kw * c, o)
    acc = b.node("MatMul", [cols, b.const(wmat, f"{hint}/w")], f"{hint}/matmul")
    if op.bias is not None:
        acc = b.node("Add", [acc, b.const(op.bias, f"{hint}/b")], f"{hint}/bias")
    y = b.clip_bits(b.shift(acc, op.shift, op.rounding, f"{hint}/shr"), op.out_bits, hint)
    return b.node("Transpose", [y], f"{hint}/nchw", perm=[0, 3, 1, 2])


def build_onnx(cgraph: CoprocGraph, name: str = "coproc_step"):
    """The ONNX ModelProto of `cgraph.run_step` (see the module docstring)."""
    onnx = _require_onnx()
    b = _Builder(onnx)
    tp, h = onnx.TensorProto, onnx.helper
    g_in, g_out, vals = [], [], {}
    for nm, spec in cgraph.inputs.items():
        dt = getattr(tp, _INT_TYPES[spec.dtype])
        g_in.append(h.make_tensor_value_info(nm, dt, ["N", *spec.shape]))
        vals[nm] = b.node("Cast", [nm], f"{nm}/in", to=tp.INT64)
    state_outs = []
    for op in cgraph.ops:
        st_in = None
        if op.stateful:
            st_in, st_out = state_names(op)
            shape = ["N", *op.state_shape(cgraph.specs[op.inputs[0]])]
            g_in.append(h.make_tensor_value_info(st_in, tp.INT64, shape))
        y, st = _lower(b, op, [vals[i] for i in op.inputs], cgraph, st_in)
        vals[op.name] = y
        if op.stateful:
            b.nodes.append(h.make_node("Identity", [st], [st_out], name=st_out))
            state_outs.append(h.make_tensor_value_info(st_out, tp.INT64, shape))
    for o in cgraph.outputs:
        if o in cgraph.inputs:
            raise GraphError(f"output '{o}': is also a graph input; ONNX needs distinct "
                             "names (route it through an op)")
        spec = cgraph.specs[o]
        dt = getattr(tp, _INT_TYPES[spec.dtype])
        b.nodes.append(h.make_node("Cast", [vals[o]], [o], name=f"{o}/out", to=dt))
        g_out.append(h.make_tensor_value_info(o, dt, ["N", *spec.shape]))
    graph = h.make_graph(b.nodes, name, g_in, g_out + state_outs, initializer=b.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         ir_version=IR_VERSION, producer_name="snncompile.coproc")
    onnx.checker.check_model(model, full_check=True)
    _assert_integer_only(onnx, model)
    return model


def _assert_integer_only(onnx, model) -> None:
    allowed = {getattr(onnx.TensorProto, t) for t in _INT_TYPES.values()}
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    infos = (list(inferred.graph.input) + list(inferred.graph.output)
             + list(inferred.graph.value_info))
    for vi in infos:
        et = vi.type.tensor_type.elem_type
        if et not in allowed:
            raise GraphError(f"onnx export: tensor '{vi.name}' has non-integer type "
                             f"{onnx.TensorProto.DataType.Name(et)}")
    for init in model.graph.initializer:
        if init.data_type not in allowed:
            raise GraphError(f"onnx export: constant '{init.name}' is not an integer")


def export_onnx(cgraph: CoprocGraph, path: str | Path):
    """Write the per-step function of `cgraph` to `path` (ONNX, opset 18, integer tensors
    only, checked with `onnx.checker.check_model`). Returns the ModelProto.

    Example::

        export_onnx(cgraph, "ca.onnx")
    """
    onnx = _require_onnx()
    model = build_onnx(cgraph)
    onnx.save_model(model, str(path))
    return model


def _truncating_div():
    """ONNX `Div` for onnx's reference evaluator, the same function as its own
    (onnx/reference/ops/op_div.py: integers truncate toward zero) with the remainder taken
    as x - q * y instead of `np.remainder`, which divides a second time without numpy's
    fast division by a scalar: 8x faster on the gates' (N, C, H, W) currents.
    tests/test_coproc.py compares the two on edge values of both signs."""
    from onnx.reference.ops._op import OpRunBinaryNum

    class Div(OpRunBinaryNum):
        op_domain = ""

        def _run(self, a, b):
            if not issubclass(a.dtype.type, np.integer):
                return (np.divide(a, b).astype(a.dtype, copy=False),)
            if (b.size == 1 and b.ndim <= a.ndim and b.item() > 0
                    and issubclass(a.dtype.type, np.signedinteger)):
                # one positive divisor (every Div of the export): a negative numerator
                # plus b - 1, floored, is the quotient rounded toward zero
                d = b.reshape(()).astype(a.dtype)
                return (np.floor_divide(a + ((a >> (a.dtype.itemsize * 8 - 1)) & (d - 1)),
                                        d),)
            q = np.floor_divide(a, b)
            q += (q * b != a) & ((a < 0) != (b < 0))   # floor -> toward zero
            return (q,)

    return Div


def evaluator(model):
    """onnx's `ReferenceEvaluator` for an exported model, with `_truncating_div`."""
    _require_onnx()
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=[_truncating_div()])


def run_onnx(model, cgraph: CoprocGraph, inputs: dict[str, np.ndarray],
             state: dict[str, np.ndarray] | None = None):
    """One step of an exported model with `onnx.reference.ReferenceEvaluator`, in the
    calling convention of `CoprocGraph.run_step`: returns (outputs, new state)."""
    _require_onnx()
    from onnx.reference import ReferenceEvaluator

    n = len(next(iter(inputs.values())))
    if state is None:
        state = cgraph.init_state(n)
    feeds = {k: np.asarray(v).astype(cgraph.inputs[k].dtype) for k, v in inputs.items()}
    for op in cgraph.stateful_ops:
        feeds[state_names(op)[0]] = np.asarray(state[op.name], dtype=np.int64)
    ref = model if isinstance(model, ReferenceEvaluator) else evaluator(model)
    names = list(cgraph.outputs) + [state_names(op)[1] for op in cgraph.stateful_ops]
    res = dict(zip(names, ref.run(names, feeds)))
    outs = {o: res[o] for o in cgraph.outputs}
    new_state = {op.name: res[state_names(op)[1]] for op in cgraph.stateful_ops}
    return outs, new_state
