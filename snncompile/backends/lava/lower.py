"""Lowering of a fixed-stage graph to Lava processes: one rule per node type in `LOWER`.

    Input    -> lava.proc.io.source.RingBuffer (PySendModelFixed), all samples back to back;
                a bias input (netx input layers) has no process: its frames are the
                bias_mant of the LIFReset it feeds, set with `Var.set` between samples
    FxDense  -> lava.proc.dense.process.Dense / DelayDense (bit-accurate models)
    FxConv2d -> lava.proc.conv.process.Conv (PyConvModelFixed)
    FxConv1d -> the same Conv on a (L, 1, C) view of its input (height 1)
                 a synapse bias (either): one shared RingBuffer of ones (the always-on
                 bias axon) into a one-column Dense summed with the synapse's output
                 into whatever reads it (neurons' a_in, attention gate, co-processor)
    Flatten, Output -> views of their input's port
    FxLIF    -> lava.proc.lif.process.LIFReset (PyLifResetModelBitAcc); spikes recorded
    FxLI     -> LIFReset at the largest threshold mantissa; its voltage v recorded (VOLTAGE)
    FxSigmaDelta -> lava.proc.sdn.process SigmaDelta / Delta / Sigma (fixed_pt models);
                graded spikes recorded
    FxGate   -> procs.GateProcess;  FxDelay -> procs.DelayProcess (a loop's back edge)
    FxRecDense -> a Dense from the LIF's s_out back into its a_in (Lava's one-step Dense
                delay is the recurrence's)
    FxCoproc -> coproc.CoprocProcess (its inputs recorded as boundary values);
    FxCoprocOut -> one output port of it (recorded as a boundary value)

A rule is `rule(node, ins, net) -> Lowered`: `ins` are the `Lowered` outputs of the node's
inputs, `net` the `LavaNet` being built (the rule adds its processes with `net.add` and
says what is read back with `net.record`). A rule with a `declare(node, net)` attribute is
lowered in two steps: `declare` runs before any rule (a loop delay or a recurrent synapse,
whose readers come before it in the graph's order), the rule itself later, in order.

Reading back is a property of the lowering: `net.record(key, at, watched, ..., readout)`
attaches the recorder the `Readout` names to `watched` (an OutPort for SPIKES, GRADED and
VALUES; a Var such as a LIFReset's `v` for VOLTAGE, recorded whole every step).

Layout: see `layout.py`. Our graph keeps (C, H, W) and PyTorch OIHW cross-correlation;
Lava keeps (W, H, C) and convolves with flipped (Cout, kW, kH, Cin) kernels. Weights that
read a permuted port get their columns permuted.

Time: see `snncompile.ir.timing`. Recorders start at `lava_start(node)` (local step 0 of
sample 0) and record N*T steps; LIFReset resets at `lava_reset_offset(node)` every T steps.

This module imports Lava only inside the rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from snncompile.backends.lava.layout import from_lava, lava_shape, natural_perm, to_lava
from snncompile.backends.sim.simulator import inbound
from snncompile.errors import BackendError, InputFileError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import (Flatten, FxConv1d, FxConv2d, FxCoproc, FxCoprocOut, FxDelay,
                                 FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta, Input,
                                 NEURON_PARAMS, Output, bias_sign_mode, per_neuron, FxRecDense)
from snncompile.ir.registry import Rules
from snncompile.ir.timing import Timing, timing

LOWER = Rules("Lava lowering")


class Lowered(NamedTuple):
    """What a lowered node offers the nodes that read it."""

    port: object                # Lava OutPort or port view (None: a bias input; the
    #                             CoprocProcess itself for FxCoproc)
    perm: np.ndarray | None     # the port's flat index j holds our flat element perm[j]
    shape: tuple | None         # the port's Lava shape


@dataclass(frozen=True)
class Readout:
    """How one recorded quantity comes back: the recorder process (a class of procs.py)
    that watches it, the procs.py function that reads its file, the dtype of the values
    in `Run`, and what the 'record missing' error calls it."""

    recorder: str
    reader: str
    dtype: type
    what: str


SPIKES = Readout("SpikeRecorder", "read_record", bool, "spike")           # an OutPort
GRADED = Readout("ValueRecorder", "read_values", np.int32, "graded-spike")  # an OutPort
VALUES = Readout("ValueRecorder", "read_values", np.int64, "value")       # an OutPort
VOLTAGE = Readout("VarRecorder", "read_values", np.int32, "voltage")      # a Var, e.g. v


@dataclass
class Recording:
    """One recorder of a built network: `key` in Run.values (or Run.boundary), its file,
    the recorded port's perm and Lava shape, our shape, and its Readout."""

    key: str
    path: str
    perm: np.ndarray | None
    lava_shape: tuple
    shape: tuple
    readout: Readout
    boundary: bool


