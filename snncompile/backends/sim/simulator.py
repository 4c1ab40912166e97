"""Fast bit-accurate simulator of a fixed-point graph: the living definition of what Lava's
`fixed_pt` models (and Loihi) compute, vectorised with numpy and batched over samples.

How a run goes: `Simulator(graph)` builds one operation per node from the `SIM` rule table
(node type -> op factory, registered next to each op class below; a node type without a
rule is refused in one line). `Simulator.run(inputs)` splits the samples into batches and
runs each batch either on the compiled kernels (kernels_plan.py, node by node over all
steps) or on the numpy loop `_run_batch_numpy`, which steps the chip's global time
n = 0 .. T + max depth - 1 (`snncompile.ir.timing`): at every step the loop delays
(FxDelay) answer first with what they stored earlier, then every node, in topological
order, `advance`s one step from its inputs' values of this step. A synapse (FxDense,
FxConv2d) sends the buffer it computed in the previous step and accumulates this step's
input; a node that resets (FxLIF, a co-processor partition) computes only in its local
window [depth, depth + T), from zero state (a whole-window partition buffers its window
and sends row t of its results at step depth + t, T steps after the window began); a
node that runs in global time
(`runs_in_global_time`: FxSigmaDelta, Lava's sigma-delta models) runs from global step 0
without reset. Neurons (`records_values`) write their outputs, in local time, into the
Run's values; partitions and their outputs write what crosses the boundary.

Speed: integer matrix products are computed with BLAS in float32 or float64 when the
largest possible partial sum is exactly representable (|sum| < 2**24 or 2**53), which
gives bit-identical integers; otherwise in int64. Batch 1 with binary spikes uses
event-driven gathering of the active inputs' weight rows. Graphs without loop delays run
on the compiled kernels (`kernels_plan.KERNELS`) instead (chosen in `run`), nodes without
a kernel (gates, co-processor partitions) stepping on their op here inside that plan;
`kernel="numpy"` or SNNCOMPILE_SIM_KERNEL=numpy keeps this numpy path, which the kernels
are tested against.

`strict=True` raises `OverflowDetected` on the first wrap or saturation, naming node,
sample, neuron and step; otherwise they are counted in `Run.overflow`.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from snncompile.coproc.ops import shift_round
from snncompile.backends.base import Run, register_backend
from snncompile.errors import GraphError, OverflowDetected, UnsupportedError
from snncompile.ir import (Flatten, FxConv1d, FxConv2d, FxCoproc, FxCoprocOut, FxDelay,
                           FxDense, FxGate, FxLI, FxLIF, FxRecDense, FxSigmaDelta, Graph, Input,
                           Output)
from snncompile.ir.nodes import RESETS, synapse_bias
from snncompile.ir.registry import Rules
from snncompile.ir.timing import Timing, timing, window_row
from snncompile.target import Numerics, load_target
from snncompile.backends.sim.fixed import prepare_weights, shift_exp, trunc_decay, wrap, wrap_once

I32 = 32

SIM = Rules("simulator")
"""Node type -> op factory `(node, Setup) -> op` (an `_Op`) of the numpy simulator."""


SimResult = Run
"""The simulator's result is the shared `snncompile.backends.Run` (values, boundary, counts,
overflow, state, wall_s, kernel)."""


@dataclasses.dataclass(frozen=True)
class Setup:
    """What an op factory may read about the graph it builds for."""

    graph: Graph
    numerics: Numerics
    strict: bool
    in_max: int              # largest |value| of the graph's input
    global_time: bool        # the graph has nodes that run in global time (sigma-delta)
    bias_fed: frozenset      # FxLIF names whose bias the input frames are

    def source_max(self, name: str) -> int:
        """Largest |value| a synapse `name` can receive: the input's range when the input
        feeds it, any int32 for graded messages, else 1 (binary spikes)."""
        src = self.graph.inputs(name)
        if src and src[0] == self.graph.input_node().name:
            return self.in_max
        return 2 ** 31 if getattr(self.graph.node(name), "num_message_bits", 0) else 1


@dataclasses.dataclass
class Batch:
    """One batch of the numpy loop: its inputs, its time, and where its results go."""

    x: np.ndarray                                  # (B, T, *input shape)
    offset: int                                    # row of sample 0 in the run's arrays
    time: Timing
    values: dict[str, np.ndarray]                  # Run.values being filled
    boundary: dict[str, np.ndarray]                # Run.boundary being filled
    state: dict | None                             # Run.state being filled, or None

    @property
    def size(self) -> int:
        return self.x.shape[0]

    @property
    def rows(self) -> slice:
        return slice(self.offset, self.offset + self.size)


class _Op:
    """One node's operation in the numpy loop. The defaults are a stateless pass-through
    with no counters; op classes override what their node needs."""

    records_values = False        # a neuron: its outputs are Run.values[name]
    value_dtype = None            # ... of this dtype
    answers_early = False         # a loop delay: `early(n)` is its output at step n
    mixes_with_global_time = True  # may share a graph with nodes that run in global time

    def __init__(self, node):
        self.node, self.name = node, node.name
        self.clear_counters()

    def clear_counters(self) -> None:
        """Zero the counters `counts` / `overflow_counts` report (once per run)."""

    def reset(self, batch: Batch) -> None:
        """State at the start of a batch."""

    def advance(self, n: int, srcs: list, batch: Batch):
        """This node's value at global step `n` from its inputs' values at `n` (None: no
        value this step)."""
        return srcs[0]

    def finish(self) -> None:
        """End of a batch (synapses add up their input events here)."""

    def counts(self, samples: int, steps: int) -> dict | None:
        """Run.counts[name] for a run of `samples` x `steps`, or None (no entry)."""
        return None

    def overflow_counts(self) -> dict | None:
        """Run.overflow[name], or None (no entry)."""
        return None

    def channels(self, graph: Graph) -> dict[str, tuple]:
        """Run.boundary channels this op writes: name -> per-step shape."""
        return {}


def _exact_dtype(bound: float):
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    return np.int64


# ----------------------------------------------------------------- stateless nodes
class _Input(_Op):
    """The input frames; after the last frame None, or zeros when the graph runs in global
    time (a sigma-delta encoder keeps seeing zeros)."""

    def __init__(self, node: Input, zeros_after: bool):
        super().__init__(node)
        self.zeros_after = zeros_after

    def advance(self, n, srcs, batch):
        if n < batch.time.steps:
            return batch.x[:, n]
        if self.zeros_after:
            return np.zeros((batch.size,) + self.node.shape, np.int64)
        return None


class _Flatten(_Op):
    def advance(self, n, srcs, batch):
        return None if srcs[0] is None else srcs[0].reshape(batch.size, -1)


class _CoprocOut(_Op):
    """One output port of a co-processor partition: what it sent is a boundary channel."""

    def advance(self, n, srcs, batch):
        value = None if srcs[0] is None else srcs[0][self.node.port]
        if value is not None:
            batch.boundary[self.name][batch.rows, batch.time.local(self.name, n)] = value
        return value

    def channels(self, graph):
        return {self.name: tuple(self.node.shape)}


SIM.register(Input)(lambda node, setup: _Input(node, setup.global_time))
SIM.register(Flatten)(lambda node, setup: _Flatten(node))
SIM.register(Output)(lambda node, setup: _Op(node))
SIM.register(FxCoprocOut)(lambda node, setup: _CoprocOut(node))


# ----------------------------------------------------------------- synapses
class _Synapse(_Op):
    """Common part of dense and conv synapses: the one-step output buffer."""

    def __init__(self, node, in_max: int, strict: bool, out_shape: tuple):
        self.in_max, self.strict, self.out_shape = in_max, strict, tuple(out_shape)
        # the bias axon (FxDense/FxConv2d bias_mant): spikes every step into one more
        # column of synapses, summed into the same neurons after the synapse's own wrap
        self.bias = synapse_bias(node, self.out_shape)
        self.bias_fanout = 0 if self.bias is None else int(np.count_nonzero(self.bias))
        super().__init__(node)

    def clear_counters(self):
        self.synops = self.events = self.wraps = 0

    def reset(self, batch):
        self.buf = np.zeros((batch.size,) + self.out_shape, np.int64)
        self.in_counts = None

    def advance(self, n, srcs, batch):
        out = self.step(srcs[0])
        return out if self.bias is None else out + self.bias

    def step(self, x: np.ndarray | None) -> np.ndarray:
        out = self.buf
        if x is None:
            self.buf = np.zeros_like(out)
        else:
            self.buf = self.compute(x)
            self._count_inputs(x)
        return out

    def _count_inputs(self, x):
        nz = (x != 0).reshape(x.shape[0], -1).sum(0)
        self.in_counts = nz if self.in_counts is None else self.in_counts + nz

    def finish(self):
        if self.in_counts is not None:
            self.events += int(self.in_counts.sum())
            self.synops += int(self.in_counts.astype(np.int64) @ self.fanout)

    def counts(self, samples, steps):
        """Synaptic events and input events, the bias axon's included (it spikes at every
        step of each sample's window: `bias_events`, `bias_synops`)."""
        c = {"synops": self.synops, "input_events": self.events}
        if self.bias is not None:
            ev = samples * steps
            c |= {"bias_events": ev, "bias_synops": ev * self.bias_fanout}
            c["synops"] += c["bias_synops"]
            c["input_events"] += ev
        return c


