"""Residual blocks in the package's training layers: the float graph the checkpoint
converter writes computes exactly what the training layer computes (delay-free), and the
compiled network (paths balanced with synaptic delays or delay neurons) agrees across the
integer reference, the simulator and Lava."""
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
from snncompile.nn import SNN, save_checkpoint
from snncompile.pipeline import compile_model

LIF = {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 1.0}


def _dense_cfg(body_depth: int, shortcut: bool, width: int = 12):
    body = []
    for i in range(body_depth):
        body += [{"type": "dense", "out": width}, dict(LIF, name=f"blk.lif{i}")]
    body.append({"type": "dense", "out": width})
    return {"input": {"shape": [width]},
            "layers": [{"type": "dense", "out": width}, dict(LIF),
                       {"type": "residual", "name": "blk", "body": body,
                        "shortcut": [{"type": "dense", "out": width}] if shortcut else []},
                       dict(LIF, name="after"), {"type": "dense", "out": 4},
                       dict(LIF, name="out")]}


CONV_CFG = {"input": {"shape": [2, 6, 6]},
            "layers": [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1}, dict(LIF),
                       {"type": "residual", "name": "res",
                        "body": [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1},
                                 dict(LIF, name="res.lif"),
                                 {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1}],
                        "shortcut": [{"type": "conv2d", "out": 4, "kernel": 1}]},
                       dict(LIF, name="after"), {"type": "flatten"},
                       {"type": "dense", "out": 3}, dict(LIF, name="out")]}


def _model(cfg, seed, gain=2.5):
    torch.manual_seed(seed)
    model = SNN(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    return model


def _float_equals_training_layer(model, x):
    graph = graph_from_model(model)
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy() > 0
    got = run_float(graph, x)["out"]
    assert np.array_equal(got, want)
    return graph


@settings(max_examples=examples(12), deadline=None)
@given(st.integers(0, 3), st.booleans(), st.integers(0, 2**16))
def test_float_graph_equals_training_layer_on_random_residual_depths(depth, shortcut, seed):
    x = (np.random.default_rng(seed).random((3, 8, 12)) < 0.5).astype(np.float32)
    graph = _float_equals_training_layer(_model(_dense_cfg(depth, shortcut), seed), x)
    assert len(graph.inputs("after")) == 2


def test_identity_shortcut_is_spike_addition():
    graph = graph_from_model(_model(_dense_cfg(1, False), 0))
    assert graph.inputs("blk.shortcut") == ["lif1"]
    assert np.array_equal(graph.node("blk.shortcut").weight, np.eye(12, dtype=np.float32))


def test_conv_residual_float_graph_equals_training_layer():
    x = (np.random.default_rng(1).random((2, 6, 2, 6, 6)) < 0.4).astype(np.float32)
    _float_equals_training_layer(_model(CONV_CFG, 1, gain=1.5), x)


@pytest.mark.parametrize("cfg", [
    {"input": {"shape": [4]}, "layers": [{"type": "residual", "body": [{"type": "dense",
                                                                       "out": 4}]}]},
    {"input": {"shape": [4]}, "layers": [{"type": "residual", "body": [{"type": "dense",
                                                                       "out": 5}]}, LIF]},
    {"input": {"shape": [4]}, "layers": [{"type": "residual", "body": [LIF]}, LIF]},
])
def test_malformed_residual_blocks_are_refused(cfg):
    with pytest.raises(UnsupportedError, match="residual"):
        SNN(cfg)


def _compiled(cfg, seed, tmp_path, shape, gain):
    path = tmp_path / "res.pt"
    save_checkpoint(_model(cfg, seed, gain), path)
    rng = np.random.default_rng(seed)
    calib = (rng.random((16, 8) + shape) < 0.4).astype(np.int64)
    x = (rng.random((2, 6) + shape) < 0.4).astype(np.int64)
    return compile_model(path, "loihi2", calib=calib), x


@pytest.mark.parametrize("depth, shortcut", [(1, False), (2, True), (0, True)])
def test_compiled_dense_residual_reference_equals_simulator(depth, shortcut, tmp_path):
    build, x = _compiled(_dense_cfg(depth, shortcut), 3, tmp_path, (12,), 2.5)
    delays = build.report["path_delays"]
    want = {"blk.shortcut" if not shortcut else "blk.shortcut0": depth}  # body: depth + 1
    assert {d["synapse"]: d["steps"] for d in delays} == (want if depth else {})
    if depth:
        assert "Inserted path delays" in build.report_md
    ref = reference_run(build.graph, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(build.graph, kernel=kernel).run(x)
        assert all(np.array_equal(res.spikes[k], ref[k]) for k in ref), kernel


@pytest.mark.lava
def test_compiled_conv_residual_reference_equals_simulator_and_lava(tmp_path):
    from snncompile.backends.lava.run import run_lava
    build, x = _compiled(CONV_CFG, 2, tmp_path, (2, 6, 6), 1.5)
    assert [d["synapse"] for d in build.report["path_delays"]] == ["res.shortcut0"]
    assert "res.shortcut0.relay0" in build.graph   # body: 2 synapses, shortcut: 1
    assert not any("relay" in w for w in build.report["fidelity"]["warnings"])
    ref = reference_run(build.graph, x)
    sim = Simulator(build.graph).run(x)
    lava = run_lava(build.graph, x)
    for k in ref:
        assert np.array_equal(sim.spikes[k], ref[k]) and np.array_equal(lava.spikes[k], ref[k])