@dataclass
class LavaNet:
    """A graph being lowered to Lava processes (the context every rule receives), fed with
    `x` (N, T, *input shape, our layout) through a RingBuffer of `n_steps` steps; records
    into `record_dir` (None: record nothing)."""

    graph: Graph
    x: np.ndarray
    n_steps: int
    record_dir: Path | None
    timing: Timing
    procs: list = field(default_factory=list)      # every Lava process, in creation order
    models: dict = field(default_factory=dict)     # process class / instance -> model
    outs: dict = field(default_factory=dict)       # node name -> Lowered
    neurons: dict = field(default_factory=dict)    # FxLIF -> (LIFReset, perm, lava shape)
    coproc_layouts: dict = field(default_factory=dict)  # FxCoproc -> port -> (perm, shape)
    bias_in: dict = field(default_factory=dict)    # bias-fed FxLIF -> per-sample bias_mant
    recordings: list = field(default_factory=list)  # Recording, in creation order
    checks: list = field(default_factory=list)     # callables to run after the run
    source: object = None                           # the RingBuffer, if any
    bias_fed: set = field(default_factory=set)      # FxLIFs a bias input drives
    bias_source: object = None                      # the always-on bias axon (shared)

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])

    @property
    def runner(self):
        """The process to run the network with (any process of it will do)."""
        return self.source if self.source is not None else self.procs[0]

    def add(self, proc, model: type | None = None, *, by_class: bool = True):
        """Add a Lava process and pin its model (default: procs.MODELS). Pinned by class
        (what RunConfig.select reads) AND by instance: the compiler's own lookup
        (lava/magma/compiler/compiler_graphs.py:1031) tests the instance, and when it
        misses it scans the process's directory, exec'ing every .py there."""
        if model is None:
            from snncompile.backends.lava.procs import MODELS
            model = MODELS[type(proc)]
        self.procs.append(proc)
        if by_class:
            self.models[type(proc)] = model
        self.models[proc] = model
        return proc

    def record(self, key: str, at: str, watched, perm, lava_shape: tuple, shape: tuple,
               readout: Readout, *, boundary: bool = False, start: int | None = None
               ) -> None:
        """Record `watched` (what `readout.recorder` watches: an OutPort or a Var) for N*T
        steps from node `at`'s local step 0 (or from Lava step `start`), as `key` of
        Run.values (Run.boundary when `boundary`) in our `shape`; nothing when the build
        records nothing."""
        if self.record_dir is None:
            return
        from snncompile.backends.lava import procs
        path = str(self.record_dir / f"rec{len(self.recordings)}.npy")
        rec = getattr(procs, readout.recorder)(shape=lava_shape, path=path,
                                               start=(self.timing.lava_start(at)
                                                      if start is None else start),
                                               count=self.samples * self.steps)
        rec.watch(watched)
        self.add(rec)
        self.recordings.append(Recording(key, path, perm, tuple(lava_shape), tuple(shape),
                                         readout, boundary))

    def read_back(self) -> tuple[dict, dict]:
        """(values, boundary) from the recorders' files: (N, T, *shape), our layout."""
        from snncompile.backends.lava import procs
        values: dict = {}
        boundary: dict = {}
        n, t_len = self.samples, self.steps
        for rec in self.recordings:
            if not Path(rec.path).exists():
                raise BackendError(f"{rec.key}: Lava {rec.readout.what} record missing "
                                   "after the run")
            raw = getattr(procs, rec.readout.reader)(rec.path, rec.lava_shape)
            ours = from_lava(raw.reshape(n * t_len, -1), rec.perm)
            out = boundary if rec.boundary else values
            out[rec.key] = ours.reshape((n, t_len) + rec.shape).astype(rec.readout.dtype)
        return values, boundary


