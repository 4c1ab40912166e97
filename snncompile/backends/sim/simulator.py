"""Fast bit-accurate simulator of a fixed-point graph: the living definition of what Lava's
`fixed_pt` models (and Loihi) compute, vectorised with numpy and batched over samples.

`step()` reads like the chip's cycle. Every synapse node (FxDense, FxConv2d) sends the
buffer it computed in the previous step, then accumulates this step's input; every FxLIF
node at depth d is zeroed when its first input arrives (global step d) and integrates for T
steps; spikes are returned in each node's local time (see `snncompile.ir.nodes`). Every
FxSigmaDelta node runs from global step 0 without reset (Lava's sigma-delta models) and
returns its int32 graded spikes in local time too.

Speed: integer matrix products are computed with BLAS in float32 or float64 when the
largest possible partial sum is exactly representable (|sum| < 2**24 or 2**53), which
gives bit-identical integers; otherwise in int64. Batch 1 with binary spikes uses
event-driven gathering of the active inputs' weight rows. Graphs of dense, conv, LIF and
sigma-delta nodes run on compiled kernels instead (kernels_plan.py, chosen in `run`);
`kernel="numpy"` or SNNCOMPILE_SIM_KERNEL=numpy keeps this numpy path, which the kernels
are tested against.

`strict=True` raises `OverflowDetected` on the first wrap or saturation, naming node,
sample, neuron and step; otherwise they are counted in `SimResult.overflow`.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from snncompile.coproc.ops import shift_round
from snncompile.backends.base import Run, register_backend
from snncompile.errors import GraphError, OverflowDetected, UnsupportedError
from snncompile.ir import (Flatten, FxConv2d, FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate, FxLIF,
                  FxSigmaDelta, Graph, Input, Output)
from snncompile.target import Numerics, load_target
from snncompile.backends.sim.fixed import prepare_weights, shift_exp, trunc_decay, wrap, wrap_once

I32 = 32


SimResult = Run
"""The simulator's result is the shared `snncompile.backends.Run` (values, boundary, counts,
overflow, state, wall_s, kernel)."""

def _exact_dtype(bound: float):
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    return np.int64


class _Synapse:
    """Common part of dense and conv synapses: the one-step output buffer."""

    def __init__(self, node, depth: int, in_max: int, strict: bool):
        self.node, self.name, self.depth, self.strict = node, node.name, depth, strict
        self.in_max = in_max
        self.clear_counters()

    def clear_counters(self):
        self.synops = self.events = self.wraps = 0

    def reset(self, batch: int, out_shape):
        self.buf = np.zeros((batch,) + tuple(out_shape), np.int64)
        self.in_counts = None

    def step(self, x: np.ndarray | None) -> np.ndarray:
        out = self.buf
        if x is None:
            self.buf = np.zeros_like(out)
        else:
            self.buf = self.compute(x)
            nz = (x != 0).reshape(x.shape[0], -1).sum(0)
            self.in_counts = nz if self.in_counts is None else self.in_counts + nz
        return out

    def finish(self):
        if self.in_counts is not None:
            self.events += int(self.in_counts.sum())
            self.synops += int(self.in_counts.astype(np.int64) @ self.fanout)


class _Dense(_Synapse):
    def __init__(self, node: FxDense, depth, in_max, strict):
        super().__init__(node, depth, in_max, strict)
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
        node, w = self.node, self.w
        if node.delay is None:
            return None
        dt = np.int64 if self.dtype is np.int64 else self.dtype  # one (in, out) per delay
        return [(int(k), np.ascontiguousarray(np.where(node.delay == k, w, 0).T.astype(dt)))
                for k in np.unique(node.delay)]

    def reset(self, batch, out_shape):
        super().reset(batch, out_shape)
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
            nz = (x != 0).reshape(x.shape[0], -1).sum(0)
            self.in_counts = nz if self.in_counts is None else self.in_counts + nz
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


class _Conv(_Synapse):
    """Lava Conv: cross-correlation in OIHW terms, wrapped to 24 bits; no weight exponent,
    no clipping or truncation of weights (PyConvModelFixed)."""

    def __init__(self, node: FxConv2d, depth, in_shape, in_max, strict):
        super().__init__(node, depth, in_max, strict)
        w = np.asarray(node.weight).astype(np.int64)
        self.o, self.ig, self.kh, self.kw = w.shape
        self.g = node.groups
        self.sh, self.sw = node.stride
        self.ph, self.pw = node.padding
        self.in_shape = in_shape
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

    def compute(self, x):
        b = x.shape[0]
        xp = np.pad(x, ((0, 0), (0, 0), (self.ph, self.ph), (self.pw, self.pw)))
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
        wrapped = wrap(y, 24)
        if self.strict and not np.array_equal(wrapped, y):
            bad = np.argwhere(wrapped != y)[0]
            raise OverflowDetected(f"{self.name}: convolution sum {y[tuple(bad)]} at sample "
                                   f"{bad[0]}, output {tuple(bad[1:])} wraps at 24 bits")
        self.wraps += int(np.count_nonzero(wrapped != y))
        return wrapped


class _Gate:
    """Programmable-neuron gain: (a * g) / 2**shift rounded as the node says (floor or
    nearest_even), optional ReLU, same step (FxGate)."""

    def __init__(self, node: FxGate, strict: bool):
        self.node, self.name, self.strict = node, node.name, strict
        self.shift, self.relu = int(node.shift), bool(node.relu)
        self.rounding = node.rounding
        self.gmax = (1 << node.gain_bits) - 1
        self.up = tuple(node.upsample)
        self.clear_counters()

    def clear_counters(self):
        self.products = 0

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


def inbound(coproc: str, src: str) -> str:
    """Name of the boundary channel carrying `src`'s values into co-processor `coproc`."""
    return f"{coproc}<-{src}"


