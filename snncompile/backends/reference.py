"""Integer reference of a compiled graph, written independently of the simulator.

Where the simulator steps every layer together in global time with explicit one-step
synapse buffers (numpy), this reference evaluates the graph layer by layer over the whole
time window in local time (delay-free), in PyTorch int64, straight from the arithmetic in
the FxLIF / FxDense / FxConv2d docstrings. It does NOT reproduce Lava's weight preparation:
it requires the compiled weights to be representable, so a quantiser bug that relied on
Lava silently truncating weights shows up as a mismatch. Both are compared in `verify`.

What each node type computes is one rule per type in one of two tables:

* `REFERENCE` (local time): feed-forward graphs, evaluated node by node over the whole
  window at once (a whole-window attention partition runs its ONNX model once on it;
  its delay does not exist in local time), and graphs with a top-down loop (FxDelay) or
  a recurrent layer (FxRecDense), evaluated one local step at a time with every node
  keeping its state;
* `REFERENCE_GLOBAL` (global time): graphs with nodes that `runs_in_global_time`
  (sigma-delta neurons are never reset), evaluated node by node over the T + max depth
  global steps of one sample, each synapse delivering one step later; every neuron's
  values are then cut to its local window (`snncompile.ir.timing`).

A rule is called `rule(node, ins, ctx)`: `ins` are the node's input values (N, k, *shape)
in graph order, `ctx` the `_Context` of the run; it returns the node's value. A graph with
a node that the table has no rule for is refused in one line before anything runs.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from snncompile.backends.base import Run, register_backend
from snncompile.errors import UnsupportedError
from snncompile.ir import (Flatten, FxConv1d, FxConv2d, FxCoproc, FxCoprocOut, FxDelay,
                           FxDense, FxGate, FxLI, FxLIF, FxRecDense, FxSigmaDelta, Graph, Input,
                           Output)
from snncompile.ir.nodes import synapse_bias
from snncompile.ir.registry import Rules
from snncompile.ir.timing import Timing, loop_source_step, timing
from snncompile.target import Numerics, load_target

REFERENCE = Rules("integer reference")
"""Node type -> rule in local time (feed-forward and top-down-loop graphs)."""
REFERENCE_GLOBAL = Rules("integer reference (global time)")
"""Node type -> rule in global time (graphs with sigma-delta neurons)."""


# ------------------------------------------------------------------ entry point
def reference_run(graph: Graph, inputs: np.ndarray, numerics: Numerics | None = None,
                  record_state: bool = False):
    """Return {neuron: (N, T, *shape)} (bool spikes of FxLIF, int32 graded values of
    FxSigmaDelta) and, if record_state, also {FxLIF: (u, v) int arrays}. What crosses the
    co-processor boundary (see `Run.boundary`) is in the same dict under "@" + its key, so
    that verify can compare what crosses the partition.

    A feed-forward graph is evaluated layer by layer over the whole window; a graph with a
    top-down loop (FxDelay) one local step at a time, every node keeping its state."""
    recorded, states = _reference(graph, inputs, numerics, record_state)
    merged = {("@" + key if where == "boundary" else key): value
              for (where, key), value in recorded.items()}
    return (merged, states) if record_state else merged


def _reference(graph, inputs, numerics, record_state):
    """(recorded, states): {("values" | "boundary", key): array} in the order first
    recorded, and {FxLIF name: (u, v)} (empty unless record_state)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # ops on a few MB: a second thread mostly waits on 2 cores
    try:
        num = numerics or load_target("loihi2").numerics
        frames = torch.as_tensor(np.asarray(inputs, dtype=np.int64))
        if any(graph.node(name).runs_in_global_time for name in graph.order()):
            if record_state:
                raise UnsupportedError("sigma-delta graphs have no recorded (u, v) state")
            ctx = _run_global(graph, frames, num)
        else:
            ctx = _run_local(graph, frames, num, record_state)
        return ctx.collect()
    finally:
        torch.set_num_threads(threads)