def check_graph(graph: Graph) -> None:
    """Refuse, in one line, the first node without a Lava lowering; then validate."""
    for name in graph.order():
        node = graph.node(name)
        if not LOWER.supports(node):
            hint = ("; the graph is float-stage: quantize it first"
                    if graph.stage == "float" else "")
            raise UnsupportedError(LOWER.refusal(node) + hint)
    graph.validate()


def build(graph: Graph, x: np.ndarray, n_steps: int, record_dir: Path | None) -> LavaNet:
    """Create and connect the Lava processes for `graph`, fed with `x` (N, T, *in_shape)."""
    net = LavaNet(graph, x, int(n_steps), record_dir, timing(graph, x.shape[1]),
                  bias_fed=graph.bias_fed())
    order = graph.order()
    rules: dict[str, Callable] = {name: LOWER.rule(graph.node(name)) for name in order}
    for name in order:      # loop delays first: their readers come before them
        declare = getattr(rules[name], "declare", None)
        if declare is not None:
            net.outs[name] = declare(graph.node(name), net)
    for name in order:
        ins = [net.outs[src] for src in graph.inputs(name)]
        net.outs[name] = rules[name](graph.node(name), ins, net)
    return net


# ------------------------------------------------------------------ helpers
def _same_perm(name: str, ins: list[Lowered]):
    perms = [s.perm for s in ins]
    for p in perms[1:]:
        if (p is None) != (perms[0] is None) or (p is not None
                                                 and not np.array_equal(p, perms[0])):
            raise UnsupportedError(f"{name}: inputs arrive in different layouts")
    return perms[0] if perms else None


def _connect(ins: list[Lowered], in_port) -> None:
    for src in ins:  # several OutPorts into one InPort are summed by Lava
        src.port.connect(in_port)


class SummedPort(NamedTuple):
    """A synapse's output with its bias axon's: OutPorts (or views) that every InPort
    they connect to sums, so what reads the synapse (a neuron, an attention gate, the
    co-processor, a recorder) sees current + bias."""

    ports: tuple

    def connect(self, in_port) -> None:
        for port in self.ports:
            port.connect(in_port)

    def flatten(self) -> "SummedPort":
        return SummedPort(tuple(p.flatten() for p in self.ports))

    def reshape(self, shape) -> "SummedPort":
        return SummedPort(tuple(p.reshape(shape) for p in self.ports))

    def transpose(self, axes) -> "SummedPort":
        return SummedPort(tuple(p.transpose(axes) for p in self.ports))


def _bias_axon(node, port, perm, lshape: tuple, net: LavaNet, shape: tuple | None = None):
    """A synapse's bias (`bias_mant << bias_exp` per output, `synapse_bias`): the shared
    always-on axon (a RingBuffer of ones, sending at every step from Lava step 1, so its
    current arrives from global step 1, before any neuron's window opens) into a Dense of
    one column holding the mantissas in the output's Lava layout, with the bias exponent;
    returned with the synapse's `port` as one SummedPort (the port alone without a bias),
    so it reaches whatever the synapse feeds: into an attention layer, the gain multiplies
    current + bias as in the float model. `shape`: the output shape `perm` is for (a
    Conv1d's (O, 1, L') image; default the node's own)."""
    if node.bias_mant is None:
        return port
    for dst in net.graph.outputs(node.name):
        if not net.graph.node(dst).takes_synapse_bias:
            raise UnsupportedError(f"{node.name}: its bias axon feeds {dst} "
                                   f"({type(net.graph.node(dst)).__name__}); only neurons "
                                   "zeroed at their window's start (FxLIF, FxLI) or the "
                                   "attention gate and co-processor take one")
    from lava.proc.dense.models import PyDenseModelBitAcc
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import PySendModelFixed, RingBuffer
    from lava.utils.weightutils import SignMode

    shape = tuple(net.graph.shape(node.name) if shape is None else shape)  # perm's order
    m = np.broadcast_to(np.asarray(node.bias_mant, np.int64).reshape(
        (-1,) + (1,) * (len(shape) - 1)), shape)
    col = to_lava(np.ascontiguousarray(m), shape, perm, lshape).reshape(-1, 1)
    start = _recurrent_window_start(node, net)
    if start is not None:
        # a recurrent layer deeper than the first: its own axon, silent until its window
        # opens (otherwise it spikes on the bias alone before the window and its recurrent
        # synapse carries those spikes past LIFReset's zeroing; tests/test_feature_combinations)
        data = np.ones((1, max(int(net.n_steps), start + 1)), np.int32)
        data[0, :start] = 0
        source = net.add(RingBuffer(data=data), PySendModelFixed)
    else:
        if net.bias_source is None:
            net.bias_source = net.add(RingBuffer(data=np.ones((1, 1), np.int32)),
                                      PySendModelFixed)
        source = net.bias_source
    proc = net.add(Dense(weights=col.astype(np.int32), weight_exp=int(node.bias_exp),
                         num_weight_bits=8, num_message_bits=0,
                         sign_mode=SignMode[bias_sign_mode(node.bias_mant).upper()],
                         name=f"{node.name}.bias"), PyDenseModelBitAcc)
    source.s_out.connect(proc.s_in)
    return SummedPort((port, proc.a_out if len(lshape) == 1 else proc.a_out.reshape(lshape)))


