"""Run a fixed-stage graph on Lava's bit-accurate CPU simulation (`Loihi2SimCfg`, fixed_pt).

The graph is lowered by the rules of `lower.LOWER` (one per node type; see lower.py for
what each node becomes, the layout and the recorders) and run by `session.lava_session`,
which always shuts Lava down. All samples run back to back in one Lava run (LIFReset
zeroes each sample's state), except graphs with delayed or recurrent synapses or nodes
that never reset (`runs_in_global_time`: sigma-delta), which run one sample per Lava run.

Time (`snncompile.ir.timing`): sample n's frame t leaves the RingBuffer at Lava step
n*T + t + 1; a node at depth d computes its local step t of sample n at Lava step
n*T + t + lava_start(d); the run lasts `stream_steps(N)` = N*T + max depth steps.

Example::

    run = run_lava(graph, inputs)          # inputs: (N, T, *input_shape) integers
    run.spikes["lif1"].shape               # (N, T, *shape of lif1), bool, local time
"""
from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snncompile.backends.base import Run, register_backend
from snncompile.backends.lava.layout import from_lava
from snncompile.backends.lava.lower import LOWER, LavaNet, build, check_graph
from snncompile.backends.lava.session import (lava_session, over_samples, require_lava,
                                              retry_stalled)
from snncompile.errors import InputFileError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.timing import timing

__all__ = ["LOWER", "LavaBackend", "LavaRun", "SUPPORTED", "lava_state", "require_lava",
           "run_lava"]

SUPPORTED = LOWER.types
"""The node types Lava can run: those with a lowering rule (older name)."""

LavaRun = Run
"""`run_lava` returns the shared `snncompile.backends.Run`: values (every neuron, local time,
our layout), boundary (values crossing the partition), wall_s (build, compile, run and
read-back)."""


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


def _one_sample_per_run(graph: Graph) -> bool:
    """Delayed messages of one sample would land in the next sample's window of a chained
    run (synaptic delays, recurrent synapses), and nodes running in global time
    (sigma-delta) have no reset."""
    return any(getattr(graph.node(k), "delay", None) is not None
               or graph.node(k).runs_in_global_time or _recurrent(graph.node(k))
               for k in graph.order())


def _recurrent(node) -> bool:
    """A recurrent synapse (a back edge that is a synapse) delivers a sample's last spikes
    at the next sample's first step, after LIFReset zeroed u and v."""
    return node.is_synapse and node.closes_loop


def run_lava(graph: Graph, inputs: np.ndarray, *, progress: bool = False) -> LavaRun:
    """Run all samples of `inputs` (N, T, *input_shape) in Lava (one run, back to back,
    unless `_one_sample_per_run`).

    Returns every neuron's values in local time and our (C, H, W) layout, and the values
    crossing the co-processor boundary. Raises UnsupportedError, before Lava starts, for a
    node type without a Lava lowering (`LOWER.types` lists those with one); BackendError
    when Lava is missing or fails.

    Example::

        run_lava(graph, np.zeros((2, 8, 784), np.int32)).spikes["lif1"].shape  # (2, 8, 100)
    """
    check_graph(graph)
    x = _check_inputs(graph, inputs)
    require_lava()
    if len(x) > 1 and _one_sample_per_run(graph):
        return _run_each_sample(graph, x, progress)
    n, t_len = x.shape[:2]
    n_steps = timing(graph, t_len).stream_steps(n)
    start = time.perf_counter()

    def job():
        with tempfile.TemporaryDirectory(prefix="snncompile-lava-") as tmp:
            with lava_session(graph=graph) as session:
                net = build(graph, x, n_steps, Path(tmp))
                session.start(net.runner, net.models)
                if net.bias_in:
                    _run_bias_samples(session, net, progress)
                else:
                    session.run(n_steps, progress=progress)
                for check in net.checks:
                    check()
            return net.read_back()
    values, boundary = retry_stalled(job, "lava run")
    return Run(values=values, samples=n, steps=t_len, wall_s=time.perf_counter() - start,
               backend="lava", boundary=boundary)


