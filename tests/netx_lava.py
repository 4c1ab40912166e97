"""Run a netx HDF5 file with lava-dl's own loader (`lava.lib.dl.netx.hdf5.Network`) in
Lava's bit-accurate simulation (`Loihi2SimCfg(select_tag='fixed_pt')`) and return each
netx block's output in our local time and (C, H, W) layout: the independent side of the
netx equivalence tests.

Alignment (see `snncompile.frontends.netx_import`): a RingBuffer source sends input frame
t at Lava step t + 1; a block at depth d (d synapses from the input) emits its output for
local step k at Lava step k + d + 1, i.e. sink column k + d.

A network whose input layer has an SDNN neuron: netx builds that layer's Delta encoder but
never wires its `inp` port (lava/lib/dl/netx/blocks/process.py:103-106), so it runs with
`skip_layers=1` and the frames go through a Delta process created from netx's own
`Network.get_neuron_params(..., input=True)` for that layer.
"""
from __future__ import annotations

import h5py
import numpy as np

from snncompile.frontends.netx_import import lava_network_kwargs
from snncompile.ir import NEURON_TYPES, FxSigmaDelta, Graph


def run_netx(path, graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """x: (T, *input shape CHW) integers. Returns {graph neuron name: (T, *shape)}: bool
    spikes for CUBA blocks, int graded values for SDNN blocks."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.lib.dl.netx.utils import NetDict
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    neurons = graph.nodes(NEURON_TYPES)
    depth = {n.name: graph.depth(n.name) for n in neurons}
    steps = x.shape[0]
    total = steps + max(depth.values())
    net = Network(net_config=str(path), **lava_network_kwargs(graph, steps))
    encoder = None
    if isinstance(neurons[0], FxSigmaDelta) and neurons[0].role == "delta":
        params = dict(Network.get_neuron_params(NetDict(str(path))["layer"][0]["neuron"],
                                                input=True))
        proc = params.pop("neuron_proc")
        params.pop("num_message_bits", None)
        encoder = proc(shape=net.inp.shape, **params)
    blocks = ([encoder] if encoder is not None else []) + list(net.layers)
    assert len(blocks) == len(neurons), (len(blocks), [n.name for n in neurons])
    inp_shape = net.inp.shape
    data = np.zeros(inp_shape + (total,), np.int32)
    frames = x.reshape(steps, *graph.input_node().shape)
    flat = frames.reshape(steps, -1) if len(inp_shape) == 1 else \
        frames.transpose(0, *range(frames.ndim - 1, 0, -1))      # (T, C, H, W) -> (T, W, H, C)
    data[..., :steps] = np.moveaxis(flat, 0, -1)
    source = Source(data=data)
    if encoder is not None:
        source.s_out.connect(encoder.a_in)
        encoder.s_out.connect(net.inp)
    else:
        source.s_out.connect(net.inp)
    sinks = []
    for block in blocks:
        port = block.s_out if block is encoder else block.out
        sink = Sink(shape=port.shape, buffer=total)
        port.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(condition=RunSteps(num_steps=total),
                run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        raw = [sink.data.get() for sink in sinks]
    finally:
        net.stop()
    out = {}
    for node, r in zip(neurons, raw):
        d = depth[node.name]
        r = np.moveaxis(r[..., d:d + steps], -1, 0)   # local step k is sink column k + d
        if r.ndim == 4:
            r = r.transpose(0, 3, 2, 1)              # (T, W, H, C) -> (T, C, H, W)
        out[node.name] = (r.astype(np.int64) if isinstance(node, FxSigmaDelta)
                          else r.astype(bool))
    return out


def add_dataset(path, name: str, data) -> None:
    with h5py.File(path, "a") as f:
        if name in f:
            del f[name]
        f.create_dataset(name, data=np.asarray(data))