def _recurrent_window_start(node, net: LavaNet) -> int | None:
    """Index of the bias axon's first sending step (RingBuffer frame) for a synapse whose
    bias feeds a recurrent layer deeper than the first, so its current first arrives in the
    layer's window; None for every other synapse (the shared axon, from step 1, is exact
    there because LIFReset zeroes u and v when the window opens)."""
    graph = net.graph
    for dst in graph.outputs(node.name):
        rec = [i for i in graph.inputs(dst)
               if graph.node(i).is_synapse and graph.node(i).closes_loop]
        if rec and net.timing.depth[dst] > 1:
            return int(net.timing.depth[dst]) - 1
    return None


def _neuron_layout(node, ins: list[Lowered], net: LavaNet) -> tuple:
    """(perm, Lava shape) of a neuron layer: those of its (agreeing) inputs."""
    perm = _same_perm(node.name, ins)
    return perm, (ins[0].shape if ins else lava_shape(net.graph.shape(node.name)))


def _lava_bias(node, perm, lshape) -> np.ndarray:
    """A neuron node's per-neuron bias mantissas, int32 in its Lava layout."""
    bias = np.broadcast_to(np.asarray(node.bias_mant, dtype=np.int64), node.shape)
    return to_lava(np.ascontiguousarray(bias), node.shape, perm, lshape).astype(np.int32)


def _lava_param(node: FxLIF, field: str, perm, lshape):
    """du, dv or vth: an int (one per layer), or int32 per neuron in the Lava layout."""
    value = getattr(node, field)
    if not isinstance(value, np.ndarray) or np.all(value == value.flat[0]):
        return int(np.asarray(value).flat[0])
    full = np.ascontiguousarray(np.broadcast_to(value.astype(np.int64), node.shape))
    return to_lava(full, node.shape, perm, lshape).astype(np.int32)


def _bias_frames(name: str, node: FxLIF, x: np.ndarray, perm, lshape) -> np.ndarray:
    """Per sample, the bias_mant (Lava layout, int32) of a LIF driven by a bias input: its
    own mantissas plus the sample's frame, which must be held for all its steps and fit
    the int16 in which Lava's fixed-point LIF keeps bias_mant."""
    moved = np.argwhere(np.any(x != x[:, :1], axis=tuple(range(2, x.ndim))))
    if len(moved):
        i, t = (int(v) for v in moved[0])
        raise InputFileError(f"inputs: sample {i} changes its bias frame at step {t}; a bias "
                             "input frame is held for all steps of its sample")
    own = np.broadcast_to(np.asarray(node.bias_mant, np.int64), node.shape)
    total = own[None] + x[:, 0].astype(np.int64)
    if total.min(initial=0) < -(1 << 15) or total.max(initial=0) >= 1 << 15:
        raise UnsupportedError(f"{name}: bias_mant plus input frame spans [{total.min()}, "
                               f"{total.max()}], beyond Lava's int16 bias_mant")
    return to_lava(total, node.shape, perm, lshape).astype(np.int32)


