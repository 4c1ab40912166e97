"""Evaluate a float-stage graph in PyTorch (float32, delay-free local time), for float
accuracy and for calibration statistics (peak |u|, |v| per LIF node)."""
from __future__ import annotations

import numpy as np
import torch

from snncompile.errors import UnsupportedError
from snncompile.ir import (LIF, Attention, AvgPool2d, Conv2d, Dense, Flatten, Graph, Input, Output,
                  SumPool2d)
from snncompile.nn.layers import LIFLayer


def run_float(graph: Graph, inputs: np.ndarray, batch_size: int = 256,
              record: dict | None = None, progress: bool | str = False
              ) -> dict[str, np.ndarray]:
    """Return spikes (bool, (N, T, *shape)) of every LIF node. `record`, if a dict, receives
    {lif_name: {"peak_u": float, "peak_v": float}} maxima over all samples, and
    record["captured"][attention_name]: the float current entering each attention node."""
    lif_layers = {n.name: _lif_module(n) for n in graph.nodes(LIF)}
    lif_layers.update({n.name: attention_module(n, graph.shape(n.name))
                       for n in graph.nodes(Attention)})
    out: dict[str, list[np.ndarray]] = {name: [] for name in lif_layers}
    from snncompile.progress import bar
    with torch.no_grad(), bar(len(inputs), progress if isinstance(progress, str) else
                              "float model", "sample", enabled=bool(progress),
                              leave=False) as pbar:
        for start in range(0, len(inputs), batch_size):
            x = torch.as_tensor(np.asarray(inputs[start:start + batch_size]), dtype=torch.float32)
            values: dict[str, torch.Tensor] = {}
            for name in graph.order():
                node = graph.node(name)
                ins = [values[i] for i in graph.inputs(name)]
                if isinstance(node, Input):
                    values[name] = x
                    continue
                a = ins[0] if len(ins) == 1 else sum(ins)
                if record is not None and isinstance(node, Attention):
                    record.setdefault("captured", {}).setdefault(name, []).append(a.numpy())
                values[name] = y = _apply(node, a, lif_layers, record)
                if isinstance(node, LIF):
                    out[name].append(y.numpy() > 0)
            pbar.update(len(x))
    if record is not None and "captured" in record:
        record["captured"] = {k: np.concatenate(v) if isinstance(v, list) else v
                              for k, v in record["captured"].items()}
    return {k: np.concatenate(v) if v else np.zeros((0,), bool) for k, v in out.items()}


def _lif_module(node: LIF) -> LIFLayer:
    layer = LIFLayer(node.shape, node.du, node.dv, node.vth, bias=True)
    layer.bias.data = torch.as_tensor(np.broadcast_to(node.bias, node.shape).copy(),
                                      dtype=torch.float32)
    return layer


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
    block = layer.block
    parts = ({"ta": block.ta, "ca": block.ca, "sa": block.sa} if node.variant == "tcsa"
             else {node.variant: block})
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


def _frames(fn, a):
    b, t = a.shape[:2]
    y = fn(a.reshape((b * t,) + tuple(a.shape[2:])))
    return y.reshape((b, t) + tuple(y.shape[1:]))


def _apply(node, a, lif_layers, record):
    if isinstance(node, Dense):
        w = torch.as_tensor(node.weight, dtype=torch.float32)
        if node.delay is None:
            return a @ w.T
        d = torch.as_tensor(np.asarray(node.delay, np.int64))
        out = torch.zeros(a.shape[:2] + (w.shape[0],), dtype=a.dtype)
        for k in torch.unique(d).tolist():   # delay k: step t gets the input of t - k
            if k < a.shape[1]:
                part = a @ torch.where(d == k, w, torch.zeros_like(w)).T
                out[:, k:] += part[:, :a.shape[1] - k] if k else part
        return out
    if isinstance(node, Conv2d):
        w = torch.as_tensor(node.weight, dtype=torch.float32)
        return _frames(lambda f: torch.nn.functional.conv2d(
            f, w, stride=node.stride, padding=node.padding, groups=node.groups), a)
    if isinstance(node, AvgPool2d):
        return _frames(lambda f: torch.nn.functional.avg_pool2d(f, node.kernel), a)
    if isinstance(node, SumPool2d):
        k = node.kernel
        return _frames(lambda f: torch.nn.functional.avg_pool2d(f, k) * (k[0] * k[1]), a)
    if isinstance(node, Flatten):
        return a.reshape(a.shape[0], a.shape[1], -1)
    if isinstance(node, LIF):
        rec = {} if record is not None else None
        y = lif_layers[node.name](a, rec)
        if record is not None:
            old = record.get(node.name, {"peak_u": 0.0, "peak_v": 0.0})
            record[node.name] = {k: max(old[k], rec[k]) for k in old}
        return y
    if isinstance(node, Attention):
        return lif_layers[node.name](a)
    if isinstance(node, Output):
        return a
    raise UnsupportedError(f"{node.name}: {type(node).__name__} cannot be evaluated in float")
