"""Import a checkpoint of the package's own PyTorch layers into a float `Graph`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..ir import (LIF, Attention, AvgPool1d, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, Graph,
                  Input, Output, SumPool1d, SumPool2d, RecDense)
from ..errors import UnsupportedError
from ..nn.checkpoint import load_checkpoint
from ..nn.layers import SNN, LIFLayer, RecurrentLIFLayer


def graph_from_model(model: SNN, meta: dict | None = None) -> Graph:
    """Translate an `SNN` module into a float graph (one node per layer, then `Output`)."""
    if not isinstance(model, SNN):
        raise UnsupportedError(
            f"{type(model).__name__}: its top-down loop has no feed-forward float graph; "
            "use model_graph (the SNN's graph with the loop's TopDown, Delay and Gate "
            "nodes, see snncompile.passes.htda)")
    cfg = model.config
    inp = cfg["input"]
    graph = Graph(meta)
    graph.add(Input("input", shape=tuple(inp["shape"]), encoding=inp.get("encoding", "spikes"),
                    bits=int(inp.get("bits", 1))))
    graph.meta.setdefault("folded", [])
    prev = _add_layers(graph, model.names, cfg["layers"], model.layers, cfg, ["input"])
    graph.add(Output("output"), prev)
    if not graph.meta["folded"]:
        del graph.meta["folded"]
    graph.validate()
    return graph


def _add_layers(graph: Graph, names, specs, layers, cfg: dict, prev: list[str]):
    """Add a list of layers fed by `prev`; a batchnorm layer is folded into the synapse
    before it (`fold_batchnorm`), which `SNN` guarantees it follows. Return what feeds
    the next layer."""
    items = list(zip(names, specs, layers))
    for i, (name, spec, layer) in enumerate(items):
        if spec["type"] == "batchnorm":
            continue                     # folded into items[i - 1] below
        if i + 1 < len(items) and items[i + 1][1]["type"] == "batchnorm":
            bn_name, _, bn = items[i + 1]
            node = fold_batchnorm(_node(name, spec, layer, cfg), bn.module, bn_name)
            graph.add(node, prev)
            graph.meta["folded"].append({"batchnorm": bn_name, "into": name})
            prev = [name]
        else:
            prev = _add_layer(graph, name, spec, layer, cfg, prev)
    return prev


def _add_layer(graph: Graph, name: str, spec: dict, layer, cfg: dict, prev: list[str]):
    """Add layer `name` fed by `prev`; return the names that feed the next layer (a
    residual block: its body's and its shortcut's last synapses, summed by the next LIF)."""
    if isinstance(layer, RecurrentLIFLayer):   # its spikes back into itself: a back edge
        rec = graph.add_delay(RecDense(f"{name}.rec", weight=layer.rec.weight.detach()
                                       .numpy().astype(np.float32)), layer.shape)
        graph.add(_node(name, spec, layer, cfg), prev + [rec.name])
        graph.connect(name, rec.name)
        return [name]
    if spec["type"] != "residual":
        graph.add(_node(name, spec, layer, cfg), prev)
        return [name]
    ends = []
    for part, names, mods in (("body", layer.body_names, layer.body),
                              ("shortcut", layer.shortcut_names, layer.shortcut)):
        here = _add_layers(graph, names, spec.get(part) or [], mods, cfg, prev)
        if not names:              # identity shortcut: spikes added as identity synapses
            graph.add(_identity(f"{name}.shortcut", graph.shape(prev[0])), prev)
            here = [f"{name}.shortcut"]
        ends += here
    return ends


def fold_batchnorm(syn: Dense | Conv2d, bn, bn_name: str) -> Dense | Conv2d:
    """`syn` followed by the BatchNorm `bn` in eval mode, as one synapse: with
    s = gamma / sqrt(running_var + eps), w' = w * s (per output channel) and
    b' = (b - running_mean) * s + beta (b = 0 without a bias). Computed in float64."""
    n = syn.weight.shape[0]
    if not bn.track_running_stats or bn.running_var is None:
        raise UnsupportedError(f"{bn_name}: a batchnorm without running statistics cannot "
                               "be folded (eval mode needs running_mean and running_var)")
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = (bn.weight.detach().double().numpy() if bn.affine else np.ones(n))
    beta = (bn.bias.detach().double().numpy() if bn.affine else np.zeros(n))
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)
            and np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise UnsupportedError(f"{bn_name}: batchnorm statistics must be finite with "
                               "running_var >= 0")
    s = gamma / np.sqrt(var + float(bn.eps))
    w = syn.weight.astype(np.float64) * s.reshape((-1,) + (1,) * (syn.weight.ndim - 1))
    b = np.zeros(n) if syn.bias is None else syn.bias.astype(np.float64)
    bias = (b - mean) * s + beta
    return dataclasses.replace(syn, weight=w.astype(np.float32),
                               bias=bias.astype(np.float32))