class _Dense(_Synapse):
    def __init__(self, node: FxDense, in_max, strict, out_shape):
        super().__init__(node, in_max, strict, out_shape)
        self.exp = int(node.weight_exp)
        self.graded = node.num_message_bits > 0
        prepare_weights(np.zeros((0, 0)), node.sign_mode, node.num_weight_bits)  # checks
        if strict:
            w = self.w
            if not np.array_equal(w, node.weight):
                i = np.argwhere(w != node.weight)[0]
                raise OverflowDetected(
                    f"{node.name}: weight[{i[0]}, {i[1]}] = {node.weight[tuple(i)]} is not "
                    f"representable with {node.num_weight_bits}-bit {node.sign_mode} "
                    f"weights (Loihi uses {w[tuple(i)]})")

    def overflow_counts(self):
        return {"int32_wrap": self.wraps} if self.graded else None

    # weight arrays are built on first use: the compiled kernels (kernels_plan.py) prepare
    # their own int8/int16 copy and the fan-outs in one pass, so Simulator setup is cheap
    @functools.cached_property
    def w(self):                                                      # (out, in), prepared
        return prepare_weights(self.node.weight, self.node.sign_mode,
                               self.node.num_weight_bits)

    @functools.cached_property
    def fanout(self):                                                 # per input
        return np.count_nonzero(self.w, axis=0).astype(np.int64)

    @functools.cached_property
    def wmax(self):
        return int(np.abs(self.w).max(initial=0))

    @functools.cached_property
    def dtype(self):
        return _exact_dtype(float(self.wmax) * self.in_max * self.w.shape[1])

    @functools.cached_property
    def wbound(self):
        # graded messages have no static bound: pick an exact dtype per step from the
        # step's largest message (float64 BLAS is exact below 2**53)
        return float(self.wmax) * self.w.shape[1]

    @functools.cached_property
    def wt(self):
        return np.ascontiguousarray(self.w.T.astype(self.dtype))      # (in, out)

    @functools.cached_property
    def wt_int(self):
        return np.ascontiguousarray(self.w.T)                          # for gathers

    @functools.cached_property
    def wt64(self):
        return (np.ascontiguousarray(self.w.T.astype(np.float64))
                if self.graded and self.dtype is np.int64 else None)

    @functools.cached_property
    def delays(self):
        w, delay = self.w, self.node.physical_delay()     # model delay + path alignment
        if delay is None:
            return None
        dt = np.int64 if self.dtype is np.int64 else self.dtype  # one (in, out) per delay
        return [(int(k), np.ascontiguousarray(np.where(delay == k, w, 0).T.astype(dt)))
                for k in np.unique(delay)]

    def reset(self, batch):
        super().reset(batch)
        self.ring, self.t = {}, 0

    def step(self, x):
        """With synaptic delays: partial sums per delay k land k steps after the usual
        one-step buffer (Lava DelayDense); without, the plain buffer."""
        if self.delays is None:
            return super().step(x)
        out = self.ring.pop(self.t, None)
        if out is None:
            out = np.zeros_like(self.buf)
        if x is not None:
            xf = x.astype(self.dtype) if self.dtype is not np.int64 else x.astype(np.int64)
            for k, wt in self.delays:
                acc = (xf @ wt).astype(np.int64)
                slot = self.t + 1 + k
                self.ring[slot] = self.ring.get(slot, 0) + shift_exp(acc, self.exp)
            self._count_inputs(x)
        self.t += 1
        return out

    def compute(self, x):
        if not self.graded and x.shape[0] == 1:  # event-driven: add the active rows
            idx = np.flatnonzero(x[0])
            if self.dtype is np.int64:
                acc = self.wt_int[idx].sum(0, dtype=np.int64)[None]
            else:
                acc = self.wt[idx].sum(0)[None].astype(np.int64)
        elif self.wt64 is not None and \
                float(np.abs(x).max(initial=0)) * self.wbound < 2 ** 53:
            acc = (x.astype(np.float64) @ self.wt64).astype(np.int64)
        elif self.dtype is np.int64:
            acc = x.astype(np.int64) @ self.wt_int
        else:
            acc = (x.astype(self.dtype) @ self.wt).astype(np.int64)
        exact = shift_exp(acc, self.exp)
        if not self.graded:
            return exact
        # graded messages: Lava's int32 dot product and shift wrap at 32 bits
        out = wrap(shift_exp(wrap(acc, I32), self.exp), I32)
        bad = out != exact
        if bad.any():
            if self.strict:
                i = np.argwhere(bad)[0]
                raise OverflowDetected(f"{self.name}: graded synaptic sum at sample {i[0]}, "
                                       f"output {int(i[1])} exceeds int32")
            self.wraps += int(np.count_nonzero(bad))
        return out


