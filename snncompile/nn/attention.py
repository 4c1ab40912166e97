"""MA-SNN attention (Yao et al., TPAMI 2023; code BICLab/Attention-SNN) for the training side.

Every module reads the pre-LIF input current X: (B, T, C, H, W) after a conv (and pool),
(B, T, C, L) after a conv1d (and pool; TA and CA pool over L where they pool over H, W;
SA needs a 2-d map), or (B, T, C) after a dense layer. `TemporalAttention`, `ChannelAttention` and
`SpatialAttention` return a *gain* that broadcasts against X, as the released code does;
`TCSA` and `AttentionLayer` apply it: ``out = ReLU(g * X)``. The trailing ReLU is in every
released variant, so the LIF only ever receives non-negative current.

Two modes (`mode=`):

* ``"window"`` - as released: pooling over the whole time window (not causal; a streaming
  chip would have to buffer all T steps before the first gain exists).

  - TA: avg- and max-pool over (C, H, W) -> two length-T vectors; shared MLP
    ``T -> max(1, T // t_ratio) -> T`` without bias (ReLU between); ``sigmoid(avg + max)``;
    one gain per (sample, step), shape (B, T, 1[, 1, 1]). Needs ``steps`` = T.
  - CA: avg- and max-pool over (T, H, W); shared MLP ``C -> max(1, C // c_ratio) -> C``
    without bias; ``sigmoid(avg + max)``; one gain per (sample, channel), (B, 1, C[, 1, 1]).
  - SA: mean and max over all T*C maps -> (avg, max) maps -> Conv2d(2 -> 1, k, pad k//2,
    no bias) -> sigmoid; one H x W map per sample, (B, 1, 1, H, W).

* ``"causal"`` - deployable: the gain at step t depends on X at steps <= t only.

  - CA: the same pooling, MLP and sigmoid, but pooled over (H, W) of step t alone:
    gain (B, T, C[, 1, 1]), one per (sample, step, channel). For a dense input (no H, W)
    avg = max = X[:, t] and the gain is ``sigmoid(2 * MLP(X[:, t]))``.
  - SA: mean and max over the C maps of step t alone -> the same conv -> sigmoid:
    gain (B, T, 1, H, W).
  - TA: a causal window of the last ``window`` = w steps. For step t the descriptors are
    ``a_s = mean_{C,H,W} X[:, s]`` and ``m_s = max_{C,H,W} X[:, s]`` for
    s = t-w+1 .. t (oldest first); steps before 0 contribute a_s = m_s = 0 (zero padding).
    Shared MLP ``w -> max(1, w // t_ratio) -> 1`` without bias (ReLU between) and
    ``g_t = sigmoid(MLP(a) + MLP(m))``: step t's weight depends on X at steps t-w+1 .. t
    only (including step t itself: no extra latency is modelled here). Gain (B, T, 1[,1,1]).

Gain quantisation (``gain_bits=b``, the chip uses b = 8). In forward the sigmoid s is
replaced by ``q = min(floor(s * 2**b + 0.5), 2**b - 1) / 2**b`` (round half up, then clamp
so that the integer fits b unsigned bits), with a straight-through estimator (backward is
the identity). Intended integer semantics on the chip, with ``a`` the signed integer
current that would enter the LIF and ``g = q * 2**b`` in [0, 2**b - 1] = [0, 255]:

    a' = rnd(a * g / 2**b)     # to nearest, ties to even (snncompile.coproc.ops)

so a gain of exactly 1 is not representable (255/256 at most) and the product adds at most
half an LSB of rounding error per multiplication, zero on average (TCSA chains three: TA,
then CA, then SA, each on the previous result). Builds made before the compiler rounded
used ``(a * g) >> b`` (floor, -1/2 LSB on average per gate); `apply_gain_int` below is that
floor form, `gain_to_int` the 8-bit gain both use.
Example::

    att = ChannelAttention(8, mode="causal", gain_bits=8)
    out = torch.relu(att(x) * x)     # x: (B, T, 8, H, W)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputFileError, UnsupportedError
from ..ir.nodes import ATTENTION_PARTS as PARTS
from .layers import LAYER_TYPES, SNN

MODES = ("window", "causal")
KINDS = tuple(PARTS)


# ---------------------------------------------------------------- gain quantisation
class _RoundGain(torch.autograd.Function):
    """Round a gain in [0, 1] to the b-bit grid in forward; identity gradient backward."""

    @staticmethod
    def forward(ctx, s, bits):
        scale = float(2 ** bits)
        return torch.clamp(torch.floor(s * scale + 0.5), 0.0, scale - 1.0) / scale

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def quantize_gain(s: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Round the sigmoid gain `s` to multiples of 1/2**bits (straight-through); None: as is."""
    if bits is None:
        return s
    return _RoundGain.apply(s, int(bits))


