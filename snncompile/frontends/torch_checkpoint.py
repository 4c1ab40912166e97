"""Import a checkpoint of the package's own PyTorch layers into a float `Graph`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..ir import (LIF, Attention, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, Graph, Input, Output,
                  SumPool2d)
from ..errors import UnsupportedError
from ..nn.checkpoint import load_checkpoint
from ..nn.layers import SNN, LIFLayer


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
    prev = ["input"]
    for name, spec, layer in zip(model.names, cfg["layers"], model.layers):
        prev = _add_layer(graph, name, spec, layer, cfg, prev)
    graph.add(Output("output"), prev)
    graph.validate()
    return graph


def _add_layer(graph: Graph, name: str, spec: dict, layer, cfg: dict, prev: list[str]):
    """Add layer `name` fed by `prev`; return the names that feed the next layer (a
    residual block: its body's and its shortcut's last synapses, summed by the next LIF)."""
    if spec["type"] != "residual":
        graph.add(_node(name, spec, layer, cfg), prev)
        return [name]
    ends = []
    for part, names, mods in (("body", layer.body_names, layer.body),
                              ("shortcut", layer.shortcut_names, layer.shortcut)):
        here = prev
        for sub_name, sub_spec, sub in zip(names, spec.get(part) or [], mods):
            here = _add_layer(graph, sub_name, sub_spec, sub, cfg, here)
        if not names:              # identity shortcut: spikes added as identity synapses
            graph.add(_identity(f"{name}.shortcut", graph.shape(prev[0])), prev)
            here = [f"{name}.shortcut"]
        ends += here
    return ends


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
        return Dense(name, weight=layer.module.weight.detach().numpy().astype(np.float32))
    if kind == "conv2d":
        conv = layer.module
        return Conv2d(name, weight=conv.weight.detach().numpy().astype(np.float32),
                      stride=conv.stride, padding=conv.padding, groups=conv.groups)
    if kind == "conv1d":
        conv = layer.module
        return Conv1d(name, weight=conv.weight.detach().numpy().astype(np.float32),
                      stride=conv.stride[0], padding=conv.padding[0],
                      dilation=conv.dilation[0], groups=conv.groups)
    if kind == "sumpool2d":
        return SumPool2d(name, kernel=(int(spec["kernel"]),) * 2)
    if kind == "avgpool2d":
        return AvgPool2d(name, kernel=(int(spec["kernel"]),) * 2)
    if kind == "flatten":
        return Flatten(name)
    if kind == "attention":
        return _attention(name, spec, layer, cfg)
    assert isinstance(layer, LIFLayer)
    bias = (layer.bias.detach().numpy().astype(np.float32) if layer.bias is not None
            else np.zeros(layer.shape, np.float32))
    return LIF(name, shape=layer.shape, du=layer.du, dv=layer.dv, vth=layer.vth, bias=bias,
               reset=layer.reset, fire_at=layer.fire_at)


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
