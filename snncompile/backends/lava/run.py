"""Run a fixed-stage graph on Lava's bit-accurate CPU simulation (`Loihi2SimCfg`, fixed_pt).

Lowering (one Lava process per node; `Flatten` and `Output` are port views):

    Input    -> lava.proc.io.source.RingBuffer (PySendModelFixed), all samples back to back;
                a bias input (netx input layers) has no process: its frames are the
                bias_mant of the LIFReset it feeds, set with `Var.set` between samples
                (the run pauses after each sample's T steps)
    FxDense  -> lava.proc.dense.process.Dense (PyDenseModelBitAcc)
    FxConv2d -> lava.proc.conv.process.Conv (PyConvModelFixed)
    FxLIF    -> lava.proc.lif.process.LIFReset (PyLifResetModelBitAcc) + a SpikeRecorder
    FxSigmaDelta -> lava.proc.sdn.process SigmaDelta / Delta / Sigma (their fixed_pt models)
                + a ValueRecorder; such graphs run one sample per Lava run (the neurons
                have no reset)

Layout. Lava keeps images as (W, H, C) and convolves with flipped (Cout, kW, kH, Cin)
kernels; our graph keeps (C, H, W) and PyTorch OIHW cross-correlation. Every node's Lava
output is a port whose C-order flat index j holds our flat element `perm[j]`; weights
that read such a port get their columns permuted, biases and inputs are permuted on the
way in and spikes on the way out, so callers only ever see our layout.

Time. Sample n's frame t leaves the RingBuffer at global step n*T + t + 1 (Lava counts
from 1). Each synapse adds one step, so an FxLIF at depth d (`graph.depth`) sees it at
n*T + d + 1 + t; LIFReset zeroes u and v at every step with time_step % T == (d + 1) % T,
i.e. right before each sample's first input is integrated. The run lasts N*T + max depth.

Example::

    run = run_lava(graph, inputs)          # inputs: (N, T, *input_shape) integers
    run.spikes["lif1"].shape               # (N, T, *shape of lif1), bool, local time
"""
from __future__ import annotations

import math
import multiprocessing as mp
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snncompile.backends.lava import compat as _lava_compat
from snncompile.backends.base import Run, register_backend
from snncompile.backends.sim.simulator import inbound
from snncompile.errors import BackendError, InputFileError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import (Flatten, FxConv2d, FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate,
                        FxLIF, FxSigmaDelta, Input, Output)

SUPPORTED = (Input, FxDense, FxConv2d, FxLIF, Flatten, Output, FxGate, FxCoproc, FxCoprocOut,
             FxDelay, FxSigmaDelta)
_SUPPORTED_NAMES = ", ".join(cls.__name__ for cls in SUPPORTED)


def require_lava() -> None:
    """Import Lava (with the Python 3.11 fix installed) or raise BackendError."""
    _lava_compat.install()
    try:
        with _fork_start_method():
            import lava.magma.core.run_configs  # noqa: F401
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
            import lava.proc.conv.process  # noqa: F401
            import lava.proc.dense.process  # noqa: F401
            import lava.proc.lif.process  # noqa: F401
    except ImportError:
        raise BackendError("lava-nc is not installed: run `make venv`") from None
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"lava-nc failed to import: {_one_line(exc)}") from exc


@contextmanager
def _fork_start_method():
    """Lava calls `mp.set_start_method('fork')` when first imported
    (lava/magma/runtime/message_infrastructure/multiprocessing.py:47). That raises
    'context has already been set' as soon as anything fixed the start method before, even
    a plain `multiprocessing.get_start_method()`. Lava's workers rely on fork; if the method
    is already 'fork', let Lava's call be a no-op during its import."""
    current = mp.get_start_method(allow_none=True)
    if current is None or "lava.magma.runtime.message_infrastructure.multiprocessing" \
            in sys.modules:
        yield
        return
    if current != "fork":
        raise BackendError(f"Lava needs the 'fork' multiprocessing start method, but it is "
                           f"already set to '{current}'; import snncompile's Lava backend "
                           "before anything sets it")
    original = mp.set_start_method

    def set_start_method(method, force=False):
        if method != "fork" or force:
            original(method, force)

    mp.set_start_method = set_start_method
    try:
        yield
    finally:
        mp.set_start_method = original