def _gain_index(shape, a_perm, gshape, g_perm, upsample=(1, 1)) -> np.ndarray:
    """For each element of the current in Lava order, the Lava-order index of its gain
    (broadcast over size-1 axes; nearest upsampling over the last two axes)."""
    n = int(np.prod(shape))
    ours = np.arange(n) if a_perm is None else np.asarray(a_perm)   # Lava j -> our flat
    idx = list(np.unravel_index(ours, shape))
    if tuple(upsample) != (1, 1):
        idx[-2], idx[-1] = idx[-2] // upsample[0], idx[-1] // upsample[1]
    gidx = np.ravel_multi_index(tuple(np.where(np.asarray(gshape)[k] == 1, 0, idx[k])
                                      for k in range(len(shape))), gshape)
    if g_perm is None:
        return gidx
    inv = np.empty(len(g_perm), np.int64)
    inv[np.asarray(g_perm)] = np.arange(len(g_perm))                 # our flat -> Lava j
    return inv[gidx]


# ------------------------------------------------------------------ the rules
@LOWER.register(Input)
def _input(node: Input, ins: list[Lowered], net: LavaNet) -> Lowered:
    shape = net.graph.shape(node.name)
    perm, lshape = natural_perm(shape), lava_shape(shape)
    if node.is_bias:    # no spikes: written into the bias_mant of the LIFs it feeds
        return Lowered(None, perm, lshape)
    from lava.proc.io.source import PySendModelFixed, RingBuffer
    n, t_len = net.samples, net.steps
    frames = to_lava(net.x.reshape((n * t_len,) + shape), shape, perm, lshape)
    data = np.zeros(lshape + (net.n_steps,), dtype=np.int32)
    data[..., : n * t_len] = np.moveaxis(frames, 0, -1)
    net.source = net.add(RingBuffer(data=data), PySendModelFixed)  # RingBuffer takes no name
    return Lowered(net.source.s_out, perm, lshape)


@LOWER.register(Output)
def _output(node: Output, ins: list[Lowered], net: LavaNet) -> Lowered:
    return ins[0]


_output.reads_port = False   # a graph boundary: nothing in Lava is connected to it


@LOWER.register(Flatten)
def _flatten(node: Flatten, ins: list[Lowered], net: LavaNet) -> Lowered:
    """A flat view of the input's port; made only when a consumer connects to it: a Lava
    ReshapePort left unconnected (a Flatten before Output) fails Lava's compiler."""
    port, perm, lshape = ins[0]
    readers = [c for c in net.graph.outputs(node.name)
               if getattr(LOWER.rule(net.graph.node(c)), "reads_port", True)]
    if len(lshape) > 1 and readers:
        port = port.flatten()
    return Lowered(port, perm, (int(np.prod(lshape)),))


_SIGN_MODES = ("mixed", "excitatory", "inhibitory")


@LOWER.register(FxDense)
def _dense(node: FxDense, ins: list[Lowered], net: LavaNet) -> Lowered:
    from lava.proc.dense.models import PyDelayDenseModelBitAcc, PyDenseModelBitAcc
    from lava.proc.dense.process import DelayDense, Dense

    perm = _same_perm(node.name, ins)
    kw = _dense_params(node, perm)
    if node.physical_delay() is not None:      # model delay + path alignment
        d = np.asarray(node.physical_delay(), dtype=np.int64)
        proc = net.add(DelayDense(delays=(d if perm is None else d[:, perm]).astype(int),
                                  **kw), PyDelayDenseModelBitAcc)
    else:
        proc = net.add(Dense(**kw), PyDenseModelBitAcc)
    _connect(ins, proc.s_in)
    shape = net.graph.shape(node.name)
    return Lowered(_bias_axon(node, proc.a_out, None, shape, net), None, shape)


def _dense_params(node, perm=None) -> dict:
    """Lava Dense keyword arguments of a dense synapse (weights in the input's layout)."""
    from lava.utils.weightutils import SignMode

    if node.sign_mode not in _SIGN_MODES:
        raise UnsupportedError(f"{node.name}: sign_mode '{node.sign_mode}' is not one of "
                               f"{', '.join(_SIGN_MODES)}")
    w = np.asarray(node.weight, dtype=np.int64)
    if perm is not None:
        w = w[:, perm]
    return dict(weights=w.astype(np.int32), weight_exp=int(node.weight_exp),
                num_weight_bits=int(node.num_weight_bits),
                sign_mode=SignMode[node.sign_mode.upper()],
                num_message_bits=int(node.num_message_bits), name=node.name)


def _declare_recurrent(node: FxRecDense, net: LavaNet) -> Lowered:
    """The recurrent Dense, created before its LIF so that the LIF can read its a_out."""
    from lava.proc.dense.models import PyDenseModelBitAcc
    from lava.proc.dense.process import Dense

    proc = net.add(Dense(**_dense_params(node)), PyDenseModelBitAcc)
    return Lowered(proc.a_out, None, net.graph.shape(node.name))


