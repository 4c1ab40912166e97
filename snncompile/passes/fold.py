"""Fold pooling into the following synapse layer.

Loihi has no pooling unit: a pool followed by Dense or Conv2d is one linear map, so the pool
is folded into the weights before quantisation (exact, also in integers, because each
weight is replicated rather than approximated):

* pool(k) -> [Flatten] -> Dense:  W'[o, c, h, w] = W[o, c, h//k, w//k] * (1/k^2 for avg)
* pool(k) -> Conv2d(K, s, p):     kernel W'[o, c, k*a + i, k*b + j] = W[o, c, a, b] (* 1/k^2),
                                  stride k*s, padding k*p  (input size divisible by k)
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import AvgPool2d, Conv2d, Dense, Flatten, Graph, SumPool2d


def fold_pools(graph: Graph) -> tuple[Graph, bool]:
    """Return (new graph, changed)."""
    pools = [n.name for n in graph.nodes(SumPool2d)]
    if not pools:
        return graph, False
    new = Graph(graph.meta)
    skip: set[str] = set()
    replace: dict[str, object] = {}
    rename: dict[str, str] = {}
    for name in pools:
        pool = graph.node(name)
        chain = [name]
        succ = graph.outputs(name)
        while len(succ) == 1 and isinstance(graph.node(succ[0]), Flatten):
            chain.append(succ[0])
            succ = graph.outputs(succ[0])
        if len(succ) != 1 or not isinstance(graph.node(succ[0]), (Dense, Conv2d)) \
                or any(len(graph.outputs(c)) != 1 for c in chain):
            raise UnsupportedError(
                f"{name}: a pooling layer must feed exactly one Dense or Conv2d (optionally "
                "through Flatten) so it can be folded into its weights; Loihi has no pooling "
                "unit")
        syn = graph.node(succ[0])
        pshape = graph.shape(graph.inputs(name)[0])
        scale = 1.0 / (pool.kernel[0] * pool.kernel[1]) if isinstance(pool, AvgPool2d) else 1.0
        kh, kw = pool.kernel
        if isinstance(syn, Dense):
            if syn.delay is not None:
                raise UnsupportedError(f"{syn.name}: a pool cannot be folded into a Dense "
                                       "with synaptic delays")
            c, ph, pw = graph.shape(name)
            w = syn.weight.reshape(syn.weight.shape[0], c, ph, pw)
            w = np.repeat(np.repeat(w, kh, axis=2), kw, axis=3) * scale
            flat = len(chain) > 1
            replace[succ[0]] = Dense(syn.name, weight=w.reshape(w.shape[0], -1)
                                     .astype(syn.weight.dtype))
            if not flat:
                raise UnsupportedError(f"{syn.name}: Dense after a pool needs a Flatten")
        else:
            if len(chain) > 1:
                raise UnsupportedError(f"{syn.name}: Conv2d cannot follow a Flatten")
            w = np.repeat(np.repeat(syn.weight, kh, axis=2), kw, axis=3) * scale
            replace[succ[0]] = Conv2d(syn.name, weight=w.astype(syn.weight.dtype),
                                      stride=(syn.stride[0] * kh, syn.stride[1] * kw),
                                      padding=(syn.padding[0] * kh, syn.padding[1] * kw),
                                      groups=syn.groups)
        if pshape[1] % kh or pshape[2] % kw:
            raise UnsupportedError(f"{name}: input {pshape[1]}x{pshape[2]} not divisible by "
                                   f"the pooling kernel {kh}x{kw}")
        skip.add(name)
        rename[name] = graph.inputs(name)[0]
    for n in graph.order():
        if n in skip:
            continue
        ins = []
        for i in graph.inputs(n):
            while i in rename:
                i = rename[i]
            ins.append(i)
        new.add(replace.get(n, graph.node(n)), ins)
    new.validate()
    return new, True