LavaRun = Run
"""`run_lava` returns the shared `snncompile.backends.Run`: values (every neuron, local time,
our layout), boundary (values crossing the partition), wall_s (build, compile, run and
read-back)."""


# ------------------------------------------------------------------ layout helpers
def _natural_perm(shape: tuple[int, ...]) -> np.ndarray | None:
    """perm of a node of our `shape` in its Lava layout: (C, H, W) -> (W, H, C)."""
    if len(shape) != 3:
        return None
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 1, 0).ravel()


def _lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def _to_lava(x: np.ndarray, shape: tuple[int, ...], perm, lava_shape) -> np.ndarray:
    """Our layout (..., *shape) -> Lava layout (..., *lava_shape)."""
    lead = x.shape[: x.ndim - len(shape)]
    flat = x.reshape(lead + (-1,))
    if perm is not None:
        flat = flat[..., perm]
    return flat.reshape(lead + tuple(lava_shape))


# ------------------------------------------------------------------ lowering
def _check_graph(graph: Graph) -> None:
    bad = [n for n in graph.order() if not isinstance(graph.node(n), SUPPORTED)]
    if bad:
        node = graph.node(bad[0])
        hint = ("; the graph is float-stage: quantize it first" if graph.stage == "float"
                else "")
        raise UnsupportedError(f"{bad[0]}: {type(node).__name__} cannot run on Lava "
                               f"(supported node types: {_SUPPORTED_NAMES}){hint}")
    graph.validate()


def _check_inputs(graph: Graph, inputs: np.ndarray) -> np.ndarray:
    inp = graph.input_node()
    x = np.asarray(inputs)
    if x.ndim != 2 + len(inp.shape) or tuple(x.shape[2:]) != inp.shape:
        raise InputFileError(f"inputs: shape {x.shape} is not (N, T, *{inp.shape}) for "
                             f"input '{inp.name}'")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise InputFileError(f"inputs: shape {x.shape} has no samples or no time steps")
    if x.dtype == bool:
        x = x.astype(np.int32)
    if not np.issubdtype(x.dtype, np.integer):
        raise InputFileError(f"inputs: dtype {x.dtype} is not an integer type")
    lo, hi = inp.value_range()
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputFileError(f"inputs: values in [{x.min()}, {x.max()}] outside [{lo}, {hi}] "
                             f"for {inp.encoding} input '{inp.name}'")
    return x


@dataclass
class _Net:
    source: object  # the RingBuffer; any process of the network can run it
    lifs: dict  # FxLIF name -> (LIFReset process, perm, lava shape)
    recorders: dict  # FxLIF name -> record path
    values: dict  # boundary channel -> (record path, perm, lava shape, our shape)
    exceptions: dict  # process class and instance -> process model class
    procs: list  # every Lava process of the network
    graded: dict = field(default_factory=dict)  # FxSigmaDelta -> (path, perm, lava shape)
    bias_in: dict = field(default_factory=dict)  # bias-fed FxLIF -> its per-sample bias_mant


