"""Export a float `Graph` as a NIR graph (the inverse of `frontends.nir_import`).

Each LIF(du, dv, vth, bias) becomes a CubaLIF whose forward-Euler discretisation with step
`dt` (see `snncompile.formats.nir.read`) is that LIF exactly:

    tau_syn = dt / du, w_in = 1 / du      (current gain du * w_in = 1)
    tau_mem = dt / dv, r = 1 / dv         (voltage gain dv * r = 1)
    v_threshold = vth, v_leak = bias / dv, v_reset = 0

NIR cannot state a gain of 1 with an infinite time constant, so du = 0 or dv = 0 (no decay)
is written as the decay fraction `NO_DECAY` (1e-12): tau = dt * 1e12. The difference is
below float32 resolution of every state the model can reach. Every parameter is written as
an array of the layer's shape: `nir.write` (nir 1.0.8) fails on 0-d arrays with gzip.

Each float node type's NIR form is its writer in the `NIR_EXPORT` table; node types without
one (fixed-stage nodes, attention) are refused in one line naming the node.

    >>> write_nir(graph, "model.nir")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from snncompile.errors import UnsupportedError
from snncompile.ir import (LI, LIF, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, Graph, Input,
                           Output, SumPool2d, RecDense)
from snncompile.ir.registry import Rules

NO_DECAY = 1e-12

NIR_EXPORT = Rules("NIR export")
"""Float node type -> writer `(node, out)` adding the NIR node(s) that node becomes."""


class _NirOut:
    """The NIR graph being written: its nodes and edges, and the float graph read."""

    def __init__(self, graph: Graph, dt: float):
        self.graph, self.dt = graph, dt
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []

    def shape(self, name: str) -> np.ndarray:
        return np.array(self.graph.shape(name), dtype=np.int64)

    def in_shape(self, name: str) -> tuple:
        ins = self.graph.inputs(name)
        return tuple(self.graph.shape(ins[0])) if ins else ()

    def add(self, name: str, nir_node) -> None:
        """`nir_node` as node `name`, fed by the same nodes as in the float graph."""
        self.nodes[name] = nir_node
        self.edges += [(src, name) for src in self.graph.inputs(name)]


def export_nir(graph: Graph, dt: float = 1e-3):
    """The float graph as a `nir.NIRGraph` (one node per float node, by NIR_EXPORT's
    writers: Input, Linear, Conv2d, Conv1d, pools, Flatten, CubaLIF, Output), node names kept."""
    import nir

    graph.validate()
    out = _NirOut(graph, dt)
    for name in graph.order():
        node = graph.node(name)
        if not NIR_EXPORT.supports(node):
            raise UnsupportedError(f"{NIR_EXPORT.refusal(node)}; export the float graph "
                                   "(Build.float_graph)")
        NIR_EXPORT.rule(node)(node, out)
    meta = {"exporter": "snncompile", "dt": float(dt), "discretisation": "forward-euler"}
    return nir.NIRGraph(nodes=out.nodes, edges=out.edges, metadata=meta, type_check=False)


@NIR_EXPORT.register(Input)
def _input(node: Input, out: _NirOut) -> None:
    import nir
    out.add(node.name, nir.Input(input_type={"input": out.shape(node.name)}))


@NIR_EXPORT.register(Dense)
def _linear(node: Dense, out: _NirOut) -> None:
    """nir.Linear (nir.Affine with a bias); per-input-column delays become a nir.Delay in
    front of it."""
    import nir
    name = node.name
    w = np.asarray(node.weight, np.float32)
    layer = (nir.Linear(weight=w) if node.bias is None else
             nir.Affine(weight=w, bias=np.asarray(node.bias, np.float32)))
    if node.delay is None:
        out.add(name, layer)
        return
    out.nodes[name] = layer
    d = np.asarray(node.delay)
    if not (d == d[:1]).all():
        raise UnsupportedError(f"{name}: per-synapse delays that differ within a column "
                               "have no NIR form (NIR delays are per input)")
    out.nodes[f"{name}_delay"] = nir.Delay(delay=(d[0] * out.dt).astype(np.float32))
    out.edges += [(src, f"{name}_delay") for src in out.graph.inputs(name)]
    out.edges.append((f"{name}_delay", name))


@NIR_EXPORT.register(RecDense)
def _recurrent(node: RecDense, out: _NirOut) -> None:
    """A recurrent layer as NIR writes one (snnTorch's RLeaky): a nir.Linear fed by the
    neuron and feeding it back, a cycle that the importer reads as one step of delay."""
    import nir
    out.add(node.name, nir.Linear(weight=np.asarray(node.weight, np.float32)))


@NIR_EXPORT.register(Conv2d)
def _conv2d(node: Conv2d, out: _NirOut) -> None:
    import nir
    out.add(node.name, nir.Conv2d(
        input_shape=tuple(out.in_shape(node.name)[1:]),
        weight=np.asarray(node.weight, np.float32), stride=tuple(node.stride),
        padding=tuple(node.padding), dilation=(1, 1), groups=node.groups,
        bias=(np.zeros(node.weight.shape[0], np.float32) if node.bias is None
              else np.asarray(node.bias, np.float32))))


@NIR_EXPORT.register(Conv1d)
def _conv1d(node: Conv1d, out: _NirOut) -> None:
    """nir.Conv1d (input_shape: the length L of the (C, L) input), dilation kept."""
    import nir
    out.add(node.name, nir.Conv1d(
        input_shape=int(out.in_shape(node.name)[1]),
        weight=np.asarray(node.weight, np.float32), stride=int(node.stride),
        padding=int(node.padding), dilation=int(node.dilation), groups=int(node.groups),
        bias=(np.zeros(node.weight.shape[0], np.float32) if node.bias is None
              else np.asarray(node.bias, np.float32))))


def _pool(nir_class: str):
    """Writer of a pooling node as `nir.<nir_class>` (stride = kernel, no padding)."""
    def write(node: SumPool2d, out: _NirOut) -> None:
        import nir
        k = np.array(node.kernel, dtype=np.int64)
        out.add(node.name, getattr(nir, nir_class)(kernel_size=k, stride=k.copy(),
                                                   padding=np.zeros(2, np.int64)))
    return write


NIR_EXPORT.add(SumPool2d, _pool("SumPool2d"))
NIR_EXPORT.add(AvgPool2d, _pool("AvgPool2d"))


@NIR_EXPORT.register(Flatten)
def _flatten(node: Flatten, out: _NirOut) -> None:
    import nir
    out.add(node.name, nir.Flatten(
        input_type={"input": np.array(out.in_shape(node.name), np.int64)},
        start_dim=0, end_dim=-1))


@NIR_EXPORT.register(LIF)
def _lif(node: LIF, out: _NirOut) -> None:
    """NIR records neither the reset nor the compare: a reader assumes reset to v_reset
    and v > v_threshold, so any other option is refused rather than written wrongly."""
    if not node.lava_lif:
        raise UnsupportedError(f"{node.name}: LIF reset '{node.reset}' / fire_at "
                               f"'{node.fire_at}' cannot be written to NIR: CubaLIF "
                               "records only v_reset, and readers assume reset to it "
                               "and v > v_threshold")
    out.add(node.name, _cubalif(node, out.dt))


@NIR_EXPORT.register(LI)
def _li(node: LI, out: _NirOut) -> None:
    """A leaky-integrator readout in the forward-Euler reading of NIR (the one the
    importer's generic convention reads back): du = 1 -> LI(tau = dt/dv, r = 1/dv,
    v_leak = bias/dv); du < 1 -> CubaLI with tau_syn = dt/du and w_in = 1/du as well. NIR
    has no initial state and no decision rule: an offset is refused in one line, the
    decision is not written."""
    import nir

    offset = np.asarray(node.offset, np.float64)
    if np.any(offset != 0):
        raise UnsupportedError(f"{node.name}: LI offset (initial voltage, up to "
                               f"{float(np.abs(offset).max()):.4g}) cannot be written to NIR, "
                               "which has no initial state")
    shape = tuple(node.shape)
    dv = max(float(node.dv), NO_DECAY)
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    v_leak = np.broadcast_to(np.asarray(node.bias, np.float64), shape) / dv
    if node.du >= 1.0:
        out.add(node.name, nir.LI(tau=full(out.dt / dv), r=full(1.0 / dv), v_leak=v_leak))
        return
    du = max(float(node.du), NO_DECAY)
    out.add(node.name, nir.CubaLI(tau_syn=full(out.dt / du), tau_mem=full(out.dt / dv),
                                  r=full(1.0 / dv), v_leak=v_leak, w_in=full(1.0 / du)))


@NIR_EXPORT.register(Output)
def _output(node: Output, out: _NirOut) -> None:
    import nir
    out.add(node.name, nir.Output(output_type={"output": out.shape(node.name)}))


def _cubalif(node: LIF, dt: float):
    import nir

    shape = tuple(node.shape)
    # NIR's parameters are per neuron: per-neuron du, dv, vth (PLIF) are written as they are
    du, dv, vth = (np.broadcast_to(np.asarray(getattr(node, f), np.float64), shape)
                   for f in ("du", "dv", "vth"))
    du, dv = np.maximum(du, NO_DECAY), np.maximum(dv, NO_DECAY)
    bias = np.broadcast_to(np.asarray(node.bias, np.float64), shape)
    return nir.CubaLIF(tau_syn=dt / du, tau_mem=dt / dv, r=1.0 / dv,
                       v_leak=bias / dv, v_threshold=vth.copy(), v_reset=np.zeros(shape),
                       w_in=1.0 / du)


def write_nir(graph: Graph, path: str | Path, dt: float = 1e-3) -> None:
    """Export `graph` (see `export_nir`) and write it to a NIR (HDF5) file."""
    write_nir_graph(export_nir(graph, dt), path)


def write_nir_graph(nirgraph, path: str | Path) -> None:
    """`nir.write` with gzip, falling back to no compression when a node holds 0-d arrays
    (nir 1.0.8: h5py refuses filters on scalar datasets, as graphs from norse have)."""
    import nir

    try:
        nir.write(path, nirgraph)
    except TypeError as exc:
        if "Scalar datasets" not in str(exc):
            raise
        nir.write(path, nirgraph, compression=None)
