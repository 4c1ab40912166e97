"""HTDA: hybrid top-down attention (Liu & Zhao, Front. Neurosci. 2022; abstract only, no
public code: the sizes, loop timing and loss below are this project's design choices).

A feed-forward SNN (a plain `SNN` layer list) plus a small ANN. The ANN reads the spikes of a
later LIF layer (`source`) and produces one spatial map m_t (B, 1, H, W) in [0, 1]; the map
multiplies the input current of the encoding LIF (`target`, the first LIF) at step t,
shared by all of its channels::

    I'_t = m_t * I_t                   I_t: current feeding `target` at step t (B, C, H, W)

Top-down latency (`latency` = L >= 1 steps, default 1), in the local (delay-free) time of
the float model: m_t is computed from the source's activity at steps 0 .. t-L only,

    r_t = (1 / (t-L+1)) * sum_{s=0}^{t-L} S_source[s]      ("read": "rate", default)
    r_t =                 sum_{s=0}^{t-L} S_source[s]      ("read": "count")
    m_t = sigmoid(Conv(h -> 1, k)(ReLU(Conv(C_src -> h, k)(r_t))))   (both convs with bias,
          "same" padding; nearest upsampling by an integer factor if the source is smaller)
    m_t = 1 for t < L                  (no top-down information yet: input passes as is)
          or, with "init": "learned", a trained sample-independent map sigmoid(theta)

The last conv's bias (and theta) starts at `init_bias` (2.0: sigmoid = 0.88), so training
starts near "no attention". Two map kinds ("mask"):

* "soft" (default): m_t in [0, 1]; `gain_bits` rounds it exactly as the MA-SNN gains do
  (see `snncompile.nn.attention`: g = min(floor(256 m + 0.5), 255), chip a' = (a * g) >> 8).
  Caveat: the encoding synapses are linear, so a uniformly small map times larger weights
  is the same network; the area term below can be met by that rescaling (observed: map
  mean 0.02 after 12 epochs on digits) without selecting anything.
* "binary": m_t = [sigmoid(.) >= 0.5] in {0, 1} (straight-through gradient), so the area
  term counts the fraction of input pixels passed and cannot be met by rescaling. On the
  chip the map is a gate: a' = a where m = 1, 0 elsewhere (no multiplier).

On the chip, synapse delays add to L: a compiler must realise L >= depth(source) -
depth(target) + the co-processor's own delay, and train with that L.

Weakly supervised objective (`htda_loss`), over the steps whose map is trained (t >= L,
or every step with "init": "learned")::

    loss = CE(counts * 8 / T, y) + area * mean(m) + tv * (mean|m[i+1, j] - m[i, j]|
                                                         + mean|m[i, j+1] - m[i, j]|)

the area term favours a small subset of the input, the total-variation term a connected
one (few map edges). Defaults: area = 0.05, tv = 0.05 (config "htda" -> "area", "tv").

    model = HTDA(CONFIG)                  # see HTDA.__doc__ for the config
    out, maps = model(x, return_maps=True)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputFileError, UnsupportedError
from .attention import load_model, quantize_gain
from .layers import SNN, LIFLayer

READS = ("rate", "count")
MASKS = ("soft", "binary")
INITS = ("ones", "learned")


class _Binary(torch.autograd.Function):
    """m >= 0.5 -> 1 else 0 in forward; identity gradient (straight through) backward."""

    @staticmethod
    def forward(ctx, m):
        return (m >= 0.5).to(m.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def lif_step(layer: LIFLayer, x_t: torch.Tensor, state):
    """One step of `LIFLayer` (same order and reset as its forward). state: (u, v) or None."""
    if state is None:
        u = torch.zeros_like(x_t)
        v = torch.zeros_like(x_t)
    else:
        u, v = state
    s, u, v, _ = layer.step(u, v, x_t)
    return s, (u, v)


class HTDA(nn.Module):
    """Config (plain data, so a checkpoint stays data only)::

        {"model": "htda",
         "input": {"shape": [1, 8, 8], "encoding": "graded", "bits": 5},
         "layers": [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1, "name": "conv1"},
                    {"type": "lif", "du": 0.25, "dv": 0.1, "name": "lif1"},
                    {"type": "conv2d", "out": 16, "kernel": 3, "padding": 1},
                    {"type": "lif", "du": 0.25, "dv": 0.1, "name": "lif2"},
                    {"type": "sumpool2d", "kernel": 4}, {"type": "flatten"},
                    {"type": "dense", "out": 10}, {"type": "lif", "du": 0.25, "dv": 0.1}],
         "htda": {"target": "lif1", "source": "lif2", "hidden": 8, "kernel": 3,
                  "latency": 1, "read": "rate", "init": "ones", "init_bias": 2.0,
                  "mask": "soft", "gain_bits": null, "area": 0.05, "tv": 0.05}}

    `target` must be the first LIF, with a (C, H, W) shape; `source` a later LIF with a
    (C', H', W') shape where H / H' and W / W' are integers.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        if config.get("model") != "htda" or not isinstance(config.get("htda"), dict):
            raise UnsupportedError("HTDA: config needs \"model\": \"htda\" and an \"htda\" "
                                   "section")
        self.snn = SNN({"input": config["input"], "layers": config["layers"]})
        spec = config["htda"]
        names = self.snn.names
        lifs = [n for n, m in zip(names, self.snn.layers) if isinstance(m, LIFLayer)]
        self.target, self.source = spec.get("target", lifs[0]), spec.get("source")
        if self.target != lifs[0]:
            raise UnsupportedError(f"HTDA: target '{self.target}' must be the first lif "
                                   f"('{lifs[0]}'), the encoding layer")
        if self.source not in lifs[1:]:
            raise UnsupportedError(f"HTDA: source '{self.source}' must be a later lif; "
                                   f"choose one of: {', '.join(lifs[1:])}")
        t_shape = self.snn.layers[names.index(self.target)].shape
        s_shape = self.snn.layers[names.index(self.source)].shape
        if len(t_shape) != 3 or len(s_shape) != 3:
            raise UnsupportedError(f"HTDA: target {t_shape} and source {s_shape} must both be "
                                   "(C, H, W) layers")
        if t_shape[1] % s_shape[1] or t_shape[2] % s_shape[2]:
            raise UnsupportedError(f"HTDA: source map {s_shape[1:]} does not divide target "
                                   f"map {t_shape[1:]}")
        self.upsample = (t_shape[1] // s_shape[1], t_shape[2] // s_shape[2])
        self.map_shape = (1,) + tuple(t_shape[1:])
        self.latency = int(spec.get("latency", 1))
        if self.latency < 1:
            raise UnsupportedError(f"HTDA: latency ({self.latency}) must be >= 1 step (the "
                                   "map cannot use the activity it modulates)")
        self.read = spec.get("read", "rate")
        if self.read not in READS:
            raise UnsupportedError(f"HTDA: read '{self.read}' is not supported; supported: "
                                   + ", ".join(READS))
        self.gain_bits = spec.get("gain_bits")
        k, hidden = int(spec.get("kernel", 3)), int(spec.get("hidden", 8))
        if k % 2 != 1:
            raise UnsupportedError(f"HTDA: kernel ({k}) must be odd")
        self.ann = nn.Sequential(nn.Conv2d(s_shape[0], hidden, k, padding=k // 2), nn.ReLU(),
                                 nn.Conv2d(hidden, 1, k, padding=k // 2))
        with torch.no_grad():
            self.ann[2].bias.fill_(float(spec.get("init_bias", 2.0)))
        self.mask = spec.get("mask", "soft")
        if self.mask not in MASKS:
            raise UnsupportedError(f"HTDA: mask '{self.mask}' is not supported; supported: "
                                   + ", ".join(MASKS))
        self.init = spec.get("init", "ones")
        if self.init not in INITS:
            raise UnsupportedError(f"HTDA: init '{self.init}' is not supported; supported: "
                                   + ", ".join(INITS))
        self.init_logit = (nn.Parameter(torch.full((1, 1) + tuple(t_shape[1:]),
                                                   float(spec.get("init_bias", 2.0))))
                           if self.init == "learned" else None)
        self.area = float(spec.get("area", 0.05))
        self.tv = float(spec.get("tv", 0.05))

    def _finish(self, m: torch.Tensor) -> torch.Tensor:
        return finish_map(m, self.mask, self.gain_bits)

    def attention_map(self, activity: torch.Tensor) -> torch.Tensor:
        """Map (B, 1, H, W) from source activity (B, C', H', W') (rate or count)."""
        m = torch.sigmoid(self.ann(activity))
        if self.upsample != (1, 1):
            m = m.repeat_interleave(self.upsample[0], 2).repeat_interleave(self.upsample[1], 3)
        return self._finish(m)

    def initial_map(self, batch: int) -> torch.Tensor:
        """The map for t < latency: ones, or the learned sample-independent map."""
        if self.init_logit is None:
            return torch.ones((batch,) + self.map_shape)
        return self._finish(torch.sigmoid(self.init_logit)).expand(batch, -1, -1, -1)

    def top_down_nodes(self, prefix: str = "htda"):
        """The top-down branch as float graph nodes (snncompile.ir): `TopDown` (the ANN,
        reading the source's spikes), `Delay` (latency L; the initial map before it) and
        `Gate` (the map times the target's current), named `prefix`.top_down / .delay /
        .gate. snncompile.passes.htda.insert_loop puts them into the SNN's graph."""
        from ..ir import Delay, Gate, TopDown
        if self.gain_bits is not None and int(self.gain_bits) < 1:
            raise UnsupportedError(f"HTDA: gain_bits ({self.gain_bits}) must be at least 1 "
                                   "(or null: unrounded)")

        def w(t):
            return t.detach().cpu().numpy().astype(np.float32)
        conv1, conv2 = self.ann[0], self.ann[2]
        top = TopDown(f"{prefix}.top_down", w1=w(conv1.weight), b1=w(conv1.bias),
                      w2=w(conv2.weight), b2=w(conv2.bias), read=self.read, mask=self.mask,
                      gain_bits=int(self.gain_bits or 0), upsample=self.upsample)
        with torch.no_grad():
            init = None if self.init_logit is None else w(self.initial_map(1)[0])
        return top, Delay(f"{prefix}.delay", latency=self.latency, init=init), \
            Gate(f"{prefix}.gate")

    @property
    def first_live_step(self) -> int:
        """First step whose map is trainable (enters the area and TV terms)."""
        return 0 if self.init_logit is not None else self.latency

    def forward(self, x: torch.Tensor, record: dict | None = None, return_maps: bool = False):
        """x: (B, T, *input_shape) -> output spikes (B, T, *out); with `return_maps` also the
        maps (B, T, 1, H, W) (ones for t < latency). `record[name] = {"spikes": ...}` per lif."""
        b, steps = x.shape[:2]
        names, layers = self.snn.names, self.snn.layers
        states: dict[str, tuple] = {}
        spikes: dict[str, list] = {n: [] for n, m in zip(names, layers)
                                   if isinstance(m, LIFLayer)}
        count = None          # source spikes summed over steps 0 .. t-latency
        maps, outs = [], []
        first = self.initial_map(b).to(dtype=x.dtype, device=x.device)
        for t in range(steps):
            if t >= self.latency:
                seen = spikes[self.source][t - self.latency]
                count = seen if count is None else count + seen
                act = count / (t - self.latency + 1) if self.read == "rate" else count
                m = self.attention_map(act)
            else:
                m = first
            maps.append(m)
            h = x[:, t:t + 1]
            for name, layer in zip(names, layers):
                if isinstance(layer, LIFLayer):
                    cur = h[:, 0]
                    if name == self.target:
                        cur = cur * m
                    s, states[name] = lif_step(layer, cur, states.get(name))
                    spikes[name].append(s)
                    h = s[:, None]
                else:
                    h = layer(h)
            outs.append(h[:, 0])
        out = torch.stack(outs, 1)
        if record is not None:
            for name, seq in spikes.items():
                record[name] = {"spikes": torch.stack(seq, 1).detach()}
            record["maps"] = torch.stack(maps, 1).detach()
        if return_maps:
            return out, torch.stack(maps, 1)
        return out


def finish_map(m: torch.Tensor, mask: str, gain_bits: int | None) -> torch.Tensor:
    """The map's last step: "binary" -> [m >= 0.5] (straight-through gradient); "soft" ->
    m on the 1/2**gain_bits grid (quantize_gain; None: as is)."""
    if mask == "binary":
        return _Binary.apply(m)
    return quantize_gain(m, gain_bits)


def top_down_map(activity: torch.Tensor, w1, b1, w2, b2, upsample: tuple[int, int],
                 mask: str, gain_bits: int | None) -> torch.Tensor:
    """`HTDA.attention_map` from the ANN's weights (the float graph's TopDown rule):
    activity (B, C', H', W') -> map (B, 1, H, W)."""
    pad = w1.shape[-1] // 2
    f = torch.nn.functional
    m = torch.sigmoid(f.conv2d(torch.relu(f.conv2d(activity, w1, b1, padding=pad)), w2, b2,
                               padding=pad))
    if tuple(upsample) != (1, 1):
        m = m.repeat_interleave(upsample[0], 2).repeat_interleave(upsample[1], 3)
    return finish_map(m, mask, gain_bits)


def tv_term(maps: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of maps (..., H, W): mean |vertical| + mean |horizontal|."""
    return ((maps[..., 1:, :] - maps[..., :-1, :]).abs().mean()
            + (maps[..., :, 1:] - maps[..., :, :-1]).abs().mean())


def htda_loss(model: HTDA, out: torch.Tensor, maps: torch.Tensor, y: torch.Tensor,
              area: float | None = None, tv: float | None = None) -> dict:
    """The weakly supervised objective (module docstring). Returns the terms and 'loss'."""
    area = model.area if area is None else area
    tv = model.tv if tv is None else tv
    steps = out.shape[1]
    logits = out.sum(1).reshape(out.shape[0], -1) * (8.0 / steps)
    ce = nn.functional.cross_entropy(logits, y)
    live = maps[:, model.first_live_step:]
    zero = torch.zeros((), dtype=out.dtype)
    terms = {"ce": ce, "area": zero, "tv": zero}
    if live.shape[1]:
        terms.update(area=live.mean(), tv=tv_term(live))
    terms["loss"] = ce + area * terms["area"] + tv * terms["tv"]
    return terms


def fit_htda(model: HTDA, x: np.ndarray, y: np.ndarray, epochs: int = 10, lr: float = 5e-3,
             batch_size: int = 64, seed: int = 0) -> list[dict]:
    """Train SNN and ANN jointly (surrogate gradients flow through the spikes into the ANN).
    Returns the mean of every loss term per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    history = []
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        sums: dict[str, float] = {}
        for i in range(0, len(x), batch_size):
            idx = torch.as_tensor(perm[i:i + batch_size])
            out, maps = model(xt[idx], return_maps=True)
            terms = htda_loss(model, out, maps, yt[idx])
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
        history.append({k: v / len(x) for k, v in sums.items()})
    model.eval()
    return history


def load_htda_checkpoint(path: str | Path) -> tuple[HTDA, dict]:
    """Load `save_checkpoint(HTDA(...), path)` (data only, weights_only=True)."""
    model, ckpt = load_model(path)
    if not isinstance(model, HTDA):
        raise InputFileError(f"{path}: not an HTDA checkpoint (config lacks model='htda')")
    return model, ckpt