def _build(graph: Graph, x: np.ndarray, n_steps: int, record_dir: Path | None) -> _Net:
    """Create and connect the Lava processes for `graph`, fed with `x` (N, T, *in_shape)."""
    from lava.proc.conv.models import PyConvModelFixed
    from lava.proc.conv.process import Conv
    from lava.proc.dense.models import PyDelayDenseModelBitAcc, PyDenseModelBitAcc
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.source import PySendModelFixed, RingBuffer
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset
    from lava.proc.sdn.models import (PyDeltaModelFixed, PySigmaDeltaModelFixed,
                                      PySigmaModelFixed)
    from lava.proc.sdn.process import ActivationMode, Delta, Sigma, SigmaDelta
    from lava.utils.weightutils import SignMode

    from snncompile.backends.lava.procs import (DelayProcess, GateProcess, PyDelayModel, PyGateModel,
                             PySpikeRecorderModel, PyValueRecorderModel, SpikeRecorder,
                             ValueRecorder)

    sign_modes = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY,
                  "inhibitory": SignMode.INHIBITORY}
    n, t_len = x.shape[:2]
    outs: dict[str, tuple] = {}  # node -> (OutPort or port view, perm, lava shape)
    lifs, recorders, procs, values, graded, bias_in = {}, {}, [], {}, {}, {}
    source = None
    bias_fed = graph.bias_fed()
    for d in graph.nodes(FxDelay):  # loop delays first: their consumers come before them
        dshape = graph.shape(d.name)
        proc = DelayProcess(shape=_lava_shape(dshape) or (1,), steps=d.steps,
                            latency=d.latency, target_depth=d.target_depth, init=d.init,
                            period=int(t_len), name=d.name)
        procs.append(proc)
        outs[d.name] = (proc.s_out, _natural_perm(dshape), _lava_shape(dshape) or (1,))
    for name in graph.order():
        node = graph.node(name)
        if isinstance(node, FxDelay):
            port, perm, _ = outs[graph.inputs(name)[0]]
            if perm is not None and not np.array_equal(perm, outs[name][1]):
                raise UnsupportedError(f"{name}: input arrives in another layout")
            port.connect(_delay_proc(procs, name).s_in)
            continue
        shape = graph.shape(name)
        srcs = [outs[s] for s in graph.inputs(name)]
        if isinstance(node, Input) and node.is_bias:   # no spikes: written into bias_mant
            outs[name] = (None, _natural_perm(shape), _lava_shape(shape))
        elif isinstance(node, Input):
            perm, lshape = _natural_perm(shape), _lava_shape(shape)
            frames = _to_lava(x.reshape((n * t_len,) + shape), shape, perm, lshape)
            data = np.zeros(lshape + (n_steps,), dtype=np.int32)
            data[..., : n * t_len] = np.moveaxis(frames, 0, -1)
            source = RingBuffer(data=data)  # RingBuffer takes no name
            procs.append(source)
            outs[name] = (source.s_out, perm, lshape)
        elif isinstance(node, Output):
            outs[name] = srcs[0]
        elif isinstance(node, Flatten):
            port, perm, lshape = srcs[0]
            if len(lshape) > 1:
                port = port.flatten()
            outs[name] = (port, perm, (int(np.prod(lshape)),))
        elif isinstance(node, FxDense):
            if node.sign_mode not in sign_modes:
                raise UnsupportedError(f"{name}: sign_mode '{node.sign_mode}' is not one of "
                                       f"{', '.join(sign_modes)}")
            perm = _same_perm(name, srcs)
            w = np.asarray(node.weight, dtype=np.int64)
            if perm is not None:
                w = w[:, perm]
            kw = dict(weights=w.astype(np.int32), weight_exp=int(node.weight_exp),
                      num_weight_bits=int(node.num_weight_bits),
                      sign_mode=sign_modes[node.sign_mode],
                      num_message_bits=int(node.num_message_bits), name=name)
            if node.delay is not None:
                d = np.asarray(node.delay, dtype=np.int64)
                proc = DelayDense(delays=(d if perm is None else d[:, perm]).astype(int),
                                  **kw)
            else:
                proc = Dense(**kw)
            procs.append(proc)
            _connect(srcs, proc.s_in)
            outs[name] = (proc.a_out, None, shape)
        elif isinstance(node, FxConv2d):
            perm = _same_perm(name, srcs)
            in_shape = graph.shape(graph.inputs(name)[0])
            if srcs[0][2] != _lava_shape(in_shape):
                raise UnsupportedError(f"{name}: FxConv2d input must be an image (C, H, W)")
            w = np.asarray(node.weight, dtype=np.int32)[:, :, ::-1, ::-1]  # true conv
            proc = Conv(weight=np.ascontiguousarray(w.transpose(0, 3, 2, 1)),
                        input_shape=_lava_shape(in_shape),
                        stride=tuple(node.stride[::-1]), padding=tuple(node.padding[::-1]),
                        groups=int(node.groups),
                        num_message_bits=int(node.num_message_bits), name=name)
            if tuple(proc.output_shape) != _lava_shape(shape):
                raise BackendError(f"{name}: Lava Conv output {tuple(proc.output_shape)} "
                                   f"!= expected {_lava_shape(shape)}")
            procs.append(proc)
            _connect(srcs, proc.s_in)
            outs[name] = (proc.a_out, _natural_perm(shape), _lava_shape(shape))
        elif isinstance(node, FxLIF):
            perm = _same_perm(name, srcs)
            lshape = srcs[0][2] if srcs else _lava_shape(shape)
            depth = graph.depth(name)
            bias = _lava_bias(node, perm, lshape)
            if name in bias_fed:    # sample k's frame is bias_mant during its T steps
                bias_in[name] = _bias_frames(name, node, x, perm, lshape)
                bias = bias_in[name][0]
            proc = LIFReset(shape=lshape, du=int(node.du), dv=int(node.dv),
                            vth=int(node.vth), bias_mant=bias,
                            bias_exp=int(node.bias_exp), reset_interval=int(t_len),
                            reset_offset=(depth + 1) % int(t_len), name=name)
            procs.append(proc)
            if name not in bias_fed:
                _connect(srcs, proc.a_in)
            outs[name] = (proc.s_out, perm, lshape)
            lifs[name] = (proc, perm, lshape)
            if record_dir is not None:
                path = str(record_dir / f"lif{len(recorders)}.npy")
                rec = SpikeRecorder(shape=lshape, path=path, start=depth + 1,
                                    count=n * t_len)
                proc.s_out.connect(rec.a_in)
                procs.append(rec)
                recorders[name] = path
        elif isinstance(node, FxSigmaDelta):
            perm = _same_perm(name, srcs)
            lshape = srcs[0][2] if srcs else _lava_shape(shape)
            common = dict(shape=lshape, vth=int(node.vth), cum_error=bool(node.cum_error),
                          spike_exp=int(node.spike_exp), state_exp=int(node.state_exp))
            if node.role == "sigma":
                proc = Sigma(shape=lshape)
            elif node.role == "delta":
                proc = Delta(**common)
            else:
                proc = SigmaDelta(bias=_lava_bias(node, perm, lshape),
                                  act_mode=ActivationMode.RELU, **common)
            procs.append(proc)
            _connect(srcs, proc.a_in)
            outs[name] = (proc.s_out, perm, lshape)
            if record_dir is not None:
                path = str(record_dir / f"sd{len(graded)}.npy")
                rec = ValueRecorder(shape=lshape, path=path, start=graph.depth(name) + 1,
                                    count=n * t_len)
                proc.s_out.connect(rec.a_in)
                procs.append(rec)
                graded[name] = (path, perm, lshape)
        elif isinstance(node, FxCoproc):
            from snncompile.backends.lava.coproc import CoprocProcess
            cg = node.cgraph
            names = list(cg.inputs)
            outs_g = {o: cg.specs[o].shape for o in cg.outputs}
            proc = CoprocProcess(
                cg, in_shapes={k: src[2] for k, src in zip(names, srcs)},
                out_shapes={o: _lava_shape(sh) or (1,) for o, sh in outs_g.items()},
                reset_interval=int(t_len), reset_offset=(graph.depth(name) + 1) % int(t_len),
                in_perms={k: src[1] for k, src in zip(names, srcs)},
                out_perms={o: _natural_perm(sh) for o, sh in outs_g.items()}, name=name)
            procs.append(proc)
            for k, (port, _, _) in zip(names, srcs):
                port.connect(proc.in_port(k))
            outs[name] = (proc, None, None)
            if record_dir is not None:  # what crosses into the partition, for verify
                for src, (port, perm, lshape) in zip(graph.inputs(name), srcs):
                    path = str(record_dir / f"val{len(values)}.npy")
                    rec = ValueRecorder(shape=lshape, path=path,
                                        start=graph.depth(name) + 1, count=n * t_len)
                    port.connect(rec.a_in)
                    procs.append(rec)
                    values[inbound(name, src)] = (path, perm, lshape, graph.shape(src))
        elif isinstance(node, FxCoprocOut):
            proc = srcs[0][0]
            gshape = tuple(node.shape)
            perm, lshape = _natural_perm(gshape), _lava_shape(gshape) or (1,)
            port = proc.out_port(node.port)
            outs[name] = (port, perm, lshape)
            if record_dir is not None:
                depth = graph.depth(name)
                path = str(record_dir / f"val{len(values)}.npy")
                rec = ValueRecorder(shape=lshape, path=path, start=depth + 1,
                                    count=n * t_len)
                port.connect(rec.a_in)
                procs.append(rec)
                values[name] = (path, perm, lshape, gshape)
        elif isinstance(node, FxGate):
            (a_port, a_perm, a_lshape), (g_port, g_perm, g_lshape) = srcs
            gshape = graph.shape(graph.inputs(name)[1])
            proc = GateProcess(shape=a_lshape, gain_shape=g_lshape,
                               gidx=_gain_index(shape, a_perm, gshape, g_perm, node.upsample),
                               shift=int(node.shift), relu=bool(node.relu),
                               rounding=node.rounding, name=name)
            procs.append(proc)
            a_port.connect(proc.a_in)
            g_port.connect(proc.g_in)
            outs[name] = (proc.a_out, a_perm, a_lshape)
        else:  # pragma: no cover - _check_graph rejects these
            raise UnsupportedError(f"{name}: {type(node).__name__} is not supported")
    models = {RingBuffer: PySendModelFixed, Dense: PyDenseModelBitAcc,
              Conv: PyConvModelFixed, LIFReset: PyLifResetModelBitAcc,
              SpikeRecorder: PySpikeRecorderModel, ValueRecorder: PyValueRecorderModel,
              GateProcess: PyGateModel, DelayProcess: PyDelayModel,
              DelayDense: PyDelayDenseModelBitAcc, SigmaDelta: PySigmaDeltaModelFixed,
              Delta: PyDeltaModelFixed, Sigma: PySigmaModelFixed}
    # Pin the bit-accurate models. Keyed by class (what RunConfig.select reads) AND by
    # instance: the compiler's own lookup (lava/magma/compiler/compiler_graphs.py:1031,
    # `proc in run_cfg.exception_proc_model_map`) tests the instance, and when it misses it
    # scans the process's directory, exec'ing every .py there as a top-level module.
    exceptions = dict(models)
    for proc in procs:
        if type(proc) in models:
            exceptions[proc] = models[type(proc)]
    if any(isinstance(graph.node(n), FxCoproc) for n in graph.order()):
        from snncompile.backends.lava.coproc import model_map
        exceptions.update(model_map(procs))
    if source is None:     # a bias-driven input: no source process, run any of them
        source = procs[0]
    return _Net(source, lifs, recorders, values, exceptions, procs, graded, bias_in)


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
    return _to_lava(total, node.shape, perm, lshape).astype(np.int32)


