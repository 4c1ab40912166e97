"""Import a NIR graph (Neuromorphic Intermediate Representation, `nir` package) into a float
`Graph`.

Discretisation (forward Euler, the convention NIR exporters such as snnTorch and norse use).
With step `dt` the continuous CubaLIF

    tau_syn dI/dt = -I + w_in x        tau_mem dv/dt = (v_leak - v) + r I

becomes, in Loihi's update order (current first, then voltage with the new current):

    I = (1 - du) I + du * w_in * x     du = dt / tau_syn
    v = (1 - dv) v + dv * v_leak + dv * r * I     dv = dt / tau_mem

Loihi's LIF adds u to v with gain 1, so we rescale the state: u = I / a, V = v / (a g) with
a = du * w_in (current gain) and g = dv * r (voltage gain). That is exact and gives

    LIF(du, dv, vth = v_threshold / (a g), bias = v_leak / (a r))

snnTorch writes r = tau_mem/dt and w_in = tau_syn/dt, for which a = g = 1. `LIF` is the
same with du = 1 (no current state), `IF` (dv/dt = r I) has du = 1, dv = 0, g = dt r,
`Threshold` is a memoryless LIF (du = dv = 1). Forward Euler is exact for the discrete
models the exporters simulate; against the continuous ODE its decay per step (1 - dt/tau)
differs from exp(-dt/tau): `graph.meta["nir_approximation"]` gives that error per layer.

A bias on a synapse (Affine, Conv2d) adds a constant to the current. It is exact as an LIF
bias when the next neuron has no current state (LIF, IF, Threshold, or CubaLIF with
tau_syn = dt); into a CubaLIF current that decays it would build up over the first steps,
which Loihi (no synaptic bias) cannot reproduce, so that case is refused.

    >>> graph = import_nir("model.nir", dt=1e-3)
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputFileError, UnsupportedError
from ..ir import LIF, AvgPool2d, Conv2d, Dense, Flatten, Graph, Input, Output, SumPool2d
from .h5safe import check_hdf5

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d",
             "Delay", "Flatten", "Scale", "LIF", "CubaLIF", "IF", "Threshold")
_REL_TOL = 1e-6  # per-neuron parameters closer than this count as one per-layer value


def import_nir(source, dt: float = 1e-3, *, norse_quirks: bool | None = None) -> Graph:
    """Read a NIR file (path) or a `nir.NIRGraph` into a float `Graph`.

    dt: simulation step in seconds used to discretise time constants.
    norse_quirks: the file was written by norse's `to_nir` (norse <= 1.1.0), which stores
    tau * dt instead of tau (norse#411) and feeds input current with gain 1 (w_in left at 1).
    None detects it: every time constant below dt (a decay fraction above 1, impossible
    for a forward-Euler model) is read as the norse quirk.

        >>> g = import_nir("net.nir"); g.meta["nir_approximation"][0]["dv"]
        0.05
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise UnsupportedError(f"import_nir: dt ({dt}) must be a positive number of seconds")
    nirgraph, where = _load(source)
    chain = _chain(nirgraph, where)
    quirks: list[str] = []
    if norse_quirks is None:
        norse_quirks = _looks_like_norse(chain, dt)
        if norse_quirks:
            quirks.append("every time constant is below dt: read as norse#411 (tau written "
                          "as tau*dt) with norse's unit input-current gain")
    elif norse_quirks:
        quirks.append("norse quirks applied: tau divided by dt (norse#411), input-current "
                      "gain 1")
    meta = {"source": where, "frontend": "nir", "dt": dt, "discretisation": "forward-euler",
            "nir_quirks": quirks, "nir_approximation": []}
    file_dt = nirgraph.metadata.get("dt") if isinstance(nirgraph.metadata, dict) else None
    try:
        file_dt = None if file_dt is None else float(np.asarray(file_dt))
    except (ValueError, TypeError):
        raise InputFileError(f"{where}: metadata dt ({str(file_dt)[:40]!r}) is not a "
                             "number") from None
    if file_dt is not None and not math.isclose(file_dt, dt):
        quirks.append(f"file metadata (snncompile export) says dt={float(np.asarray(file_dt))}"
                      f", imported with dt={dt}")
    return _Builder(dt, bool(norse_quirks), meta).build(chain)


# ---------------------------------------------------------------- reading and structure
def _load(source):
    import nir

    if isinstance(source, nir.NIRGraph):
        return source, "<NIRGraph>"
    path = Path(source)
    if not path.is_file():
        raise InputFileError(f"{path}: NIR file not found")
    check_hdf5(path, "NIR file")   # no external data, sizes bounded, before nir reads it
    try:
        with warnings.catch_warnings():  # nir/numpy warn on odd contents: not for users
            warnings.simplefilter("ignore")
            return nir.read(path, type_check=False), path.name
    except Exception as exc:  # h5py/nir raise OSError, KeyError, ValueError, AssertionError...
        text = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{path}: not a readable NIR file ({type(exc).__name__}: "
                             f"{text})") from None


def _type(node) -> str:
    return type(node).__name__


def _chain(g, where: str) -> list[tuple[str, object]]:
    """The nodes of a feed-forward chain Input -> ... -> Output, in order."""
    import nir

    for name, node in g.nodes.items():
        if node is None:
            raise UnsupportedError(f"{where}: node '{name}' is empty (the exporter could not "
                                   "translate that layer); supported: " + ", ".join(SUPPORTED))
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedError(f"{where}: node '{name}' is a nested graph (a recurrent "
                                   "layer?); only feed-forward chains are supported")
        if _type(node) in ("LI", "CubaLI"):
            raise UnsupportedError(
                f"{where}: node '{name}' is a {_type(node)}, a non-spiking leaky readout; "
                "Loihi outputs here are spike counts of a spiking layer, and a real-valued "
                "membrane cannot be read out; replace it by a LIF/CubaLIF readout")
        if _type(node) not in SUPPORTED:
            raise UnsupportedError(f"{where}: node '{name}' has unsupported type "
                                   f"{_type(node)}; supported: " + ", ".join(SUPPORTED))
    succ: dict[str, list[str]] = {n: [] for n in g.nodes}
    pred: dict[str, list[str]] = {n: [] for n in g.nodes}
    for src, dst in g.edges:
        for end in (src, dst):
            if end not in g.nodes:
                raise InputFileError(f"{where}: edge ({src}, {dst}) names a missing node")
        if src == dst:
            raise UnsupportedError(f"{where}: recurrent edge {src} -> {dst}; only "
                                   "feed-forward chains are supported")
        succ[src].append(dst)
        pred[dst].append(src)
    inputs = [n for n, v in g.nodes.items() if _type(v) == "Input"]
    outputs = [n for n, v in g.nodes.items() if _type(v) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedError(f"{where}: needs exactly one Input and one Output, has "
                               f"{len(inputs)} and {len(outputs)}")
    for n in g.nodes:
        if len(succ[n]) > 1 or len(pred[n]) > 1:
            raise UnsupportedError(f"{where}: node '{n}' has {len(pred[n])} inputs and "
                                   f"{len(succ[n])} outputs; only feed-forward chains "
                                   "(no branches, no recurrent edges) are supported")
    order, seen, cur = [], set(), inputs[0]
    while True:
        if cur in seen:
            raise UnsupportedError(f"{where}: recurrent edge into '{cur}'; only feed-forward "
                                   "chains are supported")
        seen.add(cur)
        order.append((cur, g.nodes[cur]))
        if not succ[cur]:
            break
        cur = succ[cur][0]
    if cur != outputs[0] or len(seen) != len(g.nodes):
        left = sorted(set(g.nodes) - seen)
        raise UnsupportedError(f"{where}: the nodes do not form one chain from Input to "
                               f"Output (not reached: {left or [cur]})")
    return order


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):  # norse hands over torch tensors
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _looks_like_norse(chain, dt: float) -> bool:
    taus = []
    for _, node in chain:
        for key in ("tau", "tau_mem", "tau_syn"):
            if hasattr(node, key):
                taus.append(_arr(getattr(node, key)).ravel())
    if not taus:
        return False
    t = np.concatenate(taus)
    return bool(t.size and np.all(np.isfinite(t)) and np.all((t > 0) & (t < dt)))


def _name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "node"


def _pair(v, what: str, where: str) -> tuple[int, int]:
    a = np.asarray(v).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2:
        raise UnsupportedError(f"{where}: {what} ({v}) must be one or two integers")
    if not np.all(np.isfinite(a.astype(float))) or np.any(np.abs(a.astype(float)) > 65535):
        raise UnsupportedError(f"{where}: {what} ({v}) is out of range (|value| <= 65535)")
    return int(a[0]), int(a[1])


# ---------------------------------------------------------------- translation
class _Builder:
    """Walks the chain keeping the current per-step shape, a constant added to the signal
    by synapse biases (`bias`), and a per-element scale waiting for the next synapse."""

    def __init__(self, dt: float, norse: bool, meta: dict):
        self.dt, self.norse, self.meta = dt, norse, meta
        self.nodes: list = []
        self.shape: tuple[int, ...] = ()
        self.bias: np.ndarray | None = None
        self.in_scale: np.ndarray | None = None
        self.in_delay: np.ndarray | None = None  # steps per input, for the next Linear

    def build(self, chain) -> Graph:
        for i, (key, node) in enumerate(chain):
            name, where = _name(key), f"NIR node '{key}' ({_type(node)})"
            nxt = chain[i + 1][1] if i + 1 < len(chain) else None
            try:
                getattr(self, "_" + _type(node).lower())(name, node, where, nxt)
            except (ValueError, TypeError, OverflowError) as exc:
                # a hostile file: a string where numbers belong, an infinite size...
                raise InputFileError(f"{self.meta['source']}: {where}: malformed parameter "
                                     f"({type(exc).__name__}: {str(exc)[:100]})") from None
        graph = Graph.sequential(self.nodes, meta=self.meta)
        graph.validate()
        return graph

    # ---- structure
    def _input(self, name, node, where, nxt):
        shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
        want = _expected_rank(nxt)
        if want is not None and len(shape) == want + 1:
            self.meta["nir_quirks"].append(f"input shape {shape} includes a batch "
                                           f"dimension; using {shape[1:]}")
            shape = shape[1:]
        self.shape = shape
        self.nodes.append(Input(name, shape=shape))

    def _output(self, name, node, where, nxt):
        if not self.nodes or not isinstance(self.nodes[-1], LIF):
            raise UnsupportedError(f"{where}: the output must be fed by a spiking neuron "
                                   "layer (LIF, CubaLIF, IF, Threshold); a non-spiking "
                                   "readout cannot be compiled")
        if self.in_scale is not None:
            raise UnsupportedError(f"{where}: a Scale on the output spikes cannot be "
                                   "compiled; outputs are spike counts")
        self.nodes.append(Output(name))

    def _flatten(self, name, node, where, nxt):
        n = int(np.prod(self.shape))
        if self.bias is not None:
            self.bias = self.bias.reshape(n)
        if self.in_scale is not None:
            self.in_scale = self.in_scale.reshape(n)
        self.shape = (n,)
        self.nodes.append(Flatten(name))

    def _pool(self, cls, name, node, where):
        k = _pair(node.kernel_size, "kernel_size", where)
        if _pair(node.stride, "stride", where) != k:
            raise UnsupportedError(f"{where}: stride ({node.stride}) differs from the kernel "
                                   f"({k}); only non-overlapping pools are supported")
        if any(_pair(node.padding, "padding", where)):
            raise UnsupportedError(f"{where}: padding ({node.padding}) is not supported")
        if self.in_scale is not None and not _uniform(self.in_scale):
            raise UnsupportedError(f"{where}: a per-element Scale before a pool cannot be "
                                   "moved into the next synapse")
        pool = cls(name, kernel=k)
        self.nodes.append(pool)
        if self.bias is not None:  # pooling is linear: a constant map pools to a constant
            self.bias = _np_pool(self.bias, k, average=cls is AvgPool2d)
        if self.in_scale is not None:
            self.in_scale = np.full(pool.out_shape([self.shape]), self.in_scale.flat[0])
        self.shape = pool.out_shape([self.shape])

    def _sumpool2d(self, name, node, where, nxt):
        self._pool(SumPool2d, name, node, where)

    def _avgpool2d(self, name, node, where, nxt):
        self._pool(AvgPool2d, name, node, where)

    # ---- synapses
    def _linear(self, name, node, where, nxt, bias=None):
        w = _arr(node.weight)
        if w.ndim != 2:
            raise UnsupportedError(f"{where}: weight of shape {w.shape} is not 2-D")
        if self.shape != (w.shape[1],):
            raise UnsupportedError(f"{where}: expects input ({w.shape[1]},), gets "
                                   f"{self.shape}")
        self._check_free(where)
        if self.in_scale is not None:
            w = w * self.in_scale.reshape(1, -1)
            self.in_scale = None
        delay = None
        if self.in_delay is not None:  # a Delay on the inputs: per column of the weights
            delay = np.repeat(self.in_delay.reshape(1, -1), w.shape[0], axis=0)
            self.in_delay = None
        self.nodes.append(Dense(name, weight=w.astype(np.float32), delay=delay))
        self.shape = (w.shape[0],)
        self._set_bias(bias, where)

    def _delay(self, name, node, where, nxt):
        """A Delay in front of a Linear/Affine becomes per-synapse delays of that layer:
        round(delay / dt) steps, in [0, 62] (Loihi 2's delay field)."""
        if _type(nxt) not in ("Linear", "Affine") or self.in_scale is not None \
                or self.bias is not None:
            raise UnsupportedError(f"{where}: a Delay is supported only directly in front of "
                                   "a Linear or Affine layer (it becomes that layer's "
                                   "synaptic delays)")
        d = np.broadcast_to(_arr(node.delay).astype(np.float64), self.shape)
        steps = np.round(d / self.dt)
        if not np.all(np.isfinite(steps)) or steps.min() < 0 or steps.max() > 62:
            raise UnsupportedError(f"{where}: delay / dt spans [{steps.min()}, {steps.max()}] "
                                   "steps; Loihi 2 holds 0 .. 62")
        err = float(np.abs(steps * self.dt - d).max())
        if err > 1e-9:
            self.meta["nir_quirks"].append(f"{name}: delays rounded to whole steps of dt "
                                           f"(largest error {err:.3g} s)")
        self.in_delay = steps.astype(np.int32).reshape(-1)

    def _affine(self, name, node, where, nxt):
        self._linear(name, node, where, nxt, bias=_arr(node.bias))

    def _conv2d(self, name, node, where, nxt):
        w = _arr(node.weight)
        if w.ndim != 4:
            raise UnsupportedError(f"{where}: weight of shape {w.shape} is not (O, I, kH, kW)")
        if _pair(node.dilation, "dilation", where) != (1, 1):
            raise UnsupportedError(f"{where}: dilation ({node.dilation}) is not supported")
        stride = _pair(node.stride, "stride", where)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            pad = pad.decode() if isinstance(pad, bytes) else pad
            if pad == "valid":
                pad = (0, 0)
            elif stride == (1, 1) and all(k % 2 for k in w.shape[2:]):
                pad = ((w.shape[2] - 1) // 2, (w.shape[3] - 1) // 2)
            else:
                raise UnsupportedError(f"{where}: padding 'same' needs stride 1 and odd "
                                       "kernels")
        pad = _pair(pad, "padding", where)
        groups = int(np.asarray(node.groups))
        self._check_free(where)
        if self.in_scale is not None:
            s = self.in_scale.reshape(self.shape[0], -1)
            if groups != 1 or not np.allclose(s, s[:, :1], rtol=_REL_TOL):
                raise UnsupportedError(f"{where}: a Scale before a convolution must be per "
                                       "channel (and groups 1)")
            w = w * s[:, 0].reshape(1, -1, 1, 1)
            self.in_scale = None
        conv = Conv2d(name, weight=w.astype(np.float32), stride=stride, padding=pad,
                      groups=groups)
        self.shape = conv.out_shape([self.shape])  # raises GraphError on a mismatch
        self.nodes.append(conv)
        b = _arr(node.bias) if getattr(node, "bias", None) is not None else None
        if b is not None and b.size not in (1, w.shape[0]):
            raise UnsupportedError(f"{where}: bias of shape {b.shape} is not per channel")
        if b is not None:
            b = np.broadcast_to(b.reshape(-1, 1, 1), self.shape)
        self._set_bias(b, where)

    def _check_free(self, where):
        if self.bias is not None:
            raise UnsupportedError(f"{where}: a synapse bias reaches another synapse without "
                                   "a neuron in between; Loihi has no synaptic bias")

    def _set_bias(self, b, where):
        if b is None or not np.any(b):
            return
        self.bias = np.broadcast_to(b, self.shape).astype(np.float64)

    def _scale(self, name, node, where, nxt):
        s = np.broadcast_to(_arr(node.scale), self.shape).astype(np.float64)
        last = self.nodes[-1] if self.nodes else None
        if self.bias is not None:
            self.bias = self.bias * s
        if isinstance(last, Dense):
            last.weight = (last.weight * s.reshape(-1, 1)).astype(np.float32)
        elif isinstance(last, Conv2d):
            per = s.reshape(s.shape[0], -1)
            if not np.allclose(per, per[:, :1], rtol=_REL_TOL):
                raise UnsupportedError(f"{where}: a Scale after a convolution must be per "
                                       "channel to fold into its weights")
            last.weight = (last.weight * per[:, 0].reshape(-1, 1, 1, 1)).astype(np.float32)
        else:  # after a neuron or the input: scale the next synapse's inputs
            self.in_scale = s if self.in_scale is None else self.in_scale * s
        self.meta["nir_quirks"].append(f"Scale '{name}' folded into synapse weights")

    # ---- neurons
    def _params(self, node, keys, where):
        out = {}
        for key in keys:
            v = getattr(node, key, None)
            if v is None:
                continue
            a = _arr(v)
            try:
                out[key] = np.broadcast_to(a, self.shape)
            except ValueError:
                raise UnsupportedError(f"{where}: {key} of shape {a.shape} does not match "
                                       f"the layer shape {self.shape}") from None
        return out

    def _tau(self, tau: np.ndarray, key: str, where: str) -> float:
        """Decay fraction dt/tau for a per-layer time constant."""
        t = _one(tau, key, where)
        if self.norse:
            t = t / self.dt
        if not t > 0:
            raise UnsupportedError(f"{where}: {key} ({t}) must be > 0")
        # exporters store float32 (7 significant digits); the rest is noise of dt/(dt/d)
        d = 0.0 if math.isinf(t) else float(f"{self.dt / t:.7g}")
        if d > 1.0:
            raise UnsupportedError(
                f"{where}: {key} ({t} s) is shorter than dt ({self.dt} s): decay fraction "
                f"{d:.4g} > 1 under forward Euler; pass a smaller dt, or norse_quirks=True "
                "if norse wrote the file (norse#411 stores tau*dt)")
        return d

    def _neuron(self, name, where, du, dv, gain, p, pending_exact: bool):
        """Add LIF(du, dv) for a neuron whose voltage gets `gain` * input per step."""
        vreset = p.get("v_reset")
        if vreset is not None and np.any(vreset != 0):
            raise UnsupportedError(f"{where}: v_reset ({_show(vreset)}) is not 0; Loihi resets "
                                   "v to 0")
        if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
            raise UnsupportedError(f"{where}: input gain ({_show(gain)}) must be finite and > "
                                   "0 (check r, w_in)")
        vth = p["v_threshold"] / gain
        if np.any(p["v_threshold"] <= 0):
            raise UnsupportedError(f"{where}: v_threshold ({_show(p['v_threshold'])}) must be "
                                   "> 0")
        bias = p["leak"] / gain
        if self.bias is not None:
            if not pending_exact:
                raise UnsupportedError(
                    f"{where}: the preceding synapse has a bias ({_show(self.bias)}); into a "
                    "decaying synaptic current (tau_syn > dt) it builds up over time, which "
                    "is not a constant LIF bias and Loihi has no synaptic bias; retrain "
                    "without synapse bias, or use LIF/IF or tau_syn = dt")
            bias = bias + self.bias
            self.bias = None
        ratio = vth / vth.flat[0]
        if not np.allclose(ratio, 1.0, rtol=_REL_TOL):
            self._fold_per_neuron(where, ratio)
            bias = bias / ratio
        self.nodes.append(LIF(name, shape=self.shape, du=float(du), dv=float(dv),
                              vth=float(vth.flat[0]), bias=bias.astype(np.float32)))

    def _fold_per_neuron(self, where, ratio):
        """Per-neuron thresholds: divide rows of the feeding Dense so that one vth fits."""
        last = self.nodes[-1] if self.nodes else None
        if isinstance(last, Dense) and len(self.shape) == 1:
            last.weight = (last.weight / ratio.reshape(-1, 1)).astype(np.float32)
            return
        raise UnsupportedError(f"{where}: per-neuron thresholds/gains ({_show(ratio)} x) "
                               "need a Dense in front; Loihi's LIF has one threshold per "
                               "layer")

    def _report(self, name, kind, fractions: dict[str, float]):
        """Forward Euler decays by 1 - d per step where the ODE decays by exp(-d)."""
        row = {"layer": name, "nir_type": kind, "method": "forward-euler"}
        for key, d in fractions.items():
            row[key] = d
            row[f"{key}_decay_abs_error"] = abs((1.0 - d) - math.exp(-d))
            # 1 - d = exp(-dt / tau_eff): relative error of the effective time constant
            row[f"{key}_tau_rel_error"] = (0.0 if d == 0 else -1.0 if d >= 1 else
                                           d / -math.log1p(-d) - 1.0)
        self.meta["nir_approximation"].append(row)

    def _cubalif(self, name, node, where, nxt):
        p = self._params(node, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                "v_reset", "w_in"), where)
        du = self._tau(p["tau_syn"], "tau_syn", where)
        dv = self._tau(p["tau_mem"], "tau_mem", where)
        w_in = p.get("w_in", np.ones(self.shape))
        a = w_in if self.norse else du * w_in  # norse adds the input current unscaled
        g = dv * p["r"]
        p["leak"] = dv * p["v_leak"]  # added to v each step; bias = leak / (a g)
        # a constant current b: with du = 1, u = x + b exactly, so b is an LIF bias
        self._neuron(name, where, du, dv, a * g, p, pending_exact=du == 1.0)
        self._report(name, "CubaLIF", {"du": du, "dv": dv})

    def _lif(self, name, node, where, nxt):
        p = self._params(node, ("tau", "r", "v_leak", "v_threshold", "v_reset"), where)
        dv = self._tau(p["tau"], "tau", where)
        g = dv * p["r"]
        p["leak"] = dv * p["v_leak"]
        self._neuron(name, where, 1.0, dv, g, p, pending_exact=True)
        self._report(name, "LIF", {"dv": dv})

    def _if(self, name, node, where, nxt):
        p = self._params(node, ("r", "v_threshold", "v_reset"), where)
        g = p["r"] if self.norse else self.dt * p["r"]  # norse's IAF adds input unscaled
        p["leak"] = np.zeros(self.shape)
        self._neuron(name, where, 1.0, 0.0, g, p, pending_exact=True)
        self._report(name, "IF", {})

    def _threshold(self, name, node, where, nxt):
        p = self._params(node, ("threshold",), where)
        p = {"v_threshold": p["threshold"], "leak": np.zeros(self.shape)}
        self._neuron(name, where, 1.0, 1.0, np.ones(self.shape), p, pending_exact=True)
        self._report(name, "Threshold", {})


def _expected_rank(nxt) -> int | None:
    """Per-sample rank the node after Input expects (to spot a batch dimension)."""
    if nxt is None:
        return None
    kind = _type(nxt)
    if kind in ("Linear", "Affine"):
        return 1
    if kind in ("Conv2d", "SumPool2d", "AvgPool2d"):
        return 3
    if kind == "Flatten":
        return 3
    for key in ("scale", "threshold", "v_threshold"):
        if hasattr(nxt, key) and np.ndim(_arr(getattr(nxt, key))) > 0:
            return np.ndim(_arr(getattr(nxt, key)))
    return None


def _one(a: np.ndarray, key: str, where: str) -> float:
    flat = np.asarray(a, dtype=np.float64).ravel()
    first = float(flat[0])
    if math.isinf(first) and np.all(flat == first):
        return first
    if not np.allclose(flat, first, rtol=_REL_TOL, atol=0):
        raise UnsupportedError(f"{where}: {key} differs between neurons ({_show(flat)}); "
                               "Loihi's LIF has one decay per layer")
    return first


def _uniform(a: np.ndarray) -> bool:
    return bool(np.allclose(a, a.flat[0], rtol=_REL_TOL))


def _show(a) -> str:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size and np.all(a == a[0]):
        return f"{a[0]:.6g}"
    return f"min {a.min():.6g}, max {a.max():.6g}"


def _np_pool(x: np.ndarray, k: tuple[int, int], average: bool) -> np.ndarray:
    c, h, w = x.shape
    y = x.reshape(c, h // k[0], k[0], w // k[1], k[1]).sum(axis=(2, 4))
    return y / (k[0] * k[1]) if average else y
