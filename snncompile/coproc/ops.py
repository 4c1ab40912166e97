"""Integer operations of the co-processor (embedded x86) branch of an attention SNN.

Every op is a small dataclass: `name` (unique; it is also the name of the op's output
value), `inputs` (the value names it reads) and its parameters. Run-time arithmetic is
integer only: inputs arrive as int64 arrays of shape (N, *shape) (a leading sample axis),
every intermediate result is int64, and the static check in `infer` proves that no int64
intermediate can overflow for inputs inside their declared widths. Conventions used in
the docstrings:

    a >> s         arithmetic (FLOOR) right shift: rounds toward -inf, -5 >> 1 == -3
    a // n         floor division (Python / numpy semantics), -5 // 4 == -2
    rnd(a / n)     a / n rounded to the nearest integer, ties to even (`div_round`):
                   rnd(5 / 2) == 2, rnd(7 / 2) == 4, rnd(-5 / 2) == -2, rnd(-6 / 4) == -2
    clip_b(a)      saturate to signed b bits: [-2**(b-1), 2**(b-1) - 1]

Rounding. Every op that shifts or divides has a `rounding` field: "floor" (the default:
a >> s, a // n) or "nearest_even" (rnd(a / 2**s), rnd(a / n)). A floor shift is biased: its
error a >> s - a / 2**s averages -(1 - 2**-s) / 2 of an output LSB, and chained shifts (an
attention gain applied three times, each result feeding the next) add their biases up.
Rounding to nearest with ties to even has zero mean error for inputs spread over the
residues, whatever their sign (ties go up as often as down; round half up would keep a
bias of +2**-(s+1) LSB, and round half away from zero one that depends on the sign
mix). In integers, for d = 2**s (s >= 1):

    rnd(a / d) = (a + d/2 - 1 + ((a >> s) & 1)) >> s

(an add, a shift, an AND, an add and a shift: what a Loihi 2 programmable neuron's
microcode or the x86 core computes exactly; without an AND, the parity bit is
(a >> s) - ((a >> (s+1)) << 1)). For any n >= 1, with q = a // n and
r = a - q * n in [0, n): rnd(a / n) = q + (2r + (q & 1) + n - 1) // (2n), whose last
division has a non-negative numerator below 4n (the ONNX export uses this form).

Axes (`axis`, `axes`) count per-sample axes, i.e. without the sample axis: for a value of
shape (C, H, W), axes (1, 2) are H and W.

Cost model (`counts`, per step and per sample, see `OpCounts`): one multiply (with or
without accumulate) is a MAC, one addition/subtraction an add, one max/min/ReLU a compare,
one table read a LUT lookup. Shifts and output saturation are fused into the op that
produces the value and are not counted.

Example::

    fc = Linear("fc1", ("pool",), weight=w_int8, bias=None, shift=4, out_bits=16)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import GraphError

INT64_SAFE_BITS = 61
"""Every intermediate magnitude must stay below 2**61: int64 with two bits of headroom for
the exact rounding of the ONNX export (x - mod(x, d); x + 2**62 + d/2 before one Div)."""

MAX_VALUE_BITS = 32
"""Widest value a graph input or op output may have (ports and ONNX I/O are int32)."""


# ---------------------------------------------------------------- value specs and counts
@dataclass(frozen=True)
class ValueSpec:
    """Shape (per sample), width and signedness of an integer value.

    signed: values in [-2**(bits-1), 2**(bits-1) - 1]; unsigned: [0, 2**bits - 1].
    """

    shape: tuple[int, ...]
    bits: int
    signed: bool = True

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "signed", bool(self.signed))

    @property
    def lo(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    @property
    def magnitude(self) -> int:
        """Largest |value|."""
        return max(-self.lo, self.hi)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        """Narrowest of int8 / uint8 / int32 / int64 that holds the range (I/O dtype)."""
        if self.signed:
            return np.dtype(np.int8 if self.bits <= 8 else
                            np.int32 if self.bits <= 32 else np.int64)
        return np.dtype(np.uint8 if self.bits <= 8 else
                        np.int32 if self.bits <= 31 else np.int64)

    def describe(self) -> str:
        return f"{'signed' if self.signed else 'unsigned'} {self.bits} bits {self.shape}"


@dataclass(frozen=True)
class OpCounts:
    """Operations per time step per sample (a value: add them, scale them by steps)."""

    macs: int = 0
    adds: int = 0
    compares: int = 0
    lut: int = 0

    def __add__(self, other: "OpCounts") -> "OpCounts":
        return OpCounts(*(a + b for a, b in zip(dataclasses.astuple(self),
                                                dataclasses.astuple(other))))

    def __mul__(self, k: int) -> "OpCounts":
        return OpCounts(*(a * int(k) for a in dataclasses.astuple(self)))

    __rmul__ = __mul__


ROUNDINGS = ("floor", "nearest_even")
"""Values of the `rounding` field of the ops that shift or divide (see the module docstring)."""

ROUNDING_ADDS = 2
"""Extra adds per output value of a "nearest_even" op in the cost model (rounding offset and
parity bit; the AND and the shift are fused like the shift itself)."""


def floor_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """x >> shift on int64: numpy's >> on signed ints is arithmetic, i.e. floor."""
    x = np.asarray(x, dtype=np.int64)
    return x >> np.int64(shift) if shift else x


