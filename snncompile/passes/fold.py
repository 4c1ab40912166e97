"""Fold pooling into the following synapse layer.

Loihi has no pooling unit: a pool followed by Dense or Conv2d is one linear map, so the pool
is folded into the weights before quantisation (exact, also in integers, because each
weight is replicated rather than approximated):

* pool(k) -> [Flatten] -> Dense:  W'[o, c, h, w] = W[o, c, h//k, w//k] * (1/k^2 for avg)
* pool(k) -> Conv2d(K, s, p):     kernel W'[o, c, k*a + i, k*b + j] = W[o, c, a, b] (* 1/k^2),
                                  stride k*s, padding k*p  (input size divisible by k)
* the 1-D pools (SumPool1d / AvgPool1d on (C, L)) the same along L: into a Dense after a
  Flatten, or a Conv1d (its dilation made explicit first: the kernel W'[o, c, k*a + i] =
  Wd[o, c, a], stride k*s, padding k*p, dilation 1)

A pool right after a Conv2d (on its current, as in MA-SNN's conv -> AvgPool -> attention ->
neuron block) is folded backwards into that conv instead (`fold_pools_after_conv`, table
`FOLD_BACK`): pool(k) after Conv2d(K, s, p) is the conv with kernel K + s*(k-1), stride s*k,
padding p and W'[d] = factor * sum_{s*i + a = d, i < k} W[a] (per axis) -- the same linear map
in float; the folded weights are quantised like any conv's (a Conv1d likewise along L).

Two tables say what takes part: `POOLS` (pool type -> the factor every replicated weight
gets) and `FOLD_INTO` (the node type a pool feeds -> how the pool folds into it; a Flatten
on the way is passed through).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UnsupportedError
from ..ir import AvgPool1d, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, Graph, SumPool1d, SumPool2d
from ..ir.registry import Rules

POOLS = Rules("pool folding")
"""Pool type -> factor(pool): what each weight replicated over its window is multiplied by."""
FOLD_INTO = Rules("pool folding (into the next synapse)")
"""Node type a pool feeds -> fold(pool, factor, synapse, graph, chain) -> the synapse with
the pool folded in; `chain` is the pool and the Flatten nodes between it and the synapse.
Flatten's entry is `THROUGH`: the chain goes on past it."""

FOLD_BACK = Rules("pool folding (into the preceding synapse)")
"""Node type feeding a pool -> fold(pool, factor, synapse) -> the synapse with the pool
folded in, for a pool on a synapse's current."""

THROUGH = "through"


@POOLS.register(SumPool2d, SumPool1d)
def _sum_factor(pool) -> float:
    return 1.0


@POOLS.register(AvgPool2d, AvgPool1d)
def _average_factor(pool) -> float:
    return 1.0 / float(np.prod(pool.window))


FOLD_INTO.add(Flatten, THROUGH)


@FOLD_INTO.register(Dense)
def _into_dense(pool, factor: float, syn: Dense, graph: Graph, chain: list[str]) -> Dense:
    if syn.delay is not None:
        raise UnsupportedError(f"{syn.name}: a pool cannot be folded into a Dense "
                               "with synaptic delays")
    if len(chain) == 1:
        raise UnsupportedError(f"{syn.name}: Dense after a pool needs a Flatten")
    w = syn.weight.reshape((syn.weight.shape[0],) + tuple(graph.shape(pool.name)))
    for axis, k in enumerate(pool.window, start=2):     # (O, C, *pooled positions)
        w = np.repeat(w, k, axis=axis)
    w = w * factor
    return Dense(syn.name, weight=w.reshape(w.shape[0], -1).astype(syn.weight.dtype),
                 bias=syn.bias)


@FOLD_INTO.register(Conv2d)
def _into_conv(pool, factor: float, syn: Conv2d, graph: Graph, chain: list[str]) -> Conv2d:
    if len(chain) > 1:
        raise UnsupportedError(f"{syn.name}: Conv2d cannot follow a Flatten")
    kh, kw = pool.kernel
    w = np.repeat(np.repeat(syn.weight, kh, axis=2), kw, axis=3) * factor
    return Conv2d(syn.name, weight=w.astype(syn.weight.dtype),
                  stride=(syn.stride[0] * kh, syn.stride[1] * kw),
                  padding=(syn.padding[0] * kh, syn.padding[1] * kw),
                  groups=syn.groups, bias=syn.bias)


@FOLD_INTO.register(Conv1d)
def _into_conv1d(pool, factor: float, syn: Conv1d, graph: Graph, chain: list[str]) -> Conv1d:
    if len(chain) > 1:
        raise UnsupportedError(f"{syn.name}: Conv1d cannot follow a Flatten")
    (k,) = pool.window
    w = np.repeat(syn.dense_kernel(), k, axis=2) * factor
    return Conv1d(syn.name, weight=w.astype(syn.weight.dtype), stride=syn.stride * k,
                  padding=syn.padding * k, groups=syn.groups, bias=syn.bias)


