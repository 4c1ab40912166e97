"""Training layers. `SNN` is built from a plain config (see `SNN.__init__`) so that a
checkpoint is data only: the config plus a state dict, loaded with `weights_only=True`.

The LIF layer follows Loihi's CUBA update order exactly (see `snncompile.ir.nodes.LIF`):
current decays then adds input; voltage decays then adds current and bias; spike strictly
above threshold; reset v to 0, u untouched. Synapse layers (Linear/Conv2d) may carry a bias
(`"bias": true`), added to their output current every step: it enters u, which decays (the
compiler gives it an always-on bias axon, exact on the chip); the LIF layer's own bias is
added to v. A `batchnorm` layer (eval-mode statistics) right after a dense or conv2d layer
is folded into that synapse's weight and bias when the checkpoint is compiled. The network
is delay-free in time; the chip's one-step synapse delay only shifts each layer in time
(see the time semantics in `snncompile.ir.nodes`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UnsupportedError, is_max_pool, max_pool_refused

LAYER_TYPES = ("dense", "conv2d", "conv1d", "batchnorm", "sumpool2d", "avgpool2d", "sumpool1d",
               "avgpool1d", "flatten",
               "lif", "residual")
SYNAPSE_TYPES = ("dense", "conv2d", "conv1d")
"""Layer types with a weight: what a residual part ends with."""
BATCHNORM_AFTER = ("dense", "conv2d")
"""Layer types with a weight and an optional bias: what a batchnorm layer folds into."""


def check_batchnorm_order(specs: list, where: str) -> None:
    """Refuse, in one line, a batchnorm layer not directly after a dense or conv2d layer
    (the compiler folds it into that synapse's weight and bias; nothing else can hold it)."""
    for i, spec in enumerate(specs):
        if spec.get("type") == "batchnorm":
            before = specs[i - 1].get("type") if i else None
            if before not in BATCHNORM_AFTER:
                raise UnsupportedError(
                    f"{where} layer {i}: batchnorm must directly follow a dense or conv2d "
                    f"layer (it is folded into that synapse), not {before or 'the input'}")


class _Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, scale, at_zero):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x >= 0 if at_zero else x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (ctx.scale * x.abs() + 1.0) ** 2, None, None


def spike_fn(x: torch.Tensor, scale: float = 10.0, at_zero: bool = False) -> torch.Tensor:
    """Heaviside of x (1 where x > 0; where x >= 0 when `at_zero`), surrogate gradient."""
    return _Spike.apply(x, scale, at_zero)


MAX_LAYER_NEURONS = 1 << 24   # per layer output; a Loihi 2 chip holds about 2**20 neurons
MAX_LAYER_WEIGHTS = 1 << 28   # per layer: a config that asks for more is refused, not allocated


LEARNABLE = ("du", "dv", "vth")
"""LIF parameters a `lif` layer may learn (`learn`), PLIF style."""
PER = ("layer", "channel", "neuron")
"""How many values a learned parameter has: one per layer, per channel (the first axis
of the neuron shape: (C, 1, 1) for conv layers, every neuron of a dense layer) or per
neuron."""
VTH_MIN = 1e-3   # a learned threshold is kept at or above this (the spike divides by it)