def _lava_bias(node, perm, lshape) -> np.ndarray:
    """A neuron node's per-neuron bias mantissas, int32 in its Lava layout."""
    bias = np.broadcast_to(np.asarray(node.bias_mant, dtype=np.int64), node.shape)
    return _to_lava(np.ascontiguousarray(bias), node.shape, perm, lshape).astype(np.int32)


def _delay_proc(procs, name):
    return next(p for p in procs if getattr(p, "name", None) == name)


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


def _same_perm(name: str, srcs: list[tuple]):
    perms = [s[1] for s in srcs]
    for p in perms[1:]:
        if (p is None) != (perms[0] is None) or (p is not None
                                                 and not np.array_equal(p, perms[0])):
            raise UnsupportedError(f"{name}: inputs arrive in different layouts")
    return perms[0] if perms else None


def _connect(srcs: list[tuple], in_port) -> None:
    for port, _, _ in srcs:  # several OutPorts into one InPort are summed by Lava
        port.connect(in_port)


# ------------------------------------------------------------------ running
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _run_steps(net: _Net, n_steps: int, progress: bool, desc: str = "lava") -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=net.exceptions)
    if not progress:
        net.source.run(condition=RunSteps(num_steps=n_steps), run_cfg=cfg)
        return
    from snncompile.progress import bar as progress_bar

    chunk = max(1, math.ceil(n_steps / 20))  # ~5% per update
    with progress_bar(n_steps, desc, "step") as bar:
        done = 0
        while done < n_steps:
            k = min(chunk, n_steps - done)
            net.source.run(condition=RunSteps(num_steps=k), run_cfg=cfg)
            done += k
            bar.update(k)