@FOLD_BACK.register(Conv1d)
def _after_conv1d(pool, factor: float, syn: Conv1d) -> Conv1d:
    """A 1-D pool of the conv's output, as `_after_conv` along L (dilation made explicit)."""
    (k,), s = pool.window, syn.stride
    wd = syn.dense_kernel()
    o, ig, ka = wd.shape
    w = np.zeros((o, ig, ka + s * (k - 1)), np.float64)
    for i in range(k):
        w[:, :, s * i:s * i + ka] += wd
    bias = None if syn.bias is None else syn.bias * (k * factor)
    return dataclasses.replace(syn, weight=(w * factor).astype(syn.weight.dtype),
                               stride=s * k, dilation=1, bias=bias)


@FOLD_BACK.register(Conv2d)
def _after_conv(pool, factor: float, syn: Conv2d) -> Conv2d:
    """A pool of the conv's output: the kernel summed over the window (times the pool's
    factor), and the bias, added at each of the k*k positions summed, times k*k*factor."""
    (kh, kw), (sh, sw) = pool.kernel, syn.stride
    o, ig, ka, kb = syn.weight.shape
    w = np.zeros((o, ig, ka + sh * (kh - 1), kb + sw * (kw - 1)), np.float64)
    for i in range(kh):
        for j in range(kw):
            w[:, :, sh * i:sh * i + ka, sw * j:sw * j + kb] += syn.weight
    bias = None if syn.bias is None else syn.bias * (kh * kw * factor)
    return dataclasses.replace(syn, weight=(w * factor).astype(syn.weight.dtype),
                               stride=(sh * kh, sw * kw), bias=bias)


def fold_pools_after_conv(graph: Graph) -> tuple[Graph, bool]:
    """Fold every pool whose input is a synapse's current (a FOLD_BACK type read by nothing
    else) into that synapse. Return (new graph, changed)."""
    pools = [n for n in graph.order() if POOLS.supports(graph.node(n))
             and FOLD_BACK.supports(graph.node(graph.inputs(n)[0]))]
    if not pools:
        return graph, False
    replace, rename = {}, {}
    for name in pools:
        pool, src = graph.node(name), graph.inputs(name)[0]
        if len(graph.outputs(src)) != 1:
            raise UnsupportedError(f"{name}: the pool's synapse {src} has other readers; "
                                   "it cannot be folded into it")
        replace[src] = FOLD_BACK.rule(graph.node(src))(pool, POOLS.rule(pool)(pool),
                                                       graph.node(src))
        rename[name] = src
    return _rebuild(graph, replace, rename), True


def fold_pools(graph: Graph) -> tuple[Graph, bool]:
    """Return (new graph, changed)."""
    graph, back = fold_pools_after_conv(graph)
    pools = [name for name in graph.order() if POOLS.supports(graph.node(name))]
    if not pools:
        return graph, back
    replace: dict[str, object] = {}
    rename: dict[str, str] = {}
    for name in pools:
        pool = graph.node(name)
        chain, target = _chain_to_synapse(graph, name)
        replace[target] = FOLD_INTO.rule(graph.node(target))(
            pool, POOLS.rule(pool)(pool), graph.node(target), graph, chain)
        pshape = graph.shape(graph.inputs(name)[0])
        if any(n % k for n, k in zip(pshape[1:], pool.window)):
            raise UnsupportedError(f"{name}: input {'x'.join(map(str, pshape[1:]))} not "
                                   f"divisible by the pooling kernel "
                                   f"{'x'.join(map(str, pool.window))}")
        rename[name] = graph.inputs(name)[0]
    return _rebuild(graph, replace, rename), True


def _rebuild(graph: Graph, replace: dict, rename: dict) -> Graph:
    """The graph with nodes replaced and the renamed (folded) nodes dropped, their readers
    reading what they read."""
    new = Graph(graph.meta)
    for n in graph.order():
        if n in rename:
            continue
        ins = []
        for i in graph.inputs(n):
            while i in rename:
                i = rename[i]
            ins.append(i)
        new.add(replace.get(n, graph.node(n)), ins)
    new.validate()
    return new


def _chain_to_synapse(graph: Graph, pool: str) -> tuple[list[str], str]:
    """(the pool and the Flatten nodes after it, the node they feed); refused unless that
    node is one a pool folds into and nothing else reads the chain."""
    chain = [pool]
    succ = graph.outputs(pool)
    while len(succ) == 1 and FOLD_INTO.get(graph.node(succ[0])) is THROUGH:
        chain.append(succ[0])
        succ = graph.outputs(succ[0])
    if len(succ) != 1 or not FOLD_INTO.supports(graph.node(succ[0])) \
            or any(len(graph.outputs(c)) != 1 for c in chain):
        raise UnsupportedError(
            f"{pool}: a pooling layer must feed exactly one Dense, Conv2d or Conv1d "
            "(optionally through Flatten) so it can be folded into its weights; Loihi has no "
            "pooling unit")
    return chain, succ[0]
