"""Training layers. `SNN` is built from a plain config (see `SNN.__init__`) so that a
checkpoint is data only: the config plus a state dict, loaded with `weights_only=True`.

The LIF layer follows Loihi's CUBA update order exactly (see `snncompile.ir.nodes.LIF`):
current decays then adds input; voltage decays then adds current and bias; spike strictly
above threshold; reset v to 0, u untouched. Synapse layers (Linear/Conv2d) carry no bias:
Loihi has no per-synapse bias; a learnable per-neuron bias lives in the LIF layer and is
added to v. The network is delay-free in time; the chip's one-step synapse delay only shifts
each layer in time (see the time semantics in `snncompile.ir.nodes`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UnsupportedError, is_max_pool, max_pool_refused

LAYER_TYPES = ("dense", "conv2d", "conv1d", "sumpool2d", "avgpool2d", "flatten", "lif", "residual")


SYNAPSE_TYPES = ("dense", "conv2d", "conv1d")


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


class LIFLayer(nn.Module):
    """Current-based LIF over time. Input (B, T, *shape) current; output (B, T, *shape) spikes.

    du, dv: decay fractions in [0, 1]; vth > 0. `bias=True` learns a per-neuron bias on v.
    reset: "zero" (v = 0 after a spike), "subtract" (v -= vth) or "threshold" (v = vth,
    the MA-SNN authors' neuron); fire_at: ">" (spike
    where v > vth) or ">=" (see `snncompile.ir.nodes.LIF`).
    """

    def __init__(self, shape, du: float, dv: float, vth: float = 1.0, bias: bool = False,
                 reset: str = "zero", fire_at: str = ">"):
        super().__init__()
        from ..ir.nodes import FIRE_AT, RESETS
        for key, val, allowed in (("reset", reset, RESETS), ("fire_at", fire_at, FIRE_AT)):
            if val not in allowed:
                raise UnsupportedError(f"LIF {key}={val!r:.40} is not one of "
                                       f"{', '.join(repr(a) for a in allowed)}")
        self.reset, self.fire_at = reset, fire_at
        for key, val, lo, hi in (("du", du, 0.0, 1.0), ("dv", dv, 0.0, 1.0)):
            if not (lo <= val <= hi) or math.isnan(val):
                raise UnsupportedError(f"LIF {key}={val} is outside [0, 1]")
        if not vth > 0:
            raise UnsupportedError(f"LIF vth={vth} must be > 0")
        self.shape = tuple(shape)
        self.du, self.dv, self.vth = float(du), float(dv), float(vth)
        self.bias = nn.Parameter(torch.zeros(self.shape)) if bias else None

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        b, t = x.shape[:2]
        u = torch.zeros((b,) + self.shape, dtype=x.dtype, device=x.device)
        v = torch.zeros_like(u)
        out = []
        peak_u = peak_v = torch.zeros((), dtype=x.dtype)
        for step in range(t):
            s, u, v, v_peak = self.step(u, v, x[:, step])
            if record is not None:
                peak_u = torch.maximum(peak_u, u.detach().abs().max())
                peak_v = torch.maximum(peak_v, v_peak.detach().abs().max())
            out.append(s)
        if record is not None:
            record["peak_u"] = float(peak_u)
            record["peak_v"] = float(peak_v)
        return torch.stack(out, dim=1)

    def step(self, u: torch.Tensor, v: torch.Tensor, x_t: torch.Tensor):
        """One step: (spikes, u, v after the reset, v before it)."""
        u = (1.0 - self.du) * u + x_t
        v = (1.0 - self.dv) * v + u
        if self.bias is not None:
            v = v + self.bias
        s = spike_fn((v - self.vth) / self.vth, at_zero=self.fire_at == ">=")
        if self.reset == "subtract":
            return s, u, v - self.vth * s.detach(), v
        kept = v * (1.0 - s.detach())
        return s, u, kept + self.vth * s.detach() if self.reset == "threshold" else kept, v


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

    Layer types: dense(out), conv2d(out, kernel, stride=1, padding=0, groups=1),
    conv1d(out, kernel, stride=1, padding=0, groups=1, dilation=1) on (C, L) inputs,
    sumpool2d(kernel), avgpool2d(kernel), flatten, lif(du, dv, vth, bias, reset,
    fire_at), and
    residual(body, shortcut): two lists of layers applied to the same input whose output
    currents add (each list ends with a dense or conv2d layer; an empty or missing shortcut
    is the identity, SEW-ResNet style spike addition, compiled as identity synapses), fed
    to the lif layer that must follow; a conv2d shortcut is the Att_Res_SNN form. Both
    paths are delay-free here; the compiler delays the shorter one on the chip
    (`snncompile.ir.timing.balance`). Each layer may carry a "name" (inside a residual
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

    def _layer(self, index: int, kind: str, spec: dict, shape: tuple, name: str):
        """(module, output shape) for layer `index`; subclasses handle extra types."""
        if kind == "residual":
            return self._residual(index, spec, shape, name)
        return self._build(kind, spec, shape, name)

    def _residual(self, index: int, spec: dict, shape: tuple, name: str):
        """A `Residual` block: its body and shortcut built like top-level layers."""
        after = self.config["layers"][index + 1:index + 2]
        if not after or after[0].get("type") != "lif":
            raise UnsupportedError(f"{name}: a residual block must be followed by a lif layer "
                                   "(the neurons its two currents add into)")
        parts, shapes = {}, {}
        for part in ("body", "shortcut"):
            specs = spec.get(part) or []
            if part == "body" and not specs:
                raise UnsupportedError(f"{name}: a residual block needs a body")
            if specs and specs[-1].get("type") not in SYNAPSE_TYPES:
                raise UnsupportedError(f"{name}: the {part} must end with a dense, conv2d or "
                                       "conv1d layer (its current feeds the next lif)")
            names, mods, sub = [], nn.ModuleList(), shape
            for j, sub_spec in enumerate(specs):
                kind = sub_spec.get("type")
                if kind not in self.LAYER_TYPES or kind in ("residual", "attention"):
                    raise UnsupportedError(f"{name}: {part} layer {j}: type '{kind}' is not "
                                           "supported in a residual block")
                names.append(sub_spec.get("name") or f"{name}.{part}{j}")
                mod, sub = self._layer(-1, kind, sub_spec, sub, names[-1])
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
            return _TimeDistributed(nn.Linear(shape[0], out, bias=False)), (out,)
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
            conv = nn.Conv2d(shape[0], out, k, s, p, groups=g, bias=False)
            return _TimeDistributed(conv), (out, h, w)
        if kind == "conv1d":
            need(2)
            return _conv1d(name, spec, shape, num)
        if kind in ("sumpool2d", "avgpool2d"):
            need(3)
            k = num("kernel")
            if shape[1] % k or shape[2] % k:
                raise UnsupportedError(f"{name}: input {shape[1]}x{shape[2]} not divisible "
                                       f"by pooling kernel {k}")
            pool = nn.AvgPool2d(k) if kind == "avgpool2d" else _SumPool(k)
            return _TimeDistributed(pool), (shape[0], shape[1] // k, shape[2] // k)
        if kind == "flatten":
            return _TimeDistributed(nn.Flatten()), (int(math.prod(shape)),)
        return LIFLayer(shape, float(spec["du"]), float(spec["dv"]),
                        float(spec.get("vth", 1.0)), bool(spec.get("bias", False)),
                        spec.get("reset", "zero"), spec.get("fire_at", ">")), shape

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """x: (B, T, *input_shape) -> output spikes (B, T, *output_shape)."""
        for name, layer in zip(self.names, self.layers):
            x = _apply(name, layer, x, record)
        return x


def _conv1d(name: str, spec: dict, shape: tuple, num):
    """A conv1d layer on a (C, L) input: (module, (out, L'))."""
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
    conv = nn.Conv1d(shape[0], out, k, s, p, dilation=d, groups=g, bias=False)
    return _TimeDistributed(conv), (out, length)


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


class _SumPool(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return nn.functional.avg_pool2d(x, self.k) * (self.k * self.k)
