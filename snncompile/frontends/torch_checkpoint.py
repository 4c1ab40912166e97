"""Import a checkpoint of the package's own PyTorch layers into a float `Graph`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..ir import (LIF, Attention, AvgPool2d, Conv2d, Dense, Flatten, Graph, Input, Output,
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
    nodes = [Input("input", shape=tuple(inp["shape"]), encoding=inp.get("encoding", "spikes"),
                   bits=int(inp.get("bits", 1)))]
    for name, spec, layer in zip(model.names, cfg["layers"], model.layers):
        kind = spec["type"]
        if kind == "dense":
            w = layer.module.weight.detach().numpy().astype(np.float32)
            nodes.append(Dense(name, weight=w))
        elif kind == "conv2d":
            conv = layer.module
            nodes.append(Conv2d(name, weight=conv.weight.detach().numpy().astype(np.float32),
                                stride=conv.stride, padding=conv.padding, groups=conv.groups))
        elif kind == "sumpool2d":
            nodes.append(SumPool2d(name, kernel=(int(spec["kernel"]),) * 2))
        elif kind == "avgpool2d":
            nodes.append(AvgPool2d(name, kernel=(int(spec["kernel"]),) * 2))
        elif kind == "flatten":
            nodes.append(Flatten(name))
        elif kind == "attention":
            nodes.append(_attention(name, spec, layer, cfg))
        else:
            assert isinstance(layer, LIFLayer)
            bias = (layer.bias.detach().numpy().astype(np.float32) if layer.bias is not None
                    else np.zeros(layer.shape, np.float32))
            nodes.append(LIF(name, shape=layer.shape, du=layer.du, dv=layer.dv,
                             vth=layer.vth, bias=bias))
    nodes.append(Output("output"))
    graph = Graph.sequential(nodes, meta=meta)
    graph.validate()
    return graph


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