def _identity(name: str, shape: tuple) -> Dense | Conv2d | Conv1d:
    """A synapse that passes its input on unchanged (weight 1 per element)."""
    if len(shape) == 1:
        return Dense(name, weight=np.eye(shape[0], dtype=np.float32))
    if len(shape) == 2:
        return Conv1d(name, weight=np.ones((shape[0], 1, 1), np.float32), groups=shape[0])
    return Conv2d(name, weight=np.ones((shape[0], 1, 1, 1), np.float32), groups=shape[0])


def _node(name: str, spec: dict, layer, cfg: dict):
    """The float node of one (non-residual) layer."""
    kind = spec["type"]
    if kind == "dense":
        return Dense(name, weight=layer.module.weight.detach().numpy().astype(np.float32),
                     bias=_bias(layer.module))
    if kind == "conv2d":
        conv = layer.module
        return Conv2d(name, weight=conv.weight.detach().numpy().astype(np.float32),
                      stride=conv.stride, padding=conv.padding, groups=conv.groups,
                      bias=_bias(conv))
    if kind == "conv1d":
        conv = layer.module
        return Conv1d(name, weight=conv.weight.detach().numpy().astype(np.float32),
                      stride=conv.stride[0], padding=conv.padding[0],
                      dilation=conv.dilation[0], groups=conv.groups, bias=_bias(conv))
    if kind == "sumpool2d":
        return SumPool2d(name, kernel=(int(spec["kernel"]),) * 2)
    if kind == "avgpool2d":
        return AvgPool2d(name, kernel=(int(spec["kernel"]),) * 2)
    if kind == "sumpool1d":
        return SumPool1d(name, kernel=int(spec["kernel"]))
    if kind == "avgpool1d":
        return AvgPool1d(name, kernel=int(spec["kernel"]))
    if kind == "flatten":
        return Flatten(name)
    if kind == "attention":
        return _attention(name, spec, layer, cfg)
    assert isinstance(layer, LIFLayer)
    bias = (layer.bias.detach().numpy().astype(np.float32) if layer.bias is not None
            else np.zeros(layer.shape, np.float32))
    params = {k: (v if isinstance(v, float) else v.detach().numpy().astype(np.float64))
              for k, v in (("du", layer.du), ("dv", layer.dv), ("vth", layer.vth))}
    return LIF(name, shape=layer.shape, bias=bias, reset=layer.reset, fire_at=layer.fire_at,
               **params)   # learned (PLIF) values: float32 arrays, exactly


def _bias(module) -> np.ndarray | None:
    """A Linear's or Conv2d's / Conv1d's bias as float32, or None."""
    return None if module.bias is None else module.bias.detach().numpy().astype(np.float32)


def _attention(name: str, spec: dict, layer, cfg: dict) -> Attention:
    """The float attention node: its variant, mode and the trained weights it needs."""

    def w(module):
        return module.weight.detach().numpy().astype(np.float32)
    parts = {"ta": None, "ca": None, "sa": None, **layer.gate_modules()}
    arrays = {}
    for key in ("ta", "ca"):
        if parts[key] is not None:
            arrays[f"{key}_w1"] = w(parts[key].mlp[0])
            arrays[f"{key}_w2"] = w(parts[key].mlp[2])
    if parts["sa"] is not None:
        arrays["sa_w"] = w(parts["sa"].conv)
    steps = spec.get("steps", cfg["input"].get("steps")) or 0
    return Attention(name, variant=layer.kind, mode=layer.mode,
                     window=int(spec.get("window") or 0), steps=int(steps),
                     gain_bits=int(spec.get("gain_bits") or 0), **arrays)


def import_checkpoint(path: str | Path) -> Graph:
    """Load a checkpoint (weights only, never code) and return its float graph."""
    return model_graph(path, *load_checkpoint(path))


def model_graph(path: str | Path, model, ckpt: dict) -> Graph:
    """The float graph of a loaded model; an HTDA model's is its SNN's graph with the
    top-down loop in it (`HTDA.top_down_nodes`, snncompile.passes.htda.insert_loop)."""
    meta = {"source": Path(path).name, "frontend": "snncompile-checkpoint"}
    if isinstance(ckpt.get("extra"), dict):
        meta["extra"] = {k: v for k, v in ckpt["extra"].items()
                         if isinstance(v, (str, int, float, bool))}
    if not hasattr(model, "top_down_nodes"):
        return graph_from_model(model, meta)
    from ..passes.htda import TopDownLoop, insert_loop
    loop = TopDownLoop(*model.top_down_nodes(), source=model.source, target=model.target)
    return insert_loop(graph_from_model(model.snn, meta), loop)
