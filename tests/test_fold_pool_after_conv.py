"""AvgPool on a conv's current (MA-SNN's conv -> AvgPool -> attention -> neuron block):
folded backwards into the conv exactly, and compiled end to end."""
import numpy as np
import pytest
import torch

from snncompile.errors import UnsupportedError
from snncompile.ir import LIF, AvgPool2d, Conv2d, Graph, Input, Output, SumPool2d
from snncompile.passes.fold import fold_pools, fold_pools_after_conv


def _conv_pool(k, stride, pad, pool=AvgPool2d, size=(8, 6)):
    rng = np.random.default_rng(k * 10 + stride + pad)
    g = Graph({})
    g.add(Input("x", shape=(2,) + size), [])
    g.add(Conv2d("c", weight=rng.normal(size=(3, 2, 3, 3)).astype(np.float32),
                 stride=(stride, stride), padding=(pad, pad)), ["x"])
    g.add(pool("p", kernel=(k, k)), ["c"])
    g.add(LIF("n", shape=g.shape("p"), du=0.5, dv=0.5), ["p"])
    g.add(Output("o"), ["n"])
    return g


@pytest.mark.parametrize("k, stride, pad", [(2, 1, 1), (2, 2, 0), (3, 1, 2), (2, 1, 0)])
def test_folded_conv_equals_conv_then_pool(k, stride, pad):
    size = tuple(stride * (k * m - 1) + 3 - 2 * pad for m in (3, 2))  # conv out k*m
    g = _conv_pool(k, stride, pad, size=size)
    conv = g.node("c")
    x = torch.randn(2, 2, *g.node("x").shape[1:], dtype=torch.float64)
    want = torch.nn.functional.avg_pool2d(torch.nn.functional.conv2d(
        x, torch.as_tensor(conv.weight, dtype=torch.float64), stride=conv.stride,
        padding=conv.padding), k)
    new, changed = fold_pools_after_conv(g)
    assert changed and [type(new.node(n)).__name__ for n in new.order()] == ["Input", "Conv2d",
                                                                        "LIF", "Output"]
    f = new.node("c")
    got = torch.nn.functional.conv2d(x, torch.as_tensor(f.weight, dtype=torch.float64),
                                     stride=f.stride, padding=f.padding)
    assert f.stride == (stride * k, stride * k) and f.padding == conv.padding
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert new.shape("c") == g.shape("p") and new.inputs("n") == ["c"]


def test_fold_pools_runs_the_backward_fold_and_a_shared_conv_is_refused():
    g = _conv_pool(2, 1, 1)
    new, changed = fold_pools(g)
    assert changed and "p" not in new.order()
    g.add(SumPool2d("q", kernel=(2, 2)), ["c"])
    with pytest.raises(UnsupportedError, match="p: the pool's synapse c has other readers"):
        fold_pools_after_conv(g)


def test_authors_block_order_compiles_and_backends_agree():
    from snncompile.backends.reference import reference_run
    from snncompile.backends.sim import Simulator
    from snncompile.frontends import graph_from_model
    from snncompile.nn.attention import AttentionSNN
    from snncompile.pipeline import compile_model
    torch.manual_seed(2)
    lif = {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5}
    model = AttentionSNN({"input": {"shape": [2, 8, 8], "encoding": "spikes", "steps": 6},
                          "layers": [
        {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "conv1"},
        {"type": "avgpool2d", "kernel": 2, "name": "pool1"},
        {"type": "attention", "kind": "csa", "mode": "causal", "c_ratio": 2, "kernel": 3,
         "gain_bits": 8, "name": "att"},
        dict(lif, name="lif1"), {"type": "flatten"},
        {"type": "dense", "out": 5, "name": "fc2"}, dict(lif, name="lif2")]})
    with torch.no_grad():
        model.layers[0].module.weight.mul_(4.0)
    graph = graph_from_model(model)
    rng = np.random.default_rng(0)
    calib = (rng.random((16, 6, 2, 8, 8)) < 0.4).astype(np.int64)
    x = (rng.random((3, 6, 2, 8, 8)) < 0.4).astype(np.int64)
    build = compile_model(graph, "loihi2", calib=calib)
    conv = [n for n in build.graph.nodes() if type(n).__name__ == "FxConv2d"][0]
    assert tuple(conv.weight.shape[-2:]) == (4, 4)
    sim = Simulator(build.graph).run(x)
    ref = reference_run(build.graph, x)
    assert sim.spikes["lif1"].shape[2:] == (4, 4, 4) and sim.spikes["lif1"].any()
    for name, spikes in sim.spikes.items():
        assert np.array_equal(ref[name], spikes), name