def gain_to_int(s, bits: int = 8) -> np.ndarray:
    """The chip's integer gain g in [0, 2**bits - 1] for float gains `s` (round half up)."""
    s = np.asarray(s, dtype=np.float64)
    return np.clip(np.floor(s * 2 ** bits + 0.5), 0, 2 ** bits - 1).astype(np.int64)


def apply_gain_int(a, g, bits: int = 8) -> np.ndarray:
    """Chip semantics of the gain: (a * g) >> bits with an arithmetic (floor) shift."""
    return (np.asarray(a, dtype=np.int64) * np.asarray(g, dtype=np.int64)) >> bits


def _check_bits(where, bits):
    if bits is not None and not (1 <= int(bits) <= 16):
        raise UnsupportedError(f"{where}: gain_bits ({bits}) must be in 1..16 or None")
    return None if bits is None else int(bits)


def _check_mode(where, mode):
    if mode not in MODES:
        raise UnsupportedError(f"{where}: mode '{mode}' is not supported; supported: "
                               + ", ".join(MODES))
    return mode


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """The shared MLP: Linear (= 1x1 conv) without bias, ReLU, Linear without bias."""
    return nn.Sequential(nn.Linear(n_in, hidden, bias=False), nn.ReLU(),
                         nn.Linear(hidden, n_out, bias=False))


def _spatial(x: torch.Tensor) -> tuple[int, ...]:
    """The ones a gain gets for the axes after C: (1, 1) for (B, T, C, H, W), (1,) for a
    Conv1d's (B, T, C, L), () for a dense layer's (B, T, C)."""
    if x.dim() in (3, 4, 5):
        return (1,) * (x.dim() - 3)
    raise UnsupportedError(f"attention: expects (B, T, C, H, W), (B, T, C, L) or (B, T, C), "
                           f"got {tuple(x.shape)}")