@contextmanager
def _session():
    """Yields a list to put the built `_Net` in; always shuts Lava down on the way out and
    turns Lava's failures into one-line BackendErrors."""
    box: list[_Net] = []
    ok = False
    try:
        yield box
        ok = True
    except (UnsupportedError, BackendError, InputFileError):
        raise
    except Exception as exc:  # Lava raises bare Exceptions, its workers' ones re-wrapped
        detail = _worker_error(box[0]) if box else None
        raise BackendError(f"lava run failed: {detail or _one_line(exc)}") from exc
    finally:
        if box:
            _shutdown(box[0], graceful=ok)


def _runtime(net: _Net):
    return getattr(net.source, "runtime", None) if net.source is not None else None


def _worker_error(net: _Net) -> str | None:
    """The first exception a Lava worker raised (Lava itself only says 'See output above')."""
    try:
        for actor in _runtime(net)._messaging_infrastructure.actors:
            if actor.exception:
                return _one_line(actor.exception[0])
    except Exception:  # best effort: private Lava internals
        return None
    return None


def _shutdown(net: _Net, graceful: bool) -> None:
    """Stop the Lava runtime. After a failure, Lava's Runtime.stop() would wait forever for
    TERMINATED answers from runtime services that already exited
    (lava/magma/runtime/runtime.py:478-492), so terminate what is left and free the shared
    memory instead; then mark the runtime stopped so that AbstractProcess.__del__ (which
    calls stop()) cannot hang at garbage collection either."""
    rt = _runtime(net)
    if rt is None:
        return
    if graceful:
        try:
            net.source.stop()
            return
        except Exception:  # fall through to the forced path
            pass
    try:
        infra = rt._messaging_infrastructure
        for actor in infra.actors:
            if not getattr(actor, "_is_done", True):
                if actor.is_alive():
                    actor.terminate()
                actor.join()
        if infra.smm is not None:
            infra.smm.shutdown()
        rt._watchdog_manager.stop()
    finally:
        rt._is_started = False
        rt._is_running = False