@dataclasses.dataclass
class _Context:
    """What the rules of one run share.

    graph, numerics, timing (of the whole window), samples (N), record_state;
    start / steps: the first local step of the values being computed and how many steps
      they hold along axis 1 (a chunk of local time, or all global steps of a sample);
    frames: the input frames of those steps (N, steps, *input shape), global time: the
      T frames of the sample (the rule pads them);
    bias_fed: the FxLIF nodes whose bias the input frames are (netx input layers);
    state: node name -> what the node keeps from one chunk to the next (LIF registers, the
      co-processor's evaluator, a loop delay's history);
    chunks: ("values" | "boundary", key) -> the recorded tensors of every chunk;
    state_chunks: FxLIF name -> its (u, v) tensors of every chunk, when record_state."""

    graph: Graph
    numerics: Numerics
    timing: Timing
    samples: int
    record_state: bool
    bias_fed: set
    start: int = 0
    steps: int = 0
    frames: torch.Tensor | None = None
    state: dict = dataclasses.field(default_factory=dict)
    chunks: dict = dataclasses.field(default_factory=dict)
    state_chunks: dict = dataclasses.field(default_factory=dict)

    def record(self, name: str, value: torch.Tensor, u=None, v=None) -> None:
        """Keep what neuron `name` computed over this chunk (and its state, if given)."""
        self.chunks.setdefault(("values", name), []).append(value)
        if u is not None:
            self.state_chunks.setdefault(name, []).append((u, v))

    def cross(self, key: str, value: torch.Tensor) -> None:
        """Keep what crossed the co-processor boundary under `key` over this chunk."""
        self.chunks.setdefault(("boundary", key), []).append(value)

    def collect(self):
        """(recorded, states) as numpy arrays, every chunk joined along time."""
        recorded = {key: _joined(parts) for key, parts in self.chunks.items()}
        states = {name: tuple(_joined(p) for p in zip(*parts))
                  for name, parts in self.state_chunks.items()}
        return recorded, states


def _joined(parts) -> np.ndarray:
    """Chunks joined along time (a single chunk as it is: no copy)."""
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).numpy()


def _rules(table: Rules, graph: Graph) -> dict:
    """Node name -> its rule in `table`, in graph order (refuses, in one line, the first node
    the table has no rule for)."""
    return {name: table.rule(graph.node(name)) for name in graph.order()}


def _run_local(graph: Graph, x: torch.Tensor, num: Numerics, record_state: bool) -> _Context:
    """Evaluate every node in local time: the whole window at once, or one local step at a
    time when a rule closes a loop (its value is read before its input is computed)."""
    n, t = x.shape[:2]
    rules = _rules(REFERENCE, graph)
    stepwise = any(getattr(rule, "closes_loop", False) for rule in rules.values())
    if stepwise and any(getattr(graph.node(name), "delay", None) is not None
                        for name in rules):
        raise UnsupportedError("a graph with both a top-down loop and synaptic delays has no "
                               "integer reference yet")
    ctx = _Context(graph, num, timing(graph, t), n, record_state, graph.bias_fed())
    chunk = 1 if stepwise else t
    release = _releases(graph, list(rules))
    for start in range(0, t, chunk):
        ctx.start, ctx.frames = start, x[:, start:start + chunk]
        ctx.steps = ctx.frames.shape[1]
        values = {name: rule.opening(graph.node(name), ctx)
                  for name, rule in rules.items() if hasattr(rule, "opening")}
        for name, rule in rules.items():
            values[name] = rule(graph.node(name), [values[i] for i in graph.inputs(name)], ctx)
            for done in release[name]:
                del values[done]
    return ctx


def _releases(graph: Graph, order: list[str]) -> dict[str, list[str]]:
    """Node -> the values no node after it reads (computed before it): dropped once it has
    run, so that the allocator reuses their memory. Whole-window tensors of tens of MB
    that stay alive make every later one a fresh mapping, and its page faults cost more
    than the arithmetic that fills it."""
    pos = {name: k for k, name in enumerate(order)}
    last = {}
    for name in order:
        for i in graph.inputs(name):
            last[i] = max(last.get(i, -1), pos[name])
    out = {name: [] for name in order}
    for i, k in last.items():
        if pos[i] < k:
            out[order[k]].append(i)
    return out


def _run_global(graph: Graph, x: torch.Tensor, num: Numerics) -> _Context:
    """Evaluate every node over the T + max depth global steps of one sample (the input
    padded with zero frames), every synapse (`is_synapse`) delivering one step later."""
    n, t = x.shape[:2]
    rules = _rules(REFERENCE_GLOBAL, graph)
    clock = timing(graph, t)
    ctx = _Context(graph, num, clock, n, False, set(), steps=clock.global_steps, frames=x)
    values: dict[str, torch.Tensor] = {}
    for name, rule in rules.items():
        node = graph.node(name)
        value = rule(node, [values[i] for i in graph.inputs(name)], ctx)
        lag = node.output_delay()
        values[name] = _steps_later(value, lag) if lag else value
    return ctx