@LOWER.register(FxRecDense)
def _recurrent(node: FxRecDense, ins: list[Lowered], net: LavaNet) -> Lowered:
    """Close the recurrence: the LIF's s_out into the Dense `declare` made. Lava's Dense
    sends the previous step's buffer before it receives, so the loop never waits on
    itself and delivers s_(t-1) at step t, as the recurrence needs."""
    own = net.outs[node.name]
    if ins[0].perm is not None:
        raise UnsupportedError(f"{node.name}: a recurrent layer's neurons must be a 1-d "
                               "layer fed by dense synapses (its spikes arrive permuted)")
    ins[0].port.connect(own.port.process.s_in)
    return own


_recurrent.declare = _declare_recurrent


@LOWER.register(FxConv2d)
def _conv(node: FxConv2d, ins: list[Lowered], net: LavaNet) -> Lowered:
    name, graph = node.name, net.graph
    _same_perm(name, ins)
    shape, in_shape = graph.shape(name), graph.shape(graph.inputs(name)[0])
    if ins[0].shape != lava_shape(in_shape):
        raise UnsupportedError(f"{name}: FxConv2d input must be an image (C, H, W)")
    return _lava_conv(node, ins, net, in_shape, shape)


@LOWER.register(FxConv1d)
def _conv1d(node: FxConv1d, ins: list[Lowered], net: LavaNet) -> Lowered:
    """Lava's Conv on the (C, 1, L) view: its input port must read as (L, 1, C) (Lava's
    (W, H, C)). A (C, L) port in our order (an Input) is transposed to (L, C) by a Lava
    TransposePort and reshaped; a port already in that layout (a LIF fed by a Conv1d)
    is used as it is. The output is the (L', 1, O) image of our (O, L')."""
    name, graph = node.name, net.graph
    perm = _same_perm(name, ins)
    shape, in_shape = graph.shape(name), graph.shape(graph.inputs(name)[0])
    img_in, img_out = node.image_shape(in_shape), node.image_shape(shape)
    views, want = [], natural_perm(img_in)
    for src in ins:
        if src.shape == lava_shape(img_in) and perm is not None \
                and np.array_equal(perm, want):
            views.append(src)
        elif src.shape == tuple(in_shape) and perm is None:
            port = src.port.transpose([1, 0]).reshape(lava_shape(img_in))
            views.append(Lowered(port, want, lava_shape(img_in)))
        else:
            raise UnsupportedError(f"{name}: FxConv1d input arrives in Lava layout "
                                   f"{src.shape}, neither (C, L) = {tuple(in_shape)} nor "
                                   f"(L, 1, C) = {lava_shape(img_in)}")
    return _lava_conv(node, views, net, img_in, img_out)


def _lava_conv(node: FxConv2d, ins: list[Lowered], net: LavaNet, in_shape, shape) -> Lowered:
    """Lava's Conv for a conv of image shapes `in_shape` -> `shape` (ours, C H W)."""
    from lava.proc.conv.models import PyConvModelFixed
    from lava.proc.conv.process import Conv

    name = node.name
    w = np.asarray(node.weight, dtype=np.int32)[:, :, ::-1, ::-1]  # true convolution
    proc = Conv(weight=np.ascontiguousarray(w.transpose(0, 3, 2, 1)),
                input_shape=lava_shape(in_shape),
                stride=tuple(node.stride[::-1]), padding=tuple(node.padding[::-1]),
                groups=int(node.groups), num_message_bits=int(node.num_message_bits),
                name=name)
    if tuple(proc.output_shape) != lava_shape(shape):
        raise BackendError(f"{name}: Lava Conv output {tuple(proc.output_shape)} "
                           f"!= expected {lava_shape(shape)}")
    net.add(proc, PyConvModelFixed)
    _connect(ins, proc.s_in)
    port = _bias_axon(node, proc.a_out, natural_perm(shape), lava_shape(shape), net, shape)
    return Lowered(port, natural_perm(shape), lava_shape(shape))


