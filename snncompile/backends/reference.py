"""Integer reference of a compiled graph, written independently of the simulator.

Where the simulator steps every layer together in global time with explicit one-step
synapse buffers (numpy), this reference evaluates the graph layer by layer over the whole
time window in local time (delay-free), in PyTorch int64, straight from the arithmetic in
the FxLIF / FxDense / FxConv2d docstrings. It does NOT reproduce Lava's weight preparation:
it requires the compiled weights to be representable, so a quantiser bug that relied on
Lava silently truncating weights shows up as a mismatch. Both are compared in `verify`.
"""
from __future__ import annotations

import numpy as np
import torch

from snncompile.backends.base import Run, register_backend
from snncompile.errors import UnsupportedError
from snncompile.ir import (Flatten, FxConv2d, FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate, FxLIF,
                 FxSigmaDelta, Graph, Input, Output)
from snncompile.target import Numerics, load_target


def _wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 `x` to `bits` bits: ((x + half) mod 2 half) - half,
    the modulo taken as a mask (int64 & is two's complement, so exact for negatives)."""
    half = 1 << (bits - 1)
    if x.numel() > 4096:     # large: skip the three passes when every value is in range
        lo, hi = torch.aminmax(x)
        if int(lo) >= -half and int(hi) < half:
            return x
    return ((x + half) & (2 * half - 1)) - half


def _decay(x: torch.Tensor, keep: int, bits: int) -> torch.Tensor:
    """x * keep / 2**bits rounded toward zero: a negative product is biased by 2**bits - 1
    before the (flooring) arithmetic shift."""
    y = x * keep
    return (y + ((y >> 63) & ((1 << bits) - 1))) >> bits


def reference_run(graph: Graph, inputs: np.ndarray, numerics: Numerics | None = None,
                  record_state: bool = False):
    """Return {lif: bool (N, T, *shape)} and, if record_state, {lif: (u, v) int arrays}.
    Co-processor outputs (FxCoprocOut values, (N, T, *shape)) are in `spikes["@" + name]`
    when the graph has any, so that verify can compare what crosses the partition.

    A feed-forward graph is evaluated layer by layer over the whole window; a graph with a
    top-down loop (FxDelay) one local step at a time, every node keeping its state."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # ops on a few MB: a second thread mostly waits on 2 cores
    try:
        return _run(graph, inputs, numerics, record_state)
    finally:
        torch.set_num_threads(threads)


def _run(graph, inputs, numerics, record_state):
    num = numerics or load_target("loihi2").numerics
    x0 = torch.as_tensor(np.asarray(inputs, dtype=np.int64))
    if graph.nodes(FxSigmaDelta):
        if record_state:
            raise UnsupportedError("sigma-delta graphs have no recorded (u, v) state")
        return _global_run(graph, x0)
    n, t = x0.shape[:2]
    chunk = 1 if graph.nodes(FxDelay) else t
    if graph.nodes(FxDelay) and any(n.delay is not None for n in graph.nodes(FxDense)):
        raise UnsupportedError("a graph with both a top-down loop and synaptic delays has no "
                               "integer reference yet")
    state: dict[str, object] = {}
    parts: dict[str, list] = {}
    for start in range(0, t, chunk):
        _evaluate(graph, x0[:, start:start + chunk], start, num, state, parts, record_state)
    spikes, states = {}, {}
    for name, seq in parts.items():
        cat = [torch.cat(p, 1).numpy() for p in zip(*seq)]
        if name.startswith("@"):
            spikes[name] = cat[0]
        else:
            spikes[name] = cat[0].astype(bool)
            if record_state:
                states[name] = (cat[1], cat[2])
    return (spikes, states) if record_state else spikes


def _evaluate(graph, x, start, num, state, parts, record_state):
    """Evaluate local steps [start, start + len) of every node; `state` carries LIF,
    co-processor and loop-delay state across calls."""
    n, k = x.shape[:2]
    values: dict[str, torch.Tensor] = {}
    bias_fed = graph.bias_fed()  # LIFs whose bias the input frames are (netx input layers)
    for d in graph.nodes(FxDelay):  # a loop delay: init, or its input `latency` steps ago
        hist = state.setdefault(d.name, [])
        tau = start - d.latency
        shape = (n, k) + tuple(graph.shape(d.name))
        values[d.name] = (torch.full(shape, d.init, dtype=torch.int64) if tau < 0
                          else torch.cat(hist[tau:tau + k], 1))
    for name in graph.order():
        node = graph.node(name)
        ins = [values[i] for i in graph.inputs(name)]
        if isinstance(node, FxDelay):
            state[name].append(ins[0])
        elif isinstance(node, Input):
            values[name] = x
        elif isinstance(node, FxDense):
            values[name] = _dense(node, ins[0])
        elif isinstance(node, FxConv2d):
            values[name] = _conv(node, ins[0])
        elif isinstance(node, Flatten):
            values[name] = ins[0].reshape(n, k, -1)
        elif isinstance(node, Output):
            values[name] = ins[0]
        elif isinstance(node, FxGate):
            values[name] = _gate(node, ins[0], ins[1])
        elif isinstance(node, FxCoproc):
            if name not in state:
                state[name] = _Coproc(node, n)
            values[name] = state[name].run(ins)
            for src, v in zip(graph.inputs(name), ins):
                parts.setdefault(f"@{name}<-{src}", []).append((v.to(torch.int64),))
        elif isinstance(node, FxCoprocOut):
            values[name] = ins[0][node.port]
            parts.setdefault("@" + name, []).append((values[name],))
        elif isinstance(node, FxLIF):
            if name not in state:
                state[name] = _Lif(node, n, num)
            a = ins[0] if len(ins) == 1 else torch.stack(ins).sum(0)
            frames = None
            if name in bias_fed:           # the frames add to bias_mant; no synaptic input
                a, frames = torch.zeros_like(a), a
            s, u, v = state[name].run(a, record_state, frames)
            values[name] = s
            parts.setdefault(name, []).append((s, u, v) if record_state else (s,))
        else:
            raise UnsupportedError(f"{name}: {type(node).__name__} has no integer reference")


def _check_weights(node, w: torch.Tensor, lo: int, hi: int, step: int):
    step = max(int(step), 1)                          # a power of 2
    bad = (w < lo) | (w > hi) | ((w & (step - 1)) != 0)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise UnsupportedError(f"{node.name}: weight{list(idx)} = {int(w[idx])} is not a "
                               f"representable 8-bit mantissa (range [{lo}, {hi}], step {step})")


def _dense(node: FxDense, x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.int64))
    mixed = node.sign_mode == "mixed"
    lo, hi = {"mixed": (-256, 254), "excitatory": (0, 255),
              "inhibitory": (-255, 0)}[node.sign_mode]
    _check_weights(node, w, lo, hi, 2 ** (8 - node.num_weight_bits + int(mixed)))
    x = x.to(torch.int64)
    if node.num_message_bits == 0:
        x = (x != 0).to(torch.int64)
    e = int(node.weight_exp)

    def shifted(acc):
        if node.num_message_bits:      # graded: Lava's int32 dot product and shift
            acc = _wrap(acc, 32)
        acc = acc * (1 << e) if e > 0 else acc >> -e    # >>: floor (arithmetic)
        return _wrap(acc, 32) if node.num_message_bits else acc
    if node.delay is None:
        return shifted(_exact_matmul(x, w))
    d = torch.as_tensor(np.asarray(node.delay, np.int64))
    out = torch.zeros(x.shape[:2] + (w.shape[0],), dtype=torch.int64)
    for k in torch.unique(d).tolist():             # delay k: step t gets what s(t-k) sent
        if k >= x.shape[1]:
            continue                                # arrives after the window
        part = shifted(torch.matmul(x, torch.where(d == k, w, 0).T))
        out[:, k:] += part[:, :x.shape[1] - k] if k else part
    return out


def _exact_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T of int64 tensors, exactly: in float32 (BLAS) when every partial sum is an
    integer below 2**24 in magnitude (exact in any summation order), else in int64."""
    if x.numel() and w.numel():
        xl, xh = torch.aminmax(x)
        wl, wh = torch.aminmax(w)
        bound = max(-int(xl), int(xh)) * max(-int(wl), int(wh)) * w.shape[1]
        if bound < 2 ** 24:
            return torch.matmul(x.to(torch.float32), w.T.to(torch.float32)).to(torch.int64)
    return torch.matmul(x, w.T)


def _decay_(y: torch.Tensor, bits: int) -> torch.Tensor:
    """`_decay` of an already multiplied y (owned: changed in place)."""
    t = y >> 63
    t &= (1 << bits) - 1
    y += t
    y >>= bits
    return y


def _conv(node: FxConv2d, x: torch.Tensor) -> torch.Tensor:
    n, t = x.shape[:2]
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.int64))
    if node.num_message_bits == 0:
        x, xmax = x != 0, 1
    else:
        lo, hi = torch.aminmax(x)
        xmax = max(-int(lo), int(hi))
    # every partial sum is an integer below `bound` in magnitude: float32 holds them all
    # exactly below 2**24 (in any summation order), float64 below 2**53
    lo, hi = torch.aminmax(w)
    bound = max(-int(lo), int(hi)) * xmax * w[0].numel()
    if bound >= 2 ** 53:
        raise UnsupportedError(f"{node.name}: conv sums up to {bound} exceed the reference's "
                               "exact range")
    dtype = torch.float32 if bound < 2 ** 24 else torch.float64
    y = torch.nn.functional.conv2d(x.reshape((n * t,) + tuple(x.shape[2:])).to(dtype),
                                   w.to(dtype), stride=node.stride, padding=node.padding,
                                   groups=node.groups)
    y = torch.round(y).to(torch.int64)
    return _wrap(y, 24).reshape((n, t) + tuple(y.shape[1:]))


