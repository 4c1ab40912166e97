"""Run a netx HDF5 file with lava-dl's own loader (`lava.lib.dl.netx.hdf5.Network`) in
Lava's bit-accurate simulation (`Loihi2SimCfg(select_tag='fixed_pt')`) and return each
netx block's output in our local time and (C, H, W) layout: the `netx` backend of
`snncompile verify` (builds compiled from a netx file keep a copy of it) and the
independent side of the netx equivalence tests.

Alignment (see `snncompile.formats.netx.read`): a RingBuffer source sends input frame
t at Lava step t + 1; a block at depth d (d synapses from the input) emits its output for
local step k at Lava step k + d + 1, i.e. sink column k + d.

A network whose input layer has an SDNN neuron: netx builds that layer's Delta encoder but
never wires its `inp` port (lava/lib/dl/netx/blocks/process.py:103-106), so it runs with
`skip_layers=1` and the frames go through a Delta process created from netx's own
`Network.get_neuron_params(..., input=True)` for that layer.

A network whose input layer has a CUBA neuron (bias input, e.g. PilotNet LIF) runs with
all its blocks (`skip_layers=0`, block 0 reset at Lava step 1): no source is connected,
and each sample's frame is written into `net.in_layer.neuron.bias_mant` before the run,
as lava-dl's netx tests (`test_hdf5.py`, tinynet) do.
"""
from __future__ import annotations

import numpy as np

from snncompile.backends.base import Run, register_backend
from snncompile.backends.lava.layout import natural_perm, to_lava
from snncompile.backends.lava.session import (lava_session, one_line, over_samples,
                                              require_lava, retry_stalled)
from snncompile.errors import BackendError, InputFileError
from snncompile.formats.netx.read import lava_network_kwargs
from snncompile.ir import NEURON_TYPES, Graph
from snncompile.ir.timing import timing


def run_netx_samples(path, graph: Graph, inputs: np.ndarray, progress: bool = False
                     ) -> dict[str, np.ndarray]:
    """`run_netx` on each sample of `inputs` (N, T, *input shape); one Lava run per sample.
    Failures of netx or Lava become one-line BackendErrors."""
    require_lava()
    x = np.asarray(inputs)
    if x.ndim < 3 or tuple(x.shape[2:]) != tuple(graph.input_node().shape):
        raise InputFileError(f"inputs: shape {x.shape} is not (N, T, "
                             f"*{graph.input_node().shape})")
    runs = [run_netx(path, graph, x[i])
            for i in over_samples(range(len(x)), progress, "netx in Lava")]
    return {k: np.stack([r[k] for r in runs]) for k in runs[0]}