def run_lava(graph: Graph, inputs: np.ndarray, *, progress: bool = False) -> LavaRun:
    """Run all samples of `inputs` (N, T, *input_shape) in one Lava run, back to back.

    Returns every FxLIF's spikes in local time and our (C, H, W) layout. Raises
    UnsupportedError for graphs with nodes other than Input, FxDense, FxConv2d, FxLIF,
    Flatten, Output; BackendError when Lava is missing or fails.

    Example::

        run_lava(graph, np.zeros((2, 8, 784), np.int32)).spikes["lif1"].shape  # (2, 8, 100)
    """
    _check_graph(graph)
    x = _check_inputs(graph, inputs)
    require_lava()
    if len(x) > 1 and any(getattr(graph.node(k), "delay", None) is not None
                          or isinstance(graph.node(k), FxSigmaDelta) for k in graph.order()):
        # delayed messages of one sample would land in the next sample's window of a
        # chained run, and sigma-delta neurons have no reset: run each sample on its own
        start = time.perf_counter()
        runs = []
        for i in _progress(range(len(x)), progress, "lava (one run per sample)"):
            runs.append(run_lava(graph, x[i:i + 1]))
        spikes = {k: np.concatenate([r.spikes[k] for r in runs]) for k in runs[0].spikes}
        boundary = {k: np.concatenate([r.boundary[k] for r in runs])
                    for k in (runs[0].boundary or {})}
        return Run(values=spikes, samples=len(x), steps=x.shape[1],
                   wall_s=time.perf_counter() - start, backend="lava", boundary=boundary)
    from snncompile.backends.lava.procs import read_record  # imports Lava

    n, t_len = x.shape[:2]
    max_depth = max(graph.depth(name) for name in graph.order())
    n_steps = n * t_len + max_depth
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="snncompile-lava-") as tmp:
        with _session() as box:
            box.append(_build(graph, x, n_steps, Path(tmp)))
            if box[0].bias_in:
                _run_bias_samples(box[0], n, t_len, max_depth, progress)
            else:
                _run_steps(box[0], n_steps, progress)
            if any(isinstance(graph.node(k), FxCoproc) for k in graph.order()):
                from snncompile.backends.lava.coproc import check_errors
                check_errors(box[0].procs)
        from snncompile.backends.lava.procs import read_values
        net = box[0]

        def back(name, path, read, perm, lshape, shape, what):
            """A recorder's file -> (N, T, *shape) in our layout."""
            if not Path(path).exists():
                raise BackendError(f"{name}: Lava {what} record missing after the run")
            rec = read(path, lshape).reshape(n * t_len, -1)
            ours = rec if perm is None else _unpermute(rec, perm)
            return ours.reshape((n, t_len) + tuple(shape))
        spikes = {name: back(name, path, read_record, *net.lifs[name][1:], graph.shape(name),
                             "spike") for name, path in net.recorders.items()}
        spikes.update({name: back(name, path, read_values, perm, lshape, graph.shape(name),
                                  "graded-spike").astype(np.int32)
                       for name, (path, perm, lshape) in net.graded.items()})
        boundary = {name: back(name, path, read_values, perm, lshape, shape,
                               "value").astype(np.int64)
                    for name, (path, perm, lshape, shape) in net.values.items()}
    return Run(values=spikes, samples=n, steps=t_len, wall_s=time.perf_counter() - start,
               backend="lava", boundary=boundary)