class _Delay:
    """A top-down loop's delay (FxDelay): at global step n the gated node's local step is
    n - target_depth; for the first `latency` local steps the output is `init`, then the
    value pushed `steps` global steps earlier."""

    def __init__(self, node, shape):
        self.node, self.name, self.shape = node, node.name, tuple(shape)

    def clear_counters(self):
        pass

    def reset(self, batch):
        self.b, self.buf = batch, {}

    def output(self, n):
        v = self.buf.pop(n - self.node.steps, None)
        if n - self.node.target_depth < self.node.latency or v is None:
            return np.full((self.b,) + self.shape, self.node.init, np.int64)
        return v

    def push(self, n, value):
        if value is not None:
            self.buf[n] = value


class _Coproc:
    """A co-processor partition: its integer graph once per step, same step, with state
    reset when its first input arrives (as the chip's x86 program would be)."""

    def __init__(self, node: FxCoproc, depth: int, in_names: list[str]):
        self.node, self.name, self.depth = node, node.name, depth
        self.cg = node.cgraph
        self.in_names = list(self.cg.inputs)
        self.clear_counters()

    def clear_counters(self):
        self.steps = 0

    def reset(self, batch):
        self.state = self.cg.init_state(batch)

    def step(self, xs):
        if any(x is None for x in xs):
            return None
        out, self.state = self.cg.run_step(dict(zip(self.in_names, xs)), self.state)
        self.steps += xs[0].shape[0]
        return {k: v.astype(np.int64) for k, v in out.items()}


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


