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
* conv: weights are written OIHW as they are (Lava's Conv ignores exponents); a Conv1d
  as the height-1 conv on (C, 1, L) it is (read back as an FxConv2d of that shape).
* sigma-delta: netx fixes spike_exp = state_exp = 6 and no cumulative error; a synapse
  must read as many message bits as the neuron before it sends (netx wires them so) and
  that must be netx's default of 16 (netx 0.6.0 fails on files with a `messageBits`
  entry); a sigma readout has no bias.

Each node type's part of the file is its writer in the `NETX_EXPORT` table; node types
without one are refused in one line naming the node and the supported types.

The file is written to a temporary name and renamed, so a refusal leaves no file behind.

    >>> export_netx(build.graph, "model.net")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snncompile.errors import UnsupportedError
from snncompile.formats.netx.read import (DECAY_UNITY, NETX_BIAS_EXP, NETX_SDNN_MESSAGE_BITS,
                                     NETX_SPIKE_EXP, netx_dense_weights)
from snncompile.ir import (Flatten, FxConv1d, FxConv2d, FxDense, FxLIF, FxSigmaDelta, Graph,
                           Input, Output, per_neuron)
from snncompile.ir.registry import Rules
from snncompile.backends.sim.fixed import prepare_weights, shift_exp

NETX_EXPORT = Rules("netx export")
"""Node type -> `NetxWriter`: the netx layer (or layer part) a node of that type becomes."""

CHAIN = ("in a single chain Input (spikes, graded into a delta encoder, or bias frames of a "
         "LIF input layer) -> [Flatten] -> synapse -> neuron -> ... -> Output, with LIF or "
         "sigma-delta neurons (not both)")


def supported() -> str:
    """What the exporter takes: the registered node types and the chain they must form."""
    return f"{NETX_EXPORT.names()} {CHAIN}"


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


@dataclass
class _Chain:
    """The graph's chain of nodes being written and the netx layers written so far."""

    graph: Graph
    names: list[str]
    layers: list[dict] = field(default_factory=list)
    bits: int = 0          # message bits the next synapse reads

    def node(self, i: int):
        return self.graph.node(self.names[i]) if i < len(self.names) else None


class NetxWriter:
    """A node type's netx writer: `write(chain, i)` appends what node `i` of the chain
    becomes and returns the index of the next node to write."""

    def write(self, ch: _Chain, i: int) -> int:
        raise NotImplementedError


def _writer(*types: type):
    """Class decorator: an instance of the class is NETX_EXPORT's writer for `types`."""
    def deco(cls):
        NETX_EXPORT.register(*types)(cls())
        return cls
    return deco


def _layers(graph: Graph) -> list[dict]:
    """The netx layer descriptions (flat dicts; 'neuron/x' keys make the neuron group)."""
    graph.validate()
    if graph.stage != "fixed":
        raise UnsupportedError("netx export needs a fixed-point graph; quantise first "
                               "(snncompile compile)")
    ch = _Chain(graph, _chain(graph))
    if ch.names[0] != graph.input_node().name:
        raise UnsupportedError(f"{ch.names[0]}: the chain must start at the Input")
    if len({type(graph.node(n)) for n in ch.names if graph.node(n).is_neuron}) > 1:
        raise UnsupportedError("netx export: the graph mixes LIF and sigma-delta neurons; "
                               f"supported: {supported()}")
    i = 0
    while i < len(ch.names):
        i = NETX_EXPORT.rule(ch.node(i)).write(ch, i)
    return ch.layers


def _chain(graph: Graph) -> list[str]:
    order = graph.order()
    for name in order:
        node = graph.node(name)
        if node.is_synapse and node.closes_loop:
            raise UnsupportedError(f"{name}: recurrent synapses are not written to netx yet "
                                   "(its dense_rec export is not built); supported: "
                                   f"{supported()}")
    for name in order:
        if len(graph.outputs(name)) > 1 or len(graph.inputs(name)) > 1:
            raise UnsupportedError(f"{name}: branching graphs cannot be expressed in netx; "
                                   f"supported: {supported()}")
        node = graph.node(name)
        if not NETX_EXPORT.supports(node):
            raise UnsupportedError(f"{NETX_EXPORT.refusal(node)}; netx takes them {CHAIN}")
    return order


