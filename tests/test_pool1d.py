"""1-D pooling (sumpool1d / avgpool1d on (C, L)): folded into the synapse before or after it,
as the 2-D pools are (passes/fold.py), exactly in float, then compiled like any Conv1d."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.errors import UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model
from snncompile.ir import AvgPool1d, SumPool1d
from snncompile.nn import SNN, save_checkpoint
from snncompile.passes.fold import fold_pools
from snncompile.pipeline import compile_model
from test_conv1d import _model

LIF = {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 1.0}


def _cfg(pool: str, k: int = 2):
    """A pool on a conv's current (folded back into it), one on spikes before a dilated
    Conv1d and one before a Flatten + Dense (folded forward into them)."""
    return {"input": {"shape": [3, 16]}, "layers": [
        {"type": "conv1d", "out": 4, "kernel": 3, "padding": 1, "bias": True},
        {"type": pool, "kernel": k}, dict(LIF),
        {"type": pool, "kernel": 2},
        {"type": "conv1d", "out": 4, "kernel": 2, "dilation": 2, "padding": 1},
        dict(LIF), {"type": pool, "kernel": 1}, {"type": "flatten"},
        {"type": "dense", "out": 5}, dict(LIF, name="out")]}


@pytest.mark.parametrize("pool,cls", [("sumpool1d", SumPool1d), ("avgpool1d", AvgPool1d)])
def test_float_graph_equals_training_model_and_folding_is_exact(pool, cls):
    model = _model(_cfg(pool), 0)
    graph = graph_from_model(model)
    assert sum(isinstance(graph.node(n), cls) for n in graph.order()) == 3
    x = (np.random.default_rng(1).random((3, 6, 3, 16)) < 0.4).astype(np.float32)
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy() > 0
    before = run_float(graph, x)
    assert np.array_equal(before["out"], want)
    folded, changed = fold_pools(graph)
    assert changed and not any(isinstance(folded.node(n), cls) for n in folded.order())
    after = run_float(folded, x)
    assert all(np.array_equal(before[k], after[k]) for k in after)
    assert all(after[k].any() for k in after)
    back = folded.node("conv1d1")                       # the pool on its current
    assert (back.stride, back.weight.shape[2]) == (2, 4) and back.bias is not None


@settings(max_examples=examples(20), deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 2), st.sampled_from(["sumpool1d", "avgpool1d"]), st.booleans(),
       st.integers(0, 2 ** 16))
def test_folding_random_pools_keeps_every_spike(k1, k2, kernel, stride, dilation, pool, bias,
                                                 seed):
    """Random pool sizes before and after random (strided, dilated, biased) Conv1d layers:
    the folded float graph spikes exactly as the unfolded one."""
    length = 4 * k1 * k2 * 3
    layers = [{"type": "conv1d", "out": 3, "kernel": kernel, "stride": stride,
               "padding": kernel // 2, "dilation": dilation + 1, "bias": bias}]
    n = (length + 2 * (kernel // 2) - (dilation + 1) * (kernel - 1) - 1) // stride + 1
    k_back = next(k for k in (k1, 1) if n % k == 0)
    rest = [{"type": pool, "kernel": k_back}, dict(LIF)]
    n //= k_back
    k_fwd = next(k for k in (k2, 1) if n % k == 0)
    rest += [{"type": pool, "kernel": k_fwd},
             {"type": "conv1d", "out": 2, "kernel": 1 + seed % 3, "padding": 1}, dict(LIF),
             {"type": "flatten"}, {"type": "dense", "out": 3}, dict(LIF, name="out")]
    model = _model({"input": {"shape": [2, length]}, "layers": layers + rest}, seed)
    graph = graph_from_model(model)
    x = (np.random.default_rng(seed).random((2, 5, 2, length)) < 0.5).astype(np.float32)
    before, after = run_float(graph, x), run_float(fold_pools(graph)[0], x)
    assert all(np.array_equal(before[k], after[k]) for k in after)


@pytest.mark.parametrize("pool", ["sumpool1d", "avgpool1d"])
def test_compiled_pools_reference_equals_simulator_and_stay_faithful(pool, tmp_path):
    model = _model(_cfg(pool), 0)
    path = tmp_path / "p.pt"
    save_checkpoint(model, path)
    rng = np.random.default_rng(2)
    calib = (rng.random((16, 8, 3, 16)) < 0.4).astype(np.int64)
    x = (rng.random((4, 8, 3, 16)) < 0.4).astype(np.int64)
    build = compile_model(path, "loihi2", calib=calib)
    g = build.graph
    assert not any("pool" in type(g.node(n)).__name__.lower() for n in g.order())
    ref = reference_run(g, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(g, kernel=kernel).run(x)
        assert all(np.array_equal(res.spikes[k], ref[k]) for k in ref), kernel
    flt = run_float(graph_from_model(model), x.astype(np.float32))
    for k in ref:
        a, b = int(flt[k].sum()), int(ref[k].sum())
        assert a > 0 and abs(a - b) <= 0.1 * a, (k, a, b)


@pytest.mark.lava
def test_compiled_pools_on_lava(tmp_path):
    from snncompile.backends.lava.run import run_lava
    model = _model(_cfg("avgpool1d"), 0)
    path = tmp_path / "p.pt"
    save_checkpoint(model, path)
    rng = np.random.default_rng(3)
    build = compile_model(path, "loihi2", calib=(rng.random((8, 6, 3, 16)) < 0.4).astype(
        np.int64))
    x = (rng.random((2, 6, 3, 16)) < 0.4).astype(np.int64)
    ref, lava = reference_run(build.graph, x), run_lava(build.graph, x)
    assert sum(int(v.sum()) for v in ref.values()) > 0
    assert all(np.array_equal(lava.spikes[k], ref[k]) for k in ref)


def test_pool1d_refusals_are_one_line(tmp_path):
    from snncompile.formats.nir.write import export_nir
    cases = [
        ({"input": {"shape": [2, 3, 8]}, "layers": [{"type": "sumpool1d", "kernel": 2}]},
         "sumpool1d expects a 2-d input"),
        ({"input": {"shape": [2, 9]}, "layers": [{"type": "avgpool1d", "kernel": 2}]},
         "input length 9 not divisible by pooling kernel 2"),
    ]
    for cfg, msg in cases:
        with pytest.raises(UnsupportedError, match=msg) as e:
            SNN(cfg)
        assert "\n" not in str(e.value)
    # a pool between two neuron layers has no synapse to fold into
    cfg = {"input": {"shape": [2, 8]}, "layers": [
        {"type": "conv1d", "out": 2, "kernel": 1}, dict(LIF),
        {"type": "sumpool1d", "kernel": 2}, dict(LIF)]}
    with pytest.raises(UnsupportedError, match="must feed exactly one Dense, Conv2d or "
                       "Conv1d") as e:
        compile_model(graph_from_model(_model(cfg, 0)), "loihi2", calib=None)
    assert "\n" not in str(e.value)
    with pytest.raises(UnsupportedError) as e:
        export_nir(graph_from_model(_model(_cfg("sumpool1d"), 0)))
    assert "SumPool1d" in str(e.value) and "\n" not in str(e.value)