def _bias_in_local_time(node, setup: Setup) -> None:
    """A bias axon's current is exact for neurons zeroed at their window's start (FxLIF);
    sigma-delta neurons run from global step 0 and would integrate it before then."""
    if setup.global_time and node.bias_mant is not None:
        raise UnsupportedError(f"{node.name}: a synapse bias axon in a graph with neurons "
                               "that run in global time (sigma-delta) is not compiled")


@SIM.register(FxDense)
def _dense(node, setup: Setup):
    _bias_in_local_time(node, setup)
    return _Dense(node, setup.source_max(node.name), setup.strict,
                  setup.graph.shape(node.name))


class _Recurrent(_Dense):
    """A recurrent layer's synapses (FxRecDense), a back edge: at global step n its LIF
    reads `early(n)`, the buffer computed at step n - 1 from the LIF's spikes (zeros before
    its window); `advance` then computes the next buffer from this step's spikes. The
    arithmetic (weight preparation, exponent, counts) is FxDense's."""

    answers_early = True
    mixes_with_global_time = False

    def early(self, n):
        return self.buf

    def advance(self, n, srcs, batch):
        self.step(srcs[0])          # sends self.buf (read in early) and computes the next


SIM.register(FxRecDense)(lambda node, setup: _Recurrent(node, 1, setup.strict,
                                                        setup.graph.shape(node.name)))