@LOWER.register(FxLIF)
def _lif(node: FxLIF, ins: list[Lowered], net: LavaNet) -> Lowered:
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset

    name = node.name
    perm, lshape = _neuron_layout(node, ins, net)
    bias = _lava_bias(node, perm, lshape)
    bias_fed = name in net.bias_fed
    if bias_fed:    # sample k's frame is bias_mant during its T steps
        net.bias_in[name] = _bias_frames(name, node, net.x, perm, lshape)
        bias = net.bias_in[name][0]
    params = dict(shape=lshape, bias_mant=bias, bias_exp=int(node.bias_exp),
                  reset_interval=net.steps, reset_offset=net.timing.lava_reset_offset(name),
                  name=name)
    params.update({f: _lava_param(node, f, perm, lshape) for f in NEURON_PARAMS})
    if node.lava_lif and not per_neuron(node):
        proc = LIFReset(**params)
        net.add(proc, PyLifResetModelBitAcc)
    else:           # soft reset, v >= vth or per-neuron du/dv/vth: our process
        from snncompile.backends.lava.procs import PySoftLIFModel, SoftLIF
        proc = SoftLIF(reset=node.reset, fire_at=node.fire_at, **params)
        net.add(proc, PySoftLIFModel)
    if not bias_fed:
        _connect(ins, proc.a_in)
    net.neurons[name] = (proc, perm, lshape)
    net.record(name, name, proc.s_out, perm, lshape, net.graph.shape(name), SPIKES)
    return Lowered(proc.s_out, perm, lshape)


@LOWER.register(FxLI)
def _li(node: FxLI, ins: list[Lowered], net: LavaNet) -> Lowered:
    """A non-spiking readout: a LIFReset at the largest threshold mantissa (it never
    reaches it while the quantiser's headroom holds), its voltage `v` read whole every
    step by a VarRecorder (int32, our layout) as the node's values."""
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset
    from snncompile.target import load_target

    name = node.name
    perm, lshape = _neuron_layout(node, ins, net)
    vth = load_target("loihi2").numerics.vth_max    # Lava's bit-accurate LIF is Loihi 2's
    proc = LIFReset(shape=lshape, du=int(node.du), dv=int(node.dv), vth=int(vth),
                    bias_mant=_lava_bias(node, perm, lshape), bias_exp=int(node.bias_exp),
                    reset_interval=net.steps,
                    reset_offset=net.timing.lava_reset_offset(name), name=name)
    net.add(proc, PyLifResetModelBitAcc)
    _connect(ins, proc.a_in)
    net.neurons[name] = (proc, perm, lshape)
    net.record(name, name, proc.v, perm, lshape, net.graph.shape(name), VOLTAGE)
    return Lowered(proc.s_out, perm, lshape)


@LOWER.register(FxSigmaDelta)
def _sigma_delta(node: FxSigmaDelta, ins: list[Lowered], net: LavaNet) -> Lowered:
    from lava.proc.sdn.models import (PyDeltaModelFixed, PySigmaDeltaModelFixed,
                                      PySigmaModelFixed)
    from lava.proc.sdn.process import ActivationMode, Delta, Sigma, SigmaDelta

    perm, lshape = _neuron_layout(node, ins, net)
    common = dict(shape=lshape, vth=int(node.vth), cum_error=bool(node.cum_error),
                  spike_exp=int(node.spike_exp), state_exp=int(node.state_exp))
    if node.role == "sigma":
        proc = net.add(Sigma(shape=lshape), PySigmaModelFixed)
    elif node.role == "delta":
        proc = net.add(Delta(**common), PyDeltaModelFixed)
    else:
        proc = net.add(SigmaDelta(bias=_lava_bias(node, perm, lshape),
                                  act_mode=ActivationMode.RELU, **common),
                       PySigmaDeltaModelFixed)
    _connect(ins, proc.a_in)
    net.record(node.name, node.name, proc.s_out, perm, lshape, net.graph.shape(node.name),
               GRADED)
    return Lowered(proc.s_out, perm, lshape)


@LOWER.register(FxGate)
def _gate(node: FxGate, ins: list[Lowered], net: LavaNet) -> Lowered:
    from snncompile.backends.lava.procs import GateProcess

    (a_port, a_perm, a_lshape), (g_port, g_perm, g_lshape) = ins
    graph = net.graph
    gshape = graph.shape(graph.inputs(node.name)[1])
    proc = net.add(GateProcess(
        shape=a_lshape, gain_shape=g_lshape,
        gidx=_gain_index(graph.shape(node.name), a_perm, gshape, g_perm, node.upsample),
        shift=int(node.shift), relu=bool(node.relu), rounding=node.rounding,
        name=node.name))
    a_port.connect(proc.a_in)
    g_port.connect(proc.g_in)
    return Lowered(proc.a_out, a_perm, a_lshape)


