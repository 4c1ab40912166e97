"""The compiled path of the simulator: runs a whole batch node by node over all time steps
with the numba kernels of `kernels.py`, sample by sample on a pool of threads.

Why node by node is exact: without loop delays (FxDelay) every node's value at global step
n depends only on its inputs at steps <= n, so each node's whole time series can be
computed once its sources' series are known, in topological order. The numpy simulator
steps all nodes together; both give the same integers (tests/test_sim_kernel.py).

Supported: the node types of the `KERNELS` table, each registered next to its kernel class
below: Input, FxDense (binary, graded, with delays), FxConv2d (any groups, stride,
padding; pooling folded into a conv is a conv), FxLIF, FxLI (readout), FxRecDense (a
LIF layer's recurrent synapses: the one back edge, computed step by step inside that LIF's
kernel), FxSigmaDelta, FxGate (reading its current and gain step by step as the numpy op
receives them, `_GateK`), Flatten, Output. Any other node (co-processor partitions and
their ports) steps on its numpy op inside the plan (`_NumpyK`); a graph with a loop delay (FxDelay) runs on the numpy path whole, and the
reason names that node and its type; `Simulator.kernel` and `Simulator.kernel_reason` say which path runs and why.

Parameters are read from the numpy operations the Simulator builds (`_LIF.keep_u`,
`_Dense.w`, `_Conv.im2col`, ...), so both paths share one definition of each node's
constants, and the numpy operations keep the counters `Simulator.run` reports. Time (the
local window of a LIF, the global steps of a sigma-delta node) is the batch's
`snncompile.ir.timing.Timing`, as on the numpy path.

Strict mode: the kernels count every wrap and clip; if a batch counted any, that batch is
run again on the numpy path, which raises the same error, naming the same node, sample,
neuron and step, as a numpy-only run would.

Threads (SNNCOMPILE_SIM_THREADS, default: the CPUs this process may use) take whole
samples, handed out one at a time, so a thread that the OS does not schedule only means
the others take more samples.

Dense synapses with binary input choose per sample between the event-driven kernel and a
float32 BLAS product (exact below 2**24) from the measured density of their input: BLAS
when more than `BLAS_DENSITY` of the inputs are active; convolutions likewise switch to the
numpy simulator's im2col product (exact float32/float64 where it is) above
`CONV_BLAS_DENSITY` (a scattered event costs about ten times a BLAS multiply-add here).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from snncompile.errors import UnsupportedError
from snncompile.ir import (Flatten, FxConv2d, FxDense, FxGate, FxLI, FxLIF, FxRecDense,
                           FxSigmaDelta, Input, Output)
from snncompile.ir.registry import Rules

CHOICES = ("auto", "numba", "numpy")
ENV = "SNNCOMPILE_SIM_KERNEL"
THREADS_ENV = "SNNCOMPILE_SIM_THREADS"
BLAS_DENSITY = float(os.environ.get("SNNCOMPILE_SIM_BLAS_DENSITY", "0.6"))
CONV_BLAS_DENSITY = float(os.environ.get("SNNCOMPILE_SIM_CONV_BLAS_DENSITY", "0.1"))
# one sample's big dense layers in two halves on two threads: off by default, since on
# the shared 2-core machine it measured slower than one thread (the second thread is
# often not scheduled in time); SNNCOMPILE_SIM_SPLIT=1 turns it on
SPLIT = os.environ.get("SNNCOMPILE_SIM_SPLIT", "0") == "1"
# a LIF fed only by a binary dense layer that feeds nothing else runs with it in one kernel
# (`kernels.dense_lif`: no (steps, n_out) int64 series in memory); SNNCOMPILE_SIM_FUSE=0
# runs them as two kernels (the same integers; the bench times both)
FUSE = os.environ.get("SNNCOMPILE_SIM_FUSE", "1") != "0"
KERNELS = Rules("simulator kernels")
"""Node type -> its compiled kernel class (built from the node's numpy op); a graph runs on
the kernels when every node type has one."""
_ROLES = {"sigma_delta": 0, "delta": 1, "sigma": 2}


# below this many synapse-steps (samples x steps x synapses) a run in a process that has
# not loaded the kernels yet stays on numpy: loading numba and its machine code costs about
# 0.5-2 s once per process (more on a busy machine), the numpy path needs ~1 s for 5e9
AUTO_MIN_WORK = float(os.environ.get("SNNCOMPILE_SIM_AUTO_MIN_WORK", "5e9"))
# ... or when the graph has this many synapses: the numpy path's setup (Lava weight
# preparation in int64, transposes) then costs as much as loading the kernels
AUTO_MIN_SYNAPSES = float(os.environ.get("SNNCOMPILE_SIM_AUTO_MIN_SYNAPSES", "1e7"))
_loaded = False   # kernels already loaded in this process: auto always uses them


class Dispatch:
    """Which path a Simulator runs. `choice` None reads SNNCOMPILE_SIM_KERNEL (default
    auto): "numpy" always numpy; "numba" the kernels wherever the graph allows (an error
    if numba does not import); "auto" the kernels when the graph allows, numba imports and
    the run is big enough to repay loading them (or they are loaded already)."""

    def __init__(self, sim, choice: str | None):
        src = "kernel argument"
        if choice is None:
            choice, src = os.environ.get(ENV, "auto").strip().lower() or "auto", ENV
        if choice not in CHOICES:
            raise UnsupportedError(f"{src}: simulator kernel '{choice}' is not one of "
                                   f"{', '.join(CHOICES)}")
        self.sim, self.choice, self.plan = sim, choice, None
        self.kernel, self.reason = "numba", "compiled kernels (numba)"
        if choice == "numpy":
            self.kernel, self.reason = "numpy", f"numpy selected ({src})"
            return
        if importlib.util.find_spec("numba") is None:
            if choice == "numba":
                raise UnsupportedError(f"{src}: numba kernel requested but numba is not "
                                       "installed")
            self.kernel, self.reason = "numpy", "numba is not installed"
            return
        if sim.bias_fed:   # frames written into a LIF's bias: no kernel reads them yet
            self.kernel, self.reason = "numpy", (
                f"{', '.join(sorted(sim.bias_fed))}: input frames drive the bias; the numpy "
                "path runs the graph")
            return
        stepped = []     # nodes without a kernel: their numpy op steps inside the plan
        for name in sim.order:
            node = sim.nodes[name]
            if KERNELS.supports(node):
                continue
            if sim.ops[name].answers_early:
                # a loop delay (FxDelay, HTDA's top-down feedback) answers at step n with
                # what a later node computed earlier: every node of the loop would have to
                # step together, so the graph stays on the numpy loop
                self.kernel, self.reason = "numpy", (
                    f"{name}: {type(node).__name__} closes a loop (answers step n from "
                    "earlier steps) and has no compiled kernel; the numpy path runs the graph")
                return
            stepped.append(name)
        if stepped:
            types = sorted({type(sim.nodes[n]).__name__ for n in stepped})
            self.reason = (f"compiled kernels (numba); {len(stepped)} node(s) of type "
                           f"{', '.join(types)} step on their numpy code inside the plan")
        self.synapses = sum(int(np.prod(sim.graph.shape(n))) * _fan_in(sim.nodes[n])
                            for n in sim.order if sim.nodes[n].is_synapse)

    def plan_for(self, sample_steps: int):
        """The Plan for a run of `sample_steps` samples x steps, or None (numpy)."""
        global _loaded
        if self.kernel != "numba":
            return None
        if (self.choice == "auto" and not _loaded and self.synapses < AUTO_MIN_SYNAPSES
                and sample_steps * self.synapses < AUTO_MIN_WORK):
            return None
        if self.plan is None:
            try:
                from snncompile.backends.sim import kernels  # noqa: F401  (numba import and kernel definitions)
            except Exception as e:  # installed but broken (llvmlite, numpy mismatch)
                if self.choice == "numba":
                    raise UnsupportedError(f"numba kernel requested but numba does not "
                                           f"import: {e}") from None
                self.kernel, self.reason = "numpy", f"numba does not import: {e}"
                self.sim.kernel, self.sim.kernel_reason = self.kernel, self.reason
                return None
            self.plan = Plan(self.sim)
            _loaded = True
        return self.plan


def _fan_in(node) -> int:
    w = np.asarray(node.weight)
    return int(np.prod(w.shape[1:]))


def _int_dtype(lo: int, hi: int):
    for dt in (np.int8, np.int16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return dt
    return np.int64


def _threads() -> int:
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _SampleRun:
    """One sample of a batch on one thread: its input, the batch it belongs to, the
    counters its kernels produce (name -> counters) and this thread's reusable buffers."""

    def __init__(self, K, xb, row: int, batch, bufs: dict, pool=None):
        self.K, self.xb, self.row, self.batch, self.pool = K, xb, row, batch, pool
        self.time = batch.time
        self.bufs = bufs
        self.counters: dict[str, object] = {}

    def buffer(self, key, shape, zero):
        """This thread's int64 buffer `key` of `shape` (zeroed when `zero`), reused by every
        sample the thread runs (no page faults)."""
        a = self.bufs.get(key)
        if a is None or a.shape != shape:
            a = self.bufs[key] = np.empty(shape, np.int64)
        if zero:
            a.fill(0)
        return a


class _Kernel:
    """A node's compiled step: `series` turns its sources' series (each (array (rows, n),
    global step of row 0)) into its own; `account` adds a batch's counters to the numpy
    op, which `Simulator.run` reports. The default passes its one source through."""

    def __init__(self, op):
        self.op, self.name = op, op.name

    def series(self, srcs, run: _SampleRun):
        return srcs[0]

    def value_at(self, series, n: int, run: _SampleRun):
        """What this node's numpy op returns at global step n, from its series (a node
        that steps on its numpy code, `_NumpyK`, reads its sources through this): the
        series' row, None outside it (a LIF outside its window; the default)."""
        arr, off = series
        i = n - off
        return arr[i] if 0 <= i < arr.shape[0] else None

    def account(self, counters: list, samples: int, time) -> bool:
        """Add the counters of a batch of `samples` (one entry per sample; `time` its
        Timing) to the op; True when anything wrapped or clipped."""
        return False


class _InputK(_Kernel):
    def __init__(self, op):
        super().__init__(op)
        self.n_in = int(np.prod(op.node.shape))

    def series(self, srcs, run):
        return run.xb.reshape(run.time.steps, self.n_in), 0

    def value_at(self, series, n, run):
        """The frame itself (its own dtype, as `simulator._Input` gives it)."""
        if n < run.time.steps:
            return run.batch.x[run.row, n]
        return np.zeros(self.op.node.shape, np.int64) if self.op.zeros_after else None


KERNELS.register(Input)(_InputK)
KERNELS.register(Flatten, Output)(_Kernel)


class _SynapseK(_Kernel):
    """Common part of the synapse kernels: one output series, input events and wraps."""

    lag = 1                     # rows between an input row and the output row it reaches

    def series(self, srcs, run):
        arr, off = srcs[0]
        out = run.buffer(self.name, (off + arr.shape[0] + self.lag, self.n_out), True)
        ic = np.zeros(self.n_in, np.int64)
        wraps = np.zeros(1, np.int64)
        self.run(run.K, _plain(arr), out[off:], ic, wraps, run.pool)
        if self.op.bias is not None:     # the bias axon: every step, after the wrap
            out += self.op.bias.reshape(1, -1)
        run.counters[self.name] = (ic, int(wraps[0]))
        return out, 0

    def value_at(self, series, n, run):
        """A synapse sends its buffer every step: zeros outside the series."""
        arr, off = series
        i = n - off
        return arr[i] if 0 <= i < arr.shape[0] else np.zeros(arr.shape[1:], np.int64)

    def account(self, counters, samples, time):
        op = self.op
        ic = sum(c[0] for c in counters)
        wraps = sum(c[1] for c in counters)
        op.events += int(ic.sum())
        op.synops += int(ic @ op.fanout)
        op.wraps += wraps
        return wraps > 0


class _DenseK(_SynapseK):
    def __init__(self, op):
        from snncompile.backends.sim import kernels as K
        super().__init__(op)
        node = op.node
        mixed = int(node.sign_mode == "mixed")
        self.nt = nt = 8 - int(node.num_weight_bits) + mixed
        w = np.asarray(node.weight)
        n_out, n_in = w.shape
        if "w" not in op.__dict__ and w.dtype.kind in "iuf" and 0 <= nt <= 8:
            # one fused pass: Lava's preparation, transpose, mantissas, fan-outs; the
            # numpy operation's own (out, in) int64 copy is then never built
            self.wt = np.empty((n_in, n_out), np.int8 if nt >= 1 else np.int16)
            fanout = np.zeros(n_in, np.int64)
            K.prepare_transpose(np.ascontiguousarray(w), -256 * mixed, 255, nt,
                                node.sign_mode == "inhibitory", self.wt, fanout)
            op.__dict__["fanout"] = fanout
            lo, hi = -256 >> nt, 255 >> nt
        else:
            w = op.w                               # prepared (Lava-truncated), (out, in)
            self.nt = nt = max(0, nt)
            lo = int(w.min(initial=0)) >> nt
            hi = int(w.max(initial=0)) >> nt
            self.wt = np.empty((n_in, n_out), _int_dtype(lo, hi))
            K.transpose_cast(np.ascontiguousarray(w), nt, self.wt)
        mmax = max(abs(lo), abs(hi))
        self.mmax = mmax
        # int8 mantissas: rows summed in int16 this many at a time (kernels._row_sum)
        self.chunk = 32767 // max(mmax, 1) if self.wt.dtype == np.int8 else 0
        self.acc_dtype = np.int32 if mmax * max(n_in, 1) < 2 ** 31 else np.int64
        self.blas_ok = mmax * max(n_in, 1) < 2 ** 24
        self.exp, self.graded = int(op.exp), bool(op.graded)
        self.n_in, self.n_out = n_in, n_out
        self.dl, self.n_delays = None, 0
        if node.physical_delay() is not None:      # model delay + path alignment
            d = np.asarray(node.physical_delay()).astype(np.int64)
            self.n_delays = int(d.max(initial=0)) + 1
            self.dl = np.ascontiguousarray(d.T.astype(_int_dtype(0, self.n_delays)))
        self.lag = 1 + max(self.n_delays - 1, 0)
        self._wf = None
        self.fused = False      # set by Plan: its one reader, a LIF, runs it (dense_lif)
        self.sbias = (np.zeros(n_out, np.int64) if op.bias is None
                      else _flat(op.bias))

    def fusable(self) -> bool:
        """Binary, without delays: the synapse `kernels.dense_lif` computes."""
        return self.dl is None and not self.graded

    def series(self, srcs, run):
        if self.fused and run.pool is None:
            return _Pending(self, srcs[0])
        return super().series(srcs, run)

    def event_driven(self, src) -> bool:
        """False when the binary input is dense enough for the BLAS product."""
        return not (self.blas_ok and np.count_nonzero(src) > BLAS_DENSITY * src.size)

    def wf(self):
        if self._wf is None:
            self._wf = self.wt.astype(np.float32)
        return self._wf

    def run(self, K, src, out, in_counts, wraps, pool=None):
        if self.dl is not None:
            K.dense_delayed(src, self.wt, self.dl, self.n_delays, self.nt, self.exp, out,
                            in_counts)
        elif self.graded:
            K.dense_graded(src, self.wt, self.mmax, self.nt, self.exp, out, in_counts,
                           wraps)
        elif not self.event_driven(src):
            K.count_nonzero_rows(src, in_counts)    # dense input: one BLAS product
            rows = min(src.shape[0], out.shape[0] - 1)
            acc = ((src[:rows] != 0).astype(np.float32) @ self.wf()).astype(np.int64)
            acc <<= self.nt
            out[1:rows + 1] = acc << self.exp if self.exp > 0 else acc >> -self.exp
        else:
            chunk, n = self.chunk, self.n_out
            if pool is not None and n >= 512:   # batch 1: output blocks on two threads
                def block(j0, j1):
                    K.dense_binary(src, self.wt, chunk, np.zeros(n, self.acc_dtype),
                                   self.nt, self.exp, out, in_counts, j0, j1, j0 == 0)
                _shared(pool, block, n)
            else:
                K.dense_binary(src, self.wt, chunk, np.zeros(n, self.acc_dtype), self.nt,
                               self.exp, out, in_counts, 0, n, True)


KERNELS.register(FxDense)(_DenseK)


class _RecK(_DenseK):
    """FxRecDense, a LIF layer's recurrent synapses from its own spikes (a back edge): the
    Plan hands it to that LIF, whose kernel computes both step by step (`kernels.lif_rec`);
    its own series is never read."""

    def fusable(self) -> bool:
        return False


KERNELS.register(FxRecDense)(_RecK)


class _ConvK(_SynapseK):
    def __init__(self, op):
        super().__init__(op)
        w = np.asarray(op.node.weight).astype(np.int64)
        self.w2 = np.ascontiguousarray(
            w.transpose(1, 2, 3, 0).astype(_int_dtype(int(w.min(initial=0)),
                                                      int(w.max(initial=0)))))
        self.shape_in = np.array(op.in_shape, np.int64)
        self.shape_out = np.array((op.o, op.oh, op.ow), np.int64)
        self.geom = np.array((op.ig, op.o // op.g, op.sh, op.sw, op.ph, op.pw), np.int64)
        self.n_in = int(np.prod(op.in_shape))
        self.n_out = op.o * op.oh * op.ow

    def run(self, K, src, out, in_counts, wraps, pool=None):
        rows = min(src.shape[0], out.shape[0] - 1)
        if (self.op.dtype is not np.int64 and rows > 0
                and np.count_nonzero(src) > CONV_BLAS_DENSITY * src.size):
            K.count_nonzero_rows(src, in_counts)   # dense input: im2col and one product
            # the numpy simulator's product (exact float32/float64 per group, 24-bit wrap)
            # over all rows of one sample at once
            wrapped, exact = self.op.im2col(src[:rows])
            wraps[0] += int(np.count_nonzero(wrapped != exact))
            out[1:rows + 1] = wrapped.reshape(rows, -1)
        else:
            K.conv(src, self.w2, self.shape_in, self.shape_out, self.geom, out, in_counts,
                   wraps)


KERNELS.register(FxConv2d)(_ConvK)


class _LIFK(_Kernel):
    """FxLIF over its local window from zero state; spikes straight into Run.values.
    When its one source is a dense layer the Plan fused into it (a `_Pending` series),
    both run in `kernels.dense_lif`, unless that sample's input is dense enough for the
    BLAS product."""

    def __init__(self, op):
        super().__init__(op)
        self.per = [_flat(np.broadcast_to(x, op.shape))
                    for x in (op.keep_u, op.keep_v, op.vth)]
        self.bias = _flat(op.bias)
        self.rec = None         # set by Plan: the layer's recurrent synapses (_RecK)

    def targets(self, batch, row: int, steps: int):
        """What the kernel writes for sample `row`: (spikes (T, n) uint8, u_rec, v_rec
        (T, n) int32, record), and the series the node returns: the spikes, straight
        into Run.values."""
        op = self.op
        spk = batch.values[self.name][row].reshape(steps, op.n).view(np.uint8)
        rec = batch.state is not None
        u_rec = batch.state[self.name][0][row].reshape(steps, op.n) if rec else _E32
        v_rec = batch.state[self.name][1][row].reshape(steps, op.n) if rec else _E32
        return spk, u_rec, v_rec, rec, spk

    def finish(self, batch, row: int, steps: int) -> None:
        """After the kernel ran sample `row` (nothing to do for a LIF)."""

    def value_at(self, series, n, run):
        """Spikes as the numpy op's bool (the series is their uint8 view); an LI's v."""
        v = super().value_at(series, n, run)
        return v.view(np.bool_) if v is not None and v.dtype == np.uint8 else v

    def series(self, srcs, run):
        op, tm, batch = self.op, run.time, run.batch
        window = tm.window(self.name)
        row = batch.offset + run.row
        spk, u_rec, v_rec, rec, result = self.targets(batch, row, tm.steps)
        c = np.zeros(5, np.int64)
        keep_u, keep_v, vth = self.per
        pending = srcs[0] if len(srcs) == 1 and isinstance(srcs[0], _Pending) else None
        if pending is not None and not pending.kernel.event_driven(pending.src[0]):
            srcs, pending = [pending.materialise(run)], None
        if self.rec is not None:      # recurrent synapses: computed step by step here
            r = self.rec
            a = _window(srcs, window.start, tm.steps, op.n) if srcs else np.zeros(
                (tm.steps, op.n), np.int64)
            ic = np.zeros(r.n_in, np.int64)
            run.K.lif_rec(a, r.wt, r.chunk, np.zeros(r.n_out, r.acc_dtype), r.nt, r.exp, ic,
                          keep_u, keep_v, op.shift, op.half, op.act_shift, vth,
                          bool(op.fire_ge), op.reset_code, self.bias, spk, u_rec, v_rec, rec,
                          c)
            run.counters[r.name] = (ic, 0)
        elif pending is not None:
            d, (x, off) = pending.kernel, pending.src
            ic = np.zeros(d.n_in, np.int64)
            run.K.dense_lif(_plain(x), off, d.wt, d.chunk, np.zeros(d.n_out, d.acc_dtype),
                            d.nt, d.exp, d.sbias, ic, window.start, keep_u, keep_v, op.shift,
                            op.half, op.act_shift, vth, bool(op.fire_ge), op.reset_code,
                            self.bias, spk, u_rec, v_rec, rec, c)
            run.counters[d.name] = (ic, 0)
        else:
            a = _window(srcs, window.start, tm.steps, op.n)
            run.K.lif(a, keep_u, keep_v, op.shift, op.half, op.act_shift, vth,
                      bool(op.fire_ge), op.reset_code, self.bias, spk, u_rec, v_rec, rec, c)
        run.counters[self.name] = c
        self.finish(batch, row, tm.steps)
        return result, window.start

    def account(self, counters, samples, time):
        op, c = self.op, sum(counters)
        op.overflow["int32_wrap"] += int(c[0])
        op.overflow["u_wrap"] += int(c[1])
        op.overflow["v_clip"] += int(c[2])
        op.spike_count += int(c[3])
        op.active += int(c[4])
        return bool(c[:3].any())


KERNELS.register(FxLIF)(_LIFK)


class _LIK(_LIFK):
    """FxLI, the non-spiking readout: the LIF kernel at the readout's threshold (the op's
    vth, `num.vth_max` << 6, as `simulator._LI`); its value is v after each step (int32),
    and a step where it spikes (and resets, as Lava does) counts as `would_spike`."""

    def targets(self, batch, row, steps):
        op = self.op
        vals = batch.values[self.name][row].reshape(steps, op.n)     # int32: v
        rec = batch.state is not None
        u_rec = (batch.state[self.name][0][row].reshape(steps, op.n) if rec
                 else np.empty((steps, op.n), np.int32))
        return np.empty((steps, op.n), np.uint8), u_rec, vals, True, vals

    def finish(self, batch, row, steps):
        if batch.state is not None:
            batch.state[self.name][1][row] = batch.values[self.name][row]

    def account(self, counters, samples, time):
        flagged = super().account(counters, samples, time)
        would = int(sum(c[3] for c in counters))
        self.op.overflow["would_spike"] += would
        return flagged or would > 0


KERNELS.register(FxLI)(_LIK)


class _SigmaDeltaK(_Kernel):
    """FxSigmaDelta in global time (from global step 0, never reset); its local window is
    copied into Run.values."""

    def series(self, srcs, run):
        op, tm, batch = self.op, run.time, run.batch
        n = int(np.prod(op.shape))
        a = _window(srcs, 0, tm.global_steps, n)
        out = run.buffer(self.name, (tm.global_steps, n), False)
        c = np.zeros(4, np.int64)
        run.K.sigma_delta(a, _ROLES[op.role], op.up, op.state_exp, op.vth, _flat(op.bias),
                          bool(op.cum_error), op.msg_max, out, c)
        batch.values[self.name][batch.offset + run.row] = out[tm.window(self.name)].reshape(
            (tm.steps,) + tuple(op.shape))
        run.counters[self.name] = c
        return out, 0

    def account(self, counters, samples, time):
        op, c = self.op, sum(counters)
        op.overflow["int32_wrap"] += int(c[0])
        op.overflow["message_bits"] += int(c[1])
        op.spike_count += int(c[2])
        op.active += int(c[3])
        op.updates += samples * time.global_steps * int(np.prod(op.shape))  # every step
        return bool(c[:2].any())


KERNELS.register(FxSigmaDelta)(_SigmaDeltaK)


class _GateK(_Kernel):
    """FxGate: its current and gain read step by step through their kernels' `value_at`,
    exactly as the numpy op receives them (None where the source gives nothing, a
    partition's gain None outside its window: gain 0), then one kernel call over all
    global steps (`kernels.gate`). Stateless, so samples run on the threads at once."""

    reads_steps = True

    def __init__(self, op):
        super().__init__(op)
        self.sources: list = []   # set by Plan: per input, (origin kernel, per-step shape)
        self.n_out = 0            # set by Plan
        self._idx = None

    def idx(self) -> np.ndarray:
        """Per neuron (flat), the flat index of the gain it reads."""
        if self._idx is None:
            (_, a_shape), (_, g_shape) = self.sources
            ga = np.arange(int(np.prod(g_shape)), dtype=np.int64).reshape(g_shape)
            fh, fw = self.op.up
            if (fh, fw) != (1, 1):
                ga = ga.repeat(fh, axis=-2).repeat(fw, axis=-1)
            self._idx = _plain(np.broadcast_to(ga, a_shape).reshape(-1))
        return self._idx

    def series(self, srcs, run):
        op, steps, n = self.op, run.time.global_steps, self.n_out
        (ka, _), (kg, g_shape) = self.sources
        a = run.buffer(self.name + "<-a", (steps, n), False)
        g = run.buffer(self.name + "<-g", (steps, int(np.prod(g_shape))), True)
        live = np.zeros(steps, np.bool_)
        for t in range(steps):
            v = ka.value_at(srcs[0], t, run)
            if v is None:
                continue
            live[t] = True
            a[t] = v.reshape(-1)
            w = kg.value_at(srcs[1], t, run)
            if w is not None:
                g[t] = w.reshape(-1)
        out = run.buffer(self.name, (steps, n), False)
        bad = run.K.gate(a, g, self.idx(), op.shift, op.rounding == "nearest_even",
                         op.relu, op.gmax, live, out)
        run.counters[self.name] = (int(live.sum()) * n, int(bad))
        series = _Live((out, 0))
        series.live = live
        return series

    def value_at(self, series, n, run):
        return series[0][n] if n < len(series.live) and series.live[n] else None

    def account(self, counters, samples, time):
        self.op.products += sum(c[0] for c in counters)
        return any(c[1] for c in counters)   # strict: the numpy path raises the error


class _Live(tuple):
    """A gate's series (array (steps, n), 0) and `live`: the steps its source gave a value
    (elsewhere the numpy op returns None)."""


KERNELS.register(FxGate)(_GateK)


class _NumpyK(_Kernel):
    """A node without a compiled kernel (FxCoproc, FxCoprocOut, ...) inside the
    plan: its numpy op steps over one sample's global steps, reading its sources' values
    step by step as the numpy loop gives them (`_Kernel.value_at`: dtype, None outside a
    window, a synapse's zeros), and keeps its own counters and boundary channels.

    Exact because the op answers no step early (Dispatch leaves graphs with a loop delay
    on the numpy loop): what it reads at step n are its sources' values at step n, which
    the topological order computed before it, over all steps (a causal gate reads the
    co-processor's gain of the same step; a window partition's buffered rows later). The
    op's state is its own, so one sample at a time steps it, under a lock; the kernels of
    other samples run meanwhile. In strict mode an error it raises only flags the batch,
    which the numpy path then runs again (the first error in the numpy loop's order)."""

    reads_steps = True

    def __init__(self, op):
        super().__init__(op)
        self.lock = threading.Lock()
        self.sources: list = []   # set by Plan: per input, (origin kernel, per-step shape)
        self.n_out = 0            # set by Plan: values per step when they are arrays

    def series(self, srcs, run):
        from snncompile.backends.sim.simulator import Batch
        from snncompile.errors import OverflowDetected
        b, op = run.batch, self.op
        one = Batch(b.x[run.row:run.row + 1], b.offset + run.row, b.time, b.values,
                    b.boundary, b.state)
        steps, vals, flagged = b.time.global_steps, [], False
        with self.lock:
            op.reset(one)
            try:
                for n in range(steps):
                    vals.append(op.advance(n, [self._read(k, shape, s, n, run) for (k, shape), s
                                               in zip(self.sources, srcs)], one))
                op.finish()
            except OverflowDetected:
                flagged = True
        run.counters[self.name] = flagged
        return _Steps(vals + [None] * (steps - len(vals)), self.n_out)

    @staticmethod
    def _read(kernel, shape, series, n, run):
        v = kernel.value_at(series, n, run)
        return v.reshape((1,) + shape) if isinstance(v, np.ndarray) else v

    def value_at(self, series, n, run):
        return series.vals[n] if n < len(series.vals) else None

    def account(self, counters, samples, time):
        return any(counters)


class _Steps(tuple):
    """A stepped node's series: (array (steps, n) int64 with zeros where the op gave None,
    0) for kernels that read it, and `vals`, the op's value per global step (arrays, None,
    or a partition's dict of ports) for stepped readers."""

    def __new__(cls, vals, n_out):
        arr = None
        if all(v is None or isinstance(v, np.ndarray) for v in vals):
            arr = np.zeros((len(vals), n_out), np.int64)
            for i, v in enumerate(vals):
                if v is not None:
                    arr[i] = v.reshape(-1)
        self = super().__new__(cls, (arr, 0))
        self.vals = vals
        return self


class Plan:
    """The compiled kernels of one Simulator's graph (one `_Kernel` per node)."""

    def __init__(self, sim):
        self.sim = sim
        self.order = list(sim.order)
        self.kernels = {name: (KERNELS.rule(sim.nodes[name]) if KERNELS.supports(
            sim.nodes[name]) else _NumpyK)(sim.ops[name]) for name in self.order}
        origin = {}     # name -> the kernel whose value_at reads its series
        for name in self.order:
            k, srcs = self.kernels[name], sim.inputs[name]
            plain = type(k).series is _Kernel.series and srcs   # Flatten, Output
            origin[name] = origin[srcs[0]] if plain else k
            if getattr(k, "reads_steps", False):   # _NumpyK, _GateK
                k.sources = [(origin[s], _shape(sim.graph, s)) for s in srcs]
                k.n_out = _size(sim.graph, name)
        self.recurrent = set()
        for name in self.order:
            k = self.kernels[name]
            if isinstance(k, _RecK):
                (lif,) = sim.inputs[name]   # FxRecDense: from a LIF's spikes back into it
                if not isinstance(self.kernels[lif], _LIFK) or name not in sim.inputs[lif]:
                    raise RuntimeError(f"internal error: {name} is not a recurrent synapse "
                                       f"of the LIF layer {lif}")
                self.kernels[lif].rec = k
                self.recurrent.add(name)
        self.fuse(FUSE)
        self.threads = _threads()
        self._pool = None
        self._local = threading.local()

    def fuse(self, on: bool) -> None:
        """Fuse (or not) each LIF whose only source is a binary dense layer read by
        nothing else into one kernel with it (`kernels.dense_lif`)."""
        readers: dict[str, list[str]] = {n: [] for n in self.order}
        for name in self.order:
            for s in self.sim.inputs[name]:
                readers[s].append(name)
        for name in self.order:
            k = self.kernels[name]
            if isinstance(k, _DenseK):
                lif = readers[name][0] if len(readers[name]) == 1 else None
                k.fused = bool(on and k.fusable() and lif is not None
                               and isinstance(self.kernels[lif], _LIFK)
                               and self.sim.inputs[lif] == [name])

    def _sample(self, xb, row, batch, pool=None):
        """Run sample `row` of the batch (xb: (T, *in) ints) through every node; returns
        this sample's counters {name: counters}."""
        from snncompile.backends.sim import kernels as K
        bufs = getattr(self._local, "bufs", None)   # this thread's buffers
        if bufs is None:
            bufs = self._local.bufs = {}
        run = _SampleRun(K, xb, row, batch, bufs, pool)
        series = {}      # name -> (array (rows, n), global step of row 0)
        inputs = self.sim.inputs
        rec = self.recurrent
        for name in self.order:
            if name not in rec:
                series[name] = self.kernels[name].series(
                    [series[s] for s in inputs[name] if s not in rec], run)
        return run.counters

    def run_batch(self, batch) -> None:
        """Run a batch (a simulator `Batch` of integer inputs x (B, T, *shape)) into its
        values (and state) rows offset..offset+B-1."""
        sim, x = self.sim, batch.x
        b = x.shape[0]
        # one input dtype where possible: uint8 like the spikes of LIF layers (fewer kernel
        # specialisations to compile), int64 otherwise
        if x.dtype == np.bool_:
            xs = x.view(np.uint8)
        elif x.size == 0 or (x.min() >= 0 and x.max() <= 255):
            xs = x.astype(np.uint8, copy=False)
        else:
            xs = x.astype(np.int64, copy=False)

        def one(i):
            return self._sample(xs[i], i, batch)

        if self.threads > 1 and self._pool is None:
            self._pool = _pool(self.threads)
        if self.threads > 1 and b > 1:      # samples on the threads
            results = list(self._pool.map(one, range(b)))
        elif self.threads > 1 and SPLIT:    # one sample: big layers split across threads
            results = [self._sample(xs[0], 0, batch, self._pool)]
        else:
            results = [one(i) for i in range(b)]
        flagged = self._account(results, b, batch.time)
        if flagged and sim.strict:
            # the numpy path raises the first error in its own order, exactly as a
            # numpy-only run would
            sim._run_batch_numpy(batch)
            raise RuntimeError("internal error: the compiled simulator counted a wrap or "
                               "clip that the numpy simulator did not; please report")

    def _account(self, results, b, time) -> bool:
        """Add the samples' counters to the numpy operations' (which Simulator.run
        reports); True when anything wrapped or clipped."""
        flagged = False
        for name in self.order:
            if results and name in results[0]:
                flagged |= self.kernels[name].account([r[name] for r in results], b, time)
        return flagged


_E32 = np.zeros((0, 0), np.int32)


class _Pending:
    """The series of a dense layer fused into its one reader, a LIF: the dense's source
    series, computed by the LIF's kernel (or, for a sample whose input is dense enough
    for BLAS, by the dense's own `series`, `materialise`)."""

    def __init__(self, kernel, src):
        self.kernel, self.src = kernel, src

    def materialise(self, run):
        return _SynapseK.series(self.kernel, [self.src], run)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the whole process, shared by every Simulator (a pool
    per Simulator would keep its idle threads until the garbage collector runs)."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="snncompile-sim")
        return _POOLS[threads]


def _shared(pool, block, n: int) -> None:
    """Run block(j0, j1) over [0, n) in two halves that this thread and one pool thread
    take in turn (halves, not smaller blocks: the kernel reads weight rows fastest whole).
    On a busy machine the pool thread may not be scheduled in time: this thread then takes
    both halves and the helper's task is cancelled, so a shared core costs about the
    single-thread time instead of a wait for a thread that does not run."""
    size = (-(-n // 2) + 63) & ~63
    blocks = iter([(j, min(j + size, n)) for j in range(0, n, size)])
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                b = next(blocks, None)
            if b is None:
                return
            block(*b)

    helper = pool.submit(work)
    work()
    if not helper.cancel():
        helper.result()


def _shape(graph, name) -> tuple:
    """A node's per-step output shape; () when it has none (a partition's dict of ports)."""
    shape = graph.shape(name)
    return tuple(shape) if isinstance(shape, (tuple, list)) else ()


def _size(graph, name) -> int:
    """Values per step of a node's output (0 when it has no array shape: a partition)."""
    shape = _shape(graph, name)
    return int(np.prod(shape)) if shape else 0


def _flat(a) -> np.ndarray:
    """A flat, C-contiguous, writable int64 copy or view: numba compiles one machine-code
    version per argument type, and a read-only or non-contiguous array is another type
    (three per-neuron parameters, read-only or not, made 8 versions of a LIF kernel)."""
    return _plain(np.asarray(a, np.int64).reshape(-1))


def _plain(a: np.ndarray) -> np.ndarray:
    """`a` as a C-contiguous, writable array (a copy only when it is not one already)."""
    return np.require(a, requirements=["C", "W"])


def _window(srcs, start: int, rows: int, n: int) -> np.ndarray:
    """Sum of the source series over global steps [start, start + rows), as (rows, n)
    int64 (a view when one source covers the window)."""
    if len(srcs) == 1:
        arr, off = srcs[0]
        lo = start - off
        if lo >= 0 and lo + rows <= arr.shape[0] and arr.dtype == np.int64:
            return arr[lo:lo + rows]
    a = np.zeros((rows, n), np.int64)
    for arr, off in srcs:
        lo, hi = max(start, off), min(start + rows, off + arr.shape[0])
        if hi > lo:
            a[lo - start:hi - start] += arr[lo - off:hi - off]
    return a