def _run_bias_samples(net: _Net, n: int, t_len: int, tail: int, progress: bool) -> None:
    """Run sample after sample, writing each one's frame into the bias-fed LIFs' bias_mant
    between them (the layers reset at each sample's start); then the pipeline's tail."""
    for i in _progress(range(n), progress, "lava (bias input, per sample)"):
        if i:
            for name, biases in net.bias_in.items():
                net.lifs[name][0].bias_mant.set(biases[i])
        _run_steps(net, t_len, False)
    if tail:
        _run_steps(net, tail, False)


def _progress(it, on: bool, desc: str):
    if not on:
        return it
    from snncompile.progress import track
    return track(it, desc, "sample")


def _unpermute(flat: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Lava flat order -> our flat order along the last axis."""
    out = np.empty_like(flat)
    out[..., perm] = flat
    return out


def lava_state(graph: Graph, sample: np.ndarray, node: str,
               local_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of FxLIF `node` right after its local step `local_step` for one sample
    (T, *input_shape), read from Lava with `Var.get()` (slow; for divergence diagnostics).

    Example::

        u, v = lava_state(graph, inputs[0], "lif1", 3)  # each of lif1's shape, int64
    """
    _check_graph(graph)
    if node not in graph or not isinstance(graph.node(node), FxLIF):
        raise UnsupportedError(f"{node}: not an FxLIF node of the graph")
    x = _check_inputs(graph, np.asarray(sample)[None])
    t_len = x.shape[1]
    if not 0 <= local_step < t_len:
        raise InputFileError(f"{node}: local step {local_step} outside [0, {t_len})")
    require_lava()
    depth = graph.depth(node)
    n_steps = depth + 1 + local_step
    with _session() as box:
        box.append(_build(graph, x, t_len + depth, None))
        _run_steps(box[0], n_steps, progress=False)
        proc, perm, _ = box[0].lifs[node]
        u, v = np.asarray(proc.u.get()), np.asarray(proc.v.get())
    shape = graph.shape(node)
    flat = [a.reshape(-1).astype(np.int64) for a in (u, v)]
    if perm is not None:
        flat = [_unpermute(a, perm) for a in flat]
    return flat[0].reshape(shape), flat[1].reshape(shape)


class LavaBackend:
    """The `lava` backend: the graph lowered to Lava processes, Loihi2SimCfg fixed_pt."""

    name = "lava"
    description = "Lava's bit-accurate CPU models (Loihi2SimCfg fixed_pt)"
    is_lava = True

    def unsupported(self, graph, source=None) -> str | None:
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            **options) -> Run:
        return run_lava(graph, inputs, progress=progress)

    def lif_state(self, graph, sample, node, local_step, *, numerics=None, source=None):
        """(u, v) of FxLIF `node` after `local_step` of one sample (`lava_state`)."""
        return lava_state(graph, sample, node, local_step)


register_backend(LavaBackend())