class _Conv(_Synapse):
    """Lava Conv: cross-correlation in OIHW terms, wrapped to 24 bits; no weight exponent,
    no clipping or truncation of weights (PyConvModelFixed)."""

    def __init__(self, node: FxConv2d, in_shape, in_max, strict, out_shape):
        super().__init__(node, in_max, strict, out_shape)
        w = np.asarray(node.weight).astype(np.int64)
        self.o, self.ig, self.kh, self.kw = w.shape
        self.g = node.groups
        self.sh, self.sw = node.stride
        self.ph, self.pw = node.padding
        self.in_shape = tuple(in_shape)
        c, h, wd = in_shape
        self.oh = (h + 2 * self.ph - self.kh) // self.sh + 1
        self.ow = (wd + 2 * self.pw - self.kw) // self.sw + 1
        k = self.ig * self.kh * self.kw
        self.dtype = _exact_dtype(float(np.abs(w).max(initial=0)) * in_max * k)
        # per group: (k, O/g) matrices
        og = self.o // self.g
        self.wg = [np.ascontiguousarray(
            w[gi * og:(gi + 1) * og].reshape(og, k).T.astype(self.dtype)) for gi in range(self.g)]
        self.fanout = self._fanout(w).reshape(-1)

    def overflow_counts(self):
        return {"conv_wrap": self.wraps}

    def _fanout(self, w):
        c, h, wd = self.in_shape
        og = self.o // self.g
        nz = np.zeros((c, self.kh, self.kw), np.int64)
        for gi in range(self.g):
            nz[gi * self.ig:(gi + 1) * self.ig] = np.count_nonzero(
                w[gi * og:(gi + 1) * og], axis=0)
        fan = np.zeros((c, h + 2 * self.ph, wd + 2 * self.pw), np.int64)
        for i in range(self.kh):
            for j in range(self.kw):
                fan[:, i:i + self.sh * self.oh:self.sh, j:j + self.sw * self.ow:self.sw] += \
                    nz[:, i, j][:, None, None]
        return fan[:, self.ph:self.ph + h, self.pw:self.pw + wd]

    def im2col(self, x):
        """The sums of a batch x (B, C*H*W or C, H, W) by im2col and one exact product per
        group: (wrapped to 24 bits, exact), both (B, O, OH, OW) int64. The compiled path
        (kernels_plan.py) uses it too, for dense inputs."""
        b = x.shape[0]
        xp = np.pad(x.reshape((b,) + self.in_shape),
                    ((0, 0), (0, 0), (self.ph, self.ph), (self.pw, self.pw)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (self.kh, self.kw), axis=(2, 3))
        win = win[:, :, ::self.sh, ::self.sw][:, :, :self.oh, :self.ow]  # B,C,OH,OW,kh,kw
        outs = []
        for gi in range(self.g):
            cols = win[:, gi * self.ig:(gi + 1) * self.ig]
            cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(b * self.oh * self.ow, -1)
            if self.dtype is np.int64:
                y = cols.astype(np.int64) @ self.wg[gi].astype(np.int64)
            else:
                y = (cols.astype(self.dtype) @ self.wg[gi]).astype(np.int64)
            outs.append(y.reshape(b, self.oh, self.ow, -1))
        y = np.concatenate(outs, axis=3).transpose(0, 3, 1, 2)
        return wrap(y, 24), y

    def compute(self, x):
        wrapped, y = self.im2col(x)
        if self.strict and not np.array_equal(wrapped, y):
            bad = np.argwhere(wrapped != y)[0]
            raise OverflowDetected(f"{self.name}: convolution sum {y[tuple(bad)]} at sample "
                                   f"{bad[0]}, output {tuple(bad[1:])} wraps at 24 bits")
        self.wraps += int(np.count_nonzero(wrapped != y))
        return wrapped


@SIM.register(FxConv2d)
def _conv(node, setup: Setup):
    _bias_in_local_time(node, setup)
    graph = setup.graph
    return _Conv(node, graph.shape(graph.inputs(node.name)[0]), setup.source_max(node.name),
                 setup.strict, graph.shape(node.name))


class _Conv1d(_Conv):
    """FxConv1d: the height-1 convolution on the (C, 1, L) view, output kept (O, L')."""

    def compute(self, x):
        return super().compute(x).reshape((x.shape[0],) + self.out_shape)


@SIM.register(FxConv1d)
def _conv1d(node, setup: Setup):
    _bias_in_local_time(node, setup)
    graph = setup.graph
    return _Conv1d(node, node.image_shape(graph.shape(graph.inputs(node.name)[0])),
                   setup.source_max(node.name), setup.strict, graph.shape(node.name))


# ----------------------------------------------------------------- attention loop
class _Gate(_Op):
    """Programmable-neuron gain: (a * g) / 2**shift rounded as the node says (floor or
    nearest_even), optional ReLU, same step (FxGate)."""

    mixes_with_global_time = False

    def __init__(self, node: FxGate, strict: bool):
        self.strict = strict
        self.shift, self.relu = int(node.shift), bool(node.relu)
        self.rounding = node.rounding
        self.gmax = (1 << node.gain_bits) - 1
        self.up = tuple(node.upsample)
        super().__init__(node)

    def clear_counters(self):
        self.products = 0

    def counts(self, samples, steps):
        return {"gate_products": self.products}

    def advance(self, n, srcs, batch):
        return self.step(srcs[0], srcs[1])

    def step(self, a, g):
        if a is None:
            return None
        b = a.shape[0]
        if g is None:  # no gain outside the co-processor's window: nothing passes
            g = np.zeros((b,) + (1,) * (a.ndim - 1), np.int64)
        g = np.asarray(g, np.int64)
        if self.up != (1, 1):  # each neuron reads the gain of its block (nearest)
            g = g.repeat(self.up[0], axis=-2).repeat(self.up[1], axis=-1)
        a = wrap(a, I32)  # the synapse's message is int32 on its way to the gate
        if self.strict and (g.min(initial=0) < 0 or g.max(initial=0) > self.gmax):
            raise OverflowDetected(f"{self.name}: gain outside [0, {self.gmax}]")
        out = shift_round(a * g, self.shift, self.rounding)
        self.products += int(a.size)
        return np.maximum(out, 0) if self.relu else out


SIM.register(FxGate)(lambda node, setup: _Gate(node, setup.strict))


def inbound(coproc: str, src: str) -> str:
    """Name of the boundary channel carrying `src`'s values into co-processor `coproc`."""
    return f"{coproc}<-{src}"


class _Delay(_Op):
    """A top-down loop's delay (FxDelay): at global step n the gated node's local step is
    n - target_depth; for the first `latency` local steps the output is `init`, then the
    value pushed `steps` global steps earlier."""

    answers_early = True
    mixes_with_global_time = False

    def __init__(self, node, shape):
        super().__init__(node)
        self.shape = tuple(shape)

    def reset(self, batch):
        self.b, self.buf = batch.size, {}

    def early(self, n):
        """The output at global step n, known before any node computes step n."""
        v = self.buf.pop(n - self.node.steps, None)
        if n - self.node.target_depth < self.node.latency or v is None:
            return np.full((self.b,) + self.shape, self.node.init, np.int64)
        return v

    def advance(self, n, srcs, batch):
        """Store this step's input for later (the output was `early(n)`)."""
        if srcs[0] is not None:
            self.buf[n] = srcs[0]


SIM.register(FxDelay)(lambda node, setup: _Delay(node, setup.graph.shape(node.name)))


class _Coproc(_Op):
    """A co-processor partition: its integer graph once per step, same step, with state
    reset when its first input arrives (as the chip's x86 program would be)."""

    mixes_with_global_time = False

    def __init__(self, node: FxCoproc, in_names: list[str]):
        self.cg = node.cgraph
        self.in_names = list(self.cg.inputs)
        self.sources = list(in_names)           # the graph nodes feeding it
        super().__init__(node)

    def clear_counters(self):
        self.steps = 0      # graph runs x samples (window mode: one run per sample)
        self.sample_steps = 0

    def reset(self, batch):
        self.state = self.cg.init_state(batch.size)
        self.buf, self.out = [], None       # window mode: the buffered steps, the result

    def advance(self, n, srcs, batch):
        tm = batch.time
        if self.node.window:
            return self._window(n, srcs, batch)
        if n == tm.to_global(self.name, 0):   # its first input arrives: fresh state
            self.reset(batch)
        if not tm.active(self.name, n):
            return None
        out = self.step(srcs)
        if out is not None:
            self._record(tm.local(self.name, n), srcs, batch)
        return out

    def _record(self, t, srcs, batch):
        """What crossed into the partition at its local step t (boundary channels)."""
        self.sample_steps += batch.size
        for src, v in zip(self.sources, srcs):
            channel = batch.boundary[inbound(self.name, src)]
            channel[batch.rows, t] = v.reshape((batch.size,) + channel.shape[2:])

    def _window(self, n, srcs, batch):
        """Window mode (`ir.timing`): buffer local steps 0 .. T-1, run the graph on the
        whole window when it is complete, then send row t of every output for local step
        t, `coproc_delay` steps after a streaming partition would."""
        tm = batch.time
        if n == tm.buffers_from(self.name):   # its window's first step arrives
            self.reset(batch)
        if tm.buffering(self.name, n) and not any(x is None for x in srcs):
            self.buf.append([np.asarray(x, np.int64).reshape((batch.size,) + tuple(
                self.cg.inputs[k].shape[1:])) for k, x in zip(self.in_names, srcs)])
            self._record(n - tm.buffers_from(self.name), srcs, batch)
            if n == tm.window_done(self.name):
                whole = {k: np.stack([b[i] for b in self.buf], 1)
                         for i, k in enumerate(self.in_names)}
                out, _ = self.cg.run_step(whole, None)
                self.steps += batch.size
                self.out = {k: v.astype(np.int64) for k, v in out.items()}
        t = tm.local(self.name, n)
        if self.out is None or not 0 <= t < tm.steps:
            return None
        return {k: window_row(v, t) for k, v in self.out.items()}

    def step(self, xs):
        if any(x is None for x in xs):
            return None
        out, self.state = self.cg.run_step(dict(zip(self.in_names, xs)), self.state)
        self.steps += xs[0].shape[0]
        return {k: v.astype(np.int64) for k, v in out.items()}

    def counts(self, samples, steps):
        c, io, k = self.cg.op_counts(), self.node.step_io_bytes(), self.steps
        s = self.sample_steps       # per-step traffic: every step of every sample
        out = {"coproc_steps": k, "coproc_macs": c.macs * k, "coproc_adds": c.adds * k,
               "coproc_compares": c.compares * k, "coproc_lookups": c.lut * k,
               "bytes_to_coproc": io.inp * s, "bytes_from_coproc": io.out * s}
        if self.node.window:        # each window written into the buffer and read once
            out["coproc_buffer_bytes"] = 2 * self.node.buffer_bytes() * k
        return out

    def channels(self, graph):
        return {inbound(self.name, src): tuple(graph.shape(src)) for src in self.sources}


SIM.register(FxCoproc)(lambda node, setup: _Coproc(node, setup.graph.inputs(node.name)))


# ----------------------------------------------------------------- neurons
def _flag(op, kind: str, mask: np.ndarray, what: str, where: str = "") -> None:
    """Count the True entries of `mask` (batch, *shape) as `op.overflow[kind]`; with
    `op.strict`, raise on the first, naming sample and neuron."""
    cnt = int(np.count_nonzero(mask))
    if cnt:
        op.overflow[kind] += cnt
        if op.strict:
            idx = np.argwhere(mask)[0]
            raise OverflowDetected(
                f"{op.name}: {what} at sample {idx[0]} (of this batch), neuron "
                f"{int(np.ravel_multi_index(tuple(idx[1:]), op.shape))}{where}")


class _LIF(_Op):
    """Lava's PyLifModelBitAcc (FxLIF): computes in its local window, from zero state."""

    records_values, value_dtype = True, bool
    mixes_with_global_time = False

    def __init__(self, node: FxLIF, num: Numerics, strict: bool, bias_fed: bool):
        self.strict, self.bias_fed = strict, bias_fed   # bias_fed: input frames are bias
        self.shape = node.shape
        self.keep_u = num.decay_unity - (node.du + 1)   # ds_offset = 1
        self.keep_v = num.decay_unity - node.dv          # dm_offset = 0
        self.shift = num.decay_bits
        self.half = num.state_max
        self.act_shift = num.act_shift
        self.vth = np.int64(self.threshold(node, num)) << num.vth_shift
        self.fire_ge, self.reset_mode = node.fire_at == ">=", node.reset
        self.reset_code = RESETS.index(node.reset)
        bm = np.broadcast_to(np.asarray(node.bias_mant, np.int64), self.shape)
        e = int(node.bias_exp)
        self.bias_mant, self.bias_exp = bm, e
        self.bias = bm << e if e >= 0 else bm >> -e
        self.n = int(np.prod(self.shape))
        super().__init__(node)

    @staticmethod
    def threshold(node, num: Numerics) -> int:
        """The threshold mantissa (compared as v > vth << vth_shift, or >=)."""
        return node.vth

    def after_spike(self, v: np.ndarray):
        """v of the neurons that spiked, after the reset (`FxLIF.reset`)."""
        if self.reset_mode == "subtract":
            return v - self.vth
        return self.vth if self.reset_mode == "threshold" else 0

    def clear_counters(self):
        self.overflow = {"u_wrap": 0, "v_clip": 0, "int32_wrap": 0}
        self.spike_count = 0
        self.active = 0

    def counts(self, samples, steps):
        return {"spikes": self.spike_count, "neuron_updates": self.n * steps * samples,
                "active_updates": self.active}

    def overflow_counts(self):
        return dict(self.overflow)

    def reset(self, batch):
        self.u = np.zeros((batch.size,) + self.shape, np.int64)
        self.v = np.zeros_like(self.u)

    def advance(self, n, srcs, batch):
        tm = batch.time
        if not tm.active(self.name, n):
            return None
        frame, b = None, batch.size
        if self.bias_fed:     # the frame is bias, not synaptic input
            frame, srcs = srcs[0].reshape((b,) + self.shape), []
        a_in = sum(s for s in srcs if s is not None)
        if isinstance(a_in, int):   # no input this step
            a_in = np.zeros((b,) + self.shape, np.int64)
        t = tm.local(self.name, n)
        s = self.step(a_in, t, frame)
        batch.values[self.name][batch.rows, t] = s
        if batch.state is not None:
            batch.state[self.name][0][batch.rows, t] = self.u
            batch.state[self.name][1][batch.rows, t] = self.v
        return s

    def _flag(self, kind, mask, t, what):
        _flag(self, kind, mask, what, f", local step {t}")

    def step(self, a_in: np.ndarray, t: int, frame: np.ndarray | None = None) -> np.ndarray:
        """One update at local step t. frame: this step's bias mantissas from a bias
        input, added to the node's own."""
        bias = self.bias
        if frame is not None:
            bm = self.bias_mant + frame.astype(np.int64)
            bias = bm << self.bias_exp if self.bias_exp >= 0 else bm >> -self.bias_exp
        # a_in arrives as int32; Lava shifts it by 6 and adds the decayed current in int32
        a32 = wrap(a_in, I32)
        self._flag("int32_wrap", a32 != a_in, t, "input current exceeds int32")
        a6 = a32 << self.act_shift
        a6w = wrap(a6, I32)
        self._flag("int32_wrap", a6w != a6, t, f"input << {self.act_shift} exceeds int32")
        cur = trunc_decay(self.u, self.keep_u, self.shift) + a6w
        cur32 = wrap(cur, I32)
        self._flag("int32_wrap", cur32 != cur, t, "current sum exceeds int32")
        u = wrap_once(cur32, self.half)
        self._flag("u_wrap", u != cur32, t, "current u wraps at 24 bits")
        v = trunc_decay(self.v, self.keep_v, self.shift) + u + bias
        vc = np.clip(v, -self.half + 1, self.half - 1)
        self._flag("v_clip", vc != v, t, "voltage v saturates at 24 bits")
        s = vc >= self.vth if self.fire_ge else vc > self.vth
        self.u, self.v = u, np.where(s, self.after_spike(vc), vc)
        self.spike_count += int(np.count_nonzero(s))
        # a neuron driven by a non-zero bias frame updates its state like one with input
        self.active += int(np.count_nonzero(a_in if frame is None else frame))
        return s


SIM.register(FxLIF)(lambda node, setup: _LIF(node, setup.numerics, setup.strict,
                                             node.name in setup.bias_fed))


class _LI(_LIF):
    """The non-spiking readout (FxLI): a Lava LIFReset at the largest threshold mantissa
    (`num.vth_max`) whose voltage is read every step; its value is v (int32) after the
    update. A step where v would exceed vth << 6 is counted as `would_spike` (the chip
    would spike and reset there; so does this op, as Lava does); the headroom the
    quantiser keeps means it does not happen."""

    value_dtype = np.int32

    def __init__(self, node: FxLI, num: Numerics, strict: bool):
        super().__init__(node, num, strict, False)

    @staticmethod
    def threshold(node, num: Numerics) -> int:
        return num.vth_max

    def clear_counters(self):
        super().clear_counters()
        self.overflow["would_spike"] = 0

    def counts(self, samples, steps):
        return {"spikes": 0, "neuron_updates": self.n * steps * samples,
                "active_updates": self.active}

    def step(self, a_in, t, frame=None):
        s = super().step(a_in, t, frame)
        self._flag("would_spike", s, t, "readout voltage exceeds vth << 6 (would spike)")
        return self.v.astype(np.int32)


SIM.register(FxLI)(lambda node, setup: _LI(node, setup.numerics, setup.strict))


class _SigmaDelta(_Op):
    """Lava's fixed_pt sigma-delta models (PySigmaDeltaModelFixed, PyDeltaModelFixed,
    PySigmaModelFixed) with their numpy int32 registers made explicit (FxSigmaDelta).
    Runs in global time (from global step 0, never reset); its outputs are read in its
    local window."""

    records_values, value_dtype = True, np.int32

    def __init__(self, node: FxSigmaDelta, strict: bool):
        self.strict = strict
        self.shape, self.role = node.shape, node.role
        self.up = node.spike_exp + node.state_exp
        self.state_exp = node.state_exp
        self.vth = int(wrap(np.int64(node.vth) << self.up, I32))
        bm = np.broadcast_to(np.asarray(node.bias_mant, np.int64), self.shape)
        self.bias = wrap(bm << self.up, I32)
        self.cum_error = node.cum_error
        self.msg_max = 1 << max(node.num_message_bits - 1, 0)
        super().__init__(node)

    def clear_counters(self):
        self.overflow = {"int32_wrap": 0, "message_bits": 0}
        self.spike_count = 0
        self.active = 0
        self.updates = 0

    def counts(self, samples, steps):
        return {"spikes": self.spike_count, "neuron_updates": self.updates,
                "active_updates": self.active}

    def overflow_counts(self):
        return dict(self.overflow)

    def reset(self, batch):
        self.sigma = np.zeros((batch.size,) + self.shape, np.int64)
        self.act = np.zeros_like(self.sigma)
        self.residue = np.zeros_like(self.sigma)
        self.error = np.zeros_like(self.sigma)

    def advance(self, n, srcs, batch):
        b = batch.size
        a_in = sum(v.astype(np.int64) for v in srcs if v is not None)
        if isinstance(a_in, int):   # no input this step
            a_in = np.zeros((b,) + self.shape, np.int64)
        out = self.step(a_in.reshape((b,) + self.shape))
        if batch.time.active(self.name, n):
            batch.values[self.name][batch.rows, batch.time.local(self.name, n)] = out
        return out

    def _w(self, x):
        """int32 register write; counted (or raised in strict mode) when it wraps."""
        y = wrap(x, I32)
        _flag(self, "int32_wrap", x != y, "sigma-delta state exceeds int32")
        return y

    def _message_bits(self, out):
        """A graded spike must fit the declared signed message width; Lava sends any int32,
        a chip's message would not hold it (a sigma readout goes to the host instead)."""
        _flag(self, "message_bits", np.abs(out) >= self.msg_max,
              f"graded spike does not fit {self.node.num_message_bits} signed message bits")

    def step(self, a_in: np.ndarray) -> np.ndarray:
        a_in = self._w(a_in)                              # int32 input port
        self.active += int(np.count_nonzero(a_in))
        self.updates += a_in.size
        if self.role == "sigma":
            self.sigma = self._w(self.sigma + a_in)
            out = self.sigma
        else:
            if self.role == "delta":
                act = self._w(a_in << self.up)
            else:
                self.sigma = self._w(self.sigma + a_in)
                act = np.maximum(self._w(self.sigma + self.bias), 0)
            delta = self._w(self._w(act - self.act) + self.residue)
            if self.cum_error:
                self.error = self._w(self.error + delta)
                s = np.where(np.abs(self.error) >= self.vth, delta, 0)
                self.error = np.where(s != 0, 0, self.error)
            else:
                s = np.where(np.abs(delta) >= self.vth, delta, 0)
            self.residue = self._w(delta - s)
            self.act = act
            out = s >> self.state_exp
            self._message_bits(out)
        self.spike_count += int(np.count_nonzero(out))
        return out




SIM.register(FxSigmaDelta)(lambda node, setup: _SigmaDelta(node, setup.strict))


# ----------------------------------------------------------------- the simulator
class Simulator:
    """Compile a fixed-point graph once, run it on many batches.

        >>> result = Simulator(graph).run(inputs)            # inputs (N, T, *input_shape)
        >>> result.values["lif2"].shape                      # (N, T, 10)

    ops: node name -> its op (built by the SIM rule of the node's type); neurons: the
    names of the nodes whose outputs are Run.values (LIF and sigma-delta neurons).
    """

    def __init__(self, graph: Graph, numerics: Numerics | None = None, strict: bool = False,
                 kernel: str | None = None):
        graph.validate()
        if graph.stage != "fixed":
            raise UnsupportedError("the simulator runs fixed-point graphs; quantise first "
                                   "(snncompile compile)")
        self.graph = graph
        self.num = numerics or load_target("loihi2").numerics
        self.strict = strict
        self.order = graph.order()
        # looked up every step of every batch: resolve the graph once
        self.nodes = {n: graph.node(n) for n in self.order}
        self.inputs = {n: graph.inputs(n) for n in self.order}
        inp = graph.input_node()
        self.input_name, self.input_shape = inp.name, inp.shape
        self.in_max = max(abs(v) for v in inp.value_range())
        self.bias_fed = graph.bias_fed()   # LIFs whose bias the input frames are
        SIM.check(self.nodes.values())
        setup = Setup(graph, self.num, strict, self.in_max,
                      any(node.runs_in_global_time for node in self.nodes.values()),
                      frozenset(self.bias_fed))
        self.ops = {name: SIM.rule(node)(node, setup) for name, node in self.nodes.items()}
        self.neurons = [n for n in self.order if self.ops[n].records_values]
        self.early = [n for n in self.order if self.ops[n].answers_early]
        if setup.global_time and not all(op.mixes_with_global_time
                                         for op in self.ops.values()):
            raise UnsupportedError("graphs that mix sigma-delta neurons with LIF neurons, "
                                   "gates or co-processor partitions are not supported")
        # compiled kernels where the graph allows (kernels_plan.py); `kernel` "numpy" or
        # SNNCOMPILE_SIM_KERNEL=numpy selects the pure-numpy path below
        from snncompile.backends.sim.kernels_plan import Dispatch
        self._dispatch = Dispatch(self, kernel)
        self._fast = None
        self.kernel, self.kernel_reason = self._dispatch.kernel, self._dispatch.reason

    def run(self, inputs: np.ndarray, *, batch_size: int = 64, record_state: bool = False,
            progress: bool | str = False) -> Run:
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 + len(self.input_shape) or inputs.shape[2:] != self.input_shape:
            raise GraphError(f"inputs have shape {inputs.shape}; expected (samples, steps, "
                             f"{', '.join(map(str, self.input_shape))})")
        n_samples, steps = inputs.shape[:2]
        t0 = time.perf_counter()
        self._fast = (self._dispatch.plan_for(n_samples * steps)   # None: numpy path
                      if inputs.dtype.kind in "biu" else None)
        for op in self.ops.values():
            op.clear_counters()
        tm = timing(self.graph, steps)
        values, boundary, state = self._allocate(n_samples, steps, record_state)
        from snncompile.progress import bar
        with bar(n_samples, progress if isinstance(progress, str) else "simulate", "sample",
                 enabled=bool(progress), leave=False) as pbar:
            for start in range(0, n_samples, batch_size):
                chunk = inputs[start:start + batch_size]
                self._run_batch(Batch(chunk, start, tm, values, boundary, state))
                pbar.update(len(chunk))
        counts, overflow = {}, {}
        for name, op in self.ops.items():
            c, o = op.counts(n_samples, steps), op.overflow_counts()
            if c is not None:
                counts[name] = c
            if o is not None:
                overflow[name] = o
        return Run(values=values, samples=n_samples, steps=steps,
                   wall_s=time.perf_counter() - t0, backend="sim", boundary=boundary,
                   state=state, counts=counts, overflow=overflow,
                   kernel="numba" if self._fast is not None else "numpy")

    def _allocate(self, samples: int, steps: int, record_state: bool):
        """Zeroed Run.values, Run.boundary and Run.state (None unless recorded)."""
        def series(shape, dtype):
            return np.zeros((samples, steps) + tuple(shape), dtype)
        values = {n: series(self.graph.shape(n), self.ops[n].value_dtype)
                  for n in self.neurons}
        boundary = {ch: series(shape, np.int64) for op in self.ops.values()
                    for ch, shape in op.channels(self.graph).items()}
        # every neuron has an entry; only LIF neurons write their (u, v) into it
        state = ({n: (series(self.graph.shape(n), np.int32),
                      series(self.graph.shape(n), np.int32)) for n in self.neurons}
                 if record_state else None)
        return values, boundary, state

    def _run_batch(self, batch: Batch):
        if self._fast is not None:
            return self._fast.run_batch(batch)
        self._run_batch_numpy(batch)

    def _run_batch_numpy(self, batch: Batch):
        """Step the chip's global time over one batch (see the module docstring)."""
        for op in self.ops.values():
            op.reset(batch)
        for n in range(batch.time.global_steps):
            # loop delays answer first: their outputs were computed in earlier steps
            values: dict[str, np.ndarray | None] = {d: self.ops[d].early(n)
                                                    for d in self.early}
            for name in self.order:
                op = self.ops[name]
                out = op.advance(n, [values[s] for s in self.inputs[name]], batch)
                if not op.answers_early:
                    values[name] = out
        for op in self.ops.values():
            op.finish()


def simulate(graph: Graph, inputs: np.ndarray, **kwargs) -> Run:
    """One-shot convenience: `Simulator(graph, strict=...).run(inputs, ...)`."""
    strict = kwargs.pop("strict", False)
    numerics = kwargs.pop("numerics", None)
    kernel = kwargs.pop("kernel", None)
    return Simulator(graph, numerics, strict, kernel).run(inputs, **kwargs)


class SimBackend:
    """The `sim` backend: `Simulator(graph, numerics, strict).run(inputs)`."""

    name = "sim"
    description = "bit-accurate simulator (numpy / numba kernels, batched)"
    is_lava = False

    def unsupported(self, graph, source=None) -> str | None:
        """The SIM table's refusal of the first node without a simulator rule, or None."""
        for name in graph.order():
            if not SIM.supports(graph.node(name)):
                return SIM.refusal(graph.node(name))
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            strict: bool = False, **options) -> Run:
        return Simulator(graph, numerics, strict=strict).run(inputs, progress=progress,
                                                             **options)


register_backend(SimBackend())