# ---------------------------------------------------------------- the three gains
class TemporalAttention(nn.Module):
    """TA: one gain per (sample, step). window: needs `steps` (T); causal: needs `window`."""

    def __init__(self, steps: int | None = None, t_ratio: int = 5, mode: str = "window",
                 window: int | None = None, gain_bits: int | None = None):
        super().__init__()
        self.mode = _check_mode("TemporalAttention", mode)
        self.gain_bits = _check_bits("TemporalAttention", gain_bits)
        if mode == "window":
            if not steps or int(steps) < 1:
                raise UnsupportedError("TemporalAttention: mode 'window' needs steps (T) >= 1")
            n_in, n_out = int(steps), int(steps)
        else:
            if not window or int(window) < 1:
                raise UnsupportedError("TemporalAttention: mode 'causal' needs window >= 1")
            n_in, n_out = int(window), 1
        self.steps = None if steps is None else int(steps)
        self.window = None if window is None else int(window)
        self.mlp = _mlp(n_in, max(1, n_in // int(t_ratio)), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = _spatial(x)
        b, t = x.shape[:2]
        flat = x.reshape(b, t, -1)
        avg, mx = flat.mean(-1), flat.amax(-1)                       # (B, T)
        if self.mode == "window":
            if t != self.steps:
                raise UnsupportedError(f"TemporalAttention: built for T={self.steps}, got "
                                       f"T={t}")
            logit = self.mlp(avg) + self.mlp(mx)                     # (B, T)
        else:
            w = self.window
            # (B, T, w): row t holds steps t-w+1 .. t, zero before step 0
            pa = nn.functional.pad(avg, (w - 1, 0)).unfold(1, w, 1)
            pm = nn.functional.pad(mx, (w - 1, 0)).unfold(1, w, 1)
            logit = (self.mlp(pa) + self.mlp(pm)).squeeze(-1)        # (B, T)
        g = quantize_gain(torch.sigmoid(logit), self.gain_bits)
        return g.reshape((b, t, 1) + spatial)


class ChannelAttention(nn.Module):
    """CA: one gain per (sample, channel) (window) or per (sample, step, channel) (causal)."""

    def __init__(self, channels: int, c_ratio: int = 8, mode: str = "window",
                 gain_bits: int | None = None):
        super().__init__()
        self.mode = _check_mode("ChannelAttention", mode)
        self.gain_bits = _check_bits("ChannelAttention", gain_bits)
        self.channels = int(channels)
        self.mlp = _mlp(self.channels, max(1, self.channels // int(c_ratio)), self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = _spatial(x)
        b, t, c = x.shape[:3]
        if c != self.channels:
            raise UnsupportedError(f"ChannelAttention: built for C={self.channels}, got C={c}")
        flat = x.reshape(b, t, c, -1)                                 # (B, T, C, HW)
        if self.mode == "window":
            pooled = flat.transpose(1, 2).reshape(b, c, -1)          # (B, C, T*HW)
            logit = self.mlp(pooled.mean(-1)) + self.mlp(pooled.amax(-1))   # (B, C)
            g = quantize_gain(torch.sigmoid(logit), self.gain_bits).unsqueeze(1)
        else:
            logit = self.mlp(flat.mean(-1)) + self.mlp(flat.amax(-1))       # (B, T, C)
            g = quantize_gain(torch.sigmoid(logit), self.gain_bits)
        return g.reshape(g.shape + spatial)


class SpatialAttention(nn.Module):
    """SA: one H x W map per sample (window) or per (sample, step) (causal)."""

    def __init__(self, kernel: int = 3, mode: str = "window", gain_bits: int | None = None):
        super().__init__()
        self.mode = _check_mode("SpatialAttention", mode)
        self.gain_bits = _check_bits("SpatialAttention", gain_bits)
        if int(kernel) % 2 != 1:
            raise UnsupportedError(f"SpatialAttention: kernel ({kernel}) must be odd")
        self.kernel = int(kernel)
        self.conv = nn.Conv2d(2, 1, self.kernel, padding=self.kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(_spatial(x)) != 2:
            raise UnsupportedError("SpatialAttention: needs a (B, T, C, H, W) input; a dense "
                                   "or 1-d layer has no 2-d spatial map (use ta or ca)")
        b, t, c, h, w = x.shape
        if self.mode == "window":
            maps = x.reshape(b, t * c, h, w)
            pooled = torch.stack([maps.mean(1), maps.amax(1)], 1)     # (B, 2, H, W)
            g = torch.sigmoid(self.conv(pooled)).reshape(b, 1, 1, h, w)
        else:
            pooled = torch.stack([x.mean(2), x.amax(2)], 2)           # (B, T, 2, H, W)
            g = torch.sigmoid(self.conv(pooled.reshape(b * t, 2, h, w))).reshape(b, t, 1, h, w)
        return quantize_gain(g, self.gain_bits)


class TCSA(nn.Module):
    """The gates in `parts` (default TA, CA, SA), each on the already modulated tensor, then
    ReLU (as released). parts ("ca", "sa") is CSA, ("ta", "ca") TCA, ("ta", "sa") TSA."""

    def __init__(self, channels: int, steps: int | None = None, t_ratio: int = 5,
                 c_ratio: int = 8, kernel: int = 3, mode: str = "window",
                 window: int | None = None, gain_bits: int | None = None,
                 parts: tuple[str, ...] = ("ta", "ca", "sa")):
        super().__init__()
        self.parts = tuple(parts)
        make = {"ta": lambda: TemporalAttention(steps, t_ratio, mode, window, gain_bits),
                "ca": lambda: ChannelAttention(channels, c_ratio, mode, gain_bits),
                "sa": lambda: SpatialAttention(kernel, mode, gain_bits)}
        for key in self.parts:
            setattr(self, key, make[key]())

    def gates(self, x: torch.Tensor):
        """Yield (key, gain, modulated tensor) for each part in order."""
        out = x
        for key in self.parts:
            g = getattr(self, key)(out)
            out = g * out
            yield key, g, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for _, _, out in self.gates(x):
            pass
        return torch.relu(out)


class AttentionLayer(nn.Module):
    """The config layer ``{"type": "attention", "kind": ..., "mode": ...}``:
    ``ReLU(gain(X) * X)`` for ta/ca/sa; `TCSA` (with the kind's PARTS) for tca/tsa/csa/tcsa. Keeps the last gains it applied in
    `last_gains` (detached, for reports) when `keep_gains` is set."""

    def __init__(self, spec: dict, shape: tuple[int, ...], steps: int | None, name: str):
        super().__init__()
        kind = spec.get("kind")
        if kind not in KINDS:
            raise UnsupportedError(f"{name}: attention kind '{kind}' is not supported; "
                                   "supported: " + ", ".join(KINDS))
        mode = spec.get("mode", "causal")
        _check_mode(name, mode)
        if "sa" in PARTS[kind] and len(shape) != 3:
            raise UnsupportedError(f"{name}: attention '{kind}' needs a (C, H, W) input, got "
                                   f"{shape}; use ta, ca or tca after a dense or conv1d "
                                   "layer")
        if len(shape) not in (1, 2, 3):
            raise UnsupportedError(f"{name}: attention expects a (C,), (C, L) or (C, H, W) "
                                   f"input, got {shape}")
        t_steps = spec.get("steps", steps)
        bits, kernel = spec.get("gain_bits"), int(spec.get("kernel", 3))
        t_ratio, c_ratio = int(spec.get("t_ratio", 5)), int(spec.get("c_ratio", 8))
        try:
            if len(PARTS[kind]) > 1:
                self.block = TCSA(shape[0], t_steps, t_ratio, c_ratio, kernel, mode,
                                  spec.get("window"), bits, parts=PARTS[kind])
            elif kind == "ta":
                self.block = TemporalAttention(t_steps, t_ratio, mode, spec.get("window"), bits)
            elif kind == "ca":
                self.block = ChannelAttention(shape[0], c_ratio, mode, bits)
            else:
                self.block = SpatialAttention(kernel, mode, bits)
        except UnsupportedError as exc:
            raise UnsupportedError(f"{name}: {exc}") from None
        self.kind, self.mode = kind, mode
        self.keep_gains = False
        self.last_gains: dict[str, torch.Tensor] = {}

    def gate_modules(self) -> dict[str, nn.Module]:
        """{"ta" | "ca" | "sa": the module computing that gain}, in gate order."""
        if len(PARTS[self.kind]) > 1:
            return {key: getattr(self.block, key) for key in PARTS[self.kind]}
        return {self.kind: self.block}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(PARTS[self.kind]) > 1:
            if not self.keep_gains:
                return self.block(x)
            out = x
            for key, g, out in self.block.gates(x):
                self.last_gains[key] = g.detach()
            return torch.relu(out)
        g = self.block(x)
        if self.keep_gains:
            self.last_gains[self.kind] = g.detach()
        return torch.relu(g * x)


# ---------------------------------------------------------------- the model
ATTENTION_LAYER_TYPES = LAYER_TYPES + ("attention",)
_BEFORE_ATTENTION = ("dense", "conv2d", "conv1d", "batchnorm", "sumpool2d", "avgpool2d",
                     "sumpool1d", "avgpool1d")


class AttentionSNN(SNN):
    """`SNN` whose config may also hold attention layers between a synapse layer (optionally
    followed by pooling) and its LIF; the attention multiplies the current feeding the LIF::

        {"input": {"shape": [1, 8, 8], "encoding": "graded", "bits": 5, "steps": 16},
         "layers": [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1},
                    {"type": "attention", "kind": "tcsa", "mode": "causal", "window": 4,
                     "t_ratio": 2, "c_ratio": 4, "kernel": 3, "gain_bits": 8},
                    {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0}, ...]}

    Attention keys: kind (ta | ca | sa | tcsa), mode (causal | window, default causal),
    t_ratio (5), c_ratio (8), kernel (3, odd), window (causal TA: steps pooled), steps
    (window TA: T; defaults to input.steps), gain_bits (None = float gains; 8 = chip).
    The model saves and loads with `save_checkpoint` / `load_attention_checkpoint`.
    """

    LAYER_TYPES = ATTENTION_LAYER_TYPES

    def _layer(self, index, kind, spec, shape, name, specs=None):
        if kind != "attention":
            return super()._layer(index, kind, spec, shape, name, specs)
        specs = self.config["layers"] if specs is None else specs
        prev = specs[index - 1].get("type") if index else None
        nxt = specs[index + 1].get("type") if index + 1 < len(specs) else None
        # the last layer of a residual block's body: its gated current adds to the
        # shortcut's in the lif after the block (Att_Res_SNN's CSA)
        body_end = specs is not self.config["layers"] and nxt is None
        if prev not in _BEFORE_ATTENTION or (nxt != "lif" and not body_end):
            raise UnsupportedError(
                f"{name}: attention must sit between a synapse layer (dense, conv2d, "
                f"conv1d, optionally then a pool) and its lif, or end a residual block's "
                f"body; "
                f"found after '{prev}', before '{nxt}'")
        steps = self.config["input"].get("steps")
        return AttentionLayer(spec, shape, steps, name), shape


# ---------------------------------------------------------------- checkpoints
def load_attention_checkpoint(path: str | Path) -> tuple[AttentionSNN, dict]:
    """Load a checkpoint written by `save_checkpoint(AttentionSNN(...), path)`: data only,
    read with weights_only=True. Returns (model in eval mode, checkpoint dict)."""
    model, ckpt = load_model(path)
    if not isinstance(model, AttentionSNN):
        raise InputFileError(f"{path}: not an attention SNN checkpoint (no attention layer)")
    return model, ckpt


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    return [m for m in model.modules() if isinstance(m, AttentionLayer)]



def load_model(path: str | Path):
    """Load any training checkpoint (data only): see `snncompile.nn.load_checkpoint`."""
    from .checkpoint import load_checkpoint
    return load_checkpoint(path)