"""Typed nodes of the intermediate graph.

Two families share one graph type:

* float nodes (`Dense`, `Conv2d`, `LIF`, pools) hold the trained model in real numbers;
* fixed-point nodes (`FxDense`, `FxConv2d`, `FxLIF`) hold what the chip computes, as the
  `quantize` pass produces it.

`Input`, `Flatten` and `Output` appear in both. Every node is a small dataclass; arrays are
numpy arrays. Shapes exclude batch and time: a node maps per-step tensors of shape
`in_shape` to `out_shape`. Serialisation is generic (class name -> fields), see `graph.py`.

Time semantics (shared by every implementation). Each synapse node (`FxDense`, `FxConv2d`)
delivers its result one time step later, as Loihi and Lava do. A LIF node whose input passed
through `d` synapse nodes therefore sees input frame `t` at global step `t + d`; we call `d`
its *depth* and `t` its *local* step. In local time the network computes exactly the
delay-free recurrence the float model was trained with. Sigma-delta neurons
(`FxSigmaDelta`, from lava-dl netx files) are the exception: never reset, they run from
global step 0, and only their outputs are read in local time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import GraphError

SIGNAL_KINDS = ("spikes", "graded", "real")
"""Edge signal kinds: binary spikes, graded (integer) values, real values."""


MAX_DIM = 1 << 30
"""Largest value of one integer field (a shape dimension, stride, padding, kernel)."""


def _int(node: "Node", field: str, value, minimum: int = 0, maximum: int = MAX_DIM) -> int:
    """`value` as an int if it is an integer (numpy integers and integral floats included)
    in [minimum, maximum]; otherwise one GraphError naming node, field and value (so 2.5
    is refused rather than truncated to 2, and a stride of 0 never reaches a division)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))
    if ok:
        try:
            ok = float(value) == int(value) and minimum <= int(value) <= maximum
        except (OverflowError, ValueError):   # inf, nan
            ok = False
    if not ok:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {value!r:.40} must "
                         f"be an integer in [{minimum}, {maximum}]")
    return int(value)


def _ints(node: "Node", field: str, values, minimum: int = 0, length: int | None = None,
          maximum: int = MAX_DIM) -> tuple[int, ...]:
    """A tuple of `_int`s (of `length` entries when given)."""
    try:
        items = tuple(values)
    except TypeError:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {values!r:.40} "
                         "must be a list of integers") from None
    if length is not None and len(items) != length or len(items) > 8:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {values!r:.40} "
                         f"must have {length if length is not None else 'at most 8'} "
                         "entries")
    return tuple(_int(node, field, v, minimum, maximum) for v in items)


def _conv_geometry(node: "Node") -> None:
    """Checks stride, padding and groups of a Conv2d or FxConv2d."""
    node.stride = _ints(node, "stride", node.stride, minimum=1, length=2)
    node.padding = _ints(node, "padding", node.padding, minimum=0, length=2)
    node.groups = _int(node, "groups", node.groups, minimum=1)


def _float_bias(node: "Node", n_out: int) -> None:
    """A float synapse's bias: None (no bias, also for an all-zero one) or float (n_out,)."""
    b = node.bias
    if b is None:
        return
    b = np.asarray(b)
    if b.shape != (n_out,) or b.dtype.kind not in "fiu":
        raise GraphError(f"{node.name}: {type(node).__name__} bias of shape {b.shape} must be "
                         f"real numbers shaped ({n_out},), one per output")
    node.bias = b if np.any(b != 0) else None


def _fixed_bias(node: "Node", n_out: int) -> None:
    """A fixed-point synapse's bias axon: bias_mant None or int32 (n_out,); bias_exp."""
    node.bias_exp = _int(node, "bias_exp", node.bias_exp, -MAX_DIM)
    b = node.bias_mant
    if b is None:
        return
    b = np.asarray(b)
    if b.shape != (n_out,) or b.dtype.kind not in "iu":
        raise GraphError(f"{node.name}: {type(node).__name__} bias_mant of shape {b.shape} "
                         f"must be integers shaped ({n_out},), one per output")
    node.bias_mant = b.astype(np.int32) if b.any() else None


def synapse_bias(node: "Node", out_shape: tuple[int, ...]) -> np.ndarray | None:
    """What a fixed-point synapse's bias axon adds to its output at every step, int64 in
    `out_shape` (bias_mant << bias_exp per output, per channel for a conv); None: none."""
    m = getattr(node, "bias_mant", None)
    if m is None:
        return None
    e = int(node.bias_exp)
    b = np.asarray(m, np.int64)
    b = b << e if e >= 0 else b >> -e
    return np.broadcast_to(b.reshape((-1,) + (1,) * (len(out_shape) - 1)),
                           out_shape).copy()


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _bias_summary(node) -> str:
    if getattr(node, "bias_mant", None) is None:
        return ""
    return f", bias axon (|mant| <= {int(np.abs(node.bias_mant).max())}, exp {node.bias_exp})"


def bias_sign_mode(mant: np.ndarray) -> str:
    """Lava's sign mode of a bias axon's column: excitatory, inhibitory or mixed (then the
    mantissas are even: Lava truncates one bit)."""
    if mant.min(initial=0) >= 0:
        return "excitatory"
    return "inhibitory" if mant.max(initial=0) <= 0 else "mixed"


@dataclass
class Node:
    """Base node. `name` is unique in its graph."""

    name: str
    #: Output signal kind of this node (one of SIGNAL_KINDS).
    kind: ClassVar[str] = "real"
    #: True for nodes that delay their output by one time step (synapses).
    is_synapse: ClassVar[bool] = False
    #: True for fixed-point neurons: their outputs are what backends produce per step and
    #: what verify compares (spikes, graded spikes, or a readout's voltage).
    is_neuron: ClassVar[bool] = False
    #: True for nodes that run on the co-processor partition (not on neurocores).
    on_coproc: ClassVar[bool] = False
    #: True for nodes that never reset between samples' time windows and run from global
    #: step 0 (sigma-delta neurons); see `ir/timing.py`.
    runs_in_global_time: ClassVar[bool] = False
    #: "float" (trained model, real numbers), "fixed" (what the chip computes) or "both".
    stage: ClassVar[str] = "float"
    #: True for neurons with a (u, v) state that backends record and report (FxLIF).
    records_uv: ClassVar[bool] = False
    #: True for neurons whose bias an input layer may drive per step (netx bias input).
    takes_bias_frames: ClassVar[bool] = False
    #: True for loop delays (FxDelay, Delay): edges out of them are a loop's back edges.
    closes_loop: ClassVar[bool] = False
    #: True for synapses that can hold their output extra steps on the chip (`align`), so
    #: that paths of unequal depth meet in step (`ir.timing.balance`): FxDense (Lava
    #: DelayDense). Lava's Conv has no synaptic delays.
    can_align: ClassVar[bool] = False
    #: True for the nodes a synapse's bias axon may feed: neurons zeroed at their window's
    #: start (FxLIF, FxLI), so the always-on axon's current before it is never seen, and
    #: the attention parts between a synapse and its LIF (FxGate: no state, its output
    #: reaches that LIF; FxCoproc: reset at its window's start), which see current + bias.
    takes_synapse_bias: ClassVar[bool] = False

    def output_delay(self) -> int:
        """Global steps between this node's input and its output on the chip: 1 for a
        synapse (plus its path-balancing `align`), 0 otherwise (see `ir/timing.py`)."""
        return int(self.is_synapse) + int(getattr(self, "align", 0) or 0)

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        raise NotImplementedError

    def out_kind(self, in_kinds: list[str]) -> str:
        return self.kind

    def _one(self, in_shapes):
        if len(in_shapes) != 1:
            raise GraphError(f"{self.name}: {type(self).__name__} takes one input, "
                             f"got {len(in_shapes)}")
        return tuple(in_shapes[0])

    def summary(self) -> str:
        """One-line description of the node's parameters for reports."""
        return ""

    def connections(self, out_shape: tuple[int, ...]) -> dict[str, int]:
        """Synapse counts of a synapse node for reports ({} for other nodes): `synapses`
        (connections), `nonzero_synapses`, and for shared kernels `kernel_weights`."""
        return {}

    def same_as(self, other: "Node") -> bool:
        """Field-by-field equality (arrays by dtype and value); `graphs_equal` asks it."""
        fa, fb = node_fields(self), node_fields(other)
        for key in fa:
            va, vb = fa[key], fb[key]
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                if not (isinstance(va, np.ndarray) and isinstance(vb, np.ndarray)
                        and va.dtype == vb.dtype and np.array_equal(va, vb)):
                    return False
            elif va != vb:
                return False
        return True


