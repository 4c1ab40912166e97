"""Export a FIXED-stage `Graph` as a lava-dl netx HDF5 network (inverse of
`snncompile.formats.netx.read`, same conventions).

netx can express chains `Input -> [Flatten] -> (FxDense | FxConv2d) -> FxLIF -> ...` with
binary spikes, and the same chains of sigma-delta neurons (`FxSigmaDelta`) with graded
messages. The file gets an `input` layer (without a neuron for binary input, so netx learns
the input shape and `Network(path).inp` is the first synapse's input; with the SDNN neuron
of the graph's delta encoder for graded input; with the CUBA neuron of the LIF layer a
bias input drives, which netx drives through its bias too), then one netx layer per synapse + neuron
pair, and a `flatten` layer where the graph flattens. netx has no field for the width or
sign of the input frames: re-import with `input_bits` / `input_signed` to restore them.

What netx computes must equal what the graph computes, so the exporter refuses (with
`UnsupportedError` naming the node) whatever has no exact netx form:

* dense: netx chooses the weight exponent itself and always produces exact integer sums
  (lava-dl netx/utils.py:80-158), so the graph's effective weights
  `prepared_mantissa * 2**weight_exp` must be integers that netx's optimisation keeps
  exact. A negative `weight_exp` with mantissas that are not multiples of `2**-weight_exp`
  floors partial sums, which netx cannot state.
* LIF: netx fixes `bias_exp = 6` (netx/hdf5.py:158), so `bias_mant << bias_exp` must be a
  multiple of 64; `du + 1` and `dv` must lie in [0, 4096] (netx: `du = iDecay - 1`).
* conv: weights are written OIHW as they are (Lava's Conv ignores exponents).
* sigma-delta: netx fixes spike_exp = state_exp = 6 and no cumulative error; a synapse
  must read as many message bits as the neuron before it sends (netx wires them so) and
  that must be netx's default of 16 (netx 0.6.0 fails on files with a `messageBits`
  entry); a sigma readout has no bias.

The file is written to a temporary name and renamed, so a refusal leaves no file behind.

    >>> export_netx(build.graph, "model.net")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from snncompile.errors import UnsupportedError
from snncompile.formats.netx.read import (DECAY_UNITY, NETX_BIAS_EXP, NETX_SDNN_MESSAGE_BITS,
                                     NETX_SPIKE_EXP, netx_dense_weights)
from snncompile.ir import Flatten, FxConv2d, FxDense, FxLIF, FxSigmaDelta, Graph, Input, Output
from snncompile.backends.sim.fixed import prepare_weights, shift_exp

SUPPORTED = ("Input (spikes, graded into a delta encoder, or bias frames of a LIF input "
             "layer), FxDense, FxConv2d, FxLIF or "
             "FxSigmaDelta (not both), Flatten, Output in a single chain")


def export_netx(graph: Graph, path: str | Path) -> Path:
    """Write `graph` (fixed stage) as netx HDF5 at `path`; returns the path.

        >>> export_netx(import_netx("a.net"), "b.net")
    """
    import h5py

    from snncompile.safe_io import atomic_path

    path = Path(path)
    layers = _layers(graph)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            group = f.create_group("layer")
            for i, layer in enumerate(layers):
                g = group.create_group(str(i))
                for key, value in layer.items():
                    if key == "type":
                        g.create_dataset("type", (1,), "S10", [value.encode("ascii")])
                    else:
                        g.create_dataset(key, data=value)
    return path


def _layers(graph: Graph) -> list[dict]:
    """The netx layer descriptions (flat dicts; 'neuron/x' keys make the neuron group)."""
    graph.validate()
    if graph.stage != "fixed":
        raise UnsupportedError("netx export needs a fixed-point graph; quantise first "
                               "(snncompile compile)")
    chain = _chain(graph)
    inp = graph.node(chain[0])
    if not isinstance(inp, Input):
        raise UnsupportedError(f"{chain[0]}: the chain must start at the Input")
    layers = [{"type": "input", "shape": np.array(inp.shape, np.int64)}]
    i, bits = 1, 0          # bits: message bits the next synapse reads
    if graph.nodes(FxLIF) and graph.nodes(FxSigmaDelta):
        raise UnsupportedError("netx export: the graph mixes LIF and sigma-delta neurons; "
                               f"supported: {SUPPORTED}")
    if inp.is_bias:     # the input layer's CUBA neuron, which netx drives by its bias
        enc = graph.node(chain[1])
        if np.any(np.asarray(enc.bias_mant)) or len(inp.shape) == 2:
            raise UnsupportedError(f"{enc.name}: a bias-driven input layer with its own bias "
                                   "or of 2 axes cannot be expressed in netx (its input "
                                   "block takes the frame as its whole bias)")
        layers[0].update(_neuron(enc, False))
        i = 2
    elif inp.encoding != "spikes":
        enc = graph.node(chain[1]) if len(chain) > 1 else None
        if not (isinstance(enc, FxSigmaDelta) and enc.role == "delta"):
            raise UnsupportedError(f"{inp.name}: netx export takes graded input only through "
                                   "a sigma-delta (delta) encoder")
        layers[0].update(_sdnn_neuron(enc, False))
        bits, i = enc.num_message_bits, 2
    while i < len(chain):
        node = graph.node(chain[i])
        if isinstance(node, Output):
            break
        if isinstance(node, Flatten):
            if i > 1:                        # netx flattens only between layers
                layers.append({"type": "flatten",
                               "shape": np.array(graph.shape(node.name), np.int64)})
            else:
                _flatten_first(graph, node, chain)
            i += 1
            continue
        if not isinstance(node, (FxDense, FxConv2d)):
            raise UnsupportedError(f"{node.name}: {type(node).__name__} cannot be expressed "
                                   f"in netx; supported: {SUPPORTED}")
        lif = graph.node(chain[i + 1]) if i + 1 < len(chain) else None
        if not isinstance(lif, (FxLIF, FxSigmaDelta)) or getattr(lif, "role", "") == "delta":
            raise UnsupportedError(f"{node.name}: netx needs every synapse followed by a "
                                   f"neuron layer; supported: {SUPPORTED}")
        if node.num_message_bits != bits:
            raise UnsupportedError(f"{node.name}: reads {node.num_message_bits} message bits "
                                   f"but its source sends {bits}; netx wires them equal")
        layer = _dense(node) if isinstance(node, FxDense) else _conv(node, graph)
        conv = isinstance(node, FxConv2d)
        if isinstance(lif, FxLIF):
            layer.update(_neuron(lif, conv))
            bits = 0
        else:
            layer.update(_sdnn_neuron(lif, conv))
            bits = lif.num_message_bits
        layers.append(layer)
        i += 2
    return layers


def _chain(graph: Graph) -> list[str]:
    order = graph.order()
    for name in order:
        if len(graph.outputs(name)) > 1 or len(graph.inputs(name)) > 1:
            raise UnsupportedError(f"{name}: branching graphs cannot be expressed in netx; "
                                   f"supported: {SUPPORTED}")
        node = graph.node(name)
        if not isinstance(node, (Input, Flatten, FxDense, FxConv2d, FxLIF, FxSigmaDelta,
                                 Output)):
            raise UnsupportedError(f"{name}: {type(node).__name__} cannot be expressed in "
                                   f"netx; supported: {SUPPORTED}")
    return order


def _flatten_first(graph: Graph, node: Flatten, chain: list[str]) -> None:
    """Flatten right after the input: netx's first dense layer reads the user's flat
    vector; the importer re-inserts the Flatten for a multi-dimensional input layer."""
    nxt = graph.node(chain[2]) if len(chain) > 2 else None
    if not isinstance(nxt, FxDense):
        raise UnsupportedError(f"{node.name}: Flatten after the input must feed a dense "
                               "layer for netx")


def _dense(node: FxDense) -> dict:
    prepared = prepare_weights(node.weight, node.sign_mode, node.num_weight_bits)
    exp = int(node.weight_exp)
    if exp < 0 and np.any(prepared % (1 << -exp)):
        raise UnsupportedError(
            f"{node.name}: weight_exp {exp} with mantissas that are not multiples of "
            f"2**{-exp} floors partial sums; netx dense layers compute exact integer sums")
    weight = shift_exp(prepared, exp)
    # re-import as netx would and check the sums are the same integers
    back, _, back_exp, _ = netx_dense_weights(weight, node.name)
    back = back.astype(np.int64)
    if np.any(back % (1 << max(-back_exp, 0))) or \
            not np.array_equal(shift_exp(back, back_exp), weight):
        raise UnsupportedError(
            f"{node.name}: effective weights (8-bit mantissas x 2**{exp}) span "
            f"[{int(weight.min())}, {int(weight.max())}]; netx keeps a dense layer's weights "
            "exact only within [-256, 254] (mixed signs) or [0, 255] / [-256, 0] (one sign), "
            "i.e. weight_exp <= 0, so this build cannot be exported to netx")
    layer = {"type": "dense", "shape": np.array([node.weight.shape[0]], np.int64),
             "weight": weight.astype(np.int32)}
    if node.delay is not None:  # per synapse, read back by netx as is
        layer["delay"] = np.asarray(node.delay, np.int32)
    return layer


def _conv(node: FxConv2d, graph: Graph) -> dict:
    out = graph.shape(node.name)
    w = np.asarray(node.weight)
    return {"type": "conv", "shape": np.array(out, np.int64), "weight": w.astype(np.int32),
            "stride": np.array(node.stride, np.int64),
            "padding": np.array(node.padding, np.int64),
            "dilation": np.array([1, 1], np.int64), "groups": np.int64(node.groups),
            "inChannels": np.int64(w.shape[1] * node.groups), "outChannels": np.int64(w.shape[0]),
            "kernelSize": np.array(w.shape[2:], np.int64)}


def _neuron(lif: FxLIF, conv: bool) -> dict:
    i_decay, v_decay = lif.du + 1, lif.dv
    for what, value in (("du + 1", i_decay), ("dv", v_decay)):
        if not 0 <= value <= DECAY_UNITY:
            raise UnsupportedError(f"{lif.name}: {what} ({value}) is outside netx's "
                                   f"[0, {DECAY_UNITY}]")
    if lif.vth < 0:
        raise UnsupportedError(f"{lif.name}: negative threshold ({lif.vth})")
    eff = shift_exp(np.broadcast_to(np.asarray(lif.bias_mant, np.int64), lif.shape),
                    int(lif.bias_exp))
    bias = eff >> NETX_BIAS_EXP
    if not np.array_equal(bias << NETX_BIAS_EXP, eff):
        raise UnsupportedError(
            f"{lif.name}: bias (mantissa << {lif.bias_exp}) is not a multiple of "
            f"2**{NETX_BIAS_EXP}; netx fixes bias_exp = {NETX_BIAS_EXP}")
    layer = {"neuron/type": np.bytes_(b"CUBA"), "neuron/iDecay": np.int64(i_decay),
             "neuron/vDecay": np.int64(v_decay), "neuron/vThMant": np.int64(lif.vth),
             "neuron/refDelay": np.int64(1), "neuron/gradedSpike": np.bool_(False)}
    layer.update(_bias_entry(bias, conv))
    return layer


def _bias_entry(bias: np.ndarray, conv: bool) -> dict:
    """netx's layer `bias`: per channel or full WHC for conv layers (importer's inverse)."""
    if not np.any(bias):
        return {}
    if conv:
        per_channel = np.all(bias == bias[:, :1, :1], axis=(1, 2)).all()
        return {"bias": (bias[:, 0, 0] if per_channel else bias.transpose(2, 1, 0)
                         ).astype(np.int32)}
    return {"bias": bias.astype(np.int32)}


def _sdnn_neuron(node: FxSigmaDelta, conv: bool) -> dict:
    if node.role != "sigma" and (node.spike_exp, node.state_exp) != (NETX_SPIKE_EXP,
                                                                      NETX_SPIKE_EXP):
        raise UnsupportedError(f"{node.name}: spike_exp/state_exp {node.spike_exp}/"
                               f"{node.state_exp}; netx fixes both to {NETX_SPIKE_EXP}")
    if node.cum_error:
        raise UnsupportedError(f"{node.name}: cumulative-error sigma-delta neurons cannot be "
                               "expressed in netx")
    if node.num_message_bits != NETX_SDNN_MESSAGE_BITS:
        # netx reads 'messageBits' through NetDict, which does not list it among its value
        # keys (lava/lib/dl/netx/utils.py:44-48), so a file carrying it fails to load
        raise UnsupportedError(f"{node.name}: {node.num_message_bits}-bit messages; netx "
                               f"loads only its default of {NETX_SDNN_MESSAGE_BITS} bits "
                               "(it cannot read a 'messageBits' entry)")
    layer = {"neuron/type": np.bytes_(b"SDNN"), "neuron/activation": np.bytes_(b"relu"),
             "neuron/vThMant": np.int64(node.vth)}
    bias = np.broadcast_to(np.asarray(node.bias_mant, np.int64), node.shape)
    if node.role == "sigma":
        if np.any(bias):
            raise UnsupportedError(f"{node.name}: a sigma readout with a bias cannot be "
                                   "expressed in netx (its Sigma process takes none)")
        layer["neuron/sigma_output"] = np.bool_(True)
    layer.update(_bias_entry(bias, conv))
    return layer