def shift_round(x: np.ndarray, shift: int, rounding: str = "floor") -> np.ndarray:
    """x / 2**shift on int64, rounded as `rounding` says (see the module docstring):

        floor:         x >> s
        nearest_even:  (x + 2**(s-1) - 1 + ((x >> s) & 1)) >> s     (s >= 1; s = 0: x)

    Example::

        shift_round(np.array([-3, -2, 2, 3, 6]), 2, "nearest_even")   # [-1, 0, 0, 1, 2]
    """
    x = np.asarray(x, dtype=np.int64)
    shift = int(shift)
    if not shift:
        return x
    if rounding == "floor":
        return x >> np.int64(shift)
    if rounding != "nearest_even":
        raise GraphError(f"rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
    half = np.int64(1 << (shift - 1))
    return (x + (half - 1) + ((x >> np.int64(shift)) & 1)) >> np.int64(shift)


def div_round(x: np.ndarray, n: int, rounding: str = "floor") -> np.ndarray:
    """x / n on int64 for n >= 1, rounded as `rounding` says (see the module docstring):

        floor:         x // n
        nearest_even:  q + (2r + (q & 1) + n - 1) // (2n),  q = x // n, r = x - q * n
    """
    x = np.asarray(x, dtype=np.int64)
    n = int(n)
    if n == 1:
        return x
    if rounding == "floor":
        return np.floor_divide(x, n)
    if rounding != "nearest_even":
        raise GraphError(f"rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
    q, r = np.divmod(x, np.int64(n))
    return q + (2 * r + (q & 1) + (n - 1)) // np.int64(2 * n)


def clip_signed(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


# ---------------------------------------------------------------- base
@dataclass
class Op:
    """Base op. Subclasses define `infer`, `forward` and `counts`."""

    name: str
    inputs: tuple[str, ...] = ()
    #: number of inputs; None: one or more.
    arity: ClassVar[int | None] = 1
    #: True for ops with per-sample state carried across steps.
    stateful: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.inputs, str):
            self.inputs = (self.inputs,)
        self.inputs = tuple(str(i) for i in self.inputs)
        if self.arity is not None and len(self.inputs) != self.arity:
            self._fail(f"takes {self.arity} input(s), got {len(self.inputs)}")
        if self.arity is None and not self.inputs:
            self._fail("takes at least one input, got none")

    # -- helpers
    def _fail(self, what: str):
        raise GraphError(f"{self.name}: {type(self).__name__} {what}")

    def _check_bits(self, field: str, bits: int, lo: int = 1, hi: int = MAX_VALUE_BITS):
        if not lo <= int(bits) <= hi:
            self._fail(f"{field} ({bits}) outside [{lo}, {hi}]")

    def _check_shift(self, shift: int):
        if not 0 <= int(shift) <= INT64_SAFE_BITS:
            self._fail(f"shift ({shift}) outside [0, {INT64_SAFE_BITS}]")

    def _check_rounding(self, shift: int = 0):
        if not isinstance(self.rounding, str) or self.rounding not in ROUNDINGS:
            self._fail(f"rounding ({self.rounding!r}) is not one of {', '.join(ROUNDINGS)}")
        if self.rounding == "nearest_even" and shift > INT64_SAFE_BITS - 2:
            # the exact integer form divides a value below 4 * 2**shift (module docstring)
            self._fail(f"shift ({shift}) with rounding 'nearest_even' exceeds "
                       f"{INT64_SAFE_BITS - 2}")

    def _rounding_adds(self, n_out: int, rounded: bool = True) -> int:
        """Cost-model adds of rounding `n_out` values to nearest (0 for floor)."""
        return ROUNDING_ADDS * n_out if rounded and self.rounding == "nearest_even" else 0

    def _check_int64(self, bound: int, what: str):
        if bound >= 2 ** INT64_SAFE_BITS:
            self._fail(f"{what} can reach {bound} (>= 2**{INT64_SAFE_BITS}); use narrower "
                       "inputs or fewer terms")

    def _axes(self, axes, ndim: int) -> tuple[int, ...]:
        out = []
        for a in axes:
            if not -ndim <= a < ndim:
                self._fail(f"axis {a} out of range for a {ndim}-d value")
            out.append(a % ndim)
        if len(set(out)) != len(out):
            self._fail(f"repeats an axis in {tuple(axes)}")
        return tuple(sorted(out))

    # -- interface
    def infer(self, specs: list[ValueSpec]) -> ValueSpec:
        """Validate against the input specs; return the output spec (GraphError if bad)."""
        raise NotImplementedError

    def forward(self, xs: list[np.ndarray], state=None):
        """Batched step: xs are int64 (N, *shape); returns (y int64, new state)."""
        raise NotImplementedError

    def counts(self, specs: list[ValueSpec], out: ValueSpec) -> OpCounts:
        return OpCounts()

    def init_state(self, specs: list[ValueSpec], n: int):
        """Fresh state for n samples (stateful ops only): int64 (n, *state_shape)."""
        if not self.stateful:
            return None
        return np.zeros((int(n),) + self.state_shape(specs[0]), dtype=np.int64)

    def state_shape(self, spec: ValueSpec) -> tuple[int, ...]:
        """Per-sample state shape of a stateful op given its input spec."""
        raise NotImplementedError

    def state_bytes(self, spec: ValueSpec) -> int:
        """Per-sample state bytes at the stored values' width, bit-packed."""
        return 0

    def summary(self) -> str:
        return ""


def _int_array(op: Op, field: str, value, lo: int, hi: int, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.asarray(arr, dtype=np.float64) == np.round(arr)):
            op._fail(f"{field} has non-integer values")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        op._fail(f"{field} values [{arr.min()}, {arr.max()}] outside [{lo}, {hi}]")
    return arr.astype(dtype)


def _weights(op: Op) -> np.ndarray:
    """op.weight as int8 (weight_bits 8 or less) or int16, range-checked for weight_bits."""
    if isinstance(op.weight_bits, bool) or not isinstance(op.weight_bits, (int, np.integer)):
        op._fail(f"weight_bits ({op.weight_bits!r}) is not an integer")
    op.weight_bits = int(op.weight_bits)
    op._check_bits("weight_bits", op.weight_bits, 2, 16)
    lim = 2 ** (op.weight_bits - 1)
    return _int_array(op, "weight", op.weight, -lim, lim - 1,
                      np.int8 if op.weight_bits <= 8 else np.int16)


# ---------------------------------------------------------------- arithmetic
@dataclass
class Linear(Op):
    """Fully connected layer along one axis (shared MLPs; a 1x1 conv is `axis=0` on a
    (C, H, W) value).

        acc[o] = sum_i x[i] * weight[o, i] + bias[o]        (int64)
        y[o]   = clip_out_bits(acc[o] >> shift)             (rnd(acc[o] / 2**shift) if
                                                             rounding is "nearest_even")

    weight: int8 (out, in), or signed `weight_bits` (2..16) wide; bias: int32 (out,) or
    None; shift >= 0; out_bits <= 32, signed.
    """

    weight: np.ndarray = None
    bias: np.ndarray | None = None
    shift: int = 0
    out_bits: int = 16
    axis: int = -1
    rounding: str = "floor"
    weight_bits: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.weight is None or np.ndim(self.weight) != 2:
            self._fail("weight must be a 2-d (out, in) array")
        self.weight = _weights(self)
        if self.bias is not None:
            self.bias = _int_array(self, "bias", self.bias, -2 ** 31, 2 ** 31 - 1, np.int32)
            if self.bias.shape != (self.weight.shape[0],):
                self._fail(f"bias shape {self.bias.shape} is not ({self.weight.shape[0]},)")
        self.shift, self.out_bits, self.axis = int(self.shift), int(self.out_bits), int(self.axis)
        self._check_shift(self.shift)
        self._check_bits("out_bits", self.out_bits, 2)
        self._check_rounding(self.shift)

    def infer(self, specs):
        (x,) = specs
        if not x.shape:
            self._fail("needs an input with at least one axis")
        ax = self._axes((self.axis,), len(x.shape))[0]
        n_out, n_in = self.weight.shape
        if x.shape[ax] != n_in:
            self._fail(f"expects {n_in} features on axis {ax}, got input {x.shape}")
        bias = 0 if self.bias is None else 2 ** 31
        self._check_int64(n_in * 2 ** (self.weight_bits - 1) * x.magnitude + bias,
                          "the accumulator")
        shape = list(x.shape)
        shape[ax] = n_out
        return ValueSpec(tuple(shape), self.out_bits)

    def forward(self, xs, state=None):
        (x,) = xs
        ax = self.axis % (x.ndim - 1) + 1
        xm = np.moveaxis(x, ax, -1)
        acc = xm @ self.weight.astype(np.int64).T
        if self.bias is not None:
            acc = acc + self.bias.astype(np.int64)
        y = clip_signed(shift_round(acc, self.shift, self.rounding), self.out_bits)
        return np.moveaxis(y, -1, ax), None

    def counts(self, specs, out):
        n_out = self.weight.shape[0]
        positions = out.size // n_out
        return OpCounts(macs=out.size * self.weight.shape[1],
                        adds=(0 if self.bias is None else n_out * positions)
                        + self._rounding_adds(out.size, self.shift > 0))

    def summary(self):
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, {_shr(self)}"


@dataclass
class Conv2d(Op):
    """2-D cross-correlation (PyTorch convention) with zero padding, input (C, H, W):

        acc[o, i, j] = sum_{c, dy, dx} xpad[c, i*sh + dy, j*sw + dx] * weight[o, c, dy, dx]
                       + bias[o]                                  (int64)
        y = clip_out_bits(acc >> shift)        (rnd(acc / 2**shift) if "nearest_even")

    xpad is x with `padding` zeros on each side of H and W. weight: int8 OIHW (no groups),
    or signed `weight_bits` (2..16) wide; bias int32 (O,) or None; out_bits <= 32, signed.
    """

    weight: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: np.ndarray | None = None
    shift: int = 0
    out_bits: int = 16
    rounding: str = "floor"
    weight_bits: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.weight is None or np.ndim(self.weight) != 4:
            self._fail("weight must be a 4-d OIHW array")
        self.weight = _weights(self)
        if self.bias is not None:
            self.bias = _int_array(self, "bias", self.bias, -2 ** 31, 2 ** 31 - 1, np.int32)
            if self.bias.shape != (self.weight.shape[0],):
                self._fail(f"bias shape {self.bias.shape} is not ({self.weight.shape[0]},)")
        self.stride = tuple(int(s) for s in np.broadcast_to(self.stride, 2))
        self.padding = tuple(int(p) for p in np.broadcast_to(self.padding, 2))
        if min(self.stride) < 1 or min(self.padding) < 0:
            self._fail(f"stride {self.stride} / padding {self.padding} invalid")
        self.shift, self.out_bits = int(self.shift), int(self.out_bits)
        self._check_shift(self.shift)
        self._check_bits("out_bits", self.out_bits, 2)
        self._check_rounding(self.shift)

    def infer(self, specs):
        (x,) = specs
        if len(x.shape) != 3:
            self._fail(f"expects a (C, H, W) input, got {x.shape}")
        o, c, kh, kw = self.weight.shape
        if x.shape[0] != c:
            self._fail(f"expects {c} input channels, got {x.shape[0]}")
        oh = (x.shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (x.shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            self._fail(f"output would be empty for input {x.shape}")
        bias = 0 if self.bias is None else 2 ** 31
        self._check_int64(c * kh * kw * 2 ** (self.weight_bits - 1) * x.magnitude + bias,
                          "the accumulator")
        return ValueSpec((o, oh, ow), self.out_bits)

    def forward(self, xs, state=None):
        (x,) = xs
        o, _, kh, kw = self.weight.shape
        (ph, pw), (sh, sw) = self.padding, self.stride
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        oh = (xp.shape[2] - kh) // sh + 1
        ow = (xp.shape[3] - kw) // sw + 1
        w = self.weight.astype(np.int64)
        acc = np.zeros((x.shape[0], o, oh, ow), dtype=np.int64)
        for dy in range(kh):
            for dx in range(kw):
                tap = xp[:, :, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
                acc += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], tap)
        if self.bias is not None:
            acc += self.bias.astype(np.int64)[None, :, None, None]
        return clip_signed(shift_round(acc, self.shift, self.rounding), self.out_bits), None

    def counts(self, specs, out):
        _, c, kh, kw = self.weight.shape
        return OpCounts(macs=out.size * c * kh * kw,
                        adds=(0 if self.bias is None else out.size)
                        + self._rounding_adds(out.size, self.shift > 0))

    def summary(self):
        o, c, kh, kw = self.weight.shape
        return f"{c}->{o}, k{kh}x{kw}, s{self.stride[0]}, p{self.padding[0]}, {_shr(self)}"


@dataclass
class Relu(Op):
    """y = max(x, 0). Output: the input's width and signedness."""

    def infer(self, specs):
        return specs[0]

    def forward(self, xs, state=None):
        return np.maximum(xs[0], 0), None

    def counts(self, specs, out):
        return OpCounts(compares=out.size)


def _broadcast(op: Op, a: ValueSpec, b: ValueSpec) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        op._fail(f"inputs {a.shape} and {b.shape} do not broadcast")


@dataclass
class Add(Op):
    """y = clip_out_bits(a + b); per-sample shapes broadcast as numpy (and ONNX) do."""

    out_bits: int = 16
    arity: ClassVar[int] = 2

    def __post_init__(self):
        super().__post_init__()
        self.out_bits = int(self.out_bits)
        self._check_bits("out_bits", self.out_bits, 2)

    def infer(self, specs):
        return ValueSpec(_broadcast(self, *specs), self.out_bits)

    def forward(self, xs, state=None):
        return clip_signed(xs[0] + xs[1], self.out_bits), None

    def counts(self, specs, out):
        return OpCounts(adds=out.size)


@dataclass
class Mul(Op):
    """y = clip_out_bits((a * b) >> shift) (rnd(a * b / 2**shift) if "nearest_even");
    shapes broadcast. Applying an 8-bit gain g (255 = 255/256) to a current x is
    `Mul(shift=8)`: floor(x * g / 256), or with rounding "nearest_even" rnd(x * g / 256),
    which is what an `FxGate` with the same rounding computes on the neurocore."""

    shift: int = 0
    out_bits: int = 16
    rounding: str = "floor"
    arity: ClassVar[int] = 2

    def __post_init__(self):
        super().__post_init__()
        self.shift, self.out_bits = int(self.shift), int(self.out_bits)
        self._check_shift(self.shift)
        self._check_bits("out_bits", self.out_bits, 2)
        self._check_rounding(self.shift)

    def infer(self, specs):
        shape = _broadcast(self, *specs)
        self._check_int64(specs[0].magnitude * specs[1].magnitude, "the product")
        return ValueSpec(shape, self.out_bits)

    def forward(self, xs, state=None):
        return clip_signed(shift_round(xs[0] * xs[1], self.shift, self.rounding),
                           self.out_bits), None

    def counts(self, specs, out):
        return OpCounts(macs=out.size, adds=self._rounding_adds(out.size, self.shift > 0))

    def summary(self):
        return _shr(self)


@dataclass
class Concat(Op):
    """y = concatenation of the inputs along per-sample `axis`. Output width: wide enough
    for every input (signed if any input is signed)."""

    axis: int = 0
    arity: ClassVar[None] = None

    def __post_init__(self):
        super().__post_init__()
        self.axis = int(self.axis)

    def infer(self, specs):
        nd = len(specs[0].shape)
        if nd == 0:
            self._fail("cannot concatenate 0-d values")
        ax = self._axes((self.axis,), nd)[0]
        for s in specs[1:]:
            if len(s.shape) != nd or any(a != b for i, (a, b) in
                                         enumerate(zip(s.shape, specs[0].shape)) if i != ax):
                self._fail(f"input shapes {[t.shape for t in specs]} differ off axis {ax}")
        signed = any(s.signed for s in specs)
        bits = max(s.bits + (signed and not s.signed) for s in specs)
        shape = list(specs[0].shape)
        shape[ax] = sum(s.shape[ax] for s in specs)
        return ValueSpec(tuple(shape), bits, signed)

    def forward(self, xs, state=None):
        ax = self.axis % (xs[0].ndim - 1) + 1
        return np.concatenate(xs, axis=ax), None


@dataclass
class Reshape(Op):
    """y = x reshaped (C order) to per-sample `shape` (no -1): no arithmetic."""

    shape: tuple[int, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        self.shape = tuple(int(s) for s in self.shape)

    def infer(self, specs):
        (x,) = specs
        if int(np.prod(self.shape, dtype=np.int64)) != x.size or min(self.shape,
                                                                     default=1) < 1:
            self._fail(f"cannot reshape {x.shape} to {self.shape}")
        return ValueSpec(self.shape, x.bits, x.signed)

    def forward(self, xs, state=None):
        return xs[0].reshape((xs[0].shape[0],) + self.shape), None


# ---------------------------------------------------------------- pooling
@dataclass
class _Reduce(Op):
    """Shared fields of the reductions."""

    axes: tuple[int, ...] = ()
    keepdims: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.axes = tuple(int(a) for a in np.atleast_1d(self.axes))
        self.keepdims = bool(self.keepdims)
        if not self.axes:
            self._fail("needs at least one axis")

    def _reduced(self, x: ValueSpec) -> tuple[tuple[int, ...], int]:
        axes = self._axes(self.axes, len(x.shape))
        n = int(np.prod([x.shape[a] for a in axes]))
        if self.keepdims:
            shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        else:
            shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
        return shape, n

    def summary(self):
        return f"axes={self.axes}" + (", keepdims" if self.keepdims else "")


@dataclass
class ReduceMean(_Reduce):
    """Mean over per-sample `axes`, by division by the element count n:

        y = (sum over axes of x) // n          (rounding "floor": toward -inf)
        y = rnd((sum over axes of x) / n)      (rounding "nearest_even")

    Exact for every input (no reciprocal approximation); n need not be a power of two.
    keepdims keeps the reduced axes with size 1. Output: the input's width.
    """

    rounding: str = "floor"

    def __post_init__(self):
        super().__post_init__()
        self._check_rounding()

    def infer(self, specs):
        shape, n = self._reduced(specs[0])
        self._check_int64(n * specs[0].magnitude, "the sum")
        if self.rounding == "nearest_even":
            self._check_int64(4 * n, "the rounding numerator (4 * element count)")
        return ValueSpec(shape, specs[0].bits, specs[0].signed)

    def forward(self, xs, state=None):
        axes = tuple(a % (xs[0].ndim - 1) + 1 for a in self.axes)
        n = int(np.prod([xs[0].shape[a] for a in axes]))
        return div_round(xs[0].sum(axis=axes, keepdims=self.keepdims), n,
                         self.rounding), None

    def counts(self, specs, out):
        # the division by a constant is one multiply (reciprocal) on the x86 core
        n = specs[0].size // max(out.size, 1)
        return OpCounts(adds=specs[0].size - out.size + self._rounding_adds(out.size, n > 1),
                        macs=out.size)

    def summary(self):
        return super().summary() + ("" if self.rounding == "floor" else ", rnd")


@dataclass
class ReduceMax(_Reduce):
    """y = max over per-sample `axes` of x. Output: the input's width."""

    def infer(self, specs):
        shape, _ = self._reduced(specs[0])
        return ValueSpec(shape, specs[0].bits, specs[0].signed)

    def forward(self, xs, state=None):
        axes = tuple(a % (xs[0].ndim - 1) + 1 for a in self.axes)
        return xs[0].max(axis=axes, keepdims=self.keepdims), None

    def counts(self, specs, out):
        return OpCounts(compares=specs[0].size - out.size)


# ---------------------------------------------------------------- sigmoid gain
def make_sigmoid_table(in_bits: int, in_scale: float) -> np.ndarray:
    """Table for `SigmoidLUT` (built once, in float64, at compile time).

    Entry i is the gain for v = i + lo, lo = -2**(in_bits-1):
        g = clip(floor(256 * sigmoid(v / in_scale) + 0.5), 0, 255)
    (round half up, as `snncompile.nn.attention`'s 8-bit gain; 255 means 255/256).

    Example::

        table = make_sigmoid_table(8, 16.0)     # v in [-128, 127] covers sigmoid(-8..8)
    """
    in_bits = int(in_bits)
    if not 1 <= in_bits <= 16:
        raise GraphError(f"make_sigmoid_table: in_bits ({in_bits}) outside [1, 16]")
    if not in_scale > 0:
        raise GraphError(f"make_sigmoid_table: in_scale ({in_scale}) must be > 0")
    v = np.arange(-(2 ** (in_bits - 1)), 2 ** (in_bits - 1), dtype=np.float64)
    with np.errstate(over="ignore"):    # exp(-v/in_scale) = inf: s = 0, as it should be
        s = 1.0 / (1.0 + np.exp(-v / float(in_scale)))
    return np.clip(np.floor(256.0 * s + 0.5), 0, 255).astype(np.uint8)


@dataclass
class SigmoidLUT(Op):
    """8-bit gain by table lookup. With in_bits = log2(len(table)),
    lo = -2**(in_bits-1), hi = 2**(in_bits-1) - 1:

        g = table[clip(x >> in_scale_shift, lo, hi) - lo]       (uint8, 255 = 255/256)

    with rnd(x / 2**in_scale_shift) for x >> in_scale_shift if rounding is "nearest_even":
    then entry i serves the logits nearest to (i + lo) * 2**in_scale_shift, so a table of
    sigmoid at exactly those points (`make_sigmoid_table`) has no systematic error, where
    a floored index reads, on average, the entry half a step below the logit.
    table: uint8 of length 2**in_bits (see `make_sigmoid_table`).
    """

    in_scale_shift: int = 0
    table: np.ndarray = None
    rounding: str = "floor"

    def __post_init__(self):
        super().__post_init__()
        if self.table is None or np.ndim(self.table) != 1:
            self._fail("table must be a 1-d array")
        self.table = _int_array(self, "table", self.table, 0, 255, np.uint8)
        n = self.table.size
        if n < 2 or n & (n - 1) or n > 2 ** 16:
            self._fail(f"table length ({n}) is not a power of two in [2, 65536]")
        self.in_scale_shift = int(self.in_scale_shift)
        self._check_shift(self.in_scale_shift)
        self._check_rounding(self.in_scale_shift)

    @property
    def in_bits(self) -> int:
        return int(self.table.size).bit_length() - 1

    @property
    def lo(self) -> int:
        return -(2 ** (self.in_bits - 1))

    def infer(self, specs):
        return ValueSpec(specs[0].shape, 8, signed=False)

    def forward(self, xs, state=None):
        v = shift_round(xs[0], self.in_scale_shift, self.rounding)
        idx = np.clip(v, self.lo, -self.lo - 1) - self.lo
        return self.table[idx].astype(np.int64), None

    def counts(self, specs, out):
        return OpCounts(lut=out.size,
                        adds=self._rounding_adds(out.size, self.in_scale_shift > 0))

    def summary(self):
        return (f"{self.in_bits}-bit index, "
                + _shr(self, self.in_scale_shift))


def _shr(op: Op, shift: int | None = None) -> str:
    """">>s" for a floor shift, "rnd/2**s" for one rounded to nearest (summaries)."""
    shift = op.shift if shift is None else shift
    return f">>{shift}" if op.rounding == "floor" or not shift else f"rnd>>{shift}"


# ---------------------------------------------------------------- temporal state
@dataclass
class Window(Op):
    """Causal window sum over the last k steps (spike counts, causal TA descriptors):

        y_t = clip_out_bits(x_t + x_{t-1} + ... + x_{t-k+1}),  x_s = 0 for s before reset

    State per sample: the last k-1 inputs, oldest first, int64 (N, k-1, *shape). A fresh
    state (`init_state`, zeros) is a reset: give each sample a fresh state at its first step
    (`CoprocGraph.run` does; the Lava process resets every `reset_interval` steps). k >= 2.
    """

    k: int = 2
    out_bits: int = 16
    stateful: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        self.k, self.out_bits = int(self.k), int(self.out_bits)
        if self.k < 2:
            self._fail(f"k ({self.k}) must be >= 2 (k = 1 is the identity)")
        self._check_bits("out_bits", self.out_bits, 2)

    def infer(self, specs):
        self._check_int64(self.k * specs[0].magnitude, "the window sum")
        return ValueSpec(specs[0].shape, self.out_bits)

    def state_shape(self, spec):
        return (self.k - 1,) + spec.shape

    def state_bytes(self, spec):
        return ((self.k - 1) * spec.size * spec.bits + 7) // 8

    def _full(self, x, state):
        return np.concatenate([state, x[:, None]], axis=1)

    def forward(self, xs, state=None):
        full = self._full(xs[0], state)
        return clip_signed(full.sum(axis=1), self.out_bits), full[:, 1:]

    def counts(self, specs, out):
        return OpCounts(adds=(self.k - 1) * out.size)

    def summary(self):
        return f"k={self.k}"


@dataclass
class History(Window):
    """The last k inputs stacked on a new leading per-sample axis, oldest first
    (causal TA's window vector):

        y_t[j] = x_{t-k+1+j},  j = 0 .. k-1,  x_s = 0 for s before reset

    State and reset as `Window`. Output: the input's width, shape (k, *shape).
    `out_bits` is unused.
    """

    def infer(self, specs):
        return ValueSpec((self.k,) + specs[0].shape, specs[0].bits, specs[0].signed)

    def forward(self, xs, state=None):
        full = self._full(xs[0], state)
        return full, full[:, 1:]

    def counts(self, specs, out):
        return OpCounts()


@dataclass
class Accumulate(Op):
    """Saturating running sum since the last reset (spike counts over a whole sample):

        s_t = clip_out_bits(s_{t-1} + x_t),  s = 0 at reset;   y_t = s_t

    State per sample: s, int64 (N, *shape); reset as `Window` (a fresh state).
    """

    out_bits: int = 16
    stateful: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        self.out_bits = int(self.out_bits)
        self._check_bits("out_bits", self.out_bits, 2)

    def infer(self, specs):
        return ValueSpec(specs[0].shape, self.out_bits)

    def state_shape(self, spec):
        return spec.shape

    def state_bytes(self, spec):
        return (spec.size * self.out_bits + 7) // 8

    def forward(self, xs, state=None):
        y = clip_signed(state + xs[0], self.out_bits)
        return y, y

    def counts(self, specs, out):
        return OpCounts(adds=out.size)


OP_TYPES: dict[str, type[Op]] = {
    cls.__name__: cls
    for cls in (Linear, Conv2d, Relu, Add, Mul, Concat, Reshape, ReduceMean, ReduceMax,
                SigmoidLUT, Window, History, Accumulate)
}


def op_fields(op: Op) -> dict:
    return {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}