@_writer(Input)
class _InputWriter(NetxWriter):
    """netx's `input` layer; with the encoder neuron that follows a bias or graded input."""

    def write(self, ch: _Chain, i: int) -> int:
        inp = ch.node(i)
        enc = ch.node(i + 1)
        shape = tuple(inp.shape)
        if getattr(NETX_EXPORT.get(enc), "image_view", False):   # a Conv1d's (C, 1, L)
            shape = enc.image_shape(shape)
        ch.layers.append({"type": "input", "shape": np.array(shape, np.int64)})
        if inp.is_bias:     # the input layer's CUBA neuron, which netx drives by its bias
            if np.any(np.asarray(enc.bias_mant)) or len(inp.shape) == 2:
                raise UnsupportedError(f"{enc.name}: a bias-driven input layer with its own "
                                       "bias or of 2 axes cannot be expressed in netx (its "
                                       "input block takes the frame as its whole bias)")
            ch.layers[0].update(NETX_EXPORT.rule(enc).fields(enc, False))
            return i + 2
        if inp.encoding != "spikes":
            if not (enc is not None and enc.is_neuron
                    and getattr(enc, "role", None) == "delta"):
                raise UnsupportedError(f"{inp.name}: netx export takes graded input only "
                                       "through a sigma-delta (delta) encoder")
            rule = NETX_EXPORT.rule(enc)
            ch.layers[0].update(rule.fields(enc, False))
            ch.bits = rule.sends(enc)
            return i + 2
        return i + 1


class _SynapseWriter(NetxWriter):
    """A synapse node with the neuron layer after it: one netx layer."""

    conv = False
    reads_flat = False     # reads a flat vector (may follow a Flatten right after the input)

    def layer(self, node, graph: Graph) -> dict:
        raise NotImplementedError

    def write(self, ch: _Chain, i: int) -> int:
        node, lif = ch.node(i), ch.node(i + 1)
        if lif is None or not lif.is_neuron or getattr(lif, "role", "") == "delta":
            raise UnsupportedError(f"{node.name}: netx needs every synapse followed by a "
                                   f"neuron layer; supported: {supported()}")
        if node.num_message_bits != ch.bits:
            raise UnsupportedError(f"{node.name}: reads {node.num_message_bits} message bits "
                                   f"but its source sends {ch.bits}; netx wires them equal")
        layer = self.layer(node, ch.graph)
        neuron = NETX_EXPORT.rule(lif)
        layer.update(neuron.fields(lif, self.conv))
        ch.bits = neuron.sends(lif)
        ch.layers.append(layer)
        return i + 2


@_writer(FxDense)
class _DenseWriter(_SynapseWriter):
    reads_flat = True

    def layer(self, node: FxDense, graph: Graph) -> dict:
        return _dense(node)


@_writer(FxConv2d)
class _ConvWriter(_SynapseWriter):
    conv = True

    def layer(self, node: FxConv2d, graph: Graph) -> dict:
        return _conv(node, graph)


class _NeuronWriter(NetxWriter):
    """A neuron layer: the `neuron/...` fields of the netx layer its synapse starts."""

    def fields(self, node, conv: bool) -> dict:
        raise NotImplementedError

    def sends(self, node) -> int:
        """Message bits of what the neuron sends (0: binary spikes)."""
        return 0

    def write(self, ch: _Chain, i: int) -> int:  # a neuron layer without a synapse before it
        node = ch.node(i)
        raise UnsupportedError(f"{node.name}: {type(node).__name__} cannot be expressed in "
                               f"netx without a synapse before it; supported: {supported()}")


@_writer(FxConv1d)
class _Conv1dWriter(_ConvWriter):
    """A Conv1d as the height-1 conv it is computed as: netx's conv layer on the (C, 1, L)
    image (its input layer and neuron shapes likewise); lava-dl runs it as that 2-D conv,
    and `import_netx` reads it back as an FxConv2d on (C, 1, L)."""

    image_view = True

    def layer(self, node: FxConv1d, graph: Graph) -> dict:
        return _conv(node, graph, node.image_shape(graph.shape(node.name)))


@_writer(FxLIF)
class _LIFWriter(_NeuronWriter):
    def fields(self, node: FxLIF, conv: bool) -> dict:
        return _neuron(node, conv)


@_writer(FxSigmaDelta)
class _SigmaDeltaWriter(_NeuronWriter):
    def fields(self, node: FxSigmaDelta, conv: bool) -> dict:
        return _sdnn_neuron(node, conv)

    def sends(self, node: FxSigmaDelta) -> int:
        return node.num_message_bits


@_writer(Flatten)
class _FlattenWriter(NetxWriter):
    def write(self, ch: _Chain, i: int) -> int:
        node = ch.node(i)
        if i > 1:                        # netx flattens only between layers
            ch.layers.append({"type": "flatten",
                              "shape": np.array(ch.graph.shape(node.name), np.int64)})
        else:
            _flatten_first(ch.graph, node, ch.names)
        return i + 1