@dataclass
class Input(Node):
    """Network input: one frame of shape `shape` per time step.

    encoding: "spikes" (values 0/1) or "graded" (integers of `bits` bits: unsigned, or
    two's complement when `signed`, which only a sigma-delta encoder reads), or "bias":
    signed `bits`-bit integers written into the bias mantissas of the FxLIF layer this
    Input feeds (and only feeds), which then has no synaptic input: per step that layer
    integrates `(bias_mant + frame) << bias_exp`. This is how lava-dl netx drives a
    network's input layer (PilotNet LIF writes each frame into the input neurons'
    `bias_mant`); a frame is held for every step of its sample (backends on Lava set the
    bias once per sample), see `snncompile.data`.
    """
    stage: ClassVar[str] = "both"

    shape: tuple[int, ...] = ()
    encoding: str = "spikes"
    bits: int = 1  # width of graded values; 1 for spikes
    signed: bool = False

    ENCODINGS: ClassVar[tuple[str, ...]] = ("spikes", "graded", "bias")

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        if self.encoding not in self.ENCODINGS:
            raise GraphError(f"{self.name}: input encoding '{self.encoding}' is not one of "
                             f"{', '.join(self.ENCODINGS)}")
        if self.encoding == "spikes":
            self.bits, self.signed = 1, False
        if self.encoding == "bias":      # bias mantissas are signed; Lava keeps them int16
            self.signed = True
            if not 2 <= int(self.bits) <= 16:
                raise GraphError(f"{self.name}: bias input bits ({self.bits}) outside "
                                 "[2, 16] (Lava's LIF holds bias_mant in int16)")
        self.bits, self.signed = _int(self, "bits", self.bits, 1, 32), bool(self.signed)

    @property
    def is_bias(self) -> bool:
        """True when the frames are bias mantissas of the neuron layer fed (see above)."""
        return self.encoding == "bias"

    def value_range(self) -> tuple[int, int]:
        """The smallest and largest value an input frame may hold."""
        if self.encoding == "spikes":
            return 0, 1
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def out_shape(self, in_shapes):
        if in_shapes:
            raise GraphError(f"{self.name}: Input takes no inputs")
        return self.shape

    def out_kind(self, in_kinds):
        return "spikes" if self.encoding == "spikes" else "graded"

    def summary(self):
        if self.encoding == "bias":
            return f"bias frames (bias_mant of the layer fed), signed {self.bits} bits, " \
                   "held per sample"
        return f"{self.encoding}" + (f", {'signed ' if self.signed else ''}{self.bits} bits"
                                     if self.encoding == "graded" else "")


@dataclass
class Dense(Node):
    """Float fully connected synapses: y = W x. weight: (out, in).

    delay (optional): int (out, in) extra steps per synapse, y_t = sum_k W_k x_{t-k} with
    W_k the weights whose delay is k (what a NIR Delay node in front of a Linear becomes).
    bias (optional, (out,)): added to y at every step, y_t = W x_t + b. It enters the
    neuron's *current* u (which decays), not its voltage: on the chip it is an always-on
    bias axon (`FxDense.bias_mant`).
    """

    weight: np.ndarray = None
    delay: np.ndarray = None
    bias: np.ndarray = None
    is_synapse: ClassVar[bool] = True

    def __post_init__(self):
        _float_bias(self, int(np.shape(self.weight)[0]))

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if shape != (self.weight.shape[1],):
            raise GraphError(f"{self.name}: Dense expects input ({self.weight.shape[1]},), "
                             f"got {in_shapes[0]}")
        return (int(self.weight.shape[0]),)

    def summary(self):
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


@dataclass
class Conv2d(Node):
    """Float 2-D convolution (cross-correlation, as PyTorch). weight: (O, I/groups, kH, kW).
    bias (optional, (O,)): added to every output position of channel o at every step."""

    weight: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    bias: np.ndarray = None
    is_synapse: ClassVar[bool] = True

    def __post_init__(self):
        _conv_geometry(self)
        _float_bias(self, int(np.shape(self.weight)[0]))

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 3:
            raise GraphError(f"{self.name}: Conv2d expects a (C, H, W) input, got {shape}")
        c, h, w = shape
        o, ig, kh, kw = self.weight.shape
        if c != ig * self.groups:
            raise GraphError(f"{self.name}: Conv2d expects {ig * self.groups} input channels, "
                             f"got {c}")
        oh = _conv_out(h, kh, self.stride[0], self.padding[0])
        ow = _conv_out(w, kw, self.stride[1], self.padding[1])
        if oh < 1 or ow < 1:
            raise GraphError(f"{self.name}: Conv2d output would be empty for input {shape}")
        return (int(o), oh, ow)

    def summary(self):
        o, ig, kh, kw = self.weight.shape
        return (f"{ig * self.groups}->{o}, k{kh}x{kw}, s{self.stride[0]}, p{self.padding[0]}"
                + (f", g{self.groups}" if self.groups > 1 else ""))


@dataclass
class Conv1d(Node):
    """Float 1-D convolution (cross-correlation, as PyTorch `Conv1d`) over (C, L) inputs.
    weight: (O, I/groups, K); stride, padding, dilation: ints. A dilated kernel is the
    sparse kernel of size dilation*(K-1)+1 with the taps `dilation` apart, which is how it
    is compiled (quantisation lowers it to `FxConv1d`, a height-1 `FxConv2d`). bias
    (optional, (O,)): added to every output position of channel o at every step."""

    weight: np.ndarray = None
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: np.ndarray = None
    is_synapse: ClassVar[bool] = True

    def __post_init__(self):
        self.stride = _int(self, "stride", self.stride, minimum=1)
        self.padding = _int(self, "padding", self.padding, minimum=0)
        self.dilation = _int(self, "dilation", self.dilation, minimum=1)
        self.groups = _int(self, "groups", self.groups, minimum=1)
        if self.weight is not None and np.ndim(self.weight) != 3:
            raise GraphError(f"{self.name}: Conv1d weight {np.shape(self.weight)} is not "
                             "(O, I/groups, K)")
        if self.weight is not None:
            _float_bias(self, int(np.shape(self.weight)[0]))

    def dense_kernel(self) -> np.ndarray:
        """The weight with dilation made explicit: (O, I/groups, dilation*(K-1)+1), zeros
        between the taps (the same map with dilation 1)."""
        w = np.asarray(self.weight)
        if self.dilation == 1:
            return w
        out = np.zeros(w.shape[:2] + (self.dilation * (w.shape[2] - 1) + 1,), w.dtype)
        out[:, :, ::self.dilation] = w
        return out

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 2:
            raise GraphError(f"{self.name}: Conv1d expects a (C, L) input, got {shape}")
        c, length = shape
        o, ig, k = self.weight.shape
        if c != ig * self.groups:
            raise GraphError(f"{self.name}: Conv1d expects {ig * self.groups} input channels, "
                             f"got {c}")
        out = _conv_out(length, k, self.stride, self.padding, self.dilation)
        if out < 1:
            raise GraphError(f"{self.name}: Conv1d output would be empty for input {shape}")
        return (int(o), out)

    def summary(self):
        o, ig, k = self.weight.shape
        return (f"{ig * self.groups}->{o}, k{k}, s{self.stride}, p{self.padding}"
                + (f", d{self.dilation}" if self.dilation > 1 else "")
                + (f", g{self.groups}" if self.groups > 1 else ""))