def _declare_delay(node: FxDelay, net: LavaNet) -> Lowered:
    """The DelayProcess of a loop delay, created before its readers are lowered."""
    from snncompile.backends.lava.procs import DelayProcess

    dshape = net.graph.shape(node.name)
    lshape = lava_shape(dshape) or (1,)
    proc = net.add(DelayProcess(shape=lshape, steps=node.steps, latency=node.latency,
                                target_depth=node.target_depth, init=node.init,
                                period=net.steps, name=node.name))
    return Lowered(proc.s_out, natural_perm(dshape), lshape)


@LOWER.register(FxDelay)
def _delay(node: FxDelay, ins: list[Lowered], net: LavaNet) -> Lowered:
    """Close the loop: connect the delay's source to the process `declare` made."""
    own = net.outs[node.name]
    port, perm, _ = ins[0]
    if perm is not None and not np.array_equal(perm, own.perm):
        raise UnsupportedError(f"{node.name}: input arrives in another layout")
    port.connect(own.port.process.s_in)
    return own


_delay.declare = _declare_delay


@LOWER.register(FxCoproc)
def _coproc(node: FxCoproc, ins: list[Lowered], net: LavaNet) -> Lowered:
    from snncompile.backends.lava.coproc import CoprocProcess, check_errors, model_map

    name, graph, cg = node.name, net.graph, node.cgraph
    names = list(cg.inputs)
    lead = 1 if node.window else 0      # a window partition's ports carry one step
    outs_g = {o: cg.specs[o].shape[lead:] for o in cg.outputs}
    window = (dict(window=node.window, latency=node.latency,
                   buffer_start=net.timing.lava_buffer_start(name)) if node.window else {})
    layouts = _coproc_layouts(outs_g, [(graph.shape(s), src) for s, src in
                                       zip(graph.inputs(name), ins)])
    proc = CoprocProcess(
        cg, in_shapes={k: src.shape for k, src in zip(names, ins)},
        out_shapes={o: lshape for o, (_, lshape) in layouts.items()},
        reset_interval=0 if node.window else net.steps,
        reset_offset=net.timing.lava_reset_offset(name),
        in_perms={k: src.perm for k, src in zip(names, ins)},
        out_perms={o: perm for o, (perm, _) in layouts.items()}, name=name, **window)
    net.coproc_layouts[name] = layouts
    net.add(proc, model_map([proc])[proc], by_class=False)
    net.checks.append(lambda: check_errors([proc]))
    for k, src in zip(names, ins):
        src.port.connect(proc.in_port(k))
    for src_name, src in zip(graph.inputs(name), ins):  # what crosses in, for verify
        net.record(inbound(name, src_name), name, src.port, src.perm, src.shape,
                   graph.shape(src_name), VALUES, boundary=True,
                   start=window.get("buffer_start"))
    return Lowered(proc, None, None)


def _coproc_layouts(outs: dict, sources: list) -> dict:
    """port -> (perm, Lava shape) of a partition's outputs: an output of a source's shape
    (window mode's delayed current) in that source's layout, so that the gates on it and
    the synapses beside them (a conv1d shortcut's (L, 1, C) image) agree; the others
    (gains) in the natural layout of their shape."""
    out = {}
    for o, sh in outs.items():
        same = [src for shape, src in sources if tuple(shape) == tuple(sh)]
        out[o] = ((same[0].perm, tuple(same[0].shape)) if same else
                  (natural_perm(sh), lava_shape(sh) or (1,)))
    return out


@LOWER.register(FxCoprocOut)
def _coproc_out(node: FxCoprocOut, ins: list[Lowered], net: LavaNet) -> Lowered:
    gshape = tuple(node.shape)
    coproc = net.graph.inputs(node.name)[0]
    perm, lshape = net.coproc_layouts[coproc][node.port]
    port = ins[0].port.out_port(node.port)
    net.record(node.name, node.name, port, perm, lshape, gshape, VALUES, boundary=True)
    return Lowered(port, perm, lshape)