class LIFLayer(nn.Module):
    """Current-based LIF over time. Input (B, T, *shape) current; output (B, T, *shape) spikes.

    du, dv: decay fractions in [0, 1]; vth > 0; each a number or an array broadcastable to
    `shape` (the float model passes a node's per-neuron values). `bias=True` learns a
    per-neuron bias on v. `learn` names parameters to train (PLIF-style leaks and
    thresholds: `LEARNABLE`), with `per` values (`PER`); they start from du, dv, vth and
    are used clamped (du, dv to [0, 1], vth to >= VTH_MIN): the compiled layer gets the
    clamped values.
    reset: "zero" (v = 0 after a spike), "subtract" (v -= vth) or "threshold" (v = vth,
    the MA-SNN authors' neuron); fire_at: ">" (spike
    where v > vth) or ">=" (see `snncompile.ir.nodes.LIF`).

        >>> LIFLayer((8, 4, 4), 0.2, 0.1, 1.0, learn=("du", "vth"), per="channel").vth.shape
        torch.Size([8, 1, 1])
    """

    surrogate_scale = 10.0
    """Slope of the fast-sigmoid surrogate gradient (`spike_fn`'s scale); training only,
    the forward spikes do not depend on it. Set on an instance to train with another."""

    def __init__(self, shape, du, dv, vth=1.0, bias: bool = False,
                 reset: str = "zero", fire_at: str = ">", learn=(), per: str = "layer"):
        super().__init__()
        from ..ir.nodes import FIRE_AT, RESETS
        for key, val, allowed in (("reset", reset, RESETS), ("fire_at", fire_at, FIRE_AT),
                                  ("per", per, PER)):
            if val not in allowed:
                raise UnsupportedError(f"LIF {key}={val!r:.40} is not one of "
                                       f"{', '.join(repr(a) for a in allowed)}")
        bad = [k for k in learn if k not in LEARNABLE]
        if bad or isinstance(learn, str):
            raise UnsupportedError(f"LIF learn={learn!r:.60} must list some of "
                                   f"{', '.join(LEARNABLE)}")
        self.reset, self.fire_at = reset, fire_at
        self.shape = tuple(shape)
        self.learn = tuple(k for k in LEARNABLE if k in learn)
        values = {"du": du, "dv": dv, "vth": vth}
        for key, val in values.items():
            # on the CPU even inside `torch.device("meta")` (the checkpoint loader's
            # skeleton): a meta tensor has no values to check
            arr = torch.as_tensor(val, dtype=torch.float64, device="cpu")
            if key == "vth" and not bool((arr > 0).all()):
                raise UnsupportedError(f"LIF vth={_text(arr)} must be > 0")
            if key != "vth" and not bool(((arr >= 0) & (arr <= 1)).all()):
                raise UnsupportedError(f"LIF {key}={_text(arr)} is outside [0, 1]")
        self._fixed = {}
        for key, val in values.items():
            if key in self.learn:
                size = {"layer": (1,) * len(self.shape), "neuron": self.shape,
                        "channel": self.shape[:1] + (1,) * (len(self.shape) - 1)}[per]
                init = torch.as_tensor(val, dtype=torch.float32).expand(size).clone()
                setattr(self, f"learn_{key}", nn.Parameter(init))
            elif isinstance(val, (int, float)):
                self._fixed[key] = float(val)          # one value: plain float arithmetic
            else:
                self._fixed[key] = torch.as_tensor(val, dtype=torch.float32)
        self.bias = nn.Parameter(torch.zeros(self.shape)) if bias else None

    def _param(self, key: str):
        if key not in self.learn:
            return self._fixed[key]
        p = getattr(self, f"learn_{key}")
        return p.clamp(min=VTH_MIN) if key == "vth" else p.clamp(0.0, 1.0)

    def _set_param(self, key: str, value) -> None:
        """Set a parameter as the constructor would (a learned one: its Parameter's data),
        so that code written when du/dv/vth were plain attributes keeps working."""
        if key in self.learn:
            with torch.no_grad():
                getattr(self, f"learn_{key}").copy_(torch.as_tensor(value))
        elif isinstance(value, (int, float)):
            self._fixed[key] = float(value)
        else:
            self._fixed[key] = torch.as_tensor(value, dtype=torch.float32)

    du = property(lambda self: self._param("du"), lambda self, v: self._set_param("du", v))
    dv = property(lambda self: self._param("dv"), lambda self, v: self._set_param("dv", v))
    vth = property(lambda self: self._param("vth"), lambda self, v: self._set_param("vth", v))

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        b, t = x.shape[:2]
        u = torch.zeros((b,) + self.shape, dtype=x.dtype, device=x.device)
        v, s = torch.zeros_like(u), torch.zeros_like(u)
        out = []
        peak_u = peak_v = torch.zeros((), dtype=x.dtype)
        for step in range(t):
            s, u, v, v_peak = self.step(u, v, self.drive(x[:, step], s))
            if record is not None:
                peak_u = torch.maximum(peak_u, u.detach().abs().max())
                peak_v = torch.maximum(peak_v, v_peak.detach().abs().max())
            out.append(s)
        if record is not None:
            record["peak_u"] = float(peak_u)
            record["peak_v"] = float(peak_v)
        return torch.stack(out, dim=1)

    def drive(self, x_t: torch.Tensor, s_prev: torch.Tensor) -> torch.Tensor:
        """The input current of one step (`RecurrentLIFLayer` adds its own last spikes)."""
        return x_t

    def step(self, u: torch.Tensor, v: torch.Tensor, x_t: torch.Tensor):
        """One step: (spikes, u, v after the reset, v before it)."""
        du, dv, vth = self.du, self.dv, self.vth
        u = (1.0 - du) * u + x_t
        v = (1.0 - dv) * v + u
        if self.bias is not None:
            v = v + self.bias
        s = spike_fn((v - vth) / vth, self.surrogate_scale, at_zero=self.fire_at == ">=")
        if self.reset == "subtract":
            return s, u, v - vth * s.detach(), v
        kept = v * (1.0 - s.detach())
        return s, u, kept + vth * s.detach() if self.reset == "threshold" else kept, v