class _LIF:
    def __init__(self, node: FxLIF, depth: int, num: Numerics, strict: bool):
        self.node, self.name, self.depth, self.strict = node, node.name, depth, strict
        self.shape = node.shape
        self.keep_u = num.decay_unity - (node.du + 1)   # ds_offset = 1
        self.keep_v = num.decay_unity - node.dv          # dm_offset = 0
        self.shift = num.decay_bits
        self.half = num.state_max
        self.act_shift = num.act_shift
        self.vth = np.int64(node.vth) << num.vth_shift
        bm = np.broadcast_to(np.asarray(node.bias_mant, np.int64), self.shape)
        e = int(node.bias_exp)
        self.bias_mant, self.bias_exp = bm, e
        self.bias = bm << e if e >= 0 else bm >> -e
        self.n = int(np.prod(self.shape))
        self.clear_counters()

    def clear_counters(self):
        self.overflow = {"u_wrap": 0, "v_clip": 0, "int32_wrap": 0}
        self.spike_count = 0
        self.active = 0

    def reset(self, batch):
        self.u = np.zeros((batch,) + self.shape, np.int64)
        self.v = np.zeros_like(self.u)

    def _flag(self, kind, mask, n, what):
        _flag(self, kind, mask, what, f", local step {n - self.depth}")

    def step(self, a_in: np.ndarray, n: int, frame: np.ndarray | None = None) -> np.ndarray:
        """frame: this step's bias mantissas from a bias input, added to the node's own."""
        bias = self.bias
        if frame is not None:
            bm = self.bias_mant + frame.astype(np.int64)
            bias = bm << self.bias_exp if self.bias_exp >= 0 else bm >> -self.bias_exp
        # a_in arrives as int32; Lava shifts it by 6 and adds the decayed current in int32
        a32 = wrap(a_in, I32)
        self._flag("int32_wrap", a32 != a_in, n, "input current exceeds int32")
        a6 = a32 << self.act_shift
        a6w = wrap(a6, I32)
        self._flag("int32_wrap", a6w != a6, n, f"input << {self.act_shift} exceeds int32")
        cur = trunc_decay(self.u, self.keep_u, self.shift) + a6w
        cur32 = wrap(cur, I32)
        self._flag("int32_wrap", cur32 != cur, n, "current sum exceeds int32")
        u = wrap_once(cur32, self.half)
        self._flag("u_wrap", u != cur32, n, "current u wraps at 24 bits")
        v = trunc_decay(self.v, self.keep_v, self.shift) + u + bias
        vc = np.clip(v, -self.half + 1, self.half - 1)
        self._flag("v_clip", vc != v, n, "voltage v saturates at 24 bits")
        s = vc > self.vth
        self.u, self.v = u, np.where(s, 0, vc)
        self.spike_count += int(np.count_nonzero(s))
        # a neuron driven by a non-zero bias frame updates its state like one with input
        self.active += int(np.count_nonzero(a_in if frame is None else frame))
        return s


class _SigmaDelta:
    """Lava's fixed_pt sigma-delta models (PySigmaDeltaModelFixed, PyDeltaModelFixed,
    PySigmaModelFixed) with their numpy int32 registers made explicit (FxSigmaDelta)."""

    def __init__(self, node: FxSigmaDelta, depth: int, strict: bool):
        self.node, self.name, self.depth, self.strict = node, node.name, depth, strict
        self.shape, self.role = node.shape, node.role
        self.up = node.spike_exp + node.state_exp
        self.state_exp = node.state_exp
        self.vth = int(wrap(np.int64(node.vth) << self.up, I32))
        bm = np.broadcast_to(np.asarray(node.bias_mant, np.int64), self.shape)
        self.bias = wrap(bm << self.up, I32)
        self.cum_error = node.cum_error
        self.msg_max = 1 << max(node.num_message_bits - 1, 0)
        self.clear_counters()

    def clear_counters(self):
        self.overflow = {"int32_wrap": 0, "message_bits": 0}
        self.spike_count = 0
        self.active = 0
        self.updates = 0

    def reset(self, batch):
        self.sigma = np.zeros((batch,) + self.shape, np.int64)
        self.act = np.zeros_like(self.sigma)
        self.residue = np.zeros_like(self.sigma)
        self.error = np.zeros_like(self.sigma)

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