class _Coproc:
    """The co-processor partition through its exported ONNX model, run by onnx's reference
    evaluator step by step (an implementation independent of the simulator's numpy one)."""

    def __init__(self, node: FxCoproc, n: int):
        from onnx.reference import ReferenceEvaluator

        from snncompile.coproc.onnx_export import build_onnx
        self.cg = node.cgraph
        self.evaluator = ReferenceEvaluator(build_onnx(self.cg))
        self.state = self.cg.init_state(n)

    def run(self, ins: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        from snncompile.coproc.onnx_export import run_onnx

        xs = [x.numpy() for x in ins]
        steps = []
        for k in range(xs[0].shape[1]):
            out, self.state = run_onnx(self.evaluator, self.cg,
                                       dict(zip(self.cg.inputs, (x[:, k] for x in xs))),
                                       self.state)
            steps.append(out)
        return {o: torch.as_tensor(np.stack([s[o] for s in steps], 1).astype(np.int64))
                for o in self.cg.outputs}


def _gate(node: FxGate, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(a * g) / 2**shift, floor or to nearest with ties to even (node.rounding); the gain
    broadcasts (same number of axes)."""
    g = g.to(torch.int64)
    fh, fw = node.upsample
    if (fh, fw) != (1, 1):  # nearest: neuron (i, j) reads gain (i // fh, j // fw)
        g = g.repeat_interleave(fh, dim=-2).repeat_interleave(fw, dim=-1)
    a = _wrap(a.to(torch.int64), 32)  # the synapse's int32 message
    d = 1 << node.shift
    out = torch.div(a * g, d, rounding_mode="floor")
    if node.rounding == "nearest_even" and d > 1:  # up iff 2r + parity(q) > d
        r = a * g - out * d
        out = out + torch.div(2 * r + torch.remainder(out, 2) + d - 1, 2 * d,
                              rounding_mode="floor")
    return torch.clamp(out, min=0) if node.relu else out


class _Lif:
    """Integer LIF state (u, v) of one node, advanced over a chunk of local steps."""

    def __init__(self, node: FxLIF, n: int, num: Numerics):
        self.num, self.half = num, num.state_max
        bias_mant = torch.as_tensor(np.broadcast_to(np.asarray(node.bias_mant, np.int64),
                                                    node.shape).copy())
        self.bias = bias_mant * (1 << node.bias_exp)
        self.bias_mant, self.bias_exp = bias_mant, node.bias_exp
        self.vth = node.vth << num.vth_shift
        self.keep_u = num.decay_unity - node.du - 1
        self.keep_v = num.decay_unity - node.dv
        self.u = torch.zeros((n,) + tuple(node.shape), dtype=torch.int64)
        self.v = torch.zeros_like(self.u)

    def run(self, a: torch.Tensor, record: bool, bias_frames: torch.Tensor | None = None):
        """bias_frames (N, k, *shape): per-step bias mantissas added to the node's own.

        What does not depend on the state (the int32 input port and its shift into u) is
        computed for the whole chunk at once; only the recurrence steps one by one."""
        num, half = self.num, self.half
        out, us, vs = [], [], []
        u, v = self.u, self.v
        bias = self.bias
        a_in = _wrap(a.to(torch.int64), 32)                            # int32 input port
        a_in = _wrap(a_in * (1 << num.act_shift), 32)                  # shifted into u
        if bias_frames is not None:
            bias_all = (self.bias_mant + bias_frames.to(torch.int64)) * (1 << self.bias_exp)
        bits, keep_u, keep_v = num.decay_bits, self.keep_u, self.keep_v
        for k in range(a.shape[1]):
            if bias_frames is not None:
                bias = bias_all[:, k]
            u = _decay_(u * keep_u, bits)
            u += a_in[:, k]
            lo, hi = torch.aminmax(u)
            if int(lo) <= -half or int(hi) > half:   # else both wraps below are no-ops
                u = _wrap(u, 32)                                        # int32 register
                u = torch.where(u > half, u - 2 * half, u)              # 24-bit wrap (once)
                u = torch.where(u <= -half, u + 2 * half, u)
            v = _decay_(v * keep_v, bits)
            v += u
            v += bias
            v.clamp_(-half + 1, half - 1)
            s = v > self.vth
            v.masked_fill_(s, 0)
            out.append(s)
            if record:           # u and v are new tensors every step: no copies needed
                us.append(u)
                vs.append(v)
        self.u, self.v = u, v
        s = torch.stack(out, 1).to(torch.int64)
        if record:
            return s, torch.stack(us, 1), torch.stack(vs, 1)
        return s, None, None


# ------------------------------------------------------------------ sigma-delta graphs
def _global_run(graph: Graph, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Sigma-delta neurons are never reset, so such graphs are evaluated layer by layer in
    global time: the input window padded with zero frames to T + max depth, every synapse
    shifting its output one step later; each neuron's outputs are then cut to its local
    window [depth, depth + T)."""
    n, t = x.shape[:2]
    order = graph.order()
    depth = {name: graph.depth(name) for name in order}
    total = t + max(depth.values())
    values: dict[str, torch.Tensor] = {}
    out: dict[str, np.ndarray] = {}
    for name in order:
        node = graph.node(name)
        ins = [values[i] for i in graph.inputs(name)]
        if isinstance(node, Input):
            v = torch.zeros((n, total) + tuple(x.shape[2:]), dtype=torch.int64)
            v[:, :t] = x
        elif isinstance(node, (FxDense, FxConv2d)):
            y = _dense(node, ins[0]) if isinstance(node, FxDense) else _conv(node, ins[0])
            v = torch.zeros_like(y)
            v[:, 1:] = y[:, :-1]                     # delivered one step later
        elif isinstance(node, Flatten):
            v = ins[0].reshape(n, total, -1)
        elif isinstance(node, Output):
            v = ins[0]
        elif isinstance(node, FxSigmaDelta):
            a = ins[0] if len(ins) == 1 else torch.stack(ins).sum(0)
            v = _sigma_delta(node, a.reshape((n, total) + tuple(node.shape)))
            d = depth[name]
            out[name] = v[:, d:d + t].numpy().astype(np.int32)
        else:
            raise UnsupportedError(f"{name}: {type(node).__name__} is not supported in a "
                                   "sigma-delta graph's integer reference")
        values[name] = v
    return out


def _sigma_delta(node: FxSigmaDelta, a: torch.Tensor) -> torch.Tensor:
    """The FxSigmaDelta docstring's recurrence over every step of `a` (N, steps, *shape),
    each register an int32 (wrapped)."""
    scale = 1 << (node.spike_exp + node.state_exp)
    vth = int(_wrap(torch.tensor(node.vth * scale), 32))
    bias = _wrap(torch.as_tensor(np.broadcast_to(np.asarray(node.bias_mant, np.int64),
                                                 node.shape).copy()) * scale, 32)
    zero = torch.zeros((a.shape[0],) + tuple(node.shape), dtype=torch.int64)
    sigma, prev, residue, error = zero.clone(), zero.clone(), zero.clone(), zero.clone()
    outs = []
    for k in range(a.shape[1]):
        a_in = _wrap(a[:, k], 32)
        if node.role == "sigma":
            sigma = _wrap(sigma + a_in, 32)
            outs.append(sigma)
            continue
        if node.role == "delta":
            act = _wrap(a_in * scale, 32)
        else:
            sigma = _wrap(sigma + a_in, 32)
            act = torch.clamp(_wrap(sigma + bias, 32), min=0)
        delta = _wrap(_wrap(act - prev, 32) + residue, 32)
        if node.cum_error:
            error = _wrap(error + delta, 32)
            fire = error.abs() >= vth
            s = torch.where(fire, delta, zero)
            error = torch.where(s != 0, zero, error)
        else:
            s = torch.where(delta.abs() >= vth, delta, zero)
        residue = _wrap(delta - s, 32)
        prev = act
        outs.append(torch.div(s, 1 << node.state_exp, rounding_mode="floor"))
    return torch.stack(outs, 1)


# ------------------------------------------------------------------ the backend
class ReferenceBackend:
    """The `reference` backend: `reference_run` over batches of samples (samples are
    independent), with progress."""

    name = "reference"
    description = "integer reference (PyTorch int64, written independently of the simulator)"
    is_lava = False

    def unsupported(self, graph, source=None) -> str | None:
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False,
            batch: int = 32, record_state: bool = False, **options) -> Run:
        import time

        from snncompile.progress import bar
        x = np.asarray(inputs)
        n = len(x)
        t0 = time.perf_counter()
        if record_state:   # (u, v) of every FxLIF: one call, for diagnostics
            out, state = reference_run(graph, x, numerics, record_state=True)
            return Run(values={k: v for k, v in out.items() if not k.startswith("@")},
                       samples=n, steps=x.shape[1], wall_s=time.perf_counter() - t0,
                       backend="reference", state=state,
                       boundary={k[1:]: v for k, v in out.items() if k.startswith("@")})
        parts: dict[str, list] = {}
        with bar(n, "reference", "sample", enabled=progress) as p:
            for start in range(0, max(n, 1), batch):
                for k, v in reference_run(graph, x[start:start + batch], numerics).items():
                    parts.setdefault(k, []).append(v)
                p.update(min(batch, n - start))
        out = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in parts.items()}
        return Run(values={k: v for k, v in out.items() if not k.startswith("@")},
                   samples=n, steps=x.shape[1], wall_s=time.perf_counter() - t0,
                   backend="reference",
                   boundary={k[1:]: v for k, v in out.items() if k.startswith("@")})


register_backend(ReferenceBackend())