def _text(a: torch.Tensor) -> str:
    return f"{float(a.min()):.4g}" if a.numel() == 1 or bool((a == a.min()).all()) else \
        f"[{float(a.min()):.4g}..{float(a.max()):.4g}]"


class RecurrentLIFLayer(LIFLayer):
    """A LIFLayer whose own spikes come back through recurrent synapses `rec` (n x n, no
    bias) one step later, as a Dense on Loihi delivers them:

        x_t <- x_t + W_rec s_(t-1)        (s_(-1) = 0)

    Config: a `lif` layer with `"recurrent": true`, after a dense layer (1-d neurons).
    """

    def __init__(self, shape, *args, **kwargs):
        super().__init__(shape, *args, **kwargs)
        if len(self.shape) != 1:
            raise UnsupportedError(f"a recurrent lif needs 1-d neurons (after a dense or "
                                   f"flatten layer), got shape {self.shape}")
        n = self.shape[0]
        if n * n > MAX_LAYER_WEIGHTS:
            raise UnsupportedError(f"recurrent lif: {n} x {n} weights exceed "
                                   f"{MAX_LAYER_WEIGHTS}")
        self.rec = nn.Linear(n, n, bias=False)

    def drive(self, x_t: torch.Tensor, s_prev: torch.Tensor) -> torch.Tensor:
        return x_t + self.rec(s_prev)