def _steps_later(y: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """y delayed by `lag` steps along time (axis 1): the first steps receive zeros."""
    out = torch.zeros_like(y)
    out[:, lag:] = y[:, :-lag]
    return out


def _summed(ins: list[torch.Tensor]) -> torch.Tensor:
    """A neuron's input: the sum of what its synapses deliver."""
    return ins[0] if len(ins) == 1 else torch.stack(ins).sum(0)


# ------------------------------------------------------------------ arithmetic
def _wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 `x` to `bits` bits: ((x + half) mod 2 half) - half,
    the modulo taken as a mask (int64 & is two's complement, so exact for negatives)."""
    half = 1 << (bits - 1)
    if x.numel() > 4096:     # large: skip the three passes when every value is in range
        lo, hi = torch.aminmax(x)
        if int(lo) >= -half and int(hi) < half:
            return x
    return ((x + half) & (2 * half - 1)) - half


def _decay(x: torch.Tensor, keep: int, bits: int) -> torch.Tensor:
    """x * keep / 2**bits rounded toward zero: a negative product is biased by 2**bits - 1
    before the (flooring) arithmetic shift."""
    y = x * keep
    return (y + ((y >> 63) & ((1 << bits) - 1))) >> bits


def _decay_(y: torch.Tensor, bits: int) -> torch.Tensor:
    """`_decay` of an already multiplied y (owned: changed in place)."""
    t = y >> 63
    t &= (1 << bits) - 1
    y += t
    y >>= bits
    return y


# ------------------------------------------------------------------ pass-through nodes
@REFERENCE.register(Input)
def _input(node: Input, ins, ctx: _Context) -> torch.Tensor:
    """The frames of this chunk."""
    return ctx.frames


@REFERENCE_GLOBAL.register(Input)
def _input_global(node: Input, ins, ctx: _Context) -> torch.Tensor:
    """The T frames of the sample, then zero frames up to the last global step."""
    x = ctx.frames
    padded = torch.zeros((x.shape[0], ctx.steps) + tuple(x.shape[2:]), dtype=torch.int64)
    padded[:, :x.shape[1]] = x
    return padded


@REFERENCE_GLOBAL.register(Flatten)
@REFERENCE.register(Flatten)
def _flatten(node: Flatten, ins, ctx: _Context) -> torch.Tensor:
    return ins[0].reshape(tuple(ins[0].shape[:2]) + (-1,))


@REFERENCE_GLOBAL.register(Output)
@REFERENCE.register(Output)
def _output(node: Output, ins, ctx: _Context) -> torch.Tensor:
    return ins[0]


# ------------------------------------------------------------------ synapses
@REFERENCE.register(FxDense)
def _dense_rule(node: FxDense, ins, ctx: _Context) -> torch.Tensor:
    return _biased(node, _dense(node, ins[0]))


@REFERENCE.register(FxConv2d)
def _conv_rule(node: FxConv2d, ins, ctx: _Context) -> torch.Tensor:
    return _biased(node, _conv(node, ins[0]))


def _biased(node, y: torch.Tensor) -> torch.Tensor:
    """y plus the synapse's bias axon at every local step: a separate axon summed into the
    neurons' input, so after the synapse's own wrap (24-bit conv, int32 graded dense)."""
    b = synapse_bias(node, tuple(y.shape[2:]))
    return y if b is None else y + torch.as_tensor(b)


def _no_bias_in_global_time(node) -> None:
    if node.bias_mant is not None:
        raise UnsupportedError(f"{node.name}: a synapse bias axon into neurons that run in "
                               "global time (sigma-delta) is not compiled")


@REFERENCE_GLOBAL.register(FxDense)
def _dense_global(node: FxDense, ins, ctx: _Context) -> torch.Tensor:
    _no_bias_in_global_time(node)
    return _dense(node, ins[0])


@REFERENCE_GLOBAL.register(FxConv2d)
def _conv_global(node: FxConv2d, ins, ctx: _Context) -> torch.Tensor:
    _no_bias_in_global_time(node)
    return _conv(node, ins[0])


@REFERENCE.register(FxConv1d)
def _conv1d_rule(node: FxConv1d, ins, ctx: _Context) -> torch.Tensor:
    return _biased(node, _conv1d(node, ins[0]))


@REFERENCE_GLOBAL.register(FxConv1d)
def _conv1d_global(node: FxConv1d, ins, ctx: _Context) -> torch.Tensor:
    _no_bias_in_global_time(node)
    return _conv1d(node, ins[0])


def _conv1d(node: FxConv1d, x: torch.Tensor) -> torch.Tensor:
    """The height-1 2-D convolution on (N, T, C, 1, L), back to (N, T, O, L')."""
    y = _conv(node, x.reshape(tuple(x.shape[:2]) + node.image_shape(x.shape[2:])))
    return y.reshape(tuple(y.shape[:3]) + (y.shape[-1],))


def _check_weights(node, w: np.ndarray, lo: int, hi: int, step: int):
    """Refuse, in one line, the first weight outside [lo, hi] or off the mantissa grid
    (a multiple of `step`, a power of 2); checked on the stored integer array (no int64
    copy: a dense layer's weights are the largest array the reference reads)."""
    step = max(int(step), 1)
    if w.size and (int(w.min()) < lo or int(w.max()) > hi
                   or (step > 1 and bool(np.bitwise_and(w, step - 1).any()))):
        bad = (w < lo) | (w > hi) | ((w & (step - 1)) != 0)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UnsupportedError(f"{node.name}: weight{list(idx)} = {int(w[idx])} is not a "
                               f"representable 8-bit mantissa (range [{lo}, {hi}], step {step})")


def _dense(node: FxDense, x: torch.Tensor) -> torch.Tensor:
    w = np.asarray(node.weight)
    if w.dtype.kind not in "iu":
        w = w.astype(np.int64)
    mixed = node.sign_mode == "mixed"
    lo, hi = {"mixed": (-256, 254), "excitatory": (0, 255),
              "inhibitory": (-255, 0)}[node.sign_mode]
    _check_weights(node, w, lo, hi, 2 ** (8 - node.num_weight_bits + int(mixed)))
    w = torch.as_tensor(w)   # its integer type: _exact_matmul casts once, as it needs
    x = x.to(torch.int64)
    if node.num_message_bits == 0:
        x = (x != 0).to(torch.int64)
    e = int(node.weight_exp)

    def shifted(acc):
        if node.num_message_bits:      # graded: Lava's int32 dot product and shift
            acc = _wrap(acc, 32)
        acc = acc * (1 << e) if e > 0 else acc >> -e    # >>: floor (arithmetic)
        return _wrap(acc, 32) if node.num_message_bits else acc
    if node.delay is None:
        return shifted(_exact_matmul(x, w))
    w = w.to(torch.int64)
    d = torch.as_tensor(np.asarray(node.delay, np.int64))
    out = torch.zeros(x.shape[:2] + (w.shape[0],), dtype=torch.int64)
    for k in torch.unique(d).tolist():             # delay k: step t gets what s(t-k) sent
        if k >= x.shape[1]:
            continue                                # arrives after the window
        part = shifted(torch.matmul(x, torch.where(d == k, w, 0).T))
        out[:, k:] += part[:, :x.shape[1] - k] if k else part
    return out


def _exact_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T of int64 tensors, exactly: in float32 (BLAS) when every partial sum is an
    integer below 2**24 in magnitude (exact in any summation order), else in int64."""
    if x.numel() and w.numel():
        xl, xh = torch.aminmax(x)
        wl, wh = torch.aminmax(w)
        bound = max(-int(xl), int(xh)) * max(-int(wl), int(wh)) * w.shape[1]
        if bound < 2 ** 24:
            return torch.matmul(x.to(torch.float32), w.T.to(torch.float32)).to(torch.int64)
    return torch.matmul(x, w.T.to(torch.int64))


def _conv(node: FxConv2d, x: torch.Tensor) -> torch.Tensor:
    n, t = x.shape[:2]
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.int64))
    if node.num_message_bits == 0:
        x, xmax = x != 0, 1
    else:
        lo, hi = torch.aminmax(x)
        xmax = max(-int(lo), int(hi))
    # every partial sum is an integer below `bound` in magnitude: float32 holds them all
    # exactly below 2**24 (in any summation order), float64 below 2**53
    lo, hi = torch.aminmax(w)
    bound = max(-int(lo), int(hi)) * xmax * w[0].numel()
    if bound >= 2 ** 53:
        raise UnsupportedError(f"{node.name}: conv sums up to {bound} exceed the reference's "
                               "exact range")
    dtype = torch.float32 if bound < 2 ** 24 else torch.float64
    y = torch.nn.functional.conv2d(x.reshape((n * t,) + tuple(x.shape[2:])).to(dtype),
                                   w.to(dtype), stride=node.stride, padding=node.padding,
                                   groups=node.groups)
    y = y.to(torch.int64)   # every sum is an integer held exactly: no rounding needed
    return _wrap(y, 24).reshape((n, t) + tuple(y.shape[1:]))


# ------------------------------------------------------------------ co-processor and gate
@REFERENCE.register(FxCoproc)
def _coproc(node: FxCoproc, ins, ctx: _Context) -> dict[str, torch.Tensor]:
    """Every output port of the co-processor partition over this chunk; what it receives
    from each source crosses the boundary under "<node><-<source>"."""
    if node.name not in ctx.state:
        ctx.state[node.name] = _CoprocEvaluator(node, ctx.samples)
    for src, value in zip(ctx.graph.inputs(node.name), ins):
        ctx.cross(f"{node.name}<-{src}", value.to(torch.int64))
    if node.window:
        if ctx.steps != ctx.timing.steps:
            raise UnsupportedError(f"{node.name}: a whole-window attention partition in a "
                                   "graph evaluated step by step (a top-down loop) has no "
                                   "integer reference yet")
        return ctx.state[node.name].run_window(ins)
    return ctx.state[node.name].run(ins)


@REFERENCE.register(FxCoprocOut)
def _coproc_out(node: FxCoprocOut, ins, ctx: _Context) -> torch.Tensor:
    """One output port of the co-processor; it crosses the boundary under its name."""
    value = ins[0][node.port]
    ctx.cross(node.name, value)
    return value


class _CoprocEvaluator:
    """The co-processor partition through its exported ONNX model, run by onnx's reference
    evaluator step by step (an implementation independent of the simulator's numpy one)."""

    def __init__(self, node: FxCoproc, n: int):
        from snncompile.coproc.onnx_export import build_onnx, evaluator
        self.cg = node.cgraph
        self.evaluator = evaluator(build_onnx(self.cg))
        self.state = self.cg.init_state(n)

    def run(self, ins: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        from snncompile.coproc.onnx_export import run_onnx

        xs = [x.numpy() for x in ins]
        steps = []
        for k in range(xs[0].shape[1]):
            out, self.state = run_onnx(self.evaluator, self.cg,
                                       dict(zip(self.cg.inputs, (x[:, k] for x in xs))),
                                       self.state)
            steps.append(out)
        return {o: torch.as_tensor(np.stack([s[o] for s in steps], 1).astype(np.int64))
                for o in self.cg.outputs}

    def run_window(self, ins: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """A window partition (FxCoproc `window` = T): one run on each sample's whole
        window (N, T, *shape); each output (N, T or 1, *shape) becomes its value at every
        local step (a leading 1: the same at each), in local time (the delay is not seen)."""
        from snncompile.coproc.onnx_export import run_onnx

        xs = {k: x.numpy() for k, x in zip(self.cg.inputs, ins)}
        out, _ = run_onnx(self.evaluator, self.cg, xs, {})
        t = ins[0].shape[1]
        return {o: torch.as_tensor(np.broadcast_to(v, (v.shape[0], t) + v.shape[2:])
                                   .astype(np.int64)) for o, v in out.items()}


@REFERENCE.register(FxGate)
def _gate_rule(node: FxGate, ins, ctx: _Context) -> torch.Tensor:
    return _gate(node, ins[0], ins[1])


def _gate(node: FxGate, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(a * g) / 2**shift rounded as node.rounding says: floor, or to nearest with ties to
    even; the gain broadcasts (same number of axes).

    Computed in float64, exactly, not by integer shifts (the simulator's way): a is the
    synapse's int32 message and |g| <= 2**21 (checked), so p = a * g is an integer below
    2**52 in magnitude, held exactly; p * 2**-shift only changes the exponent; floor and
    torch.round (ties to even) of an exact value are exact. One step (axis 1) at a time:
    on the whole chunk, allocating tensors of the current's size cost more than the
    arithmetic."""
    fh, fw = node.upsample
    if (fh, fw) != (1, 1):  # nearest: neuron (i, j) reads gain (i // fh, j // fw)
        g = g.repeat_interleave(fh, dim=-2).repeat_interleave(fw, dim=-1)
    if g.numel() and int(g.abs().max()) > 2 ** 21:
        raise UnsupportedError(f"{node.name}: gain {int(g.abs().max())} exceeds the "
                               "reference's exact range (2**21)")
    a = _wrap(a.to(torch.int64), 32)  # the synapse's int32 message
    g = g.to(torch.float64) * 2.0 ** -node.shift
    shape = np.broadcast_shapes(tuple(a.shape), tuple(g.shape))  # torch's imports sympy
    out = torch.empty(shape, dtype=torch.int64)
    nearest = node.rounding == "nearest_even"
    for t in range(shape[1]):
        q = a[:, min(t, a.shape[1] - 1)].to(torch.float64) * g[:, min(t, g.shape[1] - 1)]
        q = torch.round_(q) if nearest else torch.floor_(q)
        out[:, t] = q.clamp_(min=0) if node.relu else q
    return out


# ------------------------------------------------------------------ LIF neurons
@REFERENCE.register(FxLIF)
def _lif(node: FxLIF, ins, ctx: _Context) -> torch.Tensor:
    """Spikes (int64 0/1) over this chunk; a bias-fed LIF adds its input frames to its bias
    mantissas and has no synaptic input."""
    if node.name not in ctx.state:
        ctx.state[node.name] = _LifRegisters(node, ctx.samples, ctx.numerics)
    a = _summed(ins)
    frames = None
    if node.name in ctx.bias_fed:
        a, frames = torch.zeros_like(a), a
    s, u, v = ctx.state[node.name].run(a, ctx.record_state, frames)
    ctx.record(node.name, s.to(torch.bool), u, v)
    return s


def _param(node: FxLIF, field: str):
    """du, dv or vth: an int, or an int64 tensor of the neuron shape (per neuron)."""
    value = getattr(node, field)
    if isinstance(value, np.ndarray):
        return torch.as_tensor(np.broadcast_to(value.astype(np.int64), node.shape).copy())
    return int(value)


class _LifRegisters:
    """Integer LIF state (u, v) of one node, advanced over a chunk of local steps."""

    def __init__(self, node: FxLIF, n: int, num: Numerics):
        self.num, self.half = num, num.state_max
        bias_mant = torch.as_tensor(np.broadcast_to(np.asarray(node.bias_mant, np.int64),
                                                    node.shape).copy())
        self.bias = bias_mant * (1 << node.bias_exp)
        self.bias_mant, self.bias_exp = bias_mant, node.bias_exp
        self.vth = _param(node, "vth") << num.vth_shift
        self.fire_ge, self.reset = node.fire_at == ">=", node.reset
        self.keep_u = num.decay_unity - _param(node, "du") - 1
        self.keep_v = num.decay_unity - _param(node, "dv")
        self.u = torch.zeros((n,) + tuple(node.shape), dtype=torch.int64)
        self.v = torch.zeros_like(self.u)

    def run(self, a: torch.Tensor, record: bool, bias_frames: torch.Tensor | None = None):
        """bias_frames (N, k, *shape): per-step bias mantissas added to the node's own.

        One step at a time, the input too: the int32 input port and its shift into u on
        the whole chunk allocated a tensor of the chunk's size, whose page faults cost more
        than the arithmetic."""
        num, half = self.num, self.half
        out, us, vs = [], [], []
        u, v = self.u, self.v
        bias = self.bias
        a = a.to(torch.int64)
        if bias_frames is not None:
            bias_all = (self.bias_mant + bias_frames.to(torch.int64)) * (1 << self.bias_exp)
        bits, keep_u, keep_v = num.decay_bits, self.keep_u, self.keep_v
        has_bias = bias_frames is not None or bool(bias.any())
        for k in range(a.shape[1]):
            if bias_frames is not None:
                bias = bias_all[:, k]
            u = _decay_(u * keep_u, bits)
            u += _wrap(_wrap(a[:, k], 32) * (1 << num.act_shift), 32)  # int32 port, into u
            lo, hi = torch.aminmax(u)
            if int(lo) <= -half or int(hi) > half:   # else both wraps below are no-ops
                u = _wrap(u, 32)                                        # int32 register
                u = torch.where(u > half, u - 2 * half, u)              # 24-bit wrap (once)
                u = torch.where(u <= -half, u + 2 * half, u)
            v = _decay_(v * keep_v, bits)
            v += u
            if has_bias:
                v += bias
            v.clamp_(-half + 1, half - 1)
            s = v >= self.vth if self.fire_ge else v > self.vth
            if self.reset == "subtract":
                v = torch.where(s, v - self.vth, v)
            elif self.reset == "threshold":
                v = torch.where(s, self.vth, v)
            else:
                v.mul_(s.logical_not())   # masked_fill_ took 7x as long
            out.append(s)
            if record:           # u and v are new tensors every step: no copies needed
                us.append(u)
                vs.append(v)
        self.u, self.v = u, v
        s = torch.stack(out, 1).to(torch.int64)
        if record:
            return s, torch.stack(us, 1), torch.stack(vs, 1)
        return s, None, None


@REFERENCE.register(FxLI)
def _li(node: FxLI, ins, ctx: _Context) -> torch.Tensor:
    """The readout's voltage v (int32) over this chunk, from the FxLI docstring: u, v
    from 0 at local step 0, trunc-toward-zero decays, u wrapped once to 24 bits, v
    saturated at 24 bits, never a spike or a reset (a chip would spike above vth << 6;
    the simulator flags that, this reference does not model it)."""
    num = ctx.numerics
    half, unity = num.state_max, num.decay_unity
    shape = (ctx.samples,) + tuple(node.shape)
    u, v = ctx.state.get(node.name, (torch.zeros(shape, dtype=torch.int64),
                                     torch.zeros(shape, dtype=torch.int64)))
    bias = torch.as_tensor(np.broadcast_to(np.asarray(node.bias_mant, np.int64),
                                           node.shape).copy()) * (1 << node.bias_exp)
    a = _wrap(_wrap(_summed(ins).to(torch.int64), 32) * (1 << num.act_shift), 32)
    vs, us = [], []
    for k in range(a.shape[1]):
        u = torch.div(u * (unity - node.du - 1), unity, rounding_mode="trunc") + a[:, k]
        u = _wrap(u, 32)
        u = torch.where(u > half, u - 2 * half, torch.where(u <= -half, u + 2 * half, u))
        v = torch.div(v * (unity - node.dv), unity, rounding_mode="trunc") + u + bias
        v = v.clamp(-half + 1, half - 1)
        vs.append(v)
        us.append(u)
    ctx.state[node.name] = (u, v)
    value = torch.stack(vs, 1)
    if ctx.record_state:
        ctx.record(node.name, value.to(torch.int32), torch.stack(us, 1), value)
    else:
        ctx.record(node.name, value.to(torch.int32))
    return value


# ------------------------------------------------------------------ top-down loop delay
class _LoopHistory:
    """What a loop delay keeps: every local step its source sent (one tensor per step),
    and what it passes on during the current chunk."""

    def __init__(self):
        self.sent: list[torch.Tensor] = []
        self.reading: torch.Tensor | None = None


class _LoopDelayRule:
    """FxDelay: its consumers read it before its source is computed (a back edge), so the
    graph is evaluated one local step at a time; `opening` gives what it passes on at this
    step (`init`, or what its source sent `latency` steps ago), the call records what its
    source sent at this step."""

    closes_loop = True

    def opening(self, node: FxDelay, ctx: _Context) -> torch.Tensor:
        hist = ctx.state.setdefault(node.name, _LoopHistory())
        source_step = loop_source_step(node, ctx.start)
        if source_step < 0:
            shape = (ctx.samples, ctx.steps) + tuple(ctx.graph.shape(node.name))
            hist.reading = torch.full(shape, node.init, dtype=torch.int64)
        else:
            hist.reading = torch.cat(hist.sent[source_step:source_step + ctx.steps], 1)
        return hist.reading

    def __call__(self, node: FxDelay, ins, ctx: _Context) -> torch.Tensor:
        hist = ctx.state[node.name]
        hist.sent.append(ins[0])
        return hist.reading


REFERENCE.add(FxDelay, _LoopDelayRule())


# ------------------------------------------------------------------ recurrent synapses
class _RecurrentRule:
    """FxRecDense: a back edge like a loop delay. `opening` gives what its LIF receives at
    this local step, the FxDense arithmetic on the LIF's spikes of the step before (zeros
    at step 0); the call keeps this step's spikes for the next step."""

    closes_loop = True

    def opening(self, node: FxRecDense, ctx: _Context) -> torch.Tensor:
        last = ctx.state.get(node.name)          # (spikes of the step before, reading)
        if ctx.start == 0 or last is None:
            shape = (ctx.samples, ctx.steps) + tuple(ctx.graph.shape(node.name))
            reading = torch.zeros(shape, dtype=torch.int64)
        else:
            reading = _dense(node, last[0])
        ctx.state[node.name] = (None, reading)
        return reading

    def __call__(self, node: FxRecDense, ins, ctx: _Context) -> torch.Tensor:
        reading = ctx.state[node.name][1]
        ctx.state[node.name] = (ins[0], reading)
        return reading


REFERENCE.add(FxRecDense, _RecurrentRule())


# ------------------------------------------------------------------ sigma-delta neurons
@REFERENCE_GLOBAL.register(FxSigmaDelta)
def _sigma_delta_rule(node: FxSigmaDelta, ins, ctx: _Context) -> torch.Tensor:
    """Graded outputs over every global step; its local window is recorded (int32)."""
    a = _summed(ins)
    value = _sigma_delta(node, a.reshape((ctx.samples, ctx.steps) + tuple(node.shape)))
    ctx.record(node.name, value[:, ctx.timing.window(node.name)].to(torch.int32))
    return value


def _sigma_delta(node: FxSigmaDelta, a: torch.Tensor) -> torch.Tensor:
    """The FxSigmaDelta docstring's recurrence over every step of `a` (N, steps, *shape),
    each register an int32 (wrapped)."""
    scale = 1 << (node.spike_exp + node.state_exp)
    vth = int(_wrap(torch.tensor(node.vth * scale), 32))
    bias = _wrap(torch.as_tensor(np.broadcast_to(np.asarray(node.bias_mant, np.int64),
                                                 node.shape).copy()) * scale, 32)
    zero = torch.zeros((a.shape[0],) + tuple(node.shape), dtype=torch.int64)
    sigma, prev, residue, error = zero.clone(), zero.clone(), zero.clone(), zero.clone()
    outs = []
    for k in range(a.shape[1]):
        a_in = _wrap(a[:, k], 32)
        if node.role == "sigma":
            sigma = _wrap(sigma + a_in, 32)
            outs.append(sigma)
            continue
        if node.role == "delta":
            act = _wrap(a_in * scale, 32)
        else:
            sigma = _wrap(sigma + a_in, 32)
            act = torch.clamp(_wrap(sigma + bias, 32), min=0)
        delta = _wrap(_wrap(act - prev, 32) + residue, 32)
        if node.cum_error:
            error = _wrap(error + delta, 32)
            fire = error.abs() >= vth
            s = torch.where(fire, delta, zero)
            error = torch.where(s != 0, zero, error)
        else:
            s = torch.where(delta.abs() >= vth, delta, zero)
        residue = _wrap(delta - s, 32)
        prev = act
        outs.append(torch.div(s, 1 << node.state_exp, rounding_mode="floor"))
    return torch.stack(outs, 1)


# ------------------------------------------------------------------ the backend
class ReferenceBackend:
    """The `reference` backend: the reference over batches of samples (samples are
    independent), with progress."""

    name = "reference"
    description = "integer reference (PyTorch int64, written independently of the simulator)"
    is_lava = False

    def unsupported(self, graph, source=None) -> str | None:
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            batch: int = 32, record_state: bool = False, **options) -> Run:
        from snncompile.progress import bar
        x = np.asarray(inputs)
        n = len(x)
        t0 = time.perf_counter()
        parts: dict[tuple[str, str], list] = {}
        state_parts: dict[str, list] = {}
        with bar(n, "reference", "sample", enabled=progress) as p:
            for start in range(0, max(n, 1), batch):
                recorded, states = _reference(graph, x[start:start + batch], numerics,
                                              record_state)
                for key, value in recorded.items():
                    parts.setdefault(key, []).append(value)
                for name, uv in states.items():
                    state_parts.setdefault(name, []).append(uv)
                p.update(min(batch, n - start))
        joined = {key: _join(v) for key, v in parts.items()}
        return Run(values={k: v for (where, k), v in joined.items() if where == "values"},
                   samples=n, steps=x.shape[1], wall_s=time.perf_counter() - t0,
                   backend="reference",
                   boundary={k: v for (where, k), v in joined.items() if where == "boundary"},
                   state={name: tuple(_join(list(p)) for p in zip(*uvs))
                          for name, uvs in state_parts.items()} if record_state else None)


def _join(batches: list[np.ndarray]) -> np.ndarray:
    """Batches of samples joined along axis 0."""
    return batches[0] if len(batches) == 1 else np.concatenate(batches)


register_backend(ReferenceBackend())