@dataclass
class SumPool2d(Node):
    """Sum over non-overlapping (kernel) windows; stride == kernel."""

    kernel: tuple[int, int] = (2, 2)

    def __post_init__(self):
        self.kernel = _ints(self, "kernel", self.kernel, minimum=1, length=2)

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 3:
            raise GraphError(f"{self.name}: pooling expects a (C, H, W) input, got {shape}")
        c, h, w = shape
        kh, kw = self.kernel
        if h % kh or w % kw:
            raise GraphError(f"{self.name}: input {h}x{w} is not divisible by the pooling "
                             f"kernel {kh}x{kw}")
        return (c, h // kh, w // kw)

    @property
    def window(self) -> tuple[int, ...]:
        """The pooling window per spatial axis (what a fold repeats each weight over)."""
        return tuple(self.kernel)

    def out_kind(self, in_kinds):
        return "graded"

    def summary(self):
        return f"k{self.kernel[0]}x{self.kernel[1]}"


@dataclass
class AvgPool2d(SumPool2d):
    """Average over non-overlapping windows (sum / kernel area)."""

    def out_kind(self, in_kinds):
        return "real"


@dataclass
class SumPool1d(Node):
    """Sum over non-overlapping windows of `kernel` positions of a (C, L) input; stride ==
    kernel. Like the 2-D pools it is folded into the synapse before or after it."""

    kernel: int = 2

    def __post_init__(self):
        self.kernel = _int(self, "kernel", self.kernel, minimum=1)

    @property
    def window(self) -> tuple[int, ...]:
        return (self.kernel,)

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 2:
            raise GraphError(f"{self.name}: 1-d pooling expects a (C, L) input, got {shape}")
        c, length = shape
        if length % self.kernel:
            raise GraphError(f"{self.name}: input length {length} is not divisible by the "
                             f"pooling kernel {self.kernel}")
        return (c, length // self.kernel)

    def out_kind(self, in_kinds):
        return "graded"

    def summary(self):
        return f"k{self.kernel}"


@dataclass
class AvgPool1d(SumPool1d):
    """Average over non-overlapping windows of a (C, L) input (sum / kernel)."""

    def out_kind(self, in_kinds):
        return "real"


@dataclass
class Flatten(Node):
    """Reshape (C, H, W) -> (C*H*W,) in C order. No arithmetic, no delay."""
    stage: ClassVar[str] = "both"

    def out_shape(self, in_shapes):
        return (int(np.prod(self._one(in_shapes))),)

    def out_kind(self, in_kinds):
        return in_kinds[0] if in_kinds else "real"


RESETS = ("zero", "subtract", "threshold")
"""What a spiking neuron does to v after a spike: set it to 0 (Lava's LIF, Loihi 1),
subtract the threshold (soft reset: snnTorch's and sinabs' default, rockpool's), or set it
to the threshold (the MA-SNN authors' `h = s * Vth + (1 - s) * u`)."""
FIRE_AT = (">", ">=")
"""When a neuron spikes: v > vth (Lava's LIF, snnTorch) or v >= vth (sinabs,
spikingjelly)."""


def _choice(node: "Node", field: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {value!r:.40} must "
                         f"be one of {', '.join(repr(a) for a in allowed)}")
    return value


def _spiking_options(node) -> None:
    """Checks `reset` and `fire_at` of a LIF or FxLIF."""
    node.reset = _choice(node, "reset", node.reset, RESETS)
    node.fire_at = _choice(node, "fire_at", node.fire_at, FIRE_AT)


def _options_summary(node) -> str:
    """' reset=subtract fire_at=>=' where they differ from Lava's LIF, else ''."""
    return "".join(f" {f}={getattr(node, f)}" for f, d in (("reset", "zero"), ("fire_at", ">"))
                   if getattr(node, f) != d)


NEURON_PARAMS = ("du", "dv", "vth")
"""The LIF parameters that may be one value per layer or an array broadcastable to the
neuron shape (per channel (C, 1, 1) of a conv layer, or per neuron): PLIF-style
trainable leaks and thresholds, NIR per-neuron tau / v_threshold."""


def _neuron_param(node: "Node", field: str, value, integer: bool):
    """A scalar (float, or int for fixed-point nodes) or an array broadcastable to
    `node.shape` (float64, or int64), checked once here: a wrong shape, a fractional
    integer or a NaN is one GraphError naming node, field and value."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim):
        a = np.asarray(value)
        try:
            ok = np.broadcast_shapes(a.shape, node.shape) == tuple(node.shape) and a.size
        except ValueError:
            ok = False
        if not ok:
            raise GraphError(f"{node.name}: {type(node).__name__} {field} of shape "
                             f"{a.shape} does not broadcast to the neurons {node.shape}")
        if integer:
            if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(
                    np.isfinite(a)) and np.all(a == np.round(a))):
                raise GraphError(f"{node.name}: {type(node).__name__} {field} must hold "
                                 "integers")
            a = a.astype(np.int64)
            if a.min() < -MAX_DIM or a.max() > MAX_DIM:
                raise GraphError(f"{node.name}: {type(node).__name__} {field} outside "
                                 f"[{-MAX_DIM}, {MAX_DIM}]")
            return a
        if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise GraphError(f"{node.name}: {type(node).__name__} {field} must hold finite "
                             "numbers")
        return a.astype(np.float64)
    if isinstance(value, np.ndarray):       # 0-d
        value = value.item()
    if integer:
        return _int(node, field, value, -MAX_DIM)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {value!r:.40} must "
                         "be a number or an array")
    return float(value)


def per_neuron(node) -> bool:
    """True if any of du, dv, vth of a LIF/FxLIF holds more than one value."""
    return any(isinstance(getattr(node, f), np.ndarray)
               and np.unique(getattr(node, f)).size > 1 for f in NEURON_PARAMS)


def neuron_param(node, field: str) -> np.ndarray:
    """du, dv or vth of a LIF/FxLIF as an array of the neuron shape (a broadcast view)."""
    return np.broadcast_to(np.asarray(getattr(node, field)), node.shape)


def _param_text(value, fmt: str) -> str:
    """'0.25' for a scalar, '[0.1..0.3]' (its range) for an array."""
    if isinstance(value, np.ndarray):
        lo, hi = value.min(), value.max()
        return format(lo, fmt) if lo == hi else f"[{lo:{fmt}}..{hi:{fmt}}]"
    return format(value, fmt)


def _params_summary(node, fmt: str) -> str:
    return " ".join(f"{f}={_param_text(getattr(node, f), fmt)}" for f in NEURON_PARAMS)


@dataclass
class LIF(Node):
    """Float current-based LIF in Loihi's update order (per time step):

        u = (1 - du) * u + x          # current decays, then adds input
        v = (1 - dv) * v + u + bias   # voltage decays, then adds current and bias
        s = v > vth                   # spike strictly above threshold (fire_at ">")
                                      #   or v >= vth (fire_at ">=")
        v = 0 where s                 # reset "zero"; u is not reset
                                      #   or v = v - vth where s (reset "subtract")
                                      #   or v = vth where s (reset "threshold")

    du, dv: decay fractions in [0, 1]; vth > 0; bias: scalar or per-neuron array; du, dv
    and vth each a scalar or an array broadcastable to `shape` (`NEURON_PARAMS`).
    The defaults (reset "zero", fire_at ">") are Lava's LIF; the other options compile
    for targets with programmable neurons (Loihi 2) to a custom Lava process.
    """

    shape: tuple[int, ...] = ()
    du: float | np.ndarray = 0.0
    dv: float | np.ndarray = 0.0
    vth: float | np.ndarray = 1.0
    bias: np.ndarray = None
    reset: str = "zero"
    fire_at: str = ">"
    kind: ClassVar[str] = "spikes"

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        if self.bias is None:
            self.bias = np.zeros(self.shape, dtype=np.float32)
        for f in NEURON_PARAMS:
            setattr(self, f, _neuron_param(self, f, getattr(self, f), integer=False))
        _spiking_options(self)

    def out_shape(self, in_shapes):
        """One input, or several of the neuron's shape whose currents add (a residual
        block's body and shortcut synapses into the same neurons)."""
        if not in_shapes:
            raise GraphError(f"{self.name}: {type(self).__name__} needs an input")
        for shape in in_shapes:
            if tuple(shape) != self.shape:
                raise GraphError(f"{self.name}: LIF of shape {self.shape} fed with "
                                 f"{tuple(shape)}")
        return self.shape

    @property
    def lava_lif(self) -> bool:
        """True for the default options (reset to 0, spike at v > vth): Lava's own LIF,
        Loihi 1's compartment and netx's CUBA neuron compute this neuron."""
        return self.reset == "zero" and self.fire_at == ">"

    def summary(self):
        return _params_summary(self, ".4g") + _options_summary(self)


#: Each attention kind as the gates it applies in order (each on the already modulated
#: current; one ReLU after the last), as in the MA-SNN paper's TA/CA/SA combinations.
ATTENTION_PARTS = {"ta": ("ta",), "ca": ("ca",), "sa": ("sa",), "tca": ("ta", "ca"),
                   "tsa": ("ta", "sa"), "csa": ("ca", "sa"), "tcsa": ("ta", "ca", "sa")}


@dataclass
class Attention(Node):
    """Float MA-SNN attention on a LIF's input current X (see snncompile.nn.attention):
    out = ReLU(g * X) with g from TA, CA or SA, or a combination TCA, TSA, CSA, TCSA (the
    gates in that order, each on the already modulated current, then one ReLU). `mode` "causal" computes each step's gain from
    steps <= t (CA, SA per step; TA over the last `window` steps); "window" pools the whole
    time window as released (not streamable). Weights (float, None when unused):
    ta_w1 (hidden, n), ta_w2 (n_out, hidden); ca_w1 (hidden, C), ca_w2 (C, hidden);
    sa_w (1, 2, k, k). gain_bits: the gains' trained precision (8 = the chip's).
    """

    variant: str = "ca"     # ta | ca | sa | tca | tsa | csa | tcsa (ATTENTION_PARTS)
    mode: str = "causal"
    window: int = 0
    steps: int = 0
    gain_bits: int = 8
    ta_w1: np.ndarray = None
    ta_w2: np.ndarray = None
    ca_w1: np.ndarray = None
    ca_w2: np.ndarray = None
    sa_w: np.ndarray = None

    def out_shape(self, in_shapes):
        return self._one(in_shapes)

    def summary(self):
        return f"{self.variant} {self.mode}" + (f", window {self.window}" if self.window else "")


@dataclass
class Output(Node):
    """Marks a spiking node whose spikes are the network's output (prediction = argmax of
    spike counts over the run)."""
    stage: ClassVar[str] = "both"

    def out_shape(self, in_shapes):
        return self._one(in_shapes)

    def out_kind(self, in_kinds):
        return in_kinds[0]


# ---------------------------------------------------------------- fixed-point nodes
@dataclass
class FxDense(Node):
    """Loihi dense synapses (Lava `Dense`, PyDenseModelBitAcc).

    weight: int32 (out, in) mantissas, already representable (see `sign_mode`).
    Each step: acc = W @ s (binary: sum of columns of active inputs; graded: product);
    a = acc << weight_exp (or >> -weight_exp, floor); a is delivered one step later.

    delay (optional, int (out, in) in [0, 62]: Lava `DelayDense`, PyDelayDenseModelBitAcc):
    synapse (i, j) delivers 1 + delay[i, j] steps later; the exponent is applied to each
    delay's partial sum: a_k = (sum_{j: delay[i, j] = k} W[i, j] s_j) << weight_exp. In local
    time the node's output at step t is sum_k a_k(t - k); what would arrive after the
    window is dropped.

    align (int >= 0, set by `ir.timing.balance`, never by a model): extra steps the chip
    holds every synapse's output so that this path meets a deeper one in step (residual
    blocks). It is not part of the model: in local time it is invisible (the reference
    ignores it); on the chip the synapse delays by `delay + align` (`physical_delay`).

    bias_mant (optional, int (out,)), bias_exp (in [0, weight_exp_max]): the synapse bias,
    `bias_mant << bias_exp` added to output i at every local step (`synapse_bias`). On the
    chip it is one always-on bias axon per core (an input spiking every step) whose
    synapses carry `bias_mant` with their own exponent: Lava runs it as a RingBuffer of
    ones into a Dense of one column summed into the same neurons' input port. It enters
    the current u, as the trained bias does (a voltage bias differs unless du = 1). The
    mantissas follow Lava's weight preparation for their sign mode (`bias_sign_mode`).
    """
    stage: ClassVar[str] = "fixed"

    weight: np.ndarray = None
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"  # mixed | excitatory | inhibitory (Lava SignMode)
    num_message_bits: int = 0  # 0: binary spikes in; >0: graded values in
    delay: np.ndarray = None
    align: int = 0
    bias_mant: np.ndarray = None
    bias_exp: int = 0
    is_synapse: ClassVar[bool] = True
    can_align: ClassVar[bool] = True
    kind: ClassVar[str] = "graded"

    MAX_DELAY: ClassVar[int] = 62  # Loihi 2 has 6 delay bits; netx clamps to 62

    def physical_delay(self) -> np.ndarray | None:
        """Per-synapse delay on the chip (Lava DelayDense): `delay + align`; None: none."""
        if not self.align:
            return self.delay
        base = np.zeros(np.shape(self.weight), np.int32) if self.delay is None else self.delay
        return (base + int(self.align)).astype(np.int32)

    def __post_init__(self):
        self.align = _int(self, "align", self.align, 0, self.MAX_DELAY)
        if self.delay is not None:
            d = np.asarray(self.delay)
            if d.shape != np.shape(self.weight) or d.dtype.kind not in "iu" \
                    or (d.size and (d.min() < 0 or d.max() > self.MAX_DELAY)):
                raise GraphError(f"{self.name}: delay must be integers in [0, "
                                 f"{self.MAX_DELAY}] shaped like the weights "
                                 f"{np.shape(self.weight)}")
            self.delay = d.astype(np.int32) if d.any() else None
        _fixed_bias(self, int(np.shape(self.weight)[0]))

    out_shape = Dense.out_shape

    def summary(self):
        extra = "" if self.delay is None else f", delays <= {int(self.delay.max())}"
        extra += f", +{self.align} step(s) path alignment" if self.align else ""
        extra += _bias_summary(self)
        return (f"{self.weight.shape[1]} -> {self.weight.shape[0]}, w_exp={self.weight_exp}, "
                f"{self.num_weight_bits}b {self.sign_mode}{extra}")

    def connections(self, out_shape):
        return {"synapses": int(self.weight.size),
                "nonzero_synapses": int(np.count_nonzero(self.weight))}


@dataclass
class FxConv2d(Node):
    """Loihi convolution synapses (Lava `Conv`, PyConvModelFixed): integer cross-correlation
    in PyTorch OIHW layout, result wrapped to 24 bits, delivered one step later. Lava's Conv
    ignores weight exponents, so mantissas are the effective weights.

    bias_mant (optional, int (O,)), bias_exp: the per-channel bias as in `FxDense`, added
    after the 24-bit wrap (on the chip and in Lava a separate bias axon and Dense column
    feed the same neurons, so the conv's wrap never sees it)."""
    stage: ClassVar[str] = "fixed"

    weight: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    num_message_bits: int = 0
    bias_mant: np.ndarray = None
    bias_exp: int = 0
    is_synapse: ClassVar[bool] = True
    kind: ClassVar[str] = "graded"

    def __post_init__(self):
        _conv_geometry(self)
        _fixed_bias(self, int(np.shape(self.weight)[0]))

    out_shape = Conv2d.out_shape

    def summary(self):
        return Conv2d.summary(self) + _bias_summary(self)

    def connections(self, out_shape):
        o, oh, ow = out_shape
        return {"synapses": int(o * oh * ow * self.weight[0].size),   # kernel shared
                "kernel_weights": int(self.weight.size),
                "nonzero_synapses": int(np.count_nonzero(self.weight)) * oh * ow}


@dataclass
class FxConv1d(FxConv2d):
    """A 1-D convolution on the chip: an `FxConv2d` of height 1 whose input and output keep
    their 1-D shapes (C, L) -> (O, L'). weight: (O, I/groups, 1, K) int mantissas (a
    dilated float kernel already made dense, see `Conv1d.dense_kernel`); stride (1, s),
    padding (0, p). Every stage computes it as that height-1 2-D convolution on the
    (C, 1, L) view of its input (`image_shape`); the stages whose rules read shapes have
    their own FxConv1d rule, the others inherit FxConv2d's. bias_mant / bias_exp: the bias
    axon per output channel, as FxConv2d's (`synapse_bias` of the (O, L') output)."""

    def __post_init__(self):
        FxConv2d.__post_init__(self)
        w = np.shape(self.weight)
        if len(w) != 4 or w[2] != 1 or self.stride[0] != 1 or self.padding[0] != 0:
            raise GraphError(f"{self.name}: FxConv1d needs weight (O, I/groups, 1, K), "
                             f"stride (1, s) and padding (0, p), got weight {w}, stride "
                             f"{self.stride}, padding {self.padding}")

    @staticmethod
    def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(C, L) -> (C, 1, L): the 2-D view every stage computes this conv on."""
        c, length = shape
        return (int(c), 1, int(length))

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 2:
            raise GraphError(f"{self.name}: FxConv1d expects a (C, L) input, got {shape}")
        o, _, length = Conv2d.out_shape(self, [self.image_shape(shape)])
        return (o, length)

    def summary(self):
        o, ig, _, k = self.weight.shape
        return (f"{ig * self.groups}->{o}, k{k}, s{self.stride[1]}, p{self.padding[1]}"
                + (f", g{self.groups}" if self.groups > 1 else ""))

    def connections(self, out_shape):
        o, length = out_shape
        return FxConv2d.connections(self, (o, 1, length))


@dataclass
class FxLIF(Node):
    """Loihi CUBA LIF in fixed point (Lava `LIF`, PyLifModelBitAcc). Per step:

        u = trunc(u * (4096 - du - 1) / 4096) + (a_in << 6), wrapped once to 24 bits
        v = clip(trunc(v * (4096 - dv) / 4096) + u + bias, -(2**23 - 1), 2**23 - 1)
        s = v > (vth << 6);  v = 0 where s

    with bias = bias_mant << bias_exp. trunc rounds toward zero. Options as in `LIF`:
    fire_at ">=" spikes where v >= (vth << 6); reset "subtract" sets v = v - (vth << 6)
    where s, reset "threshold" v = vth << 6 (u untouched). Lava's LIF has only the
    defaults; the others run as the custom process `backends/lava/procs.SoftLIF` (Loihi 2
    microcode can do them, Loihi 1 cannot). du, dv and vth may be arrays broadcastable to
    `shape` (per channel or per neuron): Loihi 2 microcode keeps them per neuron (SoftLIF
    with per-neuron Vars); Loihi 1's shared compartment profiles are refused.
    """
    records_uv: ClassVar[bool] = True
    takes_bias_frames: ClassVar[bool] = True
    takes_synapse_bias: ClassVar[bool] = True
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True

    shape: tuple[int, ...] = ()
    du: int | np.ndarray = 0
    dv: int | np.ndarray = 0
    vth: int | np.ndarray = 1
    bias_mant: np.ndarray = None
    bias_exp: int = 0
    reset: str = "zero"
    fire_at: str = ">"
    kind: ClassVar[str] = "spikes"

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        if self.bias_mant is None:
            self.bias_mant = np.zeros(self.shape, dtype=np.int32)
        for f in NEURON_PARAMS:
            setattr(self, f, _neuron_param(self, f, getattr(self, f), integer=True))
        self.bias_exp = _int(self, "bias_exp", self.bias_exp, -MAX_DIM)
        _spiking_options(self)

    out_shape = LIF.out_shape
    lava_lif = LIF.lava_lif

    def summary(self):
        return (_params_summary(self, "d") + f" bias_exp={self.bias_exp}"
                + _options_summary(self))


@dataclass
class FxGate(Node):
    """Multiplicative gain on a LIF's input current, computed by the neurocore's
    programmable neuron (neuro side of attention). Inputs, in order: the current `a`
    (graded, from a synapse node) and the gain `g` (unsigned `gain_bits`, from the
    co-processor; its shape broadcasts to the current's, e.g. (C, 1, 1) per channel or
    (1, H, W) per pixel). Per step, with no delay:

        out = (a * g) >> shift          (rounding "floor"; g = 2**shift means gain 1)
        out = rnd(a * g / 2**shift)     (rounding "nearest_even": to nearest, ties to even,
                                         = (p + 2**(shift-1) - 1 + ((p >> shift) & 1))
                                         >> shift for p = a * g, see coproc.ops)
        out = max(out, 0) if relu       (MA-SNN applies ReLU after the attention product)

    The attention lowering uses "nearest_even" (a floor shift loses half an LSB per gate
    on average, and TCSA chains three); "floor" is the default for builds written before
    the field existed, and is exact for HTDA's 0/1 map (shift 0).
    """
    stage: ClassVar[str] = "fixed"
    takes_synapse_bias: ClassVar[bool] = True

    shift: int = 8
    gain_bits: int = 8
    relu: bool = False
    upsample: tuple[int, int] = (1, 1)  # nearest-neighbour: gain[i // fh, j // fw]
    rounding: str = "floor"
    kind: ClassVar[str] = "graded"

    def __post_init__(self):
        from ..coproc.ops import ROUNDINGS
        self.upsample = _ints(self, "upsample", self.upsample, minimum=1, length=2)
        if not isinstance(self.rounding, str) or self.rounding not in ROUNDINGS:
            raise GraphError(f"{self.name}: FxGate rounding ({self.rounding!r}) is not one "
                             f"of {', '.join(ROUNDINGS)}")

    def gain_shape(self, g: tuple[int, ...]) -> tuple[int, ...]:
        """The gain's shape after upsampling over the last two axes."""
        if self.upsample == (1, 1):
            return tuple(g)
        return tuple(g[:-2]) + (g[-2] * self.upsample[0], g[-1] * self.upsample[1])

    def out_shape(self, in_shapes):
        if len(in_shapes) != 2:
            raise GraphError(f"{self.name}: FxGate takes (current, gain), got "
                             f"{len(in_shapes)} inputs")
        a, g = tuple(in_shapes[0]), self.gain_shape(tuple(in_shapes[1]))
        try:
            b = np.broadcast_shapes(a, g)
        except ValueError:
            b = None
        if b != a or len(g) != len(a):
            raise GraphError(f"{self.name}: gain shape {g} does not broadcast to the current "
                             f"shape {a} (give the gain the same number of axes, e.g. "
                             "(C, 1, 1))")
        return a

    def summary(self):
        prod = (f"(a * g) >> {self.shift}" if self.rounding == "floor" or not self.shift
                else f"rnd(a * g / 2**{self.shift})")
        return f"{prod}, g {self.gain_bits}b" + (", relu" if self.relu else "")


@dataclass
class FxCoproc(Node):
    """A co-processor partition (Loihi 2 embedded x86 core): an integer `CoprocGraph`
    (snncompile.coproc) on the values of its graph inputs (in order: the graph's input
    names `cgraph.inputs`). Its outputs are taken by `FxCoprocOut` nodes. Stored as the
    graph's JSON document (`doc`) and its arrays.

    window 0 (streaming): the graph runs once per time step, with no delay.
    window T > 0 (whole-window attention): the partition buffers its inputs over the T
    local steps of a sample; each graph input is that buffer, (T, *per-step shape), and
    the graph runs once, when the window is complete. Every output has a leading axis of
    T (one value per step) or 1 (the same value at every step); the FxCoprocOut nodes
    send step t's value T + `latency` steps later than a streaming partition would (the
    delay is `ir.timing.coproc_delay`)."""
    stage: ClassVar[str] = "fixed"
    on_coproc: ClassVar[bool] = True
    takes_synapse_bias: ClassVar[bool] = True

    doc: dict = None
    arrays: dict = None
    window: int = 0         # 0: per step; T: the whole window of T steps, buffered
    latency: int = 0        # window mode: steps after the window before the first output
    kind: ClassVar[str] = "graded"
    #: fields not written to graph.json at these values (a streaming partition's build is
    #: the same file as before window mode existed; loading fills the defaults back in)
    omit_when_default: ClassVar[dict] = {"window": 0, "latency": 0}

    def __post_init__(self):
        self.arrays = {k: np.asarray(v) for k, v in dict(self.arrays or {}).items()}
        self.window = _int(self, "window", self.window)
        self.latency = _int(self, "latency", self.latency)
        if self.latency and not self.window:
            raise GraphError(f"{self.name}: a co-processor latency ({self.latency}) needs "
                             "window mode (window > 0)")
        self._cg = None

    def output_delay(self) -> int:
        from .timing import coproc_delay
        return coproc_delay(self)

    @property
    def cgraph(self):
        if self._cg is None:
            from ..coproc import CoprocGraph
            self._cg = CoprocGraph.from_dict(self.doc, self.arrays)
        return self._cg

    def out_shape(self, in_shapes):
        specs = list(self.cgraph.inputs.values())
        lead = (self.window,) if self.window else ()
        if [tuple(s.shape) for s in specs] != [lead + tuple(x) for x in in_shapes]:
            raise GraphError(f"{self.name}: co-processor inputs {[s.shape for s in specs]} "
                             f"fed with {in_shapes}"
                             + (f" over a window of {self.window} steps" if lead else ""))
        if self.window:
            for o in self.cgraph.outputs:
                sh = self.cgraph.specs[o].shape
                if not sh or sh[0] not in (1, self.window):
                    raise GraphError(f"{self.name}: window output '{o}' {sh} has no leading "
                                     f"axis of 1 or {self.window} steps")
        return (0,)  # a bundle of outputs: see FxCoprocOut

    def same_as(self, other) -> bool:
        return fx_coproc_equal(self, other)

    def port_spec(self, value: str):
        """The ValueSpec of graph input or output `value` as it crosses per time step (a
        window partition: one step of its window, one row of an output)."""
        from ..coproc import ValueSpec
        cg = self.cgraph
        spec = cg.inputs.get(value) or cg.specs[value]
        return ValueSpec(spec.shape[1:], spec.bits, spec.signed) if self.window else spec

    def step_io_bytes(self):
        """Bit-packed bytes into and out of the partition per time step per sample
        (`coproc.IoBytes`). A window partition receives one step of its window per step
        and sends one row of each output per step (a gain with a leading 1 included: the
        gate needs it at every step)."""
        from ..coproc.graph import IoBytes
        cg = self.cgraph
        if not self.window:
            return cg.io_bytes()
        specs = [cg.specs[o] for o in cg.outputs]
        return IoBytes(sum(_packed(s.size // self.window, s.bits) for s in cg.inputs.values()),
                       sum(_packed(s.size // s.shape[0], s.bits) for s in specs))

    def buffer_bytes(self) -> int:
        """Bytes the partition buffers per sample: its inputs over the whole window
        (T x current size x bits, bit-packed); 0 for a streaming partition (whose state is
        `cgraph.state_bytes()`)."""
        if not self.window:
            return 0
        return sum(_packed(s.size, s.bits) for s in self.cgraph.inputs.values())

    def summary(self):
        c = self.cgraph.op_counts()
        return (f"{len(self.cgraph.ops)} integer ops: {c.macs} MACs, {c.adds} adds, "
                f"{c.compares} compares, {c.lut} lookups "
                + (f"per window of {self.window} steps (buffered; outputs "
                   f"{self.window + self.latency} steps later)" if self.window
                   else "per step"))


def _packed(values: int, bits: int) -> int:
    return (int(values) * int(bits) + 7) // 8


@dataclass
class FxDelay(Node):
    """The delay that closes a top-down loop (HTDA). Its consumer, at local step t of the
    node it gates (depth `target_depth`), receives `init` for t < `latency` and otherwise
    the value its input produced `steps` global steps earlier. Edges out of an FxDelay are
    the graph's only back edges: topological order and depths ignore them.

        latency (local steps) = steps + depth(source) - depth(target)
    """
    stage: ClassVar[str] = "fixed"
    closes_loop: ClassVar[bool] = True

    steps: int = 1
    latency: int = 1
    target_depth: int = 1
    init: int = 1
    kind: ClassVar[str] = "graded"

    def __post_init__(self):
        for f in ("steps", "latency", "target_depth", "init"):
            setattr(self, f, _int(self, f, getattr(self, f), -MAX_DIM))
        if self.steps < 1:
            raise GraphError(f"{self.name}: a loop delay needs steps >= 1 (got {self.steps})")

    def out_shape(self, in_shapes):
        return self._one(in_shapes)

    def summary(self):
        return f"{self.steps} step(s), latency {self.latency}, init {self.init}"


def _square(node: "Node") -> None:
    """A recurrent synapse's weight: a square (n, n) array (its neurons back into
    themselves)."""
    shape = np.shape(node.weight)
    if len(shape) != 2 or shape[0] != shape[1] or not shape[0]:
        raise GraphError(f"{node.name}: {type(node).__name__} weight {shape} must be square "
                         "(n, n): a layer's spikes back into its own n neurons")


@dataclass
class RecDense(Node):
    """Float recurrent synapses of one LIF layer: its own spikes s back into its input, one
    step later, as a Dense on Loihi delivers them. At local step t the LIF receives

        x_t = (its feed-forward synapses at t) + W s_{t-1}        (W s_{-1} = 0)

    weight (n, n): W[i, j] from neuron j to neuron i. Edges out of it are back edges
    (`closes_loop`): it is added before its LIF (`Graph.add_delay`) and fed from it
    (`Graph.connect(lif, name)`), and it must feed the LIF it reads.
    """

    weight: np.ndarray = None
    is_synapse: ClassVar[bool] = True
    closes_loop: ClassVar[bool] = True

    def __post_init__(self):
        _square(self)

    out_shape = Dense.out_shape

    def summary(self):
        return f"recurrent {self.weight.shape[1]} -> {self.weight.shape[0]}, one step"


@dataclass
class FxRecDense(Node):
    """Loihi recurrent dense synapses (a Lava `Dense` from a LIF's s_out back into its
    a_in): the arithmetic of `FxDense` on the layer's own binary spikes, delivered one step
    later, so the LIF at local step t integrates acc(s_{t-1}) << weight_exp (0 at t = 0)
    added to its feed-forward input. weight: int32 (n, n) mantissas. A back edge as
    `RecDense`; no synaptic delays, no path alignment (`delay` and `align` are None / 0).
    """
    stage: ClassVar[str] = "fixed"

    weight: np.ndarray = None
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"
    num_message_bits: int = 0
    is_synapse: ClassVar[bool] = True
    closes_loop: ClassVar[bool] = True
    kind: ClassVar[str] = "graded"
    delay: ClassVar[None] = None
    align: ClassVar[int] = 0

    def __post_init__(self):
        _square(self)
        if self.num_message_bits != 0:
            raise GraphError(f"{self.name}: a recurrent synapse reads its layer's binary "
                             f"spikes (num_message_bits {self.num_message_bits} must be 0)")

    def physical_delay(self):
        return None

    out_shape = Dense.out_shape
    connections = FxDense.connections

    def summary(self):
        return (f"recurrent {self.weight.shape[1]} -> {self.weight.shape[0]}, "
                f"w_exp={self.weight_exp}, {self.num_weight_bits}b {self.sign_mode}")


@dataclass
class FxCoprocOut(Node):
    """Output `port` of the FxCoproc node feeding it (a gain, unsigned 8 bits; in window
    mode also the buffered current, sent back delayed). `shape` is the per-step shape: a
    window partition's port (T or 1, *shape) sends its row t (or row 0) at step t."""
    stage: ClassVar[str] = "fixed"
    on_coproc: ClassVar[bool] = True

    port: str = ""
    shape: tuple[int, ...] = ()
    kind: ClassVar[str] = "graded"

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)

    def out_shape(self, in_shapes):
        if len(in_shapes) != 1:
            raise GraphError(f"{self.name}: FxCoprocOut takes one FxCoproc input")
        return self.shape


@dataclass
class FxSigmaDelta(Node):
    """Loihi 2 sigma-delta neuron (Lava `lava.proc.sdn`, fixed_pt models), one of three roles:

    * "sigma_delta" (SigmaDelta, ReLU): with scale = 2**(spike_exp + state_exp),
          sigma += a_in;  act = relu(sigma + bias_mant * scale)
          delta = act - act_prev + residue;  s = delta if |delta| >= vth * scale else 0
          residue = delta - s;  act_prev = act;  out = s >> state_exp (floor)
    * "delta" (Delta, the input encoder): as above with act = a_in << (spike_exp +
      state_exp) and no sigma or bias;
    * "sigma" (Sigma, a network's readout): out = sigma += a_in.

    All arithmetic is int32 (Lava keeps these registers in numpy int32 and wraps). The
    output is a graded spike (0 = no message) of `num_message_bits`; the synapse that reads
    it multiplies its weights by the value. Unlike FxLIF these neurons are never reset:
    they run from global step 0 (lava-dl netx ignores reset intervals for them), so a
    positive bias can send messages before the first input arrives; outputs are recorded
    in local time like every neuron's (step t of a node at depth d is global step t + d).
    """
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True
    runs_in_global_time: ClassVar[bool] = True

    shape: tuple[int, ...] = ()
    role: str = "sigma_delta"
    vth: int = 0
    bias_mant: np.ndarray = None
    spike_exp: int = 6
    state_exp: int = 6
    cum_error: bool = False
    num_message_bits: int = 16
    kind: ClassVar[str] = "graded"
    ROLES: ClassVar[tuple[str, ...]] = ("sigma_delta", "delta", "sigma")

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        if self.role not in self.ROLES:
            raise GraphError(f"{self.name}: sigma-delta role '{self.role}' is not one of "
                             f"{', '.join(self.ROLES)}")
        if self.bias_mant is None:
            self.bias_mant = np.zeros(self.shape, dtype=np.int32)
        for f in ("vth", "spike_exp", "state_exp", "num_message_bits"):
            setattr(self, f, _int(self, f, getattr(self, f), -MAX_DIM))
        self.cum_error = bool(self.cum_error)
        if not (0 <= self.spike_exp <= 7 and 0 <= self.state_exp <= 7):
            raise GraphError(f"{self.name}: spike_exp {self.spike_exp} / state_exp "
                             f"{self.state_exp} outside Lava's 3-bit range [0, 7]")
        if self.vth < 0:
            raise GraphError(f"{self.name}: negative threshold vth {self.vth}")

    def out_shape(self, in_shapes):
        if self.role == "delta" and not in_shapes:
            raise GraphError(f"{self.name}: a delta encoder needs an input")
        for s in in_shapes:
            if tuple(s) != self.shape:
                raise GraphError(f"{self.name}: input shape {tuple(s)} does not match the "
                                 f"neuron shape {self.shape}")
        return self.shape

    def summary(self):
        if self.role == "sigma":
            return "sigma readout"
        return (f"{self.role} vth={self.vth} exp={self.spike_exp}+{self.state_exp}"
                f"{' cum_error' if self.cum_error else ''}, {self.num_message_bits}b messages")


READOUT_DECISIONS = ("last", "sum", "max")
"""How a leaky-integrator readout picks a class: argmax over classes of the voltage at the
last step, of its sum over the steps, or of its maximum over the steps."""


def _decision(node: "Node", value) -> str:
    if not isinstance(value, str) or value not in READOUT_DECISIONS:
        raise GraphError(f"{node.name}: {type(node).__name__} decision = {value!r:.40} must "
                         f"be one of {', '.join(READOUT_DECISIONS)}")
    return value


def _real(node: "Node", field: str, value, ok, what: str) -> float:
    """`value` as a float if it is a finite real number (not a bool) with ok(value);
    otherwise one GraphError naming node, field, value and `what` it must be."""
    good = isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))
    try:
        good = good and bool(np.isfinite(float(value))) and ok(float(value))
    except OverflowError:   # an int beyond float range
        good = False
    if not good:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} = {value!r:.40} must "
                         f"be {what}")
    return float(value)


def _per_neuron(node: "Node", field: str, value, dtype) -> np.ndarray:
    """`value` (None: zeros, a scalar or an array broadcastable to the node's shape) as a
    finite array of the node's shape; otherwise one GraphError naming node and field."""
    a = np.zeros(node.shape) if value is None else np.asarray(value)
    try:
        ok = a.dtype.kind in "biuf" and bool(np.all(np.isfinite(a)))
        a = np.broadcast_to(a, node.shape).astype(dtype) if ok else a
    except ValueError:
        ok = False
    if not ok:
        raise GraphError(f"{node.name}: {type(node).__name__} {field} (shape {a.shape}) must "
                         f"be finite numbers broadcastable to the shape {node.shape}")
    return a


@dataclass
class LI(Node):
    """Float non-spiking leaky-integrator readout (NIR `LI` / `CubaLI`), in Loihi's update
    order (per time step, from u = v = 0 at the start of each sample):

        u = (1 - du) * u + x          # current decays, then adds input (du = 1: u = x)
        v = (1 - dv) * v + u + bias   # voltage decays, then adds current and bias
        out = v + offset              # the readout value: no threshold, no spike, no reset

    du, dv: decay fractions in [0, 1]. bias, offset: per neuron (float32). offset is the
    source library's initial voltage v0 (norse starts at v_leak): the state runs as
    v - v0, whose bias is leak - dv * v0. The input gain of the source's equations is
    already folded into the feeding synapse's weights. decision (one of
    READOUT_DECISIONS): how a class is picked from `out` over the steps.
    """

    shape: tuple[int, ...] = ()
    du: float = 1.0
    dv: float = 0.0
    bias: np.ndarray = None
    offset: np.ndarray = None
    decision: str = "sum"
    kind: ClassVar[str] = "real"

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        for f in ("du", "dv"):
            setattr(self, f, _real(self, f, getattr(self, f), lambda v: 0.0 <= v <= 1.0,
                                   "a number in [0, 1]"))
        self.bias = _per_neuron(self, "bias", self.bias, np.float32)
        self.offset = _per_neuron(self, "offset", self.offset, np.float32)
        self.decision = _decision(self, self.decision)

    out_shape = LIF.out_shape

    def summary(self):
        return f"du={self.du:.4g} dv={self.dv:.4g} readout ({self.decision})"


@dataclass
class FxLI(Node):
    """Loihi CUBA compartment used as a non-spiking readout (a Lava `LIF` whose threshold
    lies above the state range; the voltage is read every step). Per step, as `FxLIF`:

        u = trunc(u * (4096 - du - 1) / 4096) + (a_in << 6), wrapped once to 24 bits
        v = clip(trunc(v * (4096 - dv) / 4096) + u + bias, -(2**23 - 1), 2**23 - 1)
        out = v                       # int32, every step; never spikes, never resets

    with bias = bias_mant << bias_exp, from u = v = 0 at local step 0 of each sample. The
    readout value in the float model's units is v / scale + offset (scale: 64 x the
    quantisation scale; offset per neuron, float32); decision as in `LI`.
    """
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True
    takes_synapse_bias: ClassVar[bool] = True

    shape: tuple[int, ...] = ()
    #: the readout runs as Lava's LIFReset (it never reaches its threshold)
    reset: ClassVar[str] = "zero"
    fire_at: ClassVar[str] = ">"
    du: int = 4095
    dv: int = 0
    bias_mant: np.ndarray = None
    bias_exp: int = 0
    scale: float = 1.0
    offset: np.ndarray = None
    decision: str = "sum"
    kind: ClassVar[str] = "graded"

    def __post_init__(self):
        self.shape = _ints(self, "shape", self.shape, minimum=1)
        self.du, self.dv = _int(self, "du", self.du, 0, 4095), _int(self, "dv", self.dv, 0,
                                                                     4095)
        self.bias_exp = _int(self, "bias_exp", self.bias_exp, -MAX_DIM)
        mant = _per_neuron(self, "bias_mant", self.bias_mant, np.float64)
        if np.any(mant != np.round(mant)):
            raise GraphError(f"{self.name}: FxLI bias_mant must be integers")
        self.bias_mant = mant.astype(np.int32)
        self.scale = _real(self, "scale", self.scale, lambda v: v > 0.0,
                           "a finite number > 0")
        self.offset = _per_neuron(self, "offset", self.offset, np.float32)
        self.decision = _decision(self, self.decision)

    out_shape = LIF.out_shape

    def summary(self):
        return (f"du={self.du} dv={self.dv} bias_exp={self.bias_exp} scale={self.scale:.4g} "
                f"readout ({self.decision})")


# ---------------------------------------------------------------- float top-down loop
@dataclass
class TopDown(Node):
    """Float HTDA top-down branch (snncompile.nn.htda): a small ANN reading the spikes S of
    a later LIF (its input, (C, H', W')) and producing a spatial map m (1, H, W) for the
    encoding LIF's current. Per local step t, from the source's spikes at steps 0 .. t:

        r_t = sum_{s<=t} S[s]             (read "count";  "rate": that sum / (t + 1))
        m_t = finish(up(sigmoid(conv(w2, b2)(relu(conv(w1, b1)(r_t))))))

    both convolutions with bias and "same" padding (odd kernels); `up`: nearest upsampling
    by `upsample` (H = upsample[0] * H'); finish: "binary" mask -> [m >= 0.5] in {0, 1},
    "soft" -> m on the 1/2**gain_bits grid as the MA-SNN gains are
    (snncompile.nn.attention.quantize_gain; 0: unrounded). The loop's `Delay` brings m_t to the `Gate` `latency` steps later.
    w1 (hidden, C, k, k), b1 (hidden,), w2 (1, hidden, k, k), b2 (1,).
    """

    w1: np.ndarray = None
    b1: np.ndarray = None
    w2: np.ndarray = None
    b2: np.ndarray = None
    read: str = "rate"
    mask: str = "soft"
    gain_bits: int = 0
    upsample: tuple[int, int] = (1, 1)

    READS: ClassVar[tuple[str, ...]] = ("rate", "count")
    MASKS: ClassVar[tuple[str, ...]] = ("soft", "binary")

    def __post_init__(self):
        for f, allowed in (("read", self.READS), ("mask", self.MASKS)):
            if getattr(self, f) not in allowed:
                raise GraphError(f"{self.name}: TopDown {f} {getattr(self, f)!r:.40} is not "
                                 f"one of {', '.join(allowed)}")
        self.upsample = _ints(self, "upsample", self.upsample, minimum=1, length=2)
        self.gain_bits = _int(self, "gain_bits", self.gain_bits, 0, 16)
        shapes = [np.shape(a) for a in (self.w1, self.b1, self.w2, self.b2)]
        ok = len(shapes[0]) == 4 and len(shapes[2]) == 4 and shapes[2][:2] == (1, shapes[0][0]) \
            and shapes[1] == shapes[0][:1] and shapes[3] == (1,) \
            and shapes[0][2:] == shapes[2][2:] and shapes[0][2] == shapes[0][3] \
            and shapes[0][2] % 2 == 1
        if not ok:
            raise GraphError(f"{self.name}: TopDown weights w1 {shapes[0]}, b1 {shapes[1]}, "
                             f"w2 {shapes[2]}, b2 {shapes[3]} must be (hidden, C, k, k), "
                             "(hidden,), (1, hidden, k, k), (1,) with an odd k")

    def out_shape(self, in_shapes):
        shape = self._one(in_shapes)
        if len(shape) != 3 or shape[0] != self.w1.shape[1]:
            raise GraphError(f"{self.name}: TopDown expects a ({self.w1.shape[1]}, H, W) "
                             f"input, got {shape}")
        return (1, shape[1] * self.upsample[0], shape[2] * self.upsample[1])

    def summary(self):
        k = self.w1.shape[-1]
        return (f"{self.w1.shape[1]}->{self.w1.shape[0]}->1, k{k}x{k}, read {self.read}, "
                f"mask {self.mask}")


@dataclass
class Delay(Node):
    """Float loop delay (HTDA): at local step t its consumer receives what its input
    produced at step t - latency, and `init` for t < latency (None: ones, so a `Gate`
    passes the current unchanged; else an array that broadcasts to the node's shape, e.g.
    HTDA's learned initial map). Edges out of it are back edges (`closes_loop`)."""

    latency: int = 1
    init: np.ndarray = None
    closes_loop: ClassVar[bool] = True

    def __post_init__(self):
        self.latency = _int(self, "latency", self.latency, minimum=1)

    def out_shape(self, in_shapes):
        return self._one(in_shapes)

    def summary(self):
        return f"latency {self.latency}, init {'ones' if self.init is None else 'learned'}"


@dataclass
class Gate(Node):
    """Float multiplicative gate on a LIF's input current: inputs, in order, the current
    `a` and the gain `g` (same number of axes, broadcasting to `a`); out = a * g per step,
    no delay (HTDA's map times the encoding layer's current)."""

    def out_shape(self, in_shapes):
        if len(in_shapes) != 2:
            raise GraphError(f"{self.name}: Gate takes (current, gain), got "
                             f"{len(in_shapes)} inputs")
        a, g = tuple(in_shapes[0]), tuple(in_shapes[1])
        try:
            b = np.broadcast_shapes(a, g)
        except ValueError:
            b = None
        if b != a or len(g) != len(a):
            raise GraphError(f"{self.name}: gain shape {g} does not broadcast to the current "
                             f"shape {a}")
        return a


NODE_TYPES: dict[str, type[Node]] = {
    cls.__name__: cls
    for cls in (Input, Dense, Conv2d, Conv1d, SumPool2d, AvgPool2d, SumPool1d, AvgPool1d,
                Flatten, LIF, Attention,
                Output, FxDense, FxConv2d, FxConv1d, FxLIF, FxGate, FxCoproc, FxCoprocOut,
                FxDelay, FxSigmaDelta, LI, FxLI, TopDown, Delay, Gate, RecDense, FxRecDense)
}
FLOAT_TYPES = tuple(t for t in NODE_TYPES.values() if t.stage == "float")
FIXED_TYPES = tuple(t for t in NODE_TYPES.values() if t.stage == "fixed")
NEURON_TYPES = tuple(t for t in NODE_TYPES.values() if t.is_neuron)
"""Fixed-point neurons: the nodes whose outputs are spikes (binary or graded) and that
verify compares."""


def node_fields(node: Node) -> dict:
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}


def fx_coproc_equal(a: "FxCoproc", b: "FxCoproc") -> bool:
    return (a.doc == b.doc and set(a.arrays) == set(b.arrays)
            and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays))