class _TimeDistributed(nn.Module):
    """Apply a per-frame module to (B, T, ...) by folding time into the batch."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        b, t = x.shape[:2]
        y = self.module(x.reshape((b * t,) + tuple(x.shape[2:])))
        return y.reshape((b, t) + tuple(y.shape[1:]))


class SNN(nn.Module):
    """A feed-forward SNN built from a plain config:

        {"input": {"shape": [64], "encoding": "graded", "bits": 5},
         "layers": [{"type": "dense", "out": 128},
                    {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 1.0, "bias": false}, ...]}

    Layer types: dense(out, bias=false), conv2d(out, kernel, stride=1, padding=0, groups=1,
    bias=false), conv1d(out, kernel, stride=1, padding=0, groups=1, dilation=1, bias=false)
    on (C, L) inputs, batchnorm(eps=1e-5, momentum=0.1; right after a dense or conv2d, folded into it
    on compile), sumpool2d(kernel), avgpool2d(kernel), sumpool1d(kernel), avgpool1d(kernel)
    on (C, L), flatten, lif(du, dv, vth, bias,
    reset, fire_at, learn, per_channel, per_neuron: `learn` lists the parameters to train,
    e.g. ["du", "vth"], one per layer, per channel or per neuron; see `LIFLayer`;
    recurrent: its spikes back into itself one step later, `RecurrentLIFLayer`), and
    residual(body, shortcut): two lists of layers applied to the same input whose output
    currents add (each list ends with a dense or conv2d layer; an empty or missing shortcut
    is the identity, SEW-ResNet style spike addition, compiled as identity synapses), fed
    to the lif layer that must follow; a conv2d shortcut is the Att_Res_SNN form. Both
    paths are delay-free here; the compiler delays the shorter one on the chip
    (`snncompile.ir.timing.balance`). A body may hold further residual blocks (nested,
    each followed by its lif inside the body) and, in an `AttentionSNN`, attention layers
    (between a synapse and its lif, or ending the body: the gated current then adds to the
    shortcut's); a shortcut holds neither. Each layer may carry a "name" (inside a residual
    block the default is BLOCK.body<i> / BLOCK.shortcut<i>). The last layer must be a lif;
    its spike counts are the class scores.
    """

    #: layer types this model accepts (subclasses add their own, see `_layer`)
    LAYER_TYPES = LAYER_TYPES

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        shape = tuple(int(s) for s in config["input"]["shape"])
        self.input_shape = shape
        self.names: list[str] = []
        self.layers = nn.ModuleList()
        counters: dict[str, int] = {}
        check_batchnorm_order(config["layers"], "config")
        for i, spec in enumerate(config["layers"]):
            kind = spec.get("type")
            if isinstance(kind, str) and is_max_pool(kind):
                raise max_pool_refused(f"layer {i}", f"type '{kind}'")
            if kind not in self.LAYER_TYPES:
                raise UnsupportedError(
                    f"layer {i}: type '{kind}' is not supported; supported: "
                    + ", ".join(self.LAYER_TYPES))
            counters[kind] = counters.get(kind, 0) + 1
            self.names.append(spec.get("name") or f"{kind}{counters[kind]}")
            layer, shape = self._layer(i, kind, spec, shape, self.names[-1])
            if math.prod(shape) > MAX_LAYER_NEURONS:
                raise UnsupportedError(f"{self.names[-1]}: output shape {shape} has more than "
                                       f"{MAX_LAYER_NEURONS} elements")
            self.layers.append(layer)
        if config["layers"][-1].get("type") != "lif":
            raise UnsupportedError("the last layer must be 'lif' (its spikes are the output)")
        self.output_shape = shape

    def _layer(self, index: int, kind: str, spec: dict, shape: tuple, name: str,
               specs: list | None = None):
        """(module, output shape) for layer `index` of `specs` (the top-level layers by
        default, or a residual block's body or shortcut); subclasses handle extra types."""
        if kind == "residual":
            return self._residual(index, spec, shape, name, specs)
        return self._build(kind, spec, shape, name)

    def _residual(self, index: int, spec: dict, shape: tuple, name: str,
                  around: list | None = None):
        """A `Residual` block: its body and shortcut built like top-level layers (a block
        may sit in another block's body; `around` is the list of specs holding it)."""
        after = (self.config["layers"] if around is None else around)[index + 1:index + 2]
        if not after or after[0].get("type") != "lif":
            raise UnsupportedError(f"{name}: a residual block must be followed by a lif layer "
                                   "(the neurons its two currents add into)")
        parts, shapes = {}, {}
        for part in ("body", "shortcut"):
            specs = spec.get(part) or []
            if part == "body" and not specs:
                raise UnsupportedError(f"{name}: a residual block needs a body")
            ends = [sp.get("type") for sp in specs
                    if sp.get("type") not in ("batchnorm", "attention")][-1:]
            if specs and (not ends or ends[0] not in SYNAPSE_TYPES):
                raise UnsupportedError(f"{name}: the {part} must end with a dense, conv2d or "
                                       "conv1d layer (its current feeds the next lif), "
                                       "optionally then batchnorm and attention")
            names, mods, sub = [], nn.ModuleList(), shape
            check_batchnorm_order(specs, f"{name}: {part}")
            for j, sub_spec in enumerate(specs):
                kind = sub_spec.get("type")
                if kind not in self.LAYER_TYPES or (kind in ("attention", "residual")
                                                     and part == "shortcut"):
                    raise UnsupportedError(f"{name}: {part} layer {j}: type '{kind}' is not "
                                           "supported in a residual block"
                                           + (f"'s shortcut ({kind} goes in the body)"
                                              if kind in ("attention", "residual")
                                              else ""))
                names.append(sub_spec.get("name") or f"{name}.{part}{j}")
                mod, sub = self._layer(j, kind, sub_spec, sub, names[-1], specs)
                mods.append(mod)
            parts[part], shapes[part] = (names, mods), sub
        if shapes["body"] != shapes["shortcut"]:
            raise UnsupportedError(f"{name}: body output {shapes['body']} and shortcut output "
                                   f"{shapes['shortcut']} differ")
        return Residual(parts["body"], parts["shortcut"]), shapes["body"]

    @staticmethod
    def _build(kind, spec, shape, name):
        def need(n):
            if len(shape) != n:
                raise UnsupportedError(f"{name}: {kind} expects a {n}-d input, got {shape}")

        def num(key, default=None, minimum=1, limit=1 << 20):
            """An integer field of the layer spec within [minimum, limit], or one clear
            error naming layer, field and value."""
            value = spec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or value != value or not minimum <= value <= limit or value != int(value):
                raise UnsupportedError(f"{name}: {kind} '{key}' = {value!r} is not an integer "
                                       f"in [{minimum}, {limit}]")
            return int(value)
        if kind == "dense":
            need(1)
            out = num("out")
            if shape[0] * out > MAX_LAYER_WEIGHTS:
                raise UnsupportedError(f"{name}: {shape[0]} x {out} weights exceed "
                                       f"{MAX_LAYER_WEIGHTS}")
            return (_TimeDistributed(nn.Linear(shape[0], out, bias=_flag(spec, "bias", name))),
                    (out,))
        if kind == "conv2d":
            need(3)
            k, s = num("kernel"), num("stride", 1)
            p, g, out = num("padding", 0, minimum=0), num("groups", 1), num("out")
            if shape[0] % g or out % g:
                raise UnsupportedError(f"{name}: groups {g} must divide the {shape[0]} input "
                                       f"and {out} output channels")
            h = (shape[1] + 2 * p - k) // s + 1
            w = (shape[2] + 2 * p - k) // s + 1
            if h < 1 or w < 1:
                raise UnsupportedError(f"{name}: kernel {k} (stride {s}, padding {p}) does not "
                                       f"fit the {shape[1]}x{shape[2]} input")
            if out * shape[0] // g * k * k > MAX_LAYER_WEIGHTS:
                raise UnsupportedError(f"{name}: {out}x{shape[0] // g}x{k}x{k} kernel weights "
                                       f"exceed {MAX_LAYER_WEIGHTS}")
            conv = nn.Conv2d(shape[0], out, k, s, p, groups=g, bias=_flag(spec, "bias", name))
            return _TimeDistributed(conv), (out, h, w)
        if kind == "conv1d":
            need(2)
            return _conv1d(name, spec, shape, num)
        if kind == "batchnorm":       # over the channels: BatchNorm1d (N,), BatchNorm2d (C,H,W)
            if len(shape) not in (1, 3):
                raise UnsupportedError(f"{name}: batchnorm expects a 1-d or (C, H, W) input, "
                                       f"got {shape}")
            bn = (nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d)(
                shape[0], eps=float(spec.get("eps", 1e-5)),
                momentum=float(spec.get("momentum", 0.1)))
            return _TimeDistributed(bn), shape
        if kind in ("sumpool2d", "avgpool2d"):
            need(3)
            k = num("kernel")
            if shape[1] % k or shape[2] % k:
                raise UnsupportedError(f"{name}: input {shape[1]}x{shape[2]} not divisible "
                                       f"by pooling kernel {k}")
            pool = nn.AvgPool2d(k) if kind == "avgpool2d" else _SumPool(k)
            return _TimeDistributed(pool), (shape[0], shape[1] // k, shape[2] // k)
        if kind in ("sumpool1d", "avgpool1d"):
            need(2)
            k = num("kernel")
            if shape[1] % k:
                raise UnsupportedError(f"{name}: input length {shape[1]} not divisible by "
                                       f"pooling kernel {k}")
            pool = nn.AvgPool1d(k) if kind == "avgpool1d" else _SumPool1d(k)
            return _TimeDistributed(pool), (shape[0], shape[1] // k)
        if kind == "flatten":
            return _TimeDistributed(nn.Flatten()), (int(math.prod(shape)),)
        per = ("neuron" if spec.get("per_neuron") else
               "channel" if spec.get("per_channel") else "layer")
        recurrent = spec.get("recurrent", False)
        if not isinstance(recurrent, bool):
            raise UnsupportedError(f"{name}: lif 'recurrent' = {recurrent!r:.40} must be true "
                                   "or false")
        cls = RecurrentLIFLayer if recurrent else LIFLayer
        try:
            return cls(shape, float(spec["du"]), float(spec["dv"]),
                       float(spec.get("vth", 1.0)), bool(spec.get("bias", False)),
                       spec.get("reset", "zero"), spec.get("fire_at", ">"),
                       tuple(spec.get("learn") or ()), per), shape
        except UnsupportedError as e:
            raise UnsupportedError(f"{name}: {e}") from None

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """x: (B, T, *input_shape) -> output spikes (B, T, *output_shape)."""
        for name, layer in zip(self.names, self.layers):
            x = _apply(name, layer, x, record)
        return x


def _conv1d(name: str, spec: dict, shape: tuple, num):
    """A conv1d layer on a (C, L) input: (module, (out, L'))."""
    bias = _flag(spec, "bias", name)
    k, s, d = num("kernel"), num("stride", 1), num("dilation", 1)
    p, g, out = num("padding", 0, minimum=0), num("groups", 1), num("out")
    if shape[0] % g or out % g:
        raise UnsupportedError(f"{name}: groups {g} must divide the {shape[0]} input and "
                               f"{out} output channels")
    length = (shape[1] + 2 * p - d * (k - 1) - 1) // s + 1
    if length < 1:
        raise UnsupportedError(f"{name}: kernel {k} (stride {s}, padding {p}, dilation {d}) "
                               f"does not fit the length-{shape[1]} input")
    span = d * (k - 1) + 1          # compiled as the dense kernel of this size
    if out * shape[0] // g * span > MAX_LAYER_WEIGHTS:
        raise UnsupportedError(f"{name}: {out}x{shape[0] // g}x{span} (dilated) kernel "
                               f"weights exceed {MAX_LAYER_WEIGHTS}")
    conv = nn.Conv1d(shape[0], out, k, s, p, dilation=d, groups=g, bias=bias)
    return _TimeDistributed(conv), (out, length)


def _flag(spec: dict, key: str, name: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise UnsupportedError(f"{name}: '{key}' = {value!r:.40} must be true or false")
    return value


def _apply(name: str, layer: nn.Module, x: torch.Tensor, record: dict | None):
    """One layer on x; a LIF's peaks go into `record[name]`, a block's into `record`."""
    if isinstance(layer, LIFLayer):
        rec = {} if record is not None else None
        x = layer(x, rec)
        if record is not None:
            record[name] = rec
        return x
    if isinstance(layer, Residual):
        return layer(x, record)
    return layer(x)


class Residual(nn.Module):
    """A residual block: body(x) + shortcut(x) (the identity when the shortcut is empty),
    two currents into the same neurons, delay-free."""

    def __init__(self, body: tuple[list, nn.ModuleList], shortcut: tuple[list, nn.ModuleList]):
        super().__init__()
        (self.body_names, self.body), (self.shortcut_names, self.shortcut) = body, shortcut

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        y, z = x, x
        for name, layer in zip(self.body_names, self.body):
            y = _apply(name, layer, y, record)
        for name, layer in zip(self.shortcut_names, self.shortcut):
            z = _apply(name, layer, z, record)
        return y + z


class _SumPool1d(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return nn.functional.avg_pool1d(x, self.k) * self.k


class _SumPool(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return nn.functional.avg_pool2d(x, self.k) * (self.k * self.k)
