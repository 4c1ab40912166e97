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

    >>> write_nir(graph, "model.nir")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from snncompile.errors import UnsupportedError
from snncompile.ir import LIF, AvgPool2d, Conv2d, Dense, Flatten, Graph, Input, Output, SumPool2d

NO_DECAY = 1e-12


def export_nir(graph: Graph, dt: float = 1e-3):
    """The float graph as a `nir.NIRGraph` (Input, Linear, Conv2d, pools, Flatten,
    CubaLIF, Output), node names kept."""
    import nir

    graph.validate()
    nodes, edges = {}, []
    for name in graph.order():
        node = graph.node(name)
        shape = np.array(graph.shape(name), dtype=np.int64)
        in_shape = (tuple(graph.shape(graph.inputs(name)[0])) if graph.inputs(name) else ())
        if isinstance(node, Input):
            nodes[name] = nir.Input(input_type={"input": shape})
        elif isinstance(node, Dense):
            nodes[name] = nir.Linear(weight=np.asarray(node.weight, np.float32))
            if node.delay is not None:  # per input column -> a Delay in front of it
                d = np.asarray(node.delay)
                if not (d == d[:1]).all():
                    raise UnsupportedError(f"{name}: per-synapse delays that differ within "
                                           "a column have no NIR form (NIR delays are per "
                                           "input)")
                nodes[f"{name}_delay"] = nir.Delay(delay=(d[0] * dt).astype(np.float32))
                edges += [(src, f"{name}_delay") for src in graph.inputs(name)]
                edges.append((f"{name}_delay", name))
                continue
        elif isinstance(node, Conv2d):
            nodes[name] = nir.Conv2d(
                input_shape=tuple(in_shape[1:]), weight=np.asarray(node.weight, np.float32),
                stride=tuple(node.stride), padding=tuple(node.padding), dilation=(1, 1),
                groups=node.groups, bias=np.zeros(node.weight.shape[0], np.float32))
        elif isinstance(node, (SumPool2d, AvgPool2d)):  # AvgPool2d subclasses SumPool2d
            cls = nir.AvgPool2d if isinstance(node, AvgPool2d) else nir.SumPool2d
            k = np.array(node.kernel, dtype=np.int64)
            nodes[name] = cls(kernel_size=k, stride=k.copy(), padding=np.zeros(2, np.int64))
        elif isinstance(node, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape, np.int64)},
                                      start_dim=0, end_dim=-1)
        elif isinstance(node, LIF):
            nodes[name] = _cubalif(node, dt)
        elif isinstance(node, Output):
            nodes[name] = nir.Output(output_type={"output": shape})
        else:
            raise UnsupportedError(f"{name}: {type(node).__name__} cannot be exported to NIR; "
                                   "export the float graph (Build.float_graph)")
        edges += [(src, name) for src in graph.inputs(name)]
    meta = {"exporter": "snncompile", "dt": float(dt), "discretisation": "forward-euler"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def _cubalif(node: LIF, dt: float):
    import nir

    shape = tuple(node.shape)
    du = max(float(node.du), NO_DECAY)
    dv = max(float(node.dv), NO_DECAY)
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    bias = np.broadcast_to(np.asarray(node.bias, np.float64), shape)
    return nir.CubaLIF(tau_syn=full(dt / du), tau_mem=full(dt / dv), r=full(1.0 / dv),
                       v_leak=bias / dv, v_threshold=full(node.vth), v_reset=full(0.0),
                       w_in=full(1.0 / du))


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