def run_netx(path, graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """x: (T, *input shape CHW) integers. Returns {graph neuron name: (T, *shape)}: bool
    spikes for CUBA blocks, int graded values for SDNN blocks. Raises BackendError (one
    line) when netx cannot build the network or Lava fails; Lava is always shut down."""
    _known_netx_failures(path)
    try:
        return retry_stalled(lambda: _run_netx(path, graph, x), f"{path}: netx in Lava")
    except (BackendError, InputFileError):
        raise
    except Exception as exc:  # netx and Lava raise bare Exceptions of many kinds
        raise BackendError(f"{path}: lava-dl netx failed on it: {one_line(exc)}") from exc


def _known_netx_failures(path) -> None:
    """Refuse up front what netx 0.6.0 cannot load, instead of letting Lava's workers fail:
    its NetDict does not know the 'messageBits' key (lava/lib/dl/netx/utils.py:44-48) and
    hands a group object to the Var that should get the number."""
    import h5py

    found: list[str] = []
    with h5py.File(str(path), "r") as f:
        f.visit(lambda name: found.append(name) if name.endswith("/messageBits") else None)
    if found:
        raise BackendError(f"{path}: lava-dl netx 0.6.0 cannot load a file with a "
                           f"'messageBits' entry ({found[0]}); compare with the lava backend")


def _run_netx(path, graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    from snncompile.third_party import import_quietly
    import_quietly("lava.lib.dl.netx.hdf5")   # without lava-dl's import-time noise
    from lava.lib.dl.netx.hdf5 import Network

    neurons = graph.nodes(NEURON_TYPES)
    steps = x.shape[0]
    when = timing(graph, steps)
    total = when.global_steps
    net = Network(net_config=str(path), **lava_network_kwargs(graph, steps))
    encoder = _input_encoder(path, net, neurons[0])
    blocks = ([encoder] if encoder is not None else []) + list(net.layers)
    if len(blocks) != len(neurons):
        raise BackendError(f"{path}: netx built {len(blocks)} blocks for the graph's "
                           f"{len(neurons)} neuron layers")
    _feed(path, graph, net, encoder, x, total)
    sinks = _sinks(blocks, encoder, total)
    # a run left open keeps Lava's workers alive; a failed one must be forced
    with lava_session(f"{path}: netx network failed in Lava", graph=graph) as session:
        session.start(net)
        session.run(total)
        raw = [sink.data.get() for sink in sinks]
    out = {}
    for node, r in zip(neurons, raw):
        r = np.moveaxis(r[..., when.window(node.name)], -1, 0)  # local k: column k + depth
        if r.ndim == 4:
            r = r.transpose(0, 3, 2, 1)              # (T, W, H, C) -> (T, C, H, W)
        out[node.name] = r.astype(np.int64) if node.kind == "graded" else r.astype(bool)
    return out


def _input_encoder(path, net, first_neuron):
    """The Delta process that encodes the input of a network whose input layer is an SDNN
    neuron (netx leaves that layer's encoder unwired), else None."""
    if getattr(first_neuron, "role", None) != "delta":
        return None
    from lava.lib.dl.netx.hdf5 import Network
    from lava.lib.dl.netx.utils import NetDict

    params = dict(Network.get_neuron_params(NetDict(str(path))["layer"][0]["neuron"],
                                            input=True))
    proc = params.pop("neuron_proc")
    params.pop("num_message_bits", None)
    return proc(shape=net.inp.shape, **params)


def _feed(path, graph: Graph, net, encoder, x: np.ndarray, total: int) -> None:
    """Connect the sample `x` (T, *input shape) to the netx network: a RingBuffer of
    `total` steps (through `encoder` when there is one), or a bias input's frame."""
    from lava.proc.io.source import RingBuffer as Source

    inp_shape, shape = tuple(net.inp.shape), graph.input_node().shape
    # (T, C, H, W) -> (T, W, H, C); a first dense layer reads the frames flat in C order
    perm = natural_perm(shape) if len(inp_shape) == 3 else None
    frames = to_lava(x, shape, perm, inp_shape)
    if graph.input_node().is_bias:
        # as lava-dl's netx tests and PilotNet do: the frame is the input layer's bias_mant
        # (its inp port is not wired); one frame per run, held for all steps
        if np.any(frames != frames[:1]):
            raise InputFileError(f"{path}: a bias input frame must be held for all steps of "
                                 "its sample; this sample changes it")
        net.in_layer.neuron.bias_mant.init = frames[0].astype(np.int32)
        return
    data = np.zeros(inp_shape + (total,), np.int32)
    data[..., :x.shape[0]] = np.moveaxis(frames, 0, -1)
    source = Source(data=data)
    if encoder is not None:
        source.s_out.connect(encoder.a_in)
        encoder.s_out.connect(net.inp)
    else:
        source.s_out.connect(net.inp)


def _sinks(blocks: list, encoder, total: int) -> list:
    """A RingBuffer sink of `total` steps on each block's output."""
    from lava.proc.io.sink import RingBuffer as Sink

    sinks = []
    for block in blocks:
        port = block.s_out if block is encoder else block.out
        sink = Sink(shape=port.shape, buffer=total)
        port.connect(sink.a_in)
        sinks.append(sink)
    return sinks


class NetxBackend:
    """The `netx` backend: the build's copy of its netx source file run by lava-dl's own
    loader in Lava (independent of our lowering)."""

    name = "netx"
    description = "lava-dl's netx loader on the build's netx source, in Lava"
    is_lava = True

    def unsupported(self, graph, source=None) -> str | None:
        if source is None:
            return "the netx backend needs a build compiled from a netx file (it keeps a copy"\
                " of that file)"
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            **options) -> Run:
        import time
        why = self.unsupported(graph, source)
        if why:
            from snncompile.errors import UnsupportedError
            raise UnsupportedError(why)
        t0 = time.perf_counter()
        values = run_netx_samples(source, graph, inputs, progress)
        x = np.asarray(inputs)
        return Run(values=values, samples=len(x), steps=x.shape[1],
                   wall_s=time.perf_counter() - t0, backend="netx")


register_backend(NetxBackend())
