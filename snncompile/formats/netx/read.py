"""Import a lava-dl netx HDF5 network (`.net` / `.h5`) as a FIXED-stage `Graph`.

netx files already hold Loihi integers, so the importer reproduces exactly what
`lava.lib.dl.netx.hdf5.Network` hands to Lava's bit-accurate models (lava-dl 0.6.0):

* CUBA neuron -> `FxLIF(vth=vThMant, du=iDecay - 1, dv=vDecay, bias_exp=6)`, bias from the
  layer's `bias` (hdf5.py:144-163). `iDecay = 0` gives `du = -1`: Lava multiplies u by
  4096 - (du + 1) = 4096, i.e. no current decay, as slayer's current_decay = 0.
  A dense layer without a `neuron` group gets netx's default non-leaky integrator
  (hdf5.py:349-357).
* dense weights go through netx's `optimize_weight_bits` (utils.py:80-158), which shifts
  them left and picks `num_weight_bits` and `weight_exp`; Lava's Dense then infers the sign
  mode from the shifted weights (netx does not pass it on, blocks/process.py:157-162;
  lava/proc/dense/models.py:84-90), clips and truncates. `FxDense` holds the prepared
  weights, that exponent, bit count and inferred sign mode, so our simulator computes the
  same sums. Weights are read with `astype(int)` as netx does (utils.py:68).
* conv weights stay in PyTorch OIHW order (netx flips and transposes them for Lava's true
  convolution in XYZ order, hdf5.py:505-506, which equals our OIHW cross-correlation);
  `stride`/`padding`/`dilation` are stored (y, x) (hdf5.py:496-499); shapes are stored CHW
  (netx reverses them to WHC, hdf5.py:500); a per-channel bias is broadcast, a full bias is
  stored in WHC order (blocks/process.py:57-69).
* `flatten` makes the next dense layer read its predecessor in CHW order
  (`out.transpose([2, 1, 0]).flatten()`, hdf5.py:655-660), which is our `Flatten`.

The input layer (netx `Network.inp`, hdf5.py:581-595, blocks/process.py:84-106) comes in
four forms, recorded in `meta["netx"]["input_layer"]`:

* "none": no input layer, or one without a neuron: our `Input` node sends binary spikes
  to the first synapse layer, which is netx's `Network.inp`.
* "bias": an input layer with a CUBA neuron. netx builds that LIF but never wires its
  `inp` port to it, so in Lava it is driven only by its bias; lava-dl's PilotNet LIF
  example and netx tests write each input frame into `in_layer.neuron.bias_mant`. We keep
  the layer as `FxLIF` "L0_lif" (at depth 0, bias_mant 0 as netx builds it) fed by an
  `Input` with encoding "bias": each frame is that layer's bias mantissa, signed
  `input_bits` (default 13), held for the whole sample. netx's input transform (the
  layer's scalar `weight`/`bias`, `in_layer.transform`) is not applied by netx and not by
  us: lava-dl's data loaders apply it, so frames arrive transformed; it is recorded in
  `meta["netx"]["input_transform"]` and the compile report.
* "delta": an input layer with an SDNN neuron, the delta encoder (see below).
* "skipped": only on request (`skip_input_layer=True`), a CUBA input neuron is dropped and
  spikes go to layer 1 (netx's `skip_layers=1`); the compile report says so.

`graph.meta["netx"]` also records `skip_layers` and `input_shape_xyz`, and
`lava_network_kwargs` gives the arguments of the matching `Network`. What netx's input
layer offers that we cannot represent is refused with one line naming the layer: a
non-scalar input transform (netx's `int()` fails on it), a bias-driven input layer of two
axes, graded spikes or refractory delays on the input neuron.

Time: each synapse delays by one step as in Lava, so the graph's local-time semantics
(see `snncompile.ir.nodes`) equal netx's network run with `reset_interval` longer than the
run and `reset_offset=1`, which zeroes the layer at depth d at Lava step d + 1, the step its
first input arrives (hdf5.py:578-579 gives layer k the offset reset_offset + 1 + k).
Without that reset, a layer with a bias integrates it during the d steps before its first
input and the runs can differ (the conv test in tests/test_netx.py: 20 spikes); with all
biases zero they agree either way. A kept bias-driven input layer is netx's block 0 at
depth 0, so there `reset_offset=0` (it is zeroed at Lava step 1). Output spikes of a layer
at depth d for local step k appear at Lava step k + d + 1 (sink column k + d).

Sigma-delta (SDNN) networks (hdf5.py:164-190) become `FxSigmaDelta` nodes with graded
messages: the input layer's SDNN neuron is the Delta encoder and stays in the graph
(the Input node then takes unsigned integer frames of
`input_bits`); a neuron group with a `sigma_output` key is a Sigma readout; the others are
ReLU SigmaDelta neurons with spike_exp = state_exp = 6. Each synapse reads the message
width of the layer before it (16 bits unless `messageBits` says otherwise; binary when
there is no input layer, netx's `input_message_bits=0`). netx ignores `reset_interval` for
these neurons, so they run from Lava step 1 with no reset, which `FxSigmaDelta` and every
implementation follow; netx's Network is then run with `skip_layers=1` behind a Delta
process built from its own `get_neuron_params` (tests/netx_lava.py). Two netx quirks:
a file with a `messageBits` entry fails to load in netx 0.6.0 (its NetDict does not know
the key), and the neuron's `activation` is ignored by netx (always ReLU); we honour the
first and refuse activations other than ReLU.

Dense synaptic delays are imported (netx's broadcasting and clamp to 62 reproduced).
Unsupported (UnsupportedError naming layer and value): conv delays, refDelay > 1
(Lava's LIF has no refractory period; netx ignores it), graded spikes from CUBA neurons,
RF neurons, networks mixing CUBA and SDNN layers, dilation, recurrent/complex dense,
pooling and the other layer types netx does not implement, and weights for which netx's
weight optimisation shifts by a negative amount.

    >>> graph = import_netx("pilotnet.net")       # input layer with a CUBA neuron
    >>> graph.meta["netx"]["input_layer"], graph.input_node().encoding
    ('bias', 'bias')
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from snncompile.errors import InputFileError, SnnCompileError, UnsupportedError
from snncompile.ir import (NEURON_TYPES, Flatten, FxConv2d, FxDense, FxLIF, FxRecDense,
                           FxSigmaDelta, Graph, Input, Output)
from snncompile.backends.sim.fixed import prepare_weights
from snncompile.formats.h5safe import hdf5_tree

SUPPORTED_LAYERS = ("input", "dense", "dense_rec", "conv", "flatten")
SUPPORTED_NEURONS = ("CUBA/LOIHI with refDelay <= 1 and binary spikes (gradedSpike false); "
                     "SDNN (sigma-delta, ReLU)")
NETX_SPIKE_EXP = 6         # Network(spike_exp=6); SDNN state_exp is 6 too (hdf5.py:172-189)
NETX_SDNN_MESSAGE_BITS = 16  # hdf5.py:169
_SDNN_SAFE = 1 << 19       # vth and bias are scaled by 2**12 in int32
NETX_BIAS_EXP = 6          # hdf5.py:158
NETX_BIAS_INPUT_BITS = 13  # default width of bias frames: Lava LIF docstring, signed 13 bits
_INT16 = 1 << 15           # Lava's fixed-point LIF stores bias_mant as int16 (lif/models.py:84)
NETX_INPUT_WEIGHT = 64     # netx's input transform defaults (hdf5.py:249-257)
NETX_MAX_DELAY = 62        # hdf5.py:427-430
DECAY_UNITY = 4096         # 12-bit decays: 4096 means 'all' (hdf5.py:155-156)
MAX_BYTES = 1 << 28        # refuse datasets above 256 MiB instead of exhausting memory
MAX_NEURONS = 1 << 24      # per layer; a Loihi 2 chip holds about 2**20
MAX_LAYERS = 1 << 13       # a Loihi 2 chip has 128 cores; more layers than this is hostile
_INT32_SAFE = 1 << 25      # values << 6 must stay inside Lava's int32 registers

# netx's default neuron for a dense layer without one (hdf5.py:349-357)
_DEFAULT_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1,
                   "refDelay": 1, "gradedSpike": False}


def import_netx(path: str | Path, input_shape: tuple[int, ...] | None = None,
                input_bits: int | None = None, input_signed: bool = False,
                skip_input_layer: bool = False) -> Graph:
    """Read a netx HDF5 file into a fixed-point `Graph`.

    input_shape: (C, H, W) or (N,) of the network input, needed only when the file has no
    `input` layer and starts with a conv layer (netx's own `input_shape`, in CHW order).

        >>> g = import_netx("net.net"); Simulator(g).run(x).spikes  # x (N, T, *shape)

    input_bits, input_signed: width of the integer frames an SDNN network's delta encoder
    reads (default 8 unsigned, e.g. 16 signed for audio samples), or of the bias frames of
    a CUBA input layer (always signed, default 13: Loihi's bias mantissa); binary-spike
    networks ignore them.

    skip_input_layer: drop a CUBA input layer's neuron and feed spikes to layer 1 instead
    (netx's `skip_layers=1`): a different network from the file's, recorded in
    `meta["netx"]["input_layer"] = "skipped"` and in the compile report.
    """
    path = Path(path)
    if input_bits is not None and not 1 <= int(input_bits) <= 16:
        raise UnsupportedError(f"{path}: input bits {input_bits} outside [1, 16] (the delta "
                               f"encoder shifts frames left by {2 * NETX_SPIKE_EXP} in int32;"
                               " Lava holds a LIF's bias_mant in int16)")
    layers = _read_file(path)
    return _build(path, layers, input_shape, input_bits, bool(input_signed),
                  bool(skip_input_layer))


def lava_network_kwargs(graph: Graph, steps: int) -> dict:
    """Keyword arguments of `lava.lib.dl.netx.hdf5.Network(net_config=path, **kwargs)` that
    make netx compute this imported graph's local-time semantics for a run of `steps`
    input frames (run it for `steps + max depth` Lava steps; see the module docstring).

        >>> net = Network(net_config=path, **lava_network_kwargs(graph, 20))
    """
    meta = graph.meta.get("netx")
    if not isinstance(meta, dict):
        raise UnsupportedError("graph was not imported from netx (no meta['netx'])")
    depth = max(graph.depth(n.name) for n in graph.nodes(NEURON_TYPES))
    xyz = meta.get("input_shape_xyz")
    # netx resets its block k at Lava step reset_offset + 1 + k; block 0 is at depth 1
    # (the first synapse layer), or at depth 0 when it is the kept bias-driven input layer
    first_depth = 0 if meta.get("input_layer") == "bias" else 1
    kwargs = {"skip_layers": int(meta.get("skip_layers", 0)),
              "input_shape": tuple(xyz) if xyz else None,
              "reset_interval": int(steps) + 2 * depth + 2, "reset_offset": first_depth}
    if meta.get("sdnn"):   # sigma-delta neurons are never reset (netx ignores it anyway)
        kwargs["reset_interval"] = None
        kwargs["spike_exp"] = NETX_SPIKE_EXP
    return kwargs


# ------------------------------------------------------------------ raw HDF5 reading
def _read_file(path: Path) -> list[dict]:
    """All of `layer/0..n-1` as plain dicts of numpy values; every I/O or format problem
    becomes one InputFileError line naming the file."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise InputFileError(f"{path}: reading netx files needs h5py ({exc})") from None
    if not path.is_file():
        raise InputFileError(f"{path}: not found")
    try:
        if not h5py.is_hdf5(str(path)):
            raise InputFileError(f"{path}: not an HDF5 file (expected a lava-dl netx .net)")
        # no external data, sizes bounded; the file's tree from the walk that checked it
        with hdf5_tree(path, "lava-dl netx .net") as tree:
            if not isinstance(tree.get("layer"), dict):
                raise InputFileError(f"{path}: no 'layer' group; not a netx network file")
            group = tree["layer"]
            keys = list(group.keys())
            if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
                raise InputFileError(f"{path}: 'layer' must hold groups '0'..'{len(keys) - 1}'"
                                     f", found {sorted(keys)[:8]}")
            if not keys:
                raise InputFileError(f"{path}: 'layer' group is empty")
            if len(keys) > MAX_LAYERS:
                raise InputFileError(f"{path}: {len(keys)} layers exceed {MAX_LAYERS}")
            return [_read_group(path, group[str(i)], f"layer/{i}") for i in range(len(keys))]
    except SnnCompileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a bad file
        raise InputFileError(f"{path}: corrupt or truncated HDF5 file "
                             f"({type(exc).__name__}: {str(exc)[:120]})") from None


def _read_group(path: Path, group, where: str) -> dict:
    """One layer's group of the checked tree (`h5safe.read_hdf5`), its datasets read."""
    if not isinstance(group, dict):
        raise InputFileError(f"{path}: {where} is not a group")
    out: dict = {}
    for key, item in group.items():
        if isinstance(item, dict):
            out[key] = _read_group(path, item, f"{where}/{key}")
            continue
        if item.nbytes > MAX_BYTES:
            raise InputFileError(f"{path}: {where}/{key} holds {item.nbytes} bytes, more "
                                 f"than {MAX_BYTES}")
        out[key] = item.read()
    return out


# ------------------------------------------------------------------ field access
class _Layer:
    """One netx layer with error messages that name file, layer index and type."""

    def __init__(self, path: Path, index: int, raw: dict):
        self.path, self.index, self.raw = path, index, raw
        self.type = None
        self.type = _string(self, raw, "type")

    @property
    def where(self) -> str:
        return f"{self.path}: layer {self.index} ({self.type})"

    def bad(self, what: str) -> InputFileError:
        return InputFileError(f"{self.where}: {what}")

    def get(self, key: str, src: dict | None = None):
        src = self.raw if src is None else src
        if key not in src:
            raise self.bad(f"missing '{key}'")
        return src[key]

    def ints(self, key: str, src: dict | None = None) -> np.ndarray:
        """Integer array the way netx reads weights and biases: astype(int) (utils.py:68)."""
        value = np.asarray(self.get(key, src))
        if value.dtype.kind not in "biuf" or value.size == 0:
            raise self.bad(f"'{key}' is not a non-empty numeric array (dtype {value.dtype})")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.bad(f"'{key}' holds NaN or infinite values")
        if np.abs(value.astype(np.float64)).max() >= 2.0 ** 31:
            raise self.bad(f"'{key}' holds values beyond 32 bits "
                           f"({np.abs(value.astype(np.float64)).max():.4g})")
        return value.astype(np.int64)

    def scalar(self, key: str, src: dict | None = None, name: str | None = None) -> int:
        value = np.asarray(self.get(key, src))
        label = name or key
        if value.size != 1 or value.dtype.kind not in "biuf":
            raise self.bad(f"'{label}' must be one number, got {value.dtype} {value.shape}")
        x = float(value.reshape(-1)[0])
        if not math.isfinite(x) or x != int(x):
            raise self.bad(f"'{label}' ({x}) is not an integer")
        return int(x)

    def shape(self) -> tuple[int, ...]:
        shape = self.ints("shape")
        if shape.ndim != 1 or np.any(shape < 1) or len(shape) > 3:
            raise self.bad(f"'shape' {shape.tolist()} is not a list of 1 to 3 positive sizes")
        if np.prod(shape.astype(np.float64)) > MAX_NEURONS:
            raise self.bad(f"'shape' {shape.tolist()} is too large")
        return tuple(int(s) for s in shape)

    def pair(self, key: str) -> tuple[int, int]:
        """netx `expand` (hdf5.py:496-499): a scalar is used for both axes, otherwise the
        file stores (y, x) and netx reverses it to (x, y); we keep (y, x) = (H, W)."""
        value = self.ints(key)
        if value.size == 1:
            return int(value.reshape(-1)[0]), int(value.reshape(-1)[0])
        if value.shape != (2,):
            raise self.bad(f"'{key}' {value.tolist()} is not a number or a pair")
        return int(value[0]), int(value[1])


def _string(where: _Layer, src: dict, key: str) -> str:
    """netx NetDict string reading (utils.py:60-66): first element if an array."""
    if key not in src:
        raise InputFileError(f"{_where(where)}: missing '{key}'")
    value = src[key]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise InputFileError(f"{_where(where)}: '{key}' is empty")
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise InputFileError(f"{_where(where)}: '{key}' is not ASCII") from None
    if isinstance(value, str):
        return value
    raise InputFileError(f"{_where(where)}: '{key}' is not a string ({type(value).__name__})")


def _where(layer: _Layer) -> str:
    if getattr(layer, "type", None) is None:      # while reading the type itself
        return f"{layer.path}: layer {layer.index}"
    return layer.where


# ------------------------------------------------------------------ netx semantics
def netx_dense_weights(weight: np.ndarray, where: str = "dense") -> tuple[np.ndarray, int,
                                                                          int, str]:
    """What a netx dense layer hands Lava, after Lava's own preparation.

    Returns (prepared int32 weights, num_weight_bits, weight_exp, sign_mode): netx's
    `optimize_weight_bits` (utils.py:80-158) then Lava's `determine_sign_mode`,
    `clip_weights` and `truncate_weights` (lava/proc/dense/models.py:84-90).
    """
    w = np.asarray(weight).astype(np.int64)
    if not np.any(w):
        # netx divides by a zero maximum and fails (int(inf)); an all-zero layer is exact.
        return np.zeros(w.shape, np.int32), 8, 0, "excitatory"
    max_w, min_w = w.max(), w.min()
    if max_w > 254 and min_w < 0:          # netx clips and warns (utils.py:103-107)
        w = np.clip(w, -256, 254)
        max_w = w.max()
    if min_w < -256 and max_w > 0:         # utils.py:108-112
        w = np.clip(w, -256, 254)
        min_w = w.min()
    if max_w < 0:
        mode, signed = "inhibitory", 0
    elif min_w >= 0:
        mode, signed = "excitatory", 0
    else:
        mode, signed = "mixed", 1
    with np.errstate(divide="ignore"):
        if mode == "mixed":
            scale = min(127 / np.float64(max_w), -128 / np.float64(min_w))
        elif mode == "inhibitory":
            scale = -256 / np.float64(min_w)
        else:
            scale = 255 / np.float64(max_w)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2 ** n - np.round(w / 2 ** n))) != 0:
        n -= 1
    n -= signed
    num_bits = 8 - scale_bits - n
    if scale_bits < 0:
        raise UnsupportedError(
            f"{where}: weights span [{int(min_w)}, {int(max_w)}], beyond netx's 8-bit "
            f"{mode} range; netx would shift them by {scale_bits} (undefined, zeroes them). "
            "Supported: dense weights within [-256, 255]")
    shifted = w << scale_bits
    prepared, lava_mode = _lava_prepared(shifted, num_bits, mode, where)
    return prepared, int(num_bits), int(-scale_bits), lava_mode


def _lava_prepared(shifted: np.ndarray, num_bits: int, mode: str, where: str):
    """(weights as Lava's Dense prepares them, the sign mode it infers) of one synapse
    that netx hands `shifted` with `num_bits` (lava/proc/dense/models.py:84-90)."""
    lava_mode = ("excitatory" if shifted.min(initial=0) >= 0 else
                 "inhibitory" if shifted.max(initial=0) <= 0 else "mixed")
    truncate = 8 - num_bits + int(lava_mode == "mixed")
    if truncate < 0:
        raise UnsupportedError(
            f"{where}: netx sign mode '{mode}' and Lava's inferred '{lava_mode}' disagree so "
            f"that Lava would truncate by {truncate} bits (undefined). Weights span "
            f"[{int(shifted.min(initial=0))}, {int(shifted.max(initial=0))}] after netx's "
            "shift")
    return prepare_weights(shifted, lava_mode, num_bits).astype(np.int32), lava_mode


def netx_recurrent_weights(weight: np.ndarray, weight_rec: np.ndarray, where: str):
    """What a netx `dense_rec` layer hands Lava (hdf5.py:394-407, blocks/process.py:203-
    302): netx optimises the feed-forward and recurrent weights side by side (one shift,
    bit count and exponent), then each of its two Lava Dense processes infers its own sign
    mode and prepares its own part. Returns (feed-forward, recurrent) prepared int32
    weights, num_weight_bits, weight_exp and the two sign modes."""
    both = np.hstack([np.asarray(weight), np.asarray(weight_rec)])
    _, bits, exp, _ = netx_dense_weights(both, where)
    if not np.any(both):
        return (np.zeros(np.shape(weight), np.int32), np.zeros(np.shape(weight_rec), np.int32),
                bits, exp, ("excitatory", "excitatory"))
    w = np.clip(both.astype(np.int64), -256, 254) if (both.max() > 254 and both.min() < 0) \
        or (both.min() < -256 and both.max() > 0) else both.astype(np.int64)
    shifted = w << -exp
    n = np.shape(weight)[1]
    ff, mode_ff = _lava_prepared(shifted[:, :n], bits, "", where)
    rec, mode_rec = _lava_prepared(shifted[:, n:], bits, "", where)
    return ff, rec, bits, exp, (mode_ff, mode_rec)


def _neuron(layer: _Layer, raw: dict | None, shape: tuple[int, ...],
            is_input: bool = False) -> FxLIF | FxSigmaDelta:
    """CUBA -> FxLIF as hdf5.py:144-163 (vth = vThMant, du = iDecay - 1, dv = vDecay);
    SDNN -> FxSigmaDelta as hdf5.py:164-190 (Delta for the input layer, Sigma where the
    neuron group has a `sigma_output` key, SigmaDelta otherwise; spike_exp = state_exp = 6,
    16-bit messages unless `messageBits` says otherwise)."""
    if raw is None:
        raw = _DEFAULT_NEURON
    if not isinstance(raw, dict):
        raise layer.bad("'neuron' is not a group")
    ntype = _string(layer, raw, "type")
    if ntype == "SDNN":
        return _sdnn_neuron(layer, raw, shape, is_input)
    if ntype not in ("CUBA", "LOIHI"):
        what = "resonate-and-fire" if "RF" in ntype else "unknown"
        raise UnsupportedError(f"{layer.where}: neuron type '{ntype}' ({what}) is not "
                               f"supported; supported: {SUPPORTED_NEURONS}")
    i_decay = layer.scalar("iDecay", raw, "neuron/iDecay")
    v_decay = layer.scalar("vDecay", raw, "neuron/vDecay")
    vth = layer.scalar("vThMant", raw, "neuron/vThMant")
    for name, value in (("iDecay", i_decay), ("vDecay", v_decay)):
        if not 0 <= value <= DECAY_UNITY:
            raise UnsupportedError(f"{layer.where}: neuron {name} ({value}) is outside "
                                   f"[0, {DECAY_UNITY}]")
    if not 0 <= vth < _INT32_SAFE:
        raise UnsupportedError(f"{layer.where}: neuron vThMant ({vth}) is outside "
                               f"[0, {_INT32_SAFE - 1}]")
    if "refDelay" in raw:
        ref = layer.scalar("refDelay", raw, "neuron/refDelay")
        if ref > 1:
            raise UnsupportedError(
                f"{layer.where}: refractory delay refDelay ({ref}) is not supported (Lava's "
                f"LIF has none; netx ignores it); supported: {SUPPORTED_NEURONS}")
    graded = "gradedSpike" in raw and layer.scalar("gradedSpike", raw, "neuron/gradedSpike")
    bits = layer.scalar("messageBits", raw, "neuron/messageBits") if "messageBits" in raw \
        else 0
    if graded or bits:
        raise UnsupportedError(f"{layer.where}: graded spikes from CUBA neurons "
                               f"(gradedSpike={bool(graded)}, messageBits={bits}) are not "
                               f"supported; supported: {SUPPORTED_NEURONS}")
    return FxLIF(name="", shape=shape, du=i_decay - 1, dv=v_decay, vth=vth,
                 bias_exp=NETX_BIAS_EXP)


def _sdnn_neuron(layer: _Layer, raw: dict, shape: tuple[int, ...],
                 is_input: bool) -> FxSigmaDelta:
    bits = (layer.scalar("messageBits", raw, "neuron/messageBits") if "messageBits" in raw
            else NETX_SDNN_MESSAGE_BITS)
    if not 1 <= bits <= 24:
        raise UnsupportedError(f"{layer.where}: neuron messageBits ({bits}) outside [1, 24]")
    if "activation" in raw:      # netx ignores it and always uses ReLU: refuse the others
        act = _string(layer, raw, "activation")
        if act.lower() != "relu":
            raise UnsupportedError(f"{layer.where}: SDNN activation '{act}' is not supported "
                                   "(netx and Lava's SigmaDelta implement ReLU only)")
    if "sigma_output" in raw and not is_input:    # netx tests the key, not its value
        return FxSigmaDelta(name="", shape=shape, role="sigma", num_message_bits=bits)
    vth = layer.scalar("vThMant", raw, "neuron/vThMant")
    if not 0 <= vth < _SDNN_SAFE:
        raise UnsupportedError(f"{layer.where}: neuron vThMant ({vth}) is outside [0, "
                               f"{_SDNN_SAFE - 1}] (Lava scales it by 2**"
                               f"{2 * NETX_SPIKE_EXP} in int32)")
    return FxSigmaDelta(name="", shape=shape, role="delta" if is_input else "sigma_delta",
                        vth=vth, spike_exp=NETX_SPIKE_EXP, state_exp=NETX_SPIKE_EXP,
                        num_message_bits=bits)


def _bias(layer: _Layer, shape: tuple[int, ...], neuron=None) -> np.ndarray:
    """Bias mantissas in our (C, H, W) / (N,) order (blocks/process.py:53-72)."""
    if "bias" not in layer.raw:
        return np.zeros(shape, np.int32)
    b = layer.ints("bias")
    sdnn = getattr(neuron, "runs_in_global_time", False)   # a sigma-delta (SDNN) neuron
    if sdnn and neuron.role == "sigma":
        raise UnsupportedError(f"{layer.where}: a sigma output layer with a bias is not "
                               "supported (netx's Sigma process takes no bias)")
    if sdnn:
        if np.abs(b).max() >= _SDNN_SAFE:
            raise UnsupportedError(f"{layer.where}: bias {int(np.abs(b).max())} overflows "
                                   f"Lava's int32 bias << {2 * NETX_SPIKE_EXP}; supported: "
                                   f"|bias| < {_SDNN_SAFE}")
    elif b.min() < -_INT16 or b.max() >= _INT16:
        worst = int(b.min()) if -b.min() > b.max() else int(b.max())
        raise UnsupportedError(f"{layer.where}: bias {worst} does not fit Lava's int16 "
                               f"bias_mant; supported: [{-_INT16}, {_INT16 - 1}]")
    if len(shape) == 1:
        if b.size not in (1, shape[0]):
            raise layer.bad(f"bias of shape {b.shape} does not fit {shape[0]} neurons")
        return np.broadcast_to(b.reshape(-1), shape).astype(np.int32)
    whc = shape[::-1]
    if list(b.shape) == list(whc):
        return np.ascontiguousarray(b.transpose(2, 1, 0)).astype(np.int32)
    if b.ndim == 1 and b.shape[0] == shape[0]:
        return np.broadcast_to(b[:, None, None], shape).astype(np.int32)
    raise layer.bad(f"bias of shape {b.shape} could not be broadcast to neurons {shape} "
                    "(CHW); expected per-channel or full WHC")


def _dense_delay(layer: _Layer, shape: tuple[int, int]) -> np.ndarray | None:
    """netx's dense delays (hdf5.py:425-448): a scalar, one per output (axonal), one per
    input, or one per synapse; values above 62 are clamped to 62 as netx does."""
    if "delay" not in layer.raw:
        return None
    d = layer.ints("delay")
    if d.size and d.min() < 0:
        raise layer.bad(f"negative delay ({int(d.min())})")
    d = np.clip(d, 0, NETX_MAX_DELAY)
    if d.ndim == 0 or d.size == 1:
        d = np.full(shape, int(d.reshape(-1)[0]) if d.size else 0)
    elif d.ndim == 1 and d.size == shape[0]:
        d = np.repeat(d.reshape(-1, 1), shape[1], axis=1)
    elif d.ndim == 1 and d.size == shape[1]:
        d = np.repeat(d.reshape(1, -1), shape[0], axis=0)
    elif tuple(d.shape) != tuple(shape):
        raise layer.bad(f"delay of shape {d.shape} does not fit weights {shape}")
    return d.astype(np.int32) if d.any() else None


def _no_delay(layer: _Layer) -> None:
    if "delay" not in layer.raw:
        return
    d = layer.ints("delay")
    if np.any(d != 0):
        clamped = int(min(int(d.max()), NETX_MAX_DELAY))
        raise UnsupportedError(f"{layer.where}: synaptic delays (max {int(d.max())}, netx "
                               f"clamps to {clamped}; min {int(d.min())}) are not supported; "
                               "supported: delay 0 (one step per layer)")


# ------------------------------------------------------------------ graph building
def _build(path: Path, raw_layers: list[dict], input_shape, input_bits: int | None,
           input_signed: bool, skip_input_layer: bool = False) -> Graph:
    layers = [_Layer(path, i, raw) for i, raw in enumerate(raw_layers)]
    for layer in layers:
        if layer.type not in SUPPORTED_LAYERS:
            raise UnsupportedError(f"{layer.where}: layer type '{layer.type}' is not "
                                   f"supported; supported: {', '.join(SUPPORTED_LAYERS)}")
    meta = {"source": path.name, "frontend": "netx",
            "netx": {"skip_layers": 0, "input_neuron": False, "input_shape_xyz": None,
                     "input_layer": "none"}}
    shape: tuple[int, ...] | None = None
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
    start, encoder = 0, None
    if layers[0].type == "input":
        first = layers[0]
        if "shape" in first.raw or "neuron" in first.raw:   # netx ignores it otherwise
            shape = first.shape()
        if "neuron" in first.raw:
            meta["netx"]["input_neuron"] = True
            # SDNN: the delta encoder, which netx leaves unwired; CUBA: a LIF layer that
            # netx drives only through its bias (see the module docstring)
            encoder = _neuron(first, first.raw["neuron"], shape, is_input=True)
            transform = _input_transform(first)
            if "bias" in first.raw or "weight" in first.raw:
                meta["netx"]["input_transform_ignored"] = True  # netx ignores them too
            if encoder.takes_bias_frames and skip_input_layer:   # a CUBA input layer
                meta["netx"].update(skip_layers=1, input_layer="skipped",
                                    input_neurons_skipped=int(np.prod(shape)))
                meta["report_sections"] = [_skipped_note(first, shape)]
                encoder = None
            elif encoder.takes_bias_frames:
                if len(shape) == 2:
                    raise UnsupportedError(f"{first.where}: a bias-driven input layer of 2 "
                                           f"axes {list(shape)} is not supported; supported:"
                                           " (C, H, W) or (N,)")
                bits = NETX_BIAS_INPUT_BITS if input_bits is None else input_bits
                if bits < 2:
                    raise UnsupportedError(f"{first.where}: bias frames of {bits} bit are "
                                           "not supported; supported: 2 to 16 signed bits")
                meta["netx"].update(input_layer="bias", input_transform=transform,
                                    input_bits=int(bits))
                meta["report_sections"] = [_bias_note(first, shape, bits, transform)]
            else:
                meta["netx"].update(skip_layers=1, input_layer="delta")
        start = 1
    if skip_input_layer and meta["netx"]["input_layer"] != "skipped":
        raise UnsupportedError(f"{path}: skip_input_layer needs a layer 0 of type input with "
                               f"a CUBA neuron; this file's input is "
                               f"'{meta['netx']['input_layer']}'")
    for layer in layers[start:]:
        if layer.type == "input":
            raise UnsupportedError(f"{layer.where}: an input layer is supported only as "
                                   "layer 0")
    synapses = [lay for lay in layers if lay.type in ("dense", "dense_rec", "conv")]
    if not synapses:
        raise InputFileError(f"{path}: no dense or conv layer")
    if shape is None:
        if synapses[0].type == "conv":
            raise InputFileError(f"{path}: the first layer is conv and the file has no "
                                 "input layer; pass input_shape=(C, H, W)")
        shape = (_dense_weight(synapses[0]).shape[1],)
    if len(shape) == 3:
        meta["netx"]["input_shape_xyz"] = list(shape[::-1])
    kinds = {type(_neuron(lay, lay.raw.get("neuron") if lay.type != "conv"   # default
                          else lay.get("neuron"), (1,))) for lay in synapses}
    if encoder is not None:
        kinds.add(type(encoder))
    if len(kinds) > 1:
        raise UnsupportedError(f"{path}: the network mixes CUBA and SDNN neurons; supported: "
                               "all layers CUBA or all SDNN")
    sdnn = FxSigmaDelta in kinds
    meta["netx"]["sdnn"] = sdnn
    graph = Graph(meta)
    graded = encoder is not None and encoder.runs_in_global_time    # SDNN delta encoder
    try:
        if encoder is not None and encoder.takes_bias_frames:
            inp = Input(name="input", shape=shape, encoding="bias",
                        bits=meta["netx"]["input_bits"])
        else:
            inp = Input(name="input", shape=shape, encoding="graded" if graded else "spikes",
                        bits=8 if input_bits is None else input_bits,
                        signed=graded and input_signed)
        prev = graph.add(inp).name
    except SnnCompileError as exc:
        raise InputFileError(f"{path}: input shape {shape}: {exc}") from None
    bits = 0    # message bits of what the next synapse reads (netx input_message_bits)
    if encoder is not None:
        encoder.name = "L0_delta" if graded else "L0_lif"
        prev = _add(graph, encoder, prev, layers[0])
        bits = _out_bits(encoder)
    flatten_next = False
    for layer in layers[start:]:
        if layer.type == "flatten":
            flatten_next = True
            continue
        prev_shape = graph.shape(prev)
        if layer.type in ("dense", "dense_rec"):
            if len(prev_shape) > 1:
                if not flatten_next and prev != "input":
                    raise layer.bad(f"dense layer follows a {prev_shape} (CHW) layer without "
                                    "a flatten layer")
                prev = _add(graph, Flatten(name=f"L{layer.index}_flatten"), prev, layer)
            flatten_next = False
            prev, bits = _dense(graph, layer, prev, bits)
        else:
            if len(prev_shape) != 3:
                raise layer.bad(f"conv layer needs a (C, H, W) input, previous layer gives "
                                f"{prev_shape}")
            prev, bits = _conv(graph, layer, prev, bits)
    _add(graph, Output(name="output"), prev, layers[-1])
    return graph


def _input_transform(layer: _Layer) -> dict:
    """netx's `Network.in_layer.transform` (hdf5.py:249-257): `int()` of the input layer's
    `weight` and `bias` (defaults 64 and 0). netx does not apply it; lava-dl's data
    loaders do (PilotNet: bias_mant = 2 * weight * pixel - weight + bias)."""
    out = {}
    for key, default in (("weight", NETX_INPUT_WEIGHT), ("bias", 0)):
        if key not in layer.raw:
            out[key] = default
            continue
        value = np.asarray(layer.raw[key])
        if value.size != 1 or value.dtype.kind not in "biuf":
            raise UnsupportedError(f"{layer.where}: input transform '{key}' of shape "
                                   f"{value.shape} ({value.dtype}) is not supported; netx "
                                   "reads it with int(): supported: one number")
        x = float(value.reshape(-1)[0])
        if not math.isfinite(x) or abs(x) >= 2.0 ** 31:
            raise UnsupportedError(f"{layer.where}: input transform '{key}' ({x}) is not a "
                                   "finite 32-bit number")
        out[key] = int(x)                 # int() truncates, as netx's does
    return out


def _bias_note(layer: _Layer, shape, bits: int, transform: dict) -> dict:
    n = int(np.prod(shape))
    return {"title": "Input (netx input layer driven through its bias)", "text": (
        f"Layer 0 of the netx file is an input layer with a CUBA neuron; netx never wires its "
        f"input port, so it is driven only through its bias. It is compiled as the neuron "
        f"layer L0_lif ({n:,} neurons, mapped and counted like every layer) whose "
        f"bias_mant is the input frame: input files hold signed {bits}-bit integers "
        f"(samples, steps, {', '.join(map(str, shape))}), one frame held for all steps of "
        f"its sample. netx leaves its input transform (weight {transform['weight']}, bias "
        f"{transform['bias']}) to the data loader (lava-dl PilotNet: bias_mant = "
        f"2 * weight * pixel - weight + bias, pixels in [0, 1]): frames must already be "
        f"transformed.")}


def _skipped_note(layer: _Layer, shape) -> dict:
    return {"title": "Input (netx input layer skipped)", "text": (
        f"Layer 0 of the netx file is an input layer with a CUBA neuron "
        f"({int(np.prod(shape)):,} neurons). It was SKIPPED on request (skip_input_layer, "
        f"netx skip_layers=1): spikes go straight to layer 1, so this build is not the "
        f"network the file describes and those neurons are not mapped or counted.")}


def _add(graph: Graph, node, prev: str, layer: _Layer) -> str:
    try:
        return graph.add(node, [prev]).name
    except SnnCompileError as exc:
        raise layer.bad(str(exc)) from None


def _dense_weight(layer: _Layer) -> np.ndarray:
    if "weight" not in layer.raw and any(str(k).startswith("weight") for k in layer.raw):
        raise UnsupportedError(f"{layer.where}: complex (real/imag) weights are not supported")
    w = layer.get("weight")
    if isinstance(w, dict):
        raise UnsupportedError(f"{layer.where}: complex (real/imag) weights are not supported")
    w = layer.ints("weight")
    n_out = int(np.prod(layer.shape()))
    if w.ndim == 1:                                  # hdf5.py:396-397
        if w.size % n_out:
            raise layer.bad(f"weight of {w.size} values does not split into {n_out} rows")
        w = w.reshape(n_out, -1)
    if w.ndim != 2 or w.shape[0] != n_out:
        raise layer.bad(f"weight of shape {w.shape} does not match {n_out} neurons")
    return w


def _out_bits(neuron) -> int:
    return neuron.num_message_bits if neuron.runs_in_global_time else 0


def _neuron_name(layer: _Layer, neuron) -> str:
    return f"L{layer.index}_" + ("lif" if not neuron.runs_in_global_time else
                                 "sigma" if neuron.role == "sigma" else "sd")


def _dense(graph: Graph, layer: _Layer, prev: str, in_bits: int) -> tuple[str, int]:
    w = _dense_weight(layer)
    delay = _dense_delay(layer, w.shape)
    n_out = w.shape[0]
    shape = (n_out,)
    neuron = _neuron(layer, layer.raw.get("neuron"), shape)   # default if absent
    if layer.type == "dense_rec":
        return _dense_rec(graph, layer, prev, in_bits, w, neuron)
    prepared, bits, exp, mode = netx_dense_weights(w, layer.where)
    syn = FxDense(name=f"L{layer.index}_dense", weight=prepared, weight_exp=exp,
                  num_weight_bits=bits, sign_mode=mode, num_message_bits=in_bits,
                  delay=delay)
    prev = _add(graph, syn, prev, layer)
    neuron.name = _neuron_name(layer, neuron)
    neuron.bias_mant = _bias(layer, shape, neuron)
    return _add(graph, neuron, prev, layer), _out_bits(neuron)


def _dense_rec(graph: Graph, layer: _Layer, prev: str, in_bits: int, w: np.ndarray,
               neuron) -> tuple[str, int]:
    """A netx `dense_rec` layer (slayer's `block.cuba.Recurrent`): a dense synapse, the
    layer's neurons and recurrent synapses from their spikes back into them (netx's
    RecurrentDense: a second Lava Dense from s_out to a_in, one step later)."""
    n_out = w.shape[0]
    if not neuron.takes_bias_frames:
        raise UnsupportedError(f"{layer.where}: a recurrent layer of sigma-delta neurons is "
                               "not supported; supported: dense_rec with CUBA neurons")
    if _dense_delay(layer, w.shape) is not None:
        raise UnsupportedError(f"{layer.where}: a dense_rec layer with synaptic delays is not "
                               "supported (netx gives its recurrent synapses the same delays, "
                               "untested upstream); supported: delay 0")
    w_rec = layer.ints("weight_rec")
    if w_rec.ndim == 1 and w_rec.size == n_out * n_out:        # hdf5.py:398-399
        w_rec = w_rec.reshape(n_out, n_out)
    if tuple(w_rec.shape) != (n_out, n_out):
        raise layer.bad(f"weight_rec of shape {w_rec.shape} is not ({n_out}, {n_out})")
    ff, rec, bits, exp, (mode, mode_rec) = netx_recurrent_weights(w, w_rec, layer.where)
    syn = FxDense(name=f"L{layer.index}_dense", weight=ff, weight_exp=exp,
                  num_weight_bits=bits, sign_mode=mode, num_message_bits=in_bits)
    prev = _add(graph, syn, prev, layer)
    neuron.name = _neuron_name(layer, neuron)
    neuron.bias_mant = _bias(layer, (n_out,), neuron)
    back = FxRecDense(name=f"L{layer.index}_rec", weight=rec, weight_exp=exp,
                      num_weight_bits=bits, sign_mode=mode_rec)
    try:
        graph.add_delay(back, (n_out,))
        graph.add(neuron, [prev, back.name])
        graph.connect(neuron.name, back.name)
    except SnnCompileError as exc:
        raise layer.bad(str(exc)) from None
    return neuron.name, _out_bits(neuron)


def _conv(graph: Graph, layer: _Layer, prev: str, in_bits: int) -> tuple[str, int]:
    shape = layer.shape()
    if len(shape) != 3:
        raise layer.bad(f"conv 'shape' {list(shape)} is not (C, H, W)")
    w = layer.ints("weight")
    if w.ndim < 4 or int(np.prod(w.shape[4:])) != 1:    # slayer adds a time axis of 1
        raise layer.bad(f"conv weight of shape {w.shape} is not OIHW")
    w = w.reshape(w.shape[:4])
    if np.abs(w).max() >= 1 << 23:
        raise UnsupportedError(f"{layer.where}: conv weight {int(np.abs(w).max())} exceeds "
                               "24-bit signed range")
    _no_delay(layer)
    stride, padding, dilation = layer.pair("stride"), layer.pair("padding"), \
        layer.pair("dilation")
    groups = layer.scalar("groups")
    if dilation != (1, 1):
        raise UnsupportedError(f"{layer.where}: dilation {dilation} is not supported; "
                               "supported: dilation 1")
    if min(stride) < 1 or min(padding) < 0 or groups < 1 or w.shape[0] % groups:
        raise layer.bad(f"invalid stride {stride}, padding {padding} or groups {groups}")
    neuron = _neuron(layer, layer.get("neuron"), shape)
    syn = FxConv2d(name=f"L{layer.index}_conv", weight=w.astype(np.int32), stride=stride,
                   padding=padding, groups=groups, num_message_bits=in_bits)
    prev = _add(graph, syn, prev, layer)
    if graph.shape(prev) != shape:
        raise layer.bad(f"conv output {graph.shape(prev)} does not match the layer shape "
                        f"{shape}")
    neuron.name = _neuron_name(layer, neuron)
    neuron.bias_mant = _bias(layer, shape, neuron)
    return _add(graph, neuron, prev, layer), _out_bits(neuron)