def _run_each_sample(graph: Graph, x: np.ndarray, progress: bool) -> Run:
    """`run_lava` on each sample on its own, the results concatenated."""
    start = time.perf_counter()
    runs = [run_lava(graph, x[i:i + 1])
            for i in over_samples(range(len(x)), progress, "lava (one run per sample)")]
    values = {k: np.concatenate([r.values[k] for r in runs]) for k in runs[0].values}
    boundary = {k: np.concatenate([r.boundary[k] for r in runs])
                for k in (runs[0].boundary or {})}
    return Run(values=values, samples=len(x), steps=x.shape[1],
               wall_s=time.perf_counter() - start, backend="lava", boundary=boundary)


def _run_bias_samples(session, net: LavaNet, progress: bool) -> None:
    """Run sample after sample, writing each one's frame into the bias-fed LIFs' bias_mant
    between them (the layers reset at each sample's start); then the pipeline's tail."""
    for i in over_samples(range(net.samples), progress, "lava (bias input, per sample)"):
        if i:
            for name, biases in net.bias_in.items():
                net.neurons[name][0].bias_mant.set(biases[i])
        session.run(net.steps)
    if net.timing.max_depth:   # the last sample's tail through the pipeline
        session.run(net.timing.max_depth)


def lava_state(graph: Graph, sample: np.ndarray, node: str,
               local_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of FxLIF `node` right after its local step `local_step` for one sample
    (T, *input_shape), read from Lava with `Var.get()` (slow; for divergence diagnostics).

    Example::

        u, v = lava_state(graph, inputs[0], "lif1", 3)  # each of lif1's shape, int64
    """
    check_graph(graph)
    if node not in graph or not graph.node(node).records_uv:
        raise UnsupportedError(f"{node}: not an FxLIF node of the graph")
    x = _check_inputs(graph, np.asarray(sample)[None])
    t_len = x.shape[1]
    if not 0 <= local_step < t_len:
        raise InputFileError(f"{node}: local step {local_step} outside [0, {t_len})")
    require_lava()
    when = timing(graph, t_len)

    def job():
        with lava_session(graph=graph) as session:
            net = build(graph, x, when.stream_steps(1), None)
            session.start(net.runner, net.models)
            session.run(when.lava_start(node) + local_step)
            proc, perm, _ = net.neurons[node]
            return np.asarray(proc.u.get()), np.asarray(proc.v.get()), perm
    u, v, perm = retry_stalled(job, f"lava state of {node}")
    shape = graph.shape(node)
    flat = [from_lava(a.reshape(-1).astype(np.int64), perm) for a in (u, v)]
    return flat[0].reshape(shape), flat[1].reshape(shape)


class LavaBackend:
    """The `lava` backend: the graph lowered to Lava processes, Loihi2SimCfg fixed_pt."""

    name = "lava"
    description = "Lava's bit-accurate CPU models (Loihi2SimCfg fixed_pt)"
    is_lava = True

    def unsupported(self, graph, source=None) -> str | None:
        """The first node without a Lava lowering, in one line (None: all have one)."""
        for name in graph.order():
            if not LOWER.supports(graph.node(name)):
                return LOWER.refusal(graph.node(name))
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            **options) -> Run:
        return run_lava(graph, inputs, progress=progress)

    def lif_state(self, graph, sample, node, local_step, *, numerics=None, source=None):
        """(u, v) of FxLIF `node` after `local_step` of one sample (`lava_state`)."""
        return lava_state(graph, sample, node, local_step)


register_backend(LavaBackend())


# ------------------------------------------------------------------ older private API
@dataclass
class _Net:
    """Kept for callers that build their own processes (tests/test_coproc.py): the
    process to run the network with and the pinned models; use `lava_session` instead."""

    source: object
    lifs: dict
    recorders: dict
    values: dict
    exceptions: dict
    procs: list


@contextmanager
def _session():
    """Older form of `lava_session`: yields a list to append the `_Net` to; shuts it down
    on the way out (forced after a failure)."""
    box: list[_Net] = []
    with lava_session() as session:
        try:
            yield box
        finally:
            if box:
                session.start(box[0].source, box[0].exceptions)
