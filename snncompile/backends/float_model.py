"""Evaluate a float-stage graph in PyTorch (float32, delay-free local time), for float
accuracy and for calibration statistics (peak |u|, |v| per LIF node).

Each float node type has one rule in `FLOAT` (registered next to its code below):
`rule(node, ins, ctx) -> values`, with `ins` the values of the node's inputs and the
result, all (B, T', *shape) tensors for the T' steps from local step `ctx.t0` on. A graph
without a loop is evaluated over the whole window at once (T' = T, one call per node). A
graph with a loop (HTDA's top-down branch: a `Delay` closes it; a recurrent layer: its
`RecDense`) is evaluated step by step
(T' = 1): at each step the loop delays answer first, from their input's earlier steps,
then every other node in topological order; rules that carry state from one step to the
next (LIF, TopDown) keep it in `ctx.state`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from snncompile.errors import UnsupportedError
from snncompile.ir import (LI, LIF, Attention, AvgPool1d, AvgPool2d, Conv1d, Conv2d, Delay,
                           Dense, Flatten, Gate, Graph, Input, Output, SumPool1d, SumPool2d,
                           TopDown, RecDense)
from snncompile.ir.registry import Rules
from snncompile.nn.layers import LIFLayer

FLOAT = Rules("float evaluation")
"""Float node type -> rule(node, ins, ctx) -> (B, T', *shape) tensor (module docstring)."""


@dataclasses.dataclass
class FloatContext:
    """What rules share while one graph is evaluated: the batch's input chunk `x`, the
    first local step `t0` of the chunk, whether the graph is evaluated step by step
    (`stepping`), per-node state carried between chunks of one batch (`state`), per-node
    PyTorch modules built once per run (`modules`) and the caller's `record` (or None)."""

    x: torch.Tensor = None
    t0: int = 0
    stepping: bool = False
    state: dict = dataclasses.field(default_factory=dict)
    modules: dict = dataclasses.field(default_factory=dict)
    record: dict | None = None

    def module(self, node, build):
        """The module of `node`, built by `build(node)` the first time it is asked for."""
        if node.name not in self.modules:
            self.modules[node.name] = build(node)
        return self.modules[node.name]


def run_float(graph: Graph, inputs: np.ndarray, batch_size: int = 256,
              record: dict | None = None, progress: bool | str = False
              ) -> dict[str, np.ndarray]:
    """Return the outputs (N, T, *shape) of every neuron node (a rule with a `read`): the
    spikes (bool) of every LIF, the readout values (float32, v + offset) of every LI.
    `record`, if a dict, receives {neuron_name: {"peak_u": float, "peak_v": float}}
    maxima over all samples (an LI's v without its offset), and
    record["captured"][attention_name]: the float current entering each attention node."""
    FLOAT.check(graph.node(n) for n in graph.order())
    reads = {n: FLOAT.rule(graph.node(n)).read for n in graph.order()
             if hasattr(FLOAT.rule(graph.node(n)), "read")}   # the neurons' outputs
    out: dict[str, list[np.ndarray]] = {name: [] for name in reads}
    ctx = FloatContext(record=record)
    from snncompile.progress import bar
    with torch.no_grad(), bar(len(inputs), progress if isinstance(progress, str) else
                              "float model", "sample", enabled=bool(progress),
                              leave=False) as pbar:
        for start in range(0, len(inputs), batch_size):
            x = torch.as_tensor(np.asarray(inputs[start:start + batch_size]), dtype=torch.float32)
            ctx.state = {}
            values = evaluate(graph, x, ctx)
            for name, read in reads.items():
                out[name].append(read(values[name]))
            pbar.update(len(x))
    if record is not None and "captured" in record:
        record["captured"] = {k: np.concatenate(v) if isinstance(v, list) else v
                              for k, v in record["captured"].items()}
    return {k: np.concatenate(v) if v else np.zeros((0,), bool) for k, v in out.items()}


def evaluate(graph: Graph, x: torch.Tensor, ctx: FloatContext) -> dict[str, torch.Tensor]:
    """Every node's values (B, T, *shape) on the input batch `x` (B, T, *input shape)."""
    loops = graph.loop_delays()
    if not loops:
        ctx.x, ctx.t0, ctx.stepping = x, 0, False
        return _chunk(graph, ctx, {})
    ctx.stepping = True
    feeds = {d.name: graph.inputs(d.name)[0] for d in loops}
    past = {d: x.new_zeros((x.shape[0], 0) + tuple(graph.shape(d))) for d in feeds}
    steps: list[dict] = []
    for t in range(x.shape[1]):
        ctx.x, ctx.t0 = x[:, t:t + 1], t
        early = {d.name: FLOAT.rule(d)(d, [past[d.name]], ctx) for d in loops}
        values = _chunk(graph, ctx, early)
        for d, src in feeds.items():
            past[d] = torch.cat([past[d], values[src]], 1)
        steps.append(values)
    return {name: torch.cat([s[name] for s in steps], 1) for name in steps[0]}


def _chunk(graph: Graph, ctx: FloatContext, values: dict) -> dict[str, torch.Tensor]:
    """Evaluate every node not in `values` on the chunk `ctx.x`, in topological order."""
    for name in graph.order():
        if name not in values:
            node = graph.node(name)
            values[name] = FLOAT.rule(node)(node, [values[i] for i in graph.inputs(name)],
                                            ctx)
    return values


def _sum(ins: list[torch.Tensor]) -> torch.Tensor:
    """A node's input: the one input, or the sum of several."""
    return ins[0] if len(ins) == 1 else sum(ins)


def _frames(fn, a):
    b, t = a.shape[:2]
    y = fn(a.reshape((b * t,) + tuple(a.shape[2:])))
    return y.reshape((b, t) + tuple(y.shape[1:]))


def _whole_window_only(node, ctx: FloatContext, what: str) -> None:
    if ctx.stepping:
        raise UnsupportedError(f"{node.name}: {type(node).__name__} {what} cannot be "
                               "evaluated step by step (the graph has a loop, see Delay)")


@FLOAT.register(Input)
def _input(node: Input, ins, ctx: FloatContext):
    return ctx.x


@FLOAT.register(Dense)
def _dense(node: Dense, ins, ctx: FloatContext):
    a = _sum(ins)
    w = torch.as_tensor(node.weight, dtype=torch.float32)
    if node.delay is None:
        return _plus_bias(node, a @ w.T)
    _whole_window_only(node, ctx, "with synaptic delays")
    d = torch.as_tensor(np.asarray(node.delay, np.int64))
    out = torch.zeros(a.shape[:2] + (w.shape[0],), dtype=a.dtype)
    for k in torch.unique(d).tolist():   # delay k: step t gets the input of t - k
        if k < a.shape[1]:
            part = a @ torch.where(d == k, w, torch.zeros_like(w)).T
            out[:, k:] += part[:, :a.shape[1] - k] if k else part
    return _plus_bias(node, out)


def _plus_bias(node, y: torch.Tensor) -> torch.Tensor:
    """y + the synapse's bias (per output; per channel of an image) at every step."""
    if node.bias is None:
        return y
    b = torch.as_tensor(np.asarray(node.bias), dtype=torch.float32)
    return y + b.reshape((-1,) + (1,) * (y.dim() - 3))


@FLOAT.register(Conv2d)
def _conv(node: Conv2d, ins, ctx: FloatContext):
    w = torch.as_tensor(node.weight, dtype=torch.float32)
    b = None if node.bias is None else torch.as_tensor(np.asarray(node.bias),
                                                        dtype=torch.float32)
    return _frames(lambda f: torch.nn.functional.conv2d(
        f, w, b, stride=node.stride, padding=node.padding, groups=node.groups), _sum(ins))


@FLOAT.register(Conv1d)
def _conv1d(node: Conv1d, ins, ctx: FloatContext):
    w = torch.as_tensor(node.weight, dtype=torch.float32)
    b = None if node.bias is None else torch.as_tensor(np.asarray(node.bias),
                                                        dtype=torch.float32)
    return _frames(lambda f: torch.nn.functional.conv1d(
        f, w, b, stride=node.stride, padding=node.padding, dilation=node.dilation,
        groups=node.groups), _sum(ins))


@FLOAT.register(AvgPool2d, AvgPool1d)
def _avg_pool(node, ins, ctx: FloatContext):
    return _pooled(node, ins, 1.0)


@FLOAT.register(SumPool2d, SumPool1d)
def _sum_pool(node, ins, ctx: FloatContext):
    return _pooled(node, ins, float(np.prod(node.window)))


def _pooled(node, ins, scale: float):
    """The average over the node's windows (2-D or 1-D, stride = window) times `scale`."""
    k = node.window
    pool = torch.nn.functional.avg_pool2d if len(k) == 2 else torch.nn.functional.avg_pool1d
    return _frames(lambda f: pool(f, k) * scale, _sum(ins))


@FLOAT.register(Flatten)
def _flatten(node: Flatten, ins, ctx: FloatContext):
    a = _sum(ins)
    return a.reshape(a.shape[0], a.shape[1], -1)


@FLOAT.register(Output)
def _output(node: Output, ins, ctx: FloatContext):
    return _sum(ins)


def _lif_module(node: LIF) -> LIFLayer:
    layer = LIFLayer(node.shape, node.du, node.dv, node.vth, bias=True, reset=node.reset,
                     fire_at=node.fire_at)
    layer.bias.data = torch.as_tensor(np.broadcast_to(node.bias, node.shape).copy(),
                                      dtype=torch.float32)
    return layer


@FLOAT.register(LIF)
def _lif(node: LIF, ins, ctx: FloatContext):
    layer = ctx.module(node, _lif_module)
    a = _sum(ins)
    rec = {} if ctx.record is not None else None
    if ctx.stepping:
        y = _lif_steps(layer, a, ctx.state, node.name, rec)
    else:
        y = layer(a, rec)
    if rec is not None:
        old = ctx.record.get(node.name, {"peak_u": 0.0, "peak_v": 0.0})
        ctx.record[node.name] = {k: max(old[k], rec[k]) for k in old}
    return y


_lif.read = lambda y: y.numpy() > 0      # run_float returns a LIF's spikes


def _lif_steps(layer: LIFLayer, x: torch.Tensor, state: dict, name: str,
               rec: dict | None) -> torch.Tensor:
    """`LIFLayer.forward` (same operations, in the same order) continued from the (u, v)
    kept in `state[name]` by the previous chunk of steps; peaks into `rec`."""
    if name in state:
        u, v = state[name]
    else:
        u = torch.zeros((x.shape[0],) + layer.shape, dtype=x.dtype)
        v = torch.zeros_like(u)
    out = []
    peak_u = peak_v = torch.zeros((), dtype=x.dtype)
    for step in range(x.shape[1]):
        s, u, v, v_peak = layer.step(u, v, x[:, step])
        peak_u = torch.maximum(peak_u, u.abs().max())
        peak_v = torch.maximum(peak_v, v_peak.abs().max())
        out.append(s)
    state[name] = (u, v)
    if rec is not None:
        rec["peak_u"], rec["peak_v"] = float(peak_u), float(peak_v)
    return torch.stack(out, dim=1)


@FLOAT.register(LI)
def _li(node: LI, ins, ctx: FloatContext):
    """The readout's recurrence (see `LI`) from u = v = 0 (step by step: continued from
    the (u, v) kept in ctx.state);
    the peaks of |u| and |v| (v without the offset) go to ctx.record for calibration."""
    x = _sum(ins)
    keep_u, keep_v = 1.0 - node.du, 1.0 - node.dv
    bias = torch.as_tensor(np.broadcast_to(node.bias, node.shape).copy())
    offset = torch.as_tensor(np.broadcast_to(node.offset, node.shape).copy())
    if ctx.stepping and node.name in ctx.state:
        u, v = ctx.state[node.name]
    else:
        u = torch.zeros((x.shape[0],) + tuple(node.shape), dtype=x.dtype)
        v = torch.zeros_like(u)
    out = []
    peak_u = peak_v = 0.0
    for step in range(x.shape[1]):
        u = keep_u * u + x[:, step].reshape(u.shape)
        v = keep_v * v + u + bias
        peak_u, peak_v = max(peak_u, float(u.abs().max())), max(peak_v, float(v.abs().max()))
        out.append(v + offset)
    if ctx.stepping:
        ctx.state[node.name] = (u, v)
    if ctx.record is not None:
        old = ctx.record.get(node.name, {"peak_u": 0.0, "peak_v": 0.0})
        ctx.record[node.name] = {"peak_u": max(old["peak_u"], peak_u),
                                 "peak_v": max(old["peak_v"], peak_v)}
    return torch.stack(out, dim=1)


_li.read = lambda y: y.numpy()           # run_float returns an LI's readout values


def attention_module(node: Attention, shape: tuple[int, ...]):
    """The training layer (snncompile.nn.attention.AttentionLayer) with the node's weights."""
    from snncompile.nn.attention import AttentionLayer

    spec = {"kind": node.variant, "mode": node.mode, "window": node.window or None,
            "steps": node.steps or None, "gain_bits": node.gain_bits or None}
    if node.ta_w1 is not None:
        spec["t_ratio"] = max(1, node.ta_w1.shape[1] // node.ta_w1.shape[0])
    if node.ca_w1 is not None:
        spec["c_ratio"] = max(1, node.ca_w1.shape[1] // node.ca_w1.shape[0])
    if node.sa_w is not None:
        spec["kernel"] = node.sa_w.shape[-1]
    layer = AttentionLayer(spec, shape, node.steps or None, node.name)
    parts = layer.gate_modules()
    with torch.no_grad():
        for key, mod in parts.items():
            if key in ("ta", "ca"):
                w1, w2 = getattr(node, f"{key}_w1"), getattr(node, f"{key}_w2")
                if tuple(mod.mlp[0].weight.shape) != w1.shape or \
                        tuple(mod.mlp[2].weight.shape) != w2.shape:
                    raise UnsupportedError(f"{node.name}: {key} MLP weights {w1.shape}, "
                                           f"{w2.shape} do not match the ratio")
                mod.mlp[0].weight.copy_(torch.as_tensor(w1))
                mod.mlp[2].weight.copy_(torch.as_tensor(w2))
            else:
                mod.conv.weight.copy_(torch.as_tensor(node.sa_w))
    return layer.eval()


@FLOAT.register(Attention)
def _attention(node: Attention, ins, ctx: FloatContext):
    _whole_window_only(node, ctx, "(it pools over time)")
    a = _sum(ins)
    if ctx.record is not None:
        ctx.record.setdefault("captured", {}).setdefault(node.name, []).append(a.numpy())
    layer = ctx.module(node, lambda n: attention_module(n, tuple(a.shape[2:])))
    return layer(a)


# ------------------------------------------------ HTDA's top-down loop (snncompile.nn.htda)
@FLOAT.register(Gate)
def _gate(node: Gate, ins, ctx: FloatContext):
    current, gain = ins
    return current * gain


@FLOAT.register(Delay)
def _delay(node: Delay, ins, ctx: FloatContext):
    """ins[0]: the input's values at steps 0 .. t0 - 1 (a loop delay answers before its
    input is computed); the value of step t0 - latency, or `init` before that."""
    past = ins[0]
    b, shape = past.shape[0], tuple(past.shape[2:])
    t = ctx.t0 - node.latency
    if t >= 0:
        return past[:, t:t + 1]
    if node.init is None:
        return torch.ones((b, 1) + shape, dtype=past.dtype)
    init = torch.as_tensor(np.asarray(node.init), dtype=past.dtype)
    return init.expand((b, 1) + shape)


@FLOAT.register(TopDown)
def _top_down(node: TopDown, ins, ctx: FloatContext):
    """The map of every step of the chunk, from the source's spikes summed from step 0
    (the running sum is kept in ctx.state between chunks)."""
    from snncompile.nn.htda import top_down_map
    spikes = ins[0]
    weights = ctx.module(node, lambda n: tuple(torch.as_tensor(np.asarray(a),
                                                               dtype=torch.float32)
                                               for a in (n.w1, n.b1, n.w2, n.b2)))
    count = ctx.state.get(node.name)
    maps = []
    for i in range(spikes.shape[1]):
        count = spikes[:, i] if count is None else count + spikes[:, i]
        act = count / (ctx.t0 + i + 1) if node.read == "rate" else count
        maps.append(top_down_map(act, *weights, upsample=node.upsample, mask=node.mask,
                                 gain_bits=node.gain_bits or None))
    ctx.state[node.name] = count
    return torch.stack(maps, 1)


# ------------------------------------------------ recurrent layers
@FLOAT.register(RecDense)
def _recurrent(node: RecDense, ins, ctx: FloatContext):
    """ins[0]: its LIF's spikes at steps 0 .. t0 - 1 (a back edge answers before its
    input is computed); W s_(t0 - 1), zeros at step 0."""
    past = ins[0]
    w = torch.as_tensor(node.weight, dtype=torch.float32)
    if past.shape[1] == 0:
        return past.new_zeros((past.shape[0], 1, w.shape[0]))
    return past[:, -1:] @ w.T