@_writer(Output)
class _OutputWriter(NetxWriter):
    def write(self, ch: _Chain, i: int) -> int:
        return len(ch.names)


def _flatten_first(graph: Graph, node: Flatten, chain: list[str]) -> None:
    """Flatten right after the input: netx's first dense layer reads the user's flat
    vector; the importer re-inserts the Flatten for a multi-dimensional input layer."""
    nxt = graph.node(chain[2]) if len(chain) > 2 else None
    if not getattr(NETX_EXPORT.get(nxt), "reads_flat", False):
        raise UnsupportedError(f"{node.name}: Flatten after the input must feed a dense "
                               "layer for netx")


def _no_synapse_bias(node) -> None:
    if node.bias_mant is not None:
        raise UnsupportedError(f"{node.name}: netx has no synapse bias (its bias is the "
                               "neuron's, on v); this build has a bias axon and cannot be "
                               "exported to netx")


def _dense(node: FxDense) -> dict:
    _no_synapse_bias(node)
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


def _conv(node: FxConv2d, graph: Graph, out: tuple | None = None) -> dict:
    """netx's conv layer; `out`: the output image (C, H, W), default the node's shape."""
    _no_synapse_bias(node)
    out = graph.shape(node.name) if out is None else out
    w = np.asarray(node.weight)
    return {"type": "conv", "shape": np.array(out, np.int64), "weight": w.astype(np.int32),
            "stride": np.array(node.stride, np.int64),
            "padding": np.array(node.padding, np.int64),
            "dilation": np.array([1, 1], np.int64), "groups": np.int64(node.groups),
            "inChannels": np.int64(w.shape[1] * node.groups), "outChannels": np.int64(w.shape[0]),
            "kernelSize": np.array(w.shape[2:], np.int64)}


def _neuron(lif: FxLIF, conv: bool) -> dict:
    if not lif.lava_lif:    # netx's CUBA neuron is Lava's LIF: reset to 0, v > vth
        raise UnsupportedError(f"{lif.name}: reset '{lif.reset}' / fire_at '{lif.fire_at}' "
                               "cannot be written to netx (its CUBA neuron resets to 0 and "
                               "spikes at v > vth)")
    if per_neuron(lif):     # netx's CUBA neuron is Lava's LIF: one du, dv, vth per layer
        raise UnsupportedError(f"{lif.name}: per-neuron du/dv/vth ({lif.summary()}) cannot be "
                               "written to netx (its CUBA neuron has one iDecay, vDecay and "
                               "vThMant per layer); export --format nir carries them")
    i_decay, v_decay, vth = (int(np.asarray(getattr(lif, f)).flat[0])
                             for f in ("du", "dv", "vth"))
    i_decay += 1
    for what, value in (("du + 1", i_decay), ("dv", v_decay)):
        if not 0 <= value <= DECAY_UNITY:
            raise UnsupportedError(f"{lif.name}: {what} ({value}) is outside netx's "
                                   f"[0, {DECAY_UNITY}]")
    if vth < 0:
        raise UnsupportedError(f"{lif.name}: negative threshold ({vth})")
    eff = shift_exp(np.broadcast_to(np.asarray(lif.bias_mant, np.int64), lif.shape),
                    int(lif.bias_exp))
    bias = eff >> NETX_BIAS_EXP
    if not np.array_equal(bias << NETX_BIAS_EXP, eff):
        raise UnsupportedError(
            f"{lif.name}: bias (mantissa << {lif.bias_exp}) is not a multiple of "
            f"2**{NETX_BIAS_EXP}; netx fixes bias_exp = {NETX_BIAS_EXP}")
    layer = {"neuron/type": np.bytes_(b"CUBA"), "neuron/iDecay": np.int64(i_decay),
             "neuron/vDecay": np.int64(v_decay), "neuron/vThMant": np.int64(vth),
             "neuron/refDelay": np.int64(1), "neuron/gradedSpike": np.bool_(False)}
    layer.update(_bias_entry(bias, conv))
    return layer


def _bias_entry(bias: np.ndarray, conv: bool) -> dict:
    """netx's layer `bias`: per channel or full WHC for conv layers (importer's inverse)."""
    if not np.any(bias):
        return {}
    if conv:
        if bias.ndim == 2:              # a Conv1d's neurons (O, L'): the image (O, 1, L')
            bias = bias[:, None, :]
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