class Simulator:
    """Compile a fixed-point graph once, run it on many batches.

        >>> result = Simulator(graph).run(inputs)            # inputs (N, T, *input_shape)
        >>> result.spikes["lif2"].shape                      # (N, T, 10)
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
        self.ops: dict[str, object] = {}
        self.depth = {n: graph.depth(n) for n in self.order}
        for name in self.order:
            node = graph.node(name)
            src = graph.inputs(name)
            if src and isinstance(graph.node(src[0]), Input):
                in_max = self.in_max
            else:   # graded messages from neurons can be any int32
                in_max = 2 ** 31 if getattr(node, "num_message_bits", 0) else 1
            if isinstance(node, FxDense):
                self.ops[name] = _Dense(node, self.depth[name], in_max, strict)
            elif isinstance(node, FxConv2d):
                self.ops[name] = _Conv(node, self.depth[name], graph.shape(src[0]), in_max,
                                       strict)
            elif isinstance(node, FxLIF):
                self.ops[name] = _LIF(node, self.depth[name], self.num, strict)
            elif isinstance(node, FxGate):
                self.ops[name] = _Gate(node, strict)
            elif isinstance(node, FxCoproc):
                self.ops[name] = _Coproc(node, self.depth[name], src)
            elif isinstance(node, FxDelay):
                self.ops[name] = _Delay(node, graph.shape(name))
            elif isinstance(node, FxSigmaDelta):
                self.ops[name] = _SigmaDelta(node, self.depth[name], strict)
            elif not isinstance(node, (Input, Flatten, Output, FxCoprocOut, FxDelay)):
                raise UnsupportedError(
                    f"{name}: {type(node).__name__} is not supported by the simulator; "
                    "supported: Input, FxDense, FxConv2d, FxLIF, FxSigmaDelta, FxGate, "
                    "FxCoproc, FxCoprocOut, Flatten, Output")
        self.lifs = [n for n in self.order if isinstance(self.ops.get(n), (_LIF, _SigmaDelta))]
        self.sdn = any(isinstance(op, _SigmaDelta) for op in self.ops.values())
        if self.sdn and any(isinstance(op, (_LIF, _Coproc, _Delay, _Gate))
                            for op in self.ops.values()):
            raise UnsupportedError("graphs that mix sigma-delta neurons with LIF neurons, "
                                   "gates or co-processor partitions are not supported")
        self.max_depth = max(self.depth.values())
        self.bias_fed = graph.bias_fed()   # LIFs whose bias the input frames are
        # compiled kernels where the graph allows (kernels_plan.py); `kernel` "numpy" or
        # SNNCOMPILE_SIM_KERNEL=numpy selects the pure-numpy path below
        from snncompile.backends.sim.kernels_plan import Dispatch
        self._dispatch = Dispatch(self, kernel)
        self._fast = None
        self.kernel, self.kernel_reason = self._dispatch.kernel, self._dispatch.reason

    def run(self, inputs: np.ndarray, *, batch_size: int = 64, record_state: bool = False,
            progress: bool | str = False) -> SimResult:
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
        spikes = {n: np.zeros((n_samples, steps) + self.graph.shape(n),
                              np.int32 if isinstance(self.ops[n], _SigmaDelta) else bool)
                  for n in self.lifs}
        boundary = {n.name: np.zeros((n_samples, steps) + n.shape, np.int64)
                    for n in self.graph.nodes(FxCoprocOut)}
        for c in self.graph.nodes(FxCoproc):  # and what each partition receives
            for src in self.graph.inputs(c.name):
                boundary[inbound(c.name, src)] = np.zeros(
                    (n_samples, steps) + self.graph.shape(src), np.int64)
        state = ({n: (np.zeros((n_samples, steps) + self.graph.shape(n), np.int32),
                      np.zeros((n_samples, steps) + self.graph.shape(n), np.int32))
                  for n in self.lifs} if record_state else None)
        from snncompile.progress import bar
        with bar(n_samples, progress if isinstance(progress, str) else "simulate", "sample",
                 enabled=bool(progress), leave=False) as pbar:
            for start in range(0, n_samples, batch_size):
                chunk = inputs[start:start + batch_size]
                self._run_batch(chunk, spikes, state, start, boundary)
                pbar.update(len(chunk))
        counts, overflow = {}, {}
        for name, op in self.ops.items():
            if isinstance(op, _Coproc):
                c = op.cg.op_counts()
                io = op.cg.io_bytes()
                counts[name] = {"coproc_steps": op.steps, "coproc_macs": c.macs * op.steps,
                                "coproc_adds": c.adds * op.steps,
                                "coproc_compares": c.compares * op.steps,
                                "coproc_lookups": c.lut * op.steps,
                                "bytes_to_coproc": io.inp * op.steps,
                                "bytes_from_coproc": io.out * op.steps}
                continue
            if isinstance(op, (_LIF, _SigmaDelta)):
                counts[name] = {"spikes": op.spike_count,
                                "neuron_updates": (op.updates if isinstance(op, _SigmaDelta)
                                                   else op.n * steps * n_samples),
                                "active_updates": op.active}
                overflow[name] = dict(op.overflow)
            else:
                if isinstance(op, _Gate):
                    counts[name] = {"gate_products": op.products}
                    continue
                if isinstance(op, _Delay):
                    continue
                counts[name] = {"synops": op.synops, "input_events": op.events}
                if isinstance(op, _Conv):
                    overflow[name] = {"conv_wrap": op.wraps}
                elif op.graded:
                    overflow[name] = {"int32_wrap": op.wraps}
        return Run(values=spikes, samples=n_samples, steps=steps,
                   wall_s=time.perf_counter() - t0, backend="sim", boundary=boundary,
                   state=state, counts=counts, overflow=overflow,
                   kernel="numba" if self._fast is not None else "numpy")

    def _run_batch(self, x, spikes, state, offset, boundary):
        if self._fast is not None:
            return self._fast.run_batch(x, spikes, state, offset)
        self._run_batch_numpy(x, spikes, state, offset, boundary)

    def _run_batch_numpy(self, x, spikes, state, offset, boundary):
        b, steps = x.shape[:2]
        for name, op in self.ops.items():
            if isinstance(op, (_LIF, _Coproc, _Delay, _SigmaDelta)):
                op.reset(b)
            elif isinstance(op, _Synapse):
                op.reset(b, self.graph.shape(name))
        delays = [n for n in self.order if isinstance(self.ops.get(n), _Delay)]
        for n in range(steps + self.max_depth):
            # loop delays answer first: their outputs were computed in earlier steps
            values: dict[str, np.ndarray | None] = {d: self.ops[d].output(n) for d in delays}
            for name in self.order:
                node = self.nodes[name]
                srcs = [values[s] for s in self.inputs[name]]
                if name in values:  # a loop delay: store this step's input for later
                    self.ops[name].push(n, srcs[0])
                    continue
                if isinstance(node, Input):
                    values[name] = x[:, n] if n < steps else None
                    if values[name] is None and self.sdn:  # the encoder sees zeros
                        values[name] = np.zeros((b,) + self.input_shape, np.int64)
                    continue
                op = self.ops.get(name)
                if isinstance(op, _Synapse):
                    values[name] = op.step(srcs[0])
                elif isinstance(op, _LIF):
                    d = op.depth
                    if not (d <= n < d + steps):
                        values[name] = None
                        continue
                    frame = None
                    if name in self.bias_fed:     # the frame is bias, not synaptic input
                        frame, srcs = srcs[0].reshape((b,) + op.shape), []
                    a_in = sum(s for s in srcs if s is not None)
                    if isinstance(a_in, int):
                        a_in = np.zeros((b,) + op.shape, np.int64)
                    s = op.step(a_in, n, frame)
                    values[name] = s
                    spikes[name][offset:offset + b, n - d] = s
                    if state is not None:
                        state[name][0][offset:offset + b, n - d] = op.u
                        state[name][1][offset:offset + b, n - d] = op.v
                elif isinstance(op, _SigmaDelta):  # never reset: runs from global step 0
                    a_in = sum(v.astype(np.int64) for v in srcs if v is not None)
                    if isinstance(a_in, int):
                        a_in = np.zeros((b,) + op.shape, np.int64)
                    out = op.step(a_in.reshape((b,) + op.shape))
                    values[name] = out
                    if op.depth <= n < op.depth + steps:
                        spikes[name][offset:offset + b, n - op.depth] = out
                elif isinstance(op, _Gate):
                    values[name] = op.step(srcs[0], srcs[1])
                elif isinstance(op, _Coproc):
                    d = op.depth  # active (and reset on entry) in its window, like the LIFs
                    if n == d:
                        op.reset(b)
                    values[name] = op.step(srcs) if d <= n < d + steps else None
                    if values[name] is not None:
                        for src, v in zip(self.inputs[name], srcs):
                            boundary[inbound(name, src)][offset:offset + b, n - d] = \
                                v.reshape((b,) + self.graph.shape(src))
                elif isinstance(node, FxCoprocOut):
                    g = None if srcs[0] is None else srcs[0][node.port]
                    values[name] = g
                    if g is not None:
                        d = self.depth[name]
                        boundary[name][offset:offset + b, n - d] = g
                elif isinstance(node, Flatten):
                    values[name] = None if srcs[0] is None else srcs[0].reshape(b, -1)
                else:  # Output
                    values[name] = srcs[0]
        for op in self.ops.values():
            if isinstance(op, _Synapse):
                op.finish()


def simulate(graph: Graph, inputs: np.ndarray, **kwargs) -> SimResult:
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
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            strict: bool = False, **options) -> Run:
        return Simulator(graph, numerics, strict=strict).run(inputs, progress=progress,
                                                             **options)


register_backend(SimBackend())
